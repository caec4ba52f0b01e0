/* tests/unit/test_http.c — server/http: a real sp_http on 127.0.0.1 (ephemeral port) run in a thread
 * with a test handler, driven over real sockets by a small HTTP/1.1 client written here (it parses
 * Content-Length and chunked answers, so keep-alive and pipelining can be checked byte for byte).
 * Covers routing and bodies, the layer's own 413/401/CORS answers, async answers woken from other
 * threads, streams (exact bytes, loop-thread CPU while idle), clients leaving mid-stream, keep-alive,
 * the connection limit, timeouts, stop with open streams, odd requests and 32 concurrent clients. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- test jobs: async work done by another thread, woken into the loop ---- */

enum { JOB_WHOLE, JOB_STREAM50, JOB_IDLE, JOB_FOREVER, JOB_HANG };

typedef struct job {
    sp_http_conn *c;
    int mode;
    pthread_t th;
    pthread_mutex_t mu;
    char *pending;
    size_t plen, pcap;
    bool done;
    atomic_int stop;
    bool begun;
    bool closed;
    struct job *next;
} job;

static struct {
    pthread_mutex_t mu;
    job *jobs; /* freed at server stop, so a late pump would be seen, not crash */
    atomic_int closed_calls, closed_gone, pumps_after_closed, pumps;
    atomic_llong closed_at_ns;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void job_append(job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    if (j->plen + n > j->pcap) {
        j->pcap = (j->plen + n) * 2 + 64;
        j->pending = realloc(j->pending, j->pcap);
    }
    memcpy(j->pending + j->plen, s, n);
    j->plen += n;
    pthread_mutex_unlock(&j->mu);
    sp_http_wake(j->c);
}

static void job_finish(job *j) {
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_mutex_unlock(&j->mu);
    sp_http_wake(j->c);
}

static void *job_thread(void *a) {
    job *j = a;
    char buf[128];
    switch (j->mode) {
    case JOB_WHOLE:
        sleep_ms(200);
        job_finish(j);
        break;
    case JOB_STREAM50:
        for (int i = 0; i < 50 && !atomic_load(&j->stop); i++) {
            int n = snprintf(buf, sizeof buf, "data: piece %02d\n\n", i);
            job_append(j, buf, (size_t)n);
            sleep_ms(20);
        }
        job_finish(j);
        break;
    case JOB_IDLE:
        job_append(j, "first|", 6);
        for (int i = 0; i < 100 && !atomic_load(&j->stop); i++) sleep_ms(10);
        job_append(j, "second", 6);
        job_finish(j);
        break;
    case JOB_FOREVER:
        memset(buf, 'x', 100);
        while (!atomic_load(&j->stop)) {
            job_append(j, buf, 100);
            sleep_ms(10);
        }
        break;
    case JOB_HANG:
        while (!atomic_load(&j->stop)) sleep_ms(5);
        break;
    }
    return NULL;
}

static void job_pump(void *arg, sp_http_conn *c) {
    job *j = arg;
    atomic_fetch_add(&g.pumps, 1);
    if (j->closed) {
        atomic_fetch_add(&g.pumps_after_closed, 1);
        return;
    }
    pthread_mutex_lock(&j->mu);
    char *data = j->pending;
    size_t n = j->plen;
    bool done = j->done;
    j->pending = NULL;
    j->plen = j->pcap = 0;
    pthread_mutex_unlock(&j->mu);
    if (j->mode == JOB_WHOLE) {
        if (done) sp_http_respond(c, 200, "text/plain", "late answer", 11);
    } else {
        if (!j->begun) {
            sp_http_stream_begin(c, 200, "text/event-stream");
            j->begun = true;
        }
        if (n) sp_http_stream_write(c, data, n);
        if (done) {
            sp_http_log_note(c, "tokens 1/50");
            sp_http_stream_end(c);
        }
    }
    free(data);
}

static void job_closed(void *arg, bool gone) {
    job *j = arg;
    atomic_store(&j->stop, 1);
    pthread_join(j->th, NULL); /* no more wakes after this */
    j->closed = true;
    atomic_fetch_add(&g.closed_calls, 1);
    if (gone) atomic_fetch_add(&g.closed_gone, 1);
    atomic_store(&g.closed_at_ns, mono_ns());
}

static void job_start(sp_http_conn *c, int mode) {
    job *j = calloc(1, sizeof *j);
    j->c = c;
    j->mode = mode;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_lock(&g.mu);
    j->next = g.jobs;
    g.jobs = j;
    pthread_mutex_unlock(&g.mu);
    sp_http_set_async(c, job_pump, job_closed, j);
    pthread_create(&j->th, NULL, job_thread, j);
}

static void jobs_free(void) {
    pthread_mutex_lock(&g.mu);
    while (g.jobs) {
        job *j = g.jobs;
        g.jobs = j->next;
        pthread_mutex_destroy(&j->mu);
        free(j->pending);
        free(j);
    }
    pthread_mutex_unlock(&g.mu);
    atomic_store(&g.closed_calls, 0);
    atomic_store(&g.closed_gone, 0);
    atomic_store(&g.pumps_after_closed, 0);
    atomic_store(&g.pumps, 0);
}

/* ---- the test handler ---- */

static void handler(void *ud, sp_http_conn *c, const sp_http_request *req) {
    const char *p = req->path;
    if (strcmp(p, "/hello") == 0 && strcmp(req->method, "GET") == 0) {
        sp_http_respond(c, 200, "text/plain", "hello", 5);
    } else if (strcmp(p, "/health") == 0) {
        sp_http_respond(c, 200, "application/json", "{\"ok\":true}", 11);
    } else if (strcmp(p, "/echo") == 0 && strcmp(req->method, "POST") == 0) {
        sp_http_add_header(c, "X-Content-Type", req->content_type ? req->content_type : "none");
        char len[32];
        snprintf(len, sizeof len, "%zu", req->body_len);
        sp_http_add_header(c, "X-Body-Len", len);
        cr_assert_eq(req->body[req->body_len], 0);
        sp_http_respond(c, 200, "application/octet-stream", req->body, req->body_len);
    } else if (strcmp(p, "/async") == 0) {
        job_start(c, JOB_WHOLE);
    } else if (strcmp(p, "/stream50") == 0) {
        job_start(c, JOB_STREAM50);
    } else if (strcmp(p, "/idle") == 0) {
        job_start(c, JOB_IDLE);
    } else if (strcmp(p, "/forever") == 0) {
        job_start(c, JOB_FOREVER);
    } else if (strcmp(p, "/hang") == 0) {
        job_start(c, JOB_HANG);
    } else if (strcmp(p, "/sync-stream") == 0) {
        sp_http_stream_begin(c, 200, "text/plain");
        sp_http_stream_write(c, "abc", 3);
        sp_http_stream_write(c, "def", 3);
        sp_http_stream_end(c);
    } else if (strcmp(p, "/args") == 0) {
        const char *ua = sp_http_header(c, "user-agent"), *q = sp_http_query(c, "q");
        char out[256];
        int n = snprintf(out, sizeof out, "%s|%s|%s", ua ? ua : "-", q ? q : "-",
                         sp_http_query(c, "nope") ? "?" : "-");
        sp_http_respond(c, 200, "text/plain", out, (size_t)n);
    } else if (strcmp(p, "/silent") == 0) {
        /* a buggy handler: neither answers nor goes async */
    } else if (strcmp(req->method, "OPTIONS") == 0) {
        sp_http_add_header(c, "Allow", "GET, POST");
        sp_http_respond(c, 405, "application/json", "{}", 2);
    } else {
        sp_http_respond(c, 404, "application/json", "{\"error\":\"nf\"}", 14);
    }
}

/* on_done: counts per status class (loop thread only, read after the server stopped) */
static struct {
    int n, n200, n0;
} done_counts;

static void on_done(void *ud, const char *method, const char *path, int status) {
    done_counts.n++;
    done_counts.n200 += status == 200;
    done_counts.n0 += status == 0;
}

/* ---- server in a thread ---- */

typedef struct {
    sp_http *h;
    pthread_t th;
    int port;
    atomic_int returned;
} srv;

static void *srv_main(void *a) {
    srv *s = a;
    sp_http_run(s->h);
    atomic_store(&s->returned, 1);
    return NULL;
}

static sp_http_opts base_opts(void) {
    sp_http_opts o = {0};
    o.host = "127.0.0.1";
    o.port = 0;
    o.handler = handler;
    return o;
}

static srv *srv_start(const sp_http_opts *o) {
    srv *s = calloc(1, sizeof *s);
    char err[256] = "";
    s->h = sp_http_new(o, err, sizeof err);
    cr_assert_not_null(s->h, "sp_http_new: %s", err);
    s->port = sp_http_port(s->h);
    cr_assert(s->port > 0 && s->port < 65536);
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

static void srv_stop(srv *s) {
    sp_http_stop(s->h);
    pthread_join(s->th, NULL);
    sp_http_free(s->h);
    free(s);
    jobs_free();
}

/* ---- a small HTTP/1.1 client ---- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} client;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
    bool chunked;
} resp;

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static client *cl_open(int port) {
    client *c = calloc(1, sizeof *c);
    c->fd = connect_port(port);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    return c;
}

static void cl_close(client *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    free(c);
}

static void cl_timeout(client *c, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void cl_send(client *c, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        data += w;
        n -= (size_t)w;
    }
}

static void cl_sends(client *c, const char *s) { cl_send(c, s, strlen(s)); }

/* Make at least n bytes available; false on EOF, error or timeout. */
static bool cl_need(client *c, size_t n) {
    while (c->len < n) {
        if (c->len == c->cap) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r <= 0) return false;
        c->len += (size_t)r;
    }
    return true;
}

static void cl_consume(client *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Offset just past the next "\r\n" (or "\r\n\r\n" if `blank`), reading as needed; 0 on failure. */
static size_t cl_find(client *c, const char *term) {
    size_t tl = strlen(term);
    for (;;) {
        for (size_t i = 0; i + tl <= c->len; i++)
            if (memcmp(c->buf + i, term, tl) == 0) return i + tl;
        if (!cl_need(c, c->len + 1)) return 0;
    }
}

static const char *resp_header(const resp *r, const char *name) {
    static _Thread_local char val[1024];
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2]) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= sizeof val) n = sizeof val - 1;
            memcpy(val, v, n);
            val[n] = 0;
            return val;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static void body_add(resp *r, const char *d, size_t n) {
    r->body = realloc(r->body, r->body_len + n + 1);
    memcpy(r->body + r->body_len, d, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
}

/* Read one response (status line, headers, body by length / chunks / EOF). false if incomplete. */
static bool cl_read(client *c, resp *r, bool head_request) {
    memset(r, 0, sizeof *r);
    r->body = calloc(1, 1);
    size_t h = cl_find(c, "\r\n\r\n");
    if (!h) return false;
    size_t hn = h < sizeof r->head ? h : sizeof r->head - 1;
    memcpy(r->head, c->buf, hn);
    r->head[hn] = 0;
    cl_consume(c, h);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return false;
    if (head_request || r->status == 204 || r->status == 304) return true;
    const char *te = resp_header(r, "Transfer-Encoding");
    const char *cl = resp_header(r, "Content-Length");
    if (te && strcasecmp(te, "chunked") == 0) {
        r->chunked = true;
        for (;;) {
            size_t l = cl_find(c, "\r\n");
            if (!l) return false;
            size_t n = strtoul(c->buf, NULL, 16);
            cl_consume(c, l);
            if (n == 0) {
                /* trailers until an empty line */
                for (;;) {
                    size_t t = cl_find(c, "\r\n");
                    if (!t) return false;
                    cl_consume(c, t);
                    if (t == 2) return true;
                }
            }
            if (!cl_need(c, n + 2)) return false;
            body_add(r, c->buf, n);
            cl_consume(c, n + 2);
        }
    }
    if (cl) {
        size_t n = strtoul(cl, NULL, 10);
        if (!cl_need(c, n)) return false;
        body_add(r, c->buf, n);
        cl_consume(c, n);
        return true;
    }
    while (cl_need(c, c->len + 1)) {
    }
    body_add(r, c->buf, c->len);
    cl_consume(c, c->len);
    return true;
}

static void resp_free(resp *r) { free(r->body); }

/* One request on a fresh connection. */
static resp request(int port, const char *raw) {
    client *c = cl_open(port);
    cl_sends(c, raw);
    resp r;
    bool ok = cl_read(c, &r, strncmp(raw, "HEAD ", 5) == 0);
    cr_assert(ok, "no complete response to: %.60s", raw);
    cl_close(c);
    return r;
}

static resp get(int port, const char *path, const char *extra_headers) {
    char raw[2048];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, extra_headers ? extra_headers : "");
    return request(port, raw);
}

/* EOF (or reset) within ms milliseconds? */
static bool cl_sees_eof(client *c, int ms) {
    cl_timeout(c, ms);
    double t0 = now_s();
    for (;;) {
        char b[4096];
        ssize_t r = recv(c->fd, b, sizeof b, 0);
        if (r == 0) return true;
        if (r < 0) return errno == ECONNRESET;
        if (now_s() - t0 > ms / 1000.0) return false;
    }
}

static double thread_cpu_s(pthread_t th) {
    clockid_t cid;
    cr_assert_eq(pthread_getcpuclockid(th, &cid), 0);
    struct timespec ts;
    clock_gettime(cid, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *kErr413 =
    "{\"error\":{\"message\":\"request body exceeds 1024 bytes\",\"type\":\"invalid_request_error\","
    "\"param\":null,\"code\":\"request_too_large\"}}";

/* ------------------------------------------------------------------ tests */

Test(http, get_and_post_routing) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    resp r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello");
    cr_assert_str_eq(resp_header(&r, "Content-Type"), "text/plain");
    resp_free(&r);

    r = get(s->port, "/hello?x=1&y=2", NULL); /* the query string is not part of the path */
    cr_assert_eq(r.status, 200);
    resp_free(&r);

    r = get(s->port, "/nowhere", NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(resp_header(&r, "Content-Type"), "application/json");
    resp_free(&r);

    r = request(s->port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 13\r\n\r\n{\"a\":[1,2,3]}");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"a\":[1,2,3]}");
    cr_assert_str_eq(resp_header(&r, "X-Content-Type"), "application/json");
    resp_free(&r);

    /* no Content-Type, empty body */
    r = request(s->port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    cr_assert_str_eq(resp_header(&r, "X-Content-Type"), "none");
    resp_free(&r);

    /* chunked request body */
    r = request(s->port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello world");
    resp_free(&r);

    /* a whole response built synchronously as a stream */
    r = get(s->port, "/sync-stream", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(r.chunked);
    cr_assert_str_eq(r.body, "abcdef");
    resp_free(&r);

    r = get(s->port, "/args?q=a%20b&z=1", "User-Agent: tester/1\r\n");
    cr_assert_str_eq(r.body, "tester/1|a b|-");
    resp_free(&r);

    /* a handler that does not answer: 500, not a hang */
    r = get(s->port, "/silent", NULL);
    cr_assert_eq(r.status, 500);
    resp_free(&r);

    /* HEAD */
    r = request(s->port, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(r.status, 404); /* our handler routes GET only */
    resp_free(&r);
    srv_stop(s);
}

Test(http, binary_body_exact) {
    sp_http_opts o = base_opts();
    o.max_body = 1 << 20;
    srv *s = srv_start(&o);
    size_t n = 300000;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++) body[i] = (char)(i * 7 + 3);
    char head[256];
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    client *c = cl_open(s->port);
    cl_sends(c, head);
    cl_send(c, body, n);
    resp r;
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, n);
    cr_assert_eq(memcmp(r.body, body, n), 0);
    resp_free(&r);
    cl_close(c);
    free(body);
    srv_stop(s);
}

Test(http, body_too_large) {
    sp_http_opts o = base_opts();
    o.max_body = 1024;
    srv *s = srv_start(&o);
    /* declared too large: answered from the headers alone */
    client *c = cl_open(s->port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n");
    resp r;
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 413);
    cr_assert_str_eq(r.body, kErr413);
    cr_assert_str_eq(resp_header(&r, "Content-Type"), "application/json");
    resp_free(&r);
    cl_close(c);

    /* chunked, no length: cut off once it passes the limit */
    c = cl_open(s->port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[600];
    memset(chunk, 'z', sizeof chunk);
    char hdr[16];
    for (int i = 0; i < 2; i++) {
        snprintf(hdr, sizeof hdr, "%zx\r\n", sizeof chunk);
        cl_sends(c, hdr);
        cl_send(c, chunk, sizeof chunk);
        cl_sends(c, "\r\n");
    }
    cl_sends(c, "0\r\n\r\n");
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 413);
    cr_assert_str_eq(r.body, kErr413);
    resp_free(&r);
    /* the body was read to its end: the connection goes on */
    cl_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cl_close(c);

    /* chunked and endless: dropped after a bounded amount */
    c = cl_open(s->port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char big[65536];
    memset(big, 'y', sizeof big);
    bool cut = false;
    for (int i = 0; i < 64 && !cut; i++) {
        snprintf(hdr, sizeof hdr, "%zx\r\n", sizeof big);
        if (send(c->fd, hdr, strlen(hdr), MSG_NOSIGNAL) < 0) cut = true;
        for (size_t off = 0; off < sizeof big && !cut;) {
            ssize_t w = send(c->fd, big + off, sizeof big - off, MSG_NOSIGNAL);
            if (w <= 0) cut = true;
            else off += (size_t)w;
        }
        if (!cut && send(c->fd, "\r\n", 2, MSG_NOSIGNAL) < 0) cut = true;
    }
    cr_assert(cut || cl_sees_eof(c, 2000), "4 MiB past a 1 KiB limit were accepted");
    cl_close(c);

    /* exactly the limit is fine */
    char *raw = malloc(2048);
    int hl = snprintf(raw, 2048, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n");
    memset(raw + hl, 'q', 1024);
    raw[hl + 1024] = 0;
    r = request(s->port, raw);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 1024);
    resp_free(&r);
    free(raw);

    /* the handler never saw the big ones; the server still works */
    r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    srv_stop(s);
}

Test(http, api_keys) {
    const char *keys[] = {"k1", "secret-2"};
    const char *open[] = {"/health"};
    sp_http_opts o = base_opts();
    o.api_keys = keys;
    o.n_api_keys = 2;
    o.open_paths = open;
    o.n_open_paths = 1;
    srv *s = srv_start(&o);

    resp r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(resp_header(&r, "WWW-Authenticate"), "Bearer");
    cr_assert_str_eq(resp_header(&r, "Content-Type"), "application/json");
    cr_assert_str_eq(r.body, "{\"error\":{\"message\":\"invalid or missing API key\",\"type\":"
                             "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}");
    resp_free(&r);

    const char *bad[] = {"Authorization: Bearer k2\r\n", "Authorization: Bearer k\r\n",
                         "Authorization: Bearer k1x\r\n", "Authorization: Basic k1\r\n",
                         "Authorization: k1\r\n", "Authorization: Bearer \r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = get(s->port, "/hello", bad[i]);
        cr_assert_eq(r.status, 401, "accepted %s", bad[i]);
        resp_free(&r);
    }
    const char *good[] = {"Authorization: Bearer k1\r\n", "Authorization: Bearer secret-2\r\n",
                          "Authorization: bearer   secret-2\r\n"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        r = get(s->port, "/hello", good[i]);
        cr_assert_eq(r.status, 200, "refused %s", good[i]);
        resp_free(&r);
    }
    /* a POST without a key is refused before its body is read */
    r = request(s->port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    r = get(s->port, "/health", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    /* OPTIONS passes without a key (no CORS configured: it reaches the handler) */
    r = request(s->port, "OPTIONS /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(r.status, 405);
    cr_assert_null(resp_header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    srv_stop(s);
}

Test(http, cors) {
    const char *keys[] = {"k1"};
    sp_http_opts o = base_opts();
    o.cors_origins = "http://a.example, http://b.example";
    o.api_keys = keys;
    o.n_api_keys = 1;
    srv *s = srv_start(&o);
    resp r = request(s->port, "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n"
                              "Access-Control-Request-Method: POST\r\n\r\n");
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"), "http://a.example");
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Headers"), "Authorization, Content-Type");
    cr_assert_not_null(resp_header(&r, "Access-Control-Max-Age"));
    resp_free(&r);

    r = get(s->port, "/hello", "Origin: http://b.example\r\nAuthorization: Bearer k1\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"), "http://b.example");
    cr_assert_str_eq(resp_header(&r, "Vary"), "Origin");
    resp_free(&r);
    /* the layer's own errors carry it too, so browsers can read them */
    r = get(s->port, "/hello", "Origin: http://b.example\r\n");
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"), "http://b.example");
    resp_free(&r);
    r = get(s->port, "/hello", "Origin: http://evil.example\r\nAuthorization: Bearer k1\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_null(resp_header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    srv_stop(s);

    o = base_opts();
    o.cors_origins = "*";
    s = srv_start(&o);
    r = get(s->port, "/hello", "Origin: http://whatever\r\n");
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"), "*");
    resp_free(&r);
    r = get(s->port, "/hello", NULL);
    cr_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"), "*");
    resp_free(&r);
    srv_stop(s);

    o = base_opts();
    s = srv_start(&o);
    r = get(s->port, "/hello", "Origin: http://whatever\r\n");
    cr_assert_null(resp_header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    srv_stop(s);
}

Test(http, async_whole_response) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    double t0 = now_s();
    resp r = get(s->port, "/async", NULL);
    double dt = now_s() - t0;
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "late answer");
    cr_assert(dt >= 0.19 && dt < 2.0, "answered after %.3f s", dt);
    resp_free(&r);
    /* closed(arg, false) once the response is complete */
    for (int i = 0; i < 100 && atomic_load(&g.closed_calls) < 1; i++) sleep_ms(10);
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    cr_assert_eq(atomic_load(&g.closed_gone), 0);
    srv_stop(s);
}

Test(http, stream_50_pieces) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    double cpu0 = thread_cpu_s(s->th), t0 = now_s();
    cl_sends(c, "GET /stream50 HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cr_assert(cl_read(c, &r, false));
    double cpu = thread_cpu_s(s->th) - cpu0, dt = now_s() - t0;
    cr_assert_eq(r.status, 200);
    cr_assert(r.chunked);
    cr_assert_str_eq(resp_header(&r, "Content-Type"), "text/event-stream");
    char want[2000] = "";
    for (int i = 0; i < 50; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "data: piece %02d\n\n", i);
    cr_assert_str_eq(r.body, want);
    cr_assert(dt > 0.9, "stream took %.3f s", dt);
    /* ~1 s of mostly waiting: a spinning loop would burn ~1 s of CPU */
    cr_assert(cpu < 0.25, "loop thread used %.3f s CPU over a %.3f s stream", cpu, dt);
    resp_free(&r);
    /* the connection is still usable afterwards */
    cl_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(c, &r, false));
    cr_assert_str_eq(r.body, "hello");
    resp_free(&r);
    cl_close(c);
    for (int i = 0; i < 100 && atomic_load(&g.closed_calls) < 1; i++) sleep_ms(10);
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    cr_assert_eq(atomic_load(&g.closed_gone), 0);
    srv_stop(s);
}

Test(http, idle_stream_does_not_spin) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    cl_sends(c, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    /* wait for the first piece (headers + "first|"), then measure over the idle second */
    cr_assert(cl_find(c, "first|"));
    struct timespec p0, p1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p0);
    double cpu0 = thread_cpu_s(s->th), t0 = now_s();
    cr_assert(cl_find(c, "second"));
    double cpu = thread_cpu_s(s->th) - cpu0, dt = now_s() - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p1);
    double pcpu = (double)(p1.tv_sec - p0.tv_sec) + (double)(p1.tv_nsec - p0.tv_nsec) * 1e-9;
    cr_assert(dt > 0.8, "idle gap %.3f s", dt);
    cr_assert(cpu < 0.05, "loop thread used %.3f s CPU during a %.3f s idle stream", cpu, dt);
    cr_assert(pcpu < 0.2, "the process used %.3f s CPU during a %.3f s idle stream", pcpu, dt);
    cr_log_info("idle stream: %.3f s wall, loop thread %.4f s CPU, process %.4f s CPU", dt, cpu, pcpu);
    cl_close(c);
    srv_stop(s);
}

Test(http, client_leaves_mid_stream) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    cl_sends(c, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_need(c, 2000));
    long long t_close = mono_ns();
    cl_close(c);
    for (int i = 0; i < 200 && atomic_load(&g.closed_calls) < 1; i++) sleep_ms(10);
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    cr_assert_eq(atomic_load(&g.closed_gone), 1);
    double after = (double)(atomic_load(&g.closed_at_ns) - t_close) * 1e-9;
    cr_assert(after < 1.0, "closed() %.3f s after the client left", after);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&g.pumps_after_closed), 0);
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    /* server fine */
    resp r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    srv_stop(s);
}

Test(http, client_leaves_while_waiting) {
    /* nothing is being written: the suspended connection's socket is watched for the hang-up */
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    cl_sends(c, "POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    sleep_ms(100);
    long long t_close = mono_ns();
    cl_close(c);
    for (int i = 0; i < 200 && atomic_load(&g.closed_calls) < 1; i++) sleep_ms(10);
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    cr_assert_eq(atomic_load(&g.closed_gone), 1);
    double after = (double)(atomic_load(&g.closed_at_ns) - t_close) * 1e-9;
    cr_assert(after < 1.0, "closed() %.3f s after the client left", after);
    srv_stop(s);
}

Test(http, keep_alive_and_pipelining) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    resp r;
    for (int i = 0; i < 3; i++) {
        cl_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert(cl_read(c, &r, false));
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(r.body, "hello");
        resp_free(&r);
    }
    /* pipelined: a POST, an async GET and a GET in one write */
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                "GET /async HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(c, &r, false));
    cr_assert_str_eq(r.body, "abc");
    resp_free(&r);
    cr_assert(cl_read(c, &r, false));
    cr_assert_str_eq(r.body, "late answer");
    resp_free(&r);
    cr_assert(cl_read(c, &r, false));
    cr_assert_str_eq(r.body, "hello");
    resp_free(&r);
    cl_close(c);
    srv_stop(s);
}

/* Past max_connections a reserve of max(8, N/8) sockets is accepted only to answer: 503
 * too_many_connections with Connection: close, except /health; past the reserve, connections wait. */
Test(http, connection_limit) {
    sp_http_opts o = base_opts();
    o.max_connections = 2;
    srv *s = srv_start(&o);
    client *a = cl_open(s->port), *b = cl_open(s->port);
    resp r;
    cl_sends(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(a, &r, false));
    resp_free(&r);
    cl_sends(b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(b, &r, false));
    resp_free(&r);
    /* a third is answered 503 and closed */
    client *x = cl_open(s->port);
    cl_sends(x, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(x, &r, false));
    cr_assert_eq(r.status, 503);
    cr_assert(strstr(r.body, "\"code\":\"too_many_connections\"") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "\"type\":\"server_error\"") != NULL, "%s", r.body);
    cr_assert_str_eq(resp_header(&r, "Retry-After"), "1");
    cr_assert_str_eq(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    cr_assert(cl_sees_eof(x, 2000));
    cl_close(x);
    /* but /health is served past the limit (probes keep working) */
    r = get(s->port, "/health", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    /* the reserve (8 for a limit of 2) held by idle sockets: the next connection waits */
    client *hold[8];
    for (int i = 0; i < 8; i++) hold[i] = cl_open(s->port);
    sleep_ms(100);
    x = cl_open(s->port);
    cl_sends(x, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cl_timeout(x, 400);
    bool got = cl_read(x, &r, false);
    resp_free(&r);
    cr_assert(!got, "a connection past the limit and its reserve was served");
    /* freeing a slot lets it in (it is past the limit: 503) */
    cl_close(hold[0]);
    cl_timeout(x, 2000);
    cr_assert(cl_read(x, &r, false));
    cr_assert_eq(r.status, 503);
    resp_free(&r);
    cl_close(x);
    for (int i = 1; i < 8; i++) cl_close(hold[i]);
    /* slots freed: a new connection within the limit is served */
    cl_close(a);
    sleep_ms(100);
    r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cl_close(b);
    sp_http_stats st;
    sp_http_get_stats(s->h, &st); /* not on the loop thread, but the loop is idle: counters only */
    cr_assert_eq(st.refused, 2);
    srv_stop(s);
}

/* Slowloris: a request line and headers trickled byte by byte, a body that stalls, a kept-alive
 * connection left idle: each closed at read_timeout, however steadily it trickles; others are served. */
Test(http, read_timeout_closes_slow_requests) {
    sp_http_opts o = base_opts();
    o.read_timeout_s = 1;
    o.idle_timeout_s = 30; /* the inactivity timeout never fires: bytes keep coming */
    srv *s = srv_start(&o);
    enum { N = 6 };
    client *c[N];
    for (int i = 0; i < N; i++) c[i] = cl_open(s->port);
    const char *head = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    /* a stalled body: the head is in at once, the body never completes */
    client *body = cl_open(s->port);
    cl_sends(body, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
    /* a kept-alive connection, idle after its answer */
    client *ka = cl_open(s->port);
    resp r;
    cl_sends(ka, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(ka, &r, false));
    resp_free(&r);
    double t0 = now_s(), closed_at[N] = {0};
    int n_closed = 0;
    for (size_t k = 0; n_closed < N && now_s() - t0 < 4.0; k++) {
        for (int i = 0; i < N; i++) {
            if (closed_at[i] > 0) continue;
            char ch = k < strlen(head) ? head[k] : 'a';
            if (send(c[i]->fd, &ch, 1, MSG_NOSIGNAL) != 1 || cl_sees_eof(c[i], 1)) {
                closed_at[i] = now_s() - t0;
                n_closed++;
            }
        }
        if (k == 3) { /* meanwhile a normal client is served at once */
            double t1 = now_s();
            r = get(s->port, "/hello", NULL);
            cr_assert_eq(r.status, 200);
            cr_assert(now_s() - t1 < 0.5);
            resp_free(&r);
        }
        sleep_ms(50);
    }
    cr_assert_eq(n_closed, N, "only %d of %d trickling connections were closed", n_closed, N);
    for (int i = 0; i < N; i++) {
        cr_assert(closed_at[i] > 0.7 && closed_at[i] < 2.5, "closed after %.3f s", closed_at[i]);
        cl_close(c[i]);
    }
    cr_assert(cl_sees_eof(body, 2000));
    cr_assert(cl_sees_eof(ka, 2000));
    cl_close(body);
    cl_close(ka);
    sp_http_stats st;
    sp_http_get_stats(s->h, &st);
    cr_assert_geq(st.read_timeouts, N + 2);
    /* a slow but steady answer is not subject to it: /stream50 takes ~1 s > read_timeout */
    r = get(s->port, "/stream50", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "data: piece 49\n\n") != NULL);
    resp_free(&r);
    srv_stop(s);
}

Test(http, header_size_limit) {
    sp_http_opts o = base_opts();
    o.max_header = 2048;
    srv *s = srv_start(&o);
    char big[3000];
    memset(big, 'a', sizeof big);
    memcpy(big, "X-Big: ", 7);
    memcpy(big + sizeof big - 3, "\r\n", 3);
    char raw[4096];
    snprintf(raw, sizeof raw, "GET /hello HTTP/1.1\r\nHost: x\r\n%.*s\r\n", (int)sizeof big, big);
    resp r = request(s->port, raw);
    cr_assert_eq(r.status, 431);
    cr_assert(strstr(r.body, "\"code\":\"headers_too_large\"") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "exceed 2048 bytes") != NULL, "%s", r.body);
    resp_free(&r);
    big[1500] = 0;
    memcpy(big + 1497, "\r\n", 3);
    snprintf(raw, sizeof raw, "GET /hello HTTP/1.1\r\nHost: x\r\n%s\r\n", big);
    r = request(s->port, raw);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    srv_stop(s);
}

/* sp_http_drain: the listening socket closes at once, the running stream finishes, a kept-alive
 * connection's next request gets 503 server_shutting_down, and run returns once nothing is left. */
Test(http, drain_finishes_running_requests) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *st = cl_open(s->port);
    cl_sends(st, "GET /stream50 HTTP/1.1\r\nHost: x\r\n\r\n"); /* ~1 s of pieces */
    cr_assert(cl_need(st, 100));
    client *ka = cl_open(s->port);
    resp r;
    cl_sends(ka, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(ka, &r, false));
    resp_free(&r);
    sp_http_drain(s->h);
    sp_http_drain(s->h); /* twice is fine */
    sleep_ms(100);
    /* no new connections */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_neq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connected while draining");
    close(fd);
    /* the kept-alive connection: 503 and closed */
    cl_sends(ka, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_read(ka, &r, false));
    cr_assert_eq(r.status, 503);
    cr_assert(strstr(r.body, "server_shutting_down") != NULL, "%s", r.body);
    resp_free(&r);
    cr_assert(cl_sees_eof(ka, 2000));
    cl_close(ka);
    cr_assert(!atomic_load(&s->returned), "run returned with a stream still running");
    /* the stream ends normally, then run returns by itself */
    cr_assert(cl_read(st, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "data: piece 49\n\n") != NULL, "stream cut: %s", r.body);
    resp_free(&r);
    for (int i = 0; i < 200 && !atomic_load(&s->returned); i++) sleep_ms(10);
    cr_assert(atomic_load(&s->returned), "sp_http_run did not return after the drain");
    cr_assert_eq(atomic_load(&g.closed_gone), 0);
    cl_close(st);
    srv_stop(s);
}

Test(http, idle_timeout_and_odd_requests) {
    sp_http_opts o = base_opts();
    o.idle_timeout_s = 1;
    srv *s = srv_start(&o);
    /* slowloris: half a request line, then nothing */
    client *c = cl_open(s->port);
    cl_sends(c, "GET /hel");
    double t0 = now_s();
    cr_assert(cl_sees_eof(c, 4000));
    double dt = now_s() - t0;
    cr_assert(dt > 0.5 && dt < 3.5, "closed after %.3f s", dt);
    cl_close(c);

    /* garbage */
    c = cl_open(s->port);
    cl_sends(c, "HELLO THERE\r\n\r\n");
    resp r;
    if (cl_read(c, &r, false)) cr_assert(r.status >= 400, "garbage got %d", r.status);
    resp_free(&r);
    cl_close(c);
    c = cl_open(s->port);
    cl_send(c, "\0\1\2\3\r\n\r\n", 8);
    cl_sees_eof(c, 2000);
    cl_close(c);
    /* a bad Content-Length */
    c = cl_open(s->port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n");
    if (cl_read(c, &r, false)) cr_assert(r.status >= 400);
    resp_free(&r);
    cl_close(c);
    /* half-closed: the request, then shutdown(SHUT_WR); the answer still comes */
    c = cl_open(s->port);
    cl_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cl_close(c);
    /* closed before the request ends */
    c = cl_open(s->port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
    cl_close(c);
    /* HTTP/1.0 */
    r = request(s->port, "GET /hello HTTP/1.0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello");
    resp_free(&r);
    r = request(s->port, "GET /stream50 HTTP/1.0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "data: piece 49\n\n") != NULL);
    resp_free(&r);
    /* still alive */
    r = get(s->port, "/hello", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    srv_stop(s);
}

Test(http, stop_with_open_stream) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    cl_sends(c, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_need(c, 1000));
    client *idle = cl_open(s->port); /* a keep-alive connection doing nothing */
    cl_sends(idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cr_assert(cl_read(idle, &r, false));
    resp_free(&r);
    sp_http_stop(s->h);
    sp_http_stop(s->h); /* twice is fine */
    for (int i = 0; i < 200 && !atomic_load(&s->returned); i++) sleep_ms(10);
    cr_assert(atomic_load(&s->returned), "sp_http_run did not return");
    cr_assert_eq(atomic_load(&g.closed_calls), 1);
    cr_assert_eq(atomic_load(&g.closed_gone), 1);
    cr_assert(cl_sees_eof(c, 2000));
    cr_assert(cl_sees_eof(idle, 2000));
    cl_close(c);
    cl_close(idle);
    srv_stop(s);
}

Test(http, stop_before_run_and_bad_bind) {
    sp_http_opts o = base_opts();
    char err[256];
    sp_http *h = sp_http_new(&o, err, sizeof err);
    cr_assert_not_null(h);
    sp_http_free(h); /* never run */

    srv *s = srv_start(&o);
    o.port = s->port; /* taken */
    err[0] = 0;
    h = sp_http_new(&o, err, sizeof err);
    cr_assert_null(h);
    cr_assert(strstr(err, "in use") != NULL, "%s", err);
    o.port = 0;
    o.host = "not-an-address";
    h = sp_http_new(&o, err, sizeof err);
    cr_assert_null(h);
    cr_assert(strstr(err, "not-an-address") != NULL, "%s", err);
    srv_stop(s);

    /* stop before run: run returns at once */
    o = base_opts();
    h = sp_http_new(&o, err, sizeof err);
    sp_http_stop(h);
    cr_assert_eq(sp_http_run(h), 0);
    sp_http_free(h);
}

Test(http, ipv6_loopback) {
    sp_http_opts o = base_opts();
    o.host = "::1";
    char err[256];
    sp_http *h = sp_http_new(&o, err, sizeof err);
    if (!h) {
        cr_log_warn("no IPv6 loopback here: %s", err);
        return;
    }
    srv *s = calloc(1, sizeof *s);
    s->h = h;
    s->port = sp_http_port(h);
    pthread_create(&s->th, NULL, srv_main, s);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->port)};
    a.sin6_addr = in6addr_loopback;
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    client *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->cap = 4096;
    c->buf = malloc(c->cap);
    cl_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    cr_assert(cl_read(c, &r, false));
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cl_close(c);
    srv_stop(s);
}

Test(http, request_log_line) {
    sp_http_opts o = base_opts();
    o.log_requests = true;
    o.on_done = on_done;
    memset(&done_counts, 0, sizeof done_counts);
    const char *path = tu_tmp("http-log.txt");
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    dup2(fileno(f), 2);
    srv *s = srv_start(&o);
    resp r = get(s->port, "/hello", NULL);
    resp_free(&r);
    r = get(s->port, "/stream50", NULL);
    resp_free(&r);
    client *c = cl_open(s->port);
    cl_sends(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep_ms(50);
    cl_close(c);
    for (int i = 0; i < 200 && atomic_load(&g.closed_gone) < 1; i++) sleep_ms(10);
    srv_stop(s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    char *log = tu_read_file(path, NULL);
    cr_assert_not_null(log);
    cr_assert(strstr(log, "127.0.0.1 GET /hello 200 5B ") != NULL, "log: %s", log);
    cr_assert(strstr(log, "127.0.0.1 GET /stream50 200 800B ") != NULL, "log: %s", log);
    cr_assert(strstr(log, "ms tokens 1/50\n") != NULL, "log: %s", log);
    cr_assert(strstr(log, "127.0.0.1 GET /hang - 0B ") != NULL, "log: %s", log);
    cr_assert(strstr(log, "ms (client gone)\n") != NULL, "log: %s", log);
    cr_assert_eq(done_counts.n, 3);
    cr_assert_eq(done_counts.n200, 2);
    cr_assert_eq(done_counts.n0, 1);
    free(log);
}

/* 32 clients at once, each a few requests mixing sync, async and streamed answers. */
typedef struct {
    int port, id, ok;
} worker_arg;

static void *worker(void *a) {
    worker_arg *w = a;
    client *c = cl_open(w->port);
    for (int i = 0; i < 4; i++) {
        char raw[256], body[64];
        int bl = snprintf(body, sizeof body, "client %d request %d", w->id, i);
        const char *path = (i % 4 == 1) ? "/async" : (i % 4 == 3) ? "/stream50" : "/echo";
        if (strcmp(path, "/echo") == 0)
            snprintf(raw, sizeof raw, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", bl, body);
        else
            snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
        cl_sends(c, raw);
        resp r;
        if (!cl_read(c, &r, false)) break;
        bool good = r.status == 200;
        if (strcmp(path, "/echo") == 0) good = good && strcmp(r.body, body) == 0;
        else if (strcmp(path, "/async") == 0) good = good && strcmp(r.body, "late answer") == 0;
        else good = good && r.body_len == 800;
        resp_free(&r);
        if (!good) break;
        w->ok++;
    }
    cl_close(c);
    return NULL;
}

Test(http, concurrent_clients) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    enum { N = 32 };
    pthread_t th[N];
    worker_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (worker_arg){.port = s->port, .id = i};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) cr_assert_eq(args[i].ok, 4, "client %d: %d of 4 ok", i, args[i].ok);
    for (int i = 0; i < 100 && atomic_load(&g.closed_calls) < 2 * N; i++) sleep_ms(10);
    cr_assert_eq(atomic_load(&g.closed_calls), 2 * N);
    cr_assert_eq(atomic_load(&g.closed_gone), 0);
    srv_stop(s);
}

static sp_http *g_sig_srv;
static void on_sigusr1(int sig) { sp_http_stop(g_sig_srv); }

Test(http, stop_from_signal_handler) {
    sp_http_opts o = base_opts();
    srv *s = srv_start(&o);
    client *c = cl_open(s->port);
    cl_sends(c, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_need(c, 500));
    g_sig_srv = s->h;
    struct sigaction sa = {.sa_handler = on_sigusr1};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    for (int i = 0; i < 200 && !atomic_load(&s->returned); i++) sleep_ms(10);
    cr_assert(atomic_load(&s->returned), "sp_http_run did not return");
    cr_assert_eq(atomic_load(&g.closed_gone), 1);
    signal(SIGUSR1, SIG_DFL);
    cl_close(c);
    srv_stop(s);
}
