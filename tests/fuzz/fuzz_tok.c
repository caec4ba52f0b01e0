/* tests/fuzz/fuzz_tok.c — libFuzzer target for the tokenizers (engine/tok*.c). A few vocabularies
 * of every kind are loaded once from $SPARROW_SHARED/tokenizers (else ../shared relative to the
 * working directory; a vocabulary that does not load is skipped). Input layout: byte 0 picks the
 * vocabulary and the flags (parse_special, add_special, small output buffers), byte 1 how much
 * of the rest is text; the text is encoded, its ids are decoded through sp_detok, and the
 * remaining bytes are read as arbitrary ids (valid or not) for sp_detok and sp_tok_piece.
 * Invariants: encode never fails, the count does not depend on the buffer size, and for the
 * byte-level BPE vocabularies the pieces (control text included) give the input back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok.h"
#include "storage/gguf.h"

typedef struct {
    const char *name;
    bool lossless; /* byte-level BPE with every byte character: pieces give the input back */
    sp_tok *tok;
} fuzz_vocab;

static fuzz_vocab vocabs[] = {
    {"llama-spm", false, NULL}, {"phi-3", false, NULL},      {"gpt-2", true, NULL},
    {"qwen2", true, NULL},      {"llama-bpe", true, NULL},   {"mpt", false, NULL},
    {"falcon", false, NULL},    {"deepseek-llm", false, NULL}, {"deepseek-coder", false, NULL},
    {"bert-bge", false, NULL},
};
#define N_VOCABS (sizeof vocabs / sizeof vocabs[0])

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_tok: invariant failed: %s\n", what);
        abort();
    }
}

static void load_vocabs(void) {
    const char *shared = getenv("SPARROW_SHARED");
    if (!shared || !*shared) shared = "../shared";
    int loaded = 0;
    for (size_t i = 0; i < N_VOCABS; i++) {
        char path[1024], err[256];
        snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-%s.gguf", shared, vocabs[i].name);
        sp_gguf *g = sp_gguf_open(path, err, sizeof err);
        if (!g) continue;
        vocabs[i].tok = sp_tok_from_gguf(g, err, sizeof err);
        sp_gguf_close(g);
        loaded += vocabs[i].tok != NULL;
    }
    if (!loaded) fprintf(stderr, "fuzz_tok: no vocabulary loaded from %s/tokenizers\n", shared);
}

/* Stream ids through a detokenizer; small_cap exercises the "does not fit" path. */
static void detok_ids(const sp_tok *t, const int32_t *ids, int32_t n, bool small_cap) {
    int32_t cap = sp_detok_max_bytes(t);
    char *buf = malloc((size_t)cap);
    check(buf != NULL, "malloc");
    sp_detok d;
    sp_detok_init(&d, t, n & 1);
    for (int32_t i = 0; i < n; i++) {
        bool valid = ids[i] >= 0 && ids[i] < sp_tok_n_vocab(t);
        if (small_cap) sp_detok_push(&d, ids[i], buf, 2); /* may fail; then nothing is consumed */
        int32_t w = sp_detok_push(&d, ids[i], buf, cap);
        check(valid ? w >= 0 && w <= cap : w == -1, "detok push result");
    }
    check(sp_detok_flush(&d, buf, cap) >= 0, "detok flush");
    free(buf);
}

/* The pieces of ids (control text included) must be the input again. */
static void check_lossless(const sp_tok *t, const int32_t *ids, int32_t n, const char *text, size_t len) {
    char *back = malloc(len + 1);
    check(back != NULL, "malloc");
    size_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t w = sp_tok_piece(t, ids[i], true, back + k, (int32_t)(len - k));
        check(w >= 0 && (size_t)w <= len - k, "piece fits the input length");
        k += (size_t)w;
    }
    check(k == len && memcmp(back, text, len) == 0, "byte-level BPE round trip");
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool init;
    if (!init) {
        load_vocabs();
        init = true;
    }
    if (size < 2) return 0;
    fuzz_vocab *v = &vocabs[data[0] % N_VOCABS];
    if (!v->tok) return 0;
    bool parse_special = data[0] & 0x10, add_special = data[0] & 0x20, small = data[0] & 0x40;
    size_t rest = size - 2, text_len = rest * data[1] / 255;
    const char *text = (const char *)data + 2;

    int32_t need = sp_tok_encode(v->tok, text, text_len, add_special, parse_special, NULL, 0);
    check(need >= 0, "encode succeeds");
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    check(ids != NULL, "malloc");
    check(sp_tok_encode(v->tok, text, text_len, add_special, parse_special, ids, need) == need, "same count");
    if (small && need > 1) check(sp_tok_encode(v->tok, text, text_len, add_special, parse_special, ids, need / 2) == need,
                                 "count with a short buffer");
    for (int32_t i = 0; i < need; i++) check(ids[i] >= 0 && ids[i] < sp_tok_n_vocab(v->tok), "id in range");
    detok_ids(v->tok, ids, need, small);
    if (v->lossless && !add_special) check_lossless(v->tok, ids, need, text, text_len);
    free(ids);

    /* the rest: arbitrary ids (some out of range) */
    const uint8_t *p = data + 2 + text_len;
    size_t n_raw = (size - 2 - text_len) / 3;
    int32_t *raw = malloc((n_raw + 1) * sizeof *raw);
    check(raw != NULL, "malloc");
    int32_t n_vocab = sp_tok_n_vocab(v->tok);
    for (size_t i = 0; i < n_raw; i++) {
        uint32_t x = (uint32_t)p[3 * i] | (uint32_t)p[3 * i + 1] << 8 | (uint32_t)p[3 * i + 2] << 16;
        raw[i] = (int32_t)(x % ((uint32_t)n_vocab + 16)) - 8;
        char piece[64];
        int32_t w = sp_tok_piece(v->tok, raw[i], x & 1, piece, (int32_t)(x >> 20 & 63));
        check((raw[i] >= 0 && raw[i] < n_vocab) ? w >= 0 : w == -1, "piece result");
        if (raw[i] >= 0 && raw[i] < n_vocab) check(sp_tok_text(v->tok, raw[i]) != NULL, "token text");
    }
    detok_ids(v->tok, raw, (int32_t)n_raw, small);
    free(raw);
    return 0;
}
