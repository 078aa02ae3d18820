/* form.h -- the forms of things libplcache writes: cache field names, API URLs,
 * and key names.
 *
 * Pure functions with no I/O, tested in tests/unit/test_libform.c.
 */
#ifndef PLCACHE_LIB_FORM_H
#define PLCACHE_LIB_FORM_H

#include <stddef.h>

#include "core/buf.h"
#include "model/field.h"
#include "plcache.h"

#define FORM_MAX_NAME 1024  /* bytes of a template name (PromptLayer's own bound) */
#define FORM_MAX_LABEL 1024 /* bytes of a release label */
#define FORM_MAX_PREFIX 128 /* bytes of PLCACHE_PREFIX */
/* A field: "label:" + label, or "version:" + 19 digits, plus NUL. */
#define FORM_FIELD_SIZE FIELD_SIZE(FORM_MAX_LABEL)
/* A key: prefix + "lease:" + name + ":" + field, plus NUL. */
#define FORM_KEY_SIZE (FORM_MAX_PREFIX + 8 + FORM_MAX_NAME + 1 + FORM_FIELD_SIZE)

/* Checks the selector arguments of plcache_get (a label of 1..FORM_MAX_LABEL
 * bytes for PLCACHE_SEL_LABEL, a version > 0 for PLCACHE_SEL_VERSION) and writes the
 * cache field (`latest`, `label:<l>`, `version:<n>`) into out. Returns the
 * field's length, or -1 when an argument is bad or out is too small. */
int form_field(char *out, size_t outlen, plcache_select sel, const char *label, long long version);

/* Appends base (trailing slashes dropped) + "/prompt-templates/" + the
 * percent-encoded name + "?version=<n>" / "?label=<percent-encoded l>" (no
 * query for latest) to b, with include_llm_kwargs=true when llm_kwargs is
 * non-zero (pturl_template). Returns 0, or -1 when b's maximum is passed or an
 * argument is bad. */
int form_api_url(buf *b, const char *base, const char *name, plcache_select sel, const char *label,
                 long long version, int llm_kwargs);

/* Writes prefix + middle + name (+ ":" + field when field is not NULL) into
 * out. Returns the length, or -1 when it does not fit. */
int form_key(char *out, size_t outlen, const char *prefix, const char *middle, const char *name,
             const char *field);

/* 1 when s (NUL-terminated) holds no byte below 0x20 nor 0x7f, so it can go
 * into an HTTP header line; 0 otherwise. */
int form_header_safe(const char *s);

#endif
