/* engine/sampler.c — owns next-token selection: the sampler's parameters (with a private copy of
 * the logit-bias list), its PRNG and its penalty history, and the chain that turns one row of logits
 * into a token id.
 *
 * The chain, in order (it follows llama.cpp's default sampler chain):
 *   1. NaN logits count as -inf (never picked).
 *   2. Logit bias is added (a -inf bias bans a token; out-of-range token ids are ignored).
 *   3. Penalties over the last penalty_last_n accepted tokens (-1 or any negative = the whole
 *      stored history, 0 = off): for each distinct token in the window with count c,
 *      repeat_penalty divides a positive logit / multiplies a non-positive one, then
 *      c * frequency_penalty + (c > 0) * presence_penalty is subtracted.
 *   4. temperature <= 0 (or NaN): greedy — the largest logit, the lowest id on ties.
 *   5. Otherwise, over the tokens whose logit is not -inf:
 *        top-k  keep the k largest (k <= 0 or k >= n_vocab: off),
 *        top-p  keep the smallest prefix, by descending probability, whose cumulative probability
 *               reaches p (at least one token; p >= 1: off),
 *        min-p  drop tokens whose probability is below min_p * the largest (min_p <= 0: off),
 *        temperature, softmax, and one draw from the PRNG.
 *      As in llama.cpp, top-k, top-p and min-p see the probabilities at temperature 1 (top-p's
 *      softmax is taken over the tokens that survived top-k); temperature only reshapes the final
 *      distribution over the tokens that remain.
 * Ordering between equal logits is always by token id (lower first), so every step is deterministic.
 * If every logit ends up -inf, the result is the argmax of the logits as passed in (ignoring NaN),
 * or token 0 when they were all NaN: the result is always in [0, n_vocab).
 *
 * PRNG: xoshiro256** seeded through splitmix64 from the 64-bit seed; a draw uses the top 53 bits as
 * a double in [0, 1). Every non-greedy sample consumes exactly one draw, so the same seed and the
 * same sequence of logits (and accepted tokens) give the same tokens.
 *
 * History: a ring buffer of accepted tokens. It starts at 4096 entries (or penalty_last_n, if larger)
 * and doubles when full, up to penalty_last_n, or up to SP_SAMPLER_HISTORY_MAX entries when
 * penalty_last_n is negative; beyond that the oldest tokens are overwritten. Out-of-range tokens
 * passed to sp_sampler_accept are ignored.
 *
 * Cost: top-k selects with a k-sized heap (no sort of the vocabulary); top-p with top-k off grows
 * such a selection until it holds mass p and sorts the whole vocabulary only when the kept prefix
 * is a large share of it.
 *
 * Memory: all per-call scratch (candidates, weights, penalty counts) is allocated once in
 * sp_sampler_new, sized by n_vocab; sp_sampler_sample never allocates. */
#include "engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SP_SAMPLER_HISTORY_MIN 4096
#define SP_SAMPLER_HISTORY_MAX (1 << 20)
/* top-p's cumulative sum may land a rounding error below p when p sits exactly on a boundary
 * (e.g. 0.5 + 0.3 against p = 0.8f); this much slack makes such a boundary count as reached. */
#define SP_TOP_P_SLACK 1e-6

typedef struct {
    int32_t id;
    float logit;
} sp_cand;

struct sp_sampler {
    sp_sampler_params p; /* p.bias points at `bias` below */
    sp_logit_bias *bias;
    int32_t n_vocab;
    uint64_t rng[4];

    int32_t *hist; /* ring buffer: hist_len tokens starting at hist_start */
    int32_t hist_cap, hist_len, hist_start, hist_limit;

    sp_cand *cand;   /* n_vocab candidates */
    double *weight;  /* n_vocab draw weights, parallel to cand */
    int32_t *count;  /* n_vocab per-token counts, all zero between calls */
    int32_t *window; /* hist_cap: the distinct tokens of the penalty window */
};

/* ---------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t rng[4], uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) rng[i] = splitmix64(&sm);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** step. */
static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------- params */

sp_sampler_params sp_sampler_default_params(void) {
    sp_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.bias = NULL;
    p.n_bias = 0;
    p.seed = 0;
    return p;
}

/* ---------------------------------------------------------------- history */

/* Capacity the ring may grow to for this window setting. */
static int32_t history_limit(int32_t penalty_last_n) {
    if (penalty_last_n < 0 || penalty_last_n > SP_SAMPLER_HISTORY_MAX) return SP_SAMPLER_HISTORY_MAX;
    return penalty_last_n > SP_SAMPLER_HISTORY_MIN ? penalty_last_n : SP_SAMPLER_HISTORY_MIN;
}

/* The i-th oldest stored token, 0 <= i < hist_len. */
static int32_t history_at(const sp_sampler *s, int32_t i) {
    return s->hist[(s->hist_start + i) % s->hist_cap];
}

/* Double the ring (up to hist_limit), laying it out oldest-first. False when it can't grow. */
static bool history_grow(sp_sampler *s) {
    if (s->hist_cap >= s->hist_limit) return false;
    int32_t cap = s->hist_cap > s->hist_limit / 2 ? s->hist_limit : s->hist_cap * 2;
    int32_t *buf = malloc((size_t)cap * sizeof *buf);
    int32_t *win = malloc((size_t)cap * sizeof *win);
    if (!buf || !win) {
        free(buf);
        free(win);
        return false;
    }
    for (int32_t i = 0; i < s->hist_len; i++) buf[i] = history_at(s, i);
    free(s->hist);
    free(s->window);
    s->hist = buf;
    s->window = win;
    s->hist_cap = cap;
    s->hist_start = 0;
    return true;
}

static void history_push(sp_sampler *s, int32_t token) {
    if (s->hist_len == s->hist_cap) history_grow(s);
    if (s->hist_len < s->hist_cap) {
        s->hist[(s->hist_start + s->hist_len) % s->hist_cap] = token;
        s->hist_len++;
    } else { /* full at its limit: overwrite the oldest */
        s->hist[s->hist_start] = token;
        s->hist_start = (s->hist_start + 1) % s->hist_cap;
    }
}

/* ---------------------------------------------------------------- lifecycle */

sp_sampler *sp_sampler_new(const sp_sampler_params *p, int32_t n_vocab) {
    if (n_vocab <= 0) return NULL;
    sp_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : sp_sampler_default_params();
    s->n_vocab = n_vocab;
    if (s->p.n_bias < 0 || !s->p.bias) s->p.n_bias = 0;
    if (s->p.n_bias > 0) {
        s->bias = malloc((size_t)s->p.n_bias * sizeof *s->bias);
        if (s->bias) memcpy(s->bias, s->p.bias, (size_t)s->p.n_bias * sizeof *s->bias);
    }
    s->p.bias = s->bias;

    s->hist_limit = history_limit(s->p.penalty_last_n);
    s->hist_cap = s->p.penalty_last_n > SP_SAMPLER_HISTORY_MIN ? s->hist_limit : SP_SAMPLER_HISTORY_MIN;
    s->hist = malloc((size_t)s->hist_cap * sizeof *s->hist);
    s->window = malloc((size_t)s->hist_cap * sizeof *s->window);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->weight = malloc((size_t)n_vocab * sizeof *s->weight);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    if ((s->p.n_bias > 0 && !s->bias) || !s->hist || !s->window || !s->cand || !s->weight || !s->count) {
        sp_sampler_free(s);
        return NULL;
    }
    rng_seed(s->rng, s->p.seed);
    return s;
}

void sp_sampler_free(sp_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->hist);
    free(s->window);
    free(s->cand);
    free(s->weight);
    free(s->count);
    free(s);
}

void sp_sampler_accept(sp_sampler *s, int32_t token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    history_push(s, token);
}

void sp_sampler_reset(sp_sampler *s, uint64_t seed) {
    if (!s) return;
    s->hist_len = 0;
    s->hist_start = 0;
    s->p.seed = seed;
    rng_seed(s->rng, seed);
}

/* ---------------------------------------------------------------- logit adjustments */

/* The largest logit, NaN ignored; -inf when there is none. Eight running maxima keep the loop from
 * being one long dependency chain (and let it vectorize). */
static float max_of(const float *logits, int32_t n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = -INFINITY;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];
    for (; i < n; i++) m[0] = logits[i] > m[0] ? logits[i] : m[0];
    float best = m[0];
    for (int j = 1; j < 8; j++) best = m[j] > best ? m[j] : best;
    return best;
}

/* The lowest id holding the largest logit (NaN ignored); `fallback` when every logit is -inf. */
static int32_t argmax(const float *logits, int32_t n, int32_t fallback) {
    float m = max_of(logits, n);
    if (!(m > -INFINITY)) return fallback;
    int32_t i = 0;
    while (!(logits[i] >= m)) i++;
    return i;
}

static void apply_bias(const sp_sampler *s, float *logits) {
    for (int32_t i = 0; i < s->p.n_bias; i++) {
        const sp_logit_bias *b = &s->p.bias[i];
        if (b->token < 0 || b->token >= s->n_vocab || isnan(b->bias)) continue;
        logits[b->token] += b->bias;
        if (isnan(logits[b->token])) logits[b->token] = -INFINITY; /* +inf + -inf: banned wins */
    }
}

static bool penalties_active(const sp_sampler_params *p) {
    return p->penalty_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

/* Counts the tokens in the penalty window into s->count; lists the distinct ones in s->window and
 * returns how many there are. */
static int32_t count_window(sp_sampler *s) {
    int32_t n = s->hist_len;
    if (s->p.penalty_last_n > 0 && s->p.penalty_last_n < n) n = s->p.penalty_last_n;
    int32_t distinct = 0;
    for (int32_t i = s->hist_len - n; i < s->hist_len; i++) {
        int32_t t = history_at(s, i);
        if (s->count[t]++ == 0) s->window[distinct++] = t;
    }
    return distinct;
}

/* A repeat_penalty <= 0 (meaningless) is ignored, like 1. */
static float penalize(const sp_sampler_params *p, float logit, int32_t count) {
    if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0.0f)
        logit = logit > 0.0f ? logit / p->repeat_penalty : logit * p->repeat_penalty;
    logit -= (float)count * p->frequency_penalty + (count > 0 ? p->presence_penalty : 0.0f);
    return isnan(logit) ? -INFINITY : logit;
}

static void apply_penalties(sp_sampler *s, float *logits) {
    if (!penalties_active(&s->p)) return;
    int32_t distinct = count_window(s);
    for (int32_t i = 0; i < distinct; i++) {
        int32_t t = s->window[i];
        logits[t] = penalize(&s->p, logits[t], s->count[t]);
        s->count[t] = 0;
    }
}

/* ---------------------------------------------------------------- candidate selection */

/* The candidate order: larger logit first, lower id first among equals (a strict total order). */
static bool cand_before(sp_cand a, sp_cand b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const sp_cand *a = pa, *b = pb;
    if (cand_before(*a, *b)) return -1;
    if (cand_before(*b, *a)) return 1;
    return 0;
}

/* -inf means banned; +inf is clamped so that differences of logits stay finite. */
static bool cand_from_logit(int32_t id, float logit, sp_cand *out) {
    if (!(logit > -INFINITY)) return false;
    out->id = id;
    out->logit = logit > FLT_MAX ? FLT_MAX : logit;
    return true;
}

/* Every selectable token, in id order. Returns the count. */
static int32_t collect_all(sp_sampler *s, const float *logits) {
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (cand_from_logit(i, logits[i], &s->cand[n])) n++;
    return n;
}

/* Min-heap on cand_before: the root is the candidate that would be dropped first. */
static void heap_sift_down(sp_cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && cand_before(h[worst], h[l])) worst = l;
        if (r < n && cand_before(h[worst], h[r])) worst = r;
        if (worst == i) return;
        sp_cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static void heap_sift_up(sp_cand *h, int32_t i) {
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!cand_before(h[parent], h[i])) return;
        sp_cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* The k best selectable tokens, straight from the logits, in O(n_vocab log k) without touching the
 * rest; returned sorted best-first. Returns the count (< k when fewer are selectable). */
static int32_t collect_top_k(sp_sampler *s, const float *logits, int32_t k) {
    sp_cand *h = s->cand;
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        /* Once the heap is full, most tokens lose to its root at a glance; ids ascend, so a tie
         * with the root loses too. */
        if (n == k && !(logits[i] > h[0].logit)) continue;
        sp_cand c;
        if (!cand_from_logit(i, logits[i], &c)) continue;
        if (n < k) {
            h[n] = c;
            heap_sift_up(h, n++);
        } else if (cand_before(c, h[0])) {
            h[0] = c;
            heap_sift_down(h, n, 0);
        }
    }
    qsort(h, (size_t)n, sizeof *h, cand_cmp);
    return n;
}

/* cand[0..n) sorted best-first, with probabilities exp(logit - top) / total: the length of the
 * shortest prefix whose probability reaches p, or 0 when all n together fall short of it. */
static int32_t prefix_reaching(const sp_sampler *s, int32_t n, float p, float top, double total) {
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += exp((double)s->cand[i].logit - (double)top) / total;
        if (cum >= (double)p - SP_TOP_P_SLACK) return i + 1;
    }
    return 0;
}

/* top-p over the candidates cand[0..n) that top-k left, sorted best-first: the softmax is theirs. */
static int32_t filter_top_p(sp_sampler *s, int32_t n, float p) {
    float top = s->cand[0].logit;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += exp((double)s->cand[i].logit - (double)top);
    int32_t kept = prefix_reaching(s, n, p, top, total);
    return kept > 0 ? kept : n;
}

/* Softmax denominator at temperature 1, relative to `top`, over every selectable token (id order). */
static double mass_of_all(const float *logits, int32_t n, float top, int32_t *n_selectable) {
    double total = 0.0;
    int32_t count = 0;
    sp_cand c;
    for (int32_t i = 0; i < n; i++) {
        if (!cand_from_logit(i, logits[i], &c)) continue;
        total += exp((double)c.logit - (double)top);
        count++;
    }
    *n_selectable = count;
    return total;
}

/* top-p with top-k off: the kept set is a prefix of the whole vocabulary in sorted order, usually a
 * short one. Select the best m (256, then x8, while m <= 1/16 of the selectable tokens) until they
 * hold mass p, and sort everything once only when the prefix is longer than that. Every round
 * computes the same prefix as a full sort would: the same order, the same denominator. Returns the
 * count kept in cand. */
static int32_t collect_top_p(sp_sampler *s, const float *logits, float p) {
    float top = max_of(logits, s->n_vocab);
    if (!(top > -INFINITY)) return 0;
    if (top > FLT_MAX) top = FLT_MAX;
    int32_t n_selectable;
    double total = mass_of_all(logits, s->n_vocab, top, &n_selectable);
    for (int32_t m = 256; m <= n_selectable / 16; m *= 8) {
        int32_t n = collect_top_k(s, logits, m);
        int32_t kept = prefix_reaching(s, n, p, top, total);
        if (kept > 0) return kept;
    }
    int32_t n = collect_all(s, logits);
    qsort(s->cand, (size_t)n, sizeof *s->cand, cand_cmp);
    int32_t kept = prefix_reaching(s, n, p, top, total);
    return kept > 0 ? kept : n;
}

static float max_logit(const sp_cand *c, int32_t n) {
    float m = c[0].logit;
    for (int32_t i = 1; i < n; i++)
        if (c[i].logit > m) m = c[i].logit;
    return m;
}

/* Keeps, in order, the candidates with prob >= min_p * max prob, i.e. logit >= max + log(min_p).
 * min_p above 1 acts as 1 (only the most likely tokens), so at least one always stays. */
static int32_t filter_min_p(sp_sampler *s, int32_t n, float min_p) {
    if (min_p > 1.0f) min_p = 1.0f;
    double threshold = (double)max_logit(s->cand, n) + log((double)min_p);
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++)
        if ((double)s->cand[i].logit >= threshold) s->cand[kept++] = s->cand[i];
    return kept;
}

/* Softmax of cand[0..n) at `temperature`, then one draw: walks the cumulative weights. */
static int32_t draw(sp_sampler *s, int32_t n, float temperature) {
    double m = (double)max_logit(s->cand, n), total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->weight[i] = exp(((double)s->cand[i].logit - m) / (double)temperature);
        total += s->weight[i];
    }
    double u = rng_uniform(s->rng) * total, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->weight[i];
        if (u < cum) return s->cand[i].id;
    }
    for (int32_t i = n - 1; i > 0; i--) /* rounding left u at the very top: the last weighted one */
        if (s->weight[i] > 0.0) return s->cand[i].id;
    return s->cand[0].id;
}

/* ---------------------------------------------------------------- sampling */

/* top-k and top-p select from the logits; returns how many candidates they leave in cand. */
static int32_t select_candidates(sp_sampler *s, const float *logits) {
    const sp_sampler_params *p = &s->p;
    bool top_k_on = p->top_k > 0 && p->top_k < s->n_vocab;
    bool top_p_on = p->top_p < 1.0f; /* NaN: off */
    if (top_k_on) {
        int32_t n = collect_top_k(s, logits, p->top_k);
        return top_p_on && n > 0 ? filter_top_p(s, n, p->top_p) : n;
    }
    return top_p_on ? collect_top_p(s, logits, p->top_p) : collect_all(s, logits);
}

static int32_t sample_stochastic(sp_sampler *s, const float *logits, int32_t fallback) {
    int32_t n = select_candidates(s, logits);
    if (n == 0) {
        rng_next(s->rng); /* keep one draw per sample, whatever happens */
        return fallback;
    }
    if (s->p.min_p > 0.0f) n = filter_min_p(s, n, s->p.min_p);
    return draw(s, n, s->p.temperature);
}

int32_t sp_sampler_sample(sp_sampler *s, float *logits) {
    if (!s || !logits) return 0;
    int32_t fallback = argmax(logits, s->n_vocab, 0);
    apply_bias(s, logits);
    apply_penalties(s, logits);
    if (!(s->p.temperature > 0.0f)) return argmax(logits, s->n_vocab, fallback);
    return sample_stochastic(s, logits, fallback);
}
