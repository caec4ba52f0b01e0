# Integration: `sparrow serve` on 127.0.0.1 with stories260K, driven by curl: every endpoint, the
# exact response shapes, greedy text equal to `sparrow run`, streaming framing, and every error.
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
# the second identical request reuses the prompt's KV (all but the last prompt token)
check "prompt KV reused" 200 "$s" "j['usage']['prompt_tokens_details']['cached_tokens'] == 4"
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
s=$(req POST /v1/completions '{"prompt":"x","n":2}'); check "n > 1 refused clearly" 400 "$s" "j['error']['param'] == 'n'"
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
grep -Eq '^sparrow_generated_tokens_total [1-9][0-9]*$' "$T/metrics" && pass "metrics count tokens" || fail "token counter"
# one log line per request
grep -Eq 'POST /v1/completions 200 .*tokens 5\+64' "$T/main.log" && pass "request log line" || fail "log: $(tail -3 "$T/main.log")"
finish
