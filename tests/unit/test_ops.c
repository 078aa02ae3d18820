/* test_ops.c -- the operations endpoints' routing and answers (core/ops). */
#include "cm.h"

#include <string.h>

#include "core/ops.h"

static void test_routes_follow_the_path_and_method(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        int get, with_metrics;
        ops_route want;
    } rows[] = {
        {"/healthz", 1, 1, OPS_HEALTH},    {"/readyz", 1, 1, OPS_READY},
        {"/metrics", 1, 1, OPS_METRICS},   {"/metrics", 1, 0, OPS_NOT_OURS},
        {"/metrics", 0, 0, OPS_NOT_OURS},  {"/healthz", 0, 1, OPS_BAD_METHOD},
        {"/readyz", 0, 0, OPS_BAD_METHOD}, {"/metrics", 0, 1, OPS_BAD_METHOD},
        {"/", 1, 1, OPS_NOT_OURS},         {"/healthz/", 1, 1, OPS_NOT_OURS},
        {"/HEALTHZ", 1, 1, OPS_NOT_OURS},  {"", 1, 1, OPS_NOT_OURS},
        {NULL, 1, 1, OPS_NOT_OURS},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ops_route r = ops_route_of(rows[i].path, rows[i].get, rows[i].with_metrics);
        if (r != rows[i].want)
            fail_msg("row %zu (%s): %d, want %d", i, rows[i].path ? rows[i].path : "NULL", r,
                     rows[i].want);
    }
}

static void test_answers_say_what_the_daemon_knows(void **state)
{
    (void)state;
    const char *json = NULL;
    assert_int_equal(ops_reply_of(OPS_HEALTH, 0, &json), 200);
    assert_string_equal(json, "{\"ok\":true}");
    assert_int_equal(ops_reply_of(OPS_READY, 1, &json), 200);
    assert_string_equal(json, "{\"ok\":true,\"redis\":\"up\"}");
    assert_int_equal(ops_reply_of(OPS_READY, 0, &json), 503);
    assert_string_equal(json, "{\"ok\":false,\"redis\":\"down\"}");
    assert_int_equal(ops_reply_of(OPS_BAD_METHOD, 1, &json), 405);
    assert_non_null(strstr(json, "method not allowed"));
    assert_int_equal(ops_reply_of(OPS_METRICS, 1, &json), 0);
    assert_null(json);
    assert_int_equal(ops_reply_of(OPS_NOT_OURS, 1, &json), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_follow_the_path_and_method),
        cmocka_unit_test(test_answers_say_what_the_daemon_knows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
