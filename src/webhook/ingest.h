/* ingest.h -- the webhook receiver's HTTP side: route, verify, record, answer.
 *
 * Serves PLCACHE_WEBHOOK_PATH, /healthz, /readyz and /metrics on one listener
 * (/metrics elsewhere when PLCACHE_METRICS_LISTEN gives it its own).
 * An authentic event is deduplicated and appended to the events stream by one
 * Lua script (SET NX EX + XADD, atomically), and answered 200 only from that
 * script's reply: never before the event is recorded. The events verified in
 * one loop turn share one script call (up to 64 events or 1 MiB of bodies),
 * sent at the end of that turn: under load, Redis runs one script for many
 * deliveries instead of one each. Redis is used
 * through rconn, so the loop never blocks; while Redis is away the answer is
 * 503 with Retry-After. With min_replicas > 0 the 200 also waits until that
 * many replicas hold the event (rwait); when they do not in time the event
 * stays recorded on the primary and the answer is 503 with Retry-After (the
 * sender's retry is then a duplicate, answered 200 once replicated).
 */
#ifndef PLCACHE_INGEST_H
#define PLCACHE_INGEST_H

#include <stddef.h>

#include "core/buf.h"
#include "core/rconn.h"
#include "core/sign.h"

struct event_base;
struct evhttp_request;
struct hsrv;
typedef struct ingest ingest;

typedef struct ingest_opts {
    const char *prefix; /* copied */
    const char *path;   /* copied */
    long tolerance_s;
    int retry_after_s;   /* Retry-After of a 503 */
    int min_replicas;    /* PLCACHE_MIN_REPLICAS: 0 answers once recorded */
    int wait_timeout_ms; /* how long one WAIT for them may take */
    int serve_metrics;   /* serve /metrics on this listener (0: it has its own) */
} ingest_opts;

/* Makes a receiver that records through redis (not owned) and verifies with
 * keys (ownership moves to the receiver; keys is emptied). NULL on no memory.
 * Free the receiver after redis (rconn_free answers what still waits). */
ingest *ingest_new(struct event_base *base, const ingest_opts *opts, rconn *redis, sign_keys *keys);

/* Lets /metrics report the server's connections (not owned; may be NULL). */
void ingest_set_server(ingest *in, struct hsrv *srv);

/* Adds a writer of more metrics to /metrics (the applier's, the fetcher's). */
typedef void (*ingest_metrics_fn)(buf *b, void *arg);
void ingest_set_metrics(ingest *in, ingest_metrics_fn fn, void *arg);

/* Writes the receiver's metrics and the more_metrics' (an ops_hooks.metrics:
 * arg is the ingest). */
void ingest_metrics(buf *b, void *arg);

/* Counts an answer the server gave itself (an hsrv_counter: arg is the
 * ingest), in plcache_http_requests_total with the others. */
void ingest_count(int status, void *arg);

/* Replaces the secrets (SIGHUP); ownership moves as in ingest_new. */
void ingest_set_keys(ingest *in, sign_keys *keys);

/* The hsrv_handler: answers every request exactly once. */
void ingest_handle(struct evhttp_request *req, void *arg);

/* Requests waiting on Redis. */
size_t ingest_inflight(const ingest *in);

void ingest_free(ingest *in);

#endif
