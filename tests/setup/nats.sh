#!/usr/bin/env bash
# `make test-deps`: Debian's nats-server (about 4 MB), which the NATS JetStream source/sink tests
# start on 127.0.0.1 with a free port (tests/nats_server.py). Idempotent and instant when present.
# Debian enables a nats-server.service on install; the tests never use it (they run their own).
set -euo pipefail
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "tests/setup/nats.sh: not root; install Debian's 'nats-server' package by hand" >&2
    exit 0  # the NATS tests skip locally (and fail under CI=true) with a clear reason
fi
echo "nats.sh: installing Debian's nats-server with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends nats-server >/dev/null
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]
