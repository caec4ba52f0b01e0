/* scheduler/job.c — job lifetime (reference counts) and the outbox (a mutex-guarded queue: one
 * producer, the engine thread; one consumer, the connection serving the client). */
#include "scheduler/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double sp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *sp_finish_name(sp_finish f) {
    switch (f) {
    case SP_FINISH_STOP: return "stop";
    case SP_FINISH_LENGTH: return "length";
    case SP_FINISH_CANCELLED: return "cancelled";
    case SP_FINISH_ERROR: return "error";
    default: return "none";
    }
}

sp_job *sp_job_new(void) {
    sp_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    atomic_init(&j->refs, 1);
    atomic_init(&j->cancel, false);
    pthread_mutex_init(&j->mu, NULL);
    j->p.max_tokens = -1;
    j->p.top_logprobs = -1;
    j->p.sampling = sp_sampler_default_params();
    j->t_submit = sp_now();
    return j;
}

void sp_job_ref(sp_job *j) { atomic_fetch_add(&j->refs, 1); }

static void free_params(sp_job_params *p) {
    free(p->prompt);
    free(p->bias);
    for (int32_t i = 0; i < p->n_stop; i++) free(p->stop[i]);
    free(p->stop);
}

void sp_job_unref(sp_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (size_t i = j->head; i < j->n_events; i++) free(j->events[i].text);
    free(j->events);
    free_params(&j->p);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void sp_job_cancel(sp_job *j) { atomic_store(&j->cancel, true); }

/* Called with j->mu held. */
static void notify(sp_job *j) {
    if (j->notify) j->notify(j->notify_arg);
}

void sp_job_set_notify(sp_job *j, void (*fn)(void *arg), void *arg) {
    pthread_mutex_lock(&j->mu);
    j->notify = fn;
    j->notify_arg = arg;
    pthread_mutex_unlock(&j->mu);
}

void sp_job_push(sp_job *j, const sp_job_event *ev) {
    pthread_mutex_lock(&j->mu);
    if (j->head > 0 && j->head == j->n_events) j->head = j->n_events = 0;
    if (j->n_events == j->cap_events) {
        size_t cap = j->cap_events ? j->cap_events * 2 : 16;
        sp_job_event *e = realloc(j->events, cap * sizeof *e);
        if (!e) abort();
        j->events = e;
        j->cap_events = cap;
    }
    j->events[j->n_events++] = *ev;
    notify(j);
    pthread_mutex_unlock(&j->mu);
}

void sp_job_set_started(sp_job *j) {
    pthread_mutex_lock(&j->mu);
    j->started = true;
    notify(j);
    pthread_mutex_unlock(&j->mu);
}

void sp_job_finish(sp_job *j, sp_finish f, int status, const char *error) {
    pthread_mutex_lock(&j->mu);
    j->finish = f;
    j->error_status = status;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    notify(j);
    pthread_mutex_unlock(&j->mu);
}

size_t sp_job_drain(sp_job *j, sp_job_event *out, size_t max, sp_finish *finish, bool *started) {
    pthread_mutex_lock(&j->mu);
    size_t n = 0;
    while (n < max && j->head < j->n_events) out[n++] = j->events[j->head++];
    /* finish is reported only once every event before it has been taken */
    *finish = j->head == j->n_events ? j->finish : SP_FINISH_NONE;
    if (started) *started = j->started;
    pthread_mutex_unlock(&j->mu);
    return n;
}

sp_finish sp_job_state(sp_job *j) {
    pthread_mutex_lock(&j->mu);
    sp_finish f = j->finish;
    pthread_mutex_unlock(&j->mu);
    return f;
}
