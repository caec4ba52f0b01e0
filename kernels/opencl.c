/* kernels/opencl.c — the OpenCL backend's host side (see kernels/opencl.h): device enumeration and
 * choice, capabilities, programs built from the embedded kernels/cl/ (*.cl) sources through an on-disk
 * binary cache, and the enqueue wrappers of every kernel. Compiled to a stub without OpenCL
 * (SP_HAVE_OPENCL undefined): no devices. */
#include "kernels/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SHA-256 (FIPS 180-4), for the cache key; no dependency outside kernels/ ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t n;
    uint64_t total;
} sha_ctx;

static uint32_t ror(uint32_t x, int r) { return x >> r | x << (32 - r); }

static void sha_block(sha_ctx *s, const uint8_t *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ w[i - 15] >> 3;
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ w[i - 2] >> 10;
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = a[7] + (ror(a[4], 6) ^ ror(a[4], 11) ^ ror(a[4], 25)) + ((a[4] & a[5]) ^ (~a[4] & a[6])) + sha_k[i] + w[i];
        uint32_t t2 = (ror(a[0], 2) ^ ror(a[0], 13) ^ ror(a[0], 22)) + ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) s->h[i] += a[i];
}

static void sha_init(sha_ctx *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->n = 0;
    s->total = 0;
}

static void sha_update(sha_ctx *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->total += len;
    while (len) {
        size_t k = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, k);
        s->n += k, p += k, len -= k;
        if (s->n == 64) {
            sha_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha_final(sha_ctx *s, uint8_t out[32]) {
    uint64_t bits = s->total * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha_update(s, &pad, 1);
    while (s->n != 56) sha_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, len, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void sp_cl_sha256(const void *data, size_t len, uint8_t out[32]) {
    sha_ctx s;
    sha_init(&s);
    sha_update(&s, data, len);
    sha_final(&s, out);
}

#ifndef SP_HAVE_OPENCL

int sp_cl_devices(sp_cl_devinfo *out, int cap, char *err, size_t errlen) {
    (void)out, (void)cap;
    if (err && errlen) snprintf(err, errlen, "this build has no OpenCL support (no OpenCL headers or ICD loader at build time)");
    return 0;
}

int sp_cl_choose(const sp_cl_devinfo *d, int n, const char *spec, char *err, size_t errlen) {
    (void)d, (void)n, (void)spec;
    if (err && errlen) snprintf(err, errlen, "this build has no OpenCL support");
    return -1;
}

const char *sp_cl_devtype(const sp_cl_devinfo *d) { return d->gpu ? "GPU" : d->cpu ? "CPU" : d->accelerator ? "accelerator" : "other"; }

#else /* SP_HAVE_OPENCL */

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/opencl_src.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *sp_cl_devtype(const sp_cl_devinfo *d) { return d->gpu ? "GPU" : d->cpu ? "CPU" : d->accelerator ? "accelerator" : "other"; }

/* ---- devices ---- */

static void dev_str(cl_device_id d, cl_device_info what, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    if (clGetDeviceInfo(d, what, cap, buf, &n) != CL_SUCCESS) buf[0] = 0;
    buf[cap - 1] = 0;
}

static bool has_ext(const char *exts, const char *name) {
    size_t n = strlen(name);
    for (const char *p = exts; (p = strstr(p, name)) != NULL; p += n)
        if ((p == exts || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return true;
    return false;
}

static void fill_info(cl_platform_id p, cl_device_id d, int pi, int di, sp_cl_devinfo *o) {
    memset(o, 0, sizeof *o);
    o->platform = pi, o->device = di;
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof o->platform_name, o->platform_name, NULL);
    clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof o->platform_version, o->platform_version, NULL);
    o->platform_name[sizeof o->platform_name - 1] = 0;
    o->platform_version[sizeof o->platform_version - 1] = 0;
    dev_str(d, CL_DEVICE_NAME, o->name, sizeof o->name);
    dev_str(d, CL_DEVICE_VENDOR, o->vendor, sizeof o->vendor);
    dev_str(d, CL_DRIVER_VERSION, o->driver, sizeof o->driver);
    dev_str(d, CL_DEVICE_VERSION, o->version, sizeof o->version);
    dev_str(d, CL_DEVICE_OPENCL_C_VERSION, o->c_version, sizeof o->c_version);
    if (sscanf(o->c_version, "OpenCL C %u.%u", &o->c_major, &o->c_minor) != 2) o->c_major = 1, o->c_minor = 0;
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    o->gpu = t & CL_DEVICE_TYPE_GPU, o->cpu = t & CL_DEVICE_TYPE_CPU, o->accelerator = t & CL_DEVICE_TYPE_ACCELERATOR;
    cl_uint u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL);
    o->compute_units = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL);
    o->max_clock_mhz = u;
    cl_ulong l = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof l, &l, NULL);
    o->global_mem = l;
    l = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof l, &l, NULL);
    o->local_mem = l;
    l = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof l, &l, NULL);
    o->max_alloc = l;
    size_t s = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof s, &s, NULL);
    o->max_wg = s;
    cl_bool b = 0;
    clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof b, &b, NULL);
    o->unified = b;
    b = 0;
    clGetDeviceInfo(d, CL_DEVICE_AVAILABLE, sizeof b, &b, NULL);
    o->available = b;
    b = 0;
    clGetDeviceInfo(d, CL_DEVICE_COMPILER_AVAILABLE, sizeof b, &b, NULL);
    o->compiler = b;
    size_t n = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && n) {
        char *e = malloc(n + 1);
        if (e && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, e, NULL) == CL_SUCCESS) {
            e[n] = 0;
            o->fp16 = has_ext(e, "cl_khr_fp16");
            o->fp64 = has_ext(e, "cl_khr_fp64");
            o->subgroups = has_ext(e, "cl_khr_subgroups");
        }
        free(e);
    }
}

/* Enumerate (platform, device) ids and infos; returns the count, 0 (+err) for none, -1 on error. */
static int enumerate(cl_platform_id *pids, cl_device_id *dids, sp_cl_devinfo *out, int cap, char *err, size_t errlen) {
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int e = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (e == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (e == CL_SUCCESS && np == 0)) {
        seterr(err, errlen, "no OpenCL platform found: the ICD loader found no driver (install one, e.g. Debian's "
                            "pocl-opencl-icd, or check /etc/OpenCL/vendors and OCL_ICD_VENDORS)");
        return 0;
    }
    if (e != CL_SUCCESS) {
        seterr(err, errlen, "clGetPlatformIDs failed (OpenCL error %d)", e);
        return -1;
    }
    if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
    int total = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS) continue;
        if (nd > MAX_DEVICES) nd = MAX_DEVICES;
        for (cl_uint d = 0; d < nd; d++, total++) {
            if (total >= cap) continue;
            if (pids) pids[total] = plats[p];
            if (dids) dids[total] = devs[d];
            if (out) fill_info(plats[p], devs[d], (int)p, (int)d, &out[total]);
        }
    }
    if (total == 0) seterr(err, errlen, "OpenCL platforms found, but no device on any of them");
    return total;
}

int sp_cl_devices(sp_cl_devinfo *out, int cap, char *err, size_t errlen) {
    return enumerate(NULL, NULL, out, cap, err, errlen);
}

int sp_cl_choose(const sp_cl_devinfo *d, int n, const char *spec, char *err, size_t errlen) {
    if (!spec || !*spec) spec = getenv("SPARROW_CL_DEVICE");
    if (!spec || !*spec) spec = "auto";
    if (n <= 0) {
        seterr(err, errlen, "no OpenCL device");
        return -1;
    }
    int pi, di;
    char extra;
    if (sscanf(spec, "%d:%d%c", &pi, &di, &extra) == 2) {
        for (int i = 0; i < n; i++)
            if (d[i].platform == pi && d[i].device == di) return i;
        seterr(err, errlen, "SPARROW_CL_DEVICE=%s: no device %d on platform %d (`sparrow devices` lists them)", spec, di, pi);
        return -1;
    }
    bool want_gpu = !strcasecmp(spec, "gpu"), want_cpu = !strcasecmp(spec, "cpu");
    if (!want_gpu && !want_cpu && strcasecmp(spec, "auto")) {
        seterr(err, errlen, "SPARROW_CL_DEVICE=%s: expected auto, gpu, cpu or PLATFORM:DEVICE", spec);
        return -1;
    }
    for (int pass = 0; pass < 3; pass++)
        for (int i = 0; i < n; i++) {
            if (!d[i].available || !d[i].compiler) continue;
            bool ok = pass == 0 ? d[i].gpu : pass == 1 ? d[i].accelerator : d[i].cpu;
            if (want_gpu) ok = pass == 0 && d[i].gpu;
            if (want_cpu) ok = pass == 0 && d[i].cpu;
            if (ok) return i;
        }
    if (!want_gpu && !want_cpu)
        for (int i = 0; i < n; i++)
            if (d[i].available && d[i].compiler) return i;
    seterr(err, errlen, "no available OpenCL %s device with a compiler", want_gpu ? "GPU" : want_cpu ? "CPU" : "");
    return -1;
}

/* ---- the context ---- */

enum { K_GEMV_Q4X8, K_GEMV_Q8X8, K_GEMV_Q4X8M, K_GEMV_RAW, K_GEMM, K_RMSNORM, K_ROPE, K_SWIGLU, K_SOFTMAX, K_EMBED,
       K_ATTN_SPLIT, K_ATTN_MERGE, K_COUNT };
static const char *const kernel_names[K_COUNT] = {"gemv_q4x8", "gemv_q8x8", "gemv_q4x8m", "gemv_raw", "gemm",
                                                  "rmsnorm", "rope", "swiglu", "softmax", "embed", "attn_split",
                                                  "attn_merge"};

typedef struct {
    bool ready;
    int state;
    cl_program prog;
    cl_kernel k[K_COUNT];
    size_t max_wg[K_COUNT];
} variant;

struct sp_cl {
    sp_cl_devinfo info;
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue;
    pthread_mutex_t mu;
    char *cache_dir;
    bool subgroups; /* use the subgroup fast path (device has it and SPARROW_CL_SUBGROUPS=1) */
    variant var[2];
    bool profile;
    cl_event last;     /* the last kernel's event (profiling queues) */
    cl_mem part;       /* attention partials */
    size_t part_bytes;
    char err[2048];
};

const sp_cl_devinfo *sp_cl_info(const sp_cl *c) { return &c->info; }
cl_context sp_cl_context(const sp_cl *c) { return c->ctx; }
cl_command_queue sp_cl_queue(const sp_cl *c) { return c->queue; }
const char *sp_cl_error(const sp_cl *c) { return c->err; }

sp_cl *sp_cl_open(const char *spec, const char *cache_dir, unsigned flags, char *err, size_t errlen) {
    sp_cl_devinfo infos[MAX_DEVICES];
    cl_platform_id pids[MAX_DEVICES];
    cl_device_id dids[MAX_DEVICES];
    int n = enumerate(pids, dids, infos, MAX_DEVICES, err, errlen);
    if (n <= 0) return NULL;
    if (n > MAX_DEVICES) n = MAX_DEVICES;
    int i = sp_cl_choose(infos, n, spec, err, errlen);
    if (i < 0) return NULL;
    sp_cl *c = calloc(1, sizeof *c);
    if (!c) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    c->info = infos[i];
    c->platform = pids[i];
    c->device = dids[i];
    pthread_mutex_init(&c->mu, NULL);
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)c->platform, 0};
    cl_int e;
    c->ctx = clCreateContext(props, 1, &c->device, NULL, NULL, &e);
    if (!c->ctx) {
        seterr(err, errlen, "%s: clCreateContext failed (OpenCL error %d)", c->info.name, e);
        sp_cl_close(c);
        return NULL;
    }
    c->queue = clCreateCommandQueue(c->ctx, c->device, flags & SP_CL_PROFILE ? CL_QUEUE_PROFILING_ENABLE : 0, &e);
    if (!c->queue) {
        seterr(err, errlen, "%s: clCreateCommandQueue failed (OpenCL error %d)", c->info.name, e);
        sp_cl_close(c);
        return NULL;
    }
    c->profile = flags & SP_CL_PROFILE;
    if (cache_dir && *cache_dir) c->cache_dir = strdup(cache_dir);
    const char *sg = getenv("SPARROW_CL_SUBGROUPS");
    c->subgroups = c->info.subgroups && c->info.c_major >= 2 && sg && !strcmp(sg, "1");
    return c;
}

void sp_cl_close(sp_cl *c) {
    if (!c) return;
    for (int v = 0; v < 2; v++) {
        for (int k = 0; k < K_COUNT; k++)
            if (c->var[v].k[k]) clReleaseKernel(c->var[v].k[k]);
        if (c->var[v].prog) clReleaseProgram(c->var[v].prog);
    }
    if (c->part) clReleaseMemObject(c->part);
    if (c->last) clReleaseEvent(c->last);
    if (c->queue) clReleaseCommandQueue(c->queue);
    if (c->ctx) clReleaseContext(c->ctx);
    pthread_mutex_destroy(&c->mu);
    free(c->cache_dir);
    free(c);
}

/* ---- programs and the binary cache ---- */

static bool mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return false;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static void cache_key(const sp_cl *c, const char *src, size_t len, const char *options, char hex[65]) {
    sha_ctx s;
    sha_init(&s);
    const char *parts[] = {options, c->info.name, c->info.driver, c->info.platform_version, "sparrow-clbin-1"};
    uint64_t n = len;
    sha_update(&s, &n, sizeof n);
    sha_update(&s, src, len);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        n = strlen(parts[i]);
        sha_update(&s, &n, sizeof n);
        sha_update(&s, parts[i], n);
    }
    uint8_t h[32];
    sha_final(&s, h);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static bool cache_path_of(const sp_cl *c, const char *src, size_t len, const char *options, char *buf, size_t cap) {
    if (!c->cache_dir) return false;
    char hex[65];
    cache_key(c, src, len, options, hex);
    return snprintf(buf, cap, "%s/cl/%s.clbin", c->cache_dir, hex) < (int)cap;
}

bool sp_cl_cache_path(sp_cl *c, const char *src, size_t len, const char *options, char *buf, size_t cap) {
    return cache_path_of(c, src, len, options, buf, cap);
}

/* File: "SPCLBIN1", u64 payload length, payload, u64 FNV-1a of the payload. */
static const char cache_magic[8] = {'S', 'P', 'C', 'L', 'B', 'I', 'N', '1'};

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The cached binary (malloc'd) or NULL; *bad when a file exists but is unreadable or corrupt. */
static uint8_t *cache_load(const char *path, size_t *len, bool *bad) {
    *bad = false;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    *bad = true;
    char magic[8];
    uint64_t n = 0, sum = 0;
    uint8_t *bin = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, cache_magic, 8) || fread(&n, sizeof n, 1, f) != 1 || n == 0 ||
        n > ((uint64_t)1 << 31))
        goto out;
    bin = malloc((size_t)n);
    if (!bin || fread(bin, 1, (size_t)n, f) != n || fread(&sum, sizeof sum, 1, f) != 1 || sum != fnv1a(bin, (size_t)n) ||
        fgetc(f) != EOF) {
        free(bin);
        bin = NULL;
        goto out;
    }
    *bad = false;
    *len = (size_t)n;
out:
    fclose(f);
    return bin;
}

static void cache_store(const sp_cl *c, const char *path, const uint8_t *bin, size_t len) {
    char dir[4096], tmp[4400];
    snprintf(dir, sizeof dir, "%s/cl", c->cache_dir);
    if (!mkdir_p(dir)) return;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) return;
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    uint64_t n = len, sum = fnv1a(bin, len);
    bool ok = fwrite(cache_magic, 1, 8, f) == 8 && fwrite(&n, sizeof n, 1, f) == 1 && fwrite(bin, 1, len, f) == len &&
              fwrite(&sum, sizeof sum, 1, f) == 1;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

static void build_log(sp_cl *c, cl_program p, const char *what, cl_int e) {
    size_t n = 0;
    int off = snprintf(c->err, sizeof c->err, "%s: %s failed (OpenCL error %d)", c->info.name, what, e);
    if (clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) != CL_SUCCESS || n < 2) return;
    char *log = malloc(n + 1);
    if (!log) return;
    if (clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) == CL_SUCCESS) {
        log[n] = 0;
        snprintf(c->err + off, sizeof c->err - (size_t)off, ": %s", log);
    }
    free(log);
}

static cl_program build_locked(sp_cl *c, const char *src, size_t len, const char *options, int *state) {
    char path[4200];
    bool cached = cache_path_of(c, src, len, options, path, sizeof path);
    int st = cached ? SP_CL_CACHE_MISS : SP_CL_CACHE_OFF;
    cl_int e;
    if (cached) {
        bool bad;
        size_t n = 0;
        uint8_t *bin = cache_load(path, &n, &bad);
        if (bin) {
            cl_int bs;
            const unsigned char *bp = bin;
            cl_program p = clCreateProgramWithBinary(c->ctx, 1, &c->device, &n, &bp, &bs, &e);
            free(bin);
            if (p && bs == CL_SUCCESS && clBuildProgram(p, 1, &c->device, options, NULL, NULL) == CL_SUCCESS) {
                if (state) *state = SP_CL_CACHE_HIT;
                return p;
            }
            if (p) clReleaseProgram(p);
            bad = true;
        }
        if (bad) st = SP_CL_CACHE_STALE;
    }
    cl_program p = clCreateProgramWithSource(c->ctx, 1, &src, &len, &e);
    if (!p) {
        snprintf(c->err, sizeof c->err, "%s: clCreateProgramWithSource failed (OpenCL error %d)", c->info.name, e);
        return NULL;
    }
    e = clBuildProgram(p, 1, &c->device, options, NULL, NULL);
    if (e != CL_SUCCESS) {
        build_log(c, p, "building the OpenCL kernels", e);
        clReleaseProgram(p);
        return NULL;
    }
    if (cached) {
        size_t n = 0;
        if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) == CL_SUCCESS && n) {
            unsigned char *bin = malloc(n);
            if (bin && clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS)
                cache_store(c, path, bin, n);
            free(bin);
        }
    }
    if (state) *state = st;
    return p;
}

cl_program sp_cl_build(sp_cl *c, const char *src, size_t len, const char *options, int *state) {
    pthread_mutex_lock(&c->mu);
    cl_program p = build_locked(c, src, len, options, state);
    pthread_mutex_unlock(&c->mu);
    return p;
}

static char *src_all;
static size_t src_len;
static pthread_once_t src_once = PTHREAD_ONCE_INIT;

/* common.cl first (macros and helpers), then the kernels */
static void src_concat(void) {
    static const char *const order[] = {"/common.cl", "/matmul.cl", "/ops.cl", "/attention.cl"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        for (const sp_cl_srcfile *f = sp_cl_srcfiles; f->path; f++)
            if (!strcmp(f->path, order[i])) n += f->len + 1;
    char *buf = malloc(n + 1);
    if (!buf) return;
    size_t off = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        for (const sp_cl_srcfile *f = sp_cl_srcfiles; f->path; f++)
            if (!strcmp(f->path, order[i])) {
                memcpy(buf + off, f->data, f->len);
                off += f->len;
                buf[off++] = '\n';
            }
    buf[off] = 0;
    src_len = off;
    src_all = buf;
}

const char *sp_cl_source(size_t *len) {
    pthread_once(&src_once, src_concat);
    if (len) *len = src_len;
    return src_all;
}

bool sp_cl_options(const sp_cl *c, int act, char *buf, size_t cap) {
    const sp_cl_devinfo *d = &c->info;
    const char *std = "";
    if (c->subgroups) std = d->c_major >= 3 ? "-cl-std=CL3.0 " : "-cl-std=CL2.0 ";
    else if (d->c_major > 1 || d->c_minor >= 2) std = "-cl-std=CL1.2 ";
    return snprintf(buf, cap, "%s-DACT_F16=%d -DUSE_FP16=%d -DUSE_SUBGROUPS=%d", std, act == SP_CL_ACT_F16,
                    act == SP_CL_ACT_F16 && d->fp16, c->subgroups) < (int)cap;
}

static bool prepare_locked(sp_cl *c, int act) {
    variant *v = &c->var[act ? 1 : 0];
    if (v->ready) return true;
    size_t len;
    const char *src = sp_cl_source(&len);
    char opts[256];
    if (!src || !sp_cl_options(c, act, opts, sizeof opts)) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return false;
    }
    v->prog = build_locked(c, src, len, opts, &v->state);
    if (!v->prog) return false;
    for (int k = 0; k < K_COUNT; k++) {
        cl_int e;
        v->k[k] = clCreateKernel(v->prog, kernel_names[k], &e);
        if (!v->k[k]) {
            snprintf(c->err, sizeof c->err, "%s: kernel %s: OpenCL error %d", c->info.name, kernel_names[k], e);
            return false;
        }
        size_t wg = 0;
        clGetKernelWorkGroupInfo(v->k[k], c->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
        v->max_wg[k] = wg ? wg : 1;
    }
    v->ready = true;
    return true;
}

bool sp_cl_prepare(sp_cl *c, int act, int *state) {
    pthread_mutex_lock(&c->mu);
    bool ok = prepare_locked(c, act);
    if (ok && state) *state = c->var[act ? 1 : 0].state;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* ---- buffers ---- */

cl_mem sp_cl_alloc(sp_cl *c, size_t bytes, const void *init) {
    cl_int e;
    cl_mem m = clCreateBuffer(c->ctx, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes ? bytes : 4,
                              (void *)init, &e);
    if (!m) snprintf(c->err, sizeof c->err, "%s: allocating %zu bytes: OpenCL error %d", c->info.name, bytes, e);
    return m;
}

cl_mem sp_cl_wrap(sp_cl *c, void *host_ptr, size_t bytes, bool read_only) {
    cl_int e;
    cl_mem m = clCreateBuffer(c->ctx, (read_only ? CL_MEM_READ_ONLY : CL_MEM_READ_WRITE) | CL_MEM_USE_HOST_PTR, bytes,
                              host_ptr, &e);
    if (!m) snprintf(c->err, sizeof c->err, "%s: wrapping %zu host bytes: OpenCL error %d", c->info.name, bytes, e);
    return m;
}

bool sp_cl_write(sp_cl *c, cl_mem m, size_t off, const void *src, size_t bytes) {
    cl_int e = clEnqueueWriteBuffer(c->queue, m, CL_TRUE, off, bytes, src, 0, NULL, NULL);
    if (e != CL_SUCCESS) snprintf(c->err, sizeof c->err, "%s: write: OpenCL error %d", c->info.name, e);
    return e == CL_SUCCESS;
}

bool sp_cl_read(sp_cl *c, cl_mem m, size_t off, void *dst, size_t bytes) {
    cl_int e = clEnqueueReadBuffer(c->queue, m, CL_TRUE, off, bytes, dst, 0, NULL, NULL);
    if (e != CL_SUCCESS) snprintf(c->err, sizeof c->err, "%s: read: OpenCL error %d", c->info.name, e);
    return e == CL_SUCCESS;
}

bool sp_cl_finish(sp_cl *c) {
    cl_int e = clFinish(c->queue);
    if (e != CL_SUCCESS) snprintf(c->err, sizeof c->err, "%s: clFinish: OpenCL error %d", c->info.name, e);
    return e == CL_SUCCESS;
}

bool sp_cl_last_ns(sp_cl *c, double *ns) {
    pthread_mutex_lock(&c->mu);
    cl_ulong t0 = 0, t1 = 0;
    bool ok = c->last && clWaitForEvents(1, &c->last) == CL_SUCCESS &&
              clGetEventProfilingInfo(c->last, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
              clGetEventProfilingInfo(c->last, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS;
    if (ok) *ns = (double)(t1 - t0);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* ---- kernel launches ---- */

typedef struct {
    sp_cl *c;
    cl_kernel k;
    cl_uint i;
    cl_int e;
    const char *name;
} args;

static args args_of(sp_cl *c, int act, int k) {
    variant *v = &c->var[act ? 1 : 0];
    return (args){c, v->k[k], 0, CL_SUCCESS, kernel_names[k]};
}
static void a_mem(args *a, cl_mem m) {
    if (a->e == CL_SUCCESS) a->e = clSetKernelArg(a->k, a->i, sizeof(cl_mem), m ? (const void *)&m : NULL);
    a->i++;
}
static void a_int(args *a, int64_t v) {
    cl_int x = (cl_int)v;
    if (a->e == CL_SUCCESS) a->e = v < INT32_MIN || v > INT32_MAX ? CL_INVALID_ARG_VALUE : clSetKernelArg(a->k, a->i, sizeof x, &x);
    a->i++;
}
static void a_float(args *a, float v) {
    if (a->e == CL_SUCCESS) a->e = clSetKernelArg(a->k, a->i, sizeof v, &v);
    a->i++;
}
static void a_local(args *a, size_t bytes) {
    if (a->e == CL_SUCCESS) a->e = clSetKernelArg(a->k, a->i, bytes ? bytes : 4, NULL);
    a->i++;
}

static bool launch(args *a, cl_uint dims, const size_t *gws, const size_t *lws) {
    cl_event ev = NULL;
    if (a->e == CL_SUCCESS)
        a->e = clEnqueueNDRangeKernel(a->c->queue, a->k, dims, NULL, gws, lws, 0, NULL, a->c->profile ? &ev : NULL);
    if (ev) {
        if (a->c->last) clReleaseEvent(a->c->last);
        a->c->last = ev;
    }
    if (a->e != CL_SUCCESS)
        snprintf(a->c->err, sizeof a->c->err, "%s: kernel %s: OpenCL error %d", a->c->info.name, a->name, a->e);
    return a->e == CL_SUCCESS;
}

static size_t pow2_floor(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

/* Entered with the lock held and the variant built. */
static bool matmul_locked(sp_cl *c, int act, const sp_cl_mat *w, cl_mem x, cl_mem y, int64_t n_tok, cl_mem bias,
                          cl_mem res, int path) {
    variant *v = &c->var[act ? 1 : 0];
    bool packed = w->fmt == SP_CL_FMT_Q4X8 || w->fmt == SP_CL_FMT_Q8X8 || w->fmt == SP_CL_FMT_Q4X8M;
    bool raw = w->fmt == SP_CL_FMT_F32 || w->fmt == SP_CL_FMT_F16 || w->fmt == SP_CL_FMT_BF16;
    if ((!packed && !raw) || (packed && w->n_in % 32) || w->n_in <= 0 || w->n_out <= 0 || n_tok <= 0 ||
        w->n_in > INT32_MAX || w->n_out > INT32_MAX || n_tok > INT32_MAX) {
        snprintf(c->err, sizeof c->err, "matmul: unsupported format %u or shape %lld x %lld, %lld tokens", w->fmt,
                 (long long)w->n_out, (long long)w->n_in, (long long)n_tok);
        return false;
    }
    if (path == SP_CL_PATH_AUTO) path = n_tok >= 8 ? SP_CL_PATH_GEMM : SP_CL_PATH_GEMV;
    if (path == SP_CL_PATH_GEMM && v->max_wg[K_GEMM] < 256) path = SP_CL_PATH_GEMV;
    int64_t groups = (w->n_out + 7) / 8;
    if (path == SP_CL_PATH_GEMM) {
        args a = args_of(c, act, K_GEMM);
        a_mem(&a, w->buf), a_int(&a, w->fmt), a_int(&a, w->n_in), a_int(&a, w->n_out);
        a_mem(&a, x), a_int(&a, n_tok), a_mem(&a, y), a_mem(&a, bias), a_mem(&a, res);
        size_t gws[2] = {(size_t)((w->n_out + 63) / 64) * 256, (size_t)((n_tok + 63) / 64)}, lws[2] = {256, 1};
        return launch(&a, 2, gws, lws);
    }
    int k = w->fmt == SP_CL_FMT_Q4X8 ? K_GEMV_Q4X8 : w->fmt == SP_CL_FMT_Q8X8 ? K_GEMV_Q8X8
          : w->fmt == SP_CL_FMT_Q4X8M ? K_GEMV_Q4X8M : K_GEMV_RAW;
    size_t maxwg = pow2_floor(v->max_wg[k]), L, gws0;
    args a = args_of(c, act, k);
    a_mem(&a, w->buf);
    if (packed) {
        /* seg work-items per row group, about 4 of its 32-byte chunks each; 128 per work-group */
        int64_t units = (w->n_in / 32) * (w->fmt == SP_CL_FMT_Q8X8 ? 8 : 4);
        L = maxwg < 128 ? maxwg : 128;
        size_t seg = 1;
        while ((int64_t)seg * 4 < units && seg < L) seg *= 2;
        size_t per_wg = L / seg;
        gws0 = (size_t)((groups + (int64_t)per_wg - 1) / (int64_t)per_wg) * L;
        a_int(&a, w->n_in / 32), a_int(&a, w->n_out);
        a_mem(&a, x), a_int(&a, n_tok), a_mem(&a, y), a_mem(&a, bias), a_mem(&a, res), a_int(&a, (int64_t)seg);
        a_local(&a, 4 * 8 * L * sizeof(float)); /* GEMV_TOK · 8 · L */
    } else {
        /* slices: a power of two, up to 32 per row, 8 rows per work-group */
        size_t S = 1;
        while ((int64_t)S < w->n_in && S < 32 && 16 * S <= maxwg) S *= 2;
        L = 8 * S;
        gws0 = (size_t)groups * L;
        a_int(&a, w->fmt), a_int(&a, w->n_in), a_int(&a, w->n_out);
        a_mem(&a, x), a_int(&a, n_tok), a_mem(&a, y), a_mem(&a, bias), a_mem(&a, res);
        a_local(&a, 4 * L * sizeof(float)); /* GEMV_TOK · L */
    }
    size_t gws[2] = {gws0, (size_t)((n_tok + 3) / 4)}, lws[2] = {L, 1};
    return launch(&a, 2, gws, lws);
}

#define LOCKED(c, act, expr)                                    \
    do {                                                        \
        pthread_mutex_lock(&(c)->mu);                           \
        bool ok_ = prepare_locked((c), (act)) && (expr);        \
        pthread_mutex_unlock(&(c)->mu);                         \
        return ok_;                                             \
    } while (0)

bool sp_cl_matmul(sp_cl *c, int act, const sp_cl_mat *w, cl_mem x, cl_mem y, int64_t n_tok, cl_mem bias,
                  cl_mem res, int path) {
    LOCKED(c, act, matmul_locked(c, act, w, x, y, n_tok, bias, res, path));
}

/* a power-of-two work-group size for a row of n values, at most 256 and what the kernel allows */
static size_t row_wg(const sp_cl *c, int act, int k, int64_t n) {
    size_t L = pow2_floor(c->var[act ? 1 : 0].max_wg[k]);
    if (L > 256) L = 256;
    while (L > 32 && (int64_t)L / 2 >= n) L /= 2;
    return L;
}

static bool rmsnorm_locked(sp_cl *c, int act, cl_mem x, cl_mem res, cl_mem h_out, cl_mem y, cl_mem w, int64_t n,
                           int64_t n_rows, float eps) {
    if (n_rows <= 0) return true;
    size_t L = row_wg(c, act, K_RMSNORM, n);
    args a = args_of(c, act, K_RMSNORM);
    a_mem(&a, x), a_mem(&a, res), a_mem(&a, h_out), a_mem(&a, y), a_mem(&a, w), a_int(&a, n), a_float(&a, eps);
    a_local(&a, L * sizeof(float));
    size_t gws = (size_t)n_rows * L;
    return launch(&a, 1, &gws, &L);
}

bool sp_cl_rmsnorm(sp_cl *c, int act, cl_mem x, cl_mem res, cl_mem h_out, cl_mem y, cl_mem w, int64_t n,
                   int64_t n_rows, float eps) {
    LOCKED(c, act, rmsnorm_locked(c, act, x, res, h_out, y, w, n, n_rows, eps));
}

static bool rope_locked(sp_cl *c, int act, cl_mem v, int64_t n_tok, int64_t tok_stride, int64_t n_heads,
                        int64_t head_dim, int64_t n_rot, cl_mem cs, bool neox) {
    if (n_tok <= 0 || n_rot < 2) return true;
    args a = args_of(c, act, K_ROPE);
    a_mem(&a, v), a_int(&a, n_heads), a_int(&a, head_dim), a_int(&a, n_rot), a_int(&a, tok_stride);
    a_mem(&a, cs), a_int(&a, neox);
    size_t gws[3] = {(size_t)(n_rot / 2), (size_t)n_heads, (size_t)n_tok};
    return launch(&a, 3, gws, NULL);
}

bool sp_cl_rope(sp_cl *c, int act, cl_mem v, int64_t n_tok, int64_t tok_stride, int64_t n_heads, int64_t head_dim,
                int64_t n_rot, cl_mem cs, bool neox) {
    LOCKED(c, act, rope_locked(c, act, v, n_tok, tok_stride, n_heads, head_dim, n_rot, cs, neox));
}

static bool swiglu_locked(sp_cl *c, int act, cl_mem out, cl_mem gate, cl_mem up, int64_t n) {
    if (n <= 0) return true;
    args a = args_of(c, act, K_SWIGLU);
    a_mem(&a, out), a_mem(&a, gate), a_mem(&a, up), a_int(&a, n);
    size_t gws = (size_t)n;
    return launch(&a, 1, &gws, NULL);
}

bool sp_cl_swiglu(sp_cl *c, int act, cl_mem out, cl_mem gate, cl_mem up, int64_t n) {
    LOCKED(c, act, swiglu_locked(c, act, out, gate, up, n));
}

static bool softmax_locked(sp_cl *c, int act, cl_mem x, int64_t n, int64_t n_rows) {
    if (n_rows <= 0 || n <= 0) return true;
    size_t L = row_wg(c, act, K_SOFTMAX, n);
    args a = args_of(c, act, K_SOFTMAX);
    a_mem(&a, x), a_int(&a, n), a_local(&a, L * sizeof(float));
    size_t gws = (size_t)n_rows * L;
    return launch(&a, 1, &gws, &L);
}

bool sp_cl_softmax(sp_cl *c, int act, cl_mem x, int64_t n, int64_t n_rows) {
    LOCKED(c, act, softmax_locked(c, act, x, n, n_rows));
}

static bool embed_locked(sp_cl *c, int act, const sp_cl_mat *w, cl_mem ids, int64_t n_tok, cl_mem out) {
    if (n_tok <= 0) return true;
    bool packed = w->fmt == SP_CL_FMT_Q4X8 || w->fmt == SP_CL_FMT_Q8X8 || w->fmt == SP_CL_FMT_Q4X8M;
    if (packed && w->n_in % 32) {
        snprintf(c->err, sizeof c->err, "embed: packed rows of %lld elements", (long long)w->n_in);
        return false;
    }
    args a = args_of(c, act, K_EMBED);
    a_mem(&a, w->buf), a_int(&a, w->fmt), a_int(&a, w->n_in), a_mem(&a, ids), a_mem(&a, out);
    size_t gws[2] = {(size_t)w->n_in, (size_t)n_tok};
    return launch(&a, 2, gws, NULL);
}

bool sp_cl_embed(sp_cl *c, int act, const sp_cl_mat *w, cl_mem ids, int64_t n_tok, cl_mem out) {
    LOCKED(c, act, embed_locked(c, act, w, ids, n_tok, out));
}

static bool attention_locked(sp_cl *c, int act, const sp_cl_attn *at) {
    if (at->n_q <= 0) return true;
    if (at->n_head_kv <= 0 || at->n_head % at->n_head_kv || at->hd <= 0 || at->blk <= 0 || at->max_kv <= 0) {
        snprintf(c->err, sizeof c->err, "attention: bad shape (heads %d / %d, head dim %d, block %d, max kv %d)",
                 at->n_head, at->n_head_kv, at->hd, at->blk, at->max_kv);
        return false;
    }
    variant *v = &c->var[act ? 1 : 0];
    int chunk = at->chunk > 0 ? at->chunk : 64, G = at->n_head / at->n_head_kv;
    size_t L = pow2_floor(v->max_wg[K_ATTN_SPLIT]);
    while (L > 1 && L > (size_t)chunk) L /= 2;
    if (L > 128) L = 128;
    size_t local = ((size_t)G * at->hd + (size_t)G * chunk + L) * sizeof(float);
    if (local > c->info.local_mem) {
        snprintf(c->err, sizeof c->err, "attention: %zu bytes of local memory needed, the device has %llu", local,
                 (unsigned long long)c->info.local_mem);
        return false;
    }
    int n_split = (at->max_kv + chunk - 1) / chunk;
    size_t part = (size_t)at->n_q * at->n_head * n_split * (at->hd + 2) * sizeof(float);
    if (part > c->part_bytes) {
        if (c->part) clReleaseMemObject(c->part);
        c->part = sp_cl_alloc(c, part, NULL);
        c->part_bytes = c->part ? part : 0;
        if (!c->part) return false;
    }
    args a = args_of(c, act, K_ATTN_SPLIT);
    a_mem(&a, at->q), a_int(&a, at->q_stride), a_mem(&a, at->k_pool), a_mem(&a, at->v_pool), a_mem(&a, at->tbl);
    a_int(&a, at->max_blocks), a_int(&a, at->blk), a_int(&a, at->k_off), a_int(&a, at->v_off), a_int(&a, at->pos_stride);
    a_mem(&a, at->n_kv), a_int(&a, at->n_head), a_int(&a, at->n_head_kv), a_int(&a, at->hd), a_float(&a, at->scale);
    a_int(&a, chunk), a_mem(&a, c->part);
    a_local(&a, (size_t)G * at->hd * sizeof(float)), a_local(&a, (size_t)G * chunk * sizeof(float));
    a_local(&a, L * sizeof(float));
    size_t gws[3] = {(size_t)n_split * L, (size_t)at->n_head_kv, (size_t)at->n_q}, lws[3] = {L, 1, 1};
    if (!launch(&a, 3, gws, lws)) return false;
    size_t Lm = pow2_floor(v->max_wg[K_ATTN_MERGE]);
    while (Lm > 32 && (int64_t)Lm / 2 >= at->hd) Lm /= 2;
    if (Lm > 256) Lm = 256;
    args m = args_of(c, act, K_ATTN_MERGE);
    a_mem(&m, c->part), a_int(&m, n_split), a_int(&m, at->hd), a_int(&m, at->n_head), a_mem(&m, at->out);
    a_int(&m, at->out_stride);
    size_t gm[2] = {(size_t)at->n_head * Lm, (size_t)at->n_q}, lm[2] = {Lm, 1};
    return launch(&m, 2, gm, lm);
}

bool sp_cl_attention(sp_cl *c, int act, const sp_cl_attn *a) {
    LOCKED(c, act, attention_locked(c, act, a));
}

#endif /* SP_HAVE_OPENCL */
