/* tests/fuzz/fuzz_gguf.c — libFuzzer target for the GGUF reader (storage/gguf_read.c): any input
 * either opens or fails with a one-line error; an opened file is walked completely (every key,
 * every nested array element, every tensor's first and last data byte) and its invariants are
 * checked, so ASan/UBSan see every pointer the accessors hand out. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/gguf.h"

static volatile uint8_t sink;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_gguf: invariant failed: %s\n", what);
        abort();
    }
}

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    sink ^= ((const uint8_t *)p)[0];
    sink ^= ((const uint8_t *)p)[n - 1];
}

static unsigned scalar_size(sp_gguf_vtype t) {
    switch (t) {
    case SP_GGUF_U8: case SP_GGUF_I8: case SP_GGUF_BOOL: return 1;
    case SP_GGUF_U16: case SP_GGUF_I16: return 2;
    case SP_GGUF_U32: case SP_GGUF_I32: case SP_GGUF_F32: return 4;
    case SP_GGUF_U64: case SP_GGUF_I64: case SP_GGUF_F64: return 8;
    default: return 0;
    }
}

static void walk_value(const sp_gguf_value *v, int depth) {
    check(depth <= 8, "nesting depth");
    sink ^= (uint8_t)sp_gguf_vtype_name(v->type)[0];
    if (v->type == SP_GGUF_STRING) {
        touch(v->str.ptr, v->str.len);
        return;
    }
    if (v->type != SP_GGUF_ARRAY) {
        if (v->type == SP_GGUF_BOOL) check(v->u64 <= 1, "bool is 0 or 1");
        return;
    }
    uint64_t n = v->arr.n;
    if (v->arr.type == SP_GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) touch(v->arr.strs[i].ptr, v->arr.strs[i].len);
    } else if (v->arr.type == SP_GGUF_ARRAY) {
        for (uint64_t i = 0; i < n; i++) {
            check(v->arr.vals[i].type == SP_GGUF_ARRAY, "array of arrays holds arrays");
            walk_value(&v->arr.vals[i], depth + 1);
        }
    } else {
        unsigned size = scalar_size(v->arr.type);
        check(size != 0, "known element type");
        touch(v->arr.raw, n * size);
        for (uint64_t i = 0; i < n; i++) {
            sink ^= (uint8_t)sp_gguf_arr_i64(v, i);
            sink ^= (uint8_t)(sp_gguf_arr_f64(v, i) != 0);
        }
    }
}

/* The key, as a C string, must find its own value (keys are unique). */
static void check_lookup(const sp_gguf *g, const sp_gguf_kv *kv) {
    char key[256];
    if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, kv->key.len)) return;
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    check(sp_gguf_get(g, key) == &kv->val, "key lookup finds its value");
    uint32_t u;
    int64_t i;
    float f;
    bool b;
    sp_gguf_str s;
    sink ^= (uint8_t)(sp_gguf_get_u32(g, key, &u) + sp_gguf_get_i64(g, key, &i) + sp_gguf_get_f32(g, key, &f) +
                      sp_gguf_get_bool(g, key, &b) + sp_gguf_get_str(g, key, &s));
}

static void walk_tensor(const sp_gguf *g, const sp_gguf_tensor *t) {
    const uint8_t *base = sp_gguf_base(g), *data = t->data;
    uint64_t size = sp_gguf_file_size(g);
    check(t->n_dims >= 1 && t->n_dims <= 4, "n_dims in 1..4");
    for (int d = 0; d < 4; d++) check(t->ne[d] >= 0, "dims not negative");
    check(t->offset % sp_gguf_alignment(g) == 0, "offset aligned");
    check(data >= base && (uint64_t)(data - base) <= size && t->nbytes <= size - (uint64_t)(data - base),
          "tensor inside the file");
    touch(data, t->nbytes);
    touch(t->name.ptr, t->name.len);
    char name[256];
    if (t->name.len < sizeof name && !memchr(t->name.ptr, 0, t->name.len)) {
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        check(sp_gguf_find_tensor(g, name) == t, "tensor lookup finds itself");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    err[0] = 0;
    sp_gguf *g = sp_gguf_open_mem(data, size, err, sizeof err);
    if (!g) {
        check(err[0] != 0, "a failure has a message");
        check(strncmp(err, "gguf: ", 6) == 0, "error prefixed 'gguf: '");
        check(strchr(err, '\n') == NULL, "error is one line");
        return 0;
    }
    uint64_t a = sp_gguf_alignment(g);
    check(a != 0 && (a & (a - 1)) == 0, "alignment power of two");
    check(sp_gguf_data_offset(g) % a == 0, "data offset aligned");
    check(sp_gguf_version(g) == 2 || sp_gguf_version(g) == 3, "version 2 or 3");
    for (uint64_t i = 0; i < sp_gguf_n_kv(g); i++) {
        const sp_gguf_kv *kv = sp_gguf_kv_at(g, i);
        touch(kv->key.ptr, kv->key.len);
        walk_value(&kv->val, 0);
        check_lookup(g, kv);
    }
    check(sp_gguf_kv_at(g, sp_gguf_n_kv(g)) == NULL, "kv_at past the end is NULL");
    for (uint64_t i = 0; i < sp_gguf_n_tensors(g); i++) walk_tensor(g, sp_gguf_tensor_at(g, i));
    check(sp_gguf_tensor_at(g, sp_gguf_n_tensors(g)) == NULL, "tensor_at past the end is NULL");
    sp_gguf_close(g);
    return 0;
}
