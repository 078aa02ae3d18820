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

#endif
