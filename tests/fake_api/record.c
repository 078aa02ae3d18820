/* record.c -- a bounded ring of received requests, and counts.
 *
 * The ring grows by doubling up to max_records; once full, adding drops the
 * oldest. Record i of the ring (from the oldest) has sequence number
 * first_seq + i, so finishing a record is an index computation, and a record
 * already dropped is simply no longer found. Body bytes are bounded too, so
 * 100000 large bodies cannot exhaust memory.
 */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

typedef struct entry {
    char *method; /* owned strings; NULL when absent */
    char *path;
    char *query;
    char *api_key;
    char *cache_control;
    char *content_type;
    char *user_agent;
    char *accept_encoding;
    char *body; /* owned, body_len bytes */
    size_t body_len;
    int status;
    int64_t at_ms;
    int64_t answer_id;
} entry;

struct record_log {
    entry *ring; /* owned, cap slots */
    size_t cap;
    size_t head;  /* slot of the oldest */
    size_t count; /* slots in use */
    size_t max_records;
    size_t body_bytes;
    size_t max_body_bytes;
    uint64_t first_seq; /* seq of ring[head] */
    json_t *by_path;    /* owned: path -> {status: count} */
    json_t *by_status;  /* owned: status -> count */
    int64_t total;
};

static void entry_clear(entry *e)
{
    free(e->method);
    free(e->path);
    free(e->query);
    free(e->api_key);
    free(e->cache_control);
    free(e->content_type);
    free(e->user_agent);
    free(e->accept_encoding);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

/* Copies n bytes of src into a new NUL-terminated buffer; *ok is cleared
 * when memory runs out. NULL src gives NULL. */
static char *dup_n(const char *src, size_t n, int *ok)
{
    if (src == NULL)
        return NULL;
    char *d = malloc(n + 1);
    if (d == NULL) {
        *ok = 0;
        return NULL;
    }
    memcpy(d, src, n);
    d[n] = '\0';
    return d;
}

static char *dup_s(const char *src, int *ok)
{
    return (src == NULL) ? NULL : dup_n(src, strlen(src), ok);
}

record_log *record_new(size_t max_records, size_t max_body_bytes)
{
    record_log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return NULL;
    log->max_records = (max_records == 0) ? 1 : max_records;
    log->max_body_bytes = max_body_bytes;
    log->first_seq = 1;
    log->by_path = json_object();
    log->by_status = json_object();
    if (log->by_path == NULL || log->by_status == NULL) {
        record_free(log);
        return NULL;
    }
    return log;
}

void record_clear(record_log *log)
{
    for (size_t i = 0; i < log->count; i++)
        entry_clear(&log->ring[(log->head + i) % log->cap]);
    log->first_seq += log->count;
    log->head = 0;
    log->count = 0;
    log->body_bytes = 0;
}

void record_free(record_log *log)
{
    if (log == NULL)
        return;
    if (log->ring != NULL)
        record_clear(log);
    free(log->ring);
    json_decref(log->by_path);
    json_decref(log->by_status);
    free(log);
}

static void drop_oldest(record_log *log)
{
    entry *e = &log->ring[log->head];
    log->body_bytes -= e->body_len;
    entry_clear(e);
    log->head = (log->head + 1) % log->cap;
    log->count--;
    log->first_seq++;
}

/* Makes room for one more entry: grows the ring or drops the oldest. */
static int make_room(record_log *log)
{
    if (log->count < log->cap)
        return 0;
    if (log->cap < log->max_records) {
        size_t cap = (log->cap == 0) ? 64 : log->cap * 2;
        if (cap > log->max_records)
            cap = log->max_records;
        entry *ring = calloc(cap, sizeof(*ring));
        if (ring == NULL)
            return -1;
        for (size_t i = 0; i < log->count; i++)
            ring[i] = log->ring[(log->head + i) % log->cap];
        free(log->ring);
        log->ring = ring;
        log->cap = cap;
        log->head = 0;
        return 0;
    }
    drop_oldest(log);
    return 0;
}

int record_add(record_log *log, const record_in *in, uint64_t *seq)
{
    entry e;
    int ok = 1;
    memset(&e, 0, sizeof(e));
    size_t body_len = (in->body != NULL) ? in->body_len : 0;
    e.method = dup_s(in->method, &ok);
    e.path = dup_s(in->path, &ok);
    e.query = dup_s(in->query, &ok);
    e.api_key = dup_s(in->api_key, &ok);
    e.cache_control = dup_s(in->cache_control, &ok);
    e.content_type = dup_s(in->content_type, &ok);
    e.user_agent = dup_s(in->user_agent, &ok);
    e.accept_encoding = dup_s(in->accept_encoding, &ok);
    e.body = dup_n((in->body != NULL) ? in->body : "", body_len, &ok);
    e.body_len = body_len;
    e.status = RECORD_PENDING;
    e.at_ms = in->at_ms;
    e.answer_id = in->answer_id;
    if (!ok || make_room(log) != 0) {
        entry_clear(&e);
        return -1;
    }
    while (log->count > 0 && log->body_bytes + body_len > log->max_body_bytes)
        drop_oldest(log);
    log->ring[(log->head + log->count) % log->cap] = e;
    log->count++;
    log->body_bytes += body_len;
    *seq = log->first_seq + log->count - 1;
    return 0;
}

/* Adds one to the integer at obj[key], creating it. */
static void bump(json_t *obj, const char *key)
{
    json_t *n = json_object_get(obj, key);
    if (n != NULL) {
        json_integer_set(n, json_integer_value(n) + 1);
        return;
    }
    json_object_set_new(obj, key, json_integer(1));
}

void record_finish(record_log *log, uint64_t seq, const char *path, int status)
{
    if (seq >= log->first_seq && seq - log->first_seq < log->count) {
        entry *e = &log->ring[(log->head + (seq - log->first_seq)) % log->cap];
        e->status = status;
    }

    char skey[16];
    snprintf(skey, sizeof(skey), "%d", status);
    log->total++;
    bump(log->by_status, skey);

    /* Paths become object keys: they must be valid UTF-8. */
    const char *pkey = "(other)";
    json_t *p = (path != NULL) ? text_json_string(path, strlen(path)) : NULL;
    if (p != NULL) {
        const char *candidate = json_string_value(p);
        if (json_object_get(log->by_path, candidate) != NULL ||
            json_object_size(log->by_path) < RECORD_MAX_STAT_PATHS)
            pkey = candidate;
    }
    json_t *per = json_object_get(log->by_path, pkey);
    if (per == NULL) {
        per = json_object();
        if (per == NULL || json_object_set_new(log->by_path, pkey, per) != 0)
            per = NULL;
    }
    if (per != NULL)
        bump(per, skey);
    json_decref(p);
}

/* A JSON string for a possibly-NULL C string (null when NULL). */
static json_t *str_or_null(const char *s)
{
    return (s == NULL) ? json_null() : text_json_string(s, strlen(s));
}

json_t *record_list(const record_log *log, const char *path_prefix, const char *method)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    size_t plen = (path_prefix != NULL) ? strlen(path_prefix) : 0;
    for (size_t i = 0; i < log->count; i++) {
        const entry *e = &log->ring[(log->head + i) % log->cap];
        if (path_prefix != NULL && (e->path == NULL || strncmp(e->path, path_prefix, plen) != 0))
            continue;
        if (method != NULL && (e->method == NULL || strcmp(e->method, method) != 0))
            continue;
        json_t *o = json_pack(
            "{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:o}", "seq",
            (json_int_t)(log->first_seq + i), "method", str_or_null(e->method), "path",
            str_or_null(e->path), "query", str_or_null(e->query), "api_key",
            str_or_null(e->api_key), "cache_control", str_or_null(e->cache_control), "content_type",
            str_or_null(e->content_type), "user_agent", str_or_null(e->user_agent),
            "accept_encoding", str_or_null(e->accept_encoding), "body",
            text_json_string(e->body, e->body_len), "status",
            (e->status == RECORD_PENDING) ? json_null() : json_integer(e->status), "at_ms",
            (json_int_t)e->at_ms, "answer_id",
            (e->answer_id > 0) ? json_integer((json_int_t)e->answer_id) : json_null());
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *record_stats(const record_log *log, size_t pending)
{
    return json_pack("{s:I,s:I,s:I,s:o,s:o}", "total", (json_int_t)log->total, "pending",
                     (json_int_t)pending, "held", (json_int_t)log->count, "by_status",
                     json_deep_copy(log->by_status), "by_path", json_deep_copy(log->by_path));
}

void record_clear_stats(record_log *log)
{
    json_object_clear(log->by_path);
    json_object_clear(log->by_status);
    log->total = 0;
}
