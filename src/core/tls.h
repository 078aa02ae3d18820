/* tls.h -- server TLS contexts (OpenSSL) for an HTTPS listener.
 *
 * One function builds a complete server SSL_CTX from a PEM certificate (chain)
 * file and a PEM private key file, with the policy fixed here once: TLS 1.2 at
 * least; for TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305
 * (forward secrecy, AEAD), TLS 1.3 with OpenSSL's defaults; no compression; no
 * renegotiation; a peer closing without close_notify is a plain end of stream.
 * A key protected by a passphrase is refused (a daemon has no one to ask).
 *
 * A context is reference counted by OpenSSL: every connection made from it
 * holds a reference, so a listener may swap in a new context (SIGHUP) while
 * connections made from the old one carry on; the old one is freed by the last
 * of them. Nothing here logs, and no error text ever holds key material.
 */
#ifndef PLCACHE_TLS_H
#define PLCACHE_TLS_H

#include <stddef.h>

struct ssl_ctx_st; /* SSL_CTX */

typedef struct tls_files {
    const char *cert;       /* path of the PEM certificate, then its chain */
    const char *key;        /* path of the PEM private key */
    const char *cert_label; /* names the certificate in errors, e.g. "PLCACHE_TLS_CERT" */
    const char *key_label;  /* names the key in errors */
} tls_files;

/* Builds a server context from f. Returns a new context owned by the caller
 * (release with tls_ctx_free), or NULL with one line in err that starts with
 * the label of the file at fault (both labels when the key does not match the
 * certificate) and gives OpenSSL's or the system's reason. Blocks on reading
 * the two files: call it at start or from a signal's handler in the loop. */
struct ssl_ctx_st *tls_ctx_new(const tls_files *f, char *err, size_t errlen);

/* Drops the caller's reference. NULL is fine. */
void tls_ctx_free(struct ssl_ctx_st *ctx);

/* Writes the context's certificate subject into subject and the end of its
 * validity (UTC, "2026-01-31T12:00:00Z") into not_after; returns 1 when the
 * certificate has expired, 0 otherwise. Never fails (empty strings when a
 * field cannot be read). */
int tls_describe(struct ssl_ctx_st *ctx, char *subject, size_t subjectlen, char *not_after,
                 size_t not_afterlen);

#endif
