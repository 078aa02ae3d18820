/* test_wipe.c -- secrets erased before their memory goes back (core/wipe). */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "core/wipe.h"

static void test_wipe_mem_zeroes_exactly_the_bytes_given(void **state)
{
    (void)state;
    char b[16];
    memcpy(b, "secret-password!", sizeof(b));
    wipe_mem(b + 1, 6);
    assert_int_equal(b[0], 's');
    for (int i = 1; i < 7; i++)
        assert_int_equal(b[i], 0);
    assert_memory_equal(b + 7, "password!", 9);
    wipe_mem(NULL, 0);
    wipe_mem(b, 0);
    assert_int_equal(b[0], 's');
}

static void test_wipe_free_takes_a_string_or_null(void **state)
{
    (void)state;
    wipe_free(NULL);
    char *s = strdup("X-API-KEY: pl_123");
    assert_non_null(s);
    wipe_free(s); /* no leak under the sanitizers; the bytes are gone before free */
    char *empty = strdup("");
    assert_non_null(empty);
    wipe_free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe_mem_zeroes_exactly_the_bytes_given),
        cmocka_unit_test(test_wipe_free_takes_a_string_or_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
