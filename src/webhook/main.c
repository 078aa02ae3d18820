/* main.c -- plcache-webhook: settings and wiring only.
 *
 * One event_base carries everything: the HTTP listener (hsrv), the Redis link
 * (rconn) and the signals, in the daemon shell (core/daemon.h) that starts,
 * drains and stops the process. SIGTERM/SIGINT stop accepting, let the
 * deliveries waiting on Redis finish (at most PLCACHE_SHUTDOWN_TIMEOUT), then
 * exit 0. SIGHUP re-reads the secrets from PLCACHE_WEBHOOK_SECRET_FILE, and
 * the certificate and key of PLCACHE_TLS_CERT/PLCACHE_TLS_KEY when the
 * listener is HTTPS (new connections get the new ones; a bad file keeps the
 * old).
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/daemon.h"
#include "core/fetch.h"
#include "core/hsrv.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/ops.h"
#include "core/options.h"
#include "core/rconn.h"
#include "core/sign.h"
#include "core/tls.h"
#include "webhook/apply.h"
#include "webhook/ingest.h"

typedef struct settings {
    char *redis_url;
    char *prefix;
    char *listen;
    char *path;
    char *secret;
    char *secret_file;
    char *tls_cert;
    char *tls_key;
    long max_body;
    long tolerance;
    long shutdown_timeout;
    char *log_level;
    long max_conns;
    long max_headers;
    long idle_timeout;
    long request_timeout;
    long redis_timeout;
    char *api_key;
    char *api_key_file;
    char *base_url;
    long resync;
    long fetch_concurrency;
    long fetch_timeout;
    long claim_idle;
    long events_maxlen;
    long min_replicas;
    long llm_kwargs;
    char *metrics_listen;
    long first_byte_timeout;
    long max_conns_per_peer;
    char *trusted_proxies;
    long max_buffered;
} settings;

typedef struct app {
    daemon_shell d; /* the loop, the links (Redis, API), signals, drain, /metrics */
    settings set;
    applier *apply;
    hsrv *srv;
    ingest *in;
} app;

static int check_path(const char *v, char *err, size_t errlen)
{
    if (v[0] != '/' || strcmp(v, "/healthz") == 0 || strcmp(v, "/readyz") == 0 ||
        strcmp(v, "/metrics") == 0 || strpbrk(v, "?# \t") != NULL) {
        snprintf(err, errlen, "must start with / and not be /healthz, /readyz or /metrics");
        return -1;
    }
    return 0;
}

/* A comma-separated list of IP addresses (PLCACHE_TRUSTED_PROXIES). */
static int check_ips(const char *v, char *err, size_t errlen)
{
    if (v[0] == '\0')
        return 0; /* none */
    char one[64];
    size_t n = 0;
    for (const char *p = v;; p++) {
        if (*p != ',' && *p != '\0') {
            if (n + 1 >= sizeof(one))
                break;
            one[n++] = *p;
            continue;
        }
        one[n] = '\0';
        unsigned char addr[16];
        if (n == 0 || (inet_pton(AF_INET, one, addr) != 1 && inet_pton(AF_INET6, one, addr) != 1))
            break;
        n = 0;
        if (*p == '\0')
            return 0;
    }
    snprintf(err, errlen, "expected IP addresses separated by commas");
    return -1;
}

#define S(f) offsetof(settings, f)
static const cfg_opt opts[] = {
    OPT_REDIS_URL(S(redis_url)),
    OPT_PREFIX(S(prefix)),
    CFG_OPT(.env = "PLCACHE_LISTEN", .type = CFG_STRING, .def = "127.0.0.1:8080",
            .check = cfg_check_listen, .offset = S(listen), .metavar = "ADDR",
            .help = "HTTP listener, host:port"),
    CFG_OPT(.env = "PLCACHE_TLS_CERT", .type = CFG_STRING, .offset = S(tls_cert), .metavar = "PATH",
            .help = "PEM certificate (then its chain): the listener speaks HTTPS only; needs "
                    "PLCACHE_TLS_KEY"),
    CFG_OPT(.env = "PLCACHE_TLS_KEY", .type = CFG_STRING, .offset = S(tls_key), .metavar = "PATH",
            .help = "PEM private key of PLCACHE_TLS_CERT, without passphrase (never logged)"),
    CFG_OPT(.env = "PLCACHE_WEBHOOK_PATH", .type = CFG_STRING, .def = "/webhooks/promptlayer",
            .check = check_path, .offset = S(path), .metavar = "PATH",
            .help = "path PromptLayer posts to"),
    CFG_OPT(.env = "PLCACHE_WEBHOOK_SECRET", .type = CFG_SECRET, .required = 1,
            .check = sign_check_list, .offset = S(secret), .file_offset = S(secret_file),
            .metavar = "S1[,S2]",
            .help = "webhook signing secret(s), comma-separated for rotation"),
    CFG_OPT(.env = "PLCACHE_MAX_BODY", .type = CFG_INT, .def = "1048576", .min = 1,
            .max = 64L << 20, .offset = S(max_body), .metavar = "BYTES",
            .help = "largest request body accepted (413 above)"),
    CFG_OPT(.env = "PLCACHE_MAX_BUFFERED", .type = CFG_INT, .def = "33554432", .min = 0,
            .max = 1L << 40, .offset = S(max_buffered), .metavar = "BYTES",
            .help = "bytes requests being received may hold together beyond the first 32 KiB of "
                    "each (real deliveries are smaller); a connection that would pass it is closed "
                    "(0: no bound)"),
    CFG_OPT(.env = "PLCACHE_TIMESTAMP_TOLERANCE", .type = CFG_INT, .def = "300", .min = 0,
            .max = 366L * 86400, .offset = S(tolerance), .metavar = "SECONDS",
            .help = "how far an event's timestamp may be from now (0 = no check)"),
    OPT_SHUTDOWN_TIMEOUT(S(shutdown_timeout)),
    OPT_LOG_LEVEL(S(log_level)),
    CFG_OPT(.env = "PLCACHE_MAX_CONNECTIONS", .type = CFG_INT, .def = "1024", .min = 1,
            .max = 1000000, .offset = S(max_conns), .metavar = "N",
            .help = "open HTTP connections at most; more wait in the kernel's backlog"),
    CFG_OPT(.env = "PLCACHE_MAX_HEADER_SIZE", .type = CFG_INT, .def = "16384", .min = 1024,
            .max = 1L << 20, .offset = S(max_headers), .metavar = "BYTES",
            .help = "request line and headers at most (400 above)"),
    CFG_OPT(.env = "PLCACHE_IDLE_TIMEOUT", .type = CFG_INT, .def = "60", .min = 1, .max = 3600,
            .offset = S(idle_timeout), .metavar = "SECONDS",
            .help = "an idle keep-alive connection is closed after this"),
    CFG_OPT(.env = "PLCACHE_REQUEST_TIMEOUT", .type = CFG_INT, .def = "10", .min = 1, .max = 3600,
            .offset = S(request_timeout), .metavar = "SECONDS",
            .help = "a request must be received and answered within this from its first byte"),
    CFG_OPT(.env = "PLCACHE_FIRST_BYTE_TIMEOUT", .type = CFG_INT, .def = "5", .min = 1, .max = 3600,
            .offset = S(first_byte_timeout), .metavar = "SECONDS",
            .help = "a new connection (TLS handshake included) must send a request's first byte "
                    "within this"),
    CFG_OPT(.env = "PLCACHE_MAX_CONNECTIONS_PER_PEER", .type = CFG_INT, .def = "0", .min = 0,
            .max = 1000000, .offset = S(max_conns_per_peer), .metavar = "N",
            .help = "open connections of one IP address at most, past it a new one is closed at "
                    "once (0: no bound); PLCACHE_TRUSTED_PROXIES are never bounded"),
    CFG_OPT(.env = "PLCACHE_TRUSTED_PROXIES", .type = CFG_STRING, .def = "127.0.0.1,::1",
            .check = check_ips, .offset = S(trusted_proxies), .metavar = "IP[,IP]",
            .help = "addresses PLCACHE_MAX_CONNECTIONS_PER_PEER never bounds: a proxy or load "
                    "balancer in front, whose connections carry many clients (\"\" for none)"),
    OPT_REDIS_TIMEOUT(S(redis_timeout)),
    OPT_API_KEY(S(api_key), S(api_key_file)),
    OPT_BASE_URL(S(base_url)),
    OPT_LLM_KWARGS(S(llm_kwargs)),
    CFG_OPT(.env = "PLCACHE_RESYNC_INTERVAL", .type = CFG_INT, .def = "600", .min = 0,
            .max = 86400L * 7, .offset = S(resync), .metavar = "SECONDS",
            .help =
                "reconcile every cached template with the API at start and this often (0 = off)"),
    CFG_OPT(.env = "PLCACHE_FETCH_CONCURRENCY", .type = CFG_INT, .def = "32", .min = 1, .max = 1024,
            .offset = S(fetch_concurrency), .metavar = "N",
            .help = "API requests in flight at most"),
    CFG_OPT(.env = "PLCACHE_FETCH_TIMEOUT", .type = CFG_INT, .def = "10", .min = 1, .max = 600,
            .offset = S(fetch_timeout), .metavar = "SECONDS",
            .help = "one API request, connect to last byte"),
    CFG_OPT(.env = "PLCACHE_CLAIM_IDLE", .type = CFG_INT, .def = "60", .min = 1, .max = 86400,
            .offset = S(claim_idle), .metavar = "SECONDS",
            .help = "events left pending this long by a receiver are taken over by another"),
    CFG_OPT(.env = "PLCACHE_EVENTS_MAXLEN", .type = CFG_INT, .def = "100000", .min = 10,
            .max = 100000000L, .offset = S(events_maxlen), .metavar = "N",
            .help = "pl:events is trimmed near this many entries, never of events not yet applied "
                    "unless it grows to 10 times as many"),
    OPT_MIN_REPLICAS(S(min_replicas)),
    CFG_OPT(.env = "PLCACHE_METRICS_LISTEN", .type = CFG_STRING, .check = cfg_check_listen,
            .offset = S(metrics_listen), .metavar = "ADDR",
            .help =
                "a listener of its own for /healthz, /readyz and /metrics, host:port (the "
                "production setting: /metrics is then not served on the public PLCACHE_LISTEN)"),
};
#undef S

static const cfg_program program = {
    .name = "plcache-webhook",
    .summary = "receives PromptLayer webhooks, verifies them and records them in Redis",
    .usage_tail =
        "Endpoints: POST <PLCACHE_WEBHOOK_PATH>, GET /healthz, /readyz, /metrics (on\n"
        "PLCACHE_METRICS_LISTEN instead when it is set).\n"
        "Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP re-reads PLCACHE_WEBHOOK_SECRET_FILE,\n"
        "PROMPTLAYER_API_KEY_FILE and the TLS files (a file that fails keeps the old value).\n",
    .opts = opts,
    .nopts = sizeof(opts) / sizeof(opts[0]),
};

/* SIGTERM/SIGINT (core/daemon.h): no new connections, no new events. */
static void app_stop(void *arg)
{
    app *a = arg;
    hsrv_stop_accepting(a->srv);
    applier_stop(a->apply);
}

/* Deliveries waiting for Redis, events being applied, and answers not yet
 * written to their sockets. */
static size_t app_busy(void *arg)
{
    app *a = arg;
    return ingest_inflight(a->in) + applier_busy(a->apply) + (hsrv_unsent(a->srv) > 0);
}

/* Before the links go (core/daemon.h): the applier ends its jobs as the
 * fetcher and the connections give their pending callbacks a last call.
 * Deliveries still waiting get their 503 while the receiver exists. */
static void app_close(void *arg)
{
    app *a = arg;
    if (a->apply)
        applier_close(a->apply);
}

/* The metrics listener (core/ops.h) answers from the receiver. */
static int ops_ready(void *arg)
{
    return rconn_ready(((app *)arg)->d.redis);
}

static void ops_metrics(buf *b, void *arg)
{
    ingest_metrics(b, ((app *)arg)->in);
}

static void render_more(buf *b, void *arg)
{
    app *a = arg;
    fetch_stats_t st;
    char labels[64];
    applier_metrics(a->apply, b);
    fetch_stats(a->d.fetch, &st);
    metrics_header(b, "plcache_api_requests_total", "counter",
                   "PromptLayer API answers, by status (0: no answer).");
    for (int code = FETCH_STATUS_MIN; code <= FETCH_STATUS_MAX; code++) {
        unsigned long n = st.by_status[code - FETCH_STATUS_MIN];
        if (n == 0)
            continue;
        snprintf(labels, sizeof(labels), "status=\"%d\"", code);
        metrics_sample(b, "plcache_api_requests_total", labels, (double)n);
    }
    metrics_sample(b, "plcache_api_requests_total", "status=\"0\"", (double)st.net_errors);
    metrics_single(b, "plcache_api_retries_total", "counter", "API attempts made again.",
                   (double)st.retries);
    metrics_single(b, "plcache_api_coalesced_total", "counter",
                   "API fetches that joined the same fetch already in flight.",
                   (double)st.coalesced);
    metrics_single(b, "plcache_api_connections_total", "counter",
                   "New connections to the API (the rest reused one).", (double)st.connects);
    metrics_single(b, "plcache_api_inflight", "gauge", "API requests in flight.",
                   (double)fetch_inflight(a->d.fetch));
}

/* 1 when both TLS files are given, 0 when neither; -1 with err naming the
 * missing one. */
static int tls_wanted(const settings *set, char *err, size_t errlen)
{
    int cert = set->tls_cert != NULL && set->tls_cert[0] != '\0';
    int key = set->tls_key != NULL && set->tls_key[0] != '\0';
    if (cert != key) {
        snprintf(err, errlen, "%s is required with %s",
                 cert ? "PLCACHE_TLS_KEY (--tls-key)" : "PLCACHE_TLS_CERT (--tls-cert)",
                 cert ? "PLCACHE_TLS_CERT" : "PLCACHE_TLS_KEY");
        return -1;
    }
    return cert;
}

/* A new server TLS context from the settings' files (see tls_ctx_new). */
static struct ssl_ctx_st *tls_load(const settings *set, char *err, size_t errlen)
{
    tls_files f = {
        .cert = set->tls_cert,
        .key = set->tls_key,
        .cert_label = "PLCACHE_TLS_CERT (--tls-cert)",
        .key_label = "PLCACHE_TLS_KEY (--tls-key)",
    };
    return tls_ctx_new(&f, err, errlen);
}

static void tls_log(struct ssl_ctx_st *ctx, const char *msg)
{
    char subject[256], not_after[32];
    int expired = tls_describe(ctx, subject, sizeof(subject), not_after, sizeof(not_after));
    log_info(msg, "subject", subject, "not_after", not_after);
    if (expired)
        log_warn("TLS certificate has expired", "subject", subject, "not_after", not_after);
}

/* SIGHUP: a new TLS context for new connections, or the old one kept. */
static void reload_tls(app *a)
{
    char err[512];
    struct ssl_ctx_st *ctx = tls_load(&a->set, err, sizeof(err));
    if (ctx == NULL || hsrv_set_tls(a->srv, ctx) != 0) {
        log_error("SIGHUP: TLS files not reloaded, the old certificate stays", "why",
                  ctx ? "out of memory" : err);
        tls_ctx_free(ctx);
        return;
    }
    tls_log(ctx, "SIGHUP: TLS certificate and key reloaded");
    tls_ctx_free(ctx);
}

/* SIGHUP: the API key's file again (PROMPTLAYER_API_KEY_FILE), for the
 * applier's fetches; nothing to do when the key came from the environment. */
static void reload_api_key(app *a)
{
    char err[300];
    int rc = cfg_reload_secret(cfg_find(&program, "PROMPTLAYER_API_KEY"), &a->set, err, sizeof(err));
    if (rc == 1)
        return;
    if (rc != 0 || applier_set_api_key(a->apply, a->set.api_key) != 0) {
        log_error("SIGHUP: API key not reloaded, the old one stays", "why",
                  rc != 0 ? err : "out of memory");
        return;
    }
    log_info("SIGHUP: API key reloaded");
}

/* SIGHUP: the TLS files, the API key's file and the secrets' file again. */
static void app_reload(void *arg)
{
    app *a = arg;
    char err[300];
    if (hsrv_tls(a->srv))
        reload_tls(a);
    reload_api_key(a);
    int rc =
        cfg_reload_secret(cfg_find(&program, "PLCACHE_WEBHOOK_SECRET"), &a->set, err, sizeof(err));
    if (rc == 1) {
        log_warn("SIGHUP: secrets come from the environment, nothing to re-read "
                 "(use PLCACHE_WEBHOOK_SECRET_FILE)");
        return;
    }
    sign_keys k;
    if (rc != 0 || sign_keys_parse(&k, a->set.secret, err, sizeof(err)) != 0) {
        log_error("SIGHUP: secrets not reloaded, the old ones stay", "why", err);
        return;
    }
    char n[16];
    snprintf(n, sizeof(n), "%zu", k.n);
    ingest_set_keys(a->in, &k);
    log_info("SIGHUP: secrets reloaded", "count", n);
}

static const daemon_hooks hooks = {
    .stop = app_stop,
    .busy = app_busy,
    .reload = app_reload,
    .stop_msg = "stopping: no new connections, draining",
    .timeout_msg = "shutdown timeout: work still in flight (events stay pending)",
};

/* Settings, secrets and TLS files, each checked. On 0, keys holds the
 * secrets and *tls the listener's TLS context (NULL for plain HTTP), both the
 * caller's to free; on -1 what is wrong has been said (daemon_bad_setting). */
static int app_configure(app *a, int argc, char **argv, sign_keys *keys, struct ssl_ctx_st **tls)
{
    char err[512];
    if (daemon_load(&a->d, &program, argc, argv, &a->set) != 0)
        return -1;
    if (sign_keys_parse(keys, a->set.secret, err, sizeof(err)) != 0) {
        daemon_bad_setting(&a->d, "PLCACHE_WEBHOOK_SECRET: %s", err);
        return -1;
    }
    const char *conns = "PLCACHE_MAX_CONNECTIONS (--max-connections)";
    if (daemon_reserve_fds(&a->d, conns, a->set.max_conns) != 0)
        return -1;
    int want_tls = tls_wanted(&a->set, err, sizeof(err));
    if (want_tls == 1)
        *tls = tls_load(&a->set, err, sizeof(err));
    if (want_tls < 0 || (want_tls == 1 && *tls == NULL)) {
        daemon_bad_setting(&a->d, "%s", err);
        return -1;
    }
    return 0;
}

/* The loop, both Redis links and the API fetcher (daemon_open). */
static int app_open_links(app *a)
{
    /* The applier's reads block 2 s (XREADGROUP BLOCK) on their own link. */
    daemon_links links = {
        .block_ms = 2000,
        .fetch = {.max_inflight = (int)a->set.fetch_concurrency,
                  .timeout_ms = a->set.fetch_timeout * 1000},
    };
    return daemon_open(&a->d, &links);
}

/* The receiver of deliveries; it takes the secrets out of keys. */
static int app_start_ingest(app *a, sign_keys *keys)
{
    /* WAIT must end well before the command timeout drops the link. */
    ingest_opts io = {
        .prefix = a->set.prefix,
        .path = a->set.path,
        .tolerance_s = a->set.tolerance,
        .retry_after_s = 5,
        .min_replicas = (int)a->set.min_replicas,
        .wait_timeout_ms = (int)a->set.redis_timeout * 500,
        .serve_metrics = a->set.metrics_listen == NULL,
    };
    a->in = ingest_new(a->d.base, &io, a->d.redis, keys);
    if (a->in == NULL) {
        log_error("out of memory");
        return -1;
    }
    return 0;
}

/* The HTTP listener in front of the receiver; HTTPS when tls is set (the
 * caller keeps its own reference). */
static int app_start_listener(app *a, struct ssl_ctx_st *tls)
{
    char err[512];
    hsrv_opts ho = {
        .listen = a->set.listen,
        .max_body = (size_t)a->set.max_body,
        .max_headers = (size_t)a->set.max_headers,
        .idle_timeout_s = (int)a->set.idle_timeout,
        .request_timeout_s = (int)a->set.request_timeout,
        .max_conns = (int)a->set.max_conns,
        .first_byte_timeout_s = (int)a->set.first_byte_timeout,
        .max_conns_per_peer = (int)a->set.max_conns_per_peer,
        .trusted = a->set.trusted_proxies,
        .max_buffered = (size_t)a->set.max_buffered,
    };
    a->srv = hsrv_new(a->d.base, &ho, ingest_handle, a->in, err, sizeof(err));
    if (a->srv == NULL) {
        daemon_bad_setting(&a->d, "PLCACHE_LISTEN (--listen): %s", err);
        return -1;
    }
    ingest_set_server(a->in, a->srv);
    hsrv_set_counter(a->srv, ingest_count, a->in);
    if (tls != NULL) {
        if (hsrv_set_tls(a->srv, tls) != 0) {
            log_error("out of memory");
            return -1;
        }
        tls_log(tls, "HTTPS on the listener");
    }
    return 0;
}

/* The applier: the blocking link for its reads, the fetcher; then its
 * metrics join the receiver's. */
static int app_start_applier(app *a)
{
    char consumer[300];
    applier_opts ao = {
        .prefix = a->set.prefix,
        .base_url = a->set.base_url,
        .api_key = a->set.api_key,
        .consumer = daemon_host_id(consumer, sizeof(consumer), NULL),
        .resync_s = a->set.resync,
        .claim_idle_ms = a->set.claim_idle * 1000,
        .batch = 32,
        .max_jobs = 256,
        .events_maxlen = a->set.events_maxlen,
        .llm_kwargs = (int)a->set.llm_kwargs,
    };
    a->apply = applier_new(a->d.base, &ao, a->d.redis, a->d.block, a->d.fetch);
    if (a->apply == NULL) {
        log_error("cannot start the applier (out of memory)");
        return -1;
    }
    ingest_set_metrics(a->in, render_more, a);
    return 0;
}

/* The line that says the receiver is up; keyn counts the secrets. */
static void log_listening(const app *a, const char *keyn)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", hsrv_port(a->srv));
    if (a->set.tolerance == 0)
        log_warn("PLCACHE_TIMESTAMP_TOLERANCE=0: deliveries' timestamps are not checked, so a "
                 "captured delivery can be replayed once its duplicate guard expires (24 h); "
                 "a replayed prompt_template_deleted drops the template");
    log_info("plcache-webhook listening", "version", PLCACHE_VERSION, "listen", a->set.listen,
             "port", port, "path", a->set.path, "redis", a->d.where, "secrets", keyn, "metrics",
             a->set.metrics_listen ? a->set.metrics_listen : a->set.listen);
}

int main(int argc, char **argv)
{
    app a;
    sign_keys keys = {0};
    struct ssl_ctx_st *tls = NULL;
    char keyn[16];
    memset(&a, 0, sizeof(a));

    if (app_configure(&a, argc, argv, &keys, &tls) != 0 || app_open_links(&a) != 0)
        goto done;
    snprintf(keyn, sizeof(keyn), "%zu", keys.n); /* before ingest_new takes them */
    if (app_start_ingest(&a, &keys) != 0 || app_start_listener(&a, tls) != 0 ||
        app_start_applier(&a) != 0)
        goto done;
    if (a.set.metrics_listen != NULL &&
        daemon_serve_ops(&a.d, a.set.metrics_listen, ops_ready, ops_metrics, &a) != 0)
        goto done;
    if (daemon_arm(&a.d, &hooks, &a) != 0)
        goto done;
    log_listening(&a, keyn);
    daemon_run(&a.d);
done:
    daemon_disconnect(&a.d, app_close, &a);
    /* Then the server, then the rest. */
    hsrv_free(a.srv);
    ingest_free(a.in);
    applier_free(a.apply);
    sign_keys_free(&keys);
    tls_ctx_free(tls);
    daemon_free(&a.d);
    return a.d.status;
}
