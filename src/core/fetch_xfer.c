/* fetch_xfer.c -- transfers: easy handles, the pump from the queue, retries, and ends.
 *
 * A request (freq) moves between three places, each with its own counter:
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
 * A transfer's handle is removed from the multi before its callbacks run: its
 * connection is back in the cache by the time a callback starts the next
 * request. Which failures are retried and how long to wait is
 * model/retry.h's; this file only arms the timer.
 */
#include "core/fetch_int.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/log.h"
#include "model/retry.h"

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
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, fetch_sock_on_curl_open) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)f) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, fetch_sock_on_curl_close) != CURLE_OK;
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
        freq *r = fetch_req_queue_pop(f);
        if (start(f, r) != 0)
            fetch_req_finish(f, r, FETCH_ERROR, 0, "cannot start the transfer");
    }
}

void fetch_xfer_on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

void fetch_xfer_kick(fetcher *f)
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
    fetch_req_queue_push(f, r, 1);
    pump(f);
}

/* r (REQ_IDLE) failed in a way that passes: wait and try again, or end it
 * when the attempts ran out. status is 0 when no answer came. */
static void retry_or_finish(fetcher *f, freq *r, long status, const char *error)
{
    if (r->attempts >= f->opts.max_attempts) {
        fetch_req_finish(f, r, FETCH_RETRY, status, error);
        return;
    }
    retry_policy rp = {.base_ms = f->opts.backoff_base_ms,
                       .max_ms = f->opts.backoff_max_ms,
                       .retry_after_max_ms = f->opts.retry_after_max_ms};
    long delay = (long)retry_delay_ms(&rp, r->attempts,
                                      status != 0 ? fetch_req_retry_after_ms(r) : -1, &f->rng);
    if (r->retry_ev == NULL)
        r->retry_ev = evtimer_new(f->base, on_retry, r);
    struct timeval tv = fetch_ms_to_tv(delay);
    if (r->retry_ev == NULL || evtimer_add(r->retry_ev, &tv) != 0) {
        fetch_req_finish(f, r, FETCH_RETRY, status, error);
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

/* r (REQ_IDLE) got no answer it can keep, for curl's reason rc: ends it, or
 * waits to retry when another try may get through. */
static void transfer_failed(fetcher *f, freq *r, CURLcode rc)
{
    if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        char why[96];
        snprintf(why, sizeof(why), "response body over %zu bytes", f->opts.max_response);
        f->stats.too_big++;
        fetch_req_finish(f, r, FETCH_ERROR, 0, why);
        return;
    }
    if (r->oom) {
        fetch_req_finish(f, r, FETCH_ERROR, 0, "out of memory");
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
        fetch_req_finish(f, r, FETCH_ERROR, 0, why);
}

/* Ends the transfer of e with curl's result rc: its request is finished, or
 * waits for a retry. */
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
            fetch_req_finish(f, r, FETCH_OK, status, NULL);
            break;
        case RETRY_AGAIN:
            retry_or_finish(f, r, status, NULL);
            break;
        case RETRY_AUTH:
        case RETRY_NEVER:
            fetch_req_finish(f, r, FETCH_ERROR, status, NULL);
            break;
        }
        return;
    }
    transfer_failed(f, r, rc);
}

/* Ends every transfer curl reports done, then fills the freed slots. */
void fetch_xfer_drain(fetcher *f)
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
