/* scheduler/sched.h — the job queue and the engine thread: continuous batching over one paged KV
 * cache (engine/kv.h). Each step: the next token of every running sequence, then chunks of waiting
 * prompts up to a per-step token budget; one batched forward pass; per-sequence sampling; emit;
 * retire finished or cancelled sequences. A job starts when the KV blocks its prompt needs can be
 * had (prompt prefixes already cached are attached, not recomputed); the rest wait in the queue.
 * Interface: submit, cancel through the job, stats. */
#ifndef SP_SCHED_H
#define SP_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/model.h"
#include "scheduler/job.h"

typedef struct {
    int32_t n_ctx;        /* context per sequence (<= 0: the model's) */
    int32_t max_queue;    /* jobs waiting beyond this are refused (submit returns -1) */
    int32_t max_seqs;     /* sequences running at once (<= 0: 8) */
    int32_t step_tokens;  /* tokens per batched step: decodes first, then prompt chunks (<= 0: 128) */
    size_t kv_mem;        /* bytes for the KV block pool (0: room for max_seqs full contexts, capped
                           * at 512 MiB, and at least one full context) */
    int kv_type;          /* sp_kv_type: SP_KV_F32 (default) or SP_KV_Q8 */
    const char *kv_spill_dir;    /* spill released KV blocks to a file here (NULL: no spill) */
    uint64_t kv_spill_bytes;     /* the spill file's size limit */
    double kv_spill_idle_s;      /* spill cached blocks idle this long (<= 0: only when evicted) */
} sp_sched_opts;

typedef struct {
    uint64_t submitted, completed, cancelled, failed, rejected;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    int32_t queue_depth;  /* waiting, not running */
    int32_t running;      /* sequences running now */
    /* KV pool (blocks of SP_KV_BLOCK positions) */
    int32_t kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free, kv_blocks_spilled;
    uint64_t prefix_hit_tokens;  /* prompt tokens served from cached KV blocks */
    /* batching: steps run, and the sequences and tokens they carried (batch size = seqs / steps) */
    uint64_t steps, step_seqs, step_tokens;
    int32_t last_step_seqs, last_step_tokens;
} sp_sched_stats;

typedef struct sp_sched sp_sched;

/* Starts the engine thread. The model must outlive the scheduler. */
sp_sched *sp_sched_new(const sp_model *m, const sp_sched_opts *o, char *err, size_t errlen);
/* Cancels every job, joins the thread. */
void sp_sched_free(sp_sched *s);
/* Queue a job (the scheduler takes its own reference). -1 when the queue is full. */
int sp_sched_submit(sp_sched *s, sp_job *j);
/* Queue n jobs together (the n choices of one request): all of them, or none and -1 when the queue
 * has no room for all. */
int sp_sched_submit_many(sp_sched *s, sp_job *const *jobs, int n);
void sp_sched_get_stats(sp_sched *s, sp_sched_stats *out);
int32_t sp_sched_n_ctx(const sp_sched *s);

#endif
