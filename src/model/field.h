/* field.h -- the cache field of a template's hash (DESIGN.md section 4):
 * "latest", "version:<n>" or "label:<label>", parsed and built here only.
 *
 * The hash holds other fields too (id, gen); they are not cache fields and
 * field_parse refuses them. A version is written in ASCII digits only (no
 * sign, space or leading "+"), as the programs write it.
 */
#ifndef PLCACHE_FIELD_H
#define PLCACHE_FIELD_H

#include <stddef.h>

#include "core/buf.h"

typedef enum field_kind {
    FIELD_LATEST,
    FIELD_VERSION,
    FIELD_LABEL,
} field_kind;

typedef struct field {
    field_kind kind;
    long long version; /* FIELD_VERSION: >= 0 */
    const char *label; /* FIELD_LABEL: non-empty, NUL-terminated; not owned */
} field;

/* The room field_format needs for a field whose label has at most
 * `label_max` bytes, NUL included. */
#define FIELD_SIZE(label_max) ((label_max) + 8)

/* Parses text into *out (label pointing into text). Returns 0, or -1 when
 * text is not a cache field (id, gen, "version:", "version:-1",
 * "version:1x", "label:", ...). */
int field_parse(const char *text, field *out);

/* Writes the field's text into out. Returns its length, or -1 when f is not
 * a valid field (a negative version, an empty label) or out is too small. */
int field_format(char *out, size_t outlen, const field *f);

/* The field's text in a new string (the caller's, free it), or NULL when f
 * is not a valid field or memory ran out. */
char *field_dup(const field *f);

/* Appends to b the API URL that fills field f of template `name`: base +
 * "/prompt-templates/" + the percent-encoded name, then "?version=N",
 * "?label=L" or nothing for latest, with include_llm_kwargs=true when
 * llm_kwargs is non-zero (pturl_template). Returns 0, or -1 (too long). */
int field_url(buf *b, const char *base, const char *name, const field *f, int llm_kwargs);

#endif
