# Integration: the DRAM-flash weight store. The first start repacks the weights into a cache file and
# the second maps it (same answer); a stale or corrupt cache is rebuilt, never trusted; --mem-limit
# refuses, before listening, what cannot fit and says what would; KV blocks idle past
# --kv-spill-idle leave RAM for the spill file and the conversation's next turn reads them back.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"

"$SP" synth --preset tiny --type q4_0 -o "$T/m.gguf" >/dev/null 2>&1 || { fail "synth"; finish; }
ask='{"prompt":"Once upon a time the little","max_tokens":12,"temperature":0}'

# ---- first start builds the cache, second maps it, same text
start_server first -m "$T/m.gguf" || exit 1
[ "$(req POST /v1/completions "$ask")" = 200 ] && cp "$T/body" "$T/a1" || fail "first answer"
stop_servers
grep -q 'weights repacked into .*/cache/weights-[0-9a-f]*\.spw' "$T/first.log" && pass "first start builds the weight cache" ||
  fail "first start: $(grep -i weight "$T/first.log")"
cache=$(ls "$T"/cache/weights-*.spw)
[ "$(echo "$cache" | wc -l)" = 1 ] && pass "one cache file" || fail "cache files: $cache"
start_server second -m "$T/m.gguf" || exit 1
[ "$(req POST /v1/completions "$ask")" = 200 ] && cp "$T/body" "$T/a2" || fail "second answer"
stop_servers
grep -q "weights mapped from $cache" "$T/second.log" && pass "second start maps it" || fail "second start: $(grep -i weight "$T/second.log")"
t1=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/a1")
t2=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/a2")
[ -n "$t1" ] && [ "$t1" = "$t2" ] && pass "same text from the mapped cache" || fail "texts differ: '$t1' vs '$t2'"

# ---- a flipped byte in the weights: detected, rebuilt, same text
"$PY" - "$cache" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(3 * 4096 + 77)
    b = f.read(1)
    f.seek(3 * 4096 + 77)
    f.write(bytes([b[0] ^ 0x40]))
EOF
start_server corrupt -m "$T/m.gguf" || exit 1
[ "$(req POST /v1/completions "$ask")" = 200 ] && cp "$T/body" "$T/a3" || fail "answer after corruption"
stop_servers
grep -q 'rebuilt: weight cache data is corrupt' "$T/corrupt.log" && pass "corrupt cache detected and rebuilt" ||
  fail "corrupt cache: $(grep -i weight "$T/corrupt.log")"
t3=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/a3")
[ "$t3" = "$t1" ] && pass "same text after the rebuild" || fail "after rebuild: '$t3'"

# ---- the model file changed: the old cache is stale, pruned, and a new one built
touch -d '2001-01-01' "$T/m.gguf"
start_server stale -m "$T/m.gguf" || exit 1
stop_servers
grep -q 'weights repacked into' "$T/stale.log" && [ "$(ls "$T"/cache/weights-*.spw | wc -l)" = 1 ] &&
  [ "$(ls "$T"/cache/weights-*.spw)" != "$cache" ] && pass "a changed model file gets a new cache, the stale one pruned" ||
  fail "stale: $(ls "$T"/cache) $(grep -i weight "$T/stale.log")"

# ---- --no-weight-cache repacks in memory and writes nothing
rm -rf "$T/cache"
start_server nocache -m "$T/m.gguf" --no-weight-cache || exit 1
stop_servers
[ -z "$(ls "$T/cache" 2>/dev/null | grep spw)" ] && ! grep -q 'weights repacked into' "$T/nocache.log" &&
  pass "--no-weight-cache writes no cache" || fail "nocache: $(ls "$T/cache")"

# ---- --mem-limit that cannot hold one context: refused before listening, with what would fit
out=$("$SP" serve -m "$T/m.gguf" --port 0 --mem-limit 50M --ctx 2048 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && ! grep -q 'listening' <<<"$out" &&
  grep -Eq -- '--mem-limit 50 MiB cannot hold one 2048-token context: KV [0-9]+ MiB \+ buffers [0-9]+ MiB = [0-9]+ MiB\. It would fit' <<<"$out" &&
  pass "--mem-limit too small: refused before listening ($(grep -o 'It would fit.*' <<<"$out"))" || fail "mem-limit refusal (rc $rc): $out"
start_server capped -m "$T/m.gguf" --mem-limit 300M --ctx 1024 || exit 1
[ "$(req POST /v1/completions "$ask")" = 200 ] && cp "$T/body" "$T/a4" || fail "capped answer"
stop_servers
t4=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/a4")
grep -q 'memory plan for --mem-limit 300 MiB' "$T/capped.log" && [ "$t4" = "$t1" ] &&
  pass "a --mem-limit that fits: planned, same text" || fail "capped: '$t4' $(grep plan "$T/capped.log")"

# ---- KV spill: a 70-token prompt's blocks go to flash after 1 s idle, and come back
long=$("$PY" -c 'print(" ".join(["the little cat sat on a warm mat by the door"] * 7))')
body1=$("$PY" -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1], "max_tokens": 4, "temperature": 0}))' "$long")
body2=$("$PY" -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1] + " and then", "max_tokens": 4, "temperature": 0}))' "$long")
start_server spill -m "$T/m.gguf" --kv-spill 64M --kv-spill-idle 1 --ctx 1024 || exit 1
[ "$(req POST /v1/completions "$body1")" = 200 ] || fail "spill: first request"
spilled=0
for _ in $(seq 1 60); do
  spilled=$(curl -s "$BASE/metrics" | grep -E '^sparrow_kv_blocks\{state="spilled"\}' | grep -Eo '[0-9]+$' || echo 0)
  [ "${spilled:-0}" -gt 0 ] && break
  sleep 0.1
done
[ "${spilled:-0}" -gt 0 ] && pass "idle KV blocks spilled to flash ($spilled blocks)" || fail "nothing spilled: $(curl -s "$BASE/metrics" | grep kv_blocks)"
cached=$(curl -s "$BASE/metrics" | grep -E '^sparrow_kv_blocks\{state="cached"\}' | grep -Eo '[0-9]+$' || echo x)
[ "$cached" = 0 ] && pass "and left RAM (no cached blocks)" || fail "cached blocks still in RAM: $cached"
[ "$(req POST /v1/completions "$body2")" = 200 ] || fail "spill: second request"
ct=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["usage"]["prompt_tokens_details"]["cached_tokens"])' "$T/body")
[ "$ct" -ge 64 ] && pass "the next turn read $ct prompt tokens back from flash" || fail "cached_tokens $ct after spill"
stop_servers
finish
