/* tests/unit/testutil.c — see testutil.h. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SP_SHARED_DIR
#define SP_SHARED_DIR "../shared"
#endif

const char *tu_shared(const char *rel) {
    static char buf[4096];
    const char *base = getenv("SPARROW_SHARED");
    if (!base || !*base) base = SP_SHARED_DIR;
    snprintf(buf, sizeof buf, "%s/%s", base, rel);
    return buf;
}

void *tu_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0) { fclose(f); return NULL; }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = 0;
    fclose(f);
    if (size) *size = (size_t)n;
    return buf;
}

int tu_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, size, f);
    return (fclose(f) == 0 && w == size) ? 0 : -1;
}

const char *tu_tmp(const char *name) {
    static char dir[256];
    static char buf[4096];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/sparrow-test-%d", t && *t ? t : "/tmp", (int)getpid());
        mkdir(dir, 0700);
    }
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}
