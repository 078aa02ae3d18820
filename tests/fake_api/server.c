/* server.c -- the fake PromptLayer API's HTTP side (libevent evhttp).
 *
 * One generic callback sees every request. Paths under /_fake/ go to the
 * control API, which answers at once. Everything else is an API request:
 * it takes the first matching queued fault, its answer is computed at once
 * (so a delayed answer shows the state as it was when the request arrived,
 * like a server whose reply is slow on the wire), it is recorded, and then it
 * is either sent or parked as a `pending` with an evtimer that sends it, or
 * closes the connection for a drop, when the delay is over.
 *
 * libevent 2.1 keeps an incoming request on its connection until the reply is
 * sent and stops reading the connection meanwhile, so a parked request stays
 * valid until we answer it or free its connection; a drop frees the
 * connection from the timer, never from inside evhttp's own callback. On
 * shutdown the parked requests are forgotten and evhttp_free closes their
 * connections.
 */
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "fault.h"
#include "record.h"
#include "text.h"

#define CONTROL_PREFIX "/_fake"
#define TEMPLATES_PATH "/prompt-templates"
#define MAX_PAGE 1000000000LL
#define MAX_PER_PAGE 1000000LL
#define MAX_VERSION_PARAM 1000000000000LL

typedef struct pending {
    struct pending *prev;
    struct pending *next;
    struct server *srv;         /* borrowed */
    struct evhttp_request *req; /* borrowed from evhttp until answered */
    struct event *timer;        /* owned */
    int drop;
    int status;
    struct evbuffer *body; /* owned */
    char *retry_after;     /* owned or NULL */
    const char *fault;     /* static text for the log, or NULL */
    uint64_t seq;
    int64_t started_ms;
} pending;

struct server {
    struct event_base *base; /* borrowed */
    struct evhttp *http;     /* owned */
    store *store;            /* owned */
    record_log *records;     /* owned */
    fault_queue *faults;     /* owned */
    char *api_key;           /* owned or NULL */
    long delay_ms;
    int64_t next_answer_id;
    pending *pending; /* owned list of parked answers */
    size_t pending_count;
};

/* The answer to one API request before it is sent. */
typedef struct answer {
    int drop;
    int status;
    struct evbuffer *body; /* owned */
    char *retry_after;     /* owned or NULL */
    const char *fault;     /* static text for the log, or NULL */
} answer;

static char *dup_str(const char *src)
{
    size_t n = strlen(src);
    char *d = malloc(n + 1);
    if (d != NULL)
        memcpy(d, src, n + 1);
    return d;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

static int dump_to_evbuffer(const char *chunk, size_t size, void *data)
{
    return evbuffer_add(data, chunk, size);
}

/* Serializes `json` (reference stolen; NULL allowed) into a new evbuffer the
 * caller owns; NULL when json is NULL or memory runs out. */
static struct evbuffer *json_buffer(json_t *json)
{
    if (json == NULL)
        return NULL;
    struct evbuffer *buf = evbuffer_new();
    if (buf != NULL &&
        json_dump_callback(json, dump_to_evbuffer, buf, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        evbuffer_free(buf);
        buf = NULL;
    }
    json_decref(json);
    return buf;
}

/* {"message": msg} as a new evbuffer (NULL when memory runs out). */
static struct evbuffer *message_buffer(const char *msg)
{
    json_t *s = text_json_string(msg, strlen(msg));
    return json_buffer((s != NULL) ? json_pack("{s:o}", "message", s) : NULL);
}

/* Sends status + body (may be NULL) as JSON. The request is answered exactly
 * once here; evhttp owns it afterwards. */
static void send_reply(struct evhttp_request *req, int status, struct evbuffer *body,
                       const char *retry_after)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (retry_after != NULL)
        evhttp_add_header(h, "Retry-After", retry_after);
    evhttp_send_reply(req, status, NULL, body);
}

static const char *request_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = (uri != NULL) ? evhttp_uri_get_path(uri) : NULL;
    return (path != NULL) ? path : "";
}

static void log_request(struct evhttp_request *req, int status, int64_t started_ms,
                        const char *fault)
{
    char st[16];
    char ms[32];
    snprintf(st, sizeof(st), "%d", status);
    snprintf(ms, sizeof(ms), "%lld", (long long)(text_now_ms() - started_ms));
    if (fault != NULL)
        text_log("info", "request", "method", method_name(evhttp_request_get_command(req)), "path",
                 request_path(req), "status", st, "ms", ms, "fault", fault, (const char *)NULL);
    else
        text_log("info", "request", "method", method_name(evhttp_request_get_command(req)), "path",
                 request_path(req), "status", st, "ms", ms, (const char *)NULL);
}

/* Answers a control request with `json` (stolen) and logs it. */
static void control_json(struct evhttp_request *req, int status, json_t *json, int64_t started)
{
    struct evbuffer *body = json_buffer(json);
    if (body == NULL) {
        status = 500;
        body = message_buffer("out of memory");
    }
    log_request(req, status, started, NULL);
    send_reply(req, status, body, NULL);
    if (body != NULL)
        evbuffer_free(body);
}

static void control_message(struct evhttp_request *req, int status, const char *msg,
                            int64_t started)
{
    json_t *s = text_json_string(msg, strlen(msg));
    control_json(req, status, (s != NULL) ? json_pack("{s:o}", "message", s) : NULL, started);
}

static void control_ok(struct evhttp_request *req, int64_t started)
{
    control_json(req, 200, json_pack("{s:b}", "ok", 1), started);
}

static int store_status(store_rc rc)
{
    switch (rc) {
    case STORE_OK:
        return 200;
    case STORE_BAD_REQUEST:
        return 400;
    case STORE_NOT_FOUND:
        return 404;
    case STORE_CONFLICT:
        return 409;
    case STORE_NO_MEMORY:
        return 500;
    }
    return 500;
}

static void control_store_rc(struct evhttp_request *req, store_rc rc, const char *err,
                             int64_t started)
{
    if (rc == STORE_OK)
        control_ok(req, started);
    else
        control_message(req, store_status(rc), err, started);
}

/* The request body as a contiguous byte range (valid until the request is
 * answered); *len gets its length. Never NULL. */
static const char *request_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    if (*len == 0)
        return "";
    const char *data = (const char *)evbuffer_pullup(in, -1);
    if (data == NULL) {
        *len = 0;
        return "";
    }
    return data;
}

/* Parses the request body as JSON; NULL with the reason in err. */
static json_t *control_body(struct evhttp_request *req, char *err, size_t errlen)
{
    size_t len = 0;
    const char *data = request_body(req, &len);
    json_error_t jerr;
    json_t *j = json_loadb(data, len, 0, &jerr);
    if (j == NULL)
        snprintf(err, errlen, "the body is not JSON: %s", jerr.text);
    return j;
}

/* Answers 405 unless the request's method is one of `allowed` (a bit set);
 * `allow` is the Allow header. Returns 1 when the method is allowed. */
static int control_method_ok(struct evhttp_request *req, int allowed, const char *allow,
                             int64_t started)
{
    if ((evhttp_request_get_command(req) & allowed) != 0)
        return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    control_message(req, 405, "method not allowed", started);
    return 0;
}

static void control_state(server *srv, struct evhttp_request *req, int64_t started)
{
    char err[512];
    if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_PUT, "GET, PUT", started))
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        control_json(req, 200, store_dump(srv->store), started);
        return;
    }
    json_t *body = control_body(req, err, sizeof(err));
    if (body == NULL) {
        control_message(req, 400, err, started);
        return;
    }
    store_rc rc = store_replace(srv->store, body, err, sizeof(err));
    json_decref(body);
    control_store_rc(req, rc, err, started);
}

static void control_faults(server *srv, struct evhttp_request *req, int64_t started)
{
    char err[512];
    if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE,
                           "GET, POST, DELETE", started))
        return;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_GET) {
        control_json(req, 200, fault_list(srv->faults), started);
        return;
    }
    if (cmd == EVHTTP_REQ_DELETE) {
        fault_clear(srv->faults);
        control_ok(req, started);
        return;
    }
    json_t *body = control_body(req, err, sizeof(err));
    if (body == NULL) {
        control_message(req, 400, err, started);
        return;
    }
    int rc = fault_add(srv->faults, body, err, sizeof(err));
    json_decref(body);
    if (rc != 0) {
        control_message(req, 400, err, started);
        return;
    }
    control_json(req, 200,
                 json_pack("{s:b,s:I}", "ok", 1, "queued", (json_int_t)fault_count(srv->faults)),
                 started);
}

static void control_requests(server *srv, struct evhttp_request *req, const char *query,
                             int64_t started)
{
    if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE, "GET, DELETE", started))
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
        record_clear(srv->records);
        record_clear_stats(srv->records);
        control_ok(req, started);
        return;
    }
    char *prefix = NULL;
    char *method = NULL;
    if (text_query_get(query, "path_prefix", &prefix) < 0 ||
        text_query_get(query, "method", &method) < 0) {
        free(prefix);
        control_message(req, 400, "malformed query", started);
        return;
    }
    control_json(req, 200, record_list(srv->records, prefix, method), started);
    free(prefix);
    free(method);
}

static void control_stats(server *srv, struct evhttp_request *req, int64_t started)
{
    if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE, "GET, DELETE", started))
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
        record_clear_stats(srv->records);
        control_ok(req, started);
        return;
    }
    control_json(req, 200, record_stats(srv->records, srv->pending_count), started);
}

static json_t *config_json(const server *srv)
{
    return json_pack("{s:o,s:I}", "api_key",
                     (srv->api_key != NULL) ? json_string(srv->api_key) : json_null(), "delay_ms",
                     (json_int_t)srv->delay_ms);
}

static void control_config(server *srv, struct evhttp_request *req, int64_t started)
{
    char err[512];
    if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_PUT, "GET, PUT", started))
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        control_json(req, 200, config_json(srv), started);
        return;
    }
    json_t *body = control_body(req, err, sizeof(err));
    if (body == NULL) {
        control_message(req, 400, err, started);
        return;
    }
    const char *msg = NULL;
    const json_t *key = json_object_get(body, "api_key");
    const json_t *delay = json_object_get(body, "delay_ms");
    size_t known = (key != NULL) + (delay != NULL);
    if (!json_is_object(body) || json_object_size(body) != known) {
        msg = "config takes an object with api_key and/or delay_ms";
    } else if (key != NULL && !json_is_null(key) &&
               !(json_is_string(key) && json_string_length(key) > 0 &&
                 json_string_length(key) <= 4096 &&
                 strlen(json_string_value(key)) == json_string_length(key))) {
        msg = "api_key must be a non-empty string or null";
    } else if (delay != NULL && !(json_is_integer(delay) && json_integer_value(delay) >= 0 &&
                                  json_integer_value(delay) <= FAULT_MAX_DELAY_MS)) {
        msg = "delay_ms must be an integer from 0 to 600000";
    }
    if (msg != NULL) {
        json_decref(body);
        control_message(req, 400, msg, started);
        return;
    }
    if (key != NULL) {
        char *copy = json_is_string(key) ? dup_str(json_string_value(key)) : NULL;
        if (json_is_string(key) && copy == NULL) {
            json_decref(body);
            control_message(req, 500, "out of memory", started);
            return;
        }
        free(srv->api_key);
        srv->api_key = copy;
    }
    if (delay != NULL)
        srv->delay_ms = (long)json_integer_value(delay);
    json_decref(body);
    control_json(req, 200, config_json(srv), started);
}

/* Splits `rest` ("name", "name/rename", "name/labels/prod", ...) into at most
 * `max` decoded segments (each malloc'd, freed by the caller). Returns the
 * count, or -1 when there are too many, one is empty or does not decode. */
static int split_segments(const char *rest, char **segs, int max)
{
    int n = 0;
    const char *p = rest;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = (slash != NULL) ? (size_t)(slash - p) : strlen(p);
        if (n == max || len == 0)
            goto err;
        segs[n] = text_decode_segment(p, len);
        if (segs[n] == NULL)
            goto err;
        n++;
        if (slash == NULL)
            return n;
        p = slash + 1;
    }
err:
    for (int i = 0; i < n; i++) {
        free(segs[i]);
        segs[i] = NULL;
    }
    return -1;
}

/* The integer member `key` of obj, if present: 1 found, 0 absent, -1 not an
 * integer in [min, max]. */
static int member_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 1;
}

static void control_templates(server *srv, struct evhttp_request *req, const char *rest,
                              int64_t started)
{
    char err[512];
    char *seg[3] = {NULL, NULL, NULL};
    json_t *body = NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int n = split_segments(rest, seg, 3);
    if (n < 0) {
        control_message(req, 404, "no such control endpoint (bad template path)", started);
        return;
    }
    const char *name = seg[0];

    if (n == 1) {
        if (!control_method_ok(req, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE,
                               "GET, PUT, DELETE", started))
            goto done;
        if (cmd == EVHTTP_REQ_GET) {
            json_t *one = NULL;
            store_rc rc = store_dump_template(srv->store, name, &one, err, sizeof(err));
            if (rc == STORE_OK)
                control_json(req, 200, one, started);
            else
                control_message(req, store_status(rc), err, started);
            goto done;
        }
        if (cmd == EVHTTP_REQ_DELETE) {
            control_store_rc(req, store_delete_template(srv->store, name, err, sizeof(err)), err,
                             started);
            goto done;
        }
        body = control_body(req, err, sizeof(err));
        if (body == NULL) {
            control_message(req, 400, err, started);
            goto done;
        }
        control_store_rc(req, store_put_template(srv->store, name, body, err, sizeof(err)), err,
                         started);
        goto done;
    }

    if (n == 2 && strcmp(seg[1], "rename") == 0) {
        if (!control_method_ok(req, EVHTTP_REQ_POST, "POST", started))
            goto done;
        body = control_body(req, err, sizeof(err));
        if (body == NULL) {
            control_message(req, 400, err, started);
            goto done;
        }
        const json_t *nn = json_object_get(body, "new_name");
        if (!json_is_string(nn) || strlen(json_string_value(nn)) != json_string_length(nn)) {
            control_message(req, 400, "new_name must be a string", started);
            goto done;
        }
        control_store_rc(req,
                         store_rename(srv->store, name, json_string_value(nn), err, sizeof(err)),
                         err, started);
        goto done;
    }

    if (n == 2 && strcmp(seg[1], "versions") == 0) {
        if (!control_method_ok(req, EVHTTP_REQ_POST, "POST", started))
            goto done;
        body = control_body(req, err, sizeof(err));
        if (body == NULL) {
            control_message(req, 400, err, started);
            goto done;
        }
        int64_t version = 0;
        if (!json_is_object(body) ||
            member_int(body, "version", 1, MAX_VERSION_PARAM, &version) < 0) {
            control_message(req, 400, "version must be a positive integer", started);
            goto done;
        }
        int64_t used = 0;
        store_rc rc = store_put_version(srv->store, name, version, json_object_get(body, "content"),
                                        &used, err, sizeof(err));
        if (rc != STORE_OK)
            control_message(req, store_status(rc), err, started);
        else
            control_json(req, 200, json_pack("{s:b,s:I}", "ok", 1, "version", (json_int_t)used),
                         started);
        goto done;
    }

    if (n == 3 && strcmp(seg[1], "labels") == 0) {
        if (!control_method_ok(req, EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE, "PUT, DELETE", started))
            goto done;
        if (cmd == EVHTTP_REQ_DELETE) {
            control_store_rc(req, store_delete_label(srv->store, name, seg[2], err, sizeof(err)),
                             err, started);
            goto done;
        }
        body = control_body(req, err, sizeof(err));
        if (body == NULL) {
            control_message(req, 400, err, started);
            goto done;
        }
        int64_t version = 0;
        if (!json_is_object(body) ||
            member_int(body, "version", 1, MAX_VERSION_PARAM, &version) != 1) {
            control_message(req, 400, "version must be a positive integer", started);
            goto done;
        }
        control_store_rc(req, store_put_label(srv->store, name, seg[2], version, err, sizeof(err)),
                         err, started);
        goto done;
    }

    control_message(req, 404, "no such control endpoint", started);
done:
    json_decref(body);
    for (int i = 0; i < 3; i++)
        free(seg[i]);
}

static void handle_control(server *srv, struct evhttp_request *req, const char *path,
                           const char *query, int64_t started)
{
    const char *rest = path + strlen(CONTROL_PREFIX);
    if (strcmp(rest, "/state") == 0) {
        control_state(srv, req, started);
    } else if (strcmp(rest, "/faults") == 0) {
        control_faults(srv, req, started);
    } else if (strcmp(rest, "/requests") == 0) {
        control_requests(srv, req, query, started);
    } else if (strcmp(rest, "/stats") == 0) {
        control_stats(srv, req, started);
    } else if (strcmp(rest, "/config") == 0) {
        control_config(srv, req, started);
    } else if (strcmp(rest, "/health") == 0) {
        if (control_method_ok(req, EVHTTP_REQ_GET, "GET", started))
            control_ok(req, started);
    } else if (strcmp(rest, "/reset") == 0) {
        if (control_method_ok(req, EVHTTP_REQ_POST, "POST", started)) {
            fault_clear(srv->faults);
            record_clear(srv->records);
            record_clear_stats(srv->records);
            control_ok(req, started);
        }
    } else if (strncmp(rest, "/templates/", strlen("/templates/")) == 0) {
        control_templates(srv, req, rest + strlen("/templates/"), started);
    } else {
        control_message(req, 404, "no such control endpoint", started);
    }
}

/* Fills *a with status and a {"message"} body. */
static void answer_message(answer *a, int status, const char *msg)
{
    a->status = status;
    a->body = message_buffer(msg);
}

static void answer_json(answer *a, int status, json_t *json)
{
    a->body = json_buffer(json);
    a->status = (a->body != NULL) ? status : 500;
}

static void api_list(server *srv, const char *query, answer *a)
{
    char *page_s = NULL;
    char *per_s = NULL;
    int64_t page = 1;
    int64_t per_page = 30;
    int rp = text_query_get(query, "page", &page_s);
    int rn = text_query_get(query, "per_page", &per_s);
    if (rp < 0 || rn < 0 || (rp == 1 && text_parse_i64(page_s, 1, MAX_PAGE, &page) != 0) ||
        (rn == 1 && text_parse_i64(per_s, 1, MAX_PER_PAGE, &per_page) != 0))
        answer_message(a, 400, "page and per_page must be positive integers");
    else
        answer_json(a, 200, store_list(srv->store, page, per_page));
    free(page_s);
    free(per_s);
}

static void api_get(server *srv, const char *ident_raw, const char *query, answer *a)
{
    char err[512];
    char *version_s = NULL;
    char *label = NULL;
    char *ident = NULL;
    int64_t version = 0;
    int rv = text_query_get(query, "version", &version_s);
    int rl = text_query_get(query, "label", &label);
    if (rv < 0 || rl < 0) {
        answer_message(a, 400, "malformed query");
        goto done;
    }
    if (rv == 1 && text_parse_i64(version_s, 1, MAX_VERSION_PARAM, &version) != 0) {
        answer_message(a, 400, "version must be a positive integer");
        goto done;
    }
    if (rv == 1 && rl == 1) {
        answer_message(a, 400, "give version or label, not both");
        goto done;
    }
    if (rl == 1 && label[0] == '\0') {
        answer_message(a, 400, "label must not be empty");
        goto done;
    }
    ident = text_decode_segment(ident_raw, strlen(ident_raw));
    if (ident == NULL) {
        answer_message(a, 404, "Prompt template not found");
        goto done;
    }
    json_t *out = NULL;
    store_rc rc = store_get(srv->store, ident, version, label, &out, err, sizeof(err));
    if (rc == STORE_OK)
        answer_json(a, 200, out);
    else
        answer_message(a, store_status(rc), err);
done:
    free(version_s);
    free(label);
    free(ident);
}

/* A tracking POST: the body must be a JSON object. *answer_id gets the id. */
static void api_track(server *srv, struct evhttp_request *req, answer *a, int64_t *answer_id)
{
    size_t len = 0;
    const char *data = request_body(req, &len);
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    int is_object = json_is_object(j);
    json_decref(j);
    if (!is_object) {
        answer_message(a, 400, "the body must be a JSON object");
        return;
    }
    int64_t id = ++srv->next_answer_id;
    *answer_id = id;
    answer_json(a, 200,
                json_pack("{s:b,s:I,s:I}", "success", 1, "id", (json_int_t)id, "request_id",
                          (json_int_t)id));
}

/* The normal answer of an API request (no fault). */
static void api_answer(server *srv, struct evhttp_request *req, const char *path, const char *query,
                       answer *a, int64_t *answer_id)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (srv->api_key != NULL) {
        const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "X-API-KEY");
        if (key == NULL || strcmp(key, srv->api_key) != 0) {
            answer_message(a, 401, "Invalid API key");
            return;
        }
    }
    if (cmd == EVHTTP_REQ_POST) {
        api_track(srv, req, a, answer_id);
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        answer_message(a, 405, "Method not allowed");
        return;
    }
    size_t tlen = strlen(TEMPLATES_PATH);
    if (strcmp(path, TEMPLATES_PATH) == 0 ||
        (strncmp(path, TEMPLATES_PATH, tlen) == 0 && strcmp(path + tlen, "/") == 0)) {
        api_list(srv, query, a);
    } else if (strncmp(path, TEMPLATES_PATH "/", tlen + 1) == 0 &&
               strchr(path + tlen + 1, '/') == NULL) {
        api_get(srv, path + tlen + 1, query, a);
    } else {
        answer_message(a, 404, "Not found");
    }
}

static void pending_unlink(server *srv, pending *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        srv->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->prev = NULL;
    p->next = NULL;
    srv->pending_count--;
}

static void pending_free(pending *p)
{
    if (p->timer != NULL)
        event_free(p->timer);
    if (p->body != NULL)
        evbuffer_free(p->body);
    free(p->retry_after);
    free(p);
}

/* Timer: the delay is over; answer, or close the connection for a drop. */
static void pending_fire(evutil_socket_t fd, short what, void *arg)
{
    pending *p = arg;
    server *srv = p->srv;
    (void)fd;
    (void)what;
    pending_unlink(srv, p);
    record_finish(srv->records, p->seq, request_path(p->req), p->drop ? 0 : p->status);
    log_request(p->req, p->drop ? 0 : p->status, p->started_ms, p->fault);
    if (p->drop) {
        struct evhttp_connection *conn = evhttp_request_get_connection(p->req);
        if (conn != NULL)
            evhttp_connection_free(conn); /* frees the request with it */
        else
            evhttp_request_free(p->req);
    } else {
        send_reply(p->req, p->status, p->body, p->retry_after);
    }
    pending_free(p);
}

/* Parks answer *a (taken over) for delay_ms; returns 0, or -1 when memory
 * runs out (*a untouched). */
static int pending_start(server *srv, struct evhttp_request *req, answer *a, long delay_ms,
                         uint64_t seq, int64_t started)
{
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->timer = evtimer_new(srv->base, pending_fire, p);
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    if (p->timer == NULL || evtimer_add(p->timer, &tv) != 0) {
        pending_free(p);
        return -1;
    }
    p->srv = srv;
    p->req = req;
    p->drop = a->drop;
    p->status = a->status;
    p->body = a->body;
    p->retry_after = a->retry_after;
    p->fault = a->fault;
    p->seq = seq;
    p->started_ms = started;
    a->body = NULL;
    a->retry_after = NULL;
    p->next = srv->pending;
    if (srv->pending != NULL)
        srv->pending->prev = p;
    srv->pending = p;
    srv->pending_count++;
    return 0;
}

static void handle_api(server *srv, struct evhttp_request *req, const char *path, const char *query,
                       int64_t started)
{
    const char *method = method_name(evhttp_request_get_command(req));
    answer a;
    fault_action fa;
    int64_t answer_id = 0;
    memset(&a, 0, sizeof(a));
    int has_fault = fault_take(srv->faults, method, path, &fa);

    if (has_fault == 1 && fa.drop) {
        a.drop = 1;
        a.fault = "drop";
    } else if (has_fault == 1 && fa.status != 0) {
        a.status = fa.status;
        a.body = evbuffer_new();
        if (a.body != NULL && evbuffer_add(a.body, fa.body, strlen(fa.body)) != 0) {
            evbuffer_free(a.body);
            a.body = NULL;
        }
        a.retry_after = fa.retry_after;
        fa.retry_after = NULL;
        a.fault = "status";
    } else if (has_fault < 0) {
        answer_message(&a, 500, "out of memory taking a fault");
    } else {
        api_answer(srv, req, path, query, &a, &answer_id);
        if (has_fault == 1)
            a.fault = "delay";
    }
    long delay = (has_fault == 1 && fa.has_delay) ? fa.delay_ms : srv->delay_ms;
    fault_action_clear(&fa);

    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    size_t body_len = 0;
    const char *body = request_body(req, &body_len);
    record_in rec = {
        .method = method,
        .path = path,
        .query = query,
        .api_key = evhttp_find_header(in, "X-API-KEY"),
        .cache_control = evhttp_find_header(in, "Cache-Control"),
        .content_type = evhttp_find_header(in, "Content-Type"),
        .user_agent = evhttp_find_header(in, "User-Agent"),
        .accept_encoding = evhttp_find_header(in, "Accept-Encoding"),
        .body = body,
        .body_len = body_len,
        .at_ms = started,
        .answer_id = answer_id,
    };
    uint64_t seq = 0;
    if (record_add(srv->records, &rec, &seq) != 0)
        text_log("warn", "could not record a request (out of memory)", (const char *)NULL);

    if ((delay > 0 || a.drop) && pending_start(srv, req, &a, delay, seq, started) == 0)
        return;
    if (a.drop) {
        /* Could not park the drop: answer rather than free evhttp's own
         * connection from inside its callback. */
        a.drop = 0;
        a.status = 500;
        a.body = message_buffer("out of memory dropping the connection");
    }
    record_finish(srv->records, seq, path, a.status);
    log_request(req, a.status, started, a.fault);
    send_reply(req, a.status, a.body, a.retry_after);
    if (a.body != NULL)
        evbuffer_free(a.body);
    free(a.retry_after);
}

/* evhttp's generic callback: every request lands here. */
static void on_request(struct evhttp_request *req, void *arg)
{
    server *srv = arg;
    int64_t started = text_now_ms();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = request_path(req);
    const char *query = (uri != NULL) ? evhttp_uri_get_query(uri) : NULL;
    size_t plen = strlen(CONTROL_PREFIX);
    if (strncmp(path, CONTROL_PREFIX, plen) == 0 && (path[plen] == '/' || path[plen] == '\0'))
        handle_control(srv, req, path, query, started);
    else
        handle_api(srv, req, path, query, started);
}

server *server_new(struct event_base *base, store *st, const server_config *cfg, char *err,
                   size_t errlen)
{
    server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        store_free(st);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->base = base;
    srv->store = st;
    srv->delay_ms = cfg->delay_ms;
    srv->records = record_new(cfg->max_records, SERVER_MAX_RECORDED_BYTES);
    srv->faults = fault_new();
    srv->http = evhttp_new(base);
    if (cfg->api_key != NULL)
        srv->api_key = dup_str(cfg->api_key);
    if (srv->records == NULL || srv->faults == NULL || srv->http == NULL ||
        (cfg->api_key != NULL && srv->api_key == NULL)) {
        snprintf(err, errlen, "out of memory");
        server_free(srv);
        return NULL;
    }
    evhttp_set_max_headers_size(srv->http, SERVER_MAX_HEADERS);
    evhttp_set_max_body_size(srv->http, SERVER_MAX_BODY);
    evhttp_set_timeout(srv->http, SERVER_TIMEOUT_S);
    evhttp_set_default_content_type(srv->http, "application/json");
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, on_request, srv);
    return srv;
}

int server_bind(server *srv, const char *host, int port, int *bound_port, char *err, size_t errlen)
{
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(srv->http, host, (ev_uint16_t)port);
    if (bs == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d", host, port);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "getsockname failed");
        return -1;
    }
    if (ss.ss_family == AF_INET)
        *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *bound_port = port;
    return 0;
}

void server_free(server *srv)
{
    if (srv == NULL)
        return;
    while (srv->pending != NULL) {
        pending *p = srv->pending;
        pending_unlink(srv, p);
        /* A request evhttp already let go of is ours to free. */
        if (evhttp_request_get_connection(p->req) == NULL)
            evhttp_request_free(p->req);
        pending_free(p);
    }
    if (srv->http != NULL)
        evhttp_free(srv->http);
    store_free(srv->store);
    record_free(srv->records);
    fault_free(srv->faults);
    free(srv->api_key);
    free(srv);
}
