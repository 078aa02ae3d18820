/* schema.h -- checks JSON values against schemas in a compact notation, and
 * says what is wrong the way FastAPI/pydantic v2 does.
 *
 * A schema set is one JSON object of named schemas, {"name": <schema>, ...}.
 * A schema is either a short string or an object:
 *
 *   "string" "integer" "number" "boolean" "object" "array" "null" "any"
 *   "datetime"            a type; a trailing "?" also allows null ("string?")
 *   "@name", "@name?"     the named schema of the set (nullable with "?")
 *
 *   {"type": T | [T, ...], "nullable": true,
 *    "required": [...], "properties": {...}, "additionalProperties": false | S,
 *    "propertyNames": S, "items": S,
 *    "enum": [...], "literal": [...],
 *    "minimum": n, "maximum": n, "exclusiveMinimum": n, "exclusiveMaximum": n,
 *    "minLength": n, "maxLength": n,
 *    "union": "type", "of": {"tag": S, ...},
 *    "anyOf": [S, ...],
 *    "ref": "name", "optional": [...],
 *    "title": "...", "doc": "..."}
 *
 * Types are strict JSON types: an integer refuses "5" and 5.5, a number
 * takes integers. "datetime" takes an ISO 8601 date-time string
 * (YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|+HH[:MM]]) or a JSON number (Unix
 * seconds; pydantic reads values above 2e10 as milliseconds). Without
 * "additionalProperties", unknown keys are accepted and ignored. "enum" and
 * "literal" compare whole values (any type) and differ only in the error
 * type they report. "union" is a discriminated union: the value's member
 * named there picks the schema in "of". "anyOf" passes when one member
 * passes; otherwise every member's errors are reported, their loc extended
 * with the member's "title" (or its type). "ref" checks against another
 * named schema, and "optional" lists required keys of that (object) schema
 * that may be left out here. Lengths count code points.
 *
 * Errors are {"type", "loc", "msg", "input"[, "ctx"]} objects as FastAPI puts
 * them in {"detail": [...]}; loc is a list of keys and array indexes below
 * the root name. Unlike pydantic, the tag of a discriminated union is not
 * inserted into loc (["body", "input", "messages", 0, "content"]). Pure
 * memory: nothing here blocks or does I/O.
 */
#ifndef PLCACHE_FAKE_SCHEMA_H
#define PLCACHE_FAKE_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

/* Most errors reported for one value. */
#define SCHEMA_MAX_ERRORS 50

/* schema_check flag: the value was parsed with JSON_DECODE_INT_AS_REAL (it
 * held an integer beyond 64 bits), so a real with no fractional part counts
 * as an integer. */
#define SCHEMA_INTS_AS_REALS 1

typedef struct schema_set schema_set;

/* Parses a schema set from JSON text (`len` bytes) and checks the notation:
 * unknown keywords, bad types, references to missing schemas, required keys
 * without a property. Returns a set the caller owns (schema_set_free), or
 * NULL with the reason in err. */
schema_set *schema_set_new(const char *text, size_t len, char *err, size_t errlen);
void schema_set_free(schema_set *set);

/* Checks `value` against the schema named `name` and appends one error
 * object per problem found (at most SCHEMA_MAX_ERRORS) to the array
 * `detail`; loc starts with `loc_root` ("body", "query"; NULL: nothing).
 * Returns the number of errors appended (0: valid), or -1 when there is no
 * such schema or memory runs out. */
int schema_check(const schema_set *set, const char *name, const json_t *value, const char *loc_root,
                 int flags, json_t *detail);

/* schema_check with loc starting with the parts of the array `loc` (keys
 * and indexes, borrowed; NULL: nothing). */
int schema_check_at(const schema_set *set, const char *name, const json_t *value, const json_t *loc,
                    int flags, json_t *detail);

/* One error object {"type", "loc", "msg", "input", "ctx"}: loc and ctx are
 * stolen (ctx may be NULL: left out), input is borrowed (NULL: left out).
 * A new reference, or NULL when memory runs out. */
json_t *schema_error(const char *type, json_t *loc, const char *msg, const json_t *input,
                     json_t *ctx);

/* Checks an ISO 8601 date-time as above. Returns 0, or -1 with *why set to
 * a static reason in speedate's words ("input is too short", ...). */
int schema_parse_datetime(const char *s, const char **why);

/* Writes a one-line summary of a detail array ("loc.path: msg; ...", at
 * most a few errors) into buf, always NUL-terminated. */
void schema_summary(const json_t *detail, char *buf, size_t len);

#endif
