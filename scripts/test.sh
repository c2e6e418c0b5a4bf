#!/usr/bin/env bash
# Every test of wicket, on a fresh machine: installs what is missing, then
# format and lint checks, unit and loopback integration tests, the policy
# components' tests, the real control-plane tests and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
step "format" cargo fmt --all --check
step "lint" cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests" cargo test --workspace --locked
