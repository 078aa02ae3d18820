/* sconn.c -- a blocking hiredis connection with timeouts, AUTH, SELECT and one
 * reconnect. */
#include "core/sconn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "core/rsent.h"

static struct timeval tv_of(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Runs one setup command on a fresh context; 0 when it answered +OK. */
static int setup_cmd(redisContext *ctx, int argc, const char **argv, const char *what, char *err,
                     size_t errlen)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "%s: %s", what, ctx->errstr);
        return -1;
    }
    int ok = r->type == REDIS_REPLY_STATUS;
    if (!ok)
        snprintf(err, errlen, "%s refused: %.120s", what,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* Authenticates on ctx and selects url's database, as url asks (where names
 * the server in messages). Returns 0, or -1 with the reason in err. */
static int session_setup(redisContext *ctx, const rurl *url, const char *where, char *err,
                         size_t errlen)
{
    char what[340];
    if (url->password != NULL) {
        const char *argv[3] = {"AUTH", url->user != NULL ? url->user : url->password,
                               url->password};
        snprintf(what, sizeof(what), "redis %s: AUTH", where);
        if (setup_cmd(ctx, url->user != NULL ? 3 : 2, argv, what, err, errlen) != 0)
            return -1;
    }
    if (url->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", url->db);
        const char *argv[2] = {"SELECT", db};
        snprintf(what, sizeof(what), "redis %s: SELECT", where);
        if (setup_cmd(ctx, 2, argv, what, err, errlen) != 0)
            return -1;
    }
    return 0;
}

redisContext *sconn_connect(const rurl *url, int timeout_ms, char *err, size_t errlen)
{
    char where[300];
    rurl node;
    if (url->is_sentinel) {
        /* node borrows url's user and password: never rurl_free it. */
        if (rsent_locate(url, timeout_ms, &node, err, errlen) != 0)
            return NULL;
        url = &node;
    }
    rurl_describe(url, where, sizeof(where));
    struct timeval tv = tv_of(timeout_ms);
    redisContext *ctx = url->is_unix ? redisConnectUnixWithTimeout(url->path, tv)
                                     : redisConnectWithTimeout(url->host, url->port, tv);
    if (ctx == NULL) {
        snprintf(err, errlen, "redis %s: out of memory", where);
        return NULL;
    }
    if (ctx->err != 0) {
        snprintf(err, errlen, "redis %s: connect: %s", where, ctx->errstr);
        goto err;
    }
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        snprintf(err, errlen, "redis %s: cannot set the timeout", where);
        goto err;
    }
    if (session_setup(ctx, url, where, err, errlen) != 0)
        goto err;
    if (url == &node) {
        char why[200];
        if (rsent_check_master(ctx, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "redis %s: %s", where, why);
            goto err;
        }
    }
    return ctx;
err:
    redisFree(ctx);
    return NULL;
}

void sconn_init(sconn *c, const rurl *url, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->url = url;
    c->timeout_ms = timeout_ms;
    rurl_describe(url, c->where, sizeof(c->where));
}

int sconn_open(sconn *c)
{
    if (c->ctx != NULL)
        return 0;
    c->ctx = sconn_connect(c->url, c->timeout_ms, c->err, sizeof(c->err));
    return c->ctx != NULL ? 0 : -1;
}

redisReply *sconn_command(sconn *c, int retry, int argc, const char **argv, const size_t *argvlen)
{
    for (int attempt = 0;; attempt++) {
        if (sconn_open(c) != 0)
            return NULL;
        errno = 0;
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, argvlen);
        int saved = errno;
        if (r != NULL && c->url->is_sentinel && rsent_readonly(r) && retry && attempt == 0) {
            /* The master was demoted under us: find the new one, once. */
            freeReplyObject(r);
            sconn_close(c);
            continue;
        }
        if (r != NULL) {
            c->err[0] = '\0';
            return r;
        }
        int timed_out = c->ctx->err == REDIS_ERR_IO && (saved == EAGAIN || saved == EWOULDBLOCK);
        if (timed_out)
            snprintf(c->err, sizeof(c->err), "redis %s: no answer within %d ms", c->where,
                     c->timeout_ms);
        else
            snprintf(c->err, sizeof(c->err), "redis %s: %s", c->where, c->ctx->errstr);
        sconn_close(c);
        if (timed_out || !retry || attempt > 0)
            return NULL;
    }
}

void sconn_close(sconn *c)
{
    if (c->ctx != NULL) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}
