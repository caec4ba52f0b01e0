/* kernels/cl/common.cl — shared by every sparrow OpenCL kernel (the host concatenates common.cl,
 * matmul.cl, ops.cl and attention.cl into one program). OpenCL C 1.2; accumulation is always f32.
 * Build options (-D, chosen by kernels/opencl.c from the device's capabilities):
 *   ACT_F16=1        activations and KV stored as half (f32 otherwise); loaded and stored with the
 *                    core vload_half / vstore_half (round to nearest even), computed in f32
 *   USE_FP16=1       the device has cl_khr_fp16: half values are read and written as native half
 *                    (same values, same rounding as vload_half / vstore_half)
 *   USE_SUBGROUPS=1  the device has cl_khr_subgroups: work-group reductions through
 *                    sub_group_reduce_* (opt-in; compile-checked, not run, in CI)
 * Every kernel takes NULL for an optional buffer argument (bias, residual, weights). */
#ifndef ACT_F16
#define ACT_F16 0
#endif
#ifndef USE_FP16
#define USE_FP16 0
#endif
#ifndef USE_SUBGROUPS
#define USE_SUBGROUPS 0
#endif
#if USE_FP16
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#endif
#if USE_SUBGROUPS
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif
/* no silent a*b+c contraction: the arithmetic is the one written (fma where wanted), as on the CPU */
#pragma OPENCL FP_CONTRACT OFF

#if ACT_F16
#define ACT half
#if USE_FP16
#define LD(p, i) ((float)(p)[i])
#define ST(v, p, i) ((p)[i] = (half)(v))
#define LD4(p, i) convert_float4(vload4((i), (p)))
#else
#define LD(p, i) vload_half((i), (p))
#define ST(v, p, i) vstore_half((v), (i), (p))
#define LD4(p, i) vload_half4((i), (p))
#endif
#else
#define ACT float
#define LD(p, i) ((p)[i])
#define ST(v, p, i) ((p)[i] = (v))
#define LD4(p, i) vload4((i), (p))
#endif

/* weight formats (kernels/opencl.h SP_CL_FMT_*; the packed ones are kernels/pack.h's layouts) */
#define FMT_Q4X8 1
#define FMT_Q8X8 2
#define FMT_Q4X8M 3
#define FMT_F32 16
#define FMT_F16 17
#define FMT_BF16 18

/* Sum / max over a 1-D work-group whose size is a power of two; scratch holds one float per
 * work-item. Every work-item gets the result; all must call it. */
inline float wg_sum(float v, local float *scratch) {
#if USE_SUBGROUPS
    float s = sub_group_reduce_add(v);
    if (get_sub_group_local_id() == 0) scratch[get_sub_group_id()] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    float r = 0.0f;
    for (uint i = 0; i < get_num_sub_groups(); i++) r += scratch[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#else
    int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = get_local_size(0) / 2; h > 0; h >>= 1) {
        if (lid < h) scratch[lid] += scratch[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#endif
}

inline float wg_max(float v, local float *scratch) {
#if USE_SUBGROUPS
    float s = sub_group_reduce_max(v);
    if (get_sub_group_local_id() == 0) scratch[get_sub_group_id()] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    float r = -INFINITY;
    for (uint i = 0; i < get_num_sub_groups(); i++) r = fmax(r, scratch[i]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#else
    int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = get_local_size(0) / 2; h > 0; h >>= 1) {
        if (lid < h) scratch[lid] = fmax(scratch[lid], scratch[lid + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#endif
}

/* element i of a row-major f32 / f16 / bf16 weight matrix */
inline float ld_raw(global const uchar *w, int fmt, size_t i) {
    if (fmt == FMT_F32) return ((global const float *)w)[i];
    if (fmt == FMT_F16) return vload_half(i, (global const half *)w);
    return as_float((uint)((global const ushort *)w)[i] << 16);
}

inline uint ld_u32(global const uchar *p) { return *(global const uint *)p; }

inline int tile_bytes(int fmt) { return fmt == FMT_Q4X8 ? 144 : fmt == FMT_Q4X8M ? 160 : 272; }
