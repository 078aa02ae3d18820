/* test_memcache.c -- libplcache's memory cache: hits, LRU bound, maximum age,
 * invalidation by name, and the epoch that makes an invalidation win over a
 * racing insert. */
#include "cm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/memcache.h"

#define AGE_US 1000000 /* 1 s */

static memcache *usable_cache(size_t n)
{
    memcache *m = memcache_new(n, AGE_US);
    assert_non_null(m);
    memcache_set_usable(m, 1);
    return m;
}

/* Puts with the epoch of a fresh miss (the epoch is the cache's, whichever
 * key missed); returns memcache_put's answer. */
static int put(memcache *m, const char *name, const char *field, const char *val, int64_t now)
{
    char *out = NULL;
    size_t len = 0;
    uint64_t epoch = 0;
    assert_int_equal(memcache_get(m, "(never stored)", field, now, &out, &len, &epoch), 0);
    return memcache_put(m, name, field, val, strlen(val), now, epoch);
}

/* 1 and the value's check when (name, field) is served with want. */
static int has(memcache *m, const char *name, const char *field, const char *want, int64_t now)
{
    char *out = NULL;
    size_t len = 0;
    uint64_t epoch = 0;
    int rc = memcache_get(m, name, field, now, &out, &len, &epoch);
    if (rc != 1)
        return 0;
    int same = want != NULL && len == strlen(want) && strcmp(out, want) == 0;
    free(out);
    return same;
}

static void test_new_cache_is_unusable_until_told(void **state)
{
    (void)state;
    memcache *m = memcache_new(4, AGE_US);
    assert_non_null(m);
    assert_int_equal(put(m, "A", "latest", "{}", 0), 0);
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.usable, 0);
    assert_int_equal(st.entries, 0);
    memcache_set_usable(m, 1);
    assert_int_equal(put(m, "A", "latest", "{}", 0), 1);
    assert_true(has(m, "A", "latest", "{}", 0));
    memcache_free(m);
    assert_null(memcache_new(0, AGE_US));
}

static void test_hit_returns_a_copy_and_len(void **state)
{
    (void)state;
    memcache *m = usable_cache(4);
    const char val[] = "{\"a\":\"x\\u0000y\"}";
    assert_int_equal(put(m, "Hello", "label:prod", val, 0), 1);
    char *out = NULL;
    size_t len = 0;
    uint64_t epoch = 0;
    assert_int_equal(memcache_get(m, "Hello", "label:prod", 10, &out, &len, &epoch), 1);
    assert_int_equal(len, strlen(val));
    assert_string_equal(out, val);
    out[0] = 'X'; /* the caller's copy */
    free(out);
    assert_true(has(m, "Hello", "label:prod", val, 10));
    assert_false(has(m, "Hello", "label:dev", val, 10));
    assert_false(has(m, "Hell", "label:prod", val, 10));
    /* Replacing a field keeps one entry. */
    assert_int_equal(put(m, "Hello", "label:prod", "{\"b\":2}", 0), 1);
    assert_true(has(m, "Hello", "label:prod", "{\"b\":2}", 0));
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 1);
    memcache_free(m);
}

static void test_least_recently_used_is_evicted_at_the_bound(void **state)
{
    (void)state;
    memcache *m = usable_cache(3);
    assert_int_equal(put(m, "A", "latest", "{1}", 0), 1);
    assert_int_equal(put(m, "B", "latest", "{2}", 0), 1);
    assert_int_equal(put(m, "C", "latest", "{3}", 0), 1);
    assert_true(has(m, "A", "latest", "{1}", 0)); /* A is now the most recent */
    assert_int_equal(put(m, "D", "latest", "{4}", 0), 1);
    assert_false(has(m, "B", "latest", "{2}", 0)); /* B was the least recent */
    assert_true(has(m, "A", "latest", "{1}", 0));
    assert_true(has(m, "C", "latest", "{3}", 0));
    assert_true(has(m, "D", "latest", "{4}", 0));
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evicted, 1);
    /* Many more: never above the bound. */
    char name[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(put(m, name, "latest", "{}", 0), 1);
    }
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 3);
    memcache_free(m);
}

static void test_entries_older_than_max_age_are_not_served(void **state)
{
    (void)state;
    memcache *m = usable_cache(4);
    assert_int_equal(put(m, "A", "latest", "{}", 1000), 1);
    assert_true(has(m, "A", "latest", "{}", 1000 + AGE_US));
    assert_false(has(m, "A", "latest", "{}", 1000 + AGE_US + 1));
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.expired, 1);
    memcache_free(m);
}

static void test_invalidation_drops_every_field_of_the_name_only(void **state)
{
    (void)state;
    memcache *m = usable_cache(64);
    assert_int_equal(put(m, "Hello", "latest", "{1}", 0), 1);
    assert_int_equal(put(m, "Hello", "label:prod", "{2}", 0), 1);
    assert_int_equal(put(m, "Hello", "version:3", "{3}", 0), 1);
    assert_int_equal(put(m, "Hello2", "latest", "{4}", 0), 1);
    assert_int_equal(put(m, "Other", "latest", "{5}", 0), 1);
    memcache_invalidate(m, "Hello", 5);
    assert_false(has(m, "Hello", "latest", "{1}", 0));
    assert_false(has(m, "Hello", "label:prod", "{2}", 0));
    assert_false(has(m, "Hello", "version:3", "{3}", 0));
    assert_true(has(m, "Hello2", "latest", "{4}", 0));
    assert_true(has(m, "Other", "latest", "{5}", 0));
    /* The name arrives with a length: no NUL needed. */
    memcache_invalidate(m, "Otherwise", 5);
    assert_false(has(m, "Other", "latest", "{5}", 0));
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.invalidations, 2);
    memcache_free(m);
}

static void test_invalidation_between_read_and_insert_wins(void **state)
{
    (void)state;
    memcache *m = usable_cache(8);
    char *out = NULL;
    size_t len = 0;
    uint64_t epoch = 0;
    /* A get misses memory and takes the epoch, then reads Redis... */
    assert_int_equal(memcache_get(m, "Hello", "latest", 0, &out, &len, &epoch), 0);
    /* ... an invalidation (any name) is processed meanwhile ... */
    memcache_invalidate(m, "Hello", 5);
    /* ... so what it read may be stale: the insert is refused. */
    assert_int_equal(memcache_put(m, "Hello", "latest", "{old}", 5, 0, epoch), 0);
    assert_false(has(m, "Hello", "latest", "{old}", 0));
    /* The same for a clear and for the subscription dropping and coming back. */
    assert_int_equal(memcache_get(m, "Hello", "latest", 0, &out, &len, &epoch), 0);
    memcache_clear(m);
    assert_int_equal(memcache_put(m, "Hello", "latest", "{old}", 5, 0, epoch), 0);
    assert_int_equal(memcache_get(m, "Hello", "latest", 0, &out, &len, &epoch), 0);
    memcache_set_usable(m, 0);
    memcache_set_usable(m, 1);
    assert_int_equal(memcache_put(m, "Hello", "latest", "{old}", 5, 0, epoch), 0);
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.refused, 3);
    assert_int_equal(st.entries, 0);
    memcache_free(m);
}

static void test_unusable_clears_and_bypasses(void **state)
{
    (void)state;
    memcache *m = usable_cache(8);
    assert_int_equal(put(m, "A", "latest", "{}", 0), 1);
    assert_int_equal(put(m, "B", "latest", "{}", 0), 1);
    memcache_set_usable(m, 0);
    memcache_stats st;
    memcache_get_stats(m, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.usable, 0);
    assert_false(has(m, "A", "latest", "{}", 0));
    assert_int_equal(put(m, "A", "latest", "{}", 0), 0);
    memcache_set_usable(m, 1);
    assert_false(has(m, "A", "latest", "{}", 0)); /* nothing came back by itself */
    assert_int_equal(put(m, "A", "latest", "{}", 0), 1);
    assert_true(has(m, "A", "latest", "{}", 0));
    memcache_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_cache_is_unusable_until_told),
        cmocka_unit_test(test_hit_returns_a_copy_and_len),
        cmocka_unit_test(test_least_recently_used_is_evicted_at_the_bound),
        cmocka_unit_test(test_entries_older_than_max_age_are_not_served),
        cmocka_unit_test(test_invalidation_drops_every_field_of_the_name_only),
        cmocka_unit_test(test_invalidation_between_read_and_insert_wins),
        cmocka_unit_test(test_unusable_clears_and_bypasses),
    };
    return cmocka_run_group_tests_name("memcache", tests, NULL, NULL);
}
