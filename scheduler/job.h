/* scheduler/job.h — one generation request as the scheduler sees it, and its outbox.
 * A job is created by the API layer (prompt tokens, sampling, limits), submitted to the scheduler,
 * and consumed by whoever serves the client. The engine thread appends events (generated text,
 * per-token data, the end) to the job's outbox and calls `notify`; the consumer drains the outbox on
 * its own thread. `cancel` may be set from any thread and is checked every engine step.
 * Jobs are reference-counted: the scheduler holds one reference while it works on the job. */
#ifndef SP_SCHED_JOB_H
#define SP_SCHED_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/sampler.h"

typedef enum {
    SP_FINISH_NONE = 0,   /* still running */
    SP_FINISH_STOP,       /* end-of-generation token or a stop string */
    SP_FINISH_LENGTH,     /* max_tokens or the context is full */
    SP_FINISH_CANCELLED,  /* cancel flag (client gone, shutdown) */
    SP_FINISH_ERROR,      /* see job->error */
} sp_finish;

const char *sp_finish_name(sp_finish f); /* "stop", "length", "cancelled", "error" */

#define SP_JOB_MAX_TOP 20

typedef struct {
    int32_t token;
    float logprob;
} sp_token_prob;

/* One outbox entry: the text a generated token completed (may be empty while a UTF-8 character or
 * a possible stop string is held back), with its log-probability data when asked for. */
typedef struct {
    char *text;           /* owned, NUL-terminated */
    size_t len;
    int32_t token;        /* -1 for a final flush of held-back text */
    float logprob;
    int32_t n_top;
    sp_token_prob top[SP_JOB_MAX_TOP];
} sp_job_event;

typedef struct {
    int32_t *prompt;      /* owned */
    int32_t n_prompt;
    int32_t max_tokens;   /* < 0: until end of generation or context full */
    bool ignore_eos;
    sp_sampler_params sampling;  /* sampling.bias points into `bias` below */
    sp_logit_bias *bias;  /* owned */
    char **stop;          /* owned stop strings, matched across token boundaries, never emitted */
    int32_t n_stop;
    int32_t top_logprobs; /* -1: no logprobs; 0..SP_JOB_MAX_TOP: with that many alternatives */
} sp_job_params;

typedef struct sp_job sp_job;
struct sp_job {
    atomic_int refs;
    atomic_bool cancel;
    sp_job_params p;
    uint64_t id;

    /* outbox (engine thread pushes, consumer drains) */
    pthread_mutex_t mu;
    sp_job_event *events;
    size_t n_events, cap_events, head;
    bool started;         /* prompt accepted, generation begun */
    sp_finish finish;     /* set once, last */
    char error[256];
    int error_status;     /* HTTP-like status for errors: 400 bad prompt, 500 engine */

    /* accounting (written by the engine thread before finish is published) */
    int32_t n_prompt_tokens;
    int32_t n_cached_tokens;   /* prompt tokens reused from the previous request's KV */
    int32_t n_gen_tokens;
    double t_submit, t_start, t_first_token, t_end; /* seconds, monotonic */

    /* called from the engine thread after the outbox changes, with `mu` held: keep it short (wake
     * someone up) and never take a lock the consumer holds while draining */
    void (*notify)(void *arg);
    void *notify_arg;
};

/* A new job (refs = 1) that takes ownership of nothing yet; fill p, then submit. */
sp_job *sp_job_new(void);
void sp_job_ref(sp_job *j);
void sp_job_unref(sp_job *j);
void sp_job_cancel(sp_job *j);

/* Set or clear (fn NULL) the notify callback. Notify runs with the outbox lock held, so once this
 * returns with NULL no notify call is in flight or will start: safe to free what arg points to. */
void sp_job_set_notify(sp_job *j, void (*fn)(void *arg), void *arg);

/* Engine side. */
void sp_job_push(sp_job *j, const sp_job_event *ev); /* copies ev (takes ownership of ev->text) */
void sp_job_set_started(sp_job *j);
void sp_job_finish(sp_job *j, sp_finish f, int status, const char *error);

/* Consumer side: move up to max events out (caller frees each .text with free()); returns count.
 * *finish receives the finish state as of that moment (SP_FINISH_NONE while running), *started
 * whether generation began. Events pushed before finish are always drained before finish shows. */
size_t sp_job_drain(sp_job *j, sp_job_event *out, size_t max, sp_finish *finish, bool *started);

/* The finish state regardless of undrained events (SP_FINISH_NONE while running). */
sp_finish sp_job_state(sp_job *j);

double sp_now(void); /* monotonic seconds */

#endif
