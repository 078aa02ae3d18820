/* refresh.h -- one template brought back to what the API says.
 *
 * The reconciliation the applier runs on its interval and `plcache sync` runs
 * on demand, written once. For a template: read its cached fields, id and gen
 * (one small script); fetch `latest` (always with `warm`, else when cached)
 * and every cached version:N and label:L, asking for llm_kwargs with the
 * fallback of core/ptfetch; then write every answer in one model/cachew write
 * that starts with "ifgen": if another writer changed the template meanwhile
 * nothing is written and the template is read and fetched again, up to
 * max_tries times. A 200 sets the field (`latest` only moves forward), a 404
 * removes it, a 404 for `latest` drops the template. The answers that came
 * are written even when other fetches of the same template failed.
 *
 * Async on the caller's loop (rconn + fetcher); never blocks.
 */
#ifndef PLCACHE_REFRESH_H
#define PLCACHE_REFRESH_H

#include <stddef.h>

#include "core/fetch.h"
#include "core/rconn.h"

typedef struct refresh_env {
    rconn *redis;
    fetcher *fetch;
    const char *prefix;          /* PLCACHE_PREFIX */
    const char *base_url;        /* PROMPTLAYER_BASE_URL */
    const char *const *headers;  /* of every API request (X-API-KEY, ...), NULL-terminated */
    int llm_kwargs;              /* ask for include_llm_kwargs (with the fallback) */
    int warm;                    /* fetch latest even when not cached */
    int max_tries;               /* reads + writes when the gen guard refuses (>= 1) */
    const int *stop;             /* when *stop, no new request or write starts; or NULL */
} refresh_env;
/* Everything env points to must outlive every refresh started with it. */

typedef struct refresh_report {
    const char *name;
    int cached;       /* the template's hash existed when it was read */
    int gone;         /* the API answered 404 for latest: the template was dropped */
    int written;      /* the write went through (or there was nothing to write) */
    size_t changed;   /* fields the write changed */
    size_t refreshed; /* fields answered 200 and written */
    size_t removed;   /* fields answered 404 and removed (the template, when gone) */
    size_t failed;    /* problems told to on_error (each once) */
} refresh_report;

/* A problem with one field (field not NULL) or with the template (field
 * NULL): why is a short text, never an answer's body. */
typedef void (*refresh_error_fn)(const char *name, const char *field, const char *why, void *arg);
/* Called once per refresh_start that returned 0, from the loop or from inside
 * refresh_start when nothing could start. */
typedef void (*refresh_done_fn)(const refresh_report *rep, void *arg);

/* Starts refreshing template `name` (copied). Returns 0, or -1 when memory
 * ran out (nothing called). */
int refresh_start(const refresh_env *env, const char *name, refresh_error_fn on_error,
                  refresh_done_fn done, void *arg);

/* Why an answer failed, for messages (never its body: it may echo a key). */
void refresh_why(const fetch_result *res, char *out, size_t outlen);

#endif
