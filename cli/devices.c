/* cli/devices.c — `sparrow devices [--check]`: the OpenCL platforms and devices this machine has,
 * their capabilities, and the one the opencl kernel table would use (SPARROW_CL_DEVICE, else auto).
 * --check also builds the kernels there (through the program cache in the cache directory) and runs
 * one small matmul against the CPU reference. No OpenCL platform (or a build without OpenCL) is
 * reported on one clear line, exit 0: having no GPU is not an error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "kernels/kernels.h"
#include "kernels/opencl.h"
#include "kernels/pack.h"
#include "kernels/types.h"

#define MAX_DEV 64

static void usage(FILE *f) {
    fprintf(f, "usage: sparrow devices [--check]\n"
               "  Lists the OpenCL platforms and devices and the one `--kernels opencl` would use\n"
               "  (SPARROW_CL_DEVICE = auto | gpu | cpu | PLATFORM:DEVICE; default auto: the first GPU).\n"
               "  --check   build the kernels on that device and run a small matmul against the CPU\n");
}

static void print_bytes(uint64_t b) {
    if (b >= (uint64_t)1 << 30) printf("%.1f GiB", b / 1073741824.0);
    else if (b >= (uint64_t)1 << 20) printf("%.1f MiB", b / 1048576.0);
    else printf("%.0f KiB", b / 1024.0);
}

#ifdef SP_HAVE_OPENCL
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Build the kernels on the chosen device and compare one q4_0 matmul with the reference. */
static int check(void) {
    char dir[4096], err[2048] = "";
    const char *cache = sp_conf_cache_dir(dir, sizeof dir) ? dir : NULL;
    double t0 = now_s();
    sp_cl *c = sp_cl_open(NULL, cache, 0, err, sizeof err);
    if (!c) {
        printf("check: FAILED: %s\n", err);
        return 1;
    }
    int st = 0;
    if (!sp_cl_prepare(c, SP_CL_ACT_F32, &st)) {
        printf("check: FAILED building the kernels: %s\n", sp_cl_error(c));
        sp_cl_close(c);
        return 1;
    }
    static const char *const states[] = {"no cache", "built and cached", "from the cache", "cache entry rebuilt"};
    printf("check: kernels ready in %.2f s (%s%s%s)\n", now_s() - t0, states[st], cache ? ", " : "", cache ? cache : "");
    const int64_t n_in = 256, n_out = 77, n_tok = 3;
    size_t rb = sp_type_row_bytes(SP_TYPE_Q4_0, n_in);
    uint8_t *data = malloc(rb * n_out);
    float *row = malloc(n_in * sizeof *row), *x = malloc(n_in * n_tok * sizeof *x);
    float *y = malloc(n_out * n_tok * sizeof *y), *want = malloc(n_out * n_tok * sizeof *want);
    unsigned s = 12345;
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = (float)((s = s * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
        sp_quant_row(SP_TYPE_Q4_0, row, data + o * rb, n_in);
    }
    for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = (float)((s = s * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
    sp_mat w = {.type = SP_TYPE_Q4_0, .n_in = n_in, .n_out = n_out, .row_bytes = rb, .data = data};
    sp_kernels_ref()->matmul(&w, x, want, n_tok, NULL);
    int rc = 1;
    if (sp_pack_mat(&w)) {
        sp_cl_mat m = {SP_CL_FMT_Q4X8, n_in, n_out, sp_cl_alloc(c, w.packed_bytes, w.packed)};
        cl_mem xb = sp_cl_alloc(c, n_in * n_tok * 4, x), yb = sp_cl_alloc(c, n_out * n_tok * 4, NULL);
        if (m.buf && xb && yb && sp_cl_matmul(c, SP_CL_ACT_F32, &m, xb, yb, n_tok, NULL, NULL, SP_CL_PATH_AUTO) &&
            sp_cl_read(c, yb, 0, y, n_out * n_tok * 4)) {
            double md = 0, mx = 0;
            for (int64_t i = 0; i < n_out * n_tok; i++) md = fmax(md, fabs(y[i] - want[i])), mx = fmax(mx, fabs(want[i]));
            rc = md <= 1e-5 * (mx + 1) ? 0 : 1;
            printf("check: q4_0 matmul %lldx%lld, %lld tokens: max |device - CPU reference| %.3g (of %.3g): %s\n",
                   (long long)n_out, (long long)n_in, (long long)n_tok, md, mx, rc ? "FAILED" : "ok");
        } else {
            printf("check: FAILED running a matmul: %s\n", sp_cl_error(c));
        }
        if (m.buf) clReleaseMemObject(m.buf);
        if (xb) clReleaseMemObject(xb);
        if (yb) clReleaseMemObject(yb);
        sp_mat_unpack(&w);
    }
    free(data); free(row); free(x); free(y); free(want);
    sp_cl_close(c);
    return rc;
}
#endif

int sp_cli_devices(int argc, char **argv) {
    bool do_check = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) do_check = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "sparrow devices: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    sp_cl_devinfo d[MAX_DEV];
    char err[1024] = "";
    int n = sp_cl_devices(d, MAX_DEV, err, sizeof err);
    if (n < 0) {
        printf("OpenCL: error: %s\n", err);
        return 1;
    }
    if (n == 0) {
        printf("OpenCL: none: %s. The CPU kernels (--kernels auto) are used.\n", err);
        return 0;
    }
    if (n > MAX_DEV) n = MAX_DEV;
    int last_platform = -1;
    for (int i = 0; i < n; i++) {
        if (d[i].platform != last_platform) {
            printf("platform %d: %s (%s)\n", d[i].platform, d[i].platform_name, d[i].platform_version);
            last_platform = d[i].platform;
        }
        printf("  %d:%d  %-11s %s\n", d[i].platform, d[i].device, sp_cl_devtype(&d[i]), d[i].name);
        printf("       vendor %s; %s; driver %s; %s\n", d[i].vendor, d[i].version, d[i].driver, d[i].c_version);
        printf("       %u compute units @ %u MHz; global ", d[i].compute_units, d[i].max_clock_mhz);
        print_bytes(d[i].global_mem);
        printf(" (largest buffer ");
        print_bytes(d[i].max_alloc);
        printf("); local ");
        print_bytes(d[i].local_mem);
        printf("; work-group up to %zu\n", d[i].max_wg);
        printf("       fp16 (cl_khr_fp16) %s; fp64 %s; subgroups (cl_khr_subgroups) %s; unified host memory %s%s\n",
               d[i].fp16 ? "yes" : "no", d[i].fp64 ? "yes" : "no", d[i].subgroups ? "yes" : "no", d[i].unified ? "yes" : "no",
               d[i].available && d[i].compiler ? "" : "; NOT usable (unavailable or no compiler)");
    }
    const char *spec = getenv("SPARROW_CL_DEVICE");
    int pick = sp_cl_choose(d, n, NULL, err, sizeof err);
    if (pick < 0) {
        printf("opencl kernels would use: none: %s\n", err);
        return do_check ? 1 : 0;
    }
    printf("opencl kernels would use: %d:%d %s (SPARROW_CL_DEVICE=%s)\n", d[pick].platform, d[pick].device, d[pick].name,
           spec && *spec ? spec : "auto");
#ifdef SP_HAVE_OPENCL
    if (do_check) return check();
#endif
    return 0;
}
