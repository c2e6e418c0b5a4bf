#!/usr/bin/env bash
# stop.sh — stop the kube-apiserver and etcd of a cluster made by start.sh
# and delete its run directory.
#
#   scripts/cluster/stop.sh RUNDIR
#
# KEEP_RUN_DIR=1 keeps the directory (logs, etcd data) for inspection.
# Only a directory holding start.sh's cluster.env is ever deleted.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"
LOG_TAG="stop"

main() {
  local run_dir="${1:-}"
  require_run_dir "$run_dir"
  # apiserver first, so it does not log a storm of etcd errors.
  stop_pid "$(env_get "$run_dir" APISERVER_PID)" kube-apiserver
  stop_pid "$(env_get "$run_dir" ETCD_PID)" etcd
  if [[ "${KEEP_RUN_DIR:-0}" == 1 ]]; then
    env_set "$run_dir" APISERVER_PID ""
    env_set "$run_dir" ETCD_PID ""
    log "stopped; kept ${run_dir}"
  else
    rm -rf -- "$run_dir"
    log "stopped; removed ${run_dir}"
  fi
}

main "$@"; exit
