/* test_runenv.c -- reading scripts/run's settings file (cli/runenv), in memory. */
#include "cm.h"

#include <string.h>

#include "cli/runenv.h"

static void test_reads_what_scripts_run_writes(void **state)
{
    (void)state;
    runenv e;
    assert_int_equal(runenv_parse("# the settings of scripts/run (pid 42)\n"
                                  "#   set -a; . /x/plcache.env; set +a\n"
                                  "PLCACHE_REDIS_URL='redis://127.0.0.1:6380/0'\n"
                                  "PLCACHE_PREFIX='my pre:'\n"
                                  "PROMPTLAYER_BASE_URL='http://127.0.0.1:9/'\n"
                                  "PROMPTLAYER_API_KEY='fake-key'\n"
                                  "PLCACHE_RUN_PID=42\n"
                                  "PLCACHE_RUN_START=123456\n",
                                  &e),
                     0);
    assert_string_equal(runenv_get(&e, "PLCACHE_REDIS_URL"), "redis://127.0.0.1:6380/0");
    assert_string_equal(runenv_get(&e, "PLCACHE_PREFIX"), "my pre:");
    assert_string_equal(runenv_get(&e, "PROMPTLAYER_API_KEY"), "fake-key");
    assert_int_equal(e.pid, 42);
    assert_int_equal(e.start, 123456);
    runenv_free(&e);
}

static void test_shell_quoting_bare_words_and_a_quote_inside(void **state)
{
    (void)state;
    runenv e;
    assert_int_equal(runenv_parse("PLCACHE_REDIS_URL='redis://:it'\\''s@h:1/0'\n"
                                  "PLCACHE_PREFIX=a'b'\\'c\n",
                                  &e),
                     0);
    assert_string_equal(runenv_get(&e, "PLCACHE_REDIS_URL"), "redis://:it's@h:1/0");
    assert_string_equal(runenv_get(&e, "PLCACHE_PREFIX"), "ab'c");
    assert_int_equal(e.pid, 0);
    assert_int_equal(e.start, -1);
    runenv_free(&e);
}

static void test_keeps_only_the_settings_it_knows_and_the_first_of_each(void **state)
{
    (void)state;
    runenv e;
    assert_int_equal(
        runenv_parse("PLCACHE_LOG_LEVEL=debug\nLD_PRELOAD=/evil.so\n"
                     "PLCACHE_REDIS_URL=redis://a:1/0\nPLCACHE_REDIS_URL=redis://b:1/0",
                     &e),
        0);
    assert_null(runenv_get(&e, "PLCACHE_LOG_LEVEL"));
    assert_null(runenv_get(&e, "LD_PRELOAD"));
    assert_string_equal(runenv_get(&e, "PLCACHE_REDIS_URL"), "redis://a:1/0");
    assert_int_equal(e.n, 1);
    runenv_free(&e);
}

static void test_refuses_what_a_shell_would_run_or_read_otherwise(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "PLCACHE_REDIS_URL=$(rm -rf /)\n",
        "PLCACHE_REDIS_URL='open\n",
        "PLCACHE_REDIS_URL=a b\n",
        "PLCACHE_REDIS_URL=`x`\n",
        "PLCACHE_REDIS_URL=a;b\n",
        "plcache_redis_url=x\n",
        "=x\n",
        "PLCACHE_RUN_PID=12x\n",
        "PLCACHE_RUN_PID=0\n",
        "PLCACHE_RUN_START=-1\n",
        "PLCACHE_REDIS_URL=\"x\"\n",
        "just words\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        runenv e;
        assert_int_equal(runenv_parse(bad[i], &e), -1);
        assert_int_equal(e.n, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_what_scripts_run_writes),
        cmocka_unit_test(test_shell_quoting_bare_words_and_a_quote_inside),
        cmocka_unit_test(test_keeps_only_the_settings_it_knows_and_the_first_of_each),
        cmocka_unit_test(test_refuses_what_a_shell_would_run_or_read_otherwise),
    };
    return cmocka_run_group_tests_name("runenv", tests, NULL, NULL);
}
