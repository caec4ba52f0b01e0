#!/usr/bin/env bash
# scripts/test.sh — every test: unit + end-to-end (Release build), the same suite under
# ASan/UBSan, the threaded parts under TSan, the aarch64 cross build under qemu-user
# (scripts/test-arm.sh), then each libFuzzer target for a bounded time ($FUZZ_SECONDS, default 60).
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

echo "== ThreadSanitizer build: thread pool, engine thread + batching, HTTP loop, concurrent server"
# TSan excludes ASan, hence its own build (Debug, -O1). Criterion's runner cannot start under TSan
# (see tests/tsan/criterion/criterion.h): this build's unit tests use that stand-in instead.
# halt_on_error: the first report fails the test; the servers of the e2e tests write theirs to
# build-tsan/tsan-logs/ (printed on failure). No suppressions: nothing third-party reports.
tsan_t0=$(date +%s)
cmake -S . -B build-tsan -DSP_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-tsan -j"$jobs" --target sparrow test_kernels test_sched test_http
tsan_logs=$PWD/build-tsan/tsan-logs
rm -rf "$tsan_logs" && mkdir -p "$tsan_logs"
tsan_opts="halt_on_error=1 second_deadlock_stack=1"
tsan() { # OPTIONS COMMAND...
  env TSAN_OPTIONS="$1" SPARROW_SHARED="${SPARROW_SHARED:-$PWD/../shared}" SPARROW_BIN="$PWD/build-tsan/sparrow" "${@:2}"
}
tsan "$tsan_opts" build-tsan/test_kernels --filter '@(pool/*|kernels/*thread*)' # the compute pool
tsan "$tsan_opts" build-tsan/test_sched # the engine thread: batching, forks, cancel, a full queue
tsan "$tsan_opts" build-tsan/test_http  # the libuv + MHD loop: async responses, streams, drain, stop
for t in server_load batching; do # the whole server: loop, prep pool, engine thread, compute pool
  tsan "$tsan_opts log_path=$tsan_logs/$t" bash "tests/e2e/$t.sh" || {
    cat "$tsan_logs/$t".* 2>/dev/null
    exit 1
  }
done
echo "== ThreadSanitizer: clean ($(($(date +%s) - tsan_t0)) s with the build)"

echo "== aarch64: cross build, unit tests and reference outputs under qemu-user (NEON kernels)"
scripts/test-arm.sh

echo "== fuzzing (${FUZZ_SECONDS:-60} s per target)"
scripts/fuzz.sh
echo "== all tests passed"
