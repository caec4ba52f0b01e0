/* engine/model.c — builds an sp_model from a GGUF file: reads the architecture's hyper-parameters,
 * checks every tensor the graph needs (name, type, shape) and points weight matrices into the
 * mapping. 1-D tensors (norms, biases) are converted to owned f32 arrays. The chosen kernel table
 * then repacks the matrices it has a layout for, and the model owns the compute thread pool. */
#include "engine/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/pack.h"
#include "kernels/types.h"
#include "storage/wcache.h"

void sp_engine_seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Loader state: the file plus where to report. */
typedef struct {
    sp_model *m;
    char *err;
    size_t errlen;
} loader;

static bool arch_key_u32(loader *L, const char *suffix, uint32_t *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->m->hp.arch_name, suffix);
    if (sp_gguf_get_u32(L->m->gguf, key, out)) return true;
    if (required) sp_engine_seterr(L->err, L->errlen, "model: missing or invalid metadata key '%s'", key);
    return false;
}

static bool arch_key_f32(loader *L, const char *suffix, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->m->hp.arch_name, suffix);
    return sp_gguf_get_f32(L->m->gguf, key, out);
}

static bool positive_i32(loader *L, const char *what, uint32_t v) {
    if (v == 0 || v > (1u << 24)) {
        sp_engine_seterr(L->err, L->errlen, "model: %s = %u is out of range", what, v);
        return false;
    }
    return true;
}

static bool read_arch(loader *L) {
    sp_gguf_str a;
    if (!sp_gguf_get_str(L->m->gguf, "general.architecture", &a)) {
        sp_engine_seterr(L->err, L->errlen, "model: missing 'general.architecture'");
        return false;
    }
    sp_hparams *hp = &L->m->hp;
    if (sp_gguf_str_eq(a, "llama")) hp->arch = SP_ARCH_LLAMA;
    else if (sp_gguf_str_eq(a, "qwen2")) hp->arch = SP_ARCH_QWEN2;
    else if (sp_gguf_str_eq(a, "qwen3")) hp->arch = SP_ARCH_QWEN3;
    else {
        sp_engine_seterr(L->err, L->errlen, "model: architecture '%.*s' is not supported (llama, qwen2, qwen3)",
               (int)(a.len > 40 ? 40 : a.len), a.ptr);
        return false;
    }
    snprintf(hp->arch_name, sizeof hp->arch_name, "%.*s", (int)a.len, a.ptr);
    hp->rope_neox = hp->arch != SP_ARCH_LLAMA;
    return true;
}

static bool read_hparams(loader *L) {
    sp_hparams *hp = &L->m->hp;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, head_dim, n_rot;
    if (!arch_key_u32(L, "embedding_length", &n_embd, true) ||
        !arch_key_u32(L, "block_count", &n_layer, true) ||
        !arch_key_u32(L, "attention.head_count", &n_head, true) ||
        !arch_key_u32(L, "feed_forward_length", &n_ff, true))
        return false;
    if (!positive_i32(L, "embedding_length", n_embd) || !positive_i32(L, "block_count", n_layer) ||
        !positive_i32(L, "attention.head_count", n_head) || !positive_i32(L, "feed_forward_length", n_ff))
        return false;
    if (!arch_key_u32(L, "attention.head_count_kv", &n_head_kv, false)) n_head_kv = n_head;
    if (!arch_key_u32(L, "context_length", &n_ctx, false)) n_ctx = 2048;
    if (!arch_key_u32(L, "attention.key_length", &head_dim, false)) {
        if (n_embd % n_head) {
            sp_engine_seterr(L->err, L->errlen, "model: embedding_length %u not divisible by head_count %u", n_embd, n_head);
            return false;
        }
        head_dim = n_embd / n_head;
    }
    if (!arch_key_u32(L, "rope.dimension_count", &n_rot, false)) n_rot = head_dim;
    if (!positive_i32(L, "attention.head_count_kv", n_head_kv) || !positive_i32(L, "context_length", n_ctx) ||
        !positive_i32(L, "attention.key_length", head_dim))
        return false;
    if (n_head % n_head_kv) {
        sp_engine_seterr(L->err, L->errlen, "model: head_count %u is not a multiple of head_count_kv %u", n_head, n_head_kv);
        return false;
    }
    if (n_rot > head_dim || n_rot % 2) {
        sp_engine_seterr(L->err, L->errlen, "model: rope.dimension_count %u invalid for head dim %u", n_rot, head_dim);
        return false;
    }
    hp->n_embd = (int32_t)n_embd;
    hp->n_layer = (int32_t)n_layer;
    hp->n_head = (int32_t)n_head;
    hp->n_head_kv = (int32_t)n_head_kv;
    hp->n_ff = (int32_t)n_ff;
    hp->n_ctx_train = (int32_t)n_ctx;
    hp->head_dim = (int32_t)head_dim;
    hp->n_rot = (int32_t)n_rot;
    hp->rope_theta = 10000.0f;
    arch_key_f32(L, "rope.freq_base", &hp->rope_theta);
    hp->rms_eps = 1e-5f;
    arch_key_f32(L, "attention.layer_norm_rms_epsilon", &hp->rms_eps);
    if (!(hp->rope_theta > 0.0f) || !(hp->rms_eps >= 0.0f)) {
        sp_engine_seterr(L->err, L->errlen, "model: invalid rope.freq_base or rms epsilon");
        return false;
    }
    return true;
}

static const sp_gguf_tensor *find(loader *L, const char *name, bool required) {
    const sp_gguf_tensor *t = sp_gguf_find_tensor(L->m->gguf, name);
    if (!t && required) sp_engine_seterr(L->err, L->errlen, "model: missing tensor '%s'", name);
    return t;
}

/* A 2-D weight [n_out][n_in] (GGUF ne = {n_in, n_out}) of a type the engine can read. */
static bool load_mat(loader *L, const char *name, int64_t n_in, int64_t n_out, sp_mat *out, bool required) {
    const sp_gguf_tensor *t = find(L, name, required);
    if (!t) return !required;
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1) {
        sp_engine_seterr(L->err, L->errlen, "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
               name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
               (long long)n_in, (long long)n_out);
        return false;
    }
    const sp_type_info *ti = sp_type_get(t->type);
    if (!ti || !ti->can_dequant) {
        sp_engine_seterr(L->err, L->errlen, "model: tensor '%s' has type %s, which this engine cannot read yet", name,
               ti ? ti->name : "unknown");
        return false;
    }
    out->type = t->type;
    out->n_in = n_in;
    out->n_out = n_out;
    out->row_bytes = sp_type_row_bytes(t->type, n_in);
    out->data = t->data;
    return true;
}

/* A 1-D tensor of n elements, converted to an owned f32 array. */
static bool load_vec(loader *L, const char *name, int64_t n, float **out, bool required) {
    *out = NULL;
    const sp_gguf_tensor *t = find(L, name, required);
    if (!t) return !required;
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1) {
        sp_engine_seterr(L->err, L->errlen, "model: tensor '%s' has %lld elements, expected %lld", name,
               (long long)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]), (long long)n);
        return false;
    }
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        sp_engine_seterr(L->err, L->errlen, "model: out of memory");
        return false;
    }
    if (!sp_dequant_row(t->type, t->data, v, n)) {
        const sp_type_info *ti = sp_type_get(t->type);
        sp_engine_seterr(L->err, L->errlen, "model: tensor '%s' has type %s, which this engine cannot read", name,
               ti ? ti->name : "unknown");
        free(v);
        return false;
    }
    *out = v;
    return true;
}

static bool load_layer(loader *L, int il, sp_layer *ly) {
    const sp_hparams *hp = &L->m->hp;
    int64_t d = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
    bool qwen2 = hp->arch == SP_ARCH_QWEN2, qwen3 = hp->arch == SP_ARCH_QWEN3;
    return load_vec(L, NAME("attn_norm.weight"), d, &ly->attn_norm, true) &&
           load_mat(L, NAME("attn_q.weight"), d, q_dim, &ly->wq, true) &&
           load_mat(L, NAME("attn_k.weight"), d, kv_dim, &ly->wk, true) &&
           load_mat(L, NAME("attn_v.weight"), d, kv_dim, &ly->wv, true) &&
           load_mat(L, NAME("attn_output.weight"), q_dim, d, &ly->wo, true) &&
           load_vec(L, NAME("attn_q.bias"), q_dim, &ly->bq, qwen2) &&
           load_vec(L, NAME("attn_k.bias"), kv_dim, &ly->bk, qwen2) &&
           load_vec(L, NAME("attn_v.bias"), kv_dim, &ly->bv, qwen2) &&
           load_vec(L, NAME("attn_q_norm.weight"), hp->head_dim, &ly->q_norm, qwen3) &&
           load_vec(L, NAME("attn_k_norm.weight"), hp->head_dim, &ly->k_norm, qwen3) &&
           load_vec(L, NAME("ffn_norm.weight"), d, &ly->ffn_norm, true) &&
           load_mat(L, NAME("ffn_gate.weight"), d, hp->n_ff, &ly->w_gate, true) &&
           load_mat(L, NAME("ffn_up.weight"), d, hp->n_ff, &ly->w_up, true) &&
           load_mat(L, NAME("ffn_down.weight"), hp->n_ff, d, &ly->w_down, true);
#undef NAME
}

static bool load_weights(loader *L) {
    sp_model *m = L->m;
    sp_hparams *hp = &m->hp;
    const sp_gguf_tensor *emb = find(L, "token_embd.weight", true);
    if (!emb) return false;
    if (emb->ne[1] <= 0 || emb->ne[1] > (1 << 24)) {
        sp_engine_seterr(L->err, L->errlen, "model: token_embd.weight has a bad vocabulary dimension");
        return false;
    }
    hp->n_vocab = (int32_t)emb->ne[1];
    if (!load_mat(L, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, true)) return false;
    if (!load_vec(L, "output_norm.weight", hp->n_embd, &m->output_norm, true)) return false;
    if (!load_mat(L, "output.weight", hp->n_embd, hp->n_vocab, &m->output, false)) return false;
    m->tied = m->output.data == NULL;
    if (m->tied) m->output = m->tok_embd;
    if (!load_vec(L, "rope_freqs.weight", hp->n_rot / 2, &m->rope_freqs, false)) return false;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        sp_engine_seterr(L->err, L->errlen, "model: out of memory");
        return false;
    }
    for (int il = 0; il < hp->n_layer; il++)
        if (!load_layer(L, il, &m->layers[il])) return false;
    return true;
}

static bool load_tokenizer(loader *L) {
    char terr[256] = "";
    L->m->tok = sp_tok_from_gguf(L->m->gguf, terr, sizeof terr);
    if (!L->m->tok) {
        sp_engine_seterr(L->err, L->errlen, "model: tokenizer: %s", terr);
        return false;
    }
    if (sp_tok_n_vocab(L->m->tok) > L->m->hp.n_vocab) {
        sp_engine_seterr(L->err, L->errlen, "model: tokenizer has %d tokens but the embedding only %d rows",
               sp_tok_n_vocab(L->m->tok), L->m->hp.n_vocab);
        return false;
    }
    return true;
}

/* Every matrix the forward pass multiplies with (the embedding is only looked up, unless tied),
 * the output head first: it is the largest, and packing it before the packed copies of the others
 * have accumulated keeps the load's peak memory down. */
static int model_mats(sp_model *m, sp_mat **out, int cap) {
    int n = 0;
    if (n < cap) out[n++] = &m->output;
    for (int il = 0; il < m->hp.n_layer; il++) {
        sp_layer *ly = &m->layers[il];
        sp_mat *ms[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0] && n < cap; i++) out[n++] = ms[i];
    }
    return n;
}

/* Drop the file pages of a matrix's original bytes (they stay mapped and fault back in if read, e.g.
 * embedding rows of a tied output head). */
static void drop_source_pages(const sp_mat *w) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)w->data, e = a + (uintptr_t)(w->row_bytes * (size_t)w->n_out);
    a = (a + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    e &= ~(uintptr_t)(page - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

static void progress(const sp_load_opts *o, const char *what, int done, int total) {
    if (!o || !o->progress) return;
    static int last = -1;
    int pct = total ? done * 100 / total : 100;
    if (isatty(2)) {
        int bar = pct * 30 / 100;
        fprintf(stderr, "\rsparrow: %s [%.*s%*s] %3d%%", what, bar, "##############################", 30 - bar, "", pct);
        if (done == total) fputc('\n', stderr);
    } else if (pct / 25 != last / 25 || done == total) {
        fprintf(stderr, "sparrow: %s %d%%\n", what, pct);
    }
    last = done == total ? -1 : pct;
}

/* Repack every matrix for m->k in memory. */
static void pack_in_memory(sp_model *m, sp_mat **mats, int n, const sp_load_opts *o) {
    for (int i = 0; i < n; i++) {
        if (m->k->pack(mats[i])) {
            m->packed_bytes += mats[i]->packed_bytes;
            drop_source_pages(mats[i]);
        }
        progress(o, "repacking weights", i + 1, n);
    }
}

static void fill_entries(sp_mat **mats, int n, sp_wcache_entry *e) {
    for (int i = 0; i < n; i++) {
        uint32_t fmt;
        size_t bytes = sp_pack_plan(mats[i], &fmt);
        e[i] = (sp_wcache_entry){fmt, mats[i]->type, mats[i]->n_in, mats[i]->n_out, bytes, NULL};
    }
}

/* Repack one matrix at a time into a new cache file (never the whole packed model in memory). */
static bool build_cache(sp_model *m, sp_mat **mats, int n, sp_wcache_entry *e, const char *key,
                        const sp_load_opts *o, char *err, size_t errlen) {
    sp_wcache_writer *w = sp_wcache_begin(m->wcache_path, key, n, err, errlen);
    if (!w) return false;
    for (int i = 0; i < n; i++) {
        const void *blob = "";
        if (e[i].bytes) {
            if (!m->k->pack(mats[i]) || mats[i]->packed_bytes != e[i].bytes || mats[i]->pack_fmt != e[i].fmt) {
                sp_mat_unpack(mats[i]);
                sp_wcache_abort(w);
                sp_engine_seterr(err, errlen, "weight cache: the kernels packed a matrix unlike pack.h plans it");
                return false;
            }
            blob = mats[i]->packed;
        }
        bool ok = sp_wcache_append(w, &e[i], blob, err, errlen);
        sp_mat_unpack(mats[i]);
        drop_source_pages(mats[i]);
        if (!ok) {
            sp_wcache_abort(w);
            return false;
        }
        progress(o, "repacking weights into the cache", i + 1, n);
    }
    return sp_wcache_commit(w, err, errlen);
}

/* Point the matrices at the cache's blobs. */
static void use_cache(sp_model *m, sp_mat **mats, int n, const sp_wcache_entry *e) {
    for (int i = 0; i < n; i++) {
        if (!e[i].bytes) continue;
        mats[i]->packed = (void *)e[i].data;
        mats[i]->pack_fmt = e[i].fmt;
        mats[i]->packed_bytes = e[i].bytes;
        mats[i]->packed_mapped = true;
        m->packed_bytes += e[i].bytes;
    }
}

/* Repack for m->k: through the cache file in o->cache_dir when given (map it if valid, else build it
 * and map it), else in memory. A cache that cannot be written is a note, not an error. */
static void pack_weights(sp_model *m, const char *path, const sp_load_opts *o) {
    if (!m->k->pack) return;
    int cap = m->hp.n_layer * 7 + 1;
    sp_mat **mats = malloc((size_t)cap * sizeof *mats);
    sp_wcache_entry *e = malloc((size_t)cap * sizeof *e);
    if (!mats || !e) abort();
    int n = model_mats(m, mats, cap);
    char key[2048], err[512] = "";
    if (o && o->cache_dir) {
        char layout[128];
        snprintf(layout, sizeof layout, "%s/pack1", m->k->name);
        if (!sp_wcache_key(path, layout, key, sizeof key)) {
            snprintf(m->wcache_note, sizeof m->wcache_note, "weight cache not used: cannot identify the model file");
        } else {
            sp_wcache_path(o->cache_dir, key, m->wcache_path, sizeof m->wcache_path);
            fill_entries(mats, n, e);
            m->wcache = sp_wcache_open(m->wcache_path, key, e, n, err, sizeof err);
            if (m->wcache) {
                m->wcache_state = 1;
            } else {
                if (strncmp(err, "missing", 7) != 0) snprintf(m->wcache_note, sizeof m->wcache_note, "rebuilt: %s", err);
                sp_wcache_prune(o->cache_dir);
                if (build_cache(m, mats, n, e, key, o, err, sizeof err)) {
                    m->wcache = sp_wcache_open(m->wcache_path, key, e, n, err, sizeof err);
                    if (m->wcache) m->wcache_state = 2;
                }
                if (!m->wcache) snprintf(m->wcache_note, sizeof m->wcache_note, "weight cache not used: %s", err);
            }
        }
        if (m->wcache) {
            use_cache(m, mats, n, e);
            uint64_t budget = o->lock_bytes;
            for (int i = 0; i < n && budget; i++) { /* output head, then layers in order */
                if (!e[i].bytes || e[i].bytes > budget || !sp_wcache_lock(m->wcache, i)) continue;
                budget -= e[i].bytes;
                m->locked_bytes += e[i].bytes;
            }
            m->prefetch = o->prefetch;
        }
    }
    if (!m->wcache) pack_in_memory(m, mats, n, o);
    free(mats);
    free(e);
}

void sp_model_prefetch_layer(const sp_model *m, int il) {
    if (!m->prefetch || !m->wcache || il < 0 || il > m->hp.n_layer) return;
    if (il == m->hp.n_layer) sp_wcache_prefetch(m->wcache, 0); /* the output head comes after the last layer */
    else
        for (int i = 0; i < 7; i++) sp_wcache_prefetch(m->wcache, 1 + 7 * il + i);
}

bool sp_model_set_threads(sp_model *m, int n) {
    if (n <= 0) n = sp_cpu_count();
    if (m->pool && sp_pool_size(m->pool) == n) return true;
    sp_pool *p = sp_pool_new(n);
    if (!p) return false;
    sp_pool_free(m->pool);
    m->pool = p;
    return true;
}

int sp_model_threads(const sp_model *m) { return sp_pool_size(m->pool); }

bool sp_model_peek(const char *path, sp_hparams *hp, uint64_t *weight_bytes, char *err, size_t errlen) {
    sp_model m;
    memset(&m, 0, sizeof m);
    m.gguf = sp_gguf_open(path, err, errlen);
    if (!m.gguf) return false;
    loader L = {&m, err, errlen};
    bool ok = read_arch(&L) && read_hparams(&L);
    if (ok) {
        *hp = m.hp;
        *weight_bytes = sp_model_weight_bytes(&m);
    }
    sp_gguf_close(m.gguf);
    return ok;
}

sp_model *sp_model_load(const char *path, char *err, size_t errlen) {
    return sp_model_load_with(path, NULL, err, errlen);
}

sp_model *sp_model_load_with(const char *path, const sp_kernels *k, char *err, size_t errlen) {
    sp_load_opts o = {.kernels = k};
    return sp_model_load_opts(path, &o, err, errlen);
}

sp_model *sp_model_load_opts(const char *path, const sp_load_opts *o, char *err, size_t errlen) {
    const sp_kernels *k = o ? o->kernels : NULL;
    if (!k) k = sp_kernels_select(NULL);
    if (!k) {
        sp_engine_seterr(err, errlen, "model: SPARROW_KERNELS names no kernel table usable here (known: %s)", sp_kernels_names());
        return NULL;
    }
    sp_model *m = calloc(1, sizeof *m);
    if (!m) {
        sp_engine_seterr(err, errlen, "model: out of memory");
        return NULL;
    }
    m->gguf = sp_gguf_open(path, err, errlen);
    if (!m->gguf) {
        free(m);
        return NULL;
    }
    loader L = {m, err, errlen};
    if (!read_arch(&L) || !read_hparams(&L) || !load_weights(&L) || !load_tokenizer(&L)) {
        sp_model_free(m);
        return NULL;
    }
    sp_gguf_get_bool(m->gguf, "sparrow.synthetic", &m->synthetic);
    m->k = k;
    pack_weights(m, path, o);
    if (!sp_model_set_threads(m, 0)) {
        sp_engine_seterr(err, errlen, "model: cannot start the compute threads");
        sp_model_free(m);
        return NULL;
    }
    return m;
}

void sp_model_free(sp_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int il = 0; il < m->hp.n_layer; il++) {
            sp_layer *ly = &m->layers[il];
            sp_mat_unpack(&ly->wq); sp_mat_unpack(&ly->wk); sp_mat_unpack(&ly->wv); sp_mat_unpack(&ly->wo);
            sp_mat_unpack(&ly->w_gate); sp_mat_unpack(&ly->w_up); sp_mat_unpack(&ly->w_down);
            free(ly->attn_norm); free(ly->bq); free(ly->bk); free(ly->bv);
            free(ly->q_norm); free(ly->k_norm); free(ly->ffn_norm);
        }
        free(m->layers);
    }
    sp_mat_unpack(&m->output);
    sp_wcache_close(m->wcache);
    sp_pool_free(m->pool);
    free(m->output_norm);
    free(m->rope_freqs);
    sp_tok_free(m->tok);
    sp_gguf_close(m->gguf);
    free(m);
}

uint64_t sp_model_weight_bytes(const sp_model *m) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < sp_gguf_n_tensors(m->gguf); i++) sum += sp_gguf_tensor_at(m->gguf, i)->nbytes;
    return sum;
}

static uint64_t mat_bytes(const sp_mat *w) {
    return w->packed ? w->packed_bytes : (uint64_t)w->row_bytes * (uint64_t)w->n_out;
}

uint64_t sp_model_bytes_per_token(const sp_model *m) {
    uint64_t sum = m->tok_embd.row_bytes + mat_bytes(&m->output);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const sp_layer *ly = &m->layers[il];
        sum += mat_bytes(&ly->wq) + mat_bytes(&ly->wk) + mat_bytes(&ly->wv) + mat_bytes(&ly->wo) +
               mat_bytes(&ly->w_gate) + mat_bytes(&ly->w_up) + mat_bytes(&ly->w_down);
    }
    return sum;
}
