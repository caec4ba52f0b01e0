/* engine/forward.c — one sequence's forward pass over the model graph (llama / qwen2 / qwen3):
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x)·attn_norm;  q,k,v = h·Wq,Wk,Wv (+ biases);  [qwen3: per-head rmsnorm]
 *               rope(q,k);  append k,v to the cache;  a = causal GQA attention;  x += a·Wo
 *               h = rmsnorm(x)·ffn_norm;  x += (silu(h·Wgate) * h·Wup)·Wdown
 *   logits = rmsnorm(x)·output_norm · Woutput
 * Tokens are processed in chunks so one matmul serves many tokens (prefill). The KV cache holds
 * f32 K and V per layer as [pos][n_head_kv * head_dim] and grows as the sequence does. Matmuls
 * split their rows over the model's thread pool; attention splits its (token, head) pairs. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"

#define CHUNK 256 /* tokens per forward chunk: bounds scratch memory; each weight is read once per chunk */

struct sp_ctx {
    const sp_model *m;
    int32_t n_ctx;
    int32_t n_past;
    int32_t kv_cap;     /* positions allocated in each layer's cache */
    float **k_cache;    /* [n_layer] -> [kv_cap][kv_dim] */
    float **v_cache;
    /* scratch for one chunk */
    float *x, *h, *q, *k, *v, *att, *ff_gate, *ff_up, *out;
    float *rope_cs;     /* [CHUNK][n_rot]: cos/sin of each chunk position (sp_rope_angles) */
    float *scores;      /* [scores_threads][n_ctx]: one attention row per compute thread */
    int scores_threads;
};

static int64_t kv_dim(const sp_hparams *hp) { return (int64_t)hp->n_head_kv * hp->head_dim; }
static int64_t q_dim(const sp_hparams *hp) { return (int64_t)hp->n_head * hp->head_dim; }

static float *alloc_f32(int64_t n) { return malloc((size_t)n * sizeof(float)); }

sp_ctx *sp_ctx_new(const sp_model *m, int32_t n_ctx, char *err, size_t errlen) {
    const sp_hparams *hp = &m->hp;
    sp_ctx *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->m = m;
    c->n_ctx = n_ctx > 0 ? n_ctx : hp->n_ctx_train;
    c->k_cache = calloc((size_t)hp->n_layer, sizeof *c->k_cache);
    c->v_cache = calloc((size_t)hp->n_layer, sizeof *c->v_cache);
    int64_t d = hp->n_embd;
    c->x = alloc_f32(CHUNK * d);
    c->h = alloc_f32(CHUNK * (d > q_dim(hp) ? d : q_dim(hp)));
    c->q = alloc_f32(CHUNK * q_dim(hp));
    c->k = alloc_f32(CHUNK * kv_dim(hp));
    c->v = alloc_f32(CHUNK * kv_dim(hp));
    c->att = alloc_f32(CHUNK * q_dim(hp));
    c->ff_gate = alloc_f32(CHUNK * (int64_t)hp->n_ff);
    c->ff_up = alloc_f32(CHUNK * (int64_t)hp->n_ff);
    c->out = alloc_f32(CHUNK * d);
    c->rope_cs = alloc_f32(CHUNK * (int64_t)hp->n_rot);
    if (!c->k_cache || !c->v_cache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att ||
        !c->ff_gate || !c->ff_up || !c->out || !c->rope_cs)
        goto oom;
    return c;
oom:
    sp_ctx_free(c);
    sp_engine_seterr(err, errlen, "context: out of memory");
    return NULL;
}

void sp_ctx_free(sp_ctx *c) {
    if (!c) return;
    for (int il = 0; c->k_cache && il < c->m->hp.n_layer; il++) free(c->k_cache[il]);
    for (int il = 0; c->v_cache && il < c->m->hp.n_layer; il++) free(c->v_cache[il]);
    free(c->k_cache); free(c->v_cache);
    free(c->x); free(c->h); free(c->q); free(c->k); free(c->v); free(c->att);
    free(c->ff_gate); free(c->ff_up); free(c->scores); free(c->out); free(c->rope_cs);
    free(c);
}

int32_t sp_ctx_n_ctx(const sp_ctx *c) { return c->n_ctx; }
int32_t sp_ctx_n_past(const sp_ctx *c) { return c->n_past; }
void sp_ctx_reset(sp_ctx *c) { c->n_past = 0; }
void sp_ctx_truncate(sp_ctx *c, int32_t n) {
    if (n >= 0 && n < c->n_past) c->n_past = n;
}

/* Make room for positions [0, need) in every layer's cache (doubling, capped at n_ctx). */
static bool kv_reserve(sp_ctx *c, int32_t need) {
    if (need <= c->kv_cap) return true;
    int32_t cap = c->kv_cap ? c->kv_cap : 64;
    while (cap < need) cap *= 2;
    if (cap > c->n_ctx) cap = c->n_ctx;
    size_t bytes = (size_t)cap * (size_t)kv_dim(&c->m->hp) * sizeof(float);
    for (int il = 0; il < c->m->hp.n_layer; il++) {
        float *k = realloc(c->k_cache[il], bytes);
        if (!k) return false;
        c->k_cache[il] = k;
        float *v = realloc(c->v_cache[il], bytes);
        if (!v) return false;
        c->v_cache[il] = v;
    }
    c->kv_cap = cap;
    return true;
}

/* One attention score row per compute thread (the thread count may change between evals). */
static bool scores_reserve(sp_ctx *c) {
    int n = sp_pool_size(c->m->pool);
    if (n <= c->scores_threads) return true;
    float *s = realloc(c->scores, (size_t)n * (size_t)c->n_ctx * sizeof *s);
    if (!s) return false;
    c->scores = s;
    c->scores_threads = n;
    return true;
}

static void add_bias(float *y, const float *b, int64_t n_tok, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

static void head_norm(const sp_ctx *c, float *v, const float *w, int64_t n_tok, int64_t n_heads) {
    if (!w) return;
    const sp_hparams *hp = &c->m->hp;
    for (int64_t i = 0; i < n_tok * n_heads; i++)
        c->m->k->rmsnorm(v + i * hp->head_dim, v + i * hp->head_dim, w, hp->head_dim, hp->rms_eps);
}

typedef struct {
    sp_ctx *c;
    int il;
    int32_t pos0;
    int64_t n_tok;
} attn_job;

/* Causal attention of query (token t, head h) at position pos0 + t over the cache [0, pos0 + t]. */
static void attend_one(sp_ctx *c, int il, int32_t pos0, int64_t t, int64_t h, float *scores) {
    const sp_hparams *hp = &c->m->hp;
    const sp_kernels *k = c->m->k;
    int64_t hd = hp->head_dim, kvd = kv_dim(hp), group = hp->n_head / hp->n_head_kv;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t n_kv = pos0 + t + 1;
    const float *q = c->q + t * q_dim(hp) + h * hd;
    const float *kc = c->k_cache[il] + (h / group) * hd;
    const float *vc = c->v_cache[il] + (h / group) * hd;
    k->attend(c->att + t * q_dim(hp) + h * hd, q, kc, vc, n_kv, hd, kvd, scale, scores);
}

static void attention_worker(void *arg, int64_t u0, int64_t u1, int ith) {
    attn_job *j = arg;
    int64_t n_head = j->c->m->hp.n_head;
    float *scores = j->c->scores + (int64_t)ith * j->c->n_ctx;
    for (int64_t u = u0; u < u1; u++) attend_one(j->c, j->il, j->pos0, u / n_head, u % n_head, scores);
}

static void attention(sp_ctx *c, int il, int32_t pos0, int64_t n_tok) {
    attn_job j = {c, il, pos0, n_tok};
    sp_pool_for(c->m->pool, n_tok * c->m->hp.n_head, 1, attention_worker, &j);
}

static void attn_block(sp_ctx *c, int il, int32_t pos0, int64_t n_tok) {
    const sp_model *m = c->m;
    const sp_hparams *hp = &m->hp;
    const sp_layer *ly = &m->layers[il];
    const sp_kernels *k = m->k;
    int64_t d = hp->n_embd, kvd = kv_dim(hp);
    for (int64_t t = 0; t < n_tok; t++) k->rmsnorm(c->h + t * d, c->x + t * d, ly->attn_norm, d, hp->rms_eps);
    k->matmul(&ly->wq, c->h, c->q, n_tok, m->pool);
    k->matmul(&ly->wk, c->h, c->k, n_tok, m->pool);
    k->matmul(&ly->wv, c->h, c->v, n_tok, m->pool);
    add_bias(c->q, ly->bq, n_tok, q_dim(hp));
    add_bias(c->k, ly->bk, n_tok, kvd);
    add_bias(c->v, ly->bv, n_tok, kvd);
    head_norm(c, c->q, ly->q_norm, n_tok, hp->n_head);
    head_norm(c, c->k, ly->k_norm, n_tok, hp->n_head_kv);
    for (int64_t t = 0; t < n_tok; t++) {
        const float *cs = c->rope_cs + t * hp->n_rot;
        k->rope_cs(c->q + t * q_dim(hp), hp->n_head, hp->head_dim, hp->n_rot, cs, hp->rope_neox);
        k->rope_cs(c->k + t * kvd, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, hp->rope_neox);
    }
    memcpy(c->k_cache[il] + (int64_t)pos0 * kvd, c->k, (size_t)(n_tok * kvd) * sizeof(float));
    memcpy(c->v_cache[il] + (int64_t)pos0 * kvd, c->v, (size_t)(n_tok * kvd) * sizeof(float));
    attention(c, il, pos0, n_tok);
    k->matmul(&ly->wo, c->att, c->out, n_tok, m->pool);
    for (int64_t i = 0; i < n_tok * d; i++) c->x[i] += c->out[i];
}

static void ffn_block(sp_ctx *c, int il, int64_t n_tok) {
    const sp_model *m = c->m;
    const sp_hparams *hp = &m->hp;
    const sp_layer *ly = &m->layers[il];
    const sp_kernels *k = m->k;
    int64_t d = hp->n_embd;
    for (int64_t t = 0; t < n_tok; t++) k->rmsnorm(c->h + t * d, c->x + t * d, ly->ffn_norm, d, hp->rms_eps);
    k->matmul(&ly->w_gate, c->h, c->ff_gate, n_tok, m->pool);
    k->matmul(&ly->w_up, c->h, c->ff_up, n_tok, m->pool);
    k->swiglu(c->ff_gate, c->ff_gate, c->ff_up, n_tok * hp->n_ff);
    k->matmul(&ly->w_down, c->ff_gate, c->out, n_tok, m->pool);
    for (int64_t i = 0; i < n_tok * d; i++) c->x[i] += c->out[i];
}

/* Final norm + output head for rows [first, n_tok) of the chunk. */
static void output_head(sp_ctx *c, int64_t first, int64_t n_tok, float *logits) {
    const sp_model *m = c->m;
    const sp_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, rows = n_tok - first;
    for (int64_t t = 0; t < rows; t++)
        m->k->rmsnorm(c->h + t * d, c->x + (first + t) * d, m->output_norm, d, hp->rms_eps);
    m->k->matmul(&m->output, c->h, logits, rows, m->pool);
}

static int eval_chunk(sp_ctx *c, const int32_t *tokens, int64_t n_tok, float *logits, bool all_logits) {
    const sp_model *m = c->m;
    int64_t d = m->hp.n_embd;
    for (int64_t t = 0; t < n_tok; t++)
        if (!sp_mat_row_f32(&m->tok_embd, tokens[t], c->x + t * d)) return -1;
    int32_t pos0 = c->n_past;
    for (int64_t t = 0; t < n_tok; t++) /* rope angles: once per position, shared by every layer */
        sp_rope_angles(c->rope_cs + t * m->hp.n_rot, m->hp.n_rot, pos0 + t, m->hp.rope_theta, m->rope_freqs);
    for (int il = 0; il < m->hp.n_layer; il++) {
        attn_block(c, il, pos0, n_tok);
        ffn_block(c, il, n_tok);
    }
    c->n_past += (int32_t)n_tok;
    if (logits) output_head(c, all_logits ? 0 : n_tok - 1, n_tok, logits);
    return 0;
}

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
    if ((int64_t)c->n_past + n > c->n_ctx) {
        sp_engine_seterr(err, errlen, "eval: context full (%d + %d tokens > n_ctx %d)", c->n_past, n, c->n_ctx);
        return -1;
    }
    if (!scores_reserve(c)) {
        sp_engine_seterr(err, errlen, "eval: out of memory for attention scores");
        return -1;
    }
    if (!kv_reserve(c, c->n_past + n)) {
        sp_engine_seterr(err, errlen, "eval: out of memory growing the KV cache to %d positions", c->n_past + n);
        return -1;
    }
    for (int32_t done = 0; done < n; done += CHUNK) {
        int32_t len = n - done < CHUNK ? n - done : CHUNK;
        bool last = done + len == n;
        float *out = NULL;
        if (all_logits) out = logits + (int64_t)done * hp->n_vocab;
        else if (last) out = logits;
        if (eval_chunk(c, tokens + done, len, out, all_logits) != 0) {
            sp_engine_seterr(err, errlen, "eval: failed to read an embedding row");
            return -1;
        }
    }
    return 0;
}
