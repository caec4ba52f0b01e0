/* bench/bench_tok.c — tokenizer throughput: encodes ~1 MB of text as one string and prints MB/s
 * for encode and for streaming decode (and whether the decode gives the text back), per vocabulary.
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 -I. bench/bench_tok.c engine/tok*.c \
 *       storage/gguf_read.c storage/gguf_write.c kernels/types.c -lpcre2-8 -lm -o /tmp/bench_tok
 * Run: /tmp/bench_tok [TEXT_FILE [VOCAB.gguf ...]]
 *   default text: $SPARROW_SHARED (else ../shared)/design/ARCHITECTURE.md (English prose), repeated
 *   to 1 MB; default vocabularies: tokenizers/ggml-vocab-{llama-bpe,qwen2,llama-spm,gpt-2,bert-bge}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/tok.h"
#include "storage/gguf.h"

#define TARGET_BYTES (1u << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(buf, cap);
            if (!p) break;
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Encode text[0..len) with one vocabulary (best of a few runs), then stream-decode it. */
static int bench_vocab(const char *vocab, const char *text, size_t len) {
    char err[512];
    sp_gguf *g = sp_gguf_open(vocab, err, sizeof err);
    if (!g) return fprintf(stderr, "bench_tok: %s\n", err), 1;
    sp_tok *t = sp_tok_from_gguf(g, err, sizeof err);
    sp_gguf_close(g);
    if (!t) return fprintf(stderr, "bench_tok: %s: %s\n", vocab, err), 1;
    const char *base = strrchr(vocab, '/');
    printf("%s\n", base ? base + 1 : vocab);

    int32_t max = (int32_t)(len * 3 + 16);
    int32_t *ids = malloc((size_t)max * sizeof *ids);
    const int reps = 5;
    double best = 1e30;
    int32_t n = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        n = sp_tok_encode(t, text, len, false, false, ids, max);
        double dt = now_s() - t0;
        if (n < 0) return fprintf(stderr, "bench_tok: encode failed\n"), 1;
        if (dt < best) best = dt;
    }
    printf("  encode: %.2f MB in %.1f ms -> %.1f MB/s (%d tokens, best of %d)\n", (double)len / 1e6, best * 1e3,
           (double)len / 1e6 / best, n, reps);

    int32_t cap = sp_detok_max_bytes(t);
    char *out = malloc(len * 3 + (size_t)cap + 16);
    size_t out_bytes = 0;
    double t0 = now_s();
    sp_detok d;
    sp_detok_init(&d, t, sp_tok_add_space_prefix(t) || sp_tok_get_kind(t) == SP_TOK_WPM);
    for (int32_t i = 0; i < n; i++) {
        int32_t k = sp_detok_push(&d, ids[i], out + out_bytes, cap);
        if (k > 0) out_bytes += (size_t)k;
    }
    int32_t k = sp_detok_flush(&d, out + out_bytes, cap);
    if (k > 0) out_bytes += (size_t)k;
    double dt = now_s() - t0;
    bool same = out_bytes == len && memcmp(out, text, len) == 0;
    printf("  decode: %d tokens in %.1f ms -> %.1f MB/s (%s)\n", n, dt * 1e3, (double)out_bytes / 1e6 / dt,
           same ? "gives the text back" : "differs from the text");
    free(out);
    free(ids);
    sp_tok_free(t);
    return 0;
}

int main(int argc, char **argv) {
    const char *shared = getenv("SPARROW_SHARED");
    if (!shared || !*shared) shared = "../shared";
    char textpath[1100];
    if (argc > 1) snprintf(textpath, sizeof textpath, "%s", argv[1]);
    else snprintf(textpath, sizeof textpath, "%s/design/ARCHITECTURE.md", shared);

    size_t src_len;
    char *src = read_all(textpath, &src_len);
    if (!src || src_len == 0) return fprintf(stderr, "bench_tok: cannot read %s\n", textpath), 1;
    /* test-vector separators (when a .inp file is the text) become nothing */
    size_t w = 0;
    static const char sep[] = "__ggml_vocab_test__";
    for (size_t i = 0; i < src_len;) {
        if (src_len - i >= sizeof sep - 1 && memcmp(src + i, sep, sizeof sep - 1) == 0) i += sizeof sep - 1;
        else src[w++] = src[i++];
    }
    src_len = w;
    size_t len = 0;
    char *text = malloc(TARGET_BYTES + src_len);
    while (len < TARGET_BYTES) {
        memcpy(text + len, src, src_len);
        len += src_len;
    }
    printf("text: %s, repeated to %.2f MB\n", textpath, (double)len / 1e6);

    static const char *const defaults[] = {"llama-bpe", "qwen2", "llama-spm", "gpt-2", "bert-bge"};
    int rc = 0;
    if (argc > 2) {
        for (int i = 2; i < argc; i++) rc |= bench_vocab(argv[i], text, len);
    } else {
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
            char vocab[1200];
            snprintf(vocab, sizeof vocab, "%s/tokenizers/ggml-vocab-%s.gguf", shared, defaults[i]);
            rc |= bench_vocab(vocab, text, len);
        }
    }
    free(text);
    free(src);
    return rc;
}
