/* daemon.c -- the shell both daemons run in (see daemon.h for the contract). */
#include "core/daemon.h"

#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/hsrv.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/options.h"
#include "core/timeutil.h"

/* Descriptors a daemon needs besides its connections: Redis, the API, the
 * listeners, the signal pipe, files. */
#define DAEMON_SPARE_FDS 64

/* How often the drain looks at the work left. */
#define DAEMON_DRAIN_TICK_US (20 * 1000)

/* The value a row of the settings table put into the settings struct. */
static void *setting_slot(const daemon_shell *d, const cfg_opt *row)
{
    return (char *)d->settings + row->offset;
}

int daemon_load(daemon_shell *d, const cfg_program *prog, int argc, char **argv, void *settings)
{
    memset(d, 0, sizeof(*d));
    d->prog = prog;
    d->settings = settings;
    d->status = 1;
    const cfg_opt *url = cfg_find(prog, "PLCACHE_REDIS_URL");
    const cfg_opt *level = cfg_find(prog, "PLCACHE_LOG_LEVEL");
    const cfg_opt *redis_timeout = cfg_find(prog, "PLCACHE_REDIS_TIMEOUT");
    const cfg_opt *shutdown_timeout = cfg_find(prog, "PLCACHE_SHUTDOWN_TIMEOUT");
    if (url == NULL || url->type != CFG_STRING || level == NULL || level->type != CFG_STRING ||
        redis_timeout == NULL || redis_timeout->type != CFG_INT || shutdown_timeout == NULL ||
        shutdown_timeout->type != CFG_INT) {
        fprintf(stderr, "%s: the settings table lacks a row of the daemon shell\n", prog->name);
        return -1;
    }
    if (opt_start(prog, argc, argv, settings, setting_slot(d, level), setting_slot(d, url), &d->url,
                  &d->status) != 0)
        return -1;
    d->redis_timeout_s = *(const long *)setting_slot(d, redis_timeout);
    d->shutdown_timeout_s = *(const long *)setting_slot(d, shutdown_timeout);
    rurl_describe(&d->url, d->where, sizeof(d->where));
    d->status = 2;
    return 0;
}

void daemon_bad_setting(daemon_shell *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", d->prog->name, msg);
    d->status = 2;
}

int daemon_reserve_fds(daemon_shell *d, const char *setting, long wanted)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)wanted + DAEMON_SPARE_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return 0;
    }
    daemon_bad_setting(d, "%s: %ld needs %lu file descriptors, the limit is %lu", setting, wanted,
                       (unsigned long)need, (unsigned long)rl.rlim_max);
    return -1;
}

int daemon_open(daemon_shell *d, const daemon_links *l)
{
    d->status = 1;
    signal(SIGPIPE, SIG_IGN);
    if (fetch_global_init() != 0) {
        fprintf(stderr, "%s: cannot initialise libcurl\n", d->prog->name);
        return -1;
    }
    d->curl_started = 1;
    /* Large bodies (a webhook delivery, a log job) make large transient
     * allocations (the body, its parse). A fixed mmap threshold gives them
     * back to the kernel when freed, instead of glibc's adaptive threshold
     * keeping them in the heap: resident memory stays near its idle size
     * after a burst of big bodies. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    d->base = loop_base_new();
    if (d->base == NULL) {
        log_error("cannot create the event loop");
        return -1;
    }
    rconn_opts ro = {.command_timeout_ms = (int)d->redis_timeout_s * 1000};
    rconn_opts bo = {.command_timeout_ms = ro.command_timeout_ms + l->block_ms};
    d->block_timeout_ms = bo.command_timeout_ms;
    d->redis = rconn_new(d->base, &d->url, &ro, l->on_state, l->arg);
    d->block = rconn_new(d->base, &d->url, &bo, l->on_state, l->arg);
    d->fetch = fetch_new(d->base, &l->fetch);
    if (d->redis == NULL || d->block == NULL || d->fetch == NULL) {
        log_error("out of memory");
        return -1;
    }
    return 0;
}

const char *daemon_host_id(char *out, size_t outlen, const char *given)
{
    if (given != NULL && given[0] != '\0') {
        snprintf(out, outlen, "%s", given);
        return out;
    }
    char host[256] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(out, outlen, "%s", host);
    return out;
}

const char *daemon_instance_id(char *out, size_t outlen, const char *given)
{
    if (given != NULL && given[0] != '\0') {
        snprintf(out, outlen, "%s", given);
        return out;
    }
    char host[256];
    daemon_host_id(host, sizeof(host), NULL);
    snprintf(out, outlen, "%s-%ld", host, (long)getpid());
    return out;
}

int daemon_serve_ops(daemon_shell *d, const char *listen, int (*ready)(void *arg),
                     void (*metrics)(buf *b, void *arg), void *arg)
{
    char err[512];
    /* Few, small requests from a scraper or a probe. */
    hsrv_opts o = {
        .listen = listen,
        .max_body = 1024,
        .max_headers = 8192,
        .idle_timeout_s = 30,
        .request_timeout_s = 10,
        .max_conns = 64,
    };
    d->ops = (ops_hooks){.ready = ready, .metrics = metrics, .arg = arg};
    d->ops_srv = hsrv_new(d->base, &o, ops_handle, &d->ops, err, sizeof(err));
    if (d->ops_srv == NULL) {
        daemon_bad_setting(d, "PLCACHE_METRICS_LISTEN (--metrics-listen): %s", err);
        return -1;
    }
    return 0;
}

daemon_drain_step daemon_drain_decide(int finishing, int has_finish, int64_t now_us,
                                      int64_t deadline_us, int64_t held_grace_us, size_t left,
                                      int held)
{
    int due = now_us >= deadline_us;
    if (finishing)
        return due ? DAEMON_DRAIN_EXIT : DAEMON_DRAIN_WAIT;
    if (due && left > 0 && held)
        return now_us >= deadline_us + held_grace_us ? DAEMON_DRAIN_GIVE_UP : DAEMON_DRAIN_WAIT;
    if (left == 0 || due)
        return has_finish ? DAEMON_DRAIN_FINISH : DAEMON_DRAIN_EXIT;
    return DAEMON_DRAIN_WAIT;
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    daemon_shell *d = arg;
    const daemon_hooks *h = d->hooks;
    void *ha = d->hooks_arg;
    size_t left = h->busy(ha);
    int64_t now = time_mono_us();
    /* Asked only where it decides something. */
    int held = !d->finishing && h->held != NULL && now >= d->deadline_us && left > 0 && h->held(ha);
    daemon_drain_step step =
        daemon_drain_decide(d->finishing, h->finish != NULL, now, d->deadline_us,
                            (int64_t)(d->block_timeout_ms + 1000) * 1000, left, held);
    if (step == DAEMON_DRAIN_GIVE_UP) {
        log_warn(h->held_msg);
        event_base_loopbreak(d->base);
        return;
    }
    if ((step == DAEMON_DRAIN_EXIT || step == DAEMON_DRAIN_FINISH) && !d->finishing && left > 0) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", left);
        log_warn(h->timeout_msg, "count", n);
    }
    if (step == DAEMON_DRAIN_EXIT) {
        event_base_loopbreak(d->base);
        return;
    }
    if (step == DAEMON_DRAIN_FINISH) {
        d->finishing = 1;
        h->finish(ha);
        /* If Redis never answers the last step, leave after one more
         * command timeout. */
        d->deadline_us = time_mono_us() + (int64_t)d->redis_timeout_s * 1000000;
    }
    struct timeval tv = {0, DAEMON_DRAIN_TICK_US};
    evtimer_add(d->drain_timer, &tv);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    daemon_shell *d = arg;
    if (d->stopping)
        return;
    d->stopping = 1;
    log_info(d->hooks->stop_msg, "signal", sig == SIGINT ? "INT" : "TERM");
    d->hooks->stop(d->hooks_arg);
    d->deadline_us = time_mono_us() + d->shutdown_timeout_s * 1000000L;
    drain_check(-1, 0, d);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    daemon_shell *d = arg;
    d->hooks->reload(d->hooks_arg);
}

int daemon_arm(daemon_shell *d, const daemon_hooks *h, void *arg)
{
    d->hooks = h;
    d->hooks_arg = arg;
    d->drain_timer = evtimer_new(d->base, drain_check, d);
    d->sigs[0] = evsignal_new(d->base, SIGTERM, on_stop, d);
    d->sigs[1] = evsignal_new(d->base, SIGINT, on_stop, d);
    if (h->reload != NULL)
        d->sigs[2] = evsignal_new(d->base, SIGHUP, on_hup, d);
    int nsigs = h->reload != NULL ? 3 : 2;
    int ok = d->drain_timer != NULL;
    for (int i = 0; i < nsigs && ok; i++)
        ok = d->sigs[i] != NULL && evsignal_add(d->sigs[i], NULL) == 0;
    if (!ok) {
        log_error("cannot install signal handlers");
        return -1;
    }
    return 0;
}

void daemon_run(daemon_shell *d)
{
    char msg[128];
    event_base_dispatch(d->base);
    snprintf(msg, sizeof(msg), "%s stopped", d->prog->name);
    log_info(msg);
    d->status = 0;
}

void daemon_exit(daemon_shell *d)
{
    event_base_loopbreak(d->base);
}

void daemon_disconnect(daemon_shell *d, void (*end)(void *arg), void *arg)
{
    if (end != NULL)
        end(arg);
    fetch_free(d->fetch);
    d->fetch = NULL;
    rconn_free(d->block);
    d->block = NULL;
    rconn_free(d->redis);
    d->redis = NULL;
}

void daemon_free(daemon_shell *d)
{
    daemon_disconnect(d, NULL, NULL);
    hsrv_free(d->ops_srv);
    d->ops_srv = NULL;
    for (size_t i = 0; i < sizeof(d->sigs) / sizeof(d->sigs[0]); i++) {
        if (d->sigs[i])
            event_free(d->sigs[i]);
        d->sigs[i] = NULL;
    }
    if (d->drain_timer)
        event_free(d->drain_timer);
    d->drain_timer = NULL;
    if (d->base)
        event_base_free(d->base);
    d->base = NULL;
    rurl_free(&d->url);
    if (d->prog != NULL)
        cfg_free(d->prog, d->settings);
    if (d->curl_started)
        fetch_global_cleanup();
    d->curl_started = 0;
}
