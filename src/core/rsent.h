/* rsent.h -- Redis Sentinel for blocking clients (libplcache, plcache).
 *
 * The same discovery rconn does asynchronously, with hiredis's synchronous
 * API: each sentinel of a redis-sentinel:// URL is asked in turn, each
 * connect and each reply bounded by a timeout. Blocks: never call it from a
 * daemon's event loop.
 */
#ifndef PLCACHE_RSENT_H
#define PLCACHE_RSENT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "core/rurl.h"

/* Asks the sentinels of u (is_sentinel) for the master's address and writes
 * a plain URL for it into out: a shallow copy of u whose user and password
 * stay u's (do not rurl_free out), with host and port set. Returns 0, or -1
 * with the reason in err. Blocks up to about 2 × timeout_ms per sentinel. */
int rsent_locate(const rurl *u, int timeout_ms, rurl *out, char *err, size_t errlen);

/* Asks ctx (connected, authenticated) ROLE: 0 when it is the master, -1 with
 * err set otherwise. Blocks up to ctx's timeout. */
int rsent_check_master(redisContext *ctx, char *err, size_t errlen);

/* 1 when r is a -READONLY error (a write reached a demoted master). */
int rsent_readonly(const redisReply *r);

#endif
