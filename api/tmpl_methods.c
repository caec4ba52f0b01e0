/* api/tmpl_methods.c — Python methods that templates call on values (str.split/strip/startswith/
 * format/..., dict.get/items/keys/values/pop/update, list.append/pop/index/...), the `loop`
 * object's cycle()/changed(), str.format and %-formatting, and the globals of the environment:
 * range (with the sandbox's 100000 cap), namespace, dict, raise_exception, strftime_now. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "api/tmpl_impl.h"

#define BIND(fname, ...)                                                                          \
    static const char *const names_[] = {__VA_ARGS__};                                            \
    tv a[sizeof names_ / sizeof names_[0]];                                                        \
    tm_bind_args(r, fname, names_, sizeof names_ / sizeof names_[0], args, nargs, kwnames, kwvals, \
                 nkw, a)

/* Python's str, dict and list method names: attribute access yields a (truthy) bound method for
 * each, even the ones not implemented here, so `x.items` and `d['items']` behave as in Python. */
static const char *const str_methods[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
    "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join",
    "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace",
    "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill", NULL};
static const char *const dict_methods[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                           "pop", "popitem", "setdefault", "update", "values", NULL};
static const char *const list_methods[] = {"append", "clear", "copy", "count", "extend", "index",
                                           "insert", "pop", "remove", "reverse", "sort", NULL};
static const char *const tuple_methods[] = {"count", "index", NULL};
static const char *const loop_methods[] = {"cycle", "changed", NULL};

static bool in_list(const char *const *list, tm_str name) {
    for (size_t i = 0; list[i]; i++)
        if (tm_eqc(name, list[i])) return true;
    return false;
}

bool tm_has_method(tv self, tm_str name) {
    switch (self.k) {
    case TV_STR: return in_list(str_methods, name);
    case TV_DICT: return in_list(dict_methods, name);
    case TV_LIST:
        if (self.f & TVF_GEN) return false;
        return in_list((self.f & TVF_TUPLE) ? tuple_methods : list_methods, name);
    case TV_LOOP: return in_list(loop_methods, name);
    default: return false;
    }
}

/* ---------------------------------------------------------------- str helpers */

static tv keep_markup(tv src, tm_str s) {
    tv v = tv_str(s);
    v.f = src.f & TVF_MARKUP;
    return v;
}

static tm_str need_str(tm_render *r, tv v, const char *what) {
    if (v.k != TV_STR) {
        if (v.k == TV_UNDEF) tm_fail_undef(r, v);
        tm_fail(r, "%s must be str, not %s", what, tm_type_name(v));
    }
    return v.s;
}

/* Optional code-point start/end arguments -> a byte range of s. */
static void sub_range(tm_render *r, tm_str s, tv start, tv end, size_t *from, size_t *to) {
    int64_t n = (int64_t)tm_utf8_count(s), a = 0, b = n;
    if (tm_arg_given(start) && start.k != TV_NONE && !tm_as_int(start, &a))
        tm_fail(r, "slice indices must be integers or None");
    if (tm_arg_given(end) && end.k != TV_NONE && !tm_as_int(end, &b))
        tm_fail(r, "slice indices must be integers or None");
    if (a < 0) a = a + n < 0 ? 0 : a + n;
    if (b < 0) b = b + n < 0 ? 0 : b + n;
    if (a > n) a = n;
    if (b > n) b = n;
    if (b < a) b = a;
    *from = tm_utf8_offset(s, (size_t)a);
    *to = tm_utf8_offset(s, (size_t)b);
}

static bool has_prefix_at(tm_str s, size_t from, size_t to, tm_str p, bool suffix) {
    if (to - from < p.n) return false;
    return !memcmp(s.p + (suffix ? to - p.n : from), p.p, p.n);
}

static tv starts_ends(tm_render *r, tv self, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals,
                      size_t nkw, bool suffix) {
    BIND(suffix ? "endswith" : "startswith", "prefix", "start", "end");
    size_t from, to;
    sub_range(r, self.s, a[1], a[2], &from, &to);
    if (a[0].k == TV_LIST && (a[0].f & TVF_TUPLE)) {
        for (size_t i = 0; i < a[0].l->n; i++)
            if (has_prefix_at(self.s, from, to, need_str(r, a[0].l->v[i], "tuple element"), suffix))
                return tv_bool(true);
        return tv_bool(false);
    }
    if (a[0].k != TV_STR)
        tm_fail(r, "%s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith",
                tm_type_name(a[0]));
    return tv_bool(has_prefix_at(self.s, from, to, a[0].s, suffix));
}

static tv split(tm_render *r, tv self, tv sep, tv maxsplit, bool from_right) {
    int64_t max = -1;
    if (tm_arg_given(maxsplit) && !tm_as_int(maxsplit, &max)) tm_fail(r, "maxsplit must be an int");
    tm_str s = self.s;
    tm_list *out = tm_list_new(r, 4);
    tm_tick(r, s.n / 32);
    if (!tm_arg_given(sep) || sep.k == TV_NONE) { /* runs of whitespace */
        /* collect word spans, then apply maxsplit from the chosen side */
        size_t nw = 0, cap = 8;
        size_t *st = tm_alloc(&r->arena, cap * sizeof *st), *en = tm_alloc(&r->arena, cap * sizeof *en);
        for (size_t i = 0; i < s.n;) {
            size_t l;
            uint32_t cp = tm_utf8_next(s.p + i, s.n - i, &l);
            if (tm_is_space_cp(cp)) {
                i += l;
                continue;
            }
            size_t b = i;
            while (i < s.n) {
                cp = tm_utf8_next(s.p + i, s.n - i, &l);
                if (tm_is_space_cp(cp)) break;
                i += l;
            }
            if (nw == cap) {
                st = tm_realloc(&r->arena, st, cap * sizeof *st, cap * 2 * sizeof *st);
                en = tm_realloc(&r->arena, en, cap * sizeof *en, cap * 2 * sizeof *en);
                cap *= 2;
            }
            st[nw] = b;
            en[nw++] = i;
        }
        if (max < 0 || (size_t)max + 1 >= nw) {
            for (size_t w = 0; w < nw; w++) tm_list_push(r, out, keep_markup(self, (tm_str){s.p + st[w], en[w] - st[w]}));
            return tv_list(out);
        }
        /* Python keeps the unsplit remainder as is, except the whitespace at the split side */
        if (!from_right) {
            for (int64_t w = 0; w < max; w++) tm_list_push(r, out, keep_markup(self, (tm_str){s.p + st[w], en[w] - st[w]}));
            tm_list_push(r, out, keep_markup(self, (tm_str){s.p + st[max], s.n - st[max]}));
        } else {
            size_t first = nw - (size_t)max;
            tm_list_push(r, out, keep_markup(self, (tm_str){s.p, en[first - 1]}));
            for (size_t w = first; w < nw; w++) tm_list_push(r, out, keep_markup(self, (tm_str){s.p + st[w], en[w] - st[w]}));
        }
        return tv_list(out);
    }
    tm_str d = need_str(r, sep, "separator");
    if (d.n == 0) tm_fail(r, "empty separator");
    if (!from_right) {
        size_t start = 0;
        int64_t done = 0;
        for (size_t i = 0; i + d.n <= s.n;) {
            if ((max < 0 || done < max) && !memcmp(s.p + i, d.p, d.n)) {
                tm_list_push(r, out, keep_markup(self, (tm_str){s.p + start, i - start}));
                i += d.n;
                start = i;
                done++;
            } else {
                i++;
            }
        }
        tm_list_push(r, out, keep_markup(self, (tm_str){s.p + start, s.n - start}));
        return tv_list(out);
    }
    /* rsplit: scan from the right, then reverse */
    size_t end = s.n;
    int64_t done = 0;
    size_t i = s.n;
    while (i >= d.n) {
        if ((max < 0 || done < max) && !memcmp(s.p + i - d.n, d.p, d.n)) {
            tm_list_push(r, out, keep_markup(self, (tm_str){s.p + i, end - i}));
            i -= d.n;
            end = i;
            done++;
        } else {
            i--;
        }
    }
    tm_list_push(r, out, keep_markup(self, (tm_str){s.p, end}));
    for (size_t k = 0; k < out->n / 2; k++) {
        tv t = out->v[k];
        out->v[k] = out->v[out->n - 1 - k];
        out->v[out->n - 1 - k] = t;
    }
    return tv_list(out);
}

static tv find(tm_render *r, tv self, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw,
               bool from_right, bool raise) {
    BIND(from_right ? "rfind" : "find", "sub", "start", "end");
    tm_str sub = need_str(r, a[0], "substring");
    size_t from, to;
    sub_range(r, self.s, a[1], a[2], &from, &to);
    tm_tick(r, (to - from) / 64);
    if (to - from >= sub.n) {
        if (!from_right) {
            for (size_t i = from; i + sub.n <= to; i++)
                if (!memcmp(self.s.p + i, sub.p, sub.n)) return tv_int((int64_t)tm_utf8_count((tm_str){self.s.p, i}));
        } else {
            for (size_t i = to - sub.n + 1; i-- > from;)
                if (!memcmp(self.s.p + i, sub.p, sub.n)) return tv_int((int64_t)tm_utf8_count((tm_str){self.s.p, i}));
        }
    }
    if (raise) tm_fail(r, "substring not found");
    return tv_int(-1);
}

static tv str_count(tm_render *r, tv self, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw) {
    BIND("count", "sub", "start", "end");
    tm_str sub = need_str(r, a[0], "substring");
    size_t from, to;
    sub_range(r, self.s, a[1], a[2], &from, &to);
    if (sub.n == 0) return tv_int((int64_t)tm_utf8_count((tm_str){self.s.p + from, to - from}) + 1);
    int64_t c = 0;
    for (size_t i = from; i + sub.n <= to;) {
        if (!memcmp(self.s.p + i, sub.p, sub.n)) {
            c++;
            i += sub.n;
        } else {
            i++;
        }
    }
    return tv_int(c);
}

static tv map_cp(tm_render *r, tv self, int mode) { /* 0 lower, 1 upper, 2 swapcase, 3 title, 4 capitalize */
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < self.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(self.s.p + i, self.s.n - i, &l), o = cp;
        bool is_up = tm_lower_cp(cp) != cp, is_low = tm_upper_cp(cp) != cp;
        switch (mode) {
        case 0: o = tm_lower_cp(cp); break;
        case 1: o = tm_upper_cp(cp); break;
        case 2: o = is_up ? tm_lower_cp(cp) : tm_upper_cp(cp); break;
        case 3: o = prev_cased ? tm_lower_cp(cp) : tm_upper_cp(cp); break;
        case 4: o = first ? tm_upper_cp(cp) : tm_lower_cp(cp); break;
        }
        prev_cased = is_up || is_low || tm_is_alpha_cp(cp);
        first = false;
        tm_buf_put_cp(&b, o);
        i += l;
    }
    return keep_markup(self, tm_buf_str(&b));
}

static tv str_is(tm_render *r, tv self, const char *what) {
    (void)r;
    if (self.s.n == 0) return tv_bool(false);
    bool cased = false, any_up = false, any_low = false;
    for (size_t i = 0; i < self.s.n;) {
        size_t l;
        uint32_t cp = tm_utf8_next(self.s.p + i, self.s.n - i, &l);
        i += l;
        bool up = tm_lower_cp(cp) != cp, low = tm_upper_cp(cp) != cp;
        any_up |= up;
        any_low |= low;
        cased |= up || low;
        if (!strcmp(what, "isdigit") || !strcmp(what, "isdecimal") || !strcmp(what, "isnumeric")) {
            if (!tm_is_digit_cp(cp)) return tv_bool(false);
        } else if (!strcmp(what, "isalpha")) {
            if (!tm_is_alpha_cp(cp)) return tv_bool(false);
        } else if (!strcmp(what, "isalnum")) {
            if (!tm_is_alpha_cp(cp) && !tm_is_digit_cp(cp)) return tv_bool(false);
        } else if (!strcmp(what, "isspace")) {
            if (!tm_is_space_cp(cp)) return tv_bool(false);
        } else if (!strcmp(what, "isascii")) {
            if (cp >= 0x80) return tv_bool(false);
        } else if (!strcmp(what, "isprintable")) {
            if (!tm_is_printable_cp(cp)) return tv_bool(false);
        }
    }
    if (!strcmp(what, "islower")) return tv_bool(cased && !any_up);
    if (!strcmp(what, "isupper")) return tv_bool(cased && !any_low);
    return tv_bool(true);
}

static tv pad(tm_render *r, tv self, tv width, tv fill, int align) { /* -1 ljust, 0 center, 1 rjust */
    int64_t w;
    if (!tm_as_int(width, &w)) tm_fail(r, "width must be an int");
    tm_str f = TM_LIT(" ");
    if (tm_arg_given(fill)) {
        f = need_str(r, fill, "fill character");
        if (tm_utf8_count(f) != 1) tm_fail(r, "The fill character must be exactly one character long");
    }
    int64_t len = (int64_t)tm_utf8_count(self.s);
    if (w <= len) return self;
    if (w > 1 << 20) tm_fail(r, "width too large");
    int64_t total = w - len, left = align < 0 ? 0 : align > 0 ? total : total / 2 + (total & w & 1);
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (int64_t i = 0; i < left; i++) tm_buf_put(&b, f.p, f.n);
    tm_buf_put(&b, self.s.p, self.s.n);
    for (int64_t i = 0; i < total - left; i++) tm_buf_put(&b, f.p, f.n);
    return keep_markup(self, tm_buf_str(&b));
}

static tv str_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                     tv *kwvals, size_t nkw) {
#define IS(s) tm_eqc(name, s)
    if (IS("strip") || IS("lstrip") || IS("rstrip")) {
        BIND("strip", "chars");
        bool left = !IS("rstrip"), right = !IS("lstrip");
        if (tm_arg_given(a[0]) && a[0].k != TV_NONE) {
            tm_str chars = need_str(r, a[0], "strip arg");
            return tm_strip(r, self, &chars, left, right);
        }
        return tm_strip(r, self, NULL, left, right);
    }
    if (IS("split") || IS("rsplit")) {
        BIND("split", "sep", "maxsplit");
        return split(r, self, a[0], a[1], IS("rsplit"));
    }
    if (IS("startswith")) return starts_ends(r, self, args, nargs, kwnames, kwvals, nkw, false);
    if (IS("endswith")) return starts_ends(r, self, args, nargs, kwnames, kwvals, nkw, true);
    if (IS("replace")) {
        BIND("replace", "old", "new", "count");
        int64_t count = -1;
        if (tm_arg_given(a[2]) && !tm_as_int(a[2], &count)) tm_fail(r, "count must be an int");
        tv out = tm_replace(r, self.s, need_str(r, a[0], "replace arg"), need_str(r, a[1], "replace arg"), count);
        return keep_markup(self, out.s);
    }
    if (IS("lower") || IS("casefold")) return map_cp(r, self, 0);
    if (IS("upper")) return map_cp(r, self, 1);
    if (IS("swapcase")) return map_cp(r, self, 2);
    if (IS("title")) return map_cp(r, self, 3);
    if (IS("capitalize")) return map_cp(r, self, 4);
    if (IS("find")) return find(r, self, args, nargs, kwnames, kwvals, nkw, false, false);
    if (IS("rfind")) return find(r, self, args, nargs, kwnames, kwvals, nkw, true, false);
    if (IS("index")) return find(r, self, args, nargs, kwnames, kwvals, nkw, false, true);
    if (IS("rindex")) return find(r, self, args, nargs, kwnames, kwvals, nkw, true, true);
    if (IS("count")) return str_count(r, self, args, nargs, kwnames, kwvals, nkw);
    if (IS("format")) return tm_str_format(r, self, args, nargs, kwnames, kwvals, nkw);
    if (IS("join")) {
        BIND("join", "iterable");
        tm_list *items = tm_iterate(r, a[0]);
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].k != TV_STR)
                tm_fail(r, "sequence item %zu: expected str instance, %s found", i, tm_type_name(items->v[i]));
            if (i) tm_buf_put(&b, self.s.p, self.s.n);
            tm_buf_put(&b, items->v[i].s.p, items->v[i].s.n);
        }
        return keep_markup(self, tm_buf_str(&b));
    }
    if (IS("splitlines")) {
        BIND("splitlines", "keepends");
        return tv_list(tm_splitlines(r, self.s, tm_arg_given(a[0]) && tm_truthy(a[0])));
    }
    if (IS("isdigit") || IS("isalpha") || IS("isspace") || IS("isalnum") || IS("islower") ||
        IS("isupper") || IS("isdecimal") || IS("isnumeric") || IS("isascii") || IS("isprintable")) {
        BIND("is");
        char what[16];
        snprintf(what, sizeof what, "%.*s", (int)name.n, name.p);
        if (IS("isascii") || IS("isprintable")) {
            if (self.s.n == 0) return tv_bool(true);
        }
        return str_is(r, self, what);
    }
    if (IS("removeprefix") || IS("removesuffix")) {
        BIND("removeprefix", "affix");
        tm_str p = need_str(r, a[0], "affix");
        bool suffix = IS("removesuffix");
        if (has_prefix_at(self.s, 0, self.s.n, p, suffix))
            return keep_markup(self, suffix ? (tm_str){self.s.p, self.s.n - p.n} : (tm_str){self.s.p + p.n, self.s.n - p.n});
        return self;
    }
    if (IS("ljust") || IS("rjust") || IS("center")) {
        BIND("ljust", "width", "fillchar");
        return pad(r, self, a[0], a[1], IS("ljust") ? -1 : IS("rjust") ? 1 : 0);
    }
    if (IS("zfill")) {
        BIND("zfill", "width");
        int64_t w;
        if (!tm_as_int(a[0], &w)) tm_fail(r, "width must be an int");
        int64_t len = (int64_t)tm_utf8_count(self.s);
        if (w <= len) return self;
        if (w > 1 << 20) tm_fail(r, "width too large");
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        size_t skip = self.s.n && (self.s.p[0] == '+' || self.s.p[0] == '-');
        tm_buf_put(&b, self.s.p, skip);
        for (int64_t i = 0; i < w - len; i++) tm_buf_putc(&b, '0');
        tm_buf_put(&b, self.s.p + skip, self.s.n - skip);
        return tv_str(tm_buf_str(&b));
    }
    if (IS("partition") || IS("rpartition")) {
        BIND("partition", "sep");
        tm_str sep = need_str(r, a[0], "separator");
        if (!sep.n) tm_fail(r, "empty separator");
        bool right = IS("rpartition");
        size_t at = SIZE_MAX;
        if (self.s.n >= sep.n) {
            if (!right) {
                for (size_t i = 0; i + sep.n <= self.s.n; i++)
                    if (!memcmp(self.s.p + i, sep.p, sep.n)) { at = i; break; }
            } else {
                for (size_t i = self.s.n - sep.n + 1; i-- > 0;)
                    if (!memcmp(self.s.p + i, sep.p, sep.n)) { at = i; break; }
            }
        }
        tm_list *l = tm_list_new(r, 3);
        l->n = 3;
        if (at == SIZE_MAX) {
            l->v[0] = right ? tv_str(TM_LIT("")) : self;
            l->v[1] = tv_str(TM_LIT(""));
            l->v[2] = right ? self : tv_str(TM_LIT(""));
        } else {
            l->v[0] = tv_str((tm_str){self.s.p, at});
            l->v[1] = tv_str(sep);
            l->v[2] = tv_str((tm_str){self.s.p + at + sep.n, self.s.n - at - sep.n});
        }
        tv t = tv_list(l);
        t.f = TVF_TUPLE;
        return t;
    }
#undef IS
    tm_fail(r, "the str method '%.*s' is not supported", (int)name.n, name.p);
}

/* ---------------------------------------------------------------- dict and list methods */

static tv pair(tm_render *r, tv a, tv b) {
    tm_list *l = tm_list_new(r, 2);
    l->v[0] = a;
    l->v[1] = b;
    l->n = 2;
    tv t = tv_list(l);
    t.f = TVF_TUPLE;
    return t;
}

static tv dict_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                      tv *kwvals, size_t nkw) {
    tm_dict *m = self.m;
#define IS(s) tm_eqc(name, s)
    if (IS("get")) {
        BIND("get", "key", "default");
        if (!tm_arg_given(a[0])) tm_fail(r, "get expected at least 1 argument, got 0");
        tv *v = (a[0].k == TV_UNDEF) ? NULL : tm_dict_get(r, m, a[0]);
        if (v) return *v;
        return tm_arg_given(a[1]) ? a[1] : tv_none();
    }
    if (IS("items") || IS("keys") || IS("values")) {
        BIND("items");
        tm_list *l = tm_list_new(r, m->n);
        for (size_t i = 0; i < m->n; i++)
            l->v[i] = IS("items") ? pair(r, m->keys[i], m->vals[i]) : IS("keys") ? m->keys[i] : m->vals[i];
        l->n = m->n;
        return tv_list(l);
    }
    if (IS("pop")) {
        BIND("pop", "key", "default");
        tv *v = tm_dict_get(r, m, a[0]);
        if (v) {
            tv out = *v;
            tm_dict_del(r, m, a[0]);
            return out;
        }
        if (tm_arg_given(a[1])) return a[1];
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        tm_repr(r, &b, a[0]);
        tm_fail(r, "%.*s", (int)(b.n > 200 ? 200 : b.n), b.p);
    }
    if (IS("setdefault")) {
        BIND("setdefault", "key", "default");
        tv *v = tm_dict_get(r, m, a[0]);
        if (v) return *v;
        tv d = tm_arg_given(a[1]) ? a[1] : tv_none();
        tm_dict_set(r, m, a[0], d);
        return d;
    }
    if (IS("update")) {
        if (nargs > 1) tm_fail(r, "update expected at most 1 argument, got %zu", nargs);
        if (nargs == 1) {
            if (args[0].k == TV_DICT) {
                tm_dict *o = args[0].m;
                for (size_t i = 0; i < o->n; i++) tm_dict_set(r, m, o->keys[i], o->vals[i]);
            } else {
                tm_list *items = tm_iterate(r, args[0]);
                for (size_t i = 0; i < items->n; i++) {
                    tm_list *kv = tm_iterate(r, items->v[i]);
                    if (kv->n != 2) tm_fail(r, "dictionary update sequence element #%zu has length %zu; 2 is required", i, kv->n);
                    tm_dict_set(r, m, kv->v[0], kv->v[1]);
                }
            }
        }
        for (size_t k = 0; k < nkw; k++) tm_dict_set(r, m, tv_str(kwnames[k]), kwvals[k]);
        return tv_none();
    }
    if (IS("copy")) {
        BIND("copy");
        tm_dict *c = tm_dict_new(r, m->n);
        for (size_t i = 0; i < m->n; i++) tm_dict_set(r, c, m->keys[i], m->vals[i]);
        return tv_dict(c);
    }
    if (IS("clear")) {
        BIND("clear");
        m->n = 0;
        return tv_none();
    }
    if (IS("popitem")) {
        BIND("popitem");
        if (!m->n) tm_fail(r, "'popitem(): dictionary is empty'");
        m->n--;
        return pair(r, m->keys[m->n], m->vals[m->n]);
    }
#undef IS
    tm_fail(r, "the dict method '%.*s' is not supported", (int)name.n, name.p);
}

static int64_t list_index_arg(tm_render *r, tv v) {
    int64_t i;
    if (!tm_as_int(v, &i)) tm_fail(r, "'%s' object cannot be interpreted as an integer", tm_type_name(v));
    return i;
}

static tv list_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                      tv *kwvals, size_t nkw) {
    tm_list *l = self.l;
#define IS(s) tm_eqc(name, s)
    if (IS("append")) {
        BIND("append", "object");
        if (!tm_arg_given(a[0])) tm_fail(r, "list.append() takes exactly one argument (0 given)");
        tm_tick(r, 0);
        tm_list_push(r, l, a[0]);
        return tv_none();
    }
    if (IS("extend")) {
        BIND("extend", "iterable");
        tm_list *items = tm_iterate(r, a[0]);
        tm_tick(r, items->n);
        for (size_t i = 0; i < items->n; i++) tm_list_push(r, l, items->v[i]);
        return tv_none();
    }
    if (IS("pop")) {
        BIND("pop", "index");
        if (!l->n) tm_fail(r, "pop from empty list");
        int64_t i = tm_arg_given(a[0]) ? list_index_arg(r, a[0]) : -1;
        if (i < 0) i += (int64_t)l->n;
        if (i < 0 || (size_t)i >= l->n) tm_fail(r, "pop index out of range");
        tv v = l->v[i];
        memmove(l->v + i, l->v + i + 1, (l->n - (size_t)i - 1) * sizeof(tv));
        l->n--;
        return v;
    }
    if (IS("insert")) {
        BIND("insert", "index", "object");
        int64_t i = list_index_arg(r, a[0]), n = (int64_t)l->n;
        if (i < 0) i = i + n < 0 ? 0 : i + n;
        if (i > n) i = n;
        tm_list_push(r, l, a[1]);
        memmove(l->v + i + 1, l->v + i, (size_t)(n - i) * sizeof(tv));
        l->v[i] = a[1];
        return tv_none();
    }
    if (IS("remove") || IS("index")) {
        BIND("index", "value");
        tm_tick(r, l->n);
        for (size_t i = 0; i < l->n; i++) {
            if (!tm_equal(r, l->v[i], a[0])) continue;
            if (IS("index")) return tv_int((int64_t)i);
            memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(tv));
            l->n--;
            return tv_none();
        }
        if (IS("remove")) tm_fail(r, "list.remove(x): x not in list");
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        tm_repr(r, &b, a[0]);
        tm_fail(r, "%.*s is not in list", (int)(b.n > 200 ? 200 : b.n), b.p);
    }
    if (IS("count")) {
        BIND("count", "value");
        int64_t c = 0;
        tm_tick(r, l->n);
        for (size_t i = 0; i < l->n; i++) c += tm_equal(r, l->v[i], a[0]);
        return tv_int(c);
    }
    if (IS("reverse")) {
        BIND("reverse");
        for (size_t i = 0; i < l->n / 2; i++) {
            tv t = l->v[i];
            l->v[i] = l->v[l->n - 1 - i];
            l->v[l->n - 1 - i] = t;
        }
        return tv_none();
    }
    if (IS("copy")) {
        BIND("copy");
        return tv_list(tm_iterate(r, self));
    }
    if (IS("clear")) {
        BIND("clear");
        l->n = 0;
        return tv_none();
    }
    if (IS("sort")) {
        BIND("sort", "reverse");
        /* the sort filter, made case-sensitive like list.sort */
        tm_str kn[2] = {TM_LIT("reverse"), TM_LIT("case_sensitive")};
        tv kv[2] = {tm_arg_given(a[0]) ? a[0] : tv_bool(false), tv_bool(true)};
        tv sorted = tm_apply_filter(r, TM_LIT("sort"), self, NULL, 0, kn, kv, 2);
        memcpy(l->v, sorted.l->v, l->n * sizeof(tv));
        return tv_none();
    }
#undef IS
    tm_fail(r, "the list method '%.*s' is not supported", (int)name.n, name.p);
}

static tv loop_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                      tv *kwvals, size_t nkw) {
    tm_loop *L = self.loop;
    if (nkw) tm_fail(r, "loop.%.*s() takes no keyword arguments", (int)name.n, name.p);
    (void)kwnames;
    (void)kwvals;
    if (tm_eqc(name, "cycle")) {
        if (!nargs) tm_fail(r, "no items for cycling given");
        return args[L->index0 % nargs];
    }
    /* changed(*values): true when the values differ from the previous call's */
    tm_list *l = tm_list_new(r, nargs);
    for (size_t i = 0; i < nargs; i++) l->v[i] = args[i];
    l->n = nargs;
    tv now = tv_list(l);
    if (L->changed_set && tm_equal(r, L->last_changed, now)) return tv_bool(false);
    L->last_changed = now;
    L->changed_set = true;
    return tv_bool(true);
}

tv tm_call_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                  tv *kwvals, size_t nkw) {
    tm_tick(r, 0);
    switch (self.k) {
    case TV_STR: return str_method(r, self, name, args, nargs, kwnames, kwvals, nkw);
    case TV_DICT: return dict_method(r, self, name, args, nargs, kwnames, kwvals, nkw);
    case TV_LIST:
        if ((self.f & TVF_TUPLE) && !tm_eqc(name, "count") && !tm_eqc(name, "index")) break;
        return list_method(r, self, name, args, nargs, kwnames, kwvals, nkw);
    case TV_LOOP: return loop_method(r, self, name, args, nargs, kwnames, kwvals, nkw);
    default: break;
    }
    tm_fail(r, "'%s' object has no attribute '%.*s'", tm_type_name(self), (int)name.n, name.p);
}

/* ---------------------------------------------------------------- formatting */

typedef struct {
    char fill, align, sign;
    bool zero, alt;
    int width, prec; /* -1 = none */
    char type;
} fmt_spec;

static void parse_spec(tm_render *r, tm_str s, fmt_spec *f) {
    memset(f, 0, sizeof *f);
    f->fill = ' ';
    f->width = f->prec = -1;
    size_t i = 0;
    if (s.n >= 2 && strchr("<>=^", s.p[1])) {
        f->fill = s.p[0];
        f->align = s.p[1];
        i = 2;
    } else if (s.n >= 1 && strchr("<>=^", s.p[0])) {
        f->align = s.p[0];
        i = 1;
    }
    if (i < s.n && strchr("+- ", s.p[i])) f->sign = s.p[i++];
    if (i < s.n && s.p[i] == '#') f->alt = true, i++;
    if (i < s.n && s.p[i] == '0') f->zero = true, i++;
    if (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') {
        f->width = 0;
        while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9' && f->width < 100000) f->width = f->width * 10 + (s.p[i++] - '0');
    }
    if (i < s.n && s.p[i] == ',') i++;
    if (i < s.n && s.p[i] == '.') {
        i++;
        f->prec = 0;
        while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9' && f->prec < 1000) f->prec = f->prec * 10 + (s.p[i++] - '0');
    }
    if (i < s.n) f->type = s.p[i++];
    if (i != s.n) tm_fail(r, "Invalid format specifier");
    if (f->width > 10000 || f->prec > 500) tm_fail(r, "format width too large");
}

/* Apply a format spec to a value (the parts of Python's format() that templates use). */
static void format_value(tm_render *r, tm_buf *b, tv v, fmt_spec *f) {
    tm_buf body;
    tm_buf_init(&body, &r->arena);
    bool numeric = v.k == TV_INT || v.k == TV_FLOAT || v.k == TV_BOOL;
    char t = f->type;
    if (!t) t = v.k == TV_STR ? 's' : v.k == TV_FLOAT ? (f->prec >= 0 ? 'g' : 'r') : v.k == TV_INT || v.k == TV_BOOL ? 'd' : 's';
    if (t == 's') {
        if (numeric && f->type) tm_fail(r, "Unknown format code 's' for object of type '%s'", tm_type_name(v));
        tv s = tm_str_of(r, v);
        size_t n = s.s.n;
        if (f->prec >= 0) n = tm_utf8_offset(s.s, (size_t)f->prec);
        tm_buf_put(&body, s.s.p, n);
    } else if (t == 'r') {
        tm_to_str(r, &body, v);
    } else if (strchr("dxXobc", t)) {
        int64_t i;
        if (!tm_as_int(v, &i)) tm_fail(r, "Unknown format code '%c' for object of type '%s'", t, tm_type_name(v));
        if (f->sign == '+' && i >= 0) tm_buf_putc(&body, '+');
        if (f->sign == ' ' && i >= 0) tm_buf_putc(&body, ' ');
        if (t == 'd') tm_buf_printf(&body, "%lld", (long long)i);
        else if (t == 'x') tm_buf_printf(&body, "%s%llx", f->alt ? "0x" : "", (unsigned long long)i);
        else if (t == 'X') tm_buf_printf(&body, "%s%llX", f->alt ? "0X" : "", (unsigned long long)i);
        else if (t == 'o') tm_buf_printf(&body, "%s%llo", f->alt ? "0o" : "", (unsigned long long)i);
        else if (t == 'c') tm_buf_put_cp(&body, (uint32_t)i);
        else {
            if (f->alt) tm_buf_puts(&body, "0b");
            char bits[65];
            int n = 0;
            uint64_t u = (uint64_t)i;
            do bits[n++] = (char)('0' + (u & 1)); while ((u >>= 1) && n < 64);
            while (n) tm_buf_putc(&body, bits[--n]);
        }
    } else if (strchr("eEfFgG%", t)) {
        double d;
        if (!tm_as_num(v, &d)) tm_fail(r, "Unknown format code '%c' for object of type '%s'", t, tm_type_name(v));
        int prec = f->prec >= 0 ? f->prec : 6;
        char fmt[32];
        if (t == '%') {
            d *= 100;
            snprintf(fmt, sizeof fmt, "%%%s.%df%%%%", f->sign == '+' ? "+" : "", prec);
        } else {
            snprintf(fmt, sizeof fmt, "%%%s.%d%c", f->sign == '+' ? "+" : "", prec, t);
        }
        tm_buf_printf(&body, fmt, d);
    } else {
        tm_fail(r, "Unknown format code '%c' for object of type '%s'", t, tm_type_name(v));
    }
    tm_str s = tm_buf_str(&body);
    int64_t len = (int64_t)tm_utf8_count(s), w = f->width;
    char align = f->align ? f->align : (numeric && t != 's') ? '>' : '<';
    char fill = f->fill;
    if (f->zero && !f->align) fill = '0', align = numeric ? '=' : align;
    if (w <= len) {
        tm_buf_put(b, s.p, s.n);
        return;
    }
    int64_t total = w - len, left = align == '<' ? 0 : align == '^' ? total / 2 : total;
    if (align == '=') {
        size_t sign = s.n && (s.p[0] == '-' || s.p[0] == '+' || s.p[0] == ' ');
        tm_buf_put(b, s.p, sign);
        for (int64_t i = 0; i < total; i++) tm_buf_putc(b, fill);
        tm_buf_put(b, s.p + sign, s.n - sign);
        return;
    }
    for (int64_t i = 0; i < left; i++) tm_buf_putc(b, fill);
    tm_buf_put(b, s.p, s.n);
    for (int64_t i = 0; i < total - left; i++) tm_buf_putc(b, fill);
}

/* str.format: {} {0} {name} {name.attr} {0[key]} with !r/!s and a format spec; {{ }} escapes. */
tv tm_str_format(tm_render *r, tv fmt, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw) {
    tm_str s = fmt.s;
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    size_t auto_idx = 0;
    for (size_t i = 0; i < s.n;) {
        char c = s.p[i];
        if (c == '}') {
            if (i + 1 < s.n && s.p[i + 1] == '}') {
                tm_buf_putc(&b, '}');
                i += 2;
                continue;
            }
            tm_fail(r, "Single '}' encountered in format string");
        }
        if (c != '{') {
            tm_buf_putc(&b, c);
            i++;
            continue;
        }
        if (i + 1 < s.n && s.p[i + 1] == '{') {
            tm_buf_putc(&b, '{');
            i += 2;
            continue;
        }
        size_t j = i + 1;
        int nest = 0;
        while (j < s.n && (s.p[j] != '}' || nest)) {
            if (s.p[j] == '{') nest++;
            if (s.p[j] == '}') nest--;
            j++;
        }
        if (j >= s.n) tm_fail(r, "expected '}' before end of string");
        tm_str field = {s.p + i + 1, j - i - 1};
        i = j + 1;
        /* split field into name, conversion, spec */
        size_t k = 0;
        while (k < field.n && field.p[k] != '!' && field.p[k] != ':') k++;
        tm_str fname = {field.p, k};
        char conv = 0;
        if (k < field.n && field.p[k] == '!') {
            if (k + 1 >= field.n) tm_fail(r, "end of string while looking for conversion specifier");
            conv = field.p[k + 1];
            k += 2;
        }
        tm_str spec = {"", 0};
        if (k < field.n && field.p[k] == ':') spec = (tm_str){field.p + k + 1, field.n - k - 1};
        /* the first part of the name: index or keyword */
        size_t e = 0;
        while (e < fname.n && fname.p[e] != '.' && fname.p[e] != '[') e++;
        tm_str head = {fname.p, e};
        tv v;
        if (head.n == 0) {
            if (auto_idx >= nargs) tm_fail(r, "Replacement index %zu out of range for positional args tuple", auto_idx);
            v = args[auto_idx++];
        } else if (head.p[0] >= '0' && head.p[0] <= '9') {
            size_t idx = (size_t)strtoul(head.p, NULL, 10);
            if (idx >= nargs) tm_fail(r, "Replacement index %zu out of range for positional args tuple", idx);
            v = args[idx];
        } else {
            size_t kk = 0;
            while (kk < nkw && !tm_eq(kwnames[kk], head)) kk++;
            if (kk == nkw) tm_fail(r, "'%.*s'", (int)head.n, head.p);
            v = kwvals[kk];
        }
        while (e < fname.n) { /* .attr and [key] */
            if (fname.p[e] == '.') {
                size_t st = ++e;
                while (e < fname.n && fname.p[e] != '.' && fname.p[e] != '[') e++;
                v = tm_getattr(r, v, (tm_str){fname.p + st, e - st});
            } else {
                size_t st = ++e;
                while (e < fname.n && fname.p[e] != ']') e++;
                tm_str key = {fname.p + st, e - st};
                e++;
                bool digits = key.n > 0;
                for (size_t q = 0; q < key.n; q++) digits &= key.p[q] >= '0' && key.p[q] <= '9';
                v = tm_getitem(r, v, digits ? tv_int(strtoll(key.p, NULL, 10)) : tv_str(key));
            }
        }
        if (v.k == TV_UNDEF) tm_fail_undef(r, v);
        if (conv == 'r') {
            tm_buf rb;
            tm_buf_init(&rb, &r->arena);
            tm_repr(r, &rb, v);
            v = tv_str(tm_buf_str(&rb));
        } else if (conv == 's') {
            v = tm_str_of(r, v);
        } else if (conv) {
            tm_fail(r, "Unknown conversion specifier %c", conv);
        }
        fmt_spec f;
        parse_spec(r, spec, &f);
        format_value(r, &b, v, &f);
    }
    return keep_markup(fmt, tm_buf_str(&b));
}

/* "..." % arg: %s %r %d %i %f %x %% with flags, width and precision; %(name)s from a dict. */
tv tm_percent_format(tm_render *r, tv fmt, tv arg) {
    tm_str s = fmt.s;
    tv *items = &arg;
    size_t nitems = 1, next = 0;
    bool is_map = arg.k == TV_DICT;
    if (arg.k == TV_LIST && (arg.f & TVF_TUPLE)) items = arg.l->v, nitems = arg.l->n;
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    for (size_t i = 0; i < s.n;) {
        if (s.p[i] != '%') {
            tm_buf_putc(&b, s.p[i++]);
            continue;
        }
        i++;
        if (i < s.n && s.p[i] == '%') {
            tm_buf_putc(&b, '%');
            i++;
            continue;
        }
        tv v;
        bool got = false;
        if (i < s.n && s.p[i] == '(') {
            size_t st = ++i;
            while (i < s.n && s.p[i] != ')') i++;
            if (i >= s.n) tm_fail(r, "incomplete format key");
            if (!is_map) tm_fail(r, "format requires a mapping");
            tv *p = tm_dict_get(r, arg.m, tv_str((tm_str){s.p + st, i - st}));
            if (!p) tm_fail(r, "'%.*s'", (int)(i - st), s.p + st);
            v = *p;
            got = true;
            i++;
        }
        fmt_spec f;
        memset(&f, 0, sizeof f);
        f.fill = ' ';
        f.width = f.prec = -1;
        while (i < s.n && strchr("-+ #0", s.p[i])) {
            char c = s.p[i++];
            if (c == '-') f.align = '<';
            else if (c == '0') f.zero = true;
            else if (c == '#') f.alt = true;
            else f.sign = c;
        }
        if (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') {
            f.width = 0;
            while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9' && f.width < 100000) f.width = f.width * 10 + (s.p[i++] - '0');
        }
        if (i < s.n && s.p[i] == '.') {
            i++;
            f.prec = 0;
            while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9' && f.prec < 1000) f.prec = f.prec * 10 + (s.p[i++] - '0');
        }
        if (f.width > 10000 || f.prec > 500) tm_fail(r, "format width too large");
        if (i >= s.n) tm_fail(r, "incomplete format");
        char t = s.p[i++];
        if (!got) {
            if (is_map && nitems == 1 && items == &arg) {
                v = arg;
            } else {
                if (next >= nitems) tm_fail(r, "not enough arguments for format string");
                v = items[next++];
            }
        }
        if (f.align != '<') f.align = f.zero && t != 's' && t != 'r' ? '=' : '>';
        if (f.align == '=') f.fill = '0';
        f.zero = false;
        if (t == 'i' || t == 'u') t = 'd';
        if (t == 'd' && v.k == TV_FLOAT) v = tv_int((int64_t)v.d);
        if (t == 'r') {
            tm_buf rb;
            tm_buf_init(&rb, &r->arena);
            tm_repr(r, &rb, v);
            v = tv_str(tm_buf_str(&rb));
            t = 's';
        }
        if (t == 's') {
            v = tm_str_of(r, v);
            f.type = 's';
        } else if (strchr("dxXoeEfFgGc", t)) {
            if ((t == 'd' || t == 'x' || t == 'X' || t == 'o') && v.k == TV_STR)
                tm_fail(r, "%%%c format: a real number is required, not str", t);
            f.type = t;
        } else {
            tm_fail(r, "unsupported format character '%c'", t);
        }
        format_value(r, &b, v, &f);
    }
    /* a lone non-tuple argument that supports [] (list, dict) may go unused, as in Python */
    bool mapping_like = arg.k == TV_DICT || (arg.k == TV_LIST && !(arg.f & TVF_TUPLE));
    if (items != &arg && next < nitems) tm_fail(r, "not all arguments converted during string formatting");
    if (items == &arg && next == 0 && !mapping_like) tm_fail(r, "not all arguments converted during string formatting");
    tv out = tv_str(tm_buf_str(&b));
    out.f = fmt.f & TVF_MARKUP;
    return out;
}

/* ---------------------------------------------------------------- globals */

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT };
static const char *const global_names[G_COUNT] = {"range", "namespace", "dict", "raise_exception",
                                                  "strftime_now"};

int tm_global_lookup(tm_str name) {
    for (int i = 0; i < G_COUNT; i++)
        if (tm_eqc(name, global_names[i])) return i;
    return -1;
}

const char *tm_global_name(int fn) { return fn >= 0 && fn < G_COUNT ? global_names[fn] : "?"; }

#define TM_MAX_RANGE 100000

static tv g_range(tm_render *r, tv *args, size_t nargs, size_t nkw) {
    if (nkw) tm_fail(r, "range() takes no keyword arguments");
    if (nargs < 1 || nargs > 3) tm_fail(r, "range expected 1 to 3 arguments, got %zu", nargs);
    int64_t v[3];
    for (size_t i = 0; i < nargs; i++)
        if (!tm_as_int(args[i], &v[i])) {
            if (args[i].k == TV_UNDEF) tm_fail_undef(r, args[i]);
            tm_fail(r, "'%s' object cannot be interpreted as an integer", tm_type_name(args[i]));
        }
    int64_t start = 0, stop, step = 1;
    if (nargs == 1) stop = v[0];
    else start = v[0], stop = v[1];
    if (nargs == 3) step = v[2];
    if (step == 0) tm_fail(r, "range() arg 3 must not be zero");
    /* element count without overflow */
    uint64_t n = 0;
    if (step > 0 && stop > start) n = ((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step + 1;
    if (step < 0 && start > stop) n = ((uint64_t)start - (uint64_t)stop - 1) / (0 - (uint64_t)step) + 1;
    if (n > TM_MAX_RANGE)
        tm_fail(r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", TM_MAX_RANGE);
    tm_tick(r, n);
    tm_list *l = tm_list_new(r, (size_t)n);
    for (uint64_t i = 0; i < n; i++) l->v[i] = tv_int(start + (int64_t)i * step);
    l->n = (size_t)n;
    return tv_list(l);
}

/* Python's strftime over a fixed date or the local time (%z/%Z empty: the datetime is naive). */
static tv g_strftime(tm_render *r, tv *args, size_t nargs, size_t nkw) {
    if (nkw || nargs != 1) tm_fail(r, "strftime_now() takes exactly one argument");
    if (args[0].k != TV_STR) tm_fail(r, "strftime() argument 1 must be str, not %s", tm_type_name(args[0]));
    struct tm t;
    memset(&t, 0, sizeof t);
    long usec = 0;
    if (r->fixed_date[0]) {
        int y, m, d;
        char extra;
        if (sscanf(r->fixed_date, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
            tm_fail(r, "time data '%s' does not match format '%%Y-%%m-%%d'", r->fixed_date);
        t.tm_year = y - 1900;
        t.tm_mon = m - 1;
        t.tm_mday = d;
        time_t secs = timegm(&t); /* normalizes and fills wday/yday */
        gmtime_r(&secs, &t);
    } else {
        struct timeval now;
        gettimeofday(&now, NULL);
        time_t secs = now.tv_sec;
        localtime_r(&secs, &t);
        usec = (long)now.tv_usec;
    }
    tm_str f = args[0].s;
    if (f.n > 4096) tm_fail(r, "strftime format too long");
    /* rewrite %f, %z, %Z (Python's own) and keep the rest for the C library */
    tm_buf fmt;
    tm_buf_init(&fmt, &r->arena);
    for (size_t i = 0; i < f.n; i++) {
        if (f.p[i] == '%' && i + 1 < f.n) {
            char c = f.p[i + 1];
            if (c == 'f') { tm_buf_printf(&fmt, "%06ld", usec); i++; continue; }
            if (c == 'z' || c == 'Z') { i++; continue; }
            tm_buf_putc(&fmt, '%');
            tm_buf_putc(&fmt, c);
            i++;
            continue;
        }
        tm_buf_putc(&fmt, f.p[i]);
    }
    tm_buf_putc(&fmt, 0);
    if (fmt.n == 1) return tv_str(TM_LIT(""));
    size_t cap = 256 + fmt.n * 8;
    char *out = tm_alloc(&r->arena, cap);
    size_t n = strftime(out, cap, fmt.p, &t);
    return tv_str((tm_str){out, n});
}

static tv make_ns(tm_render *r, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw, bool ns) {
    tm_dict *m = tm_dict_new(r, nkw);
    if (nargs > 1) tm_fail(r, "%s expected at most 1 argument, got %zu", ns ? "namespace" : "dict", nargs);
    if (nargs == 1) {
        if (args[0].k == TV_DICT || args[0].k == TV_NS) {
            for (size_t i = 0; i < args[0].m->n; i++) tm_dict_set(r, m, args[0].m->keys[i], args[0].m->vals[i]);
        } else {
            tm_list *items = tm_iterate(r, args[0]);
            for (size_t i = 0; i < items->n; i++) {
                tm_list *kv = tm_iterate(r, items->v[i]);
                if (kv->n != 2) tm_fail(r, "dictionary update sequence element #%zu has length %zu; 2 is required", i, kv->n);
                tm_dict_set(r, m, kv->v[0], kv->v[1]);
            }
        }
    }
    for (size_t k = 0; k < nkw; k++) tm_dict_set(r, m, tv_str(kwnames[k]), kwvals[k]);
    tv v = tv_dict(m);
    if (ns) v.k = TV_NS;
    return v;
}

tv tm_call_global(tm_render *r, int fn, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw) {
    tm_tick(r, 0);
    switch (fn) {
    case G_RANGE: return g_range(r, args, nargs, nkw);
    case G_NAMESPACE: return make_ns(r, args, nargs, kwnames, kwvals, nkw, true);
    case G_DICT: return make_ns(r, args, nargs, kwnames, kwvals, nkw, false);
    case G_RAISE: {
        if (nargs != 1 || nkw) tm_fail(r, "raise_exception() takes exactly one argument");
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        tm_to_str(r, &b, args[0]);
        tm_raise(&r->err, SP_TMPL_ERAISED, 0, "%.*s", (int)(b.n > 900 ? 900 : b.n), b.p ? b.p : "");
    }
    case G_STRFTIME: return g_strftime(r, args, nargs, nkw);
    }
    tm_fail(r, "unknown function");
}
