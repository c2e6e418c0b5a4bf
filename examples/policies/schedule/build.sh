#!/usr/bin/env bash
# Builds schedule.wasm (a wicket:policy@0.2.0 component) from policy.py and
# the Python SDK with componentize-py, installing the tools first if needed.
#
#   examples/policies/schedule/build.sh [OUT.wasm]   # default: ./schedule.wasm
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$(realpath -m "${1:-$here/schedule.wasm}")"
# shellcheck source=../../../scripts/policy-tools.sh
. "$root/scripts/policy-tools.sh"

cd "$here"
componentize-py --wit-path "$root/wit" --world policy \
    componentize -p "$here" -p "$root/sdk/python" policy -o "$out" >&2
echo "$out: $(stat -c %s "$out") bytes" >&2
