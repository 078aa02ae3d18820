/* engine.h -- the inside of the worker, shared by its files.
 *
 * worker.h is the engine as main.c sees it; this header is what its four
 * files share and nothing else includes: struct worker, a job taken (inflight),
 * a finishing write owed (owed, owed_batch), and the calls from one file into
 * another. take.c takes jobs from pl:track, send.c forwards them, finish.c
 * writes where each one went, worker.c runs the worker and its tick. Every
 * function here runs on the worker's event loop, never blocks and cannot fail:
 * what it could not do is logged or tried again from the tick.
 */
#ifndef PLCACHE_ENGINE_H
#define PLCACHE_ENGINE_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fetch.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/rwait.h"
#include "worker/job.h"
#include "worker/worker.h"

struct event;

/* How finish_job places a job (the modes of finish_script), and why a job is
 * dead (finish_dead). */
enum { FIN_DONE, FIN_RETRY, FIN_DEAD, FIN_BACK };
enum { DEAD_INVALID, DEAD_REJECTED, DEAD_ATTEMPTS, NDEAD };

/* The names of the DEAD_* reasons, for logs and metrics (finish.c). */
extern const char *const finish_dead_names[NDEAD];

typedef struct inflight inflight;
struct inflight {
    struct worker *w;
    inflight *prev, *next;
    wjob job;
    int64_t sent_us;
    int claimed; /* matched during a recovery scan */
    int queued;  /* taken, waiting for a free slot or for a pause to end */
    inflight *qnext;
};

/* A job's finishing write: its five arguments of finish_script. */
typedef struct owed {
    struct owed *next;
    rargs args;
    int done; /* counted in plcache_worker_jobs_total{result="done"} once written */
} owed;

/* Finishing writes sent together in one call. */
typedef struct owed_batch {
    struct worker *w;
    owed *head;
    size_t n;
} owed_batch;

struct worker {
    struct event_base *base;
    rconn *redis, *block;
    rwait *wait; /* NULL when min_replicas is 0 */
    fetcher *fetch;
    char *base_url, *id, *key_header;
    char track[256], processing[512], processing_prefix[256], retry[256], dead[256], workers[256];
    worker_opts o;
    struct event *tick;
    inflight *jobs;                    /* every job taken and not finished, queued or sent */
    size_t njobs;                      /* ... their number */
    size_t nactive;                    /* ... of which sent (each holds a slot) */
    inflight *queue_head, *queue_tail; /* ... of which waiting, oldest first */
    int starting;                      /* send_start_queued is running (no reentry) */
    owed *owed_head, *owed_tail;
    size_t nowed, owed_sending;
    struct event *flush_ev; /* finishing writes of one loop turn go together */
    int flush_pending;
    int taking, blocking, stopping, closing, started, released, window;
    int recover, recovering; /* a link dropped: reconcile our processing list */
    int wait_logged;         /* one warning per replica shortfall */
    int64_t auth_until_ms, rate_until_ms;
    uint64_t rng; /* retry waits (model/retry.h) */
    int64_t last_promote, last_heartbeat, last_reap, last_depth;
    unsigned long nonce;
    /* metrics */
    unsigned long done, retried, deadn[NDEAD], auth_pauses, rate_pauses, reaped;
    long long depth_track, depth_retry, depth_dead;
    mhist forward;
};

/* ---- take.c ------------------------------------------------------------- */

/* Starts the next take from pl:track, sized by the free slots (a Lua batch
 * move, then a BLMOVE once the queue is found empty), or the recovery scan a
 * lost link asked for. Does nothing while a take is under way, while Redis is
 * not ready, or when nothing may be taken now; a take Redis refuses is tried
 * again at the next tick. */
void take_more(worker *w);

/* ---- send.c ------------------------------------------------------------- */

/* Sends queued jobs, oldest first, while slots are free, no pause runs and the
 * jobs not yet confirmed stay under send_unconfirmed_cap; an invalid job is
 * dead-lettered instead. Nothing is sent once the worker stops. A call made
 * from inside another (a job finished meanwhile) returns at once: the outer
 * loop goes on. A step the fetcher refuses is retried through Redis. */
void send_start_queued(worker *w);

/* Takes in a job's text (read, not kept): parsed, queued, then sent when a
 * slot is free. Out of memory, it is logged and left in the processing list,
 * to go back to pl:track when the worker stops. */
void send_start_job(worker *w, const char *text, size_t len);

/* Jobs sent and not yet recorded as finished may not pass this: the slots
 * (the concurrency narrowed by the window) plus a quarter. */
size_t send_unconfirmed_cap(const worker *w);

/* ---- finish.c ----------------------------------------------------------- */

/* The finishing script (KEYS[1] processing; ARGV groups of five: raw, mode,
 * target, score, value) and its length without the final NUL. A job no longer
 * in the list is left alone, so a replayed call does nothing twice. */
extern const char finish_script[];
extern const size_t finish_script_len;

/* Sends the finishing writes owed, FINISH_BATCH jobs per script call, while
 * Redis is ready and the worker is not closing. A batch that cannot be sent,
 * or that Redis (or WAIT, with min_replicas > 0) does not confirm, stays owed
 * for the next tick; a confirmed one leaves memory and frees its slots. */
void finish_flush_owed(worker *w);

/* The callback of w->flush_ev (arg: the worker): writes what this loop turn
 * finished, then takes more. */
void finish_on_flush(evutil_socket_t fd, short what, void *arg);

/* Removes f from the worker's jobs (from the queue, or freeing its slot) and
 * frees it; f is invalid afterwards. Writes nothing to Redis. */
void finish_unlink_job(inflight *f);

/* Frees one owed write and its arguments. */
void finish_owed_free(owed *o);

/* Owes the finishing write of f (mode FIN_*; target NULL: pl:track; value
 * NULL: empty; both copied), frees f (invalid afterwards) and gives its slot
 * to a job already taken. Out of memory, the write is dropped with a log line
 * and the job stays in the processing list. */
void finish_job(inflight *f, int mode, const char *target, double score, const char *value);

/* Dead-letters f (reason DEAD_*) with its error, HTTP status (0: none) and
 * attempts, then as finish_job. Out of memory, f is dropped from memory and
 * stays in the processing list. */
void finish_dead(inflight *f, int reason, const char *error, long status, int attempts);

/* Puts f into pl:track:retry, due in delay_ms, with `attempts` kept for the
 * next try, then as finish_job. Out of memory, as finish_dead. */
void finish_retry_later(inflight *f, int attempts, int64_t delay_ms);

/* ---- worker.c ----------------------------------------------------------- */

/* A reply callback for writes whose answer is not needed (a heartbeat, a
 * promotion, a job returned to pl:track: each is repeated or harmless). */
void worker_ignore(redisReply *r, void *priv);

#endif
