/* render.c -- the SDK's render_response and is_locally_renderable over jansson.
 *
 * The walk follows the SDK's Python statement by statement, and where that
 * Python meets a value of an unexpected type it does what Python does: a for
 * loop over a str runs over its characters and over a dict over its keys
 * (both str, so "isinstance(x, dict)" skips them and "x.get" raises), over
 * None, a number or a bool it raises TypeError; `"content" in x` is a key
 * test on a dict, a substring test on a str, a membership test on a list and
 * a TypeError on the rest. Every such raise ends the walk with
 * RENDER_UNSUPPORTED. The helper py_iter tells which of these a value is.
 *
 * Each text is rendered into one scratch buf, bounded by max_text, and put
 * back into its jansson string with json_string_setn.
 */
#include "core/render.h"

#include <string.h>

#include "core/buf.h"
#include "core/fstr.h"
#include "core/jinja.h"
#include "core/jsonw.h"

typedef enum render_format {
    FMT_FSTRING,
    FMT_JINJA2,
} render_format;

typedef struct walk {
    const json_t *vars; /* NULL: no variables */
    render_format fmt;  /* for llm_kwargs */
    buf scratch;        /* owned */
} walk;

/* How `for x in v` sees v. */
typedef enum py_iter_kind {
    IT_LIST,   /* the items of an array */
    IT_STRS,   /* one or more str items: a str's characters, a dict's keys */
    IT_NONE,   /* nothing: "", {} */
    IT_RAISES, /* None, a number, a bool */
} py_iter_kind;

static py_iter_kind py_iter(const json_t *v)
{
    if (json_is_array(v))
        return IT_LIST;
    if (json_is_string(v))
        return json_string_length(v) > 0 ? IT_STRS : IT_NONE;
    if (json_is_object(v))
        return json_object_size(v) > 0 ? IT_STRS : IT_NONE;
    return IT_RAISES;
}

/* Python truthiness. */
static int truthy(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
    case JSON_NULL:
        return 0;
    }
    return 0;
}

static int str_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);
    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), s, n) == 0;
}

/* x.get(key, default) == "jinja2" decides the format; a missing key is the
 * SDK's default "f-string". */
static render_format format_of(const json_t *v)
{
    return str_is(v, "jinja2") ? FMT_JINJA2 : FMT_FSTRING;
}

/* ---- one text ------------------------------------------------------------ */

/* The SDK's _render_text: renders the string str in place, with fstr_render
 * or jinja_render (the same contract: OK, RAISES = keep the text,
 * UNSUPPORTED, NOROOM). */
static render_status render_text(walk *w, json_t *str, render_format fmt)
{
    buf_reset(&w->scratch);
    const char *text = json_string_value(str);
    size_t len = json_string_length(str);
    int rc = fmt == FMT_JINJA2 ? jinja_render(&w->scratch, text, len, w->vars)
                               : fstr_render(&w->scratch, text, len, w->vars);
    _Static_assert(JINJA_OK == (int)FSTR_OK && JINJA_RAISES == (int)FSTR_RAISES &&
                       JINJA_UNSUPPORTED == (int)FSTR_UNSUPPORTED &&
                       JINJA_NOROOM == (int)FSTR_NOROOM,
                   "jinja_rc and fstr_rc agree");
    switch (rc) {
    case FSTR_OK:
        if (json_string_setn(str, w->scratch.data != NULL ? w->scratch.data : "", w->scratch.len) !=
            0)
            return RENDER_ERROR;
        return RENDER_OK;
    case FSTR_RAISES:
        return RENDER_OK; /* Python raised: the text stays */
    case FSTR_UNSUPPORTED:
        return RENDER_UNSUPPORTED;
    default:
        return RENDER_ERROR;
    }
}

/* A dict whose "text" (a str) is rendered. */
static render_status render_text_member(walk *w, json_t *item, render_format fmt)
{
    json_t *text = json_object_get(item, "text");
    return json_is_string(text) ? render_text(w, text, fmt) : RENDER_OK;
}

/* ---- prompt_template ----------------------------------------------------- */

/* for block in blocks: isinstance(block, dict) and block.get("type") == "text"
 * and isinstance(block.get("text"), str). blocks NULL: the [] default. */
static render_status render_blocks(walk *w, const json_t *blocks, render_format fmt)
{
    if (blocks == NULL)
        return RENDER_OK;
    py_iter_kind k = py_iter(blocks);
    if (k == IT_RAISES)
        return RENDER_UNSUPPORTED;
    if (k != IT_LIST)
        return RENDER_OK; /* characters or keys: never dicts */
    size_t i;
    json_t *block;
    json_array_foreach(blocks, i, block)
    {
        if (!json_is_object(block) || !str_is(json_object_get(block, "type"), "text"))
            continue;
        render_status st = render_text_member(w, block, fmt);
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

static const json_t *get_or(const json_t *obj, const char *key, int *present)
{
    json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    return v;
}

/* The SDK's _render_prompt_template, and the format its llm_kwargs get
 * (_get_message_formats()[0], or "f-string"). */
static render_status render_prompt_template(walk *w, json_t *pt)
{
    const json_t *type = json_object_get(pt, "type");
    int present = 0;
    w->fmt = FMT_FSTRING;
    if (str_is(type, "chat")) {
        const json_t *msgs = get_or(pt, "messages", &present);
        if (!present)
            return RENDER_OK;
        py_iter_kind k = py_iter(msgs);
        if (k == IT_NONE)
            return RENDER_OK;
        if (k != IT_LIST)
            return RENDER_UNSUPPORTED; /* .get on a str, or not iterable */
        size_t i;
        json_t *msg;
        json_array_foreach(msgs, i, msg)
        {
            if (!json_is_object(msg))
                return RENDER_UNSUPPORTED; /* message.get raises */
            render_format fmt = format_of(json_object_get(msg, "template_format"));
            if (i == 0)
                w->fmt = fmt;
            render_status st = render_blocks(w, json_object_get(msg, "content"), fmt);
            if (st != RENDER_OK)
                return st;
        }
        return RENDER_OK;
    }
    if (str_is(type, "completion")) {
        w->fmt = format_of(json_object_get(pt, "template_format"));
        return render_blocks(w, json_object_get(pt, "content"), w->fmt);
    }
    return RENDER_OK;
}

/* ---- llm_kwargs ---------------------------------------------------------- */

/* The SDK's _render_content_field: a str, or the text of text blocks. */
static render_status render_content(walk *w, json_t *value)
{
    if (json_is_string(value))
        return render_text(w, value, w->fmt);
    if (!json_is_array(value))
        return RENDER_OK;
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item)
    {
        if (!json_is_object(item) || !json_is_string(json_object_get(item, "text")))
            continue;
        json_t *type = json_object_get(item, "type");
        if (json_is_array(type) || json_is_object(type))
            return RENDER_UNSUPPORTED; /* `in` a set: unhashable type */
        if (type != NULL && !str_is(type, "text") && !str_is(type, "input_text"))
            continue;
        render_status st = render_text_member(w, item, w->fmt);
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

static int contains(const char *p, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(p + i, needle, m) == 0)
            return 1;
    }
    return 0;
}

/* `"content" in msg` for one item of messages that is not a dict: 1 where
 * Python then raises on msg["content"] (or on `in` itself), else 0. */
static int content_test_raises(const json_t *msg)
{
    if (json_is_string(msg))
        return contains(json_string_value(msg), json_string_length(msg), "content");
    if (json_is_array(msg)) {
        size_t j;
        json_t *e;
        json_array_foreach(msg, j, e)
        {
            if (str_is(e, "content"))
                return 1;
        }
        return 0;
    }
    return 1; /* `in` on None, a number, a bool */
}

/* for msg in llm_kwargs.get("messages", []): if "content" in msg: ... */
static render_status render_messages(walk *w, const json_t *msgs)
{
    if (msgs == NULL)
        return RENDER_OK;
    py_iter_kind k = py_iter(msgs);
    if (k == IT_RAISES)
        return RENDER_UNSUPPORTED;
    if (k == IT_STRS && json_is_object(msgs)) {
        const char *key;
        size_t keylen;
        json_t *ignored;
        json_object_keylen_foreach((json_t *)msgs, key, keylen, ignored)
        {
            (void)ignored;
            if (contains(key, keylen, "content"))
                return RENDER_UNSUPPORTED; /* then key["content"] */
        }
    }
    if (k != IT_LIST)
        return RENDER_OK; /* a str's one-character items never hold "content" */
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg)
    {
        if (!json_is_object(msg)) {
            if (content_test_raises(msg))
                return RENDER_UNSUPPORTED;
            continue;
        }
        json_t *content = json_object_get(msg, "content");
        render_status st = content != NULL ? render_content(w, content) : RENDER_OK;
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

/* for msg in llm_kwargs.get("input", []): dicts only. */
static render_status render_input(walk *w, const json_t *input)
{
    if (input == NULL)
        return RENDER_OK;
    py_iter_kind k = py_iter(input);
    if (k == IT_RAISES)
        return RENDER_UNSUPPORTED;
    if (k != IT_LIST)
        return RENDER_OK;
    size_t i;
    json_t *msg;
    json_array_foreach(input, i, msg)
    {
        json_t *content = json_is_object(msg) ? json_object_get(msg, "content") : NULL;
        render_status st = content != NULL ? render_content(w, content) : RENDER_OK;
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

/* The SDK's _render_parts: every dict part's str "text". NULL: []. */
static render_status render_parts(walk *w, const json_t *parts)
{
    if (parts == NULL)
        return RENDER_OK;
    py_iter_kind k = py_iter(parts);
    if (k == IT_RAISES)
        return RENDER_UNSUPPORTED;
    if (k != IT_LIST)
        return RENDER_OK;
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part)
    {
        render_status st = json_is_object(part) ? render_text_member(w, part, w->fmt) : RENDER_OK;
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

/* for item in llm_kwargs.get(key, []): if dict, its parts. */
static render_status render_part_lists(walk *w, const json_t *items)
{
    if (items == NULL)
        return RENDER_OK;
    py_iter_kind k = py_iter(items);
    if (k == IT_RAISES)
        return RENDER_UNSUPPORTED;
    if (k != IT_LIST)
        return RENDER_OK;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        render_status st =
            json_is_object(item) ? render_parts(w, json_object_get(item, "parts")) : RENDER_OK;
        if (st != RENDER_OK)
            return st;
    }
    return RENDER_OK;
}

static render_status render_llm_kwargs(walk *w, json_t *llm)
{
    render_status st = render_messages(w, json_object_get(llm, "messages"));
    if (st == RENDER_OK)
        st = render_input(w, json_object_get(llm, "input"));
    if (st == RENDER_OK) {
        json_t *system = json_object_get(llm, "system");
        if (system != NULL)
            st = render_content(w, system);
    }
    if (st == RENDER_OK)
        st = render_part_lists(w, json_object_get(llm, "contents"));
    if (st == RENDER_OK)
        st = render_part_lists(w, json_object_get(llm, "history"));
    if (st == RENDER_OK) {
        const json_t *si = json_object_get(llm, "system_instruction");
        if (si == NULL || json_is_null(si)) {
            const json_t *gc = json_object_get(llm, "generation_config");
            si = json_is_object(gc) ? json_object_get(gc, "system_instruction") : NULL;
        }
        if (json_is_object(si))
            st = render_parts(w, json_object_get(si, "parts"));
        else if (json_is_array(si))
            st = render_parts(w, si);
    }
    if (st == RENDER_OK) {
        json_t *prompt = json_object_get(llm, "prompt");
        if (json_is_string(prompt))
            st = render_text(w, prompt, w->fmt);
    }
    return st;
}

/* ---- entries ------------------------------------------------------------- */

/* for x in (seq): x.get(key) == value, where the SDK raises on a non-dict x.
 * 1 found, 0 not found, -1 raises. */
static int any_item_with(const json_t *seq, const char *key, const char *value)
{
    py_iter_kind k = py_iter(seq);
    if (k == IT_NONE)
        return 0;
    if (k != IT_LIST)
        return -1;
    size_t i;
    json_t *x;
    json_array_foreach(seq, i, x)
    {
        if (!json_is_object(x))
            return -1;
        if (str_is(json_object_get(x, key), value))
            return 1;
    }
    return 0;
}

int render_locally_renderable(const json_t *entry)
{
    const json_t *pt = json_is_object(entry) ? json_object_get(entry, "prompt_template") : NULL;
    if (pt == NULL || !truthy(pt) || !json_is_object(pt))
        return 0;
    if (str_is(json_object_get(pt, "type"), "chat")) {
        const json_t *msgs = json_object_get(pt, "messages");
        if (msgs != NULL && any_item_with(msgs, "role", "placeholder") != 0)
            return 0;
    }
    const json_t *tools = json_object_get(pt, "tools");
    if (tools != NULL && truthy(tools) && any_item_with(tools, "type", "variable") != 0)
        return 0;
    return 1;
}

render_status render_entry(json_t *entry, const json_t *vars, size_t max_text)
{
    if (!render_locally_renderable(entry))
        return RENDER_NOT_LOCAL;
    if (vars != NULL && !json_is_object(vars))
        return RENDER_UNSUPPORTED;
    json_t *llm = json_object_get(entry, "llm_kwargs");
    int has_llm = llm != NULL && !json_is_null(llm);
    int has_vars = vars != NULL && json_object_size(vars) > 0;
    if (!has_llm && !has_vars)
        return RENDER_OK; /* returned untouched, placeholders and all */
    walk w = {has_vars ? vars : NULL, FMT_FSTRING, {0}};
    buf_init(&w.scratch, max_text > 0 ? max_text : RENDER_TEXT_MAX);
    json_t *pt = json_object_get(entry, "prompt_template");
    render_status st = render_prompt_template(&w, pt);
    if (st == RENDER_OK && llm != NULL && truthy(llm)) {
        if (json_is_object(llm))
            st = render_llm_kwargs(&w, llm);
        else
            st = RENDER_UNSUPPORTED; /* llm_kwargs.get raises */
    }
    buf_free(&w.scratch);
    return st;
}

render_status render_json(const char *entry, size_t entrylen, const char *vars, size_t varslen,
                          size_t max_text, char **out, size_t *outlen)
{
    json_t *e = NULL, *v = NULL; /* owned */
    json_error_t err;
    render_status st = RENDER_UNSUPPORTED;
    *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    e = json_loadb(entry, entrylen, JSON_ALLOW_NUL, &err);
    if (e == NULL)
        goto done;
    if (vars != NULL) {
        v = json_loadb(vars, varslen, JSON_ALLOW_NUL, &err);
        if (v == NULL)
            goto done;
    }
    st = render_entry(e, v, max_text);
    if (st != RENDER_OK)
        goto done;
    *out = jsonw_dump(e, RENDER_JSON_MAX, outlen);
    if (*out == NULL)
        st = RENDER_ERROR;
done:
    json_decref(e);
    json_decref(v);
    return st;
}
