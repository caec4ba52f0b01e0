# End-to-end: the web chat page at / in headless Chromium (Debian's `chromium` package, driven by
# npm's playwright-core, installed into the build tree on first run): headers and CSP, streaming,
# Stop cancelling the generation on the server, conversations kept across reloads, the model picker,
# server errors, the API-key prompt, the exact text for a greedy request, a phone-width screenshot.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
here=$(cd "$(dirname "$0")" && pwd)
export SPARROW_CHROMIUM=${SPARROW_CHROMIUM:-/usr/bin/chromium}
[ -x "$SPARROW_CHROMIUM" ] || { fail "no Chromium at $SPARROW_CHROMIUM (apt-get install chromium)"; finish; }
npm_packages || { fail "npm install"; finish; }
npm_dir=$NPM_DIR
cp "$here/webui.mjs" "$npm_dir/webui.mjs"
shot=$(dirname "$SP")/webui-phone.png
rm -f "$shot"

# a random-weight model whose long replies stream for a while (room to press Stop), and stories260K
# behind an API key for the exact-text check
"$SP" synth --preset tiny --type q8_0 -o "$T/tiny.gguf" >/dev/null 2>&1 || { fail "synth tiny"; finish; }
# (-c 8192 and max_tokens 8000 in the page: seconds of streaming even with the fast kernels on an idle box)
start_server tiny -m "$T/tiny.gguf" -c 8192 || exit 1
tiny=$BASE
key=sk-webui-test
start_server keyed -m "$SH/models/stories260K.gguf" --api-key "$key" || exit 1
keyed=$BASE

# headers: content types, caching, CSP (the page is public, the API behind it is not)
BASE=$tiny
for pt in "/|text/html; charset=utf-8" "/index.html|text/html; charset=utf-8" "/app.js|text/javascript; charset=utf-8" \
          "/style.css|text/css; charset=utf-8" "/favicon.svg|image/svg+xml"; do
  p=${pt%%|*} want=${pt#*|}
  st=$(req GET "$p")
  ct=$(grep -i '^content-type:' "$T/headers" | cut -d' ' -f2- | tr -d '\r')
  cc=$(grep -i '^cache-control:' "$T/headers" | cut -d' ' -f2- | tr -d '\r')
  csp=$(grep -i '^content-security-policy:' "$T/headers" | cut -d' ' -f2- | tr -d '\r')
  if [ "$st" = 200 ] && [ "$ct" = "$want" ] && [ -n "$cc" ] && [ -s "$T/body" ] &&
     [[ "$csp" == *"default-src 'none'"* && "$csp" == *"script-src 'self'"* && "$csp" == *"style-src 'self'"* ]]; then
    pass "GET $p: $ct, Cache-Control: $cc, CSP"
  else fail "GET $p: status $st, type '$ct' (want '$want'), Cache-Control '$cc', CSP '$csp'"; fi
done
req GET / >/dev/null
grep -qi '^cache-control: no-cache' "$T/headers" && pass "the page itself is revalidated (no-cache)" || fail "Cache-Control on /: $(grep -i cache-control "$T/headers")"
grep -qi '^x-content-type-options: nosniff' "$T/headers" && pass "nosniff" || fail "no X-Content-Type-Options: nosniff"
if grep -Eq '<script>|<style|[[:space:]]style=|[[:space:]]on[a-z]+=' "$T/body"; then fail "inline script/style/handler in index.html"; else pass "no inline scripts, styles or handlers"; fi
BASE=$keyed
st1=$(req GET /) st2=$(req GET /app.js) st3=$(req GET /v1/models)
[ "$st1/$st2/$st3" = 200/200/401 ] && pass "with --api-key: the page is public, /v1/models needs the key" || fail "with --api-key: / $st1, /app.js $st2, /v1/models $st3"

# what the page must show for a greedy 16-token reply to "Once upon a time"
st=$(req POST /v1/chat/completions '{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"temperature":0,"max_tokens":16}' \
  -H "Authorization: Bearer $key")
want=$(jget 'json.dumps(j["choices"][0]["message"]["content"])') # JSON: $(...) would eat a final newline
[ "$st" = 200 ] && [ "$want" != '""' ] || { fail "reference reply: status $st $(head -c 300 "$T/body")"; finish; }

if timeout 80 node "$npm_dir/webui.mjs" "$tiny" "$keyed" "$key" "$want" "$shot" "$T/chromium-profile"; then
  pass "web page in headless Chromium"
else
  fail "web page in headless Chromium"
fi
grep -Eq 'POST /v1/chat/completions .*(cancelled|client gone)' "$T/tiny.log" && pass "server log: the stopped request was cancelled" ||
  fail "server log has no cancelled request: $(grep 'chat/completions' "$T/tiny.log" | head -3)"
[ -s "$shot" ] && echo "screenshot: $shot"
finish
