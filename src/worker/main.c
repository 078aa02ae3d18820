/* main.c -- plcache-worker: settings and wiring only.
 *
 * One event_base: the worker engine (worker.h), two Redis connections (commands,
 * and the blocking moves), the fetcher for PromptLayer, and an HTTP listener
 * for /healthz, /readyz and /metrics. SIGTERM/SIGINT: stop taking, wait for
 * jobs in flight (PLCACHE_SHUTDOWN_TIMEOUT), return the rest to pl:track, exit 0.
 */
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/options.h"
#include "core/fetch.h"
#include "core/hsrv.h"
#include "core/log.h"
#include "core/ops.h"
#include "core/loop.h"
#include "core/rconn.h"
#include "core/rurl.h"
#include "core/timeutil.h"
#include "worker/worker.h"

typedef struct settings {
    char *redis_url;
    char *prefix;
    char *api_key;
    char *api_key_file;
    char *base_url;
    long concurrency;
    long max_attempts;
    char *worker_id;
    long heartbeat_timeout;
    long auth_pause;
    long shutdown_timeout;
    char *metrics_listen;
    char *log_level;
    long retry_base_ms;
    long retry_max_ms;
    long forward_timeout;
    long redis_timeout;
    long min_replicas;
} settings;

static int check_id(const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "no spaces or control characters");
            return -1;
        }
    if (n > 200) {
        snprintf(err, errlen, "at most 200 characters");
        return -1;
    }
    return 0;
}

#define S(f) offsetof(settings, f)
static const cfg_opt opts[] = {
    OPT_REDIS_URL(S(redis_url)),
    OPT_PREFIX(S(prefix)),
    OPT_API_KEY(S(api_key), S(api_key_file)),
    OPT_BASE_URL(S(base_url)),
    {"PLCACHE_CONCURRENCY", CFG_INT, "64", 0, 1, 4096, NULL, S(concurrency), 0, "N",
     "requests in flight at most"},
    {"PLCACHE_MAX_ATTEMPTS", CFG_INT, "8", 0, 1, 1000, NULL, S(max_attempts), 0, "N",
     "attempts of a job before it is dead (408, 429, 5xx, no answer)"},
    {"PLCACHE_WORKER_ID", CFG_STRING, "", 0, 0, 0, check_id, S(worker_id), 0, "ID",
     "this worker's name in pl:track:workers (default host-pid)"},
    {"PLCACHE_HEARTBEAT_TIMEOUT", CFG_INT, "10", 0, 2, 86400, NULL, S(heartbeat_timeout), 0,
     "SECONDS", "a worker silent this long is presumed dead; its jobs go back to pl:track"},
    {"PLCACHE_AUTH_PAUSE", CFG_INT, "15", 0, 1, 86400, NULL, S(auth_pause), 0, "SECONDS",
     "after a 401/403, how long to wait before trying the key again"},
    OPT_SHUTDOWN_TIMEOUT(S(shutdown_timeout)),
    {"PLCACHE_METRICS_LISTEN", CFG_STRING, "127.0.0.1:9464", 0, 0, 0, cfg_check_listen,
     S(metrics_listen), 0, "ADDR", "/healthz, /readyz and /metrics, host:port"},
    OPT_LOG_LEVEL(S(log_level)),
    {"PLCACHE_RETRY_BASE_MS", CFG_INT, "1000", 0, 1, 3600000, NULL, S(retry_base_ms), 0, "MS",
     "backoff of the first retry (full jitter, doubling per attempt)"},
    {"PLCACHE_RETRY_MAX_MS", CFG_INT, "300000", 0, 1, 86400000, NULL, S(retry_max_ms), 0, "MS",
     "the longest wait before a retry (also caps Retry-After)"},
    {"PLCACHE_FORWARD_TIMEOUT", CFG_INT, "30", 0, 1, 3600, NULL, S(forward_timeout), 0, "SECONDS",
     "one request to PromptLayer, connect to last byte"},
    OPT_REDIS_TIMEOUT(S(redis_timeout)),
    OPT_MIN_REPLICAS(S(min_replicas)),
};
#undef S

static const cfg_program program = {
    "plcache-worker",
    "forwards log jobs from Redis (pl:track) to PromptLayer",
    "Endpoints on PLCACHE_METRICS_LISTEN: GET /healthz, /readyz, /metrics.\n"
    "Signals: SIGTERM/SIGINT stop taking, finish jobs in flight, return the rest, exit 0.\n",
    opts,
    sizeof(opts) / sizeof(opts[0]),
};

typedef struct app {
    struct event_base *base;
    settings set;
    rconn *redis, *block;
    fetcher *fetch;
    worker *w;
    hsrv *srv;
    struct event *drain_timer;
    int64_t drain_deadline_us;
    int stopping, releasing;
    ops_hooks ops; /* what the metrics listener answers from */
} app;

/* The operations endpoints (core/ops.h) answer from the worker. */
static int ops_ready(void *arg)
{
    return worker_ready(((app *)arg)->w);
}

static void ops_metrics(buf *b, void *arg)
{
    worker_metrics(((app *)arg)->w, b);
}

static void redis_state(int up, void *arg)
{
    app *a = arg;
    worker_redis_state(a->w, up);
}

static void released(int rc, void *arg)
{
    app *a = arg;
    if (rc != 0)
        log_warn("could not return unfinished jobs (Redis unavailable): another worker returns "
                 "them after the heartbeat timeout");
    event_base_loopbreak(a->base);
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app *a = arg;
    size_t left = worker_busy(a->w);
    int64_t now = time_mono_us();
    int due = now >= a->drain_deadline_us;
    /* Not while a BLMOVE is under way, even past the timeout: Redis could
     * hand it a job the release has just returned, into a processing list
     * that nobody owns once our heartbeat is gone. A BLMOVE lasts a second;
     * if it never ends (Redis hung), leave without a release: our heartbeat
     * stays, and another worker returns our jobs after its timeout. */
    if (!a->releasing && due && left > 0 && worker_blocked(a->w)) {
        if (now >= a->drain_deadline_us + (int64_t)(a->set.redis_timeout + 2) * 1000000) {
            log_warn("shutdown: a blocking take never ended (Redis unavailable): another "
                     "worker returns the unfinished jobs after the heartbeat timeout");
            event_base_loopbreak(a->base);
            return;
        }
    } else if (!a->releasing && (left == 0 || due)) {
        if (left > 0) {
            char n[24];
            snprintf(n, sizeof(n), "%zu", left);
            log_warn("shutdown timeout: jobs still in flight go back to pl:track", "count", n);
        }
        a->releasing = 1;
        worker_release(a->w, released, a);
        /* If Redis never answers, leave after one more timeout. */
        a->drain_deadline_us = time_mono_us() + (int64_t)a->set.redis_timeout * 1000000;
    } else if (a->releasing && time_mono_us() >= a->drain_deadline_us) {
        event_base_loopbreak(a->base);
        return;
    }
    struct timeval tv = {0, 20 * 1000};
    evtimer_add(a->drain_timer, &tv);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app *a = arg;
    if (a->stopping)
        return;
    a->stopping = 1;
    log_info("stopping: no new jobs, finishing those in flight", "signal",
             sig == SIGINT ? "INT" : "TERM");
    worker_stop(a->w);
    a->drain_deadline_us = time_mono_us() + a->set.shutdown_timeout * 1000000L;
    drain_check(-1, 0, a);
}

int main(int argc, char **argv)
{
    app a;
    char err[512];
    int status = 2;
    rurl url = {0};
    struct event *sigs[2] = {NULL, NULL};
    memset(&a, 0, sizeof(a));

    if (opt_start(&program, argc, argv, &a.set, &a.set.log_level, &a.set.redis_url, &url,
                  &status) != 0)
        goto done;
    char id[300];
    if (a.set.worker_id[0]) {
        snprintf(id, sizeof(id), "%s", a.set.worker_id);
    } else {
        char host[256] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
    }
    signal(SIGPIPE, SIG_IGN);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    srandom((unsigned)(time_mono_us() ^ getpid()));
    status = 1;
    if (fetch_global_init() != 0) {
        fprintf(stderr, "plcache-worker: cannot initialise libcurl\n");
        goto done;
    }
    a.base = loop_base_new();
    if (a.base == NULL)
        goto done;
    rconn_opts ro = {0, (int)a.set.redis_timeout * 1000, 0, 0};
    rconn_opts bo = {0, (int)a.set.redis_timeout * 1000 + 1000, 0, 0};
    a.redis = rconn_new(a.base, &url, &ro, redis_state, &a);
    a.block = rconn_new(a.base, &url, &bo, redis_state, &a);
    fetch_opts fo = {0};
    fo.max_inflight = (int)a.set.concurrency;
    fo.max_attempts = 1;
    fo.timeout_ms = a.set.forward_timeout * 1000;
    fo.max_pending = (size_t)a.set.concurrency * 2 + 16;
    a.fetch = fetch_new(a.base, &fo);
    worker_opts wo = {a.set.prefix,
                      a.set.base_url,
                      a.set.api_key,
                      id,
                      (int)a.set.concurrency,
                      (int)a.set.max_attempts,
                      a.set.heartbeat_timeout * 1000,
                      a.set.auth_pause * 1000,
                      a.set.retry_base_ms,
                      a.set.retry_max_ms,
                      (int)a.set.min_replicas,
                      (int)a.set.redis_timeout * 500};
    a.w = a.redis && a.block && a.fetch ? worker_new(a.base, &wo, a.redis, a.block, a.fetch) : NULL;
    if (a.w == NULL) {
        log_error("cannot start (out of memory)");
        goto done;
    }
    hsrv_opts ho = {
        .listen = a.set.metrics_listen,
        .max_body = 1024,
        .max_headers = 8192,
        .idle_timeout_s = 30,
        .request_timeout_s = 10,
        .max_conns = 64,
    };
    a.ops = (ops_hooks){.ready = ops_ready, .metrics = ops_metrics, .arg = &a};
    a.srv = hsrv_new(a.base, &ho, ops_handle, &a.ops, err, sizeof(err));
    if (a.srv == NULL) {
        fprintf(stderr, "plcache-worker: PLCACHE_METRICS_LISTEN (--metrics-listen): %s\n", err);
        status = 2;
        goto done;
    }
    a.drain_timer = evtimer_new(a.base, drain_check, &a);
    sigs[0] = evsignal_new(a.base, SIGTERM, on_stop, &a);
    sigs[1] = evsignal_new(a.base, SIGINT, on_stop, &a);
    if (a.drain_timer == NULL || sigs[0] == NULL || sigs[1] == NULL ||
        evsignal_add(sigs[0], NULL) != 0 || evsignal_add(sigs[1], NULL) != 0) {
        log_error("cannot install signal handlers");
        goto done;
    }
    char where[300], conc[16];
    rurl_describe(&url, where, sizeof(where));
    snprintf(conc, sizeof(conc), "%ld", a.set.concurrency);
    log_info("plcache-worker started", "version", PLCACHE_VERSION, "id", id, "redis", where,
             "concurrency", conc, "metrics", a.set.metrics_listen);
    event_base_dispatch(a.base);
    log_info("plcache-worker stopped");
    status = 0;
done:
    if (a.w)
        worker_close(a.w);
    fetch_free(a.fetch);
    rconn_free(a.block);
    rconn_free(a.redis);
    hsrv_free(a.srv);
    worker_free(a.w);
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (a.drain_timer)
        event_free(a.drain_timer);
    if (a.base)
        event_base_free(a.base);
    rurl_free(&url);
    cfg_free(&program, &a.set);
    fetch_global_cleanup();
    return status;
}
