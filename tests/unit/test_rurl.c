/* test_rurl.c -- Redis URL forms of DESIGN.md section 2. */
#include "cm.h"

#include <string.h>

#include "core/rurl.h"

static void test_default_url(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis://127.0.0.1:6379/0", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_null(u.user);
    assert_null(u.password);
    rurl_free(&u);
}

static void test_user_password_and_db_are_decoded(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis://app:p%40ss%3Aw@redis.local:7000/12", &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss:w");
    assert_string_equal(u.host, "redis.local");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 12);
    char d[300];
    rurl_describe(&u, d, sizeof(d));
    assert_string_equal(d, "redis.local:7000/12");
    rurl_free(&u);
}

static void test_password_only_and_default_port(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis://:secret@host", &u, err, sizeof(err)), 0);
    assert_null(u.user);
    assert_string_equal(u.password, "secret");
    assert_int_equal(u.port, 6379);
    rurl_free(&u);
}

static void test_ipv6_host(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis://[::1]:6380/2", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    rurl_free(&u);
}

static void test_unix_socket_with_db(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("unix:///run/redis/redis.sock?db=4", &u, err, sizeof(err)), 0);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_int_equal(u.db, 4);
    rurl_free(&u);
}

static void test_bad_urls_are_refused_without_echoing_the_password(void **state)
{
    (void)state;
    const char *bad[] = {
        "http://host",
        "redis://",
        "redis://host:0",
        "redis://host:99999",
        "redis://host:x",
        "redis://host/db",
        "redis://[::1",
        "unix://relative",
        "unix:///s?db=x",
        "redis://host/1?x=y",
        "redis://:%zz@host",
        "redis://host/1junk",
        "redis-sentinel://h:26379/m",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rurl u;
        char err[128] = "";
        assert_int_equal(rurl_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        assert_null(strstr(err, "zz"));
    }
}

static void test_resolve_turns_localhost_into_an_address(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis://localhost:6379", &u, err, sizeof(err)), 0);
    assert_int_equal(rurl_resolve(&u, err, sizeof(err)), 0);
    assert_true(strcmp(u.host, "127.0.0.1") == 0 || strcmp(u.host, "::1") == 0);
    rurl_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_url),
        cmocka_unit_test(test_user_password_and_db_are_decoded),
        cmocka_unit_test(test_password_only_and_default_port),
        cmocka_unit_test(test_ipv6_host),
        cmocka_unit_test(test_unix_socket_with_db),
        cmocka_unit_test(test_bad_urls_are_refused_without_echoing_the_password),
        cmocka_unit_test(test_resolve_turns_localhost_into_an_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
