// sdk.js -- PromptLayer's own JS SDK (npm `promptlayer` 1.3.x), answered from
// plcache's Redis.
//
//   const plcache = require("plcache");
//   const pl = new PromptLayer({ apiKey });
//   const cache = await plcache.attach(pl, { redis: "redis://127.0.0.1:6379/0", prefix: "pl:" });
//   const p = await pl.templates.get("Hello", { label: "prod", input_variables: { name: "Ada" } });
//
// What plcache holds (DESIGN.md section 4): one hash per template,
// `<prefix>prompt:<name>`, whose fields `label:<l>`, `version:<n>` and
// `latest` are each the JSON of PromptLayer's raw GET with
// include_llm_kwargs=true (the unrendered prompt_template and llm_kwargs);
// `<prefix>invalidate` carries a template's name after every change to its
// hash. This module keeps, per process, a copy of the hashes it has read
// (each read whole, with one HGETALL), drops a template's copy when its name
// is published, and drops every copy while the subscription is not confirmed
// (libplcache's memory cache does the same: src/lib/memcache.h, sub.c).
//
// How it plugs in. TemplateManager.get (an own property of `pl.templates`)
// sends a cacheable request to `_getWithCache`, which asks its cache,
// synchronously, `isNonRenderable(key)` then `get(key)` with
// key = PromptTemplateCache.makeKey(name, params) = [name, version, label,
// provider, model], and answers a fresh entry with the SDK's own
// renderResponse(entry, input_variables). attach() replaces `pl.templates.get`
// by a function that first makes sure the template's hash is in memory
// (awaiting Redis when it is not), then hands the entry to the SDK through
// `pl.templates._cache`, replaced by a view that answers exactly that one key
// for exactly that one call: the rendering is the SDK's. Everything else (a
// template or selector plcache does not hold, a provider or model override,
// metadata_filters, model_parameter_overrides, Redis unreachable) goes the
// way the SDK would have gone without plcache, with the client's own TTL
// cache when it was created with cacheTtlSeconds > 0.
//
// attach() checks those internals before it changes anything, and runs the
// SDK once over a probe entry (no network: the probe's cache answers every
// key, and `_fetchNormal` is a trap meanwhile); a client that does not behave
// exactly as promptlayer 1.3.x does is refused with an Error naming what
// differs.
"use strict";

const ATTACHED = Symbol.for("plcache.sdk.attached");
const CACHE_METHODS = ["get", "put", "isNonRenderable", "markNonRenderable", "invalidate", "clear"];
// Request parameters plcache answers; any other parameter with a value makes
// the get a miss (provider, model, metadata_filters, model_parameter_overrides,
// workspace_id, and whatever a later SDK adds).
const SERVED_PARAMS = new Set(["version", "label", "input_variables"]);
const PING_IDLE_MS = 1000;

function attachError(what) {
  return new Error(`plcache.attach: ${what}. plcache plugs into promptlayer 1.3.x ` +
    "(src/node/package.json pins the version it is tested with); nothing was changed on this client");
}

function isObject(v) {
  return v !== null && typeof v === "object";
}

function own(o, k) {
  return Object.prototype.hasOwnProperty.call(o, k);
}

// -- which field of the hash answers a get ---------------------------------

// The hash field that answers get(name, params), or null when plcache does not
// answer it (the get is a miss whatever Redis holds).
function fieldFor(name, params) {
  if (typeof name !== "string" || name === "") return null;
  if (params === undefined || params === null) return "latest";
  if (!isObject(params) || Array.isArray(params)) return null;
  for (const k of Object.keys(params)) {
    if (!SERVED_PARAMS.has(k) && params[k] !== undefined && params[k] !== null) return null;
  }
  const { version, label } = params;
  const hasVersion = version !== undefined && version !== null;
  const hasLabel = label !== undefined && label !== null;
  if (hasVersion && hasLabel) return null; // the API refuses both (400)
  if (hasVersion) return Number.isSafeInteger(version) && version > 0 ? `version:${version}` : null;
  if (hasLabel) return typeof label === "string" && label !== "" ? `label:${label}` : null;
  return "latest";
}

// The key _getWithCache asks its cache for, serialized as the SDK's cache
// serializes it (JSON of makeKey's tuple): checked by attach's probe.
function keyFor(name, params) {
  return JSON.stringify([name, params?.version ?? null, params?.label ?? null, null, null]);
}

// The entry parsed from its JSON text, when the SDK may render it locally and
// the result is what the SDK would answer; otherwise null (a miss).
function servable(text) {
  let e;
  try {
    e = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(e) || Array.isArray(e)) return null;
  const pt = e.prompt_template;
  if (!isObject(pt)) return null;
  // The SDK's isLocallyRenderable: placeholder messages and variable tools
  // are rendered by PromptLayer only.
  if (pt.type === "chat" && Array.isArray(pt.messages) &&
      pt.messages.some((m) => isObject(m) && m.role === "placeholder")) return null;
  if (Array.isArray(pt.tools) && pt.tools.some((t) => isObject(t) && t.type === "variable")) return null;
  // Cached without llm_kwargs (the API refused include_llm_kwargs, or
  // PLCACHE_LLM_KWARGS=false) while the template names a model: the SDK's own
  // request would have them, so PromptLayer answers this one.
  if ((e.llm_kwargs === null || e.llm_kwargs === undefined) && isObject(e.metadata) &&
      isObject(e.metadata.model)) return null;
  return e;
}

// -- the process's copy of plcache's hashes ----------------------------------

// name -> the template's fields ({field: JSON text}; empty when Redis holds no
// hash for it), least recently used first. `usable` is false until the
// subscription is confirmed and from the moment it drops (everything is
// dropped then, and nothing is kept meanwhile).
class Mirror {
  constructor(maxTemplates) {
    this.max = maxTemplates;
    this.map = new Map();
    this.usable = false;
  }

  lookup(name) {
    if (!this.usable) return undefined;
    const fields = this.map.get(name);
    if (fields !== undefined) {
      this.map.delete(name);
      this.map.set(name, fields);
    }
    return fields;
  }

  put(name, fields) {
    if (!this.usable) return false;
    this.map.delete(name);
    while (this.map.size >= this.max) this.map.delete(this.map.keys().next().value);
    this.map.set(name, fields);
    return true;
  }

  setUsable(usable) {
    this.usable = usable;
    if (!usable) this.map.clear();
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from Redis in ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Redis: reads (HGETALL) on `client`, the invalidation channel on `sub`, a
// connection of its own.
class Store {
  constructor({ client, sub, ownClient, prefix, timeoutMs, maxTemplates, report, pingIdleMs = PING_IDLE_MS }) {
    this.client = client;
    this.sub = sub;
    this.ownClient = ownClient;
    this.prefix = prefix;
    this.channel = Buffer.from(`${prefix}invalidate`);
    this.timeoutMs = timeoutMs;
    this.report = report;
    this.mirror = new Mirror(maxTemplates);
    // name -> the HGETALL under way: {promise, valid}. A load keeps what it
    // read only while valid: a message for its name, a clear and every
    // change of the subscription's state make it invalid, so a change
    // published after Redis answered it (or before the subscription was
    // confirmed) is never hidden by it.
    this.inflight = new Map();
    this.session = 0;
    this.lastIn = 0;
    this.pinging = false;
    this.closed = false;
    this.waiters = [];
    this.stats = { hits: 0, misses: 0, loads: 0, invalidations: 0, drops: 0, bypassed: 0 };

    sub.on("ready", () => this.subscribe());
    sub.on("close", () => this.down());
    sub.on("error", (err) => this.report(new Error(`plcache: subscription: ${err.message}`)));
    sub.on("messageBuffer", (channel, message) => this.onMessage(channel, message));
    this.pingIdleMs = pingIdleMs;
    this.timer = setInterval(() => this.ping(), pingIdleMs);
    this.timer.unref();
    if (sub.status === "ready") this.subscribe();
  }

  subscribe() {
    const session = ++this.session;
    this.sub.subscribe(this.channel.toString()).then(() => {
      if (this.closed || session !== this.session || this.sub.status !== "ready") return;
      this.lastIn = Date.now();
      this.forgetLoads();
      this.mirror.setUsable(true);
      for (const w of this.waiters.splice(0)) w();
    }, (err) => {
      if (this.closed || session !== this.session) return;
      this.report(new Error(`plcache: SUBSCRIBE ${this.channel}: ${err.message}`));
      this.sub.disconnect(true);
    });
  }

  // Whatever ended the subscription, memory can no longer be trusted.
  down() {
    this.session++;
    if (this.mirror.usable) this.stats.drops++;
    this.mirror.setUsable(false);
    this.forgetLoads();
  }

  forgetLoads() {
    for (const load of this.inflight.values()) load.valid = false;
    this.inflight.clear();
  }

  onMessage(channel, message) {
    this.lastIn = Date.now();
    if (!this.channel.equals(channel)) return;
    this.stats.invalidations++;
    const name = message.toString("utf8");
    if (Buffer.from(name, "utf8").equals(message)) {
      this.drop(name);
    } else {
      this.dropAll(); // not UTF-8: no name this process can hold, but be exact anyway
    }
  }

  // Liveness, as libplcache's listener: a PING when the line was quiet for a
  // second; no PONG within the timeout ends the subscription.
  ping() {
    if (this.closed || !this.mirror.usable || this.pinging) return;
    if (Date.now() - this.lastIn < this.pingIdleMs) return;
    const session = this.session;
    this.pinging = true;
    withTimeout(this.sub.ping(), this.timeoutMs, "PING").then(() => {
      this.lastIn = Date.now();
    }, (err) => {
      if (this.closed || session !== this.session) return;
      this.report(new Error(`plcache: subscription: ${err.message}`));
      this.down();
      this.sub.disconnect(true);
    }).finally(() => {
      this.pinging = false;
    });
  }

  // Resolves when the subscription is confirmed or after ms.
  whenUsable(ms) {
    if (this.mirror.usable) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  // The JSON text of (name, field), or null: Redis does not hold it, or
  // cannot be read.
  async read(name, field) {
    let fields = this.mirror.lookup(name);
    if (fields === undefined) {
      let load = this.inflight.get(name);
      if (load === undefined) {
        load = { valid: true, promise: null };
        this.inflight.set(name, load);
        load.promise = this.load(name, load);
      }
      fields = await load.promise;
      if (fields === null) return null;
    }
    return own(fields, field) ? fields[field] : null;
  }

  async load(name, load) {
    let fields;
    try {
      fields = await withTimeout(this.client.hgetall(`${this.prefix}prompt:${name}`), this.timeoutMs,
        "HGETALL");
    } catch (err) {
      this.report(new Error(`plcache: reading ${this.prefix}prompt:${name}: ${err.message}`));
      fields = null;
    }
    if (this.inflight.get(name) === load) this.inflight.delete(name);
    if (fields === null) return null;
    this.stats.loads++;
    const copy = Object.create(null);
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (k.startsWith("label:") || k.startsWith("version:") || k === "latest") copy[k] = v;
    }
    if (load.valid) this.mirror.put(name, copy);
    return copy;
  }

  drop(name) {
    this.mirror.map.delete(name);
    const load = this.inflight.get(name);
    if (load !== undefined) {
      load.valid = false;
      this.inflight.delete(name);
    }
  }

  dropAll() {
    this.mirror.map.clear();
    this.forgetLoads();
  }

  async close() {
    this.closed = true;
    clearInterval(this.timer);
    this.session++;
    this.mirror.setUsable(false);
    this.forgetLoads();
    this.sub.removeAllListeners("ready");
    this.sub.removeAllListeners("close");
    this.sub.removeAllListeners("messageBuffer");
    this.sub.on("error", () => {});
    this.sub.disconnect();
    if (this.ownClient) {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    }
  }
}

// -- what the SDK sees as its cache ----------------------------------------

// Answers the one key it was armed with, once, synchronously, inside one call
// of the SDK's get; passes everything else to the client's own cache (or
// answers as an absent one would). The SDK's invalidate/clear/publish also
// drop plcache's copy of the template (it is read again from Redis).
class CacheView {
  constructor(sdkCache, store) {
    this.sdk = sdkCache;
    this.store = store;
    this.armed = null;
  }

  arm(key, entry) {
    this.armed = { key, entry, used: false };
  }

  disarm() {
    const a = this.armed;
    this.armed = null;
    return a !== null && a.used;
  }

  matches(key) {
    const a = this.armed;
    return a !== null && !a.used && JSON.stringify(key) === a.key;
  }

  isNonRenderable(key) {
    if (this.matches(key)) return false;
    return this.sdk ? this.sdk.isNonRenderable(key) : false;
  }

  get(key) {
    if (this.matches(key)) {
      this.armed.used = true;
      return [this.armed.entry, true];
    }
    return this.sdk ? this.sdk.get(key) : [null, false];
  }

  put(key, response) {
    if (this.sdk) this.sdk.put(key, response);
  }

  markNonRenderable(key) {
    if (this.sdk) this.sdk.markNonRenderable(key);
  }

  invalidate(name) {
    this.store.drop(name);
    if (this.sdk) this.sdk.invalidate(name);
  }

  clear() {
    this.store.dropAll();
    if (this.sdk) this.sdk.clear();
  }
}

// -- attach's checks ----------------------------------------------------------

function checkClient(pl) {
  if (!isObject(pl)) throw attachError("the first argument is not a PromptLayer client");
  const tm = pl.templates;
  if (!isObject(tm)) throw attachError("the client has no `templates` (TemplateManager)");
  if (tm[ATTACHED]) throw attachError("plcache is already attached to this client");
  for (const k of ["get", "_getWithCache", "_fetchNormal"]) {
    if (!own(tm, k)) throw attachError(`pl.templates.${k} is missing`);
    if (typeof tm[k] !== "function") throw attachError(`pl.templates.${k} is not a function`);
  }
  if (!own(tm, "_cache")) throw attachError("pl.templates._cache is missing");
  const sdkCache = tm._cache;
  if (sdkCache !== null) {
    if (!isObject(sdkCache)) throw attachError("pl.templates._cache is neither null nor a cache");
    for (const m of CACHE_METHODS) {
      if (typeof sdkCache[m] !== "function") throw attachError(`pl.templates._cache.${m} is not a function`);
    }
    const makeKey = sdkCache.constructor?.makeKey;
    if (typeof makeKey !== "function") throw attachError("PromptTemplateCache.makeKey is missing");
    const cases = [
      [undefined, ["n", null, null, null, null]],
      [{ label: "l", input_variables: { a: 1 } }, ["n", null, "l", null, null]],
      [{ version: 3 }, ["n", 3, null, null, null]],
      [{ version: 2, label: "l", provider: "p", model: "m" }, ["n", 2, "l", "p", "m"]],
    ];
    for (const [params, want] of cases) {
      let got;
      try {
        got = makeKey.call(sdkCache.constructor, "n", params);
      } catch (err) {
        throw attachError(`PromptTemplateCache.makeKey threw: ${err.message}`);
      }
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw attachError(`PromptTemplateCache.makeKey("n", ${JSON.stringify(params)}) is ` +
          `${JSON.stringify(got)}, not ${JSON.stringify(want)}`);
      }
    }
    let got;
    try {
      got = sdkCache.get(["\u0000plcache attach check", null, null, null, null]);
    } catch (err) {
      throw attachError(`pl.templates._cache.get threw: ${err.message}`);
    }
    if (!Array.isArray(got) || got.length !== 2 || got[0] !== null || got[1] !== false) {
      throw attachError(`pl.templates._cache.get answers ${JSON.stringify(got)} for an absent key, ` +
        "not [null, false]");
    }
  }
  return tm;
}

// Runs the SDK's get over a probe entry for each selector plcache serves and
// checks the key it asked for and that the answer is the entry rendered.
async function probe(tm) {
  const name = "\u0000plcache attach probe";
  const entry = () => ({
    id: -1, prompt_name: name, version: 1, metadata: null,
    prompt_template: { type: "completion", template_format: "f-string", input_variables: ["a"],
      content: [{ type: "text", text: "{a}-{a}" }] },
    llm_kwargs: { model: "probe", prompt: "{a}!" },
  });
  const selectors = [{ label: "probe" }, { version: 7 }, {}];
  for (const sel of selectors) {
    const params = { ...sel, input_variables: { a: "ok" } };
    const want = keyFor(name, params);
    const calls = [];
    const trap = {
      isNonRenderable(k) { calls.push(["isNonRenderable", JSON.stringify(k)]); return false; },
      get(k) { calls.push(["get", JSON.stringify(k)]); return [entry(), true]; },
      put() { calls.push(["put"]); },
      markNonRenderable() { calls.push(["markNonRenderable"]); },
      invalidate() { calls.push(["invalidate"]); },
      clear() { calls.push(["clear"]); },
    };
    const saved = { cache: tm._cache, fetchNormal: tm._fetchNormal };
    let p;
    tm._cache = trap;
    tm._fetchNormal = () => Promise.reject(new Error("plcache attach probe: _fetchNormal was called"));
    try {
      p = tm.get(name, params);
    } catch (err) {
      throw attachError(`pl.templates.get threw on a cached entry: ${err.message}`);
    } finally {
      tm._cache = saved.cache;
      tm._fetchNormal = saved.fetchNormal;
    }
    const seen = JSON.stringify(calls);
    const expected = JSON.stringify([["isNonRenderable", want], ["get", want]]);
    if (seen !== expected) {
      if (p && typeof p.catch === "function") p.catch(() => {});
      throw attachError(`pl.templates.get(name, ${JSON.stringify(params)}) did not read its cache ` +
        `as promptlayer 1.3.x does: it made the calls ${seen}, not ${expected}`);
    }
    let out;
    try {
      out = await p;
    } catch (err) {
      throw attachError(`pl.templates.get failed on a cached entry: ${err.message}`);
    }
    const ok = isObject(out) && out.id === -1 && out.version === 1 &&
      out.prompt_template?.content?.[0]?.text === "ok-ok" && out.llm_kwargs?.prompt === "ok!" &&
      out.llm_kwargs?.model === "probe";
    if (!ok) {
      throw attachError("pl.templates.get did not answer a cached entry rendered by renderResponse " +
        `(got ${JSON.stringify(out)})`);
    }
  }
}

// -- Redis clients ----------------------------------------------------------------

function redisClients(redis, timeoutMs) {
  if (redis === undefined || redis === null) redis = process.env.PLCACHE_REDIS_URL || "redis://127.0.0.1:6379/0";
  if (typeof redis === "string") {
    let Redis;
    try {
      Redis = require("ioredis");
    } catch (err) {
      throw new Error(`plcache.attach: a Redis URL needs the ioredis package (${err.message})`);
    }
    const common = { enableOfflineQueue: false, connectTimeout: Math.max(timeoutMs, 1000) };
    const client = new Redis(redis, { ...common, maxRetriesPerRequest: 1, commandTimeout: timeoutMs });
    const sub = new Redis(redis, { ...common, autoResubscribe: false, maxRetriesPerRequest: null });
    client.on("error", () => {}); // reported where a read fails
    return { client, sub, ownClient: true };
  }
  if (isObject(redis) && typeof redis.hgetall === "function" && typeof redis.duplicate === "function" &&
      isObject(redis.options)) {
    if (redis.options.keyPrefix) {
      throw new Error("plcache.attach: the ioredis client has a keyPrefix; give plcache's prefix as " +
        "`prefix` and a client without keyPrefix");
    }
    const sub = redis.duplicate({ autoResubscribe: false, enableOfflineQueue: false, lazyConnect: false,
      maxRetriesPerRequest: null });
    return { client: redis, sub, ownClient: false };
  }
  throw new Error("plcache.attach: `redis` is a redis:// or rediss:// URL or an ioredis client " +
    "(node-redis clients are not supported: give their URL)");
}

/**
 * Plugs plcache into a PromptLayer client (npm promptlayer 1.3.x): from now on
 * pl.templates.get(name, { label | version, input_variables }) answers from
 * plcache's Redis, rendered by the SDK, and anything plcache does not hold goes
 * to PromptLayer as before.
 *
 * @param pl the PromptLayer client
 * @param opts.redis a redis:// URL (default PLCACHE_REDIS_URL, else
 *   redis://127.0.0.1:6379/0) or an ioredis client (used for reads; a
 *   duplicate of it subscribes)
 * @param opts.prefix plcache's key prefix (default PLCACHE_PREFIX, else "pl:")
 * @param opts.timeoutMs bound on each Redis read and PING (default 1000)
 * @param opts.connectTimeoutMs how long attach waits for the first
 *   subscription (default 5000); attach resolves after it anyway, reading
 *   Redis on every get until the subscription is up
 * @param opts.maxTemplates templates held in memory, least recently used
 *   dropped first (default 10000)
 * @param opts.onError called with an Error when Redis cannot be read or the
 *   subscription drops (default: console.warn, each message once in a row)
 * @returns a handle: stats(), close()
 */
async function attach(pl, opts = {}) {
  const tm = checkClient(pl);
  await probe(tm);
  if (tm[ATTACHED]) throw attachError("plcache is already attached to this client");

  const prefix = opts.prefix ?? process.env.PLCACHE_PREFIX ?? "pl:";
  if (typeof prefix !== "string") throw new TypeError("plcache.attach: prefix is a string");
  const timeoutMs = opts.timeoutMs ?? 1000;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const maxTemplates = opts.maxTemplates ?? 10000;
  for (const [k, v] of [["timeoutMs", timeoutMs], ["connectTimeoutMs", connectTimeoutMs],
    ["maxTemplates", maxTemplates]]) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`plcache.attach: ${k} is a positive integer`);
  }
  let last = null;
  const report = opts.onError ?? ((err) => {
    if (err.message !== last) console.warn(err.message);
    last = err.message;
  });

  const { client, sub, ownClient } = redisClients(opts.redis, timeoutMs);
  const store = new Store({ client, sub, ownClient, prefix, timeoutMs, maxTemplates, report });
  const sdkCache = tm._cache;
  const view = new CacheView(sdkCache, store);
  const sdkGet = tm.get;
  const fetchNormal = tm._fetchNormal;
  const stats = store.stats;

  const get = async (promptName, params) => {
    const field = fieldFor(promptName, params);
    const text = field === null ? null : await store.read(promptName, field);
    const entry = text === null ? null : servable(text);
    if (entry !== null && tm._cache === view) {
      view.arm(keyFor(promptName, params), entry);
      let p;
      try {
        p = sdkGet(promptName, params);
      } finally {
        if (!view.disarm()) {
          // Someone changed the SDK after attach: its answer is its own.
          stats.bypassed++;
          report(new Error("plcache: pl.templates.get did not read its cache as it did at attach; " +
            "this get went the SDK's own way"));
        } else {
          stats.hits++;
        }
      }
      return p;
    }
    stats.misses++;
    return sdkCache === null ? fetchNormal(promptName, params) : sdkGet(promptName, params);
  };

  tm._cache = view;
  tm.get = get;
  Object.defineProperty(tm, ATTACHED, { value: true, configurable: true });

  await store.whenUsable(connectTimeoutMs);
  if (!store.mirror.usable) {
    report(new Error(`plcache: not subscribed to ${prefix}invalidate after ${connectTimeoutMs} ms; ` +
      "every get reads Redis until it is"));
  }

  return {
    /** Counters, and what is held now. */
    stats() {
      return { ...stats, usable: store.mirror.usable, templates: store.mirror.map.size };
    },
    /** Detaches: pl.templates is as it was, and the connections plcache opened are closed. */
    async close() {
      if (tm.get === get) tm.get = sdkGet;
      if (tm._cache === view) tm._cache = sdkCache;
      delete tm[ATTACHED];
      await store.close();
    },
  };
}

module.exports = { attach, _internal: { fieldFor, keyFor, servable, Mirror, Store, CacheView } };
