/* kernels/opencl_table.c — the "opencl" kernel table (sp_kernels_opencl; chosen only by name:
 * --kernels opencl or SPARROW_KERNELS=opencl, never by auto).
 *   matmul: on the OpenCL device (kernels/opencl.c; $SPARROW_CL_DEVICE picks it). Each weight matrix
 *     goes to the device once, on first use, as the table's pack() left it (kernels/pack.h's q4x8 /
 *     q4x8m / q8x8 tiles, or the file's f32 / f16 / bf16 rows), and stays in a map keyed by the sp_mat
 *     pointer shared by every caller (an entry is checked against the matrix's data pointer, shape,
 *     layout and a sample of its bytes on every use, and re-uploaded if any changed; least recently
 *     used matrices leave the device when its memory budget is reached). Activations are f32: uploaded
 *     and read back per call, or, on a device with unified host memory, wrapped in place
 *     (CL_MEM_USE_HOST_PTR) and mapped. The pool is not used: one call is one device dispatch.
 *     Formats the device kernels do not cover run on the CPU table below.
 *   everything else (norms, RoPE, softmax, SwiGLU, attention over the paged KV cache): the fastest
 *     CPU table (avx2 / neon / ref). The KV cache lives in host memory, where the engine writes it;
 *     the device attention kernels (sp_cl_attention) wait for a device-resident forward pass.
 * Numerics: f32 activations, weights dequantized exactly as pack.h defines them, f32 accumulation:
 * the reference path's results up to f32 rounding (no int8 activation rounding). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/opencl.h"
#include "kernels/pack.h"
#include "kernels/types.h"

#ifndef SP_HAVE_OPENCL

const sp_kernels *sp_kernels_opencl(void) { return NULL; }
void sp_kernels_opencl_set_cache_dir(const char *dir) { (void)dir; }
const char *sp_kernels_opencl_error(void) {
    return "this build has no OpenCL support (install ocl-icd-opencl-dev and opencl-c-headers, then rebuild)";
}
const sp_cl_devinfo *sp_kernels_opencl_device(void) { return NULL; }

#else

#include <pthread.h>

typedef struct {
    const sp_mat *key;
    const void *src;
    uint32_t fmt;
    int64_t n_in, n_out;
    size_t bytes;
    uint64_t sample, used;
    cl_mem buf;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sp_cl *cl;
static int state; /* 0: not tried, 1: open, -1: failed */
static char errmsg[2048];
static char *cache_dir_set;
static bool cache_dir_given, warned;
static sp_kernels table;
static const sp_kernels *cpu;
static entry *map;
static int n_map, cap_map;
static uint64_t clock_now, dev_bytes, budget;
static cl_mem xbuf, ybuf[4]; /* activations in and out (devices without unified memory) */
static size_t xcap, ycap[4];
static bool zero_copy; /* unified memory, and SPARROW_CL_ZEROCOPY is not 0 */

void sp_kernels_opencl_set_cache_dir(const char *dir) {
    pthread_mutex_lock(&mu);
    free(cache_dir_set);
    cache_dir_set = dir ? strdup(dir) : NULL;
    cache_dir_given = true;
    pthread_mutex_unlock(&mu);
}

const char *sp_kernels_opencl_error(void) { return errmsg; }

const sp_cl_devinfo *sp_kernels_opencl_device(void) { return cl ? sp_cl_info(cl) : NULL; }

static const sp_kernels *cpu_table(void) {
    const sp_kernels *k = sp_kernels_avx2();
    if (!k) k = sp_kernels_neon();
    return k ? k : sp_kernels_ref();
}

/* The default cache directory, as conf/ computes it (kernels/ does not depend on conf/). */
static const char *default_cache_dir(char *buf, size_t cap) {
    const char *e = getenv("SPARROW_CL_CACHE");
    if (e && !strcmp(e, "off")) return NULL;
    int n;
    if ((e = getenv("SPARROW_CACHE_DIR")) && *e) n = snprintf(buf, cap, "%s", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e) n = snprintf(buf, cap, "%s/sparrow", e);
    else if ((e = getenv("HOME")) && *e) n = snprintf(buf, cap, "%s/.cache/sparrow", e);
    else return NULL;
    return n > 0 && (size_t)n < cap ? buf : NULL;
}

static bool open_locked(void) {
    if (state) return state > 0;
    char dir[4096];
    const char *d = cache_dir_given ? cache_dir_set : default_cache_dir(dir, sizeof dir);
    cl = sp_cl_open(NULL, d, 0, errmsg, sizeof errmsg);
    if (cl && !sp_cl_prepare(cl, SP_CL_ACT_F32, NULL)) {
        snprintf(errmsg, sizeof errmsg, "%s", sp_cl_error(cl));
        sp_cl_close(cl);
        cl = NULL;
    }
    state = cl ? 1 : -1;
    if (cl) {
        const char *m = getenv("SPARROW_CL_MEM"); /* device bytes for weights (default 90% of it) */
        budget = m && *m ? strtoull(m, NULL, 10) : sp_cl_info(cl)->global_mem / 10 * 9;
        const char *z = getenv("SPARROW_CL_ZEROCOPY");
        zero_copy = sp_cl_info(cl)->unified && !(z && !strcmp(z, "0"));
    }
    return cl != NULL;
}

static uint32_t fmt_of(const sp_mat *w) {
    if (w->packed) return w->pack_fmt == SP_PACK_Q4X8 ? SP_CL_FMT_Q4X8 : w->pack_fmt == SP_PACK_Q8X8 ? SP_CL_FMT_Q8X8
                        : w->pack_fmt == SP_PACK_Q4X8M ? SP_CL_FMT_Q4X8M : 0;
    size_t es = w->type == SP_TYPE_F32 ? 4 : w->type == SP_TYPE_F16 || w->type == SP_TYPE_BF16 ? 2 : 0;
    if (!es || w->row_bytes != (size_t)w->n_in * es) return 0;
    return w->type == SP_TYPE_F32 ? SP_CL_FMT_F32 : w->type == SP_TYPE_F16 ? SP_CL_FMT_F16 : SP_CL_FMT_BF16;
}

/* FNV-1a over four 64-byte windows (start, thirds, end): a changed matrix at a reused address is
 * noticed without reading it all. */
static uint64_t sample_of(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    size_t at[4] = {0, n / 3, 2 * (n / 3), n > 64 ? n - 64 : 0};
    for (int i = 0; i < 4; i++)
        for (size_t j = at[i]; j < at[i] + 64 && j < n; j++) h = (h ^ p[j]) * 1099511628211ull;
    return h;
}

static void drop(int i) {
    clReleaseMemObject(map[i].buf);
    dev_bytes -= map[i].bytes;
    map[i] = map[--n_map];
}

static void evict_lru(void) {
    int lru = 0;
    for (int i = 1; i < n_map; i++)
        if (map[i].used < map[lru].used) lru = i;
    drop(lru);
}

/* The device copy of w (uploaded now if it is not there or changed), NULL when it cannot be had. */
static entry *lookup(const sp_mat *w, uint32_t fmt) {
    const void *src = w->packed ? w->packed : w->data;
    size_t bytes = w->packed ? w->packed_bytes : w->row_bytes * (size_t)w->n_out;
    uint64_t sample = sample_of(src, bytes);
    for (int i = 0; i < n_map; i++) {
        if (map[i].key != w) continue;
        if (map[i].src == src && map[i].fmt == fmt && map[i].n_in == w->n_in && map[i].n_out == w->n_out &&
            map[i].bytes == bytes && map[i].sample == sample) {
            map[i].used = ++clock_now;
            return &map[i];
        }
        drop(i);
        break;
    }
    const sp_cl_devinfo *info = sp_cl_info(cl);
    if (bytes > info->max_alloc) return NULL;
    while (n_map && dev_bytes + bytes > budget) evict_lru();
    if (n_map == cap_map) {
        int cap = cap_map ? 2 * cap_map : 64;
        entry *m = realloc(map, (size_t)cap * sizeof *m);
        if (!m) return NULL;
        map = m, cap_map = cap;
    }
    cl_mem buf = NULL;
    for (int attempt = 0; attempt < 2 && !buf; attempt++) {
        buf = zero_copy ? sp_cl_wrap(cl, (void *)src, bytes, true) : sp_cl_alloc(cl, bytes, src);
        if (!buf)
            while (n_map) evict_lru(); /* out of device memory: start over with this one */
    }
    if (!buf) return NULL;
    map[n_map] = (entry){w, src, fmt, w->n_in, w->n_out, bytes, sample, ++clock_now, buf};
    dev_bytes += bytes;
    return &map[n_map++];
}

static bool grow(cl_mem *m, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return true;
    if (*m) clReleaseMemObject(*m);
    *m = sp_cl_alloc(cl, bytes, NULL);
    *cap = *m ? bytes : 0;
    return *m != NULL;
}

/* y[i] = W[i] x for i < n on the device: x goes up once, each y comes back. */
static bool device_matmuls(const sp_cl_mat *e, const float *x, float *const *y, int n, int64_t n_tok) {
    int64_t n_in = e[0].n_in;
    size_t xb = (size_t)n_tok * (size_t)n_in * sizeof(float), yb[4];
    for (int i = 0; i < n; i++) yb[i] = (size_t)n_tok * (size_t)e[i].n_out * sizeof(float);
    bool ok = true;
    if (!zero_copy) {
        ok = grow(&xbuf, &xcap, xb) && sp_cl_write(cl, xbuf, 0, x, xb);
        for (int i = 0; ok && i < n; i++)
            ok = grow(&ybuf[i], &ycap[i], yb[i]) &&
                 sp_cl_matmul(cl, SP_CL_ACT_F32, &e[i], xbuf, ybuf[i], n_tok, NULL, NULL, SP_CL_PATH_AUTO);
        for (int i = 0; ok && i < n; i++) ok = sp_cl_read(cl, ybuf[i], 0, y[i], yb[i]);
        return ok;
    }
    cl_mem xm = sp_cl_wrap(cl, (void *)x, xb, true);
    ok = xm != NULL;
    for (int i = 0; ok && i < n; i++) {
        cl_mem ym = sp_cl_wrap(cl, y[i], yb[i], false);
        ok = ym && sp_cl_matmul(cl, SP_CL_ACT_F32, &e[i], xm, ym, n_tok, NULL, NULL, SP_CL_PATH_AUTO);
        if (ok) { /* mapping makes the results visible in y[i] */
            cl_int err;
            void *p = clEnqueueMapBuffer(sp_cl_queue(cl), ym, CL_TRUE, CL_MAP_READ, 0, yb[i], 0, NULL, NULL, &err);
            if (p && p != (void *)y[i]) memcpy(y[i], p, yb[i]);
            ok = p && clEnqueueUnmapMemObject(sp_cl_queue(cl), ym, p, 0, NULL, NULL) == CL_SUCCESS && sp_cl_finish(cl);
        }
        if (ym) clReleaseMemObject(ym);
    }
    if (xm) clReleaseMemObject(xm);
    return ok;
}

/* n matmuls sharing x on the device; the ones it cannot take run on the CPU table. */
static void run_matmuls(const sp_mat *const *w, float *const *y, int n, const float *x, int64_t n_tok, sp_pool *pool) {
    sp_cl_mat e[4]; /* by value, each buffer retained: a later lookup may evict an earlier entry */
    bool on_dev[4] = {false, false, false, false};
    int nd = 0;
    if (n_tok > 0) {
        pthread_mutex_lock(&mu);
        if (open_locked())
            for (int i = 0; i < n; i++) {
                uint32_t fmt = fmt_of(w[i]);
                entry *en = fmt ? lookup(w[i], fmt) : NULL;
                if (!en) continue;
                on_dev[i] = true;
                e[nd++] = (sp_cl_mat){en->fmt, en->n_in, en->n_out, en->buf};
                clRetainMemObject(en->buf);
            }
        float *yd[4] = {NULL, NULL, NULL, NULL};
        for (int i = 0, j = 0; i < n; i++)
            if (on_dev[i]) yd[j++] = y[i];
        if (nd && !device_matmuls(e, x, yd, nd, n_tok)) {
            if (!warned) {
                warned = true;
                fprintf(stderr, "sparrow: opencl: %s; running the matmuls it fails on the CPU\n", sp_cl_error(cl));
            }
            memset(on_dev, 0, sizeof on_dev);
        }
        for (int j = 0; j < nd; j++) clReleaseMemObject(e[j].buf);
        pthread_mutex_unlock(&mu);
    }
    for (int i = 0; i < n; i++)
        if (!on_dev[i]) cpu->matmul(w[i], x, y[i], n_tok, pool);
}

static void cl_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    run_matmuls(&w, &y, 1, x, n_tok, pool);
}

static void cl_matmul_multi(const sp_mat *const *w, float *const *y, int n, const float *x, int64_t n_tok, sp_pool *pool) {
    for (int i = 0; i < n; i += 4) run_matmuls(w + i, y + i, n - i < 4 ? n - i : 4, x, n_tok, pool);
}

static bool cl_pack(sp_mat *w) { return sp_pack_mat(w); }

const sp_kernels *sp_kernels_opencl(void) {
    pthread_mutex_lock(&mu);
    bool ok = open_locked();
    if (ok && !table.name) {
        cpu = cpu_table(); /* slot by slot: a slot added later stays NULL (the engine's fallback) */
        table.rmsnorm = cpu->rmsnorm;
        table.rope = cpu->rope;
        table.rope_cs = cpu->rope_cs;
        table.softmax = cpu->softmax;
        table.swiglu = cpu->swiglu;
        table.dot = cpu->dot;
        table.axpy = cpu->axpy;
        table.attend = cpu->attend;
        table.attend_paged = cpu->attend_paged;
        table.matmul = cl_matmul;
        table.matmul_multi = cl_matmul_multi;
        table.pack = cl_pack;
        table.name = "opencl";
    }
    pthread_mutex_unlock(&mu);
    return ok ? &table : NULL;
}

#endif
