/* lease.h -- read-through on a miss, with the two guards of Facebook's
 * memcache leases (Nishtala et al., NSDI 2013).
 *
 * Herd: the first client to miss takes a short lease
 *   SET <prefix>lease:<name>:<field> <random token> NX PX lease_ms
 * and is the only one to fetch; the others poll the field every 5 ms for up
 * to lease_wait_ms and return it when it appears. When the lease goes away
 * without a fill (the winner failed) or the wait runs out, a waiter fetches
 * from the API itself and returns what it got WITHOUT writing it: only a
 * lease holder writes, so a herd costs one fetch and one write.
 *
 * Stale set: the fill is the template-hash write every writer uses
 * (model/cachew, "ifgen" then "set"): it writes the field only when the
 * hash's `gen` is still the one the miss read (absent == absent), bumps gen,
 * records the id (`id`, `<prefix>prompt-ids`), publishes the name on
 * `<prefix>invalidate`, and deletes the lease when it still holds the token.
 * A fill refused by the gen check writes nothing; the caller still gets what
 * the API said.
 */
#ifndef PLCACHE_LIB_LEASE_H
#define PLCACHE_LIB_LEASE_H

#include <stddef.h>

#include "lib/lib.h"

/* Reads template `name` through from the API after a miss on `field`, whose
 * hash had `gen` (NULL: absent) in the same HMGET. Returns what plcache_get
 * returns (c->api must be set), with *json and *len on PLCACHE_OK. Blocks up
 * to about lease_wait_ms + api_timeout_ms + a few Redis timeouts. */
plcache_status lease_read_through(plcache *c, const char *name, const char *field,
                                  plcache_select sel, const char *label, long long version,
                                  const char *gen, char **json, size_t *len);

/* Readies c's scripts (the release's text; the fill's comes with each write).
 * No I/O. */
void lease_init(plcache *c);

#endif
