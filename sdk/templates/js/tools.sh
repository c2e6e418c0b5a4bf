# Installs jco and componentize-js once, in a directory shared by all wicket
# policy projects (the same one wicket's own scripts use), and sets JCO.
# Sourced by build.sh.
JCO_VERSION="${JCO_VERSION:-1.35.0}"
COMPONENTIZE_JS_VERSION="${COMPONENTIZE_JS_VERSION:-0.23.0}"
prefix="${WICKET_CACHE:-$HOME/.cache/wicket}/policy-tools/js-jco${JCO_VERSION}-cjs${COMPONENTIZE_JS_VERSION}"
if [ ! -f "$prefix/.complete" ]; then
    echo "==> installing jco ${JCO_VERSION} and componentize-js ${COMPONENTIZE_JS_VERSION} into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    printf '{ "name": "wicket-policy-tools", "private": true }\n' >"$prefix/package.json"
    (cd "$prefix" && npm install --no-audit --no-fund --loglevel=http \
        "@bytecodealliance/jco@${JCO_VERSION}" \
        "@bytecodealliance/componentize-js@${COMPONENTIZE_JS_VERSION}") >&2
    touch "$prefix/.complete"
fi
JCO="$prefix/node_modules/.bin/jco"
