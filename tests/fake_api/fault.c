/* fault.c -- the queue of injected faults: parse, match, consume. */
#include "fault.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METHOD 16
#define MAX_PREFIX 4096
#define MAX_RETRY_AFTER 256
#define MAX_COUNT 1000000000L
#define DEFAULT_BODY "{\"message\":\"fault injected\"}"

typedef struct fault {
    char *method;      /* owned, upper case; NULL: any method */
    char *path_prefix; /* owned; NULL: any path */
    long count;        /* remaining, >= 1 while queued */
    int status;        /* 0: normal answer */
    int has_delay;
    long delay_ms;
    int drop;
    char *body;        /* owned when status != 0 */
    char *retry_after; /* owned or NULL */
} fault;

struct fault_queue {
    fault *items; /* owned, in order */
    size_t len;
    size_t cap;
};

static void fault_clear_one(fault *f)
{
    free(f->method);
    free(f->path_prefix);
    free(f->body);
    free(f->retry_after);
    memset(f, 0, sizeof(*f));
}

fault_queue *fault_new(void)
{
    return calloc(1, sizeof(fault_queue));
}

void fault_clear(fault_queue *q)
{
    for (size_t i = 0; i < q->len; i++)
        fault_clear_one(&q->items[i]);
    q->len = 0;
}

size_t fault_count(const fault_queue *q)
{
    return q->len;
}

void fault_free(fault_queue *q)
{
    if (q == NULL)
        return;
    fault_clear(q);
    free(q->items);
    free(q);
}

static char *dup_str(const char *src)
{
    size_t n = strlen(src);
    char *d = malloc(n + 1);
    if (d != NULL)
        memcpy(d, src, n + 1);
    return d;
}

/* Reads an optional string member: absent or null leaves *out NULL. Returns 0,
 * or -1 when it is not a string, is longer than max or holds a NUL byte. */
static int opt_string(const json_t *o, const char *key, size_t max, const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    *out = json_string_value(v);
    return 0;
}

/* Reads an optional integer member in [min, max]: returns 1 when present, 0
 * when absent, -1 when malformed. */
static int opt_int(const json_t *o, const char *key, long min, long max, long *out)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return -1;
    *out = (long)json_integer_value(v);
    return 1;
}

/* Parses one fault object into *f (cleared by the caller on error). */
static int parse_one(const json_t *o, fault *f, char *err, size_t errlen)
{
    static const char *const keys[] = {"method",      "path_prefix", "count", "status", "body",
                                       "retry_after", "delay_ms",    "drop",  NULL};
    memset(f, 0, sizeof(*f));
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a fault must be an object");
        return -1;
    }
    json_t *obj = (json_t *)o; /* jansson's iterators take non-const */
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const char *k = json_object_iter_key(it);
        int known = 0;
        for (size_t i = 0; keys[i] != NULL && !known; i++)
            known = (strcmp(k, keys[i]) == 0);
        if (!known) {
            snprintf(err, errlen, "unknown fault key \"%.64s\"", k);
            return -1;
        }
    }

    const char *method = NULL;
    const char *prefix = NULL;
    if (opt_string(o, "method", MAX_METHOD, &method) != 0 || (method != NULL && *method == '\0')) {
        snprintf(err, errlen, "method must be a method name or null");
        return -1;
    }
    if (opt_string(o, "path_prefix", MAX_PREFIX, &prefix) != 0) {
        snprintf(err, errlen, "path_prefix must be a string or null");
        return -1;
    }
    f->count = 1;
    if (opt_int(o, "count", 1, MAX_COUNT, &f->count) < 0) {
        snprintf(err, errlen, "count must be an integer from 1 to %ld", MAX_COUNT);
        return -1;
    }
    long status = 0;
    int has_status = opt_int(o, "status", 200, 599, &status);
    if (has_status < 0) {
        snprintf(err, errlen, "status must be an integer from 200 to 599");
        return -1;
    }
    f->status = (int)status;
    f->has_delay = opt_int(o, "delay_ms", 0, FAULT_MAX_DELAY_MS, &f->delay_ms);
    if (f->has_delay < 0) {
        snprintf(err, errlen, "delay_ms must be an integer from 0 to %d", FAULT_MAX_DELAY_MS);
        return -1;
    }
    const json_t *drop = json_object_get(o, "drop");
    if (drop != NULL && !json_is_boolean(drop) && !json_is_null(drop)) {
        snprintf(err, errlen, "drop must be a boolean");
        return -1;
    }
    f->drop = json_is_true(drop);
    if (f->drop && has_status) {
        snprintf(err, errlen, "a fault cannot both drop and answer a status");
        return -1;
    }
    if (!f->drop && !has_status && !f->has_delay) {
        snprintf(err, errlen, "a fault needs status, delay_ms or drop");
        return -1;
    }

    const json_t *body = json_object_get(o, "body");
    const json_t *retry = json_object_get(o, "retry_after");
    int has_body = (body != NULL && !json_is_null(body));
    int has_retry = (retry != NULL && !json_is_null(retry));
    if (!has_status && (has_body || has_retry)) {
        snprintf(err, errlen, "body and retry_after need a status");
        return -1;
    }
    if (has_retry) {
        char num[32];
        const char *text = NULL;
        if (json_is_integer(retry) && json_integer_value(retry) >= 0) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(retry));
            text = num;
        } else if (opt_string(o, "retry_after", MAX_RETRY_AFTER, &text) != 0 || text == NULL ||
                   strpbrk(text, "\r\n") != NULL) {
            snprintf(err, errlen, "retry_after must be a header value or a number");
            return -1;
        }
        f->retry_after = dup_str(text);
        if (f->retry_after == NULL)
            goto oom;
    }
    if (has_status) {
        if (!has_body) {
            f->body = dup_str(DEFAULT_BODY);
        } else if (json_is_string(body)) {
            /* A NUL inside would cut the body short: refuse it. */
            if (strlen(json_string_value(body)) != json_string_length(body)) {
                snprintf(err, errlen, "body must not hold a NUL character");
                return -1;
            }
            f->body = dup_str(json_string_value(body));
        } else {
            f->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        }
        if (f->body == NULL)
            goto oom;
    }
    if (method != NULL) {
        f->method = dup_str(method);
        if (f->method == NULL)
            goto oom;
        for (char *p = f->method; *p != '\0'; p++)
            *p = (char)toupper((unsigned char)*p);
    }
    if (prefix != NULL) {
        f->path_prefix = dup_str(prefix);
        if (f->path_prefix == NULL)
            goto oom;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int fault_add(fault_queue *q, const json_t *spec, char *err, size_t errlen)
{
    size_t n = json_is_array(spec) ? json_array_size(spec) : 1;
    if (!json_is_array(spec) && !json_is_object(spec)) {
        snprintf(err, errlen, "faults must be an object or an array of objects");
        return -1;
    }
    if (n > FAULT_MAX_QUEUED - q->len) {
        snprintf(err, errlen, "at most %d faults can be queued", FAULT_MAX_QUEUED);
        return -1;
    }
    if (q->len + n > q->cap) {
        size_t cap = (q->cap == 0) ? 16 : q->cap;
        while (cap < q->len + n)
            cap *= 2;
        fault *grown = realloc(q->items, cap * sizeof(*grown));
        if (grown == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        q->items = grown;
        q->cap = cap;
    }
    /* Parse straight into the free slots; only commit the length at the end. */
    for (size_t i = 0; i < n; i++) {
        const json_t *one = json_is_array(spec) ? json_array_get(spec, i) : spec;
        if (parse_one(one, &q->items[q->len + i], err, errlen) != 0) {
            for (size_t j = 0; j <= i; j++)
                fault_clear_one(&q->items[q->len + j]);
            return -1;
        }
    }
    q->len += n;
    return 0;
}

static int matches(const fault *f, const char *method, const char *path)
{
    if (f->method != NULL && strcmp(f->method, method) != 0)
        return 0;
    if (f->path_prefix != NULL && strncmp(path, f->path_prefix, strlen(f->path_prefix)) != 0)
        return 0;
    return 1;
}

void fault_action_clear(fault_action *a)
{
    free(a->body);
    free(a->retry_after);
    memset(a, 0, sizeof(*a));
}

int fault_take(fault_queue *q, const char *method, const char *path, fault_action *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < q->len; i++) {
        fault *f = &q->items[i];
        if (!matches(f, method, path))
            continue;
        out->drop = f->drop;
        out->status = f->status;
        out->has_delay = f->has_delay;
        out->delay_ms = f->delay_ms;
        if (f->body != NULL) {
            out->body = dup_str(f->body);
            if (out->body == NULL)
                goto oom;
        }
        if (f->retry_after != NULL) {
            out->retry_after = dup_str(f->retry_after);
            if (out->retry_after == NULL)
                goto oom;
        }
        f->count--;
        if (f->count == 0) {
            fault_clear_one(f);
            memmove(&q->items[i], &q->items[i + 1], (q->len - i - 1) * sizeof(*q->items));
            q->len--;
        }
        return 1;
    }
    return 0;
oom:
    fault_action_clear(out);
    return -1;
}

static json_t *str_or_null(const char *s)
{
    return (s == NULL) ? json_null() : json_string(s);
}

json_t *fault_list(const fault_queue *q)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < q->len; i++) {
        const fault *f = &q->items[i];
        json_t *o = json_pack(
            "{s:o,s:o,s:I,s:o,s:o,s:o,s:o,s:b}", "method", str_or_null(f->method), "path_prefix",
            str_or_null(f->path_prefix), "count", (json_int_t)f->count, "status",
            (f->status != 0) ? json_integer(f->status) : json_null(), "body", str_or_null(f->body),
            "retry_after", str_or_null(f->retry_after), "delay_ms",
            f->has_delay ? json_integer((json_int_t)f->delay_ms) : json_null(), "drop", f->drop);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
