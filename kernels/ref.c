/* kernels/ref.c — the scalar f32 reference kernels (sp_kernels_ref). Plain loops, the math as
 * written in the papers; every fast kernel is measured against these. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/types.h"

bool sp_mat_row_f32(const sp_mat *w, int64_t row, float *out) {
    if (row < 0 || row >= w->n_out) return false;
    const uint8_t *src = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    return sp_dequant_row(w->type, src, out, w->n_in);
}

static float ref_dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void ref_axpy(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* Dequantize one weight row at a time and reuse it for every token of the batch. */
static void ref_matmul(const sp_mat *w, const float *x, float *y, int64_t n_tok, sp_pool *pool) {
    (void)pool; /* the reference stays single-threaded and simple */
    float *row = malloc((size_t)w->n_in * sizeof *row);
    if (!row) abort();
    for (int64_t o = 0; o < w->n_out; o++) {
        if (!sp_mat_row_f32(w, o, row)) abort();
        for (int64_t t = 0; t < n_tok; t++)
            y[t * w->n_out + o] = ref_dot(row, x + t * w->n_in, w->n_in);
    }
    free(row);
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void ref_rope(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos,
                     float theta_base, bool neox, const float *freq_factors) {
    int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        double freq = pow((double)theta_base, -2.0 * (double)i / (double)n_rot);
        if (freq_factors) freq /= freq_factors[i];
        double ang = (double)pos * freq;
        float c = (float)cos(ang), s = (float)sin(ang);
        int64_t a = neox ? i : 2 * i;
        int64_t b = neox ? i + half : 2 * i + 1;
        for (int64_t h = 0; h < n_heads; h++) {
            float *x = v + h * head_dim;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

void sp_rope_angles(float *cs, int64_t n_rot, int64_t pos, float theta_base, const float *freq_factors) {
    int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        double freq = pow((double)theta_base, -2.0 * (double)i / (double)n_rot);
        if (freq_factors) freq /= freq_factors[i];
        double ang = (double)pos * freq;
        cs[i] = (float)cos(ang);
        cs[half + i] = (float)sin(ang);
    }
}

static void ref_rope_cs(float *v, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs, bool neox) {
    int64_t half = n_rot / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x = v + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            float c = cs[i], s = cs[half + i];
            int64_t a = neox ? i : 2 * i;
            int64_t b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

static void ref_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void ref_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void ref_attend(float *out, const float *q, const float *k, const float *v, int64_t n_kv, int64_t hd,
                       int64_t stride, float scale, float *scores) {
    for (int64_t p = 0; p < n_kv; p++) scores[p] = ref_dot(q, k + p * stride, hd) * scale;
    ref_softmax(scores, n_kv);
    for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
    for (int64_t p = 0; p < n_kv; p++) ref_axpy(out, scores[p], v + p * stride, hd);
}

static void ref_attend_paged(float *out, const float *q, const float *const *kb, const float *const *vb, int64_t blk,
                             int64_t n_kv, int64_t hd, int64_t stride, float scale, float *scores) {
    for (int64_t p = 0; p < n_kv; p++) scores[p] = ref_dot(q, kb[p / blk] + (p % blk) * stride, hd) * scale;
    ref_softmax(scores, n_kv);
    for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
    for (int64_t p = 0; p < n_kv; p++) ref_axpy(out, scores[p], vb[p / blk] + (p % blk) * stride, hd);
}

static const sp_kernels ref_table = {
    .name = "ref",
    .matmul = ref_matmul,
    .rmsnorm = ref_rmsnorm,
    .rope = ref_rope,
    .rope_cs = ref_rope_cs,
    .softmax = ref_softmax,
    .swiglu = ref_swiglu,
    .dot = ref_dot,
    .axpy = ref_axpy,
    .attend = ref_attend,
    .attend_paged = ref_attend_paged,
};

const sp_kernels *sp_kernels_ref(void) { return &ref_table; }
