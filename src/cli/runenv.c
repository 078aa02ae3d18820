/* runenv.c -- reads the settings a running scripts/run left for plcache (runenv.h).
 *
 * The pointer file is trusted like a shell's rc file: opened without following
 * a symbolic link, it must be a regular file owned by this user and writable
 * by nobody else, and the run it names must be alive. A pid alone could have
 * been reused by another process since, so the run's start time (in clock
 * ticks since boot, /proc/<pid>/stat field 22) must match too.
 */
#include "cli/runenv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kept[] = {"PLCACHE_REDIS_URL", "PLCACHE_PREFIX", "PROMPTLAYER_BASE_URL",
                                   "PROMPTLAYER_API_KEY"};

void runenv_free(runenv *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->name[i]);
        free(e->value[i]);
    }
    memset(e, 0, sizeof(*e));
    e->start = -1;
}

const char *runenv_get(const runenv *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->name[i], name) == 0)
            return e->value[i];
    return NULL;
}

/* Reads one shell word from s (up to the end of the line) into a new string:
 * bare characters and '...' segments, with \' outside quotes. *end is set
 * past it. NULL when it is unreadable (an open quote, a space, a $ or a
 * backslash sequence other than \'), or out of memory. */
static char *read_word(const char *s, const char **end)
{
    size_t cap = strcspn(s, "\n") + 1, n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    while (*s != '\0' && *s != '\n') {
        if (*s == '\'') {
            const char *q = strchr(s + 1, '\'');
            if (q == NULL || memchr(s + 1, '\n', (size_t)(q - s - 1)) != NULL)
                goto bad;
            memcpy(out + n, s + 1, (size_t)(q - s - 1));
            n += (size_t)(q - s - 1);
            s = q + 1;
        } else if (s[0] == '\\' && s[1] == '\'') {
            out[n++] = '\'';
            s += 2;
        } else if (strchr(" \t\\$\"`;&|<>()", *s) != NULL) {
            goto bad;
        } else {
            out[n++] = *s++;
        }
    }
    out[n] = '\0';
    *end = s;
    return out;
bad:
    free(out);
    return NULL;
}

/* A whole decimal number >= min, else -2. */
static long long number(const char *s, long long min)
{
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9')
        return -2;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno != 0 || *end != '\0' || v < min ? -2 : v;
}

int runenv_parse(const char *text, runenv *out)
{
    memset(out, 0, sizeof(*out));
    out->start = -1;
    const char *s = text;
    while (*s != '\0') {
        s += strspn(s, " \t");
        if (*s == '#' || *s == '\n' || *s == '\0') {
            s += strcspn(s, "\n");
            s += *s == '\n';
            continue;
        }
        size_t nl = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        if (nl == 0 || nl > 64 || s[nl] != '=')
            goto bad;
        char name[65];
        memcpy(name, s, nl);
        name[nl] = '\0';
        const char *end = NULL;
        char *value = read_word(s + nl + 1, &end);
        if (value == NULL)
            goto bad;
        s = end + (*end == '\n');
        int keep = 0;
        for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
            keep |= strcmp(name, kept[i]) == 0;
        int is_pid = strcmp(name, "PLCACHE_RUN_PID") == 0;
        if (is_pid || strcmp(name, "PLCACHE_RUN_START") == 0) {
            long long v = number(value, is_pid ? 1 : 0);
            free(value);
            if (v == -2)
                goto bad;
            if (is_pid)
                out->pid = v;
            else
                out->start = v;
            continue;
        }
        if (!keep || runenv_get(out, name) != NULL || out->n == RUNENV_MAX) {
            free(value);
            continue;
        }
        out->name[out->n] = strdup(name);
        out->value[out->n] = value;
        if (out->name[out->n++] == NULL)
            goto bad;
    }
    return 0;
bad:
    runenv_free(out);
    return -1;
}

int runenv_pointer_path(char *out, size_t outlen)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg != NULL && xdg[0] == '/'
                ? snprintf(out, outlen, "%s/plcache-run.env", xdg)
                : snprintf(out, outlen, "/tmp/plcache-run-%lu.env", (unsigned long)getuid());
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* The start time of process pid (field 22 of /proc/<pid>/stat), or -1. */
static long long proc_start(long long pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the name (field 2) may hold spaces */
    if (p == NULL)
        return -1;
    p++;
    for (int field = 2; field < 21 && p != NULL; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL)
        return -1;
    char *end = NULL;
    long long v = strtoll(p + 1, &end, 10);
    return end == p + 1 ? -1 : v;
}

int runenv_load(runenv *e, char *why, size_t whylen)
{
    char path[512], text[4096];
    memset(e, 0, sizeof(*e));
    e->start = -1;
    why[0] = '\0';
    if (runenv_pointer_path(path, sizeof(path)) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : (snprintf(why, whylen, "%s: %s", path, strerror(errno)), -1);
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file: not used", path);
        close(fd);
        return 0;
    }
    if (st.st_uid != getuid() || (st.st_mode & 022) != 0) {
        snprintf(why, whylen, "%s is not yours alone (owner or mode): not used", path);
        close(fd);
        return 0;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    text[n] = '\0';
    if (runenv_parse(text, e) != 0) {
        snprintf(why, whylen, "%s: unreadable: not used", path);
        return 0;
    }
    /* A run that is gone (killed before it could remove the file) or a pid
     * now someone else's: nothing to say, the default applies. */
    int alive = e->pid > 0 && kill((pid_t)e->pid, 0) == 0 &&
                (e->start < 0 || proc_start(e->pid) == e->start) &&
                runenv_get(e, "PLCACHE_REDIS_URL") != NULL;
    if (!alive) {
        runenv_free(e);
        return 0;
    }
    return 1;
}
