/* tls.c -- server SSL_CTX from PEM files, with one fixed policy (see tls.h).
 *
 * The files are read by OpenSSL's own PEM readers (the certificate file may
 * hold the chain after the leaf). Errors are taken from OpenSSL's error queue,
 * first entry first (for a missing file that is the system's reason), and the
 * queue is left empty either way so that no stale entry confuses the next
 * TLS operation on the loop's thread.
 */
#include "core/tls.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* TLS 1.2: ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are set
 * apart by OpenSSL (SSL_CTX_set_ciphersuites) and stay at their defaults. */
#define TLS_CIPHERS_12                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* The PEM readers call this for an encrypted key: no passphrase, so the
 * read fails (OpenSSL's default would ask on the terminal). Notes the ask in
 * *userdata for the error message. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (userdata != NULL)
        *(int *)userdata = 1;
    return -1;
}

/* Writes the reason of the first queued OpenSSL error into out (or `what`
 * when the queue is empty), empties the queue and returns that error (0 when
 * none). A system error is given as strerror's text. */
static unsigned long take_reason(char *out, size_t outlen, const char *what)
{
    unsigned long e = ERR_get_error();
    const char *r = NULL;
    if (e != 0)
        r = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
    if (r != NULL)
        snprintf(out, outlen, "%s", r);
    else if (e != 0)
        ERR_error_string_n(e, out, outlen);
    else
        snprintf(out, outlen, "%s", what);
    ERR_clear_error();
    return e;
}

/* Sets the server policy on ctx: TLS 1.2 or later, the house ciphers, no
 * compression or renegotiation, buffers released when idle. Returns 0, or -1
 * with the reason in err. */
static int set_policy(SSL_CTX *ctx, char *err, size_t errlen)
{
    char why[256];
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1) {
        take_reason(why, sizeof(why), "refused by OpenSSL");
        snprintf(err, errlen, "cannot set the TLS policy: %s", why);
        return -1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle keep-alive connections give their read and write buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 0;
}

/* Loads f's certificate chain and private key into ctx and checks that they
 * match; a key with a passphrase is refused, never prompted for. Returns 0,
 * or -1 with the reason in err (ctx is then the caller's to free). */
static int load_pair(SSL_CTX *ctx, const tls_files *f, char *err, size_t errlen)
{
    const char *cl = f->cert_label ? f->cert_label : "certificate";
    const char *kl = f->key_label ? f->key_label : "key";
    char why[256];
    int asked = 0;
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);

    if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
        take_reason(why, sizeof(why), "no certificate");
        snprintf(err, errlen, "%s: cannot read a certificate from %s: %s", cl, f->cert, why);
        return -1;
    }
    /* This also checks the key against the certificate. */
    if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = take_reason(why, sizeof(why), "no private key");
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errlen, "%s and %s: the key in %s does not match the certificate", cl, kl,
                     f->key);
        else if (asked)
            snprintf(err, errlen, "%s: the key in %s has a passphrase (not supported)", kl, f->key);
        else
            snprintf(err, errlen, "%s: cannot read a private key from %s: %s", kl, f->key, why);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        take_reason(why, sizeof(why), "key values mismatch");
        snprintf(err, errlen, "%s and %s: the key does not match the certificate: %s", cl, kl, why);
        return -1;
    }
    /* The context outlives this frame: forget `asked`. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    return 0;
}

struct ssl_ctx_st *tls_ctx_new(const tls_files *f, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = NULL;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        take_reason(why, sizeof(why), "out of memory");
        snprintf(err, errlen, "cannot make a TLS context: %s", why);
        goto err;
    }
    if (set_policy(ctx, err, errlen) != 0 || load_pair(ctx, f, err, errlen) != 0)
        goto err;
    ERR_clear_error();
    return ctx;
err:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

int tls_describe(struct ssl_ctx_st *ctx, char *subject, size_t subjectlen, char *not_after,
                 size_t not_afterlen)
{
    int expired = 0;
    BIO *mem = NULL;
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (subjectlen > 0)
        subject[0] = '\0';
    if (not_afterlen > 0)
        not_after[0] = '\0';
    if (cert == NULL)
        return 0;
    mem = BIO_new(BIO_s_mem());
    if (mem != NULL &&
        X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *data = NULL;
        long n = BIO_get_mem_data(mem, &data);
        if (n > 0 && subjectlen > 0)
            snprintf(subject, subjectlen, "%.*s", (int)n, data);
    }
    BIO_free(mem);
    const ASN1_TIME *end = X509_get0_notAfter(cert);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (end != NULL && ASN1_TIME_to_tm(end, &tm) == 1 && not_afterlen > 0)
        strftime(not_after, not_afterlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end != NULL && X509_cmp_current_time(end) < 0)
        expired = 1;
    ERR_clear_error();
    return expired;
}
