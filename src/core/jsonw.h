/* jsonw.h -- compact JSON text of a jansson value, numbers as Python writes them.
 *
 * jansson writes a real with 17 significant digits (0.7 becomes
 * 0.69999999999999996): the same double, but not the text the API sent nor
 * what a person expects to read back. This writer gives the text Python's
 * json.dumps(value, ensure_ascii=False, separators=(",", ":")) gives for the
 * value jansson parsed: object keys in their order, strings as UTF-8 with
 * only '"', '\\' and control characters escaped (\n \r \t \b \f, the rest
 * \u00XX), integers as they are, reals as Python's repr (canon_float_repr:
 * the shortest text that reads back to the same double, "1.0", "1e-05").
 *
 * Pure: no I/O, no global state; cannot block.
 */
#ifndef PLCACHE_JSONW_H
#define PLCACHE_JSONW_H

#include <jansson.h>

#include "core/buf.h"

/* Appends the compact text of v to out. Returns 0, or -1 when out's maximum
 * is reached, memory runs out or v nests deeper than JSONW_MAX_DEPTH (out
 * then holds what it held before). */
int jsonw_compact(buf *out, const json_t *v);

/* The compact text of v in a new string of at most max bytes (the caller's:
 * free it), its length in *n (may be NULL); NULL on the failures of
 * jsonw_compact. */
char *jsonw_dump(const json_t *v, size_t max, size_t *n);

#define JSONW_MAX_DEPTH 512

#endif
