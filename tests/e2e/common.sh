# tests/e2e/common.sh — sourced by the end-to-end tests: paths, a temp dir, and assertions.
set -euo pipefail
: "${SPARROW_BIN:?SPARROW_BIN must point to the sparrow binary}"
: "${SPARROW_SHARED:?SPARROW_SHARED must point to ../shared}"
SP=$SPARROW_BIN
SH=$SPARROW_SHARED
T=$(mktemp -d "${TMPDIR:-/tmp}/sparrow-e2e.XXXXXX")
trap 'rm -rf "$T"' EXIT
export SPARROW_CACHE_DIR=$T/cache
# the system python (Debian python3-numpy), not a user pyenv without numpy
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
finish() { [ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }; }
