/* kernels/avx2.c — the AVX2 + FMA + F16C table (sp_kernels_avx2). Built with per-file ISA flags
 * and only entered when the CPU reports those features, so the binary still runs elsewhere.
 *   matmul, packed weights (pack.h): activations quantized to int8 per 32-element block, integer
 *     dot products on 8 interleaved rows at once (u8 × s8 pairs via vpmaddubsw, summed to int32 via
 *     vpmaddwd), f32 accumulation of d_w · d_x · dot per block. Several tokens share each unpacked
 *     weight tile (GEMM for prefill); rows are split over the pool.
 *   matmul, other formats: each weight row converted to f32 once, f32 FMA dot with every token.
 *   rmsnorm, softmax, swiglu, dot, axpy: f32 vector code (a polynomial exp); rope: the reference. */
#include "kernels/kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/pack.h"
#include "kernels/types.h"

#define TOK_TILE 4 /* tokens sharing one unpacked weight tile */
#define PREFETCH_BYTES 2048

/* ---------------------------------------------------------------------------------------------
 * small vector helpers
 * ------------------------------------------------------------------------------------------- */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* e^x, Cephes-style: 2^n · p(r) with r = x - n ln2, |rel err| ~ 2e-7 over the clamped range. */
static inline __m256 exp_ps(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* ---------------------------------------------------------------------------------------------
 * activation quantization (same results as sp_quant_act_ref)
 * ------------------------------------------------------------------------------------------- */

static void quant_act(const float *x, sp_block_q8a *out, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / SP_PACK_BLK; b++) {
        const float *v = x + b * SP_PACK_BLK;
        __m256 a0 = _mm256_loadu_ps(v), a1 = _mm256_loadu_ps(v + 8);
        __m256 a2 = _mm256_loadu_ps(v + 16), a3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a0), _mm256_andnot_ps(sign, a1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, a2), _mm256_andnot_ps(sign, a3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(a0, id)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(a1, id));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(a2, id)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(a3, id));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        /* pack 32 int32 -> 32 int8 in order: packs interleave 128-bit lanes, a permute undoes it */
        __m256i p16a = _mm256_packs_epi32(i0, i1), p16b = _mm256_packs_epi32(i2, i3);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].qs, p8);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        int32_t sum = _mm_cvtsi128_si32(s4);
        float d = amax / 127.0f;
        out[b].d = d;
        out[b].sum = sum;
        out[b].sum8 = 8 * sum;
        out[b].dsum = d * (float)sum;
    }
}

/* ---------------------------------------------------------------------------------------------
 * packed GEMM micro-kernels: 8 rows × T tokens over all tiles of one row group
 * ------------------------------------------------------------------------------------------- */

/* q4x8 / q4x8m: unsigned nibbles q, value d_w (q - 8) or d_w q + m_w. Σ q x comes from maddubs
 * (each lane at most 2 · 15 · 127, so eight of them still fit int16); the offset is applied per
 * block from the activation block's sum: - 8 Σx in integers, or + m_w · d_x Σx in floats. */
static inline __attribute__((always_inline)) void
q4_kernel(const void *tiles, int64_t nb, bool with_min, const sp_block_q8a *const *xa, int T, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint16_t *d, *m = NULL;
        const uint8_t *qs;
        if (with_min) {
            const sp_tile_q4x8m *tl = (const sp_tile_q4x8m *)tiles + b;
            d = tl->d, m = tl->m, qs = tl->qs;
        } else {
            const sp_tile_q4x8 *tl = (const sp_tile_q4x8 *)tiles + b;
            d = tl->d, qs = tl->qs;
        }
        _mm_prefetch((const char *)qs + PREFETCH_BYTES, _MM_HINT_T0); /* stream ahead (GEMV is memory-bound) */
        _mm_prefetch((const char *)qs + PREFETCH_BYTES + 64, _MM_HINT_T0);
        __m256i w[8];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * v));
            w[v] = _mm256_and_si256(raw, m4);
            w[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
        __m256 mw = with_min ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)m)) : _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const sp_block_q8a *xb = &xa[t][b];
            __m256i s = _mm256_maddubs_epi16(w[0], bcast4(xb->qs));
#pragma GCC unroll 8
            for (int g = 1; g < 8; g++) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[g], bcast4(xb->qs + 4 * g)));
            __m256i si = _mm256_madd_epi16(s, ones);
            if (!with_min) si = _mm256_sub_epi32(si, _mm256_set1_epi32(xb->sum8));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(dw, _mm256_set1_ps(xb->d)), acc[t]);
            if (with_min) acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb->dsum), acc[t]);
        }
    }
}

/* q8x8: signed int8 both sides; maddubs needs one unsigned operand, so |x| · sign(x) w (llama.cpp's
 * trick); each product pair is at most 2 · 127 · 127, so every group widens to int32 at once. */
static inline __attribute__((always_inline)) void
q8x8_kernel(const sp_tile_q8x8 *tiles, int64_t nb, const sp_block_q8a *const *xa, int T, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const sp_tile_q8x8 *tl = &tiles[b];
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tl->d));
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const sp_block_q8a *xb = &xa[t][b];
            __m256i si = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i w = _mm256_loadu_si256((const __m256i *)(tl->qs + 32 * g));
                __m256i x = bcast4(xb->qs + 4 * g);
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
                si = _mm256_add_epi32(si, _mm256_madd_epi16(p, ones));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(dw, _mm256_set1_ps(xb->d)), acc[t]);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * matmul drivers
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const sp_mat *w;
    const float *x;
    float *y;
    int64_t n_tok;
    sp_block_q8a *xa; /* [n_tok][n_in / 32] */
    float *rows;      /* fallback: one f32 row per thread */
    sp_pool *pool;
} mm_job;

static void quant_worker(void *arg, int64_t t0, int64_t t1, int ith) {
    mm_job *j = arg;
    int64_t nb = j->w->n_in / SP_PACK_BLK;
    for (int64_t t = t0; t < t1; t++) quant_act(j->x + t * j->w->n_in, j->xa + t * nb, j->w->n_in);
}

static void store_rows(float *y, int64_t r0, int64_t n_out, __m256 v) {
    if (r0 + SP_PACK_ROWS <= n_out) {
        _mm256_storeu_ps(y + r0, v);
        return;
    }
    float tmp[SP_PACK_ROWS];
    _mm256_storeu_ps(tmp, v);
    for (int64_t r = r0; r < n_out; r++) y[r] = tmp[r - r0];
}

/* 8 rows × T tokens of a packed matrix: the format switch is resolved at compile time. */
static inline __attribute__((always_inline)) void
packed_tile(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa, int T, __m256 *acc) {
    if (fmt == SP_PACK_Q4X8) q4_kernel(tiles, nb, false, xa, T, acc);
    else if (fmt == SP_PACK_Q4X8M) q4_kernel(tiles, nb, true, xa, T, acc);
    else q8x8_kernel(tiles, nb, xa, T, acc);
}

static size_t tile_bytes(uint32_t fmt) {
    return fmt == SP_PACK_Q4X8 ? sizeof(sp_tile_q4x8) : fmt == SP_PACK_Q4X8M ? sizeof(sp_tile_q4x8m) : sizeof(sp_tile_q8x8);
}

/* Row groups [g0, g1) for every token: tiles of TOK_TILE tokens reuse each unpacked weight tile;
 * the group's weights (n_in / 32 tiles) stay in cache while the tokens stream past. */
static inline __attribute__((always_inline)) void
packed_rows(const mm_job *j, uint32_t fmt, int64_t g0, int64_t g1) {
    const sp_mat *w = j->w;
    int64_t nb = sp_pack_tiles(w);
    for (int64_t g = g0; g < g1; g++) {
        const void *tiles = (const uint8_t *)w->packed + (size_t)(g * nb) * tile_bytes(fmt);
        int64_t t = 0;
        for (; t + TOK_TILE <= j->n_tok; t += TOK_TILE) {
            const sp_block_q8a *xa[TOK_TILE];
            __m256 acc[TOK_TILE];
            for (int i = 0; i < TOK_TILE; i++) xa[i] = j->xa + (t + i) * nb;
            packed_tile(fmt, tiles, nb, xa, TOK_TILE, acc);
            for (int i = 0; i < TOK_TILE; i++) store_rows(j->y + (t + i) * w->n_out, g * SP_PACK_ROWS, w->n_out, acc[i]);
        }
        for (; t < j->n_tok; t++) {
            const sp_block_q8a *xa[1] = {j->xa + t * nb};
            __m256 acc[1];
            packed_tile(fmt, tiles, nb, xa, 1, acc);
            store_rows(j->y + t * w->n_out, g * SP_PACK_ROWS, w->n_out, acc[0]);
        }
    }
}

static void packed_worker(void *arg, int64_t g0, int64_t g1, int ith) {
    mm_job *j = arg;
    switch (j->w->pack_fmt) {
    case SP_PACK_Q4X8: packed_rows(j, SP_PACK_Q4X8, g0, g1); break;
    case SP_PACK_Q4X8M: packed_rows(j, SP_PACK_Q4X8M, g0, g1); break;
    default: packed_rows(j, SP_PACK_Q8X8, g0, g1); break;
    }
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Weight row `o` as f32: F32 in place, F16 / BF16 converted with vector code, others dequantized. */
static const float *row_f32(const sp_mat *w, int64_t o, float *buf) {
    const uint8_t *src = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
    int64_t n = w->n_in, i = 0;
    switch (w->type) {
    case SP_TYPE_F32:
        if (((uintptr_t)src & 3) == 0) return (const float *)(const void *)src;
        memcpy(buf, src, (size_t)n * sizeof *buf);
        return buf;
    case SP_TYPE_F16:
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(buf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
        break;
    case SP_TYPE_BF16:
        for (; i + 8 <= n; i += 8) {
            __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
            _mm256_storeu_ps(buf + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
        }
        break;
    default:
        if (!sp_dequant_row(w->type, src, buf, n)) abort();
        return buf;
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        buf[i] = w->type == SP_TYPE_F16 ? sp_f16_to_f32(h) : sp_bf16_to_f32(h);
    }
    return buf;
}

static void f32_worker(void *arg, int64_t o0, int64_t o1, int ith) {
    mm_job *j = arg;
    const sp_mat *w = j->w;
    float *buf = j->rows + (int64_t)ith * w->n_in;
    for (int64_t o = o0; o < o1; o++) {
        const float *row = row_f32(w, o, buf);
        for (int64_t t = 0; t < j->n_tok; t++) j->y[t * w->n_out + o] = dot_f32(row, j->x + t * w->n_in, w->n_in);
    }
}

/* Tokens per pass over the weights: their int8 activations (n_in / 32 blocks of 40 bytes each)
 * stay within ~192 KiB, so they sit in L2 while every row group of the matrix streams past. */
static int64_t token_block(const sp_mat *w) {
    int64_t per_tok = (w->n_in / SP_PACK_BLK) * (int64_t)sizeof(sp_block_q8a);
    int64_t tb = (192 * 1024 / per_tok) / TOK_TILE * TOK_TILE;
    return tb < TOK_TILE ? TOK_TILE : tb;
}

static void avx2_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    mm_job j = {.w = w, .x = x, .y = y, .n_tok = n_tok, .pool = pool};
    if (w->packed && (w->pack_fmt == SP_PACK_Q4X8 || w->pack_fmt == SP_PACK_Q4X8M || w->pack_fmt == SP_PACK_Q8X8)) {
        int64_t nb = w->n_in / SP_PACK_BLK;
        sp_block_q8a *xa = sp_pool_scratch(pool, (size_t)n_tok * (size_t)nb * sizeof *xa);
        if (!xa) abort();
        j.xa = xa;
        if (n_tok > 1) sp_pool_for(pool, n_tok, 1, quant_worker, &j);
        else quant_worker(&j, 0, 1, 0);
        int64_t tb = token_block(w);
        for (int64_t t0 = 0; t0 < n_tok; t0 += tb) { /* cache tiling: a token block at a time */
            j.n_tok = n_tok - t0 < tb ? n_tok - t0 : tb;
            j.xa = xa + t0 * nb;
            j.y = y + t0 * w->n_out;
            sp_pool_for(pool, sp_pack_groups(w), 0, packed_worker, &j);
        }
        sp_pool_scratch_done(pool, xa);
    } else {
        j.rows = sp_pool_scratch(pool, (size_t)sp_pool_size(pool) * (size_t)w->n_in * sizeof(float));
        if (!j.rows) abort();
        sp_pool_for(pool, w->n_out, 0, f32_worker, &j);
        sp_pool_scratch_done(pool, j.rows);
    }
}

/* Several packed matrices with the same input: units are the row groups of all of them, in order. */
#define MM_MULTI_MAX 4
typedef struct {
    mm_job jobs[MM_MULTI_MAX];
    int64_t start[MM_MULTI_MAX + 1]; /* first unit of each matrix */
    int n;
} mm_multi;

static void multi_worker(void *arg, int64_t u0, int64_t u1, int ith) {
    mm_multi *mm = arg;
    for (int i = 0; i < mm->n; i++) {
        int64_t a = u0 > mm->start[i] ? u0 : mm->start[i], b = u1 < mm->start[i + 1] ? u1 : mm->start[i + 1];
        if (a < b) packed_worker(&mm->jobs[i], a - mm->start[i], b - mm->start[i], ith);
    }
}

static bool packed_fmt(const sp_mat *w) {
    return w->packed && (w->pack_fmt == SP_PACK_Q4X8 || w->pack_fmt == SP_PACK_Q4X8M || w->pack_fmt == SP_PACK_Q8X8);
}

static void avx2_matmul_multi(const sp_mat *const *w, float *const *y, int n, const float *x, int64_t n_tok, sp_pool *pool) {
    bool fused = n >= 1 && n <= MM_MULTI_MAX;
    for (int i = 0; fused && i < n; i++) fused = packed_fmt(w[i]) && w[i]->n_in == w[0]->n_in;
    if (!fused) {
        for (int i = 0; i < n; i++) avx2_matmul(w[i], x, y[i], n_tok, pool);
        return;
    }
    int64_t nb = w[0]->n_in / SP_PACK_BLK;
    sp_block_q8a *xa = sp_pool_scratch(pool, (size_t)n_tok * (size_t)nb * sizeof *xa);
    if (!xa) abort();
    mm_job q = {.w = w[0], .x = x, .n_tok = n_tok, .xa = xa, .pool = pool};
    if (n_tok > 1) sp_pool_for(pool, n_tok, 1, quant_worker, &q);
    else quant_worker(&q, 0, 1, 0);
    mm_multi mm = {.n = n};
    for (int i = 0; i < n; i++) mm.start[i + 1] = mm.start[i] + sp_pack_groups(w[i]);
    int64_t tb = token_block(w[0]);
    for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
        for (int i = 0; i < n; i++)
            mm.jobs[i] = (mm_job){.w = w[i], .x = x, .y = y[i] + t0 * w[i]->n_out, .n_tok = n_tok - t0 < tb ? n_tok - t0 : tb,
                                  .xa = xa + t0 * nb, .pool = pool};
        sp_pool_for(pool, mm.start[n], 0, multi_worker, &mm);
    }
    sp_pool_scratch_done(pool, xa);
}

static bool avx2_pack(sp_mat *w) { return sp_pack_mat(w); }

/* ---------------------------------------------------------------------------------------------
 * other ops
 * ------------------------------------------------------------------------------------------- */

static void avx2_axpy(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void avx2_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        s = _mm256_fmadd_ps(v, v, s);
    }
    double ss = hsum_ps(s);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void avx2_softmax(float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = _mm_cvtss_f32(m4);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    __m256 vmx = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    double sum = hsum_ps(vs);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (; i < n; i++) x[i] *= inv;
}

static void avx2_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp_ps(_mm256_xor_ps(g, sign));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* out = Σ_p s[p] v_p over nv 8-float vectors, accumulated in registers (nv a constant when inlined);
 * positions in blocks of blk (vb[p / blk] + (p % blk) · stride). */
static inline __attribute__((always_inline)) void
weighted_sum(float *out, const float *s, const float *const *vb, int64_t blk, int64_t n_kv, int64_t stride, int64_t nv) {
    __m256 acc[16];
    for (int64_t i = 0; i < nv; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t p0 = 0; p0 < n_kv; p0 += blk) {
        const float *v = vb[p0 / blk];
        int64_t n = n_kv - p0 < blk ? n_kv - p0 : blk;
        for (int64_t p = 0; p < n; p++) {
            __m256 sp = _mm256_set1_ps(s[p0 + p]);
            const float *vp = v + p * stride;
            for (int64_t i = 0; i < nv; i++) acc[i] = _mm256_fmadd_ps(sp, _mm256_loadu_ps(vp + 8 * i), acc[i]);
        }
    }
    for (int64_t i = 0; i < nv; i++) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

/* Scores of n positions k + p · stride into scores[0, n), 4 at a time (one horizontal reduction per 4). */
static void scores_run(float *scores, const float *q, const float *k, int64_t n, int64_t hd, int64_t stride, float scale) {
    int64_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const float *k0 = k + p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (int64_t i = 0; i < hd; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), s0);
            s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), s1);
            s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), s2);
            s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), s3);
        }
        /* transpose-reduce: 4 vectors -> 4 sums */
        __m256 h01 = _mm256_hadd_ps(s0, s1), h23 = _mm256_hadd_ps(s2, s3);
        __m256 h = _mm256_hadd_ps(h01, h23);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(scores + p, _mm_mul_ps(r, _mm_set1_ps(scale)));
    }
    for (; p < n; p++) {
        /* the same reduction as a group of 4, so a position's score never depends on its neighbours */
        __m256 s0 = _mm256_setzero_ps();
        const float *k0 = k + p * stride;
        for (int64_t i = 0; i < hd; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k0 + i), s0);
        __m256 h = _mm256_hadd_ps(s0, s0);
        h = _mm256_hadd_ps(h, h);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        scores[p] = _mm_cvtss_f32(r) * scale;
    }
}

/* Scores per block, the softmax, then the weighted sum of V kept in registers for head dims up to
 * 128 (the common 64 and 128), else through memory. hd not a multiple of 8: plain dot products. */
static void avx2_attend_paged(float *out, const float *q, const float *const *kb, const float *const *vb, int64_t blk,
                              int64_t n_kv, int64_t hd, int64_t stride, float scale, float *scores) {
    if (hd % 8) {
        for (int64_t p = 0; p < n_kv; p++) scores[p] = dot_f32(q, kb[p / blk] + (p % blk) * stride, hd) * scale;
        avx2_softmax(scores, n_kv);
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int64_t p = 0; p < n_kv; p++) avx2_axpy(out, scores[p], vb[p / blk] + (p % blk) * stride, hd);
        return;
    }
    for (int64_t p0 = 0; p0 < n_kv; p0 += blk)
        scores_run(scores + p0, q, kb[p0 / blk], n_kv - p0 < blk ? n_kv - p0 : blk, hd, stride, scale);
    avx2_softmax(scores, n_kv);
    if (hd > 128) {
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int64_t p = 0; p < n_kv; p++) avx2_axpy(out, scores[p], vb[p / blk] + (p % blk) * stride, hd);
        return;
    }
    if (hd == 64) weighted_sum(out, scores, vb, blk, n_kv, stride, 8);
    else if (hd == 128) weighted_sum(out, scores, vb, blk, n_kv, stride, 16);
    else weighted_sum(out, scores, vb, blk, n_kv, stride, hd / 8);
}

static void avx2_attend(float *out, const float *q, const float *k, const float *v, int64_t n_kv, int64_t hd,
                        int64_t stride, float scale, float *scores) {
    avx2_attend_paged(out, q, &k, &v, n_kv > 0 ? n_kv : 1, n_kv, hd, stride, scale, scores);
}

static void ref_rope(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos,
                     float theta_base, bool neox, const float *freq_factors) {
    sp_kernels_ref()->rope(v, n_heads, head_dim, n_rot, pos, theta_base, neox, freq_factors);
}

static void ref_rope_cs_fwd(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs, bool neox) {
    sp_kernels_ref()->rope_cs(v, n_heads, head_dim, n_rot, cs, neox); /* elementwise, ~n_heads·n_rot flops */
}

static const sp_kernels avx2_table = {
    .name = "avx2",
    .matmul = avx2_matmul,
    .matmul_multi = avx2_matmul_multi,
    .pack = avx2_pack,
    .rmsnorm = avx2_rmsnorm,
    .rope = ref_rope,
    .rope_cs = ref_rope_cs_fwd,
    .softmax = avx2_softmax,
    .swiglu = avx2_swiglu,
    .dot = dot_f32,
    .axpy = avx2_axpy,
    .attend = avx2_attend,
    .attend_paged = avx2_attend_paged,
};

/* The CPU check lives in select.c (built without AVX2 flags). */
const sp_kernels *sp_kernels_avx2_table(void) { return &avx2_table; }

#else /* no AVX2 in this build */
const sp_kernels *sp_kernels_avx2_table(void) { return NULL; }
#endif
