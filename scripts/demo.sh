#!/usr/bin/env bash
# The main job: builds wicket and runs `wicket demo` — the whole host with
# real backend processes as pods, no cluster needed. Open the printed URL.
# Extra arguments go to `wicket demo` (e.g. --config examples/wicket.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
step "building wicket (release; the first build takes a few minutes)" cargo build --release --locked -p wicket
exec target/release/wicket demo "$@"
