/* hsrv.c -- evhttp with size limits, deadlines and a connection bound.
 *
 * libevent 2.1 tells nobody when evhttp opens or closes a server connection.
 * Two public hooks get us there: evhttp_set_bevcb lets us make each
 * connection's bufferevent (so we see every accept), and a connection's close
 * callback tells us when evhttp frees it. Between the two, the evhttp_connection
 * does not exist yet; so the bevcb keeps a reference on the new bufferevent and
 * activates an `adopt` event, which runs right after the accept callback
 * returns, before any I/O on that connection: it finds the connection as the
 * argument evhttp gave the bufferevent's callbacks and sets the close callback.
 *
 * The request deadline hangs on the same bufferevent: bytes added to its input
 * arm it, bytes added to its output (an answer) disarm it. When it passes, the
 * connection is failed as a read timeout; a request still held by the handler
 * is detached by evhttp and freed when the handler replies.
 *
 * (A pass-through filter bufferevent would count closes too, but libevent
 * 2.1's filter tells evhttp an answer is written when it is only queued, and
 * evhttp then closes the socket under a "Connection: close" answer.)
 */
#include "core/hsrv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct hsrv {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    hsrv_opts opts;
    hsrv_handler handler;
    void *arg;
    size_t live;
    int port;
    int paused;
    int stopped;
    unsigned long pauses;
    size_t unsent; /* answer bytes queued on connections, not yet written */
};

typedef struct hconn {
    hsrv *srv;
    struct bufferevent *bev; /* owned by evhttp; we hold a reference until adopted */
    struct event *adopt;
    struct event *deadline;
    struct evbuffer_cb_entry *in_cb, *out_cb;
    int armed;
} hconn;

static void update_listener(hsrv *s)
{
    struct evconnlistener *l = s->sock ? evhttp_bound_socket_get_listener(s->sock) : NULL;
    if (l == NULL || s->stopped)
        return;
    int want_pause = s->live >= (size_t)s->opts.max_conns;
    if (want_pause && !s->paused) {
        evconnlistener_disable(l);
        s->paused = 1;
        s->pauses++;
    } else if (!want_pause && s->paused) {
        evconnlistener_enable(l);
        s->paused = 0;
    }
}

static void hconn_free(hconn *hc)
{
    if (hc->adopt)
        event_free(hc->adopt);
    if (hc->deadline)
        event_free(hc->deadline);
    free(hc);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    hconn *hc = arg;
    hsrv *s = hc->srv;
    /* evhttp frees the bufferevent right after this: nothing of ours may be
     * called from its buffers any more. */
    if (hc->in_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(hc->bev), hc->in_cb);
    if (hc->out_cb) {
        struct evbuffer *out = bufferevent_get_output(hc->bev);
        size_t left = evbuffer_get_length(out);
        s->unsent -= left < s->unsent ? left : s->unsent;
        evbuffer_remove_cb_entry(out, hc->out_cb);
    }
    hconn_free(hc);
    s->live--;
    update_listener(s);
}

static void deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *hc = arg;
    hc->armed = 0;
    /* Fail the connection as a read timeout: evhttp closes it. */
    bufferevent_trigger_event(hc->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
}

static void input_added(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    hconn *hc = arg;
    if (info->n_added > 0 && !hc->armed) {
        struct timeval tv = {hc->srv->opts.request_timeout_s, 0};
        evtimer_add(hc->deadline, &tv);
        hc->armed = 1;
    }
}

static void output_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    hconn *hc = arg;
    hsrv *s = hc->srv;
    s->unsent += info->n_added;
    s->unsent -= info->n_deleted < s->unsent ? info->n_deleted : s->unsent;
    if (info->n_added > 0 && hc->armed) {
        evtimer_del(hc->deadline);
        hc->armed = 0;
    }
}

static void adopt(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *hc = arg;
    hsrv *s = hc->srv;
    bufferevent_data_cb rd = NULL, wr = NULL;
    bufferevent_event_cb ev = NULL;
    void *evcon = NULL;
    bufferevent_getcb(hc->bev, &rd, &wr, &ev, &evcon);
    event_free(hc->adopt);
    hc->adopt = NULL;
    /* bufferevent_free clears the callbacks: no argument means evhttp already
     * gave the connection up (it failed while being set up). */
    if (evcon == NULL || ev == NULL) {
        bufferevent_decref(hc->bev);
        s->live--;
        update_listener(s);
        hconn_free(hc);
        return;
    }
    hc->in_cb = evbuffer_add_cb(bufferevent_get_input(hc->bev), input_added, hc);
    hc->out_cb = evbuffer_add_cb(bufferevent_get_output(hc->bev), output_changed, hc);
    evhttp_connection_set_closecb(evcon, conn_closed, hc);
    bufferevent_decref(hc->bev);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    hsrv *s = arg;
    hconn *hc = calloc(1, sizeof(*hc));
    if (hc == NULL)
        return NULL;
    hc->srv = s;
    hc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    hc->adopt = event_new(base, -1, 0, adopt, hc);
    hc->deadline = evtimer_new(base, deadline_passed, hc);
    if (hc->bev == NULL || hc->adopt == NULL || hc->deadline == NULL) {
        /* evhttp then makes a plain bufferevent: the connection is served
         * but not counted. Only happens when memory runs out. */
        if (hc->bev)
            bufferevent_free(hc->bev);
        hconn_free(hc);
        return NULL;
    }
    bufferevent_incref(hc->bev);
    event_active(hc->adopt, EV_TIMEOUT, 0);
    s->live++;
    update_listener(s);
    return hc->bev;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    hsrv *s = arg;
    s->handler(req, s->arg);
}

static int split_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        h = listen + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

hsrv *hsrv_new(struct event_base *base, const hsrv_opts *opts, hsrv_handler handler, void *arg,
               char *err, size_t errlen)
{
    char host[256];
    int port;
    hsrv *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->http = evhttp_new(base);
    if (s->http == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    s->base = base;
    s->opts = *opts;
    s->opts.listen = NULL;
    s->handler = handler;
    s->arg = arg;
    if (split_listen(opts->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad listen address %s", opts->listen);
        goto err;
    }
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)opts->max_headers);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)opts->max_body);
    evhttp_set_timeout(s->http, opts->idle_timeout_s);
    evhttp_set_default_content_type(s->http, "application/json");
    /* Every method reaches the handler, which answers 405 with Allow itself. */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_bevcb(s->http, make_bev, s);
    evhttp_set_gencb(s->http, on_request, s);
    s->sock = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (s->sock == NULL) {
        snprintf(err, errlen, "cannot listen on %s", opts->listen);
        goto err;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(s->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        else
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return s;
err:
    hsrv_free(s);
    return NULL;
}

int hsrv_port(const hsrv *s)
{
    return s->port;
}

size_t hsrv_unsent(const hsrv *s)
{
    return s->unsent;
}

size_t hsrv_conns(const hsrv *s)
{
    return s->live;
}

unsigned long hsrv_paused(const hsrv *s)
{
    return s->pauses;
}

void hsrv_stop_accepting(hsrv *s)
{
    if (s->sock && !s->stopped) {
        evhttp_del_accept_socket(s->http, s->sock);
        s->sock = NULL;
    }
    s->stopped = 1;
}

void hsrv_free(hsrv *s)
{
    if (s == NULL)
        return;
    /* Frees every connection: their close callbacks run now and need s. */
    if (s->http)
        evhttp_free(s->http);
    free(s);
}

void hsrv_reply(struct evhttp_request *req, int code, const char *json)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (json)
        evbuffer_add(out, json, strlen(json));
    evhttp_send_reply(req, code, NULL, NULL);
}

void hsrv_reply_metrics(struct evhttp_request *req, const char *text, size_t n)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evbuffer_add(evhttp_request_get_output_buffer(req), text, n);
    evhttp_send_reply(req, 200, NULL, NULL);
}
