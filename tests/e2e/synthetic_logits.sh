# End to end: for every model in ../shared/models/synthetic, `sparrow run --prompt-ids ... -n 0
# --logits-out` matches the float64 reference logits within the `exact` tolerance, checked by the
# folder's own check_logits.py.
source "$(dirname "$0")/common.sh"
dir=$SH/models/synthetic
count=0
for g in "$dir"/*.gguf; do
  name=$(basename "$g" .gguf)
  "$SP" run -m "$g" --prompt-ids "$(cat "$dir/$name.tokens.txt")" -n 0 --no-echo --logits-out "$T/$name.f32" >/dev/null 2>"$T/err" ||
    { fail "$name: run failed: $(cat "$T/err")"; continue; }
  if out=$("$PY" "$dir/check_logits.py" "$dir/$name.logits.f32" "$T/$name.f32" exact 2>&1); then
    pass "$name: $(echo "$out" | head -1)"; else fail "$name"; echo "$out"; fi
  count=$((count + 1))
done
[ "$count" -ge 26 ] && pass "$count models checked" || fail "only $count synthetic models found"
finish
