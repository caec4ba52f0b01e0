/* kernels/neon.c — the AArch64 NEON tables (sp_kernels_neon): one kernel set in three variants, each
 * entered only when the CPU reports its features (select.c reads AT_HWCAP / AT_HWCAP2):
 *   neon          ARMv8.0 Advanced SIMD: int8 dots by widening multiplies (smull, smlal) and pairwise
 *                 add-accumulate into int32 (sadalp);
 *   neon-dotprod  + SDOT (DotProd, ARMv8.2+): 4 int8 products per 32-bit lane, the activations
 *                 broadcast 4 bytes at a time by lane (sdot by element);
 *   neon-i8mm     + SMMLA (I8MM, ARMv8.6+): a 2 rows × 2 tokens × 8 quants product per instruction,
 *                 for GEMM of 2+ tokens (prefill); a lone token takes the SDOT path.
 * The extensions are enabled per function (target attributes), so the file needs no ISA flags and the
 * binary still runs on any ARMv8 CPU.
 *   matmul, packed weights (pack.h): the x86-shaped tiles are read as they are: a 128-bit register
 *     holds 4 rows × 4 consecutive quants (one row per 32-bit lane), two of them the 8 rows of a tile,
 *     so one broadcast of 4 activation bytes feeds 4 rows. Activations are quantized to int8 per
 *     32-element block exactly as sp_quant_act_ref; the integer dot per block is exact and
 *     accumulates in f32 as d_w · d_x · dot (+ m_w · d_x Σx for q4x8m). Tiles of 4 tokens share each
 *     unpacked weight tile; row groups are split over the pool.
 *   matmul, other formats: each weight row converted to f32 once, f32 FMA dot with every token.
 *   rmsnorm, softmax, swiglu, dot, axpy, attend, attend_paged: f32 vector code (a polynomial exp);
 *     rope, rope_cs: vector rotations rounded as the reference rounds them (bitwise equal results). */
#include "kernels/kernels.h"

#if defined(__aarch64__) && !defined(__AARCH64EB__)
#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/pack.h"
#include "kernels/types.h"

#define TOK_TILE 4 /* tokens sharing one unpacked weight tile */
#define PREFETCH_BYTES 2048
#define INLINE static inline __attribute__((always_inline))

/* GCC compiles the DotProd / I8MM intrinsics inside functions that enable the extension (its
 * arm_neon.h declares them for arch=armv8.2-a+dotprod / +i8mm); clang 14 declares them only when the
 * whole file targets the extension. When the build already targets one, no attribute is needed. */
#if defined(__ARM_FEATURE_DOTPROD)
#define HAVE_DOTPROD 1
#define TARGET_DOTPROD
#elif defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define HAVE_DOTPROD 1
#define TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#if defined(HAVE_DOTPROD) && defined(__ARM_FEATURE_MATMUL_INT8)
#define HAVE_I8MM 1
#define TARGET_I8MM
#elif defined(HAVE_DOTPROD) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define HAVE_I8MM 1
#define TARGET_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif

/* ---------------------------------------------------------------------------------------------
 * small vector helpers
 * ------------------------------------------------------------------------------------------- */

/* e^x, Cephes-style: 2^n · p(r) with r = x - n ln2, |rel err| ~ 2e-7 over the clamped range. */
INLINE float32x4_t exp_ps(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* 4 f16 (or bf16) values from unaligned bytes as f32 */
INLINE float32x4_t load_f16x4(const uint8_t *p) { return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p))); }
INLINE float32x4_t load_bf16x4(const uint8_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
}

/* ---------------------------------------------------------------------------------------------
 * activation quantization (same results as sp_quant_act_ref)
 * ------------------------------------------------------------------------------------------- */

/* maxnm and the round-to-nearest-even conversion are exactly fmaxf and nearbyintf of the reference. */
static void quant_act(const float *x, sp_block_q8a *out, int64_t n) {
    for (int64_t b = 0; b < n / SP_PACK_BLK; b++) {
        const float *v = x + b * SP_PACK_BLK;
        float32x4_t a[8];
        for (int i = 0; i < 8; i++) a[i] = vld1q_f32(v + 4 * i);
        float32x4_t m = vabsq_f32(a[0]);
        for (int i = 1; i < 8; i++) m = vmaxnmq_f32(m, vabsq_f32(a[i]));
        float amax = vmaxnmvq_f32(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        int32x4_t q[8], s = vdupq_n_s32(0);
        for (int i = 0; i < 8; i++) {
            q[i] = vcvtnq_s32_f32(vmulq_n_f32(a[i], id));
            s = vaddq_s32(s, q[i]);
        }
        int16x8_t h[4];
        for (int i = 0; i < 4; i++) h[i] = vcombine_s16(vqmovn_s32(q[2 * i]), vqmovn_s32(q[2 * i + 1]));
        vst1q_s8(out[b].qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(out[b].qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
        int32_t sum = vaddvq_s32(s);
        float d = amax / 127.0f;
        out[b].d = d;
        out[b].sum = sum;
        out[b].sum8 = 8 * sum;
        out[b].dsum = d * (float)sum;
    }
}

/* ---------------------------------------------------------------------------------------------
 * packed tiles: unpacking and the int8 dot of one tile per variant
 * ------------------------------------------------------------------------------------------- */

/* Tile b's 8 rows × 32 quants as int8: w[2g] holds rows 0-3 and w[2g + 1] rows 4-7 of quant group g
 * (quants 4g..4g+3 of each row, one row per 32-bit lane, as pack.h lays them out). Q4_0's nibbles
 * become q - 8 (its value is d (q - 8), exactly in int8); Q4_1's and Q4_K's stay 0..15 (value d q + m:
 * the min is added per block). dw, mw: the rows' scales and mins (rows 0-3, 4-7). */
INLINE void load_tile(uint32_t fmt, const void *tiles, int64_t b, int8x16_t w[16], float32x4_t dw[2],
                      float32x4_t mw[2]) {
    const uint16_t *d, *m = NULL;
    if (fmt == SP_PACK_Q8X8) {
        const sp_tile_q8x8 *t = (const sp_tile_q8x8 *)tiles + b;
        __builtin_prefetch((const char *)t->qs + PREFETCH_BYTES);
        __builtin_prefetch((const char *)t->qs + PREFETCH_BYTES + 64);
        for (int i = 0; i < 16; i++) w[i] = vld1q_s8(t->qs + 16 * i);
        d = t->d;
    } else {
        const uint8_t *qs;
        if (fmt == SP_PACK_Q4X8M) {
            const sp_tile_q4x8m *t = (const sp_tile_q4x8m *)tiles + b;
            qs = t->qs, d = t->d, m = t->m;
        } else {
            const sp_tile_q4x8 *t = (const sp_tile_q4x8 *)tiles + b;
            qs = t->qs, d = t->d;
        }
        __builtin_prefetch((const char *)qs + PREFETCH_BYTES); /* stream ahead (GEMV is memory-bound) */
        __builtin_prefetch((const char *)qs + PREFETCH_BYTES + 64);
        const uint8x16_t lo = vdupq_n_u8(0x0F);
        const int8x16_t off = vdupq_n_s8(fmt == SP_PACK_Q4X8 ? 8 : 0);
        for (int i = 0; i < 8; i++) { /* 16 bytes i = 2v + h: groups v (low nibbles), v + 4 (high) */
            uint8x16_t raw = vld1q_u8(qs + 16 * i);
            w[i] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, lo)), off);
            w[i + 8] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off);
        }
    }
    dw[0] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d)));
    dw[1] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + 4)));
    if (m) {
        mw[0] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(m)));
        mw[1] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(m + 4)));
    } else {
        mw[0] = mw[1] = vdupq_n_f32(0.0f);
    }
}

/* acc (8 rows: [0] rows 0-3, [1] rows 4-7) += d_w d_x · dot (+ m_w d_x Σx when the format has mins) */
INLINE void accum(bool with_min, const int32x4_t s[2], const float32x4_t dw[2], const float32x4_t mw[2],
                  const sp_block_q8a *xb, float32x4_t acc[2]) {
    for (int h = 0; h < 2; h++) {
        acc[h] = vfmaq_f32(acc[h], vcvtq_f32_s32(s[h]), vmulq_n_f32(dw[h], xb->d));
        if (with_min) acc[h] = vfmaq_n_f32(acc[h], mw[h], xb->dsum);
    }
}

/* ARMv8.0: smull of 2 rows × 4 quants by the broadcast 4 activation bytes, a second group added by
 * smlal (two products of at most 127 · 127 still fit int16), then sadalp into int32 pairs; the pairs
 * of each row are summed at the end. */
INLINE void dot_tile_base(const int8x16_t w[16], const int8_t *x, int32x4_t out[2]) {
    int32x4_t p[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int g = 0; g < 8; g += 2) {
        int32_t xa, xb;
        memcpy(&xa, x + 4 * g, sizeof xa);
        memcpy(&xb, x + 4 * g + 4, sizeof xb);
        int8x16_t ba = vreinterpretq_s8_s32(vdupq_n_s32(xa)), bb = vreinterpretq_s8_s32(vdupq_n_s32(xb));
        for (int h = 0; h < 2; h++) { /* rows 4h..4h+3: low half rows 4h, 4h+1; high half 4h+2, 4h+3 */
            const int8x16_t wa = w[2 * g + h], wb = w[2 * g + 2 + h];
            int16x8_t lo = vmlal_s8(vmull_s8(vget_low_s8(wa), vget_low_s8(ba)), vget_low_s8(wb), vget_low_s8(bb));
            int16x8_t hi = vmlal_high_s8(vmull_high_s8(wa, ba), wb, bb);
            p[2 * h] = vpadalq_s16(p[2 * h], lo);
            p[2 * h + 1] = vpadalq_s16(p[2 * h + 1], hi);
        }
    }
    out[0] = vpaddq_s32(p[0], p[1]);
    out[1] = vpaddq_s32(p[2], p[3]);
}

#ifdef HAVE_DOTPROD
/* SDOT by element: 32-bit lane g % 4 of the activation register x0 (groups 0-3) or x1 (groups 4-7)
 * is group g's 4 quants, multiplied with all 4 rows of w[2g] and w[2g + 1] in one instruction each.
 * Two accumulators per half shorten the dependency chains. */
TARGET_DOTPROD INLINE void dot_tile_sdot(const int8x16_t w[16], const int8_t *x, int32x4_t out[2]) {
    const int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0, b0 = a0, b1 = a0;
    a0 = vdotq_laneq_s32(a0, w[0], x0, 0);
    b0 = vdotq_laneq_s32(b0, w[1], x0, 0);
    a1 = vdotq_laneq_s32(a1, w[2], x0, 1);
    b1 = vdotq_laneq_s32(b1, w[3], x0, 1);
    a0 = vdotq_laneq_s32(a0, w[4], x0, 2);
    b0 = vdotq_laneq_s32(b0, w[5], x0, 2);
    a1 = vdotq_laneq_s32(a1, w[6], x0, 3);
    b1 = vdotq_laneq_s32(b1, w[7], x0, 3);
    a0 = vdotq_laneq_s32(a0, w[8], x1, 0);
    b0 = vdotq_laneq_s32(b0, w[9], x1, 0);
    a1 = vdotq_laneq_s32(a1, w[10], x1, 1);
    b1 = vdotq_laneq_s32(b1, w[11], x1, 1);
    a0 = vdotq_laneq_s32(a0, w[12], x1, 2);
    b0 = vdotq_laneq_s32(b0, w[13], x1, 2);
    a1 = vdotq_laneq_s32(a1, w[14], x1, 3);
    b1 = vdotq_laneq_s32(b1, w[15], x1, 3);
    out[0] = vaddq_s32(a0, a1);
    out[1] = vaddq_s32(b0, b1);
}
#endif

#ifdef HAVE_I8MM
/* SMMLA multiplies 2 × 8 int8 by 2 × 8 int8 (row-major, 8 bytes a row) into 2 × 2 int32. The tile
 * is re-paired for it: z[4s + k] holds rows 2k and 2k + 1, quants 8s..8s+7 of each (groups 2s, 2s+1
 * zipped lane by lane), to multiply with 2 tokens' quants 8s..8s+7. Done once per tile. */
INLINE void zip_tile(const int8x16_t w[16], int8x16_t z[16]) {
    for (int s = 0; s < 4; s++)
        for (int h = 0; h < 2; h++) { /* rows 4h..4h+3 of groups 2s and 2s + 1 */
            int32x4_t a = vreinterpretq_s32_s8(w[4 * s + h]), b = vreinterpretq_s32_s8(w[4 * s + 2 + h]);
            z[4 * s + 2 * h] = vreinterpretq_s8_s32(vzip1q_s32(a, b));
            z[4 * s + 2 * h + 1] = vreinterpretq_s8_s32(vzip2q_s32(a, b));
        }
}

/* Both tokens' dots for 8 rows: c[k] = [r2k·t0, r2k·t1, r2k+1·t0, r2k+1·t1], unzipped per token. */
TARGET_I8MM INLINE void dot_tile_mmla(const int8x16_t z[16], const int8_t *x0, const int8_t *x1, int32x4_t o0[2],
                                      int32x4_t o1[2]) {
    int32x4_t c[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int s = 0; s < 4; s++) {
        int8x16_t xs = vcombine_s8(vld1_s8(x0 + 8 * s), vld1_s8(x1 + 8 * s));
        for (int k = 0; k < 4; k++) c[k] = vmmlaq_s32(c[k], z[4 * s + k], xs);
    }
    o0[0] = vuzp1q_s32(c[0], c[1]);
    o1[0] = vuzp2q_s32(c[0], c[1]);
    o0[1] = vuzp1q_s32(c[2], c[3]);
    o1[1] = vuzp2q_s32(c[2], c[3]);
}
#endif

/* ---------------------------------------------------------------------------------------------
 * row-group kernels: 8 rows × T tokens over all nb tiles of one row group
 * ------------------------------------------------------------------------------------------- */

INLINE void zero_acc(int T, float32x4_t (*acc)[2]) {
    for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
}

INLINE void group_base(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa, int T,
                       float32x4_t (*acc)[2]) {
    zero_acc(T, acc);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w[16];
        float32x4_t dw[2], mw[2];
        load_tile(fmt, tiles, b, w, dw, mw);
        for (int t = 0; t < T; t++) {
            int32x4_t s[2];
            dot_tile_base(w, xa[t][b].qs, s);
            accum(fmt == SP_PACK_Q4X8M, s, dw, mw, &xa[t][b], acc[t]);
        }
    }
}

#ifdef HAVE_DOTPROD
TARGET_DOTPROD INLINE void group_sdot(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa,
                                      int T, float32x4_t (*acc)[2]) {
    zero_acc(T, acc);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w[16];
        float32x4_t dw[2], mw[2];
        load_tile(fmt, tiles, b, w, dw, mw);
        for (int t = 0; t < T; t++) {
            int32x4_t s[2];
            dot_tile_sdot(w, xa[t][b].qs, s);
            accum(fmt == SP_PACK_Q4X8M, s, dw, mw, &xa[t][b], acc[t]);
        }
    }
}
#endif

#ifdef HAVE_I8MM
/* T even: tokens in pairs */
TARGET_I8MM INLINE void group_mmla(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa,
                                   int T, float32x4_t (*acc)[2]) {
    zero_acc(T, acc);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w[16], z[16];
        float32x4_t dw[2], mw[2];
        load_tile(fmt, tiles, b, w, dw, mw);
        zip_tile(w, z);
        for (int t = 0; t < T; t += 2) {
            int32x4_t s0[2], s1[2];
            dot_tile_mmla(z, xa[t][b].qs, xa[t + 1][b].qs, s0, s1);
            accum(fmt == SP_PACK_Q4X8M, s0, dw, mw, &xa[t][b], acc[t]);
            accum(fmt == SP_PACK_Q4X8M, s1, dw, mw, &xa[t + 1][b], acc[t + 1]);
        }
    }
}
#endif

/* The entry points the driver calls per row group: one per variant and token count, the format
 * switch resolved outside the tile loop (each branch a specialized copy). */
typedef void (*group_fn)(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa,
                         float32x4_t (*acc)[2]);
#define GROUP_ENTRY(name, target, kernel, T)                                                              \
    target static void name(uint32_t fmt, const void *tiles, int64_t nb, const sp_block_q8a *const *xa,  \
                            float32x4_t (*acc)[2]) {                                                      \
        if (fmt == SP_PACK_Q4X8) kernel(SP_PACK_Q4X8, tiles, nb, xa, T, acc);                             \
        else if (fmt == SP_PACK_Q4X8M) kernel(SP_PACK_Q4X8M, tiles, nb, xa, T, acc);                      \
        else kernel(SP_PACK_Q8X8, tiles, nb, xa, T, acc);                                                 \
    }
GROUP_ENTRY(base_t1, , group_base, 1)
GROUP_ENTRY(base_t4, , group_base, TOK_TILE)
#ifdef HAVE_DOTPROD
GROUP_ENTRY(sdot_t1, TARGET_DOTPROD, group_sdot, 1)
GROUP_ENTRY(sdot_t4, TARGET_DOTPROD, group_sdot, TOK_TILE)
#endif
#ifdef HAVE_I8MM
GROUP_ENTRY(mmla_t2, TARGET_I8MM, group_mmla, 2)
GROUP_ENTRY(mmla_t4, TARGET_I8MM, group_mmla, TOK_TILE)
#endif

/* A variant's row-group kernels for 1, 2 (NULL: none) and TOK_TILE tokens. */
typedef struct { group_fn t1, t2, t4; } neon_mm;

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
    const neon_mm *mm;
} mm_job;

static void quant_worker(void *arg, int64_t t0, int64_t t1, int ith) {
    mm_job *j = arg;
    int64_t nb = j->w->n_in / SP_PACK_BLK;
    for (int64_t t = t0; t < t1; t++) quant_act(j->x + t * j->w->n_in, j->xa + t * nb, j->w->n_in);
}

static void store_rows(float *y, int64_t r0, int64_t n_out, const float32x4_t v[2]) {
    if (r0 + SP_PACK_ROWS <= n_out) {
        vst1q_f32(y + r0, v[0]);
        vst1q_f32(y + r0 + 4, v[1]);
        return;
    }
    float tmp[SP_PACK_ROWS];
    vst1q_f32(tmp, v[0]);
    vst1q_f32(tmp + 4, v[1]);
    for (int64_t r = r0; r < n_out; r++) y[r] = tmp[r - r0];
}

static size_t tile_bytes(uint32_t fmt) {
    return fmt == SP_PACK_Q4X8 ? sizeof(sp_tile_q4x8) : fmt == SP_PACK_Q4X8M ? sizeof(sp_tile_q4x8m) : sizeof(sp_tile_q8x8);
}

/* Row groups [g0, g1) for every token: tiles of TOK_TILE tokens (then 2, then 1) reuse each unpacked
 * weight tile; the group's weights (n_in / 32 tiles) stay in cache while the tokens stream past. */
static void packed_worker(void *arg, int64_t g0, int64_t g1, int ith) {
    const mm_job *j = arg;
    const sp_mat *w = j->w;
    int64_t nb = sp_pack_tiles(w);
    size_t tb = tile_bytes(w->pack_fmt);
    for (int64_t g = g0; g < g1; g++) {
        const void *tiles = (const uint8_t *)w->packed + (size_t)(g * nb) * tb;
        for (int64_t t = 0; t < j->n_tok;) {
            int64_t left = j->n_tok - t;
            int T = left >= TOK_TILE ? TOK_TILE : left >= 2 && j->mm->t2 ? 2 : 1;
            group_fn fn = T == TOK_TILE ? j->mm->t4 : T == 2 ? j->mm->t2 : j->mm->t1;
            const sp_block_q8a *xa[TOK_TILE];
            float32x4_t acc[TOK_TILE][2];
            for (int i = 0; i < T; i++) xa[i] = j->xa + (t + i) * nb;
            fn(w->pack_fmt, tiles, nb, xa, acc);
            for (int i = 0; i < T; i++) store_rows(j->y + (t + i) * w->n_out, g * SP_PACK_ROWS, w->n_out, acc[i]);
            t += T;
        }
    }
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
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
        for (; i + 4 <= n; i += 4) vst1q_f32(buf + i, load_f16x4(src + 2 * i));
        break;
    case SP_TYPE_BF16:
        for (; i + 4 <= n; i += 4) vst1q_f32(buf + i, load_bf16x4(src + 2 * i));
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
    const mm_job *j = arg;
    const sp_mat *w = j->w;
    float *buf = j->rows + (int64_t)ith * w->n_in;
    for (int64_t o = o0; o < o1; o++) {
        const float *row = row_f32(w, o, buf);
        for (int64_t t = 0; t < j->n_tok; t++) j->y[t * w->n_out + o] = dot_f32(row, j->x + t * w->n_in, w->n_in);
    }
}

/* Tokens per pass over the weights: their int8 activations (n_in / 32 blocks of 48 bytes each)
 * stay within ~192 KiB, so they sit in L2 while every row group of the matrix streams past. */
static int64_t token_block(const sp_mat *w) {
    int64_t per_tok = (w->n_in / SP_PACK_BLK) * (int64_t)sizeof(sp_block_q8a);
    int64_t tb = (192 * 1024 / per_tok) / TOK_TILE * TOK_TILE;
    return tb < TOK_TILE ? TOK_TILE : tb;
}

static void matmul(const neon_mm *mm, const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    mm_job j = {.w = w, .x = x, .y = y, .n_tok = n_tok, .mm = mm};
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

static const neon_mm mm_base = {.t1 = base_t1, .t2 = NULL, .t4 = base_t4};
static void neon_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    matmul(&mm_base, w, x, y, n_tok, pool);
}
#ifdef HAVE_DOTPROD
static const neon_mm mm_sdot = {.t1 = sdot_t1, .t2 = NULL, .t4 = sdot_t4};
static void sdot_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    matmul(&mm_sdot, w, x, y, n_tok, pool);
}
#endif
#ifdef HAVE_I8MM
static const neon_mm mm_mmla = {.t1 = sdot_t1, .t2 = mmla_t2, .t4 = mmla_t4};
static void mmla_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    matmul(&mm_mmla, w, x, y, n_tok, pool);
}
#endif

static bool neon_pack(sp_mat *w) { return sp_pack_mat(w); }

/* ---------------------------------------------------------------------------------------------
 * other ops
 * ------------------------------------------------------------------------------------------- */

static void neon_axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void neon_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        s0 = vfmaq_f32(s0, a, a);
        s1 = vfmaq_f32(s1, b, b);
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t a = vld1q_f32(x + i);
        s0 = vfmaq_f32(s0, a, a);
    }
    double ss = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
        if (w) v = vmulq_f32(v, vld1q_f32(w + i));
        vst1q_f32(y + i, v);
    }
    for (; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void neon_softmax(float *x, int64_t n) {
    float32x4_t vm = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vm = vmaxq_f32(vm, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vm);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float32x4_t vs = vdupq_n_f32(0.0f), vmx = vdupq_n_f32(mx);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(x + i), vmx));
        vst1q_f32(x + i, e);
        vs = vaddq_f32(vs, e);
    }
    double sum = vaddvq_f32(vs);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

static void neon_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vld1q_f32(gate + i);
        float32x4_t s = vdivq_f32(g, vaddq_f32(one, exp_ps(vnegq_f32(g))));
        vst1q_f32(out + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* out[off, off + 4 nv) = Σ_p s[p] v_p[off, off + 4 nv), accumulated in registers (nv a constant when
 * inlined); positions in blocks of blk (v_p = vb[p / blk] + (p % blk) · stride), summed in order. */
INLINE void weighted_sum(float *out, const float *s, const float *const *vb, int64_t blk, int64_t n_kv,
                         int64_t stride, int64_t off, int64_t nv) {
    float32x4_t acc[16];
    for (int64_t i = 0; i < nv; i++) acc[i] = vdupq_n_f32(0.0f);
    for (int64_t p0 = 0; p0 < n_kv; p0 += blk) {
        const float *v = vb[p0 / blk] + off;
        int64_t n = n_kv - p0 < blk ? n_kv - p0 : blk;
        for (int64_t p = 0; p < n; p++) {
            const float *vp = v + p * stride;
            for (int64_t i = 0; i < nv; i++) acc[i] = vfmaq_n_f32(acc[i], vld1q_f32(vp + 4 * i), s[p0 + p]);
        }
    }
    for (int64_t i = 0; i < nv; i++) vst1q_f32(out + off + 4 * i, acc[i]);
}

/* Scores of n positions k + p · stride into scores[0, n), 4 at a time (one pairwise reduction per 4);
 * a lone position is reduced in the same order, so a score never depends on its neighbours (nor on
 * where a block of the paged cache starts). hd a multiple of 4. */
static void scores_run(float *scores, const float *q, const float *k, int64_t n, int64_t hd, int64_t stride,
                       float scale) {
    int64_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const float *k0 = k + p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t i = 0; i < hd; i += 4) {
            float32x4_t qv = vld1q_f32(q + i);
            s0 = vfmaq_f32(s0, qv, vld1q_f32(k0 + i));
            s1 = vfmaq_f32(s1, qv, vld1q_f32(k1 + i));
            s2 = vfmaq_f32(s2, qv, vld1q_f32(k2 + i));
            s3 = vfmaq_f32(s3, qv, vld1q_f32(k3 + i));
        }
        /* lane j: (s_j[0] + s_j[1]) + (s_j[2] + s_j[3]) */
        float32x4_t r = vpaddq_f32(vpaddq_f32(s0, s1), vpaddq_f32(s2, s3));
        vst1q_f32(scores + p, vmulq_n_f32(r, scale));
    }
    for (; p < n; p++) {
        const float *k0 = k + p * stride;
        float32x4_t s0 = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < hd; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(q + i), vld1q_f32(k0 + i));
        float32x4_t h = vpaddq_f32(s0, s0);
        scores[p] = vgetq_lane_f32(vpaddq_f32(h, h), 0) * scale;
    }
}

/* Scores per block, the softmax, then the weighted sum of V in slabs of 64 dims kept in registers.
 * hd not a multiple of 4: plain dot products and axpy. */
static void neon_attend_paged(float *out, const float *q, const float *const *kb, const float *const *vb, int64_t blk,
                              int64_t n_kv, int64_t hd, int64_t stride, float scale, float *scores) {
    if (hd % 4) {
        for (int64_t p = 0; p < n_kv; p++) scores[p] = dot_f32(q, kb[p / blk] + (p % blk) * stride, hd) * scale;
        neon_softmax(scores, n_kv);
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int64_t p = 0; p < n_kv; p++) neon_axpy(out, scores[p], vb[p / blk] + (p % blk) * stride, hd);
        return;
    }
    for (int64_t p0 = 0; p0 < n_kv; p0 += blk)
        scores_run(scores + p0, q, kb[p0 / blk], n_kv - p0 < blk ? n_kv - p0 : blk, hd, stride, scale);
    neon_softmax(scores, n_kv);
    for (int64_t i0 = 0; i0 < hd; i0 += 64) {
        if (hd - i0 >= 64) weighted_sum(out, scores, vb, blk, n_kv, stride, i0, 16);
        else weighted_sum(out, scores, vb, blk, n_kv, stride, i0, (hd - i0) / 4);
    }
}

static void neon_attend(float *out, const float *q, const float *k, const float *v, int64_t n_kv, int64_t hd,
                        int64_t stride, float scale, float *scores) {
    neon_attend_paged(out, q, &k, &v, n_kv > 0 ? n_kv : 1, n_kv, hd, stride, scale, scores);
}

/* x0 c - x1 s and x0 s + x1 c as separately rounded products and sum (no fused multiply-add), so the
 * results are bitwise the reference's. */
static void neon_rope_cs(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs, bool neox) {
    int64_t half = n_rot / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x = v + h * head_dim;
        int64_t i = 0;
        if (neox) { /* pairs (i, i + half) */
            for (; i + 4 <= half; i += 4) {
                float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(cs + half + i);
                float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + half + i);
                vst1q_f32(x + i, vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s)));
                vst1q_f32(x + half + i, vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c)));
            }
        } else { /* adjacent pairs (2i, 2i + 1): de-interleaving loads */
            for (; i + 4 <= half; i += 4) {
                float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(cs + half + i);
                float32x4x2_t p = vld2q_f32(x + 2 * i), r;
                r.val[0] = vsubq_f32(vmulq_f32(p.val[0], c), vmulq_f32(p.val[1], s));
                r.val[1] = vaddq_f32(vmulq_f32(p.val[0], s), vmulq_f32(p.val[1], c));
                vst2q_f32(x + 2 * i, r);
            }
        }
        for (; i < half; i++) {
            float c = cs[i], s = cs[half + i];
            int64_t a = neox ? i : 2 * i;
            int64_t b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/* The angles once (exactly as the reference computes them), then the rotation. */
static void neon_rope(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, float theta_base,
                      bool neox, const float *freq_factors) {
    float cs[512];
    if (n_rot > 512) {
        sp_kernels_ref()->rope(v, n_heads, head_dim, n_rot, pos, theta_base, neox, freq_factors);
        return;
    }
    sp_rope_angles(cs, n_rot, pos, theta_base, freq_factors);
    neon_rope_cs(v, n_heads, head_dim, n_rot, cs, neox);
}

#define NEON_TABLE(var, table_name, mm_fn)                                                                 \
    static const sp_kernels var = {                                                                        \
        .name = table_name,                                                                                \
        .matmul = mm_fn,                                                                                   \
        .pack = neon_pack,                                                                                 \
        .rmsnorm = neon_rmsnorm,                                                                           \
        .rope = neon_rope,                                                                                 \
        .rope_cs = neon_rope_cs,                                                                           \
        .softmax = neon_softmax,                                                                           \
        .swiglu = neon_swiglu,                                                                             \
        .dot = dot_f32,                                                                                    \
        .axpy = neon_axpy,                                                                                 \
        .attend = neon_attend,                                                                             \
        .attend_paged = neon_attend_paged,                                                                 \
    };
NEON_TABLE(neon_table, "neon", neon_matmul)
#ifdef HAVE_DOTPROD
NEON_TABLE(sdot_table, "neon-dotprod", sdot_matmul)
#endif
#ifdef HAVE_I8MM
NEON_TABLE(mmla_table, "neon-i8mm", mmla_matmul)
#endif

/* The CPU check lives in select.c. NULL for a variant this build could not compile. */
const sp_kernels *sp_kernels_neon_table(int level) {
    switch (level) {
    case SP_NEON_BASE: return &neon_table;
#ifdef HAVE_DOTPROD
    case SP_NEON_DOTPROD: return &sdot_table;
#endif
#ifdef HAVE_I8MM
    case SP_NEON_I8MM: return &mmla_table;
#endif
    default: return NULL;
    }
}

#else /* not AArch64 */
const sp_kernels *sp_kernels_neon_table(int level) {
    (void)level;
    return NULL;
}
#endif
