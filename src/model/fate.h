/* fate.h -- what the worker does with a job after PromptLayer's answer.
 *
 * The table of DESIGN.md section 6 as one pure function: the answer's retry
 * class (model/retry.h), the job's step and attempts decide; the worker
 * carries the decision out (core I/O, worker/send.c). Table-tested in
 * tests/unit/test_fate.c.
 *
 *   answer                          more steps   fate
 *   2xx                             yes          FATE_NEXT_STEP
 *   2xx                             no           FATE_DONE
 *   401, 403                        -            FATE_AUTH_PAUSE (attempts not counted)
 *   408, 429, 5xx, transient none   -            FATE_RETRY, or FATE_DEAD_ATTEMPTS
 *                                                once attempts reach max_attempts
 *   any other status, or none       -            FATE_DEAD_REJECTED
 *   that repeats
 */
#ifndef PLCACHE_FATE_H
#define PLCACHE_FATE_H

typedef enum fate_kind {
    FATE_DONE,          /* the job is delivered: remove it */
    FATE_NEXT_STEP,     /* send the job's next step */
    FATE_AUTH_PAUSE,    /* the key is refused: keep the job, take none for a pause */
    FATE_RETRY,         /* into the retry set, due after a backoff */
    FATE_DEAD_ATTEMPTS, /* would pass, but the attempts ran out: dead */
    FATE_DEAD_REJECTED, /* will not pass: dead, with PromptLayer's reason */
} fate_kind;

typedef struct fate_in {
    long status;      /* HTTP status; 0 when no answer came */
    int transient;    /* for status 0: the transport failure may pass */
    int more_steps;   /* the job has a step after this one */
    int attempts;     /* tries of this job so far, this one included (>= 1) */
    int max_attempts; /* the bound of PLCACHE_MAX_ATTEMPTS */
} fate_in;

typedef struct fate {
    fate_kind kind;
    int slow_down; /* FATE_RETRY on a 429: take no new job until the delay passed */
} fate;

fate fate_of(const fate_in *in);

/* The name of a fate for logs and tests. */
const char *fate_name(fate_kind k);

#endif
