/* kernels/cl/matmul.cl — y[t][o] = Σ_i W[o][i] x[t][i] (+ bias[o]) (+ res[t][o]) for the packed
 * layouts of kernels/pack.h, uploaded as they are (row groups of 8 rows; per 32-element block one
 * tile of 8 f16 scales [+ 8 f16 mins] and the 8×32 quants interleaved), and for row-major f32 / f16 /
 * bf16 weights. Weights are dequantized in registers to f32 exactly as sp_pack_row_f32 defines them
 * (q4x8: d (q - 8); q4x8m: d q + m; q8x8: d q); activations stay f32 (or half storage, ACT_F16);
 * products accumulate in f32 with fma.
 *   gemv_*: few tokens (decode). A work-group owns one row group (8 rows) and GEMV_TOK tokens; its
 *           8·S work-items are (row r = lid % 8, slice s = lid / 8): slice s takes blocks s, s+S, …
 *           so the 8 row threads of a tile read its 8 scales and its quants side by side; the S
 *           partial sums of a row are added by a tree in local memory (S a power of two).
 *   gemm:   many tokens (prefill). 256 work-items compute a 64-row × 64-token tile: per 32-element
 *           block the weights are dequantized into local memory once and the activations staged
 *           beside them; each work-item then accumulates 4 rows × 4 tokens. */
#define GEMV_TOK 4
#define GM 64
#define GN 64
#define GK 32

/* Row r of one packed tile as 32 f32 weights: w[i] holds elements 4i .. 4i+3. */
inline void deq_row(global const uchar *tile, int fmt, int r, float4 w[8]) {
    global const half *dh = (global const half *)tile;
    float d = vload_half(r, dh);
    if (fmt == FMT_Q8X8) {
        global const uchar *qs = tile + 16;
        for (int g = 0; g < 8; g++) w[g] = convert_float4(as_char4(ld_u32(qs + 32 * g + 4 * r))) * d;
        return;
    }
    float m = fmt == FMT_Q4X8M ? vload_half(8 + r, dh) : 0.0f;
    global const uchar *qs = tile + (fmt == FMT_Q4X8M ? 32 : 16);
    for (int v = 0; v < 4; v++) {
        uint q = ld_u32(qs + 32 * v + 4 * r);
        float4 lo = convert_float4((uint4)(q, q >> 8, q >> 16, q >> 24) & 15u);
        float4 hi = convert_float4((uint4)(q >> 4, q >> 12, q >> 20, q >> 28) & 15u);
        if (fmt == FMT_Q4X8) {
            w[v] = (lo - 8.0f) * d;
            w[v + 4] = (hi - 8.0f) * d;
        } else {
            w[v] = fma(lo, (float4)(d), (float4)(m));
            w[v + 4] = fma(hi, (float4)(d), (float4)(m));
        }
    }
}

inline float dot32(const float4 w[8], global const ACT *xb, float acc) {
    for (int i = 0; i < 8; i++) {
        float4 x = LD4(xb, i);
        acc = fma(w[i].s0, x.s0, acc);
        acc = fma(w[i].s1, x.s1, acc);
        acc = fma(w[i].s2, x.s2, acc);
        acc = fma(w[i].s3, x.s3, acc);
    }
    return acc;
}

inline float epilogue(float v, int row, int t, int n_out, global const float *bias, global const ACT *res) {
    if (bias) v += bias[row];
    if (res) v += LD(res, (size_t)t * n_out + row);
    return v;
}

/* red: GEMV_TOK · get_local_size(0) floats. acc[tt] of work-item (r, s) -> row r of token tt. */
inline void gemv_store(float acc[GEMV_TOK], int r, int s, int S, int row, int t0, int n_tok, int n_out,
                       global ACT *y, global const float *bias, global const ACT *res, local float *red) {
    int L = 8 * S, lid = r + 8 * s;
    for (int tt = 0; tt < GEMV_TOK; tt++) red[tt * L + lid] = acc[tt];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = S / 2; h > 0; h >>= 1) {
        if (s < h)
            for (int tt = 0; tt < GEMV_TOK; tt++) red[tt * L + lid] += red[tt * L + lid + 8 * h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (s == 0 && row < n_out)
        for (int tt = 0; tt < GEMV_TOK && t0 + tt < n_tok; tt++)
            ST(epilogue(red[tt * L + r], row, t0 + tt, n_out, bias, res), y, (size_t)(t0 + tt) * n_out + row);
}

inline void gemv_packed(const int fmt, global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok,
                        global ACT *y, global const float *bias, global const ACT *res, local float *red) {
    int lid = get_local_id(0), r = lid & 7, s = lid >> 3, S = get_local_size(0) >> 3;
    int g = get_group_id(0), t0 = get_group_id(1) * GEMV_TOK, n_in = nb * 32, tb = tile_bytes(fmt);
    float acc[GEMV_TOK];
    for (int tt = 0; tt < GEMV_TOK; tt++) acc[tt] = 0.0f;
    global const uchar *gw = w + (size_t)g * nb * tb;
    for (int b = s; b < nb; b += S) {
        float4 wv[8];
        deq_row(gw + (size_t)b * tb, fmt, r, wv);
        for (int tt = 0; tt < GEMV_TOK; tt++)
            if (t0 + tt < n_tok) acc[tt] = dot32(wv, x + (size_t)(t0 + tt) * n_in + b * 32, acc[tt]);
    }
    gemv_store(acc, r, s, S, g * 8 + r, t0, n_tok, n_out, y, bias, res, red);
}

kernel void gemv_q4x8(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                      global const float *bias, global const ACT *res, local float *red) {
    gemv_packed(FMT_Q4X8, w, nb, n_out, x, n_tok, y, bias, res, red);
}

kernel void gemv_q4x8m(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                       global const float *bias, global const ACT *res, local float *red) {
    gemv_packed(FMT_Q4X8M, w, nb, n_out, x, n_tok, y, bias, res, red);
}

kernel void gemv_q8x8(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                      global const float *bias, global const ACT *res, local float *red) {
    gemv_packed(FMT_Q8X8, w, nb, n_out, x, n_tok, y, bias, res, red);
}

/* Row-major f32 / f16 / bf16 weights: work-item (slice s = lid % S, row r = lid / S) takes elements
 * s, s+S, … of row r (neighbouring work-items read neighbouring elements). */
kernel void gemv_raw(global const uchar *w, int fmt, int n_in, int n_out, global const ACT *x, int n_tok,
                     global ACT *y, global const float *bias, global const ACT *res, local float *red) {
    int lid = get_local_id(0), S = get_local_size(0) >> 3, s = lid % S, r = lid / S;
    int row = get_group_id(0) * 8 + r, t0 = get_group_id(1) * GEMV_TOK, L = 8 * S;
    float acc[GEMV_TOK];
    for (int tt = 0; tt < GEMV_TOK; tt++) acc[tt] = 0.0f;
    if (row < n_out) {
        size_t base = (size_t)row * n_in;
        for (int k = s; k < n_in; k += S) {
            float wk = ld_raw(w, fmt, base + k);
            for (int tt = 0; tt < GEMV_TOK; tt++)
                if (t0 + tt < n_tok) acc[tt] = fma(wk, LD(x, (size_t)(t0 + tt) * n_in + k), acc[tt]);
        }
    }
    for (int tt = 0; tt < GEMV_TOK; tt++) red[tt * L + lid] = acc[tt];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = S / 2; h > 0; h >>= 1) {
        if (s < h)
            for (int tt = 0; tt < GEMV_TOK; tt++) red[tt * L + lid] += red[tt * L + lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (s == 0 && row < n_out)
        for (int tt = 0; tt < GEMV_TOK && t0 + tt < n_tok; tt++)
            ST(epilogue(red[tt * L + r * S], row, t0 + tt, n_out, bias, res), y, (size_t)(t0 + tt) * n_out + row);
}

/* Tiled GEMM, any format (fmt), 256 work-items: tx = lid % 16 picks rows tx + 16 i, ty = lid / 16
 * tokens ty + 16 j (i, j < 4), so neighbouring work-items write neighbouring outputs. */
kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void gemm(global const uchar *w, int fmt, int n_in, int n_out, global const ACT *x, int n_tok, global ACT *y,
          global const float *bias, global const ACT *res) {
    local float Wl[GK][GM + 1];
    local float Xl[GK][GN + 1];
    int lid = get_local_id(0), tx = lid & 15, ty = lid >> 4;
    int row0 = get_group_id(0) * GM, tok0 = get_group_id(1) * GN;
    int nkb = (n_in + GK - 1) / GK, ngroups = (n_out + 7) / 8;
    bool packed = fmt < FMT_F32;
    int tb = packed ? tile_bytes(fmt) : 0;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int kb = 0; kb < nkb; kb++) {
        if (packed) { /* work-item (group gg, row r, quarter v): 8 of row r's 32 weights */
            int gg = lid >> 5, r = (lid >> 2) & 7, v = lid & 3, grp = row0 / 8 + gg;
            float vals[8];
            if (grp < ngroups) {
                global const uchar *tile = w + ((size_t)grp * nkb + kb) * tb;
                float d = vload_half(r, (global const half *)tile);
                if (fmt == FMT_Q8X8) {
                    float4 a = convert_float4(as_char4(ld_u32(tile + 16 + 32 * (2 * v) + 4 * r))) * d;
                    float4 b = convert_float4(as_char4(ld_u32(tile + 16 + 32 * (2 * v + 1) + 4 * r))) * d;
                    vstore4(a, 0, vals);
                    vstore4(b, 1, vals);
                } else {
                    float m = fmt == FMT_Q4X8M ? vload_half(8 + r, (global const half *)tile) : 0.0f;
                    uint q = ld_u32(tile + (fmt == FMT_Q4X8M ? 32 : 16) + 32 * v + 4 * r);
                    float4 lo = convert_float4((uint4)(q, q >> 8, q >> 16, q >> 24) & 15u);
                    float4 hi = convert_float4((uint4)(q >> 4, q >> 12, q >> 20, q >> 28) & 15u);
                    if (fmt == FMT_Q4X8) {
                        lo = (lo - 8.0f) * d;
                        hi = (hi - 8.0f) * d;
                    } else {
                        lo = fma(lo, (float4)(d), (float4)(m));
                        hi = fma(hi, (float4)(d), (float4)(m));
                    }
                    vstore4(lo, 0, vals);
                    vstore4(hi, 1, vals);
                }
            } else {
                for (int j = 0; j < 8; j++) vals[j] = 0.0f;
            }
            int rr = gg * 8 + r;
            if (fmt == FMT_Q8X8) { /* elements 8v .. 8v+7 */
                for (int j = 0; j < 8; j++) Wl[8 * v + j][rr] = vals[j];
            } else { /* elements 4v .. 4v+3 and 16+4v .. 16+4v+3 */
                for (int j = 0; j < 4; j++) {
                    Wl[4 * v + j][rr] = vals[j];
                    Wl[16 + 4 * v + j][rr] = vals[4 + j];
                }
            }
        } else {
            int rr = lid >> 2, k0 = (lid & 3) * 8, row = row0 + rr;
            for (int j = 0; j < 8; j++) {
                int k = kb * GK + k0 + j;
                Wl[k0 + j][rr] = row < n_out && k < n_in ? ld_raw(w, fmt, (size_t)row * n_in + k) : 0.0f;
            }
        }
        {
            int tt = lid >> 2, k0 = (lid & 3) * 8, t = tok0 + tt;
            for (int j = 0; j < 8; j++) {
                int k = kb * GK + k0 + j;
                Xl[k0 + j][tt] = t < n_tok && k < n_in ? LD(x, (size_t)t * n_in + k) : 0.0f;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < GK; k++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = Wl[k][tx + 16 * i];
            for (int j = 0; j < 4; j++) b[j] = Xl[k][ty + 16 * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int j = 0; j < 4; j++) {
        int t = tok0 + ty + 16 * j;
        if (t >= n_tok) break;
        for (int i = 0; i < 4; i++) {
            int row = row0 + tx + 16 * i;
            if (row < n_out) ST(epilogue(acc[i][j], row, t, n_out, bias, res), y, (size_t)t * n_out + row);
        }
    }
}
