/* test_buf.c -- the bounded buffer and the Prometheus writers. */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/metrics.h"

static void test_buf_appends_and_stays_nul_terminated(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_puts(&b, "abc"), 0);
    assert_int_equal(buf_putc(&b, 'd'), 0);
    assert_int_equal(buf_printf(&b, "-%d-", 42), 0);
    assert_string_equal(b.data, "abcd-42-");
    assert_int_equal(b.len, 8);
    buf_free(&b);
}

static void test_buf_refuses_past_its_maximum_and_keeps_content(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_puts(&b, "12345678"), 0);
    assert_int_equal(buf_putc(&b, '9'), -1);
    assert_int_equal(buf_printf(&b, "%s", "x"), -1);
    assert_string_equal(b.data, "12345678");
    buf_free(&b);
}

static void test_buf_steal_hands_over_and_empties(void **state)
{
    (void)state;
    buf b;
    size_t n = 99;
    buf_init(&b, 10);
    char *empty = buf_steal(&b, &n);
    assert_non_null(empty);
    assert_int_equal(n, 0);
    assert_string_equal(empty, "");
    free(empty);
    buf_append(&b, "a\0b", 3);
    char *p = buf_steal(&b, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "a\0b", 3);
    assert_null(b.data);
    free(p);
    buf_free(&b);
}

static void test_histogram_counts_cumulative_buckets(void **state)
{
    (void)state;
    static const double bounds[] = {0.1, 1};
    mhist hi;
    mhist_init(&hi, bounds, 2);
    mhist_observe(&hi, 0.05);
    mhist_observe(&hi, 0.1);
    mhist_observe(&hi, 0.5);
    mhist_observe(&hi, 7);
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(metrics_histogram(&b, "x_seconds", "help text", &hi), 0);
    assert_non_null(strstr(b.data, "# TYPE x_seconds histogram\n"));
    assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"0.1\"} 2\n"));
    assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"1\"} 3\n"));
    assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(b.data, "x_seconds_count 4\n"));
    assert_non_null(strstr(b.data, "x_seconds_sum 7.65\n"));
    buf_free(&b);
}

static void test_sample_with_and_without_labels(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    metrics_sample(&b, "a_total", "status=\"200\"", 3);
    metrics_sample(&b, "b", NULL, 1.5);
    assert_string_equal(b.data, "a_total{status=\"200\"} 3\nb 1.5\n");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_appends_and_stays_nul_terminated),
        cmocka_unit_test(test_buf_refuses_past_its_maximum_and_keeps_content),
        cmocka_unit_test(test_buf_steal_hands_over_and_empties),
        cmocka_unit_test(test_histogram_counts_cumulative_buckets),
        cmocka_unit_test(test_sample_with_and_without_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
