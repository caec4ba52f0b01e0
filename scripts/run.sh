#!/usr/bin/env bash
# scripts/run.sh [sparrow run options] — the main job: install what is missing, build, and run
# `sparrow run`. With no -m it uses a tiny random-weight model that sparrow makes itself (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
exec build/sparrow run "$@"
