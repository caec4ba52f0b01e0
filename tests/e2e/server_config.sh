# Integration: `sparrow serve --config FILE` reads the same settings as the flags (JSON, names without
# dashes), flags win over the file, and a bad file or flag is refused with a clear message.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
M=$SH/models/stories260K.gguf
cat >"$T/conf.json" <<JSON
{"model": "$M", "alias": "from-file", "api-key": ["ka", "kb"], "ctx": 256, "max-queue": 4, "quiet": true,
 "max-n": 3, "parallel": 2, "step-tokens": 64, "kv-mem": "64M", "kv-type": "q8",
 "max-tokens": 100, "max-json-depth": 16, "max-header": "4K", "request-timeout": 30, "read-timeout": 5,
 "shutdown-grace": 2.5, "max-connections": 32, "max-stop": 4, "max-stop-len": 32, "max-prompt-tokens": 400}
JSON
start_server conf --config "$T/conf.json" --alias from-flag || exit 1
s=$(req GET /v1/models "" -H 'Authorization: Bearer kb'); check "flag wins over file (alias)" 200 "$s" "j['data'][0]['id'] == 'from-flag'"
s=$(req GET /v1/models); check "file's API keys apply" 401 "$s"
long=$("$PY" -c 'print("{\"prompt\":\"" + "Once upon a time " * 80 + "\"}")')
s=$(req POST /v1/completions "$long" -H 'Authorization: Bearer ka')
check "file's ctx applies" 400 "$s" "'maximum context length is 256 tokens' in j['error']['message']"
grep -q 'POST /v1/completions' "$T/conf.log" && fail "quiet from the file: request logged" || pass "quiet from the file"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":4,"n":4}' -H 'Authorization: Bearer ka')
check "file's max-n applies" 400 "$s" "j['error']['param'] == 'n' and 'Expected a value <= 3, but got 4' in j['error']['message']"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":4,"n":3}' -H 'Authorization: Bearer ka')
check "n = max-n served (with the batching keys from the file)" 200 "$s" "len(j['choices']) == 3 and j['usage']['completion_tokens'] == 12"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":101}' -H 'Authorization: Bearer ka')
check "file's max-tokens applies" 400 "$s" "j['error']['code'] == 'integer_above_max_value'"
deep=$("$PY" -c 'print("{\"prompt\":\"x\",\"a\":" + "[" * 17 + "]" * 17 + "}")')
s=$(req POST /v1/completions "$deep" -H 'Authorization: Bearer ka'); check "file's max-json-depth applies" 400 "$s" "j['error']['code'] == 'json_too_deep'"
s=$(req GET /health "" -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' a)"); check "file's max-header applies" 431 "$s"
stop_servers
echo '{"port": "eighty"}' >"$T/bad.json"
"$SP" serve --config "$T/bad.json" >/dev/null 2>"$T/err" && fail "bad config accepted" ||
  { grep -q "invalid value 'eighty' for port" "$T/err" && pass "bad config value: $(cat "$T/err")" || fail "bad config: $(cat "$T/err")"; }
echo '{"colour": "blue"}' >"$T/bad2.json"
"$SP" serve --config "$T/bad2.json" >/dev/null 2>"$T/err" && fail "unknown key accepted" ||
  { grep -q "unknown config key 'colour'" "$T/err" && pass "unknown config key refused" || fail "unknown key: $(cat "$T/err")"; }
echo '{"port": 1' >"$T/bad3.json"
"$SP" serve --config "$T/bad3.json" >/dev/null 2>"$T/err" && fail "broken JSON accepted" ||
  { grep -q "not a JSON object" "$T/err" && pass "broken config JSON refused" || fail "broken JSON: $(cat "$T/err")"; }
for bad in "--kv-type f16|invalid value 'f16' for kv-type (f32 or q8)" "--kv-mem 12X|invalid value '12X' for kv-mem" \
           "--kv-mem 100|invalid value '100' for kv-mem" "--parallel 0|invalid value '0' for parallel" \
           "--max-n 0|invalid value '0' for max-n" "--max-n 129|invalid value '129' for max-n" \
           "--step-tokens -1|invalid value '-1' for step-tokens" \
           "--request-timeout -1|invalid value '-1' for request-timeout" "--read-timeout 0|invalid value '0' for read-timeout" \
           "--shutdown-grace x|invalid value 'x' for shutdown-grace" "--max-json-depth 1|invalid value '1' for max-json-depth" \
           "--max-header 10|invalid value '10' for max-header" "--max-tokens -5|invalid value '-5' for max-tokens"; do
  "$SP" serve ${bad%%|*} >/dev/null 2>"$T/err" && fail "accepted: ${bad%%|*}" ||
    { grep -qF "${bad#*|}" "$T/err" && pass "refused: ${bad%%|*}" || fail "${bad%%|*}: $(cat "$T/err")"; }
done
"$SP" serve --api-key 'a b' >/dev/null 2>"$T/err" && fail "a key with a space accepted" ||
  { grep -q "may not contain spaces" "$T/err" && pass "refused: a key with a space" || fail "key with space: $(cat "$T/err")"; }
"$SP" serve --help >"$T/help"
missing=
for f in '--max-n N' '--parallel N' '(default 4)' '--step-tokens N' '--kv-mem BYTES' '--kv-type f32|q8' 'before 429' \
         '--api-key-file FILE' '--tls-cert FILE' '--tls-key FILE' '--max-connections N' '--max-header BYTES' \
         '--max-json-depth N' '--max-prompt-tokens N' '--max-tokens N' '--max-stop N' '--max-stop-len BYTES' \
         '--request-timeout S' '--read-timeout S' '--shutdown-grace S'; do
  grep -qF -- "$f" "$T/help" || missing="$missing '$f'"
done
[ -z "$missing" ] && pass "--help documents the batching, security and limit flags" || fail "--help lacks$missing"
"$SP" serve --port 99999 >/dev/null 2>"$T/err" && fail "bad port accepted" ||
  { grep -q "invalid value '99999' for port" "$T/err" && pass "bad flag refused" || fail "bad flag: $(cat "$T/err")"; }
"$SP" serve -m "$M" --port "$PORT" --host 203.0.113.7 >/dev/null 2>"$T/err" && fail "unbindable host accepted" ||
  { [ -s "$T/err" ] && pass "unbindable address: $(head -1 "$T/err")" || fail "no message for an unbindable address"; }
finish
