/* server/http_impl.h — internals shared by the server/http_*.c files (not for other modules).
 * http.c owns the daemon and the libuv loop (sockets, timers, stop, the wake list drain); http_conn.c
 * owns one request's life (body, checks, handler, response, suspension, completion); http_util.c
 * holds the pure helpers (address parsing, key comparison, CORS origin matching, error JSON). */
#ifndef SP_SERVER_HTTP_IMPL_H
#define SP_SERVER_HTTP_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <uv.h>

#include "server/http.h"

typedef struct {
    char *name, *value;
} sp_http_hdr;

typedef enum { SP_RESP_NONE, SP_RESP_WHOLE, SP_RESP_STREAM } sp_resp_kind;

/* One accepted socket (MHD's socket_context), from MHD_CONNECTION_NOTIFY_STARTED to CLOSED. */
typedef struct sp_http_sock {
    struct MHD_Connection *mc;
    struct sp_http_sock *prev, *next;
    uint64_t deadline_ns;   /* the next request must have arrived by then (0: one is being answered) */
    bool over;              /* accepted past max_connections: answers 503 (but /health) */
} sp_http_sock;

struct sp_http_conn {
    sp_http *h;
    struct MHD_Connection *mc;
    sp_http_sock *sock;        /* its socket's bookkeeping (NULL if untracked) */
    sp_http_conn *prev, *next; /* every live request (loop thread) */
    sp_http_conn *wake_next;   /* wake list link, under h->wake_mu */
    bool in_wake;              /* under h->wake_mu */

    /* request */
    char *method, *path;       /* copies: the log line outlives MHD's strings */
    const char *cors_allow;    /* Access-Control-Allow-Origin value, or NULL */
    bool cors_vary;            /* the value echoes the request's Origin */
    char remote[64];
    uint64_t t0_ns;
    char *body;
    size_t body_len, body_cap;
    size_t discarded; /* body bytes dropped past max_body */
    bool too_large;
    bool handled;   /* the handler ran */
    bool rejected;  /* the layer answered by itself (401/413/431/503/204 preflight) */
    bool close_after; /* answer with "Connection: close" */

    /* response */
    sp_resp_kind kind;
    int status;
    char *ctype;
    sp_http_hdr *hdrs;
    int n_hdrs;
    char *resp;             /* whole body, or pending stream bytes */
    size_t resp_len, resp_off, resp_cap;
    bool stream_ended;
    bool queued;            /* handed to MHD_queue_response */
    bool suspended;         /* MHD connection suspended by us */
    uint64_t bytes_sent;
    char *note;

    /* async */
    bool async;
    void (*pump)(void *arg, sp_http_conn *c);
    void (*closed)(void *arg, bool client_gone);
    void *arg;
    bool closed_called;
    bool aborted;           /* client gone or server stopping: finish with an error */
};

struct sp_http {
    /* options (own copies) */
    char *host;
    int port;
    unsigned max_connections;
    unsigned mhd_limit;     /* max_connections + the reserve that answers 503 */
    size_t max_body;
    size_t max_header;
    unsigned idle_timeout_s;
    unsigned read_timeout_s;
    char *tls_cert, *tls_key;
    char **keys;
    size_t *key_lens;
    int n_keys;
    char **open_paths;
    int n_open_paths;
    char **origins;
    int n_origins;
    bool cors_on, cors_any;
    bool log_requests;
    void (*handler)(void *ud, sp_http_conn *c, const sp_http_request *req);
    void (*on_done)(void *ud, const char *method, const char *path, int status);
    void (*on_tick)(void *ud);
    void *ud;

    struct MHD_Daemon *d;
    uv_loop_t loop;
    uv_poll_t mhd_poll;     /* MHD's epoll fd readable -> MHD_run */
    uv_timer_t mhd_timer;   /* MHD_get_timeout, and "run MHD again soon" */
    uv_timer_t gone_timer;  /* detects clients that left while their request is suspended */
    uv_async_t wake_async;
    uv_async_t stop_async;
    uv_async_t drain_async;
    uv_timer_t tick_timer;  /* read deadlines, on_tick */
    bool handles_open;
    bool poll_open;
    bool shut;              /* sp_http_shutdown done */
    bool in_mhd;            /* inside MHD_run (no recursion) */
    atomic_int stop_requested;
    atomic_int drain_requested;
    bool draining;          /* loop thread: listening socket closed, waiting for requests to end */

    pthread_mutex_t wake_mu;
    sp_http_conn *wake_head, *wake_tail;
    sp_http_conn **drain;   /* loop thread scratch for the wake drain */
    size_t drain_cap;

    sp_http_conn *conns;    /* every live request */
    sp_http_sock *socks;    /* every open socket */
    /* counts: changed on the loop thread, atomics so that sp_http_get_stats may run anywhere */
    atomic_uint n_conns, n_socks;
    atomic_uint_fast64_t n_refused, n_read_timeouts;
    int n_suspended;
    char start_err[256];    /* MHD's last message while starting */
    bool starting;
};

/* http.c */
void sp_http_kick(sp_http *h);            /* run MHD soon (after a resume) */
void sp_http_gone_timer_update(sp_http *h);
void sp_http_wake_purge(sp_http *h, sp_http_conn *c);
void sp_http_drain_check(sp_http *h);     /* draining and no request left: stop */
void sp_http_tick_update(sp_http *h);     /* the tick runs while sockets are open or draining */

/* http_conn.c: MHD callbacks and request life */
enum MHD_Result sp_http_on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **req_cls);
void sp_http_on_completed(void *cls, struct MHD_Connection *mc, void **req_cls,
                          enum MHD_RequestTerminationCode toe);
void sp_http_on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);
void sp_http_conn_pump(sp_http_conn *c);           /* wake drain: run the pump */
void sp_http_conn_abort(sp_http_conn *c, bool gone); /* client gone / stopping */
bool sp_http_conn_client_left(const sp_http_conn *c);
void sp_http_conn_free(sp_http_conn *c);             /* unlink, purge, free */

/* http_util.c */
int sp_http_parse_addr(const char *host, int port, struct sockaddr_storage *ss, char *err, size_t errlen);
bool sp_http_ct_equal(const char *a, size_t alen, const char *b, size_t blen);
bool sp_http_bearer_ok(const sp_http *h, const char *authorization);
bool sp_http_is_open_path(const sp_http *h, const char *path);
const char *sp_http_cors_allow(const sp_http *h, const char *origin, bool *vary);
/* OpenAI-shaped error body: {"error":{"message":..,"type":..,"param":null,"code":..}} (malloc) */
char *sp_http_error_json(const char *message, const char *type, const char *code, size_t *len);
char **sp_http_split_list(const char *csv, int *n);
uint64_t sp_http_now_ns(void);

#endif
