# shellcheck shell=bash
# common.sh — shared settings and helpers for the wicket test control plane.
# Sourced by build.sh, start.sh, apiserver.sh, stop.sh and smoke.sh; not run on its own.
#
# Versions are pinned here (overridable from the environment) so that the cache
# key is known without touching the network; this is what lets build.sh return
# in well under a second when the binaries are already cached.

# Kubernetes release to build kube-apiserver and kubectl from. It must match
# the k8s-openapi feature used on the Rust side (v1_37). 1.37.2 is the newest
# 1.37 patch the Go module proxy serves (checked with
# `go list -m -versions k8s.io/kubernetes`).
K8S_VERSION="${K8S_VERSION:-1.37.2}"
K8S_VERSION="${K8S_VERSION#v}"

# etcd release. Kubernetes 1.37 expects etcd 3.7.x (hack/lib/etcd.sh pins
# ETCD_VERSION=3.7.0; kubeadm's DefaultEtcdVersion is 3.7.0-0); 3.7.3 is the
# newest 3.7 patch on the module proxy.
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
ETCD_VERSION="${ETCD_VERSION#v}"

# Everything built or downloaded lives outside the repository.
WICKET_CACHE="${WICKET_CACHE:-$HOME/.cache/wicket}"
CP_CACHE="${WICKET_CACHE}/control-plane"
CP_KEY="${K8S_VERSION}-etcd${ETCD_VERSION}"
CP_DIR="${CP_CACHE}/${CP_KEY}"
BIN_DIR="${CP_DIR}/bin"

# Name of the env file start.sh writes into a run directory; its presence also
# marks a directory as "ours" so that stop.sh may delete it.
ENV_FILE_NAME="cluster.env"

# The binaries a complete cache entry holds.
CP_BINARIES=(kube-apiserver kubectl etcd)

# Seconds since the script started (bash's SECONDS), formatted as 1m05s.
elapsed() {
  printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60))
}

# Progress and errors go to stderr so stdout stays machine-readable.
log() {
  printf '[%s %s] %s\n' "${LOG_TAG:-cluster}" "$(elapsed)" "$*" >&2
}

die() {
  printf '[%s %s] ERROR: %s\n' "${LOG_TAG:-cluster}" "$(elapsed)" "$*" >&2
  exit 1
}

# True when every binary of the cache entry is present and executable.
binaries_cached() {
  local b
  for b in "${CP_BINARIES[@]}"; do
    [[ -x "${BIN_DIR}/${b}" ]] || return 1
  done
}

# Reads KEY from a run directory's env file (start.sh writes simple KEY=VALUE lines).
env_get() {
  local run_dir="$1" key="$2"
  sed -n "s/^${key}=//p" "${run_dir}/${ENV_FILE_NAME}" | tail -n 1
}

# Replaces (or appends) KEY=VALUE in a run directory's env file.
env_set() {
  local run_dir="$1" key="$2" value="$3" file
  file="${run_dir}/${ENV_FILE_NAME}"
  if grep -q "^${key}=" "$file"; then
    sed -i "s|^${key}=.*|${key}=${value}|" "$file"
  else
    printf '%s=%s\n' "$key" "$value" >>"$file"
  fi
}

# Checks that a run directory was made by start.sh and loads nothing else.
require_run_dir() {
  local run_dir="${1:-}"
  [[ -n "$run_dir" ]] || die "missing RUNDIR argument"
  [[ -f "${run_dir}/${ENV_FILE_NAME}" ]] || die "${run_dir} is not a run directory made by start.sh (no ${ENV_FILE_NAME})"
}

# True when PID names a live process (that is not a zombie).
pid_alive() {
  local pid="$1" state
  [[ -n "$pid" ]] || return 1
  state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

# Sends SIGTERM to PID, waits up to TIMEOUT seconds, then SIGKILLs it.
stop_pid() {
  local pid="$1" name="$2" timeout="${3:-30}" waited=0
  pid_alive "$pid" || return 0
  log "stopping ${name} (pid ${pid})"
  kill -TERM "$pid" 2>/dev/null || true
  # Poll in 0.2 s steps: 5 polls per second.
  while pid_alive "$pid" && ((waited < timeout * 5)); do
    sleep 0.2
    waited=$((waited + 1))
  done
  if pid_alive "$pid"; then
    log "${name} did not exit after ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
}

# --- kube-apiserver lifecycle (used by start.sh and apiserver.sh) ------------

# Seconds to wait for /readyz after launching kube-apiserver.
APISERVER_READY_TIMEOUT="${APISERVER_READY_TIMEOUT:-60}"
# Lines of a server log shown when it fails to start.
LOG_TAIL_LINES=40

# Prints the apiserver's /readyz body (expected: "ok"); fails if unreachable.
apiserver_readyz() {
  local run_dir="$1"
  curl -sk --max-time 2 \
    -H "Authorization: Bearer $(env_get "$run_dir" ADMIN_TOKEN)" \
    "$(env_get "$run_dir" APISERVER_URL)/readyz"
}

# Starts kube-apiserver with the arguments saved in RUNDIR/apiserver.args (one
# per line, written by start.sh), records its pid in the env file and waits
# until /readyz says ok. Keeps running in the background.
apiserver_launch() {
  local run_dir="$1" bin_dir pid log deadline body=""
  bin_dir="$(env_get "$run_dir" BIN_DIR)"
  log="${run_dir}/logs/kube-apiserver.log"
  local -a args
  mapfile -t args <"${run_dir}/apiserver.args"
  printf '\n===== kube-apiserver started %s =====\n' "$(date -u +%FT%TZ)" >>"$log"
  # nohup: survive the caller's terminal going away; all output to the log
  # and stdin from /dev/null so no caller pipe is held open.
  nohup "${bin_dir}/kube-apiserver" "${args[@]}" >>"$log" 2>&1 </dev/null &
  pid=$!
  env_set "$run_dir" APISERVER_PID "$pid"
  log "kube-apiserver pid ${pid} on $(env_get "$run_dir" APISERVER_URL); waiting for /readyz (up to ${APISERVER_READY_TIMEOUT}s)"
  deadline=$((SECONDS + APISERVER_READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! pid_alive "$pid"; then
      tail -n "$LOG_TAIL_LINES" "$log" >&2 || true
      die "kube-apiserver exited during start-up (log above; full log: ${log})"
    fi
    body="$(apiserver_readyz "$run_dir" 2>/dev/null || true)"
    if [[ "$body" == "ok" ]]; then
      log "kube-apiserver is ready"
      return 0
    fi
    sleep 0.5
  done
  printf -- '----- last /readyz answer -----\n%s\n' "${body:-<none>}" >&2
  printf -- '----- last %s lines of %s -----\n' "$LOG_TAIL_LINES" "$log" >&2
  tail -n "$LOG_TAIL_LINES" "$log" >&2 || true
  stop_pid "$pid" kube-apiserver
  die "kube-apiserver not ready after ${APISERVER_READY_TIMEOUT}s (see above)"
}

# Stops kube-apiserver (etcd keeps running) and waits for it to exit.
apiserver_stop() {
  local run_dir="$1" pid
  pid="$(env_get "$run_dir" APISERVER_PID)"
  if pid_alive "$pid"; then
    # A short grace: kube-apiserver waits for open watches (which never end
    # on their own) until it is killed; etcd holds the data, so a kill is safe.
    stop_pid "$pid" kube-apiserver "${APISERVER_STOP_TIMEOUT:-5}"
  else
    log "kube-apiserver is not running"
  fi
  env_set "$run_dir" APISERVER_PID ""
}
