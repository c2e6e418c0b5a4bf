# Installs componentize-py and pytest once, in a venv shared by all wicket
# policy projects (the same one wicket's own scripts use), and sets
# POLICY_PY to its python. Sourced by build.sh and test.sh.
COMPONENTIZE_PY_VERSION="${COMPONENTIZE_PY_VERSION:-0.25.1}"
PYTEST_VERSION="${PYTEST_VERSION:-9.2.0}"
venv="${WICKET_CACHE:-$HOME/.cache/wicket}/policy-tools/py-cpy${COMPONENTIZE_PY_VERSION}-pytest${PYTEST_VERSION}"
if [ ! -f "$venv/.complete" ]; then
    echo "==> installing componentize-py ${COMPONENTIZE_PY_VERSION} and pytest ${PYTEST_VERSION} into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --progress-bar on \
        "componentize-py==${COMPONENTIZE_PY_VERSION}" "pytest==${PYTEST_VERSION}" >&2
    touch "$venv/.complete"
fi
POLICY_PY="$venv/bin/python"
