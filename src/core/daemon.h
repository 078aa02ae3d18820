/* daemon.h -- the shell both daemons run in: settings, process, loop, links,
 * signals, drain, operations listener and teardown.
 *
 * plcache-webhook and plcache-worker start, serve and stop the same way
 * (DESIGN.md sections 2 and 8); their main.c describe their settings and wire
 * their modules, and this module does the rest, in this order:
 *
 *   daemon_load       settings (flags, environment, _FILE secrets), log level,
 *                     PLCACHE_REDIS_URL parsed and resolved
 *   daemon_open       SIGPIPE ignored, libcurl, the malloc threshold, the
 *                     event base, and the links: a Redis connection for
 *                     commands, one for blocking commands, a fetcher for the
 *                     PromptLayer API
 *   daemon_serve_ops  optional: a listener of its own for /healthz, /readyz
 *                     and /metrics (core/ops.h)
 *   daemon_arm        SIGTERM/SIGINT start the drain; SIGHUP reloads when the
 *                     program has something to reload
 *   daemon_run        the loop, until the drain ends
 *   daemon_disconnect the program ends its work, then the links go
 *   daemon_free       the rest, whatever step failed
 *
 * The shell finds the settings it needs in the program's table by name
 * (core/options.h rows): PLCACHE_REDIS_URL, PLCACHE_LOG_LEVEL,
 * PLCACHE_REDIS_TIMEOUT and PLCACHE_SHUTDOWN_TIMEOUT must be rows of it.
 *
 * The drain. On the first SIGTERM or SIGINT the program's stop hook stops
 * taking work; from then on, every 20 ms, the shell asks how much is still in
 * flight (busy). When nothing is, or PLCACHE_SHUTDOWN_TIMEOUT has passed, it
 * logs what is left and either leaves the loop or, when the program has a
 * finish hook (an asynchronous last step on the command link, such as
 * returning unfinished jobs), runs it and leaves when it calls daemon_exit, or
 * after PLCACHE_REDIS_TIMEOUT. A program can hold the end past the timeout
 * while a blocking command is under way on the blocking link (held): at most
 * that link's command timeout and one second more. The decision itself is
 * daemon_drain_decide, a pure function.
 *
 * Exit statuses: 0 after --help, --version or a drained stop; 2 for a bad
 * setting (one line on stderr naming it); 1 when the process cannot start
 * (out of memory, no event loop, libcurl). daemon_shell.status holds the one
 * main should return at every step.
 */
#ifndef PLCACHE_DAEMON_H
#define PLCACHE_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/fetch.h"
#include "core/ops.h"
#include "core/rconn.h"
#include "core/rurl.h"

struct event;
struct event_base;
struct hsrv;

/* What a program plugs into the drain and the signals: a constant of the
 * program, its hooks called with the arg given to daemon_arm. */
typedef struct daemon_hooks {
    /* SIGTERM/SIGINT, once: stop taking new work. Required. */
    void (*stop)(void *arg);
    /* Work still in flight; the drain waits for 0. Required. */
    size_t (*busy)(void *arg);
    /* Optional: non-zero while a blocking command is under way that the end
     * must wait for, even past the timeout (see the design note above). */
    int (*held)(void *arg);
    /* Optional: the last, asynchronous step once the drain is over; it calls
     * daemon_exit when done. Without it the loop ends with the drain. */
    void (*finish)(void *arg);
    /* Optional: SIGHUP. Without it SIGHUP is not handled (its default
     * action). */
    void (*reload)(void *arg);
    const char *stop_msg;    /* logged on SIGTERM/SIGINT, with signal=TERM|INT */
    const char *timeout_msg; /* logged, with count=N, when the timeout passes with N left */
    const char *held_msg;    /* logged when held past the blocking link's timeout */
} daemon_hooks;

/* What the links are made with (daemon_open). */
typedef struct daemon_links {
    /* The longest a blocking command of the program waits: the blocking
     * link's command timeout is PLCACHE_REDIS_TIMEOUT and this. */
    int block_ms;
    fetch_opts fetch;
    rconn_state_fn on_state; /* both links' state changes, or NULL */
    void *arg;
} daemon_links;

/* One daemon's shell. The program reads the fields up to status; the rest
 * is the shell's. Lives in the program's app struct (no allocation). */
typedef struct daemon_shell {
    struct event_base *base; /* the loop, from daemon_open on; NULL before */
    rconn *redis;            /* commands, from daemon_open on */
    rconn *block;            /* blocking commands (XREADGROUP, BLMOVE) */
    fetcher *fetch;          /* the PromptLayer API */
    rurl url;                /* PLCACHE_REDIS_URL, parsed and resolved by daemon_load */
    char where[300];         /* url for logs (never the password) */
    int status;              /* what main returns if it stops now */

    const cfg_program *prog;
    void *settings;
    long redis_timeout_s, shutdown_timeout_s;
    int block_timeout_ms;
    const daemon_hooks *hooks;
    void *hooks_arg;
    ops_hooks ops;
    struct hsrv *ops_srv;
    struct event *sigs[3]; /* SIGTERM, SIGINT, SIGHUP */
    struct event *drain_timer;
    int64_t deadline_us;
    int stopping, finishing, curl_started;
} daemon_shell;

/* Loads the settings of prog into `settings` (cfg_load), sets the log level
 * and parses and resolves the Redis URL into d->url. Returns 0 with
 * d->status 2 (so that a later bad setting needs no more), or -1 when main
 * should return d->status now: 0 after --help or --version, 2 after one line
 * on stderr, 1 when prog lacks a row the shell needs (a bug). Blocks on name
 * resolution and secret files: call it first. Call daemon_free in every
 * case. */
int daemon_load(daemon_shell *d, const cfg_program *prog, int argc, char **argv, void *settings);

/* Prints "<program>: <message>" on stderr and sets d->status to 2: a setting
 * the program refuses after daemon_load. Never fails. */
void daemon_bad_setting(daemon_shell *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Makes sure `wanted` connections (the value of `setting`, such as
 * "PLCACHE_MAX_CONNECTIONS (--max-connections)") and 64 descriptors more fit
 * the process's limit of open files, raising the soft limit when the hard one
 * allows. Returns 0, or -1 after a daemon_bad_setting naming the setting. */
int daemon_reserve_fds(daemon_shell *d, const char *setting, long wanted);

/* Sets the process up for a daemon: SIGPIPE ignored, libcurl started, a fixed
 * malloc mmap threshold, the event base (core/loop.h) in d->base, and the
 * links d->redis, d->block (both connecting from the loop, with
 * PLCACHE_REDIS_TIMEOUT as command timeout, plus l->block_ms on the blocking
 * one) and d->fetch. Returns 0, or -1 after saying why (out of memory, no
 * event loop, libcurl); d->status is 1 either way. Never blocks. */
int daemon_open(daemon_shell *d, const daemon_links *l);

/* This instance's name: `given` when it is a non-empty string, else
 * "<host name>-<pid>". Writes it into out (truncated to outlen) and returns
 * out. Never fails. */
const char *daemon_instance_id(char *out, size_t outlen, const char *given);

/* A name that outlives a restart: `given` when it is a non-empty string,
 * else the host name. Writes it into out (truncated to outlen) and returns
 * out. Never fails. */
const char *daemon_host_id(char *out, size_t outlen, const char *given);

/* Serves /healthz, /readyz and /metrics (ops_handle) on a listener of its own
 * at `listen` (host:port), answering from ready and metrics (called with
 * arg). Returns 0, or -1 after a daemon_bad_setting naming
 * PLCACHE_METRICS_LISTEN (cannot listen there). The shell frees the listener. */
int daemon_serve_ops(daemon_shell *d, const char *listen, int (*ready)(void *arg),
                     void (*metrics)(buf *b, void *arg), void *arg);

/* Installs the signal handlers and the drain timer with the program's hooks
 * (h and arg borrowed until daemon_free). Returns 0, or -1 after logging
 * "cannot install signal handlers" (out of memory). */
int daemon_arm(daemon_shell *d, const daemon_hooks *h, void *arg);

/* Runs the loop until the drain ends, then logs "<program> stopped" and sets
 * d->status to 0. The program logs its own start line first. */
void daemon_run(daemon_shell *d);

/* Ends the loop: the finish hook's last call. */
void daemon_exit(daemon_shell *d);

/* The first step of the teardown, after the loop (or a failed start):
 * end(arg), when given, ends the program's work, then the fetcher, the
 * blocking link and the command link are freed in that order, so that the
 * callbacks they still owe get their last call while the program's modules
 * exist. The program frees its modules after this and before daemon_free.
 * Safe to call more than once. */
void daemon_disconnect(daemon_shell *d, void (*end)(void *arg), void *arg);

/* Releases everything else the shell made (the links if still there, the
 * operations listener, the signal events, the drain timer, the event base,
 * libcurl, d->url) and the settings (cfg_free). Safe after any step, and on
 * a zeroed shell. */
void daemon_free(daemon_shell *d);

/* What the drain does next (see the design note above). Pure. */
typedef enum daemon_drain_step {
    DAEMON_DRAIN_WAIT,    /* look again in 20 ms */
    DAEMON_DRAIN_FINISH,  /* the drain is over: run the finish hook */
    DAEMON_DRAIN_EXIT,    /* leave the loop */
    DAEMON_DRAIN_GIVE_UP, /* held past the grace: leave the loop */
} daemon_drain_step;

/* finishing: the finish hook has run; has_finish: there is one; now and
 * deadline_us in the monotonic clock; the deadline is the shutdown timeout's
 * until the finish hook runs, then the finish step's own; left: busy();
 * held: held() (0 without the hook). */
daemon_drain_step daemon_drain_decide(int finishing, int has_finish, int64_t now_us,
                                      int64_t deadline_us, int64_t held_grace_us, size_t left,
                                      int held);

#endif
