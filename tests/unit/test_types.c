/* tests/unit/test_types.c — kernels/types: the GGML type table, f16/bf16 conversion, and every
 * supported row (de)quantizer. Dequantizers are checked on hand-built blocks: the test states
 * each layout on its own (logical levels and scales packed at GGML's byte offsets) and computes
 * the expected floats with a plain formula in double, so a shared misreading is unlikely.
 * Quantizers are checked by exact round trips on representable data, error bounds on random
 * data, and against the stories260K F32 / Q8_0 pair. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/types.h"
#include "storage/gguf.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s) {
    rng_state = s;
}

static uint64_t rng_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rng_int(int lo, int hi) { /* inclusive */
    return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1));
}

static float rng_gauss(void) {
    const double u1 = ((double)(rng_u64() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = (double)(rng_u64() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The value of an IEEE half, decoded from the definition (independent of the code under test). */
static double half_value(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp(m, -24);
    return s * ldexp(1024 + m, e - 25);
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Dequantize `n` elements of `blocks` (copied to an odd address to exercise unaligned reads)
 * and require every element to equal `expected` exactly. */
static void expect_dequant(uint32_t type, const uint8_t *blocks, size_t nbytes, const float *expected, int n) {
    cr_assert_eq(sp_type_row_bytes(type, n), nbytes, "%s: row bytes", sp_type_get(type)->name);
    uint8_t *buf = malloc(nbytes + 1);
    float *y = malloc((size_t)n * sizeof *y);
    cr_assert(buf && y);
    memcpy(buf + 1, blocks, nbytes);
    cr_assert(sp_dequant_row(type, buf + 1, y, n), "%s: dequant refused", sp_type_get(type)->name);
    for (int i = 0; i < n; i++) {
        const bool same = y[i] == expected[i] || (isnan(y[i]) && isnan(expected[i]));
        cr_assert(same, "%s element %d: got %.9g, want %.9g", sp_type_get(type)->name, i, y[i], expected[i]);
    }
    free(buf);
    free(y);
}

/* ---- the table ---------------------------------------------------------------------------- */

static const struct {
    uint32_t id;
    const char *name;
    uint32_t blck, size;
} ggml_types[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},       {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},       {9, "q8_1", 32, 36},       {10, "q2_k", 256, 84},
    {11, "q3_k", 256, 110},    {12, "q4_k", 256, 144},    {13, "q5_k", 256, 176},
    {14, "q6_k", 256, 210},    {15, "q8_k", 256, 292},    {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74},   {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},    {21, "iq3_s", 256, 110},   {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},          {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},
    {35, "tq2_0", 256, 66},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

Test(types, table_has_every_ggml_type_with_exact_block_sizes) {
    cr_assert_eq(N_GGML_TYPES, 31);
    for (size_t i = 0; i < N_GGML_TYPES; i++) {
        const sp_type_info *t = sp_type_get(ggml_types[i].id);
        cr_assert_not_null(t, "type %u missing", ggml_types[i].id);
        cr_assert_str_eq(t->name, ggml_types[i].name);
        cr_assert_eq(t->blck, ggml_types[i].blck, "%s blck", t->name);
        cr_assert_eq(t->size, ggml_types[i].size, "%s size", t->name);
        cr_assert_eq(sp_type_from_name(ggml_types[i].name), (int)ggml_types[i].id);
    }
}

Test(types, unknown_ids_are_null) {
    const uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 39, 40, 41, 255, 65536, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert_null(sp_type_get(unknown[i]), "id %u", unknown[i]);
        cr_assert_eq(sp_type_row_bytes(unknown[i], 256), 0);
        float y[256];
        cr_assert(!sp_dequant_row(unknown[i], y, y, 256));
    }
    size_t known = 0;
    for (uint32_t id = 0; id < 1000; id++) known += sp_type_get(id) != NULL;
    cr_assert_eq(known, N_GGML_TYPES);
}

Test(types, names_parse_case_insensitively) {
    cr_assert_eq(sp_type_from_name("Q4_K"), SP_TYPE_Q4_K);
    cr_assert_eq(sp_type_from_name("BF16"), SP_TYPE_BF16);
    cr_assert_eq(sp_type_from_name("iq2_XXS"), SP_TYPE_IQ2_XXS);
    cr_assert_eq(sp_type_from_name("F32"), SP_TYPE_F32);
    const char *bad[] = {"", "q4", "q4_2", "q4_0 ", " q4_0", "q4_k_m", "f", "f322", "iq2_xx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) cr_assert_eq(sp_type_from_name(bad[i]), -1, "'%s'", bad[i]);
    cr_assert_eq(sp_type_from_name(NULL), -1);
}

Test(types, capability_flags) {
    const uint32_t deq[] = {SP_TYPE_F32, SP_TYPE_F16, SP_TYPE_BF16, SP_TYPE_Q4_0, SP_TYPE_Q4_1,
                            SP_TYPE_Q5_0, SP_TYPE_Q5_1, SP_TYPE_Q8_0, SP_TYPE_Q2_K, SP_TYPE_Q3_K,
                            SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K, SP_TYPE_Q8_K};
    const uint32_t q[] = {SP_TYPE_F32, SP_TYPE_F16, SP_TYPE_BF16, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0,
                          SP_TYPE_Q5_1, SP_TYPE_Q8_0, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    for (size_t i = 0; i < N_GGML_TYPES; i++) {
        const uint32_t id = ggml_types[i].id;
        bool want_deq = false, want_q = false;
        for (size_t k = 0; k < sizeof deq / sizeof deq[0]; k++) want_deq |= deq[k] == id;
        for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) want_q |= q[k] == id;
        const sp_type_info *t = sp_type_get(id);
        cr_assert_eq(t->can_dequant, want_deq, "%s can_dequant", t->name);
        cr_assert_eq(t->can_quant, want_q, "%s can_quant", t->name);

        /* the flags tell the truth */
        const int64_t n = t->blck;
        uint8_t raw[512] = {0};
        float x[256] = {0};
        cr_assert_eq(sp_dequant_row(id, raw, x, n), want_deq, "%s dequant", t->name);
        cr_assert_eq(sp_quant_row(id, x, raw, n), want_q, "%s quant", t->name);
    }
}

Test(types, row_bytes) {
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_F32, 7), 28);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_BF16, 3), 6);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q4_0, 64), 36);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q8_0, 4096), 128 * 34);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q4_K, 256), 144);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q6_K, 4096), 16 * 210);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_TQ1_0, 512), 108);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_F32, 0), 0);
    /* bad n */
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q4_K, 255), 0);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q4_0, 33), 0);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_F32, -1), 0);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q8_0, -32), 0);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q8_0, INT64_MIN), 0);
    /* overflow */
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_F64, INT64_MAX), 0);
    cr_assert_eq(sp_type_row_bytes(SP_TYPE_Q8_0, INT64_MAX - INT64_MAX % 32), 0);
    if ((uint64_t)SIZE_MAX >= (uint64_t)INT64_MAX) cr_assert_eq(sp_type_row_bytes(SP_TYPE_I8, INT64_MAX), (size_t)INT64_MAX);
    /* (de)quant refuse partial blocks and negative lengths, accept empty rows */
    float x[64] = {0};
    uint8_t raw[64];
    cr_assert(!sp_dequant_row(SP_TYPE_Q4_0, raw, x, 31));
    cr_assert(!sp_quant_row(SP_TYPE_Q4_0, x, raw, 48));
    cr_assert(!sp_quant_row(SP_TYPE_F32, x, raw, -4));
    cr_assert(sp_dequant_row(SP_TYPE_Q4_K, raw, x, 0));
    cr_assert(sp_quant_row(SP_TYPE_Q8_0, x, raw, 0));
}

/* ---- f16 ---------------------------------------------------------------------------------- */

Test(f16, edge_values) {
    const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},           {-0.0f, 0x8000},          {1.0f, 0x3C00},
        {-2.0f, 0xC000},          {0.5f, 0x3800},           {65504.0f, 0x7BFF},
        {65519.996f, 0x7BFF},     {65520.0f, 0x7C00},       {-65520.0f, 0xFC00},
        {65536.0f, 0x7C00},       {FLT_MAX, 0x7C00},        {INFINITY, 0x7C00},
        {-INFINITY, 0xFC00},      {0x1p-14f, 0x0400},       {0x1.ff8p-15f, 0x03FF},
        {0x1p-24f, 0x0001},       {-0x1p-24f, 0x8001},      {0x1p-25f, 0x0000},
        {-0x1p-25f, 0x8000},      {0x1.000002p-25f, 0x0001}, {0x1.8p-25f, 0x0001},
        {0x1.8p-24f, 0x0002},     {0x1.4p-23f, 0x0002},     {0x1p-26f, 0x0000},
        {0x1p-149f, 0x0000},      {0x1.ffcp-15f, 0x0400},   {1.0f + 0x1p-11f, 0x3C00},
        {1.0f + 0x1.8p-10f, 0x3C02}, {1.0f + 0x1p-11f + 0x1p-20f, 0x3C01},
        {2049.0f, 0x6800},        {2051.0f, 0x6802},        {0.1f, 0x2E66},
        {1.0f / 3.0f, 0x3555},    {-1.5f, 0xBE00},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint16_t h = sp_f32_to_f16(cases[i].f);
        cr_assert_eq(h, cases[i].h, "f32 %a -> f16 %04x, want %04x", (double)cases[i].f, h, cases[i].h);
        cr_assert_eq((double)sp_f16_to_f32(cases[i].h), half_value(cases[i].h), "f16 %04x", cases[i].h);
    }
    cr_assert(signbit(sp_f16_to_f32(0x8000)) && sp_f16_to_f32(0x8000) == 0.0f);
    cr_assert_eq(sp_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(sp_f16_to_f32(0x7BFF), 65504.0f);
    cr_assert(isinf(sp_f16_to_f32(0x7C00)) && sp_f16_to_f32(0xFC00) < 0);

    /* nan stays nan both ways, whatever its payload */
    const uint32_t nans[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FA00000u, 0x7F801000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        const uint16_t h = sp_f32_to_f16(float_of(nans[i]));
        cr_assert((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0, "nan %08x -> %04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31, "nan sign");
    }
    cr_assert(isnan(sp_f16_to_f32(0x7E00)) && isnan(sp_f16_to_f32(0x7C01)) && isnan(sp_f16_to_f32(0xFFFF)));
}

Test(f16, every_half_round_trips) {
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        const float f = sp_f16_to_f32((uint16_t)h);
        const double want = half_value((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(f), "%04x", h);
            const uint16_t back = sp_f32_to_f16(f);
            cr_assert((back & 0x7C00) == 0x7C00 && (back & 0x3FF), "%04x", h);
        } else {
            cr_assert_eq((double)f, want, "%04x", h);
            cr_assert_eq(sp_f32_to_f16(f), h, "%04x", h);
        }
    }
}

/* Reference f32 -> f16: search the sorted non-negative halves for the neighbours of |f| and pick
 * the nearer, ties to the even code. 0x7C00 stands for 65536 here (the first value past 65504),
 * which makes 65520 a tie that goes to the even code, i.e. inf, as IEEE requires. */
static double half_grid[0x7C01];

static uint16_t reference_f32_to_f16(float f) {
    const double a = fabs((double)f);
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (a >= 65536.0) return sign | 0x7C00;
    int lo = 0, hi = 0x7C00; /* half_grid[lo] <= a < half_grid[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (half_grid[mid] <= a) lo = mid; else hi = mid;
    }
    const double dlo = a - half_grid[lo], dhi = half_grid[hi] - a;
    const int pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
    return (uint16_t)(sign | pick);
}

Test(f16, random_floats_round_to_nearest_even) {
    for (int k = 0; k < 0x7C00; k++) half_grid[k] = half_value((uint16_t)k);
    half_grid[0x7C00] = 65536.0;
    rng_seed(1);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64();
        if (i % 2) { /* focus on the half range: exponents 2^-27 .. 2^17 */
            const uint32_t exp = 100u + (uint32_t)rng_int(0, 44);
            u = (u & 0x807FFFFFu) | exp << 23;
            if (i % 6 == 1) u &= ~0x1FFFu, u |= 0x1000u; /* exact ties for normal halves */
        }
        const float f = float_of(u);
        if (isnan(f)) continue;
        cr_assert_eq(sp_f32_to_f16(f), reference_f32_to_f16(f), "f32 bits %08x (%a)", u, (double)f);
    }
}

/* ---- bf16 --------------------------------------------------------------------------------- */

Test(bf16, edge_values) {
    const struct {
        uint32_t f;
        uint16_t h;
    } cases[] = {
        {0x00000000u, 0x0000}, {0x80000000u, 0x8000}, {0x3F800000u, 0x3F80}, /* 1 */
        {0x3F808000u, 0x3F80}, /* tie -> even */       {0x3F818000u, 0x3F82}, /* tie -> even */
        {0x3F808001u, 0x3F81}, {0x3F807FFFu, 0x3F80}, {0xBF808001u, 0xBF81},
        {0x7F7FFFFFu, 0x7F80}, /* FLT_MAX rounds to inf */ {0x7F7F7FFFu, 0x7F7F},
        {0x7F800000u, 0x7F80}, {0xFF800000u, 0xFF80}, {0x00008000u, 0x0000}, /* subnormal tie */
        {0x00018000u, 0x0002}, {0x00008001u, 0x0001}, {0x40490FDBu, 0x4049}, /* pi */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint16_t h = sp_f32_to_bf16(float_of(cases[i].f));
        cr_assert_eq(h, cases[i].h, "f32 %08x -> bf16 %04x, want %04x", cases[i].f, h, cases[i].h);
    }
    const uint32_t nans[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7F80FFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        const uint16_t h = sp_f32_to_bf16(float_of(nans[i]));
        cr_assert(isnan(sp_bf16_to_f32(h)), "nan %08x -> %04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31);
    }
    cr_assert_eq(sp_bf16_to_f32(0x3F80), 1.0f);
    cr_assert_eq(sp_bf16_to_f32(0xC0A0), -5.0f);
    cr_assert(isnan(sp_bf16_to_f32(0x7FC1)) && isinf(sp_bf16_to_f32(0xFF80)));
}

Test(bf16, every_bf16_round_trips_and_random_floats_round_to_nearest_even) {
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        const float f = sp_bf16_to_f32((uint16_t)h);
        cr_assert_eq(bits_of(f), h << 16);
        if (!isnan(f)) cr_assert_eq(sp_f32_to_bf16(f), h, "%04x", h);
    }
    rng_seed(2);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64();
        if (i % 4 == 0) u = (u & 0xFFFF0000u) | 0x8000u; /* exact ties */
        const float f = float_of(u);
        if (isnan(f)) continue;
        /* neighbours: truncation and the next code up in magnitude (0x7F80 = inf stands for 2^128) */
        const uint32_t mag = u & 0x7FFFFFFFu, t = mag >> 16;
        const double a = fabs((double)f);
        const double lo = fabs((double)float_of(t << 16));
        const double hi = (t + 1 == 0x7F80) ? ldexp(1.0, 128) : fabs((double)float_of((t + 1) << 16));
        const uint32_t pick = (a - lo < hi - a) ? t : (hi - a < a - lo) ? t + 1 : ((t & 1) ? t + 1 : t);
        const uint16_t want = (uint16_t)((u >> 16 & 0x8000u) | (isinf(f) ? 0x7F80u : pick));
        cr_assert_eq(sp_f32_to_bf16(f), want, "f32 bits %08x", u);
    }
}

/* ---- dequantization of hand-built blocks -------------------------------------------------- */

Test(dequant, f32_f16_bf16) {
    const float xs[] = {0.0f, -0.0f, 1.0f, -3.25f, 65504.0f, 1e-30f, INFINITY, NAN};
    expect_dequant(SP_TYPE_F32, (const uint8_t *)xs, sizeof xs, xs, 8);

    const uint16_t hs[] = {0x0000, 0x8000, 0x3C00, 0xC500, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x3555};
    float want[11];
    uint8_t raw[22];
    for (int i = 0; i < 11; i++) want[i] = (float)half_value(hs[i]), put16(raw + 2 * i, hs[i]);
    expect_dequant(SP_TYPE_F16, raw, sizeof raw, want, 11);

    const uint16_t bs[] = {0x0000, 0x3F80, 0xC0A0, 0x7F80, 0x0001, 0x7F7F, 0x7FC0, 0x4049};
    float wantb[8];
    uint8_t rawb[16];
    for (int i = 0; i < 8; i++) wantb[i] = float_of((uint32_t)bs[i] << 16), put16(rawb + 2 * i, bs[i]);
    expect_dequant(SP_TYPE_BF16, rawb, sizeof rawb, wantb, 8);
}

/* The d values used below: exact f16 codes with awkward mantissas, both signs. */
static const uint16_t test_d[] = {0x3555 /* 0.33325 */, 0xB800 /* -0.5 */, 0x2E66 /* 0.09998 */, 0x0C01 /* tiny */};

/* Q4_0, bytes: d f16 @0, qs[16] @2; element j low nibble of qs[j], element j + 16 high nibble. */
Test(dequant, q4_0) {
    enum { NB = 4 };
    uint8_t raw[NB * 18] = {0};
    float want[NB * 32];
    rng_seed(10);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 18 * b;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = i == 0 ? 0 : i == 31 ? 15 : rng_int(0, 15);
        put16(p, test_d[b]);
        for (int j = 0; j < 16; j++) p[2 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
        for (int i = 0; i < 32; i++) want[32 * b + i] = (float)(half_value(test_d[b]) * (q[i] - 8));
    }
    expect_dequant(SP_TYPE_Q4_0, raw, sizeof raw, want, NB * 32);

    /* by hand: d = 1, byte 0x1F -> element 0 is 15 - 8, element 16 is 1 - 8 */
    uint8_t one[18] = {0x00, 0x3C, 0x1F};
    float y[32];
    cr_assert(sp_dequant_row(SP_TYPE_Q4_0, one, y, 32));
    cr_assert(y[0] == 7.0f && y[16] == -7.0f && y[1] == -8.0f && y[17] == -8.0f);
}

/* Q4_1, bytes: d @0, m @2, qs[16] @4; x = d q + m. */
Test(dequant, q4_1) {
    enum { NB = 4 };
    const uint16_t m[NB] = {0xBC00 /* -1 */, 0x4100 /* 2.5 */, 0x0000, 0xB555};
    uint8_t raw[NB * 20] = {0};
    float want[NB * 32];
    rng_seed(11);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 20 * b;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = i == 5 ? 15 : i == 20 ? 0 : rng_int(0, 15);
        put16(p, test_d[b]);
        put16(p + 2, m[b]);
        for (int j = 0; j < 16; j++) p[4 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
        for (int i = 0; i < 32; i++) want[32 * b + i] = (float)(half_value(test_d[b]) * q[i] + half_value(m[b]));
    }
    expect_dequant(SP_TYPE_Q4_1, raw, sizeof raw, want, NB * 32);
}

/* Q5: 5-bit levels, low nibbles as Q4, bit 4 of element i is bit i of the little-endian u32 qh. */
static void pack_q5(const int q[32], uint8_t qh[4], uint8_t qs[16]) {
    memset(qh, 0, 4);
    for (int i = 0; i < 32; i++) qh[i / 8] |= (uint8_t)((q[i] >> 4) << (i % 8));
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
}

/* Q5_0, bytes: d @0, qh[4] @2, qs[16] @6; x = d (q - 16). */
Test(dequant, q5_0) {
    enum { NB = 4 };
    uint8_t raw[NB * 22];
    float want[NB * 32];
    rng_seed(12);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 22 * b;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = i == 0 ? 31 : i == 16 ? 16 : i == 31 ? 0 : rng_int(0, 31);
        put16(p, test_d[b]);
        pack_q5(q, p + 2, p + 6);
        for (int i = 0; i < 32; i++) want[32 * b + i] = (float)(half_value(test_d[b]) * (q[i] - 16));
    }
    expect_dequant(SP_TYPE_Q5_0, raw, sizeof raw, want, NB * 32);

    /* by hand: d = 1, qh = 0x80000001 (elements 0 and 31 high), qs[0] = 0x21, qs[15] = 0xF0 */
    uint8_t one[22] = {0x00, 0x3C, 0x01, 0x00, 0x00, 0x80, 0x21};
    one[6 + 15] = 0xF0;
    float y[32];
    cr_assert(sp_dequant_row(SP_TYPE_Q5_0, one, y, 32));
    cr_assert(y[0] == 17.0f - 16 && y[16] == 2.0f - 16 && y[15] == -16.0f && y[31] == 31.0f - 16);
}

/* Q5_1, bytes: d @0, m @2, qh[4] @4, qs[16] @8; x = d q + m. */
Test(dequant, q5_1) {
    enum { NB = 4 };
    const uint16_t m[NB] = {0xC200 /* -3 */, 0x3800, 0x8000, 0x1234};
    uint8_t raw[NB * 24];
    float want[NB * 32];
    rng_seed(13);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 24 * b;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = i == 3 ? 31 : rng_int(0, 31);
        put16(p, test_d[b]);
        put16(p + 2, m[b]);
        pack_q5(q, p + 4, p + 8);
        for (int i = 0; i < 32; i++) want[32 * b + i] = (float)(half_value(test_d[b]) * q[i] + half_value(m[b]));
    }
    expect_dequant(SP_TYPE_Q5_1, raw, sizeof raw, want, NB * 32);
}

/* Q8_0, bytes: d @0, qs[32] int8 @2; x = d q. */
Test(dequant, q8_0) {
    enum { NB = 4 };
    uint8_t raw[NB * 34];
    float want[NB * 32];
    rng_seed(14);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 34 * b;
        put16(p, test_d[b]);
        for (int i = 0; i < 32; i++) {
            const int q = i == 0 ? -128 : i == 1 ? 127 : i == 2 ? 0 : rng_int(-128, 127);
            p[2 + i] = (uint8_t)(int8_t)q;
            want[32 * b + i] = (float)(half_value(test_d[b]) * q);
        }
    }
    expect_dequant(SP_TYPE_Q8_0, raw, sizeof raw, want, NB * 32);
}

/* 2-bit planes of the K-quants (Q2_K, Q3_K low bits): each 128-element half owns 32 bytes; the
 * byte k of half h holds elements 128h + k, +32, +64, +96 at bits 0, 2, 4, 6. */
static void pack_2bit_planes(const int *low2, uint8_t qs[64]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 32; k++) {
            const int *e = low2 + 128 * h + k;
            qs[32 * h + k] = (uint8_t)(e[0] | e[32] << 2 | e[64] << 4 | e[96] << 6);
        }
}

/* Q2_K, bytes: scales[16] @0 (scale low nibble, min high), qs[64] @16, d @80, dmin @82;
 * x = d scale q - dmin min, per 16-element sub-block. */
Test(dequant, q2_K) {
    enum { NB = 2 };
    uint8_t raw[NB * 84];
    float want[NB * 256];
    rng_seed(15);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 84 * b;
        int q[256], sc[16], mn[16];
        for (int s = 0; s < 16; s++) sc[s] = rng_int(0, 15), mn[s] = rng_int(0, 15), p[s] = (uint8_t)(sc[s] | mn[s] << 4);
        sc[3] = 15, mn[3] = 0, p[3] = 0x0F;
        for (int i = 0; i < 256; i++) q[i] = rng_int(0, 3);
        pack_2bit_planes(q, p + 16);
        const uint16_t d = b ? 0x3555 : 0x3800, dmin = b ? 0x2E66 : 0x3400;
        put16(p + 80, d);
        put16(p + 82, dmin);
        for (int i = 0; i < 256; i++)
            want[256 * b + i] = (float)(half_value(d) * sc[i / 16] * q[i] - half_value(dmin) * mn[i / 16]);
    }
    expect_dequant(SP_TYPE_Q2_K, raw, sizeof raw, want, NB * 256);
}

/* Q3_K, bytes: hmask[32] @0, qs[64] @32, scales[12] @96, d @108. 16 six-bit scales (stored +32):
 * low nibbles in bytes 0..7 (scales 0..7 low nibble, 8..15 high nibble), top 2 bits of scale s
 * in byte 8 + s % 4 at bit 2 (s / 4). Element i's level q in 0..7: low 2 bits in the planes, bit 2
 * in hmask[i % 32] at bit i / 32. x = d (scale - 32) (q - 4). */
Test(dequant, q3_K) {
    enum { NB = 2 };
    uint8_t raw[NB * 110];
    float want[NB * 256];
    rng_seed(16);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 110 * b;
        memset(p, 0, 110);
        int q[256], low[256], sc[16];
        for (int s = 0; s < 16; s++) sc[s] = rng_int(0, 63);
        sc[0] = 0, sc[15] = 63, sc[7] = 32;
        for (int s = 0; s < 16; s++) {
            p[96 + s % 8] |= (uint8_t)((sc[s] & 15) << (s < 8 ? 0 : 4));
            p[96 + 8 + s % 4] |= (uint8_t)((sc[s] >> 4) << (2 * (s / 4)));
        }
        for (int i = 0; i < 256; i++) {
            q[i] = rng_int(0, 7);
            low[i] = q[i] & 3;
            p[i % 32] |= (uint8_t)((q[i] >> 2) << (i / 32));
        }
        pack_2bit_planes(low, p + 32);
        const uint16_t d = b ? 0xB555 : 0x3800;
        put16(p + 108, d);
        for (int i = 0; i < 256; i++) want[256 * b + i] = (float)(half_value(d) * (sc[i / 16] - 32) * (q[i] - 4));
    }
    expect_dequant(SP_TYPE_Q3_K, raw, sizeof raw, want, NB * 256);
}

/* Q4_K/Q5_K scales: 8 six-bit scales and mins in 12 bytes. Bytes 0..3: scales 0..3, plus bits 4..5
 * of scales 4..7 on top; bytes 4..7: mins 0..3, plus bits 4..5 of mins 4..7 on top; bytes 8..11:
 * low nibbles of scales 4..7 (low) and mins 4..7 (high). */
static void pack_k_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
    for (int s = 0; s < 4; s++) {
        out[s] = (uint8_t)(sc[s] | (sc[s + 4] >> 4) << 6);
        out[4 + s] = (uint8_t)(mn[s] | (mn[s + 4] >> 4) << 6);
        out[8 + s] = (uint8_t)((sc[s + 4] & 15) | (mn[s + 4] & 15) << 4);
    }
}

/* Q4_K/Q5_K nibbles: each 64-element chunk c owns qs[32c .. 32c + 31]; element 64c + l is the low
 * nibble of qs[32c + l], element 64c + 32 + l the high nibble. */
static void pack_k_nibbles(const int *q, uint8_t qs[128]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 15) | (q[64 * c + 32 + l] & 15) << 4);
}

static void random_k_scales(int sc[8], int mn[8]) {
    for (int s = 0; s < 8; s++) sc[s] = rng_int(0, 63), mn[s] = rng_int(0, 63);
    sc[4] = 63, mn[5] = 63, sc[6] = 16, mn[7] = 32; /* make the high bits of 4..7 matter */
}

/* Q4_K, bytes: d @0, dmin @2, scales[12] @4, qs[128] @16; x = d scale q - dmin min per 32. */
Test(dequant, q4_K) {
    enum { NB = 3 };
    uint8_t raw[NB * 144];
    float want[NB * 256];
    rng_seed(17);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 144 * b;
        int q[256], sc[8], mn[8];
        random_k_scales(sc, mn);
        for (int i = 0; i < 256; i++) q[i] = rng_int(0, 15);
        const uint16_t d = test_d[b], dmin = b == 1 ? 0x2E66 : 0x3555;
        put16(p, d);
        put16(p + 2, dmin);
        pack_k_scales(sc, mn, p + 4);
        pack_k_nibbles(q, p + 16);
        for (int i = 0; i < 256; i++)
            want[256 * b + i] = (float)(half_value(d) * sc[i / 32] * q[i] - half_value(dmin) * mn[i / 32]);
    }
    expect_dequant(SP_TYPE_Q4_K, raw, sizeof raw, want, NB * 256);

    /* by hand: d 0.5, dmin 0.25; byte 0 = 0xC1 (scale 0 = 1, top bits of scale 4 = 3), byte 4 = 0x42
     * (min 0 = 2, top bits of min 4 = 1), byte 8 = 0x75 (scale 4 = 0x35 = 53, min 4 = 0x17 = 23);
     * qs[0] = 0x0A: element 0 = 0.5*1*10 - 0.25*2; qs[64] = 0x03: element 128 = 0.5*53*3 - 0.25*23. */
    uint8_t one[144] = {0};
    put16(one, 0x3800);
    put16(one + 2, 0x3400);
    one[4 + 0] = 0xC1, one[4 + 4] = 0x42, one[4 + 8] = 0x75;
    one[16 + 0] = 0x0A, one[16 + 64] = 0x03;
    float y[256];
    cr_assert(sp_dequant_row(SP_TYPE_Q4_K, one, y, 256));
    cr_assert(y[0] == 4.5f && y[32] == 0.0f && y[128] == 73.75f && y[160] == 0.0f && y[129] == -5.75f,
              "%g %g %g %g %g", y[0], y[32], y[128], y[160], y[129]);
}

/* Q5_K, bytes: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48; level q in 0..31, low 4 bits
 * as Q4_K, bit 4 of element i in qh[i % 32] at bit i / 32. */
Test(dequant, q5_K) {
    enum { NB = 3 };
    uint8_t raw[NB * 176];
    float want[NB * 256];
    rng_seed(18);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 176 * b;
        int q[256], sc[8], mn[8];
        random_k_scales(sc, mn);
        for (int i = 0; i < 256; i++) q[i] = rng_int(0, 31);
        q[255] = 31, q[0] = 16;
        const uint16_t d = test_d[b], dmin = 0x3555;
        put16(p, d);
        put16(p + 2, dmin);
        pack_k_scales(sc, mn, p + 4);
        memset(p + 16, 0, 32);
        for (int i = 0; i < 256; i++) p[16 + i % 32] |= (uint8_t)((q[i] >> 4) << (i / 32));
        pack_k_nibbles(q, p + 48);
        for (int i = 0; i < 256; i++)
            want[256 * b + i] = (float)(half_value(d) * sc[i / 32] * q[i] - half_value(dmin) * mn[i / 32]);
    }
    expect_dequant(SP_TYPE_Q5_K, raw, sizeof raw, want, NB * 256);
}

/* Q6_K, bytes: ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208; level q in 0..63,
 * x = d scale[i / 16] (q - 32). Half n (128 elements) owns ql[64n ..] and qh[32n ..]; for l < 32:
 * ql[64n + l] = elements 128n + l (low nibble) and 128n + 64 + l (high); ql[64n + 32 + l] =
 * elements 128n + 32 + l (low) and 128n + 96 + l (high); qh[32n + l] = top 2 bits of elements
 * 128n + l, +32, +64, +96 at bits 0, 2, 4, 6. */
Test(dequant, q6_K) {
    enum { NB = 3 };
    uint8_t raw[NB * 210];
    float want[NB * 256];
    rng_seed(19);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 210 * b;
        int q[256], sc[16];
        for (int s = 0; s < 16; s++) sc[s] = rng_int(-128, 127);
        sc[0] = -128, sc[1] = 127, sc[2] = 0;
        for (int i = 0; i < 256; i++) q[i] = rng_int(0, 63);
        q[0] = 0, q[1] = 63, q[200] = 32;
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++) {
                const int *e = q + 128 * n + l;
                p[64 * n + l] = (uint8_t)((e[0] & 15) | (e[64] & 15) << 4);
                p[64 * n + 32 + l] = (uint8_t)((e[32] & 15) | (e[96] & 15) << 4);
                p[128 + 32 * n + l] = (uint8_t)((e[0] >> 4) | (e[32] >> 4) << 2 | (e[64] >> 4) << 4 | (e[96] >> 4) << 6);
            }
        for (int s = 0; s < 16; s++) p[192 + s] = (uint8_t)(int8_t)sc[s];
        put16(p + 208, test_d[b]);
        for (int i = 0; i < 256; i++) want[256 * b + i] = (float)(half_value(test_d[b]) * sc[i / 16] * (q[i] - 32));
    }
    expect_dequant(SP_TYPE_Q6_K, raw, sizeof raw, want, NB * 256);
}

/* Q8_K, bytes: d f32 @0, qs[256] int8 @4, bsums[16] int16 @260 (ignored); x = d q. */
Test(dequant, q8_K) {
    enum { NB = 2 };
    uint8_t raw[NB * 292];
    float want[NB * 256];
    const float d[NB] = {0.0123456789f, -3.5f};
    rng_seed(20);
    for (int b = 0; b < NB; b++) {
        uint8_t *p = raw + 292 * b;
        memcpy(p, &d[b], 4);
        for (int i = 0; i < 256; i++) {
            const int q = i == 0 ? -128 : i == 1 ? 127 : rng_int(-128, 127);
            p[4 + i] = (uint8_t)(int8_t)q;
            want[256 * b + i] = (float)((double)d[b] * q);
        }
        for (int k = 0; k < 32; k++) p[260 + k] = (uint8_t)rng_int(0, 255);
    }
    expect_dequant(SP_TYPE_Q8_K, raw, sizeof raw, want, NB * 256);
}

/* ---- quantization ------------------------------------------------------------------------- */

/* Quantize then dequantize n values; returns the quantized bytes (caller frees). */
static uint8_t *round_trip(uint32_t type, const float *x, float *y, int64_t n) {
    const size_t nbytes = sp_type_row_bytes(type, n);
    cr_assert(nbytes > 0);
    uint8_t *buf = malloc(nbytes + 1);
    cr_assert(buf);
    cr_assert(sp_quant_row(type, x, buf + 1, n), "%s quant", sp_type_get(type)->name); /* unaligned */
    cr_assert(sp_dequant_row(type, buf + 1, y, n), "%s dequant", sp_type_get(type)->name);
    memmove(buf, buf + 1, nbytes);
    return buf;
}

static void gaussian_row(float *x, int n, float sigma, float mean) {
    for (int i = 0; i < n; i++) x[i] = mean + sigma * rng_gauss();
}

Test(quant, f32_f16_bf16_are_plain_conversions) {
    enum { N = 1000 };
    float x[N], y[N];
    rng_seed(30);
    gaussian_row(x, N, 100.0f, 0.0f);
    x[0] = 65520.0f, x[1] = 0x1p-25f, x[2] = NAN, x[3] = -0.0f;
    free(round_trip(SP_TYPE_F32, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    free(round_trip(SP_TYPE_F16, x, y, N));
    for (int i = 0; i < N; i++) cr_assert_eq(bits_of(y[i]), bits_of(sp_f16_to_f32(sp_f32_to_f16(x[i]))), "%d", i);
    free(round_trip(SP_TYPE_BF16, x, y, N));
    for (int i = 0; i < N; i++) cr_assert_eq(bits_of(y[i]), bits_of(sp_bf16_to_f32(sp_f32_to_bf16(x[i]))), "%d", i);
}

/* Data that each format represents exactly comes back exactly (d a power of two). */
Test(quant, representable_blocks_round_trip_exactly) {
    enum { N = 32 * 8 };
    float x[N], y[N];
    rng_seed(31);
    for (int b = 0; b < N / 32; b++) { /* Q8_0: levels in -127..127 with the extreme present */
        const float d = ldexpf(1.0f, rng_int(-12, 4));
        for (int i = 0; i < 32; i++) x[32 * b + i] = d * (i == b ? (b % 2 ? -127 : 127) : rng_int(-127, 127));
    }
    free(round_trip(SP_TYPE_Q8_0, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "q8_0");

    for (int b = 0; b < N / 32; b++) { /* Q4_0: levels -8..7 with -8 (the extreme) present */
        const float d = ldexpf(b % 2 ? -1.0f : 1.0f, rng_int(-10, 4));
        for (int i = 0; i < 32; i++) x[32 * b + i] = d * (i == 3 * b ? -8 : rng_int(-7, 7));
    }
    free(round_trip(SP_TYPE_Q4_0, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "q4_0");

    for (int b = 0; b < N / 32; b++) { /* Q5_0: levels -16..15 with -16 present */
        const float d = ldexpf(1.0f, rng_int(-10, 4));
        for (int i = 0; i < 32; i++) x[32 * b + i] = d * (i == 31 - b ? -16 : rng_int(-15, 15));
    }
    free(round_trip(SP_TYPE_Q5_0, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "q5_0");

    for (int b = 0; b < N / 32; b++) { /* Q4_1 / Q5_1: min + d * (0..15 / 0..31), both ends present */
        const float d = ldexpf(1.0f, rng_int(-8, 2)), m = -d * rng_int(0, 40);
        for (int i = 0; i < 32; i++) x[32 * b + i] = m + d * (i == 0 ? 0 : i == 1 ? 15 : rng_int(0, 15));
    }
    free(round_trip(SP_TYPE_Q4_1, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "q4_1");
    for (int b = 0; b < N / 32; b++) {
        const float d = ldexpf(1.0f, rng_int(-8, 2)), m = d * rng_int(-40, 40);
        for (int i = 0; i < 32; i++) x[32 * b + i] = m + d * (i == 7 ? 0 : i == 9 ? 31 : rng_int(0, 31));
    }
    free(round_trip(SP_TYPE_Q5_1, x, y, N));
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "q5_1");
}

/* Per element |x - y| for the 32-element formats, from the stored (f16) d and m of each block.
 * The quantizer divides by the unrounded d, so besides half a step each level may be off by
 * level * |d - f16(d)| <= level * |d| 2^-11 and the min by |m| 2^-11. `top` is the extra allowance
 * at the top level (Q4_0 / Q5_0 clamp the +max side to level 15 / 31: up to one full step). */
static void check_block_errors(uint32_t type, const float *x, const float *y, const uint8_t *q, int n) {
    const sp_type_info *t = sp_type_get(type);
    for (int b = 0; b < n / 32; b++) {
        const uint8_t *blk = q + (size_t)b * t->size;
        uint16_t dh, mh = 0;
        memcpy(&dh, blk, 2);
        const bool has_min = type == SP_TYPE_Q4_1 || type == SP_TYPE_Q5_1;
        if (has_min) memcpy(&mh, blk + 2, 2);
        const double d = fabs(half_value(dh)), m = fabs(half_value(mh));
        const int levels = type == SP_TYPE_Q8_0 ? 128 : (type == SP_TYPE_Q4_0 || type == SP_TYPE_Q4_1) ? 16 : 32;
        const double step = (type == SP_TYPE_Q4_0 || type == SP_TYPE_Q5_0) ? 1.0 : 0.5;
        const double bound = d * (step + levels * 0x1p-11) + m * 0x1p-11 + 1e-6 * d;
        for (int i = 32 * b; i < 32 * b + 32; i++)
            cr_assert(fabs((double)x[i] - y[i]) <= bound, "%s block %d element %d: x %g y %g d %g",
                      t->name, b, i, x[i], y[i], d);
    }
}

static double rms_error_ratio(const float *x, const float *y, int n) {
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), s += (double)x[i] * x[i];
    return sqrt(e / s);
}

Test(quant, block_formats_on_random_data_stay_within_half_a_step) {
    enum { N = 32 * 256 };
    static float x[N], y[N];
    const uint32_t fmts[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0, SP_TYPE_Q5_1};
    const double max_rms[] = {0.0065, 0.1, 0.09, 0.05, 0.045}; /* measured 0.0054 .086 .078 .043 .038 */
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        rng_seed(40 + f);
        gaussian_row(x, N, 0.05f, 0.0f);
        for (int i = 0; i < 32; i++) x[N - 32 + i] = 7.0f + 0.001f * i; /* an all-positive block */
        uint8_t *q = round_trip(fmts[f], x, y, N);
        check_block_errors(fmts[f], x, y, q, N);
        const double rms = rms_error_ratio(x, y, N - 32);
        cr_assert(rms <= max_rms[f], "%s rms error ratio %g", sp_type_get(fmts[f])->name, rms);
        free(q);
    }
}

/* K-quants have no simple per-element bound (scales are fitted, then rounded to 6/8 bits), so
 * check the error against the data: relative rms and the worst element against the block's
 * own spread, on Gaussian rows and on rows with a non-zero mean and outliers. */
Test(quant, k_formats_on_random_data) {
    enum { N = 256 * 64 };
    static float x[N], y[N];
    const uint32_t fmts[] = {SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    /* measured: rms 0.085 / 0.042 / 0.026, worst 0.071 / 0.034 / 0.016 (about half a step) */
    const double max_rms[] = {0.10, 0.05, 0.031};    /* vs data rms */
    const double max_worst[] = {0.085, 0.042, 0.02}; /* vs the block's max |x| */
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        for (int kind = 0; kind < 2; kind++) {
            rng_seed(50 + 10 * f + kind);
            gaussian_row(x, N, 0.05f, kind ? 0.03f : 0.0f);
            if (kind)
                for (int i = 0; i < N; i += 97) x[i] *= 8.0f;
            uint8_t *q = round_trip(fmts[f], x, y, N);
            const double rms = rms_error_ratio(x, y, N);
            cr_assert(rms <= max_rms[f], "%s kind %d: rms error ratio %g", sp_type_get(fmts[f])->name, kind, rms);
            for (int b = 0; b < N / 256; b++) {
                double amax = 0, worst = 0;
                for (int i = 256 * b; i < 256 * b + 256; i++) {
                    amax = fmax(amax, fabs(x[i]));
                    worst = fmax(worst, fabs((double)x[i] - y[i]));
                }
                cr_assert(worst <= max_worst[f] * amax, "%s kind %d block %d: worst %g of amax %g",
                          sp_type_get(fmts[f])->name, kind, b, worst, amax);
            }
            free(q);
        }
    }
}

Test(quant, zero_and_constant_blocks) {
    const uint32_t fmts[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0, SP_TYPE_Q5_1,
                             SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    float x[512], y[512];
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        const char *name = sp_type_get(fmts[f])->name;
        memset(x, 0, sizeof x);
        free(round_trip(fmts[f], x, y, 512));
        for (int i = 0; i < 512; i++) cr_assert(y[i] == 0.0f, "%s zero block element %d: %g", name, i, y[i]);
        for (int i = 0; i < 512; i++) x[i] = i < 256 ? 0.75f : -2.0f;
        free(round_trip(fmts[f], x, y, 512));
        for (int i = 0; i < 512; i++)
            cr_assert(fabsf(x[i] - y[i]) <= 0.01f * fabsf(x[i]), "%s constant block element %d: %g", name, i, y[i]);
    }
}

Test(quant, nan_and_inf_inputs_are_total) {
    /* garbage in, but no undefined behaviour (run under UBSan) and no out-of-range levels */
    const uint32_t fmts[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0, SP_TYPE_Q5_1,
                             SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    float x[256], y[256];
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        for (int i = 0; i < 256; i++) x[i] = (float)i - 100.0f;
        x[5] = NAN, x[40] = INFINITY, x[200] = -INFINITY;
        free(round_trip(fmts[f], x, y, 256));
    }
}

/* ---- a real file: stories260K in F32 and in Q8_0 (the same weights) ---------------------- */

Test(quant, stories260K_q8_0_matches_its_f32_source) {
    char err[256];
    sp_gguf *f32 = sp_gguf_open(tu_shared("models/stories260K.gguf"), err, sizeof err);
    cr_assert_not_null(f32, "%s", err);
    sp_gguf *q8 = sp_gguf_open(tu_shared("models/stories260K-q8_0.gguf"), err, sizeof err);
    cr_assert_not_null(q8, "%s", err);

    int checked = 0;
    int64_t elements = 0, same_bytes = 0, blocks = 0;
    for (uint64_t t = 0; t < sp_gguf_n_tensors(q8); t++) {
        const sp_gguf_tensor *tq = sp_gguf_tensor_at(q8, t);
        if (tq->type != SP_TYPE_Q8_0) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)tq->name.len, tq->name.ptr);
        const sp_gguf_tensor *tf = sp_gguf_find_tensor(f32, name);
        cr_assert_not_null(tf, "%s missing from the F32 file", name);
        cr_assert_eq(tf->type, SP_TYPE_F32, "%s", name);
        const int64_t row = tq->ne[0], rows = tq->ne[1] * tq->ne[2] * tq->ne[3];
        cr_assert_eq(tf->ne[0], row, "%s", name);
        const size_t qrow = sp_type_row_bytes(SP_TYPE_Q8_0, row);
        cr_assert_eq(tq->nbytes, qrow * (uint64_t)rows, "%s", name);

        float *src = malloc((size_t)row * sizeof *src), *deq = malloc((size_t)row * sizeof *deq);
        uint8_t *mine = malloc(qrow);
        cr_assert(src && deq && mine);
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *qdata = (const uint8_t *)tq->data + (size_t)r * qrow;
            memcpy(src, (const uint8_t *)tf->data + (size_t)r * row * 4, (size_t)row * 4);
            cr_assert(sp_dequant_row(SP_TYPE_Q8_0, qdata, deq, row));
            for (int64_t i = 0; i < row; i++) {
                uint16_t dh;
                memcpy(&dh, qdata + (i / 32) * 34, 2);
                const double d = half_value(dh);
                /* half a step, plus the f16 rounding of d over up to 127 levels */
                const double bound = d * (0.5 + 128 * 0x1p-11) + 1e-9;
                cr_assert(fabs((double)src[i] - deq[i]) <= bound, "%s row %lld element %lld: f32 %g q8_0 %g (d %g)",
                          name, (long long)r, (long long)i, src[i], deq[i], d);
            }
            /* our reference quantizer reproduces the file's blocks */
            cr_assert(sp_quant_row(SP_TYPE_Q8_0, src, mine, row));
            for (size_t b = 0; b < qrow / 34; b++) same_bytes += memcmp(mine + 34 * b, qdata + 34 * b, 34) == 0;
            blocks += (int64_t)(qrow / 34);
            elements += row;
        }
        free(src);
        free(deq);
        free(mine);
        checked++;
    }
    cr_assert_gt(checked, 0, "no Q8_0 tensor found");
    cr_log_info("stories260K: %d Q8_0 tensors, %lld elements; %lld of %lld blocks byte-identical on requantization",
                checked, (long long)elements, (long long)same_bytes, (long long)blocks);
    cr_assert(same_bytes * 1000 >= blocks * 999, "requantized blocks differ: %lld of %lld same",
              (long long)same_bytes, (long long)blocks);
    sp_gguf_close(q8);
    sp_gguf_close(f32);
}

/* The synthetic models (GGML-quantized N(0, 0.05) weights): dequantized, every format shows the
 * documented distribution, and quantizing the dequantized values again gives back the file's own
 * blocks: all of them for the 32-element formats, most for the K-quants (whose fitted scales are
 * not exactly idempotent). A misread layout or scale could do neither. */
Test(quant, synthetic_files_dequantize_and_requantize_to_themselves) {
    const struct {
        const char *file;
        uint32_t type;
        double min_same; /* fraction of blocks byte-identical after dequant + quant */
    } files[] = {
        {"tiny-llama-q8_0.gguf", SP_TYPE_Q8_0, 1.0}, {"tiny-llama-q4_0.gguf", SP_TYPE_Q4_0, 1.0},
        {"tiny-llama-q4_1.gguf", SP_TYPE_Q4_1, 1.0}, {"tiny-llama-q5_0.gguf", SP_TYPE_Q5_0, 1.0},
        {"tiny-llama-f16.gguf", SP_TYPE_F16, 1.0},   {"tiny-llama-bf16.gguf", SP_TYPE_BF16, 1.0},
        {"tiny-llama-q4_k.gguf", SP_TYPE_Q4_K, 0.99}, /* measured 0.999 */
        {"tiny-llama-q5_k.gguf", SP_TYPE_Q5_K, 0.85}, /* measured 0.91 */
        {"tiny-llama-q6_k.gguf", SP_TYPE_Q6_K, 0.75}, /* measured 0.80 */
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char path[512], err[256];
        snprintf(path, sizeof path, "models/synthetic/%s", files[k].file);
        sp_gguf *g = sp_gguf_open(tu_shared(path), err, sizeof err);
        cr_assert_not_null(g, "%s: %s", files[k].file, err);
        const sp_type_info *ti = sp_type_get(files[k].type);
        double sum = 0, sum2 = 0;
        int64_t n = 0, same = 0, blocks = 0;
        for (uint64_t t = 0; t < sp_gguf_n_tensors(g); t++) {
            const sp_gguf_tensor *T = sp_gguf_tensor_at(g, t);
            if (T->type == SP_TYPE_F32) continue; /* norms */
            cr_assert_eq(T->type, files[k].type, "%s: tensor %llu", files[k].file, (unsigned long long)t);
            const int64_t row = T->ne[0], rows = T->ne[1] * T->ne[2] * T->ne[3];
            const size_t rb = sp_type_row_bytes(T->type, row);
            float *y = malloc((size_t)row * sizeof *y);
            uint8_t *q = malloc(rb);
            cr_assert(y && q);
            for (int64_t r = 0; r < rows; r++) {
                const uint8_t *src = (const uint8_t *)T->data + (size_t)r * rb;
                cr_assert(sp_dequant_row(T->type, src, y, row));
                for (int64_t i = 0; i < row; i++) sum += y[i], sum2 += (double)y[i] * y[i];
                n += row;
                cr_assert(sp_quant_row(T->type, y, q, row));
                for (size_t b = 0; b < rb / ti->size; b++) same += memcmp(q + b * ti->size, src + b * ti->size, ti->size) == 0;
                blocks += (int64_t)(rb / ti->size);
            }
            free(y);
            free(q);
        }
        cr_assert_gt(n, 0, "%s: no quantized tensor", files[k].file);
        const double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
        cr_assert(fabs(mean) < 0.001 && sd > 0.0485 && sd < 0.0515, "%s: mean %g sd %g", files[k].file, mean, sd);
        cr_assert((double)same >= files[k].min_same * (double)blocks, "%s: %lld of %lld blocks requantize identically",
                  files[k].file, (long long)same, (long long)blocks);
        sp_gguf_close(g);
    }
}
