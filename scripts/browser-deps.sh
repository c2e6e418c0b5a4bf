#!/usr/bin/env bash
# Installs what the browser tests (host/tests/browser*.rs) need: Debian's
# Chromium and ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver).
# Idempotent: does nothing when both are already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser-deps: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | head -n1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null

chromium --version
chromedriver --version
