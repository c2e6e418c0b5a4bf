#!/usr/bin/env bash
# Builds __NAME__.wasm, a wicket:policy@0.2.0 component, with componentize-py.
#   ./build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/__NAME__.wasm}")"
. "$here/tools.sh"
cd "$here"
"$(dirname "$POLICY_PY")/componentize-py" --wit-path wit --world policy componentize -p . policy -o "$out" >&2
echo "$out: $(stat -c %s "$out") bytes" >&2
