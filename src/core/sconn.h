/* sconn.h -- one blocking hiredis connection with timeouts and AUTH/SELECT,
 * reconnected once when a command finds it broken. Blocking: for libplcache
 * and the plcache command, never for the daemons (they use rconn).
 *
 * hiredis 0.14's synchronous API: redisConnectWithTimeout (or the Unix socket
 * form) bounds the connect, redisSetTimeout puts SO_RCVTIMEO/SO_SNDTIMEO on
 * the socket so each command is bounded too. A context that saw an error is
 * never reused (a late reply could be read as the answer to the next command):
 * it is freed and the next command connects again.
 */
#ifndef PLCACHE_SCONN_H
#define PLCACHE_SCONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "core/rurl.h"

typedef struct sconn {
    const rurl *url; /* borrowed: lives as long as the client */
    int timeout_ms;
    redisContext *ctx; /* owned; NULL while not connected */
    char where[300];   /* rurl_describe: host:port/db or unix:path, no password */
    char err[512];     /* the last failure, "" after success */
} sconn;

/* Connects to url within timeout_ms, puts the same timeout on every later read
 * and write, sends AUTH (user and password, or password alone) and SELECT
 * (db != 0). A sentinel URL is located first (rsent_locate) and the node
 * checked with ROLE. Returns the context (the caller's; redisFree it), or NULL with a
 * reason in err (never the password). Blocks up to about 3 × timeout_ms. */
redisContext *sconn_connect(const rurl *url, int timeout_ms, char *err, size_t errlen);

/* Prepares c (no I/O). url is borrowed and must outlive c. */
void sconn_init(sconn *c, const rurl *url, int timeout_ms);

/* Connects now when not connected. Returns 0, or -1 with c->err set. */
int sconn_open(sconn *c);

/* Sends one command and reads its reply (connecting first when needed).
 * Returns the reply (the caller's: freeReplyObject; it may be an error reply),
 * or NULL with c->err set when the connection failed. When the connection
 * turns out broken (closed, reset) and `retry` is set, connects again and
 * sends the command once more; a timeout is never retried (the command may
 * still run, and waiting twice is worse). With a sentinel URL a -READONLY
 * reply (a demoted master) is retried the same way, through discovery.
 * Blocks up to about 4 × timeout_ms (more with several sentinels). */
redisReply *sconn_command(sconn *c, int retry, int argc, const char **argv, const size_t *argvlen);

/* Closes the connection (the next command connects again). */
void sconn_close(sconn *c);

#endif
