/* sub.c -- the invalidation listener thread of the memory cache.
 *
 * The thread owns a blocking hiredis context but never blocks in hiredis: it
 * poll()s the socket together with an eventfd that sub_stop writes, feeds
 * what arrives to hiredis's reader (redisBufferRead) and takes whole replies
 * out (redisGetReplyFromReader). So a stop is seen at once, a quiet line costs
 * nothing, and liveness is checked with a PING when nothing came for a second.
 */
#include "lib/sub.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/sconn.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PING_IDLE_MS 1000

struct sub {
    const rurl *url;
    int timeout_ms;
    char *channel;
    memcache *m;
    int wake_fd; /* eventfd: written once by sub_stop */
    atomic_int stop;
    atomic_uint_least64_t drops;
    pthread_t thread;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits ms milliseconds or until stopped; returns 1 when stopped. */
static int pause_ms(sub *s, int ms)
{
    struct pollfd p = {.fd = s->wake_fd, .events = POLLIN};
    int64_t end = mono_ms() + ms;
    while (!atomic_load(&s->stop)) {
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        poll(&p, 1, (int)left);
    }
    return 1;
}

/* Writes everything hiredis has buffered (the socket has a send timeout). */
static int flush(redisContext *ctx)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return -1;
    }
    return 0;
}

static int is_str(const redisReply *r, const char *s)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* Handles one reply; returns 1 on the SUBSCRIBE confirmation, 0 for anything
 * expected, -1 for what means the subscription is not working. */
static int on_reply(sub *s, const redisReply *r, int *ping_out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return -1;
    const redisReply *kind = r->element[0];
    if (is_str(kind, "message") && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING) {
        memcache_invalidate(s->m, r->element[2]->str, r->element[2]->len);
        return 0;
    }
    if (is_str(kind, "subscribe")) {
        *ping_out = 0;
        return 1;
    }
    if (is_str(kind, "pong")) {
        *ping_out = 0;
        return 0;
    }
    return -1;
}

/* One subscription, from connect to its end. Returns when it drops or on
 * stop; *confirmed tells whether it was ever up. */
static void session(sub *s, int *confirmed)
{
    char err[256];
    redisContext *ctx = sconn_connect(s->url, s->timeout_ms, err, sizeof(err));
    if (ctx == NULL)
        return;
    redisAppendCommand(ctx, "SUBSCRIBE %s", s->channel);
    if (flush(ctx) != 0)
        goto done;
    /* The SUBSCRIBE is awaited like a PING: unconfirmed within the timeout,
     * the session ends and a new one starts. */
    int64_t last_in = mono_ms(), ping_at = last_in;
    int ping_out = 1;
    while (!atomic_load(&s->stop)) {
        void *v = NULL;
        if (redisGetReplyFromReader(ctx, &v) != REDIS_OK)
            goto done;
        if (v != NULL) {
            int rc = on_reply(s, v, &ping_out);
            freeReplyObject(v);
            if (rc < 0)
                goto done;
            if (rc == 1 && !*confirmed) {
                *confirmed = 1;
                memcache_set_usable(s->m, 1);
            }
            continue;
        }
        int64_t now = mono_ms();
        if (ping_out && now - ping_at > s->timeout_ms)
            goto done; /* no PONG in time: the line is dead or Redis is stuck */
        if (!ping_out && *confirmed && now - last_in >= PING_IDLE_MS) {
            redisAppendCommand(ctx, "PING");
            if (flush(ctx) != 0)
                goto done;
            ping_out = 1;
            ping_at = now;
        }
        struct pollfd p[2] = {{.fd = ctx->fd, .events = POLLIN},
                              {.fd = s->wake_fd, .events = POLLIN}};
        int wait = ping_out ? (int)(ping_at + s->timeout_ms - now) + 1 : PING_IDLE_MS;
        int n = poll(p, 2, wait > 0 ? wait : 1);
        if (n < 0 && errno != EINTR)
            goto done;
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            if (redisBufferRead(ctx) != REDIS_OK)
                goto done;
            last_in = mono_ms();
        }
    }
done:
    redisFree(ctx);
}

static void *run(void *arg)
{
    sub *s = arg;
    int backoff = BACKOFF_MIN_MS;
    while (!atomic_load(&s->stop)) {
        int confirmed = 0;
        session(s, &confirmed);
        /* The drop is counted before the cache turns unusable, so whoever
         * sees it unusable also sees the drop. */
        if (confirmed && !atomic_load(&s->stop))
            atomic_fetch_add(&s->drops, 1);
        /* Whatever ended the session, memory can no longer be trusted. */
        memcache_set_usable(s->m, 0);
        if (atomic_load(&s->stop))
            break;
        if (confirmed)
            backoff = BACKOFF_MIN_MS;
        if (pause_ms(s, backoff))
            break;
        if (!confirmed)
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

sub *sub_start(const rurl *url, int timeout_ms, const char *channel, memcache *m, char *err,
               size_t errlen)
{
    sub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->url = url;
    s->timeout_ms = timeout_ms;
    s->m = m;
    s->wake_fd = -1;
    atomic_init(&s->stop, 0);
    atomic_init(&s->drops, 0);
    s->channel = strdup(channel);
    if (s->channel == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto err;
    }
    int rc = pthread_create(&s->thread, NULL, run, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the listener thread: %s", strerror(rc));
        goto err;
    }
    return s;
err:
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->channel);
    free(s);
    return NULL;
}

void sub_stop(sub *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, 1);
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof(one));
    (void)w; /* a full eventfd is already readable: the thread wakes anyway */
    pthread_join(s->thread, NULL);
    close(s->wake_fd);
    free(s->channel);
    free(s);
}

uint64_t sub_drops(sub *s)
{
    return s != NULL ? atomic_load(&s->drops) : 0;
}
