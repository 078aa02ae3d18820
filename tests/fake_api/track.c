/* track.c -- the fake API's tracking endpoints.
 *
 * One table row per endpoint: its path, the schema its body must pass, and
 * the function that builds its answer once it did. Parsing keeps NUL
 * characters (JSON allows \u0000) and, when a body holds an integer beyond
 * 64 bits, parses it again with every integer read as a real, telling the
 * checker that whole reals count as integers there.
 */
#include "track.h"

#include <string.h>

typedef json_t *(*answer_fn)(const json_t *body, int64_t *counter, int64_t *first_id);

struct track_endpoint {
    const char *path;
    const char *schema;
    int status;
    answer_fn answer;
};

static int64_t take_id(int64_t *counter)
{
    return ++*counter;
}

static json_t *member_or_null(const json_t *body, const char *key)
{
    const json_t *v = json_object_get(body, key);
    return (v != NULL) ? json_deep_copy(v) : json_null();
}

/* https://docs.promptlayer.com/reference/log-request: 201 with the id and
 * the prompt version the log was filed under. */
static json_t *answer_log_request(const json_t *body, int64_t *counter, int64_t *first_id)
{
    *first_id = take_id(counter);
    const json_t *params = json_object_get(body, "parameters");
    const json_t *status = json_object_get(body, "status");
    return json_pack(
        "{s:I,s:{s:o,s:n,s:{s:{s:O,s:O,s:o}}},s:o,s:o,s:o}", "id", (json_int_t)*first_id,
        "prompt_version", "prompt_template", json_deep_copy(json_object_get(body, "input")),
        "commit_message", "metadata", "model", "provider", json_object_get(body, "provider"),
        "name", json_object_get(body, "model"), "parameters",
        json_is_object(params) ? json_deep_copy(params) : json_object(), "status",
        json_is_string(status) ? json_copy((json_t *)status) : json_string("SUCCESS"), "error_type",
        member_or_null(body, "error_type"), "error_message", member_or_null(body, "error_message"));
}

static json_t *tracked(int64_t *counter, int64_t *first_id, const char *message)
{
    *first_id = take_id(counter);
    return json_pack("{s:b,s:s}", "success", 1, "message", message);
}

static json_t *answer_score(const json_t *body, int64_t *counter, int64_t *first_id)
{
    (void)body;
    return tracked(counter, first_id, "Score tracked successfully");
}

static json_t *answer_metadata(const json_t *body, int64_t *counter, int64_t *first_id)
{
    (void)body;
    return tracked(counter, first_id, "Metadata tracked successfully");
}

static json_t *answer_prompt(const json_t *body, int64_t *counter, int64_t *first_id)
{
    (void)body;
    return tracked(counter, first_id, "Prompt tracked successfully");
}

static json_t *answer_group(const json_t *body, int64_t *counter, int64_t *first_id)
{
    (void)body;
    return tracked(counter, first_id, "Group tracked successfully");
}

static json_t *answer_track_request(const json_t *body, int64_t *counter, int64_t *first_id)
{
    (void)body;
    *first_id = take_id(counter);
    return json_pack("{s:b,s:I,s:n,s:s}", "success", 1, "request_id", (json_int_t)*first_id,
                     "prompt_blueprint", "message", "Request tracked successfully");
}

/* One id per span, the request's id being the first span's (or a fresh
 * one when there are no spans). */
static json_t *answer_spans(const json_t *body, int64_t *counter, int64_t *first_id)
{
    const json_t *spans = json_object_get(body, "spans");
    json_t *out = json_array();
    *first_id = *counter + 1;
    if (json_array_size(spans) == 0)
        take_id(counter);
    for (size_t i = 0; out != NULL && i < json_array_size(spans); i++) {
        const json_t *s = json_array_get(spans, i);
        json_t *one = json_pack("{s:I,s:O,s:O}", "id", (json_int_t)take_id(counter), "name",
                                json_object_get(s, "name"), "span_id",
                                json_object_get(json_object_get(s, "context"), "span_id"));
        if (one == NULL || json_array_append_new(out, one) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return (out != NULL) ? json_pack("{s:b,s:o}", "success", 1, "spans", out) : NULL;
}

static const track_endpoint ENDPOINTS[] = {
    {"/log-request", "log_request", 201, answer_log_request},
    {"/rest/track-score", "track_score", 200, answer_score},
    {"/rest/track-metadata", "track_metadata", 200, answer_metadata},
    {"/rest/track-prompt", "track_prompt", 200, answer_prompt},
    {"/rest/track-group", "track_group", 200, answer_group},
    {"/rest/track-request", "track_request", 200, answer_track_request},
    {"/spans-bulk", "spans_bulk", 201, answer_spans},
};

const track_endpoint *track_find(const char *path)
{
    for (size_t i = 0; i < sizeof(ENDPOINTS) / sizeof(ENDPOINTS[0]); i++) {
        if (strcmp(path, ENDPOINTS[i].path) == 0)
            return &ENDPOINTS[i];
    }
    return NULL;
}

int track_parse_body(const char *data, size_t len, json_t **out, int *flags, json_t **detail)
{
    *out = NULL;
    *flags = 0;
    *detail = NULL;
    if (len == 0)
        return 0;
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (j == NULL && json_error_code(&jerr) == json_error_numeric_overflow) {
        j = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                       &jerr);
        *flags = SCHEMA_INTS_AS_REALS;
    }
    if (j != NULL) {
        *out = j;
        return 0;
    }
    json_t *input = json_object();
    json_t *e = schema_error("json_invalid", json_pack("[s,I]", "body", (json_int_t)jerr.position),
                             "JSON decode error", input, json_pack("{s:s}", "error", jerr.text));
    json_decref(input);
    *detail = json_array();
    if (e == NULL || *detail == NULL || json_array_append_new(*detail, e) != 0) {
        json_decref(*detail);
        *detail = NULL;
    }
    return -1;
}

void track_answer(const schema_set *set, const track_endpoint *ep, const char *data, size_t len,
                  int64_t *counter, int *status, json_t **answer, int64_t *answer_id)
{
    json_t *body = NULL;
    json_t *detail = NULL;
    int flags = 0;
    *answer = NULL;
    *answer_id = 0;
    *status = 422;
    if (track_parse_body(data, len, &body, &flags, &detail) != 0)
        goto refuse;
    detail = json_array();
    if (detail == NULL)
        goto oom;
    if (body == NULL || json_is_null(body)) {
        json_t *e =
            schema_error("missing", json_pack("[s]", "body"), "Field required", json_null(), NULL);
        if (e == NULL || json_array_append_new(detail, e) != 0)
            goto oom;
        goto refuse;
    }
    int n = schema_check(set, ep->schema, body, "body", flags, detail);
    if (n < 0)
        goto oom;
    if (n > 0)
        goto refuse;
    int64_t first = 0;
    *answer = ep->answer(body, counter, &first);
    if (*answer == NULL)
        goto oom;
    *status = ep->status;
    *answer_id = first;
    json_decref(body);
    json_decref(detail);
    return;
refuse:
    if (detail != NULL)
        *answer = json_pack("{s:o}", "detail", detail);
    detail = NULL;
    if (*answer != NULL) {
        json_decref(body);
        return;
    }
oom:
    json_decref(body);
    json_decref(detail);
    *status = 500;
    *answer = NULL;
}
