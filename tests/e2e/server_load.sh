# Integration: 32 concurrent clients all get complete, correct answers (queued), /health answers
# while the engine is busy, a client dropped mid-stream is cancelled within a second, a full queue
# answers 429 with Retry-After, and API keys guard everything but /health.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
M=$SH/models/stories260K.gguf
REF=$SH/models/reference/stories260K.json
start_server load -m "$M" --ctx 512 --max-queue 64 || exit 1

# ---- 32 clients at once: the 4 reference prompts 8 times each, greedy
pids=()
for i in $(seq 0 31); do
  k=$((i % 4))
  prompt=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["prompt"], end="")' "$REF" "$k")
  stream=$([ $((i % 2)) = 0 ] && echo true || echo false)
  curl -s -N -o "$T/c$i" -H 'Content-Type: application/json' --max-time 120 --data-binary \
    "{\"prompt\":\"$prompt\",\"max_tokens\":64,\"temperature\":0,\"stream\":$stream}" "$BASE/v1/completions" &
  pids+=($!)
done
# health while busy
hs=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "$BASE/health")
[ "${hs%% *}" = 200 ] && pass "/health while 32 requests run ($hs s)" || fail "/health while busy: $hs"
wait "${pids[@]}"
ok=0
for i in $(seq 0 31); do
  k=$((i % 4))
  "$PY" - "$T/c$i" "$REF" "$k" <<'PY' && ok=$((ok + 1)) || echo "client $i wrong: $(head -c 300 "$T/c$i")"
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8")
want = json.load(open(sys.argv[2]))[int(sys.argv[3])]["completion"]
if raw.startswith("data: "):
    assert raw.endswith("data: [DONE]\n\n")
    text = "".join(json.loads(e[6:])["choices"][0]["text"] for e in raw.split("\n\n")[:-2])
else:
    text = json.loads(raw)["choices"][0]["text"]
assert text == want, (text, want)
PY
done
[ "$ok" = 32 ] && pass "32 concurrent clients: all answers complete and exact" || fail "only $ok/32 clients got the exact answer"
stop_servers

# ---- a dropped client: a slower model so the stream is still running when the client leaves
"$SP" synth --preset tiny --type q8_0 -o "$T/tiny.gguf" 2>/dev/null
start_server drop -m "$T/tiny.gguf" --ctx 8192 || exit 1
curl -s -N -o "$T/partial" --max-time 1 -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":8000,"ignore_eos":true,"stream":true}' "$BASE/v1/completions" || true
t_drop=$(date +%s.%N)
grep -q '^data: {' "$T/partial" && pass "stream was running when the client dropped" || fail "no stream data before the drop"
idle=""
for _ in $(seq 1 20); do
  curl -s "$BASE/metrics" >"$T/m"
  if grep -q '^sparrow_requests_cancelled_total 1$' "$T/m" && grep -q '^sparrow_requests_running 0$' "$T/m"; then
    idle=$("$PY" -c "print(round($(date +%s.%N) - $t_drop, 3))"); break; fi
  sleep 0.05
done
[ -n "$idle" ] && "$PY" -c "import sys; sys.exit(0 if float('$idle') < 1.0 else 1)" &&
  pass "dropped client: cancelled and engine idle after ${idle}s" || fail "dropped client: $(grep -E 'cancelled|running' "$T/m")"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":4}'); [ "$s" = 200 ] && pass "serves the next request" || fail "after drop: $s"
stop_servers

# ---- overload: one running sequence and a queue of 1 -> 429 with Retry-After for the surplus. Streamed requests get their
# status as soon as they are queued; each would generate 4000 tokens, far longer than the time it
# takes to send all four, and is dropped by curl after 3 s (the server cancels it).
start_server busy -m "$T/tiny.gguf" --parallel 1 --max-queue 1 --ctx 8192 || exit 1
pids=()
for i in 1 2 3 4; do
  curl -s -N -o "$T/o$i" -D "$T/oh$i" -w '%{http_code}' --max-time 3 -H 'Content-Type: application/json' --data-binary \
    '{"prompt":"Once upon a time","max_tokens":4000,"ignore_eos":true,"stream":true}' "$BASE/v1/completions" >"$T/os$i" &
  pids+=($!)
done
wait "${pids[@]}" || true
n429=0; n200=0
for i in 1 2 3 4; do
  case $(cat "$T/os$i") in
    429) grep -qi '^retry-after: ' "$T/oh$i" && grep -q '"code":"rate_limit_exceeded"' "$T/o$i" && n429=$((n429 + 1));;
    200) n200=$((n200 + 1));;
  esac
done
[ "$n429" -ge 1 ] && [ "$n200" -ge 1 ] && [ $((n429 + n200)) = 4 ] && pass "overload: $n200 accepted, $n429 refused with 429 + Retry-After" ||
  fail "overload: 200s=$n200 429s=$n429: $(cat "$T"/os*)"
stop_servers

# ---- API keys (several), /health open
start_server keys -m "$M" --api-key k1 --api-key k2 || exit 1
s=$(req GET /v1/models); check "no key -> 401" 401 "$s" "j['error']['code'] == 'invalid_api_key'"
s=$(req GET /v1/models "" -H 'Authorization: Bearer nope'); check "wrong key -> 401" 401 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer k2'); check "second key -> 200" 200 "$s"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":2}' -H 'Authorization: Bearer k1'); check "first key -> 200" 200 "$s"
s=$(req GET /health); check "/health needs no key" 200 "$s"
finish
