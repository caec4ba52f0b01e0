# Integration (prefix cache): a prompt that begins like ANY earlier one, not only the last, reuses
# its KV blocks (16 tokens each), and greedy text with reused KV equals a fresh server's exactly.
# The default tiny model (context 2048) so a ~1000-token prompt fits. Timing (TTFT with and without
# the cache) is a benchmark: bench/load.py --prefix.
#   1: P1 (~1000 tokens)                  fresh server: cached_tokens 0
#   2: P1 + ~40 tokens                    cached_tokens >= 960; text == a fresh server's text
#   4: an unrelated prompt                (so the last request's prefix is not the one to hit)
#   3: the first half of P1 + other text  cached_tokens in [400, 520]; text == a fresh server's
# /metrics: sparrow_prompt_tokens_cached_total = the responses' sum; sparrow_prefix_hit_tokens_total.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
MAXT=24
start_server cache --ctx 2048 || exit 1

# prompts.json: P1 grown sentence by sentence to 1000-1050 tokens (counted by the server's own
# tokenizer, BOS included), and the other prompts built from it
"$PY" - "$BASE" "$T/prompts.json" <<'PY' || true
import json, sys, urllib.request
base, out = sys.argv[1], sys.argv[2]
def toks(text):
    r = urllib.request.Request(base + "/tokenize", json.dumps({"content": text, "add_special": True}).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=30))["tokens"]
def ntok(text): return len(toks(text))
def lcp(a, b):
    a, b = toks(a), toks(b)
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]: n += 1
    return n
who = ["The old miller", "A quiet girl", "The baker's son", "Two tired sailors", "The village teacher",
       "A curious fox", "The tall guard", "An old widow", "The young painter", "A lost traveller", "The red hen"]
did = ["carried a basket of apples", "walked slowly along the river", "counted the stars above the hill",
       "mended a torn fishing net", "sang a song about the winter", "looked for a silver key", "painted the front door blue",
       "climbed the steep stone stairs", "baked bread before sunrise", "wrote a letter to her brother"]
when = ["on a windy morning", "after the long rain", "before the market opened", "while the bells were ringing",
        "late in the autumn", "during the harvest feast", "when the snow began to fall"]
def sentence(k, words):
    return "%s %s %s, and %s saw %d birds near the %s." % (who[k % len(who)], did[(3 * k) % len(did)],
        when[(5 * k) % len(when)], who[(k + 4) % len(who)].lower(), k + 2, words[k % len(words)])
places = ["mill", "bridge", "church", "orchard", "harbour", "well", "tower", "forest", "meadow"]
sents, n = [], 0
while n < 1000:
    sents.append(sentence(len(sents), places))
    n = ntok(" ".join(sents))
assert n <= 1050, "P1 has %d tokens, want 1000-1050" % n
p1 = " ".join(sents)
ext = " Then the miller's dog ran across the yard, barked twice at the gate, and slept."
# the first half: the sentences up to about 500 tokens, then text P1 does not have
half, k = "", 0
while ntok(" ".join(sents[:k + 1])) <= 500: k += 1
half = " ".join(sents[:k])
other = " Far away, a green ship sailed into the bay with seven red flags and a cargo of salt."
unrelated = " ".join("Number %d: zebras and kettles argue about purple umbrellas in Lisbon." % i for i in range(20))
p = {"p1": p1, "p2": p1 + ext, "p3": half + other, "p4": unrelated}
p["n"] = {k: ntok(v) for k, v in p.items() if k.startswith("p")}
# the test's own premises: P1's tokens begin request 2's; request 3 shares 416-527 tokens with P1
# (26-32 blocks of 16, so a cache of whole blocks reports 416-512); request 4 shares only BOS
p["lcp"] = {"p1/p2": lcp(p1, p["p2"]), "p1/p3": lcp(p1, p["p3"]), "p1/p4": lcp(p1, unrelated)}
assert p["lcp"]["p1/p2"] == p["n"]["p1"], p
assert 416 <= p["lcp"]["p1/p3"] <= 527, p
assert p["lcp"]["p1/p4"] <= 1, p
json.dump(p, open(out, "w"))
PY
[ -s "$T/prompts.json" ] && pass "prompts: $("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["n"], "tokens, common prefixes", j["lcp"])' "$T/prompts.json")" ||
  { fail "could not build the prompts"; finish; }

# send NAME KEY: /v1/completions of prompt KEY (greedy) to $BASE; the response in $T/NAME
send() {
  local s
  s=$(curl -s -o "$T/$1" -w '%{http_code}' --max-time 120 -H 'Content-Type: application/json' --data-binary \
        "$("$PY" -c 'import json,sys; print(json.dumps({"prompt": json.load(open(sys.argv[1]))[sys.argv[2]],
          "max_tokens": int(sys.argv[3]), "temperature": 0, "ignore_eos": True}))' "$T/prompts.json" "$2" "$MAXT")" \
        "$BASE/v1/completions")
  [ "$s" = 200 ] || { fail "$1: status $s: $(head -c 300 "$T/$1")"; return 1; }
}
field() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/$1" "$2"; }
cached() { field "$1" "j['usage']['prompt_tokens_details']['cached_tokens']"; }
# in_range NAME LO HI: cached_tokens of response NAME within [LO, HI]
in_range() {
  local c; c=$(cached "$1")
  [ "$c" -ge "$2" ] && [ "$c" -le "$3" ] && pass "$1: cached_tokens $c in [$2, $3]" ||
    fail "$1: cached_tokens $c, want [$2, $3] (prompt $(field "$1" "j['usage']['prompt_tokens']") tokens)"
}
# same_text A B: the completions in responses A and B are identical
same_text() {
  local a b; a=$(field "$1" "json.dumps(j['choices'][0]['text'])"); b=$(field "$2" "json.dumps(j['choices'][0]['text'])")
  [ "$a" = "$b" ] && pass "$1 text == $2 text" || fail "$1 text differs from $2: $a vs $b"
}

send r1 p1 && in_range r1 0 0
n2=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["n"]["p2"])' "$T/prompts.json")
send r2 p2 && in_range r2 960 $((n2 - 1))
send r4 p4
send r3 p3 && in_range r3 400 520
# the cached-token counter agrees with the responses
total=0; for r in r1 r2 r4 r3; do [ -s "$T/$r" ] && total=$((total + $(cached "$r"))); done
curl -s "$BASE/metrics" >"$T/metrics"
m=$(awk '$1 == "sparrow_prompt_tokens_cached_total" {print $2}' "$T/metrics")
[ "$m" = "$total" ] && pass "/metrics sparrow_prompt_tokens_cached_total = $m" || fail "/metrics cached tokens '$m', responses say $total"
# the KV pool's own count of prompt tokens served from cached blocks (request 2 alone brings 960+)
h=$(awk '$1 == "sparrow_prefix_hit_tokens_total" {print $2}' "$T/metrics")
if [ -z "$h" ]; then fail "/metrics lacks sparrow_prefix_hit_tokens_total (the paged KV cache's counters are not exported yet)"
elif [ "$h" -ge 960 ]; then pass "/metrics sparrow_prefix_hit_tokens_total $h"
else fail "/metrics sparrow_prefix_hit_tokens_total is $h, want >= 960"; fi

# the same requests 2 and 3, each on a fresh server (nothing cached): exactly the same text
start_server fresh2 --ctx 2048 || exit 1
send f2 p2 && in_range f2 0 0 && same_text r2 f2
start_server fresh3 --ctx 2048 || exit 1
send f3 p3 && in_range f3 0 0 && same_text r3 f3
finish
