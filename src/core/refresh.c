/* refresh.c -- one template brought back to what the API says (refresh.h). */
#include "core/refresh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/ptfetch.h"
#include "model/answer.h"
#include "model/cachew.h"
#include "model/field.h"
#include "model/keys.h"
#include "model/plan.h"
#include "model/pturl.h"

#define REFRESH_MAX_URL (64 * 1024)

/* KEYS[1] the template's hash, KEYS[2] the dropped names, ARGV[1] its name:
 * its field names, id and basis (model/cachew.h). */
static const char read_script[] = CACHEW_BASIS_LUA "return {redis.call('HKEYS', KEYS[1]), "
                                                   "redis.call('HGET', KEYS[1], 'id') or '', "
                                                   "basis(KEYS[1], KEYS[2], ARGV[1])}\n";

typedef struct rfield {
    char *text;  /* owned: latest, version:N, label:L */
    field f;     /* parsed from text */
    long status; /* 0 until answered; -1: not asked, or not a template */
    char *body;  /* owned, when 200 */
    size_t len;
    long long version, id;
} rfield;

typedef struct refresh {
    const refresh_env *env;
    refresh_error_fn on_error;
    refresh_done_fn done;
    void *arg;
    refresh_report rep;
    char *name; /* owned */
    rfield *f;  /* [0] is latest when asked */
    size_t n, left;
    long long cached_id;
    char gen[32];
    int tries;
} refresh;

static int stopped(const refresh *t)
{
    return t->env->stop != NULL && *t->env->stop;
}

static void fail(refresh *t, const char *field, const char *why)
{
    t->rep.failed++;
    if (t->on_error)
        t->on_error(t->name, field, why, t->arg);
}

void refresh_why(const fetch_result *res, char *out, size_t outlen)
{
    if (res->status == 401 || res->status == 403)
        snprintf(out, outlen, "the API refused PROMPTLAYER_API_KEY (%ld)", res->status);
    else if (res->status > 0)
        snprintf(out, outlen, "the API answered %ld", res->status);
    else
        snprintf(out, outlen, "no answer from the API (%s) after %d attempts",
                 res->error[0] ? res->error : "failed", res->attempts);
}

static void clear_fields(refresh *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->f[i].text);
        free(t->f[i].body);
    }
    free(t->f);
    t->f = NULL;
    t->n = t->left = 0;
}

static void finish(refresh *t)
{
    clear_fields(t);
    t->rep.name = t->name;
    t->done(&t->rep, t->arg);
    free(t->name);
    free(t);
}

static void read_fields(refresh *t);

/* Redis did not do `what` (rep: its error, or NULL): said, and t ends. */
static void redis_failed(refresh *t, const char *what, const redisReply *rep)
{
    char why[300];
    snprintf(why, sizeof(why), "%s: %s", what,
             rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "Redis unavailable");
    fail(t, NULL, why);
    finish(t);
}

static void written(redisReply *rep, void *priv)
{
    refresh *t = priv;
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        redis_failed(t, "cache write failed", rep);
        return;
    }
    if (rep->integer < 0) {
        /* The template changed while we fetched: do it again from its new state. */
        if (++t->tries >= t->env->max_tries) {
            fail(t, NULL, "changed under every attempt, left as it is");
            finish(t);
            return;
        }
        clear_fields(t);
        read_fields(t);
        return;
    }
    t->rep.written = 1;
    t->rep.changed += (size_t)rep->integer;
    if (t->rep.gone) {
        t->rep.removed += t->rep.cached; /* the template, when it was cached */
    } else {
        for (size_t i = 0; i < t->n; i++) {
            if (t->f[i].status == 200)
                t->rep.refreshed++;
            else if (t->f[i].status == 404)
                t->rep.removed++;
        }
    }
    finish(t);
}

/* Every answer is in: one write with all of them, behind the gen guard. */
static void write_answers(refresh *t)
{
    const rfield *latest = t->n > 0 && t->f[0].f.kind == FIELD_LATEST ? &t->f[0] : NULL;
    long long id = latest && latest->status == 200 && latest->id >= 0 ? latest->id : t->cached_id;
    rargs c;
    rargs_init(&c);
    cachew_begin(&c, &(cachew_write){.prefix = t->env->prefix, .name = t->name, .id = id});
    cachew_op(&c, "ifgen", t->gen, strlen(t->gen), "", 0);
    int ops = 0;
    if (latest && latest->status == 404) {
        /* The template is gone: drop it whole. */
        cachew_op(&c, "drop", "", 0, "", 0);
        t->rep.gone = 1;
        ops++;
    } else {
        for (size_t i = 0; i < t->n; i++) {
            rfield *f = &t->f[i];
            char num[32];
            snprintf(num, sizeof(num), "%lld", f->version);
            switch (plan_write_of(PLAN_NONE, f->f.kind, f->status)) {
            case PLAN_W_DEL:
                cachew_op(&c, "del", f->text, strlen(f->text), "", 0);
                ops++;
                break;
            case PLAN_W_LATEST:
                cachew_op(&c, "latest", num, strlen(num), f->body, f->len);
                ops++;
                break;
            case PLAN_W_SET:
                cachew_op(&c, "set", f->text, strlen(f->text), f->body, f->len);
                ops++;
                break;
            default: /* failed (said when it came), or drop (handled above) */
                break;
            }
        }
    }
    int rc = ops > 0 && !stopped(t) ? rconn_send(t->env->redis, written, t, &c) : -1;
    rargs_free(&c);
    if (rc != 0) {
        if (ops > 0)
            fail(t, NULL, "cache write failed: Redis unavailable");
        else
            t->rep.written = !stopped(t);
        finish(t);
    }
}

typedef struct rfetch {
    refresh *t;
    size_t idx;
} rfetch;

static void fetched(const fetch_result *res, void *arg)
{
    rfetch *rf = arg;
    refresh *t = rf->t;
    rfield *f = &t->f[rf->idx];
    free(rf);
    f->status = res->status;
    if (res->status == 200) {
        if (answer_template(res->body, res->len, &f->version, &f->id) != 0) {
            f->status = -1;
            fail(t, f->text, "the API's answer is not a template");
        } else if ((f->body = malloc(res->len + 1)) == NULL) {
            f->status = -1;
            fail(t, f->text, "out of memory");
        } else {
            memcpy(f->body, res->body, res->len + 1);
            f->len = res->len;
        }
    } else if (res->status != 404) {
        char why[300];
        refresh_why(res, why, sizeof(why));
        fail(t, f->text, why);
    }
    if (--t->left == 0)
        write_answers(t);
}

static int add_field(refresh *t, const char *text, size_t n)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->f[i].text) == n && memcmp(t->f[i].text, text, n) == 0)
            return 1; /* already asked */
    rfield *f = realloc(t->f, (t->n + 1) * sizeof(*f));
    if (f == NULL)
        return -1;
    t->f = f;
    f = &t->f[t->n];
    memset(f, 0, sizeof(*f));
    f->text = strndup(text, n);
    if (f->text == NULL)
        return -1;
    if (field_parse(f->text, &f->f) != 0) {
        free(f->text);
        return 1; /* not a cache field: skipped */
    }
    t->n++;
    return 0;
}

/* Starts one fetch per field; the last answer (or refusal) writes. */
static void fetch_fields(refresh *t)
{
    if (t->n == 0) {
        t->rep.written = 1; /* nothing cached, nothing asked: nothing to do */
        finish(t);
        return;
    }
    /* Count the fetches first: an answer may come back only from the loop,
     * but a refused request is settled here. */
    t->left = t->n;
    size_t n = t->n;
    buf with, without;
    buf_init(&with, REFRESH_MAX_URL);
    buf_init(&without, REFRESH_MAX_URL);
    for (size_t i = 0; i < n; i++) {
        rfetch *rf = malloc(sizeof(*rf));
        buf_reset(&without);
        buf_reset(&with);
        const field *fd = &t->f[i].f;
        int kw = t->env->llm_kwargs;
        int ok = rf != NULL && !stopped(t) &&
                 field_url(&without, t->env->base_url, t->name, fd, 0) == 0 &&
                 (!kw || field_url(&with, t->env->base_url, t->name, fd, 1) == 0);
        if (ok) {
            *rf = (rfetch){.t = t, .idx = i};
            ok = ptfetch_get(t->env->fetch, kw ? with.data : NULL, without.data, t->env->headers,
                             fetched, rf) == 0;
        }
        if (!ok) {
            free(rf);
            t->f[i].status = -1;
            if (!stopped(t))
                fail(t, t->f[i].text, "cannot request it (name too long?)");
            if (--t->left == 0) {
                buf_free(&with);
                buf_free(&without);
                write_answers(t);
                return;
            }
        }
    }
    buf_free(&with);
    buf_free(&without);
}

/* One release label the API lists: its field and the version it points at
 * are fetched too, cached or not (a Redis that lost them gets them back). */
static int add_label(const char *label, long long version, void *arg)
{
    refresh *t = arg;
    char *lf = field_dup(&(field){.kind = FIELD_LABEL, .label = label});
    char *vf = field_dup(&(field){.kind = FIELD_VERSION, .version = version});
    int rc = lf != NULL && vf != NULL && add_field(t, lf, strlen(lf)) >= 0 &&
                     add_field(t, vf, strlen(vf)) >= 0
                 ? 0
                 : -1;
    free(lf);
    free(vf);
    return rc;
}

static void labels_listed(const fetch_result *res, void *arg)
{
    refresh *t = arg;
    if (res->status == 200) {
        if (answer_labels(res->body, res->len, add_label, t) != 0)
            fail(t, NULL, "listing its labels: the API's answer is not a list of labels");
    } else if (res->status != 404) { /* 404: gone; latest's own answer says so */
        char why[300], msg[340];
        refresh_why(res, why, sizeof(why));
        snprintf(msg, sizeof(msg), "listing its labels: %s", why);
        fail(t, NULL, msg);
    }
    fetch_fields(t);
}

/* Asks the API for the template's release labels, then fetches every field. */
static void list_labels(refresh *t)
{
    buf url;
    buf_init(&url, REFRESH_MAX_URL);
    int ok = !stopped(t) && pturl_labels(&url, t->env->base_url, t->name) == 0 &&
             fetch_get(t->env->fetch, url.data, t->env->headers, url.data, labels_listed, t) == 0;
    buf_free(&url);
    if (!ok) {
        if (!stopped(t))
            fail(t, NULL, "listing its labels: cannot request it (name too long?)");
        fetch_fields(t);
    }
}

static void fields_read(redisReply *rep, void *priv)
{
    refresh *t = priv;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY) {
        redis_failed(t, "cannot read the cached fields", rep);
        return;
    }
    redisReply *fields = rep->element[0], *id = rep->element[1], *gen = rep->element[2];
    t->cached_id = -1;
    if (t->tries == 0)
        t->rep.cached = fields->elements > 0;
    if (id->type == REDIS_REPLY_STRING && id->len > 0) {
        char *end = NULL;
        long long v = strtoll(id->str, &end, 10);
        if (*end == '\0' && v >= 0 && v < (1LL << 62))
            t->cached_id = v;
    }
    snprintf(t->gen, sizeof(t->gen), "%s", gen->type == REDIS_REPLY_STRING ? gen->str : "");
    int latest = t->env->warm;
    for (size_t i = 0; i < fields->elements && !latest; i++)
        latest = fields->element[i]->type == REDIS_REPLY_STRING &&
                 strcmp(fields->element[i]->str, "latest") == 0;
    int oom = latest && add_field(t, "latest", 6) < 0;
    for (size_t i = 0; i < fields->elements && !oom; i++) {
        redisReply *f = fields->element[i];
        if (f->type != REDIS_REPLY_STRING || strlen(f->str) != f->len ||
            strcmp(f->str, "latest") == 0)
            continue;
        oom = add_field(t, f->str, f->len) < 0;
    }
    if (oom) {
        fail(t, NULL, "out of memory");
        finish(t);
        return;
    }
    list_labels(t);
}

static void read_fields(refresh *t)
{
    char *key = NULL;
    size_t n = strlen(t->env->prefix) + strlen(KEYS_PROMPT) + strlen(t->name) + 1;
    char gone[256];
    int rc = -1;
    if (!stopped(t) && (key = malloc(n)) != NULL &&
        keys_make(key, n, t->env->prefix, KEYS_PROMPT, t->name) >= 0 &&
        keys_make(gone, sizeof(gone), t->env->prefix, KEYS_PROMPT_GONE, NULL) >= 0) {
        const char *av[] = {"EVAL", read_script, "2", key, gone, t->name};
        size_t al[] = {4, sizeof(read_script) - 1, 1, strlen(key), strlen(gone), strlen(t->name)};
        rc = rconn_argv(t->env->redis, fields_read, t, 6, av, al);
    }
    free(key);
    if (rc != 0) {
        if (!stopped(t))
            fail(t, NULL, "cannot read the cached fields: Redis unavailable");
        finish(t);
    }
}

int refresh_start(const refresh_env *env, const char *name, refresh_error_fn on_error,
                  refresh_done_fn done, void *arg)
{
    refresh *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL) {
        free(t);
        return -1;
    }
    t->env = env;
    t->on_error = on_error;
    t->done = done;
    t->arg = arg;
    read_fields(t);
    return 0;
}
