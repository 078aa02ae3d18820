"""test_webhook.py -- plcache-webhook against a real redis-server.

Every row of DESIGN.md section 3's answer table, duplicates, secret rotation
(list and SIGHUP), Redis loss and recovery, limits (body, headers, slow
clients, connections), concurrency, drain on SIGTERM, and bad settings.
"""
import http.client
import json
import os
import signal
import socket
import threading
import time
import unittest

import harness as h

WEBHOOK = os.environ.get("PLCACHE_WEBHOOK_BIN", "")
SECRET = "whsec_test_secret"
PATH = "/webhooks/promptlayer"


def Env(redis_extra=(), unix=False, **settings):
    """redis-server + the fake API + plcache-webhook (see harness.WebhookEnv)."""
    return h.WebhookEnv(redis_extra=redis_extra, unix=unix, secret=SECRET, **settings)


def read_answer(f):
    """One HTTP/1.1 answer (Content-Length framed) from the buffered reader f:
    (status, {lower-case header: value}, body)."""
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, f.read(int(headers.get("content-length", "0")))


class AnswerTable(unittest.TestCase):
    """One daemon for the rows of the answer table."""

    @classmethod
    def setUpClass(cls):
        cls.e = Env(PLCACHE_MAX_BODY=4096).start()

    @classmethod
    def tearDownClass(cls):
        cls.e.close()

    def test_authentic_event_is_recorded_then_answered_200(self):
        ev = h.event("prompt_template_label_moved", prompt_template_name="A1")
        body = json.dumps(ev)
        before = self.e.redis_cmd("XLEN", "pl:events")
        st, _, data = self.e.post(body)
        self.assertEqual((st, data), (200, {"ok": True}))
        self.assertEqual(self.e.redis_cmd("XLEN", "pl:events"), before + 1)
        last = self.e.redis_cmd("XREVRANGE", "pl:events", "+", "-", "COUNT", "1")[0]
        fields = dict(zip(last[1][::2], last[1][1::2]))
        self.assertEqual(fields[b"type"], b"prompt_template_label_moved")
        self.assertEqual(fields[b"payload"], body.encode())
        self.assertRegex(fields[b"received_at"].decode(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        seen = "pl:seen:" + __import__("hashlib").sha256(h.canonical(ev).encode()).hexdigest()
        ttl = self.e.redis_cmd("TTL", seen)
        self.assertTrue(86000 < ttl <= 86400, ttl)

    def test_signature_over_canonical_text_accepts_any_wire_form(self):
        ev = h.event(prompt_template_name="Ünïcode 🚀", prompt_template_id=7)
        wire = json.dumps(ev, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
        sig = h.sign(h.canonical(ev), SECRET)
        st, _, data = self.e.post(wire, sig=sig)
        self.assertEqual((st, data), (200, {"ok": True}))

    def test_signature_over_raw_body_is_accepted(self):
        wire = json.dumps(h.event(prompt_template_name="raw"), separators=(",", ":"))
        st, _, data = self.e.post(wire)  # signed over the raw bytes
        self.assertEqual((st, data), (200, {"ok": True}))

    def test_signature_header_in_upper_case_hex_is_accepted(self):
        body = json.dumps(h.event(prompt_template_name="upper"))
        st, _, _ = self.e.post(body, sig=h.sign(body, SECRET).upper())
        self.assertEqual(st, 200)

    def test_same_canonical_text_again_is_a_duplicate_and_not_recorded(self):
        ev = h.event(prompt_template_name="dup")
        st, _, data = self.e.post(json.dumps(ev))
        self.assertEqual((st, data), (200, {"ok": True}))
        n = self.e.redis_cmd("XLEN", "pl:events")
        # Same event, other wire form: still the same canonical text.
        wire = json.dumps(ev, indent=2, sort_keys=False)
        st, _, data = self.e.post(wire, sig=h.sign(h.canonical(ev), SECRET))
        self.assertEqual((st, data), (200, {"ok": True, "duplicate": True}))
        self.assertEqual(self.e.redis_cmd("XLEN", "pl:events"), n)

    def test_not_post_is_405_with_allow(self):
        for m in ("GET", "PUT", "DELETE", "PATCH"):
            st, hd, _ = h.request(self.e.port, m, PATH)
            self.assertEqual(st, 405, m)
            self.assertEqual(hd.get("Allow"), "POST", m)

    def test_other_path_is_404(self):
        st, _, _ = self.e.post(h.event(), path="/webhooks/other")
        self.assertEqual(st, 404)
        st, _, _ = h.request(self.e.port, "GET", "/")
        self.assertEqual(st, 404)

    def test_health_ready_and_metrics(self):
        self.assertEqual(self.e.get("/healthz")[0], 200)
        st, _, data = self.e.get("/readyz")
        self.assertEqual((st, json.loads(data)["ok"]), (200, True))
        self.e.post(h.event(prompt_template_name="metrics"))
        self.e.post(h.event(), secret="wrong")
        st, hd, data = self.e.get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hd["Content-Type"].startswith("text/plain"))
        text = data.decode()
        for needle in ('plcache_http_requests_total{status="200"}',
                       'plcache_webhook_signature_failures_total{reason="bad_signature"}',
                       'plcache_webhook_events_total{type="prompt_template_version_created"}',
                       "plcache_webhook_duplicates_total", "plcache_redis_errors_total",
                       "plcache_http_request_duration_seconds_bucket", "plcache_redis_up 1"):
            self.assertIn(needle, text)
        self.assertNotIn(SECRET, text)

    def test_body_over_max_is_413(self):
        ev = h.event()
        ev["details"]["pad"] = "x" * 5000
        st, _, _ = self.e.post(json.dumps(ev))
        self.assertEqual(st, 413)

    def test_no_or_wrong_signature_is_401_with_the_same_body(self):
        body = json.dumps(h.event())
        answers = [
            self.e.post(body, secret=False),                     # no header
            self.e.post(body, secret="not-the-secret"),          # wrong secret
            self.e.post(body, sig="zz" * 32),                    # not hex
            self.e.post(body, sig="ab"),                         # too short
            self.e.post(b"not json at all", secret="nope"),      # garbage, unsigned
        ]
        for st, _, data in answers:
            self.assertEqual((st, data), (401, {"ok": False, "error": "unauthorized"}))

    def test_authentic_but_not_a_json_object_is_400(self):
        for body in (b"not json", b"[1, 2]", b'"text"', b"{\"event_type\": \"x\"", b""):
            st, _, _ = self.e.post(body)
            self.assertEqual(st, 400, body)

    def test_authentic_without_a_string_event_type_is_400(self):
        for ev in ({"details": {}}, {"event_type": 12}, {"event_type": None}):
            ev["timestamp"] = h.event()["timestamp"]
            st, _, _ = self.e.post(json.dumps(ev))
            self.assertEqual(st, 400, ev)

    def test_timestamp_outside_the_tolerance_is_401(self):
        for ts in ("2023-12-01T22:05:57.924833", "2099-01-01T00:00:00Z"):
            ev = h.event()
            ev["timestamp"] = ts
            st, _, data = self.e.post(json.dumps(ev))
            self.assertEqual((st, data), (401, {"ok": False, "error": "unauthorized"}))

    def test_timestamp_with_offset_is_understood(self):
        now = time.time()
        ev = h.event()
        # The same instant written in UTC+05:30.
        ev["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S+05:30", time.gmtime(now + 5.5 * 3600))
        st, _, _ = self.e.post(json.dumps(ev))
        self.assertEqual(st, 200)

    def test_missing_or_unreadable_timestamp_is_400(self):
        for ts in (None, "yesterday", 1701468357, "2023-13-01T00:00:00"):
            ev = h.event()
            if ts is None:
                del ev["timestamp"]
            else:
                ev["timestamp"] = ts
            st, _, _ = self.e.post(json.dumps(ev))
            self.assertEqual(st, 400, ts)

    def test_python_only_json_is_verified_and_recorded(self):
        # Big integers, NaN, \u0000, astral characters, repeated keys: jansson
        # would lose these; the canonicalizer must not.
        ts = h.event()["timestamp"]
        wire = ('{"event_type": "dataset_version_created_by_file", "timestamp": "%s", '
                '"details": {"n": 123456789012345678901234567890, "f": NaN, "g": -Infinity, '
                '"z": "a\\u0000b", "s": "\\ud83d\\ude80", "k": 1, "k": 2, "e": 1E400}}' % ts)
        obj = json.loads(wire)
        st, _, data = self.e.post(wire, sig=h.sign(json.dumps(obj, sort_keys=True), SECRET))
        self.assertEqual((st, data), (200, {"ok": True}))

    def test_logs_hold_no_secret_signature_or_body(self):
        ev = h.event(prompt_template_name="very-secret-prompt-body-marker")
        body = json.dumps(ev)
        sig = h.sign(body, SECRET)
        self.e.post(body, sig=sig)
        self.e.post(body, sig="0" * 64)
        log = self.e.daemon.log()
        self.assertIn("event recorded", log)
        for needle in (SECRET, sig, "very-secret-prompt-body-marker"):
            self.assertNotIn(needle, log)


class Rotation(unittest.TestCase):
    def test_two_secrets_either_verifies(self):
        e = Env(PLCACHE_WEBHOOK_SECRET="old-secret,new-secret").start()
        try:
            for s in ("old-secret", "new-secret"):
                st, _, _ = e.post(h.event(prompt_template_name=s), secret=s)
                self.assertEqual(st, 200, s)
            st, _, _ = e.post(h.event(), secret="third")
            self.assertEqual(st, 401)
        finally:
            e.close()

    def test_sighup_rereads_the_secret_file(self):
        tmp = h.TempDir()
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.path, "secret")
        with open(path, "w") as f:
            f.write("first-secret\n")
        e = Env(PLCACHE_WEBHOOK_SECRET=None, PLCACHE_WEBHOOK_SECRET_FILE=path).start()
        try:
            self.assertEqual(e.post(h.event(prompt_template_name="1"), secret="first-secret")[0], 200)
            with open(path, "w") as f:
                f.write("second-secret\n")
            e.daemon.proc.send_signal(signal.SIGHUP)
            h.wait_until(lambda: "secrets reloaded" in e.daemon.log(), 5, what="reload log")
            self.assertEqual(e.post(h.event(prompt_template_name="2"), secret="second-secret")[0], 200)
            self.assertEqual(e.post(h.event(prompt_template_name="3"), secret="first-secret")[0], 401)
            # An empty file is refused and the current secret stays.
            with open(path, "w") as f:
                f.write("")
            e.daemon.proc.send_signal(signal.SIGHUP)
            h.wait_until(lambda: "secrets not reloaded" in e.daemon.log(), 5, what="refusal log")
            self.assertEqual(e.post(h.event(prompt_template_name="4"), secret="second-secret")[0], 200)
            self.assertNotIn("second-secret", e.daemon.log())
        finally:
            e.close()


class RedisLoss(unittest.TestCase):
    def test_redis_stopped_gives_503_then_recovers_without_restart(self):
        e = Env().start()
        try:
            self.assertEqual(e.post(h.event(prompt_template_name="before"))[0], 200)
            port = e.redis.port
            e.redis.stop()
            st, hd, _ = e.post(h.event(prompt_template_name="during"))
            self.assertEqual(st, 503)
            self.assertIn("Retry-After", hd)
            self.assertEqual(e.get("/readyz")[0], 503)
            # Same port, empty data (no persistence): the daemon reconnects by itself.
            e.redis = h.RedisServer(e.tmp.path, port=port).start()
            h.wait_until(lambda: e.get("/readyz")[0] == 200, 15, what="readyz after restart")
            ev = h.event(prompt_template_name="after")
            self.assertEqual(e.post(ev)[::2], (200, {"ok": True}))
            self.assertEqual(e.post(ev)[::2], (200, {"ok": True, "duplicate": True}))
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 1)
        finally:
            e.close()

    def test_redis_that_stops_answering_gives_503_within_the_timeout(self):
        e = Env(PLCACHE_REDIS_TIMEOUT=1).start()
        try:
            e.redis.proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
            st, hd, _ = e.post(h.event(prompt_template_name="frozen"))
            took = time.monotonic() - t0
            self.assertEqual(st, 503)
            self.assertIn("Retry-After", hd)
            self.assertLess(took, 8)
            e.redis.proc.send_signal(signal.SIGCONT)
            h.wait_until(lambda: e.get("/readyz")[0] == 200, 15, what="readyz after SIGCONT")
            self.assertEqual(e.post(h.event(prompt_template_name="thawed"))[0], 200)
        finally:
            if e.redis.proc:
                e.redis.proc.send_signal(signal.SIGCONT)
            e.close()

    def test_redis_down_at_start_then_up(self):
        e = Env()
        port = e.redis.port
        e.redis.stop()
        try:
            e.start(ready=False)
            self.assertEqual(e.get("/readyz")[0], 503)
            self.assertEqual(e.post(h.event())[0], 503)
            e.redis = h.RedisServer(e.tmp.path, port=port).start()
            h.wait_until(lambda: e.get("/readyz")[0] == 200, 15, what="readyz")
            self.assertEqual(e.post(h.event())[0], 200)
        finally:
            e.close()


class RedisUrls(unittest.TestCase):
    def test_unix_socket_url(self):
        e = Env(unix=True)
        try:
            e.daemon.env["PLCACHE_REDIS_URL"] = f"unix://{e.redis.unix}?db=3"
            e.start()
            self.assertEqual(e.post(h.event())[0], 200)
            self.assertEqual(e.redis_cmd("SELECT", "3"), "OK")
        finally:
            e.close()

    def test_password_and_database_from_the_url(self):
        e = Env(redis_extra=("--requirepass", "p@ss:word"))
        try:
            e.daemon.env["PLCACHE_REDIS_URL"] = f"redis://:p%40ss%3Aword@127.0.0.1:{e.redis.port}/5"
            e.start()
            self.assertEqual(e.post(h.event())[0], 200)
            c = e.redis.client()
            c("AUTH", "p@ss:word")
            c("SELECT", "5")
            self.assertEqual(c("XLEN", "pl:events"), 1)
            c.close()
            self.assertNotIn("p@ss", e.daemon.log())
        finally:
            e.close()

    def test_wrong_password_is_never_ready_and_logged_without_it(self):
        e = Env(redis_extra=("--requirepass", "right"))
        try:
            e.daemon.env["PLCACHE_REDIS_URL"] = f"redis://:wrong-pw@127.0.0.1:{e.redis.port}/0"
            e.start(ready=False)
            h.wait_until(lambda: "handshake refused" in e.daemon.log(), 10, what="refusal")
            self.assertEqual(e.get("/readyz")[0], 503)
            self.assertEqual(e.post(h.event())[0], 503)
            self.assertNotIn("wrong-pw", e.daemon.log())
        finally:
            e.close()


class Limits(unittest.TestCase):
    def test_slow_client_is_cut_off_at_the_request_timeout(self):
        e = Env(PLCACHE_REQUEST_TIMEOUT=2).start()
        try:
            s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            t0 = time.monotonic()
            closed = False
            # One header byte every 0.3 s: the idle timeout alone would never fire.
            for ch in b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([ch]))
                    time.sleep(0.3)
                    s.setblocking(False)
                    try:
                        if s.recv(1) == b"":
                            closed = True
                            break
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if time.monotonic() - t0 > 8:
                    break
            took = time.monotonic() - t0
            s.close()
            self.assertTrue(closed, "server kept a trickling client for %.1fs" % took)
            self.assertLess(took, 6)
            self.assertEqual(e.get("/healthz")[0], 200)
        finally:
            e.close()

    def test_oversized_headers_are_refused(self):
        e = Env(PLCACHE_MAX_HEADER_SIZE=2048).start()
        try:
            body = json.dumps(h.event()).encode()
            req = (b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 4000 +
                   b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            s.sendall(req)
            answer = s.recv(200)
            s.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
            self.assertEqual(e.post(body)[0], 200)
        finally:
            e.close()

    def test_at_the_bound_busy_connections_make_new_clients_wait(self):
        # Every slot holds a request begun: the listener pauses, a new client
        # waits in the backlog until a slot frees.
        e = Env(PLCACHE_MAX_CONNECTIONS=4, PLCACHE_REQUEST_TIMEOUT=30).start()
        try:
            busy = [socket.create_connection(("127.0.0.1", e.port), timeout=5) for _ in range(4)]
            for s in busy:
                s.sendall(b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.3)
            extra = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            extra.settimeout(1.0)
            with self.assertRaises(socket.timeout):
                extra.recv(100)
            busy[0].close()
            extra.settimeout(5.0)
            self.assertTrue(extra.recv(100).startswith(b"HTTP/1.1 200"))
            for s in busy[1:] + [extra]:
                s.close()
            st, _, data = e.get("/metrics")
            self.assertIn("plcache_http_accept_pauses_total", data.decode())
            self.assertGreaterEqual(h.metric_sum(data.decode(), "plcache_http_accept_pauses_total"), 1)
        finally:
            e.close()

    def test_concurrent_clients_all_recorded(self):
        e = Env().start()
        try:
            results = []
            lock = threading.Lock()

            def client(k):
                import http.client
                c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
                for i in range(25):
                    body = json.dumps(h.event(prompt_template_name=f"c{k}-{i}")).encode()
                    c.request("POST", PATH, body, {"X-PromptLayer-Signature": h.sign(body, SECRET)})
                    r = c.getresponse()
                    r.read()
                    with lock:
                        results.append(r.status)
                c.close()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(len(results), 1000)
            self.assertEqual(set(results), {200})
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 1000)
        finally:
            e.close()

    def raw_delivery(self, body, extra=b"", version=b"HTTP/1.1"):
        """A signed POST of body to the webhook path, as bytes."""
        return (b"POST " + PATH.encode() + b" " + version + b"\r\nHost: t\r\n" + extra +
                b"X-PromptLayer-Signature: " + h.sign(body, SECRET).encode() +
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def burst(self, e, bodies):
        """Writes every delivery on its own connection while the receiver is
        stopped (SIGSTOP), so that it finds them all ready at once; returns
        the answers, in order, as (status, headers, json)."""
        socks = []
        try:
            for _ in bodies:
                socks.append(socket.create_connection(("127.0.0.1", e.port), timeout=30))
            h.wait_until(lambda: e.metric("plcache_http_connections") >= len(socks), 10,
                         what="every connection accepted")
            pid = e.daemon.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                for s, body in zip(socks, bodies):
                    s.sendall(self.raw_delivery(body))
            finally:
                os.kill(pid, signal.SIGCONT)
            answers = []
            for s in socks:
                r = http.client.HTTPResponse(s)
                r.begin()
                answers.append((r.status, dict(r.getheaders()), json.loads(r.read())))
            return answers
        finally:
            for s in socks:
                s.close()

    def script_calls(self, e):
        info = e.redis_cmd("INFO", "commandstats").decode()
        for line in info.splitlines():
            if line.startswith("cmdstat_eval:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def test_answers_written_at_once_keep_pipelining_and_connection_close_right(self):
        # An answer from Redis's reply is written at once and evhttp told so
        # in the same turn: a keep-alive connection must then read the next
        # (already pipelined) request, and "Connection: close" or HTTP/1.0
        # must still close the connection after the answer.
        e = Env().start()
        try:
            bodies = [json.dumps(h.event(prompt_template_name=f"p{i}")).encode() for i in range(3)]
            with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
                s.sendall(b"".join(self.raw_delivery(b) for b in bodies))
                # One buffered reader for all three answers: they may arrive
                # together, and a reader per answer would lose what the first
                # one buffered past its own.
                with s.makefile("rb") as f:
                    for _ in bodies:
                        status, headers, body = read_answer(f)
                        self.assertEqual((status, json.loads(body)), (200, {"ok": True}))
                        self.assertNotEqual(headers.get("connection", "").lower(), "close")
            for extra, version in ((b"Connection: close\r\n", b"HTTP/1.1"), (b"", b"HTTP/1.0")):
                body = json.dumps(h.event(prompt_template_name=f"c{version[-1]}")).encode()
                with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
                    s.sendall(self.raw_delivery(body, extra, version))
                    r = http.client.HTTPResponse(s)
                    r.begin()
                    self.assertEqual((r.status, json.loads(r.read())), (200, {"ok": True}))
                    self.assertEqual(s.recv(1), b"", "the connection was not closed")
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 5)
            h.wait_until(lambda: e.metric("plcache_http_connections") <= 1, 5,
                         what="the closed connections counted gone")
        finally:
            e.close()

    def test_bytes_or_a_hangup_while_a_request_waits_neither_spin_nor_get_lost(self):
        # A plain connection keeps its socket watched for reading while
        # evhttp is not reading (hsrv.c, `keep`). A second request sent while
        # the first waits on Redis, or the client shutting its side, makes
        # the socket readable with nobody to read it: the watch must step
        # aside (no busy loop), and both requests must be answered in turn
        # once Redis is back.
        def cpu_s(pid):
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        e = Env().start()
        try:
            pid = e.daemon.proc.pid
            bodies = [json.dumps(h.event(prompt_template_name=f"k{i}")).encode() for i in range(3)]
            redis = e.redis.proc
            with socket.create_connection(("127.0.0.1", e.port), timeout=30) as s, \
                    socket.create_connection(("127.0.0.1", e.port), timeout=30) as t:
                redis.send_signal(signal.SIGSTOP)
                try:
                    s.sendall(self.raw_delivery(bodies[0]))
                    t.sendall(self.raw_delivery(bodies[2]))
                    time.sleep(0.3)  # both read, verified and waiting on Redis
                    s.sendall(self.raw_delivery(bodies[1]))
                    t.shutdown(socket.SHUT_WR)
                    before = cpu_s(pid)
                    time.sleep(1.0)
                    spent = cpu_s(pid) - before
                finally:
                    redis.send_signal(signal.SIGCONT)
                self.assertLess(spent, 0.3, f"the receiver spent {spent:.2f} s of CPU in 1 s "
                                "while its Redis was stopped: a busy loop")
                with s.makefile("rb") as f:
                    for _ in range(2):
                        status, _, body = read_answer(f)
                        self.assertEqual((status, json.loads(body)), (200, {"ok": True}))
                with t.makefile("rb") as f:
                    status, _, body = read_answer(f)
                    self.assertEqual((status, json.loads(body)), (200, {"ok": True}))
                    self.assertEqual(f.read(1), b"", "the half-closed connection stayed open")
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 3)
            # The one left is the connection asking for /metrics.
            h.wait_until(lambda: e.metric("plcache_http_connections") <= 1, 5,
                         what="both connections counted gone")
        finally:
            e.close()

    def test_events_key_of_the_wrong_type_is_503_and_marks_nothing_seen(self):
        # Someone wrote a string at pl:events: the delivery is refused, and
        # once the key is mended the retry is recorded, not a "duplicate".
        e = Env().start()
        try:
            e.redis_cmd("SET", "pl:events", "oops")
            body = json.dumps(h.event(prompt_template_name="typed"))
            st, hd, _ = e.post(body)
            self.assertEqual(st, 503)
            self.assertEqual(hd.get("Retry-After"), "5")
            self.assertEqual(e.redis_cmd("KEYS", "pl:seen:*"), [])
            self.assertIn("is not a stream", e.daemon.log())
            e.redis_cmd("DEL", "pl:events")
            st, _, b = e.post(body)
            self.assertEqual((st, b), (200, {"ok": True}))
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 1)
        finally:
            e.close()

    def test_deliveries_ready_together_share_script_calls_and_are_answered_each(self):
        # 100 events plus a second copy of 30 of them, all ready in the same
        # loop turns: more than one batch (64 at most), a copy possibly in
        # the same batch as its original. Each delivery gets its own answer.
        e = Env().start()
        try:
            bodies = [json.dumps(h.event(prompt_template_name=f"b{i}")).encode() for i in range(100)]
            bodies += bodies[:30]
            calls = self.script_calls(e)
            answers = self.burst(e, bodies)
            self.assertEqual([st for st, _, _ in answers], [200] * len(bodies))
            dups = [b.get("duplicate", False) for _, _, b in answers]
            # Exactly one of each pair is the duplicate, and no other event.
            for i in range(30):
                self.assertEqual(sorted([dups[i], dups[100 + i]]), [False, True], i)
            self.assertEqual(dups[30:100], [False] * 70)
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 100)
            names = sorted(json.loads(dict(zip(f[::2], f[1::2]))[b"payload"])["details"]
                           ["prompt_template_name"] for _, f in e.redis_cmd("XRANGE", "pl:events",
                                                                            "-", "+"))
            self.assertEqual(names, sorted(f"b{i}" for i in range(100)))
            self.assertEqual(e.metric("plcache_webhook_events_total"), 100)
            self.assertEqual(e.metric("plcache_webhook_duplicates_total"), 30)
            # Batched: far fewer script calls than deliveries.
            made = self.script_calls(e) - calls
            self.assertGreaterEqual(made, 2)
            self.assertLessEqual(made, len(bodies) // 2, f"{made} script calls for {len(bodies)}")
        finally:
            e.close()

    def test_a_refused_batch_is_503_for_each_delivery_and_none_is_lost(self):
        # Redis out of memory refuses the whole script call: every delivery
        # of the batch is answered 503 with Retry-After, and each is recorded
        # once memory is back and the sender retries.
        e = Env().start()
        try:
            bodies = [json.dumps(h.event(prompt_template_name=f"o{i}")).encode() for i in range(40)]
            e.redis_cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
            e.redis_cmd("CONFIG", "SET", "maxmemory", "1")
            try:
                answers = self.burst(e, bodies)
            finally:
                e.redis_cmd("CONFIG", "SET", "maxmemory", "0")
            self.assertEqual([st for st, _, _ in answers], [503] * len(bodies))
            self.assertTrue(all(hd.get("Retry-After") for _, hd, _ in answers))
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), 0)
            self.assertGreaterEqual(e.metric("plcache_redis_errors_total"), 1)
            self.assertIn("redis refused the events", e.daemon.log())
            answers = self.burst(e, bodies)
            self.assertEqual([(st, b) for st, _, b in answers], [(200, {"ok": True})] * len(bodies))
            self.assertEqual(e.redis_cmd("XLEN", "pl:events"), len(bodies))
        finally:
            e.close()


class Lifecycle(unittest.TestCase):
    def test_sigterm_drains_and_exits_0(self):
        e = Env().start()
        try:
            self.assertEqual(e.post(h.event())[0], 200)
            rc = e.daemon.stop(signal.SIGTERM, timeout=10)
            self.assertEqual(rc, 0)
            self.assertIn("plcache-webhook stopped", e.daemon.log())
        finally:
            e.close()

    def test_sigterm_waits_for_a_delivery_held_by_redis(self):
        # Generous timeouts: on a loaded machine the steps below can take a
        # while, and this test is about order, not speed.
        e = Env(PLCACHE_REDIS_TIMEOUT=60, PLCACHE_REQUEST_TIMEOUT=120).start()
        try:
            h.check_drain_waits_for_a_held_delivery(
                self, e, lambda: e.post(h.event(prompt_template_name="held"), timeout=60)[0],
                lambda: e.get("/metrics")[2].decode())
        finally:
            e.close()

    def test_bad_settings_stop_at_start_with_one_line_and_exit_2(self):
        tmp = h.TempDir()
        cases = [
            ({}, "PLCACHE_WEBHOOK_SECRET"),
            ({"PLCACHE_WEBHOOK_SECRET": ","}, "PLCACHE_WEBHOOK_SECRET"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_LISTEN": "nowhere"}, "PLCACHE_LISTEN"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_REDIS_URL": "http://x"}, "PLCACHE_REDIS_URL"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_MAX_BODY": "lots"}, "PLCACHE_MAX_BODY"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_TIMESTAMP_TOLERANCE": "-1"},
             "PLCACHE_TIMESTAMP_TOLERANCE"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_LOG_LEVEL": "loud"}, "PLCACHE_LOG_LEVEL"),
            ({"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_WEBHOOK_PATH": "/healthz"},
             "PLCACHE_WEBHOOK_PATH"),
            ({"PLCACHE_WEBHOOK_SECRET_FILE": "/nonexistent/secret"}, "PLCACHE_WEBHOOK_SECRET"),
        ]
        cases = [({"PROMPTLAYER_API_KEY": "k", **env}, name) for env, name in cases]
        cases += [({"PLCACHE_WEBHOOK_SECRET": "s"}, "PROMPTLAYER_API_KEY"),
                  ({"PLCACHE_WEBHOOK_SECRET": "s", "PROMPTLAYER_API_KEY": "k",
                    "PROMPTLAYER_BASE_URL": "ftp://x"}, "PROMPTLAYER_BASE_URL"),
                  ({"PLCACHE_WEBHOOK_SECRET": "s", "PROMPTLAYER_API_KEY": "k",
                    "PLCACHE_RESYNC_INTERVAL": "soon"}, "PLCACHE_RESYNC_INTERVAL")]
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cases.append(({"PLCACHE_WEBHOOK_SECRET": "s", "PROMPTLAYER_API_KEY": "k",
                       "PLCACHE_LISTEN": "127.0.0.1:%d" % busy.getsockname()[1]}, "PLCACHE_LISTEN"))
        try:
            for env, name in cases:
                d = h.Daemon(WEBHOOK, env, tmp.path, "bad").start()
                rc = d.proc.wait(10)
                h._started.remove(d.proc)
                d.logf.close()
                err = d.log().strip().splitlines()
                os.unlink(d.log_path)
                self.assertEqual(rc, 2, (env, err))
                self.assertEqual(len(err), 1, err)
                self.assertIn(name, err[0])
        finally:
            busy.close()
            tmp.cleanup()

    def test_flags_win_over_the_environment_and_help_exits_0(self):
        tmp = h.TempDir()
        try:
            d = h.Daemon(WEBHOOK, {}, tmp.path, "help").start(["--help"])
            self.assertEqual(d.proc.wait(10), 0)
            h._started.remove(d.proc)
            d = h.Daemon(WEBHOOK, {}, tmp.path, "version").start(["--version"])
            self.assertEqual(d.proc.wait(10), 0)
            h._started.remove(d.proc)
            d = h.Daemon(WEBHOOK, {"PLCACHE_WEBHOOK_SECRET": "s", "PLCACHE_LISTEN": "bad",
                                   "PROMPTLAYER_API_KEY": "k"},
                         tmp.path, "flag").start(["--listen", "also-bad-but-named"])
            self.assertEqual(d.proc.wait(10), 2)
            h._started.remove(d.proc)
            d.logf.close()
            self.assertIn("--listen", d.log())
        finally:
            tmp.cleanup()


if __name__ == "__main__":
    h.main()
