#!/usr/bin/env python3
"""tests/e2e/range_server.py — a tiny HTTP file server for the pull tests, on 127.0.0.1.

usage: range_server.py FILE PORTFILE [--no-range] [--cut-first N] [--sha256 HEX]
Serves FILE at any path. With Range support (unless --no-range) it answers 206 with Content-Range.
--cut-first N: the first request sends only N bytes of its body and then drops the connection
(a download interrupted halfway). --sha256 adds Hugging Face's X-Linked-ETag header. Writes the port
it listens on into PORTFILE, logs each request's Range header to stderr."""
import http.server, os, re, sys, threading

path, portfile = sys.argv[1], sys.argv[2]
no_range = "--no-range" in sys.argv
cut = int(sys.argv[sys.argv.index("--cut-first") + 1]) if "--cut-first" in sys.argv else None
sha = sys.argv[sys.argv.index("--sha256") + 1] if "--sha256" in sys.argv else None
data = open(path, "rb").read()
state = {"requests": 0}
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        with lock:
            state["requests"] += 1
            first = state["requests"] == 1
        rng = self.headers.get("Range")
        sys.stderr.write("GET %s range=%s\n" % (self.path, rng)); sys.stderr.flush()
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and not no_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416); self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0"); self.end_headers(); return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if sha: self.send_header("X-Linked-ETag", '"%s"' % sha)
        self.end_headers()
        if cut is not None and first:
            self.wfile.write(body[:cut]); self.wfile.flush()
            self.connection.shutdown(2); self.close_connection = True
            return
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f: f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
