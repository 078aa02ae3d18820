/* retry.h -- which failures pass, and how long to wait before the next try.
 *
 * One rule for every caller of PromptLayer's API (the applier's and sync's
 * fetches in core/fetch, the worker's jobs): an answer is classified by its
 * status, and a request that got no answer by what the transport said (may
 * another try get through?). Waits are full-jitter exponential backoff,
 * stretched to the server's Retry-After within a bound, drawn from one
 * generator. Pure: no clock, no I/O (retry_seed reads the kernel's random
 * source once).
 */
#ifndef PLCACHE_RETRY_H
#define PLCACHE_RETRY_H

#include <stdint.h>

typedef enum retry_class {
    RETRY_DONE,  /* a 2xx answer */
    RETRY_AGAIN, /* would pass: 408, 429, 5xx, or no answer that the transport calls transient
                    (connect failed, reset, timeout) */
    RETRY_AUTH,  /* 401, 403: the API key is refused; no job is at fault */
    RETRY_NEVER, /* repeating will not cure it: any other status (1xx, 3xx, 4xx), or no answer
                    for a reason that repeats (a URL refused, a certificate that does not
                    verify, an answer too big) */
} retry_class;

/* status: the HTTP status, 0 when no answer came; transient: for status 0,
 * whether the transport failure may pass (ignored otherwise). */
retry_class retry_classify(long status, int transient);

typedef struct retry_policy {
    long long base_ms;            /* the first wait's bound */
    long long max_ms;             /* no backoff wait is longer */
    long long retry_after_max_ms; /* no Retry-After is honoured beyond this */
} retry_policy;

/* A random wait in [0, min(max_ms, base_ms * 2^(attempts-1))] (full jitter),
 * then at least the server's Retry-After (retry_after_ms, -1 when none) capped
 * at retry_after_max_ms. attempts counts the tries made so far (>= 1). */
long long retry_delay_ms(const retry_policy *p, int attempts, long long retry_after_ms,
                         uint64_t *rng);

/* The next number of the generator whose state is *rng (xorshift64*; plenty to
 * spread retries apart, not for secrets). *rng must not be 0. */
uint64_t retry_rng_next(uint64_t *rng);

/* A non-zero seed for the generator: the kernel's random source, or a mix of
 * the clock, the pid and `salt` when that fails. */
uint64_t retry_seed(uint64_t salt);

#endif
