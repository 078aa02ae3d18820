/* cmd_dlq.c -- plcache dlq list | retry | purge: the dead-letter list.
 *
 * plcache-worker LPUSHes dead entries onto <prefix>track:dead (DESIGN.md
 * section 6), so the oldest sits at the right end (index -1). A retry moves
 * one entry at a time with a Lua compare-and-move: the entry read is removed
 * and its original job LPUSHed onto <prefix>track in one atomic step, and only
 * if the entry is still where it was read, so an interrupted or concurrent
 * retry neither loses nor duplicates a job. The original job is taken out of
 * the entry here, in C (jansson), rather than in Lua, whose cjson would turn
 * an empty list into an object.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "model/keys.h"

#define DLQ_LIST_DEFAULT 100
#define DLQ_MAX_RACES 1000

/* KEYS[1] dead list, KEYS[2] queue; ARGV[1] the entry as read, ARGV[2] the
 * job to queue, ARGV[3] the entry's index (negative). 1 moved, 0 the list
 * changed meanwhile. */
static const char dlq_move_script[] =
    "local i = tonumber(ARGV[3])\n"
    "if redis.call('LINDEX', KEYS[1], i) ~= ARGV[1] then return 0 end\n"
    "if i == -1 then redis.call('RPOP', KEYS[1]) else\n"
    "  redis.call('LSET', KEYS[1], i, '__plcache_dlq_moving__')\n"
    "  redis.call('LREM', KEYS[1], -1, '__plcache_dlq_moving__')\n"
    "end\n"
    "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
    "return 1\n";

static const char dlq_purge_script[] = "local n = redis.call('LLEN', KEYS[1])\n"
                                       "redis.call('DEL', KEYS[1])\n"
                                       "return n\n";

/* The original job of a dead entry, as text to queue (caller frees), or NULL
 * when the entry is not a dead entry. A job that was not a JSON object is
 * kept by the worker as a JSON string of its text: that text is queued. */
static char *dlq_job_text(const char *entry, size_t len, size_t *outlen)
{
    json_error_t je;
    json_t *o = json_loadb(entry, len, JSON_ALLOW_NUL, &je);
    char *text = NULL;
    if (o == NULL)
        o = json_loadb(entry, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    json_t *job = json_is_object(o) ? json_object_get(o, "job") : NULL;
    if (json_is_string(job)) {
        *outlen = json_string_length(job);
        text = malloc(*outlen + 1);
        if (text)
            memcpy(text, json_string_value(job), *outlen + 1);
    } else if (job != NULL) {
        text = json_dumps(job, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text)
            *outlen = strlen(text);
    }
    json_decref(o);
    return text;
}

static int dlq_list(const cli_ctx *c, redisContext *rc, const char *dead, long long n)
{
    char from[32];
    snprintf(from, sizeof(from), "%lld", -n);
    const char *av[] = {"LRANGE", dead, from, "-1"};
    redisReply *r = cli_command(c, rc, 4, av, NULL);
    if (r == NULL)
        return CLI_FAIL;
    for (size_t i = r->elements; i-- > 0;) {
        redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING) {
            fwrite(e->str, 1, e->len, stdout);
            fputc('\n', stdout);
        }
    }
    freeReplyObject(r);
    return CLI_OK;
}

/* What one step of a retry did with the oldest entry not skipped. */
typedef enum {
    RETRY_MOVED,   /* moved to the track queue */
    RETRY_RACED,   /* the list changed under the step: nothing moved */
    RETRY_SKIPPED, /* not a dead entry: left in place (said on stderr) */
    RETRY_EMPTY,   /* nothing left */
    RETRY_FAILED,  /* Redis failed (said on stderr) */
} retry_step;

/* Moves the entry `skipped` places above the oldest of dead back to track,
 * atomically and only if it is still there; `moved` numbers it in messages. */
static retry_step dlq_retry_one(const cli_ctx *c, redisContext *rc, const char *dead,
                                const char *track, long long skipped, long long moved)
{
    char idx[32];
    snprintf(idx, sizeof(idx), "%lld", -(skipped + 1));
    const char *av[] = {"LINDEX", dead, idx};
    redisReply *e = cli_command(c, rc, 3, av, NULL);
    if (e == NULL)
        return RETRY_FAILED;
    if (e->type != REDIS_REPLY_STRING) {
        freeReplyObject(e); /* nothing left */
        return RETRY_EMPTY;
    }
    size_t jlen = 0;
    char *job = dlq_job_text(e->str, e->len, &jlen);
    if (job == NULL) {
        cli_error(c,
                  "entry %lld from the oldest is not a dead entry {\"job\": ...}: left "
                  "in place",
                  skipped + moved + 1);
        freeReplyObject(e);
        return RETRY_SKIPPED;
    }
    const char *mv[] = {"EVAL", dlq_move_script, "2", dead, track, e->str, job, idx};
    size_t ml[] = {
        4, sizeof(dlq_move_script) - 1, 1, strlen(dead), strlen(track), e->len, jlen, strlen(idx)};
    redisReply *r = cli_command(c, rc, 8, mv, ml);
    free(job);
    freeReplyObject(e);
    if (r == NULL)
        return RETRY_FAILED;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok ? RETRY_MOVED : RETRY_RACED;
}

static int dlq_retry(const cli_ctx *c, redisContext *rc, const char *dead, const char *track,
                     long long n, int all)
{
    long long moved = 0, skipped = 0;
    int races = 0, status = CLI_OK;
    if (all) {
        /* Only what is dead now: entries that die meanwhile wait for the next run. */
        const char *av[] = {"LLEN", dead};
        redisReply *r = cli_command(c, rc, 2, av, NULL);
        if (r == NULL)
            return CLI_FAIL;
        n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
    }
    while (moved + skipped < n) {
        retry_step st = dlq_retry_one(c, rc, dead, track, skipped, moved);
        if (st == RETRY_FAILED) {
            status = CLI_FAIL;
            break;
        }
        if (st == RETRY_EMPTY)
            break;
        if (st == RETRY_SKIPPED) {
            skipped++;
        } else if (st == RETRY_MOVED) {
            moved++;
            races = 0;
        } else if (++races > DLQ_MAX_RACES) {
            cli_error(c, "the dead list keeps changing under the retry; try again");
            status = CLI_FAIL;
            break;
        }
    }
    printf("%lld\n", moved);
    if (skipped > 0 && status == CLI_OK)
        status = CLI_FAIL;
    return status;
}

static int dlq_purge(const cli_ctx *c, redisContext *rc, const char *dead)
{
    const char *av[] = {"EVAL", dlq_purge_script, "1", dead};
    redisReply *r = cli_command(c, rc, 4, av, NULL);
    if (r == NULL)
        return CLI_FAIL;
    printf("%lld\n", r->type == REDIS_REPLY_INTEGER ? r->integer : 0);
    freeReplyObject(r);
    return CLI_OK;
}

int cmd_dlq(const cli_ctx *c, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    long long n = DLQ_LIST_DEFAULT;
    int all = 0, status = CLI_USAGE;
    char dead[512], track[512];
    redisContext *rc = NULL;
    if (sub == NULL) {
        cli_error(c, "give list, retry or purge (see plcache help dlq)");
        goto done;
    }
    if (strcmp(sub, "list") == 0) {
        if (argc > 3 || (argc == 3 && cli_parse_ll(argv[2], 1, 1000000000, &n) != 0)) {
            cli_error(c, "usage: plcache dlq list [N], N a whole number >= 1");
            goto done;
        }
    } else if (strcmp(sub, "retry") == 0) {
        if (argc == 3 && strcmp(argv[2], "--all") == 0)
            all = 1;
        else if (argc != 3 || cli_parse_ll(argv[2], 1, 1000000000000LL, &n) != 0) {
            cli_error(c, "usage: plcache dlq retry N | --all, N a whole number >= 1");
            goto done;
        }
    } else if (strcmp(sub, "purge") == 0) {
        if (argc != 2) {
            cli_error(c, "usage: plcache dlq purge");
            goto done;
        }
    } else {
        cli_error(c, "unknown subcommand '%.60s': list, retry or purge", sub);
        goto done;
    }
    status = CLI_FAIL;
    if (cli_key(c, dead, sizeof(dead), KEYS_TRACK_DEAD, NULL) != 0 ||
        cli_key(c, track, sizeof(track), KEYS_TRACK, NULL) != 0)
        goto done;
    rc = cli_redis(c);
    if (rc == NULL)
        goto done;
    if (strcmp(sub, "list") == 0)
        status = dlq_list(c, rc, dead, n);
    else if (strcmp(sub, "retry") == 0)
        status = dlq_retry(c, rc, dead, track, n, all);
    else
        status = dlq_purge(c, rc, dead);
done:
    if (rc)
        redisFree(rc);
    return status;
}
