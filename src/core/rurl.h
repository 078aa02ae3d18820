/* rurl.h -- Redis URLs (DESIGN.md section 2).
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:///path/to/redis.sock[?db=N]
 *   redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master[?db=N]
 *
 * A sentinel URL names up to RURL_MAX_SENTINELS sentinels (port 26379 by
 * default) and the master they monitor; the user and password are those of
 * the data nodes (the sentinels are asked without AUTH). Where the master is
 * is found at connect time (rconn, rsent), and written into host and port.
 *
 * Pure parsing, plus one blocking name resolution meant for start-up: hiredis
 * 0.14 resolves names synchronously inside redisAsyncConnect, so a daemon
 * resolves once and reconnects to the address.
 */
#ifndef PLCACHE_RURL_H
#define PLCACHE_RURL_H

#include <stddef.h>

#define RURL_MAX_SENTINELS 8

typedef struct rurl_node {
    char host[256]; /* name or numeric address, no brackets */
    int port;
} rurl_node;

typedef struct rurl {
    int is_unix;
    int is_sentinel; /* host and port: the master last found, "" and 0 before */
    char host[256];  /* name or numeric address, no brackets */
    int port;
    char path[108]; /* unix socket path */
    int db;
    char *user;       /* owned, percent-decoded, NULL when absent */
    char *password;   /* owned, percent-decoded, NULL when absent */
    char master[128]; /* sentinel: the monitored master's name */
    int nsentinels;
    rurl_node sentinels[RURL_MAX_SENTINELS];
} rurl;

/* Parses url into out. Returns 0, or -1 with a reason in err (the reason never
 * repeats the password). On success release out with rurl_free. */
int rurl_parse(const char *url, rurl *out, char *err, size_t errlen);

/* Replaces a host name (every sentinel's, for a sentinel URL) by its first
 * numeric address (blocking getaddrinfo: call at start only). Returns 0, or
 * -1 with err set. */
int rurl_resolve(rurl *u, char *err, size_t errlen);

/* A printable form without the password (host:port/db, unix:path, or for a
 * sentinel URL host:port/db (sentinel master NAME) once the master is known). */
void rurl_describe(const rurl *u, char *out, size_t outlen);

void rurl_free(rurl *u);

/* cfg_check_fn for PLCACHE_REDIS_URL. */
int rurl_check(const char *value, char *err, size_t errlen);

#endif
