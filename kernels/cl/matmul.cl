/* kernels/cl/matmul.cl — y[t][o] = Σ_i W[o][i] x[t][i] (+ bias[o]) (+ res[t][o]) for the packed
 * layouts of kernels/pack.h, uploaded as they are (row groups of 8 rows; per 32-element block one
 * tile of 8 f16 scales [+ 8 f16 mins] and the 8×32 quants interleaved), and for row-major f32 / f16 /
 * bf16 weights. Weights are dequantized in registers to f32 exactly as sp_pack_row_f32 defines them
 * (q4x8: d (q - 8); q4x8m: d q + m; q8x8: d q); activations stay f32 (or half storage, ACT_F16);
 * products accumulate in f32 with fma.
 *   gemv_*: few tokens (decode), GEMV_TOK tokens per work-group: work-items split a row group's
 *           32-byte quant chunks (each feeds all 8 rows from one activation load), partial sums added
 *           by a tree in local memory (details below); gemv_raw: row-major weights.
 *   gemm:   many tokens (prefill). 256 work-items compute a 64-row × 64-token tile: per 32-element
 *           block the weights are dequantized into local memory once and the activations staged
 *           beside them; each work-item then accumulates 4 rows × 4 tokens. */
#define GEMV_TOK 4
#define GM 64
#define GN 64
#define GK 32

inline float epilogue(float v, int row, int t, int n_out, global const float *bias, global const ACT *res) {
    if (bias) v += bias[row];
    if (res) v += LD(res, (size_t)t * n_out + row);
    return v;
}

/* Packed formats, few tokens. A work-group holds get_local_size(0) / seg row groups with seg
 * work-items each (seg a power of two); work-item t of a row group takes the 32-byte quant chunks t,
 * t+seg, … of the group's tiles. A chunk holds the same 4 (q8x8) or 4 + 4 (q4x8, q4x8m: k and k+16)
 * consecutive elements of all 8 rows, so neighbouring work-items read neighbouring 32 bytes and one
 * activation load feeds 8 rows. Per row: s = Σ q·x (q - 8 for q4x8, exact in f32), then acc += d·s
 * (q4x8m: + m·Σx). The seg partial sums of each row are added by a tree in local memory (red:
 * GEMV_TOK · 8 · get_local_size(0) floats). */
#define Q4_ROW(R, QC, DC, MC)                                                                         \
    {                                                                                                  \
        uint qq = q.QC;                                                                                \
        float4 lo = convert_float4((uint4)(qq, qq >> 8, qq >> 16, qq >> 24) & 15u);                  \
        float4 hi = convert_float4((uint4)(qq >> 4, qq >> 12, qq >> 20, qq >> 28) & 15u);            \
        if (fmt == FMT_Q4X8) lo -= 8.0f, hi -= 8.0f;                                                   \
        float s = lo.s0 * xa.s0;                                                                       \
        s = fma(lo.s1, xa.s1, s), s = fma(lo.s2, xa.s2, s), s = fma(lo.s3, xa.s3, s);                  \
        s = fma(hi.s0, xh.s0, s), s = fma(hi.s1, xh.s1, s), s = fma(hi.s2, xh.s2, s);                  \
        s = fma(hi.s3, xh.s3, s);                                                                      \
        acc[tt][R] = fma(d.DC, s, acc[tt][R]);                                                         \
        if (fmt == FMT_Q4X8M) acc[tt][R] = fma(m.MC, sx, acc[tt][R]);                                  \
    }
#define Q8_ROW(R, QC, DC)                                                                             \
    {                                                                                                  \
        float4 c = convert_float4(as_char4(q.QC));                                                     \
        float s = c.s0 * xa.s0;                                                                        \
        s = fma(c.s1, xa.s1, s), s = fma(c.s2, xa.s2, s), s = fma(c.s3, xa.s3, s);                     \
        acc[tt][R] = fma(d.DC, s, acc[tt][R]);                                                         \
    }

inline void gemv_packed(const int fmt, global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok,
                        global ACT *y, global const float *bias, global const ACT *res, int seg, local float *red) {
    int lid = get_local_id(0), L = get_local_size(0), t = lid & (seg - 1);
    int g = get_group_id(0) * (L / seg) + lid / seg, ngroups = (n_out + 7) / 8;
    int t0 = get_group_id(1) * GEMV_TOK, ntt = min(GEMV_TOK, n_tok - t0);
    int n_in = nb * 32, tb = tile_bytes(fmt), cs = fmt == FMT_Q8X8 ? 3 : 2, qoff = fmt == FMT_Q4X8M ? 32 : 16;
    float acc[GEMV_TOK][8];
    for (int tt = 0; tt < GEMV_TOK; tt++)
        for (int r = 0; r < 8; r++) acc[tt][r] = 0.0f;
    if (g < ngroups) {
        global const uchar *gw = w + (size_t)g * nb * tb;
        for (int u = t; u < (nb << cs); u += seg) {
            int b = u >> cs, v = u & ((1 << cs) - 1);
            global const uchar *tile = gw + (size_t)b * tb;
            float8 d = vload_half8(0, (global const half *)tile);
            float8 m = fmt == FMT_Q4X8M ? vload_half8(1, (global const half *)tile) : (float8)(0.0f);
            uint8 q = vload8(0, (global const uint *)(tile + qoff + 32 * v));
            for (int tt = 0; tt < ntt; tt++) {
                global const ACT *xb = x + (size_t)(t0 + tt) * n_in + b * 32;
                float4 xa = LD4(xb, v);
                if (fmt == FMT_Q8X8) {
                    Q8_ROW(0, s0, s0) Q8_ROW(1, s1, s1) Q8_ROW(2, s2, s2) Q8_ROW(3, s3, s3)
                    Q8_ROW(4, s4, s4) Q8_ROW(5, s5, s5) Q8_ROW(6, s6, s6) Q8_ROW(7, s7, s7)
                } else {
                    float4 xh = LD4(xb, v + 4);
                    float sx = fmt == FMT_Q4X8M ? (xa.s0 + xa.s1 + xa.s2 + xa.s3) + (xh.s0 + xh.s1 + xh.s2 + xh.s3) : 0.0f;
                    Q4_ROW(0, s0, s0, s0) Q4_ROW(1, s1, s1, s1) Q4_ROW(2, s2, s2, s2) Q4_ROW(3, s3, s3, s3)
                    Q4_ROW(4, s4, s4, s4) Q4_ROW(5, s5, s5, s5) Q4_ROW(6, s6, s6, s6) Q4_ROW(7, s7, s7, s7)
                }
            }
        }
    }
    for (int tt = 0; tt < ntt; tt++)
        for (int r = 0; r < 8; r++) red[(tt * 8 + r) * L + lid] = acc[tt][r];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = seg / 2; h > 0; h >>= 1) {
        if (t < h)
            for (int i = 0; i < ntt * 8; i++) red[i * L + lid] += red[i * L + lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (g < ngroups) /* work-item t writes rows t, t + seg, … of the group */
        for (int r = t; r < 8; r += seg) {
            int row = g * 8 + r;
            if (row >= n_out) break;
            for (int tt = 0; tt < ntt; tt++)
                ST(epilogue(red[(tt * 8 + r) * L + lid - t], row, t0 + tt, n_out, bias, res), y,
                   (size_t)(t0 + tt) * n_out + row);
        }
}

kernel void gemv_q4x8(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                      global const float *bias, global const ACT *res, int seg, local float *red) {
    gemv_packed(FMT_Q4X8, w, nb, n_out, x, n_tok, y, bias, res, seg, red);
}

kernel void gemv_q4x8m(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                       global const float *bias, global const ACT *res, int seg, local float *red) {
    gemv_packed(FMT_Q4X8M, w, nb, n_out, x, n_tok, y, bias, res, seg, red);
}

kernel void gemv_q8x8(global const uchar *w, int nb, int n_out, global const ACT *x, int n_tok, global ACT *y,
                      global const float *bias, global const ACT *res, int seg, local float *red) {
    gemv_packed(FMT_Q8X8, w, nb, n_out, x, n_tok, y, bias, res, seg, red);
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
