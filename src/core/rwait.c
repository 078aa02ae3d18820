/* rwait.c -- coalesced Redis WAIT after writes.
 *
 * Waiters queue in arrival order. When no WAIT is in flight, the queue goes
 * out as one batch behind one WAIT; when its answer comes, the batch is
 * answered and whatever queued meanwhile goes out the same way. Each waiter
 * remembers the link it was made on (rconn_drops counts links: it changes
 * whenever one ends), and a batch is only sent for waiters of the live link.
 */
#include "core/rwait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct waiter {
    struct waiter *next;
    rwait_fn fn;
    void *priv;
    unsigned long link;
} waiter;

typedef struct batch {
    rwait *w; /* NULL once rwait_free ran: the answer is then ignored */
    waiter *head;
} batch;

struct rwait {
    rconn *c;
    int replicas;
    int timeout_ms;
    batch *out; /* the batch whose WAIT is in flight, or NULL */
    waiter *head, *tail;
    size_t waiting;
    unsigned long failures;
};

static void answer(rwait *w, waiter *head, int ok)
{
    while (head) {
        waiter *x = head;
        head = x->next;
        if (w) {
            w->waiting--;
            if (!ok)
                w->failures++;
        }
        x->fn(ok, x->priv);
        free(x);
    }
}

static void on_wait(redisReply *r, void *priv);

/* Sends the queue behind one WAIT. Returns the waiters that cannot be
 * covered (another link, or the send failed): the caller answers them. */
static waiter *send_queue(rwait *w)
{
    waiter *fail = NULL, **ftail = &fail;
    batch *b = calloc(1, sizeof(*b));
    waiter **btail = NULL;
    unsigned long link = rconn_drops(w->c);
    int ready = rconn_ready(w->c);
    if (b != NULL) {
        b->w = w;
        btail = &b->head;
    }
    while (w->head) {
        waiter *x = w->head;
        w->head = x->next;
        x->next = NULL;
        if (b != NULL && ready && x->link == link) {
            *btail = x;
            btail = &x->next;
        } else {
            *ftail = x;
            ftail = &x->next;
        }
    }
    w->tail = NULL;
    if (b == NULL)
        return fail;
    if (b->head == NULL) {
        free(b);
        return fail;
    }
    char n[16], ms[16];
    snprintf(n, sizeof(n), "%d", w->replicas);
    snprintf(ms, sizeof(ms), "%d", w->timeout_ms);
    const char *argv[] = {"WAIT", n, ms};
    size_t lens[] = {4, strlen(n), strlen(ms)};
    if (rconn_argv(w->c, on_wait, b, 3, argv, lens) != 0) {
        *ftail = b->head;
        free(b);
        return fail;
    }
    w->out = b;
    return fail;
}

static void on_wait(redisReply *r, void *priv)
{
    batch *b = priv;
    rwait *w = b->w;
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER && w != NULL &&
             r->integer >= (long long)w->replicas;
    waiter *fail = NULL;
    if (w != NULL) {
        w->out = NULL;
        if (w->head)
            fail = send_queue(w);
    }
    answer(w, b->head, ok);
    answer(w, fail, 0);
    free(b);
}

rwait *rwait_new(rconn *c, int replicas, int timeout_ms)
{
    rwait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->c = c;
    w->replicas = replicas;
    w->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    return w;
}

int rwait_after(rwait *w, rwait_fn fn, void *priv)
{
    waiter *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->fn = fn;
    x->priv = priv;
    x->link = rconn_drops(w->c);
    if (w->tail)
        w->tail->next = x;
    else
        w->head = x;
    w->tail = x;
    if (w->out == NULL) {
        waiter *fail = send_queue(w);
        if (fail != NULL) {
            /* Only x can be here: the queue is empty whenever no WAIT is out. */
            free(fail);
            return -1;
        }
    }
    w->waiting++;
    return 0;
}

unsigned long rwait_failures(const rwait *w)
{
    return w->failures;
}

size_t rwait_waiting(const rwait *w)
{
    return w->waiting;
}

void rwait_free(rwait *w)
{
    if (w == NULL)
        return;
    if (w->out) {
        batch *b = w->out;
        waiter *head = b->head;
        b->head = NULL;
        b->w = NULL;
        answer(w, head, 0);
    }
    waiter *head = w->head;
    w->head = w->tail = NULL;
    answer(w, head, 0);
    free(w);
}
