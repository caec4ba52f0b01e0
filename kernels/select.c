/* kernels/select.c — picks the kernel table at start-up from the CPU's features (x86-64: cpuid;
 * AArch64: the kernel's AT_HWCAP / AT_HWCAP2 bits), overridable by name (--kernels, or
 * SPARROW_KERNELS) so tests and benchmarks can force one. Built without ISA flags: it must run on any
 * CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/kernels.h"
#include "kernels/opencl.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* arm64 hwcap bits (Linux uapi asm/hwcap.h), for C libraries whose headers lack the newer ones */
#define SP_HWCAP_FP (1ul << 0)
#define SP_HWCAP_ASIMD (1ul << 1)
#define SP_HWCAP_ASIMDDP (1ul << 20)
#define SP_HWCAP2_I8MM (1ul << 13)
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
#endif

const sp_kernels *sp_kernels_avx2_table(void);          /* avx2.c: NULL when not built */
const sp_kernels *sp_kernels_neon_table(int level);     /* neon.c: NULL when not built */

/* AVX2 + FMA + F16C, and the OS saves the YMM state (OSXSAVE + XCR0 bits 1, 2). */
static bool cpu_has_avx2(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!fma || !osxsave || !avx || !f16c) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6u) != 6u) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return b & (1u << 5);
#else
    return false;
#endif
}

/* The highest NEON level the CPU runs (SP_NEON_*), -1 for none. i8mm counts only with dotprod (every
 * CPU with I8MM has it; the i8mm table uses SDOT for single tokens). */
static int cpu_neon_level(void) {
#if defined(__aarch64__) && defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if ((hw & (SP_HWCAP_FP | SP_HWCAP_ASIMD)) != (SP_HWCAP_FP | SP_HWCAP_ASIMD)) return -1;
    if (!(hw & SP_HWCAP_ASIMDDP)) return SP_NEON_BASE;
    return hw2 & SP_HWCAP2_I8MM ? SP_NEON_I8MM : SP_NEON_DOTPROD;
#elif defined(__aarch64__)
    return SP_NEON_BASE; /* Advanced SIMD is part of every AArch64 CPU; extensions not probed here */
#else
    return -1;
#endif
}

const sp_kernels *sp_kernels_avx2(void) {
    return cpu_has_avx2() ? sp_kernels_avx2_table() : NULL;
}

const sp_kernels *sp_kernels_neon_at(int level) {
    if (level < SP_NEON_BASE || level > SP_NEON_I8MM || level > cpu_neon_level()) return NULL;
    return sp_kernels_neon_table(level);
}

const sp_kernels *sp_kernels_neon(void) {
    for (int l = SP_NEON_I8MM; l >= SP_NEON_BASE; l--)
        if (sp_kernels_neon_at(l)) return sp_kernels_neon_at(l);
    return NULL;
}

static const char *const neon_names[] = {"neon", "neon-dotprod", "neon-i8mm"}; /* by SP_NEON_* level */

#ifdef SP_HAVE_OPENCL
#define OPENCL_NAME ", opencl"
#else
#define OPENCL_NAME ""
#endif

const char *sp_kernels_names(void) {
#if defined(__x86_64__)
    return "ref, avx2" OPENCL_NAME;
#elif defined(__aarch64__)
    return "ref, neon, neon-dotprod, neon-i8mm" OPENCL_NAME;
#else
    return "ref" OPENCL_NAME;
#endif
}

const sp_kernels *sp_kernels_select(const char *force) {
    if (!force || !*force) force = getenv("SPARROW_KERNELS");
    if (force && *force) {
        if (!strcasecmp(force, "ref")) return sp_kernels_ref();
        if (!strcasecmp(force, "avx2")) return sp_kernels_avx2();
        if (!strcasecmp(force, "opencl")) { /* only by name: never "auto" */
            const sp_kernels *k = sp_kernels_opencl();
            if (!k) fprintf(stderr, "sparrow: opencl: %s\n", sp_kernels_opencl_error());
            return k;
        }
        for (int l = SP_NEON_BASE; l <= SP_NEON_I8MM; l++)
            if (!strcasecmp(force, neon_names[l])) return sp_kernels_neon_at(l);
        if (strcasecmp(force, "auto")) return NULL;
    }
    const sp_kernels *k = sp_kernels_avx2();
    if (!k) k = sp_kernels_neon();
    return k ? k : sp_kernels_ref();
}
