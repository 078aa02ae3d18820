/* main.c -- plcache-worker: settings and wiring only.
 *
 * In the daemon shell (core/daemon.h), one event_base: the worker engine
 * (worker.h), two Redis connections (commands, and the blocking moves), the
 * fetcher for PromptLayer, and an HTTP listener for /healthz, /readyz and
 * /metrics. SIGTERM/SIGINT: stop taking, wait for jobs in flight
 * (PLCACHE_SHUTDOWN_TIMEOUT), return the rest to pl:track, exit 0.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/daemon.h"
#include "core/fetch.h"
#include "core/log.h"
#include "core/ops.h"
#include "core/options.h"
#include "core/rconn.h"
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

typedef struct app {
    daemon_shell d; /* the loop, the links (Redis, API), signals, drain, /metrics */
    settings set;
    worker *w;
} app;

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
    CFG_OPT(.env = "PLCACHE_CONCURRENCY", .type = CFG_INT, .def = "64", .min = 1, .max = 4096,
            .offset = S(concurrency), .metavar = "N", .help = "requests in flight at most"),
    CFG_OPT(.env = "PLCACHE_MAX_ATTEMPTS", .type = CFG_INT, .def = "8", .min = 1, .max = 1000,
            .offset = S(max_attempts), .metavar = "N",
            .help = "attempts of a job before it is dead (408, 429, 5xx, no answer)"),
    CFG_OPT(.env = "PLCACHE_WORKER_ID", .type = CFG_STRING, .def = "", .check = check_id,
            .offset = S(worker_id), .metavar = "ID",
            .help = "this worker's name in pl:track:workers (default host-pid)"),
    CFG_OPT(.env = "PLCACHE_HEARTBEAT_TIMEOUT", .type = CFG_INT, .def = "10", .min = 2,
            .max = 86400, .offset = S(heartbeat_timeout), .metavar = "SECONDS",
            .help = "a worker silent this long is presumed dead; its jobs go back to pl:track"),
    CFG_OPT(.env = "PLCACHE_AUTH_PAUSE", .type = CFG_INT, .def = "15", .min = 1, .max = 86400,
            .offset = S(auth_pause), .metavar = "SECONDS",
            .help = "after a 401/403, how long to wait before trying the key again"),
    OPT_SHUTDOWN_TIMEOUT(S(shutdown_timeout)),
    CFG_OPT(.env = "PLCACHE_METRICS_LISTEN", .type = CFG_STRING, .def = "127.0.0.1:9464",
            .check = cfg_check_listen, .offset = S(metrics_listen), .metavar = "ADDR",
            .help = "/healthz, /readyz and /metrics, host:port"),
    OPT_LOG_LEVEL(S(log_level)),
    CFG_OPT(.env = "PLCACHE_RETRY_BASE_MS", .type = CFG_INT, .def = "1000", .min = 1,
            .max = 3600000, .offset = S(retry_base_ms), .metavar = "MS",
            .help = "backoff of the first retry (full jitter, doubling per attempt)"),
    CFG_OPT(.env = "PLCACHE_RETRY_MAX_MS", .type = CFG_INT, .def = "300000", .min = 1,
            .max = 86400000, .offset = S(retry_max_ms), .metavar = "MS",
            .help = "the longest wait before a retry (also caps Retry-After)"),
    CFG_OPT(.env = "PLCACHE_FORWARD_TIMEOUT", .type = CFG_INT, .def = "30", .min = 1, .max = 3600,
            .offset = S(forward_timeout), .metavar = "SECONDS",
            .help = "one request to PromptLayer, connect to last byte"),
    OPT_REDIS_TIMEOUT(S(redis_timeout)),
    OPT_MIN_REPLICAS(S(min_replicas)),
};
#undef S

static const cfg_program program = {
    .name = "plcache-worker",
    .summary = "forwards log jobs from Redis (pl:track) to PromptLayer",
    .usage_tail =
        "Endpoints on PLCACHE_METRICS_LISTEN: GET /healthz, /readyz, /metrics.\n"
        "Signals: SIGTERM/SIGINT stop taking, finish jobs in flight, return the rest, exit 0;\n"
        "SIGHUP re-reads PROMPTLAYER_API_KEY_FILE (the old key stays if it cannot).\n",
    .opts = opts,
    .nopts = sizeof(opts) / sizeof(opts[0]),
};

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

/* The drain (core/daemon.h): stop taking, wait for the jobs in flight, and
 * not past a BLMOVE under way, even after the timeout: Redis could hand it a
 * job the release has just returned, into a processing list that nobody owns
 * once our heartbeat is gone. A BLMOVE lasts a second; if it never ends
 * (Redis hung), leave without a release: our heartbeat stays, and another
 * worker returns our jobs after its timeout. Then return the rest to
 * pl:track. */
static void app_stop(void *arg)
{
    worker_stop(((app *)arg)->w);
}

static size_t app_busy(void *arg)
{
    return worker_busy(((app *)arg)->w);
}

static int app_held(void *arg)
{
    return worker_blocked(((app *)arg)->w);
}

static void released(int rc, void *arg)
{
    app *a = arg;
    if (rc != 0)
        log_warn("could not return unfinished jobs (Redis unavailable): another worker returns "
                 "them after the heartbeat timeout");
    daemon_exit(&a->d);
}

static void app_release(void *arg)
{
    app *a = arg;
    worker_release(a->w, released, a);
}

/* SIGHUP: the API key's file again (PROMPTLAYER_API_KEY_FILE); the worker
 * never stops on it. */
static void app_reload(void *arg)
{
    app *a = arg;
    char err[300];
    int rc =
        cfg_reload_secret(cfg_find(&program, "PROMPTLAYER_API_KEY"), &a->set, err, sizeof(err));
    if (rc == 1) {
        log_warn("SIGHUP: the API key comes from the environment, nothing to re-read "
                 "(use PROMPTLAYER_API_KEY_FILE)");
        return;
    }
    if (rc != 0 || worker_set_api_key(a->w, a->set.api_key) != 0) {
        log_error("SIGHUP: API key not reloaded, the old one stays", "why",
                  rc != 0 ? err : "out of memory");
        return;
    }
    log_info("SIGHUP: API key reloaded");
}

/* Before the links go: the worker ends its jobs as the fetcher and the
 * connections give their pending callbacks a last call. */
static void app_close(void *arg)
{
    app *a = arg;
    if (a->w)
        worker_close(a->w);
}

static const daemon_hooks hooks = {
    .stop = app_stop,
    .busy = app_busy,
    .held = app_held,
    .finish = app_release,
    .reload = app_reload,
    .stop_msg = "stopping: no new jobs, finishing those in flight",
    .timeout_msg = "shutdown timeout: jobs still in flight go back to pl:track",
    .held_msg = "shutdown: a blocking take never ended (Redis unavailable): another worker "
                "returns the unfinished jobs after the heartbeat timeout",
};

/* Makes the worker from the settings on the daemon's links, named id.
 * Returns 0, or -1 after logging why. */
static int start_worker(app *a, const char *id)
{
    worker_opts wo = {
        .prefix = a->set.prefix,
        .base_url = a->set.base_url,
        .api_key = a->set.api_key,
        .id = id,
        .concurrency = (int)a->set.concurrency,
        .max_attempts = (int)a->set.max_attempts,
        .heartbeat_timeout_ms = a->set.heartbeat_timeout * 1000,
        .auth_pause_ms = a->set.auth_pause * 1000,
        .retry_base_ms = a->set.retry_base_ms,
        .retry_max_ms = a->set.retry_max_ms,
        .min_replicas = (int)a->set.min_replicas,
        /* WAIT must end well before the command timeout drops the link. */
        .wait_timeout_ms = (int)a->set.redis_timeout * 500,
    };
    a->w = worker_new(a->d.base, &wo, a->d.redis, a->d.block, a->d.fetch);
    if (a->w == NULL) {
        log_error("cannot start (out of memory)");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    app a;
    memset(&a, 0, sizeof(a));

    if (daemon_load(&a.d, &program, argc, argv, &a.set) != 0)
        goto done;
    char id[300];
    daemon_instance_id(id, sizeof(id), a.set.worker_id);
    /* A BLMOVE blocks 1 s on its own link. */
    daemon_links links = {
        .block_ms = 1000,
        .fetch = {.max_inflight = (int)a.set.concurrency,
                  .max_attempts = 1,
                  .timeout_ms = a.set.forward_timeout * 1000,
                  .max_pending = (size_t)a.set.concurrency * 2 + 16},
        .on_state = redis_state,
        .arg = &a,
    };
    if (daemon_open(&a.d, &links) != 0)
        goto done;
    if (start_worker(&a, id) != 0)
        goto done;
    if (daemon_serve_ops(&a.d, a.set.metrics_listen, ops_ready, ops_metrics, &a) != 0)
        goto done;
    if (daemon_arm(&a.d, &hooks, &a) != 0)
        goto done;
    char conc[16];
    snprintf(conc, sizeof(conc), "%ld", a.set.concurrency);
    log_info("plcache-worker started", "version", PLCACHE_VERSION, "id", id, "redis", a.d.where,
             "concurrency", conc, "metrics", a.set.metrics_listen);
    daemon_run(&a.d);
done:
    daemon_disconnect(&a.d, app_close, &a);
    worker_free(a.w);
    daemon_free(&a.d);
    return a.d.status;
}
