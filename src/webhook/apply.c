/* apply.c -- pl:events to cache writes: consumer group, fetches, Lua writes.
 *
 * A job is one event (or one template being reconciled). Its life:
 *
 *   [list fields]   rename and reconcile: HKEYS of the hash to rebuild
 *   [pre-write]     what needs no fetch, done at once: a label moving to a
 *                   cached version is repointed, a deleted label removed,
 *                   a deleted template dropped
 *   fetches         one GET per target (version, label, latest), concurrent
 *   write           one Lua call applies every answer atomically: the
 *                   template's hash never shows half a change, latest only
 *                   moves forward, gen is bumped and the name published on
 *                   pl:invalidate when anything changed
 *   XACK            only now; a job that failed is not acknowledged, so its
 *                   entry stays pending and is claimed again after the idle
 *                   time (by this receiver or another)
 *
 * Jobs of one template name run one after the other (a chain behind the
 * running one), so two events of a template never race in one receiver.
 * Content always comes from the API (Cache-Control: no-cache), so events
 * applied late, twice or out of order still converge on PromptLayer's state.
 */
#include "webhook/apply.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cachew.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/ptfetch.h"
#include "core/refresh.h"
#include "core/timeutil.h"
#include "model/answer.h"
#include "model/field.h"
#include "model/keys.h"
#include "model/plan.h"

#define GROUP "plcache-applier"
#define BLOCK_MS 2000
#define TICK_MS 200
#define PENDING_EVERY_MS 10000
#define STREAM_EVERY_MS 1000
#define HARD_CAP_FACTOR 10 /* pl:events is cut past 10 times its target length */
#define RESYNC_TRIES 3     /* a template reconciled while a writer raced it: tries */

/* Event types counted by name; others are "other". */
static const char *const apply_types[] = {
    "prompt_template_created",       "prompt_template_version_created",
    "prompt_template_name_changed",  "prompt_template_deleted",
    "prompt_template_label_created", "prompt_template_label_deleted",
    "prompt_template_label_moved",   "prompt_template_label_change_approved",
    "prompt_template_updated",       "other",
};
#define NAPPLY (sizeof(apply_types) / sizeof(apply_types[0]))

typedef struct target {
    field f;     /* f.label points into label */
    char *label; /* owned */
    char *field; /* owned: f as text, the cache field this target fills */
    long status; /* answer, 0 until done */
    char *body;  /* owned: the answer when 200 */
    long long got_version;
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
    int reconcile;
    int64_t received_ms;
    target *targets;
    size_t ntargets, fetches_left;
    rargs pre; /* pre-write operations */
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
    int llm_kwargs; /* ask the API for include_llm_kwargs (DESIGN.md section 4) */
    char events_key[256], ids_key[256], channel[256];
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
    unsigned long applied[NAPPLY], failed[NAPPLY], invalid, writes, changes;
    unsigned long resync_runs, resync_found, claimed;
    unsigned long gaps, lost, trimmed;
    long long pending;
    mhist latency;
};

/* Keeps pl:events near its length without losing what a group has not read.
 * KEYS[1] the stream; ARGV[1] our group, ARGV[2] the target length, ARGV[3]
 * the hard cap. Entries every group has read (and acknowledged) beyond the
 * target are trimmed; past the hard cap (appliers far behind or stuck) the
 * oldest are trimmed whatever their state, and the entries our group had not
 * read yet are counted as lost, in the same atomic step so the count is
 * exact. A gap made by someone else (an XTRIM by hand, an older receiver that
 * trimmed on XADD) is found too, while the group has not read past it.
 * Returns {lost (-1: some, count unknown), trimmed}. */
static const char stream_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end\n"
    "local function map(t) local m = {} for i = 1, #t, 2 do m[t[i]] = t[i + 1] end return m end\n"
    "local function before(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "local len = redis.call('XLEN', KEYS[1])\n"
    "local floor, mine\n"
    "for _, raw in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local g = map(raw)\n"
    "  local need = g['last-delivered-id']\n"
    "  if g['pending'] > 0 then\n"
    "    local p = redis.call('XPENDING', KEYS[1], g['name'])\n"
    "    if before(p[2], need) then need = p[2] end\n"
    "  end\n"
    "  if floor == nil or before(need, floor) then floor = need end\n"
    "  if g['name'] == ARGV[1] then mine = g end\n"
    "end\n"
    "local trimmed = 0\n"
    "if len > tonumber(ARGV[3]) then\n"
    "  trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3], 'LIMIT', 0)\n"
    "elseif len > tonumber(ARGV[2]) then\n"
    "  if floor == nil then\n"
    "    trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])\n"
    "  else\n"
    "    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', len - "
    "tonumber(ARGV[2]))\n"
    "  end\n"
    "end\n"
    "if mine == nil then return {0, trimmed} end\n"
    "local last = mine['last-delivered-id']\n"
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"
    "if first ~= nil and not before(last, first[1]) then return {0, trimmed} end\n"
    "local s = map(redis.call('XINFO', 'STREAM', KEYS[1]))\n"
    "local gone = s['entries-added'] - s['length']\n"
    "local read = mine['entries-read']\n"
    "local lost = -1\n"
    "if last == s['last-generated-id'] then lost = 0\n"
    "elseif type(read) == 'number' then lost = gone - read end\n"
    "if read ~= gone then\n"
    "  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', gone)\n"
    "end\n"
    "if lost < 0 then lost = -1 end\n"
    "return {lost, trimmed}\n";

static void job_start(job *j);
static void job_fetch(job *j);
static void job_write(job *j);
static void read_more(applier *a);
static void resync_step(applier *a);

/* ---- jobs ---------------------------------------------------------------- */

static void job_free(job *j)
{
    for (size_t i = 0; i < j->ntargets; i++) {
        free(j->targets[i].label);
        free(j->targets[i].field);
        free(j->targets[i].body);
    }
    free(j->targets);
    rargs_free(&j->pre);
    plan_free(&j->p);
    free(j);
}

static job *job_new(applier *a)
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

/* The start of a write command for the job's template (model/cachew.h). */
static void write_prologue(job *j, rargs *c, int with_old)
{
    cachew_begin(c, &(cachew_write){.prefix = j->a->prefix,
                                  .name = j->p.name,
                                  .id = j->p.id,
                                  .old_name = with_old ? j->p.old_name : NULL});
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
                     apply_types[j->type_idx], "why", j->why ? j->why : "failed");
        } else {
            a->applied[j->type_idx]++;
            char ms[24];
            snprintf(ms, sizeof(ms), "%lld",
                     (long long)(j->received_ms > 0 ? time_now_ms() - j->received_ms : 0));
            log_info("event applied", "id", j->sid, "type", apply_types[j->type_idx], "template",
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
    job_free(j);
    if (a->closing)
        return;
    if (next) {
        next->running = 1;
        job_start(next);
    }
    if (a->resync_running && !a->scan_busy)
        resync_step(a);
    read_more(a);
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
    a->writes++;
    a->changes += (unsigned long)r->integer;
    if (j->sid[0] && j->received_ms > 0) {
        int64_t ms = time_now_ms() - j->received_ms;
        mhist_observe(&a->latency, ms > 0 ? (double)ms / 1000.0 : 0.0);
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
    if (j->ntargets > 0)
        job_fetch(j);
    else
        ack(j);
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
        if (answer_template(res->body, res->len, &t->got_version, NULL) != 0) {
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
    for (size_t i = 0; i < j->ntargets; i++) {
        target *t = &j->targets[i];
        buf with, without;
        buf_init(&with, 8192);
        buf_init(&without, 8192);
        fetch_ctx *fc = malloc(sizeof(*fc));
        int ok = fc != NULL &&
                 field_url(&without, a->base_url, j->p.name, &t->f, 0) == 0 &&
                 without.data != NULL &&
                 (!a->llm_kwargs || field_url(&with, a->base_url, j->p.name, &t->f, 1) == 0);
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

/* Every answer is in: one atomic write, then XACK. */
static void job_write(job *j)
{
    applier *a = j->a;
    rargs c;
    rargs_init(&c);
    int rename = j->p.kind == PLAN_RENAME;
    write_prologue(j, &c, rename);
    int ops = 0;
    for (size_t i = 0; i < j->ntargets; i++) {
        target *t = &j->targets[i];
        char num[32];
        if (t->status == 404) {
            if (t->f.kind == FIELD_LATEST)
                add_op(&c, "drop", "", 0, "", 0);
            else
                add_op(&c, "del", t->field, strlen(t->field), "", 0);
            ops++;
            continue;
        }
        if (t->status != 200) {
            j->failed = 1;
            j->why = t->status == 0 ? "API unreachable" : "API answer not usable";
            continue;
        }
        size_t blen = strlen(t->body);
        snprintf(num, sizeof(num), "%lld", t->got_version);
        if (j->p.kind == PLAN_REFRESH_VERSION) {
            add_op(&c, "holding", num, strlen(num), t->body, blen);
        } else if (t->f.kind == FIELD_LATEST) {
            add_op(&c, "latest", num, strlen(num), t->body, blen);
        } else {
            add_op(&c, "set", t->field, strlen(t->field), t->body, blen);
            if (t->f.kind == FIELD_VERSION && j->p.kind == PLAN_VERSION)
                add_op(&c, "latest", num, strlen(num), t->body, blen);
        }
        ops++;
    }
    /* A failed fetch fails the whole job: nothing is written, the entry stays
     * pending and the job runs again once claimed. */
    if (j->failed) {
        rargs_free(&c);
        job_fail(j, j->why);
        return;
    }
    if (ops == 0 && !rename) {
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
    if (j->ntargets == 0) {
        job_write(j); /* nothing cached: drop the old hash, set the id */
        return;
    }
    job_fetch(j);
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
        write_prologue(j, &c, 0);
        for (int i = 0; i < j->pre.argc; i++)
            rargs_add(&c, j->pre.argv[i], j->pre.lens[i]);
        int rc = rconn_send(a->redis, pre_written, j, &c);
        rargs_free(&c);
        if (rc != 0)
            job_fail(j, "redis unavailable");
        return;
    }
    if (j->ntargets > 0)
        job_fetch(j);
    else
        ack(j);
}

/* Puts a job on the active list and runs it, or chains it behind the running
 * job of the same template. Takes ownership. */
static void job_submit(applier *a, job *j)
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

/* Builds the job of one stream entry: [id, [field, value, ...]]. */
static job *job_from_entry(applier *a, redisReply *e)
{
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
        return NULL;
    job *j = job_new(a);
    if (j == NULL)
        return NULL;
    memcpy(j->sid, e->element[0]->str, e->element[0]->len + 1);
    redisReply *kv = e->element[1];
    const char *type = "", *payload = "";
    size_t plen = 0;
    if (kv->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "type") == 0)
                type = v->str;
            else if (strcmp(k->str, "payload") == 0) {
                payload = v->str;
                plen = v->len;
            } else if (strcmp(k->str, "received_at") == 0) {
                int64_t ms;
                if (time_parse_iso8601(v->str, v->len, &ms) == 0)
                    j->received_ms = ms;
            }
        }
    }
    for (size_t i = 0; i + 1 < NAPPLY; i++)
        if (strcmp(type, apply_types[i]) == 0)
            j->type_idx = i;
    char err[128];
    if (plan_from_event(type, payload, plen, &j->p, err, sizeof(err)) != 0 ||
        j->p.kind == PLAN_INVALID) {
        a->invalid++;
        log_warn("event cannot be applied, acknowledged", "id", j->sid, "type", type, "why", err);
        j->p.kind = PLAN_INVALID;
        return j;
    }
    int rc = 0;
    switch (j->p.kind) {
    case PLAN_VERSION:
    case PLAN_REFRESH_VERSION:
        rc = add_target(j, (field){.kind = FIELD_VERSION, .version = j->p.version});
        break;
    case PLAN_LABEL:
        rc = add_target(j, (field){.kind = FIELD_LABEL, .label = j->p.label});
        if (rc == 0 && j->p.version >= 0) {
            char src[FIELD_SIZE(32)];
            field version = {.kind = FIELD_VERSION, .version = j->p.version};
            field_format(src, sizeof(src), &version);
            add_op(&j->pre, "copy", j->targets[0].field, strlen(j->targets[0].field), src,
                   strlen(src));
        }
        break;
    case PLAN_LABEL_DELETE: {
        char *f = field_dup(&(field){.kind = FIELD_LABEL, .label = j->p.label});
        if (f == NULL) {
            rc = -1;
            break;
        }
        add_op(&j->pre, "del", f, strlen(f), "", 0);
        free(f);
        break;
    }
    case PLAN_DELETE:
        add_op(&j->pre, "drop", "", 0, "", 0);
        break;
    default:
        break;
    }
    if (rc != 0 || j->pre.failed) {
        job_free(j);
        return NULL;
    }
    return j;
}

/* Runs the jobs of an array of entries (XREADGROUP or XAUTOCLAIM). */
static void batch_acked(redisReply *r, void *priv)
{
    (void)priv;
    /* On failure the entries stay pending and are claimed and acked later. */
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("XACK refused; the events are acknowledged when claimed again", "error", r->str);
}

static void take_entries(applier *a, redisReply *entries)
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
            job_free(j);
            continue;
        }
        job_submit(a, j);
    }
    if (nacks > 0 && !a->closing)
        rconn_send(a->redis, batch_acked, a, &acks);
    rargs_free(&acks);
}

/* ---- reading the stream ------------------------------------------------------ */

static void read_done(redisReply *r, void *priv)
{
    applier *a = priv;
    a->reading = 0;
    if (a->closing)
        return;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0)
        a->group_ready = a->group_asked = 0; /* the stream was deleted: make it again */
    else if (r && r->type == REDIS_REPLY_ARRAY) {
        /* [[key, [entries]]] */
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *s = r->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
                take_entries(a, s->element[1]);
        }
    }
    read_more(a);
}

static void read_more(applier *a)
{
    if (a->reading || a->stopping || a->closing || !a->group_ready || !rconn_ready(a->block) ||
        a->njobs >= (size_t)a->max_jobs)
        return;
    char count[16], block[16];
    snprintf(count, sizeof(count), "%d", a->batch);
    snprintf(block, sizeof(block), "%d", BLOCK_MS);
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP,     a->consumer,   "COUNT", count,
                          "BLOCK",      block,   "STREAMS", a->events_key, ">"};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    if (rconn_argv(a->block, read_done, a, 11, argv, lens) == 0)
        a->reading = 1;
}

static void group_created(redisReply *r, void *priv)
{
    applier *a = priv;
    if (r && (r->type == REDIS_REPLY_STATUS ||
              (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0))) {
        a->group_ready = 1;
        read_more(a);
    } else {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("cannot create the consumer group", "error", r->str);
        a->group_asked = 0; /* asked again at the next tick */
    }
}

/* Events removed from pl:events before this group applied them cannot be
 * applied any more: say so, count them, and reconcile every cached template,
 * which repairs what they would have changed in the cache. n < 0: some, the
 * count unknown. */
static void events_lost(applier *a, long long n, const char *how)
{
    char c[24];
    a->gaps++;
    if (n > 0) {
        a->lost += (unsigned long)n;
        snprintf(c, sizeof(c), "%lld", n);
    } else
        snprintf(c, sizeof(c), "unknown");
    log_warn("events left pl:events before they were applied; reconciling every cached template",
             "count", c, "how", how);
    a->resync_due = 1;
}

static void stream_kept(redisReply *r, void *priv)
{
    applier *a = priv;
    a->stream_busy = 0;
    if (a->closing || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("cannot trim pl:events", "error", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return;
    if (r->element[1]->integer > 0)
        a->trimmed += (unsigned long)r->element[1]->integer;
    if (r->element[0]->integer != 0)
        events_lost(a, r->element[0]->integer, "trimmed unread");
}

static void keep_stream(applier *a)
{
    char target[24], cap[24];
    snprintf(target, sizeof(target), "%lld", a->events_maxlen);
    snprintf(cap, sizeof(cap), "%lld", a->events_maxlen * HARD_CAP_FACTOR);
    const char *argv[] = {"EVAL", stream_script, "1", a->events_key, GROUP, target, cap};
    size_t lens[] = {4,
                     sizeof(stream_script) - 1,
                     1,
                     strlen(a->events_key),
                     strlen(GROUP),
                     strlen(target),
                     strlen(cap)};
    if (rconn_argv(a->redis, stream_kept, a, 7, argv, lens) == 0)
        a->stream_busy = 1;
}

static void claimed(redisReply *r, void *priv)
{
    applier *a = priv;
    if (a->closing || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    /* Redis 7: the third element lists pending entries that no longer exist
     * (trimmed while a stopped receiver held them); they are gone from the
     * group now, and their events with them. */
    if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY && r->element[2]->elements > 0)
        events_lost(a, (long long)r->element[2]->elements, "pending entry trimmed");
    redisReply *cur = r->element[0];
    if (cur->type == REDIS_REPLY_STRING && cur->len > 0 && cur->len < sizeof(a->claim_from)) {
        memcpy(a->claim_from, cur->str, cur->len);
        a->claim_from[cur->len] = '\0';
    } else {
        snprintf(a->claim_from, sizeof(a->claim_from), "0-0");
    }
    size_t before = a->njobs;
    take_entries(a, r->element[1]);
    if (a->njobs > before) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", a->njobs - before);
        a->claimed += a->njobs - before;
        log_info("claimed events left pending by a stopped receiver", "count", n);
    }
}

static void pending_counted(redisReply *r, void *priv)
{
    applier *a = priv;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        a->pending = r->element[0]->integer;
}

static void ignore_reply(redisReply *r, void *priv)
{
    (void)r;
    (void)priv;
}

/* Keeps the entries this receiver works on from looking idle to others. */
static void touch_jobs(applier *a)
{
    rargs c;
    rargs_init(&c);
    rargs_adds(&c, "XCLAIM");
    rargs_adds(&c, a->events_key);
    rargs_adds(&c, GROUP);
    rargs_adds(&c, a->consumer);
    rargs_adds(&c, "0");
    int n = 0;
    for (job *j = a->jobs; j; j = j->next)
        if (j->sid[0]) {
            rargs_adds(&c, j->sid);
            n++;
        }
    rargs_adds(&c, "JUSTID");
    if (n > 0)
        rconn_send(a->redis, ignore_reply, a, &c);
    rargs_free(&c);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    applier *a = arg;
    int64_t now = time_now_ms();
    if (!a->closing && rconn_ready(a->redis)) {
        if (!a->group_ready && !a->group_asked) {
            const char *argv[] = {"XGROUP", "CREATE", a->events_key, GROUP, "0", "MKSTREAM"};
            size_t lens[6];
            for (int i = 0; i < 6; i++)
                lens[i] = strlen(argv[i]);
            if (rconn_argv(a->redis, group_created, a, 6, argv, lens) == 0)
                a->group_asked = 1;
        }
        if (a->group_ready && !a->stopping) {
            /* A scan under way goes on at the next tick; a new one starts
             * every half idle time. */
            int scanning = strcmp(a->claim_from, "0-0") != 0;
            if ((scanning || now - a->last_claim_ms >= a->claim_idle_ms / 2) &&
                a->njobs < (size_t)a->max_jobs) {
                char idle[32], count[16];
                snprintf(idle, sizeof(idle), "%ld", a->claim_idle_ms);
                snprintf(count, sizeof(count), "%d", a->batch);
                const char *argv[] = {"XAUTOCLAIM", a->events_key, GROUP,   a->consumer,
                                      idle,         a->claim_from, "COUNT", count};
                size_t lens[8];
                for (int i = 0; i < 8; i++)
                    lens[i] = strlen(argv[i]);
                rconn_argv(a->redis, claimed, a, 8, argv, lens);
                a->last_claim_ms = now;
            }
            if (now - a->last_touch_ms >= a->claim_idle_ms / 3) {
                touch_jobs(a);
                a->last_touch_ms = now;
            }
            if (now - a->last_stream_ms >= STREAM_EVERY_MS && !a->stream_busy) {
                keep_stream(a);
                a->last_stream_ms = now;
            }
            if (now - a->last_pending_ms >= PENDING_EVERY_MS) {
                const char *argv[] = {"XPENDING", a->events_key, GROUP};
                size_t lens[] = {8, strlen(a->events_key), strlen(GROUP)};
                rconn_argv(a->redis, pending_counted, a, 3, argv, lens);
                a->last_pending_ms = now;
            }
            if (a->resync_due && !a->resync_running) {
                a->resync_due = 0;
                a->resync_running = 1;
                a->resync_started_us = time_mono_us();
                a->resync_templates = a->resync_changes = 0;
                snprintf(a->scan_cursor, sizeof(a->scan_cursor), "0");
                a->scan_busy = 0;
                resync_step(a);
            }
        }
        read_more(a);
    }
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(a->tick, &tv);
}

/* ---- reconciliation -------------------------------------------------------- */

static void resync_timer_fired(evutil_socket_t fd, short what, void *arg)
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
        job *j = job_new(a);
        if (j == NULL)
            break;
        j->reconcile = 1;
        j->p.kind = PLAN_NONE;
        j->p.name = strdup(k->str + plen);
        if (j->p.name == NULL) {
            job_free(j);
            break;
        }
        job_submit(a, j);
    }
    if (strcmp(a->scan_cursor, "0") == 0)
        a->scan_cursor[0] = '\0'; /* the scan is complete */
    resync_step(a);
}

/* Asks for more keys while there is room, and ends the run when all is done. */
static void resync_step(applier *a)
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

/* ---- the applier ----------------------------------------------------------- */

applier *applier_new(struct event_base *base, const applier_opts *o, rconn *redis, rconn *block,
                     fetcher *fetch)
{
    applier *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->base = base;
    a->redis = redis;
    a->block = block;
    a->fetch = fetch;
    a->prefix = strdup(o->prefix);
    a->base_url = strdup(o->base_url);
    a->consumer = strdup(o->consumer);
    size_t hl = strlen(o->api_key) + 16;
    a->api_key_header = malloc(hl);
    if (a->api_key_header)
        snprintf(a->api_key_header, hl, "X-API-KEY: %s", o->api_key);
    a->llm_kwargs = o->llm_kwargs;
    a->headers[0] = a->api_key_header;
    a->headers[1] = "Cache-Control: no-cache";
    a->headers[2] = "Accept: application/json";
    a->refresh = (refresh_env){.redis = redis,
                               .fetch = fetch,
                               .prefix = a->prefix,
                               .base_url = a->base_url,
                               .headers = a->headers,
                               .llm_kwargs = a->llm_kwargs,
                               .warm = 0, /* what is cached, and only that */
                               .max_tries = RESYNC_TRIES,
                               .stop = &a->closing};
    a->resync_s = o->resync_s;
    a->claim_idle_ms = o->claim_idle_ms > 0 ? o->claim_idle_ms : 60000;
    a->batch = o->batch > 0 ? o->batch : 32;
    a->max_jobs = o->max_jobs > 0 ? o->max_jobs : 256;
    a->events_maxlen = o->events_maxlen > 0 ? o->events_maxlen : KEYS_EVENTS_MAXLEN;
    mhist_init(&a->latency, metrics_latency_bounds, metrics_latency_nbounds);
    a->tick = evtimer_new(base, tick, a);
    a->resync_timer = evtimer_new(base, resync_timer_fired, a);
    if (a->prefix == NULL || a->base_url == NULL || a->consumer == NULL ||
        a->api_key_header == NULL || a->tick == NULL || a->resync_timer == NULL ||
        keys_make(a->events_key, sizeof(a->events_key), o->prefix, KEYS_EVENTS, NULL) < 0 ||
        keys_make(a->ids_key, sizeof(a->ids_key), o->prefix, KEYS_PROMPT_IDS, NULL) < 0 ||
        keys_make(a->channel, sizeof(a->channel), o->prefix, KEYS_INVALIDATE, NULL) < 0) {
        applier_free(a);
        return NULL;
    }
    a->last_claim_ms = time_now_ms(); /* first claim after half an idle time */
    snprintf(a->claim_from, sizeof(a->claim_from), "0-0");
    a->resync_due = a->resync_s > 0;
    if (a->resync_s > 0) {
        struct timeval tv = {a->resync_s, 0};
        evtimer_add(a->resync_timer, &tv);
    }
    struct timeval now = {0, 0};
    evtimer_add(a->tick, &now);
    return a;
}

void applier_stop(applier *a)
{
    a->stopping = 1;
    a->resync_running = 0;
}

size_t applier_busy(const applier *a)
{
    return a->njobs + (size_t)a->reading;
}

void applier_close(applier *a)
{
    a->closing = 1;
}

void applier_free(applier *a)
{
    if (a == NULL)
        return;
    a->closing = 1;
    while (a->jobs) {
        job *j = a->jobs;
        a->jobs = j->next;
        job_free(j);
    }
    if (a->tick)
        event_free(a->tick);
    if (a->resync_timer)
        event_free(a->resync_timer);
    free(a->prefix);
    free(a->base_url);
    free(a->consumer);
    if (a->api_key_header) {
        memset(a->api_key_header, 0, strlen(a->api_key_header));
        free(a->api_key_header);
    }
    free(a);
}

void applier_metrics(applier *a, buf *b)
{
    char labels[128];
    metrics_header(b, "plcache_apply_events_total", "counter",
                   "Events applied to the cache (acknowledged), by type.");
    for (size_t i = 0; i < NAPPLY; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", apply_types[i]);
        metrics_sample(b, "plcache_apply_events_total", labels, (double)a->applied[i]);
    }
    metrics_header(b, "plcache_apply_failures_total", "counter",
                   "Event applications that failed and were left pending for a retry, by type.");
    for (size_t i = 0; i < NAPPLY; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", apply_types[i]);
        metrics_sample(b, "plcache_apply_failures_total", labels, (double)a->failed[i]);
    }
    metrics_single(b, "plcache_apply_invalid_total", "counter",
                   "Template events whose payload lacked what they need (acknowledged).",
                   (double)a->invalid);
    metrics_histogram(b, "plcache_apply_latency_seconds",
                      "From an event's received_at to its cache write.", &a->latency);
    metrics_single(b, "plcache_cache_writes_total", "counter", "Atomic template writes.",
                   (double)a->writes);
    metrics_single(b, "plcache_cache_changes_total", "counter",
                   "Cache fields changed by writes (identical content changes nothing).",
                   (double)a->changes);
    metrics_single(b, "plcache_reconcile_runs_total", "counter", "Completed reconciliations.",
                   (double)a->resync_runs);
    metrics_single(b, "plcache_reconcile_changes_total", "counter",
                   "Cache fields that reconciliation found out of date.", (double)a->resync_found);
    metrics_single(b, "plcache_apply_claimed_total", "counter",
                   "Events claimed from receivers that left them pending.", (double)a->claimed);
    metrics_single(b, "plcache_apply_gaps_total", "counter",
                   "Times events were found removed from pl:events before they were applied "
                   "(each starts a reconciliation).",
                   (double)a->gaps);
    metrics_single(b, "plcache_apply_events_lost_total", "counter",
                   "Events removed from pl:events before they were applied (when counted).",
                   (double)a->lost);
    metrics_single(b, "plcache_events_trimmed_total", "counter",
                   "Entries this receiver trimmed from pl:events.", (double)a->trimmed);
    metrics_single(b, "plcache_apply_pending", "gauge",
                   "Entries delivered to the group and not acknowledged (XPENDING).",
                   (double)a->pending);
    metrics_single(b, "plcache_apply_jobs", "gauge", "Events and templates being worked on.",
                   (double)a->njobs);
}
