/* loglim.h -- one log line per interval for a kind of event anyone can cause.
 *
 * A refused delivery costs an attacker one request; a log line for each would
 * let anyone fill the disk and drown what matters. The first such event of an
 * interval is logged in full; the rest are counted (their metrics count them
 * all), and when the interval ends the count is logged in one summary line.
 * Pure: the caller passes the time, logs, and arms a timer for the summary.
 */
#ifndef PLCACHE_LOGLIM_H
#define PLCACHE_LOGLIM_H

#include <stdint.h>

typedef struct loglim {
    int64_t interval_ms;
    int64_t start_ms;         /* of the current interval; INT64_MIN before the first event */
    unsigned long suppressed; /* events of this interval not logged */
} loglim;

/* An empty limiter whose intervals last interval_ms (> 0). */
void loglim_init(loglim *l, int64_t interval_ms);

/* An event at now_ms: 1 when it starts an interval (log it), 0 when it is
 * counted instead. */
int loglim_take(loglim *l, int64_t now_ms);

/* When the summary of the current interval is due: start_ms + interval_ms. */
int64_t loglim_due_ms(const loglim *l);

/* At or after loglim_due_ms: the events counted and not logged (0 when none),
 * and the limiter is empty again. */
unsigned long loglim_flush(loglim *l);

#endif
