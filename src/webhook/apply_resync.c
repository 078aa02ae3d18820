/* apply_resync.c -- the applier's reconciliation: every cached template, again.
 *
 * PromptLayer does not promise to deliver every webhook, and events can leave
 * pl:events before they are applied; so at start, every resync interval and
 * after such a gap, every cached template is brought back to what the API
 * says. A run SCANs the template hashes (a page at a time, while there is
 * room for jobs) and submits each template found as a reconcile job
 * (apply_job.c), which core/refresh carries out; the run ends, with one log
 * line, when the scan is complete and its last job has finished.
 */
#include "webhook/apply_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "model/keys.h"

void resync_timer_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    applier *a = arg;
    a->resync_due = 1;
    if (a->resync_s > 0) {
        struct timeval tv = {a->resync_s, 0};
        evtimer_add(a->resync_timer, &tv);
    }
}

/* A reconciliation starts over: the scan from its first key. */
void resync_begin(applier *a)
{
    a->resync_due = 0;
    a->resync_running = 1;
    a->resync_started_us = time_mono_us();
    a->resync_templates = a->resync_changes = 0;
    snprintf(a->scan_cursor, sizeof(a->scan_cursor), "0");
    a->scan_busy = 0;
    resync_step(a);
}

int resync_template(applier *a, const char *name)
{
    job *j = ajob_new(a);
    if (j == NULL)
        return -1;
    j->reconcile = 1;
    j->p.kind = PLAN_NONE;
    j->p.name = strdup(name);
    if (j->p.name == NULL) {
        ajob_free(j);
        return -1;
    }
    ajob_submit(a, j);
    return 0;
}

static void scanned(redisReply *r, void *priv)
{
    applier *a = priv;
    a->scan_busy = 0;
    if (a->closing)
        return;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        log_warn("reconciliation interrupted, it runs again at the next interval");
        a->resync_running = 0;
        return;
    }
    snprintf(a->scan_cursor, sizeof(a->scan_cursor), "%s", r->element[0]->str);
    redisReply *keys = r->element[1];
    size_t plen = strlen(a->prefix) + strlen(KEYS_PROMPT);
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len <= plen || strlen(k->str) != k->len)
            continue;
        if (resync_template(a, k->str + plen) != 0)
            break;
    }
    if (strcmp(a->scan_cursor, "0") == 0)
        a->scan_cursor[0] = '\0'; /* the scan is complete */
    resync_step(a);
}

/* Asks for more keys while there is room, and ends the run when all is done. */
void resync_step(applier *a)
{
    if (!a->resync_running || a->scan_busy || a->closing)
        return;
    if (a->scan_cursor[0] == '\0') {
        int busy = 0;
        for (job *j = a->jobs; j && !busy; j = j->next)
            busy = j->reconcile;
        if (busy)
            return;
        a->resync_running = 0;
        a->resync_runs++;
        a->resync_found += a->resync_changes;
        char n[24], c[24], ms[24];
        snprintf(n, sizeof(n), "%lu", a->resync_templates);
        snprintf(c, sizeof(c), "%lu", a->resync_changes);
        snprintf(ms, sizeof(ms), "%lld",
                 (long long)((time_mono_us() - a->resync_started_us) / 1000));
        log_info("reconciliation done", "templates", n, "changes", c, "ms", ms);
        return;
    }
    if (a->njobs >= (size_t)a->max_jobs || !rconn_ready(a->redis))
        return;
    char match[600];
    if (keys_match(match, sizeof(match), a->prefix, KEYS_PROMPT) < 0) {
        log_warn("reconciliation skipped: the key prefix is too long for a SCAN pattern");
        a->resync_running = 0;
        return;
    }
    const char *argv[] = {"SCAN", a->scan_cursor, "MATCH", match, "COUNT", "100", "TYPE", "hash"};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    if (rconn_argv(a->redis, scanned, a, 8, argv, lens) == 0)
        a->scan_busy = 1;
}
