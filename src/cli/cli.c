/* cli.c -- errors, bounded input and blocking Redis for the plcache command. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "model/keys.h"
#include "core/sconn.h"

void cli_error(const cli_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c && c->cmd)
        fprintf(stderr, "plcache %s: %s\n", c->cmd, msg);
    else
        fprintf(stderr, "plcache: %s\n", msg);
}

char *cli_read_input(const char *path, size_t *len, char *err, size_t errlen)
{
    int from_stdin = path == NULL || strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    buf b;
    char *out = NULL;
    buf_init(&b, CLI_MAX_INPUT);
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char chunk[65536];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0 && buf_append(&b, chunk, n) != 0) {
            snprintf(err, errlen, "%s is larger than %u bytes", from_stdin ? "stdin" : path,
                     CLI_MAX_INPUT);
            goto done;
        }
        if (n < sizeof(chunk)) {
            if (ferror(f)) {
                snprintf(err, errlen, "cannot read %s: %s", from_stdin ? "stdin" : path,
                         strerror(errno));
                goto done;
            }
            break;
        }
    }
    out = buf_steal(&b, len);
    if (out == NULL)
        snprintf(err, errlen, "out of memory");
done:
    buf_free(&b);
    if (!from_stdin)
        fclose(f);
    return out;
}

redisContext *cli_redis(const cli_ctx *c)
{
    char why[600];
    redisContext *rc = sconn_connect(c->url, (int)(c->set->redis_timeout * 1000), why, sizeof(why));
    if (rc == NULL)
        cli_error(c, "cannot reach Redis: %s: %s", why, cli_redis_hint(why));
    return rc;
}

redisReply *cli_command(const cli_ctx *c, redisContext *rc, int argc, const char **argv,
                        const size_t *lens)
{
    size_t ls[64];
    if (lens == NULL) {
        if (argc > 64)
            return NULL;
        for (int i = 0; i < argc; i++)
            ls[i] = strlen(argv[i]);
        lens = ls;
    }
    redisReply *r = redisCommandArgv(rc, argc, argv, lens);
    if (r == NULL) {
        char where[300];
        rurl_describe(c->url, where, sizeof(where));
        int slow = strstr(rc->errstr, "temporarily unavailable") != NULL;
        cli_error(c, "Redis at %s: %s: %s", where,
                  slow ? "no answer within PLCACHE_REDIS_TIMEOUT"
                       : (rc->errstr[0] ? rc->errstr : "connection lost"),
                  slow ? "is it overloaded? try again, or raise PLCACHE_REDIS_TIMEOUT"
                       : "try again; if it stays down, see its log");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        cli_error(c, "Redis refused %s: %s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int cli_key(const cli_ctx *c, char *out, size_t outlen, const char *name, const char *suffix)
{
    if (keys_make(out, outlen, c->set->prefix, name, suffix) < 0) {
        cli_error(c, "key name too long");
        return -1;
    }
    return 0;
}

int cli_parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

const char *cli_redis_hint(const char *why)
{
    if (strstr(why, "AUTH") || strstr(why, "WRONGPASS") || strstr(why, "NOPERM"))
        return "check the user and password in PLCACHE_REDIS_URL";
    return "start it, or point PLCACHE_REDIS_URL (or --redis-url) at the right one (scripts/run "
           "prints the line that does)";
}

void cli_duration(long long ms, char *out, size_t outlen)
{
    long long s = ms / 1000, m = s / 60, h = m / 60, d = h / 24;
    if (ms < 0)
        snprintf(out, outlen, "-");
    else if (ms < 10000)
        snprintf(out, outlen, "%lld.%lld s", ms / 1000, (ms % 1000) / 100);
    else if (s < 120)
        snprintf(out, outlen, "%lld s", s);
    else if (m < 120)
        snprintf(out, outlen, "%lld min", m);
    else if (h < 48)
        snprintf(out, outlen, m % 60 ? "%lld h %lld min" : "%lld h", h, m % 60);
    else
        snprintf(out, outlen, "%lld days", d);
}

int cli_json_mode(int *argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(char *));
            (*argc)--;
            i--;
        }
    }
    return json || !isatty(STDOUT_FILENO);
}
