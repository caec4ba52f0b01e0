/* api/tmpl_impl.h — internals of the chat-template engine shared by its files:
 *   tmpl_util.c     arena, error raising, byte buffers, UTF-8 and Python-style text helpers
 *   tmpl_lex.c      source -> tokens (jinja2's lexer rules: whitespace control, trim/lstrip)
 *   tmpl_parse.c    tokens -> AST (jinja2's grammar and precedence), the public parse/free
 *   tmpl_value.c    values: lists, dicts, str()/repr(), equality, ordering, truth, JSON in/out
 *   tmpl_eval.c     the interpreter: scopes, statements, expressions, macros, limits, render
 *   tmpl_filters.c  filters and tests
 *   tmpl_methods.c  methods of str/dict/list, loop helpers, globals (range, namespace, ...)
 *   tmpl_builtin.c  built-in fallback templates
 * Everything lives in arenas (one per parsed template, one per render) and errors unwind with
 * longjmp to the entry point, so no code path has to free or check anything on failure. */
#ifndef SP_API_TMPL_IMPL_H
#define SP_API_TMPL_IMPL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/tmpl.h"

/* ---------------------------------------------------------------- errors and arenas */

typedef struct {
    jmp_buf jb;
    sp_tmpl_status code;
    char msg[1024];
} tm_err;

/* Raise: format msg into e (prefixed "template line N: " when line > 0) and longjmp. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 4, 5)))
#endif
void tm_raise(tm_err *e, sp_tmpl_status code, int line, const char *fmt, ...);

typedef struct tm_chunk tm_chunk;
typedef struct {
    tm_chunk *head;
    size_t total, limit; /* bytes handed out / allowed */
    tm_err *err;         /* where an overrun is reported */
} tm_arena;

void tm_arena_init(tm_arena *a, size_t limit, tm_err *err);
void tm_arena_free(tm_arena *a);
void *tm_alloc(tm_arena *a, size_t n); /* zeroed, 16-aligned */
void *tm_realloc(tm_arena *a, void *p, size_t old, size_t n);

/* ---------------------------------------------------------------- strings and buffers */

typedef struct {
    const char *p;
    size_t n;
} tm_str;

#define TM_LIT(s) ((tm_str){(s), sizeof(s) - 1})
tm_str tm_cstr(const char *s);
bool tm_eq(tm_str a, tm_str b);
bool tm_eqc(tm_str a, const char *c);
tm_str tm_dup(tm_arena *a, const char *p, size_t n);

/* A growing byte buffer in an arena; `max` bounds it (0 = arena limit only). */
typedef struct {
    tm_arena *a;
    char *p;
    size_t n, cap, max;
    int line; /* for the overrun message */
} tm_buf;

void tm_buf_init(tm_buf *b, tm_arena *a);
void tm_buf_put(tm_buf *b, const char *p, size_t n);
void tm_buf_puts(tm_buf *b, const char *s);
void tm_buf_putc(tm_buf *b, char c);
void tm_buf_printf(tm_buf *b, const char *fmt, ...);
void tm_buf_put_cp(tm_buf *b, uint32_t cp); /* one code point as UTF-8 */
tm_str tm_buf_str(const tm_buf *b);

/* UTF-8: decode one code point at p (invalid bytes decode as themselves, length 1). */
uint32_t tm_utf8_next(const char *p, size_t n, size_t *len);
size_t tm_utf8_count(tm_str s);                /* code points */
size_t tm_utf8_offset(tm_str s, size_t index); /* byte offset of code point `index` (clamped) */
bool tm_is_space_cp(uint32_t cp);              /* Python str.isspace */
bool tm_is_printable_cp(uint32_t cp);          /* Python str.isprintable (approximate beyond BMP) */
uint32_t tm_upper_cp(uint32_t cp);
uint32_t tm_lower_cp(uint32_t cp);
bool tm_is_alpha_cp(uint32_t cp);
bool tm_is_digit_cp(uint32_t cp);

/* Python float repr (shortest round-trip: 1.0, 0.1, 1e+16, 1.5e-05, inf, nan). */
void tm_fmt_float(char buf[40], double d);

/* ---------------------------------------------------------------- values */

typedef enum {
    TV_UNDEF, TV_NONE, TV_BOOL, TV_INT, TV_FLOAT, TV_STR, TV_LIST, TV_DICT,
    TV_NS,     /* namespace(): a dict reached by attribute */
    TV_MACRO,  /* a {% macro %} with its defining scope */
    TV_FUNC,   /* a global function (range, namespace, ...) */
    TV_METHOD, /* a bound method: self + name */
    TV_LOOP,   /* the `loop` object of a for loop */
} tv_kind;

#define TVF_MARKUP 1 /* str: a markupsafe.Markup (|safe): `+` escapes the other operand */
#define TVF_TUPLE 2  /* list: a tuple (immutable, repr with parentheses) */
#define TVF_GEN 4    /* list: a generator/iterator (map, select, items...): always truthy, no len,
                      * consumed by iterating */
#define TVF_MISSING 0x80 /* undef: an argument that was not passed (tm_bind_args) */

typedef struct tm_list tm_list;
typedef struct tm_dict tm_dict;
typedef struct tm_undef tm_undef;
typedef struct tm_macro tm_macro;
typedef struct tm_method tm_method;
typedef struct tm_loop tm_loop;

typedef struct tv {
    uint8_t k; /* tv_kind */
    uint8_t f; /* TVF_* */
    union {
        bool b;
        int64_t i;
        double d;
        tm_str s;
        tm_list *l;
        tm_dict *m;
        tm_undef *u; /* NULL: a plain undefined */
        tm_macro *mac;
        int fn;
        tm_method *meth;
        tm_loop *loop;
    };
} tv;

struct tm_list {
    tv *v;
    size_t n, cap;
};
struct tm_dict {
    tv *keys, *vals;
    size_t n, cap;
};

/* Why a value is undefined, for jinja2's error message when it is used. */
typedef enum { TU_NAME, TU_ATTR, TU_ELEM, TU_HINT } tu_kind;
struct tm_undef {
    tu_kind kind;
    const char *objtype; /* "dict object", ... (ATTR, ELEM) */
    tm_str name;         /* NAME/ATTR: the name; HINT: the whole message */
    tv key;              /* ELEM: the key */
};

struct tm_method {
    tv self;
    tm_str name;
};

typedef struct tm_scope tm_scope;
typedef struct tm_node tm_node;
struct tm_macro {
    const tm_node *def; /* the N_MACRO node */
    tm_scope *closure;  /* the scope it was defined in (read at call time, as jinja2 does) */
};

struct tm_loop {
    tm_list *items;
    size_t index0;
    int depth;
    tv last_changed; /* loop.changed() */
    bool changed_set;
};

static inline tv tv_undef(void) { tv v = {0}; v.k = TV_UNDEF; return v; }
static inline tv tv_none(void) { tv v = {0}; v.k = TV_NONE; return v; }
static inline tv tv_bool(bool b) { tv v = {0}; v.k = TV_BOOL; v.b = b; return v; }
static inline tv tv_int(int64_t i) { tv v = {0}; v.k = TV_INT; v.i = i; return v; }
static inline tv tv_float(double d) { tv v = {0}; v.k = TV_FLOAT; v.d = d; return v; }
static inline tv tv_str(tm_str s) { tv v = {0}; v.k = TV_STR; v.s = s; return v; }
static inline tv tv_list(tm_list *l) { tv v = {0}; v.k = TV_LIST; v.l = l; return v; }
static inline tv tv_dict(tm_dict *m) { tv v = {0}; v.k = TV_DICT; v.m = m; return v; }

/* ---------------------------------------------------------------- AST */

typedef enum {
    /* statements */
    N_TEXT,       /* name = text */
    N_OUTPUT,     /* a = expression */
    N_IF,         /* a = test, body = then, body2 = else (an elif is a lone N_IF in body2) */
    N_FOR,        /* a = target, b = iterable, c = filter (or NULL), body, body2 = else */
    N_SET,        /* a = target (NAME, TUPLE of names, or GETATTR ns.x), b = value */
    N_SETBLOCK,   /* a = target, c = filter chain on the body (or NULL), body */
    N_MACRO,      /* name, params: kwnames/kwargs (default or NULL), body */
    N_FILTERBLOCK,/* c = filter chain, body */
    N_WITH,       /* kwnames/kwargs = assignments, body */
    N_BODY,       /* body ({% generation %}) */
    N_BREAK, N_CONTINUE,
    /* expressions */
    N_CONST,      /* value */
    N_NAME,       /* name */
    N_GETATTR,    /* a.name */
    N_GETITEM,    /* a[b] */
    N_SLICE,      /* a:b:c, each may be NULL (only as N_GETITEM's b) */
    N_CALL,       /* a(args, kwnames=kwargs) */
    N_FILTER,     /* a|name(args, kwargs); a == NULL: applied to a block body */
    N_TEST,       /* a is name(args, kwargs) */
    N_NOT, N_NEG, N_POS, /* a */
    N_BIN,        /* a op b */
    N_AND, N_OR,  /* a, b */
    N_CMP,        /* a, then ops[i] against body[i] */
    N_CONCAT,     /* body joined with ~ */
    N_COND,       /* b if a else c (c may be NULL) */
    N_LIST, N_TUPLE, /* body */
    N_DICT,       /* body = keys, kwargs = values */
} tm_nkind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
} tm_op;

typedef struct {
    tm_node **v;
    size_t n;
} tm_nlist;

struct tm_node {
    uint8_t kind; /* tm_nkind */
    int line;
    tm_str name;
    tv value;
    tm_node *a, *b, *c;
    tm_nlist body, body2, kwargs;
    tm_str *kwnames;
    uint8_t *ops; /* N_CMP */
};

struct sp_tmpl {
    tm_arena arena;
    tm_err err; /* the arena's error sink while parsing */
    tm_nlist body;
};

/* The lexer's output. */
typedef enum {
    T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
} tm_tkind;

typedef struct {
    uint8_t kind;
    int line;
    tm_str s;   /* DATA/NAME/OP text, STRING decoded */
    int64_t i;  /* INT */
    double d;   /* FLOAT */
} tm_token;

typedef struct {
    tm_token *v;
    size_t n;
} tm_tokens;

/* Tokenize (after jinja2's newline normalization); syntax errors raise through a->err. */
tm_tokens tm_lex(tm_arena *a, const char *src, size_t len);

/* ---------------------------------------------------------------- rendering */

struct tm_scope {
    tm_scope *parent;
    tm_str *names;
    tv *vals;
    size_t n, cap;
};

typedef struct {
    tm_arena arena;
    tm_err err;
    tm_buf *out; /* where text goes now (block sets / filter blocks redirect it) */
    tm_scope *root;
    tm_dict *context;
    uint64_t steps, max_steps;
    int depth, max_depth;
    size_t max_output;
    int line; /* line of the node being evaluated, for messages */
    int macro_depth;
    char fixed_date[16];
} tm_render;

/* Raise a runtime error at the current line. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
void tm_fail(tm_render *r, const char *fmt, ...);
/* Raise the error an undefined value gives when it is used. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void tm_fail_undef(tm_render *r, tv u);
void tm_tick(tm_render *r, uint64_t n); /* count evaluation steps; raises past the bound */

/* values (tmpl_value.c) */
tm_list *tm_list_new(tm_render *r, size_t cap);
void tm_list_push(tm_render *r, tm_list *l, tv v);
tm_dict *tm_dict_new(tm_render *r, size_t cap);
tv *tm_dict_get(tm_render *r, const tm_dict *m, tv key);
tv *tm_dict_getc(const tm_dict *m, const char *key);
void tm_dict_set(tm_render *r, tm_dict *m, tv key, tv val);
bool tm_dict_del(tm_render *r, tm_dict *m, tv key);
tv tm_undef_name(tm_render *r, tm_str name);
tv tm_undef_attr(tm_render *r, tv obj, tm_str name);
tv tm_undef_elem(tm_render *r, tv obj, tv key);
tv tm_undef_hint(tm_render *r, const char *msg);
tv tm_new_str(tm_render *r, const char *p, size_t n);
const char *tm_type_name(tv v);   /* Python type name: "int", "str", "NoneType", ... */
const char *tm_object_repr(tv v); /* jinja2 object_type_repr: "dict object", "None", ... */
bool tm_truthy(tv v);
bool tm_equal(tm_render *r, tv a, tv b);
int tm_compare(tm_render *r, tv a, tv b, const char *opname); /* <0, 0, >0; TypeError if unordered */
bool tm_contains(tm_render *r, tv container, tv item);         /* Python `item in container` */
void tm_to_str(tm_render *r, tm_buf *b, tv v);                 /* str(v) */
void tm_repr(tm_render *r, tm_buf *b, tv v);                   /* repr(v) */
tv tm_str_of(tm_render *r, tv v);                              /* str(v) as a value */
void tm_to_json(tm_render *r, tm_buf *b, tv v, bool ensure_ascii, const char *indent,
                tm_str item_sep, tm_str key_sep, bool sort_keys, int level);
tv tm_from_cjson(tm_render *r, const cJSON *j, int depth);
tm_list *tm_iterate(tm_render *r, tv v); /* the items a for loop visits (dict: keys, str: chars) */
tv tm_escape_html(tm_render *r, tv v);   /* markupsafe.escape: a Markup */
bool tm_as_int(tv v, int64_t *out);      /* int or bool */
bool tm_as_num(tv v, double *out);       /* int, bool or float */

/* interpreter (tmpl_eval.c) */
tv tm_call_value(tm_render *r, tv fn, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals,
                 size_t nkw);
tv tm_getattr(tm_render *r, tv obj, tm_str name);
tv tm_getitem(tm_render *r, tv obj, tv key);

/* filters and tests (tmpl_filters.c) */
bool tm_filter_known(tm_str name);
bool tm_test_known(tm_str name);
tv tm_apply_filter(tm_render *r, tm_str name, tv in, tv *args, size_t nargs, tm_str *kwnames,
                   tv *kwvals, size_t nkw);
bool tm_apply_test(tm_render *r, tm_str name, tv in, tv *args, size_t nargs);
/* Python str.strip/lstrip/rstrip (chars NULL: whitespace), str.replace, str.splitlines. */
tv tm_strip(tm_render *r, tv s, const tm_str *chars, bool left, bool right);
tv tm_replace(tm_render *r, tm_str s, tm_str old, tm_str new_, int64_t count);
tm_list *tm_splitlines(tm_render *r, tm_str s, bool keepends);

/* methods and globals (tmpl_methods.c) */
bool tm_has_method(tv self, tm_str name);
tv tm_call_method(tm_render *r, tv self, tm_str name, tv *args, size_t nargs, tm_str *kwnames,
                  tv *kwvals, size_t nkw);
int tm_global_lookup(tm_str name); /* function id or -1 */
tv tm_call_global(tm_render *r, int fn, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals,
                  size_t nkw);
const char *tm_global_name(int fn);
tv tm_str_format(tm_render *r, tv fmt, tv *args, size_t nargs, tm_str *kwnames, tv *kwvals,
                 size_t nkw);
tv tm_percent_format(tm_render *r, tv fmt, tv arg);

/* Argument binding helper for filters/methods/globals: fills out[i] for names[i] from the
 * positional args, then keywords; missing ones stay TV_UNDEF with k == TV_UNDEF and u == NULL.
 * Raises a TypeError-style message for unknown keywords or too many arguments. */
void tm_bind_args(tm_render *r, const char *fname, const char *const *names, size_t nnames,
                  tv *args, size_t nargs, tm_str *kwnames, tv *kwvals, size_t nkw, tv *out);
bool tm_arg_given(tv v);

#endif
