#!/usr/bin/env bash
# bench/run.sh — wicket's proxy benchmark, end to end, in one command:
#
#   bash bench/run.sh
#
# One demo backend (`wicket demo-app`) serves four front doors:
#   direct     wrk → backend                    GET /hello
#   relay      wrk → byte relay → backend       GET /hello (`wicket-bench relay`:
#              bytes copied, nothing parsed: what any proxy could reach)
#   relay-fwd  the same, wrk sending the five forwarding fields wicket adds
#              (what any proxy that sends them could reach)
#   nginx      wrk → nginx → backend            GET /hello
#   nginx-fwd  wrk → nginx → backend            GET /app/hello (prefix stripped,
#              and the X-Forwarded-* fields wicket sends: the same work for
#              the backend behind both proxies)
#   wicket     wrk → wicket → backend           GET /<app>/<pod>/<uid>/hello
# For each connection count, wrk measures req/s and latency; /proc gives the
# CPU seconds each process used. Then ticket-issue latency (WebSocket) and
# the policy micro-benchmark. The report goes to bench/RESULTS.md.
#
# Every step is bounded in time, and every process started here is stopped
# on exit (trap). Knobs (environment):
#   CONNS="64 256"  DURATION=8s (seconds, with the s)  THREADS=2  TICKETS=1000
#   REPEAT=4 (runs per target and connection count, interleaved, every other
#   round in reverse order; medians reported)
#   IDLE_MIN=90 (percent)  IDLE_WAIT_MAX=180 (seconds per wait)
#   STEAL_MAX_PCT=3 (a run during which the hypervisor took more of the
#   machine's CPU is measured again, RUN_ATTEMPTS=3 times at most)
#   SKIP_BUILD=1 (use the binaries already in target/release)
#   OUT=bench/RESULTS.md (raw outputs go to raw/ beside it)
set -euo pipefail
BENCH_NAME=bench
# The knobs set in the environment, for the report's command line (lib.sh).
KNOBS="CONNS DURATION THREADS REPEAT TICKETS IDLE_MIN STEAL_MAX_PCT RUN_ATTEMPTS IDLE_WAIT_MAX SKIP_BUILD CARGO_TARGET_DIR OUT BENCH_COMMIT"
# log/die, the ports, the build, the backend and the proxy; its exit trap
# stops every process started here (by pid, newest first; TERM to nginx's
# master makes it stop its workers too).
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${CONNS:-"64 256"}
DURATION=${DURATION:-8s}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-4}
TICKETS=${TICKETS:-1000}
IDLE_MIN=${IDLE_MIN:-90}
STEAL_MAX_PCT=${STEAL_MAX_PCT:-3}
RUN_ATTEMPTS=${RUN_ATTEMPTS:-3}
IDLE_WAIT_MAX=${IDLE_WAIT_MAX:-180}
APP=bench
NGINX=/usr/sbin/nginx
# The front doors, in the order of odd rounds (even rounds go backwards).
TARGETS=(direct relay relay-fwd nginx nginx-fwd wicket)
CLK_TCK=$(getconf CLK_TCK)

NGINX_PID=""
WICKET_PID=""

# wrk and nginx come from Debian; install only when missing (idempotent).
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    [[ -x $NGINX ]] || missing+=(nginx-light)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        # No service start inside containers; we run nginx ourselves.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The policy bench binary besides lib.sh's release build, so no compile
# happens inside a timed step.
build_all() {
    build
    if [[ -z ${SKIP_BUILD:-} ]]; then (cd "$ROOT" && cargo bench -p wicket --bench policy --no-run); fi
}

# nginx as a non-daemon child with its own prefix: nothing of the system's
# nginx (config, logs, pid file) is touched.
start_nginx() {
    NGINX_PORT=$(free_port)
    NGINX_FWD_PORT=$(free_port)
    mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
$(if ((EUID == 0)); then echo "user root;"; fi)
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # What wicket does to a request: the prefix stripped, the user's Host
    # kept, and the five forwarding fields (the backend parses them too).
    server {
        listen 127.0.0.1:$NGINX_FWD_PORT;
        location /app/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Origin-Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Prefix /app;
        }
    }
}
EOF
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" 2>"$WORK/nginx/stderr.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$NGINX_PORT" nginx
}

# The byte relay (the cheapest possible proxy), two threads like the others.
start_relay() {
    RELAY_PORT=$(free_port)
    "$BENCH" relay --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$BACKEND_PORT" --threads 2 >"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    wait_port "$RELAY_PORT" relay
}

# wicket's demo host with the backend above as its only (static) pod.
start_wicket_proxy() {
    start_proxy wicket "$WICKET"
    WICKET_PORT=${PROXY_PORT[wicket]}
    WICKET_PID=${PROXY_PID[wicket]}
    TICKET_URL="ws://127.0.0.1:$WICKET_PORT/$APP/ws"
}

# User and kernel CPU ticks (utime, stime) of the given pids, as "u s".
cpu_split() {
    local u=0 k=0 pid rest
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        rest=$(<"/proc/$pid/stat")
        rest=${rest##*) }
        # shellcheck disable=SC2086
        set -- $rest
        u=$((u + ${12})) k=$((k + ${13}))
    done
    echo "$u $k"
}

# nginx master plus its workers (workers are children of the master).
nginx_pids() {
    echo "$NGINX_PID"
    local f stat
    for f in /proc/[0-9]*/stat; do
        { stat=$(<"$f"); } 2>/dev/null || continue
        stat=${stat##*) }
        # shellcheck disable=SC2086
        set -- $stat
        if [[ $2 == "$NGINX_PID" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
    done
    return 0
}

# Reaped-children CPU ticks of the main shell (cutime+cstime; $$, not
# $BASHPID, since this runs in a command substitution): wrk's CPU is the
# difference across its run, as it is the only child that ends in between.
child_ticks() {
    local rest
    rest=$(<"/proc/$$/stat")
    rest=${rest##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${14} + ${15}))
}

# Busy CPU ticks of the whole machine (user to softirq: idle, iowait and
# steal left out), from /proc/stat in USER_HZ: with the per-process figures
# it shows how much CPU something else (another build on this shared
# machine) took during a run. Steal, apart: the ticks the hypervisor gave to
# other guests while this one wanted to run.
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 8; i++) if (i != 5 && i != 6) t += $i; print t }' /proc/stat; }
steal_ticks() { awk '/^cpu / { print $9 }' /proc/stat; }

# TCP segments the machine sent (OutSegs of /proc/net/snmp). Per request over
# a run, it shows how the connections are used: a proxy on pooled keep-alive
# connections sends 4 (user → proxy → pod → proxy → user); pure ACKs or
# connection set-ups and closes would add to it.
tcp_out_segs() {
    awk '$1 == "Tcp:" { if (n++) { for (i = 2; i <= NF; i++) if (h[i] == "OutSegs") print $i } else for (i = 2; i <= NF; i++) h[i] = $i }' /proc/net/snmp
}

# Context switches (voluntary and involuntary) of all threads of the given pids.
ctx_switches() {
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status 2>/dev/null || true; done | awk '/ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# Idle share of all CPUs over 2 s, in percent (idle+iowait, from /proc/stat).
idle_pct() {
    local a b
    a=$(awk '/^cpu /{ t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat)
    sleep 2
    b=$(awk '/^cpu /{ t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        dt = y[1] - x[1]; printf "%.0f", (dt > 0 ? 100 * (y[2] - x[2]) / dt : 0) }'
}

# Waits until the machine is idle enough (other builds share it), bounded by
# IDLE_WAIT_MAX; echoes the last idle value, with "!" when the bound hit.
wait_idle() {
    local idle deadline=$((SECONDS + IDLE_WAIT_MAX))
    while :; do
        idle=$(idle_pct)
        if ((idle >= IDLE_MIN)); then echo "$idle"; return; fi
        if ((SECONDS >= deadline)); then
            log "machine still busy (idle ${idle}%) after ${IDLE_WAIT_MAX}s; measuring anyway"
            echo "${idle}!"
            return
        fi
        log "waiting for idle CPU (now ${idle}%, want ${IDLE_MIN}%)"
    done
}

# A fresh ticket: sets COOKIE and PREFIX.
get_ticket() {
    local out
    out=$(timeout 15 "$BENCH" ticket --url "$TICKET_URL") || die "could not get a ticket from $TICKET_URL"
    COOKIE=$(sed -n 1p <<<"$out")
    PREFIX=$(sed -n 2p <<<"$out")
}

# wrk latency value ("812.00us", "1.23ms", "2.01s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "nan" }'
}

# One run of a target, measured again (up to RUN_ATTEMPTS times) while the
# hypervisor takes more than STEAL_MAX_PCT % of the machine's CPU during it:
# such a run measures the neighbours, not the proxy. Args: target-name
# connections url repetition. The kept run goes to $WORK/results.tsv, the
# others to $WORK/disturbed.tsv (both listed in the report).
run_one() {
    local name=$1 conns=$2 url=$3 rep=$4 attempt stolen max
    max=$(awk -v n="$(nproc)" -v d="${DURATION%s}" -v p="$STEAL_MAX_PCT" 'BEGIN { printf "%.2f", n * d * p / 100 }')
    for ((attempt = 1; ; attempt++)); do
        measure_one "$name" "$conns" "$url" "$rep" "$WORK/attempt.tsv"
        stolen=$(awk -F'\t' '{ print $17 }' "$WORK/attempt.tsv")
        if ((attempt < RUN_ATTEMPTS)) && awk -v s="$stolen" -v m="$max" 'BEGIN { exit !(s > m) }'; then
            log "$name, $conns connections: $stolen CPU s stolen during the run (more than $max): measuring again"
            cat "$WORK/attempt.tsv" >>"$WORK/disturbed.tsv"
            continue
        fi
        cat "$WORK/attempt.tsv" >>"$WORK/results.tsv"
        return
    done
}

# One measured run. Args: target-name connections url repetition out-file.
# Writes one line to the out-file:
# target conns idle reqs p50 p90 p99 non2xx sockerr cpu_wrk cpu_backend cpu_proxy cpu_others rep
# cpu_proxy_user cpu_proxy_kernel cpu_stolen tcp_segs_per_req proxy_ctx_per_req
measure_one() {
    local name=$1 conns=$2 url=$3 rep=$4 dest=$5
    local idle
    idle=$(wait_idle)
    get_ticket
    if [[ $name == wicket ]]; then url="http://127.0.0.1:$WICKET_PORT$PREFIX/hello"; fi
    # Same request headers for all: only the path differs.
    # relay-fwd: the fields wicket sends the pod instead of the cookie it
    # strips, so the backend reads what it reads behind wicket.
    local headers=(-H "Cookie: $COOKIE")
    if [[ $name == relay-fwd ]]; then
        headers=(-H "X-Forwarded-For: 127.0.0.1" -H "X-Forwarded-Host: 127.0.0.1:$WICKET_PORT"
            -H "X-Origin-Host: 127.0.0.1:$WICKET_PORT" -H "X-Forwarded-Proto: http" -H "X-Forwarded-Prefix: $PREFIX")
    fi
    local check
    check=$(curl -s --max-time 5 "${headers[@]}" "$url") || true
    [[ $check == "hello, world" ]] || die "$name: $url answered '$check', not the backend's hello"

    local proxy_pids=()
    case $name in
    nginx | nginx-fwd) mapfile -t proxy_pids < <(nginx_pids) ;;
    relay | relay-fwd) proxy_pids=("$RELAY_PID") ;;
    wicket) proxy_pids=("$WICKET_PID") ;;
    esac
    local b0 p0 w0 m0 b1 p1 w1 m1 out u0 k0 u1 k1 st0 st1 sg0 sg1 cx0 cx1
    b0=$(cpu_ticks "$BACKEND_PID")
    p0=$(cpu_ticks "${proxy_pids[@]}")
    read -r u0 k0 < <(cpu_split "${proxy_pids[@]}")
    w0=$(child_ticks)
    m0=$(machine_ticks)
    st0=$(steal_ticks)
    sg0=$(tcp_out_segs)
    cx0=$(ctx_switches "${proxy_pids[@]}")
    log "$name, $conns connections, run $rep/$REPEAT: wrk -t$THREADS -c$conns -d$DURATION $url (idle before ${idle}%)"
    # Bounded: wrk stops itself after DURATION; timeout guards a hang.
    out=$(timeout 120 wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "${headers[@]}" "$url")
    m1=$(machine_ticks)
    st1=$(steal_ticks)
    sg1=$(tcp_out_segs)
    cx1=$(ctx_switches "${proxy_pids[@]}")
    w1=$(child_ticks)
    b1=$(cpu_ticks "$BACKEND_PID")
    p1=$(cpu_ticks "${proxy_pids[@]}")
    read -r u1 k1 < <(cpu_split "${proxy_pids[@]}")
    printf '%s\n' "$out" >"$WORK/wrk-$name-$conns-$rep.txt"

    local reqs p50 p90 p99 non2xx sockerr count segs ctx="-"
    reqs=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    count=$(awk '/ requests in / { print $1 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p90=$(to_ms "$(awk '$1 == "90%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    sockerr=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' <<<"$out")
    [[ -n $reqs && ${count:-0} -gt 0 ]] || die "$name: could not read wrk output: $out"
    segs=$(awk -v n=$((sg1 - sg0)) -v r="$count" 'BEGIN { printf "%.2f", n / r }')
    if ((${#proxy_pids[@]})); then
        ctx=$(awk -v n=$((cx1 - cx0)) -v r="$count" 'BEGIN { printf "%.3f", n / r }')
    fi
    local cpu_proxy="-" cpu_user="-" cpu_kernel="-" ours=$(((w1 - w0) + (b1 - b0)))
    if ((${#proxy_pids[@]})); then
        cpu_proxy=$(ticks_to_s $((p1 - p0)))
        cpu_user=$(ticks_to_s $((u1 - u0))) cpu_kernel=$(ticks_to_s $((k1 - k0)))
        ours=$((ours + p1 - p0))
    fi
    # Other processes' CPU during the run (never below 0: rounding of ticks).
    local others=$(((m1 - m0) - ours))
    if ((others < 0)); then others=0; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$idle" "$reqs" "$p50" "$p90" "$p99" \
        "${non2xx:-0}" "${sockerr:-none}" "$(ticks_to_s $((w1 - w0)))" "$(ticks_to_s $((b1 - b0)))" "$cpu_proxy" \
        "$(ticks_to_s "$others")" "$rep" "$cpu_user" "$cpu_kernel" "$(ticks_to_s $((st1 - st0)))" "$segs" "$ctx" >"$dest"
    log "$name, $conns connections: $reqs req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${non2xx:-0}, CPU s stolen $(ticks_to_s $((st1 - st0)))"
}

# Ticket issue latency, sequential and with a few sockets in flight.
ticket_latency() {
    local c idle out
    for c in 1 4; do
        idle=$(wait_idle)
        log "ticket latency: $TICKETS tickets, concurrency $c (idle before ${idle}%)"
        out=$(timeout 300 "$BENCH" ticket-latency --url "$TICKET_URL" --count "$TICKETS" --concurrency "$c" --kv)
        printf '%s idle=%s\n' "$out" "$idle" >>"$WORK/tickets.txt"
        log "ticket latency: $out"
        # Let the unused tickets expire (3 s) before the next batch.
        sleep 4
    done
}

policy_bench() {
    local idle
    idle=$(wait_idle)
    log "policy bench (idle before ${idle}%)"
    POLICY_IDLE=$idle
    (cd "$ROOT" && timeout 900 cargo bench -q -p wicket --bench policy) >"$WORK/policy.txt" 2>"$WORK/policy.err" \
        || die "policy bench failed: $(tail -5 "$WORK/policy.err")"
    cat "$WORK/policy.txt" >&2
}

# --- report -----------------------------------------------------------------

# Median over the repetitions of column $3 for target $1 at $2 connections
# ("-" when the column has no numbers, e.g. the proxy CPU of "direct").
field() {
    awk -F'\t' -v t="$1" -v c="$2" -v f="$3" '$1 == t && $2 == c && $f != "-" { print $f }' "$WORK/results.tsv" | median
}
# Field $4 of target $1 over that of target $2 at $3 connections, round by
# round: "1.18×, 1.22×, … (median 1.20×)".
paired() {
    local ratios
    ratios=$(awk -F'\t' -v a="$1" -v b="$2" -v c="$3" -v f="$4" '
        $2 == c && $1 == a { x[$14] = $f }
        $2 == c && $1 == b { y[$14] = $f }
        END { for (r = 1; r in x || r in y; r++) if (r in x && r in y && y[r] > 0) print x[r] / y[r] }' "$WORK/results.tsv")
    if [[ -z $ratios ]]; then
        echo "n/a"
        return
    fi
    printf '%s (median %.2f×)\n' "$(awk '{ printf "%s%.2f×", sep, $1; sep = ", " }' <<<"$ratios")" "$(median <<<"$ratios")"
}
# CPU seconds $1 over $2 req/s for DURATION, in µs per request ("-" stays).
per_req() { awk -v p="$1" -v r="$2" -v d="${DURATION%s}" 'BEGIN { if (p == "-" || r <= 0) print "-"; else printf "%.1f", 1e6 * p / (r * d) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# The same cut (not rounded) to three decimals, for a ratio held against a
# target: rounded, a 1.1995 would print, and pass, as 1.20.
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", int(a / b * 1000 + 1e-9) / 1000; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if "$@"; then echo "**met**"; else echo "**missed**"; fi; }
both_lt() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { exit !(a < l && b < l) }'; }
kv() { sed -n "${1}p" "$WORK/tickets.txt" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

write_report() {
    local cpu
    # BENCH_COMMIT names the source when it is not a git checkout (e.g. a
    # `git archive` snapshot benchmarked away from a busy work tree).
    local commit dirty=""
    if [[ -n ${BENCH_COMMIT:-} ]]; then
        commit=$BENCH_COMMIT
    else
        commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        if git -C "$ROOT" status --porcelain 2>/dev/null | grep -q .; then dirty=" (work tree has uncommitted changes)"; fi
    fi
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    # The sections bench/soak.sh, scale.sh, abuse.sh and store.sh write are kept, and so
    # are those written from other tools (the simulator, the Python and
    # JavaScript policies' `policy check`).
    local kept=$WORK/kept.md
    : >"$kept"
    if [[ -f $OUT ]]; then
        awk '/^## / { keep = ($0 ~ /^## (Soak|Scale|Abuse|Store|Simulator|Python and JavaScript policies)/) } keep' "$OUT" >"$kept"
    fi
    {
        echo "# wicket benchmark results"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
        echo "- commit: \`$commit\`$dirty"
        echo "- command: \`$COMMAND_LINE\`"
        echo "- tools: $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(rustc --version 2>/dev/null | awk '{ print $1, $2 }')"
        echo "- setup: one backend (\`wicket demo-app\`, GET …/hello → 13 bytes) behind each front door; wrk \`-t$THREADS -d$DURATION --latency\`,"
        echo "  the same \`Cookie: <pod>-<uid>-stoken=<token>\` header on every request (fresh ticket per run); all on one 2-core machine,"
        echo "  so wrk, proxy and backend share the same cores. nginx: \`worker_processes auto\`, \`access_log off\`, upstream \`keepalive 256\`,"
        echo "  \`proxy_http_version 1.1\`, \`proxy_set_header Connection \"\"\`; nginx-fwd: the same nginx, plus what wicket does to a request"
        echo "  (prefix stripped, the user's Host kept, X-Forwarded-For/-Host/-Proto/-Prefix and X-Origin-Host set), so the backend does the"
        echo "  same work behind both. relay: \`wicket-bench relay\`, bytes copied both ways with nothing parsed (the most any proxy"
        echo "  could do here); relay-fwd: the same relay with wrk sending the five forwarding fields instead of the cookie, so the"
        echo "  backend reads what it reads behind wicket. wicket: \`wicket demo\`, the backend as its only static pod."
        echo "  Verdicts are against plain nginx."
        echo "- before every run the script waits (≤ ${IDLE_WAIT_MAX} s) for ≥ $IDLE_MIN% idle CPU over 2 s; the idle values are in raw/results.tsv beside this report."
        echo "  A run during which the hypervisor took (steal) more than $STEAL_MAX_PCT % of the machine's CPU is measured again, up to $RUN_ATTEMPTS times in all."
        echo "  The runs set aside are listed under each table and kept in raw/disturbed.tsv."
        echo "- CPU s: utime+stime during the run from /proc (proxy = nginx master+workers, or the wicket process);"
        echo "  others = the whole machine's busy CPU during the run minus those three (another build on this shared"
        echo "  machine: a run with several CPU s of others is disturbed); stolen = the CPU time the hypervisor gave"
        echo "  other guests while this VM wanted it (/proc/stat steal: the machine itself was slower). proxy CPU µs/req = proxy CPU s / (req/s × duration),"
        echo "  split into user (the proxy's own code and libraries) and kernel (its syscalls: loopback TCP, epoll, wake-ups)."
        echo "- TCP segs/req: segments the machine sent (/proc/net/snmp OutSegs) per request. Through a proxy on pooled keep-alive"
        echo "  connections that is 4 (user → proxy → pod → proxy → user); pure ACKs, connection set-ups or closes would add to it."
        echo "  proxy ctx sw/req: context switches (voluntary and involuntary) of the proxy's threads per request."
        echo
        local c
        for c in $CONNS; do
            echo "## $c connections"
            echo
            echo "Medians of $REPEAT interleaved runs; the last column lists every run as req/s @ p99 ms [CPU s others, stolen]."
            echo
            echo "| target | req/s | p50 ms | p90 ms | p99 ms | non-2xx (all runs) | socket errors (runs with any) | CPU s wrk | CPU s backend | CPU s proxy | CPU s others | CPU s stolen | proxy CPU µs/req | user µs/req | kernel µs/req | TCP segs/req | proxy ctx sw/req | runs |"
            echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            local t
            for t in "${TARGETS[@]}"; do
                local reqs proxy per user kernel runs non2xx sockerr
                reqs=$(field "$t" "$c" 4) proxy=$(field "$t" "$c" 12)
                per=$(per_req "$proxy" "$reqs") user=$(per_req "$(field "$t" "$c" 15)" "$reqs") kernel=$(per_req "$(field "$t" "$c" 16)" "$reqs")
                non2xx=$(awk -F'\t' -v t="$t" -v c="$c" '$1 == t && $2 == c { n += $8 } END { print n + 0 }' "$WORK/results.tsv")
                sockerr=$(awk -F'\t' -v t="$t" -v c="$c" '$1 == t && $2 == c && $9 != "none" { printf "%srun %s: %s", sep, $14, $9; sep = "; " } END { if (!sep) print "none" }' "$WORK/results.tsv")
                runs=$(awk -F'\t' -v t="$t" -v c="$c" '$1 == t && $2 == c { printf "%s%.0f @ %s [%s, %s]", sep, $4, $7, $13, ($17 == "" ? "-" : $17); sep = ", " }' "$WORK/results.tsv")
                printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$reqs" "$(field "$t" "$c" 5)" \
                    "$(field "$t" "$c" 6)" "$(field "$t" "$c" 7)" "$non2xx" "$sockerr" "$(field "$t" "$c" 10)" "$(field "$t" "$c" 11)" \
                    "$proxy" "$(field "$t" "$c" 13)" "$(field "$t" "$c" 17)" "$per" "$user" "$kernel" "$(field "$t" "$c" 18)" "$(field "$t" "$c" 19)" "$runs"
            done
            local wr nr wp np redo
            redo=$(awk -F'\t' -v c="$c" '$2 == c { printf "%s%s run %s: %.0f @ %s [%s stolen]", sep, $1, $14, $4, $7, $17; sep = "; " }' "$WORK/disturbed.tsv")
            echo
            echo "Runs measured again (the hypervisor took more than $STEAL_MAX_PCT % of the machine's CPU during them), with what they gave: ${redo:-none}."
            wr=$(field wicket "$c" 4) nr=$(field nginx "$c" 4) wp=$(field wicket "$c" 7) np=$(field nginx "$c" 7)
            echo
            echo "- wicket/nginx req/s: **$(ratio3 "$wr" "$nr")×** (target ≥ 1.20×: $(verdict ge "$(ratio3 "$wr" "$nr")" 1.2))"
            echo "- the same ratio round by round (in a round the two runs are one run apart, so a drifting machine moves"
            echo "  both): $(paired wicket nginx "$c" 4)"
            echo "- wicket/nginx p99: **$(ratio "$wp" "$np")×** ($wp ms vs $np ms; target ≤ 1.00×: $(verdict le "$wp" "$np"))"
            echo "  round by round: $(paired wicket nginx "$c" 7)"
            local fr fp
            fr=$(field nginx-fwd "$c" 4) fp=$(field nginx-fwd "$c" 7)
            echo "- against nginx doing the same header work (nginx-fwd): req/s **$(ratio "$wr" "$fr")×**, p99 **$(ratio "$wp" "$fp")×** ($wp ms vs $fp ms)"
            echo "- wicket/direct req/s: $(ratio "$wr" "$(field direct "$c" 4)")×; nginx/direct req/s: $(ratio "$nr" "$(field direct "$c" 4)")×"
            echo "- the byte relay, the most any proxy could reach here: relay/nginx **$(ratio "$(field relay "$c" 4)" "$nr")×**;"
            echo "  sending the fields wicket sends: relay-fwd/nginx **$(ratio "$(field relay-fwd "$c" 4)" "$nr")×**, wicket/relay-fwd $(ratio "$wr" "$(field relay-fwd "$c" 4)")×"
            # What the req/s target asks of user space: the same CPU budget
            # (wrk + backend + proxy of the wicket runs) with the proxy's
            # user-space CPU removed entirely.
            local ceiling
            ceiling=$(awk -v r="$wr" -v w="$(field wicket "$c" 10)" -v b="$(field wicket "$c" 11)" -v p="$(field wicket "$c" 12)" \
                -v k="$(field wicket "$c" 16)" 'BEGIN { if (w + b + k > 0) printf "%.0f", r * (w + b + p) / (w + b + k); else print 0 }')
            echo "- ceiling: with **zero** user-space CPU in wicket (its kernel work only), the CPU these runs used would serve"
            echo "  ≈ $ceiling req/s = **$(ratio "$ceiling" "$nr")× nginx** — the most any user-space work on this path could reach here."
            echo
        done
        echo "## Ticket issue latency"
        echo
        echo "\`wicket-bench ticket-latency\`: connect start → \`tkn#\` received, one WebSocket per ticket, $TICKETS tickets after 20 untimed."
        echo
        echo "| concurrency | count | p50 µs | p90 µs | p99 µs | max µs | idle % | target p99 < 500 µs |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        local line
        for line in 1 2; do
            echo "| $(kv "$line" concurrency) | $(kv "$line" count) | $(kv "$line" p50_us) | $(kv "$line" p90_us) | $(kv "$line" p99_us) | $(kv "$line" max_us) | $(kv "$line" idle) | $(verdict lt "$(kv "$line" p99_us)" 500) |"
        done
        echo
        echo "## Policy decision (default policy, \`cargo bench -p wicket --bench policy\`)"
        echo
        echo "Idle before: ${POLICY_IDLE}%."
        echo
        echo '```'
        cat "$WORK/policy.txt"
        echo '```'
        echo
        local a100 s100 a1000 s1000
        # The first table (`call`) has rows named by the pod count alone.
        a100=$(awk '$1 == "100" { print $2; exit }' "$WORK/policy.txt") s100=$(awk '$1 == "100" { print $4; exit }' "$WORK/policy.txt")
        a1000=$(awk '$1 == "1000" { print $2; exit }' "$WORK/policy.txt") s1000=$(awk '$1 == "1000" { print $4; exit }' "$WORK/policy.txt")
        echo "Verdicts use the \`call\` table (the policy call itself); the \`runner thread\` table is the decision as the"
        echo "running host makes it (plus snapshot conversion, invariant checks and the hop to the policy thread)."
        echo
        echo "| pods | assign p50 µs | scale p50 µs | target (median) | verdict |"
        echo "| ---: | ---: | ---: | --- | --- |"
        echo "| 100 | $a100 | $s100 | < 5 µs | $(verdict both_lt "$a100" "$s100" 5) |"
        echo "| 1000 | $a1000 | $s1000 | < 50 µs | $(verdict both_lt "$a1000" "$s1000" 50) |"
        echo
        echo "## Targets"
        echo
        echo "| target | result |"
        echo "| --- | --- |"
        for c in $CONNS; do
            local wr nr wp np
            wr=$(field wicket "$c" 4) nr=$(field nginx "$c" 4) wp=$(field wicket "$c" 7) np=$(field nginx "$c" 7)
            echo "| $c conns: wicket ≥ 1.2× nginx req/s | $(ratio3 "$wr" "$nr")× — $(verdict ge "$(ratio3 "$wr" "$nr")" 1.2) |"
            echo "| $c conns: wicket p99 ≤ nginx p99 | $wp ms vs $np ms — $(verdict le "$wp" "$np") |"
        done
        for line in 1 2; do
            echo "| ticket issue p99 < 0.5 ms (concurrency $(kv "$line" concurrency)) | $(kv "$line" p99_us) µs — $(verdict lt "$(kv "$line" p99_us)" 500) |"
        done
        echo "| policy p50 < 5 µs at 100 pods (assign, scale) | $a100 µs, $s100 µs — $(verdict both_lt "$a100" "$s100" 5) |"
        echo "| policy p50 < 50 µs at 1,000 pods (assign, scale) | $a1000 µs, $s1000 µs — $(verdict both_lt "$a1000" "$s1000" 50) |"
        if [[ -f $ROOT/bench/NOTES.md ]]; then
            echo
            cat "$ROOT/bench/NOTES.md"
        fi
        if [[ -s $kept ]]; then
            echo
            cat "$kept"
        fi
    } >"$OUT"
    log "report written to $OUT"
}

main() {
    ensure_tools
    build_all
    [[ -x $WICKET && -x $BENCH ]] || die "missing $WICKET or $BENCH"
    printf '# target\tconns\tidle%%\treq/s\tp50ms\tp90ms\tp99ms\tnon2xx\tsockerr\tcpu_wrk\tcpu_backend\tcpu_proxy\tcpu_others\trep\tcpu_proxy_user\tcpu_proxy_kernel\tcpu_stolen\ttcp_segs_per_req\tproxy_ctx_per_req\n' >"$WORK/results.tsv"
    : >"$WORK/tickets.txt"
    : >"$WORK/disturbed.tsv"
    start_backend
    start_nginx
    start_relay
    start_wicket_proxy
    log "backend :$BACKEND_PORT, relay :$RELAY_PORT, nginx :$NGINX_PORT, wicket :$WICKET_PORT (pids $BACKEND_PID $RELAY_PID $NGINX_PID $WICKET_PID)"
    get_ticket # the pod is registered and the policy answers

    # Interleaved, so a burst of foreign load hits one run of each target
    # rather than all runs of one; every other round goes in reverse order,
    # so a machine that speeds up or slows down during the run (seen here:
    # 20-50 % within minutes) favours no target.
    local c r t
    local -A urls=(
        [direct]="http://127.0.0.1:$BACKEND_PORT/hello"
        [relay]="http://127.0.0.1:$RELAY_PORT/hello"
        [relay-fwd]="http://127.0.0.1:$RELAY_PORT/hello"
        [nginx]="http://127.0.0.1:$NGINX_PORT/hello"
        [nginx-fwd]="http://127.0.0.1:$NGINX_FWD_PORT/app/hello"
        [wicket]="(per ticket)"
    )
    for c in $CONNS; do
        for ((r = 1; r <= REPEAT; r++)); do
            local order=("${TARGETS[@]}")
            if ((r % 2 == 0)); then
                local i reversed=()
                for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do reversed+=("${TARGETS[i]}"); done
                order=("${reversed[@]}")
            fi
            for t in "${order[@]}"; do
                run_one "$t" "$c" "${urls[$t]}" "$r"
            done
        done
    done
    ticket_latency
    policy_bench
    write_report
    # Raw wrk outputs, for whoever wants more than the table.
    # Beside the report (bench/raw for the default OUT).
    local raw
    raw="$(dirname "$OUT")/raw"
    # Only this script's files: raw/soak, raw/scale, raw/abuse stay.
    mkdir -p "$raw"
    find "$raw" -maxdepth 1 -type f -delete
    cp "$WORK"/wrk-*.txt "$WORK/results.tsv" "$WORK/disturbed.tsv" "$WORK/tickets.txt" "$WORK/policy.txt" "$raw/"
}

main "$@"
