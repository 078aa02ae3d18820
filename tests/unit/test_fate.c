/* test_fate.c -- the worker's answer -> job fate table (model/fate.h). */
#include "cm.h"

#include "model/fate.h"

static void test_fate_table(void **state)
{
    (void)state;
    enum { MAX = 5 };
    static const struct {
        long status;
        int transient, more_steps, attempts;
        fate_kind want;
        int slow_down;
    } rows[] = {
        /* delivered */
        {200, 0, 0, 1, FATE_DONE, 0},
        {201, 0, 0, MAX, FATE_DONE, 0},
        {200, 0, 1, 1, FATE_NEXT_STEP, 0},
        {204, 0, 1, MAX + 3, FATE_NEXT_STEP, 0},
        /* the key refused: never the job's fault, attempts do not matter */
        {401, 0, 0, 1, FATE_AUTH_PAUSE, 0},
        {403, 0, 1, MAX, FATE_AUTH_PAUSE, 0},
        /* would pass: retried until the attempts run out */
        {500, 0, 0, 1, FATE_RETRY, 0},
        {503, 0, 1, MAX - 1, FATE_RETRY, 0},
        {503, 0, 0, MAX, FATE_DEAD_ATTEMPTS, 0},
        {408, 0, 0, 2, FATE_RETRY, 0},
        {429, 0, 0, 2, FATE_RETRY, 1},
        {429, 0, 0, MAX, FATE_DEAD_ATTEMPTS, 0},
        {0, 1, 0, 1, FATE_RETRY, 0},
        {0, 1, 0, MAX, FATE_DEAD_ATTEMPTS, 0},
        /* will not pass: dead at once, whatever the attempts */
        {0, 0, 0, 1, FATE_DEAD_REJECTED, 0},
        {400, 0, 0, 1, FATE_DEAD_REJECTED, 0},
        {404, 0, 1, 1, FATE_DEAD_REJECTED, 0},
        {422, 0, 0, 1, FATE_DEAD_REJECTED, 0},
        {413, 0, 0, MAX, FATE_DEAD_REJECTED, 0},
        {302, 0, 0, 1, FATE_DEAD_REJECTED, 0},
        {100, 0, 0, 1, FATE_DEAD_REJECTED, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fate f = fate_of(&(fate_in){.status = rows[i].status,
                                    .transient = rows[i].transient,
                                    .more_steps = rows[i].more_steps,
                                    .attempts = rows[i].attempts,
                                    .max_attempts = MAX});
        if (f.kind != rows[i].want || f.slow_down != rows[i].slow_down)
            fail_msg("row %zu (status %ld): %s slow %d, want %s slow %d", i, rows[i].status,
                     fate_name(f.kind), f.slow_down, fate_name(rows[i].want), rows[i].slow_down);
    }
    assert_string_equal(fate_name(FATE_DEAD_REJECTED), "dead_rejected");
    assert_string_equal(fate_name((fate_kind)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fate_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
