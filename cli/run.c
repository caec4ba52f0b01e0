/* cli/run.c — `sparrow run`: load a model, feed a prompt (text or ids), stream the generated text to
 * stdout as each token completes a UTF-8 character, and report prompt / generation speed on stderr.
 * With no -m it runs the default tiny random-weight model (made by synth on first use). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "engine/model.h"
#include "engine/sampler.h"

#define MAX_BIAS 256

typedef struct {
    const char *model;
    const char *prompt;
    const char *prompt_ids;
    const char *logits_out;
    const char *kernels;
    int64_t threads;
    int64_t n_predict;
    int64_t n_ctx;
    bool echo;
    bool ignore_eos;
    bool no_weight_cache;
    sp_sampler_params sp;
    sp_logit_bias bias[MAX_BIAS];
} run_opts;

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: sparrow run [-m MODEL.gguf] (-p PROMPT | --prompt-ids \"1 403 407\") [options]\n"
            "  -m, --model FILE        GGUF model (default: a tiny random-weight model made by synth)\n"
            "  -p, --prompt TEXT       prompt text (BOS added as the vocabulary asks)\n"
            "  --prompt-ids \"IDS\"      feed these token ids instead of text\n"
            "  -n, --n-predict N       tokens to generate (default 128; -1 = until EOS or context full)\n"
            "  -c, --ctx-size N        context length (default: the model's)\n"
            "  --temp T                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K               (default 40; 0 = off)\n"
            "  --top-p P               (default 0.95; 1 = off)\n"
            "  --min-p P               (default 0.05; 0 = off)\n"
            "  --repeat-penalty R      (default 1 = off)\n"
            "  --repeat-last-n N       penalty window (default 64; -1 = all)\n"
            "  --presence-penalty P    (default 0)\n"
            "  --frequency-penalty P   (default 0)\n"
            "  --logit-bias ID=BIAS    add BIAS to token ID's logit (repeatable; BIAS may be -inf)\n"
            "  -s, --seed S            sampler seed (default 0; same seed, same text)\n"
            "  --ignore-eos            keep generating past end-of-sequence tokens\n"
            "  --no-echo               do not print the prompt before the generated text\n"
            "  -t, --threads N         compute threads (default: all online CPUs)\n"
            "  --kernels NAME          kernel table: auto (default), ref, avx2 (or env SPARROW_KERNELS)\n"
            "  --no-weight-cache       repack the weights in memory instead of mapping the cache file\n"
            "                          ($SPARROW_CACHE_DIR, else ~/.cache/sparrow) that later runs reuse\n"
            "  --logits-out FILE       write the logits of every prompt position (float32 LE\n"
            "                          [n_prompt][n_vocab]) and exit after the prompt if -n 0\n");
}

static bool parse_bias(run_opts *o, int *n_bias, const char *s) {
    if (*n_bias >= MAX_BIAS) return false;
    const char *eq = strchr(s, '=');
    if (!eq) return false;
    char id[32];
    size_t len = (size_t)(eq - s);
    if (len == 0 || len >= sizeof id) return false;
    memcpy(id, s, len);
    id[len] = 0;
    int64_t tok;
    float b;
    if (!sp_conf_parse_i64(id, 0, INT32_MAX, &tok)) return false;
    if (!strcmp(eq + 1, "-inf")) b = -INFINITY;
    else if (!sp_conf_parse_f32(eq + 1, -1e9f, 1e9f, &b)) return false;
    o->bias[*n_bias] = (sp_logit_bias){(int32_t)tok, b};
    (*n_bias)++;
    return true;
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, run_opts *o) {
    o->sp = sp_sampler_default_params();
    o->n_predict = 128;
    o->echo = true;
    int n_bias = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        int64_t iv;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { run_usage(stdout); exit(0); }
        else if (!strcmp(a, "--ignore-eos")) { o->ignore_eos = true; takes = false; }
        else if (!strcmp(a, "--no-echo")) { o->echo = false; takes = false; }
        else if (!strcmp(a, "--no-weight-cache")) { o->no_weight_cache = true; takes = false; }
        else if (!v) { fprintf(stderr, "sparrow run: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--prompt-ids")) o->prompt_ids = v;
        else if (!strcmp(a, "--logits-out")) o->logits_out = v;
        else if (!strcmp(a, "--kernels")) o->kernels = v;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = sp_conf_parse_i64(v, 1, 1024, &o->threads);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = sp_conf_parse_i64(v, -1, INT32_MAX, &o->n_predict);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = sp_conf_parse_i64(v, 0, INT32_MAX, &o->n_ctx);
        else if (!strcmp(a, "--temp")) ok = sp_conf_parse_f32(v, 0, 1e6f, &o->sp.temperature);
        else if (!strcmp(a, "--top-k")) { ok = sp_conf_parse_i64(v, 0, INT32_MAX, &iv); o->sp.top_k = (int32_t)iv; }
        else if (!strcmp(a, "--top-p")) ok = sp_conf_parse_f32(v, 0, 1, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) ok = sp_conf_parse_f32(v, 0, 1, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = sp_conf_parse_f32(v, 0, 100, &o->sp.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) { ok = sp_conf_parse_i64(v, -1, INT32_MAX, &iv); o->sp.penalty_last_n = (int32_t)iv; }
        else if (!strcmp(a, "--presence-penalty")) ok = sp_conf_parse_f32(v, -100, 100, &o->sp.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty")) ok = sp_conf_parse_f32(v, -100, 100, &o->sp.frequency_penalty);
        else if (!strcmp(a, "--logit-bias")) ok = parse_bias(o, &n_bias, v);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) ok = sp_conf_parse_u64(v, &o->sp.seed);
        else { fprintf(stderr, "sparrow run: unknown option '%s' (see --help)\n", a); return 2; }
        if (!ok) { fprintf(stderr, "sparrow run: invalid value '%s' for %s\n", v, a); return 2; }
        if (takes) i++;
    }
    o->sp.bias = o->bias;
    o->sp.n_bias = n_bias;
    if (o->prompt && o->prompt_ids) {
        fprintf(stderr, "sparrow run: give -p or --prompt-ids, not both\n");
        return 2;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parse "1 403 407" into ids; returns count or -1. */
static int32_t parse_ids(const char *s, int32_t **out) {
    int32_t cap = 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    while (ids && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) { free(ids); return -1; }
        if (n == cap) {
            int32_t *p = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!p) { free(ids); return -1; }
            ids = p;
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    return ids ? n : -1;
}

static int32_t tokenize_prompt(const sp_model *m, const char *text, int32_t **out) {
    size_t len = strlen(text);
    int32_t cap = (int32_t)(len + 8);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    int32_t n = sp_tok_encode(m->tok, text, len, true, false, ids, cap);
    if (n > cap) { /* cannot happen for SPM (at most one token per byte + BOS/EOS), but be safe */
        int32_t *p = realloc(ids, (size_t)n * sizeof *ids);
        if (!p) { free(ids); return -1; }
        ids = p;
        n = sp_tok_encode(m->tok, text, len, true, false, ids, n);
    }
    if (n < 0) { free(ids); return -1; }
    *out = ids;
    return n;
}

/* Print the text of one token (whole UTF-8 characters only) and flush, so output streams. */
static void emit(sp_detok *d, int32_t id, char *buf, int32_t cap) {
    int32_t n = sp_detok_push(d, id, buf, cap);
    if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
}

static bool write_logits(const char *path, const float *logits, int64_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    size_t w = fwrite(logits, sizeof(float), (size_t)n, f); /* x86/ARM are little-endian */
    return fclose(f) == 0 && w == (size_t)n;
}

static int generate(const run_opts *o, sp_model *m, sp_ctx *ctx, const int32_t *prompt, int32_t n_prompt) {
    char err[256];
    int32_t n_vocab = m->hp.n_vocab;
    float *logits = malloc((size_t)n_vocab * (size_t)(o->logits_out ? n_prompt : 1) * sizeof(float));
    sp_sampler *s = sp_sampler_new(&o->sp, n_vocab);
    if (!logits || !s) { fprintf(stderr, "sparrow run: out of memory\n"); free(logits); sp_sampler_free(s); return 1; }
    sp_detok d;
    sp_detok_init(&d, m->tok, o->echo); /* SentencePiece: no space before the first word */
    int32_t cap = sp_detok_max_bytes(m->tok);
    char *text = malloc((size_t)cap);
    if (!text) { fprintf(stderr, "sparrow run: out of memory\n"); free(logits); sp_sampler_free(s); return 1; }
    if (o->echo)
        for (int32_t i = 0; i < n_prompt; i++) emit(&d, prompt[i], text, cap);

    double t0 = now_s();
    int rc = 0;
    if (sp_ctx_eval(ctx, prompt, n_prompt, logits, o->logits_out != NULL, err, sizeof err) != 0) {
        fprintf(stderr, "sparrow run: %s\n", err);
        rc = 1;
        goto done;
    }
    double t_prompt = now_s() - t0;
    if (o->logits_out && !write_logits(o->logits_out, logits, (int64_t)n_prompt * n_vocab)) {
        fprintf(stderr, "sparrow run: cannot write %s\n", o->logits_out);
        rc = 1;
        goto done;
    }
    float *last = logits + (o->logits_out ? (int64_t)(n_prompt - 1) * n_vocab : 0);

    int64_t limit = o->n_predict < 0 ? INT64_MAX : o->n_predict;
    int64_t n_gen = 0;
    double t1 = now_s();
    while (n_gen < limit) {
        int32_t tok = sp_sampler_sample(s, last);
        sp_sampler_accept(s, tok);
        n_gen++;
        if (!o->ignore_eos && sp_tok_is_eog(m->tok, tok)) break;
        emit(&d, tok, text, cap);
        if (n_gen == limit) break;
        if (sp_ctx_n_past(ctx) >= sp_ctx_n_ctx(ctx)) {
            fprintf(stderr, "\nsparrow run: context full (%d tokens)\n", sp_ctx_n_ctx(ctx));
            break;
        }
        if (sp_ctx_eval(ctx, &tok, 1, logits, false, err, sizeof err) != 0) {
            fprintf(stderr, "\nsparrow run: %s\n", err);
            rc = 1;
            break;
        }
        last = logits;
    }
    double t_gen = now_s() - t1;
    char tail[16];
    int32_t nt = sp_detok_flush(&d, tail, sizeof tail);
    if (nt > 0) fwrite(tail, 1, (size_t)nt, stdout);
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "sparrow run: prompt %d tokens in %.3f s (%.1f tok/s); generated %lld tokens in %.3f s (%.1f tok/s)\n",
            n_prompt, t_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), (long long)n_gen, t_gen,
            n_gen / (t_gen > 0 ? t_gen : 1e-9));
done:
    free(text);
    sp_sampler_free(s);
    free(logits);
    return rc;
}

int sp_cli_run(int argc, char **argv) {
    run_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    char defpath[1024];
    if (!o.model) {
        if (!sp_cli_default_model(defpath, sizeof defpath)) return 1;
        o.model = defpath;
        if (!o.prompt && !o.prompt_ids) o.prompt = "Once upon a time";
    }
    if (!o.prompt && !o.prompt_ids) {
        fprintf(stderr, "sparrow run: no prompt (-p TEXT or --prompt-ids IDS)\n");
        return 2;
    }
    char err[512];
    const sp_kernels *k = sp_kernels_select(o.kernels);
    if (!k) {
        fprintf(stderr, "sparrow run: kernels '%s' unknown or unsupported on this CPU (known: %s)\n",
                o.kernels ? o.kernels : getenv("SPARROW_KERNELS"), sp_kernels_names());
        return 2;
    }
    char cache_dir[4096];
    sp_load_opts lo = {.kernels = k, .progress = true};
    if (!o.no_weight_cache && sp_conf_cache_dir(cache_dir, sizeof cache_dir)) lo.cache_dir = cache_dir;
    sp_model *m = sp_model_load_opts(o.model, &lo, err, sizeof err);
    if (!m) {
        fprintf(stderr, "sparrow run: %s: %s\n", o.model, err);
        return 1;
    }
    if (m->wcache_note[0]) fprintf(stderr, "sparrow run: %s\n", m->wcache_note);
    if (o.threads > 0 && !sp_model_set_threads(m, (int)o.threads)) {
        fprintf(stderr, "sparrow run: cannot start %lld threads\n", (long long)o.threads);
        sp_model_free(m);
        return 1;
    }
    if (m->synthetic)
        fprintf(stderr, "sparrow run: NOTE: %s has RANDOM weights (made by `sparrow synth`): its text is "
                        "meaningless, for demos and benchmarks only\n", o.model);
    int32_t *prompt = NULL;
    int32_t n_prompt = o.prompt_ids ? parse_ids(o.prompt_ids, &prompt) : tokenize_prompt(m, o.prompt, &prompt);
    sp_ctx *ctx = NULL;
    rc = 1;
    if (n_prompt < 0) fprintf(stderr, "sparrow run: cannot parse the prompt\n");
    else if (n_prompt == 0) fprintf(stderr, "sparrow run: the prompt has no tokens\n");
    else if (!(ctx = sp_ctx_new(m, (int32_t)o.n_ctx, err, sizeof err))) fprintf(stderr, "sparrow run: %s\n", err);
    else rc = generate(&o, m, ctx, prompt, n_prompt);
    sp_ctx_free(ctx);
    free(prompt);
    sp_model_free(m);
    return rc;
}
