/* ops.h -- the operations endpoints every daemon serves (DESIGN.md section 8).
 *
 *   GET /healthz   200 while the process runs
 *   GET /readyz    200 when Redis answers, else 503
 *   GET /metrics   200 with Prometheus text
 * HEAD as GET; another method 405 with Allow: GET, HEAD. The routing and the
 * answers are decided here once, for the receiver's public listener, its
 * metrics listener (PLCACHE_METRICS_LISTEN) and the worker's.
 */
#ifndef PLCACHE_OPS_H
#define PLCACHE_OPS_H

#include "core/buf.h"

struct evhttp_request;

typedef enum ops_route {
    OPS_NOT_OURS = 0, /* not an operations path (or /metrics where it is not served) */
    OPS_HEALTH,
    OPS_READY,
    OPS_METRICS,
    OPS_BAD_METHOD, /* an operations path, with a method other than GET or HEAD */
} ops_route;

/* Which endpoint path names for a request whose method is (or is not) GET or
 * HEAD; /metrics only when with_metrics is non-zero. Pure. */
ops_route ops_route_of(const char *path, int get_or_head, int with_metrics);

/* The status and JSON body of OPS_HEALTH, OPS_READY (ready: Redis answers)
 * and OPS_BAD_METHOD (a static string; callers add the Allow header, see
 * OPS_ALLOW). 0 for the other routes. Pure. */
int ops_reply_of(ops_route r, int ready, const char **json);
#define OPS_ALLOW "GET, HEAD"

/* What a daemon plugs in: whether it is ready, and its metrics text. */
typedef struct ops_hooks {
    int (*ready)(void *arg);
    void (*metrics)(buf *b, void *arg);
    void *arg;
} ops_hooks;

/* An hsrv_handler (arg: an ops_hooks, borrowed for the server's life) for a
 * listener that serves the operations endpoints only: anything else is 404.
 * Answers every request exactly once. */
void ops_handle(struct evhttp_request *req, void *hooks);

#endif
