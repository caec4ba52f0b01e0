/* api/tmpl_filters.c — jinja2's builtin filters and tests as chat templates use them, with the
 * same argument names, defaults and edge cases (case-insensitive sort/dictsort/unique/min/max,
 * generators from map/select/items that are always truthy and have no length, Markup from
 * |safe and |e). `tojson` is transformers' json.dumps(ensure_ascii=False) variant. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

/* ---------------------------------------------------------------- registry */

static const char *const all_filters[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e",
    "escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent",
    "int", "join", "last", "length", "list", "lower", "items", "map", "min", "max", "pprint",
    "random", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
    "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "trim", "truncate",
    "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr", "tojson", NULL};

static const char *const all_tests[] = {
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean",
    "false", "true", "integer", "float", "lower", "upper", "string", "mapping", "number",
    "sequence", "iterable", "callable", "sameas", "escaped", "in", "eq", "equalto", "ne", "gt",
    "greaterthan", "ge", "lt", "lessthan", "le", NULL};

static bool in_list(const char *const *list, tm_str name) {
    for (size_t i = 0; list[i]; i++)
        if (tm_eqc(name, list[i])) return true;
    return false;
}

bool tm_filter_known(tm_str name) { return in_list(all_filters, name); }
bool tm_test_known(tm_str name) { return in_list(all_tests, name); }

/* ---------------------------------------------------------------- argument binding */

bool tm_arg_given(tv v) { return !(v.k == TV_UNDEF && (v.f & TVF_MISSING)); }

void tm_bind_args(tm_render *r, const char *fname, const char *const *names, size_t nnames, tv *args,
                  size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw, tv *out) {
    for (size_t i = 0; i < nnames; i++) {
        out[i] = tv_undef();
        out[i].f = TVF_MISSING;
    }
    if (nargs > nnames)
        tm_fail(r, "%s() takes at most %zu argument(s) (%zu given)", fname, nnames, nargs);
    for (size_t i = 0; i < nargs; i++) out[i] = args[i];
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < nnames && !tm_eqc(kwnames[k], names[i])) i++;
        if (i == nnames)
            tm_fail(r, "%s() got an unexpected keyword argument '%.*s'", fname, (int)kwnames[k].n,
                    kwnames[k].p);
        if (i < nargs) tm_fail(r, "%s() got multiple values for argument '%s'", fname, names[i]);
        out[i] = kwvals[k];
    }
}

#define BIND(fname, ...)                                                                          \
    static const char *const names_[] = {__VA_ARGS__};                                            \
    tv a[sizeof names_ / sizeof names_[0]];                                                        \
    tm_bind_args(r, fname, names_, sizeof names_ / sizeof names_[0], args, nargs, kwnames, kwvals, \
                 nkw, a)

/* ---------------------------------------------------------------- helpers */

static tv gen(tm_list *l) { /* a generator: truthy, no len, consumed by iteration */
    tv v = tv_list(l);
    v.f = TVF_GEN;
    return v;
}
static bool is_gen(tv v) { return v.k == TV_LIST && (v.f & TVF_GEN); }

/* Items of an iterable for a filter (a generator is consumed). */
static tm_list *items_of(tm_render *r, tv v) { return tm_iterate(r, v); }

static tv soft_str(tm_render *r, tv v) { return v.k == TV_STR ? v : tm_str_of(r, v); }

static tv keep_markup(tv src, tm_str s) {
    tv v = tv_str(s);
    v.f = src.f & TVF_MARKUP;
    return v;
}

static tv lower_str(tm_render *r, tv v) {
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (size_t i = 0; i < v.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(v.s.p + i, v.s.n - i, &l);
        if (cp < 0x80) tm_buf_putc(&b, (char)tm_lower_cp(cp));
        else tm_buf_put_cp(&b, tm_lower_cp(cp));
        i += l;
    }
    return keep_markup(v, tm_buf_str(&b));
}

static tv upper_str(tm_render *r, tv v) {
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (size_t i = 0; i < v.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(v.s.p + i, v.s.n - i, &l);
        if (cp < 0x80) tm_buf_putc(&b, (char)tm_upper_cp(cp));
        else tm_buf_put_cp(&b, tm_upper_cp(cp));
        i += l;
    }
    return keep_markup(v, tm_buf_str(&b));
}

/* For case-insensitive comparisons: strings lowered, everything else as is. */
static tv ignore_case(tm_render *r, tv v, bool case_sensitive) {
    return (!case_sensitive && v.k == TV_STR) ? lower_str(r, v) : v;
}

/* environment.getitem along a dotted path ("a.b", "0.name"). */
static tv attr_path(tm_render *r, tv item, tm_str path) {
    size_t start = 0;
    for (size_t i = 0; i <= path.n; i++) {
        if (i < path.n && path.p[i] != '.') continue;
        tm_str part = {path.p + start, i - start};
        bool digits = part.n > 0;
        for (size_t k = 0; k < part.n; k++) digits &= part.p[k] >= '0' && part.p[k] <= '9';
        tv key = tv_str(part);
        if (digits && part.n < 18) key = tv_int(strtoll(part.p, NULL, 10));
        if (item.k == TV_UNDEF) tm_fail_undef(r, item);
        item = tm_getitem(r, item, key);
        start = i + 1;
    }
    return item;
}

/* A sort key: one attribute path, or several separated by commas (compared as a tuple). */
static tv sort_key(tm_render *r, tv item, tv attribute, bool case_sensitive) {
    if (!tm_arg_given(attribute) || attribute.k == TV_NONE) return ignore_case(r, item, case_sensitive);
    if (attribute.k == TV_INT) return ignore_case(r, tm_getitem(r, item, attribute), case_sensitive);
    if (attribute.k != TV_STR) tm_fail(r, "attribute must be a string");
    tm_str path = attribute.s;
    if (!memchr(path.p, ',', path.n))
        return ignore_case(r, attr_path(r, item, path), case_sensitive);
    tm_list *parts = tm_list_new(r, 4);
    size_t start = 0;
    for (size_t i = 0; i <= path.n; i++) {
        if (i < path.n && path.p[i] != ',') continue;
        tm_list_push(r, parts, ignore_case(r, attr_path(r, item, (tm_str){path.p + start, i - start}), case_sensitive));
        start = i + 1;
    }
    tv t = tv_list(parts);
    t.f = TVF_TUPLE;
    return t;
}

/* Stable merge sort of `items` by `keys` (same length). */
static void merge_sort(tm_render *r, tv *items, tv *keys, size_t n, bool reverse) {
    if (n < 2) return;
    tv *ti = tm_alloc(&r->arena, n * sizeof(tv)), *tk = tm_alloc(&r->arena, n * sizeof(tv));
    for (size_t width = 1; width < n; width *= 2) {
        tm_tick(r, n);
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c = tm_compare(r, keys[j], keys[i], "<");
                bool take_right = reverse ? (c > 0 && c != 2) : (c < 0);
                if (take_right) ti[k] = items[j], tk[k++] = keys[j++];
                else ti[k] = items[i], tk[k++] = keys[i++];
            }
            while (i < mid) ti[k] = items[i], tk[k++] = keys[i++];
            while (j < hi) ti[k] = items[j], tk[k++] = keys[j++];
        }
        memcpy(items, ti, n * sizeof(tv));
        memcpy(keys, tk, n * sizeof(tv));
    }
}

static tv pair(tm_render *r, tv a, tv b) {
    tm_list *l = tm_list_new(r, 2);
    l->v[0] = a;
    l->v[1] = b;
    l->n = 2;
    tv t = tv_list(l);
    t.f = TVF_TUPLE;
    return t;
}

static int64_t len_of(tm_render *r, tv v) {
    switch (v.k) {
    case TV_UNDEF: return 0;
    case TV_STR: return (int64_t)tm_utf8_count(v.s);
    case TV_LIST:
        if (is_gen(v)) tm_fail(r, "object of type 'generator' has no len()");
        return (int64_t)v.l->n;
    case TV_DICT: return (int64_t)v.m->n;
    default: tm_fail(r, "object of type '%s' has no len()", tm_type_name(v));
    }
}

/* ---------------------------------------------------------------- string filters */

static bool strip_set_has(tm_str chars, uint32_t cp) {
    for (size_t i = 0; i < chars.n;) {
        size_t l;
        if (tm_utf8_next(chars.p + i, chars.n - i, &l) == cp) return true;
        i += l;
    }
    return false;
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace. */
tv tm_strip(tm_render *r, tv s, const tm_str *chars, bool left, bool right) {
    (void)r;
    size_t start = 0, end = s.s.n;
    if (left) {
        while (start < end) {
            size_t l;
            uint32_t cp = tm_utf8_next(s.s.p + start, end - start, &l);
            if (chars ? !strip_set_has(*chars, cp) : !tm_is_space_cp(cp)) break;
            start += l;
        }
    }
    if (right) {
        size_t keep = start;
        for (size_t i = start; i < end;) {
            size_t l;
            uint32_t cp = tm_utf8_next(s.s.p + i, end - i, &l);
            i += l;
            if (chars ? !strip_set_has(*chars, cp) : !tm_is_space_cp(cp)) keep = i;
        }
        end = keep;
    }
    return keep_markup(s, (tm_str){s.s.p + start, end - start});
}

/* Python str.replace(old, new, count). */
tv tm_replace(tm_render *r, tm_str s, tm_str old, tm_str new_, int64_t count) {
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    tm_tick(r, s.n / 64);
    if (old.n == 0) { /* insert between every code point */
        int64_t done = 0;
        for (size_t i = 0; i <= s.n;) {
            if (count < 0 || done < count) {
                tm_buf_put(&b, new_.p, new_.n);
                done++;
            }
            if (i == s.n) break;
            size_t l;
            tm_utf8_next(s.p + i, s.n - i, &l);
            tm_buf_put(&b, s.p + i, l);
            i += l;
        }
        return tv_str(tm_buf_str(&b));
    }
    int64_t done = 0;
    size_t i = 0;
    while (i < s.n) {
        if ((count < 0 || done < count) && s.n - i >= old.n && !memcmp(s.p + i, old.p, old.n)) {
            tm_buf_put(&b, new_.p, new_.n);
            i += old.n;
            done++;
        } else {
            tm_buf_putc(&b, s.p[i++]);
        }
    }
    return tv_str(tm_buf_str(&b));
}

static tv do_title(tm_render *r, tv s) {
    /* words start after any of -, whitespace, (, {, [, < */
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    bool start = true;
    for (size_t i = 0; i < s.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(s.s.p + i, s.s.n - i, &l);
        bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || tm_is_space_cp(cp);
        if (sep) {
            tm_buf_put(&b, s.s.p + i, l);
            start = true;
        } else {
            tm_buf_put_cp(&b, start ? tm_upper_cp(cp) : tm_lower_cp(cp));
            start = false;
        }
        i += l;
    }
    return keep_markup(s, tm_buf_str(&b));
}

static tv do_capitalize(tm_render *r, tv s) {
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    bool first = true;
    for (size_t i = 0; i < s.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(s.s.p + i, s.s.n - i, &l);
        tm_buf_put_cp(&b, first ? tm_upper_cp(cp) : tm_lower_cp(cp));
        first = false;
        i += l;
    }
    return keep_markup(s, tm_buf_str(&b));
}

/* Python str.splitlines() boundaries. */
static size_t line_break_len(tm_str s, size_t i) {
    size_t l;
    uint32_t cp = tm_utf8_next(s.p + i, s.n - i, &l);
    if (cp == '\r' && i + 1 < s.n && s.p[i + 1] == '\n') return 2;
    if (cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x1C || cp == 0x1D ||
        cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029)
        return l;
    return 0;
}

tm_list *tm_splitlines(tm_render *r, tm_str s, bool keepends) {
    tm_list *l = tm_list_new(r, 4);
    size_t start = 0;
    for (size_t i = 0; i < s.n;) {
        size_t br = line_break_len(s, i);
        if (br) {
            tm_list_push(r, l, tv_str((tm_str){s.p + start, (keepends ? i + br : i) - start}));
            i += br;
            start = i;
        } else {
            size_t cl;
            tm_utf8_next(s.p + i, s.n - i, &cl);
            i += cl;
        }
    }
    if (start < s.n) tm_list_push(r, l, tv_str((tm_str){s.p + start, s.n - start}));
    return l;
}

static tv do_indent(tm_render *r, tv s, tv width, tv first, tv blank) {
    tm_str ind;
    if (width.k == TV_STR) {
        ind = width.s;
    } else {
        int64_t w = 4;
        if (tm_arg_given(width) && !tm_as_int(width, &w)) tm_fail(r, "indent width must be an int or a string");
        if (w < 0) w = 0;
        if (w > 4096) tm_fail(r, "indent width too large");
        char *p = tm_alloc(&r->arena, (size_t)w + 1);
        memset(p, ' ', (size_t)w);
        ind = (tm_str){p, (size_t)w};
    }
    tm_buf src;
    tm_buf_init(&src, &r->arena);
    tm_buf_put(&src, s.s.p, s.s.n);
    tm_buf_putc(&src, '\n');
    tm_list *lines = tm_splitlines(r, tm_buf_str(&src), false);
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    bool blank_too = tm_truthy(blank);
    tm_tick(r, lines->n);
    for (size_t i = 0; i < lines->n; i++) {
        tm_str line = lines->v[i].s;
        if (i > 0) {
            tm_buf_putc(&b, '\n');
            if (blank_too || line.n) tm_buf_put(&b, ind.p, ind.n);
        }
        tm_buf_put(&b, line.p, line.n);
    }
    tm_str body = tm_buf_str(&b);
    if (tm_truthy(first)) {
        tm_buf f;
        tm_buf_init(&f, &r->arena);
        tm_buf_put(&f, ind.p, ind.n);
        tm_buf_put(&f, body.p, body.n);
        body = tm_buf_str(&f);
    }
    return keep_markup(s, body);
}

/* Without autoescape jinja2 joins str() of everything: the result is never Markup. */
static tv do_join(tm_render *r, tv value, tv d, tv attribute) {
    tm_list *items = items_of(r, value);
    tv sep = tm_arg_given(d) ? tm_str_of(r, d) : tv_str(TM_LIT(""));
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    tm_tick(r, items->n);
    for (size_t i = 0; i < items->n; i++) {
        tv it = items->v[i];
        if (tm_arg_given(attribute) && attribute.k != TV_NONE) it = sort_key(r, it, attribute, true);
        if (i) tm_buf_put(&b, sep.s.p, sep.s.n);
        tm_to_str(r, &b, it);
    }
    return tv_str(tm_buf_str(&b));
}

/* ---------------------------------------------------------------- numbers */

/* Python int(str): optional whitespace and sign, digits with single underscores. */
static bool parse_py_int(tm_str s, int64_t *out) {
    size_t i = 0, n = s.n;
    while (i < n && tm_is_space_cp((unsigned char)s.p[i])) i++;
    while (n > i && tm_is_space_cp((unsigned char)s.p[n - 1])) n--;
    bool neg = false;
    if (i < n && (s.p[i] == '+' || s.p[i] == '-')) neg = s.p[i++] == '-';
    if (i >= n) return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; i < n; i++) {
        char c = s.p[i];
        if (c == '_' && prev_digit && i + 1 < n && s.p[i + 1] >= '0' && s.p[i + 1] <= '9') {
            prev_digit = false;
            continue;
        }
        if (c < '0' || c > '9') return false;
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(c - '0');
        prev_digit = true;
    }
    if (v > (uint64_t)INT64_MAX + neg) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_py_float(tm_str s, double *out) {
    char buf[128];
    size_t i = 0, n = s.n, k = 0;
    while (i < n && tm_is_space_cp((unsigned char)s.p[i])) i++;
    while (n > i && tm_is_space_cp((unsigned char)s.p[n - 1])) n--;
    if (i >= n || n - i >= sizeof buf) return false;
    for (; i < n; i++) {
        char c = s.p[i];
        if (c == '_') continue;
        if (!strchr("0123456789+-.eEinfatyINFATY", c)) return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (*end || end == buf) return false;
    *out = d;
    return true;
}

static tv do_int(tm_render *r, tv v, tv def, tv base) {
    int64_t dflt = 0, out;
    if (tm_arg_given(def)) {
        if (!tm_as_int(def, &dflt)) return def;
    }
    (void)base;
    if (v.k == TV_INT) return v;
    if (v.k == TV_BOOL) return tv_int(v.b);
    if (v.k == TV_FLOAT) {
        if (!isfinite(v.d) || fabs(v.d) >= 9.2e18) return tm_arg_given(def) ? def : tv_int(0);
        return tv_int((int64_t)v.d);
    }
    if (v.k == TV_STR) {
        if (parse_py_int(v.s, &out)) return tv_int(out);
        double d;
        if (parse_py_float(v.s, &d) && isfinite(d) && fabs(d) < 9.2e18) return tv_int((int64_t)d);
    }
    (void)r;
    return tm_arg_given(def) ? def : tv_int(dflt);
}

static tv do_float(tm_render *r, tv v, tv def) {
    (void)r;
    double d;
    if (tm_as_num(v, &d)) return tv_float(d);
    if (v.k == TV_STR && parse_py_float(v.s, &d)) return tv_float(d);
    return tm_arg_given(def) ? def : tv_float(0.0);
}

static double round_half_even(double x) {
    double f = floor(x), diff = x - f;
    if (diff > 0.5) return f + 1;
    if (diff < 0.5) return f;
    return fmod(f, 2.0) == 0 ? f : f + 1;
}

static tv do_round(tm_render *r, tv v, tv precision, tv method) {
    int64_t prec = 0;
    if (tm_arg_given(precision) && !tm_as_int(precision, &prec)) tm_fail(r, "precision must be an int");
    const char *m = "common";
    if (tm_arg_given(method)) {
        if (method.k != TV_STR) tm_fail(r, "method must be common, ceil or floor");
        if (tm_eqc(method.s, "ceil")) m = "ceil";
        else if (tm_eqc(method.s, "floor")) m = "floor";
        else if (!tm_eqc(method.s, "common")) tm_fail(r, "method must be common, ceil or floor");
    }
    double d;
    if (!tm_as_num(v, &d)) tm_fail(r, "type %s doesn't define __round__ method", tm_type_name(v));
    if (prec > 300) prec = 300;
    if (prec < -300) prec = -300;
    double scale = pow(10.0, (double)prec);
    if (m[0] == 'c' && m[1] == 'e') return tv_float(ceil(d * scale) / scale);
    if (m[0] == 'f') return tv_float(floor(d * scale) / scale);
    if (v.k != TV_FLOAT && prec >= 0) return tv_int(v.k == TV_BOOL ? v.b : v.i);
    /* Python rounds the exact decimal value; %.*f does that correctly for prec >= 0 */
    if (prec >= 0 && prec <= 17) {
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, d);
        return tv_float(strtod(buf, NULL));
    }
    return tv_float(round_half_even(d * scale) / scale);
}

/* ---------------------------------------------------------------- sequence filters */

static tv do_sort(tm_render *r, tv value, tv reverse, tv case_sensitive, tv attribute) {
    tm_list *items = items_of(r, value);
    tm_list *out = tm_list_new(r, items->n);
    tv *keys = tm_alloc(&r->arena, (items->n + 1) * sizeof(tv));
    for (size_t i = 0; i < items->n; i++) {
        out->v[i] = items->v[i];
        keys[i] = sort_key(r, items->v[i], attribute, tm_truthy(case_sensitive));
    }
    out->n = items->n;
    merge_sort(r, out->v, keys, out->n, tm_truthy(reverse));
    return tv_list(out);
}

static tv do_dictsort(tm_render *r, tv value, tv case_sensitive, tv by, tv reverse) {
    if (value.k == TV_UNDEF) tm_fail_undef(r, value);
    if (value.k != TV_DICT) tm_fail(r, "'%s' object has no attribute 'items'", tm_type_name(value));
    int pos = 0;
    if (tm_arg_given(by)) {
        if (by.k == TV_STR && tm_eqc(by.s, "value")) pos = 1;
        else if (!(by.k == TV_STR && tm_eqc(by.s, "key")))
            tm_fail(r, "You can only sort by either \"key\" or \"value\"");
    }
    size_t n = value.m->n;
    tm_list *out = tm_list_new(r, n);
    tv *keys = tm_alloc(&r->arena, (n + 1) * sizeof(tv));
    for (size_t i = 0; i < n; i++) {
        out->v[i] = pair(r, value.m->keys[i], value.m->vals[i]);
        keys[i] = ignore_case(r, pos ? value.m->vals[i] : value.m->keys[i], tm_truthy(case_sensitive));
    }
    out->n = n;
    merge_sort(r, out->v, keys, n, tm_truthy(reverse));
    return tv_list(out);
}

static tv do_unique(tm_render *r, tv value, tv case_sensitive, tv attribute) {
    tm_list *items = items_of(r, value);
    tm_list *out = tm_list_new(r, items->n);
    tm_list *seen = tm_list_new(r, items->n);
    for (size_t i = 0; i < items->n; i++) {
        tv key = sort_key(r, items->v[i], attribute, tm_truthy(case_sensitive));
        if ((key.k == TV_LIST && !(key.f & TVF_TUPLE)) || key.k == TV_DICT || key.k == TV_NS)
            tm_fail(r, "unhashable type: '%s'", tm_type_name(key)); /* jinja2 keeps a set */
        if (tm_contains(r, tv_list(seen), key)) continue;
        tm_list_push(r, seen, key);
        tm_list_push(r, out, items->v[i]);
    }
    return gen(out);
}

static tv do_minmax(tm_render *r, tv value, tv case_sensitive, tv attribute, bool want_max) {
    tm_list *items = items_of(r, value);
    if (items->n == 0) return tm_undef_hint(r, "No aggregated item, sequence was empty.");
    size_t best = 0;
    tv bestk = sort_key(r, items->v[0], attribute, tm_truthy(case_sensitive));
    for (size_t i = 1; i < items->n; i++) {
        tv k = sort_key(r, items->v[i], attribute, tm_truthy(case_sensitive));
        int c = tm_compare(r, k, bestk, want_max ? ">" : "<");
        if (c != 2 && (want_max ? c > 0 : c < 0)) best = i, bestk = k;
    }
    return items->v[best];
}

static tv do_sum(tm_render *r, tv value, tv attribute, tv start) {
    tm_list *items = items_of(r, value);
    tv acc = tm_arg_given(start) ? start : tv_int(0);
    for (size_t i = 0; i < items->n; i++) {
        tv it = items->v[i];
        if (tm_arg_given(attribute) && attribute.k != TV_NONE) it = sort_key(r, it, attribute, true);
        double x, y;
        int64_t xi, yi, z;
        if (tm_as_int(acc, &xi) && tm_as_int(it, &yi)) {
            if (__builtin_add_overflow(xi, yi, &z)) tm_fail(r, "integer overflow");
            acc = tv_int(z);
        } else if (tm_as_num(acc, &x) && tm_as_num(it, &y)) {
            acc = tv_float(x + y);
        } else {
            tm_fail(r, "unsupported operand type(s) for +: '%s' and '%s'", tm_type_name(acc),
                    tm_type_name(it));
        }
    }
    return acc;
}

static tv do_first(tm_render *r, tv value) {
    if (is_gen(value)) {
        if (!value.l->n) return tm_undef_hint(r, "No first item, sequence was empty.");
        tv v = value.l->v[0];
        memmove(value.l->v, value.l->v + 1, (value.l->n - 1) * sizeof(tv));
        value.l->n--;
        return v;
    }
    tm_list *items = tm_iterate(r, value);
    return items->n ? items->v[0] : tm_undef_hint(r, "No first item, sequence was empty.");
}

static tv do_last(tm_render *r, tv value) {
    if (value.k != TV_LIST && value.k != TV_STR && value.k != TV_DICT && value.k != TV_UNDEF)
        tm_fail(r, "'%s' object is not reversible", tm_type_name(value));
    if (is_gen(value)) tm_fail(r, "'generator' object is not reversible");
    tm_list *items = tm_iterate(r, value);
    return items->n ? items->v[items->n - 1] : tm_undef_hint(r, "No last item, sequence was empty.");
}

static tv do_reverse(tm_render *r, tv value) {
    if (value.k == TV_STR) {
        tm_list *chars = tm_iterate(r, value);
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        for (size_t i = chars->n; i-- > 0;) tm_buf_put(&b, chars->v[i].s.p, chars->v[i].s.n);
        return keep_markup(value, tm_buf_str(&b));
    }
    if (value.k != TV_LIST && value.k != TV_DICT && value.k != TV_UNDEF)
        tm_fail(r, "argument must be iterable");
    tm_list *items = items_of(r, value);
    tm_list *out = tm_list_new(r, items->n);
    for (size_t i = 0; i < items->n; i++) out->v[i] = items->v[items->n - 1 - i];
    out->n = items->n;
    return gen(out);
}

/* select/reject(test, args...) and selectattr/rejectattr(attr, test, args...). */
static tv do_select(tm_render *r, tv value, tv *args, size_t nargs, bool by_attr, bool keep_if) {
    if (!tm_truthy(value)) return gen(tm_list_new(r, 0)); /* jinja2: `if value:` */
    tm_list *items = items_of(r, value);
    size_t ai = 0;
    tv attr = tv_none();
    if (by_attr) {
        if (nargs < 1) tm_fail(r, "Missing parameter for attribute name");
        attr = args[ai++];
    }
    tm_list *out = tm_list_new(r, items->n);
    for (size_t i = 0; i < items->n; i++) {
        tm_tick(r, 0);
        tv it = items->v[i];
        tv probe = by_attr ? sort_key(r, it, attr, true) : it;
        bool ok;
        if (ai < nargs) {
            if (args[ai].k != TV_STR) tm_fail(r, "test name must be a string");
            if (!tm_test_known(args[ai].s))
                tm_fail(r, "No test named '%.*s'.", (int)args[ai].s.n, args[ai].s.p);
            ok = tm_apply_test(r, args[ai].s, probe, args + ai + 1, nargs - ai - 1);
        } else {
            ok = tm_truthy(probe);
        }
        if (ok == keep_if) tm_list_push(r, out, it);
    }
    return gen(out);
}

static tv do_map(tm_render *r, tv value, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw) {
    if (!tm_truthy(value)) return gen(tm_list_new(r, 0)); /* jinja2: `if value:` */
    tm_list *items = items_of(r, value);
    tm_list *out = tm_list_new(r, items->n);
    tv attribute = tv_undef(), def = tv_undef();
    bool by_attr = false, has_def = false;
    for (size_t k = 0; k < nkw; k++) {
        if (tm_eqc(kwnames[k], "attribute")) attribute = kwvals[k], by_attr = true;
        else if (tm_eqc(kwnames[k], "default")) def = kwvals[k], has_def = true;
    }
    if (by_attr) {
        if (nargs) tm_fail(r, "map() with attribute takes no positional arguments");
        for (size_t k = 0; k < nkw; k++)
            if (!tm_eqc(kwnames[k], "attribute") && !tm_eqc(kwnames[k], "default"))
                tm_fail(r, "Unexpected keyword argument '%.*s'", (int)kwnames[k].n, kwnames[k].p);
        for (size_t i = 0; i < items->n; i++) {
            tv v = sort_key(r, items->v[i], attribute, true);
            if (has_def && v.k == TV_UNDEF) v = def;
            tm_list_push(r, out, v);
        }
        return gen(out);
    }
    if (!nargs || args[0].k != TV_STR) tm_fail(r, "map requires a filter argument");
    tm_str fname = args[0].s;
    if (!tm_filter_known(fname)) tm_fail(r, "No filter named '%.*s'.", (int)fname.n, fname.p);
    for (size_t i = 0; i < items->n; i++)
        tm_list_push(r, out, tm_apply_filter(r, fname, items->v[i], args + 1, nargs - 1, kwnames, kwvals, nkw));
    return gen(out);
}

static tv do_batch(tm_render *r, tv value, tv linecount, tv fill) {
    int64_t n;
    if (!tm_as_int(linecount, &n) || n <= 0) tm_fail(r, "batch size must be a positive int");
    tm_list *items = items_of(r, value);
    tm_list *out = tm_list_new(r, 4);
    tm_list *cur = NULL;
    for (size_t i = 0; i < items->n; i++) {
        if (!cur || (int64_t)cur->n == n) {
            cur = tm_list_new(r, (size_t)(n < 64 ? n : 64));
            tm_list_push(r, out, tv_list(cur));
        }
        tm_list_push(r, cur, items->v[i]);
    }
    if (cur && tm_arg_given(fill) && fill.k != TV_NONE)
        while ((int64_t)cur->n < n) tm_list_push(r, cur, fill);
    return gen(out);
}

static tv do_tojson(tm_render *r, tv v, tv ensure_ascii, tv indent, tv separators, tv sort_keys) {
    const char *ind = NULL;
    if (tm_arg_given(indent) && indent.k != TV_NONE) {
        if (indent.k == TV_STR) {
            ind = tm_dup(&r->arena, indent.s.p, indent.s.n).p;
        } else {
            int64_t n;
            if (!tm_as_int(indent, &n)) tm_fail(r, "indent must be an int or a string");
            if (n < 0) n = 0;
            if (n > 256) tm_fail(r, "tojson indent too large");
            char *p = tm_alloc(&r->arena, (size_t)n + 1);
            memset(p, ' ', (size_t)n);
            ind = p;
        }
    }
    tm_str item_sep = ind ? TM_LIT(",") : TM_LIT(", "), key_sep = TM_LIT(": ");
    if (tm_arg_given(separators) && separators.k != TV_NONE) {
        if (separators.k != TV_LIST || separators.l->n != 2 || separators.l->v[0].k != TV_STR ||
            separators.l->v[1].k != TV_STR)
            tm_fail(r, "separators must be a pair of strings");
        item_sep = separators.l->v[0].s;
        key_sep = separators.l->v[1].s;
    }
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    tm_to_json(r, &b, v, tm_arg_given(ensure_ascii) && tm_truthy(ensure_ascii), ind, item_sep, key_sep,
               tm_arg_given(sort_keys) && tm_truthy(sort_keys), 0);
    return tv_str(tm_buf_str(&b));
}

static tv do_wordcount(tm_render *r, tv s) {
    (void)r;
    int64_t count = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(s.s.p + i, s.s.n - i, &l);
        bool w = cp == '_' || tm_is_alpha_cp(cp) || tm_is_digit_cp(cp) || (cp >= 0x80 && !tm_is_space_cp(cp) && tm_is_printable_cp(cp));
        if (w && !in_word) count++;
        in_word = w;
        i += l;
    }
    return tv_int(count);
}

static tv do_center(tm_render *r, tv s, tv width) {
    int64_t w = 80;
    if (tm_arg_given(width) && !tm_as_int(width, &w)) tm_fail(r, "width must be an int");
    int64_t len = (int64_t)tm_utf8_count(s.s);
    if (w <= len) return s;
    if (w > 1 << 20) tm_fail(r, "center width too large");
    int64_t total = w - len, left = total / 2 + (total & w & 1);
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (int64_t i = 0; i < left; i++) tm_buf_putc(&b, ' ');
    tm_buf_put(&b, s.s.p, s.s.n);
    for (int64_t i = 0; i < total - left; i++) tm_buf_putc(&b, ' ');
    return tv_str(tm_buf_str(&b));
}

static tv do_items(tm_render *r, tv value) {
    if (value.k == TV_UNDEF) return gen(tm_list_new(r, 0));
    if (value.k != TV_DICT) tm_fail(r, "Can only get item pairs from a mapping.");
    tm_list *out = tm_list_new(r, value.m->n);
    for (size_t i = 0; i < value.m->n; i++) out->v[i] = pair(r, value.m->keys[i], value.m->vals[i]);
    out->n = value.m->n;
    return gen(out);
}

/* ---------------------------------------------------------------- dispatch */

tv tm_apply_filter(tm_render *r, tm_str name, tv in, tv *args, size_t nargs, tm_str *kwnames,
                   tv *kwvals, size_t nkw) {
    tm_tick(r, 0);
#define IS(s) tm_eqc(name, s)
    if (IS("default") || IS("d")) {
        BIND("default", "default_value", "boolean");
        tv dv = tm_arg_given(a[0]) ? a[0] : tv_str(TM_LIT(""));
        if (in.k == TV_UNDEF || (tm_arg_given(a[1]) && tm_truthy(a[1]) && !tm_truthy(in))) return dv;
        return in;
    }
    if (IS("tojson")) {
        BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
        return do_tojson(r, in, a[0], a[1], a[2], a[3]);
    }
    if (IS("length") || IS("count")) {
        BIND("length");
        return tv_int(len_of(r, in));
    }
    if (IS("string")) {
        BIND("string");
        return soft_str(r, in);
    }
    if (IS("safe")) {
        BIND("safe");
        tv s = soft_str(r, in);
        s.f |= TVF_MARKUP;
        return s;
    }
    if (IS("e") || IS("escape")) {
        BIND("escape");
        return tm_escape_html(r, in);
    }
    if (IS("forceescape")) {
        BIND("forceescape");
        tv s = tm_str_of(r, in);
        s.f = 0;
        return tm_escape_html(r, s);
    }
    if (IS("trim")) {
        BIND("trim", "chars");
        tv s = soft_str(r, in);
        if (tm_arg_given(a[0]) && a[0].k == TV_STR) return tm_strip(r, s, &a[0].s, true, true);
        return tm_strip(r, s, NULL, true, true);
    }
    if (IS("lower") || IS("upper")) {
        BIND("lower");
        tv s = soft_str(r, in);
        return IS("lower") ? lower_str(r, s) : upper_str(r, s);
    }
    if (IS("title")) {
        BIND("title");
        return do_title(r, soft_str(r, in));
    }
    if (IS("capitalize")) {
        BIND("capitalize");
        return do_capitalize(r, soft_str(r, in));
    }
    if (IS("replace")) {
        BIND("replace", "old", "new", "count");
        int64_t count = -1;
        if (tm_arg_given(a[2]) && a[2].k != TV_NONE && !tm_as_int(a[2], &count))
            tm_fail(r, "replace count must be an int");
        tv s = tm_str_of(r, in), o = tm_str_of(r, a[0]), nw = tm_str_of(r, a[1]);
        return tm_replace(r, s.s, o.s, nw.s, count);
    }
    if (IS("join")) {
        BIND("join", "d", "attribute");
        return do_join(r, in, a[0], a[1]);
    }
    if (IS("indent")) {
        BIND("indent", "width", "first", "blank");
        /* jinja2 appends "\n" to the value itself before splitting it into lines */
        if (in.k == TV_UNDEF) tm_fail_undef(r, in);
        if (in.k == TV_LIST && !(in.f & (TVF_TUPLE | TVF_GEN))) tm_fail(r, "'list' object has no attribute 'splitlines'");
        if (in.k != TV_STR) tm_fail(r, "unsupported operand type(s) for +=: '%s' and 'str'", tm_type_name(in));
        return do_indent(r, in, a[0], a[1], a[2]);
    }
    if (IS("center")) {
        BIND("center", "width");
        return do_center(r, soft_str(r, in), a[0]);
    }
    if (IS("wordcount")) {
        BIND("wordcount");
        return do_wordcount(r, soft_str(r, in));
    }
    if (IS("format")) {
        tv s = soft_str(r, in);
        if (nkw && nargs) tm_fail(r, "can't handle positional and keyword arguments at the same time");
        if (nargs == 1) return tm_percent_format(r, s, args[0]);
        tm_list *l = tm_list_new(r, nargs);
        for (size_t i = 0; i < nargs; i++) l->v[i] = args[i];
        l->n = nargs;
        tv t = tv_list(l);
        t.f = TVF_TUPLE;
        return tm_percent_format(r, s, t);
    }
    if (IS("int")) {
        BIND("int", "default", "base");
        if (in.k == TV_UNDEF) tm_fail_undef(r, in); /* int(Undefined) raises */
        return do_int(r, in, a[0], a[1]);
    }
    if (IS("float")) {
        BIND("float", "default");
        if (in.k == TV_UNDEF) tm_fail_undef(r, in);
        return do_float(r, in, a[0]);
    }
    if (IS("abs")) {
        BIND("abs");
        if (in.k == TV_INT || in.k == TV_BOOL) {
            int64_t i;
            tm_as_int(in, &i);
            if (i == INT64_MIN) tm_fail(r, "integer overflow");
            return tv_int(i < 0 ? -i : i);
        }
        if (in.k == TV_FLOAT) return tv_float(fabs(in.d));
        tm_fail(r, "bad operand type for abs(): '%s'", tm_type_name(in));
    }
    if (IS("round")) {
        BIND("round", "precision", "method");
        return do_round(r, in, a[0], a[1]);
    }
    if (IS("list")) {
        BIND("list");
        tm_list *items = items_of(r, in);
        return tv_list(items);
    }
    if (IS("items")) {
        BIND("items");
        return do_items(r, in);
    }
    if (IS("first")) {
        BIND("first");
        return do_first(r, in);
    }
    if (IS("last")) {
        BIND("last");
        return do_last(r, in);
    }
    if (IS("reverse")) {
        BIND("reverse");
        return do_reverse(r, in);
    }
    if (IS("sort")) {
        BIND("sort", "reverse", "case_sensitive", "attribute");
        return do_sort(r, in, a[0], a[1], a[2]);
    }
    if (IS("dictsort")) {
        BIND("dictsort", "case_sensitive", "by", "reverse");
        return do_dictsort(r, in, a[0], a[1], a[2]);
    }
    if (IS("unique")) {
        BIND("unique", "case_sensitive", "attribute");
        return do_unique(r, in, a[0], a[1]);
    }
    if (IS("min") || IS("max")) {
        BIND("min", "case_sensitive", "attribute");
        return do_minmax(r, in, a[0], a[1], IS("max"));
    }
    if (IS("sum")) {
        BIND("sum", "attribute", "start");
        return do_sum(r, in, a[0], a[1]);
    }
    if (IS("select") || IS("reject") || IS("selectattr") || IS("rejectattr")) {
        if (nkw) tm_fail(r, "%.*s() takes no keyword arguments", (int)name.n, name.p);
        return do_select(r, in, args, nargs, IS("selectattr") || IS("rejectattr"),
                         IS("select") || IS("selectattr"));
    }
    if (IS("map")) return do_map(r, in, args, nargs, kwnames, kwvals, nkw);
    if (IS("batch")) {
        BIND("batch", "linecount", "fill_with");
        return do_batch(r, in, a[0], a[1]);
    }
    if (IS("attr")) {
        BIND("attr", "name");
        if (a[0].k != TV_STR) tm_fail(r, "attribute name must be a string");
        return tm_getattr(r, in, a[0].s);
    }
#undef IS
    tm_fail(r, "the filter '%.*s' is not supported", (int)name.n, name.p);
}

/* ---------------------------------------------------------------- tests */

bool tm_apply_test(tm_render *r, tm_str name, tv in, tv *args, size_t nargs) {
#define IS(s) tm_eqc(name, s)
    tm_tick(r, 0);
    size_t want = 0;
    if (IS("divisibleby") || IS("sameas") || IS("in") || IS("eq") || IS("equalto") || IS("ne") ||
        IS("gt") || IS("greaterthan") || IS("ge") || IS("lt") || IS("lessthan") || IS("le"))
        want = 1;
    if (nargs != want)
        tm_fail(r, "test '%.*s' takes %zu argument(s), %zu given", (int)name.n, name.p, want, nargs);
    tv arg = want ? args[0] : tv_none();
    int64_t i;
    if (IS("defined")) return in.k != TV_UNDEF;
    if (IS("undefined")) return in.k == TV_UNDEF;
    if (IS("none")) return in.k == TV_NONE;
    if (IS("boolean")) return in.k == TV_BOOL;
    if (IS("false")) return in.k == TV_BOOL && !in.b;
    if (IS("true")) return in.k == TV_BOOL && in.b;
    if (IS("integer")) return in.k == TV_INT;
    if (IS("float")) return in.k == TV_FLOAT;
    if (IS("number")) return in.k == TV_INT || in.k == TV_FLOAT || in.k == TV_BOOL;
    if (IS("string")) return in.k == TV_STR;
    if (IS("mapping")) return in.k == TV_DICT;
    if (IS("sequence")) /* has len() and __getitem__: Undefined has both */
        return in.k == TV_STR || in.k == TV_DICT || in.k == TV_UNDEF || (in.k == TV_LIST && !is_gen(in));
    if (IS("iterable")) return in.k == TV_STR || in.k == TV_DICT || in.k == TV_LIST || in.k == TV_UNDEF;
    if (IS("callable")) /* Undefined defines __call__ (to raise), so callable() is true */
        return in.k == TV_MACRO || in.k == TV_FUNC || in.k == TV_METHOD || in.k == TV_UNDEF;
    if (IS("escaped")) return in.k == TV_STR && (in.f & TVF_MARKUP);
    if (IS("lower") || IS("upper")) {
        tv s = soft_str(r, in);
        bool cased = false;
        for (size_t k = 0; k < s.s.n;) {
            size_t l;
            uint32_t cp = tm_utf8_next(s.s.p + k, s.s.n - k, &l);
            k += l;
            bool is_up = tm_lower_cp(cp) != cp, is_low = tm_upper_cp(cp) != cp;
            if (IS("lower") ? is_up : is_low) return false;
            if (is_up || is_low) cased = true;
        }
        return cased;
    }
    if (IS("odd") || IS("even")) { /* value % 2 == 1 / == 0 */
        if (in.k == TV_FLOAT) {
            double m = fmod(in.d, 2.0);
            if (m < 0) m += 2.0;
            return IS("odd") ? m == 1.0 : m == 0.0;
        }
        if (!tm_as_int(in, &i)) {
            if (in.k == TV_UNDEF) tm_fail_undef(r, in);
            if (in.k == TV_STR) tm_fail(r, "not all arguments converted during string formatting");
            tm_fail(r, "unsupported operand type(s) for %%: '%s' and 'int'", tm_type_name(in));
        }
        bool odd = (i % 2) != 0;
        return IS("odd") ? odd : !odd;
    }
    if (IS("divisibleby")) { /* value % num == 0, with Python's errors */
        int64_t d;
        if (!tm_as_int(in, &i) || !tm_as_int(arg, &d)) {
            if (in.k == TV_STR) tm_fail(r, "not all arguments converted during string formatting");
            if (in.k == TV_UNDEF) tm_fail_undef(r, in);
            if (arg.k == TV_UNDEF) tm_fail_undef(r, arg);
            double x, y;
            if (tm_as_num(in, &x) && tm_as_num(arg, &y)) {
                if (y == 0) tm_fail(r, "float modulo");
                return fmod(x, y) == 0;
            }
            tm_fail(r, "unsupported operand type(s) for %%: '%s' and '%s'", tm_type_name(in), tm_type_name(arg));
        }
        if (d == 0) tm_fail(r, "integer division or modulo by zero");
        return d == -1 || i % d == 0;
    }
    if (IS("sameas")) {
        if (in.k != arg.k) return false;
        switch (in.k) {
        case TV_NONE: case TV_UNDEF: return in.k == TV_NONE;
        case TV_BOOL: return in.b == arg.b;
        case TV_INT: return in.i == arg.i && in.i >= -5 && in.i <= 256;
        case TV_LIST: return in.l == arg.l;
        case TV_DICT: case TV_NS: return in.m == arg.m;
        case TV_STR: return in.s.p == arg.s.p && in.s.n == arg.s.n;
        default: return false;
        }
    }
    if (IS("in")) return tm_contains(r, arg, in);
    if (IS("eq") || IS("equalto")) return tm_equal(r, in, arg);
    if (IS("ne")) return !tm_equal(r, in, arg);
    if (IS("gt") || IS("greaterthan")) return tm_compare(r, in, arg, ">") == 1;
    if (IS("ge")) { int c = tm_compare(r, in, arg, ">="); return c >= 0 && c != 2; }
    if (IS("lt") || IS("lessthan")) return tm_compare(r, in, arg, "<") == -1;
    if (IS("le")) return tm_compare(r, in, arg, "<=") <= 0;
    if (IS("filter")) return in.k == TV_STR && tm_filter_known(in.s);
    if (IS("test")) return in.k == TV_STR && tm_test_known(in.s);
#undef IS
    tm_fail(r, "the test '%.*s' is not supported", (int)name.n, name.p);
}
