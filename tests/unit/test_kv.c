/* tests/unit/test_kv.c — the paged KV cache (engine/kv.c): block accounting, prefix sharing by
 * content (any earlier prefix, not only the last), copy-on-write, LRU eviction of released blocks,
 * forks, an exhausted pool; and the forward pass over ragged batches: the same logits for a
 * sequence alone or batched with others (bitwise), with attached prefixes, and with a q8 cache. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "testutil.h"

#define B SP_KV_BLOCK

static sp_kv *pool(int32_t blocks, sp_kv_type t) {
    char err[256];
    sp_kv *kv = sp_kv_new(2, 2, 8, t, (size_t)blocks * sp_kv_block_bytes(2, 2, 8, t), blocks, err, sizeof err);
    cr_assert_not_null(kv, "%s", err);
    return kv;
}

static void seq_tokens(int32_t *t, int32_t n, int32_t seed) {
    for (int32_t i = 0; i < n; i++) t[i] = (seed * 7919 + i * 31) % 500;
}

/* Append n tokens with a recognisable K value per position (as the forward pass would). */
static void fill(sp_kv_seq *s, const int32_t *t, int32_t n) {
    cr_assert(sp_kv_seq_reserve(s, n));
    for (int32_t i = 0; i < n; i++) {
        int32_t pos = sp_kv_seq_len(s) + i;
        for (int il = 0; il < 2; il++) ((float *)sp_kv_k(s, il, pos, NULL))[0] = (float)(t[i] * 10 + il);
    }
    sp_kv_seq_commit(s, t, n);
}

static float k0(const sp_kv_seq *s, int il, int32_t pos) { return ((const float *)sp_kv_k(s, il, pos, NULL))[0]; }

static void stats(sp_kv *kv, int32_t used, int32_t cached, int32_t free_) {
    sp_kv_stats st;
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.used, used, "used %d want %d", st.used, used);
    cr_expect_eq(st.cached, cached, "cached %d want %d", st.cached, cached);
    cr_expect_eq(st.free, free_, "free %d want %d", st.free, free_);
    cr_expect_eq(st.used + st.cached + st.free, st.total);
}

Test(kv, budget_too_small_is_a_clear_error) {
    char err[256] = "";
    size_t bb = sp_kv_block_bytes(2, 2, 8, SP_KV_F32);
    cr_expect_eq(bb, (size_t)2 * 2 * B * 16 * sizeof(float));
    cr_expect_eq(sp_kv_block_bytes(2, 2, 8, SP_KV_Q8), (size_t)2 * 2 * B * (16 + 2 * sizeof(float)));
    cr_expect_null(sp_kv_new(2, 2, 8, SP_KV_F32, 3 * bb, 4, err, sizeof err));
    cr_expect(strstr(err, "4 are needed") != NULL, "%s", err);
}

Test(kv, blocks_are_counted_and_released) {
    sp_kv *kv = pool(8, SP_KV_F32);
    sp_kv_seq *s = sp_kv_seq_new(kv, 1000);
    int32_t t[40];
    seq_tokens(t, 40, 1);
    cr_expect_eq(sp_kv_seq_blocks_needed(s, 40), 3);
    fill(s, t, 40);
    cr_expect_eq(sp_kv_seq_len(s), 40);
    stats(kv, 3, 0, 5);
    cr_expect_float_eq(k0(s, 1, 33), (float)(t[33] * 10 + 1), 0);
    sp_kv_seq_truncate(s, 20); /* the third block goes back to the free list (never addressed) */
    stats(kv, 2, 0, 6);
    sp_kv_seq_free(s); /* blocks 0 and 1 were filled (addressed): cached, not freed */
    stats(kv, 0, 2, 6);
    sp_kv_free(kv);
}

Test(kv, any_earlier_prefix_is_shared) {
    sp_kv *kv = pool(16, SP_KV_F32);
    int32_t a[50], b[50];
    seq_tokens(a, 50, 1);
    seq_tokens(b, 50, 2);
    sp_kv_seq *sa = sp_kv_seq_new(kv, 1000), *sb = sp_kv_seq_new(kv, 1000);
    fill(sa, a, 50);
    fill(sb, b, 50); /* another prompt after a's */
    sp_kv_seq_free(sa);
    sp_kv_seq_free(sb);
    /* a prompt that begins like a (not the last one) gets a's 3 full blocks */
    int32_t p[60];
    memcpy(p, a, 50 * sizeof *p);
    seq_tokens(p + 50, 10, 3);
    cr_expect_eq(sp_kv_count_cached(kv, p, 60), 3);
    sp_kv_seq *s = sp_kv_seq_new(kv, 1000);
    cr_expect_eq(sp_kv_seq_attach_prefix(s, p, 60), 3 * B);
    for (int32_t pos = 0; pos < 3 * B; pos++) cr_expect_float_eq(k0(s, 0, pos), (float)(a[pos] * 10), 0);
    /* a prompt that diverges inside block 2 shares blocks 0 and 1 only */
    int32_t q[40];
    memcpy(q, a, 40 * sizeof *q);
    q[2 * B + 3] = 499;
    cr_expect_eq(sp_kv_count_cached(kv, q, 40), 2);
    /* the same tokens at other positions are not a match (keys chain the whole prefix) */
    cr_expect_eq(sp_kv_count_cached(kv, a + B, 34), 0);
    sp_kv_stats st;
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.hit_tokens, 3 * B);
    sp_kv_seq_free(s);
    sp_kv_free(kv);
}

Test(kv, whole_prompt_cached_recomputes_the_last_position_in_a_copy) {
    sp_kv *kv = pool(8, SP_KV_F32);
    int32_t a[32];
    seq_tokens(a, 32, 4);
    sp_kv_seq *sa = sp_kv_seq_new(kv, 100);
    fill(sa, a, 32);
    sp_kv_seq *s = sp_kv_seq_new(kv, 100);
    cr_expect_eq(sp_kv_seq_attach_prefix(s, a, 32), 31); /* one token left to compute */
    cr_expect_eq(sp_kv_seq_blocks_needed(s, 1), 1);      /* block 1 is shared: copied on write */
    stats(kv, 2, 0, 6);
    int32_t last = 7;
    fill(s, &last, 1);
    sp_kv_stats st;
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.cow_copies, 1);
    cr_expect_float_eq(k0(s, 0, 31), 70.0f, 0);
    cr_expect_float_eq(k0(sa, 0, 31), (float)(a[31] * 10), 0, "the shared block is untouched");
    cr_expect_float_eq(k0(s, 1, 20), (float)(a[20] * 10 + 1), 0, "the copy holds the earlier positions");
    stats(kv, 3, 0, 5);
    sp_kv_seq_free(sa);
    sp_kv_seq_free(s);
    sp_kv_free(kv);
}

Test(kv, forks_share_until_they_write) {
    sp_kv *kv = pool(8, SP_KV_F32);
    int32_t a[20];
    seq_tokens(a, 20, 5);
    sp_kv_seq *s = sp_kv_seq_new(kv, 100);
    fill(s, a, 20);
    sp_kv_seq *f = sp_kv_seq_fork(s);
    cr_expect_eq(sp_kv_seq_len(f), 20);
    stats(kv, 2, 0, 6);
    int32_t x = 11, y = 12;
    fill(s, &x, 1); /* s copies its partial block; f keeps the original */
    fill(f, &y, 1); /* f is now the only owner: writes in place */
    cr_expect_float_eq(k0(s, 0, 20), 110.0f, 0);
    cr_expect_float_eq(k0(f, 0, 20), 120.0f, 0);
    cr_expect_float_eq(k0(s, 0, 19), (float)(a[19] * 10), 0);
    stats(kv, 3, 0, 5);
    sp_kv_seq_free(s);
    sp_kv_seq_free(f);
    sp_kv_free(kv);
}

Test(kv, released_blocks_are_evicted_least_recent_first) {
    sp_kv *kv = pool(4, SP_KV_F32);
    int32_t a[16], b[16], c[48];
    seq_tokens(a, 16, 6);
    seq_tokens(b, 16, 7);
    seq_tokens(c, 48, 8);
    sp_kv_seq *s = sp_kv_seq_new(kv, 100);
    fill(s, a, 16);
    sp_kv_seq_free(s);
    s = sp_kv_seq_new(kv, 100);
    fill(s, b, 16);
    sp_kv_seq_free(s);
    stats(kv, 0, 2, 2);
    /* a was released first: reusing b keeps it fresh; a new 3-block sequence evicts a only */
    cr_expect_eq(sp_kv_count_cached(kv, a, 16), 1);
    s = sp_kv_seq_new(kv, 100);
    fill(s, c, 48);
    cr_expect_eq(sp_kv_count_cached(kv, a, 16), 0);
    cr_expect_eq(sp_kv_count_cached(kv, b, 16), 1);
    stats(kv, 3, 1, 0);
    /* the pool is exhausted: a 4th block evicts b, a 5th cannot be had */
    cr_expect(sp_kv_seq_reserve(s, 16));
    cr_expect_not(sp_kv_seq_reserve(s, 17));
    cr_expect_eq(sp_kv_seq_len(s), 48, "a failed reserve changes nothing");
    sp_kv_stats st;
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.evictions, 2);
    sp_kv_seq_free(s);
    sp_kv_free(kv);
}

Test(kv, evicted_and_idle_blocks_spill_to_a_file_and_come_back) {
    sp_kv *kv = pool(4, SP_KV_F32);
    char err[256] = "";
    cr_assert(sp_kv_set_spill(kv, "/tmp", 8 * sp_kv_block_bytes(2, 2, 8, SP_KV_F32), err, sizeof err), "%s", err);
    sp_kv_set_clock(kv, 100);
    int32_t a[32], b[48];
    seq_tokens(a, 32, 11);
    seq_tokens(b, 48, 12);
    sp_kv_seq *s = sp_kv_seq_new(kv, 100);
    fill(s, a, 32);
    sp_kv_seq_free(s);
    s = sp_kv_seq_new(kv, 100);
    fill(s, b, 48); /* 3 blocks: 2 free, then a's first cached block is evicted -> spilled */
    sp_kv_stats st;
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.spilled, 1);
    cr_expect_eq(st.spill_writes, 1);
    cr_expect_eq(sp_kv_count_cached(kv, a, 32), 2, "one block in RAM, one in the file: both found");
    sp_kv_seq_free(s);
    /* a comes back: block 0 read from the file (evicting b's oldest, not a's block 1, still in RAM) */
    sp_kv_seq *r = sp_kv_seq_new(kv, 100);
    cr_expect_eq(sp_kv_seq_attach_prefix(r, a, 33), 32);
    for (int32_t pos = 0; pos < 32; pos++) cr_expect_float_eq(k0(r, 1, pos), (float)(a[pos] * 10 + 1), 0, "pos %d", pos);
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.spill_reads, 1);
    sp_kv_seq_free(r);
    /* idle: released at t=100, spilled at t=200 with a 60 s threshold, RAM freed */
    s = sp_kv_seq_new(kv, 100);
    cr_expect_eq(sp_kv_seq_attach_prefix(s, b, 49), 48);
    sp_kv_seq_free(s);
    cr_expect_eq(sp_kv_spill_idle(kv, 150, 60), 0, "not idle long enough");
    sp_kv_get_stats(kv, &st);
    int32_t cached = st.cached;
    cr_expect_gt(cached, 0);
    cr_expect_eq(sp_kv_spill_idle(kv, 200, 60), cached);
    sp_kv_get_stats(kv, &st);
    cr_expect_eq(st.cached, 0);
    cr_expect_eq(st.free, 4);
    cr_expect_eq(sp_kv_count_cached(kv, b, 48), 3);
    s = sp_kv_seq_new(kv, 100);
    cr_expect_eq(sp_kv_seq_attach_prefix(s, b, 49), 48);
    for (int32_t pos = 0; pos < 48; pos++) cr_expect_float_eq(k0(s, 0, pos), (float)(b[pos] * 10), 0, "pos %d", pos);
    sp_kv_seq_free(s);
    sp_kv_free(kv);
}

Test(kv, max_tokens_is_enforced) {
    sp_kv *kv = pool(8, SP_KV_F32);
    sp_kv_seq *s = sp_kv_seq_new(kv, 20);
    cr_expect_not(sp_kv_seq_reserve(s, 21));
    cr_expect(sp_kv_seq_reserve(s, 20));
    sp_kv_seq_free(s);
    sp_kv_free(kv);
}

/* ---- the forward pass over ragged batches ---- */

static sp_model *load(const char *name) {
    char rel[256], err[256] = "";
    snprintf(rel, sizeof rel, "models/synthetic/%s.gguf", name);
    sp_model *m = sp_model_load_with(tu_shared(rel), NULL, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    sp_model_set_threads(m, 2);
    return m;
}

/* Logits of the last token after feeding prompts[i] (lengths n[i]) in one sequence each: alone
 * (chunk by chunk) or all in one batch. */
static void run(sp_model *m, sp_kv_type kt, int n_seq, int32_t *const *prompts, const int32_t *n, bool batched,
                float *logits) {
    char err[256] = "";
    const sp_hparams *hp = &m->hp;
    sp_kv *kv = sp_kv_new(hp->n_layer, hp->n_head_kv, hp->head_dim, kt,
                          64 * sp_kv_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, kt), 64, err, sizeof err);
    sp_fwd *f = sp_fwd_new(m, 128, 256, err, sizeof err);
    cr_assert(kv && f, "%s", err);
    sp_kv_seq *s[8];
    sp_batch_item it[8];
    for (int i = 0; i < n_seq; i++) {
        s[i] = sp_kv_seq_new(kv, 256);
        cr_assert(sp_kv_seq_reserve(s[i], n[i]));
        it[i] = (sp_batch_item){s[i], prompts[i], n[i], logits + (size_t)i * hp->n_vocab, false};
    }
    if (batched) cr_assert_eq(sp_fwd_eval(f, it, n_seq, err, sizeof err), 0, "%s", err);
    else
        for (int i = 0; i < n_seq; i++) cr_assert_eq(sp_fwd_eval(f, &it[i], 1, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < n_seq; i++) sp_kv_seq_free(s[i]);
    sp_fwd_free(f);
    sp_kv_free(kv);
}

Test(forward, batched_equals_alone_bitwise) {
    const char *names[] = {"tiny-qwen2-q4_0", "tiny-llama-q4_k", "tiny-qwen3-q8_0", "tiny-llama-f32"};
    for (size_t mi = 0; mi < sizeof names / sizeof names[0]; mi++) {
        sp_model *m = load(names[mi]);
        int32_t p0[24], p1[7], p2[1], p3[40];
        seq_tokens(p0, 24, 1), seq_tokens(p1, 7, 2), seq_tokens(p2, 1, 3), seq_tokens(p3, 40, 4);
        int32_t *ps[] = {p0, p1, p2, p3};
        int32_t ns[] = {24, 7, 1, 40};
        size_t nv = (size_t)m->hp.n_vocab;
        float *alone = malloc(4 * nv * sizeof(float)), *batch = malloc(4 * nv * sizeof(float));
        run(m, SP_KV_F32, 4, ps, ns, false, alone);
        run(m, SP_KV_F32, 4, ps, ns, true, batch);
        cr_expect(!memcmp(alone, batch, 4 * nv * sizeof(float)), "%s: batched logits differ", names[mi]);
        free(alone);
        free(batch);
        sp_model_free(m);
    }
}

Test(forward, attached_prefix_gives_the_same_logits) {
    sp_model *m = load("tiny-qwen2-q4_0");
    const sp_hparams *hp = &m->hp;
    char err[256] = "";
    sp_kv *kv = sp_kv_new(hp->n_layer, hp->n_head_kv, hp->head_dim, SP_KV_F32,
                          64 * sp_kv_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, SP_KV_F32), 64, err, sizeof err);
    sp_fwd *f = sp_fwd_new(m, 64, 256, err, sizeof err);
    int32_t p[50];
    seq_tokens(p, 50, 9);
    size_t nv = (size_t)hp->n_vocab;
    float *a = malloc(nv * sizeof(float)), *b = malloc(nv * sizeof(float));
    sp_kv_seq *s1 = sp_kv_seq_new(kv, 256);
    cr_assert(sp_kv_seq_reserve(s1, 50));
    sp_batch_item it = {s1, p, 50, a, false};
    cr_assert_eq(sp_fwd_eval(f, &it, 1, err, sizeof err), 0, "%s", err);
    sp_kv_seq *s2 = sp_kv_seq_new(kv, 256);
    cr_expect_eq(sp_kv_seq_attach_prefix(s2, p, 50), 48);
    cr_assert(sp_kv_seq_reserve(s2, 2));
    it = (sp_batch_item){s2, p + 48, 2, b, false};
    cr_assert_eq(sp_fwd_eval(f, &it, 1, err, sizeof err), 0, "%s", err);
    cr_expect(!memcmp(a, b, nv * sizeof(float)), "logits after an attached prefix differ");
    sp_kv_seq_free(s1);
    sp_kv_seq_free(s2);
    free(a);
    free(b);
    sp_fwd_free(f);
    sp_kv_free(kv);
    sp_model_free(m);
}

Test(forward, q8_cache_stays_close_to_f32) {
    sp_model *m = load("tiny-llama-f32");
    int32_t p0[24], p1[40];
    seq_tokens(p0, 24, 1), seq_tokens(p1, 40, 4);
    int32_t *ps[] = {p0, p1};
    int32_t ns[] = {24, 40};
    size_t nv = (size_t)m->hp.n_vocab;
    float *a = malloc(2 * nv * sizeof(float)), *b = malloc(2 * nv * sizeof(float));
    run(m, SP_KV_F32, 2, ps, ns, true, a);
    run(m, SP_KV_Q8, 2, ps, ns, true, b);
    float maxd = 0, maxr = 0;
    int same_top = 0;
    for (int s = 0; s < 2; s++) {
        size_t ta = 0, tb = 0;
        for (size_t i = 0; i < nv; i++) {
            float d = fabsf(a[s * nv + i] - b[s * nv + i]);
            maxd = d > maxd ? d : maxd;
            maxr = fabsf(a[s * nv + i]) > maxr ? fabsf(a[s * nv + i]) : maxr;
            if (a[s * nv + i] > a[s * nv + ta]) ta = i;
            if (b[s * nv + i] > b[s * nv + tb]) tb = i;
        }
        same_top += ta == tb;
    }
    cr_expect_gt(maxd, 0.0f, "q8 differs from f32 at all");
    cr_expect_lt(maxd / maxr, 0.02f, "q8 KV: max rel err %g", maxd / maxr);
    cr_expect_eq(same_top, 2);
    free(a);
    free(b);
    sp_model_free(m);
}
