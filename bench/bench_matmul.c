/* bench/bench_matmul.c — one matmul kernel in isolation: GOPS (2 · n_in · n_out · n_tok per call)
 * of a kernel table on random weights of one format, measured in the calling thread's CPU time
 * (robust on a shared machine) and in wall time. For tuning micro-kernels.
 * Build (from the repository root, after building the kernels library in build-k):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -I. bench/bench_matmul.c build-k/libsp_kernels.a -lm -lpthread -o /tmp/bench_matmul
 * Run: /tmp/bench_matmul [TYPE [N_IN [N_OUT [N_TOK [THREADS [KERNELS]]]]]]   (default q4_0 896 4864 256 1 auto) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/types.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int type = sp_type_from_name(argc > 1 ? argv[1] : "q4_0");
    int64_t n_in = argc > 2 ? atoll(argv[2]) : 896, n_out = argc > 3 ? atoll(argv[3]) : 4864;
    int64_t n_tok = argc > 4 ? atoll(argv[4]) : 256;
    int threads = argc > 5 ? atoi(argv[5]) : 1;
    const sp_kernels *k = sp_kernels_select(argc > 6 ? argv[6] : NULL);
    if (type < 0 || !k) { fprintf(stderr, "bad type or kernels\n"); return 2; }
    size_t rb = sp_type_row_bytes((uint32_t)type, n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof *row), *x = malloc((size_t)(n_in * n_tok) * sizeof *x);
    float *y = malloc((size_t)(n_out * n_tok) * sizeof *y);
    srand(1);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = (float)rand() / RAND_MAX - 0.5f;
        sp_quant_row((uint32_t)type, row, data + (size_t)o * rb, n_in);
    }
    for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    sp_mat w = {.type = (uint32_t)type, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data};
    if (k->pack) k->pack(&w);
    sp_pool *pool = sp_pool_new(threads);
    k->matmul(&w, x, y, n_tok, pool);
    int reps = 0;
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
    while (clock_s(CLOCK_MONOTONIC) - w0 < 2.0) {
        k->matmul(&w, x, y, n_tok, pool);
        reps++;
    }
    double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0, wall = clock_s(CLOCK_MONOTONIC) - w0;
    double ops = 2.0 * (double)n_in * (double)n_out * (double)n_tok * reps;
    printf("%s %s %lldx%lld tok %lld thr %d: %.1f GOPS per CPU-second, %.1f GOPS wall (%d reps)\n", k->name,
           sp_type_get((uint32_t)type)->name, (long long)n_out, (long long)n_in, (long long)n_tok, threads,
           ops / cpu * 1e-9, ops / wall * 1e-9, reps);
    sp_pool_free(pool);
    sp_mat_unpack(&w);
    free(data); free(row); free(x); free(y);
    return 0;
}
