/* kernels/types.c — owns the GGML type table (ids, names, block geometry, what sparrow can
 * convert), IEEE half / bfloat16 conversion, and the scalar reference row (de)quantizers.
 * Block layouts and the math follow GGML (ggml-common.h, dequantize_row_*, quantize_row_*_ref)
 * so GGUF data is read in place and results match GGML's bit for bit. Plain portable C: blocks
 * are copied out with memcpy (any alignment), multi-byte fields are little-endian as in GGUF. */
#include "kernels/types.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sparrow reads GGUF blocks in place and needs a little-endian host"
#endif

_Static_assert(sizeof(float) == 4, "float must be IEEE binary32");

/* Blocks sparrow only decodes: private, the public header carries the common ones. */
typedef struct { uint8_t scales[SP_QK_K / 16]; uint8_t qs[SP_QK_K / 4]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[SP_QK_K / 8]; uint8_t qs[SP_QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct { float d; int8_t qs[SP_QK_K]; int16_t bsums[SP_QK_K / 16]; } block_q8_K;

/* Every block is exactly GGML's size (no padding), so arrays of them match the file. */
_Static_assert(sizeof(sp_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(sp_block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(sp_block_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(sp_block_q5_1) == 24, "q5_1 block size");
_Static_assert(sizeof(sp_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K block size");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K block size");
_Static_assert(sizeof(sp_block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(sp_block_q5_K) == 176, "q5_K block size");
_Static_assert(sizeof(sp_block_q6_K) == 210, "q6_K block size");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K block size");

/* ---------------------------------------------------------------------------------------------
 * f16 / bf16
 * ------------------------------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float sp_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) /* inf (mant 0) or nan (payload kept) */
        return f32_from_bits(sign | 0x7F800000u | (mant << 13));
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
        const float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

/* Round `m` right by `shift` bits (1..24) to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, unsigned shift) {
    const uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    return (rem > halfway || (rem == halfway && (q & 1u))) ? q + 1 : q;
}

uint16_t sp_f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) /* nan: stays nan (quiet), keeping the top of the payload */
        return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) /* >= 65520 (halfway past 65504, ties to even) and inf */
        return (uint16_t)(sign | 0x7C00u);
    if (ax >= 0x38800000u) { /* >= 2^-14: a normal half. Rebias the exponent, round 13 bits. */
        const uint32_t rebiased = ax - ((127u - 15u) << 23);
        return (uint16_t)(sign | shift_round_even(rebiased, 13)); /* a carry bumps the exponent */
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to (signed) zero, 2^-25 itself being a tie */
        return sign;
    /* subnormal half: the value in units of 2^-24, i.e. the 24-bit significand shifted right */
    const uint32_t exp = ax >> 23;
    const uint32_t significand = (ax & 0x7FFFFFu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(significand, 126u - exp));
}

float sp_bf16_to_f32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t sp_f32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) /* nan: force quiet so truncation cannot make it inf */
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16); /* overflow rounds to inf */
}

static float half(uint16_t h) {
    return sp_f16_to_f32(h);
}

/* ---------------------------------------------------------------------------------------------
 * Rounding helpers for the quantizers (GGML's idioms, made total: NaN and huge values clamp
 * instead of being undefined float->int conversions).
 * ------------------------------------------------------------------------------------------- */

/* GGML's `(int)(v)` after adding a +0.5-style offset: truncate toward zero, clamp to [lo, hi]. */
static int trunc_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo; /* also NaN */
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* GGML's nearest_int (round half to even) followed by a clamp to [lo, hi]; NaN gives lo. */
static int nearest_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)lrintf(v);
}

/* roundf (half away from zero, as GGML's Q8_0) clamped to [lo, hi]; NaN gives 0. */
static int round_clamp(float v, int lo, int hi) {
    if (v != v) return 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)roundf(v);
}

/* ---------------------------------------------------------------------------------------------
 * Dequantization, one block at a time. y receives the block's elements in order.
 * ------------------------------------------------------------------------------------------- */

/* Q4_0: x = d * (q - 8); byte j holds element j (low nibble) and element j + 16 (high). */
static void dequant_block_q4_0(const sp_block_q4_0 *b, float *y) {
    const float d = half(b->d);
    for (int j = 0; j < SP_QK4_0 / 2; j++) {
        y[j] = ((b->qs[j] & 0x0F) - 8) * d;
        y[j + SP_QK4_0 / 2] = ((b->qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: x = d * q + m, nibbles as Q4_0. */
static void dequant_block_q4_1(const sp_block_q4_1 *b, float *y) {
    const float d = half(b->d), m = half(b->m);
    for (int j = 0; j < SP_QK4_1 / 2; j++) {
        y[j] = (b->qs[j] & 0x0F) * d + m;
        y[j + SP_QK4_1 / 2] = (b->qs[j] >> 4) * d + m;
    }
}

/* The 32 fifth bits of a Q5 block: bit i belongs to element i. */
static uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* Element i's 5-bit level: nibble as Q4_0 plus bit i of qh as bit 4. */
static int q5_level(const uint8_t *qs, uint32_t qh, int i) {
    const int nibble = i < 16 ? (qs[i] & 0x0F) : (qs[i - 16] >> 4);
    return nibble | (int)((qh >> i) & 1u) << 4;
}

/* Q5_0: x = d * (q - 16). */
static void dequant_block_q5_0(const sp_block_q5_0 *b, float *y) {
    const float d = half(b->d);
    const uint32_t qh = q5_high_bits(b->qh);
    for (int i = 0; i < SP_QK5_0; i++) y[i] = (q5_level(b->qs, qh, i) - 16) * d;
}

/* Q5_1: x = d * q + m. */
static void dequant_block_q5_1(const sp_block_q5_1 *b, float *y) {
    const float d = half(b->d), m = half(b->m);
    const uint32_t qh = q5_high_bits(b->qh);
    for (int i = 0; i < SP_QK5_1; i++) y[i] = q5_level(b->qs, qh, i) * d + m;
}

/* Q8_0: x = d * q. */
static void dequant_block_q8_0(const sp_block_q8_0 *b, float *y) {
    const float d = half(b->d);
    for (int i = 0; i < SP_QK8_0; i++) y[i] = b->qs[i] * d;
}

/* Q2_K: 16 sub-blocks of 16, x = d * scale - dmin * min with 4-bit scale (low nibble) and min
 * (high nibble) per sub-block. Each 128-element half owns 32 bytes of qs; element
 * 128h + 32p + k is bits 2p..2p+1 of qs[32h + k]. */
static void dequant_block_q2_K(const block_q2_K *b, float *y) {
    const float d = half(b->d), dmin = half(b->dmin);
    for (int i = 0; i < SP_QK_K; i++) {
        const int h = i / 128, p = (i % 128) / 32, k = i % 32;
        const uint8_t sm = b->scales[i / 16];
        const int q = (b->qs[32 * h + k] >> (2 * p)) & 3;
        y[i] = d * (sm & 0x0F) * q - dmin * (sm >> 4);
    }
}

/* Q3_K's 16 signed 6-bit scales: low 4 bits in a nibble of bytes 0..7 (scales 8..15 in the high
 * nibbles), high 2 bits in bytes 8..11 (scale s in byte 8 + s % 4 at bit 2 * (s / 4)). */
static int q3_K_scale(const uint8_t sc[12], int s) {
    const int low = s < 8 ? (sc[s] & 0x0F) : (sc[s - 8] >> 4);
    const int high = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (low | high << 4) - 32;
}

/* Q3_K: x = d * scale * (q - 4); low 2 bits laid out as Q2_K, the third bit of element i is bit
 * i / 32 of hmask[i % 32] (a clear bit means subtract 4). */
static void dequant_block_q3_K(const block_q3_K *b, float *y) {
    const float d = half(b->d);
    for (int i = 0; i < SP_QK_K; i++) {
        const int h = i / 128, p = (i % 128) / 32, k = i % 32;
        const int low = (b->qs[32 * h + k] >> (2 * p)) & 3;
        const int high = (b->hmask[k] >> (i / 32)) & 1;
        y[i] = d * q3_K_scale(b->scales, i / 16) * (low - (high ? 0 : 4));
    }
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block s (0..7) from the 12 packed bytes (GGML's
 * get_scale_min_k4). s < 4: low 6 bits of bytes s and s + 4. s >= 4: a nibble of byte s + 4 plus
 * the top 2 bits of bytes s - 4 (scale) and s (min). */
static void k4_scale_min(const uint8_t sc[SP_K_SCALE_SIZE], int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 0x0F) | (sc[s - 4] >> 6) << 4;
        *min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
    }
}

/* Element i of a Q4_K/Q5_K block: its 4 low bits. Each 64-element chunk owns 32 bytes of qs, the
 * first 32 elements in the low nibbles, the next 32 in the high ones. */
static int k4_nibble(const uint8_t *qs, int i) {
    const uint8_t byte = qs[32 * (i / 64) + i % 32];
    return (i % 64) < 32 ? (byte & 0x0F) : (byte >> 4);
}

/* Q4_K: 8 sub-blocks of 32, x = d * scale * q - dmin * min. */
static void dequant_block_q4_K(const sp_block_q4_K *b, float *y) {
    const float d = half(b->d), dmin = half(b->dmin);
    for (int s = 0; s < 8; s++) {
        int scale, min;
        k4_scale_min(b->scales, s, &scale, &min);
        const float ds = d * scale, ms = dmin * min;
        for (int i = 32 * s; i < 32 * s + 32; i++) y[i] = ds * k4_nibble(b->qs, i) - ms;
    }
}

/* Q5_K: Q4_K plus a fifth bit: element i's is bit i / 32 of qh[i % 32]. */
static void dequant_block_q5_K(const sp_block_q5_K *b, float *y) {
    const float d = half(b->d), dmin = half(b->dmin);
    for (int s = 0; s < 8; s++) {
        int scale, min;
        k4_scale_min(b->scales, s, &scale, &min);
        const float ds = d * scale, ms = dmin * min;
        for (int i = 32 * s; i < 32 * s + 32; i++) {
            const int q = k4_nibble(b->qs, i) + (((b->qh[i % 32] >> s) & 1) ? 16 : 0);
            y[i] = ds * q - ms;
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales, x = d * scale * (q - 32). Each 128-element half n
 * owns 64 bytes of ql and 32 of qh; within it, quarter g (32 elements) takes its low 4 bits from
 * ql[l] (g = 0, 2) or ql[32 + l] (g = 1, 3), low nibble for g < 2, high for g >= 2, and its high 2
 * bits from qh[l] at bit 2g. */
static void dequant_block_q6_K(const sp_block_q6_K *b, float *y) {
    const float d = half(b->d);
    for (int i = 0; i < SP_QK_K; i++) {
        const int n = i / 128, g = (i % 128) / 32, l = i % 32;
        const uint8_t lbyte = b->ql[64 * n + 32 * (g & 1) + l];
        const int low = g < 2 ? (lbyte & 0x0F) : (lbyte >> 4);
        const int high = (b->qh[32 * n + l] >> (2 * g)) & 3;
        y[i] = d * b->scales[i / 16] * ((low | high << 4) - 32);
    }
}

/* Q8_K: x = d * q with an f32 d (bsums are only for dot products). */
static void dequant_block_q8_K(const block_q8_K *b, float *y) {
    for (int i = 0; i < SP_QK_K; i++) y[i] = b->d * b->qs[i];
}

/* Row wrappers: copy each block out of the (possibly unaligned) source, then decode it. */
#define DEQUANT_ROW(fmt, block_t, qk)                                                  \
    static void dequant_row_##fmt(const uint8_t *src, float *y, int64_t nb) {          \
        for (int64_t i = 0; i < nb; i++) {                                             \
            block_t b;                                                                 \
            memcpy(&b, src + (size_t)i * sizeof b, sizeof b);                          \
            dequant_block_##fmt(&b, y + i * (qk));                                     \
        }                                                                              \
    }
DEQUANT_ROW(q4_0, sp_block_q4_0, SP_QK4_0)
DEQUANT_ROW(q4_1, sp_block_q4_1, SP_QK4_1)
DEQUANT_ROW(q5_0, sp_block_q5_0, SP_QK5_0)
DEQUANT_ROW(q5_1, sp_block_q5_1, SP_QK5_1)
DEQUANT_ROW(q8_0, sp_block_q8_0, SP_QK8_0)
DEQUANT_ROW(q2_K, block_q2_K, SP_QK_K)
DEQUANT_ROW(q3_K, block_q3_K, SP_QK_K)
DEQUANT_ROW(q4_K, sp_block_q4_K, SP_QK_K)
DEQUANT_ROW(q5_K, sp_block_q5_K, SP_QK_K)
DEQUANT_ROW(q6_K, sp_block_q6_K, SP_QK_K)
DEQUANT_ROW(q8_K, block_q8_K, SP_QK_K)
#undef DEQUANT_ROW

static void dequant_row_f32(const uint8_t *src, float *y, int64_t n) {
    memcpy(y, src, (size_t)n * sizeof *y);
}

static void dequant_row_f16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        y[i] = sp_f16_to_f32(h);
    }
}

static void dequant_row_bf16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        y[i] = sp_bf16_to_f32(h);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Quantization (GGML's reference quantizers), one block at a time.
 * ------------------------------------------------------------------------------------------- */

/* The value of largest magnitude (the first one, on ties); 0 for an all-zero block. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int i = 0; i < n; i++) {
        if (x[i] < *min) *min = x[i];
        if (x[i] > *max) *max = x[i];
    }
}

static float inverse_or_zero(float d) {
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* Q8_0: d = amax / 127, q = round(x / d). */
static void quant_block_q8_0(const float *x, sp_block_q8_0 *b) {
    float amax = 0.0f;
    for (int i = 0; i < SP_QK8_0; i++) amax = amax > fabsf(x[i]) ? amax : fabsf(x[i]);
    const float d = amax / 127;
    const float id = inverse_or_zero(d);
    b->d = sp_f32_to_f16(d);
    for (int i = 0; i < SP_QK8_0; i++) b->qs[i] = (int8_t)round_clamp(x[i] * id, -127, 127);
}

/* Q4_0: the value of largest magnitude maps to level 0 (d = max / -8); q = (int)(x / d + 8.5). */
static void quant_block_q4_0(const float *x, sp_block_q4_0 *b) {
    const float d = signed_absmax(x, SP_QK4_0) / -8;
    const float id = inverse_or_zero(d);
    b->d = sp_f32_to_f16(d);
    for (int j = 0; j < SP_QK4_0 / 2; j++) {
        const int lo = trunc_clamp(x[j] * id + 8.5f, 0, 15);
        const int hi = trunc_clamp(x[j + SP_QK4_0 / 2] * id + 8.5f, 0, 15);
        b->qs[j] = (uint8_t)(lo | hi << 4);
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = (int)((x - min) / d + 0.5). */
static void quant_block_q4_1(const float *x, sp_block_q4_1 *b) {
    float min, max;
    min_max(x, SP_QK4_1, &min, &max);
    const float d = (max - min) / 15;
    const float id = inverse_or_zero(d);
    b->d = sp_f32_to_f16(d);
    b->m = sp_f32_to_f16(min);
    for (int j = 0; j < SP_QK4_1 / 2; j++) {
        const int lo = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
        const int hi = trunc_clamp((x[j + SP_QK4_1 / 2] - min) * id + 0.5f, 0, 15);
        b->qs[j] = (uint8_t)(lo | hi << 4);
    }
}

/* Store 32 five-bit levels as Q5 nibbles (element j and j + 16 share byte j) plus qh bits. */
static void q5_pack(const int *levels, uint8_t qs[16], uint8_t qh[4]) {
    uint32_t bits = 0;
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((levels[j] & 0x0F) | (levels[j + 16] & 0x0F) << 4);
    for (int i = 0; i < 32; i++) bits |= (uint32_t)(levels[i] >> 4) << i;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(bits >> (8 * k));
}

/* Q5_0: d = max / -16, q = (int)(x / d + 16.5). */
static void quant_block_q5_0(const float *x, sp_block_q5_0 *b) {
    const float d = signed_absmax(x, SP_QK5_0) / -16;
    const float id = inverse_or_zero(d);
    int levels[SP_QK5_0];
    b->d = sp_f32_to_f16(d);
    for (int i = 0; i < SP_QK5_0; i++) levels[i] = trunc_clamp(x[i] * id + 16.5f, 0, 31);
    q5_pack(levels, b->qs, b->qh);
}

/* Q5_1: d = (max - min) / 31, m = min, q = (int)((x - min) / d + 0.5). */
static void quant_block_q5_1(const float *x, sp_block_q5_1 *b) {
    float min, max;
    min_max(x, SP_QK5_1, &min, &max);
    const float d = (max - min) / 31;
    const float id = inverse_or_zero(d);
    int levels[SP_QK5_1];
    b->d = sp_f32_to_f16(d);
    b->m = sp_f32_to_f16(min);
    for (int i = 0; i < SP_QK5_1; i++) levels[i] = trunc_clamp((x[i] - min) * id + 0.5f, 0, 31);
    q5_pack(levels, b->qs, b->qh);
}

/* GGML's make_qkx2_quants: fit x[i] ~ scale * L[i] - min_out with L in [0, nmax] and min_out >= 0,
 * minimizing the w-weighted squared error. Starts from the min/max grid, then tries nstep + 1
 * inverse scales (nmax + rmin + rdelta * k) / (max - min), solving the weighted least squares for
 * scale and offset at each and keeping the best. Returns the scale. n <= 32. */
static float fit_scale_min(const float *x, const float *w, int n, int nmax, float rmin,
                           float rdelta, int nstep, uint8_t *L, float *min_out) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) { /* constant non-negative block (or nan) */
        memset(L, 0, (size_t)n);
        *min_out = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)nearest_clamp(iscale * (x[i] - min), 0, nmax);
        const float diff = scale * L[i] + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    for (int step = 0; step <= nstep; step++) {
        uint8_t trial[32];
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        for (int i = 0; i < n; i++) {
            const int l = nearest_clamp(iscale * (x[i] - min), 0, nmax);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            const float diff = this_scale * trial[i] + this_min - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best_err) {
            memcpy(L, trial, (size_t)n);
            best_err = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *min_out = -min;
    return scale;
}

/* Inverse of k4_scale_min: store 8 six-bit scales and mins into the 12 packed bytes. */
static void k4_pack_scales(const int *scale, const int *min, uint8_t sc[SP_K_SCALE_SIZE]) {
    for (int s = 0; s < 4; s++) {
        sc[s] = (uint8_t)(scale[s] | (scale[s + 4] >> 4) << 6);
        sc[s + 4] = (uint8_t)(min[s] | (min[s + 4] >> 4) << 6);
        sc[s + 8] = (uint8_t)((scale[s + 4] & 0x0F) | (min[s + 4] & 0x0F) << 4);
    }
}

/* The Q4_K/Q5_K scale search shared by both: per 32-element sub-block, weights
 * rms(sub-block) + |x| and an asymmetric fit; then scales and mins quantized to 6 bits against
 * their maxima (d = max_scale / 63, dmin = max_min / 63); then every element re-quantized
 * against the stored (rounded) sub-block scale and min. Writes d, dmin, scales and L[256]. */
static void k_quant_scales(const float *x, int nmax, float rmin, float rdelta, int nstep,
                           uint16_t *d_out, uint16_t *dmin_out, uint8_t sc[SP_K_SCALE_SIZE],
                           uint8_t L[SP_QK_K]) {
    float scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        float w[32], sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[s] = fit_scale_min(xs, w, 32, nmax, rmin, rdelta, nstep, L + 32 * s, &mins[s]);
        if (scales[s] > max_scale) max_scale = scales[s];
        if (mins[s] > max_min) max_min = mins[s];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    int qscale[8], qmin[8];
    for (int s = 0; s < 8; s++) {
        qscale[s] = nearest_clamp(inv_scale * scales[s], 0, 63);
        qmin[s] = nearest_clamp(inv_min * mins[s], 0, 63);
    }
    k4_pack_scales(qscale, qmin, sc);
    *d_out = sp_f32_to_f16(max_scale / 63.f);
    *dmin_out = sp_f32_to_f16(max_min / 63.f);

    for (int s = 0; s < 8; s++) {
        int scale, min;
        k4_scale_min(sc, s, &scale, &min);
        const float d = half(*d_out) * scale;
        if (d == 0.0f) continue; /* keeps the fit's levels, as GGML does */
        const float dm = half(*dmin_out) * min;
        for (int i = 32 * s; i < 32 * s + 32; i++) L[i] = (uint8_t)nearest_clamp((x[i] + dm) / d, 0, nmax);
    }
}

/* Q4_K: L in [0, 15], packed as k4_nibble reads them. */
static void quant_block_q4_K(const float *x, sp_block_q4_K *b) {
    uint8_t L[SP_QK_K];
    k_quant_scales(x, 15, -1.0f, 0.1f, 20, &b->d, &b->dmin, b->scales, L);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
}

/* Q5_K: L in [0, 31]; low 4 bits as Q4_K, bit 4 of element i into bit i / 32 of qh[i % 32]. */
static void quant_block_q5_K(const float *x, sp_block_q5_K *b) {
    uint8_t L[SP_QK_K];
    k_quant_scales(x, 31, -0.5f, 0.1f, 15, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, sizeof b->qh);
    for (int i = 0; i < SP_QK_K; i++) b->qh[i % 32] |= (uint8_t)((L[i] >> 4) << (i / 32));
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 0x0F) | (L[64 * c + 32 + l] & 0x0F) << 4);
}

/* GGML's make_qx_quants with x^2 weights (rmse_type 1): symmetric levels L - nmax in
 * [-nmax, nmax - 1] for x ~ scale * (L - nmax). The extreme value maps to -nmax; 18 nearby
 * inverse scales are tried, each scored by its least-squares scale. Returns the scale. */
static float fit_symmetric(const float *x, int n, int nmax, int8_t *L) {
    const float max = signed_absmax(x, n);
    if (fabsf(max) < 1e-15f) { /* all (nearly) zero */
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_clamp(iscale * x[i], -nmax, nmax - 1);
        const float w = x[i] * x[i];
        L[i] = (int8_t)(l + nmax);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -(nmax + 0.1f * step) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = nearest_clamp(iscale * x[i], -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nearest_clamp(iscale * x[i], -nmax, nmax - 1) + nmax);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q6_K: per-16 symmetric fits, the int8 sub-block scales quantized against the extreme one
 * (d = max_scale / -128), then every element re-quantized to [-32, 31] with the stored scales. */
static void quant_block_q6_K(const float *x, sp_block_q6_K *b) {
    int8_t L[SP_QK_K];
    float scales[SP_QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int s = 0; s < SP_QK_K / 16; s++) {
        scales[s] = fit_symmetric(x + 16 * s, 16, 32, L + 16 * s);
        if (fabsf(scales[s]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[s]);
            max_scale = scales[s];
        }
    }
    memset(b, 0, sizeof *b);
    if (max_abs_scale < 1e-15f) return; /* all zero: d = 0 */

    const float iscale = -128.f / max_scale;
    b->d = sp_f32_to_f16(1 / iscale);
    for (int s = 0; s < SP_QK_K / 16; s++) b->scales[s] = (int8_t)nearest_clamp(iscale * scales[s], -128, 127);
    for (int s = 0; s < SP_QK_K / 16; s++) {
        const float d = half(b->d) * b->scales[s];
        if (d == 0.0f) continue; /* keeps the fit's levels, as GGML does */
        for (int i = 16 * s; i < 16 * s + 16; i++) L[i] = (int8_t)(nearest_clamp(x[i] / d, -32, 31) + 32);
    }
    /* pack as dequant_block_q6_K reads: element 128n + 32g + l */
    for (int i = 0; i < SP_QK_K; i++) {
        const int n = i / 128, g = (i % 128) / 32, l = i % 32;
        b->ql[64 * n + 32 * (g & 1) + l] |= (uint8_t)((L[i] & 0x0F) << (g < 2 ? 0 : 4));
        b->qh[32 * n + l] |= (uint8_t)((L[i] >> 4) << (2 * g));
    }
}

/* Row wrappers: quantize each block into a local struct, then copy it out (any alignment). */
#define QUANT_ROW(fmt, block_t, qk)                                                   \
    static void quant_row_##fmt(const float *x, uint8_t *dst, int64_t nb) {           \
        for (int64_t i = 0; i < nb; i++) {                                            \
            block_t b;                                                                \
            quant_block_##fmt(x + i * (qk), &b);                                      \
            memcpy(dst + (size_t)i * sizeof b, &b, sizeof b);                         \
        }                                                                             \
    }
QUANT_ROW(q4_0, sp_block_q4_0, SP_QK4_0)
QUANT_ROW(q4_1, sp_block_q4_1, SP_QK4_1)
QUANT_ROW(q5_0, sp_block_q5_0, SP_QK5_0)
QUANT_ROW(q5_1, sp_block_q5_1, SP_QK5_1)
QUANT_ROW(q8_0, sp_block_q8_0, SP_QK8_0)
QUANT_ROW(q4_K, sp_block_q4_K, SP_QK_K)
QUANT_ROW(q5_K, sp_block_q5_K, SP_QK_K)
QUANT_ROW(q6_K, sp_block_q6_K, SP_QK_K)
#undef QUANT_ROW

static void quant_row_f32(const float *x, uint8_t *dst, int64_t n) {
    memcpy(dst, x, (size_t)n * sizeof *x);
}

static void quant_row_f16(const float *x, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = sp_f32_to_f16(x[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

static void quant_row_bf16(const float *x, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = sp_f32_to_bf16(x[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The type table
 * ------------------------------------------------------------------------------------------- */

/* A row converter gets the row's number of blocks (elements, for the 1-element types). */
typedef void (*dequant_fn)(const uint8_t *src, float *dst, int64_t nblocks);
typedef void (*quant_fn)(const float *src, uint8_t *dst, int64_t nblocks);

typedef struct {
    sp_type_info info;
    dequant_fn dequant;
    quant_fn quant;
} type_entry;

/* The can_* flags follow from which converters an entry names. */
#define LAYOUT_ONLY(nm, blck, size) {{nm, blck, size, false, false}, NULL, NULL}
#define READ_ONLY(nm, blck, size, deq) {{nm, blck, size, true, false}, deq, NULL}
#define READ_WRITE(nm, blck, size, deq, q) {{nm, blck, size, true, true}, deq, q}

static const type_entry types[SP_TYPE_COUNT] = {
    [SP_TYPE_F32] = READ_WRITE("f32", 1, 4, dequant_row_f32, quant_row_f32),
    [SP_TYPE_F16] = READ_WRITE("f16", 1, 2, dequant_row_f16, quant_row_f16),
    [SP_TYPE_Q4_0] = READ_WRITE("q4_0", 32, 18, dequant_row_q4_0, quant_row_q4_0),
    [SP_TYPE_Q4_1] = READ_WRITE("q4_1", 32, 20, dequant_row_q4_1, quant_row_q4_1),
    [SP_TYPE_Q5_0] = READ_WRITE("q5_0", 32, 22, dequant_row_q5_0, quant_row_q5_0),
    [SP_TYPE_Q5_1] = READ_WRITE("q5_1", 32, 24, dequant_row_q5_1, quant_row_q5_1),
    [SP_TYPE_Q8_0] = READ_WRITE("q8_0", 32, 34, dequant_row_q8_0, quant_row_q8_0),
    [SP_TYPE_Q8_1] = LAYOUT_ONLY("q8_1", 32, 36),
    [SP_TYPE_Q2_K] = READ_ONLY("q2_k", 256, 84, dequant_row_q2_K),
    [SP_TYPE_Q3_K] = READ_ONLY("q3_k", 256, 110, dequant_row_q3_K),
    [SP_TYPE_Q4_K] = READ_WRITE("q4_k", 256, 144, dequant_row_q4_K, quant_row_q4_K),
    [SP_TYPE_Q5_K] = READ_WRITE("q5_k", 256, 176, dequant_row_q5_K, quant_row_q5_K),
    [SP_TYPE_Q6_K] = READ_WRITE("q6_k", 256, 210, dequant_row_q6_K, quant_row_q6_K),
    [SP_TYPE_Q8_K] = READ_ONLY("q8_k", 256, 292, dequant_row_q8_K),
    [SP_TYPE_IQ2_XXS] = LAYOUT_ONLY("iq2_xxs", 256, 66),
    [SP_TYPE_IQ2_XS] = LAYOUT_ONLY("iq2_xs", 256, 74),
    [SP_TYPE_IQ3_XXS] = LAYOUT_ONLY("iq3_xxs", 256, 98),
    [SP_TYPE_IQ1_S] = LAYOUT_ONLY("iq1_s", 256, 50),
    [SP_TYPE_IQ4_NL] = LAYOUT_ONLY("iq4_nl", 32, 18),
    [SP_TYPE_IQ3_S] = LAYOUT_ONLY("iq3_s", 256, 110),
    [SP_TYPE_IQ2_S] = LAYOUT_ONLY("iq2_s", 256, 82),
    [SP_TYPE_IQ4_XS] = LAYOUT_ONLY("iq4_xs", 256, 136),
    [SP_TYPE_I8] = LAYOUT_ONLY("i8", 1, 1),
    [SP_TYPE_I16] = LAYOUT_ONLY("i16", 1, 2),
    [SP_TYPE_I32] = LAYOUT_ONLY("i32", 1, 4),
    [SP_TYPE_I64] = LAYOUT_ONLY("i64", 1, 8),
    [SP_TYPE_F64] = LAYOUT_ONLY("f64", 1, 8),
    [SP_TYPE_IQ1_M] = LAYOUT_ONLY("iq1_m", 256, 56),
    [SP_TYPE_BF16] = READ_WRITE("bf16", 1, 2, dequant_row_bf16, quant_row_bf16),
    [SP_TYPE_TQ1_0] = LAYOUT_ONLY("tq1_0", 256, 54),
    [SP_TYPE_TQ2_0] = LAYOUT_ONLY("tq2_0", 256, 66),
};

#undef LAYOUT_ONLY
#undef READ_ONLY
#undef READ_WRITE

static const type_entry *entry(uint32_t type) {
    if (type >= SP_TYPE_COUNT || !types[type].info.name) return NULL; /* beyond, or a gap */
    return &types[type];
}

const sp_type_info *sp_type_get(uint32_t type) {
    const type_entry *e = entry(type);
    return e ? &e->info : NULL;
}

static int ascii_lower(int c) {
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

static bool equal_ignoring_case(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b)) return false;
    return *a == *b;
}

int sp_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < SP_TYPE_COUNT; t++)
        if (types[t].info.name && equal_ignoring_case(types[t].info.name, name)) return t;
    return -1;
}

size_t sp_type_row_bytes(uint32_t type, int64_t n) {
    const type_entry *e = entry(type);
    if (!e || n < 0 || n % e->info.blck != 0) return 0;
    const uint64_t nblocks = (uint64_t)n / e->info.blck;
    /* no object exceeds PTRDIFF_MAX bytes: a larger count is an overflow, not a row */
    const uint64_t limit = (uint64_t)PTRDIFF_MAX < (uint64_t)SIZE_MAX ? (uint64_t)PTRDIFF_MAX : (uint64_t)SIZE_MAX;
    if (nblocks > limit / e->info.size) return 0;
    return (size_t)(nblocks * e->info.size);
}

/* A row is convertible when it is empty or a whole number of blocks of representable size. */
static bool row_ok(uint32_t type, int64_t n) {
    return n == 0 || sp_type_row_bytes(type, n) != 0;
}

bool sp_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const type_entry *e = entry(type);
    if (!e || !e->dequant || !row_ok(type, n)) return false;
    if (n > 0) e->dequant((const uint8_t *)src, dst, n / e->info.blck);
    return true;
}

bool sp_quant_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const type_entry *e = entry(type);
    if (!e || !e->quant || !row_ok(type, n)) return false;
    if (n > 0) e->quant(src, (uint8_t *)dst, n / e->info.blck);
    return true;
}
