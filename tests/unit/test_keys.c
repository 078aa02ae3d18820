/* test_keys.c -- key names and SCAN patterns (model/keys). */
#include "cm.h"

#include <string.h>

#include "model/keys.h"

static void test_match_escapes_glob_characters_then_adds_a_star(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(keys_match(out, sizeof(out), "pl:", KEYS_PROMPT), 11);
    assert_string_equal(out, "pl:prompt:*");
    assert_true(keys_match(out, sizeof(out), "a*b?c[d]e\\", "") > 0);
    assert_string_equal(out, "a\\*b\\?c\\[d\\]e\\\\*");
}

static void test_match_refuses_what_does_not_fit(void **state)
{
    (void)state;
    char out[12];
    assert_int_equal(keys_match(out, sizeof(out), "pl:", "prompt:"), 11); /* 11 + NUL */
    assert_int_equal(keys_match(out, sizeof(out), "pl:", "prompts:"), -1);
    assert_int_equal(keys_match(out, sizeof(out), "**********", ""), -1);
}

static void test_make_joins_prefix_name_and_suffix(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(keys_make(out, sizeof(out), "pl:", KEYS_TRACK, ":dead"), 13);
    assert_string_equal(out, "pl:track:dead");
    assert_int_equal(keys_make(out, 8, "pl:", KEYS_TRACK, ":dead"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_escapes_glob_characters_then_adds_a_star),
        cmocka_unit_test(test_match_refuses_what_does_not_fit),
        cmocka_unit_test(test_make_joins_prefix_name_and_suffix),
    };
    return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
