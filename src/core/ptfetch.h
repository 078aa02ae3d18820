/* ptfetch.h -- the GET of one template version, with a second try when the
 * API refuses include_llm_kwargs (DESIGN.md sections 4 and 5).
 *
 * The cache holds what PromptLayer's SDKs hold: a version with its
 * provider-ready llm_kwargs. The API builds those only from a template's model
 * metadata, and may refuse the flag for a template that has none (or a
 * provider it cannot shape). Such a template must still be cached, with
 * llm_kwargs null: the request is made once more without the flag, and that
 * answer is the one the caller gets. The applier and `plcache sync` share this
 * rule through here; libplcache's blocking read-through applies the same
 * pturl_flag_refused rule.
 */
#ifndef PLCACHE_PTFETCH_H
#define PLCACHE_PTFETCH_H

#include "core/fetch.h"

/* Starts fetch_get(f, url, headers, url, cb, arg) -- coalesced by URL -- where
 * url is `with_flag` when it is not NULL, else `without`. When the answer to
 * `with_flag` has a status pturl_flag_refused() accepts, `without` is fetched
 * (its own coalescing key) and cb gets that answer instead; cb is called
 * exactly once, from the loop, as fetch_get promises. Everything given is
 * copied. Returns 0, or -1 (cb never called) when fetch_get refuses or memory
 * ran out. Never blocks. */
int ptfetch_get(fetcher *f, const char *with_flag, const char *without, const char *const *headers,
                fetch_done_fn cb, void *arg);

#endif
