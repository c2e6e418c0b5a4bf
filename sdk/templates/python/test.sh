#!/usr/bin/env bash
# Runs the policy's native tests with pytest (installed with the build tools).
set -euo pipefail
cd "$(dirname "$0")"
. ./tools.sh
exec "$POLICY_PY" -m pytest -q "$@"
