/* engine/forward.c — the forward pass over a ragged batch (several sequences, each some tokens at its
 * own positions) of the model graph (llama / qwen2 / qwen3):
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x)·attn_norm;  q,k,v = h·Wq,Wk,Wv (+ biases);  [qwen3: per-head rmsnorm]
 *               rope(q,k) at each token's position;  write k,v into its sequence's KV blocks;
 *               a = causal GQA attention over that sequence's blocks;  x += a·Wo
 *               h = rmsnorm(x)·ffn_norm;  x += (silu(h·Wgate) * h·Wup)·Wdown
 *   logits = rmsnorm(x)·output_norm · Woutput     (only for the rows asked for)
 * Every matmul takes all the batch's tokens at once (a decode step of 8 sequences reads each weight
 * once, not 8 times); attention splits its (token, kv head) pairs over the thread pool. Each token's
 * arithmetic is the same whatever else is in the batch, so results are batch-invariant.
 * Also sp_ctx: one sequence with a private KV pool, for `sparrow run`, bench and tests. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"

#define CHUNK 256     /* sp_ctx: tokens per forward call */
#define LOGIT_ROWS 16 /* last-token logits computed together (one pass over the output head) */

struct sp_fwd {
    const sp_model *m;
    int32_t max_tokens, max_ctx;
    float *x, *h, *q, *k, *v, *att, *ff_gate, *ff_up, *out;
    float *rope_cs;          /* [max_tokens][n_rot]: cos/sin at each token's position */
    int32_t *pos, *item_of;  /* per batch token */
    float *logit_rows;       /* [LOGIT_ROWS][n_vocab] */
    /* per compute thread (sized when the pool grows) */
    int n_thr;
    float *scores;           /* [n_thr][max_ctx] */
    const float **ptrs;      /* [n_thr][2][max blocks]: a head's K and V block pointers */
    float *gather;           /* [n_thr][2][max_ctx][head_dim] (q8 caches, or tables without attend_paged) */
    /* the batch being run */
    const sp_batch_item *items;
    int n_items;
};

static int64_t kv_dim(const sp_hparams *hp) { return (int64_t)hp->n_head_kv * hp->head_dim; }
static int64_t q_dim(const sp_hparams *hp) { return (int64_t)hp->n_head * hp->head_dim; }
static float *alloc_f32(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }
static int32_t max_blocks(const sp_fwd *f) { return (f->max_ctx + SP_KV_BLOCK - 1) / SP_KV_BLOCK; }

sp_fwd *sp_fwd_new(const sp_model *m, int32_t max_tokens, int32_t max_ctx, char *err, size_t errlen) {
    const sp_hparams *hp = &m->hp;
    sp_fwd *f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->m = m;
    f->max_tokens = max_tokens > 0 ? max_tokens : 1;
    f->max_ctx = max_ctx > 0 ? max_ctx : 1;
    int64_t T = f->max_tokens, d = hp->n_embd;
    f->x = alloc_f32(T * d);
    f->h = alloc_f32(T * (d > q_dim(hp) ? d : q_dim(hp)));
    f->q = alloc_f32(T * q_dim(hp));
    f->k = alloc_f32(T * kv_dim(hp));
    f->v = alloc_f32(T * kv_dim(hp));
    f->att = alloc_f32(T * q_dim(hp));
    f->ff_gate = alloc_f32(T * hp->n_ff);
    f->ff_up = alloc_f32(T * hp->n_ff);
    f->out = alloc_f32(T * d);
    f->rope_cs = alloc_f32(T * hp->n_rot);
    f->pos = malloc((size_t)T * sizeof *f->pos);
    f->item_of = malloc((size_t)T * sizeof *f->item_of);
    f->logit_rows = alloc_f32((int64_t)LOGIT_ROWS * hp->n_vocab);
    if (!f->x || !f->h || !f->q || !f->k || !f->v || !f->att || !f->ff_gate || !f->ff_up || !f->out ||
        !f->rope_cs || !f->pos || !f->item_of || !f->logit_rows)
        goto oom;
    return f;
oom:
    sp_fwd_free(f);
    sp_engine_seterr(err, errlen, "forward: out of memory");
    return NULL;
}

void sp_fwd_free(sp_fwd *f) {
    if (!f) return;
    free(f->x); free(f->h); free(f->q); free(f->k); free(f->v); free(f->att);
    free(f->ff_gate); free(f->ff_up); free(f->out); free(f->rope_cs);
    free(f->pos); free(f->item_of); free(f->logit_rows);
    free(f->scores); free(f->ptrs); free(f->gather);
    free(f);
}

int32_t sp_fwd_max_tokens(const sp_fwd *f) { return f->max_tokens; }

/* Per-thread scratch for the pool's current size; the gather buffers only when they will be used. */
static bool thread_scratch(sp_fwd *f, bool need_gather) {
    int n = sp_pool_size(f->m->pool);
    if (n > f->n_thr) {
        float *s = realloc(f->scores, (size_t)n * (size_t)f->max_ctx * sizeof *s);
        if (!s) return false;
        f->scores = s;
        const float **p = realloc(f->ptrs, (size_t)n * 2 * (size_t)max_blocks(f) * sizeof *p);
        if (!p) return false;
        f->ptrs = p;
        free(f->gather);
        f->gather = NULL;
        f->n_thr = n;
    }
    if (need_gather && !f->gather) {
        f->gather = alloc_f32((int64_t)f->n_thr * 2 * f->max_ctx * f->m->hp.head_dim);
        if (!f->gather) return false;
    }
    return true;
}

static void add_bias(float *y, const float *b, int64_t n_tok, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

static void head_norm(const sp_fwd *f, float *v, const float *w, int64_t n_tok, int64_t n_heads) {
    if (!w) return;
    const sp_hparams *hp = &f->m->hp;
    for (int64_t i = 0; i < n_tok * n_heads; i++)
        f->m->k->rmsnorm(v + i * hp->head_dim, v + i * hp->head_dim, w, hp->head_dim, hp->rms_eps);
}

/* ---- KV cache writes and reads ---- */

/* int8 with one scale per head: x ≈ scale · q, scale = max|x| / 127 (the KV cache's q8 form). */
static void quant_head(int8_t *q, float *scale, const float *x, int64_t n) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)lrintf(x[i] * id);
    *scale = d;
}

static void kv_write(sp_fwd *f, int il, int64_t n_tok) {
    const sp_hparams *hp = &f->m->hp;
    int64_t kvd = kv_dim(hp), hd = hp->head_dim;
    for (int64_t t = 0; t < n_tok; t++) {
        const sp_kv_seq *s = f->items[f->item_of[t]].seq;
        float *ks, *vs;
        void *kd = sp_kv_k(s, il, f->pos[t], &ks), *vd = sp_kv_v(s, il, f->pos[t], &vs);
        if (!ks) {
            memcpy(kd, f->k + t * kvd, (size_t)kvd * sizeof(float));
            memcpy(vd, f->v + t * kvd, (size_t)kvd * sizeof(float));
            continue;
        }
        for (int64_t g = 0; g < hp->n_head_kv; g++) {
            quant_head((int8_t *)kd + g * hd, ks + g, f->k + t * kvd + g * hd, hd);
            quant_head((int8_t *)vd + g * hd, vs + g, f->v + t * kvd + g * hd, hd);
        }
    }
}

typedef struct {
    sp_fwd *f;
    int il;
} attn_job;

/* Query heads of kv head g for token t, over positions [0, pos]. f32 caches with attend_paged read the
 * blocks in place; otherwise the head's K and V rows are gathered (dequantized) first. */
static void attend_unit(sp_fwd *f, int il, int64_t t, int64_t g, int ith) {
    const sp_hparams *hp = &f->m->hp;
    const sp_kernels *k = f->m->k;
    const sp_kv_seq *s = f->items[f->item_of[t]].seq;
    int64_t hd = hp->head_dim, stride = kv_dim(hp), group = hp->n_head / hp->n_head_kv, qd = q_dim(hp);
    int64_t n_kv = (int64_t)f->pos[t] + 1, nblk = (n_kv + SP_KV_BLOCK - 1) / SP_KV_BLOCK;
    float scale = 1.0f / sqrtf((float)hd);
    float *scores = f->scores + (int64_t)ith * f->max_ctx;
    if (sp_kv_seq_type(s) == SP_KV_F32 && k->attend_paged) {
        const float **kb = f->ptrs + (int64_t)ith * 2 * max_blocks(f), **vb = kb + max_blocks(f);
        for (int64_t b = 0; b < nblk; b++) {
            const void *kp, *vp;
            sp_kv_block_view(s, il, (int32_t)b, &kp, &vp, NULL, NULL);
            kb[b] = (const float *)kp + g * hd;
            vb[b] = (const float *)vp + g * hd;
        }
        for (int64_t h = g * group; h < (g + 1) * group; h++)
            k->attend_paged(f->att + t * qd + h * hd, f->q + t * qd + h * hd, kb, vb, SP_KV_BLOCK, n_kv, hd, stride,
                            scale, scores);
        return;
    }
    float *kc = f->gather + (int64_t)ith * 2 * f->max_ctx * hd, *vc = kc + (int64_t)f->max_ctx * hd;
    for (int64_t b = 0; b < nblk; b++) {
        const void *kp, *vp;
        const float *ks, *vs;
        sp_kv_block_view(s, il, (int32_t)b, &kp, &vp, &ks, &vs);
        int64_t n = n_kv - b * SP_KV_BLOCK < SP_KV_BLOCK ? n_kv - b * SP_KV_BLOCK : SP_KV_BLOCK;
        for (int64_t p = 0; p < n; p++) {
            float *kd = kc + (b * SP_KV_BLOCK + p) * hd, *vd = vc + (b * SP_KV_BLOCK + p) * hd;
            if (!ks) {
                memcpy(kd, (const float *)kp + p * stride + g * hd, (size_t)hd * sizeof(float));
                memcpy(vd, (const float *)vp + p * stride + g * hd, (size_t)hd * sizeof(float));
                continue;
            }
            const int8_t *kq = (const int8_t *)kp + p * stride + g * hd, *vq = (const int8_t *)vp + p * stride + g * hd;
            float kd_s = ks[p * hp->n_head_kv + g], vd_s = vs[p * hp->n_head_kv + g];
            for (int64_t i = 0; i < hd; i++) kd[i] = kd_s * (float)kq[i], vd[i] = vd_s * (float)vq[i];
        }
    }
    for (int64_t h = g * group; h < (g + 1) * group; h++)
        k->attend(f->att + t * qd + h * hd, f->q + t * qd + h * hd, kc, vc, n_kv, hd, hd, scale, scores);
}

static void attention_worker(void *arg, int64_t u0, int64_t u1, int ith) {
    attn_job *j = arg;
    int64_t n_kv_heads = j->f->m->hp.n_head_kv;
    for (int64_t u = u0; u < u1; u++) attend_unit(j->f, j->il, u / n_kv_heads, u % n_kv_heads, ith);
}

/* ---- the graph ---- */

/* Matmuls sharing their input x: fused when the table can (one pass over the threads). */
static void matmul_shared(const sp_fwd *f, const sp_mat *const *w, float *const *y, int n, const float *x, int64_t n_tok) {
    const sp_kernels *k = f->m->k;
    if (k->matmul_multi) k->matmul_multi(w, y, n, x, n_tok, f->m->pool);
    else
        for (int i = 0; i < n; i++) k->matmul(w[i], x, y[i], n_tok, f->m->pool);
}

static void attn_block(sp_fwd *f, int il, int64_t n_tok) {
    const sp_model *m = f->m;
    const sp_hparams *hp = &m->hp;
    const sp_layer *ly = &m->layers[il];
    const sp_kernels *k = m->k;
    int64_t d = hp->n_embd, kvd = kv_dim(hp);
    for (int64_t t = 0; t < n_tok; t++) k->rmsnorm(f->h + t * d, f->x + t * d, ly->attn_norm, d, hp->rms_eps);
    const sp_mat *qkv[] = {&ly->wq, &ly->wk, &ly->wv};
    float *qkv_out[] = {f->q, f->k, f->v};
    matmul_shared(f, qkv, qkv_out, 3, f->h, n_tok);
    add_bias(f->q, ly->bq, n_tok, q_dim(hp));
    add_bias(f->k, ly->bk, n_tok, kvd);
    add_bias(f->v, ly->bv, n_tok, kvd);
    head_norm(f, f->q, ly->q_norm, n_tok, hp->n_head);
    head_norm(f, f->k, ly->k_norm, n_tok, hp->n_head_kv);
    for (int64_t t = 0; t < n_tok; t++) {
        const float *cs = f->rope_cs + t * hp->n_rot;
        k->rope_cs(f->q + t * q_dim(hp), hp->n_head, hp->head_dim, hp->n_rot, cs, hp->rope_neox);
        k->rope_cs(f->k + t * kvd, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, hp->rope_neox);
    }
    kv_write(f, il, n_tok);
    attn_job j = {f, il};
    sp_pool_for(m->pool, n_tok * hp->n_head_kv, 1, attention_worker, &j);
    k->matmul(&ly->wo, f->att, f->out, n_tok, m->pool);
    for (int64_t i = 0; i < n_tok * d; i++) f->x[i] += f->out[i];
}

static void ffn_block(sp_fwd *f, int il, int64_t n_tok) {
    const sp_model *m = f->m;
    const sp_hparams *hp = &m->hp;
    const sp_layer *ly = &m->layers[il];
    const sp_kernels *k = m->k;
    int64_t d = hp->n_embd;
    for (int64_t t = 0; t < n_tok; t++) k->rmsnorm(f->h + t * d, f->x + t * d, ly->ffn_norm, d, hp->rms_eps);
    const sp_mat *gu[] = {&ly->w_gate, &ly->w_up};
    float *gu_out[] = {f->ff_gate, f->ff_up};
    matmul_shared(f, gu, gu_out, 2, f->h, n_tok);
    k->swiglu(f->ff_gate, f->ff_gate, f->ff_up, n_tok * hp->n_ff);
    k->matmul(&ly->w_down, f->ff_gate, f->out, n_tok, m->pool);
    for (int64_t i = 0; i < n_tok * d; i++) f->x[i] += f->out[i];
}

/* Final norm + output head: all rows of all_logits items straight into their buffers; the last rows
 * of the others LOGIT_ROWS at a time through one pass over the head each. */
static void output_head(sp_fwd *f) {
    const sp_model *m = f->m;
    const sp_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, off = 0, nr = 0;
    int owner[LOGIT_ROWS];
    for (int i = 0; i < f->n_items; i++) {
        const sp_batch_item *it = &f->items[i];
        if (it->logits && it->all_logits) {
            for (int64_t t = 0; t < it->n; t++)
                m->k->rmsnorm(f->h + t * d, f->x + (off + t) * d, m->output_norm, d, hp->rms_eps);
            m->k->matmul(&m->output, f->h, it->logits, it->n, m->pool);
        }
        off += it->n;
    }
    off = 0;
    for (int i = 0; i < f->n_items; i++) {
        const sp_batch_item *it = &f->items[i];
        off += it->n;
        if (!it->logits || it->all_logits) continue;
        m->k->rmsnorm(f->h + nr * d, f->x + (off - 1) * d, m->output_norm, d, hp->rms_eps);
        owner[nr++] = i;
        bool last = true;
        for (int r = i + 1; r < f->n_items; r++) last = last && !(f->items[r].logits && !f->items[r].all_logits);
        if (nr == LOGIT_ROWS || last) {
            m->k->matmul(&m->output, f->h, f->logit_rows, nr, m->pool);
            for (int64_t r = 0; r < nr; r++)
                memcpy(f->items[owner[r]].logits, f->logit_rows + r * hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
            nr = 0;
        }
    }
}

int sp_fwd_eval(sp_fwd *f, sp_batch_item *items, int n_items, char *err, size_t errlen) {
    const sp_model *m = f->m;
    const sp_hparams *hp = &m->hp;
    int64_t n_tok = 0;
    bool need_gather = !m->k->attend_paged;
    for (int i = 0; i < n_items; i++) {
        const sp_batch_item *it = &items[i];
        if (it->n <= 0 || !it->seq) {
            sp_engine_seterr(err, errlen, "eval: an empty batch item");
            return -1;
        }
        for (int32_t t = 0; t < it->n; t++) {
            if (it->tokens[t] < 0 || it->tokens[t] >= hp->n_vocab) {
                sp_engine_seterr(err, errlen, "eval: token id %d out of range [0, %d)", it->tokens[t], hp->n_vocab);
                return -1;
            }
        }
        if (sp_kv_seq_blocks_needed(it->seq, it->n) != 0) {
            sp_engine_seterr(err, errlen, "eval: KV positions not reserved for %d tokens", it->n);
            return -1;
        }
        if (sp_kv_seq_len(it->seq) + it->n > f->max_ctx) {
            sp_engine_seterr(err, errlen, "eval: sequence longer than %d positions", f->max_ctx);
            return -1;
        }
        if (sp_kv_seq_type(it->seq) == SP_KV_Q8) need_gather = true;
        n_tok += it->n;
    }
    if (n_tok == 0 || n_tok > f->max_tokens) {
        sp_engine_seterr(err, errlen, "eval: %lld tokens in a batch (1 to %d)", (long long)n_tok, f->max_tokens);
        return -1;
    }
    if (!thread_scratch(f, need_gather)) {
        sp_engine_seterr(err, errlen, "eval: out of memory for attention scratch");
        return -1;
    }
    f->items = items;
    f->n_items = n_items;
    int64_t d = hp->n_embd, t = 0;
    for (int i = 0; i < n_items; i++) {
        int32_t base = sp_kv_seq_len(items[i].seq);
        for (int32_t j = 0; j < items[i].n; j++, t++) {
            f->pos[t] = base + j;
            f->item_of[t] = i;
            if (!sp_mat_row_f32(&m->tok_embd, items[i].tokens[j], f->x + t * d)) {
                sp_engine_seterr(err, errlen, "eval: failed to read an embedding row");
                return -1;
            }
            sp_rope_angles(f->rope_cs + t * hp->n_rot, hp->n_rot, f->pos[t], hp->rope_theta, m->rope_freqs);
        }
    }
    sp_model_prefetch_layer(m, 0);
    for (int il = 0; il < hp->n_layer; il++) {
        sp_model_prefetch_layer(m, il + 1); /* flash reads overlap this layer's compute */
        attn_block(f, il, n_tok);
        ffn_block(f, il, n_tok);
    }
    output_head(f);
    for (int i = 0; i < n_items; i++) sp_kv_seq_commit(items[i].seq, items[i].tokens, items[i].n);
    return 0;
}

/* ---- sp_ctx: one sequence, private pool ---- */

struct sp_ctx {
    const sp_model *m;
    int32_t n_ctx;
    sp_kv *kv;
    sp_kv_seq *seq;
    sp_fwd *f;
};

sp_ctx *sp_ctx_new(const sp_model *m, int32_t n_ctx, char *err, size_t errlen) {
    const sp_hparams *hp = &m->hp;
    sp_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        sp_engine_seterr(err, errlen, "context: out of memory");
        return NULL;
    }
    c->m = m;
    c->n_ctx = n_ctx > 0 ? n_ctx : hp->n_ctx_train;
    /* one block more than the context: a cut inside an addressed block is copied on write */
    int32_t blocks = (c->n_ctx + SP_KV_BLOCK - 1) / SP_KV_BLOCK + 1;
    size_t bb = sp_kv_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, SP_KV_F32);
    c->kv = sp_kv_new(hp->n_layer, hp->n_head_kv, hp->head_dim, SP_KV_F32, (size_t)blocks * bb, blocks, err, errlen);
    if (!c->kv) goto fail;
    c->seq = sp_kv_seq_new(c->kv, c->n_ctx);
    c->f = sp_fwd_new(m, CHUNK, c->n_ctx, err, errlen);
    if (!c->seq || !c->f) goto fail;
    return c;
fail:
    if (err && !err[0]) sp_engine_seterr(err, errlen, "context: out of memory");
    sp_ctx_free(c);
    return NULL;
}

void sp_ctx_free(sp_ctx *c) {
    if (!c) return;
    sp_fwd_free(c->f);
    sp_kv_seq_free(c->seq);
    sp_kv_free(c->kv);
    free(c);
}

int32_t sp_ctx_n_ctx(const sp_ctx *c) { return c->n_ctx; }
int32_t sp_ctx_n_past(const sp_ctx *c) { return sp_kv_seq_len(c->seq); }
void sp_ctx_reset(sp_ctx *c) { sp_kv_seq_truncate(c->seq, 0); }
void sp_ctx_truncate(sp_ctx *c, int32_t n) { sp_kv_seq_truncate(c->seq, n); }

int sp_ctx_eval(sp_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits,
                char *err, size_t errlen) {
    const sp_hparams *hp = &c->m->hp;
    if (n <= 0) {
        sp_engine_seterr(err, errlen, "eval: no tokens");
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
            sp_engine_seterr(err, errlen, "eval: token id %d out of range [0, %d)", tokens[i], hp->n_vocab);
            return -1;
        }
    }
    int32_t past = sp_kv_seq_len(c->seq);
    if ((int64_t)past + n > c->n_ctx) {
        sp_engine_seterr(err, errlen, "eval: context full (%d + %d tokens > n_ctx %d)", past, n, c->n_ctx);
        return -1;
    }
    for (int32_t done = 0; done < n; done += CHUNK) {
        int32_t len = n - done < CHUNK ? n - done : CHUNK;
        bool last = done + len == n;
        float *out = NULL;
        if (all_logits) out = logits + (int64_t)done * hp->n_vocab;
        else if (last) out = logits;
        if (!sp_kv_seq_reserve(c->seq, len)) {
            sp_engine_seterr(err, errlen, "eval: no KV blocks left for %d positions", sp_kv_seq_len(c->seq) + len);
            return -1;
        }
        sp_batch_item it = {c->seq, tokens + done, len, out, all_logits};
        if (sp_fwd_eval(c->f, &it, 1, err, errlen) != 0) return -1;
    }
    return 0;
}
