# Integration: graceful shutdown (issue 9). SIGTERM closes the listening socket at once; running
# streams go on; a kept-alive connection's next request gets 503 server_shutting_down; when
# --shutdown-grace runs out, every remaining generation ends with a final chunk (finish_reason
# "length", usage, data: [DONE]) — OpenAI streams, whole answers and Ollama streams alike — and the
# server exits 0. A second signal kills it at once (status 130 for SIGINT). Idle: SIGTERM exits at once.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
H='Content-Type: application/json'
"$SP" synth --preset tiny --type q8_0 -o "$T/tiny.gguf" 2>/dev/null
# the tiny model makes ~1000 tokens/s here: 16000 tokens outlast a 1 s grace on any machine
LONG='"max_tokens":16000,"ignore_eos":true'

# ---- idle: exits 0 at once
start_server idle -m "$T/tiny.gguf" || exit 1
t0=$(date +%s.%N); kill -TERM "$SERVER_PID"; rc=0; wait "$SERVER_PID" || rc=$?; SERVER_PIDS=
dt=$("$PY" -c "print(round($(date +%s.%N) - $t0, 2))")
[ "$rc" = 0 ] && "$PY" -c "import sys; sys.exit(0 if $dt < 2 else 1)" && pass "idle server: SIGTERM exits 0 in ${dt}s" || fail "idle: rc $rc after ${dt}s"

# ---- a stream running at SIGTERM finishes within a long grace; the listener is closed at once; a
# kept-alive connection's next request gets 503; the server exits 0 as soon as the stream is done
start_server busy -m "$T/tiny.gguf" --ctx 4096 --shutdown-grace 60 || exit 1
"$PY" - "$PORT" "$SERVER_PID" >"$T/ka" 2>&1 <<'PY' &
import http.client, json, os, signal, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
c.request("GET", "/health"); r = c.getresponse(); r.read(); assert r.status == 200
st = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
st.request("POST", "/v1/completions", json.dumps({"prompt": "Once", "max_tokens": 1000, "ignore_eos": True, "stream": True,
                                                  "stream_options": {"include_usage": True}}),
           {"Content-Type": "application/json"})
sr = st.getresponse()
sr.readline()                 # the first chunk: the generation is running
os.kill(pid, signal.SIGTERM)
time.sleep(0.3)
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    print("CONNECTED after SIGTERM")
except OSError:
    print("refused after SIGTERM")
c.request("GET", "/v1/models"); r = c.getresponse(); body = json.loads(r.read())
print("keepalive", r.status, body["error"]["code"], r.getheader("Connection"))
data = sr.read().decode()
ev = [json.loads(e[6:]) for e in data.split("\n\n") if e.startswith("data: {")]
done = data.endswith("data: [DONE]\n\n") and ev[-1]["usage"]["completion_tokens"] == 1000
print("stream", "complete" if done else "BAD " + data[-300:])
PY
ka=$!
rc=0; wait "$SERVER_PID" || rc=$?; SERVER_PIDS=
t_exit=$(date +%s.%N)
wait $ka || true
[ "$rc" = 0 ] && pass "exit status 0 after the drain" || fail "busy server: exit status $rc"
grep -q '^refused after SIGTERM' "$T/ka" && pass "no new connections after SIGTERM" || fail "listener: $(cat "$T/ka")"
grep -q '^keepalive 503 server_shutting_down close' "$T/ka" && pass "kept-alive connection: 503 server_shutting_down, Connection: close" || fail "keep-alive: $(cat "$T/ka")"
grep -q '^stream complete' "$T/ka" && pass "the running stream finished in full (1000 tokens, [DONE]) during the grace" || fail "stream: $(cat "$T/ka")"
! grep -q 'grace period over' "$T/busy.log" && grep -q 'sparrow serve: stopped' "$T/busy.log" &&
  pass "exited when the stream was done, before the 60 s grace" || fail "log: $(tail -5 "$T/busy.log")"

# ---- past the grace, every remaining generation is cut with a proper end, then exit 0
start_server cut -m "$T/tiny.gguf" --ctx 16384 --parallel 8 --shutdown-grace 1 || exit 1
curl -s -N -H "$H" -d "{\"prompt\":\"Once\",$LONG,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "$BASE/v1/completions" >"$T/long" &
c1=$!
curl -s -N -H "$H" -d "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],$LONG,\"stream\":true,\"n\":2}" "$BASE/v1/chat/completions" >"$T/chat" &
c2=$!
curl -s -H "$H" -d "{\"prompt\":\"Once\",$LONG}" "$BASE/v1/completions" >"$T/whole" &
c3=$!
curl -s -N -d "{\"model\":\"tiny\",\"prompt\":\"hi\",\"options\":{\"num_predict\":16000}}" "$BASE/api/generate" >"$T/ollama" &
c4=$!
for _ in $(seq 1 100); do # all four running
  curl -s "$BASE/metrics" | grep -q '^sparrow_requests_running 5$' && break; sleep 0.05
done
t_sig=$(date +%s.%N)
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?; SERVER_PIDS=
dt=$("$PY" -c "print(round($(date +%s.%N) - $t_sig, 2))")
wait $c1 $c2 $c3 $c4 || true
[ "$rc" = 0 ] && pass "exit status 0 after cutting at the grace (${dt}s after the signal, grace 1 s)" || fail "cut server: exit status $rc"
"$PY" -c "import sys; sys.exit(0 if $dt < 8 else 1)" && pass "exit within the grace + a few seconds" || fail "took ${dt}s"
"$PY" - "$T/long" <<'PY' && pass "stream cut at the grace: finish_reason length, usage, [DONE]" || fail "long stream: $(tail -c 400 "$T/long")"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n")
ev = [json.loads(e[6:]) for e in raw.split("\n\n")[:-2]]
assert ev[-2]["choices"][0]["finish_reason"] == "length", ev[-2]
assert ev[-1]["choices"] == [] and 0 < ev[-1]["usage"]["completion_tokens"] < 16000, ev[-1]
PY
"$PY" - "$T/chat" <<'PY' && pass "n=2 chat stream: each choice ends with finish_reason length, then [DONE]" || fail "chat stream: $(tail -c 400 "$T/chat")"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n")
ev = [json.loads(e[6:]) for e in raw.split("\n\n")[:-2]]
fin = {c["index"]: c["finish_reason"] for e in ev for c in e["choices"] if c["finish_reason"]}
assert fin == {0: "length", 1: "length"}, fin
PY
"$PY" - "$T/whole" <<'PY' && pass "whole answer cut at the grace: 200, finish_reason length" || fail "whole: $(head -c 300 "$T/whole")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["choices"][0]["finish_reason"] == "length" and 0 < j["usage"]["completion_tokens"] < 16000, j["usage"]
PY
"$PY" - "$T/ollama" <<'PY' && pass "Ollama stream cut at the grace: done, done_reason length" || fail "ollama: $(tail -c 300 "$T/ollama")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "length", lines[-1]
PY
grep -q 'SIGTERM: stopping: no new connections' "$T/cut.log" && grep -q 'shutdown grace period over: ending 4 request(s)' "$T/cut.log" &&
  grep -q 'sparrow serve: stopped' "$T/cut.log" && pass "log: stopping, grace over (4 requests cut), stopped" || fail "log: $(tail -8 "$T/cut.log")"

# ---- a second signal exits at once
start_server twice -m "$T/tiny.gguf" --ctx 16384 --shutdown-grace 30 || exit 1
curl -s -N -H "$H" -d "{\"prompt\":\"Once\",$LONG,\"stream\":true}" "$BASE/v1/completions" >"$T/cut" &
c1=$!
sleep 0.5
kill -TERM "$SERVER_PID"; sleep 0.3
t0=$(date +%s.%N); kill -INT "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?; SERVER_PIDS=
dt=$("$PY" -c "print(round($(date +%s.%N) - $t0, 2))")
wait $c1 || true
[ "$rc" = 130 ] && "$PY" -c "import sys; sys.exit(0 if $dt < 2 else 1)" && pass "second signal (SIGINT): exit status 130 in ${dt}s" || fail "second signal: rc $rc after ${dt}s"
grep -q 'SIGINT again: exiting now' "$T/twice.log" && pass "log: exiting now" || fail "log: $(tail -3 "$T/twice.log")"
finish
