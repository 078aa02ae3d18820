/* lib.c -- libplcache's public calls: open, get, push, close (plcache.h).
 *
 * A get is one Redis command, HMGET <prefix>prompt:<name> <field> gen: the
 * field answers a hit, and on a miss the gen read in the same command is the
 * snapshot the read-through fill is checked against (lease.c). With the
 * memory cache on, the memory is asked first, and a Redis hit is inserted with
 * the cache's epoch taken before the Redis read (memcache.h explains why). A
 * push is one LPUSH.
 */
#include "lib/lib.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/wipe.h"
#include "model/logreq.h"
#include "lib/form.h"
#include "lib/lease.h"

#define DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"
#define DEFAULT_PREFIX "pl:"
#define DEFAULT_API_BASE "https://api.promptlayer.com"
#define MAX_JOB ((size_t)512 << 20) /* Redis's largest string (proto-max-bulk-len) */
#define MAX_TIMEOUT_MS 600000

plcache_status lib_fail(plcache *c, plcache_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    return st;
}

int64_t lib_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lib_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void plcache_options_init(plcache_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->redis_timeout_ms = 1000;
    opts->api_timeout_ms = 5000;
    opts->lease_ms = 2000;
    opts->lease_wait_ms = 500;
    opts->memory_entries = 0;
    opts->memory_max_age_ms = 60000;
}

/* 0 takes the default; negative or huge is refused. */
static int pick_ms(int *v, int def, int min)
{
    if (*v == 0)
        *v = def;
    return *v >= min && *v <= MAX_TIMEOUT_MS ? 0 : -1;
}

static plcache_status check_options(plcache_options *o, char *err, size_t errlen)
{
    plcache_options d;
    plcache_options_init(&d);
    if (o->redis_url == NULL)
        o->redis_url = DEFAULT_REDIS_URL;
    if (o->prefix == NULL)
        o->prefix = DEFAULT_PREFIX;
    if (o->api_base_url == NULL)
        o->api_base_url = DEFAULT_API_BASE;
    const char *bad = NULL;
    if (pick_ms(&o->redis_timeout_ms, d.redis_timeout_ms, 1) != 0)
        bad = "redis_timeout_ms";
    else if (pick_ms(&o->api_timeout_ms, d.api_timeout_ms, 1) != 0)
        bad = "api_timeout_ms";
    else if (pick_ms(&o->lease_ms, d.lease_ms, 1) != 0)
        bad = "lease_ms";
    else if (o->lease_wait_ms < 0 || o->lease_wait_ms > MAX_TIMEOUT_MS)
        bad = "lease_wait_ms";
    else if (pick_ms(&o->memory_max_age_ms, d.memory_max_age_ms, 1) != 0)
        bad = "memory_max_age_ms";
    else if (o->memory_entries > ((size_t)1 << 30))
        bad = "memory_entries";
    else if (strlen(o->prefix) > FORM_MAX_PREFIX)
        bad = "prefix (at most 128 bytes)";
    else if (o->api_key != NULL &&
             (o->api_key[0] == '\0' || !form_header_safe(o->api_key) || strlen(o->api_key) > 4096))
        bad = "api_key (empty, too long or has control characters)";
    else if (strncmp(o->api_base_url, "http://", 7) != 0 &&
             strncmp(o->api_base_url, "https://", 8) != 0)
        bad = "api_base_url (http:// or https://)";
    else if (!form_header_safe(o->api_base_url) || strlen(o->api_base_url) > 2048)
        bad = "api_base_url";
    if (bad != NULL) {
        snprintf(err, errlen, "bad option %s", bad);
        return PLCACHE_E_ARG;
    }
    return PLCACHE_OK;
}

/* A new client holding copies of o's strings and its parsed Redis URL, not
 * yet connected. Returns PLCACHE_OK with *out set, or the status with err set
 * (and nothing left to free). */
static plcache_status client_new(const plcache_options *o, plcache **out, char *err, size_t errlen)
{
    plcache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return PLCACHE_E_NOMEM;
    }
    lease_init(c);
    c->prefix = strdup(o->prefix);
    c->api_base = strdup(o->api_base_url);
    c->api_key = o->api_key != NULL ? strdup(o->api_key) : NULL;
    plcache_status st = PLCACHE_E_NOMEM;
    if (c->prefix == NULL || c->api_base == NULL || (o->api_key != NULL && c->api_key == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    char uerr[160];
    if (rurl_parse(o->redis_url, &c->url, uerr, sizeof(uerr)) != 0) {
        snprintf(err, errlen, "bad redis_url: %s", uerr);
        st = PLCACHE_E_ARG;
        memset(&c->url, 0, sizeof(c->url));
        goto err;
    }
    c->o = *o;
    c->o.redis_url = NULL; /* not kept: it may hold a password */
    c->o.prefix = c->prefix;
    c->o.api_key = c->api_key;
    c->o.api_base_url = c->api_base;
    *out = c;
    return PLCACHE_OK;
err:
    plcache_close(c);
    return st;
}

/* The memory cache and the listener that empties it of what changes. */
static plcache_status start_memory(plcache *c, char *err, size_t errlen)
{
    char chan[FORM_KEY_SIZE];
    form_key(chan, sizeof(chan), c->prefix, KEYS_INVALIDATE, "", NULL);
    c->mem = memcache_new(c->o.memory_entries, (int64_t)c->o.memory_max_age_ms * 1000);
    if (c->mem == NULL) {
        snprintf(err, errlen, "out of memory");
        return PLCACHE_E_NOMEM;
    }
    c->sub = sub_start(&c->url, c->o.redis_timeout_ms, chan, c->mem, err, errlen);
    return c->sub == NULL ? PLCACHE_E_NOMEM : PLCACHE_OK;
}

/* Connects c to Redis, and starts its API client and memory cache when its
 * options ask for them. The caller closes c on failure. */
static plcache_status client_start(plcache *c, char *err, size_t errlen)
{
    sconn_init(&c->rc, &c->url, c->o.redis_timeout_ms);
    if (sconn_open(&c->rc) != 0) {
        snprintf(err, errlen, "%s", c->rc.err);
        return PLCACHE_E_REDIS;
    }
    if (c->api_key != NULL) {
        c->api = api_new(c->api_base, c->api_key, c->o.api_timeout_ms, !c->o.skip_llm_kwargs);
        if (c->api == NULL) {
            snprintf(err, errlen, "cannot start libcurl");
            return PLCACHE_E_NOMEM;
        }
    }
    if (c->o.memory_entries > 0)
        return start_memory(c, err, errlen);
    return PLCACHE_OK;
}

plcache_status plcache_open(plcache **out, const plcache_options *opts, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (out == NULL) {
        snprintf(err, errlen, "out is NULL");
        return PLCACHE_E_ARG;
    }
    *out = NULL;
    plcache_options o;
    if (opts != NULL)
        o = *opts;
    else
        plcache_options_init(&o);
    plcache_status st = check_options(&o, err, errlen);
    if (st != PLCACHE_OK)
        return st;
    plcache *c = NULL;
    st = client_new(&o, &c, err, errlen);
    if (st != PLCACHE_OK)
        return st;
    st = client_start(c, err, errlen);
    if (st != PLCACHE_OK) {
        plcache_close(c);
        return st;
    }
    *out = c;
    return PLCACHE_OK;
}

/* A copy of a Redis string reply, NUL-terminated. */
static char *copy_reply(const redisReply *r)
{
    char *p = malloc(r->len + 1);
    if (p != NULL) {
        memcpy(p, r->str, r->len);
        p[r->len] = '\0';
    }
    return p;
}

/* An error reply as a status: a key of the wrong type breaks the contract,
 * anything else (OOM, NOAUTH, LOADING, ...) is Redis refusing. */
static plcache_status reply_error(plcache *c, const redisReply *r, const char *what)
{
    plcache_status st = strncmp(r->str, "WRONGTYPE", 9) == 0 ? PLCACHE_E_PROTOCOL : PLCACHE_E_REDIS;
    return lib_fail(c, st, "redis %s: %s: %.160s", c->rc.where, what, r->str);
}

/* One get under way: what is asked, and the memory cache's clock and epoch
 * as they were before Redis was read (a Redis hit is inserted with them). */
typedef struct get_req {
    const char *name, *label, *field, *hash;
    plcache_select sel;
    long long version;
    int64_t now; /* 0 without a memory cache */
    uint64_t epoch;
} get_req;

/* Asks the memory cache: PLCACHE_OK with *json and *len on a hit,
 * PLCACHE_NOT_FOUND on a miss (g's clock and epoch then set), or
 * PLCACHE_E_NOMEM. */
static plcache_status memory_get(plcache *c, get_req *g, char **json, size_t *len)
{
    g->now = lib_now_us();
    char *v = NULL;
    size_t vlen = 0;
    int hit = memcache_get(c->mem, g->name, g->field, g->now, &v, &vlen, &g->epoch);
    if (hit < 0)
        return lib_fail(c, PLCACHE_E_NOMEM, "out of memory");
    if (hit == 0)
        return PLCACHE_NOT_FOUND;
    *json = v;
    if (len != NULL)
        *len = vlen;
    c->errstr[0] = '\0';
    return PLCACHE_OK;
}

/* A Redis hit's value, copied for the caller and into the memory cache. */
static plcache_status take_hit(plcache *c, const get_req *g, const redisReply *val, char **json,
                               size_t *len)
{
    char *copy = copy_reply(val);
    if (copy == NULL)
        return lib_fail(c, PLCACHE_E_NOMEM, "out of memory");
    if (c->mem != NULL &&
        memcache_put(c->mem, g->name, g->field, val->str, val->len, g->now, g->epoch) < 0) {
        free(copy);
        return lib_fail(c, PLCACHE_E_NOMEM, "out of memory");
    }
    c->st.redis_hits++;
    *json = copy;
    if (len != NULL)
        *len = val->len;
    c->errstr[0] = '\0';
    return PLCACHE_OK;
}

/* HMGET of g's field and gen: a hit, or on a miss the read-through from the
 * API with the gen seen (when there is an API key). */
static plcache_status redis_get(plcache *c, const get_req *g, char **json, size_t *len)
{
    const char *argv[] = {"HMGET", g->hash, g->field, "gen"};
    redisReply *r = sconn_command(&c->rc, 1, 4, argv, NULL);
    if (r == NULL)
        return lib_fail(c, PLCACHE_E_REDIS, "%s", c->rc.err);
    plcache_status st = PLCACHE_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        st = reply_error(c, r, "HMGET");
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        st = lib_fail(c, PLCACHE_E_PROTOCOL, "redis: unexpected answer to HMGET");
        goto done;
    }
    const redisReply *val = r->element[0], *gen = r->element[1];
    if (val->type == REDIS_REPLY_STRING) {
        st = take_hit(c, g, val, json, len);
        goto done;
    }
    if (val->type != REDIS_REPLY_NIL ||
        (gen->type != REDIS_REPLY_NIL && (gen->type != REDIS_REPLY_STRING || gen->len > 30))) {
        st = lib_fail(c, PLCACHE_E_PROTOCOL, "redis: unexpected answer to HMGET");
        goto done;
    }
    c->st.misses++;
    if (c->api == NULL) {
        st = lib_fail(c, PLCACHE_NOT_FOUND, "not in the cache (no API key to read through)");
        goto done;
    }
    char gen_seen[32];
    int has_gen = gen->type == REDIS_REPLY_STRING;
    if (has_gen)
        memcpy(gen_seen, gen->str, gen->len + 1);
    freeReplyObject(r);
    return lease_read_through(c, g->name, g->field, g->sel, g->label, g->version,
                              has_gen ? gen_seen : NULL, json, len);
done:
    freeReplyObject(r);
    return st;
}

plcache_status plcache_get(plcache *c, const char *name, plcache_select sel, const char *label,
                           long long version, char **json, size_t *len)
{
    if (c == NULL)
        return PLCACHE_E_ARG;
    if (json == NULL)
        return lib_fail(c, PLCACHE_E_ARG, "json is NULL");
    *json = NULL;
    if (len != NULL)
        *len = 0;
    if (name == NULL || name[0] == '\0' || strnlen(name, FORM_MAX_NAME + 1) > FORM_MAX_NAME)
        return lib_fail(c, PLCACHE_E_ARG, "name is empty or over %d bytes", FORM_MAX_NAME);
    char field[FORM_FIELD_SIZE], hash[FORM_KEY_SIZE];
    if (form_field(field, sizeof(field), sel, label, version) < 0)
        return lib_fail(c, PLCACHE_E_ARG, "bad selector (a label of 1..%d bytes, a version > 0)",
                        FORM_MAX_LABEL);
    form_key(hash, sizeof(hash), c->prefix, KEYS_PROMPT, name, NULL);
    get_req g = {
        .name = name, .label = label, .field = field, .hash = hash, .sel = sel, .version = version};
    if (c->mem != NULL) {
        plcache_status st = memory_get(c, &g, json, len);
        if (st != PLCACHE_NOT_FOUND)
            return st;
    }
    return redis_get(c, &g, json, len);
}

/* LPUSH of a checked job's text. */
static plcache_status push_text(plcache *c, const char *job, size_t len, long long *queue_len)
{
    char key[FORM_KEY_SIZE];
    form_key(key, sizeof(key), c->prefix, KEYS_TRACK, "", NULL);
    const char *argv[] = {"LPUSH", key, job};
    size_t argvlen[] = {5, strlen(key), len};
    /* Sent again once when the connection is found broken: a job may then be
     * queued twice, which the worker's at-least-once delivery allows anyway. */
    redisReply *r = sconn_command(&c->rc, 1, 3, argv, argvlen);
    if (r == NULL)
        return lib_fail(c, PLCACHE_E_REDIS, "%s", c->rc.err);
    plcache_status st = PLCACHE_OK;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (queue_len != NULL)
            *queue_len = r->integer;
        c->errstr[0] = '\0';
    } else if (r->type == REDIS_REPLY_ERROR) {
        st = reply_error(c, r, "LPUSH");
    } else {
        st = lib_fail(c, PLCACHE_E_PROTOCOL, "redis: unexpected answer to LPUSH");
    }
    freeReplyObject(r);
    return st;
}

/* PLCACHE_OK when job is one PromptLayer accepts (model/logreq.h), else
 * PLCACHE_E_ARG with the field and the rule in errstr. */
static plcache_status check_job(plcache *c, const json_t *job)
{
    char why[384];
    if (logreq_check_job(job, why, sizeof(why)) != 0)
        return lib_fail(c, PLCACHE_E_ARG, "invalid job: %s", why);
    return PLCACHE_OK;
}

plcache_status plcache_push(plcache *c, const char *job, size_t len, long long *queue_len)
{
    if (c == NULL)
        return PLCACHE_E_ARG;
    if (job == NULL)
        return lib_fail(c, PLCACHE_E_ARG, "no job");
    if (len > MAX_JOB)
        return lib_fail(c, PLCACHE_E_ARG, "the job is over %zu bytes", MAX_JOB);
    /* Integers past 64 bits are read as reals rather than refused: PromptLayer
     * takes them, and the text pushed is the caller's, unchanged. */
    json_error_t je;
    json_t *o = json_loadb(job, len, 0, &je);
    if (o == NULL)
        o = json_loadb(job, len, JSON_DECODE_INT_AS_REAL, &je);
    if (o == NULL)
        return lib_fail(c, PLCACHE_E_ARG,
                        "the job is not a JSON object: it does not parse (line %d, column %d)",
                        je.line, je.column); /* not je.text: it quotes the job */
    plcache_status st = check_job(c, o);
    json_decref(o);
    return st == PLCACHE_OK ? push_text(c, job, len, queue_len) : st;
}

plcache_status plcache_push_json(plcache *c, const struct json_t *job, long long *queue_len)
{
    if (c == NULL)
        return PLCACHE_E_ARG;
    plcache_status st = check_job(c, job);
    if (st != PLCACHE_OK)
        return st;
    char *text = json_dumps(job, JSON_COMPACT);
    if (text == NULL)
        return lib_fail(c, PLCACHE_E_NOMEM, "cannot serialize the job");
    size_t len = strlen(text);
    st = len > MAX_JOB ? lib_fail(c, PLCACHE_E_ARG, "the job is over %zu bytes", MAX_JOB)
                       : push_text(c, text, len, queue_len);
    json_malloc_t m = NULL;
    json_free_t f = NULL;
    json_get_alloc_funcs(&m, &f);
    (f != NULL ? f : free)(text);
    return st;
}

void plcache_memory_clear(plcache *c)
{
    if (c != NULL && c->mem != NULL)
        memcache_clear(c->mem);
}

void plcache_get_stats(plcache *c, plcache_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (c == NULL)
        return;
    *out = c->st;
    if (c->mem != NULL) {
        memcache_stats m;
        memcache_get_stats(c->mem, &m);
        out->memory_hits = m.hits;
        out->invalidations = m.invalidations;
        out->memory_entries = m.entries;
        out->memory_usable = m.usable;
    }
    out->subscription_drops = sub_drops(c->sub);
}

const char *plcache_errstr(const plcache *c)
{
    return c != NULL ? c->errstr : "no client";
}

const char *plcache_status_str(plcache_status st)
{
    switch (st) {
    case PLCACHE_OK:
        return "ok";
    case PLCACHE_NOT_FOUND:
        return "not found";
    case PLCACHE_E_ARG:
        return "bad argument";
    case PLCACHE_E_REDIS:
        return "redis error";
    case PLCACHE_E_API:
        return "API error";
    case PLCACHE_E_AUTH:
        return "API key refused";
    case PLCACHE_E_PROTOCOL:
        return "protocol error";
    case PLCACHE_E_NOMEM:
        return "out of memory";
    case PLCACHE_NOT_RENDERABLE:
        return "not renderable here";
    }
    return "unknown status";
}

void plcache_free(void *p)
{
    free(p);
}

void plcache_close(plcache *c)
{
    if (c == NULL)
        return;
    sub_stop(c->sub);
    memcache_free(c->mem);
    api_free(c->api);
    sconn_close(&c->rc);
    rurl_free(&c->url);
    wipe_free(c->api_key);
    free(c->api_base);
    free(c->prefix);
    free(c);
}
