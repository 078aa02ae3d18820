/* fetch_int.h -- the inside of the fetcher, shared by its files.
 *
 * Not for callers: they include core/fetch.h. The fetcher is four files
 * around these structs: fetch.c (the API: fetch_new, fetch_free, counters),
 * fetch_req.c (a request outside curl: accepted or joined by key, queued,
 * finished), fetch_xfer.c (transfers: easy handles, the pump, retries, ends)
 * and fetch_sock.c (curl's sockets and timer on libevent, kept connections).
 * Each exports to the others under its own prefix: fetch_req_, fetch_xfer_,
 * fetch_sock_. Everything here runs on the loop's thread.
 */
#ifndef PLCACHE_FETCH_INT_H
#define PLCACHE_FETCH_INT_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "core/buf.h"
#include "core/fetch.h"

#define FETCH_RA_MAX 64 /* a Retry-After value longer than this is ignored */

enum freq_state {
    REQ_IDLE,    /* in none of the places below: just made, or finishing */
    REQ_QUEUED,  /* in the queue, waiting for a slot */
    REQ_RUNNING, /* easy handle in the multi */
    REQ_RETRY,   /* retry_ev pending */
};

typedef struct fwaiter {
    fetch_done_fn cb;
    void *arg;
} fwaiter;

/* A header list shared by the requests that have the same lines. */
typedef struct fhdrs {
    size_t refs;
    int is_post; /* ends with "Expect:" */
    struct curl_slist *list;
} fhdrs;

typedef struct freq {
    fetcher *f;
    struct freq *prev, *next; /* every request not finished: f->all */
    struct freq *qnext;       /* f->qhead.., while REQ_QUEUED */
    struct freq *hnext;       /* f->table bucket, while key != NULL */
    enum freq_state state;
    int is_post;
    int is_https;
    char *url;      /* owned */
    fhdrs *headers; /* a counted reference */
    char *body;     /* owned, POST only */
    size_t body_len;
    char *key; /* owned, NULL when not coalesced */
    uint64_t hash;
    fwaiter *waiters; /* owned: [0] is the first caller, then joiners */
    size_t nwaiters, capwaiters;
    CURL *easy;             /* while REQ_RUNNING */
    struct event *retry_ev; /* owned, made at the first retry */
    int attempts;
    buf resp; /* the current attempt's body, at most max_response */
    int too_big;
    int oom;
    char ra[FETCH_RA_MAX]; /* Retry-After of the current answer, "" when none */
    char errbuf[CURL_ERROR_SIZE];
} freq;

typedef struct fsock fsock;

/* What the fetcher knows of one descriptor number. */
typedef struct fdslot {
    fsock *fs; /* watching it, or NULL */
    int conn;  /* a connection socket, opened through fetch_sock_on_curl_open */
} fdslot;

typedef struct fsock {
    struct fsock *prev, *next; /* f->socks */
    struct fetcher *f;
    struct event *ev;
    curl_socket_t fd;
    short kind; /* what ev watches (EV_READ/EV_WRITE | EV_PERSIST) */
    int parked; /* curl stopped watching it, the connection stays open */
} fsock;

struct fetcher {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's one timer */
    struct event *kick;  /* runs pump() from the loop */
    fetch_opts opts;
    freq *all;
    freq *qhead, *qtail;
    size_t nqueued, nretry, running;
    size_t owed;  /* callbacks owed */
    freq **table; /* key -> request, chained; tsize is a power of two */
    size_t tsize, tcount;
    CURL **spare; /* idle easy handles, at most opts.max_inflight */
    size_t nspare;
    fsock *socks;
    fdslot *fds; /* by descriptor: its fsock, and whether it is a connection */
    size_t nfds;
    fhdrs *last_hdrs; /* a counted reference, or NULL */
    uint64_t rng;     /* retry waits (model/retry.h) */
    int closing;
    int in_cb;
    fetch_stats_t stats;
};

static inline struct timeval fetch_ms_to_tv(long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* ---- fetch_req.c: requests outside curl ---- */

/* Accepts one request (queued, and the kick event activated) or one join of
 * a GET with the same key. Returns 0, or -1 (nothing owed, cb never called):
 * bad arguments, the fetcher closing, max_pending owed, a CR or LF in url or
 * a header line, or no memory. Never calls a callback, never blocks. */
int fetch_req_submit(fetcher *f, int is_post, const char *url, const char *const *headers,
                     const char *key, const char *body, size_t len, fetch_done_fn cb, void *arg);

/* Puts r (REQ_IDLE) in the queue: at the tail, or at the head for a request
 * back from a retry wait. Cannot fail. */
void fetch_req_queue_push(fetcher *f, freq *r, int at_head);

/* Takes the request at the head of the queue (now REQ_IDLE), or NULL when the
 * queue is empty. */
freq *fetch_req_queue_pop(fetcher *f);

/* Drops one reference to h, freeing it with the last. NULL is fine. */
void fetch_req_hdrs_unref(fhdrs *h);

/* Reads the current answer's Retry-After: delta-seconds or an HTTP-date.
 * Returns milliseconds from now (0 for a past date), or -1 when absent or
 * unreadable. */
long fetch_req_retry_after_ms(const freq *r);

/* Calls every waiter of r with the request's end, then frees r. r must be
 * REQ_IDLE (in none of the queue, the multi, or a retry wait). status 0 means
 * no answer: error (or "failed" when NULL) is the reason. Cannot fail. */
void fetch_req_finish(fetcher *f, freq *r, fetch_outcome outcome, long status, const char *error);

/* ---- fetch_xfer.c: transfers ---- */

/* The kick event's handler (made by fetch_new with f as arg): fills free
 * slots from the queue. */
void fetch_xfer_on_kick(evutil_socket_t fd, short what, void *arg);

/* Activates the kick event, so that the queue is pumped from the loop, never
 * inside the caller. */
void fetch_xfer_kick(fetcher *f);

/* Ends every transfer curl reports done (callbacks run, or a retry is
 * scheduled), then fills the freed slots. Called after every
 * curl_multi_socket_action, never from inside a curl callback. */
void fetch_xfer_drain(fetcher *f);

/* ---- fetch_sock.c: curl's sockets and timer on libevent ---- */

/* The handler of f->timer (made by fetch_new with f as arg): tells curl its
 * timeout expired, then drains. */
void fetch_sock_on_timer_event(evutil_socket_t fd, short what, void *arg);

/* CURLMOPT_SOCKETFUNCTION (SOCKETDATA: the fetcher). Returns 0, or -1 when a
 * socket cannot be watched. */
int fetch_sock_on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp);

/* CURLMOPT_TIMERFUNCTION (TIMERDATA: the fetcher). Returns 0 or -1. */
int fetch_sock_on_curl_timer(CURLM *m, long timeout_ms, void *userp);

/* CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION (their data:
 * the fetcher), set on every easy handle: they mark and unmark connection
 * sockets, the only ones parked between transfers. */
curl_socket_t fetch_sock_on_curl_open(void *clientp, curlsocktype purpose,
                                      struct curl_sockaddr *addr);
int fetch_sock_on_curl_close(void *clientp, curl_socket_t s);

/* Stops watching s and frees it (its event too; the socket stays open). */
void fetch_sock_free(fetcher *f, fsock *s);

#endif
