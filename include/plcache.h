/* plcache.h -- libplcache: read PromptLayer prompts from plcache's Redis cache
 * and push log jobs for plcache-worker, each in one Redis round trip.
 *
 * The Redis contract behind these calls is DESIGN.md sections 4 and 6 (and the
 * README): a prompt is the field `label:<l>`, `version:<n>` or `latest` of the
 * hash `<prefix>prompt:<name>`; a job is LPUSHed onto `<prefix>track`.
 *
 * Ownership: strings passed in are borrowed for the duration of the call only.
 * Every `char *` handed out is owned by the caller and released with
 * plcache_free(). A client is released with plcache_close().
 *
 * Errors: every call returns a plcache_status; the reason in words is
 * plcache_errstr(client) until the next call on that client (it never contains
 * a secret, nor prompt or job text).
 *
 * Blocking: every call blocks the calling thread, bounded by the timeouts of
 * plcache_options. Meant for application servers, not for event loops.
 *
 * Threads: a client is used by one thread at a time (give each thread its own,
 * or lock around it); distinct clients share nothing and the library has no
 * global state. With the memory cache on, a client owns one background thread
 * that listens on `<prefix>invalidate` and drops a template's entries when its
 * name arrives; while that subscription is down the memory cache is empty and
 * bypassed. The thread is joined by plcache_close().
 *
 * Signals: the library changes no signal disposition. Its Redis connections
 * are written with write(), so a connection the server has reset raises
 * SIGPIPE in the writing thread: ignore SIGPIPE in the application (as most
 * servers do: signal(SIGPIPE, SIG_IGN)), and such a write is an error
 * (PLCACHE_E_REDIS) instead of the end of the process.
 */
#ifndef PLCACHE_H
#define PLCACHE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLCACHE_VERSION_MAJOR 0
#define PLCACHE_VERSION_MINOR 1
#define PLCACHE_VERSION_PATCH 0

typedef enum plcache_status {
    PLCACHE_OK = 0,
    PLCACHE_NOT_FOUND = 1,  /* no such template, version or label (cache and API agree) */
    PLCACHE_E_ARG = 2,      /* a bad argument or option: fix the caller */
    PLCACHE_E_REDIS = 3,    /* Redis unreachable, timed out or refused: may pass, retry */
    PLCACHE_E_API = 4,      /* PromptLayer API failed or timed out on a read-through: may pass */
    PLCACHE_E_AUTH = 5,     /* PromptLayer refused the API key (401/403) */
    PLCACHE_E_PROTOCOL = 6, /* an answer that breaks the contract (not JSON, wrong type) */
    PLCACHE_E_NOMEM = 7,
    PLCACHE_NOT_RENDERABLE = 8, /* plcache_render: not rendered here (a placeholder message, a
                                 * variable tool, or a jinja2 construct outside the library's
                                 * subset): PromptLayer renders it (plcache_get_rendered asks) */
} plcache_status;

/* Which version of a template to read. */
typedef enum plcache_select {
    PLCACHE_SEL_LATEST = 0,  /* field `latest` */
    PLCACHE_SEL_LABEL = 1,   /* field `label:<label>` */
    PLCACHE_SEL_VERSION = 2, /* field `version:<n>` */
} plcache_select;

/* An int or size left 0 takes its default, so a zeroed struct works too. */
typedef struct plcache_options {
    const char *redis_url;    /* DESIGN.md section 2 forms; NULL: redis://127.0.0.1:6379/0 */
    const char *prefix;       /* NULL: "pl:" */
    const char *api_key;      /* NULL: no read-through, a miss is PLCACHE_NOT_FOUND */
    const char *api_base_url; /* NULL: https://api.promptlayer.com */
    int redis_timeout_ms;     /* connect and each command; default 1000 */
    int api_timeout_ms;       /* one read-through request; default 5000 */
    int lease_ms;             /* read-through lease (herd guard); default 2000 */
    int lease_wait_ms;        /* how long a miss waits for another client's fill; default 500 */
    size_t memory_entries;    /* in-process cache size; 0 (default) turns it off */
    int memory_max_age_ms;    /* safety net on a memory entry's age; default 60000 */
    int skip_llm_kwargs;      /* 1: read through without include_llm_kwargs=true (default 0:
                               * with it, and again without it when the API refuses it, as
                               * plcache-webhook fills the cache) */
} plcache_options;

typedef struct plcache plcache;

/* Fills `opts` with the defaults above (all pointers NULL). */
void plcache_options_init(plcache_options *opts);

/* Connects to Redis (and, with memory_entries > 0, starts the invalidation
 * listener). Returns PLCACHE_OK and a client in *out, or an error with a reason
 * in err (errlen bytes, may be 0) and *out NULL: PLCACHE_E_ARG for a bad
 * option, PLCACHE_E_REDIS when Redis cannot be reached or refuses AUTH/SELECT.
 * The options are copied. With an API key, libcurl is initialised on first use
 * (curl_global_init is thread-safe from libcurl 7.84; the application may call
 * curl_global_cleanup after its last plcache_close). */
plcache_status plcache_open(plcache **out, const plcache_options *opts, char *err, size_t errlen);

/* Reads template `name` at the selector (`label` for PLCACHE_SEL_LABEL, `version`
 * > 0 for PLCACHE_SEL_VERSION, both ignored otherwise). On PLCACHE_OK *json is the
 * stored JSON text (NUL-terminated, owned by the caller) and *len its length
 * (len may be NULL); on any other status *json is NULL. A name or label is at
 * most 1024 bytes.
 *
 * A hit costs one command, HMGET <prefix>prompt:<name> <field> gen (or none,
 * from the memory cache). On a miss with an API key, reads through to the API
 * (GET {api_base_url}/prompt-templates/<name>[?version=n|?label=l] with
 * include_llm_kwargs=true unless skip_llm_kwargs; when the API refuses that
 * flag with a 4xx, the same GET once more without it) and fills
 * the cache: one client takes the lease <prefix>lease:<name>:<field> (SET NX
 * PX lease_ms) and fetches while the others poll the field for up to
 * lease_wait_ms; a waiter that sees no fill in time fetches itself and returns
 * the answer without writing it. A fill is written only when the hash's `gen`
 * is still the one read at the miss, so it never overwrites a newer write; the
 * caller gets the API's answer either way. A miss without an API key, or a
 * 404 from the API, is PLCACHE_NOT_FOUND (nothing is written); 401/403 is
 * PLCACHE_E_AUTH; another failure PLCACHE_E_API; an answer that is not a JSON
 * object PLCACHE_E_PROTOCOL. */
plcache_status plcache_get(plcache *c, const char *name, plcache_select sel, const char *label,
                           long long version, char **json, size_t *len);

/* Pushes one log job (a JSON object, DESIGN.md section 6) onto the queue with
 * one LPUSH <prefix>track. `len` bytes at `job` (no NUL needed), pushed as
 * written. The job is checked first against what PromptLayer accepts (a Log
 * Request: provider, model, input and output as Prompt Blueprints, the two
 * request times, and the documented types and ranges; or an envelope naming a
 * known endpoint with a body right for it): an invalid job is PLCACHE_E_ARG,
 * nothing is pushed, and plcache_errstr() names the field and the rule
 * ("invalid job: input.messages[0].content: must be a list of content blocks,
 * not a string"), never a value of the job. On PLCACHE_OK, *queue_len (may be
 * NULL) is the queue's length after the push. When the connection is found
 * broken the push is sent once more on a new one, so a job may be queued
 * twice: delivery is at least once, as the worker's. */
plcache_status plcache_push(plcache *c, const char *job, size_t len, long long *queue_len);

/* The same for a jansson object (json_t *, which stays the caller's), checked
 * the same way and sent as json_dumps(job, JSON_COMPACT). */
struct json_t;
plcache_status plcache_push_json(plcache *c, const struct json_t *job, long long *queue_len);

/* Renders input variables into a template entry (the JSON plcache_get gives)
 * exactly as PromptLayer's SDKs render a cached template locally: the text
 * blocks of prompt_template and the texts of its provider-ready llm_kwargs
 * (OpenAI's messages, Anthropic's system and messages, ...), each in its
 * template_format. f-string is Python's str.format with every named field
 * resolved (a missing or null variable is empty; a text Python would fail on
 * stays as it was); jinja2 is Jinja2's sandboxed environment with chainable
 * undefined, for the subset that covers real templates (variables with
 * attribute and index lookup, if/elif/else, for, comments, whitespace control,
 * the common filters). With llm_kwargs null and no variables the entry comes
 * back as it is, as the SDKs do.
 *
 * `vars` is a JSON object (`vars_len` bytes; NULL for none). On PLCACHE_OK *out
 * is the rendered entry as compact JSON (keys in their order, numbers as
 * written), owned by the caller (plcache_free), and *out_len (may be NULL) its
 * length. PLCACHE_NOT_RENDERABLE when the SDKs would not render this entry
 * themselves (a placeholder message, a tool of type "variable") or it holds
 * something outside the library's jinja2 subset: ask PromptLayer to render it
 * (plcache_get_rendered does). PLCACHE_E_ARG when entry or vars is not JSON
 * jansson reads or vars is not an object; PLCACHE_E_NOMEM. Pure: no client,
 * no I/O, thread-safe. */
plcache_status plcache_render(const char *entry, size_t entry_len, const char *vars,
                              size_t vars_len, char **out, size_t *out_len);

/* plcache_get, then plcache_render with vars (`vars_len` bytes of a JSON
 * object; NULL for none). When the entry is not renderable here (or is not
 * cached and there is an API key), asks PromptLayer to render it: POST
 * {api_base_url}/prompt-templates/<name> with {"label" | "version",
 * "input_variables": vars} (what the SDKs call), and gives its answer. Without
 * an API key such an entry is PLCACHE_NOT_RENDERABLE. Statuses and ownership
 * as plcache_get; the reason in plcache_errstr(). Blocks as plcache_get. */
plcache_status plcache_get_rendered(plcache *c, const char *name, plcache_select sel,
                                    const char *label, long long version, const char *vars,
                                    size_t vars_len, char **json, size_t *len);

/* Drops every entry of the memory cache (no-op without one). Safe to call
 * from any thread. */
void plcache_memory_clear(plcache *c);

/* Counters of one client since plcache_open, for tests, benchmarks and
 * metrics. */
typedef struct plcache_stats {
    unsigned long long memory_hits;        /* gets served from the memory cache */
    unsigned long long redis_hits;         /* gets served by the one Redis command */
    unsigned long long misses;             /* gets whose field was not in Redis */
    unsigned long long api_fetches;        /* read-through requests sent to the API */
    unsigned long long fills;              /* read-through answers written to Redis */
    unsigned long long fills_refused;      /* fills the gen check refused: a newer write won */
    unsigned long long lease_waits;        /* misses that waited for another client's fill */
    unsigned long long lease_wait_hits;    /* ... and got it from Redis */
    unsigned long long invalidations;      /* pl:invalidate messages handled */
    unsigned long long subscription_drops; /* times the listener's subscription went down */
    size_t memory_entries;                 /* entries in the memory cache now */
    int memory_usable; /* 1 while the memory cache may serve (its subscription is up) */
} plcache_stats;

/* Fills *out with c's counters. Cannot fail; blocks at most on a mutex. */
void plcache_get_stats(plcache *c, plcache_stats *out);

/* The reason for the last error on `c` ("" after success). Never NULL. */
const char *plcache_errstr(const plcache *c);

/* A fixed English name for a status ("ok", "not found", ...). Never NULL. */
const char *plcache_status_str(plcache_status st);

/* Frees what the library handed out. NULL is fine. */
void plcache_free(void *p);

/* Stops the listener, closes the connections, frees the client. NULL is fine. */
void plcache_close(plcache *c);

#ifdef __cplusplus
}
#endif

#endif
