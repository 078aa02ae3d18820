/* apply_stream.c -- the applier's reading of pl:events: group, reads, claims, trim.
 *
 * The consumer group is made (XGROUP CREATE ... MKSTREAM) on the first tick
 * Redis is ready, and again when the stream was deleted. Entries are read
 * with XREADGROUP on the blocking connection while there is room for jobs;
 * entries another receiver left pending are claimed with XAUTOCLAIM, a long
 * pending list scanned a piece a tick; the entries this receiver works on
 * are touched (XCLAIM JUSTID) so they never look idle to others. Every
 * STREAM_EVERY_MS stream_script trims pl:events, and events that left it
 * before they were applied start a reconciliation (apply_resync.c). The tick
 * drives it all; the entries read become jobs in apply_job.c.
 */
#include "webhook/apply_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"

/* Keeps pl:events near its length without losing what a group has not read.
 * KEYS[1] the stream; ARGV[1] our group, ARGV[2] the target length, ARGV[3]
 * the hard cap. Entries every group has read (and acknowledged) beyond the
 * target are trimmed; past the hard cap (appliers far behind or stuck) the
 * oldest are trimmed whatever their state, and the entries our group had not
 * read yet are counted as lost, in the same atomic step so the count is
 * exact. A gap made by someone else (an XTRIM by hand, an older receiver that
 * trimmed on XADD) is found too, while the group has not read past it.
 * Returns {lost (-1: some, count unknown), trimmed}. */
static const char stream_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end\n"
    "local function map(t) local m = {} for i = 1, #t, 2 do m[t[i]] = t[i + 1] end return m end\n"
    "local function before(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "local len = redis.call('XLEN', KEYS[1])\n"
    "local floor, mine\n"
    "for _, raw in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local g = map(raw)\n"
    "  local need = g['last-delivered-id']\n"
    "  if g['pending'] > 0 then\n"
    "    local p = redis.call('XPENDING', KEYS[1], g['name'])\n"
    "    if before(p[2], need) then need = p[2] end\n"
    "  end\n"
    "  if floor == nil or before(need, floor) then floor = need end\n"
    "  if g['name'] == ARGV[1] then mine = g end\n"
    "end\n"
    "local trimmed = 0\n"
    "if len > tonumber(ARGV[3]) then\n"
    "  trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3], 'LIMIT', 0)\n"
    "elseif len > tonumber(ARGV[2]) then\n"
    "  if floor == nil then\n"
    "    trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])\n"
    "  else\n"
    "    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', len - "
    "tonumber(ARGV[2]))\n"
    "  end\n"
    "end\n"
    "if mine == nil then return {0, trimmed} end\n"
    "local last = mine['last-delivered-id']\n"
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"
    "if first ~= nil and not before(last, first[1]) then return {0, trimmed} end\n"
    "local s = map(redis.call('XINFO', 'STREAM', KEYS[1]))\n"
    "local gone = s['entries-added'] - s['length']\n"
    "local read = mine['entries-read']\n"
    "local lost = -1\n"
    "if last == s['last-generated-id'] then lost = 0\n"
    "elseif type(read) == 'number' then lost = gone - read end\n"
    "if read ~= gone then\n"
    "  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', gone)\n"
    "end\n"
    "if lost < 0 then lost = -1 end\n"
    "return {lost, trimmed}\n";

static void read_done(redisReply *r, void *priv)
{
    applier *a = priv;
    a->reading = 0;
    if (a->closing)
        return;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0)
        a->group_ready = a->group_asked = 0; /* the stream was deleted: make it again */
    else if (r && r->type == REDIS_REPLY_ARRAY) {
        /* [[key, [entries]]] */
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *s = r->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
                ajob_take_entries(a, s->element[1]);
        }
    }
    stream_read_more(a);
}

void stream_read_more(applier *a)
{
    if (a->reading || a->stopping || a->closing || !a->group_ready || !rconn_ready(a->block) ||
        a->njobs >= (size_t)a->max_jobs)
        return;
    char count[16], block[16];
    snprintf(count, sizeof(count), "%d", a->batch);
    snprintf(block, sizeof(block), "%d", BLOCK_MS);
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP,     a->consumer,   "COUNT", count,
                          "BLOCK",      block,   "STREAMS", a->events_key, ">"};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    if (rconn_argv(a->block, read_done, a, 11, argv, lens) == 0)
        a->reading = 1;
}

static void group_created(redisReply *r, void *priv)
{
    applier *a = priv;
    if (r && (r->type == REDIS_REPLY_STATUS ||
              (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0))) {
        a->group_ready = 1;
        stream_read_more(a);
    } else {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("cannot create the consumer group", "error", r->str);
        a->group_asked = 0; /* asked again at the next tick */
    }
}

/* Asks for the consumer group (and the stream); group_created takes the
 * answer. */
static void ask_group(applier *a)
{
    const char *argv[] = {"XGROUP", "CREATE", a->events_key, GROUP, "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    if (rconn_argv(a->redis, group_created, a, 6, argv, lens) == 0)
        a->group_asked = 1;
}

/* Events removed from pl:events before this group applied them cannot be
 * applied any more: say so, count them, and reconcile every cached template,
 * which repairs what they would have changed in the cache. n < 0: some, the
 * count unknown. */
static void events_lost(applier *a, long long n, const char *how)
{
    char c[24];
    a->gaps++;
    if (n > 0) {
        a->lost += (unsigned long)n;
        snprintf(c, sizeof(c), "%lld", n);
    } else
        snprintf(c, sizeof(c), "unknown");
    log_warn("events left pl:events before they were applied; reconciling every cached template",
             "count", c, "how", how);
    a->resync_due = 1;
}

static void stream_kept(redisReply *r, void *priv)
{
    applier *a = priv;
    a->stream_busy = 0;
    if (a->closing || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("cannot trim pl:events", "error", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return;
    if (r->element[1]->integer > 0)
        a->trimmed += (unsigned long)r->element[1]->integer;
    if (r->element[0]->integer != 0)
        events_lost(a, r->element[0]->integer, "trimmed unread");
}

static void keep_stream(applier *a)
{
    char target[24], cap[24];
    snprintf(target, sizeof(target), "%lld", a->events_maxlen);
    snprintf(cap, sizeof(cap), "%lld", a->events_maxlen * HARD_CAP_FACTOR);
    const char *argv[] = {"EVAL", stream_script, "1", a->events_key, GROUP, target, cap};
    size_t lens[] = {4,
                     sizeof(stream_script) - 1,
                     1,
                     strlen(a->events_key),
                     strlen(GROUP),
                     strlen(target),
                     strlen(cap)};
    if (rconn_argv(a->redis, stream_kept, a, 7, argv, lens) == 0)
        a->stream_busy = 1;
}

/* KEYS[1] the stream, KEYS[2] the dead-letter stream; ARGV[1] group,
 * ARGV[2] consumer, ARGV[3] idle ms, ARGV[4] from, ARGV[5] count, ARGV[6]
 * deliveries at most, ARGV[7] the dead stream's length. XAUTOCLAIM, then
 * each claimed entry delivered more than ARGV[6] times is given up in the
 * same step: copied to the dead-letter stream with why, and acknowledged, so
 * it no longer holds the trim floor nor comes back. Returns XAUTOCLAIM's
 * {cursor, entries kept, deleted ids} and the entries given up. */
static const char claim_script[] =
    "local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', "
    "ARGV[5])\n"
    "local keep, dead = {}, {}\n"
    "for _, e in ipairs(r[2]) do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)[1]\n"
    "  local n = p and p[4] or 0\n"
    "  if n > tonumber(ARGV[6]) then\n"
    "    local f, t, payload, at = e[2], '', '', ''\n"
    "    for i = 1, #f, 2 do\n"
    "      if f[i] == 'type' then t = f[i + 1]\n"
    "      elseif f[i] == 'payload' then payload = f[i + 1]\n"
    "      elseif f[i] == 'received_at' then at = f[i + 1] end\n"
    "    end\n"
    "    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'id', e[1], 'type', t,\n"
    "               'payload', payload, 'received_at', at, 'deliveries', n,\n"
    "               'reason', 'not applied after ' .. n .. ' deliveries (the receivers log why)')\n"
    "    redis.call('XACK', KEYS[1], ARGV[1], e[1])\n"
    "    dead[#dead + 1] = e\n"
    "  else\n"
    "    keep[#keep + 1] = e\n"
    "  end\n"
    "end\n"
    "return {r[1], keep, r[3] or {}, dead}\n";

/* The events claim_script gave up: said, counted, their templates
 * reconciled (the cache then holds what the API says, whatever they were). */
static void given_up(applier *a, redisReply *dead)
{
    for (size_t i = 0; i < dead->elements; i++) {
        redisReply *e = dead->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        a->given_up++;
        plan p = {.kind = PLAN_INVALID};
        const char *type = "", *payload = NULL;
        size_t plen = 0;
        redisReply *f = e->element[1];
        for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            if (f->element[k]->type != REDIS_REPLY_STRING ||
                f->element[k + 1]->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(f->element[k]->str, "type") == 0)
                type = f->element[k + 1]->str;
            else if (strcmp(f->element[k]->str, "payload") == 0) {
                payload = f->element[k + 1]->str;
                plen = f->element[k + 1]->len;
            }
        }
        log_error("event given up after too many deliveries: moved to the dead-letter stream",
                  "id", e->element[0]->str, "type", type);
        char err[128];
        if (payload == NULL || plan_from_event(type, payload, plen, &p, err, sizeof(err)) != 0)
            continue;
        if (p.name != NULL)
            resync_template(a, p.name);
        if (p.old_name != NULL)
            resync_template(a, p.old_name);
        plan_free(&p);
    }
}

static void claimed(redisReply *r, void *priv)
{
    applier *a = priv;
    if (a->closing || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    if (r->elements >= 4 && r->element[3]->type == REDIS_REPLY_ARRAY)
        given_up(a, r->element[3]);
    /* Redis 7: the third element lists pending entries that no longer exist
     * (trimmed while a stopped receiver held them); they are gone from the
     * group now, and their events with them. */
    if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY && r->element[2]->elements > 0)
        events_lost(a, (long long)r->element[2]->elements, "pending entry trimmed");
    redisReply *cur = r->element[0];
    if (cur->type == REDIS_REPLY_STRING && cur->len > 0 && cur->len < sizeof(a->claim_from)) {
        memcpy(a->claim_from, cur->str, cur->len);
        a->claim_from[cur->len] = '\0';
    } else {
        snprintf(a->claim_from, sizeof(a->claim_from), "0-0");
    }
    size_t before = a->njobs;
    ajob_take_entries(a, r->element[1]);
    if (a->njobs > before) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", a->njobs - before);
        a->claimed += a->njobs - before;
        log_info("claimed events left pending by a stopped receiver", "count", n);
    }
}

/* Claims entries left idle by other receivers, while there is room for jobs.
 * A scan under way goes on at the next tick; a new one starts every half
 * idle time. */
static void claim_idle(applier *a, int64_t now)
{
    int scanning = strcmp(a->claim_from, "0-0") != 0;
    if ((scanning || now - a->last_claim_ms >= a->claim_idle_ms / 2) &&
        a->njobs < (size_t)a->max_jobs) {
        char idle[32], count[16], most[16], keep[16];
        snprintf(idle, sizeof(idle), "%ld", a->claim_idle_ms);
        snprintf(count, sizeof(count), "%d", a->batch);
        snprintf(most, sizeof(most), "%d", MAX_DELIVERIES);
        snprintf(keep, sizeof(keep), "%d", DEAD_EVENTS_MAXLEN);
        const char *argv[] = {"EVAL", claim_script, "2",   a->events_key, a->dead_key, GROUP,
                              a->consumer, idle, a->claim_from, count, most, keep};
        size_t lens[12];
        for (int i = 0; i < 12; i++)
            lens[i] = strlen(argv[i]);
        rconn_argv(a->redis, claimed, a, 12, argv, lens);
        a->last_claim_ms = now;
    }
}

static void pending_counted(redisReply *r, void *priv)
{
    applier *a = priv;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        a->pending = r->element[0]->integer;
        /* The oldest pending entry's id starts with when it was recorded. */
        redisReply *first = r->element[1];
        a->oldest_pending_ms =
            first->type == REDIS_REPLY_STRING ? strtoll(first->str, NULL, 10) : 0;
    }
}

/* Asks for the group's pending count and oldest entry (XPENDING), gauges of
 * the metrics. */
static void count_pending(applier *a)
{
    const char *argv[] = {"XPENDING", a->events_key, GROUP};
    size_t lens[] = {8, strlen(a->events_key), strlen(GROUP)};
    rconn_argv(a->redis, pending_counted, a, 3, argv, lens);
}

/* KEYS[1] the stream; ARGV[1] our group, ARGV[2] idle ms, ARGV[3] our
 * consumer. Removes the group's consumers other than ours that hold nothing
 * (no pending entry) and were idle that long: the receivers that stopped or
 * restarted under another name. In one script, so none is removed between
 * reading its pending count and deleting it. Returns how many went. */
static const char sweep_script[] =
    "local n = 0\n"
    "for _, raw in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local c = {}\n"
    "  for i = 1, #raw, 2 do c[raw[i]] = raw[i + 1] end\n"
    "  if c['name'] ~= ARGV[3] and c['pending'] == 0 and c['idle'] >= tonumber(ARGV[2]) then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c['name'])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static void swept(redisReply *r, void *priv)
{
    applier *a = priv;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        a->consumers_removed += (unsigned long)r->integer;
        char n[24];
        snprintf(n, sizeof(n), "%lld", r->integer);
        log_info("idle consumers holding nothing removed from the group", "count", n);
    }
}

/* Removes the consumers left by receivers that are gone (sweep_script). */
static void sweep_consumers(applier *a)
{
    char idle[24];
    snprintf(idle, sizeof(idle), "%ld", a->claim_idle_ms * CONSUMER_IDLE_FACTOR);
    const char *argv[] = {"EVAL", sweep_script, "1", a->events_key, GROUP, idle, a->consumer};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    rconn_argv(a->redis, swept, a, 7, argv, lens);
}

static void ignore_reply(redisReply *r, void *priv)
{
    (void)r;
    (void)priv;
}

/* Keeps the entries this receiver works on from looking idle to others. */
static void touch_jobs(applier *a)
{
    rargs c;
    rargs_init(&c);
    rargs_adds(&c, "XCLAIM");
    rargs_adds(&c, a->events_key);
    rargs_adds(&c, GROUP);
    rargs_adds(&c, a->consumer);
    rargs_adds(&c, "0");
    int n = 0;
    for (job *j = a->jobs; j; j = j->next)
        if (j->sid[0]) {
            rargs_adds(&c, j->sid);
            n++;
        }
    rargs_adds(&c, "JUSTID");
    if (n > 0)
        rconn_send(a->redis, ignore_reply, a, &c);
    rargs_free(&c);
}

void stream_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    applier *a = arg;
    int64_t now = time_now_ms();
    if (!a->closing && rconn_ready(a->redis)) {
        if (!a->group_ready && !a->group_asked)
            ask_group(a);
        if (a->group_ready && !a->stopping) {
            claim_idle(a, now);
            if (now - a->last_touch_ms >= a->claim_idle_ms / 3) {
                touch_jobs(a);
                a->last_touch_ms = now;
            }
            if (now - a->last_stream_ms >= STREAM_EVERY_MS && !a->stream_busy) {
                keep_stream(a);
                a->last_stream_ms = now;
            }
            if (now - a->last_pending_ms >= PENDING_EVERY_MS) {
                count_pending(a);
                sweep_consumers(a);
                a->last_pending_ms = now;
            }
            if (a->resync_due && !a->resync_running)
                resync_begin(a);
        }
        stream_read_more(a);
    }
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(a->tick, &tv);
}
