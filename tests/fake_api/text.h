/* text.h -- small text helpers for the fake PromptLayer API.
 *
 * Number parsing with full checks, UTF-8 validation and repair (jansson only
 * takes valid UTF-8, clients may send anything), query-string lookup, the
 * logfmt line written for every request, and the wall clock in milliseconds.
 * Nothing here blocks except text_log, which writes one line to stderr.
 */
#ifndef PLCACHE_FAKE_TEXT_H
#define PLCACHE_FAKE_TEXT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Parses the whole of `s` as a decimal integer in [min, max] (no sign for
 * non-negative ranges is required; a leading '+' or spaces are refused).
 * Returns 0 and sets *out, or -1 when `s` is NULL, empty, not a number or out
 * of range. */
int text_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Returns 1 when s[0..n) is valid UTF-8 (overlongs, surrogates and code
 * points above U+10FFFF are invalid), else 0. */
int text_utf8_valid(const char *s, size_t n);

/* Returns a new JSON string holding s[0..n), with every invalid UTF-8
 * sequence replaced by U+FFFD. The caller owns the reference. NULL only when
 * memory runs out. */
json_t *text_json_string(const char *s, size_t n);

/* Finds `key` in a raw query string (`a=1&b=x%20y`; keys and values are
 * percent-decoded, '+' in values means a space). Returns 1 and sets *value to
 * a malloc'd copy the caller frees, 0 when the key is absent, -1 when the
 * query is malformed, the value holds a NUL byte or memory runs out. The
 * last occurrence of a repeated key wins. `query` may be NULL. */
int text_query_get(const char *query, const char *key, char **value);

/* Percent-decodes one path segment (no '+' translation). Returns a malloc'd
 * NUL-terminated copy the caller frees, or NULL when the segment decodes to
 * bytes holding a NUL, to invalid UTF-8, or memory runs out. */
char *text_decode_segment(const char *seg, size_t n);

/* Writes one logfmt line to stderr: `level=LEVEL msg=MSG k=v ...`, the pairs
 * given as `const char *` arguments ending with NULL. Values are quoted and
 * escaped when needed so the line stays one printable ASCII line whatever a
 * client sent. Never pass a body or a secret. */
void text_log(const char *level, const char *msg, ...);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t text_now_ms(void);

/* Writes the current UTC time as ISO 8601 with microseconds and a Z
 * ("2025-03-15T10:30:00.123456Z") into buf (at least 32 bytes). */
void text_iso_now(char *buf, size_t len);

/* Reads a query-string boolean as FastAPI (pydantic) does: true/false,
 * 1/0, yes/no, on/off, t/f, y/n in any case. Returns 0 and sets *out, or
 * -1 when `s` is none of these. */
int text_parse_bool(const char *s, int *out);

#endif
