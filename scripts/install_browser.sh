#!/usr/bin/env bash
# Installs the headless browser the web UI test drives: Debian's chromium and chromium-driver.
# Idempotent: does nothing (fast) when both `chromium` and `chromedriver` are already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing chromium and chromium-driver (apt-get)" >&2
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null

command -v chromium >/dev/null && command -v chromedriver >/dev/null
chromium --version >&2
