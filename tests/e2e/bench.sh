# End to end: `sparrow bench` runs pp and tg on a model and reports them as a table and as JSON
# (test names ppN / tgN, tokens/s > 0, stddev, threads, model path); --kernels and -t are honoured.
# Speeds themselves are not judged here (bench/ and the closing notes of issue 5 are for that).
source "$(dirname "$0")/common.sh"
M=$SH/models/synthetic/tiny-qwen2-q4_0.gguf
if out=$("$SP" bench -m "$M" -p 16 -n 4 -r 2 -t 2 2>"$T/err"); then
  echo "$out" | grep -Eq '^\| tiny-qwen2-q4_0\.gguf .*\|  *2 \|  *pp16 \| *[0-9.]+ ± *[0-9.]+ \|$' && pass "table: pp16 row" || fail "table: $out"
  echo "$out" | grep -Eq '\|  *tg4 \|' && pass "table: tg4 row" || fail "table: no tg4 row: $out"
  echo "$out" | grep -q 'weights read per decoded token' && pass "bytes per token line" || fail "no bytes line"
else fail "bench failed: $(cat "$T/err")"; fi
"$SP" bench -m "$M" -p 8 -n 3 -r 1 -t 1 --kernels ref --json >"$T/j" 2>"$T/err" || fail "bench --json failed: $(cat "$T/err")"
"$PY" - "$T/j" "$M" <<'PY' && pass "json: one array of {test, tokens_per_s, stddev, threads, model}" || fail "json: $(cat "$T/j")"
import json, sys
a = json.load(open(sys.argv[1]))
assert [o["test"] for o in a] == ["pp8", "tg3"], a
for o in a:
    assert set(o) == {"test", "tokens_per_s", "stddev", "threads", "model"}, o
    assert o["tokens_per_s"] > 0 and o["stddev"] >= 0 and o["threads"] == 1 and o["model"] == sys.argv[2], o
PY
"$SP" bench -m "$M" -p 8 -n 0 -r 1 --kernels no-such-isa >/dev/null 2>"$T/err" && fail "unknown kernels accepted" ||
  { grep -q 'known: ref' "$T/err" && pass "unknown --kernels refused, names the known ones" || fail "message: $(cat "$T/err")"; }
SPARROW_KERNELS=ref "$SP" bench -m "$M" -p 8 -n 0 -r 1 | grep -Eq '\| ref  *\|' && pass "SPARROW_KERNELS=ref honoured" || fail "SPARROW_KERNELS ignored"
"$SP" bench --help | grep -q -- '--json' && pass "help" || fail "help"
finish
