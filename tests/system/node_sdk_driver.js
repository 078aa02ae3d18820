// node_sdk_driver.js -- runs PromptLayer's JS SDK (npm promptlayer, as
// installed from src/node's lockfile) with and without plcache attached, for
// tests/system/test_node.py.
//
//   node node_sdk_driver.js SRC_NODE_DIR
//
// Reads one JSON request a line on stdin and answers each, in order, with one
// JSON line on stdout: {"ok": true, "value": ...} or {"ok": false, "error":
// message}. Requests:
//   {"op": "init", "redis_url", "prefix", "api_key", "base_url", "retry_ms"}
//       makes the clients: "cached" (plcache attached, given an ioredis client
//       that reconnects after retry_ms), "cached_ttl" (created with
//       cacheTtlSeconds, plcache attached with the Redis URL), "plain" (the
//       SDK alone, PromptLayer renders), "sdk_ttl" (the SDK alone with its own
//       TTL cache: it renders the answer locally)
//   {"op": "get", "client", "name", "params"}   pl.templates.get(name, params)
//   {"op": "stats", "client"}                   the attach handle's stats()
//   {"op": "tamper", "how"}                     attach to a fresh client after
//       tampering with it as `how` says: {"error", "unchanged"} or
//       {"attached": true} (then detached)
//   {"op": "close"}                             detach, close, exit
"use strict";

const path = require("path");
const readline = require("readline");
const { createRequire } = require("module");

const nodeDir = path.resolve(process.argv[2]);
const req = createRequire(path.join(nodeDir, "package.json"));
const { PromptLayer } = req("promptlayer");
const Redis = req("ioredis");
const plcache = req(nodeDir);

const clients = {};
const handles = {};
let opts = null;
let redis = null;

function fresh(extra = {}) {
  return new PromptLayer({ apiKey: opts.api_key, baseURL: opts.base_url, ...extra });
}

const TAMPER = {
  // a method the plug relies on, gone or renamed
  delete_getWithCache: (pl) => { delete pl.templates._getWithCache; },
  delete_fetchNormal: (pl) => { delete pl.templates._fetchNormal; },
  rename_cache: (pl) => { pl.templates._cacheRenamed = pl.templates._cache; delete pl.templates._cache; },
  rename_get: (pl) => { pl.templates.fetch = pl.templates.get; delete pl.templates.get; },
  // get no longer reads the cache (as if a later SDK had moved it)
  get_skips_cache: (pl) => { const t = pl.templates; t.get = (n, p) => t._fetchNormal(n, p); },
  // the cache's shape
  cache_get_shape: (pl) => { pl.templates._cache.get = () => null; },
  cache_not_object: (pl) => { pl.templates._cache = 42; },
  // makeKey's output (the class is the SDK's, shared by every client: restored after)
  makekey_order: (pl) => {
    const cls = pl.templates._cache.constructor;
    const orig = cls.makeKey;
    cls.makeKey = (n, p) => [n, p?.label ?? null, p?.version ?? null, p?.provider ?? null, p?.model ?? null];
    return () => { cls.makeKey = orig; };
  },
  // renderResponse's output: _getWithCache answers the entry unrendered
  unrendered: (pl) => {
    const t = pl.templates;
    t._getWithCache = async (n, p) => {
      const key = [n, p?.version ?? null, p?.label ?? null, p?.provider ?? null, p?.model ?? null];
      t._cache.isNonRenderable(key);
      return t._cache.get(key)[0];
    };
  },
  none: () => {},
};

async function handle(r) {
  switch (r.op) {
    case "init": {
      opts = r;
      redis = new Redis(r.redis_url, { retryStrategy: () => r.retry_ms });
      clients.cached = fresh();
      handles.cached = await plcache.attach(clients.cached, { redis, prefix: r.prefix, onError: () => {} });
      clients.cached_ttl = fresh({ cacheTtlSeconds: 3600 });
      handles.cached_ttl = await plcache.attach(clients.cached_ttl,
        { redis: r.redis_url, prefix: r.prefix, onError: () => {} });
      clients.plain = fresh();
      clients.sdk_ttl = fresh({ cacheTtlSeconds: 3600 });
      return { cached: handles.cached.stats(), cached_ttl: handles.cached_ttl.stats() };
    }
    case "get":
      return clients[r.client].templates.get(r.name, r.params ?? undefined);
    case "stats":
      return handles[r.client].stats();
    case "tamper": {
      const ttl = r.how.startsWith("cache_") || r.how.startsWith("makekey");
      const pl = fresh(ttl ? { cacheTtlSeconds: 60 } : {});
      const tm = pl.templates;
      const restore = TAMPER[r.how](pl);
      const before = { ...tm };
      try {
        const h = await plcache.attach(pl, { redis: opts.redis_url, prefix: opts.prefix, onError: () => {} });
        await h.close();
        return { attached: true };
      } catch (err) {
        const after = { ...tm };
        const unchanged = Object.keys(before).length === Object.keys(after).length &&
          Object.keys(before).every((k) => before[k] === after[k]);
        return { error: err.message, unchanged };
      } finally {
        if (restore) restore();
      }
    }
    case "close":
      for (const h of Object.values(handles)) await h.close();
      await redis.quit();
      return true;
    default:
      throw new Error(`unknown op ${r.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on("line", (line) => {
  chain = chain.then(async () => {
    let r;
    let out;
    try {
      r = JSON.parse(line);
      out = { ok: true, value: (await handle(r)) ?? null };
    } catch (err) {
      out = { ok: false, error: err && err.message ? err.message : String(err) };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
    if (r && r.op === "close") process.exit(0);
  });
});
rl.on("close", () => chain.then(() => process.exit(0)));
