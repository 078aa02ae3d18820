/* test_daemon.c -- the shutdown drain's decisions (core/daemon). */
#include "cm.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/daemon.h"

#define S 1000000 /* one second in microseconds */

static void test_drain_waits_for_work_in_flight_until_the_timeout(void **state)
{
    (void)state;
    /* finishing, has_finish, now, deadline, grace, left, held */
    assert_int_equal(daemon_drain_decide(0, 0, 5 * S, 10 * S, 0, 3, 0), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(0, 0, 10 * S, 10 * S, 0, 3, 0), DAEMON_DRAIN_EXIT);
    assert_int_equal(daemon_drain_decide(0, 0, 11 * S, 10 * S, 0, 3, 0), DAEMON_DRAIN_EXIT);
}

static void test_drain_ends_at_once_when_nothing_is_left(void **state)
{
    (void)state;
    assert_int_equal(daemon_drain_decide(0, 0, 5 * S, 10 * S, 0, 0, 0), DAEMON_DRAIN_EXIT);
    assert_int_equal(daemon_drain_decide(0, 1, 5 * S, 10 * S, 0, 0, 0), DAEMON_DRAIN_FINISH);
    /* A blocking step holds only work still in flight. */
    assert_int_equal(daemon_drain_decide(0, 1, 11 * S, 10 * S, 3 * S, 0, 1), DAEMON_DRAIN_FINISH);
}

static void test_a_finish_step_runs_once_the_drain_is_over(void **state)
{
    (void)state;
    assert_int_equal(daemon_drain_decide(0, 1, 10 * S, 10 * S, 0, 2, 0), DAEMON_DRAIN_FINISH);
    /* Then the loop waits for it, until its own deadline. */
    assert_int_equal(daemon_drain_decide(1, 1, 12 * S, 15 * S, 0, 2, 0), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(1, 1, 12 * S, 15 * S, 0, 0, 0), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(1, 1, 15 * S, 15 * S, 0, 0, 0), DAEMON_DRAIN_EXIT);
}

static void test_a_held_drain_waits_past_the_timeout_for_the_grace_only(void **state)
{
    (void)state;
    assert_int_equal(daemon_drain_decide(0, 1, 5 * S, 10 * S, 3 * S, 2, 1), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(0, 1, 10 * S, 10 * S, 3 * S, 2, 1), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(0, 1, 12 * S, 10 * S, 3 * S, 2, 1), DAEMON_DRAIN_WAIT);
    assert_int_equal(daemon_drain_decide(0, 1, 13 * S, 10 * S, 3 * S, 2, 1), DAEMON_DRAIN_GIVE_UP);
    /* Once the step is over, the drain goes on to the finish step. */
    assert_int_equal(daemon_drain_decide(0, 1, 12 * S, 10 * S, 3 * S, 2, 0), DAEMON_DRAIN_FINISH);
}

static void test_instance_id_is_the_given_one_or_host_and_pid(void **state)
{
    (void)state;
    char out[300], want[64];
    assert_string_equal(daemon_instance_id(out, sizeof(out), "w-1"), "w-1");
    daemon_instance_id(out, sizeof(out), "");
    snprintf(want, sizeof(want), "-%ld", (long)getpid());
    size_t n = strlen(out), w = strlen(want);
    assert_true(n > w);
    assert_string_equal(out + n - w, want);
    daemon_instance_id(out, sizeof(out), NULL);
    assert_string_equal(out + n - w, want);
    assert_string_equal(daemon_instance_id(out, 4, "abcdef"), "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_waits_for_work_in_flight_until_the_timeout),
        cmocka_unit_test(test_drain_ends_at_once_when_nothing_is_left),
        cmocka_unit_test(test_a_finish_step_runs_once_the_drain_is_over),
        cmocka_unit_test(test_a_held_drain_waits_past_the_timeout_for_the_grace_only),
        cmocka_unit_test(test_instance_id_is_the_given_one_or_host_and_pid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
