/* take.c -- taking jobs from pl:track, and the recovery after a lost link.
 *
 * Jobs move atomically from pl:track into this worker's processing list: a Lua
 * batch move sized by the free slots (free_slots) while the queue is deep, a
 * BLMOVE on the blocking connection once it is found empty. What is taken goes
 * to send.c (send_start_job). When a Redis link drops, a take's answer may
 * have been lost with a job Redis did move: once nothing of ours is under way,
 * the processing list is read back and every entry not in flight here is
 * returned to pl:track (recover, recovered).
 */
#include "worker/worker.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "worker/engine.h"
#include "worker/job.h"

#define BLOCK_S "1"

static const char take_script[] =
    "local out = {}\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')\n"
    "  if not v then break end\n"
    "  out[#out + 1] = v\n"
    "end\n"
    "return out\n";

static int free_slots(worker *w)
{
    int64_t now = time_now_ms();
    if (w->stopping || w->closing || !w->started || now < w->auth_until_ms ||
        now < w->rate_until_ms || w->owed_head != NULL || w->recover || w->recovering)
        return 0;
    /* A quarter more than the slots: a slot that frees takes a job already
     * here, while the next take is on its way. */
    return (int)send_unconfirmed_cap(w) - (int)w->njobs;
}

static void blocked_taken(redisReply *r, void *priv)
{
    worker *w = priv;
    w->blocking = 0;
    if (w->closing)
        return;
    if (r && r->type == REDIS_REPLY_STRING)
        send_start_job(w, r->str, r->len);
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
                send_start_job(w, r->element[i]->str, r->element[i]->len);
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

void take_more(worker *w)
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
/* Claims each entry of the scanned list r that is a job in flight here
 * (each text in flight once per copy) and sends every other entry back to
 * pl:track. Returns how many went back. */
static size_t return_strays(worker *w, const redisReply *r)
{
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
        size_t lens[] = {
            4, finish_script_len, 1, strlen(w->processing), e->len, 4, strlen(w->track), 1, e->len};
        rconn_argv(w->redis, worker_ignore, w, 9, argv, lens);
        back++;
    }
    return back;
}

/* A job taken but not yet sent that the list no longer holds is not ours
 * any more: another worker found our heartbeat stale during the outage
 * and returned our list to pl:track. Sending it would be a second copy
 * from this very worker; it is dropped unsent. Clears every claim mark and
 * returns how many were dropped. */
static size_t drop_unclaimed(worker *w)
{
    size_t dropped = 0;
    for (inflight *f = w->jobs, *next; f; f = next) {
        next = f->next;
        if (f->queued && !f->claimed) {
            finish_unlink_job(f);
            dropped++;
        } else {
            f->claimed = 0;
        }
    }
    return dropped;
}

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
    size_t back = return_strays(w, r);
    size_t dropped = drop_unclaimed(w);
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
