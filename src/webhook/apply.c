/* apply.c -- the applier, pl:events to cache writes: its design, its life, its metrics.
 *
 * A job is one event (or one template being reconciled: then core/refresh
 * does the whole of it, behind the chain below). An event's life:
 *
 *   [list fields]   rename: HKEYS of the old hash to rebuild
 *   [pre-write]     what needs no fetch, done at once: a label moving to a
 *                   cached version is repointed, a deleted label removed,
 *                   a deleted template dropped
 *   fetches         one GET per target (version, label, latest), concurrent
 *   write           one Lua call applies every answer atomically: the
 *                   template's hash never shows half a change, latest only
 *                   moves forward, gen is bumped and the name published on
 *                   pl:invalidate when anything changed
 *   XACK            only now; a job that failed is not acknowledged, so its
 *                   entry stays pending and is claimed again after the idle
 *                   time (by this receiver or another)
 *
 * Jobs of one template name run one after the other (a chain behind the
 * running one), so two events of a template never race in one receiver.
 * Content always comes from the API (Cache-Control: no-cache), so events
 * applied late, twice or out of order still converge on PromptLayer's state.
 *
 * Where each part lives (src/webhook/apply_int.h holds what they share):
 *
 *   apply.c          the applier: made, stopped, closed, freed; its metrics
 *   apply_job.c      jobs: an entry's targets, the fetches, the cachew
 *                    write, XACK, the chain of each template
 *   apply_stream.c   reading pl:events: the consumer group, XREADGROUP,
 *                    XAUTOCLAIM, touching, trimming (stream_script), the
 *                    pending count, and the tick that drives them
 *   apply_resync.c   reconciliation: the SCAN of cached templates, each one
 *                    a job that core/refresh carries out
 */
#include "webhook/apply_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/refresh.h"
#include "core/timeutil.h"
#include "core/wipe.h"
#include "model/keys.h"
#include "model/pturl.h"

/* Longer than a screen, and flat: each option is copied or defaulted, then
 * one check of everything that can fail frees a half-made applier
 * (applier_free takes one), then the two timers start. */
applier *applier_new(struct event_base *base, const applier_opts *o, rconn *redis, rconn *block,
                     fetcher *fetch)
{
    applier *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->base = base;
    a->redis = redis;
    a->block = block;
    a->fetch = fetch;
    a->prefix = strdup(o->prefix);
    a->base_url = strdup(o->base_url);
    a->consumer = strdup(o->consumer);
    a->api_key_header = pturl_key_header(o->api_key);
    a->llm_kwargs = o->llm_kwargs;
    a->headers[0] = a->api_key_header;
    a->headers[1] = "Cache-Control: no-cache";
    a->headers[2] = "Accept: application/json";
    a->refresh = (refresh_env){.redis = redis,
                               .fetch = fetch,
                               .prefix = a->prefix,
                               .base_url = a->base_url,
                               .headers = a->headers,
                               .llm_kwargs = a->llm_kwargs,
                               .warm = 0, /* what is cached, and only that */
                               .max_tries = RESYNC_TRIES,
                               .stop = &a->closing};
    a->resync_s = o->resync_s;
    a->claim_idle_ms = o->claim_idle_ms > 0 ? o->claim_idle_ms : 60000;
    a->batch = o->batch > 0 ? o->batch : 32;
    a->max_jobs = o->max_jobs > 0 ? o->max_jobs : 256;
    a->events_maxlen = o->events_maxlen > 0 ? o->events_maxlen : KEYS_EVENTS_MAXLEN;
    mhist_init(&a->latency, metrics_latency_bounds, metrics_latency_nbounds);
    a->tick = evtimer_new(base, stream_tick, a);
    a->resync_timer = evtimer_new(base, resync_timer_fired, a);
    if (a->prefix == NULL || a->base_url == NULL || a->consumer == NULL ||
        a->api_key_header == NULL || a->tick == NULL || a->resync_timer == NULL ||
        keys_make(a->events_key, sizeof(a->events_key), o->prefix, KEYS_EVENTS, NULL) < 0 ||
        keys_make(a->dead_key, sizeof(a->dead_key), o->prefix, KEYS_EVENTS_DEAD, NULL) < 0 ||
        keys_make(a->ids_key, sizeof(a->ids_key), o->prefix, KEYS_PROMPT_IDS, NULL) < 0 ||
        keys_make(a->channel, sizeof(a->channel), o->prefix, KEYS_INVALIDATE, NULL) < 0) {
        applier_free(a);
        return NULL;
    }
    a->last_claim_ms = time_now_ms(); /* first claim after half an idle time */
    snprintf(a->claim_from, sizeof(a->claim_from), "0-0");
    a->resync_due = a->resync_s > 0;
    if (a->resync_s > 0) {
        struct timeval tv = {a->resync_s, 0};
        evtimer_add(a->resync_timer, &tv);
    }
    struct timeval now = {0, 0};
    evtimer_add(a->tick, &now);
    return a;
}

int applier_set_api_key(applier *a, const char *key)
{
    if (pturl_swap_key_header(&a->api_key_header, key) != 0)
        return -1;
    a->headers[0] = a->api_key_header; /* the reconciliation's too (a->refresh points here) */
    return 0;
}

void applier_stop(applier *a)
{
    a->stopping = 1;
    a->resync_running = 0;
}

size_t applier_busy(const applier *a)
{
    return a->njobs + (size_t)a->reading;
}

void applier_close(applier *a)
{
    a->closing = 1;
}

void applier_free(applier *a)
{
    if (a == NULL)
        return;
    a->closing = 1;
    while (a->jobs) {
        job *j = a->jobs;
        a->jobs = j->next;
        ajob_free(j);
    }
    if (a->tick)
        event_free(a->tick);
    if (a->resync_timer)
        event_free(a->resync_timer);
    free(a->prefix);
    free(a->base_url);
    free(a->consumer);
    wipe_free(a->api_key_header);
    free(a);
}

/* The events applied and failed, by type; what the writes did. */
static void event_metrics(applier *a, buf *b)
{
    char labels[128];
    metrics_header(b, "plcache_apply_events_total", "counter",
                   "Events applied to the cache (acknowledged), by type.");
    for (size_t i = 0; i < NAPPLY; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", ajob_types[i]);
        metrics_sample(b, "plcache_apply_events_total", labels, (double)a->applied[i]);
    }
    metrics_header(b, "plcache_apply_failures_total", "counter",
                   "Event applications that failed and were left pending for a retry, by type.");
    for (size_t i = 0; i < NAPPLY; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", ajob_types[i]);
        metrics_sample(b, "plcache_apply_failures_total", labels, (double)a->failed[i]);
    }
    metrics_single(b, "plcache_apply_invalid_total", "counter",
                   "Template events whose payload lacked what they need (acknowledged).",
                   (double)a->invalid);
    metrics_histogram(b, "plcache_apply_latency_seconds",
                      "From an event's received_at to its cache write.", &a->latency);
    metrics_single(b, "plcache_cache_writes_total", "counter", "Atomic template writes.",
                   (double)a->writes);
    metrics_single(b, "plcache_cache_changes_total", "counter",
                   "Cache fields changed by writes (identical content changes nothing).",
                   (double)a->changes);
    metrics_single(b, "plcache_cache_writes_redone_total", "counter",
                   "Event writes refused because the template changed while fetched, "
                   "then fetched again.",
                   (double)a->redone);
}

/* The reconciliation, and the stream: claims, gaps, dead letters, pending. */
static void stream_metrics(applier *a, buf *b)
{
    metrics_single(b, "plcache_reconcile_runs_total", "counter", "Completed reconciliations.",
                   (double)a->resync_runs);
    metrics_single(b, "plcache_reconcile_changes_total", "counter",
                   "Cache fields that reconciliation found out of date.", (double)a->resync_found);
    metrics_single(b, "plcache_apply_claimed_total", "counter",
                   "Events claimed from receivers that left them pending.", (double)a->claimed);
    metrics_single(b, "plcache_apply_gaps_total", "counter",
                   "Times events were found removed from pl:events before they were applied "
                   "(each starts a reconciliation).",
                   (double)a->gaps);
    metrics_single(b, "plcache_apply_events_lost_total", "counter",
                   "Events removed from pl:events before they were applied (when counted).",
                   (double)a->lost);
    metrics_single(b, "plcache_apply_events_given_up_total", "counter",
                   "Events delivered 10 times without being applied: moved to pl:events:dead, "
                   "acknowledged, their templates reconciled.",
                   (double)a->given_up);
    metrics_single(b, "plcache_apply_consumers_removed_total", "counter",
                   "Consumers of the group removed: idle, holding nothing (receivers gone).",
                   (double)a->consumers_removed);
    metrics_single(b, "plcache_events_trimmed_total", "counter",
                   "Entries this receiver trimmed from pl:events.", (double)a->trimmed);
    metrics_single(b, "plcache_apply_pending", "gauge",
                   "Entries delivered to the group and not acknowledged (XPENDING).",
                   (double)a->pending);
    int64_t oldest = a->oldest_pending_ms > 0 ? time_now_ms() - a->oldest_pending_ms : 0;
    metrics_single(b, "plcache_apply_oldest_pending_seconds", "gauge",
                   "Age of the oldest event delivered to the group and not acknowledged "
                   "(0: none); it grows while an event cannot be applied.",
                   oldest > 0 ? (double)oldest / 1000.0 : 0.0);
    metrics_single(b, "plcache_apply_jobs", "gauge", "Events and templates being worked on.",
                   (double)a->njobs);
}

void applier_metrics(applier *a, buf *b)
{
    event_metrics(a, b);
    stream_metrics(a, b);
}
