/* test_rurl.c -- Redis URL forms of DESIGN.md section 2. */
#include "cm.h"

#include <stdio.h>
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
        "redis-sentinel://h:26379/",
        "redis-sentinel://h:26379",
        "redis-sentinel:///m",
        "redis-sentinel://h:0/m",
        "redis-sentinel://h,/m",
        "redis-sentinel://a,b,c,d,e,f,g,h,i/m",
        "redis-sentinel://h/m/0",
        "redis-sentinel://h/m?x=1",
        "redis-sentinel://:%zz@h/m",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rurl u;
        char err[128] = "";
        assert_int_equal(rurl_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        assert_null(strstr(err, "zz"));
    }
}

static void test_sentinel_url_names_sentinels_master_and_db(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis-sentinel://app:s%40cret@10.0.0.1:26380,[::1],sent.local/"
                                "mymaster?db=3",
                                &u, err, sizeof(err)),
                     0);
    assert_true(u.is_sentinel);
    assert_false(u.is_unix);
    assert_int_equal(u.nsentinels, 3);
    assert_string_equal(u.sentinels[0].host, "10.0.0.1");
    assert_int_equal(u.sentinels[0].port, 26380);
    assert_string_equal(u.sentinels[1].host, "::1");
    assert_int_equal(u.sentinels[1].port, 26379);
    assert_string_equal(u.sentinels[2].host, "sent.local");
    assert_int_equal(u.sentinels[2].port, 26379);
    assert_string_equal(u.master, "mymaster");
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "s@cret");
    assert_string_equal(u.host, "");
    char d[300];
    rurl_describe(&u, d, sizeof(d));
    assert_string_equal(d, "sentinel master mymaster/3");
    snprintf(u.host, sizeof(u.host), "10.0.0.9");
    u.port = 6390;
    rurl_describe(&u, d, sizeof(d));
    assert_string_equal(d, "10.0.0.9:6390/3 (sentinel master mymaster)");
    rurl_free(&u);
}

static void test_sentinel_resolve_turns_every_sentinel_into_an_address(void **state)
{
    (void)state;
    rurl u;
    char err[128];
    assert_int_equal(rurl_parse("redis-sentinel://localhost:1,127.0.0.1:2/m", &u, err, sizeof(err)),
                     0);
    assert_int_equal(u.db, 0);
    assert_int_equal(rurl_resolve(&u, err, sizeof(err)), 0);
    assert_true(strcmp(u.sentinels[0].host, "127.0.0.1") == 0 ||
                strcmp(u.sentinels[0].host, "::1") == 0);
    assert_string_equal(u.sentinels[1].host, "127.0.0.1");
    rurl_free(&u);
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
        cmocka_unit_test(test_sentinel_url_names_sentinels_master_and_db),
        cmocka_unit_test(test_sentinel_resolve_turns_every_sentinel_into_an_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
