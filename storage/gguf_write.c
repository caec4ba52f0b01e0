/* storage/gguf_write.c — the GGUF writer (version 3): metadata is encoded as it is added (keys
 * keep insertion order; setting a key again replaces its value in place), tensors are either
 * copied at add time or produced row by row through a fill callback while saving, so a big model
 * never sits in memory whole. Saving writes PATH.tmp.PID, fsyncs it and renames it over PATH. Any
 * misuse (bad shape, unknown type, duplicate tensor) is remembered and reported by the save. */
#include "storage/gguf.h"

#include "kernels/types.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_WRITE_VERSION 3
#define GGUF_WRITE_ALIGNMENT 32
#define GGUF_WRITE_MAX_DEPTH 8
#define GGUF_WRITE_MAX_DIMS 4

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} wbuf;

typedef struct {
    char *key;
    wbuf val; /* value type (u32) followed by the encoded value */
} wkv;

typedef struct {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_WRITE_MAX_DIMS];
    uint64_t rows, row_bytes, nbytes, offset;
    void *data;           /* copied bytes, or NULL when produced by fill */
    sp_gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct sp_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    bool failed;
    char err[256]; /* the first misuse, reported by save */
};

/* ---------------------------------------------------------------- byte buffer */

static void buf_put(wbuf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void buf_le(wbuf *b, uint64_t v, unsigned n) {
    uint8_t bytes[8];
    for (unsigned i = 0; i < n; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, bytes, n);
}

static void buf_str(wbuf *b, const char *s, uint64_t len) {
    buf_le(b, len, 8);
    if (len > SIZE_MAX) {
        b->oom = true;
        return;
    }
    buf_put(b, s, (size_t)len);
}

/* ---------------------------------------------------------------- misuse */

static void w_fail(sp_gguf_writer *w, const char *fmt, ...) {
    if (!w || w->failed) return;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- lifetime */

sp_gguf_writer *sp_gguf_writer_new(void) { return calloc(1, sizeof(sp_gguf_writer)); }

void sp_gguf_writer_free(sp_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* ---------------------------------------------------------------- metadata */

/* The slot for key: the existing one (its old value dropped) or a new one at the end. */
static wkv *kv_slot(sp_gguf_writer *w, const char *key) {
    if (!w || w->failed) return NULL;
    if (!key) {
        w_fail(w, "gguf writer: NULL key");
        return NULL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].val.p);
            memset(&w->kvs[i].val, 0, sizeof w->kvs[i].val);
            return &w->kvs[i];
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs) {
            w_fail(w, "gguf writer: out of memory");
            return NULL;
        }
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kvs[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        w_fail(w, "gguf writer: out of memory");
        return NULL;
    }
    w->n_kv++;
    return kv;
}

/* Finish a key whose value was encoded into kv->val. */
static void kv_done(sp_gguf_writer *w, wkv *kv) {
    if (kv->val.oom) w_fail(w, "gguf writer: key '%s': out of memory", kv->key);
}

static void w_scalar(sp_gguf_writer *w, const char *key, sp_gguf_vtype t, uint64_t bits, unsigned n) {
    wkv *kv = kv_slot(w, key);
    if (!kv) return;
    buf_le(&kv->val, t, 4);
    buf_le(&kv->val, bits, n);
    kv_done(w, kv);
}

void sp_gguf_w_u32(sp_gguf_writer *w, const char *key, uint32_t v) { w_scalar(w, key, SP_GGUF_U32, v, 4); }
void sp_gguf_w_i32(sp_gguf_writer *w, const char *key, int32_t v) { w_scalar(w, key, SP_GGUF_I32, (uint32_t)v, 4); }
void sp_gguf_w_bool(sp_gguf_writer *w, const char *key, bool v) { w_scalar(w, key, SP_GGUF_BOOL, v ? 1 : 0, 1); }

void sp_gguf_w_f32(sp_gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    w_scalar(w, key, SP_GGUF_F32, bits, 4);
}

void sp_gguf_w_str(sp_gguf_writer *w, const char *key, const char *v) {
    wkv *kv = kv_slot(w, key);
    if (!kv) return;
    if (!v) {
        w_fail(w, "gguf writer: key '%s': NULL string", kv->key);
        return;
    }
    buf_le(&kv->val, SP_GGUF_STRING, 4);
    buf_str(&kv->val, v, strlen(v));
    kv_done(w, kv);
}

void sp_gguf_w_arr_str(sp_gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    wkv *kv = kv_slot(w, key);
    if (!kv) return;
    buf_le(&kv->val, SP_GGUF_ARRAY, 4);
    buf_le(&kv->val, SP_GGUF_STRING, 4);
    buf_le(&kv->val, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i]) {
            w_fail(w, "gguf writer: key '%s': element %" PRIu64 " is NULL", kv->key, i);
            return;
        }
        buf_str(&kv->val, v[i], strlen(v[i]));
    }
    kv_done(w, kv);
}

/* An array of 4-byte scalars from host values. */
static void w_arr32(sp_gguf_writer *w, const char *key, sp_gguf_vtype t, const void *v, uint64_t n) {
    wkv *kv = kv_slot(w, key);
    if (!kv) return;
    buf_le(&kv->val, SP_GGUF_ARRAY, 4);
    buf_le(&kv->val, t, 4);
    buf_le(&kv->val, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, (const uint8_t *)v + 4 * i, 4);
        buf_le(&kv->val, bits, 4);
    }
    kv_done(w, kv);
}

void sp_gguf_w_arr_f32(sp_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    w_arr32(w, key, SP_GGUF_F32, v, n);
}

void sp_gguf_w_arr_i32(sp_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    w_arr32(w, key, SP_GGUF_I32, v, n);
}

/* ---------------------------------------------------------------- generic values */

/* Whether a decoded scalar's value fits its declared type; false also for a bool other than 0/1. */
static bool scalar_fits(const sp_gguf_value *v) {
    unsigned n = sp_gguf_vtype_size(v->type);
    switch (v->type) {
    case SP_GGUF_BOOL: return v->u64 <= 1;
    case SP_GGUF_U8: case SP_GGUF_U16: case SP_GGUF_U32: return v->u64 >> (8 * n) == 0;
    case SP_GGUF_I8: case SP_GGUF_I16: case SP_GGUF_I32: {
        int64_t lim = (int64_t)1 << (8 * n - 1);
        return v->i64 >= -lim && v->i64 < lim;
    }
    default: return true;
    }
}

static uint64_t scalar_bits(const sp_gguf_value *v) {
    if (v->type == SP_GGUF_F32) {
        float f = (float)v->f64;
        uint32_t b;
        memcpy(&b, &f, 4);
        return b;
    }
    if (v->type == SP_GGUF_F64) {
        uint64_t b;
        memcpy(&b, &v->f64, 8);
        return b;
    }
    return v->u64; /* the union's i64 shares the bits; encoding keeps the low bytes */
}

static bool encode_body(sp_gguf_writer *w, const char *key, wbuf *b, const sp_gguf_value *v, int level);

/* Array body: element type, length, elements (nested arrays as bodies without a type tag). */
static bool encode_array(sp_gguf_writer *w, const char *key, wbuf *b, const sp_gguf_value *v, int level) {
    uint32_t et = v->arr.type;
    uint64_t n = v->arr.n;
    unsigned size = sp_gguf_vtype_size(et);
    if (level > GGUF_WRITE_MAX_DEPTH || (et == SP_GGUF_ARRAY && level >= GGUF_WRITE_MAX_DEPTH)) {
        w_fail(w, "gguf writer: key '%s': arrays nested deeper than %d levels", key, GGUF_WRITE_MAX_DEPTH);
        return false;
    }
    if (!size && et != SP_GGUF_STRING && et != SP_GGUF_ARRAY) {
        w_fail(w, "gguf writer: key '%s': unknown array element type %" PRIu32, key, et);
        return false;
    }
    buf_le(b, et, 4);
    buf_le(b, n, 8);
    if (size) {
        if (n > SIZE_MAX / size) {
            w_fail(w, "gguf writer: key '%s': array too large", key);
            return false;
        }
        for (uint64_t i = 0; et == SP_GGUF_BOOL && i < n; i++) {
            if (v->arr.raw[i] > 1) {
                w_fail(w, "gguf writer: key '%s': bool element %" PRIu64 " is not 0 or 1", key, i);
                return false;
            }
        }
        buf_put(b, v->arr.raw, (size_t)(n * size));
        return true;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (et == SP_GGUF_STRING) {
            buf_str(b, v->arr.strs[i].ptr, v->arr.strs[i].len);
        } else if (v->arr.vals[i].type != SP_GGUF_ARRAY) {
            w_fail(w, "gguf writer: key '%s': element %" PRIu64 " of an array of arrays is a %s", key, i,
                   sp_gguf_vtype_name(v->arr.vals[i].type));
            return false;
        } else if (!encode_array(w, key, b, &v->arr.vals[i], level + 1)) {
            return false;
        }
    }
    return true;
}

/* A value without its type tag; `level` counts the arrays around it. */
static bool encode_body(sp_gguf_writer *w, const char *key, wbuf *b, const sp_gguf_value *v, int level) {
    if (v->type == SP_GGUF_STRING) {
        buf_str(b, v->str.ptr, v->str.len);
        return true;
    }
    if (v->type == SP_GGUF_ARRAY) return encode_array(w, key, b, v, level + 1);
    unsigned n = sp_gguf_vtype_size(v->type);
    if (!n) {
        w_fail(w, "gguf writer: key '%s': unknown value type %u", key, (unsigned)v->type);
        return false;
    }
    if (!scalar_fits(v)) {
        w_fail(w, "gguf writer: key '%s': value does not fit type %s", key, sp_gguf_vtype_name(v->type));
        return false;
    }
    buf_le(b, scalar_bits(v), n);
    return true;
}

void sp_gguf_w_value(sp_gguf_writer *w, const char *key, const sp_gguf_value *v) {
    wkv *kv = kv_slot(w, key);
    if (!kv) return;
    if (!v) {
        w_fail(w, "gguf writer: key '%s': NULL value", kv->key);
        return;
    }
    buf_le(&kv->val, v->type, 4);
    if (encode_body(w, kv->key, &kv->val, v, 0)) kv_done(w, kv);
}

/* ---------------------------------------------------------------- tensors */

static bool mul_fits(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out) {
    if (a && b > limit / a) return false;
    *out = a * b;
    return true;
}

/* Shape, type and size checks (the reader's rules); fills rows, row_bytes and nbytes. */
static bool tensor_layout(sp_gguf_writer *w, wtensor *t) {
    const sp_type_info *ti = sp_type_get(t->type);
    if (!ti || !ti->blck || !ti->size) {
        w_fail(w, "gguf writer: tensor '%s': unknown tensor type id %" PRIu32, t->name, t->type);
        return false;
    }
    uint64_t elems = 1;
    for (int d = 0; d < GGUF_WRITE_MAX_DIMS; d++) {
        if (t->ne[d] < 0 || (t->ne[d] && !mul_fits(elems, (uint64_t)t->ne[d], INT64_MAX, &elems))) {
            w_fail(w, "gguf writer: tensor '%s': bad shape (negative or overflowing dimensions)", t->name);
            return false;
        }
    }
    if (t->ne[0] % ti->blck != 0) {
        w_fail(w, "gguf writer: tensor '%s': row length %" PRId64 " is not a multiple of the %s block size %"
               PRIu32, t->name, t->ne[0], ti->name, ti->blck);
        return false;
    }
    t->rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3]; /* fits: see elems */
    if (!mul_fits((uint64_t)t->ne[0] / ti->blck, ti->size, UINT64_MAX, &t->row_bytes) ||
        !mul_fits(t->row_bytes, t->rows, UINT64_MAX, &t->nbytes)) {
        w_fail(w, "gguf writer: tensor '%s': byte size overflows", t->name);
        return false;
    }
    return true;
}

/* A new tensor record (name checked unique, shape laid out), or NULL after recording the misuse. */
static wtensor *tensor_add(sp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne) {
    if (!w || w->failed) return NULL;
    if (!name || !ne) {
        w_fail(w, "gguf writer: tensor with NULL name or shape");
        return NULL;
    }
    if (n_dims < 1 || n_dims > GGUF_WRITE_MAX_DIMS) {
        w_fail(w, "gguf writer: tensor '%s': n_dims %" PRIu32 " out of range 1..4", name, n_dims);
        return NULL;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0) {
            w_fail(w, "gguf writer: duplicate tensor name '%s'", name);
            return NULL;
        }
    }
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        wtensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts) {
            w_fail(w, "gguf writer: out of memory");
            return NULL;
        }
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_WRITE_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->name = strdup(name);
    if (!t->name) {
        w_fail(w, "gguf writer: out of memory");
        return NULL;
    }
    if (!tensor_layout(w, t)) {
        free(t->name);
        return NULL;
    }
    w->n_tensors++;
    return t;
}

void sp_gguf_w_tensor(sp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data) {
    wtensor *t = tensor_add(w, name, type, n_dims, ne);
    if (!t || t->nbytes == 0) return;
    if (!data || t->nbytes > SIZE_MAX || !(t->data = malloc((size_t)t->nbytes))) {
        w_fail(w, "gguf writer: tensor '%s': %s", name, data ? "out of memory" : "NULL data");
        return;
    }
    memcpy(t->data, data, (size_t)t->nbytes);
}

void sp_gguf_w_tensor_fn(sp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                         const int64_t *ne, sp_gguf_fill_fn fill, void *ctx) {
    wtensor *t = tensor_add(w, name, type, n_dims, ne);
    if (!t) return;
    if (!fill) {
        w_fail(w, "gguf writer: tensor '%s': NULL fill function", name);
        return;
    }
    t->fill = fill;
    t->ctx = ctx;
}

/* ---------------------------------------------------------------- save */

/* general.alignment if the caller set it (must be a u32 power of two), else 32. */
static bool save_alignment(sp_gguf_writer *w, uint64_t *out) {
    *out = GGUF_WRITE_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        const wbuf *b = &w->kvs[i].val;
        uint32_t type = 0, a = 0;
        if (b->len == 8) {
            memcpy(&type, b->p, 4);
            for (int k = 3; k >= 0; k--) a = (a << 8) | b->p[4 + k];
        }
        if (b->len != 8 || type != SP_GGUF_U32 || a == 0 || (a & (a - 1))) {
            w_fail(w, "gguf writer: general.alignment must be a u32 power of two");
            return false;
        }
        *out = a;
    }
    return true;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

/* Header, metadata and tensor infos, as one buffer; assigns the tensors' data offsets. */
static bool build_header(sp_gguf_writer *w, uint64_t alignment, wbuf *h) {
    buf_put(h, "GGUF", 4);
    buf_le(h, GGUF_WRITE_VERSION, 4);
    buf_le(h, w->n_tensors, 8);
    buf_le(h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        buf_str(h, w->kvs[i].key, strlen(w->kvs[i].key));
        buf_put(h, w->kvs[i].val.p, w->kvs[i].val.len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        t->offset = off;
        if (t->nbytes > UINT64_MAX - alignment - off) {
            w_fail(w, "gguf writer: tensors too large");
            return false;
        }
        off = align_up(off + t->nbytes, alignment);
        buf_str(h, t->name, strlen(t->name));
        buf_le(h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) buf_le(h, (uint64_t)t->ne[d], 8);
        buf_le(h, t->type, 4);
        buf_le(h, t->offset, 8);
    }
    static const uint8_t zeros[256];
    buf_put(h, zeros, (size_t)(align_up(h->len, alignment) - h->len));
    if (h->oom) w_fail(w, "gguf writer: out of memory");
    return !h->oom;
}

static bool write_padding(FILE *f, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (fwrite(zeros, 1, k, f) != k) return false;
        n -= k;
    }
    return true;
}

/* One tensor's data: the copy, or its rows from the fill callback. */
static bool write_tensor_data(sp_gguf_writer *w, FILE *f, const wtensor *t) {
    if (t->nbytes == 0) return true;
    if (t->data) return fwrite(t->data, 1, (size_t)t->nbytes, f) == t->nbytes;
    if (t->row_bytes > SIZE_MAX) return false;
    uint8_t *row = calloc(1, (size_t)t->row_bytes);
    if (!row) {
        w_fail(w, "gguf writer: tensor '%s': out of memory for a row", t->name);
        return false;
    }
    bool ok = true;
    for (uint64_t r = 0; ok && r < t->rows; r++) {
        t->fill(t->ctx, (int64_t)r, row);
        ok = fwrite(row, 1, (size_t)t->row_bytes, f) == t->row_bytes;
    }
    free(row);
    return ok;
}

static bool write_file(sp_gguf_writer *w, FILE *f, const wbuf *h, uint64_t alignment) {
    if (fwrite(h->p, 1, h->len, f) != h->len) return false;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (!write_tensor_data(w, f, t)) return false;
        if (!write_padding(f, align_up(t->nbytes, alignment) - t->nbytes)) return false;
    }
    return fflush(f) == 0 && fsync(fileno(f)) == 0;
}

/* Best effort: make the rename itself durable. */
static void sync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

bool sp_gguf_writer_save(sp_gguf_writer *w, const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    uint64_t alignment;
    wbuf h = {0};
    if (!w->failed && save_alignment(w, &alignment)) build_header(w, alignment, &h);
    if (w->failed) {
        free(h.p);
        if (err && errlen) snprintf(err, errlen, "%s", w->err);
        return false;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        free(h.p);
        if (err && errlen) snprintf(err, errlen, "gguf writer: cannot create '%s': %s", tmp, strerror(e));
        return false;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    bool ok = write_file(w, f, &h, alignment);
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    free(h.p);
    if (ok && rename(tmp, path) != 0) {
        e = errno;
        ok = false;
    }
    if (!ok) {
        unlink(tmp);
        if (err && errlen) {
            if (w->failed)
                snprintf(err, errlen, "%s", w->err);
            else
                snprintf(err, errlen, "gguf writer: cannot write '%s': %s", path, strerror(e ? e : EIO));
        }
        return false;
    }
    sync_parent_dir(path);
    return true;
}
