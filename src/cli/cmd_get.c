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

/* What plcache get was asked. */
typedef struct get_args {
    const char *name, *label;
    long long version; /* -1 when not given */
    json_t *vars;      /* set once a --var or --vars-json is given; owned */
} get_args;

/* --var K=V or --vars-json JSON with its value v. */
static int add_vars(const cli_ctx *c, get_args *g, const char *opt, const char *v)
{
    if (g->vars == NULL)
        g->vars = json_object();
    if (g->vars == NULL)
        return -1;
    return strcmp(opt, "--var") == 0 ? add_var(c, g->vars, v) : add_vars_json(c, g->vars, v);
}

/* --label L or --version N with its value v; one of them at most. */
static int set_selector(const cli_ctx *c, get_args *g, const char *opt, const char *v)
{
    if (g->label != NULL || g->version >= 0) {
        cli_error(c, "give --label or --version, not both");
        return -1;
    }
    if (strcmp(opt, "--label") == 0) {
        if (v[0] == '\0') {
            cli_error(c, "--label is empty");
            return -1;
        }
        g->label = v;
    } else if (cli_parse_ll(v, 1, 1LL << 62, &g->version) != 0) {
        cli_error(c, "--version: expected a version number >= 1");
        return -1;
    }
    return 0;
}

/* Reads the command line into g. Returns 0, or -1 after saying why (or out
 * of memory, unsaid); g->vars is the caller's to free either way. */
static int parse_get_args(const cli_ctx *c, int argc, char **argv, get_args *g)
{
    int rest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int vars = strcmp(a, "--var") == 0 || strcmp(a, "--vars-json") == 0;
        int sel = strcmp(a, "--label") == 0 || strcmp(a, "--version") == 0;
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
        } else if (!rest && (vars || sel)) {
            if (i + 1 >= argc) {
                cli_error(c, "%s needs a value", a);
                return -1;
            }
            i++;
            if ((vars ? add_vars(c, g, a, argv[i]) : set_selector(c, g, a, argv[i])) != 0)
                return -1;
        } else if (!rest && a[0] == '-' && a[1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help get)", a);
            return -1;
        } else if (g->name == NULL) {
            g->name = a;
        } else {
            cli_error(c, "one NAME at a time (see plcache help get)");
            return -1;
        }
    }
    if (g->name == NULL || g->name[0] == '\0') {
        cli_error(c, "usage: plcache get NAME [--label L | --version N] [--var K=V]... "
                     "[--vars-json JSON]");
        return -1;
    }
    return 0;
}

/* The exit status of a libplcache failure: a bad argument is a usage error. */
static int failure_status(plcache_status st)
{
    return st == PLCACHE_E_ARG ? CLI_USAGE : CLI_FAIL;
}

/* A libplcache client with the settings of plcache. */
static plcache_status open_client(const cli_ctx *c, plcache **pc)
{
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
    plcache_status st = plcache_open(pc, &o, err, sizeof(err));
    if (st != PLCACHE_OK)
        cli_error(c, "%s%s%s", err[0] ? err : plcache_status_str(st),
                  st == PLCACHE_E_REDIS ? ": " : "",
                  st == PLCACHE_E_REDIS ? cli_redis_hint(err) : "");
    return st;
}

/* The prompt's JSON into *json (the caller's, plcache_free), rendered when
 * variables were given. */
static plcache_status get_prompt(plcache *pc, const get_args *g, char **json, size_t *len)
{
    plcache_select sel = g->label          ? PLCACHE_SEL_LABEL
                         : g->version >= 0 ? PLCACHE_SEL_VERSION
                                           : PLCACHE_SEL_LATEST;
    if (g->vars == NULL)
        return plcache_get(pc, g->name, sel, g->label, g->version, json, len);
    char *vars_text = json_dumps(g->vars, JSON_COMPACT);
    plcache_status st = vars_text == NULL
                            ? PLCACHE_E_NOMEM
                            : plcache_get_rendered(pc, g->name, sel, g->label, g->version,
                                                   vars_text, strlen(vars_text), json, len);
    free(vars_text);
    return st;
}

/* Says which prompt was not found, and why the API was not asked when it
 * was not. */
static void say_not_found(const cli_ctx *c, const get_args *g)
{
    const char *where = c->set->api_key
                            ? " at PromptLayer either (plcache ls lists what is cached)"
                            : " in the cache (plcache ls lists what is; set PROMPTLAYER_API_KEY to "
                              "read through to the API)";
    if (g->label)
        cli_error(c, "%s label %s: not found%s", g->name, g->label, where);
    else if (g->version >= 0)
        cli_error(c, "%s version %lld: not found%s", g->name, g->version, where);
    else
        cli_error(c, "%s: not found%s", g->name, where);
}

int cmd_get(const cli_ctx *c, int argc, char **argv)
{
    get_args g = {.version = -1};
    int status = CLI_USAGE;
    plcache *pc = NULL;
    char *json = NULL;
    size_t len = 0;
    if (parse_get_args(c, argc, argv, &g) != 0)
        goto done;
    plcache_status st = open_client(c, &pc);
    if (st != PLCACHE_OK) {
        status = failure_status(st);
        goto done;
    }
    st = get_prompt(pc, &g, &json, &len);
    if (st == PLCACHE_NOT_FOUND) {
        say_not_found(c, &g);
        status = CLI_FAIL;
        goto done;
    }
    if (st != PLCACHE_OK) {
        const char *why = plcache_errstr(pc);
        cli_error(c, "%s", why[0] ? why : plcache_status_str(st));
        status = failure_status(st);
        goto done;
    }
    fwrite(json, 1, len, stdout);
    fputc('\n', stdout);
    status = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
done:
    plcache_free(json);
    plcache_close(pc);
    json_decref(g.vars);
    return status;
}
