# End to end: `sparrow pull` against a local HTTP server on 127.0.0.1: a download interrupted halfway
# resumes with a Range request and the sha256 matches; a server without Range support restarts the
# file cleanly; a wrong digest is refused; an unreachable host gives one clear error line.
source "$(dirname "$0")/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
src=$SH/models/stories260K-q8_0.gguf
want=$(sha256sum "$src" | cut -d' ' -f1)
size=$(stat -c %s "$src")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
serve() { # NAME ARGS...: start range_server.py, set $URL
  local name=$1; shift
  "$PY" "$here/range_server.py" "$src" "$T/$name.port" "$@" 2>"$T/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -f "$T/$name.port" ] && break; sleep 0.05; done
  URL=http://127.0.0.1:$(cat "$T/$name.port")/org/repo/resolve/main/stories260K-q8_0.gguf
}

# 1. interrupted halfway, then resumed with Range
serve cut --cut-first $((size / 2)) --sha256 "$want"
"$SP" pull "$URL" --models-dir "$T/models" >"$T/out" 2>"$T/err" && fail "the interrupted pull reported success" ||
  { [ "$(wc -l <"$T/err")" = 1 ] && pass "interrupted: one error line: $(cat "$T/err")" || fail "interrupted: $(cat "$T/err")"; }
have=$(stat -c %s "$T/models/stories260K-q8_0.gguf.partial" 2>/dev/null || echo 0)
[ "$have" = $((size / 2)) ] && pass "partial file kept ($have of $size bytes)" || fail "partial has $have bytes"
"$SP" pull "$URL" --models-dir "$T/models" >"$T/out" 2>"$T/err" && pass "resumed: $(cat "$T/err")" || fail "resume: $(cat "$T/err")"
grep -q "range=bytes=$((size / 2))-" "$T/cut.log" && pass "second request asked for bytes=$((size / 2))-" || fail "no Range request: $(cat "$T/cut.log")"
[ "$(sha256sum "$T/models/stories260K-q8_0.gguf" | cut -d' ' -f1)" = "$want" ] && pass "sha256 matches" || fail "sha256 differs"
grep -q "(verified)" "$T/err" && grep -q "(resumed)" "$T/err" && pass "server's X-Linked-ETag digest checked" || fail "digest not checked: $(cat "$T/err")"
[ "$(cat "$T/out")" = "$T/models/stories260K-q8_0.gguf" ] && [ ! -e "$T/models/stories260K-q8_0.gguf.partial" ] && pass "file in place, partial gone" || fail "final placement"
"$SP" inspect "$T/models/stories260K-q8_0.gguf" >/dev/null && pass "the pulled model opens" || fail "pulled model does not open"

# 2. a server without Range: the partial file is discarded and the download restarts cleanly
serve norange --no-range
head -c 1000 /dev/urandom >"$T/models/again.gguf.partial"
"$SP" pull "$URL" --models-dir "$T/models" --name again.gguf --sha256 "$want" >/dev/null 2>"$T/err" &&
  grep -q "restarted" "$T/err" && [ "$(sha256sum "$T/models/again.gguf" | cut -d' ' -f1)" = "$want" ] &&
  pass "no Range support: restarted cleanly, sha256 matches" || fail "no-range restart: $(cat "$T/err")"

# 3. a wrong digest is refused and nothing is left behind
"$SP" pull "$URL" --models-dir "$T/models" --name bad.gguf --sha256 "$(printf '0%.0s' $(seq 64))" >/dev/null 2>"$T/err" &&
  fail "wrong sha256 accepted" || { grep -q "sha256 mismatch" "$T/err" && [ ! -e "$T/models/bad.gguf" ] && pass "wrong digest refused" || fail "bad digest: $(cat "$T/err")"; }

# 4. the Hugging Face shorthand goes to $HF_ENDPOINT/org/repo/resolve/main/file
HF_ENDPOINT=http://127.0.0.1:$(cat "$T/norange.port") "$SP" pull org/repo/stories260K-q8_0.gguf --models-dir "$T/hf" >/dev/null 2>"$T/err" &&
  grep -q "GET /org/repo/resolve/main/stories260K-q8_0.gguf" "$T/norange.log" && pass "org/repo/file shorthand" || fail "shorthand: $(cat "$T/err")"

# 5. unreachable: one clear line, non-zero
"$SP" pull http://127.0.0.1:9/x.gguf --models-dir "$T/models" >/dev/null 2>"$T/err" && fail "unreachable host: success?" ||
  { [ "$(wc -l <"$T/err")" = 1 ] && grep -q "cannot download" "$T/err" && pass "unreachable: $(cat "$T/err")" || fail "unreachable: $(cat "$T/err")"; }
"$SP" pull https://no-such-host.invalid/m.gguf --models-dir "$T/models" >/dev/null 2>"$T/err" && fail "bad host: success?" ||
  { [ "$(wc -l <"$T/err")" = 1 ] && grep -qi "resolve" "$T/err" && pass "unknown host: $(cat "$T/err")" || fail "unknown host: $(cat "$T/err")"; }
finish
