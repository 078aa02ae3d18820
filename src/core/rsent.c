/* rsent.c -- synchronous Sentinel discovery. */
#include "core/rsent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* Asks one sentinel; 0 with out's host and port set, or -1 with err set. */
static int ask(const rurl_node *n, const char *master, struct timeval tv, rurl *out, char *err,
               size_t errlen)
{
    int rc = -1;
    redisReply *r = NULL;
    redisContext *ctx = redisConnectWithTimeout(n->host, n->port, tv);
    if (ctx == NULL || ctx->err) {
        snprintf(err, errlen, "sentinel %s:%d: %s", n->host, n->port,
                 ctx ? ctx->errstr : "out of memory");
        goto done;
    }
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        snprintf(err, errlen, "sentinel %s:%d: cannot set the timeout", n->host, n->port);
        goto done;
    }
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", master};
    r = redisCommandArgv(ctx, 3, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "sentinel %s:%d: %s", n->host, n->port, ctx->errstr);
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len >= sizeof(out->host)) {
        snprintf(err, errlen, "sentinel %s:%d: %s", n->host, n->port,
                 r->type == REDIS_REPLY_ERROR ? r->str : "does not know the master");
        goto done;
    }
    char *end = NULL;
    errno = 0;
    long port = strtol(r->element[1]->str, &end, 10);
    if (errno != 0 || end == r->element[1]->str || *end != '\0' || port < 1 || port > 65535) {
        snprintf(err, errlen, "sentinel %s:%d: bad port in its answer", n->host, n->port);
        goto done;
    }
    memcpy(out->host, r->element[0]->str, r->element[0]->len);
    out->host[r->element[0]->len] = '\0';
    out->port = (int)port;
    rc = 0;
done:
    if (r)
        freeReplyObject(r);
    if (ctx)
        redisFree(ctx);
    return rc;
}

int rsent_locate(const rurl *u, int timeout_ms, rurl *out, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char last[400] = "no sentinel";
    *out = *u;
    out->is_sentinel = 0;
    for (int i = 0; i < u->nsentinels; i++)
        if (ask(&u->sentinels[i], u->master, tv, out, last, sizeof(last)) == 0)
            return 0;
    snprintf(err, errlen, "no sentinel gave the address of master %s (last: %s)", u->master, last);
    return -1;
}

int rsent_check_master(redisContext *ctx, char *err, size_t errlen)
{
    redisReply *r = redisCommand(ctx, "ROLE");
    if (r == NULL) {
        snprintf(err, errlen, "ROLE: %s", ctx->errstr);
        return -1;
    }
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
    if (!ok)
        snprintf(err, errlen, "not the master (the sentinels' answer is out of date)");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

int rsent_readonly(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0;
}
