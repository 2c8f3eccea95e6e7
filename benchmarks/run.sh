#!/usr/bin/env bash
# The benchmark command: sets up the test environments (cached) and prints the figures table.
# Arguments go to benchmarks/run.py (--quick, --markdown FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${FLAMENCO_PANEL_CACHE:-$HOME/.cache/flamenco-panel}"
export FLAMENCO_PANEL_CACHE="$CACHE"
bash tests/setup.sh >&2
exec "$CACHE/venv-bpy-4.2.23/bin/python" benchmarks/run.py "$@"
