/* logreq.c -- PromptLayer's Log Request and tracking rules, checked.
 *
 * Each check walks the job with a path of where it is ("input.messages[2]
 * .content[0].text") and stops at the first broken rule, which becomes the
 * one line the producer shows. The tables below are the documented schema:
 * the message roles and what each requires, the content block types and the
 * field each one needs, the enums.
 */
#include "model/logreq.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/timeutil.h"

const char *const logreq_endpoints[] = {
    "/log-request",      "/rest/track-request", "/rest/track-score", "/rest/track-metadata",
    "/rest/track-group", "/rest/track-prompt",  "/spans-bulk",       NULL,
};

#define LOGREQ_INT_MAX LLONG_MAX /* json_int_t is long long */

typedef struct chk {
    char path[256];
    size_t plen;
    char *err;
    size_t errlen;
} chk;

/* ---- the path of the field being checked ---------------------------------- */

static size_t path_key(chk *c, const char *key)
{
    size_t saved = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s", c->plen ? "." : "", key);
    c->plen = n < 0 ? c->plen : c->plen + (size_t)n;
    if (c->plen >= sizeof(c->path))
        c->plen = sizeof(c->path) - 1;
    return saved;
}

static size_t path_index(chk *c, size_t i)
{
    size_t saved = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);
    c->plen = n < 0 ? c->plen : c->plen + (size_t)n;
    if (c->plen >= sizeof(c->path))
        c->plen = sizeof(c->path) - 1;
    return saved;
}

static void path_pop(chk *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static int bad(chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(chk *c, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", c->plen ? c->path : "the job", what);
    return -1;
}

/* ---- value rules ---------------------------------------------------------- */

typedef enum kind {
    K_STRING,
    K_STRING_NULL,
    K_INT,
    K_INT_NULL,
    K_NUMBER,
    K_BOOL,
    K_OBJECT,
    K_OBJECT_NULL,
    K_ARRAY,
    K_ARRAY_NULL,
    K_INT_OR_STRING,
    K_INT_STRING_NULL,
    K_STRING_OR_OBJECT_NULL,
    K_TIME,
    K_ANY,
} kind;

static const char *const kind_words[] = {
    "a string",
    "a string or null",
    "an integer",
    "an integer or null",
    "a number",
    "true or false",
    "an object",
    "an object or null",
    "a list",
    "a list or null",
    "an integer or a string",
    "an integer, a string or null",
    "a string, an object or null",
    "an ISO 8601 date-time or a number of seconds since the epoch",
    "any value",
};

/* 1 when v is an ISO 8601 date-time text as pydantic reads one:
 * time_parse_iso8601's form (the one PromptLayer's webhooks use), whose
 * seconds pydantic also lets go ("2026-12-02T10:00", with or without an
 * offset), and at most 6 digits of fraction. */
static int iso_datetime(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    int64_t ms;
    char with_seconds[80];
    if (len >= 16 && len + 3 < sizeof(with_seconds) &&
        (len == 16 || strchr("Zz+-", s[16]) != NULL)) {
        /* YYYY-MM-DDTHH:MM then nothing, Z or an offset: read it as HH:MM:00. */
        memcpy(with_seconds, s, 16);
        memcpy(with_seconds + 16, ":00", 3);
        memcpy(with_seconds + 19, s + 16, len - 16);
        s = with_seconds;
        len += 3;
    }
    if (time_parse_iso8601(s, len, &ms) != 0)
        return 0;
    const char *dot = memchr(s, '.', len);
    if (dot == NULL)
        dot = memchr(s, ',', len);
    size_t digits = 0;
    for (const char *p = dot ? dot + 1 : s + len; p < s + len && *p >= '0' && *p <= '9'; p++)
        digits++;
    return digits <= 6;
}

static int is_kind(const json_t *v, kind k)
{
    switch (k) {
    case K_STRING:
        return json_is_string(v);
    case K_STRING_NULL:
        return json_is_string(v) || json_is_null(v);
    case K_INT:
        return json_is_integer(v);
    case K_INT_NULL:
        return json_is_integer(v) || json_is_null(v);
    case K_NUMBER:
        return json_is_number(v);
    case K_BOOL:
        return json_is_boolean(v);
    case K_OBJECT:
        return json_is_object(v);
    case K_OBJECT_NULL:
        return json_is_object(v) || json_is_null(v);
    case K_ARRAY:
        return json_is_array(v);
    case K_ARRAY_NULL:
        return json_is_array(v) || json_is_null(v);
    case K_INT_OR_STRING:
        return json_is_integer(v) || json_is_string(v);
    case K_INT_STRING_NULL:
        return json_is_integer(v) || json_is_string(v) || json_is_null(v);
    case K_STRING_OR_OBJECT_NULL:
        return json_is_string(v) || json_is_object(v) || json_is_null(v);
    case K_TIME:
        return json_is_number(v) || (json_is_string(v) && iso_datetime(v));
    case K_ANY:
        return v != NULL;
    }
    return 0;
}

/* Code points in a UTF-8 string (jansson's strings are valid UTF-8). */
static size_t code_points(const json_t *s)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)json_string_value(s);
    size_t len = json_string_length(s);
    for (size_t i = 0; i < len; i++)
        n += (p[i] & 0xC0) != 0x80;
    return n;
}

/* One member of obj, by the rule: missing is an error when required. */
typedef struct field {
    const char *name;
    kind k;
    int required;
} field;

static int check_fields(chk *c, const json_t *obj, const field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, f[i].name);
        size_t saved = path_key(c, f[i].name);
        int rc = 0;
        if (v == NULL)
            rc = f[i].required ? bad(c, "is required") : 0;
        else if (!is_kind(v, f[i].k))
            rc = bad(c, "must be %s", kind_words[f[i].k]);
        if (rc != 0)
            return rc;
        path_pop(c, saved);
    }
    return 0;
}

#define CHECK_FIELDS(c, obj, table)                                                                \
    check_fields((c), (obj), (table), sizeof(table) / sizeof(table[0]))

/* An optional integer member within [min, max]. */
static int int_range(chk *c, const json_t *obj, const char *name, json_int_t min, json_int_t max)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v))
        return 0; /* absent or null: the kind rule decides */
    json_int_t n = json_integer_value(v);
    if (n >= min && n <= max)
        return 0;
    size_t saved = path_key(c, name);
    int rc =
        max == LOGREQ_INT_MAX
            ? bad(c, "must be %" JSON_INTEGER_FORMAT " or more", min)
            : bad(c, "must be from %" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT, min, max);
    path_pop(c, saved);
    return rc;
}

/* An optional string member of at most max code points. */
static int str_max(chk *c, const json_t *obj, const char *name, size_t max)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_string(v) || code_points(v) <= max)
        return 0;
    size_t saved = path_key(c, name);
    int rc = bad(c, "must be at most %zu characters", max);
    path_pop(c, saved);
    return rc;
}

/* An optional string member that must be one of words (NULL-terminated);
 * null is accepted when nullable. */
static int one_of(chk *c, const json_t *obj, const char *name, const char *const *words,
                  int nullable)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL || (nullable && json_is_null(v)))
        return 0;
    if (json_is_string(v))
        for (size_t i = 0; words[i]; i++)
            if (strcmp(json_string_value(v), words[i]) == 0)
                return 0;
    size_t saved = path_key(c, name);
    char list[512] = "";
    size_t len = 0;
    for (size_t i = 0; words[i] && len < sizeof(list); i++) {
        int w = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", words[i]);
        len = w < 0 ? len : len + (size_t)w;
    }
    int rc = bad(c, "must be one of %s%s", list, nullable ? " (or null)" : "");
    path_pop(c, saved);
    return rc;
}

/* Every item of an optional list member is a string (of at most max code
 * points when max > 0). */
static int strings(chk *c, const json_t *obj, const char *name, size_t max)
{
    const json_t *a = json_object_get(obj, name);
    if (!json_is_array(a))
        return 0;
    size_t i;
    const json_t *v;
    size_t s1 = path_key(c, name);
    json_array_foreach(a, i, v)
    {
        size_t s2 = path_index(c, i);
        if (!json_is_string(v))
            return bad(c, "must be a string");
        if (max > 0 && code_points(v) > max)
            return bad(c, "must be at most %zu characters", max);
        path_pop(c, s2);
    }
    path_pop(c, s1);
    return 0;
}

/* ---- Prompt Blueprint: content blocks, messages, templates ----------------- */

/* A content block: its type and the member it cannot do without (NULL: none). */
typedef struct block_rule {
    const char *type;
    const char *needs[2];
    kind needs_kind[2];
} block_rule;

static const block_rule block_rules[] = {
    {"text", {"text", NULL}, {K_STRING, K_ANY}},
    {"thinking", {"thinking", NULL}, {K_STRING, K_ANY}},
    {"code", {"code", NULL}, {K_STRING, K_ANY}},
    {"image_url", {"image_url", NULL}, {K_OBJECT, K_ANY}},
    {"media", {"media", NULL}, {K_OBJECT, K_ANY}},
    {"media_variable", {"name", NULL}, {K_STRING, K_ANY}},
    {"output_media", {"url", NULL}, {K_STRING, K_ANY}},
    {"server_tool_use", {"id", "name"}, {K_STRING, K_STRING}},
    {"web_search_tool_result", {"tool_use_id", NULL}, {K_STRING, K_ANY}},
    {"code_execution_result", {"output", NULL}, {K_STRING, K_ANY}},
    {"mcp_list_tools", {NULL, NULL}, {K_ANY, K_ANY}},
    {"mcp_call", {NULL, NULL}, {K_ANY, K_ANY}},
    {"mcp_approval_request", {NULL, NULL}, {K_ANY, K_ANY}},
    {"mcp_approval_response", {"approval_request_id", "approve"}, {K_STRING, K_BOOL}},
    {"bash_code_execution_tool_result", {"tool_use_id", NULL}, {K_STRING, K_ANY}},
    {"text_editor_code_execution_tool_result", {"tool_use_id", NULL}, {K_STRING, K_ANY}},
    {"shell_call", {NULL, NULL}, {K_ANY, K_ANY}},
    {"shell_call_output", {NULL, NULL}, {K_ANY, K_ANY}},
    {"apply_patch_call", {NULL, NULL}, {K_ANY, K_ANY}},
    {"apply_patch_call_output", {NULL, NULL}, {K_ANY, K_ANY}},
};

static int check_block(chk *c, const json_t *b)
{
    if (!json_is_object(b))
        return bad(c,
                   "must be a content block object, e.g. {\"type\": \"text\", \"text\": \"...\"}");
    const json_t *t = json_object_get(b, "type");
    size_t saved = path_key(c, "type");
    if (t == NULL)
        return bad(c, "is required (a content block's kind: text, image_url, ...)");
    if (!json_is_string(t))
        return bad(c, "must be a string");
    const block_rule *r = NULL;
    for (size_t i = 0; i < sizeof(block_rules) / sizeof(block_rules[0]); i++)
        if (strcmp(json_string_value(t), block_rules[i].type) == 0)
            r = &block_rules[i];
    if (r == NULL)
        return bad(c, "is not a content block type PromptLayer knows (text, thinking, image_url, "
                      "media, ...)");
    path_pop(c, saved);
    for (size_t i = 0; i < 2 && r->needs[i]; i++) {
        field f = {r->needs[i], r->needs_kind[i], 1};
        if (check_fields(c, b, &f, 1) != 0)
            return -1;
    }
    if (strcmp(r->type, "image_url") == 0) {
        size_t s = path_key(c, "image_url");
        static const field url[] = {{"url", K_STRING, 1}};
        if (CHECK_FIELDS(c, json_object_get(b, "image_url"), url) != 0)
            return -1;
        path_pop(c, s);
    }
    return 0;
}

/* member is a list of content blocks (required, or may be absent/null). */
static int check_content(chk *c, const json_t *obj, int required)
{
    const json_t *a = json_object_get(obj, "content");
    size_t saved = path_key(c, "content");
    if (a == NULL || json_is_null(a)) {
        if (required)
            return bad(c, a == NULL ? "is required (a list of content blocks)"
                                    : "must be a list of content blocks, not null");
        path_pop(c, saved);
        return 0;
    }
    if (json_is_string(a))
        return bad(c, "must be a list of content blocks, not a string: "
                      "[{\"type\": \"text\", \"text\": \"...\"}]");
    if (!json_is_array(a))
        return bad(c, "must be a list of content blocks");
    size_t i;
    const json_t *b;
    json_array_foreach(a, i, b)
    {
        size_t s = path_index(c, i);
        if (check_block(c, b) != 0)
            return -1;
        path_pop(c, s);
    }
    path_pop(c, saved);
    return 0;
}

static const char *const template_formats[] = {"f-string", "jinja2", NULL};

/* {"name": str, "arguments": str} (a tool call's function, a function_call). */
static int check_call(chk *c, const json_t *f)
{
    static const field call[] = {{"name", K_STRING, 1}, {"arguments", K_STRING, 1}};
    return CHECK_FIELDS(c, f, call);
}

static int check_tool_calls(chk *c, const json_t *m)
{
    const json_t *a = json_object_get(m, "tool_calls");
    if (!json_is_array(a))
        return 0;
    size_t s1 = path_key(c, "tool_calls");
    size_t i;
    const json_t *tc;
    json_array_foreach(a, i, tc)
    {
        size_t s2 = path_index(c, i);
        static const field shape[] = {{"id", K_STRING, 1}, {"function", K_OBJECT, 1}};
        if (!json_is_object(tc))
            return bad(c, "must be an object");
        if (CHECK_FIELDS(c, tc, shape) != 0)
            return -1;
        static const char *const function_only[] = {"function", NULL};
        if (one_of(c, tc, "type", function_only, 0) != 0)
            return -1;
        size_t s3 = path_key(c, "function");
        if (check_call(c, json_object_get(tc, "function")) != 0)
            return -1;
        path_pop(c, s3);
        path_pop(c, s2);
    }
    path_pop(c, s1);
    return 0;
}

static int check_message(chk *c, const json_t *m)
{
    static const char *const roles[] = {"system", "user",        "assistant", "function",
                                        "tool",   "placeholder", "developer", NULL};
    if (!json_is_object(m))
        return bad(c, "must be a message object, e.g. {\"role\": \"user\", \"content\": [...]}");
    const json_t *role = json_object_get(m, "role");
    if (role == NULL) {
        path_key(c, "role");
        return bad(c, "is required (system, user, assistant, tool, ...)");
    }
    if (one_of(c, m, "role", roles, 0) != 0)
        return -1;
    const char *r = json_string_value(role);
    static const field common[] = {{"input_variables", K_ARRAY, 0},
                                   {"template_format", K_STRING, 0}};
    if (CHECK_FIELDS(c, m, common) != 0 || strings(c, m, "input_variables", 0) != 0 ||
        one_of(c, m, "template_format", template_formats, 0) != 0)
        return -1;
    if (strcmp(r, "function") == 0 || strcmp(r, "placeholder") == 0) {
        static const field named[] = {{"name", K_STRING, 1}};
        return CHECK_FIELDS(c, m, named) != 0 ? -1 : check_content(c, m, 0);
    }
    static const field name[] = {{"name", K_STRING_NULL, 0}};
    if (CHECK_FIELDS(c, m, name) != 0)
        return -1;
    if (strcmp(r, "assistant") == 0) {
        static const field calls[] = {{"tool_calls", K_ARRAY_NULL, 0},
                                      {"function_call", K_OBJECT_NULL, 0}};
        if (CHECK_FIELDS(c, m, calls) != 0 || check_content(c, m, 0) != 0 ||
            check_tool_calls(c, m) != 0)
            return -1;
        const json_t *fc = json_object_get(m, "function_call");
        if (json_is_object(fc)) {
            size_t s = path_key(c, "function_call");
            if (check_call(c, fc) != 0)
                return -1;
            path_pop(c, s);
        }
        return 0;
    }
    if (strcmp(r, "tool") == 0) {
        static const field tool[] = {{"tool_call_id", K_STRING, 1}};
        if (CHECK_FIELDS(c, m, tool) != 0)
            return -1;
    }
    return check_content(c, m, 1); /* system, user, developer, tool */
}

/* The built-in tool types of the Prompt Blueprint's tools list. */
static const char *const builtin_tools[] = {
    "web_search",
    "file_search",
    "code_interpreter",
    "image_generation",
    "google_maps",
    "url_context",
    "mcp",
    "bash",
    "shell",
    "apply_patch",
    "text_editor",
    NULL,
};

/* One tool: {"type": "function", "function": {"name", ...}}, or a built-in
 * tool {"type", "id", "name", "description", "provider", "config"}. */
static int check_tool(chk *c, const json_t *t)
{
    static const field fn[] = {{"name", K_STRING, 1}};
    if (!json_is_object(t))
        return bad(c, "must be an object");
    const json_t *type = json_object_get(t, "type");
    if (type == NULL) {
        path_key(c, "type");
        return bad(c, "is required (\"function\", or a built-in tool type)");
    }
    if (json_is_string(type) && strcmp(json_string_value(type), "function") == 0) {
        static const field fobj[] = {{"function", K_OBJECT, 1}};
        if (CHECK_FIELDS(c, t, fobj) != 0)
            return -1;
        size_t s = path_key(c, "function");
        if (CHECK_FIELDS(c, json_object_get(t, "function"), fn) != 0)
            return -1;
        path_pop(c, s);
        return 0;
    }
    int builtin = 0;
    for (size_t i = 0; json_is_string(type) && builtin_tools[i]; i++)
        builtin |= strcmp(json_string_value(type), builtin_tools[i]) == 0;
    if (!builtin) {
        path_key(c, "type");
        return bad(c, "is not a tool PromptLayer knows: \"function\", or one of web_search, "
                      "file_search, code_interpreter, image_generation, mcp, ...");
    }
    static const field b[] = {{"id", K_STRING, 1},
                              {"name", K_STRING, 1},
                              {"description", K_STRING, 1},
                              {"provider", K_STRING, 1},
                              {"config", K_OBJECT, 1}};
    return CHECK_FIELDS(c, t, b);
}

/* The template's functions (objects with a string "name") or tools. */
static int check_functions(chk *c, const json_t *t, const char *member, int tools)
{
    const json_t *a = json_object_get(t, member);
    if (!json_is_array(a))
        return 0;
    size_t s1 = path_key(c, member);
    size_t i;
    const json_t *f;
    json_array_foreach(a, i, f)
    {
        size_t s2 = path_index(c, i);
        static const field fn[] = {{"name", K_STRING, 1}};
        if (tools
                ? check_tool(c, f) != 0
                : (!json_is_object(f) ? bad(c, "must be an object") : CHECK_FIELDS(c, f, fn)) != 0)
            return -1;
        path_pop(c, s2);
    }
    path_pop(c, s1);
    return 0;
}

/* A Prompt Blueprint template: {"type": "chat", "messages": [...]} or
 * {"type": "completion", "content": [...]}. */
static int check_template(chk *c, const json_t *t)
{
    if (!json_is_object(t))
        return bad(c, "must be a Prompt Blueprint: {\"type\": \"chat\", \"messages\": [...]} or "
                      "{\"type\": \"completion\", \"content\": [...]}");
    const json_t *type = json_object_get(t, "type");
    if (type == NULL) {
        path_key(c, "type");
        return bad(c, "is required: \"chat\" or \"completion\"");
    }
    static const char *const types[] = {"chat", "completion", NULL};
    if (one_of(c, t, "type", types, 0) != 0)
        return -1;
    static const field common[] = {{"input_variables", K_ARRAY, 0}};
    if (CHECK_FIELDS(c, t, common) != 0 || strings(c, t, "input_variables", 0) != 0)
        return -1;
    if (strcmp(json_string_value(type), "completion") == 0) {
        static const field fmt[] = {{"template_format", K_STRING, 0}};
        if (CHECK_FIELDS(c, t, fmt) != 0 || one_of(c, t, "template_format", template_formats, 0))
            return -1;
        return check_content(c, t, 1);
    }
    static const field chat[] = {
        {"messages", K_ARRAY, 1},
        {"functions", K_ARRAY_NULL, 0},
        {"tools", K_ARRAY_NULL, 0},
        {"function_call", K_STRING_OR_OBJECT_NULL, 0},
        {"tool_choice", K_STRING_OR_OBJECT_NULL, 0},
    };
    if (CHECK_FIELDS(c, t, chat) != 0 || check_functions(c, t, "functions", 0) != 0 ||
        check_functions(c, t, "tools", 1) != 0)
        return -1;
    const json_t *msgs = json_object_get(t, "messages");
    size_t s1 = path_key(c, "messages");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        size_t s2 = path_index(c, i);
        if (check_message(c, m) != 0)
            return -1;
        path_pop(c, s2);
    }
    path_pop(c, s1);
    return 0;
}

/* ---- the endpoints --------------------------------------------------------- */

/* input and output: each a Prompt Blueprint template. */
static int check_input_output(chk *c, const json_t *b)
{
    static const char *const sides[] = {"input", "output"};
    for (size_t i = 0; i < 2; i++) {
        size_t s = path_key(c, sides[i]);
        if (check_template(c, json_object_get(b, sides[i])) != 0)
            return -1;
        path_pop(c, s);
    }
    return 0;
}

/* The bounds PromptLayer sets on a Log Request's members beyond their kinds:
 * lengths, ranges, the status and error_type words, a price of 0 or more. */
static int check_log_bounds(chk *c, const json_t *b)
{
    static const char *const statuses[] = {"SUCCESS", "WARNING", "ERROR", NULL};
    static const char *const error_types[] = {
        "PROVIDER_TIMEOUT",      "PROVIDER_QUOTA_LIMIT",
        "PROVIDER_RATE_LIMIT",   "PROVIDER_PARTIAL_RESPONSE",
        "PROVIDER_AUTH_ERROR",   "PROVIDER_ERROR",
        "TEMPLATE_RENDER_ERROR", "VARIABLE_MISSING_OR_EMPTY",
        "UNKNOWN_ERROR",         NULL,
    };
    if (strings(c, b, "tags", 512) != 0 || int_range(c, b, "score", 0, 100) != 0 ||
        int_range(c, b, "prompt_version_number", 1, LOGREQ_INT_MAX) != 0 ||
        int_range(c, b, "input_tokens", 0, LOGREQ_INT_MAX) != 0 ||
        int_range(c, b, "output_tokens", 0, LOGREQ_INT_MAX) != 0 ||
        one_of(c, b, "status", statuses, 0) != 0 ||
        one_of(c, b, "error_type", error_types, 1) != 0 ||
        str_max(c, b, "error_message", 1024) != 0)
        return -1;
    const json_t *price = json_object_get(b, "price");
    if (json_is_number(price) && json_number_value(price) < 0) {
        path_key(c, "price");
        return bad(c, "must be 0 or more");
    }
    return 0;
}

/* An optional metadata object: keys of at most 1024 characters, string
 * values only (PromptLayer refuses the rest). */
static int check_metadata(chk *c, const json_t *b)
{
    const json_t *md = json_object_get(b, "metadata");
    if (!json_is_object(md))
        return 0;
    size_t s1 = path_key(c, "metadata");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)md, k, v)
    {
        json_t *key = json_string(k);
        size_t n = key ? code_points(key) : 0;
        json_decref(key);
        if (n > 1024)
            return bad(c, "a key is longer than 1024 characters");
        if (!json_is_string(v)) {
            path_key(c, "<key>");
            return bad(c, "values must be strings (PromptLayer refuses other metadata)");
        }
    }
    path_pop(c, s1);
    return 0;
}

/* A Log Request body (POST /log-request): the members and their kinds, the
 * templates, the bounds, the metadata. */
static int check_log_request(chk *c, const json_t *b)
{
    static const field f[] = {
        {"provider", K_STRING, 1},
        {"model", K_STRING, 1},
        {"input", K_ANY, 1},
        {"output", K_ANY, 1},
        {"request_start_time", K_TIME, 1},
        {"request_end_time", K_TIME, 1},
        {"parameters", K_OBJECT, 0},
        {"tags", K_ARRAY, 0},
        {"metadata", K_OBJECT, 0},
        {"prompt_name", K_STRING_NULL, 0},
        {"prompt_id", K_INT_NULL, 0},
        {"prompt_version_number", K_INT_NULL, 0},
        {"prompt_input_variables", K_OBJECT, 0},
        {"input_tokens", K_INT, 0},
        {"output_tokens", K_INT, 0},
        {"price", K_NUMBER, 0},
        {"function_name", K_STRING, 0},
        {"score", K_INT, 0},
        {"score_name", K_STRING_NULL, 0},
        {"api_type", K_STRING_NULL, 0},
        {"status", K_STRING, 0},
        {"error_type", K_STRING_NULL, 0},
        {"error_message", K_STRING_NULL, 0},
    };
    if (CHECK_FIELDS(c, b, f) != 0 || check_input_output(c, b) != 0 || check_log_bounds(c, b) != 0)
        return -1;
    return check_metadata(c, b);
}

static int check_track(chk *c, const char *ep, const json_t *b, int then_step)
{
    /* request_id is filled by the worker in a "then" step. */
    int rid = !then_step;
    if (strcmp(ep, "/rest/track-score") == 0) {
        const field f[] = {{"request_id", K_INT, rid}, {"score", K_INT, 1}, {"name", K_STRING, 0}};
        return CHECK_FIELDS(c, b, f) != 0 ? -1 : int_range(c, b, "score", 0, 100);
    }
    if (strcmp(ep, "/rest/track-metadata") == 0) {
        const field f[] = {{"request_id", K_INT_OR_STRING, rid}, {"metadata", K_OBJECT, 1}};
        return CHECK_FIELDS(c, b, f);
    }
    if (strcmp(ep, "/rest/track-prompt") == 0) {
        const field f[] = {{"prompt_name", K_STRING, 1},
                           {"request_id", K_INT_OR_STRING, rid},
                           {"prompt_input_variables", K_OBJECT, 0},
                           {"version", K_INT_STRING_NULL, 0},
                           {"label", K_STRING_NULL, 0}};
        if (CHECK_FIELDS(c, b, f) != 0)
            return -1;
        if (json_string_length(json_object_get(b, "prompt_name")) == 0) {
            path_key(c, "prompt_name");
            return bad(c, "must not be empty");
        }
        return 0;
    }
    if (strcmp(ep, "/rest/track-group") == 0) {
        const field f[] = {{"request_id", K_INT, rid}, {"group_id", K_INT, 1}};
        return CHECK_FIELDS(c, b, f);
    }
    if (strcmp(ep, "/rest/track-request") == 0) {
        static const field f[] = {{"function_name", K_STRING, 1},
                                  {"kwargs", K_OBJECT, 1},
                                  {"request_response", K_OBJECT, 1},
                                  {"request_start_time", K_TIME, 1},
                                  {"request_end_time", K_TIME, 1}};
        return CHECK_FIELDS(c, b, f);
    }
    if (strcmp(ep, "/spans-bulk") == 0) {
        static const field f[] = {{"spans", K_ARRAY, 1}, {"close_after", K_BOOL, 0}};
        return CHECK_FIELDS(c, b, f);
    }
    return 0;
}

/* The value of one hex digit, or -1 ('\0' included). */
static int hex_digit(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

const char *logreq_endpoint(const char *raw)
{
    char dec[64];
    size_t n = 0;
    if (raw == NULL)
        return NULL;
    for (const char *p = raw; *p; p++) {
        int ch = (unsigned char)*p;
        if (ch == '%') {
            /* p[2] is read only when p[1] is a digit, so never past the NUL. */
            int h = hex_digit((unsigned char)p[1]);
            int l = h < 0 ? -1 : hex_digit((unsigned char)p[2]);
            if (h < 0 || l < 0)
                return NULL;
            ch = h * 16 + l;
            p += 2;
        }
        if (ch == 0 || n + 1 >= sizeof(dec))
            return NULL;
        dec[n++] = (char)ch;
    }
    dec[n] = '\0';
    for (size_t i = 0; logreq_endpoints[i]; i++)
        if (strcmp(dec, logreq_endpoints[i]) == 0)
            return logreq_endpoints[i];
    return NULL;
}

static int check_body(chk *c, const char *ep, const json_t *body, int then_step)
{
    if (!json_is_object(body))
        return bad(c, "must be a JSON object");
    if (strcmp(ep, "/log-request") == 0)
        return check_log_request(c, body);
    return check_track(c, ep, body, then_step);
}

int logreq_check_body(const char *endpoint, const json_t *body, int then_step, char *err,
                      size_t errlen)
{
    chk c = {.err = err, .errlen = errlen};
    return check_body(&c, endpoint, body, then_step);
}

/* One envelope step: {"endpoint": known path, "body": right for it}. */
static int check_step(chk *c, const json_t *step, int then_step)
{
    if (!json_is_object(step))
        return bad(c, "must be {\"endpoint\": \"/rest/...\", \"body\": {...}}");
    const json_t *ep = json_object_get(step, "endpoint");
    size_t s = path_key(c, "endpoint");
    if (!json_is_string(ep))
        return bad(c, "must be a string, one of /log-request, /rest/track-score, "
                      "/rest/track-metadata, /rest/track-prompt, /rest/track-group, "
                      "/rest/track-request, /spans-bulk");
    const char *known = logreq_endpoint(json_string_value(ep));
    if (known == NULL)
        return bad(c, "is not an API path the worker knows (/log-request, /rest/track-score, "
                      "/rest/track-metadata, /rest/track-prompt, /rest/track-group, "
                      "/rest/track-request, /spans-bulk)");
    path_pop(c, s);
    const json_t *body = json_object_get(step, "body");
    s = path_key(c, "body");
    if (body == NULL)
        return bad(c, "is required");
    if (check_body(c, known, body, then_step) != 0)
        return -1;
    path_pop(c, s);
    return 0;
}

int logreq_check_job(const json_t *job, char *err, size_t errlen)
{
    chk c = {.err = err, .errlen = errlen};
    if (!json_is_object(job))
        return bad(
            &c,
            "is not a JSON object (a log job is one: a Log Request, or {\"endpoint\", \"body\"})");
    if (json_object_get(job, "__plcache_retry__") != NULL) {
        path_key(&c, "__plcache_retry__");
        return bad(&c, "is reserved for plcache-worker");
    }
    if (json_object_get(job, "endpoint") == NULL)
        return check_log_request(&c, job);
    if (check_step(&c, job, 0) != 0)
        return -1;
    const json_t *then = json_object_get(job, "then");
    if (then == NULL)
        return 0;
    size_t s1 = path_key(&c, "then");
    if (!json_is_array(then))
        return bad(&c, "must be a list of {\"endpoint\", \"body\"} steps");
    if (json_array_size(then) > LOGREQ_MAX_THEN)
        return bad(&c, "has more than %d steps", LOGREQ_MAX_THEN);
    size_t i;
    const json_t *step;
    json_array_foreach(then, i, step)
    {
        size_t s2 = path_index(&c, i);
        if (check_step(&c, step, 1) != 0)
            return -1;
        path_pop(&c, s2);
    }
    path_pop(&c, s1);
    return 0;
}

/* ---- what PromptLayer said ------------------------------------------------- */

/* Appends at most room bytes of s (n bytes) to out at *len, control characters
 * as spaces, never splitting a UTF-8 sequence. */
static void put_text(char *out, size_t outlen, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t w = ch < 0x80 ? 1 : ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
        if (i + w > n || *len + w >= outlen)
            return;
        for (size_t k = 0; k < w; k++)
            out[(*len)++] = (ch < 0x20 || ch == 0x7f) ? ' ' : s[i + k];
        i += w;
    }
}

static void put_str(char *out, size_t outlen, size_t *len, const char *s)
{
    put_text(out, outlen, len, s, strlen(s));
}

/* One item's loc, as "messages.0.content" and ": " (its leading "body" left
 * out); nothing when it names no field. */
static void put_loc(char *out, size_t outlen, size_t *len, const json_t *loc)
{
    size_t k;
    const json_t *part;
    int first = 1;
    json_array_foreach(loc, k, part)
    {
        char num[32];
        if (k == 0 && json_is_string(part) && strcmp(json_string_value(part), "body") == 0)
            continue; /* every body field's loc starts with "body" */
        if (!first)
            put_str(out, outlen, len, ".");
        first = 0;
        if (json_is_integer(part)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(part));
            put_str(out, outlen, len, num);
        } else if (json_is_string(part)) {
            put_str(out, outlen, len, json_string_value(part));
        }
    }
    if (!first)
        put_str(out, outlen, len, ": ");
}

/* A 422's "detail" list: each item's loc and msg, "; " between them. */
static void put_detail_list(char *out, size_t outlen, size_t *len, const json_t *d)
{
    size_t i;
    const json_t *item;
    json_array_foreach(d, i, item)
    {
        if (i > 0)
            put_str(out, outlen, len, "; ");
        put_loc(out, outlen, len, json_object_get(item, "loc"));
        const json_t *m = json_object_get(item, "msg");
        put_str(out, outlen, len, json_is_string(m) ? json_string_value(m) : "invalid");
    }
}

void logreq_detail(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return;
    json_t *o = json_loadb(body, len, 0, NULL);
    const json_t *d = json_object_get(o, "detail");
    const json_t *msg = json_object_get(o, "message");
    const json_t *e = json_object_get(o, "error");
    if (json_is_array(d) && json_array_size(d) > 0) {
        put_detail_list(out, outlen, &n, d);
    } else if (json_is_string(d)) {
        put_str(out, outlen, &n, json_string_value(d));
    } else if (json_is_string(msg)) {
        put_str(out, outlen, &n, json_string_value(msg));
    } else if (json_is_string(e)) {
        put_str(out, outlen, &n, json_string_value(e));
    } else {
        put_text(out, outlen, &n, body, len);
    }
    out[n] = '\0';
    json_decref(o);
}
