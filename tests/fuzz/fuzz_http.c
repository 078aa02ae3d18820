/* fuzz_http.c -- libFuzzer target for the receiver's HTTP path, bytes to answer.
 *
 * One process holds what plcache-webhook wires together -- hsrv (evhttp with
 * its limits, deadlines, framing checks and answer rewriting) and ingest
 * (routing, verification, recording) -- on one event_base, listening on
 * 127.0.0.1, with Redis answered by a stub on the same base: a RESP reader
 * that answers PING with PONG, the record script with one stream id per event
 * it was given, and anything else with OK. Each input is written on a new
 * connection, which is then half-closed; the loop runs until the server closes
 * it or a bound of turns is reached.
 *
 * The first byte picks the input's shape, so that the paths behind the
 * signature check are reached as often as the refusals:
 *   0  the rest, sent as it is (request lines, headers, framing, pipelining)
 *   1  a POST to the webhook path whose body is the rest, with a correct
 *      signature of it and a correct Content-Length
 *   2  as 1, chunked, in chunks of the sizes the body's own bytes give
 * Checks: no crash, no leak, no answer that is not HTTP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/hsrv.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/rurl.h"
#include "core/sign.h"
#include "webhook/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret"
#define MAX_TURNS 400

static struct event_base *base;
static hsrv *srv;
static int srv_port;

/* ---- the Redis stub ---------------------------------------------------------- */

/* Answers every whole RESP command in the connection's input. */
static void stub_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        unsigned char *p = evbuffer_pullup(in, -1);
        /* *N\r\n then N times $L\r\n<L bytes>\r\n */
        size_t i = 0;
        long n = 0, words = 0, numkeys = 0;
        char first[16] = "";
        if (p[0] != '*') {
            evbuffer_drain(in, len);
            return;
        }
        for (i = 1; i < len && p[i] != '\r'; i++)
            n = n * 10 + (p[i] - '0');
        i += 2;
        for (; words < n; words++) {
            if (i >= len || p[i] != '$')
                return; /* more to come */
            long l = 0;
            for (i++; i < len && p[i] != '\r'; i++)
                l = l * 10 + (p[i] - '0');
            i += 2;
            if (i + (size_t)l + 2 > len)
                return;
            if (words == 0)
                snprintf(first, sizeof(first), "%.*s", (int)(l < 15 ? l : 15), (char *)p + i);
            if (words == 2)
                numkeys = strtol((char *)p + i, NULL, 10);
            i += (size_t)l + 2;
        }
        evbuffer_drain(in, i);
        if (strcmp(first, "PING") == 0) {
            evbuffer_add_printf(out, "+PONG\r\n");
        } else if (strcmp(first, "EVAL") == 0 || strcmp(first, "EVALSHA") == 0) {
            long events = numkeys > 1 ? numkeys - 1 : 0; /* KEYS[1] is the stream */
            evbuffer_add_printf(out, "*%ld\r\n", events);
            for (long e = 0; e < events; e++)
                evbuffer_add_printf(out, "$3\r\n%ld-0\r\n", e + 1);
        } else {
            evbuffer_add_printf(out, "+OK\r\n");
        }
    }
}

static void stub_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void stub_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        return;
    }
    bufferevent_setcb(bev, stub_read, NULL, stub_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

/* ---- set up once ------------------------------------------------------------- */

static int bound_port(evutil_socket_t fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    return getsockname(fd, (struct sockaddr *)&a, &l) == 0 ? ntohs(a.sin_port) : -1;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR);
    base = event_base_new();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *l =
        evconnlistener_new_bind(base, stub_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&a, sizeof(a));
    if (base == NULL || l == NULL)
        abort();
    char url_text[64], err[256];
    snprintf(url_text, sizeof(url_text), "redis://127.0.0.1:%d/0",
             bound_port(evconnlistener_get_fd(l)));
    static rurl url;
    if (rurl_parse(url_text, &url, err, sizeof(err)) != 0)
        abort();
    rconn *redis = rconn_new(base, &url, NULL, NULL, NULL);
    sign_keys keys;
    if (redis == NULL || sign_keys_parse(&keys, SECRET, err, sizeof(err)) != 0)
        abort();
    ingest_opts io = {
        .prefix = "pl:",
        .path = "/webhooks/promptlayer",
        .tolerance_s = 0,
        .retry_after_s = 5,
        .serve_metrics = 1,
    };
    ingest *in = ingest_new(base, &io, redis, &keys);
    hsrv_opts ho = {
        .listen = "127.0.0.1:0",
        .max_body = 1 << 16,
        .max_headers = 4096,
        .idle_timeout_s = 5,
        .request_timeout_s = 5,
        .max_conns = 64,
        .first_byte_timeout_s = 5,
        .max_buffered = 1 << 20,
    };
    srv = in ? hsrv_new(base, &ho, ingest_handle, in, err, sizeof(err)) : NULL;
    if (srv == NULL)
        abort();
    ingest_set_server(in, srv);
    hsrv_set_counter(srv, ingest_count, in);
    srv_port = hsrv_port(srv);
    /* Let the Redis link come up. */
    for (int i = 0; i < 200 && !rconn_ready(redis); i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* ---- one input --------------------------------------------------------------- */

/* The request the input stands for, in b. */
static void build(buf *b, const uint8_t *data, size_t size)
{
    int mode = size > 0 ? data[0] % 3 : 0;
    const char *body = size > 0 ? (const char *)data + 1 : "";
    size_t len = size > 0 ? size - 1 : 0;
    if (mode == 0) {
        buf_append(b, body, len);
        return;
    }
    char sig[65];
    sign_hmac_hex(SECRET, strlen(SECRET), body, len, sig);
    buf_printf(b, "POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-PromptLayer-Signature: %s\r\n",
               sig);
    if (mode == 1) {
        buf_printf(b, "Content-Length: %zu\r\nConnection: close\r\n\r\n", len);
        buf_append(b, body, len);
        return;
    }
    buf_puts(b, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (size_t at = 0; at < len;) {
        size_t n = 1 + (unsigned char)body[at] % 64;
        if (n > len - at)
            n = len - at;
        buf_printf(b, "%zx\r\n", n);
        buf_append(b, body + at, n);
        buf_puts(b, "\r\n");
        at += n;
    }
    buf_puts(b, "0\r\n\r\n");
}

/* Connects the non-blocking fd to a within 5 s. The handshake is the
 * kernel's (the receiver accepts it in its next turn), so waiting here does
 * not need the loop; a signal (libFuzzer's timer) only makes it wait again. */
static int connected(int fd, const struct sockaddr_in *a)
{
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0)
        return 1;
    if (errno != EINPROGRESS)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    while ((r = poll(&p, 1, 5000)) < 0 && errno == EINTR)
        ;
    int err = 0;
    socklen_t len = sizeof(err);
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        errno = r == 0 ? ETIMEDOUT : err ? err : errno;
        return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base == NULL)
        setup();
    buf req;
    buf_init(&req, 1 << 20);
    build(&req, data, size);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)srv_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Each input comes from the next loopback address (127.1.0.0 and up, 16
     * million of them): thousands of inputs a second leave as many sockets in
     * TIME_WAIT, on either side, and a SYN that meets one of them waits a
     * second for a retry. Each address is used once in millions of inputs. */
    static uint32_t next_src;
    struct sockaddr_in src = {
        .sin_family = AF_INET,
        .sin_addr.s_addr = htonl(0x7f010000u + next_src++ % 0xfe0000u)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        evutil_make_socket_nonblocking(fd) != 0 || !connected(fd, &a)) {
        fprintf(stderr, "fuzz_http: no connection to the receiver (%s); %zu open\n",
                strerror(errno), hsrv_conns(srv));
        abort();
    }
    size_t sent = 0;
    int eof = 0;
    char answer[4096];
    size_t got = 0;
    for (int turn = 0; turn < MAX_TURNS && !eof; turn++) {
        if (sent < req.len) {
            ssize_t w = write(fd, req.data + sent, req.len - sent);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN)
                sent = req.len; /* the server closed: read what it said */
            if (sent == req.len)
                shutdown(fd, SHUT_WR);
        }
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        for (;;) {
            char tmp[4096];
            ssize_t r = read(fd, tmp, sizeof(tmp));
            if (r > 0) {
                size_t n = (size_t)r < sizeof(answer) - got ? (size_t)r : sizeof(answer) - got;
                memcpy(answer + got, tmp, n);
                got += n;
                continue;
            }
            eof = r == 0 || (r < 0 && errno != EAGAIN);
            break;
        }
    }
    close(fd);
    /* Whatever came back is HTTP. */
    if (got >= 5 && memcmp(answer, "HTTP/", 5) != 0)
        abort();
    /* Let the server see the close and free the connection. */
    for (int i = 0; i < 4; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

    buf_free(&req);
    return 0;
}
