/* pturl.h -- the PromptLayer API URL of a template (DESIGN.md section 5).
 *
 * One builder for the applier, plcache sync and libplcache, so all three ask
 * the API for exactly the same thing and write exactly the same content: the
 * raw data of one version ("Get Prompt Template Raw Data"), with its
 * provider-ready, unrendered llm_kwargs when asked (include_llm_kwargs=true),
 * which is the object PromptLayer's own SDKs cache and render locally.
 */
#ifndef PLCACHE_PTURL_H
#define PLCACHE_PTURL_H

#include "core/buf.h"

/* Appends base (trailing slashes dropped) + "/prompt-templates/" + the
 * percent-encoded name, then "?label=<encoded label>" when label is not NULL,
 * else "?version=N" when version >= 0, else nothing (latest); and
 * "include_llm_kwargs=true" (after "&" or "?") when llm_kwargs is non-zero.
 * Returns 0, or -1 when b's maximum is reached (b then holds what it held
 * before). */
int pturl_template(buf *b, const char *base, const char *name, const char *label,
                   long long version, int llm_kwargs);

/* 1 when an answer with this HTTP status, to a request that asked for
 * include_llm_kwargs=true, means the API refused that flag (for this template:
 * "Requires model metadata to be set on the template"), so the same request
 * must be made once more without it: any 4xx but 401/403 (the key), 404 (the
 * template, version or label is gone either way), 408 and 429 (they pass).
 * 0 otherwise. Pure. */
int pturl_flag_refused(long status);

/* Appends base (trailing slashes dropped) + "/prompt-templates/" + the
 * percent-encoded name + "/labels" ("Get Prompt Template Labels") to b.
 * Returns 0, or -1 when b's maximum is reached (b then as before). */
int pturl_labels(buf *b, const char *base, const char *name);

/* "X-API-KEY: <key>", the header of every API request, in a new string (the
 * caller's: wipe it before freeing, core/wipe.h), or NULL when memory ran
 * out. */
char *pturl_key_header(const char *key);

/* Replaces *slot (a header from pturl_key_header, or NULL) with the header
 * for key, wiping the old one. Returns 0, or -1 when memory ran out (*slot
 * is left as it was). */
int pturl_swap_key_header(char **slot, const char *key);

#endif
