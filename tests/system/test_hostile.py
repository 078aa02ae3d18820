#!/usr/bin/env python3
"""test_hostile.py -- plcache-webhook (and the worker) against hostile clients.

The receiver faces the internet, and PromptLayer does not retry a delivery
that failed: what an attacker without the secret can make it do must stay
bounded. Each test here is one of the attacks of issue 14, run against the
real daemons on loopback.
"""
import json
import os
import re
import socket
import subprocess
import time
import unittest

import harness as h

SECRET = "whsec_test_secret"


def Env(**settings):
    return h.WebhookEnv(secret=SECRET, **settings)


# -- item 1: connections that say nothing hold no slot --------------------------

def closed_within(sock, seconds):
    """True when the server closes sock (EOF or reset) within `seconds`; what
    it sent before (the rest of an answer) is read and dropped."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


class SilentConnections(unittest.TestCase):
    def test_silent_connections_at_the_bound_do_not_keep_clients_out(self):
        e = Env(PLCACHE_MAX_CONNECTIONS=20).start()
        self.addCleanup(e.close)
        silent = [socket.create_connection(("127.0.0.1", e.port), timeout=5) for _ in range(20)]
        self.addCleanup(lambda: [x.close() for x in silent])
        time.sleep(0.2)
        t0 = time.monotonic()
        self.assertEqual(e.get("/healthz")[0], 200)  # 59.5 s on the old receiver
        st, _, data = e.post(h.event("agent_run_finished", agent_name="a"))
        self.assertEqual((st, data), (200, {"ok": True}))
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertTrue(closed_within(silent[0], 2), "the oldest silent connection gave its slot")
        self.assertGreaterEqual(
            e.metric('plcache_http_connections_closed_total{reason="evicted"}'), 1)

    def test_a_silent_connection_is_closed_at_the_first_byte_deadline(self):
        e = Env(PLCACHE_FIRST_BYTE_TIMEOUT=1, PLCACHE_IDLE_TIMEOUT=60).start()
        self.addCleanup(e.close)
        s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        self.assertTrue(closed_within(s, 5))
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(
            e.metric('plcache_http_connections_closed_total{reason="first_byte_timeout"}'), 1)

    def test_an_idle_keepalive_connection_gives_its_slot_to_a_new_client(self):
        e = Env(PLCACHE_MAX_CONNECTIONS=2, PLCACHE_IDLE_TIMEOUT=60).start()
        self.addCleanup(e.close)
        kept = socket.create_connection(("127.0.0.1", e.port), timeout=5)
        self.addCleanup(kept.close)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(kept.recv(100).startswith(b"HTTP/1.1 200"))  # answered, kept alive
        busy = socket.create_connection(("127.0.0.1", e.port), timeout=5)
        self.addCleanup(busy.close)
        busy.sendall(b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n")  # mid-request
        time.sleep(0.2)
        self.assertEqual(e.get("/healthz")[0], 200)
        self.assertTrue(closed_within(kept, 2))
        self.assertFalse(closed_within(busy, 0.3))  # a request in progress is never evicted

    def test_one_peer_holds_at_most_its_bound(self):
        e = Env(PLCACHE_MAX_CONNECTIONS_PER_PEER=3, PLCACHE_TRUSTED_PROXIES="").start()
        self.addCleanup(e.close)
        socks = [socket.create_connection(("127.0.0.1", e.port), timeout=5) for _ in range(4)]
        self.addCleanup(lambda: [x.close() for x in socks])
        self.assertTrue(closed_within(socks[3], 2))
        self.assertFalse(closed_within(socks[0], 0.2))
        socks[0].close()
        time.sleep(0.2)
        for x in socks[1:3]:
            x.close()
        time.sleep(0.2)
        self.assertEqual(e.get("/healthz")[0], 200)  # slots come back as they close
        self.assertEqual(e.metric('plcache_http_connections_closed_total{reason="peer_limit"}'), 1)

    def test_trusted_addresses_are_not_bounded(self):
        e = Env(PLCACHE_MAX_CONNECTIONS_PER_PEER=2).start()  # loopback trusted by default
        self.addCleanup(e.close)
        socks = [socket.create_connection(("127.0.0.1", e.port), timeout=5) for _ in range(5)]
        self.addCleanup(lambda: [x.close() for x in socks])
        for x in socks:
            x.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(x.recv(100).startswith(b"HTTP/1.1 200"))


# -- item 3: stalled bodies cannot claim the memory of every slot ----------------

class StalledBodies(unittest.TestCase):
    def test_stalled_large_bodies_hold_no_more_than_the_budget(self):
        budget = 8 << 20
        e = Env(PLCACHE_MAX_BUFFERED=budget, PLCACHE_REQUEST_TIMEOUT=120,
                ASAN_OPTIONS=h.small_asan_quarantine()).start()
        self.addCleanup(e.close)
        before = h.rss_kb(e.daemon.proc.pid)
        socks = []
        self.addCleanup(lambda: [x.close() for x in socks])
        part = b"x" * (900 << 10)
        for _ in range(100):  # 100 bodies of 1 MB, stalled at 900 KB: 90 MB offered
            x = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            socks.append(x)
            try:
                x.sendall(b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 1048000\r\n\r\n" + part)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed by the receiver meanwhile: what the budget is for
        h.wait_until(lambda: e.metric(
            'plcache_http_connections_closed_total{reason="over_budget"}') >= 85, 20,
            what="connections over the budget closed")
        time.sleep(0.5)
        grown_mb = (h.rss_kb(e.daemon.proc.pid) - before) / 1024
        print(f"# RSS grew {grown_mb:.1f} MB for 90 MB of stalled bodies (budget 8 MiB)")
        self.assertLess(grown_mb, 3 * budget / (1 << 20))
        # A delivery still goes through.
        st, _, data = e.post(h.event("agent_run_finished", agent_name="after"))
        self.assertEqual((st, data), (200, {"ok": True}))


# -- items 4 and 5: every answer JSON and counted; no ambiguous framing -------------

def raw_exchange(port, data, timeout=5):
    """Sends raw bytes on a new connection; returns everything the server sent
    until it closed (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def answers(raw):
    """[(status, {header: value}, body)] of the HTTP/1.1 answers in raw."""
    out = []
    while raw.startswith(b"HTTP/1."):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(hdrs.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), hdrs, rest[:n]))
        raw = rest[n:]
    return out


class LibeventAnswers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.e = Env(PLCACHE_MAX_BODY=4096, PLCACHE_MAX_HEADER_SIZE=2048).start()

    @classmethod
    def tearDownClass(cls):
        cls.e.close()

    def check_json(self, raw, status):
        got = answers(raw)
        self.assertEqual(len(got), 1, raw[:400])
        st, hdrs, body = got[0]
        self.assertEqual(st, status, raw[:400])
        self.assertEqual(hdrs.get("content-type"), "application/json", raw[:400])
        self.assertEqual(json.loads(body)["ok"], False)
        return hdrs

    def test_a_body_over_the_limit_is_a_json_413_and_counted(self):
        before = self.e.metric('plcache_http_requests_total{status="413"}')
        raw = raw_exchange(self.e.port, b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 5000\r\n\r\n" + b"x" * 5000)
        self.check_json(raw, 413)
        chunked = (b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"x" * 4096 + b"\r\n"
                   + b"1000\r\n" + b"x" * 4096 + b"\r\n0\r\n\r\n")
        self.check_json(raw_exchange(self.e.port, chunked), 413)
        self.assertEqual(self.e.metric('plcache_http_requests_total{status="413"}'), before + 2)

    def test_headers_over_the_limit_are_a_json_400_and_counted(self):
        before = self.e.metric('plcache_http_requests_total{status="400"}')
        raw = raw_exchange(self.e.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                           + b"a" * 4000 + b"\r\n\r\n")
        self.check_json(raw, 400)
        raw = raw_exchange(self.e.port, b"NOT A REQUEST\r\n\r\n")
        self.check_json(raw, 400)
        self.assertEqual(self.e.metric('plcache_http_requests_total{status="400"}'), before + 2)

    def test_ambiguous_framing_is_refused_and_the_connection_closed(self):
        ev = json.dumps(h.event("agent_run_finished", agent_name="smuggle")).encode()
        sig = h.sign(ev, SECRET).encode()
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        post = b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-PromptLayer-Signature: " + sig
        cases = {
            "two Content-Lengths": post + b"\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (len(ev), len(ev) + len(smuggled)) + ev + smuggled,
            "TE not exactly chunked": post + b"\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            + b"%x\r\n" % len(ev) + ev + b"\r\n0\r\n\r\n" + smuggled,
            "TE with CL": post + b"\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
            % len(ev) + b"%x\r\n" % len(ev) + ev + b"\r\n0\r\n\r\n",
            "obsolete folding": post + b"\r\nX-Folded: a\r\n b\r\nContent-Length: %d\r\n\r\n"
            % len(ev) + ev,
            "bare LF": post.replace(b"\r\n", b"\n") + b"\nContent-Length: %d\n\n" % len(ev) + ev,
        }
        before = self.e.redis_cmd("XLEN", "pl:events")
        for name, data in cases.items():
            raw = raw_exchange(self.e.port, data)
            hdrs = self.check_json(raw, 400)  # one answer only: the smuggled one never runs
            self.assertEqual(hdrs.get("connection"), "close", name)
        self.assertEqual(self.e.redis_cmd("XLEN", "pl:events"), before)

    def test_well_framed_requests_still_pass(self):
        ev = json.dumps(h.event("agent_run_finished", agent_name="chunked")).encode()
        sig = h.sign(ev, SECRET).encode()
        data = (b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-PromptLayer-Signature: "
                + sig + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(ev) + ev
                + b"\r\n0\r\n\r\n" + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                b"\r\n\r\n")
        got = answers(raw_exchange(self.e.port, data))
        self.assertEqual([g[0] for g in got], [200, 200])  # pipelined, both answered
        same = (b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-PromptLayer-Signature: "
                + sig + b"\r\nContent-Length: %d\r\nContent-Length: %d\r\nConnection: close"
                b"\r\n\r\n" % (len(ev), len(ev)) + ev)
        self.assertEqual([g[0] for g in answers(raw_exchange(self.e.port, same))], [200])


# -- item 6: /metrics off the public listener, quiet refusals -------------------

class MetricsListener(unittest.TestCase):
    def test_metrics_on_their_own_listener_are_not_on_the_public_one(self):
        mport = h.free_port()
        e = Env(PLCACHE_METRICS_LISTEN=f"127.0.0.1:{mport}").start()
        self.addCleanup(e.close)
        st, _, _ = e.get("/metrics")
        self.assertEqual(st, 404)
        st, _, body = e.get("/metrics", port=mport)
        self.assertEqual(st, 200)
        self.assertIn(b"plcache_http_requests_total", body)
        self.assertIn(b"plcache_apply_events_total", body)  # the applier's too
        # The public 404 was counted; /healthz and /readyz answer on both.
        self.assertIn(b'plcache_http_requests_total{status="404"} 1', body)
        for port in (e.port, mport):
            self.assertEqual(e.get("/healthz", port=port)[0], 200)
            self.assertEqual(e.get("/readyz", port=port)[0], 200)
        # Only the operations endpoints on the metrics listener.
        self.assertEqual(e.get("/webhooks/promptlayer", port=mport)[0], 404)
        st, hd, _ = h.request(mport, "POST", "/metrics", b"{}")
        self.assertEqual((st, hd.get("Allow")), (405, "GET, HEAD"))
        # Webhooks still go to the public listener.
        st, _, data = e.post(h.event("agent_run_finished", agent_name="a"))
        self.assertEqual((st, data), (200, {"ok": True}))

    def test_without_a_metrics_listener_metrics_stay_where_they_were(self):
        e = Env().start()
        self.addCleanup(e.close)
        self.assertEqual(e.get("/metrics")[0], 200)

    def test_a_bad_metrics_listener_stops_the_start_naming_it(self):
        e = Env()
        self.addCleanup(e.close)
        for bad in ("nope", f"127.0.0.1:{e.port}"):  # not an address; taken (by the webhook)
            env = dict(os.environ, **e.env)
            env.update(PLCACHE_METRICS_LISTEN=bad, PLCACHE_LISTEN=f"127.0.0.1:{h.free_port()}")
            if bad != "nope":
                e.start()
            p = subprocess.run([e.daemon.binary], env=env, capture_output=True, text=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("PLCACHE_METRICS_LISTEN", p.stderr)


class QuietRefusals(unittest.TestCase):
    def test_refused_deliveries_are_logged_in_a_summary_not_one_line_each(self):
        e = Env().start()
        self.addCleanup(e.close)
        body = json.dumps(h.event("agent_run_finished", agent_name="a"))
        for i in range(300):
            st, _, _ = e.post(body, sig="0" * 64)
            self.assertEqual(st, 401)
        self.assertEqual(e.metric("plcache_webhook_signature_failures_total"), 300)
        # One line for the first refusal, then one summary per interval.
        h.wait_until(lambda: "more deliveries refused" in e.daemon.log(), 15,
                     what="the summary line")
        log = e.daemon.log()
        lines = [ln for ln in log.splitlines() if "webhook rejected" in ln]
        self.assertLessEqual(len(lines), 3, lines)
        m = re.search(r"msg=\"?[^\n]*more deliveries refused[^\n]*count=(\d+)", log)
        self.assertIsNotNone(m, log[-2000:])
        self.assertGreaterEqual(int(m.group(1)), 290)
        # An authentic delivery is still logged as usual.
        st, _, _ = e.post(body)
        self.assertEqual(st, 200)


# -- item 7: the duplicate guard covers the whole accepted window ---------------

class ReplayWindow(unittest.TestCase):
    def test_seen_keys_live_at_least_as_long_as_the_timestamp_tolerance(self):
        tolerance = 3 * 86400
        e = Env(PLCACHE_TIMESTAMP_TOLERANCE=tolerance).start()
        self.addCleanup(e.close)
        ev = h.event("prompt_template_deleted", prompt_template_name="Gone",
                     prompt_template_id=5)
        st, _, _ = e.post(ev)
        self.assertEqual(st, 200)
        keys = e.redis_cmd("KEYS", "pl:seen:*")
        self.assertEqual(len(keys), 1)
        ttl = e.redis_cmd("TTL", keys[0])
        self.assertGreater(ttl, tolerance - 60)
        self.assertLessEqual(ttl, tolerance)

    def test_the_default_window_keeps_24_hours(self):
        e = Env().start()
        self.addCleanup(e.close)
        st, _, _ = e.post(h.event("agent_run_finished", agent_name="a"))
        self.assertEqual(st, 200)
        ttl = e.redis_cmd("TTL", e.redis_cmd("KEYS", "pl:seen:*")[0])
        self.assertGreater(ttl, 86400 - 60)

    def test_no_timestamp_check_is_said_loudly_at_start(self):
        e = Env(PLCACHE_TIMESTAMP_TOLERANCE=0).start()
        self.addCleanup(e.close)
        log = e.daemon.log()
        self.assertIn("PLCACHE_TIMESTAMP_TOLERANCE=0", log)
        self.assertIn("replay", log)


# -- item 8: a job's endpoint cannot leave the API's known paths -----------------

class WorkerEndpoints(unittest.TestCase):
    def test_an_escaped_path_is_an_invalid_job_and_nothing_is_sent(self):
        e = h.WorkerEnv()
        self.addCleanup(e.close)
        e.start()
        bad = [{"endpoint": "/%2e%2e/%2e%2e/admin", "body": {"request_id": 1, "score": 1}},
               {"endpoint": "/rest/%2e%2e/admin", "body": {}},
               {"endpoint": "/rest/track-score?x=/admin", "body": {"request_id": 1, "score": 1}},
               {"endpoint": "/log-request", "body": h.log_request(uid="ok"),
                "then": [{"endpoint": "/%2E%2E/admin", "body": {}}]}]
        good = {"endpoint": "/rest/track%2Dscore", "body": {"request_id": 1, "score": 9,
                                                           "uid": "escaped-but-known"}}
        e.push(*bad, good)
        h.wait_until(lambda: len(e.dead()) == len(bad) and e.settled(), 20,
                     what="the bad jobs dead-lettered")
        for d in e.dead():
            self.assertIn("invalid_job", d["error"])
        paths = {r["path"] for r in e.records()}
        self.assertEqual(paths, {"/rest/track-score"})  # the known path, as written by plcache
        self.assertEqual(e.delivered(path_prefix="/rest/track-score"), {"escaped-but-known": 1})


if __name__ == "__main__":
    h.main()
