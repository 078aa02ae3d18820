/* ingest.c -- webhook requests: routing, verification, recording, metrics. */
#include "webhook/ingest.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hsrv.h"
#include "model/keys.h"
#include "core/log.h"
#include "core/loglim.h"
#include "core/metrics.h"
#include "core/ops.h"
#include "core/rwait.h"
#include "core/timeutil.h"
#include "webhook/verify.h"

/* Dedupe and record in one step, so that a crash can never leave an event
 * marked seen but not recorded. One call records a batch: the deliveries
 * verified in one loop turn (KEYS[1] the stream, KEYS[1 + i] event i's seen
 * key; ARGV[1] the seen TTL, ARGV[2] the receive time, then each event's type
 * and payload). Returns, per event, its stream id, or 0 for a duplicate.
 * The stream's type is checked first: an XADD refused after its SET NX would
 * leave the event marked seen but not recorded, and its retry would then be
 * answered as a duplicate.
 * The receiver never trims pl:events: the applier does (apply_stream.c), because
 * only it can tell read entries from entries a trim would lose. */
static const char record_script[] =
    "local t = redis.call('TYPE', KEYS[1]).ok\n"
    "if t ~= 'stream' and t ~= 'none' then\n"
    "  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a stream')\n"
    "end\n"
    "local out = {}\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then\n"
    "    out[i - 1] = redis.call('XADD', KEYS[1], '*',\n"
    "      'type', ARGV[2 * i - 1], 'payload', ARGV[2 * i], 'received_at', ARGV[2])\n"
    "  else\n"
    "    out[i - 1] = 0\n"
    "  end\n"
    "end\n"
    "return out\n";

/* A batch is sent when it holds this many events or payload bytes, else at
 * the end of the loop turn that verified its first event. */
#define RECORD_BATCH 64
#define RECORD_BATCH_BYTES ((size_t)1 << 20)

/* Refused deliveries are logged one per this interval, the rest summed up. */
#define REFUSAL_LOG_INTERVAL_MS 10000

/* Event types counted by name in metrics; anything else is "other", so an
 * authentic sender cannot grow the metric set without bound. */
static const char *const known_types[] = {
    "prompt_template_created",
    "prompt_template_version_created",
    "prompt_template_name_changed",
    "prompt_template_deleted",
    "prompt_template_label_created",
    "prompt_template_label_deleted",
    "prompt_template_label_moved",
    "prompt_template_label_change_requested",
    "prompt_template_label_change_approved",
    "prompt_template_label_change_denied",
    "prompt_template_updated",
    "agent_run_finished",
    "report_finished",
    "dataset_version_created_by_file",
    "dataset_version_created_by_file_failed",
    "dataset_version_created_from_filter_params",
    "other",
};
#define NTYPES (sizeof(known_types) / sizeof(known_types[0]))

enum { FAIL_NO_SIG, FAIL_BAD_SIG, FAIL_STALE, NFAIL };

struct ingest {
    char *prefix;
    char *path;
    char events_key[256];
    long tolerance_s;
    long seen_ttl_s; /* of pl:seen:<hash>: 24 h, or the tolerance when longer */
    int serve_metrics;
    int retry_after_s;
    rconn *redis;
    rwait *wait; /* NULL when PLCACHE_MIN_REPLICAS is 0 */
    sign_keys keys;
    struct hsrv *srv;
    ingest_metrics_fn more_metrics;
    void *more_arg;
    size_t inflight; /* in the batch being built, or sent and unanswered */
    struct pending *batch_head, **batch_tail;
    size_t batch_n, batch_bytes;
    struct event *flush_ev; /* sends the batch at the end of the loop turn */
    int flush_pending;
    loglim refusals;          /* one log line per interval for refused deliveries */
    struct event *refusal_ev; /* logs the summary of an interval */
    /* metrics */
    unsigned long by_status[600];
    unsigned long sig_failures[NFAIL];
    unsigned long events[NTYPES];
    unsigned long duplicates;
    unsigned long redis_errors;
    mhist latency;
};

typedef struct pending {
    ingest *in;
    struct pending *next; /* in the batch */
    struct evhttp_request *req;
    int64_t start_us;
    size_t type_idx;
    int duplicate;
    const char *body; /* the request's own input buffer: lives until answered */
    size_t len;
    char *type; /* owned, taken from the verify_result */
    size_t type_len;
    char seen_key[256];
} pending;

/* The events of one script call, in order. */
typedef struct batch {
    ingest *in;
    pending *head;
    size_t n;
} batch;

static void flush_batch(ingest *in);

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest *in = arg;
    in->flush_pending = 0;
    flush_batch(in);
}

static void refusal_due(evutil_socket_t fd, short what, void *arg);

ingest *ingest_new(struct event_base *base, const ingest_opts *opts, rconn *redis, sign_keys *keys)
{
    ingest *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return NULL;
    in->batch_tail = &in->batch_head;
    in->prefix = strdup(opts->prefix);
    in->path = strdup(opts->path);
    in->flush_ev = event_new(base, -1, 0, on_flush, in);
    in->refusal_ev = evtimer_new(base, refusal_due, in);
    loglim_init(&in->refusals, REFUSAL_LOG_INTERVAL_MS);
    if (in->prefix == NULL || in->path == NULL || in->flush_ev == NULL || in->refusal_ev == NULL ||
        keys_make(in->events_key, sizeof(in->events_key), opts->prefix, KEYS_EVENTS, NULL) < 0) {
        ingest_free(in);
        return NULL;
    }
    in->tolerance_s = opts->tolerance_s;
    /* The duplicate guard covers every delivery the timestamp check lets in:
     * a delivery seen once stays known as long as it could be replayed. */
    in->seen_ttl_s = opts->tolerance_s > KEYS_SEEN_TTL_S ? opts->tolerance_s : KEYS_SEEN_TTL_S;
    in->serve_metrics = opts->serve_metrics;
    in->retry_after_s = opts->retry_after_s > 0 ? opts->retry_after_s : 5;
    in->redis = redis;
    if (opts->min_replicas > 0) {
        in->wait = rwait_new(redis, opts->min_replicas, opts->wait_timeout_ms);
        if (in->wait == NULL) {
            ingest_free(in);
            return NULL;
        }
    }
    in->keys = *keys;
    memset(keys, 0, sizeof(*keys));
    mhist_init(&in->latency, metrics_latency_bounds, metrics_latency_nbounds);
    return in;
}

void ingest_set_server(ingest *in, struct hsrv *srv)
{
    in->srv = srv;
}

void ingest_set_metrics(ingest *in, ingest_metrics_fn fn, void *arg)
{
    in->more_metrics = fn;
    in->more_arg = arg;
}

void ingest_set_keys(ingest *in, sign_keys *keys)
{
    sign_keys_free(&in->keys);
    in->keys = *keys;
    memset(keys, 0, sizeof(*keys));
}

size_t ingest_inflight(const ingest *in)
{
    return in->inflight;
}

void ingest_free(ingest *in)
{
    if (in == NULL)
        return;
    /* Only a loop stopped early leaves a batch: its requests went with the
     * server. */
    while (in->batch_head) {
        pending *p = in->batch_head;
        in->batch_head = p->next;
        free(p->type);
        free(p);
    }
    if (in->flush_ev)
        event_free(in->flush_ev);
    if (in->refusal_ev)
        event_free(in->refusal_ev);
    rwait_free(in->wait);
    sign_keys_free(&in->keys);
    free(in->prefix);
    free(in->path);
    free(in);
}

static void finish(ingest *in, struct evhttp_request *req, int64_t start_us, int code,
                   const char *json)
{
    if (code >= 100 && code < 600)
        in->by_status[code]++;
    mhist_observe(&in->latency, (double)(time_mono_us() - start_us) / 1e6);
    hsrv_reply(req, code, json);
}

#define UNAVAILABLE_JSON "{\"ok\":false,\"error\":\"redis unavailable\"}"

/* 503 with Retry-After. */
static void answer_unavailable(ingest *in, struct evhttp_request *req, int64_t start_us,
                               const char *json)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", in->retry_after_s);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
    finish(in, req, start_us, 503, json);
}

static size_t type_index(const char *type)
{
    for (size_t i = 0; i + 1 < NTYPES; i++)
        if (strcmp(type, known_types[i]) == 0)
            return i;
    return NTYPES - 1;
}

static void answer_recorded(ingest *in, pending *p)
{
    if (p->duplicate)
        finish(in, p->req, p->start_us, 200, "{\"ok\":true,\"duplicate\":true}");
    else
        finish(in, p->req, p->start_us, 200, "{\"ok\":true}");
}

/* Answers every event of the list and frees it: 200 as recorded (each its
 * own way, duplicate or not), or the failure code with json. */
static void answer_list(ingest *in, pending *p, int code, const char *json)
{
    while (p) {
        pending *next = p->next;
        in->inflight--;
        if (code == 200)
            answer_recorded(in, p);
        else if (code == 503)
            answer_unavailable(in, p->req, p->start_us, json);
        else
            finish(in, p->req, p->start_us, code, json);
        free(p->type);
        free(p);
        p = next;
    }
}

static void batch_answer(batch *b, int code, const char *json)
{
    answer_list(b->in, b->head, code, json);
    free(b);
}

/* The replicas' verdict on a recorded batch (PLCACHE_MIN_REPLICAS > 0). */
static void replicated(int ok, void *priv)
{
    batch *b = priv;
    if (ok) {
        batch_answer(b, 200, NULL);
        return;
    }
    /* Recorded on the primary only: a failover now could lose them, so the
     * sender is asked to deliver again (the retry is a duplicate). */
    char n[24];
    snprintf(n, sizeof(n), "%zu", b->n);
    log_warn("events recorded but not confirmed by enough replicas: answered 503", "events", n);
    batch_answer(b, 503, "{\"ok\":false,\"error\":\"not confirmed by enough replicas\"}");
}

static void recorded(redisReply *r, void *priv)
{
    batch *b = priv;
    ingest *in = b->in;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != b->n) {
        in->redis_errors++;
        if (r != NULL)
            log_error("redis refused the events", "error",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        batch_answer(b, 503, UNAVAILABLE_JSON);
        return;
    }
    size_t i = 0;
    for (pending *p = b->head; p != NULL; p = p->next) {
        const redisReply *e = r->element[i++];
        if (e->type == REDIS_REPLY_INTEGER) {
            p->duplicate = 1;
            in->duplicates++;
            log_info("duplicate event", "type", known_types[p->type_idx]);
        } else {
            in->events[p->type_idx]++;
            log_info("event recorded", "type", known_types[p->type_idx], "id",
                     e->type == REDIS_REPLY_STRING ? e->str : "");
        }
    }
    /* A duplicate waits too: the first delivery may not have been replicated
     * yet (it may be the one answered 503 for that very reason). */
    if (in->wait != NULL) {
        if (rwait_after(in->wait, replicated, b) != 0)
            replicated(0, b);
        return;
    }
    batch_answer(b, 200, NULL);
}

/* Sends the batch being built as one script call. */
static void flush_batch(ingest *in)
{
    pending *head = in->batch_head;
    size_t n = in->batch_n;
    if (head == NULL)
        return;
    in->batch_head = NULL;
    in->batch_tail = &in->batch_head;
    in->batch_n = 0;
    in->batch_bytes = 0;
    if (!rconn_ready(in->redis)) {
        answer_list(in, head, 503, UNAVAILABLE_JSON);
        return;
    }
    batch *b = malloc(sizeof(*b));
    if (b == NULL) {
        answer_list(in, head, 500, "{\"ok\":false,\"error\":\"out of memory\"}");
        return;
    }
    b->in = in;
    b->head = head;
    b->n = n;
    char nkeys[24], ttl[16], now[40];
    snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
    snprintf(ttl, sizeof(ttl), "%ld", in->seen_ttl_s);
    time_format_now(now, sizeof(now));
    /* EVAL script nkeys stream seen-key... ttl now (type payload)... */
    const char *argv[6 + 3 * RECORD_BATCH] = {"EVAL", record_script, nkeys, in->events_key};
    size_t lens[6 + 3 * RECORD_BATCH] = {4, sizeof(record_script) - 1, strlen(nkeys),
                                         strlen(in->events_key)};
    size_t key = 4, arg = 4 + n;
    argv[arg] = ttl;
    lens[arg++] = strlen(ttl);
    argv[arg] = now;
    lens[arg++] = strlen(now);
    for (pending *p = head; p != NULL; p = p->next) {
        argv[key] = p->seen_key;
        lens[key++] = strlen(p->seen_key);
        argv[arg] = p->type;
        lens[arg++] = p->type_len;
        argv[arg] = p->body;
        lens[arg++] = p->len;
    }
    if (rconn_argv(in->redis, recorded, b, (int)arg, argv, lens) != 0) {
        in->redis_errors++;
        batch_answer(b, 503, UNAVAILABLE_JSON);
    }
}

/* Adds a verified event to the batch of this loop turn; takes v's type. */
static void record(ingest *in, struct evhttp_request *req, int64_t start_us, verify_result *v,
                   const char *body, size_t len)
{
    if (!rconn_ready(in->redis)) {
        answer_unavailable(in, req, start_us, UNAVAILABLE_JSON);
        return;
    }
    pending *p = malloc(sizeof(*p));
    if (p == NULL) {
        finish(in, req, start_us, 500, "{\"ok\":false,\"error\":\"out of memory\"}");
        return;
    }
    if (keys_make(p->seen_key, sizeof(p->seen_key), in->prefix, KEYS_SEEN, v->seen_hex) < 0) {
        free(p);
        answer_unavailable(in, req, start_us, UNAVAILABLE_JSON);
        return;
    }
    p->in = in;
    p->next = NULL;
    p->req = req;
    p->start_us = start_us;
    p->type_idx = type_index(v->event_type);
    p->duplicate = 0;
    p->body = body;
    p->len = len;
    p->type = v->event_type;
    p->type_len = v->event_type_len;
    v->event_type = NULL;
    *in->batch_tail = p;
    in->batch_tail = &p->next;
    in->batch_n++;
    in->batch_bytes += len;
    in->inflight++;
    if (in->batch_n >= RECORD_BATCH || in->batch_bytes >= RECORD_BATCH_BYTES) {
        flush_batch(in);
    } else if (!in->flush_pending) {
        in->flush_pending = 1;
        event_active(in->flush_ev, EV_TIMEOUT, 1);
    }
}

/* Logs how many refusals of the past interval were only counted. */
static void refusal_summary(ingest *in)
{
    unsigned long n = loglim_flush(&in->refusals);
    if (n == 0)
        return;
    char count[24], secs[24];
    snprintf(count, sizeof(count), "%lu", n);
    snprintf(secs, sizeof(secs), "%d", REFUSAL_LOG_INTERVAL_MS / 1000);
    log_warn("more deliveries refused, counted but not logged one by one", "count", count,
             "interval_s", secs);
}

static void refusal_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refusal_summary(arg);
}

/* 1 when this refusal is logged in full: the first of its interval. The rest
 * are counted (metrics count them all) and summed up when the interval ends,
 * so a client without the secret cannot flood the log. */
static int refusal_logged(ingest *in)
{
    int64_t now = time_mono_us() / 1000;
    if (in->refusals.suppressed > 0 && now >= loglim_due_ms(&in->refusals))
        refusal_summary(in); /* its timer has not run yet */
    if (loglim_take(&in->refusals, now))
        return 1;
    if (!evtimer_pending(in->refusal_ev, NULL)) {
        int64_t wait = loglim_due_ms(&in->refusals) - now;
        struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
        evtimer_add(in->refusal_ev, &tv);
    }
    return 0;
}

static void handle_webhook(ingest *in, struct evhttp_request *req, int64_t start_us)
{
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    const char *data = len ? (const char *)evbuffer_pullup(body, -1) : "";
    const char *sig =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-PromptLayer-Signature");
    verify_result v;
    verify_delivery(&in->keys, in->tolerance_s, time_now_ms(), sig, data, len, &v);
    int code = verify_status(v.outcome);
    char *peer = NULL;
    ev_uint16_t port = 0;
    switch (v.outcome) {
    case VERIFY_RECORD:
        record(in, req, start_us, &v, data, len);
        break;
    case VERIFY_NO_SIGNATURE:
    case VERIFY_BAD_SIGNATURE:
    case VERIFY_STALE:
        in->sig_failures[v.outcome == VERIFY_NO_SIGNATURE ? FAIL_NO_SIG
                         : v.outcome == VERIFY_STALE      ? FAIL_STALE
                                                          : FAIL_BAD_SIG]++;
        if (refusal_logged(in)) {
            evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
            log_warn("webhook rejected", "status", "401", "reason", verify_reason(v.outcome),
                     "peer", peer, "next", "counted for 10 s, then one summary line");
        }
        finish(in, req, start_us, code, "{\"ok\":false,\"error\":\"unauthorized\"}");
        break;
    default: {
        char msg[96];
        snprintf(msg, sizeof(msg), "{\"ok\":false,\"error\":\"%s\"}", verify_reason(v.outcome));
        if (refusal_logged(in))
            log_warn("webhook rejected", "status", code == 400 ? "400" : "500", "reason",
                     verify_reason(v.outcome));
        finish(in, req, start_us, code, msg);
        break;
    }
    }
    verify_result_free(&v);
}

/* The metrics of requests answered: counts by status, and latency. */
static void render_request_metrics(const ingest *in, buf *b)
{
    char labels[128];
    metrics_header(b, "plcache_http_requests_total", "counter",
                   "HTTP requests answered, by status code.");
    for (int code = 100; code < 600; code++) {
        if (in->by_status[code] == 0)
            continue;
        snprintf(labels, sizeof(labels), "status=\"%d\"", code);
        metrics_sample(b, "plcache_http_requests_total", labels, (double)in->by_status[code]);
    }
    metrics_histogram(b, "plcache_http_request_duration_seconds",
                      "Time from a complete request to its answer.", &in->latency);
}

/* The metrics of deliveries: refusals by reason, events by type, duplicates. */
static void render_event_metrics(const ingest *in, buf *b)
{
    char labels[128];
    metrics_header(b, "plcache_webhook_signature_failures_total", "counter",
                   "Deliveries refused with 401, by reason.");
    static const char *const fail_names[NFAIL] = {"no_signature", "bad_signature",
                                                  "stale_timestamp"};
    for (int i = 0; i < NFAIL; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", fail_names[i]);
        metrics_sample(b, "plcache_webhook_signature_failures_total", labels,
                       (double)in->sig_failures[i]);
    }
    metrics_header(b, "plcache_webhook_events_total", "counter",
                   "Authentic events recorded in the events stream, by type.");
    for (size_t i = 0; i < NTYPES; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", known_types[i]);
        metrics_sample(b, "plcache_webhook_events_total", labels, (double)in->events[i]);
    }
    metrics_single(
        b, "plcache_webhook_duplicates_total", "counter",
        "Authentic deliveries already seen (within 24 h, or the timestamp tolerance when longer).",
        (double)in->duplicates);
}

/* The metrics of the Redis link, and of deliveries waiting on it. */
static void render_redis_metrics(const ingest *in, buf *b)
{
    metrics_single(b, "plcache_redis_errors_total", "counter",
                   "Redis commands that failed or got no answer.", (double)in->redis_errors);
    metrics_single(b, "plcache_redis_wait_failures_total", "counter",
                   "Writes not confirmed by PLCACHE_MIN_REPLICAS replicas in time (answered 503).",
                   in->wait ? (double)rwait_failures(in->wait) : 0);
    metrics_single(b, "plcache_redis_disconnects_total", "counter",
                   "Times the Redis link was lost or dropped.", (double)rconn_drops(in->redis));
    metrics_single(b, "plcache_redis_up", "gauge", "1 when Redis accepts commands.",
                   rconn_ready(in->redis) ? 1 : 0);
    metrics_single(b, "plcache_webhook_inflight", "gauge", "Deliveries waiting on Redis.",
                   (double)in->inflight);
}

/* The metrics of the HTTP server's connections; none before it exists. */
static void render_conn_metrics(const ingest *in, buf *b)
{
    if (in->srv) {
        metrics_single(b, "plcache_http_connections", "gauge", "Open HTTP connections.",
                       (double)hsrv_conns(in->srv));
        metrics_single(b, "plcache_http_accept_pauses_total", "counter",
                       "Times the listener paused at PLCACHE_MAX_CONNECTIONS, every connection "
                       "busy with a request.",
                       (double)hsrv_paused(in->srv));
        hsrv_stats_t hs;
        hsrv_stats(in->srv, &hs);
        metrics_header(b, "plcache_http_connections_closed_total", "counter",
                       "Connections the receiver closed to keep its slots working, by reason.");
        metrics_sample(b, "plcache_http_connections_closed_total", "reason=\"first_byte_timeout\"",
                       (double)hs.first_byte_timeouts);
        metrics_sample(b, "plcache_http_connections_closed_total", "reason=\"request_timeout\"",
                       (double)hs.request_timeouts);
        metrics_sample(b, "plcache_http_connections_closed_total", "reason=\"evicted\"",
                       (double)hs.evictions);
        metrics_sample(b, "plcache_http_connections_closed_total", "reason=\"peer_limit\"",
                       (double)hs.peer_refusals);
        metrics_sample(b, "plcache_http_connections_closed_total", "reason=\"over_budget\"",
                       (double)hs.over_budget);
    }
}

static void render_metrics(ingest *in, buf *b)
{
    render_request_metrics(in, b);
    render_event_metrics(in, b);
    render_redis_metrics(in, b);
    render_conn_metrics(in, b);
}

void ingest_count(int status, void *arg)
{
    ingest *in = arg;
    if (status >= 100 && status < 600)
        in->by_status[status]++;
}

void ingest_metrics(buf *b, void *arg)
{
    ingest *in = arg;
    render_metrics(in, b);
    if (in->more_metrics)
        in->more_metrics(b, in->more_arg);
}

static void handle_metrics(ingest *in, struct evhttp_request *req, int64_t start_us)
{
    buf b;
    buf_init(&b, 1 << 20);
    in->by_status[200]++;
    ingest_metrics(&b, in);
    mhist_observe(&in->latency, (double)(time_mono_us() - start_us) / 1e6);
    hsrv_reply_metrics(req, b.data ? b.data : "", b.len);
    buf_free(&b);
}

void ingest_handle(struct evhttp_request *req, void *arg)
{
    ingest *in = arg;
    int64_t start_us = time_mono_us();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (path == NULL)
        path = "";
    if (strcmp(path, in->path) == 0) {
        if (m != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            finish(in, req, start_us, 405, "{\"ok\":false,\"error\":\"method not allowed\"}");
            return;
        }
        handle_webhook(in, req, start_us);
        return;
    }
    ops_route r =
        ops_route_of(path, m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD, in->serve_metrics);
    if (r == OPS_NOT_OURS) {
        finish(in, req, start_us, 404, "{\"ok\":false,\"error\":\"not found\"}");
        return;
    }
    if (r == OPS_METRICS) {
        handle_metrics(in, req, start_us);
        return;
    }
    if (r == OPS_BAD_METHOD)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", OPS_ALLOW);
    const char *json = NULL;
    int code = ops_reply_of(r, r == OPS_READY && rconn_ready(in->redis), &json);
    finish(in, req, start_us, code, json);
}
