/* test_jsonw.c -- compact JSON with Python's numbers: json.dumps(v,
 * ensure_ascii=False, separators=(",", ":")) of what jansson parsed. */
#include "cm.h"

#include <jansson.h>
#include <string.h>

#include "core/jsonw.h"

static void check(const char *in, const char *want)
{
    json_error_t je;
    json_t *v = json_loads(in, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (v == NULL)
        fail_msg("not JSON: %s", in);
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(jsonw_compact(&b, v), 0);
    if (strcmp(b.data, want) != 0)
        fail_msg("%s\n  got  %s\n  want %s", in, b.data, want);
    buf_free(&b);
    json_decref(v);
}

static void test_reals_are_written_as_python_writes_them(void **state)
{
    (void)state;
    check("0.7", "0.7");
    check("[0.1, 0.2, 0.30000000000000004]", "[0.1,0.2,0.30000000000000004]");
    check("1.0", "1.0");
    check("1e-5", "1e-05");
    check("1e16", "1e+16");
    check("123456789012345678.0", "1.2345678901234568e+17");
    check("-0.0", "-0.0");
    check("2.5E+3", "2500.0");
    check("{\"temperature\": 0.7, \"top_p\": 0.95, \"n\": 3}",
          "{\"temperature\":0.7,\"top_p\":0.95,\"n\":3}");
}

static void test_strings_escape_only_what_json_needs(void **state)
{
    (void)state;
    check("\"a\\\"b\\\\c\\/d\"", "\"a\\\"b\\\\c/d\"");
    check("\"\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\"", "\"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
    check("\"caf\\u00e9 \xe2\x82\xac \\ud83d\\ude00\"",
          "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    check("\"nul\\u0000inside\"", "\"nul\\u0000inside\"");
    check("{\"k\\n\": [true, false, null, -12, \"\"]}", "{\"k\\n\":[true,false,null,-12,\"\"]}");
}

static void test_keys_keep_their_order(void **state)
{
    (void)state;
    check("{\"z\": 1, \"a\": {\"y\": [], \"b\": {}}}", "{\"z\":1,\"a\":{\"y\":[],\"b\":{}}}");
}

static void test_limits_leave_the_buffer_as_it_was(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s}", "key", "a long enough value");
    buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_puts(&b, "x"), 0);
    assert_int_equal(jsonw_compact(&b, v), -1);
    assert_string_equal(b.data, "x");
    assert_int_equal(jsonw_compact(&b, NULL), -1);
    buf_free(&b);
    json_decref(v);
    /* Deeper than JSONW_MAX_DEPTH is refused, not a stack overflow. */
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < JSONW_MAX_DEPTH + 5; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    buf_init(&b, 1 << 20);
    assert_int_equal(jsonw_compact(&b, deep), -1);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    json_decref(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reals_are_written_as_python_writes_them),
        cmocka_unit_test(test_strings_escape_only_what_json_needs),
        cmocka_unit_test(test_keys_keep_their_order),
        cmocka_unit_test(test_limits_leave_the_buffer_as_it_was),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
