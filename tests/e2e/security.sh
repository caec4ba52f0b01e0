# Integration: the server's security defaults and limits (issue 9). Loopback by default and a loud
# warning on all interfaces without a key; API keys from a file (comments, several keys, permission
# warning); CORS off unless configured; HTTPS with a self-signed certificate (curl --cacert); no
# request opens a file (strace); every limit answers its documented status with an OpenAI-shaped
# error (body, header, JSON depth, prompt tokens, max_tokens, stop strings, connections); a
# generation past --request-timeout ends with finish_reason "length"; 20 slowloris connections are
# closed at --read-timeout while a normal client is served.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
M=$SH/models/stories260K.gguf
H='Content-Type: application/json'

# ---- defaults: 127.0.0.1, no CORS headers
start_server def -m "$M" || exit 1
grep -q 'listening on http://127.0.0.1:' "$T/def.log" && pass "listens on 127.0.0.1 by default" || fail "default bind: $(head -1 "$T/def.log")"
grep -q 'WARNING' "$T/def.log" && fail "a warning on loopback: $(grep WARNING "$T/def.log")" || pass "no warning on loopback"
s=$(req GET /v1/models "" -H 'Origin: http://evil.example')
[ "$s" = 200 ] && ! grep -qi '^access-control-' "$T/headers" && pass "CORS off by default (no Access-Control-* headers)" ||
  fail "CORS default: $s $(grep -i '^access-control' "$T/headers")"
s=$(req OPTIONS /v1/chat/completions "" -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST')
! grep -qi '^access-control-allow' "$T/headers" && pass "preflight not allowed by default ($s)" || fail "preflight: $(cat "$T/headers")"

# ---- no request opens a file: traversal paths, a model path, template tricks (strace on the server)
stop_servers
if strace -f -qq -e trace=none -o /dev/null true 2>/dev/null; then
  # (LeakSanitizer cannot run under ptrace: leaks are checked by the other servers of this test)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    strace -f -qq -e trace=open,openat,openat2,creat,execve -o "$T/trace" "$SP" serve -m "$M" --port 0 >"$T/st.log" 2>&1 &
  strace_pid=$! # strace blocks fatal signals: the server (its child) is the one to stop
  for _ in $(seq 1 400); do
    PORT=$(grep -Eo 'listening on http://[^ ]*:[0-9]+' "$T/st.log" | grep -Eo '[0-9]+$' | head -1 || true)
    [ -n "$PORT" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && break
    sleep 0.05
  done
  BASE=http://127.0.0.1:$PORT
  sleep 0.3
  mark=$(wc -l <"$T/trace")
  leaked=0
  for p in /../../../../etc/passwd /..%2f..%2f..%2fetc%2fpasswd /%2e%2e/%2e%2e/etc/passwd /etc/passwd '/static/../../etc/passwd' \
           '/v1/models/../../../etc/passwd' '/index.html/../../etc/passwd' '/app.js?file=/etc/passwd'; do
    curl -s --path-as-is "$BASE$p" -o "$T/b" || true
    grep -q 'root:' "$T/b" && leaked=1
  done
  s=$(req POST /v1/completions '{"model":"/etc/passwd","prompt":"x","max_tokens":1}')
  [ "$s" = 404 ] || leaked=1
  s=$(req POST /v1/chat/completions '{"messages":[{"role":"user","content":"{% include \"/etc/passwd\" %}"}],"max_tokens":2,"chat_template_kwargs":{"x":"{% include \"/etc/passwd\" %}"}}')
  grep -q 'root:' "$T/body" && leaked=1
  s=$(req POST /api/show '{"model":"../../../../etc/passwd"}')
  grep -q 'root:' "$T/body" && leaked=1
  s=$(req POST /tokenize '{"content":"/etc/passwd"}')
  sleep 0.3
  opened=$(tail -n +"$((mark + 1))" "$T/trace" | grep -E 'open|creat|execve' | grep -v ENOENT || true)
  [ "$leaked" = 0 ] && pass "traversal paths, model paths and template includes reveal nothing" || fail "a request read a file"
  [ -z "$opened" ] && pass "no file opened while answering requests (strace)" || fail "files opened by requests: $(echo "$opened" | head -5)"
  kill "$(pgrep -P "$strace_pid" | head -1)"
  wait "$strace_pid" && pass "traced server stopped cleanly" || fail "traced server exit status $?"
else
  echo "skip strace check (cannot trace here)"
fi

# ---- all interfaces without a key: a loud warning; with a key: none
"$SP" serve -m "$M" --host 0.0.0.0 --port 0 >"$T/any.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -qs 'listening on' "$T/any.log" && break; sleep 0.05; done
sleep 0.2; kill "$pid"; wait "$pid" || true
grep -qF 'WARNING: listening on ALL network interfaces (0.0.0.0) WITHOUT an API key.' "$T/any.log" &&
  grep -qF 'Anyone who can reach this machine can use the model.' "$T/any.log" &&
  pass "loud warning on 0.0.0.0 without a key" || fail "no loud warning: $(cat "$T/any.log")"
"$SP" serve -m "$M" --host 0.0.0.0 --port 0 --api-key k >"$T/any2.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -qs 'listening on' "$T/any2.log" && break; sleep 0.05; done
sleep 0.2; kill "$pid"; wait "$pid" || true
! grep -q 'WITHOUT an API key' "$T/any2.log" && pass "no warning with a key" || fail "warned with a key"

# ---- API keys from a file: comments, blank lines, spaces, several keys; permissions
printf '# sparrow keys\n\n  key-one-aaaa  \n#not-a-key\nkey-two-bbbb\r\n' >"$T/keys"
chmod 600 "$T/keys"
start_server keys -m "$M" --api-key-file "$T/keys" || exit 1
! grep -q 'can be read by other users' "$T/keys.log" && pass "no permission warning for a 600 key file" || fail "warned for 600"
s=$(req GET /v1/models); check "key file: no key -> 401" 401 "$s" "j['error']['code'] == 'invalid_api_key' and j['error']['type'] == 'invalid_request_error'"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-one-aaaa'); check "key file: first key" 200 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-two-bbbb'); check "key file: second key" 200 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer #not-a-key'); check "key file: a comment is no key" 401 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-one-aaab'); check "key file: same length, last byte differs" 401 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-one-aaaa-and-more'); check "key file: a longer key" 401 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-one'); check "key file: a prefix" 401 "$s"
s=$(req GET /health); check "key file: /health open" 200 "$s"
stop_servers
chmod 644 "$T/keys"
start_server keys644 -m "$M" --api-key-file "$T/keys" --api-key extra-key-cccc || exit 1
grep -q "WARNING: the API key file $T/keys can be read by other users (chmod 600" "$T/keys644.log" &&
  pass "warning for a world-readable key file" || fail "no permission warning: $(cat "$T/keys644.log" | head -3)"
s=$(req GET /v1/models "" -H 'Authorization: Bearer extra-key-cccc'); check "--api-key with --api-key-file" 200 "$s"
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-two-bbbb'); check "file keys with --api-key" 200 "$s"
stop_servers
printf '# nothing\n\n' >"$T/empty"
"$SP" serve -m "$M" --port 0 --api-key-file "$T/empty" >/dev/null 2>"$T/err" && fail "empty key file accepted" ||
  { grep -q "holds no key" "$T/err" && pass "empty key file refused" || fail "empty key file: $(cat "$T/err")"; }
"$SP" serve -m "$M" --port 0 --api-key-file "$T/nope" >/dev/null 2>"$T/err" && fail "missing key file accepted" ||
  { grep -q "cannot read the API key file" "$T/err" && pass "missing key file refused" || fail "missing key file: $(cat "$T/err")"; }
echo '{"api-key-file": "'"$T/keys"'"}' >"$T/conf.json"
chmod 600 "$T/keys"
start_server kconf -m "$M" --config "$T/conf.json" || exit 1
s=$(req GET /v1/models "" -H 'Authorization: Bearer key-two-bbbb'); check "api-key-file from --config" 200 "$s"
s=$(req GET /v1/models); check "api-key-file from --config: no key" 401 "$s"
stop_servers

# ---- HTTPS: a self-signed certificate made here, curl --cacert
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 2 -subj /CN=localhost \
     -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >/dev/null 2>&1; then
  chmod 600 "$T/key.pem"
  "$SP" serve -m "$M" --port 0 --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" >"$T/tls.log" 2>&1 &
  SERVER_PID=$!; SERVER_PIDS=$SERVER_PID
  PORT=
  for _ in $(seq 1 200); do
    PORT=$(grep -Eo 'listening on https://[^ ]*:[0-9]+' "$T/tls.log" | grep -Eo '[0-9]+$' | head -1 || true)
    [ -n "$PORT" ] && break; sleep 0.05
  done
  [ -n "$PORT" ] && pass "log says https://" || fail "TLS server did not start: $(cat "$T/tls.log")"
  ok=
  for _ in $(seq 1 200); do
    [ "$(curl -s --cacert "$T/cert.pem" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/health")" = 200 ] && ok=1 && break
    sleep 0.05
  done
  [ -n "$ok" ] && pass "HTTPS /health with curl --cacert" || fail "HTTPS /health"
  out=$(curl -s --cacert "$T/cert.pem" -H "$H" -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0,"stream":true}' \
    "https://localhost:$PORT/v1/completions")
  case $out in *'"finish_reason":"length"'*'data: [DONE]'*) pass "HTTPS stream complete";; *) fail "HTTPS stream: ${out:0:300}";; esac
  curl -s --cacert "$T/cert.pem" -o /dev/null "https://127.0.0.1:$PORT/health" -w '%{ssl_verify_result}' | grep -qx 0 &&
    pass "certificate verified" || fail "certificate not verified"
  curl -s -o /dev/null "https://127.0.0.1:$PORT/health" && fail "an unknown CA was accepted" || pass "curl refuses the self-signed certificate without --cacert"
  s=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$PORT/health" || true)
  [ "$s" != 200 ] && pass "plain HTTP not served on the HTTPS port ($s)" || fail "plain HTTP served on the HTTPS port"
  stop_servers
  "$SP" serve -m "$M" --port 0 --tls-cert "$T/cert.pem" >/dev/null 2>"$T/err" && fail "a certificate without a key accepted" ||
    { grep -q "needs both --tls-cert and --tls-key" "$T/err" && pass "certificate without key refused" || fail "cert only: $(cat "$T/err")"; }
  "$SP" serve -m "$M" --port 0 --tls-cert "$T/cert.pem" --tls-key "$T/cert.pem" >/dev/null 2>"$T/err" && fail "a bad key accepted" ||
    { grep -q "cannot start HTTPS" "$T/err" && pass "bad key refused: $(head -c 120 "$T/err")" || fail "bad key: $(cat "$T/err")"; }
  "$SP" serve -m "$M" --port 0 --tls-cert "$T/none.pem" --tls-key "$T/key.pem" >/dev/null 2>"$T/err" && fail "missing cert accepted" ||
    { grep -q "cannot read the TLS certificate" "$T/err" && pass "missing certificate refused" || fail "missing cert: $(cat "$T/err")"; }
else
  fail "openssl could not make a test certificate"
fi

# ---- limits: each answers its status with an OpenAI-shaped error
start_server lim -m "$M" --ctx 256 --max-body 4K --max-header 2K --max-json-depth 8 --max-prompt-tokens 20 --max-tokens 50 \
  --max-stop 2 --max-stop-len 8 --max-n 2 || exit 1
shape="set(j['error']) == {'message', 'type', 'param', 'code'}"
big=$("$PY" -c 'print("{\"prompt\":\"" + "a" * 5000 + "\"}")')
s=$(req POST /v1/completions "$big"); check "body over --max-body -> 413" 413 "$s" "$shape and j['error']['code'] == 'request_too_large'"
s=$(req GET /health "" -H "X-Big: $(head -c 3000 /dev/zero | tr '\0' a)")
check "headers over --max-header -> 431" 431 "$s" "$shape and j['error']['code'] == 'headers_too_large'"
deep=$("$PY" -c 'print("{\"prompt\":\"x\",\"a\":" + "[" * 9 + "]" * 9 + "}")')
s=$(req POST /v1/completions "$deep"); check "JSON deeper than --max-json-depth -> 400" 400 "$s" "$shape and j['error']['code'] == 'json_too_deep'"
s=$(req POST /tokenize "$deep"); check "the depth limit on /tokenize too" 400 "$s" "j['error']['code'] == 'json_too_deep'"
s=$(req POST /api/chat "$deep"); check "the depth limit on /api/chat (Ollama's shape)" 400 "$s" "'nests deeper' in j['error']"
ok8=$("$PY" -c 'print("{\"content\":\"Once\",\"a\":" + "[" * 7 + "]" * 7 + "}")')
s=$(req POST /tokenize "$ok8"); check "depth 8 (the limit) is accepted" 200 "$s" "len(j['tokens']) > 0"
long=$("$PY" -c 'print("{\"prompt\":\"" + "Once upon a time " * 10 + "\",\"max_tokens\":2}")')
s=$(req POST /v1/completions "$long")
check "prompt over --max-prompt-tokens -> 400" 400 "$s" "$shape and j['error']['code'] == 'context_length_exceeded' and '--max-prompt-tokens' in j['error']['message'] and j['error']['param'] == 'prompt'"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":51}')
check "max_tokens over --max-tokens -> 400" 400 "$s" "$shape and j['error']['param'] == 'max_tokens' and j['error']['code'] == 'integer_above_max_value'"
s=$(req POST /v1/completions '{"prompt":"Once upon a time","temperature":0,"ignore_eos":true}')
check "no max_tokens: capped at --max-tokens" 200 "$s" "j['usage']['completion_tokens'] == 50 and j['choices'][0]['finish_reason'] == 'length'"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":2,"stop":["a","b","c"]}')
check "more stop strings than --max-stop -> 400" 400 "$s" "$shape and j['error']['param'] == 'stop'"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":2,"stop":"123456789"}')
check "stop string over --max-stop-len -> 400" 400 "$s" "$shape and j['error']['param'] == 'stop'"
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":2,"n":3}')
check "n over --max-n -> 400" 400 "$s" "$shape and j['error']['code'] == 'integer_above_max_value'"
stop_servers

# ---- connections: past --max-connections, 503 too_many_connections (but /health)
start_server conn -m "$M" --max-connections 2 || exit 1
"$PY" - "$PORT" <<'PY' && pass "past --max-connections: 503 too_many_connections with Retry-After, /health still 200" || fail "connection limit"
import json, socket, sys, time, urllib.request, urllib.error
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
time.sleep(0.3)
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    sys.exit("served past the limit")
except urllib.error.HTTPError as e:
    j = json.loads(e.read())
    assert e.code == 503 and j["error"]["code"] == "too_many_connections", (e.code, j)
    assert e.headers["Retry-After"] == "1" and e.headers["Connection"] == "close", dict(e.headers)
assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200
for s in held: s.close()
time.sleep(0.3)
assert urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).status == 200
PY
curl -s "$BASE/metrics" | grep -q '^sparrow_http_connections_refused_total [1-9]' && pass "refusals counted in /metrics" || fail "refusals not counted"
stop_servers

# ---- slowloris: 20 connections trickling headers byte by byte are closed at --read-timeout 2;
# a normal client is served meanwhile (within the connection limit: they fit)
start_server slow -m "$M" --read-timeout 2 || exit 1
"$PY" - "$PORT" <<'PY' && pass "20 slowloris connections closed at the read timeout, normal client served meanwhile" || fail "slowloris"
import socket, sys, time, urllib.request
port = int(sys.argv[1])
head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 100
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
t0 = time.time(); closed = {}; served = None; i = 0
while len(closed) < len(socks) and time.time() - t0 < 15:
    for k, s in enumerate(socks):
        if k in closed: continue
        try:
            s.send(head[i:i + 1] if i < len(head) else b"a")
            s.setblocking(False)
            if s.recv(1) == b"": closed[k] = time.time() - t0
        except BlockingIOError: pass
        except OSError: closed[k] = time.time() - t0
    if served is None and time.time() - t0 > 0.5:
        t = time.time()
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).status == 200
        served = time.time() - t
    i += 1
    time.sleep(0.1)
ts = sorted(closed.values())
print(f"   closed {len(ts)}/20 after {ts[0]:.2f}..{ts[-1]:.2f} s; normal request served in {served * 1000:.0f} ms")
assert len(ts) == 20 and 1.5 < ts[0] and ts[-1] < 8, ts
assert served is not None and served < 2
PY
curl -s "$BASE/metrics" | grep -q '^sparrow_http_read_timeouts_total \(2[0-9]\|[3-9][0-9]\)' && pass "read timeouts counted in /metrics" ||
  fail "read timeouts: $(curl -s "$BASE/metrics" | grep read_timeouts)"
stop_servers

# ---- --request-timeout: a long generation ends with finish_reason "length" (whole and streamed)
"$SP" synth --preset tiny --type q8_0 -o "$T/tiny.gguf" 2>/dev/null
start_server rt -m "$T/tiny.gguf" --ctx 16384 --request-timeout 1 || exit 1
t0=$(date +%s.%N)
s=$(req POST /v1/completions '{"prompt":"Once","max_tokens":16000,"ignore_eos":true}')
dt=$("$PY" -c "print(round($(date +%s.%N) - $t0, 2))")
check "whole answer cut at --request-timeout 1 (${dt}s)" 200 "$s" \
  "j['choices'][0]['finish_reason'] == 'length' and 0 < j['usage']['completion_tokens'] < 16000 and $dt < 6"
curl -s -N -H "$H" -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":16000,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' \
  "$BASE/v1/chat/completions" >"$T/rt_stream"
"$PY" - "$T/rt_stream" <<'PY' && pass "stream cut at --request-timeout: finish_reason length, usage, [DONE]" || fail "request timeout stream: $(tail -c 400 "$T/rt_stream")"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n")
ev = [json.loads(e[6:]) for e in raw.split("\n\n")[:-2]]
assert ev[-2]["choices"][0]["finish_reason"] == "length", ev[-2]
assert ev[-1]["choices"] == [] and 0 < ev[-1]["usage"]["completion_tokens"] < 16000, ev[-1]
PY
# the counter moves when the server has finished the request, which may be just after curl saw [DONE]
for _ in $(seq 1 40); do curl -s "$BASE/metrics" | grep -q '^sparrow_requests_timed_out_total 2$' && break; sleep 0.05; done
curl -s "$BASE/metrics" | grep -q '^sparrow_requests_timed_out_total 2$' && pass "timeouts counted in /metrics" ||
  fail "timeouts: $(curl -s "$BASE/metrics" | grep "^sparrow_requests_timed_out")"
grep -q 'length (request timeout)' "$T/rt.log" && pass "log line says request timeout" || fail "log: $(tail -3 "$T/rt.log")"
finish
