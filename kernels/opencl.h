/* kernels/opencl.h — the OpenCL backend's host side (kernels/opencl.c): devices, programs built
 * from the embedded kernels/cl/ (*.cl) sources (with a program-binary cache on disk) and the device
 * operations, on cl_mem buffers. OpenCL 1.2 through the ICD loader (-lOpenCL). The "opencl" kernel
 * table (kernels/opencl_table.c) is built on top of this; tests and benchmarks call it directly.
 *
 * Device choice (sp_cl_choose): "auto" (the first GPU, else accelerator, else CPU device, across
 * platforms in ICD order), "gpu", "cpu", or "P:D" (platform P's device D, as `sparrow devices`
 * numbers them); NULL or "" reads $SPARROW_CL_DEVICE, else auto.
 *
 * Activations and KV come in two storage variants (enum sp_cl_act): f32, or f16 (half storage read
 * with vload_half, computed in f32: available on every device; native half loads when the device
 * has cl_khr_fp16). Accumulation is always f32. Each variant is one program (all kernels), built on
 * first use with -D options from the device's capabilities.
 *
 * Thread safety: an sp_cl may be used from several threads; each call takes its lock. */
#ifndef SP_KERNELS_OPENCL_H
#define SP_KERNELS_OPENCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef SP_HAVE_OPENCL
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#endif

typedef struct {
    int platform, device; /* indices, as "P:D" names them */
    char platform_name[128], platform_version[128];
    char name[128], vendor[128], driver[64], version[128], c_version[64];
    bool gpu, cpu, accelerator;
    unsigned compute_units, max_clock_mhz;
    uint64_t global_mem, local_mem, max_alloc;
    size_t max_wg;
    unsigned c_major, c_minor; /* OpenCL C version */
    bool fp16;      /* cl_khr_fp16 */
    bool fp64;      /* cl_khr_fp64 */
    bool subgroups; /* cl_khr_subgroups */
    bool unified;   /* CL_DEVICE_HOST_UNIFIED_MEMORY */
    bool available, compiler;
} sp_cl_devinfo;

/* Every device of every platform into out (up to cap); returns how many exist (0: none, with err
 * saying why), -1 on an OpenCL error (err). */
int sp_cl_devices(sp_cl_devinfo *out, int cap, char *err, size_t errlen);
/* Index into d[0..n) that spec picks (see above), -1 (+ err) when none matches. */
int sp_cl_choose(const sp_cl_devinfo *d, int n, const char *spec, char *err, size_t errlen);
/* "GPU", "CPU", "accelerator" or "other". */
const char *sp_cl_devtype(const sp_cl_devinfo *d);

/* SHA-256 (the binary cache's key); out gets 32 bytes. */
void sp_cl_sha256(const void *data, size_t len, uint8_t out[32]);

enum { SP_CL_ACT_F32 = 0, SP_CL_ACT_F16 = 1 };
/* Weight formats: the packed layouts of kernels/pack.h (same numbers as SP_PACK_*) and row-major
 * f32 / f16 / bf16. */
enum { SP_CL_FMT_Q4X8 = 1, SP_CL_FMT_Q8X8 = 2, SP_CL_FMT_Q4X8M = 3, SP_CL_FMT_F32 = 16, SP_CL_FMT_F16 = 17,
       SP_CL_FMT_BF16 = 18 };
/* What a program build found in the cache. */
enum { SP_CL_CACHE_OFF = 0, SP_CL_CACHE_MISS = 1, SP_CL_CACHE_HIT = 2, SP_CL_CACHE_STALE = 3 };
/* sp_cl_matmul paths */
enum { SP_CL_PATH_AUTO = 0, SP_CL_PATH_GEMV = 1, SP_CL_PATH_GEMM = 2 };
/* sp_cl_open flags */
enum { SP_CL_PROFILE = 1 };

#ifdef SP_HAVE_OPENCL

typedef struct sp_cl sp_cl;

/* Open the device spec picks (see above), with a program-binary cache in cache_dir/cl/ (NULL: no
 * cache). NULL + err when there is no such device or it cannot be used. */
sp_cl *sp_cl_open(const char *spec, const char *cache_dir, unsigned flags, char *err, size_t errlen);
void sp_cl_close(sp_cl *c);
const sp_cl_devinfo *sp_cl_info(const sp_cl *c);
cl_context sp_cl_context(const sp_cl *c);
cl_command_queue sp_cl_queue(const sp_cl *c);
/* The last error of a failed call on c (one line). */
const char *sp_cl_error(const sp_cl *c);

/* Build a program from source with options, through the binary cache: the key is the SHA-256 of
 * (source, options, device name, driver version, platform version); the binary lives in
 * cache_dir/cl/<key>.clbin, written to a temporary file and renamed. *state gets SP_CL_CACHE_*.
 * NULL + sp_cl_error on failure (the build log included). */
cl_program sp_cl_build(sp_cl *c, const char *src, size_t len, const char *options, int *state);
/* Path of the cache file for (src, options) on this device (for tests); false with no cache. */
bool sp_cl_cache_path(sp_cl *c, const char *src, size_t len, const char *options, char *buf, size_t cap);
/* The concatenated kernel source and the build options of variant act (SP_CL_ACT_*). */
const char *sp_cl_source(size_t *len);
bool sp_cl_options(const sp_cl *c, int act, char *buf, size_t cap);
/* Build (or load) variant act's program now; state as sp_cl_build. false + sp_cl_error on failure. */
bool sp_cl_prepare(sp_cl *c, int act, int *state);

/* Buffers. sp_cl_alloc: bytes of device memory, initialized from init when not NULL. With
 * host_ptr (unified-memory devices): a buffer over that host memory (CL_MEM_USE_HOST_PTR), no copy. */
cl_mem sp_cl_alloc(sp_cl *c, size_t bytes, const void *init);
cl_mem sp_cl_wrap(sp_cl *c, void *host_ptr, size_t bytes, bool read_only);
bool sp_cl_write(sp_cl *c, cl_mem m, size_t off, const void *src, size_t bytes);
bool sp_cl_read(sp_cl *c, cl_mem m, size_t off, void *dst, size_t bytes);
bool sp_cl_finish(sp_cl *c);
/* With SP_CL_PROFILE: the device time of the last kernel enqueued (waits for it). */
bool sp_cl_last_ns(sp_cl *c, double *ns);

/* A weight matrix on the device: n_out rows of n_in; packed formats need n_in % 32 == 0 and hold
 * ceil(n_out / 8) · n_in / 32 tiles. */
typedef struct {
    uint32_t fmt;
    int64_t n_in, n_out;
    cl_mem buf;
} sp_cl_mat;

/* Operations: enqueued on c's in-order queue (a blocking sp_cl_read of a result waits for them).
 * Activation buffers hold act's storage type (float or half). NULL for an optional buffer. */
/* y[t][o] = Σ_i W[o][i] x[t][i] (+ bias[o], f32) (+ res[t][o]) for t < n_tok; y may be res. */
bool sp_cl_matmul(sp_cl *c, int act, const sp_cl_mat *w, cl_mem x, cl_mem y, int64_t n_tok, cl_mem bias,
                  cl_mem res, int path);
/* Per row of n (n_rows rows): h = x (+ res) (written to h_out when given and res is), y = h /
 * sqrt(mean(h²) + eps) · w (w f32, may be NULL). */
bool sp_cl_rmsnorm(sp_cl *c, int act, cl_mem x, cl_mem res, cl_mem h_out, cl_mem y, cl_mem w, int64_t n,
                   int64_t n_rows, float eps);
/* RoPE of n_tok tokens (tok_stride elements apart) of n_heads heads, angles cs[n_tok][n_rot] (f32,
 * sp_rope_angles' layout). */
bool sp_cl_rope(sp_cl *c, int act, cl_mem v, int64_t n_tok, int64_t tok_stride, int64_t n_heads,
                int64_t head_dim, int64_t n_rot, cl_mem cs, bool neox);
bool sp_cl_swiglu(sp_cl *c, int act, cl_mem out, cl_mem gate, cl_mem up, int64_t n);
bool sp_cl_softmax(sp_cl *c, int act, cl_mem x, int64_t n, int64_t n_rows);
/* out[t] = row ids[t] (int32) of w, for t < n_tok. */
bool sp_cl_embed(sp_cl *c, int act, const sp_cl_mat *w, cl_mem ids, int64_t n_tok, cl_mem out);

/* Attention of n_q queries (n_head heads of hd each, q_stride elements apart) over a paged KV cache
 * (kernels/cl/attention.cl has the layout): out[q] (out_stride apart) = softmax(scale · q·K) V over
 * positions [0, n_kv[q]); max_kv bounds every n_kv. chunk: positions per split (0: 64). */
typedef struct {
    cl_mem q, k_pool, v_pool, tbl, n_kv, out;
    int64_t q_stride, out_stride;
    int32_t max_blocks, blk;
    int64_t k_off, v_off, pos_stride;
    int32_t n_q, n_head, n_head_kv, hd, max_kv, chunk;
    float scale;
} sp_cl_attn;
bool sp_cl_attention(sp_cl *c, int act, const sp_cl_attn *a);

#endif /* SP_HAVE_OPENCL */

/* The "opencl" kernel table's own controls (kernels/opencl_table.c). The directory for its program
 * cache (default: $SPARROW_CACHE_DIR, else $XDG_CACHE_HOME/sparrow, else ~/.cache/sparrow; "" or
 * SPARROW_CL_CACHE=off: none); call before the table is first used. */
void sp_kernels_opencl_set_cache_dir(const char *dir);
/* Why sp_kernels_opencl() returned NULL (empty when it did not). */
const char *sp_kernels_opencl_error(void);
/* The table's device, or NULL before its first use or without one (for reports). */
const sp_cl_devinfo *sp_kernels_opencl_device(void);

#endif
