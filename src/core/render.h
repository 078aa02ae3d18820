/* render.h -- a cached template entry rendered as the PromptLayer SDK renders it.
 *
 * An entry is the JSON object PromptLayer's API returns for a template version
 * (prompt_template, llm_kwargs, metadata, ...), fetched unrendered. The Python
 * SDK's template cache (render_response, is_locally_renderable) renders the
 * input variables into it on the client; this module gives the same result:
 *
 *   - Nothing happens when the entry has no llm_kwargs (absent or null) and no
 *     variables are given (NULL or {}). With llm_kwargs present, even empty
 *     variables render (every placeholder becomes "").
 *   - prompt_template "chat": for each message, the "text" of every content
 *     block {"type": "text", "text": <str>}, in the message's template_format
 *     (default "f-string"); "completion": the same over prompt_template
 *     content with the template's template_format. Nothing else in it.
 *   - llm_kwargs, when non-empty, all in the format of the first chat message
 *     (or the completion's): messages[*].content and input[*].content (a str,
 *     or the "text" of blocks typed "text"/"input_text" or untyped), system
 *     (the same), contents[*].parts[*].text, history[*].parts[*].text,
 *     system_instruction (top level, else generation_config's; a dict's parts
 *     or a list of parts), and prompt when it is a str.
 *   - Each text is rendered on its own; where Python raises the text stays as
 *     it was. Only the format string "jinja2" is jinja2 (core/jinja.h: the
 *     SDK's SandboxedEnvironment with ChainableUndefined); anything else is
 *     f-string (core/fstr.h).
 *
 * Where the SDK itself would raise on an odd shape (messages that is a
 * number, content null, a non-dict message, ...) the answer is
 * RENDER_UNSUPPORTED, so the caller asks PromptLayer instead.
 *
 * Formats plug in at render.c's render_text: each engine has the same
 * contract (OK, RAISES = keep the text, UNSUPPORTED, NOROOM), and a text
 * either engine does not reproduce (outside fstr's or jinja's subset) makes
 * the whole entry RENDER_UNSUPPORTED.
 *
 * Pure: no I/O, no global state, thread-safe, never blocks.
 */
#ifndef PLCACHE_RENDER_H
#define PLCACHE_RENDER_H

#include <jansson.h>
#include <stddef.h>

typedef enum render_status {
    RENDER_ERROR = -1,      /* out of memory, or a rendered text past max_text */
    RENDER_OK = 0,          /* rendered as the SDK renders it (possibly unchanged) */
    RENDER_NOT_LOCAL = 1,   /* the SDK does not render this entry itself: ask PromptLayer */
    RENDER_UNSUPPORTED = 2, /* this module cannot give the SDK's answer: ask PromptLayer */
} render_status;

/* Bytes a rendered text may take when the caller passes max_text 0. */
#define RENDER_TEXT_MAX ((size_t)16 << 20)

/* The SDK's is_locally_renderable: 0 when prompt_template is missing, empty
 * or not an object, when a "chat" template has a message with role
 * "placeholder", or when prompt_template.tools holds a tool of type
 * "variable"; also 0 where the SDK would raise on the shape (a message or
 * tool that is not an object). 1 otherwise. */
int render_locally_renderable(const json_t *entry);

/* Renders vars (a JSON object, or NULL for none) into entry in place. The
 * caller owns entry and should pass a copy (json_deep_copy) of the cached
 * one: on anything but RENDER_OK it may be partly rendered and must be
 * dropped. RENDER_NOT_LOCAL when render_locally_renderable(entry) is 0;
 * RENDER_UNSUPPORTED for a jinja2 text to render, an f-string the fstr module
 * does not reproduce, a shape on which the SDK raises, or vars that is not an
 * object; RENDER_ERROR when memory runs out or a text would pass max_text
 * bytes (0: RENDER_TEXT_MAX). */
render_status render_entry(json_t *entry, const json_t *vars, size_t max_text);

/* Convenience over JSON text: parses entry (entrylen bytes) and vars (varslen
 * bytes; vars NULL for none), renders, and on RENDER_OK sets *out to the
 * entry as compact JSON (core/jsonw.h: keys in their original order, UTF-8
 * kept as is, numbers as Python writes them, so 0.7 stays 0.7) and *outlen to
 * its length; the caller frees *out. *out is NULL on any other status. Text
 * jansson cannot parse (not JSON, integers past 64 bits, NaN) is
 * RENDER_UNSUPPORTED: Python reads more than jansson does. An answer over
 * RENDER_JSON_MAX bytes is RENDER_ERROR. */
#define RENDER_JSON_MAX ((size_t)64 << 20)
render_status render_json(const char *entry, size_t entrylen, const char *vars, size_t varslen,
                          size_t max_text, char **out, size_t *outlen);

#endif
