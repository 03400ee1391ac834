#!/usr/bin/env bash
# Installs Debian's chromium for the headless report test (tests/integration/test_report_browser.py).
# Idempotent and quick when chromium is already present.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "chromium.sh: chromium is missing and this user cannot install packages; the browser test will skip" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
