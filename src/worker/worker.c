/* worker.c -- the log-job engine.
 *
 * Taking: while fewer than `window` jobs are in flight (plus a quarter more,
 * taken ahead) and nothing asks us to wait, one Lua call moves up to that many
 * from pl:track (right end, the oldest) to the head of our processing list.
 * When it finds the queue empty, a BLMOVE on the blocking connection waits up
 * to 1 s for the next job. A job taken waits in memory (oldest first) for a
 * free slot, so a finished request's slot is used again at once, without a
 * Redis round trip; jobs taken ahead are in the processing list like the rest
 * and go back to pl:track the same way if we stop or die.
 *
 * Forwarding: each job's steps are POSTed one after the other through the
 * fetcher (one attempt: retries go through Redis so a crash loses nothing).
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
 * Finishing: one Lua call removes the job from the processing list and, only
 * if it was still there, adds it to its next place. So a write replayed after
 * a lost reply does nothing twice, and a job a reaper already returned to
 * pl:track is not also retried or dead-lettered. While Redis is away, finished
 * jobs wait in memory (at most what was taken) and are written when it is back.
 * With min_replicas > 0 a finishing write counts (and leaves memory) only once
 * WAIT says that many replicas hold it; otherwise it is written again later,
 * which the script makes harmless. Jobs sent and not yet confirmed never pass
 * 1.25 x the slots (unconfirmed_cap): past that, nothing new is sent.
 */
#include "worker/worker.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/rwait.h"
#include "core/timeutil.h"
#include "model/fate.h"
#include "model/keys.h"
#include "model/logreq.h"
#include "model/retry.h"
#include "worker/job.h"

#define TICK_MS 100
#define PROMOTE_EVERY_MS 200
#define HEARTBEAT_EVERY_MS 1000
#define DEPTH_EVERY_MS 1000
#define BLOCK_S "1"

static const char take_script[] =
    "local out = {}\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')\n"
    "  if not v then break end\n"
    "  out[#out + 1] = v\n"
    "end\n"
    "return out\n";

/* KEYS[1] processing; ARGV: one group of five per job: raw, mode, where the
 * job goes, score, value. A job no longer in the list is left alone. (The
 * targets are passed as ARGV: plcache needs a single Redis, not a cluster.)
 * The targets' types are checked before anything moves: Redis does not roll
 * a script back, and a job removed from the list whose ZADD or LPUSH was then
 * refused would be lost. */
static const char finish_script[] =
    "local want = {retry = 'zset', dead = 'list', back = 'list'}\n"
    "for i = 1, #ARGV, 5 do\n"
    "  local w = want[ARGV[i + 1]]\n"
    "  if w then\n"
    "    local t = redis.call('TYPE', ARGV[i + 2]).ok\n"
    "    if t ~= w and t ~= 'none' then\n"
    "      return redis.error_reply('WRONGTYPE ' .. ARGV[i + 2] .. ' is not a ' .. w)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local n = 0\n"
    "for i = 1, #ARGV, 5 do\n"
    "  if redis.call('LREM', KEYS[1], -1, ARGV[i]) > 0 then\n"
    "    n = n + 1\n"
    "    local m = ARGV[i + 1]\n"
    "    if m == 'retry' then redis.call('ZADD', ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])\n"
    "    elseif m == 'dead' then redis.call('LPUSH', ARGV[i + 2], ARGV[i + 4])\n"
    "    elseif m == 'back' then redis.call('RPUSH', ARGV[i + 2], ARGV[i + 4]) end\n"
    "  end\n"
    "end\n"
    "return n\n";

#define FINISH_BATCH 64 /* jobs finished by one script call at most */
#define PREFETCH_DIV 4  /* jobs taken ahead: a quarter of the slots */

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

enum { FIN_DONE, FIN_RETRY, FIN_DEAD, FIN_BACK };
enum { DEAD_INVALID, DEAD_REJECTED, DEAD_ATTEMPTS, NDEAD };
static const char *const dead_names[NDEAD] = {"invalid_job", "rejected", "attempts"};

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
    int starting;                      /* start_queued is running (no reentry) */
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

static void take_more(worker *w);
static void start_queued(worker *w);
static void send_step(inflight *f);
static void ignore(redisReply *r, void *priv);

/* ---- Redis writes that must happen ------------------------------------- */

static void flush_owed(worker *w);

static void owed_free(owed *o)
{
    rargs_free(&o->args);
    free(o);
}

/* Puts a chain of writes back at the head of what is owed. */
static void owed_requeue(worker *w, owed *head)
{
    owed *tail = head;
    while (tail->next)
        tail = tail->next;
    tail->next = w->owed_head;
    w->owed_head = head;
    if (w->owed_tail == NULL)
        w->owed_tail = tail;
}

/* A batch of finishing writes is complete: it leaves memory. */
static void owed_complete(worker *w, owed_batch *b)
{
    w->owed_sending--;
    while (b->head) {
        owed *o = b->head;
        b->head = o->next;
        if (o->done)
            w->done++;
        owed_free(o);
    }
    w->nowed -= b->n;
    free(b);
    start_queued(w);
    take_more(w);
}

static void owed_retry(worker *w, owed_batch *b)
{
    w->owed_sending--;
    /* Tried again at the next tick: the script does nothing twice. */
    owed_requeue(w, b->head);
    free(b);
}

/* The replicas' verdict on a batch (min_replicas > 0). */
static void owed_replicated(int ok, void *priv)
{
    owed_batch *b = priv;
    worker *w = b->w;
    if (ok) {
        w->wait_logged = 0;
        owed_complete(w, b);
        return;
    }
    if (!w->wait_logged && !w->closing) {
        log_warn("job updates not confirmed by enough replicas: kept, written again later");
        w->wait_logged = 1;
    }
    owed_retry(w, b);
}

static void owed_done(redisReply *r, void *priv)
{
    owed_batch *b = priv;
    worker *w = b->w;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r)
            log_error("redis refused a job update", "error", r->str);
        owed_retry(w, b);
        return;
    }
    if (w->wait != NULL) {
        if (rwait_after(w->wait, owed_replicated, b) != 0)
            owed_retry(w, b);
        return;
    }
    owed_complete(w, b);
}

/* Sends what is owed, FINISH_BATCH jobs per call. */
static void flush_owed(worker *w)
{
    while (w->owed_head && rconn_ready(w->redis) && !w->closing) {
        owed_batch *b = calloc(1, sizeof(*b));
        if (b == NULL)
            return; /* tried again at the next tick */
        const char *argv[4 + 5 * FINISH_BATCH];
        size_t lens[4 + 5 * FINISH_BATCH];
        int argc = 4;
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = finish_script;
        lens[1] = sizeof(finish_script) - 1;
        argv[2] = "1";
        lens[2] = 1;
        argv[3] = w->processing;
        lens[3] = strlen(w->processing);
        owed **link = &b->head;
        while (w->owed_head && b->n < FINISH_BATCH) {
            owed *o = w->owed_head;
            w->owed_head = o->next;
            o->next = NULL;
            *link = o;
            link = &o->next;
            b->n++;
            for (int i = 0; i < o->args.argc; i++) {
                argv[argc] = o->args.argv[i];
                lens[argc++] = o->args.lens[i];
            }
        }
        if (w->owed_head == NULL)
            w->owed_tail = NULL;
        b->w = w;
        if (rconn_argv(w->redis, owed_done, b, argc, argv, lens) != 0) {
            owed_requeue(w, b->head);
            free(b);
            return;
        }
        w->owed_sending++;
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    w->flush_pending = 0;
    flush_owed(w);
    take_more(w);
}

static void unlink_job(inflight *f)
{
    worker *w = f->w;
    if (f->queued) {
        inflight *prev = NULL;
        for (inflight *q = w->queue_head; q != f; q = q->qnext)
            prev = q;
        if (prev)
            prev->qnext = f->qnext;
        else
            w->queue_head = f->qnext;
        if (w->queue_tail == f)
            w->queue_tail = prev;
    } else {
        w->nactive--;
    }
    if (f->prev)
        f->prev->next = f->next;
    else
        w->jobs = f->next;
    if (f->next)
        f->next->prev = f->prev;
    w->njobs--;
    job_free(&f->job);
    free(f);
}

/* Out of memory: the job is dropped from memory but stays in the processing
 * list, so it goes back to pl:track when this worker stops or is reaped. */
static void abandon(inflight *f, const char *what)
{
    log_error("out of memory; the job stays in the processing list", "while", what);
    worker *w = f->w;
    unlink_job(f);
    start_queued(w);
    take_more(w);
}

/* Queues the finishing write of a job and frees the job. */
static void finish(inflight *f, int mode, const char *target, double score, const char *value)
{
    worker *w = f->w;
    owed *o = calloc(1, sizeof(*o));
    if (o != NULL) {
        char sc[32];
        rargs_init(&o->args);
        rargs_add(&o->args, f->job.raw, f->job.raw_len);
        static const char *const modes[] = {"done", "retry", "dead", "back"};
        rargs_adds(&o->args, modes[mode]);
        rargs_adds(&o->args, target ? target : w->track);
        snprintf(sc, sizeof(sc), "%.0f", score);
        rargs_adds(&o->args, sc);
        rargs_adds(&o->args, value ? value : "");
        o->done = mode == FIN_DONE;
        if (o->args.failed) {
            owed_free(o);
            o = NULL;
        }
    }
    if (o == NULL) {
        /* Out of memory: the job stays in the processing list, and goes back
         * to pl:track when this worker stops or dies. */
        log_error("out of memory finishing a job; it stays in the processing list");
    } else {
        if (w->owed_tail)
            w->owed_tail->next = o;
        else
            w->owed_head = o;
        w->owed_tail = o;
        w->nowed++;
    }
    unlink_job(f);
    /* Written at the end of this loop turn, with every other job finished in
     * it: one script call for all of them. */
    if (!w->flush_pending && w->owed_head) {
        w->flush_pending = 1;
        event_active(w->flush_ev, EV_TIMEOUT, 1);
    }
    /* The slot goes at once to a job already taken: no Redis round trip
     * between one request and the next. */
    start_queued(w);
    take_more(w);
}

static void dead(inflight *f, int reason, const char *error, long status, int attempts)
{
    worker *w = f->w;
    char now[40];
    time_format_now(now, sizeof(now));
    char *text = job_dead_text(&f->job, error, status, attempts, now);
    if (text == NULL) {
        abandon(f, "writing a dead entry");
        return;
    }
    w->deadn[reason]++;
    char st[16];
    snprintf(st, sizeof(st), "%ld", status);
    log_warn("job dead", "reason", dead_names[reason], "status", status > 0 ? st : "none");
    finish(f, FIN_DEAD, w->dead, 0, text);
    free(text);
}

static void retry_later(inflight *f, int attempts, int64_t delay_ms)
{
    worker *w = f->w;
    char nonce[320];
    snprintf(nonce, sizeof(nonce), "%s-%lu", w->id, ++w->nonce);
    char *text = job_retry_text(&f->job, attempts, nonce);
    if (text == NULL) {
        abandon(f, "writing a retry");
        return;
    }
    w->retried++;
    finish(f, FIN_RETRY, w->retry, (double)(time_now_ms() + delay_ms), text);
    free(text);
}

/* ---- forwarding --------------------------------------------------------- */

static void auth_pause(inflight *f, long st);

static void answered(const fetch_result *r, void *arg)
{
    inflight *f = arg;
    worker *w = f->w;
    mhist_observe(&w->forward, (double)(time_mono_us() - f->sent_us) / 1e6);
    if (w->closing) {
        /* The loop is ending: the job stays in the processing list and goes
         * back to pl:track with the rest. */
        return;
    }
    long st = r->status;
    int attempts = f->job.attempts + 1;
    fate fa = fate_of(&(fate_in){.status = st,
                                 .transient = r->outcome == FETCH_RETRY,
                                 .more_steps = f->job.next + 1 < f->job.nsteps,
                                 .attempts = attempts,
                                 .max_attempts = w->o.max_attempts});
    switch (fa.kind) {
    case FATE_NEXT_STEP:
    case FATE_DONE:
        if (w->window < w->o.concurrency)
            w->window++;
        if (fa.kind == FATE_DONE) {
            finish(f, FIN_DONE, NULL, 0, NULL); /* counted once written */
            return;
        }
        /* request_id comes from the first call's answer only. */
        if (f->job.next == 0 && job_set_request_id(&f->job, r->body, r->len) != 0) {
            retry_later(f, f->job.attempts, 1000);
            return;
        }
        f->job.next++;
        send_step(f);
        return;
    case FATE_AUTH_PAUSE:
        auth_pause(f, st);
        return;
    case FATE_DEAD_REJECTED: {
        /* What to fix, as PromptLayer said it (its 422 "detail" names the
         * field), bounded, so `plcache dlq list` tells it. */
        char why[1024], err[1100];
        if (st == 0) {
            snprintf(err, sizeof(err), "no answer: %s", r->error);
        } else {
            logreq_detail(r->body, r->len, why, sizeof(why));
            snprintf(err, sizeof(err), "HTTP %ld: %s", st, why);
        }
        dead(f, DEAD_REJECTED, err, st, attempts);
        return;
    }
    case FATE_DEAD_ATTEMPTS: {
        char err[300];
        if (st == 0)
            snprintf(err, sizeof(err), "no answer: %s", r->error);
        else
            snprintf(err, sizeof(err), "HTTP %ld after %d attempts: %.200s", st, attempts, r->body);
        dead(f, DEAD_ATTEMPTS, err, st, attempts);
        return;
    }
    case FATE_RETRY:
        break;
    }
    retry_policy rp = {.base_ms = w->o.retry_base_ms,
                       .max_ms = w->o.retry_max_ms,
                       .retry_after_max_ms = w->o.retry_max_ms};
    int64_t delay = retry_delay_ms(&rp, attempts, r->retry_after_ms, &w->rng);
    if (fa.slow_down) {
        int64_t until = time_now_ms() + delay;
        if (until > w->rate_until_ms) {
            if (w->rate_until_ms <= time_now_ms()) {
                char ms[24];
                snprintf(ms, sizeof(ms), "%lld", (long long)delay);
                log_warn("PromptLayer asks to slow down: no new request for a while", "ms", ms);
                w->rate_pauses++;
            }
            w->rate_until_ms = until;
        }
        w->window = 1;
    }
    retry_later(f, attempts, delay);
}

/* The API key was refused (st 401 or 403): the job waits out the pause, its
 * attempts not counted, and no job is taken meanwhile. */
static void auth_pause(inflight *f, long st)
{
    worker *w = f->w;
    int64_t now = time_now_ms();
    if (w->auth_until_ms <= now) {
        char s[16], p[24];
        snprintf(s, sizeof(s), "%ld", st);
        snprintf(p, sizeof(p), "%ld", w->o.auth_pause_ms / 1000);
        log_error("PromptLayer refused the API key: not taking jobs, they stay queued; "
                  "trying again after the pause",
                  "status", s, "pause_s", p);
        w->auth_pauses++;
    }
    w->auth_until_ms = now + w->o.auth_pause_ms;
    w->window = 1;
    retry_later(f, f->job.attempts, w->o.auth_pause_ms);
}

static void send_step(inflight *f)
{
    worker *w = f->w;
    job_step *s = &f->job.steps[f->job.next];
    buf url;
    buf_init(&url, 8192);
    size_t bl = strlen(w->base_url);
    while (bl > 0 && w->base_url[bl - 1] == '/')
        bl--;
    const char *headers[] = {w->key_header, "Content-Type: application/json", NULL};
    f->sent_us = time_mono_us();
    if (buf_append(&url, w->base_url, bl) != 0 || buf_puts(&url, s->endpoint) != 0 ||
        fetch_post(w->fetch, url.data, headers, s->body, s->body_len, answered, f) != 0) {
        buf_free(&url);
        /* The fetcher is full or out of memory: try again shortly. */
        retry_later(f, f->job.attempts, 1000);
        return;
    }
    buf_free(&url);
}

/* The slots in use may not pass: the concurrency, narrowed by the window. */
static size_t slot_cap(const worker *w)
{
    return (size_t)(w->window < w->o.concurrency ? w->window : w->o.concurrency);
}

/* Jobs sent and not yet recorded as finished (requests under way plus
 * finished jobs whose write Redis has not confirmed) may not pass this: a
 * kill -9 repeats at most that many, and a slow Redis (or WAIT for replicas)
 * holds new requests back instead of piling up unwritten results. */
static size_t unconfirmed_cap(const worker *w)
{
    return slot_cap(w) + slot_cap(w) / PREFETCH_DIV;
}

/* Sends queued jobs, oldest first, while slots are free and no pause runs. */
static void start_queued(worker *w)
{
    if (w->starting)
        return; /* a dead() below finished a job: the loop here goes on */
    w->starting = 1;
    /* Once stopping, a job not sent yet stays where it is: the release
     * returns it to pl:track with the rest of the processing list. */
    while (w->queue_head && !w->closing && !w->stopping && w->nactive < slot_cap(w) &&
           w->nactive + w->nowed < unconfirmed_cap(w)) {
        int64_t now = time_now_ms();
        if (now < w->rate_until_ms || now < w->auth_until_ms)
            break;
        inflight *f = w->queue_head;
        w->queue_head = f->qnext;
        if (w->queue_head == NULL)
            w->queue_tail = NULL;
        f->qnext = NULL;
        f->queued = 0;
        w->nactive++;
        if (f->job.invalid) {
            char err[160];
            snprintf(err, sizeof(err), "invalid_job: %s", f->job.invalid);
            dead(f, DEAD_INVALID, err, 0, f->job.attempts);
            continue;
        }
        send_step(f);
    }
    w->starting = 0;
}

/* Takes a job in: queued, then sent when a slot is free. */
static void start_job(worker *w, const char *text, size_t len)
{
    inflight *f = calloc(1, sizeof(*f));
    if (f == NULL || job_parse(text, len, &f->job) != 0) {
        /* It stays in the processing list and goes back when we stop. */
        log_error("out of memory taking a job; it stays in the processing list");
        if (f)
            job_free(&f->job);
        free(f);
        return;
    }
    f->w = w;
    f->next = w->jobs;
    if (w->jobs)
        w->jobs->prev = f;
    w->jobs = f;
    w->njobs++;
    f->queued = 1;
    if (w->queue_tail)
        w->queue_tail->qnext = f;
    else
        w->queue_head = f;
    w->queue_tail = f;
    start_queued(w);
}

/* ---- taking ------------------------------------------------------------- */

static int free_slots(worker *w)
{
    int64_t now = time_now_ms();
    if (w->stopping || w->closing || !w->started || now < w->auth_until_ms ||
        now < w->rate_until_ms || w->owed_head != NULL || w->recover || w->recovering)
        return 0;
    /* A quarter more than the slots: a slot that frees takes a job already
     * here, while the next take is on its way. */
    return (int)unconfirmed_cap(w) - (int)w->njobs;
}

static void blocked_taken(redisReply *r, void *priv)
{
    worker *w = priv;
    w->blocking = 0;
    if (w->closing)
        return;
    if (r && r->type == REDIS_REPLY_STRING)
        start_job(w, r->str, r->len);
    take_more(w);
}

static void batch_taken(redisReply *r, void *priv)
{
    worker *w = priv;
    w->taking = 0;
    if (w->closing)
        return;
    /* A job of the batch that ends at once (an invalid one, dead-lettered)
     * cannot start a take sized before the rest of the batch is counted:
     * its finishing write is owed, and free_slots gives nothing while one
     * is (test_worker TakeBound). */
    size_t got = 0;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING) {
                start_job(w, r->element[i]->str, r->element[i]->len);
                got++;
            }
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return; /* Redis trouble: the tick tries again */
    if (got == 0) {
        /* Empty queue: wait for the next job without spinning. */
        if (!w->blocking && free_slots(w) > 0 && rconn_ready(w->block)) {
            const char *argv[] = {"BLMOVE", w->track, w->processing, "RIGHT", "LEFT", BLOCK_S};
            size_t lens[6];
            for (int i = 0; i < 6; i++)
                lens[i] = strlen(argv[i]);
            if (rconn_argv(w->block, blocked_taken, w, 6, argv, lens) == 0)
                w->blocking = 1;
        }
        return;
    }
    take_more(w);
}

static void recover(worker *w);

static void take_more(worker *w)
{
    if (w->taking || w->blocking || !rconn_ready(w->redis))
        return;
    if (w->recover) {
        recover(w);
        return;
    }
    int want = free_slots(w);
    if (want <= 0)
        return;
    char n[16];
    snprintf(n, sizeof(n), "%d", want);
    const char *argv[] = {"EVAL", take_script, "2", w->track, w->processing, n};
    size_t lens[] = {4,        sizeof(take_script) - 1, 1, strlen(w->track), strlen(w->processing),
                     strlen(n)};
    if (rconn_argv(w->redis, batch_taken, w, 6, argv, lens) == 0)
        w->taking = 1;
}

/* ---- recovery after a lost link --------------------------------------- */

/* A reply lost with a dropped link may hide a job that Redis did move into
 * our processing list (a take whose answer never came). Once no take and no
 * write of ours is under way, every entry of the list that is not in flight
 * here goes back to pl:track. */
static void recovered(redisReply *r, void *priv)
{
    worker *w = priv;
    w->recovering = 0;
    /* A job that finished while the scan was on its way is in the scan but
     * no longer here: its finishing write went out after the scan. Scan
     * again once nothing is owed (no new job is taken meanwhile). */
    if (w->closing || r == NULL || r->type != REDIS_REPLY_ARRAY || w->nowed > 0) {
        w->recover = 1; /* try again at the next tick */
        return;
    }
    size_t back = 0;
    /* Count each text in flight once per copy. */
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        int mine = 0;
        for (inflight *f = w->jobs; f && !mine; f = f->next)
            if (!f->claimed && f->job.raw_len == e->len &&
                memcmp(f->job.raw, e->str, e->len) == 0) {
                f->claimed = 1;
                mine = 1;
            }
        if (mine)
            continue;
        const char *argv[] = {"EVAL", finish_script, "1", w->processing, e->str,
                              "back", w->track,      "0", e->str};
        size_t lens[] = {4,
                         sizeof(finish_script) - 1,
                         1,
                         strlen(w->processing),
                         e->len,
                         4,
                         strlen(w->track),
                         1,
                         e->len};
        rconn_argv(w->redis, ignore, w, 9, argv, lens);
        back++;
    }
    /* A job taken but not yet sent that the list no longer holds is not ours
     * any more: another worker found our heartbeat stale during the outage
     * and returned our list to pl:track. Sending it would be a second copy
     * from this very worker; it is dropped unsent. */
    size_t dropped = 0;
    for (inflight *f = w->jobs, *next; f; f = next) {
        next = f->next;
        if (f->queued && !f->claimed) {
            unlink_job(f);
            dropped++;
        } else {
            f->claimed = 0;
        }
    }
    if (dropped > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", dropped);
        log_warn("dropped jobs taken ahead that another worker returned to pl:track while Redis "
                 "was unreachable",
                 "count", n);
    }
    if (back > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", back);
        log_warn("returned jobs whose take was cut off by a lost Redis link to pl:track", "count",
                 n);
    }
    take_more(w);
}

static void recover(worker *w)
{
    if (w->recovering || w->taking || w->blocking || w->owed_head || w->owed_sending ||
        !rconn_ready(w->redis))
        return;
    const char *argv[] = {"LRANGE", w->processing, "0", "-1"};
    size_t lens[] = {6, strlen(w->processing), 1, 2};
    if (rconn_argv(w->redis, recovered, w, 4, argv, lens) == 0) {
        w->recover = 0;
        w->recovering = 1;
    }
}

void worker_redis_state(worker *w, int up)
{
    /* The first connection needs nothing: first_contact returns the whole
     * list. After that, any drop may have cut a take's answer off. */
    if (w && !up && w->started)
        w->recover = 1;
}

/* ---- housekeeping ------------------------------------------------------- */

static void ignore(redisReply *r, void *priv)
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
        start_queued(w); /* a pause may be over */
    if (!w->closing && rconn_ready(w->redis)) {
        if (!w->started)
            first_contact(w);
        flush_owed(w);
        if (now - w->last_heartbeat >= HEARTBEAT_EVERY_MS && !w->released) {
            snprintf(ms, sizeof(ms), "%lld", (long long)now);
            const char *argv[] = {"ZADD", w->workers, ms, w->id};
            size_t lens[] = {4, strlen(w->workers), strlen(ms), strlen(w->id)};
            rconn_argv(w->redis, ignore, w, 4, argv, lens);
            w->last_heartbeat = now;
        }
        if (now - w->last_promote >= PROMOTE_EVERY_MS) {
            snprintf(ms, sizeof(ms), "%lld", (long long)now);
            const char *argv[] = {"EVAL", promote_script, "2", w->retry, w->track, ms};
            size_t lens[] = {
                4, sizeof(promote_script) - 1, 1, strlen(w->retry), strlen(w->track), strlen(ms)};
            rconn_argv(w->redis, ignore, w, 6, argv, lens);
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
    size_t hl = strlen(o->api_key) + 16;
    w->key_header = malloc(hl);
    if (w->key_header)
        snprintf(w->key_header, hl, "X-API-KEY: %s", o->api_key);
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
    w->flush_ev = event_new(base, -1, 0, on_flush, w);
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
        owed_free(o);
    }
    if (w->tick)
        event_free(w->tick);
    if (w->flush_ev)
        event_free(w->flush_ev);
    free(w->base_url);
    free(w->id);
    if (w->key_header) {
        memset(w->key_header, 0, strlen(w->key_header));
        free(w->key_header);
    }
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
        snprintf(labels, sizeof(labels), "reason=\"%s\"", dead_names[i]);
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
