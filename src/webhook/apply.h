/* apply.h -- the applier: events in pl:events become cache writes.
 *
 * Runs on the webhook's event loop. Reads pl:events through a consumer group
 * (XREADGROUP on its own blocking connection), carries each event's plan out
 * (fetches from the PromptLayer API through a fetcher, then one atomic Lua
 * write per template), and XACKs the entry only after its writes are done.
 * Entries another receiver left pending are claimed (XAUTOCLAIM) after an idle
 * time; entries this receiver is working on are touched (XCLAIM JUSTID) so no
 * one else takes them meanwhile. Events of one template run one after the
 * other; different templates run side by side.
 *
 * Reconciliation: at start and every resync interval, every cached template
 * (latest, each cached label and version) is fetched again, and what the API
 * says is gone is removed, because PromptLayer does not promise to deliver
 * every webhook.
 */
#ifndef PLCACHE_APPLY_H
#define PLCACHE_APPLY_H

#include <stddef.h>

#include "core/buf.h"
#include "core/fetch.h"
#include "core/rconn.h"

struct event_base;
typedef struct applier applier;

typedef struct applier_opts {
    const char *prefix;      /* key prefix, copied */
    const char *base_url;    /* PROMPTLAYER_BASE_URL, copied */
    const char *api_key;     /* PROMPTLAYER_API_KEY, copied; never logged */
    const char *consumer;    /* consumer name in the group, copied */
    long resync_s;           /* 0 = no reconciliation */
    long claim_idle_ms;      /* pending entries idle this long are claimed */
    int batch;               /* entries per read */
    int max_jobs;            /* events and templates worked on at once */
    long long events_maxlen; /* pl:events is trimmed near this (read entries only); 0: default */
    int llm_kwargs;          /* fetch with include_llm_kwargs=true (again without it when the
                              * API refuses the flag); 0: without */
} applier_opts;

/* Makes an applier. redis carries commands, block carries the blocking reads
 * (its command timeout must exceed the 2 s block); fetch makes the API calls.
 * None of the three is owned. NULL when memory ran out. Starts working from
 * the loop as soon as Redis is ready. */
applier *applier_new(struct event_base *base, const applier_opts *opts, rconn *redis, rconn *block,
                     fetcher *fetch);

/* Stops reading, claiming and reconciling; work already started goes on. */
void applier_stop(applier *a);

/* Fetches with this API key from now on (a SIGHUP re-read it); fetches
 * under way keep theirs. Returns 0, or -1 when memory ran out (the old key
 * stays). */
int applier_set_api_key(applier *a, const char *key);

/* Jobs (events and reconciled templates) in progress, plus a read in flight. */
size_t applier_busy(const applier *a);

/* Appends the applier's Prometheus metrics. */
void applier_metrics(applier *a, buf *b);

/* Says the loop is ending: from now on finished work starts nothing new.
 * Call it before freeing the fetcher and the Redis connections (whose
 * pending callbacks then run and end their jobs), then applier_free. */
void applier_close(applier *a);

/* Frees the applier. Jobs still running are abandoned (their entries stay
 * pending and are claimed later). Must not be called from a callback. */
void applier_free(applier *a);

#endif
