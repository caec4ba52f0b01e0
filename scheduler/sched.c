/* scheduler/sched.c — the job queue and the engine thread (first version: one job at a time).
 * The engine thread owns the sequence context. For each job: reuse the KV of the longest prefix the
 * prompt shares with what the context already holds, evaluate the rest of the prompt in chunks
 * (checking cancel between chunks), then sample token by token: detokenize (whole UTF-8 only), match
 * stop strings, push events to the job's outbox, stop on end-of-generation / max_tokens / cancel. */
#include "scheduler/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/stop.h"

#define PROMPT_CHUNK 64 /* prompt tokens per eval call: cancel is checked between chunks */

struct sp_sched {
    const sp_model *m;
    sp_ctx *ctx;
    int32_t *kv_tokens;   /* the tokens whose K/V the context holds, in order */
    int32_t n_kv_tokens;
    float *logits;
    float *raw;           /* copy of the logits for logprobs */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    sp_job **queue;       /* ring buffer */
    int32_t q_head, q_len, q_cap;
    sp_job *current;
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

static sp_job *next_job(sp_sched *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->quit && s->q_len == 0) pthread_cond_wait(&s->cv, &s->mu);
    sp_job *j = NULL;
    if (!s->quit) {
        j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        s->current = j;
    }
    pthread_mutex_unlock(&s->mu);
    return j;
}

static void job_done(sp_sched *s, sp_job *j, sp_finish f) {
    pthread_mutex_lock(&s->mu);
    s->current = NULL;
    if (f == SP_FINISH_CANCELLED) s->stats.cancelled++;
    else if (f == SP_FINISH_ERROR) s->stats.failed++;
    else s->stats.completed++;
    s->stats.prompt_tokens += (uint64_t)j->n_prompt_tokens;
    s->stats.cached_tokens += (uint64_t)j->n_cached_tokens;
    s->stats.generated_tokens += (uint64_t)j->n_gen_tokens;
    pthread_mutex_unlock(&s->mu);
}

void sp_sched_get_stats(sp_sched *s, sp_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queue_depth = s->q_len;
    out->running = s->current != NULL;
    pthread_mutex_unlock(&s->mu);
}

int32_t sp_sched_n_ctx(const sp_sched *s) { return sp_ctx_n_ctx(s->ctx); }

/* ---- one job ---- */

static bool cancelled(const sp_job *j) { return atomic_load(&j->cancel); }

/* Evaluate the prompt, reusing the cached prefix. Returns 0, 1 if cancelled, -1 on error. */
static int eval_prompt(sp_sched *s, sp_job *j, char *err, size_t errlen) {
    const int32_t *p = j->p.prompt;
    int32_t n = j->p.n_prompt, common = 0;
    while (common < n && common < s->n_kv_tokens && s->kv_tokens[common] == p[common]) common++;
    if (common == n) common--; /* the last prompt token must be evaluated to get its logits */
    sp_ctx_truncate(s->ctx, common);
    s->n_kv_tokens = common;
    j->n_cached_tokens = common;
    for (int32_t at = common; at < n; at += PROMPT_CHUNK) {
        if (cancelled(j)) return 1;
        int32_t len = n - at < PROMPT_CHUNK ? n - at : PROMPT_CHUNK;
        if (sp_ctx_eval(s->ctx, p + at, len, s->logits, false, err, errlen) != 0) return -1;
        memcpy(s->kv_tokens + at, p + at, (size_t)len * sizeof *p);
        s->n_kv_tokens = at + len;
    }
    return 0;
}

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

static sp_finish generate(sp_sched *s, sp_job *j, sp_sampler *smp) {
    const sp_model *m = s->m;
    int32_t n_vocab = m->hp.n_vocab;
    sp_detok d;
    sp_detok_init(&d, m->tok, false);
    sp_stop st;
    sp_stop_init(&st, j->p.stop, j->p.n_stop);
    int32_t cap = sp_detok_max_bytes(m->tok);
    char *piece = malloc((size_t)cap + 1);
    if (!piece) abort();
    sp_finish f = SP_FINISH_NONE;
    char err[256];
    while (f == SP_FINISH_NONE) {
        if (cancelled(j)) { f = SP_FINISH_CANCELLED; break; }
        bool want_lp = j->p.top_logprobs >= 0;
        if (want_lp) memcpy(s->raw, s->logits, (size_t)n_vocab * sizeof(float));
        int32_t tok = sp_sampler_sample(smp, s->logits);
        sp_sampler_accept(smp, tok);
        if (j->n_gen_tokens++ == 0) j->t_first_token = sp_now();
        sp_job_event lp;
        if (want_lp) fill_logprobs(s->raw, n_vocab, tok, j->p.top_logprobs, &lp);
        if (!j->p.ignore_eos && sp_tok_is_eog(m->tok, tok)) { f = SP_FINISH_STOP; break; }
        int32_t n = sp_detok_push(&d, tok, piece, cap);
        char *out;
        size_t out_len;
        bool matched = sp_stop_feed(&st, piece, n > 0 ? (size_t)n : 0, &out, &out_len);
        push_text(j, out, out_len, tok, want_lp ? &lp : NULL);
        if (matched) { f = SP_FINISH_STOP; break; }
        if (j->p.max_tokens >= 0 && j->n_gen_tokens >= j->p.max_tokens) { f = SP_FINISH_LENGTH; break; }
        if (sp_ctx_n_past(s->ctx) >= sp_ctx_n_ctx(s->ctx)) { f = SP_FINISH_LENGTH; break; }
        if (sp_ctx_eval(s->ctx, &tok, 1, s->logits, false, err, sizeof err) != 0) {
            s->n_kv_tokens = sp_ctx_n_past(s->ctx);
            f = SP_FINISH_ERROR;
            break;
        }
        s->kv_tokens[s->n_kv_tokens++] = tok;
    }
    if (f == SP_FINISH_STOP || f == SP_FINISH_LENGTH) flush_tail(j, &d, &st);
    if (f == SP_FINISH_ERROR) snprintf(j->error, sizeof j->error, "%s", err);
    sp_stop_free(&st);
    free(piece);
    return f;
}

/* Prompt, then generation. On error, err and *status (400: the request, 500: the engine) say why. */
static sp_finish process(sp_sched *s, sp_job *j, char *err, size_t errlen, int *status) {
    int32_t n_ctx = sp_ctx_n_ctx(s->ctx);
    if (j->p.n_prompt <= 0 || j->p.n_prompt >= n_ctx) {
        snprintf(err, errlen, "the prompt has %d tokens but the context holds %d (at most %d prompt tokens)",
                 j->p.n_prompt, n_ctx, n_ctx - 1);
        *status = 400;
        return SP_FINISH_ERROR;
    }
    int rc = eval_prompt(s, j, err, errlen);
    if (rc != 0) {
        *status = 500;
        return rc > 0 ? SP_FINISH_CANCELLED : SP_FINISH_ERROR;
    }
    sp_job_set_started(j);
    sp_sampler *smp = sp_sampler_new(&j->p.sampling, s->m->hp.n_vocab);
    if (!smp) abort();
    sp_finish f = generate(s, j, smp);
    sp_sampler_free(smp);
    if (f == SP_FINISH_ERROR) {
        snprintf(err, errlen, "%s", j->error);
        *status = 500;
    }
    return f;
}

static void run_job(sp_sched *s, sp_job *j) {
    char err[256] = "";
    int status = 0;
    j->t_start = sp_now();
    j->n_prompt_tokens = j->p.n_prompt;
    sp_finish f = process(s, j, err, sizeof err, &status);
    j->t_end = sp_now();
    job_done(s, j, f);
    sp_job_finish(j, f, status, f == SP_FINISH_ERROR ? err : NULL);
    sp_job_unref(j);
}

static void *engine_main(void *arg) {
    sp_sched *s = arg;
    sp_job *j;
    while ((j = next_job(s)) != NULL) run_job(s, j);
    return NULL;
}

/* ---- lifetime ---- */

sp_sched *sp_sched_new(const sp_model *m, const sp_sched_opts *o, char *err, size_t errlen) {
    sp_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->q_cap = o->max_queue > 0 ? o->max_queue : 64;
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->ctx = sp_ctx_new(m, o->n_ctx, err, errlen);
    s->logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    s->raw = malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!s->queue || !s->ctx || !s->logits || !s->raw) goto fail;
    s->kv_tokens = malloc((size_t)sp_ctx_n_ctx(s->ctx) * sizeof(int32_t));
    if (!s->kv_tokens) goto fail;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        goto fail;
    }
    return s;
fail:
    if (err && !err[0]) snprintf(err, errlen, "scheduler: out of memory");
    sp_ctx_free(s->ctx);
    free(s->queue); free(s->logits); free(s->raw); free(s->kv_tokens);
    free(s);
    return NULL;
}

void sp_sched_free(sp_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    if (s->current) sp_job_cancel(s->current);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (int32_t i = 0; i < s->q_len; i++) {
        sp_job *j = s->queue[(s->q_head + i) % s->q_cap];
        sp_job_finish(j, SP_FINISH_CANCELLED, 0, NULL);
        sp_job_unref(j);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sp_ctx_free(s->ctx);
    free(s->queue); free(s->logits); free(s->raw); free(s->kv_tokens);
    free(s);
}
