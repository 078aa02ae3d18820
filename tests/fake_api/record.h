/* record.h -- what the fake API was asked, for tests to read back.
 *
 * Every API and tracking request is recorded when it arrives (method, raw
 * path, raw query, X-API-KEY, Cache-Control, Content-Type, body, time) and
 * completed when it is answered (status; 0 for a dropped connection). The log
 * keeps the newest `max_records` requests and at most `max_body_bytes` of
 * bodies, dropping the oldest first. Counts by path and status are kept apart
 * and survive that trimming. Pure memory: nothing here blocks.
 */
#ifndef PLCACHE_FAKE_RECORD_H
#define PLCACHE_FAKE_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Status of a record whose answer has not been sent yet. */
#define RECORD_PENDING (-1)
/* Most distinct paths counted in the stats; the rest count under "(other)". */
#define RECORD_MAX_STAT_PATHS 10000

typedef struct record_log record_log;

/* One request as it arrived. Strings may be NULL (absent) and are copied. */
typedef struct record_in {
    const char *method;
    const char *path;
    const char *query;
    const char *api_key;
    const char *cache_control;
    const char *content_type;
    const char *user_agent;
    const char *accept_encoding;
    const char *body; /* body_len bytes, not NUL-terminated, any bytes */
    size_t body_len;
    int64_t at_ms;
    int64_t answer_id; /* the id a tracking answer carries, 0 when none */
} record_in;

/* Returns an empty log the caller owns (record_free), or NULL when memory
 * runs out. max_records >= 1. */
record_log *record_new(size_t max_records, size_t max_body_bytes);
void record_free(record_log *log);

/* Appends a pending record; *seq gets its number (increasing, never reused).
 * Returns 0, or -1 when memory runs out (nothing recorded). */
int record_add(record_log *log, const record_in *in, uint64_t *seq);

/* Sets the status of record `seq` if it is still held, and counts
 * (path, status) in the stats. Never fails. */
void record_finish(record_log *log, uint64_t seq, const char *path, int status);

/* The held records, oldest first, as a JSON array of {"seq", "method",
 * "path", "query", "api_key", "cache_control", "content_type", "user_agent",
 * "accept_encoding", "body", "status", "at_ms", "answer_id"}; only those whose path starts with
 * `path_prefix` and whose method is `method` (either NULL: any). A new
 * reference, or NULL when memory runs out. */
json_t *record_list(const record_log *log, const char *path_prefix, const char *method);

/* {"total", "pending", "held", "by_status": {"200": n}, "by_path":
 * {"/log-request": {"200": n}}}. A new reference, or NULL. */
json_t *record_stats(const record_log *log, size_t pending);

/* Drops every held record (sequence numbers keep increasing). */
void record_clear(record_log *log);
/* Zeroes the counts. */
void record_clear_stats(record_log *log);

#endif
