#!/usr/bin/env bash
# Tests the Python and JavaScript policy SDKs, example policies and
# `wicket policy new` templates from source:
#   1. installs the tools (scripts/policy-tools.sh; cached after the first run);
#   2. native tests: pytest (sdk/python, examples/policies/schedule) and
#      node --test (sdk/js, examples/policies/predictive);
#   3. builds schedule.wasm and predictive.wasm with their build scripts;
#   4. makes a project in each language with `wicket policy new` (WICKET_BIN,
#      default: `cargo run -q -p wicket --`), runs its own test and builds it;
#   5. `wicket policy check` on both examples under the memory caps their
#      READMEs give, and `wicket policy test` with the cases.toml of each
#      example and project.
# Loading the two examples in wasmtime and checking their decisions is
# host/tests/polyglot_policies.rs (run by `cargo test`).
#
#   scripts/test-policy-sdks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/lib.sh
. scripts/policy-tools.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
run() {
    local name=$1
    shift
    log "$name"
    if "$@"; then
        log "$name: ok"
    else
        log "$name: FAILED"
        failed=$((failed + 1))
    fi
}

# --- 2. native tests --------------------------------------------------------
run "python SDK: pytest" "$WICKET_POLICY_PY" -m pytest -q -p no:cacheprovider sdk/python
run "schedule (python): pytest" \
    bash -c 'cd examples/policies/schedule && "$WICKET_POLICY_PY" -m pytest -q -p no:cacheprovider'
run "js SDK: node --test" bash -c 'cd sdk/js && node --test'
run "predictive (js): node --test" bash -c 'cd examples/policies/predictive && node --test'

# --- 3. example components --------------------------------------------------
run "schedule: build" examples/policies/schedule/build.sh "$work/schedule.wasm"
run "predictive: build" examples/policies/predictive/build.sh "$work/predictive.wasm"

# --- 4. templates -----------------------------------------------------------
# The templates pin the same tool versions as scripts/policy-tools.sh, so a
# new project shares the installed tools.
same_pins() {
    local key
    for key in COMPONENTIZE_PY_VERSION PYTEST_VERSION; do
        pins_match "$key" sdk/templates/python/tools.sh || return 1
    done
    for key in JCO_VERSION COMPONENTIZE_JS_VERSION; do
        pins_match "$key" sdk/templates/js/tools.sh || return 1
    done
}
pins_match() {
    local ours theirs
    ours="$(grep -o "$1:-[^}]*" scripts/policy-tools.sh)"
    theirs="$(grep -o "$1:-[^}]*" "$2")"
    [ -n "$ours" ] && [ "$ours" = "$theirs" ] || {
        echo "$2 pins $theirs, scripts/policy-tools.sh $ours" >&2
        return 1
    }
}
run "templates pin the tools' versions" same_pins

wicket() {
    if [ -n "${WICKET_BIN:-}" ]; then
        "$WICKET_BIN" "$@"
    else
        (cd "$root" && cargo run -q -p wicket -- "$@")
    fi
}

# `wicket policy new` itself makes the projects (templates, SDK, contract).
run "policy new python" wicket policy new my-python-policy --lang python --dir "$work"
run "template python: its test" "$work/my-python-policy/test.sh" -p no:cacheprovider
run "template python: build" "$work/my-python-policy/build.sh"
run "policy new js" wicket policy new my-js-policy --lang js --dir "$work"
run "template js: its test" bash -c "cd '$work/my-js-policy' && npm test --silent"
run "template js: build" "$work/my-js-policy/build.sh"
run "policy new rust" wicket policy new my-rust-policy --lang rust --dir "$work"
run "template rust: its test" bash -c "cd '$work/my-rust-policy' && cargo test -q"
run "template rust: build" bash -c \
    "cd '$work/my-rust-policy' && cargo build -q --target wasm32-wasip2 --release"

# Each load compiles the component again (~10 s for Python in release,
# more in debug): the templates are only tested, not checked.
run "policy check schedule" wicket policy check "$work/schedule.wasm" \
    --config "Mon-Fri 08:45-10:30 spare=20" --memory-mib 16
run "policy check predictive" wicket policy check "$work/predictive.wasm" --memory-mib 4
run "policy test schedule" wicket policy test "$work/schedule.wasm" examples/policies/schedule/cases.toml
run "policy test predictive" wicket policy test "$work/predictive.wasm" examples/policies/predictive/cases.toml
run "policy test template python" wicket policy test \
    "$work/my-python-policy/my-python-policy.wasm" "$work/my-python-policy/cases.toml"
run "policy test template js" wicket policy test \
    "$work/my-js-policy/my-js-policy.wasm" "$work/my-js-policy/cases.toml"
run "policy test template rust" wicket policy test \
    "$work/my-rust-policy/target/wasm32-wasip2/release/my_rust_policy.wasm" \
    "$work/my-rust-policy/cases.toml"

if [ "$failed" -ne 0 ]; then
    echo "policy SDKs: $failed step(s) failed" >&2
    exit 1
fi
log "policy SDKs: all steps passed"
