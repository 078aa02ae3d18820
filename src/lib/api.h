/* api.h -- libplcache's read-through call: one template from the PromptLayer
 * API, with libcurl's easy interface (blocking, bounded by a timeout).
 *
 * GET {base}/prompt-templates/<name>[?version=<n>|?label=<l>] with X-API-KEY
 * and Cache-Control: no-cache (DESIGN.md section 5), and include_llm_kwargs=true
 * unless turned off; when the API refuses that flag (pturl_flag_refused), the
 * same GET once more without it, as the applier does. The connection is kept
 * alive between calls of one client.
 */
#ifndef PLCACHE_LIB_API_H
#define PLCACHE_LIB_API_H

#include <stddef.h>

#include "plcache.h"

#define API_MAX_ANSWER ((size_t)8 << 20) /* bytes of one answer at most */

typedef struct api api;

/* What one fetch brought: the JSON text of the template version and its
 * template id ("" when the answer has none). */
typedef struct api_answer {
    char *json; /* owned by the caller: free() */
    size_t len;
    char id[32];
} api_answer;

/* A fetcher for base (no trailing slash needed) with the key (no control
 * characters: checked by the caller), asking for llm_kwargs when llm_kwargs is
 * non-zero. NULL when memory ran out or curl could not start. Free with
 * api_free. */
api *api_new(const char *base, const char *key, int timeout_ms, int llm_kwargs);
void api_free(api *a);

/* Fetches template `name` at the selector. Returns PLCACHE_OK with *out
 * filled; PLCACHE_NOT_FOUND on 404; PLCACHE_E_AUTH on 401/403; PLCACHE_E_API
 * on any other status, a transport failure, a timeout or an answer over
 * API_MAX_ANSWER; PLCACHE_E_PROTOCOL when a 200 is not a JSON object. The
 * reason goes to err (no key, no body). Blocks up to the timeout. */
plcache_status api_fetch(api *a, const char *name, plcache_select sel, const char *label,
                         long long version, api_answer *out, char *err, size_t errlen);

/* Asks PromptLayer to render template `name` at the selector: POST
 * {base}/prompt-templates/<name> with the JSON body {"label": l} or
 * {"version": n} (nothing for latest) plus "input_variables": vars (the JSON
 * text of an object, vars_len bytes; NULL for none) -- what the SDKs call for
 * a template they do not render themselves. Statuses as api_fetch; on
 * PLCACHE_OK *out holds the answer's JSON text. Blocks up to the timeout. */
plcache_status api_render(api *a, const char *name, plcache_select sel, const char *label,
                          long long version, const char *vars, size_t vars_len, api_answer *out,
                          char *err, size_t errlen);

#endif
