# End to end: for every model in ../shared/models/synthetic, `sparrow run --prompt-ids ... -n 0
# --logits-out` matches the float64 reference logits, checked by the folder's own check_logits.py:
#   - the reference kernels (--kernels ref) within the `exact` tolerance, every file;
#   - the default (fast) kernels: `exact` for F32/F16/BF16 files (their fast path keeps f32
#     activations), `int8` for quantized files (activations quantized to int8 per 32 elements).
source "$(dirname "$0")/common.sh"
dir=$SH/models/synthetic
count=0
check() { # name kernels-flag mode
  local name=$1 kflag=$2 mode=$3 out
  "$SP" run -m "$dir/$name.gguf" $kflag --prompt-ids "$(cat "$dir/$name.tokens.txt")" -n 0 --no-echo \
    --logits-out "$T/$name.f32" >/dev/null 2>"$T/err" || { fail "$name ${kflag:-default}: run failed: $(cat "$T/err")"; return; }
  if out=$("$PY" "$dir/check_logits.py" "$dir/$name.logits.f32" "$T/$name.f32" "$mode" 2>&1); then
    pass "$name ${kflag:-default} $mode: $(echo "$out" | head -1)"; else fail "$name ${kflag:-default} $mode"; echo "$out"; fi
}
for g in "$dir"/*.gguf; do
  name=$(basename "$g" .gguf)
  check "$name" "--kernels ref" exact
  case $name in
    *-f32 | *-f16 | *-bf16) check "$name" "" exact ;;
    *) check "$name" "" int8 ;;
  esac
  count=$((count + 1))
done
[ "$count" -ge 26 ] && pass "$count models checked" || fail "only $count synthetic models found"
finish
