/* job.c -- parsing log jobs, retry wrappers and dead entries. */
#include "worker/job.h"

#include <stdlib.h>
#include <string.h>

#define RETRY_KEY "__plcache_retry__"

int job_endpoint_ok(const char *e)
{
    size_t n = strlen(e);
    if (n == 0 || n > JOB_MAX_ENDPOINT || e[0] != '/' || e[1] == '/' || strstr(e, "..") ||
        strstr(e, "://"))
        return 0;
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '#' || *p == '\\')
            return 0;
    return 1;
}

static int add_step(wjob *j, const char *endpoint, json_t *body)
{
    if (j->nsteps == JOB_MAX_STEPS) {
        j->invalid = "too many steps";
        return 0;
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    char *ep = strdup(endpoint);
    if (text == NULL || ep == NULL) {
        free(text);
        free(ep);
        return -1;
    }
    job_step *s = &j->steps[j->nsteps++];
    s->endpoint = ep;
    s->body = text;
    s->body_len = strlen(text);
    return 0;
}

/* One envelope step {"endpoint", "body"}; sets j->invalid when it is not. */
static int read_step(wjob *j, json_t *o)
{
    json_t *ep = json_object_get(o, "endpoint");
    json_t *body = json_object_get(o, "body");
    if (!json_is_object(o) || !json_is_string(ep) || !json_is_object(body)) {
        j->invalid = "an envelope step needs a string endpoint and an object body";
        return 0;
    }
    if (!job_endpoint_ok(json_string_value(ep))) {
        j->invalid = "endpoint is not a path under the API base";
        return 0;
    }
    return add_step(j, json_string_value(ep), body);
}

/* The steps of an original job (bare object or envelope). */
static int read_job(wjob *j, json_t *o, const char *text, size_t len)
{
    json_t *ep = json_object_get(o, "endpoint");
    if (ep == NULL) {
        /* A bare object is sent as it was written. */
        job_step *s = &j->steps[j->nsteps];
        s->endpoint = strdup("/log-request");
        s->body = malloc(len + 1);
        if (s->endpoint == NULL || s->body == NULL) {
            free(s->endpoint);
            free(s->body);
            s->endpoint = s->body = NULL;
            return -1;
        }
        memcpy(s->body, text, len);
        s->body[len] = '\0';
        s->body_len = len;
        j->nsteps++;
        return 0;
    }
    if (read_step(j, o) != 0)
        return -1;
    json_t *then = json_object_get(o, "then");
    if (then == NULL || j->invalid)
        return 0;
    if (!json_is_array(then)) {
        j->invalid = "then must be a list of steps";
        return 0;
    }
    size_t i;
    json_t *step;
    json_array_foreach(then, i, step)
    {
        if (read_step(j, step) != 0)
            return -1;
        if (j->invalid)
            return 0;
    }
    return 0;
}

int job_parse(const char *text, size_t len, wjob *j)
{
    json_error_t je;
    memset(j, 0, sizeof(*j));
    j->raw = malloc(len + 1);
    if (j->raw == NULL)
        return -1;
    memcpy(j->raw, text, len);
    j->raw[len] = '\0';
    j->raw_len = len;
    json_t *o = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (o == NULL) {
        /* jansson keeps integers in 64 bits; a bare job with a bigger one is
         * still a job (it is sent as written), so look at its shape again
         * with numbers read as reals. */
        o = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        if (json_is_object(o) &&
            (json_object_get(o, "endpoint") || json_object_get(o, RETRY_KEY))) {
            j->orig = o;
            j->invalid = "an envelope with an integer beyond 64 bits";
            return 0;
        }
    }
    if (!json_is_object(o)) {
        json_decref(o);
        j->invalid = "not a JSON object";
        j->orig = json_stringn(text, len);
        if (j->orig == NULL) /* not UTF-8: keep what can be shown */
            j->orig = json_string("(not UTF-8)");
        return j->orig ? 0 : -1;
    }
    json_t *wrap = json_object_get(o, RETRY_KEY);
    if (json_is_object(wrap) && json_object_size(o) == 1) {
        json_t *steps = json_object_get(wrap, "steps");
        json_t *att = json_object_get(wrap, "attempts");
        j->orig = json_incref(json_object_get(wrap, "job"));
        j->attempts = json_is_integer(att) ? (int)json_integer_value(att) : 0;
        if (j->orig == NULL || !json_is_array(steps) || json_array_size(steps) == 0) {
            if (j->orig == NULL)
                j->orig = json_incref(o);
            j->invalid = "a retry wrapper without its job or steps";
            json_decref(o);
            return 0;
        }
        size_t i;
        json_t *step;
        int rc = 0;
        json_array_foreach(steps, i, step)
        {
            rc = read_step(j, step);
            if (rc != 0 || j->invalid)
                break;
        }
        json_decref(o);
        return rc;
    }
    j->orig = o;
    return read_job(j, o, text, len);
}

void job_free(wjob *j)
{
    for (size_t i = 0; i < j->nsteps; i++) {
        free(j->steps[i].endpoint);
        free(j->steps[i].body);
    }
    free(j->raw);
    json_decref(j->orig);
    memset(j, 0, sizeof(*j));
}

int job_set_request_id(wjob *j, const char *answer, size_t len)
{
    json_error_t je;
    json_t *a = json_loadb(answer, len, JSON_ALLOW_NUL, &je);
    json_t *id = json_is_object(a) ? json_object_get(a, "id") : NULL;
    if (id == NULL || json_is_null(id))
        id = json_is_object(a) ? json_object_get(a, "request_id") : NULL;
    if (id == NULL || json_is_null(id)) {
        json_decref(a);
        return 0;
    }
    int rc = 0;
    for (size_t i = j->next + 1; i < j->nsteps && rc == 0; i++) {
        json_t *body = json_loadb(j->steps[i].body, j->steps[i].body_len, JSON_ALLOW_NUL, &je);
        if (!json_is_object(body) || json_object_set(body, "request_id", id) != 0) {
            json_decref(body);
            continue;
        }
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL) {
            rc = -1;
            break;
        }
        free(j->steps[i].body);
        j->steps[i].body = text;
        j->steps[i].body_len = strlen(text);
    }
    json_decref(a);
    return rc;
}

char *job_retry_text(const wjob *j, int attempts, const char *nonce)
{
    json_t *steps = json_array();
    char *text = NULL;
    json_error_t je;
    if (steps == NULL)
        return NULL;
    for (size_t i = j->next; i < j->nsteps; i++) {
        json_t *body = json_loadb(j->steps[i].body, j->steps[i].body_len, JSON_ALLOW_NUL, &je);
        json_t *s =
            body ? json_pack("{s:s, s:o}", "endpoint", j->steps[i].endpoint, "body", body) : NULL;
        if (s == NULL || json_array_append_new(steps, s) != 0) {
            json_decref(steps);
            return NULL;
        }
    }
    json_t *outer = json_pack("{s:{s:O, s:i, s:o, s:s}}", RETRY_KEY, "job", j->orig, "attempts",
                              attempts, "steps", steps, "nonce", nonce);
    if (outer != NULL)
        text = json_dumps(outer, JSON_COMPACT);
    json_decref(outer);
    return text;
}

char *job_dead_text(const wjob *j, const char *error, long status, int attempts,
                    const char *failed_at)
{
    char cut[2049];
    size_t n = strlen(error);
    if (n > 2048)
        n = 2048;
    memcpy(cut, error, n);
    cut[n] = '\0';
    json_t *o = json_object();
    char *text = NULL;
    json_t *err = json_stringn(cut, n);
    if (err == NULL)
        err = json_string("(answer not UTF-8)");
    if (o && !json_object_set(o, "job", j->orig) && !json_object_set_new(o, "error", err) &&
        !json_object_set_new(o, "status", status > 0 ? json_integer(status) : json_null()) &&
        !json_object_set_new(o, "attempts", json_integer(attempts)) &&
        !json_object_set_new(o, "failed_at", json_string(failed_at)))
        text = json_dumps(o, JSON_COMPACT);
    else if (!o)
        json_decref(err);
    json_decref(o);
    return text;
}
