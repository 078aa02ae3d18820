/* cachew.c -- the one Lua write of a template's hash, and its arguments. */
#include "model/cachew.h"

#include <stdlib.h>
#include <string.h>

#include "model/keys.h"

/* KEYS[1] template hash, KEYS[2] id -> name hash, KEYS[3] the dropped names,
 * KEYS[4] (rename) the old hash, and last (when ARGV[5] is not "") a lease. ARGV[1] channel, ARGV[2]
 * name, ARGV[3] the template's id or "", ARGV[4] old name or "", ARGV[5] the
 * lease's token or "", then operations as triples (op, a, b); see cachew.h.
 *
 * The hash belongs to one template: when ARGV[3] names another id than the
 * hash's, the name now holds a new template and what is cached is dropped
 * before the operations (a template deleted and created again under its
 * name). Operations of an event ("event" T I first) act only on what the
 * event is about: the hash of template I, and a field whose last applied
 * event (the hash's field "at:<field>", PromptLayer's timestamp in
 * microseconds) is older than T; they record T there (as given: a Lua number
 * would be written with 14 digits, the microseconds lost), also when nothing is
 * left to change, so that an older event delivered later changes nothing.
 *
 * The lease is deleted first when it still holds the token, whatever the
 * operations do (the script is atomic: nobody sees it gone before the write).
 * A hash made by a write starts its gen at Redis' clock in microseconds, and a
 * dropped name (cached or not) is remembered in KEYS[3] for a day: a basis
 * read before a drop
 * (model/cachew.h, cachew_read_basis) never matches after it, even when the
 * name was made again since.
 *
 * Returns how many fields changed (-1: ifgen found another gen, nothing done). */
static const char cachew_script[] =
    "local function ver(v)\n"
    "  if not v then return nil end\n"
    "  local ok, o = pcall(cjson.decode, v)\n"
    "  if ok and type(o) == 'table' then return tonumber(o['version']) end\n"
    "  return nil\n"
    "end\n"
    "if ARGV[5] ~= '' and redis.call('GET', KEYS[#KEYS]) == ARGV[5] then\n"
    "  redis.call('DEL', KEYS[#KEYS])\n"
    "end\n"
    "local h, changed, dropped = KEYS[1], 0, false\n"
    "local function put(f, v)\n"
    "  if redis.call('HGET', h, f) ~= v then redis.call('HSET', h, f, v); changed = changed + 1 "
    "end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] .. string.format('%06d', t[2])\n"
    "local day_ago = (t[1] - 86400) .. string.format('%06d', t[2])\n"
    "local function drop(key, name)\n"
    "  local id = redis.call('HGET', key, 'id')\n"
    "  local n = redis.call('DEL', key)\n"
    "  if id and redis.call('HGET', KEYS[2], id) == name then redis.call('HDEL', KEYS[2], id) end\n"
    "  redis.call('ZADD', KEYS[3], now, name)\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', day_ago)\n"
    "  return n\n"
    "end\n"
    CACHEW_BASIS_LUA
    "local i = 6\n"
    "if ARGV[i] == 'ifgen' then\n"
    "  local b = ARGV[i + 1]\n"
    "  if b == '' then\n"
    "    if redis.call('HEXISTS', h, 'gen') == 1 then return -1 end\n"
    "  elseif basis(h, KEYS[3], ARGV[2]) ~= b then return -1 end\n"
    "  i = i + 3\n"
    "end\n"
    "local hid = redis.call('HGET', h, 'id')\n"
    "if ARGV[3] ~= '' and hid and hid ~= ARGV[3] then\n"
    "  changed = changed + drop(h, ARGV[2])\n"
    "end\n"
    "local ev_t, ev_at, ev_id = nil, nil, ''\n"
    "local function ours(key)\n"
    "  local id, want = redis.call('HGET', key, 'id'), ev_id ~= '' and ev_id or ARGV[3]\n"
    "  return not id or want == '' or id == want\n"
    "end\n"
    "local function newer(f)\n"
    "  if not ev_t or redis.call('EXISTS', h) == 0 or not ours(h) then return false end\n"
    "  local at = tonumber(redis.call('HGET', h, 'at:' .. f))\n"
    "  if at and at >= ev_t then return false end\n"
    "  redis.call('HSET', h, 'at:' .. f, ev_at)\n"
    "  return at ~= nil or redis.call('HEXISTS', h, f) == 0\n"
    "end\n"
    "for k = i, #ARGV, 3 do\n"
    "  local op, a, b = ARGV[k], ARGV[k + 1], ARGV[k + 2]\n"
    "  if op == 'event' then ev_t, ev_at, ev_id = tonumber(a), a, b\n"
    "  elseif op == 'set' then put(a, b)\n"
    "  elseif op == 'latest' then\n"
    "    local cv = ver(redis.call('HGET', h, 'latest'))\n"
    "    if cv == nil or tonumber(a) >= cv then put('latest', b) end\n"
    "  elseif op == 'del' then\n"
    "    if ours(h) then changed = changed + redis.call('HDEL', h, a) end\n"
    "  elseif op == 'copy' then\n"
    "    local v = redis.call('HGET', h, b)\n"
    "    if v then put(a, v) end\n"
    "  elseif op == 'evcopy' then\n"
    "    if newer(a) then\n"
    "      local v = redis.call('HGET', h, b)\n"
    "      if v then put(a, v) end\n"
    "    end\n"
    "  elseif op == 'evdel' then\n"
    "    if newer(a) then changed = changed + redis.call('HDEL', h, a) end\n"
    "  elseif op == 'holding' then\n"
    "    local n, all = tonumber(a), redis.call('HGETALL', h)\n"
    "    for j = 1, #all, 2 do\n"
    "      local f = all[j]\n"
    "      if (f == 'latest' or string.sub(f, 1, 6) == 'label:') and ver(all[j + 1]) == n then\n"
    "        put(f, b)\n"
    "      end\n"
    "    end\n"
    "    put('version:' .. a, b)\n"
    "  elseif (op == 'drop' or op == 'evdrop') and ours(h) then\n"
    "    changed = changed + drop(h, ARGV[2])\n"
    "    dropped = true\n"
    "  end\n"
    "end\n"
    "if ARGV[4] ~= '' and ours(KEYS[4]) and drop(KEYS[4], ARGV[4]) == 1 then\n"
    "  changed = changed + 1\n"
    "  redis.call('PUBLISH', ARGV[1], ARGV[4])\n"
    "end\n"
    "if not dropped and redis.call('EXISTS', h) == 1 then\n"
    "  if changed > 0 and redis.call('HINCRBY', h, 'gen', 1) == 1 then\n"
    "    redis.call('HSET', h, 'gen', now)\n"
    "  end\n"
    "  if ARGV[3] ~= '' then\n"
    "    redis.call('HSET', h, 'id', ARGV[3])\n"
    "    redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])\n"
    "  end\n"
    "end\n"
    "if changed > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end\n"
    "return changed\n";

/* KEYS[1] the template's hash, KEYS[2] the dropped names; ARGV[1] the name. */
static const char basis_script[] = CACHEW_BASIS_LUA "return basis(KEYS[1], KEYS[2], ARGV[1])\n";

/* Appends prefix + name + suffix as one argument. */
static void add_key(rargs *c, const char *prefix, const char *name, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(name) + (suffix ? strlen(suffix) : 0) + 1;
    char *key = malloc(n);
    if (key == NULL || keys_make(key, n, prefix, name, suffix) < 0)
        c->failed = 1;
    else
        rargs_adds(c, key);
    free(key);
}

void cachew_begin(rargs *c, const cachew_write *w)
{
    int lease = w->lease != NULL && w->token != NULL && w->token[0] != '\0';
    rargs_adds(c, "EVAL");
    rargs_add(c, cachew_script, sizeof(cachew_script) - 1);
    rargs_addll(c, 3 + (w->old_name != NULL) + lease);
    add_key(c, w->prefix, KEYS_PROMPT, w->name);
    add_key(c, w->prefix, KEYS_PROMPT_IDS, NULL);
    add_key(c, w->prefix, KEYS_PROMPT_GONE, NULL);
    if (w->old_name)
        add_key(c, w->prefix, KEYS_PROMPT, w->old_name);
    if (lease)
        rargs_adds(c, w->lease);
    add_key(c, w->prefix, KEYS_INVALIDATE, NULL);
    rargs_adds(c, w->name);
    if (w->id >= 0)
        rargs_addll(c, w->id);
    else
        rargs_adds(c, "");
    rargs_adds(c, w->old_name ? w->old_name : "");
    rargs_adds(c, lease ? w->token : "");
}

void cachew_op(rargs *c, const char *op, const char *a, size_t alen, const char *b,
               size_t blen)
{
    rargs_adds(c, op);
    rargs_add(c, a, alen);
    rargs_add(c, b, blen);
}

void cachew_read_basis(rargs *c, const char *prefix, const char *name)
{
    rargs_adds(c, "EVAL");
    rargs_add(c, basis_script, sizeof(basis_script) - 1);
    rargs_adds(c, "2");
    add_key(c, prefix, KEYS_PROMPT, name);
    add_key(c, prefix, KEYS_PROMPT_GONE, NULL);
    rargs_adds(c, name);
}
