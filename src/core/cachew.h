/* cachew.h -- cache writes shared by the applier and plcache sync.
 *
 * Every change to a template's hash (DESIGN.md section 4) goes through one Lua
 * script, so that whoever writes -- the webhook's applier, its reconciliation,
 * `plcache sync` -- writes the same way and concurrent writers cannot undo each
 * other: `latest` only moves forward, `gen` is bumped and the name published on
 * the invalidate channel whenever anything changed, a 404 removes the field (a
 * 404 for `latest` drops the template and its id).
 *
 * A write is one EVAL built with rconn_args: cachew_begin, then any number of
 * cachew_op, then rconn_send; the reply is an integer, the number of fields
 * that changed (or -1, see "ifgen"). Pure helpers: no I/O, never block.
 */
#ifndef PLCACHE_CACHEW_H
#define PLCACHE_CACHEW_H

#include <stddef.h>

#include "core/buf.h"
#include "core/rconn.h"

/* Appends to c the start of a write of template `name` under `prefix`:
 *   EVAL <script> 2|3 <prefix>prompt:<name> <prefix>prompt-ids [<prefix>prompt:<old_name>]
 *        <prefix>invalidate <name> <id or ""> <old_name or "">
 * id < 0 means unknown (the id field and pl:prompt-ids are left alone).
 * old_name (may be NULL) makes it a rename: the old hash is dropped and its
 * name published. Memory failures set c->failed (rconn_send then refuses). */
void cachew_begin(rconn_args *c, const char *prefix, const char *name, long long id,
                  const char *old_name);

/* Appends one operation (op, a, b) to a write begun with cachew_begin:
 *   "set"     F V   field F = V
 *   "latest"  N V   latest = V unless the cached latest has a higher version
 *   "del"     F ""  remove field F
 *   "copy"    D S   field D = field S when S exists
 *   "holding" N V   version:N = V, and so every label or latest holding N
 *   "drop"    "" "" remove the template (and its id when it maps to this name)
 *   "ifgen"   G ""  first operation only: change nothing and answer -1 unless the
 *                   hash's gen is G ("" when it has none) -- a stale-set guard for
 *                   writers that read the hash before fetching */
void cachew_op(rconn_args *c, const char *op, const char *a, size_t alen, const char *b,
               size_t blen);

#endif
