/* llmkw.c -- provider-ready llm_kwargs built from a prompt template.
 *
 * Each builder walks the template's messages (or its completion content)
 * once and writes the provider's request arguments: OpenAI chat completions
 * ({"model", "messages", ...parameters}) and completions ({"model",
 * "prompt"}), Anthropic messages ({"model", "max_tokens", "system",
 * "messages"}) and its legacy completions ("\n\nHuman: ...\n\nAssistant:").
 * Text blocks are copied as they are (unrendered); other block types are
 * kept only where the provider has an equivalent (image_url for user
 * messages), and placeholder messages, which stand for messages given at run
 * time, are left out. A failed allocation anywhere makes the whole result
 * NULL.
 */
#include "llmkw.h"

#include <stdlib.h>
#include <string.h>

#define ANTHROPIC_DEFAULT_MAX_TOKENS 1024

typedef struct kw {
    int oom;
} kw;

static int str_is(const json_t *v, const char *want)
{
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static void set(kw *k, json_t *obj, const char *key, json_t *val)
{
    if (json_object_set_new(obj, key, val) != 0)
        k->oom = 1;
}

static void append(kw *k, json_t *arr, json_t *val)
{
    if (json_array_append_new(arr, val) != 0)
        k->oom = 1;
}

/* The texts of the text blocks of `blocks`, joined with `sep` between them;
 * *count gets how many there were. A new string, or NULL (k->oom). */
static json_t *joined(kw *k, const json_t *blocks, const char *sep, size_t *count)
{
    size_t total = 0;
    size_t n = 0;
    size_t seplen = strlen(sep);
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        if (str_is(json_object_get(b, "type"), "text") &&
            json_is_string(json_object_get(b, "text"))) {
            total += json_string_length(json_object_get(b, "text")) + (n > 0 ? seplen : 0);
            n++;
        }
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) {
        k->oom = 1;
        return NULL;
    }
    size_t used = 0;
    size_t seen = 0;
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        const json_t *t = json_object_get(b, "text");
        if (!str_is(json_object_get(b, "type"), "text") || !json_is_string(t))
            continue;
        if (seen++ > 0) {
            memcpy(buf + used, sep, seplen);
            used += seplen;
        }
        memcpy(buf + used, json_string_value(t), json_string_length(t));
        used += json_string_length(t);
    }
    json_t *s = json_stringn(buf, used);
    free(buf);
    if (s == NULL)
        k->oom = 1;
    if (count != NULL)
        *count = n;
    return s;
}

static const char *role_of(const json_t *msg)
{
    const json_t *r = json_object_get(msg, "role");
    return json_is_string(r) ? json_string_value(r) : "";
}

static void copy_name(kw *k, json_t *out, const json_t *msg)
{
    const json_t *name = json_object_get(msg, "name");
    if (json_is_string(name))
        set(k, out, "name", json_copy((json_t *)name));
}

/* Merges params into out, skipping keys out already has and `skip` keys. */
static void merge_params(kw *k, json_t *out, const json_t *params, const char *const *skip)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)params, key, val)
    {
        int skipped = json_object_get(out, key) != NULL;
        for (size_t i = 0; skip != NULL && skip[i] != NULL && !skipped; i++)
            skipped = strcmp(key, skip[i]) == 0;
        if (!skipped)
            set(k, out, key, json_deep_copy(val));
    }
}

/* -- OpenAI ----------------------------------------------------------------- */

static json_t *openai_user_parts(kw *k, const json_t *blocks)
{
    json_t *parts = json_array();
    if (parts == NULL) {
        k->oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        const json_t *type = json_object_get(b, "type");
        if (str_is(type, "text") && json_is_string(json_object_get(b, "text")))
            append(k, parts,
                   json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(b, "text")));
        else if (str_is(type, "image_url") && json_is_object(json_object_get(b, "image_url")))
            append(k, parts,
                   json_pack("{s:s,s:o}", "type", "image_url", "image_url",
                             json_deep_copy(json_object_get(b, "image_url"))));
    }
    return parts;
}

static json_t *openai_tool_calls(kw *k, const json_t *calls)
{
    json_t *out = json_array();
    if (out == NULL) {
        k->oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const json_t *c = json_array_get(calls, i);
        append(k, out,
               json_pack("{s:O,s:s,s:o}", "id", json_object_get(c, "id"), "type", "function",
                         "function", json_deep_copy(json_object_get(c, "function"))));
    }
    return out;
}

static json_t *openai_message(kw *k, const json_t *msg)
{
    const char *role = role_of(msg);
    const json_t *content = json_object_get(msg, "content");
    json_t *out = NULL;
    if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
        out = json_pack("{s:s,s:o}", "role", role, "content", joined(k, content, "", NULL));
        copy_name(k, out, msg);
    } else if (strcmp(role, "user") == 0) {
        out = json_pack("{s:s,s:o}", "role", "user", "content", openai_user_parts(k, content));
        copy_name(k, out, msg);
    } else if (strcmp(role, "assistant") == 0) {
        size_t n = 0;
        json_t *text = joined(k, content, "", &n);
        if (n == 0) {
            json_decref(text);
            text = json_null();
        }
        out = json_pack("{s:s,s:o}", "role", "assistant", "content", text);
        const json_t *calls = json_object_get(msg, "tool_calls");
        if (out != NULL && json_array_size(calls) > 0)
            set(k, out, "tool_calls", openai_tool_calls(k, calls));
        const json_t *fc = json_object_get(msg, "function_call");
        if (out != NULL && json_is_object(fc))
            set(k, out, "function_call", json_deep_copy(fc));
        copy_name(k, out, msg);
    } else if (strcmp(role, "tool") == 0) {
        out = json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id",
                        json_object_get(msg, "tool_call_id"), "content",
                        joined(k, content, "", NULL));
    } else if (strcmp(role, "function") == 0) {
        out = json_pack("{s:s,s:O,s:o}", "role", "function", "name", json_object_get(msg, "name"),
                        "content", joined(k, content, "", NULL));
    } else {
        return json_null(); /* placeholder: filled in at run time */
    }
    if (out == NULL)
        k->oom = 1;
    return out;
}

static void openai_template_tools(kw *k, json_t *out, const json_t *pt)
{
    json_t *tools = json_array();
    if (tools == NULL) {
        k->oom = 1;
        return;
    }
    const json_t *given = json_object_get(pt, "tools");
    for (size_t i = 0; i < json_array_size(given); i++) {
        const json_t *t = json_array_get(given, i);
        if (str_is(json_object_get(t, "type"), "function"))
            append(k, tools,
                   json_pack("{s:s,s:o}", "type", "function", "function",
                             json_deep_copy(json_object_get(t, "function"))));
    }
    if (json_array_size(tools) > 0)
        set(k, out, "tools", tools);
    else
        json_decref(tools);
    const json_t *choice = json_object_get(pt, "tool_choice");
    if (choice != NULL && !json_is_null(choice))
        set(k, out, "tool_choice", json_deep_copy(choice));
    const json_t *fns = json_object_get(pt, "functions");
    if (json_array_size(fns) > 0)
        set(k, out, "functions", json_deep_copy(fns));
    const json_t *fc = json_object_get(pt, "function_call");
    if (fc != NULL && !json_is_null(fc))
        set(k, out, "function_call", json_deep_copy(fc));
}

static json_t *openai(kw *k, const json_t *pt, const char *model, const json_t *params)
{
    static const char *const skip[] = {"model", "messages", "prompt", NULL};
    json_t *out = json_object();
    if (out == NULL) {
        k->oom = 1;
        return NULL;
    }
    if (model != NULL)
        set(k, out, "model", json_string(model));
    if (str_is(json_object_get(pt, "type"), "completion")) {
        set(k, out, "prompt", joined(k, json_object_get(pt, "content"), "", NULL));
        merge_params(k, out, params, skip);
        return out;
    }
    json_t *msgs = json_array();
    const json_t *given = json_object_get(pt, "messages");
    for (size_t i = 0; msgs != NULL && i < json_array_size(given); i++) {
        json_t *m = openai_message(k, json_array_get(given, i));
        if (json_is_null(m))
            continue;
        append(k, msgs, m);
    }
    set(k, out, "messages", msgs);
    merge_params(k, out, params, skip);
    openai_template_tools(k, out, pt);
    return out;
}

/* -- Anthropic -------------------------------------------------------------- */

static json_t *anthropic_parts(kw *k, const json_t *msg)
{
    json_t *parts = json_array();
    if (parts == NULL) {
        k->oom = 1;
        return NULL;
    }
    const json_t *blocks = json_object_get(msg, "content");
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        const json_t *type = json_object_get(b, "type");
        const json_t *img = json_object_get(b, "image_url");
        if (str_is(type, "text") && json_is_string(json_object_get(b, "text")))
            append(k, parts,
                   json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(b, "text")));
        else if (str_is(type, "image_url") && json_is_string(json_object_get(img, "url")))
            append(k, parts,
                   json_pack("{s:s,s:{s:s,s:O}}", "type", "image", "source", "type", "url", "url",
                             json_object_get(img, "url")));
    }
    const json_t *calls = json_object_get(msg, "tool_calls");
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const json_t *c = json_array_get(calls, i);
        const json_t *fn = json_object_get(c, "function");
        const json_t *args = json_object_get(fn, "arguments");
        json_t *input = json_is_string(args)
                            ? json_loadb(json_string_value(args), json_string_length(args), 0, NULL)
                            : NULL;
        if (!json_is_object(input)) {
            json_decref(input);
            input = json_object();
        }
        append(k, parts,
               json_pack("{s:s,s:O,s:O,s:o}", "type", "tool_use", "id", json_object_get(c, "id"),
                         "name", json_object_get(fn, "name"), "input", input));
    }
    return parts;
}

static void anthropic_tools(kw *k, json_t *out, const json_t *pt)
{
    json_t *tools = json_array();
    if (tools == NULL) {
        k->oom = 1;
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        const json_t *given = json_object_get(pt, pass == 0 ? "tools" : "functions");
        for (size_t i = 0; i < json_array_size(given); i++) {
            const json_t *t = json_array_get(given, i);
            const json_t *fn = t;
            if (pass == 0) {
                if (!str_is(json_object_get(t, "type"), "function"))
                    continue;
                fn = json_object_get(t, "function");
            }
            const json_t *desc = json_object_get(fn, "description");
            const json_t *schema = json_object_get(fn, "parameters");
            append(k, tools,
                   json_pack("{s:O,s:o,s:o}", "name", json_object_get(fn, "name"), "description",
                             json_is_string(desc) ? json_copy((json_t *)desc) : json_string(""),
                             "input_schema",
                             json_is_object(schema)
                                 ? json_deep_copy(schema)
                                 : json_pack("{s:s,s:{}}", "type", "object", "properties")));
        }
    }
    if (json_array_size(tools) > 0)
        set(k, out, "tools", tools);
    else
        json_decref(tools);
}

static json_t *anthropic(kw *k, const json_t *pt, const char *model, const json_t *params)
{
    static const char *const skip_chat[] = {"model", "messages", "system", "max_tokens", NULL};
    static const char *const skip_completion[] = {"model", "prompt", "max_tokens",
                                                  "max_tokens_to_sample", NULL};
    json_t *out = json_object();
    if (out == NULL) {
        k->oom = 1;
        return NULL;
    }
    if (model != NULL)
        set(k, out, "model", json_string(model));
    if (str_is(json_object_get(pt, "type"), "completion")) {
        const json_t *max = json_object_get(params, "max_tokens_to_sample");
        if (max == NULL)
            max = json_object_get(params, "max_tokens");
        set(k, out, "max_tokens_to_sample",
            max != NULL ? json_deep_copy(max) : json_integer(ANTHROPIC_DEFAULT_MAX_TOKENS));
        merge_params(k, out, params, skip_completion);
        json_t *text = joined(k, json_object_get(pt, "content"), "", NULL);
        if (text != NULL) {
            size_t n = json_string_length(text);
            const char *pre = "\n\nHuman: ";
            const char *post = "\n\nAssistant:";
            char *buf = malloc(strlen(pre) + n + strlen(post) + 1);
            if (buf == NULL) {
                k->oom = 1;
            } else {
                memcpy(buf, pre, strlen(pre));
                memcpy(buf + strlen(pre), json_string_value(text), n);
                memcpy(buf + strlen(pre) + n, post, strlen(post) + 1);
                set(k, out, "prompt", json_stringn(buf, strlen(pre) + n + strlen(post)));
                free(buf);
            }
            json_decref(text);
        }
        return out;
    }
    const json_t *max = json_object_get(params, "max_tokens");
    set(k, out, "max_tokens",
        max != NULL ? json_deep_copy(max) : json_integer(ANTHROPIC_DEFAULT_MAX_TOKENS));
    merge_params(k, out, params, skip_chat);

    json_t *system = json_array(); /* the system texts, one per message */
    json_t *msgs = json_array();
    const json_t *given = json_object_get(pt, "messages");
    for (size_t i = 0; system != NULL && msgs != NULL && i < json_array_size(given); i++) {
        const json_t *m = json_array_get(given, i);
        const char *role = role_of(m);
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            append(k, system, joined(k, json_object_get(m, "content"), "", NULL));
        } else if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0) {
            append(k, msgs, json_pack("{s:s,s:o}", "role", role, "content", anthropic_parts(k, m)));
        } else if (strcmp(role, "tool") == 0) {
            append(k, msgs,
                   json_pack("{s:s,s:[{s:s,s:O,s:o}]}", "role", "user", "content", "type",
                             "tool_result", "tool_use_id", json_object_get(m, "tool_call_id"),
                             "content", joined(k, json_object_get(m, "content"), "", NULL)));
        }
    }
    if (json_array_size(system) > 0) {
        /* Several system messages become one text, a blank line apart. */
        json_t *blocks = json_array();
        for (size_t i = 0; blocks != NULL && i < json_array_size(system); i++)
            append(k, blocks,
                   json_pack("{s:s,s:O}", "type", "text", "text", json_array_get(system, i)));
        set(k, out, "system", joined(k, blocks, "\n\n", NULL));
        json_decref(blocks);
    }
    json_decref(system);
    set(k, out, "messages", msgs);
    anthropic_tools(k, out, pt);
    return out;
}

int llmkw_supported(const char *provider)
{
    return provider != NULL &&
           (strcmp(provider, "openai") == 0 || strcmp(provider, "openai.azure") == 0 ||
            strcmp(provider, "anthropic") == 0);
}

json_t *llmkw_build(const json_t *pt, const char *provider, const char *model, const json_t *params)
{
    if (!llmkw_supported(provider))
        return NULL;
    kw k = {0};
    if (!json_is_object(params))
        params = NULL;
    json_t *out = (strcmp(provider, "anthropic") == 0) ? anthropic(&k, pt, model, params)
                                                       : openai(&k, pt, model, params);
    if (k.oom) {
        json_decref(out);
        return NULL;
    }
    return out;
}
