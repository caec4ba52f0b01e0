/* storage/wcache.c — the packed-weight cache file (wcache.h).
 * Layout (little-endian, as the machine writes it; the key names the machine's layout anyway):
 *   page 0: header {magic "SPWCACHE", version, n entries, key (NUL-padded), table checksum, header
 *           checksum}
 *   page 1..: table of n {fmt, type, n_in, n_out, offset, bytes, checksum}
 *   then each blob at a page-aligned offset.
 * The checksum is a 4-lane 64-bit multiply-rotate hash over 8-byte words: fast enough to verify a
 * 1 GB cache in a fraction of the time repacking takes, and any flipped or truncated byte shows. */
#include "storage/wcache.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "SPWCACHE"
#define VERSION 1u
#define PAGE 4096u
#define KEY_MAX 2048

typedef struct {
    char magic[8];
    uint32_t version, n;
    char key[KEY_MAX];
    uint64_t table_sum;
    uint64_t file_size;
    uint64_t header_sum; /* of everything above */
} header_t;

typedef struct {
    uint32_t fmt, type;
    int64_t n_in, n_out;
    uint64_t off, bytes, sum;
} row_t;

struct sp_wcache {
    uint8_t *map;
    size_t len;
    int n;
    row_t *rows;
};

struct sp_wcache_writer {
    int fd;
    char path[4096], tmp[4112];
    header_t h;
    row_t *rows;
    int n, done;
    uint64_t off;
};

/* ---- checksum ---- */

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t checksum(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * l, 8);
            h[l] = rotl(h[l] ^ (w * 0x87C37B91114253D5ull), 31) * 0x4CF5AD432745937Full;
        }
    }
    uint64_t t = (uint64_t)n;
    for (; i < n; i++) t = (t ^ b[i]) * 0x100000001B3ull;
    uint64_t r = t;
    for (int l = 0; l < 4; l++) r = rotl(r ^ h[l], 27) * 0x9E3779B97F4A7C15ull + 0x52DCE729ull;
    return r ^ (r >> 33);
}

static uint64_t page_up(uint64_t x) { return (x + PAGE - 1) / PAGE * PAGE; }

/* ---- keys ---- */

bool sp_wcache_key(const char *model_path, const char *layout, char *key, size_t cap) {
    struct stat st;
    if (stat(model_path, &st) != 0) return false;
    char *real = realpath(model_path, NULL);
    int n = snprintf(key, cap, "v%u|%s|%s|dev=%llu|ino=%llu|size=%lld|mtime=%lld.%09ld", VERSION, layout,
                     real ? real : model_path, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                     (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    free(real);
    return n > 0 && (size_t)n < cap && n < KEY_MAX;
}

void sp_wcache_path(const char *dir, const char *key, char *out, size_t cap) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = key; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    snprintf(out, cap, "%s/weights-%016llx.spw", dir, (unsigned long long)h);
}

/* ---- reading ---- */

static void seterr(char *err, size_t errlen, const char *what, const char *path) {
    if (err) snprintf(err, errlen, "%s (%s)", what, path);
}

sp_wcache *sp_wcache_open(const char *path, const char *key, sp_wcache_entry *e, int n, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        seterr(err, errlen, errno == ENOENT ? "missing" : "cannot open the weight cache", path);
        return NULL;
    }
    struct stat st;
    sp_wcache *c = calloc(1, sizeof *c);
    if (!c || fstat(fd, &st) != 0 || st.st_size < (off_t)(2 * PAGE)) {
        seterr(err, errlen, "weight cache truncated", path);
        goto fail;
    }
    c->len = (size_t)st.st_size;
    c->map = mmap(NULL, c->len, PROT_READ, MAP_SHARED, fd, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        seterr(err, errlen, "cannot map the weight cache", path);
        goto fail;
    }
    close(fd);
    fd = -1;
    header_t h;
    memcpy(&h, c->map, sizeof h);
    if (memcmp(h.magic, MAGIC, 8) || h.version != VERSION || h.header_sum != checksum(&h, offsetof(header_t, header_sum))) {
        seterr(err, errlen, "weight cache header is not valid", path);
        goto fail;
    }
    if (strncmp(h.key, key, KEY_MAX) != 0) {
        seterr(err, errlen, "weight cache is stale (the model file or kernels changed)", path);
        goto fail;
    }
    if ((int64_t)h.n != n || h.file_size != c->len || PAGE + (uint64_t)n * sizeof(row_t) > c->len) {
        seterr(err, errlen, "weight cache is truncated or holds other tensors", path);
        goto fail;
    }
    const row_t *rows = (const row_t *)(const void *)(c->map + PAGE);
    if (checksum(rows, (size_t)n * sizeof *rows) != h.table_sum) {
        seterr(err, errlen, "weight cache table is corrupt", path);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const row_t *r = &rows[i];
        if (r->fmt != e[i].fmt || r->type != e[i].type || r->n_in != e[i].n_in || r->n_out != e[i].n_out ||
            r->bytes != e[i].bytes || r->off % PAGE || r->off > c->len || r->bytes > c->len - r->off) {
            seterr(err, errlen, "weight cache holds other tensors", path);
            goto fail;
        }
        if (checksum(c->map + r->off, r->bytes) != r->sum) {
            seterr(err, errlen, "weight cache data is corrupt", path);
            goto fail;
        }
        e[i].data = c->map + r->off;
    }
    c->n = n;
    c->rows = malloc((size_t)(n > 0 ? n : 1) * sizeof *c->rows);
    if (!c->rows) goto fail;
    memcpy(c->rows, rows, (size_t)n * sizeof *rows);
    return c;
fail:
    if (fd >= 0) close(fd);
    sp_wcache_close(c);
    return NULL;
}

void sp_wcache_close(sp_wcache *c) {
    if (!c) return;
    if (c->map) munmap(c->map, c->len);
    free(c->rows);
    free(c);
}

uint64_t sp_wcache_size(const sp_wcache *c) { return c->len; }

void sp_wcache_prefetch(const sp_wcache *c, int i) {
    if (i < 0 || i >= c->n) return;
    madvise(c->map + c->rows[i].off, (size_t)page_up(c->rows[i].bytes), MADV_WILLNEED);
}

bool sp_wcache_lock(const sp_wcache *c, int i) {
    if (i < 0 || i >= c->n) return false;
    return mlock(c->map + c->rows[i].off, (size_t)c->rows[i].bytes) == 0;
}

/* ---- pruning ---- */

/* Does the model file a key names still exist unchanged? (the key of any layout) */
static bool key_is_live(const char *key) {
    char path[4096];
    const char *p = strchr(key, '|');
    p = p ? strchr(p + 1, '|') : NULL; /* skip version and layout */
    const char *e = p ? strstr(p + 1, "|dev=") : NULL;
    if (!p || !e || (size_t)(e - p - 1) >= sizeof path) return false;
    memcpy(path, p + 1, (size_t)(e - p - 1));
    path[e - p - 1] = 0;
    char layout[256];
    const char *l0 = strchr(key, '|') + 1;
    if ((size_t)(p - l0) >= sizeof layout) return false;
    memcpy(layout, l0, (size_t)(p - l0));
    layout[p - l0] = 0;
    char now[KEY_MAX];
    return sp_wcache_key(path, layout, now, sizeof now) && !strcmp(now, key);
}

void sp_wcache_prune(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        if (strncmp(n, "weights-", 8) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (len > 4 && !strcmp(n + len - 4, ".tmp")) { /* weights-X.spw.PID.tmp */
            const char *dot = n + len - 4;
            while (dot > n && dot[-1] != '.') dot--;
            int pid = atoi(dot);
            if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) unlink(path);
            continue;
        }
        if (len < 4 || strcmp(n + len - 4, ".spw")) continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        header_t h;
        bool live = pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && !memcmp(h.magic, MAGIC, 8) &&
                    h.header_sum == checksum(&h, offsetof(header_t, header_sum)) && memchr(h.key, 0, KEY_MAX) &&
                    key_is_live(h.key);
        close(fd);
        if (!live) unlink(path);
    }
    closedir(d);
}

/* ---- writing ---- */

static bool write_at(int fd, const void *p, size_t n, uint64_t off) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = pwrite(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        b += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return true;
}

sp_wcache_writer *sp_wcache_begin(const char *path, const char *key, int n, char *err, size_t errlen) {
    sp_wcache_writer *w = calloc(1, sizeof *w);
    if (!w || strlen(key) >= KEY_MAX || strlen(path) >= sizeof w->path) {
        free(w);
        seterr(err, errlen, "weight cache: bad key or path", path);
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.%d.tmp", path, (int)getpid());
    w->fd = open(w->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    w->rows = calloc((size_t)(n > 0 ? n : 1), sizeof *w->rows);
    if (w->fd < 0 || !w->rows) {
        if (err) snprintf(err, errlen, "cannot write the weight cache %s: %s", w->tmp, strerror(errno));
        if (w->fd >= 0) close(w->fd), unlink(w->tmp);
        free(w->rows);
        free(w);
        return NULL;
    }
    memcpy(w->h.magic, MAGIC, 8);
    w->h.version = VERSION;
    w->h.n = (uint32_t)n;
    snprintf(w->h.key, KEY_MAX, "%s", key);
    w->n = n;
    w->off = page_up(PAGE + (uint64_t)n * sizeof(row_t));
    return w;
}

bool sp_wcache_append(sp_wcache_writer *w, const sp_wcache_entry *e, const void *blob, char *err, size_t errlen) {
    if (w->done >= w->n) {
        seterr(err, errlen, "weight cache: more entries than declared", w->tmp);
        return false;
    }
    row_t *r = &w->rows[w->done];
    *r = (row_t){e->fmt, e->type, e->n_in, e->n_out, w->off, e->bytes, checksum(blob, e->bytes)};
    if (!write_at(w->fd, blob, e->bytes, w->off)) {
        if (err) snprintf(err, errlen, "cannot write the weight cache %s: %s", w->tmp, strerror(errno));
        return false;
    }
    w->off = page_up(w->off + e->bytes);
    w->done++;
    return true;
}

bool sp_wcache_commit(sp_wcache_writer *w, char *err, size_t errlen) {
    bool ok = w->done == w->n;
    w->h.file_size = w->off;
    w->h.table_sum = checksum(w->rows, (size_t)w->n * sizeof *w->rows);
    w->h.header_sum = checksum(&w->h, offsetof(header_t, header_sum));
    uint8_t *page0 = calloc(1, PAGE);
    ok = ok && page0 && sizeof w->h <= PAGE;
    if (ok) memcpy(page0, &w->h, sizeof w->h);
    ok = ok && ftruncate(w->fd, (off_t)w->off) == 0 && write_at(w->fd, w->rows, (size_t)w->n * sizeof *w->rows, PAGE) &&
         write_at(w->fd, page0, PAGE, 0) && fsync(w->fd) == 0;
    free(page0);
    ok = close(w->fd) == 0 && ok;
    w->fd = -1;
    ok = ok && rename(w->tmp, w->path) == 0;
    if (!ok) {
        if (err) snprintf(err, errlen, "cannot write the weight cache %s: %s", w->path, errno ? strerror(errno) : "incomplete");
        unlink(w->tmp);
    }
    free(w->rows);
    free(w);
    return ok;
}

void sp_wcache_abort(sp_wcache_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    free(w->rows);
    free(w);
}
