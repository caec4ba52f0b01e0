#!/usr/bin/python3
"""bench/faults.py — load and fault checks of a sparrow server on loopback (Python 3 standard library).

Three checks (issue 9), each bounded in count and time, each printing its figures and PASS or FAIL:

  concurrent  C clients (default 200) started over --ramp seconds (0.5), each one request (max_tokens -n,
              default 256) of a mix:
              completion streams, whole completions, chat streams, and slow readers (a 4 KiB receive
              buffer, 1 KiB read every 100 ms, so the server meets back-pressure). Every request must
              end in a complete answer (stream: a finish_reason and data: [DONE]; whole: JSON with
              choices) or a documented refusal (429 rate_limit_exceeded with Retry-After, 503 with a
              documented code). Meanwhile a separate process probes GET /health on a fresh connection
              every 20 ms: every probe must be 200 and the p99 latency under --health-p99-ms (100).
  slowloris   S connections (default 500) trickle a request head byte by byte (one byte per socket every
              --trickle seconds) and never finish it; meanwhile a normal client sends a short completion
              and a /health every 250 ms. Every trickling connection must be closed by the server within
              its read timeout + 5 s (the server's --read-timeout, 15 s unless --read-timeout is given
              here: it only sets the expectation), and every normal request must succeed.
  drop        D clients (default 100), started over --drop-ramp seconds, open streams and drop them (half after 1-5 data chunks, half right
              after the response head, some with a TCP reset); then /metrics must come back to idle
              (sparrow_requests_running 0, sparrow_queue_depth 0, sparrow_kv_blocks{state="used"} 0) and
              the server's open descriptors (/proc/PID/fd) to their count before the check.

  bench/faults.py --spawn -m ../shared/models/stories260K.gguf all
  bench/faults.py --spawn -m ../shared/models/stories260K.gguf concurrent -c 200 -- --max-queue 256
  bench/faults.py --url http://127.0.0.1:8080 --pid $(pidof sparrow) drop

--spawn starts `SPARROW serve --port 0 [-m MODEL] EXTRA...` (EXTRA: the arguments after `--`), waits for
/health 200 and stops it with SIGTERM at the end (its exit status is reported). Without --spawn, the drop
check needs --pid for the descriptor count (else that part is skipped). The soft open-file limit is raised
to the hard one (500 sockets and more). Exit status 1 when a check failed.
"""
import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

DOCUMENTED_503 = {"too_many_connections", "model_loading", "server_shutting_down", "server_overloaded"}


# ---------------------------------------------------------------- server ----

class Server:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.proc = self.log = None
        self.pid = None


def spawn(args, extra):
    log = tempfile.NamedTemporaryFile(prefix="sparrow-faults-", suffix=".log", delete=False)
    cmd = [args.sparrow, "serve", "--port", "0", "-q"] + (["-m", args.model] if args.model else []) + extra
    print("starting: %s (log %s)" % (" ".join(cmd), log.name), file=sys.stderr)
    s = Server("http://127.0.0.1:0")
    s.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    s.log, s.pid = log.name, s.proc.pid
    deadline = time.monotonic() + 120
    while True:
        m = re.search(r"listening on http://[^ ]*:(\d+)", open(log.name, errors="replace").read())
        if m:
            s.port = int(m.group(1))
            st, _, _ = request(s, "GET", "/health", timeout=2)
            if st == 200:
                return s
        if s.proc.poll() is not None or time.monotonic() > deadline:
            tail = open(log.name, errors="replace").read()[-2000:]
            stop(s)
            raise SystemExit("the server did not start:\n" + tail)
        time.sleep(0.1)


def stop(s):
    """SIGTERM; returns the exit status (None when not ours)."""
    if not s.proc:
        return None
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(30)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
    return s.proc.returncode


# ----------------------------------------------------------- HTTP client ----

class Resp:
    def __init__(self):
        self.status, self.headers, self.body = None, {}, b""


def connect(s, timeout, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((s.host, s.port))
    return sock


def send_request(sock, s, method, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n" % (method, path, s.host, s.port)
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    sock.sendall(head.encode() + b"\r\n" + data)


class Reader:
    """Reads a response off a socket: the head, then the body (chunked or by length or to EOF)."""

    def __init__(self, sock, slow=False):
        self.sock, self.buf, self.slow = sock, b"", slow

    def more(self):
        if self.slow:
            time.sleep(0.1)
        d = self.sock.recv(1024 if self.slow else 65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def until(self, sep):
        while sep not in self.buf:
            self.more()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def take(self, n):
        while len(self.buf) < n:
            self.more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self, r):
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        r.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                r.headers[k.strip().lower()] = v.strip()


def read_response(sock, slow=False, on_piece=None):
    rd, r = Reader(sock, slow), Resp()
    rd.head(r)
    if r.headers.get("transfer-encoding", "").lower() == "chunked":
        body = []
        while True:
            size = int(rd.until(b"\r\n").strip().split(b";")[0], 16)
            if size == 0:
                rd.until(b"\r\n")
                break
            piece = rd.take(size)
            rd.take(2)
            body.append(piece)
            if on_piece and on_piece(piece, len(body)):
                break
        r.body = b"".join(body)
    elif "content-length" in r.headers:
        r.body = rd.take(int(r.headers["content-length"]))
    else:
        try:
            while True:
                rd.more()
        except EOFError:
            pass
        r.body = rd.buf
    return r


def request(s, method, path, body=None, timeout=10):
    """One request on a fresh connection: (status, headers, body) or (None, {}, error text)."""
    try:
        sock = connect(s, timeout)
        try:
            send_request(sock, s, method, path, body)
            r = read_response(sock)
            return r.status, r.headers, r.body
        finally:
            sock.close()
    except (OSError, EOFError, ValueError) as e:
        return None, {}, "%s: %s" % (type(e).__name__, e)


def metrics(s):
    st, _, body = request(s, "GET", "/metrics", timeout=10)
    if st != 200:
        return {}
    out = {}
    for ln in body.decode().splitlines():
        if ln and not ln.startswith("#"):
            k, v = ln.rsplit(" ", 1)
            out[k] = float(v)
    return out


def n_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ---------------------------------------------------------- health probe ----

def probe_main(host, port, interval, stop_evt, out_q):
    """A separate process: GET /health on a fresh connection every `interval` s until stop_evt."""
    s = Server("http://%s:%d" % (host, port))
    lat, bad = [], []
    while not stop_evt.is_set():
        t = time.monotonic()
        st, _, body = request(s, "GET", "/health", timeout=5)
        dt = time.monotonic() - t
        lat.append(dt)
        if st != 200:
            bad.append("%s %s" % (st, body[:100] if isinstance(body, bytes) else body))
        rest = interval - (time.monotonic() - t)
        if rest > 0:
            time.sleep(rest)
    out_q.put((lat, bad))


class HealthProbe:
    def __init__(self, s, interval=0.02):
        self.stop_evt = multiprocessing.Event()
        self.q = multiprocessing.Queue()
        self.p = multiprocessing.Process(target=probe_main, args=(s.host, s.port, interval, self.stop_evt, self.q))
        self.p.start()

    def finish(self):
        self.stop_evt.set()
        lat, bad = self.q.get(timeout=30)
        self.p.join(10)
        return lat, bad


# ------------------------------------------------------------ outcomes ----

def classify(kind, r, err):
    """complete / 429 / 503 / error: ... for one client."""
    if err:
        return "error: " + err
    try:
        if r.status == 200 and kind in ("stream", "chat", "slow"):
            text = r.body.decode()
            if not text.endswith("data: [DONE]\n\n"):
                return "error: stream without [DONE]"
            evs = [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: {")]
            if any("error" in e for e in evs):
                return "error: error event"
            if not any(c.get("finish_reason") for e in evs for c in e.get("choices", [])):
                return "error: no finish_reason"
            return "complete"
        if r.status == 200:
            j = json.loads(r.body)
            return "complete" if j["choices"][0]["finish_reason"] in ("stop", "length") else "error: finish"
        j = json.loads(r.body)
        code = j["error"]["code"]
        if r.status == 429 and code == "rate_limit_exceeded" and r.headers.get("retry-after"):
            return "429"
        if r.status == 503 and code in DOCUMENTED_503:
            return "503"
        return "error: HTTP %d %s" % (r.status, code)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return "error: HTTP %s unparsable (%s)" % (r.status, e)


def client_body(kind, i, max_tokens):
    prompt = "Once upon a time, story %d:" % i
    if kind == "chat":
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                                        "stream": True}
    return "/v1/completions", {"prompt": prompt, "max_tokens": max_tokens, "stream": kind != "whole"}


# ------------------------------------------------------------ the checks ----

def check_concurrent(args, s):
    n = args.clients
    kinds = ["stream", "whole", "chat", "slow"]
    results = [None] * n
    t_end = time.monotonic() + args.max_seconds

    def client(i):
        kind = kinds[i % len(kinds)]
        time.sleep(args.ramp * i / n)
        path, body = client_body(kind, i, args.max_tokens)
        t0 = time.monotonic()
        r, err = None, None
        try:
            sock = connect(s, args.timeout, rcvbuf=4096 if kind == "slow" else None)
            try:
                send_request(sock, s, "POST", path, body)
                r = read_response(sock, slow=kind == "slow")
            finally:
                sock.close()
        except (OSError, EOFError, ValueError) as e:
            err = "%s: %s" % (type(e).__name__, e)
        results[i] = (kind, classify(kind, r, err), time.monotonic() - t0)

    peak = {"sparrow_http_connections": 0, "sparrow_requests_running": 0, "sparrow_queue_depth": 0}
    sampling = threading.Event()

    def sampler():  # the server's own view of the load, every 100 ms
        while not sampling.is_set():
            m = metrics(s)
            for k in peak:
                peak[k] = max(peak[k], int(m.get(k, 0)))
            sampling.wait(0.1)

    probe = HealthProbe(s)
    time.sleep(0.2)
    samp = threading.Thread(target=sampler, daemon=True)
    samp.start()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, t_end - time.monotonic()))
    wall = time.monotonic() - t0
    sampling.set()
    samp.join(10)
    lat, bad = probe.finish()
    outcomes = {}
    for i, res in enumerate(results):
        key = res[1] if res else "error: unfinished at --max-seconds"
        outcomes[key] = outcomes.get(key, 0) + 1
    by_kind = {}
    for res in results:
        if res:
            by_kind.setdefault(res[0], {}).setdefault(res[1], 0)
            by_kind[res[0]][res[1]] += 1
    ms = [x * 1000 for x in lat]
    p99 = pct(ms, 99)
    ok = all(k in ("complete", "429", "503") for k in outcomes) and not bad and p99 < args.health_p99_ms
    print("\n== concurrent: %d clients (%s), started over %.1f s, max_tokens %d" % (n, "/".join(kinds), args.ramp, args.max_tokens))
    print("   wall %.1f s; outcomes: %s" % (wall, ", ".join("%s %d" % kv for kv in sorted(outcomes.items()))))
    print("   peak seen in /metrics: %d open connections, %d sequences running, %d queued"
          % (peak["sparrow_http_connections"], peak["sparrow_requests_running"], peak["sparrow_queue_depth"]))
    for k, v in sorted(by_kind.items()):
        print("     %-7s %s" % (k, ", ".join("%s %d" % kv for kv in sorted(v.items()))))
    print("   /health: %d probes, %d not 200; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms (limit p99 < %g ms)"
          % (len(ms), len(bad), pct(ms, 50), p99, max(ms) if ms else float("nan"), args.health_p99_ms))
    if bad:
        print("   bad probes: %s" % bad[:5])
    print("   %s" % ("PASS" if ok else "FAIL"))
    return ok, {"clients": n, "wall_s": wall, "outcomes": outcomes, "peak": peak, "by_kind": by_kind, "health_probes": len(ms),
                "health_bad": len(bad), "health_p50_ms": pct(ms, 50), "health_p99_ms": p99,
                "health_max_ms": max(ms) if ms else None}


def check_slowloris(args, s):
    n = args.slow_conns
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n"
            b"X-Padding: " + b"a" * 4000)
    sel = selectors.DefaultSelector()
    socks, opened, closed = [], {}, {}
    t_start = time.monotonic()
    for i in range(n):
        try:
            sk = socket.create_connection((s.host, s.port), timeout=10)
        except OSError as e:
            print("   connection %d failed: %s" % (i, e))
            break
        sk.setblocking(False)
        socks.append(sk)
        opened[sk] = time.monotonic()
        sel.register(sk, selectors.EVENT_READ, i)
    t_open = time.monotonic() - t_start
    normal_lat, normal_bad = [], []
    stop_evt = threading.Event()

    def normal():
        while not stop_evt.is_set():
            for method, path, body in (("GET", "/health", None),
                                       ("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 8})):
                t = time.monotonic()
                st, _, b = request(s, method, path, body, timeout=10)
                normal_lat.append(time.monotonic() - t)
                if st != 200:
                    normal_bad.append("%s %s" % (st, b[:120]))
            stop_evt.wait(0.25)

    th = threading.Thread(target=normal, daemon=True)
    th.start()
    pos, t_next = 0, time.monotonic()
    limit = args.read_timeout + 5
    deadline = time.monotonic() + min(args.max_seconds, limit + 10)
    while len(closed) < len(socks) and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= t_next:  # one more byte on every open socket
            b = head[pos:pos + 1] if pos < len(head) else b"a"
            for sk in socks:
                if sk in closed:
                    continue
                try:
                    sk.send(b)
                except BlockingIOError:
                    pass
                except OSError:
                    closed[sk] = now - opened[sk]
                    sel.unregister(sk)
            pos += 1
            t_next = now + args.trickle
        for key, _ in sel.select(timeout=max(0.0, min(0.05, t_next - time.monotonic()))):
            sk = key.fileobj
            try:
                d = sk.recv(4096)
                if d:
                    continue  # an answer (e.g. 503 past the connection limit): wait for the close
            except BlockingIOError:
                continue
            except OSError:
                pass
            closed[sk] = time.monotonic() - opened[sk]
            sel.unregister(sk)
    stop_evt.set()
    th.join(15)
    for sk in socks:
        sk.close()
    ts = sorted(closed.values())
    ms = [x * 1000 for x in normal_lat]
    m = metrics(s)
    ok = (len(socks) == n and len(ts) == n and ts[-1] <= limit and not normal_bad and len(ms) > 0)
    print("\n== slowloris: %d connections trickling a request head (1 byte each every %.2f s), opened in %.2f s"
          % (n, args.trickle, t_open))
    if ts:
        print("   closed by the server: %d/%d, after %.2f s (first) / %.2f s (median) / %.2f s (last); expected <= %.0f s"
              % (len(ts), n, ts[0], pct(ts, 50), ts[-1], limit))
    print("   normal requests meanwhile: %d, %d failed; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(ms), len(normal_bad), pct(ms, 50), pct(ms, 99), max(ms) if ms else float("nan")))
    if normal_bad:
        print("   failures: %s" % normal_bad[:5])
    print("   server: sparrow_http_read_timeouts_total %s" % m.get("sparrow_http_read_timeouts_total"))
    print("   %s" % ("PASS" if ok else "FAIL"))
    return ok, {"connections": n, "opened_s": t_open, "closed": len(ts), "close_first_s": ts[0] if ts else None,
                "close_median_s": pct(ts, 50) if ts else None, "close_last_s": ts[-1] if ts else None,
                "normal_requests": len(ms), "normal_failed": len(normal_bad), "normal_p99_ms": pct(ms, 99),
                "read_timeouts_metric": m.get("sparrow_http_read_timeouts_total")}


def check_drop(args, s):
    n = args.drop_clients
    request(s, "POST", "/v1/completions", {"prompt": "warm up", "max_tokens": 4})
    time.sleep(0.5)
    base_fds = n_fds(s.pid) if s.pid else None
    seen = {"after_chunks": 0, "after_head": 0, "refused": 0, "finished": 0, "error": 0}
    lock = threading.Lock()

    def client(i):
        rnd = random.Random(i)
        mode = "after_chunks" if i % 2 == 0 else "after_head"
        k = rnd.randint(1, 5)
        time.sleep(args.drop_ramp * i / n)
        try:
            sock = connect(s, args.timeout)
            if i % 5 == 0:  # drop with a TCP reset instead of a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            path, body = client_body("stream", i, args.drop_tokens)
            body["ignore_eos"] = True
            send_request(sock, s, "POST", path, body)
            rd, r = Reader(sock), Resp()
            rd.head(r)
            if r.status != 200:
                what = "refused"
            elif mode == "after_head":
                what = mode
            else:
                got = 0
                while got < k:  # k chunks of data
                    ln = rd.until(b"\r\n")
                    size = int(ln.strip().split(b";")[0], 16)
                    if size == 0:
                        break
                    rd.take(size + 2)
                    got += 1
                what = mode if got >= k else "finished"
            sock.close()
        except (OSError, EOFError, ValueError):
            what = "error"
        with lock:
            seen[what] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.max_seconds)
    t_dropped = time.monotonic()
    idle_after, m = None, {}
    while time.monotonic() - t_dropped < 30:
        m = metrics(s)
        if (m.get("sparrow_requests_running") == 0 and m.get("sparrow_queue_depth") == 0
                and m.get('sparrow_kv_blocks{state="used"}') == 0 and m.get("sparrow_http_requests_active", 1) <= 1):
            idle_after = time.monotonic() - t_dropped
            break
        time.sleep(0.1)
    time.sleep(0.5)  # our last /metrics connection closes
    fds = None
    for _ in range(20):
        fds = n_fds(s.pid) if s.pid else None
        if fds is None or base_fds is None or fds <= base_fds:
            break
        time.sleep(0.25)
    ok = idle_after is not None and seen["error"] == 0 and (base_fds is None or fds == base_fds)
    print("\n== drop: %d streaming clients (max_tokens %d) dropped: %d after 1-5 chunks, %d after the head "
          "(every 5th with a reset); %d refused, %d finished before the drop, %d errors; %.1f s"
          % (n, args.drop_tokens, seen["after_chunks"], seen["after_head"], seen["refused"], seen["finished"], seen["error"],
             t_dropped - t0))
    print("   idle again (running 0, queue 0, KV blocks used 0) %s"
          % ("after %.2f s" % idle_after if idle_after is not None else "NOT within 30 s: %s" %
             {k: v for k, v in m.items() if "running" in k or "queue" in k or "kv_blocks{" in k}))
    print("   KV blocks: used %s, cached %s, free %s; cancelled sequences %s"
          % (m.get('sparrow_kv_blocks{state="used"}'), m.get('sparrow_kv_blocks{state="cached"}'),
             m.get('sparrow_kv_blocks{state="free"}'), m.get('sparrow_sequences_total{outcome="cancelled"}')))
    print("   open descriptors of the server: %s before, %s after" % (base_fds, fds) if base_fds is not None
          else "   open descriptors: no --pid, not checked")
    print("   %s" % ("PASS" if ok else "FAIL"))
    return ok, {"clients": n, "seen": seen, "idle_after_s": idle_after, "fds_before": base_fds, "fds_after": fds,
                "kv_used": m.get('sparrow_kv_blocks{state="used"}')}


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="arguments after -- go to `sparrow serve` "
                                 "(with --spawn)", formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", nargs="?", default="all", choices=["all", "concurrent", "slowloris", "drop"])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="the server (without --spawn)")
    ap.add_argument("--pid", type=int, help="the server's process id (without --spawn), for the descriptor count")
    ap.add_argument("--spawn", action="store_true", help="start `sparrow serve` and stop it at the end")
    ap.add_argument("--sparrow", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sparrow"))
    ap.add_argument("-m", "--model", help="GGUF for --spawn (default: the server's tiny random model)")
    ap.add_argument("-c", "--clients", type=int, default=200, help="concurrent: clients (default 200)")
    ap.add_argument("--ramp", type=float, default=0.5, help="concurrent: seconds over which clients start (default 0.5)")
    ap.add_argument("-n", "--max-tokens", type=int, default=256, help="concurrent: max_tokens (default 256)")
    ap.add_argument("--health-p99-ms", type=float, default=100, help="concurrent: /health p99 limit (default 100)")
    ap.add_argument("--slow-conns", type=int, default=500, help="slowloris: connections (default 500)")
    ap.add_argument("--trickle", type=float, default=0.5, help="slowloris: seconds between bytes (default 0.5)")
    ap.add_argument("--read-timeout", type=float, default=15, help="slowloris: the server's --read-timeout (default 15)")
    ap.add_argument("--drop-clients", type=int, default=100, help="drop: clients (default 100)")
    ap.add_argument("--drop-ramp", type=float, default=2.0, help="drop: seconds over which clients start (default 2)")
    ap.add_argument("--drop-tokens", type=int, default=400, help="drop: max_tokens of the dropped streams (default 400)")
    ap.add_argument("--timeout", type=float, default=60, help="socket timeout, seconds (default 60)")
    ap.add_argument("--max-seconds", type=float, default=120, help="cap per check, seconds (default 120)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON ('-': stdout)")
    args = ap.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(args.slow_conns, args.clients, args.drop_clients) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)) if hard != resource.RLIM_INFINITY else want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < want:
        print("warning: open-file limit %d < %d: some connections may fail" % (soft, want), file=sys.stderr)

    s = spawn(args, extra) if args.spawn else Server(args.url)
    if not args.spawn:
        s.pid = args.pid
    checks = ["concurrent", "slowloris", "drop"] if args.check == "all" else [args.check]
    results, ok_all = {}, True
    try:
        for c in checks:
            ok, fig = {"concurrent": check_concurrent, "slowloris": check_slowloris, "drop": check_drop}[c](args, s)
            results[c] = dict(fig, passed=ok)
            ok_all &= ok
            if c != checks[-1]:
                time.sleep(1)
    finally:
        rc = stop(s)
        if rc is not None:
            print("\nserver stopped with SIGTERM: exit status %d%s" % (rc, "" if rc == 0 else " (FAIL)"))
            ok_all &= rc == 0
            results["exit_status"] = rc
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            open(args.json, "w").write(text + "\n")
    print("\n%s" % ("ALL PASSED" if ok_all else "FAILED"))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
