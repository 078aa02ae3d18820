/* rwait.h -- acknowledge a write only once N replicas hold it (Redis WAIT).
 *
 * WAIT counts the replicas that hold every write the *same connection* made
 * before it, so it must follow the writes on their rconn. While the replicas
 * lag, WAIT blocks that connection for up to its timeout, and everything sent
 * after it queues behind it in Redis. rwait therefore keeps at most one WAIT
 * in flight per connection: writes whose replies arrive while one is out join
 * the next, which covers them all. A waiter whose write was made on a link
 * that has since been lost fails (a WAIT on the new link would not cover it).
 */
#ifndef PLCACHE_RWAIT_H
#define PLCACHE_RWAIT_H

#include "core/rconn.h"

typedef struct rwait rwait;

/* ok is 1 when at least `replicas` replicas acknowledged, 0 otherwise (too
 * few in time, the link lost, or rwait_free). Called exactly once per
 * successful rwait_after, never from inside rwait_after. */
typedef void (*rwait_fn)(int ok, void *priv);

/* Waits on c (not owned) for `replicas` replicas, each WAIT at most
 * timeout_ms (keep it below c's command timeout, or the watchdog drops the
 * link). Returns NULL when memory ran out. */
rwait *rwait_new(rconn *c, int replicas, int timeout_ms);

/* Asks for fn once the write whose reply is being handled is replicated.
 * Call it from inside that write's reply callback (so the link is the one
 * the write went on). Returns 0, or -1 when out of memory (fn not called). */
int rwait_after(rwait *w, rwait_fn fn, void *priv);

/* Waiters that failed (ok = 0) since start, and waiters not yet answered. */
unsigned long rwait_failures(const rwait *w);
size_t rwait_waiting(const rwait *w);

/* Calls every waiter still waiting with ok = 0, then frees. NULL is fine. A
 * WAIT still in flight is answered harmlessly later (or by rconn_free). */
void rwait_free(rwait *w);

#endif
