/* apply_job.c -- the applier's jobs: one event's targets, fetches, write, XACK.
 *
 * A job is one event (or one template being reconciled): it is made from a
 * stream entry (ajob_take_entries), runs its pre-write, its fetches and one
 * model/cachew write, then XACKs its entry; a reconcile job hands its
 * template to core/refresh instead. Jobs of one template run one after the
 * other, chained behind the running one (ajob_submit); when a job ends, the
 * next of its chain starts, and the reconciliation and the stream reading get
 * a chance to take the room it left. The life of a job is told at the top of
 * apply.c.
 */
#include "webhook/apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/ptfetch.h"
#include "core/refresh.h"
#include "core/timeutil.h"
#include "model/answer.h"
#include "model/cachew.h"
#include "model/field.h"
#include "model/keys.h"
#include "model/plan.h"

const char *const ajob_types[] = {
    "prompt_template_created",       "prompt_template_version_created",
    "prompt_template_name_changed",  "prompt_template_deleted",
    "prompt_template_label_created", "prompt_template_label_deleted",
    "prompt_template_label_moved",   "prompt_template_label_change_approved",
    "prompt_template_updated",       "other",
};
_Static_assert(sizeof(ajob_types) / sizeof(ajob_types[0]) == NAPPLY,
               "NAPPLY counts the event types");

static void job_start(job *j);
static void job_read_basis(job *j);
static void reconcile_error(const char *name, const char *field, const char *why, void *arg);
static void job_fetch(job *j);
static void job_write(job *j);

void ajob_free(job *j)
{
    for (size_t i = 0; i < j->ntargets; i++) {
        free(j->targets[i].label);
        free(j->targets[i].field);
        free(j->targets[i].body);
        free(j->targets[i].got_name);
    }
    free(j->targets);
    free(j->wname);
    rargs_free(&j->pre);
    plan_free(&j->p);
    free(j);
}

job *ajob_new(applier *a)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->a = a;
    j->p.kind = PLAN_INVALID;
    j->type_idx = NAPPLY - 1;
    rargs_init(&j->pre);
    return j;
}

/* Adds a target for field f (its label copied). Returns 0 or -1 (memory). */
static int add_target(job *j, field f)
{
    target *t = realloc(j->targets, (j->ntargets + 1) * sizeof(*t));
    if (t == NULL)
        return -1;
    j->targets = t;
    t = &j->targets[j->ntargets];
    memset(t, 0, sizeof(*t));
    t->f = f;
    if (f.kind == FIELD_LABEL) {
        t->label = strdup(f.label);
        t->f.label = t->label;
    }
    j->ntargets++;
    if (f.kind == FIELD_LABEL && t->label == NULL)
        return -1;
    t->field = field_dup(&t->f);
    return t->field == NULL ? -1 : 0;
}

static void add_op(rargs *ops, const char *op, const char *x, size_t xlen, const char *y,
                   size_t ylen)
{
    rargs_adds(ops, op);
    rargs_add(ops, x, xlen);
    rargs_add(ops, y, ylen);
}

/* The start of a write command for the job's template (model/cachew.h):
 * id is the template's as the API answered (< 0: none answered). */
static void write_prologue(job *j, rargs *c, int with_old, long long id)
{
    cachew_begin(c, &(cachew_write){.prefix = j->a->prefix,
                                    .name = j->wname,
                                    .id = id,
                                    .old_name = with_old ? j->p.old_name : NULL});
}

/* Adds "event T I": the operations that follow act for this event only
 * (model/cachew.h). */
static void add_event_op(job *j, rargs *ops)
{
    char at[24] = "", id[24] = "";
    if (j->p.at_us >= 0)
        snprintf(at, sizeof(at), "%lld", j->p.at_us);
    if (j->p.id >= 0)
        snprintf(id, sizeof(id), "%lld", j->p.id);
    add_op(ops, "event", at, strlen(at), id, strlen(id));
}

static job *find_running(applier *a, const char *name)
{
    for (job *j = a->jobs; j; j = j->next)
        if (j->running && j->p.name && strcmp(j->p.name, name) == 0)
            return j;
    return NULL;
}

static void job_finish(job *j)
{
    applier *a = j->a;
    if (j->sid[0]) {
        if (j->failed) {
            a->failed[j->type_idx]++;
            log_warn("event not applied, left pending for a retry", "id", j->sid, "type",
                     ajob_types[j->type_idx], "why", j->why ? j->why : "failed");
        } else {
            a->applied[j->type_idx]++;
            char ms[24];
            snprintf(ms, sizeof(ms), "%lld",
                     (long long)(j->received_ms > 0 ? time_now_ms() - j->received_ms : 0));
            log_info("event applied", "id", j->sid, "type", ajob_types[j->type_idx], "template",
                     j->p.name ? j->p.name : "", "ms", ms);
        }
    } else if (j->reconcile) {
        a->resync_templates++;
    }
    /* Unlink, then start the next job of the same template. */
    if (j->prev)
        j->prev->next = j->next;
    else
        a->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    a->njobs--;
    job *next = j->chain;
    ajob_free(j);
    if (a->closing)
        return;
    if (next) {
        next->running = 1;
        job_start(next);
    }
    if (a->resync_running && !a->scan_busy)
        resync_step(a);
    stream_read_more(a);
}

static void job_fail(job *j, const char *why)
{
    j->failed = 1;
    j->why = why;
    job_finish(j);
}

static void acked(redisReply *r, void *priv)
{
    job *j = priv;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        job_fail(j, "XACK failed");
        return;
    }
    job_finish(j);
}

static void ack(job *j)
{
    applier *a = j->a;
    if (j->sid[0] == '\0') {
        job_finish(j);
        return;
    }
    const char *argv[] = {"XACK", a->events_key, GROUP, j->sid};
    size_t lens[] = {4, strlen(a->events_key), strlen(GROUP), strlen(j->sid)};
    if (a->closing || rconn_argv(a->redis, acked, j, 4, argv, lens) != 0)
        job_fail(j, "redis unavailable");
}

/* Forgets the answers of a write the hash's gen refused, to fetch again. */
static void forget_answers(job *j)
{
    for (size_t i = 0; i < j->ntargets; i++) {
        free(j->targets[i].body);
        free(j->targets[i].got_name);
        j->targets[i].body = j->targets[i].got_name = NULL;
        j->targets[i].status = 0;
    }
}

/* Reads the basis and fetches again (the hash moved on, or the answers named
 * another hash than the one whose basis was read), at most WRITE_TRIES times. */
static void job_redo(job *j)
{
    if (++j->tries >= WRITE_TRIES) {
        job_fail(j, "the template kept changing while fetched");
        return;
    }
    forget_answers(j);
    job_read_basis(j);
}

/* A rename's refresh of the template under its new name is done: the event
 * is acknowledged only when every field could be asked. */
static void renamed_refreshed(const refresh_report *rep, void *arg)
{
    job *j = arg;
    if (rep->written && rep->changed > 0) {
        j->a->writes++;
        j->a->changes += (unsigned long)rep->changed;
    }
    if (rep->failed > 0)
        job_fail(j, "the renamed template was not refreshed");
    else
        ack(j);
}

static void written(redisReply *r, void *priv)
{
    job *j = priv;
    applier *a = j->a;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("cache write refused", "error", r->str);
        job_fail(j, "cache write failed");
        return;
    }
    if (r->integer < 0) {
        /* The hash moved on while we fetched: our answers may be older than
         * what was written. Read the basis and fetch again. */
        a->redone++;
        job_redo(j);
        return;
    }
    a->writes++;
    a->changes += (unsigned long)r->integer;
    if (j->sid[0] && j->received_ms > 0) {
        int64_t ms = time_now_ms() - j->received_ms;
        mhist_observe(&a->latency, ms > 0 ? (double)ms / 1000.0 : 0.0);
    }
    if (j->p.kind == PLAN_RENAME) {
        /* The old hash held what was cached under the old name, which may be
         * less than the template has (another template may have taken that
         * name since): its labels and latest are asked again (core/refresh). */
        if (refresh_start(&a->refresh, j->wname, reconcile_error, renamed_refreshed, j) != 0)
            job_fail(j, "out of memory");
        return;
    }
    ack(j);
}

static void pre_written(redisReply *r, void *priv)
{
    job *j = priv;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        job_fail(j, "cache write failed");
        return;
    }
    j->a->changes += (unsigned long)r->integer;
    job_read_basis(j);
}

static void basis_read(redisReply *r, void *priv)
{
    job *j = priv;
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= sizeof(j->basis)) {
        job_fail(j, "cannot read the template's basis");
        return;
    }
    memcpy(j->basis, r->str, r->len + 1);
    if (j->a->closing)
        job_fail(j, "shutting down");
    else if (j->ntargets > 0)
        job_fetch(j);
    else
        job_write(j);
}

/* Reads the basis (model/cachew.h) the job's write will carry, then fetches. */
static void job_read_basis(job *j)
{
    applier *a = j->a;
    rargs c;
    rargs_init(&c);
    cachew_read_basis(&c, a->prefix, j->wname);
    int rc = a->closing ? -1 : rconn_send(a->redis, basis_read, j, &c);
    rargs_free(&c);
    if (rc != 0)
        job_fail(j, "redis unavailable");
}

typedef struct fetch_ctx {
    job *j;
    size_t idx;
} fetch_ctx;

static void fetched(const fetch_result *res, void *arg)
{
    fetch_ctx *fc = arg;
    job *j = fc->j;
    target *t = &j->targets[fc->idx];
    free(fc);
    t->status = res->status;
    if (res->status == 200) {
        if (answer_template(res->body, res->len, &t->got_version, &t->got_id) != 0 ||
            (t->got_name = answer_name(res->body, res->len)) == NULL) {
            t->status = -1; /* not a template: counts as a failure */
        } else {
            t->body = malloc(res->len + 1);
            if (t->body == NULL)
                t->status = -1;
            else
                memcpy(t->body, res->body, res->len + 1);
        }
    }
    if (--j->fetches_left == 0) {
        if (j->a->closing)
            job_fail(j, "shutting down");
        else
            job_write(j);
    }
}

static void job_fetch(job *j)
{
    applier *a = j->a;
    j->fetches_left = j->ntargets;
    size_t started = 0;
    char idtext[24];
    snprintf(idtext, sizeof(idtext), "%lld", j->p.id);
    const char *ident = j->by_name || j->p.id < 0 ? j->p.name : idtext;
    for (size_t i = 0; i < j->ntargets; i++) {
        target *t = &j->targets[i];
        buf with, without;
        buf_init(&with, 8192);
        buf_init(&without, 8192);
        fetch_ctx *fc = malloc(sizeof(*fc));
        int ok = fc != NULL && field_url(&without, a->base_url, ident, &t->f, 0) == 0 &&
                 without.data != NULL &&
                 (!a->llm_kwargs || field_url(&with, a->base_url, ident, &t->f, 1) == 0);
        if (ok) {
            fc->j = j;
            fc->idx = i;
            ok = ptfetch_get(a->fetch, a->llm_kwargs ? with.data : NULL, without.data, a->headers,
                             fetched, fc) == 0;
        }
        buf_free(&with);
        buf_free(&without);
        if (!ok) {
            free(fc);
            t->status = -1;
            j->fetches_left--;
        } else {
            started++;
        }
    }
    if (started == 0)
        job_write(j);
}

/* Adds to write c the operation of each target's answer: a 200 sets its
 * field (or latest, or holds a version), a 404 removes it. Any other answer
 * marks the job failed (j->failed, j->why). Returns the operations added. */
static int add_answers(job *j, rargs *c)
{
    int ops = 0;
    for (size_t i = 0; i < j->ntargets; i++) {
        target *t = &j->targets[i];
        plan_write w = plan_write_of(j->p.kind, t->f.kind, t->status);
        if (w == PLAN_W_FAIL) {
            j->failed = 1;
            j->why = t->status == 0 ? "API unreachable" : "API answer not usable";
            continue;
        }
        char num[32];
        snprintf(num, sizeof(num), "%lld", t->got_version);
        size_t blen = t->body ? strlen(t->body) : 0;
        switch (w) {
        case PLAN_W_DROP:
            add_op(c, "drop", "", 0, "", 0);
            break;
        case PLAN_W_DEL:
            add_op(c, "del", t->field, strlen(t->field), "", 0);
            break;
        case PLAN_W_HOLDING:
            add_op(c, "holding", num, strlen(num), t->body, blen);
            break;
        case PLAN_W_LATEST:
            add_op(c, "latest", num, strlen(num), t->body, blen);
            break;
        case PLAN_W_SET:
            add_op(c, "set", t->field, strlen(t->field), t->body, blen);
            break;
        case PLAN_W_FAIL:
            break;
        }
        ops++;
    }
    return ops;
}

/* The template's id as the API answered it, or -1 when no answer said. */
static long long answered_id(const job *j)
{
    for (size_t i = 0; i < j->ntargets; i++)
        if (j->targets[i].status == 200 && j->targets[i].got_id >= 0)
            return j->targets[i].got_id;
    return -1;
}

/* Checks that the answers are of the event's template and name the hash
 * whose basis was read; else switches (to asking by name, or to the hash the
 * API named) and returns -1: the job is fetched again. */
static int answers_placed(job *j)
{
    for (size_t i = 0; i < j->ntargets; i++) {
        const target *t = &j->targets[i];
        if (t->status != 200)
            continue;
        if (!j->by_name && j->p.id >= 0 && t->got_id != j->p.id) {
            j->by_name = 1; /* the digits named another template */
            return -1;
        }
        if (strcmp(t->got_name, j->wname) != 0) {
            char *n = strdup(t->got_name);
            if (n == NULL)
                return -1;
            free(j->wname);
            j->wname = n;
            return -1;
        }
    }
    return 0;
}

/* Every answer is in: one atomic write, based on the basis read before the
 * fetches (refused and done again when it moved on), then XACK. */
static void job_write(job *j)
{
    applier *a = j->a;
    if (answers_placed(j) != 0) {
        job_redo(j);
        return;
    }
    rargs c;
    rargs_init(&c);
    /* A rename's old hash goes (when it is this template's), unless the
     * template has its old name again. */
    int rename = j->p.kind == PLAN_RENAME && strcmp(j->p.old_name, j->wname) != 0;
    write_prologue(j, &c, rename, answered_id(j));
    cachew_op(&c, "ifgen", j->basis, strlen(j->basis), "", 0);
    /* A 404 removes only what is the event's template's (model/cachew.h). */
    add_event_op(j, &c);
    int ops = add_answers(j, &c);
    /* A failed fetch fails the whole job: nothing is written, the entry stays
     * pending and the job runs again once claimed. */
    if (j->failed) {
        rargs_free(&c);
        job_fail(j, j->why);
        return;
    }
    if (ops == 0 && j->p.kind != PLAN_RENAME) {
        rargs_free(&c);
        ack(j);
        return;
    }
    int rc = a->closing ? -1 : rconn_send(a->redis, written, j, &c);
    rargs_free(&c);
    if (rc != 0)
        job_fail(j, "redis unavailable");
}

static void fields_listed(redisReply *r, void *priv)
{
    job *j = priv;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        job_fail(j, "cannot list the cached fields");
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *f = r->element[i];
        field fd;
        if (f->type != REDIS_REPLY_STRING || field_parse(f->str, &fd) != 0)
            continue;
        if (add_target(j, fd) != 0) {
            job_fail(j, "out of memory");
            return;
        }
    }
    job_read_basis(j); /* nothing cached: the write drops the old hash, sets the id */
}

/* A field or a template the reconciliation could not bring back: said once
 * (why is a status or a transport error, never a body). */
static void reconcile_error(const char *name, const char *field, const char *why, void *arg)
{
    (void)arg;
    log_warn("reconciliation: not refreshed, tried again at the next interval", "template", name,
             "field", field ? field : "", "why", why);
}

static void reconciled(const refresh_report *rep, void *arg)
{
    job *j = arg;
    applier *a = j->a;
    if (rep->written && rep->refreshed + rep->removed > 0) {
        a->writes++; /* one cachew write with every answer */
        a->changes += (unsigned long)rep->changed;
        a->resync_changes += (unsigned long)rep->changed;
    }
    j->failed = rep->failed > 0;
    j->why = j->failed ? "not refreshed" : NULL;
    job_finish(j);
}

static void job_start(job *j)
{
    applier *a = j->a;
    char key[1024];
    if (j->reconcile) {
        if (refresh_start(&a->refresh, j->p.name, reconcile_error, reconciled, j) != 0)
            job_fail(j, "out of memory");
        return;
    }
    if (j->p.kind == PLAN_RENAME) {
        if (keys_make(key, sizeof(key), a->prefix, KEYS_PROMPT, j->p.old_name) < 0) {
            job_fail(j, "name too long");
            return;
        }
        const char *argv[] = {"HKEYS", key};
        size_t lens[] = {5, strlen(key)};
        if (rconn_argv(a->redis, fields_listed, j, 2, argv, lens) != 0)
            job_fail(j, "redis unavailable");
        return;
    }
    if (j->pre.argc > 0) {
        rargs c;
        rargs_init(&c);
        write_prologue(j, &c, 0, -1);
        for (int i = 0; i < j->pre.argc; i++)
            rargs_add(&c, j->pre.argv[i], j->pre.lens[i]);
        int rc = rconn_send(a->redis, pre_written, j, &c);
        rargs_free(&c);
        if (rc != 0)
            job_fail(j, "redis unavailable");
        return;
    }
    if (j->ntargets > 0)
        job_read_basis(j);
    else
        ack(j);
}

/* Puts a job on the active list and runs it, or chains it behind the running
 * job of the same template. Takes ownership. */
void ajob_submit(applier *a, job *j)
{
    j->next = a->jobs;
    if (a->jobs)
        a->jobs->prev = j;
    a->jobs = j;
    a->njobs++;
    job *head = j->p.name ? find_running(a, j->p.name) : NULL;
    if (head) {
        while (head->chain)
            head = head->chain;
        head->chain = j;
        return;
    }
    j->running = 1;
    job_start(j);
}

/* Reads an entry's [field, value, ...]: its type and payload (pointing into
 * kv, left as they are when absent) and its received_at (into j). */
static void read_entry_fields(job *j, redisReply *kv, const char **type, const char **payload,
                              size_t *plen)
{
    if (kv->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "type") == 0)
                *type = v->str;
            else if (strcmp(k->str, "payload") == 0) {
                *payload = v->str;
                *plen = v->len;
            } else if (strcmp(k->str, "received_at") == 0) {
                int64_t ms;
                if (time_parse_iso8601(v->str, v->len, &ms) == 0)
                    j->received_ms = ms;
            }
        }
    }
}

/* The targets and pre-write operations of the job's plan. Returns 0, or -1
 * when memory ran out (j->pre.failed says so for the operations). */
static int add_plan_targets(job *j)
{
    plan_steps s = plan_steps_of(&j->p);
    if (s.fetch && add_target(j, s.target) != 0)
        return -1;
    if (s.fetch_latest && add_target(j, (field){.kind = FIELD_LATEST}) != 0)
        return -1;
    char *to = NULL, *from = NULL;
    int rc = 0;
    if (s.pre != PLAN_PRE_NONE)
        add_event_op(j, &j->pre);
    switch (s.pre) {
    case PLAN_PRE_COPY:
        to = field_dup(&s.pre_field);
        from = field_dup(&s.pre_from);
        if (to == NULL || from == NULL)
            rc = -1;
        else
            add_op(&j->pre, "evcopy", to, strlen(to), from, strlen(from));
        break;
    case PLAN_PRE_DEL:
        to = field_dup(&s.pre_field);
        if (to == NULL)
            rc = -1;
        else
            add_op(&j->pre, "evdel", to, strlen(to), "", 0);
        break;
    case PLAN_PRE_DROP:
        add_op(&j->pre, "evdrop", "", 0, "", 0);
        break;
    case PLAN_PRE_NONE:
        break;
    }
    free(to);
    free(from);
    return rc;
}

/* Builds the job of one stream entry: [id, [field, value, ...]]. NULL when
 * the entry is malformed or memory ran out (the entry stays pending); an
 * event that cannot be applied gives a job of kind PLAN_INVALID. */
static job *job_from_entry(applier *a, redisReply *e)
{
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
        return NULL;
    job *j = ajob_new(a);
    if (j == NULL)
        return NULL;
    memcpy(j->sid, e->element[0]->str, e->element[0]->len + 1);
    const char *type = "", *payload = "";
    size_t plen = 0;
    read_entry_fields(j, e->element[1], &type, &payload, &plen);
    for (size_t i = 0; i + 1 < NAPPLY; i++)
        if (strcmp(type, ajob_types[i]) == 0)
            j->type_idx = i;
    char err[128];
    if (plan_from_event(type, payload, plen, &j->p, err, sizeof(err)) != 0 ||
        j->p.kind == PLAN_INVALID) {
        a->invalid++;
        log_warn("event cannot be applied, acknowledged", "id", j->sid, "type", type, "why", err);
        j->p.kind = PLAN_INVALID;
        return j;
    }
    if (j->p.name != NULL && (j->wname = strdup(j->p.name)) == NULL) {
        ajob_free(j);
        return NULL;
    }
    int rc = add_plan_targets(j);
    if (rc != 0 || j->pre.failed) {
        ajob_free(j);
        return NULL;
    }
    return j;
}

static void batch_acked(redisReply *r, void *priv)
{
    (void)priv;
    /* On failure the entries stay pending and are claimed and acked later. */
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("XACK refused; the events are acknowledged when claimed again", "error", r->str);
}

/* Runs the jobs of an array of entries (XREADGROUP or XAUTOCLAIM). */
void ajob_take_entries(applier *a, redisReply *entries)
{
    /* Events that change nothing in the cache (most of a busy webhook's
     * traffic: agent runs, reports, datasets) are acknowledged together, in
     * one XACK per read. */
    rargs acks;
    rargs_init(&acks);
    rargs_adds(&acks, "XACK");
    rargs_adds(&acks, a->events_key);
    rargs_adds(&acks, GROUP);
    int nacks = 0;
    for (size_t i = 0; entries && i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
            e->element[0]->type == REDIS_REPLY_STRING) {
            int dup = 0;
            for (job *j = a->jobs; j && !dup; j = j->next)
                dup = strcmp(j->sid, e->element[0]->str) == 0;
            if (dup)
                continue;
        }
        job *j = job_from_entry(a, e);
        if (j == NULL)
            continue; /* left pending; claimed and tried again later */
        if (j->p.kind == PLAN_NONE || j->p.kind == PLAN_INVALID) {
            rargs_adds(&acks, j->sid);
            nacks++;
            if (j->p.kind == PLAN_NONE)
                a->applied[j->type_idx]++;
            ajob_free(j);
            continue;
        }
        ajob_submit(a, j);
    }
    if (nacks > 0 && !a->closing)
        rconn_send(a->redis, batch_acked, a, &acks);
    rargs_free(&acks);
}
