# tests/e2e/server_common.sh — start `sparrow serve` on 127.0.0.1 with a free port and stop it on
# exit. Sourced after common.sh. start_server LOGNAME ARGS... sets $PORT and $BASE.
start_server() {
  local log=$T/$1.log
  shift
  "$SP" serve --port 0 "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS="${SERVER_PIDS:-} $SERVER_PID"
  PORT=
  for _ in $(seq 1 200); do
    PORT=$(grep -Eo 'listening on http://[^ ]*:[0-9]+' "$log" | grep -Eo '[0-9]+$' | head -1 || true)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died:"; cat "$log"; return 1; }
    sleep 0.05
  done
  [ -n "$PORT" ] || { echo "server did not start:"; cat "$log"; return 1; }
  BASE=http://127.0.0.1:$PORT
  for _ in $(seq 1 400); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health")" = 200 ] && return 0
    sleep 0.05
  done
  echo "server never became ready:"; cat "$log"; return 1
}
stop_servers() { # SIGTERM: a clean exit is status 0 (under ASan a leak makes it non-zero)
  local p rc
  for p in ${SERVER_PIDS:-}; do kill "$p" 2>/dev/null; rc=0; wait "$p" 2>/dev/null || rc=$?; [ "$rc" = 0 ] || fail "server $p exited with status $rc"; done
  SERVER_PIDS=
}
trap 'stop_servers; rm -rf "$T"' EXIT
# req METHOD PATH [BODY] [curl args...]: writes $T/body, $T/headers; echoes the status
req() {
  local method=$1 path=$2 body=${3:-}
  shift 3 2>/dev/null || shift $#
  if [ -n "$body" ]; then
    curl -s -X "$method" -o "$T/body" -D "$T/headers" -w '%{http_code}' -H 'Content-Type: application/json' \
      --data-binary "$body" "$@" "$BASE$path"
  else
    curl -s -X "$method" -o "$T/body" -D "$T/headers" -w '%{http_code}' "$@" "$BASE$path"
  fi
}
# jget EXPR: evaluate a python expression on the JSON in $T/body (as j)
jget() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/body" "$1"; }
check() { # NAME STATUS-EXPECTED STATUS-GOT [PY-EXPR that must be True]
  local name=$1 want=$2 got=$3 expr=${4:-True}
  if [ "$got" = "$want" ] && [ "$(jget "$expr" 2>&1)" = True ]; then pass "$name"
  else fail "$name: status $got (want $want), check: $expr -> $(jget "$expr" 2>&1 | tail -1); body: $(head -c 400 "$T/body")"; fi
}
