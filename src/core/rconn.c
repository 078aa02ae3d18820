/* rconn.c -- async Redis connection with timeouts and reconnect.
 *
 * State lives in struct rconn; hiredis's context (ac) exists only while a link
 * is up or being made. A watchdog timer, ticking every 100 ms while anything is
 * outstanding, enforces the connect timeout and the command timeout: hiredis
 * 0.14 would otherwise wait forever on a server that stopped answering. Losing
 * the link always goes through link_lost(), which makes the state DOWN, tells
 * the owner and arms the reconnect timer; hiredis's own disconnect callback and
 * our deliberate drops both end up there, at most once per link.
 *
 * With a redis-sentinel:// URL every connect starts with discovery (state
 * DISCOVER): the sentinels are asked in turn, each on a short-lived async
 * connection bounded by the connect timeout, for the master's address
 * (SENTINEL get-master-addr-by-name); the handshake then checks with ROLE that
 * the node really is the master. The link is dropped, and the master found
 * again, when it is lost, when a command is refused with -READONLY (the node
 * was demoted), and when a sentinel publishes +switch-master for our master
 * (one pub/sub connection to one sentinel at a time, moved to the next one
 * when it breaks).
 */
#include "core/rconn.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "model/retry.h"

enum rc_state { RC_DOWN, RC_DISCOVER, RC_CONNECTING, RC_HANDSHAKE, RC_READY };

#define PUB_RETRY_MS 1000 /* between attempts at the +switch-master subscription */

struct rconn {
    struct event_base *base;
    uint64_t rng; /* reconnect jitter (model/retry.h's generator) */
    rurl url;
    rconn_opts opts;
    rconn_state_fn on_state;
    void *arg;
    redisAsyncContext *ac; /* NULL while DOWN */
    enum rc_state state;
    struct event *retry_timer;
    struct event *watch_timer;
    int backoff_ms;
    size_t pending;
    int64_t progress_us; /* last reply, or when pending left 0 */
    int64_t connect_started_us;
    unsigned long drops;
    int closing;
    int logged_down; /* one warning per outage, not one per retry */
    /* sentinel discovery (url.is_sentinel) */
    redisAsyncContext *sac;   /* the sentinel being asked, or NULL */
    int s_first, s_tried;     /* the sentinel asked first, and how many were asked */
    int s_found;              /* the last answer gave the master's address */
    struct event *step_timer; /* the next discovery step, outside hiredis callbacks */
    redisAsyncContext *pac;   /* SUBSCRIBE +switch-master, or NULL */
    int p_next, p_up;
    int64_t p_started_us;
    struct event *pub_timer;
};

typedef struct rconn_cmd {
    rconn *c;
    rconn_reply_fn fn;
    void *priv;
} rconn_cmd;

static void start_connect(evutil_socket_t fd, short what, void *arg);
static void connect_data(rconn *c);
static void drop(rconn *c, const char *why);

static void arm_watch(rconn *c)
{
    struct timeval tv = {0, 100 * 1000};
    if (!evtimer_pending(c->watch_timer, NULL))
        evtimer_add(c->watch_timer, &tv);
}

static void schedule_reconnect(rconn *c)
{
    if (c->closing)
        return;
    int ms = c->backoff_ms;
    /* +-25% jitter so that many daemons do not reconnect in step. */
    int jitter = ms / 4 > 0 ? (int)(retry_rng_next(&c->rng) % (uint64_t)(ms / 2 + 1)) - ms / 4 : 0;
    struct timeval tv = {(ms + jitter) / 1000, ((ms + jitter) % 1000) * 1000};
    evtimer_add(c->retry_timer, &tv);
    c->backoff_ms = ms * 2 > c->opts.backoff_max_ms ? c->opts.backoff_max_ms : ms * 2;
}

/* The single place a link ends. */
static void link_lost(rconn *c, const char *why)
{
    int was_ready = c->state == RC_READY;
    c->ac = NULL;
    c->state = RC_DOWN;
    c->drops++;
    if (!c->closing) {
        if (!c->logged_down || was_ready) {
            char where[300];
            rurl_describe(&c->url, where, sizeof(where));
            log_warn("redis unavailable", "redis", where, "why", why);
            c->logged_down = 1;
        }
        schedule_reconnect(c);
    }
    if (was_ready && c->on_state)
        c->on_state(0, c->arg);
}

/* Ends the current link on purpose (timeout, handshake error). */
static void drop(rconn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    link_lost(c, why);
    /* Pending callbacks run with NULL now (or, when called from inside a
     * hiredis callback, right after it); on_disconnect then sees that ac is no
     * longer ours and does nothing. */
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    rconn_cmd *cmd = privdata;
    rconn *c = cmd->c;
    redisReply *reply = r;
    c->pending--;
    c->progress_us = time_mono_us();
    cmd->fn(reply, cmd->priv);
    free(cmd);
    /* A demoted master answers writes with -READONLY: find the new one. */
    if (c->url.is_sentinel && reply != NULL && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "READONLY", 8) == 0 && c->ac == ac)
        drop(c, "READONLY: the node is a replica now");
}

static int send_argv(rconn *c, rconn_reply_fn fn, void *priv, int argc, const char **argv,
                     const size_t *lens)
{
    rconn_cmd *cmd = malloc(sizeof(*cmd));
    if (cmd == NULL)
        return -1;
    cmd->c = c;
    cmd->fn = fn;
    cmd->priv = priv;
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, argv, lens) != REDIS_OK) {
        free(cmd);
        return -1;
    }
    if (c->pending++ == 0)
        c->progress_us = time_mono_us();
    arm_watch(c);
    return 0;
}

static void handshake_step(redisReply *r, void *priv)
{
    rconn *c = priv;
    if (r == NULL || c->state != RC_HANDSHAKE)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        /* The reply names what failed (NOAUTH, WRONGPASS, ERR DB index); it
         * never holds the password. */
        log_error("redis handshake refused", "error", r->str);
        drop(c, "handshake refused");
    }
}

/* Sentinel mode: the node the sentinels named must say it is the master. */
static void handshake_role(redisReply *r, void *priv)
{
    rconn *c = priv;
    if (r == NULL || c->state != RC_HANDSHAKE)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master") != 0)
        drop(c, "not the master (the sentinels' answer is out of date)");
}

static void handshake_done(redisReply *r, void *priv)
{
    rconn *c = priv;
    if (r == NULL || c->state != RC_HANDSHAKE)
        return;
    if (r->type != REDIS_REPLY_STATUS) {
        drop(c, "unexpected PING reply");
        return;
    }
    c->state = RC_READY;
    c->backoff_ms = c->opts.backoff_min_ms;
    char where[300];
    rurl_describe(&c->url, where, sizeof(where));
    log_info("redis connected", "redis", where);
    c->logged_down = 0;
    if (c->on_state)
        c->on_state(1, c->arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns. */
        link_lost(c, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    c->state = RC_HANDSHAKE;
    char dbs[16];
    snprintf(dbs, sizeof(dbs), "%d", c->url.db);
    const char *av[3];
    size_t al[3];
    int ok = 0;
    if (c->url.password) {
        int n = 0;
        av[n] = "AUTH";
        al[n++] = 4;
        if (c->url.user) {
            av[n] = c->url.user;
            al[n] = strlen(c->url.user);
            n++;
        }
        av[n] = c->url.password;
        al[n] = strlen(c->url.password);
        n++;
        ok |= send_argv(c, handshake_step, c, n, av, al);
    }
    if (c->url.db != 0) {
        av[0] = "SELECT";
        al[0] = 6;
        av[1] = dbs;
        al[1] = strlen(dbs);
        ok |= send_argv(c, handshake_step, c, 2, av, al);
    }
    if (c->url.is_sentinel) {
        av[0] = "ROLE";
        al[0] = 4;
        ok |= send_argv(c, handshake_role, c, 1, av, al);
    }
    av[0] = "PING";
    al[0] = 4;
    ok |= send_argv(c, handshake_done, c, 1, av, al);
    if (ok != 0)
        drop(c, "cannot send handshake");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    link_lost(c, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "lost"));
}

/* ---- sentinel discovery --------------------------------------------------- */

static void step_later(rconn *c)
{
    struct timeval now = {0, 0};
    if (!c->closing)
        evtimer_add(c->step_timer, &now);
}

static void sentinel_connected(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (c == NULL || c->sac != ac || status == REDIS_OK)
        return;
    c->sac = NULL; /* hiredis frees it after this returns */
    step_later(c);
}

static void sentinel_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    rconn *c = ac->data;
    if (c == NULL || c->sac != ac)
        return;
    c->sac = NULL;
    step_later(c);
}

static void sentinel_reply(redisAsyncContext *ac, void *r, void *priv)
{
    rconn *c = priv;
    redisReply *rep = r;
    if (c->sac != ac)
        return;
    c->sac = NULL;
    long port = 0;
    char *end = NULL;
    /* A nil reply: this sentinel does not know the master (yet). */
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_STRING && rep->element[0]->len < sizeof(c->url.host) &&
        rep->element[0]->len > 0) {
        errno = 0;
        port = strtol(rep->element[1]->str, &end, 10);
        if (errno == 0 && end != rep->element[1]->str && *end == '\0' && port > 0 && port < 65536) {
            memcpy(c->url.host, rep->element[0]->str, rep->element[0]->len);
            c->url.host[rep->element[0]->len] = '\0';
            c->url.port = (int)port;
            c->s_found = 1;
            /* Ask this one first next time. */
            c->s_first = (c->s_first + c->s_tried - 1) % c->url.nsentinels;
        }
    }
    redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
    step_later(c);
}

/* Asks the next sentinel not yet asked in this round; after the last one,
 * the round failed and a reconnect is scheduled. */
static void discover_next(rconn *c)
{
    while (c->s_tried < c->url.nsentinels) {
        const rurl_node *n = &c->url.sentinels[(c->s_first + c->s_tried) % c->url.nsentinels];
        c->s_tried++;
        redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
        if (ac == NULL)
            continue;
        const char *argv[] = {"SENTINEL", "get-master-addr-by-name", c->url.master};
        size_t lens[] = {8, 23, strlen(c->url.master)};
        ac->data = c;
        if (ac->err || redisLibeventAttach(ac, c->base) != REDIS_OK ||
            redisAsyncSetConnectCallback(ac, sentinel_connected) != REDIS_OK ||
            redisAsyncSetDisconnectCallback(ac, sentinel_disconnected) != REDIS_OK ||
            redisAsyncCommandArgv(ac, sentinel_reply, c, 3, argv, lens) != REDIS_OK) {
            redisAsyncFree(ac);
            continue;
        }
        c->sac = ac;
        c->state = RC_DISCOVER;
        c->connect_started_us = time_mono_us();
        arm_watch(c);
        return;
    }
    c->state = RC_DOWN;
    if (!c->logged_down) {
        char where[300];
        rurl_describe(&c->url, where, sizeof(where));
        log_warn("redis unavailable", "redis", where, "why",
                 "no sentinel answered with the master's address");
        c->logged_down = 1;
    }
    schedule_reconnect(c);
}

static void discover_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (c->closing || c->state != RC_DISCOVER || c->sac != NULL)
        return;
    if (c->s_found) {
        c->s_found = 0;
        connect_data(c);
        return;
    }
    discover_next(c);
}

/* ---- +switch-master ------------------------------------------------------- */

static void pub_retry(rconn *c)
{
    struct timeval tv = {PUB_RETRY_MS / 1000, (PUB_RETRY_MS % 1000) * 1000};
    if (!c->closing)
        evtimer_add(c->pub_timer, &tv);
}

/* The sentinels moved our master: find it again now, unless the link we hold
 * (or are making) already goes to the new one, which is what a lost link's
 * own rediscovery often found before this message came. text is
 * "<old ip> <old port> <new ip> <new port>". */
static void master_switched(rconn *c, const char *text)
{
    char old_ip[64], new_ip[64];
    int old_port = 0, new_port = 0;
    int parsed = sscanf(text, "%63s %d %63s %d", old_ip, &old_port, new_ip, &new_port) == 4;
    int there = parsed &&
                (c->state == RC_CONNECTING || c->state == RC_HANDSHAKE || c->state == RC_READY) &&
                strcmp(c->url.host, new_ip) == 0 && c->url.port == new_port;
    log_info("sentinel: master switched", "master", c->url.master, "change", text, "link",
             there ? "already there" : "moving");
    if (there)
        return;
    if (c->state == RC_CONNECTING || c->state == RC_HANDSHAKE || c->state == RC_READY) {
        drop(c, "the sentinels switched the master");
    } else if (c->state == RC_DOWN && !c->closing) {
        struct timeval now = {0, 0};
        c->backoff_ms = c->opts.backoff_min_ms;
        evtimer_del(c->retry_timer);
        evtimer_add(c->retry_timer, &now);
    }
}

static void pub_message(redisAsyncContext *ac, void *r, void *priv)
{
    rconn *c = priv;
    redisReply *rep = r;
    if (c->pac != ac || rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        c->p_up = 1;
        return;
    }
    /* "message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>" */
    if (strcmp(rep->element[0]->str, "message") != 0 || rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    const char *text = rep->element[2]->str;
    size_t n = strlen(c->url.master);
    if (strncmp(text, c->url.master, n) == 0 && text[n] == ' ')
        master_switched(c, text + n + 1);
}

static void pub_connected(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (c == NULL || c->pac != ac || status == REDIS_OK)
        return;
    c->pac = NULL;
    pub_retry(c);
}

static void pub_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    rconn *c = ac->data;
    if (c == NULL || c->pac != ac)
        return;
    c->pac = NULL;
    pub_retry(c);
}

static void pub_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (c->closing || c->pac != NULL)
        return;
    const rurl_node *n = &c->url.sentinels[c->p_next++ % c->url.nsentinels];
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    if (ac == NULL) {
        pub_retry(c);
        return;
    }
    const char *argv[] = {"SUBSCRIBE", "+switch-master"};
    size_t lens[] = {9, 14};
    ac->data = c;
    if (ac->err || redisLibeventAttach(ac, c->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, pub_connected) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, pub_disconnected) != REDIS_OK ||
        redisAsyncCommandArgv(ac, pub_message, c, 2, argv, lens) != REDIS_OK) {
        redisAsyncFree(ac);
        pub_retry(c);
        return;
    }
    c->pac = ac;
    c->p_up = 0;
    c->p_started_us = time_mono_us();
    arm_watch(c);
}

/* ---- connecting ----------------------------------------------------------- */

static void start_connect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (c->closing || c->ac != NULL || c->sac != NULL)
        return;
    if (c->url.is_sentinel) {
        c->s_tried = 0;
        c->s_found = 0;
        discover_next(c);
        return;
    }
    connect_data(c);
}

static void connect_data(rconn *c)
{
    redisAsyncContext *ac = c->url.is_unix ? redisAsyncConnectUnix(c->url.path)
                                           : redisAsyncConnect(c->url.host, c->url.port);
    if (ac == NULL) {
        schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        c->state = RC_DOWN;
        if (!c->logged_down) {
            char where[300];
            rurl_describe(&c->url, where, sizeof(where));
            log_warn("redis unavailable", "redis", where, "why", why);
            c->logged_down = 1;
        }
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = RC_CONNECTING;
    c->connect_started_us = time_mono_us();
    if (redisLibeventAttach(ac, c->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
        c->ac = NULL;
        c->state = RC_DOWN;
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    arm_watch(c);
}

static void watch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn *c = arg;
    int64_t now = time_mono_us();
    if (c->pac != NULL && !c->p_up &&
        now - c->p_started_us > (int64_t)c->opts.connect_timeout_ms * 1000) {
        redisAsyncContext *pac = c->pac;
        c->pac = NULL;
        redisAsyncFree(pac);
        pub_retry(c);
    }
    if (c->state == RC_DISCOVER && c->sac != NULL &&
        now - c->connect_started_us > (int64_t)c->opts.connect_timeout_ms * 1000) {
        redisAsyncContext *sac = c->sac;
        c->sac = NULL; /* its callbacks, run with NULL now, see it is not ours */
        redisAsyncFree(sac);
        step_later(c);
    } else if ((c->state == RC_CONNECTING || c->state == RC_HANDSHAKE) &&
               now - c->connect_started_us > (int64_t)c->opts.connect_timeout_ms * 1000) {
        drop(c, "connect timed out");
    } else if (c->state == RC_READY && c->pending > 0 &&
               now - c->progress_us > (int64_t)c->opts.command_timeout_ms * 1000) {
        drop(c, "command timed out");
    }
    if (c->state == RC_CONNECTING || c->state == RC_HANDSHAKE || c->pending > 0 ||
        (c->state == RC_DISCOVER && c->sac != NULL) || (c->pac != NULL && !c->p_up))
        arm_watch(c);
}

rconn *rconn_new(struct event_base *base, const rurl *url, const rconn_opts *opts,
                 rconn_state_fn on_state, void *arg)
{
    rconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->rng = retry_seed((uint64_t)(uintptr_t)c);
    c->base = base;
    c->url = *url;
    c->url.user = url->user ? strdup(url->user) : NULL;
    c->url.password = url->password ? strdup(url->password) : NULL;
    c->opts.connect_timeout_ms = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : 2000;
    c->opts.command_timeout_ms = opts && opts->command_timeout_ms ? opts->command_timeout_ms : 5000;
    c->opts.backoff_min_ms = opts && opts->backoff_min_ms ? opts->backoff_min_ms : 100;
    c->opts.backoff_max_ms = opts && opts->backoff_max_ms ? opts->backoff_max_ms : 5000;
    c->backoff_ms = c->opts.backoff_min_ms;
    c->on_state = on_state;
    c->arg = arg;
    c->retry_timer = evtimer_new(base, start_connect, c);
    c->watch_timer = evtimer_new(base, watch, c);
    c->step_timer = evtimer_new(base, discover_step, c);
    c->pub_timer = evtimer_new(base, pub_start, c);
    if ((url->user && !c->url.user) || (url->password && !c->url.password) ||
        c->retry_timer == NULL || c->watch_timer == NULL || c->step_timer == NULL ||
        c->pub_timer == NULL || (url->is_sentinel && url->nsentinels < 1)) {
        rconn_free(c);
        return NULL;
    }
    struct timeval now = {0, 0};
    evtimer_add(c->retry_timer, &now);
    if (c->url.is_sentinel)
        evtimer_add(c->pub_timer, &now);
    return c;
}

int rconn_ready(const rconn *c)
{
    return c->state == RC_READY;
}

size_t rconn_pending(const rconn *c)
{
    return c->pending;
}

unsigned long rconn_drops(const rconn *c)
{
    return c->drops;
}

int rconn_argv(rconn *c, rconn_reply_fn fn, void *priv, int argc, const char **argv,
               const size_t *lens)
{
    if (c->state != RC_READY || c->ac == NULL)
        return -1;
    return send_argv(c, fn, priv, argc, argv, lens);
}

void rconn_free(rconn *c)
{
    if (c == NULL)
        return;
    c->closing = 1;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->state = RC_DOWN;
        redisAsyncFree(ac);
    }
    if (c->sac) {
        redisAsyncContext *ac = c->sac;
        c->sac = NULL;
        redisAsyncFree(ac);
    }
    if (c->pac) {
        redisAsyncContext *ac = c->pac;
        c->pac = NULL;
        redisAsyncFree(ac);
    }
    if (c->retry_timer)
        event_free(c->retry_timer);
    if (c->watch_timer)
        event_free(c->watch_timer);
    if (c->step_timer)
        event_free(c->step_timer);
    if (c->pub_timer)
        event_free(c->pub_timer);
    rurl_free(&c->url);
    free(c);
}

int rconn_send(rconn *c, rconn_reply_fn fn, void *priv, const rargs *a)
{
    if (a->failed || a->argc == 0)
        return -1;
    return rconn_argv(c, fn, priv, a->argc, (const char **)a->argv, a->lens);
}
