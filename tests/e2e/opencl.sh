# End to end: the OpenCL backend on the device auto picks ($SPARROW_CL_DEVICE overrides; in CI PoCL's
# CPU device from scripts/setup.sh). No OpenCL platform is a failure here, never a skip.
#   1. every kernel variant compiles with clang as OpenCL C (f32 and f16 activation storage, the
#      cl_khr_fp16 native-half path, the cl_khr_subgroups path under CL1.2 with the extension macros
#      and under CL3.0), so the paths no CI device runs are at least compile-checked;
#   2. `sparrow devices` lists the device and the pick; with no OpenCL driver it says so, exit 0;
#   3. `SPARROW_KERNELS=opencl sparrow run --temp 0` on stories260K (F32, Q8_0) prints llama2.c's
#      reference text for every prompt of ../shared/models/reference/stories260K.json;
#   4. every synthetic model's logits meet check_logits.py: `exact` (1e-4) where pack.h's layout holds
#      the file's weights exactly (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0: the opencl matmul keeps f32
#      activations), `int8` where the repacking itself rounds the weights (Q4_K: d·scale to f16;
#      Q5_1, Q5_K, Q6_K: requantized to int8 per 32) — the activations are never rounded;
#   5. `sparrow bench --kernels opencl` runs and names the table.
# ctest-labels: slow
source "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# ---- 1. clang syntax checks -------------------------------------------------------------------
cat "$ROOT"/kernels/cl/common.cl "$ROOT"/kernels/cl/matmul.cl "$ROOT"/kernels/cl/ops.cl "$ROOT"/kernels/cl/attention.cl >"$T/all.cl"
CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then fail "clang not found (scripts/setup.sh installs it)"; else
  while IFS='|' read -r what flags; do
    if out=$("$CLANG" -x cl -fsyntax-only -Xclang -finclude-default-header --target=spir64 -Werror \
        -Wno-ignored-pragmas $flags "$T/all.cl" 2>&1); then pass "clang: $what"; else fail "clang: $what"; echo "$out" | head -20; fi
  done <<'EOF'
f32 activations (CL1.2)|-cl-std=CL1.2
f16 storage, vload_half (CL1.2)|-cl-std=CL1.2 -DACT_F16=1
f16 storage, cl_khr_fp16 native half (CL1.2)|-cl-std=CL1.2 -DACT_F16=1 -DUSE_FP16=1 -Xclang -cl-ext=+cl_khr_fp16
subgroups, cl_khr_subgroups macros (CL1.2)|-cl-std=CL1.2 -DUSE_SUBGROUPS=1 -Dcl_khr_subgroups=1
every path (CL3.0, fp16 + subgroups)|-cl-std=CL3.0 -DACT_F16=1 -DUSE_FP16=1 -DUSE_SUBGROUPS=1 -Xclang -cl-ext=+cl_khr_fp16,+cl_khr_subgroups,+__opencl_c_subgroups
EOF
fi

# ---- 2. sparrow devices -----------------------------------------------------------------------
if out=$("$SP" devices 2>&1) && echo "$out" | grep -q "^opencl kernels would use: [0-9]*:[0-9]* "; then
  pass "devices: $(echo "$out" | grep '^opencl kernels would use')"
else
  fail "no usable OpenCL device (scripts/setup.sh installs pocl-opencl-icd): $out"
  finish
fi
out=$(OCL_ICD_VENDORS=$T/no-vendors "$SP" devices 2>&1) && echo "$out" | grep -q "^OpenCL: none: no OpenCL platform" &&
  pass "devices without a driver: exit 0, one clear line" || fail "devices without a driver: $out"
out=$("$SP" devices --check 2>&1) && echo "$out" | grep -q "matmul .*: ok$" && pass "devices --check" || fail "devices --check: $out"
out=$(SPARROW_KERNELS=opencl SPARROW_CL_DEVICE=7:7 "$SP" run -m "$SH/models/stories260K.gguf" -p "a" -n 1 2>&1) &&
  fail "a device that does not exist was accepted" || { echo "$out" | grep -q "no device 7 on platform 7" &&
  pass "SPARROW_CL_DEVICE=7:7 refused with the reason" || fail "SPARROW_CL_DEVICE=7:7: $out"; }

# ---- 3. stories260K reference text --------------------------------------------------------------
export SPARROW_KERNELS=opencl
ref=$SH/models/reference/stories260K.json
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$ref")
for model in stories260K.gguf stories260K-q8_0.gguf; do
  for ((i = 0; i < n; i++)); do
    prompt=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["prompt"], end="")' "$ref" "$i")
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[int(sys.argv[2])]; sys.stdout.write(d["prompt"] + d["completion"] + "\n")' "$ref" "$i" >"$T/want"
    npred=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["n_predict"])' "$ref" "$i")
    "$SP" run -m "$SH/models/$model" -p "$prompt" -n "$npred" --temp 0 >"$T/got" 2>"$T/err"
    if cmp -s "$T/want" "$T/got"; then pass "opencl $model: '$prompt'"; else
      fail "opencl $model: '$prompt'"; diff <(cat "$T/want") <(cat "$T/got") | head -5; tail -3 "$T/err"; fi
  done
done

# ---- 4. synthetic logits ------------------------------------------------------------------------
dir=$SH/models/synthetic
count=0
for g in "$dir"/*.gguf; do
  name=$(basename "$g" .gguf)
  case $name in
    *-f32 | *-f16 | *-bf16 | *-q8_0 | *-q4_0 | *-q4_1 | *-q5_0) mode=exact ;;
    *) mode=int8 ;;
  esac
  if ! "$SP" run -m "$g" --prompt-ids "$(cat "$dir/$name.tokens.txt")" -n 0 --no-echo --logits-out "$T/$name.f32" \
      >/dev/null 2>"$T/err"; then fail "$name: run failed: $(cat "$T/err")"; continue; fi
  if out=$("$PY" "$dir/check_logits.py" "$dir/$name.logits.f32" "$T/$name.f32" "$mode" 2>&1); then
    pass "opencl $name $mode: $(echo "$out" | head -1)"; else fail "opencl $name $mode"; echo "$out"; fi
  count=$((count + 1))
done
[ "$count" -ge 26 ] && pass "$count synthetic models checked" || fail "only $count synthetic models found"

# ---- 5. bench -------------------------------------------------------------------------------------
if out=$("$SP" bench -m "$SH/models/stories260K.gguf" --kernels opencl -p 16 -n 8 -r 1 2>&1) && echo "$out" | grep -q "opencl"; then
  pass "bench --kernels opencl"; else fail "bench --kernels opencl: $out"; fi
finish
