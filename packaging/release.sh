#!/usr/bin/env bash
# Build release artefacts: the wheel and sdist (always), SHA256SUMS, and optionally the agent
# (CPU and GPU) and trainer images.
#
#   packaging/release.sh [--dist DIR] [--images] [--python PY]
#
# Offline-friendly: builds with the current environment's setuptools (no build isolation, so
# no download); `python -m build` is used when installed. Images need docker or podman.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=dist
IMAGES=0
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --dist) DIST="$2"; shift 2;;
        --images) IMAGES=1; shift;;
        --python) PY="$2"; shift 2;;
        -h|--help) sed -n '2,9p' "$0"; exit 0;;
        *) echo "release.sh: unknown argument $1" >&2; exit 2;;
    esac
done
VERSION="$("$PY" -c 'import agent; print(agent.__version__)')"
mkdir -p "$DIST"
DIST="$(cd "$DIST" && pwd)"
rm -f "$DIST"/logdetect-"$VERSION"*
# Build from a clean copy of what the distribution contains: no stale build/ or *.egg-info,
# no __pycache__, and nothing written into the working tree.
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
cp pyproject.toml README.md "$SRC"/
for pkg in agent trainer plugins; do
    [ -d "$pkg" ] && cp -r "$pkg" "$SRC"/
done
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
if "$PY" -c 'import build' 2>/dev/null; then
    "$PY" -m build --no-isolation --outdir "$DIST" "$SRC"
else
    "$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$DIST" "$SRC"
fi
(cd "$DIST" && sha256sum logdetect-"$VERSION"* > SHA256SUMS)
echo "release.sh: $(ls "$DIST"/logdetect-"$VERSION"*) (version $VERSION)"

if [ "$IMAGES" = 1 ]; then
    ENGINE="$(command -v docker || command -v podman || true)"
    [ -n "$ENGINE" ] || { echo "release.sh: --images needs docker or podman" >&2; exit 1; }
    "$ENGINE" build -f packaging/Containerfile.agent --build-arg VARIANT=cpu -t "logdetect-agent:$VERSION" .
    "$ENGINE" build -f packaging/Containerfile.agent --build-arg VARIANT=gpu -t "logdetect-agent:$VERSION-gpu" .
    "$ENGINE" build -f packaging/Containerfile.trainer -t "logdetect-trainer:$VERSION" .
fi
