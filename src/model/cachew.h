/* cachew.h -- the one writer of a template's hash.
 *
 * Every change to a template's hash (DESIGN.md section 4) goes through one Lua
 * script, so that whoever writes -- the webhook's applier, its reconciliation,
 * `plcache sync`, libplcache's read-through fill -- writes the same way and
 * concurrent writers cannot undo each other: `latest` only moves forward,
 * `gen` is bumped and the name published on the invalidate channel whenever
 * anything changed, a 404 removes the field (a 404 for `latest` drops the
 * template and its id), a write that names the template's id replaces a hash
 * another template left under the name, and an event's own operations act
 * only on its template and only when no newer event was applied to the field.
 *
 * A write is one EVAL built as rargs: cachew_begin, then any number of
 * cachew_op; the daemons send it with rconn_send, libplcache with EVALSHA of
 * the same text (argv[1]). The reply is an integer, the number of fields that
 * changed (or -1, see "ifgen"). Pure: no I/O, never blocks.
 */
#ifndef PLCACHE_CACHEW_H
#define PLCACHE_CACHEW_H

#include <stddef.h>

#include "model/rargs.h"

typedef struct cachew_write {
    const char *prefix;   /* PLCACHE_PREFIX */
    const char *name;     /* the template */
    long long id;         /* its id; < 0: unknown (the id field and prompt-ids are left alone) */
    const char *old_name; /* a rename: the old hash is dropped and its name published; or NULL */
    const char *lease;    /* libplcache: a lease key (whole) deleted when it holds token; or NULL */
    const char *token;
} cachew_write;

/* Appends to c the start of a write w:
 *   EVAL <script> <nkeys> <prefix>prompt:<name> <prefix>prompt-ids
 *        [<prefix>prompt:<old_name>] [<lease>]
 *        <prefix>invalidate <name> <id or ""> <old_name or ""> <token or "">
 * Memory failures set c->failed (senders then refuse it). */
void cachew_begin(rargs *c, const cachew_write *w);

/* Appends one operation (op, a, b) to a write begun with cachew_begin:
 *   "set"     F V   field F = V
 *   "latest"  N V   latest = V unless the cached latest has a higher version
 *   "del"     F ""  remove field F (only when the hash is the template's, below)
 *   "copy"    D S   field D = field S when S exists
 *   "holding" N V   version:N = V, and so every label or latest holding N
 *   "drop"    "" "" remove the template (and its id when it maps to this name) -- "del"
 *                   and "drop" act only when the hash has no id, or the id of the
 *                   event ("event" before them) or else of the write
 *   "ifgen"   B ""  first operation only: change nothing and answer -1 unless the
 *                   hash's basis is still B (cachew_read_basis), or, for B "", the
 *                   hash has no gen -- a stale-set guard for writers that read the
 *                   hash before fetching
 * and the operations of an event, after "event":
 *   "event"   T I   what follows comes from an event of template id I ("" unknown)
 *                   made at T (PromptLayer's timestamp, microseconds; "" unknown)
 *   "evcopy"  D S   field D = field S, and "evdel" F "": remove field F -- each
 *                   only when the hash is template I's, T is newer than the last
 *                   event applied to the field (recorded in field "at:<D>") and,
 *                   when no event was recorded yet, the field is absent; T is
 *                   recorded whenever it is newer
 *   "evdrop"  "" "" "drop" (only when the hash is template I's, or has no id)
 * A rename's old hash is dropped only when it is the renamed template's (the
 * event's id, else the write's). */
void cachew_op(rargs *c, const char *op, const char *a, size_t alen, const char *b,
               size_t blen);

/* A template's basis, in Lua: its gen, or, when the hash is not there, "-"
 * and when its name was last dropped ("-" alone: not in a day). gens never
 * repeat (a new hash starts at Redis' clock) and a drop changes the basis, so
 * a write behind "ifgen <basis>" is refused when anything happened to the
 * template since the basis was read. Defines basis(hash, gone, name). */
#define CACHEW_BASIS_LUA                                                              \
    "local function basis(h, gone, name)\n"                                           \
    "  local g = redis.call('HGET', h, 'gen')\n"                                      \
    "  if g then return g end\n"                                                      \
    "  return '-' .. (redis.call('ZSCORE', gone, name) or '')\n"                      \
    "end\n"

/* Appends to c a command whose reply (a string) is template name's basis:
 *   EVAL <script> 2 <prefix>prompt:<name> <prefix>prompt-gone <name>
 * Memory failures set c->failed. */
void cachew_read_basis(rargs *c, const char *prefix, const char *name);

#endif
