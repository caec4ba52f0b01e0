/* kernels/select.c — picks the kernel table at start-up: the CPU's features (cpuid), overridable
 * by name (--kernels, or SPARROW_KERNELS) so tests and benchmarks can force one. Built without ISA
 * flags: it must run on any CPU. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

const sp_kernels *sp_kernels_avx2_table(void); /* avx2.c: NULL when not built */

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

const sp_kernels *sp_kernels_avx2(void) {
    return cpu_has_avx2() ? sp_kernels_avx2_table() : NULL;
}

const char *sp_kernels_names(void) { return "ref, avx2"; }

const sp_kernels *sp_kernels_select(const char *force) {
    if (!force || !*force) force = getenv("SPARROW_KERNELS");
    if (force && *force) {
        if (!strcasecmp(force, "ref")) return sp_kernels_ref();
        if (!strcasecmp(force, "avx2")) return sp_kernels_avx2();
        if (strcasecmp(force, "auto")) return NULL;
    }
    const sp_kernels *k = sp_kernels_avx2();
    return k ? k : sp_kernels_ref();
}
