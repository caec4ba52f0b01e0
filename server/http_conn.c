/* server/http_conn.c — one request's life, from MHD's first access-handler call to its completion
 * notice: the layer's own checks (CORS preflight, API key, body size) and their error answers, body
 * accumulation, the call into the user's handler, turning its answer into an MHD response (a buffer,
 * or a content-reader callback for streams), suspending the connection while the answer is not
 * ready and resuming it when it is, client-gone detection, closed() and the log line.
 *
 * Suspension in libmicrohttpd 0.9.75: a connection may be suspended only from the access handler or
 * from a content reader. Waiting for an async answer: the handler returns, we suspend in the access
 * handler; when the pump responds we resume and MHD calls the access handler again, which queues
 * the response. Waiting inside a stream: the content reader, finding no pending bytes, suspends and
 * returns 0 (the documented way to avoid busy-waiting); the next stream_write/end resumes, and MHD
 * calls the reader again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "server/http_impl.h"

#define STREAM_BLOCK 4096

/* ---- conn bookkeeping ---- */

static sp_http_conn *conn_new(sp_http *h, struct MHD_Connection *mc, const char *url, const char *method) {
    sp_http_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->h = h;
    c->mc = mc;
    c->method = strdup(method ? method : "?");
    c->path = strdup(url ? url : "/");
    if (!c->method || !c->path) {
        free(c->method);
        free(c->path);
        free(c);
        return NULL;
    }
    c->t0_ns = sp_http_now_ns();
    c->status = 0;
    const union MHD_ConnectionInfo *sk = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    c->sock = sk ? sk->socket_context : NULL;
    atomic_fetch_add(&h->n_conns, 1);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    strcpy(c->remote, "?");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->remote, sizeof c->remote);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->remote, sizeof c->remote);
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    return c;
}

void sp_http_conn_free(sp_http_conn *c) {
    sp_http *h = c->h;
    sp_http_wake_purge(h, c);
    if (c->prev) c->prev->next = c->next;
    else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&h->n_conns, 1);
    for (int i = 0; i < c->n_hdrs; i++) {
        free(c->hdrs[i].name);
        free(c->hdrs[i].value);
    }
    free(c->hdrs);
    free(c->ctype);
    free(c->body);
    free(c->resp);
    free(c->note);
    free(c->method);
    free(c->path);
    free(c);
}

static void set_suspended(sp_http_conn *c, bool on) {
    if (c->suspended == on) return;
    if (on) MHD_suspend_connection(c->mc);
    else MHD_resume_connection(c->mc);
    c->suspended = on;
    c->h->n_suspended += on ? 1 : -1;
    sp_http_gone_timer_update(c->h);
    if (!on) sp_http_kick(c->h);
}

/* closed() exactly once, for async requests; afterwards no pump and no pending wake. */
static void call_closed(sp_http_conn *c, bool gone) {
    if (!c->async || c->closed_called) return;
    c->closed_called = true;
    if (c->closed) c->closed(c->arg, gone);
    sp_http_wake_purge(c->h, c);
}

void sp_http_conn_abort(sp_http_conn *c, bool gone) {
    if (c->aborted) return;
    c->aborted = true;
    call_closed(c, gone);
    set_suspended(c, false); /* MHD then ends it: access handler says NO, reader says error */
}

/* Out of memory while answering: end the request with an error; closed() comes at completion. */
static void fail(sp_http_conn *c) {
    c->aborted = true;
    set_suspended(c, false);
}

void sp_http_conn_pump(sp_http_conn *c) {
    if (c->async && !c->aborted && !c->closed_called && c->pump) c->pump(c->arg, c);
}

/* A peek at a suspended connection's socket: EOF or an error means the client has gone. Unread bytes
 * hide the EOF behind them (a TLS client's close_notify alert, a pipelined request): then the TCP
 * state tells whether the peer has sent its FIN. */
bool sp_http_conn_client_left(const sp_http_conn *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char b;
    ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return true;
    if (r > 0) {
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        return getsockopt(ci->connect_fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_CLOSE_WAIT;
    }
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* ---- sockets (MHD_OPTION_NOTIFY_CONNECTION) ---- */

void sp_http_on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                           enum MHD_ConnectionNotificationCode code) {
    sp_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        sp_http_sock *s = calloc(1, sizeof *s);
        if (!s) return; /* untracked: no read deadline, never refused */
        s->mc = mc;
        s->deadline_ns = sp_http_now_ns() + (uint64_t)h->read_timeout_s * 1000000000u;
        s->over = atomic_load(&h->n_socks) >= h->max_connections;
        s->next = h->socks;
        if (h->socks) h->socks->prev = s;
        h->socks = s;
        atomic_fetch_add(&h->n_socks, 1);
        *socket_context = s;
    } else {
        sp_http_sock *s = *socket_context;
        if (!s) return;
        *socket_context = NULL;
        for (sp_http_conn *c = h->conns; c; c = c->next)
            if (c->sock == s) c->sock = NULL;
        if (s->prev) s->prev->next = s->next;
        else h->socks = s->next;
        if (s->next) s->next->prev = s->prev;
        atomic_fetch_sub(&h->n_socks, 1);
        free(s);
    }
    sp_http_tick_update(h);
}

/* ---- building the MHD response ---- */

static void add_cors(sp_http_conn *c, struct MHD_Response *r) {
    if (!c->cors_allow) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", c->cors_allow);
    if (c->cors_vary) MHD_add_response_header(r, "Vary", "Origin");
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    sp_http_conn *c = cls;
    if (c->aborted) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = c->resp_len - c->resp_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, c->resp + c->resp_off, n);
        c->resp_off += n;
        if (c->resp_off == c->resp_len) c->resp_off = c->resp_len = 0;
        c->bytes_sent += n;
        return (ssize_t)n;
    }
    if (c->stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
    set_suspended(c, true); /* resumed by the next stream_write / stream_end */
    return 0;
}

static enum MHD_Result queue(sp_http_conn *c) {
    struct MHD_Response *r;
    if (c->kind == SP_RESP_STREAM) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, c, NULL);
    } else {
        if (c->resp_len == 0) {
            r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        } else {
            r = MHD_create_response_from_buffer(c->resp_len, c->resp, MHD_RESPMEM_MUST_FREE);
            if (r) c->resp = NULL; /* MHD frees it */
        }
    }
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", c->ctype ? c->ctype : "application/octet-stream");
    for (int i = 0; i < c->n_hdrs; i++) MHD_add_response_header(r, c->hdrs[i].name, c->hdrs[i].value);
    add_cors(c, r);
    if (c->close_after || c->h->draining) MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)c->status, r);
    MHD_destroy_response(r);
    c->queued = ret == MHD_YES;
    return ret;
}

static void set_whole(sp_http_conn *c, int status, const char *ctype, char *body, size_t len) {
    c->kind = SP_RESP_WHOLE;
    c->status = status;
    free(c->ctype);
    c->ctype = strdup(ctype ? ctype : "application/octet-stream");
    free(c->resp);
    c->resp = body;
    c->resp_len = len;
    c->resp_off = 0;
}

/* An answer by the layer itself (never reaches the handler). */
static enum MHD_Result reject_as(sp_http_conn *c, int status, const char *type, const char *msg, const char *code) {
    size_t len = 0;
    char *body = sp_http_error_json(msg, type, code, &len);
    if (!body) return MHD_NO;
    c->rejected = true;
    set_whole(c, status, "application/json", body, len);
    return queue(c);
}

static enum MHD_Result reject(sp_http_conn *c, int status, const char *msg, const char *code) {
    return reject_as(c, status, "invalid_request_error", msg, code);
}

/* 503 and close: the server is stopping, or this socket is past the connection limit. */
static enum MHD_Result reject_busy(sp_http_conn *c, const char *msg, const char *code) {
    c->close_after = true;
    sp_http_add_header(c, "Retry-After", "1");
    return reject_as(c, 503, "server_error", msg, code);
}

static enum MHD_Result reject_too_large(sp_http_conn *c) {
    char msg[96];
    snprintf(msg, sizeof msg, "request body exceeds %zu bytes", c->h->max_body);
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_cap = 0;
    return reject(c, 413, msg, "request_too_large");
}

static enum MHD_Result preflight(sp_http_conn *c) {
    c->rejected = true;
    set_whole(c, 204, "text/plain", NULL, 0);
    if (c->cors_allow) {
        sp_http_add_header(c, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        sp_http_add_header(c, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        sp_http_add_header(c, "Access-Control-Max-Age", "86400");
    }
    return queue(c);
}

/* ---- the access handler ---- */

static const char *header(sp_http_conn *c, const char *name) {
    return MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, name);
}

/* The request line and headers as received (MHD's own figure; else summed from the parsed ones). */
static enum MHD_Result add_len(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    *(size_t *)cls += (key ? strlen(key) : 0) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static size_t head_size(sp_http_conn *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (i && i->header_size) return i->header_size;
    size_t n = strlen(c->method) + strlen(c->path) + 12;
    MHD_get_connection_values(c->mc, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_len, &n);
    return n;
}

/* First call: headers only. Shutdown, connection limit, head size, preflight, key and declared size
 * are settled before any body is read. */
static enum MHD_Result first_call(sp_http_conn *c) {
    sp_http *h = c->h;
    bool vary = false;
    if (h->draining) return reject_busy(c, "the server is shutting down", "server_shutting_down");
    if (c->sock && c->sock->over && strcmp(c->path, "/health") != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "too many connections (this server serves %u at once); retry shortly",
                 h->max_connections);
        atomic_fetch_add(&h->n_refused, 1);
        return reject_busy(c, msg, "too_many_connections");
    }
    size_t hs = head_size(c);
    if (hs > h->max_header) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request line and headers exceed %zu bytes (got %zu)", h->max_header, hs);
        c->close_after = true;
        return reject_as(c, 431, "invalid_request_error", msg, "headers_too_large");
    }
    c->cors_allow = sp_http_cors_allow(h, header(c, "Origin"), &vary);
    c->cors_vary = vary;
    bool options = strcmp(c->method, "OPTIONS") == 0;
    if (options && h->cors_on) return preflight(c);
    if (h->n_keys > 0 && !options && !sp_http_is_open_path(h, c->path) &&
        !sp_http_bearer_ok(h, header(c, "Authorization"))) {
        sp_http_add_header(c, "WWW-Authenticate", "Bearer");
        return reject(c, 401, "invalid or missing API key", "invalid_api_key");
    }
    const char *cl = header(c, "Content-Length");
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > h->max_body) return reject_too_large(c);
    }
    return MHD_YES;
}

/* Past max_body: the body is dropped and the 413 waits for the end of the request (MHD 0.9.75 queues
 * responses only before the body or after all of it); a client that keeps sending well past the
 * limit is disconnected instead. */
static enum MHD_Result take_body(sp_http_conn *c, const char *data, size_t n) {
    size_t max = c->h->max_body;
    if (c->too_large || n > max || c->body_len > max - n) {
        size_t allowance = max > ((size_t)1 << 20) ? max : ((size_t)1 << 20);
        c->too_large = true;
        free(c->body);
        c->body = NULL;
        c->body_len = c->body_cap = 0;
        c->discarded += n;
        return c->discarded > allowance ? MHD_NO : MHD_YES;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *b = realloc(c->body, cap);
        if (!b) return MHD_NO;
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = 0;
    return MHD_YES;
}

static void call_handler(sp_http_conn *c) {
    sp_http *h = c->h;
    c->handled = true;
    if (c->sock) c->sock->deadline_ns = 0; /* the request is in: no read deadline while answering */
    if (!h->handler) return;
    sp_http_request req = {
        .method = c->method,
        .path = c->path,
        .body = c->body ? c->body : "",
        .body_len = c->body_len,
        .content_type = header(c, "Content-Type"),
        .remote = c->remote,
    };
    h->handler(h->ud, c, &req);
}

/* After the handler (and after every resume while waiting): queue the answer, or keep waiting. */
static enum MHD_Result deliver(sp_http_conn *c) {
    if (c->aborted) return MHD_NO;
    if (c->kind != SP_RESP_NONE) return queue(c);
    if (c->async) {
        set_suspended(c, true);
        return MHD_YES;
    }
    size_t len = 0;
    const char *msg = c->h->handler ? "the handler did not answer" : "not found";
    char *body = sp_http_error_json(msg, c->h->handler ? "server_error" : "invalid_request_error",
                                    c->h->handler ? "internal_error" : "not_found", &len);
    if (!body) return MHD_NO;
    set_whole(c, c->h->handler ? 500 : 404, "application/json", body, len);
    return queue(c);
}

enum MHD_Result sp_http_on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **req_cls) {
    sp_http *h = cls;
    sp_http_conn *c = *req_cls;
    if (!c) {
        if (h->shut || atomic_load(&h->stop_requested)) return MHD_NO;
        c = conn_new(h, mc, url, method);
        if (!c) return MHD_NO;
        *req_cls = c;
        return first_call(c);
    }
    if (c->aborted) return MHD_NO;
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->rejected || c->queued) return MHD_YES; /* discard what follows an early answer */
        return take_body(c, upload, n);
    }
    if (c->queued) return MHD_YES;
    if (c->too_large) return reject_too_large(c);
    if (!c->handled) call_handler(c);
    return deliver(c);
}

/* ---- completion ---- */

static void log_line(sp_http_conn *c, enum MHD_RequestTerminationCode toe) {
    uint64_t ms = (sp_http_now_ns() - c->t0_ns) / 1000000u;
    const char *why = "";
    if (c->aborted && atomic_load(&c->h->stop_requested)) why = " (server stopping)";
    else if (c->aborted) why = " (client gone)";
    else if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) why = " (timeout)";
    else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) why = " (client gone)";
    char status[16] = "-"; /* no answer was given */
    if (c->status) snprintf(status, sizeof status, "%d", c->status);
    fprintf(stderr, "%s %s %s %s %lluB %llums%s%s%s\n", c->remote, c->method, c->path, status,
            (unsigned long long)c->bytes_sent, (unsigned long long)ms, c->note ? " " : "",
            c->note ? c->note : "", why);
}

void sp_http_on_completed(void *cls, struct MHD_Connection *mc, void **req_cls,
                          enum MHD_RequestTerminationCode toe) {
    sp_http_conn *c = *req_cls;
    if (!c) return;
    *req_cls = NULL;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !c->aborted;
    if (c->kind == SP_RESP_WHOLE && ok) c->bytes_sent = c->resp_len;
    if (c->suspended) { /* only if MHD drops a suspended connection itself */
        c->suspended = false;
        c->h->n_suspended--;
        sp_http_gone_timer_update(c->h);
    }
    call_closed(c, !ok);
    sp_http *h = c->h;
    if (h->log_requests) log_line(c, toe);
    if (h->on_done) h->on_done(h->ud, c->method, c->path, c->queued ? c->status : 0);
    /* a kept-alive connection has read_timeout for its next request */
    if (c->sock) c->sock->deadline_ns = sp_http_now_ns() + (uint64_t)h->read_timeout_s * 1000000000u;
    sp_http_conn_free(c);
    sp_http_drain_check(h);
}

/* ---- answering (public, loop thread) ---- */

static bool can_answer(const sp_http_conn *c) {
    return c && !c->aborted && !c->closed_called && c->kind == SP_RESP_NONE;
}

void sp_http_add_header(sp_http_conn *c, const char *name, const char *value) {
    if (!c || !name || !value || c->queued) return;
    sp_http_hdr *hs = realloc(c->hdrs, (size_t)(c->n_hdrs + 1) * sizeof *hs);
    if (!hs) return;
    c->hdrs = hs;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    hs[c->n_hdrs].name = n;
    hs[c->n_hdrs].value = v;
    c->n_hdrs++;
}

void sp_http_respond(sp_http_conn *c, int status, const char *content_type, const char *body, size_t len) {
    if (!can_answer(c)) return;
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        fail(c);
        return;
    }
    if (len) memcpy(copy, body, len);
    set_whole(c, status, content_type, copy, len);
    set_suspended(c, false);
}

void sp_http_stream_begin(sp_http_conn *c, int status, const char *content_type) {
    if (!can_answer(c)) return;
    c->kind = SP_RESP_STREAM;
    c->status = status;
    c->ctype = strdup(content_type ? content_type : "application/octet-stream");
    set_suspended(c, false);
}

void sp_http_stream_write(sp_http_conn *c, const char *data, size_t len) {
    if (!c || c->kind != SP_RESP_STREAM || c->stream_ended || c->aborted || len == 0) return;
    if (c->resp_off > 0 && c->resp_len + len > c->resp_cap) {
        memmove(c->resp, c->resp + c->resp_off, c->resp_len - c->resp_off);
        c->resp_len -= c->resp_off;
        c->resp_off = 0;
    }
    if (c->resp_len + len > c->resp_cap) {
        size_t cap = c->resp_cap ? c->resp_cap : 1024;
        while (cap < c->resp_len + len) cap *= 2;
        char *b = realloc(c->resp, cap);
        if (!b) {
            fail(c);
            return;
        }
        c->resp = b;
        c->resp_cap = cap;
    }
    memcpy(c->resp + c->resp_len, data, len);
    c->resp_len += len;
    set_suspended(c, false);
}

void sp_http_stream_end(sp_http_conn *c) {
    if (!c || c->kind != SP_RESP_STREAM || c->stream_ended) return;
    c->stream_ended = true;
    set_suspended(c, false);
}

void sp_http_log_note(sp_http_conn *c, const char *note) {
    if (!c || !note) return;
    free(c->note);
    c->note = strdup(note);
}

const char *sp_http_header(sp_http_conn *c, const char *name) {
    return c && name ? MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, name) : NULL;
}

const char *sp_http_query(sp_http_conn *c, const char *key) {
    return c && key ? MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, key) : NULL;
}

void sp_http_set_async(sp_http_conn *c, void (*pump)(void *arg, sp_http_conn *c),
                       void (*closed)(void *arg, bool client_gone), void *arg) {
    if (!c) return;
    c->async = true;
    c->pump = pump;
    c->closed = closed;
    c->arg = arg;
}
