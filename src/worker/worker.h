/* worker.h -- pl:track to PromptLayer: take, forward, retry, dead-letter.
 *
 * One worker per process, on the daemon's event loop. Jobs move atomically
 * from pl:track into this worker's pl:track:processing:<id> (a Lua batch
 * move while the queue is deep, a blocking BLMOVE while it is empty), up to
 * the concurrency in flight, and leave it only when done, retried (moved to
 * pl:track:retry in the same Lua call) or dead (pl:track:dead, likewise).
 * A heartbeat in pl:track:workers lets live workers return the processing
 * lists of dead ones to pl:track.
 */
#ifndef PLCACHE_WORKER_H
#define PLCACHE_WORKER_H

#include <stddef.h>

#include "core/buf.h"
#include "core/fetch.h"
#include "core/rconn.h"

struct event_base;
typedef struct worker worker;

typedef struct worker_opts {
    const char *prefix;   /* copied */
    const char *base_url; /* copied */
    const char *api_key;  /* copied; never logged */
    const char *id;       /* worker id, copied */
    int concurrency;
    int max_attempts;
    long heartbeat_timeout_ms;
    long auth_pause_ms;
    long retry_base_ms;
    long retry_max_ms;
    int min_replicas;    /* PLCACHE_MIN_REPLICAS: a finish counts once they hold it */
    int wait_timeout_ms; /* one WAIT at most (below redis's command timeout) */
} worker_opts;

/* Makes a worker; redis carries commands, block the blocking moves (its
 * command timeout must exceed 1 s), fetch the POSTs (one attempt each: the
 * worker retries through Redis). Not owned. NULL on no memory. Starts from the
 * loop as soon as Redis is ready. */
worker *worker_new(struct event_base *base, const worker_opts *opts, rconn *redis, rconn *block,
                   fetcher *fetch);

/* Stops taking jobs; in-flight jobs go on. */
void worker_stop(worker *w);

/* Sends requests from now on with this API key (a SIGHUP re-read it); the
 * requests in flight keep the one they were sent with. Returns 0, or -1 when
 * memory ran out (the old key stays). */
int worker_set_api_key(worker *w, const char *key);

/* Jobs in flight plus Redis writes still owed (0: nothing left to wait for). */
size_t worker_busy(const worker *w);

/* 1 while a blocking take (BLMOVE) is under way: until it ends, Redis may
 * still move a job into this worker's processing list, so the release
 * (below) must wait for it. */
int worker_blocked(const worker *w);

/* Returns this worker's processing list to pl:track and removes its
 * heartbeat; `done` is called once with 0 (done) or -1 (Redis unavailable:
 * another worker returns them after the heartbeat timeout). */
void worker_release(worker *w, void (*done)(int rc, void *arg), void *arg);

/* Tells the worker a Redis link went up or down (from the rconn state
 * callbacks of both connections). NULL is fine. */
void worker_redis_state(worker *w, int up);

/* Prometheus metrics. */
void worker_metrics(worker *w, buf *b);

/* 1 while Redis is reachable. */
int worker_ready(const worker *w);

/* As applier_close/applier_free: close, free the fetcher and connections,
 * then free. */
void worker_close(worker *w);
void worker_free(worker *w);

#endif
