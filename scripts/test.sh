#!/usr/bin/env bash
# Every test of wicket, on a fresh machine: installs what is missing, then
# format and lint checks, unit and loopback integration tests, the policy
# components' tests, the real control-plane tests and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
# A real kube-apiserver + etcd for the cluster tests, built from their Go
# modules once and cached outside the repo (~15 min cold, < 1 s cached).
step "control plane" scripts/cluster/build.sh
# Debian's Chromium and ChromeDriver for the browser tests.
step "browser" scripts/browser-deps.sh
# Debian's redis-server for the store's tests (host/tests/ha_store.rs and
# the store's unit tests start one per test on a free loopback port, with
# no persistence; the packaged service is not used).
step "redis" ensure_debs redis-server
# componentize-py and jco (cached), then the Python and JavaScript SDKs,
# example policies and templates, built from source and tested.
step "policy SDKs" scripts/test-policy-sdks.sh
# The Prometheus alert rules of deploy/monitoring/: promtool (Debian's
# prometheus package, installed if missing) checks them and runs their
# unit tests.
step "alert rules" scripts/check-alerts.sh
step "format" cargo fmt --all --check
step "lint" cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests" cargo test --workspace --locked
