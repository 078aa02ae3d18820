/* lease.c -- read-through on a miss: the herd lease and the gen-checked fill.
 *
 * See lease.h for the protocol. The winner's steps, each one Redis command:
 * SET NX PX (the lease), the API fetch, then one script that fills (or not)
 * and releases. A waiter's loop, every POLL_MS: EXISTS lease, then HGET the
 * field, in that order, so a fill that lands between the two is still seen
 * (the field is written before the lease is deleted, in one script).
 */
#include "lib/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/form.h"

#define POLL_MS 5

/* KEYS[1] the template hash, KEYS[2] id -> name, KEYS[3] the lease.
 * ARGV[1] gen read at the miss ("" = absent), ARGV[2] field, ARGV[3] JSON,
 * ARGV[4] id or "", ARGV[5] channel, ARGV[6] name, ARGV[7] lease token.
 * Returns 1 when written, 0 when a newer write won. */
static const char fill_text[] =
    "local w = 0\n"
    "if (redis.call('HGET', KEYS[1], 'gen') or '') == ARGV[1] then\n"
    "  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
    "  redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
    "  if ARGV[4] ~= '' then\n"
    "    redis.call('HSET', KEYS[1], 'id', ARGV[4])\n"
    "    redis.call('HSET', KEYS[2], ARGV[4], ARGV[6])\n"
    "  end\n"
    "  redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
    "  w = 1\n"
    "end\n"
    "if redis.call('GET', KEYS[3]) == ARGV[7] then redis.call('DEL', KEYS[3]) end\n"
    "return w\n";

/* KEYS[1] the lease, ARGV[1] the token: deletes the lease when still ours. */
static const char release_text[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Runs script s with nkeys keys then args (argc items in all): EVALSHA, with
 * SCRIPT LOAD on first use and EVAL when Redis lost the script. Returns the
 * reply (the caller's) or NULL with c->rc.err set. */
static redisReply *run_script(plcache *c, lib_script *s, int nkeys, int argc, const char **argv,
                              const size_t *argvlen)
{
    const char *a[16];
    size_t al[16];
    char nk[8];
    if (argc + 3 > 16)
        return NULL;
    if (s->sha[0] == '\0') {
        const char *load[] = {"SCRIPT", "LOAD", s->text};
        redisReply *r = sconn_command(&c->rc, 1, 3, load, NULL);
        if (r == NULL)
            return NULL;
        if (r->type == REDIS_REPLY_STRING && r->len < sizeof(s->sha))
            memcpy(s->sha, r->str, r->len + 1);
        freeReplyObject(r);
    }
    snprintf(nk, sizeof(nk), "%d", nkeys);
    a[0] = s->sha[0] != '\0' ? "EVALSHA" : "EVAL";
    a[1] = s->sha[0] != '\0' ? s->sha : s->text;
    a[2] = nk;
    al[0] = strlen(a[0]);
    al[1] = strlen(a[1]);
    al[2] = strlen(a[2]);
    for (int i = 0; i < argc; i++) {
        a[3 + i] = argv[i];
        al[3 + i] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
    }
    /* Scripts here write: never sent twice on a broken connection. */
    redisReply *r = sconn_command(&c->rc, 0, argc + 3, a, al);
    if (r != NULL && is_noscript(r)) {
        freeReplyObject(r);
        a[0] = "EVAL";
        a[1] = s->text;
        al[0] = 4;
        al[1] = strlen(s->text);
        r = sconn_command(&c->rc, 0, argc + 3, a, al);
    }
    return r;
}

/* 32 hex digits from the kernel's random source (a clock-and-address mix if
 * that fails: a token only needs to differ between clients). */
static void new_token(char out[33])
{
    unsigned char raw[16];
    ssize_t got = getrandom(raw, sizeof(raw), GRND_NONBLOCK);
    if (got != (ssize_t)sizeof(raw)) {
        uint64_t x = (uint64_t)lib_now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof(raw); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            raw[i] = (unsigned char)x;
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
}

/* Asks the API; counts the fetch and turns failures into c's errstr. */
static plcache_status fetch(plcache *c, const char *name, plcache_select sel, const char *label,
                            long long version, api_answer *ans)
{
    char err[256];
    c->st.api_fetches++;
    plcache_status st = api_fetch(c->api, name, sel, label, version, ans, err, sizeof(err));
    if (st != PLCACHE_OK)
        return lib_fail(c, st, "%s", err);
    return PLCACHE_OK;
}

static plcache_status give(plcache *c, api_answer *ans, char **json, size_t *len)
{
    *json = ans->json;
    if (len != NULL)
        *len = ans->len;
    ans->json = NULL;
    c->errstr[0] = '\0';
    return PLCACHE_OK;
}

/* The lease holder: fetch, then fill with the gen check and release. */
static plcache_status as_winner(plcache *c, const char *name, const char *field, plcache_select sel,
                                const char *label, long long version, const char *gen,
                                const char *hash, const char *lease, const char *token, char **json,
                                size_t *len)
{
    char ids[FORM_KEY_SIZE], chan[FORM_KEY_SIZE];
    form_key(ids, sizeof(ids), c->prefix, KEYS_PROMPT_IDS, "", NULL);
    form_key(chan, sizeof(chan), c->prefix, KEYS_INVALIDATE, "", NULL);
    api_answer ans;
    plcache_status st = fetch(c, name, sel, label, version, &ans);
    if (st != PLCACHE_OK) {
        const char *argv[] = {lease, token};
        redisReply *r = run_script(c, &c->release, 1, 2, argv, NULL);
        if (r != NULL)
            freeReplyObject(r);
        /* Without a release the lease just expires after lease_ms. */
        return st;
    }
    const char *argv[] = {hash, ids,  lease, gen != NULL ? gen : "", field, ans.json, ans.id,
                          chan, name, token};
    size_t argvlen[10];
    for (size_t i = 0; i < 10; i++)
        argvlen[i] = i == 5 ? ans.len : strlen(argv[i]);
    redisReply *r = run_script(c, &c->fill, 3, 10, argv, argvlen);
    /* The caller gets what the API said even when the fill failed or lost:
     * that is the truth; only the cache is not updated. */
    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        if (r->integer == 1)
            c->st.fills++;
        else
            c->st.fills_refused++;
    }
    if (r != NULL)
        freeReplyObject(r);
    return give(c, &ans, json, len);
}

/* A waiter: poll for the winner's fill; fall back to the API (no write). */
static plcache_status as_waiter(plcache *c, const char *name, const char *field, plcache_select sel,
                                const char *label, long long version, const char *hash,
                                const char *lease, char **json, size_t *len)
{
    int64_t deadline = lib_now_us() + (int64_t)c->o.lease_wait_ms * 1000;
    c->st.lease_waits++;
    for (;;) {
        lib_sleep_ms(POLL_MS);
        const char *ex[] = {"EXISTS", lease};
        redisReply *r = sconn_command(&c->rc, 1, 2, ex, NULL);
        if (r == NULL)
            return lib_fail(c, PLCACHE_E_REDIS, "%s", c->rc.err);
        int held = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
        freeReplyObject(r);
        const char *hg[] = {"HGET", hash, field};
        r = sconn_command(&c->rc, 1, 3, hg, NULL);
        if (r == NULL)
            return lib_fail(c, PLCACHE_E_REDIS, "%s", c->rc.err);
        if (r->type == REDIS_REPLY_STRING) {
            char *copy = malloc(r->len + 1);
            if (copy == NULL) {
                freeReplyObject(r);
                return lib_fail(c, PLCACHE_E_NOMEM, "out of memory");
            }
            memcpy(copy, r->str, r->len);
            copy[r->len] = '\0';
            *json = copy;
            if (len != NULL)
                *len = r->len;
            freeReplyObject(r);
            c->st.lease_wait_hits++;
            c->errstr[0] = '\0';
            return PLCACHE_OK;
        }
        freeReplyObject(r);
        if (!held || lib_now_us() >= deadline)
            break;
    }
    api_answer ans;
    plcache_status st = fetch(c, name, sel, label, version, &ans);
    if (st != PLCACHE_OK)
        return st;
    return give(c, &ans, json, len);
}

plcache_status lease_read_through(plcache *c, const char *name, const char *field,
                                  plcache_select sel, const char *label, long long version,
                                  const char *gen, char **json, size_t *len)
{
    char hash[FORM_KEY_SIZE], lease[FORM_KEY_SIZE];
    if (form_key(hash, sizeof(hash), c->prefix, KEYS_PROMPT, name, NULL) < 0 ||
        form_key(lease, sizeof(lease), c->prefix, KEYS_LEASE, name, field) < 0)
        return lib_fail(c, PLCACHE_E_ARG, "name too long");
    char token[33], px[24];
    new_token(token);
    snprintf(px, sizeof(px), "%d", c->o.lease_ms);
    const char *set[] = {"SET", lease, token, "NX", "PX", px};
    /* SET NX is safe to send again: a retry after a lost answer at worst finds
     * its own lease taken and waits for nobody until lease_wait_ms. */
    redisReply *r = sconn_command(&c->rc, 1, 6, set, NULL);
    if (r == NULL)
        return lib_fail(c, PLCACHE_E_REDIS, "%s", c->rc.err);
    if (r->type == REDIS_REPLY_ERROR) {
        plcache_status st = lib_fail(c, PLCACHE_E_REDIS, "redis: SET lease: %.160s", r->str);
        freeReplyObject(r);
        return st;
    }
    int won = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (won)
        return as_winner(c, name, field, sel, label, version, gen, hash, lease, token, json, len);
    return as_waiter(c, name, field, sel, label, version, hash, lease, json, len);
}

void lease_init(plcache *c)
{
    c->fill.text = fill_text;
    c->fill.sha[0] = '\0';
    c->release.text = release_text;
    c->release.sha[0] = '\0';
}
