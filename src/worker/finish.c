/* finish.c -- finishing a job: the Redis writes that must happen.
 *
 * A finished job (done, retried, dead) leaves memory at once and owes one
 * write: finish_script removes it from the processing list and, only if it was
 * still there, puts it where it goes, so a replayed write does nothing twice.
 * The writes of one loop turn go together (one script call per FINISH_BATCH);
 * one not confirmed (by Redis, and by WAIT with min_replicas > 0) stays owed
 * and is sent again from the tick. Out of memory, a job is dropped from memory
 * and stays in the processing list, to go back to pl:track with the rest.
 */
#include "worker/worker.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rwait.h"
#include "core/timeutil.h"
#include "worker/engine.h"
#include "worker/job.h"

/* KEYS[1] processing; ARGV: one group of five per job: raw, mode, where the
 * job goes, score, value. A job no longer in the list is left alone. (The
 * targets are passed as ARGV: plcache needs a single Redis, not a cluster.)
 * The targets' types are checked before anything moves: Redis does not roll
 * a script back, and a job removed from the list whose ZADD or LPUSH was then
 * refused would be lost. */
const char finish_script[] =
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
const size_t finish_script_len = sizeof(finish_script) - 1;

#define FINISH_BATCH 64 /* jobs finished by one script call at most */

const char *const finish_dead_names[NDEAD] = {"invalid_job", "rejected", "attempts"};

void finish_owed_free(owed *o)
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
        finish_owed_free(o);
    }
    w->nowed -= b->n;
    free(b);
    send_start_queued(w);
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
void finish_flush_owed(worker *w)
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

void finish_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    w->flush_pending = 0;
    finish_flush_owed(w);
    take_more(w);
}

void finish_unlink_job(inflight *f)
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
    finish_unlink_job(f);
    send_start_queued(w);
    take_more(w);
}

/* Queues the finishing write of a job and frees the job. */
void finish_job(inflight *f, int mode, const char *target, double score, const char *value)
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
            finish_owed_free(o);
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
    finish_unlink_job(f);
    /* Written at the end of this loop turn, with every other job finished in
     * it: one script call for all of them. */
    if (!w->flush_pending && w->owed_head) {
        w->flush_pending = 1;
        event_active(w->flush_ev, EV_TIMEOUT, 1);
    }
    /* The slot goes at once to a job already taken: no Redis round trip
     * between one request and the next. */
    send_start_queued(w);
    take_more(w);
}

void finish_dead(inflight *f, int reason, const char *error, long status, int attempts)
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
    log_warn("job dead", "reason", finish_dead_names[reason], "status", status > 0 ? st : "none");
    finish_job(f, FIN_DEAD, w->dead, 0, text);
    free(text);
}

void finish_retry_later(inflight *f, int attempts, int64_t delay_ms)
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
    finish_job(f, FIN_RETRY, w->retry, (double)(time_now_ms() + delay_ms), text);
    free(text);
}
