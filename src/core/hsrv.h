/* hsrv.h -- an evhttp server with the limits libevent 2.1 leaves out.
 *
 * libevent 2.1.12's defaults are unsafe on the internet: unlimited headers and
 * body, 50 s timeouts, no bound on connections. hsrv sets them all:
 *   - header and body size (evhttp answers 431/413 itself, before reading more);
 *   - an idle timeout per connection (evhttp_set_timeout);
 *   - a first-byte deadline: from accept (a TLS handshake included), a
 *     request's first byte must come within first_byte_timeout_s;
 *   - a request deadline: once a request's first byte arrives it must be read
 *     and answered within request_timeout_s, so a client that trickles one byte
 *     at a time cannot hold a connection forever;
 *   - a bound on open connections: at the bound, the oldest connection that
 *     holds no request (silent since accept, or idle between requests) is
 *     closed to make room for a new client; only when every connection is
 *     working on a request does the listener stop accepting (new clients wait
 *     in the kernel's backlog) until one closes; *   - optionally a bound per peer address (trusted
 * addresses, e.g. loopback or the proxy in front, excepted);
 *   - a bound on the memory requests in progress hold together, beyond a small
 *     share each: stalled large bodies cannot claim max_body times every
 *     slot.
 * The last two hang on each connection's own bufferevent, made by hsrv
 * (evhttp_set_bevcb): callbacks on its input and output buffers arm and
 * disarm the deadline and count answer bytes not yet written (hsrv_unsent),
 * and the connection's close callback counts closes. (A pass-through filter
 * bufferevent would see closes too, but breaks evhttp's replies in 2.1.)
 *
 * With a TLS context (hsrv_set_tls) the listener speaks HTTPS only: every
 * connection is an OpenSSL bufferevent, and the request deadline also bounds
 * the handshake, from accept to its end. The limits above hold unchanged.
 */
#ifndef PLCACHE_HSRV_H
#define PLCACHE_HSRV_H

#include <stddef.h>

struct event_base;
struct evhttp_request;
struct ssl_ctx_st; /* SSL_CTX */
typedef struct hsrv hsrv;

typedef struct hsrv_opts {
    const char *listen;       /* host:port; port 0 picks a free one */
    size_t max_body;          /* bytes */
    size_t max_headers;       /* bytes, all header lines together */
    int idle_timeout_s;       /* keep-alive connection with nothing to do */
    int request_timeout_s;    /* first byte of a request to its answer */
    int max_conns;            /* open connections */
    int first_byte_timeout_s; /* accept (and TLS handshake) to a request's first byte;
                                 0: request_timeout_s */
    int max_conns_per_peer;   /* open connections of one IP address; 0: no bound */
    const char *trusted;      /* with max_conns_per_peer: comma-separated IP addresses never
bounded; NULL or "" for none; copied */
    size_t max_buffered;      /* bytes requests in progress may hold together beyond the
                                 first HSRV_SMALL_REQUEST of each; the connection that would
                                 pass it is closed. 0: no bound */
} hsrv_opts;

/* What a request may hold without counting against max_buffered: its
 * headers and a body of the size real deliveries have. */
#define HSRV_SMALL_REQUEST ((size_t)32 << 10)

/* Most addresses `trusted` may list. */
#define HSRV_MAX_TRUSTED 16

/* What the server did to keep its slots working, for /metrics. */
typedef struct hsrv_stats_t {
    unsigned long first_byte_timeouts; /* connections closed: no request within the first-byte
                                          deadline */
    unsigned long request_timeouts;    /* connections closed: a request not done in time */
    unsigned long evictions;           /* connections without a request closed to make room */
    unsigned long peer_refusals;       /* connections closed: their peer held its bound */
    unsigned long over_budget;         /* connections closed: their request would pass
                                          max_buffered */
} hsrv_stats_t;

typedef void (*hsrv_handler)(struct evhttp_request *req, void *arg);

/* Binds and starts serving every request to handler. Returns NULL with err set
 * (cannot bind, bad address, a bad trusted address, no memory). */
hsrv *hsrv_new(struct event_base *base, const hsrv_opts *opts, hsrv_handler handler, void *arg,
               char *err, size_t errlen);

/* The bound port (useful with port 0). */
int hsrv_port(const hsrv *s);

/* Open connections now, and connections refused a slot so far (the listener
 * paused at the bound). */
size_t hsrv_conns(const hsrv *s);
unsigned long hsrv_paused(const hsrv *s);

/* Copies the counters into *out. */
void hsrv_stats(const hsrv *s, hsrv_stats_t *out);

/* Tells fn of each answer hsrv gives itself, so its owner counts it with its
 * own: the 400 of a request whose framing is ambiguous, and libevent's own
 * answers (413, 400, ...) rewritten as JSON. Never called for the handler's
 * answers. */
typedef void (*hsrv_counter)(int status, void *arg);
void hsrv_set_counter(hsrv *s, hsrv_counter fn, void *arg);

/* Bytes of answers queued on open connections and not yet written: a
 * graceful stop waits for 0, so an answer given is an answer sent. */
size_t hsrv_unsent(const hsrv *s);

/* Makes connections accepted from now on use TLS with ctx (see core/tls.h),
 * or plain HTTP when ctx is NULL; connections already open keep what they
 * have. Takes its own reference on ctx (the caller keeps and frees its own)
 * and drops the one on the context it replaces. Returns 0, or -1 when the
 * reference cannot be taken (nothing changed). Never blocks. */
int hsrv_set_tls(hsrv *s, struct ssl_ctx_st *ctx);

/* 1 when new connections get TLS, 0 otherwise. */
int hsrv_tls(const hsrv *s);

/* Stops accepting new connections (for a graceful stop); open ones go on. */
void hsrv_stop_accepting(hsrv *s);

/* Closes the listener and every connection. NULL is fine. */
void hsrv_free(hsrv *s);

/* Answers req with `code` and a JSON body (Content-Type: application/json).
 * Exactly once per request; safe when the client has already gone. */
void hsrv_reply(struct evhttp_request *req, int code, const char *json);

/* Answers req 200 with Prometheus text (n bytes at text). */
void hsrv_reply_metrics(struct evhttp_request *req, const char *text, size_t n);

#endif
