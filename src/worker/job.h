/* job.h -- log jobs (DESIGN.md section 6), without any I/O.
 *
 * A job is the JSON text an app server pushed onto pl:track:
 *   - a bare object: the body of POST /log-request;
 *   - an envelope {"endpoint": "/path", "body": {...}, "then": [{...}, ...]}:
 *     the body goes to that endpoint; each `then` step runs after the first
 *     call succeeded, with request_id set from its answer's id (or request_id).
 * A job waiting for a retry is wrapped so that it carries its attempts and
 * the steps still to do: {"__plcache_retry__": {"job": <original>, "attempts":
 * n, "steps": [...], "nonce": "..."}}. The key __plcache_retry__ is reserved.
 */
#ifndef PLCACHE_JOB_H
#define PLCACHE_JOB_H

#include <jansson.h>
#include <stddef.h>

#define JOB_MAX_STEPS 64

typedef struct job_step {
    char *endpoint; /* owned; one of the API paths of model/logreq.h */
    char *body;     /* owned; JSON text of the body */
    size_t body_len;
} job_step;

typedef struct wjob {
    char *raw; /* owned; the text as it sits in the processing list */
    size_t raw_len;
    json_t *orig; /* owned reference; the original job (a JSON string for invalid text) */
    int attempts; /* attempts already made (0 for a new job) */
    job_step steps[JOB_MAX_STEPS];
    size_t nsteps, next; /* steps[next] is the one to send */
    const char *invalid; /* why the job is invalid (static text), or NULL */
} wjob;

/* Reads a job taken from the queue (text copied). Never fails for the text's
 * sake: a job that is not a valid job comes back with `invalid` set. Returns
 * 0, or -1 when memory ran out. Release with job_free. */
int job_parse(const char *text, size_t len, wjob *j);

void job_free(wjob *j);

/* Sets request_id (from a first answer's "id" or "request_id", which may be
 * a number or a string) in the bodies of every step after the current one.
 * Returns 0 (also when the answer has no id: nothing is set), -1 on no memory. */
int job_set_request_id(wjob *j, const char *answer, size_t len);

/* The wrapper text for pl:track:retry, holding the steps from `next` on, and
 * attempts. Caller frees. NULL when memory ran out. */
char *job_retry_text(const wjob *j, int attempts, const char *nonce);

/* The dead entry of DESIGN.md section 6. status <= 0 writes null; error is
 * cut to 2048 bytes. Caller frees. */
char *job_dead_text(const wjob *j, const char *error, long status, int attempts,
                    const char *failed_at);

/* 1 when text is, for certain, one JSON object jansson reads and a bare job
 * (no top-level "endpoint" or retry key); 0 when jansson must decide. No
 * allocation; never reads past len. */
int job_scan_bare(const char *text, size_t len);

#endif
