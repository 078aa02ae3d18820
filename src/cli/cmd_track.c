/* cmd_track.c -- plcache track [FILE|-]: push one log job onto the queue.
 *
 * The job (DESIGN.md section 6) is checked against what PromptLayer accepts
 * (model/logreq.h) before anything else, and refused with one line naming the
 * field (exit 2, nothing pushed); then it is pushed through libplcache
 * (plcache_push: one LPUSH), as written, less surrounding whitespace.
 */
#include <jansson.h>
#include <plcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "model/logreq.h"

/* Checks the job as libplcache will (model/logreq.h), before any connection,
 * so an invalid job is refused with its reason even when Redis is away.
 * Returns 0, or -1 after printing the reason. */
static int track_check(const cli_ctx *c, const char *text, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (o == NULL)
        o = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &je);
    if (o == NULL) {
        cli_error(c,
                  "the job is not a JSON object: it does not parse (line %d, column %d); a log "
                  "job is one object: a Log Request, or {\"endpoint\", \"body\", \"then\"} "
                  "(see plcache help track)",
                  je.line, je.column);
        return -1;
    }
    char why[384];
    int rc = logreq_check_job(o, why, sizeof(why));
    json_decref(o);
    if (rc != 0)
        cli_error(c, "invalid job: %s (see plcache help track)", why);
    return rc;
}

/* The one job path of the arguments into *path (NULL: standard input).
 * Returns 0, or -1 after saying why on stderr. */
static int track_args(const cli_ctx *c, int argc, char **argv, const char **path)
{
    *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help track)", argv[i]);
            return -1;
        }
        if (*path != NULL) {
            cli_error(c, "one job at a time (see plcache help track)");
            return -1;
        }
        *path = argv[i];
    }
    return 0;
}

/* Pushes the checked job (len bytes) onto the track queue through
 * libplcache and prints the queue's new length. Returns a CLI_ status. */
static int track_push(const cli_ctx *c, const char *job, size_t len)
{
    plcache *pc = NULL;
    char err[512] = "";
    int status = CLI_FAIL;
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = c->set->redis_url;
    o.prefix = c->set->prefix;
    o.redis_timeout_ms = (int)c->set->redis_timeout * 1000;
    plcache_status st = plcache_open(&pc, &o, err, sizeof(err));
    if (st != PLCACHE_OK) {
        cli_error(c, "%s%s%s", err[0] ? err : plcache_status_str(st),
                  st == PLCACHE_E_REDIS ? ": " : "",
                  st == PLCACHE_E_REDIS ? cli_redis_hint(err) : "");
        goto done;
    }
    long long n = 0;
    st = plcache_push(pc, job, len, &n);
    if (st != PLCACHE_OK) {
        const char *why = plcache_errstr(pc);
        cli_error(c, "%s", why[0] ? why : plcache_status_str(st));
        status = st == PLCACHE_E_ARG ? CLI_USAGE : CLI_FAIL;
        goto done;
    }
    printf("%lld\n", n);
    status = CLI_OK;
done:
    plcache_close(pc);
    return status;
}

int cmd_track(const cli_ctx *c, int argc, char **argv)
{
    const char *path = NULL;
    int status = CLI_USAGE;
    char *text = NULL;
    char err[512] = "";
    if (track_args(c, argc, argv, &path) != 0)
        goto done;
    size_t len = 0;
    text = cli_read_input(path, &len, err, sizeof(err));
    if (text == NULL) {
        cli_error(c, "%s", err);
        status = CLI_FAIL;
        goto done;
    }
    const char *job = text;
    while (len > 0 && strchr(" \t\r\n", job[0]) != NULL) {
        job++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", job[len - 1]) != NULL)
        len--;
    if (track_check(c, job, len) != 0)
        goto done;
    status = track_push(c, job, len);
done:
    free(text);
    return status;
}
