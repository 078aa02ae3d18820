/* fetch_req.c -- a request outside curl: accepted or joined by key, queued, finished.
 *
 * A request (freq) lives from fetch_get/fetch_post until its callbacks ran;
 * this file makes it (fetch_req_submit), keeps the queue it waits in for a
 * slot, and ends it (fetch_req_finish: every waiter told, then freed). What
 * happens while it runs or waits for a retry is fetch_xfer.c's.
 *
 * GETs with a key are also in a small hash table (key -> request) until they
 * finish, which is how a second fetch_get with the same key finds the first:
 * it joins as one more waiter, with no transfer of its own.
 *
 * Requests with the same header lines share one curl_slist (fhdrs, counted
 * references; the fetcher keeps the last one made): a worker sends thousands
 * of requests with the same two headers.
 */
#include "core/fetch_int.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/buf.h"

#ifndef PLCACHE_VERSION
#define PLCACHE_VERSION "dev"
#endif

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

void fetch_req_queue_push(fetcher *f, freq *r, int at_head)
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

freq *fetch_req_queue_pop(fetcher *f)
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

void fetch_req_hdrs_unref(fhdrs *h)
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
    fetch_req_hdrs_unref(f->last_hdrs);
    f->last_hdrs = h;
    h->refs++;
    return h;
err:
    fetch_req_hdrs_unref(h);
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
    fetch_req_hdrs_unref(r->headers);
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
long fetch_req_retry_after_ms(const freq *r)
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
void fetch_req_finish(fetcher *f, freq *r, fetch_outcome outcome, long status, const char *error)
{
    fetch_result res;
    res.outcome = outcome;
    res.status = status;
    res.attempts = r->attempts;
    if (status != 0) {
        res.body = r->resp.data ? r->resp.data : "";
        res.len = r->resp.len;
        res.error[0] = '\0';
        res.retry_after_ms = fetch_req_retry_after_ms(r);
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

/* ---- accepting a request ---- */

/* A new request (REQ_IDLE, no waiter yet, in none of f's lists) with copies
 * of url, the header lines (a reference to a shared list), the body of a POST
 * and the key. Returns it, or NULL (nothing of it left) when out of memory or
 * a header line holds CR or LF. */
static freq *req_new(fetcher *f, int is_post, const char *url, const char *const *headers,
                     const char *key, const char *body, size_t len)
{
    freq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->f = f;
    r->is_post = is_post;
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
    return r;
err:
    req_free(r);
    return NULL;
}

/* Accepts one request or one join. Returns 0 or -1 (nothing owed). */
int fetch_req_submit(fetcher *f, int is_post, const char *url, const char *const *headers,
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
    freq *r = req_new(f, is_post, url, headers, key, body, len);
    if (r == NULL)
        return -1;
    r->hash = hash;
    if (req_add_waiter(r, cb, arg) != 0)
        goto err;

    r->next = f->all;
    if (f->all)
        f->all->prev = r;
    f->all = r;
    if (r->key)
        table_add(f, r);
    fetch_req_queue_push(f, r, 0);
    f->owed++;
    f->stats.requests++;
    fetch_xfer_kick(f);
    return 0;
err:
    req_free(r);
    return -1;
}
