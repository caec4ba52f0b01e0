# Integration (batching): 8 different greedy prompts on stories260K give exactly the same text
# whether each runs alone, all 8 run at once, or each asks for n=4 choices (every sibling equals the
# lone run); /metrics carries the batching counters. Pass/fail only, no timing: whether the 8 really
# shared steps is printed (from the counters), never asserted.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
M=$SH/models/stories260K.gguf
REF=$SH/models/reference/stories260K.json
# the counters the batching scheduler exports (sp_sched_stats: steps, step_seqs, step_tokens)
BATCH_METRICS="sparrow_batch_steps_total sparrow_batch_seqs_total sparrow_batch_tokens_total"
start_server batching -m "$M" --ctx 512 || exit 1

# the 4 reference prompts first (their lone text must begin their reference continuation), then 4
# more; odd ones ignore EOS, so the sequences end at different steps
prompts=("Once upon a time" "Lily and Ben" "The little dog" "One day, a cat"
         "Tom had a big red ball" "The sun was hot and" "Sue wanted to" "In the garden, a bird")
N=${#prompts[@]}
MAXT=48
# body I N STREAM -> the JSON body of prompt I with n choices
body() {
  "$PY" -c 'import json,sys; i=int(sys.argv[2]); print(json.dumps({"prompt": sys.argv[1], "max_tokens": int(sys.argv[5]),
    "temperature": 0, "ignore_eos": i % 2 == 1, "n": int(sys.argv[3]), "stream": sys.argv[4] == "1"}))' \
    "${prompts[$1]}" "$1" "$2" "$3" "$MAXT"
}
# texts FILE N: the text of each of the n choices of a response (JSON or an SSE stream), one JSON
# string per line in index order; exit 1 with a message when the response is not a complete answer
texts() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8"); n = int(sys.argv[2])
got = {}
if raw.startswith("data: "):
    assert raw.endswith("data: [DONE]\n\n"), "stream not terminated by [DONE]: ...%r" % raw[-80:]
    finished = set()
    for e in raw.split("\n\n")[:-2]:
        c = json.loads(e[6:])
        if "error" in c: raise SystemExit("error event: %s" % e)
        for ch in c["choices"]:
            got[ch["index"]] = got.get(ch["index"], "") + ch["text"]
            if ch.get("finish_reason"): finished.add(ch["index"])
    assert finished == set(range(n)), "choices that finished: %s" % sorted(finished)
else:
    j = json.loads(raw)
    if "error" in j: raise SystemExit("error: %s" % raw[:400])
    for ch in j["choices"]: got[ch["index"]] = ch["text"]
assert sorted(got) == list(range(n)), "choice indices %s, want 0..%d" % (sorted(got), n - 1)
for i in range(n): print(json.dumps(got[i]))
PY
}
metric() { awk -v m="$1" '$1 == m {print $2; exit}' "$T/metrics"; }

# ---- (a) each prompt alone, one after another
for ((i = 0; i < N; i++)); do
  s=$(curl -s -o "$T/alone$i" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
        --data-binary "$(body "$i" 1 0)" "$BASE/v1/completions")
  if [ "$s" = 200 ] && texts "$T/alone$i" 1 >"$T/want$i"; then pass "alone $i: '${prompts[$i]}'"
  else fail "alone $i: status $s: $(head -c 300 "$T/alone$i")"; fi
done
for ((i = 0; i < 4; i++)); do
  "$PY" - "$T/want$i" "$REF" "$i" <<'PY' && pass "alone $i begins its reference continuation" || fail "alone $i differs from the reference"
import json, sys
got = json.loads(open(sys.argv[1]).read())
want = json.load(open(sys.argv[2]))[int(sys.argv[3])]["completion"]
assert got and want.startswith(got), (got, want)
PY
done

# ---- (b) all 8 at once, twice (streaming odd ones, then even ones). The curls wait behind a lock
# the shell holds and start together when it lets go.
curl -s "$BASE/metrics" >"$T/metrics"
steps0=$(metric sparrow_batch_steps_total); seqs0=$(metric sparrow_batch_seqs_total)
for round in 1 2; do
  exec 9>"$T/gate"; flock -x 9
  pids=()
  for ((i = 0; i < N; i++)); do
    stream=$(( (i + round) % 2 == 0 ? 1 : 0 ))
    body "$i" 1 "$stream" >"$T/b$round.$i.json"
    flock -s "$T/gate" curl -s -N -o "$T/conc$round.$i" -w '%{http_code}' --max-time 60 \
      -H 'Content-Type: application/json' --data-binary @"$T/b$round.$i.json" "$BASE/v1/completions" \
      >"$T/cs$round.$i" 9>&- &
    pids+=($!)
  done
  sleep 0.3  # let every curl reach the lock (not a timing assertion: late ones still run)
  flock -u 9; exec 9>&-
  for ((i = 0; i < N; i++)); do
    rc=0; wait "${pids[$i]}" || rc=$?
    s=$(cat "$T/cs$round.$i")
    if [ "$rc" != 0 ] || [ "$s" != 200 ]; then
      fail "concurrent round $round, prompt $i: curl exit $rc, status $s: $(head -c 300 "$T/conc$round.$i")"
    elif ! texts "$T/conc$round.$i" 1 >"$T/got$round.$i"; then
      fail "concurrent round $round, prompt $i: incomplete answer"
    elif cmp -s "$T/want$i" "$T/got$round.$i"; then
      pass "concurrent round $round, prompt $i: same text as alone"
    else
      fail "concurrent round $round, prompt $i: text differs from alone: $(cat "$T/got$round.$i") vs $(cat "$T/want$i")"
    fi
  done
done
curl -s "$BASE/metrics" >"$T/metrics"
steps1=$(metric sparrow_batch_steps_total); seqs1=$(metric sparrow_batch_seqs_total)
if [ -n "$steps0" ] && [ -n "$steps1" ] && [ -n "$seqs0" ] && [ -n "$seqs1" ] && [ "$steps1" != "$steps0" ]; then
  echo "info: concurrent rounds: $((steps1 - steps0)) steps carried $((seqs1 - seqs0)) sequence-steps" \
       "(mean batch $("$PY" -c "print(round(($seqs1 - $seqs0) / ($steps1 - $steps0), 2))"))"
fi

# ---- (c) n=4: every sibling equals the lone text (greedy); prompts 0 and 1 also streamed
for ((i = 0; i < N; i++)); do
  for stream in 0 1; do
    [ "$stream" = 1 ] && [ "$i" -ge 2 ] && continue
    what="n=4 prompt $i"; [ "$stream" = 0 ] || what="$what (stream)"
    s=$(curl -s -N -o "$T/n4.$i.$stream" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
          --data-binary "$(body "$i" 4 "$stream")" "$BASE/v1/completions")
    if [ "$s" = 400 ]; then
      fail "$what: the server refuses n=4 (400: $(head -c 200 "$T/n4.$i.$stream")): n > 1 (sibling choices) is not implemented yet; the other n=4 checks not run"
      break 2
    fi
    if [ "$s" != 200 ] || ! texts "$T/n4.$i.$stream" 4 >"$T/sib.$i.$stream"; then
      fail "$what: status $s: $(head -c 300 "$T/n4.$i.$stream")"; continue
    fi
    bad=$("$PY" -c 'import sys; w=open(sys.argv[1]).read(); s=open(sys.argv[2]).read().splitlines()
print(" ".join(str(k) for k in range(4) if s[k] != w.strip()))' "$T/want$i" "$T/sib.$i.$stream")
    [ -z "$bad" ] && pass "$what: all 4 siblings equal the lone text" ||
      fail "$what: siblings $bad differ from the lone text $(cat "$T/want$i"): $(cat "$T/sib.$i.$stream")"
  done
done

# ---- /metrics: the batching counters exist and add up
curl -s "$BASE/metrics" >"$T/metrics"
for m in $BATCH_METRICS; do
  v=$(metric "$m")
  if [ -z "$v" ]; then fail "/metrics lacks $m (the batching counters are not exported yet)"
  elif [ "$v" -gt 0 ] 2>/dev/null; then pass "/metrics: $m $v"
  else fail "/metrics: $m is '$v', want a count > 0"; fi
done
st=$(metric sparrow_batch_steps_total); sq=$(metric sparrow_batch_seqs_total); tk=$(metric sparrow_batch_tokens_total)
if [ -n "$st" ] && [ -n "$sq" ] && [ -n "$tk" ]; then
  [ "$sq" -ge "$st" ] && [ "$tk" -ge "$sq" ] && pass "batch counters: tokens >= sequence-steps >= steps" ||
    fail "batch counters do not add up: steps $st, sequence-steps $sq, tokens $tk"
fi
finish
