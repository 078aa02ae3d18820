/* test_plan.c -- event payloads to cache plans; the include_llm_kwargs refusal rule. */
#include "cm.h"

#include <stdio.h>
#include <string.h>

#include "model/pturl.h"
#include "model/plan.h"

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
    assert_true(p.at_us == 1701468357000000LL);
    plan_free(&p);
    p = parse("prompt_template_created", "{\"prompt_template_name\": \"N\", "
                                         "\"prompt_template_version_number\": \"1\"}");
    assert_int_equal(p.kind, PLAN_VERSION);
    assert_true(p.version == 1 && p.id == -1);
    plan_free(&p);
}

/* The event's time is what orders its operations: read when PromptLayer's. */
static void test_event_time_is_read_when_readable(void **state)
{
    (void)state;
    static const struct {
        const char *ts;
        long long want;
    } rows[] = {
        {"\"2023-12-01T22:05:57.924833\"", 1701468357924833LL},
        {"\"2023-12-01T22:05:57Z\"", 1701468357000000LL},
        {"\"yesterday\"", -1},
        {"1701468357", -1},
        {"null", -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char body[512], err[128];
        plan p;
        snprintf(body, sizeof(body),
                 "{\"details\": {\"prompt_template_name\": \"A\", \"prompt_template_label\": "
                 "\"prod\"}, \"timestamp\": %s}",
                 rows[i].ts);
        assert_int_equal(plan_from_event("prompt_template_label_deleted", body, strlen(body), &p,
                                         err, sizeof(err)),
                         0);
        if (p.at_us != rows[i].want)
            fail_msg("row %zu: %lld", i, p.at_us);
        plan_free(&p);
    }
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

/* DESIGN.md section 4's table, as steps: what each kind fetches and what
 * it writes at once. */
static void test_steps_of_each_plan(void **state)
{
    (void)state;
    static const struct {
        plan_kind kind;
        long long version, id, at_us;
        const char *label;
        int fetch;
        field_kind target;
        plan_pre_kind pre;
        int rebuild_old;
    } rows[] = {
        {PLAN_VERSION, 3, 12, 7, NULL, 1, FIELD_VERSION, PLAN_PRE_NONE, 0},
        {PLAN_REFRESH_VERSION, 3, 12, 7, NULL, 1, FIELD_VERSION, PLAN_PRE_NONE, 0},
        {PLAN_LABEL, 3, 12, 7, "prod", 1, FIELD_LABEL, PLAN_PRE_COPY, 0},
        {PLAN_LABEL, -1, 12, 7, "prod", 1, FIELD_LABEL, PLAN_PRE_NONE, 0},
        /* Without its time an event cannot say it is newer: fetch only. */
        {PLAN_LABEL, 3, 12, -1, "prod", 1, FIELD_LABEL, PLAN_PRE_NONE, 0},
        {PLAN_LABEL_DELETE, -1, 12, 7, "prod", 1, FIELD_LABEL, PLAN_PRE_DEL, 0},
        {PLAN_LABEL_DELETE, -1, 12, -1, "prod", 1, FIELD_LABEL, PLAN_PRE_NONE, 0},
        /* Without its id a delete cannot say which template it removes. */
        {PLAN_DELETE, -1, 12, 7, NULL, 1, FIELD_LATEST, PLAN_PRE_DROP, 0},
        {PLAN_DELETE, -1, -1, 7, NULL, 1, FIELD_LATEST, PLAN_PRE_NONE, 0},
        {PLAN_RENAME, -1, 12, 7, NULL, 0, 0, PLAN_PRE_NONE, 1},
        {PLAN_NONE, -1, 12, 7, NULL, 0, 0, PLAN_PRE_NONE, 0},
        {PLAN_INVALID, 3, 12, 7, "x", 0, 0, PLAN_PRE_NONE, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        plan p = {.kind = rows[i].kind,
                  .version = rows[i].version,
                  .id = rows[i].id,
                  .at_us = rows[i].at_us,
                  .label = (char *)rows[i].label};
        plan_steps s = plan_steps_of(&p);
        /* A new version's event also asks for latest: it may be newer already. */
        if (s.fetch_latest != (rows[i].kind == PLAN_VERSION))
            fail_msg("row %zu: fetch_latest %d", i, s.fetch_latest);
        if (s.fetch != rows[i].fetch || s.pre != rows[i].pre ||
            s.rebuild_old != rows[i].rebuild_old ||
            (s.fetch && s.target.kind != rows[i].target))
            fail_msg("row %zu (%s): fetch %d pre %d rebuild %d", i, plan_kind_name(p.kind), s.fetch,
                     s.pre, s.rebuild_old);
        char a[64], b[64];
        if (s.fetch && s.target.kind == FIELD_VERSION)
            assert_true(s.target.version == rows[i].version);
        if (s.fetch && s.target.kind == FIELD_LABEL)
            assert_string_equal(s.target.label, rows[i].label);
        if (s.pre == PLAN_PRE_COPY) {
            assert_true(field_format(a, sizeof(a), &s.pre_field) > 0);
            assert_true(field_format(b, sizeof(b), &s.pre_from) > 0);
            assert_string_equal(a, "label:prod");
            assert_string_equal(b, "version:3");
        }
        if (s.pre == PLAN_PRE_DEL) {
            assert_true(field_format(a, sizeof(a), &s.pre_field) > 0);
            assert_string_equal(a, "label:prod");
        }
    }
}

/* How each answer is written, for each plan kind and field. */
static void test_write_of_each_answer(void **state)
{
    (void)state;
    static const struct {
        plan_kind kind;
        field_kind target;
        long status;
        plan_write want;
    } rows[] = {
        {PLAN_VERSION, FIELD_VERSION, 200, PLAN_W_SET},
        {PLAN_VERSION, FIELD_LATEST, 200, PLAN_W_LATEST},
        {PLAN_VERSION, FIELD_LATEST, 404, PLAN_W_DROP},
        {PLAN_VERSION, FIELD_VERSION, 404, PLAN_W_DEL},
        {PLAN_VERSION, FIELD_VERSION, 500, PLAN_W_FAIL},
        {PLAN_VERSION, FIELD_VERSION, 0, PLAN_W_FAIL},
        {PLAN_REFRESH_VERSION, FIELD_VERSION, 200, PLAN_W_HOLDING},
        {PLAN_REFRESH_VERSION, FIELD_VERSION, 404, PLAN_W_DEL},
        {PLAN_LABEL, FIELD_LABEL, 200, PLAN_W_SET},
        {PLAN_LABEL, FIELD_LABEL, 404, PLAN_W_DEL},
        {PLAN_LABEL, FIELD_LABEL, 401, PLAN_W_FAIL},
        {PLAN_RENAME, FIELD_LATEST, 200, PLAN_W_LATEST},
        {PLAN_RENAME, FIELD_LATEST, 404, PLAN_W_DROP},
        {PLAN_RENAME, FIELD_VERSION, 200, PLAN_W_SET},
        {PLAN_RENAME, FIELD_LABEL, 200, PLAN_W_SET},
        {PLAN_NONE, FIELD_LATEST, 200, PLAN_W_LATEST},
        {PLAN_NONE, FIELD_LATEST, 404, PLAN_W_DROP},
        {PLAN_NONE, FIELD_VERSION, 200, PLAN_W_SET},
        {PLAN_NONE, FIELD_LABEL, 404, PLAN_W_DEL},
        {PLAN_NONE, FIELD_LABEL, 429, PLAN_W_FAIL},
        {PLAN_NONE, FIELD_LABEL, -1, PLAN_W_FAIL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        plan_write w = plan_write_of(rows[i].kind, rows[i].target, rows[i].status);
        if (w != rows[i].want)
            fail_msg("row %zu (%s, status %ld): %d, want %d", i, plan_kind_name(rows[i].kind),
                     rows[i].status, w, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_created_fetches_that_version),
        cmocka_unit_test(test_label_events),
        cmocka_unit_test(test_event_time_is_read_when_readable),
        cmocka_unit_test(test_rename_delete_update),
        cmocka_unit_test(test_other_events_only_recorded),
        cmocka_unit_test(test_template_events_missing_what_they_need_are_invalid),
        cmocka_unit_test(test_flag_refusals_are_the_4xx_that_do_not_pass),
        cmocka_unit_test(test_steps_of_each_plan),
        cmocka_unit_test(test_write_of_each_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
