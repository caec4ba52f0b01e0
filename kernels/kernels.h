/* kernels/kernels.h — the compute operations the engine calls, behind one dispatch table.
 * sp_kernels_ref() is the scalar f32 reference: weights dequantized row by row, f32 activations and
 * accumulation. Fast per-ISA tables (sp_kernels_select) fill the same slots and are tested against
 * it: they may repack a weight matrix once at load (sp_kernels.pack) into their own layout and
 * quantize activations to int8 on the fly. kernels/ knows nothing of models or files: a weight
 * matrix is just (type, shape, bytes), plus the optional packed copy a table made of it. */
#ifndef SP_KERNELS_H
#define SP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/pool.h"

/* A weight matrix of n_out rows, each n_in elements of `type`, rows row_bytes apart. */
typedef struct {
    uint32_t type;
    int64_t n_in;
    int64_t n_out;
    size_t row_bytes;
    const void *data;
    /* Optional: the same weights re-laid-out by a fast table's pack() (owned; sp_mat_unpack frees).
     * pack_fmt names the layout (SP_PACK_*, kernels/pack.h); 0 = none, the kernels read `data`. */
    void *packed;
    uint32_t pack_fmt;
    size_t packed_bytes;
    bool packed_mapped; /* packed points into a mapped cache file (storage/wcache): not freed here */
} sp_mat;

typedef struct sp_kernels {
    const char *name;
    /* y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tok; x is [n_tok][n_in], y is [n_tok][n_out].
     * Rows are split over pool's threads (pool may be NULL: the calling thread alone). */
    void (*matmul)(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool);
    /* y[i] = the matmul of w[i] with x, for i < n (n <= 4): matrices sharing their input (q/k/v,
     * gate/up) in one pass over the threads, the activations quantized once. Same results as n
     * matmul calls. NULL slot: the engine calls matmul n times. */
    void (*matmul_multi)(const sp_mat *const *w, float *const *y, int n, const float *x, int64_t n_tok, sp_pool *pool);
    /* Re-lay-out w for this table's matmul (sets w->packed). false: keep reading w->data (a
     * correct fallback). NULL slot: the table never packs. */
    bool (*pack)(sp_mat *w);
    /* y = x / sqrt(mean(x^2) + eps) * w (w may be NULL: no scale). y may alias x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    /* Rotate the first n_rot dims of each of n_heads vectors (head_dim apart) by position pos.
     * neox: pairs (i, i + n_rot/2); else adjacent pairs (2i, 2i+1). freq_factors (n_rot/2) or NULL. */
    void (*rope)(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos,
                 float theta_base, bool neox, const float *freq_factors);
    /* rope with the angles precomputed by sp_rope_angles (cs: n_rot/2 cosines, then n_rot/2 sines),
     * so a forward pass computes them once per position, not once per layer. Same results as rope. */
    void (*rope_cs)(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs, bool neox);
    /* In place, numerically stable. */
    void (*softmax)(float *x, int64_t n);
    /* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    /* dot product of two f32 vectors */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    /* One query head over n_kv cached positions: s[p] = scale · q·k_p, softmax(s), out = Σ s[p] v_p.
     * k_p = k + p·stride and v_p = v + p·stride (hd floats each); scores has room for n_kv floats. */
    void (*attend)(float *out, const float *q, const float *k, const float *v, int64_t n_kv, int64_t hd,
                   int64_t stride, float scale, float *scores);
    /* attend over a paged cache: position p is kb[p / blk] + (p % blk) · stride (vb likewise).
     * Same results as attend on the same values. NULL slot: the engine gathers rows and calls attend. */
    void (*attend_paged)(float *out, const float *q, const float *const *kb, const float *const *vb, int64_t blk,
                         int64_t n_kv, int64_t hd, int64_t stride, float scale, float *scores);
} sp_kernels;

const sp_kernels *sp_kernels_ref(void);
/* cos and sin of position pos for each of the n_rot/2 rotation frequencies, computed exactly as
 * the reference rope does: cs[i] = cos, cs[n_rot/2 + i] = sin. */
void sp_rope_angles(float *cs, int64_t n_rot, int64_t pos, float theta_base, const float *freq_factors);
/* AVX2+FMA+F16C table, or NULL when this build or CPU lacks it. */
const sp_kernels *sp_kernels_avx2(void);
/* AArch64 NEON tables (kernels/neon.c), or NULL when this build or CPU lacks them. Levels:
 * SP_NEON_BASE "neon" (ARMv8.0 Advanced SIMD), SP_NEON_DOTPROD "neon-dotprod" (+ SDOT),
 * SP_NEON_I8MM "neon-i8mm" (+ SDOT and SMMLA). sp_kernels_neon(): the highest level the CPU has. */
enum { SP_NEON_BASE = 0, SP_NEON_DOTPROD = 1, SP_NEON_I8MM = 2 };
const sp_kernels *sp_kernels_neon_at(int level);
const sp_kernels *sp_kernels_neon(void);
/* The OpenCL table (kernels/opencl_table.c): matmul on the OpenCL device $SPARROW_CL_DEVICE picks, the
 * other slots from the fastest CPU table. NULL (sp_kernels_opencl_error in kernels/opencl.h says
 * why) when this build has no OpenCL or no usable device. Never chosen by "auto". */
const sp_kernels *sp_kernels_opencl(void);
/* The table to use: `force` ("ref", "avx2", "neon", "neon-dotprod", "neon-i8mm", "opencl") when given and
 * non-empty, else the environment variable SPARROW_KERNELS when set, else the fastest the CPU
 * supports ("auto" names that choice too). NULL if `force` (or the variable) names a table that is
 * unknown or unsupported here. */
const sp_kernels *sp_kernels_select(const char *force);
/* Names of the tables this build knows, comma-separated (for --help and errors). */
const char *sp_kernels_names(void);
/* Free w's packed copy (if any); w reads its original data again. */
void sp_mat_unpack(sp_mat *w);
/* Copy row `row` of w into out as f32 (embedding lookup). false if the type cannot be read. */
bool sp_mat_row_f32(const sp_mat *w, int64_t row, float *out);

#endif
