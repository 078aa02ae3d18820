/* rconn.h -- one asynchronous Redis connection that heals itself.
 *
 * hiredis 0.14's async API attached to the daemon's event_base. hiredis has no
 * timeouts and no reconnect of its own, so rconn adds them:
 *
 *   DOWN --timer--> CONNECTING --connected--> HANDSHAKE --PONG--> READY
 *     ^                 |  (connect timeout)      | (AUTH/SELECT error)   |
 *     +-----------------+-------------------------+-----------------------+
 *                       lost, or a command unanswered past its timeout
 *
 * With a redis-sentinel:// URL each connect starts with discovery (DOWN
 * --timer--> DISCOVER --a sentinel named the master--> CONNECTING), the
 * handshake also checks ROLE, and a -READONLY reply or a +switch-master from
 * the sentinels drops the link so that the master is found again.
 *
 * Reconnects run from a timer with capped, jittered exponential backoff, never
 * inline in a hiredis callback. While the connection is not READY, commands are
 * refused at once (the caller answers 503), so nothing queues without bound.
 * Every command's callback runs exactly once: with the reply, or with NULL when
 * the connection is lost, times out, or is freed.
 */
#ifndef PLCACHE_RCONN_H
#define PLCACHE_RCONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "core/rurl.h"
#include "model/rargs.h"

struct event_base;
typedef struct rconn rconn;

/* reply is NULL when no answer will come. The reply is owned by hiredis and
 * valid only during the call. Must not call rconn_free. */
typedef void (*rconn_reply_fn)(redisReply *reply, void *priv);

/* Called when the connection becomes READY (up=1) or stops being so (up=0). */
typedef void (*rconn_state_fn)(int up, void *arg);

typedef struct rconn_opts {
    int connect_timeout_ms; /* default 2000 */
    int command_timeout_ms; /* default 5000: a command unanswered this long drops the link */
    int backoff_min_ms;     /* default 100 */
    int backoff_max_ms;     /* default 5000 */
} rconn_opts;

/* Makes a connection to url (copied; a host name, a sentinel's too, should
 * already be resolved, see rurl_resolve) and starts connecting from the loop. opts may be NULL.
 * Returns NULL when memory ran out. Never blocks. */
rconn *rconn_new(struct event_base *base, const rurl *url, const rconn_opts *opts,
                 rconn_state_fn on_state, void *arg);

/* 1 when commands are accepted. */
int rconn_ready(const rconn *c);

/* Commands sent and not yet answered. */
size_t rconn_pending(const rconn *c);

/* Times the link went down since start, and commands that timed out. */
unsigned long rconn_drops(const rconn *c);

/* Sends a command given as argc strings with lengths. Returns 0 (fn will be
 * called exactly once), or -1 when not READY or on an error (fn is not called). */
int rconn_argv(rconn *c, rconn_reply_fn fn, void *priv, int argc, const char **argv,
               const size_t *lens);

/* rconn_argv with a built command; the arguments stay the caller's (free them
 * after the call: hiredis has copied them). */
int rconn_send(rconn *c, rconn_reply_fn fn, void *priv, const rargs *a);

/* Closes the connection: pending callbacks run with NULL first. NULL is fine.
 * Must not be called from inside an rconn callback. */
void rconn_free(rconn *c);

#endif
