# Shared helpers for wicket's scripts: idempotent installs and step logging.
# Sourced, not run.

# Root runs apt directly; others through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Rust toolchain and the wasm target the policy components are built for.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
    if command -v rustup >/dev/null 2>&1 \
        && ! rustup target list --installed | grep -qx wasm32-wasip2; then
        log "adding the wasm32-wasip2 target (policy components)"
        rustup target add wasm32-wasip2
    fi
}

# Debian packages, installed only when missing.
ensure_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Runs a named step, timing it.
step() {
    local name=$1
    shift
    log "$name"
    local start=$SECONDS
    "$@"
    log "$name: done in $((SECONDS - start)) s"
}
