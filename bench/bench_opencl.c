/* bench/bench_opencl.c — the OpenCL matmul kernels against the device's own copy bandwidth.
 *   copy:  clEnqueueCopyBuffer of a large buffer (min(1 GiB, max alloc / 2)); GB/s counts the bytes
 *          read plus the bytes written, best of 5 (profiling events).
 *   gemv:  one token (decode) through each weight shape of qwen2.5-0.5b in a packed format: qkv-like
 *          896 -> 4864 (ffn gate/up), 4864 -> 896 (ffn down), 896 -> 151936 (the output head).
 *          Several copies of the matrix are cycled so that at least 256 MiB stream per round (the
 *          matrix never sits in the last-level cache); "GB/s" = packed weight bytes / kernel time
 *          (median of the runs).
 *   gemm:  512 tokens (prefill) through the same shapes: TFLOP/s (2 n_in n_out n_tok / kernel time).
 *   table: the "opencl" kernel table's matmul as the engine calls it (host activations uploaded and
 *          results read back per call), wall time per call for 1 token.
 * Built by CMake when OpenCL is found (build/bench_opencl). Run:
 *   build/bench_opencl [TYPE (q4_0)] [RUNS (20)] [N_IN N_OUT (instead of the three shapes)]
 * Device: $SPARROW_CL_DEVICE (default auto). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/opencl.h"
#include "kernels/pack.h"
#include "kernels/types.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) / 8388608.0f - 1.0f;
}

/* A random n_out × n_in matrix of `type`, packed as the opencl table packs it. */
static sp_mat make_packed(uint32_t type, int64_t n_in, int64_t n_out) {
    size_t rb = sp_type_row_bytes(type, n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof *row);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = 0.05f * frand();
        sp_quant_row(type, row, data + (size_t)o * rb, n_in);
    }
    free(row);
    sp_mat w = {.type = type, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data};
    if (!sp_pack_mat(&w)) {
        fprintf(stderr, "bench_opencl: %s has no packed form\n", sp_type_get(type)->name);
        exit(2);
    }
    return w;
}

static uint32_t cl_fmt(const sp_mat *w) {
    return w->pack_fmt == SP_PACK_Q4X8 ? SP_CL_FMT_Q4X8 : w->pack_fmt == SP_PACK_Q4X8M ? SP_CL_FMT_Q4X8M : SP_CL_FMT_Q8X8;
}

#define CHECK(x)                                                                  \
    do {                                                                          \
        if (!(x)) {                                                               \
            fprintf(stderr, "bench_opencl: %s: %s\n", #x, sp_cl_error(c));        \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

int main(int argc, char **argv) {
    const char *tname = argc > 1 ? argv[1] : "q4_0";
    int runs = argc > 2 ? atoi(argv[2]) : 20;
    int type = sp_type_from_name(tname);
    if (type < 0 || runs < 1) {
        fprintf(stderr, "usage: bench_opencl [TYPE] [RUNS]\n");
        return 2;
    }
    char err[1024];
    sp_cl *c = sp_cl_open(NULL, NULL, SP_CL_PROFILE, err, sizeof err);
    if (!c) {
        fprintf(stderr, "bench_opencl: %s\n", err);
        return 1;
    }
    const sp_cl_devinfo *d = sp_cl_info(c);
    printf("device: %s (%s; %s; driver %s; %u CUs; %.1f GiB; unified %s)\n", d->name, d->platform_name, d->version,
           d->driver, d->compute_units, d->global_mem / 1073741824.0, d->unified ? "yes" : "no");
    double t0 = now_s();
    int st = 0;
    CHECK(sp_cl_prepare(c, SP_CL_ACT_F32, &st));
    printf("kernels built in %.2f s (no cache)\n", now_s() - t0);

    /* copy bandwidth */
    size_t cb = (size_t)1 << 30;
    while (cb > d->max_alloc / 2) cb /= 2;
    cl_mem a = sp_cl_alloc(c, cb, NULL), b = sp_cl_alloc(c, cb, NULL);
    CHECK(a && b);
    cl_command_queue q = sp_cl_queue(c);
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        cl_event ev;
        CHECK(clEnqueueCopyBuffer(q, a, b, 0, 0, cb, 0, NULL, &ev) == CL_SUCCESS);
        clWaitForEvents(1, &ev);
        cl_ulong s = 0, e = 0;
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof s, &s, NULL);
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof e, &e, NULL);
        clReleaseEvent(ev);
        if (r > 0 && (double)(e - s) < best) best = (double)(e - s);
    }
    double copy_gbs = 2.0 * (double)cb / best;
    printf("copy: %zu MiB buffer, %.1f GB/s (read + write), best of 5\n", cb >> 20, copy_gbs);
    clReleaseMemObject(a);
    clReleaseMemObject(b);

    int64_t shapes[3][2] = {{896, 4864}, {4864, 896}, {896, 151936}};
    size_t n_shapes = 3;
    if (argc > 4) { /* one shape of one's own */
        shapes[0][0] = atoll(argv[3]), shapes[0][1] = atoll(argv[4]);
        n_shapes = 1;
    }
    int64_t T = getenv("BENCH_GEMM_TOKENS") ? atoll(getenv("BENCH_GEMM_TOKENS")) : 512;
    printf("\n| shape (n_in -> n_out) | format | MiB | gemv 1 tok us | gemv GB/s | %% of copy | gemm %lld tok ms | gemm TFLOP/s | table 1 tok us |\n",
           (long long)T);
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t si = 0; si < n_shapes; si++) {
        int64_t n_in = shapes[si][0], n_out = shapes[si][1];
        sp_mat w = make_packed((uint32_t)type, n_in, n_out);
        int copies = (int)((((size_t)256 << 20) + w.packed_bytes - 1) / w.packed_bytes);
        if (copies > 64) copies = 64;
        if (copies < 1) copies = 1;
        sp_cl_mat m[64];
        for (int i = 0; i < copies; i++) {
            m[i] = (sp_cl_mat){cl_fmt(&w), n_in, n_out, sp_cl_alloc(c, w.packed_bytes, w.packed)};
            CHECK(m[i].buf);
        }
        float *x = malloc((size_t)(n_in * T) * sizeof *x);
        for (int64_t i = 0; i < n_in * T; i++) x[i] = frand();
        cl_mem xb = sp_cl_alloc(c, (size_t)(n_in * T) * sizeof(float), x), yb = sp_cl_alloc(c, (size_t)(n_out * T) * sizeof(float), NULL);
        CHECK(xb && yb);
        double *ts = malloc((size_t)(runs * copies + copies) * sizeof *ts);
        int n = 0;
        for (int r = 0; r < runs + 1; r++)
            for (int i = 0; i < copies; i++) {
                double ns;
                CHECK(sp_cl_matmul(c, SP_CL_ACT_F32, &m[i], xb, yb, 1, NULL, NULL, SP_CL_PATH_GEMV));
                CHECK(sp_cl_last_ns(c, &ns));
                if (r > 0) ts[n++] = ns; /* the first round warms up */
            }
        qsort(ts, (size_t)n, sizeof *ts, cmp_d);
        double gemv_ns = ts[n / 2];
        n = 0;
        int gemm_runs = runs < 5 ? runs : 5;
        for (int r = 0; r < gemm_runs + 1; r++) {
            double ns;
            CHECK(sp_cl_matmul(c, SP_CL_ACT_F32, &m[r % copies], xb, yb, T, NULL, NULL, SP_CL_PATH_GEMM));
            CHECK(sp_cl_last_ns(c, &ns));
            if (r > 0) ts[n++] = ns;
        }
        qsort(ts, (size_t)n, sizeof *ts, cmp_d);
        double gemm_ns = ts[n / 2];
        /* the table, as the engine calls it */
        const sp_kernels *k = sp_kernels_opencl();
        double table_us = -1;
        if (k) {
            float *y = malloc((size_t)n_out * sizeof *y);
            k->matmul(&w, x, y, 1, NULL); /* uploads the matrix */
            double s = now_s();
            for (int r = 0; r < runs; r++) k->matmul(&w, x, y, 1, NULL);
            table_us = (now_s() - s) / runs * 1e6;
            free(y);
        }
        double gbs = (double)w.packed_bytes / gemv_ns;
        printf("| %lld -> %lld | %s | %.1f | %.1f | %.0f | %.0f%% | %.3f | %.2f | %.0f |\n", (long long)n_in, (long long)n_out,
               tname, w.packed_bytes / 1048576.0, gemv_ns / 1e3, gbs, 100 * gbs / copy_gbs, gemm_ns / 1e6,
               2.0 * n_in * n_out * T / gemm_ns / 1e3, table_us);
        fflush(stdout);
        for (int i = 0; i < copies; i++) clReleaseMemObject(m[i].buf);
        clReleaseMemObject(xb);
        clReleaseMemObject(yb);
        free(ts);
        free(x);
        free((void *)w.data);
        sp_mat_unpack(&w);
    }
    sp_cl_close(c);
    return 0;
}
