/* test_answer.c -- reading PromptLayer's template and labels answers (model/answer). */
#include "cm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/answer.h"

static void test_template_answers(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        long long version, id;
        const char *name; /* NULL: none */
    } rows[] = {
        {"{\"id\": 12, \"prompt_name\": \"Hello\", \"version\": 3}", 0, 3, 12, "Hello"},
        {"{\"version\": 1, \"prompt_name\": \"a/b ü\"}", 0, 1, -1, "a/b ü"},
        {"{\"id\": \"12\", \"version\": 1, \"prompt_name\": \"\"}", 0, 1, -1, NULL},
        {"{\"id\": -4, \"version\": 0, \"prompt_name\": 7}", 0, 0, -1, NULL},
        {"{\"id\": 1, \"version\": \"3\"}", -1, 0, 0, NULL},
        {"{\"id\": 1, \"version\": -1}", -1, 0, 0, NULL},
        {"[1, 2]", -1, 0, 0, NULL},
        {"not json", -1, 0, 0, NULL},
        /* A NUL in an answer: not one jansson reads by default, so not a template. */
        {"{\"version\": 1, \"prompt_name\": \"a\\u0000b\"}", -1, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        long long version = 0, id = 0;
        size_t len = strlen(rows[i].body);
        int rc = answer_template(rows[i].body, len, &version, &id);
        if (rc != rows[i].rc || (rc == 0 && (version != rows[i].version || id != rows[i].id)))
            fail_msg("row %zu: rc %d version %lld id %lld", i, rc, version, id);
        char *name = answer_name(rows[i].body, len);
        if ((name == NULL) != (rows[i].name == NULL) ||
            (name != NULL && strcmp(name, rows[i].name) != 0))
            fail_msg("row %zu: name %s", i, name ? name : "(none)");
        free(name);
    }
}

static int collect(const char *label, long long version, void *arg)
{
    char *out = arg; /* 256 bytes */
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s=%lld;", label, version);
    return 0;
}

static void test_labels_answers(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        const char *seen;
    } rows[] = {
        {"{\"release_labels\": [{\"release_label\": \"prod\", \"prompt_version_number\": 2}, "
         "{\"release_label\": \"dev\", \"prompt_version_number\": 1}]}",
         0, "prod=2;dev=1;"},
        /* Items without a usable label or version are passed over. */
        {"{\"release_labels\": [{\"release_label\": \"\", \"prompt_version_number\": 2}, "
         "{\"release_label\": \"x\", \"prompt_version_number\": 0}, {\"release_label\": \"y\"}, 5]}",
         0, ""},
        {"{\"release_labels\": []}", 0, ""},
        {"{\"labels\": []}", -1, ""},
        {"nope", -1, ""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char seen[256] = "";
        int rc = answer_labels(rows[i].body, strlen(rows[i].body), collect, seen);
        if (rc != rows[i].rc || strcmp(seen, rows[i].seen) != 0)
            fail_msg("row %zu: rc %d seen %s", i, rc, seen);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_answers),
        cmocka_unit_test(test_labels_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
