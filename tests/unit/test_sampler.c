/* tests/unit/test_sampler.c — engine/sampler: exact outcomes for each option on crafted logits
 * (greedy, bias, penalties and their window, top-k, top-p, min-p, their order with temperature),
 * empirical frequencies against the expected distributions on fixed seeds, reproducibility, reset,
 * NaN / -inf handling and a full-size vocabulary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

/* Every filter and penalty off, temperature 1. */
static sp_sampler_params plain(void) {
    sp_sampler_params p = sp_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.seed = 1234;
    return p;
}

static sp_sampler *new_sampler(const sp_sampler_params *p, int n_vocab) {
    sp_sampler *s = sp_sampler_new(p, n_vocab);
    cr_assert_not_null(s);
    return s;
}

/* One sample from a copy of `logits` (the sampler may modify its input). */
static int32_t sample_copy(sp_sampler *s, const float *logits, int n) {
    float *buf = malloc((size_t)n * sizeof *buf);
    cr_assert_not_null(buf);
    memcpy(buf, logits, (size_t)n * sizeof *buf);
    int32_t t = sp_sampler_sample(s, buf);
    free(buf);
    cr_assert(t >= 0 && t < n, "token %d out of range [0,%d)", t, n);
    return t;
}

/* One sample with parameters `p` on a fresh sampler (no history). */
static int32_t sample_once(const sp_sampler_params *p, const float *logits, int n) {
    sp_sampler *s = new_sampler(p, n);
    int32_t t = sample_copy(s, logits, n);
    sp_sampler_free(s);
    return t;
}

static void histogram(const sp_sampler_params *p, const float *logits, int n, int draws, int *counts) {
    sp_sampler *s = new_sampler(p, n);
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) counts[sample_copy(s, logits, n)]++;
    sp_sampler_free(s);
}

/* Chi-square critical values at alpha = 0.001, by degrees of freedom. */
static double chi2_critical(int df) {
    static const double crit[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88};
    cr_assert(df >= 1 && df <= 9);
    return crit[df];
}

/* Tokens with expected probability 0 must never appear; the others must match within `tol`
 * absolute, and the whole histogram must pass a chi-square test. */
static void expect_freqs(const int *counts, const double *prob, int n, int draws, double tol) {
    double chi2 = 0.0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        if (prob[i] == 0.0) {
            cr_assert_eq(counts[i], 0, "token %d should never be drawn, got %d", i, counts[i]);
            continue;
        }
        double f = (double)counts[i] / draws, e = prob[i] * draws;
        cr_assert(fabs(f - prob[i]) <= tol, "token %d: frequency %.4f, expected %.4f", i, f, prob[i]);
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
        df++;
    }
    if (df >= 1) cr_assert(chi2 < chi2_critical(df), "chi-square %.2f with %d dof", chi2, df);
}

/* Normalizes w[0..n) in place. */
static void normalize(double *w, int n) {
    double t = 0.0;
    for (int i = 0; i < n; i++) t += w[i];
    for (int i = 0; i < n; i++) w[i] /= t;
}

/* The probabilities 0.5 / 0.3 / 0.15 / 0.05 as logits. */
static void four_probs(float *l) {
    l[0] = logf(0.5f);
    l[1] = logf(0.3f);
    l[2] = logf(0.15f);
    l[3] = logf(0.05f);
}

/* A small deterministic generator for test logits, independent of the sampler's PRNG. */
static uint32_t lcg(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return *st >> 8;
}

static float lcg_logit(uint32_t *st) { return (float)(lcg(st) % 20000) / 1000.0f - 10.0f; }

/* ---------------------------------------------------------------- defaults, greedy */

Test(sampler, default_params) {
    sp_sampler_params p = sp_sampler_default_params();
    cr_assert_float_eq(p.temperature, 0.8f, 1e-7);
    cr_assert_eq(p.top_k, 40);
    cr_assert_float_eq(p.top_p, 0.95f, 1e-7);
    cr_assert_float_eq(p.min_p, 0.05f, 1e-7);
    cr_assert_eq(p.repeat_penalty, 1.0f);
    cr_assert_eq(p.penalty_last_n, 64);
    cr_assert_eq(p.presence_penalty, 0.0f);
    cr_assert_eq(p.frequency_penalty, 0.0f);
    cr_assert_null(p.bias);
    cr_assert_eq(p.n_bias, 0);
    cr_assert_eq(p.seed, 0);
}

Test(sampler, new_rejects_empty_vocab) {
    sp_sampler_params p = plain();
    cr_assert_null(sp_sampler_new(&p, 0));
    cr_assert_null(sp_sampler_new(&p, -5));
    sp_sampler *s = sp_sampler_new(NULL, 4); /* NULL params: defaults */
    cr_assert_not_null(s);
    sp_sampler_free(s);
    sp_sampler_free(NULL);
}

Test(sampler, greedy_picks_argmax) {
    float l[] = {0.1f, 2.5f, -1.0f, 2.4f};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    cr_assert_eq(sample_once(&p, l, 4), 1);
    p.temperature = -1.0f;
    cr_assert_eq(sample_once(&p, l, 4), 1);
    for (uint64_t seed = 0; seed < 20; seed++) {
        p.seed = seed;
        cr_assert_eq(sample_once(&p, l, 4), 1);
    }
}

Test(sampler, greedy_ties_go_to_lowest_id) {
    float l[] = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    cr_assert_eq(sample_once(&p, l, 5), 1);
}

/* ---------------------------------------------------------------- logit bias */

Test(sampler, bias_flips_argmax) {
    float l[] = {1.0f, 2.0f, 0.5f};
    sp_logit_bias b[] = {{0, 1.5f}}; /* 2.5 > 2.0 */
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    cr_assert_eq(sample_once(&p, l, 3), 1);
    p.bias = b;
    p.n_bias = 1;
    cr_assert_eq(sample_once(&p, l, 3), 0);
    b[0].bias = 0.9f; /* 1.9 < 2.0 */
    cr_assert_eq(sample_once(&p, l, 3), 1);
    sp_logit_bias down[] = {{1, -1.2f}}; /* 0.8 < 1.0 */
    p.bias = down;
    cr_assert_eq(sample_once(&p, l, 3), 0);
}

Test(sampler, bias_list_is_copied_and_out_of_range_ignored) {
    float l[] = {1.0f, 2.0f, 0.5f};
    sp_logit_bias b[] = {{-1, 100.0f}, {3, 100.0f}, {2, 5.0f}};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    p.bias = b;
    p.n_bias = 3;
    sp_sampler *s = new_sampler(&p, 3);
    b[2].bias = -100.0f; /* after creation: must not matter */
    cr_assert_eq(sample_copy(s, l, 3), 2);
    sp_sampler_free(s);
}

Test(sampler, bias_minus_inf_bans) {
    float l[] = {1.0f, 2.0f, 0.5f};
    sp_logit_bias ban[] = {{1, -INFINITY}};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    p.bias = ban;
    p.n_bias = 1;
    cr_assert_eq(sample_once(&p, l, 3), 0);

    /* Sampling: token 1 never appears; the others keep their softmax ratio. */
    p.temperature = 1.0f;
    int counts[3];
    histogram(&p, l, 3, 4000, counts);
    double prob[3] = {exp(1.0), 0.0, exp(0.5)};
    normalize(prob, 3);
    expect_freqs(counts, prob, 3, 4000, 0.03);
}

/* ---------------------------------------------------------------- penalties */

/* Greedy result after accepting `hist` with parameters `p`. */
static int32_t greedy_after(sp_sampler_params p, const int32_t *hist, int n_hist, const float *l, int n) {
    p.temperature = 0.0f;
    sp_sampler *s = new_sampler(&p, n);
    for (int i = 0; i < n_hist; i++) sp_sampler_accept(s, hist[i]);
    int32_t t = sample_copy(s, l, n);
    sp_sampler_free(s);
    return t;
}

Test(sampler, repeat_penalty_divides_positive_logits) {
    float l[] = {3.0f, 2.0f, 0.0f};
    int32_t h[] = {0};
    sp_sampler_params p = plain();
    p.repeat_penalty = 1.4f; /* 3 / 1.4 = 2.14 > 2 */
    cr_assert_eq(greedy_after(p, h, 1, l, 3), 0);
    p.repeat_penalty = 1.6f; /* 3 / 1.6 = 1.875 < 2 */
    cr_assert_eq(greedy_after(p, h, 1, l, 3), 1);
}

Test(sampler, repeat_penalty_multiplies_negative_logits) {
    float l[] = {-1.0f, -1.3f, -5.0f};
    int32_t once[] = {0}, thrice[] = {0, 0, 0};
    sp_sampler_params p = plain();
    p.repeat_penalty = 1.2f; /* -1.2 > -1.3 */
    cr_assert_eq(greedy_after(p, once, 1, l, 3), 0);
    cr_assert_eq(greedy_after(p, thrice, 3, l, 3), 0); /* applied once per distinct token */
    p.repeat_penalty = 1.4f; /* -1.4 < -1.3 */
    cr_assert_eq(greedy_after(p, once, 1, l, 3), 1);
}

Test(sampler, repeat_penalty_before_presence) {
    /* -1 * 2 - 0.1 = -2.1 > -2.15 (the other order would give -2.2). */
    float l[] = {-1.0f, -2.15f};
    int32_t h[] = {0};
    sp_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.presence_penalty = 0.1f;
    cr_assert_eq(greedy_after(p, h, 1, l, 2), 0);
}

Test(sampler, frequency_penalty_scales_with_count) {
    float l[] = {5.0f, 4.0f, 3.7f};
    int32_t h[] = {0, 0, 0, 1};
    sp_sampler_params p = plain();
    p.frequency_penalty = 0.35f; /* 5 - 1.05 = 3.95, 4 - 0.35 = 3.65, 3.7 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 0);
    p.frequency_penalty = 0.45f; /* 5 - 1.35 = 3.65, 4 - 0.45 = 3.55, 3.7 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 2);
    p.frequency_penalty = -2.0f; /* negative: encourages; 4 + 2 = 6 < 5 + 6 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 0);
}

Test(sampler, presence_penalty_ignores_count) {
    float l[] = {5.0f, 4.0f, 3.7f};
    int32_t h[] = {0, 0, 0, 1};
    sp_sampler_params p = plain();
    p.presence_penalty = 1.2f; /* 3.8, 2.8, 3.7 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 0);
    p.presence_penalty = 1.4f; /* 3.6, 2.6, 3.7 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 2);
}

Test(sampler, frequency_and_presence_add_up) {
    float l[] = {5.0f, 4.0f, 3.7f};
    int32_t h[] = {0, 0, 0, 1};
    sp_sampler_params p = plain();
    p.frequency_penalty = 0.2f; /* 5 - 0.6 - 0.5 = 3.9 */
    p.presence_penalty = 0.5f;
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 0);
    p.frequency_penalty = 0.3f; /* 5 - 0.9 - 0.5 = 3.6 */
    cr_assert_eq(greedy_after(p, h, 4, l, 3), 2);
}

Test(sampler, penalty_window_forgets_old_tokens) {
    float l[] = {3.0f, 2.0f, 0.0f, 0.0f};
    int32_t recent[] = {0, 2}, old[] = {0, 2, 3};
    sp_sampler_params p = plain();
    p.repeat_penalty = 2.0f; /* token 0 in the window: 1.5 < 2 */
    p.penalty_last_n = 2;
    cr_assert_eq(greedy_after(p, recent, 2, l, 4), 1);
    cr_assert_eq(greedy_after(p, old, 3, l, 4), 0); /* 0 has left the window */
    p.penalty_last_n = -1;
    cr_assert_eq(greedy_after(p, old, 3, l, 4), 1);
    p.penalty_last_n = 0; /* off */
    cr_assert_eq(greedy_after(p, recent, 2, l, 4), 0);
}

Test(sampler, penalty_windows_longer_than_initial_history) {
    enum { N = 10000 };
    float l[] = {3.0f, 2.0f, 0.0f, 0.0f};
    int32_t *h = malloc(N * sizeof *h);
    cr_assert_not_null(h);
    h[0] = 0;
    for (int i = 1; i < N; i++) h[i] = 2 + i % 2;
    sp_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = -1; /* the whole history: still remembers token 0 */
    cr_assert_eq(greedy_after(p, h, N, l, 4), 1);
    p.penalty_last_n = 5000;
    cr_assert_eq(greedy_after(p, h, 5000, l, 4), 1); /* 0 is the oldest of 5000 */
    cr_assert_eq(greedy_after(p, h, 5001, l, 4), 0); /* ... and now just outside */
    free(h);
}

Test(sampler, whole_history_is_bounded) {
    /* penalty_last_n = -1 remembers up to 2^20 tokens; older ones fall out. */
    enum { CAP = 1 << 20 };
    float l[] = {3.0f, 2.0f, 0.0f};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = -1;
    sp_sampler *s = new_sampler(&p, 3);
    sp_sampler_accept(s, 0);
    for (int i = 1; i < CAP; i++) sp_sampler_accept(s, 2);
    cr_assert_eq(sample_copy(s, l, 3), 1); /* token 0 is the oldest kept */
    sp_sampler_accept(s, 2);
    cr_assert_eq(sample_copy(s, l, 3), 0); /* ... and now forgotten */
    sp_sampler_free(s);
}

Test(sampler, accept_ignores_out_of_range) {
    float l[] = {3.0f, 2.0f};
    int32_t h[] = {-1, 2, 1000};
    sp_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    cr_assert_eq(greedy_after(p, h, 3, l, 2), 0);
}

/* ---------------------------------------------------------------- top-k */

Test(sampler, top_k_1_is_deterministic) {
    float l[] = {0.3f, 1.0f, 0.99f, -2.0f, 0.5f};
    sp_sampler_params p = plain();
    p.top_k = 1;
    p.temperature = 5.0f;
    for (uint64_t seed = 0; seed < 50; seed++) {
        p.seed = seed;
        sp_sampler *s = new_sampler(&p, 5);
        for (int i = 0; i < 20; i++) cr_assert_eq(sample_copy(s, l, 5), 1);
        sp_sampler_free(s);
    }
}

Test(sampler, top_k_2_yields_only_the_two_best) {
    float l[] = {1.0f, 2.0f, 1.9f, 0.5f, 1.95f};
    sp_sampler_params p = plain();
    p.top_k = 2;
    int counts[5];
    histogram(&p, l, 5, 2000, counts);
    double prob[5] = {0, exp(2.0), 0, 0, exp(1.95)};
    normalize(prob, 5);
    expect_freqs(counts, prob, 5, 2000, 0.04);
}

Test(sampler, top_k_boundary_ties_keep_lowest_ids) {
    float l[] = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
    sp_sampler_params p = plain();
    p.top_k = 2;
    int counts[5];
    histogram(&p, l, 5, 2000, counts);
    double prob[5] = {0, 0.5, 0.5, 0, 0};
    expect_freqs(counts, prob, 5, 2000, 0.04);
}

Test(sampler, top_k_at_or_above_vocab_is_off) {
    float l[] = {0.0f, 1.0f, 0.5f};
    int counts[3];
    double prob[3] = {exp(0.0), exp(1.0), exp(0.5)};
    normalize(prob, 3);
    sp_sampler_params p = plain();
    p.top_k = 3;
    histogram(&p, l, 3, 6000, counts);
    expect_freqs(counts, prob, 3, 6000, 0.02);
    p.top_k = 1000;
    histogram(&p, l, 3, 6000, counts);
    expect_freqs(counts, prob, 3, 6000, 0.02);
}

/* ---------------------------------------------------------------- top-p */

static void check_top_p(float top_p, int top_k, const double *expected) {
    float l[4];
    four_probs(l);
    sp_sampler_params p = plain();
    p.top_p = top_p;
    p.top_k = top_k;
    int counts[4];
    histogram(&p, l, 4, 10000, counts);
    expect_freqs(counts, expected, 4, 10000, 0.02);
}

Test(sampler, top_p_keeps_smallest_set_reaching_p) {
    check_top_p(0.8f, 0, (double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0});
    check_top_p(0.81f, 0, (double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
    check_top_p(0.5f, 0, (double[]){1, 0, 0, 0});
    check_top_p(0.4f, 0, (double[]){1, 0, 0, 0});
    check_top_p(0.0f, 0, (double[]){1, 0, 0, 0});
    check_top_p(0.96f, 0, (double[]){0.5, 0.3, 0.15, 0.05});
}

Test(sampler, top_p_sorts_unordered_vocab) {
    /* The same four probabilities under shuffled ids. */
    float l[6] = {logf(0.15f), -INFINITY, logf(0.5f), logf(0.05f), logf(0.3f), -INFINITY};
    sp_sampler_params p = plain();
    p.top_p = 0.8f;
    int counts[6];
    histogram(&p, l, 6, 10000, counts);
    expect_freqs(counts, (double[]){0, 0, 0.625, 0, 0.375, 0}, 6, 10000, 0.02);
}

Test(sampler, top_p_sees_probabilities_after_top_k) {
    /* Without top-k, 0.82 needs three tokens (0.5, 0.8, 0.95); after top-k 3 the mass is
     * renormalized to 0.526, 0.842, 1 and two suffice. */
    check_top_p(0.82f, 0, (double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
    check_top_p(0.82f, 3, (double[]){0.625, 0.375, 0, 0});
}

Test(sampler, top_p_uses_probabilities_before_temperature) {
    /* At T = 2 the tempered probabilities would be 0.378 / 0.293 / 0.207 / 0.120 and p = 0.8 would
     * keep three tokens; top-p runs at temperature 1 (llama.cpp's order), so it keeps {0, 1}, and
     * temperature then reshapes those two to sqrt(0.5) : sqrt(0.3). */
    float l[4];
    four_probs(l);
    sp_sampler_params p = plain();
    p.top_p = 0.8f;
    p.temperature = 2.0f;
    int counts[4];
    histogram(&p, l, 4, 10000, counts);
    double prob[4] = {sqrt(0.5), sqrt(0.3), 0, 0};
    normalize(prob, 4);
    expect_freqs(counts, prob, 4, 10000, 0.02);
}

/* ---------------------------------------------------------------- min-p */

static void check_min_p(float min_p, const double *expected) {
    float l[4];
    four_probs(l);
    sp_sampler_params p = plain();
    p.min_p = min_p;
    int counts[4];
    histogram(&p, l, 4, 10000, counts);
    expect_freqs(counts, expected, 4, 10000, 0.02);
}

Test(sampler, min_p_drops_unlikely_tokens) {
    check_min_p(0.09f, (double[]){0.5, 0.3, 0.15, 0.05});                    /* bar 0.045 */
    check_min_p(0.2f, (double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});   /* bar 0.1 */
    check_min_p(0.35f, (double[]){0.625, 0.375, 0, 0});                      /* bar 0.175 */
    check_min_p(0.7f, (double[]){1, 0, 0, 0});                               /* bar 0.35 */
    check_min_p(1.0f, (double[]){1, 0, 0, 0});
    check_min_p(5.0f, (double[]){1, 0, 0, 0}); /* above 1: still keeps the best */
}

Test(sampler, full_chain_on_fixed_seed) {
    /* 0.4 / 0.3 / 0.15 / 0.1 / 0.05: top-k 3 -> 0.47 / 0.35 / 0.18; top-p 0.9 keeps all three;
     * min-p 0.4 (bar 0.19) drops token 2; T = 0.7 -> 0.4^(1/0.7) : 0.3^(1/0.7). */
    float l[] = {logf(0.4f), logf(0.3f), logf(0.15f), logf(0.1f), logf(0.05f)};
    sp_sampler_params p = plain();
    p.top_k = 3;
    p.top_p = 0.9f;
    p.min_p = 0.4f;
    p.temperature = 0.7f;
    int counts[5];
    histogram(&p, l, 5, 10000, counts);
    double prob[5] = {pow(0.4, 1 / 0.7), pow(0.3, 1 / 0.7), 0, 0, 0};
    normalize(prob, 5);
    expect_freqs(counts, prob, 5, 10000, 0.02);
}

/* ---------------------------------------------------------------- temperature, PRNG */

static void check_temperature(float t) {
    float l[] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.2f};
    sp_sampler_params p = plain();
    p.temperature = t;
    int counts[6];
    histogram(&p, l, 6, 20000, counts);
    double prob[6];
    for (int i = 0; i < 6; i++) prob[i] = exp(l[i] / t);
    normalize(prob, 6);
    expect_freqs(counts, prob, 6, 20000, 0.02);
}

Test(sampler, temperature_half) { check_temperature(0.5f); }
Test(sampler, temperature_two) { check_temperature(2.0f); }
Test(sampler, temperature_one) { check_temperature(1.0f); }

Test(sampler, uniform_logits_draw_uniformly) {
    float l[10] = {0};
    double prob[10];
    for (int i = 0; i < 10; i++) prob[i] = 0.1;
    for (uint64_t seed = 0; seed < 3; seed++) {
        sp_sampler_params p = plain();
        p.seed = seed;
        int counts[10];
        histogram(&p, l, 10, 20000, counts);
        expect_freqs(counts, prob, 10, 20000, 0.01);
    }
}

/* ---------------------------------------------------------------- reproducibility, reset */

/* 100 tokens from a 50-token vocabulary with default sampling, feeding each token back. The logits
 * of each step depend only on the step and the previous token. */
static void generate(sp_sampler *s, int32_t *out, int n) {
    float l[50];
    int32_t prev = 0;
    for (int i = 0; i < n; i++) {
        uint32_t st = (uint32_t)(i * 7919 + prev);
        for (int j = 0; j < 50; j++) l[j] = lcg_logit(&st) * 0.3f;
        out[i] = sp_sampler_sample(s, l);
        cr_assert(out[i] >= 0 && out[i] < 50);
        sp_sampler_accept(s, out[i]);
        prev = out[i];
    }
}

static sp_sampler *default_sampler(uint64_t seed) {
    sp_sampler_params p = sp_sampler_default_params();
    p.temperature = 1.5f;
    p.repeat_penalty = 1.1f;
    p.seed = seed;
    return new_sampler(&p, 50);
}

static int differences(const int32_t *a, const int32_t *b, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

Test(sampler, same_seed_same_sequence) {
    int32_t a[100], b[100], c[100];
    sp_sampler *s1 = default_sampler(42), *s2 = default_sampler(42), *s3 = default_sampler(43);
    generate(s1, a, 100);
    generate(s2, b, 100);
    generate(s3, c, 100);
    cr_assert_eq(differences(a, b, 100), 0);
    cr_assert_gt(differences(a, c, 100), 10);
    int distinct = 0, seen[50] = {0};
    for (int i = 0; i < 100; i++) distinct += !seen[a[i]]++;
    cr_assert_gt(distinct, 5, "the sequence should actually be random, got %d distinct", distinct);
    sp_sampler_free(s1);
    sp_sampler_free(s2);
    sp_sampler_free(s3);
}

Test(sampler, reset_reseeds_and_clears_history) {
    int32_t a[100], b[100], c[100], d[100];
    sp_sampler *s = default_sampler(7), *fresh = default_sampler(8);
    generate(s, a, 100);
    sp_sampler_reset(s, 7);
    generate(s, b, 100);
    cr_assert_eq(differences(a, b, 100), 0);
    sp_sampler_reset(s, 8);
    generate(s, c, 100);
    generate(fresh, d, 100);
    cr_assert_eq(differences(c, d, 100), 0);
    sp_sampler_free(s);
    sp_sampler_free(fresh);

    float l[] = {3.0f, 2.0f};
    sp_sampler_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    s = new_sampler(&p, 2);
    sp_sampler_accept(s, 0);
    cr_assert_eq(sample_copy(s, l, 2), 1);
    sp_sampler_reset(s, 0);
    cr_assert_eq(sample_copy(s, l, 2), 0);
    sp_sampler_free(s);
}

/* ---------------------------------------------------------------- NaN, -inf, +inf */

Test(sampler, nan_is_never_picked) {
    float l[] = {NAN, 1.0f, NAN, 0.5f, NAN};
    sp_logit_bias b[] = {{2, 100.0f}};
    sp_sampler_params p = plain();
    p.bias = b;
    p.n_bias = 1;
    p.temperature = 0.0f;
    cr_assert_eq(sample_once(&p, l, 5), 1);
    p.temperature = 1.0f;
    int counts[5];
    histogram(&p, l, 5, 4000, counts);
    double prob[5] = {0, exp(1.0), 0, exp(0.5), 0};
    normalize(prob, 5);
    expect_freqs(counts, prob, 5, 4000, 0.03);
    p.top_p = 0.5f; /* the sort must cope too */
    p.top_k = 3;
    histogram(&p, l, 5, 500, counts);
    cr_assert_eq(counts[1], 500);
}

Test(sampler, nothing_selectable_stays_in_range) {
    float nan4[] = {NAN, NAN, NAN, NAN};
    float ninf4[] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    float l[] = {0.1f, 0.9f, 0.3f, NAN};
    sp_logit_bias ban_all[] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
    for (int greedy = 0; greedy < 2; greedy++) {
        sp_sampler_params p = sp_sampler_default_params();
        p.temperature = greedy ? 0.0f : 0.8f;
        cr_assert_eq(sample_once(&p, nan4, 4), 0);
        cr_assert_eq(sample_once(&p, ninf4, 4), 0);
        p.bias = ban_all;
        p.n_bias = 3;
        cr_assert_eq(sample_once(&p, l, 4), 1, "everything banned: the original argmax");
    }
}

Test(sampler, plus_infinity_dominates) {
    float l[] = {1.0f, INFINITY, 2.0f, INFINITY};
    sp_sampler_params p = plain();
    int counts[4];
    histogram(&p, l, 4, 2000, counts);
    expect_freqs(counts, (double[]){0, 0.5, 0, 0.5}, 4, 2000, 0.04);
    p.temperature = 0.0f;
    cr_assert_eq(sample_once(&p, l, 4), 1);
}

/* ---------------------------------------------------------------- full-size vocabulary */

enum { BIG_VOCAB = 151936 };

static float *big_logits(uint32_t seed) {
    float *l = malloc(BIG_VOCAB * sizeof *l);
    cr_assert_not_null(l);
    for (int i = 0; i < BIG_VOCAB; i++) l[i] = (float)(lcg(&seed) & 0xffffff) * (20.0f / 0x1p24f) - 10.0f;
    return l;
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The k-th largest logit. */
static float kth_largest(const float *l, int k) {
    float *c = malloc(BIG_VOCAB * sizeof *c);
    cr_assert_not_null(c);
    memcpy(c, l, BIG_VOCAB * sizeof *c);
    qsort(c, BIG_VOCAB, sizeof *c, cmp_desc);
    float v = c[k - 1];
    cr_assert_neq(v, c[k], "test logits should have no tie at the boundary");
    free(c);
    return v;
}

Test(sampler, big_vocab_top_k_40) {
    float *l = big_logits(99);
    float bar = kth_largest(l, 40);
    sp_sampler_params p = plain();
    p.top_k = 40;
    p.temperature = 1e6f; /* nearly uniform over the 40: every one of them must show up */
    sp_sampler *s = new_sampler(&p, BIG_VOCAB);
    int seen = 0;
    char *hit = calloc(BIG_VOCAB, 1);
    cr_assert_not_null(hit);
    for (int i = 0; i < 1000; i++) {
        int32_t t = sample_copy(s, l, BIG_VOCAB);
        cr_assert_geq(l[t], bar, "token %d (logit %f) is not in the top 40", t, l[t]);
        seen += !hit[t]++;
    }
    cr_assert_eq(seen, 40);
    free(hit);
    sp_sampler_free(s);
    free(l);
}

Test(sampler, big_vocab_defaults) {
    float *l = big_logits(5);
    float bar40 = kth_largest(l, 40);
    sp_sampler_params d = sp_sampler_default_params();
    sp_sampler *s = new_sampler(&d, BIG_VOCAB);
    for (int i = 0; i < 200; i++) {
        int32_t t = sample_copy(s, l, BIG_VOCAB);
        cr_assert_geq(l[t], bar40);
        sp_sampler_accept(s, t);
    }
    sp_sampler_free(s);
    free(l);
}

/* ---------------------------------------------------------------- top-p with top-k off, any size */

typedef struct {
    int32_t id;
    float logit;
} ref_cand;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Reference top-p by a plain full sort: fills rank[id] (0 = best) and returns how many are kept.
 * Asserts that the answer does not hinge on rounding. */
static int ref_top_p(const float *l, int n, float p, int *rank) {
    ref_cand *c = malloc((size_t)n * sizeof *c);
    cr_assert_not_null(c);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        c[i] = (ref_cand){i, l[i]};
        total += exp((double)l[i] - 10.0);
    }
    qsort(c, (size_t)n, sizeof *c, ref_cmp);
    for (int i = 0; i < n; i++) rank[c[i].id] = i;
    double cum = 0.0, prev = 0.0;
    int kept = n;
    for (int i = 0; i < n; i++) {
        prev = cum;
        cum += exp((double)c[i].logit - 10.0) / total;
        if (cum >= p) {
            kept = i + 1;
            break;
        }
    }
    /* The sampler counts p as reached 1e-6 early (rounding slack): keep clear of that band. */
    cr_assert(prev < (double)p - 2e-6, "test data too close to the p boundary");
    free(c);
    return kept;
}

/* Near-uniform sampling (huge temperature) over the top-p set: every draw is inside the reference
 * set, and the least likely 2% of the set shows up too (so the set is not too small either). */
static void check_top_p_set(const float *l, int n, float p, int expect_min, int expect_max, int draws) {
    int *rank = malloc((size_t)n * sizeof *rank);
    cr_assert_not_null(rank);
    int kept = ref_top_p(l, n, p, rank);
    cr_assert(kept >= expect_min && kept <= expect_max, "reference keeps %d tokens", kept);
    sp_sampler_params sp = plain();
    sp.top_p = p;
    sp.temperature = 1e4f;
    sp_sampler *s = new_sampler(&sp, n);
    int tail = kept - (kept + 49) / 50, tail_hits = 0;
    for (int i = 0; i < draws; i++) {
        int32_t t = sample_copy(s, l, n);
        cr_assert_lt(rank[t], kept, "token %d has rank %d, only %d kept", t, rank[t], kept);
        tail_hits += rank[t] >= tail;
    }
    cr_assert_gt(tail_hits, 0, "no draw from the last ranks of the %d kept", kept);
    sp_sampler_free(s);
    free(rank);
}

enum { MID_VOCAB = 40000 };

/* `head` tokens (ids scattered over the vocabulary) at logit 5, the rest at 0. */
static float *headed_logits(int head) {
    float *l = calloc(MID_VOCAB, sizeof *l);
    cr_assert_not_null(l);
    for (int i = 0; i < head; i++) l[(i * 7919) % MID_VOCAB] = 5.0f;
    return l;
}

Test(sampler, top_p_without_top_k_short_prefix) {
    float *l = headed_logits(100); /* head mass 0.271: p = 0.25 keeps 93 of its ties */
    check_top_p_set(l, MID_VOCAB, 0.25f, 80, 100, 800);
    free(l);
}

Test(sampler, top_p_without_top_k_medium_prefix) {
    float *l = headed_logits(300); /* head mass 0.529: 296 of the head */
    check_top_p_set(l, MID_VOCAB, 0.52f, 257, 300, 800);
    free(l);
    l = headed_logits(100); /* the whole head and ~1850 of the tail */
    check_top_p_set(l, MID_VOCAB, 0.305f, 1000, 2048, 800);
    free(l);
}

Test(sampler, top_p_without_top_k_long_prefix) {
    float *l = big_logits(3); /* flat: 0.9 of the first 8000 needs ~900 tokens, past 8000 / 16 */
    check_top_p_set(l, 8000, 0.9f, 501, 8000, 1000);
    free(l);
}

Test(sampler, big_vocab_top_p_without_top_k) {
    float *l = big_logits(5); /* flat over [-10, 10): p = 0.05 needs the top ~390 */
    check_top_p_set(l, BIG_VOCAB, 0.05f, 300, 500, 600);
    free(l);
}
