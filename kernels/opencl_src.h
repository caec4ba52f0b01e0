/* kernels/opencl_src.h — the OpenCL C sources of kernels/cl/, embedded in the binary at build time
 * (cmake/embed.cmake generates the table). */
#ifndef SP_KERNELS_OPENCL_SRC_H
#define SP_KERNELS_OPENCL_SRC_H

#include <stddef.h>

typedef struct {
    const char *path; /* "/common.cl", ... */
    const unsigned char *data;
    size_t len;
} sp_cl_srcfile;

extern const sp_cl_srcfile sp_cl_srcfiles[]; /* ends with a NULL path */

#endif
