# Integration: `serve --models-dir DIR` serves every GGUF in a folder. Two synth models (different
# seeds) and one malformed file: the listings show all three; requests alternating between the two
# answer exactly what a single-model server of each answers; with --max-models 1 each switch unloads
# one and (re)loads the other, answers unchanged; the bad file gives a clean 500 and nothing else
# suffers; unknown models 404; Ollama's keep_alive 0 unloads right after the request; a --mem-limit
# that holds one model makes the same swaps.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
D=$T/models
mkdir -p "$D"
"$SP" synth --preset tiny --type q4_0 --seed 1 -o "$D/alpha.gguf" >/dev/null 2>&1 || { fail "synth alpha"; finish; }
"$SP" synth --preset tiny --type q4_0 --seed 2 -o "$D/beta.gguf" >/dev/null 2>&1 || { fail "synth beta"; finish; }
cp "$SH/models/malformed/truncated-tensor-data.gguf" "$D/broken.gguf"
echo "not a model" >"$D/notes.txt"

body() { # MODEL: a greedy completion request
  printf '{"model":"%s","prompt":"Once upon a time","max_tokens":12,"temperature":0}' "$1"
}
text_of() { req POST /v1/completions "$(body "$1")" >/dev/null; jget "j['choices'][0]['text']"; }

# references: one single-model server per model
start_server ref_a -m "$D/alpha.gguf" -q || exit 1
ref_a=$(text_of alpha)
stop_servers
start_server ref_b -m "$D/beta.gguf" -q || exit 1
ref_b=$(text_of beta)
stop_servers
[ -n "$ref_a" ] && [ "$ref_a" != "$ref_b" ] && pass "the two models answer differently" ||
  fail "reference texts: a='$ref_a' b='$ref_b'"

start_server multi --models-dir "$D" || exit 1
s=$(req GET /health); check "health 200 at once" 200 "$s" "j['status'] == 'ok'"
s=$(req GET /v1/models); check "/v1/models lists the three" 200 "$s" "[m['id'] for m in j['data']] == ['alpha', 'beta', 'broken']"
size_a=$(stat -c %s "$D/alpha.gguf")
s=$(req GET /api/tags); check "/api/tags lists them with sizes" 200 "$s" "[m['name'] for m in j['models']] == ['alpha:latest', 'beta:latest', 'broken:latest'] and j['models'][0]['size'] == $size_a and j['models'][0]['details']['quantization_level'] == 'Q4_0'"
s=$(req GET /api/ps); check "/api/ps: nothing loaded yet" 200 "$s" "j['models'] == []"
ok=1
for m in alpha beta alpha beta; do
  t=$(text_of $m)
  want=$ref_a; [ $m = beta ] && want=$ref_b
  [ "$t" = "$want" ] || { ok=0; fail "alternating: $m answered '$t', want '$want'"; }
done
[ $ok = 1 ] && pass "alternating alpha,beta,alpha,beta: each answers as its single-model server"
s=$(req GET /api/ps); check "/api/ps lists both loaded" 200 "$s" "sorted(m['name'] for m in j['models']) == ['alpha:latest', 'beta:latest'] and all('expires_at' in m for m in j['models'])"
s=$(req POST /v1/chat/completions '{"model":"beta:latest","messages":[{"role":"user","content":"hi"}],"max_tokens":3}')
check "Ollama-style name 'beta:latest' picks beta" 200 "$s" "j['model'] == 'beta'"
s=$(req POST /v1/completions "$(body broken)"); check "bad model file -> 500, OpenAI shape" 500 "$s" "j['error']['code'] == 'model_load_failed' and 'broken' in j['error']['message']"
s=$(req POST /v1/completions "$(body broken)"); check "bad model file again -> the same 500" 500 "$s" "j['error']['code'] == 'model_load_failed'"
[ "$(text_of alpha)" = "$ref_a" ] && pass "after the bad model, alpha still answers" || fail "alpha after the bad model"
s=$(req POST /v1/completions "$(body gamma)"); check "unknown model -> 404 model_not_found" 404 "$s" "j['error']['code'] == 'model_not_found'"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"gamma","prompt":"x"}' "$BASE/api/generate")
check "Ollama: unknown model -> 404 {error}" 404 "$s" "j == {'error': \"model 'gamma' not found\"}"
s=$(req POST /v1/completions '{"prompt":"x","max_tokens":2}'); check "no model with several -> 400" 400 "$s" "j['error']['param'] == 'model'"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"beta","prompt":"Once upon a time","raw":true,"stream":false,"keep_alive":0,"options":{"temperature":0,"num_predict":12}}' "$BASE/api/generate")
check "Ollama generate with keep_alive 0" 200 "$s" "j['response'] == $(printf '%s' "$ref_b" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"
gone=0
for _ in $(seq 1 40); do
  req GET /api/ps >/dev/null
  [ "$(jget "[m['name'] for m in j['models']]")" = "['alpha:latest']" ] && { gone=1; break; }
  sleep 0.1
done
[ $gone = 1 ] && pass "keep_alive 0: beta unloaded right after, alpha stays" || fail "keep_alive 0: /api/ps $(cat "$T/body")"
s=$(curl -s -o "$T/body" -w '%{http_code}' -d '{"model":"beta","keep_alive":"10m"}' "$BASE/api/generate")
check "Ollama empty prompt loads the model (load_duration)" 200 "$s" "j['done_reason'] == 'load' and j['load_duration'] > 0"
s=$(req GET /api/ps); check "/api/ps: beta loaded again" 200 "$s" "'beta:latest' in [m['name'] for m in j['models']]"
s=$(req POST /tokenize '{"model":"alpha","content":"Once"}'); check "tokenize picks the model" 200 "$s" "len(j['tokens']) >= 1"
stop_servers

# a budget of one model: each switch unloads one, loads the other
start_server one --models-dir "$D" --max-models 1 || exit 1
ok=1
for m in alpha beta alpha beta; do
  t=$(text_of $m)
  want=$ref_a; [ $m = beta ] && want=$ref_b
  [ "$t" = "$want" ] || { ok=0; fail "--max-models 1: $m answered '$t', want '$want'"; }
done
[ $ok = 1 ] && pass "--max-models 1, alternating: answers unchanged"
s=$(req GET /api/ps); check "--max-models 1: one model loaded" 200 "$s" "[m['name'] for m in j['models']] == ['beta:latest']"
curl -s "$BASE/metrics" >"$T/metrics"
loads=$(awk '$1 == "sparrow_model_loads_total" {print $2}' "$T/metrics")
unloads=$(awk '$1 == "sparrow_model_unloads_total" {print $2}' "$T/metrics")
loaded=$(awk '$1 == "sparrow_models_loaded" {print $2}' "$T/metrics")
[ "$loads" = 4 ] && [ "$unloads" = 3 ] && [ "$loaded" = 1 ] && pass "metrics: 4 loads, 3 unloads, 1 loaded" ||
  fail "metrics: loads=$loads unloads=$unloads loaded=$loaded"
n_unl=$(grep -c "unloaded model '.*' (least recently used" "$T/one.log" || true)
[ "$n_unl" = 3 ] && pass "log: 3 least-recently-used unloads" || fail "log: $n_unl unloads: $(grep unloaded "$T/one.log")"
# both at once: one waits for the other to finish, then its model replaces the first
curl -s -o "$T/ca" -H 'Content-Type: application/json' --data-binary "$(body alpha)" "$BASE/v1/completions" &
p1=$!
curl -s -o "$T/cb" -H 'Content-Type: application/json' --data-binary "$(body beta)" "$BASE/v1/completions" &
p2=$!
wait $p1 $p2
ta=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/ca" 2>&1)
tb=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$T/cb" 2>&1)
[ "$ta" = "$ref_a" ] && [ "$tb" = "$ref_b" ] && pass "--max-models 1, concurrent alpha + beta: both correct" ||
  fail "concurrent: a='$ta' b='$tb'"
stop_servers

# a --mem-limit that holds one of them (about 82 MiB each): the same, with --max-models at its default 2
start_server mem --models-dir "$D" --mem-limit 130M || exit 1
ok=1
for m in alpha beta alpha; do
  t=$(text_of $m)
  want=$ref_a; [ $m = beta ] && want=$ref_b
  [ "$t" = "$want" ] || { ok=0; fail "--mem-limit: $m answered '$t', want '$want'"; }
done
[ $ok = 1 ] && pass "--mem-limit for one model, alternating: answers unchanged"
curl -s "$BASE/metrics" >"$T/metrics"
[ "$(awk '$1 == "sparrow_model_unloads_total" {print $2}' "$T/metrics")" = 2 ] && pass "--mem-limit: 2 unloads" ||
  fail "--mem-limit: $(grep -E 'model_(un)?loads' "$T/metrics")"
finish
