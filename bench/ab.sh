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
BENCH_NAME=ab
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
APP=bench

for bin in "$A" "$B" "$BENCH"; do [[ -x $bin ]] || die "not an executable: $bin"; done
command -v wrk >/dev/null || die "wrk is missing (bash bench/run.sh installs it)"

start_backend "$A"
start_proxy a "$A"
start_proxy b "$B"
# Both compile the default policy at start: let that finish first.
sleep 4

# Loads proxy $1 with its own ticket (a fresh one: unused tickets expire in 3 s).
load() {
    local port=${PROXY_PORT[$1]} out cookie prefix
    out=$(timeout 10 "$BENCH" ticket --url "ws://127.0.0.1:$port/$APP/ws") || die "no ticket from :$port"
    cookie=$(sed -n 1p <<<"$out") prefix=$(sed -n 2p <<<"$out")
    timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Cookie: $cookie" \
        "http://127.0.0.1:$port$prefix/hello"
}

hz=$(getconf CLK_TCK)
: >"$WORK/rounds.tsv"
log "A = $A"
log "B = $B"
for ((r = 1; r <= ROUNDS; r++)); do
    a0=$(cpu_ticks "${PROXY_PID[a]}") b0=$(cpu_ticks "${PROXY_PID[b]}")
    load a >"$WORK/a.txt" &
    la=$!
    load b >"$WORK/b.txt" &
    lb=$!
    wait "$la" "$lb"
    a1=$(cpu_ticks "${PROXY_PID[a]}") b1=$(cpu_ticks "${PROXY_PID[b]}")
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
echo "median B/A: req/s $(cut -f1 "$WORK/rounds.tsv" | median), CPU per request $(cut -f2 "$WORK/rounds.tsv" | median) ($ROUNDS rounds, $CONNS connections each)"
