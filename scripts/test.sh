#!/usr/bin/env bash
# scripts/test.sh — every test: unit + end-to-end (Release build), the same suite under
# ASan/UBSan, the aarch64 cross build under qemu-user (scripts/test-arm.sh), then each libFuzzer
# target for a bounded time ($FUZZ_SECONDS, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build: unit + end-to-end tests"
scripts/build.sh build
(cd build && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build: the same suite (tests labelled 'slow' skipped: a 0.5B model under ASan)"
scripts/build.sh build-asan -DSP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" -LE slow)

echo "== aarch64: cross build, unit tests and reference outputs under qemu-user (NEON kernels)"
scripts/test-arm.sh

echo "== fuzzing (${FUZZ_SECONDS:-60} s per target)"
scripts/fuzz.sh
echo "== all tests passed"
