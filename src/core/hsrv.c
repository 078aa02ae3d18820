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
 * Deadlines hang on the same bufferevent, one timer per connection, so that no
 * connection holds a slot without working for it:
 *   - from accept, the first byte of a request must come within
 *     first_byte_timeout_s (a TLS handshake included): a client that connects
 *     and says nothing is cut off in seconds, not after the idle timeout;
 *   - from a request's first byte, its answer must be queued within
 *     request_timeout_s (bytes added to the input arm it, bytes added to the
 *     output disarm it), so a client trickling bytes is cut off too;
 *   - once its answer is written, a keep-alive connection waits for the next
 *     request under evhttp's idle timeout.
 * When a deadline passes, the connection is failed as a read timeout; a
 * request still held by the handler is detached by evhttp and freed when the
 * handler replies.
 *
 * Connections that hold no request (waiting for their first byte, or idle
 * between requests with nothing left to write) are on an LRU list. At the
 * connection bound a new client is not kept waiting while such a connection
 * exists: the oldest one is closed to make room (from an event of its own,
 * outside evhttp's callbacks), and the listener pauses only when every open
 * connection is working on a request. With max_conns_per_peer, a peer (an IP
 * address, the trusted ones excepted) may hold at most that many
 * connections; one more is closed at once.
 *
 * A plain connection also gets a `keep` event: EV_READ on its socket, for
 * as long as the connection lives. evhttp stops reading while a request is
 * handled and starts again once it is answered; for the receiver those fall
 * in different loop turns (the answer waits for Redis), and each cost an
 * epoll_ctl. With `keep` registered the socket's interest in reading never
 * changes, and libevent makes no system call for either. `keep` does nothing
 * when it fires in a turn where evhttp read from the socket (`fed`). If it
 * fires when evhttp did not read (data or EOF arrived while evhttp is not
 * reading: a pipelined request, a client hanging up), it steps aside (del)
 * until evhttp reads from the socket again, so that a level-triggered socket
 * with unread bytes never spins the loop.
 *
 * Answers are JSON, all of them. libevent writes some answers itself -- 413
 * for a body over the limit, 400 for headers over theirs or a request it
 * cannot parse, 417 -- as HTML pages, before any handler sees the request.
 * Bytes added to a connection's output while no answer of ours is being
 * written are libevent's; such an answer is rewritten, from an event run
 * after libevent finished writing it into the buffer and before the socket
 * can take it, into the same status with a JSON body, and reported to the
 * owner (hsrv_set_counter) so that it is counted like the others.
 *
 * Request framing is checked before a handler sees a request, because a
 * proxy in front that frames it otherwise lets a request hide inside another
 * (request smuggling): two Content-Length headers that differ, a
 * Transfer-Encoding other than exactly "chunked" (libevent 2.1 reads
 * "gzip, chunked" as no body), Transfer-Encoding with Content-Length, and,
 * seen in the raw bytes of the header section, obsolete line folding and
 * lines ended by a bare LF, are answered 400 and the connection closed.
 *
 * (A pass-through filter bufferevent would count closes too, but libevent
 * 2.1's filter tells evhttp an answer is written when it is only queued, and
 * evhttp then closes the socket under a "Connection: close" answer.)
 *
 * HTTPS: with a TLS context set, the bevcb makes an OpenSSL socket
 * bufferevent in the accepting state instead (as libevent's
 * sample/https-server.c does). Its input and output buffers hold plaintext,
 * so the deadline and the unsent-bytes count above work unchanged; the
 * ciphertext goes straight from SSL_write to the socket. A handshake sends no
 * plaintext, so the deadline is armed at accept and disarmed when the
 * handshake is done (OpenSSL's info callback): a client cannot trickle its
 * handshake for ever either. Each connection's SSL holds a reference on the
 * context it was made from, so a new context (SIGHUP) serves new connections
 * while the old ones finish on theirs.
 */
#include "core/hsrv.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/log.h"

/* ---- open connections per peer ------------------------------------------- */

/* A peer: its IPv4 (4 bytes) or IPv6 (16 bytes) address. */
typedef struct hsrv_peer {
    unsigned char addr[16];
    int len;
} hsrv_peer;

typedef struct peer_entry {
    struct peer_entry *next;
    hsrv_peer peer;
    size_t conns;
} peer_entry;

#define PEER_BUCKETS 1024

/* Counts of open connections by peer, entries freed at 0; and the peers that
 * are never bounded. */
typedef struct hsrv_peers {
    peer_entry *bucket[PEER_BUCKETS];
    hsrv_peer trusted[HSRV_MAX_TRUSTED];
    size_t ntrusted;
} hsrv_peers;

static size_t peer_hash(const hsrv_peer *p)
{
    size_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < p->len; i++)
        h = (h ^ p->addr[i]) * 16777619u;
    return h % PEER_BUCKETS;
}

static int peer_same(const hsrv_peer *a, const hsrv_peer *b)
{
    return a->len == b->len && memcmp(a->addr, b->addr, (size_t)a->len) == 0;
}

/* The address of a socket's peer (an IPv4-mapped IPv6 address as IPv4), or
 * -1 when it has none we can bound (a Unix socket). */
static int peer_of(evutil_socket_t fd, hsrv_peer *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(out, 0, sizeof(*out));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        memcpy(out->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        out->len = 4;
        return 0;
    }
    if (ss.ss_family != AF_INET6)
        return -1;
    const unsigned char *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) {
        memcpy(out->addr, a + 12, 4);
        out->len = 4;
    } else {
        memcpy(out->addr, a, 16);
        out->len = 16;
    }
    return 0;
}

static int peer_exempt(const hsrv_peers *t, const hsrv_peer *p)
{
    for (size_t i = 0; i < t->ntrusted; i++)
        if (peer_same(&t->trusted[i], p))
            return 1;
    return 0;
}

/* Counts one more connection of p unless it has `max` already: 1 counted, 0
 * over the bound, -1 out of memory (counted as allowed: not counted). */
static int hsrv_peers_take(hsrv_peers *t, const hsrv_peer *p, size_t max)
{
    peer_entry **b = &t->bucket[peer_hash(p)];
    for (peer_entry *e = *b; e != NULL; e = e->next) {
        if (peer_same(&e->peer, p)) {
            if (e->conns >= max)
                return 0;
            e->conns++;
            return 1;
        }
    }
    peer_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->peer = *p;
    e->conns = 1;
    e->next = *b;
    *b = e;
    return 1;
}

static void hsrv_peers_release(hsrv_peers *t, const hsrv_peer *p)
{
    for (peer_entry **b = &t->bucket[peer_hash(p)]; *b != NULL; b = &(*b)->next) {
        peer_entry *e = *b;
        if (peer_same(&e->peer, p)) {
            if (--e->conns == 0) {
                *b = e->next;
                free(e);
            }
            return;
        }
    }
}

static void hsrv_peers_free(hsrv_peers *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < PEER_BUCKETS; i++) {
        while (t->bucket[i] != NULL) {
            peer_entry *e = t->bucket[i];
            t->bucket[i] = e->next;
            free(e);
        }
    }
    free(t);
}

/* ---- the server ----------------------------------------------------------- */

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
    size_t unsent;                         /* answer bytes queued on connections, not yet written */
    SSL_CTX *tls;                          /* one reference of ours, or NULL: plain HTTP */
    struct hconn *spare_head, *spare_tail; /* connections holding no request, oldest first */
    size_t spare_n;
    struct event *evict; /* closes spare connections while over the bound */
    hsrv_peers *peers;   /* open connections per peer, when max_conns_per_peer is set */
    hsrv_stats_t st;
    struct hconn **by_fd; /* adopted connections by socket, for the framing check */
    size_t by_fd_cap;
    size_t held;          /* bytes of requests past their first HSRV_SMALL_REQUEST, summed */
    hsrv_counter counter; /* told of the answers hsrv gives itself */
    void *counter_arg;
};

/* Set while an answer of ours is written into a connection's output: bytes
 * added at any other time are an answer libevent writes itself. */
static int writing_ours;

/* Where a connection is in its life (see the top of this file). */
typedef enum hphase {
    PHASE_FIRST,   /* accepted, no byte of a request yet: first_byte_timeout_s runs */
    PHASE_REQUEST, /* a request's bytes came: request_timeout_s runs until its answer */
    PHASE_IDLE,    /* answered and written: evhttp's idle timeout */
} hphase;

typedef struct hconn {
    hsrv *srv;
    struct bufferevent *bev; /* owned by evhttp; we hold a reference until adopted */
    struct event *adopt;
    struct event *deadline;
    struct evbuffer_cb_entry *in_cb, *out_cb;
    struct event *keep; /* plain connections: see the top of this file */
    int fed;            /* evhttp read bytes since keep last fired */
    int armed;
    hphase phase;
    struct hconn *prev, *next; /* on the spare list (phase FIRST or IDLE, adopted) */
    int spare;
    struct event *fix; /* rewrites an answer libevent wrote itself (see the top) */
    int fix_pending;
    int fd; /* in srv->by_fd, or -1 */
    /* The raw header section of the request being read: */
    int hdr_scan;              /* still in it */
    unsigned char hdr_prev;    /* the byte before */
    size_t hdr_line_len;       /* bytes of the current line, CR excepted */
    size_t hdr_lines;          /* lines ended so far */
    const char *framing_error; /* what was wrong in it, or NULL */
    size_t req_bytes;          /* raw bytes of the request being read */
    size_t held;               /* its share of srv->held */
    int over_budget;           /* closed for passing max_buffered */
    hsrv_peer peer;            /* its address, when counted against a per-peer bound */
    int counted;               /* counted in srv->peers */
    int refuse;                /* close at adoption: TLS wanted but no TLS bufferevent, or its peer
                                  holds too many connections */
} hconn;

static void spare_add(hconn *hc)
{
    hsrv *s = hc->srv;
    if (hc->spare)
        return;
    hc->spare = 1;
    hc->prev = s->spare_tail;
    hc->next = NULL;
    if (s->spare_tail)
        s->spare_tail->next = hc;
    else
        s->spare_head = hc;
    s->spare_tail = hc;
    s->spare_n++;
}

static void spare_remove(hconn *hc)
{
    hsrv *s = hc->srv;
    if (!hc->spare)
        return;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        s->spare_head = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    else
        s->spare_tail = hc->prev;
    hc->prev = hc->next = NULL;
    hc->spare = 0;
    s->spare_n--;
}

/* Arms hc's one timer for `secs` from now, replacing what it waited for. */
static void arm(hconn *hc, int secs)
{
    struct timeval tv = {secs, 0};
    evtimer_add(hc->deadline, &tv);
    hc->armed = 1;
}

static void disarm(hconn *hc)
{
    if (hc->armed) {
        evtimer_del(hc->deadline);
        hc->armed = 0;
    }
}

/* Gives back hc's share of the bytes held by requests in progress. */
static void release_held(hconn *hc)
{
    hsrv *s = hc->srv;
    s->held -= hc->held < s->held ? hc->held : s->held;
    hc->held = 0;
    hc->req_bytes = 0;
}

static void update_listener(hsrv *s)
{
    struct evconnlistener *l = s->sock ? evhttp_bound_socket_get_listener(s->sock) : NULL;
    if (l == NULL || s->stopped)
        return;
    /* Accept while a slot is free, or a spare connection can give its own. */
    int want_pause = s->live >= (size_t)s->opts.max_conns + s->spare_n;
    if (want_pause && !s->paused) {
        evconnlistener_disable(l);
        s->paused = 1;
        s->pauses++;
    } else if (!want_pause && s->paused) {
        evconnlistener_enable(l);
        s->paused = 0;
    }
}

/* Forgets hc on the connection's SSL (if any), which may outlive hc. */
static void hconn_detach_ssl(hconn *hc)
{
    SSL *ssl = bufferevent_openssl_get_ssl(hc->bev);
    if (ssl != NULL) {
        SSL_set_info_callback(ssl, NULL);
        SSL_set_app_data(ssl, NULL);
    }
}

static void hconn_free(hconn *hc)
{
    if (hc->fix)
        event_free(hc->fix);
    if (hc->keep)
        event_free(hc->keep);
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
     * called from its buffers (or its SSL) any more. */
    hconn_detach_ssl(hc);
    if (hc->in_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(hc->bev), hc->in_cb);
    if (hc->out_cb) {
        struct evbuffer *out = bufferevent_get_output(hc->bev);
        size_t left = evbuffer_get_length(out);
        s->unsent -= left < s->unsent ? left : s->unsent;
        evbuffer_remove_cb_entry(out, hc->out_cb);
    }
    spare_remove(hc);
    release_held(hc);
    if (hc->counted)
        hsrv_peers_release(s->peers, &hc->peer);
    if (hc->fd >= 0 && (size_t)hc->fd < s->by_fd_cap && s->by_fd[hc->fd] == hc)
        s->by_fd[hc->fd] = NULL;
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
    if (hc->over_budget)
        hc->srv->st.over_budget++;
    else if (hc->phase == PHASE_FIRST)
        hc->srv->st.first_byte_timeouts++;
    else
        hc->srv->st.request_timeouts++;
    /* Fail the connection as a read timeout: evhttp closes it. */
    bufferevent_trigger_event(hc->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
}

static void keep_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *hc = arg;
    if (hc->fed) {
        hc->fed = 0;
        return;
    }
    event_del(hc->keep);
}

/* Reads n raw bytes of the header section of a request (its request line and
 * header lines, up to the empty line), noting what HTTP/1.1 forbids and
 * libevent 2.1 lets pass: obsolete line folding, a line ended by a bare LF. */
static void scan_header_bytes(hconn *hc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n && hc->hdr_scan; i++) {
        unsigned char c = p[i];
        if (c == '\n') {
            if (hc->hdr_prev != '\r' && hc->framing_error == NULL)
                hc->framing_error = "a line ended by a bare LF";
            if (hc->hdr_line_len == 0 && hc->hdr_lines > 0)
                hc->hdr_scan = 0; /* the empty line: the body (if any) follows */
            hc->hdr_lines++;
            hc->hdr_line_len = 0;
        } else if (c != '\r') {
            if (hc->hdr_line_len == 0 && hc->hdr_lines > 0 && (c == ' ' || c == '\t') &&
                hc->framing_error == NULL)
                hc->framing_error = "obsolete line folding";
            hc->hdr_line_len++;
        }
        hc->hdr_prev = c;
    }
}

/* Scans the bytes of b from offset `from` to its end. */
static void scan_buffer(hconn *hc, struct evbuffer *b, size_t from)
{
    struct evbuffer_ptr ptr;
    if (evbuffer_ptr_set(b, &ptr, from, EVBUFFER_PTR_SET) != 0)
        return;
    struct evbuffer_iovec v[8];
    while (hc->hdr_scan) {
        int n = evbuffer_peek(b, -1, &ptr, v, 8);
        if (n <= 0)
            return;
        size_t took = 0;
        for (int i = 0; i < n && i < 8; i++) {
            scan_header_bytes(hc, v[i].iov_base, v[i].iov_len);
            took += v[i].iov_len;
        }
        if (n <= 8 || evbuffer_ptr_set(b, &ptr, took, EVBUFFER_PTR_ADD) != 0)
            return;
    }
}

/* Counts n more raw bytes of hc's request. Past its first HSRV_SMALL_REQUEST
 * (every real delivery is smaller) they count against max_buffered, the
 * bytes all requests in progress may hold together; the connection that would
 * pass it is closed, from its timer (never here, inside the bufferevent's
 * read), so stalled large bodies cannot claim the memory of every slot. */
static void hold(hconn *hc, size_t n)
{
    hsrv *s = hc->srv;
    hc->req_bytes += n;
    size_t want = hc->req_bytes > HSRV_SMALL_REQUEST ? hc->req_bytes - HSRV_SMALL_REQUEST : 0;
    if (want <= hc->held)
        return;
    size_t more = want - hc->held;
    if (s->opts.max_buffered > 0 && s->held + more > s->opts.max_buffered) {
        hc->over_budget = 1;
        release_held(hc);
        struct timeval now = {0, 0};
        evtimer_add(hc->deadline, &now);
        hc->armed = 1;
        return;
    }
    s->held += more;
    hc->held = want;
}

/* A new request begins: its header section is read from the start. */
static void scan_start(hconn *hc)
{
    hc->hdr_scan = 1;
    hc->hdr_prev = '\n';
    hc->hdr_line_len = 0;
    hc->hdr_lines = 0;
    hc->framing_error = NULL;
}

static void input_added(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    hconn *hc = arg;
    if (info->n_added > 0) {
        hc->fed = 1;
        if (hc->keep != NULL && !event_pending(hc->keep, EV_READ, NULL))
            event_add(hc->keep, NULL);
    }
    if (info->n_added > 0 && hc->phase != PHASE_REQUEST) {
        /* A request's first byte: its own deadline replaces the first-byte one. */
        hc->phase = PHASE_REQUEST;
        spare_remove(hc);
        arm(hc, hc->srv->opts.request_timeout_s);
        update_listener(hc->srv);
        scan_start(hc);
    }
    if (info->n_added > 0 && hc->hdr_scan) {
        size_t len = evbuffer_get_length(b);
        scan_buffer(hc, b, len >= info->n_added ? len - info->n_added : 0);
    }
    if (info->n_added > 0 && !hc->over_budget)
        hold(hc, info->n_added);
}

static void output_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    hconn *hc = arg;
    hsrv *s = hc->srv;
    s->unsent += info->n_added;
    s->unsent -= info->n_deleted < s->unsent ? info->n_deleted : s->unsent;
    if (info->n_added > 0 && !writing_ours && !hc->fix_pending) {
        /* libevent writes an answer of its own: rewritten once it is whole. */
        hc->fix_pending = 1;
        event_active(hc->fix, EV_TIMEOUT, 0);
    }
    if (info->n_added > 0 && hc->phase == PHASE_REQUEST)
        disarm(hc); /* the answer is queued */
    if (info->n_deleted > 0 && evbuffer_get_length(b) == 0 && hc->phase == PHASE_REQUEST) {
        /* Written. A pipelined request already read waits under its own
         * deadline; otherwise the connection idles and may give its slot. */
        struct evbuffer *in = bufferevent_get_input(hc->bev);
        release_held(hc); /* the request is done */
        if (evbuffer_get_length(in) > 0) {
            arm(hc, s->opts.request_timeout_s);
            scan_start(hc); /* what is left in the input is the next request */
            scan_buffer(hc, in, 0);
            hold(hc, evbuffer_get_length(in));
        } else {
            hc->phase = PHASE_IDLE;
            spare_add(hc);
            update_listener(s);
        }
    }
}

/* The reason phrase of the codes libevent answers itself. */
static const char *phrase(int code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 413:
        return "Payload Too Large";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    default:
        return "Error";
    }
}

/* The JSON body of an answer hsrv gives for code. */
static const char *error_json(int code)
{
    switch (code) {
    case 400:
        return "{\"ok\":false,\"error\":\"bad request\"}";
    case 413:
        return "{\"ok\":false,\"error\":\"body too large\"}";
    case 417:
        return "{\"ok\":false,\"error\":\"expectation failed\"}";
    case 431:
        return "{\"ok\":false,\"error\":\"headers too large\"}";
    default:
        return code >= 500 ? "{\"ok\":false,\"error\":\"server error\"}"
                           : "{\"ok\":false,\"error\":\"refused\"}";
    }
}

/* Rewrites the answer libevent wrote into hc's output (it is whole now: the
 * event runs after libevent's call returned, and before the socket can be
 * written) into the same status with a JSON body, closing the connection as
 * libevent's error answers do. Informational answers (100 Continue) stay. */
static void fix(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *hc = arg;
    hsrv *s = hc->srv;
    hc->fix_pending = 0;
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    char head[12];
    if (evbuffer_copyout(out, head, 12) != 12 || memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
        return; /* not the start of an answer: part of it was written already */
    int code = 0;
    for (int i = 9; i < 12; i++)
        code = isdigit((unsigned char)head[i]) ? code * 10 + (head[i] - '0') : -1000;
    if (code < 400 || code > 599)
        return;
    const char *json = error_json(code);
    writing_ours = 1;
    evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        code, phrase(code), strlen(json), json);
    writing_ours = 0;
    if (s->counter != NULL)
        s->counter(code, s->counter_arg);
}

/* Records hc under its socket, for on_request. 0, or -1 on no memory. */
static int by_fd_put(hsrv *s, hconn *hc, int fd)
{
    if ((size_t)fd >= s->by_fd_cap) {
        size_t cap = s->by_fd_cap ? s->by_fd_cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        hconn **n = realloc(s->by_fd, cap * sizeof(*n));
        if (n == NULL)
            return -1;
        memset(n + s->by_fd_cap, 0, (cap - s->by_fd_cap) * sizeof(*n));
        s->by_fd = n;
        s->by_fd_cap = cap;
    }
    s->by_fd[fd] = hc;
    hc->fd = fd;
    return 0;
}

/* Counts hc against its peer's bound of connections (unless trusted);
 * a peer past its bound has hc refused. */
static void adopt_peer(hsrv *s, hconn *hc, evutil_socket_t sock)
{
    if (!hc->refuse && s->peers != NULL && sock >= 0 && peer_of(sock, &hc->peer) == 0 &&
        !peer_exempt(s->peers, &hc->peer)) {
        int took = hsrv_peers_take(s->peers, &hc->peer, (size_t)s->opts.max_conns_per_peer);
        hc->counted = took == 1;
        if (took == 0) {
            hc->refuse = 1;
            s->st.peer_refusals++;
        }
    }
}

/* Watches a plain (not TLS) connection's socket for bytes of its own, for
 * keep_fired. Without it (out of memory) the connection works as before. */
static void adopt_keep(hconn *hc, evutil_socket_t sock)
{
    if (!hc->refuse && sock >= 0 && bufferevent_openssl_get_ssl(hc->bev) == NULL) {
        hc->keep =
            event_new(bufferevent_get_base(hc->bev), sock, EV_READ | EV_PERSIST, keep_fired, hc);
        if (hc->keep != NULL)
            event_add(hc->keep, NULL);
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
        hconn_detach_ssl(hc);
        bufferevent_decref(hc->bev);
        s->live--;
        update_listener(s);
        hconn_free(hc);
        return;
    }
    hc->in_cb = evbuffer_add_cb(bufferevent_get_input(hc->bev), input_added, hc);
    hc->out_cb = evbuffer_add_cb(bufferevent_get_output(hc->bev), output_changed, hc);
    evhttp_connection_set_closecb(evcon, conn_closed, hc);
    evutil_socket_t sock = bufferevent_getfd(hc->bev);
    if (sock >= 0)
        by_fd_put(s, hc, sock); /* without it (no memory) framing is checked as headers only */
    adopt_peer(s, hc, sock);
    if (!hc->refuse && hc->phase == PHASE_FIRST) {
        spare_add(hc);
        update_listener(s); /* a burst of accepts may have paused it before adoption */
    }
    adopt_keep(hc, sock);
    bufferevent_decref(hc->bev);
    if (hc->refuse) {
        /* Never plain HTTP on an HTTPS listener, nor a peer past its bound:
         * evhttp closes it now (and conn_closed frees hc). */
        bufferevent_trigger_event(hc->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
    }
}

/* OpenSSL's report on a connection's handshake (set on each server SSL). */
static void tls_info(const SSL *ssl, int where, int ret)
{
    hconn *hc = SSL_get_app_data(ssl);
    if (hc == NULL)
        return;
    /* The first-byte deadline runs on through the handshake: a client that
     * completes it and says nothing holds no slot longer than one that does
     * not. */
    if ((where & SSL_CB_ALERT) && (where & SSL_CB_WRITE) && hc->phase == PHASE_FIRST &&
        SSL_alert_type_string(ret)[0] == 'F')
        log_debug("TLS handshake refused", "alert", SSL_alert_desc_string_long(ret));
}

/* A new TLS bufferevent for an accepted connection, or NULL. */
static struct bufferevent *tls_bev(hsrv *s, hconn *hc, struct event_base *base)
{
    SSL *ssl = SSL_new(s->tls);
    if (ssl == NULL)
        return NULL;
    SSL_set_app_data(ssl, hc);
    SSL_set_info_callback(ssl, tls_info);
    /* Frees ssl when it fails, and with the bufferevent otherwise. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    /* A client that closes without close_notify is at its end of stream
     * (evhttp closes either way; this keeps it from looking like an error). */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    hsrv *s = arg;
    hconn *hc = calloc(1, sizeof(*hc));
    if (hc == NULL)
        return NULL;
    hc->srv = s;
    hc->phase = PHASE_FIRST;
    if (s->tls != NULL) {
        hc->bev = tls_bev(s, hc, base);
        hc->refuse = hc->bev == NULL;
    }
    if (hc->bev == NULL)
        hc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    hc->fd = -1;
    hc->adopt = event_new(base, -1, 0, adopt, hc);
    hc->deadline = evtimer_new(base, deadline_passed, hc);
    hc->fix = event_new(base, -1, 0, fix, hc);
    if (hc->bev == NULL || hc->adopt == NULL || hc->deadline == NULL || hc->fix == NULL) {
        /* evhttp then makes a plain bufferevent: the connection is served
         * but not counted (with TLS on, a TLS client's handshake is not
         * HTTP and is refused). Only happens when memory runs out. */
        if (hc->bev) {
            hconn_detach_ssl(hc);
            bufferevent_free(hc->bev);
        }
        hconn_free(hc);
        return NULL;
    }
    arm(hc, s->opts.first_byte_timeout_s);
    bufferevent_incref(hc->bev);
    event_active(hc->adopt, EV_TIMEOUT, 0);
    s->live++;
    if (s->live > (size_t)s->opts.max_conns)
        event_active(s->evict, EV_TIMEOUT, 0); /* not here, inside evhttp's accept */
    update_listener(s);
    return hc->bev;
}

/* Over the bound: the oldest connections holding no request give their slots
 * (failed as a timeout, evhttp closes them; conn_closed takes them off the
 * list). Runs from its own event, never inside evhttp's callbacks. */
static void evict(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hsrv *s = arg;
    while (s->live > (size_t)s->opts.max_conns && s->spare_head != NULL) {
        hconn *hc = s->spare_head;
        spare_remove(hc);
        s->st.evictions++;
        disarm(hc);
        bufferevent_trigger_event(hc->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
    }
    update_listener(s);
}

/* Inside a handler called by evhttp (any server's): evhttp's own frames are
 * on the stack, and an answer must go the usual way. */
static int in_handler;

/* What makes the framing of req ambiguous, or NULL: see the top of this file. */
static const char *framing_error(hsrv *s, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    hconn *hc = fd >= 0 && (size_t)fd < s->by_fd_cap ? s->by_fd[fd] : NULL;
    if (hc != NULL && hc->framing_error != NULL)
        return hc->framing_error;
    const char *cl = NULL, *te = NULL;
    struct evkeyval *h;
    for (h = evhttp_request_get_input_headers(req)->tqh_first; h != NULL; h = h->next.tqe_next) {
        if (evutil_ascii_strcasecmp(h->key, "Content-Length") == 0) {
            if (cl != NULL && strcmp(cl, h->value) != 0)
                return "two different Content-Length headers";
            cl = h->value;
        } else if (evutil_ascii_strcasecmp(h->key, "Transfer-Encoding") == 0) {
            if (te != NULL || evutil_ascii_strcasecmp(h->value, "chunked") != 0)
                return "a Transfer-Encoding other than chunked";
            te = h->value;
        }
    }
    if (cl != NULL && te != NULL)
        return "Transfer-Encoding with Content-Length";
    return NULL;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    hsrv *s = arg;
    const char *bad = framing_error(s, req);
    if (bad != NULL) {
        /* Closed after the answer: what follows in the stream cannot be
         * framed either. */
        log_debug("request refused", "why", bad);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        hsrv_reply(req, 400, "{\"ok\":false,\"error\":\"bad request\"}");
        if (s->counter != NULL)
            s->counter(400, s->counter_arg);
        return;
    }
    in_handler++;
    s->handler(req, s->arg);
    in_handler--;
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

static int hsrv_parse_trusted(const char *list, hsrv_peers *t, char *err, size_t errlen);

/* Sets the house limits on s->http (STYLE.md: libevent's defaults are unsafe
 * for the internet) and routes every request through on_request. */
static void set_limits(hsrv *s, const hsrv_opts *opts)
{
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
}

/* The port s->sock is bound to (listen port 0 picks one), or 0 when the
 * socket cannot say. */
static int bound_port(const hsrv *s)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(s->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
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
    s->opts.trusted = NULL;
    if (s->opts.first_byte_timeout_s <= 0)
        s->opts.first_byte_timeout_s = opts->request_timeout_s;
    s->evict = event_new(base, -1, 0, evict, s);
    if (s->evict == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    if (opts->max_conns_per_peer > 0) {
        s->peers = calloc(1, sizeof(*s->peers));
        if (s->peers == NULL) {
            snprintf(err, errlen, "out of memory");
            goto err;
        }
        if (hsrv_parse_trusted(opts->trusted, s->peers, err, errlen) != 0)
            goto err;
    }
    s->handler = handler;
    s->arg = arg;
    if (split_listen(opts->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad listen address %s", opts->listen);
        goto err;
    }
    set_limits(s, opts);
    s->sock = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (s->sock == NULL) {
        snprintf(err, errlen, "cannot listen on %s", opts->listen);
        goto err;
    }
    s->port = bound_port(s);
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

void hsrv_stats(const hsrv *s, hsrv_stats_t *out)
{
    *out = s->st;
}

void hsrv_set_counter(hsrv *s, hsrv_counter fn, void *arg)
{
    s->counter = fn;
    s->counter_arg = arg;
}

/* Reads "a,b,..." (IPv4 or IPv6 addresses) into t->trusted. */
static int hsrv_parse_trusted(const char *list, hsrv_peers *t, char *err, size_t errlen)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char one[64];
        if (n == 0 || n >= sizeof(one) || t->ntrusted == HSRV_MAX_TRUSTED) {
            snprintf(err, errlen, "trusted addresses: a list of at most %d IP addresses",
                     HSRV_MAX_TRUSTED);
            return -1;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        hsrv_peer *peer = &t->trusted[t->ntrusted];
        if (inet_pton(AF_INET, one, peer->addr) == 1) {
            peer->len = 4;
        } else if (inet_pton(AF_INET6, one, peer->addr) == 1) {
            peer->len = 16;
        } else {
            snprintf(err, errlen, "trusted addresses: %.60s is not an IP address", one);
            return -1;
        }
        t->ntrusted++;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int hsrv_set_tls(hsrv *s, SSL_CTX *ctx)
{
    if (ctx != NULL && SSL_CTX_up_ref(ctx) != 1)
        return -1;
    SSL_CTX_free(s->tls);
    s->tls = ctx;
    return 0;
}

int hsrv_tls(const hsrv *s)
{
    return s->tls != NULL;
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
    if (s->evict)
        event_free(s->evict);
    hsrv_peers_free(s->peers);
    free(s->by_fd);
    SSL_CTX_free(s->tls);
    free(s);
}

/* Writes an answer evhttp has just queued on evcon at once, and tells evhttp
 * it is written (its write callback: the request is freed and the connection
 * reads the next one). evhttp's usual way waits for the socket to be
 * reported writable: an epoll_ctl to watch for writing, a loop turn, another
 * epoll_ctl to stop. Done here, the watch is set and cleared in the same turn,
 * which libevent's changelist turns into no system call at all. Only outside
 * evhttp's handler callback (evhttp has no frame of its own on the stack: an
 * answer from a Redis reply), on plain sockets (a TLS answer must go through
 * SSL_write), and only when the whole answer fits in the socket at once;
 * otherwise the write event finishes it as before. */
static void send_now(struct evhttp_connection *evcon)
{
    if (evcon == NULL || in_handler)
        return;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (bev == NULL || bufferevent_openssl_get_ssl(bev) != NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || evbuffer_get_length(out) == 0)
        return;
    if (evbuffer_write(out, fd) <= 0 || evbuffer_get_length(out) != 0)
        return;
    bufferevent_trigger(bev, EV_WRITE, 0); /* may free evcon and bev */
}

void hsrv_reply(struct evhttp_request *req, int code, const char *json)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (json)
        evbuffer_add(out, json, strlen(json));
    /* NULL when the client left: evhttp_send_reply then frees req. */
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    writing_ours = 1;
    evhttp_send_reply(req, code, NULL, NULL);
    writing_ours = 0;
    send_now(evcon);
}

void hsrv_reply_metrics(struct evhttp_request *req, const char *text, size_t n)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evbuffer_add(evhttp_request_get_output_buffer(req), text, n);
    writing_ours = 1;
    evhttp_send_reply(req, 200, NULL, NULL);
    writing_ours = 0;
}
