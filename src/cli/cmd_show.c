/* cmd_show.c -- plcache show NAME [--json]: one cached template, field by field.
 *
 * One HGETALL of <prefix>prompt:NAME (tmpl.c). For each content field, the
 * version it holds, its created_at and age, the `plcache get` that prints it,
 * and a one-line summary of what that prints (the JSON form carries the whole
 * text). Reads the cache only: unlike get, never the API.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "cli/tmpl.h"

/* A one-line summary of a version's JSON: its template's type and size, the
 * model, the commit message. */
static void summary(const tmpl_entry *e, char *out, size_t outlen)
{
    if (e->value == NULL) {
        snprintf(out, outlen, "not a JSON object (%zu bytes)", strlen(e->text));
        return;
    }
    const json_t *pt = json_object_get(e->value, "prompt_template");
    if (!json_is_object(pt)) {
        snprintf(out, outlen, "no prompt_template (%zu bytes)", strlen(e->text));
        return;
    }
    const char *type = json_string_value(json_object_get(pt, "type"));
    size_t parts = json_array_size(json_object_get(pt, "messages")) +
                   json_array_size(json_object_get(pt, "content"));
    const json_t *model = json_object_get(json_object_get(e->value, "metadata"), "model");
    const char *provider = json_string_value(json_object_get(model, "provider"));
    const char *mname = json_string_value(json_object_get(model, "name"));
    const char *commit = json_string_value(json_object_get(e->value, "commit_message"));
    size_t n = (size_t)snprintf(out, outlen, "%s", type ? type : "?");
    if (type && n < outlen)
        n += (size_t)snprintf(out + n, outlen - n, ", %zu %s", parts,
                              strcmp(type, "chat") == 0 ? (parts == 1 ? "message" : "messages")
                                                        : (parts == 1 ? "block" : "blocks"));
    if (mname && n < outlen)
        n += (size_t)snprintf(out + n, outlen - n, ", %s%s%s", provider ? provider : "",
                              provider ? "/" : "", mname);
    if (json_is_null(json_object_get(e->value, "llm_kwargs")) && n < outlen)
        n += (size_t)snprintf(out + n, outlen - n, ", no llm_kwargs");
    if (commit && n < outlen)
        snprintf(out + n, outlen - n, ", \"%.40s%s\"", commit, strlen(commit) > 40 ? "..." : "");
}

static void print_get(const tmpl *t, const tmpl_entry *e)
{
    printf("plcache get ");
    tmpl_put_shell(stdout, t->name);
    if (e->kind == TMPL_LABEL) {
        printf(" --label ");
        tmpl_put_shell(stdout, e->sel);
    } else if (e->kind == TMPL_VERSION) {
        printf(" --version ");
        tmpl_put_shell(stdout, e->sel);
    }
}

static void show_text(const tmpl *t)
{
    char age[32], sum[300];
    tmpl_put(stdout, t->name);
    printf("   id %s, gen %s\n\n", t->id ? t->id : "-", t->gen ? t->gen : "-");
    size_t width = 6;
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->e[i].field) > width)
            width = strlen(t->e[i].field) > 30 ? 30 : strlen(t->e[i].field);
    printf("%-*s  %-7s %-11s %s\n", (int)width, "FIELD", "VERSION", "AGE", "CREATED");
    for (size_t i = 0; i < t->n; i++) {
        const tmpl_entry *e = &t->e[i];
        char ver[24] = "-";
        if (e->version >= 0)
            snprintf(ver, sizeof(ver), "%lld", e->version);
        snprintf(age, sizeof(age), "-");
        if (e->age_ms >= 0)
            cli_duration(e->age_ms, age, sizeof(age));
        tmpl_put(stdout, e->field);
        int pad = (int)width - (int)strlen(e->field) + 2;
        printf("%*s%-7s %-11s ", pad > 1 ? pad : 1, "", ver, age);
        tmpl_put(stdout, e->created ? e->created : "-");
        printf("\n");
    }
    printf("\nWhat plcache get prints for each (the whole JSON: plcache show --json, or the "
           "command):\n");
    for (size_t i = 0; i < t->n; i++) {
        summary(&t->e[i], sum, sizeof(sum));
        printf("  ");
        print_get(t, &t->e[i]);
        printf("\n      ");
        tmpl_put(stdout, sum);
        printf("\n");
    }
    printf("\nAges are those of each version's created_at at PromptLayer, not of the cache "
           "write.\n");
}

/* The JSON form. NULL out of memory or on text that is not UTF-8. */
static json_t *show_json(const tmpl *t)
{
    json_t *entries = json_array();
    for (size_t i = 0; i < t->n; i++) {
        const tmpl_entry *e = &t->e[i];
        static const char *const kinds[] = {"latest", "label", "version"};
        json_array_append_new(
            entries,
            json_pack("{s:s, s:{s:s, s:s?}, s:o, s:o, s:o, s:s}", "field", e->field, "selector",
                      "kind", kinds[e->kind], "value", e->kind == TMPL_LATEST ? NULL : e->sel,
                      "version", e->version >= 0 ? json_integer(e->version) : json_null(),
                      "created_at", e->created ? json_string(e->created) : json_null(), "age_s",
                      e->age_ms >= 0 ? json_real((double)e->age_ms / 1000.0) : json_null(), "value",
                      e->text));
    }
    return json_pack("{s:s, s:o, s:o, s:o}", "name", t->name, "id",
                     t->id ? json_string(t->id) : json_null(), "gen",
                     t->gen ? json_string(t->gen) : json_null(), "entries", entries);
}

int cmd_show(const cli_ctx *c, int argc, char **argv)
{
    int json = cli_json_mode(&argc, argv);
    const char *name = NULL;
    int rest = 0;
    for (int i = 1; i < argc; i++) {
        if (!rest && strcmp(argv[i], "--") == 0) {
            rest = 1;
        } else if (!rest && argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help show)", argv[i]);
            return CLI_USAGE;
        } else if (name != NULL) {
            cli_error(c, "one NAME at a time; quote a name with spaces (plcache show 'My prompt')");
            return CLI_USAGE;
        } else {
            name = argv[i];
        }
    }
    if (name == NULL || name[0] == '\0') {
        cli_error(c, "usage: plcache show NAME [--json] (plcache ls lists the names)");
        return CLI_USAGE;
    }
    redisContext *rc = cli_redis(c);
    if (rc == NULL)
        return CLI_FAIL;
    tmpl t;
    int status = CLI_FAIL;
    int got = tmpl_read(c, rc, name, &t);
    redisFree(rc);
    if (got < 0)
        return CLI_FAIL;
    if (got == 0) {
        cli_error(c,
                  "%.200s is not cached (plcache ls lists what is; plcache get %.200s reads it "
                  "through from the API, plcache sync %.200s caches all of it)",
                  name, name, name);
        return CLI_FAIL;
    }
    if (json) {
        json_t *o = show_json(&t);
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(o);
        if (text == NULL)
            cli_error(c, "out of memory, or a field that is not UTF-8 text");
        else
            printf("%s\n", text);
        status = text != NULL && fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
        free(text);
    } else {
        show_text(&t);
        status = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    tmpl_free(&t);
    return status;
}
