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

/* What job_scan_bare calls a bare job, jansson must read as an object with
 * neither an endpoint nor a retry key (integers beyond 64 bits read as reals,
 * as job_parse does). */
static int jansson_says_bare(const char *t, size_t n)
{
    json_error_t je;
    json_t *o = json_loadb(t, n, JSON_ALLOW_NUL, &je);
    if (o == NULL)
        o = json_loadb(t, n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    int bare = json_is_object(o) && json_object_get(o, "endpoint") == NULL &&
               json_object_get(o, "__plcache_retry__") == NULL;
    json_decref(o);
    return bare;
}

static void test_scan_takes_common_bare_jobs(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "{}",
        " {\"a\": 1} \n",
        "{\"function_name\": \"openai.chat\", \"kwargs\": {\"model\": \"gpt-4o\", "
        "\"messages\": [{\"role\": \"user\", \"content\": \"h\\u00e9llo \\\"q\\\" \\n\"}]}, "
        "\"tags\": [\"a\", \"b\"], \"score\": -0.5e-3, \"ok\": true, \"no\": false, "
        "\"none\": null, \"big\": 123456789012345678901234567890, \"emoji\": \"\\ud83d\\ude00\"}",
        "{\"s\": \"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80\"}",
        "{\"nul\": \"a\\u0000b\"}",
        "{\"body\": {\"endpoint\": \"/x\"}}", /* nested keys are not the envelope's */
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        assert_int_equal(job_scan_bare(yes[i], strlen(yes[i])), 1);
        assert_true(jansson_says_bare(yes[i], strlen(yes[i])));
    }
}

static void test_scan_leaves_the_rest_to_jansson(void **state)
{
    (void)state;
    static const char *const no[] = {
        "",
        "  ",
        "[]",
        "\"s\"",
        "1",
        "null",
        "{",
        "{\"a\":1",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"endpoint\": \"/x\", \"body\": {}}",
        "{\"__plcache_retry__\": {}}",
        "{\"\\u0065ndpoint\": \"/x\"}", /* an escaped key: jansson reads it */
        "{\"a\\u0000\": 1}",
        "{\"a\": 01}",
        "{\"a\": 1.}",
        "{\"a\": .5}",
        "{\"a\": +1}",
        "{\"a\": 1e400}",
        "{\"a\": -}",
        "{\"a\": 1e}",
        "{\"a\": tru}",
        "{\"a\": nul}",
        "{\"a\": \"\\ud800\"}",
        "{\"a\": \"\\udc00\"}",
        "{\"a\": \"\\ud800\\u0041\"}",
        "{\"a\": \"\\x\"}",
        "{\"a\": \"tab\there\"}",
        "{\"a\": \"\xc0\xaf\"}",
        "{\"a\": \"\xed\xa0\x80\"}",
        "{\"a\": \"\xf4\x90\x80\x80\"}",
        "{\"a\": \"\xff\"}",
        "{\"a\": \"\xe2\x9c\"}",
        "{\"a\",: 1}",
        "{\"a\" 1}",
        "{\"a\": 1,}",
        "{,}",
        "{\"a\": [1,]}",
        "{'a': 1}",
        "{\"a\": NaN}",
        "{\"a\": Infinity}",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_int_equal(job_scan_bare(no[i], strlen(no[i])), 0);
    /* Deep nesting is jansson's to judge. */
    char deep[2 * 600 + 16];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 600; i++)
        deep[n++] = '[';
    for (int i = 0; i < 600; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    assert_int_equal(job_scan_bare(deep, n), 0);
}

/* Random damage to real jobs: whatever the scan takes, jansson must take as
 * a bare job too (the scan may send anything else to jansson). */
static void test_scan_never_takes_what_jansson_refuses(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"function_name\": \"openai.chat\", \"kwargs\": {\"model\": \"gpt-4o\", \"n\": [1, 2.5, "
        "-3e2]}, "
        "\"s\": \"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\n\", \"t\": true, \"u\": null}",
        "{\"a\": {\"b\": [{\"c\": \"\xf0\x9f\x98\x80\"}, [], {}]}, \"endpointx\": 0}",
    };
    static const char alphabet[] =
        "{}[]\",:\\u0123456789abcdefeE+-.tn \t\n\x80\xc3\xa9\xed\xff\x00";
    unsigned seed = 12345;
    char buf[512];
    int taken = 0;
    for (int round = 0; round < 200000; round++) {
        const char *src = seeds[round % 2];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 3;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (n + 1);
            char c = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
            switch ((seed >> 28) % 3) {
            case 0: /* replace */
                if (at < n)
                    buf[at] = c;
                break;
            case 1: /* insert */
                if (n + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                }
                break;
            default: /* delete */
                if (at < n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
            }
        }
        if (job_scan_bare(buf, n)) {
            taken++;
            if (!jansson_says_bare(buf, n))
                fail_msg("the scan took a text jansson refuses: %.*s", (int)n, buf);
        }
    }
    print_message("# %d of 200000 damaged jobs still bare by the scan, all read by jansson\n",
                  taken);
    assert_true(taken > 1000);
}

static void test_a_scanned_bare_job_dies_and_retries_with_its_job(void **state)
{
    (void)state;
    wjob j;
    const char *t = "{\"uid\": \"x\", \"big\": 123456789012345678901234567890}";
    parse(t, &j);
    assert_null(j.invalid);
    assert_null(j.orig); /* not parsed: the scan was enough */
    char *dead = job_dead_text(&j, "rejected", 400, 1, "2026-11-27T00:00:00Z");
    assert_non_null(dead);
    assert_non_null(strstr(dead, "\"uid\":\"x\""));
    free(dead);
    wjob k;
    const char *u = "{\"uid\": \"y\"}";
    parse(u, &k);
    char *retry = job_retry_text(&k, 2, "n-1");
    assert_non_null(retry);
    wjob r;
    parse(retry, &r);
    assert_null(r.invalid);
    assert_int_equal(r.attempts, 2);
    assert_string_equal(r.steps[0].endpoint, "/log-request");
    free(retry);
    job_free(&r);
    job_free(&k);
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
    parse("{\"endpoint\": \"/log-request\", \"body\": {}, \"then\": [{\"endpoint\": "
          "\"/rest/track-score\", \"body\": {}}]}",
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
        "{\"endpoint\": \"/log-request\", \"body\": [1]}",
        "{\"endpoint\": \"/log-request\"}",
        "{\"endpoint\": 5, \"body\": {}}",
        "{\"endpoint\": \"/log-request\", \"body\": {}, \"then\": {}}",
        "{\"endpoint\": \"/log-request\", \"body\": {}, \"then\": [{\"endpoint\": "
        "\"/rest/track-score\"}]}",
        /* Only the API paths of DESIGN.md section 6, compared once decoded. */
        "{\"endpoint\": \"/a\", \"body\": {}}",
        "{\"endpoint\": \"/%2e%2e/%2e%2e/admin\", \"body\": {}}",
        "{\"endpoint\": \"/spans-bulk?x=1\", \"body\": {}}",
        "{\"endpoint\": \"/log-request\", \"body\": {}, \"then\": [{\"endpoint\": \"/b\", "
        "\"body\": {}}]}",
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
        "{\"endpoint\": \"/rest/track-request\", \"body\": {\"x\": 1}, \"then\": [{\"endpoint\": "
        "\"/rest/track-score\", "
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
    assert_string_equal(r.steps[0].endpoint, "/rest/track-score");
    assert_string_equal(r.steps[0].body, "{\"y\":2,\"request_id\":5}");
    /* The dead entry of the retried job names the original job. */
    char *d = job_dead_text(&r, "HTTP 500", 500, 8, "2026-11-27T08:00:00Z");
    assert_non_null(d);
    assert_non_null(strstr(d, "\"job\":{\"endpoint\":\"/rest/track-request\""));
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

/* What is sent is the known path itself, never the text the job gave: an
 * escape cannot reach another path under the base (DESIGN.md section 6). */
static void test_envelope_endpoints_are_sent_as_the_known_path(void **state)
{
    (void)state;
    wjob j;
    parse("{\"endpoint\": \"/rest/track%2Dscore\", \"body\": {\"request_id\": 1, \"score\": 5}, "
          "\"then\": [{\"endpoint\": \"%2Frest%2Ftrack-metadata\", \"body\": {}}]}",
          &j);
    assert_null(j.invalid);
    assert_int_equal(j.nsteps, 2);
    assert_string_equal(j.steps[0].endpoint, "/rest/track-score");
    assert_string_equal(j.steps[1].endpoint, "/rest/track-metadata");
    job_free(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_object_is_sent_as_written_to_log_request),
        cmocka_unit_test(test_scan_takes_common_bare_jobs),
        cmocka_unit_test(test_scan_leaves_the_rest_to_jansson),
        cmocka_unit_test(test_scan_never_takes_what_jansson_refuses),
        cmocka_unit_test(test_a_scanned_bare_job_dies_and_retries_with_its_job),
        cmocka_unit_test(test_envelope_with_then_steps),
        cmocka_unit_test(test_request_id_from_request_id_field),
        cmocka_unit_test(test_invalid_jobs),
        cmocka_unit_test(test_retry_wrapper_round_trip_keeps_original_attempts_and_remaining_steps),
        cmocka_unit_test(test_dead_entry_of_invalid_text_holds_the_text),
        cmocka_unit_test(test_envelope_endpoints_are_sent_as_the_known_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
