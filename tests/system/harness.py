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
