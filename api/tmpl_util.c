/* api/tmpl_util.c — the chat-template engine's plumbing: error raising (longjmp), bump arenas
 * with a byte budget, growing byte buffers, UTF-8 helpers with Python's notion of whitespace,
 * case and printability, and Python's float repr. Used by every other tmpl_*.c file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

/* ---------------------------------------------------------------- errors */

void tm_raise(tm_err *e, sp_tmpl_status code, int line, const char *fmt, ...) {
    size_t off = 0;
    if (line > 0) off = (size_t)snprintf(e->msg, sizeof e->msg, "template line %d: ", line);
    if (off >= sizeof e->msg) off = sizeof e->msg - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + off, sizeof e->msg - off, fmt, ap);
    va_end(ap);
    e->code = code;
    longjmp(e->jb, 1);
}

/* ---------------------------------------------------------------- arena */

struct tm_chunk {
    tm_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define TM_CHUNK_MIN ((size_t)64 << 10)

void tm_arena_init(tm_arena *a, size_t limit, tm_err *err) {
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
    a->err = err;
}

void tm_arena_free(tm_arena *a) {
    tm_chunk *c = a->head;
    while (c) {
        tm_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

/* n bytes, 16-aligned, not zeroed. Chunks grow with the arena (64 KiB up to 4 MiB) so a big render
 * makes few malloc calls. */
static void *alloc_raw(tm_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (n > a->limit || a->total > a->limit - n)
        tm_raise(a->err, SP_TMPL_ELIMIT, 0, "template render uses too much memory (over %zu MiB)",
                 a->limit >> 20);
    tm_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t grow = a->total / 2;
        if (grow < TM_CHUNK_MIN) grow = TM_CHUNK_MIN;
        if (grow > ((size_t)4 << 20)) grow = (size_t)4 << 20;
        size_t cap = n > grow ? n : grow;
        c = malloc(sizeof *c + cap);
        if (!c) tm_raise(a->err, SP_TMPL_ELIMIT, 0, "out of memory");
        c->used = 0;
        c->cap = cap;
        /* a one-off block bigger than the usual chunk goes behind the current one, whose free
         * space stays in use */
        if (a->head && cap > grow && a->head->cap - a->head->used >= TM_CHUNK_MIN / 4) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

void *tm_alloc(tm_arena *a, size_t n) {
    void *p = alloc_raw(a, n);
    memset(p, 0, n);
    return p;
}

/* Grow a buffer: the old bytes are copied, the new ones are left uninitialized. */
void *tm_realloc(tm_arena *a, void *p, size_t old, size_t n) {
    if (n <= old) return p;
    void *q = alloc_raw(a, n);
    if (old) memcpy(q, p, old);
    return q;
}

/* ---------------------------------------------------------------- strings */

tm_str tm_cstr(const char *s) { return (tm_str){s, strlen(s)}; }
bool tm_eq(tm_str a, tm_str b) { return a.n == b.n && (a.n == 0 || !memcmp(a.p, b.p, a.n)); }
bool tm_eqc(tm_str a, const char *c) { /* no strlen: stops at the first difference */
    size_t i = 0;
    while (i < a.n && c[i] && a.p[i] == c[i]) i++;
    return i == a.n && c[i] == 0;
}

tm_str tm_dup(tm_arena *a, const char *p, size_t n) {
    char *q = tm_alloc(a, n + 1);
    if (n) memcpy(q, p, n);
    return (tm_str){q, n};
}

void tm_buf_init(tm_buf *b, tm_arena *a) {
    memset(b, 0, sizeof *b);
    b->a = a;
}

static void buf_grow(tm_buf *b, size_t extra) {
    if (b->max && (extra > b->max || b->n > b->max - extra))
        tm_raise(b->a->err, SP_TMPL_ELIMIT, b->line, "template output too large (over %zu bytes)",
                 b->max);
    if (b->cap - b->n >= extra) return;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap - b->n < extra) cap *= 2;
    b->p = tm_realloc(b->a, b->p, b->n, cap);
    b->cap = cap;
}

void tm_buf_put(tm_buf *b, const char *p, size_t n) {
    if (!n) return;
    buf_grow(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

void tm_buf_puts(tm_buf *b, const char *s) { tm_buf_put(b, s, strlen(s)); }
void tm_buf_putc(tm_buf *b, char c) { tm_buf_put(b, &c, 1); }

void tm_buf_printf(tm_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    tm_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void tm_buf_put_cp(tm_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        if (cp > 0x10FFFF) cp = 0xFFFD;
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    tm_buf_put(b, u, n);
}

tm_str tm_buf_str(const tm_buf *b) { return (tm_str){b->p ? b->p : "", b->n}; }

/* ---------------------------------------------------------------- UTF-8 and Unicode */

uint32_t tm_utf8_next(const char *p, size_t n, size_t *len) {
    const unsigned char *s = (const unsigned char *)p;
    unsigned char c = s[0];
    *len = 1;
    if (c < 0x80) return c;
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07;
    else return c;
    if (n < need + 1) return c;
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) return c;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return c;
    *len = need + 1;
    return cp;
}

size_t tm_utf8_count(tm_str s) {
    size_t count = 0;
    for (size_t i = 0; i < s.n;) {
        size_t l;
        if ((unsigned char)s.p[i] < 0x80) l = 1;
        else tm_utf8_next(s.p + i, s.n - i, &l);
        i += l;
        count++;
    }
    return count;
}

size_t tm_utf8_offset(tm_str s, size_t index) {
    size_t i = 0;
    while (index > 0 && i < s.n) {
        size_t l;
        tm_utf8_next(s.p + i, s.n - i, &l);
        i += l;
        index--;
    }
    return i;
}

bool tm_is_space_cp(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool tm_is_printable_cp(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return false;
    if (cp < 0x7F) return true;
    if (cp <= 0xA0 || cp == 0xAD) return false;
    if ((cp >= 0x600 && cp <= 0x605) || cp == 0x61C || cp == 0x6DD || cp == 0x70F ||
        cp == 0x180E || cp == 0x1680)
        return false;
    if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000)
        return false;
    if ((cp >= 0xD800 && cp <= 0xF8FF) || cp == 0xFEFF || (cp >= 0xFFF0 && cp <= 0xFFFB) ||
        cp == 0xFFFE || cp == 0xFFFF)
        return false;
    if ((cp >= 0xE0000 && cp <= 0xE0FFF) || cp >= 0xF0000) return false;
    return true;
}

uint32_t tm_upper_cp(uint32_t cp) {
    if (cp >= 'a' && cp <= 'z') return cp - 32;
    if (cp < 0x80) return cp;
    if (cp == 0xB5) return 0x39C;
    if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) return cp - 32;
    if (cp == 0xFF) return 0x178;
    if (cp >= 0x100 && cp <= 0x17F) {
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) return (cp & 1) ? cp : cp - 1;
        if (cp == 0x131) return 'I';
        if (cp == 0x17F) return 'S';
        if (cp == 0x130 || cp == 0x138 || cp == 0x149) return cp;
        return (cp & 1) ? cp - 1 : cp;
    }
    if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return cp - 32;
    if (cp == 0x3C2) return 0x3A3;
    if (cp >= 0x430 && cp <= 0x44F) return cp - 32;
    if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
    return cp;
}

uint32_t tm_lower_cp(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp < 0x80) return cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp == 0x178) return 0xFF;
    if (cp >= 0x100 && cp <= 0x17F) {
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) return (cp & 1) ? cp + 1 : cp;
        if (cp == 0x130) return 'i';
        if (cp == 0x131 || cp == 0x138 || cp == 0x149 || cp == 0x17F) return cp;
        return (cp & 1) ? cp : cp + 1;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    return cp;
}

bool tm_is_alpha_cp(uint32_t cp) {
    if (cp < 0x80) return (cp | 32) >= 'a' && (cp | 32) <= 'z';
    if (cp == 0xAA || cp == 0xB5 || cp == 0xBA) return true;
    if (cp >= 0xC0 && cp <= 0x24F) return cp != 0xD7 && cp != 0xF7;
    return (cp >= 0x370 && cp <= 0x3FF && cp != 0x37E && cp != 0x387) ||
           (cp >= 0x400 && cp <= 0x52F) || (cp >= 0x5D0 && cp <= 0x5EA) ||
           (cp >= 0x620 && cp <= 0x64A) || (cp >= 0x3041 && cp <= 0x30FF && cp != 0x30FB) ||
           (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3);
}

bool tm_is_digit_cp(uint32_t cp) { return cp >= '0' && cp <= '9'; }

/* ---------------------------------------------------------------- Python float repr */

void tm_fmt_float(char buf[40], double d) {
    if (isnan(d)) {
        strcpy(buf, "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(buf, d < 0 ? "-inf" : "inf");
        return;
    }
    /* shortest %.*e that reads back to the same double */
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, d);
        if (strtod(e, NULL) == d) break;
    }
    /* split "-d.ddde+XX" into sign, digits, decimal exponent */
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 23) digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    int decpt = exp10 + 1; /* value = 0.DIGITS * 10^decpt */
    char *o = buf;
    if (neg) *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    } else if (decpt >= nd) {
        memcpy(o, digits, (size_t)nd);
        o += nd;
        for (int i = nd; i < decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, (size_t)(nd - decpt));
        o += nd - decpt;
    }
    *o = 0;
}
