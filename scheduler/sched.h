/* scheduler/sched.h — the job queue and the engine thread. This first version runs jobs one after
 * another on one sequence context; the next prompt reuses the KV of the longest common prefix with
 * the previous one (multi-turn chat re-reads only the new turn). Continuous batching (issue 6)
 * keeps this interface: submit, cancel through the job, stats. */
#ifndef SP_SCHED_H
#define SP_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/model.h"
#include "scheduler/job.h"

typedef struct {
    int32_t n_ctx;        /* context per sequence (<= 0: the model's) */
    int32_t max_queue;    /* jobs waiting beyond this are refused (submit returns -1) */
} sp_sched_opts;

typedef struct {
    uint64_t submitted, completed, cancelled, failed, rejected;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    int32_t queue_depth;  /* waiting, not running */
    int32_t running;      /* 0 or 1 */
} sp_sched_stats;

typedef struct sp_sched sp_sched;

/* Starts the engine thread. The model must outlive the scheduler. */
sp_sched *sp_sched_new(const sp_model *m, const sp_sched_opts *o, char *err, size_t errlen);
/* Cancels every job, joins the thread. */
void sp_sched_free(sp_sched *s);
/* Queue a job (the scheduler takes its own reference). -1 when the queue is full. */
int sp_sched_submit(sp_sched *s, sp_job *j);
void sp_sched_get_stats(sp_sched *s, sp_sched_stats *out);
int32_t sp_sched_n_ctx(const sp_sched *s);

#endif
