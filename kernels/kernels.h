/* kernels/kernels.h — the compute operations the engine calls, behind one dispatch table.
 * sp_kernels_ref() is the scalar f32 reference: weights dequantized row by row, f32 activations and
 * accumulation. Fast per-ISA tables (issue 5) fill the same slots and are tested against it.
 * kernels/ knows nothing of models or files: a weight matrix is just (type, shape, bytes). */
#ifndef SP_KERNELS_H
#define SP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A weight matrix of n_out rows, each n_in elements of `type`, rows row_bytes apart. */
typedef struct {
    uint32_t type;
    int64_t n_in;
    int64_t n_out;
    size_t row_bytes;
    const void *data;
} sp_mat;

typedef struct sp_kernels {
    const char *name;
    /* y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tok; x is [n_tok][n_in], y is [n_tok][n_out]. */
    void (*matmul)(const sp_mat *w, const float *x, float *y, int64_t n_tok);
    /* y = x / sqrt(mean(x^2) + eps) * w (w may be NULL: no scale). y may alias x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    /* Rotate the first n_rot dims of each of n_heads vectors (head_dim apart) by position pos.
     * neox: pairs (i, i + n_rot/2); else adjacent pairs (2i, 2i+1). freq_factors (n_rot/2) or NULL. */
    void (*rope)(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos,
                 float theta_base, bool neox, const float *freq_factors);
    /* In place, numerically stable. */
    void (*softmax)(float *x, int64_t n);
    /* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    /* dot product of two f32 vectors */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
} sp_kernels;

const sp_kernels *sp_kernels_ref(void);
/* Copy row `row` of w into out as f32 (embedding lookup). false if the type cannot be read. */
bool sp_mat_row_f32(const sp_mat *w, int64_t row, float *out);

#endif
