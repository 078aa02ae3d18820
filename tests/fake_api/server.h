/* server.h -- the fake PromptLayer API's HTTP side (libevent evhttp).
 *
 * Serves the PromptLayer calls plcache makes (GET and POST
 * /prompt-templates..., the tracking endpoints), answering and refusing as
 * PromptLayer documents, records every one, injects queued faults, and
 * serves the control API under /_fake/ (see README.md). Single-threaded and
 * never blocking: delays and drops run from evtimers on the caller's base.
 */
#ifndef PLCACHE_FAKE_SERVER_H
#define PLCACHE_FAKE_SERVER_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"
#include "store.h"

/* Request bodies larger than this get 413 from libevent. */
#define SERVER_MAX_BODY (8u * 1024u * 1024u)
/* Request headers larger than this are refused by libevent. */
#define SERVER_MAX_HEADERS (64u * 1024u)
/* Read/write timeout of every connection, in seconds. */
#define SERVER_TIMEOUT_S 30
/* Bodies kept in the request log, in bytes, across all records. */
#define SERVER_MAX_RECORDED_BYTES (256u * 1024u * 1024u)

typedef struct server server;

/* llm_kwargs_without_model: what GET ...?include_llm_kwargs=true answers
 * for a template without metadata.model (or whose provider the fake cannot
 * build llm_kwargs for). */
#define SERVER_NO_MODEL_NULL 0   /* "null": 200 with "llm_kwargs": null */
#define SERVER_NO_MODEL_REFUSE 1 /* "refuse": 400 {"success": false, "message"} */
/* include_llm_kwargs: how GET takes the include_llm_kwargs=true flag. */
#define SERVER_FLAG_ACCEPT 0 /* "accept" */
#define SERVER_FLAG_REFUSE 1 /* "refuse": 422 naming query.include_llm_kwargs */

typedef struct server_config {
    const char *api_key;          /* copied; NULL: any key (or none) is accepted */
    long delay_ms;                /* added before every API answer */
    size_t max_records;           /* requests kept for GET /_fake/requests */
    const schema_set *schemas;    /* borrowed (must outlive the server): request bodies */
    int64_t workspace_id;         /* the answers' workspace_id */
    int llm_kwargs_without_model; /* SERVER_NO_MODEL_* */
    int include_llm_kwargs;       /* SERVER_FLAG_* */
} server_config;

/* Reads the value of setting `name` ("llm_kwargs_without_model": "null" or
 * "refuse"; "include_llm_kwargs": "accept" or "refuse"). Returns its
 * SERVER_* value, or -1 for an unknown name or value. */
int server_setting(const char *name, const char *value);

/* Returns a server the caller owns (server_free), serving `st` (taken over,
 * also on failure) on `base` (borrowed; must outlive the server). NULL with
 * the reason in err when memory runs out. */
server *server_new(struct event_base *base, store *st, const server_config *cfg, char *err,
                   size_t errlen);

/* Listens on host:port (port 0: any free one); *bound_port gets the port.
 * Resolves `host` with getaddrinfo, so give an address. Returns 0, or -1 with
 * the reason in err. */
int server_bind(server *srv, const char *host, int port, int *bound_port, char *err, size_t errlen);

/* Closes every connection (answers held back by a delay are dropped) and
 * frees the server and everything it owns. */
void server_free(server *srv);

#endif
