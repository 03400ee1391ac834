#!/usr/bin/env bash
# `make test-deps`: installs Debian's chromium (about 113 MB to download, 480 MB on disk) for the
# headless report tests (tests/integration/test_report_browser.py). Idempotent and quick when
# chromium is already present; `make test` never runs this by itself.
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

echo "chromium.sh: installing Debian's chromium with apt-get (about 113 MB download)" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run to finish instead of failing on its lock.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium
