/* test_logreq.c -- the Log Request and tracking rules producers check. */
#include "cm.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "model/logreq.h"

/* A valid bare job, then with "%s" replaced by extra members. */
#define MSG(role, text)                                                                            \
    "{\"role\": \"" role "\", \"content\": [{\"type\": \"text\", \"text\": \"" text "\"}]}"
#define CHAT(msgs) "{\"type\": \"chat\", \"messages\": [" msgs "]}"
#define TIMES                                                                                      \
    "\"request_start_time\": \"2026-12-02T10:00:00.5Z\", \"request_end_time\": 1764669601.25"
#define BARE_WITH(in, out, more)                                                                   \
    "{\"provider\": \"openai\", \"model\": \"gpt-4o\", \"input\": " in ", \"output\": " out        \
    ", " TIMES more "}"
#define OK_IN CHAT(MSG("user", "Hi"))
#define OK_OUT CHAT(MSG("assistant", "Hello"))
#define BARE(more) BARE_WITH(OK_IN, OK_OUT, more)

typedef struct row {
    const char *job;
    const char *err; /* NULL: accepted; else a part of the one line */
} row;

static void run_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loads(rows[i].job, JSON_DECODE_ANY, &je);
        if (j == NULL)
            fail_msg("row %zu is not JSON: %s", i, je.text);
        char err[512] = "";
        int rc = logreq_check_job(j, err, sizeof(err));
        json_decref(j);
        if (rows[i].err == NULL && rc != 0)
            fail_msg("row %zu refused: %s\n  %s", i, err, rows[i].job);
        if (rows[i].err != NULL && rc == 0)
            fail_msg("row %zu accepted, want \"%s\"\n  %s", i, rows[i].err, rows[i].job);
        if (rows[i].err != NULL && strstr(err, rows[i].err) == NULL)
            fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, rows[i].err);
        if (rc != 0 && strchr(err, '\n') != NULL)
            fail_msg("row %zu: the reason is more than one line", i);
    }
}

#define RUN(rows) run_rows((rows), sizeof(rows) / sizeof((rows)[0]))

static void test_valid_log_requests_pass(void **state)
{
    (void)state;
    static const row rows[] = {
        {BARE(""), NULL},
        /* The documented example, every optional member. */
        {BARE(
             ", \"parameters\": {\"temperature\": 0.2}, \"tags\": [\"prod\"], "
             "\"metadata\": {\"session\": \"abc\"}, \"prompt_name\": \"Hello\", \"prompt_id\": 12, "
             "\"prompt_version_number\": 3, \"prompt_input_variables\": {\"n\": 1}, "
             "\"input_tokens\": 10, \"output_tokens\": 0, \"price\": 0.001, "
             "\"function_name\": \"openai.chat.completions.create\", \"score\": 100, "
             "\"score_name\": null, \"api_type\": \"chat-completions\", \"status\": \"ERROR\", "
             "\"error_type\": \"PROVIDER_TIMEOUT\", \"error_message\": \"timed out\", "
             "\"uid\": \"extra keys are fine\""),
         NULL},
        /* Nulls where the schema allows them. */
        {BARE(", \"prompt_name\": null, \"prompt_id\": null, \"prompt_version_number\": null, "
              "\"error_type\": null, \"error_message\": null, \"api_type\": null"),
         NULL},
        /* Completion blueprints, and an empty chat (the documented failure example). */
        {BARE_WITH(
             "{\"type\": \"completion\", \"content\": [{\"type\": \"text\", \"text\": \"x\"}], "
             "\"template_format\": \"jinja2\"}",
             "{\"type\": \"chat\", \"messages\": []}", ""),
         NULL},
        /* Every role, tool calls, images, thinking. */
        {BARE_WITH(
             CHAT(MSG("system", "s") "," MSG(
                 "developer",
                 "d") ","
                      "{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": "
                      "{\"url\": \"https://x/y.png\"}}, {\"type\": \"media_variable\", \"name\": "
                      "\"m\"}], \"template_format\": \"f-string\", \"input_variables\": [\"q\"]},"
                      "{\"role\": \"assistant\", \"content\": [], \"tool_calls\": [{\"id\": "
                      "\"call_1\", \"type\": \"function\", \"function\": {\"name\": \"f\", "
                      "\"arguments\": \"{}\"}}]},"
                      "{\"role\": \"tool\", \"tool_call_id\": \"call_1\", \"content\": []},"
                      "{\"role\": \"function\", \"name\": \"f\"},"
                      "{\"role\": \"placeholder\", \"name\": \"history\", \"content\": null}"),
             CHAT("{\"role\": \"assistant\", \"content\": [{\"type\": \"thinking\", "
                  "\"thinking\": \"hm\", \"signature\": \"s\"}, {\"type\": \"text\", "
                  "\"text\": \"ok\"}]}"),
             ", \"tools\": null"),
         NULL},
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"type\": \"function\", "
                   "\"function\": {\"name\": \"get_weather\", \"parameters\": {}}}], "
                   "\"tool_choice\": \"auto\", \"functions\": null}",
                   OK_OUT, ""),
         NULL},
        /* Times: ISO with offset or naive, epoch seconds or milliseconds. */
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"2024-04-03T20:57:25+00:00\", \"request_end_time\": "
         "\"2024-04-03 20:57:26\"}",
         NULL},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": 1764669600000, \"request_end_time\": 1764669601}",
         NULL},
        /* Seconds may be left out, as pydantic reads times. */
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"2026-12-02T10:00\", \"request_end_time\": "
         "\"2026-12-02T10:01+01:00\"}",
         NULL},
        /* A built-in tool. */
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"type\": \"web_search\", "
                   "\"id\": \"ws\", \"name\": \"Web\", \"description\": \"d\", \"provider\": "
                   "\"openai\", \"config\": {}}]}",
                   OK_OUT, ""),
         NULL},
    };
    RUN(rows);
}

static void test_invalid_log_requests_name_the_field(void **state)
{
    (void)state;
    static const row rows[] = {
        {"{\"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT ", " TIMES "}",
         "provider: is required"},
        {"{\"provider\": \"p\", \"input\": " OK_IN ", \"output\": " OK_OUT ", " TIMES "}",
         "model: is required"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"output\": " OK_OUT ", " TIMES "}",
         "input: is required"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", " TIMES "}",
         "output: is required"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_end_time\": 1}",
         "request_start_time: is required"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": 1}",
         "request_end_time: is required"},
        /* The old shapes the README used to show. */
        {"{\"function_name\": \"openai.chat.completions.create\", \"kwargs\": {}}",
         "provider: is required"},
        {BARE_WITH(OK_IN, "{\"role\": \"assistant\", \"content\": \"text\"}", ""),
         "output.type: is required"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": \"Hi\"}"), OK_OUT, ""),
         "input.messages[0].content: must be a list of content blocks, not a string"},
        {BARE_WITH(CHAT(MSG("user", "a") ", {\"role\": \"user\"}"), OK_OUT, ""),
         "input.messages[1].content: is required"},
        {BARE_WITH(CHAT("{\"role\": \"robot\", \"content\": []}"), OK_OUT, ""),
         "input.messages[0].role: must be one of system, user"},
        {BARE_WITH(CHAT("{\"content\": []}"), OK_OUT, ""), "input.messages[0].role: is required"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}"), OK_OUT, ""),
         "input.messages[0].content[0].type: is required"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [{\"type\": \"input_text\", \"text\": "
                        "\"x\"}]}"),
                   OK_OUT, ""),
         "input.messages[0].content[0].type: is not a content block type"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}"), OK_OUT, ""),
         "input.messages[0].content[0].text: is required"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": 5}]}"),
                   OK_OUT, ""),
         "input.messages[0].content[0].text: must be a string"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
                        "\"image_url\": {}}]}"),
                   OK_OUT, ""),
         "input.messages[0].content[0].image_url.url: is required"},
        {BARE_WITH(CHAT("{\"role\": \"tool\", \"content\": []}"), OK_OUT, ""),
         "input.messages[0].tool_call_id: is required"},
        {BARE_WITH(CHAT("{\"role\": \"placeholder\"}"), OK_OUT, ""),
         "input.messages[0].name: is required"},
        {BARE_WITH(CHAT("{\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"c\", \"function\": "
                        "{\"name\": \"f\"}}]}"),
                   OK_OUT, ""),
         "input.messages[0].tool_calls[0].function.arguments: is required"},
        {BARE_WITH(CHAT("{\"role\": \"user\", \"content\": [], \"template_format\": \"mustache\"}"),
                   OK_OUT, ""),
         "input.messages[0].template_format: must be one of f-string, jinja2"},
        {BARE_WITH("{\"type\": \"chat\"}", OK_OUT, ""), "input.messages: is required"},
        {BARE_WITH("{\"type\": \"completion\"}", OK_OUT, ""), "input.content: is required"},
        {BARE_WITH("{\"type\": \"completion\", \"content\": \"x\"}", OK_OUT, ""),
         "input.content: must be a list of content blocks, not a string"},
        {BARE_WITH("{\"type\": \"image\", \"content\": []}", OK_OUT, ""),
         "input.type: must be one of chat, completion"},
        {BARE_WITH("[]", OK_OUT, ""), "input: must be a Prompt Blueprint"},
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"type\": \"function\"}]}",
                   OK_OUT, ""),
         "input.tools[0].function: is required"},
        {BARE(", \"score\": 101"), "score: must be from 0 to 100"},
        {BARE(", \"score\": -1"), "score: must be from 0 to 100"},
        {BARE(", \"score\": 50.5"), "score: must be an integer"},
        {BARE(", \"score\": \"90\""), "score: must be an integer"},
        {BARE(", \"status\": \"OK\""), "status: must be one of SUCCESS, WARNING, ERROR"},
        {BARE(", \"error_type\": \"TIMEOUT\""), "error_type: must be one of PROVIDER_TIMEOUT"},
        {BARE(", \"metadata\": {\"n\": 1}"), "metadata.<key>: values must be strings"},
        {BARE(", \"metadata\": [\"a\"]"), "metadata: must be an object"},
        {BARE(", \"tags\": \"prod\""), "tags: must be a list"},
        {BARE(", \"tags\": [1]"), "tags[0]: must be a string"},
        {BARE(", \"prompt_version_number\": 0"), "prompt_version_number: must be 1 or more"},
        {BARE(", \"input_tokens\": -3"), "input_tokens: must be 0 or more"},
        {BARE(", \"price\": -0.5"), "price: must be 0 or more"},
        {BARE(", \"parameters\": null"), "parameters: must be an object"},
        {BARE(", \"prompt_id\": \"12\""), "prompt_id: must be an integer or null"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"yesterday\", \"request_end_time\": 1}",
         "request_start_time: must be an ISO 8601 date-time"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"2026-02-30T10:00:00\", \"request_end_time\": 1}",
         "request_start_time: must be an ISO 8601 date-time"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": true, \"request_end_time\": 1}",
         "request_start_time: must be an ISO 8601 date-time"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"2026-12-02T10:00.5\", \"request_end_time\": 1}",
         "request_start_time: must be an ISO 8601 date-time"},
        {"{\"provider\": \"p\", \"model\": \"m\", \"input\": " OK_IN ", \"output\": " OK_OUT
         ", \"request_start_time\": \"2026-12-02T10:00:00.1234567Z\", \"request_end_time\": 1}",
         "request_start_time: must be an ISO 8601 date-time"},
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"function\": {\"name\": "
                   "\"f\"}}]}",
                   OK_OUT, ""),
         "input.tools[0].type: is required"},
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"type\": \"text\"}]}",
                   OK_OUT, ""),
         "input.tools[0].type: is not a tool PromptLayer knows"},
        {BARE_WITH("{\"type\": \"chat\", \"messages\": [], \"tools\": [{\"type\": \"mcp\", "
                   "\"id\": \"m\"}]}",
                   OK_OUT, ""),
         "input.tools[0].name: is required"},
        {"[1, 2]", "the job: is not a JSON object"},
        {"\"text\"", "the job: is not a JSON object"},
        {BARE(", \"__plcache_retry__\": {}"), "__plcache_retry__: is reserved"},
    };
    RUN(rows);
}

/* Strings of up to the bound pass, one more character does not (the bound
 * counts characters, not bytes). */
static void test_lengths_count_characters(void **state)
{
    (void)state;
    char job[8192];
    char tag[2100];
    size_t n = 0;
    for (int i = 0; i < 512; i++) { /* 512 two-byte characters */
        tag[n++] = (char)0xc3;
        tag[n++] = (char)0xa9;
    }
    tag[n] = '\0';
    snprintf(job, sizeof(job), BARE(", \"tags\": [\"%s\"]"), tag);
    row ok[] = {{job, NULL}};
    RUN(ok);
    char job2[8192];
    snprintf(job2, sizeof(job2), BARE(", \"tags\": [\"x%s\"]"), tag);
    row too_long[] = {{job2, "tags[0]: must be at most 512 characters"}};
    RUN(too_long);
    char msg[1100];
    memset(msg, 'e', 1025);
    msg[1025] = '\0';
    char job3[8192];
    snprintf(job3, sizeof(job3), BARE(", \"error_message\": \"%s\""), msg);
    row long_msg[] = {{job3, "error_message: must be at most 1024 characters"}};
    RUN(long_msg);
}

static void test_envelopes_name_a_known_endpoint_and_a_right_body(void **state)
{
    (void)state;
    static const row rows[] = {
        {"{\"endpoint\": \"/log-request\", \"body\": " BARE("") "}", NULL},
        {"{\"endpoint\": \"/rest/track-score\", \"body\": {\"request_id\": 5, \"score\": 90}}",
         NULL},
        {"{\"endpoint\": \"/rest/track-metadata\", \"body\": {\"request_id\": \"5\", "
         "\"metadata\": {\"k\": \"v\"}}}",
         NULL},
        {"{\"endpoint\": \"/rest/track-prompt\", \"body\": {\"request_id\": 5, \"prompt_name\": "
         "\"Hello\", \"version\": 2}}",
         NULL},
        {"{\"endpoint\": \"/rest/track-group\", \"body\": {\"request_id\": 5, \"group_id\": 1}}",
         NULL},
        {"{\"endpoint\": \"/spans-bulk\", \"body\": {\"spans\": []}}", NULL},
        {"{\"endpoint\": \"/rest/track-request\", \"body\": {\"function_name\": \"f\", "
         "\"kwargs\": {}, \"request_response\": {}, \"request_start_time\": 1, "
         "\"request_end_time\": 2}}",
         NULL},
        /* request_id comes from the first answer in a "then" step. */
        {"{\"endpoint\": \"/log-request\", \"body\": " BARE(
             "") ", \"then\": [{\"endpoint\": "
                 "\"/rest/track-score\", \"body\": {\"score\": 90}}, {\"endpoint\": "
                 "\"/rest/track-metadata\", \"body\": {\"metadata\": {}}}]}",
         NULL},
        /* Percent-escapes are read before the path is compared. */
        {"{\"endpoint\": \"/rest/track%2Dscore\", \"body\": {\"request_id\": 5, \"score\": 9}}",
         NULL},
        {"{\"endpoint\": \"/rest/track-score\", \"body\": {\"score\": 90}}",
         "body.request_id: is required"},
        {"{\"endpoint\": \"/rest/track-score\", \"body\": {\"request_id\": 5, \"score\": 900}}",
         "body.score: must be from 0 to 100"},
        {"{\"endpoint\": \"/rest/track-prompt\", \"body\": {\"request_id\": 5, \"prompt_name\": "
         "\"\"}}",
         "body.prompt_name: must not be empty"},
        {"{\"endpoint\": \"/log-request\", \"body\": {\"provider\": \"p\"}}",
         "body.model: is required"},
        {"{\"endpoint\": \"/rest/track-score\"}", "body: is required"},
        {"{\"endpoint\": \"/rest/track-score\", \"body\": [1]}", "body: must be a JSON object"},
        {"{\"endpoint\": 5, \"body\": {}}", "endpoint: must be a string"},
        {"{\"endpoint\": \"http://evil/\", \"body\": {}}", "endpoint: is not an API path"},
        {"{\"endpoint\": \"/%2e%2e/%2e%2e/admin\", \"body\": {}}", "endpoint: is not an API path"},
        {"{\"endpoint\": \"/rest/track-score?x=1\", \"body\": {}}", "endpoint: is not an API path"},
        {"{\"endpoint\": \"/rest/track-scor%\", \"body\": {}}", "endpoint: is not an API path"},
        {"{\"endpoint\": \"/log-request\", \"body\": " BARE("") ", \"then\": {}}",
         "then: must be a list"},
        {"{\"endpoint\": \"/log-request\", \"body\": " BARE("") ", \"then\": [{\"endpoint\": "
                                                                "\"/x\", \"body\": {}}]}",
         "then[0].endpoint: is not an API path"},
        {"{\"endpoint\": \"/log-request\", \"body\": " BARE(
             "") ", \"then\": [{\"endpoint\": "
                 "\"/rest/track-score\", \"body\": {\"score\": \"high\"}}]}",
         "then[0].body.score: must be an integer"},
    };
    RUN(rows);
}

static void test_endpoints_are_the_known_paths_once_decoded(void **state)
{
    (void)state;
    static const struct {
        const char *raw;
        const char *want;
    } rows[] = {
        {"/log-request", "/log-request"},
        {"/rest/track-score", "/rest/track-score"},
        {"%2Frest%2Ftrack-group", "/rest/track-group"},
        {"/spans%2dbulk", "/spans-bulk"},
        {"/rest/track-prompt", "/rest/track-prompt"},
        {"/rest/track-metadata", "/rest/track-metadata"},
        {"/rest/track-request", "/rest/track-request"},
        {"/log-request/", NULL},
        {"/Log-Request", NULL},
        {"/%2e%2e/admin", NULL},
        {"/log-request%00", NULL},
        {"/log-request%", NULL},
        {"/log-request%zz", NULL},
        {"", NULL},
        {"log-request", NULL},
        {"//api.promptlayer.com/log-request", NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *got = logreq_endpoint(rows[i].raw);
        if (rows[i].want == NULL ? got != NULL : got == NULL || strcmp(got, rows[i].want) != 0)
            fail_msg("endpoint \"%s\": got %s", rows[i].raw, got ? got : "NULL");
    }
    assert_null(logreq_endpoint(NULL));
}

static void test_details_of_refusals_are_short_and_readable(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t outlen;
        const char *want;
    } rows[] = {
        {"{\"detail\": [{\"type\": \"missing\", \"loc\": [\"body\", \"input\", \"messages\", 0, "
         "\"content\"], \"msg\": \"Field required\"}, {\"loc\": [\"body\", \"score\"], \"msg\": "
         "\"Input should be less than or equal to 100\"}]}",
         256,
         "input.messages.0.content: Field required; score: Input should be less than or equal to "
         "100"},
        {"{\"detail\": \"Not Found\"}", 256, "Not Found"},
        {"{\"success\": false, \"message\": \"Invalid API key\"}", 256, "Invalid API key"},
        {"{\"success\": false, \"error\": \"bad\\nthing\"}", 256, "bad thing"},
        {"<html>oops</html>", 256, "<html>oops</html>"},
        {"{\"detail\": [{\"loc\": [\"query\", \"x\"], \"msg\": \"m\"}]}", 256, "query.x: m"},
        /* Cut to the room given, never inside a UTF-8 character. */
        {"{\"message\": \"\xc3\xa9\xc3\xa9\xc3\xa9\"}", 6, "\xc3\xa9\xc3\xa9"},
        {"", 16, ""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char out[256];
        logreq_detail(rows[i].body, strlen(rows[i].body), out, rows[i].outlen);
        if (strcmp(out, rows[i].want) != 0)
            fail_msg("row %zu: got \"%s\", want \"%s\"", i, out, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_log_requests_pass),
        cmocka_unit_test(test_invalid_log_requests_name_the_field),
        cmocka_unit_test(test_lengths_count_characters),
        cmocka_unit_test(test_envelopes_name_a_known_endpoint_and_a_right_body),
        cmocka_unit_test(test_endpoints_are_the_known_paths_once_decoded),
        cmocka_unit_test(test_details_of_refusals_are_short_and_readable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
