/* bench/bench_tok.c — tokenizer throughput: encodes ~1 MB of text (the vocabulary test inputs,
 * repeated) as one string and prints MB/s for encode and for streaming decode.
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -I. bench/bench_tok.c engine/tok.c engine/tok_spm.c \
 *       storage/gguf_read.c storage/gguf_write.c kernels/types.c -lm -o /tmp/bench_tok
 * Run: /tmp/bench_tok [VOCAB.gguf [TEXT_FILE]]
 *   default vocab: $SPARROW_SHARED (else ../shared)/tokenizers/ggml-vocab-llama-spm.gguf, and its
 *   .inp file as the text. */
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

int main(int argc, char **argv) {
    const char *shared = getenv("SPARROW_SHARED");
    if (!shared || !*shared) shared = "../shared";
    char vocab[1024], textpath[1100];
    snprintf(vocab, sizeof vocab, "%s", argc > 1 ? argv[1] : "");
    if (argc <= 1) snprintf(vocab, sizeof vocab, "%s/tokenizers/ggml-vocab-llama-spm.gguf", shared);
    if (argc > 2) snprintf(textpath, sizeof textpath, "%s", argv[2]);
    else snprintf(textpath, sizeof textpath, "%s.inp", vocab);

    char err[512];
    sp_gguf *g = sp_gguf_open(vocab, err, sizeof err);
    if (!g) return fprintf(stderr, "bench_tok: %s\n", err), 1;
    sp_tok *t = sp_tok_from_gguf(g, err, sizeof err);
    sp_gguf_close(g);
    if (!t) return fprintf(stderr, "bench_tok: %s\n", err), 1;

    size_t src_len;
    char *src = read_all(textpath, &src_len);
    if (!src || src_len == 0) return fprintf(stderr, "bench_tok: cannot read %s\n", textpath), 1;
    /* the test-vector separators become newlines */
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

    int32_t max = (int32_t)(len * 3 + 16);
    int32_t *ids = malloc((size_t)max * sizeof *ids);
    const int reps = 5;
    double best = 1e30;
    int32_t n = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        n = sp_tok_encode(t, text, len, true, false, ids, max);
        double dt = now_s() - t0;
        if (n < 0) return fprintf(stderr, "bench_tok: encode failed\n"), 1;
        if (dt < best) best = dt;
    }
    printf("encode: %.2f MB in %.1f ms -> %.1f MB/s (%d tokens, best of %d)\n", (double)len / 1e6, best * 1e3,
           (double)len / 1e6 / best, n, reps);

    int32_t cap = sp_detok_max_bytes(t);
    char *buf = malloc((size_t)cap);
    size_t out_bytes = 0;
    double t0 = now_s();
    sp_detok d;
    sp_detok_init(&d, t, true);
    for (int32_t i = 0; i < n; i++) {
        int32_t k = sp_detok_push(&d, ids[i], buf, cap);
        if (k > 0) out_bytes += (size_t)k;
    }
    double dt = now_s() - t0;
    printf("decode: %d tokens in %.1f ms -> %.1f MB/s\n", n, dt * 1e3, (double)out_bytes / 1e6 / dt);

    free(buf);
    free(ids);
    free(text);
    free(src);
    sp_tok_free(t);
    return 0;
}
