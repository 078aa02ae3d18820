#!/usr/bin/env python3
"""test_node.py -- PromptLayer's JS SDK answered from plcache's Redis.

The real `promptlayer` npm package (installed from src/node's lockfile by
scripts/bootstrap) runs in node_sdk_driver.js with plcache attached
(src/node/sdk.js), next to clients without it, against redis-server, the
real plcache-webhook and the fake PromptLayer API. Templates reach Redis the
way they do in production: the fake API holds them, a signed webhook
announces them, plcache-webhook fetches and writes them.
"""
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import unittest

import harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_DIR = os.environ.get("PLCACHE_NODE_DIR") or os.path.join(ROOT, "src", "node")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_sdk_driver.js")
RETRY_MS = 800  # how long the "cached" client's connections wait before reconnecting


def text(*t):
    return [{"type": "text", "text": x} for x in t]


def chat(*msgs):
    return {"type": "chat", "messages": [{"role": r, "content": text(t)} for r, t in msgs]}


OPENAI = {"model": {"provider": "openai", "name": "gpt-4o", "parameters": {"temperature": 0.5}}}
FIXTURE = {"templates": [
    {"id": 1, "prompt_name": "Chat",
     "versions": {"1": {"prompt_template": chat(("system", "You help with {topic}."), ("user", "{question}")),
                        "metadata": OPENAI, "commit_message": "first", "tags": ["a"]},
                  "2": {"prompt_template": chat(("system", "You are an expert in {topic}."),
                                                ("user", "Q: {question}")),
                        "metadata": OPENAI, "commit_message": "second"}},
     "labels": {"prod": 1, "staging": 2}},
    {"id": 2, "prompt_name": "Claude",
     "versions": {"1": {"prompt_template": chat(("system", "Be brief about {topic}."), ("user", "{question}")),
                        "metadata": {"model": {"provider": "anthropic", "name": "claude-sonnet-4-20250514",
                                               "parameters": {"max_tokens": 300}}}}},
     "labels": {"prod": 1}},
    {"id": 3, "prompt_name": "Plain text",
     "versions": {"1": {"prompt_template": {"type": "completion", "content": text("Hi {name}, about {topic}")}}},
     "labels": {"prod": 1}},
    {"id": 4, "prompt_name": "Holder",
     "versions": {"1": {"prompt_template": {"type": "chat", "messages": [
         {"role": "system", "content": text("Talk about {topic}.")},
         {"role": "placeholder", "name": "history"}]}, "metadata": OPENAI}},
     "labels": {"prod": 1}},
    {"id": 5, "prompt_name": "Not announced",
     "versions": {"1": {"prompt_template": chat(("user", "{question}")), "metadata": OPENAI}},
     "labels": {"prod": 1}},
]}
# (name, id, versions, labels) announced to plcache-webhook
ANNOUNCED = [("Chat", 1, [1, 2], {"prod": 1, "staging": 2}), ("Claude", 2, [1], {"prod": 1}),
             ("Plain text", 3, [1], {"prod": 1}), ("Holder", 4, [1], {"prod": 1})]
VARS = {"topic": "tides", "question": "Why two a day?", "name": "Ada"}


class Node:
    """The driver process: one JSON request a line, one answer a line."""

    def __init__(self, tmp):
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed (scripts/bootstrap installs nodejs)")
        for pkg in ("promptlayer", "ioredis"):
            if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", pkg)):
                raise RuntimeError(f"{NODE_DIR}/node_modules/{pkg} is missing: run scripts/bootstrap "
                                   "(npm ci in src/node)")
        self.stderr = open(os.path.join(tmp, "node.log"), "wb")
        self.proc = subprocess.Popen([node, DRIVER, NODE_DIR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        h._started.append(self.proc)
        self.lock = threading.Lock()

    def call(self, op, timeout=30.0, **kw):
        """The answer's value; raises NodeError with the error's message."""
        with self.lock:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
            out = {}

            def read():
                out["line"] = self.proc.stdout.readline()
            t = threading.Thread(target=read, daemon=True)
            t.start()
            t.join(timeout)
            line = out.get("line")
            if not line:
                raise AssertionError(f"node driver: no answer to {op} {kw} (exit {self.proc.poll()})")
            ans = json.loads(line)
            if not ans["ok"]:
                raise NodeError(ans["error"])
            return ans["value"]

    def get(self, client, name, params=None):
        return self.call("get", client=client, name=name, params=params)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("close", timeout=10)
            except (AssertionError, NodeError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        h.stop_process(self.proc)
        self.stderr.close()


class NodeError(Exception):
    pass


class NodeSdkCase(unittest.TestCase):

    def setUp(self):
        self.e = h.WebhookEnv(fixture=FIXTURE, PLCACHE_RESYNC_INTERVAL=0)
        self.addCleanup(self.e.close)
        self.e.start()
        for name, tid, versions, labels in ANNOUNCED:
            self.announce(name, tid, versions, labels)
        self.node = Node(self.e.tmp.path)
        self.addCleanup(self.node.close)
        st = self.node.call("init", redis_url=self.e.env["PLCACHE_REDIS_URL"], prefix="pl:",
                            api_key=self.e.api.api_key, base_url=self.e.api.url, retry_ms=RETRY_MS)
        self.assertTrue(st["cached"]["usable"] and st["cached_ttl"]["usable"], st)
        self.e.api.control("DELETE", "/_fake/requests")

    # -- helpers ----------------------------------------------------------------

    @contextlib.contextmanager
    def case(self, **what):
        """Names the case in a failure (the harness's TAP output does not
        report subTest failures)."""
        try:
            yield
        except (AssertionError, NodeError) as e:
            raise AssertionError(f"{what}: {e}") from None

    def announce(self, name, tid, versions=(), labels=None):
        """Signed webhooks for these versions and labels; waits until Redis holds them."""
        for v in versions:
            st, _, _ = self.e.post(h.event("prompt_template_version_created", prompt_template_name=name,
                                           prompt_template_id=tid, prompt_template_version_number=v))
            self.assertEqual(st, 200)
        for label, v in (labels or {}).items():
            st, _, _ = self.e.post(h.event("prompt_template_label_created", prompt_template_name=name,
                                           prompt_template_id=tid, prompt_template_version_number=v,
                                           prompt_template_label=label))
            self.assertEqual(st, 200)
        fields = [f"version:{v}" for v in versions] + [f"label:{lb}" for lb in (labels or {})]
        h.wait_until(lambda: all(self.field(name, f) for f in fields), 15, what=f"{name} {fields} cached")

    def field(self, name, field):
        v = self.e.redis_cmd("HGET", "pl:prompt:" + name, field)
        return json.loads(v) if v is not None else None

    def sdk_requests(self):
        """What the SDKs asked the API (plcache-webhook's GETs are left out)."""
        return [r for r in self.e.api.requests("/prompt-templates") if r["method"] == "POST"]

    def hgetalls(self):
        """How many HGETALLs Redis has answered."""
        info = self.e.redis_cmd("INFO", "commandstats").decode()
        for line in info.splitlines():
            if line.startswith("cmdstat_hgetall:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def stats(self, client="cached"):
        return self.node.call("stats", client=client)

    @staticmethod
    def texts(answer):
        return [b["text"] for m in answer["prompt_template"]["messages"] for b in m["content"]]

    # -- tests ----------------------------------------------------------------------

    def test_a_warm_get_makes_no_api_request(self):
        p = {"label": "prod", "input_variables": VARS}
        first = self.node.get("cached", "Chat", p)  # from Redis: one HGETALL
        self.assertEqual(self.texts(first), ["You help with tides.", "Why two a day?"])
        self.assertEqual(first["llm_kwargs"]["messages"][0]["content"], "You help with tides.")
        self.assertEqual(first["llm_kwargs"]["messages"][1]["content"], text("Why two a day?"))
        loads = self.hgetalls()
        st0 = self.stats()
        # Warm: every selector of a template read once, other variables each time.
        for i in range(20):
            v = dict(VARS, question=f"q{i}")
            a = self.node.get("cached", "Chat", {"label": "prod", "input_variables": v})
            self.assertEqual(self.texts(a)[1], f"q{i}")
            b = self.node.get("cached", "Chat", {"version": 2, "input_variables": v})
            self.assertEqual(self.texts(b), ["You are an expert in tides.", f"Q: q{i}"])
            c = self.node.get("cached", "Chat", {"input_variables": v})  # latest
            self.assertEqual(c["version"], 2)
            d = self.node.get("cached", "Chat")
            self.assertEqual(self.texts(d)[1], "Q: ")  # no variables: the SDK renders them empty
        self.assertEqual(self.hgetalls(), loads, "warm gets read Redis")
        st1 = self.stats()
        self.assertEqual(st1["hits"] - st0["hits"], 80)
        self.assertEqual(st1["misses"], st0["misses"])
        # The client with its own TTL cache is answered by plcache as well.
        e = self.node.get("cached_ttl", "Claude", {"label": "prod", "input_variables": VARS})
        self.assertEqual(e["llm_kwargs"]["system"], "Be brief about tides.")
        self.assertEqual(self.stats("cached_ttl")["hits"], 1)
        self.assertEqual(self.sdk_requests(), [])
        self.assertEqual(self.e.api.requests(), [], "an API request was made")

    def test_an_announced_edit_is_what_the_next_get_returns(self):
        p = {"label": "prod", "input_variables": VARS}
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        self.assertEqual(self.node.get("cached_ttl", "Chat", p)["version"], 1)
        # No TTL: the copy stays as long as nothing is announced.
        loads = self.hgetalls()
        time.sleep(1.2)
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        self.assertEqual(self.hgetalls(), loads)

        self.e.api.control("PUT", "/_fake/templates/Chat/labels/prod", {"version": 2})
        st, _, _ = self.e.post(h.event("prompt_template_label_moved", prompt_template_name="Chat",
                                       prompt_template_id=1, prompt_template_version_number=2,
                                       old_prompt_template_version_number=1, prompt_template_label="prod"))
        self.assertEqual(st, 200)
        t0 = time.monotonic()
        for client in ("cached", "cached_ttl"):
            while True:
                a = self.node.get(client, "Chat", p)
                if a["version"] == 2:
                    break
                self.assertLess(time.monotonic() - t0, 1.0, f"{client}: the move is not seen after 1 s")
                time.sleep(0.01)
            self.assertEqual(self.texts(a), ["You are an expert in tides.", "Q: Why two a day?"])
        self.assertLess(time.monotonic() - t0, 1.0)

        # A new version: `latest` follows.
        self.e.api.control("POST", "/_fake/templates/Chat/versions",
                           {"version": 3, "content": {"prompt_template": chat(("user", "v3 {question}")),
                                                      "metadata": OPENAI}})
        self.announce("Chat", 1, [3])
        h.wait_until(lambda: self.node.get("cached", "Chat", {"input_variables": VARS})["version"] == 3, 1.0,
                     what="latest is version 3")
        self.assertEqual(self.texts(self.node.get("cached", "Chat", {"input_variables": VARS})),
                         ["v3 Why two a day?"])
        self.assertEqual(self.sdk_requests(), [])

    def test_gets_answer_while_promptlayer_is_down(self):
        p = {"label": "prod", "input_variables": VARS}
        want = self.node.get("cached", "Chat", p)
        self.e.api.stop()
        for _ in range(3):
            self.assertEqual(self.node.get("cached", "Chat", p), want)
        # Not yet read by this process: from Redis.
        c = self.node.get("cached", "Claude", p)
        self.assertEqual(c["llm_kwargs"]["system"], "Be brief about tides.")
        self.assertEqual(self.node.get("cached", "Plain text", {"input_variables": VARS})["prompt_template"]
                         ["content"][0]["text"], "Hi Ada, about tides")
        self.assertEqual(self.node.get("cached_ttl", "Chat", {"version": 2, "input_variables": VARS})["version"], 2)

    def test_the_same_answer_as_the_sdk_from_the_api(self):
        cases = [("Chat", {"label": "prod"}), ("Chat", {"label": "staging"}), ("Chat", {"version": 1}),
                 ("Chat", {}), ("Claude", {"label": "prod"}), ("Plain text", {"label": "prod"}),
                 ("Plain text", {})]
        only = {}
        for name, sel in cases:
            for variables in (VARS, {"topic": "tides"}):
                params = dict(sel, input_variables=variables)
                with self.case(name=name, params=params):
                    ours = self.node.get("cached", name, params)
                    self.assertEqual(self.sdk_requests(), [], "plcache's get asked the API")
                    for other in ("plain", "sdk_ttl"):
                        theirs = self.node.get(other, name, params)
                        self.assertEqual(ours["prompt_template"], theirs["prompt_template"], other)
                        self.assertEqual(ours["llm_kwargs"], theirs["llm_kwargs"], other)
                        for k in set(ours) & set(theirs):
                            self.assertEqual(ours[k], theirs[k], (other, k))
                        only.setdefault("plcache (raw GET)", set()).update(set(ours) - set(theirs))
                        only.setdefault(f"{other} (POST)", set()).update(set(theirs) - set(ours))
                    self.e.api.control("DELETE", "/_fake/requests")
        print(f"# keys only one side has: {json.dumps({k: sorted(v) for k, v in only.items()})}", flush=True)
        # Only metadata of the answer differs, never what is rendered.
        self.assertEqual(only["plcache (raw GET)"], {"success", "created_at"})
        self.assertEqual(only["plain (POST)"], {"provider_base_url", "warning"})

    def test_what_plcache_does_not_hold_goes_to_the_api(self):
        v = {"input_variables": VARS}
        cases = [
            ("Chat", {"label": "prod", "provider": "anthropic"}),
            ("Chat", {"label": "prod", "model": "gpt-4o-mini"}),
            ("Chat", {"label": "prod", "metadata_filters": {"tier": "gold"}}),
            ("Chat", {"label": "prod", "model_parameter_overrides": {"temperature": 0.1}}),
            ("Not announced", {"label": "prod"}),  # no hash
            ("Holder", {"label": "prod"}),         # a placeholder: PromptLayer renders it
        ]
        for name, sel in cases:
            params = dict(sel, **v)
            with self.case(name=name, params=sel):
                self.e.api.control("DELETE", "/_fake/requests")
                misses = self.stats()["misses"]
                ours = self.node.get("cached", name, params)
                reqs = self.sdk_requests()
                self.assertEqual(len(reqs), 1, reqs)
                self.assertEqual(json.loads(reqs[0]["body"]), params)  # the SDK's own request
                self.assertEqual(self.stats()["misses"], misses + 1)
                self.assertEqual(ours, self.node.get("plain", name, params))
        # Cached without llm_kwargs (the API refused include_llm_kwargs) while
        # the template names a model: the SDK's own answer has them.
        entry = self.field("Chat", "label:staging")
        entry["llm_kwargs"] = None
        self.e.redis_cmd("HSET", "pl:prompt:Chat", "label:staging", json.dumps(entry))
        self.e.redis_cmd("PUBLISH", "pl:invalidate", "Chat")
        params = {"label": "staging", **v}
        h.wait_until(lambda: (self.e.api.control("DELETE", "/_fake/requests"),
                              self.node.get("cached", "Chat", params), len(self.sdk_requests()))[2] == 1,
                     1.0, what="Chat@staging without llm_kwargs going to the API")
        ours = self.node.get("cached", "Chat", params)
        self.assertIsNotNone(ours["llm_kwargs"])
        self.assertEqual(ours, self.node.get("plain", "Chat", params))
        # A label the hash does not hold: the API's answer, here its 404.
        self.e.api.control("DELETE", "/_fake/requests")
        with self.assertRaises(NodeError):
            self.node.get("cached", "Chat", {"label": "nope"})
        self.assertEqual(len(self.sdk_requests()), 1)
        # The client with its own cache: a miss is the SDK's cached way (one
        # fill, then its TTL), and plcache still answers what it holds.
        self.e.api.control("DELETE", "/_fake/requests")
        for _ in range(3):
            a = self.node.get("cached_ttl", "Not announced", {"label": "prod", **v})
            self.assertEqual(a["prompt_template"]["messages"][0]["content"][0]["text"], "Why two a day?")
        reqs = self.sdk_requests()
        self.assertEqual(len(reqs), 1, reqs)
        self.assertTrue(json.loads(reqs[0]["body"]).get("skip_input_variable_rendering"))
        self.node.get("cached_ttl", "Chat", {"label": "prod", **v})
        self.assertEqual(len(self.sdk_requests()), 1)

    def test_attach_refuses_a_client_whose_internals_differ(self):
        cases = {
            "delete_getWithCache": "pl.templates._getWithCache is missing",
            "delete_fetchNormal": "pl.templates._fetchNormal is missing",
            "rename_cache": "pl.templates._cache is missing",
            "rename_get": "pl.templates.get is missing",
            "get_skips_cache": "did not read its cache",
            "cache_get_shape": "pl.templates._cache.get answers null",
            "cache_not_object": "pl.templates._cache is neither null nor a cache",
            "makekey_order": "PromptTemplateCache.makeKey(\"n\", {\"label\":\"l\",",
            "unrendered": "did not answer a cached entry rendered by renderResponse",
        }
        for how, message in cases.items():
            with self.case(how=how):
                out = self.node.call("tamper", how=how)
                self.assertNotIn("attached", out)
                self.assertTrue(out["error"].startswith("plcache.attach: "), out)
                self.assertIn(message, out["error"])
                self.assertIn("promptlayer 1.3.x", out["error"])
                self.assertTrue(out["unchanged"], f"{how}: attach changed the client it refused")
        self.assertEqual(self.node.call("tamper", how="none"), {"attached": True})
        self.assertEqual(self.e.api.requests(), [], "attach made an API request")

    def test_a_dropped_subscription_empties_the_local_copy_until_resubscribed(self):
        p = {"label": "prod", "input_variables": VARS}
        v1 = self.e.redis_cmd("HGET", "pl:prompt:Chat", "label:prod")
        v2 = self.e.redis_cmd("HGET", "pl:prompt:Chat", "version:2")
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        # Changed behind plcache's back (no PUBLISH): the local copy answers.
        self.e.redis_cmd("HSET", "pl:prompt:Chat", "label:prod", v2)
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        st = self.stats()
        self.assertEqual((st["usable"], st["templates"], st["drops"]), (True, 1, 0))

        killed = self.e.redis_cmd("CLIENT", "KILL", "TYPE", "pubsub")
        self.assertGreaterEqual(killed, 1)
        t0 = time.monotonic()
        h.wait_until(lambda: self.stats()["drops"] == 1, 5, interval=0.005, what="the drop seen")
        # Down (the client reconnects after RETRY_MS): nothing is held, every
        # get reads Redis and keeps nothing.
        st = self.stats()
        self.assertEqual((st["usable"], st["templates"]), (False, 0), st)
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 2)
        self.e.redis_cmd("HSET", "pl:prompt:Chat", "label:prod", v1)
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        st = self.stats()
        self.assertLess(time.monotonic() - t0, RETRY_MS / 1000, "resubscribed before the checks ran")
        self.assertEqual((st["usable"], st["templates"]), (False, 0), st)

        # Back: held again, and kept exact again.
        h.wait_until(lambda: self.stats()["usable"], 10, what="resubscribed")
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        self.assertEqual(self.stats()["templates"], 1)
        self.e.redis_cmd("HSET", "pl:prompt:Chat", "label:prod", v2)
        self.assertEqual(self.node.get("cached", "Chat", p)["version"], 1)
        self.e.redis_cmd("PUBLISH", "pl:invalidate", "Chat")
        h.wait_until(lambda: self.node.get("cached", "Chat", p)["version"] == 2, 1.0,
                     what="the published name dropped the copy")
        self.assertEqual(self.stats()["drops"], 1)
        self.assertEqual(self.sdk_requests(), [])


if __name__ == "__main__":
    h.main()
