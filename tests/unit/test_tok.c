/* tests/unit/test_tok.c — the tokenizer (engine/tok*.c): SentencePiece encoding against the
 * stories260K reference prompts and the llama-spm / phi-3 vocabulary test vectors, round trips on
 * the full Llama 2 vocabulary, special-token parsing, streaming detokenization and load errors;
 * byte-level BPE and WordPiece against the vectors of every other vocabulary in
 * ../shared/tokenizers (with decode round trips for the lossless ones), special tokens, add_special,
 * multi-byte characters split across tokens, every pre-tokenizer name, and `sparrow tokenize`. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok.h"
#include "storage/gguf.h"
#include "testutil.h"

/* ---- helpers ---- */

typedef struct {
    sp_gguf *g;
    sp_tok *t;
} tok_fixture;

static tok_fixture load(const char *rel) {
    char err[256] = "";
    tok_fixture f = {0};
    f.g = sp_gguf_open(tu_shared(rel), err, sizeof err);
    cr_assert(f.g, "open %s: %s", rel, err);
    f.t = sp_tok_from_gguf(f.g, err, sizeof err);
    cr_assert(f.t, "tokenizer %s: %s", rel, err);
    return f;
}

static void unload(tok_fixture f) {
    sp_tok_free(f.t);
    sp_gguf_close(f.g);
}

/* Encode into a malloc'd array (*n ids). */
static int32_t *enc(const sp_tok *t, const char *text, size_t len, bool add_special, bool parse_special, int32_t *n) {
    int32_t need = sp_tok_encode(t, text, len, add_special, parse_special, NULL, 0);
    cr_assert_geq(need, 0, "encode failed");
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    int32_t got = sp_tok_encode(t, text, len, add_special, parse_special, ids, need);
    cr_assert_eq(got, need);
    *n = need;
    return ids;
}

static int32_t *enc_s(const sp_tok *t, const char *text, bool add_special, bool parse_special, int32_t *n) {
    return enc(t, text, strlen(text), add_special, parse_special, n);
}

/* Decode ids with the streaming detokenizer (plus flush) into a malloc'd NUL-terminated string. */
static char *dec(const sp_tok *t, const int32_t *ids, int32_t n, bool strip) {
    sp_detok d;
    sp_detok_init(&d, t, strip);
    int32_t step = sp_detok_max_bytes(t);
    char *s = malloc((size_t)(n + 1) * (size_t)step + 1);
    size_t len = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t w = sp_detok_push(&d, ids[i], s + len, step);
        cr_assert_geq(w, 0, "detok push failed on id %d", ids[i]);
        len += (size_t)w;
    }
    int32_t w = sp_detok_flush(&d, s + len, step);
    cr_assert_geq(w, 0);
    len += (size_t)w;
    s[len] = 0;
    return s;
}

static int32_t find_token(const sp_tok *t, const char *text) {
    for (int32_t i = 0; i < sp_tok_n_vocab(t); i++)
        if (strcmp(sp_tok_text(t, i), text) == 0) return i;
    cr_assert_fail("token '%s' not in vocabulary", text);
    return -1;
}

static int32_t byte_token(const sp_tok *t, unsigned char b) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    return find_token(t, buf);
}

static char *fmt_ids(const int32_t *ids, int32_t n) {
    char *s = malloc((size_t)n * 12 + 1);
    size_t len = 0;
    s[0] = 0;
    for (int32_t i = 0; i < n; i++) len += (size_t)sprintf(s + len, i ? " %d" : "%d", ids[i]);
    return s;
}

static bool ids_eq(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* ---- stories260K reference prompts ---- */

Test(tok, stories260k_reference_prompts) {
    static const struct {
        const char *prompt;
        int32_t ids[8];
        int32_t n;
    } ref[] = {
        {"Once upon a time", {1, 403, 407, 261, 378}, 5},
        {"Lily and Ben", {1, 317, 269, 368, 302}, 5},
        {"The little dog", {1, 291, 376, 400, 428}, 5},
        {"One day, a cat", {1, 385, 328, 432, 261, 280, 294}, 7},
    };
    tok_fixture f = load("models/stories260K.gguf");
    cr_assert_eq(sp_tok_n_vocab(f.t), 512);
    cr_assert_eq(sp_tok_bos(f.t), 1);
    cr_assert_eq(sp_tok_eos(f.t), 2);
    cr_assert(sp_tok_add_bos(f.t));
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        int32_t n;
        int32_t *ids = enc_s(f.t, ref[i].prompt, true, false, &n);
        char *got = fmt_ids(ids, n), *want = fmt_ids(ref[i].ids, ref[i].n);
        cr_expect(ids_eq(ids, n, ref[i].ids, ref[i].n), "'%s': got [%s], want [%s]", ref[i].prompt, got, want);
        char *text = dec(f.t, ids, n, true);
        cr_expect_str_eq(text, ref[i].prompt);
        free(text);
        free(got);
        free(want);
        free(ids);
    }
    unload(f);
}

/* ---- vocabulary test vectors (tokenizers/README.md) ---- */

#define SEP "\n__ggml_vocab_test__\n"

/* Run every vector of tokenizers/NAME.gguf; returns the number that failed (and reports them).
 * For a lossless vocabulary (byte-level BPE) decoding the ids must also give the input back. */
static int run_vectors_rt(const char *name, bool lossless, int *total) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf", name);
    tok_fixture f = load(rel);
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf.inp", name);
    char *inp = tu_read_file(tu_shared(rel), NULL);
    cr_assert(inp, "read %s", rel);
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf.out", name);
    char *outp = tu_read_file(tu_shared(rel), NULL);
    cr_assert(outp, "read %s", rel);

    int failed = 0, n_vec = 0;
    char *in = inp, *out = outp;
    for (char *sep; (sep = strstr(in, SEP)) != NULL; in = sep + strlen(SEP), n_vec++) {
        size_t len = (size_t)(sep - in);
        char *eol = strchr(out, '\n');
        cr_assert(eol, "%s: .out has fewer lines than .inp has inputs", name);
        *eol = 0;
        int32_t want[512], n_want = 0;
        for (char *p = out, *end; n_want < 512; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[n_want++] = (int32_t)v;
        }
        out = eol + 1;

        int32_t n;
        int32_t *ids = enc(f.t, in, len, false, false, &n);
        if (!ids_eq(ids, n, want, n_want)) {
            char *g = fmt_ids(ids, n), *w = fmt_ids(want, n_want);
            cr_log_error("%s vector %d '%.*s': got [%s], want [%s]", name, n_vec, (int)len, in, g, w);
            free(g);
            free(w);
            failed++;
        } else if (lossless) {
            char *back = dec(f.t, ids, n, false);
            if (strlen(back) != len || memcmp(back, in, len) != 0) {
                cr_log_error("%s vector %d '%.*s': decodes to '%s'", name, n_vec, (int)len, in, back);
                failed++;
            }
            free(back);
        }
        free(ids);
    }
    free(inp);
    free(outp);
    unload(f);
    *total = n_vec;
    cr_log_info("%s: %d of %d vectors match", name, n_vec - failed, n_vec);
    return failed;
}

static int run_vectors(const char *name, int *total) { return run_vectors_rt(name, false, total); }

Test(tok, vectors_llama_spm) {
    int total, failed = run_vectors("ggml-vocab-llama-spm", &total);
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d llama-spm vectors failed", failed, total);
}

Test(tok, vectors_phi3) {
    int total, failed = run_vectors("ggml-vocab-phi-3", &total);
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d phi-3 vectors failed", failed, total);
}

Test(tok, vectors_gpt_2) {
    int total, failed = run_vectors_rt("ggml-vocab-gpt-2", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d gpt-2 vectors failed", failed, total);
}

Test(tok, vectors_mpt) {
    int total, failed = run_vectors_rt("ggml-vocab-mpt", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d mpt vectors failed", failed, total);
}

Test(tok, vectors_starcoder) {
    int total, failed = run_vectors_rt("ggml-vocab-starcoder", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d starcoder vectors failed", failed, total);
}

Test(tok, vectors_refact) {
    int total, failed = run_vectors_rt("ggml-vocab-refact", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d refact vectors failed", failed, total);
}

Test(tok, vectors_falcon) {
    int total, failed = run_vectors_rt("ggml-vocab-falcon", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d falcon vectors failed", failed, total);
}

Test(tok, vectors_deepseek_llm) {
    int total, failed = run_vectors_rt("ggml-vocab-deepseek-llm", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d deepseek-llm vectors failed", failed, total);
}

Test(tok, vectors_deepseek_coder) {
    int total, failed = run_vectors_rt("ggml-vocab-deepseek-coder", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d deepseek-coder vectors failed", failed, total);
}

Test(tok, vectors_bert_bge) {
    int total, failed = run_vectors("ggml-vocab-bert-bge", &total);
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d bert-bge vectors failed", failed, total);
}

Test(tok, vectors_llama_bpe) {
    int total, failed = run_vectors_rt("ggml-vocab-llama-bpe", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d llama-bpe vectors failed", failed, total);
}

Test(tok, vectors_qwen2) {
    int total, failed = run_vectors_rt("ggml-vocab-qwen2", true, &total); /* + round trip */
    cr_expect_eq(total, 46);
    cr_expect_eq(failed, 0, "%d of %d qwen2 vectors failed", failed, total);
}

/* ---- the full Llama 2 vocabulary ---- */

Test(tok, llama2_roundtrip) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    cr_assert_eq(sp_tok_n_vocab(f.t), 32000);
    static const char *texts[] = {
        "Hello world",
        "The quick brown fox jumps over the lazy dog.\nSecond line,\ttab.",
        "héllo wörld 🦙",
        "日本語のテキスト and Ελληνικά",
        "  leading and trailing spaces  ",
        "<s> looks special but is text </s>",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t n;
        int32_t *ids = enc_s(f.t, texts[i], true, false, &n);
        cr_assert_gt(n, 1);
        cr_expect_eq(ids[0], 1, "BOS first");
        char *back = dec(f.t, ids, n, true);
        cr_expect_str_eq(back, texts[i]);
        free(back);
        free(ids);
    }
    /* the llama in "🦙" is not a vocabulary entry: it falls back to its four bytes */
    int32_t n;
    int32_t *ids = enc_s(f.t, "🦙", false, false, &n);
    int32_t want[] = {29871, byte_token(f.t, 0xF0), byte_token(f.t, 0x9F), byte_token(f.t, 0xA6), byte_token(f.t, 0x99)};
    cr_expect(ids_eq(ids, n, want, 5));
    free(ids);
    unload(f);
}

Test(tok, encode_buffer_and_empty) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    int32_t buf[3] = {-7, -7, -7};
    /* "Hello world" with BOS is 3 ids: fits exactly; with max 2 the count is still returned */
    cr_expect_eq(sp_tok_encode(f.t, "Hello world", 11, true, false, buf, 3), 3);
    cr_expect(buf[0] == 1 && buf[1] == 15043 && buf[2] == 3186);
    buf[2] = -7;
    cr_expect_eq(sp_tok_encode(f.t, "Hello world", 11, true, false, buf, 2), 3);
    cr_expect_eq(buf[2], -7, "nothing written past max");
    /* empty text: [BOS] with add_special, nothing without (no lone "▁") */
    cr_expect_eq(sp_tok_encode(f.t, "", 0, true, false, buf, 3), 1);
    cr_expect_eq(buf[0], 1);
    cr_expect_eq(sp_tok_encode(f.t, "", 0, false, false, buf, 3), 0);
    unload(f);
}

Test(tok, pieces) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    char buf[64];
    cr_expect_eq(sp_tok_piece(f.t, 15043, false, buf, sizeof buf), 6); /* "▁Hello" */
    cr_expect(memcmp(buf, " Hello", 6) == 0);
    cr_expect_eq(sp_tok_piece(f.t, 1, false, buf, sizeof buf), 0); /* control: nothing */
    cr_expect_eq(sp_tok_piece(f.t, 1, true, buf, sizeof buf), 3);
    cr_expect(memcmp(buf, "<s>", 3) == 0);
    cr_expect_eq(sp_tok_piece(f.t, 0, false, buf, sizeof buf), 5); /* unknown: its text */
    cr_expect(memcmp(buf, "<unk>", 5) == 0);
    cr_expect_eq(sp_tok_piece(f.t, byte_token(f.t, 0x0A), false, buf, sizeof buf), 1);
    cr_expect_eq(buf[0], '\n');
    /* cap smaller than the piece: full length returned, nothing past cap */
    buf[2] = 'X';
    cr_expect_eq(sp_tok_piece(f.t, 15043, false, buf, 2), 6);
    cr_expect_eq(buf[2], 'X');
    cr_expect_eq(sp_tok_piece(f.t, 32000, false, buf, sizeof buf), -1);
    cr_expect_str_eq(sp_tok_text(f.t, 15043), "\xE2\x96\x81Hello");
    cr_expect_null(sp_tok_text(f.t, -1));
    unload(f);
}

/* ---- special tokens ---- */

Test(tok, parse_special) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    int32_t n, na, nb;
    /* on: <s> and </s> become ids 1 and 2; each text fragment gets its own leading "▁" */
    int32_t *ids = enc_s(f.t, "<s>Hello</s>", false, true, &n);
    int32_t want[] = {1, 15043, 2};
    cr_expect(ids_eq(ids, n, want, 3), "got [%s]", fmt_ids(ids, n));
    free(ids);
    ids = enc_s(f.t, "<s>Hello</s>", true, true, &n);
    int32_t want2[] = {1, 1, 15043, 2};
    cr_expect(ids_eq(ids, n, want2, 4));
    free(ids);

    ids = enc_s(f.t, "Hello</s> world", false, true, &n);
    int32_t *a = enc_s(f.t, "Hello", false, false, &na);
    int32_t *b = enc_s(f.t, " world", false, false, &nb);
    cr_assert_eq(n, na + 1 + nb);
    cr_expect(ids_eq(ids, na, a, na));
    cr_expect_eq(ids[na], 2);
    cr_expect(ids_eq(ids + na + 1, nb, b, nb));
    free(a);
    free(b);
    free(ids);

    /* off: the same text is plain text — no control ids, and it decodes back verbatim */
    ids = enc_s(f.t, "<s>Hello</s>", false, false, &n);
    for (int32_t i = 0; i < n; i++) cr_expect(ids[i] != 1 && ids[i] != 2, "control id at %d", i);
    char *back = dec(f.t, ids, n, true);
    cr_expect_str_eq(back, "<s>Hello</s>");
    free(back);
    free(ids);
    unload(f);
}

Test(tok, phi3_user_defined_and_eog) {
    tok_fixture f = load("tokenizers/ggml-vocab-phi-3.gguf");
    int32_t end = find_token(f.t, "<|end|>"), eot = find_token(f.t, "<|endoftext|>");
    cr_expect(sp_tok_is_eog(f.t, eot));
    cr_expect(sp_tok_is_eog(f.t, end));
    cr_expect(!sp_tok_is_eog(f.t, 1));
    cr_expect(!sp_tok_is_eog(f.t, -1));

    /* "</s>" is user-defined in Phi-3: split out even with parse_special off, and (Phi-3 rule)
     * the whitespace after it is stripped */
    int32_t n, na, nb;
    int32_t *ids = enc_s(f.t, "a</s>  b", false, false, &n);
    int32_t *a = enc_s(f.t, "a", false, false, &na);
    int32_t *b = enc_s(f.t, "b", false, false, &nb);
    cr_assert_eq(n, na + 1 + nb, "got [%s]", fmt_ids(ids, n));
    cr_expect(ids_eq(ids, na, a, na));
    cr_expect_eq(ids[na], 2);
    cr_expect(ids_eq(ids + na + 1, nb, b, nb));
    free(a);
    free(b);
    free(ids);

    /* control tokens only with parse_special; <|end|> strips the newline after it */
    ids = enc_s(f.t, "<|user|>\nHi<|end|>\n", false, true, &n);
    int32_t user = find_token(f.t, "<|user|>");
    cr_assert_geq(n, 3);
    cr_expect_eq(ids[0], user);
    cr_expect_eq(ids[n - 1], end);
    free(ids);
    ids = enc_s(f.t, "<|end|>", false, false, &n);
    cr_expect_gt(n, 1);
    free(ids);
    unload(f);
}

/* ---- streaming detokenizer ---- */

Test(tok, detok_streams_utf8) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    sp_detok d;
    char out[64];
    /* 🦙 = F0 9F A6 99, one byte token at a time */
    static const unsigned char llama[] = {0xF0, 0x9F, 0xA6, 0x99};
    sp_detok_init(&d, f.t, false);
    for (int i = 0; i < 3; i++) cr_expect_eq(sp_detok_push(&d, byte_token(f.t, llama[i]), out, sizeof out), 0);
    cr_assert_eq(sp_detok_push(&d, byte_token(f.t, llama[3]), out, sizeof out), 4);
    cr_expect(memcmp(out, llama, 4) == 0);
    cr_expect_eq(sp_detok_flush(&d, out, sizeof out), 0);

    /* ’ = E2 80 99 */
    sp_detok_init(&d, f.t, false);
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0xE2), out, sizeof out), 0);
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0x80), out, sizeof out), 0);
    cr_assert_eq(sp_detok_push(&d, byte_token(f.t, 0x99), out, sizeof out), 3);
    cr_expect(memcmp(out, "\xE2\x80\x99", 3) == 0);

    /* a byte that can never appear in UTF-8 */
    cr_assert_eq(sp_detok_push(&d, byte_token(f.t, 0xFF), out, sizeof out), 3);
    cr_expect(memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    /* a truncated sequence followed by text: U+FFFD, then the text */
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0xE2), out, sizeof out), 0);
    cr_assert_eq(sp_detok_push(&d, 15043, out, sizeof out), 9);
    cr_expect(memcmp(out, "\xEF\xBF\xBD Hello", 9) == 0);
    /* a dangling tail at the end: flush gives U+FFFD */
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0xF0), out, sizeof out), 0);
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0x9F), out, sizeof out), 0);
    cr_assert_eq(sp_detok_flush(&d, out, sizeof out), 3);
    cr_expect(memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    cr_expect_eq(sp_detok_flush(&d, out, sizeof out), 0);
    /* overlong / surrogate lead sequences are invalid */
    sp_detok_init(&d, f.t, false);
    cr_expect_eq(sp_detok_push(&d, byte_token(f.t, 0xED), out, sizeof out), 0);
    cr_assert_eq(sp_detok_push(&d, byte_token(f.t, 0xA0), out, sizeof out), 6); /* two U+FFFD */
    cr_expect(memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD", 6) == 0);
    cr_assert_eq(sp_detok_push(&d, byte_token(f.t, 0xC0), out, sizeof out), 3);
    unload(f);
}

Test(tok, detok_leading_space_and_cap) {
    tok_fixture f = load("models/llama-2-tiny-random.gguf");
    int32_t ids[] = {1, 15043, 3186}; /* <s> ▁Hello ▁world */
    char *s = dec(f.t, ids, 3, true);
    cr_expect_str_eq(s, "Hello world");
    free(s);
    s = dec(f.t, ids, 3, false);
    cr_expect_str_eq(s, " Hello world");
    free(s);

    /* too small a buffer: -1 and nothing consumed (the strip still applies on retry) */
    sp_detok d;
    char out[16];
    sp_detok_init(&d, f.t, true);
    cr_expect_eq(sp_detok_push(&d, 15043, out, 3), -1);
    cr_assert_eq(sp_detok_push(&d, 15043, out, sizeof out), 5);
    cr_expect(memcmp(out, "Hello", 5) == 0);
    cr_expect_eq(sp_detok_push(&d, -3, out, sizeof out), -1);
    cr_expect_geq(sp_detok_max_bytes(f.t), 3 + 3 * 16);
    unload(f);
}

/* ---- load errors ---- */

static sp_tok *tok_from_writer(sp_gguf_writer *w, char *err, size_t errlen) {
    const char *path = tu_tmp("tok.gguf");
    char werr[256];
    cr_assert(sp_gguf_writer_save(w, path, werr, sizeof werr), "%s", werr);
    sp_gguf_writer_free(w);
    sp_gguf *g = sp_gguf_open(path, werr, sizeof werr);
    cr_assert(g, "%s", werr);
    sp_tok *t = sp_tok_from_gguf(g, err, errlen);
    sp_gguf_close(g); /* the tokenizer keeps no pointers into the file */
    return t;
}

static sp_gguf_writer *tiny_vocab(const char *model, uint64_t n_scores, uint64_t n_types) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab"};
    static const float scores[] = {0, 0, 0, -1, -2, -3, -0.7f, -0.5f};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1};
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "tokenizer.ggml.model", model);
    sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 8);
    sp_gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, n_scores);
    sp_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, n_types);
    return w;
}

Test(tok, load_errors) {
    char err[256];
    sp_tok *t = tok_from_writer(tiny_vocab("llama", 8, 8), err, sizeof err);
    cr_assert(t, "%s", err);
    /* no byte tokens: "c" falls back to <unk>; "▁ab" is reached through "ab" */
    int32_t ids[8];
    cr_expect_eq(sp_tok_encode(t, "ab c", 4, false, false, ids, 8), 3);
    cr_expect(ids[0] == 7 && ids[1] == 3 && ids[2] == 0);
    sp_tok_free(t);

    cr_expect_null(tok_from_writer(tiny_vocab("t5", 8, 8), err, sizeof err));
    cr_expect_str_eq(err, "tokenizer model 't5' not supported (supported: llama, gpt2, bert)");
    cr_expect_null(tok_from_writer(tiny_vocab("gpt2", 8, 8), err, sizeof err));
    cr_expect_str_eq(err, "tokenizer: missing tokenizer.ggml.merges");
    cr_expect_null(tok_from_writer(tiny_vocab("llama", 7, 8), err, sizeof err));
    cr_expect(strstr(err, "scores"), "%s", err);
    cr_expect_null(tok_from_writer(tiny_vocab("llama", 8, 5), err, sizeof err));
    cr_expect(strstr(err, "token types"), "%s", err);

    sp_gguf_writer *w = tiny_vocab("llama", 8, 8);
    sp_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 8);
    cr_expect_null(tok_from_writer(w, err, sizeof err));
    cr_expect(strstr(err, "eos_token_id"), "%s", err);

    w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "tokenizer.ggml.model", "llama");
    cr_expect_null(tok_from_writer(w, err, sizeof err));
    cr_expect(strstr(err, "tokenizer.ggml.tokens"), "%s", err);
}

/* ---- byte-level BPE and WordPiece ---- */

Test(tok, kinds_and_flags) {
    static const struct {
        const char *name;
        sp_tok_kind kind;
        bool add_bos;
        int32_t bos;
    } v[] = {
        {"llama-spm", SP_TOK_SPM, true, 1},      {"gpt-2", SP_TOK_BPE, false, 50256},
        {"llama-bpe", SP_TOK_BPE, true, 128000}, {"qwen2", SP_TOK_BPE, false, -1},
        {"bert-bge", SP_TOK_WPM, true, 101},     {"deepseek-coder", SP_TOK_BPE, true, 32013},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/ggml-vocab-%s.gguf", v[i].name);
        tok_fixture f = load(rel);
        cr_expect_eq(sp_tok_get_kind(f.t), v[i].kind, "%s kind", v[i].name);
        cr_expect_eq(sp_tok_add_bos(f.t), v[i].add_bos, "%s add_bos", v[i].name);
        cr_expect_eq(sp_tok_bos(f.t), v[i].bos, "%s bos", v[i].name);
        cr_expect(!sp_tok_add_space_prefix(f.t) || v[i].kind == SP_TOK_SPM, "%s add_space_prefix", v[i].name);
        unload(f);
    }
}

Test(tok, bpe_add_special) {
    int32_t n;
    /* Llama 3 adds <|begin_of_text|> (and no EOS) */
    tok_fixture f = load("tokenizers/ggml-vocab-llama-bpe.gguf");
    int32_t *ids = enc_s(f.t, "Hello", true, false, &n);
    int32_t want[] = {128000, 9906};
    cr_expect(ids_eq(ids, n, want, 2), "got [%s]", fmt_ids(ids, n));
    free(ids);
    ids = enc_s(f.t, "", true, false, &n);
    cr_expect(n == 1 && ids[0] == 128000);
    free(ids);
    unload(f);
    /* Qwen: no BOS, nothing added */
    f = load("tokenizers/ggml-vocab-qwen2.gguf");
    ids = enc_s(f.t, "Hello", true, false, &n);
    int32_t *plain = enc_s(f.t, "Hello", false, false, &n);
    cr_expect(n == 1 && ids[0] == plain[0] && ids[0] == 9707, "got [%s]", fmt_ids(ids, n));
    free(ids);
    free(plain);
    unload(f);
}

Test(tok, bpe_special_tokens) {
    int32_t n;
    tok_fixture f = load("tokenizers/ggml-vocab-qwen2.gguf");
    int32_t im_start = find_token(f.t, "<|im_start|>"), im_end = find_token(f.t, "<|im_end|>");
    cr_assert_eq(im_start, 151644);
    /* parse_special on: one token each; off: plain text that decodes back */
    int32_t *ids = enc_s(f.t, "<|im_start|>user\nHi<|im_end|>", false, true, &n);
    cr_assert_geq(n, 4);
    cr_expect_eq(ids[0], im_start);
    cr_expect_eq(ids[n - 1], im_end);
    free(ids);
    ids = enc_s(f.t, "<|im_start|>user", false, false, &n);
    int32_t want_off[] = {27, 91, 318, 4906, 91, 29, 872};
    cr_expect(ids_eq(ids, n, want_off, 7), "got [%s]", fmt_ids(ids, n));
    char *back = dec(f.t, ids, n, false);
    cr_expect_str_eq(back, "<|im_start|>user");
    free(back);
    free(ids);
    /* control tokens decode to nothing unless asked for */
    char buf[32];
    cr_expect_eq(sp_tok_piece(f.t, im_end, false, buf, sizeof buf), 0);
    cr_assert_eq(sp_tok_piece(f.t, im_end, true, buf, sizeof buf), 10);
    cr_expect(memcmp(buf, "<|im_end|>", 10) == 0);
    int32_t seq[] = {im_start, 872, im_end};
    back = dec(f.t, seq, 3, false);
    cr_expect_str_eq(back, "user");
    free(back);
    cr_expect(sp_tok_is_eog(f.t, im_end));
    cr_expect(sp_tok_is_eog(f.t, 151643)); /* <|endoftext|> */
    /* user-defined tokens are split out even with parse_special off */
    int32_t tool = find_token(f.t, "<tool_call>");
    ids = enc_s(f.t, "a<tool_call>b", false, false, &n);
    cr_expect(n == 3 && ids[1] == tool, "got [%s]", fmt_ids(ids, n));
    free(ids);
    /* fill-in-the-middle tokens are control tokens (llama.cpp overrides their type) */
    ids = enc_s(f.t, "<|fim_prefix|>", false, false, &n);
    cr_expect_gt(n, 1);
    free(ids);
    unload(f);

    f = load("tokenizers/ggml-vocab-llama-bpe.gguf");
    ids = enc_s(f.t, "<|begin_of_text|>Hi", false, true, &n);
    cr_expect(n == 2 && ids[0] == 128000, "got [%s]", fmt_ids(ids, n));
    free(ids);
    ids = enc_s(f.t, "<|begin_of_text|>Hi", false, false, &n);
    cr_expect_gt(n, 2);
    for (int32_t i = 0; i < n; i++) cr_expect_neq(ids[i], 128000);
    back = dec(f.t, ids, n, false);
    cr_expect_str_eq(back, "<|begin_of_text|>Hi");
    free(back);
    free(ids);
    cr_expect(sp_tok_is_eog(f.t, find_token(f.t, "<|eot_id|>")));
    unload(f);
}

Test(tok, bpe_streaming_detok_split_character) {
    /* 龘 (E9 BE 98) is two Qwen tokens: the first holds only part of the character */
    tok_fixture f = load("tokenizers/ggml-vocab-qwen2.gguf");
    int32_t n;
    int32_t *ids = enc_s(f.t, "\xE9\xBE\x98", false, false, &n);
    cr_assert_eq(n, 2, "got [%s]", fmt_ids(ids, n));
    sp_detok d;
    char out[64];
    sp_detok_init(&d, f.t, false);
    cr_expect_eq(sp_detok_push(&d, ids[0], out, sizeof out), 0);
    cr_assert_eq(sp_detok_push(&d, ids[1], out, sizeof out), 3);
    cr_expect(memcmp(out, "\xE9\xBE\x98", 3) == 0);
    cr_expect_eq(sp_detok_flush(&d, out, sizeof out), 0);
    free(ids);
    /* 𠀋 (F0 A0 80 8B) is three tokens: "", "", then the whole character */
    ids = enc_s(f.t, "a\xF0\xA0\x80\x8B!", false, false, &n);
    cr_assert_geq(n, 4, "got [%s]", fmt_ids(ids, n));
    sp_detok_init(&d, f.t, false);
    char all[64];
    int32_t len = 0, empties = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t w = sp_detok_push(&d, ids[i], all + len, (int32_t)sizeof all - len);
        cr_assert_geq(w, 0);
        empties += w == 0;
        len += w;
    }
    cr_expect_geq(empties, 2);
    cr_expect_eq(len, 6);
    cr_expect(memcmp(all, "a\xF0\xA0\x80\x8B!", 6) == 0);
    free(ids);
    unload(f);
}

Test(tok, bpe_lossless_bytes) {
    /* any bytes, invalid UTF-8 included, come back unchanged from byte-level BPE. (Not so with
     * DeepSeek's vocabularies: some byte-level characters exist there only as user-defined tokens,
     * which decode as their text, e.g. a lone byte 0xFF comes back as "\xC3\xBF" — llama.cpp and
     * Hugging Face decode them the same way.) */
    static const char text[] = "caf\xC3\xA9 \xFF\xFE bad \xE9\xBE tail \xF0\x9F\xA6\x99\x80 \x01\x7F\n\t end";
    const char *vocabs[] = {"tokenizers/ggml-vocab-qwen2.gguf", "tokenizers/ggml-vocab-llama-bpe.gguf",
                            "tokenizers/ggml-vocab-gpt-2.gguf"};
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        tok_fixture f = load(vocabs[v]);
        int32_t n;
        int32_t *ids = enc(f.t, text, sizeof text - 1, false, false, &n);
        cr_assert_gt(n, 0);
        /* the raw bytes: concatenated pieces (dec would replace invalid UTF-8) */
        char raw[256];
        int32_t len = 0;
        for (int32_t i = 0; i < n; i++) len += sp_tok_piece(f.t, ids[i], false, raw + len, (int32_t)sizeof raw - len);
        cr_expect_eq(len, (int32_t)sizeof text - 1, "%s", vocabs[v]);
        cr_expect(memcmp(raw, text, sizeof text - 1) == 0, "%s", vocabs[v]);
        free(ids);
        unload(f);
    }
}

/* Regression: GPT-NeoX-style vocabularies have no character for bytes 0xFE / 0xFF; two such
 * bytes side by side once looked up the pair (-1, -1), whose key is the empty-slot marker, and
 * emitted an uninitialized merge result. They are dropped, as llama.cpp drops them. */
Test(tok, bpe_bytes_without_token) {
    tok_fixture f = load("tokenizers/ggml-vocab-mpt.gguf");
    int32_t ids[8];
    cr_expect_eq(sp_tok_encode(f.t, "\xFF\xFE", 2, false, false, ids, 8), 0);
    cr_expect_eq(sp_tok_encode(f.t, "a\xFF\xFE\xFF", 4, false, false, ids, 8), 1);
    unload(f);
}

Test(tok, wpm_bert) {
    tok_fixture f = load("tokenizers/ggml-vocab-bert-bge.gguf");
    int32_t n;
    /* [CLS] ... [SEP] with add_special; lowercased, punctuation split */
    int32_t *ids = enc_s(f.t, "Hello World!", true, false, &n);
    int32_t want[] = {101, 7592, 2088, 999, 102};
    cr_expect(ids_eq(ids, n, want, 5), "got [%s]", fmt_ids(ids, n));
    /* decoding is lossy (lowercase, spaces around punctuation): "▁" pieces give the spaces */
    char *back = dec(f.t, ids, n, true);
    cr_expect_str_eq(back, "hello world !");
    free(back);
    free(ids);
    /* accents stripped, "##" continuations, [UNK] for what the vocabulary cannot cover */
    ids = enc_s(f.t, "\xC3\x84pfel \xF0\x9F\xA6\x99", false, false, &n);
    int32_t want2[] = {9706, 7959, 2140, 100};
    cr_expect(ids_eq(ids, n, want2, 4), "got [%s]", fmt_ids(ids, n));
    free(ids);
    /* control characters vanish, CJK ideographs are words of their own */
    int32_t na;
    ids = enc_s(f.t, "a\x01" "b\xE6\x88\x91\xE6\x83\xB3", false, false, &n);
    int32_t *other = enc_s(f.t, "ab \xE6\x88\x91 \xE6\x83\xB3", false, false, &na);
    cr_expect(ids_eq(ids, n, other, na), "got [%s] want [%s]", fmt_ids(ids, n), fmt_ids(other, na));
    free(other);
    free(ids);
    ids = enc_s(f.t, "[CLS] x [SEP]", false, true, &n);
    cr_expect(n == 3 && ids[0] == 101 && ids[2] == 102, "got [%s]", fmt_ids(ids, n));
    free(ids);
    ids = enc_s(f.t, "[CLS]", false, false, &n);
    cr_expect(n > 1, "control text is plain text without parse_special");
    free(ids);
    unload(f);
}

Test(tok, wpm_invalid_utf8_and_empty) {
    tok_fixture f = load("tokenizers/ggml-vocab-bert-bge.gguf");
    int32_t buf[8];
    cr_expect_eq(sp_tok_encode(f.t, "\xFF\xC3", 2, false, false, buf, 8), 0);
    cr_expect_eq(sp_tok_encode(f.t, "", 0, true, false, buf, 8), 2);
    cr_expect(buf[0] == 101 && buf[1] == 102);
    unload(f);
}

Test(tok, bpe_load_errors) {
    char err[256];
    static const char *const toks[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a b"};
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    sp_gguf_w_str(w, "tokenizer.ggml.pre", "no-such-pre");
    sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    sp_gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    cr_expect_null(tok_from_writer(w, err, sizeof err));
    cr_expect_str_eq(err, "tokenizer: unknown pre-tokenizer 'no-such-pre' (tokenizer.ggml.pre)");

    /* no pre key: "default"; merges whose parts are not tokens still work (ids past the vocab) */
    static const char *const toks2[] = {"a", "b", "c", "abc"};
    static const char *const merges2[] = {"a b", "ab c", "bogus"};
    w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks2, 4);
    sp_gguf_w_arr_str(w, "tokenizer.ggml.merges", merges2, 3);
    sp_tok *t = tok_from_writer(w, err, sizeof err);
    cr_assert(t, "%s", err);
    int32_t ids[8];
    cr_expect_eq(sp_tok_encode(t, "abc", 3, false, false, ids, 8), 1);
    cr_expect_eq(ids[0], 3);
    /* "ab" is not a token: its bytes fall back to single-character tokens */
    cr_expect_eq(sp_tok_encode(t, "ab", 2, false, false, ids, 8), 2);
    cr_expect(ids[0] == 0 && ids[1] == 1);
    /* a byte with no token is dropped (llama.cpp does the same) */
    cr_expect_eq(sp_tok_encode(t, "d", 1, true, false, ids, 8), 0);
    sp_tok_free(t);
}

Test(tok, cli_tokenize_all_kinds) {
    const char *bin = getenv("SPARROW_BIN");
    if (!bin) cr_skip_test("SPARROW_BIN not set");
    static const struct {
        const char *vocab, *args, *want;
    } v[] = {
        {"qwen2", "'Hello world'", "9707 1879"},
        {"llama-bpe", "--add-special 'Hello'", "128000 9906"},
        {"bert-bge", "--add-special 'Hello World!'", "101 7592 2088 999 102"},
        {"bert-bge", "--detok '101 7592 2088 999 102'", "hello world !"},
        {"qwen2", "--detok '9707 1879'", "Hello world"},
        {"llama-spm", "'Hello world'", "15043 3186"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char cmd[1024], out[256] = "";
        snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s/tokenizers/ggml-vocab-%s.gguf' %s", bin, tu_shared("."),
                 v[i].vocab, v[i].args);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        size_t k = fread(out, 1, sizeof out - 1, p);
        out[k] = 0;
        cr_expect_eq(pclose(p), 0, "%s", cmd);
        if (k && out[k - 1] == '\n') out[k - 1] = 0;
        cr_expect_str_eq(out, v[i].want, "%s", cmd);
    }
}

/* Every pre-tokenizer name in the table compiles and splits text (a vocabulary of the 256
 * byte-level characters and no merges: one token per byte, whatever the split). */
Test(tok, bpe_every_pre_tokenizer) {
    static const char *const pres[] = {
        "default", "llama3", "llama-bpe", "dbrx", "smaug-bpe", "glm4", "gpt-2", "mpt", "olmo", "smollm",
        "starcoder", "refact", "command-r", "falcon", "qwen2", "stablelm2", "deepseek-r1-qwen", "deepseek-llm",
        "deepseek-coder", "deepseek-v3", "bloom", "poro-chat", "viking", "tekken", "gpt-4o", "llama4",
        "seed-coder", "bailingmoe", "exaone4", "roberta-bpe"};
    /* GPT-2's bytes_to_unicode */
    char texts[256][4];
    const char *tokp[256];
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        if (cp < 0x80) snprintf(texts[b], sizeof texts[b], "%c", (char)cp);
        else snprintf(texts[b], sizeof texts[b], "%c%c", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 0x3F)));
        tokp[b] = texts[b];
    }
    static const char text[] = "Hello,  world! I'm 12345 \xE4\xB8\xAD\xE6\x96\x87 caf\xC3\xA9\r\n\t end   ";
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        char err[256];
        sp_gguf_writer *w = sp_gguf_writer_new();
        sp_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
        sp_gguf_w_str(w, "tokenizer.ggml.pre", pres[i]);
        sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", tokp, 256);
        sp_gguf_w_arr_str(w, "tokenizer.ggml.merges", tokp, 0);
        sp_tok *t = tok_from_writer(w, err, sizeof err);
        cr_assert(t, "%s: %s", pres[i], err);
        int32_t ids[128];
        cr_expect_eq(sp_tok_encode(t, text, sizeof text - 1, false, false, ids, 128), (int32_t)sizeof text - 1, "%s",
                     pres[i]);
        char *back = dec(t, ids, (int32_t)sizeof text - 1, false);
        cr_expect_str_eq(back, text, "%s", pres[i]);
        free(back);
        sp_tok_free(t);
    }
}
