/* memcache.c -- the in-process cache: a chained hash table with an LRU list.
 *
 * Buckets are picked by a hash of the template name only (FNV-1a), so all the
 * fields of one name share a chain: a lookup compares name and field along
 * it, an invalidation unlinks every entry of the name from it. The table has
 * as many buckets as the power of two at or above max_entries, so chains stay
 * short. Each entry is one allocation (the struct, then name, field and value,
 * each NUL-terminated). A hit moves the entry to the front of the LRU list; an
 * insert into a full cache frees the back one. An entry older than max_age_us
 * is dropped when it is looked up (and eventually evicted otherwise).
 */
#include "lib/memcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry entry;
struct entry {
    entry *chain;       /* next in the bucket */
    entry *prev, *next; /* LRU list, most recent first */
    uint64_t hash;
    int64_t born_us;
    size_t namelen, fieldlen, len;
    char *name, *field, *val; /* inside this allocation */
};

struct memcache {
    pthread_mutex_t mu;
    entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max_entries;
    int64_t max_age_us;
    entry *head, *tail;
    uint64_t epoch;
    int usable;
    memcache_stats st;
};

static uint64_t hash_name(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

memcache *memcache_new(size_t max_entries, int64_t max_age_us)
{
    if (max_entries == 0 || max_entries > ((size_t)1 << 30))
        return NULL;
    memcache *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    size_t nb = 16;
    while (nb < max_entries)
        nb <<= 1;
    m->buckets = calloc(nb, sizeof(*m->buckets));
    if (m->buckets == NULL || pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m->buckets);
        free(m);
        return NULL;
    }
    m->nbuckets = nb;
    m->max_entries = max_entries;
    m->max_age_us = max_age_us;
    return m;
}

static void lru_unlink(memcache *m, entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(memcache *m, entry *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head != NULL)
        m->head->prev = e;
    m->head = e;
    if (m->tail == NULL)
        m->tail = e;
}

/* Unlinks e (whose chain link is *link) from its bucket and the LRU list and
 * frees it. */
static void drop(memcache *m, entry **link, entry *e)
{
    *link = e->chain;
    lru_unlink(m, e);
    m->count--;
    free(e);
}

/* The link pointing at e in its bucket (e must be in the table). */
static entry **link_of(memcache *m, entry *e)
{
    entry **link = &m->buckets[e->hash & (m->nbuckets - 1)];
    while (*link != e)
        link = &(*link)->chain;
    return link;
}

static void drop_all(memcache *m)
{
    entry *e = m->head;
    while (e != NULL) {
        entry *next = e->next;
        free(e);
        e = next;
    }
    memset(m->buckets, 0, m->nbuckets * sizeof(*m->buckets));
    m->head = m->tail = NULL;
    m->count = 0;
}

void memcache_free(memcache *m)
{
    if (m == NULL)
        return;
    drop_all(m);
    pthread_mutex_destroy(&m->mu);
    free(m->buckets);
    free(m);
}

/* The link to the entry (name, field) in its bucket, or NULL. */
static entry **find(memcache *m, uint64_t h, const char *name, size_t namelen, const char *field,
                    size_t fieldlen)
{
    entry **link = &m->buckets[h & (m->nbuckets - 1)];
    for (; *link != NULL; link = &(*link)->chain) {
        entry *e = *link;
        if (e->hash == h && e->namelen == namelen && e->fieldlen == fieldlen &&
            memcmp(e->name, name, namelen) == 0 && memcmp(e->field, field, fieldlen) == 0)
            return link;
    }
    return NULL;
}

int memcache_get(memcache *m, const char *name, const char *field, int64_t now_us, char **out,
                 size_t *len, uint64_t *epoch)
{
    size_t namelen = strlen(name), fieldlen = strlen(field);
    uint64_t h = hash_name(name, namelen);
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    *epoch = m->epoch;
    if (!m->usable)
        goto done;
    entry **link = find(m, h, name, namelen, field, fieldlen);
    if (link == NULL)
        goto done;
    entry *e = *link;
    if (now_us - e->born_us > m->max_age_us) {
        drop(m, link, e);
        m->st.expired++;
        goto done;
    }
    char *copy = malloc(e->len + 1);
    if (copy == NULL) {
        rc = -1;
        goto done;
    }
    memcpy(copy, e->val, e->len + 1);
    *out = copy;
    *len = e->len;
    if (m->head != e) {
        lru_unlink(m, e);
        lru_push_front(m, e);
    }
    rc = 1;
done:
    if (rc == 1)
        m->st.hits++;
    else
        m->st.misses++;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int memcache_put(memcache *m, const char *name, const char *field, const char *val, size_t len,
                 int64_t now_us, uint64_t epoch)
{
    size_t namelen = strlen(name), fieldlen = strlen(field);
    uint64_t h = hash_name(name, namelen);
    /* Allocated before taking the lock, freed if refused. */
    size_t size = sizeof(entry) + namelen + 1 + fieldlen + 1 + len + 1;
    if (len > SIZE_MAX / 2 || size < len)
        return -1;
    entry *e = malloc(size);
    if (e == NULL)
        return -1;
    e->name = (char *)(e + 1);
    e->field = e->name + namelen + 1;
    e->val = e->field + fieldlen + 1;
    memcpy(e->name, name, namelen + 1);
    memcpy(e->field, field, fieldlen + 1);
    memcpy(e->val, val, len);
    e->val[len] = '\0';
    e->namelen = namelen;
    e->fieldlen = fieldlen;
    e->len = len;
    e->hash = h;
    e->born_us = now_us;
    e->prev = e->next = e->chain = NULL;

    pthread_mutex_lock(&m->mu);
    if (!m->usable || m->epoch != epoch) {
        m->st.refused++;
        pthread_mutex_unlock(&m->mu);
        free(e);
        return 0;
    }
    entry **old = find(m, h, name, namelen, field, fieldlen);
    if (old != NULL)
        drop(m, old, *old);
    while (m->count >= m->max_entries && m->tail != NULL) {
        drop(m, link_of(m, m->tail), m->tail);
        m->st.evicted++;
    }
    entry **bucket = &m->buckets[h & (m->nbuckets - 1)];
    e->chain = *bucket;
    *bucket = e;
    lru_push_front(m, e);
    m->count++;
    m->st.inserts++;
    pthread_mutex_unlock(&m->mu);
    return 1;
}

void memcache_invalidate(memcache *m, const char *name, size_t namelen)
{
    uint64_t h = hash_name(name, namelen);
    pthread_mutex_lock(&m->mu);
    m->epoch++;
    m->st.invalidations++;
    entry **link = &m->buckets[h & (m->nbuckets - 1)];
    while (*link != NULL) {
        entry *e = *link;
        if (e->hash == h && e->namelen == namelen && memcmp(e->name, name, namelen) == 0)
            drop(m, link, e);
        else
            link = &e->chain;
    }
    pthread_mutex_unlock(&m->mu);
}

void memcache_clear(memcache *m)
{
    pthread_mutex_lock(&m->mu);
    m->epoch++;
    drop_all(m);
    pthread_mutex_unlock(&m->mu);
}

void memcache_set_usable(memcache *m, int usable)
{
    pthread_mutex_lock(&m->mu);
    m->epoch++;
    m->usable = usable != 0;
    if (!usable)
        drop_all(m);
    pthread_mutex_unlock(&m->mu);
}

void memcache_get_stats(memcache *m, memcache_stats *out)
{
    pthread_mutex_lock(&m->mu);
    *out = m->st;
    out->entries = m->count;
    out->usable = m->usable;
    pthread_mutex_unlock(&m->mu);
}
