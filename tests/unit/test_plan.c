/* test_plan.c -- event payloads to cache plans, API URLs, cache fields. */
#include "cm.h"

#include <stdio.h>
#include <string.h>

#include "core/pturl.h"
#include "webhook/plan.h"

static plan parse(const char *type, const char *details)
{
    char body[2048], err[128];
    plan p;
    snprintf(body, sizeof(body),
             "{\"event_type\": \"%s\", \"details\": %s, \"timestamp\": \"2023-12-01T22:05:57\"}",
             type, details);
    assert_int_equal(plan_from_event(type, body, strlen(body), &p, err, sizeof(err)), 0);
    return p;
}

static void test_version_created_fetches_that_version(void **state)
{
    (void)state;
    plan p = parse("prompt_template_version_created",
                   "{\"prompt_template_name\": \"Hello\", \"prompt_template_id\": 12, "
                   "\"prompt_template_version_number\": 9}");
    assert_int_equal(p.kind, PLAN_VERSION);
    assert_string_equal(p.name, "Hello");
    assert_true(p.id == 12 && p.version == 9);
    plan_free(&p);
    p = parse("prompt_template_created", "{\"prompt_template_name\": \"N\", "
                                         "\"prompt_template_version_number\": \"1\"}");
    assert_int_equal(p.kind, PLAN_VERSION);
    assert_true(p.version == 1 && p.id == -1);
    plan_free(&p);
}

static void test_label_events(void **state)
{
    (void)state;
    const char *d = "{\"prompt_template_name\": \"Hello\", \"prompt_template_id\": 12, "
                    "\"prompt_template_version_number\": 9, "
                    "\"old_prompt_template_version_number\": 8, \"prompt_template_label\": "
                    "\"prod\"}";
    plan p = parse("prompt_template_label_moved", d);
    assert_int_equal(p.kind, PLAN_LABEL);
    assert_string_equal(p.label, "prod");
    assert_true(p.version == 9);
    plan_free(&p);
    p = parse("prompt_template_label_created", d);
    assert_int_equal(p.kind, PLAN_LABEL);
    plan_free(&p);
    p = parse("prompt_template_label_deleted", d);
    assert_int_equal(p.kind, PLAN_LABEL_DELETE);
    plan_free(&p);
    p = parse("prompt_template_label_change_approved",
              "{\"prompt_template_name\": \"Hello\", \"prompt_template_label\": \"prod\", "
              "\"change_type\": \"move\"}");
    assert_int_equal(p.kind, PLAN_LABEL);
    assert_true(p.version == -1);
    plan_free(&p);
    p = parse("prompt_template_label_change_approved",
              "{\"prompt_template_name\": \"Hello\", \"prompt_template_label\": \"prod\", "
              "\"change_type\": \"deletion\"}");
    assert_int_equal(p.kind, PLAN_LABEL_DELETE);
    plan_free(&p);
    p = parse("prompt_template_label_change_requested",
              "{\"prompt_template_name\": \"Hello\", \"prompt_template_label\": \"prod\"}");
    assert_int_equal(p.kind, PLAN_NONE);
    plan_free(&p);
}

static void test_rename_delete_update(void **state)
{
    (void)state;
    plan p = parse("prompt_template_name_changed",
                   "{\"prompt_template_id\": 3, \"prompt_template_name\": \"New\", "
                   "\"old_prompt_template_name\": \"Old\"}");
    assert_int_equal(p.kind, PLAN_RENAME);
    assert_string_equal(p.name, "New");
    assert_string_equal(p.old_name, "Old");
    plan_free(&p);
    p = parse("prompt_template_deleted",
              "{\"prompt_template_id\": 3, \"prompt_template_name\": \"New\"}");
    assert_int_equal(p.kind, PLAN_DELETE);
    plan_free(&p);
    p = parse("prompt_template_updated", "{\"prompt_template_id\": 3, \"prompt_template_name\": "
                                         "\"New\", \"prompt_template_version_number\": 4}");
    assert_int_equal(p.kind, PLAN_REFRESH_VERSION);
    plan_free(&p);
}

static void test_other_events_only_recorded(void **state)
{
    (void)state;
    const char *types[] = {"agent_run_finished", "report_finished",
                           "dataset_version_created_by_file", "something_new",
                           "prompt_template_something_new"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        plan p = parse(types[i], "{\"prompt_template_name\": \"x\"}");
        assert_int_equal(p.kind, PLAN_NONE);
        plan_free(&p);
    }
}

static void test_template_events_missing_what_they_need_are_invalid(void **state)
{
    (void)state;
    plan p = parse("prompt_template_version_created", "{\"prompt_template_name\": \"x\"}");
    assert_int_equal(p.kind, PLAN_INVALID);
    plan_free(&p);
    p = parse("prompt_template_label_moved", "{\"prompt_template_name\": \"x\"}");
    assert_int_equal(p.kind, PLAN_INVALID);
    plan_free(&p);
    p = parse("prompt_template_version_created", "{\"prompt_template_version_number\": 1}");
    assert_int_equal(p.kind, PLAN_INVALID);
    plan_free(&p);
    p = parse("prompt_template_deleted", "[]");
    assert_int_equal(p.kind, PLAN_INVALID);
    plan_free(&p);
    char err[64];
    assert_int_equal(plan_from_event("prompt_template_deleted", "nope", 4, &p, err, sizeof(err)),
                     -1);
    assert_int_equal(p.kind, PLAN_INVALID);
}

static void test_urls_encode_names_and_labels(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(plan_url(&b, "http://h:1/", "My Prompt/ü", SEL_VERSION, 3, NULL, 0), 0);
    assert_string_equal(b.data, "http://h:1/prompt-templates/My%20Prompt%2F%C3%BC?version=3");
    buf_reset(&b);
    assert_int_equal(plan_url(&b, "https://api.promptlayer.com", "a", SEL_LABEL, -1, "prod&x", 0),
                     0);
    assert_string_equal(b.data, "https://api.promptlayer.com/prompt-templates/a?label=prod%26x");
    buf_reset(&b);
    assert_int_equal(plan_url(&b, "http://h", "a.b-c_d~", SEL_LATEST, -1, NULL, 0), 0);
    assert_string_equal(b.data, "http://h/prompt-templates/a.b-c_d~");
    buf_free(&b);
}

/* The cache holds a version with its llm_kwargs (DESIGN.md section 4): the
 * flag follows the selector, or starts the query for latest. */
static void test_urls_ask_for_llm_kwargs(void **state)
{
    (void)state;
    static const struct {
        plan_selector sel;
        long long version;
        const char *label;
        const char *want;
    } rows[] = {
        {SEL_LATEST, -1, NULL, "http://h/prompt-templates/a?include_llm_kwargs=true"},
        {SEL_VERSION, 3, NULL, "http://h/prompt-templates/a?version=3&include_llm_kwargs=true"},
        {SEL_LABEL, -1, "p&q", "http://h/prompt-templates/a?label=p%26q&include_llm_kwargs=true"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        buf b;
        buf_init(&b, 4096);
        assert_int_equal(
            plan_url(&b, "http://h", "a", rows[i].sel, rows[i].version, rows[i].label, 1), 0);
        assert_string_equal(b.data, rows[i].want);
        buf_free(&b);
    }
    /* Too long with the flag: nothing is left half-written. */
    buf b;
    buf_init(&b, 30);
    assert_int_equal(plan_url(&b, "http://h", "abcdef", SEL_LATEST, -1, NULL, 1), -1);
    assert_true(b.len == 0);
    buf_free(&b);
}

/* Which answers to a request with include_llm_kwargs=true mean "ask again
 * without it" (pturl_flag_refused). */
static void test_flag_refusals_are_the_4xx_that_do_not_pass(void **state)
{
    (void)state;
    static const struct {
        long status;
        int refused;
    } rows[] = {
        {200, 0}, {201, 0}, {304, 0}, {400, 1}, {401, 0}, {403, 0}, {404, 0},
        {405, 1}, {408, 0}, {409, 1}, {413, 1}, {414, 1}, {422, 1}, {429, 0},
        {451, 1}, {499, 1}, {500, 0}, {502, 0}, {503, 0}, {0, 0},   {-1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (pturl_flag_refused(rows[i].status) != rows[i].refused)
            fail_msg("status %ld: want %d", rows[i].status, rows[i].refused);
    }
}

static void test_cache_fields(void **state)
{
    (void)state;
    plan_selector sel;
    long long v = -1;
    const char *label = NULL;
    assert_int_equal(plan_field("latest", &sel, &v, &label), 0);
    assert_int_equal(sel, SEL_LATEST);
    assert_int_equal(plan_field("version:12", &sel, &v, &label), 0);
    assert_true(sel == SEL_VERSION && v == 12);
    assert_int_equal(plan_field("label:prod", &sel, &v, &label), 0);
    assert_true(sel == SEL_LABEL && strcmp(label, "prod") == 0);
    assert_int_equal(plan_field("gen", &sel, &v, &label), -1);
    assert_int_equal(plan_field("id", &sel, &v, &label), -1);
    assert_int_equal(plan_field("version:x", &sel, &v, &label), -1);
    assert_int_equal(plan_field("label:", &sel, &v, &label), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_created_fetches_that_version),
        cmocka_unit_test(test_label_events),
        cmocka_unit_test(test_rename_delete_update),
        cmocka_unit_test(test_other_events_only_recorded),
        cmocka_unit_test(test_template_events_missing_what_they_need_are_invalid),
        cmocka_unit_test(test_urls_encode_names_and_labels),
        cmocka_unit_test(test_urls_ask_for_llm_kwargs),
        cmocka_unit_test(test_flag_refusals_are_the_4xx_that_do_not_pass),
        cmocka_unit_test(test_cache_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
