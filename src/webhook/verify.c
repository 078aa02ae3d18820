/* verify.c -- signature, shape and timestamp checks of a webhook delivery. */
#include "webhook/verify.h"

#include <stdlib.h>
#include <string.h>

#include "core/canon.h"
#include "core/timeutil.h"

int verify_status(verify_outcome o)
{
    switch (o) {
    case VERIFY_RECORD:
        return 200;
    case VERIFY_NO_SIGNATURE:
    case VERIFY_BAD_SIGNATURE:
    case VERIFY_STALE:
        return 401;
    case VERIFY_NOT_OBJECT:
    case VERIFY_NO_EVENT_TYPE:
    case VERIFY_BAD_TIMESTAMP:
        return 400;
    case VERIFY_NO_MEMORY:
        break;
    }
    return 500;
}

const char *verify_reason(verify_outcome o)
{
    switch (o) {
    case VERIFY_RECORD:
        return "ok";
    case VERIFY_NO_SIGNATURE:
        return "no_signature";
    case VERIFY_BAD_SIGNATURE:
        return "bad_signature";
    case VERIFY_NOT_OBJECT:
        return "not_json_object";
    case VERIFY_NO_EVENT_TYPE:
        return "no_event_type";
    case VERIFY_BAD_TIMESTAMP:
        return "bad_timestamp";
    case VERIFY_STALE:
        return "stale_timestamp";
    case VERIFY_NO_MEMORY:
        break;
    }
    return "no_memory";
}

/* Checks the delivery's "timestamp" against now_ms: VERIFY_RECORD when it
 * is within tolerance_s, else VERIFY_BAD_TIMESTAMP or VERIFY_STALE. */
static verify_outcome check_timestamp(const canon_doc *doc, long tolerance_s, int64_t now_ms)
{
    size_t slen = 0;
    const char *ts = canon_root_string(doc, "timestamp", &slen);
    int64_t ms;
    if (ts == NULL || time_parse_iso8601(ts, slen, &ms) != 0)
        return VERIFY_BAD_TIMESTAMP;
    int64_t skew = now_ms > ms ? now_ms - ms : ms - now_ms;
    if (skew > (int64_t)tolerance_s * 1000)
        return VERIFY_STALE;
    return VERIFY_RECORD;
}

/* Fills res for an authentic delivery: a copy of its event type (tlen
 * bytes) and the hash of its canonical text. VERIFY_RECORD, or
 * VERIFY_NO_MEMORY. */
static verify_outcome record(verify_result *res, const char *type, size_t tlen, const char *canon,
                             size_t clen)
{
    res->event_type = malloc(tlen + 1);
    if (res->event_type == NULL)
        return VERIFY_NO_MEMORY;
    memcpy(res->event_type, type, tlen);
    res->event_type[tlen] = '\0';
    res->event_type_len = tlen;
    sign_sha256_hex(canon, clen, res->seen_hex);
    return VERIFY_RECORD;
}

void verify_delivery(const sign_keys *keys, long tolerance_s, int64_t now_ms, const char *sig,
                     const char *body, size_t len, verify_result *res)
{
    unsigned char want[SIGN_DIGEST_LEN];
    char err[128];
    canon_doc *doc = NULL;
    char *canon = NULL;
    size_t clen = 0;

    memset(res, 0, sizeof(*res));
    if (sig == NULL || sign_parse_hex(sig, want) != 0) {
        res->outcome = sig == NULL ? VERIFY_NO_SIGNATURE : VERIFY_BAD_SIGNATURE;
        return;
    }
    doc = canon_parse(body, len, err, sizeof(err));
    if (doc != NULL) {
        canon = canon_dump(doc, &clen);
        if (canon == NULL) {
            res->outcome = VERIFY_NO_MEMORY;
            goto done;
        }
    }
    if (!sign_verify(keys, want, canon, clen, body, len)) {
        res->outcome = VERIFY_BAD_SIGNATURE;
        goto done;
    }
    if (doc == NULL || canon_root_type(doc) != CANON_OBJECT) {
        res->outcome = VERIFY_NOT_OBJECT;
        goto done;
    }
    size_t tlen = 0;
    const char *type = canon_root_string(doc, "event_type", &tlen);
    if (type == NULL) {
        res->outcome = VERIFY_NO_EVENT_TYPE;
        goto done;
    }
    if (tolerance_s > 0) {
        res->outcome = check_timestamp(doc, tolerance_s, now_ms);
        if (res->outcome != VERIFY_RECORD)
            goto done;
    }
    res->outcome = record(res, type, tlen, canon, clen);
done:
    free(canon);
    canon_free(doc);
}

void verify_result_free(verify_result *res)
{
    free(res->event_type);
    res->event_type = NULL;
}
