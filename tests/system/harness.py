"""harness.py -- start real processes for system tests, and report in TAP.

Everything here uses 127.0.0.1 only, bounds every wait, and stops what it
started by PID (SIGTERM, then SIGKILL), also when a test fails or the run is
interrupted. Standard library only.
"""
import atexit
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
import urllib.parse

_started = []  # Popen objects to stop at exit


def _stop_all():
    for p in list(_started):
        stop_process(p)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def stop_process(p, sig=signal.SIGTERM, timeout=10.0):
    """Stops a process by PID; returns its exit status."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    if p in _started:
        _started.remove(p)
    return p.returncode


def free_port():
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - we report the last error
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


class RedisClient:
    """A tiny RESP2 client, enough for tests."""

    def __init__(self, port=None, unix=None, timeout=5.0):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")


class RedisServer:
    """A throwaway redis-server on a free loopback port in a temp folder."""

    def __init__(self, tmp, extra=(), port=None, unix=False):
        self.tmp = tmp
        self.extra = list(extra)
        self.port = port or free_port()
        self.unix = os.path.join(tmp, "redis.sock") if unix else None
        self.proc = None

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmp,
                "--daemonize", "no", "--logfile", os.path.join(self.tmp, "redis.log")]
        if self.unix:
            args += ["--unixsocket", self.unix, "--unixsocketperm", "700"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started.append(self.proc)
        password = None
        if "--requirepass" in self.extra:
            password = self.extra[self.extra.index("--requirepass") + 1]

        def ping():
            c = RedisClient(self.port)
            try:
                if password:
                    c("AUTH", password)
                return c("PING") == "PONG"
            finally:
                c.close()
        wait_until(ping, 10, what="redis-server to answer PING")
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.proc = None

    def client(self):
        return RedisClient(self.port)


def build_path(env, default):
    p = os.environ.get(env)
    if not p:
        raise RuntimeError(f"{env} is not set (run through meson test)")
    return p


class Daemon:
    """A plcache program started with a clean environment plus `env`."""

    def __init__(self, binary, env, tmp, name="daemon"):
        self.binary = binary
        self.env = env
        self.tmp = tmp
        self.name = name
        self.proc = None
        self.log_path = os.path.join(tmp, f"{name}.log")

    def start(self, args=()):
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update({k: str(v) for k, v in self.env.items()})
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, *args], env=env, stdout=self.logf,
                                     stderr=self.logf)
        _started.append(self.proc)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        rc = None
        if self.proc:
            rc = stop_process(self.proc, sig, timeout)
            self.proc = None
            self.logf.close()
        return rc

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def sign(body, secret):
    if isinstance(body, str):
        body = body.encode()
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True)


def event(event_type="prompt_template_version_created", _at_us=None, **details):
    """An event payload as PromptLayer sends it, stamped now (naive UTC), or
    at _at_us (microseconds since the epoch) for an event made earlier."""
    us = _at_us if _at_us is not None else time.time_ns() // 1000  # one reading
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1000000)) + ".%06d" % (us % 1000000)
    return {
        "event_type": event_type,
        "details": details or {"prompt_template_name": "Hello", "prompt_template_id": 12,
                               "prompt_template_version_number": 3},
        "user_id": 1, "user_name": "John Doe", "user_email": "john.doe@example.com",
        "workspace_id": 1, "timestamp": ts,
    }


def text_blocks(*texts):
    return [{"type": "text", "text": t} for t in texts]


def log_request(uid=None, **extra):
    """A Log Request PromptLayer accepts (the body of POST /log-request,
    https://docs.promptlayer.com/reference/log-request), carrying `uid`, when
    given, as an extra top-level key: PromptLayer (and the fake API) accept
    and ignore unknown keys, so a test can find its job in the fake's
    records. `extra` keys are added (or replace the defaults)."""
    body = {"provider": "openai", "model": "gpt-4o",
            "input": {"type": "chat", "messages": [{"role": "user", "content": text_blocks("Hello")}]},
            "output": {"type": "chat",
                       "messages": [{"role": "assistant", "content": text_blocks("Hi there")}]},
            "request_start_time": 1701468357.924, "request_end_time": 1701468358.5}
    if uid is not None:
        body["uid"] = uid
    body.update(extra)
    return body


# The smallest body each tracking endpoint accepts (besides /log-request).
TRACK_BODIES = {
    "/rest/track-score": {"request_id": 1, "score": 90},
    "/rest/track-metadata": {"request_id": 1, "metadata": {"k": "v"}},
    "/rest/track-prompt": {"request_id": 1, "prompt_name": "Hello"},
    "/rest/track-group": {"request_id": 1, "group_id": 1},
    "/rest/track-request": {"function_name": "openai.chat.completions.create", "kwargs": {},
                            "request_response": {}, "request_start_time": 1701468357.924,
                            "request_end_time": 1701468358.5},
    "/spans-bulk": {"spans": []},
}


def track_body(endpoint, **extra):
    """A body `endpoint` accepts (a Log Request for /log-request), with the
    `extra` keys added (or replacing the defaults); unknown keys are accepted
    and ignored by PromptLayer and the fake API."""
    if endpoint == "/log-request":
        return log_request(**extra)
    body = json.loads(json.dumps(TRACK_BODIES[endpoint]))
    body.update(extra)
    return body


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request on a new connection; returns (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


class TapResult(unittest.TestResult):
    """Prints one TAP line per test as it finishes."""

    def __init__(self):
        super().__init__()
        self.n = 0
        self._subtest_failed = set()

    def _line(self, ok, test, directive=""):
        self.n += 1
        name = test.id().split(".")[-1]
        print(f"{'ok' if ok else 'not ok'} {self.n} - {name}{directive}", flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(True, test)

    def _diag(self, err):
        for ln in "".join(traceback.format_exception(*err)).splitlines():
            print("# " + ln, flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(False, test)
        self._diag(err)

    def addError(self, test, err):
        super().addError(test, err)
        self._line(False, test)
        self._diag(err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(True, test, f" # SKIP {reason}")

    def addSubTest(self, test, subtest, err):
        # A failing subTest fails its test: one "not ok" line for the test
        # (its first failing subtest names it), a diagnostic for each. A
        # test with a failing subtest gets no addSuccess, so no other line.
        super().addSubTest(test, subtest, err)
        if err is None:
            return
        if test.id() not in self._subtest_failed:
            self._subtest_failed.add(test.id())
            self._line(False, test, f" {subtest._subDescription()}")
        self._diag(err)


def main(module_name="__main__"):
    """Runs the TestCases of the calling module (or the names in argv) as TAP."""
    loader = unittest.TestLoader()
    names = sys.argv[1:]
    module = sys.modules[module_name]
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    print(f"1..{suite.countTestCases()}", flush=True)
    result = TapResult()
    try:
        suite.run(result)
    finally:
        _stop_all()
    sys.exit(0 if result.wasSuccessful() else 1)


class TempDir:
    def __init__(self, prefix="plcache-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class FakeApi:
    """The fake PromptLayer API (tests/fake_api) on a free loopback port, or
    on `port` when given (e.g. to start it again where a program points)."""

    def __init__(self, tmp, api_key="test-key", fixture=None, delay_ms=0, port=0):
        self.tmp = tmp
        self.listen_port = port
        self.api_key = api_key
        self.binary = os.environ.get("FAKE_API_BIN", "")
        self.port_file = os.path.join(tmp, "fake-api.port")
        self.fixture = fixture
        self.delay_ms = delay_ms
        self.proc = None
        self.port = None

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)  # a previous run's, not ours
        args = [self.binary, "--listen", f"127.0.0.1:{self.listen_port}",
                "--port-file", self.port_file]
        if self.api_key:
            args += ["--api-key", self.api_key]
        if self.delay_ms:
            args += ["--delay-ms", str(self.delay_ms)]
        if self.fixture is not None:
            path = os.path.join(self.tmp, "fixture.json")
            with open(path, "w") as f:
                json.dump(self.fixture, f)
            args += ["--fixture", path]
        self.logf = open(os.path.join(self.tmp, "fake-api.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=self.logf)
        _started.append(self.proc)

        def port():
            with open(self.port_file) as f:
                return int(f.read().strip())
        self.port = wait_until(port, 10, what="fake API port file")
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        st, _, out = request(self.port, method, path, data,
                             {"Content-Type": "application/json"} if data else {}, timeout=10)
        if st >= 300:
            raise AssertionError(f"fake API {method} {path}: {st} {out!r}")
        return json.loads(out) if out else None

    def requests(self, path_prefix=None):
        q = ""
        if path_prefix:
            q = "?path_prefix=" + urllib.parse.quote(path_prefix, safe="")
        return self.control("GET", "/_fake/requests" + q)

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.proc = None
            self.logf.close()


class WebhookEnv:
    """redis-server + the fake API + plcache-webhook, in one temp folder."""

    def __init__(self, redis_extra=(), unix=False, fixture=None, api_delay_ms=0, secret="whsec_test_secret",
                 **settings):
        self.secret = secret
        self.tmp = TempDir()
        self.redis = self.api = None
        try:
            self.redis = RedisServer(self.tmp.path, redis_extra, unix=unix).start()
            self.api = FakeApi(self.tmp.path, fixture=fixture, delay_ms=api_delay_ms).start()
        except BaseException:
            # Whatever did start is stopped, and the folder goes with it.
            if self.redis:
                self.redis.stop()
            self.tmp.cleanup()
            raise
        self.port = free_port()
        self.env = {
            "PLCACHE_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "PLCACHE_LISTEN": f"127.0.0.1:{self.port}",
            "PLCACHE_WEBHOOK_SECRET": secret,
            "PLCACHE_LOG_LEVEL": "debug",
            "PROMPTLAYER_API_KEY": self.api.api_key,
            "PROMPTLAYER_BASE_URL": self.api.url,
        }
        self.env.update({k: str(v) for k, v in settings.items()})
        self.env = {k: v for k, v in self.env.items() if v is not None and v != "None"}
        self.daemon = Daemon(os.environ.get("PLCACHE_WEBHOOK_BIN", ""), self.env, self.tmp.path,
                             "webhook")
        self.daemons = [self.daemon]

    def start(self, ready=True, daemon=None):
        d = daemon or self.daemon
        d.start()
        port = int(d.env["PLCACHE_LISTEN"].rsplit(":", 1)[1])
        wait_until(lambda: request(port, "GET", "/healthz", timeout=5)[0] == 200, 10,
                   what="webhook /healthz")
        if ready:
            wait_until(lambda: request(port, "GET", "/readyz", timeout=5)[0] == 200, 10,
                       what="webhook /readyz")
        return self

    def another(self, **settings):
        """A second receiver on the same Redis and API."""
        env = dict(self.env)
        env["PLCACHE_LISTEN"] = f"127.0.0.1:{free_port()}"
        env.update({k: str(v) for k, v in settings.items()})
        d = Daemon(self.daemon.binary, env, self.tmp.path, f"webhook{len(self.daemons)}")
        self.daemons.append(d)
        return d

    def get(self, path, port=None):
        return request(port or self.port, "GET", path, timeout=5)

    def post(self, body, secret=None, sig=None, headers=None, path="/webhooks/promptlayer",
             port=None, timeout=10):
        if secret is None and sig is None:
            secret = self.secret
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        hd = {"Content-Type": "application/json"}
        if sig is None and secret is not False:
            sig = sign(body, secret)
        if sig is not None:
            hd["X-PromptLayer-Signature"] = sig
        hd.update(headers or {})
        st, hdrs, data = request(port or self.port, "POST", path, body, hd, timeout=timeout)
        return st, hdrs, json.loads(data) if data.startswith(b"{") else data

    def redis_cmd(self, *args):
        c = self.redis.client()
        try:
            return c(*args)
        finally:
            c.close()

    def metric(self, name, port=None):
        """The sum of a metric's samples (see metric_sum)."""
        return metric_sum(self.get("/metrics", port)[2].decode(), name)

    def close(self):
        failures = stop_daemons(self.daemons)
        self.api.stop()
        self.redis.stop()
        self.tmp.cleanup()
        if failures:
            raise AssertionError("\n".join(failures))


def check_drain_waits_for_a_held_delivery(tc, e, post, metrics):
    """SIGTERM while a delivery waits on a stopped (SIGSTOP) Redis: the
    receiver e must stay up, answer it 200 once Redis continues, then exit
    0 with the event recorded. post() makes the delivery and returns its
    status; metrics() returns /metrics as text. Shared by the plain and the
    HTTPS receiver tests; tc is the TestCase that asserts."""
    out = {}
    e.redis.proc.send_signal(signal.SIGSTOP)
    try:
        def run():
            try:
                out["st"] = post()
            except Exception as ex:  # noqa: BLE001 - reported by the assertion below
                out["error"] = repr(ex)
        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: "plcache_webhook_inflight 1" in metrics(), 5,
                   what="a delivery in flight")
        e.daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        tc.assertIsNone(e.daemon.proc.poll(), "exited with a delivery in flight")
        e.redis.proc.send_signal(signal.SIGCONT)
        t.join(60)
        tc.assertEqual(out.get("st"), 200, out)
        tc.assertEqual(e.daemon.proc.wait(10), 0)
        tc.assertEqual(e.redis_cmd("XLEN", "pl:events"), 1)
    finally:
        if e.redis.proc:
            e.redis.proc.send_signal(signal.SIGCONT)


# -- plcache-worker -----------------------------------------------------------

def metric_sum(text, name):
    """The sum of a metric's samples in Prometheus text: `name` (every label
    set) or `name{labels}` written exactly as the program prints it."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        if key == name or key.split("{")[0] == name and "{" not in name:
            total += float(val)
    return total


def small_asan_quarantine():
    """ASAN_OPTIONS for a daemon whose RSS a test measures: under
    AddressSanitizer freed memory waits in a quarantine (256 MB by default)
    and would look like growth. Harmless in a plain build."""
    asan = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    return ":".join(asan + ["quarantine_size_mb=1"])


def rss_kb(pid):
    """A process's resident set size (VmRSS) in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop_daemons(daemons):
    """Stops daemons (SIGTERM); returns what went wrong: a daemon that was
    running and did not exit 0, or a sanitizer report in any daemon's log."""
    failures = []
    for d in daemons:
        running = d.proc is not None
        rc = d.stop()
        log = d.log() if os.path.exists(d.log_path) else ""
        if running and rc != 0:
            failures.append(f"{d.name} exited {rc}:\n{log[-3000:]}")
        if "Sanitizer" in log or "runtime error:" in log:
            failures.append(f"sanitizer report in {d.name}'s log:\n{log[-3000:]}")
    return failures


class WorkerEnv:
    """redis-server + the fake API + plcache-worker(s), in one temp folder.

    `settings` are worker settings (env vars) on top of test-friendly ones:
    short backoff, short pauses, a free metrics port and a fixed worker id
    per worker (w1, w2, ...). A setting given as None is left unset.
    """

    def __init__(self, redis_extra=(), api_delay_ms=0, api_key="test-key", **settings):
        self.tmp = TempDir("plcache-worker-test-")
        self.redis_extra = list(redis_extra)
        self.binary = os.environ.get("PLCACHE_WORKER_BIN", "")
        self.workers = []
        self.redis = None
        self.api = None
        try:
            self.redis = RedisServer(self.tmp.path, self.redis_extra).start()
            self.api = FakeApi(self.tmp.path, api_key=api_key, delay_ms=api_delay_ms).start()
        except BaseException:
            self.close()
            raise
        self.env = {
            "PLCACHE_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "PROMPTLAYER_API_KEY": api_key,
            "PROMPTLAYER_BASE_URL": self.api.url,
            "PLCACHE_LOG_LEVEL": "debug",
            "PLCACHE_CONCURRENCY": 8,
            "PLCACHE_MAX_ATTEMPTS": 5,
            "PLCACHE_RETRY_BASE_MS": 50,
            "PLCACHE_RETRY_MAX_MS": 500,
            "PLCACHE_FORWARD_TIMEOUT": 2,
            "PLCACHE_AUTH_PAUSE": 1,
            "PLCACHE_SHUTDOWN_TIMEOUT": 5,
        }
        self.env.update(settings)
        self.env = {k: str(v) for k, v in self.env.items() if v is not None}
        self.prefix = self.env.get("PLCACHE_PREFIX", "pl:")
        self.worker = self.add_worker()

    # -- workers --------------------------------------------------------------

    def add_worker(self, **settings):
        """A worker (not started) with its own id and metrics port; `settings`
        override the environment's."""
        n = len(self.workers) + 1
        env = dict(self.env)
        env["PLCACHE_WORKER_ID"] = f"w{n}"
        env["PLCACHE_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
        env.update({k: str(v) for k, v in settings.items() if v is not None})
        env = {k: v for k, v in env.items() if settings.get(k, "") is not None}
        d = Daemon(self.binary, env, self.tmp.path, f"worker{n}")
        d.worker_id = env.get("PLCACHE_WORKER_ID")
        d.port = int(env["PLCACHE_METRICS_LISTEN"].rsplit(":", 1)[1])
        self.workers.append(d)
        return d

    def start(self, worker=None, ready=True, timeout=15.0, args=()):
        """Starts a worker (the first by default) and waits for /healthz (and
        /readyz); fails at once, with its log, if it exits meanwhile."""
        d = worker or self.worker
        if not self.binary or not os.path.exists(self.binary):
            raise RuntimeError(f"PLCACHE_WORKER_BIN={self.binary!r}: no such program "
                               "(run through meson test)")
        d.start(args)
        paths = ["/healthz"] + (["/readyz"] if ready else [])
        deadline = time.monotonic() + timeout
        for path in paths:
            while True:
                if d.proc.poll() is not None:
                    raise AssertionError(f"{d.name} exited {d.proc.returncode} at start:\n"
                                         f"{d.log()[-3000:]}")
                try:
                    if request(d.port, "GET", path, timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{d.name} {path} not 200 after {timeout}s:\n"
                                         f"{d.log()[-3000:]}")
                time.sleep(0.02)
        return d

    def get(self, path, worker=None):
        return request((worker or self.worker).port, "GET", path, timeout=5)

    def metrics(self, worker=None):
        st, _, body = self.get("/metrics", worker)
        if st != 200:
            raise AssertionError(f"/metrics answered {st}")
        return body.decode()

    def metric(self, name, worker=None):
        """The sum of a metric's samples (see metric_sum) on one worker."""
        return metric_sum(self.metrics(worker), name)

    # -- Redis ----------------------------------------------------------------

    def key(self, name):
        """`track` -> `pl:track` under this environment's prefix."""
        return self.prefix + name

    def r(self, *args):
        """One Redis command on a new connection."""
        c = self.redis.client()
        try:
            return c(*args)
        finally:
            c.close()

    @staticmethod
    def encode(job):
        if isinstance(job, (bytes, str)):
            return job
        return json.dumps(job)

    def push(self, *jobs, chunk=1000):
        """LPUSHes jobs (dicts are sent as JSON, str/bytes as they are), the
        first given being the oldest; returns the queue's length."""
        n = 0
        for i in range(0, len(jobs), chunk):
            n = self.r("LPUSH", self.key("track"), *[self.encode(j) for j in jobs[i:i + chunk]])
        return n

    def dead(self):
        """The dead entries, parsed, oldest first."""
        return [json.loads(x) for x in reversed(self.r("LRANGE", self.key("track:dead"), 0, -1))]

    def processing(self):
        """{worker id: length} of every non-empty processing list."""
        pre = self.key("track:processing:")
        keys = self.r("KEYS", pre + "*")
        return {k.decode()[len(pre):]: self.r("LLEN", k) for k in keys}

    def queued(self):
        """Jobs in the queue, raw, oldest first."""
        return list(reversed(self.r("LRANGE", self.key("track"), 0, -1)))

    def held(self):
        """How many jobs the queue, the retry set and processing lists hold,
        counted in one script: a job moving between them (a finish, a
        promotion) is never counted twice or missed."""
        script = ("local n = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])\n"
                  "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do\n"
                  "  n = n + redis.call('LLEN', k)\n"
                  "end\n"
                  "return n\n")
        pattern = "".join("\\" + c if c in "\\*?[]" else c
                          for c in self.key("track:processing:")) + "*"
        return self.r("EVAL", script, 2, self.key("track"), self.key("track:retry"), pattern)

    def settled(self):
        return self.held() == 0

    def wait_settled(self, timeout=15.0):
        wait_until(self.settled, timeout, what="queue, retry set and processing lists empty")

    # -- the fake API ---------------------------------------------------------

    def records(self, path_prefix=None):
        return self.api.requests(path_prefix)

    def ok_records(self, path_prefix=None):
        return [r for r in self.records(path_prefix) if r["status"] and 200 <= r["status"] < 300]

    def fault(self, *faults):
        self.api.control("POST", "/_fake/faults", list(faults))

    def answered_2xx(self):
        """How many 2xx answers the fake has sent (cheap: from its stats)."""
        st = self.api.control("GET", "/_fake/stats")
        return sum(n for s, n in st["by_status"].items() if s.startswith("2"))

    def delivered(self, field="uid", path_prefix="/log-request"):
        """{value of `field` in the body: times answered 2xx}."""
        out = {}
        for r in self.ok_records(path_prefix):
            try:
                v = json.loads(r["body"] or "").get(field)
            except (ValueError, AttributeError):
                continue  # not a job's body (e.g. a GET)
            out[v] = out.get(v, 0) + 1
        return out

    def wait_delivered(self, ids, field="uid", path_prefix="/log-request", timeout=30.0):
        """Waits until every id was answered 2xx at least once; returns
        delivered() (polls the fake's stats first, its records only then)."""
        want = set(ids)

        def done():
            if self.answered_2xx() < len(want):
                return None
            got = self.delivered(field, path_prefix)
            return got if want <= set(got) else None
        try:
            return wait_until(done, timeout, interval=0.1, what=f"{len(want)} jobs delivered")
        except AssertionError as e:
            missing = sorted(want - set(self.delivered(field, path_prefix)), key=repr)
            raise AssertionError(
                f"{e}: {len(missing)} missing, e.g. {missing[:10]}; queue "
                f"{self.r('LLEN', self.key('track'))}, retry {self.r('ZCARD', self.key('track:retry'))}, "
                f"dead {self.r('LLEN', self.key('track:dead'))}, processing {self.processing()}") from None

    # -- end ------------------------------------------------------------------

    def close(self):
        failures = stop_daemons(self.workers)
        if self.api:
            self.api.stop()
        if self.redis:
            self.redis.stop()
        self.tmp.cleanup()
        if failures:
            raise AssertionError("\n".join(failures))
