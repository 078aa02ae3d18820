"""test_cli.py -- the plcache command against a real redis-server and the fake API.

DESIGN.md section 7: get (hit, read-through, misses), track, sync (one name,
every template over several listing pages, 404s, the concurrency bound, the
API down), sign (against Python's json + hmac as the oracle), dlq list /
retry / purge (entries in plcache-worker's format, and with a real worker),
stats, ls and show (the readable form on a terminal, through a pty, and JSON
with --json or into a pipe), help (an example for every command), version and
the errors (bad settings exit 2, Redis down exit 1, each saying what to do).
The last test runs the Python example app server (scripts/examples/app.py,
redis-py) against the real daemons end to end.
"""
import hashlib
import hmac
import json
import os
import re
import select
import subprocess
import time
import unittest
import urllib.parse

import harness as h

CLI = os.environ.get("PLCACHE_CLI_BIN", "")
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                       "examples", "app.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-redis

FIXTURE = {"templates": [
    {"id": 1, "prompt_name": "Hello",
     "versions": {"1": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "one"},
                  "2": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "two"}},
     "labels": {"prod": 1, "staging": 2}},
    {"id": 2, "prompt_name": "Other thing/ü",
     "versions": {"1": {"prompt_template": {"type": "completion", "content": []}}},
     "labels": {"prod": 1}},
]}


def dead_entry(job, error="rejected", status=400, attempts=1):
    """A dead entry exactly as plcache-worker writes it (jansson, compact)."""
    return json.dumps({"job": job, "error": error, "status": status, "attempts": attempts,
                       "failed_at": "2026-11-27T07:21:26.123456Z"}, separators=(",", ":"))


class CliEnv:
    """redis-server + the fake API; runs plcache with a clean environment."""

    def __init__(self, fixture=FIXTURE, api_delay_ms=0):
        self.tmp = h.TempDir("plcache-cli-test-")
        self.redis = None
        self.api = None
        try:
            self.redis = h.RedisServer(self.tmp.path).start()
            self.api = h.FakeApi(self.tmp.path, fixture=fixture, delay_ms=api_delay_ms).start()
        except BaseException:
            self.close()
            raise
        self.env = {
            "PLCACHE_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "PROMPTLAYER_API_KEY": self.api.api_key,
            "PROMPTLAYER_BASE_URL": self.api.url,
        }

    def run(self, *args, input=None, timeout=60, **settings):
        """Runs plcache; settings set (or, given as None, unset) variables.
        Returns (exit status, stdout text, stderr text)."""
        if not CLI or not os.path.exists(CLI):
            raise RuntimeError(f"PLCACHE_CLI_BIN={CLI!r}: no such program (run through meson test)")
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update(self.env)
        for k, v in settings.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run([CLI, *args], input=input if input is not None else b"", env=env,
                           capture_output=True, timeout=timeout)
        err = p.stderr.decode(errors="replace")
        if "Sanitizer" in err or "runtime error:" in err:
            raise AssertionError(f"sanitizer report from plcache {args}:\n{err}")
        return p.returncode, p.stdout.decode(errors="replace"), err

    def run_tty(self, *args, timeout=30, **settings):
        """Runs plcache with stdout on a pseudo-terminal (stderr a pipe).
        Returns (exit status, terminal text with \r\n as \n, stderr text)."""
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update(self.env)
        env.update({k: str(v) for k, v in settings.items()})
        master, slave = os.openpty()
        try:
            p = subprocess.Popen([CLI, *args], env=env, stdout=slave, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
            os.close(slave)
            slave = None
            tty, deadline = b"", time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    if p.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the program closed the terminal
                    break
                if not chunk:
                    break
                tty += chunk
            err = p.stderr.read().decode(errors="replace")
            p.stderr.close()
            rc = p.wait(timeout=timeout)
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        return rc, tty.decode(errors="replace").replace("\r\n", "\n"), err

    def r(self, *args):
        c = self.redis.client()
        try:
            return c(*args)
        finally:
            c.close()

    def api_get(self, name, **sel):
        """What the fake API serves now (parsed), or None for 404, asked as
        plcache asks (with include_llm_kwargs=true, DESIGN.md section 4)."""
        q = "?" + urllib.parse.urlencode(dict(sel, include_llm_kwargs="true"))
        st, _, body = h.request(self.api.port, "GET",
                                "/prompt-templates/" + urllib.parse.quote(name, safe="") + q,
                                headers={"X-API-KEY": self.api.api_key})
        return json.loads(body) if st == 200 else None

    def cached(self, name, field):
        v = self.r("HGET", "pl:prompt:" + name, field)
        return json.loads(v) if v is not None else None

    def close(self):
        if self.api:
            self.api.stop()
        if self.redis:
            self.redis.stop()
        self.tmp.cleanup()


class Case(unittest.TestCase):
    fixture = FIXTURE
    api_delay_ms = 0

    def setUp(self):
        self.e = CliEnv(self.fixture, self.api_delay_ms)

    def tearDown(self):
        self.e.close()

    def ok(self, *args, **kw):
        rc, out, err = self.e.run(*args, **kw)
        self.assertEqual(rc, 0, f"plcache {args}: exit {rc}\nstdout: {out}\nstderr: {err}")
        return out

    def fails(self, status, *args, **kw):
        rc, out, err = self.e.run(*args, **kw)
        self.assertEqual(rc, status, f"plcache {args}: exit {rc}\nstdout: {out}\nstderr: {err}")
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, f"one line on stderr, got: {err!r}")
        self.assertTrue(lines[0].startswith("plcache"), err)
        return out, lines[0]


# -- help, version, settings, Redis down ---------------------------------------

class General(Case):
    def test_version_and_help(self):
        self.assertEqual(self.ok("--version").strip(), "plcache 0.1.0")
        out = self.ok("--help")
        for word in ("get NAME", "track", "sync", "sign", "dlq list", "dlq retry", "dlq purge",
                     "stats", "PLCACHE_REDIS_URL", "PROMPTLAYER_API_KEY", "PLCACHE_WEBHOOK_SECRET"):
            self.assertIn(word, out)
        self.assertEqual(self.ok("help"), out)
        get_help = self.ok("help", "get")
        self.assertIn("Usage: plcache get NAME [--label L | --version N]", get_help)
        self.assertEqual(self.ok("get", "--help"), get_help)
        self.assertEqual(self.ok("get", "Hello", "-h"), get_help)
        self.assertIn("dlq retry N | --all", self.ok("dlq", "--help"))
        for cmd in ("get", "track", "sync", "sign", "dlq", "stats", "ls", "show"):
            with self.subTest(command=cmd):
                text = self.ok("help", cmd)
                self.assertRegex(text, r"\nExamples?:\n  (plcache|sig=)", "an example in its help")
        # Help never needs Redis nor good settings.
        self.assertIn("Usage: plcache sync", self.ok("sync", "--help", PLCACHE_REDIS_URL="bad"))

    def test_usage_errors_exit_2(self):
        self.assertIn("no command", self.fails(2)[1])
        self.assertIn("unknown command 'frobnicate'", self.fails(2, "frobnicate")[1])
        self.assertIn("unknown option", self.fails(2, "--frob")[1])
        self.assertIn("unknown command", self.fails(2, "help", "frob")[1])

    def test_bad_settings_exit_2_naming_the_setting(self):
        line = self.fails(2, "stats", PLCACHE_REDIS_URL="http://x")[1]
        self.assertIn("PLCACHE_REDIS_URL", line)
        line = self.fails(2, "stats", "--redis-url", "redis://h:99999/0")[1]
        self.assertIn("PLCACHE_REDIS_URL", line)
        self.assertIn("PLCACHE_REDIS_TIMEOUT", self.fails(2, "stats", PLCACHE_REDIS_TIMEOUT="0")[1])
        self.assertIn("PROMPTLAYER_BASE_URL",
                      self.fails(2, "get", "Hello", PROMPTLAYER_BASE_URL="ftp://x")[1])
        self.assertIn("PLCACHE_LOG_LEVEL", self.fails(2, "stats", PLCACHE_LOG_LEVEL="loud")[1])

    def test_settings_flags_before_or_after_the_command(self):
        url = self.e.env["PLCACHE_REDIS_URL"]
        self.e.r("LPUSH", "pl:track:dead", dead_entry({"a": 1}))
        self.assertEqual(self.ok("--redis-url", url, "dlq", "purge",
                                 PLCACHE_REDIS_URL="redis://127.0.0.1:1/0").strip(), "1")
        self.e.r("LPUSH", "x:track:dead", dead_entry({"a": 1}))
        self.assertEqual(self.ok("dlq", "purge", "--prefix=x:").strip(), "1")

    def test_redis_down_exit_1_with_a_clear_message(self):
        port = h.free_port()
        url = f"redis://127.0.0.1:{port}/0"
        for args in (["stats"], ["dlq", "list"], ["dlq", "purge"], ["get", "Hello"],
                     ["sync", "Hello"], ["ls"], ["show", "Hello"]):
            _, line = self.fails(1, *args, PLCACHE_REDIS_URL=url, PLCACHE_REDIS_TIMEOUT=1)
            self.assertIn(f"127.0.0.1:{port}", line, args)
        for args in (["stats"], ["ls"], ["show", "Hello"], ["dlq", "list"]):
            _, line = self.fails(1, *args, PLCACHE_REDIS_URL=url, PLCACHE_REDIS_TIMEOUT=1)
            self.assertIn("start it, or point PLCACHE_REDIS_URL", line, args)  # what to do next
        _, line = self.fails(1, "track", input=json.dumps(h.log_request(a=1)), PLCACHE_REDIS_URL=url,
                             PLCACHE_REDIS_TIMEOUT=1)
        self.assertIn(f"127.0.0.1:{port}", line)

    def test_redis_password_and_database_from_the_url(self):
        self.e.r("CONFIG", "SET", "requirepass", "s3cret")
        c = self.e.redis.client()
        c("AUTH", "s3cret")
        c("SELECT", "3")
        c("LPUSH", "pl:track:dead", dead_entry({"a": 1}))
        c.close()
        url = f"redis://:s3cret@127.0.0.1:{self.e.redis.port}/3"
        self.assertEqual(self.ok("dlq", "list", PLCACHE_REDIS_URL=url).strip(),
                         dead_entry({"a": 1}))
        rc, out, err = self.e.run("stats", PLCACHE_REDIS_URL=url.replace("s3cret", "wrong"))
        self.assertEqual(rc, 1, err)
        self.assertNotIn("wrong", err)
        c = self.e.redis.client()
        c("AUTH", "s3cret")
        c("CONFIG", "SET", "requirepass", "")
        c.close()


# -- get ------------------------------------------------------------------------

class Get(Case):
    def test_hit_prints_the_stored_json(self):
        text = '{"id": 1, "prompt_name": "Hello", "version": 7, "prompt_template": {"x": "ü"}}'
        self.e.r("HSET", "pl:prompt:Hello", "label:prod", text, "version:7", text, "latest", text)
        # No key: a hit needs no API.
        for args in (["--label", "prod"], ["--version", "7"], []):
            out = self.ok("get", "Hello", *args, PROMPTLAYER_API_KEY=None)
            self.assertEqual(out, text + "\n")
        self.assertEqual(self.e.api.requests("/prompt-templates"), [])

    def test_miss_reads_through_with_a_key_and_fills_the_cache(self):
        for args, sel, field in ((["--label", "prod"], {"label": "prod"}, "label:prod"),
                                 (["--version", "2"], {"version": 2}, "version:2"),
                                 ([], {}, "latest")):
            out = self.ok("get", "Hello", *args)
            want = self.e.api_get("Hello", **sel)
            self.assertEqual(json.loads(out), want)
            self.assertEqual(self.e.cached("Hello", field), want)
        out = self.ok("get", "Other thing/ü", "--label", "prod")
        self.assertEqual(json.loads(out)["prompt_name"], "Other thing/ü")

    def test_miss_without_a_key_is_exit_1(self):
        out, line = self.fails(1, "get", "Hello", "--label", "prod", PROMPTLAYER_API_KEY=None)
        self.assertEqual(out, "")
        self.assertIn("not found", line)
        self.assertEqual(self.e.api.requests("/prompt-templates"), [])

    def test_not_found_at_the_api_is_exit_1(self):
        self.fails(1, "get", "Nope")
        self.fails(1, "get", "Hello", "--label", "nope")
        self.fails(1, "get", "Hello", "--version", "99")

    def test_bad_flags_exit_2(self):
        self.fails(2, "get")
        self.fails(2, "get", "Hello", "--label", "prod", "--version", "1")
        self.fails(2, "get", "Hello", "--version", "two")
        self.fails(2, "get", "Hello", "--version", "0")
        self.fails(2, "get", "Hello", "--version")
        self.fails(2, "get", "Hello", "--label")
        self.fails(2, "get", "Hello", "--tag", "x")
        self.fails(2, "get", "Hello", "World")


# -- track ----------------------------------------------------------------------

class GetRendered(Case):
    ENTRY = {"id": 1, "version": 2,
             "prompt_template": {"type": "chat", "messages": [
                 {"role": "system", "content": [{"type": "text", "text": "Help with {topic}."}]},
                 {"role": "user", "content": [{"type": "text", "text": "{q} x{n:02d}"}]}]},
             "metadata": {"model": {"provider": "openai", "name": "gpt-4o",
                                    "parameters": {"temperature": 0.7}}},
             "llm_kwargs": {"model": "gpt-4o", "temperature": 0.7, "messages": [
                 {"role": "system", "content": "Help with {topic}."},
                 {"role": "user", "content": [{"type": "text", "text": "{q} x{n:02d}"}]}]}}

    def test_vars_render_prompt_template_and_llm_kwargs(self):
        self.e.r("HSET", "pl:prompt:Hello", "label:prod", json.dumps(self.ENTRY))
        out = self.ok("get", "Hello", "--label", "prod", "--var", "topic=Redis", "--var", "q=Why",
                      "--vars-json", '{"n": 7, "q": "How"}', PROMPTLAYER_API_KEY=None)
        got = json.loads(out)
        self.assertEqual(got["prompt_template"]["messages"][0]["content"][0]["text"],
                         "Help with Redis.")
        self.assertEqual(got["prompt_template"]["messages"][1]["content"][0]["text"], "How x07")
        self.assertEqual(got["llm_kwargs"]["messages"][0]["content"], "Help with Redis.")
        self.assertIn('"temperature":0.7,', out)  # numbers as written
        self.assertEqual(self.e.api.requests("/prompt-templates/"), [])
        # Without variables: the entry as cached.
        self.assertEqual(json.loads(self.ok("get", "Hello", "--label", "prod")), self.ENTRY)

    def test_what_plcache_does_not_render_goes_to_the_api(self):
        ph = {"prompt_template": {"type": "chat", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be {tone}."}]},
            {"role": "placeholder", "name": "history"}]}}
        self.e.api.control("PUT", "/_fake/templates/Ph",
                           {"id": 9, "versions": {"1": ph}, "labels": {"prod": 1}})
        out = self.ok("get", "Ph", "--label", "prod", "--var", "tone=brief", "--vars-json",
                      '{"history": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}')
        got = json.loads(out)
        self.assertEqual(got["prompt_template"]["messages"][0]["content"][0]["text"], "Be brief.")
        self.assertEqual(got["prompt_template"]["messages"][1]["role"], "user")
        posts = [r for r in self.e.api.requests("/prompt-templates/Ph") if r["method"] == "POST"]
        self.assertEqual(len(posts), 1)
        self.assertEqual(json.loads(posts[0]["body"])["input_variables"]["tone"], "brief")
        # Without a key nobody can render it: said in one line, exit 1.
        _, line = self.fails(1, "get", "Ph", "--label", "prod", "--var", "tone=x",
                             PROMPTLAYER_API_KEY=None)
        self.assertIn("no API key", line)

    def test_bad_variables_exit_2(self):
        for args in (["--var", "novalue"], ["--var", "=x"], ["--vars-json", "[1]"],
                     ["--vars-json", "{"], ["--var"]):
            _, line = self.fails(2, "get", "Hello", *args)
            self.assertIn("--var", line)


class Track(Case):
    def test_from_file_and_stdin_prints_the_queue_length(self):
        path = os.path.join(self.e.tmp.path, "job.json")
        with open(path, "w") as f:
            f.write(json.dumps(h.log_request(function_name="openai.chat.completions.create", n=1))
                    + "\n")
        self.assertEqual(self.ok("track", path), "1\n")
        self.assertEqual(self.ok("track", input=json.dumps(h.log_request(n=2))), "2\n")
        self.assertEqual(self.ok("track", "-", input='  {"endpoint": "/rest/track-score", '
                                 '"body": {"request_id": 1, "score": 9}}\n'), "3\n")
        queued = [json.loads(x) for x in reversed(self.e.r("LRANGE", "pl:track", 0, -1))]
        self.assertEqual([q.get("n") for q in queued[:2]], [1, 2])
        self.assertEqual(queued[2]["endpoint"], "/rest/track-score")

    def test_refuses_what_is_not_one_object(self):
        for text in ('[{"a": 1}]', '"job"', "42", "not json", "", '{"a": 1} {"b": 2}', "{"):
            _, line = self.fails(2, "track", input=text)
            self.assertIn("not a JSON object", line, text)
        self.assertEqual(self.e.r("LLEN", "pl:track"), 0)

    def test_missing_file_and_extra_arguments(self):
        self.fails(1, "track", os.path.join(self.e.tmp.path, "nope.json"))
        self.fails(2, "track", "a.json", "b.json")
        self.fails(2, "track", "--all")


# -- sync -----------------------------------------------------------------------

def completion(text):
    """A completion prompt_template the fake API accepts."""
    return {"type": "completion", "content": [{"type": "text", "text": text}]}


def many_templates(n, start_id=100):
    return [{"id": start_id + i, "prompt_name": f"T{i:04d}",
             "versions": {"1": {"prompt_template": completion(f"{i}")},
                          "2": {"prompt_template": completion(f"{-i}")}},
             "labels": {"prod": 1}} for i in range(n)]


class Sync(Case):
    def summary(self, out):
        s = json.loads(out)
        for k in ("templates", "refreshed", "changed", "removed", "errors"):
            self.assertIn(k, s)
        return s

    def test_one_name_fills_latest_and_refreshes_every_cached_field(self):
        stale = json.dumps({"id": 1, "prompt_name": "Hello", "version": 1, "stale": True})
        self.e.r("HSET", "pl:prompt:Hello", "label:prod", stale, "version:1", stale,
                 "label:staging", stale)
        s = self.summary(self.ok("sync", "Hello"))
        # latest, the three cached fields, and version:2 that staging (listed
        # by GET /prompt-templates/Hello/labels) points at.
        self.assertEqual((s["templates"], s["refreshed"], s["removed"], s["errors"]), (1, 5, 0, 0))
        self.assertEqual(s["changed"], 5)
        # What it asked: by name, with the key and no-cache.
        reqs = self.e.api.requests("/prompt-templates/Hello")
        self.assertEqual(sorted((r["path"], r["query"] or "") for r in reqs),
                         [("/prompt-templates/Hello", "include_llm_kwargs=true"),
                          ("/prompt-templates/Hello", "label=prod&include_llm_kwargs=true"),
                          ("/prompt-templates/Hello", "label=staging&include_llm_kwargs=true"),
                          ("/prompt-templates/Hello", "version=1&include_llm_kwargs=true"),
                          ("/prompt-templates/Hello", "version=2&include_llm_kwargs=true"),
                          ("/prompt-templates/Hello/labels", "")])
        self.assertTrue(all(r["api_key"] == "test-key" and r["cache_control"] == "no-cache"
                            for r in reqs))
        self.assertEqual(self.e.cached("Hello", "latest"), self.e.api_get("Hello"))
        self.assertEqual(self.e.cached("Hello", "label:prod"), self.e.api_get("Hello", label="prod"))
        self.assertEqual(self.e.cached("Hello", "label:staging"),
                         self.e.api_get("Hello", label="staging"))
        self.assertEqual(self.e.cached("Hello", "version:1"), self.e.api_get("Hello", version=1))
        self.assertEqual(self.e.cached("Hello", "version:2"), self.e.api_get("Hello", version=2))
        self.assertEqual(self.e.r("HGET", "pl:prompt:Hello", "id"), b"1")
        self.assertEqual(self.e.r("HGET", "pl:prompt-ids", "1"), b"Hello")
        gen = int(self.e.r("HGET", "pl:prompt:Hello", "gen"))
        # Again: nothing changes, gen stays.
        s = self.summary(self.ok("sync", "Hello"))
        self.assertEqual((s["refreshed"], s["changed"]), (5, 0))
        self.assertEqual(int(self.e.r("HGET", "pl:prompt:Hello", "gen")), gen)

    def test_sync_refills_a_redis_that_lost_everything(self):
        # Nothing cached, no name: every template of the listing with every
        # label the API lists, the versions they point at, and latest -- what
        # apps read (before, only latest came back).
        s = self.summary(self.ok("sync"))
        self.assertEqual((s["templates"], s["errors"]), (2, 0))
        self.assertEqual(sorted(self.e.r("HKEYS", "pl:prompt:Hello")),
                         [b"gen", b"id", b"label:prod", b"label:staging", b"latest", b"version:1",
                          b"version:2"])
        self.assertEqual(sorted(self.e.r("HKEYS", "pl:prompt:Other thing/ü")),
                         [b"gen", b"id", b"label:prod", b"latest", b"version:1"])
        self.assertEqual(self.e.cached("Hello", "label:staging"),
                         self.e.api_get("Hello", label="staging"))

    def test_a_change_publishes_the_name_and_bumps_gen(self):
        sub = h.RedisClient(self.e.redis.port, timeout=10)
        sub("SUBSCRIBE", "pl:invalidate")
        self.ok("sync", "Other thing/ü")
        self.assertEqual(sub._read(), [b"message", b"pl:invalidate", "Other thing/ü".encode()])
        sub.close()
        # A new hash's gen starts at Redis' clock (microseconds), so a gen read
        # before the template was dropped never matches one made after.
        gen = int(self.e.r("HGET", "pl:prompt:Other thing/ü", "gen"))
        self.assertLess(abs(gen - time.time_ns() // 1000), 60 * 10**6)

    def test_latest_never_moves_backwards(self):
        newer = json.dumps({"id": 1, "prompt_name": "Hello", "version": 9})
        self.e.r("HSET", "pl:prompt:Hello", "latest", newer)
        self.summary(self.ok("sync", "Hello"))
        self.assertEqual(self.e.r("HGET", "pl:prompt:Hello", "latest"), newer.encode())

    def test_a_404_removes_the_field_and_a_latest_404_the_template(self):
        old = json.dumps({"id": 1, "prompt_name": "Hello", "version": 1})
        self.e.r("HSET", "pl:prompt:Hello", "label:gone", old, "version:5", old, "version:1", old)
        gone = json.dumps({"id": 77, "prompt_name": "Gone", "version": 1})
        self.e.r("HSET", "pl:prompt:Gone", "latest", gone, "id", "77", "gen", "3")
        self.e.r("HSET", "pl:prompt-ids", "77", "Gone")
        s = self.summary(self.ok("sync", "Hello", "Gone"))
        self.assertEqual((s["templates"], s["removed"], s["errors"]), (2, 3, 0))
        # label:gone and version:5 removed; what the API lists kept or added.
        self.assertEqual(sorted(self.e.r("HKEYS", "pl:prompt:Hello")),
                         [b"gen", b"id", b"label:prod", b"label:staging", b"latest", b"version:1",
                          b"version:2"])
        self.assertEqual(self.e.r("EXISTS", "pl:prompt:Gone"), 0)
        self.assertIsNone(self.e.r("HGET", "pl:prompt-ids", "77"))

    def test_a_name_the_api_does_not_know_is_said_and_not_an_error(self):
        rc, out, err = self.e.run("sync", "Nope")
        self.assertEqual(rc, 0, err)
        self.assertIn("Nope", err)
        self.assertEqual(self.summary(out)["errors"], 0)
        self.assertEqual(self.e.r("EXISTS", "pl:prompt:Nope"), 0)

    def test_all_lists_every_page_and_every_cached_template(self):
        self.e.api.control("PUT", "/_fake/state", {"templates": FIXTURE["templates"] +
                                                   many_templates(230)})
        old = json.dumps({"id": 1, "prompt_name": "Hello", "version": 1})
        self.e.r("HSET", "pl:prompt:Hello", "label:prod", old)
        self.e.r("HSET", "pl:prompt:Gone", "latest", old)  # cached, not at the API
        s = self.summary(self.ok("sync"))
        self.assertEqual(s["templates"], 233)
        self.assertEqual(s["errors"], 0)
        self.assertEqual(s["removed"], 1)
        # Every label the API lists and the version it points at, and latest:
        # 230 x (latest, label:prod, version:1), Hello's five, Other's three.
        self.assertEqual(s["refreshed"], 230 * 3 + 5 + 3)
        pages = [r["query"] for r in self.e.api.requests("/prompt-templates")
                 if r["path"] == "/prompt-templates"]
        self.assertEqual(sorted(pages), [f"page={p}&per_page=100" for p in (1, 2, 3)])
        self.assertEqual(self.e.cached("T0229", "latest"), self.e.api_get("T0229"))
        self.assertEqual(self.e.cached("Hello", "label:prod"), self.e.api_get("Hello", label="prod"))
        self.assertEqual(self.e.r("EXISTS", "pl:prompt:Gone"), 0)
        self.assertEqual(self.e.r("HGET", "pl:prompt-ids", "229"), b"T0129")

    def test_progress_line_only_on_a_terminal(self):
        self.e.api.control("PUT", "/_fake/state", {"templates": many_templates(20)})
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 100})
        rc, out, err = self.e.run("sync", PLCACHE_FETCH_CONCURRENCY=2)
        self.assertEqual((rc, err), (0, ""))
        master, slave = os.openpty()
        try:
            env = {k: v for k, v in os.environ.items()
                   if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
            env.update(self.e.env, PLCACHE_FETCH_CONCURRENCY="2")
            p = subprocess.run([CLI, "sync"], env=env, stdout=subprocess.PIPE, stderr=slave,
                               stdin=subprocess.DEVNULL, timeout=60)
            os.close(slave)
            slave = None
            tty = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                tty += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"\rplcache sync: ", tty)
        self.assertIn(b"/20 templates", tty)
        self.assertTrue(tty.endswith(b"\r\x1b[K"), tty[-40:])
        self.assertEqual(json.loads(p.stdout)["templates"], 20)

    def test_without_a_key_exit_2_naming_it(self):
        _, line = self.fails(2, "sync", PROMPTLAYER_API_KEY=None)
        self.assertIn("PROMPTLAYER_API_KEY", line)
        self.fails(2, "sync", "--fast")

    def test_api_down_is_nonzero_and_writes_nothing(self):
        dead = f"http://127.0.0.1:{h.free_port()}"
        rc, out, err = self.e.run("sync", "Hello", PROMPTLAYER_BASE_URL=dead, timeout=120)
        self.assertEqual(rc, 1, err)
        self.assertEqual(self.summary(out)["errors"], 2)  # its labels, its latest
        self.assertIn("Hello: listing its labels: no answer from the API", err)
        self.assertIn("Hello latest: no answer from the API", err)
        self.assertEqual(self.e.r("EXISTS", "pl:prompt:Hello"), 0)
        rc, out, err = self.e.run("sync", PROMPTLAYER_BASE_URL=dead, timeout=120)
        self.assertEqual(rc, 1, err)
        self.assertIn("listing the templates", err)

    def test_a_refused_key_is_an_error(self):
        rc, out, err = self.e.run("sync", "Hello", PROMPTLAYER_API_KEY="wrong")
        self.assertEqual(rc, 1, err)
        self.assertIn("refused PROMPTLAYER_API_KEY", err)
        self.assertNotIn("wrong", err + out)

    def test_a_failing_template_leaves_the_others_written(self):
        # Hello always answers 500 (tried 5 times); Other answers 500 once, then 200.
        self.e.api.control("POST", "/_fake/faults", [
            {"path_prefix": "/prompt-templates/Hello", "count": 1000, "status": 500},
            {"path_prefix": "/prompt-templates/Other", "count": 1, "status": 500}])
        rc, out, err = self.e.run("sync", "Hello", "Other thing/ü", timeout=120)
        self.assertEqual(rc, 1, err)
        s = self.summary(out)
        # Other: latest, label:prod, version:1; Hello: its labels and its latest fail.
        self.assertEqual((s["templates"], s["refreshed"], s["errors"]), (2, 3, 2))
        self.assertIn("Hello latest: the API answered 500", err)
        self.assertIn("Hello: listing its labels: the API answered 500", err)
        self.assertEqual(self.e.r("EXISTS", "pl:prompt:Hello"), 0)
        self.e.api.control("DELETE", "/_fake/faults")
        self.assertEqual(self.e.cached("Other thing/ü", "latest"), self.e.api_get("Other thing/ü"))

    def test_concurrency_bound_respected(self):
        self.e.api.control("PUT", "/_fake/state", {"templates": many_templates(24)})
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 300})
        t0 = time.monotonic()
        names = [f"T{i:04d}" for i in range(24)]
        s = self.summary(self.ok("sync", *names, PLCACHE_FETCH_CONCURRENCY=4))
        took = time.monotonic() - t0
        # Each: its labels, then latest, label:prod and version:1.
        self.assertEqual((s["templates"], s["refreshed"], s["errors"]), (24, 72, 0))
        arrivals = sorted(r["at_ms"] for r in self.e.api.requests("/prompt-templates/"))
        self.assertEqual(len(arrivals), 96)
        # Each answer takes 300 ms: never more than 4 arrivals within 250 ms.
        most = max(sum(1 for b in arrivals if a <= b < a + 250) for a in arrivals)
        self.assertLessEqual(most, 4)
        self.assertGreaterEqual(most, 2)  # and it did run side by side
        self.assertGreaterEqual(took, 6 * 0.3)


# -- sign -----------------------------------------------------------------------

def oracle(body, secret):
    return hmac.new(secret.encode(), json.dumps(json.loads(body), sort_keys=True).encode(),
                    hashlib.sha256).hexdigest()


class Sign(Case):
    BODIES = [
        '{"event_type":"prompt_template_label_moved","details":{"prompt_template_id":12,'
        '"prompt_template_name":"Hello","prompt_template_version_number":9,'
        '"prompt_template_label":"prod"},"user_id":1,"timestamp":"2023-12-01T22:05:57.924833"}',
        '{"z": [1.5, 1e16, 1e-05, 0.1, -0.0, 12345678901234567890123], "a": "é/\\u0000\\ud83d\\ude00",'
        ' "m": {"b": null, "a": true}, "a": "last wins"}',
        '[]',
        '"just a string"',
        '{"nan": NaN, "inf": -Infinity}',
    ]

    def test_matches_python_for_every_body(self):
        for body in self.BODIES:
            out = self.ok("sign", "--secret", "whsec_x", input=body)
            self.assertEqual(out, oracle(body, "whsec_x") + "\n", body)

    def test_secret_from_the_environment_list_and_file(self):
        body = self.BODIES[0]
        self.assertEqual(self.ok("sign", input=body, PLCACHE_WEBHOOK_SECRET="new,old").strip(),
                         oracle(body, "new"))
        path = os.path.join(self.e.tmp.path, "secret")
        with open(path, "w") as f:
            f.write("filed,other\n")
        self.assertEqual(self.ok("sign", input=body, PLCACHE_WEBHOOK_SECRET_FILE=path).strip(),
                         oracle(body, "filed"))
        self.assertEqual(self.ok("sign", "--secret=flag", input=body,
                                 PLCACHE_WEBHOOK_SECRET="env").strip(), oracle(body, "flag"))
        body_path = os.path.join(self.e.tmp.path, "body.json")
        with open(body_path, "w") as f:
            f.write(body)
        out = self.ok("sign", body_path, PLCACHE_WEBHOOK_SECRET="s")
        self.assertEqual(out, oracle(body, "s") + "\n")

    def test_errors(self):
        _, line = self.fails(2, "sign", "--secret", "s", input="not json")
        self.assertIn("not JSON", line)
        self.fails(2, "sign", "--secret", "s", input="")
        self.assertIn("no secret", self.fails(2, "sign", input="{}")[1])
        self.fails(2, "sign", "--secret", input="{}")
        self.fails(2, "sign", "--secret", "", input="{}")
        self.fails(2, "sign", "--key", "s", input="{}")
        self.fails(1, "sign", "--secret", "s", os.path.join(self.e.tmp.path, "nope"))
        # Not a secret's leak: the secret never shows up on stderr.
        _, line = self.fails(2, "sign", "--secret", "topsecret", input="{")
        self.assertNotIn("topsecret", line)

    def test_the_webhook_accepts_what_sign_prints(self):
        env = h.WebhookEnv(secret="whsec_e2e")
        try:
            env.start()
            body = json.dumps(h.event("agent_run_finished", agent_name="a"), indent=2)
            sig = self.ok("sign", input=body, PLCACHE_WEBHOOK_SECRET="whsec_e2e").strip()
            st, _, data = env.post(body, sig=sig)
            self.assertEqual(st, 200, data)
        finally:
            env.close()


# -- dlq ------------------------------------------------------------------------

class Dlq(Case):
    def kill(self, *jobs):
        """Dead entries as the worker pushes them (LPUSH), the first given oldest."""
        for j in jobs:
            self.e.r("LPUSH", "pl:track:dead", j if isinstance(j, str) else dead_entry(j))

    def test_list_oldest_first_with_a_limit(self):
        self.kill(*[{"n": i} for i in range(150)])
        out = self.ok("dlq", "list").splitlines()
        self.assertEqual(len(out), 100)
        self.assertEqual([json.loads(x)["job"]["n"] for x in out], list(range(100)))
        self.assertEqual(json.loads(out[0]), json.loads(dead_entry({"n": 0})))
        out = self.ok("dlq", "list", "3").splitlines()
        self.assertEqual([json.loads(x)["job"]["n"] for x in out], [0, 1, 2])
        self.assertEqual(self.ok("dlq", "list", "1000").count("\n"), 150)
        self.assertEqual(self.e.r("LLEN", "pl:track:dead"), 150)  # list takes nothing

    def test_retry_n_moves_the_oldest_originals_in_order(self):
        jobs = [{"n": i, "kwargs": {"messages": [], "empty": {}}} for i in range(5)]
        jobs.append({"endpoint": "/rest/track-score", "body": {"score": 1}})
        self.kill(*jobs)
        self.e.r("LPUSH", "pl:track", '{"already": "queued"}')
        self.assertEqual(self.ok("dlq", "retry", "2"), "2\n")
        queued = [json.loads(x) for x in reversed(self.e.r("LRANGE", "pl:track", 0, -1))]
        self.assertEqual(queued, [{"already": "queued"}, jobs[0], jobs[1]])
        # The original job exactly as jansson keeps it: [] stays a list.
        self.assertIn(b'"messages":[]', self.e.r("LINDEX", "pl:track", 0))
        left = [json.loads(x)["job"] for x in self.ok("dlq", "list").splitlines()]
        self.assertEqual(left, jobs[2:])
        self.assertEqual(self.ok("dlq", "retry", "--all"), "4\n")
        self.assertEqual(self.e.r("LLEN", "pl:track:dead"), 0)
        queued = [json.loads(x) for x in reversed(self.e.r("LRANGE", "pl:track", 0, -1))]
        self.assertEqual(queued[1:], jobs)
        self.assertEqual(self.ok("dlq", "retry", "--all"), "0\n")
        self.assertEqual(self.ok("dlq", "retry", "5"), "0\n")

    def test_an_invalid_job_goes_back_as_its_text(self):
        # The worker keeps a job that is not a JSON object as a string of its text.
        self.kill(dead_entry("[1, 2", error="invalid_job: not a JSON object", status=None))
        self.assertEqual(self.ok("dlq", "retry", "1"), "1\n")
        self.assertEqual(self.e.r("LRANGE", "pl:track", 0, -1), [b"[1, 2"])

    def test_an_entry_that_is_not_a_dead_entry_is_left_in_place(self):
        self.kill({"n": 0})
        self.e.r("LPUSH", "pl:track:dead", "garbage")
        self.kill({"n": 2})
        rc, out, err = self.e.run("dlq", "retry", "--all")
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "2\n")
        self.assertIn("not a dead entry", err)
        self.assertEqual(self.e.r("LRANGE", "pl:track:dead", 0, -1), [b"garbage"])

    def test_purge_prints_how_many(self):
        self.kill(*[{"n": i} for i in range(7)])
        self.assertEqual(self.ok("dlq", "purge"), "7\n")
        self.assertEqual(self.e.r("EXISTS", "pl:track:dead"), 0)
        self.assertEqual(self.ok("dlq", "purge"), "0\n")
        self.assertEqual(self.ok("dlq", "list"), "")

    def test_usage_errors(self):
        for args in (["dlq"], ["dlq", "frob"], ["dlq", "list", "0"], ["dlq", "list", "x"],
                     ["dlq", "list", "1", "2"], ["dlq", "retry"], ["dlq", "retry", "0"],
                     ["dlq", "retry", "-3"], ["dlq", "retry", "all"], ["dlq", "purge", "now"]):
            self.fails(2, *args)

    def test_retry_with_a_real_worker_delivers_the_jobs(self):
        w = h.WorkerEnv()
        try:
            w.fault({"method": "POST", "path_prefix": "/log-request", "count": 3, "status": 400})
            w.start()
            w.push(h.log_request("a"), h.log_request("b"), h.log_request("c"))
            h.wait_until(lambda: w.r("LLEN", w.key("track:dead")) == 3, 15, what="3 dead jobs")
            env = {"PLCACHE_REDIS_URL": w.env["PLCACHE_REDIS_URL"]}
            listed = [json.loads(x) for x in self.ok("dlq", "list", **env).splitlines()]
            # Sent side by side, they die in the order their answers came.
            self.assertEqual(sorted(d["job"]["uid"] for d in listed), ["a", "b", "c"])
            self.assertEqual({d["status"] for d in listed}, {400})
            self.assertEqual(self.ok("dlq", "retry", "--all", **env), "3\n")
            got = w.wait_delivered(["a", "b", "c"])
            self.assertEqual(got, {"a": 1, "b": 1, "c": 1})
            self.assertEqual(self.ok("dlq", "list", **env), "")
        finally:
            w.close()


# -- stats ----------------------------------------------------------------------

class Stats(Case):
    def test_every_field(self):
        now = int(time.time() * 1000)
        r = self.e.r
        r("LPUSH", "pl:track", "{}", "{}", "{}")
        r("ZADD", "pl:track:retry", now + 1000, "{\"r\":1}")
        r("LPUSH", "pl:track:dead", dead_entry({}), dead_entry({"x": 1}))
        r("LPUSH", "pl:track:processing:w1", "{}")
        r("LPUSH", "pl:track:processing:w2", "{}", "{}")
        r("ZADD", "pl:track:workers", now - 1500, "w1", now - 20000, "w2")
        r("HSET", "pl:prompt:Hello", "latest", "{}")
        r("HSET", "pl:prompt:Other", "latest", "{}")
        r("HSET", "pl:prompt-ids", "1", "Hello")
        r("XADD", "pl:events", "*", "type", "x", "payload", "{}")
        r("XADD", "pl:events", "*", "type", "y", "payload", "{}")
        r("XGROUP", "CREATE", "pl:events", "plcache-applier", "0")
        r("XREADGROUP", "GROUP", "plcache-applier", "c1", "COUNT", "1", "STREAMS", "pl:events", ">")
        r("XADD", "pl:events:dead", "*", "id", "1-0", "type", "z", "payload", "{}")
        s = json.loads(self.ok("stats"))
        self.assertEqual(s["track"], {"queued": 3, "retry": 1, "dead": 2,
                                      "processing": {"w1": 1, "w2": 2}})
        workers = {w["id"]: w for w in s["workers"]}
        self.assertEqual(set(workers), {"w1", "w2"})
        self.assertEqual(workers["w1"]["last_heartbeat_ms"], now - 1500)
        self.assertAlmostEqual(workers["w1"]["age_s"], 1.5, delta=3)
        self.assertGreater(workers["w2"]["age_s"], 19)
        self.assertTrue(workers["w1"]["last_heartbeat"].endswith("Z"))
        self.assertEqual(s["templates"], 2)
        self.assertEqual(s["events"]["length"], 2)
        self.assertEqual(s["events"]["dead"], 1)
        g = s["events"]["groups"]
        self.assertEqual(len(g), 1)
        self.assertEqual((g[0]["name"], g[0]["pending"], g[0]["consumers"]),
                         ("plcache-applier", 1, 1))
        self.assertEqual(g[0]["lag"], 1)

    def test_json_on_a_pipe_or_with_json_ages_without_float_noise(self):
        now = int(time.time() * 1000)
        self.e.r("ZADD", "pl:track:workers", now - 990, "w1", now - 20000, "w2")
        for args in (["stats"], ["stats", "--json"]):
            out = self.ok(*args)
            self.assertEqual(out.count("\n"), 1, out)
            ages = re.findall(r'"age_s":([0-9.eE+-]+)[,}]', out)
            self.assertEqual(len(ages), 2, out)
            for a in ages:
                self.assertRegex(a, r"^\d+(\.\d{1,3})?$", out)
        # --json on a terminal too.
        rc, tty, err = self.e.run_tty("stats", "--json")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(json.loads(tty)["templates"], 0)

    def test_readable_on_a_terminal_with_durations_as_people_read_them(self):
        now = int(time.time() * 1000)
        r = self.e.r
        r("LPUSH", "pl:track", "{}", "{}", "{}")
        r("LPUSH", "pl:track:dead", dead_entry({}))
        r("LPUSH", "pl:track:processing:w1", "{}")
        r("ZADD", "pl:track:workers", now - 1500, "w1", now - 20000, "w2",
          now - (3 * 3600 + 5 * 60 + 30) * 1000, "w3", now - 4 * 86400 * 1000 - 5000, "w4")
        r("HSET", "pl:prompt:Hello", "latest", "{}")
        r("XADD", "pl:events", "*", "type", "x", "payload", "{}")
        r("XGROUP", "CREATE", "pl:events", "plcache-applier", "0")
        rc, tty, err = self.e.run_tty("stats")
        self.assertEqual((rc, err), (0, ""), tty)
        self.assertNotIn("{", tty)
        self.assertRegex(tty, r"queued +3\n")
        self.assertRegex(tty, r"dead +1 +\(plcache dlq list shows them\)")
        self.assertRegex(tty, r"processing +1 by w1\n")
        self.assertRegex(tty, r"workers +4\n")
        self.assertRegex(tty, r"w1 +last heartbeat 1\.[4-9] s ago \(\d{4}-\d\d-\d\dT[0-9:.]+Z\)")
        self.assertRegex(tty, r"w2 +last heartbeat 2\d s ago")
        self.assertRegex(tty, r"w3 +last heartbeat 3 h 5 min ago")
        self.assertRegex(tty, r"w4 +last heartbeat 4 days ago")
        self.assertRegex(tty, r"templates +1 cached")
        self.assertRegex(tty, r"group plcache-applier: 0 consumers, 0 pending, 1 not yet read")
        rc, tty, _ = self.e.run_tty("stats", PLCACHE_REDIS_URL=f"redis://127.0.0.1:{h.free_port()}/0",
                                    PLCACHE_REDIS_TIMEOUT=1)
        self.assertEqual((rc, tty), (1, ""))

    def test_an_empty_redis(self):
        s = json.loads(self.ok("stats"))
        self.assertEqual(s, {"track": {"queued": 0, "retry": 0, "dead": 0, "processing": {}},
                             "workers": [], "templates": 0,
                             "events": {"length": 0, "dead": 0, "groups": []}})
        self.fails(2, "stats", "now")


# -- ls and show ------------------------------------------------------------------

def version_json(v, created=None, commit=None, model=None, **extra):
    """A cached entry shaped like PromptLayer's raw GET answer (the fields
    ls and show read)."""
    o = {"id": 1, "prompt_name": "Hello", "version": v,
         "prompt_template": {"type": "chat", "messages": [{"role": "system", "content": []}]},
         "metadata": {"model": model} if model else None, "commit_message": commit,
         "created_at": created, "llm_kwargs": None}
    o.update(extra)
    return json.dumps(o)


def iso_ago(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - seconds))


class LsShow(Case):
    def fill(self):
        r = self.e.r
        v1 = version_json(1, iso_ago(2 * 86400 + 60), "first", {"provider": "openai", "name": "gpt-4o"})
        v2 = version_json(2, iso_ago(125 * 60), "shorter", {"provider": "openai", "name": "gpt-4o"})
        r("HSET", "pl:prompt:Hello", "latest", v2, "version:2", v2, "version:1", v1,
          "label:prod", v1, "label:staging", v2, "id", "1", "gen", "7", "at:label:prod", "123")
        other = json.dumps({"version": 3, "prompt_name": "Other thing/ü",
                            "prompt_template": {"type": "completion", "content": []}})
        r("HSET", "pl:prompt:Other thing/ü", "latest", other, "id", "2", "gen", "1")
        r("HSET", "pl:prompt:Help*", "latest", version_json(1, "not a date"))
        r("HSET", "pl:prompt-ids", "1", "Hello")   # not a template
        r("HSET", "x:prompt:Elsewhere", "latest", "{}")  # another prefix
        return v1, v2, other

    def test_ls_json_lists_every_template_with_labels_versions_and_ages(self):
        self.fill()
        for args in (["ls"], ["ls", "--json"]):
            out = json.loads(self.ok(*args))
            self.assertEqual([t["name"] for t in out], ["Hello", "Help*", "Other thing/ü"])
        hello = out[0]
        self.assertEqual((hello["id"], hello["latest"], hello["labels"], hello["versions"]),
                         ("1", 2, {"prod": 1, "staging": 2}, [1, 2]))
        self.assertAlmostEqual(hello["age_s"], 125 * 60, delta=30)
        self.assertAlmostEqual(hello["ages"]["label:prod"], 2 * 86400 + 60, delta=30)
        self.assertEqual(set(hello["ages"]), {"latest", "label:prod", "label:staging",
                                              "version:1", "version:2"})
        self.assertEqual((out[1]["age_s"], out[1]["created_at"]), (None, None))  # unreadable date
        self.assertEqual((out[2]["id"], out[2]["latest"], out[2]["labels"], out[2]["versions"]),
                         ("2", 3, {}, []))
        # A glob on the name; the key prefix's own glob characters are literal.
        self.assertEqual([t["name"] for t in json.loads(self.ok("ls", "Hel*"))], ["Hello", "Help*"])
        self.assertEqual([t["name"] for t in json.loads(self.ok("ls", "Help\\*"))], ["Help*"])
        self.assertEqual([t["name"] for t in json.loads(self.ok("ls", "--prefix", "x:"))],
                         ["Elsewhere"])
        out, line = self.fails(1, "ls", "Nope*")
        self.assertEqual(json.loads(out), [])
        self.assertIn("plcache sync", line)
        self.fails(2, "ls", "a", "b")
        self.fails(2, "ls", "--long")

    def test_ls_readable_on_a_terminal(self):
        self.fill()
        rc, tty, err = self.e.run_tty("ls")
        self.assertEqual((rc, err), (0, ""), tty)
        lines = tty.splitlines()
        self.assertRegex(lines[0], r"^TEMPLATE +LATEST +AGE +LABELS")
        self.assertRegex(lines[1], r"^Hello +2 +2 h 5 min +prod=1 staging=2 +\[1 2\]$")
        self.assertRegex(lines[2], r"^Help\* +1 +- +- +\[\]$")
        self.assertRegex(lines[3], r"^Other thing/ü +3 +- +- +\[\]$")
        # The columns line up, counted in characters (ü is two bytes).
        self.assertEqual(lines[1].index("2 h"), lines[0].index("AGE"))
        self.assertEqual(lines[3].index("-"), lines[0].index("AGE"))
        rc, tty, err = self.e.run_tty("ls", "Zzz*")
        self.assertEqual(rc, 1)
        self.assertEqual(tty, "")
        self.assertIn("no cached template matches 'Zzz*'", err)
        self.e.r("FLUSHALL")
        rc, tty, err = self.e.run_tty("ls")
        self.assertEqual((rc, tty), (0, ""))
        self.assertIn("no template is cached yet (plcache sync", err)

    def test_show_json_gives_each_field_and_exactly_what_get_prints(self):
        v1, v2, _ = self.fill()
        for args in (["show", "Hello"], ["show", "Hello", "--json"]):
            s = json.loads(self.ok(*args))
        self.assertEqual((s["name"], s["id"], s["gen"]), ("Hello", "1", "7"))
        fields = [e["field"] for e in s["entries"]]
        self.assertEqual(fields, ["latest", "label:prod", "label:staging", "version:1", "version:2"])
        by = {e["field"]: e for e in s["entries"]}
        self.assertEqual(by["label:prod"]["selector"], {"kind": "label", "value": "prod"})
        self.assertEqual(by["version:2"]["selector"], {"kind": "version", "value": "2"})
        self.assertEqual(by["latest"]["selector"], {"kind": "latest", "value": None})
        self.assertEqual((by["label:prod"]["version"], by["latest"]["version"]), (1, 2))
        self.assertAlmostEqual(by["label:prod"]["age_s"], 2 * 86400 + 60, delta=30)
        self.assertEqual(by["label:prod"]["created_at"], json.loads(v1)["created_at"])
        for e, args in ((by["latest"], []), (by["label:prod"], ["--label", "prod"]),
                        (by["label:staging"], ["--label", "staging"]),
                        (by["version:1"], ["--version", "1"])):
            self.assertEqual(e["value"] + "\n", self.ok("get", "Hello", *args,
                                                        PROMPTLAYER_API_KEY=None))
        self.assertNotIn("at:label:prod", fields)
        s = json.loads(self.ok("show", "Other thing/ü"))
        self.assertEqual((s["entries"][0]["age_s"], s["entries"][0]["created_at"]), (None, None))

    def test_show_readable_on_a_terminal(self):
        self.fill()
        rc, tty, err = self.e.run_tty("show", "Hello")
        self.assertEqual((rc, err), (0, ""), tty)
        self.assertIn("Hello   id 1, gen 7", tty)
        self.assertRegex(tty, r"\nlatest +2 +2 h 5 min +\d{4}-\d\d-\d\dT")
        self.assertRegex(tty, r"\nlabel:prod +1 +2 days +")
        self.assertRegex(tty, r"\nversion:2 +2 +2 h 5 min")
        self.assertIn("  plcache get Hello --label prod\n      chat, 1 message, openai/gpt-4o, "
                      "no llm_kwargs, \"first\"\n", tty)
        self.assertIn("  plcache get Hello\n      chat, 1 message, openai/gpt-4o, no llm_kwargs, "
                      "\"shorter\"\n", tty)
        self.assertIn("  plcache get Hello --version 1\n", tty)
        self.assertNotIn("at:label", tty)
        self.assertIn("created_at", tty)  # says what the age is
        rc, tty, err = self.e.run_tty("show", "Other thing/ü")
        self.assertEqual(rc, 0)
        self.assertIn("  plcache get 'Other thing/ü'\n      completion, 0 blocks", tty)

    def test_show_errors_say_what_to_do(self):
        self.fill()
        _, line = self.fails(1, "show", "Nope")
        self.assertIn("Nope is not cached", line)
        self.assertIn("plcache ls", line)
        self.assertIn("plcache get Nope", line)
        self.assertIn("plcache ls", self.fails(2, "show")[1])
        self.fails(2, "show", "a", "b")
        self.fails(2, "show", "Hello", "--raw")

    def test_names_and_labels_cannot_drive_the_terminal(self):
        self.e.r("HSET", "pl:prompt:Evil\x1b[2J", "latest", version_json(1),
                 "label:x\x1b]0;t\x07", version_json(1))
        for args in (["ls"], ["show", "Evil\x1b[2J"]):
            rc, tty, _ = self.e.run_tty(*args)
            self.assertEqual(rc, 0)
            self.assertNotIn("\x1b", tty)
            self.assertIn("Evil?[2J", tty)


# -- the Python example app server ---------------------------------------------

class Example(unittest.TestCase):
    def test_python_example_reads_a_prompt_and_logs_through_the_daemons(self):
        if not os.path.exists(SYSTEM_PYTHON):
            self.fail(f"{SYSTEM_PYTHON} missing (scripts/bootstrap installs python3-redis)")
        wh = h.WebhookEnv(fixture=FIXTURE, PLCACHE_RESYNC_INTERVAL=0)
        worker = None
        try:
            wh.start()
            worker = h.Daemon(os.environ.get("PLCACHE_WORKER_BIN", ""), {
                "PLCACHE_REDIS_URL": wh.env["PLCACHE_REDIS_URL"],
                "PROMPTLAYER_API_KEY": wh.api.api_key,
                "PROMPTLAYER_BASE_URL": wh.api.url,
                "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{h.free_port()}",
                "PLCACHE_WORKER_ID": "example",
            }, wh.tmp.path, "worker").start()
            # PromptLayer announces a label move; the cache follows.
            st, _, data = wh.post(h.event("prompt_template_label_moved", prompt_template_name="Hello",
                                          prompt_template_id=1, prompt_template_version_number=1,
                                          prompt_template_label="prod"))
            self.assertEqual(st, 200, data)
            h.wait_until(lambda: wh.redis_cmd("HGET", "pl:prompt:Hello", "label:prod"), 15,
                         what="label:prod cached")
            env = {k: v for k, v in os.environ.items()
                   if not (k.startswith("PLCACHE_") or k.startswith("PYTHON"))}
            env["PLCACHE_REDIS_URL"] = wh.env["PLCACHE_REDIS_URL"]
            p = subprocess.run([SYSTEM_PYTHON, EXAMPLE, "Hello", "prod"], env=env,
                               capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            out = json.loads(p.stdout)
            self.assertEqual((out["prompt"], out["version"]), ("Hello", 1))

            def forwarded():
                for r in wh.api.requests("/log-request"):
                    if r["status"] == 201:
                        return json.loads(r["body"])
                return None
            body = h.wait_until(forwarded, 15, what="the example's job forwarded by the worker")
            self.assertEqual((body["prompt_name"], body["prompt_version_number"]), ("Hello", 1))
            self.assertEqual(wh.redis_cmd("LLEN", "pl:track"), 0)
        finally:
            failures = h.stop_daemons([worker] if worker else [])
            wh.close()
            if failures:
                raise AssertionError("\n".join(failures))


if __name__ == "__main__":
    h.main()
