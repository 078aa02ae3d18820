/* fetch.h -- HTTP requests out, on the daemon's one event_base, with retries.
 *
 * libcurl's multi_socket interface driven by libevent: curl tells us which
 * sockets to watch (one struct event each) and when to wake it (one evtimer);
 * nothing ever blocks the loop. Name resolution uses libcurl's default
 * threaded resolver (Debian's libcurl is built with it, "AsynchDNS"), which
 * resolves on a helper thread of curl's own, so a slow DNS server does not
 * stall the loop either.
 *
 * On top of curl, fetch adds what every caller would otherwise redo:
 *   - a bound on transfers at once (max_inflight); more requests wait in a
 *     FIFO queue, and at most max_pending callbacks may be owed at all;
 *   - retries of failures that pass (no answer, timeout, 408, 429, 5xx) after
 *     a jittered exponential backoff that honours Retry-After, waiting on an
 *     evtimer;
 *   - coalescing of GETs that share a key: one transfer, every caller told;
 *   - a maximum on the size of an answer's body;
 *   - counters for /metrics.
 *
 * Connections are reused through the multi handle's connection cache; HTTP/2
 * is used where TLS offers it (ALPN), and transfers to one host then share a
 * connection. Redirects are never followed and only http and https are
 * allowed.
 *
 * The daemon is one thread: a fetcher and its callbacks belong to the thread
 * that runs the event_base. A program using fetch should ignore SIGPIPE (the
 * daemons do) since a TLS library may write to a socket the peer closed.
 *
 * Nothing in fetch logs above debug level, and it never logs a URL, a header
 * value or a body.
 */
#ifndef PLCACHE_FETCH_H
#define PLCACHE_FETCH_H

#include <curl/curl.h>
#include <stddef.h>

struct event_base;
typedef struct fetcher fetcher;

/* Every field left 0 takes its default; a negative value makes fetch_new fail. */
typedef struct fetch_opts {
    int max_inflight;        /* transfers at once (default 32); more wait in a FIFO queue */
    size_t max_pending;      /* callbacks owed at most (default 10000), counting every request
                              * not finished and every joined GET; past it fetch_get and
                              * fetch_post return -1 */
    long timeout_ms;         /* whole transfer, per attempt (default 10000) */
    long connect_timeout_ms; /* per attempt (default 3000) */
    int max_attempts;        /* tries for a failure that passes, >= 1 (default 5) */
    long backoff_base_ms;    /* default 200; before attempt n+1 wait a random time in
                              * [0, min(backoff_max_ms, backoff_base_ms * 2^(n-1))] */
    long backoff_max_ms;     /* default 30000 */
    long retry_after_max_ms; /* default 300000: the longest a Retry-After is honoured; a
                              * longer one is waited this long (the caller still sees the
                              * whole value in fetch_result.retry_after_ms) */
    size_t max_response;     /* bytes of body kept at most (default 8 MiB); a bigger answer
                              * fails the transfer (FETCH_ERROR, not retried) */
} fetch_opts;

/* How a request ended, in the RETRY/ERROR sense of STYLE.md. */
typedef enum fetch_outcome {
    FETCH_OK = 0,    /* a 2xx answer */
    FETCH_RETRY = 1, /* a failure that would pass: 408, 429, 5xx, no answer, timeout; the
                      * attempts ran out, or the fetcher is shutting down */
    FETCH_ERROR = 2, /* a failure repeating will not cure: any other status (3xx, 4xx,
                      * e.g. 404, which callers may treat as a normal answer), a body over
                      * max_response, a URL curl refuses, no memory */
} fetch_outcome;

typedef struct fetch_result {
    fetch_outcome outcome;
    long status;                 /* HTTP status of the last attempt; 0 when none came or the answer
                                  * was refused (network error, timeout, too big, shutting down) */
    const char *body;            /* the last answer's body: owned by the fetcher, valid only during
                                  * the callback, NUL-terminated, "" (len 0) when status is 0 */
    size_t len;                  /* bytes of body, without the NUL */
    int attempts;                /* transfers made for this request */
    char error[CURL_ERROR_SIZE]; /* why, when status is 0 (curl's text or fetch's own,
                                  * e.g. "shutting down"); "" when an answer came */
    long retry_after_ms;         /* Retry-After of the last answer (delta-seconds or HTTP-date, as
                                  * ms from when the answer came; 0 for a date in the past), -1
                                  * when absent or unreadable */
} fetch_result;

/* Called exactly once per accepted fetch_get or fetch_post. r and everything
 * it points to are valid only during the call. The callback may call fetch_get
 * and fetch_post (never fetch_free). */
typedef void (*fetch_done_fn)(const fetch_result *r, void *arg);

/* Answers counted per attempt, for /metrics. */
#define FETCH_STATUS_MIN 100
#define FETCH_STATUS_MAX 599
typedef struct fetch_stats_t {
    unsigned long requests;    /* accepted by fetch_get and fetch_post, joins excluded */
    unsigned long coalesced;   /* fetch_get calls that joined a request with the same key */
    unsigned long transfers;   /* attempts started */
    unsigned long retries;     /* attempts scheduled after a failure that passes */
    unsigned long net_errors;  /* attempts that ended without an answer (incl. timeouts) */
    unsigned long timeouts;    /* of those, attempts that hit timeout_ms or connect_timeout_ms */
    unsigned long too_big;     /* answers refused for a body over max_response */
    unsigned long connects;    /* new connections made (the rest reused one) */
    unsigned long idle_closed; /* kept connections seen closing between transfers */
    unsigned long sockets;     /* sockets on the loop now: watched, or kept between transfers */
    unsigned long outcomes[3]; /* finished requests by fetch_outcome */
    unsigned long by_class[6]; /* answers by status / 100 (1..5); [0]: a status out of range */
    unsigned long by_status[FETCH_STATUS_MAX - FETCH_STATUS_MIN + 1]; /* [status - 100] */
} fetch_stats_t;

/* Initializes libcurl (curl_global_init). Call it from main before any thread
 * starts; fetch_new calls it too when it has not run (fine in the
 * single-threaded daemons). Returns 0, or -1 when libcurl cannot start. */
int fetch_global_init(void);

/* Undoes fetch_global_init, after the last fetch_free. Optional (tidy exits). */
void fetch_global_cleanup(void);

/* Makes a fetcher on base. opts may be NULL (all defaults). Returns NULL when
 * an option is negative, max_attempts or max_inflight is 0 after defaults,
 * libcurl cannot start, or memory ran out. Never blocks. Free it with
 * fetch_free before base is freed. */
fetcher *fetch_new(struct event_base *base, const fetch_opts *opts);

/* Starts a GET of url (copied). headers is NULL or a NULL-terminated list of
 * "Name: value" lines (copied), sent as given (e.g. X-API-KEY, Cache-Control).
 *
 * When key is not NULL (copied) and a GET with the same key is queued, waiting
 * for a retry or in flight, this call joins it: no new transfer, and cb is
 * called with the same result as the first caller's, after it (coalescing).
 * The key must stand for everything that makes the answer (URL and headers):
 * the first request's URL and headers are the ones sent.
 *
 * The transfer starts from the loop, never inside this call. Returns 0 (cb
 * will be called exactly once, from the loop), or -1 (cb is never called):
 * url or a header holds CR or LF, max_pending callbacks are owed, the fetcher
 * is shutting down, or memory ran out. */
int fetch_get(fetcher *f, const char *url, const char *const *headers, const char *key,
              fetch_done_fn cb, void *arg);

/* Starts a POST of len bytes at body (copied; may hold NUL bytes) to url,
 * never coalesced. Give "Content-Type: application/json" in headers for JSON
 * (curl would say application/x-www-form-urlencoded). A POST is retried like a
 * GET, so the server may see it more than once (delivery is at least once).
 * Returns 0 or -1 as fetch_get. */
int fetch_post(fetcher *f, const char *url, const char *const *headers, const char *body,
               size_t len, fetch_done_fn cb, void *arg);

/* Transfers running now (at most max_inflight). */
size_t fetch_inflight(const fetcher *f);

/* Requests accepted and not running: queued for a slot or waiting for a retry. */
size_t fetch_waiting(const fetcher *f);

/* Copies the counters into *out. */
void fetch_stats(const fetcher *f, fetch_stats_t *out);

/* Stops every transfer, calls every callback still owed once, with status 0,
 * outcome FETCH_RETRY and error "shutting down" (a fetch_get or fetch_post from
 * such a callback returns -1), then frees everything, libcurl's handles and
 * connections included. NULL is fine. Must be called before the event_base is
 * freed, and never from inside a fetch callback (that aborts the program). */
void fetch_free(fetcher *f);

#endif
