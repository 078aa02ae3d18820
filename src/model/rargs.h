/* rargs.h -- a Redis command being built: arguments copied in, owned by it.
 *
 * Neutral: no connection type. The daemons send one with rconn_send (async),
 * libplcache and the command with sconn (blocking); model/cachew builds the
 * template-hash write as one, for both.
 */
#ifndef PLCACHE_RARGS_H
#define PLCACHE_RARGS_H

#include <stddef.h>

typedef struct rargs {
    int argc;
    int cap;
    char **argv;   /* owned, each NUL-terminated after its lens[i] bytes */
    size_t *lens;
    int failed;    /* an add ran out of memory: senders refuse the command */
} rargs;

void rargs_init(rargs *a);
/* Appends one argument (n bytes, copied) / a C string / a number. Never
 * fails loudly: an allocation failure sets a->failed, and later adds do
 * nothing. */
void rargs_add(rargs *a, const void *p, size_t n);
void rargs_adds(rargs *a, const char *s);
void rargs_addll(rargs *a, long long v);
/* Releases the arguments; a is empty (rargs_init) again. */
void rargs_free(rargs *a);

#endif
