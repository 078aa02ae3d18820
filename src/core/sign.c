/* sign.c -- HMAC-SHA256 signatures and their constant-time check. */
#include "core/sign.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"

/* An HMAC-SHA256 context keyed with key: later messages reuse the key's
 * precomputed inner and outer states. NULL on failure. */
static EVP_MAC_CTX *mac_new(const char *key, size_t klen)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx == NULL || EVP_MAC_init(ctx, (const unsigned char *)key, klen, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* HMAC of msg under the context's key. Returns 0 or -1. */
static int mac_run(void *vctx, const void *msg, size_t mlen, unsigned char out[SIGN_DIGEST_LEN])
{
    EVP_MAC_CTX *ctx = vctx;
    size_t olen = 0;
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, msg, mlen) != 1 ||
        EVP_MAC_final(ctx, out, &olen, SIGN_DIGEST_LEN) != 1 || olen != SIGN_DIGEST_LEN)
        return -1;
    return 0;
}

int sign_keys_parse(sign_keys *keys, const char *list, char *err, size_t errlen)
{
    sign_keys tmp;
    memset(&tmp, 0, sizeof(tmp));
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n > 0) {
            if (tmp.n == SIGN_MAX_KEYS) {
                snprintf(err, errlen, "more than %d secrets", SIGN_MAX_KEYS);
                goto err;
            }
            tmp.key[tmp.n] = strndup(p, n);
            if (tmp.key[tmp.n] == NULL) {
                snprintf(err, errlen, "out of memory");
                goto err;
            }
            tmp.len[tmp.n] = n;
            tmp.mac[tmp.n] = mac_new(tmp.key[tmp.n], n);
            tmp.n++;
            if (tmp.mac[tmp.n - 1] == NULL) {
                snprintf(err, errlen, "cannot make an HMAC-SHA256 context (OpenSSL)");
                goto err;
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (tmp.n == 0) {
        snprintf(err, errlen, "no secret given");
        goto err;
    }
    *keys = tmp;
    return 0;
err:
    sign_keys_free(&tmp);
    return -1;
}

int sign_check_list(const char *list, char *err, size_t errlen)
{
    sign_keys k;
    if (sign_keys_parse(&k, list, err, errlen) != 0)
        return -1;
    sign_keys_free(&k);
    return 0;
}

void sign_keys_free(sign_keys *keys)
{
    for (size_t i = 0; i < keys->n; i++) {
        OPENSSL_cleanse(keys->key[i], keys->len[i]);
        free(keys->key[i]);
        keys->key[i] = NULL;
        EVP_MAC_CTX_free(keys->mac[i]);
        keys->mac[i] = NULL;
    }
    keys->n = 0;
}

int sign_hmac(const char *key, size_t klen, const void *msg, size_t mlen,
              unsigned char out[SIGN_DIGEST_LEN])
{
    unsigned int olen = 0;
    if (klen > (size_t)0x7fffffff)
        return -1;
    if (HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) == NULL ||
        olen != SIGN_DIGEST_LEN)
        return -1;
    return 0;
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[d[i] >> 4];
        out[2 * i + 1] = hexd[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int sign_hmac_hex(const char *key, size_t klen, const void *msg, size_t mlen, char out[65])
{
    unsigned char d[SIGN_DIGEST_LEN];
    if (sign_hmac(key, klen, msg, mlen, d) != 0)
        return -1;
    to_hex(d, sizeof(d), out);
    return 0;
}

int sign_parse_hex(const char *hex, unsigned char out[SIGN_DIGEST_LEN])
{
    while (*hex == ' ' || *hex == '\t')
        hex++;
    for (size_t i = 0; i < SIGN_DIGEST_LEN; i++) {
        int hi = text_hexval(hex[2 * i]);
        int lo = hi < 0 ? -1 : text_hexval(hex[2 * i + 1]);
        if (lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    for (const char *p = hex + 2 * SIGN_DIGEST_LEN; *p; p++)
        if (*p != ' ' && *p != '\t')
            return -1;
    return 0;
}

int sign_verify(const sign_keys *keys, const unsigned char sig[SIGN_DIGEST_LEN], const char *canon,
                size_t canon_len, const char *raw, size_t raw_len)
{
    int match = 0;
    /* The raw body equal to the canonical text gives the same digest. */
    int check_raw =
        raw != NULL && !(canon != NULL && raw_len == canon_len && memcmp(raw, canon, raw_len) == 0);
    for (size_t i = 0; i < keys->n; i++) {
        unsigned char d[SIGN_DIGEST_LEN];
        if (canon != NULL && mac_run(keys->mac[i], canon, canon_len, d) == 0)
            match |= CRYPTO_memcmp(d, sig, SIGN_DIGEST_LEN) == 0;
        if (check_raw && mac_run(keys->mac[i], raw, raw_len, d) == 0)
            match |= CRYPTO_memcmp(d, sig, SIGN_DIGEST_LEN) == 0;
    }
    return match;
}

void sign_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(data, len, d);
    to_hex(d, sizeof(d), out);
}
