/* canon.h -- Python-compatible canonical JSON (json.dumps(x, sort_keys=True)).
 *
 * PromptLayer signs json.dumps(payload, sort_keys=True) of Python's json module
 * (ensure_ascii=True, separators ", " and ": "). The body on the wire need not be
 * that text, so the receiver parses the raw body with Python's json.loads rules
 * and rebuilds the canonical text byte for byte (DESIGN.md section 3).
 *
 * The parser works on the raw text, not on jansson, so that nothing Python
 * accepts is lost: integers of any size, NaN/Infinity/-Infinity, \u0000, lone
 * surrogates, repeated keys (the last value wins), floats that overflow to
 * Infinity. Pure functions: no I/O, no global state, thread-safe.
 */
#ifndef PLCACHE_CANON_H
#define PLCACHE_CANON_H

#include <stddef.h>

typedef enum canon_type {
    CANON_NULL,
    CANON_FALSE,
    CANON_TRUE,
    CANON_INT,
    CANON_FLOAT,
    CANON_STRING,
    CANON_ARRAY,
    CANON_OBJECT,
} canon_type;

/* The deepest nesting accepted; deeper documents are rejected (Python itself
 * fails with RecursionError near 1000). */
#define CANON_MAX_DEPTH 512

typedef struct canon_doc canon_doc;

/* Parses `len` bytes at `in` (need not be NUL-terminated) the way Python's
 * json.loads(bytes) does (UTF-8, strict: no raw control characters in strings,
 * integers of at most 4300 digits as Python 3.11 allows). Returns a document
 * owned by the caller (free it with canon_free), or NULL with a short reason in
 * err (never quoting the input) when the text is not JSON Python would accept,
 * is nested deeper than CANON_MAX_DEPTH, or memory ran out. Never blocks. */
canon_doc *canon_parse(const char *in, size_t len, char *err, size_t errlen);

/* Frees a document; NULL is fine. */
void canon_free(canon_doc *doc);

/* The type of the top-level value. */
canon_type canon_root_type(const canon_doc *doc);

/* Writes the canonical text of the document into a new NUL-terminated buffer
 * owned by the caller (free()), its length in *outlen. Returns NULL when memory
 * ran out. */
char *canon_dump(const canon_doc *doc, size_t *outlen);

/* When the root is an object with member `key` (the last one when repeated)
 * whose value is a string, returns that string as UTF-8 bytes (lone surrogates
 * as their 3-byte form; it may contain NUL bytes) and its length in *len. The
 * pointer is owned by the document. Returns NULL otherwise. */
const char *canon_root_string(const canon_doc *doc, const char *key, size_t *len);

/* Room canon_float_repr needs: the longest text plus its NUL. */
#define CANON_FLOAT_REPR_MAX 32

/* Writes the text json.dumps gives a float into out, NUL-terminated, and
 * returns its length. For finite values that is Python's repr(): the shortest
 * digits that read back to d, positional from 1e-4 up to below 1e16 and
 * exponential outside ("1.0", "-0.0", "1e-05", "1e+16",
 * "1.2345678901234568e+17"). Non-finite values come out as json.dumps writes
 * them ("NaN", "Infinity", "-Infinity"), which is not what repr() writes
 * ("nan", "inf", "-inf"). Returns 0 and writes nothing when outlen is below
 * CANON_FLOAT_REPR_MAX. Pure; cannot fail otherwise. */
size_t canon_float_repr(double d, char *out, size_t outlen);

/* Convenience: parse + dump. Returns the canonical text (caller frees) or NULL
 * with err set. */
char *canon_json(const char *in, size_t len, size_t *outlen, char *err, size_t errlen);

#endif
