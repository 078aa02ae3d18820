/* store.h -- the fake API's prompt templates, in memory.
 *
 * A template has a numeric id, a unique name, numbered versions (each a JSON
 * object: prompt_template, metadata, commit_message, ...) and release labels
 * pointing at versions. Every version written is checked (schema
 * "version_content": a valid prompt_template when present, metadata.model
 * with provider and name when present) and stamped with the time it was
 * written. The store answers the PromptLayer reads (one version by name or
 * id, version or label, its snippets expanded or not; a page of templates)
 * and the control API's edits. Pure memory: nothing here blocks or does I/O.
 *
 * The state format, used by --fixture, PUT /_fake/state and GET /_fake/state:
 *   {"templates": [{"id": 12, "prompt_name": "Hello",
 *                   "versions": {"1": {...}, "2": {...}},
 *                   "labels": {"prod": 2}}]}
 */
#ifndef PLCACHE_FAKE_STORE_H
#define PLCACHE_FAKE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

/* Results of store calls; each maps to an HTTP status in the server. */
typedef enum store_rc {
    STORE_OK = 0,
    STORE_BAD_REQUEST = -1, /* 400: the input is malformed */
    STORE_NOT_FOUND = -2,   /* 404: template, version or label missing */
    STORE_CONFLICT = -3,    /* 409: name or id already taken */
    STORE_NO_MEMORY = -4,   /* 500 */
} store_rc;

/* Longest template name or label accepted, in bytes. */
#define STORE_MAX_NAME 1024
/* Most templates the store holds. */
#define STORE_MAX_TEMPLATES 100000

typedef struct store store;

/* Returns an empty store the caller owns (free with store_free), or NULL when
 * memory runs out. `schemas` (borrowed; must outlive the store) checks the
 * versions written. */
store *store_new(const schema_set *schemas);
void store_free(store *s);

/* Replaces the whole state with `state` (format above; copied, the caller
 * keeps its reference). All or nothing: on error the store is unchanged and
 * err holds the reason. */
store_rc store_replace(store *s, const json_t *state, char *err, size_t errlen);

/* Returns the state in the format above (a new reference the caller owns),
 * templates ordered by id, or NULL when memory runs out. */
json_t *store_dump(const store *s);

/* One template in the state format ({"id", "prompt_name", "versions",
 * "labels"}); *out is a new reference the caller owns. */
store_rc store_dump_template(const store *s, const char *name, json_t **out, char *err,
                             size_t errlen);

/* Adds or replaces template `name` from {"id": n, "versions": {..},
 * "labels": {..}} (all keys optional; a new template without an id gets the
 * highest id + 1, a replaced one keeps its id). */
store_rc store_put_template(store *s, const char *name, const json_t *body, char *err,
                            size_t errlen);
store_rc store_delete_template(store *s, const char *name, char *err, size_t errlen);
store_rc store_rename(store *s, const char *name, const char *new_name, char *err, size_t errlen);

/* Adds or replaces version `version` (0: the latest + 1) with a copy of the
 * object `content`; *out_version gets the number used. A content that fails
 * the version check is STORE_BAD_REQUEST (err says why); nothing changes. */
store_rc store_put_version(store *s, const char *name, int64_t version, const json_t *content,
                           int64_t *out_version, char *err, size_t errlen);
store_rc store_put_label(store *s, const char *name, const char *label, int64_t version, char *err,
                         size_t errlen);
store_rc store_delete_label(store *s, const char *name, const char *label, char *err,
                            size_t errlen);

/* What store_get reads. */
typedef struct store_query {
    int64_t version;      /* > 0: this version */
    const char *label;    /* else, when non-NULL: the version this label points at */
    int resolve_snippets; /* expand @@@snippet@@@ references (snippet.h) */
    int with_created_at;  /* add "created_at" (when the version was written) */
    int64_t workspace_id; /* the answer's workspace_id, unless the version gives one */
} store_query;

/* The prompt_template of a version stored without one. */
#define STORE_DEFAULT_TEMPLATE                                                                     \
    "{\"type\": \"completion\", \"content\": [], \"input_variables\": [], "                        \
    "\"template_format\": \"f-string\"}"

/* One version for the PromptLayer reads: `ident` is a name, or the numeric id
 * when no template has that name; q picks the version (else the latest). On
 * STORE_OK *out is a new object the caller owns: {"id", "prompt_name",
 * "version", "workspace_id", "prompt_template", "metadata", "commit_message",
 * "tags", ["created_at",] "snippets", "llm_kwargs": null, ...the other stored
 * keys}. id, prompt_name, version, prompt_template (the stored one or
 * STORE_DEFAULT_TEMPLATE, snippets expanded or not) and snippets (the direct
 * references) always come from the store; the stored keys override the
 * other defaults. Everything in it is a copy. */
store_rc store_get(const store *s, const char *ident, const store_query *q, json_t **out, char *err,
                   size_t errlen);

/* The answer of GET /prompt-templates/<ident>/labels ("Get Prompt Template
 * Labels"): {"release_labels": [{"prompt_version_id", "prompt_version_number",
 * "release_label", "release_label_id"}]}, in label order. The two ids are
 * the fake's own (the real ones are database ids nobody reads): a version's
 * is template id * 1000 + its number, a label's its position + 1.
 * STORE_NOT_FOUND for an unknown template; *out is the caller's. */
store_rc store_labels(const store *s, const char *ident, json_t **out, char *err, size_t errlen);

/* Filters of the listing; NULL members filter nothing. */
typedef struct store_filter {
    const char *label;    /* only templates with this label, at its version */
    const char *name;     /* only names holding this, ASCII case-insensitively */
    int64_t workspace_id; /* as in store_query */
} store_filter;

/* The answer of GET /prompt-templates?page=&per_page= (page >= 1, per_page
 * >= 1): of every template that has a version and passes `f`, newest (the
 * highest id) first, the latest version (or the label's), shaped as
 * store_get's answer with snippets expanded, with Flask-style pagination
 * fields. A new reference, or NULL when memory runs out. */
json_t *store_list(const store *s, int64_t page, int64_t per_page, const store_filter *f);

#endif
