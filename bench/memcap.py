#!/usr/bin/python3
"""bench/memcap.py — sparrow under a real DRAM cap (a cgroup v1 memory limit), and warm starts.

  memcap.py cap   MODEL --fraction 0.6 --mem-limit 300M [--tokens 32] [--ctx 2048]
      Runs `sparrow serve` once without a cap (the reference text and tokens), then inside a new
      memory cgroup limited to FRACTION x the model file's size with --mem-limit: checks it loads,
      answers with exactly the same tokens, reports decode tokens/s, the peak RssAnon against
      --mem-limit, the cgroup's peak usage and whether anything was OOM-killed.
      Needs root and a writable /sys/fs/cgroup/memory (cgroup v1).
  memcap.py warm  MODEL
      Time from process start to /health 200: first start (the weight cache is built) and second
      start (the cache is mapped), with a fresh SPARROW_CACHE_DIR.

Loopback only; every wait is bounded. Python 3 standard library only.
"""
import argparse, http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CG = "/sys/fs/cgroup/memory"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def health(port, timeout=0.5):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/health")
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0


def start(args, port, env, cgroup=None, log=None):
    cmd = [args.sparrow, "serve", "-m", args.model, "--port", str(port), "--ctx", str(args.ctx), "-q"] + args.extra
    pre = None
    if cgroup:
        def pre():  # join the cgroup before exec, so the whole process lives in it
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, preexec_fn=pre)


def wait_ready(proc, port, limit):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            return None
        if health(port, 0.2) == 200:
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def generate(port, n):
    """Greedy completion, streamed: (text, token list, decode tokens/s after the first token)."""
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": n, "temperature": 0, "ignore_eos": True,
                       "logprobs": 1, "stream": True, "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("status %d: %s" % (r.status, r.read()[:300]))
    text, toks, times = "", [], []
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])
        for choice in ch.get("choices", []):
            text += choice.get("text", "")
            lp = choice.get("logprobs") or {}
            got = lp.get("tokens") or []
            toks += got
            if got:
                times.append(time.monotonic())
    tps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return text, toks, tps


def rss_anon(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak RssAnon of a process, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_anon(self.pid))
            time.sleep(0.05)


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1].upper()]) if s[-1].upper() in mult else int(s)


def cache_files(env):
    d = env.get("SPARROW_CACHE_DIR", "")
    return [os.path.join(d, n) for n in os.listdir(d) if n.endswith(".spw")] if os.path.isdir(d) else []


def evict_page_cache(paths):
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def cg_read(cg, name):
    try:
        with open(os.path.join(cg, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def run_cap(args, env):
    size = os.path.getsize(args.model)
    limit = int(size * args.fraction)
    mem_limit = size_arg(args.mem_limit)
    port = free_port()
    with tempfile.TemporaryFile() as log:
        p = start(args, port, env, log=log)
        try:
            if wait_ready(p, port, 600) is None:
                log.seek(0)
                sys.exit("uncapped server did not start: " + log.read().decode()[-2000:])
            ref_text, ref_toks, ref_tps = generate(port, args.tokens)
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(30)
    print("uncapped: %d tokens, decode %.1f t/s" % (len(ref_toks), ref_tps))
    cg = os.path.join(CG, "sparrow-memcap-%d" % os.getpid())
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))
        # cgroup v1 charges a page-cache page to the group that first read it: evict the model's and
        # the weight cache's pages (left by the uncapped run), so the capped server must read them
        # again, charged to its own cgroup, under its limit
        evicted = evict_page_cache([args.model] + cache_files(env))
        args.extra = args.extra + ["--mem-limit", args.mem_limit]
        with tempfile.TemporaryFile() as log:
            p = start(args, port, env, cgroup=cg, log=log)
            s = Sampler(p.pid)
            s.start()
            try:
                t_ready = wait_ready(p, port, 900)
                if t_ready is None:
                    log.seek(0)
                    print("capped server did not start (rc %s): %s" % (p.poll(), log.read().decode()[-2000:]))
                    return 1
                text, toks, tps = generate(port, args.tokens)
            finally:
                s.stop = True
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
            oom = cg_read(cg, "memory.oom_control")
            peak_cg = int(cg_read(cg, "memory.max_usage_in_bytes") or 0)
            failcnt = cg_read(cg, "memory.failcnt")
    finally:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    killed = "oom_kill 0" not in oom and "oom_kill" in oom
    same = toks == ref_toks and text == ref_text
    print("cap %.0f%% of %.0f MiB = %.0f MiB, --mem-limit %s: ready in %.1f s, %d tokens, decode %.2f t/s" %
          (100 * args.fraction, size / 2**20, limit / 2**20, args.mem_limit, t_ready, len(toks), tps))
    print("  page cache evicted before the capped start: %.0f MiB (model + weight cache)" % (evicted / 2**20))
    print("  same tokens as uncapped: %s" % ("yes" if same else "NO"))
    print("  peak RssAnon %.1f MiB (limit %.0f MiB): %s" % (s.peak / 2**20, mem_limit / 2**20,
                                                           "within" if s.peak <= mem_limit else "EXCEEDED"))
    print("  cgroup peak usage %.1f MiB, failcnt %s, OOM-killed: %s" % (peak_cg / 2**20, failcnt, "YES" if killed else "no"))
    return 0 if same and s.peak <= mem_limit and not killed else 1


def run_warm(args, env):
    cache = tempfile.mkdtemp(prefix="sparrow-warm-")
    env = dict(env, SPARROW_CACHE_DIR=cache)
    try:
        times = []
        for i in range(2):
            port = free_port()
            p = start(args, port, env, log=subprocess.DEVNULL)
            try:
                t = wait_ready(p, port, 900)
            finally:
                p.send_signal(signal.SIGINT)
                p.wait(60)
            if t is None:
                sys.exit("start %d failed" % (i + 1))
            times.append(t)
        print("start to /health 200: first (builds the weight cache) %.2f s, second (maps it) %.2f s, ratio %.3f" %
              (times[0], times[1], times[1] / times[0]))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["cap", "warm"])
    ap.add_argument("model")
    ap.add_argument("--sparrow", default=os.path.join(ROOT, "build", "sparrow"))
    ap.add_argument("--fraction", type=float, default=0.6)
    ap.add_argument("--mem-limit", default="300M")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=2048)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = extra  # more `sparrow serve` arguments, after --
    env = dict(os.environ)
    env.setdefault("SPARROW_CACHE_DIR", tempfile.mkdtemp(prefix="sparrow-memcap-"))
    sys.exit(run_cap(args, env) if args.mode == "cap" else run_warm(args, env) or 0)


if __name__ == "__main__":
    main()
