/* storage/fetch.c — see fetch.h. One libcurl easy handle per download; the write callback decides,
 * at the first byte, whether the server honoured the Range request (206) or sent the whole file
 * (200: start the partial file over). */
#include "storage/fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    CURL *curl;
    FILE *f;
    unsigned long long offset;     /* bytes in the partial file when the request was made */
    unsigned long long written;    /* bytes written by this request */
    unsigned long long total;      /* expected final size, 0 if unknown */
    bool decided, restarted, bad_status;
    long status;
    char etag_sha[65];
    bool progress;
    double t0, last_draw;
} dl;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool is_hex64(const char *s, size_t n) {
    if (n != 64) return false;
    for (size_t i = 0; i < n; i++) if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* Headers: Content-Range's total, Content-Length, and Hugging Face's X-Linked-ETag (the LFS sha256). */
static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
    dl *d = ud;
    size_t len = size * n;
    char line[512];
    size_t l = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, l);
    line[l] = 0;
    if (!strncmp(line, "HTTP/", 5)) { d->total = 0; d->etag_sha[0] = 0; } /* a new response (redirects) */
    if (!strncasecmp(line, "content-range:", 14)) {
        const char *slash = strchr(line, '/');
        if (slash && isdigit((unsigned char)slash[1])) d->total = strtoull(slash + 1, NULL, 10);
    } else if (!strncasecmp(line, "content-length:", 15) && !d->total) {
        unsigned long long cl = strtoull(line + 15, NULL, 10);
        if (cl) d->total = cl; /* adjusted for the offset once the status is known */
    } else if (!strncasecmp(line, "x-linked-etag:", 14)) {
        const char *p = line + 14;
        while (*p == ' ' || *p == '"') p++;
        size_t k = strcspn(p, "\"\r\n ");
        if (is_hex64(p, k)) { memcpy(d->etag_sha, p, 64); d->etag_sha[64] = 0; }
    }
    return len;
}

/* At the first body byte: 206 appends at the offset, 200 starts over, anything else is an error. */
static bool decide(dl *d) {
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->status);
    d->decided = true;
    if (d->status == 206 && d->offset > 0) return true;
    if (d->status == 200) {
        if (d->offset > 0) {
            d->restarted = true;
            if (fflush(d->f) != 0 || ftruncate(fileno(d->f), 0) != 0 || fseek(d->f, 0, SEEK_SET) != 0) return false;
            d->offset = 0;
        }
        return true;
    }
    d->bad_status = true;
    return false;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
    dl *d = ud;
    if (!d->decided && !decide(d)) return 0;
    size_t len = size * n;
    if (fwrite(buf, 1, len, d->f) != len) return 0;
    d->written += len;
    return len;
}

static void draw(dl *d, bool last) {
    double t = now_s();
    if (!last && t - d->last_draw < 0.2) return;
    d->last_draw = t;
    unsigned long long have = d->offset + d->written;
    double mib = have / 1048576.0, rate = d->written / 1048576.0 / (t - d->t0 > 1e-3 ? t - d->t0 : 1e-3);
    if (d->total) {
        double frac = (double)have / (double)d->total;
        int bar = (int)(frac * 30);
        fprintf(stderr, "\r  [%-30.*s] %5.1f%%  %.1f / %.1f MiB  %.1f MiB/s ", bar, "==============================",
                frac * 100, mib, d->total / 1048576.0, rate);
    } else {
        fprintf(stderr, "\r  %.1f MiB  %.1f MiB/s ", mib, rate);
    }
    if (last) fputc('\n', stderr);
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    dl *d = ud;
    if (d->progress && d->decided) draw(d, false);
    return 0;
}

bool sp_fetch_sha256_file(const char *path, char out[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    static unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    bool ok = !ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return ok;
}

static bool has_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[4] = {0};
    bool ok = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
    if (f) fclose(f);
    return ok;
}

/* After the transfer: size, digest, magic, then the rename into place. */
static int finish(const sp_fetch_opts *o, const char *partial, dl *d, sp_fetch_result *res, char *err, size_t errlen) {
    struct stat st;
    if (stat(partial, &st) != 0) { snprintf(err, errlen, "%s: %s", partial, strerror(errno)); return -1; }
    res->bytes = (unsigned long long)st.st_size;
    if (d->total && res->bytes != d->total) {
        snprintf(err, errlen, "download incomplete: %llu of %llu bytes (run the same command again to resume)",
                 res->bytes, d->total);
        return -1;
    }
    if (!sp_fetch_sha256_file(partial, res->sha256)) { snprintf(err, errlen, "cannot read %s", partial); return -1; }
    const char *want = o->sha256 ? o->sha256 : d->etag_sha[0] ? d->etag_sha : NULL;
    if (want) {
        res->sha256_checked = true;
        if (strcasecmp(want, res->sha256) != 0) {
            unlink(partial);
            snprintf(err, errlen, "sha256 mismatch: expected %.64s, got %s (the partial file was removed)", want, res->sha256);
            return -1;
        }
    }
    if (!has_gguf_magic(partial)) {
        unlink(partial);
        snprintf(err, errlen, "the downloaded file is not a GGUF model (check the URL)");
        return -1;
    }
    if (rename(partial, o->dest) != 0) { snprintf(err, errlen, "cannot rename to %s: %s", o->dest, strerror(errno)); return -1; }
    return 0;
}

int sp_fetch(const sp_fetch_opts *o, sp_fetch_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    char partial[4096];
    if (snprintf(partial, sizeof partial, "%s.partial", o->dest) >= (int)sizeof partial) {
        snprintf(err, errlen, "destination path too long");
        return -1;
    }
    dl d = {.progress = o->progress, .t0 = now_s()};
    struct stat st;
    if (stat(partial, &st) == 0) d.offset = (unsigned long long)st.st_size;
    res->resumed_from = d.offset;
    d.f = fopen(partial, "ab");
    if (!d.f) { snprintf(err, errlen, "cannot write %s: %s", partial, strerror(errno)); return -1; }
    static bool inited;
    if (!inited) { curl_global_init(CURL_GLOBAL_DEFAULT); inited = true; }
    d.curl = curl_easy_init();
    char range[64], cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(d.curl, CURLOPT_URL, o->url);
    curl_easy_setopt(d.curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(d.curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(d.curl, CURLOPT_USERAGENT, "sparrow-pull/0.1");
    curl_easy_setopt(d.curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* a stalled transfer ... */
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_TIME, 60L);   /* ... fails after a minute */
    curl_easy_setopt(d.curl, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(d.curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(d.curl, CURLOPT_HEADERDATA, &d);
    curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(d.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(d.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(d.curl, CURLOPT_XFERINFODATA, &d);
    if (d.offset > 0) {
        snprintf(range, sizeof range, "%llu-", d.offset);
        curl_easy_setopt(d.curl, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(d.curl);
    if (!d.decided) curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &d.status);
    curl_easy_cleanup(d.curl);
    bool wrote_ok = fflush(d.f) == 0 && fsync(fileno(d.f)) == 0;
    fclose(d.f);
    res->restarted = d.restarted;
    if (d.progress && d.decided) draw(&d, true);
    if (d.status == 416 && d.offset > 0) { /* the partial file is not a prefix the server knows: start over */
        unlink(partial);
        return sp_fetch(o, res, err, errlen);
    }
    if (d.bad_status || (rc == CURLE_OK && d.status >= 400)) {
        snprintf(err, errlen, "%s: HTTP status %ld", o->url, d.status);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "cannot download %s: %s", o->url, cerr[0] ? cerr : curl_easy_strerror(rc));
        return -1;
    }
    if (!wrote_ok) { snprintf(err, errlen, "cannot write %s", partial); return -1; }
    return finish(o, partial, &d, res, err, errlen);
}
