#!/usr/bin/env bash
# bench/scale.sh — 10,000 live tickets over 1,000 pods in one `wicket demo`:
#
#   bash bench/scale.sh                       # ≈ 1–2 min
#   TICKETS=2000 PODS=200 bash bench/scale.sh # a short look
#
# The pods are one demo-app process listening on PODS loopback addresses
# (127.1.0.1, 127.1.0.2, …, 250 per /24, same port: `wicket demo-app
# --listen A --listen B …`), given to wicket as `[demo] static_backends`:
# PODS pods of CAPACITY tickets each, no autoscaling. `wicket-bench scale`
# takes TICKETS tickets, one socket at a time (CONCURRENCY), each user from
# its own address (127.0.1.1 onwards), and times each issue. The tickets
# stay live because this run's `ticket_expiry_ms` is 30 minutes (holding
# 10,000 connections open would need more descriptors than one process
# may have here). Then: wicket's RSS, the policy calls made during the
# fill (the `wicket_policy_call_seconds` histograms of /metrics), and a
# request through wicket with a spread sample of the tickets. Besides,
# `wicket policy check` measures the default policy alone at 1,000 pods.
# The report goes to `## Scale` in bench/RESULTS.md, raw figures to
# bench/raw/scale/.
#
# Knobs: TICKETS=10000 PODS=1000 CAPACITY=10 CONCURRENCY=1 CHECK=1000
# SKIP_BUILD=1 OUT=bench/RESULTS.md
set -euo pipefail
BENCH_NAME=scale
# The knobs set in the environment, for the report's command line (lib.sh).
KNOBS="TICKETS PODS CAPACITY CONCURRENCY CHECK SKIP_BUILD OUT MIMALLOC_ALLOW_THP"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TICKETS=${TICKETS:-10000}
PODS=${PODS:-1000}
CAPACITY=${CAPACITY:-10}
CONCURRENCY=${CONCURRENCY:-1}
CHECK=${CHECK:-1000}
APP=scale

((PODS * CAPACITY >= TICKETS)) || die "PODS × CAPACITY ($((PODS * CAPACITY))) must hold TICKETS ($TICKETS)"
((PODS <= 250 * 250)) || die "at most 62,500 pods"

build
HEADER=$(header) # what is measured: the commit as built
BACKEND_PORT=$(free_port)
WICKET_PORT=$(free_port)
METRICS_PORT=$(free_port)

# Pod i listens on 127.1.<i / 250>.<1 + i % 250>.
listen_args=()
backends=""
for ((i = 0; i < PODS; i++)); do
    addr="127.1.$((i / 250)).$((1 + i % 250)):$BACKEND_PORT"
    listen_args+=(--listen "$addr")
    backends+="\"$addr\", "
done
"$WICKET" demo-app "${listen_args[@]}" --pod scale-backend >"$WORK/backend.out" 2>"$WORK/backend.err" &
PIDS+=("$!")
for _ in $(seq 200); do
    (($(wc -l <"$WORK/backend.out") >= PODS)) && break
    sleep 0.05
done
(($(wc -l <"$WORK/backend.out") >= PODS)) || die "the backend did not listen on $PODS addresses: $(tail -3 "$WORK/backend.err")"

cat >"$WORK/wicket.toml" <<EOF
[proxy]
listen = "127.0.0.1:$WICKET_PORT"
# Tickets stay live for the whole run without connections.
ticket_expiry_ms = 1800000
# Every other proxy key at its default, the per-client limits included:
# each user has an address of its own.

[metrics]
listen = "127.0.0.1:$METRICS_PORT"

[demo]
app = "$APP"
replicas = 0
tickets_max = $CAPACITY
tickets_spare = 0
pods_max = 0
static_backends = [${backends%, }]
EOF
start_wicket "$WORK/wicket.toml"
log "wicket pid $WICKET_PID on :$WICKET_PORT; $PODS pods on one backend (:$BACKEND_PORT); $TICKETS tickets"
sleep 2 # the pods are in and the first policy rounds done

LOAD_BEFORE=$(machine_load)
SUMMARY=$(timeout 900 "$BENCH" scale --url "ws://127.0.0.1:$WICKET_PORT/$APP/ws" --tickets "$TICKETS" \
    --concurrency "$CONCURRENCY" --pid "$WICKET_PID" --metrics "http://127.0.0.1:$METRICS_PORT/metrics" \
    --check "$CHECK" --out "$WORK/out")
LOAD_AFTER=$(machine_load)
log "$SUMMARY"

# The default policy alone at 10/100/1,000 pods (the component host/build.rs
# built; skipped if it is not found).
POLICY_WASM=$(find "$TARGET_DIR" -path '*policy-build-*/policy/wicket_policy_spare_tickets.wasm' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
POLICY_CHECK=""
if [[ -n $POLICY_WASM ]]; then
    log "policy check $POLICY_WASM"
    POLICY_CHECK=$(timeout 600 "$WICKET" policy check "$POLICY_WASM" 2>&1 | grep -E '^ +[0-9]+ pods +assign' || true)
fi

rm -rf "$RAW/scale"
mkdir -p "$RAW/scale"
cp "$WORK"/out/* "$RAW/scale/"
cp "$WORK/wicket.toml" "$WORK/wicket.log" "$RAW/scale/"
echo "$SUMMARY" >"$RAW/scale/summary.txt"
{
    echo "$HEADER"
    echo "- setup: \`wicket demo\` (release), $PODS static pods (one \`wicket demo-app\` on $PODS loopback addresses) of $CAPACITY tickets, \`ticket_expiry_ms\` 30 min, other proxy settings at their defaults (config in raw/scale/wicket.toml)"
    echo "- machine load: before $LOAD_BEFORE; after $LOAD_AFTER"
    echo
    cat "$WORK/out/report.md"
    if [[ -n $POLICY_CHECK ]]; then
        echo
        echo "The default policy alone (\`wicket policy check\` on the built component; median / p99 µs):"
        echo
        echo '```'
        echo "$POLICY_CHECK"
        echo '```'
    fi
} >"$WORK/section.md"
write_section Scale "$WORK/section.md"
log "section written to $OUT"
