/* cli/synth.c — `sparrow synth`: writes a random-weight GGUF in the shape of a real model, so speed
 * and memory can be measured (and demos run) with no download. The file carries a SentencePiece-style
 * vocabulary (control tokens, 256 byte tokens, letter n-grams) so it tokenizes and runs like any model,
 * and `sparrow.synthetic = true` so every tool can say its output is meaningless.
 * Weights are generated row by row from (seed, tensor, row), quantized as they are written: a 1B
 * model never sits in memory. Quantized files follow llama.cpp's choice for the embedding/output
 * matrix (Q6_K when rows are a multiple of 256 and Q6_K can be written, else Q8_0).
 * `--type q4_k_m` writes the mix llama.cpp's quantizer calls Q4_K_M (see q4_k_m_type below). Sizes:
 * qwen2.5-0.5b 395 MB (mostly Q5_0: its rows of 896 are not a multiple of 256), llama-3.2-1b 803 MB. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "kernels/types.h"
#include "storage/gguf.h"

typedef struct {
    const char *name;
    const char *arch;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_theta, rms_eps;
    int tied, qkv_bias, qk_norm;
} preset;

static const preset presets[] = {
    {"tiny", "llama", 256, 4, 8, 4, 32, 768, 4096, 2048, 10000.0f, 1e-5f, 0, 0, 0},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000.0f, 1e-6f, 1, 1, 0},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000.0f, 1e-6f, 1, 0, 1},
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0f, 1e-5f, 1, 0, 0},
};

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

/* ---- deterministic random numbers: splitmix64 per (seed, tensor, row) ---- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Approximately normal: the sum of 4 uniforms, scaled to unit variance. */
static float gauss(uint64_t *s) {
    double acc = 0;
    for (int i = 0; i < 4; i++) acc += (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)((acc - 2.0) * sqrt(3.0));
}

/* ---- tensors ---- */

typedef struct {
    uint64_t seed;
    uint32_t type;
    int64_t n_in, n_out;
    float mean, std;
    float *row; /* n_in scratch */
} tensor_gen;

static void fill_row(void *ctx, int64_t row, void *dst) {
    tensor_gen *g = ctx;
    uint64_t s = g->seed ^ (uint64_t)(row + 1) * 0xD1B54A32D192ED03ull;
    for (int64_t i = 0; i < g->n_in; i++) g->row[i] = g->mean + g->std * gauss(&s);
    if (!sp_quant_row(g->type, g->row, dst, g->n_in)) abort(); /* type checked before writing */
}

/* Generators live until the file is saved; the array is sized up front so pointers stay valid. */
typedef struct {
    sp_gguf_writer *w;
    uint64_t seed;
    tensor_gen *gens;
    int n_gens, cap_gens;
} synth_ctx;

static tensor_gen *new_gen(synth_ctx *S) {
    if (S->n_gens == S->cap_gens) abort(); /* cap computed from the preset */
    return &S->gens[S->n_gens++];
}

static void add_tensor(synth_ctx *S, const char *name, uint32_t type, int64_t n_in, int64_t n_out,
                       float mean, float std) {
    tensor_gen *g = new_gen(S);
    g->seed = S->seed ^ hash_str(name);
    g->type = type;
    g->n_in = n_in;
    g->n_out = n_out;
    g->mean = mean;
    g->std = std;
    g->row = malloc((size_t)n_in * sizeof(float));
    if (!g->row) abort();
    int64_t ne[2] = {n_in, n_out};
    sp_gguf_w_tensor_fn(S->w, name, type, n_out > 1 ? 2 : 1, ne, fill_row, g);
}

/* ---- vocabulary: <unk> <s> </s>, 256 byte tokens, then letter n-grams (closed under prefixes,
 * so SentencePiece merging can build every word), then filler ---- */

typedef struct {
    char **text;
    float *score;
    int32_t *type;
    int n, cap;
} vocab;

static void vocab_add(vocab *v, const char *text, int32_t type) {
    if (v->n >= v->cap) return;
    v->text[v->n] = strdup(text);
    v->score[v->n] = type == 1 ? -(float)v->n : 0.0f;
    v->type[v->n] = type;
    v->n++;
}

static void add_ngrams(vocab *v, const char *prefix, int len) {
    char buf[16];
    int idx[8] = {0};
    for (;;) {
        int p = snprintf(buf, sizeof buf, "%s", prefix);
        for (int i = 0; i < len; i++) buf[p++] = (char)('a' + idx[i]);
        buf[p] = 0;
        vocab_add(v, buf, 1);
        if (v->n >= v->cap) return;
        int i = len - 1;
        while (i >= 0 && ++idx[i] == 26) idx[i--] = 0;
        if (i < 0) return;
    }
}

static void build_vocab(vocab *v, int n_vocab) {
    v->cap = n_vocab;
    v->text = calloc((size_t)n_vocab, sizeof *v->text);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    v->type = calloc((size_t)n_vocab, sizeof *v->type);
    if (!v->text || !v->score || !v->type) abort();
    vocab_add(v, "<unk>", 2);
    vocab_add(v, "<s>", 3);
    vocab_add(v, "</s>", 3);
    char buf[32];
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        vocab_add(v, buf, 6);
    }
    vocab_add(v, "\xe2\x96\x81", 1); /* ▁ */
    for (int c = 33; c < 127; c++) {
        buf[0] = (char)c;
        buf[1] = 0;
        vocab_add(v, buf, 1);
        snprintf(buf, sizeof buf, "\xe2\x96\x81%c", c);
        vocab_add(v, buf, 1);
    }
    for (int len = 2; len <= 4 && v->n < v->cap; len++) {
        add_ngrams(v, "\xe2\x96\x81", len);
        add_ngrams(v, "", len);
    }
    while (v->n < v->cap) {
        snprintf(buf, sizeof buf, "<unused%d>", v->n);
        vocab_add(v, buf, 5);
    }
}

static void free_vocab(vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->score);
    free(v->type);
}

static void write_metadata(sp_gguf_writer *w, const preset *p, const char *type_name, int file_type) {
    char key[128], name[128];
#define K(s) (snprintf(key, sizeof key, "%s." s, p->arch), key)
    sp_gguf_w_str(w, "general.architecture", p->arch);
    snprintf(name, sizeof name, "sparrow-synth %s %s (random weights)", p->name, type_name);
    sp_gguf_w_str(w, "general.name", name);
    if (file_type >= 0) sp_gguf_w_u32(w, "general.file_type", (uint32_t)file_type);
    sp_gguf_w_bool(w, "sparrow.synthetic", true);
    sp_gguf_w_u32(w, K("context_length"), (uint32_t)p->n_ctx);
    sp_gguf_w_u32(w, K("embedding_length"), (uint32_t)p->n_embd);
    sp_gguf_w_u32(w, K("block_count"), (uint32_t)p->n_layer);
    sp_gguf_w_u32(w, K("feed_forward_length"), (uint32_t)p->n_ff);
    sp_gguf_w_u32(w, K("attention.head_count"), (uint32_t)p->n_head);
    sp_gguf_w_u32(w, K("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    sp_gguf_w_u32(w, K("attention.key_length"), (uint32_t)p->head_dim);
    sp_gguf_w_u32(w, K("attention.value_length"), (uint32_t)p->head_dim);
    sp_gguf_w_u32(w, K("rope.dimension_count"), (uint32_t)p->head_dim);
    sp_gguf_w_f32(w, K("rope.freq_base"), p->rope_theta);
    sp_gguf_w_f32(w, K("attention.layer_norm_rms_epsilon"), p->rms_eps);
#undef K
}

static void write_vocab(sp_gguf_writer *w, int n_vocab) {
    vocab v = {0};
    build_vocab(&v, n_vocab);
    sp_gguf_w_str(w, "tokenizer.ggml.model", "llama");
    sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text, (uint64_t)v.n);
    sp_gguf_w_arr_f32(w, "tokenizer.ggml.scores", v.score, (uint64_t)v.n);
    sp_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v.type, (uint64_t)v.n);
    sp_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
    sp_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
    sp_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    sp_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", true);
    sp_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false);
    free_vocab(&v); /* the writer copied the strings */
}

/* ---- which type each matrix gets ---- */

/* The matrices of a layer (and the two vocabulary-sized ones), for choosing their types. */
typedef enum { M_EMBD, M_OUTPUT, M_ATTN_Q, M_ATTN_K, M_ATTN_V, M_ATTN_OUT, M_FFN_GATE, M_FFN_UP, M_FFN_DOWN } matrix_role;

/* What --type asked for: one weight type, or the Q4_K_M mix. */
typedef struct {
    uint32_t type;  /* the matrices' type (Q4_K for the mix) */
    bool q4_k_m;
    int file_type;  /* llama.cpp's general.file_type (LLAMA_FTYPE_*), -1 if it has none */
    const char *name;
} synth_plan;

/* The embedding / output-head type for a single-type quantized file, as llama.cpp chooses it. */
static uint32_t head_type(uint32_t type, int n_embd) {
    if (type == SP_TYPE_F32 || type == SP_TYPE_F16 || type == SP_TYPE_BF16) return type;
    const sp_type_info *q6 = sp_type_get(SP_TYPE_Q6_K);
    if (n_embd % 256 == 0 && q6 && q6->can_quant) return SP_TYPE_Q6_K;
    return SP_TYPE_Q8_0;
}

/* llama.cpp's "use more bits" layers for the _M mixes: the first and last eighth of the layers, and
 * every third layer in between (i - n/8 = 2, 5, 8, ...), with C integer division. For 24 layers: 0-2,
 * 5, 8, 11, 14, 17, 20, 21-23 (12 of 24); for 16: 0, 1, 4, 7, 10, 13, 14, 15 (8 of 16). */
static bool more_bits_layer(int il, int n_layer) {
    return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
}

/* Q4_K_M as llama.cpp's quantizer makes it (llama_tensor_get_type in src/llama-quant.cpp, for a dense
 * model, not Falcon, not 70B):
 * - output.weight, and token_embd.weight when it is also the output head (tied): Q6_K;
 * - attn_v and ffn_down: Q6_K on the "more bits" layers above, Q4_K elsewhere;
 * - every other matrix, the untied token_embd included: Q4_K.
 * Then the shape fallback: a row length (n_in) that is not a multiple of the 256-element K-quant block
 * takes Q4_K -> Q5_0 and Q6_K -> Q8_0 (the vocabulary-sized head goes straight to Q8_0). Both
 * fallbacks have 32-element blocks, which every preset's rows are a multiple of. */
static uint32_t q4_k_m_type(matrix_role role, int il, int n_layer, int64_t n_in, bool tied) {
    uint32_t t = SP_TYPE_Q4_K;
    if (role == M_OUTPUT || (role == M_EMBD && tied)) t = SP_TYPE_Q6_K;
    else if ((role == M_ATTN_V || role == M_FFN_DOWN) && more_bits_layer(il, n_layer)) t = SP_TYPE_Q6_K;
    if (n_in % SP_QK_K) t = t == SP_TYPE_Q6_K ? SP_TYPE_Q8_0 : SP_TYPE_Q5_0;
    return t;
}

static uint32_t matrix_type(const synth_plan *pl, const preset *p, matrix_role role, int il, int64_t n_in) {
    if (pl->q4_k_m) return q4_k_m_type(role, il, p->n_layer, n_in, p->tied);
    if (role == M_EMBD || role == M_OUTPUT) return head_type(pl->type, p->n_embd);
    return pl->type;
}

static void write_tensors(synth_ctx *S, const preset *p, const synth_plan *pl) {
    const float wstd = 0.02f;
    int64_t d = p->n_embd, qd = (int64_t)p->n_head * p->head_dim, kvd = (int64_t)p->n_head_kv * p->head_dim;
    add_tensor(S, "token_embd.weight", matrix_type(pl, p, M_EMBD, -1, d), d, p->n_vocab, 0.0f, wstd);
    add_tensor(S, "output_norm.weight", SP_TYPE_F32, d, 1, 1.0f, 0.05f);
    if (!p->tied) add_tensor(S, "output.weight", matrix_type(pl, p, M_OUTPUT, -1, d), d, p->n_vocab, 0.0f, wstd);
    char n[96];
    for (int il = 0; il < p->n_layer; il++) {
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
#define MAT(s, role, n_in, n_out) add_tensor(S, NAME(s), matrix_type(pl, p, role, il, n_in), n_in, n_out, 0.0f, wstd)
        add_tensor(S, NAME("attn_norm.weight"), SP_TYPE_F32, d, 1, 1.0f, 0.05f);
        MAT("attn_q.weight", M_ATTN_Q, d, qd);
        MAT("attn_k.weight", M_ATTN_K, d, kvd);
        MAT("attn_v.weight", M_ATTN_V, d, kvd);
        if (p->qkv_bias) {
            add_tensor(S, NAME("attn_q.bias"), SP_TYPE_F32, qd, 1, 0.0f, 0.1f);
            add_tensor(S, NAME("attn_k.bias"), SP_TYPE_F32, kvd, 1, 0.0f, 0.1f);
            add_tensor(S, NAME("attn_v.bias"), SP_TYPE_F32, kvd, 1, 0.0f, 0.1f);
        }
        if (p->qk_norm) {
            add_tensor(S, NAME("attn_q_norm.weight"), SP_TYPE_F32, p->head_dim, 1, 1.0f, 0.05f);
            add_tensor(S, NAME("attn_k_norm.weight"), SP_TYPE_F32, p->head_dim, 1, 1.0f, 0.05f);
        }
        MAT("attn_output.weight", M_ATTN_OUT, qd, d);
        add_tensor(S, NAME("ffn_norm.weight"), SP_TYPE_F32, d, 1, 1.0f, 0.05f);
        MAT("ffn_gate.weight", M_FFN_GATE, d, p->n_ff);
        MAT("ffn_up.weight", M_FFN_UP, d, p->n_ff);
        MAT("ffn_down.weight", M_FFN_DOWN, p->n_ff, d);
#undef MAT
#undef NAME
    }
}

static bool writable(uint32_t type) {
    const sp_type_info *ti = sp_type_get(type);
    return ti && ti->can_quant;
}

/* llama.cpp's LLAMA_FTYPE_* for a file of one weight type (-1: none written). */
static int ftype_of(uint32_t type) {
    switch (type) {
    case SP_TYPE_F32: return 0;
    case SP_TYPE_F16: return 1;
    case SP_TYPE_Q4_0: return 2;
    case SP_TYPE_Q4_1: return 3;
    case SP_TYPE_Q8_0: return 7;
    case SP_TYPE_Q5_0: return 8;
    case SP_TYPE_BF16: return 32;
    default: return -1;
    }
}

static bool same_name(const char *a, const char *b) { /* ASCII, case-insensitive */
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* --type NAME -> plan; false (with a message) when this build cannot write it for the preset. */
static bool make_plan(const preset *p, const char *type_name, synth_plan *pl) {
    if (same_name(type_name, "q4_k_m")) {
        static const uint32_t need[] = {SP_TYPE_Q4_K, SP_TYPE_Q6_K, SP_TYPE_Q5_0, SP_TYPE_Q8_0};
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
            if (!writable(need[i])) goto refuse;
        *pl = (synth_plan){.type = SP_TYPE_Q4_K, .q4_k_m = true, .file_type = 15 /* MOSTLY_Q4_K_M */, .name = "q4_k_m"};
        return true;
    }
    int t = sp_type_from_name(type_name);
    const sp_type_info *ti = t >= 0 ? sp_type_get((uint32_t)t) : NULL;
    if (!ti || !ti->can_quant || p->n_embd % (int)ti->blck || p->n_ff % (int)ti->blck) goto refuse;
    *pl = (synth_plan){.type = (uint32_t)t, .file_type = ftype_of((uint32_t)t), .name = ti->name};
    return true;
refuse:
    fprintf(stderr, "sparrow synth: cannot write weights of type '%s' for %s\n", type_name, p->name);
    return false;
}

/* One line per weight type on stderr: how many tensors and bytes, then the file size. */
static void print_summary(const char *path, const synth_ctx *S) {
    uint64_t bytes[SP_TYPE_COUNT] = {0};
    int count[SP_TYPE_COUNT] = {0};
    for (int i = 0; i < S->n_gens; i++) {
        const tensor_gen *g = &S->gens[i];
        if (g->type >= SP_TYPE_COUNT) continue;
        count[g->type]++;
        bytes[g->type] += (uint64_t)sp_type_row_bytes(g->type, g->n_in) * (uint64_t)g->n_out;
    }
    for (uint32_t t = 0; t < SP_TYPE_COUNT; t++)
        if (count[t]) fprintf(stderr, "  %-5s %4d tensors %9.1f MB\n", sp_type_get(t)->name, count[t], bytes[t] / 1e6);
    FILE *f = fopen(path, "rb");
    if (f && fseek(f, 0, SEEK_END) == 0) fprintf(stderr, "sparrow synth: %s: %.1f MB\n", path, ftell(f) / 1e6);
    if (f) fclose(f);
}

bool sp_synth_write(const char *preset_name, const char *type_name, const char *path,
                    unsigned long long seed, bool quiet) {
    const preset *p = find_preset(preset_name);
    if (!p) {
        fprintf(stderr, "sparrow synth: unknown preset '%s' (tiny, qwen2.5-0.5b, qwen3-0.6b, llama-3.2-1b)\n", preset_name);
        return false;
    }
    synth_plan pl;
    if (!make_plan(p, type_name, &pl)) return false;
    synth_ctx S = {.w = sp_gguf_writer_new(), .seed = seed, .cap_gens = 3 + 16 * p->n_layer};
    S.gens = calloc((size_t)S.cap_gens, sizeof *S.gens);
    if (!S.w || !S.gens) abort();
    write_metadata(S.w, p, pl.name, pl.file_type);
    write_vocab(S.w, p->n_vocab);
    write_tensors(&S, p, &pl);
    if (!quiet) fprintf(stderr, "sparrow synth: writing %s (%s, %s, random weights)...\n", path, p->name, pl.name);
    char err[256];
    bool ok = sp_gguf_writer_save(S.w, path, err, sizeof err);
    if (!ok) fprintf(stderr, "sparrow synth: %s\n", err);
    else if (!quiet) print_summary(path, &S);
    for (int i = 0; i < S.n_gens; i++) free(S.gens[i].row);
    free(S.gens);
    sp_gguf_writer_free(S.w);
    return ok;
}

bool sp_cli_default_model(char *buf, unsigned cap) {
    char dir[1024];
    if (!sp_conf_cache_dir(dir, sizeof dir)) {
        fprintf(stderr, "sparrow: cannot create the cache directory (set SPARROW_CACHE_DIR)\n");
        return false;
    }
    int n = snprintf(buf, cap, "%s/synth-tiny-q8_0.gguf", dir);
    if (n < 0 || (unsigned)n >= cap) return false;
    FILE *f = fopen(buf, "rb");
    if (f) {
        fclose(f);
        return true;
    }
    fprintf(stderr, "sparrow: no model given: making the default tiny random-weight model %s\n", buf);
    return sp_synth_write("tiny", "q8_0", buf, 1, true);
}

static void synth_usage(FILE *f) {
    fprintf(f,
            "usage: sparrow synth [--preset NAME] [--type TYPE] [--seed S] -o FILE.gguf\n"
            "  --preset   tiny (default), qwen2.5-0.5b, qwen3-0.6b, llama-3.2-1b\n"
            "  --type     f32, f16, bf16, q8_0 (default), q4_0, q4_1, q5_0, q4_k, q5_k, q6_k (what this\n"
            "             build can write), or q4_k_m: llama.cpp's Q4_K_M mix (Q4_K, attn_v/ffn_down Q6_K on\n"
            "             some layers, Q6_K head; Q5_0/Q8_0 for rows not a multiple of 256)\n"
            "  --seed     weight seed (default 1)\n"
            "The model has random weights: its text is meaningless; it is for benchmarks and demos.\n");
}

int sp_cli_synth(int argc, char **argv) {
    const char *preset_name = "tiny", *type = "q8_0", *out = NULL;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { synth_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "sparrow synth: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--preset")) preset_name = v;
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--seed")) {
            if (!sp_conf_parse_u64(v, &seed)) { fprintf(stderr, "sparrow synth: bad seed '%s'\n", v); return 2; }
        } else { fprintf(stderr, "sparrow synth: unknown option '%s'\n", a); return 2; }
        i++;
    }
    if (!out) { synth_usage(stderr); return 2; }
    return sp_synth_write(preset_name, type, out, seed, false) ? 0 : 1;
}
