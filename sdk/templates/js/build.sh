#!/usr/bin/env bash
# Builds __NAME__.wasm, a wicket:policy@0.2.0 component, with jco on the
# QuickJS backend (1.6 MB, 2 MiB of memory; the host needs no async support).
#   ./build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/__NAME__.wasm}")"
. "$here/tools.sh"
cd "$here"
"$JCO" componentize ./component.js --cwd . --wit wit --world-name policy \
    --backend quickjs --backend-qjs-disable-async -o "$out" >&2
echo "$out: $(stat -c %s "$out") bytes" >&2
