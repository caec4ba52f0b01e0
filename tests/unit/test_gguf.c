/* tests/unit/test_gguf.c — the GGUF reader and writer (storage/gguf_*.c): real files from
 * ../shared/models, the shared malformed files, hand-built corrupt files (one per validation rule,
 * each checked for its error phrase), truncation at every byte, and writer round trips. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/types.h"
#include "storage/gguf.h"
#include "testutil.h"

/* ================================================================ helpers */

/* A growable byte buffer for building GGUF files by hand. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} gb;

static void gb_bytes(gb *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void gb_le(gb *b, uint64_t v, unsigned n) {
    uint8_t bytes[8];
    for (unsigned i = 0; i < n; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    gb_bytes(b, bytes, n);
}
static void gb_u8(gb *b, uint8_t v) { gb_le(b, v, 1); }
static void gb_u32(gb *b, uint32_t v) { gb_le(b, v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_le(b, v, 8); }
static void gb_str(gb *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_bytes(b, s, strlen(s));
}
static void gb_pad(gb *b, size_t align) {
    while (b->len % align) gb_u8(b, 0);
}
static void gb_zeros(gb *b, size_t n) {
    for (size_t i = 0; i < n; i++) gb_u8(b, 0);
}

static void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

static void gb_kv_u32(gb *b, const char *key, uint32_t v) {
    gb_str(b, key);
    gb_u32(b, SP_GGUF_U32);
    gb_u32(b, v);
}

static void gb_kv_str(gb *b, const char *key, const char *v) {
    gb_str(b, key);
    gb_u32(b, SP_GGUF_STRING);
    gb_str(b, v);
}

static void gb_tensor_info(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                           uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

/* A file with one key and one tensor whose info and data size the caller picks. */
static gb one_tensor_file(uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                          size_t data_bytes) {
    gb b = {0};
    gb_header(&b, 3, 1, 1);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_tensor_info(&b, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    gb_pad(&b, 32);
    gb_zeros(&b, data_bytes);
    return b;
}

/* Open from an exact-size heap copy (*buf, freed by the caller after closing), so ASan sees any
 * read past the end. */
static sp_gguf *open_exact(const void *data, size_t len, void **buf, char *err, size_t errlen) {
    *buf = malloc(len ? len : 1);
    cr_assert_not_null(*buf);
    if (len) memcpy(*buf, data, len);
    return sp_gguf_open_mem(*buf, len, err, errlen);
}

/* The buffer must be rejected with a one-line error containing `phrase` (and `phrase2` if given). */
static void expect_fail2(const gb *b, const char *phrase, const char *phrase2) {
    char err[512] = "unset";
    void *copy = malloc(b->len ? b->len : 1);
    memcpy(copy, b->p, b->len);
    sp_gguf *g = sp_gguf_open_mem(copy, b->len, err, sizeof err);
    if (g) sp_gguf_close(g);
    free(copy);
    cr_assert_null(g, "expected failure with '%s' but the file opened", phrase);
    cr_assert(strncmp(err, "gguf: ", 6) == 0, "error not prefixed: %s", err);
    cr_assert(!strchr(err, '\n'), "error has a newline: %s", err);
    cr_assert(strstr(err, phrase), "error '%s' lacks '%s'", err, phrase);
    if (phrase2) cr_assert(strstr(err, phrase2), "error '%s' lacks '%s'", err, phrase2);
}

static void expect_fail(const gb *b, const char *phrase) { expect_fail2(b, phrase, NULL); }

static sp_gguf *expect_ok(const gb *b) {
    char err[512] = "";
    sp_gguf *g = sp_gguf_open_mem(b->p, b->len, err, sizeof err);
    cr_assert_not_null(g, "expected success, got: %s", err);
    return g;
}

static sp_gguf *open_shared(const char *rel) {
    char err[512] = "";
    sp_gguf *g = sp_gguf_open(tu_shared(rel), err, sizeof err);
    cr_assert_not_null(g, "%s: %s", rel, err);
    return g;
}

static void assert_str(sp_gguf_str s, const char *want) {
    cr_assert(sp_gguf_str_eq(s, want), "got '%.*s', want '%s'", (int)s.len, s.ptr, want);
}

static void assert_tensor(const sp_gguf *g, const char *name, uint32_t type, uint32_t n_dims, int64_t ne0,
                          int64_t ne1, uint64_t nbytes) {
    const sp_gguf_tensor *t = sp_gguf_find_tensor(g, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    assert_str(t->name, name);
    cr_assert_eq(t->type, type, "%s type %u", name, t->type);
    cr_assert_eq(t->n_dims, n_dims, "%s n_dims %u", name, t->n_dims);
    cr_assert_eq(t->ne[0], ne0, "%s ne0 %lld", name, (long long)t->ne[0]);
    cr_assert_eq(t->ne[1], ne1, "%s ne1 %lld", name, (long long)t->ne[1]);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->ne[3], 1);
    cr_assert_eq(t->nbytes, nbytes, "%s nbytes %llu", name, (unsigned long long)t->nbytes);
    cr_assert_eq(t->offset % sp_gguf_alignment(g), 0);
    cr_assert_eq((const uint8_t *)t->data, sp_gguf_base(g) + sp_gguf_data_offset(g) + t->offset);
}

/* ================================================================ real files */

Test(gguf_shared, stories260K_header_and_metadata) {
    sp_gguf *g = open_shared("models/stories260K.gguf");
    cr_assert_eq(sp_gguf_version(g), 3);
    cr_assert_eq(sp_gguf_alignment(g), 32);
    cr_assert_eq(sp_gguf_n_kv(g), 20);
    cr_assert_eq(sp_gguf_n_tensors(g), 48);
    cr_assert_eq(sp_gguf_data_offset(g), 14176);
    cr_assert_eq(sp_gguf_file_size(g), 1185376);

    sp_gguf_str s;
    cr_assert(sp_gguf_get_str(g, "general.architecture", &s));
    assert_str(s, "llama");
    cr_assert(sp_gguf_get_str(g, "general.name", &s));
    assert_str(s, "stories260K");
    cr_assert(sp_gguf_get_str(g, "tokenizer.ggml.model", &s));
    assert_str(s, "llama");
    assert_str(sp_gguf_kv_at(g, 0)->key, "general.architecture");
    assert_str(sp_gguf_kv_at(g, 19)->key, "tokenizer.ggml.unknown_token_id");
    cr_assert_null(sp_gguf_kv_at(g, 20));

    const struct { const char *key; uint32_t v; } u32s[] = {
        {"llama.context_length", 512},          {"llama.embedding_length", 64},
        {"llama.block_count", 5},               {"llama.feed_forward_length", 172},
        {"llama.attention.head_count", 8},      {"llama.attention.head_count_kv", 4},
        {"llama.rope.dimension_count", 8},      {"general.file_type", 0},
        {"tokenizer.ggml.bos_token_id", 1},     {"tokenizer.ggml.eos_token_id", 2},
        {"tokenizer.ggml.unknown_token_id", 0},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        uint32_t v = 99999;
        cr_assert(sp_gguf_get_u32(g, u32s[i].key, &v), "%s", u32s[i].key);
        cr_assert_eq(v, u32s[i].v, "%s = %u", u32s[i].key, v);
        cr_assert_eq(sp_gguf_get(g, u32s[i].key)->type, SP_GGUF_U32);
    }
    float f;
    cr_assert(sp_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f));
    cr_assert_float_eq(f, 1e-5f, 1e-12);
    cr_assert(sp_gguf_get_f32(g, "llama.rope.freq_base", &f));
    cr_assert_float_eq(f, 10000.0f, 1e-6);
    sp_gguf_close(g);
}

Test(gguf_shared, stories260K_tokenizer_arrays) {
    sp_gguf *g = open_shared("models/stories260K.gguf");
    const sp_gguf_value *tok = sp_gguf_get(g, "tokenizer.ggml.tokens");
    cr_assert_not_null(tok);
    cr_assert_eq(tok->type, SP_GGUF_ARRAY);
    cr_assert_eq(tok->arr.type, SP_GGUF_STRING);
    cr_assert_eq(tok->arr.n, 512);
    assert_str(tok->arr.strs[0], "<unk>");
    assert_str(tok->arr.strs[1], "<s>");
    assert_str(tok->arr.strs[2], "</s>");
    assert_str(tok->arr.strs[13], "<0x0A>");
    assert_str(tok->arr.strs[259], "\xe2\x96\x81t"); /* "▁t" */
    assert_str(tok->arr.strs[300], "\xe2\x96\x81ha");

    const sp_gguf_value *scores = sp_gguf_get(g, "tokenizer.ggml.scores");
    cr_assert_eq(scores->arr.type, SP_GGUF_F32);
    cr_assert_eq(scores->arr.n, 512);
    cr_assert_float_eq(sp_gguf_arr_f64(scores, 260), -1.0, 0);
    cr_assert_float_eq(sp_gguf_arr_f64(scores, 511), -252.0, 0);
    cr_assert_eq(sp_gguf_arr_i64(scores, 261), -2);

    const sp_gguf_value *tt = sp_gguf_get(g, "tokenizer.ggml.token_type");
    cr_assert_eq(tt->arr.type, SP_GGUF_I32);
    cr_assert_eq(sp_gguf_arr_i64(tt, 0), 2);
    cr_assert_eq(sp_gguf_arr_i64(tt, 1), 3);
    cr_assert_eq(sp_gguf_arr_i64(tt, 3), 6);
    cr_assert_eq(sp_gguf_arr_i64(tt, 300), 1);
    cr_assert_eq(sp_gguf_arr_i64(tt, 512), 0, "out of range index reads 0");
    sp_gguf_close(g);
}

Test(gguf_shared, stories260K_tensors) {
    sp_gguf *g = open_shared("models/stories260K.gguf");
    assert_tensor(g, "token_embd.weight", SP_TYPE_F32, 2, 64, 512, 131072);
    assert_tensor(g, "output_norm.weight", SP_TYPE_F32, 1, 64, 1, 256);
    assert_tensor(g, "output.weight", SP_TYPE_F32, 2, 64, 512, 131072);
    assert_tensor(g, "blk.0.attn_q.weight", SP_TYPE_F32, 2, 64, 64, 16384);
    assert_tensor(g, "blk.0.attn_k.weight", SP_TYPE_F32, 2, 64, 32, 8192);
    assert_tensor(g, "blk.4.ffn_gate.weight", SP_TYPE_F32, 2, 64, 172, 44032);
    assert_tensor(g, "blk.4.ffn_down.weight", SP_TYPE_F32, 2, 172, 64, 44032);
    cr_assert_null(sp_gguf_find_tensor(g, "blk.5.ffn_down.weight"));
    cr_assert_null(sp_gguf_find_tensor(g, "token_embd"));
    cr_assert_eq(sp_gguf_tensor_at(g, 0)->offset, 0);
    cr_assert_eq(sp_gguf_tensor_at(g, 47)->offset, 1170944);
    cr_assert_null(sp_gguf_tensor_at(g, 48));

    /* The embedding table must be the same floats llama2.c's checkpoint stores after its
     * 7-int header: an independent check that the data pointer is right. */
    size_t bin_size;
    uint8_t *bin = tu_read_file(tu_shared("models/stories260K.bin"), &bin_size);
    cr_assert_not_null(bin);
    cr_assert(bin_size >= 28 + 131072);
    cr_assert(memcmp(sp_gguf_find_tensor(g, "token_embd.weight")->data, bin + 28, 131072) == 0);
    free(bin);
    sp_gguf_close(g);
}

Test(gguf_shared, stories260K_q8_0_tensors) {
    sp_gguf *g = open_shared("models/stories260K-q8_0.gguf");
    uint32_t ft;
    cr_assert(sp_gguf_get_u32(g, "general.file_type", &ft));
    cr_assert_eq(ft, 7);
    assert_tensor(g, "token_embd.weight", SP_TYPE_Q8_0, 2, 64, 512, 512 * 2 * 34);
    assert_tensor(g, "blk.2.ffn_gate.weight", SP_TYPE_Q8_0, 2, 64, 172, 172 * 2 * 34);
    assert_tensor(g, "blk.2.ffn_down.weight", SP_TYPE_F32, 2, 172, 64, 44032);
    assert_tensor(g, "blk.2.attn_norm.weight", SP_TYPE_F32, 1, 64, 1, 256);
    sp_gguf_close(g);
}

Test(gguf_shared, llama2_tiny_random_big_vocab) {
    sp_gguf *g = open_shared("models/llama-2-tiny-random.gguf");
    cr_assert_eq(sp_gguf_n_kv(g), 18);
    cr_assert_eq(sp_gguf_n_tensors(g), 12);
    cr_assert_eq(sp_gguf_data_offset(g), 724416);
    sp_gguf_str s;
    cr_assert(sp_gguf_get_str(g, "general.name", &s));
    assert_str(s, "LLaMA v2");
    const sp_gguf_value *tok = sp_gguf_get(g, "tokenizer.ggml.tokens");
    cr_assert_eq(tok->arr.type, SP_GGUF_STRING);
    cr_assert_eq(tok->arr.n, 32000);
    assert_str(tok->arr.strs[0], "<unk>");
    assert_str(tok->arr.strs[259], "\xe2\x96\x81\xe2\x96\x81");
    assert_str(tok->arr.strs[29871], "\xe2\x96\x81");
    assert_str(tok->arr.strs[31999], "\xe7\xbb\x99"); /* 给 */
    const sp_gguf_value *scores = sp_gguf_get(g, "tokenizer.ggml.scores");
    cr_assert_eq(scores->arr.n, 32000);
    cr_assert_float_eq(sp_gguf_arr_f64(scores, 31999), -31740.0, 0);
    uint32_t n;
    cr_assert(sp_gguf_get_u32(g, "llama.embedding_length", &n));
    cr_assert_eq(n, 8);
    cr_assert(sp_gguf_get_u32(g, "llama.context_length", &n));
    cr_assert_eq(n, 4096);
    assert_tensor(g, "token_embd.weight", SP_TYPE_F16, 2, 8, 32000, 512000);
    assert_tensor(g, "output.weight", SP_TYPE_F16, 2, 8, 32000, 512000);
    assert_tensor(g, "blk.0.ffn_down.weight", SP_TYPE_F16, 2, 32, 8, 512);
    assert_tensor(g, "output_norm.weight", SP_TYPE_F32, 1, 8, 1, 32);
    sp_gguf_close(g);
}

Test(gguf_shared, malformed_valid_no_tensors) {
    sp_gguf *g = open_shared("models/malformed/valid-no-tensors.gguf");
    cr_assert_eq(sp_gguf_n_tensors(g), 0);
    cr_assert_eq(sp_gguf_n_kv(g), 1);
    sp_gguf_str s;
    cr_assert(sp_gguf_get_str(g, "general.architecture", &s));
    assert_str(s, "llama");
    cr_assert_eq(sp_gguf_data_offset(g), 96, "the header end (69) padded to 32");
    sp_gguf_close(g);
}

Test(gguf_shared, malformed_truncated_tensor_data) {
    char err[512] = "";
    sp_gguf *g = sp_gguf_open(tu_shared("models/malformed/truncated-tensor-data.gguf"), err, sizeof err);
    cr_assert_null(g);
    cr_assert(strstr(err, "tensor 'test.weight.0'"), "%s", err);
    cr_assert(strstr(err, "past end of file"), "%s", err);
    cr_assert(strstr(err, "122 bytes"), "%s", err);
}

Test(gguf_shared, open_missing_file) {
    char err[512] = "";
    cr_assert_null(sp_gguf_open(tu_tmp("does-not-exist.gguf"), err, sizeof err));
    cr_assert(strstr(err, "cannot open"), "%s", err);
    cr_assert_null(sp_gguf_open(tu_tmp(""), err, sizeof err), "a directory is not a GGUF file");
    cr_assert(strstr(err, "not a regular file"), "%s", err);
}

/* ================================================================ header corruption */

Test(gguf_corrupt, empty_and_tiny) {
    char err[512];
    cr_assert_null(sp_gguf_open_mem(NULL, 0, err, sizeof err));
    cr_assert(strstr(err, "file too small"), "%s", err);
    gb b = {0};
    gb_bytes(&b, "GGU", 3);
    expect_fail(&b, "file too small (3 bytes)");
    free(b.p);
}

Test(gguf_corrupt, bad_magic) {
    gb b = {0};
    gb_bytes(&b, "GGML", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u64(&b, 0);
    expect_fail(&b, "bad magic 'GGML' (not a GGUF file)");
    b.p[0] = '\n';
    expect_fail(&b, "bad magic '\\x0aGML'");
    free(b.p);
}

Test(gguf_corrupt, versions) {
    gb b = {0};
    gb_header(&b, 1, 0, 0);
    expect_fail(&b, "GGUF version 1 is not supported");
    b.len = 0;
    gb_header(&b, 99, 0, 0);
    expect_fail(&b, "unsupported GGUF version 99");
    b.len = 0;
    gb_header(&b, 0x03000000, 0, 0);
    expect_fail(&b, "big-endian");
    b.len = 0;
    gb_header(&b, 2, 0, 0);
    sp_gguf *g = expect_ok(&b);
    cr_assert_eq(sp_gguf_version(g), 2);
    cr_assert_eq(sp_gguf_data_offset(g), 32);
    sp_gguf_close(g);
    free(b.p);
}

Test(gguf_corrupt, huge_counts) {
    const uint64_t huge = 1ull << 62;
    gb b = {0};
    gb_header(&b, 3, 0, huge);
    gb_kv_u32(&b, "a", 1);
    expect_fail2(&b, "n_kv 4611686018427387904 exceeds", "remaining");
    b.len = 0;
    gb_header(&b, 3, huge, 1);
    gb_kv_u32(&b, "a", 1);
    expect_fail2(&b, "n_tensors 4611686018427387904 exceeds", "remaining");
    b.len = 0;
    gb_header(&b, 3, UINT64_MAX, UINT64_MAX);
    expect_fail(&b, "exceeds");
    free(b.p);
}

Test(gguf_corrupt, huge_string_lengths) {
    gb b = {0};
    gb_header(&b, 3, 0, 2);
    gb_kv_u32(&b, "general.alignment", 32);
    gb_str(&b, "general.name");
    gb_u32(&b, SP_GGUF_STRING);
    gb_u64(&b, 1ull << 62);
    gb_bytes(&b, "abcdefghijkl", 12);
    expect_fail(&b, "gguf: key 1 ('general.name'): string length 4611686018427387904 exceeds remaining 12 bytes");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, UINT64_MAX); /* key name length */
    gb_bytes(&b, "abcdefghijklm", 13);
    expect_fail(&b, "gguf: key 0: key name length 18446744073709551615 exceeds remaining 13 bytes");

    b.len = 0;
    gb_header(&b, 3, 1, 0);
    gb_u64(&b, 1ull << 62); /* tensor name length */
    gb_zeros(&b, 40);
    expect_fail(&b, "tensor 0: tensor name length 4611686018427387904 exceeds remaining 40 bytes");
    free(b.p);
}

Test(gguf_corrupt, huge_array_lengths) {
    const uint32_t types[] = {SP_GGUF_U8, SP_GGUF_F32, SP_GGUF_U64, SP_GGUF_STRING, SP_GGUF_ARRAY, SP_GGUF_BOOL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        gb b = {0};
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "tokenizer.ggml.tokens");
        gb_u32(&b, SP_GGUF_ARRAY);
        gb_u32(&b, types[i]);
        gb_u64(&b, 1ull << 62);
        gb_zeros(&b, 64);
        expect_fail2(&b, "array length 4611686018427387904", "exceeds remaining 64 bytes");
        free(b.p);
    }
}

Test(gguf_corrupt, unknown_value_types) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, 13);
    gb_u64(&b, 0);
    expect_fail(&b, "key 0 ('k'): unknown value type 13");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, SP_GGUF_ARRAY);
    gb_u32(&b, 0xdeadbeef);
    gb_u64(&b, 1);
    gb_u64(&b, 0);
    expect_fail(&b, "unknown array element type 3735928559");
    free(b.p);
}

/* A key holding `depth` arrays nested in one another, the innermost holding one u8. */
static gb nested_file(int depth) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "deep");
    gb_u32(&b, SP_GGUF_ARRAY);
    for (int d = 1; d < depth; d++) {
        gb_u32(&b, SP_GGUF_ARRAY);
        gb_u64(&b, 1);
    }
    gb_u32(&b, SP_GGUF_U8);
    gb_u64(&b, 1);
    gb_u8(&b, 7);
    return b;
}

Test(gguf_corrupt, nesting_depth) {
    gb b = nested_file(8);
    sp_gguf *g = expect_ok(&b);
    const sp_gguf_value *v = sp_gguf_get(g, "deep");
    for (int d = 1; d < 8; d++) {
        cr_assert_eq(v->type, SP_GGUF_ARRAY);
        cr_assert_eq(v->arr.type, SP_GGUF_ARRAY);
        cr_assert_eq(v->arr.n, 1);
        v = &v->arr.vals[0];
    }
    cr_assert_eq(v->arr.type, SP_GGUF_U8);
    cr_assert_eq(sp_gguf_arr_i64(v, 0), 7);
    sp_gguf_close(g);
    free(b.p);

    b = nested_file(9);
    expect_fail2(&b, "arrays nested deeper than 8 levels", "key 0 ('deep')[0][0][0][0][0][0][0]");
    free(b.p);
    b = nested_file(1000);
    expect_fail(&b, "arrays nested deeper than 8 levels");
    free(b.p);
}

Test(gguf_corrupt, bools_must_be_0_or_1) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "flag");
    gb_u32(&b, SP_GGUF_BOOL);
    gb_u8(&b, 2);
    expect_fail(&b, "key 0 ('flag'): bool value 2 is not 0 or 1");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "flags");
    gb_u32(&b, SP_GGUF_ARRAY);
    gb_u32(&b, SP_GGUF_BOOL);
    gb_u64(&b, 3);
    gb_u8(&b, 1);
    gb_u8(&b, 0);
    gb_u8(&b, 255);
    expect_fail(&b, "key 0 ('flags')[2]: bool value 255 is not 0 or 1");
    free(b.p);
}

Test(gguf_corrupt, duplicate_key) {
    gb b = {0};
    gb_header(&b, 3, 0, 3);
    gb_kv_str(&b, "general.name", "a");
    gb_kv_u32(&b, "x", 1);
    gb_kv_str(&b, "general.name", "b");
    expect_fail(&b, "key 2 ('general.name'): duplicate key (also key 0)");
    free(b.p);
}

Test(gguf_corrupt, alignment_rules) {
    const uint32_t bad[] = {0, 48, 3, 0x80000001u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gb b = {0};
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, "is not a nonzero power of two");
        free(b.p);
    }
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment");
    gb_u32(&b, SP_GGUF_U64);
    gb_u64(&b, 32);
    expect_fail(&b, "general.alignment has type u64 (must be u32)");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "general.alignment", "32");
    expect_fail(&b, "general.alignment has type string");

    /* A valid non-default alignment moves the data section and constrains offsets. */
    uint64_t ne[1] = {16};
    b.len = 0;
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 256);
    gb_tensor_info(&b, "t", 1, ne, SP_TYPE_F32, 0);
    gb_pad(&b, 256);
    gb_zeros(&b, 64);
    sp_gguf *g = expect_ok(&b);
    cr_assert_eq(sp_gguf_alignment(g), 256);
    cr_assert_eq(sp_gguf_data_offset(g), 256);
    sp_gguf_close(g);
    b.len = 0;
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 256);
    gb_tensor_info(&b, "t", 1, ne, SP_TYPE_F32, 32);
    gb_pad(&b, 256);
    gb_zeros(&b, 512);
    expect_fail(&b, "tensor 't': offset 32 is not a multiple of the alignment 256");
    free(b.p);
}

/* ================================================================ tensor info corruption */

Test(gguf_corrupt, tensor_ok_baseline) {
    uint64_t ne[2] = {32, 4};
    gb b = one_tensor_file(2, ne, SP_TYPE_Q8_0, 0, 4 * 34);
    sp_gguf *g = expect_ok(&b);
    assert_tensor(g, "blk.0.attn_q.weight", SP_TYPE_Q8_0, 2, 32, 4, 136);
    sp_gguf_close(g);
    free(b.p);
}

Test(gguf_corrupt, tensor_offset_misaligned) {
    uint64_t ne[1] = {8};
    gb b = one_tensor_file(1, ne, SP_TYPE_F32, 4, 64);
    expect_fail(&b, "tensor 'blk.0.attn_q.weight': offset 4 is not a multiple of the alignment 32");
    free(b.p);
}

Test(gguf_corrupt, tensor_past_end_of_file) {
    uint64_t ne[2] = {64, 16};
    gb b = one_tensor_file(2, ne, SP_TYPE_F32, 0, 4096 - 1);
    char want[200];
    snprintf(want, sizeof want,
             "gguf: tensor 'blk.0.attn_q.weight' data [offset %zu, 4096 bytes] extends past end of file (%zu bytes)",
             b.len - 4095, b.len);
    expect_fail(&b, want);
    free(b.p);
    /* an offset so large that data offset + offset wraps */
    b = one_tensor_file(2, ne, SP_TYPE_F32, UINT64_MAX - 31, 4096);
    expect_fail(&b, "past end of file");
    free(b.p);
    /* a tensor starting exactly at the end */
    b = one_tensor_file(2, ne, SP_TYPE_F32, 4096, 4096);
    expect_fail(&b, "past end of file");
    free(b.p);
}

Test(gguf_corrupt, tensor_n_dims) {
    uint64_t ne[5] = {32, 1, 1, 1, 1};
    gb b = one_tensor_file(0, ne, SP_TYPE_F32, 0, 128);
    expect_fail(&b, "tensor 'blk.0.attn_q.weight': n_dims 0 out of range 1..4");
    free(b.p);
    b = one_tensor_file(5, ne, SP_TYPE_F32, 0, 128);
    expect_fail(&b, "n_dims 5 out of range 1..4");
    free(b.p);
    b = one_tensor_file(4, ne, SP_TYPE_F32, 0, 128);
    sp_gguf *g = expect_ok(&b);
    cr_assert_eq(sp_gguf_tensor_at(g, 0)->n_dims, 4);
    sp_gguf_close(g);
    free(b.p);
}

Test(gguf_corrupt, tensor_shape_overflow) {
    uint64_t ne[2] = {1ull << 40, 1ull << 40};
    gb b = one_tensor_file(2, ne, SP_TYPE_F32, 0, 64);
    expect_fail(&b, "overflows");
    free(b.p);
    /* element count fits (2^62), bytes do not (x8) */
    uint64_t ne2[2] = {1ull << 61, 2};
    b = one_tensor_file(2, ne2, SP_TYPE_F64, 0, 64);
    expect_fail(&b, "byte size overflows 64 bits");
    free(b.p);
    /* one row of 2^62 f32 is 2^64 bytes */
    uint64_t ne3[1] = {1ull << 62};
    b = one_tensor_file(1, ne3, SP_TYPE_F32, 0, 64);
    expect_fail(&b, "shape [4611686018427387904] of type f32: byte size overflows 64 bits");
    free(b.p);
    uint64_t ne4[2] = {32, UINT64_MAX - 5};
    b = one_tensor_file(2, ne4, SP_TYPE_F32, 0, 64);
    expect_fail(&b, "dimension 1 is negative (-6)");
    free(b.p);
}

Test(gguf_corrupt, tensor_zero_dims_are_empty) {
    uint64_t ne[3] = {32, 0, 1ull << 50};
    gb b = one_tensor_file(3, ne, SP_TYPE_F32, 0, 0);
    sp_gguf *g = expect_ok(&b);
    cr_assert_eq(sp_gguf_tensor_at(g, 0)->nbytes, 0);
    sp_gguf_close(g);
    free(b.p);
}

Test(gguf_corrupt, tensor_unknown_type) {
    uint64_t ne[1] = {32};
    gb b = one_tensor_file(1, ne, 99, 0, 128);
    expect_fail(&b, "tensor 'blk.0.attn_q.weight': unknown tensor type id 99");
    free(b.p);
    b = one_tensor_file(1, ne, 4, 0, 128); /* the retired Q4_2 */
    expect_fail(&b, "unknown tensor type id 4");
    free(b.p);
}

Test(gguf_corrupt, tensor_row_not_block_multiple) {
    uint64_t ne[2] = {33, 2};
    gb b = one_tensor_file(2, ne, SP_TYPE_Q8_0, 0, 256);
    expect_fail(&b, "tensor 'blk.0.attn_q.weight': row length 33 is not a multiple of the q8_0 block size 32");
    free(b.p);
    uint64_t ne2[1] = {128};
    b = one_tensor_file(1, ne2, SP_TYPE_Q4_K, 0, 256);
    expect_fail(&b, "row length 128 is not a multiple of the q4_");
    expect_fail(&b, "block size 256");
    free(b.p);
}

Test(gguf_corrupt, duplicate_tensor_name) {
    uint64_t ne[1] = {8};
    gb b = {0};
    gb_header(&b, 3, 3, 0);
    gb_tensor_info(&b, "a", 1, ne, SP_TYPE_F32, 0);
    gb_tensor_info(&b, "b", 1, ne, SP_TYPE_F32, 32);
    gb_tensor_info(&b, "a", 1, ne, SP_TYPE_F32, 64);
    gb_pad(&b, 32);
    gb_zeros(&b, 96);
    expect_fail(&b, "tensor 'a': duplicate tensor name (tensors 0 and 2)");
    free(b.p);
}

Test(gguf_corrupt, names_with_control_characters_stay_one_line) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "bad\nkey\x01'");
    gb_u32(&b, SP_GGUF_BOOL);
    gb_u8(&b, 9);
    expect_fail(&b, "key 0 ('bad\\x0akey\\x01\\x27'): bool value 9");
    free(b.p);
}

/* ================================================================ truncation */

/* A small valid file exercising every kind of record; its last tensor ends exactly at the end of
 * the file (a multiple of 32 bytes), so every strict prefix is invalid. */
static gb small_valid_file(void) {
    gb b = {0};
    uint64_t ne1[2] = {4, 2}, ne2[1] = {32};
    gb_header(&b, 3, 2, 5);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "general.alignment", 32);
    gb_str(&b, "a.bools");
    gb_u32(&b, SP_GGUF_ARRAY);
    gb_u32(&b, SP_GGUF_BOOL);
    gb_u64(&b, 2);
    gb_u8(&b, 1);
    gb_u8(&b, 0);
    gb_str(&b, "a.nested");
    gb_u32(&b, SP_GGUF_ARRAY);
    gb_u32(&b, SP_GGUF_ARRAY);
    gb_u64(&b, 2);
    gb_u32(&b, SP_GGUF_STRING);
    gb_u64(&b, 1);
    gb_str(&b, "xy");
    gb_u32(&b, SP_GGUF_I16);
    gb_u64(&b, 2);
    gb_le(&b, 0xfffe, 2);
    gb_le(&b, 5, 2);
    gb_str(&b, "a.f64");
    gb_u32(&b, SP_GGUF_F64);
    gb_u64(&b, 0x400921fb54442d18ull);
    gb_tensor_info(&b, "w", 2, ne1, SP_TYPE_F32, 0);
    gb_tensor_info(&b, "q", 1, ne2, SP_TYPE_Q8_0, 32);
    gb_pad(&b, 32);
    for (int i = 0; i < 32; i++) gb_u8(&b, (uint8_t)i);
    for (int i = 0; i < 34; i++) gb_u8(&b, (uint8_t)(100 + i));
    gb_zeros(&b, 30); /* pad q's 34 bytes to 64 so the file ends at a tensor's padded end */
    return b;
}

Test(gguf_truncate, small_file_values) {
    gb b = small_valid_file();
    sp_gguf *g = expect_ok(&b);
    const sp_gguf_value *nested = sp_gguf_get(g, "a.nested");
    cr_assert_eq(nested->arr.n, 2);
    assert_str(nested->arr.vals[0].arr.strs[0], "xy");
    cr_assert_eq(sp_gguf_arr_i64(&nested->arr.vals[1], 0), -2);
    cr_assert_eq(sp_gguf_arr_i64(&nested->arr.vals[1], 1), 5);
    cr_assert_eq(sp_gguf_get(g, "a.f64")->f64, 3.141592653589793);
    const sp_gguf_tensor *q = sp_gguf_find_tensor(g, "q");
    cr_assert_eq(q->nbytes, 34);
    cr_assert_eq(((const uint8_t *)q->data)[33], 133);
    sp_gguf_close(g);
    free(b.p);
}

/* The tensor "q" needs only 34 bytes: cutting within the last 30 padding bytes still leaves a valid
 * file. Every cut before q's data ends must fail. */
Test(gguf_truncate, every_prefix_fails_cleanly) {
    gb b = small_valid_file();
    size_t data_end = b.len - 30;
    for (size_t len = 0; len < b.len; len++) {
        char err[512] = "";
        void *buf;
        sp_gguf *g = open_exact(b.p, len, &buf, err, sizeof err);
        bool opened = g != NULL;
        sp_gguf_close(g);
        free(buf);
        if (len >= data_end) {
            cr_assert(opened, "cut at %zu (after the data) should open: %s", len, err);
            continue;
        }
        cr_assert(!opened, "truncated at %zu of %zu bytes but opened", len, b.len);
        cr_assert(err[0], "empty error at %zu", len);
        cr_assert(strncmp(err, "gguf: ", 6) == 0, "%s", err);
        cr_assert(strstr(err, "unexpected end of file") || strstr(err, "exceeds") ||
                      strstr(err, "past end of file") || strstr(err, "too small"),
                  "cut at %zu: unexpected error %s", len, err);
    }
    free(b.p);
}

/* The same over a writer-made file whose tensor sizes are multiples of 32: every prefix fails. */
Test(gguf_truncate, every_prefix_of_writer_file_fails) {
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "general.architecture", "llama");
    const char *toks[] = {"<unk>", "a", "bc"};
    sp_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    float sc[3] = {0, -1, -2};
    sp_gguf_w_arr_f32(w, "tokenizer.ggml.scores", sc, 3);
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = (float)i;
    int64_t ne[2] = {8, 2};
    sp_gguf_w_tensor(w, "t", SP_TYPE_F32, 2, ne, data);
    char err[512];
    const char *path = tu_tmp("prefix.gguf");
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    sp_gguf_writer_free(w);
    size_t size;
    uint8_t *file = tu_read_file(path, &size);
    for (size_t len = 0; len <= size; len++) {
        err[0] = 0;
        void *buf;
        sp_gguf *g = open_exact(file, len, &buf, err, sizeof err);
        bool opened = g != NULL;
        sp_gguf_close(g);
        free(buf);
        if (len == size) {
            cr_assert(opened, "%s", err);
        } else {
            cr_assert(!opened, "prefix %zu opened", len);
            cr_assert(err[0] && !strchr(err, '\n'), "prefix %zu: '%s'", len, err);
        }
    }
    free(file);
}

/* ================================================================ typed getters */

Test(gguf_getters, conversions) {
    gb b = {0};
    gb_header(&b, 3, 0, 8);
    gb_str(&b, "neg");
    gb_u32(&b, SP_GGUF_I32);
    gb_u32(&b, (uint32_t)-5);
    gb_str(&b, "big");
    gb_u32(&b, SP_GGUF_U64);
    gb_u64(&b, 1ull << 40);
    gb_str(&b, "small");
    gb_u32(&b, SP_GGUF_U8);
    gb_u8(&b, 200);
    gb_str(&b, "flag");
    gb_u32(&b, SP_GGUF_BOOL);
    gb_u8(&b, 1);
    gb_str(&b, "f");
    gb_u32(&b, SP_GGUF_F64);
    gb_u64(&b, 0x3ff8000000000000ull); /* 1.5 */
    gb_kv_str(&b, "s", "hello");
    gb_str(&b, "huge");
    gb_u32(&b, SP_GGUF_U64);
    gb_u64(&b, UINT64_MAX);
    gb_str(&b, "i16");
    gb_u32(&b, SP_GGUF_I16);
    gb_le(&b, 0x8000, 2);
    sp_gguf *g = expect_ok(&b);
    uint32_t u;
    int64_t i;
    float f;
    bool bo;
    sp_gguf_str s;
    cr_assert(!sp_gguf_get_u32(g, "neg", &u), "negative does not fit u32");
    cr_assert(sp_gguf_get_i64(g, "neg", &i) && i == -5);
    cr_assert(!sp_gguf_get_u32(g, "big", &u));
    cr_assert(sp_gguf_get_i64(g, "big", &i) && i == (1ll << 40));
    cr_assert(!sp_gguf_get_i64(g, "huge", &i));
    cr_assert(sp_gguf_get_u32(g, "small", &u) && u == 200);
    cr_assert(!sp_gguf_get_u32(g, "flag", &u), "bool is not an integer");
    cr_assert(sp_gguf_get_bool(g, "flag", &bo) && bo);
    cr_assert(!sp_gguf_get_bool(g, "small", &bo));
    cr_assert(sp_gguf_get_f32(g, "f", &f) && f == 1.5f);
    cr_assert(!sp_gguf_get_f32(g, "small", &f));
    cr_assert(sp_gguf_get_str(g, "s", &s));
    assert_str(s, "hello");
    cr_assert(!sp_gguf_get_str(g, "small", &s));
    cr_assert(!sp_gguf_get_u32(g, "absent", &u));
    cr_assert_null(sp_gguf_get(g, "absent"));
    cr_assert(sp_gguf_get_i64(g, "i16", &i) && i == -32768);
    cr_assert(!sp_gguf_str_eq(s, "hell"));
    cr_assert(!sp_gguf_str_eq(s, "hello!"));
    cr_assert_str_eq(sp_gguf_vtype_name(SP_GGUF_STRING), "string");
    cr_assert_str_eq(sp_gguf_vtype_name((sp_gguf_vtype)77), "unknown");
    sp_gguf_close(g);
    free(b.p);
}

/* ================================================================ writer */

typedef struct {
    int64_t calls;
    int64_t row_len;
} fill_state;

/* f16 rows whose bits encode the row and column, so every byte is checkable. */
static void fill_f16(void *ctx, int64_t row, void *dst) {
    fill_state *st = ctx;
    uint16_t *h = dst;
    for (int64_t c = 0; c < st->row_len; c++) h[c] = (uint16_t)(row * 100 + c);
    st->calls++;
}

static uint8_t raw_u8[3] = {0, 200, 255};
static int8_t raw_i8[2] = {-128, 127};
static uint8_t raw_bool[3] = {1, 0, 1};

/* Values of every type: scalars, arrays of each element type, nested arrays. */
static void write_all_types(sp_gguf_writer *w) {
    sp_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = SP_GGUF_U8; v.u64 = 200; sp_gguf_w_value(w, "t.u8", &v);
    v.type = SP_GGUF_I8; v.i64 = -100; sp_gguf_w_value(w, "t.i8", &v);
    v.type = SP_GGUF_U16; v.u64 = 60000; sp_gguf_w_value(w, "t.u16", &v);
    v.type = SP_GGUF_I16; v.i64 = -30000; sp_gguf_w_value(w, "t.i16", &v);
    v.type = SP_GGUF_U64; v.u64 = (1ull << 63) + 5; sp_gguf_w_value(w, "t.u64", &v);
    v.type = SP_GGUF_I64; v.i64 = -(1ll << 62) - 3; sp_gguf_w_value(w, "t.i64", &v);
    v.type = SP_GGUF_F64; v.f64 = -2.718281828459045; sp_gguf_w_value(w, "t.f64", &v);
    v.type = SP_GGUF_STRING; v.str.ptr = "nul\0inside"; v.str.len = 10; sp_gguf_w_value(w, "t.strnul", &v);
    sp_gguf_w_u32(w, "t.u32", 4000000000u);
    sp_gguf_w_i32(w, "t.i32", -2000000000);
    sp_gguf_w_f32(w, "t.f32", 0.1f);
    sp_gguf_w_bool(w, "t.bool", true);
    sp_gguf_w_bool(w, "t.false", false);
    sp_gguf_w_str(w, "t.str", "h\xc3\xa9llo\n");
    sp_gguf_w_str(w, "t.empty", "");

    sp_gguf_value a;
    memset(&a, 0, sizeof a);
    a.type = SP_GGUF_ARRAY;
    a.arr.type = SP_GGUF_U8; a.arr.n = 3; a.arr.raw = raw_u8; sp_gguf_w_value(w, "a.u8", &a);
    a.arr.type = SP_GGUF_I8; a.arr.n = 2; a.arr.raw = (const uint8_t *)raw_i8; sp_gguf_w_value(w, "a.i8", &a);
    a.arr.type = SP_GGUF_BOOL; a.arr.n = 3; a.arr.raw = raw_bool; sp_gguf_w_value(w, "a.bool", &a);
    uint64_t u64s[2] = {UINT64_MAX, 7};
    a.arr.type = SP_GGUF_U64; a.arr.n = 2; a.arr.raw = (const uint8_t *)u64s; sp_gguf_w_value(w, "a.u64", &a);
    double f64s[2] = {1e300, -0.5};
    a.arr.type = SP_GGUF_F64; a.arr.n = 2; a.arr.raw = (const uint8_t *)f64s; sp_gguf_w_value(w, "a.f64", &a);
    a.arr.type = SP_GGUF_U16; a.arr.n = 0; a.arr.raw = NULL; sp_gguf_w_value(w, "a.empty", &a);
    float f32s[3] = {1.5f, -0.0f, 1e-30f};
    sp_gguf_w_arr_f32(w, "a.f32", f32s, 3);
    int32_t i32s[4] = {INT32_MIN, -1, 0, INT32_MAX};
    sp_gguf_w_arr_i32(w, "a.i32", i32s, 4);
    const char *strs[3] = {"", "two", "\xe2\x96\x81three"};
    sp_gguf_w_arr_str(w, "a.str", strs, 3);

    /* [[1, 2, 3], [], [["x", "yz"]]] as arrays of arrays */
    int32_t inner_i[3] = {1, 2, 3};
    sp_gguf_str inner_s[2] = {{"x", 1}, {"yz", 2}};
    sp_gguf_value deepest = {.type = SP_GGUF_ARRAY};
    deepest.arr.type = SP_GGUF_STRING; deepest.arr.n = 2; deepest.arr.strs = inner_s;
    sp_gguf_value elems[3];
    memset(elems, 0, sizeof elems);
    elems[0].type = SP_GGUF_ARRAY; elems[0].arr.type = SP_GGUF_I32; elems[0].arr.n = 3;
    elems[0].arr.raw = (const uint8_t *)inner_i;
    elems[1].type = SP_GGUF_ARRAY; elems[1].arr.type = SP_GGUF_F32; elems[1].arr.n = 0;
    elems[2].type = SP_GGUF_ARRAY; elems[2].arr.type = SP_GGUF_ARRAY; elems[2].arr.n = 1;
    elems[2].arr.vals = &deepest;
    sp_gguf_value outer = {.type = SP_GGUF_ARRAY};
    outer.arr.type = SP_GGUF_ARRAY; outer.arr.n = 3; outer.arr.vals = elems;
    sp_gguf_w_value(w, "a.nested", &outer);
}

static void check_all_types(const sp_gguf *g) {
    const sp_gguf_value *v;
    v = sp_gguf_get(g, "t.u8"); cr_assert(v->type == SP_GGUF_U8 && v->u64 == 200);
    v = sp_gguf_get(g, "t.i8"); cr_assert(v->type == SP_GGUF_I8 && v->i64 == -100);
    v = sp_gguf_get(g, "t.u16"); cr_assert(v->type == SP_GGUF_U16 && v->u64 == 60000);
    v = sp_gguf_get(g, "t.i16"); cr_assert(v->type == SP_GGUF_I16 && v->i64 == -30000);
    v = sp_gguf_get(g, "t.u64"); cr_assert(v->type == SP_GGUF_U64 && v->u64 == (1ull << 63) + 5);
    v = sp_gguf_get(g, "t.i64"); cr_assert(v->type == SP_GGUF_I64 && v->i64 == -(1ll << 62) - 3);
    v = sp_gguf_get(g, "t.f64"); cr_assert(v->type == SP_GGUF_F64 && v->f64 == -2.718281828459045);
    v = sp_gguf_get(g, "t.strnul");
    cr_assert(v->type == SP_GGUF_STRING && v->str.len == 10 && memcmp(v->str.ptr, "nul\0inside", 10) == 0);
    v = sp_gguf_get(g, "t.u32"); cr_assert(v->type == SP_GGUF_U32 && v->u64 == 4000000000u);
    v = sp_gguf_get(g, "t.i32"); cr_assert(v->type == SP_GGUF_I32 && v->i64 == -2000000000);
    v = sp_gguf_get(g, "t.f32"); cr_assert(v->type == SP_GGUF_F32 && (float)v->f64 == 0.1f);
    bool b;
    cr_assert(sp_gguf_get_bool(g, "t.bool", &b) && b);
    cr_assert(sp_gguf_get_bool(g, "t.false", &b) && !b);
    sp_gguf_str s;
    cr_assert(sp_gguf_get_str(g, "t.str", &s));
    assert_str(s, "h\xc3\xa9llo\n");
    cr_assert(sp_gguf_get_str(g, "t.empty", &s) && s.len == 0);

    v = sp_gguf_get(g, "a.u8");
    cr_assert(v->arr.type == SP_GGUF_U8 && v->arr.n == 3 && memcmp(v->arr.raw, raw_u8, 3) == 0);
    v = sp_gguf_get(g, "a.i8");
    cr_assert(v->arr.type == SP_GGUF_I8 && sp_gguf_arr_i64(v, 0) == -128 && sp_gguf_arr_i64(v, 1) == 127);
    v = sp_gguf_get(g, "a.bool");
    cr_assert(v->arr.type == SP_GGUF_BOOL && memcmp(v->arr.raw, raw_bool, 3) == 0);
    v = sp_gguf_get(g, "a.u64");
    cr_assert(v->arr.type == SP_GGUF_U64 && sp_gguf_arr_i64(v, 0) == INT64_MAX && sp_gguf_arr_i64(v, 1) == 7);
    cr_assert(sp_gguf_arr_f64(v, 0) == 18446744073709551615.0);
    v = sp_gguf_get(g, "a.f64");
    cr_assert(sp_gguf_arr_f64(v, 0) == 1e300 && sp_gguf_arr_f64(v, 1) == -0.5);
    cr_assert(sp_gguf_arr_i64(v, 0) == INT64_MAX, "saturates");
    v = sp_gguf_get(g, "a.empty");
    cr_assert(v->type == SP_GGUF_ARRAY && v->arr.type == SP_GGUF_U16 && v->arr.n == 0);
    v = sp_gguf_get(g, "a.f32");
    cr_assert(v->arr.type == SP_GGUF_F32 && v->arr.n == 3);
    cr_assert(sp_gguf_arr_f64(v, 0) == 1.5 && sp_gguf_arr_f64(v, 2) == (double)1e-30f);
    cr_assert(signbit(sp_gguf_arr_f64(v, 1)));
    v = sp_gguf_get(g, "a.i32");
    cr_assert(sp_gguf_arr_i64(v, 0) == INT32_MIN && sp_gguf_arr_i64(v, 3) == INT32_MAX);
    v = sp_gguf_get(g, "a.str");
    cr_assert(v->arr.type == SP_GGUF_STRING && v->arr.n == 3);
    assert_str(v->arr.strs[0], "");
    assert_str(v->arr.strs[1], "two");
    assert_str(v->arr.strs[2], "\xe2\x96\x81three");

    v = sp_gguf_get(g, "a.nested");
    cr_assert(v->arr.type == SP_GGUF_ARRAY && v->arr.n == 3);
    const sp_gguf_value *e0 = &v->arr.vals[0], *e1 = &v->arr.vals[1], *e2 = &v->arr.vals[2];
    cr_assert(e0->arr.type == SP_GGUF_I32 && e0->arr.n == 3 && sp_gguf_arr_i64(e0, 2) == 3);
    cr_assert(e1->arr.type == SP_GGUF_F32 && e1->arr.n == 0);
    cr_assert(e2->arr.type == SP_GGUF_ARRAY && e2->arr.n == 1);
    const sp_gguf_value *d = &e2->arr.vals[0];
    cr_assert(d->arr.type == SP_GGUF_STRING && d->arr.n == 2);
    assert_str(d->arr.strs[0], "x");
    assert_str(d->arr.strs[1], "yz");
}

Test(gguf_writer, round_trip_values_and_tensors) {
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "general.architecture", "test");
    write_all_types(w);
    sp_gguf_w_u32(w, "general.architecture_replaced_later", 1);
    sp_gguf_w_str(w, "general.architecture", "llama"); /* replaces in place, keeps position 0 */

    float f32data[24];
    for (int i = 0; i < 24; i++) f32data[i] = (float)i * 0.25f - 3.0f;
    int64_t ne_a[2] = {8, 3};
    sp_gguf_w_tensor(w, "a.weight", SP_TYPE_F32, 2, ne_a, f32data);
    uint8_t q8[2 * 34];
    for (int i = 0; i < (int)sizeof q8; i++) q8[i] = (uint8_t)(i * 7);
    int64_t ne_q[2] = {32, 2};
    sp_gguf_w_tensor(w, "q.weight", SP_TYPE_Q8_0, 2, ne_q, q8);
    fill_state st = {0, 16};
    int64_t ne_f[3] = {16, 4, 2};
    sp_gguf_w_tensor_fn(w, "f.weight", SP_TYPE_F16, 3, ne_f, fill_f16, &st);
    int64_t ne_e[2] = {0, 5};
    sp_gguf_w_tensor(w, "empty", SP_TYPE_F32, 2, ne_e, NULL);

    const char *path = tu_tmp("roundtrip.gguf");
    char err[512] = "";
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    cr_assert_eq(st.calls, 8, "fill called once per row");
    sp_gguf_writer_free(w);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    cr_assert(access(tmp, F_OK) != 0, "temp file left behind");

    sp_gguf *g = sp_gguf_open(path, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(sp_gguf_version(g), 3);
    cr_assert_eq(sp_gguf_alignment(g), 32);
    cr_assert_eq(sp_gguf_data_offset(g) % 32, 0);
    check_all_types(g);
    assert_str(sp_gguf_kv_at(g, 0)->key, "general.architecture");
    sp_gguf_str arch;
    cr_assert(sp_gguf_get_str(g, "general.architecture", &arch));
    assert_str(arch, "llama");
    assert_str(sp_gguf_kv_at(g, 1)->key, "t.u8");
    assert_str(sp_gguf_kv_at(g, sp_gguf_n_kv(g) - 1)->key, "general.architecture_replaced_later");
    cr_assert_eq(sp_gguf_n_kv(g), 27);

    cr_assert_eq(sp_gguf_n_tensors(g), 4);
    assert_str(sp_gguf_tensor_at(g, 0)->name, "a.weight");
    assert_str(sp_gguf_tensor_at(g, 3)->name, "empty");
    assert_tensor(g, "a.weight", SP_TYPE_F32, 2, 8, 3, 96);
    cr_assert(memcmp(sp_gguf_find_tensor(g, "a.weight")->data, f32data, 96) == 0);
    assert_tensor(g, "q.weight", SP_TYPE_Q8_0, 2, 32, 2, 68);
    cr_assert(memcmp(sp_gguf_find_tensor(g, "q.weight")->data, q8, 68) == 0);
    const sp_gguf_tensor *f = sp_gguf_find_tensor(g, "f.weight");
    cr_assert(f->n_dims == 3 && f->ne[0] == 16 && f->ne[1] == 4 && f->ne[2] == 2 && f->nbytes == 256);
    for (int64_t r = 0; r < 8; r++) {
        for (int64_t c = 0; c < 16; c++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)f->data + (r * 16 + c) * 2, 2);
            cr_assert_eq(h, (uint16_t)(r * 100 + c), "row %lld col %lld", (long long)r, (long long)c);
        }
    }
    const sp_gguf_tensor *e = sp_gguf_find_tensor(g, "empty");
    cr_assert(e->nbytes == 0 && e->ne[0] == 0 && e->ne[1] == 5);
    sp_gguf_close(g);
}

/* Copying every key (sp_gguf_w_value) and tensor of a real model reproduces it byte for byte. */
Test(gguf_writer, copy_of_stories260K_is_identical) {
    sp_gguf *src = open_shared("models/stories260K.gguf");
    sp_gguf_writer *w = sp_gguf_writer_new();
    for (uint64_t i = 0; i < sp_gguf_n_kv(src); i++) {
        const sp_gguf_kv *kv = sp_gguf_kv_at(src, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        sp_gguf_w_value(w, key, &kv->val);
    }
    for (uint64_t i = 0; i < sp_gguf_n_tensors(src); i++) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(src, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        sp_gguf_w_tensor(w, name, t->type, t->n_dims, t->ne, t->data);
    }
    const char *path = tu_tmp("copy.gguf");
    char err[512] = "";
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    sp_gguf_writer_free(w);
    size_t size;
    uint8_t *copy = tu_read_file(path, &size);
    cr_assert_eq(size, sp_gguf_file_size(src));
    cr_assert(memcmp(copy, sp_gguf_base(src), size) == 0);
    free(copy);
    sp_gguf_close(src);
}

Test(gguf_writer, no_tensors_and_custom_alignment) {
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_str(w, "general.architecture", "llama");
    const char *path = tu_tmp("empty.gguf");
    char err[512] = "";
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    sp_gguf *g = sp_gguf_open(path, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(sp_gguf_n_tensors(g), 0);
    cr_assert_eq(sp_gguf_data_offset(g), sp_gguf_file_size(g), "padded header end is the file end");
    sp_gguf_close(g);

    sp_gguf_w_u32(w, "general.alignment", 64);
    float x[4] = {1, 2, 3, 4};
    int64_t ne[1] = {4};
    sp_gguf_w_tensor(w, "a", SP_TYPE_F32, 1, ne, x);
    sp_gguf_w_tensor(w, "b", SP_TYPE_F32, 1, ne, x);
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    g = sp_gguf_open(path, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(sp_gguf_alignment(g), 64);
    cr_assert_eq(sp_gguf_data_offset(g) % 64, 0);
    cr_assert_eq(sp_gguf_find_tensor(g, "b")->offset, 64);
    sp_gguf_close(g);

    sp_gguf_w_u32(w, "general.alignment", 48);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "general.alignment"), "%s", err);
    sp_gguf_writer_free(w);
}

Test(gguf_writer, misuse_is_reported_at_save) {
    char err[512];
    const char *path = tu_tmp("misuse.gguf");
    int64_t ne[2] = {32, 2};
    float data[64] = {0};

    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_tensor(w, "x", 99, 2, ne, data);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "tensor 'x': unknown tensor type id 99"), "%s", err);
    sp_gguf_writer_free(w);

    w = sp_gguf_writer_new();
    sp_gguf_w_tensor(w, "x", SP_TYPE_F32, 2, ne, data);
    sp_gguf_w_tensor(w, "x", SP_TYPE_F32, 2, ne, data);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "duplicate tensor name 'x'"), "%s", err);
    sp_gguf_writer_free(w);

    w = sp_gguf_writer_new();
    int64_t bad[1] = {33};
    sp_gguf_w_tensor(w, "q", SP_TYPE_Q8_0, 1, bad, data);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "not a multiple of the q8_0 block size 32"), "%s", err);
    sp_gguf_writer_free(w);

    w = sp_gguf_writer_new();
    int64_t ne5[5] = {32, 1, 1, 1, 1};
    sp_gguf_w_tensor(w, "q", SP_TYPE_F32, 5, ne5, data);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "n_dims 5"), "%s", err);
    sp_gguf_writer_free(w);

    w = sp_gguf_writer_new();
    sp_gguf_value v = {.type = SP_GGUF_BOOL, .u64 = 2};
    sp_gguf_w_value(w, "b", &v);
    cr_assert(!sp_gguf_writer_save(w, path, err, sizeof err));
    cr_assert(strstr(err, "does not fit type bool"), "%s", err);
    sp_gguf_writer_free(w);

    cr_assert(access(path, F_OK) != 0, "nothing written on failure");

    w = sp_gguf_writer_new();
    sp_gguf_w_u32(w, "a", 1);
    cr_assert(!sp_gguf_writer_save(w, "/nonexistent-dir/x.gguf", err, sizeof err));
    cr_assert(strstr(err, "cannot create"), "%s", err);
    sp_gguf_writer_free(w);
}

Test(gguf_writer, nested_depth_limit) {
    sp_gguf_value levels[10];
    memset(levels, 0, sizeof levels);
    uint8_t one = 1;
    for (int d = 0; d < 10; d++) {
        levels[d].type = SP_GGUF_ARRAY;
        levels[d].arr.n = 1;
        if (d == 9) {
            levels[d].arr.type = SP_GGUF_U8;
            levels[d].arr.raw = &one;
        } else {
            levels[d].arr.type = SP_GGUF_ARRAY;
            levels[d].arr.vals = &levels[d + 1];
        }
    }
    char err[512];
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_w_value(w, "ok", &levels[2]); /* 8 levels */
    cr_assert(sp_gguf_writer_save(w, tu_tmp("deep.gguf"), err, sizeof err), "%s", err);
    sp_gguf_w_value(w, "too.deep", &levels[1]); /* 9 levels */
    cr_assert(!sp_gguf_writer_save(w, tu_tmp("deep.gguf"), err, sizeof err));
    cr_assert(strstr(err, "nested deeper than 8"), "%s", err);
    sp_gguf_writer_free(w);
}

/* Many keys and tensors: the name tables grow (rehash) while reading and every name is found. */
Test(gguf_writer, many_keys_and_tensors) {
    sp_gguf_writer *w = sp_gguf_writer_new();
    char name[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "key.%d", i);
        sp_gguf_w_u32(w, name, (uint32_t)i * 3);
    }
    float row[8] = {0};
    int64_t ne[1] = {8};
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "blk.%d.weight", i);
        row[0] = (float)i;
        sp_gguf_w_tensor(w, name, SP_TYPE_F32, 1, ne, row);
    }
    char err[512];
    const char *path = tu_tmp("many.gguf");
    cr_assert(sp_gguf_writer_save(w, path, err, sizeof err), "%s", err);
    sp_gguf_writer_free(w);
    sp_gguf *g = sp_gguf_open(path, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(sp_gguf_n_kv(g), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "key.%d", i);
        uint32_t v;
        cr_assert(sp_gguf_get_u32(g, name, &v) && v == (uint32_t)i * 3, "%s", name);
        cr_assert_eq(sp_gguf_get(g, name), &sp_gguf_kv_at(g, (uint64_t)i)->val);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "blk.%d.weight", i);
        const sp_gguf_tensor *t = sp_gguf_find_tensor(g, name);
        cr_assert_eq(t, sp_gguf_tensor_at(g, (uint64_t)i), "%s", name);
        float first;
        memcpy(&first, t->data, 4);
        cr_assert_eq(first, (float)i);
    }
    cr_assert_null(sp_gguf_get(g, "key.1000"));
    sp_gguf_close(g);
}
