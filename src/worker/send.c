/* send.c -- forwarding: jobs taken, sent to PromptLayer step by step.
 *
 * Jobs taken wait in a queue (oldest first) for a free slot; the slots are the
 * concurrency narrowed by the window, and jobs sent but not yet confirmed
 * finished stay under send_unconfirmed_cap. Each step is one POST through the
 * fetcher; its answer (model/fate.h) sends the next step, or hands the job to
 * finish.c as done, retried or dead. A refused key (401, 403) and a 429 pause
 * every new request here; the window then grows back one per success.
 */
#include "worker/worker.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fetch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "model/fate.h"
#include "model/logreq.h"
#include "model/retry.h"
#include "worker/engine.h"
#include "worker/job.h"

#define PREFETCH_DIV 4 /* jobs taken ahead: a quarter of the slots */

static void auth_pause(inflight *f, long st);
static void send_step(inflight *f);

/* A step passed (FATE_NEXT_STEP or FATE_DONE): the window grows back by one;
 * the job is finished, or its next step sent. */
static void step_passed(inflight *f, const fetch_result *r, fate_kind kind)
{
    worker *w = f->w;
    if (w->window < w->o.concurrency)
        w->window++;
    if (kind == FATE_DONE) {
        finish_job(f, FIN_DONE, NULL, 0, NULL); /* counted once written */
        return;
    }
    /* request_id comes from the first call's answer only. */
    if (f->job.next == 0 && job_set_request_id(&f->job, r->body, r->len) != 0) {
        finish_retry_later(f, f->job.attempts, 1000);
        return;
    }
    f->job.next++;
    send_step(f);
}

/* The job will not pass: dead, with what to fix as PromptLayer said it (its
 * 422 "detail" names the field), bounded, so `plcache dlq list` tells it. */
static void dead_rejected(inflight *f, const fetch_result *r, int attempts)
{
    long st = r->status;
    char why[1024], err[1100];
    if (st == 0) {
        snprintf(err, sizeof(err), "no answer: %s", r->error);
    } else {
        logreq_detail(r->body, r->len, why, sizeof(why));
        snprintf(err, sizeof(err), "HTTP %ld: %s", st, why);
    }
    finish_dead(f, DEAD_REJECTED, err, st, attempts);
}

/* The job would pass, but its attempts ran out: dead, with the last answer. */
static void dead_out_of_attempts(inflight *f, const fetch_result *r, int attempts)
{
    long st = r->status;
    char err[300];
    if (st == 0)
        snprintf(err, sizeof(err), "no answer: %s", r->error);
    else
        snprintf(err, sizeof(err), "HTTP %ld after %d attempts: %.200s", st, attempts, r->body);
    finish_dead(f, DEAD_ATTEMPTS, err, st, attempts);
}

/* PromptLayer asked to slow down (429): no new request until delay_ms has
 * passed, logged once a pause, and the window narrowed to one. */
static void rate_pause(worker *w, int64_t delay_ms)
{
    int64_t until = time_now_ms() + delay_ms;
    if (until > w->rate_until_ms) {
        if (w->rate_until_ms <= time_now_ms()) {
            char ms[24];
            snprintf(ms, sizeof(ms), "%lld", (long long)delay_ms);
            log_warn("PromptLayer asks to slow down: no new request for a while", "ms", ms);
            w->rate_pauses++;
        }
        w->rate_until_ms = until;
    }
    w->window = 1;
}

/* The step may pass later: into the retry set after a backoff (or the
 * answer's Retry-After), pausing every new request first on a 429. */
static void retry_step(inflight *f, const fetch_result *r, int attempts, int slow_down)
{
    worker *w = f->w;
    retry_policy rp = {.base_ms = w->o.retry_base_ms,
                       .max_ms = w->o.retry_max_ms,
                       .retry_after_max_ms = w->o.retry_max_ms};
    int64_t delay = retry_delay_ms(&rp, attempts, r->retry_after_ms, &w->rng);
    if (slow_down)
        rate_pause(w, delay);
    finish_retry_later(f, attempts, delay);
}

/* The fetcher's callback for a step: the answer's fate (model/fate.h)
 * decides, one helper a fate. */
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
    int attempts = f->job.attempts + 1;
    fate_in in = {.status = r->status,
                  .transient = r->outcome == FETCH_RETRY,
                  .more_steps = f->job.next + 1 < f->job.nsteps,
                  .attempts = attempts,
                  .max_attempts = w->o.max_attempts};
    fate fa = fate_of(&in);
    switch (fa.kind) {
    case FATE_NEXT_STEP:
    case FATE_DONE:
        step_passed(f, r, fa.kind);
        return;
    case FATE_AUTH_PAUSE:
        auth_pause(f, r->status);
        return;
    case FATE_DEAD_REJECTED:
        dead_rejected(f, r, attempts);
        return;
    case FATE_DEAD_ATTEMPTS:
        dead_out_of_attempts(f, r, attempts);
        return;
    case FATE_RETRY:
        break;
    }
    retry_step(f, r, attempts, fa.slow_down);
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
    finish_retry_later(f, f->job.attempts, w->o.auth_pause_ms);
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
        finish_retry_later(f, f->job.attempts, 1000);
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
size_t send_unconfirmed_cap(const worker *w)
{
    return slot_cap(w) + slot_cap(w) / PREFETCH_DIV;
}

/* Sends queued jobs, oldest first, while slots are free and no pause runs. */
void send_start_queued(worker *w)
{
    if (w->starting)
        return; /* a finish_dead() below finished a job: the loop here goes on */
    w->starting = 1;
    /* Once stopping, a job not sent yet stays where it is: the release
     * returns it to pl:track with the rest of the processing list. */
    while (w->queue_head && !w->closing && !w->stopping && w->nactive < slot_cap(w) &&
           w->nactive + w->nowed < send_unconfirmed_cap(w)) {
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
            finish_dead(f, DEAD_INVALID, err, 0, f->job.attempts);
            continue;
        }
        send_step(f);
    }
    w->starting = 0;
}

/* Takes a job in: queued, then sent when a slot is free. */
void send_start_job(worker *w, const char *text, size_t len)
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
    send_start_queued(w);
}
