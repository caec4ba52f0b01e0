# End to end (slow: writes and loads a 0.5B model): the qwen2.5-0.5b preset in Q4_0
# ctest-labels: slow
# is written in its real shape, `inspect` and `run` accept it, and `serve` says 503 while it loads.
source "$(dirname "$0")/common.sh"
f=$T/qwen-q4_0.gguf
"$SP" synth --preset qwen2.5-0.5b --type q4_0 -o "$f" 2>/dev/null && pass "synth qwen2.5-0.5b q4_0 ($(stat -c %s "$f") bytes)" || fail "synth"
"$SP" inspect "$f" >"$T/insp" || fail "inspect"
grep -Eq 'qwen2.embedding_length.*896' "$T/insp" && grep -Eq 'qwen2.block_count.*24' "$T/insp" &&
  grep -Eq 'qwen2.attention.head_count_kv.*2' "$T/insp" && grep -Eq 'qwen2.feed_forward_length.*4864' "$T/insp" &&
  grep -Eq 'token_embd.weight.*q8_0.*\[896, 151936\]' "$T/insp" && grep -Eq 'blk.23.attn_q.bias' "$T/insp" &&
  grep -Eq 'blk.0.ffn_up.weight.*q4_0.*\[896, 4864\]' "$T/insp" && ! grep -Eq ' output\.weight ' "$T/insp" &&
  pass "inspect shows the qwen2.5-0.5b shape" || { fail "inspect shape"; head -60 "$T/insp"; }
"$SP" run -m "$f" -p "Hello" -n 3 --seed 1 >"$T/out" 2>"$T/err" && grep -q "generated 3 tokens" "$T/err" &&
  pass "run: $(tail -1 "$T/err")" || fail "run: $(cat "$T/err")"
# /health says 503 while the server loads a model this size, then 200; requests meanwhile get 503
"$SP" serve -m "$f" --port 0 >"$T/serve.log" 2>&1 &
spid=$!
port=""
for _ in $(seq 1 200); do
  port=$(grep -Eo 'listening on http://[^ ]*:[0-9]+' "$T/serve.log" | grep -Eo '[0-9]+$' || true)
  [ -n "$port" ] && break
  sleep 0.02
done
first=$(curl -s -D "$T/h" -o "$T/b" -w '%{http_code}' "http://127.0.0.1:$port/health")
early=$(curl -s -o "$T/b2" -w '%{http_code}' -H 'Content-Type: application/json' -d '{"prompt":"x"}' "http://127.0.0.1:$port/v1/completions")
[ "$first" = 503 ] && grep -q '"loading"' "$T/b" && grep -qi '^retry-after:' "$T/h" && pass "/health 503 while loading" ||
  fail "/health while loading: $first $(cat "$T/b")"
[ "$early" = 503 ] && grep -q model_loading "$T/b2" && pass "completion while loading -> 503" || fail "early request: $early $(cat "$T/b2")"
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && pass "/health 200 once loaded" || fail "never ready"
kill "$spid"; wait "$spid" || fail "server exit status $?"
finish
