/* snippet.h -- PromptLayer snippet references in prompt templates.
 *
 * The text of a text block may reference another template
 * (https://docs.promptlayer.com/features/prompt-registry/snippets):
 * @@@name@@@ (its latest version), @@@name@version_number:N@@@ or
 * @@@name@label:L@@@. Resolving replaces each reference by the referenced
 * version's content (the texts of its text blocks, joined with nothing),
 * itself resolved the same way. Only completion templates can be snippets.
 * A reference that names a missing template, version or label, a chat
 * template, a template already being expanded (a cycle) or that lies deeper
 * than SNIPPET_MAX_DEPTH is left as written. Pure memory: the caller's
 * lookup function reaches the templates.
 */
#ifndef PLCACHE_FAKE_SNIPPET_H
#define PLCACHE_FAKE_SNIPPET_H

#include <jansson.h>
#include <stdint.h>

/* Deepest chain of snippets expanded (the parent's own references are at
 * depth 1). */
#define SNIPPET_MAX_DEPTH 8

/* Finds version `version` (> 0), else label `label` (non-NULL), else the
 * latest version of template `name`. Returns its prompt_template (borrowed;
 * valid until the store changes) and sets *out_version, or NULL when the
 * template, version or label does not exist. */
typedef const json_t *(*snippet_lookup_fn)(void *ctx, const char *name, int64_t version,
                                           const char *label, int64_t *out_version);

/* Finds the references in the text blocks of prompt_template `pt`, which is
 * version `version` of template `name`. With `resolve`, replaces them in
 * place as described above. Returns the direct references that exist, in
 * order of first appearance and each once, as a new array of
 * {"prompt_name", "version", "label"} (label null unless the reference
 * named one), or NULL when memory runs out (pt may then be half-resolved). */
json_t *snippet_process(json_t *pt, const char *name, int64_t version, int resolve,
                        snippet_lookup_fn lookup, void *ctx);

#endif
