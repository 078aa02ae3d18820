/* cmd_track.c -- plcache track [FILE|-]: push one log job onto the queue.
 *
 * The job (DESIGN.md section 6) is checked to be one JSON object here, with a
 * clear message, then pushed through libplcache (plcache_push: one LPUSH).
 * It is pushed as written, less surrounding whitespace.
 */
#include <jansson.h>
#include <plcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"

/* 1 when text is one JSON object (integers beyond 64 bits allowed, as the
 * worker allows them in a bare job). */
static int track_is_object(const char *text, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (o == NULL)
        o = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    int ok = json_is_object(o);
    json_decref(o);
    return ok;
}

int cmd_track(const cli_ctx *c, int argc, char **argv)
{
    const char *path = NULL;
    int status = CLI_USAGE;
    char *text = NULL;
    plcache *pc = NULL;
    char err[512] = "";
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help track)", argv[i]);
            goto done;
        }
        if (path != NULL) {
            cli_error(c, "one job at a time (see plcache help track)");
            goto done;
        }
        path = argv[i];
    }
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
    if (!track_is_object(job, len)) {
        cli_error(c, "the job is not a JSON object (a log job is one object: the body of "
                     "POST /log-request, or {\"endpoint\", \"body\", \"then\"})");
        goto done;
    }
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = c->set->redis_url;
    o.prefix = c->set->prefix;
    o.redis_timeout_ms = (int)c->set->redis_timeout * 1000;
    plcache_status st = plcache_open(&pc, &o, err, sizeof(err));
    if (st != PLCACHE_OK) {
        cli_error(c, "%s", err[0] ? err : plcache_status_str(st));
        status = CLI_FAIL;
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
    free(text);
    return status;
}
