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
# same seed, same file
"$SP" synth --preset tiny --type q4_0 -o "$T/again.gguf" 2>/dev/null
cmp -s "$T/tiny-q4_0.gguf" "$T/again.gguf" && pass "synth is deterministic" || fail "synth is not deterministic"
# no model named: the default tiny model is made in the cache dir and used
"$SP" run -n 4 >"$T/out" 2>"$T/err" && grep -q "RANDOM weights" "$T/err" && [ -f "$SPARROW_CACHE_DIR/synth-tiny-q8_0.gguf" ] &&
  pass "default model: $(head -c 60 "$T/out" | tr '\n' ' ')" || fail "default model: $(cat "$T/err")"
finish
