# End to end: `sparrow run --temp 0` on stories260K (F32 and Q8_0) prints exactly the reference
# continuation of llama2.c's run.c for every prompt in ../shared/models/reference/stories260K.json.
source "$(dirname "$0")/common.sh"
ref=$SH/models/reference/stories260K.json
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$ref")
for model in stories260K.gguf stories260K-q8_0.gguf; do
  for ((i = 0; i < n; i++)); do
    prompt=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["prompt"], end="")' "$ref" "$i")
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[int(sys.argv[2])]; sys.stdout.write(d["prompt"] + d["completion"] + "\n")' "$ref" "$i" >"$T/want"
    npred=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["n_predict"])' "$ref" "$i")
    "$SP" run -m "$SH/models/$model" -p "$prompt" -n "$npred" --temp 0 >"$T/got" 2>"$T/err"
    if cmp -s "$T/want" "$T/got"; then pass "$model: '$prompt'"; else
      fail "$model: '$prompt'"; diff <(cat "$T/want") <(cat "$T/got") | head -5; fi
    # the generated part alone, without the echoed prompt
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[int(sys.argv[2])]; sys.stdout.write(d["completion"] + "\n")' "$ref" "$i" >"$T/want2"
    "$SP" run -m "$SH/models/$model" -p "$prompt" -n "$npred" --temp 0 --no-echo >"$T/got2" 2>/dev/null
    cmp -s "$T/want2" "$T/got2" && pass "$model --no-echo: '$prompt'" || fail "$model --no-echo: '$prompt'"
  done
done
# speeds are reported on stderr
grep -Eq 'prompt [0-9]+ tokens .* tok/s\); generated 64 tokens .* tok/s\)' "$T/err" && pass "speed line" || fail "speed line: $(cat "$T/err")"
finish
