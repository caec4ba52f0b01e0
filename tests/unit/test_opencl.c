/* tests/unit/test_opencl.c — the OpenCL backend (kernels/opencl*.c, kernels/cl/) against the scalar
 * references, on whatever device auto picks ($SPARROW_CL_DEVICE overrides): in CI that is PoCL's
 * CPU device (Debian's pocl-opencl-icd, installed by scripts/setup.sh). No OpenCL platform at test
 * time is a failure with the reason, never a skip.
 * Shapes are awkward on purpose: tokens M in {1, 3, 17, 64}; K an odd multiple of 32 (7·32, 33·32;
 * also 32 and 96; K-quants 256 and 768); N not a multiple of 8 (13, 77); every packed layout (q4x8 from Q4_0, q4x8m
 * from Q4_1 and Q4_K, q8x8 from Q8_0 and Q6_K) and f32 / f16 / bf16 rows; both matmul kernels (GEMV,
 * GEMM); GQA 1, 2, 4, 7; KV lengths 1, 15, 16, 17, 100 over shuffled blocks of 16 positions; both
 * activation storages.
 * Tolerances (mag = Σ|w·x| of the output, the scale of its rounding errors):
 *   f32 storage: |got − exact| ≤ 2e-5·mag + 1e-6 (matmul: f32 accumulation over K ≤ 1056 terms);
 *                other ops ≤ 1e-5 of the output's largest magnitude (2e-5 for attention).
 *   f16 storage: the reference takes the same half-rounded inputs the device holds; the output is
 *                rounded to half once more: + 2^-11·|exact| (+ the f32 terms above).
 * "exact" is a double-precision evaluation of the weights as packed (sp_pack_row_f32) or as stored. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/opencl.h"
#include "kernels/pack.h"
#include "kernels/types.h"
#include "testutil.h"

#ifndef SP_HAVE_OPENCL

Test(opencl, built_with_opencl) {
    cr_assert_fail("this build has no OpenCL support: install ocl-icd-opencl-dev, opencl-c-headers and "
                   "pocl-opencl-icd (scripts/setup.sh) and rebuild");
}

#else

static uint64_t rng_state = 7;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static const char *cache_root(void) {
    static char dir[512];
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sparrow-test-opencl-%d", t && *t ? t : "/tmp", (int)getuid());
    return dir;
}

/* The device under test; a clear failure when there is none. */
static sp_cl *dev(void) {
    char err[1024] = "";
    sp_cl *c = sp_cl_open(NULL, cache_root(), 0, err, sizeof err);
    cr_assert(c, "no usable OpenCL device: %s. These tests need one: scripts/setup.sh installs PoCL "
                 "(pocl-opencl-icd, a CPU device); SPARROW_CL_DEVICE picks another.", err);
    return c;
}

static const char *act_name(int act) { return act == SP_CL_ACT_F16 ? "f16" : "f32"; }

/* Round to what the device holds for storage act. */
static float stor(int act, float v) { return act == SP_CL_ACT_F16 ? sp_f16_to_f32(sp_f32_to_f16(v)) : v; }

/* Upload n activations in storage act (x is rounded in place to what the device holds). */
static cl_mem up_act(sp_cl *c, int act, float *x, int64_t n) {
    if (act == SP_CL_ACT_F32) return sp_cl_alloc(c, (size_t)n * 4, x);
    uint16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        h[i] = sp_f32_to_f16(x[i]);
        x[i] = sp_f16_to_f32(h[i]);
    }
    cl_mem m = sp_cl_alloc(c, (size_t)n * 2, h);
    free(h);
    return m;
}

static void down_act(sp_cl *c, int act, cl_mem m, float *out, int64_t n) {
    if (act == SP_CL_ACT_F32) {
        cr_assert(sp_cl_read(c, m, 0, out, (size_t)n * 4), "%s", sp_cl_error(c));
        return;
    }
    uint16_t *h = malloc((size_t)n * 2);
    cr_assert(sp_cl_read(c, m, 0, h, (size_t)n * 2), "%s", sp_cl_error(c));
    for (int64_t i = 0; i < n; i++) out[i] = sp_f16_to_f32(h[i]);
    free(h);
}

static cl_mem up_f32(sp_cl *c, const void *p, size_t bytes) {
    cl_mem m = sp_cl_alloc(c, bytes, p);
    cr_assert(m, "%s", sp_cl_error(c));
    return m;
}

/* |got - want| within the stated tolerance (tol_rel of scale, + half rounding of want for f16) */
static bool close_to(double got, double want, double scale, double tol_rel, int act) {
    double tol = tol_rel * scale + 1e-6 + (act == SP_CL_ACT_F16 ? fabs(want) / 2048.0 : 0.0);
    return fabs(got - want) <= tol;
}

/* ---- devices, hashing, the binary cache ---- */

Test(opencl, devices_and_choice) {
    sp_cl_devinfo d[16];
    char err[512] = "";
    int n = sp_cl_devices(d, 16, err, sizeof err);
    cr_assert(n > 0, "no OpenCL device: %s (scripts/setup.sh installs pocl-opencl-icd)", err);
    if (n > 16) n = 16;
    for (int i = 0; i < n; i++) {
        cr_log_info("OpenCL %d:%d %s (%s) %s, %s, %u CUs, fp16 %d subgroups %d unified %d", d[i].platform, d[i].device,
                    d[i].name, d[i].platform_name, sp_cl_devtype(&d[i]), d[i].c_version, d[i].compute_units, d[i].fp16,
                    d[i].subgroups, d[i].unified);
        cr_assert(d[i].name[0] && d[i].max_wg > 0 && d[i].global_mem > 0);
    }
    int a = sp_cl_choose(d, n, "auto", err, sizeof err);
    cr_assert(a >= 0, "%s", err);
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", d[a].platform, d[a].device);
    cr_assert_eq(sp_cl_choose(d, n, spec, err, sizeof err), a);
    cr_assert_eq(sp_cl_choose(d, n, "99:0", err, sizeof err), -1);
    cr_assert(strstr(err, "no device"), "%s", err);
    cr_assert_eq(sp_cl_choose(d, n, "fastest", err, sizeof err), -1);
    if (d[a].cpu) cr_assert_eq(sp_cl_choose(d, n, "cpu", err, sizeof err), a);
}

Test(opencl, sha256_vectors) {
    uint8_t h[32];
    char hex[65];
    sp_cl_sha256("abc", 3, h);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char big[1000];
    memset(big, 'a', sizeof big);
    sp_cl_sha256(big, sizeof big, h); /* several blocks */
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
    cr_assert_str_eq(hex, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

static void rm_rf_cl(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Miss, then hit; a changed source (or options) is a different key, so a miss again, and the old
 * entry still hits; a corrupt file is rebuilt (stale) and then hits; no directory: no cache. */
Test(opencl, binary_cache_hit_miss_invalidate) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s-cache-test-%d", cache_root(), (int)getpid());
    rm_rf_cl(dir);
    char err[1024] = "";
    sp_cl *c = sp_cl_open(NULL, dir, 0, err, sizeof err);
    cr_assert(c, "no usable OpenCL device: %s (scripts/setup.sh installs pocl-opencl-icd)", err);
    const char *src_a = "kernel void k(global float *x) { x[get_global_id(0)] *= 2.0f; }\n";
    const char *src_b = "kernel void k(global float *x) { x[get_global_id(0)] *= 3.0f; }\n";
    int st = -1;
    char pa[1200], pb[1200];
    cr_assert(sp_cl_cache_path(c, src_a, strlen(src_a), "", pa, sizeof pa));
    cr_assert(sp_cl_cache_path(c, src_b, strlen(src_b), "", pb, sizeof pb));
    cr_assert_str_neq(pa, pb);
    cl_program p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert(p, "%s", sp_cl_error(c));
    cr_assert_eq(st, SP_CL_CACHE_MISS);
    clReleaseProgram(p);
    cr_assert_eq(access(pa, R_OK), 0, "no cache file %s", pa);
    p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert(p);
    cr_assert_eq(st, SP_CL_CACHE_HIT);
    /* the cached program computes */
    float x[4] = {1, 2, 3, 4};
    cl_mem m = up_f32(c, x, sizeof x);
    cl_int e;
    cl_kernel k = clCreateKernel(p, "k", &e);
    cr_assert(k);
    clSetKernelArg(k, 0, sizeof m, &m);
    size_t g = 4;
    cr_assert_eq(clEnqueueNDRangeKernel(sp_cl_queue(c), k, 1, NULL, &g, NULL, 0, NULL, NULL), CL_SUCCESS);
    cr_assert(sp_cl_read(c, m, 0, x, sizeof x));
    cr_assert(x[0] == 2 && x[3] == 8);
    clReleaseKernel(k);
    clReleaseMemObject(m);
    clReleaseProgram(p);
    /* a changed source: another key, built and stored beside the first */
    p = sp_cl_build(c, src_b, strlen(src_b), "", &st);
    cr_assert(p);
    cr_assert_eq(st, SP_CL_CACHE_MISS);
    clReleaseProgram(p);
    cr_assert_eq(access(pb, R_OK), 0);
    p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert_eq(st, SP_CL_CACHE_HIT);
    clReleaseProgram(p);
    /* other options: another key */
    p = sp_cl_build(c, src_a, strlen(src_a), "-DX=1", &st);
    cr_assert_eq(st, SP_CL_CACHE_MISS);
    clReleaseProgram(p);
    /* a corrupt file: rebuilt, rewritten, then a hit */
    cr_assert_eq(tu_write_file(pa, "SPCLBIN1garbage", 15), 0);
    p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert(p, "%s", sp_cl_error(c));
    cr_assert_eq(st, SP_CL_CACHE_STALE);
    clReleaseProgram(p);
    p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert_eq(st, SP_CL_CACHE_HIT);
    clReleaseProgram(p);
    /* the kernels' own program: a miss in a fresh directory, a hit for the next process */
    cr_assert(sp_cl_prepare(c, SP_CL_ACT_F32, &st), "%s", sp_cl_error(c));
    cr_assert_eq(st, SP_CL_CACHE_MISS);
    sp_cl_close(c);
    c = sp_cl_open(NULL, dir, 0, err, sizeof err);
    cr_assert(sp_cl_prepare(c, SP_CL_ACT_F32, &st), "%s", sp_cl_error(c));
    cr_assert_eq(st, SP_CL_CACHE_HIT);
    /* an edited kernel source (as a changed kernels/cl/ source would be) misses */
    size_t len;
    const char *src = sp_cl_source(&len);
    char *edited = malloc(len + 32);
    memcpy(edited, src, len);
    memcpy(edited + len, "\n/* edited */\n", 15);
    char opts[256];
    cr_assert(sp_cl_options(c, SP_CL_ACT_F32, opts, sizeof opts));
    p = sp_cl_build(c, edited, len + 14, opts, &st);
    cr_assert(p, "%s", sp_cl_error(c));
    cr_assert_eq(st, SP_CL_CACHE_MISS);
    clReleaseProgram(p);
    free(edited);
    sp_cl_close(c);
    /* no directory: no cache */
    c = sp_cl_open(NULL, NULL, 0, err, sizeof err);
    p = sp_cl_build(c, src_a, strlen(src_a), "", &st);
    cr_assert_eq(st, SP_CL_CACHE_OFF);
    clReleaseProgram(p);
    sp_cl_close(c);
    rm_rf_cl(dir);
}

Test(opencl, build_error_reports_the_log) {
    sp_cl *c = dev();
    int st;
    const char *bad = "kernel void k(global float *x) { x[0] = undeclared_thing; }\n";
    cl_program p = sp_cl_build(c, bad, strlen(bad), "", &st);
    cr_assert_null(p);
    cr_assert(strstr(sp_cl_error(c), "undeclared_thing"), "%s", sp_cl_error(c));
    sp_cl_close(c);
}

/* ---- matmul ---- */

typedef struct {
    sp_mat w;
    uint32_t fmt;
    float *rows; /* the weights the device holds, f32 [n_out][n_in] */
} test_mat;

static test_mat make_mat(uint32_t type, int64_t n_in, int64_t n_out) {
    size_t rb = sp_type_row_bytes(type, n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof *row);
    for (int64_t o = 0; o < n_out; o++) {
        float amp = o % 5 == 3 ? 0.3f : 0.05f;
        for (int64_t i = 0; i < n_in; i++) row[i] = amp * frand();
        cr_assert(sp_quant_row(type, row, data + (size_t)o * rb, n_in));
    }
    free(row);
    test_mat t = {.w = {.type = type, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data}};
    bool packed = sp_pack_mat(&t.w);
    t.fmt = packed ? t.w.pack_fmt : type == SP_TYPE_F32 ? SP_CL_FMT_F32 : type == SP_TYPE_F16 ? SP_CL_FMT_F16 : SP_CL_FMT_BF16;
    t.rows = malloc((size_t)(n_in * n_out) * sizeof(float));
    for (int64_t o = 0; o < n_out; o++)
        cr_assert(packed ? sp_pack_row_f32(&t.w, o, t.rows + o * n_in) : sp_mat_row_f32(&t.w, o, t.rows + o * n_in));
    return t;
}

static void free_mat(test_mat *t) {
    free((void *)t->w.data);
    sp_mat_unpack(&t->w);
    free(t->rows);
}

static cl_mem mat_buf(sp_cl *c, const test_mat *t) {
    const void *p = t->w.packed ? t->w.packed : t->w.data;
    size_t bytes = t->w.packed ? t->w.packed_bytes : t->w.row_bytes * (size_t)t->w.n_out;
    return up_f32(c, p, bytes);
}

static const char *tname(uint32_t type) { return sp_type_get(type)->name; }

/* One matrix through both paths, both storages, every M, with and without bias + residual. */
static void check_matmul(sp_cl *c, uint32_t type, int64_t n_in, int64_t n_out) {
    static const int64_t Ms[] = {1, 3, 17, 64};
    test_mat t = make_mat(type, n_in, n_out);
    sp_cl_mat m = {t.fmt, n_in, n_out, mat_buf(c, &t)};
    float *bias = malloc((size_t)n_out * sizeof *bias);
    for (int64_t o = 0; o < n_out; o++) bias[o] = frand();
    cl_mem bb = up_f32(c, bias, (size_t)n_out * sizeof *bias);
    for (int act = 0; act < 2; act++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int64_t M = Ms[mi];
            float *x = malloc((size_t)(M * n_in) * sizeof *x), *res = malloc((size_t)(M * n_out) * sizeof *res);
            float *y = malloc((size_t)(M * n_out) * sizeof *y);
            for (int64_t i = 0; i < M * n_in; i++) x[i] = frand() * (i % 37 == 5 ? 4.0f : 1.0f);
            for (int64_t i = 0; i < M * n_out; i++) res[i] = frand();
            cl_mem xb = up_act(c, act, x, M * n_in), rb = up_act(c, act, res, M * n_out);
            cl_mem yb = sp_cl_alloc(c, (size_t)(M * n_out) * 4, NULL);
            cr_assert(xb && rb && yb);
            for (int path = SP_CL_PATH_GEMV; path <= SP_CL_PATH_GEMM; path++)
                for (int epi = 0; epi < 2; epi++) {
                    cr_assert(sp_cl_matmul(c, act, &m, xb, yb, M, epi ? bb : NULL, epi ? rb : NULL, path), "%s",
                              sp_cl_error(c));
                    down_act(c, act, yb, y, M * n_out);
                    for (int64_t tk = 0; tk < M; tk++)
                        for (int64_t o = 0; o < n_out; o++) {
                            double exact = 0, mag = 0;
                            for (int64_t i = 0; i < n_in; i++) {
                                double p = (double)t.rows[o * n_in + i] * x[tk * n_in + i];
                                exact += p, mag += fabs(p);
                            }
                            if (epi) exact += (double)bias[o] + res[tk * n_out + o];
                            double got = y[tk * n_out + o];
                            cr_assert(close_to(got, exact, mag + (epi ? fabs(bias[o]) + fabs(res[tk * n_out + o]) : 0), 2e-5, act),
                                      "%s %s K %lld N %lld M %lld %s%s tok %lld row %lld: %.9g vs %.9g (mag %.3g)",
                                      tname(type), act_name(act), (long long)n_in, (long long)n_out, (long long)M,
                                      path == SP_CL_PATH_GEMV ? "gemv" : "gemm", epi ? " +bias+res" : "", (long long)tk,
                                      (long long)o, got, exact, mag);
                        }
                }
            clReleaseMemObject(xb);
            clReleaseMemObject(rb);
            clReleaseMemObject(yb);
            free(x); free(res); free(y);
        }
    clReleaseMemObject(bb);
    clReleaseMemObject(m.buf);
    free(bias);
    free_mat(&t);
}

Test(opencl, matmul_packed_4bit) {
    sp_cl *c = dev();
    static const int64_t Ks[] = {32 * 7, 32 * 33}, Ns[] = {13, 77};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) {
            check_matmul(c, SP_TYPE_Q4_0, Ks[a], Ns[b]); /* q4x8 */
            check_matmul(c, SP_TYPE_Q4_1, Ks[a], Ns[b]); /* q4x8m */
        }
    check_matmul(c, SP_TYPE_Q4_0, 32, 13); /* one block: fewer work-items per row group than rows */
    check_matmul(c, SP_TYPE_Q4_1, 96, 9);
    check_matmul(c, SP_TYPE_Q4_K, 256, 13); /* q4x8m from a K-quant */
    check_matmul(c, SP_TYPE_Q4_K, 768, 77);
    sp_cl_close(c);
}

Test(opencl, matmul_packed_8bit) {
    sp_cl *c = dev();
    static const int64_t Ks[] = {32 * 7, 32 * 33}, Ns[] = {13, 77};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) check_matmul(c, SP_TYPE_Q8_0, Ks[a], Ns[b]); /* q8x8 */
    check_matmul(c, SP_TYPE_Q6_K, 768, 13); /* q8x8, requantized */
    check_matmul(c, SP_TYPE_Q8_0, 32, 21);
    sp_cl_close(c);
}

Test(opencl, matmul_float_weights) {
    sp_cl *c = dev();
    static const int64_t Ks[] = {32 * 7, 32 * 33}, Ns[] = {13, 77};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) {
            check_matmul(c, SP_TYPE_F32, Ks[a], Ns[b]);
            check_matmul(c, SP_TYPE_F16, Ks[a], Ns[b]);
            check_matmul(c, SP_TYPE_BF16, Ks[a], Ns[b]);
        }
    check_matmul(c, SP_TYPE_F32, 45, 5); /* rows of any length */
    sp_cl_close(c);
}

/* ---- embedding rows ---- */

Test(opencl, embed_rows_every_format) {
    sp_cl *c = dev();
    static const uint32_t types[] = {SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q8_0, SP_TYPE_F32, SP_TYPE_F16, SP_TYPE_BF16};
    int32_t ids[] = {0, 76, 5, 8, 7, 5};
    for (size_t f = 0; f < sizeof types / sizeof types[0]; f++) {
        test_mat t = make_mat(types[f], 32 * 7, 77);
        sp_cl_mat m = {t.fmt, t.w.n_in, t.w.n_out, mat_buf(c, &t)};
        cl_mem ib = up_f32(c, ids, sizeof ids);
        int64_t n = 6 * t.w.n_in;
        float *out = malloc((size_t)n * sizeof *out);
        for (int act = 0; act < 2; act++) {
            cl_mem ob = sp_cl_alloc(c, (size_t)n * 4, NULL);
            cr_assert(sp_cl_embed(c, act, &m, ib, 6, ob), "%s", sp_cl_error(c));
            down_act(c, act, ob, out, n);
            for (int r = 0; r < 6; r++)
                for (int64_t k = 0; k < t.w.n_in; k++) {
                    float want = stor(act, t.rows[ids[r] * t.w.n_in + k]);
                    cr_assert(fabsf(out[r * t.w.n_in + k] - want) <= 1e-6f * fabsf(want) + 1e-9f, "%s %s row %d elem %lld: %g vs %g",
                              tname(types[f]), act_name(act), ids[r], (long long)k, out[r * t.w.n_in + k], want);
                }
            clReleaseMemObject(ob);
        }
        free(out);
        clReleaseMemObject(ib);
        clReleaseMemObject(m.buf);
        free_mat(&t);
    }
    sp_cl_close(c);
}

/* ---- row-wise and element-wise ops ---- */

Test(opencl, rmsnorm_with_and_without_residual) {
    sp_cl *c = dev();
    const sp_kernels *r = sp_kernels_ref();
    static const int64_t ns[] = {7, 64, 896, 4864};
    for (int act = 0; act < 2; act++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int mode = 0; mode < 3; mode++) { /* plain; weights; weights + residual (h written) */
                int64_t n = ns[ni], rows = 3;
                float *x = malloc((size_t)(n * rows) * 4), *res = malloc((size_t)(n * rows) * 4), *w = malloc((size_t)n * 4);
                float *y = malloc((size_t)(n * rows) * 4), *h = malloc((size_t)(n * rows) * 4), *want = malloc((size_t)n * 4);
                for (int64_t i = 0; i < n * rows; i++) x[i] = frand() * 3, res[i] = frand();
                for (int64_t i = 0; i < n; i++) w[i] = 1 + 0.1f * frand();
                cl_mem xb = up_act(c, act, x, n * rows), rb = up_act(c, act, res, n * rows), wb = up_f32(c, w, (size_t)n * 4);
                cl_mem yb = sp_cl_alloc(c, (size_t)(n * rows) * 4, NULL), hb = sp_cl_alloc(c, (size_t)(n * rows) * 4, NULL);
                cr_assert(sp_cl_rmsnorm(c, act, xb, mode == 2 ? rb : NULL, mode == 2 ? hb : NULL, yb, mode ? wb : NULL, n,
                                        rows, 1e-5f), "%s", sp_cl_error(c));
                down_act(c, act, yb, y, n * rows);
                if (mode == 2) down_act(c, act, hb, h, n * rows);
                for (int64_t rw = 0; rw < rows; rw++) {
                    float *hx = malloc((size_t)n * 4);
                    for (int64_t i = 0; i < n; i++) hx[i] = x[rw * n + i] + (mode == 2 ? res[rw * n + i] : 0.0f);
                    r->rmsnorm(want, hx, mode ? w : NULL, n, 1e-5f);
                    double mx = 0;
                    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
                    for (int64_t i = 0; i < n; i++) {
                        cr_assert(close_to(y[rw * n + i], want[i], mx, 1e-5, act), "rmsnorm %s n %lld mode %d [%lld][%lld]: %g vs %g",
                                  act_name(act), (long long)n, mode, (long long)rw, (long long)i, y[rw * n + i], want[i]);
                        if (mode == 2) cr_assert(close_to(h[rw * n + i], hx[i], fabs(hx[i]), 1e-6, act));
                    }
                    free(hx);
                }
                clReleaseMemObject(xb); clReleaseMemObject(rb); clReleaseMemObject(wb);
                clReleaseMemObject(yb); clReleaseMemObject(hb);
                free(x); free(res); free(w); free(y); free(h); free(want);
            }
    sp_cl_close(c);
}

Test(opencl, rope_normal_and_neox) {
    sp_cl *c = dev();
    const sp_kernels *r = sp_kernels_ref();
    static const int64_t cfg[][3] = {{64, 64, 4}, {128, 128, 2}, {64, 32, 3}}; /* head_dim, n_rot, heads */
    for (int act = 0; act < 2; act++)
        for (size_t ci = 0; ci < 3; ci++)
            for (int neox = 0; neox < 2; neox++) {
                int64_t hd = cfg[ci][0], n_rot = cfg[ci][1], nh = cfg[ci][2], T = 5, stride = nh * hd + 3;
                float *v = malloc((size_t)(T * stride) * 4), *got = malloc((size_t)(T * stride) * 4);
                float *cs = malloc((size_t)(T * n_rot) * 4);
                for (int64_t i = 0; i < T * stride; i++) v[i] = frand();
                for (int64_t t = 0; t < T; t++) sp_rope_angles(cs + t * n_rot, n_rot, 7 * t + 3, 10000.0f, NULL);
                cl_mem vb = up_act(c, act, v, T * stride), cb = up_f32(c, cs, (size_t)(T * n_rot) * 4);
                cr_assert(sp_cl_rope(c, act, vb, T, stride, nh, hd, n_rot, cb, neox), "%s", sp_cl_error(c));
                down_act(c, act, vb, got, T * stride);
                for (int64_t t = 0; t < T; t++) {
                    r->rope_cs(v + t * stride, nh, hd, n_rot, cs + t * n_rot, neox);
                    for (int64_t i = 0; i < stride; i++)
                        cr_assert(close_to(got[t * stride + i], v[t * stride + i], 1.0, 1e-6, act),
                                  "rope %s neox %d hd %lld rot %lld [%lld][%lld]: %g vs %g", act_name(act), neox, (long long)hd,
                                  (long long)n_rot, (long long)t, (long long)i, got[t * stride + i], v[t * stride + i]);
                }
                clReleaseMemObject(vb); clReleaseMemObject(cb);
                free(v); free(got); free(cs);
            }
    sp_cl_close(c);
}

Test(opencl, swiglu_and_softmax) {
    sp_cl *c = dev();
    const sp_kernels *r = sp_kernels_ref();
    for (int act = 0; act < 2; act++) {
        int64_t n = 4864 + 5;
        float *g = malloc((size_t)n * 4), *u = malloc((size_t)n * 4), *o = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) g[i] = 6 * frand(), u[i] = frand();
        cl_mem gb = up_act(c, act, g, n), ub = up_act(c, act, u, n);
        cr_assert(sp_cl_swiglu(c, act, gb, gb, ub, n), "%s", sp_cl_error(c)); /* in place over gate */
        down_act(c, act, gb, o, n);
        r->swiglu(want, g, u, n);
        for (int64_t i = 0; i < n; i++)
            cr_assert(close_to(o[i], want[i], fabs(want[i]), 1e-5, act), "swiglu %s [%lld]: %g vs %g", act_name(act), (long long)i, o[i], want[i]);
        clReleaseMemObject(gb); clReleaseMemObject(ub);
        free(g); free(u); free(o); free(want);
        static const int64_t ns[] = {1, 5, 1000};
        for (size_t ni = 0; ni < 3; ni++) {
            int64_t m = ns[ni], rows = 3;
            float *x = malloc((size_t)(m * rows) * 4), *y = malloc((size_t)(m * rows) * 4);
            for (int64_t i = 0; i < m * rows; i++) x[i] = 8 * frand();
            cl_mem xb = up_act(c, act, x, m * rows);
            cr_assert(sp_cl_softmax(c, act, xb, m, rows), "%s", sp_cl_error(c));
            down_act(c, act, xb, y, m * rows);
            for (int64_t rw = 0; rw < rows; rw++) {
                r->softmax(x + rw * m, m);
                double mx = 0;
                for (int64_t i = 0; i < m; i++) mx = fmax(mx, x[rw * m + i]);
                for (int64_t i = 0; i < m; i++)
                    cr_assert(close_to(y[rw * m + i], x[rw * m + i], mx, 1e-5, act), "softmax %s n %lld [%lld]: %g vs %g",
                              act_name(act), (long long)m, (long long)i, y[rw * m + i], x[rw * m + i]);
            }
            clReleaseMemObject(xb);
            free(x); free(y);
        }
    }
    sp_cl_close(c);
}

/* ---- paged attention ---- */

/* n_q queries with KV lengths 1, 15, 16, 17, 100 (blocks of 16 positions, scattered over a pool in a
 * shuffled order, K and V of a "layer" at an offset inside each block), GQA group G. */
static void check_attention(sp_cl *c, int act, int hd, int n_head_kv, int G, int chunk) {
    const sp_kernels *r = sp_kernels_ref();
    static const int32_t lens[] = {1, 15, 16, 17, 100};
    const int n_q = 5, blk = 16, n_head = n_head_kv * G, max_kv = 100, max_blocks = (max_kv + blk - 1) / blk;
    int64_t pos_stride = (int64_t)n_head_kv * hd, layer = 2 * blk * pos_stride; /* a block: 2 layers of K and V */
    int64_t block_elems = 2 * layer, k_off = layer, v_off = layer + blk * pos_stride; /* layer 1 */
    int n_blocks = n_q * max_blocks;
    int64_t pool_n = (int64_t)n_blocks * block_elems;
    float *pool = malloc((size_t)pool_n * 4);
    for (int64_t i = 0; i < pool_n; i++) pool[i] = frand();
    int32_t *order = malloc((size_t)n_blocks * 4), *tbl = malloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) order[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)((frand() + 1) * 0.5f * (float)(i + 1)) % (i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int i = 0; i < n_blocks; i++) tbl[i] = (int32_t)(order[i] * block_elems);
    int64_t qn = (int64_t)n_q * n_head * hd;
    float *q = malloc((size_t)qn * 4), *out = malloc((size_t)qn * 4), *want = malloc((size_t)hd * 4), *scores = malloc(max_kv * 4);
    for (int64_t i = 0; i < qn; i++) q[i] = frand();
    cl_mem qb = up_act(c, act, q, qn), pb = up_act(c, act, pool, pool_n); /* rounds q and pool for the reference */
    cl_mem tb = up_f32(c, tbl, (size_t)n_blocks * 4), nb = up_f32(c, lens, sizeof lens);
    cl_mem ob = sp_cl_alloc(c, (size_t)qn * 4, NULL);
    float scale = 1.0f / sqrtf((float)hd);
    sp_cl_attn a = {.q = qb, .k_pool = pb, .v_pool = pb, .tbl = tb, .n_kv = nb, .out = ob, .q_stride = n_head * hd,
                    .out_stride = n_head * hd, .max_blocks = max_blocks, .blk = blk, .k_off = k_off, .v_off = v_off,
                    .pos_stride = pos_stride, .n_q = n_q, .n_head = n_head, .n_head_kv = n_head_kv, .hd = hd,
                    .max_kv = max_kv, .chunk = chunk, .scale = scale};
    cr_assert(sp_cl_attention(c, act, &a), "%s", sp_cl_error(c));
    down_act(c, act, ob, out, qn);
    const float *kb[8], *vb[8];
    for (int qi = 0; qi < n_q; qi++)
        for (int h = 0; h < n_head; h++) {
            int g = h / G;
            for (int b = 0; b < max_blocks; b++) {
                kb[b] = pool + tbl[qi * max_blocks + b] + k_off + (int64_t)g * hd;
                vb[b] = pool + tbl[qi * max_blocks + b] + v_off + (int64_t)g * hd;
            }
            r->attend_paged(want, q + ((int64_t)qi * n_head + h) * hd, kb, vb, blk, lens[qi], hd, pos_stride, scale, scores);
            double mx = 0;
            for (int i = 0; i < hd; i++) mx = fmax(mx, fabs(want[i]));
            for (int i = 0; i < hd; i++) {
                float got = out[((int64_t)qi * n_head + h) * hd + i];
                cr_assert(close_to(got, want[i], mx, 2e-5, act), "attention %s hd %d GQA %d (kv heads %d) chunk %d: kv len %d head %d dim %d: %g vs %g",
                          act_name(act), hd, G, n_head_kv, chunk, lens[qi], h, i, got, want[i]);
            }
        }
    clReleaseMemObject(qb); clReleaseMemObject(pb); clReleaseMemObject(tb); clReleaseMemObject(nb); clReleaseMemObject(ob);
    free(pool); free(order); free(tbl); free(q); free(out); free(want); free(scores);
}

Test(opencl, attention_paged_gqa) {
    sp_cl *c = dev();
    static const int groups[] = {1, 2, 4, 7};
    for (int act = 0; act < 2; act++)
        for (size_t gi = 0; gi < 4; gi++) {
            check_attention(c, act, 64, 2, groups[gi], 16);  /* several splits, some empty */
            check_attention(c, act, 64, 2, groups[gi], 0);   /* default chunk */
        }
    check_attention(c, SP_CL_ACT_F32, 128, 1, 7, 32);
    check_attention(c, SP_CL_ACT_F16, 128, 3, 2, 64);
    sp_cl_close(c);
}

/* ---- the kernel table ---- */

static void table_case(const sp_kernels *k, uint32_t type, int64_t n_in, int64_t n_out, int64_t M) {
    size_t rb = sp_type_row_bytes(type, n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * 4);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = 0.05f * frand();
        sp_quant_row(type, row, data + (size_t)o * rb, n_in);
    }
    sp_mat w = {.type = type, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data};
    k->pack(&w);
    float *x = malloc((size_t)(M * n_in) * 4), *y = malloc((size_t)(M * n_out) * 4), *want = malloc((size_t)(M * n_out) * 4);
    for (int64_t i = 0; i < M * n_in; i++) x[i] = frand();
    sp_kernels_ref()->matmul(&w, x, want, M, NULL); /* the file's weights: packing here is lossless */
    k->matmul(&w, x, y, M, NULL);
    for (int64_t i = 0; i < M * n_out; i++)
        cr_assert(fabsf(y[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])), "table %s [%lld]: %g vs %g", tname(type), (long long)i, y[i], want[i]);
    /* the same sp_mat with new weights (same data pointer, shape and layout; the packed copy maybe at
     * the same address): noticed and uploaded again */
    sp_mat_unpack(&w);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = 0.05f * frand();
        sp_quant_row(type, row, data + (size_t)o * rb, n_in);
    }
    k->pack(&w);
    sp_kernels_ref()->matmul(&w, x, want, M, NULL);
    k->matmul(&w, x, y, M, NULL);
    for (int64_t i = 0; i < M * n_out; i++)
        cr_assert(fabsf(y[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])), "changed %s [%lld]: %g vs %g", tname(type), (long long)i, y[i], want[i]);
    sp_mat_unpack(&w);
    free(data); free(row); free(x); free(y); free(want);
}

static void check_table(void) {
    sp_kernels_opencl_set_cache_dir(cache_root());
    const sp_kernels *k = sp_kernels_select("opencl");
    cr_assert(k, "the opencl table: %s", sp_kernels_opencl_error());
    cr_assert_str_eq(k->name, "opencl");
    cr_assert(k->matmul && k->pack && k->attend_paged && k->rmsnorm && k->rope_cs);
    cr_assert_not_null(sp_kernels_opencl_device());
    table_case(k, SP_TYPE_Q4_0, 32 * 7, 77, 1);
    table_case(k, SP_TYPE_Q4_0, 32 * 7, 77, 17);
    table_case(k, SP_TYPE_Q8_0, 32 * 33, 13, 3);
    table_case(k, SP_TYPE_Q4_1, 32 * 7, 13, 64);
    table_case(k, SP_TYPE_F32, 45, 13, 3);
    table_case(k, SP_TYPE_F16, 64, 9, 2);
    /* matmul_multi: q/k/v sharing their input, same as separate calls */
    if (k->matmul_multi) {
        test_mat t[3] = {make_mat(SP_TYPE_Q4_0, 224, 77), make_mat(SP_TYPE_Q8_0, 224, 13), make_mat(SP_TYPE_F16, 224, 9)};
        const sp_mat *ws[3] = {&t[0].w, &t[1].w, &t[2].w};
        float *x = malloc(224 * 3 * 4), *ys[3], *one = malloc(77 * 3 * 4);
        for (int i = 0; i < 224 * 3; i++) x[i] = frand();
        for (int i = 0; i < 3; i++) ys[i] = malloc(77 * 3 * 4);
        k->matmul_multi(ws, ys, 3, x, 3, NULL);
        for (int i = 0; i < 3; i++) {
            k->matmul(ws[i], x, one, 3, NULL);
            cr_assert(!memcmp(one, ys[i], (size_t)(3 * ws[i]->n_out) * 4), "matmul_multi %d differs from matmul", i);
            free(ys[i]);
            free_mat(&t[i]);
        }
        free(x); free(one);
    }
    /* a format the device kernels do not take runs on the CPU table: unpacked Q8_0 (pack refused) */
    sp_mat w = {.type = SP_TYPE_Q8_0, .n_in = 64, .n_out = 3, .row_bytes = sp_type_row_bytes(SP_TYPE_Q8_0, 64)};
    uint8_t *data = malloc(w.row_bytes * 3);
    float row[64], x[64], y[3], want[3];
    for (int o = 0; o < 3; o++) {
        for (int i = 0; i < 64; i++) row[i] = frand();
        sp_quant_row(SP_TYPE_Q8_0, row, data + o * w.row_bytes, 64);
    }
    for (int i = 0; i < 64; i++) x[i] = frand();
    w.data = data;
    k->matmul(&w, x, y, 1, NULL);
    sp_kernels_ref()->matmul(&w, x, want, 1, NULL);
    for (int o = 0; o < 3; o++) cr_assert(fabsf(y[o] - want[o]) <= 0.02f * (1 + fabsf(want[o])), "CPU fallback %d", o);
    free(data);
}

Test(opencl, table_zero_copy_when_unified) { check_table(); }

Test(opencl, table_copy_path) {
    setenv("SPARROW_CL_ZEROCOPY", "0", 1); /* this test's own process: the table opens after this */
    check_table();
}

Test(opencl, table_never_auto) {
    const sp_kernels *k = sp_kernels_select("auto");
    cr_assert(k && strcmp(k->name, "opencl"));
    cr_assert(strstr(sp_kernels_names(), "opencl"), "%s", sp_kernels_names());
}

#endif
