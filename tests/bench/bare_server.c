/* bare_server.c -- bare-http: the ceiling of libevent's evhttp on this machine.
 *
 * Answers 200 {"ok":true} (Content-Type: application/json) to every request,
 * with the same evhttp limits the daemons set and nothing else: no routing,
 * no Redis, no JSON parsing. A benchmark of a plcache daemon is read against
 * what this server does under the same load generator (wrk). The body is
 * added by reference, so a request allocates nothing of ours.
 *
 *   bare-http --listen 127.0.0.1:PORT      (SIGTERM or SIGINT: exit 0)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define BODY "{\"ok\":true}"
#define MAX_HEADERS (64 * 1024)
#define MAX_BODY (1024 * 1024)
#define TIMEOUT_S 30
#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fputs("usage: bare-http [--listen HOST:PORT]   (default 127.0.0.1:8099)\n"
          "Answers 200 {\"ok\":true} to every request; SIGTERM/SIGINT exit 0.\n",
          out);
}

/* Splits "HOST:PORT" into host (cap bytes) and port. Returns 0 or -1. */
static int parse_listen(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= cap)
        return -1;
    errno = 0;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add_reference(evhttp_request_get_output_buffer(req), BODY, sizeof(BODY) - 1, NULL,
                           NULL);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    char host[256] = "127.0.0.1";
    int port = 8099;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        const char *val = NULL;
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            val = argv[++i];
        else if (strncmp(argv[i], "--listen=", 9) == 0)
            val = argv[i] + 9;
        if (val == NULL) {
            fprintf(stderr, "bare-http: unknown or incomplete option %s\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
        if (parse_listen(val, host, sizeof(host), &port) != 0) {
            fprintf(stderr, "bare-http: --listen must be HOST:PORT, not %s\n", val);
            usage(stderr);
            return EXIT_USAGE;
        }
    }

    int status = 1;
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct event *sigterm = NULL;
    struct event *sigint = NULL;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    /* The same base configuration as the daemons (src/core/loop.c), so the
     * ceiling and the receiver differ only in what they do per request. */
    struct event_config *cfg = event_config_new();
    if (cfg != NULL) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    http = (base != NULL) ? evhttp_new(base) : NULL;
    if (http == NULL) {
        fprintf(stderr, "bare-http: cannot create the event base\n");
        goto done;
    }
    evhttp_set_max_headers_size(http, MAX_HEADERS);
    evhttp_set_max_body_size(http, MAX_BODY);
    evhttp_set_timeout(http, TIMEOUT_S);
    evhttp_set_default_content_type(http, "application/json");
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(http, on_request, NULL);
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
    if (bound == NULL) {
        fprintf(stderr, "bare-http: cannot listen on %s:%d\n", host, port);
        goto done;
    }
    /* With port 0 the kernel picked one: report the real one. */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "bare-http: cannot watch signals\n");
        goto done;
    }
    fprintf(stderr, "level=info msg=listening host=%s port=%d\n", host, port);
    if (event_base_dispatch(base) < 0)
        goto done;
    status = 0;
done:
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (http != NULL)
        evhttp_free(http);
    if (base != NULL)
        event_base_free(base);
    libevent_global_shutdown();
    return status;
}
