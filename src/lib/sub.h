/* sub.h -- the memory cache's listener: a thread with its own Redis
 * connection, SUBSCRIBEd to <prefix>invalidate, dropping the named template's
 * entries on every message.
 *
 * While the subscription is down (not yet confirmed, closed, timed out, an
 * error), the memory cache is cleared and unusable: a client never serves from
 * memory what it cannot know to be current. The thread reconnects with capped
 * backoff (100 ms doubling to 5 s) and makes the cache usable again only once
 * Redis has confirmed the SUBSCRIBE. When the line is quiet it sends a PING
 * every second and counts the subscription down when no answer comes within
 * the Redis timeout.
 */
#ifndef PLCACHE_LIB_SUB_H
#define PLCACHE_LIB_SUB_H

#include <stddef.h>
#include <stdint.h>

#include "core/rurl.h"
#include "lib/memcache.h"

typedef struct sub sub;

/* Starts the listener on channel (copied) for m. url and m are borrowed and
 * must outlive the listener. Returns NULL with a reason in err when the
 * thread could not start (no Redis I/O happens here: a Redis that is down only
 * keeps the cache unusable). */
sub *sub_start(const rurl *url, int timeout_ms, const char *channel, memcache *m, char *err,
               size_t errlen);

/* Stops the thread (it notices at once, or within one connect timeout when it
 * is connecting), joins it and frees everything. NULL is fine. */
void sub_stop(sub *s);

/* Times the subscription went down after having been up. */
uint64_t sub_drops(sub *s);

#endif
