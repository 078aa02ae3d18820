/* ops.c -- /healthz, /readyz and /metrics: routing and answers. */
#include "core/ops.h"

#include <event2/http.h>
#include <string.h>

#include "core/hsrv.h"

ops_route ops_route_of(const char *path, int get_or_head, int with_metrics)
{
    ops_route r = OPS_NOT_OURS;
    if (path == NULL)
        return r;
    if (strcmp(path, "/healthz") == 0)
        r = OPS_HEALTH;
    else if (strcmp(path, "/readyz") == 0)
        r = OPS_READY;
    else if (with_metrics && strcmp(path, "/metrics") == 0)
        r = OPS_METRICS;
    return r != OPS_NOT_OURS && !get_or_head ? OPS_BAD_METHOD : r;
}

int ops_reply_of(ops_route r, int ready, const char **json)
{
    switch (r) {
    case OPS_HEALTH:
        *json = "{\"ok\":true}";
        return 200;
    case OPS_READY:
        *json = ready ? "{\"ok\":true,\"redis\":\"up\"}" : "{\"ok\":false,\"redis\":\"down\"}";
        return ready ? 200 : 503;
    case OPS_BAD_METHOD:
        *json = "{\"ok\":false,\"error\":\"method not allowed\"}";
        return 405;
    case OPS_NOT_OURS:
    case OPS_METRICS:
        break;
    }
    *json = NULL;
    return 0;
}

void ops_handle(struct evhttp_request *req, void *arg)
{
    const ops_hooks *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    ops_route r = ops_route_of(uri ? evhttp_uri_get_path(uri) : NULL,
                               m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD, 1);
    if (r == OPS_NOT_OURS) {
        hsrv_reply(req, 404, "{\"ok\":false,\"error\":\"not found\"}");
        return;
    }
    if (r == OPS_METRICS) {
        buf b;
        buf_init(&b, 1 << 20);
        h->metrics(&b, h->arg);
        hsrv_reply_metrics(req, b.data ? b.data : "", b.len);
        buf_free(&b);
        return;
    }
    const char *json = NULL;
    int code = ops_reply_of(r, r == OPS_READY && h->ready(h->arg), &json);
    if (r == OPS_BAD_METHOD)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", OPS_ALLOW);
    hsrv_reply(req, code, json);
}
