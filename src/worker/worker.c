/* worker.c -- the log-job engine: the worker itself and its housekeeping.
 *
 * The engine is four files around engine.h (struct worker, the jobs in flight,
 * the finishing writes owed): take.c takes jobs from pl:track and recovers
 * after a lost link, send.c forwards them to PromptLayer, finish.c writes
 * where each one went, and this file holds the worker (worker.h) and the tick:
 * heartbeat, promotion of due retries, reaping of silent workers, queue depths.
 *
 * Taking (take.c): while fewer than `window` jobs are in flight (plus a
 * quarter more, taken ahead) and nothing asks us to wait, one Lua call moves up
 * to that many from pl:track (right end, the oldest) to the head of our
 * processing list. When it finds the queue empty, a BLMOVE on the blocking
 * connection waits up to 1 s for the next job. A job taken waits in memory
 * (oldest first) for a free slot, so a finished request's slot is used again
 * at once, without a Redis round trip; jobs taken ahead are in the processing
 * list like the rest and go back to pl:track the same way if we stop or die.
 *
 * Forwarding (send.c): each job's steps are POSTed one after the other through
 * the fetcher (one attempt: retries go through Redis so a crash loses nothing).
 * The answer decides (DESIGN.md section 6):
 *   2xx                 next step (request_id from this answer), or done
 *   408, 429, 5xx, none retry: wrapped with its attempts and remaining steps
 *                       into pl:track:retry, due after full-jitter backoff or
 *                       Retry-After; dead after max_attempts
 *   401, 403            the whole worker pauses auth_pause; the job waits in
 *                       pl:track:retry for the same time, its attempts kept
 *   other               dead at once, with status and answer
 * A 429 also pauses every new request until PromptLayer's wait is over, and
 * the window of jobs in flight then grows back from 1, one per success.
 *
 * Finishing (finish.c): one Lua call removes the job from the processing list
 * and, only if it was still there, adds it to its next place. So a write
 * replayed after a lost reply does nothing twice, and a job a reaper already
 * returned to pl:track is not also retried or dead-lettered. While Redis is
 * away, finished jobs wait in memory (at most what was taken) and are written
 * when it is back. With min_replicas > 0 a finishing write counts (and leaves
 * memory) only once WAIT says that many replicas hold it; otherwise it is
 * written again later, which the script makes harmless. Jobs sent and not yet
 * confirmed never pass 1.25 x the slots (send_unconfirmed_cap): past that,
 * nothing new is sent.
 */
#include "worker/worker.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/wipe.h"
#include "core/metrics.h"
#include "core/rwait.h"
#include "core/timeutil.h"
#include "model/keys.h"
#include "model/pturl.h"
#include "model/retry.h"
#include "worker/engine.h"
#include "worker/job.h"

#define TICK_MS 100
#define PROMOTE_EVERY_MS 200
#define HEARTBEAT_EVERY_MS 1000
#define DEPTH_EVERY_MS 1000

/* KEYS[1] retry set, KEYS[2] pl:track; ARGV[1] now. Due jobs go to the end
 * taken next (pl:track's type checked first, as in finish_script). */
static const char promote_script[] =
    "local t = redis.call('TYPE', KEYS[2]).ok\n"
    "if t ~= 'list' and t ~= 'none' then\n"
    "  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' is not a list')\n"
    "end\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)\n"
    "for _, v in ipairs(due) do\n"
    "  redis.call('ZREM', KEYS[1], v)\n"
    "  redis.call('RPUSH', KEYS[2], v)\n"
    "end\n"
    "return #due\n";

/* KEYS[1] workers, KEYS[2] pl:track; ARGV[1] cutoff (ms), ARGV[2] processing
 * key prefix, ARGV[3] our id, ARGV[4] "self" to return our own list. Returns
 * the jobs moved back. (The processing keys are built here: plcache needs a
 * single Redis, not a cluster.) */
static const char reap_script[] =
    "local ids\n"
    "if ARGV[4] == 'self' then ids = {ARGV[3]} else\n"
    "  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 16)\n"
    "end\n"
    "local moved = 0\n"
    "for _, id in ipairs(ids) do\n"
    "  if ARGV[4] == 'self' or id ~= ARGV[3] then\n"
    "    local pk = ARGV[2] .. id\n"
    "    while redis.call('LMOVE', pk, KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return moved\n";

/* ---- housekeeping ------------------------------------------------------- */

void worker_ignore(redisReply *r, void *priv)
{
    (void)r;
    (void)priv;
}

static void reaped(redisReply *r, void *priv)
{
    worker *w = priv;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", r->integer);
        w->reaped += (unsigned long)r->integer;
        log_warn("returned the jobs of a worker that stopped answering to pl:track", "count", n);
    }
}

static void depth_read(redisReply *r, void *priv)
{
    long long *slot = priv;
    if (r && r->type == REDIS_REPLY_INTEGER)
        *slot = r->integer;
}

/* Warns loudly when Redis may lose queued jobs (one CONFIG GET for three
 * parameters; a Redis that forbids CONFIG is not checked). */
static void config_read(redisReply *r, void *priv)
{
    (void)priv;
    const char *policy = NULL, *aof = NULL, *save = NULL;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        log_info("cannot read Redis's configuration: eviction and persistence not checked");
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "maxmemory-policy") == 0)
            policy = v;
        else if (strcmp(k, "appendonly") == 0)
            aof = v;
        else if (strcmp(k, "save") == 0)
            save = v;
    }
    if (policy && strcmp(policy, "noeviction") != 0)
        log_warn("REDIS CAN EVICT KEYS: queued jobs would be lost under memory pressure; set "
                 "maxmemory-policy noeviction",
                 "maxmemory-policy", policy);
    if (aof && strcmp(aof, "no") == 0 && save && save[0] == '\0')
        log_warn("REDIS KEEPS NOTHING ON DISK: persistence is off (no appendonly, no save), "
                 "queued jobs are lost if Redis restarts; set appendonly yes",
                 "appendonly", aof);
    else if (aof && strcmp(aof, "no") == 0)
        log_warn("Redis persistence is snapshots only (appendonly no): jobs queued since the "
                 "last snapshot are lost if Redis stops; appendonly yes is safer",
                 "appendonly", aof);
}

/* Returns the processing lists of workers silent since `cutoff` (mode
 * "others") or our own (mode "self") to pl:track. */
static int send_reap(worker *w, const char *mode, int64_t cutoff, rconn_reply_fn cb, void *priv)
{
    char ms[32];
    snprintf(ms, sizeof(ms), "%lld", (long long)cutoff);
    const char *argv[] = {"EVAL", reap_script,          "2",   w->workers, w->track,
                          ms,     w->processing_prefix, w->id, mode};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = i == 1 ? sizeof(reap_script) - 1 : strlen(argv[i]);
    return rconn_argv(w->redis, cb, priv, 9, argv, lens);
}

static void first_contact(worker *w)
{
    const char *cfg[] = {"CONFIG", "GET", "maxmemory-policy", "appendonly", "save"};
    size_t cl[] = {6, 3, 16, 10, 4};
    rconn_argv(w->redis, config_read, w, 5, cfg, cl);
    /* Jobs a previous run with the same id left in our list go back first. */
    send_reap(w, "self", time_now_ms(), reaped, w);
    w->started = 1;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    int64_t now = time_now_ms();
    char ms[32];
    if (!w->closing)
        send_start_queued(w); /* a pause may be over */
    if (!w->closing && rconn_ready(w->redis)) {
        if (!w->started)
            first_contact(w);
        finish_flush_owed(w);
        if (now - w->last_heartbeat >= HEARTBEAT_EVERY_MS && !w->released) {
            snprintf(ms, sizeof(ms), "%lld", (long long)now);
            const char *argv[] = {"ZADD", w->workers, ms, w->id};
            size_t lens[] = {4, strlen(w->workers), strlen(ms), strlen(w->id)};
            rconn_argv(w->redis, worker_ignore, w, 4, argv, lens);
            w->last_heartbeat = now;
        }
        if (now - w->last_promote >= PROMOTE_EVERY_MS) {
            snprintf(ms, sizeof(ms), "%lld", (long long)now);
            const char *argv[] = {"EVAL", promote_script, "2", w->retry, w->track, ms};
            size_t lens[] = {
                4, sizeof(promote_script) - 1, 1, strlen(w->retry), strlen(w->track), strlen(ms)};
            rconn_argv(w->redis, worker_ignore, w, 6, argv, lens);
            w->last_promote = now;
        }
        if (now - w->last_reap >= w->o.heartbeat_timeout_ms / 2 && !w->stopping) {
            send_reap(w, "others", now - w->o.heartbeat_timeout_ms, reaped, w);
            w->last_reap = now;
        }
        if (now - w->last_depth >= DEPTH_EVERY_MS) {
            const char *a1[] = {"LLEN", w->track};
            size_t l1[] = {4, strlen(w->track)};
            rconn_argv(w->redis, depth_read, &w->depth_track, 2, a1, l1);
            const char *a2[] = {"ZCARD", w->retry};
            size_t l2[] = {5, strlen(w->retry)};
            rconn_argv(w->redis, depth_read, &w->depth_retry, 2, a2, l2);
            const char *a3[] = {"LLEN", w->dead};
            size_t l3[] = {4, strlen(w->dead)};
            rconn_argv(w->redis, depth_read, &w->depth_dead, 2, a3, l3);
            w->last_depth = now;
        }
        take_more(w);
    }
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(w->tick, &tv);
}

/* ---- the worker --------------------------------------------------------- */

worker *worker_new(struct event_base *base, const worker_opts *o, rconn *redis, rconn *block,
                   fetcher *fetch)
{
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->base = base;
    w->redis = redis;
    w->block = block;
    w->fetch = fetch;
    w->o = *o;
    w->rng = retry_seed((uint64_t)(uintptr_t)w);
    w->base_url = strdup(o->base_url);
    w->id = strdup(o->id);
    w->key_header = pturl_key_header(o->api_key);
    w->o.prefix = w->o.base_url = w->o.api_key = w->o.id = NULL;
    w->window = o->concurrency;
    if (o->min_replicas > 0) {
        w->wait = rwait_new(redis, o->min_replicas, o->wait_timeout_ms);
        if (w->wait == NULL) {
            worker_free(w);
            return NULL;
        }
    }
    mhist_init(&w->forward, metrics_latency_bounds, metrics_latency_nbounds);
    w->tick = evtimer_new(base, tick, w);
    w->flush_ev = event_new(base, -1, 0, finish_on_flush, w);
    if (w->base_url == NULL || w->id == NULL || w->key_header == NULL || w->tick == NULL ||
        w->flush_ev == NULL ||
        keys_make(w->track, sizeof(w->track), o->prefix, KEYS_TRACK, NULL) < 0 ||
        keys_make(w->retry, sizeof(w->retry), o->prefix, KEYS_TRACK_RETRY, NULL) < 0 ||
        keys_make(w->dead, sizeof(w->dead), o->prefix, KEYS_TRACK_DEAD, NULL) < 0 ||
        keys_make(w->workers, sizeof(w->workers), o->prefix, KEYS_TRACK_WORKERS, NULL) < 0 ||
        keys_make(w->processing_prefix, sizeof(w->processing_prefix), o->prefix,
                  KEYS_TRACK_PROCESSING, NULL) < 0 ||
        snprintf(w->processing, sizeof(w->processing), "%s%s", w->processing_prefix, o->id) >=
            (int)sizeof(w->processing)) {
        worker_free(w);
        return NULL;
    }
    struct timeval now = {0, 0};
    evtimer_add(w->tick, &now);
    return w;
}

int worker_set_api_key(worker *w, const char *key)
{
    return pturl_swap_key_header(&w->key_header, key);
}

void worker_stop(worker *w)
{
    w->stopping = 1;
}

size_t worker_busy(const worker *w)
{
    /* Jobs waiting for a slot are not work under way: a stop leaves them to
     * the release. */
    return w->nactive + w->nowed + (size_t)w->taking + (size_t)w->blocking;
}

int worker_blocked(const worker *w)
{
    return w->blocking;
}

int worker_ready(const worker *w)
{
    return rconn_ready(w->redis);
}

typedef struct release_ctx {
    void (*done)(int rc, void *arg);
    void *arg;
} release_ctx;

static void released(redisReply *r, void *priv)
{
    release_ctx *rc = priv;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", r->integer);
        log_info("returned unfinished jobs to pl:track", "count", n);
    }
    rc->done(r && r->type == REDIS_REPLY_INTEGER ? 0 : -1, rc->arg);
    free(rc);
}

void worker_release(worker *w, void (*done)(int rc, void *arg), void *arg)
{
    release_ctx *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        done(-1, arg);
        return;
    }
    rc->done = done;
    rc->arg = arg;
    w->released = 1;
    if (send_reap(w, "self", time_now_ms(), released, rc) != 0) {
        free(rc);
        done(-1, arg);
    }
}

void worker_close(worker *w)
{
    w->closing = 1;
}

void worker_free(worker *w)
{
    if (w == NULL)
        return;
    w->closing = 1;
    /* Batches still waiting on replicas come back to the owed list. */
    rwait_free(w->wait);
    w->wait = NULL;
    while (w->jobs) {
        inflight *f = w->jobs;
        w->jobs = f->next;
        job_free(&f->job);
        free(f);
    }
    while (w->owed_head) {
        owed *o = w->owed_head;
        w->owed_head = o->next;
        finish_owed_free(o);
    }
    if (w->tick)
        event_free(w->tick);
    if (w->flush_ev)
        event_free(w->flush_ev);
    free(w->base_url);
    free(w->id);
    wipe_free(w->key_header);
    free(w);
}

void worker_metrics(worker *w, buf *b)
{
    char labels[64];
    int64_t now = time_now_ms();
    metrics_header(b, "plcache_worker_jobs_total", "counter", "Jobs finished, by result.");
    metrics_sample(b, "plcache_worker_jobs_total", "result=\"done\"", (double)w->done);
    metrics_sample(b, "plcache_worker_jobs_total", "result=\"retried\"", (double)w->retried);
    unsigned long deadsum = 0;
    for (int i = 0; i < NDEAD; i++)
        deadsum += w->deadn[i];
    metrics_sample(b, "plcache_worker_jobs_total", "result=\"dead\"", (double)deadsum);
    metrics_header(b, "plcache_worker_dead_total", "counter", "Jobs dead-lettered, by reason.");
    for (int i = 0; i < NDEAD; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", finish_dead_names[i]);
        metrics_sample(b, "plcache_worker_dead_total", labels, (double)w->deadn[i]);
    }
    metrics_single(b, "plcache_worker_inflight", "gauge", "Jobs being forwarded.",
                   (double)w->nactive);
    metrics_single(b, "plcache_worker_waiting", "gauge",
                   "Jobs taken (in the processing list) waiting for a slot or for a pause.",
                   (double)(w->njobs - w->nactive));
    metrics_single(b, "plcache_worker_queue_depth", "gauge", "LLEN pl:track.",
                   (double)w->depth_track);
    metrics_single(b, "plcache_worker_retry_depth", "gauge", "ZCARD pl:track:retry.",
                   (double)w->depth_retry);
    metrics_single(b, "plcache_worker_dead_depth", "gauge", "LLEN pl:track:dead.",
                   (double)w->depth_dead);
    metrics_histogram(b, "plcache_worker_forward_seconds",
                      "From a request's start to PromptLayer's answer.", &w->forward);
    metrics_header(b, "plcache_worker_paused", "gauge",
                   "1 while the worker starts no request: a refused key, or a 429.");
    metrics_sample(b, "plcache_worker_paused", "reason=\"auth\"", now < w->auth_until_ms ? 1 : 0);
    metrics_sample(b, "plcache_worker_paused", "reason=\"rate\"", now < w->rate_until_ms ? 1 : 0);
    metrics_header(b, "plcache_worker_pauses_total", "counter", "Pauses started, by reason.");
    metrics_sample(b, "plcache_worker_pauses_total", "reason=\"auth\"", (double)w->auth_pauses);
    metrics_sample(b, "plcache_worker_pauses_total", "reason=\"rate\"", (double)w->rate_pauses);
    metrics_single(b, "plcache_worker_reaped_total", "counter",
                   "Jobs returned to pl:track from workers that stopped answering.",
                   (double)w->reaped);
    metrics_single(b, "plcache_worker_window", "gauge",
                   "Jobs allowed in flight now (grows back after a 429).", (double)w->window);
    metrics_single(b, "plcache_worker_unconfirmed", "gauge",
                   "Finished jobs whose write Redis (and PLCACHE_MIN_REPLICAS replicas) has not "
                   "confirmed yet.",
                   (double)w->nowed);
    metrics_single(b, "plcache_redis_wait_failures_total", "counter",
                   "Write batches not confirmed by PLCACHE_MIN_REPLICAS replicas in time.",
                   w->wait ? (double)rwait_failures(w->wait) : 0);
    metrics_single(b, "plcache_redis_up", "gauge", "1 when Redis accepts commands.",
                   rconn_ready(w->redis) ? 1 : 0);
}
