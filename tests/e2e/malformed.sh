# End to end: malformed GGUF files (the shared ones and our own corruptions of a real file) give one
# clear error line and exit status 1 from `inspect` and `run`, never a crash.
source "$(dirname "$0")/common.sh"
check_bad() { # FILE EXPECTED-PHRASE
  local f=$1 want=$2 rc=0
  for cmd in inspect run; do
    rc=0
    if [ "$cmd" = run ]; then "$SP" run -m "$f" -p hi -n 1 >/dev/null 2>"$T/err" || rc=$?
    else "$SP" inspect "$f" >/dev/null 2>"$T/err" || rc=$?; fi
    lines=$(wc -l <"$T/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$T/err"; then pass "$cmd $(basename "$f"): $(cat "$T/err")"
    else fail "$cmd $(basename "$f"): rc=$rc lines=$lines: $(cat "$T/err")"; fi
  done
}
check_bad "$SH/models/malformed/truncated-tensor-data.gguf" "past end of file"
"$SP" inspect "$SH/models/malformed/valid-no-tensors.gguf" >"$T/out" && grep -Eq "n_tensors: +0" "$T/out" &&
  pass "valid-no-tensors inspects" || fail "valid-no-tensors: $(cat "$T/out")"
"$SP" run -m "$SH/models/malformed/valid-no-tensors.gguf" -p hi -n 1 >/dev/null 2>"$T/err" && fail "run valid-no-tensors should fail" ||
  { grep -q "missing" "$T/err" && pass "run valid-no-tensors: $(cat "$T/err")" || fail "run valid-no-tensors: $(cat "$T/err")"; }

src=$SH/models/stories260K-q8_0.gguf
size=$(stat -c %s "$src")
# truncated in the header, in the metadata, in the tensor infos, in the data
for cut in 3 10 23 100 5000 20000 $((size / 2)) $((size - 1)); do
  head -c "$cut" "$src" >"$T/trunc-$cut.gguf"
  check_bad "$T/trunc-$cut.gguf" "gguf"
done
printf 'GGUX' | cat - <(tail -c +5 "$src") >"$T/badmagic.gguf"; check_bad "$T/badmagic.gguf" "magic"
# n_tensors (bytes 8..15) = 2^62
"$PY" - "$src" "$T/hugecount.gguf" <<'PY'
import sys, struct
b = bytearray(open(sys.argv[1], 'rb').read()); b[8:16] = struct.pack('<Q', 1 << 62); open(sys.argv[2], 'wb').write(b)
PY
check_bad "$T/hugecount.gguf" "gguf"
finish
