# Integration: the Ollama API (/api/chat, /api/generate, /api/tags, /api/show, /api/version,
# /api/ps) with Ollama's field names, NDJSON streaming and final statistics, checked with curl and
# with the official Ollama JS client (npm `ollama`, installed into the build tree on first run).
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
here=$(cd "$(dirname "$0")" && pwd)
start_server ollama -m "$SH/models/stories260K.gguf" || exit 1

# curl: Ollama's docs post with plain `curl -d` (no content type)
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K","prompt":"Once upon a time","raw":true,"stream":false,"options":{"temperature":0,"num_predict":8}}' "$BASE/api/generate")
check "generate, not streamed" 200 "$s" "j['response'] == ', there was a little girl' and j['done'] is True and j['done_reason'] == 'length' and j['eval_count'] == 8 and j['prompt_eval_count'] + 0 >= 1 and all(isinstance(j[k], int) for k in ('total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration')) and j['model'] == 'stories260K:latest' and j['created_at'].endswith('Z')"
curl -s -D "$T/h" -o "$T/nd" -d '{"model":"stories260K","prompt":"Once upon a time","raw":true,"options":{"temperature":0,"num_predict":8}}' "$BASE/api/generate"
grep -qi '^content-type: application/x-ndjson' "$T/h" && pass "NDJSON content type" || fail "NDJSON content type"
"$PY" - "$T/nd" <<'PY' && pass "generate stream: one JSON object per line, done last" || fail "generate stream: $(head -c 300 "$T/nd")"
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8")
assert raw.endswith("\n")
lines = [json.loads(l) for l in raw.split("\n")[:-1]]
assert all(not l["done"] for l in lines[:-1]) and lines[-1]["done"] and lines[-1]["eval_count"] == 8
assert "".join(l["response"] for l in lines) == ", there was a little girl"
PY
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":4}}' "$BASE/api/chat")
check "chat, not streamed" 200 "$s" "j['message']['role'] == 'assistant' and j['eval_count'] == 4 and j['done'] is True"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K"}' "$BASE/api/generate")
check "empty prompt loads the model" 200 "$s" "j['done_reason'] == 'load' and j['done'] is True"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"llama3","prompt":"x"}' "$BASE/api/generate")
check "unknown model -> 404 {error}" 404 "$s" "j == {'error': \"model 'llama3' not found\"}"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K","prompt":"x","format":"json"}' "$BASE/api/generate")
check "format refused clearly" 400 "$s" "'not supported' in j['error']"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K","prompt":"x","options":{"temperature":"hot"}}' "$BASE/api/generate")
check "bad option -> 400 {error}" 400 "$s" "set(j) == {'error'} and 'temperature' in j['error']"
s=$(req GET /api/tags); check "tags" 200 "$s" "j['models'][0]['name'] == 'stories260K:latest' and j['models'][0]['details']['format'] == 'gguf' and j['models'][0]['size'] == 1185376"
s=$(req GET /api/ps); check "ps" 200 "$s" "j['models'][0]['name'] == 'stories260K:latest' and 'expires_at' in j['models'][0]"
s=$(req GET /api/version); check "version" 200 "$s" "isinstance(j['version'], str)"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"stories260K"}' "$BASE/api/show")
check "show" 200 "$s" "j['details']['family'] == 'llama' and j['model_info']['llama.context_length'] == 512"

# the official JS client
npm_packages || { fail "npm install"; finish; }
npm_dir=$NPM_DIR
cp "$here/ollama_client.mjs" "$npm_dir/ollama_client.mjs"
node "$npm_dir/ollama_client.mjs" "$BASE" ", there was a little girl" && pass "Ollama JS client" || fail "Ollama JS client"
finish
