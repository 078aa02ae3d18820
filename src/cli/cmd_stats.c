/* cmd_stats.c -- plcache stats: the queues, workers, cache and events
 * (DESIGN.md section 4's keys), read with plain commands (LLEN, ZCARD,
 * ZRANGE, SCAN, XLEN, XINFO GROUPS). Not a snapshot: each number is read at
 * its own moment.
 *
 * One JSON object is built either way; for a terminal it is then printed as
 * a readable summary (stats_show), for programs as compact JSON with ages
 * rounded to the millisecond.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmds.h"
#include "cli/tmpl.h"
#include "model/keys.h"
#include "core/timeutil.h"

typedef int (*stats_key_fn)(const cli_ctx *c, redisContext *rc, const char *key, size_t plen,
                            void *arg);

/* SCANs every key starting with `pre` (glob characters escaped) of `type`
 * (NULL: any), calling fn for each. Returns 0, or -1 after printing why. */
static int stats_scan(const cli_ctx *c, redisContext *rc, const char *pre, const char *type,
                      stats_key_fn fn, void *arg)
{
    char match[1100], cursor[32] = "0";
    size_t plen = strlen(pre);
    if (keys_match(match, sizeof(match), pre, "") < 0) {
        cli_error(c, "the key prefix is too long for a SCAN pattern");
        return -1;
    }
    do {
        const char *av[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000", "TYPE", type};
        redisReply *r = cli_command(c, rc, type ? 8 : 6, av, NULL);
        if (r == NULL)
            return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            cli_error(c, "unexpected SCAN reply");
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *k = keys->element[i];
            if (k->type == REDIS_REPLY_STRING && k->len >= plen &&
                fn(c, rc, k->str, plen, arg) != 0) {
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int count_key(const cli_ctx *c, redisContext *rc, const char *key, size_t plen, void *arg)
{
    (void)c;
    (void)rc;
    (void)key;
    (void)plen;
    (*(long long *)arg)++;
    return 0;
}

static int processing_depth(const cli_ctx *c, redisContext *rc, const char *key, size_t plen,
                            void *arg)
{
    const char *av[] = {"LLEN", key};
    redisReply *r = cli_command(c, rc, 2, av, NULL);
    if (r == NULL)
        return -1;
    json_object_set_new(arg, key + plen,
                        json_integer(r->type == REDIS_REPLY_INTEGER ? r->integer : 0));
    freeReplyObject(r);
    return 0;
}

/* One integer command (LLEN, ZCARD, XLEN); -1 after printing why. */
static long long stats_int(const cli_ctx *c, redisContext *rc, const char *cmd, const char *key)
{
    const char *av[] = {cmd, key};
    redisReply *r = cli_command(c, rc, 2, av, NULL);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r != NULL)
        cli_error(c, "unexpected %s reply", cmd);
    freeReplyObject(r);
    return v;
}

static void iso_ms(long long ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char day[32] = "";
    if (gmtime_r(&s, &tm) != NULL)
        strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", day, (int)(ms % 1000));
}

static json_t *stats_workers(const cli_ctx *c, redisContext *rc, const char *key)
{
    const char *av[] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
    redisReply *r = cli_command(c, rc, 5, av, NULL);
    if (r == NULL)
        return NULL;
    json_t *out = json_array();
    long long now = time_now_ms();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        redisReply *id = r->element[i], *score = r->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING)
            continue;
        long long ms = strtoll(score->str, NULL, 10);
        char when[64];
        iso_ms(ms, when, sizeof(when));
        json_array_append_new(out, json_pack("{s:s%, s:s, s:I, s:f}", "id", id->str, id->len,
                                             "last_heartbeat", when, "last_heartbeat_ms",
                                             (json_int_t)ms, "age_s", (double)(now - ms) / 1000.0));
    }
    freeReplyObject(r);
    return out;
}

static json_t *reply_value(const redisReply *v)
{
    if (v->type == REDIS_REPLY_INTEGER)
        return json_integer(v->integer);
    if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)
        return json_stringn(v->str, v->len);
    return json_null();
}

/* XINFO GROUPS: each group's fields as they come (name, consumers, pending,
 * last-delivered-id, entries-read, lag). No stream: an empty list. */
static json_t *stats_groups(const cli_ctx *c, redisContext *rc, const char *key)
{
    const char *av[] = {"XINFO", "GROUPS", key};
    size_t al[] = {5, 6, strlen(key)};
    redisReply *r = redisCommandArgv(rc, 3, av, al);
    if (r == NULL) {
        cli_error(c, "Redis: %s", rc->errstr[0] ? rc->errstr : "connection lost");
        return NULL;
    }
    json_t *out = json_array();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *g = r->element[i];
        json_t *o = json_object();
        for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2)
            if (g->element[j]->type == REDIS_REPLY_STRING)
                json_object_set_new(o, g->element[j]->str, reply_value(g->element[j + 1]));
        json_array_append_new(out, o);
    }
    freeReplyObject(r);
    return out;
}

/* The Redis key names stats reads, under the configured prefix. */
typedef struct {
    char track[512], retry[512], dead[512], workers[512], proc[512], prompts[512], events[512],
        evdead[512];
} stats_keys;

/* Fills k. Returns 0, or -1 after saying why on stderr. */
static int stats_keys_make(const cli_ctx *c, stats_keys *k)
{
    if (cli_key(c, k->track, sizeof(k->track), KEYS_TRACK, NULL) != 0 ||
        cli_key(c, k->retry, sizeof(k->retry), KEYS_TRACK_RETRY, NULL) != 0 ||
        cli_key(c, k->dead, sizeof(k->dead), KEYS_TRACK_DEAD, NULL) != 0 ||
        cli_key(c, k->workers, sizeof(k->workers), KEYS_TRACK_WORKERS, NULL) != 0 ||
        cli_key(c, k->proc, sizeof(k->proc), KEYS_TRACK_PROCESSING, NULL) != 0 ||
        cli_key(c, k->prompts, sizeof(k->prompts), KEYS_PROMPT, NULL) != 0 ||
        cli_key(c, k->events, sizeof(k->events), KEYS_EVENTS, NULL) != 0 ||
        cli_key(c, k->evdead, sizeof(k->evdead), KEYS_EVENTS_DEAD, NULL) != 0)
        return -1;
    return 0;
}

/* An integer member of o, or 0. */
static long long num(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* The readable summary of out (the JSON form's object) on stdout. */
static void stats_show(const cli_ctx *c, const json_t *out)
{
    const json_t *track = json_object_get(out, "track"), *ev = json_object_get(out, "events");
    const char *pre = c->set->prefix;
    char age[32];
    printf("log jobs (%strack)\n", pre);
    printf("  queued       %lld\n", num(track, "queued"));
    printf("  to retry     %lld\n", num(track, "retry"));
    printf("  dead         %lld%s\n", num(track, "dead"),
           num(track, "dead") > 0 ? "   (plcache dlq list shows them)" : "");
    json_t *v, *proc = json_object_get(track, "processing");
    for (void *it = json_object_iter(proc); it != NULL; it = json_object_iter_next(proc, it)) {
        printf("  processing   %lld by ",
               (long long)json_integer_value(json_object_iter_value(it)));
        tmpl_put(stdout, json_object_iter_key(it));
        printf("\n");
    }
    const json_t *workers = json_object_get(out, "workers");
    printf("workers        %zu%s\n", json_array_size(workers),
           json_array_size(workers) == 0
               ? "   (none has sent a heartbeat: is plcache-worker running?)"
               : "");
    size_t i;
    json_array_foreach(workers, i, v)
    {
        cli_duration((long long)llround(json_number_value(json_object_get(v, "age_s")) * 1000), age,
                     sizeof(age));
        printf("  ");
        tmpl_put(stdout, json_string_value(json_object_get(v, "id")));
        printf("   last heartbeat %s ago (%s)\n", age,
               json_string_value(json_object_get(v, "last_heartbeat")));
    }
    printf("templates      %lld cached%s\n", num(out, "templates"),
           num(out, "templates") > 0 ? "   (plcache ls lists them)"
                                     : "   (plcache sync fills the cache from the API)");
    printf("events (%sevents)\n", pre);
    printf("  length       %lld\n", num(ev, "length"));
    printf("  dead         %lld", num(ev, "dead"));
    if (num(ev, "dead") > 0)
        printf("   (why: redis-cli XRANGE %sevents:dead - +)", pre);
    printf("\n");
    json_array_foreach(json_object_get(ev, "groups"), i, v)
    {
        const json_t *lag = json_object_get(v, "lag");
        char lagtext[32] = "unknown";
        if (json_is_integer(lag))
            snprintf(lagtext, sizeof(lagtext), "%lld", (long long)json_integer_value(lag));
        printf("  group %s: %lld consumers, %lld pending, %s not yet read\n",
               json_string_value(json_object_get(v, "name")), num(v, "consumers"),
               num(v, "pending"), lagtext);
    }
}

/* Rounds every worker's age_s to the millisecond, so that it prints as
 * 0.99, not 0.98999999999999999. */
static void round_ages(json_t *out)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(out, "workers"), i, w)
    {
        double a = json_number_value(json_object_get(w, "age_s"));
        json_object_set_new(w, "age_s", json_real(round(a * 1000.0) / 1000.0));
    }
}

/* Prints out (NULL: it could not be built) as one line of compact JSON, or
 * as a summary when not json. Returns CLI_OK, or CLI_FAIL after saying why
 * on stderr. */
static int stats_print(const cli_ctx *c, json_t *out, int json)
{
    if (out != NULL && !json) {
        stats_show(c, out);
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    if (out != NULL)
        round_ages(out);
    /* 15 digits: a millisecond-rounded age prints exactly as it reads. */
    char *text = out ? json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    if (text == NULL) {
        cli_error(c, "out of memory");
        return CLI_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return CLI_OK;
}

int cmd_stats(const cli_ctx *c, int argc, char **argv)
{
    int json = cli_json_mode(&argc, argv);
    int status = CLI_FAIL;
    redisContext *rc = NULL;
    json_t *out = NULL, *processing = json_object();
    stats_keys k;
    if (argc > 1) {
        cli_error(c, "takes no arguments but --json (see plcache help stats)");
        status = CLI_USAGE;
        goto done;
    }
    if (stats_keys_make(c, &k) != 0)
        goto done;
    rc = cli_redis(c);
    if (rc == NULL || processing == NULL)
        goto done;
    long long queued = stats_int(c, rc, "LLEN", k.track);
    long long retrying = queued < 0 ? -1 : stats_int(c, rc, "ZCARD", k.retry);
    long long deadn = retrying < 0 ? -1 : stats_int(c, rc, "LLEN", k.dead);
    long long evlen = deadn < 0 ? -1 : stats_int(c, rc, "XLEN", k.events);
    long long evdeadn = evlen < 0 ? -1 : stats_int(c, rc, "XLEN", k.evdead);
    long long templates = 0;
    if (evdeadn < 0 || stats_scan(c, rc, k.proc, NULL, processing_depth, processing) != 0 ||
        stats_scan(c, rc, k.prompts, "hash", count_key, &templates) != 0)
        goto done;
    json_t *wk = stats_workers(c, rc, k.workers);
    json_t *groups = wk ? stats_groups(c, rc, k.events) : NULL;
    if (wk == NULL || groups == NULL) {
        json_decref(wk);
        goto done;
    }
    out = json_pack("{s:{s:I, s:I, s:I, s:O}, s:o, s:I, s:{s:I, s:I, s:o}}", "track", "queued",
                    (json_int_t)queued, "retry", (json_int_t)retrying, "dead", (json_int_t)deadn,
                    "processing", processing, "workers", wk, "templates", (json_int_t)templates,
                    "events", "length", (json_int_t)evlen, "dead", (json_int_t)evdeadn, "groups",
                    groups);
    status = stats_print(c, out, json);
done:
    json_decref(out);
    json_decref(processing);
    if (rc)
        redisFree(rc);
    return status;
}
