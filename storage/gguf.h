/* storage/gguf.h — read-only GGUF (v2/v3) files over mmap. Everything is validated at open:
 * every count, length, offset and size is checked against the file (overflow-safe), so callers may
 * trust what the accessors return. Strings point into the mapping and are NOT NUL-terminated. */
#ifndef SP_STORAGE_GGUF_H
#define SP_STORAGE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SP_GGUF_U8 = 0, SP_GGUF_I8 = 1, SP_GGUF_U16 = 2, SP_GGUF_I16 = 3, SP_GGUF_U32 = 4,
    SP_GGUF_I32 = 5, SP_GGUF_F32 = 6, SP_GGUF_BOOL = 7, SP_GGUF_STRING = 8, SP_GGUF_ARRAY = 9,
    SP_GGUF_U64 = 10, SP_GGUF_I64 = 11, SP_GGUF_F64 = 12,
} sp_gguf_vtype;

typedef struct { const char *ptr; uint64_t len; } sp_gguf_str;

typedef struct sp_gguf_value sp_gguf_value;
struct sp_gguf_value {
    sp_gguf_vtype type;
    union {
        uint64_t u64;  /* U8, U16, U32, U64, BOOL */
        int64_t i64;   /* I8, I16, I32, I64 */
        double f64;    /* F32, F64 */
        sp_gguf_str str;
        struct {
            sp_gguf_vtype type; /* element type */
            uint64_t n;
            const uint8_t *raw;       /* scalar elements: packed little-endian in the file */
            sp_gguf_str *strs;        /* STRING elements */
            sp_gguf_value *vals;      /* ARRAY elements (nested arrays) */
        } arr;
    };
};

typedef struct {
    sp_gguf_str key;
    sp_gguf_value val;
} sp_gguf_kv;

typedef struct {
    sp_gguf_str name;
    uint32_t type;       /* sp_type (GGML id) */
    uint32_t n_dims;
    int64_t ne[4];       /* ne[0] is the row length (contiguous), unused dims are 1 */
    uint64_t offset;     /* relative to the data section */
    uint64_t nbytes;
    const void *data;    /* into the mapping */
} sp_gguf_tensor;

typedef struct sp_gguf sp_gguf;

/* Open and validate. On failure returns NULL and writes one line (no newline) into err. */
sp_gguf *sp_gguf_open(const char *path, char *err, size_t errlen);
/* Same over a caller-owned buffer (fuzzing, tests); the buffer must outlive the handle. */
sp_gguf *sp_gguf_open_mem(const void *data, size_t size, char *err, size_t errlen);
void sp_gguf_close(sp_gguf *g);

uint32_t sp_gguf_version(const sp_gguf *g);
uint64_t sp_gguf_alignment(const sp_gguf *g);
uint64_t sp_gguf_data_offset(const sp_gguf *g);
uint64_t sp_gguf_file_size(const sp_gguf *g);
const uint8_t *sp_gguf_base(const sp_gguf *g);

uint64_t sp_gguf_n_kv(const sp_gguf *g);
const sp_gguf_kv *sp_gguf_kv_at(const sp_gguf *g, uint64_t i);
const sp_gguf_value *sp_gguf_get(const sp_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: true and *out set when the key exists with a compatible type (any integer type
 * whose value fits, for the integer getters; F32/F64 for f32; any integer for bool is NOT allowed). */
bool sp_gguf_get_u32(const sp_gguf *g, const char *key, uint32_t *out);
bool sp_gguf_get_i64(const sp_gguf *g, const char *key, int64_t *out);
bool sp_gguf_get_f32(const sp_gguf *g, const char *key, float *out);
bool sp_gguf_get_bool(const sp_gguf *g, const char *key, bool *out);
bool sp_gguf_get_str(const sp_gguf *g, const char *key, sp_gguf_str *out);
/* A STRING-typed value compared with a C string. */
bool sp_gguf_str_eq(sp_gguf_str s, const char *c);

/* Array element access (arr must be an ARRAY value; i < arr.n). Numeric getters convert. */
int64_t sp_gguf_arr_i64(const sp_gguf_value *arr, uint64_t i);
double sp_gguf_arr_f64(const sp_gguf_value *arr, uint64_t i);

uint64_t sp_gguf_n_tensors(const sp_gguf *g);
const sp_gguf_tensor *sp_gguf_tensor_at(const sp_gguf *g, uint64_t i);
const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf *g, const char *name);

const char *sp_gguf_vtype_name(sp_gguf_vtype t);
/* Bytes of one scalar of type t; 0 for STRING, ARRAY and unknown ids. */
unsigned sp_gguf_vtype_size(uint32_t t);

/* ---- writing (synth, tests) ---- */
typedef struct sp_gguf_writer sp_gguf_writer;
sp_gguf_writer *sp_gguf_writer_new(void);
void sp_gguf_writer_free(sp_gguf_writer *w);
void sp_gguf_w_u32(sp_gguf_writer *w, const char *key, uint32_t v);
void sp_gguf_w_i32(sp_gguf_writer *w, const char *key, int32_t v);
void sp_gguf_w_f32(sp_gguf_writer *w, const char *key, float v);
void sp_gguf_w_bool(sp_gguf_writer *w, const char *key, bool v);
void sp_gguf_w_str(sp_gguf_writer *w, const char *key, const char *v);
void sp_gguf_w_arr_str(sp_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void sp_gguf_w_arr_f32(sp_gguf_writer *w, const char *key, const float *v, uint64_t n);
void sp_gguf_w_arr_i32(sp_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Any value, as the reader represents it: every scalar type, strings, arrays of any element type,
 * arrays of arrays (up to 8 levels). Scalar array elements are taken from arr.raw (packed
 * little-endian), strings from arr.strs, nested arrays from arr.vals; so a value read from an open
 * file can be copied as is (its key, not NUL-terminated there, must be made a C string first). */
void sp_gguf_w_value(sp_gguf_writer *w, const char *key, const sp_gguf_value *v);
/* Add a tensor; `data` (sp_type_row_bytes(type, ne[0]) * rows bytes) is copied. ne[0] is the row length. */
void sp_gguf_w_tensor(sp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data);
/* Add a tensor whose rows are produced at save time: fill(ctx, row, dst) writes row `row` (of
 * ne[1]*ne[2]*ne[3] rows) as sp_type_row_bytes(type, ne[0]) bytes. Keeps huge models out of memory. */
typedef void (*sp_gguf_fill_fn)(void *ctx, int64_t row, void *dst);
void sp_gguf_w_tensor_fn(sp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                         const int64_t *ne, sp_gguf_fill_fn fill, void *ctx);
/* Write the file (version 3, alignment 32) atomically (temp file + rename). false + err on failure. */
bool sp_gguf_writer_save(sp_gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
