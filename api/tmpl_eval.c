/* api/tmpl_eval.c — the template interpreter: walks the AST of tmpl_parse.c with jinja2's
 * runtime semantics. Scopes: the template's top level is one scope; every for-loop iteration,
 * macro call, set/filter block and `with` gets a child scope (so `set` inside a loop never leaks,
 * which is why templates use namespace()); names fall back to the render context, then the
 * globals. Attribute and item access follow jinja2's sandbox (a.b tries the attribute/method then
 * the key; a[b] the key then the attribute; misses give undefined values that only fail when
 * used). Every node visit counts against the step and depth bounds. Also sp_tmpl_render. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

typedef enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE } flow;

/* ---------------------------------------------------------------- errors and limits */

void tm_fail(tm_render *r, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tm_raise(&r->err, SP_TMPL_ERUNTIME, r->line, "%s", msg);
}

static void limit_fail(tm_render *r, const char *what) {
    tm_raise(&r->err, SP_TMPL_ELIMIT, r->line, "%s", what);
}

void tm_tick(tm_render *r, uint64_t n) {
    r->steps += n + 1;
    if (r->steps > r->max_steps) limit_fail(r, "too many evaluation steps (template loops too long)");
}

static void enter(tm_render *r) {
    if (++r->depth > r->max_depth) limit_fail(r, "template nesting too deep (recursion limit)");
}
static void leave(tm_render *r) { r->depth--; }

/* repr() of a string into a small C buffer, for messages. */
static const char *msg_repr(tm_render *r, tv v) {
    tm_buf b;
    tm_buf_init(&b, &r->arena);
    tm_repr(r, &b, v);
    if (b.n > 200) b.n = 200;
    tm_buf_putc(&b, 0);
    return b.p;
}

void tm_fail_undef(tm_render *r, tv u) {
    if (!u.u) tm_fail(r, "None is undefined");
    switch (u.u->kind) {
    case TU_NAME: tm_fail(r, "%s is undefined", msg_repr(r, tv_str(u.u->name)));
    case TU_ATTR:
        tm_fail(r, "'%s' has no attribute %s", u.u->objtype, msg_repr(r, tv_str(u.u->name)));
    case TU_ELEM: tm_fail(r, "%s has no element %s", u.u->objtype, msg_repr(r, u.u->key));
    case TU_HINT: tm_fail(r, "%.*s", (int)u.u->name.n, u.u->name.p);
    }
    tm_fail(r, "undefined value");
}

/* ---------------------------------------------------------------- scopes */

static tm_scope *scope_new(tm_render *r, tm_scope *parent) {
    tm_scope *s = tm_alloc(&r->arena, sizeof *s);
    s->parent = parent;
    return s;
}

static tv *scope_find_local(tm_scope *s, tm_str name) {
    for (size_t i = s->n; i-- > 0;)
        if (tm_eq(s->names[i], name)) return &s->vals[i];
    return NULL;
}

static void scope_set(tm_render *r, tm_scope *s, tm_str name, tv v) {
    tv *slot = scope_find_local(s, name);
    if (slot) {
        *slot = v;
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        s->names = tm_realloc(&r->arena, s->names, s->n * sizeof *s->names, cap * sizeof *s->names);
        s->vals = tm_realloc(&r->arena, s->vals, s->n * sizeof *s->vals, cap * sizeof *s->vals);
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

static tv lookup(tm_render *r, tm_scope *s, tm_str name) {
    for (; s; s = s->parent) {
        tv *v = scope_find_local(s, name);
        if (v) return *v;
    }
    tv *v = tm_dict_get(r, r->context, tv_str(name));
    if (v) return *v;
    int fn = tm_global_lookup(name);
    if (fn >= 0) {
        tv f = {0};
        f.k = TV_FUNC;
        f.fn = fn;
        return f;
    }
    return tm_undef_name(r, name);
}

/* ---------------------------------------------------------------- attribute and item access */

static tv loop_attr(tm_render *r, tv obj, tm_str name) {
    tm_loop *L = obj.loop;
    /* the loop walks a live list: it may have shrunk or grown since this iteration began */
    int64_t len = (int64_t)L->items->n, i = (int64_t)L->index0;
    if (tm_eqc(name, "index")) return tv_int(i + 1);
    if (tm_eqc(name, "index0")) return tv_int(i);
    if (tm_eqc(name, "revindex")) return tv_int(len - i);
    if (tm_eqc(name, "revindex0")) return tv_int(len - i - 1);
    if (tm_eqc(name, "first")) return tv_bool(i == 0);
    if (tm_eqc(name, "last")) return tv_bool(i + 1 >= len);
    if (tm_eqc(name, "length")) return tv_int(len);
    if (tm_eqc(name, "depth")) return tv_int(L->depth);
    if (tm_eqc(name, "depth0")) return tv_int(L->depth - 1);
    if (tm_eqc(name, "previtem"))
        return i > 0 && i - 1 < len ? L->items->v[i - 1] : tm_undef_hint(r, "there is no previous item");
    if (tm_eqc(name, "nextitem"))
        return i + 1 < len ? L->items->v[i + 1] : tm_undef_hint(r, "there is no next item");
    return tm_undef_attr(r, obj, name);
}

static tv method_value(tm_render *r, tv obj, tm_str name) {
    tm_method *m = tm_alloc(&r->arena, sizeof *m);
    m->self = obj;
    m->name = name;
    tv v = {0};
    v.k = TV_METHOD;
    v.meth = m;
    return v;
}

static tv unsafe_attr(tm_render *r, tv obj, tm_str name) {
    char msg[300];
    snprintf(msg, sizeof msg, "access to attribute '%.*s' of '%s' object is unsafe.",
             (int)(name.n > 100 ? 100 : name.n), name.p, tm_type_name(obj));
    return tm_undef_hint(r, msg);
}

/* obj.name: the attribute (a method) first, then the item. */
tv tm_getattr(tm_render *r, tv obj, tm_str name) {
    if (obj.k == TV_UNDEF) tm_fail_undef(r, obj);
    if (name.n && name.p[0] == '_') return unsafe_attr(r, obj, name);
    if (tm_has_method(obj, name)) return method_value(r, obj, name);
    if (obj.k == TV_DICT || obj.k == TV_NS) {
        tv *v = tm_dict_get(r, obj.m, tv_str(name));
        if (v) return *v;
    }
    if (obj.k == TV_LOOP) return loop_attr(r, obj, name);
    return tm_undef_attr(r, obj, name);
}

/* A Python index (negative counts from the end) into len items; false when out of range. */
static bool index_of(size_t len, tv key, size_t *out) {
    int64_t i;
    if (!tm_as_int(key, &i)) return false;
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len) return false;
    *out = (size_t)i;
    return true;
}

/* obj[key]: the item first, then (for a string key) the attribute. */
tv tm_getitem(tm_render *r, tv obj, tv key) {
    size_t i;
    switch (obj.k) {
    case TV_UNDEF: tm_fail_undef(r, obj);
    case TV_DICT: {
        if (!(key.k == TV_LIST && !(key.f & TVF_TUPLE)) && key.k != TV_DICT) {
            tv *v = tm_dict_get(r, obj.m, key);
            if (v) return *v;
        }
        break;
    }
    case TV_LIST:
        if (!(obj.f & TVF_GEN) && index_of(obj.l->n, key, &i)) return obj.l->v[i];
        break;
    case TV_STR:
        if (key.k == TV_INT || key.k == TV_BOOL) {
            size_t n = tm_utf8_count(obj.s);
            if (index_of(n, key, &i)) {
                size_t off = tm_utf8_offset(obj.s, i), l;
                tm_utf8_next(obj.s.p + off, obj.s.n - off, &l);
                tv c = tv_str((tm_str){obj.s.p + off, l});
                c.f = obj.f & TVF_MARKUP;
                return c;
            }
        }
        break;
    default: break;
    }
    if (key.k == TV_STR) {
        if (key.s.n && key.s.p[0] == '_') return unsafe_attr(r, obj, key.s);
        if (tm_has_method(obj, key.s)) return method_value(r, obj, key.s);
        if (obj.k == TV_NS) {
            tv *v = tm_dict_get(r, obj.m, key);
            if (v) return *v;
        }
        if (obj.k == TV_LOOP) return loop_attr(r, obj, key.s);
        return tm_undef_attr(r, obj, key.s);
    }
    return tm_undef_elem(r, obj, key);
}

/* Python slice index adjustment; returns the element count. */
static size_t slice_indices(tm_render *r, int64_t len, tv start, tv stop, tv step, int64_t *pstart,
                            int64_t *pstep) {
    int64_t st = 1, a, b;
    static const char bad[] = "slice indices must be integers or None or have an __index__ method";
    if (step.k != TV_NONE && !tm_as_int(step, &st)) tm_fail(r, bad);
    if (st == 0) tm_fail(r, "slice step cannot be zero");
    if (start.k == TV_NONE) a = st < 0 ? len - 1 : 0;
    else {
        if (!tm_as_int(start, &a)) tm_fail(r, bad);
        if (a < 0) {
            a += len;
            if (a < 0) a = st < 0 ? -1 : 0;
        } else if (a >= len) {
            a = st < 0 ? len - 1 : len;
        }
    }
    if (stop.k == TV_NONE) b = st < 0 ? -1 : len;
    else {
        if (!tm_as_int(stop, &b)) tm_fail(r, bad);
        if (b < 0) {
            b += len;
            if (b < 0) b = st < 0 ? -1 : 0;
        } else if (b >= len) {
            b = st < 0 ? len - 1 : len;
        }
    }
    *pstart = a;
    *pstep = st;
    if (st > 0) return b > a ? (size_t)((b - a - 1) / st + 1) : 0;
    return a > b ? (size_t)((a - b - 1) / (-st) + 1) : 0;
}

/* obj[a:b:c]: jinja2 compiles slices to a plain Python subscript, so errors raise. */
static tv do_slice(tm_render *r, tv obj, tv start, tv stop, tv step) {
    if (obj.k == TV_UNDEF) tm_fail_undef(r, obj);
    int64_t a, st;
    if (obj.k == TV_LIST && !(obj.f & TVF_GEN)) {
        size_t n = slice_indices(r, (int64_t)obj.l->n, start, stop, step, &a, &st);
        tm_tick(r, n);
        tm_list *l = tm_list_new(r, n);
        for (size_t k = 0; k < n; k++) l->v[k] = obj.l->v[a + (int64_t)k * st];
        l->n = n;
        tv v = tv_list(l);
        v.f = obj.f & TVF_TUPLE;
        return v;
    }
    if (obj.k == TV_STR) {
        /* byte offsets of each code point (plus the end) */
        size_t count = tm_utf8_count(obj.s);
        bool ascii = count == obj.s.n;
        size_t *offs = NULL;
        if (!ascii) {
            offs = tm_alloc(&r->arena, (count + 1) * sizeof *offs);
            size_t k = 0;
            for (size_t i = 0; i < obj.s.n; k++) {
                size_t l;
                offs[k] = i;
                tm_utf8_next(obj.s.p + i, obj.s.n - i, &l);
                i += l;
            }
            offs[count] = obj.s.n;
        }
        size_t n = slice_indices(r, (int64_t)count, start, stop, step, &a, &st);
        tm_tick(r, n / 8);
        tv v;
        if (st == 1) {
            size_t from = ascii ? (size_t)a : offs[a], to = ascii ? (size_t)a + n : offs[a + (int64_t)n];
            v = tv_str((tm_str){obj.s.p + from, to - from});
        } else {
            tm_buf b;
            tm_buf_init(&b, &r->arena);
            for (size_t k = 0; k < n; k++) {
                int64_t i = a + (int64_t)k * st;
                if (ascii) tm_buf_putc(&b, obj.s.p[i]);
                else tm_buf_put(&b, obj.s.p + offs[i], offs[i + 1] - offs[i]);
            }
            v = tv_str(tm_buf_str(&b));
        }
        v.f = obj.f & TVF_MARKUP;
        return v;
    }
    if (obj.k == TV_DICT) tm_fail(r, "unhashable type: 'slice'");
    tm_fail(r, "'%s' object is not subscriptable", tm_type_name(obj));
}

/* ---------------------------------------------------------------- arithmetic */

static const char *op_sym(int op) {
    static const char *const s[] = {"+", "-", "*", "/", "//", "%", "**"};
    return op >= 0 && op <= OP_POW ? s[op] : "?";
}

#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void bad_operands(tm_render *r, int op, tv a, tv b) {
    if (op == OP_POW)
        tm_fail(r, "unsupported operand type(s) for ** or pow(): '%s' and '%s'", tm_type_name(a),
                tm_type_name(b));
    tm_fail(r, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), tm_type_name(a),
            tm_type_name(b));
}

static tv str_concat(tm_render *r, tv a, tv b) {
    /* Markup + str escapes the plain side and stays Markup */
    bool markup = (a.f | b.f) & TVF_MARKUP;
    if (markup) {
        a = tm_escape_html(r, a);
        b = tm_escape_html(r, b);
    }
    char *p = tm_alloc(&r->arena, a.s.n + b.s.n + 1);
    if (a.s.n) memcpy(p, a.s.p, a.s.n);
    if (b.s.n) memcpy(p + a.s.n, b.s.p, b.s.n);
    tv v = tv_str((tm_str){p, a.s.n + b.s.n});
    v.f = markup ? TVF_MARKUP : 0;
    return v;
}

static tv repeat(tm_render *r, tv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.k == TV_STR) {
        if (seq.s.n && (uint64_t)times > r->arena.limit / seq.s.n)
            limit_fail(r, "string repetition too large");
        size_t n = seq.s.n * (size_t)times;
        char *p = tm_alloc(&r->arena, n + 1);
        for (int64_t k = 0; k < times; k++) memcpy(p + (size_t)k * seq.s.n, seq.s.p, seq.s.n);
        tm_tick(r, n / 64);
        tv v = tv_str((tm_str){p, n});
        v.f = seq.f & TVF_MARKUP;
        return v;
    }
    size_t len = seq.l->n;
    if (len == 0 || times == 0) {
        tv v = tv_list(tm_list_new(r, 0));
        v.f = seq.f & TVF_TUPLE;
        return v;
    }
    if ((uint64_t)times > r->arena.limit / (len * sizeof(tv))) limit_fail(r, "list repetition too large");
    size_t n = len * (size_t)times;
    tm_tick(r, n);
    tm_list *l = tm_list_new(r, n);
    for (int64_t k = 0; k < times; k++) memcpy(l->v + (size_t)k * len, seq.l->v, len * sizeof(tv));
    l->n = n;
    tv v = tv_list(l);
    v.f = seq.f & TVF_TUPLE;
    return v;
}

static tv int_pow(tm_render *r, int64_t base, int64_t exp) {
    int64_t result = 1;
    while (exp > 0) {
        if (exp & 1) {
            if (__builtin_mul_overflow(result, base, &result)) tm_fail(r, "integer overflow in **");
        }
        exp >>= 1;
        if (exp && __builtin_mul_overflow(base, base, &base)) tm_fail(r, "integer overflow in **");
    }
    return tv_int(result);
}

static double py_fmod(double x, double y) {
    double m = fmod(x, y);
    if (m != 0 && ((y < 0) != (m < 0))) m += y;
    if (m == 0) m = copysign(0.0, y);
    return m;
}

static tv binop(tm_render *r, int op, tv a, tv b) {
    if (a.k == TV_UNDEF) tm_fail_undef(r, a);
    if (b.k == TV_UNDEF) tm_fail_undef(r, b);
    bool an = a.k == TV_INT || a.k == TV_BOOL || a.k == TV_FLOAT;
    bool bn = b.k == TV_INT || b.k == TV_BOOL || b.k == TV_FLOAT;
    if (an && bn) {
        bool ints = a.k != TV_FLOAT && b.k != TV_FLOAT;
        int64_t x = 0, y = 0, z;
        double dx, dy;
        tm_as_num(a, &dx);
        tm_as_num(b, &dy);
        if (ints) {
            tm_as_int(a, &x);
            tm_as_int(b, &y);
        }
        switch (op) {
        case OP_ADD:
            if (!ints) return tv_float(dx + dy);
            if (__builtin_add_overflow(x, y, &z)) tm_fail(r, "integer overflow");
            return tv_int(z);
        case OP_SUB:
            if (!ints) return tv_float(dx - dy);
            if (__builtin_sub_overflow(x, y, &z)) tm_fail(r, "integer overflow");
            return tv_int(z);
        case OP_MUL:
            if (!ints) return tv_float(dx * dy);
            if (__builtin_mul_overflow(x, y, &z)) tm_fail(r, "integer overflow");
            return tv_int(z);
        case OP_DIV:
            if (dy == 0) tm_fail(r, ints ? "division by zero" : "float division by zero");
            if (ints && llabs(x) < (1LL << 53) && llabs(y) < (1LL << 53)) return tv_float((double)x / (double)y);
            return tv_float(dx / dy);
        case OP_FLOORDIV:
            if (ints) {
                if (y == 0) tm_fail(r, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) tm_fail(r, "integer overflow");
                int64_t q = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                return tv_int(q);
            }
            if (dy == 0) tm_fail(r, "float floor division by zero");
            return tv_float(floor((dx - py_fmod(dx, dy)) / dy + 0.0));
        case OP_MOD:
            if (ints) {
                if (y == 0) tm_fail(r, "integer modulo by zero");
                if (y == -1) return tv_int(0);
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                return tv_int(m);
            }
            if (dy == 0) tm_fail(r, "float modulo");
            return tv_float(py_fmod(dx, dy));
        case OP_POW:
            if (ints && y >= 0) return int_pow(r, x, y);
            if (dx == 0 && dy < 0) tm_fail(r, "0.0 cannot be raised to a negative power");
            if (dx < 0 && dy != floor(dy)) tm_fail(r, "complex results are not supported");
            return tv_float(pow(dx, dy));
        }
    }
    if ((a.k == TV_LIST && (a.f & TVF_GEN)) || (b.k == TV_LIST && (b.f & TVF_GEN))) bad_operands(r, op, a, b);
    switch (op) {
    case OP_ADD:
        if (a.k == TV_STR && b.k == TV_STR) return str_concat(r, a, b);
        if (a.k == TV_LIST && b.k == TV_LIST && (a.f & TVF_TUPLE) == (b.f & TVF_TUPLE)) {
            tm_tick(r, a.l->n + b.l->n);
            tm_list *l = tm_list_new(r, a.l->n + b.l->n);
            if (a.l->n) memcpy(l->v, a.l->v, a.l->n * sizeof(tv));
            if (b.l->n) memcpy(l->v + a.l->n, b.l->v, b.l->n * sizeof(tv));
            l->n = a.l->n + b.l->n;
            tv v = tv_list(l);
            v.f = a.f & TVF_TUPLE;
            return v;
        }
        if (a.k == TV_STR && (a.f & TVF_MARKUP)) bad_operands(r, op, a, b);
        if (a.k == TV_STR || a.k == TV_LIST)
            tm_fail(r, "can only concatenate %s (not \"%s\") to %s", tm_type_name(a), tm_type_name(b),
                    tm_type_name(a));
        bad_operands(r, op, a, b);
    case OP_MUL: {
        int64_t times;
        if ((a.k == TV_STR || a.k == TV_LIST) && tm_as_int(b, &times)) return repeat(r, a, times);
        if ((b.k == TV_STR || b.k == TV_LIST) && tm_as_int(a, &times)) return repeat(r, b, times);
        if (a.k == TV_STR || a.k == TV_LIST || b.k == TV_STR || b.k == TV_LIST)
            tm_fail(r, "can't multiply sequence by non-int of type '%s'",
                    tm_type_name(a.k == TV_STR || a.k == TV_LIST ? b : a));
        bad_operands(r, op, a, b);
    }
    case OP_MOD:
        if (a.k == TV_STR) return tm_percent_format(r, a, b);
        bad_operands(r, op, a, b);
    default: bad_operands(r, op, a, b);
    }
}

static bool compare(tm_render *r, int op, tv a, tv b) {
    switch (op) {
    case OP_EQ: return tm_equal(r, a, b);
    case OP_NE: return !tm_equal(r, a, b);
    case OP_IN: return tm_contains(r, b, a);
    case OP_NOTIN: return !tm_contains(r, b, a);
    default: break;
    }
    static const char *const names[] = {"<", "<=", ">", ">="};
    int c = tm_compare(r, a, b, names[op - OP_LT]);
    if (c == 2) return false; /* NaN */
    switch (op) {
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

/* ---------------------------------------------------------------- calls */

static void bind_target(tm_render *r, tm_scope *s, const tm_node *target, tv v);
static flow exec_body(tm_render *r, tm_scope *s, tm_nlist body);
static tv eval(tm_render *r, tm_scope *s, const tm_node *n);

static tv call_macro(tm_render *r, tm_macro *m, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals,
                     size_t nkw) {
    const tm_node *def = m->def;
    size_t np = def->kwargs.n;
    int nlen = (int)def->name.n;
    if (nargs > np)
        tm_fail(r, "macro '%.*s' takes not more than %zu argument(s)", nlen, def->name.p, np);
    tm_scope *s = scope_new(r, m->closure);
    bool *given = tm_alloc(&r->arena, np + 1);
    for (size_t i = 0; i < nargs; i++) {
        scope_set(r, s, def->kwnames[i], args[i]);
        given[i] = true;
    }
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < np && !tm_eq(def->kwnames[i], kwnames[k])) i++;
        if (i == np)
            tm_fail(r, "macro '%.*s' takes no keyword argument '%.*s'", nlen, def->name.p,
                    (int)kwnames[k].n, kwnames[k].p);
        if (given[i])
            tm_fail(r, "macro '%.*s' got multiple values for argument '%.*s'", nlen, def->name.p,
                    (int)kwnames[k].n, kwnames[k].p);
        scope_set(r, s, def->kwnames[i], kwvals[k]);
        given[i] = true;
    }
    for (size_t i = 0; i < np; i++) {
        if (given[i]) continue;
        tv v;
        if (def->kwargs.v[i]) {
            v = eval(r, s, def->kwargs.v[i]);
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "parameter '%.*s' was not provided", (int)def->kwnames[i].n,
                     def->kwnames[i].p);
            v = tm_undef_hint(r, msg);
        }
        scope_set(r, s, def->kwnames[i], v);
    }
    tm_buf out;
    tm_buf_init(&out, &r->arena);
    out.max = r->max_output;
    tm_buf *saved = r->out;
    r->out = &out;
    enter(r);
    exec_body(r, s, def->body);
    leave(r);
    r->out = saved;
    return tv_str(tm_buf_str(&out));
}

tv tm_call_value(tm_render *r, tv fn, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw) {
    switch (fn.k) {
    case TV_MACRO: return call_macro(r, fn.mac, args, nargs, kwnames, kwvals, nkw);
    case TV_FUNC: return tm_call_global(r, fn.fn, args, nargs, kwnames, kwvals, nkw);
    case TV_METHOD: return tm_call_method(r, fn.meth->self, fn.meth->name, args, nargs, kwnames, kwvals, nkw);
    case TV_UNDEF: tm_fail_undef(r, fn);
    default: tm_fail(r, "'%s' object is not callable", tm_type_name(fn));
    }
}

typedef struct {
    tv *args, *kwvals;
    size_t nargs, nkw;
} evargs;

static evargs eval_args(tm_render *r, tm_scope *s, const tm_node *n) {
    evargs e = {0};
    e.nargs = n->body.n;
    e.nkw = n->kwargs.n;
    if (e.nargs) e.args = tm_alloc(&r->arena, e.nargs * sizeof(tv));
    if (e.nkw) e.kwvals = tm_alloc(&r->arena, e.nkw * sizeof(tv));
    for (size_t i = 0; i < e.nargs; i++) e.args[i] = eval(r, s, n->body.v[i]);
    for (size_t i = 0; i < e.nkw; i++) e.kwvals[i] = eval(r, s, n->kwargs.v[i]);
    return e;
}

static tv eval_call(tm_render *r, tm_scope *s, const tm_node *n) {
    const tm_node *f = n->a;
    if (f->kind == N_GETATTR) { /* obj.method(...) without materializing a bound method */
        tv obj = eval(r, s, f->a);
        if (obj.k != TV_UNDEF && tm_has_method(obj, f->name) && !(f->name.n && f->name.p[0] == '_')) {
            evargs e = eval_args(r, s, n);
            return tm_call_method(r, obj, f->name, e.args, e.nargs, n->kwnames, e.kwvals, e.nkw);
        }
        tv fn = tm_getattr(r, obj, f->name);
        evargs e = eval_args(r, s, n);
        return tm_call_value(r, fn, e.args, e.nargs, n->kwnames, e.kwvals, e.nkw);
    }
    tv fn = eval(r, s, f);
    evargs e = eval_args(r, s, n);
    return tm_call_value(r, fn, e.args, e.nargs, n->kwnames, e.kwvals, e.nkw);
}

/* A filter node applied to `input` (a == NULL marks the chain's start in block filters). */
static tv apply_filter_node(tm_render *r, tm_scope *s, const tm_node *f, tv input) {
    tv in = f->a ? eval(r, s, f->a) : input;
    if (!tm_filter_known(f->name))
        tm_fail(r, "No filter named '%.*s' found.", (int)f->name.n, f->name.p);
    evargs e = eval_args(r, s, f);
    r->line = f->line;
    return tm_apply_filter(r, f->name, in, e.args, e.nargs, f->kwnames, e.kwvals, e.nkw);
}

static tv apply_chain(tm_render *r, tm_scope *s, const tm_node *f, tv input) {
    if (!f) return input;
    tv in = f->a ? apply_chain(r, s, f->a, input) : input;
    if (!tm_filter_known(f->name))
        tm_fail(r, "No filter named '%.*s' found.", (int)f->name.n, f->name.p);
    evargs e = eval_args(r, s, f);
    r->line = f->line;
    return tm_apply_filter(r, f->name, in, e.args, e.nargs, f->kwnames, e.kwvals, e.nkw);
}

/* ---------------------------------------------------------------- expressions */

static tv eval_inner(tm_render *r, tm_scope *s, const tm_node *n) {
    switch (n->kind) {
    case N_CONST: return n->value;
    case N_NAME: return lookup(r, s, n->name);
    case N_GETATTR: return tm_getattr(r, eval(r, s, n->a), n->name);
    case N_GETITEM: {
        tv obj = eval(r, s, n->a);
        if (n->b->kind == N_SLICE) {
            const tm_node *sl = n->b;
            tv a = sl->a ? eval(r, s, sl->a) : tv_none();
            tv b = sl->b ? eval(r, s, sl->b) : tv_none();
            tv c = sl->c ? eval(r, s, sl->c) : tv_none();
            return do_slice(r, obj, a, b, c);
        }
        tv key = eval(r, s, n->b);
        return tm_getitem(r, obj, key);
    }
    case N_SLICE: tm_fail(r, "slice outside of a subscript");
    case N_CALL: return eval_call(r, s, n);
    case N_FILTER: return apply_filter_node(r, s, n, tv_undef());
    case N_TEST: {
        tv in = eval(r, s, n->a);
        if (!tm_test_known(n->name)) tm_fail(r, "No test named '%.*s' found.", (int)n->name.n, n->name.p);
        evargs e = eval_args(r, s, n);
        if (e.nkw) tm_fail(r, "keyword arguments to tests are not supported");
        return tv_bool(tm_apply_test(r, n->name, in, e.args, e.nargs));
    }
    case N_NOT: return tv_bool(!tm_truthy(eval(r, s, n->a)));
    case N_NEG:
    case N_POS: {
        tv v = eval(r, s, n->a);
        bool neg = n->kind == N_NEG;
        if (v.k == TV_INT || v.k == TV_BOOL) {
            int64_t i;
            tm_as_int(v, &i);
            if (neg && i == INT64_MIN) tm_fail(r, "integer overflow");
            return tv_int(neg ? -i : i);
        }
        if (v.k == TV_FLOAT) return tv_float(neg ? -v.d : v.d);
        if (v.k == TV_UNDEF) tm_fail_undef(r, v);
        tm_fail(r, "bad operand type for unary %c: '%s'", neg ? '-' : '+', tm_type_name(v));
    }
    case N_BIN: {
        tv a = eval(r, s, n->a);
        tv b = eval(r, s, n->b);
        return binop(r, (int)n->value.i, a, b);
    }
    case N_AND: {
        tv a = eval(r, s, n->a);
        return tm_truthy(a) ? eval(r, s, n->b) : a;
    }
    case N_OR: {
        tv a = eval(r, s, n->a);
        return tm_truthy(a) ? a : eval(r, s, n->b);
    }
    case N_CMP: {
        tv left = eval(r, s, n->a);
        for (size_t i = 0; i < n->body.n; i++) {
            tv right = eval(r, s, n->body.v[i]);
            if (!compare(r, n->ops[i], left, right)) return tv_bool(false);
            left = right;
        }
        return tv_bool(true);
    }
    case N_CONCAT: {
        tm_buf b;
        tm_buf_init(&b, &r->arena);
        for (size_t i = 0; i < n->body.n; i++) tm_to_str(r, &b, eval(r, s, n->body.v[i]));
        return tv_str(tm_buf_str(&b));
    }
    case N_COND: {
        if (tm_truthy(eval(r, s, n->a))) return eval(r, s, n->b);
        if (n->c) return eval(r, s, n->c);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the inline if-expression on line %d evaluated to false and no else section was defined.",
                 n->line);
        return tm_undef_hint(r, msg);
    }
    case N_LIST:
    case N_TUPLE: {
        tm_list *l = tm_list_new(r, n->body.n);
        for (size_t i = 0; i < n->body.n; i++) l->v[i] = eval(r, s, n->body.v[i]);
        l->n = n->body.n;
        tv v = tv_list(l);
        if (n->kind == N_TUPLE) v.f = TVF_TUPLE;
        return v;
    }
    case N_DICT: {
        tm_dict *m = tm_dict_new(r, n->body.n);
        for (size_t i = 0; i < n->body.n; i++) {
            tv k = eval(r, s, n->body.v[i]);
            tv v = eval(r, s, n->kwargs.v[i]);
            if (k.k == TV_UNDEF) tm_fail(r, "unhashable dict key");
            tm_dict_set(r, m, k, v);
        }
        return tv_dict(m);
    }
    default: tm_fail(r, "statement used as an expression");
    }
}

static tv eval(tm_render *r, tm_scope *s, const tm_node *n) {
    enter(r);
    tm_tick(r, 0);
    int saved = r->line;
    r->line = n->line;
    tv v = eval_inner(r, s, n);
    r->line = saved;
    leave(r);
    return v;
}

/* ---------------------------------------------------------------- statements */

static void bind_target(tm_render *r, tm_scope *s, const tm_node *target, tv v) {
    if (target->kind == N_NAME) {
        scope_set(r, s, target->name, v);
        return;
    }
    /* tuple unpacking (an undefined value iterates as empty) */
    if (v.k != TV_UNDEF && v.k != TV_LIST && v.k != TV_STR && v.k != TV_DICT)
        tm_fail(r, "cannot unpack non-iterable %s object", tm_type_name(v));
    tm_list *items = tm_iterate(r, v);
    size_t want = target->body.n;
    if (items->n > want) tm_fail(r, "too many values to unpack (expected %zu)", want);
    if (items->n < want) tm_fail(r, "not enough values to unpack (expected %zu, got %zu)", want, items->n);
    for (size_t i = 0; i < want; i++) bind_target(r, s, target->body.v[i], items->v[i]);
}

static void exec_set(tm_render *r, tm_scope *s, const tm_node *target, tv v) {
    if (target->kind == N_GETATTR) { /* ns.attr = ... */
        tv ns = lookup(r, s, target->a->name);
        if (ns.k != TV_NS) tm_fail(r, "cannot assign attribute on non-namespace object");
        tm_dict_set(r, ns.m, tv_str(target->name), v);
        return;
    }
    bind_target(r, s, target, v);
}

/* Run a body with its output captured into a string. */
static tv capture(tm_render *r, tm_scope *s, tm_nlist body, flow *fl) {
    tm_buf out;
    tm_buf_init(&out, &r->arena);
    out.max = r->max_output;
    out.line = r->line;
    tm_buf *saved = r->out;
    r->out = &out;
    flow f = exec_body(r, s, body);
    if (fl) *fl = f;
    r->out = saved;
    return tv_str(tm_buf_str(&out));
}

static flow exec_for(tm_render *r, tm_scope *s, const tm_node *n) {
    tv seq = eval(r, s, n->b);
    /* a list is walked in place (as Python does: items appended meanwhile are visited too) */
    tm_list *items = seq.k == TV_LIST && !(seq.f & TVF_GEN) ? seq.l : tm_iterate(r, seq);
    if (n->c) { /* the inline `if` filters before the loop sees the items */
        tm_list *kept = tm_list_new(r, items->n);
        tm_scope *t = scope_new(r, s);
        for (size_t i = 0; i < items->n; i++) {
            tm_tick(r, 0);
            t->n = 0;
            bind_target(r, t, n->a, items->v[i]);
            if (tm_truthy(eval(r, t, n->c))) tm_list_push(r, kept, items->v[i]);
        }
        items = kept;
    }
    if (items->n == 0) {
        if (n->body2.n) exec_body(r, scope_new(r, s), n->body2);
        return FLOW_NORMAL;
    }
    tm_loop *L = tm_alloc(&r->arena, sizeof *L);
    L->items = items;
    L->depth = 1;
    tv loopv = {0};
    loopv.k = TV_LOOP;
    loopv.loop = L;
    /* one scope reused by every iteration: nothing set in an iteration survives it */
    tm_scope *it = scope_new(r, s);
    for (size_t i = 0; i < items->n; i++) {
        tm_tick(r, 0);
        L->index0 = i;
        it->n = 0;
        scope_set(r, it, TM_LIT("loop"), loopv);
        r->line = n->line;
        bind_target(r, it, n->a, items->v[i]);
        flow f = exec_body(r, it, n->body);
        if (f == FLOW_BREAK) break;
    }
    return FLOW_NORMAL;
}

static flow exec_stmt(tm_render *r, tm_scope *s, const tm_node *n) {
    r->line = n->line;
    tm_tick(r, 0);
    switch (n->kind) {
    case N_TEXT: tm_buf_put(r->out, n->name.p, n->name.n); return FLOW_NORMAL;
    case N_OUTPUT: {
        tv v = eval(r, s, n->a);
        r->out->line = n->line;
        tm_to_str(r, r->out, v);
        return FLOW_NORMAL;
    }
    case N_IF:
        if (tm_truthy(eval(r, s, n->a))) return exec_body(r, s, n->body);
        return exec_body(r, s, n->body2);
    case N_FOR: return exec_for(r, s, n);
    case N_SET: exec_set(r, s, n->a, eval(r, s, n->b)); return FLOW_NORMAL;
    case N_SETBLOCK: {
        flow f;
        tv v = capture(r, scope_new(r, s), n->body, &f);
        r->line = n->line;
        exec_set(r, s, n->a, apply_chain(r, s, n->c, v));
        return f;
    }
    case N_FILTERBLOCK: {
        flow f;
        tv v = capture(r, scope_new(r, s), n->body, &f);
        r->line = n->line;
        tm_to_str(r, r->out, apply_chain(r, s, n->c, v));
        return f;
    }
    case N_MACRO: {
        tm_macro *m = tm_alloc(&r->arena, sizeof *m);
        m->def = n;
        m->closure = s;
        tv v = {0};
        v.k = TV_MACRO;
        v.mac = m;
        scope_set(r, s, n->name, v);
        return FLOW_NORMAL;
    }
    case N_WITH: {
        tm_scope *w = scope_new(r, s);
        for (size_t i = 0; i < n->kwargs.n; i++) scope_set(r, w, n->kwnames[i], eval(r, s, n->kwargs.v[i]));
        return exec_body(r, w, n->body);
    }
    case N_BODY: exec_body(r, scope_new(r, s), n->body); return FLOW_NORMAL; /* a call block */
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: tm_fail(r, "expression used as a statement");
    }
}

static flow exec_body(tm_render *r, tm_scope *s, tm_nlist body) {
    enter(r);
    for (size_t i = 0; i < body.n; i++) {
        flow f = exec_stmt(r, s, body.v[i]);
        if (f != FLOW_NORMAL) {
            leave(r);
            return f;
        }
    }
    leave(r);
    return FLOW_NORMAL;
}

/* ---------------------------------------------------------------- public */

static void opts_apply(tm_render *r, const sp_tmpl_opts *o) {
    r->max_output = o && o->max_output ? o->max_output : SP_TMPL_DEFAULT_MAX_OUTPUT;
    r->max_steps = o && o->max_steps ? o->max_steps : SP_TMPL_DEFAULT_MAX_STEPS;
    r->max_depth = o && o->max_depth > 0 ? o->max_depth : SP_TMPL_DEFAULT_MAX_DEPTH;
    size_t mem = o && o->max_memory ? o->max_memory : SP_TMPL_DEFAULT_MAX_MEMORY;
    tm_arena_init(&r->arena, mem, &r->err);
    const char *date = o && o->fixed_date ? o->fixed_date : getenv("SPARROW_FIXED_DATE");
    if (date) snprintf(r->fixed_date, sizeof r->fixed_date, "%s", date);
}

sp_tmpl_status sp_tmpl_render(const sp_tmpl *t, const cJSON *context, const sp_tmpl_opts *opts,
                              char **out, size_t *out_len, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (err && errlen) err[0] = 0;
    if (!t || !out) {
        if (err && errlen) snprintf(err, errlen, "no template to render");
        return SP_TMPL_EINVAL;
    }
    if (context && !cJSON_IsObject(context)) {
        if (err && errlen) snprintf(err, errlen, "the template context must be a JSON object");
        return SP_TMPL_EINVAL;
    }
    tm_render *r = calloc(1, sizeof *r);
    if (!r) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return SP_TMPL_ELIMIT;
    }
    opts_apply(r, opts);
    if (setjmp(r->err.jb)) {
        sp_tmpl_status code = r->err.code;
        if (err && errlen) snprintf(err, errlen, "%s", r->err.msg);
        tm_arena_free(&r->arena);
        free(r);
        return code;
    }
    r->context = context ? tm_from_cjson(r, context, 0).m : tm_dict_new(r, 0);
    r->root = scope_new(r, NULL);
    tm_buf buf;
    tm_buf_init(&buf, &r->arena);
    buf.max = r->max_output;
    r->out = &buf;
    exec_body(r, r->root, t->body);
    char *s = malloc(buf.n + 1);
    if (!s) tm_raise(&r->err, SP_TMPL_ELIMIT, 0, "out of memory");
    if (buf.n) memcpy(s, buf.p, buf.n);
    s[buf.n] = 0;
    *out = s;
    if (out_len) *out_len = buf.n;
    tm_arena_free(&r->arena);
    free(r);
    return SP_TMPL_OK;
}
