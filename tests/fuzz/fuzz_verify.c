/* fuzz_verify.c -- libFuzzer target for the webhook request decision.
 *
 * The first byte picks how the delivery is signed: with the input's own
 * signature text (mostly refused), with a correct HMAC of the raw body, or with
 * a correct HMAC of the canonical text, so that the checks after the signature
 * (object shape, event_type, timestamp) are reached as often as the refusals.
 * Checks: no crash or leak, and an authentic outcome always carries a type and
 * a 64-digit hash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/canon.h"
#include "core/sign.h"
#include "webhook/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sign_keys keys;
    static int ready;
    char err[128];
    if (!ready) {
        if (sign_keys_parse(&keys, "fuzz-secret,other", err, sizeof(err)) != 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char sig[65] = "";
    if (mode == 0) {
        size_t n = len < 64 ? len : 64;
        memcpy(sig, body, n);
        sig[n] = '\0';
        if (memchr(sig, '\0', n) == NULL) {
            body += n;
            len -= n;
        }
    } else if (mode == 1) {
        sign_hmac_hex("fuzz-secret", 11, body, len, sig);
    } else {
        size_t clen = 0;
        char *canon = canon_json(body, len, &clen, err, sizeof(err));
        if (canon) {
            sign_hmac_hex("other", 5, canon, clen, sig);
            free(canon);
        }
    }
    verify_result r;
    verify_delivery(&keys, (data[0] & 4) ? 300 : 0, 1701468357924LL, sig[0] ? sig : NULL, body, len,
                    &r);
    if (r.outcome == VERIFY_RECORD && (r.event_type == NULL || strlen(r.seen_hex) != 64))
        abort();
    if (r.outcome != VERIFY_RECORD && r.event_type != NULL)
        abort();
    verify_result_free(&r);
    return 0;
}
