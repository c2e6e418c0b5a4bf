#!/usr/bin/env bash
# Builds predictive.wasm (a wicket:policy@0.2.0 component) from policy.js and
# the JavaScript SDK with jco on the QuickJS backend, installing the tools
# first if needed.
#
#   examples/policies/predictive/build.sh [OUT.wasm]   # default: ./predictive.wasm
#
# QuickJS, not the default StarlingMonkey: 1.6 MB and 2 MiB of memory instead
# of 12 MB and >= 80 MiB; `--backend-qjs-disable-async` because the host does
# not enable component-model async (see shared toolchain notes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$(realpath -m "${1:-$here/predictive.wasm}")"
# shellcheck source=../../../scripts/policy-tools.sh
. "$root/scripts/policy-tools.sh"

# From the repository root: jco reads the WIT and the modules (policy.js and
# the SDK it imports) only below the directory it runs in.
cd "$root"
jco componentize ./examples/policies/predictive/component.js --cwd . --wit wit --world-name policy \
    --backend quickjs --backend-qjs-disable-async -o "$out" >&2
echo "$out: $(stat -c %s "$out") bytes" >&2
