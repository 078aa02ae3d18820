/* fetch.c -- the fetcher's API: making one, taking requests, counters, freeing it.
 *
 * The fetcher is libcurl's multi_socket interface on libevent, with retries,
 * in four files around fetch_int.h (its structs):
 *   fetch.c       this API: options and their defaults, fetch_new, fetch_free;
 *   fetch_req.c   a request outside curl: accepted or joined by key, queued,
 *                 finished; the shared header lists;
 *   fetch_xfer.c  transfers: easy handles, the pump from the queue, retries,
 *                 and how a transfer ends (the request's state diagram);
 *   fetch_sock.c  curl's sockets and timer on libevent, and the kept
 *                 connections parked between transfers.
 * fetch_new hangs curl's socket and timer callbacks and the kick event on the
 * multi and the loop. fetch_free takes every request out of where it waits,
 * tells its callers, then cleans curl up before freeing our side of its
 * sockets.
 */
#include "core/fetch.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/fetch_int.h"
#include "core/log.h"
#include "model/retry.h"

#define FETCH_TABLE_MIN 64

static int g_curl_ready;

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

/* Fills the fields of *o left 0 with their defaults (fetch.h). Returns 0, or
 * -1 when a field is negative (*o then unchanged). */
static int opts_defaults(fetch_opts *o)
{
    if (o->max_inflight < 0 || o->timeout_ms < 0 || o->connect_timeout_ms < 0 ||
        o->max_attempts < 0 || o->backoff_base_ms < 0 || o->backoff_max_ms < 0 ||
        o->retry_after_max_ms < 0)
        return -1;
    if (o->max_inflight == 0)
        o->max_inflight = 32;
    if (o->max_pending == 0)
        o->max_pending = 10000;
    if (o->timeout_ms == 0)
        o->timeout_ms = 10000;
    if (o->connect_timeout_ms == 0)
        o->connect_timeout_ms = 3000;
    if (o->max_attempts == 0)
        o->max_attempts = 5;
    if (o->backoff_base_ms == 0)
        o->backoff_base_ms = 200;
    if (o->backoff_max_ms == 0)
        o->backoff_max_ms = 30000;
    if (o->retry_after_max_ms == 0)
        o->retry_after_max_ms = 300000;
    if (o->max_response == 0)
        o->max_response = (size_t)8 << 20;
    return 0;
}

/* Hooks f's curl multi handle to the event loop (socket and timer callbacks)
 * and bounds its connections. Returns 0, or -1 when curl refuses an option. */
static int multi_setup(fetcher *f)
{
    int bad = 0;
    bad |=
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, fetch_sock_on_curl_socket) != CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, (void *)f) != CURLM_OK;
    bad |=
        curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, fetch_sock_on_curl_timer) != CURLM_OK;
    bad |= curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, (void *)f) != CURLM_OK;
    /* Never more connections to one host than transfers at once, and enough
     * cached to keep every slot's connection warm. */
    bad |= curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)f->opts.max_inflight) !=
           CURLM_OK;
    bad |=
        curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->opts.max_inflight) != CURLM_OK;
    return bad ? -1 : 0;
}

fetcher *fetch_new(struct event_base *base, const fetch_opts *opts)
{
    fetch_opts o = {0};
    if (opts != NULL)
        o = *opts;
    if (opts_defaults(&o) != 0)
        return NULL;
    if (fetch_global_init() != 0)
        return NULL;

    fetcher *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->base = base;
    f->opts = o;
    f->rng = retry_seed((uint64_t)(uintptr_t)f);
    f->tsize = FETCH_TABLE_MIN;
    f->table = calloc(f->tsize, sizeof(*f->table));
    f->spare = calloc((size_t)o.max_inflight, sizeof(*f->spare));
    f->timer = evtimer_new(base, fetch_sock_on_timer_event, f);
    f->kick = event_new(base, -1, 0, fetch_xfer_on_kick, f);
    f->multi = curl_multi_init();
    if (f->table == NULL || f->spare == NULL || f->timer == NULL || f->kick == NULL ||
        f->multi == NULL)
        goto err;
    if (multi_setup(f) != 0)
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

int fetch_get(fetcher *f, const char *url, const char *const *headers, const char *key,
              fetch_done_fn cb, void *arg)
{
    return fetch_req_submit(f, 0, url, headers, key, NULL, 0, cb, arg);
}

int fetch_post(fetcher *f, const char *url, const char *const *headers, const char *body,
               size_t len, fetch_done_fn cb, void *arg)
{
    return fetch_req_submit(f, 1, url, headers, NULL, body, len, cb, arg);
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
        fetch_req_queue_pop(f);
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
        fetch_req_finish(f, f->all, FETCH_RETRY, 0, "shutting down");

    /* curl may still call the socket and timer callbacks while it closes its
     * cached connections: free our side after it. */
    curl_multi_cleanup(f->multi);
    while (f->socks != NULL)
        fetch_sock_free(f, f->socks);
    free(f->fds);
    for (size_t i = 0; i < f->nspare; i++)
        curl_easy_cleanup(f->spare[i]);
    free(f->spare);
    fetch_req_hdrs_unref(f->last_hdrs);
    event_free(f->timer);
    event_free(f->kick);
    free(f->table);
    free(f);
}
