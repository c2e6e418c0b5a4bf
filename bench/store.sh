#!/usr/bin/env bash
# bench/store.sh — the Redis store against the in-memory store, same run,
# same machine:
#
#   bash bench/store.sh          # ≈ 2 min with the defaults and a warm build
#
# Starts one redis-server on a free loopback port (no persistence), one
# backend (`wicket demo-app`) and two `wicket demo` release processes with
# the same settings in front of it: "memory" (`[store] kind = "memory"`) and
# "redis" (`[store] kind = "redis"`, that server). Then:
#
# 1. idle: the store calls per second of the redis wicket at rest (its
#    per-interval sync);
# 2. proxied throughput at each of CONNS connections, ROUNDS rounds: both
#    proxies loaded AT THE SAME TIME, each by its own `wrk -t1 -c<conns>`
#    with its own fresh ticket, as bench/ab.sh does. On this shared 2-core VM
#    back-to-back runs of one build vary by ±15 %, far more than the 5 % the
#    target allows; side by side, whatever else the machine does slows both
#    alike, and the per-round ratio redis/memory (req/s, p99, proxy CPU per
#    request) compares like with like. Medians of the rounds are reported;
#    target: req/s ratio ≥ 0.95 and p99 ratio ≤ 1/0.95;
# 3. ticket issue latency of each (`wicket-bench ticket-latency`, TICKETS
#    tickets after 20 untimed, concurrency 1 then 4), one proxy after the
#    other (latency, not throughput: they must not compete);
# 4. store round trips, from redis-server's `INFO commandstats` before and
#    after each phase: per proxied request (target 0: the load may only show
#    as the same per-interval sync, reported as calls per second idle and
#    under load) and per ticket issued (claim, and the free when the unused
#    ticket expires: the phase ends ticket_expiry + 1 s after the last one).
#
# commandstats counts every command, including those a Lua script runs
# inside Redis; the store only sends scripts (EVALSHA, or EVAL/SCRIPT LOAD
# the first time) and PING, so "round trips" counts those client commands
# and "all commands" the total (this script's own INFO calls excluded).
#
# The report goes to `## Store (Redis vs in memory)` in bench/RESULTS.md, raw
# figures (wrk outputs, commandstats deltas, configs, logs) to
# bench/raw/store/.
#
# Knobs: DURATION=5 (seconds per wrk run) ROUNDS=4 CONNS="64 256" (per
# proxy) TICKETS=500 IDLE_S=5 SKIP_BUILD=1 OUT=bench/RESULTS.md
# Every process started here stops on exit; every wrk run is bounded.
set -euo pipefail
BENCH_NAME=store
# The knobs set in the environment, for the report's command line (lib.sh).
KNOBS="DURATION ROUNDS CONNS TICKETS IDLE_S SKIP_BUILD OUT"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-4}
CONNS=${CONNS:-64 256}
TICKETS=${TICKETS:-500}
IDLE_S=${IDLE_S:-5}
APP=bench
# Unused tickets come back after this (the demo default, written out).
EXPIRY_MS=3000
WARMUP_TICKETS=20

for tool in redis-server redis-cli wrk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install redis-server wrk)"
done
build
HEADER=$(header) # what is measured: the commit as built
RAW_DIR=$RAW/store
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis-server.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" redis-server

start_backend

# The two proxies, identical but for [store].
start_proxy memory "$WICKET" "ticket_expiry_ms = $EXPIRY_MS" $'[store]\nkind = "memory"'
start_proxy redis "$WICKET" "ticket_expiry_ms = $EXPIRY_MS" $'[store]\nkind = "redis"\n'"url = \"redis://127.0.0.1:$REDIS_PORT/0\""
# Both compile the default policy at start and the first ticket warms it.
for kind in memory redis; do
    timeout 20 "$BENCH" ticket --url "ws://127.0.0.1:${PROXY_PORT[$kind]}/$APP/ws" >/dev/null || die "no ticket from the $kind proxy"
done
sleep $((EXPIRY_MS / 1000 + 1))

# --- store calls -------------------------------------------------------------

# commandstats as "name calls" lines, into file $1.
snapshot() {
    redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' |
        awk -F'[:,=]' '/^cmdstat_/ { print substr($1, 9), $3 }' >"$1"
}
# Commands a client sends (the store: scripts and PING); every other name is
# counted only in the total (in this run: the commands the scripts run).
CLIENT_CMDS='^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro|script\|.*|ping|hello|select|auth|client\|.*)$'
# Delta of snapshots $1 → $2: prints "<all commands> <round trips>" and
# appends the per-command delta to $3. INFO (this script's) is left out.
delta() {
    awk -v re="$CLIENT_CMDS" -v out="$3" '
        NR == FNR { before[$1] = $2; next }
        $1 == "info" { next }
        {
            d = $2 - before[$1]; if (d == 0) next
            all += d; if ($1 ~ re) rt += d
            printf "  %s %d\n", $1, d >> out
        }
        END { printf "%d %d\n", all, rt }
    ' "$1" "$2"
}
now() { date +%s.%N; }

# --- 1. idle ------------------------------------------------------------------

LOAD_START=$(machine_load)
log "idle: ${IDLE_S} s; $LOAD_START"
snapshot "$WORK/s0"
t0=$(now)
sleep "$IDLE_S"
t1=$(now)
snapshot "$WORK/s1"
echo "idle ${IDLE_S} s:" >"$RAW_DIR/commandstats.txt"
read -r IDLE_ALL IDLE_RT < <(delta "$WORK/s0" "$WORK/s1" "$RAW_DIR/commandstats.txt")
IDLE_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
IDLE_RT_PS=$(awk -v n="$IDLE_RT" -v s="$IDLE_SECS" 'BEGIN { printf "%.2f", n / s }')
IDLE_ALL_PS=$(awk -v n="$IDLE_ALL" -v s="$IDLE_SECS" 'BEGIN { printf "%.2f", n / s }')
log "idle: $IDLE_RT round trips ($IDLE_ALL commands) in $IDLE_SECS s = $IDLE_RT_PS/s"

# --- 2. proxied load, both at once ---------------------------------------------

# wrk's "99%" line in milliseconds.
p99_ms() {
    awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        printf "%.3f", v * f
    }' "$1"
}
# A fresh ticket of proxy $1 (the cookie and the prefix, one a line).
ticket_of() {
    timeout 10 "$BENCH" ticket --url "ws://127.0.0.1:${PROXY_PORT[$1]}/$APP/ws" || die "no ticket from the $1 proxy"
}
# Loads proxy $1 with ticket file $2 at $3 connections; wrk output on stdout.
load() {
    local cookie prefix
    cookie=$(sed -n 1p "$2") prefix=$(sed -n 2p "$2")
    timeout $((DURATION + 30)) wrk -t1 -c"$3" -d"${DURATION}s" --latency -H "Cookie: $cookie" \
        "http://127.0.0.1:${PROXY_PORT[$1]}$prefix/hello"
}

hz=$(getconf CLK_TCK)
printf 'conns\tround\tmemory_rps\tredis_rps\tmemory_p99_ms\tredis_p99_ms\tmemory_cpu_us_per_req\tredis_cpu_us_per_req\tstore_round_trips\tstore_commands\tseconds\tload1\n' >"$RAW_DIR/load.tsv"
# One ticket per proxy for the whole phase: the rounds follow each other
# within the expiry, so no claim or free falls inside a measured round.
ticket_of memory >"$WORK/t-memory"
ticket_of redis >"$WORK/t-redis"
for c in $CONNS; do
    for ((r = 1; r <= ROUNDS; r++)); do
        snapshot "$WORK/s0"
        m0=$(cpu_ticks "${PROXY_PID[memory]}") d0=$(cpu_ticks "${PROXY_PID[redis]}") t0=$(now)
        load memory "$WORK/t-memory" "$c" >"$RAW_DIR/wrk-memory-$c-$r.txt" &
        lm=$!
        load redis "$WORK/t-redis" "$c" >"$RAW_DIR/wrk-redis-$c-$r.txt" &
        lr=$!
        wait "$lm" "$lr"
        m1=$(cpu_ticks "${PROXY_PID[memory]}") d1=$(cpu_ticks "${PROXY_PID[redis]}") t1=$(now)
        snapshot "$WORK/s1"
        for kind in memory redis; do
            if grep -q 'Non-2xx\|Socket errors' "$RAW_DIR/wrk-$kind-$c-$r.txt"; then
                die "the $kind proxy answered errors: $(grep 'Non-2xx\|Socket errors' "$RAW_DIR/wrk-$kind-$c-$r.txt")"
            fi
        done
        echo "$c connections, round $r:" >>"$RAW_DIR/commandstats.txt"
        read -r all rt < <(delta "$WORK/s0" "$WORK/s1" "$RAW_DIR/commandstats.txt")
        rm_=$(awk '/^Requests\/sec:/ { print $2 }' "$RAW_DIR/wrk-memory-$c-$r.txt")
        rr=$(awk '/^Requests\/sec:/ { print $2 }' "$RAW_DIR/wrk-redis-$c-$r.txt")
        pm=$(p99_ms "$RAW_DIR/wrk-memory-$c-$r.txt") pr=$(p99_ms "$RAW_DIR/wrk-redis-$c-$r.txt")
        line=$(awk -v c="$c" -v r="$r" -v rm="$rm_" -v rr="$rr" -v pm="$pm" -v pr="$pr" \
            -v cm=$((m1 - m0)) -v cr=$((d1 - d0)) -v hz="$hz" -v d="$DURATION" -v rt="$rt" -v all="$all" \
            -v t0="$t0" -v t1="$t1" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
            printf "%d\t%d\t%.0f\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%d\t%d\t%.3f\t%s\n", c, r, rm, rr, pm, pr,
                1e6 * cm / hz / (rm * d), 1e6 * cr / hz / (rr * d), rt, all, t1 - t0, l
        }')
        printf '%s\n' "$line" >>"$RAW_DIR/load.tsv"
        log "c=$c round $r: memory $rm_ req/s p99 $pm ms | redis $rr req/s p99 $pr ms | store: $rt round trips in $(cut -f11 <<<"$line") s"
    done
done

# --- 3. ticket issue ------------------------------------------------------------

# The load's tickets expire (and are freed) before the first batch.
sleep $((EXPIRY_MS / 1000 + 1))
printf 'store\tconcurrency\tcount\tp50_us\tp90_us\tp99_us\tmax_us\tmean_us\tstore_round_trips\tstore_commands\tseconds\tload1\n' >"$RAW_DIR/tickets.tsv"
for conc in 1 4; do
    for kind in memory redis; do
        snapshot "$WORK/s0"
        t0=$(now)
        out=$(timeout 300 "$BENCH" ticket-latency --url "ws://127.0.0.1:${PROXY_PORT[$kind]}/$APP/ws" \
            --count "$TICKETS" --concurrency "$conc" --warmup "$WARMUP_TICKETS" --kv) || die "ticket-latency failed on the $kind proxy"
        # Every ticket of the batch expires unused: wait for the frees.
        sleep $((EXPIRY_MS / 1000 + 1))
        t1=$(now)
        snapshot "$WORK/s1"
        echo "tickets, $kind store, concurrency $conc ($((TICKETS + WARMUP_TICKETS)) issued):" >>"$RAW_DIR/commandstats.txt"
        read -r all rt < <(delta "$WORK/s0" "$WORK/s1" "$RAW_DIR/commandstats.txt")
        {
            printf '%s\t%s\t' "$kind" "$conc"
            tr ' ' '\n' <<<"$out" | awk -F= '$1 ~ /^(count|p50_us|p90_us|p99_us|max_us|mean_us)$/ { printf "%s\t", $2 }'
            printf '%s\t%s\t%s\t%s\n' "$rt" "$all" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$(cut -d' ' -f1 /proc/loadavg)"
        } >>"$RAW_DIR/tickets.tsv"
        log "tickets ($kind, concurrency $conc): $out; store: $rt round trips"
    done
done
LOAD_END=$(machine_load)

cp "$WORK/memory.toml" "$WORK/redis.toml" "$WORK/memory.log" "$WORK/redis.log" "$WORK/redis-server.log" "$RAW_DIR/"

# --- report ----------------------------------------------------------------------

col() { awk -F'\t' -v c="$1" -v k="$2" 'NR > 1 && $1 == c { print $k }' "$RAW_DIR/load.tsv"; }
ratios() { awk -F'\t' -v c="$1" -v a="$2" -v b="$3" 'NR > 1 && $1 == c { printf "%.4f\n", $b / $a }' "$RAW_DIR/load.tsv"; }
fmt3() { awk -v v="$1" 'BEGIN { printf "%.3f", v }'; }
verdict() { if awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }"; then echo "**met**"; else echo "**missed**"; fi; }
{
    echo "$HEADER"
    echo "- machine load: at the start $LOAD_START; at the end $LOAD_END (the machine is shared: other processes ran during this run)"
    echo "- setup: redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on loopback (\`--save '' --appendonly no\`), one backend (\`wicket demo-app\`), two \`wicket demo\` (release) in front of it,"
    echo "  identical but for \`[store] kind\` (\`memory\` / \`redis\` with the defaults: refresh_ms 200, resync_ms 1000; configs in raw/store/)."
    echo "  Both proxies are loaded **at the same time**, each by its own \`wrk -t1 -c<conns> -d${DURATION}s --latency\` with its own ticket (one per proxy for the whole phase),"
    echo "  $ROUNDS rounds per connection count: on this shared 2-core VM back-to-back runs vary by ±15 %; side by side, a slower machine slows both"
    echo "  alike (bench/ab.sh: an A/A run stays within ≈ ±4 %). The connection count is per proxy (2× in flight on the machine). Ratios are redis/memory, per round, then the median."
    echo
    echo "### Proxied requests"
    echo
    echo "| connections (each) | memory req/s | redis req/s | **req/s ratio** (target ≥ 0.95) | memory p99 ms | redis p99 ms | p99 ratio (target ≤ 1.053) | CPU µs/req memory / redis | store round trips/s under load (idle: $IDLE_RT_PS/s) |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for c in $CONNS; do
        rq=$(ratios "$c" 3 4 | median) pq=$(ratios "$c" 5 6 | median)
        rtps=$(awk -F'\t' -v c="$c" 'NR > 1 && $1 == c { n += $9; s += $11 } END { printf "%.2f", n / s }' "$RAW_DIR/load.tsv")
        echo "| $c | $(col "$c" 3 | median) | $(col "$c" 4 | median) | $(fmt3 "$rq") $(verdict "$rq" 0.95 '>=') | $(col "$c" 5 | median) | $(col "$c" 6 | median) | $(fmt3 "$pq") $(verdict "$pq" 1.0527 '<=') | $(col "$c" 7 | median) / $(col "$c" 8 | median) | $rtps |"
    done
    echo
    echo "Round by round (req/s ratio, p99 ratio; load average at the end of the round):"
    echo
    awk -F'\t' 'NR > 1 { printf "- %d conns, round %d: %.0f / %.0f req/s = %.3f; p99 %.3f / %.3f ms = %.3f; load %s\n", $1, $2, $4, $3, $4 / $3, $6, $5, $6 / $5, $12 }' "$RAW_DIR/load.tsv"
    echo
    echo "### Store round trips"
    echo
    # Per proxied request: the calls during the load beyond the idle rate, over the redis proxy's requests.
    per_req=$(awk -F'\t' -v idle="$IDLE_RT_PS" -v d="$DURATION" 'NR > 1 { n += $9; atidle += idle * $11; reqs += $4 * d } END { printf "%d round trips against %.1f at the idle rate: %+.1f over ≈ %.0f requests = %.1e", n, atidle, n - atidle, reqs, (n - atidle) / reqs }' "$RAW_DIR/load.tsv")
    reqs_total=$(awk -F'\t' -v d="$DURATION" 'NR > 1 { n += $4 * d } END { printf "%.0f", n }' "$RAW_DIR/load.tsv")
    rt_load=$(awk -F'\t' 'NR > 1 { n += $9; s += $11 } END { printf "%d round trips in %.1f s = %.2f/s", n, s, n / s }' "$RAW_DIR/load.tsv")
    echo "Counted from redis-server's \`INFO commandstats\` (round trips: the commands the store sends, EVALSHA/EVAL/SCRIPT/PING; all commands"
    echo "also counts the HGET/HSET/… the Lua scripts run inside Redis). Per-command deltas of every phase: raw/store/commandstats.txt."
    echo
    echo "- idle (both proxies at rest, ${IDLE_SECS} s): $IDLE_RT round trips ($IDLE_ALL commands) = **$IDLE_RT_PS round trips/s** ($IDLE_ALL_PS commands/s): the per-interval sync."
    echo "- under load (all rounds, ≈ $reqs_total proxied requests through the redis proxy): $rt_load."
    echo "- **per proxied request** beyond the idle rate (target 0): $per_req, i.e. none: requests are checked against the replica's own copy."
    echo "- per ticket issued (claim, then the free when it expires unused; the phase lasts until ticket_expiry + 1 s after the last ticket; the sync's idle rate over the phase subtracted):"
    echo
    echo "| store | concurrency | tickets issued (incl. $WARMUP_TICKETS untimed) | round trips in the phase | **round trips per ticket** | all commands per ticket |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' -v idle="$IDLE_RT_PS" -v idleall="$IDLE_ALL_PS" -v w="$WARMUP_TICKETS" 'NR > 1 {
        n = $3 + w
        sub_rt = idle * $11; sub_all = idleall * $11
        printf "| %s | %d | %d | %d | %.2f | %.2f |\n", $1, $2, n, $9, ($9 - sub_rt) / n, ($10 - sub_all) / n
    }' "$RAW_DIR/tickets.tsv"
    echo
    echo "(The memory proxy talks to no Redis: its rows are the check of the subtraction, ≈ 0. In the redis rows, the EVALSHA per ticket is its claim; the tickets that expire unused are freed in batches, one call per expiry sweep, visible as HDEL/HINCRBY in raw/store/commandstats.txt.)"
    echo
    echo "### Ticket issue latency"
    echo
    echo "\`wicket-bench ticket-latency\`: connect start → \`tkn#\` received, one WebSocket per ticket, $TICKETS tickets after $WARMUP_TICKETS untimed; one proxy at a time."
    echo
    echo "| store | concurrency | count | p50 µs | p90 µs | p99 µs | max µs | mean µs | load average |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $12 }' "$RAW_DIR/tickets.tsv"
} >"$WORK/section.md"
cp "$WORK/section.md" "$RAW_DIR/section.md"
write_section "Store (Redis vs in memory)" "$WORK/section.md"
log "section written to $OUT"
cat "$WORK/section.md"
