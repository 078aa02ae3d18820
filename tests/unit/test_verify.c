/* test_verify.c -- what each delivery deserves (DESIGN.md section 3), in memory. */
#include "cm.h"

#include <stdio.h>
#include <string.h>

#include "core/sign.h"
#include "webhook/verify.h"

/* 2023-12-01T22:05:57.924833 */
#define T0 1701468357924LL
#define EXAMPLE                                                                                    \
    "{\"event_type\":\"prompt_template_label_moved\",\"details\":{\"prompt_template_id\":12,"      \
    "\"prompt_template_name\":\"Hello\",\"prompt_template_version_number\":9,"                     \
    "\"old_prompt_template_version_number\":8,\"prompt_template_label\":\"prod\"},"                \
    "\"user_id\":1,\"user_name\":\"John Doe\",\"user_email\":\"john.doe@example.com\","            \
    "\"workspace_id\":1,\"timestamp\":\"2023-12-01T22:05:57.924833\"}"
/* python3 -c 'import json;print(json.dumps(json.loads(EXAMPLE), sort_keys=True))' */
#define EXAMPLE_CANON                                                                              \
    "{\"details\": {\"old_prompt_template_version_number\": 8, \"prompt_template_id\": 12, "       \
    "\"prompt_template_label\": \"prod\", \"prompt_template_name\": \"Hello\", "                   \
    "\"prompt_template_version_number\": 9}, \"event_type\": \"prompt_template_label_moved\", "    \
    "\"timestamp\": \"2023-12-01T22:05:57.924833\", \"user_email\": \"john.doe@example.com\", "    \
    "\"user_id\": 1, \"user_name\": \"John Doe\", \"workspace_id\": 1}"

static sign_keys keys;

static int setup(void **state)
{
    (void)state;
    char err[64];
    return sign_keys_parse(&keys, "k1,k2", err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    sign_keys_free(&keys);
    return 0;
}

static verify_outcome run(const char *secret, const char *signed_text, const char *body, long tol,
                          int64_t now, verify_result *r)
{
    char sig[65];
    sign_hmac_hex(secret, strlen(secret), signed_text, strlen(signed_text), sig);
    verify_delivery(&keys, tol, now, sig, body, strlen(body), r);
    return r->outcome;
}

static void test_example_signed_over_canonical_text_is_recorded(void **state)
{
    (void)state;
    verify_result r;
    assert_int_equal(run("k2", EXAMPLE_CANON, EXAMPLE, 300, T0 + 1000, &r), VERIFY_RECORD);
    assert_string_equal(r.event_type, "prompt_template_label_moved");
    char want[65];
    sign_sha256_hex(EXAMPLE_CANON, strlen(EXAMPLE_CANON), want);
    assert_string_equal(r.seen_hex, want);
    assert_int_equal(verify_status(r.outcome), 200);
    verify_result_free(&r);
}

static void test_signature_over_raw_body_is_recorded(void **state)
{
    (void)state;
    verify_result r;
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 300, T0, &r), VERIFY_RECORD);
    verify_result_free(&r);
}

static void test_missing_malformed_and_wrong_signatures(void **state)
{
    (void)state;
    verify_result r;
    verify_delivery(&keys, 300, T0, NULL, EXAMPLE, strlen(EXAMPLE), &r);
    assert_int_equal(r.outcome, VERIFY_NO_SIGNATURE);
    verify_delivery(&keys, 300, T0, "xyz", EXAMPLE, strlen(EXAMPLE), &r);
    assert_int_equal(r.outcome, VERIFY_BAD_SIGNATURE);
    assert_int_equal(run("k3", EXAMPLE_CANON, EXAMPLE, 300, T0, &r), VERIFY_BAD_SIGNATURE);
    assert_int_equal(verify_status(r.outcome), 401);
    assert_null(r.event_type);
}

static void test_unsigned_garbage_is_401_not_400(void **state)
{
    (void)state;
    verify_result r;
    assert_int_equal(run("nope", "garbage", "garbage", 300, T0, &r), VERIFY_BAD_SIGNATURE);
}

static void test_authentic_shapes_that_are_400(void **state)
{
    (void)state;
    verify_result r;
    const char *not_obj[] = {"garbage", "[1]", "\"s\"", "{", ""};
    for (size_t i = 0; i < sizeof(not_obj) / sizeof(not_obj[0]); i++) {
        assert_int_equal(run("k1", not_obj[i], not_obj[i], 0, T0, &r), VERIFY_NOT_OBJECT);
        assert_int_equal(verify_status(r.outcome), 400);
    }
    const char *no_type[] = {"{}", "{\"event_type\": 1}", "{\"event_type\": null}",
                             "{\"details\": {\"event_type\": \"x\"}}"};
    for (size_t i = 0; i < sizeof(no_type) / sizeof(no_type[0]); i++)
        assert_int_equal(run("k1", no_type[i], no_type[i], 0, T0, &r), VERIFY_NO_EVENT_TYPE);
}

static void test_timestamp_checks(void **state)
{
    (void)state;
    verify_result r;
    /* Within the tolerance on either side. */
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 300, T0 + 299000, &r), VERIFY_RECORD);
    verify_result_free(&r);
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 300, T0 - 299000, &r), VERIFY_RECORD);
    verify_result_free(&r);
    /* Outside it. */
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 300, T0 + 301000, &r), VERIFY_STALE);
    assert_int_equal(verify_status(r.outcome), 401);
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 300, T0 - 301000, &r), VERIFY_STALE);
    /* The check off: any time, even none. */
    assert_int_equal(run("k1", EXAMPLE, EXAMPLE, 0, T0 + 86400000LL * 365, &r), VERIFY_RECORD);
    verify_result_free(&r);
    const char *none = "{\"event_type\": \"x\"}";
    assert_int_equal(run("k1", none, none, 0, T0, &r), VERIFY_RECORD);
    verify_result_free(&r);
    /* Missing or unreadable while on. */
    assert_int_equal(run("k1", none, none, 300, T0, &r), VERIFY_BAD_TIMESTAMP);
    assert_int_equal(verify_status(r.outcome), 400);
    const char *bad = "{\"event_type\": \"x\", \"timestamp\": 1701468357}";
    assert_int_equal(run("k1", bad, bad, 300, T0, &r), VERIFY_BAD_TIMESTAMP);
}

static void test_repeated_event_type_uses_the_last(void **state)
{
    (void)state;
    verify_result r;
    const char *b = "{\"event_type\": \"first\", \"event_type\": \"second\"}";
    assert_int_equal(run("k1", b, b, 0, T0, &r), VERIFY_RECORD);
    assert_string_equal(r.event_type, "second");
    verify_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_signed_over_canonical_text_is_recorded),
        cmocka_unit_test(test_signature_over_raw_body_is_recorded),
        cmocka_unit_test(test_missing_malformed_and_wrong_signatures),
        cmocka_unit_test(test_unsigned_garbage_is_401_not_400),
        cmocka_unit_test(test_authentic_shapes_that_are_400),
        cmocka_unit_test(test_timestamp_checks),
        cmocka_unit_test(test_repeated_event_type_uses_the_last),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
