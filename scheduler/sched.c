/* scheduler/sched.c — the job queue and the engine thread: continuous batching (sched.h).
 * The engine thread owns the KV pool (engine/kv.h), the forward scratch and the running sequences.
 * One step:
 *   1. admit queued jobs while a sequence slot is free and the KV blocks their prompts need (beyond
 *      what the prefix index already holds) can be had; a job whose prompt begins like a prompt
 *      still being prefilled waits for it, so siblings and repeated system prompts share blocks;
 *   2. retire cancelled sequences;
 *   3. batch: the next token of every decoding sequence, then prompt chunks of prefilling ones up
 *      to the step's token budget (a long prompt never stalls running streams for long);
 *   4. one forward pass; then per sequence with logits: sample, detokenize, match stop strings,
 *      emit to the job's outbox, and retire it when done.
 * Each sequence has its own sampler (its own seeded RNG), and the forward pass is batch-invariant,
 * so a request gives the same tokens alone or among others. */
#include "scheduler/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler/stop.h"

typedef enum { PHASE_PREFILL, PHASE_DECODE } phase_t;

typedef struct {
    sp_job *job;
    sp_kv_seq *kv;
    sp_sampler *smp;
    sp_detok d;
    sp_stop st;
    phase_t phase;
    int32_t fed;          /* prompt tokens in the KV cache (cached + computed) */
    int32_t next_tok;     /* decode: the token to feed this step */
    float *logits;        /* n_vocab */
    bool in_batch, want_logits;
    int32_t chunk;        /* prompt tokens fed this step */
} seq_t;

struct sp_sched {
    const sp_model *m;
    int32_t n_ctx, max_seqs, step_tokens;
    bool spill;
    double spill_idle_s;
    sp_kv *kv;
    sp_fwd *fwd;
    float *raw;           /* copy of the logits for logprobs */
    char *piece;          /* one detokenized token */
    int32_t piece_cap;
    seq_t *seqs;          /* [max_seqs], the first n_run in use, in admission order */
    int32_t n_run;
    sp_batch_item *items;
    seq_t **item_seq;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    sp_job **queue;       /* ring buffer */
    int32_t q_head, q_len, q_cap;
    sp_sched_stats stats;
};

/* ---- queue ---- */

int sp_sched_submit_many(sp_sched *s, sp_job *const *jobs, int n) {
    pthread_mutex_lock(&s->mu);
    if (s->quit || s->q_len + n > s->q_cap) {
        s->stats.rejected += (uint64_t)n;
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    double now = sp_now();
    for (int i = 0; i < n; i++) {
        sp_job_ref(jobs[i]);
        jobs[i]->t_submit = now;
        s->queue[(s->q_head + s->q_len++) % s->q_cap] = jobs[i];
        s->stats.submitted++;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sp_sched_submit(sp_sched *s, sp_job *j) { return sp_sched_submit_many(s, &j, 1); }

void sp_sched_get_stats(sp_sched *s, sp_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queue_depth = s->q_len;
    pthread_mutex_unlock(&s->mu);
}

int32_t sp_sched_n_ctx(const sp_sched *s) { return s->n_ctx; }

static bool cancelled(const sp_job *j) { return atomic_load(&j->cancel); }

/* log-softmax data of the raw logits: the chosen token's logprob and the top alternatives. */
static void fill_logprobs(const float *raw, int32_t n_vocab, int32_t tok, int32_t n_top, sp_job_event *ev) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) mx = raw[i] > mx ? raw[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)raw[i] - mx);
    float lse = mx + (float)log(sum);
    ev->logprob = raw[tok] - lse;
    ev->n_top = 0;
    for (int32_t i = 0; i < n_vocab; i++) { /* insertion into a short sorted list */
        float lp = raw[i] - lse;
        int32_t k = ev->n_top < n_top ? ev->n_top++ : n_top;
        if (k == n_top && (n_top == 0 || lp <= ev->top[n_top - 1].logprob)) continue;
        if (k == n_top) k = n_top - 1;
        while (k > 0 && ev->top[k - 1].logprob < lp) { ev->top[k] = ev->top[k - 1]; k--; }
        ev->top[k] = (sp_token_prob){i, lp};
    }
}

static void push_text(sp_job *j, char *text, size_t len, int32_t tok, const sp_job_event *lp) {
    sp_job_event ev;
    if (lp) ev = *lp;
    else memset(&ev, 0, sizeof ev);
    ev.text = text;
    ev.len = len;
    ev.token = tok;
    sp_job_push(j, &ev);
}

/* Release what the detokenizer and stop matcher still hold. */
static void flush_tail(sp_job *j, sp_detok *d, sp_stop *st) {
    char tail[16];
    int32_t nt = sp_detok_flush(d, tail, sizeof tail);
    char *out;
    size_t out_len;
    bool matched = sp_stop_feed(st, tail, nt > 0 ? (size_t)nt : 0, &out, &out_len);
    if (!matched) {
        char *rest;
        size_t rest_len;
        sp_stop_flush(st, &rest, &rest_len);
        char *all = realloc(out, out_len + rest_len + 1);
        if (!all) abort();
        memcpy(all + out_len, rest, rest_len + 1);
        out = all;
        out_len += rest_len;
        free(rest);
    }
    if (out_len) push_text(j, out, out_len, -1, NULL);
    else free(out);
}

/* ---- sequences ---- */

/* Copy the KV pool's figures into the stats (mutex held). */
static void kv_stats_locked(sp_sched *s) {
    sp_kv_stats ks;
    sp_kv_get_stats(s->kv, &ks);
    s->stats.kv_blocks_total = ks.total, s->stats.kv_blocks_used = ks.used;
    s->stats.kv_blocks_cached = ks.cached, s->stats.kv_blocks_free = ks.free;
    s->stats.prefix_hit_tokens = ks.hit_tokens;
    s->stats.kv_blocks_spilled = ks.spilled;
}

/* End a sequence: flush held-back text on a normal end, account, publish the finish, free. Engine
 * thread, mutex not held. */
static void retire(sp_sched *s, int32_t i, sp_finish f, int status, const char *err) {
    seq_t *q = &s->seqs[i];
    sp_job *j = q->job;
    if (f == SP_FINISH_STOP || f == SP_FINISH_LENGTH) flush_tail(j, &q->d, &q->st);
    j->t_end = sp_now();
    sp_stop_free(&q->st);
    sp_sampler_free(q->smp);
    sp_kv_seq_free(q->kv);
    free(q->logits);
    pthread_mutex_lock(&s->mu);
    if (f == SP_FINISH_CANCELLED) s->stats.cancelled++;
    else if (f == SP_FINISH_ERROR) s->stats.failed++;
    else s->stats.completed++;
    s->stats.prompt_tokens += (uint64_t)j->n_prompt_tokens;
    s->stats.cached_tokens += (uint64_t)j->n_cached_tokens;
    s->stats.generated_tokens += (uint64_t)j->n_gen_tokens;
    memmove(&s->seqs[i], &s->seqs[i + 1], (size_t)(s->n_run - i - 1) * sizeof *s->seqs);
    s->n_run--;
    s->stats.running = s->n_run;
    kv_stats_locked(s);
    pthread_mutex_unlock(&s->mu);
    sp_job_finish(j, f, status, f == SP_FINISH_ERROR ? err : NULL);
    sp_job_unref(j);
}

/* A job refused before it ran (mutex not held). */
static void refuse(sp_sched *s, sp_job *j, int status, const char *err) {
    j->t_start = j->t_end = sp_now();
    j->n_prompt_tokens = j->p.n_prompt;
    pthread_mutex_lock(&s->mu);
    s->stats.failed++;
    pthread_mutex_unlock(&s->mu);
    sp_job_finish(j, SP_FINISH_ERROR, status, err);
    sp_job_unref(j);
}

/* Is a prompt still being prefilled the same as p, or does it begin with the same first block? Then
 * p waits for it: an identical prompt (the n choices of one request) is forked from it when its
 * prefill ends, sharing every block; a common first block is attached from the prefix index. */
static bool shares_pending_prefix(const sp_sched *s, const int32_t *p, int32_t n) {
    for (int32_t i = 0; i < s->n_run; i++) {
        const seq_t *q = &s->seqs[i];
        if (q->phase != PHASE_PREFILL) continue;
        const int32_t *qp = q->job->p.prompt;
        int32_t qn = q->job->p.n_prompt;
        if (qn == n && !memcmp(qp, p, (size_t)n * sizeof *p)) return true;
        if (n > SP_KV_BLOCK && qn > SP_KV_BLOCK && !memcmp(qp, p, SP_KV_BLOCK * sizeof *p)) return true;
    }
    return false;
}

/* Fill a new slot for job j with the given KV sequence (mutex held). */
static seq_t *add_seq(sp_sched *s, sp_job *j, sp_kv_seq *kv, float *logits, sp_sampler *smp, int32_t cached) {
    seq_t *q = &s->seqs[s->n_run++];
    memset(q, 0, sizeof *q);
    q->job = j;
    q->kv = kv;
    q->smp = smp;
    q->logits = logits;
    q->phase = PHASE_PREFILL;
    q->fed = cached;
    sp_detok_init(&q->d, s->m->tok, false);
    sp_stop_init(&q->st, j->p.stop, j->p.n_stop);
    j->t_start = sp_now();
    j->n_prompt_tokens = j->p.n_prompt;
    j->n_cached_tokens = cached;
    s->stats.running = s->n_run;
    return q;
}

/* q's prompt is done: queued jobs with the very same prompt (siblings) start now as forks of q,
 * sharing all its blocks (the partial last one is copied when first written) and its logits.
 * Returns how many started; they sample in this step like q. */
static int fork_siblings(sp_sched *s, seq_t *q) {
    int started = 0;
    const int32_t *p = q->job->p.prompt;
    int32_t n = q->job->p.n_prompt;
    pthread_mutex_lock(&s->mu);
    while (s->q_len > 0 && s->n_run < s->max_seqs) {
        sp_job *j = s->queue[s->q_head];
        if (j->p.n_prompt != n || memcmp(j->p.prompt, p, (size_t)n * sizeof *p)) break;
        sp_kv_seq *kv = sp_kv_seq_fork(q->kv);
        float *logits = malloc((size_t)s->m->hp.n_vocab * sizeof *logits);
        sp_sampler *smp = sp_sampler_new(&j->p.sampling, s->m->hp.n_vocab);
        if (!kv || !logits || !smp) abort();
        memcpy(logits, q->logits, (size_t)s->m->hp.n_vocab * sizeof *logits);
        s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
        size_t qi = (size_t)(q - s->seqs);
        seq_t *f = add_seq(s, j, kv, logits, smp, n);
        q = &s->seqs[qi];
        f->phase = PHASE_DECODE;
        f->in_batch = true;
        started++;
    }
    pthread_mutex_unlock(&s->mu);
    return started;
}

/* Start the job at the head of the queue if it can run now. Returns 1 started (or refused: the
 * queue moved), 0 it must wait. Mutex held on entry and exit (released around the work). */
static int admit_one(sp_sched *s) {
    sp_job *j = s->queue[s->q_head];
    const int32_t *p = j->p.prompt;
    int32_t n = j->p.n_prompt;
    char err[256];
    if (n <= 0 || n >= s->n_ctx) {
        s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
        pthread_mutex_unlock(&s->mu);
        snprintf(err, sizeof err, "the prompt has %d tokens but the context holds %d (at most %d prompt tokens)", n,
                 s->n_ctx, s->n_ctx - 1);
        refuse(s, j, 400, err);
        pthread_mutex_lock(&s->mu);
        return 1;
    }
    for (int32_t i = 0; i < n; i++) { /* a bad id must not reach a batch it shares with others */
        if (p[i] < 0 || p[i] >= s->m->hp.n_vocab) {
            s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
            pthread_mutex_unlock(&s->mu);
            snprintf(err, sizeof err, "prompt token %d: id %d is out of range [0, %d)", i, p[i], s->m->hp.n_vocab);
            refuse(s, j, 400, err);
            pthread_mutex_lock(&s->mu);
            return 1;
        }
    }
    if (s->n_run >= s->max_seqs || shares_pending_prefix(s, p, n)) return 0;
    pthread_mutex_unlock(&s->mu);
    sp_kv_seq *kv = sp_kv_seq_new(s->kv, s->n_ctx);
    float *logits = malloc((size_t)s->m->hp.n_vocab * sizeof *logits);
    sp_sampler *smp = sp_sampler_new(&j->p.sampling, s->m->hp.n_vocab);
    if (!kv || !logits || !smp) abort();
    int32_t cached = sp_kv_seq_attach_prefix(kv, p, n);
    /* the whole prompt's blocks plus one to start generating */
    int32_t need = sp_kv_seq_blocks_needed(kv, n - cached) + 1;
    if (need > sp_kv_available(s->kv)) {
        sp_kv_seq_free(kv);
        free(logits);
        sp_sampler_free(smp);
        pthread_mutex_lock(&s->mu);
        if (s->n_run > 0) return 0; /* blocks come back as running sequences end */
        s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
        pthread_mutex_unlock(&s->mu);
        snprintf(err, sizeof err, "the prompt needs %d KV blocks of %d positions but the KV cache has %d in all",
                 need, SP_KV_BLOCK, sp_kv_available(s->kv));
        refuse(s, j, 503, err);
        pthread_mutex_lock(&s->mu);
        return 1;
    }
    pthread_mutex_lock(&s->mu);
    s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
    add_seq(s, j, kv, logits, smp, cached);
    return 1;
}

/* ---- one step ---- */

/* Sample from q's logits and emit. Returns the finish state (NONE: keeps going with next_tok). */
static sp_finish sample_and_emit(sp_sched *s, seq_t *q) {
    const sp_model *m = s->m;
    sp_job *j = q->job;
    int32_t n_vocab = m->hp.n_vocab;
    bool want_lp = j->p.top_logprobs >= 0;
    if (want_lp) memcpy(s->raw, q->logits, (size_t)n_vocab * sizeof(float));
    int32_t tok = sp_sampler_sample(q->smp, q->logits);
    sp_sampler_accept(q->smp, tok);
    if (j->n_gen_tokens++ == 0) j->t_first_token = sp_now();
    sp_job_event lp;
    if (want_lp) fill_logprobs(s->raw, n_vocab, tok, j->p.top_logprobs, &lp);
    if (!j->p.ignore_eos && sp_tok_is_eog(m->tok, tok)) return SP_FINISH_STOP;
    int32_t n = sp_detok_push(&q->d, tok, s->piece, s->piece_cap);
    char *out;
    size_t out_len;
    bool matched = sp_stop_feed(&q->st, s->piece, n > 0 ? (size_t)n : 0, &out, &out_len);
    push_text(j, out, out_len, tok, want_lp ? &lp : NULL);
    if (matched) return SP_FINISH_STOP;
    if (j->p.max_tokens >= 0 && j->n_gen_tokens >= j->p.max_tokens) return SP_FINISH_LENGTH;
    if (sp_kv_seq_len(q->kv) + 1 > s->n_ctx) return SP_FINISH_LENGTH;
    q->next_tok = tok;
    return SP_FINISH_NONE;
}

/* Build the batch: decodes first, then prompt chunks within the step budget. Returns the item count. */
static int build_batch(sp_sched *s) {
    int n_items = 0;
    int32_t budget = s->step_tokens;
    for (int32_t i = 0; i < s->n_run; i++) {
        seq_t *q = &s->seqs[i];
        q->in_batch = false;
        if (q->phase != PHASE_DECODE) continue;
        if (!sp_kv_seq_reserve(q->kv, 1)) continue; /* no block now: retired as "length" below */
        q->in_batch = q->want_logits = true;
        s->items[n_items] = (sp_batch_item){q->kv, &q->next_tok, 1, q->logits, false};
        s->item_seq[n_items++] = q;
        budget--;
    }
    for (int32_t i = 0; i < s->n_run && budget > 0; i++) {
        seq_t *q = &s->seqs[i];
        if (q->phase != PHASE_PREFILL) continue;
        int32_t left = q->job->p.n_prompt - q->fed;
        int32_t chunk = left < budget ? left : budget;
        if (!sp_kv_seq_reserve(q->kv, chunk)) continue; /* waits for blocks */
        q->in_batch = true;
        q->chunk = chunk;
        q->want_logits = chunk == left;
        s->items[n_items] = (sp_batch_item){q->kv, q->job->p.prompt + q->fed, chunk, q->want_logits ? q->logits : NULL, false};
        s->item_seq[n_items++] = q;
        budget -= chunk;
    }
    return n_items;
}

/* Blocks idle past the threshold leave RAM for the spill file. Engine thread. */
static void spill_idle(sp_sched *s) {
    if (!s->spill || s->spill_idle_s <= 0) return;
    double now = sp_now();
    sp_kv_set_clock(s->kv, now);
    if (sp_kv_spill_idle(s->kv, now, s->spill_idle_s) > 0) {
        pthread_mutex_lock(&s->mu);
        kv_stats_locked(s);
        pthread_mutex_unlock(&s->mu);
    }
}

static void step(sp_sched *s) {
    sp_kv_set_clock(s->kv, sp_now()); /* stamps the blocks sequences release in this step */
    spill_idle(s);
    /* cancelled sequences leave before any work is spent on them */
    for (int32_t i = 0; i < s->n_run;)
        if (cancelled(s->seqs[i].job)) retire(s, i, SP_FINISH_CANCELLED, 0, NULL);
        else i++;
    if (!s->n_run) return;
    int n_items = build_batch(s);
    if (n_items == 0) {
        /* nothing could get a block: end the youngest sequence so the others can go on */
        seq_t *q = &s->seqs[s->n_run - 1];
        if (q->phase == PHASE_DECODE) retire(s, s->n_run - 1, SP_FINISH_LENGTH, 0, NULL);
        else retire(s, s->n_run - 1, SP_FINISH_ERROR, 503, "the KV cache is full; retry shortly");
        return;
    }
    char err[256] = "";
    int32_t n_tok = 0;
    for (int i = 0; i < n_items; i++) n_tok += s->items[i].n;
    if (sp_fwd_eval(s->fwd, s->items, n_items, err, sizeof err) != 0) {
        for (int32_t i = s->n_run - 1; i >= 0; i--)
            if (s->seqs[i].in_batch) retire(s, i, SP_FINISH_ERROR, 500, err);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stats.steps++;
    s->stats.step_seqs += (uint64_t)n_items;
    s->stats.step_tokens += (uint64_t)n_tok;
    s->stats.last_step_seqs = n_items;
    s->stats.last_step_tokens = n_tok;
    kv_stats_locked(s);
    pthread_mutex_unlock(&s->mu);
    /* prompts that ended: start their waiting siblings (appended, in_batch, with the same logits) */
    for (int32_t i = 0, n = s->n_run; i < n; i++) {
        seq_t *q = &s->seqs[i];
        if (!q->in_batch || q->phase != PHASE_PREFILL) continue;
        q->fed += q->chunk;
        if (!q->want_logits) continue;
        q->phase = PHASE_DECODE;
        fork_siblings(s, q);
    }
    /* sample, emit, retire (backwards: retiring shifts the later ones) */
    for (int32_t i = s->n_run - 1; i >= 0; i--) {
        seq_t *q = &s->seqs[i];
        if (!q->in_batch) {
            if (q->phase == PHASE_DECODE) retire(s, i, SP_FINISH_LENGTH, 0, NULL); /* no KV block left */
            continue;
        }
        if (q->phase == PHASE_PREFILL) continue; /* more prompt to go */
        if (q->job->n_gen_tokens == 0) sp_job_set_started(q->job);
        sp_finish f = sample_and_emit(s, q);
        if (f != SP_FINISH_NONE) retire(s, i, f, 0, NULL);
    }
}

static void *engine_main(void *arg) {
    sp_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && s->n_run == 0 && s->q_len == 0) {
            if (!s->spill || s->spill_idle_s <= 0) {
                pthread_cond_wait(&s->cv, &s->mu);
                continue;
            }
            /* idle: wake now and then to spill what has been idle long enough */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            pthread_mutex_unlock(&s->mu);
            spill_idle(s);
            pthread_mutex_lock(&s->mu);
        }
        if (s->quit) break;
        while (s->q_len > 0 && admit_one(s)) {}
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- lifetime ---- */

sp_sched *sp_sched_new(const sp_model *m, const sp_sched_opts *o, char *err, size_t errlen) {
    const sp_hparams *hp = &m->hp;
    sp_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->n_ctx = o->n_ctx > 0 ? o->n_ctx : hp->n_ctx_train;
    s->max_seqs = o->max_seqs > 0 ? o->max_seqs : 8;
    s->step_tokens = o->step_tokens > 0 ? o->step_tokens : 128;
    if (s->step_tokens < s->max_seqs) s->step_tokens = s->max_seqs;
    s->q_cap = o->max_queue > 0 ? o->max_queue : 64;
    sp_kv_type kt = o->kv_type == SP_KV_Q8 ? SP_KV_Q8 : SP_KV_F32;
    size_t bb = sp_kv_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, kt);
    int32_t ctx_blocks = (s->n_ctx + SP_KV_BLOCK - 1) / SP_KV_BLOCK + 1;
    size_t mem = o->kv_mem;
    if (!mem) {
        mem = (size_t)ctx_blocks * bb * (size_t)s->max_seqs;
        if (mem > ((size_t)512 << 20)) mem = (size_t)512 << 20;
        if (mem < (size_t)ctx_blocks * bb) mem = (size_t)ctx_blocks * bb;
    }
    /* at least one block per slot to decode into, and room for a prompt of a few blocks */
    s->kv = sp_kv_new(hp->n_layer, hp->n_head_kv, hp->head_dim, kt, mem, s->max_seqs + 4, err, errlen);
    if (!s->kv) goto fail;
    if (o->kv_spill_dir && o->kv_spill_bytes) {
        if (!sp_kv_set_spill(s->kv, o->kv_spill_dir, o->kv_spill_bytes, err, errlen)) goto fail;
        s->spill = true;
        s->spill_idle_s = o->kv_spill_idle_s;
    }
    s->fwd = sp_fwd_new(m, s->step_tokens, s->n_ctx, err, errlen);
    if (!s->fwd) goto fail;
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->seqs = calloc((size_t)s->max_seqs, sizeof *s->seqs);
    s->items = calloc((size_t)s->max_seqs, sizeof *s->items);
    s->item_seq = calloc((size_t)s->max_seqs, sizeof *s->item_seq);
    s->raw = malloc((size_t)hp->n_vocab * sizeof(float));
    s->piece_cap = sp_detok_max_bytes(m->tok);
    s->piece = malloc((size_t)s->piece_cap + 1);
    if (!s->queue || !s->seqs || !s->items || !s->item_seq || !s->raw || !s->piece) goto fail;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    kv_stats_locked(s);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        goto fail;
    }
    return s;
fail:
    if (err && !err[0]) snprintf(err, errlen, "scheduler: out of memory");
    sp_fwd_free(s->fwd);
    sp_kv_free(s->kv);
    free(s->queue); free(s->seqs); free(s->items); free(s->item_seq); free(s->raw); free(s->piece);
    free(s);
    return NULL;
}

void sp_sched_free(sp_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    for (int32_t i = 0; i < s->n_run; i++) sp_job_cancel(s->seqs[i].job);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    while (s->n_run > 0) retire(s, s->n_run - 1, SP_FINISH_CANCELLED, 0, NULL);
    for (int32_t i = 0; i < s->q_len; i++) {
        sp_job *j = s->queue[(s->q_head + i) % s->q_cap];
        sp_job_finish(j, SP_FINISH_CANCELLED, 0, NULL);
        sp_job_unref(j);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sp_fwd_free(s->fwd);
    sp_kv_free(s->kv);
    free(s->queue); free(s->seqs); free(s->items); free(s->item_seq); free(s->raw); free(s->piece);
    free(s);
}
