"""test_apply.py -- the applier: webhook in -> Redis content equal to the API's.

Real redis-server, real plcache-webhook, the fake PromptLayer API. Each test
changes the fake's state as PromptLayer would, posts the webhook PromptLayer
would send, and waits (bounded) until the cache holds what the API serves.
"""
import json
import os
import signal
import socket
import threading
import time
import unittest
import urllib.parse

import harness as h

FIXTURE = {"templates": [
    {"id": 1, "prompt_name": "Hello",
     "versions": {"1": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "one"},
                  "2": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "two"}},
     "labels": {"prod": 1, "staging": 2}},
    {"id": 2, "prompt_name": "Other thing/ü",
     "versions": {"1": {"prompt_template": {"type": "completion", "content": []}}},
     "labels": {"prod": 1}},
]}


def completion(text):
    """A completion prompt_template the fake API accepts."""
    return {"type": "completion", "content": [{"type": "text", "text": text}]}


class Case(unittest.TestCase):
    settings = {}
    redis_extra = ()

    def setUp(self):
        self.e = h.WebhookEnv(fixture=FIXTURE, redis_extra=self.redis_extra,
                              **{"PLCACHE_RESYNC_INTERVAL": 0, "PLCACHE_CLAIM_IDLE": 2,
                                 **self.settings})
        self.e.start()

    def tearDown(self):
        self.e.close()

    # -- helpers --------------------------------------------------------------

    def send(self, event_type, port=None, **details):
        st, _, data = self.e.post(h.event(event_type, **details), port=port)
        self.assertEqual(st, 200, data)

    def api(self, name, **sel):
        """What the fake API serves now (parsed), or None for 404."""
        q = ("?" + urllib.parse.urlencode(sel)) if sel else ""
        st, _, body = h.request(self.e.api.port, "GET",
                                "/prompt-templates/" + urllib.parse.quote(name, safe="") + q,
                                headers={"X-API-KEY": self.e.api.api_key})
        return json.loads(body) if st == 200 else None

    def cached(self, name, field):
        v = self.e.redis_cmd("HGET", "pl:prompt:" + name, field)
        return json.loads(v) if v is not None else None

    def wait_cached(self, name, field, want, timeout=15):
        h.wait_until(lambda: self.cached(name, field) == want, timeout,
                     what=f"{name} {field} == {str(want)[:80]}")

    def wait_applied(self, n, timeout=15):
        h.wait_until(lambda: self.e.metric("plcache_apply_events_total") >= n, timeout,
                     what=f"{n} events applied")

    def version_created(self, name="Hello", version=3, tid=1, content=None):
        if content is not None:
            self.e.api.control("POST", f"/_fake/templates/{urllib.parse.quote(name, safe='')}/versions",
                               {"version": version, "content": content})
        self.send("prompt_template_version_created", prompt_template_name=name,
                  prompt_template_id=tid, prompt_template_version_number=version)

    def label_moved(self, label, version, name="Hello", tid=1, move_fake=True):
        if move_fake:
            self.e.api.control("PUT", f"/_fake/templates/{name}/labels/{label}", {"version": version})
        self.send("prompt_template_label_moved", prompt_template_name=name, prompt_template_id=tid,
                  prompt_template_version_number=version, prompt_template_label=label)


class Events(Case):
    def test_version_created_sets_version_latest_id_and_publishes(self):
        sub = h.RedisClient(self.e.redis.port, timeout=10)
        sub("SUBSCRIBE", "pl:invalidate")
        self.e.api.control("POST", "/_fake/templates/Hello/versions",
                           {"version": 3, "content": {"prompt_template": completion("v3")}})
        want, latest = self.api("Hello", version=3), self.api("Hello")
        self.e.api.control("DELETE", "/_fake/requests")
        self.version_created(version=3)
        self.wait_cached("Hello", "version:3", want)
        self.assertEqual(self.cached("Hello", "latest"), latest)
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt:Hello", "id"), b"1")
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt-ids", "1"), b"Hello")
        self.assertGreaterEqual(int(self.e.redis_cmd("HGET", "pl:prompt:Hello", "gen")), 1)
        msg = sub._read()
        self.assertEqual(msg, [b"message", b"pl:invalidate", b"Hello"])
        sub.close()
        # What plcache asked the API: the event's template by id, and version,
        # with the key and no-cache.
        reqs = self.e.api.requests("/prompt-templates/1")
        self.assertEqual(sorted(r["query"] for r in reqs),
                         ["include_llm_kwargs=true", "version=3&include_llm_kwargs=true"])
        self.assertEqual(reqs[0]["api_key"], "test-key")
        self.assertEqual(reqs[0]["cache_control"], "no-cache")

    def test_created_event_for_a_new_template(self):
        self.e.api.control("PUT", "/_fake/templates/Brand%20new",
                           {"id": 7, "versions": {"1": {"prompt_template": completion("x")}}})
        self.send("prompt_template_created", prompt_template_name="Brand new", prompt_template_id=7,
                  prompt_template_version_number=1)
        self.wait_cached("Brand new", "latest", self.api("Brand new"))
        self.assertEqual(self.cached("Brand new", "version:1"), self.api("Brand new", version=1))

    def test_older_version_never_moves_latest_backwards(self):
        self.version_created(version=3, content={"commit_message": "3"})
        self.wait_cached("Hello", "latest", self.api("Hello", version=3))
        self.version_created(version=1)
        self.wait_cached("Hello", "version:1", self.api("Hello", version=1))
        self.assertEqual(self.cached("Hello", "latest")["version"], 3)

    def test_label_move_to_a_cached_version_is_repointed_before_any_fetch(self):
        self.version_created(version=2)
        v2 = self.api("Hello", version=2)
        self.wait_cached("Hello", "version:2", v2)
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 2})
        want = self.api("Hello", label="prod")
        # Every API answer about Hello now takes 3 s: the repoint must not wait.
        self.e.api.control("POST", "/_fake/faults",
                           {"path_prefix": "/prompt-templates/1", "count": 5, "delay_ms": 3000})
        t0 = time.monotonic()
        self.label_moved("prod", 2, move_fake=False)
        self.wait_cached("Hello", "label:prod", v2, timeout=2.5)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.wait_cached("Hello", "label:prod", want)

    def test_label_move_to_an_uncached_version_fetches_it(self):
        self.label_moved("staging", 1)
        self.wait_cached("Hello", "label:staging", self.api("Hello", label="staging"))
        self.assertEqual(self.cached("Hello", "label:staging")["version"], 1)

    def test_label_created_then_deleted(self):
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/beta", {"version": 2})
        self.send("prompt_template_label_created", prompt_template_name="Hello", prompt_template_id=1,
                  prompt_template_version_number=2, prompt_template_label="beta")
        self.wait_cached("Hello", "label:beta", self.api("Hello", label="beta"))
        self.e.api.control("DELETE", "/_fake/templates/Hello/labels/beta")
        self.send("prompt_template_label_deleted", prompt_template_name="Hello", prompt_template_id=1,
                  prompt_template_version_number=2, prompt_template_label="beta")
        self.wait_cached("Hello", "label:beta", None)

    def test_label_change_approved_move_and_deletion(self):
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 2})
        self.send("prompt_template_label_change_approved", prompt_template_name="Hello",
                  prompt_template_id=1, prompt_template_label="prod", change_type="move")
        self.wait_cached("Hello", "label:prod", self.api("Hello", label="prod"))
        # PromptLayer deletes the label when it approves the deletion, then says so.
        self.e.api.control("DELETE", "/_fake/templates/Hello/labels/prod")
        self.send("prompt_template_label_change_approved", prompt_template_name="Hello",
                  prompt_template_id=1, prompt_template_label="prod", change_type="deletion")
        self.wait_cached("Hello", "label:prod", None)

    def test_rename_moves_the_template_under_its_new_name(self):
        self.version_created(version=2)
        self.label_moved("prod", 1, move_fake=False)
        self.wait_cached("Hello", "label:prod", self.api("Hello", label="prod"))
        self.e.api.control("POST", "/_fake/templates/Hello/rename", {"new_name": "Hola"})
        self.send("prompt_template_name_changed", prompt_template_id=1, prompt_template_name="Hola",
                  old_prompt_template_name="Hello")
        self.wait_cached("Hola", "label:prod", self.api("Hola", label="prod"))
        self.assertEqual(self.cached("Hola", "label:prod")["prompt_name"], "Hola")
        self.assertEqual(self.cached("Hola", "version:2"), self.api("Hola", version=2))
        self.assertEqual(self.cached("Hola", "latest"), self.api("Hola"))
        self.assertEqual(self.e.redis_cmd("EXISTS", "pl:prompt:Hello"), 0)
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt-ids", "1"), b"Hola")

    def test_delete_drops_the_template_and_its_id(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.api("Hello", version=2))
        self.e.api.control("DELETE", "/_fake/templates/Hello")
        self.send("prompt_template_deleted", prompt_template_id=1, prompt_template_name="Hello")
        h.wait_until(lambda: self.e.redis_cmd("EXISTS", "pl:prompt:Hello") == 0, 15, what="drop")
        self.assertIsNone(self.e.redis_cmd("HGET", "pl:prompt-ids", "1"))

    def test_snippet_update_refreshes_the_version_and_every_field_holding_it(self):
        self.version_created(version=2)
        self.label_moved("staging", 2)
        self.wait_cached("Hello", "label:staging", self.api("Hello", label="staging"))
        self.wait_cached("Hello", "latest", self.api("Hello"))
        # The snippet a version imports changed: same version, new content.
        self.e.api.control("POST", "/_fake/templates/Hello/versions",
                           {"version": 2, "content": {"prompt_template": completion("snippet: new")}})
        self.send("prompt_template_updated", prompt_template_id=1, prompt_template_name="Hello",
                  prompt_template_version_number=2)
        want = self.api("Hello", version=2)
        self.assertEqual(want["prompt_template"], completion("snippet: new"))
        self.wait_cached("Hello", "version:2", want)
        self.assertEqual(self.cached("Hello", "label:staging"), want)
        self.assertEqual(self.cached("Hello", "latest"), want)

    def test_names_are_url_encoded(self):
        self.send("prompt_template_version_created", prompt_template_name="Other thing/ü",
                  prompt_template_id=2, prompt_template_version_number=1)
        self.wait_cached("Other thing/ü", "version:1", self.api("Other thing/ü", version=1))

    def test_events_twice_and_out_of_order_converge_on_the_api(self):
        self.e.api.control("POST", "/_fake/templates/Hello/versions",
                           {"version": 3, "content": {"commit_message": "3"}})
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 3})
        # Delivered late and twice: the old move to 1 after the move to 3.
        self.label_moved("prod", 3, move_fake=False)
        self.label_moved("prod", 3, move_fake=False)
        self.label_moved("prod", 1, move_fake=False)
        self.version_created(version=3)
        self.version_created(version=1)
        self.wait_applied(5)
        self.assertEqual(self.cached("Hello", "label:prod"), self.api("Hello", label="prod"))
        self.assertEqual(self.cached("Hello", "label:prod")["version"], 3)
        self.assertEqual(self.cached("Hello", "latest"), self.api("Hello"))

    def test_other_events_are_only_recorded(self):
        for t in ("agent_run_finished", "report_finished", "prompt_template_label_change_requested"):
            self.send(t, prompt_template_name="Hello")
        self.wait_applied(3)
        self.assertEqual(self.e.redis_cmd("EXISTS", "pl:prompt:Hello"), 0)
        self.assertEqual(self.e.api.requests("/prompt-templates"), [])

    def test_a_404_removes_the_field(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.api("Hello", version=2))
        self.e.api.control("PUT", "/_fake/templates/Hello",
                           {"versions": {"1": {}, "3": {}}, "labels": {"prod": 1}})
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", None)


class ApiFailures(Case):
    settings = {"PLCACHE_FETCH_TIMEOUT": 1}

    def setUp(self):
        super().setUp()
        # What the API serves, read before any fault is queued (the test's
        # own reads would meet the faults too).
        self.want = self.api("Hello", version=2)

    def fault(self, **f):
        f.setdefault("path_prefix", "/prompt-templates/1")  # Hello, by id
        self.e.api.control("POST", "/_fake/faults", f)

    def test_500_then_success_is_retried_and_applied(self):
        self.fault(count=2, status=500)
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.want)
        self.assertGreaterEqual(self.e.metric("plcache_api_retries_total"), 2)
        self.assertEqual(self.e.metric('plcache_api_requests_total{status="500"}'), 2)

    def test_429_with_retry_after_is_honoured(self):
        self.fault(count=1, status=429, retry_after="2")
        t0 = time.monotonic()
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.want)
        self.assertGreaterEqual(time.monotonic() - t0, 1.8)

    def test_timeout_is_retried(self):
        self.fault(count=1, delay_ms=3000)
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.want)
        self.assertGreaterEqual(self.e.metric("plcache_api_retries_total"), 1)

    def test_dropped_connection_is_retried(self):
        self.fault(count=2, drop=True)
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.want)
        self.assertGreaterEqual(self.e.metric("plcache_api_retries_total"), 2)

    def test_api_down_longer_than_the_retries_leaves_the_event_pending_then_applies_it(self):
        # Five failing attempts exhaust the fetcher (for each of the event's
        # two fetches, version and latest); the entry stays pending and is
        # claimed again after PLCACHE_CLAIM_IDLE (2 s here).
        self.fault(count=10, status=503)
        self.version_created(version=2)
        h.wait_until(lambda: self.e.metric("plcache_apply_failures_total") >= 1, 60,
                     what="a failed application")
        self.assertIsNone(self.cached("Hello", "version:2"))
        self.wait_cached("Hello", "version:2", self.want, timeout=30)
        self.assertGreaterEqual(self.e.metric("plcache_apply_claimed_total"), 1)

    def test_the_oldest_pending_event_has_an_age_until_it_is_applied(self):
        self.fault(count=1000, status=503)
        self.version_created(version=2)
        # Counted every 10 s: the event is seen pending, and older each time.
        h.wait_until(lambda: self.e.metric("plcache_apply_oldest_pending_seconds") > 0, 25,
                     what="an age for the pending event")
        first = self.e.metric("plcache_apply_oldest_pending_seconds")
        self.e.api.control("DELETE", "/_fake/faults")
        self.wait_cached("Hello", "version:2", self.want, timeout=30)
        h.wait_until(lambda: self.e.metric("plcache_apply_oldest_pending_seconds") == 0, 25,
                     what="no pending event, age 0")
        self.assertGreater(first, 0)


class Receivers(Case):
    def test_a_killed_receiver_leaves_its_events_to_another(self):
        # The API holds every answer 4 s: the first receiver dies mid-fetch.
        self.e.api.control("POST", "/_fake/faults",
                           {"path_prefix": "/prompt-templates/1", "count": 1, "delay_ms": 4000})
        self.version_created(version=2)
        h.wait_until(lambda: len(self.e.api.requests("/prompt-templates/1")) >= 1, 10,
                     what="the first fetch")
        self.e.daemon.stop(signal.SIGKILL)
        self.e.daemons.remove(self.e.daemon)
        pending = self.e.redis_cmd("XPENDING", "pl:events", "plcache-applier")
        self.assertEqual(pending[0], 1)
        other = self.e.another(PLCACHE_CLAIM_IDLE=1)
        self.e.start(daemon=other)
        port = int(other.env["PLCACHE_LISTEN"].rsplit(":", 1)[1])
        self.wait_cached("Hello", "version:2", self.api("Hello", version=2), timeout=20)
        h.wait_until(lambda: self.e.metric("plcache_apply_claimed_total", port) >= 1, 10,
                     what="claimed metric")
        h.wait_until(lambda: self.e.redis_cmd("XPENDING", "pl:events", "plcache-applier")[0] == 0,
                     10, what="nothing pending")

    def test_two_receivers_share_the_work(self):
        other = self.e.another()
        self.e.start(daemon=other)
        port2 = int(other.env["PLCACHE_LISTEN"].rsplit(":", 1)[1])
        for v in range(3, 13):
            self.e.api.control("POST", "/_fake/templates/Hello/versions",
                               {"version": v, "content": {"n": v}})
        for v in range(3, 13):
            body = h.event("prompt_template_version_created", prompt_template_name="Hello",
                           prompt_template_id=1, prompt_template_version_number=v)
            st, _, _ = self.e.post(body, port=self.e.port if v % 2 else port2)
            self.assertEqual(st, 200)
        for v in range(3, 13):
            self.wait_cached("Hello", f"version:{v}", self.api("Hello", version=v))
        self.assertEqual(self.cached("Hello", "latest")["version"], 12)
        total = self.e.metric("plcache_apply_events_total") + self.e.metric(
            "plcache_apply_events_total", port2)
        self.assertEqual(total, 10)


class Basis(Case):
    """Writes carry what they were based on: an older answer, a late event or
    a delete of what was since made again never takes the cache back. Each
    fails on the daemons before issue 16."""
    # No claim in these tests: each event is applied by the receiver it reached.
    settings = {"PLCACHE_CLAIM_IDLE": 30}

    def applied(self, port=None):
        return self.e.metric("plcache_apply_events_total", port)

    def watch(self, name, field, seconds):
        """The versions field held, polled for `seconds` (None: absent)."""
        seen, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            v = self.cached(name, field)
            seen.append(v["version"] if v else None)
            time.sleep(0.005)
        return seen

    def race(self, tid, first, second, settled):
        """Receiver A takes event first() and fetches (its answer, the API's
        state then, held back 1.5 s); while it waits, the API changes and
        receiver B applies event second(port) until settled(); then A's
        answer comes in, older than what B wrote."""
        path = f"/prompt-templates/{tid}"  # the applier asks by template id
        self.e.api.control("POST", "/_fake/faults", {"method": "GET", "path_prefix": path, "delay_ms": 1500})
        self.e.api.control("DELETE", "/_fake/requests")
        first()
        h.wait_until(lambda: self.e.api.requests(path), 10, what="A's fetch")
        os.kill(self.e.daemon.proc.pid, signal.SIGSTOP)
        try:
            # A's blocked read would be handed the next event: end it, so B takes it.
            blocked = [ln for ln in self.e.redis_cmd("CLIENT", "LIST").decode().splitlines()
                       if "cmd=xreadgroup" in ln]
            self.assertEqual(len(blocked), 1, blocked)
            self.e.redis_cmd("CLIENT", "KILL", "ID", blocked[0].split()[0].split("=")[1])
            b = self.e.another()
            self.e.start(daemon=b)
            bport = int(b.env["PLCACHE_LISTEN"].rsplit(":", 1)[1])
            second(bport)
            h.wait_until(lambda: self.applied(bport) >= 1, 15, what="B's event applied")
            h.wait_until(settled, 15, what="B's write")
        finally:
            os.kill(self.e.daemon.proc.pid, signal.SIGCONT)
        h.wait_until(lambda: self.applied() >= 1, 15, what="A's event applied")
        time.sleep(0.3)

    def test_an_older_answer_from_another_receiver_is_not_written_last(self):
        self.e.api.control("POST", "/_fake/templates/Hello/versions", {"version": 3, "content": {
            "prompt_template": completion("v3")}})

        def second(port):
            self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 3})
            self.send("prompt_template_label_moved", port=port, prompt_template_name="Hello",
                      prompt_template_id=1, prompt_template_version_number=3, prompt_template_label="prod")
        self.race(1, lambda: self.label_moved("prod", 2), second,
                  lambda: (self.cached("Hello", "label:prod") or {}).get("version") == 3)
        # A's answer (prod at 2) came in after B's write: refused, fetched again.
        self.assertEqual(self.cached("Hello", "label:prod"), self.api("Hello", label="prod"))
        self.assertGreaterEqual(self.e.metric("plcache_cache_writes_redone_total"), 1)

    def test_an_answer_fetched_before_a_delete_does_not_bring_the_template_back(self):
        self.e.api.control("PUT", "/_fake/templates/Fresh", {"id": 9, "versions": {
            "1": {"prompt_template": completion("one")}}, "labels": {}})

        def second(port):
            self.e.api.control("DELETE", "/_fake/templates/Fresh")
            self.send("prompt_template_deleted", port=port, prompt_template_name="Fresh", prompt_template_id=9)
        self.race(9, lambda: self.version_created(name="Fresh", version=1, tid=9), second,
                  lambda: True)
        # A's answer (Fresh as it was) came in after the delete: refused, and
        # fetched again (404).
        self.assertEqual(self.e.redis_cmd("EXISTS", "pl:prompt:Fresh"), 0)
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt-ids", "9"), None)

    def test_a_late_label_event_never_takes_the_label_back(self):
        for v in (3, 4):
            self.e.api.control("POST", "/_fake/templates/Hello/versions", {"version": v, "content": {
                "prompt_template": completion(f"v{v}")}})
            self.version_created(version=v)
            self.wait_cached("Hello", f"version:{v}", self.api("Hello", version=v))
        earlier = time.time_ns() // 1000
        later = earlier + 1  # one microsecond apart: the order still holds
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 4})
        self.send("prompt_template_label_moved", _at_us=later, prompt_template_name="Hello",
                  prompt_template_id=1, prompt_template_version_number=4, prompt_template_label="prod")
        self.wait_cached("Hello", "label:prod", self.api("Hello", label="prod"))
        # The label's last event is kept to the microsecond.
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt:Hello", "at:label:prod"), str(later).encode())
        n = self.applied()
        # The move to 3, made before, comes in last; its fetch is held back 1 s.
        self.e.api.control("POST", "/_fake/faults", {"method": "GET", "path_prefix": "/prompt-templates/1",
                                                     "delay_ms": 1000})
        self.send("prompt_template_label_moved", _at_us=earlier, prompt_template_name="Hello",
                  prompt_template_id=1, prompt_template_version_number=3, prompt_template_label="prod")
        seen = self.watch("Hello", "label:prod", 1.5)
        h.wait_until(lambda: self.applied() > n, 15, what="the late event applied")
        self.assertEqual(set(seen), {4}, "label:prod went back while the late event was applied")
        self.assertEqual(self.cached("Hello", "label:prod")["version"], 4)

    def test_a_late_label_delete_leaves_the_label_made_again(self):
        deleted_at = time.time_ns() // 1000
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/beta", {"version": 2})
        self.send("prompt_template_label_created", prompt_template_name="Hello", prompt_template_id=1,
                  prompt_template_version_number=2, prompt_template_label="beta")
        self.wait_cached("Hello", "label:beta", self.api("Hello", label="beta"))
        n = self.applied()
        # The label's earlier deletion is delivered after it was made again.
        self.send("prompt_template_label_deleted", _at_us=deleted_at, prompt_template_name="Hello",
                  prompt_template_id=1, prompt_template_version_number=1, prompt_template_label="beta")
        h.wait_until(lambda: self.applied() > n, 15, what="the late delete applied")
        self.assertEqual(self.cached("Hello", "label:beta"), self.api("Hello", label="beta"))

    def test_a_late_template_delete_leaves_the_template_made_again(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "latest", self.api("Hello"))
        deleted_at = time.time_ns() // 1000
        # Hello (id 1) was deleted, and a new Hello (id 7) made; the new one's
        # event comes first, the deletion of the old one after it.
        self.e.api.control("DELETE", "/_fake/templates/Hello")
        self.e.api.control("PUT", "/_fake/templates/Hello", {"id": 7, "versions": {
            "1": {"prompt_template": completion("new")}}, "labels": {}})
        self.send("prompt_template_created", prompt_template_name="Hello", prompt_template_id=7,
                  prompt_template_version_number=1)
        h.wait_until(lambda: self.e.redis_cmd("HGET", "pl:prompt:Hello", "id") == b"7", 15,
                     what="the new Hello cached")
        # What the old template cached is gone with it.
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt:Hello", "version:2"), None)
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt-ids", "1"), None)
        n = self.applied()
        self.send("prompt_template_deleted", _at_us=deleted_at, prompt_template_name="Hello",
                  prompt_template_id=1)
        h.wait_until(lambda: self.applied() > n, 15, what="the late delete applied")
        self.assertEqual(self.cached("Hello", "latest"), self.api("Hello"))
        self.assertEqual(self.cached("Hello", "version:1"), self.api("Hello", version=1))
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt:Hello", "id"), b"7")
        self.assertEqual(self.e.redis_cmd("HGET", "pl:prompt-ids", "7"), b"Hello")


    def test_a_late_version_event_does_not_set_latest_to_its_version(self):
        # Version 3 exists when version 2's event is applied: latest is 3.
        self.e.api.control("POST", "/_fake/templates/Hello/versions", {"version": 3, "content": {
            "prompt_template": completion("v3")}})
        self.version_created(version=2)
        self.wait_cached("Hello", "version:2", self.api("Hello", version=2))
        self.assertEqual(self.cached("Hello", "latest"), self.api("Hello"))
        self.assertEqual(self.cached("Hello", "latest")["version"], 3)

    def test_an_event_naming_an_old_name_reaches_the_renamed_template(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "latest", self.api("Hello"))
        # Label beta is made, then Hello renamed Hola; the rename's webhook
        # comes first, beta's (which says "Hello") after it.
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/beta", {"version": 2})
        beta = h.event("prompt_template_label_created", prompt_template_name="Hello", prompt_template_id=1,
                       prompt_template_version_number=2, prompt_template_label="beta")
        self.e.api.control("POST", "/_fake/templates/Hello/rename", {"new_name": "Hola"})
        self.send("prompt_template_name_changed", prompt_template_id=1, prompt_template_name="Hola",
                  old_prompt_template_name="Hello")
        self.wait_cached("Hola", "latest", self.api("Hola"))
        n = self.applied()
        st, _, data = self.e.post(beta)
        self.assertEqual(st, 200, data)
        h.wait_until(lambda: self.applied() > n, 15, what="beta's event applied")
        self.wait_cached("Hola", "label:beta", self.api("Hola", label="beta"))
        self.assertEqual(self.e.redis_cmd("EXISTS", "pl:prompt:Hello"), 0)


class ApiKeyReload(unittest.TestCase):
    def test_sighup_rereads_the_api_key_file(self):
        # PromptLayer's key rotated; the receiver's file is rewritten and it
        # gets SIGHUP: the next fetch uses the new key, no restart.
        e = h.WebhookEnv(fixture=FIXTURE, PLCACHE_RESYNC_INTERVAL=0, PROMPTLAYER_API_KEY=None)
        self.addCleanup(e.close)
        key_file = os.path.join(e.tmp.path, "api-key")
        with open(key_file, "w") as f:
            f.write("test-key\n")
        e.daemon.env["PROMPTLAYER_API_KEY_FILE"] = key_file
        e.start()
        e.api.control("PUT", "/_fake/config", {"api_key": "rotated-key"})
        with open(key_file, "w") as f:
            f.write("rotated-key\n")
        e.daemon.proc.send_signal(signal.SIGHUP)
        h.wait_until(lambda: "SIGHUP: API key reloaded" in e.daemon.log(), 10, what="the reload")
        st, _, data = e.post(h.event("prompt_template_version_created", prompt_template_name="Hello",
                                     prompt_template_id=1, prompt_template_version_number=1))
        self.assertEqual(st, 200, data)
        h.wait_until(lambda: e.redis_cmd("HEXISTS", "pl:prompt:Hello", "version:1") == 1, 15,
                     what="version:1 fetched with the new key")
        self.assertIsNone(e.daemon.proc.poll())
        self.assertNotIn("rotated-key", e.daemon.log())


class GiveUp(Case):
    """An event no retry can apply is given up after MAX_DELIVERIES (10)
    deliveries: it moves to pl:events:dead with why, is acknowledged (so it
    no longer holds pl:events' trim floor), and its template is reconciled."""
    settings = {"PLCACHE_CLAIM_IDLE": 1}

    def test_an_event_that_never_applies_is_given_up_and_acknowledged(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "latest", self.api("Hello", version=2))
        # A signed rename whose old name is too long for a key: it fails on
        # every delivery (on the old receiver it stayed pending for ever).
        self.send("prompt_template_name_changed", prompt_template_id=1,
                  prompt_template_name="Hello", old_prompt_template_name="x" * 2000)
        h.wait_until(lambda: self.e.redis_cmd("XLEN", "pl:events:dead") == 1, 60,
                     what="the event in pl:events:dead")
        h.wait_until(lambda: self.e.redis_cmd("XPENDING", "pl:events", "plcache-applier")[0] == 0,
                     10, what="nothing pending")
        (_, fields), = self.e.redis_cmd("XRANGE", "pl:events:dead", "-", "+")
        d = {k.decode(): v.decode() for k, v in zip(fields[0::2], fields[1::2])}
        self.assertEqual(d["type"], "prompt_template_name_changed")
        self.assertEqual(json.loads(d["payload"])["details"]["prompt_template_name"], "Hello")
        self.assertGreater(int(d["deliveries"]), 10)
        self.assertIn("not applied after", d["reason"])
        h.wait_until(lambda: self.e.metric("plcache_apply_events_given_up_total") == 1, 5,
                     what="the metric")
        # The template it concerns is reconciled: Hello is what the API says.
        self.assertEqual(self.cached("Hello", "latest"), self.api("Hello", version=2))


class Consumers(Case):
    """The group keeps no consumer of a receiver that is gone (issue 16)."""
    settings = {"PLCACHE_CLAIM_IDLE": 1}

    def consumers(self):
        """{name: {field: value}} of the group's consumers."""
        out = {}
        for r in self.e.redis_cmd("XINFO", "CONSUMERS", "pl:events", "plcache-applier"):
            c = {k.decode(): v.decode() if isinstance(v, bytes) else v
                 for k, v in zip(r[0::2], r[1::2])}
            out[c["name"]] = c
        return out

    def test_a_restarted_receiver_keeps_its_consumer(self):
        # The consumer is named after the host, not host-pid: a restart
        # reuses it instead of leaving one more in the group.
        self.send("agent_run_finished", agent_name="a")
        h.wait_until(lambda: len(self.consumers()) == 1, 10, what="our consumer")
        before = set(self.consumers())
        self.assertEqual(self.e.daemon.stop(), 0)
        self.e.start()
        self.send("agent_run_finished", agent_name="b")
        h.wait_until(lambda: self.e.metric("plcache_apply_events_total") >= 1, 10,
                     what="the restarted receiver applying")
        self.assertEqual(set(self.consumers()), before)
        self.assertEqual(before, {socket.gethostname()})

    def test_idle_consumers_holding_nothing_leave_the_group(self):
        self.send("agent_run_finished", agent_name="a")  # the group exists, ours in it
        h.wait_until(lambda: len(self.consumers()) >= 1, 10, what="our consumer")
        ours = set(self.consumers())
        # What restarts used to leave: consumers of receivers that are gone.
        for name in ("gone-1", "gone-2"):
            self.e.redis_cmd("XGROUP", "CREATECONSUMER", "pl:events", "plcache-applier", name)
        self.assertEqual(set(self.consumers()), ours | {"gone-1", "gone-2"})
        # Idle 10 x PLCACHE_CLAIM_IDLE (1 s) and holding nothing: they go
        # (one script reads a consumer's pending count and removes it, so one
        # that holds an entry is never removed); ours stays.
        h.wait_until(lambda: set(self.consumers()) == ours, 40,
                     what="only our consumer left in the group")
        h.wait_until(lambda: self.e.metric("plcache_apply_consumers_removed_total") >= 2, 5,
                     what="the removals counted")
        self.assertEqual(self.e.redis_cmd("XPENDING", "pl:events", "plcache-applier")[0], 0)


class Reconcile(Case):
    settings = {"PLCACHE_RESYNC_INTERVAL": 2}

    def test_a_change_no_webhook_announced_is_repaired(self):
        self.version_created(version=2)
        self.label_moved("prod", 1, move_fake=False)
        self.wait_cached("Hello", "label:prod", self.api("Hello", label="prod"))
        # PromptLayer moves prod and drops staging, and no webhook arrives.
        self.e.api.control("PUT", "/_fake/templates/Hello/labels/prod", {"version": 2})
        self.e.api.control("POST", "/_fake/templates/Hello/versions",
                           {"version": 2, "content": {"commit_message": "edited"}})
        self.wait_cached("Hello", "label:prod", self.api("Hello", label="prod"), timeout=20)
        self.wait_cached("Hello", "version:2", self.api("Hello", version=2), timeout=20)
        self.assertGreaterEqual(self.e.metric("plcache_reconcile_changes_total"), 1)
        # A template deleted without a webhook disappears too.
        self.e.api.control("DELETE", "/_fake/templates/Hello")
        h.wait_until(lambda: self.e.redis_cmd("EXISTS", "pl:prompt:Hello") == 0, 20, what="drop")

    def test_a_cold_start_stays_empty(self):
        h.wait_until(lambda: self.e.metric("plcache_reconcile_runs_total") >= 1, 10,
                     what="a reconcile run")
        self.assertEqual(self.e.redis_cmd("KEYS", "pl:prompt:*"), [])


class Stream(Case):
    """pl:events kept near PLCACHE_EVENTS_MAXLEN (10 here, hard cap 100) without
    trimming what the applier has not applied; what is lost anyway is said."""
    settings = {"PLCACHE_EVENTS_MAXLEN": 10, "PLCACHE_CLAIM_IDLE": 1}
    redis_extra = ("--stream-node-max-entries", "4")

    def record(self, event_type, client=None, **details):
        """Appends an event to pl:events the way a receiver does."""
        args = ("XADD", "pl:events", "*", "type", event_type,
                "payload", json.dumps(h.event(event_type, **details)),
                "received_at", "2026-11-27T00:00:00.000000Z")
        return client(*args) if client else self.e.redis_cmd(*args)

    def test_a_backlog_longer_than_the_stream_is_applied_in_full(self):
        self.e.api.control("POST", "/_fake/faults",
                           {"path_prefix": "/prompt-templates/", "count": 1000, "delay_ms": 40})
        for v in range(3, 63):
            self.e.api.control("POST", "/_fake/templates/Hello/versions",
                               {"version": v, "content": {"n": v}})
        for v in range(3, 63):
            self.version_created(version=v)
        self.assertGreater(self.e.redis_cmd("XLEN", "pl:events"), 10)
        self.wait_applied(60, timeout=60)
        self.assertEqual(self.cached("Hello", "latest"), self.api("Hello", version=62))
        h.wait_until(lambda: self.e.redis_cmd("XLEN", "pl:events") <= 10 + 4, 10,
                     what="pl:events trimmed back near 10")
        self.assertGreater(self.e.metric("plcache_events_trimmed_total"), 0)
        self.assertEqual(self.e.metric("plcache_apply_gaps_total"), 0)
        self.assertEqual(self.e.metric("plcache_apply_events_lost_total"), 0)
        self.assertEqual(self.e.redis_cmd("XPENDING", "pl:events", "plcache-applier")[0], 0)

    def test_unread_events_cut_at_the_hard_cap_are_counted_and_reconciled(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "latest", self.api("Hello", version=2))
        # The applier holds as many events as it may (256) behind one slow
        # fetch, so what comes next stays unread and grows past the hard cap.
        # (The fetch is held 8 s: enough for a loaded machine to record the
        # rest while the applier still waits.)
        self.e.api.control("POST", "/_fake/faults",
                           {"path_prefix": "/prompt-templates/1", "count": 1, "delay_ms": 8000})
        c = self.e.redis.client()
        try:
            for _ in range(256):
                self.record("prompt_template_version_created", client=c,
                            prompt_template_name="Hello", prompt_template_id=1,
                            prompt_template_version_number=2)
            h.wait_until(lambda: self.e.metric("plcache_apply_jobs") >= 256, 10,
                         what="256 jobs held")
            # A version no receiver will apply: its event is cut before it is read.
            self.e.api.control("POST", "/_fake/templates/Hello/versions",
                               {"version": 3, "content": {"n": 3}})
            self.record("prompt_template_version_created", client=c,
                        prompt_template_name="Hello", prompt_template_id=1,
                        prompt_template_version_number=3)
            for _ in range(300):
                self.record("agent_run_finished", client=c)
        finally:
            c.close()
        h.wait_until(lambda: self.e.metric("plcache_apply_gaps_total") >= 1, 10, what="a gap")
        # The gap is seen by the reader; the cut and its count come from the
        # trimming step, on its own second: wait for it (it ran once in ~5
        # runs after the reader, under load).
        h.wait_until(lambda: self.e.redis_cmd("XLEN", "pl:events") <= 100 + 4, 10,
                     what="pl:events cut back to the hard cap")
        lost = self.e.metric("plcache_apply_events_lost_total")
        self.assertGreaterEqual(lost, 1)
        self.assertLessEqual(lost, 301)
        # Reconciling Hello waits behind its 256 events and the held fetch.
        self.wait_cached("Hello", "latest", self.api("Hello", version=3), timeout=30)
        h.wait_until(lambda: self.e.metric("plcache_reconcile_runs_total") >= 1, 10,
                     what="a reconciliation")
        self.assertIn("events left pl:events before they were applied", self.e.daemon.log())
        # The group's counters were repaired: the same gap is not reported twice.
        time.sleep(2.5)
        self.assertEqual(self.e.metric("plcache_apply_gaps_total"), 1)

    def test_a_pending_entry_trimmed_under_a_dead_receiver_is_counted_when_claimed(self):
        self.version_created(version=2)
        self.wait_cached("Hello", "latest", self.api("Hello", version=2))
        self.e.api.control("POST", "/_fake/templates/Hello/versions",
                           {"version": 3, "content": {"n": 3}})
        # A receiver that read the event, died, and whose entry was then trimmed.
        c = self.e.redis.client()
        try:
            c("MULTI")
            c("XADD", "pl:events", "*", "type", "prompt_template_version_created",
              "payload", json.dumps(h.event("prompt_template_version_created",
                                            prompt_template_name="Hello", prompt_template_id=1,
                                            prompt_template_version_number=3)),
              "received_at", "2026-11-27T00:00:00.000000Z")
            c("XREADGROUP", "GROUP", "plcache-applier", "ghost", "COUNT", "1",
              "STREAMS", "pl:events", ">")
            c("XTRIM", "pl:events", "MAXLEN", "0")
            c("EXEC")
        finally:
            c.close()
        h.wait_until(lambda: self.e.metric("plcache_apply_gaps_total") >= 1, 10, what="a gap")
        self.assertEqual(self.e.metric("plcache_apply_events_lost_total"), 1)
        self.wait_cached("Hello", "latest", self.api("Hello", version=3))
        self.assertIn("pending entry trimmed", self.e.daemon.log())


class ClaimScan(Case):
    """XAUTOCLAIM looks at no more than COUNT x 10 pending entries per call
    (320 at the default batch of 32): a stopped receiver's entries behind
    more than that many entries of a live one must still be reached, by
    going on from the cursor each call returns."""

    def test_entries_of_a_stopped_receiver_behind_350_live_ones_are_claimed(self):
        h.wait_until(lambda: self.e.redis_cmd("EXISTS", "pl:events") == 1, 10,
                     what="the applier's group made")
        c = self.e.redis.client()
        try:
            c("MULTI")
            for i in range(400):
                c("XADD", "pl:events", "*", "type", "agent_run_finished",
                  "payload", json.dumps(h.event("agent_run_finished", n=i)),
                  "received_at", "2026-11-27T00:00:00.000000Z")
            c("XREADGROUP", "GROUP", "plcache-applier", "busy", "COUNT", "350",
              "STREAMS", "pl:events", ">")
            c("XREADGROUP", "GROUP", "plcache-applier", "ghost", "COUNT", "50",
              "STREAMS", "pl:events", ">")
            replies = c("EXEC")
            busy_ids = [e[0] for e in replies[-2][0][1]]
            self.assertEqual(len(busy_ids), 350)

            def ghost_pending():
                # "busy" is alive: its entries never get idle enough to claim.
                c("XCLAIM", "pl:events", "plcache-applier", "busy", "0", *busy_ids, "JUSTID")
                summary = c("XPENDING", "pl:events", "plcache-applier")
                owners = {k.decode(): int(v) for k, v in (summary[3] or [])}
                return owners.get("ghost", 0) == 0
            h.wait_until(ghost_pending, 20, interval=0.3, what="the 50 entries of ghost claimed")
            # Claimed by the applier and acknowledged (nothing to do for these):
            # only busy's entries are pending now.
            h.wait_until(lambda: c("XPENDING", "pl:events", "plcache-applier")[0] == 350, 10,
                         what="the claimed entries acknowledged")
            summary = c("XPENDING", "pl:events", "plcache-applier")
            owners = {k.decode(): int(v) for k, v in (summary[3] or [])}
            self.assertEqual(owners, {"busy": 350})
        finally:
            c.close()


class Readers(Case):
    def test_readers_never_see_a_torn_or_backwards_latest(self):
        stop = threading.Event()
        seen = []
        errors = []

        def reader():
            c = h.RedisClient(self.e.redis.port)
            try:
                while not stop.is_set():
                    v = c("HGET", "pl:prompt:Hello", "latest")
                    if v is None:
                        continue
                    try:
                        seen.append(json.loads(v)["version"])
                    except (ValueError, KeyError) as ex:
                        errors.append(repr(ex))
            finally:
                c.close()
        t = threading.Thread(target=reader)
        t.start()
        try:
            for v in range(3, 23):
                self.e.api.control("POST", "/_fake/templates/Hello/versions",
                                   {"version": v, "content": {"n": v}})
                self.version_created(version=v)
            self.wait_cached("Hello", "latest", self.api("Hello", version=22))
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(errors, [])
        self.assertGreater(len(seen), 0)
        self.assertEqual(seen, sorted(seen), "latest went backwards")


class Operations(Case):
    def test_metrics_of_the_applier(self):
        self.version_created(version=2)
        self.wait_applied(1)
        text = self.e.get("/metrics")[2].decode()
        for needle in ('plcache_apply_events_total{type="prompt_template_version_created"} 1',
                       "plcache_apply_latency_seconds_bucket", 'plcache_api_requests_total{status="200"}',
                       "plcache_api_retries_total", "plcache_reconcile_runs_total",
                       "plcache_reconcile_changes_total", "plcache_apply_pending"):
            self.assertIn(needle, text)

    def test_api_key_never_logged(self):
        self.version_created(version=2)
        self.wait_applied(1)
        self.assertNotIn("test-key", self.e.daemon.log())


if __name__ == "__main__":
    h.main()
