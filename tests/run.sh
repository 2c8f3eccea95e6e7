#!/usr/bin/env bash
# The test command: sets up what the tests need (cached), builds the zip, runs every test
# in real bpy 4.2.x and 5.0.x. Extra arguments go to pytest (e.g. -k refresh).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${FLAMENCO_PANEL_CACHE:-$HOME/.cache/flamenco-panel}"
export FLAMENCO_PANEL_CACHE="$CACHE"

bash tests/setup.sh

VENV42="$CACHE/venv-bpy-4.2.23"
VENV50="$CACHE/venv-bpy-5.0.1"
DIST="$(mktemp -d)"
trap 'rm -rf "$DIST"' EXIT
"$VENV42/bin/python" build.py --output-dir "$DIST" --bpy "$VENV42"
export FLAMENCO_PANEL_ZIP="$(ls "$DIST"/flamenco_panel-*.zip)"

status=0
echo "=== core tests and Blender tests in bpy 4.2 ==="
"$VENV42/bin/python" -m pytest -p no:cacheprovider -q tests "$@" || status=$?
echo "=== Blender tests in bpy 5.0 ==="
"$VENV50/bin/python" -m pytest -p no:cacheprovider -q tests/blender "$@" || status=$?
exit $status
