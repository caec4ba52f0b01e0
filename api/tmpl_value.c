/* api/tmpl_value.c — the template value model with Python semantics: lists and ordered dicts
 * (shared by reference, mutable), undefined values that remember why (for jinja2's messages),
 * truthiness, ==, ordering, `in`, str() and repr() exactly as Python prints them, json.dumps
 * output (indent, separators, sort_keys, ensure_ascii) and conversion from cJSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

#define TM_MAX_NEST 200 /* nesting of lists/dicts walked by repr/json/==; deeper = circular */

static void nest_enter(tm_render *r, int *depth) {
    if (++*depth > TM_MAX_NEST) tm_fail(r, "maximum recursion depth exceeded (circular or too deeply nested value)");
}

/* ---------------------------------------------------------------- containers */

tm_list *tm_list_new(tm_render *r, size_t cap) {
    tm_list *l = tm_alloc(&r->arena, sizeof *l);
    if (cap) {
        l->v = tm_alloc(&r->arena, cap * sizeof *l->v);
        l->cap = cap;
    }
    return l;
}

void tm_list_push(tm_render *r, tm_list *l, tv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        l->v = tm_realloc(&r->arena, l->v, l->n * sizeof *l->v, cap * sizeof *l->v);
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

tm_dict *tm_dict_new(tm_render *r, size_t cap) {
    tm_dict *m = tm_alloc(&r->arena, sizeof *m);
    if (cap) {
        m->keys = tm_alloc(&r->arena, cap * sizeof *m->keys);
        m->vals = tm_alloc(&r->arena, cap * sizeof *m->vals);
        m->cap = cap;
    }
    return m;
}

static void check_hashable(tm_render *r, tv key) {
    if (key.k == TV_LIST && !(key.f & TVF_TUPLE)) tm_fail(r, "unhashable type: 'list'");
    if (key.k == TV_DICT) tm_fail(r, "unhashable type: 'dict'");
}

tv *tm_dict_get(tm_render *r, const tm_dict *m, tv key) {
    if (key.k == TV_STR) { /* the common case: no Python equality needed */
        for (size_t i = 0; i < m->n; i++)
            if (m->keys[i].k == TV_STR && tm_eq(m->keys[i].s, key.s)) return &m->vals[i];
        return NULL;
    }
    check_hashable(r, key);
    tm_tick(r, m->n / 16);
    for (size_t i = 0; i < m->n; i++)
        if (tm_equal(r, m->keys[i], key)) return &m->vals[i];
    return NULL;
}

tv *tm_dict_getc(const tm_dict *m, const char *key) {
    tm_str k = tm_cstr(key);
    for (size_t i = 0; i < m->n; i++)
        if (m->keys[i].k == TV_STR && tm_eq(m->keys[i].s, k)) return &m->vals[i];
    return NULL;
}

void tm_dict_set(tm_render *r, tm_dict *m, tv key, tv val) {
    tv *slot = tm_dict_get(r, m, key);
    if (slot) {
        *slot = val;
        return;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        m->keys = tm_realloc(&r->arena, m->keys, m->n * sizeof *m->keys, cap * sizeof *m->keys);
        m->vals = tm_realloc(&r->arena, m->vals, m->n * sizeof *m->vals, cap * sizeof *m->vals);
        m->cap = cap;
    }
    m->keys[m->n] = key;
    m->vals[m->n] = val;
    m->n++;
}

bool tm_dict_del(tm_render *r, tm_dict *m, tv key) {
    tv *slot = tm_dict_get(r, m, key);
    if (!slot) return false;
    size_t i = (size_t)(slot - m->vals);
    memmove(m->keys + i, m->keys + i + 1, (m->n - i - 1) * sizeof *m->keys);
    memmove(m->vals + i, m->vals + i + 1, (m->n - i - 1) * sizeof *m->vals);
    m->n--;
    return true;
}

/* ---------------------------------------------------------------- undefined */

static tv undef_with(tm_render *r, tu_kind kind, tv obj, tm_str name) {
    tm_undef *u = tm_alloc(&r->arena, sizeof *u);
    u->kind = kind;
    u->objtype = tm_object_repr(obj);
    u->name = name;
    tv v = tv_undef();
    v.u = u;
    return v;
}

tv tm_undef_name(tm_render *r, tm_str name) { return undef_with(r, TU_NAME, tv_none(), name); }
tv tm_undef_attr(tm_render *r, tv obj, tm_str name) { return undef_with(r, TU_ATTR, obj, name); }
tv tm_undef_elem(tm_render *r, tv obj, tv key) {
    tv v = undef_with(r, TU_ELEM, obj, (tm_str){0});
    v.u->key = key;
    return v;
}
tv tm_undef_hint(tm_render *r, const char *msg) {
    return undef_with(r, TU_HINT, tv_none(), tm_dup(&r->arena, msg, strlen(msg)));
}

tv tm_new_str(tm_render *r, const char *p, size_t n) { return tv_str(tm_dup(&r->arena, p, n)); }

/* ---------------------------------------------------------------- type names, truth */

const char *tm_type_name(tv v) {
    switch (v.k) {
    case TV_UNDEF: return "Undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return (v.f & TVF_MARKUP) ? "Markup" : "str";
    case TV_LIST: return (v.f & TVF_GEN) ? "generator" : (v.f & TVF_TUPLE) ? "tuple" : "list";
    case TV_DICT: return "dict";
    case TV_NS: return "Namespace";
    case TV_MACRO: return "Macro";
    case TV_FUNC: return "function";
    case TV_METHOD: return "builtin_function_or_method";
    case TV_LOOP: return "LoopContext";
    }
    return "object";
}

const char *tm_object_repr(tv v) {
    switch (v.k) {
    case TV_NONE: return "None";
    case TV_UNDEF: return "jinja2.runtime.Undefined object";
    case TV_STR: return (v.f & TVF_MARKUP) ? "markupsafe.Markup object" : "str object";
    case TV_NS: return "jinja2.utils.Namespace object";
    case TV_MACRO: return "jinja2.runtime.Macro object";
    case TV_LOOP: return "jinja2.runtime.LoopContext object";
    case TV_BOOL: return "bool object";
    case TV_INT: return "int object";
    case TV_FLOAT: return "float object";
    case TV_LIST: return (v.f & TVF_GEN) ? "generator object" : (v.f & TVF_TUPLE) ? "tuple object" : "list object";
    case TV_DICT: return "dict object";
    case TV_FUNC: return "function object";
    case TV_METHOD: return "builtin_function_or_method object";
    }
    return "object";
}

bool tm_truthy(tv v) {
    switch (v.k) {
    case TV_UNDEF: case TV_NONE: return false;
    case TV_BOOL: return v.b;
    case TV_INT: return v.i != 0;
    case TV_FLOAT: return v.d != 0.0;
    case TV_STR: return v.s.n > 0;
    case TV_LIST: return (v.f & TVF_GEN) || v.l->n > 0;
    case TV_DICT: return v.m->n > 0;
    default: return true;
    }
}

bool tm_as_int(tv v, int64_t *out) {
    if (v.k == TV_INT) *out = v.i;
    else if (v.k == TV_BOOL) *out = v.b;
    else return false;
    return true;
}

bool tm_as_num(tv v, double *out) {
    if (v.k == TV_FLOAT) *out = v.d;
    else if (v.k == TV_INT) *out = (double)v.i;
    else if (v.k == TV_BOOL) *out = v.b;
    else return false;
    return true;
}

/* ---------------------------------------------------------------- equality, ordering */

static bool is_num(tv v) { return v.k == TV_INT || v.k == TV_BOOL || v.k == TV_FLOAT; }

/* int vs float compared exactly, as Python does. */
static int num_cmp(tv a, tv b) {
    if (a.k != TV_FLOAT && b.k != TV_FLOAT) {
        int64_t x = 0, y = 0;
        tm_as_int(a, &x);
        tm_as_int(b, &y);
        return (x > y) - (x < y);
    }
    double x = 0, y = 0;
    tm_as_num(a, &x);
    tm_as_num(b, &y);
    if (isnan(x) || isnan(y)) return 2; /* unordered */
    if (a.k != TV_FLOAT && fabs(y) < 9.2e18 && y == floor(y)) {
        int64_t xi = 0, yi = (int64_t)y;
        tm_as_int(a, &xi);
        return (xi > yi) - (xi < yi);
    }
    if (b.k != TV_FLOAT && fabs(x) < 9.2e18 && x == floor(x)) {
        int64_t yi = 0, xi = (int64_t)x;
        tm_as_int(b, &yi);
        return (xi > yi) - (xi < yi);
    }
    return (x > y) - (x < y);
}

static int str_cmp(tm_str a, tm_str b) {
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return (a.n > b.n) - (a.n < b.n);
}

static bool equal_rec(tm_render *r, tv a, tv b, int *depth) {
    if (is_num(a) && is_num(b)) return num_cmp(a, b) == 0;
    if (a.k != b.k) return false;
    switch (a.k) {
    case TV_UNDEF: case TV_NONE: return true;
    case TV_STR: return tm_eq(a.s, b.s);
    case TV_LIST: {
        if ((a.f | b.f) & TVF_GEN) return a.l == b.l;
        if ((a.f & TVF_TUPLE) != (b.f & TVF_TUPLE) || a.l->n != b.l->n) return false;
        if (a.l == b.l) return true;
        nest_enter(r, depth);
        tm_tick(r, a.l->n);
        for (size_t i = 0; i < a.l->n; i++)
            if (!equal_rec(r, a.l->v[i], b.l->v[i], depth)) {
                --*depth;
                return false;
            }
        --*depth;
        return true;
    }
    case TV_DICT: {
        if (a.m->n != b.m->n) return false;
        if (a.m == b.m) return true;
        nest_enter(r, depth);
        tm_tick(r, a.m->n);
        for (size_t i = 0; i < a.m->n; i++) {
            tv *o = tm_dict_get(r, b.m, a.m->keys[i]);
            if (!o || !equal_rec(r, a.m->vals[i], *o, depth)) {
                --*depth;
                return false;
            }
        }
        --*depth;
        return true;
    }
    case TV_NS: return a.m == b.m;
    case TV_MACRO: return a.mac == b.mac;
    case TV_FUNC: return a.fn == b.fn;
    case TV_LOOP: return a.loop == b.loop;
    case TV_METHOD:
        return tm_eq(a.meth->name, b.meth->name) && equal_rec(r, a.meth->self, b.meth->self, depth);
    }
    return false;
}

bool tm_equal(tm_render *r, tv a, tv b) {
    int depth = 0;
    return equal_rec(r, a, b, &depth);
}

int tm_compare(tm_render *r, tv a, tv b, const char *opname) {
    if (a.k == TV_UNDEF) tm_fail_undef(r, a);
    if (b.k == TV_UNDEF) tm_fail_undef(r, b);
    if (is_num(a) && is_num(b)) {
        int c = num_cmp(a, b);
        return c == 2 ? 2 : c;
    }
    if (a.k == TV_STR && b.k == TV_STR) return str_cmp(a.s, b.s);
    if (a.k == TV_LIST && b.k == TV_LIST && (a.f & TVF_TUPLE) == (b.f & TVF_TUPLE)) {
        size_t n = a.l->n < b.l->n ? a.l->n : b.l->n;
        tm_tick(r, n);
        for (size_t i = 0; i < n; i++) {
            if (tm_equal(r, a.l->v[i], b.l->v[i])) continue;
            return tm_compare(r, a.l->v[i], b.l->v[i], opname);
        }
        return (a.l->n > b.l->n) - (a.l->n < b.l->n);
    }
    tm_fail(r, "'%s' not supported between instances of '%s' and '%s'", opname, tm_type_name(a),
            tm_type_name(b));
}

bool tm_contains(tm_render *r, tv c, tv item) {
    switch (c.k) {
    case TV_UNDEF: return false;
    case TV_STR:
        if (item.k != TV_STR)
            tm_fail(r, "'in <string>' requires string as left operand, not %s", tm_type_name(item));
        if (item.s.n == 0) return true;
        if (item.s.n > c.s.n) return false;
        tm_tick(r, c.s.n / 64);
        for (size_t i = 0; i + item.s.n <= c.s.n; i++)
            if (!memcmp(c.s.p + i, item.s.p, item.s.n)) return true;
        return false;
    case TV_LIST:
        tm_tick(r, c.l->n);
        for (size_t i = 0; i < c.l->n; i++)
            if (tm_equal(r, c.l->v[i], item)) return true;
        return false;
    case TV_DICT: return tm_dict_get(r, c.m, item) != NULL;
    default: tm_fail(r, "argument of type '%s' is not iterable", tm_type_name(c));
    }
}

/* ---------------------------------------------------------------- str() and repr() */

static void repr_str(tm_buf *b, tm_str s) {
    bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    tm_buf_putc(b, q);
    for (size_t i = 0; i < s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(s.p + i, s.n - i, &l);
        if (cp == (uint32_t)q || cp == '\\') {
            tm_buf_putc(b, '\\');
            tm_buf_putc(b, (char)cp);
        } else if (cp == '\n') tm_buf_puts(b, "\\n");
        else if (cp == '\r') tm_buf_puts(b, "\\r");
        else if (cp == '\t') tm_buf_puts(b, "\\t");
        else if (tm_is_printable_cp(cp)) tm_buf_put(b, s.p + i, l);
        else if (cp < 0x100) tm_buf_printf(b, "\\x%02x", cp);
        else if (cp < 0x10000) tm_buf_printf(b, "\\u%04x", cp);
        else tm_buf_printf(b, "\\U%08x", cp);
        i += l;
    }
    tm_buf_putc(b, q);
}

static void repr_rec(tm_render *r, tm_buf *b, tv v, int *depth);

static void str_rec(tm_render *r, tm_buf *b, tv v, int *depth) {
    char num[40];
    switch (v.k) {
    case TV_UNDEF: return;
    case TV_STR: tm_buf_put(b, v.s.p, v.s.n); return;
    case TV_NONE: tm_buf_puts(b, "None"); return;
    case TV_BOOL: tm_buf_puts(b, v.b ? "True" : "False"); return;
    case TV_INT: tm_buf_printf(b, "%lld", (long long)v.i); return;
    case TV_FLOAT: tm_fmt_float(num, v.d); tm_buf_puts(b, num); return;
    case TV_NS:
        tm_buf_puts(b, "<Namespace ");
        repr_rec(r, b, tv_dict(v.m), depth);
        tm_buf_putc(b, '>');
        return;
    case TV_MACRO: tm_buf_printf(b, "<Macro '%.*s'>", (int)v.mac->def->name.n, v.mac->def->name.p); return;
    case TV_FUNC: tm_buf_printf(b, "<function %s>", tm_global_name(v.fn)); return;
    case TV_METHOD:
        tm_buf_printf(b, "<built-in method %.*s of %s>", (int)v.meth->name.n, v.meth->name.p,
                      tm_object_repr(v.meth->self));
        return;
    case TV_LOOP:
        tm_buf_printf(b, "<LoopContext %zu/%zu>", v.loop->index0 + 1, v.loop->items->n);
        return;
    default: repr_rec(r, b, v, depth);
    }
}

static void repr_rec(tm_render *r, tm_buf *b, tv v, int *depth) {
    switch (v.k) {
    case TV_UNDEF: tm_buf_puts(b, "Undefined"); return;
    case TV_STR:
        if (v.f & TVF_MARKUP) {
            tm_buf_puts(b, "Markup(");
            repr_str(b, v.s);
            tm_buf_putc(b, ')');
        } else {
            repr_str(b, v.s);
        }
        return;
    case TV_LIST: {
        bool tup = v.f & TVF_TUPLE;
        if (v.f & TVF_GEN) {
            tm_buf_puts(b, "<generator object>");
            return;
        }
        nest_enter(r, depth);
        tm_tick(r, v.l->n);
        tm_buf_putc(b, tup ? '(' : '[');
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) tm_buf_puts(b, ", ");
            repr_rec(r, b, v.l->v[i], depth);
        }
        if (tup && v.l->n == 1) tm_buf_putc(b, ',');
        tm_buf_putc(b, tup ? ')' : ']');
        --*depth;
        return;
    }
    case TV_DICT:
        nest_enter(r, depth);
        tm_tick(r, v.m->n);
        tm_buf_putc(b, '{');
        for (size_t i = 0; i < v.m->n; i++) {
            if (i) tm_buf_puts(b, ", ");
            repr_rec(r, b, v.m->keys[i], depth);
            tm_buf_puts(b, ": ");
            repr_rec(r, b, v.m->vals[i], depth);
        }
        tm_buf_putc(b, '}');
        --*depth;
        return;
    default: str_rec(r, b, v, depth);
    }
}

void tm_to_str(tm_render *r, tm_buf *b, tv v) {
    int depth = 0;
    str_rec(r, b, v, &depth);
}

void tm_repr(tm_render *r, tm_buf *b, tv v) {
    int depth = 0;
    repr_rec(r, b, v, &depth);
}

tv tm_str_of(tm_render *r, tv v) {
    if (v.k == TV_STR) return v;
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    tm_to_str(r, &b, v);
    return tv_str(tm_buf_str(&b));
}

/* ---------------------------------------------------------------- json.dumps */

static void json_str(tm_buf *b, tm_str s, bool ensure_ascii) {
    tm_buf_putc(b, '"');
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < s.n;) {
        unsigned char c = (unsigned char)s.p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        }
        if (!esc && c >= 0x20 && (c < 0x7F || (!ensure_ascii && c >= 0x80) || (!ensure_ascii && c == 0x7F))) {
            run++;
            i++;
            continue;
        }
        tm_buf_put(b, s.p + i - run, run);
        run = 0;
        if (esc) {
            tm_buf_puts(b, esc);
            i++;
        } else if (c < 0x80) {
            tm_buf_printf(b, "\\u%04x", c);
            i++;
        } else {
            size_t l;
            uint32_t cp = tm_utf8_next(s.p + i, s.n - i, &l);
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                tm_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                tm_buf_printf(b, "\\u%04x", cp);
            }
            i += l;
        }
    }
    tm_buf_put(b, s.p + s.n - run, run);
    tm_buf_putc(b, '"');
}

static void json_float(tm_buf *b, double d) {
    if (isnan(d)) tm_buf_puts(b, "NaN");
    else if (isinf(d)) tm_buf_puts(b, d < 0 ? "-Infinity" : "Infinity");
    else {
        char num[40];
        tm_fmt_float(num, d);
        tm_buf_puts(b, num);
    }
}

static void json_newline(tm_buf *b, const char *indent, int level) {
    tm_buf_putc(b, '\n');
    for (int i = 0; i < level; i++) tm_buf_puts(b, indent);
}

/* A dict key as json.dumps turns it into a string. */
static tm_str json_key(tm_render *r, tv k) {
    char num[40];
    switch (k.k) {
    case TV_STR: return k.s;
    case TV_BOOL: return tm_cstr(k.b ? "true" : "false");
    case TV_NONE: return tm_cstr("null");
    case TV_INT: snprintf(num, sizeof num, "%lld", (long long)k.i); return tm_dup(&r->arena, num, strlen(num));
    case TV_FLOAT: {
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        json_float(&b, k.d);
        return tm_buf_str(&b);
    }
    default: tm_fail(r, "keys must be str, int, float, bool or None, not %s", tm_type_name(k));
    }
}

static void sort_indices(tm_render *r, tv *keys, size_t *idx, size_t n) {
    /* insertion sort on indices, stable; key lists are small */
    tm_tick(r, n * n / 8);
    for (size_t i = 1; i < n; i++) {
        size_t x = idx[i], j = i;
        while (j > 0 && tm_compare(r, keys[idx[j - 1]], keys[x], "<") > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = x;
    }
}

static void json_rec(tm_render *r, tm_buf *b, tv v, bool ensure_ascii, const char *indent,
                     tm_str item_sep, tm_str key_sep, bool sort_keys, int level, int *depth) {
    char num[40];
    switch (v.k) {
    case TV_NONE: tm_buf_puts(b, "null"); return;
    case TV_BOOL: tm_buf_puts(b, v.b ? "true" : "false"); return;
    case TV_INT: snprintf(num, sizeof num, "%lld", (long long)v.i); tm_buf_puts(b, num); return;
    case TV_FLOAT: json_float(b, v.d); return;
    case TV_STR: json_str(b, v.s, ensure_ascii); return;
    case TV_LIST:
        if (v.f & TVF_GEN) tm_fail(r, "Object of type generator is not JSON serializable");
        if (v.l->n == 0) {
            tm_buf_puts(b, "[]");
            return;
        }
        nest_enter(r, depth);
        tm_tick(r, v.l->n);
        tm_buf_putc(b, '[');
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) tm_buf_put(b, item_sep.p, item_sep.n);
            if (indent) json_newline(b, indent, level + 1);
            json_rec(r, b, v.l->v[i], ensure_ascii, indent, item_sep, key_sep, sort_keys, level + 1, depth);
        }
        if (indent) json_newline(b, indent, level);
        tm_buf_putc(b, ']');
        --*depth;
        return;
    case TV_DICT: {
        if (v.m->n == 0) {
            tm_buf_puts(b, "{}");
            return;
        }
        nest_enter(r, depth);
        tm_tick(r, v.m->n);
        size_t *idx = tm_alloc(&r->arena, v.m->n * sizeof *idx);
        for (size_t i = 0; i < v.m->n; i++) idx[i] = i;
        if (sort_keys) sort_indices(r, v.m->keys, idx, v.m->n);
        tm_buf_putc(b, '{');
        for (size_t i = 0; i < v.m->n; i++) {
            if (i) tm_buf_put(b, item_sep.p, item_sep.n);
            if (indent) json_newline(b, indent, level + 1);
            json_str(b, json_key(r, v.m->keys[idx[i]]), ensure_ascii);
            tm_buf_put(b, key_sep.p, key_sep.n);
            json_rec(r, b, v.m->vals[idx[i]], ensure_ascii, indent, item_sep, key_sep, sort_keys,
                     level + 1, depth);
        }
        if (indent) json_newline(b, indent, level);
        tm_buf_putc(b, '}');
        --*depth;
        return;
    }
    default: tm_fail(r, "Object of type %s is not JSON serializable", tm_type_name(v));
    }
}

void tm_to_json(tm_render *r, tm_buf *b, tv v, bool ensure_ascii, const char *indent,
                tm_str item_sep, tm_str key_sep, bool sort_keys, int level) {
    int depth = 0;
    json_rec(r, b, v, ensure_ascii, indent, item_sep, key_sep, sort_keys, level, &depth);
}

/* ---------------------------------------------------------------- cJSON in */

tv tm_from_cjson(tm_render *r, const cJSON *j, int depth) {
    if (depth > TM_MAX_NEST) tm_fail(r, "context JSON nested too deeply");
    if (!j || cJSON_IsNull(j)) return tv_none();
    if (cJSON_IsTrue(j)) return tv_bool(true);
    if (cJSON_IsFalse(j)) return tv_bool(false);
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) return tv_int((int64_t)d);
        return tv_float(d);
    }
    if (cJSON_IsString(j)) return tv_str(tm_cstr(j->valuestring ? j->valuestring : ""));
    if (cJSON_IsArray(j)) {
        tm_list *l = tm_list_new(r, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            tm_tick(r, 1);
            tm_list_push(r, l, tm_from_cjson(r, c, depth + 1));
        }
        return tv_list(l);
    }
    if (cJSON_IsObject(j)) {
        tm_dict *m = tm_dict_new(r, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            tm_tick(r, 1);
            tv key = tv_str(tm_cstr(c->string ? c->string : ""));
            tm_dict_set(r, m, key, tm_from_cjson(r, c, depth + 1));
        }
        return tv_dict(m);
    }
    return tv_none();
}

/* ---------------------------------------------------------------- iteration, escaping */

tm_list *tm_iterate(tm_render *r, tv v) {
    switch (v.k) {
    case TV_UNDEF: return tm_list_new(r, 0);
    case TV_LIST: {
        tm_list *l = tm_list_new(r, v.l->n);
        if (v.l->n) memcpy(l->v, v.l->v, v.l->n * sizeof *l->v);
        l->n = v.l->n;
        if (v.f & TVF_GEN) v.l->n = 0; /* a generator is used up */
        return l;
    }
    case TV_DICT: {
        tm_list *l = tm_list_new(r, v.m->n);
        if (v.m->n) memcpy(l->v, v.m->keys, v.m->n * sizeof *l->v);
        l->n = v.m->n;
        return l;
    }
    case TV_STR: {
        tm_list *l = tm_list_new(r, v.s.n);
        tm_tick(r, v.s.n / 8);
        for (size_t i = 0; i < v.s.n;) {
            size_t len;
            tm_utf8_next(v.s.p + i, v.s.n - i, &len);
            tm_list_push(r, l, tv_str((tm_str){v.s.p + i, len})); /* iterating a Markup gives str */
            i += len;
        }
        return l;
    }
    default: tm_fail(r, "'%s' object is not iterable", tm_type_name(v));
    }
}

tv tm_escape_html(tm_render *r, tv v) {
    if (v.k == TV_STR && (v.f & TVF_MARKUP)) return v;
    tv s = tm_str_of(r, v);
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (size_t i = 0; i < s.s.n; i++) {
        char c = s.s.p[i];
        switch (c) {
        case '&': tm_buf_puts(&b, "&amp;"); break;
        case '<': tm_buf_puts(&b, "&lt;"); break;
        case '>': tm_buf_puts(&b, "&gt;"); break;
        case '\'': tm_buf_puts(&b, "&#39;"); break;
        case '"': tm_buf_puts(&b, "&#34;"); break;
        default: tm_buf_putc(&b, c);
        }
    }
    tv out = tv_str(tm_buf_str(&b));
    out.f = TVF_MARKUP;
    return out;
}
