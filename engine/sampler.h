/* engine/sampler.h — turns a row of logits into the next token: logit bias, repetition / presence /
 * frequency penalties over recent tokens, then greedy (temperature <= 0) or top-k → top-p → min-p →
 * temperature → softmax → a draw from a seeded RNG (same seed, same tokens). */
#ifndef SP_ENGINE_SAMPLER_H
#define SP_ENGINE_SAMPLER_H

#include <stdint.h>

typedef struct { int32_t token; float bias; } sp_logit_bias;

typedef struct {
    float temperature;      /* <= 0: greedy (argmax after bias and penalties) */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off. logit > 0 divided, < 0 multiplied */
    int32_t penalty_last_n; /* window of recent tokens for all penalties; 0 = off, -1 = all */
    float presence_penalty; /* subtracted once if the token occurred in the window */
    float frequency_penalty;/* subtracted count times */
    const sp_logit_bias *bias;
    int32_t n_bias;
    uint64_t seed;
} sp_sampler_params;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties, window 64, seed 0. */
sp_sampler_params sp_sampler_default_params(void);

typedef struct sp_sampler sp_sampler;
sp_sampler *sp_sampler_new(const sp_sampler_params *p, int32_t n_vocab);
void sp_sampler_free(sp_sampler *s);
/* Record a token into the penalty history. */
void sp_sampler_accept(sp_sampler *s, int32_t token);
/* Pick the next token; `logits` (n_vocab) may be modified in place. */
int32_t sp_sampler_sample(sp_sampler *s, float *logits);
/* Reset history and reseed. */
void sp_sampler_reset(sp_sampler *s, uint64_t seed);

#endif
