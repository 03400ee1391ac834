#!/usr/bin/env bash
# `make test-deps` for tests/ops: `systemd-analyze` (unit verification, syscall groups) and
# libseccomp (the sandbox probe). Debian's `systemd` package brings both. Idempotent and
# instant when already present; needs root (CI and the dev machines run as root).
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so'; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "tests/setup/systemd.sh: not root; install Debian's 'systemd' package by hand" >&2
    exit 0  # the tests that need it skip locally (and fail under CI=true) with a clear reason
fi
echo "systemd.sh: installing Debian's systemd and libseccomp2 with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
# --no-install-recommends: only the binaries and unit files, not a whole init system's extras.
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends systemd libseccomp2 >/dev/null
command -v systemd-analyze >/dev/null
