/* sign.h -- PromptLayer's webhook signature: HMAC-SHA256, hex, constant time.
 *
 * A key set holds every configured secret (PLCACHE_WEBHOOK_SECRET is a comma-
 * separated list, so a secret can be rotated with both in place). A request is
 * authentic when the header matches the HMAC of the canonical text or of the
 * raw body under any secret; every candidate is computed and compared in
 * constant time, so the time taken says nothing about which one matched.
 */
#ifndef PLCACHE_SIGN_H
#define PLCACHE_SIGN_H

#include <stddef.h>

#define SIGN_MAX_KEYS 16
#define SIGN_DIGEST_LEN 32

/* The secrets, each with an HMAC context keyed once at parse time (the key
 * schedule is not redone per request). Owned by the struct: moving the struct
 * by value moves the ownership. Not for two threads at once. */
typedef struct sign_keys {
    size_t n;
    char *key[SIGN_MAX_KEYS]; /* owned */
    size_t len[SIGN_MAX_KEYS];
    void *mac[SIGN_MAX_KEYS]; /* owned EVP_MAC_CTX, keyed with key[i] */
} sign_keys;

/* Splits a comma-separated list of secrets into `keys` (empty items are
 * skipped) and keys one HMAC context per secret. Returns 0, or -1 with err set
 * when there is none, more than SIGN_MAX_KEYS, memory ran out or OpenSSL
 * failed. `keys` is untouched on error. */
int sign_keys_parse(sign_keys *keys, const char *list, char *err, size_t errlen);

/* cfg_check_fn for PLCACHE_WEBHOOK_SECRET: 0 when `list` parses (see
 * sign_keys_parse), else -1 with the reason in err. */
int sign_check_list(const char *list, char *err, size_t errlen);

/* Frees the secrets (wiped) and their contexts. */
void sign_keys_free(sign_keys *keys);

/* HMAC-SHA256 of msg under key. Returns 0 or -1 (OpenSSL failure). */
int sign_hmac(const char *key, size_t klen, const void *msg, size_t mlen,
              unsigned char out[SIGN_DIGEST_LEN]);

/* Writes the lowercase hex of HMAC-SHA256 into out (65 bytes with the NUL). */
int sign_hmac_hex(const char *key, size_t klen, const void *msg, size_t mlen, char out[65]);

/* Decodes a 64-character hex digest (either case, surrounding spaces allowed).
 * Returns 0, or -1 when it is not one. */
int sign_parse_hex(const char *hex, unsigned char out[SIGN_DIGEST_LEN]);

/* 1 when `sig` (a decoded header) equals the HMAC of canon or raw under any
 * key, else 0. raw may be NULL (not checked). Constant time in the secret and
 * the signature. */
int sign_verify(const sign_keys *keys, const unsigned char sig[SIGN_DIGEST_LEN], const char *canon,
                size_t canon_len, const char *raw, size_t raw_len);

/* SHA-256 of data as lowercase hex (65 bytes with the NUL). */
void sign_sha256_hex(const void *data, size_t len, char out[65]);

#endif
