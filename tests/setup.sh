#!/usr/bin/env bash
# Sets up everything the tests need, cached between runs on the same machine:
#   - one virtual environment per tested Blender (real `bpy` wheels from PyPI);
#   - the real Flamenco Manager and Worker, built with `go install` by commit.
# Re-running is cheap: what is already there is reused.
set -euo pipefail

CACHE="${FLAMENCO_PANEL_CACHE:-$HOME/.cache/flamenco-panel}"
PYTHON="${PYTHON:-python3.11}"
BPY_VERSIONS="${BPY_VERSIONS:-4.2.23 5.0.1}"
TEST_PACKAGES="pytest==8.3.4 openapi-schema-validator==0.6.3 PyYAML==6.0.2 blender-asset-tracer==1.23"
FLAMENCO_MODULE="projects.blender.org/studio/flamenco"
# name:commit — 3.9-beta1 is the main target, 3.5 covers the old jobs API, 3.7 one in between
# (the fake is checked against each: tests/core/test_fake_matches_real.py).
FLAMENCO_BUILDS="${FLAMENCO_BUILDS:-3.9-beta1:b36662b3b8abd51c8b62afdc2ffc5951113b85d3 3.5:81de246b484fb020d4db68eaa9624aa32e9a6620 3.7:d7eca929504a8d1ea70701248b007c5fb5bb031a}"

mkdir -p "$CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }

setup_venv() {
    local ver="$1" dir="$CACHE/venv-bpy-$1"
    local stamp="$dir/.ready-$(echo "bpy==$ver $TEST_PACKAGES" | md5sum | cut -c1-8)"
    if [ -f "$stamp" ]; then log "bpy $ver: cached ($dir)"; return; fi
    if [ ! -x "$dir/bin/python" ]; then
        log "bpy $ver: creating $dir"
        "$PYTHON" -m venv "$dir"
    fi
    log "bpy $ver: installing bpy==$ver $TEST_PACKAGES"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "bpy==$ver" $TEST_PACKAGES
    "$dir/bin/python" -c "import bpy" >/dev/null
    rm -f "$dir"/.ready-*
    touch "$stamp"
}

build_flamenco() {
    local name="$1" commit="$2" dir="$CACHE/flamenco-$1"
    if [ -x "$dir/flamenco-manager" ] && [ -x "$dir/flamenco-worker" ]; then
        log "flamenco $name: cached ($dir)"; return 0
    fi
    if ! command -v go >/dev/null; then log "flamenco $name: go not found"; return 1; fi
    log "flamenco $name: go install @$commit (a cold build takes minutes)"
    mkdir -p "$dir.tmp"
    local ldflags="-X $FLAMENCO_MODULE/internal/appinfo.ApplicationVersion=$name"
    if GOBIN="$dir.tmp" GOFLAGS=-buildvcs=false timeout 1200 go install -ldflags "$ldflags" \
        "$FLAMENCO_MODULE/cmd/flamenco-manager@$commit" \
        "$FLAMENCO_MODULE/cmd/flamenco-worker@$commit" >"$CACHE/flamenco-$name.build.log" 2>&1; then
        rm -rf "$dir"; mv "$dir.tmp" "$dir"
        log "flamenco $name: built"
    else
        log "flamenco $name: build failed, see $CACHE/flamenco-$name.build.log"
        tail -5 "$CACHE/flamenco-$name.build.log" >&2
        rm -rf "$dir.tmp"
        return 1
    fi
}

for v in $BPY_VERSIONS; do setup_venv "$v"; done
# The real farm is optional for the run: when it cannot be built here (see the build log),
# the real-farm tests skip and say why; everything else still runs.
for b in $FLAMENCO_BUILDS; do
    build_flamenco "${b%%:*}" "${b#*:}" || true
done
log "ready: $CACHE"
