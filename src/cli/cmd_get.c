/* cmd_get.c -- plcache get NAME [--label L | --version N] [--var K=V]...
 * [--vars-json JSON]: one prompt's JSON, rendered with the variables given.
 *
 * Through libplcache: one Redis round trip on a hit (plcache_get); on a miss
 * with an API key, a read-through with the library's herd guard and stale-set
 * check, so a crowd of `plcache get` runs behaves like a crowd of app servers.
 * With variables, plcache_get_rendered renders them as PromptLayer's SDKs do,
 * or asks PromptLayer to when the template is not renderable here.
 */
#include <jansson.h>
#include <plcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"

/* Adds one --var K=V (a string value) to vars. Returns 0, or -1 after saying
 * why. */
static int add_var(const cli_ctx *c, json_t *vars, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv) {
        cli_error(c, "--var takes NAME=VALUE (see plcache help get)");
        return -1;
    }
    json_t *val = json_stringn(eq + 1, strlen(eq + 1));
    char *key = strndup(kv, (size_t)(eq - kv));
    int rc = val == NULL || key == NULL || json_object_set_new(vars, key, val) != 0 ? -1 : 0;
    if (rc != 0)
        cli_error(c, "--var %.60s: not UTF-8 text, or out of memory", kv);
    free(key);
    return rc;
}

/* Merges --vars-json's object into vars (its keys win over earlier ones). */
static int add_vars_json(const cli_ctx *c, json_t *vars, const char *text)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    int rc = json_is_object(o) ? json_object_update(vars, o) : -1;
    if (!json_is_object(o))
        cli_error(c, "--vars-json: not a JSON object (line %d, column %d)", je.line, je.column);
    json_decref(o);
    return rc;
}

int cmd_get(const cli_ctx *c, int argc, char **argv)
{
    const char *name = NULL, *label = NULL;
    long long version = -1;
    int status = CLI_USAGE, rest = 0;
    plcache *pc = NULL;
    char *json = NULL, *vars_text = NULL;
    json_t *vars = NULL; /* set once a --var or --vars-json is given */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
        } else if (!rest && (strcmp(a, "--var") == 0 || strcmp(a, "--vars-json") == 0)) {
            if (i + 1 >= argc) {
                cli_error(c, "%s needs a value", a);
                goto done;
            }
            if (vars == NULL)
                vars = json_object();
            if (vars == NULL)
                goto done;
            int rc = strcmp(a, "--var") == 0 ? add_var(c, vars, argv[++i])
                                             : add_vars_json(c, vars, argv[++i]);
            if (rc != 0)
                goto done;
        } else if (!rest && (strcmp(a, "--label") == 0 || strcmp(a, "--version") == 0)) {
            if (i + 1 >= argc) {
                cli_error(c, "%s needs a value", a);
                goto done;
            }
            const char *v = argv[++i];
            if (label != NULL || version >= 0) {
                cli_error(c, "give --label or --version, not both");
                goto done;
            }
            if (strcmp(a, "--label") == 0) {
                if (v[0] == '\0') {
                    cli_error(c, "--label is empty");
                    goto done;
                }
                label = v;
            } else if (cli_parse_ll(v, 1, 1LL << 62, &version) != 0) {
                cli_error(c, "--version: expected a version number >= 1");
                goto done;
            }
        } else if (!rest && a[0] == '-' && a[1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help get)", a);
            goto done;
        } else if (name == NULL) {
            name = a;
        } else {
            cli_error(c, "one NAME at a time (see plcache help get)");
            goto done;
        }
    }
    if (name == NULL || name[0] == '\0') {
        cli_error(c, "usage: plcache get NAME [--label L | --version N] [--var K=V]... "
                     "[--vars-json JSON]");
        goto done;
    }
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = c->set->redis_url;
    o.prefix = c->set->prefix;
    o.api_key = c->set->api_key;
    o.api_base_url = c->set->base_url;
    o.redis_timeout_ms = (int)c->set->redis_timeout * 1000;
    o.api_timeout_ms = (int)c->set->fetch_timeout * 1000;
    o.skip_llm_kwargs = !c->set->llm_kwargs;
    char err[512] = "";
    plcache_status st = plcache_open(&pc, &o, err, sizeof(err));
    if (st != PLCACHE_OK) {
        cli_error(c, "%s", err[0] ? err : plcache_status_str(st));
        status = st == PLCACHE_E_ARG ? CLI_USAGE : CLI_FAIL;
        goto done;
    }
    plcache_select sel = label          ? PLCACHE_SEL_LABEL
                         : version >= 0 ? PLCACHE_SEL_VERSION
                                        : PLCACHE_SEL_LATEST;
    size_t len = 0;
    if (vars != NULL) {
        vars_text = json_dumps(vars, JSON_COMPACT);
        st = vars_text == NULL ? PLCACHE_E_NOMEM
                               : plcache_get_rendered(pc, name, sel, label, version, vars_text,
                                                      strlen(vars_text), &json, &len);
    } else {
        st = plcache_get(pc, name, sel, label, version, &json, &len);
    }
    if (st == PLCACHE_NOT_FOUND) {
        if (label)
            cli_error(c, "%s label %s: not found%s", name, label,
                      c->set->api_key ? ""
                                      : " in the cache (no PROMPTLAYER_API_KEY to read through)");
        else if (version >= 0)
            cli_error(c, "%s version %lld: not found%s", name, version,
                      c->set->api_key ? ""
                                      : " in the cache (no PROMPTLAYER_API_KEY to read through)");
        else
            cli_error(c, "%s: not found%s", name,
                      c->set->api_key ? ""
                                      : " in the cache (no PROMPTLAYER_API_KEY to read through)");
        status = CLI_FAIL;
        goto done;
    }
    if (st != PLCACHE_OK) {
        const char *why = plcache_errstr(pc);
        cli_error(c, "%s", why[0] ? why : plcache_status_str(st));
        status = st == PLCACHE_E_ARG ? CLI_USAGE : CLI_FAIL;
        goto done;
    }
    fwrite(json, 1, len, stdout);
    fputc('\n', stdout);
    status = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
done:
    plcache_free(json);
    plcache_close(pc);
    free(vars_text);
    json_decref(vars);
    return status;
}
