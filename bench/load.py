#!/usr/bin/python3
"""bench/load.py — load benchmark of a sparrow server on loopback (Python 3 standard library only).

Load mode (default): for each concurrency C in --concurrency (1,2,4,8), R rounds (--rounds) of C
streaming clients (threads) that start together, each sending one /v1/chat/completions (or
/v1/completions with --endpoint completions) with stream=true, stream_options.include_usage,
ignore_eos=true, temperature 0, max_tokens N and its own short prompt. Per concurrency it reports
the aggregate generated tokens/s (all tokens of a round / the round's wall time, mean over rounds),
the per-client decode speed (tokens after the first / time after the first), and time to first
token (TTFT: request sent -> first chunk with text). Tokens are counted from the final usage chunk
(completion_tokens); a response without one falls back to its number of non-empty content chunks,
and the report says which source was used.

Prefix mode (--prefix): the prefix cache's effect on time to first token. Each repetition builds a
~--prefix-tokens prompt P (its first words unique to the run and repetition, so nothing is cached),
sends P, then P + ~40 tokens (which can reuse P's KV), then another unique prompt of that extended
length (nothing to reuse); prints the median TTFT of each, the ratios, and the cached_tokens the
extended request reported. The server's context must hold prefix-tokens + ~60 tokens.

Bounded: every socket has --timeout, everything together --max-seconds (rounds that would start
after it are skipped and reported as such; a stream still running at the cap is cut).

  bench/load.py --url http://127.0.0.1:8080 -c 1,2,4,8 -n 128 -r 3
  bench/load.py --spawn [-m MODEL] [--sparrow build/sparrow] [--json out.json] -- --parallel 8
  bench/load.py --spawn --prefix -- --ctx 2048      # the default tiny model; 2048-token context

--spawn starts `SPARROW serve --port PORT [-m MODEL] EXTRA...` (EXTRA: the arguments after `--`),
waits for GET /health 200 and stops it (SIGTERM) at the end; without --spawn nothing is started.
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOPICS = ["a red kite", "a lost key", "the sea", "a small robot", "a rainy day", "an old map", "a brave mouse",
          "the moon", "a green door", "a sleepy cat", "a paper boat", "the market", "a tall tree", "a kind baker",
          "a broken clock", "the first snow"]


class Server:
    """Where the server is; with --spawn, the process we started."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.proc = self.log = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)


def spawn(args, extra, deadline):
    log = tempfile.NamedTemporaryFile(prefix="sparrow-load-", suffix=".log", delete=False)
    cmd = [args.sparrow, "serve", "--port", str(args.port)] + (["-m", args.model] if args.model else []) + extra
    print("starting: %s (log %s)" % (" ".join(cmd), log.name), file=sys.stderr)
    s = Server("http://127.0.0.1:%d" % args.port)
    s.proc, s.log = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), log.name
    while True:  # the port it listens on (--port 0 picks a free one), then /health 200
        m = re.search(r"listening on http://[^ ]*:(\d+)", open(log.name, errors="replace").read())
        if m:
            s.port = int(m.group(1))
            if status(s, "/health", 2) == 200:
                return s
        if s.proc.poll() is not None or time.monotonic() > deadline:
            tail = open(log.name, errors="replace").read()[-2000:]
            stop(s)
            raise SystemExit("the server %s:\n%s" % ("exited" if s.proc.returncode is not None else "did not start in time", tail))
        time.sleep(0.1)


def stop(s):
    if s.proc and s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


def status(s, path, timeout):
    try:
        c = http.client.HTTPConnection(s.host, s.port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


def get_json(s, method, path, body, timeout):
    c = http.client.HTTPConnection(s.host, s.port, timeout=timeout)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300].decode("utf-8", "replace")))
        return json.loads(data)
    finally:
        c.close()


def stream(s, path, body, timeout, deadline):
    """One streamed request. Returns times (monotonic seconds), tokens (usage or chunk count), errors."""
    res = {"t_start": time.monotonic(), "t_first": None, "t_end": None, "usage": None, "chunks": 0, "error": None}
    chat = path.endswith("/chat/completions")
    c = http.client.HTTPConnection(s.host, s.port, timeout=timeout)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            res["error"] = "HTTP %d: %s" % (r.status, r.read(300).decode("utf-8", "replace"))
            return res
        done = False
        while not done:
            if time.monotonic() > deadline:
                res["error"] = "cut at --max-seconds"
                break
            line = r.readline()
            if not line:
                res["error"] = "stream ended without [DONE]"
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                res["error"] = "error event: %s" % data[:300].decode("utf-8", "replace")
                break
            if ev.get("usage"):
                res["usage"] = ev["usage"]
            for ch in ev.get("choices") or []:
                text = (ch.get("delta") or {}).get("content") if chat else ch.get("text")
                if text:
                    res["chunks"] += 1
                    if res["t_first"] is None:
                        res["t_first"] = time.monotonic()
                elif ch.get("finish_reason") and res["t_first"] is None:
                    res["t_first"] = time.monotonic()  # nothing printable before the end
    except (OSError, http.client.HTTPException, ValueError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        res["t_end"] = time.monotonic()
        c.close()
    return res


def tokens_of(res):
    if res["usage"] and "completion_tokens" in res["usage"]:
        return res["usage"]["completion_tokens"], "usage"
    return res["chunks"], "chunks"


def request_body(args, model, text, max_tokens, nonce=None):
    b = {"stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0,
         "max_tokens": max_tokens}
    if model:
        b["model"] = model
    if args.endpoint == "chat":
        b["messages"] = [{"role": "user", "content": text}]
    else:
        b["prompt"] = text
    return b


def path_of(args):
    return "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"


def run_round(args, s, model, conc, rnd, run_id, deadline):
    results = [None] * conc
    barrier = threading.Barrier(conc)

    def client(i):
        topic = TOPICS[(i + rnd * conc) % len(TOPICS)]
        text = "Story %s-%d-%d. Tell me a short story about %s." % (run_id, rnd, i, topic)
        body = request_body(args, model, text, args.max_tokens)
        try:
            barrier.wait(args.timeout)
        except threading.BrokenBarrierError:
            pass
        results[i] = stream(s, path_of(args), body, args.timeout, deadline)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + args.timeout + 5)
    return [r if r is not None else {"error": "client thread did not finish"} for r in results]


def summarize_round(results):
    ok = [r for r in results if not r.get("error")]
    out = {"requests": len(results), "errors": [r["error"] for r in results if r.get("error")], "sources": set()}
    if not ok:
        return out
    toks = 0
    client_tps, ttft = [], []
    for r in ok:
        n, src = tokens_of(r)
        out["sources"].add(src)
        toks += n
        if r["t_first"] is not None:
            ttft.append(r["t_first"] - r["t_start"])
            if n > 1 and r["t_end"] > r["t_first"]:
                client_tps.append((n - 1) / (r["t_end"] - r["t_first"]))
    wall = max(r["t_end"] for r in ok) - min(r["t_start"] for r in ok)
    out.update(tokens=toks, wall=wall, agg_tps=toks / wall if wall > 0 else 0.0, client_tps=client_tps, ttft=ttft)
    return out


def mean(xs):
    return statistics.fmean(xs) if xs else float("nan")


def load_mode(args, s, model, deadline):
    run_id = "%x" % (int(time.time() * 1000) & 0xFFFFFF)
    if not args.no_warmup:
        w = stream(s, path_of(args), request_body(args, model, "Warm up %s." % run_id, 8), args.timeout, deadline)
        if w["error"]:
            raise SystemExit("warm-up request failed: %s" % w["error"])
    rows = []
    for conc in args.concurrency:
        rounds = []
        for rnd in range(args.rounds):
            if time.monotonic() >= deadline:
                break
            rounds.append(summarize_round(run_round(args, s, model, conc, rnd, run_id, deadline)))
        good = [r for r in rounds if "agg_tps" in r and not r["errors"]]
        errs = [e for r in rounds for e in r["errors"]]
        ttft = [t for r in good for t in r["ttft"]]
        row = {"concurrency": conc, "rounds": len(rounds), "rounds_skipped": args.rounds - len(rounds),
               "requests": sum(r["requests"] for r in rounds), "errors": len(errs), "first_error": errs[0] if errs else None,
               "cut": sum(e == "cut at --max-seconds" for e in errs),
               "tokens": sum(r["tokens"] for r in good),
               "agg_tps_mean": mean([r["agg_tps"] for r in good]),
               "agg_tps_stdev": statistics.stdev([r["agg_tps"] for r in good]) if len(good) > 1 else 0.0,
               "client_tps_mean": mean([t for r in good for t in r["client_tps"]]),
               "ttft_mean_s": mean(ttft), "ttft_max_s": max(ttft) if ttft else float("nan"),
               "token_count": "+".join(sorted(set().union(*[r["sources"] for r in good]))) or None}
        rows.append(row)
    return rows


def print_load(rows, args):
    print("tokens counted from: %s (usage = the usage chunk's completion_tokens; chunks = non-empty content chunks)"
          % ", ".join(sorted({r["token_count"] for r in rows if r["token_count"]})))
    print("%5s %7s %5s %7s %8s %16s %14s %13s %12s" % ("conc", "rounds", "reqs", "errors", "tokens", "aggregate t/s",
                                                     "per-client t/s", "TTFT mean ms", "TTFT max ms"))
    for r in rows:
        print("%5d %7s %5d %7d %8d %9.1f ± %4.1f %14.1f %13.1f %12.1f" % (
            r["concurrency"], "%d%s" % (r["rounds"], "*" if r["rounds_skipped"] else ""), r["requests"], r["errors"],
            r["tokens"], r["agg_tps_mean"], r["agg_tps_stdev"], r["client_tps_mean"], r["ttft_mean_s"] * 1e3,
            r["ttft_max_s"] * 1e3))
    if any(r["rounds_skipped"] for r in rows):
        print("* rounds skipped: --max-seconds %g reached" % args.max_seconds)
    for r in rows:
        if r["first_error"]:
            print("concurrency %d: %d error(s), first: %s" % (r["concurrency"], r["errors"], r["first_error"]))


SUBJ = ["The old miller", "A quiet girl", "The baker's son", "Two tired sailors", "The village teacher", "A curious fox",
        "The tall guard", "An old widow", "The young painter", "A lost traveller", "The red hen"]
VERB = ["carried a basket of apples", "walked slowly along the river", "counted the stars above the hill",
        "mended a torn fishing net", "sang a song about the winter", "looked for a silver key",
        "painted the front door blue", "climbed the steep stone stairs", "baked bread before sunrise"]
WHEN = ["on a windy morning", "after the long rain", "before the market opened", "while the bells were ringing",
        "late in the autumn", "during the harvest feast", "when the snow began to fall"]


def long_prompt(s, head, n_tokens, timeout):
    """Sentences after HEAD until the prompt tokenizes (BOS included) to at least n_tokens."""
    def ntok(text):
        return len(get_json(s, "POST", "/tokenize", {"content": text, "add_special": True}, timeout)["tokens"])
    sents = [head]
    while True:  # grow by 80% of the estimated shortfall, down to one sentence at a time
        n = ntok(" ".join(sents))
        if n >= n_tokens:
            return " ".join(sents), n
        k = len(sents)
        step = max(1, int(0.8 * (n_tokens - n) / (n / len(sents)))) if len(sents) > 1 else 4
        for j in range(step):
            k2 = k + j
            sents.append("%s %s %s, and %s saw %d birds." % (SUBJ[k2 % len(SUBJ)], VERB[(3 * k2) % len(VERB)],
                                                            WHEN[(5 * k2) % len(WHEN)], SUBJ[(k2 + 4) % len(SUBJ)].lower(), k2 + 2))


EXT = " Then the miller's dog ran across the yard, barked twice at the gate, and slept in the sun."


def prefix_mode(args, s, model, deadline):
    run_id = "%x" % (int(time.time() * 1000) & 0xFFFFFF)
    ta, tb, tc, cached, ntoks, n_ext = [], [], [], [], None, None
    saved = args.endpoint
    args.endpoint = "completions"  # raw prompts: the text sent is the text cached
    try:
        for rep in range(args.prefix_reps):
            if time.monotonic() >= deadline:
                break
            p, n = long_prompt(s, "Session %s, part %d." % (run_id, rep), args.prefix_tokens, args.timeout)
            q, _ = long_prompt(s, "Session %s, other %d." % (run_id, rep), n, args.timeout)
            if ntoks is None:
                n_ext = len(get_json(s, "POST", "/tokenize", {"content": p + EXT, "add_special": True},
                                     args.timeout)["tokens"]) - n
            ntoks = n
            for text, into in ((p, ta), (p + EXT, tb), (q + EXT, tc)):
                r = stream(s, "/v1/completions", request_body(args, model, text, 4), args.timeout, deadline)
                if r["error"]:
                    raise SystemExit("prefix request failed (is the context >= %d tokens? pass --ctx to serve): %s"
                                     % (args.prefix_tokens + 64, r["error"]))
                into.append(r["t_first"] - r["t_start"])
                if into is tb:
                    cached.append(((r["usage"] or {}).get("prompt_tokens_details") or {}).get("cached_tokens"))
    finally:
        args.endpoint = saved
    if not ta:
        raise SystemExit("no repetition ran within --max-seconds")
    med = lambda xs: statistics.median(xs)
    res = {"reps": len(ta), "prefix_tokens": ntoks, "extension_tokens": n_ext, "ttft_first_s": ta, "ttft_extended_s": tb,
           "ttft_extended_uncached_s": tc, "cached_tokens": cached,
           "median_first_s": med(ta), "median_extended_s": med(tb), "median_extended_uncached_s": med(tc),
           "ratio_extended_over_first": med(tb) / med(ta), "ratio_extended_over_uncached": med(tb) / med(tc)}
    print("prefix mode: %d repetitions, P = %d tokens (BOS included), extension %d tokens; TTFT medians:"
          % (res["reps"], ntoks, n_ext))
    print("  first (P, nothing cached)           %8.2f ms" % (res["median_first_s"] * 1e3))
    print("  extended (P + ext, P cached)        %8.2f ms   cached_tokens %s" % (res["median_extended_s"] * 1e3, cached))
    print("  extended, uncached (other P + ext)  %8.2f ms" % (res["median_extended_uncached_s"] * 1e3))
    print("  ratio extended / first              %8.3f" % res["ratio_extended_over_first"])
    print("  ratio extended / extended uncached  %8.3f" % res["ratio_extended_over_uncached"])
    return res


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="arguments after -- go to `sparrow serve` "
                                 "(with --spawn)")
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="the server (without --spawn)")
    ap.add_argument("--spawn", action="store_true", help="start `sparrow serve` and stop it at the end")
    ap.add_argument("--sparrow", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sparrow"),
                    help="the binary for --spawn (default: build/sparrow)")
    ap.add_argument("-m", "--model", help="GGUF for --spawn (default: the server's tiny random model)")
    ap.add_argument("--port", type=int, default=0, help="port for --spawn (default 0: a free one)")
    ap.add_argument("-c", "--concurrency", default="1,2,4,8", help="comma-separated client counts (default 1,2,4,8)")
    ap.add_argument("-n", "--max-tokens", type=int, default=128, help="tokens per request (default 128)")
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds per concurrency (default 3)")
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--timeout", type=float, default=60, help="socket timeout, seconds (default 60)")
    ap.add_argument("--max-seconds", type=float, default=300, help="cap on the whole run (default 300)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the warm-up request")
    ap.add_argument("--prefix", action="store_true", help="prefix-cache TTFT mode instead of the load table")
    ap.add_argument("--prefix-tokens", type=int, default=1000, help="prompt length in prefix mode (default 1000)")
    ap.add_argument("--prefix-reps", type=int, default=5, help="repetitions in prefix mode (default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    args = ap.parse_args(argv)
    try:
        args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
        assert args.concurrency and all(c > 0 for c in args.concurrency)
    except (ValueError, AssertionError):
        ap.error("--concurrency wants positive integers, e.g. 1,2,4,8")
    if extra and not args.spawn:
        ap.error("arguments after -- are for `sparrow serve`: they need --spawn")

    rows = []
    t0 = time.monotonic()
    deadline = t0 + args.max_seconds
    s = spawn(args, extra, deadline) if args.spawn else Server(args.url)
    try:
        if not args.spawn and status(s, "/health", args.timeout) != 200:
            raise SystemExit("%s/health does not answer 200" % s.url)
        models = get_json(s, "GET", "/v1/models", None, args.timeout)
        model = models["data"][0]["id"] if models.get("data") else None
        print("server %s, model %s%s" % (s.url, model, (", serve args: " + " ".join(extra)) if extra else ""))
        if args.prefix:
            out = {"mode": "prefix", "server": s.url, "model": model, "serve_args": extra, **prefix_mode(args, s, model, deadline)}
        else:
            rows = load_mode(args, s, model, deadline)
            print_load(rows, args)
            out = {"mode": "load", "server": s.url, "model": model, "serve_args": extra, "endpoint": args.endpoint,
                   "max_tokens": args.max_tokens, "rounds": args.rounds, "results": rows}
        out["wall_s"] = time.monotonic() - t0
        if args.json:
            text = json.dumps(out, indent=2, allow_nan=True)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
    finally:
        stop(s)
    if s.log:  # kept when something failed above
        os.unlink(s.log)
    if not args.prefix and any(r["first_error"] and r["errors"] > r["cut"] for r in rows):
        sys.exit(1)  # a request failed (beyond those cut at --max-seconds)


if __name__ == "__main__":
    main()
