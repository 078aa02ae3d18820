/* pyfmt.h -- Python's text forms of JSON values: str(), repr(), ascii() and
 * format(value, spec), as Python 3.11 gives them.
 *
 * A JSON value stands for what json.loads makes of it: null None, true/false
 * True/False, an integer int, a real float, a string str, an array list and
 * an object dict (keys in document order, which jansson keeps). format()
 * follows the Format Specification Mini-Language for each of those types
 * (str.__format__, int.__format__, float.__format__, bool as int,
 * object.__format__ for None, list and dict).
 *
 * Every function appends to a buf (core/buf.h) and returns a pyfmt_rc. On
 * anything but PYFMT_OK the buf is left as it was. Text arguments are UTF-8
 * with an explicit length (they may hold NUL); they must be valid UTF-8, as
 * jansson strings are: an invalid byte is taken as one character U+DC80+byte
 * (Python's surrogateescape), so nothing is read out of bounds.
 *
 * Pure: no I/O, no global state, thread-safe, never blocks. Needs jansson and
 * libm only.
 */
#ifndef PLCACHE_PYFMT_H
#define PLCACHE_PYFMT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef enum pyfmt_rc {
    PYFMT_NOROOM = -1,     /* out of memory, or the text would pass the buf's maximum */
    PYFMT_OK = 0,          /* appended */
    PYFMT_RAISES = 1,      /* Python raises (ValueError, TypeError, OverflowError) */
    PYFMT_UNSUPPORTED = 2, /* Python gives an answer this module does not reproduce */
} pyfmt_rc;

/* Lists and dicts nested deeper than this are PYFMT_UNSUPPORTED (Python
 * would print them; its own limit is near 1000). */
#define PYFMT_MAX_DEPTH 200

/* str(v), repr(v), ascii(v). PYFMT_OK, PYFMT_NOROOM, or PYFMT_UNSUPPORTED
 * when v nests deeper than PYFMT_MAX_DEPTH or v is NULL. */
int pyfmt_str(buf *out, const json_t *v);
int pyfmt_repr(buf *out, const json_t *v);
int pyfmt_ascii(buf *out, const json_t *v);

/* repr() of the str s (n bytes), or ascii() of it when ascii_only is non-zero:
 * single quotes unless s holds ' and no ", backslash escapes for \\ the quote
 * \t \n \r, \xNN / \uNNNN / \UNNNNNNNN for characters str.isprintable()
 * refuses (and, for ascii(), for every non-ASCII one). PYFMT_OK or
 * PYFMT_NOROOM. */
int pyfmt_repr_text(buf *out, const char *s, size_t n, int ascii_only);

/* repr() of a float, including the values JSON cannot carry: "inf", "-inf",
 * "nan". PYFMT_OK or PYFMT_NOROOM. */
int pyfmt_float_repr(buf *out, double d);

/* format(v, spec) for the Python value v stands for; spec is speclen bytes
 * of UTF-8. PYFMT_OK; PYFMT_RAISES where Python raises; PYFMT_UNSUPPORTED for
 * the 'n' type on numbers (its output depends on the process's locale), for
 * 'c' on a surrogate code point (no UTF-8 for it), for lists and dicts past
 * PYFMT_MAX_DEPTH, and for v NULL; PYFMT_NOROOM when memory runs out or the
 * text would pass out's maximum, which is found before anything big is built
 * (a width of 2**40: Python tries, and raises MemoryError or succeeds,
 * depending on the machine). */
int pyfmt_format(buf *out, const json_t *v, const char *spec, size_t speclen);

/* format() of one Python type each, as pyfmt_format answers for it: a str of
 * n bytes, an int, a float (any double, inf and nan included). */
int pyfmt_format_text(buf *out, const char *s, size_t n, const char *spec, size_t speclen);
int pyfmt_format_int(buf *out, long long v, const char *spec, size_t speclen);
int pyfmt_format_float(buf *out, double v, const char *spec, size_t speclen);

/* UTF-8 helpers shared with the modules built on this one. */

/* Decodes and returns the character at s[*i] (n bytes in all, *i < n) and
 * moves *i past it. An invalid byte gives U+DC80+byte and moves one. */
uint32_t pyfmt_utf8_next(const char *s, size_t n, size_t *i);

/* 1 when the n bytes are valid UTF-8 (no overlongs, no surrogates, nothing
 * past U+10FFFF), else 0. */
int pyfmt_utf8_valid(const char *s, size_t n);

#endif
