#!/usr/bin/env bash
# bench/ab.sh — compares two wicket builds under the same load at the same time:
#
#   bash bench/ab.sh OLD_WICKET NEW_WICKET
#
# On a shared 2-core VM, back-to-back runs of one build vary by ±15 %, which
# hides changes of a few percent. Here both builds proxy for one backend
# simultaneously, each loaded by its own `wrk -t1`, so any slowdown of the
# machine hits both alike; what differs is how much CPU each spends per
# request. Prints, per round, req/s, proxy CPU µs/req and p99 of each, then the
# median ratios B/A (CPU < 1 and req/s > 1: B is cheaper).
#
# Knobs (environment): CONNS=32 (per build)  DURATION=4 (seconds)  ROUNDS=5
# Every process started here stops on exit; every wrk run is bounded.
set -euo pipefail

A=${1:?usage: bash bench/ab.sh OLD_WICKET NEW_WICKET}
B=${2:?usage: bash bench/ab.sh OLD_WICKET NEW_WICKET}
CONNS=${CONNS:-32}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/wicket-bench
WORK=$(mktemp -d /tmp/wicket-ab.XXXXXX)
PIDS=()

log() { printf '[ab %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for bin in "$A" "$B" "$BENCH"; do [[ -x $bin ]] || die "not an executable: $bin"; done
command -v wrk >/dev/null || die "wrk is missing (bash bench/run.sh installs it)"

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free port found"
}
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on port $1"
}

BACKEND_PORT=$(free_port)
"$A" demo-app --listen "127.0.0.1:$BACKEND_PORT" --pod bench-backend >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BACKEND_PORT"

# Starts build $2 as proxy "$1"; sets PORT_$1 and PID_$1.
start_proxy() {
    local name=$1 bin=$2 port metrics
    port=$(free_port) metrics=$(free_port)
    cat >"$WORK/$name.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
# Every connection comes from one loopback address: no per-client limits.
connections_per_client = 0
sockets_per_client = 0
places_per_client = 0
tickets_per_client = 0

[metrics]
listen = "127.0.0.1:$metrics"

[demo]
app = "bench"
replicas = 0
tickets_max = 100000
tickets_spare = 0
pods_max = 0
static_backends = ["127.0.0.1:$BACKEND_PORT"]
EOF
    RUST_LOG=warn "$bin" demo --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    printf -v "PORT_$name" '%s' "$port"
    wait_port "$port"
}
start_proxy a "$A"
start_proxy b "$B"
# Both compile the default policy at start: let that finish first.
sleep 4

ticks() {
    local rest
    rest=$(<"/proc/$1/stat")
    rest=${rest##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

# Loads proxy $1 with its own ticket (a fresh one: unused tickets expire in 3 s).
load() {
    local port=$1 out cookie prefix
    out=$(timeout 10 "$BENCH" ticket --url "ws://127.0.0.1:$port/bench/ws") || die "no ticket from :$port"
    cookie=$(sed -n 1p <<<"$out") prefix=$(sed -n 2p <<<"$out")
    timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Cookie: $cookie" \
        "http://127.0.0.1:$port$prefix/hello"
}

hz=$(getconf CLK_TCK)
: >"$WORK/rounds.tsv"
log "A = $A"
log "B = $B"
for ((r = 1; r <= ROUNDS; r++)); do
    a0=$(ticks "$PID_a") b0=$(ticks "$PID_b")
    load "$PORT_a" >"$WORK/a.txt" &
    la=$!
    load "$PORT_b" >"$WORK/b.txt" &
    lb=$!
    wait "$la" "$lb"
    a1=$(ticks "$PID_a") b1=$(ticks "$PID_b")
    for s in a b; do
        if grep -q 'Non-2xx' "$WORK/$s.txt"; then die "proxy $s answered errors: $(grep Non-2xx "$WORK/$s.txt")"; fi
    done
    ra=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/a.txt") rb=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/b.txt")
    pa=$(awk '$1 == "99%" { print $2 }' "$WORK/a.txt") pb=$(awk '$1 == "99%" { print $2 }' "$WORK/b.txt")
    awk -v r="$r" -v ra="$ra" -v rb="$rb" -v ca=$((a1 - a0)) -v cb=$((b1 - b0)) -v hz="$hz" -v d="$DURATION" -v pa="$pa" -v pb="$pb" 'BEGIN {
        ua = 1e6 * ca / hz / (ra * d); ub = 1e6 * cb / hz / (rb * d)
        printf "round %d: A %.0f req/s %.1f µs/req p99 %s | B %.0f req/s %.1f µs/req p99 %s | B/A req/s %.3f CPU/req %.3f\n", r, ra, ua, pa, rb, ub, pb, rb / ra, ub / ua
        printf "%f\t%f\n", rb / ra, ub / ua > "/dev/stderr"
    }' 2>>"$WORK/rounds.tsv"
done
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median B/A: req/s $(cut -f1 "$WORK/rounds.tsv" | median), CPU per request $(cut -f2 "$WORK/rounds.tsv" | median) ($ROUNDS rounds, $CONNS connections each)"
