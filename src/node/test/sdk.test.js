// sdk.test.js -- sdk.js in memory: which gets plcache answers, which entries
// it serves, and how the process's copy follows the invalidation channel
// (a fake Redis client and subscriber; no network). tests/system/test_node.py
// runs the same code against the real SDK, Redis and plcache-webhook.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EventEmitter } = require("node:events");
const { _internal: { fieldFor, keyFor, servable, Store, CacheView } } = require("../sdk");

test("fieldFor: the hash field answering a get, or null for a miss", () => {
  const cases = [
    [["Hello", undefined], "latest"],
    [["Hello", null], "latest"],
    [["Hello", {}], "latest"],
    [["Hello", { input_variables: { a: 1 } }], "latest"],
    [["Hello", { label: "prod" }], "label:prod"],
    [["Hello", { label: "prod", provider: null, model: undefined }], "label:prod"],
    [["Hello", { version: 3, input_variables: {} }], "version:3"],
    [["Hello", { label: "prod", version: 3 }], null],
    [["Hello", { version: 0 }], null],
    [["Hello", { version: 1.5 }], null],
    [["Hello", { version: "3" }], null],
    [["Hello", { label: "" }], null],
    [["Hello", { label: 7 }], null],
    [["Hello", { label: "prod", provider: "anthropic" }], null],
    [["Hello", { label: "prod", model: "gpt-4o-mini" }], null],
    [["Hello", { label: "prod", metadata_filters: {} }], null],
    [["Hello", { label: "prod", model_parameter_overrides: { temperature: 0 } }], null],
    [["Hello", { label: "prod", workspace_id: 2 }], null],
    [["Hello", []], null],
    [["", {}], null],
    [[7, {}], null],
  ];
  for (const [[name, params], want] of cases) {
    assert.equal(fieldFor(name, params), want, JSON.stringify([name, params]));
  }
});

test("keyFor: makeKey's tuple, serialized as PromptTemplateCache does", () => {
  assert.equal(keyFor("a", undefined), '["a",null,null,null,null]');
  assert.equal(keyFor("a", { label: "l", input_variables: {} }), '["a",null,"l",null,null]');
  assert.equal(keyFor("a", { version: 2 }), '["a",2,null,null,null]');
});

test("servable: what the SDK may render locally and would answer the same", () => {
  const chat = (messages, extra = {}) => JSON.stringify({
    prompt_template: { type: "chat", messages, ...extra },
    metadata: { model: { provider: "openai", name: "gpt-4o" } }, llm_kwargs: { messages: [] } });
  const user = { role: "user", content: [{ type: "text", text: "{q}" }] };
  assert.ok(servable(chat([user])));
  assert.equal(servable(chat([user, { role: "placeholder", name: "h" }])), null);
  assert.equal(servable(chat([user], { tools: [{ type: "variable", name: "t" }] })), null);
  assert.ok(servable(chat([user], { tools: [{ type: "function", function: { name: "f" } }] })));
  // No llm_kwargs: served only when the template names no model.
  const completion = { prompt_template: { type: "completion", content: [] }, llm_kwargs: null };
  assert.ok(servable(JSON.stringify(completion)));
  assert.ok(servable(JSON.stringify({ ...completion, metadata: { model: null } })));
  assert.equal(servable(JSON.stringify({ ...completion, metadata: { model: { provider: "openai", name: "x" } } })),
    null);
  for (const bad of ["", "{", "null", "[]", "{}", '{"prompt_template": "x"}']) {
    assert.equal(servable(bad), null, bad);
  }
  // A fresh object every time: the SDK's renderResponse changes it in place.
  const text = chat([user]);
  assert.notEqual(servable(text), servable(text));
});

// -- the copy and the channel ---------------------------------------------------

class FakeRedis {
  constructor() {
    this.hashes = new Map();
    this.calls = 0;
    this.pending = null; // when set, the next HGETALL waits for release()
  }

  hgetall(key) {
    this.calls++;
    const value = { ...(this.hashes.get(key) ?? {}) }; // Redis runs it now...
    if (!this.pending) return Promise.resolve(value);
    const p = new Promise((resolve) => { this.pending.release = () => resolve(value); }); // ...answers later
    this.pending = null;
    return p;
  }

  hold() {
    this.pending = {};
    return this.pending;
  }
}

class FakeSub extends EventEmitter {
  constructor() {
    super();
    this.status = "connecting";
    this.subscribes = [];
    this.disconnects = [];
    this.pingAnswer = true;
  }

  subscribe(channel) {
    return new Promise((resolve, reject) => this.subscribes.push({ channel, resolve, reject }));
  }

  ping() {
    return this.pingAnswer ? Promise.resolve(["pong", ""]) : new Promise(() => {});
  }

  disconnect(reconnect) {
    this.disconnects.push(reconnect);
  }

  up() { // connected, and SUBSCRIBE confirmed
    this.status = "ready";
    this.emit("ready");
    return this.confirm();
  }

  confirm() {
    this.subscribes.shift().resolve(1);
    return new Promise((r) => setImmediate(r));
  }

  drop() {
    this.status = "reconnecting";
    this.emit("close");
  }

  publish(name) {
    this.emit("messageBuffer", Buffer.from("pl:invalidate"), Buffer.isBuffer(name) ? name : Buffer.from(name));
  }
}

function store(extra = {}) {
  const redis = new FakeRedis();
  const sub = new FakeSub();
  const errors = [];
  const s = new Store({ client: redis, sub, ownClient: false, prefix: "pl:", timeoutMs: 200, maxTemplates: 3,
    report: (e) => errors.push(e.message), ...extra });
  return { s, redis, sub, errors };
}

const close = (s) => s.close();

test("nothing is kept until the subscription is confirmed; then a hash is read once", async () => {
  const { s, redis, sub } = store();
  redis.hashes.set("pl:prompt:Hello", { "label:prod": "v1", latest: "v2", gen: "4", id: "12" });
  assert.equal(await s.read("Hello", "label:prod"), "v1");
  assert.equal(await s.read("Hello", "label:prod"), "v1");
  assert.equal(redis.calls, 2, "kept while unsubscribed");
  assert.equal(sub.subscribes.length, 0);
  sub.status = "ready";
  sub.emit("ready");
  assert.equal(sub.subscribes[0].channel, "pl:invalidate");
  assert.equal(await s.read("Hello", "latest"), "v2");
  assert.equal(redis.calls, 3, "kept before SUBSCRIBE was confirmed");
  await sub.confirm();
  assert.equal(await s.read("Hello", "label:prod"), "v1");
  assert.equal(await s.read("Hello", "latest"), "v2");
  assert.equal(await s.read("Hello", "gen"), null);
  assert.equal(await s.read("Hello", "version:9"), null);
  assert.equal(redis.calls, 4);
  // A name Redis has no hash for is held as such: still exact, see below.
  assert.equal(await s.read("Nope", "latest"), null);
  assert.equal(await s.read("Nope", "latest"), null);
  assert.equal(redis.calls, 5);
  await close(s);
});

test("a published name drops that template only; it is read again", async () => {
  const { s, redis, sub } = store({ maxTemplates: 10 });
  await sub.up();
  redis.hashes.set("pl:prompt:A", { latest: "a1" });
  redis.hashes.set("pl:prompt:B", { latest: "b1" });
  redis.hashes.set("pl:prompt:Ünï", { latest: "u1" });
  for (const n of ["A", "B", "Ünï", "Nope"]) await s.read(n, "latest");
  assert.equal(redis.calls, 4);
  redis.hashes.set("pl:prompt:A", { latest: "a2" });
  redis.hashes.set("pl:prompt:Ünï", { latest: "u2" });
  redis.hashes.set("pl:prompt:Nope", { latest: "n1" });
  assert.equal(await s.read("A", "latest"), "a1"); // not announced yet
  sub.publish("A");
  sub.publish("Ünï");
  sub.publish("Nope");
  assert.equal(await s.read("A", "latest"), "a2");
  assert.equal(await s.read("Ünï", "latest"), "u2");
  assert.equal(await s.read("Nope", "latest"), "n1");
  assert.equal(await s.read("B", "latest"), "b1");
  assert.equal(s.stats.invalidations, 3);
  // Bytes that are no UTF-8 name: everything goes.
  redis.hashes.set("pl:prompt:B", { latest: "b2" });
  sub.publish(Buffer.from([0xff, 0x41]));
  assert.equal(await s.read("B", "latest"), "b2");
  await close(s);
});

test("a read under way when its name is published is not kept", async () => {
  const { s, redis, sub } = store();
  await sub.up();
  redis.hashes.set("pl:prompt:A", { latest: "a1" });
  const held = redis.hold();
  const first = s.read("A", "latest");
  const joined = s.read("A", "latest"); // the same HGETALL
  await new Promise(setImmediate);
  assert.equal(redis.calls, 1);
  sub.publish("A"); // the change after Redis answered, announced before its answer arrived
  redis.hashes.set("pl:prompt:A", { latest: "a2" });
  const after = s.read("A", "latest"); // not joined to the read the message made stale
  held.release();
  assert.deepEqual([await first, await joined, await after], ["a1", "a1", "a2"]);
  assert.equal(redis.calls, 2);
  assert.equal(await s.read("A", "latest"), "a2");
  assert.equal(redis.calls, 2, "the second read was kept");
  await close(s);
});

test("a read begun before the subscription was confirmed is not kept", async () => {
  const { s, redis, sub } = store();
  redis.hashes.set("pl:prompt:A", { latest: "a1" });
  const held = redis.hold();
  const r = s.read("A", "latest");
  await sub.up();
  held.release();
  assert.equal(await r, "a1");
  await s.read("A", "latest");
  assert.equal(redis.calls, 2);
  await s.read("A", "latest");
  assert.equal(redis.calls, 2);
  await close(s);
});

test("a dropped subscription empties the copy until it is confirmed again", async () => {
  const { s, redis, sub } = store();
  await sub.up();
  redis.hashes.set("pl:prompt:A", { latest: "a1" });
  await s.read("A", "latest");
  redis.hashes.set("pl:prompt:A", { latest: "a2" }); // missed while down
  sub.drop();
  assert.equal(s.stats.drops, 1);
  assert.equal(s.mirror.usable, false);
  assert.equal(s.mirror.map.size, 0);
  assert.equal(await s.read("A", "latest"), "a2");
  assert.equal(await s.read("A", "latest"), "a2");
  assert.equal(redis.calls, 3);
  assert.equal(s.mirror.map.size, 0);
  // A confirmation from the dropped connection does not count.
  sub.status = "ready";
  sub.emit("ready");
  sub.drop();
  sub.subscribes.shift().resolve(1);
  await new Promise(setImmediate);
  assert.equal(s.mirror.usable, false);
  assert.equal(s.stats.drops, 1, "counted only when it was up");
  await sub.up();
  assert.equal(s.mirror.usable, true);
  await s.read("A", "latest");
  await s.read("A", "latest");
  assert.equal(redis.calls, 4);
  await close(s);
});

test("a SUBSCRIBE refused, or a PING unanswered, ends the connection", async () => {
  const { s, sub, errors } = store({ pingIdleMs: 20 });
  sub.status = "ready";
  sub.emit("ready");
  sub.subscribes.shift().reject(new Error("NOPERM"));
  await new Promise(setImmediate);
  assert.deepEqual(sub.disconnects, [true]);
  assert.match(errors[0], /SUBSCRIBE pl:invalidate: NOPERM/);
  sub.emit("ready");
  await sub.confirm();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(s.mirror.usable, true, "answered PINGs keep it");
  sub.pingAnswer = false;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(s.mirror.usable, false);
  assert.deepEqual(sub.disconnects, [true, true]);
  assert.ok(errors.some((e) => /PING: no answer from Redis in 200 ms/.test(e)), errors.join("\n"));
  await close(s);
});

test("Redis unreadable: a miss, reported", async () => {
  const { s, redis, sub, errors } = store();
  await sub.up();
  redis.hgetall = () => Promise.reject(new Error("Connection is closed."));
  assert.equal(await s.read("A", "latest"), null);
  redis.hgetall = () => new Promise(() => {});
  assert.equal(await s.read("B", "latest"), null);
  assert.match(errors[0], /reading pl:prompt:A: Connection is closed/);
  assert.match(errors[1], /reading pl:prompt:B: HGETALL: no answer from Redis in 200 ms/);
  assert.equal(s.mirror.map.size, 0);
  await close(s);
});

test("at most maxTemplates templates are held, the least recently used dropped first", async () => {
  const { s, redis, sub } = store();
  await sub.up();
  for (const n of ["A", "B", "C"]) await s.read(n, "latest");
  await s.read("A", "latest");
  await s.read("D", "latest");
  assert.deepEqual([...s.mirror.map.keys()], ["C", "A", "D"]);
  assert.equal(redis.calls, 4);
  await close(s);
});

test("CacheView: the armed key once, everything else to the SDK's own cache", () => {
  const calls = [];
  const sdk = {
    get: (k) => { calls.push(["get", k]); return [null, false]; },
    put: (k) => calls.push(["put", k]),
    isNonRenderable: (k) => { calls.push(["isNonRenderable", k]); return true; },
    markNonRenderable: (k) => calls.push(["markNonRenderable", k]),
    invalidate: (n) => calls.push(["invalidate", n]),
    clear: () => calls.push(["clear"]),
  };
  const dropped = [];
  const st = { drop: (n) => dropped.push(n), dropAll: () => dropped.push("*") };
  const v = new CacheView(sdk, st);
  const key = ["A", null, "prod", null, null];
  const entry = { id: 1 };
  v.arm(keyFor("A", { label: "prod" }), entry);
  assert.equal(v.isNonRenderable(["A", null, "prod", "openai", null]), true);
  assert.equal(v.isNonRenderable(key), false);
  assert.deepEqual(v.get(["A", null, "staging", null, null]), [null, false]);
  assert.deepEqual(v.get(key), [entry, true]);
  assert.deepEqual(v.get(key), [null, false], "answered twice");
  assert.equal(v.disarm(), true);
  v.arm(keyFor("A", {}), entry);
  assert.equal(v.disarm(), false);
  v.put(key, entry);
  v.markNonRenderable(key);
  v.invalidate("A");
  v.clear();
  assert.deepEqual(calls.map((c) => c[0]), ["isNonRenderable", "get", "get", "put", "markNonRenderable",
    "invalidate", "clear"]);
  assert.deepEqual(dropped, ["A", "*"]);
  // Without a cache of the client's own: misses, nothing kept.
  const bare = new CacheView(null, st);
  assert.deepEqual(bare.get(key), [null, false]);
  assert.equal(bare.isNonRenderable(key), false);
  bare.put(key, entry);
  bare.markNonRenderable(key);
});
