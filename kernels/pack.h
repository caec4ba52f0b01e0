/* kernels/pack.h — the packed weight layouts the fast matmuls read, and the int8 activation blocks
 * they multiply with. Portable C (pack.c): any table may use these layouts; the ISA files only
 * compute on them.
 *
 * A packed matrix is a sequence of row groups of SP_PACK_ROWS (8) output rows (the last padded with
 * zero rows); a group holds, for each 32-element block of the reduction, one tile: 8 f16 scales and
 * the 8 × 32 quants interleaved so that each 32-bit lane of a 256-bit vector carries 4 consecutive
 * quants of one row. One broadcast of 4 activation bytes then feeds all 8 rows at once:
 *   q8x8: qs[32 g + 4 r + j] = q[r][4 g + j]              (int8, g = 0..7, r = 0..7, j = 0..3)
 *   q4x8: qs[32 v + 4 r + j] = q[r][4 v + j] | q[r][4 (v + 4) + j] << 4    (v = 0..3, q in 0..15)
 *   q4x8m: as q4x8, plus a per-row min m[r]
 * Value of a quant: q8x8 d[r] q; q4x8 d[r] (q - 8) (Q4_0's own encoding); q4x8m d[r] q + m[r]
 * (Q4_1's, and Q4_K's per 32-element sub-block with d = d·scale, m = -dmin·min). So Q4_0, Q4_1, Q8_0
 * and Q5_0 repack losslessly (Q4_K up to rounding d·scale to f16); Q5_1, Q5_K and Q6_K are
 * dequantized and requantized to q8x8 (int8 per 32 elements, max error half a step). */
#ifndef SP_KERNELS_PACK_H
#define SP_KERNELS_PACK_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define SP_PACK_ROWS 8
#define SP_PACK_BLK 32

enum { SP_PACK_NONE = 0, SP_PACK_Q4X8 = 1, SP_PACK_Q8X8 = 2, SP_PACK_Q4X8M = 3 };

typedef struct { uint16_t d[SP_PACK_ROWS]; uint8_t qs[SP_PACK_ROWS * SP_PACK_BLK / 2]; } sp_tile_q4x8;
typedef struct { uint16_t d[SP_PACK_ROWS]; uint16_t m[SP_PACK_ROWS]; uint8_t qs[SP_PACK_ROWS * SP_PACK_BLK / 2]; } sp_tile_q4x8m;
typedef struct { uint16_t d[SP_PACK_ROWS]; int8_t qs[SP_PACK_ROWS * SP_PACK_BLK]; } sp_tile_q8x8;

/* One 32-element block of an activation row quantized to int8: x ≈ d * qs, sum = Σ qs; sum8 = 8 sum
 * and dsum = d sum are the offset terms of the 4-bit kernels, ready to broadcast from memory. */
typedef struct { float d; int32_t sum; int32_t sum8; float dsum; int8_t qs[SP_PACK_BLK]; } sp_block_q8a;

/* Quantize n f32 values (n a multiple of 32) into n/32 blocks: d = max|x| / 127, qs = round(x / d)
 * (nearest, ties to even, as the vector conversion rounds). The scalar definition. */
void sp_quant_act_ref(const float *x, sp_block_q8a *out, int64_t n);

/* Pack w (Q4_0 -> q4x8; Q4_1, Q4_K -> q4x8m; Q8_0, Q5_0, Q5_1, Q5_K, Q6_K -> q8x8) into w->packed. false (w
 * unchanged) for a format or shape without a packed form: the caller keeps the f32 fallback. */
bool sp_pack_mat(sp_mat *w);
/* The layout and size sp_pack_mat would give w (0 bytes: no packed form), without packing. */
size_t sp_pack_plan(const sp_mat *w, uint32_t *fmt);
/* Row groups of a packed matrix and tiles per group. */
static inline int64_t sp_pack_groups(const sp_mat *w) { return (w->n_out + SP_PACK_ROWS - 1) / SP_PACK_ROWS; }
static inline int64_t sp_pack_tiles(const sp_mat *w) { return w->n_in / SP_PACK_BLK; }
/* The weights a packed matrix holds, row `row` as f32 (for tests). */
bool sp_pack_row_f32(const sp_mat *w, int64_t row, float *out);

#endif
