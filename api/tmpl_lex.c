/* api/tmpl_lex.c — the template lexer: turns source text into DATA runs and tag tokens, applying
 * jinja2's whitespace rules exactly as transformers configures them (trim_blocks: drop the first
 * newline after a block or comment tag; lstrip_blocks: drop spaces/tabs before a block or comment
 * tag that starts a line; `-` strips all whitespace on that side, `+` disables both). It mirrors
 * jinja2's regex lexer rule by rule (lexer.py), including newline normalization, the dropped
 * trailing newline, bracket balancing inside tags and Python string-literal escapes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

typedef struct {
    tm_arena *a;
    const char *s;
    size_t n, pos;
    int line;
    bool line_starting; /* the previous match ended with a newline (or we are at the start) */
    tm_token *v;
    size_t nv, cap;
    char balance[256]; /* expected closing brackets inside a tag */
    int nbal;
} lexer;

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
static void lex_fail(lexer *L, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tm_raise(L->a->err, SP_TMPL_ESYNTAX, L->line, "%s", msg);
}

static tm_token *emit(lexer *L, tm_tkind kind, int line) {
    if (L->nv == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        L->v = tm_realloc(L->a, L->v, L->nv * sizeof *L->v, cap * sizeof *L->v);
        L->cap = cap;
    }
    tm_token *t = &L->v[L->nv++];
    memset(t, 0, sizeof *t);
    t->kind = (uint8_t)kind;
    t->line = line;
    return t;
}

static int count_nl(const char *p, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += p[i] == '\n';
    return c;
}

/* Length of the Unicode whitespace run at p (Python's \s). */
static size_t ws_run(const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t l;
        uint32_t cp = tm_utf8_next(p + i, n - i, &l);
        if (!tm_is_space_cp(cp)) break;
        i += l;
    }
    return i;
}

/* Length of text with trailing Unicode whitespace removed (Python str.rstrip()). */
static size_t rstrip_len(const char *p, size_t n) {
    size_t keep = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(p + i, n - i, &l);
        i += l;
        if (!tm_is_space_cp(cp)) keep = i;
    }
    return keep;
}

/* Emit a run of template text before a tag, after the tag's whitespace control. */
static void emit_data(lexer *L, const char *text, size_t len, char sign, bool lstrip_ok) {
    int line = L->line;
    size_t keep = len;
    if (sign == '-') {
        keep = rstrip_len(text, len);
    } else if (sign != '+' && lstrip_ok) {
        size_t l_pos = len;
        while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
        if ((l_pos > 0 || L->line_starting) && len > l_pos && ws_run(text + l_pos, len - l_pos) == len - l_pos)
            keep = l_pos;
    }
    if (keep > 0) {
        tm_token *t = emit(L, T_DATA, line);
        t->s = (tm_str){text, keep};
    }
    L->line += count_nl(text, len);
}

/* ---------------------------------------------------------------- literals */

static size_t digit_run(const char *p, size_t n) { /* \d+(_\d+)* */
    size_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i == 0) return 0;
    while (i + 1 < n && p[i] == '_' && p[i + 1] >= '0' && p[i + 1] <= '9') {
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    return i;
}

static int digit_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 99;
}

/* float_re: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+-]?(\d+_)*\d+|\.(\d+_)*\d+) */
static size_t match_float(lexer *L) {
    const char *p = L->s + L->pos;
    size_t n = L->n - L->pos;
    if (L->pos > 0 && L->s[L->pos - 1] == '.') return 0;
    size_t i = digit_run(p, n);
    if (!i) return 0;
    size_t frac_end = i;
    if (i < n && p[i] == '.') {
        size_t f = digit_run(p + i + 1, n - i - 1);
        if (f) frac_end = i + 1 + f;
    }
    /* exponent (after an optional fraction) */
    size_t j = frac_end;
    if (j < n && (p[j] == 'e' || p[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (p[k] == '+' || p[k] == '-')) k++;
        size_t e = digit_run(p + k, n - k);
        if (e) return k + e;
    }
    return frac_end > i ? frac_end : 0;
}

/* integer_re: 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[0-9a-f])+ | [1-9](_?\d)* | 0(_?0)* */
static size_t match_int(lexer *L, int64_t *val) {
    const char *p = L->s + L->pos;
    size_t n = L->n - L->pos;
    if (!n || p[0] < '0' || p[0] > '9') return 0;
    if (p[0] == '0' && n > 2) {
        int base = 0;
        char c = (char)(p[1] | 32);
        if (c == 'b') base = 2;
        else if (c == 'o') base = 8;
        else if (c == 'x') base = 16;
        if (base) {
            size_t i = 2;
            uint64_t v = 0;
            bool any = false, over = false;
            for (;;) {
                size_t k = i;
                if (k < n && p[k] == '_') k++;
                if (k < n && digit_val(p[k]) < base) {
                    if (v > (UINT64_MAX >> 4)) over = true;
                    v = v * (uint64_t)base + (uint64_t)digit_val(p[k]);
                    i = k + 1;
                    any = true;
                } else {
                    break;
                }
            }
            if (any) {
                if (over || v > INT64_MAX) lex_fail(L, "integer literal too large");
                *val = (int64_t)v;
                return i;
            }
        }
    }
    size_t i = 1;
    if (p[0] == '0') {
        for (;;) {
            size_t k = i;
            if (k < n && p[k] == '_') k++;
            if (k < n && p[k] == '0') i = k + 1;
            else break;
        }
        *val = 0;
        return i;
    }
    for (;;) {
        size_t k = i;
        if (k < n && p[k] == '_') k++;
        if (k < n && p[k] >= '0' && p[k] <= '9') i = k + 1;
        else break;
    }
    char buf[64];
    size_t nb = 0;
    for (size_t k = 0; k < i; k++) {
        if (p[k] == '_') continue;
        if (nb >= 20) lex_fail(L, "integer literal too large");
        buf[nb++] = p[k];
    }
    buf[nb] = 0;
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno || v > INT64_MAX) lex_fail(L, "integer literal too large");
    *val = (int64_t)v;
    return i;
}

static int hexval(const char *p, size_t n, size_t want, uint32_t *out) {
    uint32_t v = 0;
    for (size_t i = 0; i < want; i++) {
        if (i >= n || digit_val(p[i]) > 15) return 0;
        v = v * 16 + (uint32_t)digit_val(p[i]);
    }
    *out = v;
    return 1;
}

/* Decode a string literal body the way jinja2 does: .encode("ascii", "backslashreplace")
 * .decode("unicode-escape"), i.e. Python escapes; unknown escapes keep their backslash. */
static tm_str decode_string(lexer *L, const char *p, size_t n) {
    if (!memchr(p, '\\', n)) return (tm_str){p, n};
    tm_buf b;
    tm_buf_init(&b, L->a);
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\') {
            tm_buf_putc(&b, p[i++]);
            continue;
        }
        if (i + 1 >= n) lex_fail(L, "\\ at end of string");
        char c = p[i + 1];
        i += 2;
        uint32_t cp;
        switch (c) {
        case '\n': break;
        case '\\': tm_buf_putc(&b, '\\'); break;
        case '\'': tm_buf_putc(&b, '\''); break;
        case '"': tm_buf_putc(&b, '"'); break;
        case 'a': tm_buf_putc(&b, '\a'); break;
        case 'b': tm_buf_putc(&b, '\b'); break;
        case 'f': tm_buf_putc(&b, '\f'); break;
        case 'n': tm_buf_putc(&b, '\n'); break;
        case 'r': tm_buf_putc(&b, '\r'); break;
        case 't': tm_buf_putc(&b, '\t'); break;
        case 'v': tm_buf_putc(&b, '\v'); break;
        case 'x':
            if (!hexval(p + i, n - i, 2, &cp)) lex_fail(L, "truncated \\xXX escape");
            tm_buf_put_cp(&b, cp);
            i += 2;
            break;
        case 'u':
            if (!hexval(p + i, n - i, 4, &cp)) lex_fail(L, "truncated \\uXXXX escape");
            tm_buf_put_cp(&b, cp);
            i += 4;
            break;
        case 'U':
            if (!hexval(p + i, n - i, 8, &cp)) lex_fail(L, "truncated \\UXXXXXXXX escape");
            if (cp > 0x10FFFF) lex_fail(L, "illegal Unicode character");
            tm_buf_put_cp(&b, cp);
            i += 8;
            break;
        case 'N': lex_fail(L, "\\N{...} escapes are not supported");
        default:
            if (c >= '0' && c <= '7') {
                cp = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && i < n && p[i] >= '0' && p[i] <= '7'; k++, i++)
                    cp = cp * 8 + (uint32_t)(p[i] - '0');
                tm_buf_put_cp(&b, cp);
            } else if ((unsigned char)c >= 0x80) {
                /* backslashreplace turned the character into \xNN / \uNNNN / \UNNNNNNNN, so the
                 * backslash escapes the backslash of that text */
                size_t l;
                cp = tm_utf8_next(p + i - 1, n - (i - 1), &l);
                i = i - 1 + l;
                if (cp < 0x100) tm_buf_printf(&b, "\\x%02x", cp);
                else if (cp < 0x10000) tm_buf_printf(&b, "\\u%04x", cp);
                else tm_buf_printf(&b, "\\U%08x", cp);
            } else {
                tm_buf_putc(&b, '\\');
                tm_buf_putc(&b, c);
            }
        }
    }
    return tm_buf_str(&b);
}

static size_t match_string(lexer *L, tm_token *t_out, bool *ok) {
    const char *p = L->s + L->pos;
    size_t n = L->n - L->pos;
    char q = p[0];
    *ok = false;
    size_t i = 1;
    while (i < n && p[i] != q) {
        if (p[i] == '\\') {
            if (i + 1 >= n) return 0;
            i += 2;
        } else {
            i++;
        }
    }
    if (i >= n) return 0;
    *ok = true;
    t_out->s = decode_string(L, p + 1, i - 1);
    return i + 1;
}

static size_t match_op(const char *p, size_t n) {
    static const char *const two[] = {"//", "**", "==", "!=", ">=", "<="};
    if (n >= 2)
        for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
            if (p[0] == two[k][0] && p[1] == two[k][1]) return 2;
    if (strchr("+-/*%~[](){}><=.:|,;", p[0]) && p[0]) return 1;
    return 0;
}

/* ---------------------------------------------------------------- tags */

/* At a tag end? Returns its length including the whitespace it swallows, 0 if not. */
static size_t tag_end(lexer *L, bool block) {
    const char *p = L->s + L->pos;
    size_t n = L->n - L->pos;
    char close = block ? '%' : '}';
    if (block && n >= 3 && p[0] == '+' && p[1] == '%' && p[2] == '}') {
        L->line_starting = false;
        return 3;
    }
    if (n >= 3 && p[0] == '-' && p[1] == close && p[2] == '}') {
        size_t w = ws_run(p + 3, n - 3);
        L->line_starting = w ? p[3 + w - 1] == '\n' : false;
        return 3 + w;
    }
    if (n >= 2 && p[0] == close && p[1] == '}') {
        if (block && n > 2 && p[2] == '\n') {
            L->line_starting = true;
            return 3;
        }
        L->line_starting = false;
        return 2;
    }
    return 0;
}

static void lex_tag(lexer *L, bool block) {
    emit(L, block ? T_BLOCK_BEGIN : T_VAR_BEGIN, L->line);
    L->nbal = 0;
    while (L->pos < L->n) {
        const char *p = L->s + L->pos;
        size_t n = L->n - L->pos;
        size_t len;
        if (L->nbal == 0 && (len = tag_end(L, block))) {
            emit(L, block ? T_BLOCK_END : T_VAR_END, L->line);
            L->line += count_nl(p, len);
            L->pos += len;
            return;
        }
        if ((len = ws_run(p, n))) {
            L->line += count_nl(p, len);
            L->pos += len;
            continue;
        }
        if ((len = match_float(L))) {
            tm_token *t = emit(L, T_FLOAT, L->line);
            char buf[128];
            size_t nb = 0;
            for (size_t k = 0; k < len && nb < sizeof buf - 1; k++)
                if (p[k] != '_') buf[nb++] = p[k];
            buf[nb] = 0;
            t->d = strtod(buf, NULL);
            L->pos += len;
            continue;
        }
        int64_t iv;
        if ((len = match_int(L, &iv))) {
            tm_token *t = emit(L, T_INT, L->line);
            t->i = iv;
            L->pos += len;
            continue;
        }
        if ((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z') || p[0] == '_') {
            len = 1;
            while (len < n && ((p[len] >= 'a' && p[len] <= 'z') || (p[len] >= 'A' && p[len] <= 'Z') ||
                               (p[len] >= '0' && p[len] <= '9') || p[len] == '_'))
                len++;
            tm_token *t = emit(L, T_NAME, L->line);
            t->s = (tm_str){p, len};
            L->pos += len;
            continue;
        }
        if (p[0] == '\'' || p[0] == '"') {
            tm_token tmp;
            memset(&tmp, 0, sizeof tmp);
            bool ok;
            int line = L->line;
            len = match_string(L, &tmp, &ok);
            if (ok) {
                tm_token *t = emit(L, T_STRING, line);
                t->s = tmp.s;
                L->line += count_nl(p, len);
                L->pos += len;
                continue;
            }
        }
        if ((len = match_op(p, n))) {
            char c = p[0];
            if (len == 1 && (c == '(' || c == '[' || c == '{')) {
                if (L->nbal >= (int)sizeof L->balance) lex_fail(L, "brackets nested too deeply");
                L->balance[L->nbal++] = c == '(' ? ')' : c == '[' ? ']' : '}';
            } else if (len == 1 && (c == ')' || c == ']' || c == '}')) {
                if (L->nbal == 0) lex_fail(L, "unexpected '%c'", c);
                char want = L->balance[--L->nbal];
                if (want != c) lex_fail(L, "unexpected '%c', expected '%c'", c, want);
            }
            tm_token *t = emit(L, T_OP, L->line);
            t->s = (tm_str){p, len};
            L->pos += len;
            continue;
        }
        size_t cl;
        tm_utf8_next(p, n, &cl);
        size_t cpos = tm_utf8_count((tm_str){L->s, L->pos});
        if ((unsigned char)p[0] < 0x80 && p[0] >= 0x20)
            lex_fail(L, "unexpected char '%c' at %zu", p[0], cpos);
        lex_fail(L, "unexpected char '%.*s' at %zu", (int)cl, p, cpos);
    }
    /* end of input inside the tag: the parser reports what it was waiting for */
}

/* {# ... #}: everything up to the first "+#}", "-#}" (eating whitespace) or "#}" (and one \n). */
static void lex_comment(lexer *L) {
    const char *p = L->s;
    for (size_t i = L->pos; i + 1 < L->n; i++) {
        size_t end = 0;
        if (p[i] == '+' && i + 2 < L->n && p[i + 1] == '#' && p[i + 2] == '}') {
            end = i + 3;
            L->line_starting = false;
        } else if (p[i] == '-' && i + 2 < L->n && p[i + 1] == '#' && p[i + 2] == '}') {
            size_t w = ws_run(p + i + 3, L->n - i - 3);
            end = i + 3 + w;
            L->line_starting = w ? p[end - 1] == '\n' : false;
        } else if (p[i] == '#' && p[i + 1] == '}') {
            end = i + 2;
            L->line_starting = false;
            if (end < L->n && p[end] == '\n') {
                end++;
                L->line_starting = true;
            }
        }
        if (end) {
            L->line += count_nl(p + L->pos, end - L->pos);
            L->pos = end;
            return;
        }
    }
    lex_fail(L, "Missing end of comment tag");
}

/* {% raw %}: at L->pos (just after "{%" and its sign) match \s*raw\s*(-%}\s*|%}). */
static size_t match_raw_begin(lexer *L, size_t at) {
    const char *p = L->s;
    size_t i = at + ws_run(p + at, L->n - at);
    if (L->n - i < 3 || memcmp(p + i, "raw", 3)) return 0;
    i += 3;
    i += ws_run(p + i, L->n - i);
    if (L->n - i >= 3 && !memcmp(p + i, "-%}", 3)) return i + 3 + ws_run(p + i + 3, L->n - i - 3) - at;
    if (L->n - i >= 2 && !memcmp(p + i, "%}", 2)) return i + 2 - at;
    return 0;
}

static void lex_raw_body(lexer *L) {
    const char *p = L->s;
    for (size_t i = L->pos; i + 1 < L->n; i++) {
        if (p[i] != '{' || p[i + 1] != '%') continue;
        size_t j = i + 2;
        char sign = 0;
        if (j < L->n && (p[j] == '-' || p[j] == '+')) sign = p[j++];
        j += ws_run(p + j, L->n - j);
        if (L->n - j < 6 || memcmp(p + j, "endraw", 6)) continue;
        j += 6;
        j += ws_run(p + j, L->n - j);
        size_t end = 0;
        bool ls = false;
        if (L->n - j >= 3 && !memcmp(p + j, "+%}", 3)) end = j + 3;
        else if (L->n - j >= 3 && !memcmp(p + j, "-%}", 3)) {
            size_t w = ws_run(p + j + 3, L->n - j - 3);
            end = j + 3 + w;
            ls = w && p[end - 1] == '\n';
        } else if (L->n - j >= 2 && !memcmp(p + j, "%}", 2)) {
            end = j + 2;
            if (end < L->n && p[end] == '\n') end++, ls = true;
        }
        if (!end) continue;
        emit_data(L, p + L->pos, i - L->pos, sign, true);
        L->line += count_nl(p + i, end - i);
        L->pos = end;
        L->line_starting = ls;
        return;
    }
    lex_fail(L, "Missing end of raw directive");
}

tm_tokens tm_lex(tm_arena *a, const char *src, size_t len) {
    /* newline normalization: \r\n and \r become \n; one trailing newline is dropped */
    char *s = tm_alloc(a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;

    lexer L;
    memset(&L, 0, sizeof L);
    L.a = a;
    L.s = s;
    L.n = n;
    L.line = 1;
    L.line_starting = true;
    while (L.pos < L.n) {
        /* the earliest "{{", "{%" or "{#" */
        size_t t = L.pos;
        char kind = 0;
        for (; t + 1 < L.n; t++) {
            if (s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#')) {
                kind = s[t + 1];
                break;
            }
        }
        if (!kind) {
            tm_token *tok = emit(&L, T_DATA, L.line);
            tok->s = (tm_str){s + L.pos, L.n - L.pos};
            L.line += count_nl(s + L.pos, L.n - L.pos);
            break;
        }
        char sign = 0;
        if (t + 2 < L.n && (s[t + 2] == '-' || s[t + 2] == '+')) sign = s[t + 2];
        if (kind == '%') {
            size_t raw = match_raw_begin(&L, t + 2 + (sign ? 1 : 0));
            if (raw) {
                emit_data(&L, s + L.pos, t - L.pos, sign, true);
                size_t start = t + 2 + (sign ? 1 : 0);
                L.line += count_nl(s + start, raw);
                L.line_starting = s[start + raw - 1] == '\n';
                L.pos = start + raw;
                lex_raw_body(&L);
                continue;
            }
        }
        emit_data(&L, s + L.pos, t - L.pos, sign, kind != '{');
        L.pos = t + 2 + (sign ? 1 : 0);
        L.line_starting = false;
        if (kind == '#') lex_comment(&L);
        else lex_tag(&L, kind == '%');
    }
    emit(&L, T_EOF, L.line);
    return (tm_tokens){L.v, L.nv};
}
