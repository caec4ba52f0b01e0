/* tests/unit/test_tmpl.c — api/tmpl: the Jinja chat-template engine. Language features with the
 * exact text Python jinja2 (transformers' configuration) produces for them (the expected strings
 * were rendered by render_reference.py's environment), error messages and their line numbers,
 * raise_exception, resource limits on hostile templates (recursion, loops, output, memory,
 * parser nesting), the builtin templates on a sample conversation, and regressions found by
 * fuzzing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl.h"

/* The context every language case renders with. */
static const char *const CTX =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": \"user\", \"content\": "
    "\"Hi \303\251 \344\270\255\346\226\207 \360\237\230\200\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}],"
    " \"d\": {\"a\": 1, \"b\": [1, 2.5, \"x\"], \"items\": [3], \"n\": null, \"t\": true}, \"add_generation_prompt\": true,"
    " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"s\": \"  Hello World  \", \"l\": [3, 1, 2], \"e\": \"\", \"f\": 1.5}";

typedef struct {
    const char *src, *want;
} tcase;

typedef struct {
    sp_tmpl_status st;
    char *out;
    size_t len;
    char err[1024];
} result;

/* Parse + render `src` with the JSON context `ctx` (NULL: none) and optional limits. */
static result render_opts(const char *src, const char *ctx, const sp_tmpl_opts *opts) {
    result r;
    memset(&r, 0, sizeof r);
    sp_tmpl *t = sp_tmpl_parse(src, strlen(src), r.err, sizeof r.err);
    if (!t) {
        r.st = SP_TMPL_ESYNTAX;
        return r;
    }
    cJSON *c = ctx ? cJSON_Parse(ctx) : NULL;
    if (ctx) cr_assert_not_null(c, "bad test context");
    r.st = sp_tmpl_render(t, c, opts, &r.out, &r.len, r.err, sizeof r.err);
    cJSON_Delete(c);
    sp_tmpl_free(t);
    return r;
}

static result render(const char *src, const char *ctx) {
    sp_tmpl_opts o = {0};
    o.fixed_date = "2026-01-15";
    return render_opts(src, ctx, &o);
}

static void expect(const char *src, const char *ctx, const char *want) {
    result r = render(src, ctx);
    cr_assert_eq(r.st, SP_TMPL_OK, "template %s\nfailed: %s", src, r.err);
    cr_assert_eq(r.len, strlen(r.out));
    cr_assert_str_eq(r.out, want, "template %s", src);
    free(r.out);
}

static void run_cases(const tcase *cases, size_t n) {
    for (size_t i = 0; i < n; i++) expect(cases[i].src, CTX, cases[i].want);
}

/* Expect failure with `st` and an error containing `needle`. */
static void expect_err(const char *src, const char *ctx, sp_tmpl_status st, const char *needle) {
    result r = render(src, ctx);
    cr_assert_eq(r.st, st, "template %s: status %d (%s), wanted %d", src, r.st, r.err, st);
    cr_assert_null(r.out);
    cr_assert(strstr(r.err, needle), "template %s: error '%s' lacks '%s'", src, r.err, needle);
}

Test(tmpl_lang, literals) {
    static const tcase cases[] = {
        {"{{ 1 }}|{{ 1.0 }}|{{ -0.0 }}|{{ 1e100 }}|{{ 0.1 }}|{{ 1_000 }}|{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 1.5e-5 }}|{{ 1e16 }}|{{ 123456789.125 }}",
         "1|1.0|-0.0|1e+100|0.1|1000|31|15|5|1.5e-05|1e+16|123456789.125"},
        {"{{ true }}{{ True }}{{ false }}{{ none }}{{ None }}",
         "TrueTrueFalseNoneNone"},
        {"{{ [1, 'a', none, true, 1.5] }}{{ {'a': 1, 'b': [2]} }}{{ (1,) }}{{ (1, 2) }}{{ () }}",
         "[1, 'a', None, True, 1.5]{'a': 1, 'b': [2]}(1,)(1, 2)()"},
        {"{{ \"a\\tb\nc\\\\d\\'e\\\"f\\u00e9\\x41\\101\\U0001F600\\z\" }}",
         "a\tb\nc\\d'e\"f\303\251AA\360\237\230\200\\z"},
        {"{{ 'it''s' \"concat\" }}|{{ [\"a'b\", 'c\"d', 'e\\'\"f'] }}|{{ '\303\251\n' ~ '' }}",
         "itsconcat|[\"a'b\", 'c\"d', 'e\\'\"f']|\303\251\n"},
        {"{{ [1, 2,] }}{{ {'k': 'v',} }}",
         "[1, 2]{'k': 'v'}"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, arithmetic) {
    static const tcase cases[] = {
        {"{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.0 // 2 }} {{ -7.5 % 2 }} {{ 10 / 5 }} {{ 1 / 3 }} {{ 7 / 2 }}",
         "3 -4 -2 2 1024 0.5 3.0 0.5 2.0 0.3333333333333333 3.5"},
        {"{{ 'ab' * 3 }}{{ 3 * 'x' }}{{ [1, 2] * 2 }}{{ 'a' ~ 1 ~ none ~ true }}{{ [1] + [2] }}{{ 'x' + 'y' }}{{ 0.1 + 0.2 }}{{ 1 + true }}",
         "abababxxx[1, 2, 1, 2]a1NoneTrue[1, 2]xy0.300000000000000042"},
        {"{{ -2 ** 2 }} {{ 2 + 3 * 4 }} {{ (2 + 3) * 4 }} {{ 10 - 2 - 3 }} {{ 2 ** 3 ** 2 }} {{ -l[0] }} {{ +f }}",
         "4 14 20 5 64 -3 1.5"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, logic) {
    static const tcase cases[] = {
        {"{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 3 not in [1] }}",
         "True False True True True True True True True True"},
        {"{{ not 1 }} {{ not 0 }} {{ 1 and 2 }} {{ 0 and 2 }} {{ 0 or 'x' }} {{ '' or [] }} {{ none or 0 }} {{ not x is defined }}",
         "False True 2 0 x [] 0 True"},
        {"{{ 'y' if 1 else 'n' }}{{ 'y' if 0 else 'n' }}{{ 'y' if 0 }}|{{ 'a' if 0 else 'b' if 0 else 'c' }}",
         "yn|c"},
        {"{{ x == x }} {{ x != 1 }} {{ x in [1] }} {{ 1 in x }} {{ x is none }} {{ none == none }} {{ {'a': 1} == {'a': 1.0} }} {{ [1] == (1,) }}",
         "True True False False False True True False"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, whitespace) {
    static const tcase cases[] = {
        {"a\n  {% if true %}\n  b\n  {% endif %}\nc",
         "a\n  b\nc"},
        {"a  {% if true %}b{% endif %}  c",
         "a  b  c"},
        {"  {%- if true %}x{% endif -%}  \n  y",
         "xy"},
        {"a\n  {# comment #}\n  b",
         "a\n  b"},
        {"  {{ 'x' }}\n  {{- 'y' -}}\n  z",
         "  xyz"},
        {"line\n    {%+ if true %}keep{% endif +%}\nnext",
         "line\n    keep\nnext"},
        {"{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n",
         "  1\n  2\n"},
        {"{%- for i in [1,2] -%}\n  {{ i }}\n{%- endfor -%}\n\n",
         "12"},
        {"a {% raw %}{{ not }}{% endraw %} b",
         "a {{ not }} b"},
        {"trailing newline dropped\n",
         "trailing newline dropped"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, loops) {
    static const tcase cases[] = {
        {"{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}|{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{% for c in 'ab' %}{{ c }}{% endfor %}|{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}",
         "1234|x=1;y=2;|ab|pq"},
        {"{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
         "02"},
        {"{% for i in [] %}x{% else %}empty{% endfor %}|{% for i in [1,2,3] if i > 1 %}{{ loop.index }}/{{ loop.length }}:{{ i }} {% endfor %}",
         "empty|1/2:2 2/2:3 "},
        {"{% for i in 'abc' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('x','y') }}{{ loop.depth }};{% endfor %}",
         "032TrueFalsebx1;121FalseFalseacy1;210FalseTruebx1;"},
        {"{% for i in [1,1,2,2,3] %}{% if loop.changed(i) %}{{ i }}{% endif %}{% endfor %}",
         "123"},
        {"{% for x in [[1,2],[3]] %}{% for y in x %}{{ loop.index }}{{ y }}{% endfor %}-{{ loop.index }}{% endfor %}",
         "1122-113-2"},
        {"{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }} {% endfor %}",
         "1:user 2:assistant "},
        {"{% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ b }}{{ c }}{% endfor %}",
         "123"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, scoping) {
    static const tcase cases[] = {
        {"{% set x = 1 %}{% for i in [1,2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
         "231"},
        {"{% set ns = namespace(t=0) %}{% for i in [1,2,3] %}{% set ns.t = ns.t + i %}{% endfor %}{{ ns.t }}",
         "6"},
        {"{% if 1 %}{% set y = 5 %}{% endif %}{{ y }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = 1, 2 %}{{ t }}",
         "5|12|(1, 2)"},
        {"{% for i in [1, 2] %}{% if loop.first %}{% set z = 5 %}{% endif %}[{{ z }}]{% endfor %}",
         "[5][]"},
        {"{% set s %}  block {{ 1 + 1 }} {% endset %}[{{ s }}]{% set u | upper | trim %} hi {% endset %}[{{ u }}]",
         "[  block 2 ][HI]"},
        {"{% filter upper %}abc{{ 'd' }}{% endfilter %}|{% filter replace('a', 'b') | trim %} aaa {% endfilter %}",
         "ABCD|bbb"},
        {"{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}|",
         "3|"},
        {"{% generation %}gen {{ 1 }}{% endgeneration %}",
         "gen 1"},
        {"{% set bos_token = 'B' %}{{ bos_token }}",
         "B"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, macros) {
    static const tcase cases[] = {
        {"{% macro m(a, b=2, c='x') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 3) }}|{{ m(1, c='z') }}|{{ m(a=5) }}|{{ m() }}",
         "1-2-x|1-3-x|1-2-z|5-2-x|-2-x"},
        {"{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}",
         "120"},
        {"{% macro m(x) %}[{{ x }}]{% endmacro %}{{ m(1) + m(2) }}{{ m(3)|length }}{{ (m(4)|trim) ~ '!' }}",
         "[1][2]3[4]!"},
        {"{% macro m() %}{{ outer }}{% endmacro %}{% set outer = 'A' %}{{ m() }}{% set outer = 'B' %}{{ m() }}",
         "AB"},
        {"{% macro m(a, b=a * 2) %}{{ b }}{% endmacro %}{{ m(3) }}",
         "6"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, access) {
    static const tcase cases[] = {
        {"{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[1:]|length }} {{ messages[:1][0].role }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ 'hello'[::2] }} {{ [1,2,3,4][-2:] }} {{ [1,2,3][5:] }} {{ 'h\303\251llo'[1] }} {{ 'h\303\251llo'[1:3] }}",
         "system Hello! 2 system el olleh hlo [3, 4] [] \303\251 \303\251l"},
        {"{{ [1,2,3][1:-1] }} {{ [1,2,3,4,5][::-2] }} {{ [1,2,3,4,5][4:1:-1] }} {{ 'abc'[-10:10] }}",
         "[2] [5, 3, 1] [5, 4, 3] abc"},
        {"{{ d.a }} {{ d['b'][2] }} {{ d.b.1 }} {{ d.zz }}|{{ d['items'] }} {{ d.items is defined }} {{ d.n is none }} {{ d.t is true }} {{ d.zz is defined }} {{ none.x is defined }}",
         "1 x 2.5 |[3] True True True False False"},
        {"{{ d.keys is defined }} {{ d['nope'] is defined }} {{ 'abc'.upper is defined }} {{ 'abc'.nope is defined }} {{ messages[9] is defined }}",
         "True False True False False"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, tests) {
    static const tcase cases[] = {
        {"{{ x is defined }} {{ x is undefined }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is integer }} {{ true is number }} {{ 's' is string }} {{ d is mapping }} {{ [] is iterable }} {{ 's' is sequence }} {{ d is sequence }}",
         "False True True True True False True True True True True True"},
        {"{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 'a' is in 'abc' }} {{ 1 is sameas 1 }} {{ none is sameas none }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 2 is lt 1 }} {{ range is callable }} {{ 'x' is callable }}",
         "True True True True True True True True True True False True False"},
        {"{{ 1 is boolean }} {{ false is false }} {{ 0 is false }} {{ x is iterable }} {{ 'a' is escaped }} {{ ('a'|safe) is escaped }} {{ 'upper' is filter }} {{ 'odd' is test }}",
         "False True False True False True True True"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, filters_text) {
    static const tcase cases[] = {
        {"{{ 'hello world'|title }} {{ 'HELLO'|lower }} {{ 'hello'|upper }} {{ 'hELLO wORLD'|capitalize }} {{ 'a-b(c d'|title }} {{ '\303\211COLE'|lower }}",
         "Hello World hello HELLO Hello world A-B(C D \303\251cole"},
        {"{{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'abc'|length }}|{{ '\303\251\344\270\255'|length }}|{{ [1,2]|count }}|{{ {'a':1}|length }}",
         "x|a|3|2|2|1"},
        {"{{ [1,2,3]|join(', ') }}|{{ [1,2,3]|join }}|{{ [{'n':'a'},{'n':'b'}]|join('-', attribute='n') }}|{{ 'abc'|join('.') }}",
         "1, 2, 3|123|a-b|a.b.c"},
        {"{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 1|replace(1, 2) }}",
         "bbb bba -a-b-c- 2"},
        {"{{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ none|d('d', true) }} {{ x|d }}|",
         "d  d None d |"},
        {"{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb\n\nc'|indent(2, true) }}|{{ 'a\nb\n\nc'|indent(2, blank=true) }}|{{ 'a\nb'|indent('> ') }}",
         "a\n    b\n\n    c|  a\n  b\n\n  c|a\n  b\n  \n  c|a\n> b"},
        {"{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|escape }} {{ ('<b>'|safe) + '<i>' }} {{ '<b>' + ('<i>'|safe) }} {{ ('<b>'|safe) ~ '<i>' }} {{ ('x'|safe)|length }}",
         "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt; &lt;b&gt; <b>&lt;i&gt; &lt;b&gt;<i> <b><i> 1"},
        {"{{ 1|string }}{{ [1]|string }}{{ none|string }}{{ x|string }}|{{ 'ab'|center(6) }}|{{ 'a b  c'|wordcount }}|{{ '%s-%s'|format(1, 2) }}",
         "1[1]None|  ab  |3|1-2"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, filters_seq) {
    static const tcase cases[] = {
        {"{{ [3,1,2]|sort }} {{ [3,1,2]|sort(reverse=true) }} {{ ['b','A','c']|sort }} {{ ['b','A','c']|sort(case_sensitive=true) }} {{ [{'a':2},{'a':1}]|sort(attribute='a') }}",
         "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] ['A', 'b', 'c'] [{'a': 1}, {'a': 2}]"},
        {"{{ {'b':1,'A':2,'c':0}|dictsort }} {{ {'b':1,'A':2,'c':0}|dictsort(by='value') }} {{ {'b':1,'a':2}|dictsort(reverse=true) }} {{ {'b':1,'A':2}|dictsort(true) }}",
         "[('A', 2), ('b', 1), ('c', 0)] [('c', 0), ('b', 1), ('A', 2)] [('b', 1), ('a', 2)] [('A', 2), ('b', 1)]"},
        {"{{ [1,2,2,'a','A']|unique|list }} {{ [1,2,3]|first }} {{ [1,2,3]|last }} {{ 'abc'|first }} {{ []|first }}| {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }}",
         "[1, 2, 'a'] 1 3 a | [3, 2, 1] cba"},
        {"{{ [3,1,2]|min }} {{ [3,1,2]|max }} {{ ['b','A']|min }} {{ [1,2,3]|sum }} {{ [{'v':1},{'v':2}]|sum(attribute='v') }} {{ [1.5,2]|sum }} {{ []|max }}|",
         "1 3 A 6 3 3.5 |"},
        {"{{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('odd')|list }} {{ [1,2,3]|select('gt', 1)|list }} {{ [0,1,'',none,'a']|select|list }}",
         "[1, 3] [2, 4] [2, 3] [1, 'a']"},
        {"{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ messages|rejectattr('role', 'eq', 'user')|map(attribute='role')|join(',') }} {{ messages|selectattr('content')|list|length }}",
         "['Hi \303\251 \344\270\255\346\226\207 \360\237\230\200'] system,assistant 3"},
        {"{{ ['a','b']|map('upper')|list }} {{ [{'a':{'b':1}}]|map(attribute='a.b')|list }} {{ [{}]|map(attribute='x', default=5)|list }} {{ ['1','2']|map('int')|sum }}",
         "['A', 'B'] [1] [5] 3"},
        {"{{ d|items|list }} {{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 9) }}",
         "[('a', 1), ('b', [1, 2.5, 'x']), ('items', [3]), ('n', None), ('t', True)] [('a', 1), ('b', [1, 2.5, 'x']), ('items', [3]), ('n', None), ('t', True)] ['a', 'b', 'items', 'n', 't'] [1, [1, 2.5, 'x'], [3], None, True] 1 None 9"},
        {"{{ [1,2,3]|list }} {{ 'ab'|list }} {{ {'a':1}|list }} {{ none|selectattr('a')|list }} {{ [1,2,3,4,5]|batch(2)|list }}",
         "[1, 2, 3] ['a', 'b'] ['a'] [] [[1, 2], [3, 4], [5]]"},
        {"{{ -3 | abs }} {{ -2.5|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 5|round }} {{ 3.14159|round(2, 'floor') }} {{ 3.1|round(0,'ceil') }}",
         "3 2.5 2.0 4.0 2.67 5 3.14 4.0"},
        {"{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 4.9|int }} {{ true|int }} {{ '3'|float }} {{ 'x'|float }} {{ 2|float }} {{ ' 12 '|int }}",
         "42 4 0 7 4 1 3.0 0.0 2.0 12"},
        {"{% if [] | select %}truthy generator{% endif %}",
         "truthy generator"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, tojson) {
    static const tcase cases[] = {
        {"{{ [1,2]|tojson }} {{ {'a': '\303\251', 'b': none, 'c': true, 'd': 1.5, 'e': [1, {'f': 'g'}]}|tojson }} {{ 'x\"y\\\\z\n<>&\\''|tojson }}",
         "[1, 2] {\"a\": \"\303\251\", \"b\": null, \"c\": true, \"d\": 1.5, \"e\": [1, {\"f\": \"g\"}]} \"x\\\"y\\\\z\\n<>&'\""},
        {"{{ {'a':[1,2],'b':{}}|tojson(indent=2) }} {{ {'b':1,'a':2}|tojson(sort_keys=true) }} {{ [1,[2,[]]]|tojson(indent='\\t') }}",
         "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {}\n} {\"a\": 2, \"b\": 1} [\n\t1,\n\t[\n\t\t2,\n\t\t[]\n\t]\n]"},
        {"{{ '\303\251\360\237\230\200'|tojson(ensure_ascii=true) }} {{ {'a':1}|tojson(separators=(',', ':')) }} {{ 1.0|tojson }} {{ 1e20|tojson }} {{ 'a\\x01b\\x7f'|tojson }}",
         "\"\\u00e9\\ud83d\\ude00\" {\"a\":1} 1.0 1e+20 \"a\\u0001b\177\""},
        {"{{ {1: 'a', 2.5: 'b', true: 'c', none: 'd'}|tojson }} {{ (1, 2)|tojson }} {{ messages[1]|tojson }}",
         "{\"1\": \"c\", \"2.5\": \"b\", \"null\": \"d\"} [1, 2] {\"role\": \"user\", \"content\": \"Hi \303\251 \344\270\255\346\226\207 \360\237\230\200\"}"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, methods) {
    static const tcase cases[] = {
        {"{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) }} {{ '  a b  c '.split(none, 1) }} {{ '  a b  c '.rsplit(none, 1) }}",
         "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] ['a b', 'c'] ['a', 'b  c '] ['  a b', 'c']"},
        {"{{ 'xhix'.strip('x') }} {{ '  a  '.lstrip() }}| {{ '  a  '.rstrip() }}| {{ 'abc'.startswith('a') }} {{ 'abc'.startswith(('x', 'ab')) }} {{ 'abc'.endswith('bc') }} {{ 'abc'.endswith('c', 0, 2) }}",
         "hi a  |   a| True True True False"},
        {"{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'h\303\251llo'.find('l') }} {{ 'hello'.count('l') }} {{ 'hello'.index('e') }} {{ 'Hello World'.lower() }} {{ 'hello world'.title() }} {{ 'aBc'.swapcase() }}",
         "2 3 -1 2 2 1 hello world Hello World AbC"},
        {"{{ '-'.join(['a', 'b']) }} {{ 'a\nb\\r\nc'.splitlines() }} {{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ '  '.isspace() }} {{ 'x'.zfill(3) }} {{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(4, '.') }}|{{ 'a=b=c'.partition('=') }}",
         "a-b ['a', 'b', 'c'] True True True 00x **ab** ab..|('a', '=', 'b=c')"},
        {"{{ '{} and {}'.format('a', 1) }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='Bob') }} {{ '{:>5}|{:<5}|{:^5}'.format('a', 'b', 'c') }} {{ '{:.2f}'.format(3.14159) }} {{ '{:05d}'.format(42) }} {{ '{{x}}'.format() }} {{ '{!r}'.format('q') }}",
         "a and 1 xyx Bob!     a|b    |  c   3.14 00042 {x} 'q'"},
        {"{{ '%s is %d' % ('x', 3) }} {{ '%5.1f|%-4s|%04d' % (3.14159, 'ab', 7) }} {{ '%(a)s' % {'a': 1} }} {{ '%r' % 'q' }}",
         "x is 3   3.1|ab  |0007 1 'q'"},
        {"{% set l = [] %}{% set _ = l.append(1) %}{% set _ = l.append(2) %}{{ l }}{{ l.pop() }}{{ l }}{% set _ = l.extend([5, 6]) %}{{ l }}{{ l.index(5) }}{{ l.count(6) }}{% set _ = l.insert(0, 9) %}{{ l }}{{ l.pop(0) }}",
         "[1, 2]2[1][1, 5, 6]11[9, 1, 5, 6]9"},
        {"{% set dd = {} %}{% set _ = dd.update({'a': 1}) %}{% set _ = dd.update(b=2) %}{{ dd }}{{ dd.pop('a') }}{{ dd }}{{ dd.setdefault('c', 3) }}{{ dd }}{{ dd.pop('zz', 'none') }}",
         "{'a': 1, 'b': 2}1{'b': 2}3{'b': 2, 'c': 3}none"},
        {"{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set _ = ns.items.append(i * 2) %}{% endfor %}{{ ns.items }}{{ ns }}",
         "[0, 2, 4]<Namespace {'items': [0, 2, 4]}>"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

Test(tmpl_lang, globals) {
    static const tcase cases[] = {
        {"{{ range(3)|list }} {{ range(1, 4)|list }} {{ range(10, 0, -3)|list }} {{ range(0)|list }} {{ range(3)|length }}",
         "[0, 1, 2] [1, 2, 3] [10, 7, 4, 1] [] 3"},
        {"{{ dict(a=1, b='x') }} {{ namespace(a=1).a }} {{ namespace({'q': 2}).q }} {{ namespace(a=1)['a'] }}",
         "{'a': 1, 'b': 'x'} 1 2 1"},
        {"{{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%A, %B %d') }} {{ strftime_now('%H:%M:%S %j %p %y %%') }} {{ strftime_now('%-d') }}",
         "2026-01-15 15 Jan 2026 Thursday, January 15 00:00:00 015 AM 26 % 15"},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ---------------------------------------------------------------- errors */

Test(tmpl_errors, syntax_errors_name_the_line) {
    expect_err("a\nb\n{{ x | nosuchfilter }}", NULL, SP_TMPL_ESYNTAX, "template line 3: No filter named 'nosuchfilter'.");
    expect_err("{{ x is nosuchtest }}", NULL, SP_TMPL_ESYNTAX, "template line 1: No test named 'nosuchtest'.");
    expect_err("{% if true %}{% for i in [1] %}\n{{ x | nof }}{% endfor %}{% endif %}", NULL, SP_TMPL_ESYNTAX,
               "template line 2: No filter named 'nof'.");
    expect_err("{% for x in y %}\n\nno end", NULL, SP_TMPL_ESYNTAX, "template line 3: Unexpected end of template");
    expect_err("{{ 1 + }}", NULL, SP_TMPL_ESYNTAX, "template line 1: unexpected 'end of print statement'");
    expect_err("\n{{ (1 }}", NULL, SP_TMPL_ESYNTAX, "template line 2: unexpected '}'");
    expect_err("{% frobnicate %}", NULL, SP_TMPL_ESYNTAX, "Encountered unknown tag 'frobnicate'");
    expect_err("{% if 1 %}{% endfor %}", NULL, SP_TMPL_ESYNTAX, "Encountered unknown tag 'endfor'");
    expect_err("{# never closed", NULL, SP_TMPL_ESYNTAX, "Missing end of comment tag");
    expect_err("{{ 'unterminated }}", NULL, SP_TMPL_ESYNTAX, "unexpected char");
    expect_err("{% break %}", NULL, SP_TMPL_ESYNTAX, "'break' outside of a loop");
    expect_err("{% include 'x' %}", NULL, SP_TMPL_ESYNTAX, "not supported");
    expect_err("{{ '\\x4' }}", NULL, SP_TMPL_ESYNTAX, "truncated \\xXX escape");
    expect_err("{% set 1 = 2 %}", NULL, SP_TMPL_ESYNTAX, "can't assign");
    expect_err("{{ a is defined is defined }}", NULL, SP_TMPL_ESYNTAX, "line 1");
}

Test(tmpl_errors, unknown_filter_in_if_fails_only_when_reached) {
    expect("{% if false %}{{ x | from_json }}{% endif %}ok", NULL, "ok");
    expect("{{ (x | from_json) if false else 'ok' }}", NULL, "ok");
    expect("{% if false %}{% for i in [1] | nof %}{% endfor %}{{ 1 is nosuchtest }}{% endif %}ok", NULL, "ok");
    expect_err("{% if x is nosuchtest %}{% endif %}", NULL, SP_TMPL_ERUNTIME, "No test named 'nosuchtest' found.");
    expect_err("{{ [1] | map('nof') | list }}", NULL, SP_TMPL_ERUNTIME, "No filter named 'nof'.");
    expect_err("{% if true %}\n{{ '{}' | from_json }}{% endif %}", NULL, SP_TMPL_ERUNTIME,
               "template line 2: No filter named 'from_json' found.");
}

Test(tmpl_errors, runtime_errors_are_jinja2s_messages) {
    expect_err("\n\n{{ nope.x }}", NULL, SP_TMPL_ERUNTIME, "template line 3: 'nope' is undefined");
    expect_err("{{ d.zz.y }}", CTX, SP_TMPL_ERUNTIME, "'dict object' has no attribute 'zz'");
    expect_err("{{ messages[9].role }}", CTX, SP_TMPL_ERUNTIME, "list object has no element 9");
    expect_err("{{ 'x' + 1 }}", NULL, SP_TMPL_ERUNTIME, "can only concatenate str (not \"int\") to str");
    expect_err("{{ 1 + 'x' }}", NULL, SP_TMPL_ERUNTIME, "unsupported operand type(s) for +: 'int' and 'str'");
    expect_err("{{ 1 / 0 }}", NULL, SP_TMPL_ERUNTIME, "division by zero");
    expect_err("{{ 'a' < 1 }}", NULL, SP_TMPL_ERUNTIME, "'<' not supported between instances of 'str' and 'int'");
    expect_err("{{ none | length }}", NULL, SP_TMPL_ERUNTIME, "object of type 'NoneType' has no len()");
    expect_err("{% for a, b in [1] %}{% endfor %}", NULL, SP_TMPL_ERUNTIME, "cannot unpack non-iterable int object");
    expect_err("{% for a, b in [(1, 2, 3)] %}{% endfor %}", NULL, SP_TMPL_ERUNTIME, "too many values to unpack (expected 2)");
    expect_err("{{ x | tojson }}", NULL, SP_TMPL_ERUNTIME, "Object of type Undefined is not JSON serializable");
    expect_err("{{ [1] | map('upper') | tojson }}", NULL, SP_TMPL_ERUNTIME, "Object of type generator is not JSON serializable");
    expect_err("{{ 'x' if false }}{{ ('x' if false).y }}", NULL, SP_TMPL_ERUNTIME,
               "the inline if-expression on line 1 evaluated to false and no else section was defined.");
    expect_err("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, SP_TMPL_ERUNTIME, "macro 'm' takes not more than 1 argument(s)");
    expect_err("{% set x = 1 %}{% set x.y = 2 %}", NULL, SP_TMPL_ERUNTIME, "cannot assign attribute on non-namespace object");
    expect_err("{{ [1, 2][x:] }}", NULL, SP_TMPL_ERUNTIME, "slice indices must be integers or None");
}

Test(tmpl_errors, raise_exception_is_distinguishable) {
    expect_err("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
               CTX, SP_TMPL_ERAISED, "System role not supported");
    result r = render("x{{ raise_exception('Only ' ~ 2 ~ ' roles') }}", NULL);
    cr_assert_eq(r.st, SP_TMPL_ERAISED);
    cr_assert_str_eq(r.err, "Only 2 roles"); /* the template's own words, nothing added */
}

Test(tmpl_errors, bad_arguments) {
    char err[128];
    char *out = (char *)1;
    cr_assert_eq(sp_tmpl_render(NULL, NULL, NULL, &out, NULL, err, sizeof err), SP_TMPL_EINVAL);
    cr_assert_null(out);
    sp_tmpl *t = sp_tmpl_parse("x", 1, err, sizeof err);
    cJSON *arr = cJSON_CreateArray();
    cr_assert_eq(sp_tmpl_render(t, arr, NULL, &out, NULL, err, sizeof err), SP_TMPL_EINVAL);
    cJSON_Delete(arr);
    size_t len;
    cr_assert_eq(sp_tmpl_render(t, NULL, NULL, &out, &len, NULL, 0), SP_TMPL_OK);
    cr_assert_str_eq(out, "x");
    free(out);
    sp_tmpl_free(t);
    sp_tmpl_free(NULL);
    /* not NUL-terminated source */
    t = sp_tmpl_parse("{{ 1 }}garbage", 7, err, sizeof err);
    cr_assert_not_null(t);
    cr_assert_eq(sp_tmpl_render(t, NULL, NULL, &out, &len, err, sizeof err), SP_TMPL_OK);
    cr_assert_str_eq(out, "1");
    free(out);
    sp_tmpl_free(t);
}

/* ---------------------------------------------------------------- limits */

Test(tmpl_limits, deep_macro_recursion) {
    expect_err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, SP_TMPL_ELIMIT,
               "template nesting too deep");
}

Test(tmpl_limits, huge_loops) {
    expect_err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL,
               SP_TMPL_ELIMIT, "");
    expect_err("{% set l = range(100000) | list %}{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}", NULL,
               SP_TMPL_ELIMIT, "too many evaluation steps");
    expect_err("{{ range(1000000) | list }}", NULL, SP_TMPL_ERUNTIME, "Range too big");
    sp_tmpl_opts o = {0};
    o.max_steps = 1000;
    result r = render_opts("{% for i in range(10000) %}{% endfor %}", NULL, &o);
    cr_assert_eq(r.st, SP_TMPL_ELIMIT, "%s", r.err);
}

Test(tmpl_limits, output_bound) {
    sp_tmpl_opts o = {0};
    o.max_output = 1000;
    result r = render_opts("{% for i in range(2000) %}x{% endfor %}", NULL, &o);
    cr_assert_eq(r.st, SP_TMPL_ELIMIT, "%s", r.err);
    cr_assert(strstr(r.err, "output too large"), "%s", r.err);
    r = render_opts("{% for i in range(999) %}x{% endfor %}", NULL, &o);
    cr_assert_eq(r.st, SP_TMPL_OK);
    cr_assert_eq(r.len, 999);
    free(r.out);
    /* default 16 MiB: a doubling string blows past it */
    expect_err("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
               NULL, SP_TMPL_ELIMIT, "");
}

Test(tmpl_limits, memory_bound) {
    expect_err("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
               NULL, SP_TMPL_ELIMIT, "too much memory");
    expect_err("{{ ('x' * 100000) * 100000 }}", NULL, SP_TMPL_ELIMIT, "");
    expect_err("{% set l = [1] %}{% for i in range(64) %}{% set _ = l.extend(l) %}{% endfor %}", NULL, SP_TMPL_ELIMIT, "");
}

Test(tmpl_limits, deep_nesting_in_the_parser) {
    char *src = malloc(20000);
    size_t n = 0;
    n += (size_t)sprintf(src + n, "{{ ");
    for (int i = 0; i < 5000; i++) src[n++] = '(';
    n += (size_t)sprintf(src + n, "1");
    for (int i = 0; i < 5000; i++) src[n++] = ')';
    n += (size_t)sprintf(src + n, " }}");
    src[n] = 0;
    expect_err(src, NULL, SP_TMPL_ESYNTAX, "");
    n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)sprintf(src + n, "{%% if 1 %%}");
    src[n] = 0;
    expect_err(src, NULL, SP_TMPL_ESYNTAX, "nesting too deep");
    free(src);
}

Test(tmpl_limits, circular_values) {
    expect_err("{% set l = [] %}{% set _ = l.append(l) %}{{ l }}", NULL, SP_TMPL_ERUNTIME, "recursion");
    expect_err("{% set l = [] %}{% set _ = l.append(l) %}{{ l | tojson }}", NULL, SP_TMPL_ERUNTIME, "recursion");
}

Test(tmpl_lang, generation_is_a_call_block) {
    /* rendered like a macro body: its sets stay inside, break/continue cannot leave it */
    expect("{% generation %}{% set x = 1 %}{{ x }}{% endgeneration %}[{{ x }}]", NULL, "1[]");
    expect("{% for i in [1, 2] %}{% generation %}{{ loop.index }}{{ i }}{% endgeneration %}{% endfor %}", NULL, "1122");
    expect_err("{% for i in [1] %}{% generation %}{% break %}{% endgeneration %}{% endfor %}", NULL, SP_TMPL_ESYNTAX,
               "'break' outside of a loop");
    expect("{% for i in [1, 2, 3] %}{% set x %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endset %}{{ x }}{% endfor %}", NULL, "1");
}

Test(tmpl_lang, undefined_corners) {
    expect("{{ x is callable }} {{ x is sequence }} {{ x is iterable }} {{ x | length }} {{ x | list }} {{ x | join }}|", NULL,
           "True True True 0 [] |");
    expect_err("{% for a, b in [x] %}{% endfor %}", NULL, SP_TMPL_ERUNTIME, "not enough values to unpack (expected 2, got 0)");
    expect_err("{{ x | int }}", NULL, SP_TMPL_ERUNTIME, "'x' is undefined");
    expect_err("{{ x + 1 }}", NULL, SP_TMPL_ERUNTIME, "'x' is undefined");
    expect("{{ x ~ 'a' }} {{ x == x }} {{ x | default(1) }} {{ none.attr is defined }}", NULL, "a True 1 False");
}

/* ---------------------------------------------------------------- fuzz regressions */

Test(tmpl_fuzz, repeating_an_empty_or_generator_sequence) {
    /* UBSan: memcpy from the NULL buffer of an empty generator list */
    expect_err("{{ 'x' | reject * 49 }}", NULL, SP_TMPL_ERUNTIME, "unsupported operand type(s) for *: 'generator' and 'int'");
    expect_err("{{ ([1] | map('string')) + [2] }}", NULL, SP_TMPL_ERUNTIME, "unsupported operand type(s) for +: 'generator' and 'list'");
    expect("{{ [] * 3 }}{{ [1] * 0 }}{{ () * 2 }}", NULL, "[][]()");
}

/* ---------------------------------------------------------------- builtins */

static const char *const CONV =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Bye\"}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

Test(tmpl_builtin, each_renders_its_family_format) {
    static const struct { const char *name, *want; } b[] = {
        {"chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                   "Hello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
        {"llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"},
        {"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
                   "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"mistral", "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]"},
        {"gemma", "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                  "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
        {"phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n"
                 "<|assistant|>\n"},
    };
    size_t n = 0;
    for (const char *const *p = sp_tmpl_builtin_names(); *p; p++) n++;
    cr_assert_eq(n, sizeof b / sizeof b[0]);
    for (size_t i = 0; i < n; i++) {
        const char *src = sp_tmpl_builtin(b[i].name);
        cr_assert_not_null(src, "%s", b[i].name);
        expect(src, CONV, b[i].want);
    }
    cr_assert_null(sp_tmpl_builtin("nope"));
    cr_assert_null(sp_tmpl_builtin(NULL));
}

Test(tmpl_builtin, roles_must_alternate) {
    expect_err(sp_tmpl_builtin("llama2"),
               "{\"bos_token\": \"<s>\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}",
               SP_TMPL_ERAISED, "Conversation roles must alternate");
}

Test(tmpl_builtin, guess) {
    cr_assert_str_eq(sp_tmpl_builtin_guess("llama", "Meta-Llama-3.1-8B-Instruct"), "llama3");
    cr_assert_str_eq(sp_tmpl_builtin_guess("llama", "Llama-2-7b-chat"), "llama2");
    cr_assert_str_eq(sp_tmpl_builtin_guess("qwen2", NULL), "chatml");
    cr_assert_str_eq(sp_tmpl_builtin_guess("gemma2", "gemma-2-2b-it"), "gemma");
    cr_assert_str_eq(sp_tmpl_builtin_guess("phi3", NULL), "phi3");
    cr_assert_str_eq(sp_tmpl_builtin_guess("llama", "Mistral-7B-Instruct-v0.2"), "mistral");
    cr_assert_str_eq(sp_tmpl_builtin_guess(NULL, NULL), "chatml");
}

/* ---------------------------------------------------------------- API behaviour */

Test(tmpl_api, reusable_and_context_untouched) {
    char err[256];
    const char *src = "{% set _ = messages.append({'role': 'x'}) %}{{ messages | length }}";
    sp_tmpl *t = sp_tmpl_parse(src, strlen(src), err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cJSON *ctx = cJSON_Parse("{\"messages\": [{\"role\": \"user\"}]}");
    for (int i = 0; i < 3; i++) { /* each render sees the caller's context unchanged */
        char *out;
        size_t len;
        cr_assert_eq(sp_tmpl_render(t, ctx, NULL, &out, &len, err, sizeof err), SP_TMPL_OK, "%s", err);
        cr_assert_str_eq(out, "2");
        free(out);
    }
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(ctx, "messages")), 1);
    cJSON_Delete(ctx);
    sp_tmpl_free(t);
}

Test(tmpl_api, json_numbers) {
    expect("{{ a }} {{ b }} {{ c }} {{ a / 2 }} {{ b | tojson }}", "{\"a\": 3, \"b\": 2.5, \"c\": 1e300}", "3 2.5 1e+300 1.5 2.5");
}
