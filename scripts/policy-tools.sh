#!/usr/bin/env bash
# policy-tools.sh — the tools that build Python and JavaScript policy
# components, installed once into a cache outside the repository.
#
#   scripts/policy-tools.sh          # install (if needed) and print where
#   . scripts/policy-tools.sh        # the same, and put the tools on PATH
#
# What (pinned here, overridable from the environment):
#   - componentize-py and pytest from PyPI, in a venv:
#       ${WICKET_CACHE:-~/.cache/wicket}/policy-tools/py-<versions>/
#   - jco and componentize-js from npm, in a node prefix:
#       ${WICKET_CACHE:-~/.cache/wicket}/policy-tools/js-<versions>/
# Each directory is keyed by the versions and marked complete by a stamp file
# written last, so a second run does nothing and returns in well under a
# second; an interrupted install is redone. The Debian packages it needs
# (python3-venv, nodejs, npm) come from scripts/lib.sh's `ensure_debs` when the
# commands are missing.
#
# After it, sourced or not, these name the tools:
#   WICKET_POLICY_PY    the venv's python (with componentize_py and pytest)
#   WICKET_COMPONENTIZE_PY  componentize-py
#   WICKET_JCO          jco
# and, when sourced, both bin directories are on PATH.

# Sourced: keep the caller's shell options; run: be strict.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
fi

_policy_tools_main() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    # shellcheck source=lib.sh
    . "$root/scripts/lib.sh"

    local componentize_py_version="${COMPONENTIZE_PY_VERSION:-0.25.1}"
    local pytest_version="${PYTEST_VERSION:-9.2.0}"
    local jco_version="${JCO_VERSION:-1.35.0}"
    local componentize_js_version="${COMPONENTIZE_JS_VERSION:-0.23.0}"
    local cache="${WICKET_CACHE:-$HOME/.cache/wicket}/policy-tools"
    local py_dir="$cache/py-cpy${componentize_py_version}-pytest${pytest_version}"
    local js_dir="$cache/js-jco${jco_version}-cjs${componentize_js_version}"

    # Python: a venv of its own, so the system's packages are never touched.
    if [ ! -f "$py_dir/.complete" ]; then
        command -v python3 >/dev/null 2>&1 || ensure_debs python3 python3-venv
        # Debian's python3 has no ensurepip without python3-venv.
        python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_debs python3-venv
        log "policy tools: componentize-py ${componentize_py_version} and pytest ${pytest_version} into ${py_dir}"
        rm -rf "$py_dir"
        mkdir -p "$cache"
        python3 -m venv "$py_dir" || return 1
        "$py_dir/bin/python" -m pip install --progress-bar on \
            "componentize-py==${componentize_py_version}" "pytest==${pytest_version}" >&2 || return 1
        touch "$py_dir/.complete"
    fi

    # JavaScript: jco plus componentize-js, in a prefix of their own.
    if [ ! -f "$js_dir/.complete" ]; then
        if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
            ensure_debs nodejs npm
        fi
        log "policy tools: jco ${jco_version} and componentize-js ${componentize_js_version} into ${js_dir} (~400 MB)"
        rm -rf "$js_dir"
        mkdir -p "$js_dir"
        # A package.json of our own so that npm installs here, not in a parent.
        printf '{ "name": "wicket-policy-tools", "private": true }\n' >"$js_dir/package.json"
        (cd "$js_dir" && npm install --no-audit --no-fund --loglevel=http \
            "@bytecodealliance/jco@${jco_version}" \
            "@bytecodealliance/componentize-js@${componentize_js_version}") >&2 || return 1
        touch "$js_dir/.complete"
    fi

    WICKET_POLICY_PY="$py_dir/bin/python"
    WICKET_COMPONENTIZE_PY="$py_dir/bin/componentize-py"
    WICKET_JCO="$js_dir/node_modules/.bin/jco"
    export WICKET_POLICY_PY WICKET_COMPONENTIZE_PY WICKET_JCO
    _policy_tools_paths="$py_dir/bin:$js_dir/node_modules/.bin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    _policy_tools_main
    printf 'WICKET_POLICY_PY=%s\nWICKET_COMPONENTIZE_PY=%s\nWICKET_JCO=%s\n' \
        "$WICKET_POLICY_PY" "$WICKET_COMPONENTIZE_PY" "$WICKET_JCO"
else
    if _policy_tools_main; then
        case ":$PATH:" in
        *":${_policy_tools_paths%%:*}:"*) ;;
        *) PATH="$_policy_tools_paths:$PATH" ;;
        esac
        export PATH
        unset _policy_tools_paths
    else
        echo "policy-tools: installing the policy tools failed" >&2
        return 1
    fi
fi
