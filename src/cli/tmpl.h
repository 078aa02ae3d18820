/* tmpl.h -- one cached template as ls and show see it: its hash read and sorted.
 *
 * A template's hash (DESIGN.md section 4) holds content fields (latest,
 * label:L, version:N), each the JSON of one version as PromptLayer answered
 * it, and bookkeeping (id, gen, at:...). Redis keeps no write time per field,
 * so an entry's age is that of its version's created_at (when the version was
 * made at PromptLayer), when the JSON has one that reads as ISO 8601.
 */
#ifndef PLCACHE_TMPL_H
#define PLCACHE_TMPL_H

#include <jansson.h>
#include <stdio.h>

#include "cli/cli.h"

typedef enum { TMPL_LATEST, TMPL_LABEL, TMPL_VERSION } tmpl_kind;

typedef struct tmpl_entry {
    tmpl_kind kind;
    char *field;         /* "label:prod"; owned */
    const char *sel;     /* into field: the label or the version number, "" for latest */
    long long number;    /* TMPL_VERSION: N from the field name */
    json_t *value;       /* the parsed JSON, NULL when it is not a JSON object; owned */
    char *text;          /* the stored text, as get prints it; owned */
    long long version;   /* the JSON's "version", -1 when absent */
    const char *created; /* the JSON's "created_at" (into value), NULL when absent */
    long long age_ms;    /* now - created_at, -1 when unknown */
} tmpl_entry;

typedef struct tmpl {
    char *name;     /* owned */
    char *id, *gen; /* the bookkeeping fields, NULL when absent; owned */
    tmpl_entry *e;  /* latest, then labels by name, then versions by number */
    size_t n;
} tmpl;

/* Reads the hash <prefix>prompt:name into t (the caller's, tmpl_free).
 * Returns 1 when it exists, 0 when it does not, -1 after printing why. */
int tmpl_read(const cli_ctx *c, redisContext *rc, const char *name, tmpl *t);

void tmpl_free(tmpl *t);

/* The names of the cached templates matching the glob pattern (NULL: all),
 * sorted, into *names (the caller's: free each, then the array). Returns
 * the count, or -1 after printing why. */
long tmpl_names(const cli_ctx *c, redisContext *rc, const char *pattern, char ***names);

/* The newest entry of t (the smallest known age), or NULL. */
const tmpl_entry *tmpl_newest(const tmpl *t);

/* The width of UTF-8 text s on a terminal, counted as one column a
 * character. */
int tmpl_width(const char *s);

/* Writes s to f with control characters shown as '?', so that a name or
 * label from Redis cannot drive the terminal. NULL writes nothing. */
void tmpl_put(FILE *f, const char *s);

/* Writes s quoted for a POSIX shell when it needs it ('...' with '\'' for a
 * quote), as plain text otherwise, control characters as '?'. */
void tmpl_put_shell(FILE *f, const char *s);

#endif
