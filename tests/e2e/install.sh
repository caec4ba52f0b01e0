# Integration: `cmake --install` (what `make install PREFIX=...` runs) puts the binary, the systemd
# unit, the example config and the docs under the prefix; the installed binary runs; the unit's
# ExecStart names the installed binary and the config path the README tells users to create; the
# example config is accepted by `sparrow serve --config` (only the model path swapped).
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"

BUILD=$(dirname "$SP")
cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { fail "install: $(cat "$T/install.log")"; finish; }
for f in bin/sparrow lib/systemd/system/sparrow.service share/sparrow/sparrow.json share/doc/sparrow/README.md; do
  [ -f "$T/prefix/$f" ] && pass "installed $f" || fail "missing $f"
done
"$T/prefix/bin/sparrow" serve --help | grep -q -- '--mem-limit' && pass "the installed binary runs" || fail "installed binary"
unit=$T/prefix/lib/systemd/system/sparrow.service
grep -qx 'ExecStart=/usr/local/bin/sparrow serve --config /etc/sparrow/sparrow.json' "$unit" &&
  grep -qx 'User=sparrow' "$unit" && grep -qx 'NoNewPrivileges=yes' "$unit" && grep -qx 'Restart=on-failure' "$unit" &&
  pass "unit: ExecStart, user, sandbox, restart" || fail "unit: $(grep -E 'ExecStart|User' "$unit")"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify --man=no "$unit" 2>&1 | grep -v 'not executable\|/usr/local/bin/sparrow\|Unit sparrow.service not found' | grep -q . &&
    fail "systemd-analyze: $(systemd-analyze verify --man=no "$unit" 2>&1)" || pass "systemd-analyze verify"
fi
"$SP" synth --preset tiny --type q4_0 -o "$T/m.gguf" >/dev/null 2>&1
"$PY" - "$T/prefix/share/sparrow/sparrow.json" "$T/m.gguf" "$T/conf.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["model"] = sys.argv[2]
c["port"] = 0
json.dump(c, open(sys.argv[3], "w"))
PYEOF
start_server conf --config "$T/conf.json" || exit 1
grep -q 'memory plan for --mem-limit 1024 MiB' "$T/conf.log" && pass "the example config is accepted (mem-limit, kv-spill, parallel)" ||
  fail "example config: $(cat "$T/conf.log")"
stop_servers
finish
