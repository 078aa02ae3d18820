/* test_libform.c -- libplcache's pure forms: cache fields, API URLs, keys and
 * the job shape check. */
#include "cm.h"

#include <string.h>

#include "lib/form.h"

static void test_field_names_follow_the_contract(void **state)
{
    (void)state;
    char f[FORM_FIELD_SIZE];
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LATEST, NULL, 0), 6);
    assert_string_equal(f, "latest");
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LABEL, "prod", 0), 10);
    assert_string_equal(f, "label:prod");
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_VERSION, "ignored", 12), 10);
    assert_string_equal(f, "version:12");
    /* The ignored arguments are ignored. */
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LATEST, "x", -3), 6);
}

static void test_bad_selectors_are_refused(void **state)
{
    (void)state;
    char f[FORM_FIELD_SIZE];
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LABEL, NULL, 0), -1);
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LABEL, "", 0), -1);
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_VERSION, NULL, 0), -1);
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_VERSION, NULL, -1), -1);
    assert_int_equal(form_field(f, sizeof(f), (plcache_select)7, NULL, 1), -1);
    char big[FORM_MAX_LABEL + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LABEL, big, 0), -1);
    big[FORM_MAX_LABEL] = '\0'; /* exactly the maximum fits */
    assert_int_equal(form_field(f, sizeof(f), PLCACHE_SEL_LABEL, big, 0), FORM_MAX_LABEL + 6);
    char small[8];
    assert_int_equal(form_field(small, sizeof(small), PLCACHE_SEL_LABEL, "production", 0), -1);
}

static void check_url(const char *base, const char *name, plcache_select sel, const char *label,
                      long long version, const char *want)
{
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(form_api_url(&b, base, name, sel, label, version, 0), 0);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_api_urls_encode_name_and_label(void **state)
{
    (void)state;
    check_url("http://h:1", "Hello", PLCACHE_SEL_LATEST, NULL, 0,
              "http://h:1/prompt-templates/Hello");
    check_url("http://h:1/", "Hello World", PLCACHE_SEL_VERSION, NULL, 3,
              "http://h:1/prompt-templates/Hello%20World?version=3");
    check_url("https://api.promptlayer.com//", "a/b?c&d", PLCACHE_SEL_LABEL, "prod&x=1", 0,
              "https://api.promptlayer.com/prompt-templates/a%2Fb%3Fc%26d?label=prod%26x%3D1");
    check_url("http://h", "\xc3\xa9t\xc3\xa9-_.~", PLCACHE_SEL_LATEST, NULL, 0,
              "http://h/prompt-templates/%C3%A9t%C3%A9-_.~");
}

/* The read-through asks what the applier asks: the version with its
 * llm_kwargs (DESIGN.md section 4). */
static void test_api_urls_ask_for_llm_kwargs(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(form_api_url(&b, "http://h", "A B", PLCACHE_SEL_LATEST, NULL, 0, 1), 0);
    assert_string_equal(b.data, "http://h/prompt-templates/A%20B?include_llm_kwargs=true");
    buf_reset(&b);
    assert_int_equal(form_api_url(&b, "http://h", "a", PLCACHE_SEL_VERSION, NULL, 7, 1), 0);
    assert_string_equal(b.data, "http://h/prompt-templates/a?version=7&include_llm_kwargs=true");
    buf_reset(&b);
    assert_int_equal(form_api_url(&b, "http://h", "a", PLCACHE_SEL_LABEL, "prod", 0, 1), 0);
    assert_string_equal(b.data, "http://h/prompt-templates/a?label=prod&include_llm_kwargs=true");
    buf_free(&b);
}

static void test_api_url_refuses_bad_input_and_overflow(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(form_api_url(&b, "http://h", "", PLCACHE_SEL_LATEST, NULL, 0, 0), -1);
    assert_int_equal(form_api_url(&b, "/", "x", PLCACHE_SEL_LATEST, NULL, 0, 0), -1);
    assert_int_equal(form_api_url(&b, "http://h", "x", PLCACHE_SEL_LABEL, "", 0, 0), -1);
    assert_int_equal(form_api_url(&b, "http://h", "x", PLCACHE_SEL_VERSION, NULL, 0, 0), -1);
    buf_free(&b);
    buf_init(&b, 30);
    assert_int_equal(
        form_api_url(&b, "http://h", "a-long-template-name", PLCACHE_SEL_LATEST, NULL, 0, 0), -1);
    buf_free(&b);
}

static void test_keys_are_prefix_middle_name_field(void **state)
{
    (void)state;
    char k[FORM_KEY_SIZE];
    assert_int_equal(form_key(k, sizeof(k), "pl:", "prompt:", "Hello", NULL), 15);
    assert_string_equal(k, "pl:prompt:Hello");
    assert_int_equal(form_key(k, sizeof(k), "x:", "lease:", "Hi", "label:prod"), 21);
    assert_string_equal(k, "x:lease:Hi:label:prod");
    assert_int_equal(form_key(k, sizeof(k), "pl:", "track", "", NULL), 8);
    assert_string_equal(k, "pl:track");
    char small[8];
    assert_int_equal(form_key(small, sizeof(small), "pl:", "track", "", NULL), -1);
}

static void test_header_safe_refuses_control_characters(void **state)
{
    (void)state;
    assert_true(form_header_safe("abc-123_XYZ.~ +/="));
    assert_true(form_header_safe(""));
    assert_false(form_header_safe("a\r\nX-Evil: 1"));
    assert_false(form_header_safe("a\tb"));
    assert_false(form_header_safe("a\x7f"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_names_follow_the_contract),
        cmocka_unit_test(test_bad_selectors_are_refused),
        cmocka_unit_test(test_api_urls_encode_name_and_label),
        cmocka_unit_test(test_api_urls_ask_for_llm_kwargs),
        cmocka_unit_test(test_api_url_refuses_bad_input_and_overflow),
        cmocka_unit_test(test_keys_are_prefix_middle_name_field),
        cmocka_unit_test(test_header_safe_refuses_control_characters),
    };
    return cmocka_run_group_tests_name("libform", tests, NULL, NULL);
}
