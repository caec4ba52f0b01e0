# Integration: `sparrow serve` on 127.0.0.1 with stories260K, driven by curl: every endpoint, the
# exact response shapes, greedy text equal to `sparrow run`, streaming framing, and every error; n
# choices (whole and streamed); then, on a slower model, a client leaving an n=2 stream and a full queue.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
M=$SH/models/stories260K.gguf
REF=$SH/models/reference/stories260K.json
want=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["completion"], end="")' "$REF")
start_server main -m "$M" --ctx 512 || exit 1

# ---- health, models, metrics
s=$(req GET /health); check "GET /health" 200 "$s" "j == {'status': 'ok'}"
grep -qi '^content-type: application/json' "$T/headers" && pass "health content type" || fail "health content type"
s=$(req GET /v1/models); check "GET /v1/models" 200 "$s" "j['object'] == 'list' and j['data'][0]['id'] == 'stories260K' and j['data'][0]['object'] == 'model'"
s=$(req GET /models); check "GET /models alias" 200 "$s" "j['data'][0]['id'] == 'stories260K'"

# ---- completions: greedy text equals the reference (= sparrow run)
body='{"model":"stories260K","prompt":"Once upon a time","max_tokens":64,"temperature":0}'
s=$(req POST /v1/completions "$body")
"$PY" - "$T/body" "$want" <<'PY' && pass "completion: exact text, usage, shape" || fail "completion: $(head -c 600 "$T/body")"
import json, sys
j = json.load(open(sys.argv[1])); want = sys.argv[2]
c = j["choices"][0]
assert j["object"] == "text_completion" and j["id"].startswith("cmpl-") and j["model"] == "stories260K", j
assert c["text"] == want, (c["text"], want)
assert c["finish_reason"] == "length" and c["index"] == 0
assert j["usage"] == {"prompt_tokens": 5, "completion_tokens": 64, "total_tokens": 69,
                      "prompt_tokens_details": {"cached_tokens": j["usage"]["prompt_tokens_details"]["cached_tokens"]}}
PY
run_out=$("$SP" run -m "$M" -p "Once upon a time" -n 64 --temp 0 --no-echo 2>/dev/null)
[ "$run_out" = "$want" ] && pass "sparrow run prints the same text" || fail "sparrow run differs"
s=$(req POST /completions "$body")
[ "$s" = 200 ] && [ "$(jget "j['choices'][0]['text']")" = "$want" ] && pass "POST /completions alias" || fail "alias: $(head -c 300 "$T/body")"
# the second identical request reuses the prompt's KV: the paged cache shares whole blocks (16
# positions), so a 5-token prompt has none to share; a 42-token one has two, at most all but its last
check "short prompt: cached tokens within the prompt" 200 "$s" "0 <= j['usage']['prompt_tokens_details']['cached_tokens'] <= 4"
lp=$("$PY" -c 'import json; print(json.dumps({"prompt": "Once upon a time " * 10, "max_tokens": 8, "temperature": 0}))')
s=$(req POST /v1/completions "$lp"); s=$(req POST /v1/completions "$lp")
check "prompt KV reused" 200 "$s" "j['usage']['prompt_tokens'] == 42 and 16 <= j['usage']['prompt_tokens_details']['cached_tokens'] <= 41"
# prompt as token ids
s=$(req POST /v1/completions '{"prompt":[1,403,407,261,378],"max_tokens":8,"temperature":0}')
check "prompt as token ids" 200 "$s" "j['choices'][0]['text'] == ', there was a little girl'"
# stop strings (matched across tokens, not emitted)
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"stop":[" Lily","zzz"]}')
check "stop string" 200 "$s" "j['choices'][0]['text'] == ', there was a little girl named' and j['choices'][0]['finish_reason'] == 'stop'"
# echo
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"echo":true}')
check "echo" 200 "$s" "j['choices'][0]['text'] == 'Once upon a time, there was a little girl'"
# logprobs
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":3,"temperature":0,"logprobs":2}')
check "completion logprobs" 200 "$s" "len(j['choices'][0]['logprobs']['tokens']) == 3 and all(len(t) == 2 for t in j['choices'][0]['logprobs']['top_logprobs']) and j['choices'][0]['logprobs']['token_logprobs'][0] <= 0 and ''.join(j['choices'][0]['logprobs']['tokens']) == j['choices'][0]['text']"
# seeded sampling reproduces
b='{"prompt":"Once upon a time","max_tokens":24,"temperature":1,"seed":7}'
s=$(req POST /v1/completions "$b"); a1=$(jget "j['choices'][0]['text']")
s=$(req POST /v1/completions "$b"); a2=$(jget "j['choices'][0]['text']")
[ "$a1" = "$a2" ] && pass "same seed, same text" || fail "seeded sampling differs: '$a1' vs '$a2'"
# ignore_eos generates exactly max_tokens
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":200,"temperature":0,"ignore_eos":true}')
check "ignore_eos" 200 "$s" "j['usage']['completion_tokens'] == 200 and j['choices'][0]['finish_reason'] == 'length'"

# ---- chat completions
chat='{"model":"stories260K","messages":[{"role":"system","content":"Tell a story."},{"role":"user","content":[{"type":"text","text":"Once upon"},{"type":"text","text":" a time"}]}],"max_tokens":16,"temperature":0,"seed":1}'
s=$(req POST /v1/chat/completions "$chat")
check "chat completion shape" 200 "$s" "j['object'] == 'chat.completion' and j['id'].startswith('chatcmpl-') and j['choices'][0]['message']['role'] == 'assistant' and isinstance(j['choices'][0]['message']['content'], str) and j['choices'][0]['finish_reason'] in ('stop', 'length') and j['usage']['total_tokens'] == j['usage']['prompt_tokens'] + j['usage']['completion_tokens']"
chat_text=$(jget "j['choices'][0]['message']['content']")
s=$(req POST /chat/completions "$chat")
[ "$s" = 200 ] && [ "$(jget "j['choices'][0]['message']['content']")" = "$chat_text" ] && pass "POST /chat/completions alias" || fail "chat alias"

# ---- streaming: exact SSE framing, parsed from the raw bytes
sse_check() { # NAME KIND FILE EXPECTED-TEXT INCLUDE_USAGE
  "$PY" - "$@" <<'PY'
import json, sys
name, kind, path, want, usage = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
raw = open(path, "rb").read()
assert raw.endswith(b"data: [DONE]\n\n"), raw[-60:]
events = raw.split(b"\n\n")
assert events[-1] == b"", "stream must end with a blank line"
events = events[:-1]
assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), "every event is one data: line"
chunks = [json.loads(e[6:].decode("utf-8")) for e in events[:-1]]  # strict UTF-8 JSON
text = ""
finish = [c for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
assert len(finish) == 1, "exactly one chunk carries finish_reason"
if kind == "chat":
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
else:
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert len({c["id"] for c in chunks}) == 1, "one id for the whole stream"
if usage:
    u = chunks[-1]
    assert u["choices"] == [] and u["usage"]["completion_tokens"] > 0, u
    assert chunks[-2] is finish[0]
else:
    assert chunks[-1] is finish[0] and "usage" not in chunks[-1]
assert text == want, (text, want)
PY
}
curl -sN -D "$T/sh" -o "$T/sse" -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"stream":true}' "$BASE/v1/completions"
grep -qi '^content-type: text/event-stream' "$T/sh" && pass "stream content type" || fail "stream content type: $(cat "$T/sh")"
sse_check completion completion "$T/sse" "$want" 0 && pass "completion stream framing + text" || fail "completion stream"
curl -sN -o "$T/sse2" -H 'Content-Type: application/json' --data-binary \
  "$(echo "$chat" | sed 's/}$/,"stream":true,"stream_options":{"include_usage":true}}/')" "$BASE/v1/chat/completions"
sse_check chat chat "$T/sse2" "$chat_text" 1 && pass "chat stream framing + text + usage chunk" || fail "chat stream"
# a stop string split across tokens in a stream is never emitted
curl -sN -o "$T/sse3" -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"stream":true,"stop":"l named"}' "$BASE/v1/completions"
sse_check stop completion "$T/sse3" ", there was a little gir" 0 && pass "stream stop string" || fail "stream stop string"

# ---- n choices: sibling generations of one prompt
# n=3, greedy: three choices in index order, each the n=1 text exactly; the prompt counted once
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"n":3}')
"$PY" - "$T/body" "$want" <<'PY' && pass "n=3: 3 choices, indexes 0..2, each the n=1 greedy text, usage summed" || fail "n=3: $(head -c 600 "$T/body")"
import json, sys
j = json.load(open(sys.argv[1])); want = sys.argv[2]
assert [c["index"] for c in j["choices"]] == [0, 1, 2], j["choices"]
assert all(c["text"] == want and c["finish_reason"] == "length" and c["logprobs"] is None for c in j["choices"]), j
u = j["usage"]
assert u["prompt_tokens"] == 5 and u["completion_tokens"] == 3 * 64 and u["total_tokens"] == 5 + 3 * 64, u
assert set(u["prompt_tokens_details"]) == {"cached_tokens"} and 0 <= u["prompt_tokens_details"]["cached_tokens"] <= 4, u
PY
s=$(req POST /v1/chat/completions "$(echo "$chat" | sed 's/}$/,"n":2}/')")
"$PY" - "$T/body" "$chat_text" <<'PY' && pass "chat n=2: both messages equal the n=1 chat text" || fail "chat n=2: $(head -c 600 "$T/body")"
import json, sys
j = json.load(open(sys.argv[1]))
assert [c["index"] for c in j["choices"]] == [0, 1], j
assert all(c["message"] == {"role": "assistant", "content": sys.argv[2], "refusal": None} for c in j["choices"]), j
PY
# seeded sampling: choice i samples as an n=1 request with seed + i, and the same request repeats
b='{"prompt":"Once upon a time","max_tokens":24,"temperature":1,"seed":7,"n":2}'
s=$(req POST /v1/completions "$b"); n1=$(jget "json.dumps([c['text'] for c in j['choices']])")
s=$(req POST /v1/completions "$b"); n2=$(jget "json.dumps([c['text'] for c in j['choices']])")
[ "$n1" = "$n2" ] && pass "n=2 seeded, temperature 1: the same request gives the same texts" || fail "seeded n=2 differs: $n1 vs $n2"
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":24,"temperature":1,"seed":8}'); t8=$(jget "j['choices'][0]['text']")
[ "$n1" = "$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$a1" "$t8")" ] &&
  pass "n=2 seed 7: the choices are the n=1 texts of seeds 7 and 8" || fail "seeds: $n1 vs ['$a1', '$t8']"
# logprobs and echo per choice
s=$(req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":3,"temperature":1,"seed":3,"n":2,"logprobs":2,"echo":true}')
check "n=2: logprobs and echo per choice" 200 "$s" "len(j['choices']) == 2 and all(len(c['logprobs']['tokens']) == 3 and all(len(t) == 2 for t in c['logprobs']['top_logprobs']) and c['text'] == 'Once upon a time' + ''.join(c['logprobs']['tokens']) for c in j['choices'])"
# streaming n: chunks of every choice (each with its index), a finish chunk per choice, the usage
# chunk after all of them, one [DONE] at the very end
sse_n_check() { # FILE KIND N EXPECTED-TEXT
  "$PY" - "$@" <<'PY'
import json, sys
path, kind, n, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
raw = open(path, "rb").read()
assert raw.endswith(b"\n\ndata: [DONE]\n\n") and raw.count(b"data: [DONE]") == 1, raw[-80:]
events = raw.split(b"\n\n")[:-1]
assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
chunks = [json.loads(e[6:].decode("utf-8")) for e in events[:-1]]
usage = chunks[-1]
assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == n * 64, usage
chunks = chunks[:-1]
assert all(len(c["choices"]) == 1 and "usage" not in c for c in chunks)
assert len({c["id"] for c in chunks}) == 1
idx = [c["choices"][0]["index"] for c in chunks]
assert set(idx) == set(range(n)), idx
for i in range(n):
    mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
    fin = [c for c in mine if c["finish_reason"]]
    assert len(fin) == 1 and fin[0] is mine[-1] and fin[0]["finish_reason"] == "length", (i, fin)
    if kind == "chat":
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}, mine[0]
        assert sum(1 for c in mine if "role" in c["delta"]) == 1
        text = "".join(c["delta"].get("content") or "" for c in mine)
    else:
        text = "".join(c["text"] for c in mine)
    assert text == want, (i, text, want)
PY
}
curl -sN -o "$T/ssen" -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"stream":true,"n":2,"stream_options":{"include_usage":true}}' "$BASE/v1/completions"
sse_n_check "$T/ssen" completion 2 "$want" && pass "stream n=2: both indexes, a finish chunk each, usage, one [DONE], texts = n=1" || fail "stream n=2: $(head -c 400 "$T/ssen")"
s=$(req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":64,"temperature":0,"ignore_eos":true}')
chat64=$(jget "j['choices'][0]['message']['content']")
curl -sN -o "$T/ssec" -H 'Content-Type: application/json' --data-binary \
  '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":64,"temperature":0,"ignore_eos":true,"stream":true,"n":3,"stream_options":{"include_usage":true}}' "$BASE/v1/chat/completions"
sse_n_check "$T/ssec" chat 3 "$chat64" && pass "chat stream n=3: a role chunk, a finish chunk and the n=1 text per index" || fail "chat stream n=3: $(head -c 400 "$T/ssec")"

# ---- tokenize / detokenize / apply-template
s=$(req POST /tokenize '{"content":"Once upon a time"}'); check "tokenize" 200 "$s" "j == {'tokens': [403, 407, 261, 378]}"
s=$(req POST /tokenize '{"content":"Once upon a time","add_special":true,"with_pieces":true}')
check "tokenize with pieces" 200 "$s" "j['tokens'][0]['id'] == 1 and j['tokens'][1] == {'id': 403, 'piece': ' Once'}"
s=$(req POST /detokenize '{"tokens":[403,407,261,378]}'); check "detokenize" 200 "$s" "j == {'content': ' Once upon a time'}"
s=$(req POST /apply-template '{"messages":[{"role":"user","content":"hi"}]}'); check "apply-template" 200 "$s" "'hi' in j['prompt']"

# ---- errors in OpenAI's shape
shape="set(j) == {'error'} and set(j['error']) == {'message', 'type', 'param', 'code'}"
s=$(req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}'); check "truncated JSON -> 400" 400 "$s" "$shape and 'not valid JSON' in j['error']['message']"
s=$(req POST /v1/chat/completions '{"messages":"hi"}'); check "wrong type -> 400" 400 "$s" "$shape and j['error']['param'] == 'messages'"
s=$(req POST /v1/completions '{"prompt":"x","temperature":"hot"}'); check "bad temperature -> 400" 400 "$s" "j['error']['param'] == 'temperature'"
s=$(req POST /v1/completions '{"prompt":"x","max_tokens":1e999}'); check "huge number -> 400" 400 "$s" "j['error']['param'] == 'max_tokens'"
deep=$("$PY" -c 'print("{\"prompt\":" + "[" * 500 + "]" * 500 + "}")')
s=$(req POST /v1/completions "$deep"); check "deep nesting -> 400" 400 "$s" "'nests deeper' in j['error']['message']"
s=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary $'{"prompt":"\xff\xfe"}' "$BASE/v1/completions")
check "invalid UTF-8 -> 400" 400 "$s" "'UTF-8' in j['error']['message']"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"prompt":"x"}' "$BASE/v1/completions")
check "form content type -> 415" 415 "$s" "$shape and 'application/json' in j['error']['message']"
s=$(req POST /v1/completions '{"model":"gpt-4","prompt":"x"}'); check "unknown model -> 404" 404 "$s" "$shape and j['error']['code'] == 'model_not_found' and j['error']['param'] == 'model'"
long=$("$PY" -c 'print("{\"prompt\":\"" + "Once upon a time " * 200 + "\"}")')
s=$(req POST /v1/completions "$long"); check "prompt too long -> 400 with numbers" 400 "$s" "j['error']['code'] == 'context_length_exceeded' and 'maximum context length is 512 tokens' in j['error']['message'] and 'your prompt has 8' in j['error']['message']"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":600}'); check "prompt + max_tokens too long -> 400" 400 "$s" "j['error']['code'] == 'context_length_exceeded' and j['error']['param'] == 'max_tokens'"
s=$(req POST /v1/completions '{"prompt":"x","n":5}')
check "n above the limit (4) -> 400 in OpenAI's shape" 400 "$s" "$shape and j['error']['param'] == 'n' and j['error']['type'] == 'invalid_request_error' and j['error']['code'] == 'integer_above_max_value' and 'Expected a value <= 4, but got 5' in j['error']['message']"
s=$(req POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"n":0}')
check "n = 0 -> 400" 400 "$s" "$shape and j['error']['param'] == 'n' and j['error']['code'] == 'integer_below_min_value'"
s=$(req POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}')
check "json_object refused clearly" 400 "$s" "j['error']['param'] == 'response_format'"
head -c 9000000 /dev/zero | tr '\0' 'a' >"$T/big"
s=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$T/big" "$BASE/v1/completions")
check "body too large -> 413" 413 "$s" "$shape"
s=$(req GET /nope); check "unknown path -> 404" 404 "$s" "$shape"
s=$(req GET /v1/chat/completions); check "wrong method -> 405" 405 "$s" "$shape"
s=$(req GET /health); check "still healthy after errors" 200 "$s"

# ---- metrics (Prometheus text)
curl -s "$BASE/metrics" >"$T/metrics"
for m in 'sparrow_requests_total{endpoint="/v1/completions",status="2xx"}' sparrow_generated_tokens_total \
         sparrow_prompt_tokens_total sparrow_queue_depth sparrow_time_to_first_token_seconds_bucket \
         sparrow_generation_tokens_per_second_count 'sparrow_requests_total{endpoint="/v1/completions",status="4xx"}'; do
  grep -qF "$m" "$T/metrics" && pass "metrics: $m" || fail "metrics lacks $m"
done
# the scheduler's KV and batching figures (zeros until a scheduler fills them), each with its TYPE
for m in 'kv_blocks{state="used"} gauge' 'kv_blocks{state="cached"} gauge' 'kv_blocks{state="free"} gauge' \
         'kv_blocks_total gauge' 'prefix_hit_tokens_total counter' 'batch_steps_total counter' \
         'batch_seqs_total counter' 'batch_tokens_total counter' 'batch_seqs_last gauge' 'batch_tokens_last gauge' \
         'sequences_total{outcome="completed"} counter' 'sequences_total{outcome="rejected"} counter' 'requests_running gauge'; do
  name=sparrow_${m% *}; type=${m##* }
  awk -v k="$name" '$1 == k && $2 ~ /^[0-9]+$/ { f = 1 } END { exit !f }' "$T/metrics" && grep -qx "# TYPE ${name%%\{*} $type" "$T/metrics" &&
    pass "metrics: $name ($type)" || fail "metrics lacks $name ($type)"
done
awk '$1 == "sparrow_sequences_total{outcome=\"completed\"}" && $2 > 0 { f = 1 } END { exit !f }' "$T/metrics" &&
  pass "metrics count finished sequences" || fail "sequence counter: $(grep sequences_total "$T/metrics")"
grep -Eq '^sparrow_generated_tokens_total [1-9][0-9]*$' "$T/metrics" && pass "metrics count tokens" || fail "token counter"
# one log line per request
grep -Eq 'POST /v1/completions 200 .*tokens 5\+64' "$T/main.log" && pass "request log line" || fail "log: $(tail -3 "$T/main.log")"
grep -Eq 'POST /v1/completions 200 .*tokens 5\+192 \(cached [0-9]+\) length n=3 length,length,length' "$T/main.log" &&
  pass "request log line of n=3" || fail "log n=3: $(grep 'n=3' "$T/main.log" | head -2)"
stop_servers

# ---- a slower model (random weights, long context), one sequence at a time, a queue of 2
"$SP" synth --preset tiny --type q8_0 -o "$T/tiny.gguf" 2>/dev/null
start_server busy -m "$T/tiny.gguf" --ctx 8192 --parallel 1 --max-queue 2 || exit 1
metric() { curl -s "$BASE/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# a client that leaves a stream of n=2 cancels both choices: the scheduler ends both as cancelled
# (a sibling left running would end as completed, thousands of tokens later)
curl -s -N -o "$T/partial" --max-time 1 -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":8000,"ignore_eos":true,"stream":true,"n":2}' "$BASE/v1/completions" || true
grep -q '^data: {' "$T/partial" && pass "n=2 stream was running when the client left" || fail "no stream data before the drop"
for _ in $(seq 1 100); do
  [ "$(metric 'sparrow_sequences_total{outcome="cancelled"}')" = 2 ] && [ "$(metric sparrow_requests_running)" = 0 ] && break
  sleep 0.05
done
[ "$(metric 'sparrow_sequences_total{outcome="cancelled"}')" = 2 ] && [ "$(metric 'sparrow_sequences_total{outcome="completed"}')" = 0 ] &&
  [ "$(metric sparrow_requests_running)" = 0 ] && [ "$(metric sparrow_queue_depth)" = 0 ] && [ "$(metric sparrow_requests_cancelled_total)" = 1 ] &&
  pass "client gone: both choices cancelled, engine idle" || fail "client gone: $(curl -s "$BASE/metrics" | grep -E '^sparrow_(sequences_total|requests_running|queue_depth|requests_cancelled)')"
s=$(req POST /v1/completions '{"prompt":"x","n":3}')
check "n above --max-queue -> 400 (the siblings could never queue together)" 400 "$s" "j['error']['code'] == 'integer_above_max_value' and 'Expected a value <= 2' in j['error']['message']"
# a full queue: 429 with Retry-After in OpenAI's rate-limit shape. One long stream holds the engine
# (--parallel 1) while K=5 short requests arrive at once: 2 wait in the queue, the rest get 429. Once
# every one of them is queued or refused, the long stream's client leaves and the queued ones run.
curl -s -N -o "$T/hold" -H 'Content-Type: application/json' --data-binary \
  '{"prompt":"Once upon a time","max_tokens":8000,"ignore_eos":true,"stream":true}' "$BASE/v1/completions" &
hold=$!
for _ in $(seq 1 200); do grep -q '^data: {' "$T/hold" 2>/dev/null && break; sleep 0.05; done
rej0=$(metric 'sparrow_sequences_total{outcome="rejected"}')
pids=()
for i in 1 2 3 4 5; do
  curl -s -o "$T/q$i" -D "$T/qh$i" -w '%{http_code}' --max-time 120 -H 'Content-Type: application/json' --data-binary \
    '{"prompt":"Once upon a time","max_tokens":8,"ignore_eos":true}' "$BASE/v1/completions" >"$T/qs$i" &
  pids+=($!)
done
for _ in $(seq 1 200); do
  [ $(( $(metric 'sparrow_sequences_total{outcome="rejected"}') - rej0 + $(metric sparrow_queue_depth) )) -ge 5 ] && break
  sleep 0.05
done
grep -q '^data: {' "$T/hold" && [ "$(metric sparrow_requests_running)" = 1 ] && pass "the long stream held the engine meanwhile" || fail "hold: $(head -c 200 "$T/hold")"
kill "$hold" 2>/dev/null; wait "$hold" 2>/dev/null || true
wait "${pids[@]}" || true
n429=0; n200=0
for i in 1 2 3 4 5; do
  case $(cat "$T/qs$i") in
    429) grep -qi '^retry-after: [0-9]' "$T/qh$i" &&
         "$PY" -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert set(e) == {"message","type","param","code"} and e["type"] == "requests" and e["code"] == "rate_limit_exceeded" and e["param"] is None' "$T/q$i" &&
         n429=$((n429 + 1));;
    200) "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["usage"]["completion_tokens"] == 8 and j["choices"][0]["finish_reason"] == "length"' "$T/q$i" &&
         n200=$((n200 + 1));;
  esac
done
[ "$n429" -ge 1 ] && [ $((n429 + n200)) = 5 ] && pass "full queue: $n429 of 5 got 429 + Retry-After (OpenAI's rate-limit shape), $n200 completed" ||
  fail "full queue: 429s=$n429 200s=$n200 statuses: $(cat "$T"/qs*) $(head -c 300 "$T/q1")"
finish
