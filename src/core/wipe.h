/* wipe.h -- erasing secrets before their memory goes back, in a way the
 * compiler keeps.
 *
 * A memset() just before free() is a dead store: the compiler may drop it
 * (GCC does at -O2 once it sees the free), and the password, API key or
 * header carrying one stays in the freed heap. glibc's explicit_bzero
 * (<string.h>, glibc 2.25; Debian 12 has 2.36) is never removed. Code that
 * links OpenSSL uses OPENSSL_cleanse, as core/sign.c does; this module is
 * for the code that must not depend on OpenSSL: libplcache (src/lib) is
 * linked by applications without it, and links core/rurl.c and this file
 * from the pure library (src/lib/meson.build). The daemons use it too.
 */
#ifndef PLCACHE_WIPE_H
#define PLCACHE_WIPE_H

#include <stddef.h>

/* Sets the n bytes at p to zero; p may be NULL when n is 0. Never fails,
 * never removed by the compiler. */
void wipe_mem(void *p, size_t n);

/* Wipes the NUL-terminated string s (its bytes before the NUL), then frees
 * it. NULL is fine. Never fails. */
void wipe_free(char *s);

#endif
