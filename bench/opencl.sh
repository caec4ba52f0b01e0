#!/usr/bin/env bash
# bench/opencl.sh [BUILD_DIR [OUT_DIR]] — the OpenCL backend's figures on the device SPARROW_CL_DEVICE
# picks (default auto: the first GPU):
#   1. `sparrow devices` and `sparrow devices --check` (kernels built there, one matmul checked);
#   2. bench_opencl q4_0 and q8_0: device copy bandwidth, GEMV GB/s (1 token) and GEMM TFLOP/s
#      (512 tokens) on qwen2.5-0.5b's matrix shapes, and the table's per-call time;
#   3. `sparrow bench` pp512 / tg128 of a synthetic qwen2.5-0.5b Q4_0 with --kernels opencl, and with
#      the default CPU kernels beside it.
# Everything printed is also written under OUT_DIR (default /tmp/sparrow-opencl-bench). Needs
# BUILD_DIR/sparrow and BUILD_DIR/bench_opencl (CMake builds the latter when OpenCL is found).
set -uo pipefail
B=${1:-build}
O=${2:-/tmp/sparrow-opencl-bench}
mkdir -p "$O"
export SPARROW_CACHE_DIR=${SPARROW_CACHE_DIR:-$O/cache}
step() { echo "== $*" | tee -a "$O/summary.txt"; }
run() { local t=$SECONDS; "$@" 2>&1 | tee -a "$O/summary.txt"; echo "   ($((SECONDS - t)) s)" | tee -a "$O/summary.txt"; }

step "sparrow devices"
run "$B/sparrow" devices
run "$B/sparrow" devices --check
step "bench_opencl q4_0 / q8_0 (GEMV: 1 token; GEMM: 512 tokens)"
run "$B/bench_opencl" q4_0 20
run "$B/bench_opencl" q8_0 20
model=$O/qwen2.5-0.5b-q4_0.gguf
step "sparrow bench: synthetic qwen2.5-0.5b q4_0"
[ -s "$model" ] || run "$B/sparrow" synth --preset qwen2.5-0.5b --type q4_0 -o "$model"
run "$B/sparrow" bench -m "$model" --kernels opencl -p 512 -n 128 -r ${REPS:-2}
run "$B/sparrow" bench -m "$model" -p 512 -n 128 -r ${REPS:-2}
