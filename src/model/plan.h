/* plan.h -- what an event asks of the cache (DESIGN.md section 4), without I/O.
 *
 * The webhook says what changed; the API says what it is now. A plan names
 * the template and the selector (version, label) to fetch or drop; the applier
 * carries it out. Pure functions, tested in memory.
 */
#ifndef PLCACHE_PLAN_H
#define PLCACHE_PLAN_H

#include <stddef.h>

#include "model/field.h"

typedef enum plan_kind {
    PLAN_NONE,            /* recorded in pl:events only */
    PLAN_VERSION,         /* fetch version n and latest; set version:n and latest */
    PLAN_LABEL,           /* copy version:n to label:L when cached; fetch label; set label:L */
    PLAN_LABEL_DELETE,    /* remove label:L; fetch label to confirm */
    PLAN_REFRESH_VERSION, /* refetch version n; set it and every field holding it */
    PLAN_RENAME,          /* rebuild old_name's fields under name; drop old_name */
    PLAN_DELETE,          /* drop the template and its id; fetch latest to confirm */
    PLAN_INVALID,         /* a template event without what it needs: counted, acknowledged */
} plan_kind;

typedef struct plan {
    plan_kind kind;
    char *name;        /* owned; the template (the new name for a rename) */
    char *old_name;    /* owned; rename only */
    char *label;       /* owned; label events */
    long long id;      /* prompt_template_id, -1 when absent */
    long long version; /* version number, -1 when absent */
    long long at_us;   /* the event's timestamp (microseconds since the epoch), -1 when absent */
} plan;

/* Reads an event's payload (the body as received) into a plan. Returns 0 (out
 * filled, release with plan_free), or -1 when the payload is not a JSON object
 * (err set; out->kind is PLAN_INVALID and needs no free). */
int plan_from_event(const char *type, const char *payload, size_t len, plan *out, char *err,
                    size_t errlen);

void plan_free(plan *p);

/* Name of a kind for logs. */
const char *plan_kind_name(plan_kind k);

/* ---- from a plan to cache operations (model/cachew's ops) ------------------ */

/* Written at once, as an event's operations (model/cachew.h "event"): each
 * acts only on the event's template, and a copy or a delete only when no newer
 * event was applied to the field -- so an event delivered late or twice never
 * takes a field back. The fetch that follows makes the field what the API says. */
typedef enum plan_pre_kind {
    PLAN_PRE_NONE,
    PLAN_PRE_COPY, /* "evcopy" pre_field <- pre_from: a label moving to a cached version */
    PLAN_PRE_DEL,  /* "evdel" pre_field: a deleted label */
    PLAN_PRE_DROP, /* "evdrop": a deleted template */
} plan_pre_kind;

/* What a plan does: at once (pre), then with the API's answer (target). */
typedef struct plan_steps {
    int fetch;         /* fetch `target` and write its answer (plan_write_of) */
    int fetch_latest;  /* also fetch latest: a new version may not be the newest any more */
    field target;      /* when fetch */
    plan_pre_kind pre; /* written at once, before any fetch */
    field pre_field;   /* PLAN_PRE_COPY: the destination; PLAN_PRE_DEL: the field removed */
    field pre_from;    /* PLAN_PRE_COPY: the source (version:N) */
    int rebuild_old;   /* rename: every cached field of old_name is fetched under name */
} plan_steps;

/* The steps of p (labels point into p). Pure; never fails. */
plan_steps plan_steps_of(const plan *p);

typedef enum plan_write {
    PLAN_W_FAIL,       /* no usable answer: nothing written, the event is retried */
    PLAN_W_DROP,       /* "drop": the template is gone (404 for latest) */
    PLAN_W_DEL,        /* "del" the field (404) */
    PLAN_W_SET,        /* "set" the field */
    PLAN_W_LATEST,     /* "latest": only moves forward */
    PLAN_W_HOLDING,    /* "holding": version:N and every field holding it (a snippet changed) */
} plan_write;

/* How the answer `status` for a field of kind `target`, fetched for a plan of
 * kind `kind` (PLAN_NONE: a reconciliation), is written. Pure. */
plan_write plan_write_of(plan_kind kind, field_kind target, long status);

#endif
