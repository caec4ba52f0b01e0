/* kernels/types.h — the weight formats sparrow knows: GGML type ids (as stored in GGUF), their
 * block sizes, the quant block structs, f16/bf16 conversion, and row (de)quantization to f32.
 * The scalar code here is the reference every fast kernel is checked against. */
#ifndef SP_KERNELS_TYPES_H
#define SP_KERNELS_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GGML type ids, as written in GGUF tensor infos. */
typedef enum {
    SP_TYPE_F32 = 0,
    SP_TYPE_F16 = 1,
    SP_TYPE_Q4_0 = 2,
    SP_TYPE_Q4_1 = 3,
    SP_TYPE_Q5_0 = 6,
    SP_TYPE_Q5_1 = 7,
    SP_TYPE_Q8_0 = 8,
    SP_TYPE_Q8_1 = 9,
    SP_TYPE_Q2_K = 10,
    SP_TYPE_Q3_K = 11,
    SP_TYPE_Q4_K = 12,
    SP_TYPE_Q5_K = 13,
    SP_TYPE_Q6_K = 14,
    SP_TYPE_Q8_K = 15,
    SP_TYPE_IQ2_XXS = 16,
    SP_TYPE_IQ2_XS = 17,
    SP_TYPE_IQ3_XXS = 18,
    SP_TYPE_IQ1_S = 19,
    SP_TYPE_IQ4_NL = 20,
    SP_TYPE_IQ3_S = 21,
    SP_TYPE_IQ2_S = 22,
    SP_TYPE_IQ4_XS = 23,
    SP_TYPE_I8 = 24,
    SP_TYPE_I16 = 25,
    SP_TYPE_I32 = 26,
    SP_TYPE_I64 = 27,
    SP_TYPE_F64 = 28,
    SP_TYPE_IQ1_M = 29,
    SP_TYPE_BF16 = 30,
    SP_TYPE_TQ1_0 = 34,
    SP_TYPE_TQ2_0 = 35,
    SP_TYPE_COUNT = 40
} sp_type;

typedef struct {
    const char *name;  /* "q4_0" */
    uint32_t blck;     /* elements per block */
    uint32_t size;     /* bytes per block */
    bool can_dequant;  /* sp_dequant_row supports it */
    bool can_quant;    /* sp_quant_row supports it */
} sp_type_info;

/* NULL for an id sparrow does not know (sizes unknown: such a file cannot be laid out). */
const sp_type_info *sp_type_get(uint32_t type);
/* Parse "q4_0", "f16", ... (case-insensitive); returns -1 if unknown. */
int sp_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or type unknown. */
size_t sp_type_row_bytes(uint32_t type, int64_t n);

float sp_f16_to_f32(uint16_t h);
uint16_t sp_f32_to_f16(float f); /* round to nearest even */
float sp_bf16_to_f32(uint16_t h);
uint16_t sp_f32_to_bf16(float f); /* round to nearest even */

/* Quant blocks (layouts identical to GGML's, so GGUF data is read in place). */
#define SP_QK4_0 32
typedef struct { uint16_t d; uint8_t qs[SP_QK4_0 / 2]; } sp_block_q4_0;
#define SP_QK4_1 32
typedef struct { uint16_t d, m; uint8_t qs[SP_QK4_1 / 2]; } sp_block_q4_1;
#define SP_QK5_0 32
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[SP_QK5_0 / 2]; } sp_block_q5_0;
#define SP_QK5_1 32
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[SP_QK5_1 / 2]; } sp_block_q5_1;
#define SP_QK8_0 32
typedef struct { uint16_t d; int8_t qs[SP_QK8_0]; } sp_block_q8_0;
#define SP_QK_K 256
#define SP_K_SCALE_SIZE 12
typedef struct { uint16_t d, dmin; uint8_t scales[SP_K_SCALE_SIZE]; uint8_t qs[SP_QK_K / 2]; } sp_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[SP_K_SCALE_SIZE]; uint8_t qh[SP_QK_K / 8]; uint8_t qs[SP_QK_K / 2]; } sp_block_q5_K;
typedef struct { uint8_t ql[SP_QK_K / 2]; uint8_t qh[SP_QK_K / 4]; int8_t scales[SP_QK_K / 16]; uint16_t d; } sp_block_q6_K;

/* Dequantize n elements (a multiple of the block size) of `src` into f32. Returns false when the
 * type is not supported. */
bool sp_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Quantize n f32 values into `dst` (sp_type_row_bytes(type, n) bytes). Returns false when the type
 * cannot be produced. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0 (and K-quants if present). */
bool sp_quant_row(uint32_t type, const float *src, void *dst, int64_t n);

#endif
