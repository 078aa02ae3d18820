/* test_retry.c -- retry classes, backoff bounds, the generator. */
#include "cm.h"

#include <stdint.h>

#include "model/retry.h"

static void test_classes(void **state)
{
    (void)state;
    static const struct {
        long status;
        int transient;
        retry_class want;
    } rows[] = {
        {200, 0, RETRY_DONE},   {201, 0, RETRY_DONE},    {299, 0, RETRY_DONE},
        {0, 1, RETRY_AGAIN},    {0, 0, RETRY_NEVER},     {408, 0, RETRY_AGAIN},
        {429, 0, RETRY_AGAIN},  {500, 0, RETRY_AGAIN},   {503, 1, RETRY_AGAIN},
        {599, 0, RETRY_AGAIN},  {401, 0, RETRY_AUTH},    {403, 0, RETRY_AUTH},
        {400, 0, RETRY_NEVER},  {404, 0, RETRY_NEVER},   {409, 0, RETRY_NEVER},
        {422, 0, RETRY_NEVER},  {100, 0, RETRY_NEVER},   {301, 0, RETRY_NEVER},
        {304, 0, RETRY_NEVER},  {600, 0, RETRY_NEVER},   {-1, 0, RETRY_NEVER},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        retry_class got = retry_classify(rows[i].status, rows[i].transient);
        if (got != rows[i].want)
            fail_msg("status %ld transient %d: class %d, want %d", rows[i].status,
                     rows[i].transient, got, rows[i].want);
    }
}

/* Full jitter: every wait within [0, min(max, base * 2^(n-1))], and the
 * bound reached (the draws spread over it). */
static void test_backoff_bounds(void **state)
{
    (void)state;
    retry_policy p = {.base_ms = 200, .max_ms = 30000, .retry_after_max_ms = 60000};
    uint64_t rng = 42;
    static const struct {
        int attempts;
        long long cap;
    } rows[] = {{1, 200}, {2, 400}, {3, 800}, {8, 25600}, {9, 30000}, {1000, 30000}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        long long lo = rows[i].cap, hi = 0;
        for (int k = 0; k < 4000; k++) {
            long long d = retry_delay_ms(&p, rows[i].attempts, -1, &rng);
            if (d < 0 || d > rows[i].cap)
                fail_msg("attempts %d: %lld outside [0, %lld]", rows[i].attempts, d, rows[i].cap);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        assert_true(lo < rows[i].cap / 10 && hi > rows[i].cap * 9 / 10);
    }
    /* No overflow with a huge base. */
    retry_policy big = {.base_ms = (1LL << 62), .max_ms = (1LL << 62) + 5, .retry_after_max_ms = 0};
    assert_true(retry_delay_ms(&big, 60, -1, &rng) <= big.max_ms);
    retry_policy zero = {.base_ms = 0, .max_ms = 0, .retry_after_max_ms = 0};
    assert_int_equal(retry_delay_ms(&zero, 3, -1, &rng), 0);
}

/* Retry-After stretches the wait, within its own bound; never shortens it. */
static void test_retry_after(void **state)
{
    (void)state;
    retry_policy p = {.base_ms = 100, .max_ms = 100, .retry_after_max_ms = 5000};
    uint64_t rng = 7;
    for (int k = 0; k < 200; k++) {
        assert_int_equal(retry_delay_ms(&p, 1, 3000, &rng), 3000);
        assert_int_equal(retry_delay_ms(&p, 1, 99999, &rng), 5000);
        long long d = retry_delay_ms(&p, 1, 0, &rng);
        assert_true(d >= 0 && d <= 100);
        d = retry_delay_ms(&p, 1, -1, &rng);
        assert_true(d >= 0 && d <= 100);
    }
}

static void test_generator(void **state)
{
    (void)state;
    uint64_t a = retry_seed(1), b = retry_seed(1);
    assert_true(a != 0 && b != 0);
    uint64_t r = 1, prev = 0;
    for (int k = 0; k < 1000; k++) {
        uint64_t x = retry_rng_next(&r);
        assert_true(r != 0 && x != prev);
        prev = x;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
