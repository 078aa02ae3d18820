/* test_loglim.c -- one log line per interval, the rest counted. */
#include "cm.h"

#include "core/loglim.h"

static void test_first_of_each_interval_is_logged_the_rest_counted(void **state)
{
    (void)state;
    loglim l;
    loglim_init(&l, 10000);
    assert_int_equal(loglim_due_ms(&l), INT64_MIN);
    assert_int_equal(loglim_take(&l, 5), 1);
    assert_int_equal(loglim_due_ms(&l), 10005);
    for (int i = 0; i < 299; i++)
        assert_int_equal(loglim_take(&l, 6 + i), 0);
    assert_int_equal(loglim_take(&l, 10004), 0);
    assert_int_equal(loglim_flush(&l), 300);
    assert_int_equal(loglim_flush(&l), 0);
    /* The interval is over: the next one is logged and starts a new one. */
    assert_int_equal(loglim_take(&l, 10005), 1);
    assert_int_equal(loglim_due_ms(&l), 20005);
    assert_int_equal(loglim_take(&l, 20004), 0);
    assert_int_equal(loglim_take(&l, 90000), 1); /* long quiet: logged at once */
    assert_int_equal(loglim_flush(&l), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_of_each_interval_is_logged_the_rest_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
