/* storage/gguf_read.c — the GGUF reader (v2/v3, little-endian): opens a file over mmap or a caller
 * buffer, validates every count, length, offset and size against the bytes actually present
 * (overflow-safe, before allocating anything), and serves the metadata and tensor accessors declared
 * in storage/gguf.h. All multi-byte fields are decoded byte by byte, so unaligned data is fine. */
#include "storage/gguf.h"

#include "kernels/types.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_DEPTH 8          /* arrays of arrays: at most this many levels */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_NAME_SHOWN 64        /* bytes of a key or tensor name quoted in an error */
/* The fewest bytes each record can take in the file; counts are checked against these. */
#define GGUF_MIN_KV_BYTES 13      /* key length (8) + value type (4) + a 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 32  /* name length (8) + n_dims (4) + ne[0] (8) + type (4) + offset (8) */
#define GGUF_MIN_STRING_BYTES 8   /* the length field */
#define GGUF_MIN_ARRAY_BYTES 12   /* element type (4) + length (8) */

/* Open-addressing name -> index table (keys, tensor names). idx is i + 1; 0 marks an empty slot. */
typedef struct {
    const char *ptr;
    uint64_t len;
    uint64_t idx;
} gguf_slot;

typedef struct {
    gguf_slot *slots;
    uint64_t mask;
    uint64_t count;
} gguf_index;

struct sp_gguf {
    const uint8_t *base;
    uint64_t size;
    void *map;          /* our own mapping (sp_gguf_open), else NULL */
    size_t map_len;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    sp_gguf_kv *kvs;
    uint64_t kv_cap;     /* entries allocated (zeroed) so far: tables grow as records are read */
    uint64_t n_tensors;
    sp_gguf_tensor *tensors;
    uint64_t tensor_cap;
    gguf_index kv_index;
    gguf_index tensor_index;
};

/* ---------------------------------------------------------------- names and error text */

/* Copy a name into dst for an error message: control bytes escaped, long names cut with "...". */
static void escape_name(char *dst, size_t cap, const char *src, uint64_t len) {
    size_t o = 0;
    uint64_t shown = len > GGUF_NAME_SHOWN ? GGUF_NAME_SHOWN : len;
    for (uint64_t i = 0; i < shown && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\')
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    if (shown < len && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- name index */

static uint64_t hash_name(const char *p, uint64_t len) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* The slot holding the name, or the empty slot where it would go. */
static gguf_slot *index_slot(const gguf_index *ix, const char *p, uint64_t len) {
    uint64_t h = hash_name(p, len) & ix->mask;
    for (;; h = (h + 1) & ix->mask) {
        gguf_slot *s = &ix->slots[h];
        if (!s->idx || (s->len == len && memcmp(s->ptr, p, len) == 0)) return s;
    }
}

/* Keep the table at most half full, doubling and rehashing as names are added. */
static bool index_reserve(gguf_index *ix) {
    uint64_t cap = ix->slots ? ix->mask + 1 : 0;
    if (2 * (ix->count + 1) <= cap) return true;
    uint64_t ncap = cap ? 2 * cap : 16;
    gguf_index bigger = {.slots = calloc(ncap, sizeof(gguf_slot)), .mask = ncap - 1, .count = ix->count};
    if (!bigger.slots) return false;
    for (uint64_t i = 0; i < cap; i++)
        if (ix->slots[i].idx) *index_slot(&bigger, ix->slots[i].ptr, ix->slots[i].len) = ix->slots[i];
    free(ix->slots);
    *ix = bigger;
    return true;
}

/* Insert name -> i. Returns 0 if inserted, the existing entry's i + 1 for a duplicate, or
 * UINT64_MAX when out of memory. */
static uint64_t index_insert(gguf_index *ix, sp_gguf_str name, uint64_t i) {
    if (!index_reserve(ix)) return UINT64_MAX;
    gguf_slot *s = index_slot(ix, name.ptr, name.len);
    if (s->idx) return s->idx;
    s->ptr = name.ptr;
    s->len = name.len;
    s->idx = i + 1;
    ix->count++;
    return 0;
}

/* i + 1 of the entry with that name, 0 if absent (or the index was never built). */
static uint64_t index_find(const gguf_index *ix, const char *name) {
    if (!ix->slots || !name) return 0;
    return index_slot(ix, name, strlen(name))->idx;
}

/* ---------------------------------------------------------------- the cursor */

typedef struct {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    char *err;
    size_t errlen;
    bool failed;
    char ctx[320];                /* where we are: "key 3 ('general.name')", or "" in the header */
    uint64_t path[GGUF_MAX_DEPTH]; /* element indices of the arrays being read, outermost first */
    int depth;
} rd;

/* Record the first failure as "gguf: <ctx>[i][j]: <message>". */
static void fail(rd *r, const char *fmt, ...) {
    if (r->failed) return;
    r->failed = true;
    if (!r->err || !r->errlen) return;
    char where[512];
    size_t o = (size_t)snprintf(where, sizeof where, "%s", r->ctx);
    for (int d = 0; d < r->depth && o < sizeof where; d++)
        o += (size_t)snprintf(where + o, sizeof where - o, "[%" PRIu64 "]", r->path[d]);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (where[0])
        snprintf(r->err, r->errlen, "gguf: %s: %s", where, msg);
    else
        snprintf(r->err, r->errlen, "gguf: %s", msg);
}

static uint64_t remaining(const rd *r) { return r->size - r->pos; }

static bool need(rd *r, uint64_t n, const char *what) {
    if (n <= remaining(r)) return true;
    fail(r, "unexpected end of file reading %s at offset %" PRIu64 " (need %" PRIu64
            " bytes, %" PRIu64 " remain)", what, r->pos, n, remaining(r));
    return false;
}

/* Room for entry i of a table that will hold `total` entries, grown geometrically (new entries
 * zeroed), so memory follows the records actually read rather than what a count claims. */
static bool reserve(rd *r, void **table, uint64_t *cap, uint64_t i, uint64_t total, size_t elem) {
    if (i < *cap) return true;
    uint64_t n = *cap ? *cap * 2 : 16;
    if (n > total) n = total;
    void *p = n <= SIZE_MAX / elem ? realloc(*table, (size_t)(n * elem)) : NULL;
    if (!p) {
        fail(r, "out of memory for %" PRIu64 " entries", n);
        return false;
    }
    memset((char *)p + *cap * elem, 0, (size_t)((n - *cap) * elem));
    *table = p;
    *cap = n;
    return true;
}

static uint64_t load_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

/* The n-byte two's-complement value x as int64 (well defined, no implementation-defined casts). */
static int64_t sign_extend(uint64_t x, unsigned n) {
    if (n < 8 && (x >> (8 * n - 1)) & 1) x |= ~0ull << (8 * n);
    return (x >> 63) ? -(int64_t)(~x) - 1 : (int64_t)x;
}

static bool get_u32(rd *r, const char *what, uint32_t *out) {
    if (!need(r, 4, what)) return false;
    *out = (uint32_t)load_le(r->p + r->pos, 4);
    r->pos += 4;
    return true;
}

static bool get_u64(rd *r, const char *what, uint64_t *out) {
    if (!need(r, 8, what)) return false;
    *out = load_le(r->p + r->pos, 8);
    r->pos += 8;
    return true;
}

/* A length-prefixed string; `what` names it in errors ("string", "key name", "tensor name"). */
static bool get_str(rd *r, const char *what, sp_gguf_str *out) {
    char lenwhat[48];
    snprintf(lenwhat, sizeof lenwhat, "%s length", what);
    uint64_t len;
    if (!get_u64(r, lenwhat, &len)) return false;
    if (len > remaining(r)) {
        fail(r, "%s length %" PRIu64 " exceeds remaining %" PRIu64 " bytes", what, len, remaining(r));
        return false;
    }
    out->ptr = (const char *)(r->p + r->pos);
    out->len = len;
    r->pos += len;
    return true;
}

/* ---------------------------------------------------------------- values */

unsigned sp_gguf_vtype_size(uint32_t t) {
    switch (t) {
    case SP_GGUF_U8: case SP_GGUF_I8: case SP_GGUF_BOOL: return 1;
    case SP_GGUF_U16: case SP_GGUF_I16: return 2;
    case SP_GGUF_U32: case SP_GGUF_I32: case SP_GGUF_F32: return 4;
    case SP_GGUF_U64: case SP_GGUF_I64: case SP_GGUF_F64: return 8;
    default: return 0;
    }
}

static bool is_signed(uint32_t t) {
    return t == SP_GGUF_I8 || t == SP_GGUF_I16 || t == SP_GGUF_I32 || t == SP_GGUF_I64;
}

/* Decode a scalar of type t (sp_gguf_vtype_size(t) > 0) at p into v. */
static void decode_scalar(sp_gguf_value *v, uint32_t t, const uint8_t *p) {
    unsigned n = sp_gguf_vtype_size(t);
    uint64_t bits = load_le(p, n);
    v->type = (sp_gguf_vtype)t;
    if (t == SP_GGUF_F32) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, 4);
        v->f64 = f;
    } else if (t == SP_GGUF_F64) {
        memcpy(&v->f64, &bits, 8);
    } else if (is_signed(t)) {
        v->i64 = sign_extend(bits, n);
    } else {
        v->u64 = bits;
    }
}

static void free_value(sp_gguf_value *v) {
    if (v->type != SP_GGUF_ARRAY) return;
    free(v->arr.strs);
    if (v->arr.vals)
        for (uint64_t i = 0; i < v->arr.n; i++) free_value(&v->arr.vals[i]);
    free(v->arr.vals);
    v->arr.strs = NULL;
    v->arr.vals = NULL;
}

static bool read_value(rd *r, uint32_t type, sp_gguf_value *v, int level);

static bool read_scalar(rd *r, uint32_t type, sp_gguf_value *v) {
    unsigned n = sp_gguf_vtype_size(type);
    if (!n) {
        fail(r, "unknown value type %" PRIu32, type);
        return false;
    }
    if (!need(r, n, sp_gguf_vtype_name((sp_gguf_vtype)type))) return false;
    decode_scalar(v, type, r->p + r->pos);
    if (type == SP_GGUF_BOOL && v->u64 > 1) {
        fail(r, "bool value %" PRIu64 " is not 0 or 1", v->u64);
        return false;
    }
    r->pos += n;
    return true;
}

/* Elements of a scalar array: bounds-checked, then referenced in place (bools checked 0/1). */
static bool read_scalar_elems(rd *r, sp_gguf_value *v, unsigned size) {
    uint64_t n = v->arr.n;
    if (n > remaining(r) / size) {
        fail(r, "array length %" PRIu64 " of %s exceeds remaining %" PRIu64 " bytes", n,
             sp_gguf_vtype_name(v->arr.type), remaining(r));
        return false;
    }
    v->arr.raw = r->p + r->pos;
    if (v->arr.type == SP_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            if (v->arr.raw[i] > 1) {
                r->path[r->depth++] = i;
                fail(r, "bool value %u is not 0 or 1", v->arr.raw[i]);
                r->depth--;
                return false;
            }
        }
    }
    r->pos += n * size;
    return true;
}

/* Elements that are strings or arrays: the count is checked against the smallest possible
 * element before anything is allocated. While reading, arr.n counts the elements allocated so far
 * (so a failure frees exactly those); it ends at the declared length. */
static bool read_compound_elems(rd *r, sp_gguf_value *v, int level) {
    uint64_t n = v->arr.n;
    bool strings = v->arr.type == SP_GGUF_STRING;
    uint64_t min = strings ? GGUF_MIN_STRING_BYTES : GGUF_MIN_ARRAY_BYTES;
    if (n > remaining(r) / min) {
        fail(r, "array length %" PRIu64 " of %s exceeds remaining %" PRIu64 " bytes", n,
             sp_gguf_vtype_name(v->arr.type), remaining(r));
        return false;
    }
    uint64_t cap = 0;
    v->arr.n = 0;
    for (uint64_t i = 0; i < n; i++) {
        bool ok = strings ? reserve(r, (void **)&v->arr.strs, &cap, i, n, sizeof *v->arr.strs)
                          : reserve(r, (void **)&v->arr.vals, &cap, i, n, sizeof *v->arr.vals);
        if (!ok) return false;
        v->arr.n = cap;
        r->path[r->depth++] = i;
        if (strings)
            ok = get_str(r, "string", &v->arr.strs[i]);
        else
            ok = read_value(r, SP_GGUF_ARRAY, &v->arr.vals[i], level);
        r->depth--;
        if (!ok) return false;
    }
    v->arr.n = n;
    return true;
}

/* An array value at nesting level `level` (1 = a key's own array). */
static bool read_array(rd *r, sp_gguf_value *v, int level) {
    uint32_t et;
    uint64_t n;
    if (!get_u32(r, "array element type", &et) || !get_u64(r, "array length", &n)) return false;
    if (et != SP_GGUF_STRING && et != SP_GGUF_ARRAY && !sp_gguf_vtype_size(et)) {
        fail(r, "unknown array element type %" PRIu32, et);
        return false;
    }
    if (et == SP_GGUF_ARRAY && level >= GGUF_MAX_DEPTH) {
        fail(r, "arrays nested deeper than %d levels", GGUF_MAX_DEPTH);
        return false;
    }
    v->type = SP_GGUF_ARRAY;
    v->arr.type = (sp_gguf_vtype)et;
    v->arr.n = n;
    if (sp_gguf_vtype_size(et)) return read_scalar_elems(r, v, sp_gguf_vtype_size(et));
    return read_compound_elems(r, v, level);
}

/* A value of the given type; `level` is the number of arrays it sits in. */
static bool read_value(rd *r, uint32_t type, sp_gguf_value *v, int level) {
    if (type == SP_GGUF_STRING) {
        v->type = SP_GGUF_STRING;
        return get_str(r, "string", &v->str);
    }
    if (type == SP_GGUF_ARRAY) return read_array(r, v, level + 1);
    return read_scalar(r, type, v);
}

/* ---------------------------------------------------------------- header and metadata */

static bool read_magic_version(rd *r, sp_gguf *g) {
    if (r->size < 4) {
        fail(r, "file too small (%" PRIu64 " bytes) to be a GGUF file", r->size);
        return false;
    }
    if (memcmp(r->p, GGUF_MAGIC, 4) != 0) {
        char shown[24];
        escape_name(shown, sizeof shown, (const char *)r->p, 4);
        fail(r, "bad magic '%s' (not a GGUF file)", shown);
        return false;
    }
    r->pos = 4;
    if (!get_u32(r, "version", &g->version)) return false;
    if (g->version == 1) {
        fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
        return false;
    }
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        if (swapped == 2 || swapped == 3)
            fail(r, "big-endian GGUF files are not supported (version field %" PRIu32 ")", v);
        else
            fail(r, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", v);
        return false;
    }
    return true;
}

/* A record count checked against the smallest size each record can take in the bytes left. */
static bool check_count(rd *r, const char *what, uint64_t n, uint64_t min_bytes) {
    if (n <= remaining(r) / min_bytes) return true;
    fail(r, "%s %" PRIu64 " exceeds what the remaining %" PRIu64 " bytes can hold (at least %" PRIu64
            " bytes each: truncated file or corrupt count)", what, n, remaining(r), min_bytes);
    return false;
}

/* n_kv is checked before the keys are allocated; n_tensors when the tensor infos are reached. */
static bool read_counts(rd *r, sp_gguf *g) {
    return get_u64(r, "n_tensors", &g->n_tensors) && get_u64(r, "n_kv", &g->n_kv) &&
           check_count(r, "n_kv", g->n_kv, GGUF_MIN_KV_BYTES);
}

static void set_ctx_key(rd *r, uint64_t i, sp_gguf_str name) {
    char shown[GGUF_NAME_SHOWN * 4 + 8];
    escape_name(shown, sizeof shown, name.ptr, name.len);
    snprintf(r->ctx, sizeof r->ctx, "key %" PRIu64 " ('%s')", i, shown);
}

static void set_ctx_tensor(rd *r, sp_gguf_str name) {
    char shown[GGUF_NAME_SHOWN * 4 + 8];
    escape_name(shown, sizeof shown, name.ptr, name.len);
    snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", shown);
}

static bool read_kv(rd *r, sp_gguf *g, uint64_t i) {
    snprintf(r->ctx, sizeof r->ctx, "key %" PRIu64, i);
    if (!reserve(r, (void **)&g->kvs, &g->kv_cap, i, g->n_kv, sizeof *g->kvs)) return false;
    sp_gguf_kv *kv = &g->kvs[i];
    if (!get_str(r, "key name", &kv->key)) return false;
    set_ctx_key(r, i, kv->key);
    uint64_t first = index_insert(&g->kv_index, kv->key, i);
    if (first == UINT64_MAX) {
        fail(r, "out of memory for the key index");
        return false;
    }
    if (first) {
        fail(r, "duplicate key (also key %" PRIu64 ")", first - 1);
        return false;
    }
    uint32_t type;
    if (!get_u32(r, "value type", &type)) return false;
    return read_value(r, type, &kv->val, 0);
}

static bool read_kvs(rd *r, sp_gguf *g) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!read_kv(r, g, i)) return false;
    r->ctx[0] = 0;
    return true;
}

static bool read_alignment(rd *r, sp_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const sp_gguf_value *v = sp_gguf_get(g, "general.alignment");
    if (!v) return true;
    if (v->type != SP_GGUF_U32) {
        fail(r, "general.alignment has type %s (must be u32)", sp_gguf_vtype_name(v->type));
        return false;
    }
    if (v->u64 == 0 || (v->u64 & (v->u64 - 1)) != 0) {
        fail(r, "general.alignment %" PRIu64 " is not a nonzero power of two", v->u64);
        return false;
    }
    g->alignment = v->u64;
    return true;
}

/* ---------------------------------------------------------------- tensor infos */

static bool read_tensor_dims(rd *r, sp_gguf_tensor *t) {
    if (!get_u32(r, "n_dims", &t->n_dims)) return false;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        fail(r, "n_dims %" PRIu32 " out of range 1..%d", t->n_dims, GGUF_MAX_DIMS);
        return false;
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (!get_u64(r, "dimension", &ne)) return false;
        if (ne > INT64_MAX) {
            fail(r, "dimension %" PRIu32 " is negative (%" PRId64 ")", d, sign_extend(ne, 8));
            return false;
        }
        t->ne[d] = (int64_t)ne;
    }
    return true;
}

static bool read_tensor_info(rd *r, sp_gguf *g, uint64_t i) {
    snprintf(r->ctx, sizeof r->ctx, "tensor %" PRIu64, i);
    if (!reserve(r, (void **)&g->tensors, &g->tensor_cap, i, g->n_tensors, sizeof *g->tensors)) return false;
    sp_gguf_tensor *t = &g->tensors[i];
    if (!get_str(r, "tensor name", &t->name)) return false;
    set_ctx_tensor(r, t->name);
    uint64_t first = index_insert(&g->tensor_index, t->name, i);
    if (first == UINT64_MAX) {
        fail(r, "out of memory for the tensor index");
        return false;
    }
    if (first) {
        fail(r, "duplicate tensor name (tensors %" PRIu64 " and %" PRIu64 ")", first - 1, i);
        return false;
    }
    return read_tensor_dims(r, t) && get_u32(r, "tensor type", &t->type) &&
           get_u64(r, "tensor offset", &t->offset);
}

static bool read_tensor_infos(rd *r, sp_gguf *g) {
    if (!check_count(r, "n_tensors", g->n_tensors, GGUF_MIN_TENSOR_BYTES)) return false;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!read_tensor_info(r, g, i)) return false;
    r->ctx[0] = 0;
    return true;
}

static bool mul_overflows(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out) {
    if (a && b > limit / a) return true;
    *out = a * b;
    return false;
}

static void format_shape(char *dst, size_t cap, const sp_gguf_tensor *t) {
    size_t o = (size_t)snprintf(dst, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(dst + o, cap - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < cap) snprintf(dst + o, cap - o, "]");
}

/* Byte size of a tensor from its type and shape. Every product of dimensions must fit in int64
 * (so callers may multiply any of them) and the byte size in uint64. */
static bool tensor_nbytes(rd *r, sp_gguf_tensor *t) {
    const sp_type_info *ti = sp_type_get(t->type);
    if (!ti || !ti->blck || !ti->size) {
        fail(r, "unknown tensor type id %" PRIu32, t->type);
        return false;
    }
    if (t->ne[0] % ti->blck != 0) {
        fail(r, "row length %" PRId64 " is not a multiple of the %s block size %" PRIu32, t->ne[0],
             ti->name, ti->blck);
        return false;
    }
    uint64_t elems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] == 0) continue;
        if (mul_overflows(elems, (uint64_t)t->ne[d], INT64_MAX, &elems)) {
            char shape[128];
            format_shape(shape, sizeof shape, t);
            fail(r, "shape %s overflows (element count exceeds 2^63)", shape);
            return false;
        }
    }
    /* The nonzero dims' product fits in int64, so this cannot overflow; only bytes can. */
    uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    if (t->ne[0] == 0 || rows == 0) {
        t->nbytes = 0;
        return true;
    }
    uint64_t row_bytes;
    if (mul_overflows((uint64_t)t->ne[0] / ti->blck, ti->size, UINT64_MAX, &row_bytes) ||
        mul_overflows(row_bytes, rows, UINT64_MAX, &t->nbytes)) {
        char shape[128];
        format_shape(shape, sizeof shape, t);
        fail(r, "shape %s of type %s: byte size overflows 64 bits", shape, ti->name);
        return false;
    }
    return true;
}

/* Whether t's bytes lie inside the file; if not, says where they would be. */
static bool tensor_in_file(rd *r, const sp_gguf *g, const sp_gguf_tensor *t) {
    uint64_t avail = g->data_offset <= r->size ? r->size - g->data_offset : 0;
    if (g->data_offset <= r->size && t->offset <= avail && t->nbytes <= avail - t->offset) return true;
    char shown[GGUF_NAME_SHOWN * 4 + 8];
    escape_name(shown, sizeof shown, t->name.ptr, t->name.len);
    r->ctx[0] = 0; /* the message names the tensor itself */
    if (t->offset > UINT64_MAX - g->data_offset)
        fail(r, "tensor '%s' data [offset %" PRIu64 " past the data section at %" PRIu64 ", %" PRIu64
                " bytes] extends past end of file (%" PRIu64 " bytes)", shown, t->offset, g->data_offset,
             t->nbytes, r->size);
    else
        fail(r, "tensor '%s' data [offset %" PRIu64 ", %" PRIu64 " bytes] extends past end of file (%" PRIu64
                " bytes)", shown, g->data_offset + t->offset, t->nbytes, r->size);
    return false;
}

/* Type, size, alignment and bounds of tensor t, then its data pointer. */
static bool place_tensor(rd *r, sp_gguf *g, sp_gguf_tensor *t) {
    set_ctx_tensor(r, t->name);
    if (!tensor_nbytes(r, t)) return false;
    if (t->offset % g->alignment != 0) {
        fail(r, "offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t->offset, g->alignment);
        return false;
    }
    if (!tensor_in_file(r, g, t)) return false;
    t->data = r->p + g->data_offset + t->offset;
    return true;
}

static bool place_tensors(rd *r, sp_gguf *g) {
    uint64_t end = r->pos;
    g->data_offset = end + (g->alignment - end % g->alignment) % g->alignment;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!place_tensor(r, g, &g->tensors[i])) return false;
    r->ctx[0] = 0;
    return true;
}

/* ---------------------------------------------------------------- open / close */

static sp_gguf *parse(const uint8_t *data, uint64_t size, char *err, size_t errlen) {
    sp_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        set_err(err, errlen, "gguf: out of memory");
        return NULL;
    }
    g->base = data;
    g->size = size;
    rd r = {.p = data, .size = size, .err = err, .errlen = errlen};
    bool ok = read_magic_version(&r, g) && read_counts(&r, g) && read_kvs(&r, g) &&
              read_alignment(&r, g) && read_tensor_infos(&r, g) && place_tensors(&r, g);
    if (!ok) {
        sp_gguf_close(g);
        return NULL;
    }
    return g;
}

sp_gguf *sp_gguf_open_mem(const void *data, size_t size, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    static const uint8_t empty[1];
    return parse(data ? data : empty, data ? size : 0, err, errlen);
}

sp_gguf *sp_gguf_open(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "gguf: cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "gguf: '%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            set_err(err, errlen, "gguf: cannot map '%s': %s", path, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd);
    sp_gguf *g = sp_gguf_open_mem(map, size, err, errlen);
    if (!g) {
        if (map) munmap(map, size);
        return NULL;
    }
    g->map = map;
    g->map_len = size;
    return g;
}

void sp_gguf_close(sp_gguf *g) {
    if (!g) return;
    if (g->kvs)
        for (uint64_t i = 0; i < g->kv_cap; i++) free_value(&g->kvs[i].val);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    if (g->map) munmap(g->map, g->map_len);
    free(g);
}

/* ---------------------------------------------------------------- accessors */

uint32_t sp_gguf_version(const sp_gguf *g) { return g->version; }
uint64_t sp_gguf_alignment(const sp_gguf *g) { return g->alignment; }
uint64_t sp_gguf_data_offset(const sp_gguf *g) { return g->data_offset; }
uint64_t sp_gguf_file_size(const sp_gguf *g) { return g->size; }
const uint8_t *sp_gguf_base(const sp_gguf *g) { return g->base; }
uint64_t sp_gguf_n_kv(const sp_gguf *g) { return g->n_kv; }
uint64_t sp_gguf_n_tensors(const sp_gguf *g) { return g->n_tensors; }

const sp_gguf_kv *sp_gguf_kv_at(const sp_gguf *g, uint64_t i) {
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const sp_gguf_value *sp_gguf_get(const sp_gguf *g, const char *key) {
    uint64_t idx = index_find(&g->kv_index, key);
    return idx ? &g->kvs[idx - 1].val : NULL;
}

const sp_gguf_tensor *sp_gguf_tensor_at(const sp_gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf *g, const char *name) {
    uint64_t idx = index_find(&g->tensor_index, name);
    return idx ? &g->tensors[idx - 1] : NULL;
}

static bool is_unsigned_int(sp_gguf_vtype t) {
    return t == SP_GGUF_U8 || t == SP_GGUF_U16 || t == SP_GGUF_U32 || t == SP_GGUF_U64;
}

bool sp_gguf_get_u32(const sp_gguf *g, const char *key, uint32_t *out) {
    const sp_gguf_value *v = sp_gguf_get(g, key);
    if (!v) return false;
    if (is_unsigned_int(v->type) && v->u64 <= UINT32_MAX) {
        *out = (uint32_t)v->u64;
        return true;
    }
    if (is_signed(v->type) && v->i64 >= 0 && v->i64 <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)v->i64;
        return true;
    }
    return false;
}

bool sp_gguf_get_i64(const sp_gguf *g, const char *key, int64_t *out) {
    const sp_gguf_value *v = sp_gguf_get(g, key);
    if (!v) return false;
    if (is_unsigned_int(v->type) && v->u64 <= INT64_MAX) {
        *out = (int64_t)v->u64;
        return true;
    }
    if (is_signed(v->type)) {
        *out = v->i64;
        return true;
    }
    return false;
}

bool sp_gguf_get_f32(const sp_gguf *g, const char *key, float *out) {
    const sp_gguf_value *v = sp_gguf_get(g, key);
    if (!v || (v->type != SP_GGUF_F32 && v->type != SP_GGUF_F64)) return false;
    *out = (float)v->f64;
    return true;
}

bool sp_gguf_get_bool(const sp_gguf *g, const char *key, bool *out) {
    const sp_gguf_value *v = sp_gguf_get(g, key);
    if (!v || v->type != SP_GGUF_BOOL) return false;
    *out = v->u64 != 0;
    return true;
}

bool sp_gguf_get_str(const sp_gguf *g, const char *key, sp_gguf_str *out) {
    const sp_gguf_value *v = sp_gguf_get(g, key);
    if (!v || v->type != SP_GGUF_STRING) return false;
    *out = v->str;
    return true;
}

bool sp_gguf_str_eq(sp_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* Element i of a scalar array as a decoded value; false for non-scalar arrays or i out of range. */
static bool arr_elem(const sp_gguf_value *arr, uint64_t i, sp_gguf_value *out) {
    if (!arr || arr->type != SP_GGUF_ARRAY || i >= arr->arr.n) return false;
    unsigned size = sp_gguf_vtype_size(arr->arr.type);
    if (!size) return false;
    decode_scalar(out, arr->arr.type, arr->arr.raw + i * size);
    return true;
}

int64_t sp_gguf_arr_i64(const sp_gguf_value *arr, uint64_t i) {
    sp_gguf_value e;
    if (!arr_elem(arr, i, &e)) return 0;
    if (is_signed(e.type)) return e.i64;
    if (e.type == SP_GGUF_F32 || e.type == SP_GGUF_F64) {
        if (!(e.f64 == e.f64)) return 0;  /* NaN */
        if (e.f64 >= 9223372036854775807.0) return INT64_MAX;
        if (e.f64 <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)e.f64;
    }
    return e.u64 > INT64_MAX ? INT64_MAX : (int64_t)e.u64;
}

double sp_gguf_arr_f64(const sp_gguf_value *arr, uint64_t i) {
    sp_gguf_value e;
    if (!arr_elem(arr, i, &e)) return 0;
    if (is_signed(e.type)) return (double)e.i64;
    if (e.type == SP_GGUF_F32 || e.type == SP_GGUF_F64) return e.f64;
    return (double)e.u64;
}

const char *sp_gguf_vtype_name(sp_gguf_vtype t) {
    static const char *const names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}
