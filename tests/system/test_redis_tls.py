"""test_redis_tls.py -- plcache reaches a TLS-only Redis through the shipped stunnel tunnel.

Debian's hiredis 0.14 speaks no TLS; deploy/ reaches a managed Redis that
requires it through stunnel in client mode (deploy/stunnel, run by the
systemd unit, the compose file and the Kubernetes sidecar alike). Here the
real pieces run on 127.0.0.1: Debian's redis-server serving TLS only (`--port
0 --tls-port`, certificates made by openssl in the temp folder, a password as
managed services have), the tunnel started by deploy/stunnel/plcache-redis-tunnel
from deploy/stunnel/redis-tunnel.conf with verification on, and the real
plcache-webhook, plcache-worker and plcache. They must work through the
tunnel; a tunnel whose Redis shows a certificate of another CA, or one of
the right CA for another name, must refuse the handshake, and plcache must
then say that it cannot reach Redis.

stunnel4 or a redis-server without TLS is a failure, never a skip
(scripts/bootstrap installs stunnel4).
"""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest
import urllib.parse

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TUNNEL = os.path.join(ROOT, "deploy", "stunnel", "plcache-redis-tunnel")
TEMPLATE = os.path.join(ROOT, "deploy", "stunnel", "redis-tunnel.conf")
PASSWORD = "managed-redis-password"
FIXTURE = {"templates": [
    {"id": 1, "prompt_name": "Hello",
     "versions": {"1": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "one"},
                  "2": {"prompt_template": {"type": "chat", "messages": []}, "commit_message": "two"}},
     "labels": {"prod": 1}},
]}

ENV = None  # the module's Env, made by setUpModule


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {p.stderr}")


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)


def make_cert(d, name, ca, sans):
    """A server certificate `name`.pem/.key for `sans` (e.g. DNS:localhost), signed by `ca`."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


class TlsRedis:
    """redis-server serving TLS only (no plain port), with a password."""

    def __init__(self, tmp, name, cert, ca, cert_name="localhost"):
        self.tmp, self.name, self.cert_name = tmp, name, cert_name
        self.port = h.free_port()
        self.ca = os.path.join(tmp, f"{ca}.pem")
        self.log = os.path.join(tmp, f"{name}.log")
        self.args = ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                     "--tls-cert-file", os.path.join(tmp, f"{cert}.pem"),
                     "--tls-key-file", os.path.join(tmp, f"{cert}.key"),
                     "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no",
                     "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
                     "--dir", tmp, "--daemonize", "no", "--logfile", self.log]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h._started.append(self.proc)

        def ping():
            if self.proc.poll() is not None:
                with open(self.log, errors="replace") as f:
                    raise AssertionError(f"redis-server exited {self.proc.returncode} (no TLS in this "
                                         f"build?):\n{f.read()[-2000:]}")
            c = self.client()
            try:
                return c("PING") == "PONG"
            finally:
                c.close()
        h.wait_until(ping, 10, what=f"{self.name}: redis-server to answer PING over TLS")
        return self

    def client(self):
        """A RESP client speaking TLS straight to this Redis (verified against its CA), logged in."""
        ctx = ssl.create_default_context(cafile=self.ca)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        c = h.RedisClient.__new__(h.RedisClient)
        c.sock = ctx.wrap_socket(raw, server_hostname=self.cert_name)
        c.f = c.sock.makefile("rb")
        c("AUTH", PASSWORD)
        return c

    def __call__(self, *args):
        c = self.client()
        try:
            return c(*args)
        finally:
            c.close()

    def stop(self):
        if self.proc:
            h.stop_process(self.proc)
            self.proc = None


class Tunnel:
    """The shipped tunnel: deploy/stunnel/plcache-redis-tunnel with the given
    environment, either run as the deployments run it (it becomes stunnel,
    reading the config on its standard input), or printed to a file, given a
    pid file in the temp folder and run by stunnel4 from that file."""

    def __init__(self, tmp, name, redis, ca, host="localhost"):
        self.tmp, self.name = tmp, name
        self.port = h.free_port()
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.pid_file = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_TLS_", "TUNNEL_"))}
        self.env.update({"REDIS_TLS_HOST": host, "REDIS_TLS_CONNECT": "127.0.0.1",
                         "REDIS_TLS_PORT": str(redis.port), "REDIS_TLS_CA": os.path.join(tmp, f"{ca}.pem"),
                         "TUNNEL_ACCEPT": f"127.0.0.1:{self.port}"})
        self.proc = None

    def config(self):
        p = subprocess.run([TUNNEL, "--print"], env=self.env, capture_output=True, text=True, timeout=10)
        if p.returncode != 0:
            raise AssertionError(f"plcache-redis-tunnel --print exited {p.returncode}: {p.stderr}")
        return p.stdout

    def start(self, from_file=False):
        self.logf = open(self.log_path, "ab")
        if from_file:
            self.pid_file = os.path.join(self.tmp, f"{self.name}.pid")
            text = re.sub(r"(?m)^pid =.*$", f"pid = {self.pid_file}", self.config())
            conf = os.path.join(self.tmp, f"{self.name}.conf")
            with open(conf, "w") as f:
                f.write(text)
            args = [shutil.which("stunnel4"), conf]
        else:
            args = [TUNNEL]
        self.proc = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL if from_file else None,
                                     stdout=self.logf, stderr=self.logf)
        h._started.append(self.proc)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()[-2000:]}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return "Configuration successful" in self.log()
        h.wait_until(listening, 10, what=f"{self.name} listening")
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def url(self):
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def stop(self):
        if self.proc:
            h.stop_process(self.proc)
            self.proc = None
            self.logf.close()


class Env:
    """Certificates, the TLS-only Redis, its good tunnel and the fake API."""

    def __init__(self):
        self.tmp = h.TempDir("plcache-redis-tls-")
        self.parts = []
        d = self.tmp.path
        try:
            make_ca(d, "ca")
            make_cert(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
            make_ca(d, "other-ca")  # unrelated: an impostor's
            make_cert(d, "impostor", "other-ca", "DNS:localhost,IP:127.0.0.1")
            make_cert(d, "elsewhere", "ca", "DNS:redis.elsewhere.example")  # right CA, wrong name
            self.redis = self.add(TlsRedis(d, "redis", "server", "ca").start())
            self.api = self.add(h.FakeApi(d, fixture=FIXTURE).start())
            self.tunnel = self.add(Tunnel(d, "tunnel", self.redis, "ca").start())
        except BaseException:
            self.close()
            raise

    def add(self, part):
        self.parts.append(part)
        return part

    def close(self):
        for p in reversed(self.parts):
            p.stop()
        self.tmp.cleanup()


def setUpModule():
    global ENV
    for prog in ("stunnel4", "redis-server", "openssl"):
        if shutil.which(prog) is None:
            raise RuntimeError(f"{prog} not found: scripts/bootstrap installs it (stunnel4, redis-server, openssl)")
    for env in ("PLCACHE_WEBHOOK_BIN", "PLCACHE_WORKER_BIN", "PLCACHE_CLI_BIN", "FAKE_API_BIN"):
        if not os.access(os.environ.get(env, ""), os.X_OK):
            raise RuntimeError(f"{env} is not set (run through meson test)")
    ENV = Env()


def tearDownModule():
    if ENV:
        ENV.close()


def cli(url, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLCACHE_", "PROMPTLAYER_"))}
    env.update({"PLCACHE_REDIS_URL": url, "PLCACHE_REDIS_TIMEOUT": "3"})
    p = subprocess.run([os.environ["PLCACHE_CLI_BIN"], *args], env=env, capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def webhook(tmp, url, name="webhook"):
    port = h.free_port()
    d = h.Daemon(os.environ["PLCACHE_WEBHOOK_BIN"], {
        "PLCACHE_REDIS_URL": url, "PLCACHE_LISTEN": f"127.0.0.1:{port}",
        "PLCACHE_WEBHOOK_SECRET": "whsec_tls", "PROMPTLAYER_API_KEY": ENV.api.api_key,
        "PROMPTLAYER_BASE_URL": ENV.api.url, "PLCACHE_RESYNC_INTERVAL": "0",
        "PLCACHE_LOG_LEVEL": "debug", "PLCACHE_SHUTDOWN_TIMEOUT": "5"}, tmp, name)
    d.port = port
    d.start()
    h.wait_until(lambda: h.request(port, "GET", "/healthz", timeout=2)[0] == 200, 10,
                 what=f"{name} /healthz")
    return d


def worker(tmp, url, name="worker"):
    port = h.free_port()
    d = h.Daemon(os.environ["PLCACHE_WORKER_BIN"], {
        "PLCACHE_REDIS_URL": url, "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{port}",
        "PLCACHE_WORKER_ID": name, "PROMPTLAYER_API_KEY": ENV.api.api_key,
        "PROMPTLAYER_BASE_URL": ENV.api.url, "PLCACHE_LOG_LEVEL": "debug",
        "PLCACHE_SHUTDOWN_TIMEOUT": "5"}, tmp, name)
    d.port = port
    d.start()
    h.wait_until(lambda: h.request(port, "GET", "/healthz", timeout=2)[0] == 200, 10,
                 what=f"{name} /healthz")
    return d


def stop(tc, *daemons):
    failures = h.stop_daemons(daemons)
    tc.assertEqual(failures, [], "\n".join(failures))


class ThroughTheTunnel(unittest.TestCase):
    def test_the_shipped_config_verifies_chain_and_name_and_redis_speaks_tls_only(self):
        conf = ENV.tunnel.config()
        lines = {}
        for ln in conf.splitlines():
            if "=" in ln and not ln.lstrip().startswith((";", "#")):
                k, _, v = ln.partition("=")
                lines.setdefault(k.strip(), []).append(v.strip())
        self.assertEqual(lines["client"], ["yes"])
        self.assertEqual(lines["verifyChain"], ["yes"])
        self.assertEqual(lines["checkHost"], ["localhost"])
        self.assertEqual(lines["CAfile"], [os.path.join(ENV.tmp.path, "ca.pem")])
        self.assertEqual(lines["sslVersionMin"], ["TLSv1.2"])
        self.assertEqual(lines["foreground"], ["yes"])
        self.assertEqual(lines["accept"], [f"127.0.0.1:{ENV.tunnel.port}"])
        self.assertEqual(lines["connect"], [f"127.0.0.1:{ENV.redis.port}"])
        self.assertNotIn("verifyPeer", lines)
        self.assertFalse(re.search(r"@[A-Z_]+@", conf), "every field filled")
        # The template, unfilled, says the same (the deployments use it as it is).
        with open(TEMPLATE) as f:
            template = f.read()
        for key in ("client = yes", "verifyChain = yes", "checkHost = @REDIS_TLS_HOST@",
                    "sslVersionMin = TLSv1.2", "accept = @TUNNEL_ACCEPT@"):
            self.assertIn("\n" + key + "\n", template)
        # The tunnel runs as stunnel itself (the script exec'd it): its PID is stunnel's.
        with open(f"/proc/{ENV.tunnel.proc.pid}/comm") as f:
            self.assertEqual(f.read().strip(), "stunnel4")
        # The Redis has no plain port: RESP spoken in clear on its TLS port gets no answer.
        with socket.create_connection(("127.0.0.1", ENV.redis.port), timeout=3) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            try:
                got = s.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = b""
            self.assertNotIn(b"PONG", got)
        self.assertEqual(ENV.redis("PING"), "PONG")

    def test_webhook_records_and_applies_an_event_through_the_tunnel(self):
        tmp = ENV.tmp.path
        d = webhook(tmp, ENV.tunnel.url())
        try:
            h.wait_until(lambda: h.request(d.port, "GET", "/readyz", timeout=2)[0] == 200, 10,
                         what="webhook /readyz 200 through the tunnel")
            body = json.dumps(h.event("prompt_template_version_created", prompt_template_name="Hello",
                                      prompt_template_id=1, prompt_template_version_number=2))
            st, _, data = h.request(d.port, "POST", "/webhooks/promptlayer", body,
                                    {"Content-Type": "application/json",
                                     "X-PromptLayer-Signature": h.sign(body, "whsec_tls")})
            self.assertEqual(st, 200, data)
            self.assertEqual(json.loads(data), {"ok": True})
            # Recorded in the TLS Redis, then applied: version 2 as the API serves it.
            self.assertGreaterEqual(ENV.redis("XLEN", "pl:events"), 1)
            st, _, want = h.request(ENV.api.port, "GET", "/prompt-templates/Hello?version=2",
                                    headers={"X-API-KEY": ENV.api.api_key})
            self.assertEqual(st, 200)
            want = json.loads(want)

            def cached():
                v = ENV.redis("HGET", "pl:prompt:Hello", "version:2")
                return v is not None and json.loads(v) == want
            h.wait_until(cached, 15, what="pl:prompt:Hello version:2 applied through the tunnel")
            self.assertIn("Certificate accepted", ENV.tunnel.log())
        finally:
            stop(self, d)

    def test_worker_forwards_a_job_through_the_tunnel(self):
        d = worker(ENV.tmp.path, ENV.tunnel.url())
        try:
            h.wait_until(lambda: h.request(d.port, "GET", "/readyz", timeout=2)[0] == 200, 10,
                         what="worker /readyz 200 through the tunnel")
            uid = f"tls-{time.time_ns()}"
            ENV.redis("LPUSH", "pl:track", json.dumps(h.log_request(uid)))

            def delivered():
                return [r for r in ENV.api.requests("/log-request")
                        if r["status"] and 200 <= r["status"] < 300
                        and json.loads(r["body"] or "{}").get("uid") == uid]
            recs = h.wait_until(delivered, 20, interval=0.1, what="the job forwarded to the API")
            self.assertEqual(json.loads(recs[0]["body"]), h.log_request(uid))
            h.wait_until(lambda: ENV.redis("LLEN", "pl:track") == 0
                         and ENV.redis("LLEN", f"pl:track:processing:{d.name}") == 0, 10,
                         what="queue and processing list empty")
            self.assertEqual(ENV.redis("LLEN", "pl:track:dead"), 0)
            self.assertIsNotNone(ENV.redis("ZSCORE", "pl:track:workers", d.name), "heartbeat written")
        finally:
            stop(self, d)

    def test_cli_stats_works_through_the_tunnel(self):
        ENV.redis("LPUSH", "pl:track", "stats-probe")
        try:
            rc, out, err = cli(ENV.tunnel.url(), "stats")
            self.assertEqual(rc, 0, err)
            # What it read came from the TLS Redis: the queue holds the job pushed there.
            s = json.loads(out)
            self.assertEqual(s["track"]["queued"], ENV.redis("LLEN", "pl:track"))
            self.assertGreaterEqual(s["track"]["queued"], 1)
            # A wrong password is the managed Redis's answer, carried back through the tunnel.
            rc, _, err = cli(ENV.tunnel.url().replace(PASSWORD, "wrong"), "stats")
            self.assertNotEqual(rc, 0)
            self.assertIn("AUTH", err)
        finally:
            ENV.redis("LREM", "pl:track", 0, "stats-probe")


class Settings(unittest.TestCase):
    def test_the_script_refuses_a_bad_setting_before_stunnel_starts(self):
        good = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDIS_TLS_HOST": "redis.example.com",
                "REDIS_TLS_PORT": "6380", "REDIS_TLS_CA": os.path.join(ENV.tmp.path, "ca.pem")}
        p = subprocess.run([TUNNEL, "--print"], env=good, capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("\ncheckHost = redis.example.com\n", p.stdout)
        self.assertIn("\nconnect = redis.example.com:6380\n", p.stdout)
        self.assertIn("\naccept = 127.0.0.1:6379\n", p.stdout, "loopback by default")
        for bad, said in ((("REDIS_TLS_HOST", ""), "REDIS_TLS_HOST is required"),
                          (("REDIS_TLS_HOST", "10.0.0.5"), "is an address"),
                          (("REDIS_TLS_HOST", "a|b"), "not a DNS name"),
                          (("REDIS_TLS_PORT", "65536"), "not a port number"),
                          (("REDIS_TLS_CA", os.path.join(ENV.tmp.path, "missing.pem")), "cannot read"),
                          (("TUNNEL_ACCEPT", "127.0.0.1:"), "not host:port")):
            with self.subTest(bad=bad):
                env = dict(good)
                env[bad[0]] = bad[1]
                p = subprocess.run([TUNNEL], env=env, capture_output=True, text=True, timeout=10)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(said, p.stderr)
                self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)


class Refused(unittest.TestCase):
    """A Redis whose certificate the tunnel must not accept: the handshake
    fails, so plcache gets no Redis at all (never one it should not trust)."""

    def refused(self, name, cert, ca, why, cert_name="localhost"):
        tmp = ENV.tmp.path
        r = TlsRedis(tmp, f"{name}-redis", cert, ca, cert_name).start()
        t = Tunnel(tmp, f"{name}-tunnel", r, "ca")  # trusts the right CA, checks "localhost"
        daemons = []
        try:
            t.start(from_file=True)
            with open(t.pid_file) as f:
                self.assertEqual(int(f.read().strip()), t.proc.pid, "the pid file in the temp folder")
            daemons = [webhook(tmp, t.url(), f"{name}-webhook"), worker(tmp, t.url(), f"{name}-worker")]
            # The daemons keep trying (reconnects with backoff) and stay unready.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for d in daemons:
                    self.assertIsNone(d.proc.poll(), f"{d.name} exited")
                    self.assertEqual(h.request(d.port, "GET", "/readyz", timeout=2)[0], 503,
                                     f"{d.name} /readyz")
                time.sleep(0.2)
            wh = daemons[0]
            body = json.dumps(h.event())
            st, _, data = h.request(wh.port, "POST", "/webhooks/promptlayer", body,
                                    {"Content-Type": "application/json",
                                     "X-PromptLayer-Signature": h.sign(body, "whsec_tls")})
            self.assertEqual(st, 503, data)
            self.assertEqual(json.loads(data), {"ok": False, "error": "redis unavailable"})
            metrics = h.request(wh.port, "GET", "/metrics")[2].decode()
            self.assertEqual(h.metric_sum(metrics, "plcache_redis_up"), 0)
            rc, out, err = cli(t.url(), "stats")
            self.assertEqual(rc, 1, (out, err))
            self.assertIn("cannot reach Redis", err)
            self.assertEqual(out, "")
            # Nothing of plcache's reached that Redis.
            self.assertEqual(r("DBSIZE"), 0)
            log = t.log()
            self.assertIn("certificate verify failed", log)
            self.assertIn(why, log)
            self.assertNotIn("Certificate accepted", log)
            # The daemons say so in their log, and keep trying.
            said = []
            for d in daemons:
                lines = [ln for ln in d.log().splitlines() if 'msg="redis unavailable"' in ln]
                self.assertTrue(lines, f"{d.name} logs that Redis is unavailable")
                said.append(lines[0])
            return [err.strip()] + said + [ln for ln in log.splitlines() if "CERT" in ln or "SSL_connect" in ln][:3]
        finally:
            stop(self, *daemons)
            t.stop()
            r.stop()

    def test_a_redis_with_a_certificate_of_another_ca_is_refused(self):
        lines = self.refused("impostor", "impostor", "other-ca", "Rejected by CERT")
        for ln in lines:
            print("# " + ln, flush=True)

    def test_a_certificate_of_the_right_ca_for_another_name_is_refused(self):
        lines = self.refused("elsewhere", "elsewhere", "ca", "CERT: Subject checks failed",
                             "redis.elsewhere.example")
        for ln in lines:
            print("# " + ln, flush=True)


if __name__ == "__main__":
    h.main()
