/* runenv.h -- finding the Redis of a running scripts/run when no setting names one.
 *
 * scripts/run writes its settings (PLCACHE_REDIS_URL, PLCACHE_PREFIX when set,
 * and the fake API's PROMPTLAYER_BASE_URL and PROMPTLAYER_API_KEY) into
 * <state>/plcache.env, and a copy at a place plcache can know without the
 * repository's path: $XDG_RUNTIME_DIR/plcache-run.env, or
 * /tmp/plcache-run-<uid>.env without XDG_RUNTIME_DIR. The copy also records
 * the run's pid and its start time (PLCACHE_RUN_PID, PLCACHE_RUN_START: field
 * 22 of /proc/<pid>/stat), and scripts/run removes it when it stops.
 *
 * plcache reads that copy only when PLCACHE_REDIS_URL is given neither in the
 * environment nor as a flag, and trusts it only when it is a regular file of
 * this user, not writable by group or others, and its run is alive (the same
 * pid with the same start time). A stale or untrusted file is ignored.
 */
#ifndef PLCACHE_RUNENV_H
#define PLCACHE_RUNENV_H

#include <stddef.h>

#define RUNENV_MAX 8 /* settings a file may give */

typedef struct runenv {
    char *name[RUNENV_MAX]; /* owned; the caller frees with runenv_free */
    char *value[RUNENV_MAX];
    size_t n;
    long long pid;   /* PLCACHE_RUN_PID, 0 when absent */
    long long start; /* PLCACHE_RUN_START, -1 when absent */
} runenv;

/* Parses the text of an env file: lines NAME=VALUE, the value bare or in
 * POSIX shell single quotes (with '\'' for a quote); '#' lines and blank
 * lines are skipped. Keeps only PLCACHE_REDIS_URL, PLCACHE_PREFIX,
 * PROMPTLAYER_BASE_URL, PROMPTLAYER_API_KEY and the run's pid and start.
 * Returns 0, or -1 on a line it cannot read or out of memory (out is then
 * empty). Pure. */
int runenv_parse(const char *text, runenv *out);

/* Frees what runenv_parse put into e; e may be zeroed or already freed. */
void runenv_free(runenv *e);

/* The value of name in e, or NULL. */
const char *runenv_get(const runenv *e, const char *name);

/* Writes the pointer file's path into out ($XDG_RUNTIME_DIR/plcache-run.env
 * or /tmp/plcache-run-<uid>.env). Returns 0, or -1 when it does not fit. */
int runenv_pointer_path(char *out, size_t outlen);

/* Reads and checks the pointer file (owner, mode, a live run). Returns 1 with
 * e filled (the caller's, runenv_free), 0 when there is none to use (absent,
 * stale, untrusted: why in why when there is one worth saying, else ""), or
 * -1 when it cannot be read. Blocks on one small file read. */
int runenv_load(runenv *e, char *why, size_t whylen);

#endif
