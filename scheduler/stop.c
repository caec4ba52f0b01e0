/* scheduler/stop.c — see stop.h. The held-back text is always the shortest suffix that is a prefix
 * of some stop string, so memory stays bounded by the longest stop string. */
#include "scheduler/stop.h"

#include <stdlib.h>
#include <string.h>

void sp_stop_init(sp_stop *s, char *const *stop, int n_stop) {
    memset(s, 0, sizeof *s);
    s->stop = stop;
    s->n_stop = n_stop;
    for (int i = 0; i < n_stop; i++) {
        size_t l = strlen(stop[i]);
        if (l > s->max_len) s->max_len = l;
    }
}

void sp_stop_free(sp_stop *s) {
    free(s->held);
    memset(s, 0, sizeof *s);
}

/* Earliest position in buf where a whole stop string occurs; n if none. */
static size_t find_stop(const sp_stop *s, const char *buf, size_t n) {
    size_t best = n;
    for (int i = 0; i < s->n_stop; i++) {
        size_t l = strlen(s->stop[i]);
        if (l == 0 || l > n) continue;
        for (size_t p = 0; p + l <= n && p < best; p++)
            if (memcmp(buf + p, s->stop[i], l) == 0) { best = p; break; }
    }
    return best;
}

/* Length of the longest suffix of buf that is a proper prefix of some stop string. */
static size_t partial_suffix(const sp_stop *s, const char *buf, size_t n) {
    size_t keep = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t l = strlen(s->stop[i]);
        for (size_t k = (l - 1 < n ? l - 1 : n); k > keep; k--)
            if (memcmp(buf + n - k, s->stop[i], k) == 0) { keep = k; break; }
    }
    return keep;
}

static char *dup_bytes(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (!d) abort();
    if (n) memcpy(d, p, n);
    d[n] = 0;
    return d;
}

bool sp_stop_feed(sp_stop *s, const char *text, size_t len, char **out, size_t *out_len) {
    if (s->n_stop == 0) {
        *out = dup_bytes(text, len);
        *out_len = len;
        return false;
    }
    size_t n = s->n_held + len;
    char *buf = malloc(n + 1);
    if (!buf) abort();
    if (s->n_held) memcpy(buf, s->held, s->n_held);
    if (len) memcpy(buf + s->n_held, text, len);
    size_t at = find_stop(s, buf, n);
    if (at < n) {
        s->n_held = 0;
        *out = dup_bytes(buf, at);
        *out_len = at;
        free(buf);
        return true;
    }
    size_t keep = partial_suffix(s, buf, n);
    if (keep > s->cap_held) {
        s->held = realloc(s->held, keep);
        if (!s->held) abort();
        s->cap_held = keep;
    }
    if (keep) memcpy(s->held, buf + n - keep, keep);
    s->n_held = keep;
    *out = dup_bytes(buf, n - keep);
    *out_len = n - keep;
    free(buf);
    return false;
}

void sp_stop_flush(sp_stop *s, char **out, size_t *out_len) {
    *out = dup_bytes(s->held ? s->held : "", s->n_held);
    *out_len = s->n_held;
    s->n_held = 0;
}
