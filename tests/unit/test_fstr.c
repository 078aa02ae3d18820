/* test_fstr.c -- the SDK's f-string rule: Formatter().parse, then str.format.
 *
 * Every expected text below is what python3.11 gives for
 *     resolved = {n: vars.get(n) or "" ...}; t.format(**resolved)
 * (the SDK's rule; computed with it, then pasted); rc 1 means Python raises
 * and the SDK keeps the text. render_oracle.py compares many thousands more.
 */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "core/fstr.h"

typedef struct fstr_case {
    const char *text;
    const char *vars; /* a JSON object */
    int rc;
    const char *want;
} fstr_case;

static json_t *load(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, 0, &err);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", json, err.text);
    return v;
}

static void run_table(const fstr_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const fstr_case *c = &cases[i];
        json_t *vars = load(c->vars);
        buf b;
        buf_init(&b, 1 << 20);
        int rc = fstr_render(&b, c->text, strlen(c->text), vars);
        if (rc != c->rc)
            fail_msg("'%s' with %s: rc %d, wanted %d", c->text, c->vars, rc, c->rc);
        if (rc == FSTR_OK &&
            (b.len != strlen(c->want) || (b.len > 0 && memcmp(b.data, c->want, b.len) != 0)))
            fail_msg("'%s' with %s: got '%.*s', wanted '%s'", c->text, c->vars, (int)b.len, b.data,
                     c->want);
        if (rc != FSTR_OK)
            assert_int_equal(b.len, 0);
        buf_free(&b);
        json_decref(vars);
    }
}

static const fstr_case replace_cases[] = {
    {"Hello {name}!", "{\"name\": \"Ada\"}", 0, "Hello Ada!"},
    {"{a}{b}", "{\"a\": 1, \"b\": 2.5}", 0, "12.5"},
    {"{a} and {missing}", "{\"a\": true}", 0, "True and "},
    {"[{a}]", "{\"a\": null}", 0, "[]"},
    {"{a}", "{\"a\": [1, \"x\", null]}", 0, "[1, 'x', None]"},
    {"{a}", "{\"a\": {\"k\": \"v\"}}", 0, "{'k': 'v'}"},
    {"{a:>6}|{b:.2f}|{c:,}", "{\"a\": \"\303\251\", \"b\": 3.14159, \"c\": 1234567}", 0,
     "     \303\251|3.14|1,234,567"},
    {"{ name }", "{\" name \": \"spaced\", \"name\": \"plain\"}", 0, "spaced"},
    {"{\303\251}{\360\237\230\200}", "{\"\303\251\": \"e\", \"\360\237\230\200\": \"smile\"}", 0,
     "esmile"},
    {"{a:d}", "{}", 1, NULL},
    {"{a:d}", "{\"a\": null}", 1, NULL},
    {"", "{}", 0, ""},
    {"no fields", "{\"x\": 1}", 0, "no fields"},
};

static void test_fields_are_replaced_and_missing_or_null_become_empty(void **state)
{
    (void)state;
    run_table(replace_cases, sizeof(replace_cases) / sizeof(replace_cases[0]));
}

static const fstr_case brace_cases[] = {
    {"{{name}}", "{\"name\": \"x\"}", 0, "{name}"},
    {"{{{name}}}", "{\"name\": \"x\"}", 0, "{x}"},
    {"a}}b{{c", "{}", 0, "a}b{c"},
    {"{", "{}", 1, NULL},
    {"}", "{}", 1, NULL},
    {"a{b", "{\"b\": 1}", 1, NULL},
    {"x}y", "{}", 1, NULL},
    {"{a}}", "{\"a\": 1}", 1, NULL},
    {"{a{b}", "{\"a\": 1}", 1, NULL},
    {"{\"key\": \"value\"}", "{}", 1, NULL},
    {"{ \"key\": 1 }", "{}", 1, NULL},
    {"{a!}", "{\"a\": 1}", 1, NULL},
    {"{a!r", "{\"a\": 1}", 1, NULL},
    {"{a!rx}", "{\"a\": 1}", 1, NULL},
    {"{a:{}", "{\"a\": 1}", 1, NULL},
};

static void test_doubled_braces_are_literal_and_lone_braces_raise(void **state)
{
    (void)state;
    run_table(brace_cases, sizeof(brace_cases) / sizeof(brace_cases[0]));
}

static const fstr_case name_cases[] = {
    {"{a.b}", "{\"a\": 1, \"a.b\": 2}", 1, NULL},
    {"{a[0]}", "{\"a\": [5]}", 1, NULL},
    {"{a}{a[0]}", "{\"a\": [5]}", 0, "[5]5"},
    {"{}", "{}", 1, NULL},
    {"{0}", "{\"0\": \"x\"}", 1, NULL},
    {"{\331\241}", "{\"\331\241\": \"x\"}", 1, NULL},
    {"{0a}", "{\"0a\": \"x\"}", 0, "x"},
    {"{a}{a[1]}", "{\"a\": \"xyz\"}", 0, "xyzy"},
    {"{a}{a[9]}", "{\"a\": \"xyz\"}", 1, NULL},
    {"{a}{a[k]}", "{\"a\": {\"k\": \"v\"}}", 0, "{'k': 'v'}v"},
    {"{a}{a[0]}", "{\"a\": {\"0\": \"v\"}}", 1, NULL},
    {"{a}{a[-1]}", "{\"a\": [1]}", 1, NULL},
    {"{a}{a[\331\241]}", "{\"a\": [1, 2]}", 0, "[1, 2]2"},
    {"{a}{a[0][1]}", "{\"a\": [[1, 2]]}", 0, "[[1, 2]]2"},
    {"{a}{a[0]x}", "{\"a\": [1]}", 1, NULL},
    {"{a}{a[]}", "{\"a\": [1]}", 1, NULL},
    {"{a}{a.}", "{\"a\": 1}", 1, NULL},
    {"{a}{a[:]}", "{\"a\": {\":\": \"colon\"}}", 0, "{':': 'colon'}colon"},
    {"{a}{a[0]}", "{\"a\": \"\"}", 1, NULL},
    {"{a}{a[0]}", "{\"a\": 5}", 1, NULL},
    {"{a}{a[0]}", "{\"a\": [null]}", 0, "[None]None"},
    {"{a}{a[0]:x}", "{\"a\": [null]}", 1, NULL},
    {"{a}{a.real}{a.imag}{a.numerator}{a.denominator}", "{\"a\": 7}", 0, "77071"},
    {"{a}{a.real}{a.imag}", "{\"a\": 2.5}", 0, "2.52.50.0"},
    {"{a}{a.real!r}", "{\"a\": true}", 0, "True1"},
};

static void test_first_name_part_must_be_a_top_level_field_then_index_and_attr(void **state)
{
    (void)state;
    run_table(name_cases, sizeof(name_cases) / sizeof(name_cases[0]));
}

static const fstr_case conv_cases[] = {
    {"{a!r}", "{}", 0, "''"},
    {"{a!r}", "{\"a\": \"it's\"}", 0, "\"it's\""},
    {"{a!s:>5}", "{\"a\": null}", 0, "     "},
    {"{a!a}", "{\"a\": \"\303\251\342\200\250x\"}", 0, "'\\xe9\\u2028x'"},
    {"{a!r}", "{\"a\": [1, \"b\"]}", 0, "[1, 'b']"},
    {"{a!r:^12}", "{\"a\": 2.5}", 0, "    2.5     "},
    {"{a!z}", "{\"a\": 1}", 1, NULL},
    {"{a!\303\251}", "{\"a\": 1}", 1, NULL},
    {"{a!r:d}", "{\"a\": 1}", 1, NULL},
};

static void test_conversions_r_s_a_then_format(void **state)
{
    (void)state;
    run_table(conv_cases, sizeof(conv_cases) / sizeof(conv_cases[0]));
}

static const fstr_case nested_cases[] = {
    {"{w}{a:{w}}", "{\"a\": 5, \"w\": 10}", 0, "10         5"},
    {"{w}{a:{w}}", "{\"a\": 5}", 0, "5"},
    {"{a:{w}}", "{\"a\": 5, \"w\": 10}", 1, NULL},
    {"{w}{a:{w:{w}}}", "{\"a\": 5, \"w\": 10}", 1, NULL},
    {"{w}{a:{w!r}}", "{\"a\": \"x\", \"w\": 10}", 0, "10x         "},
    {"{a:{{}}}", "{\"a\": 5}", 1, NULL},
    {"{f}{p}{a:{f}>{p}.2f}", "{\"a\": 3.14159, \"f\": \"*\", \"p\": 9}", 0, "*9*****3.14"},
    {"{p}{a:.{p}}", "{\"a\": \"abcdef\", \"p\": 3}", 0, "3abc"},
};

static void test_spec_fields_come_from_top_level_names_one_level_deep(void **state)
{
    (void)state;
    run_table(nested_cases, sizeof(nested_cases) / sizeof(nested_cases[0]));
}

static const fstr_case norescan_cases[] = {
    {"{a}", "{\"a\": \"{b}\", \"b\": \"x\"}", 0, "{b}"},
    {"{a}{b}", "{\"a\": \"{\", \"b\": \"}\"}", 0, "{}"},
};

static void test_values_put_in_are_not_scanned_again(void **state)
{
    (void)state;
    run_table(norescan_cases, sizeof(norescan_cases) / sizeof(norescan_cases[0]));
}

static void test_unsupported_corners_unless_a_later_field_raises(void **state)
{
    (void)state;
    static const fstr_case cases[] = {
        /* a method's repr holds an address; an unknown attribute raises */
        {"{a}{a.upper}", "{\"a\": \"s\"}", FSTR_UNSUPPORTED, NULL},
        {"{a}{a.x}", "{\"a\": 1.5}", FSTR_UNSUPPORTED, NULL},
        {"{a:n}", "{\"a\": 1234}", FSTR_UNSUPPORTED, NULL},
        {"{a:c}", "{\"a\": 55296}", FSTR_UNSUPPORTED, NULL},
        /* Python raises at the later field whatever the earlier one gives */
        {"{a}{a.upper}{}", "{\"a\": \"s\"}", FSTR_RAISES, NULL},
        {"{a:n}{b:d}", "{\"a\": 5, \"b\": \"x\"}", FSTR_RAISES, NULL},
        /* but not when the earlier field is the one that stops it */
        {"{a.upper}{}", "{\"a\": \"s\"}", FSTR_RAISES, NULL},
    };
    run_table(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_nul_bytes_are_text_like_any_other(void **state)
{
    (void)state;
    json_t *vars = json_object();
    json_object_set_new(vars, "a", json_stringn("x\0y", 3));
    buf b;
    buf_init(&b, 64);
    assert_int_equal(fstr_render(&b, "[\0{a}]{a!r}", 11, vars), FSTR_OK);
    assert_int_equal(b.len, 14);
    assert_memory_equal(b.data, "[\0x\0y]'x\\x00y'", 14);
    buf_reset(&b);
    /* a field name with a NUL is looked up with it, and is missing here */
    assert_int_equal(fstr_render(&b, "<{a\0}>", 6, vars), FSTR_OK);
    assert_int_equal(b.len, 2);
    buf_free(&b);
    json_decref(vars);
}

static void test_invalid_utf8_and_non_object_vars_are_unsupported(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 64);
    json_t *arr = json_array();
    assert_int_equal(fstr_render(&b, "a\377{b}", 5, NULL), FSTR_UNSUPPORTED);
    assert_int_equal(fstr_render(&b, "\355\240\200", 3, NULL), FSTR_UNSUPPORTED);
    assert_int_equal(fstr_render(&b, "{a}", 3, arr), FSTR_UNSUPPORTED);
    assert_int_equal(fstr_render(&b, "{a}", 3, NULL), FSTR_OK);
    assert_int_equal(b.len, 0);
    json_decref(arr);
    buf_free(&b);
}

static void test_output_past_maximum_is_noroom_and_leaves_the_buffer(void **state)
{
    (void)state;
    json_t *vars = load("{\"a\": \"0123456789\"}");
    buf b;
    buf_init(&b, 24);
    assert_int_equal(buf_puts(&b, "kept"), 0);
    assert_int_equal(fstr_render(&b, "{a}{a}", 6, vars), FSTR_OK);
    assert_int_equal(b.len, 24);
    b.len = 4;
    assert_int_equal(fstr_render(&b, "{a}{a}!", 7, vars), FSTR_NOROOM);
    assert_int_equal(fstr_render(&b, "{a:>100}", 8, vars), FSTR_NOROOM);
    /* out of room first, then a field that surely raises: Python raises */
    assert_int_equal(fstr_render(&b, "{a:>100}{0}", 11, vars), FSTR_RAISES);
    assert_int_equal(fstr_render(&b, "{a}{a}!{0}", 10, vars), FSTR_RAISES);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "kept", 4);
    buf_free(&b);
    json_decref(vars);
}

static void test_many_fields_stay_fast(void **state)
{
    (void)state;
    /* 100000 fields: the names are sorted once, then found by bisection */
    size_t n = 100000;
    char *t = malloc(n * 4 + 1);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++)
        memcpy(t + 4 * i, i % 2 ? "{a}-" : "{b}-", 4);
    json_t *vars = load("{\"a\": 1, \"b\": 2}");
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(fstr_render(&b, t, n * 4, vars), FSTR_OK);
    assert_int_equal(b.len, n * 2);
    assert_memory_equal(b.data, "2-1-2-", 6);
    buf_free(&b);
    json_decref(vars);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_are_replaced_and_missing_or_null_become_empty),
        cmocka_unit_test(test_doubled_braces_are_literal_and_lone_braces_raise),
        cmocka_unit_test(test_first_name_part_must_be_a_top_level_field_then_index_and_attr),
        cmocka_unit_test(test_conversions_r_s_a_then_format),
        cmocka_unit_test(test_spec_fields_come_from_top_level_names_one_level_deep),
        cmocka_unit_test(test_values_put_in_are_not_scanned_again),
        cmocka_unit_test(test_unsupported_corners_unless_a_later_field_raises),
        cmocka_unit_test(test_nul_bytes_are_text_like_any_other),
        cmocka_unit_test(test_invalid_utf8_and_non_object_vars_are_unsupported),
        cmocka_unit_test(test_output_past_maximum_is_noroom_and_leaves_the_buffer),
        cmocka_unit_test(test_many_fields_stay_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
