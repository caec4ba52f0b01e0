#!/usr/bin/env bash
# scripts/fuzz.sh — build the libFuzzer targets (tests/fuzz/fuzz_NAME.c) with clang into build-fuzz
# and run each for FUZZ_SECONDS (default 60) on a temporary copy of its seed corpus
# tests/fuzz/corpus/NAME/ (the repository's corpus is never written to).
#
#   scripts/fuzz.sh            every target (gguf, request, tmpl, tok, chat: 5 x 60 s by default)
#   scripts/fuzz.sh gguf tok   only fuzz_gguf and fuzz_tok
#
# Longer campaigns (a million executions, reproducers kept): scripts/fuzz-campaign.sh.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (build
# parallelism), FUZZ_ARGS (extra libFuzzer flags), SPARROW_SHARED (the vocabularies and templates
# fuzz_tok and fuzz_chat load; default ../shared next to the checkout). Crash reproducers are kept in
# BUILD/crashes/NAME/ and the logs in BUILD/logs/NAME.log. Exit status: 0 when every target built
# and ran clean, 1 when a build failed or a fuzzer found a crash, leak, timeout or out-of-memory.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
export SPARROW_SHARED=${SPARROW_SHARED:-$(cd "$root/.." && pwd)/shared}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"

command -v clang >/dev/null || { echo "fuzz.sh: clang not found" >&2; exit 1; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/tests/fuzz/fuzz_*.c; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .c)
    targets+=("${n#fuzz_}")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no targets in tests/fuzz/" >&2; exit 1; }

cmake -S "$root" -B "$build" -DSP_FUZZ=ON -DSP_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS="$flags" >/dev/null || { echo "fuzz.sh: cmake configure failed" >&2; exit 1; }

mkdir -p "$build/logs" "$build/crashes"
status=0
summary=()
for name in "${targets[@]}"; do
  target=fuzz_$name
  if ! cmake --build "$build" -j "$jobs" --target "$target"; then
    summary+=("$target: BUILD FAILED")
    status=1
    continue
  fi
  corpus=$(mktemp -d "${TMPDIR:-/tmp}/sparrow-fuzz-$name.XXXXXX")
  if [ -d "$root/tests/fuzz/corpus/$name" ]; then cp -R "$root/tests/fuzz/corpus/$name/." "$corpus/"; fi
  crashes=$build/crashes/$name
  mkdir -p "$crashes"
  log=$build/logs/$name.log
  echo "== $target: ${seconds}s on $(ls "$corpus" | wc -l) seeds (log $log)"
  # -timeout catches hangs, -rss_limit_mb/-malloc_limit_mb catch runaway allocations
  # shellcheck disable=SC2086
  "$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  if [ "$rc" -eq 0 ]; then
    summary+=("$target: ok, ${runs:-?} runs in ${seconds}s, corpus grew to $(ls "$corpus" | wc -l) inputs")
  else
    summary+=("$target: FAILED (exit $rc), reproducer in $crashes/, see $log")
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5 >&2
    status=1
  fi
  rm -rf "$corpus"
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $status
