/* test_canon.c -- unit tests for canon: Python-compatible canonical JSON.
 *
 * Every expected text below is what python3.11 prints for
 * json.dumps(json.loads(input), sort_keys=True) (checked by hand).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/canon.h"

/* Parses `in` (len bytes) and checks the canonical text is exactly `want`. */
static void expect_canon_n(const char *in, size_t len, const char *want, size_t wantlen)
{
    char err[128] = "";
    size_t outlen = 0;
    char *out = canon_json(in, len, &outlen, err, sizeof(err));
    if (out == NULL)
        fail_msg("rejected (%s), wanted %s", err, want);
    if (outlen != wantlen || memcmp(out, want, wantlen) != 0)
        fail_msg("got %s, wanted %s", out, want);
    assert_int_equal(out[outlen], '\0');
    free(out);
}

static void expect_reject_n(const char *in, size_t len)
{
    char err[128] = "";
    size_t outlen = 0;
    char *out = canon_json(in, len, &outlen, err, sizeof(err));
    if (out != NULL)
        fail_msg("accepted, gave %s", out);
    assert_true(err[0] != '\0');
}

/* String literals, so that sizeof gives lengths that count embedded NULs. */
#define EXPECT_CANON(in, want) expect_canon_n((in), sizeof(in) - 1, (want), sizeof(want) - 1)
#define EXPECT_REJECT(in) expect_reject_n((in), sizeof(in) - 1)

/* ---- structure and ordering ------------------------------------------- */

static void test_design_example_body_is_sorted_with_python_separators(void **state)
{
    (void)state;
    EXPECT_CANON(
        "{\"event_type\":\"prompt_template_label_moved\",\"details\":{\"prompt_template_id\":12,"
        "\"prompt_template_name\":\"Hello\",\"prompt_template_version_number\":9,"
        "\"old_prompt_template_version_number\":8,\"prompt_template_label\":\"prod\"},"
        "\"user_id\":1,\"user_name\":\"John Doe\",\"user_email\":\"john.doe@example.com\","
        "\"workspace_id\":1,\"timestamp\":\"2023-12-01T22:05:57.924833\"}",
        "{\"details\": {\"old_prompt_template_version_number\": 8, \"prompt_template_id\": 12, "
        "\"prompt_template_label\": \"prod\", \"prompt_template_name\": \"Hello\", "
        "\"prompt_template_version_number\": 9}, \"event_type\": \"prompt_template_label_moved\", "
        "\"timestamp\": \"2023-12-01T22:05:57.924833\", \"user_email\": \"john.doe@example.com\", "
        "\"user_id\": 1, \"user_name\": \"John Doe\", \"workspace_id\": 1}");
}

static void test_keys_sort_by_code_point_including_surrogates(void **state)
{
    (void)state;
    /* U+D7FF < lone U+D800 < U+E000 < U+FFFF < U+10000; "a" < "a\0" < "a\0b" < "b" */
    EXPECT_CANON("{\"\\ud800\\udc00\":1,\"\\uffff\":2,\"\\ue000\":3,\"\\ud800\":4,\"\\ud7ff\":5,"
                 "\"\\u00e9\":6,\"e\":7,\"E\":8,\"\":9}",
                 "{\"\": 9, \"E\": 8, \"e\": 7, \"\\u00e9\": 6, \"\\ud7ff\": 5, \"\\ud800\": 4, "
                 "\"\\ue000\": 3, \"\\uffff\": 2, \"\\ud800\\udc00\": 1}");
    EXPECT_CANON("{\"b\":1,\"a\\u0000b\":2,\"a\\u0000\":3,\"a\":4}",
                 "{\"a\": 4, \"a\\u0000\": 3, \"a\\u0000b\": 2, \"b\": 1}");
    /* a raw UTF-8 surrogate pair stays two lone surrogates and sorts below U+E000 */
    EXPECT_CANON("{\"\xf0\x90\x80\x80\":1,\"\xed\xa0\x80\xed\xb0\x80\":2,\"\xee\x80\x80\":3}",
                 "{\"\\ud800\\udc00\": 2, \"\\ue000\": 3, \"\\ud800\\udc00\": 1}");
}

static void test_repeated_key_keeps_last_value(void **state)
{
    (void)state;
    EXPECT_CANON("{\"a\":1,\"a\":2}", "{\"a\": 2}");
    EXPECT_CANON("{\"b\":1,\"a\":2,\"b\":3,\"a\":4,\"b\":[5]}", "{\"a\": 4, \"b\": [5]}");
    EXPECT_CANON("{\"a\":{\"x\":1},\"a\":[]}", "{\"a\": []}");
    EXPECT_CANON("{\"\":{},\"\":[]}", "{\"\": []}");
    /* the same key written two ways is one key */
    EXPECT_CANON("{\"\\u00e9\":1,\"\xc3\xa9\":2,\"\\u00E9\":3}", "{\"\\u00e9\": 3}");
    EXPECT_CANON("{\"z\":{\"k\":1,\"k\":2},\"z\":{\"k\":3,\"j\":4,\"k\":5}}",
                 "{\"z\": {\"j\": 4, \"k\": 5}}");
}

static void test_many_keys_sort_in_reverse_with_duplicates(void **state)
{
    (void)state;
    enum { N = 20000 };
    size_t cap = (size_t)N * 24 + 16;
    char *in = malloc(cap);
    assert_non_null(in);
    size_t len = 0;
    in[len++] = '{';
    for (int i = N - 1; i >= 0; i--) {
        /* keys k00000..k09999 twice each (values i), descending order */
        len += (size_t)snprintf(in + len, cap - len, "%s\"k%05d\":%d", i == N - 1 ? "" : ",",
                                i % (N / 2), i);
    }
    in[len++] = '}';
    size_t outlen = 0;
    char err[128];
    char *out = canon_json(in, len, &outlen, err, sizeof(err));
    assert_non_null(out);
    /* the last occurrence of k00000 is i = 0, of k09999 is i = 9999 */
    assert_true(strncmp(out, "{\"k00000\": 0, \"k00001\": 1, ", 26) == 0);
    assert_non_null(strstr(out, "\"k09999\": 9999}"));
    assert_null(strstr(out, "10000"));
    free(out);
    free(in);
}

static void test_empty_containers_and_nesting(void **state)
{
    (void)state;
    EXPECT_CANON("{}", "{}");
    EXPECT_CANON("[]", "[]");
    EXPECT_CANON("[ ]", "[]");
    EXPECT_CANON("{ \n}", "{}");
    EXPECT_CANON("[[],{},[[]],{\"a\":{}}]", "[[], {}, [[]], {\"a\": {}}]");
    EXPECT_CANON("[1,[2,[3,{\"b\":[4],\"a\":5}]]]", "[1, [2, [3, {\"a\": 5, \"b\": [4]}]]]");
}

static void test_whitespace_is_only_space_tab_newline_return(void **state)
{
    (void)state;
    EXPECT_CANON(
        " \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n",
        "{\"a\": [1, 2]}");
    EXPECT_REJECT("\f1");
    EXPECT_REJECT("1\v");
    EXPECT_REJECT("\xc2\xa0"
                  "1");
    EXPECT_REJECT("[1,\xe2\x80\xa8"
                  "2]");
}

static void test_scalars_at_top_level(void **state)
{
    (void)state;
    EXPECT_CANON("true", "true");
    EXPECT_CANON("false", "false");
    EXPECT_CANON("null", "null");
    EXPECT_CANON("\"x\"", "\"x\"");
    EXPECT_CANON("[true,false,null]", "[true, false, null]");
    EXPECT_REJECT("True");
    EXPECT_REJECT("nul");
    EXPECT_REJECT("nulll");
}

/* ---- strings ---------------------------------------------------------- */

static void test_string_short_escapes_round_trip(void **state)
{
    (void)state;
    EXPECT_CANON("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\"\\\" \\\\ / \\b \\f \\n \\r \\t\"");
    EXPECT_CANON("\"\\u0022\\u005c\\u002F\\u0008\\u000c\\u000A\\u000d\\u0009\"",
                 "\"\\\"\\\\/\\b\\f\\n\\r\\t\"");
}

static void test_control_chars_and_del_escape_as_lowercase_u00xx(void **state)
{
    (void)state;
    EXPECT_CANON("\"\\u0000\\u0001\\u001F\\u001b\x7f\\u007F\"",
                 "\"\\u0000\\u0001\\u001f\\u001b\\u007f\\u007f\"");
    EXPECT_CANON("[\"\\u0000\"]", "[\"\\u0000\"]");
}

static void test_non_ascii_raw_or_escaped_gives_lowercase_u_escapes(void **state)
{
    (void)state;
    EXPECT_CANON("\"\xc3\xa9\\u00E9\xe2\x82\xac\\u20AC\\uFFFF\xef\xbf\xbf\\u0080\xc2\x80\"",
                 "\"\\u00e9\\u00e9\\u20ac\\u20ac\\uffff\\uffff\\u0080\\u0080\"");
    EXPECT_CANON("\"\\uABCD\\uabcd\\uAbCd\"", "\"\\uabcd\\uabcd\\uabcd\"");
}

static void test_astral_chars_become_lowercase_surrogate_pairs(void **state)
{
    (void)state;
    EXPECT_CANON("\"\xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\"");
    EXPECT_CANON("\"\\uD83D\\uDE00\"", "\"\\ud83d\\ude00\"");
    EXPECT_CANON("\"\xf4\x8f\xbf\xbf\xf0\x90\x80\x80\"", "\"\\udbff\\udfff\\ud800\\udc00\"");
}

static void test_lone_surrogates_are_kept(void **state)
{
    (void)state;
    EXPECT_CANON("\"\\ud800\"", "\"\\ud800\"");
    EXPECT_CANON("\"\\udc00\"", "\"\\udc00\"");
    EXPECT_CANON("\"\\udc00\\ud800\"", "\"\\udc00\\ud800\"");
    EXPECT_CANON("\"\\ud800\\ud800\\udc00\"", "\"\\ud800\\ud800\\udc00\"");
    EXPECT_CANON("\"\\ud800\\u0041\"", "\"\\ud800A\"");
    EXPECT_CANON("\"\\ud800x\"", "\"\\ud800x\"");
    EXPECT_CANON("\"\\ud800\\n\"", "\"\\ud800\\n\"");
    /* raw 3-byte surrogates are accepted (json.loads decodes with surrogatepass) */
    EXPECT_CANON("\"\xed\xa0\x80\"", "\"\\ud800\"");
    EXPECT_CANON("\"\xed\xbf\xbf\"", "\"\\udfff\"");
    /* an escaped high surrogate does not pair with a raw low one */
    EXPECT_CANON("{\"\\ud800\xed\xb0\x80\":1,\"\\ud800\\udc00\":2}",
                 "{\"\\ud800\\udc00\": 1, \"\\ud800\\udc00\": 2}");
}

static void test_slash_is_not_escaped(void **state)
{
    (void)state;
    EXPECT_CANON("\"a/b\\/c\"", "\"a/b/c\"");
}

static void test_invalid_escapes_are_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("\"\\a\"");
    EXPECT_REJECT("\"\\x41\"");
    EXPECT_REJECT("\"\\U0041\"");
    EXPECT_REJECT("\"\\u12\"");
    EXPECT_REJECT("\"\\u123g\"");
    EXPECT_REJECT("\"\\u\"");
    EXPECT_REJECT("\"\\ud800\\uzzzz\"");
    EXPECT_REJECT("\"\\'\"");
    EXPECT_REJECT("\"\\\"");
    EXPECT_REJECT("\"abc");
}

static void test_raw_control_chars_in_strings_are_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("\"\x00\"");
    EXPECT_REJECT("\"a\nb\"");
    EXPECT_REJECT("\"\t\"");
    EXPECT_REJECT("\"\x1f\"");
    EXPECT_REJECT("{\"a\x01\":1}");
}

static void test_invalid_utf8_is_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("\"\x80\"");             /* lone continuation byte */
    EXPECT_REJECT("\"\xc3\"");             /* truncated */
    EXPECT_REJECT("\"\xe2\x82\"");         /* truncated */
    EXPECT_REJECT("\"\xc0\xaf\"");         /* overlong */
    EXPECT_REJECT("\"\xc1\xbf\"");         /* overlong */
    EXPECT_REJECT("\"\xe0\x9f\xbf\"");     /* overlong */
    EXPECT_REJECT("\"\xf0\x8f\xbf\xbf\""); /* overlong */
    EXPECT_REJECT("\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    EXPECT_REJECT("\"\xf5\x80\x80\x80\"");
    EXPECT_REJECT("\"\xff\"");
    EXPECT_REJECT("\"\xed\xa0\""); /* truncated surrogate */
    EXPECT_REJECT("[1]\xff");
    EXPECT_CANON("\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"",
                 "\"\\ud7ff\\ue000\\udbff\\udfff\"");
}

/* ---- encodings -------------------------------------------------------- */

static void test_utf8_bom_is_skipped_once(void **state)
{
    (void)state;
    EXPECT_CANON("\xef\xbb\xbf{}", "{}");
    EXPECT_CANON("\xef\xbb\xbf"
                 "1",
                 "1");
    EXPECT_REJECT("\xef\xbb\xbf\xef\xbb\xbf{}");
    EXPECT_REJECT("\xef\xbb\xbf");
    EXPECT_REJECT(" \xef\xbb\xbf{}");
}

static void test_utf16_and_utf32_are_detected_like_python(void **state)
{
    (void)state;
    EXPECT_CANON("\xff\xfe{\x00}\x00", "{}"); /* UTF-16 with BOM */
    EXPECT_CANON("\xfe\xff\x00[\x00"
                 "1\x00]",
                 "[1]");              /* UTF-16-BE with BOM */
    EXPECT_CANON("{\x00}\x00", "{}"); /* UTF-16-LE by zero bytes */
    EXPECT_CANON("1\x00", "1");
    EXPECT_CANON("\x00"
                 "1",
                 "1");
    EXPECT_CANON("1\x00\x00\x00", "1"); /* UTF-32-LE */
    EXPECT_CANON("\x00\x00\x00"
                 "1",
                 "1"); /* UTF-32-BE */
    EXPECT_CANON("\xff\xfe\x00\x00"
                 "1\x00\x00\x00",
                 "1");                                                       /* UTF-32 with BOM */
    EXPECT_CANON("\xff\xfe\"\x00\x00\xd8\"\x00", "\"\\ud800\"");             /* lone surrogate */
    EXPECT_CANON("\xff\xfe\"\x00=\xd8\x00\xde\"\x00", "\"\\ud83d\\ude00\""); /* a pair */
    EXPECT_CANON("\"\x00\x00\x00\x00\xd8\x00\x00\x00\xdc\x00\x00\"\x00\x00\x00",
                 "\"\\ud800\\udc00\"");
    EXPECT_REJECT("\xff\xfe"
                  "1");                                            /* truncated UTF-16 */
    EXPECT_REJECT("1\x00\x00\x00\x00");                            /* truncated UTF-32 */
    EXPECT_REJECT("\"\x00\x00\x00\x00\x00\x11\x00\"\x00\x00\x00"); /* above U+10FFFF */
    EXPECT_REJECT("\xff\xfe\xff\xfe"
                  "1\x00"); /* a second BOM is a char */
    EXPECT_REJECT("\x00\x00\x00[");
}

/* ---- numbers ---------------------------------------------------------- */

static void test_integers_keep_their_digits(void **state)
{
    (void)state;
    EXPECT_CANON("[0,-0,1,-1,9007199254740993,-18446744073709551617]",
                 "[0, 0, 1, -1, 9007199254740993, -18446744073709551617]");
    EXPECT_CANON("123456789012345678901234567890123456789012345678901234567890",
                 "123456789012345678901234567890123456789012345678901234567890");
}

static void test_integer_digit_limit_is_4300(void **state)
{
    (void)state;
    char in[4303];
    memset(in, '7', sizeof(in));
    in[0] = '-';
    char err[128];
    size_t outlen = 0;
    /* 4300 digits, with and without a sign */
    char *out = canon_json(in, 4301, &outlen, err, sizeof(err));
    assert_non_null(out);
    assert_int_equal(outlen, 4301);
    free(out);
    out = canon_json(in + 1, 4300, &outlen, err, sizeof(err));
    assert_non_null(out);
    assert_int_equal(outlen, 4300);
    free(out);
    /* 4301 digits */
    assert_null(canon_json(in, 4302, &outlen, err, sizeof(err)));
    assert_null(canon_json(in + 1, 4301, &outlen, err, sizeof(err)));
    /* floats have no digit limit */
    char big[5003];
    memset(big, '1', 5000);
    memcpy(big + 5000, ".0", 3);
    expect_canon_n(big, 5002, "Infinity", 8);
    expect_canon_n(big, 4300, big, 4300);
}

static void test_bad_numbers_are_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("01");
    EXPECT_REJECT("-01");
    EXPECT_REJECT("00");
    EXPECT_REJECT("[00]");
    EXPECT_REJECT("01.5");
    EXPECT_REJECT("1.");
    EXPECT_REJECT(".5");
    EXPECT_REJECT("+1");
    EXPECT_REJECT("-");
    EXPECT_REJECT("--1");
    EXPECT_REJECT("1e");
    EXPECT_REJECT("1e+");
    EXPECT_REJECT("1.e5");
    EXPECT_REJECT("0x10");
    EXPECT_REJECT("1_000");
    EXPECT_REJECT("[1.]");
    EXPECT_REJECT("-NaN");
    EXPECT_REJECT("+Infinity");
    EXPECT_REJECT("infinity");
    EXPECT_REJECT("nan");
}

static void test_floats_print_as_python_repr(void **state)
{
    (void)state;
    EXPECT_CANON("[0.1,1.5,1e2,100.0,1E2,-2.5e-3,3.0e0,0.30000000000000004]",
                 "[0.1, 1.5, 100.0, 100.0, 100.0, -0.0025, 3.0, 0.30000000000000004]");
    /* fixed notation for exponents -4..15, scientific outside */
    EXPECT_CANON("[0.0001,0.00001,1e-5,0.00012345,1.2345e-5]",
                 "[0.0001, 1e-05, 1e-05, 0.00012345, 1.2345e-05]");
    EXPECT_CANON("[1e15,1e16,123456789012345678.0,9999999999999998.0,1e22,1e100,1.5e300]",
                 "[1000000000000000.0, 1e+16, 1.2345678901234568e+17, 9999999999999998.0, 1e+22, "
                 "1e+100, 1.5e+300]");
    EXPECT_CANON("[5e-324,2.2250738585072014e-308,1.7976931348623157e308,4.9e-324]",
                 "[5e-324, 2.2250738585072014e-308, 1.7976931348623157e+308, 5e-324]");
    EXPECT_CANON("[0.0,-0.0,-0e5,0e-5,0.000e999]", "[0.0, -0.0, -0.0, 0.0, 0.0]");
}

static void test_float_shortest_digits_at_powers_of_two(void **state)
{
    (void)state;
    /* 2**89 and 2**-1017: the nearest 16-digit decimal does not read back,
     * the next one above does */
    EXPECT_CANON("618970019642690137449562112.0", "6.189700196426902e+26");
    EXPECT_CANON("6.189700196426901e+26", "6.189700196426901e+26");
    EXPECT_CANON("7.1202363472230444e-307", "7.120236347223045e-307");
    EXPECT_CANON("9007199254740992.0", "9007199254740992.0");
}

static void test_float_overflow_and_underflow(void **state)
{
    (void)state;
    EXPECT_CANON("[1e400,-1e400,1e-400,-1e-400]", "[Infinity, -Infinity, 0.0, -0.0]");
    EXPECT_CANON("[1.7976931348623158e308,1.7976931348623159e308]",
                 "[1.7976931348623157e+308, Infinity]");
    EXPECT_CANON("[1e99999999999999999999999,1e-99999999999999999999999,0e99999999999999999999]",
                 "[Infinity, 0.0, 0.0]");
    EXPECT_CANON("[2.4703282292062327e-324,2.4703282292062328e-324]", "[0.0, 5e-324]");
}

static void test_float_rounding_of_long_decimals(void **state)
{
    (void)state;
    /* 2**53 + 1 is halfway: ties go to even; anything beyond goes up */
    EXPECT_CANON("[9007199254740993.0,9007199254740993.0000000000000000000001]",
                 "[9007199254740992.0, 9007199254740994.0]");
    /* 900 digits: the tail past 800 digits still decides */
    char in[1000];
    memcpy(in, "9007199254740993.", 17);
    memset(in + 17, '0', 880);
    memcpy(in + 897, "1", 2);
    expect_canon_n(in, strlen(in), "9007199254740994.0", 18);
    in[897] = '0';
    expect_canon_n(in, strlen(in), "9007199254740992.0", 18);
    EXPECT_CANON("0.000000000000000000000000000000000000000000000000000000000000000000000000001e75",
                 "1.0");
    EXPECT_CANON("100000000000000000000000000000000000000000000000000000000000000000000000000e-74",
                 "1.0");
}

static void test_float_repr_ties_take_the_even_last_digit(void **state)
{
    (void)state;
    /* exactly halfway between the two nearest 17-digit decimals, both of
     * which read back: Python (Gay's dtoa) keeps the even one, up or down */
    EXPECT_CANON("[1.78813934326171875e-7,5.9604644775390625e-7,0.0000131130218505859375]",
                 "[1.7881393432617188e-07, 5.960464477539062e-07, 1.3113021850585938e-05]");
    /* 2**-24: the lower neighbour is nearer but outside the narrower gap */
    EXPECT_CANON("5.9604644775390625e-08", "5.960464477539063e-08");
}

static void test_float_reading_ties_to_even_on_every_path(void **state)
{
    (void)state;
    /* midpoints between doubles, short enough for the 64x128-bit path */
    EXPECT_CANON("[2251799813685248.25,2251799813685248.75,4503599627370496.5,4503599627370497.5]",
                 "[2251799813685248.0, 2251799813685249.0, 4503599627370496.0, "
                 "4503599627370498.0]");
    /* 1 + 2**-53 written out in full (54 digits), and a hair either side */
    EXPECT_CANON("[1.00000000000000011102230246251565404236316680908203125,"
                 "1.00000000000000011102230246251565404236316680908203124,"
                 "1.00000000000000011102230246251565404236316680908203126]",
                 "[1.0, 1.0, 1.0000000000000002]");
}

static void test_float_reading_of_a_million_digits(void **state)
{
    (void)state;
    enum { n = 1000000 };
    static char in[n + 32];
    /* 0.000...0001e1000010 is 1e9: leading zeros count against the exponent */
    memcpy(in, "0.", 2);
    memset(in + 2, '0', n);
    memcpy(in + 2 + n, "1e1000010", 10);
    expect_canon_n(in, strlen(in), "1000000000.0", 12);
    /* 1.000...0001: the cut tail does not move 1.0 */
    memcpy(in, "1.", 2);
    memcpy(in + 2 + n, "1", 2);
    expect_canon_n(in, strlen(in), "1.0", 3);
    /* 999...9e-1000000 rounds up to 1.0 */
    memset(in, '9', n);
    memcpy(in + n, "e-1000000", 10);
    expect_canon_n(in, strlen(in), "1.0", 3);
}

static void test_nan_and_infinity_literals(void **state)
{
    (void)state;
    EXPECT_CANON("[NaN,Infinity,-Infinity]", "[NaN, Infinity, -Infinity]");
    EXPECT_CANON("{\"n\":NaN}", "{\"n\": NaN}");
}

/* ---- rejections ------------------------------------------------------- */

static void test_trailing_data_is_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("{}x");
    EXPECT_REJECT("{} {}");
    EXPECT_REJECT("1 2");
    EXPECT_REJECT("[1]]");
    EXPECT_REJECT("\"a\"\"b\"");
    EXPECT_REJECT("null\x00");
}

static void test_broken_structure_is_rejected(void **state)
{
    (void)state;
    EXPECT_REJECT("");
    EXPECT_REJECT("   ");
    EXPECT_REJECT("[");
    EXPECT_REJECT("[1,]");
    EXPECT_REJECT("[,1]");
    EXPECT_REJECT("[1 2]");
    EXPECT_REJECT("{\"a\"}");
    EXPECT_REJECT("{\"a\":}");
    EXPECT_REJECT("{\"a\" 1}");
    EXPECT_REJECT("{a:1}");
    EXPECT_REJECT("{'a':1}");
    EXPECT_REJECT("{\"a\":1,}");
    EXPECT_REJECT("{,}");
    EXPECT_REJECT("{1:2}");
    EXPECT_REJECT("{\"a\":1");
    EXPECT_REJECT("]");
}

static void test_nesting_deeper_than_max_depth_is_rejected(void **state)
{
    (void)state;
    char in[2 * (CANON_MAX_DEPTH + 1) + 8];
    char err[128];
    size_t outlen = 0;
    for (int depth = CANON_MAX_DEPTH; depth <= CANON_MAX_DEPTH + 1; depth++) {
        memset(in, '[', (size_t)depth);
        memset(in + depth, ']', (size_t)depth);
        char *out = canon_json(in, 2 * (size_t)depth, &outlen, err, sizeof(err));
        if (depth == CANON_MAX_DEPTH) {
            assert_non_null(out);
            assert_int_equal(outlen, 2 * (size_t)depth);
            free(out);
        } else {
            assert_null(out);
        }
    }
    /* objects count the same way */
    size_t cap = 6 * (CANON_MAX_DEPTH + 1) + 8, len = 0;
    char *obj = malloc(cap);
    assert_non_null(obj);
    for (int i = 0; i < CANON_MAX_DEPTH + 1; i++) {
        memcpy(obj + len, "{\"a\":", 5);
        len += 5;
    }
    obj[len++] = '1';
    memset(obj + len, '}', CANON_MAX_DEPTH + 1);
    len += CANON_MAX_DEPTH + 1;
    assert_null(canon_json(obj, len, &outlen, err, sizeof(err)));
    /* one level less: CANON_MAX_DEPTH objects */
    char *out = canon_json(obj + 5, len - 6, &outlen, err, sizeof(err));
    assert_non_null(out);
    free(out);
    free(obj);
}

static void test_error_text_never_quotes_the_input(void **state)
{
    (void)state;
    const char *bad[] = {"{\"secret\":tru}", "{\"secret\":\"s3cr3t\x01\"}", "[\"secret\" 1]",
                         "{\"secret\":1} secret"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[128] = "";
        assert_null(canon_parse(bad[i], strlen(bad[i]), err, sizeof(err)));
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "secret"));
        assert_null(strstr(err, "s3cr3t"));
        assert_null(strstr(err, "tru"));
    }
    /* a tiny or missing error buffer is fine */
    char one[1];
    assert_null(canon_parse("x", 1, one, sizeof(one)));
    assert_null(canon_parse("x", 1, NULL, 0));
}

/* ---- the document API ------------------------------------------------- */

static void test_root_type_reports_each_kind(void **state)
{
    (void)state;
    struct {
        const char *in;
        canon_type type;
    } cases[] = {
        {"null", CANON_NULL},    {"false", CANON_FALSE}, {"true", CANON_TRUE},
        {"-12", CANON_INT},      {"1.5", CANON_FLOAT},   {"NaN", CANON_FLOAT},
        {"\"s\"", CANON_STRING}, {"[1]", CANON_ARRAY},   {" {} ", CANON_OBJECT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[128];
        canon_doc *doc = canon_parse(cases[i].in, strlen(cases[i].in), err, sizeof(err));
        assert_non_null(doc);
        assert_int_equal(canon_root_type(doc), cases[i].type);
        canon_free(doc);
    }
    canon_free(NULL);
}

static void test_root_string_finds_last_string_member(void **state)
{
    (void)state;
    static const char in[] = "{\"event_type\":\"a\",\"n\":1,\"nul\":\"x\\u0000y\","
                             "\"k\\u0000ey\":\"hidden\",\"event_type\":\"prompt_\\u00e9\","
                             "\"obj\":{\"event_type\":\"inner\"},\"arr\":[\"s\"],\"e\":\"\"}";
    char err[128];
    canon_doc *doc = canon_parse(in, sizeof(in) - 1, err, sizeof(err));
    assert_non_null(doc);
    size_t len = 99;
    const char *s = canon_root_string(doc, "event_type", &len);
    assert_non_null(s);
    assert_int_equal(len, 9);
    assert_memory_equal(s, "prompt_\xc3\xa9", 10); /* UTF-8, and NUL-terminated */
    s = canon_root_string(doc, "nul", &len);
    assert_non_null(s);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "x\0y", 3);
    s = canon_root_string(doc, "e", &len);
    assert_non_null(s);
    assert_int_equal(len, 0);
    assert_null(canon_root_string(doc, "n", &len)); /* not a string */
    assert_null(canon_root_string(doc, "obj", &len));
    assert_null(canon_root_string(doc, "arr", &len));
    assert_null(canon_root_string(doc, "missing", &len));
    assert_null(canon_root_string(doc, "k", &len)); /* the key is "k\0ey" */
    assert_null(canon_root_string(doc, "event", &len));
    assert_null(canon_root_string(doc, "", &len));
    canon_free(doc);

    doc = canon_parse("[\"event_type\"]", 14, err, sizeof(err));
    assert_non_null(doc);
    assert_null(canon_root_string(doc, "event_type", &len)); /* root not an object */
    canon_free(doc);

    doc = canon_parse("{\"event_type\":\"\\ud800\"}", 23, err, sizeof(err));
    assert_non_null(doc);
    s = canon_root_string(doc, "event_type", &len);
    assert_non_null(s);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "\xed\xa0\x80", 3); /* a lone surrogate in its 3-byte form */
    canon_free(doc);
    assert_null(canon_root_string(NULL, "event_type", &len));
}

static void test_dump_is_repeatable_and_input_need_not_be_terminated(void **state)
{
    (void)state;
    const char in[] = "{\"b\":[1,2.50],\"a\":\"x\"}GARBAGE";
    char err[128];
    canon_doc *doc = canon_parse(in, 22, err, sizeof(err));
    assert_non_null(doc);
    size_t n1 = 0, n2 = 0;
    char *d1 = canon_dump(doc, &n1);
    char *d2 = canon_dump(doc, &n2);
    assert_non_null(d1);
    assert_non_null(d2);
    assert_string_equal(d1, "{\"a\": \"x\", \"b\": [1, 2.5]}");
    assert_int_equal(n1, strlen(d1));
    assert_string_equal(d1, d2);
    assert_int_equal(n1, n2);
    free(d1);
    free(d2);
    canon_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example_body_is_sorted_with_python_separators),
        cmocka_unit_test(test_keys_sort_by_code_point_including_surrogates),
        cmocka_unit_test(test_repeated_key_keeps_last_value),
        cmocka_unit_test(test_many_keys_sort_in_reverse_with_duplicates),
        cmocka_unit_test(test_empty_containers_and_nesting),
        cmocka_unit_test(test_whitespace_is_only_space_tab_newline_return),
        cmocka_unit_test(test_scalars_at_top_level),
        cmocka_unit_test(test_string_short_escapes_round_trip),
        cmocka_unit_test(test_control_chars_and_del_escape_as_lowercase_u00xx),
        cmocka_unit_test(test_non_ascii_raw_or_escaped_gives_lowercase_u_escapes),
        cmocka_unit_test(test_astral_chars_become_lowercase_surrogate_pairs),
        cmocka_unit_test(test_lone_surrogates_are_kept),
        cmocka_unit_test(test_slash_is_not_escaped),
        cmocka_unit_test(test_invalid_escapes_are_rejected),
        cmocka_unit_test(test_raw_control_chars_in_strings_are_rejected),
        cmocka_unit_test(test_invalid_utf8_is_rejected),
        cmocka_unit_test(test_utf8_bom_is_skipped_once),
        cmocka_unit_test(test_utf16_and_utf32_are_detected_like_python),
        cmocka_unit_test(test_integers_keep_their_digits),
        cmocka_unit_test(test_integer_digit_limit_is_4300),
        cmocka_unit_test(test_bad_numbers_are_rejected),
        cmocka_unit_test(test_floats_print_as_python_repr),
        cmocka_unit_test(test_float_shortest_digits_at_powers_of_two),
        cmocka_unit_test(test_float_overflow_and_underflow),
        cmocka_unit_test(test_float_rounding_of_long_decimals),
        cmocka_unit_test(test_float_repr_ties_take_the_even_last_digit),
        cmocka_unit_test(test_float_reading_ties_to_even_on_every_path),
        cmocka_unit_test(test_float_reading_of_a_million_digits),
        cmocka_unit_test(test_nan_and_infinity_literals),
        cmocka_unit_test(test_trailing_data_is_rejected),
        cmocka_unit_test(test_broken_structure_is_rejected),
        cmocka_unit_test(test_nesting_deeper_than_max_depth_is_rejected),
        cmocka_unit_test(test_error_text_never_quotes_the_input),
        cmocka_unit_test(test_root_type_reports_each_kind),
        cmocka_unit_test(test_root_string_finds_last_string_member),
        cmocka_unit_test(test_dump_is_repeatable_and_input_need_not_be_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
