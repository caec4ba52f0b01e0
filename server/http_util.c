/* server/http_util.c — pure helpers of the HTTP layer: the bind address from opts.host, the
 * constant-time API key check, open paths, CORS origin matching and the OpenAI-shaped error
 * bodies the layer writes by itself. No sockets, no loop: http.c and http_conn.c call these. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "server/http_impl.h"

uint64_t sp_http_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* IPv4 or IPv6 literal ("::1" or "[::1]"), or "localhost". */
int sp_http_parse_addr(const char *host, int port, struct sockaddr_storage *ss, char *err, size_t errlen) {
    memset(ss, 0, sizeof *ss);
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "port %d out of range", port);
        return -1;
    }
    if (!host || !*host || strcmp(host, "localhost") == 0) host = "127.0.0.1";
    char buf[64];
    size_t n = strlen(host);
    if (n >= sizeof buf) {
        snprintf(err, errlen, "host '%.64s...' is not an IP address", host);
        return -1;
    }
    memcpy(buf, host, n + 1);
    if (buf[0] == '[' && n > 2 && buf[n - 1] == ']') {
        memmove(buf, buf + 1, n - 2);
        buf[n - 2] = 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, buf, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    snprintf(err, errlen, "host '%s' is not an IPv4 or IPv6 address", host);
    return -1;
}

/* Equal without an early exit: the time depends on the lengths only. */
bool sp_http_ct_equal(const char *a, size_t alen, const char *b, size_t blen) {
    volatile unsigned char diff = (unsigned char)(alen != blen);
    if (blen == 0) return alen == 0;
    for (size_t i = 0; i < alen; i++) diff |= (unsigned char)(a[i] ^ b[i % blen]);
    return diff == 0;
}

/* "Bearer KEY" (scheme case-insensitive) against every configured key, all of them compared. */
bool sp_http_bearer_ok(const sp_http *h, const char *auth) {
    if (!auth) return false;
    while (*auth == ' ' || *auth == '\t') auth++;
    if (strncasecmp(auth, "Bearer", 6) != 0 || (auth[6] != ' ' && auth[6] != '\t')) return false;
    const char *k = auth + 6;
    while (*k == ' ' || *k == '\t') k++;
    size_t klen = strlen(k);
    while (klen > 0 && (k[klen - 1] == ' ' || k[klen - 1] == '\t')) klen--;
    bool ok = false;
    for (int i = 0; i < h->n_keys; i++) ok |= sp_http_ct_equal(k, klen, h->keys[i], h->key_lens[i]);
    return ok;
}

bool sp_http_is_open_path(const sp_http *h, const char *path) {
    for (int i = 0; i < h->n_open_paths; i++)
        if (path && strcmp(path, h->open_paths[i]) == 0) return true;
    return false;
}

/* The Allow-Origin value for a request's Origin: "*" when any origin is allowed, the Origin itself
 * when listed (then *vary: the answer depends on it), NULL otherwise. */
const char *sp_http_cors_allow(const sp_http *h, const char *origin, bool *vary) {
    *vary = false;
    if (!h->cors_on) return NULL;
    if (h->cors_any) return "*";
    if (!origin) return NULL;
    for (int i = 0; i < h->n_origins; i++) {
        if (strcmp(origin, h->origins[i]) == 0) {
            *vary = true;
            return origin;
        }
    }
    return NULL;
}

char *sp_http_error_json(const char *message, const char *type, const char *code, size_t *len) {
    const char *fmt = "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}";
    int n = snprintf(NULL, 0, fmt, message, type, code);
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    snprintf(s, (size_t)n + 1, fmt, message, type, code);
    *len = (size_t)n;
    return s;
}

/* "a, b,c" -> {"a","b","c"} (trimmed, empty items dropped). */
char **sp_http_split_list(const char *csv, int *n) {
    *n = 0;
    size_t cap = 1;
    for (const char *p = csv; *p; p++) cap += *p == ',';
    char **out = calloc(cap, sizeof *out);
    if (!out) return NULL;
    const char *p = csv;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && isspace((unsigned char)t[-1])) t--;
        if (t > p) {
            out[*n] = strndup(p, (size_t)(t - p));
            if (out[*n]) (*n)++;
        }
        p = e;
    }
    return out;
}
