/* plan.h -- what an event asks of the cache (DESIGN.md section 4), without I/O.
 *
 * The webhook says what changed; the API says what it is now. A plan names
 * the template and the selector (version, label) to fetch or drop; the applier
 * carries it out. Pure functions, tested in memory.
 */
#ifndef PLCACHE_PLAN_H
#define PLCACHE_PLAN_H

#include <stddef.h>

typedef enum plan_kind {
    PLAN_NONE,            /* recorded in pl:events only */
    PLAN_VERSION,         /* fetch version n; set version:n, and latest when newest */
    PLAN_LABEL,           /* copy version:n to label:L when cached; fetch label; set label:L */
    PLAN_LABEL_DELETE,    /* remove label:L */
    PLAN_REFRESH_VERSION, /* refetch version n; set it and every field holding it */
    PLAN_RENAME,          /* rebuild old_name's fields under name; drop old_name */
    PLAN_DELETE,          /* drop the template and its id */
    PLAN_INVALID,         /* a template event without what it needs: counted, acknowledged */
} plan_kind;

typedef struct plan {
    plan_kind kind;
    char *name;        /* owned; the template (the new name for a rename) */
    char *old_name;    /* owned; rename only */
    char *label;       /* owned; label events */
    long long id;      /* prompt_template_id, -1 when absent */
    long long version; /* version number, -1 when absent */
} plan;

/* Reads an event's payload (the body as received) into a plan. Returns 0 (out
 * filled, release with plan_free), or -1 when the payload is not a JSON object
 * (err set; out->kind is PLAN_INVALID and needs no free). */
int plan_from_event(const char *type, const char *payload, size_t len, plan *out, char *err,
                    size_t errlen);

void plan_free(plan *p);

/* Name of a kind for logs. */
const char *plan_kind_name(plan_kind k);

#endif
