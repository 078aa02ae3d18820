/* job.c -- parsing log jobs, retry wrappers and dead entries.
 *
 * Most jobs are bare objects, sent as written. For them a scan of the text
 * (job_scan_bare: no allocation, no tree) is enough: it checks the text is
 * one JSON object jansson would read, and that no top-level key makes it an
 * envelope or a retry wrapper. Anything the scan is not sure of (an envelope,
 * an escape in a top-level key, a number near the edges of a double, deep
 * nesting, invalid text) goes through jansson as before, so the scan decides
 * nothing jansson would decide otherwise. A bare job's parsed form is only
 * needed if it is retried or dies, and is made then.
 */
#include "worker/job.h"

#include <stdlib.h>
#include <string.h>

#include "model/logreq.h"

#define RETRY_KEY "__plcache_retry__"

/* ---- the scan of a bare job -------------------------------------------- */

#define SCAN_MAX_DEPTH 512  /* jansson's own limit is 2048 */
#define SCAN_MAX_DIGITS 300 /* longer numbers go to jansson (overflow to inf) */

typedef struct scan {
    const unsigned char *p, *end;
    int depth;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(scan *s, unsigned *v)
{
    if (s->end - s->p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s->p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        *v = *v << 4 | d;
    }
    s->p += 4;
    return 0;
}

/* One UTF-8 sequence of 2 to 4 bytes starting at s->p (a byte >= 0x80), as
 * strict as jansson: no overlong form, no surrogate, nothing past U+10FFFF. */
static int utf8_seq(scan *s)
{
    unsigned c = *s->p, v, min;
    int n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, v = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (s->end - s->p <= n)
        return -1;
    for (int i = 1; i <= n; i++) {
        if ((s->p[i] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (s->p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    s->p += n + 1;
    return 0;
}

/* A string at s->p (the opening quote). *escaped: it held an escape; *nul:
 * it held \u0000. */
static int scan_string(scan *s, int *escaped, int *nul)
{
    s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            if (utf8_seq(s) != 0)
                return -1;
            continue;
        }
        s->p++;
        if (c != '\\')
            continue;
        *escaped = 1;
        if (s->p >= s->end)
            return -1;
        c = *s->p++;
        if (strchr("\"\\/bfnrt", (int)c) != NULL && c != '\0')
            continue;
        unsigned v, w;
        if (c != 'u' || hex4(s, &v) != 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return -1;
        if (v == 0)
            *nul = 1;
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                return -1;
            s->p += 2;
            if (hex4(s, &w) != 0 || w < 0xDC00 || w > 0xDFFF)
                return -1;
        }
    }
    return -1;
}

static int scan_digits(scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start && s->p - start <= SCAN_MAX_DIGITS ? 0 : -1;
}

static int scan_number(scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (scan_digits(s) != 0)
        return -1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (scan_digits(s) != 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        const unsigned char *start = s->p;
        if (scan_digits(s) != 0 || s->p - start > 2)
            return -1; /* an exponent past 99 may overflow a double: jansson decides */
    }
    return 0;
}

static int scan_value(scan *s);

/* An object or array at s->p. At depth 1 (the job itself), *special is set
 * when a key is "endpoint" or the retry key, or is written with an escape or
 * a NUL (those are for jansson to read). */
static int scan_container(scan *s, int *special)
{
    int object = *s->p == '{';
    unsigned char close = object ? '}' : ']';
    if (++s->depth > SCAN_MAX_DEPTH)
        return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        if (object) {
            if (s->p >= s->end || *s->p != '"')
                return -1;
            const unsigned char *k = s->p + 1;
            int escaped = 0, nul = 0;
            if (scan_string(s, &escaped, &nul) != 0)
                return -1;
            size_t klen = (size_t)(s->p - 1 - k);
            if (nul)
                return -1; /* jansson refuses a NUL in a key */
            if (s->depth == 1 && special != NULL &&
                (escaped || (klen == 8 && memcmp(k, "endpoint", 8) == 0) ||
                 (klen == sizeof(RETRY_KEY) - 1 && memcmp(k, RETRY_KEY, klen) == 0)))
                *special = 1;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -1;
            s->p++;
            skip_ws(s);
        }
        if (scan_value(s) != 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
        skip_ws(s);
    }
}

static int scan_literal(scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int scan_value(scan *s)
{
    if (s->p >= s->end)
        return -1;
    int escaped = 0, nul = 0;
    switch (*s->p) {
    case '{':
    case '[':
        return scan_container(s, NULL);
    case '"':
        return scan_string(s, &escaped, &nul);
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return -1;
    }
}

int job_scan_bare(const char *text, size_t len)
{
    scan s = {(const unsigned char *)text, (const unsigned char *)text + len, 0};
    int special = 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{' || scan_container(&s, &special) != 0 || special)
        return 0;
    skip_ws(&s);
    return s.p == s.end;
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

/* A bare object's one step: its text, sent as it was written to
 * /log-request. */
static int add_bare_step(wjob *j, const char *text, size_t len)
{
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

/* One envelope step {"endpoint", "body"}; sets j->invalid when it is not. */
static int read_step(wjob *j, json_t *o)
{
    json_t *ep = json_object_get(o, "endpoint");
    json_t *body = json_object_get(o, "body");
    if (!json_is_object(o) || !json_is_string(ep) || !json_is_object(body)) {
        j->invalid = "an envelope step needs a string endpoint and an object body";
        return 0;
    }
    /* The known path itself is sent, never the job's text (model/logreq.h). */
    const char *known = logreq_endpoint(json_string_value(ep));
    if (known == NULL) {
        j->invalid = "endpoint is not one of the API paths the worker knows";
        return 0;
    }
    return add_step(j, known, body);
}

/* The steps of an original job (bare object or envelope). */
static int read_job(wjob *j, json_t *o, const char *text, size_t len)
{
    json_t *ep = json_object_get(o, "endpoint");
    if (ep == NULL)
        return add_bare_step(j, text, len);
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

/* Text that is not a JSON object: invalid, kept as a JSON string to show. */
static int read_not_object(wjob *j, const char *text, size_t len)
{
    j->invalid = "not a JSON object";
    j->orig = json_stringn(text, len);
    if (j->orig == NULL) /* not UTF-8: keep what can be shown */
        j->orig = json_string("(not UTF-8)");
    return j->orig ? 0 : -1;
}

/* A retry wrapper (wrap, the only key of o): the original job, the attempts
 * made and the steps still to do. Takes o's reference. */
static int read_retry_wrapper(wjob *j, json_t *o, json_t *wrap)
{
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
    if (job_scan_bare(text, len))
        return add_bare_step(j, text, len); /* its parsed form waits (orig_of) */
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
        return read_not_object(j, text, len);
    }
    json_t *wrap = json_object_get(o, RETRY_KEY);
    if (json_is_object(wrap) && json_object_size(o) == 1)
        return read_retry_wrapper(j, o, wrap);
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

/* A new reference to the original job: the parsed form kept by job_parse,
 * or, for a bare job read by the scan, its text parsed now (integers beyond
 * 64 bits read as reals, as job_parse would have); NULL when memory ran out. */
static json_t *orig_of(const wjob *j)
{
    json_error_t je;
    if (j->orig != NULL)
        return json_incref(j->orig);
    json_t *o = json_loadb(j->raw, j->raw_len, JSON_ALLOW_NUL, &je);
    if (o == NULL)
        o = json_loadb(j->raw, j->raw_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    return o;
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
    json_t *orig = orig_of(j);
    json_t *outer = orig ? json_pack("{s:{s:o, s:i, s:o, s:s}}", RETRY_KEY, "job", orig, "attempts",
                                     attempts, "steps", steps, "nonce", nonce)
                         : NULL;
    if (orig == NULL)
        json_decref(steps);
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
    json_t *orig = orig_of(j);
    if (o == NULL || orig == NULL || err == NULL) {
        json_decref(orig);
        json_decref(err);
        json_decref(o);
        return NULL;
    }
    /* json_object_set_new takes the value's reference even when it fails. */
    int rc = json_object_set_new(o, "job", orig);
    rc |= json_object_set_new(o, "error", err);
    rc |= json_object_set_new(o, "status", status > 0 ? json_integer(status) : json_null());
    rc |= json_object_set_new(o, "attempts", json_integer(attempts));
    rc |= json_object_set_new(o, "failed_at", json_string(failed_at));
    if (rc == 0)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
