/* verify.h -- decides what a webhook delivery deserves, without any I/O.
 *
 * Given the configured secrets, the signature header and the body, returns the
 * answer of DESIGN.md section 3 or, for an authentic event, what to record.
 * Authenticity is checked before anything else is said about the body: a
 * sender without the secret always gets the same 401, whether or not its body
 * was JSON, so nothing about parsing leaks to it.
 */
#ifndef PLCACHE_VERIFY_H
#define PLCACHE_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "core/sign.h"

typedef enum verify_outcome {
    VERIFY_RECORD,        /* authentic: dedupe and record, then 200 */
    VERIFY_NO_SIGNATURE,  /* 401 */
    VERIFY_BAD_SIGNATURE, /* 401 */
    VERIFY_NOT_OBJECT,    /* 400: not JSON, not an object */
    VERIFY_NO_EVENT_TYPE, /* 400 */
    VERIFY_BAD_TIMESTAMP, /* 400: missing or unreadable while the check is on */
    VERIFY_STALE,         /* 401: timestamp outside the tolerance */
    VERIFY_NO_MEMORY,     /* 500 */
} verify_outcome;

typedef struct verify_result {
    verify_outcome outcome;
    char *event_type; /* owned (free()); set for VERIFY_RECORD */
    size_t event_type_len;
    char seen_hex[65]; /* sha256 of the canonical text; set for VERIFY_RECORD */
} verify_result;

/* HTTP status for an outcome. */
int verify_status(verify_outcome o);

/* Short name of an outcome for logs and metrics ("bad_signature" ...). */
const char *verify_reason(verify_outcome o);

/* Checks one delivery. sig may be NULL (no header). tolerance_s 0 turns the
 * timestamp check off. Fills res (release with verify_result_free). */
void verify_delivery(const sign_keys *keys, long tolerance_s, int64_t now_ms, const char *sig,
                     const char *body, size_t len, verify_result *res);

void verify_result_free(verify_result *res);

#endif
