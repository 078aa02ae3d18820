/* test_jinja.c -- jinja2 as the PromptLayer SDK runs it, over JSON variables.
 *
 * Every expected text below is what jinja2 3.1 gives under
 *     SandboxedEnvironment(undefined=ChainableUndefined).from_string(t).render(**vars)
 * (computed with it, then pasted); rc 1 means jinja2 raises and the SDK keeps
 * the text, rc 2 that the case is outside jinja.h's subset. jinja_oracle.py
 * compares many thousands more against jinja2 itself.
 */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "core/jinja.h"

typedef struct jinja_case {
    const char *text;
    const char *vars; /* a JSON object */
    int rc;
    const char *want;
} jinja_case;

static json_t *load(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, 0, &err);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", json, err.text);
    return v;
}

static void run_table(const jinja_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const jinja_case *c = &cases[i];
        json_t *vars = load(c->vars);
        buf b;
        buf_init(&b, 1 << 20);
        int rc = jinja_render(&b, c->text, strlen(c->text), vars);
        if (rc != c->rc)
            fail_msg("'%s' with %s: rc %d, wanted %d", c->text, c->vars, rc, c->rc);
        if (rc == JINJA_OK &&
            (b.len != strlen(c->want) || (b.len > 0 && memcmp(b.data, c->want, b.len) != 0)))
            fail_msg("'%s' with %s:\n got    '%.*s'\n wanted '%s'", c->text, c->vars, (int)b.len,
                     b.data, c->want);
        if (rc != JINJA_OK)
            assert_int_equal(b.len, 0);
        buf_free(&b);
        json_decref(vars);
    }
}

#define RUN(cases) run_table(cases, sizeof(cases) / sizeof(cases[0]))

static const jinja_case text_and_values_print_as_python_str_cases[] = {
    {"Hello {{ name }}!", "{\"name\": \"World\"}", 0, "Hello World!"},
    {"{{ n }}|{{ f }}|{{ t }}|{{ z }}|{{ l }}|{{ d }}",
     "{\"n\": 42, \"f\": 1.0, \"t\": true, \"z\": null, \"l\": [1, \"a\", null, 2.5], \"d\": "
     "{\"k\": \"v\", \"q\": [true]}}",
     0, "42|1.0|True|None|[1, 'a', None, 2.5]|{'k': 'v', 'q': [True]}"},
    {"{{ f }}|{{ g }}|{{ h }}", "{\"f\": 1e+16, \"g\": 0.1, \"h\": -0.0}", 0, "1e+16|0.1|-0.0"},
    {"{{ s }}", "{\"s\": \"it's \\\"q\\\" \303\251 \360\237\230\200 {{ not a tag }}\"}", 0,
     "it's \"q\" \303\251 \360\237\230\200 {{ not a tag }}"},
    {"{{ [s] }}", "{\"s\": \"it's\"}", 0, "[\"it's\"]"},
    {"caf\303\251 \346\227\245\346\234\254 {x} }} %} #}", "{}", 0,
     "caf\303\251 \346\227\245\346\234\254 {x} }} %} #}"},
    {"", "{}", 0, ""},
    {"no tags at all\n", "{}", 0, "no tags at all"},
};

static const jinja_case one_trailing_newline_is_dropped_and_newlines_become_lf_cases[] = {
    {"a\n", "{}", 0, "a"},
    {"a\n\n", "{}", 0, "a\n"},
    {"a\r\n", "{}", 0, "a"},
    {"a\r", "{}", 0, "a"},
    {"a\r\nb\rc\n", "{}", 0, "a\nb\nc"},
    {"{{ 'x\r\ny' }}", "{}", 0, "x\ny"},
    {"{{ v }}\n", "{\"v\": \"keep\\r\\n\"}", 0, "keep\r\n"},
    {"a\013b\302\205c\342\200\250", "{}", 0, "a\013b\302\205c\342\200\250"},
};

static const jinja_case whitespace_control_comments_and_raw_cases[] = {
    {"a {{- 'b' -}} c", "{}", 0, "abc"},
    {"a {%- if true -%} b {%- endif -%} c", "{}", 0, "abc"},
    {"a {%+ if true +%} b {%+ endif +%} c", "{}", 0, "a  b  c"},
    {"a {#- x -#} b {# y #} c", "{}", 0, "ab  c"},
    {"x \343\200\200{{- 'y' -}}\343\200\200\302\205 z", "{}", 0, "xyz"},
    {"{% raw %}{{ x }}{% if %}{% endraw %}", "{}", 0, "{{ x }}{% if %}"},
    {"{%- raw -%} {{ x }} {%- endraw -%} !", "{}", 0, "{{ x }}!"},
    {"abc{#", "{}", 0, "abc"},
    {"a{% raw %}", "{}", 0, "a"},
};

static const jinja_case undefined_values_chain_and_print_empty_cases[] = {
    {"[{{ x }}][{{ x.y.z }}][{{ x['a'][0] }}][{{ x.__class__ }}]", "{}", 0, "[][][][]"},
    {"{{ x|default('d') }}|{{ x.y|default('d') }}|{{ ''|default('e', true) }}|{{ none|default('n') "
     "}}",
     "{}", 0, "d|d|e|None"},
    {"{{ x|length }}{{ x|list }}{{ x|join(',') }}{{ x|first }}{{ x|upper }}|", "{}", 0, "0[]|"},
    {"{{ x == y }}{{ x != 1 }}{{ x in [1] }}{{ 1 in x }}{{ not x }}", "{}", 0,
     "TrueTrueFalseFalseTrue"},
    {"{{ x is defined }}{{ x is undefined }}{{ x is sequence }}{{ x is callable }}{{ x is escaped "
     "}}",
     "{}", 0, "FalseTrueTrueTrueTrue"},
    {"{% for i in x %}{{ i }}{% else %}empty{% endfor %}", "{}", 0, "empty"},
    {"{{ x + 1 }}", "{}", 1, NULL},
    {"{{ x < 1 }}", "{}", 1, NULL},
    {"{{ x() }}", "{}", 1, NULL},
    {"{{ -x }}", "{}", 1, NULL},
    {"{{ x|int }}", "{}", 1, NULL},
    {"{{ x in 'abc' }}", "{}", 1, NULL},
    {"{{ [x, 1] }}", "{}", 0, "[Undefined, 1]"},
};

static const jinja_case operators_follow_python_cases[] = {
    {"{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ 7.5 % -2 }} {{ 1 / 2 }} {{ 2 ** 10 "
     "}} {{ 2 ** -1 }}",
     "{}", 0, "3 -4 2 3.0 -0.5 0.5 1024 0.5"},
    {"{{ 1 + true }} {{ 'a' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 'ab' ~ 1 ~ none ~ [1] }}", "{}",
     0, "2 aaa [1, 1] [1, 2] ab1None[1]"},
    {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }}", "{}",
     0, "True False True True True"},
    {"{{ 0 or 'x' }} {{ 'y' and '' }} {{ none or [] }} {{ 1 if x else 2 }} [{{ 1 if false }}]",
     "{}", 0, "x  [] 2 []"},
    {"{{ 1_000 }} {{ 0x1F }} {{ 0b11 }} {{ 0o17 }} {{ 1.5e-3 }} {{ 00 }}", "{}", 0,
     "1000 31 3 15 0.0015 0"},
    {"{{ 'a\\tb\\n' }}{{ \"\\x41\\u00e9\" }}{{ '\\q' }}{{ 'a' 'b' }}", "{}", 0,
     "a\tb\nA\303\251\\qab"},
    {"{{ (1,) }} {{ () }} {{ 1, 2 }} {{ {'a': 1} }} {{ [] }}", "{}", 0,
     "(1,) () (1, 2) {'a': 1} []"},
    {"{{ 1 / 0 }}", "{}", 1, NULL},
    {"{{ 'a' + 1 }}", "{}", 1, NULL},
    {"{{ [] < 1 }}", "{}", 1, NULL},
    {"{{ 9223372036854775807 }}", "{}", 0, "9223372036854775807"},
};

static const jinja_case constant_folding_quirks_are_reproduced_cases[] = {
    {"{{ 1E400 }} {{ [1E400] }}", "{}", 0, "inf [inf]"},
    {"{{ x + 1E400 }}", "{\"x\": 1}", 1, NULL},
    {"{% set y = 1e308 * 10 %}", "{}", 1, NULL},
    {"{{ 5[1:] }}|{{ 'abc'[1.0:] }}", "{}", 0, "|"},
    {"{{ n[1:] }}", "{\"n\": 5}", 1, NULL},
    {"{{ none and x is nosuch }}ok", "{}", 0, "Noneok"},
    {"{{ false and x|nosuch }}ok", "{}", 0, "Falseok"},
    {"{{ -2 ** x }}|{{ (0 - 3) ** x }}|{{ (-2) ** 2 }}", "{\"x\": 2}", 0, "-4|-9|4"},
};

static const jinja_case lookups_as_the_sandbox_makes_them_cases[] = {
    {"{{ d.a }}{{ d['a'] }}{{ d.b.c }}{{ d['b']['c'] }}{{ l[0] }}{{ l[-1] }}{{ l.1 }}{{ l[9] }}",
     "{\"d\": {\"a\": 1, \"b\": {\"c\": 2}}, \"l\": [\"x\", \"y\"]}", 0, "1122xyy"},
    {"{{ d['items'] }}|{{ d.__x }}|{{ d.__class__ }}|{{ d['__class__'] }}",
     "{\"d\": {\"items\": 5, \"__x\": 6, \"__class__\": 7}}", 0, "5|6||7"},
    {"{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.items() }} {{ d.keys()|list }} {{ "
     "d.values()|sum }}",
     "{\"d\": {\"a\": 1, \"b\": 2}}", 0, "1 None 0 dict_items([('a', 1), ('b', 2)]) ['a', 'b'] 3"},
    {"{{ s[1:3] }} {{ s[::-1] }} {{ s[-1] }} {{ l[1:] }}",
     "{\"s\": \"h\303\251llo\", \"l\": [1, 2, 3]}", 0, "\303\251l oll\303\251h o [2, 3]"},
    {"{{ s.upper() }} {{ s.split() }} {{ s.strip('x ') }} {{ s.replace('a', 'o') }} {{ "
     "s.startswith(('x', ' x')) }}",
     "{\"s\": \" xa ba \"}", 0, " XA BA  ['xa', 'ba'] a ba  xo bo  True"},
    {"{{ n.real }} {{ n.imag }} {{ n.denominator }} {{ f.imag }}", "{\"n\": 5, \"f\": 2.5}", 0,
     "5 0 1 0.0"},
    {"{{ d['items'] }}{{ d.a }}", "{\"d\": {\"items\": [1], \"a\": null}}", 0, "[1]None"},
};

static const jinja_case if_for_and_loop_variables_cases[] = {
    {"{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"b\": 1}", 0, "B"},
    {"{% for i in l %}{{ loop.index }}/{{ loop.length }}:{{ i }}{% if not loop.last %}, {% endif "
     "%}{% endfor %}",
     "{\"l\": [\"a\", \"b\", \"c\"]}", 0, "1/3:a, 2/3:b, 3/3:c"},
    {"{% for i in l %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.previtem }}{{ "
     "loop.nextitem }}{{ loop.cycle('o', 'e') }} {% endfor %}",
     "{\"l\": [1, 2, 3]}", 0, "03True2o 12False13e 21False2o "},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
     "{\"d\": {\"b\": 1, \"a\": 2}}", 0, "b=1;a=2;|ba"},
    {"{% for x in l if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}",
     "{\"l\": [1, 2, 3]}", 0, "2232"},
    {"{% for c in 'h\303\251' %}[{{ c }}]{% endfor %}{% for i in range(2, 8, 3) %}{{ i }}{% endfor "
     "%}",
     "{}", 0, "[h][\303\251]25"},
    {"{% for a, b in l %}{{ a }}{{ b }}{% endfor %}", "{\"l\": [[1, 2, 3]]}", 1, NULL},
    {"{% for a in 5 %}{% endfor %}", "{}", 1, NULL},
    {"{% for x in l %}{{ loop.changed(x) }}{% endfor %}", "{\"l\": [1, 1, 2]}", 0, "TrueFalseTrue"},
};

static const jinja_case set_namespace_and_scoping_follow_jinja2_cases[] = {
    {"{% set x = 1 %}{% set a, b = 2, 3 %}{{ x }}{{ a }}{{ b }}", "{}", 0, "123"},
    {"{% set x %}in {{ 1 }}{% endset %}[{{ x }}]{% set y | upper %}up{% endset %}[{{ y }}]", "{}",
     0, "[in 1][UP]"},
    {"{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ "
     "ns.n }} {{ ns }}",
     "{}", 0, "6 <Namespace {'n': 6}>"},
    {"{% set c = 0 %}{% for i in [1, 2] %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}", "{}", 0,
     "110"},
    {"{% for i in [1] %}{{ x }}{% endfor %}{% set x = 2 %}{{ x }}", "{\"x\": 5}", 0, "2"},
    {"{{ x }}{% set x = 1 %}{{ x }}", "{\"x\": 5}", 0, "51"},
    {"{% if false %}{% set x = 1 %}{% endif %}{{ x }}", "{\"x\": 5}", 0, "5"},
    {"{% set n %}{{ n }}{% endset %}[{{ n }}]", "{\"n\": 5}", 0, "[]"},
    {"{% set ns.a = 1 %}", "{\"ns\": {\"a\": 2}}", 1, NULL},
};

static const jinja_case filters_of_the_subset_cases[] = {
    {"{{ s|upper }} {{ s|lower }} {{ s|title }} {{ s|capitalize }} {{ s|length }}",
     "{\"s\": \"\303\251t\303\251 STRASSE stra\303\237e \307\206x \316\243\316\243\"}", 0,
     "\303\211T\303\211 STRASSE STRASSE \307\204X \316\243\316\243 \303\251t\303\251 strasse "
     "stra\303\237e \307\206x \317\203\317\202 \303\211t\303\251 Strasse Stra\303\237e \307\204x "
     "\316\243\317\203 \303\211t\303\251 strasse stra\303\237e \307\206x \317\203\317\202 24"},
    {"{{ ' a b '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'ab'|center(6) }}|{{ 'a\\nb'|indent(2, true) "
     "}}|{{ 'hello world foo'|truncate(9) }}|{{ 'hello world foo'|truncate(12) }}",
     "{}", 0, "a b|a|  ab  |  a\n  b|hello...|hello world foo"},
    {"{{ l|join(', ') }} {{ p|join('-', attribute='n') }} {{ l|first }} {{ l|last }} {{ "
     "l|reverse|list }} {{ l|sort }} {{ l|unique|list }}",
     "{\"l\": [3, 1, 3], \"p\": [{\"n\": \"a\"}, {\"n\": \"b\"}]}", 0,
     "3, 1, 3 a-b 3 3 [3, 1, 3] [1, 3, 3] [3, 1]"},
    {"{{ p|map(attribute='n')|list }} {{ p|selectattr('ok')|map(attribute='n')|join }} {{ "
     "l|select('odd')|list }} {{ l|reject('odd')|list }} {{ l|map('string')|list }}",
     "{\"l\": [1, 2, 3], \"p\": [{\"n\": \"a\", \"ok\": true}, {\"n\": \"b\", \"ok\": false}]}", 0,
     "['a', 'b'] a [1, 3] [2] ['1', '2', '3']"},
    {"{{ l|sum }} {{ l|min }} {{ l|max }} {{ l|sum(start=10) }} {{ p|sort(attribute='n', "
     "reverse=true)|map(attribute='n')|list }}",
     "{\"l\": [3, 1.5, 2], \"p\": [{\"n\": \"a\"}, {\"n\": \"b\"}]}", 0,
     "6.5 1.5 3 16.5 ['b', 'a']"},
    {"{{ 2.5|round }} {{ 2.675|round(2) }} {{ 1.21|round(1, 'ceil') }} {{ '3.9'|int }} {{ "
     "'x'|int(7) }} {{ '1e3'|float }} {{ -3|abs }}",
     "{}", 0, "2.0 2.67 1.3 3 7 1000.0 3"},
    {"{{ d|tojson }} {{ '<&>\\''|tojson }} {{ [1, 2]|tojson(indent=1) }}",
     "{\"d\": {\"b\": [1, 2.5], \"a\": null, \"\303\251\": \"\360\237\230\200\"}}", 0,
     "{\"a\": null, \"b\": [1, 2.5], \"\\u00e9\": \"\\ud83d\\ude00\"} "
     "\"\\u003c\\u0026\\u003e\\u0027\" [\n 1,\n 2\n]"},
    {"{{ '<b>'|e }} {{ '<b>'|safe }} {{ ('<'|e) + '<' }} {{ '<'|e|e }} {{ "
     "'<'|forceescape|forceescape }}",
     "{}", 0, "&lt;b&gt; <b> &lt;&lt; &lt; &amp;lt;"},
    {"{{ d|dictsort }} {{ d|items|list }} {{ d|length }} {{ 'a b  c'|wordcount }} {{ "
     "'abc'|replace('b', 'B') }} {{ 'x'|string }}",
     "{\"d\": {\"b\": 1, \"A\": 2}}", 0, "[('A', 2), ('b', 1)] [('b', 1), ('A', 2)] 2 3 aBc x"},
    {"{{ [1, 'a']|sort }}", "{}", 1, NULL},
    {"{{ 'abc'|truncate(2) }}", "{}", 1, NULL},
    {"{{ x|upper(1) }}", "{}", 1, NULL},
    {"{{ 5|items|list }}", "{}", 1, NULL},
};

static const jinja_case tests_of_the_subset_cases[] = {
    {"{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ none is none }}{{ 'a' is string }}{{ "
     "1 is number }}{{ true is boolean }}{{ 1.0 is float }}{{ 1 is integer }}",
     "{}", 0, "TrueTrueTrueTrueTrueTrueTrueTrueTrue"},
    {"{{ d is mapping }}{{ l is sequence }}{{ l is iterable }}{{ 'ABC' is upper }}{{ 'abc' is "
     "lower }}{{ 1 is in [1] }}{{ 2 is eq 2 }}{{ 3 is gt 1 }}{{ none is sameas none }}",
     "{\"d\": {}, \"l\": []}", 0, "TrueTrueTrueTrueTrueTrueTrueTrueTrue"},
    {"{{ 'upper' is filter }}{{ 'odd' is test }}{{ 'nope' is filter }}{{ x is not defined }}", "{}",
     0, "TrueTrueFalseTrue"},
};

static const jinja_case syntax_errors_and_unknown_names_raise_cases[] = {
    {"{{ x", "{}", 1, NULL},
    {"{{ }}", "{}", 1, NULL},
    {"{% if x %}", "{}", 1, NULL},
    {"{% endif %}", "{}", 1, NULL},
    {"{% for x %}{% endfor %}", "{}", 1, NULL},
    {"{# open", "{}", 1, NULL},
    {"a{% raw %}b", "{}", 1, NULL},
    {"{{ (1 }}", "{}", 1, NULL},
    {"{{ 01 }}", "{}", 1, NULL},
    {"{{ 'a }}", "{}", 1, NULL},
    {"{{ $ }}", "{}", 1, NULL},
    {"{{ x|nosuch }}", "{}", 1, NULL},
    {"{{ x is nosuch }}", "{}", 1, NULL},
    {"{% break %}", "{}", 1, NULL},
    {"{% for loop in x %}{% endfor %}", "{}", 1, NULL},
    {"{% set x | replace('a', y) %}{% endset %}", "{}", 1, NULL},
    {"{{ '\\x4' }}", "{}", 1, NULL},
    {"hi", "{\"self\": 1}", 1, NULL},
    {"{% if false %}{{ x|nosuch }}{% endif %}ok", "{}", 0, "ok"},
    {"{{ x|nosuch if false }}ok", "{}", 0, "ok"},
    {"{% for x in [] %}{{ x|nosuch }}{% endfor %}", "{}", 1, NULL},
};

static const jinja_case outside_the_subset_is_unsupported_cases[] = {
    {"{% macro m() %}{% endmacro %}", "{}", 2, NULL},
    {"{% include 'x' %}", "{}", 2, NULL},
    {"{% with a = 1 %}{% endwith %}", "{}", 2, NULL},
    {"{% filter upper %}x{% endfilter %}", "{}", 2, NULL},
    {"{{ x|wordwrap }}", "{\"x\": \"a\"}", 2, NULL},
    {"{{ '%s' % 1 }}", "{}", 2, NULL},
    {"{{ self }}", "{}", 2, NULL},
    {"{{ \303\251 }}", "{}", 2, NULL},
    {"{{ 99999999999999999999 }}", "{}", 2, NULL},
    {"{{ '\\N{BULLET}' }}", "{}", 2, NULL},
    {"{{ d.items }}", "{\"d\": {}}", 2, NULL},
    {"{{ l|map('upper') }}", "{\"l\": []}", 2, NULL},
    {"{% for x in l recursive %}{% endfor %}", "{\"l\": []}", 2, NULL},
    {"{{ x[1:2, 3] }}", "{}", 2, NULL},
};

static void test_text_and_values_print_as_python_str(void **state)
{
    (void)state;
    RUN(text_and_values_print_as_python_str_cases);
}

static void test_one_trailing_newline_is_dropped_and_newlines_become_lf(void **state)
{
    (void)state;
    RUN(one_trailing_newline_is_dropped_and_newlines_become_lf_cases);
}

static void test_whitespace_control_comments_and_raw(void **state)
{
    (void)state;
    RUN(whitespace_control_comments_and_raw_cases);
}

static void test_undefined_values_chain_and_print_empty(void **state)
{
    (void)state;
    RUN(undefined_values_chain_and_print_empty_cases);
}

static void test_operators_follow_python(void **state)
{
    (void)state;
    RUN(operators_follow_python_cases);
}

static void test_constant_folding_quirks_are_reproduced(void **state)
{
    (void)state;
    RUN(constant_folding_quirks_are_reproduced_cases);
}

static void test_lookups_as_the_sandbox_makes_them(void **state)
{
    (void)state;
    RUN(lookups_as_the_sandbox_makes_them_cases);
}

static void test_if_for_and_loop_variables(void **state)
{
    (void)state;
    RUN(if_for_and_loop_variables_cases);
}

static void test_set_namespace_and_scoping_follow_jinja2(void **state)
{
    (void)state;
    RUN(set_namespace_and_scoping_follow_jinja2_cases);
}

static void test_filters_of_the_subset(void **state)
{
    (void)state;
    RUN(filters_of_the_subset_cases);
}

static void test_tests_of_the_subset(void **state)
{
    (void)state;
    RUN(tests_of_the_subset_cases);
}

static void test_syntax_errors_and_unknown_names_raise(void **state)
{
    (void)state;
    RUN(syntax_errors_and_unknown_names_raise_cases);
}

static void test_outside_the_subset_is_unsupported(void **state)
{
    (void)state;
    RUN(outside_the_subset_is_unsupported_cases);
}

static void test_output_is_appended_and_left_as_it_was_on_failure(void **state)
{
    (void)state;
    json_t *vars = load("{\"name\": \"Ada\"}");
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_puts(&b, "pre:"), 0);
    assert_int_equal(jinja_render(&b, "{{ name }}", 10, vars), JINJA_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "pre:Ada", 7);
    assert_int_equal(jinja_render(&b, "more {{ 1 / 0 }}", 16, vars), JINJA_RAISES);
    assert_int_equal(jinja_render(&b, "more {{ 1|wordwrap }}", 21, vars), JINJA_UNSUPPORTED);
    assert_int_equal(b.len, 7);
    assert_string_equal(b.data, "pre:Ada");
    buf_free(&b);
    json_decref(vars);
}

static void test_output_and_temporaries_past_the_maximum_are_noroom(void **state)
{
    (void)state;
    static const char *const big[] = {
        "{% for i in range(100) %}0123456789{% endfor %}",
        "{% set s = 'x' * 5000 %}{{ s|length }}",
        "{{ ('ab' * 3000)|length }}",
        "{{ [0] * 100000 }}",
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        buf b;
        buf_init(&b, 512);
        assert_int_equal(buf_puts(&b, "kept"), 0);
        int rc = jinja_render(&b, big[i], strlen(big[i]), NULL);
        if (rc != JINJA_NOROOM)
            fail_msg("'%s': rc %d, wanted no room", big[i], rc);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "kept");
        buf_free(&b);
    }
    /* past what Python can hold at all, it raises (the SDK keeps the text) */
    buf b;
    buf_init(&b, 512);
    const char *t = "{{ 'ab' * 9223372036854775807 }}";
    assert_int_equal(jinja_render(&b, t, strlen(t), NULL), JINJA_RAISES);
    buf_free(&b);
}

static void test_invalid_utf8_and_non_object_vars_are_unsupported(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    json_t *arr = load("[1, 2]");
    assert_int_equal(jinja_render(&b, "a\xff{{ 1 }}", 9, NULL), JINJA_UNSUPPORTED);
    assert_int_equal(jinja_render(&b, "a\xed\xa0\x80", 4, NULL), JINJA_UNSUPPORTED);
    assert_int_equal(jinja_render(&b, "{{ 1 }}", 7, arr), JINJA_UNSUPPORTED);
    assert_int_equal(jinja_render(&b, "{{ x }}!", 8, NULL), JINJA_OK);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], '!');
    json_decref(arr);
    buf_free(&b);
}

static void test_nul_bytes_are_text_like_any_other(void **state)
{
    (void)state;
    json_t *vars = json_pack("{s:s%}", "x", "c\0d", (size_t)3);
    buf b;
    buf_init(&b, 1 << 20);
    static const char t[] = "a\0b{{ x }}{{ x|length }}";
    assert_int_equal(jinja_render(&b, t, sizeof(t) - 1, vars), JINJA_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "a\0bc\0d3", 7);
    buf_free(&b);
    json_decref(vars);
}

/* Deep nesting is unsupported rather than a deep C stack (Python's own
 * compiler gives up somewhere past these); runaway loops stop at the step
 * bound, fast. */
static void test_nesting_and_work_are_bounded(void **state)
{
    (void)state;
    buf t, b;
    buf_init(&t, 1 << 20);
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 200; i++)
        assert_int_equal(buf_puts(&t, "("), 0);
    assert_int_equal(jinja_render(&b, t.data, t.len, NULL), JINJA_OK); /* no tag: text */
    buf_reset(&b);
    buf_reset(&t);
    assert_int_equal(buf_puts(&t, "{{ "), 0);
    for (int i = 0; i < JINJA_MAX_DEPTH + 5; i++)
        assert_int_equal(buf_puts(&t, "("), 0);
    assert_int_equal(buf_puts(&t, "1"), 0);
    for (int i = 0; i < JINJA_MAX_DEPTH + 5; i++)
        assert_int_equal(buf_puts(&t, ")"), 0);
    assert_int_equal(buf_puts(&t, " }}"), 0);
    assert_int_equal(jinja_render(&b, t.data, t.len, NULL), JINJA_UNSUPPORTED);
    buf_reset(&t);
    for (int i = 0; i < JINJA_MAX_NEST + 1; i++)
        assert_int_equal(buf_puts(&t, "{% if true %}"), 0);
    for (int i = 0; i < JINJA_MAX_NEST + 1; i++)
        assert_int_equal(buf_puts(&t, "{% endif %}"), 0);
    assert_int_equal(jinja_render(&b, t.data, t.len, NULL), JINJA_UNSUPPORTED);
    buf_reset(&t);
    assert_int_equal(buf_puts(&t, "{{ x"), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(buf_puts(&t, "|upper|lower"), 0);
    assert_int_equal(buf_puts(&t, " }}"), 0);
    assert_int_equal(jinja_render(&b, t.data, t.len, NULL), JINJA_UNSUPPORTED);
    const char *loops = "{% for a in range(100000) %}{% for b in range(100000) %}"
                        "{% endfor %}{% endfor %}";
    assert_int_equal(jinja_render(&b, loops, strlen(loops), NULL), JINJA_UNSUPPORTED);
    buf_free(&t);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_values_print_as_python_str),
        cmocka_unit_test(test_one_trailing_newline_is_dropped_and_newlines_become_lf),
        cmocka_unit_test(test_whitespace_control_comments_and_raw),
        cmocka_unit_test(test_undefined_values_chain_and_print_empty),
        cmocka_unit_test(test_operators_follow_python),
        cmocka_unit_test(test_constant_folding_quirks_are_reproduced),
        cmocka_unit_test(test_lookups_as_the_sandbox_makes_them),
        cmocka_unit_test(test_if_for_and_loop_variables),
        cmocka_unit_test(test_set_namespace_and_scoping_follow_jinja2),
        cmocka_unit_test(test_filters_of_the_subset),
        cmocka_unit_test(test_tests_of_the_subset),
        cmocka_unit_test(test_syntax_errors_and_unknown_names_raise),
        cmocka_unit_test(test_outside_the_subset_is_unsupported),
        cmocka_unit_test(test_output_is_appended_and_left_as_it_was_on_failure),
        cmocka_unit_test(test_output_and_temporaries_past_the_maximum_are_noroom),
        cmocka_unit_test(test_invalid_utf8_and_non_object_vars_are_unsupported),
        cmocka_unit_test(test_nul_bytes_are_text_like_any_other),
        cmocka_unit_test(test_nesting_and_work_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
