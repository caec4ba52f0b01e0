/* tests/unit/test_engine.c — the reference forward pass against ../shared/models/synthetic: for every
 * tiny llama / qwen2 / qwen3 model in every weight format, the logits of the listed tokens match the
 * float64 reference within the `exact` tolerance (max|d| <= 1e-4 max|ref|; argmax equal wherever the
 * reference margin exceeds twice the allowed error). Also: feeding one token at a time gives the
 * same logits as one batch, and hyper-parameters are read as the metadata says. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "testutil.h"

#define N_TOK 24
#define VOCAB 512

static const char *models[] = {
    "tiny-llama-f32", "tiny-llama-f16", "tiny-llama-bf16", "tiny-llama-q8_0", "tiny-llama-q4_0",
    "tiny-llama-q4_1", "tiny-llama-q5_0", "tiny-llama-q4_k", "tiny-llama-q5_k", "tiny-llama-q6_k",
    "tiny-llama-tied-f32", "tiny-llama-tied-q8_0", "tiny-llama-tied-q4_0", "tiny-llama-tied-q4_k",
    "tiny-llama-tied-q6_k", "tiny-qwen2-f32", "tiny-qwen2-q8_0", "tiny-qwen2-q4_0", "tiny-qwen2-q4_k",
    "tiny-qwen2-q6_k", "tiny-qwen2-q4_k_m", "tiny-qwen3-f32", "tiny-qwen3-q8_0", "tiny-qwen3-q4_0",
    "tiny-qwen3-q4_k", "tiny-qwen3-q6_k",
};

static int read_tokens(const char *name, int32_t *ids) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/synthetic/%s.tokens.txt", name);
    char *txt = tu_read_file(tu_shared(rel), NULL);
    cr_assert_not_null(txt, "cannot read %s", rel);
    int n = 0;
    for (char *p = txt, *end; n < N_TOK; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
    }
    free(txt);
    return n;
}

static float *read_ref(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/synthetic/%s.logits.f32", name);
    size_t size = 0;
    float *ref = tu_read_file(tu_shared(rel), &size);
    cr_assert_not_null(ref, "cannot read %s", rel);
    cr_assert_eq(size, (size_t)N_TOK * VOCAB * sizeof(float));
    return ref;
}

static sp_model *load(const char *name) {
    char rel[256], err[256] = "";
    snprintf(rel, sizeof rel, "models/synthetic/%s.gguf", name);
    /* the reference kernels: these checks are the `exact` tolerance (fast kernels: test_kernels) */
    sp_model *m = sp_model_load_with(tu_shared(rel), sp_kernels_ref(), err, sizeof err);
    cr_assert_not_null(m, "%s: %s", name, err);
    return m;
}

static void eval_all(sp_model *m, const int32_t *ids, int n, float *logits, bool one_by_one) {
    char err[256] = "";
    sp_ctx *c = sp_ctx_new(m, 0, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    if (one_by_one) {
        for (int t = 0; t < n; t++)
            cr_assert_eq(sp_ctx_eval(c, &ids[t], 1, logits + (size_t)t * VOCAB, false, err, sizeof err), 0, "%s", err);
    } else {
        cr_assert_eq(sp_ctx_eval(c, ids, n, logits, true, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(sp_ctx_n_past(c), n);
    sp_ctx_free(c);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[best]) best = i;
    return best;
}

static float margin(const float *v, int n) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (v[i] > a) { b = a; a = v[i]; }
        else if (v[i] > b) b = v[i];
    }
    return a - b;
}

/* The `exact` criterion of ../shared/models/synthetic/README.md. */
static void check_exact(const char *name, const float *ref, const float *got) {
    double maxref = 0, maxd = 0;
    for (int i = 0; i < N_TOK * VOCAB; i++) {
        maxref = fmax(maxref, fabs(ref[i]));
        maxd = fmax(maxd, fabs((double)ref[i] - got[i]));
    }
    double tol = 1e-4;
    cr_expect_leq(maxd / maxref, tol, "%s: max rel err %.3e > %.0e", name, maxd / maxref, tol);
    for (int t = 0; t < N_TOK; t++) {
        const float *r = ref + t * VOCAB, *g = got + t * VOCAB;
        if (margin(r, VOCAB) > 2 * tol * maxref)
            cr_expect_eq(argmax(g, VOCAB), argmax(r, VOCAB), "%s: argmax differs at position %d", name, t);
    }
}

Test(engine, synthetic_logits_exact) {
    int32_t ids[N_TOK];
    float *got = malloc(sizeof(float) * N_TOK * VOCAB);
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        cr_assert_eq(read_tokens(models[i], ids), N_TOK);
        float *ref = read_ref(models[i]);
        sp_model *m = load(models[i]);
        cr_assert_eq(m->hp.n_vocab, VOCAB);
        eval_all(m, ids, N_TOK, got, false);
        check_exact(models[i], ref, got);
        sp_model_free(m);
        free(ref);
    }
    free(got);
}

/* Feeding one token at a time must give the same logits as one batch, bit for bit. */
Test(engine, one_by_one_equals_batch) {
    const char *names[] = {"tiny-qwen2-q4_k_m", "tiny-qwen3-f32", "tiny-llama-tied-q4_0"};
    int32_t ids[N_TOK];
    float *a = malloc(sizeof(float) * N_TOK * VOCAB), *b = malloc(sizeof(float) * N_TOK * VOCAB);
    for (int i = 0; i < 3; i++) {
        read_tokens(names[i], ids);
        sp_model *m = load(names[i]);
        eval_all(m, ids, N_TOK, a, false);
        eval_all(m, ids, N_TOK, b, true);
        cr_expect_eq(memcmp(a, b, sizeof(float) * N_TOK * VOCAB), 0, "%s: batch and one-by-one differ", names[i]);
        sp_model_free(m);
    }
    free(a);
    free(b);
}

Test(engine, hparams_from_metadata) {
    sp_model *m = load("tiny-qwen2-f32");
    cr_expect_eq(m->hp.arch, SP_ARCH_QWEN2);
    cr_expect_eq(m->hp.n_embd, 256);
    cr_expect_eq(m->hp.n_layer, 2);
    cr_expect_eq(m->hp.n_head, 4);
    cr_expect_eq(m->hp.n_head_kv, 2);
    cr_expect_eq(m->hp.head_dim, 64);
    cr_expect_eq(m->hp.n_ff, 512);
    cr_expect_eq(m->hp.n_ctx_train, 256);
    cr_expect(m->hp.rope_neox);
    cr_expect_float_eq(m->hp.rope_theta, 1e6f, 1.0f);
    cr_expect_float_eq(m->hp.rms_eps, 1e-6f, 1e-9f);
    cr_expect_not_null(m->layers[0].bq);
    cr_expect(!m->tied);
    sp_model_free(m);

    m = load("tiny-qwen3-q8_0");
    cr_expect_eq(m->hp.arch, SP_ARCH_QWEN3);
    cr_expect(m->tied);
    cr_expect_not_null(m->layers[1].q_norm);
    cr_expect_null(m->layers[1].bq);
    sp_model_free(m);

    m = load("tiny-llama-f32");
    cr_expect_eq(m->hp.arch, SP_ARCH_LLAMA);
    cr_expect(!m->hp.rope_neox);
    cr_expect_float_eq(m->hp.rope_theta, 1e4f, 1e-3f);
    sp_model_free(m);
}

Test(engine, context_limits_and_bad_tokens) {
    char err[256] = "";
    sp_model *m = load("tiny-llama-f32");
    sp_ctx *c = sp_ctx_new(m, 8, err, sizeof err);
    cr_assert_not_null(c);
    cr_expect_eq(sp_ctx_n_ctx(c), 8);
    float logits[VOCAB];
    int32_t bad = 512;
    cr_expect_eq(sp_ctx_eval(c, &bad, 1, logits, false, err, sizeof err), -1);
    cr_expect(strstr(err, "out of range") != NULL, "%s", err);
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    cr_expect_eq(sp_ctx_eval(c, ids, 9, logits, false, err, sizeof err), -1);
    cr_expect(strstr(err, "context full") != NULL, "%s", err);
    cr_expect_eq(sp_ctx_eval(c, ids, 8, logits, false, err, sizeof err), 0, "%s", err);
    cr_expect_eq(sp_ctx_eval(c, ids, 1, logits, false, err, sizeof err), -1);
    sp_ctx_reset(c);
    cr_expect_eq(sp_ctx_eval(c, ids, 1, logits, false, err, sizeof err), 0);
    sp_ctx_free(c);
    sp_model_free(m);
}

Test(engine, n_ctx_defaults_to_training_context) {
    char err[256] = "";
    sp_model *m = load("tiny-llama-f32");
    sp_ctx *c = sp_ctx_new(m, 0, err, sizeof err);
    cr_expect_eq(sp_ctx_n_ctx(c), 256);
    sp_ctx_free(c);
    sp_model_free(m);
}

Test(engine, unsupported_architecture_is_a_clear_error) {
    char err[256] = "";
    sp_model *m = sp_model_load(tu_shared("tokenizers/ggml-vocab-gpt-2.gguf"), err, sizeof err);
    cr_expect_null(m);
    cr_expect(strstr(err, "architecture") != NULL || strstr(err, "missing") != NULL, "%s", err);
}
