# bench/lib.sh — shared by soak.sh, scale.sh and abuse.sh (sourced, not run).
#
# Provides: log/die, a cleanup trap that stops every process started here
# (by pid, newest first), free_port/wait_port, the release build, starting
# `wicket demo` with a config, and write_section, which puts a report
# section into bench/RESULTS.md in place of the old one (or at the end),
# leaving every other section as it was.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WICKET=$TARGET_DIR/release/wicket
BENCH=$TARGET_DIR/release/wicket-bench
OUT=${OUT:-$ROOT/bench/RESULTS.md}
RAW=${RAW:-$(dirname "$OUT")/raw}

WORK=$(mktemp -d /tmp/wicket-limits.XXXXXX)
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

# Waits (bounded, $3 tenths of a second, default 20 s) until something
# accepts on 127.0.0.1:$1.
wait_port() {
    local port=$1 what=$2 tries=${3:-400}
    for _ in $(seq "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "$what did not listen on port $port"
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
