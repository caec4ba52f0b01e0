/* kernels/cl/ops.cl — the element-wise and row-wise operations of the forward pass, written as the
 * CPU reference (kernels/ref.c) computes them, with f32 arithmetic. */

/* One work-group per row of n values: h = x (+ res), stored to h_out when given; y = h / sqrt(mean(h²)
 * + eps) · w (w may be NULL). y may be x. */
kernel void rmsnorm(global const ACT *x, global const ACT *res, global ACT *h_out, global ACT *y,
                    global const float *w, int n, float eps, local float *scratch) {
    int lid = get_local_id(0), L = get_local_size(0);
    size_t base = (size_t)get_group_id(0) * n;
    float ss = 0.0f;
    for (int i = lid; i < n; i += L) {
        float v = LD(x, base + i);
        if (res) v += LD(res, base + i);
        ss = fma(v, v, ss);
    }
    ss = wg_sum(ss, scratch);
    float scale = 1.0f / sqrt(ss / (float)n + eps);
    for (int i = lid; i < n; i += L) {
        float v = LD(x, base + i);
        if (res) {
            v += LD(res, base + i);
            if (h_out) ST(v, h_out, base + i);
        }
        float o = v * scale;
        if (w) o *= w[i];
        ST(o, y, base + i);
    }
}

/* Rotate the first n_rot dims of each head (global ids: pair i < n_rot/2, head, token) with the
 * precomputed angles cs[t][n_rot] (n_rot/2 cosines, then n_rot/2 sines: sp_rope_angles). neox: pairs
 * (i, i + n_rot/2); else (2i, 2i+1). Tokens tok_stride elements apart, heads head_dim apart. */
kernel void rope(global ACT *v, int n_heads, int head_dim, int n_rot, int tok_stride, global const float *cs,
                 int neox) {
    int i = get_global_id(0), h = get_global_id(1), t = get_global_id(2), half_rot = n_rot / 2;
    if (i >= half_rot || h >= n_heads) return;
    float c = cs[(size_t)t * n_rot + i], s = cs[(size_t)t * n_rot + half_rot + i];
    int a = neox ? i : 2 * i, b = neox ? i + half_rot : 2 * i + 1;
    size_t base = (size_t)t * tok_stride + (size_t)h * head_dim;
    float x0 = LD(v, base + a), x1 = LD(v, base + b);
    ST(x0 * c - x1 * s, v, base + a);
    ST(x0 * s + x1 * c, v, base + b);
}

/* out[i] = silu(gate[i]) · up[i]; out may be gate. */
kernel void swiglu(global ACT *out, global const ACT *gate, global const ACT *up, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = LD(gate, i);
    ST(g / (1.0f + exp(-g)) * LD(up, i), out, i);
}

/* One work-group per row of n values, in place, numerically stable. */
kernel void softmax(global ACT *x, int n, local float *scratch) {
    int lid = get_local_id(0), L = get_local_size(0);
    size_t base = (size_t)get_group_id(0) * n;
    float mx = -INFINITY;
    for (int i = lid; i < n; i += L) mx = fmax(mx, LD(x, base + i));
    mx = wg_max(mx, scratch);
    float sum = 0.0f;
    for (int i = lid; i < n; i += L) sum += exp(LD(x, base + i) - mx);
    sum = wg_sum(sum, scratch);
    float inv = 1.0f / sum;
    for (int i = lid; i < n; i += L) ST(exp(LD(x, base + i) - mx) * inv, x, base + i);
}

/* out[t][k] = row ids[t] of the weight matrix w (any format; packed: nb tiles per row group),
 * global ids (k < n_in, t). Shares the output head's buffer when the embeddings are tied. */
kernel void embed(global const uchar *w, int fmt, int n_in, global const int *ids, global ACT *out) {
    int k = get_global_id(0), t = get_global_id(1);
    if (k >= n_in) return;
    int row = ids[t];
    float v;
    if (fmt >= FMT_F32) {
        v = ld_raw(w, fmt, (size_t)row * n_in + k);
    } else {
        int nb = n_in / 32, r = row & 7, i = k & 31, tb = tile_bytes(fmt);
        global const uchar *tile = w + ((size_t)(row >> 3) * nb + (k >> 5)) * tb;
        float d = vload_half(r, (global const half *)tile);
        if (fmt == FMT_Q8X8) {
            v = d * (float)((global const char *)tile)[16 + 32 * (i >> 2) + 4 * r + (i & 3)];
        } else {
            int hi = i >= 16, j = i & 15;
            uchar byte = tile[(fmt == FMT_Q4X8M ? 32 : 16) + 32 * (j >> 2) + 4 * r + (j & 3)];
            float q = (float)(hi ? byte >> 4 : byte & 15);
            v = fmt == FMT_Q4X8 ? (q - 8.0f) * d : fma(q, d, vload_half(8 + r, (global const half *)tile));
        }
    }
    ST(v, out, (size_t)t * n_in + k);
}
