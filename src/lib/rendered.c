/* rendered.c -- prompts with their input variables rendered, as the SDKs do.
 *
 * plcache_render is core/render over JSON text: the SDKs' local rendering
 * (f-string exactly as Python's str.format, the jinja2 subset of core/jinja)
 * of a cached entry. What it cannot render as the SDKs would -- an entry the
 * SDKs themselves send to PromptLayer (placeholder messages, variable tools),
 * a construct outside the subset -- is PLCACHE_NOT_RENDERABLE, and
 * plcache_get_rendered then asks PromptLayer's POST /prompt-templates/<name>
 * with input_variables, so its answer is always the right one.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/jsonw.h"
#include "core/render.h"
#include "lib/form.h"
#include "lib/lib.h"

/* The parsed variables: NULL (none) or an object. -1 when vars is given but is
 * not JSON jansson reads, or not an object. */
static int read_vars(const char *vars, size_t vars_len, json_t **out)
{
    *out = NULL;
    if (vars == NULL)
        return 0;
    json_t *v = json_loadb(vars, vars_len, 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* Renders vars (NULL or an object) into a copy of the entry text; *why says
 * what went wrong when the status is not PLCACHE_OK. */
static plcache_status render_text(const char *entry, size_t entry_len, const json_t *vars,
                                  char **out, size_t *out_len, const char **why)
{
    *out = NULL;
    json_t *e = json_loadb(entry, entry_len, 0, NULL);
    if (!json_is_object(e)) {
        json_decref(e);
        *why = "the entry is not a JSON object";
        return PLCACHE_E_ARG;
    }
    render_status rs = render_entry(e, vars, 0);
    plcache_status st = PLCACHE_OK;
    if (rs == RENDER_NOT_LOCAL) {
        *why = "PromptLayer renders this template itself (a placeholder message or a variable "
               "tool)";
        st = PLCACHE_NOT_RENDERABLE;
    } else if (rs == RENDER_UNSUPPORTED) {
        *why = "the template uses something this library does not render as PromptLayer does";
        st = PLCACHE_NOT_RENDERABLE;
    } else if (rs != RENDER_OK) {
        *why = "out of memory, or a rendered text over its limit";
        st = PLCACHE_E_NOMEM;
    } else {
        size_t n = 0;
        *out = jsonw_dump(e, RENDER_JSON_MAX, &n);
        if (*out == NULL) {
            *why = "out of memory";
            st = PLCACHE_E_NOMEM;
        } else if (out_len != NULL) {
            *out_len = n;
        }
    }
    json_decref(e);
    return st;
}

plcache_status plcache_render(const char *entry, size_t entry_len, const char *vars,
                              size_t vars_len, char **out, size_t *out_len)
{
    if (out == NULL || entry == NULL)
        return PLCACHE_E_ARG;
    *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    json_t *v = NULL;
    if (read_vars(vars, vars_len, &v) != 0)
        return PLCACHE_E_ARG;
    const char *why = "";
    plcache_status st = render_text(entry, entry_len, v, out, out_len, &why);
    json_decref(v);
    return st;
}

plcache_status plcache_get_rendered(plcache *c, const char *name, plcache_select sel,
                                    const char *label, long long version, const char *vars,
                                    size_t vars_len, char **json, size_t *len)
{
    if (c == NULL)
        return PLCACHE_E_ARG;
    if (json == NULL)
        return lib_fail(c, PLCACHE_E_ARG, "json is NULL");
    *json = NULL;
    if (len != NULL)
        *len = 0;
    json_t *v = NULL;
    if (read_vars(vars, vars_len, &v) != 0)
        return lib_fail(c, PLCACHE_E_ARG, "the variables are not a JSON object");
    char *entry = NULL;
    size_t elen = 0;
    plcache_status st = plcache_get(c, name, sel, label, version, &entry, &elen);
    const char *why = "";
    if (st == PLCACHE_OK) {
        st = render_text(entry, elen, v, json, len, &why);
        if (st != PLCACHE_OK && st != PLCACHE_NOT_RENDERABLE)
            st = lib_fail(c, st == PLCACHE_E_ARG ? PLCACHE_E_PROTOCOL : st, "%s", why);
    }
    plcache_free(entry);
    if (st == PLCACHE_NOT_RENDERABLE && c->api == NULL)
        st = lib_fail(c, st, "%s, and there is no API key to ask it", why);
    else if (st == PLCACHE_NOT_RENDERABLE) {
        /* PromptLayer renders it, exactly. */
        api_answer ans;
        char err[256] = "";
        c->st.api_fetches++;
        st = api_render(c->api, name, sel, label, version, vars, vars_len, &ans, err, sizeof(err));
        if (st == PLCACHE_OK) {
            *json = ans.json;
            if (len != NULL)
                *len = ans.len;
            c->errstr[0] = '\0';
        } else {
            lib_fail(c, st, "%s", err);
        }
    }
    json_decref(v);
    return st;
}
