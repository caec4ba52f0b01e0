# End to end (slow: a 0.5B model through the scalar reference path): the qwen2.5-0.5b preset in Q4_0
# ctest-labels: slow
# is written in its real shape and both `inspect` and `run` accept it.
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
finish
