#!/usr/bin/env bash
# apiserver.sh — stop, start or restart ONLY kube-apiserver of a cluster made
# by start.sh; etcd keeps running, so all data survives. The apiserver comes
# back on the same port with the same certs, keys and tokens.
#
#   scripts/cluster/apiserver.sh stop    RUNDIR
#   scripts/cluster/apiserver.sh start   RUNDIR          # waits for /readyz
#   scripts/cluster/apiserver.sh restart RUNDIR [DOWN_SECONDS]
#   scripts/cluster/apiserver.sh status  RUNDIR          # exit 0 when ready
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"
LOG_TAG="apiserver"

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

main() {
  local cmd="${1:-}" run_dir="${2:-}"
  [[ -n "$cmd" && -n "$run_dir" ]] || usage
  require_run_dir "$run_dir"
  case "$cmd" in
    stop)
      apiserver_stop "$run_dir"
      ;;
    start)
      if pid_alive "$(env_get "$run_dir" APISERVER_PID)"; then
        die "kube-apiserver already running (pid $(env_get "$run_dir" APISERVER_PID))"
      fi
      pid_alive "$(env_get "$run_dir" ETCD_PID)" || die "etcd is not running; use start.sh for a new cluster"
      apiserver_launch "$run_dir"
      ;;
    restart)
      apiserver_stop "$run_dir"
      if [[ -n "${3:-}" ]]; then
        log "apiserver down for ${3}s"
        sleep "$3"
      fi
      apiserver_launch "$run_dir"
      ;;
    status)
      [[ "$(apiserver_readyz "$run_dir" 2>/dev/null || true)" == "ok" ]] || {
        log "kube-apiserver is not ready"
        exit 1
      }
      log "kube-apiserver is ready (pid $(env_get "$run_dir" APISERVER_PID))"
      ;;
    *) usage ;;
  esac
}

main "$@"; exit
