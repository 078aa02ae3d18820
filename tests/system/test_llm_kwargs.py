#!/usr/bin/env python3
"""test_llm_kwargs.py -- the cache holds what PromptLayer's SDKs hold.

The applier, `plcache sync` and the read-through of `plcache get`
(libplcache) ask the API for a version with include_llm_kwargs=true, so a
cached version carries its provider-ready, unrendered llm_kwargs (DESIGN.md
section 4). The docs say only that the flag "requires model metadata to be
set on the template", so the fake API is run both ways: answering
llm_kwargs null for a template without model metadata, or refusing the flag
(400) for it; and refusing the flag for every template (422), as an API that
does not know it might. Under each, every template is cached, with exactly
what the API answers without the flag when it refused it.
PLCACHE_LLM_KWARGS=false never asks for them.
"""
import json
import os
import subprocess
import unittest
import urllib.parse

import harness as h

CLI = os.environ.get("PLCACHE_CLI_BIN", "")


def chat(*msgs):
    return {"type": "chat", "messages": [
        {"role": role, "content": [{"type": "text", "text": text}]} for role, text in msgs]}


FIXTURE = {"templates": [
    {"id": 1, "prompt_name": "Chat",
     "versions": {"1": {"prompt_template": chat(("system", "You help with {topic}."),
                                                ("user", "{question}")),
                        "metadata": {"model": {"provider": "openai", "name": "gpt-4o",
                                               "parameters": {"temperature": 0.5}}}}},
     "labels": {"prod": 1}},
    {"id": 2, "prompt_name": "Claude",
     "versions": {"1": {"prompt_template": chat(("system", "Be brief."), ("user", "{q}")),
                        "metadata": {"model": {"provider": "anthropic",
                                               "name": "claude-sonnet-4-20250514",
                                               "parameters": {"max_tokens": 300}}}}},
     "labels": {"prod": 1}},
    {"id": 3, "prompt_name": "No model",
     "versions": {"1": {"prompt_template": {"type": "completion",
                                            "content": [{"type": "text", "text": "Hi {name}"}]}}},
     "labels": {"prod": 1}},
]}
NAMES = ["Chat", "Claude", "No model"]

# (fake API config, which templates the API refuses the flag for)
MODES = [
    ({"include_llm_kwargs": "accept", "llm_kwargs_without_model": "null"}, set()),
    ({"include_llm_kwargs": "accept", "llm_kwargs_without_model": "refuse"}, {"No model"}),
    ({"include_llm_kwargs": "refuse", "llm_kwargs_without_model": "null"}, set(NAMES)),
]


class LlmKwargsCase(unittest.TestCase):

    def setUp(self):
        if not CLI or not os.path.exists(CLI):
            raise RuntimeError(f"PLCACHE_CLI_BIN={CLI!r}: no such program (run through meson test)")

    def env_for(self, config, **settings):
        e = h.WebhookEnv(fixture=FIXTURE, PLCACHE_RESYNC_INTERVAL=0, **settings)
        self.addCleanup(e.close)
        e.api.control("PUT", "/_fake/config", config)
        e.start()
        return e

    # -- what the API says -----------------------------------------------------

    def api(self, e, name, flag, **sel):
        """(status, parsed answer) of the fake's GET for name at sel."""
        q = dict(sel)
        if flag:
            q["include_llm_kwargs"] = "true"
        path = "/prompt-templates/" + urllib.parse.quote(name, safe="")
        if q:
            path += "?" + urllib.parse.urlencode(q)
        st, _, body = h.request(e.api.port, "GET", path, headers={"X-API-KEY": e.api.api_key})
        return st, json.loads(body)

    def want(self, e, name, refused, **sel):
        """What the cache must hold: the answer with the flag, or without it
        when the API refuses the flag for this template."""
        st, with_flag = self.api(e, name, True, **sel)
        if name in refused:
            self.assertIn(st, (400, 422), with_flag)
            st, plain = self.api(e, name, False, **sel)
            self.assertEqual(st, 200)
            self.assertIsNone(plain["llm_kwargs"])
            return plain
        self.assertEqual(st, 200, with_flag)
        return with_flag

    def cached(self, e, name, field):
        v = e.redis_cmd("HGET", "pl:prompt:" + name, field)
        return json.loads(v) if v is not None else None

    def cli(self, e, *args, **settings):
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update({k: v for k, v in e.env.items()
                    if k in ("PLCACHE_REDIS_URL", "PROMPTLAYER_API_KEY", "PROMPTLAYER_BASE_URL")})
        env.update({k: str(v) for k, v in settings.items()})
        p = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def drop_cache(self, e):
        for name in NAMES:
            e.redis_cmd("DEL", "pl:prompt:" + name)
        e.api.control("DELETE", "/_fake/requests")

    def assertAsked(self, e, refused):
        """Each template was asked with the flag; refused ones once more
        without it, after the refusal."""
        for name in NAMES:
            reqs = [r for r in e.api.requests("/prompt-templates/" + urllib.parse.quote(name, safe=""))
                    if not r["path"].endswith("/labels")]  # the labels listing has no flag
            flags = [("include_llm_kwargs=true" in (r["query"] or ""), r["status"]) for r in reqs]
            self.assertTrue(flags and flags[0][0], (name, flags))
            if name in refused:
                self.assertIn(flags[0][1], (400, 422), (name, flags))
                self.assertIn((False, 200), flags, name)
            else:
                self.assertTrue(all(f for f, _ in flags), (name, flags))

    def assertHolds(self, e, refused, field, **sel):
        for name in NAMES:
            self.assertEqual(self.cached(e, name, field), self.want(e, name, refused, **sel),
                             (name, field))

    # -- the three writers, under each answer of the API ---------------------------

    def test_every_writer_caches_llm_kwargs_or_the_answer_without_them(self):
        for config, refused in MODES:
            with self.subTest(config=config):
                e = self.env_for(config)
                # The applier, from webhooks.
                for i, name in enumerate(NAMES, 1):
                    st, _, _ = e.post(h.event("prompt_template_version_created",
                                              prompt_template_name=name, prompt_template_id=i,
                                              prompt_template_version_number=1))
                    self.assertEqual(st, 200)
                h.wait_until(lambda: all(self.cached(e, n, "version:1") for n in NAMES), 15,
                             what="every version cached")
                self.assertHolds(e, refused, "version:1", version=1)
                self.assertHolds(e, refused, "latest")
                self.assertAsked(e, refused)
                if not refused:
                    # Provider-ready, unrendered: the texts keep their variables.
                    chat_kw = self.cached(e, "Chat", "latest")["llm_kwargs"]
                    self.assertEqual(chat_kw["model"], "gpt-4o")
                    self.assertEqual(chat_kw["temperature"], 0.5)
                    self.assertIn("{question}", json.dumps(chat_kw["messages"]))
                    claude_kw = self.cached(e, "Claude", "latest")["llm_kwargs"]
                    self.assertEqual(claude_kw["system"], "Be brief.")
                    self.assertEqual(claude_kw["max_tokens"], 300)
                    self.assertIsNone(self.cached(e, "No model", "latest")["llm_kwargs"])

                # plcache sync refills it the same way.
                self.drop_cache(e)
                for name in NAMES:
                    e.redis_cmd("HSET", "pl:prompt:" + name, "label:prod", "{}")
                rc, out, err = self.cli(e, "sync", *NAMES)
                self.assertEqual(rc, 0, err)
                self.assertEqual(json.loads(out)["errors"], 0)
                self.assertHolds(e, refused, "latest")
                self.assertHolds(e, refused, "label:prod", label="prod")
                self.assertAsked(e, refused)

                # plcache get reads through (libplcache) the same way.
                self.drop_cache(e)
                for name in NAMES:
                    rc, out, err = self.cli(e, "get", name, "--label", "prod")
                    self.assertEqual(rc, 0, err)
                    self.assertEqual(json.loads(out), self.want(e, name, refused, label="prod"))
                self.assertHolds(e, refused, "label:prod", label="prod")
                self.assertAsked(e, refused)

    def test_the_flag_can_be_turned_off(self):
        e = self.env_for(MODES[0][0], PLCACHE_LLM_KWARGS="false")
        st, _, _ = e.post(h.event("prompt_template_version_created", prompt_template_name="Chat",
                                  prompt_template_id=1, prompt_template_version_number=1))
        self.assertEqual(st, 200)
        h.wait_until(lambda: self.cached(e, "Chat", "version:1"), 15, what="Chat cached")
        rc, _, err = self.cli(e, "sync", "Claude", PLCACHE_LLM_KWARGS="false")
        e.redis_cmd("DEL", "pl:prompt:No model")
        rc2, out, err2 = self.cli(e, "get", "No model", "--llm-kwargs", "off")
        self.assertEqual((rc, rc2), (0, 0), err + err2)
        for name, field in (("Chat", "version:1"), ("Claude", "latest"), ("No model", "latest")):
            self.assertIsNone(self.cached(e, name, field)["llm_kwargs"], name)
        self.assertEqual(json.loads(out)["llm_kwargs"], None)
        queries = [r["query"] or "" for r in e.api.requests("/prompt-templates/")]
        self.assertTrue(queries)
        self.assertFalse([q for q in queries if "include_llm_kwargs" in q], queries)
        # A bad value is refused at start, naming the setting.
        rc, _, err = self.cli(e, "stats", PLCACHE_LLM_KWARGS="maybe")
        self.assertEqual(rc, 2)
        self.assertIn("PLCACHE_LLM_KWARGS", err)


if __name__ == "__main__":
    h.main()
