/* tests/unit/test_kernels.c — every kernel table compiled here (and usable on this CPU: avx2 on
 * x86-64; neon, neon-dotprod and neon-i8mm on AArch64, each variant the CPU has) against the scalar
 * reference: matmul for every weight format over many shapes (odd row counts, n_in from 32 to
 * thousands, 256-multiples for K-quants, 1 to many tokens, 1 to 4 threads), the packed layouts'
 * contents, the other ops, the thread pool and the table selection.
 * Matmul tolerances: a packed (int8-activation) matmul must equal, up to f32 rounding, the exact dot
 * of the weights it packed with the activations as sp_quant_act_ref quantizes them; and against the
 * f32 reference it must stay within the bound int8 rounding allows: per block, half a step of the
 * activation (max|x| / 254) times Σ|w|, plus the weights' own repacking error times Σ|x|. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "kernels/kernels.h"
#include "kernels/pack.h"
#include "kernels/types.h"
#include "testutil.h"

/* ---- helpers ---- */

static uint64_t rng_state = 1;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static const sp_kernels *fast_tables[4];
static int n_fast_tables(void) {
    int n = 0;
    if (sp_kernels_avx2()) fast_tables[n++] = sp_kernels_avx2();
    for (int l = SP_NEON_BASE; l <= SP_NEON_I8MM; l++)
        if (sp_kernels_neon_at(l)) fast_tables[n++] = sp_kernels_neon_at(l);
    return n;
}

/* A random n_out × n_in matrix of `type` (weights ~ 0.05 scale, some rows with larger outliers). */
static sp_mat make_mat(uint32_t type, int64_t n_in, int64_t n_out) {
    size_t rb = sp_type_row_bytes(type, n_in);
    cr_assert(rb > 0, "type %u n_in %lld", type, (long long)n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof *row);
    for (int64_t o = 0; o < n_out; o++) {
        float amp = o % 5 == 3 ? 0.3f : 0.05f;
        for (int64_t i = 0; i < n_in; i++) row[i] = amp * frand();
        cr_assert(sp_quant_row(type, row, data + (size_t)o * rb, n_in), "quantize type %u", type);
    }
    free(row);
    return (sp_mat){.type = type, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data};
}

static void free_mat(sp_mat *w) {
    sp_mat_unpack(w);
    free((void *)w->data);
}

static float *make_x(int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = frand() * (i % 37 == 5 ? 4.0f : 1.0f);
    return x;
}

/* Rows of the matrix as f32: as packed (if packed) or as dequantized. */
static float *mat_f32(const sp_mat *w, bool packed) {
    float *m = malloc((size_t)(w->n_in * w->n_out) * sizeof *m);
    for (int64_t o = 0; o < w->n_out; o++)
        cr_assert(packed ? sp_pack_row_f32(w, o, m + o * w->n_in) : sp_mat_row_f32(w, o, m + o * w->n_in));
    return m;
}

static const char *tname(uint32_t type) { return sp_type_get(type)->name; }

/* One matmul case: table k, format, shape, tokens, threads. */
static void check_matmul(const sp_kernels *k, uint32_t type, int64_t n_in, int64_t n_out, int64_t n_tok, int threads) {
    sp_mat w = make_mat(type, n_in, n_out);
    bool packed = k->pack && k->pack(&w);
    float *x = make_x(n_in * n_tok);
    float *y = malloc((size_t)(n_out * n_tok) * sizeof *y);
    sp_pool *pool = sp_pool_new(threads);
    k->matmul(&w, x, y, n_tok, pool);
    float *wd = mat_f32(&w, false);               /* the file's weights */
    float *wp = packed ? mat_f32(&w, true) : wd;  /* the weights the fast path holds */
    sp_block_q8a *xa = malloc((size_t)(n_in / 32 + 1) * sizeof *xa);
    float *xq = malloc((size_t)n_in * sizeof *xq);
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xt = x + t * n_in;
        if (packed) {
            sp_quant_act_ref(xt, xa, n_in);
            for (int64_t i = 0; i < n_in; i++) xq[i] = xa[i / 32].d * (float)xa[i / 32].qs[i % 32];
        }
        for (int64_t o = 0; o < n_out; o++) {
            const float *rd = wd + o * n_in, *rp = wp + o * n_in;
            double exact = 0, mag = 0, f32ref = 0, bound = 0;
            for (int64_t i = 0; i < n_in; i++) {
                double xi = packed ? xq[i] : xt[i];
                exact += (double)rp[i] * xi;
                mag += fabs((double)rp[i] * xi);
                f32ref += (double)rd[i] * xt[i];
                bound += fabs(rp[i] - rd[i]) * fabs(xt[i]);                      /* weight repacking */
                if (packed) bound += fabs((double)rp[i]) * (xa[i / 32].d * 0.5);  /* activation rounding */
            }
            double got = y[t * n_out + o];
            cr_assert(fabs(got - exact) <= 2e-6 * mag + 1e-6,
                      "%s %s n_in %lld n_out %lld tok %lld/%lld thr %d row %lld: %.9g vs exact %.9g (mag %.3g)",
                      k->name, tname(type), (long long)n_in, (long long)n_out, (long long)t, (long long)n_tok,
                      threads, (long long)o, got, exact, mag);
            cr_assert(fabs(got - f32ref) <= bound * 1.01 + 2e-6 * mag + 1e-6,
                      "%s %s n_in %lld n_out %lld row %lld: %.9g vs f32 ref %.9g beyond the int8 bound %.3g",
                      k->name, tname(type), (long long)n_in, (long long)n_out, (long long)o, got, f32ref, bound);
        }
    }
    sp_pool_free(pool);
    if (wp != wd) free(wp);
    free(wd); free(xa); free(xq); free(x); free(y);
    free_mat(&w);
}

static const uint32_t all_types[] = {SP_TYPE_F32, SP_TYPE_F16, SP_TYPE_BF16, SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1,
                                     SP_TYPE_Q5_0, SP_TYPE_Q5_1, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static bool is_k(uint32_t t) { return sp_type_get(t)->blck == 256; }

/* ---- matmul ---- */

Test(kernels, matmul_every_format_many_shapes) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    static const int64_t n_ins[] = {32, 64, 96, 256, 288, 512, 896, 1280, 4864};
    static const int64_t shapes[][2] = {{1, 1}, {3, 1}, {7, 2}, {8, 1}, {9, 3}, {17, 4}, {33, 5}, {64, 9}, {13, 33}};
    int threads = 0;
    for (int ti = 0; ti < nt; ti++)
        for (size_t f = 0; f < N_TYPES; f++)
            for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
                if (is_k(all_types[f]) && n_ins[a] % 256) continue;
                for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                    if (n_ins[a] >= 1280 && s % 3) continue; /* the big ones: a third of the shapes */
                    check_matmul(fast_tables[ti], all_types[f], n_ins[a], shapes[s][0], shapes[s][1], threads % 4 + 1);
                    threads++;
                }
            }
}

/* A fused pass over several matrices sharing their input gives, bit for bit, what separate matmuls
 * give: mixed formats (a Q4_K_M-style layer: Q4_K, Q6_K, Q5_0), odd row counts, 1 to 9 tokens. */
Test(kernels, matmul_multi_equals_separate_matmuls) {
    int nt = n_fast_tables();
    int tested = 0;
    for (int ti = 0; ti < nt; ti++) {
        const sp_kernels *k = fast_tables[ti];
        if (!k->matmul_multi) continue;
        tested++;
        const uint32_t types[][3] = {{SP_TYPE_Q4_K, SP_TYPE_Q6_K, SP_TYPE_Q5_0}, {SP_TYPE_Q4_0, SP_TYPE_Q4_0, SP_TYPE_Q8_0},
                                     {SP_TYPE_Q4_0, SP_TYPE_F32, SP_TYPE_Q4_1}};
        const int64_t outs[3] = {77, 16, 41};
        for (size_t c = 0; c < sizeof types / sizeof types[0]; c++) {
            for (int64_t n_tok = 1; n_tok <= 9; n_tok += 4) {
                sp_mat w[3];
                const sp_mat *wp[3];
                float *ya[3], *yb[3];
                float *x = make_x(256 * n_tok);
                for (int i = 0; i < 3; i++) {
                    w[i] = make_mat(types[c][i], 256, outs[i]);
                    if (k->pack) k->pack(&w[i]);
                    wp[i] = &w[i];
                    ya[i] = malloc((size_t)(outs[i] * n_tok) * sizeof(float));
                    yb[i] = malloc((size_t)(outs[i] * n_tok) * sizeof(float));
                }
                sp_pool *pool = sp_pool_new(3);
                k->matmul_multi(wp, ya, 3, x, n_tok, pool);
                for (int i = 0; i < 3; i++) k->matmul(&w[i], x, yb[i], n_tok, pool);
                for (int i = 0; i < 3; i++) {
                    cr_expect(!memcmp(ya[i], yb[i], (size_t)(outs[i] * n_tok) * sizeof(float)), "%s case %zu mat %d tok %lld",
                              k->name, c, i, (long long)n_tok);
                    free(ya[i]), free(yb[i]);
                    free_mat(&w[i]);
                }
                sp_pool_free(pool);
                free(x);
            }
        }
    }
    cr_log_info("matmul_multi tested on %d table(s)", tested);
}

Test(kernels, matmul_every_thread_count) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    for (int ti = 0; ti < nt; ti++)
        for (size_t f = 0; f < N_TYPES; f++)
            for (int thr = 1; thr <= 4; thr++) {
                check_matmul(fast_tables[ti], all_types[f], 512, 77, 1, thr);
                check_matmul(fast_tables[ti], all_types[f], 256, 41, 11, thr);
            }
}

Test(kernels, matmul_results_independent_of_threads) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    for (int ti = 0; ti < nt; ti++) {
        const sp_kernels *k = fast_tables[ti];
        sp_mat w = make_mat(SP_TYPE_Q4_0, 1024, 203);
        k->pack(&w);
        float *x = make_x(1024 * 7);
        float y1[203 * 7], yn[203 * 7];
        k->matmul(&w, x, y1, 7, NULL);
        for (int thr = 1; thr <= 4; thr++) {
            sp_pool *p = sp_pool_new(thr);
            for (int rep = 0; rep < 20; rep++) {
                k->matmul(&w, x, yn, 7, p);
                cr_assert(!memcmp(y1, yn, sizeof y1), "%s threads %d rep %d differ", k->name, thr, rep);
            }
            sp_pool_free(p);
        }
        free(x);
        free_mat(&w);
    }
}

Test(kernels, matmul_reference_unchanged_by_pool) {
    const sp_kernels *r = sp_kernels_ref();
    sp_mat w = make_mat(SP_TYPE_Q8_0, 64, 5);
    float *x = make_x(64 * 2);
    float y1[10], y2[10];
    r->matmul(&w, x, y1, 2, NULL);
    sp_pool *p = sp_pool_new(3);
    r->matmul(&w, x, y2, 2, p);
    sp_pool_free(p);
    cr_assert(!memcmp(y1, y2, sizeof y1));
    free(x);
    free_mat(&w);
}

/* ---- packing ---- */

/* Lossless formats repack exactly (Q4_K up to f16 rounding of d·scale); the requantized ones stay
 * within half an int8 step of each 32-element block. */
Test(kernels, packed_layouts_hold_the_weights) {
    for (size_t f = 0; f < N_TYPES; f++) {
        uint32_t t = all_types[f];
        sp_mat w = make_mat(t, 512, 19);
        if (!sp_pack_mat(&w)) {
            cr_assert(t == SP_TYPE_F32 || t == SP_TYPE_F16 || t == SP_TYPE_BF16, "%s not packed", tname(t));
            free_mat(&w);
            continue;
        }
        float *wd = mat_f32(&w, false), *wp = mat_f32(&w, true);
        bool lossless = t == SP_TYPE_Q4_0 || t == SP_TYPE_Q4_1 || t == SP_TYPE_Q8_0 || t == SP_TYPE_Q5_0;
        for (int64_t o = 0; o < w.n_out; o++)
            for (int64_t b = 0; b < 512 / 32; b++) {
                float amax = 0;
                for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(wd[o * 512 + b * 32 + i]));
                double tol = lossless ? 1e-6 * amax : t == SP_TYPE_Q4_K ? 2e-3 * amax : amax / 254.0 * 1.001 + 1e-9;
                for (int i = 0; i < 32; i++) {
                    int64_t k = o * 512 + b * 32 + i;
                    cr_assert(fabs(wp[k] - wd[k]) <= tol, "%s row %lld elem %lld: %g vs %g", tname(t), (long long)o,
                              (long long)(b * 32 + i), wp[k], wd[k]);
                }
            }
        free(wd); free(wp);
        free_mat(&w);
    }
}

Test(kernels, pack_rejects_what_it_cannot_lay_out) {
    sp_mat w = make_mat(SP_TYPE_F32, 40, 3); /* F32, and n_in not a multiple of 32 */
    cr_assert(!sp_pack_mat(&w));
    cr_assert_null(w.packed);
    free_mat(&w);
}

Test(kernels, activation_quantizer) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = i < 32 ? 0.0f : (float)(i - 48) * 0.25f;
    sp_block_q8a b[2];
    sp_quant_act_ref(x, b, 64);
    cr_assert_eq(b[0].d, 0.0f);
    cr_assert_eq(b[0].sum, 0);
    cr_assert_float_eq(b[1].d, 4.0f / 127.0f, 1e-9);
    cr_assert_eq(b[1].qs[0], -127);
    int s = 0;
    for (int i = 0; i < 32; i++) s += b[1].qs[i];
    cr_assert_eq(b[1].sum, s);
}

/* ---- other ops ---- */

static void check_close(const float *a, const float *b, int64_t n, double rel, const char *what) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i]));
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(a[i] - b[i]) <= rel * mx + 1e-30, "%s n %lld [%lld]: %.9g vs %.9g", what, (long long)n,
                  (long long)i, a[i], b[i]);
}

Test(kernels, other_ops_match_reference) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    const sp_kernels *r = sp_kernels_ref();
    static const int64_t ns[] = {1, 7, 8, 15, 31, 64, 257, 1000, 4864};
    for (int ti = 0; ti < nt; ti++) {
        const sp_kernels *k = fast_tables[ti];
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            int64_t n = ns[a];
            float *x = make_x(n), *w = make_x(n), *u = make_x(n);
            float *y1 = malloc((size_t)n * sizeof *y1), *y2 = malloc((size_t)n * sizeof *y2);
            for (int withw = 0; withw < 2; withw++) {
                r->rmsnorm(y1, x, withw ? w : NULL, n, 1e-6f);
                k->rmsnorm(y2, x, withw ? w : NULL, n, 1e-6f);
                check_close(y2, y1, n, 2e-6, "rmsnorm");
            }
            memcpy(y1, x, (size_t)n * sizeof *x); memcpy(y2, x, (size_t)n * sizeof *x);
            for (int64_t i = 0; i < n; i++) { y1[i] *= 30.0f; y2[i] *= 30.0f; } /* a wide range of exponents */
            r->softmax(y1, n);
            k->softmax(y2, n);
            check_close(y2, y1, n, 2e-6, "softmax");
            for (int64_t i = 0; i < n; i++) x[i] *= 12.0f;
            r->swiglu(y1, x, u, n);
            k->swiglu(y2, x, u, n);
            check_close(y2, y1, n, 2e-6, "swiglu");
            float d1 = r->dot(x, u, n), d2 = k->dot(x, u, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)x[i] * u[i]);
            cr_assert(fabs(d1 - d2) <= 1e-6 * mag, "dot n %lld: %g vs %g", (long long)n, d2, d1);
            memcpy(y1, u, (size_t)n * sizeof *u); memcpy(y2, u, (size_t)n * sizeof *u);
            r->axpy(y1, 0.37f, x, n);
            k->axpy(y2, 0.37f, x, n);
            check_close(y2, y1, n, 1e-6, "axpy");
            if (n % 64 == 0) {
                memcpy(y1, x, (size_t)n * sizeof *x); memcpy(y2, x, (size_t)n * sizeof *x);
                r->rope(y1, n / 64, 64, 64, 17, 10000.0f, a % 2, NULL);
                k->rope(y2, n / 64, 64, 64, 17, 10000.0f, a % 2, NULL);
                check_close(y2, y1, n, 1e-6, "rope");
                float cs[64];
                sp_rope_angles(cs, 64, 17, 10000.0f, NULL);
                memcpy(y2, x, (size_t)n * sizeof *x);
                k->rope_cs(y2, n / 64, 64, 64, cs, a % 2);
                cr_assert(!memcmp(y1, y2, (size_t)n * sizeof *x), "rope_cs differs from rope");
            }
            free(x); free(w); free(u); free(y1); free(y2);
        }
    }
}

Test(kernels, attend_matches_reference) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    const sp_kernels *r = sp_kernels_ref();
    static const int64_t hds[] = {8, 12, 32, 64, 128, 136};
    static const int64_t kvs[] = {1, 2, 3, 4, 5, 9, 64, 301};
    for (int ti = 0; ti < nt; ti++)
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof kvs / sizeof kvs[0]; b++) {
                int64_t hd = hds[a], n_kv = kvs[b], stride = hd * 3;
                float *q = make_x(hd), *kc = make_x(stride * n_kv), *vc = make_x(stride * n_kv);
                float o1[136], o2[136], *s = malloc((size_t)n_kv * sizeof *s);
                r->attend(o1, q, kc, vc, n_kv, hd, stride, 0.4f, s);
                fast_tables[ti]->attend(o2, q, kc, vc, n_kv, hd, stride, 0.4f, s);
                check_close(o2, o1, hd, 3e-6, "attend");
                free(q); free(kc); free(vc); free(s);
            }
}

/* attend_paged over a cache cut into blocks (each its own allocation) equals attend over the same rows,
 * bitwise, for every table with the slot: a position's score must not depend on where blocks start. */
Test(kernels, attend_paged_equals_attend) {
    const sp_kernels *tables[5] = {sp_kernels_ref()};
    int nt = 1 + n_fast_tables();
    for (int i = 1; i < nt; i++) tables[i] = fast_tables[i - 1];
    static const int64_t hds[] = {8, 12, 64, 128, 136};
    static const int64_t kvs[] = {1, 3, 4, 5, 17, 64, 301};
    static const int64_t blks[] = {1, 3, 4, 16, 64};
    for (int ti = 0; ti < nt; ti++) {
        const sp_kernels *k = tables[ti];
        if (!k->attend_paged) continue;
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof kvs / sizeof kvs[0]; b++)
                for (size_t c = 0; c < sizeof blks / sizeof blks[0]; c++) {
                    int64_t hd = hds[a], n_kv = kvs[b], blk = blks[c], stride = hd * 2, nblk = (n_kv + blk - 1) / blk;
                    float *q = make_x(hd), *kc = make_x(stride * n_kv), *vc = make_x(stride * n_kv);
                    const float **kb = malloc((size_t)nblk * sizeof *kb), **vb = malloc((size_t)nblk * sizeof *vb);
                    for (int64_t j = 0; j < nblk; j++) {
                        float *kj = malloc((size_t)(blk * stride) * sizeof *kj), *vj = malloc((size_t)(blk * stride) * sizeof *vj);
                        int64_t rows = n_kv - j * blk < blk ? n_kv - j * blk : blk;
                        memcpy(kj, kc + j * blk * stride, (size_t)(rows * stride) * sizeof *kj);
                        memcpy(vj, vc + j * blk * stride, (size_t)(rows * stride) * sizeof *vj);
                        kb[j] = kj, vb[j] = vj;
                    }
                    float o1[136], o2[136], *s = malloc((size_t)n_kv * sizeof *s);
                    k->attend(o1, q, kc, vc, n_kv, hd, stride, 0.3f, s);
                    k->attend_paged(o2, q, kb, vb, blk, n_kv, hd, stride, 0.3f, s);
                    cr_assert(!memcmp(o1, o2, (size_t)hd * sizeof *o1), "%s hd %lld n_kv %lld blk %lld: paged differs",
                              k->name, (long long)hd, (long long)n_kv, (long long)blk);
                    for (int64_t j = 0; j < nblk; j++) { free((void *)kb[j]); free((void *)vb[j]); }
                    free(kb); free(vb); free(q); free(kc); free(vc); free(s);
                }
    }
}

Test(kernels, softmax_extremes) {
    int nt = n_fast_tables();
    if (!nt) cr_skip_test("no fast table on this CPU");
    for (int ti = 0; ti < nt; ti++) {
        float x[20];
        for (int i = 0; i < 20; i++) x[i] = i == 3 ? 100.0f : -100.0f - (float)i * 10.0f;
        fast_tables[ti]->softmax(x, 20);
        cr_assert_float_eq(x[3], 1.0f, 1e-6, "%s", fast_tables[ti]->name);
        for (int i = 0; i < 20; i++) cr_assert(x[i] >= 0.0f && x[i] <= 1.0f && !isnan(x[i]), "%s", fast_tables[ti]->name);
    }
}

/* ---- pool ---- */

typedef struct { int *hits; int64_t n; } cover_job;
static void cover(void *arg, int64_t b, int64_t e, int ith) {
    cover_job *j = arg;
    (void)ith;
    for (int64_t i = b; i < e; i++) __atomic_add_fetch(&j->hits[i], 1, __ATOMIC_RELAXED);
}

Test(pool, every_unit_exactly_once) {
    for (int thr = 1; thr <= 4; thr++) {
        sp_pool *p = sp_pool_new(thr);
        cr_assert_not_null(p);
        cr_assert_eq(sp_pool_size(p), thr);
        static const int64_t ns[] = {1, 2, 3, 7, 64, 1000};
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (int64_t chunk = 0; chunk <= 3; chunk++)
                for (int rep = 0; rep < 50; rep++) {
                    int hits[1000] = {0};
                    cover_job j = {hits, ns[a]};
                    sp_pool_for(p, ns[a], chunk, cover, &j);
                    for (int64_t i = 0; i < ns[a]; i++) cr_assert_eq(hits[i], 1, "thr %d n %lld unit %lld", thr, (long long)ns[a], (long long)i);
                }
        sp_pool_free(p);
    }
    int hits[5] = {0};
    cover_job j = {hits, 5};
    sp_pool_for(NULL, 5, 0, cover, &j);
    for (int i = 0; i < 5; i++) cr_assert_eq(hits[i], 1);
}

typedef struct { int max_ith, nth; } ith_job;
static void note_ith(void *arg, int64_t b, int64_t e, int ith) {
    ith_job *j = arg;
    (void)b; (void)e;
    cr_assert(ith >= 0 && ith < j->nth);
}

Test(pool, thread_ids_in_range) {
    sp_pool *p = sp_pool_new(3);
    ith_job j = {0, 3};
    for (int rep = 0; rep < 100; rep++) sp_pool_for(p, 64, 1, note_ith, &j);
    sp_pool_free(p);
}

/* ---- selection ---- */

Test(kernels, select_by_name) {
    char list[64] = "";
    for (int i = 0, nt = n_fast_tables(); i < nt; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " " : "", fast_tables[i]->name);
    cr_log_info("fast tables tested on this CPU: %s", *list ? list : "none");
    cr_assert_eq(sp_kernels_select("ref"), sp_kernels_ref());
    cr_assert_null(sp_kernels_select("no-such-isa"));
    const sp_kernels *def = sp_kernels_select("auto");
    cr_assert_not_null(def);
    if (sp_kernels_avx2()) {
        cr_assert_eq(sp_kernels_select("avx2"), sp_kernels_avx2());
        cr_assert_eq(def, sp_kernels_avx2());
    }
    /* each NEON variant by name (NULL where the CPU lacks it), the best one by default */
    static const char *neon_names[] = {"neon", "neon-dotprod", "neon-i8mm"};
    for (int l = SP_NEON_BASE; l <= SP_NEON_I8MM; l++) {
        const sp_kernels *k = sp_kernels_neon_at(l);
        cr_assert_eq(sp_kernels_select(neon_names[l]), k, "%s", neon_names[l]);
        if (k) {
            cr_assert_str_eq(k->name, neon_names[l]);
            cr_assert(strstr(sp_kernels_names(), neon_names[l]), "%s not in '%s'", neon_names[l], sp_kernels_names());
            cr_assert(l == SP_NEON_BASE || sp_kernels_neon_at(l - 1), "%s without the level below", neon_names[l]);
        }
    }
    const sp_kernels *best = NULL;
    for (int l = SP_NEON_BASE; l <= SP_NEON_I8MM; l++)
        if (sp_kernels_neon_at(l)) best = sp_kernels_neon_at(l);
    cr_assert_eq(sp_kernels_neon(), best);
    if (best) cr_assert_eq(def, best);
    setenv("SPARROW_KERNELS", "ref", 1);
    cr_assert_eq(sp_kernels_select(NULL), sp_kernels_ref());
    cr_assert_eq(sp_kernels_select("auto"), def); /* a name given wins over the variable */
    unsetenv("SPARROW_KERNELS");
}

/* ---- end to end through the engine: thread count never changes a logit ---- */

Test(kernels, model_logits_independent_of_threads) {
    const sp_kernels *k = sp_kernels_select(NULL);
    char err[256];
    static const int32_t ids[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
    float *base = NULL;
    for (int thr = 1; thr <= 4; thr++) {
        sp_model *m = sp_model_load_with(tu_shared("models/synthetic/tiny-qwen2-q4_k_m.gguf"), k, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        cr_assert(sp_model_set_threads(m, thr));
        cr_assert_eq(sp_model_threads(m), thr);
        sp_ctx *c = sp_ctx_new(m, 64, err, sizeof err);
        float *lg = malloc(10 * (size_t)m->hp.n_vocab * sizeof *lg);
        cr_assert_eq(sp_ctx_eval(c, ids, 10, lg, true, err, sizeof err), 0, "%s", err);
        if (!base) base = lg;
        else {
            cr_assert(!memcmp(base, lg, 10 * (size_t)m->hp.n_vocab * sizeof *lg), "threads %d changed the logits", thr);
            free(lg);
        }
        sp_ctx_free(c);
        sp_model_free(m);
    }
    free(base);
}
