/* server/metrics.h — the server's counters and histograms, rendered as Prometheus text for
 * GET /metrics. Updated from the loop thread; read under a mutex so any thread may render. */
#ifndef SP_SERVER_METRICS_H
#define SP_SERVER_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/sched.h"

#define SP_METRICS_ENDPOINTS 16
#define SP_METRICS_MAX_BUCKETS 16

typedef struct {
    const double *bounds;     /* upper bounds, ascending; +Inf implied */
    int n_bounds;
    uint64_t counts[SP_METRICS_MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
} sp_histogram;

typedef struct {
    pthread_mutex_t mu;
    /* requests by endpoint and status class */
    const char *endpoints[SP_METRICS_ENDPOINTS];
    uint64_t requests[SP_METRICS_ENDPOINTS][6]; /* index status / 100 (1xx..5xx), 0 unused */
    uint64_t cancelled;       /* generations ended because the client went away */
    uint64_t timed_out;       /* generations cut at --request-timeout */
    uint64_t prompt_tokens, generated_tokens, cached_tokens;
    sp_histogram ttft;        /* seconds from request to first token */
    sp_histogram tps;         /* generated tokens per second, per request */
} sp_metrics;

/* The HTTP layer's figures (sp_http_stats), copied by the caller. */
typedef struct {
    unsigned connections, requests;
    uint64_t refused, read_timeouts;
} sp_metrics_http;

void sp_metrics_init(sp_metrics *m);
void sp_metrics_destroy(sp_metrics *m);
void sp_metrics_request(sp_metrics *m, const char *endpoint, int status);
void sp_metrics_generation(sp_metrics *m, int32_t prompt, int32_t cached, int32_t generated, double ttft_s,
                           double gen_s, int cancelled);
void sp_metrics_timed_out(sp_metrics *m);
/* Prometheus text exposition, with the scheduler's gauges and counters (queue, running sequences,
 * KV blocks, prefix hits, batching; all zero while the model loads). malloc'd. */
char *sp_metrics_render(sp_metrics *m, const sp_sched_stats *st, const sp_metrics_http *http, int ready);

#endif
