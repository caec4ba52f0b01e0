/* server/http.h — the HTTP front end: one libuv loop thread owns every socket; libmicrohttpd runs
 * inside it in external-epoll mode (its epoll fd watched by a uv_poll, its timeouts by a uv_timer).
 * The loop thread never computes: a handler either answers at once or keeps the connection
 * suspended and answers later from a `pump` callback, which runs on the loop thread whenever some
 * other thread calls sp_http_wake(). Streaming responses (SSE) are written piece by piece that way.
 * The only module that includes libuv or libmicrohttpd headers. */
#ifndef SP_SERVER_HTTP_H
#define SP_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_http sp_http;
typedef struct sp_http_conn sp_http_conn; /* one request being answered */

typedef struct {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* without the query string */
    const char *body;         /* complete request body (NUL-terminated copy), may be empty */
    size_t body_len;
    const char *content_type; /* NULL if absent */
    const char *remote;       /* client address, for logs */
} sp_http_request;            /* every field stays valid until the request completes (for async
                                 requests: until closed() returns), so a handler need not copy them */

typedef struct {
    const char *host;         /* default "127.0.0.1" */
    int port;                 /* 0: pick a free port (see sp_http_port) */
    unsigned max_connections; /* open sockets served; default 512. Past it a reserve of max(8, N/8) more
                                 is accepted only to answer: 503 "too_many_connections" (Connection:
                                 close, Retry-After), but /health normally; past N + reserve, new
                                 connections wait in the listen backlog */
    size_t max_body;          /* bytes; larger bodies get 413 without reaching the handler; default 8 MiB */
    size_t max_header;        /* request line + headers, bytes; larger get 431; default 16 KiB (heads
                                 over max(32 KiB, 2 x this) are refused by libmicrohttpd itself) */
    unsigned idle_timeout_s;  /* per-connection inactivity timeout (no byte moved); default 60 */
    unsigned read_timeout_s;  /* a request's head and body must arrive within this many seconds of the
                                 connection opening or of its previous answer, else the connection is
                                 closed (slowloris; idle keep-alive); default 15 */
    const char *tls_cert_pem; /* both set: HTTPS only (libmicrohttpd with GnuTLS), PEM text */
    const char *tls_key_pem;
    const char *const *api_keys; /* if n_api_keys > 0: every request but OPTIONS and the paths in
                                    open_paths needs "Authorization: Bearer KEY" (constant-time compare) */
    int n_api_keys;
    const char *const *open_paths; /* paths served without a key (e.g. "/health") */
    int n_open_paths;
    const char *cors_origins; /* NULL: no CORS headers; "*" or a comma-separated list of origins */
    bool log_requests;        /* one line per request on stderr: method path status bytes ms + note */
    /* Called on the loop thread for every request that passed the checks above. It must either
     * answer (sp_http_respond / sp_http_stream_begin) before returning, or call sp_http_set_async. */
    void (*handler)(void *ud, sp_http_conn *c, const sp_http_request *req);
    /* Optional, loop thread: every finished request with the status sent (0 if none: client gone). */
    void (*on_done)(void *ud, const char *method, const char *path, int status);
    /* Optional, loop thread: every SP_HTTP_TICK_MS while any connection is open or while draining. */
    void (*on_tick)(void *ud);
    void *ud;
} sp_http_opts;

#define SP_HTTP_TICK_MS 250

/* What the layer counts (any thread). */
typedef struct {
    unsigned connections;     /* open sockets */
    unsigned requests;        /* requests being answered */
    uint64_t refused;         /* 503 too_many_connections answers */
    uint64_t read_timeouts;   /* connections closed for not sending a request in time */
    bool draining;
} sp_http_stats;

/* Bind and listen (nothing runs until sp_http_run). NULL + err on failure (e.g. port in use). */
sp_http *sp_http_new(const sp_http_opts *o, char *err, size_t errlen);
int sp_http_port(const sp_http *h);
/* Run the loop on the calling thread until sp_http_stop. */
int sp_http_run(sp_http *h);
/* Any thread (and async-signal-safe): make sp_http_run return soon; open connections are closed. */
void sp_http_stop(sp_http *h);
/* Any thread (and async-signal-safe): graceful stop. The listening socket is closed at once (no new
 * connections); requests already being answered go on; a new request on a kept-alive connection gets
 * 503 "server_shutting_down"; every answer carries "Connection: close". sp_http_run returns when no
 * request is left (idle connections are closed then), or at sp_http_stop. */
void sp_http_drain(sp_http *h);
void sp_http_get_stats(const sp_http *h, sp_http_stats *st);
void sp_http_free(sp_http *h);

/* ---- answering (loop thread only) ---- */
/* Extra response header for the next respond / stream_begin on this connection. */
void sp_http_add_header(sp_http_conn *c, const char *name, const char *value);
/* A whole response; the body is copied. */
void sp_http_respond(sp_http_conn *c, int status, const char *content_type, const char *body, size_t len);
/* Start a streamed response (sent with chunked transfer encoding) ... */
void sp_http_stream_begin(sp_http_conn *c, int status, const char *content_type);
/* ... append bytes (copied; sent as soon as the socket takes them) ... */
void sp_http_stream_write(sp_http_conn *c, const char *data, size_t len);
/* ... and finish it. */
void sp_http_stream_end(sp_http_conn *c);
/* A note added to this request's log line (e.g. "tokens 12/64"); copied. */
void sp_http_log_note(sp_http_conn *c, const char *note);
/* A request header (case-insensitive name) or query-string argument ("/v1/models?x=1": "x" -> "1");
 * NULL if absent; loop thread. The strings live as long as sp_http_request's fields. */
const char *sp_http_header(sp_http_conn *c, const char *name);
const char *sp_http_query(sp_http_conn *c, const char *key);

/* Answer later. `pump(arg, c)` runs on the loop thread after each sp_http_wake(c) (several wakes
 * may merge into one call); it may respond, stream, or do nothing yet. `closed(arg)` runs on the loop
 * thread exactly once when the connection is finished with — response complete, client gone, or
 * server stopping — and after it returns `c` is invalid and sp_http_wake(c) must not be called any
 * more (so the owner must stop wakers first inside `closed`). `client_gone` tells whether the client
 * disconnected before the response was complete. */
void sp_http_set_async(sp_http_conn *c, void (*pump)(void *arg, sp_http_conn *c),
                       void (*closed)(void *arg, bool client_gone), void *arg);
/* Any thread: schedule the connection's pump on the loop thread. */
void sp_http_wake(sp_http_conn *c);

#endif
