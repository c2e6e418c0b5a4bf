#!/usr/bin/env bash
# bench/soak.sh — 1,000 users for 10 minutes through `wicket demo`:
#
#   bash bench/soak.sh                 # ≈ 13 min (10 of load, up to 2.5 to settle)
#   DURATION=120 bash bench/soak.sh    # a short look
#
# Each user (its own loopback source address, 127.0.1.1 onwards, so the
# per-client limits stay at their defaults) gets a ticket on the ticket
# WebSocket, opens a WebSocket to its pod through wicket (the demo app's
# /counter) and a keep-alive HTTP connection, and every INTERVAL_MS sends
# one `inc` (whose answer must be its session's next count: the user is
# still on its pod) and one GET. `wicket-bench soak` samples wicket's RSS
# and open descriptors every 10 s and, after the users leave, until the
# descriptors are back to the start. The report goes to the `## Soak`
# section of bench/RESULTS.md, raw figures to bench/raw/soak/.
#
# Pods: PODS demo-app processes started by wicket's local provider
# (`replicas`), CAPACITY tickets each; no autoscaling.
#
# Knobs: USERS=1000 DURATION=600 (s) RAMP=30 (s) INTERVAL_MS=3000 PODS=10
# CAPACITY=100 SETTLE=150 (s) SKIP_BUILD=1 OUT=bench/RESULTS.md
set -euo pipefail
BENCH_NAME=soak
# The knobs set in the environment, for the report's command line (lib.sh).
KNOBS="USERS DURATION RAMP INTERVAL_MS PODS CAPACITY SETTLE SKIP_BUILD OUT MIMALLOC_ALLOW_THP"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USERS=${USERS:-1000}
DURATION=${DURATION:-600}
RAMP=${RAMP:-30}
INTERVAL_MS=${INTERVAL_MS:-3000}
PODS=${PODS:-10}
CAPACITY=${CAPACITY:-100}
SETTLE=${SETTLE:-150}
APP=soak

((PODS * CAPACITY >= USERS)) || die "PODS × CAPACITY ($((PODS * CAPACITY))) must hold USERS ($USERS)"

build
HEADER=$(header) # what is measured: the commit as built
WICKET_PORT=$(free_port)
METRICS_PORT=$(free_port)
cat >"$WORK/wicket.toml" <<EOF
[proxy]
listen = "127.0.0.1:$WICKET_PORT"
# Every other proxy key at its default, the per-client limits included:
# each user has an address of its own.

[metrics]
listen = "127.0.0.1:$METRICS_PORT"

[demo]
app = "$APP"
replicas = $PODS
tickets_max = $CAPACITY
tickets_spare = 0
pods_max = 0
pod_start_delay_ms = 0
EOF
start_wicket "$WORK/wicket.toml"
log "wicket pid $WICKET_PID on :$WICKET_PORT; $USERS users for $DURATION s"
# The demo's replicas are ready once a ticket can be had.
"$BENCH" ticket --url "ws://127.0.0.1:$WICKET_PORT/$APP/ws" >/dev/null
sleep 4 # that ticket expires (3 s) before the start is sampled

LOAD_BEFORE=$(machine_load)
mkdir -p "$RAW/soak"
SUMMARY=$(timeout $((DURATION + SETTLE + 120)) "$BENCH" soak --url "ws://127.0.0.1:$WICKET_PORT/$APP/ws" \
    --users "$USERS" --duration-s "$DURATION" --ramp-s "$RAMP" --interval-ms "$INTERVAL_MS" \
    --pid "$WICKET_PID" --settle-s "$SETTLE" --out "$WORK/out")
LOAD_AFTER=$(machine_load)
log "$SUMMARY"

rm -rf "$RAW/soak"
mkdir -p "$RAW/soak"
cp "$WORK"/out/* "$RAW/soak/"
cp "$WORK/wicket.toml" "$WORK/wicket.log" "$RAW/soak/"
echo "$SUMMARY" >"$RAW/soak/summary.txt"
{
    echo "$HEADER"
    echo "- setup: \`wicket demo\` (release), $PODS demo-app pods (the local provider's processes) of $CAPACITY tickets, default proxy settings (config in raw/soak/wicket.toml); all on the same machine"
    echo "- machine load: before $LOAD_BEFORE; after $LOAD_AFTER"
    echo
    cat "$WORK/out/report.md"
} >"$WORK/section.md"
write_section Soak "$WORK/section.md"
log "section written to $OUT"
