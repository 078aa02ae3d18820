/* answer.h -- reading PromptLayer's answers (DESIGN.md section 5).
 *
 * What the programs need of a template answer (GET /prompt-templates/...,
 * raw data) to place it in the cache: its version and id. The answer itself is
 * stored as received. Pure; jansson only.
 */
#ifndef PLCACHE_ANSWER_H
#define PLCACHE_ANSWER_H

#include <stddef.h>

/* Reads a template answer: returns 0 with its "version" (an integer >= 0) in
 * *version and its "id" in *id (-1 when absent or not an integer >= 0), or
 * -1 when it is not a JSON object with such a version. Either out pointer may
 * be NULL. */
int answer_template(const char *body, size_t len, long long *version, long long *id);

/* The template's name in a template answer ("prompt_name": a non-empty
 * string without NUL), malloc'd; NULL when absent or memory ran out. */
char *answer_name(const char *body, size_t len);

/* Called for each release label of a labels answer with its name and the
 * version number it points at; returns 0, or -1 to stop. */
typedef int (*answer_label_fn)(const char *label, long long version, void *arg);

/* Reads the answer of GET /prompt-templates/<name>/labels ({"release_labels":
 * [{"release_label", "prompt_version_number", ...}]}), calling fn for each
 * well-formed item (a non-empty label, a version >= 1). Returns 0, or -1 when
 * the answer is not that object or fn stopped. */
int answer_labels(const char *body, size_t len, answer_label_fn fn, void *arg);

#endif
