#!/usr/bin/env bash
# tests/e2e/templates.sh — `sparrow template` against Python jinja2: every template in
# $SH/templates/*.jinja × every conversation in tests/e2e/template_cases/*.json is rendered by
# sparrow and by the reference (render_reference.py's environment, run in one Python process for
# speed: same make_env(), same error format), with SPARROW_FIXED_DATE fixed. Outputs must match
# byte for byte; where the reference refuses (exit 3), sparrow must fail too, with the same
# message on stderr. Also checks the builtins and the CLI's error handling.
source "$(dirname "$0")/common.sh"
CASES=$(cd "$(dirname "$0")/template_cases" && pwd)
export SPARROW_FIXED_DATE=2026-01-15

"$PY" - "$SP" "$SH/templates" "$CASES" "$T" <<'PYEOF' || fails=$((fails + 1))
import glob, json, os, subprocess, sys
sp, tdir, cdir, tmp = sys.argv[1:5]
sys.path.insert(0, tdir)
import render_reference as ref  # the oracle's own environment

env = ref.make_env()
templates = sorted(glob.glob(os.path.join(tdir, "*.jinja")))
cases = sorted(glob.glob(os.path.join(cdir, "*.json")))
same = total = 0
for t in templates:
    src = open(t, encoding="utf-8").read()
    for c in cases:
        total += 1
        ctx = json.load(open(c, encoding="utf-8"))
        try:
            want, want_err = env.from_string(src).render(**ctx).encode("utf-8"), None
        except Exception as e:
            want, want_err = None, f"{type(e).__name__}: {e}"
        p = subprocess.run([sp, "template", "--file", t, "--context", c], capture_output=True)
        name = f"{os.path.basename(t)} × {os.path.basename(c)}"
        if want_err is None:
            if p.returncode == 0 and p.stdout == want:
                same += 1
                continue
            print(f"FAIL {name}: rc={p.returncode} {p.stderr.decode(errors='replace').strip()[:300]}")
            if p.returncode == 0:
                a, b = want, p.stdout
                i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
                print(f"     first difference at byte {i}:\n     want {a[max(0, i - 60):i + 60]!r}\n     got  {b[max(0, i - 60):i + 60]!r}")
        else:
            msg = want_err.split(": ", 1)[1]
            got = p.stderr.decode(errors="replace")
            if p.returncode != 0 and msg in got:
                same += 1
                continue
            print(f"FAIL {name}: reference raised {want_err!r}; sparrow rc={p.returncode} stderr={got.strip()[:300]!r}")
# the in-process oracle is render_reference.py's CLI, byte for byte (spot check)
t, c = templates[0], cases[0]
cli = subprocess.run([sys.executable, os.path.join(tdir, "render_reference.py"), t, c], capture_output=True)
inproc = env.from_string(open(t, encoding="utf-8").read()).render(**json.load(open(c, encoding="utf-8")))
if cli.returncode != 0 or cli.stdout != inproc.encode("utf-8"):
    print("FAIL the in-process reference differs from render_reference.py")
    same -= 1
print(f"templates: {same}/{total} renders identical")
sys.exit(0 if same == total else 1)
PYEOF

# builtins render a conversation exactly as their family's format says
cat >"$T/conv.json" <<'EOF'
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
 "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"}
EOF
expect_builtin() {
    local name=$1 want=$2
    printf '%b' "$want" >"$T/want"
    "$SP" template --builtin "$name" --context "$T/conv.json" >"$T/got" || true
    if cmp -s "$T/want" "$T/got"; then pass "builtin $name"; else fail "builtin $name: got $(od -c "$T/got" | head -5)"; fi
}
expect_builtin chatml '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n'
expect_builtin llama2 '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]'
expect_builtin llama3 '<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
expect_builtin mistral '<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]'
expect_builtin gemma '<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n'
expect_builtin phi3 '<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n'

# the builtins agree with jinja2 too (--source prints a template's source)
for b in chatml llama2 llama3 mistral gemma phi3; do
    "$SP" template --builtin "$b" --source >"$T/b_$b.jinja" || fail "builtin $b --source"
    "$SP" template --builtin "$b" --context "$T/conv.json" >"$T/b_$b.out" || fail "builtin $b failed"
    "$PY" "$SH/templates/render_reference.py" "$T/b_$b.jinja" "$T/conv.json" >"$T/b_$b.ref" || fail "reference on builtin $b"
    if cmp -s "$T/b_$b.out" "$T/b_$b.ref"; then pass "builtin $b matches jinja2"; else fail "builtin $b differs from jinja2"; fi
done

# -m: the template and the bos/eos text come from the GGUF (a metadata-only file written here)
cat >"$T/plain.json" <<'EOF'
{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true}
EOF
"$PY" - "$T/chat.gguf" <<'PYEOF'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")),
      ("tokenizer.chat_template", 8, s("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}")),
      ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("<unk>") + s("<|begin|>") + s("<|end|>")),
      ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
      ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))]
out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
open(sys.argv[1], "wb").write(out)
PYEOF
got=$("$SP" template -m "$T/chat.gguf" --context "$T/plain.json" 2>"$T/err") || true
if [ "$got" = "<|begin|>[user]Hi<|end|>" ]; then pass "-m: template and bos/eos from the GGUF"
else fail "-m gave '$got' ($(cat "$T/err"))"; fi
got=$(printf '{"messages": [], "bos_token": "B"}' | "$SP" template -m "$T/chat.gguf" --context - 2>"$T/err") || true
if [ "$got" = "B" ]; then pass "-m: the context's bos_token wins"; else fail "-m context bos gave '$got'"; fi
if "$SP" template -m "$SH/models/stories260K.gguf" --context "$T/plain.json" >"$T/out" 2>"$T/err" &&
   grep -q "no chat template; using the builtin" "$T/err" && grep -q "Hi" "$T/out"; then
    pass "-m without a chat template falls back to a builtin"
else fail "-m fallback: $(cat "$T/err")"; fi

# errors: one line on stderr naming the template line, non-zero exit, nothing on stdout
printf 'line one\n{{ x | nosuchfilter }}\n' >"$T/bad.jinja"
if "$SP" template --file "$T/bad.jinja" >"$T/out" 2>"$T/err"; then fail "unknown filter accepted"
elif grep -q "sparrow template: template line 2: No filter named 'nosuchfilter'" "$T/err" && [ ! -s "$T/out" ]; then pass "syntax error names the line"
else fail "syntax error message: $(cat "$T/err")"; fi
printf '{%% if messages[0].role == "system" %%}{{ raise_exception("System role not supported") }}{%% endif %%}' >"$T/raise.jinja"
if "$SP" template --file "$T/raise.jinja" --context "$T/conv.json" >"$T/out" 2>"$T/err"; then fail "raise_exception ignored"
elif grep -qx "sparrow template: System role not supported" "$T/err"; then pass "raise_exception message"
else fail "raise_exception message: $(cat "$T/err")"; fi
if "$SP" template --file "$T/nonexistent.jinja" 2>"$T/err"; then fail "missing file accepted"
else pass "missing file fails"; fi
if "$SP" template --builtin nosuch 2>"$T/err"; then fail "unknown builtin accepted"
else pass "unknown builtin fails"; fi
finish
