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


def event(event_type="prompt_template_version_created", **details):
    """An event payload as PromptLayer sends it, stamped now (naive UTC)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%06d" % (time.time_ns() // 1000 % 1000000)
    return {
        "event_type": event_type,
        "details": details or {"prompt_template_name": "Hello", "prompt_template_id": 12,
                               "prompt_template_version_number": 3},
        "user_id": 1, "user_name": "John Doe", "user_email": "john.doe@example.com",
        "workspace_id": 1, "timestamp": ts,
    }


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
    """The fake PromptLayer API (tests/fake_api) on a free loopback port."""

    def __init__(self, tmp, api_key="test-key", fixture=None, delay_ms=0):
        self.tmp = tmp
        self.api_key = api_key
        self.binary = os.environ.get("FAKE_API_BIN", "")
        self.port_file = os.path.join(tmp, "fake-api.port")
        self.fixture = fixture
        self.delay_ms = delay_ms
        self.proc = None
        self.port = None

    def start(self):
        args = [self.binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file]
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
        self.redis = RedisServer(self.tmp.path, redis_extra, unix=unix).start()
        self.api = FakeApi(self.tmp.path, fixture=fixture, delay_ms=api_delay_ms).start()
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
             port=None):
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
        st, hdrs, data = request(port or self.port, "POST", path, body, hd, timeout=10)
        return st, hdrs, json.loads(data) if data.startswith(b"{") else data

    def redis_cmd(self, *args):
        c = self.redis.client()
        try:
            return c(*args)
        finally:
            c.close()

    def metric(self, name, port=None):
        """The sum of a metric's samples (name, or name{labels} exactly)."""
        text = self.get("/metrics", port)[2].decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            if key == name or key.split("{")[0] == name and "{" not in name:
                total += float(val)
        return total

    def close(self):
        logs = []
        failures = []
        for d in self.daemons:
            running = d.proc is not None
            rc = d.stop()
            log = d.log() if os.path.exists(d.log_path) else ""
            logs.append(log)
            # Every daemon must end cleanly: exit 0 on SIGTERM, and no
            # sanitizer report (leaks, overflows, undefined behaviour).
            if running and rc != 0:
                failures.append(f"{d.name} exited {rc}:\n{log[-3000:]}")
            if "Sanitizer" in log or "runtime error:" in log:
                failures.append(f"sanitizer report in {d.name}'s log:\n{log[-3000:]}")
        self.api.stop()
        self.redis.stop()
        self.tmp.cleanup()
        if failures:
            raise AssertionError("\n".join(failures))
