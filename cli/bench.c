/* cli/bench.c — `sparrow bench`: the engine's speed as llama-bench measures it. pp = one batch of p
 * prompt tokens (logits of the last token only), tg = n tokens fed one at a time from an empty
 * context (each with its logits), each repeated r times after one warm-up run; prints t/s mean ±
 * stddev as a table or a JSON array. Also the weight bytes one decode step reads and, with --bw, a
 * memory-bandwidth probe (a multi-threaded read over 512 MiB) and the decode roofline it implies. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "engine/model.h"

typedef struct {
    const char *model;
    const char *kernels;
    int64_t n_prompt, n_gen, threads, reps;
    bool json, bw;
} bench_opts;

typedef struct {
    char name[32];
    double mean, sd;
} bench_result;

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: sparrow bench -m MODEL.gguf [options]\n"
            "  -p, --n-prompt N    prompt tokens processed in one batch (default 512; 0 = skip pp)\n"
            "  -n, --n-gen N       tokens generated one at a time from an empty context (default 128; 0 = skip)\n"
            "  -t, --threads N     compute threads (default: all online CPUs)\n"
            "  -r, --reps N        repetitions of each test after a warm-up (default 3)\n"
            "  --kernels NAME      kernel table: auto (default), ref, avx2\n"
            "  --bw                also measure memory read bandwidth and print the tg roofline\n"
            "  --json              one JSON array of {test, tokens_per_s, stddev, threads, model}\n");
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    o->n_prompt = 512;
    o->n_gen = 128;
    o->reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { bench_usage(stdout); exit(0); }
        if (!strcmp(a, "--json")) { o->json = true; continue; }
        if (!strcmp(a, "--bw")) { o->bw = true; continue; }
        if (!v) { fprintf(stderr, "sparrow bench: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--kernels")) o->kernels = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = sp_conf_parse_i64(v, 0, 1 << 20, &o->n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = sp_conf_parse_i64(v, 0, 1 << 20, &o->n_gen);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = sp_conf_parse_i64(v, 1, 1024, &o->threads);
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) ok = sp_conf_parse_i64(v, 1, 1000, &o->reps);
        else { fprintf(stderr, "sparrow bench: unknown option '%s' (see --help)\n", a); return 2; }
        if (!ok) { fprintf(stderr, "sparrow bench: invalid value '%s' for %s\n", v, a); return 2; }
        i++;
    }
    if (!o->model) { fprintf(stderr, "sparrow bench: no model (-m FILE)\n"); return 2; }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One timed run: pp feeds all tokens at once, tg one at a time; both from an empty context. */
static double run_once(sp_ctx *c, const int32_t *toks, int64_t n, bool batch, float *logits) {
    char err[256];
    sp_ctx_reset(c);
    double t0 = now_s();
    if (batch) {
        if (sp_ctx_eval(c, toks, (int32_t)n, logits, false, err, sizeof err) != 0) goto fail;
    } else {
        for (int64_t i = 0; i < n; i++)
            if (sp_ctx_eval(c, toks + i, 1, logits, false, err, sizeof err) != 0) goto fail;
    }
    return now_s() - t0;
fail:
    fprintf(stderr, "sparrow bench: %s\n", err);
    return -1;
}

static bool measure(sp_ctx *c, const int32_t *toks, int64_t n, bool batch, int64_t reps, float *logits, bench_result *r) {
    snprintf(r->name, sizeof r->name, "%s%lld", batch ? "pp" : "tg", (long long)n);
    if (run_once(c, toks, n, batch, logits) < 0) return false; /* warm-up */
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < reps; i++) {
        double t = run_once(c, toks, n, batch, logits);
        if (t < 0) return false;
        double tps = (double)n / t;
        sum += tps;
        sum2 += tps * tps;
    }
    r->mean = sum / (double)reps;
    r->sd = reps > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / (double)reps) / (double)(reps - 1))) : 0.0;
    return true;
}

/* ---- memory-bandwidth probe: every thread sums its share of a 512 MiB buffer ---- */

typedef struct {
    const uint64_t *buf;
    int64_t n;
    uint64_t sink[256];
    sp_pool *pool;
} bw_job;

static void bw_worker(void *arg, int64_t i0, int64_t i1, int ith) {
    bw_job *j = arg;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t i = i0 * 8; i < i1 * 8; i += 8) {
        a += j->buf[i] + j->buf[i + 4];
        b += j->buf[i + 1] + j->buf[i + 5];
        c += j->buf[i + 2] + j->buf[i + 6];
        d += j->buf[i + 3] + j->buf[i + 7];
    }
    j->sink[ith & 255] ^= a ^ b ^ c ^ d;
}

/* Best of 5 passes, in bytes per second; 0 if the buffer cannot be had. */
static double probe_bandwidth(sp_pool *pool) {
    size_t bytes = (size_t)512 << 20;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    bw_job j = {.buf = buf, .n = (int64_t)(bytes / 8), .pool = pool};
    int64_t units = j.n / 8, chunk = units / 1024; /* 4 KiB x 128 chunks: threads stream apart */
    double best = 0;
    for (int k = 0; k < 5; k++) {
        double t0 = now_s();
        sp_pool_for(pool, units, chunk, bw_worker, &j);
        double bw = (double)bytes / (now_s() - t0);
        if (bw > best) best = bw;
    }
    free(buf);
    return best;
}

static uint64_t count_params(const sp_model *m) {
    uint64_t n = 0;
    for (uint64_t i = 0; i < sp_gguf_n_tensors(m->gguf); i++) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(m->gguf, i);
        n += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    return n;
}

static void print_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static void report(const bench_opts *o, const sp_model *m, const bench_result *res, int n_res, double bw) {
    int threads = sp_model_threads(m);
    double bpt = (double)sp_model_bytes_per_token(m);
    if (o->json) {
        printf("[");
        for (int i = 0; i < n_res; i++) {
            printf("%s\n  {\"test\": \"%s\", \"tokens_per_s\": %.3f, \"stddev\": %.3f, \"threads\": %d, \"model\": ",
                   i ? "," : "", res[i].name, res[i].mean, res[i].sd, threads);
            print_json_str(o->model);
            printf("}");
        }
        printf("\n]\n");
    } else {
        const char *base = strrchr(o->model, '/');
        base = base ? base + 1 : o->model;
        printf("| %-32s | %9s | %9s | %-7s | %7s | %7s | %20s |\n", "model", "size", "params", "kernels", "threads", "test", "t/s");
        printf("| %.32s | %.9s | %.9s | %.7s | %.7s | %.7s | %.20s |\n", "--------------------------------", "---------",
               "---------", "-------", "-------", "-------", "--------------------");
        for (int i = 0; i < n_res; i++)
            printf("| %-32s | %5.0f MiB | %7.1f M | %-7s | %7d | %7s | %10.2f ± %7.2f |\n", base,
                   (double)sp_model_weight_bytes(m) / 1048576.0, (double)count_params(m) / 1e6, m->k->name, threads,
                   res[i].name, res[i].mean, res[i].sd);
    }
    FILE *f = o->json ? stderr : stdout;
    fprintf(f, "weights read per decoded token: %.1f MiB (repacked for %s: %.1f MiB)\n", bpt / 1048576.0,
            m->k->name, (double)m->packed_bytes / 1048576.0);
    if (bw > 0)
        fprintf(f, "memory read bandwidth (%d threads, best of 5 over 512 MiB): %.1f GB/s -> tg roofline %.1f t/s\n",
                threads, bw / 1e9, bw / bpt);
}

int sp_cli_bench(int argc, char **argv) {
    bench_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    const sp_kernels *k = sp_kernels_select(o.kernels);
    if (!k) {
        fprintf(stderr, "sparrow bench: kernels unknown or unsupported on this CPU (known: %s)\n", sp_kernels_names());
        return 2;
    }
    char err[512];
    sp_model *m = sp_model_load_with(o.model, k, err, sizeof err);
    if (!m) { fprintf(stderr, "sparrow bench: %s: %s\n", o.model, err); return 1; }
    if (o.threads > 0 && !sp_model_set_threads(m, (int)o.threads)) {
        fprintf(stderr, "sparrow bench: cannot start %lld threads\n", (long long)o.threads);
        sp_model_free(m);
        return 1;
    }
    int64_t n_ctx = o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen;
    sp_ctx *c = sp_ctx_new(m, (int32_t)(n_ctx > 0 ? n_ctx : 1), err, sizeof err);
    int32_t *toks = malloc((size_t)(n_ctx > 0 ? n_ctx : 1) * sizeof *toks);
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
    bench_result res[2];
    int n_res = 0;
    rc = 1;
    if (!c || !toks || !logits) {
        fprintf(stderr, "sparrow bench: %s\n", c ? "out of memory" : err);
        goto done;
    }
    uint64_t s = 0x9E3779B97F4A7C15u; /* fixed pseudo-random prompt: speed does not depend on it */
    for (int64_t i = 0; i < n_ctx; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        toks[i] = (int32_t)((s >> 33) % (uint64_t)m->hp.n_vocab);
    }
    if (o.n_prompt > 0 && !measure(c, toks, o.n_prompt, true, o.reps, logits, &res[n_res++])) goto done;
    if (o.n_gen > 0 && !measure(c, toks, o.n_gen, false, o.reps, logits, &res[n_res++])) goto done;
    report(&o, m, res, n_res, o.bw ? probe_bandwidth(m->pool) : 0);
    rc = 0;
done:
    free(logits);
    free(toks);
    sp_ctx_free(c);
    sp_model_free(m);
    return rc;
}
