/* cmd_sync.c -- plcache sync [NAME ...]: warm or refresh the cache from the API.
 *
 * Runs on one event loop: an rconn to Redis and a fetcher (curl multi, at most
 * PLCACHE_FETCH_CONCURRENCY requests in flight, each tried up to 5 times with
 * backoff). Two phases:
 *
 *   names      the NAMEs given; or, with none, every template of the API's
 *              listing (GET /prompt-templates?page=p&per_page=100; page 1
 *              first, then the other pages at once) and every template
 *              already cached (SCAN <prefix>prompt:*), without repeats
 *   templates  a bounded number at a time, each refreshed by core/refresh
 *              -- the reconciliation the applier runs too: read its cached
 *              fields and gen, fetch latest (always: sync warms) and every
 *              cached version:N and label:L, write every answer in one
 *              model/cachew write behind the gen guard, redone a few times
 *              when a webhook changed the template meanwhile
 *
 * A template's answers are written even when some of its other fetches
 * failed; each failure is counted and makes the exit status 1.
 */
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmds.h"
#include "core/buf.h"
#include "core/fetch.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/refresh.h"
#include "core/timeutil.h"
#include "model/keys.h"

#define SYNC_PER_PAGE 100
#define SYNC_MAX_RETRIES 5   /* a template redone after a concurrent change */
#define SYNC_ERRORS_SHOWN 20 /* failures printed one by one; the rest counted */
#define SYNC_TICK_MS 100
#define SYNC_MAX_URL (64 * 1024)

typedef struct sync_run sync_run;

struct sync_run {
    const cli_ctx *c;
    struct event_base *base;
    rconn *redis;
    fetcher *fetch;
    struct event *tick;
    char *key_header; /* "X-API-KEY: ...", owned */
    const char *headers[4];
    char prompt_prefix[512];
    /* names */
    char **names;
    size_t nnames, cap;
    int named, started, listing_left, scanning, collected;
    char cursor[32];
    /* templates */
    refresh_env env;
    size_t next, active, max_active;
    /* results */
    size_t done, refreshed, changed, removed, errors, listed;
    int64_t deadline_us;
    int tty, progress_shown, stop, redis_failed, in_more;
};

static void sync_more(sync_run *r);

static void sync_fail(sync_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sync_fail(sync_run *r, const char *fmt, ...)
{
    r->errors++;
    if (r->errors > SYNC_ERRORS_SHOWN || r->stop)
        return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->progress_shown) {
        fputs("\r\033[K", stderr);
        r->progress_shown = 0;
    }
    cli_error(r->c, "%s", msg);
}

/* ---- names -------------------------------------------------------------- */

static int add_name(sync_run *r, const char *s, size_t n)
{
    if (n == 0 || memchr(s, '\0', n) != NULL)
        return 0;
    if (r->nnames == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        char **names = realloc(r->names, cap * sizeof(*names));
        if (names == NULL)
            return -1;
        r->names = names;
        r->cap = cap;
    }
    r->names[r->nnames] = strndup(s, n);
    if (r->names[r->nnames] == NULL)
        return -1;
    r->nnames++;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the names and drops repeats; then the templates phase starts. */
static void names_collected(sync_run *r)
{
    if (r->collected || r->listing_left > 0 || r->scanning)
        return;
    r->collected = 1;
    if (r->nnames > 1)
        qsort(r->names, r->nnames, sizeof(*r->names), cmp_name);
    size_t k = 0;
    for (size_t i = 0; i < r->nnames; i++) {
        if (k > 0 && strcmp(r->names[k - 1], r->names[i]) == 0)
            free(r->names[i]);
        else
            r->names[k++] = r->names[i];
    }
    r->nnames = k;
    sync_more(r);
}

static void list_page(sync_run *r, long long page);

static void listed(const fetch_result *res, void *arg)
{
    sync_run *r = arg;
    r->listing_left--;
    if (r->stop)
        return;
    json_error_t je;
    json_t *o = res->outcome == FETCH_OK ? json_loadb(res->body, res->len, 0, &je) : NULL;
    json_t *items = json_object_get(o, "items");
    if (res->outcome != FETCH_OK || !json_is_array(items)) {
        char why[300];
        if (res->outcome == FETCH_OK)
            snprintf(why, sizeof(why), "an answer without \"items\"");
        else
            refresh_why(res, why, sizeof(why));
        sync_fail(r, "listing the templates: %s", why);
        json_decref(o);
        names_collected(r);
        return;
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_t *name = json_object_get(it, "prompt_name");
        if (json_is_string(name)) {
            if (add_name(r, json_string_value(name), json_string_length(name)) != 0) {
                sync_fail(r, "out of memory");
                break;
            }
            r->listed++;
        }
    }
    json_t *page = json_object_get(o, "page");
    json_t *pages = json_object_get(o, "pages");
    long long p = json_is_integer(page) ? json_integer_value(page) : 0;
    if (p == 1 && json_is_integer(pages)) {
        /* Every other page at once; the fetcher keeps the bound. */
        for (long long q = 2; q <= json_integer_value(pages) && !r->stop; q++)
            list_page(r, q);
    } else if (!json_is_integer(pages) && p >= 1 && json_is_true(json_object_get(o, "has_next"))) {
        list_page(r, p + 1); /* no page count: follow the links */
    }
    json_decref(o);
    names_collected(r);
}

static void list_page(sync_run *r, long long page)
{
    buf url;
    buf_init(&url, SYNC_MAX_URL);
    size_t blen = strlen(r->c->set->base_url);
    while (blen > 0 && r->c->set->base_url[blen - 1] == '/')
        blen--;
    if (buf_append(&url, r->c->set->base_url, blen) != 0 ||
        buf_printf(&url, "/prompt-templates?page=%lld&per_page=%d", page, SYNC_PER_PAGE) != 0 ||
        fetch_get(r->fetch, url.data, r->headers, NULL, listed, r) != 0)
        sync_fail(r, "cannot request page %lld of the listing", page);
    else
        r->listing_left++;
    buf_free(&url);
}

static void scan_more(sync_run *r);

static void scanned(redisReply *rep, void *priv)
{
    sync_run *r = priv;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING) {
        sync_fail(r, "cannot list the cached templates (SCAN): %s",
                  rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "Redis unavailable");
        r->scanning = 0;
        names_collected(r);
        return;
    }
    snprintf(r->cursor, sizeof(r->cursor), "%s", rep->element[0]->str);
    size_t plen = strlen(r->prompt_prefix);
    redisReply *keys = rep->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *k = keys->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len > plen &&
            add_name(r, k->str + plen, k->len - plen) != 0) {
            sync_fail(r, "out of memory");
            break;
        }
    }
    if (strcmp(r->cursor, "0") == 0) {
        r->scanning = 0;
        names_collected(r);
    } else {
        scan_more(r);
    }
}

static void scan_more(sync_run *r)
{
    char match[1100];
    if (keys_match(match, sizeof(match), r->prompt_prefix, "") < 0) {
        sync_fail(r, "cannot list the cached templates: the key prefix is too long");
        r->scanning = 0;
        names_collected(r);
        return;
    }
    const char *av[] = {"SCAN", r->cursor, "MATCH", match, "COUNT", "1000", "TYPE", "hash"};
    size_t al[8];
    for (int i = 0; i < 8; i++)
        al[i] = strlen(av[i]);
    if (rconn_argv(r->redis, scanned, r, 8, av, al) != 0) {
        sync_fail(r, "cannot list the cached templates: Redis unavailable");
        r->scanning = 0;
        names_collected(r);
    }
}

/* ---- templates: core/refresh, a bounded number at a time ---------------- */

static void tpl_error(const char *name, const char *field, const char *why, void *arg)
{
    sync_run *r = arg;
    if (field != NULL)
        sync_fail(r, "%s %s: %s", name, field, why);
    else
        sync_fail(r, "%s: %s", name, why);
}

static void tpl_done(const refresh_report *rep, void *arg)
{
    sync_run *r = arg;
    r->changed += rep->changed;
    r->refreshed += rep->refreshed;
    r->removed += rep->removed;
    if (rep->gone && !rep->cached && r->named)
        cli_error(r->c, "%s: no such template at the API", rep->name);
    r->active--;
    r->done++;
    sync_more(r);
}

/* Starts templates while there is room; ends the loop when all are done. */
static void sync_more(sync_run *r)
{
    /* Not re-entered: a template that ends at once (Redis away) returns
     * here through tpl_done, and this loop goes on with the next one. */
    if (!r->collected || r->in_more)
        return;
    r->in_more = 1;
    while (!r->stop && r->active < r->max_active && r->next < r->nnames) {
        r->active++;
        if (refresh_start(&r->env, r->names[r->next++], tpl_error, tpl_done, r) != 0) {
            r->active--;
            sync_fail(r, "out of memory");
            r->stop = 1;
            break;
        }
    }
    r->in_more = 0;
    if (r->active == 0 && (r->next >= r->nnames || r->stop))
        event_base_loopbreak(r->base);
}

/* ---- the run ------------------------------------------------------------ */

static void sync_start(sync_run *r)
{
    r->started = 1;
    if (r->named) {
        r->collected = 0;
        names_collected(r);
        return;
    }
    r->scanning = 1;
    snprintf(r->cursor, sizeof(r->cursor), "0");
    list_page(r, 1);
    scan_more(r);
}

static void redis_state(int up, void *arg)
{
    sync_run *r = arg;
    if (up && !r->started)
        sync_start(r);
}

static void show_progress(sync_run *r)
{
    if (!r->tty)
        return;
    if (!r->collected)
        fprintf(stderr, "\rplcache sync: listing, %zu templates so far\033[K", r->nnames);
    else
        fprintf(stderr, "\rplcache sync: %zu/%zu templates, %zu errors\033[K", r->done, r->nnames,
                r->errors);
    r->progress_shown = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sync_run *r = arg;
    if (!r->started && time_mono_us() >= r->deadline_us) {
        char where[300];
        rurl_describe(r->c->url, where, sizeof(where));
        cli_error(r->c, "cannot reach Redis at %s within PLCACHE_REDIS_TIMEOUT (%lds): %s", where,
                  r->c->set->redis_timeout, cli_redis_hint(""));
        r->redis_failed = 1;
        event_base_loopbreak(r->base);
        return;
    }
    show_progress(r);
    struct timeval tv = {0, SYNC_TICK_MS * 1000};
    evtimer_add(r->tick, &tv);
}

/* Reads the command line: the NAMEs to sync (none: every template). Returns
 * CLI_OK, or the exit status after saying why. */
static int sync_parse(sync_run *r, int argc, char **argv)
{
    const cli_ctx *c = r->c;
    int rest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
            continue;
        }
        if (!rest && a[0] == '-' && a[1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help sync)", a);
            return CLI_USAGE;
        }
        if (add_name(r, a, strlen(a)) != 0) {
            cli_error(c, "out of memory");
            return CLI_FAIL;
        }
        r->named = 1;
    }
    if (c->set->api_key == NULL) {
        cli_error(c, "PROMPTLAYER_API_KEY (--promptlayer-api-key) is required by sync: set it, or "
                     "PROMPTLAYER_API_KEY_FILE to a file that holds it");
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* The templates' key prefix, Redis tried once, and the API's headers.
 * Returns 0, or -1 (said, unless out of memory). */
static int sync_prepare(sync_run *r)
{
    const cli_ctx *c = r->c;
    if (cli_key(c, r->prompt_prefix, sizeof(r->prompt_prefix), KEYS_PROMPT, NULL) != 0)
        return -1;
    /* One blocking connect first: a Redis that is away or refuses the password
     * is said in one line, as by every other command, before any API call. */
    redisContext *probe = cli_redis(c);
    if (probe == NULL)
        return -1;
    redisFree(probe);
    size_t hl = strlen(c->set->api_key) + 16;
    r->key_header = malloc(hl);
    if (r->key_header == NULL)
        return -1;
    snprintf(r->key_header, hl, "X-API-KEY: %s", c->set->api_key);
    r->headers[0] = r->key_header;
    r->headers[1] = "Cache-Control: no-cache";
    r->headers[2] = "Accept: application/json";
    r->headers[3] = NULL;
    return 0;
}

/* The event loop with its Redis connection, fetcher and progress tick, and
 * the environment of core/refresh. Returns 0, or -1 (said, unless out of
 * memory); sync_release frees what was made either way. */
static int sync_setup(sync_run *r)
{
    const cli_ctx *c = r->c;
    r->max_active = (size_t)c->set->fetch_concurrency * 2;
    r->tty = isatty(STDERR_FILENO);
    signal(SIGPIPE, SIG_IGN);
    if (fetch_global_init() != 0) {
        cli_error(c, "cannot initialise libcurl");
        return -1;
    }
    r->base = event_base_new();
    if (r->base == NULL)
        return -1;
    fetch_opts fo = {
        .max_inflight = (int)c->set->fetch_concurrency,
        .timeout_ms = c->set->fetch_timeout * 1000,
        .max_pending = 1000000,
    };
    r->fetch = fetch_new(r->base, &fo);
    int ms = (int)c->set->redis_timeout * 1000;
    rconn_opts ro = {.connect_timeout_ms = ms, .command_timeout_ms = ms};
    r->redis = rconn_new(r->base, c->url, &ro, redis_state, r);
    r->tick = evtimer_new(r->base, on_tick, r);
    if (r->fetch == NULL || r->redis == NULL || r->tick == NULL) {
        cli_error(c, "cannot start (out of memory)");
        return -1;
    }
    r->env = (refresh_env){.redis = r->redis,
                           .fetch = r->fetch,
                           .prefix = c->set->prefix,
                           .base_url = c->set->base_url,
                           .headers = r->headers,
                           .llm_kwargs = c->set->llm_kwargs != 0,
                           .warm = 1,
                           .max_tries = SYNC_MAX_RETRIES + 1,
                           .stop = &r->stop};
    return 0;
}

/* Runs the loop until every template is done or Redis could not be
 * reached within PLCACHE_REDIS_TIMEOUT (r->redis_failed). */
static void sync_loop(sync_run *r)
{
    int ms = (int)r->c->set->redis_timeout * 1000;
    r->deadline_us = time_mono_us() + (int64_t)ms * 1000;
    on_tick(-1, 0, r);
    event_base_dispatch(r->base);
    if (r->progress_shown)
        fputs("\r\033[K", stderr);
}

/* The counts, one JSON line on stdout. Returns the exit status. */
static int sync_report(const sync_run *r)
{
    if (r->errors > SYNC_ERRORS_SHOWN)
        cli_error(r->c, "%zu more failures not shown", r->errors - SYNC_ERRORS_SHOWN);
    printf("{\"templates\":%zu,\"refreshed\":%zu,\"changed\":%zu,\"removed\":%zu,\"errors\":%zu}"
           "\n",
           r->done, r->refreshed, r->changed, r->removed, r->errors);
    return r->errors > 0 ? CLI_FAIL : CLI_OK;
}

/* Frees all the run holds, whatever part of it was made. */
static void sync_release(sync_run *r)
{
    r->stop = 1; /* callbacks still owed (an early end) start nothing new */
    if (r->tick)
        event_free(r->tick);
    fetch_free(r->fetch);
    rconn_free(r->redis);
    if (r->base)
        event_base_free(r->base);
    fetch_global_cleanup();
    for (size_t i = 0; i < r->nnames; i++)
        free(r->names[i]);
    free(r->names);
    if (r->key_header) {
        OPENSSL_cleanse(r->key_header, strlen(r->key_header));
        free(r->key_header);
    }
}

int cmd_sync(const cli_ctx *c, int argc, char **argv)
{
    sync_run run;
    sync_run *r = &run;
    memset(r, 0, sizeof(*r));
    r->c = c;
    int status = sync_parse(r, argc, argv);
    if (status != CLI_OK)
        goto done;
    status = CLI_FAIL;
    if (sync_prepare(r) != 0 || sync_setup(r) != 0)
        goto done;
    sync_loop(r);
    if (!r->redis_failed)
        status = sync_report(r);
done:
    sync_release(r);
    return status;
}
