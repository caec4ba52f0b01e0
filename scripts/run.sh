#!/usr/bin/env bash
# scripts/run.sh [sparrow serve options] — the main job: install what is missing, build, and start
# the OpenAI-compatible server on 127.0.0.1:8080. With no -m it serves a tiny random-weight model that
# sparrow makes itself (offline); it prints a curl line to try once the model is ready.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
exec build/sparrow serve "$@"
