/* cmd_ls.c -- plcache ls [PATTERN] [--json]: the cached templates, one a line.
 *
 * SCAN <prefix>prompt:<PATTERN> (the prefix escaped, the pattern a glob as
 * given) for hashes, then HGETALL of each, in name order. Not a snapshot:
 * each template is read at its own moment.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "cli/tmpl.h"

/* The JSON form of one template. NULL out of memory. */
static json_t *ls_json(const tmpl *t)
{
    json_t *labels = json_object(), *versions = json_array(), *ages = json_object();
    json_t *latest = json_null();
    for (size_t i = 0; i < t->n; i++) {
        const tmpl_entry *e = &t->e[i];
        json_object_set_new(ages, e->field,
                            e->age_ms >= 0 ? json_real((double)e->age_ms / 1000.0) : json_null());
        json_t *v = e->version >= 0 ? json_integer(e->version) : json_null();
        if (e->kind == TMPL_LATEST) {
            json_decref(latest);
            latest = v;
        } else if (e->kind == TMPL_LABEL) {
            json_object_set_new(labels, e->sel, v);
        } else {
            json_decref(v);
            json_array_append_new(versions,
                                  e->number >= 0 ? json_integer(e->number) : json_string(e->sel));
        }
    }
    const tmpl_entry *newest = tmpl_newest(t);
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", t->name, "id",
                     t->id ? json_string(t->id) : json_null(), "latest", latest, "labels", labels,
                     "versions", versions, "ages", ages, "created_at",
                     newest ? json_string(newest->created) : json_null(), "age_s",
                     newest ? json_real((double)newest->age_ms / 1000.0) : json_null());
}

/* One line of the table: name, latest, labels, versions, age. */
static void ls_row(const tmpl *t, int width)
{
    char age[32] = "-";
    const tmpl_entry *newest = tmpl_newest(t);
    if (newest != NULL)
        cli_duration(newest->age_ms, age, sizeof(age));
    tmpl_put(stdout, t->name);
    int pad = width - tmpl_width(t->name) + 2;
    printf("%*s", pad > 1 ? pad : 1, "");
    int latest = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].kind == TMPL_LATEST && t->e[i].version >= 0)
            latest = printf("%-7lld", t->e[i].version);
    if (!latest)
        printf("%-7s", "-");
    char labels[512] = "", versions[256] = "";
    size_t ll = 0, vl = 0;
    for (size_t i = 0; i < t->n; i++) {
        const tmpl_entry *e = &t->e[i];
        if (e->kind == TMPL_LABEL && ll < sizeof(labels))
            ll += (size_t)snprintf(labels + ll, sizeof(labels) - ll, "%s%s=%lld", ll ? " " : "",
                                   e->sel, e->version);
        else if (e->kind == TMPL_VERSION && vl < sizeof(versions))
            vl += (size_t)snprintf(versions + vl, sizeof(versions) - vl, "%s%s", vl ? " " : "",
                                   e->sel);
    }
    printf("%-11s ", age);
    tmpl_put(stdout, labels[0] ? labels : "-");
    printf("  [");
    tmpl_put(stdout, versions);
    printf("]\n");
}

int cmd_ls(const cli_ctx *c, int argc, char **argv)
{
    int json = cli_json_mode(&argc, argv);
    const char *pattern = NULL;
    int status = CLI_FAIL;
    char **names = NULL;
    long n = 0;
    redisContext *rc = NULL;
    json_t *arr = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") != 0 && argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help ls)", argv[i]);
            return CLI_USAGE;
        }
        if (strcmp(argv[i], "--") == 0)
            continue;
        if (pattern != NULL) {
            cli_error(c, "one PATTERN at most; quote it so that the shell leaves its * alone "
                         "(plcache ls 'Hel*')");
            return CLI_USAGE;
        }
        pattern = argv[i];
    }
    rc = cli_redis(c);
    if (rc == NULL)
        goto done;
    n = tmpl_names(c, rc, pattern, &names);
    if (n < 0)
        goto done;
    arr = json ? json_array() : NULL;
    int width = 8;
    for (long i = 0; i < n; i++)
        if (tmpl_width(names[i]) > width)
            width = tmpl_width(names[i]) > 40 ? 40 : tmpl_width(names[i]);
    if (!json && n > 0)
        printf("%-*s  %-7s%-11s %s\n", width, "TEMPLATE", "LATEST", "AGE", "LABELS  [VERSIONS]");
    for (long i = 0; i < n; i++) {
        tmpl t;
        int got = tmpl_read(c, rc, names[i], &t);
        if (got < 0)
            goto done;
        if (got == 0) /* dropped since the SCAN */
            continue;
        if (json)
            json_array_append_new(arr, ls_json(&t));
        else
            ls_row(&t, width);
        tmpl_free(&t);
    }
    if (json) {
        char *text = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (text == NULL) {
            cli_error(c, "out of memory");
            goto done;
        }
        printf("%s\n", text);
        free(text);
    }
    if (n == 0 && pattern != NULL) {
        cli_error(c,
                  "no cached template matches '%.100s' (plcache ls lists them all; "
                  "plcache sync fills the cache)",
                  pattern);
        goto done;
    }
    if (n == 0 && !json)
        fprintf(stderr, "plcache ls: no template is cached yet (plcache sync fills the cache "
                        "from the API; plcache get NAME reads one through)\n");
    status = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
done:
    for (long i = 0; i < n; i++)
        free(names[i]);
    free(names);
    json_decref(arr);
    if (rc)
        redisFree(rc);
    return status;
}
