/* test_job.c -- log jobs: bare, envelopes, follow-ups, retry wrappers, dead entries. */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "worker/job.h"

static void parse(const char *text, wjob *j)
{
    assert_int_equal(job_parse(text, strlen(text), j), 0);
}

static void test_bare_object_is_sent_as_written_to_log_request(void **state)
{
    (void)state;
    wjob j;
    const char *t =
        "{\"function_name\": \"openai.chat\",  \"big\": 123456789012345678901234567890}";
    parse(t, &j);
    assert_null(j.invalid);
    assert_int_equal(j.nsteps, 1);
    assert_string_equal(j.steps[0].endpoint, "/log-request");
    assert_string_equal(j.steps[0].body, t);
    assert_int_equal(j.attempts, 0);
    job_free(&j);
}

static void test_envelope_with_then_steps(void **state)
{
    (void)state;
    wjob j;
    parse("{\"endpoint\": \"/rest/track-request\", \"body\": {\"a\": 1}, \"then\": ["
          "{\"endpoint\": \"/rest/track-score\", \"body\": {\"score\": 90}},"
          "{\"endpoint\": \"/rest/track-metadata\", \"body\": {\"metadata\": {}}}]}",
          &j);
    assert_null(j.invalid);
    assert_int_equal(j.nsteps, 3);
    assert_string_equal(j.steps[0].endpoint, "/rest/track-request");
    assert_string_equal(j.steps[0].body, "{\"a\":1}");
    const char *ans = "{\"success\": true, \"id\": 77}";
    assert_int_equal(job_set_request_id(&j, ans, strlen(ans)), 0);
    assert_string_equal(j.steps[1].body, "{\"score\":90,\"request_id\":77}");
    assert_string_equal(j.steps[2].body, "{\"metadata\":{},\"request_id\":77}");
    assert_string_equal(j.steps[0].body, "{\"a\":1}");
    job_free(&j);
}

static void test_request_id_from_request_id_field(void **state)
{
    (void)state;
    wjob j;
    parse("{\"endpoint\": \"/a\", \"body\": {}, \"then\": [{\"endpoint\": \"/b\", \"body\": {}}]}",
          &j);
    const char *ans = "{\"request_id\": \"r-9\"}";
    assert_int_equal(job_set_request_id(&j, ans, strlen(ans)), 0);
    assert_string_equal(j.steps[1].body, "{\"request_id\":\"r-9\"}");
    job_free(&j);
}

static void test_invalid_jobs(void **state)
{
    (void)state;
    const char *bad[] = {
        "[1]",
        "\"text\"",
        "not json",
        "",
        "{\"endpoint\": \"http://evil/\", \"body\": {}}",
        "{\"endpoint\": \"rest/x\", \"body\": {}}",
        "{\"endpoint\": \"//evil\", \"body\": {}}",
        "{\"endpoint\": \"/a/../b\", \"body\": {}}",
        "{\"endpoint\": \"/a b\", \"body\": {}}",
        "{\"endpoint\": \"/a\", \"body\": [1]}",
        "{\"endpoint\": \"/a\"}",
        "{\"endpoint\": 5, \"body\": {}}",
        "{\"endpoint\": \"/a\", \"body\": {}, \"then\": {}}",
        "{\"endpoint\": \"/a\", \"body\": {}, \"then\": [{\"endpoint\": \"/b\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wjob j;
        parse(bad[i], &j);
        assert_non_null(j.invalid);
        assert_non_null(j.orig);
        job_free(&j);
    }
}

static void test_retry_wrapper_round_trip_keeps_original_attempts_and_remaining_steps(void **state)
{
    (void)state;
    wjob j, r;
    const char *orig =
        "{\"endpoint\": \"/a\", \"body\": {\"x\": 1}, \"then\": [{\"endpoint\": \"/b\", "
        "\"body\": {\"y\": 2}}]}";
    parse(orig, &j);
    assert_int_equal(job_set_request_id(&j, "{\"id\": 5}", 9), 0); /* 9 = strlen */
    j.next = 1;                                                    /* the first step succeeded */
    char *text = job_retry_text(&j, 3, "w1-7");
    assert_non_null(text);
    parse(text, &r);
    assert_null(r.invalid);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.nsteps, 1);
    assert_string_equal(r.steps[0].endpoint, "/b");
    assert_string_equal(r.steps[0].body, "{\"y\":2,\"request_id\":5}");
    /* The dead entry of the retried job names the original job. */
    char *d = job_dead_text(&r, "HTTP 500", 500, 8, "2026-11-27T08:00:00Z");
    assert_non_null(d);
    assert_non_null(strstr(d, "\"job\":{\"endpoint\":\"/a\""));
    assert_non_null(strstr(d, "\"status\":500"));
    assert_non_null(strstr(d, "\"attempts\":8"));
    free(d);
    free(text);
    job_free(&r);
    job_free(&j);
}

static void test_dead_entry_of_invalid_text_holds_the_text(void **state)
{
    (void)state;
    wjob j;
    parse("not json", &j);
    char *d = job_dead_text(&j, "not a JSON object", 0, 0, "2026-11-27T08:00:00Z");
    assert_string_equal(d, "{\"job\":\"not json\",\"error\":\"not a JSON object\",\"status\":null,"
                           "\"attempts\":0,\"failed_at\":\"2026-11-27T08:00:00Z\"}");
    free(d);
    job_free(&j);
}

static void test_endpoint_rules(void **state)
{
    (void)state;
    assert_true(job_endpoint_ok("/log-request"));
    assert_true(job_endpoint_ok("/rest/track-score"));
    assert_true(job_endpoint_ok("/spans-bulk?x=1"));
    assert_false(job_endpoint_ok(""));
    assert_false(job_endpoint_ok("log-request"));
    assert_false(job_endpoint_ok("//host/x"));
    assert_false(job_endpoint_ok("/a/../../x"));
    assert_false(job_endpoint_ok("/a\\b"));
    assert_false(job_endpoint_ok("/a#frag"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_object_is_sent_as_written_to_log_request),
        cmocka_unit_test(test_envelope_with_then_steps),
        cmocka_unit_test(test_request_id_from_request_id_field),
        cmocka_unit_test(test_invalid_jobs),
        cmocka_unit_test(test_retry_wrapper_round_trip_keeps_original_attempts_and_remaining_steps),
        cmocka_unit_test(test_dead_entry_of_invalid_text_holds_the_text),
        cmocka_unit_test(test_endpoint_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
