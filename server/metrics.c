/* server/metrics.c — see metrics.h. */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double ttft_bounds[] = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double tps_bounds[] = {1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000};

void sp_metrics_init(sp_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->ttft.bounds = ttft_bounds;
    m->ttft.n_bounds = (int)(sizeof ttft_bounds / sizeof ttft_bounds[0]);
    m->tps.bounds = tps_bounds;
    m->tps.n_bounds = (int)(sizeof tps_bounds / sizeof tps_bounds[0]);
}

void sp_metrics_destroy(sp_metrics *m) { pthread_mutex_destroy(&m->mu); }

static void observe(sp_histogram *h, double v) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void sp_metrics_request(sp_metrics *m, const char *endpoint, int status) {
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < SP_METRICS_ENDPOINTS && m->endpoints[i] && strcmp(m->endpoints[i], endpoint) != 0) i++;
    if (i == SP_METRICS_ENDPOINTS) i = SP_METRICS_ENDPOINTS - 1; /* "other" overflow: endpoints are a fixed set */
    if (!m->endpoints[i]) m->endpoints[i] = endpoint;
    m->requests[i][cls]++;
    pthread_mutex_unlock(&m->mu);
}

void sp_metrics_generation(sp_metrics *m, int32_t prompt, int32_t cached, int32_t generated, double ttft_s,
                           double gen_s, int cancelled) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)(prompt > 0 ? prompt : 0);
    m->cached_tokens += (uint64_t)(cached > 0 ? cached : 0);
    m->generated_tokens += (uint64_t)(generated > 0 ? generated : 0);
    if (cancelled) m->cancelled++;
    if (generated > 0 && ttft_s >= 0) observe(&m->ttft, ttft_s);
    if (generated > 1 && gen_s > 0) observe(&m->tps, (generated - 1) / gen_s);
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0);
        b->buf = realloc(b->buf, b->cap);
        if (!b->buf) abort();
    }
}

static void histogram(sbuf *b, const char *name, const char *help, const sp_histogram *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name, h->sum,
        name, (unsigned long long)h->count);
}

void sp_metrics_timed_out(sp_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->timed_out++;
    pthread_mutex_unlock(&m->mu);
}

char *sp_metrics_render(sp_metrics *m, const sp_sched_stats *st, const sp_metrics_http *http, int ready) {
    sbuf b = {malloc(4096), 0, 4096};
    pthread_mutex_lock(&m->mu);
    put(&b, "# HELP sparrow_requests_total HTTP requests by endpoint and status class.\n"
            "# TYPE sparrow_requests_total counter\n");
    for (int i = 0; i < SP_METRICS_ENDPOINTS && m->endpoints[i]; i++)
        for (int c = 1; c <= 5; c++)
            if (m->requests[i][c])
                put(&b, "sparrow_requests_total{endpoint=\"%s\",status=\"%dxx\"} %llu\n", m->endpoints[i], c,
                    (unsigned long long)m->requests[i][c]);
    put(&b, "# HELP sparrow_requests_cancelled_total Generations stopped because the client went away.\n"
            "# TYPE sparrow_requests_cancelled_total counter\nsparrow_requests_cancelled_total %llu\n",
        (unsigned long long)m->cancelled);
    put(&b, "# HELP sparrow_requests_timed_out_total Generations cut at the request timeout (finish_reason length).\n"
            "# TYPE sparrow_requests_timed_out_total counter\nsparrow_requests_timed_out_total %llu\n",
        (unsigned long long)m->timed_out);
    put(&b, "# HELP sparrow_prompt_tokens_total Prompt tokens of finished requests.\n"
            "# TYPE sparrow_prompt_tokens_total counter\nsparrow_prompt_tokens_total %llu\n",
        (unsigned long long)m->prompt_tokens);
    put(&b, "# HELP sparrow_prompt_tokens_cached_total Prompt tokens whose KV was reused.\n"
            "# TYPE sparrow_prompt_tokens_cached_total counter\nsparrow_prompt_tokens_cached_total %llu\n",
        (unsigned long long)m->cached_tokens);
    put(&b, "# HELP sparrow_generated_tokens_total Generated tokens.\n"
            "# TYPE sparrow_generated_tokens_total counter\nsparrow_generated_tokens_total %llu\n",
        (unsigned long long)m->generated_tokens);
    histogram(&b, "sparrow_time_to_first_token_seconds", "Seconds from request to first generated token.", &m->ttft);
    histogram(&b, "sparrow_generation_tokens_per_second", "Decode speed of each request.", &m->tps);
    pthread_mutex_unlock(&m->mu);
    put(&b, "# HELP sparrow_queue_depth Sequences waiting for the engine (a request with n choices queues n).\n"
            "# TYPE sparrow_queue_depth gauge\nsparrow_queue_depth %d\n", st->queue_depth);
    put(&b, "# HELP sparrow_requests_running Sequences being generated now.\n# TYPE sparrow_requests_running gauge\n"
            "sparrow_requests_running %d\n", st->running);
    put(&b, "# HELP sparrow_sequences_total Sequences (one per choice) by outcome in the scheduler.\n"
            "# TYPE sparrow_sequences_total counter\n"
            "sparrow_sequences_total{outcome=\"completed\"} %llu\nsparrow_sequences_total{outcome=\"cancelled\"} %llu\n"
            "sparrow_sequences_total{outcome=\"failed\"} %llu\nsparrow_sequences_total{outcome=\"rejected\"} %llu\n",
        (unsigned long long)st->completed, (unsigned long long)st->cancelled, (unsigned long long)st->failed,
        (unsigned long long)st->rejected);
    /* sparrow_kv_blocks_total is the pool's size, a gauge (Prometheus lint would prefer no _total) */
    put(&b, "# HELP sparrow_kv_blocks KV cache blocks by state: referenced by sequences, cached (reusable "
            "prefixes), free; spilled: reusable prefixes moved to the spill file on flash.\n# TYPE sparrow_kv_blocks gauge\n"
            "sparrow_kv_blocks{state=\"used\"} %d\nsparrow_kv_blocks{state=\"cached\"} %d\n"
            "sparrow_kv_blocks{state=\"free\"} %d\nsparrow_kv_blocks{state=\"spilled\"} %d\n",
        st->kv_blocks_used, st->kv_blocks_cached, st->kv_blocks_free, st->kv_blocks_spilled);
    put(&b, "# HELP sparrow_kv_blocks_total KV cache blocks in the pool.\n# TYPE sparrow_kv_blocks_total gauge\n"
            "sparrow_kv_blocks_total %d\n", st->kv_blocks_total);
    put(&b, "# HELP sparrow_prefix_hit_tokens_total Prompt tokens served from cached KV blocks.\n"
            "# TYPE sparrow_prefix_hit_tokens_total counter\nsparrow_prefix_hit_tokens_total %llu\n",
        (unsigned long long)st->prefix_hit_tokens);
    put(&b, "# HELP sparrow_batch_steps_total Batched engine steps (forward passes).\n"
            "# TYPE sparrow_batch_steps_total counter\nsparrow_batch_steps_total %llu\n",
        (unsigned long long)st->steps);
    put(&b, "# HELP sparrow_batch_seqs_total Sequences carried by all steps (mean batch = seqs / steps).\n"
            "# TYPE sparrow_batch_seqs_total counter\nsparrow_batch_seqs_total %llu\n",
        (unsigned long long)st->step_seqs);
    put(&b, "# HELP sparrow_batch_tokens_total Tokens carried by all steps (decodes and prompt chunks).\n"
            "# TYPE sparrow_batch_tokens_total counter\nsparrow_batch_tokens_total %llu\n",
        (unsigned long long)st->step_tokens);
    put(&b, "# HELP sparrow_batch_seqs_last Sequences in the last step.\n# TYPE sparrow_batch_seqs_last gauge\n"
            "sparrow_batch_seqs_last %d\n", st->last_step_seqs);
    put(&b, "# HELP sparrow_batch_tokens_last Tokens in the last step.\n# TYPE sparrow_batch_tokens_last gauge\n"
            "sparrow_batch_tokens_last %d\n", st->last_step_tokens);
    if (http) {
        put(&b, "# HELP sparrow_http_connections Open client connections.\n# TYPE sparrow_http_connections gauge\n"
                "sparrow_http_connections %u\n", http->connections);
        put(&b, "# HELP sparrow_http_requests_active Requests being answered.\n# TYPE sparrow_http_requests_active gauge\n"
                "sparrow_http_requests_active %u\n", http->requests);
        put(&b, "# HELP sparrow_http_connections_refused_total Requests answered 503 too_many_connections.\n"
                "# TYPE sparrow_http_connections_refused_total counter\nsparrow_http_connections_refused_total %llu\n",
            (unsigned long long)http->refused);
        put(&b, "# HELP sparrow_http_read_timeouts_total Connections closed for not sending a whole request within "
                "the read timeout.\n# TYPE sparrow_http_read_timeouts_total counter\nsparrow_http_read_timeouts_total %llu\n",
            (unsigned long long)http->read_timeouts);
    }
    put(&b, "# HELP sparrow_ready Whether the model is loaded.\n# TYPE sparrow_ready gauge\nsparrow_ready %d\n", ready);
    return b.buf;
}
