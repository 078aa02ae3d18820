/* plan.c -- event payloads to cache plans; API URLs. */
#include "model/plan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"

const char *plan_kind_name(plan_kind k)
{
    static const char *const names[] = {"none",    "version", "label",  "label_delete",
                                        "refresh", "rename",  "delete", "invalid"};
    return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static char *dup_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    /* Names with NUL bytes cannot be Redis key parts we print or URL-encode. */
    if (strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return strdup(json_string_value(v));
}

static long long get_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return json_integer_value(v);
    /* Tolerate numbers sent as text. */
    if (json_is_string(v)) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(json_string_value(v), &end, 10);
        if (errno == 0 && end != json_string_value(v) && *end == '\0' && n >= 0)
            return n;
    }
    return -1;
}

void plan_free(plan *p)
{
    free(p->name);
    free(p->old_name);
    free(p->label);
    memset(p, 0, sizeof(*p));
    p->kind = PLAN_INVALID;
}

/* The kind of a prompt_template_* event from its type and details d (out
 * holds what was read of d; a rename's old name is read here). */
static plan_kind kind_of(const char *type, json_t *d, plan *out)
{
    plan_kind k = PLAN_INVALID;
    if (strcmp(type, "prompt_template_created") == 0 ||
        strcmp(type, "prompt_template_version_created") == 0) {
        k = out->version >= 0 ? PLAN_VERSION : PLAN_INVALID;
    } else if (strcmp(type, "prompt_template_label_created") == 0 ||
               strcmp(type, "prompt_template_label_moved") == 0) {
        k = out->label ? PLAN_LABEL : PLAN_INVALID;
    } else if (strcmp(type, "prompt_template_label_change_approved") == 0) {
        json_t *ct = json_object_get(d, "change_type");
        int deletion = json_is_string(ct) && strcmp(json_string_value(ct), "deletion") == 0;
        k = out->label ? (deletion ? PLAN_LABEL_DELETE : PLAN_LABEL) : PLAN_INVALID;
    } else if (strcmp(type, "prompt_template_label_deleted") == 0) {
        k = out->label ? PLAN_LABEL_DELETE : PLAN_INVALID;
    } else if (strcmp(type, "prompt_template_updated") == 0) {
        k = out->version >= 0 ? PLAN_REFRESH_VERSION : PLAN_INVALID;
    } else if (strcmp(type, "prompt_template_name_changed") == 0) {
        out->old_name = dup_str(d, "old_prompt_template_name");
        k = out->old_name ? PLAN_RENAME : PLAN_INVALID;
        if (out->old_name && out->name && strcmp(out->old_name, out->name) == 0)
            k = PLAN_NONE;
    } else if (strcmp(type, "prompt_template_deleted") == 0) {
        k = PLAN_DELETE;
    } else {
        k = PLAN_NONE; /* a prompt_template_* type this version does not know */
    }
    return k;
}

int plan_from_event(const char *type, const char *payload, size_t len, plan *out, char *err,
                    size_t errlen)
{
    json_error_t je;
    err[0] = '\0';
    memset(out, 0, sizeof(*out));
    out->kind = PLAN_INVALID;
    out->id = -1;
    out->version = -1;
    out->at_us = -1;
    /* Most of a busy webhook's events change nothing in the cache: decide
     * those from the type alone, without parsing the payload. */
    if (strncmp(type, "prompt_template_", 16) != 0 ||
        strcmp(type, "prompt_template_label_change_requested") == 0 ||
        strcmp(type, "prompt_template_label_change_denied") == 0) {
        out->kind = PLAN_NONE;
        return 0;
    }
    json_t *root = json_loadb(payload, len, JSON_ALLOW_NUL, &je);
    if (root == NULL || !json_is_object(root)) {
        snprintf(err, errlen, "payload is not a JSON object jansson can read");
        json_decref(root);
        return -1;
    }
    json_t *d = json_object_get(root, "details");
    if (!json_is_object(d))
        d = NULL;

    if (d == NULL) {
        snprintf(err, errlen, "no details object");
        json_decref(root);
        return 0;
    }
    json_t *ts = json_object_get(root, "timestamp");
    int64_t us;
    if (json_is_string(ts) &&
        time_parse_iso8601_us(json_string_value(ts), json_string_length(ts), &us) == 0)
        out->at_us = us;
    out->name = dup_str(d, "prompt_template_name");
    out->id = get_int(d, "prompt_template_id");
    out->version = get_int(d, "prompt_template_version_number");
    out->label = dup_str(d, "prompt_template_label");

    plan_kind k = kind_of(type, d, out);
    if (k != PLAN_NONE && out->name == NULL) {
        snprintf(err, errlen, "no prompt_template_name");
        k = PLAN_INVALID;
    }
    out->kind = k;
    if (k == PLAN_INVALID && err[0] == '\0')
        snprintf(err, errlen, "details lack what %s needs", type);
    json_decref(root);
    return 0;
}

plan_steps plan_steps_of(const plan *p)
{
    plan_steps s = {.pre = PLAN_PRE_NONE};
    switch (p->kind) {
    case PLAN_VERSION:
    case PLAN_REFRESH_VERSION:
        s.fetch = 1;
        s.target = (field){.kind = FIELD_VERSION, .version = p->version};
        /* latest is what the API says is newest when the event is applied:
         * an event applied late must not set latest to its own version. */
        s.fetch_latest = p->kind == PLAN_VERSION;
        break;
    case PLAN_LABEL:
        s.fetch = 1;
        s.target = (field){.kind = FIELD_LABEL, .label = p->label};
        if (p->version >= 0 && p->at_us >= 0) {
            s.pre = PLAN_PRE_COPY;
            s.pre_field = s.target;
            s.pre_from = (field){.kind = FIELD_VERSION, .version = p->version};
        }
        break;
    case PLAN_LABEL_DELETE:
        /* The label may have been created again since: the API says. */
        s.fetch = 1;
        s.target = (field){.kind = FIELD_LABEL, .label = p->label};
        if (p->at_us >= 0) {
            s.pre = PLAN_PRE_DEL;
            s.pre_field = s.target;
        }
        break;
    case PLAN_DELETE:
        /* The name may hold a template created again since: the API says. */
        s.fetch = 1;
        s.target = (field){.kind = FIELD_LATEST};
        if (p->id >= 0)
            s.pre = PLAN_PRE_DROP;
        break;
    case PLAN_RENAME:
        s.rebuild_old = 1;
        break;
    case PLAN_NONE:
    case PLAN_INVALID:
        break;
    }
    return s;
}

plan_write plan_write_of(plan_kind kind, field_kind target, long status)
{
    if (status == 404)
        return target == FIELD_LATEST ? PLAN_W_DROP : PLAN_W_DEL;
    if (status != 200)
        return PLAN_W_FAIL;
    if (kind == PLAN_REFRESH_VERSION)
        return PLAN_W_HOLDING;
    if (target == FIELD_LATEST)
        return PLAN_W_LATEST;
    return PLAN_W_SET;
}
