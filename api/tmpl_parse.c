/* api/tmpl_parse.c — the template parser: tokens -> AST, following jinja2's parser.py rule for
 * rule (statement set, expression precedence, tuples, call arguments, filters and tests), plus
 * the `{% generation %}` extension and loop controls. Unknown filters/tests are compile-time
 * errors except inside `if` statements and inline ifs, where jinja2 defers them to runtime.
 * Also the public sp_tmpl_parse / sp_tmpl_free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl_impl.h"

#define TM_PARSE_MAX_DEPTH 200

typedef struct {
    tm_arena *a;
    tm_token *t;
    size_t n, i;
    int depth;
    int loop_depth; /* break/continue only inside a for body */
    const char *const *end_tokens; /* what the innermost body waits for (error messages) */
} parser;

/* ---------------------------------------------------------------- token helpers */

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
static void pfail(parser *P, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tm_raise(P->a->err, SP_TMPL_ESYNTAX, line, "%s", msg);
}

static tm_token *cur(parser *P) { return &P->t[P->i]; }
static tm_token *peek(parser *P) { return &P->t[P->i + 1 < P->n ? P->i + 1 : P->n - 1]; }
static tm_token *advance(parser *P) {
    tm_token *t = cur(P);
    if (P->i + 1 < P->n) P->i++;
    return t;
}
static bool is_op(tm_token *t, const char *op) { return t->kind == T_OP && tm_eqc(t->s, op); }
static bool is_name(tm_token *t, const char *name) { return t->kind == T_NAME && tm_eqc(t->s, name); }

static void describe(tm_token *t, char *buf, size_t cap) {
    switch (t->kind) {
    case T_EOF: snprintf(buf, cap, "end of template"); break;
    case T_VAR_BEGIN: snprintf(buf, cap, "begin of print statement"); break;
    case T_VAR_END: snprintf(buf, cap, "end of print statement"); break;
    case T_BLOCK_BEGIN: snprintf(buf, cap, "begin of statement block"); break;
    case T_BLOCK_END: snprintf(buf, cap, "end of statement block"); break;
    case T_STRING: snprintf(buf, cap, "string"); break;
    case T_INT: snprintf(buf, cap, "integer"); break;
    case T_FLOAT: snprintf(buf, cap, "float"); break;
    case T_DATA: snprintf(buf, cap, "template data / text"); break;
    default: snprintf(buf, cap, "%.*s", (int)(t->s.n > 60 ? 60 : t->s.n), t->s.p);
    }
}

#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void fail_expected(parser *P, const char *what) {
    tm_token *t = cur(P);
    char got[80];
    describe(t, got, sizeof got);
    if (t->kind == T_EOF) pfail(P, t->line, "unexpected end of template, expected '%s'.", what);
    pfail(P, t->line, "expected token '%s', got '%s'", what, got);
}

static tm_token *expect_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) fail_expected(P, op);
    return advance(P);
}
static tm_token *expect_kind(parser *P, tm_tkind k, const char *what) {
    if (cur(P)->kind != k) fail_expected(P, what);
    return advance(P);
}
static tm_token *expect_name(parser *P, const char *name) {
    if (!is_name(cur(P), name)) fail_expected(P, name);
    return advance(P);
}

/* ---------------------------------------------------------------- node helpers */

static tm_node *node(parser *P, tm_nkind kind, int line) {
    tm_node *n = tm_alloc(P->a, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = line;
    return n;
}

typedef struct {
    tm_node **v;
    size_t n, cap;
} nvec;

static void nvec_push(parser *P, nvec *v, tm_node *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        v->v = tm_realloc(P->a, v->v, v->n * sizeof *v->v, cap * sizeof *v->v);
        v->cap = cap;
    }
    v->v[v->n++] = x;
}
static tm_nlist nvec_list(nvec *v) { return (tm_nlist){v->v, v->n}; }

static void enter(parser *P) {
    if (++P->depth > TM_PARSE_MAX_DEPTH)
        pfail(P, cur(P)->line, "template nesting too deep (over %d levels)", TM_PARSE_MAX_DEPTH);
}
static void leave(parser *P) { P->depth--; }

/* ---------------------------------------------------------------- expressions */

static tm_node *parse_expression(parser *P, bool with_condexpr);
static tm_node *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end,
                            bool explicit_parens);
static tm_node *parse_unary(parser *P, bool with_filter);
static tm_node *parse_primary(parser *P);
static tm_node *parse_postfix(parser *P, tm_node *n);
static tm_node *parse_filter(parser *P, tm_node *n, bool start_inline);

static tm_node *parse_condexpr(parser *P) {
    int line = cur(P)->line;
    tm_node *expr1 = parse_expression(P, false);
    while (is_name(cur(P), "if")) {
        advance(P);
        tm_node *c = node(P, N_COND, line);
        c->b = expr1;
        c->a = parse_expression(P, false);
        if (is_name(cur(P), "else")) {
            advance(P);
            c->c = parse_condexpr(P);
        }
        expr1 = c;
        line = cur(P)->line;
    }
    return expr1;
}

static tm_node *parse_or(parser *P);
static tm_node *parse_and(parser *P);
static tm_node *parse_not(parser *P);
static tm_node *parse_compare(parser *P);
static tm_node *parse_math1(parser *P);
static tm_node *parse_concat(parser *P);
static tm_node *parse_math2(parser *P);
static tm_node *parse_pow(parser *P);

static tm_node *parse_expression(parser *P, bool with_condexpr) {
    enter(P);
    tm_node *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    leave(P);
    return n;
}

static tm_node *binary(parser *P, tm_nkind kind, int line, tm_node *a, tm_node *b) {
    tm_node *n = node(P, kind, line);
    n->a = a;
    n->b = b;
    return n;
}

static tm_node *parse_or(parser *P) {
    int line = cur(P)->line;
    tm_node *left = parse_and(P);
    while (is_name(cur(P), "or")) {
        advance(P);
        left = binary(P, N_OR, line, left, parse_and(P));
        line = cur(P)->line;
    }
    return left;
}

static tm_node *parse_and(parser *P) {
    int line = cur(P)->line;
    tm_node *left = parse_not(P);
    while (is_name(cur(P), "and")) {
        advance(P);
        left = binary(P, N_AND, line, left, parse_not(P));
        line = cur(P)->line;
    }
    return left;
}

static tm_node *parse_not(parser *P) {
    if (is_name(cur(P), "not")) {
        int line = advance(P)->line;
        enter(P);
        tm_node *n = node(P, N_NOT, line);
        n->a = parse_not(P);
        leave(P);
        return n;
    }
    return parse_compare(P);
}

static int compare_op(tm_token *t) {
    if (t->kind != T_OP) return -1;
    static const struct { const char *s; int op; } ops[] = {
        {"==", OP_EQ}, {"!=", OP_NE}, {"<", OP_LT}, {"<=", OP_LE}, {">", OP_GT}, {">=", OP_GE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (tm_eqc(t->s, ops[i].s)) return ops[i].op;
    return -1;
}

static tm_node *parse_compare(parser *P) {
    int line = cur(P)->line;
    tm_node *expr = parse_math1(P);
    nvec operands = {0};
    uint8_t ops[64];
    size_t nops = 0;
    for (;;) {
        int op = compare_op(cur(P));
        if (op >= 0) {
            advance(P);
        } else if (is_name(cur(P), "in")) {
            advance(P);
            op = OP_IN;
        } else if (is_name(cur(P), "not") && is_name(peek(P), "in")) {
            advance(P);
            advance(P);
            op = OP_NOTIN;
        } else {
            break;
        }
        if (nops == sizeof ops) pfail(P, cur(P)->line, "too many chained comparisons");
        ops[nops++] = (uint8_t)op;
        nvec_push(P, &operands, parse_math1(P));
        line = cur(P)->line;
    }
    if (!nops) return expr;
    tm_node *n = node(P, N_CMP, line);
    n->a = expr;
    n->body = nvec_list(&operands);
    n->ops = tm_alloc(P->a, nops);
    memcpy(n->ops, ops, nops);
    return n;
}

static tm_node *bin_op(parser *P, int op, int line, tm_node *a, tm_node *b) {
    tm_node *n = binary(P, N_BIN, line, a, b);
    n->value = tv_int(op);
    return n;
}

static tm_node *parse_math1(parser *P) {
    int line = cur(P)->line;
    tm_node *left = parse_concat(P);
    while (is_op(cur(P), "+") || is_op(cur(P), "-")) {
        int op = is_op(advance(P), "+") ? OP_ADD : OP_SUB;
        left = bin_op(P, op, line, left, parse_concat(P));
        line = cur(P)->line;
    }
    return left;
}

static tm_node *parse_concat(parser *P) {
    int line = cur(P)->line;
    tm_node *first = parse_math2(P);
    if (!is_op(cur(P), "~")) return first;
    nvec args = {0};
    nvec_push(P, &args, first);
    while (is_op(cur(P), "~")) {
        advance(P);
        nvec_push(P, &args, parse_math2(P));
    }
    tm_node *n = node(P, N_CONCAT, line);
    n->body = nvec_list(&args);
    return n;
}

static tm_node *parse_math2(parser *P) {
    int line = cur(P)->line;
    tm_node *left = parse_pow(P);
    for (;;) {
        int op;
        if (is_op(cur(P), "*")) op = OP_MUL;
        else if (is_op(cur(P), "/")) op = OP_DIV;
        else if (is_op(cur(P), "//")) op = OP_FLOORDIV;
        else if (is_op(cur(P), "%")) op = OP_MOD;
        else break;
        advance(P);
        left = bin_op(P, op, line, left, parse_pow(P));
        line = cur(P)->line;
    }
    return left;
}

static tm_node *parse_pow(parser *P) {
    int line = cur(P)->line;
    tm_node *left = parse_unary(P, true);
    while (is_op(cur(P), "**")) {
        advance(P);
        left = bin_op(P, OP_POW, line, left, parse_unary(P, true));
        line = cur(P)->line;
    }
    return left;
}

static tm_node *parse_test(parser *P, tm_node *n);

static tm_node *parse_filter_expr(parser *P, tm_node *n);

static tm_node *parse_unary(parser *P, bool with_filter) {
    tm_token *t = cur(P);
    tm_node *n;
    enter(P);
    if (is_op(t, "-") || is_op(t, "+")) {
        advance(P);
        n = node(P, is_op(t, "-") ? N_NEG : N_POS, t->line);
        n->a = parse_unary(P, false);
    } else {
        n = parse_primary(P);
    }
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    leave(P);
    return n;
}

static tm_node *parse_list(parser *P) {
    tm_token *t = expect_op(P, "[");
    nvec items = {0};
    while (!is_op(cur(P), "]")) {
        if (items.n) expect_op(P, ",");
        if (is_op(cur(P), "]")) break;
        nvec_push(P, &items, parse_expression(P, true));
    }
    expect_op(P, "]");
    tm_node *n = node(P, N_LIST, t->line);
    n->body = nvec_list(&items);
    return n;
}

static tm_node *parse_dict(parser *P) {
    tm_token *t = expect_op(P, "{");
    nvec keys = {0}, vals = {0};
    while (!is_op(cur(P), "}")) {
        if (keys.n) expect_op(P, ",");
        if (is_op(cur(P), "}")) break;
        nvec_push(P, &keys, parse_expression(P, true));
        expect_op(P, ":");
        nvec_push(P, &vals, parse_expression(P, true));
    }
    expect_op(P, "}");
    tm_node *n = node(P, N_DICT, t->line);
    n->body = nvec_list(&keys);
    n->kwargs = nvec_list(&vals);
    return n;
}

static tm_node *parse_primary(parser *P) {
    tm_token *t = cur(P);
    tm_node *n;
    if (t->kind == T_NAME) {
        advance(P);
        if (tm_eqc(t->s, "true") || tm_eqc(t->s, "True")) {
            n = node(P, N_CONST, t->line);
            n->value = tv_bool(true);
        } else if (tm_eqc(t->s, "false") || tm_eqc(t->s, "False")) {
            n = node(P, N_CONST, t->line);
            n->value = tv_bool(false);
        } else if (tm_eqc(t->s, "none") || tm_eqc(t->s, "None")) {
            n = node(P, N_CONST, t->line);
            n->value = tv_none();
        } else {
            n = node(P, N_NAME, t->line);
            n->name = t->s;
        }
        return n;
    }
    if (t->kind == T_STRING) {
        advance(P);
        tm_str s = t->s;
        if (cur(P)->kind == T_STRING) { /* adjacent literals concatenate */
            tm_buf b;
            tm_buf_init(&b, P->a);
            tm_buf_put(&b, s.p, s.n);
            while (cur(P)->kind == T_STRING) {
                tm_token *u = advance(P);
                tm_buf_put(&b, u->s.p, u->s.n);
            }
            s = tm_buf_str(&b);
        }
        n = node(P, N_CONST, t->line);
        n->value = tv_str(s);
        return n;
    }
    if (t->kind == T_INT || t->kind == T_FLOAT) {
        advance(P);
        n = node(P, N_CONST, t->line);
        n->value = t->kind == T_INT ? tv_int(t->i) : tv_float(t->d);
        return n;
    }
    if (is_op(t, "(")) {
        advance(P);
        n = parse_tuple(P, false, true, NULL, true);
        expect_op(P, ")");
        return n;
    }
    if (is_op(t, "[")) return parse_list(P);
    if (is_op(t, "{")) return parse_dict(P);
    char got[80];
    describe(t, got, sizeof got);
    if (t->kind == T_EOF) pfail(P, t->line, "unexpected end of template");
    pfail(P, t->line, "unexpected '%s'", got);
}

static bool is_tuple_end(parser *P, const char *extra_end) {
    tm_token *t = cur(P);
    if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || is_op(t, ")")) return true;
    return extra_end && is_name(t, extra_end);
}

static tm_node *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end,
                            bool explicit_parens) {
    int line = cur(P)->line;
    nvec args = {0};
    bool is_tuple = false;
    enter(P);
    for (;;) {
        if (args.n) expect_op(P, ",");
        if (is_tuple_end(P, extra_end)) break;
        nvec_push(P, &args, simplified ? parse_primary(P) : parse_expression(P, with_condexpr));
        if (is_op(cur(P), ",")) is_tuple = true;
        else break;
        line = cur(P)->line;
    }
    leave(P);
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) {
            char got[80];
            describe(cur(P), got, sizeof got);
            pfail(P, cur(P)->line, "Expected an expression, got '%s'", got);
        }
    }
    tm_node *n = node(P, N_TUPLE, line);
    n->body = nvec_list(&args);
    return n;
}

/* (args, kw=...) of a call, filter or test. */
static void parse_call_args(parser *P, tm_node *n) {
    tm_token *t = expect_op(P, "(");
    nvec args = {0}, kwvals = {0};
    tm_str *kwnames = NULL;
    size_t kwcap = 0;
    bool need_comma = false;
    while (!is_op(cur(P), ")")) {
        if (need_comma) {
            expect_op(P, ",");
            if (is_op(cur(P), ")")) break;
        }
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            pfail(P, cur(P)->line, "*args and **kwargs in calls are not supported");
        if (cur(P)->kind == T_NAME && is_op(peek(P), "=")) {
            tm_str key = advance(P)->s;
            advance(P);
            if (kwvals.n == kwcap) {
                size_t cap = kwcap ? kwcap * 2 : 4;
                kwnames = tm_realloc(P->a, kwnames, kwcap * sizeof *kwnames, cap * sizeof *kwnames);
                kwcap = cap;
            }
            kwnames[kwvals.n] = key;
            nvec_push(P, &kwvals, parse_expression(P, true));
        } else {
            if (kwvals.n) pfail(P, t->line, "invalid syntax for function call expression");
            nvec_push(P, &args, parse_expression(P, true));
        }
        need_comma = true;
    }
    expect_op(P, ")");
    n->body = nvec_list(&args);
    n->kwargs = nvec_list(&kwvals);
    n->kwnames = kwnames;
}

static tm_node *parse_subscribed(parser *P) {
    int line = cur(P)->line;
    tm_node *parts[3] = {NULL, NULL, NULL};
    if (is_op(cur(P), ":")) {
        advance(P);
    } else {
        tm_node *e = parse_expression(P, true);
        if (!is_op(cur(P), ":")) return e;
        advance(P);
        parts[0] = e;
    }
    if (!is_op(cur(P), ":") && !is_op(cur(P), "]") && !is_op(cur(P), ","))
        parts[1] = parse_expression(P, true);
    if (is_op(cur(P), ":")) {
        advance(P);
        if (!is_op(cur(P), "]") && !is_op(cur(P), ",")) parts[2] = parse_expression(P, true);
    }
    tm_node *n = node(P, N_SLICE, line);
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    return n;
}

static tm_node *parse_subscript(parser *P, tm_node *obj) {
    tm_token *t = advance(P);
    if (is_op(t, ".")) {
        tm_token *attr = advance(P);
        if (attr->kind == T_NAME) {
            tm_node *n = node(P, N_GETATTR, t->line);
            n->a = obj;
            n->name = attr->s;
            return n;
        }
        if (attr->kind != T_INT) pfail(P, attr->line, "expected name or number");
        tm_node *k = node(P, N_CONST, attr->line);
        k->value = tv_int(attr->i);
        tm_node *n = node(P, N_GETITEM, t->line);
        n->a = obj;
        n->b = k;
        return n;
    }
    /* "[" */
    nvec args = {0};
    while (!is_op(cur(P), "]")) {
        if (args.n) expect_op(P, ",");
        nvec_push(P, &args, parse_subscribed(P));
    }
    expect_op(P, "]");
    tm_node *n = node(P, N_GETITEM, t->line);
    n->a = obj;
    if (args.n == 1) {
        n->b = args.v[0];
    } else {
        tm_node *tup = node(P, N_TUPLE, t->line);
        tup->body = nvec_list(&args);
        n->b = tup;
    }
    return n;
}

static tm_node *parse_call(parser *P, tm_node *fn) {
    tm_node *n = node(P, N_CALL, cur(P)->line);
    n->a = fn;
    parse_call_args(P, n);
    return n;
}

static tm_node *parse_postfix(parser *P, tm_node *n) {
    for (;;) {
        if (is_op(cur(P), ".") || is_op(cur(P), "[")) n = parse_subscript(P, n);
        else if (is_op(cur(P), "(")) n = parse_call(P, n);
        else break;
    }
    return n;
}

static tm_node *parse_filter_expr(parser *P, tm_node *n) {
    for (;;) {
        if (is_op(cur(P), "|")) n = parse_filter(P, n, false);
        else if (is_name(cur(P), "is")) n = parse_test(P, n);
        else if (is_op(cur(P), "(")) n = parse_call(P, n);
        else break;
    }
    return n;
}

static tm_str dotted_name(parser *P) {
    tm_token *t = expect_kind(P, T_NAME, "name");
    tm_str name = t->s;
    if (!is_op(cur(P), ".")) return name;
    tm_buf b;
    tm_buf_init(&b, P->a);
    tm_buf_put(&b, name.p, name.n);
    while (is_op(cur(P), ".")) {
        advance(P);
        tm_str part = expect_kind(P, T_NAME, "name")->s;
        tm_buf_putc(&b, '.');
        tm_buf_put(&b, part.p, part.n);
    }
    return tm_buf_str(&b);
}

static tm_node *parse_filter(parser *P, tm_node *n, bool start_inline) {
    while (is_op(cur(P), "|") || start_inline) {
        if (!start_inline) advance(P);
        int line = cur(P)->line;
        tm_str name = dotted_name(P);
        tm_node *f = node(P, N_FILTER, line);
        f->a = n;
        f->name = name;
        if (is_op(cur(P), "(")) parse_call_args(P, f);
        n = f;
        start_inline = false;
    }
    return n;
}

static tm_node *parse_test(parser *P, tm_node *n) {
    tm_token *is = advance(P);
    bool negated = false;
    if (is_name(cur(P), "not")) {
        advance(P);
        negated = true;
    }
    tm_str name = dotted_name(P);
    tm_node *t = node(P, N_TEST, is->line);
    t->a = n;
    t->name = name;
    tm_token *c = cur(P);
    if (is_op(c, "(")) {
        parse_call_args(P, t);
    } else if ((c->kind == T_NAME || c->kind == T_STRING || c->kind == T_INT || c->kind == T_FLOAT ||
                is_op(c, "(") || is_op(c, "[") || is_op(c, "{")) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) pfail(P, c->line, "You cannot chain multiple tests with is");
        nvec args = {0};
        enter(P);
        nvec_push(P, &args, parse_postfix(P, parse_primary(P)));
        leave(P);
        t->body = nvec_list(&args);
    }
    if (!negated) return t;
    tm_node *nt = node(P, N_NOT, is->line);
    nt->a = t;
    return nt;
}

/* ---------------------------------------------------------------- statements */

static tm_nlist subparse(parser *P, const char *const *end_tokens);

static bool at_end_token(parser *P, const char *const *end_tokens) {
    if (!end_tokens) return false;
    for (size_t k = 0; end_tokens[k]; k++)
        if (is_name(cur(P), end_tokens[k])) return true;
    return false;
}

static void fail_eof(parser *P, const char *const *end_tokens) {
    char want[256] = "";
    size_t off = 0;
    for (size_t k = 0; end_tokens && end_tokens[k]; k++)
        off += (size_t)snprintf(want + off, off < sizeof want ? sizeof want - off : 0, "%s'%s'",
                                k ? " or " : "", end_tokens[k]);
    pfail(P, cur(P)->line, "Unexpected end of template. Jinja was looking for the following tags: %s.",
          want);
}

/* The body of a block statement: [":"] "%}" ... up to one of end_tokens (left current). */
static tm_nlist parse_statements(parser *P, const char *const *end_tokens, bool drop_needle) {
    if (is_op(cur(P), ":")) advance(P);
    expect_kind(P, T_BLOCK_END, "end of statement block");
    const char *const *saved = P->end_tokens;
    P->end_tokens = end_tokens;
    tm_nlist body = subparse(P, end_tokens);
    P->end_tokens = saved;
    if (cur(P)->kind == T_EOF) fail_eof(P, end_tokens);
    if (drop_needle) advance(P);
    return body;
}

static bool can_assign(tm_node *n) {
    if (n->kind == N_NAME)
        return !tm_eqc(n->name, "true") && !tm_eqc(n->name, "false") && !tm_eqc(n->name, "none") &&
               !tm_eqc(n->name, "True") && !tm_eqc(n->name, "False") && !tm_eqc(n->name, "None");
    if (n->kind == N_TUPLE) {
        for (size_t i = 0; i < n->body.n; i++)
            if (!can_assign(n->body.v[i])) return false;
        return true;
    }
    return false;
}

static tm_node *parse_assign_target(parser *P, bool with_namespace, const char *extra_end) {
    if (with_namespace && cur(P)->kind == T_NAME && is_op(peek(P), ".")) {
        tm_token *t = advance(P);
        advance(P);
        tm_token *attr = expect_kind(P, T_NAME, "name");
        tm_node *obj = node(P, N_NAME, t->line);
        obj->name = t->s;
        tm_node *n = node(P, N_GETATTR, t->line);
        n->a = obj;
        n->name = attr->s;
        return n;
    }
    int line = cur(P)->line;
    tm_node *target = parse_tuple(P, true, true, extra_end, false);
    if (!can_assign(target))
        pfail(P, line, "can't assign to '%s'", target->kind == N_CONST ? "const" : "expression");
    return target;
}

static tm_node *parse_name_only(parser *P) {
    tm_token *t = expect_kind(P, T_NAME, "name");
    tm_node *n = node(P, N_NAME, t->line);
    n->name = t->s;
    if (!can_assign(n)) pfail(P, t->line, "can't assign to 'const'");
    return n;
}

static tm_node *parse_for(parser *P, int line) {
    static const char *const body_end[] = {"endfor", "else", NULL};
    static const char *const else_end[] = {"endfor", NULL};
    tm_node *n = node(P, N_FOR, line);
    n->a = parse_assign_target(P, false, "in");
    expect_name(P, "in");
    n->b = parse_tuple(P, false, false, "recursive", false);
    if (is_name(cur(P), "if")) {
        advance(P);
        n->c = parse_expression(P, true);
    }
    if (is_name(cur(P), "recursive")) pfail(P, cur(P)->line, "recursive for loops are not supported");
    P->loop_depth++;
    n->body = parse_statements(P, body_end, false);
    P->loop_depth--;
    if (is_name(advance(P), "else")) n->body2 = parse_statements(P, else_end, true);
    return n;
}

static tm_node *parse_if(parser *P, int line) {
    static const char *const body_end[] = {"elif", "else", "endif", NULL};
    static const char *const else_end[] = {"endif", NULL};
    tm_node *result = node(P, N_IF, line);
    tm_node *n = result;
    for (;;) {
        n->a = parse_tuple(P, false, false, NULL, false);
        n->body = parse_statements(P, body_end, false);
        tm_token *t = advance(P);
        if (is_name(t, "elif")) {
            tm_node *e = node(P, N_IF, cur(P)->line);
            tm_node **one = tm_alloc(P->a, sizeof *one);
            one[0] = e;
            n->body2 = (tm_nlist){one, 1};
            n = e;
            continue;
        }
        if (is_name(t, "else")) n->body2 = parse_statements(P, else_end, true);
        break;
    }
    return result;
}

static tm_node *parse_set(parser *P, int line) {
    static const char *const end[] = {"endset", NULL};
    tm_node *target = parse_assign_target(P, true, NULL);
    if (is_op(cur(P), "=")) {
        advance(P);
        tm_node *n = node(P, N_SET, line);
        n->a = target;
        n->b = parse_tuple(P, false, true, NULL, false);
        return n;
    }
    tm_node *n = node(P, N_SETBLOCK, line);
    n->a = target;
    n->c = parse_filter(P, NULL, false);
    int loops = P->loop_depth;
    n->body = parse_statements(P, end, true);
    P->loop_depth = loops;
    return n;
}

static tm_node *parse_macro(parser *P, int line) {
    static const char *const end[] = {"endmacro", NULL};
    tm_node *n = node(P, N_MACRO, line);
    n->name = parse_name_only(P)->name;
    expect_op(P, "(");
    nvec defaults = {0};
    tm_str *names = NULL;
    size_t cap = 0, count = 0;
    bool any_default = false;
    while (!is_op(cur(P), ")")) {
        if (count) expect_op(P, ",");
        tm_node *arg = parse_name_only(P);
        tm_node *def = NULL;
        if (is_op(cur(P), "=")) {
            advance(P);
            def = parse_expression(P, true);
            any_default = true;
        } else if (any_default) {
            pfail(P, arg->line, "non-default argument follows default argument");
        }
        if (count == cap) {
            size_t nc = cap ? cap * 2 : 4;
            names = tm_realloc(P->a, names, cap * sizeof *names, nc * sizeof *names);
            cap = nc;
        }
        names[count++] = arg->name;
        nvec_push(P, &defaults, def);
    }
    expect_op(P, ")");
    n->kwnames = names;
    n->kwargs = nvec_list(&defaults);
    int loops = P->loop_depth;
    P->loop_depth = 0;
    n->body = parse_statements(P, end, true);
    P->loop_depth = loops;
    return n;
}

static tm_node *parse_statement(parser *P);

/* {% filter %} and {% generation %} bodies. A generation body is a call block: jinja2 renders it
 * as a macro, so break/continue cannot reach an enclosing loop from inside it. */
static tm_node *parse_block_stmt(parser *P, tm_nkind kind, int line, const char *const *end) {
    tm_node *n = node(P, kind, line);
    if (kind == N_FILTERBLOCK) n->c = parse_filter(P, NULL, true);
    int loops = P->loop_depth;
    if (kind == N_BODY) P->loop_depth = 0;
    n->body = parse_statements(P, end, true);
    P->loop_depth = loops;
    return n;
}

static tm_node *parse_with(parser *P, int line) {
    static const char *const end[] = {"endwith", NULL};
    tm_node *n = node(P, N_WITH, line);
    nvec vals = {0};
    tm_str *names = NULL;
    size_t cap = 0;
    while (cur(P)->kind != T_BLOCK_END) {
        if (vals.n) expect_op(P, ",");
        tm_node *target = parse_name_only(P);
        expect_op(P, "=");
        if (vals.n == cap) {
            size_t nc = cap ? cap * 2 : 4;
            names = tm_realloc(P->a, names, cap * sizeof *names, nc * sizeof *names);
            cap = nc;
        }
        names[vals.n] = target->name;
        nvec_push(P, &vals, parse_expression(P, true));
    }
    n->kwnames = names;
    n->kwargs = nvec_list(&vals);
    n->body = parse_statements(P, end, true);
    return n;
}

static tm_node *parse_statement(parser *P) {
    static const char *const end_filter[] = {"endfilter", NULL};
    static const char *const end_generation[] = {"endgeneration", NULL};
    tm_token *t = cur(P);
    if (t->kind != T_NAME) pfail(P, t->line, "tag name expected");
    int line = t->line;
    tm_str name = t->s;
    advance(P);
    if (tm_eqc(name, "for")) return parse_for(P, line);
    if (tm_eqc(name, "if")) return parse_if(P, line);
    if (tm_eqc(name, "set")) return parse_set(P, line);
    if (tm_eqc(name, "macro")) return parse_macro(P, line);
    if (tm_eqc(name, "filter")) return parse_block_stmt(P, N_FILTERBLOCK, line, end_filter);
    if (tm_eqc(name, "generation")) return parse_block_stmt(P, N_BODY, line, end_generation);
    if (tm_eqc(name, "with")) return parse_with(P, line);
    if (tm_eqc(name, "print")) {
        tm_node *n = node(P, N_OUTPUT, line);
        n->a = parse_tuple(P, false, true, NULL, false);
        return n;
    }
    if (tm_eqc(name, "break") || tm_eqc(name, "continue")) {
        if (P->loop_depth == 0)
            pfail(P, line, "'%.*s' outside of a loop", (int)name.n, name.p);
        return node(P, tm_eqc(name, "break") ? N_BREAK : N_CONTINUE, line);
    }
    static const char *const unsupported[] = {"block", "extends", "include", "import", "from",
                                              "autoescape", "call", "raw", NULL};
    for (size_t k = 0; unsupported[k]; k++)
        if (tm_eqc(name, unsupported[k]))
            pfail(P, line, "the '%s' tag is not supported in chat templates", unsupported[k]);
    if (P->end_tokens) {
        char want[256] = "";
        size_t off = 0;
        for (size_t k = 0; P->end_tokens[k]; k++)
            off += (size_t)snprintf(want + off, off < sizeof want ? sizeof want - off : 0, "%s'%s'",
                                    k ? " or " : "", P->end_tokens[k]);
        pfail(P, line, "Encountered unknown tag '%.*s'. Jinja was looking for the following tags: %s.",
              (int)name.n, name.p, want);
    }
    pfail(P, line, "Encountered unknown tag '%.*s'.", (int)name.n, name.p);
}

static tm_nlist subparse(parser *P, const char *const *end_tokens) {
    nvec body = {0};
    enter(P);
    for (;;) {
        tm_token *t = cur(P);
        if (t->kind == T_EOF) break;
        if (t->kind == T_DATA) {
            tm_node *n = node(P, N_TEXT, t->line);
            n->name = t->s;
            nvec_push(P, &body, n);
            advance(P);
        } else if (t->kind == T_VAR_BEGIN) {
            advance(P);
            tm_node *n = node(P, N_OUTPUT, t->line);
            n->a = parse_tuple(P, false, true, NULL, false);
            expect_kind(P, T_VAR_END, "end of print statement");
            nvec_push(P, &body, n);
        } else if (t->kind == T_BLOCK_BEGIN) {
            advance(P);
            if (at_end_token(P, end_tokens)) break;
            nvec_push(P, &body, parse_statement(P));
            expect_kind(P, T_BLOCK_END, "end of statement block");
        } else {
            char got[80];
            describe(t, got, sizeof got);
            pfail(P, t->line, "unexpected '%s'", got);
        }
    }
    leave(P);
    return nvec_list(&body);
}

/* ---------------------------------------------------------------- unknown filters and tests */

/* jinja2 rejects an unknown filter or test when it compiles the template, except where the code
 * sits in an `if` statement or an inline if (a "soft" frame): there it fails only when reached.
 * Loops, macros and blocks open a new, hard frame again. This walk mirrors those frames. */
static void check_expr(parser *P, const tm_node *n, bool soft);

static void check_list(parser *P, tm_nlist l, bool soft) {
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i]) check_expr(P, l.v[i], soft);
}

static void check_expr(parser *P, const tm_node *n, bool soft) {
    if (!n) return;
    switch (n->kind) {
    case N_TEXT: case N_BREAK: case N_CONTINUE: case N_CONST: case N_NAME: return;
    case N_IF:
        check_expr(P, n->a, true);
        check_list(P, n->body, true);
        check_list(P, n->body2, true);
        return;
    case N_FOR:
        check_expr(P, n->b, soft);
        check_expr(P, n->c, false);
        check_list(P, n->body, false);
        check_list(P, n->body2, false);
        return;
    case N_SET: check_expr(P, n->b, soft); return;
    case N_SETBLOCK: case N_FILTERBLOCK:
        check_expr(P, n->c, false);
        check_list(P, n->body, false);
        return;
    case N_MACRO:
        check_list(P, n->kwargs, false);
        check_list(P, n->body, false);
        return;
    case N_WITH:
        check_list(P, n->kwargs, soft);
        check_list(P, n->body, false);
        return;
    case N_BODY: check_list(P, n->body, false); return;
    case N_COND: soft = true; break;
    case N_FILTER:
        if (!soft && !tm_filter_known(n->name))
            pfail(P, n->line, "No filter named '%.*s'.", (int)n->name.n, n->name.p);
        break;
    case N_TEST:
        if (!soft && !tm_test_known(n->name))
            pfail(P, n->line, "No test named '%.*s'.", (int)n->name.n, n->name.p);
        break;
    default: break;
    }
    check_expr(P, n->a, soft);
    check_expr(P, n->b, soft);
    check_expr(P, n->c, soft);
    check_list(P, n->body, soft);
    check_list(P, n->kwargs, soft);
}

/* ---------------------------------------------------------------- public */

sp_tmpl *sp_tmpl_parse(const char *src, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!src && len) {
        if (err && errlen) snprintf(err, errlen, "no template source");
        return NULL;
    }
    sp_tmpl *t = calloc(1, sizeof *t);
    if (!t) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* the AST of a template is small; 64 MiB bounds hostile inputs */
    tm_arena_init(&t->arena, (size_t)64 << 20, &t->err);
    if (setjmp(t->err.jb)) {
        if (err && errlen) snprintf(err, errlen, "%s", t->err.msg);
        tm_arena_free(&t->arena);
        free(t);
        return NULL;
    }
    tm_tokens toks = tm_lex(&t->arena, src ? src : "", len);
    parser P;
    memset(&P, 0, sizeof P);
    P.a = &t->arena;
    P.t = toks.v;
    P.n = toks.n;
    t->body = subparse(&P, NULL);
    if (cur(&P)->kind != T_EOF) pfail(&P, cur(&P)->line, "unexpected token after template end");
    check_list(&P, t->body, false);
    return t;
}

void sp_tmpl_free(sp_tmpl *t) {
    if (!t) return;
    tm_arena_free(&t->arena);
    free(t);
}
