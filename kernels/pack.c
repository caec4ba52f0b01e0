/* kernels/pack.c — repacking weight matrices into the row-interleaved tiles of pack.h (done once at
 * load), reading them back (tests), and the scalar int8 activation quantizer that defines what the
 * vector quantizers compute. */
#include "kernels/pack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/types.h"

/* Q4_K/Q5_K: 6-bit scale and min of sub-block s (0..7) (GGML's get_scale_min_k4). */
static void k4_scale_min(const uint8_t sc[SP_K_SCALE_SIZE], int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 0x0F) | (sc[s - 4] >> 6) << 4;
        *min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
    }
}

void sp_quant_act_ref(const float *x, sp_block_q8a *out, int64_t n) {
    for (int64_t b = 0; b < n / SP_PACK_BLK; b++) {
        const float *v = x + b * SP_PACK_BLK;
        float amax = 0.0f;
        for (int i = 0; i < SP_PACK_BLK; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < SP_PACK_BLK; i++) {
            int32_t q = (int32_t)nearbyintf(v[i] * id); /* default rounding: to nearest even */
            out[b].qs[i] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].sum = sum;
        out[b].sum8 = 8 * sum;
        out[b].dsum = d * (float)sum;
    }
}

/* Block b of row `src` in a 4-bit form: quants 0..15 and value d q + m (Q4_0: m = -8 d). */
static void q4_block(uint32_t type, const uint8_t *src, int64_t b, uint8_t q[SP_PACK_BLK], uint16_t *d, uint16_t *m) {
    if (type == SP_TYPE_Q4_0) {
        sp_block_q4_0 blk;
        memcpy(&blk, src + (size_t)b * sizeof blk, sizeof blk);
        for (int j = 0; j < 16; j++) { q[j] = blk.qs[j] & 0x0F; q[j + 16] = blk.qs[j] >> 4; }
        *d = blk.d;
        *m = sp_f32_to_f16(-8.0f * sp_f16_to_f32(blk.d));
    } else if (type == SP_TYPE_Q4_1) {
        sp_block_q4_1 blk;
        memcpy(&blk, src + (size_t)b * sizeof blk, sizeof blk);
        for (int j = 0; j < 16; j++) { q[j] = blk.qs[j] & 0x0F; q[j + 16] = blk.qs[j] >> 4; }
        *d = blk.d;
        *m = blk.m;
    } else { /* Q4_K: sub-block s = b % 8 of super-block b / 8 */
        sp_block_q4_K blk;
        memcpy(&blk, src + (size_t)(b / 8) * sizeof blk, sizeof blk);
        int s = (int)(b % 8), sc, mn;
        k4_scale_min(blk.scales, s, &sc, &mn);
        *d = sp_f32_to_f16(sp_f16_to_f32(blk.d) * (float)sc);
        *m = sp_f32_to_f16(-sp_f16_to_f32(blk.dmin) * (float)mn);
        const uint8_t *qs = blk.qs + 32 * (s / 2);
        for (int j = 0; j < 32; j++) q[j] = s % 2 ? qs[j] >> 4 : qs[j] & 0x0F;
    }
}

/* Interleave row r's 32 nibbles into a q4x8 / q4x8m quant array (see pack.h). */
static void put_q4(uint8_t *qs, int r, const uint8_t q[SP_PACK_BLK]) {
    for (int v = 0; v < 4; v++)
        for (int j = 0; j < 4; j++) qs[32 * v + 4 * r + j] = (uint8_t)(q[4 * v + j] | q[4 * (v + 4) + j] << 4);
}

/* 4-bit rows r0..r0+7 (rows past n_out are zero) -> one group of q4x8 (Q4_0) or q4x8m tiles. */
static void pack_group_q4(const sp_mat *w, int64_t r0, void *tiles) {
    int64_t nb = sp_pack_tiles(w);
    bool with_min = w->type != SP_TYPE_Q4_0;
    for (int64_t b = 0; b < nb; b++) {
        sp_tile_q4x8 *t4 = (sp_tile_q4x8 *)tiles + b;
        sp_tile_q4x8m *tm = (sp_tile_q4x8m *)tiles + b;
        for (int r = 0; r < SP_PACK_ROWS; r++) {
            uint8_t q[SP_PACK_BLK];
            uint16_t d = 0, m = 0;
            if (r0 + r < w->n_out) q4_block(w->type, (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes, b, q, &d, &m);
            else memset(q, 8, sizeof q); /* padding row: scale 0 */
            if (with_min) { tm->d[r] = d; tm->m[r] = m; put_q4(tm->qs, r, q); }
            else { t4->d[r] = d; put_q4(t4->qs, r, q); }
        }
    }
}

/* Quantize one 32-element f32 block to int8 with an f16 scale (the scale as rounded is used). */
static void requant_block(const float *x, uint16_t *dh, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < SP_PACK_BLK; i++) amax = fmaxf(amax, fabsf(x[i]));
    *dh = sp_f32_to_f16(amax / 127.0f);
    float d = sp_f16_to_f32(*dh), id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < SP_PACK_BLK; i++) {
        float v = roundf(x[i] * id);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

/* Rows r0..r0+7 of any readable format -> one group of q8x8 tiles. Q8_0 is copied exactly (a -128
 * quant, which GGML never writes, is clamped to -127 for the sign trick of the int8 dot). */
static bool pack_group_q8(const sp_mat *w, int64_t r0, sp_tile_q8x8 *tiles, float *row) {
    int64_t nb = sp_pack_tiles(w);
    memset(tiles, 0, (size_t)nb * sizeof *tiles);
    for (int r = 0; r < SP_PACK_ROWS && r0 + r < w->n_out; r++) {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes;
        bool direct = w->type == SP_TYPE_Q8_0 || w->type == SP_TYPE_Q5_0;
        if (!direct && !sp_dequant_row(w->type, src, row, w->n_in)) return false;
        for (int64_t b = 0; b < nb; b++) {
            int8_t q[SP_PACK_BLK];
            uint16_t d;
            if (w->type == SP_TYPE_Q8_0) {
                sp_block_q8_0 blk;
                memcpy(&blk, src + (size_t)b * sizeof blk, sizeof blk);
                d = blk.d;
                for (int i = 0; i < SP_PACK_BLK; i++) q[i] = blk.qs[i] == -128 ? -127 : blk.qs[i];
            } else if (w->type == SP_TYPE_Q5_0) { /* x = d (q - 16), q 5 bits: exact in int8 */
                sp_block_q5_0 blk;
                memcpy(&blk, src + (size_t)b * sizeof blk, sizeof blk);
                uint32_t qh;
                memcpy(&qh, blk.qh, sizeof qh);
                d = blk.d;
                for (int j = 0; j < 16; j++) {
                    q[j] = (int8_t)(((blk.qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16);
                    q[j + 16] = (int8_t)(((blk.qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
                }
            } else {
                requant_block(row + b * SP_PACK_BLK, &d, q);
            }
            tiles[b].d[r] = d;
            for (int g = 0; g < 8; g++)
                for (int j = 0; j < 4; j++) tiles[b].qs[32 * g + 4 * r + j] = q[4 * g + j];
        }
    }
    return true;
}

/* Packed matrices are streamed whole for every decoded token: big ones (the output head) go on
 * 2 MiB-aligned transparent huge pages where the kernel allows (fewer TLB misses; the rounding up
 * wastes < 2 MiB of 16+), the others on cache lines. */
static void *alloc_packed(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 8 * huge) return aligned_alloc(64, (bytes + 63) / 64 * 64);
    size_t len = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, len);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, len, MADV_HUGEPAGE);
#endif
    return p;
}

static bool packable_q8(uint32_t type) {
    switch (type) {
    case SP_TYPE_Q8_0: case SP_TYPE_Q5_0: case SP_TYPE_Q5_1: case SP_TYPE_Q5_K: case SP_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

static size_t tile_size(uint32_t fmt) {
    return fmt == SP_PACK_Q4X8 ? sizeof(sp_tile_q4x8) : fmt == SP_PACK_Q4X8M ? sizeof(sp_tile_q4x8m) : sizeof(sp_tile_q8x8);
}

size_t sp_pack_plan(const sp_mat *w, uint32_t *fmt) {
    *fmt = SP_PACK_NONE;
    if (w->n_in % SP_PACK_BLK || w->n_in <= 0 || w->n_out <= 0) return 0;
    bool q4 = w->type == SP_TYPE_Q4_0 || w->type == SP_TYPE_Q4_1 || w->type == SP_TYPE_Q4_K;
    if (!q4 && !packable_q8(w->type)) return 0;
    *fmt = !q4 ? SP_PACK_Q8X8 : w->type == SP_TYPE_Q4_0 ? SP_PACK_Q4X8 : SP_PACK_Q4X8M;
    return (size_t)sp_pack_groups(w) * (size_t)sp_pack_tiles(w) * tile_size(*fmt);
}

bool sp_pack_mat(sp_mat *w) {
    uint32_t fmt;
    if (w->packed) return false;
    size_t bytes = sp_pack_plan(w, &fmt);
    if (!bytes) return false;
    bool q4 = fmt != SP_PACK_Q8X8;
    int64_t ng = sp_pack_groups(w), nb = sp_pack_tiles(w);
    size_t tile = tile_size(fmt);
    uint8_t *dst = alloc_packed(bytes);
    float *row = malloc((size_t)w->n_in * sizeof *row);
    bool ok = dst && row;
    for (int64_t g = 0; ok && g < ng; g++) {
        uint8_t *tiles = dst + (size_t)g * (size_t)nb * tile;
        if (q4) pack_group_q4(w, g * SP_PACK_ROWS, tiles);
        else ok = pack_group_q8(w, g * SP_PACK_ROWS, (sp_tile_q8x8 *)tiles, row);
    }
    free(row);
    if (!ok) {
        free(dst);
        return false;
    }
    w->packed = dst;
    w->pack_fmt = fmt;
    w->packed_bytes = bytes;
    return true;
}

void sp_mat_unpack(sp_mat *w) {
    if (!w->packed_mapped) free(w->packed);
    w->packed_mapped = false;
    w->packed = NULL;
    w->pack_fmt = SP_PACK_NONE;
    w->packed_bytes = 0;
}

bool sp_pack_row_f32(const sp_mat *w, int64_t row, float *out) {
    if (!w->packed || row < 0 || row >= w->n_out) return false;
    int64_t nb = sp_pack_tiles(w), g = row / SP_PACK_ROWS;
    int r = (int)(row % SP_PACK_ROWS);
    for (int64_t b = 0; b < nb; b++) {
        float *o = out + b * SP_PACK_BLK;
        if (w->pack_fmt == SP_PACK_Q4X8 || w->pack_fmt == SP_PACK_Q4X8M) {
            const uint8_t *qs;
            float d, m;
            if (w->pack_fmt == SP_PACK_Q4X8) {
                const sp_tile_q4x8 *t = (const sp_tile_q4x8 *)w->packed + g * nb + b;
                qs = t->qs, d = sp_f16_to_f32(t->d[r]), m = -8.0f * d;
            } else {
                const sp_tile_q4x8m *t = (const sp_tile_q4x8m *)w->packed + g * nb + b;
                qs = t->qs, d = sp_f16_to_f32(t->d[r]), m = sp_f16_to_f32(t->m[r]);
            }
            for (int v = 0; v < 4; v++)
                for (int j = 0; j < 4; j++) {
                    uint8_t byte = qs[32 * v + 4 * r + j];
                    o[4 * v + j] = d * (float)(byte & 0x0F) + m;
                    o[4 * (v + 4) + j] = d * (float)(byte >> 4) + m;
                }
        } else {
            const sp_tile_q8x8 *t = (const sp_tile_q8x8 *)w->packed + g * nb + b;
            float d = sp_f16_to_f32(t->d[r]);
            for (int gi = 0; gi < 8; gi++)
                for (int j = 0; j < 4; j++) o[4 * gi + j] = d * (float)t->qs[32 * gi + 4 * r + j];
        }
    }
    return true;
}
