/* lease.c -- read-through on a miss: the herd lease and the gen-checked fill.
 *
 * See lease.h for the protocol. The winner's steps, each one Redis command:
 * SET NX PX (the lease), the API fetch, then one script that fills (or not)
 * and releases. A waiter's loop, every POLL_MS: EXISTS lease, then HGET the
 * field, in that order, so a fill that lands between the two is still seen
 * (the field is written before the lease is deleted, in one script).
 */
#include "lib/lease.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/form.h"
#include "model/cachew.h"

#define POLL_MS 5

/* KEYS[1] the lease, ARGV[1] the token: deletes the lease when still ours. */
static const char release_text[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Sends argv (argc items, argv[0] and argv[1] filled here), written as
 * EVALSHA of s (loaded by SCRIPT LOAD on first use) and as EVAL of its text
 * when Redis lost the script. Scripts here write: never sent twice on a
 * broken connection. Returns the reply (the caller's) or NULL with c->rc.err
 * set. */
static redisReply *send_script(plcache *c, lib_script *s, int argc, const char **argv,
                               size_t *argvlen)
{
    if (s->sha[0] == '\0') {
        const char *load[] = {"SCRIPT", "LOAD", s->text};
        redisReply *r = sconn_command(&c->rc, 1, 3, load, NULL);
        if (r == NULL)
            return NULL;
        if (r->type == REDIS_REPLY_STRING && r->len < sizeof(s->sha))
            memcpy(s->sha, r->str, r->len + 1);
        freeReplyObject(r);
    }
    int sha = s->sha[0] != '\0';
    argv[0] = sha ? "EVALSHA" : "EVAL";
    argv[1] = sha ? s->sha : s->text;
    argvlen[0] = strlen(argv[0]);
    argvlen[1] = strlen(argv[1]);
    redisReply *r = sconn_command(&c->rc, 0, argc, argv, argvlen);
    if (r != NULL && is_noscript(r)) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = s->text;
        argvlen[0] = 4;
        argvlen[1] = strlen(s->text);
        r = sconn_command(&c->rc, 0, argc, argv, argvlen);
    }
    return r;
}

/* Runs script s with nkeys keys then args (argc C strings in all). */
static redisReply *run_script(plcache *c, lib_script *s, int nkeys, int argc, const char **argv)
{
    const char *a[8];
    size_t al[8];
    char nk[8];
    if (argc + 3 > 8)
        return NULL;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    a[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        a[3 + i] = argv[i];
        al[3 + i] = strlen(argv[i]);
    }
    return send_script(c, s, argc + 3, a, al);
}

/* Runs a template-hash write built by model/cachew: argv[0] "EVAL", argv[1]
 * its script (the text c->fill is loaded from; one text for every write).
 * Returns the reply (the caller's) or NULL with c->rc.err set. */
static redisReply *run_write(plcache *c, const rargs *w)
{
    const char **a = NULL;
    size_t *al = NULL;
    redisReply *r = NULL;
    if (!w->failed && w->argc >= 3) {
        a = malloc((size_t)w->argc * sizeof(*a));
        al = malloc((size_t)w->argc * sizeof(*al));
    }
    if (a == NULL || al == NULL) {
        snprintf(c->rc.err, sizeof(c->rc.err), "out of memory");
        goto done;
    }
    for (int i = 0; i < w->argc; i++) {
        a[i] = w->argv[i];
        al[i] = w->lens[i];
    }
    c->fill.text = w->argv[1];
    r = send_script(c, &c->fill, w->argc, a, al);
    c->fill.text = NULL; /* the text was w's; the sha stays */
done:
    free(a);
    free(al);
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
                                const char *lease, const char *token, char **json, size_t *len)
{
    api_answer ans;
    plcache_status st = fetch(c, name, sel, label, version, &ans);
    if (st != PLCACHE_OK) {
        const char *argv[] = {lease, token};
        redisReply *r = run_script(c, &c->release, 1, 2, argv);
        if (r != NULL)
            freeReplyObject(r);
        /* Without a release the lease just expires after lease_ms. */
        return st;
    }
    /* The one writer of a template's hash (model/cachew): set the field only
     * while gen is what the miss read, and release the lease. */
    char *end = NULL;
    long long id = ans.id[0] != '\0' ? strtoll(ans.id, &end, 10) : -1;
    if (end != NULL && (*end != '\0' || id == LLONG_MAX))
        id = -1;
    rargs w;
    rargs_init(&w);
    cachew_begin(&w, &(cachew_write){.prefix = c->prefix,
                                     .name = name,
                                     .id = id,
                                     .lease = lease,
                                     .token = token});
    const char *g = gen != NULL ? gen : "";
    cachew_op(&w, "ifgen", g, strlen(g), "", 0);
    cachew_op(&w, "set", field, strlen(field), ans.json, ans.len);
    redisReply *r = run_write(c, &w);
    rargs_free(&w);
    /* The caller gets what the API said even when the fill failed or lost:
     * that is the truth; only the cache is not updated. */
    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        if (r->integer >= 0)
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
        return as_winner(c, name, field, sel, label, version, gen, lease, token, json, len);
    return as_waiter(c, name, field, sel, label, version, hash, lease, json, len);
}

void lease_init(plcache *c)
{
    c->fill.text = NULL; /* set from the write itself (model/cachew) */
    c->fill.sha[0] = '\0';
    c->release.text = release_text;
    c->release.sha[0] = '\0';
}
