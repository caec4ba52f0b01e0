# End to end: `sparrow synth` writes models that `inspect` and `run` accept: the tiny preset in every
# writable type here, and the default model made on first use by a bare `sparrow run`.
source "$(dirname "$0")/common.sh"
for type in f32 f16 q8_0 q4_0; do
  "$SP" synth --preset tiny --type "$type" -o "$T/tiny-$type.gguf" 2>/dev/null || { fail "synth tiny $type"; continue; }
  "$SP" inspect "$T/tiny-$type.gguf" >"$T/insp" && grep -q "sparrow.synthetic" "$T/insp" && grep -q "blk.3.ffn_down.weight" "$T/insp" &&
    pass "inspect tiny $type" || fail "inspect tiny $type"
  "$SP" run -m "$T/tiny-$type.gguf" -p "Once upon a time" -n 8 --seed 3 >"$T/out" 2>"$T/err" &&
    grep -q "RANDOM weights" "$T/err" && pass "run tiny $type: $(head -c 60 "$T/out" | tr '\n' ' ')" || fail "run tiny $type: $(cat "$T/err")"
done
# q4_k_m: llama.cpp's Q4_K_M mix. The tiny preset (4 layers, untied head, every row a multiple of 256)
# takes Q4_K everywhere, the output head Q6_K, and attn_v / ffn_down Q6_K on llama.cpp's "more bits"
# layers, which for 4 layers are 2 and 3 (i >= 7*4/8, or (i - 4/8) % 3 == 2).
if "$SP" synth --preset tiny --type q4_k_m -o "$T/tiny-q4_k_m.gguf" 2>"$T/err"; then
  "$SP" inspect "$T/tiny-q4_k_m.gguf" >"$T/insp"
  expect="token_embd.weight=q4_k output.weight=q6_k output_norm.weight=f32"
  for il in 0 1 2 3; do
    more=q4_k; [ "$il" -ge 2 ] && more=q6_k
    for m in attn_q attn_k attn_output ffn_gate ffn_up; do expect+=" blk.$il.$m.weight=q4_k"; done
    expect+=" blk.$il.attn_v.weight=$more blk.$il.ffn_down.weight=$more blk.$il.attn_norm.weight=f32 blk.$il.ffn_norm.weight=f32"
  done
  # inspect's tensor rows: index, name, type, shape...
  got=$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /\.weight$/ { print $2 "=" $3 }' "$T/insp" | sort | tr '\n' ' ')
  want=$(tr ' ' '\n' <<<"$expect" | sort | tr '\n' ' ')
  [ "$got" = "$want" ] && grep -Eq 'general.file_type +u32 +15$' "$T/insp" && grep -Eq "q6_k +5 tensors" "$T/err" &&
    pass "inspect tiny q4_k_m: the Q4_K_M mix" || fail "tiny q4_k_m tensor types: got [$got] want [$want]"
  "$SP" run -m "$T/tiny-q4_k_m.gguf" -p "Once upon a time" -n 8 --seed 3 >"$T/out" 2>"$T/err" &&
    pass "run tiny q4_k_m: $(head -c 60 "$T/out" | tr '\n' ' ')" || fail "run tiny q4_k_m: $(cat "$T/err")"
else
  fail "synth tiny q4_k_m: $(cat "$T/err")"
fi
# same seed, same file
"$SP" synth --preset tiny --type q4_0 -o "$T/again.gguf" 2>/dev/null
cmp -s "$T/tiny-q4_0.gguf" "$T/again.gguf" && pass "synth is deterministic" || fail "synth is not deterministic"
# no model named: the default tiny model is made in the cache dir and used
"$SP" run -n 4 >"$T/out" 2>"$T/err" && grep -q "RANDOM weights" "$T/err" && [ -f "$SPARROW_CACHE_DIR/synth-tiny-q8_0.gguf" ] &&
  pass "default model: $(head -c 60 "$T/out" | tr '\n' ' ')" || fail "default model: $(cat "$T/err")"
finish
