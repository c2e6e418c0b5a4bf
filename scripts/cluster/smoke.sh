#!/usr/bin/env bash
# Step functions run indirectly (through `step` and the EXIT trap):
# shellcheck disable=SC2317
# smoke.sh — end-to-end check of the test control plane with kubectl:
# build (cached), start, RBAC + TokenRequest, workloads, pod status
# subresource, apiserver restart on the same etcd, stop.
#
#   scripts/cluster/smoke.sh
#
# Prints PASS/FAIL per step and a closing "smoke: N passed, N failed" line.
# Stops at the first failure (later steps depend on earlier ones) and exits
# non-zero; the run directory is then kept for its logs.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"
LOG_TAG="smoke"

NS="smoke"
SA="reader"
POD="p1"
# Loopback address a controller would dial for this pod (nothing listens).
POD_IP="127.0.0.2"
# Image names are only stored; no kubelet ever pulls them.
IMAGE="registry.k8s.io/pause:3.10"
# How long the apiserver stays down in the restart step.
APISERVER_DOWN_SECONDS=2

PASSED=0
FAILED=0
RUN_DIR=""
STEP_LOG=""

# --- step runner -------------------------------------------------------------

summary() {
  printf 'smoke: %d passed, %d failed\n' "$PASSED" "$FAILED"
}

# step NAME CMD... — runs CMD in this shell (so it may set variables) with its
# output in STEP_LOG, prints PASS or FAIL. On FAIL shows the output and ends
# the run. CMD runs in a condition, where `set -e` does not apply: the step
# functions below return their status explicitly.
step() {
  local name="$1" start=$SECONDS
  shift
  if "$@" >"$STEP_LOG" 2>&1; then
    PASSED=$((PASSED + 1))
    printf 'PASS  %-68s %3ss\n' "$name" "$((SECONDS - start))"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL  %-68s %3ss\n' "$name" "$((SECONDS - start))"
    sed 's/^/      | /' "$STEP_LOG"
    exit 1
  fi
}

# On exit: stop the cluster (keeping its directory after a failure) and print
# the summary.
on_exit() {
  local status=$?
  if [[ -n "$RUN_DIR" && -f "${RUN_DIR}/${ENV_FILE_NAME}" ]]; then
    if ((status != 0)); then
      printf -- '----- kube-apiserver log tail -----\n'
      tail -n "$LOG_TAIL_LINES" "${RUN_DIR}/logs/kube-apiserver.log" 2>/dev/null || true
      KEEP_RUN_DIR=1 "${SCRIPT_DIR}/stop.sh" "$RUN_DIR" || true
      printf 'logs kept in %s\n' "$RUN_DIR"
    else
      "${SCRIPT_DIR}/stop.sh" "$RUN_DIR" || true
    fi
  fi
  rm -f "$STEP_LOG"
  summary
  exit "$status"
}

# --- checks ------------------------------------------------------------------

k() {
  "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"
}

# Runs kubectl as the service account (its token overrides the admin one).
k_as_sa() {
  k --token="$SA_TOKEN" "$@"
}

# expect_eq WANT CMD... — CMD's stdout must equal WANT.
expect_eq() {
  local want="$1" got
  shift
  got="$("$@")"
  [[ "$got" == "$want" ]] || {
    printf 'want: %s\ngot:  %s\n' "$want" "$got"
    return 1
  }
  printf '%s\n' "$got"
}

# expect_forbidden CMD... — CMD must fail with a Forbidden error.
expect_forbidden() {
  local out
  if out="$("$@" 2>&1)"; then
    printf 'unexpectedly allowed:\n%s\n' "$out"
    return 1
  fi
  grep -q 'Forbidden' <<<"$out" || {
    printf 'failed, but not with Forbidden:\n%s\n' "$out"
    return 1
  }
  printf '%s\n' "$out"
}

do_build() {
  BIN_DIR="$("${SCRIPT_DIR}/build.sh")"
}

do_start() {
  RUN_DIR="$("${SCRIPT_DIR}/start.sh")" || return 1
  # shellcheck disable=SC1090
  source "${RUN_DIR}/${ENV_FILE_NAME}" || return 1
  printf 'run dir %s, apiserver %s\n' "$RUN_DIR" "$APISERVER_URL"
}

server_version() {
  k version -o json | jq -r '.serverVersion.gitVersion'
}

check_namespaces() {
  local out
  out="$(k get ns)" || return 1
  printf '%s\n' "$out"
  grep -qw default <<<"$out" && grep -qw kube-system <<<"$out"
}

request_token() {
  # TokenRequest API; the token is bound to the service account, 1 h.
  SA_TOKEN="$(k create token "$SA" -n "$NS" --duration=1h)"
  [[ -n "$SA_TOKEN" ]]
}

apply_deployment() {
  k apply -f - <<YAML || return 1
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ${NS}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ${IMAGE}
YAML
  expect_eq "apps/v1 2" k get deployment web -n "$NS" -o jsonpath='{.apiVersion} {.spec.replicas}'
}

apply_pod() {
  k apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: ${POD}
  namespace: ${NS}
  labels: {app: web}
spec:
  containers:
  - name: web
    image: ${IMAGE}
YAML
}

patch_pod_status() {
  k patch pod "$POD" -n "$NS" --subresource=status --type=merge -p "$(
    cat <<JSON
{"status": {
  "phase": "Running",
  "podIP": "${POD_IP}",
  "podIPs": [{"ip": "${POD_IP}"}],
  "conditions": [{"type": "Ready", "status": "True"}]
}}
JSON
  )"
}

# The pod as a test would see it: phase, IP and Ready condition.
pod_summary() {
  k get pod "$POD" -n "$NS" \
    -o jsonpath='{.status.phase} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status}'
}

check_pod_status() {
  expect_eq "Running ${POD_IP} True" pod_summary
}

stop_apiserver() {
  "${SCRIPT_DIR}/apiserver.sh" stop "$RUN_DIR" || return 1
  if curl -sk --max-time 2 "${APISERVER_URL}/readyz" >/dev/null 2>&1; then
    echo "apiserver still answers after stop"
    return 1
  fi
  pid_alive "$(env_get "$RUN_DIR" ETCD_PID)" || {
    echo "etcd died with the apiserver"
    return 1
  }
  echo "apiserver down, etcd up"
  sleep "$APISERVER_DOWN_SECONDS"
}

start_apiserver() {
  "${SCRIPT_DIR}/apiserver.sh" start "$RUN_DIR" || return 1
  [[ "$(env_get "$RUN_DIR" APISERVER_URL)" == "$APISERVER_URL" ]]
}

stop_cluster() {
  local apiserver_pid etcd_pid
  apiserver_pid="$(env_get "$RUN_DIR" APISERVER_PID)"
  etcd_pid="$(env_get "$RUN_DIR" ETCD_PID)"
  "${SCRIPT_DIR}/stop.sh" "$RUN_DIR" || return 1
  if pid_alive "$apiserver_pid" || pid_alive "$etcd_pid" || [[ -e "$RUN_DIR" ]]; then
    echo "something survived stop.sh"
    return 1
  fi
  RUN_DIR=""
}

main() {
  STEP_LOG="$(mktemp)"
  trap on_exit EXIT
  step "build control plane (build.sh, cached)" do_build
  step "start etcd + kube-apiserver (start.sh)" do_start
  printf '      run dir %s, apiserver %s, v%s / etcd %s\n' \
    "$RUN_DIR" "$APISERVER_URL" "$K8S_VERSION" "$ETCD_VERSION"
  step "kubectl version matches the server" \
    expect_eq "v${K8S_VERSION}" server_version
  step "kubectl get ns" check_namespaces
  step "create namespace ${NS}" k create namespace "$NS"
  step "create ServiceAccount ${NS}/${SA}" k create serviceaccount "$SA" -n "$NS"
  step "create Role pod-reader (pods get,list)" \
    k create role pod-reader -n "$NS" --verb=get,list --resource=pods
  step "create RoleBinding pod-reader -> ${SA}" \
    k create rolebinding pod-reader -n "$NS" --role=pod-reader --serviceaccount="${NS}:${SA}"
  step "kubectl create token (TokenRequest API)" request_token
  step "token identifies system:serviceaccount:${NS}:${SA}" \
    expect_eq "system:serviceaccount:${NS}:${SA}" k_as_sa auth whoami -o jsonpath='{.status.userInfo.username}'
  step "token can list pods in ${NS}" k_as_sa get pods -n "$NS"
  step "token is Forbidden to list secrets in ${NS}" expect_forbidden k_as_sa get secrets -n "$NS"
  step "token is Forbidden to list pods in default" expect_forbidden k_as_sa get pods -n default
  step "create Deployment web (apps/v1)" apply_deployment
  step "create Pod ${POD}" apply_pod
  step "patch pod status Running/Ready, podIP ${POD_IP} (status subresource)" patch_pod_status
  step "read pod status back" check_pod_status
  step "stop kube-apiserver only (etcd keeps running)" stop_apiserver
  step "start kube-apiserver again (same etcd and port)" start_apiserver
  step "pod and its status survived the restart" check_pod_status
  step "deployment survived the restart" \
    expect_eq "2" k get deployment web -n "$NS" -o jsonpath='{.spec.replicas}'
  step "service-account token still valid after restart" k_as_sa get pods -n "$NS"
  step "stop everything (stop.sh)" stop_cluster
}

main "$@"; exit
