/* engine/model.h — a loaded model: hyper-parameters from GGUF metadata, weight matrices viewing the
 * mmapped file, the tokenizer; and sp_ctx, one sequence's KV cache and forward pass.
 * Architectures: llama (Llama 2/3, TinyLlama, SmolLM), qwen2 (q/k/v biases), qwen3 (per-head q/k
 * RMSNorm). The model is read-only once loaded, so several contexts may share it. */
#ifndef SP_ENGINE_MODEL_H
#define SP_ENGINE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tok.h"
#include "kernels/kernels.h"
#include "storage/gguf.h"

typedef enum { SP_ARCH_LLAMA, SP_ARCH_QWEN2, SP_ARCH_QWEN3 } sp_arch;

typedef struct {
    sp_arch arch;
    char arch_name[32];
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;   /* attention.key_length, else n_embd / n_head */
    int32_t n_ff;
    int32_t n_ctx_train;
    int32_t n_rot;      /* rope.dimension_count, else head_dim */
    float rope_theta;
    float rms_eps;
    bool rope_neox;     /* qwen2/qwen3: pairs (i, i + n_rot/2); llama: adjacent pairs */
} sp_hparams;

typedef struct {
    float *attn_norm;
    sp_mat wq, wk, wv, wo;
    float *bq, *bk, *bv;        /* qwen2 only */
    float *q_norm, *k_norm;     /* qwen3 only, head_dim each */
    float *ffn_norm;
    sp_mat w_gate, w_up, w_down;
} sp_layer;

typedef struct {
    sp_gguf *gguf;
    sp_hparams hp;
    sp_mat tok_embd;            /* [n_vocab][n_embd] */
    sp_mat output;              /* == tok_embd when tied */
    bool tied;
    float *output_norm;
    float *rope_freqs;          /* Llama 3.1+ frequency factors (n_rot/2) or NULL */
    sp_layer *layers;
    sp_tok *tok;
    bool synthetic;             /* written by `sparrow synth`: random weights */
    const sp_kernels *k;        /* the kernel table; weights were packed for it at load */
    sp_pool *pool;              /* compute threads (sp_model_set_threads) */
    uint64_t packed_bytes;      /* bytes of weights repacked for k (0 for the reference) */
    /* the packed-weight cache (storage/wcache.h) the packed matrices live in, when used */
    struct sp_wcache *wcache;
    int wcache_state;           /* 0 none, 1 mapped an existing cache, 2 built it this load */
    char wcache_path[4096];
    char wcache_note[512];      /* why the cache was rebuilt or not used (empty when all went well) */
    bool prefetch;              /* forward passes ask for the next layer's weights ahead */
    uint64_t locked_bytes;      /* weight bytes mlocked */
} sp_model;

/* How to load. Zero-initialized: default kernels, weights repacked in memory, no progress. */
typedef struct {
    const sp_kernels *kernels;  /* NULL: sp_kernels_select(NULL) */
    const char *cache_dir;      /* keep the repacked weights in a cache file here and map it (a later
                                 * load maps it instead of repacking); NULL: repack in memory */
    bool progress;              /* report loading progress on stderr */
    bool prefetch;              /* read layer l+1's weights ahead while layer l computes (flash) */
    uint64_t lock_bytes;        /* mlock up to this many bytes of cached weights, first layers first */
} sp_load_opts;

sp_model *sp_model_load_opts(const char *path, const sp_load_opts *o, char *err, size_t errlen);
/* Read a model file's hyper-parameters and weight bytes without loading it (for memory planning). */
bool sp_model_peek(const char *path, sp_hparams *hp, uint64_t *weight_bytes, char *err, size_t errlen);
/* Ask for layer il's weights to be read ahead (no-op unless m->prefetch and a cache is mapped). */
void sp_model_prefetch_layer(const sp_model *m, int il);

/* Load with the default kernels: sp_kernels_select(NULL) (SPARROW_KERNELS, else the CPU's best)
 * and one compute thread per online CPU. */
sp_model *sp_model_load(const char *path, char *err, size_t errlen);
/* Load with a given kernel table (NULL: the default); its pack() re-lays-out the weights once. */
sp_model *sp_model_load_with(const char *path, const sp_kernels *k, char *err, size_t errlen);
/* Compute threads for this model's forward passes (the caller included); n <= 0: online CPUs.
 * Not while a forward pass runs. Returns false (threads unchanged) when threads can't be made. */
bool sp_model_set_threads(sp_model *m, int n);
int sp_model_threads(const sp_model *m);
/* Weight bytes one decode step reads: every matrix once (packed size where packed), the output head
 * included, plus one embedding row. */
uint64_t sp_model_bytes_per_token(const sp_model *m);
void sp_model_free(sp_model *m);
/* Total bytes of weight data (as stored). */
uint64_t sp_model_weight_bytes(const sp_model *m);

/* ---- the forward pass over a ragged batch (engine/forward.c) ----
 * A batch is a list of items, each some tokens of one sequence of a paged KV cache (engine/kv.h), at
 * the positions that follow what the sequence holds. All the batch's tokens go through each matmul
 * together; attention reads each sequence's own blocks. A token's results never depend on what else
 * is in the batch (batch invariance: the same logits alone or batched). */
#include "engine/kv.h"

typedef struct {
    sp_kv_seq *seq;         /* its K/V are written at [len, len + n): reserve them first (sp_kv_seq_reserve) */
    const int32_t *tokens;
    int32_t n;
    float *logits;          /* NULL: none; else n_vocab floats for the last token, or n rows with all_logits */
    bool all_logits;
} sp_batch_item;

typedef struct sp_fwd sp_fwd;
/* Scratch for batches of up to max_tokens tokens over sequences of up to max_ctx positions. */
sp_fwd *sp_fwd_new(const sp_model *m, int32_t max_tokens, int32_t max_ctx, char *err, size_t errlen);
void sp_fwd_free(sp_fwd *f);
int32_t sp_fwd_max_tokens(const sp_fwd *f);
/* Run the batch; each item's tokens are then committed to its sequence (sp_kv_seq_commit). Returns 0,
 * or -1 with err set (bad token id, too many tokens, unreserved positions); nothing is committed then. */
int sp_fwd_eval(sp_fwd *f, sp_batch_item *items, int n_items, char *err, size_t errlen);

/* One sequence with a private KV pool (for `sparrow run`, bench, tests): positions up to n_ctx, the
 * pool's memory committed only as it fills. */
typedef struct sp_ctx sp_ctx;
/* n_ctx <= 0: the model's training context. */
sp_ctx *sp_ctx_new(const sp_model *m, int32_t n_ctx, char *err, size_t errlen);
void sp_ctx_free(sp_ctx *c);
int32_t sp_ctx_n_ctx(const sp_ctx *c);
int32_t sp_ctx_n_past(const sp_ctx *c);
void sp_ctx_reset(sp_ctx *c);
/* Forget positions >= n (keep the first n, e.g. a shared prompt prefix). */
void sp_ctx_truncate(sp_ctx *c, int32_t n);
/* Feed n tokens at positions n_past.. ; logits receives n rows (all_logits) or the last row only
 * (n_vocab floats each). Returns 0, or -1 with err set (bad token id, context full, no memory). */
int sp_ctx_eval(sp_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits,
                char *err, size_t errlen);

/* Format one error line into err (engine-internal helper shared by model.c and forward.c). */
void sp_engine_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
