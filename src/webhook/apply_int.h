/* apply_int.h -- the inside of the applier, shared by its files.
 *
 * Not a public header: only apply.c, apply_job.c, apply_stream.c and
 * apply_resync.c include it (src/webhook/apply.h is the applier's interface).
 * It holds the applier's state (struct applier), a job and its targets, the
 * constants of the stream reading, and the functions one of those files calls
 * in another: ajob_ (apply_job.c), stream_ (apply_stream.c), resync_
 * (apply_resync.c). Everything runs on the webhook's event loop: nothing here
 * blocks, and nothing is safe to call from another thread.
 */
#ifndef PLCACHE_APPLY_INT_H
#define PLCACHE_APPLY_INT_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "core/refresh.h"
#include "model/field.h"
#include "model/plan.h"
#include "model/rargs.h"
#include "webhook/apply.h"

#define GROUP "plcache-applier"
#define BLOCK_MS 2000
#define TICK_MS 200
#define PENDING_EVERY_MS 10000
#define CONSUMER_IDLE_FACTOR 10 /* a consumer idle 10 claim times, holding nothing, goes */
#define MAX_DELIVERIES 10       /* an event delivered this often unapplied is given up */
#define DEAD_EVENTS_MAXLEN 10000
#define STREAM_EVERY_MS 1000
#define HARD_CAP_FACTOR 10 /* pl:events is cut past 10 times its target length */
#define RESYNC_TRIES 3     /* a template reconciled while a writer raced it: tries */
#define WRITE_TRIES 5      /* an event's write refused because the hash moved on: tries */

/* Event types counted by name; others are "other", the last
 * (apply_job.c; NAPPLY is checked against it there). */
#define NAPPLY 10
extern const char *const ajob_types[NAPPLY];

typedef struct target {
    field f;     /* f.label points into label */
    char *label; /* owned */
    char *field; /* owned: f as text, the cache field this target fills */
    long status; /* answer, 0 until done */
    char *body;  /* owned: the answer when 200 */
    long long got_version, got_id;
    char *got_name; /* owned: the answer's prompt_name, when 200 */
} target;

typedef struct job job;
struct job {
    struct applier *a;
    job *prev, *next; /* the active list */
    job *chain;       /* next job of the same template, waiting */
    int running;      /* at the head of its chain */
    char sid[48];     /* stream entry id; "" for a reconcile job */
    size_t type_idx;
    plan p;
    /* An event's fetches ask for its template by id (p.id), so that an event
     * that names a template by an old name still reaches it; the write goes to
     * the hash of the name the API answered (wname, owned; p.name at first).
     * by_name: the API answered another template for the id (a template
     * whose name is those digits), so the event's name is asked instead. */
    char *wname;
    int by_name;
    int reconcile;
    int64_t received_ms;
    target *targets;
    size_t ntargets, fetches_left;
    rargs pre; /* pre-write operations */
    /* The hash's basis (model/cachew.h: its gen, or when its name was
     * dropped) read before the fetches: the write is refused when it moved on
     * (another receiver wrote a newer answer, a delete came), and done again. */
    char basis[32];
    int tries;
    int failed;
    const char *why; /* failure reason, static */
};

struct applier {
    struct event_base *base;
    rconn *redis, *block;
    fetcher *fetch;
    char *prefix, *base_url, *consumer;
    char *api_key_header;
    const char *headers[4]; /* of every API request */
    int llm_kwargs;         /* ask the API for include_llm_kwargs (DESIGN.md section 4) */
    char events_key[256], dead_key[256], ids_key[256], channel[256];
    long resync_s, claim_idle_ms;
    int batch, max_jobs;
    struct event *tick, *resync_timer;
    job *jobs; /* active list: running and chained */
    size_t njobs;
    int group_ready, group_asked, reading, stopping, closing;
    int64_t last_claim_ms, last_touch_ms, last_pending_ms, last_stream_ms;
    /* Where the next XAUTOCLAIM starts: one call looks at no more than
     * COUNT x 10 pending entries, so a scan of a long pending list goes on
     * from the cursor the last call returned; "0-0" starts it over. */
    char claim_from[64];
    long long events_maxlen;
    int stream_busy;
    /* reconciliation: each cached template through core/refresh */
    refresh_env refresh;
    int resync_running, resync_due, scan_busy;
    char scan_cursor[32];
    int64_t resync_started_us;
    unsigned long resync_templates, resync_changes;
    /* metrics */
    unsigned long applied[NAPPLY], failed[NAPPLY], invalid, writes, changes, redone;
    unsigned long resync_runs, resync_found, claimed, given_up;
    unsigned long gaps, lost, trimmed, consumers_removed;
    long long pending;
    long long oldest_pending_ms; /* when the oldest pending entry was recorded; 0: none */
    mhist latency;
};

/* ---- apply_job.c: jobs ---------------------------------------------------- */

/* A job of a, not yet on its active list: no plan (PLAN_INVALID), type
 * "other". The caller owns it until ajob_submit. NULL when memory ran out. */
job *ajob_new(applier *a);

/* Frees a job that is not on the active list, or one the applier drops while
 * it is freed. Never fails. */
void ajob_free(job *j);

/* Puts a job on the active list and runs it, or chains it behind the running
 * job of the same template. Takes ownership; never fails (a job that cannot
 * go on ends as failed, its entry left pending). */
void ajob_submit(applier *a, job *j);

/* Reconciles template `name` (core/refresh) as a job behind its chain.
 * Returns 0, or -1 when memory ran out. */
int resync_template(applier *a, const char *name);

/* Runs the jobs of an array of stream entries (an XREADGROUP or XAUTOCLAIM
 * reply; NULL: none). Entries already worked on are skipped; entries that
 * change nothing in the cache are acknowledged together in one XACK; entries
 * whose job cannot be made stay pending. Never fails. */
void ajob_take_entries(applier *a, redisReply *entries);

/* ---- apply_stream.c: reading, claiming and trimming pl:events ------------- */

/* Asks for the next entries (XREADGROUP on the blocking connection) unless a
 * read is in flight, the applier stops or closes, the group is not made yet,
 * the connection is down or max_jobs are running. Never fails: a read that
 * cannot start now is asked again at the next tick or finished job. */
void stream_read_more(applier *a);

/* The applier's timer (every TICK_MS): makes the consumer group, claims idle
 * entries, touches this receiver's entries, trims pl:events, counts pending
 * entries, starts a reconciliation when one is due, reads more. Re-arms
 * itself; arg is the applier. */
void stream_tick(evutil_socket_t fd, short what, void *arg);

/* ---- apply_resync.c: reconciliation scheduling ---------------------------- */

/* The resync interval's timer: marks a reconciliation due (the tick starts
 * it) and re-arms itself; arg is the applier. */
void resync_timer_fired(evutil_socket_t fd, short what, void *arg);

/* Starts a reconciliation run: SCAN from the first cached template, each one
 * found submitted as a reconcile job. Call when resync_due and no run is
 * going on. Never fails: a scan that cannot start is tried again by
 * resync_step. */
void resync_begin(applier *a);

/* Asks for more keys while there is room (max_jobs), and ends the run (log,
 * metrics) once the scan is complete and no reconcile job is left. Does
 * nothing when no run is going on, a SCAN is in flight or the applier
 * closes. Never fails. */
void resync_step(applier *a);

#endif
