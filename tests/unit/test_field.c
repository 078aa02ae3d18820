/* test_field.c -- the cache field (latest | version:N | label:L) and its API URL. */
#include "cm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/field.h"

/* Every text a hash may hold as a field name, and what it is. */
static void test_fields_parse_by_one_rule(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int ok;
        field_kind kind;
        long long version;
        const char *label;
    } rows[] = {
        {"latest", 1, FIELD_LATEST, 0, NULL},
        {"version:12", 1, FIELD_VERSION, 12, NULL},
        {"version:0", 1, FIELD_VERSION, 0, NULL},
        {"version:9223372036854775807", 1, FIELD_VERSION, 9223372036854775807LL, NULL},
        {"label:prod", 1, FIELD_LABEL, 0, "prod"},
        {"label:a:b c", 1, FIELD_LABEL, 0, "a:b c"},
        {"gen", 0, 0, 0, NULL},
        {"id", 0, 0, 0, NULL},
        {"Latest", 0, 0, 0, NULL},
        {"latest ", 0, 0, 0, NULL},
        {"version:", 0, 0, 0, NULL},
        {"version:x", 0, 0, 0, NULL},
        {"version:1x", 0, 0, 0, NULL},
        {"version:-1", 0, 0, 0, NULL},
        {"version:+1", 0, 0, 0, NULL},
        {"version: 1", 0, 0, 0, NULL},
        {"version:9223372036854775808", 0, 0, 0, NULL},
        {"label:", 0, 0, 0, NULL},
        {"label", 0, 0, 0, NULL},
        {"", 0, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        field f;
        int rc = field_parse(rows[i].text, &f);
        if (rc != (rows[i].ok ? 0 : -1))
            fail_msg("\"%s\": field_parse %d", rows[i].text, rc);
        if (!rows[i].ok)
            continue;
        assert_int_equal(f.kind, rows[i].kind);
        if (f.kind == FIELD_VERSION)
            assert_true(f.version == rows[i].version);
        if (f.kind == FIELD_LABEL)
            assert_string_equal(f.label, rows[i].label);
        /* What parses formats back to the same text. */
        char out[64];
        assert_int_equal(field_format(out, sizeof(out), &f), (int)strlen(rows[i].text));
        assert_string_equal(out, rows[i].text);
    }
}

static void test_format_refuses_what_is_not_a_field(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(field_format(out, sizeof(out), &(field){.kind = FIELD_VERSION, .version = -1}),
                     -1);
    assert_int_equal(field_format(out, sizeof(out), &(field){.kind = FIELD_LABEL, .label = ""}), -1);
    assert_int_equal(field_format(out, sizeof(out), &(field){.kind = FIELD_LABEL}), -1);
    /* Too small: -1, never a cut field. */
    assert_int_equal(field_format(out, 7, &(field){.kind = FIELD_LATEST}), 6);
    assert_int_equal(field_format(out, 6, &(field){.kind = FIELD_LATEST}), -1);
    assert_int_equal(
        field_format(out, sizeof(out), &(field){.kind = FIELD_LABEL, .label = "0123456789"}), -1);
    char *d = field_dup(&(field){.kind = FIELD_LABEL, .label = "prod"});
    assert_non_null(d);
    assert_string_equal(d, "label:prod");
    free(d);
    assert_null(field_dup(&(field){.kind = FIELD_VERSION, .version = -3}));
}

static void test_urls_encode_names_and_labels(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(field_url(&b, "http://h:1/", "My Prompt/ü", &(field){.kind = FIELD_VERSION, .version = 3}, 0), 0);
    assert_string_equal(b.data, "http://h:1/prompt-templates/My%20Prompt%2F%C3%BC?version=3");
    buf_reset(&b);
    assert_int_equal(field_url(&b, "https://api.promptlayer.com", "a",
                               &(field){.kind = FIELD_LABEL, .label = "prod&x"}, 0),
                     0);
    assert_string_equal(b.data, "https://api.promptlayer.com/prompt-templates/a?label=prod%26x");
    buf_reset(&b);
    assert_int_equal(field_url(&b, "http://h", "a.b-c_d~", &(field){.kind = FIELD_LATEST}, 0), 0);
    assert_string_equal(b.data, "http://h/prompt-templates/a.b-c_d~");
    buf_free(&b);
}

/* The cache holds a version with its llm_kwargs (DESIGN.md section 4): the
 * flag follows the selector, or starts the query for latest. */
static void test_urls_ask_for_llm_kwargs(void **state)
{
    (void)state;
    static const struct {
        field f;
        const char *want;
    } rows[] = {
        {{.kind = FIELD_LATEST}, "http://h/prompt-templates/a?include_llm_kwargs=true"},
        {{.kind = FIELD_VERSION, .version = 3}, "http://h/prompt-templates/a?version=3&include_llm_kwargs=true"},
        {{.kind = FIELD_LABEL, .label = "p&q"}, "http://h/prompt-templates/a?label=p%26q&include_llm_kwargs=true"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        buf b;
        buf_init(&b, 4096);
        assert_int_equal(field_url(&b, "http://h", "a", &rows[i].f, 1), 0);
        assert_string_equal(b.data, rows[i].want);
        buf_free(&b);
    }
    /* Too long with the flag: nothing is left half-written. */
    buf b;
    buf_init(&b, 30);
    assert_int_equal(field_url(&b, "http://h", "abcdef", &(field){.kind = FIELD_LATEST}, 1), -1);
    assert_true(b.len == 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_parse_by_one_rule),
        cmocka_unit_test(test_format_refuses_what_is_not_a_field),
        cmocka_unit_test(test_urls_encode_names_and_labels),
        cmocka_unit_test(test_urls_ask_for_llm_kwargs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
