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
 *
 * What the API side accepts and answers follows PromptLayer's documentation:
 * request bodies and query parameters are checked as FastAPI would, and
 * refused with 422 and a {"detail": [...]} naming every problem; the
 * tracking endpoints live in track.c, snippets in snippet.c (through the
 * store), llm_kwargs in llmkw.c, and POST /prompt-templates renders input
 * variables with plcache's own renderer (core/render.h), the SDK's
 * algorithm, made to render as the server does (see render_post).
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

#include "core/render.h"
#include "fault.h"
#include "llmkw.h"
#include "record.h"
#include "text.h"
#include "track.h"

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
    const schema_set *schemas; /* borrowed */
    int64_t workspace_id;
    int no_model;     /* SERVER_NO_MODEL_* */
    int include_flag; /* SERVER_FLAG_* */
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

static const char *const NO_MODEL_NAMES[] = {"null", "refuse", NULL};
static const char *const FLAG_NAMES[] = {"accept", "refuse", NULL};

int server_setting(const char *name, const char *value)
{
    const char *const *names = NULL;
    if (strcmp(name, "llm_kwargs_without_model") == 0)
        names = NO_MODEL_NAMES;
    else if (strcmp(name, "include_llm_kwargs") == 0)
        names = FLAG_NAMES;
    for (int i = 0; names != NULL && names[i] != NULL; i++) {
        if (strcmp(value, names[i]) == 0)
            return i;
    }
    return -1;
}

static json_t *config_json(const server *srv)
{
    return json_pack("{s:o,s:I,s:I,s:s,s:s}", "api_key",
                     (srv->api_key != NULL) ? json_string(srv->api_key) : json_null(), "delay_ms",
                     (json_int_t)srv->delay_ms, "workspace_id", (json_int_t)srv->workspace_id,
                     "llm_kwargs_without_model", NO_MODEL_NAMES[srv->no_model],
                     "include_llm_kwargs", FLAG_NAMES[srv->include_flag]);
}

/* Checks one key of a PUT /_fake/config body; NULL when fine, else why. */
static const char *config_refusal(const char *k, const json_t *v)
{
    if (strcmp(k, "api_key") == 0) {
        if (json_is_null(v) ||
            (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 4096 &&
             strlen(json_string_value(v)) == json_string_length(v)))
            return NULL;
        return "api_key must be a non-empty string or null";
    }
    if (strcmp(k, "delay_ms") == 0) {
        if (json_is_integer(v) && json_integer_value(v) >= 0 &&
            json_integer_value(v) <= FAULT_MAX_DELAY_MS)
            return NULL;
        return "delay_ms must be an integer from 0 to 600000";
    }
    if (strcmp(k, "workspace_id") == 0) {
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            return NULL;
        return "workspace_id must be a non-negative integer";
    }
    if (strcmp(k, "llm_kwargs_without_model") == 0) {
        if (json_is_string(v) && server_setting(k, json_string_value(v)) >= 0)
            return NULL;
        return "llm_kwargs_without_model must be \"null\" or \"refuse\"";
    }
    if (strcmp(k, "include_llm_kwargs") == 0) {
        if (json_is_string(v) && server_setting(k, json_string_value(v)) >= 0)
            return NULL;
        return "include_llm_kwargs must be \"accept\" or \"refuse\"";
    }
    return "config takes api_key, delay_ms, workspace_id, llm_kwargs_without_model and "
           "include_llm_kwargs";
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
    const char *msg = json_is_object(body) ? NULL : "config takes an object";
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (msg == NULL)
            msg = config_refusal(k, v);
    }
    if (msg != NULL) {
        json_decref(body);
        control_message(req, 400, msg, started);
        return;
    }
    const json_t *key = json_object_get(body, "api_key");
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
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "delay_ms") == 0)
            srv->delay_ms = (long)json_integer_value(v);
        else if (strcmp(k, "workspace_id") == 0)
            srv->workspace_id = (int64_t)json_integer_value(v);
        else if (strcmp(k, "llm_kwargs_without_model") == 0)
            srv->no_model = server_setting(k, json_string_value(v));
        else if (strcmp(k, "include_llm_kwargs") == 0)
            srv->include_flag = server_setting(k, json_string_value(v));
    }
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

/* {"detail": detail} (stolen) with status 422. */
static void answer_detail(answer *a, json_t *detail)
{
    answer_json(a, 422, (detail != NULL) ? json_pack("{s:o}", "detail", detail) : NULL);
}

/* {"success": false, "message": msg} with `status`. */
static void answer_failure(answer *a, int status, const char *msg)
{
    json_t *m = text_json_string(msg, strlen(msg));
    answer_json(a, status, (m != NULL) ? json_pack("{s:b,s:o}", "success", 0, "message", m) : NULL);
}

/* Appends a query error {"type", "loc": ["query", name], "msg", "input"}. */
static void query_error(json_t *detail, const char *name, const char *type, const char *msg,
                        const char *input, json_t *ctx)
{
    json_t *in = json_string(input);
    json_t *e = schema_error(type, json_pack("[s,s]", "query", name), msg, in, ctx);
    json_decref(in);
    if (e != NULL)
        json_array_append_new(detail, e);
}

/* A boolean query parameter (FastAPI's words); *out keeps its default when
 * the parameter is absent. Returns -1 when it was malformed (400). */
static int query_bool(const char *query, const char *name, int *out, json_t *detail)
{
    char *v = NULL;
    int rc = text_query_get(query, name, &v);
    if (rc == 1 && text_parse_bool(v, out) != 0)
        query_error(detail, name, "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input", v, NULL);
    free(v);
    return (rc < 0) ? -1 : 0;
}

static void api_list(server *srv, const char *query, answer *a)
{
    char *page_s = NULL;
    char *per_s = NULL;
    char *label = NULL;
    char *name = NULL;
    int64_t page = 1;
    int64_t per_page = 30;
    int rp = text_query_get(query, "page", &page_s);
    int rn = text_query_get(query, "per_page", &per_s);
    int rl = text_query_get(query, "label", &label);
    int rm = text_query_get(query, "name", &name);
    if (rl < 0 || rm < 0) {
        answer_message(a, 400, "malformed query");
    } else if (rp < 0 || rn < 0 || (rp == 1 && text_parse_i64(page_s, 1, MAX_PAGE, &page) != 0) ||
               (rn == 1 && text_parse_i64(per_s, 1, MAX_PER_PAGE, &per_page) != 0)) {
        answer_message(a, 400, "page and per_page must be positive integers");
    } else {
        store_filter f = {.label = label, .name = name, .workspace_id = srv->workspace_id};
        answer_json(a, 200, store_list(srv->store, page, per_page, &f));
    }
    free(page_s);
    free(per_s);
    free(label);
    free(name);
}

/* The llm_kwargs of a store answer: for `provider` (NULL: metadata.model's)
 * with model name `model` (NULL: metadata.model's) and metadata.model's
 * parameters updated with `overrides` (may be NULL). NULL when the provider
 * is not one llmkw builds for (*unsupported set) or memory runs out. */
static json_t *answer_kwargs(const json_t *ans, const char *provider, const char *model,
                             const json_t *overrides, int *unsupported)
{
    const json_t *m = json_object_get(json_object_get(ans, "metadata"), "model");
    *unsupported = 0;
    if (provider == NULL)
        provider = json_string_value(json_object_get(m, "provider"));
    if (model == NULL)
        model = json_string_value(json_object_get(m, "name"));
    if (!llmkw_supported(provider)) {
        *unsupported = 1;
        return NULL;
    }
    const json_t *given = json_object_get(m, "parameters");
    json_t *params = json_is_object(given) ? json_deep_copy(given) : json_object();
    if (params == NULL)
        return NULL;
    if (json_is_object(overrides) && json_object_update(params, (json_t *)overrides) != 0) {
        json_decref(params);
        return NULL;
    }
    json_t *kw = llmkw_build(json_object_get(ans, "prompt_template"), provider, model, params);
    json_decref(params);
    return kw;
}

/* GET /prompt-templates/<identifier>: "Get Prompt Template Raw Data". */
static void api_get(server *srv, const char *ident_raw, const char *query, answer *a)
{
    char err[512];
    char *version_s = NULL;
    char *label = NULL;
    char *ident = NULL;
    json_t *out = NULL;
    int64_t version = 0;
    int resolve = 1;
    int with_kwargs = 0;
    json_t *detail = json_array();
    if (detail == NULL) {
        answer_message(a, 500, "out of memory");
        return;
    }
    /* Errors in the order FastAPI checks the parameters: as declared. */
    int rv = text_query_get(query, "version", &version_s);
    int rl = text_query_get(query, "label", &label);
    if (rv == 1 && text_parse_i64(version_s, INT64_MIN, INT64_MAX, &version) != 0)
        query_error(detail, "version", "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    version_s, NULL);
    else if (rv == 1 && version <= 0)
        query_error(detail, "version", "greater_than", "Input should be greater than 0", version_s,
                    json_pack("{s:i}", "gt", 0));
    if (rv < 0 || rl < 0 || query_bool(query, "resolve_snippets", &resolve, detail) != 0 ||
        query_bool(query, "include_llm_kwargs", &with_kwargs, detail) != 0) {
        answer_message(a, 400, "malformed query");
        goto done;
    }
    if (with_kwargs && srv->include_flag == SERVER_FLAG_REFUSE)
        query_error(detail, "include_llm_kwargs", "extra_forbidden",
                    "Extra inputs are not permitted", "true", NULL);
    if (json_array_size(detail) > 0) {
        answer_detail(a, detail);
        detail = NULL;
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
    store_query q = {.version = version,
                     .label = label,
                     .resolve_snippets = resolve,
                     .with_created_at = 1,
                     .workspace_id = srv->workspace_id};
    store_rc rc = store_get(srv->store, ident, &q, &out, err, sizeof(err));
    if (rc != STORE_OK) {
        answer_message(a, store_status(rc), err);
        goto done;
    }
    if (with_kwargs) {
        int unsupported = 0;
        json_t *kw = answer_kwargs(out, NULL, NULL, NULL, &unsupported);
        if (unsupported && srv->no_model == SERVER_NO_MODEL_REFUSE) {
            answer_failure(a, 400,
                           "llm_kwargs need model metadata (metadata.model with a provider of "
                           "openai, openai.azure or anthropic) on the template");
            goto done;
        }
        if (kw == NULL && !unsupported) {
            answer_message(a, 500, "out of memory");
            goto done;
        }
        if (kw != NULL && json_object_set_new(out, "llm_kwargs", kw) != 0) {
            answer_message(a, 500, "out of memory");
            goto done;
        }
    }
    json_t *full = json_pack("{s:b}", "success", 1);
    if (full != NULL && json_object_update(full, out) != 0) {
        json_decref(full);
        full = NULL;
    }
    answer_json(a, 200, full);
done:
    json_decref(out);
    json_decref(detail);
    free(version_s);
    free(label);
    free(ident);
}

static int is_placeholder(const json_t *m)
{
    const json_t *role = json_object_get(m, "role");
    return json_is_string(role) && strcmp(json_string_value(role), "placeholder") == 0;
}

/* The messages of a template whose placeholder messages were taken out and
 * the rest rendered (`rendered`, in order): each placeholder of `msgs` (the
 * original messages) is replaced by copies of the messages its variable in
 * `vars` holds, or by nothing. A new array, or NULL when memory runs out. */
static json_t *with_placeholders(const json_t *msgs, const json_t *rendered, const json_t *vars)
{
    json_t *out = json_array();
    size_t next = 0;
    for (size_t i = 0; out != NULL && i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        int bad = 0;
        if (!is_placeholder(m)) {
            bad = json_array_append(out, json_array_get(rendered, next++));
        } else {
            const json_t *given =
                json_object_get(vars, json_string_value(json_object_get(m, "name")));
            for (size_t k = 0; k < json_array_size(given) && !bad; k++)
                bad = json_array_append_new(out, json_deep_copy(json_array_get(given, k)));
        }
        if (bad) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* Renders input variables `vars` (an object or NULL) into the prompt_template
 * of a POST answer as PromptLayer's server does:
 *
 *   - a placeholder message is replaced by the messages its input variable
 *     holds (https://docs.promptlayer.com/features/prompt-registry/
 *     placeholder-messages: "Passed in messages must conform to our prompt
 *     blueprint format"; checked, else 422), or dropped when it has none;
 *     the messages put in are not rendered themselves;
 *   - every text is rendered, a missing variable becoming "" (changelog,
 *     2026-03-31: without skip_input_variable_rendering and without
 *     input_variables, placeholders render to "").
 *
 * The texts are rendered by render_entry (the SDK's algorithm). It leaves an
 * entry alone when it has no llm_kwargs and no variables, so it gets an
 * entry whose llm_kwargs is {} (present, nothing to walk); llm_kwargs are
 * built afterwards from the rendered template: f-string texts as Python's
 * str.format, jinja2 texts as the SDK's jinja2 environment (core/jinja.h),
 * a text on which Python raises left as it was. Returns 0; 1 with *why set
 * when the fake cannot render the template (a text outside what core/fstr.h
 * and core/jinja.h reproduce: the answer stays unrendered); 422 with errors
 * appended to `detail`; -1 when memory runs out. */
static int render_post(const server *srv, json_t *ans, const json_t *vars, json_t *detail,
                       const char **why)
{
    const json_t *pt = json_object_get(ans, "prompt_template");
    const json_t *msgs = json_object_get(pt, "messages");
    int rc = -1;
    json_t *entry = NULL;
    json_t *merged = NULL;
    json_t *none = json_object();
    json_t *stripped = json_deep_copy(pt);
    json_t *kept = json_object_get(stripped, "messages");
    if (none == NULL || stripped == NULL)
        goto done;
    /* Check every placeholder's messages, in message order... */
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *name = json_string_value(json_object_get(m, "name"));
        const json_t *given = is_placeholder(m) ? json_object_get(vars, name) : NULL;
        if (given == NULL)
            continue;
        json_t *loc = json_pack("[s,s,s]", "body", "input_variables", name);
        int n =
            (loc != NULL) ? schema_check_at(srv->schemas, "messages", given, loc, 0, detail) : -1;
        json_decref(loc);
        if (n < 0)
            goto done;
    }
    if (json_array_size(detail) > 0) {
        rc = 422;
        goto done;
    }
    /* ...then render the template without them. */
    for (size_t i = json_array_size(kept); i > 0; i--) {
        if (is_placeholder(json_array_get(kept, i - 1)) && json_array_remove(kept, i - 1) != 0)
            goto done;
    }
    entry = json_pack("{s:O,s:{}}", "prompt_template", stripped, "llm_kwargs");
    if (entry == NULL)
        goto done;
    render_status rs = render_entry(entry, json_is_object(vars) ? vars : none, 0);
    if (rs == RENDER_ERROR)
        goto done;
    if (rs != RENDER_OK) {
        *why = "the fake API cannot render this template (a jinja2 or f-string text its renderer "
               "does not reproduce); it is answered unrendered";
        rc = 1;
        goto done;
    }
    json_t *rendered = json_object_get(entry, "prompt_template");
    if (msgs != NULL) {
        merged = with_placeholders(msgs, json_object_get(rendered, "messages"), vars);
        if (merged == NULL || json_object_set(rendered, "messages", merged) != 0)
            goto done;
    }
    if (json_object_set(ans, "prompt_template", rendered) != 0)
        goto done;
    rc = 0;
done:
    json_decref(merged);
    json_decref(entry);
    json_decref(stripped);
    json_decref(none);
    return rc;
}

/* POST /prompt-templates/<identifier>: "Get Prompt Template", what the SDKs
 * call. The body is optional. */
static void api_post_template(server *srv, struct evhttp_request *req, const char *ident_raw,
                              answer *a)
{
    char err[512];
    size_t len = 0;
    const char *data = request_body(req, &len);
    json_t *body = NULL;
    json_t *detail = NULL;
    json_t *out = NULL;
    char *ident = NULL;
    int flags = 0;
    if (track_parse_body(data, len, &body, &flags, &detail) != 0) {
        answer_detail(a, detail);
        return;
    }
    if (body == NULL || json_is_null(body)) {
        json_decref(body);
        body = json_object();
    }
    detail = json_array();
    if (body == NULL || detail == NULL) {
        answer_message(a, 500, "out of memory");
        goto done;
    }
    int n = schema_check(srv->schemas, "get_template", body, "body", flags, detail);
    if (n != 0) {
        if (n < 0)
            answer_message(a, 500, "out of memory");
        else
            answer_detail(a, detail);
        detail = NULL;
        goto done;
    }
    const json_t *jv = json_object_get(body, "version");
    const json_t *jl = json_object_get(body, "label");
    if (json_is_integer(jv) && json_is_string(jl)) {
        answer_message(a, 400, "give version or label, not both");
        goto done;
    }
    ident = text_decode_segment(ident_raw, strlen(ident_raw));
    if (ident == NULL) {
        answer_message(a, 404, "Prompt template not found");
        goto done;
    }
    store_query q = {.version = json_is_integer(jv) ? (int64_t)json_integer_value(jv) : 0,
                     .label = json_string_value(jl),
                     .resolve_snippets = 1,
                     .with_created_at = 0,
                     .workspace_id = srv->workspace_id};
    store_rc rc = store_get(srv->store, ident, &q, &out, err, sizeof(err));
    if (rc != STORE_OK) {
        answer_message(a, store_status(rc), err);
        goto done;
    }
    const char *warning = NULL;
    if (!json_is_true(json_object_get(body, "skip_input_variable_rendering"))) {
        int r = render_post(srv, out, json_object_get(body, "input_variables"), detail, &warning);
        if (r == 422) {
            answer_detail(a, detail);
            detail = NULL;
            goto done;
        }
        if (r < 0) {
            answer_message(a, 500, "out of memory");
            goto done;
        }
    }
    int unsupported = 0;
    json_t *kw = answer_kwargs(out, json_string_value(json_object_get(body, "provider")),
                               json_string_value(json_object_get(body, "model")),
                               json_object_get(body, "model_parameter_overrides"), &unsupported);
    int bad = (kw == NULL && !unsupported);
    bad |= json_object_set_new(out, "llm_kwargs", (kw != NULL) ? kw : json_null());
    bad |= json_object_set_new(out, "provider_base_url", json_null());
    bad |=
        json_object_set_new(out, "warning", warning != NULL ? json_string(warning) : json_null());
    if (bad) {
        answer_message(a, 500, "out of memory");
        goto done;
    }
    answer_json(a, 200, out);
    out = NULL;
done:
    json_decref(body);
    json_decref(detail);
    json_decref(out);
    free(ident);
}

/* A POST to a tracking endpoint. */
static void api_track(server *srv, struct evhttp_request *req, const track_endpoint *ep, answer *a,
                      int64_t *answer_id)
{
    size_t len = 0;
    const char *data = request_body(req, &len);
    int status = 0;
    json_t *out = NULL;
    track_answer(srv->schemas, ep, data, len, &srv->next_answer_id, &status, &out, answer_id);
    answer_json(a, status, out);
}

/* GET /prompt-templates/<identifier>/labels: "Get Prompt Template Labels". */
static void api_labels(server *srv, const char *ident_raw, size_t n, answer *a)
{
    char err[512];
    json_t *out = NULL;
    char *ident = text_decode_segment(ident_raw, n);
    store_rc rc = ident ? store_labels(srv->store, ident, &out, err, sizeof(err)) : STORE_NOT_FOUND;
    if (ident == NULL)
        snprintf(err, sizeof(err), "Prompt template not found");
    if (rc != STORE_OK)
        answer_message(a, store_status(rc), err);
    else
        answer_json(a, 200, out);
    free(ident);
}

/* The raw identifier of /prompt-templates/<identifier>/labels (its length in
 * *n), else NULL. */
static const char *labels_ident(const char *path, size_t *n)
{
    size_t tlen = strlen(TEMPLATES_PATH);
    static const char tail[] = "/labels";
    size_t plen = strlen(path);
    if (strncmp(path, TEMPLATES_PATH "/", tlen + 1) != 0 || plen <= tlen + 1 + sizeof(tail) - 1 ||
        strcmp(path + plen - (sizeof(tail) - 1), tail) != 0)
        return NULL;
    const char *id = path + tlen + 1;
    *n = plen - (tlen + 1) - (sizeof(tail) - 1);
    if (memchr(id, '/', *n) != NULL)
        return NULL;
    return id;
}

/* The raw identifier when path is /prompt-templates/<identifier>, else NULL. */
static const char *template_ident(const char *path)
{
    size_t tlen = strlen(TEMPLATES_PATH);
    if (strncmp(path, TEMPLATES_PATH "/", tlen + 1) == 0 && path[tlen + 1] != '\0' &&
        strchr(path + tlen + 1, '/') == NULL)
        return path + tlen + 1;
    return NULL;
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
        const track_endpoint *ep = track_find(path);
        if (ep != NULL)
            api_track(srv, req, ep, a, answer_id);
        else if (template_ident(path) != NULL)
            api_post_template(srv, req, template_ident(path), a);
        else
            answer_json(a, 404, json_pack("{s:s}", "detail", "Not Found"));
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        answer_message(a, 405, "Method not allowed");
        return;
    }
    size_t tlen = strlen(TEMPLATES_PATH), lid_len = 0;
    if (strcmp(path, TEMPLATES_PATH) == 0 ||
        (strncmp(path, TEMPLATES_PATH, tlen) == 0 && strcmp(path + tlen, "/") == 0)) {
        api_list(srv, query, a);
    } else if (template_ident(path) != NULL) {
        api_get(srv, template_ident(path), query, a);
    } else if (labels_ident(path, &lid_len) != NULL) {
        api_labels(srv, labels_ident(path, &lid_len), lid_len, a);
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
    srv->schemas = cfg->schemas;
    srv->workspace_id = cfg->workspace_id;
    srv->no_model = cfg->llm_kwargs_without_model;
    srv->include_flag = cfg->include_llm_kwargs;
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
