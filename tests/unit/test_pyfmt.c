/* test_pyfmt.c -- Python's str(), repr(), ascii() and format() of JSON values.
 *
 * Every expected text below is what python3.11 gives (computed with it, then
 * pasted); rc 1 means Python raises. The oracle (render_oracle.py) compares
 * many thousands more generated cases.
 */
#include "cm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pyfmt.h"

/* A literal with its length, so that embedded NULs count. */
typedef struct lit {
    const char *s;
    size_t n;
} lit;
#define L(x)                                                                                       \
    {                                                                                              \
        (x), sizeof(x) - 1                                                                         \
    }
#define S(x) (x), sizeof(x) - 1

typedef struct fmt_case {
    const char *json; /* the value */
    const char *spec;
    size_t speclen;
    int rc;           /* PYFMT_OK or PYFMT_RAISES */
    const char *want; /* for PYFMT_OK */
} fmt_case;

static json_t *load(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", json, err.text);
    return v;
}

static void expect_text(const buf *b, const char *want, size_t wantlen, const char *what)
{
    if (b->len != wantlen || (wantlen > 0 && memcmp(b->data, want, wantlen) != 0))
        fail_msg("%s: got \"%.*s\" (%zu bytes), wanted \"%s\"", what, (int)b->len,
                 b->data != NULL ? b->data : "", b->len, want);
}

static void run_format_table(const fmt_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const fmt_case *c = &cases[i];
        json_t *v = load(c->json);
        buf b;
        buf_init(&b, 1 << 20);
        int rc = pyfmt_format(&b, v, c->spec, c->speclen);
        if (rc != c->rc)
            fail_msg("format(%s, '%s'): rc %d, wanted %d", c->json, c->spec, rc, c->rc);
        if (rc == PYFMT_OK)
            expect_text(&b, c->want, strlen(c->want), c->json);
        else
            assert_int_equal(b.len, 0);
        buf_free(&b);
        json_decref(v);
    }
}

/* ---- format() ------------------------------------------------------------ */

static const fmt_case str_cases[] = {
    {"\"ab\"", S("05"), 0, "ab000"},
    {"\"ab\"", S("<05"), 0, "ab000"},
    {"\"ab\"", S("x<05"), 0, "abxxx"},
    {"\"ab\"", S("^05"), 0, "0ab00"},
    {"\"ab\"", S("^5"), 0, " ab  "},
    {"\"abc\"", S("^6"), 0, " abc  "},
    {"\"ab\"", S(">4"), 0, "  ab"},
    {"\"ab\"", S("*^7"), 0, "**ab***"},
    {"\"\\u00e9\\u4e2d\"", S("^6"), 0, "  \303\251\344\270\255  "},
    {"\"\\ud83d\\ude00x\"", S("_>4"), 0, "__\360\237\230\200x"},
    {"\"abc\"", S(".2"), 0, "ab"},
    {"\"abc\"", S("5.1s"), 0, "a    "},
    {"\"a\\ud83d\\ude00c\"", S(".2"), 0, "a\360\237\230\200"},
    {"\"\"", S("x^3"), 0, "xxx"},
    {"\"ab\"", S("s"), 0, "ab"},
    {"\"a\"", S("\303\251^5"), 0, "\303\251\303\251a\303\251\303\251"},
    {"\"ab\"", S("=5"), 1, NULL},
    {"\"ab\"", S("+"), 1, NULL},
    {"\"ab\"", S("#"), 1, NULL},
    {"\"ab\"", S("z"), 1, NULL},
    {"\"ab\"", S(","), 1, NULL},
    {"\"ab\"", S("_"), 1, NULL},
    {"\"ab\"", S("d"), 1, NULL},
    {"\"ab\"", S("c"), 1, NULL},
    {"\"ab\"", S("5d5"), 1, NULL},
    {"\"ab\"", S("."), 1, NULL},
    {"\"ab\"", S("\000"), 1, NULL},
    {"\"ab\"", S("\331\243"), 0, "ab "},
};

static void test_format_str_aligns_truncates_and_refuses_number_flags(void **state)
{
    (void)state;
    run_format_table(str_cases, sizeof(str_cases) / sizeof(str_cases[0]));
}

static const fmt_case int_cases[] = {
    {"1234", S("09,"), 0, "0,001,234"},
    {"1234", S("08,"), 0, "0,001,234"},
    {"1234", S("010,"), 0, "00,001,234"},
    {"1234", S("0=8,"), 0, "0,001,234"},
    {"1234", S("x=10,"), 0, "xxxxx1,234"},
    {"1234", S("0>10,"), 0, "000001,234"},
    {"1234", S("0<10,"), 0, "1,23400000"},
    {"-1234", S("09,"), 0, "-0,001,234"},
    {"123", S("05,"), 0, "0,123"},
    {"1234567", S(","), 0, "1,234,567"},
    {"1234567", S("_"), 0, "1_234_567"},
    {"12345678", S("012_x"), 0, "00_00bc_614e"},
    {"12345678", S("#012_x"), 0, "0x0_00bc_614e"},
    {"255", S("#b"), 0, "0b11111111"},
    {"255", S("#o"), 0, "0o377"},
    {"-255", S("#x"), 0, "-0xff"},
    {"255", S("#X"), 0, "0XFF"},
    {"5", S("#010x"), 0, "0x00000005"},
    {"5", S("+#010x"), 0, "+0x0000005"},
    {"5", S("=#10x"), 0, "0x       5"},
    {"-5", S("=+8"), 0, "-      5"},
    {"5", S(" "), 0, " 5"},
    {"5", S("+"), 0, "+5"},
    {"-5", S("-"), 0, "-5"},
    {"65", S("5c"), 0, "    A"},
    {"65", S("<5c"), 0, "A    "},
    {"65", S("05c"), 0, "0000A"},
    {"233", S("c"), 0, "\303\251"},
    {"128512", S("c"), 0, "\360\237\230\200"},
    {"1114111", S("c"), 0, "\364\217\277\277"},
    {"-9223372036854775808", S(""), 0, "-9223372036854775808"},
    {"-9223372036854775808", S("x"), 0, "-8000000000000000"},
    {"9223372036854775807", S(",d"), 0, "9,223,372,036,854,775,807"},
    {"5", S("\331\241\331\240"), 0, "         5"},
    {"5", S("\331\2405"), 0, "    5"},
    {"5", S("000005"), 0, "00005"},
    {"5", S("e"), 0, "5.000000e+00"},
    {"5", S(".2f"), 0, "5.00"},
    {"5", S("%"), 0, "500.000000%"},
    {"9223372036854775807", S("e"), 0, "9.223372e+18"},
    {"9223372036854775807", S("f"), 0, "9223372036854775808.000000"},
    {"-3", S("z.1f"), 0, "-3.0"},
    {"5", S(".2"), 1, NULL},
    {"5", S("z"), 1, NULL},
    {"5", S(",b"), 1, NULL},
    {"5", S("_b"), 0, "101"},
    {"5", S(",_"), 1, NULL},
    {"5", S("_,"), 1, NULL},
    {"5", S(",,"), 1, NULL},
    {"5", S("__"), 1, NULL},
    {"5", S("+c"), 1, NULL},
    {"5", S("#c"), 1, NULL},
    {"5", S(",c"), 1, NULL},
    {"-1", S("c"), 1, NULL},
    {"1114112", S("c"), 1, NULL},
    {"5", S("s"), 1, NULL},
    {"5", S("q"), 1, NULL},
    {"5", S("dd"), 1, NULL},
    {"5", S("99999999999999999999"), 1, NULL},
};

static void test_format_int_groups_pads_prefixes_and_refuses_precision(void **state)
{
    (void)state;
    run_format_table(int_cases, sizeof(int_cases) / sizeof(int_cases[0]));
}

static const fmt_case float_cases[] = {
    {"1e+16", S(""), 0, "1e+16"},
    {"1e+16", S("#"), 0, "1.e+16"},
    {"1.0", S("#"), 0, "1.0"},
    {"100.0", S("#"), 0, "100.0"},
    {"1e-05", S("#"), 0, "1.e-05"},
    {"1.0", S("#.0f"), 0, "1."},
    {"1.0", S("#.0e"), 0, "1.e+00"},
    {"1.0", S("#g"), 0, "1.00000"},
    {"100000.0", S("#g"), 0, "100000."},
    {"1000000.0", S("#g"), 0, "1.00000e+06"},
    {"0.0001", S("#g"), 0, "0.000100000"},
    {"1.0", S(".3"), 0, "1.0"},
    {"1e+20", S(".3"), 0, "1e+20"},
    {"123.0", S(".2"), 0, "1.2e+02"},
    {"1.5", S(".0"), 0, "2e+00"},
    {"12.0", S(".3"), 0, "12.0"},
    {"10.0", S(".2"), 0, "1e+01"},
    {"0.0", S(".0"), 0, "0e+00"},
    {"0.0", S("g"), 0, "0"},
    {"0.0", S("#.0"), 0, "0.e+00"},
    {"-0.0", S(""), 0, "-0.0"},
    {"-0.0", S("z"), 0, "0.0"},
    {"-0.0001", S("z.2f"), 0, "0.00"},
    {"-0.0001", S("z.2"), 0, "-0.0001"},
    {"-0.0", S("z.0e"), 0, "0e+00"},
    {"-0.0", S("+"), 0, "-0.0"},
    {"0.5", S(".0f"), 0, "0"},
    {"1.5", S(".0f"), 0, "2"},
    {"2.5", S(".0f"), 0, "2"},
    {"0.125", S(".2f"), 0, "0.12"},
    {"9.995", S(".2f"), 0, "9.99"},
    {"1.0", S("%"), 0, "100.000000%"},
    {"0.125", S(".1%"), 0, "12.5%"},
    {"1234567.0", S(","), 0, "1,234,567.0"},
    {"1234567.0", S(",.2f"), 0, "1,234,567.00"},
    {"1234.5", S("012,"), 0, "00,001,234.5"},
    {"1234.5", S("0=15,e"), 0, "0,001.234500e+03"},
    {"1.5e+16", S(","), 0, "1.5e+16"},
    {"1234567.0", S("_.10"), 0, "1_234_567.0"},
    {"1.0", S("=10"), 0, "       1.0"},
    {"-1.0", S("010"), 0, "-0000001.0"},
    {"-1.0", S("x=10"), 0, "-xxxxxx1.0"},
    {"1.5", S("E"), 0, "1.500000E+00"},
    {"1e-300", S("G"), 0, "1E-300"},
    {"1e+300", S(".3E"), 0, "1.000E+300"},
    {"2.5e-07", S(""), 0, "2.5e-07"},
    {"123456789.123", S("g"), 0, "1.23457e+08"},
    {"5e-324", S(""), 0, "5e-324"},
    {"5e-324", S(".20e"), 0, "4.94065645841246544177e-324"},
    {"1e+20", S(",.0f"), 0, "100,000,000,000,000,000,000"},
    {"1e+22", S("f"), 0, "10000000000000000000000.000000"},
    {"0.1", S(".30f"), 0, "0.100000000000000005551115123126"},
    {"1.0", S("d"), 1, NULL},
    {"1.0", S("c"), 1, NULL},
    {"1.0", S("s"), 1, NULL},
    {"1.0", S("."), 1, NULL},
    {"1.0", S(".2147483648"), 1, NULL},
    {"1.0", S("#z"), 1, NULL},
};

static void test_format_float_rounds_and_lays_out_like_python(void **state)
{
    (void)state;
    run_format_table(float_cases, sizeof(float_cases) / sizeof(float_cases[0]));
}

static const fmt_case bool_cases[] = {
    {"true", S(""), 0, "True"},         {"false", S(""), 0, "False"}, {"true", S("d"), 0, "1"},
    {"true", S(">5"), 0, "    1"},      {"false", S("#x"), 0, "0x0"}, {"true", S(".2f"), 0, "1.00"},
    {"true", S("%"), 0, "100.000000%"}, {"true", S("s"), 1, NULL},    {"true", S("c"), 0, "\001"},
};

static void test_format_bool_is_str_for_empty_spec_and_int_otherwise(void **state)
{
    (void)state;
    run_format_table(bool_cases, sizeof(bool_cases) / sizeof(bool_cases[0]));
}

static const fmt_case obj_cases[] = {
    {"null", S(""), 0, "None"},
    {"null", S("s"), 1, NULL},
    {"[1, \"a\", null]", S(""), 0, "[1, 'a', None]"},
    {"[1]", S("5"), 1, NULL},
    {"{\"k\": [true, 1.5]}", S(""), 0, "{'k': [True, 1.5]}"},
    {"{}", S(">2"), 1, NULL},
};

static void test_format_none_list_dict_take_only_the_empty_spec(void **state)
{
    (void)state;
    run_format_table(obj_cases, sizeof(obj_cases) / sizeof(obj_cases[0]));
}

static void test_format_n_type_and_surrogate_char_are_unsupported(void **state)
{
    (void)state;
    static const fmt_case cases[] = {
        {"5", S("n"), PYFMT_UNSUPPORTED, NULL},
        {"5", S("+10n"), PYFMT_UNSUPPORTED, NULL},
        {"2.5", S("n"), PYFMT_UNSUPPORTED, NULL},
        {"2.5", S("#.3n"), PYFMT_UNSUPPORTED, NULL},
        {"true", S("n"), PYFMT_UNSUPPORTED, NULL},
        {"55296", S("c"), PYFMT_UNSUPPORTED, NULL},
        {"57343", S(">3c"), PYFMT_UNSUPPORTED, NULL},
        /* the errors Python finds first still raise */
        {"5", S(",n"), PYFMT_RAISES, NULL},
        {"5", S(".2n"), PYFMT_RAISES, NULL},
        {"5", S("zn"), PYFMT_RAISES, NULL},
        {"2.5", S(".2147483648n"), PYFMT_RAISES, NULL},
        {"\"s\"", S("n"), PYFMT_RAISES, NULL},
        {"null", S("n"), PYFMT_RAISES, NULL},
    };
    run_format_table(cases, sizeof(cases) / sizeof(cases[0]));
}

typedef struct dbl_case {
    double d;
    const char *spec;
    size_t speclen;
    int rc;
    const char *want;
} dbl_case;

static void test_format_of_inf_and_nan(void **state)
{
    (void)state;
    static const dbl_case cases[] = {
        {INFINITY, S("010"), 0, "0000000inf"},
        {-INFINITY, S("010"), 0, "-000000inf"},
        {INFINITY, S("+010"), 0, "+000000inf"},
        {NAN, S("x^9"), 0, "xxxnanxxx"},
        {INFINITY, S("F"), 0, "INF"},
        {NAN, S("E"), 0, "NAN"},
        {INFINITY, S(".3G"), 0, "INF"},
        {INFINITY, S("%"), 0, "inf%"},
        {INFINITY, S("010,"), 0, "0000000inf"},
        {-NAN, S(""), 0, "nan"},
        {-NAN, S("+"), 0, "+nan"},
        {INFINITY, S("z"), 0, "inf"},
        {-INFINITY, S("z"), 0, "-inf"},
        {INFINITY, S("#.0f"), 0, "inf"},
        {INFINITY, S("d"), 1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf b;
        buf_init(&b, 1024);
        int rc = pyfmt_format_float(&b, cases[i].d, cases[i].spec, cases[i].speclen);
        assert_int_equal(rc, cases[i].rc);
        if (rc == PYFMT_OK)
            expect_text(&b, cases[i].want, strlen(cases[i].want), cases[i].spec);
        buf_free(&b);
    }
}

/* ---- str, repr, ascii ---------------------------------------------------- */

typedef struct text_case {
    const char *json;
    lit str, repr, ascii;
} text_case;

static const text_case text_cases[] = {
    {"\"abc\"", L("abc"), L("'abc'"), L("'abc'")},
    {"\"it's\"", L("it's"), L("\"it's\""), L("\"it's\"")},
    {"\"say \\\"hi\\\"\"", L("say \"hi\""), L("'say \"hi\"'"), L("'say \"hi\"'")},
    {"\"both ' and \\\"\"", L("both ' and \""), L("'both \\' and \"'"), L("'both \\' and \"'")},
    {"\"back\\\\slash\"", L("back\\slash"), L("'back\\\\slash'"), L("'back\\\\slash'")},
    {"\"\\n\\t\\r\\u0000\\u001f\\u007f\"", L("\012\011\015\000\037\177"),
     L("'\\n\\t\\r\\x00\\x1f\\x7f'"), L("'\\n\\t\\r\\x00\\x1f\\x7f'")},
    {"\"\\u0080\\u00a0\\u00ad\\u00ff\"", L("\302\200\302\240\302\255\303\277"),
     L("'\\x80\\xa0\\xad\303\277'"), L("'\\x80\\xa0\\xad\\xff'")},
    {"\"\\u2028\\ufeff\\u200b\\ue000\"", L("\342\200\250\357\273\277\342\200\213\356\200\200"),
     L("'\\u2028\\ufeff\\u200b\\ue000'"), L("'\\u2028\\ufeff\\u200b\\ue000'")},
    {"\"\\udb40\\udc01\\udbff\\udfff\"", L("\363\240\200\201\364\217\277\277"),
     L("'\\U000e0001\\U0010ffff'"), L("'\\U000e0001\\U0010ffff'")},
    {"\"\\u00e9\\u4e2d\\ud83d\\ude00\\u0301\"", L("\303\251\344\270\255\360\237\230\200\314\201"),
     L("'\303\251\344\270\255\360\237\230\200\314\201'"), L("'\\xe9\\u4e2d\\U0001f600\\u0301'")},
    {"\"\"", L(""), L("''"), L("''")},
    {"0", L("0"), L("0"), L("0")},
    {"-42", L("-42"), L("-42"), L("-42")},
    {"9223372036854775807", L("9223372036854775807"), L("9223372036854775807"),
     L("9223372036854775807")},
    {"1.0", L("1.0"), L("1.0"), L("1.0")},
    {"-0.0", L("-0.0"), L("-0.0"), L("-0.0")},
    {"1e+16", L("1e+16"), L("1e+16"), L("1e+16")},
    {"1e-05", L("1e-05"), L("1e-05"), L("1e-05")},
    {"0.1", L("0.1"), L("0.1"), L("0.1")},
    {"1.2345678901234568e+17", L("1.2345678901234568e+17"), L("1.2345678901234568e+17"),
     L("1.2345678901234568e+17")},
    {"true", L("True"), L("True"), L("True")},
    {"false", L("False"), L("False"), L("False")},
    {"null", L("None"), L("None"), L("None")},
    {"[]", L("[]"), L("[]"), L("[]")},
    {"{}", L("{}"), L("{}"), L("{}")},
    {"[1, \"a\", null, [true]]", L("[1, 'a', None, [True]]"), L("[1, 'a', None, [True]]"),
     L("[1, 'a', None, [True]]")},
    {"{\"k\": \"v\", \"it's\": [1.5, {}]}", L("{'k': 'v', \"it's\": [1.5, {}]}"),
     L("{'k': 'v', \"it's\": [1.5, {}]}"), L("{'k': 'v', \"it's\": [1.5, {}]}")},
    {"{\"\\u00e9\\n\": \"\\ud83d\\ude00\"}", L("{'\303\251\\n': '\360\237\230\200'}"),
     L("{'\303\251\\n': '\360\237\230\200'}"), L("{'\\xe9\\n': '\\U0001f600'}")},
};

static void test_str_repr_ascii_match_python(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
        const text_case *c = &text_cases[i];
        json_t *v = load(c->json);
        buf b;
        buf_init(&b, 4096);
        assert_int_equal(pyfmt_str(&b, v), PYFMT_OK);
        expect_text(&b, c->str.s, c->str.n, c->json);
        buf_reset(&b);
        assert_int_equal(pyfmt_repr(&b, v), PYFMT_OK);
        expect_text(&b, c->repr.s, c->repr.n, c->json);
        buf_reset(&b);
        assert_int_equal(pyfmt_ascii(&b, v), PYFMT_OK);
        expect_text(&b, c->ascii.s, c->ascii.n, c->json);
        buf_free(&b);
        json_decref(v);
    }
}

static void test_float_repr_is_shortest_and_spells_inf_nan_like_python(void **state)
{
    (void)state;
    static const struct {
        double d;
        const char *want;
    } cases[] = {
        {5e-324, "5e-324"},
        {9007199254740992.0, "9007199254740992.0"},
        {1e+22, "1e+22"},
        {1e+23, "1e+23"},
        {0.30000000000000004, "0.30000000000000004"},
        {9999999999999998.0, "9999999999999998.0"},
        {-0.0, "-0.0"},
        {INFINITY, "inf"},
        {-INFINITY, "-inf"},
        {NAN, "nan"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf b;
        buf_init(&b, 64);
        assert_int_equal(pyfmt_float_repr(&b, cases[i].d), PYFMT_OK);
        expect_text(&b, cases[i].want, strlen(cases[i].want), cases[i].want);
        buf_free(&b);
    }
}

static void test_repr_text_takes_bytes_with_nul(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 64);
    assert_int_equal(pyfmt_repr_text(&b, "a\0b", 3, 0), PYFMT_OK);
    expect_text(&b, "'a\\x00b'", 8, "repr");
    buf_free(&b);
}

/* Builds [[[...1...]]] (depth levels) as JSON text. */
static json_t *nested(int depth)
{
    json_t *v = json_integer(1);
    for (int i = 0; i < depth; i++) {
        json_t *a = json_array();
        json_array_append_new(a, v);
        v = a;
    }
    return v;
}

static void test_lists_nested_past_max_depth_are_unsupported(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    json_t *ok = nested(PYFMT_MAX_DEPTH), *deep = nested(PYFMT_MAX_DEPTH + 1);
    assert_int_equal(pyfmt_repr(&b, ok), PYFMT_OK);
    assert_int_equal(b.len, 2 * PYFMT_MAX_DEPTH + 1);
    buf_reset(&b);
    assert_int_equal(pyfmt_repr(&b, deep), PYFMT_UNSUPPORTED);
    assert_int_equal(pyfmt_format(&b, deep, "", 0), PYFMT_UNSUPPORTED);
    assert_int_equal(b.len, 0);
    json_decref(ok);
    json_decref(deep);
    buf_free(&b);
}

/* ---- bounds and failures ------------------------------------------------- */

static void test_failure_leaves_the_buffer_as_it_was(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 64);
    assert_int_equal(buf_puts(&b, "keep"), 0);
    assert_int_equal(pyfmt_format_int(&b, 5, S("q")), PYFMT_RAISES);
    assert_int_equal(pyfmt_format_int(&b, 5, S(">100")), PYFMT_NOROOM);
    assert_int_equal(pyfmt_format_text(&b, "x", 1, S("^99")), PYFMT_NOROOM);
    assert_int_equal(pyfmt_format_float(&b, 1.0, S(".100f")), PYFMT_NOROOM);
    expect_text(&b, "keep", 4, "after failures");
    buf_free(&b);
}

static void test_huge_widths_and_precisions_fail_fast_with_noroom(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    /* Python would try to allocate these; a MemoryError there, no room here */
    assert_int_equal(pyfmt_format_int(&b, 5, S("9223372036854775807")), PYFMT_NOROOM);
    assert_int_equal(pyfmt_format_float(&b, 1.0, S(".2147483647f")), PYFMT_NOROOM);
    assert_int_equal(pyfmt_format_float(&b, 1.0, S("#.2147483647g")), PYFMT_NOROOM);
    /* past 2**63-1 Python refuses the number itself */
    assert_int_equal(pyfmt_format_int(&b, 5, S("9223372036854775808")), PYFMT_RAISES);
    /* without '#', 'g' strips the zeros: no room is needed for them */
    assert_int_equal(pyfmt_format_float(&b, 1.0, S(".2147483647g")), PYFMT_OK);
    expect_text(&b, "1", 1, "g");
    buf_free(&b);
}

/* ---- UTF-8 helpers ------------------------------------------------------- */

static void test_utf8_validation_refuses_overlongs_surrogates_and_truncation(void **state)
{
    (void)state;
    static const lit good[] = {
        L(""), L("abc"), L("\303\251"), L("\360\237\230\200"), L("a\000b"), L("\364\217\277\277")};
    static const lit bad[] = {L("\300\200"),         L("\355\240\200"), L("\360\237\230"),
                              L("\364\220\200\200"), L("\200"),         L("\377")};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(pyfmt_utf8_valid(good[i].s, good[i].n));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(pyfmt_utf8_valid(bad[i].s, bad[i].n));
    size_t at = 0;
    assert_int_equal(pyfmt_utf8_next("\360\237\230\200x", 5, &at), 0x1F600);
    assert_int_equal(at, 4);
    at = 0;
    assert_int_equal(pyfmt_utf8_next("\377", 1, &at), 0xDCFF);
    assert_int_equal(at, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_str_aligns_truncates_and_refuses_number_flags),
        cmocka_unit_test(test_format_int_groups_pads_prefixes_and_refuses_precision),
        cmocka_unit_test(test_format_float_rounds_and_lays_out_like_python),
        cmocka_unit_test(test_format_bool_is_str_for_empty_spec_and_int_otherwise),
        cmocka_unit_test(test_format_none_list_dict_take_only_the_empty_spec),
        cmocka_unit_test(test_format_n_type_and_surrogate_char_are_unsupported),
        cmocka_unit_test(test_format_of_inf_and_nan),
        cmocka_unit_test(test_str_repr_ascii_match_python),
        cmocka_unit_test(test_float_repr_is_shortest_and_spells_inf_nan_like_python),
        cmocka_unit_test(test_repr_text_takes_bytes_with_nul),
        cmocka_unit_test(test_lists_nested_past_max_depth_are_unsupported),
        cmocka_unit_test(test_failure_leaves_the_buffer_as_it_was),
        cmocka_unit_test(test_huge_widths_and_precisions_fail_fast_with_noroom),
        cmocka_unit_test(test_utf8_validation_refuses_overlongs_surrogates_and_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
