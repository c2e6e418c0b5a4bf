# shellcheck shell=bash
# bench/lib.sh — shared by run.sh, ab.sh, store.sh, soak.sh, scale.sh and
# abuse.sh (sourced, not run; the script sets BENCH_NAME, its log prefix,
# and KNOBS, the environment knobs its report's command line names, first).
#
# Provides: log/die, a cleanup trap that stops every process started here
# (by pid, newest first), free_port/wait_port, the release build, starting
# the demo backend, `wicket demo` with a config (start_wicket) or in front
# of that backend (start_proxy), CPU ticks from /proc, median, and
# write_section, which puts a report section into bench/RESULTS.md in place
# of the old one (or at the end), leaving every other section as it was.

# The exact command for the report: the knobs the script names in KNOBS
# that are set in the environment, as typed, before any default below.
COMMAND_LINE="bash bench/${0##*/}"
for v in ${KNOBS:-}; do
    if [[ -n ${!v+x} ]]; then COMMAND_LINE="$v=\"${!v}\" $COMMAND_LINE"; fi
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WICKET=$TARGET_DIR/release/wicket
BENCH=$TARGET_DIR/release/wicket-bench
OUT=${OUT:-$ROOT/bench/RESULTS.md}
RAW=${RAW:-$(dirname "$OUT")/raw}

WORK=$(mktemp -d "/tmp/wicket-$BENCH_NAME.XXXXXX")
PIDS=()

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() {
    local pid i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() {
    if [[ -n ${SKIP_BUILD:-} ]]; then
        [[ -x $WICKET && -x $BENCH ]] || die "SKIP_BUILD set but $WICKET or $BENCH is missing"
        return
    fi
    log "building (release)"
    (cd "$ROOT" && cargo build --release -p wicket -p wicket-bench-tools)
}

# A TCP port on 127.0.0.1 nobody listens on (checked, not reserved).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# Waits (bounded, $3 twentieths of a second, default 20 s) until something
# accepts on 127.0.0.1:$1; on failure the error quotes the end of log file
# $4, if given (e.g. a config the build rejects).
wait_port() {
    local port=$1 what=$2 tries=${3:-400} log=${4:-}
    for _ in $(seq "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "$what did not listen on port $port${log:+: $(tail -3 "$log" 2>/dev/null)}"
}

# Starts the demo app (`$1 demo-app`, default $WICKET) on a free port as the
# one backend of the proxies; sets BACKEND_PORT and BACKEND_PID.
start_backend() {
    BACKEND_PORT=$(free_port)
    "${1:-$WICKET}" demo-app --listen "127.0.0.1:$BACKEND_PORT" --pod bench-backend >"$WORK/backend.log" 2>&1 &
    BACKEND_PID=$!
    PIDS+=("$BACKEND_PID")
    wait_port "$BACKEND_PORT" backend 400 "$WORK/backend.log"
}

# Per proxy name: its port and pid (set by start_proxy).
declare -A PROXY_PORT=() PROXY_PID=()

# Starts `$2 demo` (a wicket build) as proxy "$1" in front of the backend at
# $BACKEND_PORT, its only (static) pod, with room for many tickets of app
# $APP and no autoscaling. $3: more [proxy] keys, one a line; $4: more
# sections. Config $WORK/$1.toml, log $WORK/$1.log.
# shellcheck disable=SC2034 # PROXY_* are read by the sourcing script
start_proxy() {
    local name=$1 bin=$2 port metrics
    port=$(free_port) metrics=$(free_port)
    cat >"$WORK/$name.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
${3:-}
# Every connection comes from one loopback address: no per-client limits.
connections_per_client = 0
sockets_per_client = 0
places_per_client = 0
tickets_per_client = 0

[metrics]
listen = "127.0.0.1:$metrics"

${4:-}

[demo]
app = "$APP"
replicas = 0
tickets_max = 100000
tickets_spare = 0
pods_max = 0
static_backends = ["127.0.0.1:$BACKEND_PORT"]
EOF
    RUST_LOG=${RUST_LOG:-warn} "$bin" demo --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PROXY_PID[$name]=$!
    PROXY_PORT[$name]=$port
    PIDS+=("$!")
    wait_port "$port" "wicket ($name)" 400 "$WORK/$name.log"
}

# Starts `wicket demo` with the config file $1 (whose proxy and metrics
# ports are $WICKET_PORT and $METRICS_PORT); sets WICKET_PID.
start_wicket() {
    RUST_LOG=${RUST_LOG:-warn} "$WICKET" demo --config "$1" >"$WORK/wicket.log" 2>&1 &
    WICKET_PID=$!
    PIDS+=("$WICKET_PID")
    wait_port "$WICKET_PORT" wicket
    wait_port "$METRICS_PORT" "wicket metrics"
}

# CPU ticks (utime+stime) of the given pids, from /proc/<pid>/stat (those
# gone are skipped). Fields are counted after the last ')' because comm may
# hold spaces: utime is field 14, the 12th after it, stime the 13th.
cpu_ticks() {
    local total=0 pid rest
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        rest=$(<"/proc/$pid/stat")
        rest=${rest##*) }
        # shellcheck disable=SC2086
        set -- $rest
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# Median of the numbers on stdin, one a line ("-" when there are none).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Load average and the busiest other processes, for the report.
machine_load() { uptime | sed 's/.*load average: /load average /'; }

# One line naming what was measured: date, commit, machine.
header() {
    local commit dirty=""
    commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if git -C "$ROOT" status --porcelain -- host bench/tools 2>/dev/null | grep -q .; then
        dirty=" (with uncommitted changes)"
    fi
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit \`$commit\`$dirty; $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- command: \`$COMMAND_LINE\`"
}

# Replaces section "## $1" of $OUT (its heading to the next "## " heading)
# with the heading and the file $2, or appends it if $OUT has no such
# section; the rest of $OUT is kept byte for byte.
write_section() {
    local title=$1 body=$2 tmp
    tmp=$(mktemp "$WORK/section.XXXXXX")
    touch "$OUT"
    awk -v title="## $title" -v body="$body" '
        function emit() { print title; print ""; while ((getline line < body) > 0) print line; print ""; done = 1 }
        $0 == title { emit(); skip = 1; next }
        skip && /^## / { skip = 0 }
        !skip { print }
        END { if (!done) { print ""; emit() } }
    ' "$OUT" >"$tmp"
    # No blank line run at the end.
    sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}' "$tmp" >"$OUT"
}
