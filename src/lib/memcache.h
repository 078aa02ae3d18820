/* memcache.h -- libplcache's in-process cache of (template name, field) ->
 * JSON text, kept coherent by pl:invalidate.
 *
 * Bounded in entries (least recently used goes first) and in age. Entries are
 * chained in buckets chosen by the template name alone, so dropping every
 * field of a name (an invalidation) walks one short chain.
 *
 * Coherence rests on two things, both under the one mutex:
 *   - usable: 0 until the listener's SUBSCRIBE is confirmed, and again from
 *     the moment the subscription drops (everything is cleared then); while 0,
 *     lookups miss and inserts are refused;
 *   - epoch: bumped by every invalidation, clear and change of `usable`. A
 *     reader takes the epoch with its (missed) lookup, reads Redis, and
 *     inserts with that epoch: an insert whose epoch moved is refused, so an
 *     invalidation processed between the Redis read and the insert wins.
 * Thread-safe: the client's thread reads and inserts, the listener thread
 * invalidates.
 */
#ifndef PLCACHE_LIB_MEMCACHE_H
#define PLCACHE_LIB_MEMCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct memcache memcache;

typedef struct memcache_stats {
    uint64_t hits, misses, inserts, refused, evicted, expired, invalidations;
    size_t entries;
    int usable;
} memcache_stats;

/* A cache of at most max_entries (> 0) entries, each served for at most
 * max_age_us after it was inserted. Starts unusable. NULL when memory ran out
 * or max_entries is 0. Free with memcache_free. */
memcache *memcache_new(size_t max_entries, int64_t max_age_us);
void memcache_free(memcache *m);

/* Looks up (name, field) at time now_us (monotonic). Returns 1 with a copy in
 * *out (malloc'd, NUL-terminated, the caller's) and its length in *len; 0 on
 * a miss, with the epoch to give memcache_put in *epoch; -1 when memory ran
 * out (a miss too, *epoch set). Never blocks beyond the mutex. */
int memcache_get(memcache *m, const char *name, const char *field, int64_t now_us, char **out,
                 size_t *len, uint64_t *epoch);

/* Inserts a copy of len bytes at val for (name, field), replacing an older
 * one, when the cache is usable and its epoch is still `epoch`. Returns 1
 * when inserted, 0 when refused, -1 when memory ran out. */
int memcache_put(memcache *m, const char *name, const char *field, const char *val, size_t len,
                 int64_t now_us, uint64_t epoch);

/* Drops every entry of template `name` (namelen bytes) and bumps the epoch. */
void memcache_invalidate(memcache *m, const char *name, size_t namelen);

/* Drops every entry and bumps the epoch. */
void memcache_clear(memcache *m);

/* Marks the cache usable or not and bumps the epoch; making it unusable also
 * drops every entry. */
void memcache_set_usable(memcache *m, int usable);

/* A snapshot of the counters. */
void memcache_get_stats(memcache *m, memcache_stats *out);

#endif
