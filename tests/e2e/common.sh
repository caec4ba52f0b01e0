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
finish() { # servers are stopped (and their exit status checked) before the verdict
  if declare -F stop_servers >/dev/null; then stop_servers; fi
  [ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
}
# npm_packages: the npm packages the integration tests use (the OpenAI and Ollama clients,
# playwright-core), installed together once into the build tree ($SPARROW_NPM_DIR), one npm at a
# time (tests run in parallel), so no install prunes another's package. Sets $NPM_DIR.
npm_packages() {
  NPM_DIR=${SPARROW_NPM_DIR:-$(dirname "$SP")/npm}
  mkdir -p "$NPM_DIR"
  (cd "$NPM_DIR" && flock .npm.lock sh -c '
    [ -d node_modules/openai ] && [ -d node_modules/ollama ] && [ -d node_modules/playwright-core ] ||
      npm install --no-audit --no-fund --silent openai@6 ollama@0 playwright-core@1 >/dev/null 2>&1')
}
