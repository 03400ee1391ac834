#!/usr/bin/env bash
# `make test-deps`: installs the npm Forward-protocol client (@fluent-org/logger) the integration tests drive
# through node, into tests/node/node_modules. Quick and quiet when it is already installed.
set -euo pipefail
cd "$(dirname "$0")/../node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: the @fluent-org/logger tests will skip (CI=true makes them fail)" >&2
  exit 0
fi
if [ -f node_modules/@fluent-org/logger/package.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
echo "node.sh: installing @fluent-org/logger into tests/node/node_modules with npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error
