/* fault.h -- queued faults the fake API injects into its answers.
 *
 * A fault is {"method": "GET"|"POST"|...|null, "path_prefix": "/x"|null,
 * "count": n, "status": s (200-599), "body": "..."|<JSON>, "retry_after": "1",
 * "delay_ms": ms, "drop": bool}. Faults are kept in the order they were
 * added; a request takes one count of the first fault that matches its
 * method and raw path, and a fault whose count reaches 0 is removed. Pure
 * memory: nothing here blocks.
 */
#ifndef PLCACHE_FAKE_FAULT_H
#define PLCACHE_FAKE_FAULT_H

#include <jansson.h>
#include <stddef.h>

/* Most faults queued at once. */
#define FAULT_MAX_QUEUED 10000
/* Longest delay_ms accepted (10 minutes). */
#define FAULT_MAX_DELAY_MS 600000

typedef struct fault_queue fault_queue;

/* What a request that matched a fault must get. Owns its strings. */
typedef struct fault_action {
    int drop;          /* close the connection without an answer */
    int status;        /* answer this status instead of the normal answer; 0: normal */
    int has_delay;     /* delay_ms was given */
    long delay_ms;     /* hold the answer (or the drop) this long */
    char *body;        /* owned; the answer body when status != 0 */
    char *retry_after; /* owned; NULL: no Retry-After header */
} fault_action;

/* Returns an empty queue the caller owns (fault_free), or NULL. */
fault_queue *fault_new(void);
void fault_free(fault_queue *q);

/* Queues the fault object, or every fault of an array, in order. All or
 * nothing: returns 0, or -1 with the reason in err (nothing queued). */
int fault_add(fault_queue *q, const json_t *spec, char *err, size_t errlen);

/* Finds the first fault matching (method, path) and takes one count of it.
 * Returns 1 and fills *out (release with fault_action_clear), 0 when no fault
 * matches, -1 when memory runs out (the count is not taken). */
int fault_take(fault_queue *q, const char *method, const char *path, fault_action *out);

void fault_action_clear(fault_action *a);

/* How many faults are queued (each may have several counts left). */
size_t fault_count(const fault_queue *q);

/* Drops every queued fault. */
void fault_clear(fault_queue *q);

/* The queued faults with their remaining counts, as a JSON array (new
 * reference), or NULL when memory runs out. */
json_t *fault_list(const fault_queue *q);

#endif
