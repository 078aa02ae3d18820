/* bench_canon.c -- what a webhook body at the size limit costs the receiver
 * before its signature is checked, by kind of content, in one run.
 *
 * bench-canon [--size BYTES] [--rounds R] [--label TEXT]
 *
 * plcache-webhook canonicalizes every body that carries a well-formed
 * signature header before it can compare HMACs (verify_delivery): it parses
 * the body (canon_parse), writes its canonical text (canon_dump), then
 * computes the HMAC of that text and of the raw body (sign_verify). A sender
 * without the secret can make it do that for any body up to the size limit,
 * so this times exactly those steps, for JSON arrays filled up to BYTES
 * (default 1048576, PLCACHE_MAX_BODY's default) with:
 *   strings   ["abcd", "abcd", ...]              the reference
 *   ints      [1, 1, ...]
 *   1e9       [1E9, 1E9, ...]
 *   1.5       [1.5, 1.5, ...]
 *   17digits  [1.2345678901234567, ...]
 *   random    random doubles over the whole range, each written with 17
 *             significant digits (%.17g)
 *   subnorm   [5e-324, ...]                      the slowest for strtod
 *   midpoint  [1.00000000000000011102230246251565404236316680908203125, ...]
 *             exact halfway points, read through the slow path every time
 *   mid800    the same point with 745 more digits, a hair above it: the
 *             slow path at its longest (strtod on 800 digits) every time
 *   huge      [1.000...0001], one float of as many digits as fit
 * The bodies run interleaved, one of each per round, for R rounds (default
 * 15), each timed in CPU time of this thread (CLOCK_THREAD_CPUTIME_ID). Prints
 * per body its items, bytes, median and fastest milliseconds, and the median
 * as a ratio to the strings body's (the goal: at most 3x for floats). Exit 0,
 * or 1 when a body failed to parse or the HMAC failed (no figures then).
 *
 * It uses only canon.h and sign.h, so that scripts/bench/canon can also
 * build it against an older canon.c for a before/after comparison.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/canon.h"
#include "core/sign.h"

#define MAX_ROUNDS 1000

enum { STRINGS, INTS, E9, ONE_FIVE, DIGITS17, RANDOM, SUBNORM, MIDPOINT, MID800, HUGE, NBODY };

static const char *const names[NBODY] = {
    "strings", "ints", "1e9", "1.5", "17digits", "random", "subnorm", "midpoint", "mid800", "huge",
};

#define HALFWAY "1.00000000000000011102230246251565404236316680908203125"

static const char *const items[NBODY] = {
    "\"abcd\"", "1", "1E9", "1.5", "1.2345678901234567", NULL, "5e-324", HALFWAY, NULL, NULL,
};

typedef struct body {
    char *text; /* owned */
    size_t len;
    size_t count;
    double ms[MAX_ROUNDS];
} body;

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

#define ITEM_MAX 820

/* The next item of body kind k into out (room for ITEM_MAX); returns its
 * length. */
static size_t next_item(int k, char *out)
{
    if (k == MID800) {
        size_t n = sizeof(HALFWAY) - 1;
        memcpy(out, HALFWAY, n);
        memset(out + n, '0', 745);
        out[n + 745] = '1';
        return n + 746;
    }
    if (items[k] != NULL) {
        size_t n = strlen(items[k]);
        memcpy(out, items[k], n);
        return n;
    }
    for (;;) {
        uint64_t bits = rng_next();
        if (((bits >> 52) & 0x7FF) == 0x7FF)
            continue; /* not finite */
        double d;
        memcpy(&d, &bits, sizeof(d));
        int n = snprintf(out, 40, "%.17g", d);
        if (n > 0 && n < 40)
            return (size_t)n;
    }
}

/* Fills b with a JSON array of kind k, as long as fits in size bytes. */
static int make_body(body *b, int k, size_t size)
{
    b->text = malloc(size + 1);
    if (b->text == NULL || size < 8)
        return -1;
    size_t n = 0;
    b->text[n++] = '[';
    b->count = 0;
    if (k == HUGE) {
        memcpy(b->text + n, "1.", 2);
        memset(b->text + n + 2, '0', size - 5);
        memcpy(b->text + size - 2, "1]", 2);
        b->len = size;
        b->count = 1;
        return 0;
    }
    char item[ITEM_MAX];
    for (;;) {
        size_t il = next_item(k, item);
        size_t need = il + (b->count > 0 ? 2 : 0) + 1; /* ", " item "]" */
        if (n + need > size)
            break;
        if (b->count > 0) {
            b->text[n++] = ',';
            b->text[n++] = ' ';
        }
        memcpy(b->text + n, item, il);
        n += il;
        b->count++;
    }
    b->text[n++] = ']';
    b->len = n;
    return 0;
}

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* What verify_delivery does with a body before the signature decides:
 * parse, dump, HMAC of both texts. Returns 0, or -1 on a failure. */
static int receive(const sign_keys *keys, const unsigned char sig[SIGN_DIGEST_LEN], const body *b)
{
    char err[128];
    size_t clen = 0;
    canon_doc *doc = canon_parse(b->text, b->len, err, sizeof(err));
    if (doc == NULL) {
        fprintf(stderr, "bench-canon: body rejected: %s\n", err);
        return -1;
    }
    char *canon = canon_dump(doc, &clen);
    if (canon == NULL) {
        canon_free(doc);
        return -1;
    }
    int ok = sign_verify(keys, sig, canon, clen, b->text, b->len);
    free(canon);
    canon_free(doc);
    return ok ? -1 : 0; /* a random signature must not match */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_count(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long size = 1048576, rounds = 15;
    const char *label = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--size") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], 64, 1L << 30, &size) < 0)
                goto usage;
        } else if (strcmp(a, "--rounds") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], 1, MAX_ROUNDS, &rounds) < 0)
                goto usage;
        } else if (strcmp(a, "--label") == 0 && i + 1 < argc) {
            label = argv[++i];
        } else {
            goto usage;
        }
    }

    int rc = 1;
    static body bodies[NBODY];
    sign_keys keys;
    char err[128];
    unsigned char sig[SIGN_DIGEST_LEN];
    if (sign_keys_parse(&keys, "bench-secret", err, sizeof(err)) != 0 ||
        sign_parse_hex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", sig) !=
            0) {
        fprintf(stderr, "bench-canon: keys: %s\n", err);
        return 1;
    }
    for (int k = 0; k < NBODY; k++) {
        if (make_body(&bodies[k], k, (size_t)size) < 0) {
            fprintf(stderr, "bench-canon: out of memory\n");
            goto done;
        }
        if (receive(&keys, sig, &bodies[k]) < 0) /* warm up, and check it works */
            goto done;
    }
    for (long r = 0; r < rounds; r++) {
        for (int k = 0; k < NBODY; k++) {
            double t0 = cpu_ms();
            if (receive(&keys, sig, &bodies[k]) < 0)
                goto done;
            bodies[k].ms[r] = cpu_ms() - t0;
        }
    }
    double med[NBODY], best[NBODY];
    for (int k = 0; k < NBODY; k++) {
        qsort(bodies[k].ms, (size_t)rounds, sizeof(double), cmp_double);
        med[k] = bodies[k].ms[rounds / 2];
        best[k] = bodies[k].ms[0];
    }
    printf("%sbodies of %ld bytes, %ld rounds, CPU ms of parse + dump + 2 HMACs\n", label, size,
           rounds);
    printf("%-10s %9s %9s %10s %10s %8s\n", "body", "items", "bytes", "median_ms", "min_ms",
           "ratio");
    for (int k = 0; k < NBODY; k++)
        printf("%-10s %9zu %9zu %10.2f %10.2f %7.2fx\n", names[k], bodies[k].count, bodies[k].len,
               med[k], best[k], med[k] / med[STRINGS]);
    rc = 0;
done:
    for (int k = 0; k < NBODY; k++)
        free(bodies[k].text);
    sign_keys_free(&keys);
    return rc;
usage:
    fprintf(stderr, "usage: bench-canon [--size BYTES] [--rounds R] [--label TEXT]\n");
    return 2;
}
