/* fetch.c -- libcurl's multi_socket interface on libevent, with retries.
 *
 * One CURLM per fetcher. curl drives the I/O through two callbacks:
 *   - the socket callback says which sockets to watch and how; each gets an
 *     fsock (a persistent struct event) hung on the socket with
 *     curl_multi_assign, re-armed with the right EV_READ/EV_WRITE when that
 *     changes. On CURL_POLL_REMOVE of a socket watched for reading (a kept
 *     connection between two transfers) the fsock is parked: still
 *     registered, so the next transfer on that connection, which asks for
 *     EV_READ again, costs no epoll_ctl at all. A parked socket that turns
 *     readable (the server closed it) is unregistered at once. Only
 *     connection sockets are parked: we open them (CURLOPT_OPENSOCKETFUNCTION,
 *     which marks their number) and curl closes them through our close-socket
 *     callback, which frees the fsock before the descriptor is closed, so a
 *     parked event never outlives its socket. curl's other sockets (its
 *     threaded resolver's socketpair) are closed behind our back: their
 *     fsock goes at CURL_POLL_REMOVE;
 *   - the timer callback sets the one evtimer (replacing it; -1 deletes it;
 *     0 is a zero timeout, never a call back into curl from inside curl).
 * The event handlers call curl_multi_socket_action and then drain
 * curl_multi_info_read: that is the only place transfers end. No multi
 * function is called from inside a curl callback.
 *
 * A request (freq) lives from fetch_get/fetch_post until its callbacks ran.
 * It moves between three places, each with its own counter:
 *
 *   queue --pump--> running (easy handle in the multi) --ends--> finished
 *     ^                 |
 *     +--retry timer----+  (408, 429, 5xx, no answer: waits in REQ_RETRY)
 *
 * New requests go to the tail of the queue; a request back from a retry wait
 * goes to the head, since it was accepted before anything queued behind it.
 * pump() fills free slots (max_inflight) from the queue; it runs from the loop
 * (the `kick` event, activated by fetch_get/fetch_post), after every drain of
 * finished transfers, and when a retry timer fires. So a callback never runs
 * inside fetch_get, and a transfer never starts inside a curl callback.
 *
 * Easy handles are kept on a spare list (at most max_inflight). The options
 * every transfer shares are set once, when a handle is made; a transfer sets
 * only its own (URL, method and body, headers, where its answer goes), each
 * of them every time, so nothing of the last transfer carries over. Setting
 * ~30 options and curl_easy_reset per transfer cost more than the transfer's
 * own work in curl. Connections live in the multi's connection cache, so they
 * are reused whichever handle runs next.
 *
 * Requests with the same header lines share one curl_slist (fhdrs, counted
 * references; the fetcher keeps the last one made): a worker sends thousands
 * of requests with the same two headers. A transfer's handle is removed from the
 * multi before its callbacks run: its connection is back in the cache by the
 * time a callback starts the next request.
 *
 * GETs with a key are also in a small hash table (key -> request) until they
 * finish, which is how a second fetch_get with the same key finds the first.
 */
#include "core/fetch.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "model/retry.h"

#ifndef PLCACHE_VERSION
#define PLCACHE_VERSION "dev"
#endif

#define FETCH_TABLE_MIN 64
#define FETCH_RA_MAX 64 /* a Retry-After value longer than this is ignored */

static int g_curl_ready;

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
    int conn;  /* a connection socket, opened through on_curl_open */
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
    uint64_t rng; /* retry waits (model/retry.h) */
    int closing;
    int in_cb;
    fetch_stats_t stats;
};

static void sock_free(fetcher *f, fsock *s);
static int on_curl_close(void *clientp, curl_socket_t s);
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr);

/* ---- small helpers ---- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static struct timeval ms_to_tv(long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* ---- the key table ---- */

static freq *table_find(const fetcher *f, const char *key, uint64_t hash)
{
    for (freq *r = f->table[hash & (f->tsize - 1)]; r != NULL; r = r->hnext) {
        if (r->hash == hash && strcmp(r->key, key) == 0)
            return r;
    }
    return NULL;
}

static void table_grow(fetcher *f)
{
    size_t nsize = f->tsize * 2;
    freq **nt = calloc(nsize, sizeof(*nt));
    if (nt == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < f->tsize; i++) {
        freq *r = f->table[i];
        while (r != NULL) {
            freq *next = r->hnext;
            size_t b = r->hash & (nsize - 1);
            r->hnext = nt[b];
            nt[b] = r;
            r = next;
        }
    }
    free(f->table);
    f->table = nt;
    f->tsize = nsize;
}

static void table_add(fetcher *f, freq *r)
{
    if (f->tcount >= f->tsize)
        table_grow(f);
    size_t b = r->hash & (f->tsize - 1);
    r->hnext = f->table[b];
    f->table[b] = r;
    f->tcount++;
}

static void table_remove(fetcher *f, freq *r)
{
    freq **pp = &f->table[r->hash & (f->tsize - 1)];
    while (*pp != NULL && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp == r) {
        *pp = r->hnext;
        r->hnext = NULL;
        f->tcount--;
    }
}

/* ---- the queue ---- */

static void queue_push(fetcher *f, freq *r, int at_head)
{
    r->state = REQ_QUEUED;
    r->qnext = NULL;
    if (f->qhead == NULL) {
        f->qhead = f->qtail = r;
    } else if (at_head) {
        r->qnext = f->qhead;
        f->qhead = r;
    } else {
        f->qtail->qnext = r;
        f->qtail = r;
    }
    f->nqueued++;
}

static freq *queue_pop(fetcher *f)
{
    freq *r = f->qhead;
    if (r == NULL)
        return NULL;
    f->qhead = r->qnext;
    if (f->qhead == NULL)
        f->qtail = NULL;
    r->qnext = NULL;
    r->state = REQ_IDLE;
    f->nqueued--;
    return r;
}

/* ---- header lists ---- */

static void hdrs_unref(fhdrs *h)
{
    if (h == NULL || --h->refs > 0)
        return;
    curl_slist_free_all(h->list);
    free(h);
}

#define FETCH_UA "User-Agent: plcache/" PLCACHE_VERSION

static int has_user_agent(const char *const *headers)
{
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        if (strncasecmp(headers[i], "User-Agent", 10) == 0 &&
            (headers[i][10] == ':' || headers[i][10] == ';'))
            return 1;
    return 0;
}

/* The lines a request sends besides curl's own: the caller's, then ours (a
 * User-Agent unless the caller gave one, and for a POST an empty Expect, so
 * that no "Expect: 100-continue" round trip comes before a big body). */
static size_t hdrs_ours(int is_post, const char *const *headers, const char *out[2])
{
    size_t n = 0;
    if (!has_user_agent(headers))
        out[n++] = FETCH_UA;
    if (is_post)
        out[n++] = "Expect:";
    return n;
}

static int hdrs_same(const fhdrs *h, int is_post, const char *const *headers)
{
    if (h == NULL || h->is_post != is_post)
        return 0;
    const struct curl_slist *l = h->list;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++, l = l->next)
        if (l == NULL || strcmp(l->data, headers[i]) != 0)
            return 0;
    const char *ours[2];
    size_t n = hdrs_ours(is_post, headers, ours);
    for (size_t i = 0; i < n; i++, l = l->next)
        if (l == NULL || strcmp(l->data, ours[i]) != 0)
            return 0;
    return l == NULL;
}

/* A reference to a list of these lines: the last one made when it has the
 * same, else a new one (then kept as the last). NULL when out of memory or a
 * line holds CR or LF. */
static fhdrs *hdrs_get(fetcher *f, int is_post, const char *const *headers)
{
    if (hdrs_same(f->last_hdrs, is_post, headers)) {
        f->last_hdrs->refs++;
        return f->last_hdrs;
    }
    fhdrs *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->refs = 1;
    h->is_post = is_post;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *l = has_crlf(headers[i]) ? NULL : curl_slist_append(h->list, headers[i]);
        if (l == NULL)
            goto err;
        h->list = l;
    }
    const char *ours[2];
    size_t n = hdrs_ours(is_post, headers, ours);
    for (size_t i = 0; i < n; i++) {
        struct curl_slist *l = curl_slist_append(h->list, ours[i]);
        if (l == NULL)
            goto err;
        h->list = l;
    }
    hdrs_unref(f->last_hdrs);
    f->last_hdrs = h;
    h->refs++;
    return h;
err:
    hdrs_unref(h);
    return NULL;
}

/* ---- requests ---- */

static void req_free(freq *r)
{
    if (r == NULL)
        return;
    if (r->retry_ev)
        event_free(r->retry_ev);
    free(r->url);
    hdrs_unref(r->headers);
    free(r->body);
    free(r->key);
    free(r->waiters);
    buf_free(&r->resp);
    free(r);
}

static int req_add_waiter(freq *r, fetch_done_fn cb, void *arg)
{
    if (r->nwaiters == r->capwaiters) {
        size_t ncap = r->capwaiters ? r->capwaiters * 2 : 1;
        fwaiter *w = realloc(r->waiters, ncap * sizeof(*w));
        if (w == NULL)
            return -1;
        r->waiters = w;
        r->capwaiters = ncap;
    }
    r->waiters[r->nwaiters].cb = cb;
    r->waiters[r->nwaiters].arg = arg;
    r->nwaiters++;
    return 0;
}

/* Reads the current answer's Retry-After: delta-seconds or an HTTP-date.
 * Returns milliseconds from now (0 for a past date), or -1. */
static long retry_after_ms(const freq *r)
{
    const long max_s = LONG_MAX / 1000;
    if (r->ra[0] == '\0')
        return -1;
    if (r->ra[0] >= '0' && r->ra[0] <= '9') {
        for (const char *p = r->ra; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
        }
        errno = 0;
        char *end = NULL;
        long long s = strtoll(r->ra, &end, 10);
        if (errno == ERANGE || s > max_s)
            return max_s * 1000;
        if (errno != 0 || end == r->ra || *end != '\0')
            return -1;
        return (long)s * 1000;
    }
    time_t when = curl_getdate(r->ra, NULL);
    if (when == (time_t)-1)
        return -1;
    time_t now = time(NULL);
    if (when <= now)
        return 0;
    long long s = (long long)(when - now);
    return s > max_s ? max_s * 1000 : (long)s * 1000;
}

/* Calls every waiter with the request's end, then frees it. r must be
 * REQ_IDLE (in none of the queue, the multi, or a retry wait). */
static void finish(fetcher *f, freq *r, fetch_outcome outcome, long status, const char *error)
{
    fetch_result res;
    res.outcome = outcome;
    res.status = status;
    res.attempts = r->attempts;
    if (status != 0) {
        res.body = r->resp.data ? r->resp.data : "";
        res.len = r->resp.len;
        res.error[0] = '\0';
        res.retry_after_ms = retry_after_ms(r);
    } else {
        res.body = "";
        res.len = 0;
        snprintf(res.error, sizeof(res.error), "%s", error ? error : "failed");
        res.retry_after_ms = -1;
    }

    if (r->prev)
        r->prev->next = r->next;
    else
        f->all = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    if (r->key)
        table_remove(f, r);
    f->owed -= r->nwaiters;
    f->stats.outcomes[outcome]++;

    f->in_cb++;
    for (size_t i = 0; i < r->nwaiters; i++)
        r->waiters[i].cb(&res, r->waiters[i].arg);
    f->in_cb--;
    req_free(r);
}

/* ---- easy handles ---- */

static int easy_config(fetcher *f, CURL *e);

/* An idle easy handle, with the options every transfer shares set. */
static CURL *easy_take(fetcher *f)
{
    if (f->nspare > 0)
        return f->spare[--f->nspare];
    CURL *e = curl_easy_init();
    if (e != NULL && easy_config(f, e) != 0) {
        curl_easy_cleanup(e);
        e = NULL;
    }
    return e;
}

/* Back to the spare list, with the shared options kept: the next transfer
 * sets all its own again (easy_setup). The pointers into the request, which
 * is about to be freed, are cleared first (cheap: no copies), so that the
 * handle never holds a dangling one. A handle that is not `clean` is freed
 * instead: curl 7.88 keeps state across transfers that only
 * curl_easy_reset clears, notably its count of retries on a fresh
 * connection after a kept one died (5 in a handle's life, then
 * CURLE_SEND_ERROR). A retry makes a connection, so a transfer that made
 * none and succeeded leaves nothing behind. */
static void easy_release(fetcher *f, CURL *e, int clean)
{
    if (!clean || f->nspare >= (size_t)f->opts.max_inflight) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    f->spare[f->nspare++] = e;
}

/* curl's write callback: keeps the body, at most max_response bytes. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    freq *r = arg;
    if (size != 0 && nmemb > SIZE_MAX / size)
        return 0;
    size_t n = size * nmemb;
    if (n > r->resp.max - r->resp.len) {
        r->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (buf_append(&r->resp, p, n) != 0) {
        r->oom = 1;
        return 0;
    }
    return n;
}

/* curl's header callback: notes Retry-After; a status line starts a new
 * answer (a 1xx comes before the real one), which forgets the last value. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    static const char name[] = "retry-after:";
    const size_t nlen = sizeof(name) - 1;
    freq *r = arg;
    if (size != 0 && nmemb > SIZE_MAX / size)
        return 0;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->ra[0] = '\0';
        return n;
    }
    if (n <= nlen || strncasecmp(p, name, nlen) != 0)
        return n;
    const char *v = p + nlen;
    const char *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (vlen == 0 || vlen >= sizeof(r->ra) || memchr(v, '\0', vlen) != NULL) {
        r->ra[0] = '\0';
        return n;
    }
    memcpy(r->ra, v, vlen);
    r->ra[vlen] = '\0';
    return n;
}

/* The options of every transfer, set once per handle. */
static int easy_config(fetcher *f, CURL *e)
{
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_curl_open) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)f) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_curl_close) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)f) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 60L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 30L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, f->opts.timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, f->opts.connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->opts.max_response) !=
           CURLE_OK;
    return bad ? -1 : 0;
}

/* The options of r's transfer: every one a transfer may change. */
static int easy_setup(freq *r, CURL *e)
{
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers->list) != CURLE_OK;
    if (r->is_post) {
        bad |=
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
        /* The answer to a POST is a few bytes of JSON: nothing to gain from
         * compression, and curl would format an Accept-Encoding line each
         * time. */
        bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    }
    /* PIPEWAIT: a transfer waits for a connection being made to the same host
     * rather than open its own, in case that one turns out to multiplex. Only
     * TLS can offer HTTP/2 here (2TLS): over plain http curl 7.88 would learn
     * "HTTP/1.1, no" only from the first answer, holding a burst of requests
     * behind it. */
    bad |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, r->is_https ? 1L : 0L) != CURLE_OK;
    return bad ? -1 : 0;
}

/* Starts one attempt of r (REQ_IDLE). Returns 0, or -1 (r unchanged). */
static int start(fetcher *f, freq *r)
{
    CURL *e = easy_take(f);
    if (e == NULL)
        return -1;
    buf_reset(&r->resp);
    r->too_big = 0;
    r->oom = 0;
    r->ra[0] = '\0';
    r->errbuf[0] = '\0';
    if (easy_setup(r, e) != 0 || curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        easy_release(f, e, 1);
        return -1;
    }
    r->easy = e;
    r->state = REQ_RUNNING;
    r->attempts++;
    f->running++;
    f->stats.transfers++;
    return 0;
}

/* Fills free slots from the queue. */
static void pump(fetcher *f)
{
    while (!f->closing && f->running < (size_t)f->opts.max_inflight && f->qhead != NULL) {
        freq *r = queue_pop(f);
        if (start(f, r) != 0)
            finish(f, r, FETCH_ERROR, 0, "cannot start the transfer");
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void kick(fetcher *f)
{
    event_active(f->kick, EV_TIMEOUT, 0);
}

/* ---- retries ---- */

/* curl results that say nothing about the request itself: another try may
 * get through. Everything else (bad URL, protocol refused, certificate, our
 * own write abort) would fail the same way again. */
static int retryable_code(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}


static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    freq *r = arg;
    fetcher *f = r->f;
    f->nretry--;
    queue_push(f, r, 1);
    pump(f);
}

/* r (REQ_IDLE) failed in a way that passes: wait and try again, or end it
 * when the attempts ran out. status is 0 when no answer came. */
static void retry_or_finish(fetcher *f, freq *r, long status, const char *error)
{
    if (r->attempts >= f->opts.max_attempts) {
        finish(f, r, FETCH_RETRY, status, error);
        return;
    }
    retry_policy rp = {.base_ms = f->opts.backoff_base_ms,
                       .max_ms = f->opts.backoff_max_ms,
                       .retry_after_max_ms = f->opts.retry_after_max_ms};
    long delay = (long)retry_delay_ms(&rp, r->attempts, status != 0 ? retry_after_ms(r) : -1,
                                      &f->rng);
    if (r->retry_ev == NULL)
        r->retry_ev = evtimer_new(f->base, on_retry, r);
    struct timeval tv = ms_to_tv(delay);
    if (r->retry_ev == NULL || evtimer_add(r->retry_ev, &tv) != 0) {
        finish(f, r, FETCH_RETRY, status, error);
        return;
    }
    r->state = REQ_RETRY;
    f->nretry++;
    f->stats.retries++;
    if (log_get_level() <= LOG_DEBUG) {
        char st[24], at[16], ms[24];
        snprintf(st, sizeof(st), "%ld", status);
        snprintf(at, sizeof(at), "%d", r->attempts);
        snprintf(ms, sizeof(ms), "%ld", delay);
        log_debug("fetch retry", "status", st, "attempt", at, "delay_ms", ms);
    }
}

/* ---- transfers ending ---- */

static void count_answer(fetcher *f, long status)
{
    if (status >= FETCH_STATUS_MIN && status <= FETCH_STATUS_MAX) {
        f->stats.by_status[status - FETCH_STATUS_MIN]++;
        f->stats.by_class[status / 100]++;
    } else {
        f->stats.by_class[0]++;
    }
}

static void transfer_done(fetcher *f, CURL *e, CURLcode rc)
{
    char *priv = NULL;
    if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL) {
        curl_multi_remove_handle(f->multi, e);
        curl_easy_cleanup(e);
        return;
    }
    freq *r = (freq *)priv;
    long status = 0;
    long conns = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
        f->stats.connects += (unsigned long)conns;
    curl_multi_remove_handle(f->multi, e);
    easy_release(f, e, rc == CURLE_OK && conns == 0);
    r->easy = NULL;
    r->state = REQ_IDLE;
    f->running--;

    if (rc == CURLE_OK) {
        count_answer(f, status);
        switch (retry_classify(status, 0)) {
        case RETRY_DONE:
            finish(f, r, FETCH_OK, status, NULL);
            break;
        case RETRY_AGAIN:
            retry_or_finish(f, r, status, NULL);
            break;
        case RETRY_AUTH:
        case RETRY_NEVER:
            finish(f, r, FETCH_ERROR, status, NULL);
            break;
        }
        return;
    }
    if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        char why[96];
        snprintf(why, sizeof(why), "response body over %zu bytes", f->opts.max_response);
        f->stats.too_big++;
        finish(f, r, FETCH_ERROR, 0, why);
        return;
    }
    if (r->oom) {
        finish(f, r, FETCH_ERROR, 0, "out of memory");
        return;
    }
    f->stats.net_errors++;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        f->stats.timeouts++;
    /* curl's error text names at most a host and a port, never a path. */
    const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    log_debug("fetch attempt failed", "error", curl_easy_strerror(rc));
    if (retry_classify(0, retryable_code(rc)) == RETRY_AGAIN)
        retry_or_finish(f, r, 0, why);
    else
        finish(f, r, FETCH_ERROR, 0, why);
}

/* Ends every transfer curl reports done, then fills the freed slots. */
static void drain(fetcher *f)
{
    for (;;) {
        int left = 0;
        CURLMsg *m = curl_multi_info_read(f->multi, &left);
        if (m == NULL)
            break;
        if (m->msg != CURLMSG_DONE)
            continue;
        transfer_done(f, m->easy_handle, m->data.result);
    }
    pump(f);
}

/* ---- curl's callbacks and the events behind them ---- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    fsock *fs = arg;
    fetcher *f = fs->f;
    if (fs->parked) {
        /* An idle kept connection spoke: the server closed it (or broke the
         * protocol). curl finds out when it next looks; we stop watching. */
        f->stats.idle_closed++;
        sock_free(f, fs);
        return;
    }
    int mask = 0;
    int running = 0;
    if (what & EV_READ)
        mask |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    /* This call may free the fsock behind this very event: touch nothing of
     * it afterwards. */
    CURLMcode mc = curl_multi_socket_action(f->multi, fd, mask, &running);
    if (mc != CURLM_OK)
        log_debug("fetch socket action failed", "error", curl_multi_strerror(mc));
    drain(f);
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fetcher *f = arg;
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK)
        log_debug("fetch timer action failed", "error", curl_multi_strerror(mc));
    drain(f);
}

static void sock_free(fetcher *f, fsock *s)
{
    if (s->fd >= 0 && (size_t)s->fd < f->nfds && f->fds[s->fd].fs == s)
        f->fds[s->fd].fs = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        f->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

/* The parked fsock of socket s, or NULL. */
static fsock *parked_sock(fetcher *f, curl_socket_t s)
{
    if (s < 0 || (size_t)s >= f->nfds)
        return NULL;
    fsock *fs = f->fds[s].fs;
    return (fs != NULL && fs->parked) ? fs : NULL;
}

/* Makes room in f->fds for descriptor s. */
static int fds_room(fetcher *f, curl_socket_t s)
{
    if (s < 0)
        return -1;
    if ((size_t)s < f->nfds)
        return 0;
    size_t n = f->nfds ? f->nfds : 64;
    while (n <= (size_t)s)
        n *= 2;
    fdslot *a = realloc(f->fds, n * sizeof(*a));
    if (a == NULL)
        return -1;
    memset(a + f->nfds, 0, (n - f->nfds) * sizeof(*a));
    f->fds = a;
    f->nfds = n;
    return 0;
}

static int is_conn(const fetcher *f, curl_socket_t s)
{
    return s >= 0 && (size_t)s < f->nfds && f->fds[s].conn;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl asks, or stop. Only
 * curl_multi_assign is called from here, which libcurl allows. */
static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    fetcher *f = userp;
    fsock *fs = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (fs == NULL)
            return 0;
        /* Parked: kept for the connection's next transfer. Only a socket we
         * opened for a connection: curl closes others (its resolver's
         * socketpair) without the close callback, and a parked event left
         * on a closed number would swallow the next socket given it. */
        if (fs->kind == (EV_READ | EV_PERSIST) && is_conn(f, fs->fd))
            fs->parked = 1;
        else
            sock_free(f, fs);
        return 0;
    }
    short kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (fs == NULL && (fs = parked_sock(f, s)) != NULL) {
        fs->parked = 0;
        if (curl_multi_assign(f->multi, s, fs) != CURLM_OK) {
            sock_free(f, fs);
            return -1;
        }
    }
    if (fs == NULL) {
        if (fds_room(f, s) != 0)
            return -1;
        if (f->fds[s].fs != NULL) /* not curl's any more: it never said so */
            sock_free(f, f->fds[s].fs);
        fs = calloc(1, sizeof(*fs));
        if (fs == NULL)
            return -1;
        fs->f = f;
        fs->fd = s;
        fs->ev = event_new(f->base, s, kind, on_socket_event, fs);
        if (fs->ev == NULL) {
            free(fs);
            return -1;
        }
        fs->next = f->socks;
        if (f->socks)
            f->socks->prev = fs;
        f->socks = fs;
        f->fds[s].fs = fs;
        if (curl_multi_assign(f->multi, s, fs) != CURLM_OK) {
            sock_free(f, fs);
            return -1;
        }
    } else if (fs->kind == kind) {
        return 0; /* curl repeated itself, or a parked socket is back: nothing to change */
    } else {
        event_del(fs->ev);
        if (event_assign(fs->ev, f->base, s, kind, on_socket_event, fs) != 0)
            return -1;
    }
    fs->kind = kind;
    return event_add(fs->ev, NULL) == 0 ? 0 : -1;
}

/* CURLOPT_OPENSOCKETFUNCTION: opens a connection socket as curl would, and
 * marks its number as a connection's (only those are parked). */
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)purpose;
    fetcher *f = clientp;
    curl_socket_t s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (s >= 0 && fds_room(f, s) == 0)
        f->fds[s].conn = 1; /* no room: never parked, which only costs epoll_ctl */
    return s;
}

/* curl closes a connection socket: an fsock on it must go first, or its
 * event would stay on a descriptor number the next socket may get. A socket
 * curl still watched has had its CURL_POLL_REMOVE already. */
static int on_curl_close(void *clientp, curl_socket_t s)
{
    fetcher *f = clientp;
    if (s >= 0 && (size_t)s < f->nfds) {
        if (f->fds[s].fs != NULL)
            sock_free(f, f->fds[s].fs);
        f->fds[s].conn = 0;
    }
    return close(s);
}

/* CURLMOPT_TIMERFUNCTION: replace the one timer; -1 deletes it, 0 fires on
 * the loop's next turn. */
static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    fetcher *f = userp;
    if (timeout_ms < 0) {
        evtimer_del(f->timer);
        return 0;
    }
    struct timeval tv = ms_to_tv(timeout_ms);
    return evtimer_add(f->timer, &tv) == 0 ? 0 : -1;
}

/* ---- the API ---- */

int fetch_global_init(void)
{
    if (g_curl_ready)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    g_curl_ready = 1;
    return 0;
}

void fetch_global_cleanup(void)
{
    if (!g_curl_ready)
        return;
    curl_global_cleanup();
    g_curl_ready = 0;
}

fetcher *fetch_new(struct event_base *base, const fetch_opts *opts)
{
    fetch_opts o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.max_inflight < 0 || o.timeout_ms < 0 || o.connect_timeout_ms < 0 || o.max_attempts < 0 ||
        o.backoff_base_ms < 0 || o.backoff_max_ms < 0 || o.retry_after_max_ms < 0)
        return NULL;
    if (o.max_inflight == 0)
        o.max_inflight = 32;
    if (o.max_pending == 0)
        o.max_pending = 10000;
    if (o.timeout_ms == 0)
        o.timeout_ms = 10000;
    if (o.connect_timeout_ms == 0)
        o.connect_timeout_ms = 3000;
    if (o.max_attempts == 0)
        o.max_attempts = 5;
    if (o.backoff_base_ms == 0)
        o.backoff_base_ms = 200;
    if (o.backoff_max_ms == 0)
        o.backoff_max_ms = 30000;
    if (o.retry_after_max_ms == 0)
        o.retry_after_max_ms = 300000;
    if (o.max_response == 0)
        o.max_response = (size_t)8 << 20;
    if (fetch_global_init() != 0)
        return NULL;

    int bad = 0;
    fetcher *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->base = base;
    f->opts = o;
    f->rng = retry_seed((uint64_t)(uintptr_t)f);
    f->tsize = FETCH_TABLE_MIN;
    f->table = calloc(f->tsize, sizeof(*f->table));
    f->spare = calloc((size_t)o.max_inflight, sizeof(*f->spare));
    f->timer = evtimer_new(base, on_timer_event, f);
    f->kick = event_new(base, -1, 0, on_kick, f);
    f->multi = curl_multi_init();
    if (f->table == NULL || f->spare == NULL || f->timer == NULL || f->kick == NULL ||
        f->multi == NULL)
        goto err;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, (void *)f) != CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, (void *)f) != CURLM_OK;
    /* Never more connections to one host than transfers at once, and enough
     * cached to keep every slot's connection warm. */
    bad |= curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o.max_inflight) !=
           CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)o.max_inflight) != CURLM_OK;
    if (bad)
        goto err;
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (vi == NULL || !(vi->features & CURL_VERSION_ASYNCHDNS))
        log_debug("fetch: libcurl resolves names synchronously; give API hosts as addresses");
    return f;
err:
    if (f->multi)
        curl_multi_cleanup(f->multi);
    if (f->timer)
        event_free(f->timer);
    if (f->kick)
        event_free(f->kick);
    free(f->spare);
    free(f->table);
    free(f);
    return NULL;
}

/* Accepts one request or one join. Returns 0 or -1 (nothing owed). */
static int submit(fetcher *f, int is_post, const char *url, const char *const *headers,
                  const char *key, const char *body, size_t len, fetch_done_fn cb, void *arg)
{
    if (f == NULL || f->closing || url == NULL || cb == NULL || (is_post && body == NULL && len))
        return -1;
    if (f->owed >= f->opts.max_pending)
        return -1;
    uint64_t hash = 0;
    if (key != NULL) {
        hash = hash_key(key);
        freq *same = table_find(f, key, hash);
        if (same != NULL) {
            if (req_add_waiter(same, cb, arg) != 0)
                return -1;
            f->owed++;
            f->stats.coalesced++;
            return 0;
        }
    }
    if (has_crlf(url))
        return -1;
    freq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->f = f;
    r->is_post = is_post;
    r->hash = hash;
    buf_init(&r->resp, f->opts.max_response);
    r->url = strdup(url);
    if (r->url == NULL)
        goto err;
    r->is_https = strncasecmp(url, "https://", 8) == 0;
    r->headers = hdrs_get(f, is_post, headers);
    if (r->headers == NULL)
        goto err;
    if (is_post) {
        r->body = malloc(len + 1);
        if (r->body == NULL)
            goto err;
        if (len > 0)
            memcpy(r->body, body, len);
        r->body[len] = '\0';
        r->body_len = len;
    }
    if (key != NULL) {
        r->key = strdup(key);
        if (r->key == NULL)
            goto err;
    }
    if (req_add_waiter(r, cb, arg) != 0)
        goto err;

    r->next = f->all;
    if (f->all)
        f->all->prev = r;
    f->all = r;
    if (r->key)
        table_add(f, r);
    queue_push(f, r, 0);
    f->owed++;
    f->stats.requests++;
    kick(f);
    return 0;
err:
    req_free(r);
    return -1;
}

int fetch_get(fetcher *f, const char *url, const char *const *headers, const char *key,
              fetch_done_fn cb, void *arg)
{
    return submit(f, 0, url, headers, key, NULL, 0, cb, arg);
}

int fetch_post(fetcher *f, const char *url, const char *const *headers, const char *body,
               size_t len, fetch_done_fn cb, void *arg)
{
    return submit(f, 1, url, headers, NULL, body, len, cb, arg);
}

size_t fetch_inflight(const fetcher *f)
{
    return f->running;
}

size_t fetch_waiting(const fetcher *f)
{
    return f->nqueued + f->nretry;
}

void fetch_stats(const fetcher *f, fetch_stats_t *out)
{
    *out = f->stats;
    out->sockets = 0;
    for (const fsock *fs = f->socks; fs != NULL; fs = fs->next)
        out->sockets++;
}

void fetch_free(fetcher *f)
{
    if (f == NULL)
        return;
    if (f->in_cb) {
        log_error("fetch_free called from inside a fetch callback");
        abort();
    }
    f->closing = 1;

    /* Take every request out of the queue, the multi and its retry wait. */
    while (f->qhead != NULL)
        queue_pop(f);
    for (freq *r = f->all; r != NULL; r = r->next) {
        if (r->state == REQ_RUNNING) {
            curl_multi_remove_handle(f->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            f->running--;
        } else if (r->state == REQ_RETRY) {
            evtimer_del(r->retry_ev);
            f->nretry--;
        }
        r->state = REQ_IDLE;
    }
    /* Then tell their callers; nothing new is accepted meanwhile. */
    while (f->all != NULL)
        finish(f, f->all, FETCH_RETRY, 0, "shutting down");

    /* curl may still call the socket and timer callbacks while it closes its
     * cached connections: free our side after it. */
    curl_multi_cleanup(f->multi);
    while (f->socks != NULL)
        sock_free(f, f->socks);
    free(f->fds);
    for (size_t i = 0; i < f->nspare; i++)
        curl_easy_cleanup(f->spare[i]);
    free(f->spare);
    hdrs_unref(f->last_hdrs);
    event_free(f->timer);
    event_free(f->kick);
    free(f->table);
    free(f);
}
