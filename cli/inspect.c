/* cli/inspect.c — `sparrow inspect FILE [--all]`: prints a GGUF file's header, every metadata key
 * (type and value; long arrays and strings shortened unless --all) and its tensor table with a
 * per-type summary. Entry point sp_cli_inspect(argc, argv), argv[0] being "inspect". */
#include "cli/cli.h"
#include "kernels/types.h"
#include "storage/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define INSPECT_ARRAY_SHOWN 8    /* array elements printed without --all */
#define INSPECT_STRING_SHOWN 120 /* string bytes printed without --all */
#define INSPECT_NAME_COL_MAX 48  /* widest name column before names just overflow it */

typedef struct {
    FILE *out;
    bool all;
} inspect_opts;

/* ---------------------------------------------------------------- values */

/* A quoted string: control characters, quote and backslash escaped; cut (on a UTF-8 character
 * boundary) after `limit` bytes with a note of the full length. */
static void print_str(FILE *out, sp_gguf_str s, uint64_t limit) {
    uint64_t n = s.len;
    if (n > limit) {
        n = limit;
        while (n > 0 && ((unsigned char)s.ptr[n] & 0xC0) == 0x80) n--; /* don't split a character */
    }
    fputc('"', out);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\x%02x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
    if (n < s.len) fprintf(out, "... (%" PRIu64 " bytes)", s.len);
}

/* The shortest decimal that reads back as the same float (or double). */
static void print_float(FILE *out, double v, bool single) {
    char buf[40];
    for (int prec = single ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back;
        if (sscanf(buf, "%lf", &back) != 1) break;
        if (single ? (float)back == (float)v : back == v) break;
    }
    fputs(buf, out);
}

static uint64_t load_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

/* Scalar element i of an array, decoded as the reader decodes top-level scalars. */
static sp_gguf_value array_elem(const sp_gguf_value *arr, uint64_t i) {
    sp_gguf_value e;
    memset(&e, 0, sizeof e);
    e.type = arr->arr.type;
    unsigned n = sp_gguf_vtype_size(e.type);
    uint64_t bits = load_le(arr->arr.raw + i * n, n);
    switch (e.type) {
    case SP_GGUF_I8: e.i64 = (int8_t)bits; break;
    case SP_GGUF_I16: e.i64 = (int16_t)bits; break;
    case SP_GGUF_I32: e.i64 = (int32_t)bits; break;
    case SP_GGUF_I64: memcpy(&e.i64, &bits, 8); break;
    case SP_GGUF_F32: {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, 4);
        e.f64 = f;
        break;
    }
    case SP_GGUF_F64: memcpy(&e.f64, &bits, 8); break;
    default: e.u64 = bits;
    }
    return e;
}

static void print_scalar(FILE *out, const sp_gguf_value *v) {
    switch (v->type) {
    case SP_GGUF_BOOL: fputs(v->u64 ? "true" : "false", out); break;
    case SP_GGUF_I8: case SP_GGUF_I16: case SP_GGUF_I32: case SP_GGUF_I64:
        fprintf(out, "%" PRId64, v->i64);
        break;
    case SP_GGUF_F32: print_float(out, v->f64, true); break;
    case SP_GGUF_F64: print_float(out, v->f64, false); break;
    default: fprintf(out, "%" PRIu64, v->u64);
    }
}

static void print_value(const inspect_opts *o, const sp_gguf_value *v);

/* [e0, e1, ... (N more)]: the first elements, or all of them with --all. */
static void print_array(const inspect_opts *o, const sp_gguf_value *v) {
    uint64_t n = v->arr.n;
    uint64_t shown = (!o->all && n > INSPECT_ARRAY_SHOWN) ? INSPECT_ARRAY_SHOWN : n;
    uint64_t str_limit = o->all ? UINT64_MAX : INSPECT_STRING_SHOWN;
    fputc('[', o->out);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", o->out);
        if (v->arr.type == SP_GGUF_STRING) {
            print_str(o->out, v->arr.strs[i], str_limit);
        } else if (v->arr.type == SP_GGUF_ARRAY) {
            print_value(o, &v->arr.vals[i]);
        } else {
            sp_gguf_value e = array_elem(v, i);
            print_scalar(o->out, &e);
        }
    }
    if (shown < n) fprintf(o->out, ", ... (%" PRIu64 " more)", n - shown);
    fputc(']', o->out);
}

static void print_value(const inspect_opts *o, const sp_gguf_value *v) {
    if (v->type == SP_GGUF_STRING)
        print_str(o->out, v->str, o->all ? UINT64_MAX : INSPECT_STRING_SHOWN);
    else if (v->type == SP_GGUF_ARRAY)
        print_array(o, v);
    else
        print_scalar(o->out, v);
}

/* "u32", "string", "array[string; 32000]". */
static void format_type(char *dst, size_t cap, const sp_gguf_value *v) {
    if (v->type == SP_GGUF_ARRAY)
        snprintf(dst, cap, "array[%s; %" PRIu64 "]", sp_gguf_vtype_name(v->arr.type), v->arr.n);
    else
        snprintf(dst, cap, "%s", sp_gguf_vtype_name(v->type));
}

/* ---------------------------------------------------------------- sections */

/* A name column width: the longest name, capped. */
static int name_width(uint64_t len, int width) {
    return len > (uint64_t)width ? (len > INSPECT_NAME_COL_MAX ? INSPECT_NAME_COL_MAX : (int)len) : width;
}

/* A key or tensor name (not NUL-terminated in the file), escaped like a string but unquoted. */
static void print_name(FILE *out, sp_gguf_str name, int width) {
    int n = 0;
    for (uint64_t i = 0; i < name.len; i++) {
        unsigned char c = (unsigned char)name.ptr[i];
        if (c < 0x20 || c == 0x7f)
            n += fprintf(out, "\\x%02x", c);
        else
            n += fputc(c, out) != EOF;
    }
    for (; n < width; n++) fputc(' ', out);
}

static void print_header(const inspect_opts *o, const char *path, const sp_gguf *g) {
    fprintf(o->out, "file:        %s\n", path);
    fprintf(o->out, "version:     %" PRIu32 "\n", sp_gguf_version(g));
    fprintf(o->out, "alignment:   %" PRIu64 "\n", sp_gguf_alignment(g));
    fprintf(o->out, "n_kv:        %" PRIu64 "\n", sp_gguf_n_kv(g));
    fprintf(o->out, "n_tensors:   %" PRIu64 "\n", sp_gguf_n_tensors(g));
    fprintf(o->out, "data offset: %" PRIu64 "\n", sp_gguf_data_offset(g));
    fprintf(o->out, "file size:   %" PRIu64 "\n", sp_gguf_file_size(g));
}

static void print_metadata(const inspect_opts *o, const sp_gguf *g) {
    uint64_t n = sp_gguf_n_kv(g);
    int width = 3;
    for (uint64_t i = 0; i < n; i++) width = name_width(sp_gguf_kv_at(g, i)->key.len, width);
    fprintf(o->out, "\nmetadata (%" PRIu64 " key%s):\n", n, n == 1 ? "" : "s");
    for (uint64_t i = 0; i < n; i++) {
        const sp_gguf_kv *kv = sp_gguf_kv_at(g, i);
        char type[64];
        format_type(type, sizeof type, &kv->val);
        fputs("  ", o->out);
        print_name(o->out, kv->key, width);
        fprintf(o->out, "  %-20s ", type);
        print_value(o, &kv->val);
        fputc('\n', o->out);
    }
}

static const char *type_name(uint32_t type) {
    const sp_type_info *ti = sp_type_get(type);
    return ti ? ti->name : "?";
}

/* "[896, 151936]" */
static void format_shape(char *dst, size_t cap, const sp_gguf_tensor *t) {
    size_t o = (size_t)snprintf(dst, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(dst + o, cap - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < cap) snprintf(dst + o, cap - o, "]");
}

static void print_tensor_table(const inspect_opts *o, const sp_gguf *g) {
    uint64_t n = sp_gguf_n_tensors(g);
    int width = 4;
    for (uint64_t i = 0; i < n; i++) width = name_width(sp_gguf_tensor_at(g, i)->name.len, width);
    fprintf(o->out, "\ntensors (%" PRIu64 "; offsets from the data section):\n", n);
    if (n == 0) return;
    fprintf(o->out, "  %-5s %-*s  %-7s %-28s %14s %14s\n", "#", width, "name", "type", "shape", "bytes",
            "offset");
    for (uint64_t i = 0; i < n; i++) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(g, i);
        char shape[128];
        format_shape(shape, sizeof shape, t);
        fprintf(o->out, "  %-5" PRIu64 " ", i);
        print_name(o->out, t->name, width);
        fprintf(o->out, "  %-7s %-28s %14" PRIu64 " %14" PRIu64 "\n", type_name(t->type), shape,
                t->nbytes, t->offset);
    }
}

/* "total: N bytes in M tensors (f32: 9 tensors, 1234 bytes; q8_0: ...)" */
static void print_totals(const inspect_opts *o, const sp_gguf *g) {
    uint64_t count[SP_TYPE_COUNT] = {0}, bytes[SP_TYPE_COUNT] = {0}, total = 0;
    uint64_t n = sp_gguf_n_tensors(g);
    for (uint64_t i = 0; i < n; i++) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(g, i);
        total += t->nbytes;
        if (t->type < SP_TYPE_COUNT) {
            count[t->type]++;
            bytes[t->type] += t->nbytes;
        }
    }
    fprintf(o->out, "\ntotal: %" PRIu64 " bytes in %" PRIu64 " tensors", total, n);
    const char *sep = " (";
    for (uint32_t t = 0; t < SP_TYPE_COUNT; t++) {
        if (!count[t]) continue;
        fprintf(o->out, "%s%s: %" PRIu64 " tensor%s, %" PRIu64 " bytes", sep, type_name(t), count[t],
                count[t] == 1 ? "" : "s", bytes[t]);
        sep = "; ";
    }
    fputs(n ? ")\n" : "\n", o->out);
}

/* ---------------------------------------------------------------- entry */

static void usage(FILE *out) {
    fputs("usage: sparrow inspect FILE [--all]\n"
          "  print a GGUF file's header, metadata and tensor table\n"
          "  --all  print whole arrays and strings (default: first 8 elements, 120 bytes)\n",
          out);
}

int sp_cli_inspect(int argc, char **argv) {
    inspect_opts o = {.out = stdout, .all = false};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0) {
            o.all = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sparrow inspect: unknown option '%s' (usage: sparrow inspect FILE [--all])\n", argv[i]);
            return 1;
        } else if (path) {
            fprintf(stderr, "sparrow inspect: more than one file given (usage: sparrow inspect FILE [--all])\n");
            return 1;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "sparrow inspect: no file given (usage: sparrow inspect FILE [--all])\n");
        return 1;
    }
    char err[512];
    sp_gguf *g = sp_gguf_open(path, err, sizeof err);
    if (!g) {
        fprintf(stderr, "sparrow inspect: %s\n", err);
        return 1;
    }
    print_header(&o, path, g);
    print_metadata(&o, g);
    print_tensor_table(&o, g);
    print_totals(&o, g);
    sp_gguf_close(g);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sparrow inspect: error writing output\n");
        return 1;
    }
    return 0;
}
