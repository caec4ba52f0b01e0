#!/usr/bin/env bash
# scripts/fuzz-campaign.sh — one long libFuzzer campaign on one target (tests/fuzz/fuzz_NAME.c),
# ASan + UBSan, stopped at EXECS executions or SECONDS seconds, whichever comes first.
#
#   scripts/fuzz-campaign.sh TARGET [EXECS] [SECONDS]
#   nice -n 19 scripts/fuzz-campaign.sh chat              # 1,000,000 executions or 30 minutes
#   nice -n 19 scripts/fuzz-campaign.sh fuzz_tok 200000 600
#
# TARGET is NAME or fuzz_NAME. The target is built in build-fuzz (the same configuration as
# scripts/fuzz.sh); the seed corpus tests/fuzz/corpus/NAME/ is copied into a work directory
# BUILD/campaign/NAME-DATE/ and grows there (the repository's corpus is never written to). -max_len
# is chosen per target (FUZZ_MAX_LEN overrides it). At the end it prints the executions, wall time,
# coverage (libFuzzer's cov/ft counters) and the result.
#
# Exit status: 0 when the campaign ran clean; 1 on any crash, leak, timeout, out-of-memory or
# sanitizer report (the reproducer is kept in WORK/crashes/ and named in the output; replay it with
# `BUILD/fuzz_NAME FILE`), or when the build failed. On success the grown corpus is deleted unless
# FUZZ_KEEP_CORPUS=1; the log WORK/fuzz.log is kept either way.
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (build parallelism, default 1),
# FUZZ_MAX_LEN, FUZZ_TIMEOUT (seconds per input, default 10), FUZZ_ARGS (extra libFuzzer flags),
# SPARROW_SHARED (tokenizers and templates; default ../shared next to the checkout).
set -uo pipefail

usage() { echo "usage: $0 TARGET [EXECS] [SECONDS]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 3 ] || usage
name=${1#fuzz_}
execs=${2:-1000000}
seconds=${3:-1800}
[[ "$execs" =~ ^[0-9]+$ && "$seconds" =~ ^[0-9]+$ && "$execs" -gt 0 && "$seconds" -gt 0 ]] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$root/tests/fuzz/fuzz_$name.c" ] || { echo "fuzz-campaign.sh: no target tests/fuzz/fuzz_$name.c" >&2; exit 2; }
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-1}
export SPARROW_SHARED=${SPARROW_SHARED:-$(cd "$root/.." && pwd)/shared}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"

# Longest input per target: room for the structure the target parses, small enough to stay fast.
case $name in
  gguf) max_len=4096 ;;    # header + a few keys and tensor infos + a little tensor data
  request) max_len=4096 ;; # a request body; the seeds are ~150 bytes
  tmpl) max_len=4096 ;;    # a template plus an optional JSON context
  tok) max_len=2048 ;;     # text + raw ids; tokenizing is the slow part
  chat) max_len=4096 ;;    # a chat request: messages, tools, kwargs
  *) max_len=4096 ;;
esac
max_len=${FUZZ_MAX_LEN:-$max_len}

command -v clang >/dev/null || { echo "fuzz-campaign.sh: clang not found" >&2; exit 1; }
mkdir -p "$build"
# one configure + build at a time (two campaigns may start together on the same build directory)
(
  flock 9
  cmake -S "$root" -B "$build" -DSP_FUZZ=ON -DSP_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS="$flags" >/dev/null &&
    cmake --build "$build" -j "$jobs" --target "fuzz_$name" >"$build/build-$name.log" 2>&1
) 9>"$build/.campaign.lock" || { echo "fuzz-campaign.sh: building fuzz_$name failed (see $build/build-$name.log)" >&2; exit 1; }

work=$build/campaign/$name-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$work/corpus" "$work/crashes"
if [ -d "$root/tests/fuzz/corpus/$name" ]; then cp -R "$root/tests/fuzz/corpus/$name/." "$work/corpus/"; fi
seeds=$(find "$work/corpus" -type f | wc -l)
log=$work/fuzz.log
echo "== fuzz_$name: up to $execs executions or ${seconds}s, -max_len=$max_len, $seeds seeds"
echo "   work dir $work"

start=$(date +%s.%N)
# -timeout: a hang is a finding; -rss_limit_mb / -malloc_limit_mb: so is a runaway allocation.
# shellcheck disable=SC2086
"$build/fuzz_$name" -runs="$execs" -max_total_time="$seconds" -max_len="$max_len" \
  -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
  -artifact_prefix="$work/crashes/" ${FUZZ_ARGS:-} "$work/corpus" >"$log" 2>&1
rc=$?
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')

runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1)
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
corp=$(sed -nE 's/.* corp: ([0-9]+\/[^ ]+).*/\1/p' <<<"$last")
fuzz_s=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -1)
rate=$(awk -v r="${runs:-0}" -v s="${fuzz_s:-$wall}" 'BEGIN { printf "%.0f", r / (s > 0 ? s : 1) }')
artifacts=$(find "$work/crashes" -type f | sort)
# a sanitizer report that did not end the process is still a finding
reports=$(grep -cE '^==[0-9]+==(ERROR|WARNING): |runtime error:|^SUMMARY: ' "$log")

echo "   executions: ${runs:-?} (${rate:-?} exec/s)"
echo "   wall time:  ${wall}s"
echo "   coverage:   cov ${cov:-?} edges, ft ${ft:-?} features, corpus ${corp:-?}"
if [ "$rc" -eq 0 ] && [ -z "$artifacts" ] && [ "$reports" -eq 0 ]; then
  echo "   result:     clean"
  if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then rm -rf "$work/corpus"; fi
  exit 0
fi
echo "   result:     FAILED (libFuzzer exit $rc)"
grep -E '^==[0-9]+==(ERROR|WARNING)|^SUMMARY|runtime error|invariant failed|^MS: |ALARM|out-of-memory' "$log" | head -10 | sed 's/^/     /'
if [ -n "$artifacts" ]; then
  echo "   reproducer: $artifacts"
  echo "   replay:     SPARROW_SHARED=$SPARROW_SHARED $build/fuzz_$name $(head -1 <<<"$artifacts")"
fi
echo "   log:        $log"
exit 1
