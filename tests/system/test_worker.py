"""test_worker.py -- plcache-worker against a real redis-server and the fake API.

DESIGN.md section 6 (log jobs) and the worker's settings, Redis keys and
operations (sections 2, 4, 8): every row of the answer table, routing of bare
jobs, envelopes and follow-ups, invalid jobs, Retry-After, the pause on a
refused key, graceful shutdown, kill -9 and takeover by heartbeat, two workers
on one queue, a Redis restart, memory with a million queued jobs, start-up
warnings, bad settings and metrics.

Jobs are Log Requests PromptLayer accepts (harness.log_request) carrying a
unique `uid` as an extra key; what was delivered is read from the fake API's
records (a job is delivered when the fake answered it 2xx: 201 for
/log-request).
Every wait is bounded; the only fixed waits watch for something that must
*not* happen (requests while paused, a live worker's jobs taken) or sample
memory over a set time.
"""
import datetime
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness as h

WORKER = os.environ.get("PLCACHE_WORKER_BIN", "")
DONE = 'plcache_worker_jobs_total{result="done"}'
RETRIED = 'plcache_worker_jobs_total{result="retried"}'
DEAD = 'plcache_worker_jobs_total{result="dead"}'
PAUSED_AUTH = 'plcache_worker_paused{reason="auth"}'
PAUSED_RATE = 'plcache_worker_paused{reason="rate"}'


def job(uid, **extra):
    return h.log_request(uid, **extra)


def body_of(record):
    return json.loads(record["body"])


class WorkerCase(unittest.TestCase):
    """A fresh WorkerEnv per test (redis-server, the fake API, worker w1)."""

    settings = {}
    redis_extra = ()
    api_delay_ms = 0
    autostart = True

    def setUp(self):
        self.e = h.WorkerEnv(redis_extra=self.redis_extra, api_delay_ms=self.api_delay_ms,
                             **self.settings)
        self.addCleanup(self.e.close)
        if self.autostart:
            self.e.start()

    # -- helpers --------------------------------------------------------------

    def wait_metric(self, name, want, worker=None, timeout=10.0):
        h.wait_until(lambda: self.e.metric(name, worker) == want, timeout,
                     what=f"{name} == {want}")

    def wait_dead(self, n, timeout=15.0):
        """Waits for at least n dead entries; returns them, oldest first."""
        def enough():
            dead = self.e.dead()
            return dead if len(dead) >= n else None
        return h.wait_until(enough, timeout, what=f"{n} dead entries")

    def records_of(self, uid, path_prefix="/log-request"):
        return [r for r in self.e.records(path_prefix) if body_of(r).get("uid") == uid]

    def assertDeadEntry(self, d, job, status, attempts, error_has=None):
        self.assertLessEqual({"job", "error", "status", "attempts", "failed_at"}, set(d), d)
        self.assertEqual(d["job"], job, d)
        self.assertEqual(d["status"], status, d)
        if isinstance(attempts, tuple):
            self.assertIn(d["attempts"], attempts, d)
        else:
            self.assertEqual(d["attempts"], attempts, d)
        self.assertIsInstance(d["error"], str, d)
        self.assertTrue(d["error"], d)
        if error_has:
            self.assertIn(error_has, d["error"], d)
        t = datetime.datetime.fromisoformat(d["failed_at"].replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        age = abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
        self.assertLess(age, 120, f"failed_at {d['failed_at']} is not now")

    def assertNothingLeft(self):
        """Queue, retry set and every processing list empty (bounded wait)."""
        self.e.wait_settled()


class AnswerTable(WorkerCase):
    """DESIGN.md section 6: what the worker does with each answer."""

    settings = {"PLCACHE_MAX_ATTEMPTS": 5, "PLCACHE_FORWARD_TIMEOUT": 1}

    def retried_then_delivered(self, uid, *faults):
        """Queues faults for /log-request, pushes one job, and checks it
        reached the fake once per fault count plus once more, answered 201."""
        fails = sum(f.get("count", 1) for f in faults)
        self.e.fault(*[{"path_prefix": "/log-request", **f} for f in faults])
        self.e.push(job(uid))
        self.e.wait_delivered([uid], timeout=20)
        self.assertNothingLeft()
        recs = self.records_of(uid)
        self.assertEqual(len(recs), fails + 1, recs)
        self.assertEqual(recs[-1]["status"], 201, recs)
        for r in recs:
            self.assertEqual(body_of(r), job(uid))
        self.assertEqual(self.e.dead(), [])
        h.wait_until(lambda: self.e.metric(RETRIED) >= fails, 5, what="retried metric")
        return recs

    def test_2xx_is_done(self):
        for i, status in enumerate((200, 201, 202)):
            with self.subTest(status=status):
                # Every status comes from a fault: the fake's own answer is 201.
                self.e.fault({"path_prefix": "/log-request", "status": status,
                              "body": {"success": True, "id": 1000 + i}})
                self.e.push(job(i))
                self.e.wait_delivered([i])
                self.assertNothingLeft()
        recs = self.e.records("/log-request")
        self.assertEqual([r["status"] for r in recs], [200, 201, 202])
        self.assertEqual([body_of(r) for r in recs], [job(0), job(1), job(2)])
        self.assertEqual(self.e.dead(), [])
        self.wait_metric(DONE, 3)
        self.assertEqual(self.e.metric(RETRIED), 0)

    def test_408_is_retried_then_delivered(self):
        self.retried_then_delivered("408", {"status": 408, "count": 2})

    def test_429_is_retried_then_delivered(self):
        self.retried_then_delivered("429", {"status": 429, "count": 2})

    def test_5xx_is_retried_then_delivered(self):
        for status in (500, 502, 503, 504):
            with self.subTest(status=status):
                self.retried_then_delivered(status, {"status": status, "count": 2})

    def test_a_timeout_is_retried_then_delivered(self):
        # The first answer is held 3 s, past PLCACHE_FORWARD_TIMEOUT (1 s).
        self.e.fault({"path_prefix": "/log-request", "delay_ms": 3000, "count": 1})
        self.e.push(job("slow"))
        self.e.wait_delivered(["slow"], timeout=20)
        self.assertNothingLeft()
        recs = self.records_of("slow")
        self.assertEqual(len(recs), 2, recs)
        self.assertEqual(recs[1]["status"], 201)
        gap = recs[1]["at_ms"] - recs[0]["at_ms"]
        self.assertGreaterEqual(gap, 900, "retried before the forward timeout")
        self.assertLess(gap, 2900, "waited for the held answer instead of timing out")
        self.assertEqual(self.e.dead(), [])
        h.wait_until(lambda: self.e.metric(RETRIED) >= 1, 5, what="retried metric")

    def test_a_dropped_connection_is_retried_then_delivered(self):
        recs = self.retried_then_delivered("drop", {"drop": True, "count": 2})
        self.assertEqual([r["status"] for r in recs], [0, 0, 201])

    def test_connection_refused_is_retried_then_delivered(self):
        self.assertEqual(self.e.worker.stop(), 0)
        w = self.e.start(self.e.add_worker(PLCACHE_MAX_ATTEMPTS=100))
        port = self.e.api.port
        self.e.api.stop()
        self.e.push(job("refused"))
        h.wait_until(lambda: self.e.metric(RETRIED, w) >= 2, 15, what="two retries")
        self.assertEqual(self.e.dead(), [])
        self.e.api = h.FakeApi(self.e.tmp.path, port=port).start()
        self.e.wait_delivered(["refused"], timeout=20)
        self.assertNothingLeft()
        self.assertEqual(len(self.records_of("refused")), 1)
        self.assertEqual(self.e.dead(), [])

    def test_other_4xx_is_dead_at_once_with_status_and_answer(self):
        for n, status in enumerate((400, 404, 409, 422)):
            with self.subTest(status=status):
                self.e.fault({"path_prefix": "/log-request", "status": status,
                              "body": {"message": f"refused as {status} on purpose"}})
                self.e.push(job(status))
                dead = self.wait_dead(n + 1)
                self.assertDeadEntry(dead[-1], job(status), status, 1,
                                     error_has=f"refused as {status} on purpose")
                self.assertNothingLeft()
                self.assertEqual(len(self.records_of(status)), 1)
        self.assertEqual(self.e.metric('plcache_worker_dead_total{reason="rejected"}'), 4)
        self.assertEqual(self.e.metric(DEAD), 4)
        self.assertEqual(self.e.metric(RETRIED), 0)


class Exhaustion(WorkerCase):
    """After PLCACHE_MAX_ATTEMPTS failed attempts a job is dead."""

    settings = {"PLCACHE_MAX_ATTEMPTS": 3}

    def test_a_job_failing_every_time_is_dead_after_max_attempts(self):
        self.e.fault({"path_prefix": "/log-request", "status": 503},
                     {"path_prefix": "/log-request", "status": 502},
                     {"path_prefix": "/log-request", "status": 500,
                      "body": {"message": "the last straw"}})
        self.e.push(job("doomed"))
        dead = self.wait_dead(1, timeout=20)
        self.assertEqual(len(dead), 1)
        self.assertDeadEntry(dead[0], job("doomed"), 500, 3)
        self.assertNothingLeft()
        self.assertEqual([r["status"] for r in self.records_of("doomed")], [503, 502, 500])
        self.assertEqual(self.e.metric('plcache_worker_dead_total{reason="attempts"}'), 1)
        self.assertEqual(self.e.metric(RETRIED), 2)
        self.assertEqual(self.e.metric(DONE), 0)

    def test_a_job_never_answered_is_dead_with_status_null(self):
        self.e.fault({"path_prefix": "/log-request", "drop": True, "count": 3})
        self.e.push(job("unanswered"))
        dead = self.wait_dead(1, timeout=20)
        self.assertDeadEntry(dead[0], job("unanswered"), None, 3)
        self.assertNothingLeft()
        self.assertEqual(len(self.records_of("unanswered")), 3)

    def test_an_unreachable_api_is_retried_then_dead_with_status_null(self):
        self.assertEqual(self.e.worker.stop(), 0)
        w = self.e.add_worker(PROMPTLAYER_BASE_URL=f"http://127.0.0.1:{h.free_port()}")
        self.e.start(w)
        self.e.push(job("nowhere"))
        dead = self.wait_dead(1, timeout=20)
        self.assertDeadEntry(dead[0], job("nowhere"), None, 3)
        self.assertNothingLeft()
        self.assertEqual(self.e.metric(RETRIED, w), 2)

    def test_a_failure_that_repeats_is_dead_at_once(self):
        # An API whose certificate does not verify: curl says so, and trying
        # again cannot cure it (model/retry.h), as the applier's fetches have
        # always treated it. Dead at once, not after max_attempts of backoff.
        cert = os.path.join(self.e.tmp.path, "api.crt")
        key = os.path.join(self.e.tmp.path, "api.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-days", "1", "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(lambda: (srv.shutdown(), srv.server_close(), t.join(5)))
        self.assertEqual(self.e.worker.stop(), 0)
        w = self.e.add_worker(PROMPTLAYER_BASE_URL=f"https://127.0.0.1:{srv.server_address[1]}")
        self.e.start(w)
        self.e.push(job("untrusted"))
        dead = self.wait_dead(1, timeout=20)
        self.assertDeadEntry(dead[0], job("untrusted"), None, 1, error_has="no answer: ")
        self.assertIn("certificate", dead[0]["error"].lower(), dead[0])
        self.assertNothingLeft()
        self.assertEqual(self.e.metric(RETRIED, w), 0)
        self.assertEqual(self.e.metric('plcache_worker_dead_total{reason="rejected"}', w), 1)


class AuthPause(WorkerCase):
    """401/403: stop taking jobs, keep them, try the key again, resume."""

    settings = {"PLCACHE_AUTH_PAUSE": 1, "PLCACHE_MAX_ATTEMPTS": 3, "PLCACHE_CONCURRENCY": 4}
    WINDOW = 2.5  # seconds watched while the key is refused

    def pause_then_resume(self, status, break_key, fix_key):
        break_key()
        self.e.push(job(0))
        self.wait_metric(PAUSED_AUTH, 1, timeout=10)
        self.e.push(*[job(i) for i in range(1, 41)])
        # Nothing to poll for: watch a few pauses' worth of time, then count.
        time.sleep(self.WINDOW)
        recs = self.e.records()
        pause = float(self.settings["PLCACHE_AUTH_PAUSE"])
        conc = int(self.settings["PLCACHE_CONCURRENCY"])
        most = 1 + conc * (int(self.WINDOW / pause) + 1)  # one try of the key per pause
        self.assertLessEqual(len(recs), most, "kept sending jobs while the key was refused")
        # The first refusal went out 300 ms after its request (see break_key);
        # nothing may start until the key is tried again a pause later.
        refused_at = recs[0]["at_ms"] + 300
        quiet = [(r["body"], r["at_ms"] - refused_at) for r in recs[1:]
                 if r["at_ms"] < refused_at + pause * 1000 - 100]
        self.assertEqual(quiet, [], "requests (body, ms after the refusal) started before "
                                    "PLCACHE_AUTH_PAUSE was over")
        self.assertLessEqual({r["status"] for r in recs}, {status, None})  # None: held
        self.assertEqual(self.e.dead(), [], "a refused key killed jobs")
        self.assertEqual(self.e.held(), 41, "jobs went missing during the pause")
        fix_key()
        got = self.e.wait_delivered(range(41), timeout=15)
        self.assertEqual(got, {i: 1 for i in range(41)})
        self.assertNothingLeft()
        self.wait_metric(PAUSED_AUTH, 0)
        self.assertEqual(self.e.dead(), [])
        log = self.e.worker.log()
        loud = [ln for ln in log.splitlines()
                if ("level=error" in ln or "level=warn" in ln)
                and any(w in ln.lower() for w in ("auth", "key", str(status)))]
        self.assertTrue(loud, "the refused key was not logged as a warning or error")
        self.assertNotIn("test-key", log)

    # Each refusal is answered 300 ms late, so the worker, its queue empty,
    # is already waiting for the next job when it learns the key is refused.

    def test_401_pauses_keeps_the_jobs_and_resumes_once_the_key_works(self):
        self.pause_then_resume(
            401,
            lambda: self.e.api.control("PUT", "/_fake/config",
                                       {"api_key": "rotated-key", "delay_ms": 300}),
            lambda: self.e.api.control("PUT", "/_fake/config",
                                       {"api_key": "test-key", "delay_ms": 0}))

    def test_sighup_rereads_the_api_key_file_and_never_stops_the_worker(self):
        # A rotated key: PromptLayer now wants "rotated-key"; the file still
        # holds the old one, so the worker pauses. The operator writes the new
        # key and sends SIGHUP (systemctl reload): the worker carries on with
        # it, without a restart (on the old worker SIGHUP killed it: exit 129).
        self.assertEqual(self.e.worker.stop(), 0)
        key_file = os.path.join(self.e.tmp.path, "api-key")
        with open(key_file, "w") as f:
            f.write("test-key\n")
        w = self.e.add_worker(PROMPTLAYER_API_KEY=None, PROMPTLAYER_API_KEY_FILE=key_file)
        self.e.start(w)
        self.e.api.control("PUT", "/_fake/config", {"api_key": "rotated-key"})
        self.e.push(job("rotated"))
        self.wait_metric(PAUSED_AUTH, 1, worker=w, timeout=10)
        with open(key_file, "w") as f:
            f.write("rotated-key\n")
        w.proc.send_signal(signal.SIGHUP)
        self.e.wait_delivered(["rotated"], timeout=20)
        self.assertIsNone(w.proc.poll(), "SIGHUP stopped the worker")
        self.assertIn("SIGHUP: API key reloaded", w.log())
        self.assertNotIn("rotated-key", w.log())
        self.assertEqual(self.e.dead(), [])

    def test_403_pauses_keeps_the_jobs_and_resumes(self):
        self.pause_then_resume(
            403,
            lambda: self.e.fault({"status": 403, "count": 1000000, "delay_ms": 300,
                                  "body": {"message": "forbidden"}}),
            lambda: self.e.api.control("DELETE", "/_fake/faults"))


class Routing(WorkerCase):
    """Bare jobs, envelopes and `then` follow-ups (DESIGN.md section 6)."""

    def test_a_bare_job_is_the_body_of_post_log_request(self):
        body = h.log_request(
            "bare", function_name="openai.chat.completions.create",
            kwargs={"model": "gpt-4o",
                    "messages": [{"role": "user", "content": "h\u00e9llo \u2713 \"q\" \\ / \n"}]},
            request_response={"choices": [{"message": {"content": "hi"}}]},
            request_start_time=1701468357.924, request_end_time=1701468358.5,
            tags=["a", "b"], metadata={"user": "u1"}, score=0, ok=True,
            nothing=None, emoji="\U0001F600", negative=-12)
        self.e.push(body)
        self.e.wait_delivered(["bare"])
        self.assertNothingLeft()
        recs = self.e.records()
        self.assertEqual(len(recs), 1, recs)
        r = recs[0]
        self.assertEqual((r["method"], r["path"], r["query"]), ("POST", "/log-request", None))
        self.assertEqual(r["api_key"], "test-key")
        self.assertTrue((r["content_type"] or "").startswith("application/json"), r)
        self.assertEqual(body_of(r), body)

    def test_a_bare_job_is_sent_byte_for_byte(self):
        # A valid Log Request after the odd spacing and number forms.
        text = ('{ "uid" : "raw",\n  "n": 1.50, "z": 1e2, "s": "caf\\u00e9", "a": [ ] ,'
                + json.dumps(h.log_request())[1:])
        self.e.push(text)
        self.e.wait_delivered(["raw"])
        self.assertEqual(self.e.records()[0]["body"], text)

    def test_any_json_object_is_a_valid_job(self):
        # Valid JSON that a strict C parser may refuse by default: a NUL
        # character and an integer beyond 64 bits.
        text = ('{"uid": "odd", "nul": "a\\u0000b", "big": 123456789012345678901234567890, '
                + json.dumps(h.log_request())[1:])
        self.e.push(text)
        self.e.wait_delivered(["odd"])
        self.assertEqual(self.e.dead(), [])
        self.assertEqual(body_of(self.e.records()[0]),
                         h.log_request("odd", nul="a\u0000b", big=123456789012345678901234567890))

    def test_an_envelope_posts_its_body_to_its_endpoint(self):
        endpoints = ["/rest/track-request", "/rest/track-score", "/rest/track-metadata",
                     "/rest/track-group", "/spans-bulk", "/log-request"]
        jobs = [{"endpoint": ep, "body": h.track_body(ep, uid=ep, request_id=5, score=90)}
                for ep in endpoints]
        self.e.push(*jobs)
        self.e.wait_delivered(endpoints, path_prefix=None)
        self.assertNothingLeft()
        recs = self.e.records()
        self.assertEqual(len(recs), len(endpoints))
        for r in recs:
            self.assertEqual(r["method"], "POST")
            self.assertEqual(r["path"], body_of(r)["uid"])
            self.assertEqual(body_of(r), h.track_body(r["path"], uid=r["path"], request_id=5, score=90))
            self.assertEqual(r["api_key"], "test-key")
            self.assertTrue((r["content_type"] or "").startswith("application/json"), r)

    def test_then_follow_ups_get_the_request_id_of_the_first_answer(self):
        self.e.push({"endpoint": "/log-request", "body": job("first"),
                     "then": [{"endpoint": "/rest/track-score", "body": {"uid": "score", "score": 90}},
                              {"endpoint": "/rest/track-metadata",
                               "body": {"uid": "meta", "metadata": {"user": "u1"}}}]})
        self.e.wait_delivered(["first", "score", "meta"], path_prefix=None)
        self.assertNothingLeft()
        recs = self.e.records()
        self.assertEqual([r["path"] for r in recs][0], "/log-request")
        self.assertEqual(sorted(r["path"] for r in recs[1:]),
                         ["/rest/track-metadata", "/rest/track-score"])
        first = recs[0]
        self.assertIsNotNone(first["answer_id"])
        by_uid = {body_of(r)["uid"]: r for r in recs}
        self.assertEqual(body_of(by_uid["score"]),
                         {"uid": "score", "score": 90, "request_id": first["answer_id"]})
        self.assertEqual(body_of(by_uid["meta"]),
                         {"uid": "meta", "metadata": {"user": "u1"}, "request_id": first["answer_id"]})
        self.assertEqual(self.e.metric(DONE), 1)

    def test_then_runs_only_after_the_first_call_succeeded(self):
        self.e.fault({"path_prefix": "/log-request", "status": 500, "count": 2})
        self.e.push({"endpoint": "/log-request", "body": job("first"),
                     "then": [{"endpoint": "/rest/track-score", "body": {"uid": "score", "score": 1}}]})
        self.e.wait_delivered(["first", "score"], path_prefix=None, timeout=20)
        self.assertNothingLeft()
        recs = self.e.records()
        self.assertEqual([(r["path"], r["status"]) for r in recs],
                         [("/log-request", 500), ("/log-request", 500), ("/log-request", 201),
                          ("/rest/track-score", 200)])
        self.assertEqual(body_of(recs[3])["request_id"], recs[2]["answer_id"])

    def test_then_takes_id_first_and_request_id_when_there_is_no_id(self):
        self.e.fault({"path_prefix": "/log-request", "status": 200,
                      "body": {"success": True, "id": 555, "request_id": 556}},
                     {"path_prefix": "/rest/track-group", "status": 200,
                      "body": {"success": True, "request_id": 777}})
        self.e.push({"endpoint": "/log-request", "body": job("a"),
                     "then": [{"endpoint": "/rest/track-score", "body": {"uid": "a-score", "score": 1}}]})
        self.e.wait_delivered(["a", "a-score"], path_prefix=None)
        self.e.push({"endpoint": "/rest/track-group", "body": h.track_body("/rest/track-group", uid="b"),
                     "then": [{"endpoint": "/rest/track-score", "body": {"uid": "b-score", "score": 1}}]})
        self.e.wait_delivered(["b", "b-score"], path_prefix=None)
        self.assertNothingLeft()
        by_uid = {body_of(r)["uid"]: body_of(r) for r in self.e.records()}
        self.assertEqual(by_uid["a-score"]["request_id"], 555)
        self.assertEqual(by_uid["b-score"]["request_id"], 777)

    def test_a_failed_follow_up_is_retried_with_a_request_id_from_a_successful_first_call(self):
        self.e.fault({"path_prefix": "/rest/track-score", "status": 503, "count": 1})
        self.e.push({"endpoint": "/log-request", "body": job("first"),
                     "then": [{"endpoint": "/rest/track-score", "body": {"uid": "score", "score": 1}}]})
        self.e.wait_delivered(["score"], path_prefix="/rest/track-score", timeout=20)
        self.assertNothingLeft()
        firsts = {r["answer_id"] for r in self.e.ok_records("/log-request")}
        scores = self.e.ok_records("/rest/track-score")
        self.assertEqual(len(scores), 1)
        self.assertIn(body_of(scores[0])["request_id"], firsts)
        self.assertEqual(self.e.dead(), [])

    def test_the_oldest_job_goes_first(self):
        self.assertEqual(self.e.worker.stop(), 0)
        self.e.push(*[job(i) for i in range(10)])
        w = self.e.add_worker(PLCACHE_CONCURRENCY=1)
        self.e.start(w)
        self.e.wait_delivered(range(10))
        self.assertEqual([body_of(r)["uid"] for r in self.e.records()], list(range(10)))


class InvalidJobs(WorkerCase):
    """A job that is not a JSON object, or not a valid envelope, is dead at
    once as invalid_job, and nothing is sent for it."""

    NOT_OBJECTS = ["[1]", '"text"', "not json", "", "42", "null", '{"uid": 1']
    BAD_ENVELOPES = [
        {"endpoint": "http://evil/", "body": {"uid": 1}},
        {"endpoint": "https://evil.example/log-request", "body": {"uid": 2}},
        {"endpoint": "rest/track-score", "body": {"uid": 3}},
        {"endpoint": "/rest/track-score"},
        {"endpoint": "/rest/track-score", "body": [1]},
        {"endpoint": "/rest/track-score", "body": "x"},
        {"endpoint": 5, "body": {"uid": 4}},
    ]

    def check_invalid(self, raws, expected):
        """Pushes raw jobs; each must be dead as invalid_job, its job one of
        the values in `expected` (same order as raws)."""
        self.e.push(*raws)
        dead = self.wait_dead(len(raws))
        self.assertEqual(len(dead), len(raws))
        left = list(dead)
        for raw, want in zip(raws, expected):
            match = [d for d in left if d["job"] in want]
            self.assertTrue(match, f"no dead entry for {raw!r} among {left}")
            d = match[0]
            left.remove(d)
            self.assertDeadEntry(d, d["job"], None, (0, 1))
        self.assertNothingLeft()
        self.assertEqual(self.e.records(), [], "a request was made for an invalid job")
        self.assertEqual(self.e.metric('plcache_worker_dead_total{reason="invalid_job"}'), len(raws))

    def test_not_a_json_object_is_dead_as_invalid_job(self):
        expected = []
        for raw in self.NOT_OBJECTS:
            try:
                expected.append((json.loads(raw), raw))  # the JSON value, or its text
            except ValueError:
                expected.append((raw,))  # not JSON: the text as a JSON string
        self.check_invalid(self.NOT_OBJECTS, expected)

    def test_an_envelope_without_a_path_or_a_body_object_is_dead_as_invalid_job(self):
        self.check_invalid([json.dumps(j) for j in self.BAD_ENVELOPES],
                           [(j,) for j in self.BAD_ENVELOPES])

    def test_an_envelope_with_a_bad_follow_up_is_refused_before_any_request(self):
        jobs = [{"endpoint": "/log-request", "body": {"uid": 1},
                 "then": [{"endpoint": "http://evil/", "body": {}}]},
                {"endpoint": "/log-request", "body": {"uid": 2},
                 "then": [{"endpoint": "/rest/track-score"}]},
                {"endpoint": "/log-request", "body": {"uid": 3}, "then": {"endpoint": "/x", "body": {}}}]
        self.check_invalid([json.dumps(j) for j in jobs], [(j,) for j in jobs])

    def test_the_dead_entry_of_an_invalid_job_says_invalid_job(self):
        # DESIGN.md: "dead at once, as `invalid_job`". The metric's reason says
        # so; `plcache dlq list` shows only the entry, so its error must too.
        self.e.push("not json", json.dumps({"endpoint": "http://evil/", "body": {}}))
        for d in self.wait_dead(2):
            self.assertIn("invalid_job", d["error"], d)

    def test_valid_jobs_after_invalid_ones_are_delivered(self):
        self.e.push("not json", job("fine"), "[2]")
        self.e.wait_delivered(["fine"])
        self.wait_dead(2)
        self.assertNothingLeft()
        self.assertEqual(len(self.e.records()), 1)


class WrongTypes(WorkerCase):
    """A key of the wrong type where a job must go refuses the whole write:
    nothing moves, the job stays in the processing list, and it goes on once
    the key is mended (Redis does not roll a script back, so the types are
    checked before anything is removed)."""

    settings = {"PLCACHE_RETRY_BASE_MS": 50, "PLCACHE_RETRY_MAX_MS": 100}

    def refused_then_mended(self, key, kind, fault):
        self.e.r("SET", self.e.key(key), "oops")
        self.e.fault(fault)
        self.e.push(job("kept"))
        h.wait_until(lambda: f"is not a {kind}" in self.e.worker.log(), 10,
                     what="the refused write logged")
        mine = self.e.key("track:processing:" + self.e.worker.worker_id)
        self.assertEqual([json.loads(x)["uid"] for x in self.e.r("LRANGE", mine, 0, -1)],
                         ["kept"])
        self.assertEqual(self.e.r("GET", self.e.key(key)), b"oops")
        self.e.r("DEL", self.e.key(key))

    def test_a_retry_set_of_the_wrong_type_loses_no_job(self):
        self.refused_then_mended("track:retry", "zset",
                                 {"path_prefix": "/log-request", "status": 503})
        self.e.wait_delivered(["kept"], timeout=15)
        self.assertNothingLeft()

    def test_a_dead_list_of_the_wrong_type_loses_no_job(self):
        self.refused_then_mended("track:dead", "list",
                                 {"path_prefix": "/log-request", "status": 400})
        h.wait_until(lambda: len(self.e.dead()) == 1, 10, what="the dead entry written")
        self.assertEqual(self.e.dead()[0]["job"], job("kept"))
        self.e.push(job("other"))
        self.e.wait_delivered(["other"], timeout=15)
        h.wait_until(lambda: self.e.processing() == {} and self.e.queued() == [], 10,
                     what="nothing left but the dead entry")


class RetryAfter(WorkerCase):
    """Retry-After is honoured; a 429 holds back every new request."""

    # A cap above the Retry-After used here, so only Retry-After decides.
    settings = {"PLCACHE_RETRY_MAX_MS": 5000, "PLCACHE_CONCURRENCY": 4}

    def test_a_retry_waits_in_the_retry_set_scored_by_its_due_time(self):
        self.e.fault({"path_prefix": "/log-request", "status": 503, "retry_after": "2"})
        self.e.push(job("later"))
        h.wait_until(lambda: self.e.r("ZCARD", self.e.key("track:retry")) == 1, 5,
                     what="the job in the retry set")
        h.wait_until(lambda: self.e.processing() == {}, 2, what="the job out of processing")
        self.assertEqual(self.e.r("LLEN", self.e.key("track")), 0)
        first = self.records_of("later")[0]
        _, score = self.e.r("ZRANGE", self.e.key("track:retry"), 0, -1, "WITHSCORES")
        due = float(score)
        self.assertGreaterEqual(due, first["at_ms"] + 1900)
        self.assertLess(due, first["at_ms"] + 3500)
        self.e.wait_delivered(["later"], timeout=10)
        self.assertNothingLeft()
        recs = self.records_of("later")
        self.assertEqual(len(recs), 2)
        self.assertGreaterEqual(recs[1]["at_ms"] - recs[0]["at_ms"], 1900)

    def test_a_429_with_retry_after_holds_every_new_request(self):
        # The 429 comes 300 ms after the request, when the worker, its queue
        # empty, is already waiting for the next job.
        self.e.fault({"path_prefix": "/log-request", "status": 429, "retry_after": "2",
                      "delay_ms": 300})
        self.e.push(job("first"))
        self.wait_metric(PAUSED_RATE, 1, timeout=10)
        # Pushed while paused: none may start before the 2 s are over.
        self.e.push(*[job(i) for i in range(10)])
        self.e.wait_delivered(["first", *range(10)], timeout=15)
        self.assertNothingLeft()
        recs = self.e.records()
        self.assertEqual(recs[0]["status"], 429)
        t429 = recs[0]["at_ms"] + 300  # when the answer went out
        early = [(r["body"], r["at_ms"] - t429) for r in recs[1:] if r["at_ms"] < t429 + 1900]
        self.assertEqual(early, [], "requests (body, ms after the 429) started while "
                                    "PromptLayer asked to wait")
        self.assertEqual(len(recs), 12)
        self.wait_metric(PAUSED_RATE, 0)
        self.assertEqual(self.e.dead(), [])


class Shutdown(WorkerCase):
    """SIGTERM: stop taking, finish what is in flight, return the rest."""

    api_delay_ms = 1500
    settings = {"PLCACHE_CONCURRENCY": 4, "PLCACHE_SHUTDOWN_TIMEOUT": 10}

    def test_sigterm_finishes_in_flight_returns_the_rest_and_exits_0(self):
        ids = list(range(20))
        self.e.push(*[job(i) for i in ids])
        h.wait_until(lambda: len(self.e.records()) >= 4, 10, what="4 requests in flight")
        self.wait_metric("plcache_worker_inflight", 4, timeout=5)
        # and one job taken ahead, which the stop must return unsent
        self.wait_metric("plcache_worker_waiting", 1, timeout=5)
        w = self.e.worker
        t_term = time.time()
        w.proc.send_signal(signal.SIGTERM)
        rc = w.proc.wait(timeout=20)
        took = time.time() - t_term
        self.assertEqual(rc, 0, w.log()[-3000:])
        self.assertLess(took, 10, "took longer than PLCACHE_SHUTDOWN_TIMEOUT")
        w.stop()
        late = [r for r in self.e.records() if r["at_ms"] > t_term * 1000 + 250]
        self.assertEqual(late, [], "requests started after SIGTERM")
        delivered = self.e.delivered()
        queued = [json.loads(x)["uid"] for x in self.e.queued()]
        self.assertGreaterEqual(len(delivered), 4, "in-flight requests were not finished")
        self.assertEqual(sorted(list(delivered) + queued), ids)
        self.assertEqual(set(delivered.values()), {1})
        self.assertEqual(self.e.processing(), {})
        self.assertEqual(self.e.r("ZCARD", self.e.key("track:retry")), 0)
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), w.worker_id))
        # Another worker delivers the rest, each job once.
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 0})
        self.e.start(self.e.add_worker())
        got = self.e.wait_delivered(ids, timeout=20)
        self.assertEqual(got, {i: 1 for i in ids})
        self.assertNothingLeft()

    def test_sigint_stops_an_idle_worker_and_removes_its_heartbeat(self):
        w = self.e.worker
        h.wait_until(lambda: self.e.r("ZSCORE", self.e.key("track:workers"), w.worker_id), 5,
                     what="a heartbeat")
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.proc.wait(timeout=10), 0, w.log()[-3000:])
        w.stop()
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), w.worker_id))


class ShutdownTimeout(WorkerCase):
    api_delay_ms = 5000
    settings = {"PLCACHE_CONCURRENCY": 4, "PLCACHE_SHUTDOWN_TIMEOUT": 1,
                "PLCACHE_FORWARD_TIMEOUT": 30}

    def test_requests_longer_than_the_shutdown_timeout_go_back_to_the_queue(self):
        ids = list(range(8))
        self.e.push(*[job(i) for i in ids])
        h.wait_until(lambda: len(self.e.records()) >= 4, 10, what="4 requests in flight")
        w = self.e.worker
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        rc = w.proc.wait(timeout=15)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, w.log()[-3000:])
        self.assertGreaterEqual(took, 0.8, "did not wait for the requests in flight")
        self.assertLess(took, 4.0, "overran PLCACHE_SHUTDOWN_TIMEOUT")
        w.stop()
        self.assertEqual(sorted(json.loads(x)["uid"] for x in self.e.queued()), ids)
        self.assertEqual(self.e.processing(), {})
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), w.worker_id))
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 0})
        self.e.start(self.e.add_worker())
        self.e.wait_delivered(ids, timeout=20)
        self.assertNothingLeft()


class ShutdownWhileBlocked(WorkerCase):
    """The shutdown timeout passes while the worker waits in BLMOVE on an
    empty pl:track: the release must not go out before that BLMOVE is over,
    or Redis hands it a job the release just returned, into a processing
    list that nobody owns any more."""

    api_delay_ms = 3000
    settings = {"PLCACHE_CONCURRENCY": 4, "PLCACHE_SHUTDOWN_TIMEOUT": 0,
                "PLCACHE_FORWARD_TIMEOUT": 30}

    def test_release_waits_for_the_blocking_take(self):
        ids = [0, 1]
        self.e.push(*[job(i) for i in ids])
        h.wait_until(lambda: len(self.e.records()) >= 2, 10, what="2 requests in flight")
        h.wait_until(lambda: b"cmd=blmove" in self.e.r("CLIENT", "LIST"), 5,
                     what="the worker blocked in BLMOVE")
        w = self.e.worker
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(timeout=15), 0, w.log()[-3000:])
        w.stop()
        self.assertEqual(sorted(json.loads(x)["uid"] for x in self.e.queued()), ids)
        self.assertEqual(self.e.processing(), {})
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), w.worker_id))


class TakeBound(WorkerCase):
    """Invalid jobs end at once, inside the start of the batch that took
    them: that must not send a new take sized before the rest of the batch
    is counted."""

    api_delay_ms = 3000
    settings = {"PLCACHE_CONCURRENCY": 4, "PLCACHE_FORWARD_TIMEOUT": 30}

    def test_jobs_that_end_at_once_do_not_let_the_worker_take_past_its_bound(self):
        self.e.push(*(["not json"] * 3 + [job(i) for i in range(12)]))
        self.wait_dead(3)
        h.wait_until(lambda: len(self.e.records()) >= 4, 10, what="4 requests in flight")
        time.sleep(0.5)  # a take past the bound would have come back by now
        # concurrency 4 + a quarter: 5 jobs at most in the processing list
        self.assertEqual(sum(self.e.processing().values()), 5)
        self.assertEqual(len(self.e.queued()), 7)


class RecoveryAfterReap(WorkerCase):
    """Redis unreachable past the heartbeat timeout: another worker returns
    our processing list to pl:track. A job taken ahead and not yet sent is
    then not ours any more, and must not be sent from memory as well."""

    api_delay_ms = 2000
    settings = {"PLCACHE_CONCURRENCY": 4, "PLCACHE_FORWARD_TIMEOUT": 30}

    def test_a_job_taken_ahead_that_was_returned_is_dropped_unsent(self):
        self.e.push(*[job(i) for i in range(5)])
        h.wait_until(lambda: len(self.e.records()) >= 4, 10, what="4 requests in flight")
        self.wait_metric("plcache_worker_waiting", 1, timeout=5)
        waiting = sorted(set(range(5)) - {body_of(r)["uid"] for r in self.e.records()})
        self.assertEqual(len(waiting), 1)
        # What a reaper does, then the link drops: every entry back to pl:track.
        proc = self.e.key("track:processing:") + self.e.worker.worker_id
        self.e.r("EVAL", "local n = 0\n"
                         "while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do\n"
                         "  n = n + 1\nend\nreturn n\n", 2, proc, self.e.key("track"))
        self.e.r("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        # All five come back from pl:track and are delivered; the one that
        # was waiting exactly once (the four in flight went out twice: once
        # before, once retaken, as at-least-once allows after a reap).
        self.e.wait_delivered(list(range(5)), timeout=20)
        self.e.wait_settled(timeout=20)
        self.assertEqual(len(self.records_of(waiting[0])), 1)
        self.assertIn("dropped jobs taken ahead", self.e.worker.log())


class Takeover(WorkerCase):
    """kill -9 and heartbeats: a dead worker's jobs go back to pl:track."""

    def test_kill_9_mid_run_loses_nothing_and_repeats_at_most_what_was_in_flight(self):
        self.assertEqual(self.e.worker.stop(), 0)
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 10})
        n, conc = 3000, 64
        self.e.push(*[job(i) for i in range(n)])
        w1 = self.e.add_worker(PLCACHE_CONCURRENCY=conc, PLCACHE_LOG_LEVEL="info")
        self.e.start(w1)
        processing = self.e.key("track:processing:" + w1.worker_id)
        # Kill while jobs are in flight (each takes >= 10 ms at the fake).
        h.wait_until(lambda: self.e.answered_2xx() >= 1000 and self.e.r("LLEN", processing) >= 8,
                     60, interval=0.005, what="1000 jobs delivered and more in flight")
        w1.stop(signal.SIGKILL)
        left = self.e.r("LLEN", processing)
        self.assertGreater(left, 0, "nothing was in flight at the kill: the test proves nothing")
        w2 = self.e.add_worker(PLCACHE_CONCURRENCY=conc, PLCACHE_LOG_LEVEL="info",
                               PLCACHE_HEARTBEAT_TIMEOUT=2)
        self.e.start(w2)
        got = self.e.wait_delivered(range(n), timeout=180)
        self.assertNothingLeft()
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), w1.worker_id))
        self.assertEqual(self.e.dead(), [])
        # Repeated: at most the jobs sent and not yet recorded as finished,
        # which the worker keeps under concurrency + a quarter (taken ahead).
        dupes = sum(c - 1 for c in got.values())
        self.assertLessEqual(dupes, conc + conc // 4, f"{dupes} jobs delivered twice")

    def test_jobs_of_a_worker_silent_too_long_go_back_to_the_queue(self):
        self.assertEqual(self.e.worker.stop(), 0)
        now = int(time.time() * 1000)
        self.e.r("RPUSH", self.e.key("track:processing:ghost"),
                 *[json.dumps(job(i)) for i in range(5)])
        self.e.r("ZADD", self.e.key("track:workers"), now - 60000, "ghost")
        w = self.e.add_worker(PLCACHE_HEARTBEAT_TIMEOUT=2)
        self.e.start(w)
        got = self.e.wait_delivered(range(5), timeout=20)
        self.assertEqual(got, {i: 1 for i in range(5)})
        self.assertNothingLeft()
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), "ghost"))

    def test_a_live_worker_keeps_its_jobs(self):
        self.assertEqual(self.e.worker.stop(), 0)
        key = self.e.key("track:processing:busy")
        self.e.r("RPUSH", key, json.dumps(job("busy")))
        stop = threading.Event()

        def beat():
            c = self.e.redis.client()
            try:
                while not stop.is_set():
                    c("ZADD", self.e.key("track:workers"), int(time.time() * 1000), "busy")
                    stop.wait(0.2)
            finally:
                c.close()
        t = threading.Thread(target=beat)
        t.start()
        try:
            w = self.e.add_worker(PLCACHE_HEARTBEAT_TIMEOUT=2)
            self.e.start(w)
            self.e.push(job("mine"))
            self.e.wait_delivered(["mine"])
            # Longer than the heartbeat timeout: "busy" is alive, its job stays.
            time.sleep(3.0)
            self.assertEqual(self.e.r("LLEN", key), 1)
            self.assertEqual(self.records_of("busy"), [])
        finally:
            stop.set()
            t.join(5)
        # Silent from now on: taken over.
        self.e.wait_delivered(["busy"], timeout=20)
        self.assertNothingLeft()
        self.assertIsNone(self.e.r("ZSCORE", self.e.key("track:workers"), "busy"))


class TwoWorkers(WorkerCase):
    api_delay_ms = 5
    settings = {"PLCACHE_CONCURRENCY": 8, "PLCACHE_LOG_LEVEL": "info"}

    def test_two_workers_share_one_queue_and_deliver_each_job_once(self):
        w2 = self.e.start(self.e.add_worker())
        n = 1000
        self.e.push(*[job(i) for i in range(n)])
        got = self.e.wait_delivered(range(n), timeout=120)
        self.assertNothingLeft()
        self.assertEqual(got, {i: 1 for i in range(n)})
        done = [self.e.metric(DONE, w) for w in (self.e.worker, w2)]
        self.assertEqual(sum(done), n)
        self.assertGreater(min(done), 0, f"one worker did nothing: {done}")
        beats = self.e.r("ZRANGE", self.e.key("track:workers"), 0, -1)
        self.assertEqual(sorted(beats), [b"w1", b"w2"])


class RedisRestart(WorkerCase):
    """Redis restarted under a running worker (AOF on, same port and dir)."""

    redis_extra = ("--appendonly", "yes", "--appendfsync", "always")
    api_delay_ms = 10
    settings = {"PLCACHE_CONCURRENCY": 8, "PLCACHE_LOG_LEVEL": "info"}

    def restart_redis(self):
        port = self.e.redis.port
        self.e.redis.stop()
        h.wait_until(lambda: self.e.get("/readyz")[0] == 503, 10, what="/readyz 503")
        self.wait_metric("plcache_redis_up", 0)
        self.e.redis = h.RedisServer(self.e.tmp.path, self.redis_extra, port=port).start()
        h.wait_until(lambda: self.e.get("/readyz")[0] == 200, 20, what="/readyz 200 again")

    def test_a_redis_restart_loses_nothing_and_the_worker_carries_on(self):
        # Three restarts, each while jobs flow: a job whose move into the
        # processing list was done but whose reply was lost must not stay there.
        ids = []
        for rnd in range(3):
            batch = list(range(rnd * 1000, rnd * 1000 + 1000))
            ids += batch
            base = self.e.answered_2xx()
            self.e.push(*[job(i) for i in batch])
            h.wait_until(lambda: self.e.answered_2xx() >= base + 200, 30, interval=0.01,
                         what="jobs flowing")
            self.restart_redis()
            self.assertIsNone(self.e.worker.proc.poll(), "the worker exited")
        after = list(range(3000, 3200))
        ids += after
        self.e.push(*[job(i) for i in after])
        got = self.e.wait_delivered(ids, timeout=60)
        self.assertEqual(set(got), set(ids))
        self.assertNothingLeft()
        self.assertEqual(self.e.dead(), [])
        self.wait_metric("plcache_redis_up", 1)

    def test_redis_down_at_start_then_up(self):
        self.assertEqual(self.e.worker.stop(), 0)
        port = self.e.redis.port
        self.e.redis.stop()
        w = self.e.add_worker()
        self.e.start(w, ready=False)
        self.assertEqual(self.e.get("/readyz", w)[0], 503)
        self.e.redis = h.RedisServer(self.e.tmp.path, self.redis_extra, port=port).start()
        h.wait_until(lambda: self.e.get("/readyz", w)[0] == 200, 20, what="/readyz 200")
        self.e.push(job("late"))
        self.e.wait_delivered(["late"])
        self.assertNothingLeft()


PUSH_LUA = """
local n = tonumber(ARGV[1])
local batch = {}
for i = 1, n do
  batch[#batch + 1] = '{"i":' .. i .. ',"provider":"p","model":"m","input":{"type":"completion",' ..
    '"content":[]},"output":{"type":"completion","content":[]},"request_start_time":0,' ..
    '"request_end_time":0}'
  if #batch == 5000 or i == n then
    redis.call('LPUSH', KEYS[1], unpack(batch))
    batch = {}
  end
end
return redis.call('LLEN', KEYS[1])
"""


class Memory(WorkerCase):
    """A million queued jobs stay in Redis; the worker's memory stays flat."""

    api_delay_ms = 500  # 64 in flight, ~128 jobs/s: it cannot drain the queue
    settings = {"PLCACHE_CONCURRENCY": 64, "PLCACHE_LOG_LEVEL": "info"}
    autostart = False
    N = 1000000
    SECONDS = 10.0

    def test_a_million_queued_jobs_leave_the_worker_flat(self):
        w = self.e.worker
        w.env["ASAN_OPTIONS"] = h.small_asan_quarantine()
        self.e.start(w)
        # Warm up on a short queue: connections open, every buffer used a few
        # times. The baseline is taken before the million arrive, so a worker
        # that pulls the queue into memory shows as growth.
        self.e.push(*[h.log_request(i=-i) for i in range(1, 401)])
        h.wait_until(lambda: self.e.answered_2xx() >= 256, 30, what="256 jobs delivered")
        with open(f"/proc/{w.proc.pid}/maps") as f:
            sanitized = "asan" in f.read()
        samples = [h.rss_kb(w.proc.pid)]
        c = h.RedisClient(self.e.redis.port, timeout=60)
        try:
            pushed = c("EVAL", PUSH_LUA, 1, self.e.key("track"), self.N)
        finally:
            c.close()
        self.assertGreaterEqual(pushed, self.N)
        done0 = self.e.metric(DONE)
        t_end = time.monotonic() + self.SECONDS
        while time.monotonic() < t_end:
            samples.append(h.rss_kb(w.proc.pid))
            time.sleep(0.2)
        done1 = self.e.metric(DONE)
        self.assertGreater(done1 - done0, 100, "the worker made no progress while measured")
        growth = max(samples) - samples[0]
        limit = 8192 if sanitized else 4096
        self.assertLess(growth, limit, f"RSS grew {growth} kB (first {samples[0]} kB, "
                                       f"max {max(samples)} kB) over {self.SECONDS} s")
        depth = self.e.r("LLEN", self.e.key("track"))
        self.assertGreater(depth, self.N - 5000, "the queue was pulled into the worker")
        h.wait_until(lambda: self.e.metric("plcache_worker_queue_depth") > self.N - 5000, 10,
                     what="queue depth metric near a million")


class StartupWarnings(WorkerCase):
    autostart = False

    def warnings(self, word):
        return [ln for ln in self.e.worker.log().splitlines()
                if word in ln and ("level=warn" in ln or "level=error" in ln)]

    def started_and_working(self):
        self.e.start()
        self.e.push(job("x"))
        self.e.wait_delivered(["x"])

    def test_an_evicting_maxmemory_policy_is_warned_about(self):
        self.e.r("CONFIG", "SET", "appendonly", "yes")
        self.e.r("CONFIG", "SET", "maxmemory", "1gb")
        self.e.r("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        self.started_and_working()
        h.wait_until(lambda: self.warnings("maxmemory-policy"), 5, what="maxmemory-policy warning")
        self.assertEqual(self.warnings("persistence"), [])

    def test_redis_without_persistence_is_warned_about(self):
        # The harness's Redis runs with --save "" --appendonly no.
        self.assertEqual(self.e.r("CONFIG", "GET", "appendonly"), [b"appendonly", b"no"])
        self.assertEqual(self.e.r("CONFIG", "GET", "save"), [b"save", b""])
        self.started_and_working()
        h.wait_until(lambda: self.warnings("persistence"), 5, what="persistence warning")
        self.assertEqual(self.warnings("maxmemory-policy"), [])

    def test_a_redis_fit_for_a_queue_gives_no_warning(self):
        self.e.r("CONFIG", "SET", "appendonly", "yes")
        self.assertEqual(self.e.r("CONFIG", "GET", "maxmemory-policy"),
                         [b"maxmemory-policy", b"noeviction"])
        self.started_and_working()
        self.assertEqual(self.warnings("persistence"), [])
        self.assertEqual(self.warnings("maxmemory-policy"), [])


class Settings(unittest.TestCase):
    def setUp(self):
        if not WORKER or not os.path.exists(WORKER):
            raise RuntimeError(f"PLCACHE_WORKER_BIN={WORKER!r}: no such program")
        self.tmp = h.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def run_worker(self, env, args=()):
        d = h.Daemon(WORKER, env, self.tmp.path, "bad").start(args)
        try:
            rc = d.proc.wait(10)
        finally:
            h.stop_process(d.proc)
            d.logf.close()
        out = d.log()
        os.unlink(d.log_path)
        return rc, out

    def test_bad_settings_stop_at_start_with_one_line_and_exit_2(self):
        good = {"PROMPTLAYER_API_KEY": "k", "PLCACHE_REDIS_URL": "redis://127.0.0.1:1/0",
                "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{h.free_port()}"}
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        cases = [
            ({"PROMPTLAYER_API_KEY": None}, "PROMPTLAYER_API_KEY"),
            ({"PROMPTLAYER_API_KEY": None, "PROMPTLAYER_API_KEY_FILE": "/nonexistent/key"},
             "PROMPTLAYER_API_KEY"),
            ({"PLCACHE_CONCURRENCY": "0"}, "PLCACHE_CONCURRENCY"),
            ({"PLCACHE_CONCURRENCY": "lots"}, "PLCACHE_CONCURRENCY"),
            ({"PLCACHE_CONCURRENCY": "-4"}, "PLCACHE_CONCURRENCY"),
            ({"PLCACHE_METRICS_LISTEN": "nowhere"}, "PLCACHE_METRICS_LISTEN"),
            ({"PLCACHE_METRICS_LISTEN": "127.0.0.1:%d" % busy.getsockname()[1]},
             "PLCACHE_METRICS_LISTEN"),
            ({"PLCACHE_MAX_ATTEMPTS": "many"}, "PLCACHE_MAX_ATTEMPTS"),
            ({"PLCACHE_REDIS_URL": "http://x"}, "PLCACHE_REDIS_URL"),
            ({"PROMPTLAYER_BASE_URL": "ftp://x"}, "PROMPTLAYER_BASE_URL"),
            ({"PLCACHE_HEARTBEAT_TIMEOUT": "soon"}, "PLCACHE_HEARTBEAT_TIMEOUT"),
            ({"PLCACHE_AUTH_PAUSE": "-1"}, "PLCACHE_AUTH_PAUSE"),
            ({"PLCACHE_SHUTDOWN_TIMEOUT": "later"}, "PLCACHE_SHUTDOWN_TIMEOUT"),
            ({"PLCACHE_RETRY_BASE_MS": "fast"}, "PLCACHE_RETRY_BASE_MS"),
            ({"PLCACHE_RETRY_MAX_MS": "-5"}, "PLCACHE_RETRY_MAX_MS"),
            ({"PLCACHE_FORWARD_TIMEOUT": "long"}, "PLCACHE_FORWARD_TIMEOUT"),
            ({"PLCACHE_LOG_LEVEL": "loud"}, "PLCACHE_LOG_LEVEL"),
        ]
        for change, name in cases:
            env = {k: v for k, v in {**good, **change}.items() if v is not None}
            with self.subTest(env=change):
                rc, out = self.run_worker(env)
                lines = out.strip().splitlines()
                self.assertEqual(rc, 2, out)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(name, lines[0])

    def test_help_and_version_exit_0(self):
        rc, out = self.run_worker({}, ["--help"])
        self.assertEqual(rc, 0, out)
        for name in ("PROMPTLAYER_API_KEY", "PLCACHE_CONCURRENCY", "PLCACHE_METRICS_LISTEN"):
            self.assertIn(name, out)
        rc, out = self.run_worker({}, ["--version"])
        self.assertEqual(rc, 0, out)
        self.assertTrue(out.strip())

    def test_a_flag_wins_over_the_environment(self):
        env = {"PROMPTLAYER_API_KEY": "k", "PLCACHE_REDIS_URL": "redis://127.0.0.1:1/0",
               "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{h.free_port()}", "PLCACHE_CONCURRENCY": "4"}
        rc, out = self.run_worker(env, ["--concurrency", "0"])
        self.assertEqual(rc, 2, out)
        self.assertTrue("--concurrency" in out or "PLCACHE_CONCURRENCY" in out, out)
        e = h.WorkerEnv(PLCACHE_CONCURRENCY="0")
        try:
            e.start(args=["--concurrency", "3"])
            e.push(job("flag"))
            e.wait_delivered(["flag"])
        finally:
            e.close()


class Operations(WorkerCase):
    """Health, heartbeat, metrics, prefix and the concurrency bound."""

    settings = {"PLCACHE_MAX_ATTEMPTS": 5}

    def test_healthz_readyz_and_a_heartbeat_that_moves(self):
        self.assertEqual(self.e.get("/healthz")[0], 200)
        self.assertEqual(self.e.get("/readyz")[0], 200)
        key, wid = self.e.key("track:workers"), self.e.worker.worker_id
        first = float(h.wait_until(lambda: self.e.r("ZSCORE", key, wid), 5, what="a heartbeat"))
        self.assertLess(abs(first - time.time() * 1000), 15000)
        h.wait_until(lambda: float(self.e.r("ZSCORE", key, wid)) > first, 15,
                     what="the heartbeat to move")

    def test_metrics_after_a_small_run(self):
        self.e.fault({"path_prefix": "/log-request", "status": 500})
        self.e.push(job(1))
        self.wait_metric(DONE, 1)
        self.e.fault({"path_prefix": "/log-request", "status": 400})
        self.e.push(job(2))
        self.wait_dead(1)
        self.e.push("not json")
        self.wait_dead(2)
        self.e.push(job(3), job(4))
        self.wait_metric(DONE, 3)
        self.assertNothingLeft()
        m = self.e.metric
        self.assertEqual(m(RETRIED), 1)
        self.assertEqual(m(DEAD), 2)
        self.assertEqual(m('plcache_worker_dead_total{reason="invalid_job"}'), 1)
        self.assertEqual(m('plcache_worker_dead_total{reason="rejected"}'), 1)
        self.assertEqual(m('plcache_worker_dead_total{reason="attempts"}'), 0)
        self.assertEqual(m("plcache_worker_inflight"), 0)
        self.assertEqual(m(PAUSED_AUTH), 0)
        self.assertEqual(m(PAUSED_RATE), 0)
        self.assertEqual(m("plcache_redis_up"), 1)
        self.assertGreaterEqual(m("plcache_worker_forward_seconds_count"), 5)
        self.assertGreater(m("plcache_worker_forward_seconds_sum"), 0)
        self.wait_metric("plcache_worker_dead_depth", 2)
        self.wait_metric("plcache_worker_queue_depth", 0)
        self.wait_metric("plcache_worker_retry_depth", 0)
        text = self.e.metrics()
        for needle in ("# TYPE plcache_worker_forward_seconds histogram",
                       'plcache_worker_forward_seconds_bucket{le="+Inf"}',
                       'plcache_worker_jobs_total{result="done"} 3',
                       PAUSED_AUTH + " 0", PAUSED_RATE + " 0"):
            self.assertIn(needle, text)
        # The depth gauges follow Redis, whoever changed it.
        self.e.r("LPUSH", self.e.key("track:dead"), "{}")
        self.wait_metric("plcache_worker_dead_depth", 3)

    def test_the_prefix_names_every_key(self):
        self.assertEqual(self.e.worker.stop(), 0)
        self.e.r("FLUSHALL")
        w = self.e.add_worker(PLCACHE_PREFIX="app1:")
        self.e.start(w)
        self.e.r("LPUSH", "app1:track", json.dumps(job("prefixed")))
        self.e.r("LPUSH", "app1:track", "[1]")
        self.e.wait_delivered(["prefixed"])
        h.wait_until(lambda: self.e.r("LLEN", "app1:track:dead") == 1, 10, what="app1 dead")
        self.assertIsNotNone(self.e.r("ZSCORE", "app1:track:workers", w.worker_id))
        self.assertEqual(self.e.r("LLEN", "app1:track"), 0)
        self.assertEqual([k for k in self.e.r("KEYS", "*") if not k.startswith(b"app1:")], [])

    def test_concurrency_bounds_requests_in_flight(self):
        self.assertEqual(self.e.worker.stop(), 0)
        self.e.api.control("PUT", "/_fake/config", {"delay_ms": 500})
        w = self.e.add_worker(PLCACHE_CONCURRENCY=4)
        self.e.push(*[job(i) for i in range(20)])
        t0 = time.monotonic()
        self.e.start(w)
        # A quarter of the slots is taken ahead: 4 requests under way and 1
        # job waiting in memory for a slot, all 5 in the processing list.
        m = self.e.metric
        h.wait_until(lambda: m("plcache_worker_inflight", w) == 4 and
                     m("plcache_worker_waiting", w) == 1, 10, what="4 sent and 1 taken ahead")
        h.wait_until(lambda: self.e.processing().get(w.worker_id) == 5, 10,
                     what="5 jobs in the processing list")
        self.e.wait_delivered(range(20), timeout=30)
        took = time.monotonic() - t0
        at = sorted(r["at_ms"] for r in self.e.records())
        busiest = max(sum(1 for b in at if a <= b < a + 450) for a in at)
        self.assertLessEqual(busiest, 4, "more than PLCACHE_CONCURRENCY requests at once")
        self.assertEqual(busiest, 4, "never used its 4 slots")
        self.assertLess(took, 8, "requests were not sent in parallel")


if __name__ == "__main__":
    h.main()
