/* fetch_sock.c -- curl's sockets and timer on libevent, and the kept connections.
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
 * curl_multi_info_read (fetch_xfer_drain): that is the only place transfers
 * end. No multi function is called from inside a curl callback.
 */
#include "core/fetch_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    fsock *fs = arg;
    fetcher *f = fs->f;
    if (fs->parked) {
        /* An idle kept connection spoke: the server closed it (or broke the
         * protocol). curl finds out when it next looks; we stop watching. */
        f->stats.idle_closed++;
        fetch_sock_free(f, fs);
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
    fetch_xfer_drain(f);
}

void fetch_sock_on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fetcher *f = arg;
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK)
        log_debug("fetch timer action failed", "error", curl_multi_strerror(mc));
    fetch_xfer_drain(f);
}

void fetch_sock_free(fetcher *f, fsock *s)
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

/* A new fsock on s, for events of kind (not added yet), in f->socks and
 * f->fds and assigned to s in the multi. Returns it, or NULL (nothing of it
 * left) when out of memory or curl refuses the assignment. */
static fsock *sock_new(fetcher *f, curl_socket_t s, short kind)
{
    if (fds_room(f, s) != 0)
        return NULL;
    if (f->fds[s].fs != NULL) /* not curl's any more: it never said so */
        fetch_sock_free(f, f->fds[s].fs);
    fsock *fs = calloc(1, sizeof(*fs));
    if (fs == NULL)
        return NULL;
    fs->f = f;
    fs->fd = s;
    fs->ev = event_new(f->base, s, kind, on_socket_event, fs);
    if (fs->ev == NULL) {
        free(fs);
        return NULL;
    }
    fs->next = f->socks;
    if (f->socks)
        f->socks->prev = fs;
    f->socks = fs;
    f->fds[s].fs = fs;
    if (curl_multi_assign(f->multi, s, fs) != CURLM_OK) {
        fetch_sock_free(f, fs);
        return NULL;
    }
    return fs;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl asks, or stop. Only
 * curl_multi_assign is called from here, which libcurl allows. */
int fetch_sock_on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
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
            fetch_sock_free(f, fs);
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
            fetch_sock_free(f, fs);
            return -1;
        }
    }
    if (fs == NULL) {
        fs = sock_new(f, s, kind);
        if (fs == NULL)
            return -1;
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
curl_socket_t fetch_sock_on_curl_open(void *clientp, curlsocktype purpose,
                                      struct curl_sockaddr *addr)
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
int fetch_sock_on_curl_close(void *clientp, curl_socket_t s)
{
    fetcher *f = clientp;
    if (s >= 0 && (size_t)s < f->nfds) {
        if (f->fds[s].fs != NULL)
            fetch_sock_free(f, f->fds[s].fs);
        f->fds[s].conn = 0;
    }
    return close(s);
}

/* CURLMOPT_TIMERFUNCTION: replace the one timer; -1 deletes it, 0 fires on
 * the loop's next turn. */
int fetch_sock_on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    fetcher *f = userp;
    if (timeout_ms < 0) {
        evtimer_del(f->timer);
        return 0;
    }
    struct timeval tv = fetch_ms_to_tv(timeout_ms);
    return evtimer_add(f->timer, &tv) == 0 ? 0 : -1;
}
