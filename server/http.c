/* server/http.c — the daemon and its loop: sp_http_new binds libmicrohttpd in external-epoll mode
 * (no threads of its own) and wires it into a private libuv loop — a uv_poll on MHD's epoll fd and a
 * uv_timer driven by MHD_get_timeout, re-armed after every MHD_run. It also owns the wake list
 * (sp_http_wake from any thread -> uv_async -> pumps on the loop thread), the check that finds
 * clients gone while their request is suspended, and sp_http_stop. Requests themselves live in
 * http_conn.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/http_impl.h"

#define GONE_CHECK_MS 200

static void on_mhd_timer(uv_timer_t *t);

static unsigned n_connections(sp_http *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

/* One MHD_run, then the timer follows MHD's next deadline. At the connection limit MHD takes the
 * listening socket out of its epoll set and puts it back only at the start of a later MHD_run, so
 * when a run frees a slot another run follows at once (else new clients wait for unrelated I/O). */
static void run_mhd(sp_http *h) {
    if (!h->d || h->in_mhd) return;
    unsigned before = n_connections(h);
    h->in_mhd = true;
    MHD_run(h->d);
    h->in_mhd = false;
    if (!h->d) return;
    unsigned after = n_connections(h);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (after < h->mhd_limit && before >= h->mhd_limit)
        uv_timer_start(&h->mhd_timer, on_mhd_timer, 0, 0);
    else if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->mhd_timer, on_mhd_timer, ms > 3600000 ? 3600000 : (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->mhd_timer);
}

static void on_mhd_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_mhd_poll(uv_poll_t *p, int status, int events) { run_mhd(p->data); }

void sp_http_kick(sp_http *h) {
    if (!h->shut) uv_timer_start(&h->mhd_timer, on_mhd_timer, 0, 0);
}

/* ---- clients that leave while suspended ---- */

/* MHD does not watch a suspended connection, so a client that hangs up while its answer is being
 * computed would go unnoticed until the next write: look at those sockets a few times a second. */
static void on_gone_timer(uv_timer_t *t) {
    sp_http *h = t->data;
    for (sp_http_conn *c = h->conns; c; c = c->next)
        if (c->suspended && !c->aborted && sp_http_conn_client_left(c)) sp_http_conn_abort(c, true);
}

void sp_http_gone_timer_update(sp_http *h) {
    if (h->shut) return;
    bool active = uv_is_active((uv_handle_t *)&h->gone_timer);
    if (h->n_suspended > 0 && !active)
        uv_timer_start(&h->gone_timer, on_gone_timer, GONE_CHECK_MS, GONE_CHECK_MS);
    else if (h->n_suspended == 0 && active)
        uv_timer_stop(&h->gone_timer);
}

/* ---- the wake list ---- */

void sp_http_wake(sp_http_conn *c) {
    if (!c) return;
    sp_http *h = c->h;
    pthread_mutex_lock(&h->wake_mu);
    if (!c->in_wake) {
        c->in_wake = true;
        c->wake_next = NULL;
        if (h->wake_tail) h->wake_tail->wake_next = c;
        else h->wake_head = c;
        h->wake_tail = c;
    }
    pthread_mutex_unlock(&h->wake_mu);
    uv_async_send(&h->wake_async);
}

void sp_http_wake_purge(sp_http *h, sp_http_conn *c) {
    pthread_mutex_lock(&h->wake_mu);
    if (c->in_wake) {
        sp_http_conn *prev = NULL;
        for (sp_http_conn *p = h->wake_head; p; prev = p, p = p->wake_next) {
            if (p != c) continue;
            if (prev) prev->wake_next = p->wake_next;
            else h->wake_head = p->wake_next;
            if (h->wake_tail == p) h->wake_tail = prev;
            break;
        }
        c->in_wake = false;
    }
    pthread_mutex_unlock(&h->wake_mu);
}

/* Take the whole list at once, then pump each connection. Pumps never run MHD (resumes only arm the
 * timer), so no connection on the taken list can be freed before its turn. */
static void on_wake(uv_async_t *a) {
    sp_http *h = a->data;
    size_t n = 0;
    bool more = false;
    pthread_mutex_lock(&h->wake_mu);
    while (h->wake_head) {
        if (n == h->drain_cap) {
            size_t cap = h->drain_cap ? h->drain_cap * 2 : 64;
            sp_http_conn **d = realloc(h->drain, cap * sizeof *d);
            if (!d) {
                more = true;
                break;
            }
            h->drain = d;
            h->drain_cap = cap;
        }
        sp_http_conn *c = h->wake_head;
        h->wake_head = c->wake_next;
        c->in_wake = false;
        h->drain[n++] = c;
    }
    if (!h->wake_head) h->wake_tail = NULL;
    pthread_mutex_unlock(&h->wake_mu);
    for (size_t i = 0; i < n; i++) sp_http_conn_pump(h->drain[i]);
    if (more) uv_async_send(&h->wake_async);
}

/* ---- the tick: read deadlines, the owner's on_tick ---- */

/* A socket whose request has not arrived by its deadline (a slowloris trickling its headers, a body
 * that stalls, a kept-alive connection left idle) is shut down: libmicrohttpd then reads EOF and
 * closes it as if the client had left. shutdown() only, never close(): the descriptor stays MHD's. */
static void on_tick(uv_timer_t *t) {
    sp_http *h = t->data;
    uint64_t now = sp_http_now_ns();
    bool closed_some = false;
    for (sp_http_sock *s = h->socks; s; s = s->next) {
        if (!s->deadline_ns || now < s->deadline_ns) continue;
        s->deadline_ns = 0;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(s->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) continue;
        shutdown(ci->connect_fd, SHUT_RDWR);
        atomic_fetch_add(&h->n_read_timeouts, 1);
        closed_some = true;
    }
    if (closed_some) sp_http_kick(h);
    if (h->on_tick) h->on_tick(h->ud);
}

/* The tick runs while a socket is open or while draining; it never keeps the loop alive by itself. */
void sp_http_tick_update(sp_http *h) {
    if (h->shut || !h->handles_open) return;
    bool want = atomic_load(&h->n_socks) > 0 || h->draining;
    bool active = uv_is_active((uv_handle_t *)&h->tick_timer);
    if (want && !active) uv_timer_start(&h->tick_timer, on_tick, SP_HTTP_TICK_MS, SP_HTTP_TICK_MS);
    else if (!want && active) uv_timer_stop(&h->tick_timer);
}

/* ---- draining ---- */

void sp_http_drain_check(sp_http *h) {
    if (h->draining && !h->conns) sp_http_stop(h);
}

static void on_drain(uv_async_t *a) {
    sp_http *h = a->data;
    if (h->shut || h->draining || !h->d) return;
    h->draining = true;
    MHD_socket lfd = MHD_quiesce_daemon(h->d); /* no new connections from here on */
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    sp_http_tick_update(h);
    sp_http_drain_check(h);
}

void sp_http_drain(sp_http *h) {
    if (!h) return;
    if (atomic_exchange(&h->drain_requested, 1)) return;
    uv_async_send(&h->drain_async); /* async-signal-safe */
}

void sp_http_get_stats(const sp_http *h, sp_http_stats *st) {
    memset(st, 0, sizeof *st);
    if (!h) return;
    st->connections = atomic_load(&((sp_http *)h)->n_socks);
    st->requests = atomic_load(&((sp_http *)h)->n_conns);
    st->refused = atomic_load(&((sp_http *)h)->n_refused);
    st->read_timeouts = atomic_load(&((sp_http *)h)->n_read_timeouts);
    st->draining = atomic_load(&((sp_http *)h)->drain_requested) != 0;
}

/* ---- stopping ---- */

static void close_handle(uv_handle_t *hd) {
    if (!uv_is_closing(hd)) uv_close(hd, NULL);
}

/* Stop listening, fail every open request (closed(arg, true) for async ones), let MHD drop the
 * connections, close the loop's handles so that uv_run returns. Loop thread, or a loop not running. */
static void shutdown_all(sp_http *h) {
    if (h->shut) return;
    atomic_store(&h->stop_requested, 1); /* later sp_http_stop calls do nothing */
    if (h->d) {
        MHD_socket lfd = MHD_quiesce_daemon(h->d);
        if (lfd != MHD_INVALID_SOCKET) close(lfd);
        for (sp_http_conn *c = h->conns; c; c = c->next) sp_http_conn_abort(c, true);
        /* resumed connections must go through MHD once before MHD_stop_daemon */
        h->in_mhd = true;
        MHD_run(h->d);
        h->in_mhd = false;
    }
    h->shut = true;
    if (h->handles_open) {
        if (h->poll_open) close_handle((uv_handle_t *)&h->mhd_poll);
        close_handle((uv_handle_t *)&h->mhd_timer);
        close_handle((uv_handle_t *)&h->gone_timer);
        close_handle((uv_handle_t *)&h->wake_async);
        close_handle((uv_handle_t *)&h->stop_async);
        close_handle((uv_handle_t *)&h->drain_async);
        close_handle((uv_handle_t *)&h->tick_timer);
    }
    if (h->d) {
        MHD_stop_daemon(h->d); /* completes (and frees) what is left */
        h->d = NULL;
    }
}

static void on_stop(uv_async_t *a) { shutdown_all(a->data); }

void sp_http_stop(sp_http *h) {
    if (!h) return;
    if (atomic_exchange(&h->stop_requested, 1)) return;
    uv_async_send(&h->stop_async); /* async-signal-safe */
}

/* ---- creation ---- */

/* MHD's messages: while starting, the first one becomes sp_http_new's error; later ones go to
 * stderr when request logging is on. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    sp_http *h = cls;
    if (h->starting) {
        if (h->start_err[0]) return;
        vsnprintf(h->start_err, sizeof h->start_err, fmt, ap);
        size_t n = strlen(h->start_err);
        while (n > 0 && (h->start_err[n - 1] == '\n' || h->start_err[n - 1] == ' ')) h->start_err[--n] = 0;
        return;
    }
    if (!h->log_requests) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    /* what the request log line already says: clients gone, requests we ended on purpose */
    static const char *const known[] = {"Application reported internal error",
                                        "application error generating response",
                                        "no longer available for sending", "Failed to send",
                                        "Connection reset", "Broken pipe"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strstr(line, known[i])) return;
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n') line[--n] = 0;
    fprintf(stderr, "http: %s\n", line);
}

static char **copy_strs(const char *const *src, int n, int *out_n) {
    *out_n = 0;
    if (!src || n <= 0) return NULL;
    char **d = calloc((size_t)n, sizeof *d);
    if (!d) return NULL;
    for (int i = 0; i < n; i++) {
        if (!src[i]) continue;
        d[*out_n] = strdup(src[i]);
        if (d[*out_n]) (*out_n)++;
    }
    return d;
}

static void free_strs(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static bool copy_opts(sp_http *h, const sp_http_opts *o) {
    h->host = strdup(o->host && *o->host ? o->host : "127.0.0.1");
    h->port = o->port;
    h->max_connections = o->max_connections ? o->max_connections : 512;
    unsigned reserve = h->max_connections / 8 > 8 ? h->max_connections / 8 : 8;
    h->mhd_limit = h->max_connections + reserve;
    h->max_body = o->max_body ? o->max_body : (size_t)8 << 20;
    h->max_header = o->max_header ? o->max_header : (size_t)16 << 10;
    h->idle_timeout_s = o->idle_timeout_s ? o->idle_timeout_s : 60;
    h->read_timeout_s = o->read_timeout_s ? o->read_timeout_s : 15;
    if ((o->tls_cert_pem != NULL) != (o->tls_key_pem != NULL)) return false;
    if (o->tls_cert_pem) {
        h->tls_cert = strdup(o->tls_cert_pem);
        h->tls_key = strdup(o->tls_key_pem);
        if (!h->tls_cert || !h->tls_key) return false;
    }
    h->keys = copy_strs(o->api_keys, o->n_api_keys, &h->n_keys);
    if (h->n_keys > 0) {
        h->key_lens = calloc((size_t)h->n_keys, sizeof *h->key_lens);
        if (!h->key_lens) return false;
        for (int i = 0; i < h->n_keys; i++) h->key_lens[i] = strlen(h->keys[i]);
    }
    if (o->n_api_keys > 0 && h->n_keys != o->n_api_keys) return false;
    h->open_paths = copy_strs(o->open_paths, o->n_open_paths, &h->n_open_paths);
    if (o->cors_origins) {
        h->cors_on = true;
        h->origins = sp_http_split_list(o->cors_origins, &h->n_origins);
        if (!h->origins) return false;
        for (int i = 0; i < h->n_origins; i++) h->cors_any |= strcmp(h->origins[i], "*") == 0;
    }
    h->log_requests = o->log_requests;
    h->handler = o->handler;
    h->on_done = o->on_done;
    h->on_tick = o->on_tick;
    h->ud = o->ud;
    return h->host != NULL;
}

static void init_handles(sp_http *h) {
    uv_timer_init(&h->loop, &h->mhd_timer);
    uv_timer_init(&h->loop, &h->gone_timer);
    uv_async_init(&h->loop, &h->wake_async, on_wake);
    uv_async_init(&h->loop, &h->stop_async, on_stop);
    uv_async_init(&h->loop, &h->drain_async, on_drain);
    uv_timer_init(&h->loop, &h->tick_timer);
    h->mhd_timer.data = h->gone_timer.data = h->tick_timer.data = h;
    h->wake_async.data = h->stop_async.data = h->drain_async.data = h;
    /* the gone-check timer and the tick must not keep the loop alive by themselves */
    uv_unref((uv_handle_t *)&h->gone_timer);
    uv_unref((uv_handle_t *)&h->tick_timer);
    h->handles_open = true;
}

static bool start_daemon(sp_http *h, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    if (sp_http_parse_addr(h->host, h->port, &ss, err, errlen) != 0) return false;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* HTTPS: libmicrohttpd's own TLS (GnuTLS), certificate and key given as PEM text */
    struct MHD_OptionItem tls[] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (h->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "HTTPS is not available: this libmicrohttpd was built without TLS support "
                                  "(Debian's libmicrohttpd12 has it, through GnuTLS)");
            return false;
        }
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
    }
    /* the per-connection pool holds the request head: room for max_header and then some */
    size_t pool = h->max_header * 2 > ((size_t)32 << 10) ? h->max_header * 2 : ((size_t)32 << 10);
    h->starting = true;
    h->d = MHD_start_daemon(flags, (uint16_t)h->port, NULL, NULL, sp_http_on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, /* must come first */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->mhd_limit,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->idle_timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
                            MHD_OPTION_NOTIFY_COMPLETED, sp_http_on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, sp_http_on_connection, h,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u,
                            MHD_OPTION_ARRAY, tls,
                            MHD_OPTION_END);
    h->starting = false;
    if (!h->d) {
        snprintf(err, errlen, "cannot %s on %s:%d: %s", h->tls_cert ? "start HTTPS" : "listen", h->host, h->port,
                 h->start_err[0] ? h->start_err : "libmicrohttpd failed to start");
        return false;
    }
    const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!ep || ep->epoll_fd < 0 || uv_poll_init(&h->loop, &h->mhd_poll, ep->epoll_fd) != 0) {
        snprintf(err, errlen, "cannot watch libmicrohttpd's epoll fd");
        return false;
    }
    h->poll_open = true;
    h->mhd_poll.data = h;
    uv_poll_start(&h->mhd_poll, UV_READABLE, on_mhd_poll);
    h->port = pi ? pi->port : h->port;
    return true;
}

sp_http *sp_http_new(const sp_http_opts *o, char *err, size_t errlen) {
    sp_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->wake_mu, NULL);
    if (uv_loop_init(&h->loop) != 0) {
        snprintf(err, errlen, "uv_loop_init failed");
        pthread_mutex_destroy(&h->wake_mu);
        free(h);
        return NULL;
    }
    init_handles(h);
    if (!copy_opts(h, o)) {
        snprintf(err, errlen, (o->tls_cert_pem != NULL) != (o->tls_key_pem != NULL)
                                  ? "HTTPS needs both a certificate and its key" : "out of memory");
        sp_http_free(h);
        return NULL;
    }
    if (!start_daemon(h, err, errlen)) {
        sp_http_free(h);
        return NULL;
    }
    return h;
}

int sp_http_port(const sp_http *h) { return h ? h->port : -1; }

int sp_http_run(sp_http *h) {
    if (!h || h->shut) return -1;
    run_mhd(h); /* arms the timer */
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return 0;
}

void sp_http_free(sp_http *h) {
    if (!h) return;
    shutdown_all(h);
    uv_run(&h->loop, UV_RUN_DEFAULT); /* finishes the closes */
    uv_loop_close(&h->loop);
    while (h->conns) sp_http_conn_free(h->conns); /* none normally: MHD_stop_daemon completes all */
    free(h->host);
    if (h->tls_key) { /* the private key: not left in freed memory */
        volatile char *k = h->tls_key;
        for (size_t i = 0; k[i]; i++) k[i] = 0;
    }
    free(h->tls_key);
    free(h->tls_cert);
    free_strs(h->keys, h->n_keys);
    free(h->key_lens);
    free_strs(h->open_paths, h->n_open_paths);
    free_strs(h->origins, h->n_origins);
    free(h->drain);
    pthread_mutex_destroy(&h->wake_mu);
    free(h);
}
