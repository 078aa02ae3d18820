/* retry.c -- retry classes, full-jitter backoff, one generator. */
#include "model/retry.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

retry_class retry_classify(long status, int transient)
{
    if (status == 0)
        return transient ? RETRY_AGAIN : RETRY_NEVER;
    if (status >= 200 && status <= 299)
        return RETRY_DONE;
    if (status == 401 || status == 403)
        return RETRY_AUTH;
    if (status == 408 || status == 429 || (status >= 500 && status <= 599))
        return RETRY_AGAIN;
    return RETRY_NEVER;
}

long long retry_delay_ms(const retry_policy *p, int attempts, long long retry_after_ms,
                         uint64_t *rng)
{
    long long cap = p->base_ms, max = p->max_ms;
    for (int i = 1; i < attempts && cap < max; i++)
        cap = cap > max / 2 ? max : cap * 2;
    if (cap > max)
        cap = max;
    long long delay = cap > 0 ? (long long)(retry_rng_next(rng) % ((uint64_t)cap + 1)) : 0;
    if (retry_after_ms > p->retry_after_max_ms)
        retry_after_ms = p->retry_after_max_ms;
    return retry_after_ms > delay ? retry_after_ms : delay;
}

uint64_t retry_rng_next(uint64_t *rng)
{
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint64_t retry_seed(uint64_t salt)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 32) ^ salt;
    }
    return s != 0 ? s : 0x9E3779B97F4A7C15ULL;
}
