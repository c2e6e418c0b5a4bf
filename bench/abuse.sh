#!/usr/bin/env bash
# bench/abuse.sh — one address floods `wicket demo` while 100 others queue:
#
#   bash bench/abuse.sh          # ≈ 30 s–2 min
#
# The flood (127.66.0.1) holds FLOOD_CONNS connections open without sending
# anything, keeps FLOOD_SOCKETS ticket WebSockets and FLOOD_POLLS no-JS polls
# (`/<app>/.wicket/poll`, each a new user) in flight, rejoining at once after
# each ticket (which it never uses) and 200 ms after each refusal; half of
# its sockets join resumable and leave at the resume id (a place left away). All far
# past the per-client limits, which stay at their defaults
# (connections_per_client 256, sockets_per_client 32, places_per_client 32).
# Three runs on one wicket: no flood (the baseline), the flood without the
# held connections (so the socket and place limits are what it meets), then
# with them (the connection limit, shared by everything the flood does,
# bites first). In each, after WARMUP s (of flood), GOOD well-behaved users
# (127.0.<run + 1>.1 onwards) join
# one every SPACING_MS, each waits for its ticket, uses it once (a GET
# through wicket) and keeps it HOLD_MS. The app has PODS × CAPACITY tickets
# and a 1 s `ticket_expiry_ms`, so tickets are scarce and turn over: the
# well-behaved users wait in line between the flood's places, and their
# order of service is checked against their order of joining: as the
# users saw it, and as wicket did (its order log, RUST_LOG=wicket::order=debug:
# its order of joining, of granting, and when each ticket was written).
# The report goes to `## Abuse` in bench/RESULTS.md, raw figures to
# bench/raw/abuse/.
#
# Knobs: GOOD=100 SPACING_MS=50 HOLD_MS=500 FLOOD_CONNS=600 FLOOD_SOCKETS=200
# FLOOD_POLLS=100 WARMUP=3 PODS=2 CAPACITY=10 THREADS=0 (wicket's edge threads;
# 0: one per CPU) SKIP_BUILD=1 OUT=bench/RESULTS.md
set -euo pipefail
BENCH_NAME=abuse
# The knobs set in the environment, for the report's command line (lib.sh).
KNOBS="THREADS GOOD SPACING_MS HOLD_MS FLOOD_CONNS FLOOD_SOCKETS FLOOD_POLLS WARMUP PODS CAPACITY SKIP_BUILD OUT MIMALLOC_ALLOW_THP"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GOOD=${GOOD:-100}
SPACING_MS=${SPACING_MS:-50}
HOLD_MS=${HOLD_MS:-500}
FLOOD_CONNS=${FLOOD_CONNS:-600}
FLOOD_SOCKETS=${FLOOD_SOCKETS:-200}
FLOOD_POLLS=${FLOOD_POLLS:-100}
WARMUP=${WARMUP:-3}
PODS=${PODS:-2}
CAPACITY=${CAPACITY:-10}
THREADS=${THREADS:-0}
APP=abuse

build
HEADER=$(header) # what is measured: the commit as built
WICKET_PORT=$(free_port)
METRICS_PORT=$(free_port)
cat >"$WORK/wicket.toml" <<EOF
[proxy]
listen = "127.0.0.1:$WICKET_PORT"
# Edge threads (0: one per CPU).
threads = $THREADS
# Unused tickets (the flood's) come back after 1 s.
ticket_expiry_ms = 1000
# The per-client limits at their defaults, written out for the report.
connections_per_client = 256
sockets_per_client = 32
places_per_client = 32
tickets_per_client = 32

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
# wicket's order events (a user in line, a grant, a ticket written), so
# its own order of joining and granting is reported beside the users'.
RUST_LOG=${RUST_LOG:-warn,wicket::order=debug} start_wicket "$WORK/wicket.toml"
log "wicket pid $WICKET_PID on :$WICKET_PORT; flood from 127.66.0.1, $GOOD users"
"$BENCH" ticket --url "ws://127.0.0.1:$WICKET_PORT/$APP/ws" >/dev/null
sleep 2

# Against GOOD users each: no flood (the baseline), then sockets and polls
# only (the socket and place limits), then with the connections too (all
# share the flood's connection budget, so that limit bites first).
rm -rf "$RAW/abuse"
mkdir -p "$RAW/abuse"
: >"$WORK/runs.md"
# Run 0 is the baseline: the same users, no flood.
for run in 0 1 2; do
    case $run in
    0) title="No flood (the baseline: the users alone)" flood=(--flood-conns 0 --flood-sockets 0 --flood-polls 0) ;;
    1) title="Flood of ticket WebSockets and no-JavaScript polls" flood=(--flood-conns 0 --flood-sockets "$FLOOD_SOCKETS" --flood-polls "$FLOOD_POLLS") ;;
    2) title="Flood of connections, ticket WebSockets and polls" flood=(--flood-conns "$FLOOD_CONNS" --flood-sockets "$FLOOD_SOCKETS" --flood-polls "$FLOOD_POLLS") ;;
    esac
    sleep 3 # the previous run's tickets expire
    LOAD_BEFORE=$(machine_load)
    SUMMARY=$(timeout 600 "$BENCH" abuse --url "ws://127.0.0.1:$WICKET_PORT/$APP/ws" --good "$GOOD" \
        --spacing-ms "$SPACING_MS" --hold-ms "$HOLD_MS" "${flood[@]}" --warmup-s "$WARMUP" \
        --block "$((run + 1))" --pid "$WICKET_PID" --out "$WORK/out$run" --order-log "$WORK/wicket.log")
    LOAD_AFTER=$(machine_load)
    log "run $run: $SUMMARY"
    mkdir -p "$RAW/abuse/run$run"
    cp "$WORK/out$run"/* "$RAW/abuse/run$run/"
    echo "$SUMMARY" >"$RAW/abuse/run$run/summary.txt"
    {
        echo "### $run. $title"
        echo
        echo "Machine load: before $LOAD_BEFORE; after $LOAD_AFTER."
        echo
        cat "$WORK/out$run/report.md"
        echo
    } >>"$WORK/runs.md"
done
# Tickets wicket issued in all (all runs, flood and users), from its counter.
ISSUED=$(curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^k8sticket_users_total/ { s += $NF } END { print s + 0 }')
cp "$WORK/wicket.toml" "$WORK/wicket.log" "$RAW/abuse/"
{
    echo "$HEADER"
    echo "- setup: \`wicket demo\` (release), $PODS demo-app pods of $CAPACITY tickets, \`ticket_expiry_ms\` 1 s, per-client limits at their defaults (config in raw/abuse/wicket.toml); the three runs on the same wicket, one after the other"
    echo "- tickets wicket issued in all (k8sticket_users_total: all runs, flood and users, one warm-up ticket): $ISSUED"
    echo
    cat "$WORK/runs.md"
} >"$WORK/section.md"
write_section Abuse "$WORK/section.md"
log "section written to $OUT"
