/* test_timeutil.c -- ISO 8601 timestamps as PromptLayer writes them. */
#include "cm.h"

#include <string.h>

#include "core/timeutil.h"

static int64_t parse(const char *s)
{
    int64_t ms = -1;
    if (time_parse_iso8601(s, strlen(s), &ms) != 0)
        return INT64_MIN;
    return ms;
}

static void test_naive_timestamp_is_utc(void **state)
{
    (void)state;
    /* python3: datetime(2023,12,1,22,5,57,924833,tzinfo=timezone.utc).timestamp() */
    assert_true(parse("2023-12-01T22:05:57.924833") == 1701468357924LL);
    assert_true(parse("1970-01-01T00:00:00") == 0);
}

static void test_z_and_offsets(void **state)
{
    (void)state;
    assert_true(parse("2023-12-01T22:05:57Z") == 1701468357000LL);
    assert_true(parse("2023-12-01T23:05:57+01:00") == 1701468357000LL);
    assert_true(parse("2023-12-01T17:35:57-0430") == 1701468357000LL);
    assert_true(parse("2023-12-02T00:05:57+02") == 1701468357000LL);
    assert_true(parse("2023-12-01 22:05:57.5") == 1701468357500LL);
}

static void test_leap_days_and_month_ends(void **state)
{
    (void)state;
    assert_true(parse("2024-02-29T00:00:00") == 1709164800000LL);
    assert_true(parse("2023-02-29T00:00:00") == INT64_MIN);
    assert_true(parse("2000-02-29T12:00:00") == 951825600000LL);
    assert_true(parse("1900-02-29T00:00:00") == INT64_MIN);
}

static void test_unreadable_timestamps(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "yesterday",
                         "2023-12-01",
                         "2023-12-01T22:05",
                         "2023-13-01T00:00:00",
                         "2023-12-32T00:00:00",
                         "2023-12-01T24:00:00",
                         "2023-12-01T22:05:57.",
                         "2023-12-01T22:05:57.1234567890",
                         "2023-12-01T22:05:57+25:00",
                         "2023-12-01T22:05:57 ",
                         "2023-12-01T22:05:57ZZ",
                         "+2023-12-01T22:05:57"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(parse(bad[i]) == INT64_MIN);
}

static void test_microseconds_keep_six_digits(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t us, ms;
    } rows[] = {
        {"2023-12-01T22:05:57.924833", 1701468357924833LL, 1701468357924LL},
        {"2023-12-01T22:05:57.924833999", 1701468357924833LL, 1701468357924LL},
        {"2023-12-01T22:05:57.9", 1701468357900000LL, 1701468357900LL},
        {"2023-12-01T22:05:57Z", 1701468357000000LL, 1701468357000LL},
        /* Before 1970 the milliseconds are floored, as the seconds are. */
        {"1969-12-31T23:59:59.9995", -500LL, -1LL},
        {"1969-12-31T23:59:59.000001", -999999LL, -1000LL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int64_t us = 0;
        if (time_parse_iso8601_us(rows[i].s, strlen(rows[i].s), &us) != 0 || us != rows[i].us)
            fail_msg("row %zu: %s", i, rows[i].s);
        if (parse(rows[i].s) != rows[i].ms)
            fail_msg("row %zu (ms): %s", i, rows[i].s);
    }
}

static void test_format_now_round_trips(void **state)
{
    (void)state;
    char out[40];
    time_format_now(out, sizeof(out));
    assert_int_equal(strlen(out), 27);
    int64_t ms = parse(out);
    int64_t now = time_now_ms();
    assert_true(ms <= now && now - ms < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_naive_timestamp_is_utc),
        cmocka_unit_test(test_z_and_offsets),
        cmocka_unit_test(test_leap_days_and_month_ends),
        cmocka_unit_test(test_unreadable_timestamps),
        cmocka_unit_test(test_microseconds_keep_six_digits),
        cmocka_unit_test(test_format_now_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
