"""test_tls.py -- plcache-webhook over HTTPS (PLCACHE_TLS_CERT/PLCACHE_TLS_KEY).

Self-signed certificates are made here with the openssl command. Checked: a
signed delivery and /healthz over HTTPS, plain HTTP refused, the protocol and
cipher policy (TLS 1.1 refused by the server itself, TLS 1.2 only with ECDHE
and AEAD), the certificate swapped by SIGHUP for new connections while old
ones go on, a broken file on SIGHUP keeping the old certificate, bad files at
start, the request deadline over the handshake and over a request, the
connection bound, and a drain on SIGTERM over HTTPS.
"""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import unittest
import warnings

import harness as h

WEBHOOK = os.environ.get("PLCACHE_WEBHOOK_BIN", "")
SECRET = "whsec_test_secret"
PATH = "/webhooks/promptlayer"


def make_cert(folder, name, org):
    """A self-signed certificate for 127.0.0.1 and its key: (cert, key) paths.
    `org` goes into the subject so two certificates differ visibly."""
    cert = os.path.join(folder, name + ".crt")
    key = os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", f"/O={org}/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-days", "1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def client_ctx(*cas, min_version=None, max_version=None, ciphers=None):
    """A verifying client context trusting the given certificates."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in cas:
        c.load_verify_locations(ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 on purpose
        if ciphers:
            c.set_ciphers(ciphers)
        if min_version:
            c.minimum_version = min_version
        if max_version:
            c.maximum_version = max_version
    return c


class TlsEnv(h.WebhookEnv):
    """WebhookEnv with an HTTPS listener: cert.crt/cert.key in the temp folder
    (replace them and send SIGHUP to rotate)."""

    def __init__(self, **settings):
        super().__init__(secret=SECRET, **settings)
        self.cert, self.key = make_cert(self.tmp.path, "cert", "first")
        self.env["PLCACHE_TLS_CERT"] = self.cert
        self.env["PLCACHE_TLS_KEY"] = self.key
        self.ctx = client_ctx(self.cert)

    def start(self, ready=True, daemon=None):
        d = daemon or self.daemon
        d.start()

        def ok(path):
            if d.proc.poll() is not None:
                raise AssertionError(f"exited {d.proc.returncode}:\n{d.log()[-3000:]}")
            return self.request("GET", path, timeout=5)[0] == 200
        h.wait_until(lambda: ok("/healthz"), 10, what="webhook /healthz over HTTPS")
        if ready:
            h.wait_until(lambda: ok("/readyz"), 10, what="webhook /readyz over HTTPS")
        return self

    def conn(self, ctx=None, timeout=10.0):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=ctx or self.ctx)

    def request(self, method, path, body=None, headers=None, ctx=None, timeout=10.0):
        """One HTTPS request on a new connection: (status, body, peer cert DER)."""
        c = self.conn(ctx, timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), c.sock.getpeercert(binary_form=True)
        finally:
            c.close()

    def post_event(self, name, timeout=10.0):
        body = json.dumps(h.event(prompt_template_name=name)).encode()
        return self.request("POST", PATH, body, {"Content-Type": "application/json",
                                                 "X-PromptLayer-Signature": h.sign(body, SECRET)},
                            timeout=timeout)

    def rotate(self, org):
        """Writes a new certificate and key over the served files."""
        cert, key = make_cert(self.tmp.path, "next", org)
        os.replace(cert, self.cert)
        os.replace(key, self.key)


def closes_within(sock, chunks, seconds):
    """Sends chunks one by one, 0.3 s apart, until the server closes the
    connection; returns how long that took, or None if it never did."""
    t0 = time.monotonic()
    for chunk in chunks:
        try:
            sock.sendall(chunk)
            time.sleep(0.3)
            sock.setblocking(False)
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - t0
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return time.monotonic() - t0
        if time.monotonic() - t0 > seconds:
            return None
    return None


class Https(unittest.TestCase):
    """One HTTPS daemon for the checks that change nothing."""

    @classmethod
    def setUpClass(cls):
        cls.e = TlsEnv().start()

    @classmethod
    def tearDownClass(cls):
        cls.e.close()

    def test_signed_post_over_https_is_recorded_and_health_answers(self):
        e = self.e
        before = e.redis_cmd("XLEN", "pl:events")
        st, body, peer = e.post_event("over-tls")
        self.assertEqual(st, 200, body)
        self.assertEqual(peer, der(e.cert))
        self.assertEqual(e.redis_cmd("XLEN", "pl:events"), before + 1)
        self.assertEqual(e.request("GET", "/healthz")[0], 200)
        self.assertEqual(e.request("GET", "/readyz")[0], 200)
        self.assertEqual(e.request("GET", "/metrics")[0], 200)
        self.assertIn("HTTPS on the listener", e.daemon.log())

    def test_keep_alive_connection_serves_several_requests(self):
        c = self.e.conn()
        try:
            for _ in range(3):
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
        finally:
            c.close()

    def test_plain_http_to_the_https_port_gets_no_answer(self):
        try:
            st = h.request(self.e.port, "GET", "/healthz", timeout=5)[0]
        except (OSError, http.client.HTTPException):
            st = None
        self.assertIsNone(st)
        self.assertEqual(self.e.request("GET", "/healthz")[0], 200)

    def test_tls_1_1_is_refused_by_the_server_and_tls_1_2_accepted(self):
        # Security level 0 lets this client really offer TLS 1.1 (OpenSSL 3
        # would otherwise refuse on the client's side): the refusal below is
        # the server's protocol_version alert.
        old = client_ctx(self.e.cert, min_version=ssl.TLSVersion.TLSv1_1,
                         max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError) as cm:
            self.e.request("GET", "/healthz", ctx=old)
        self.assertEqual(cm.exception.reason, "TLSV1_ALERT_PROTOCOL_VERSION", cm.exception)
        # The same client allowed 1.2 gets in with 1.2 and a modern suite.
        tls12 = client_ctx(self.e.cert, min_version=ssl.TLSVersion.TLSv1_1,
                           max_version=ssl.TLSVersion.TLSv1_2, ciphers="DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", self.e.port), timeout=5) as raw:
            with tls12.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                self.assertEqual(s.version(), "TLSv1.2")
                name = s.cipher()[0]
                self.assertTrue(name.startswith("ECDHE-"), name)
                self.assertTrue("GCM" in name or "CHACHA20" in name, name)
                self.assertIsNone(s.compression())
        # A default client gets TLS 1.3.
        with socket.create_connection(("127.0.0.1", self.e.port), timeout=5) as raw:
            with self.e.ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                self.assertEqual(s.version(), "TLSv1.3")

    def test_tls_1_2_without_ecdhe_and_aead_is_refused(self):
        for suites in ("AES128-GCM-SHA256:AES256-SHA", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"):
            weak = client_ctx(self.e.cert, max_version=ssl.TLSVersion.TLSv1_2,
                              ciphers=suites + ":@SECLEVEL=0")
            with self.assertRaises(ssl.SSLError, msg=suites) as cm:
                self.e.request("GET", "/healthz", ctx=weak)
            self.assertEqual(cm.exception.reason, "SSLV3_ALERT_HANDSHAKE_FAILURE", cm.exception)

    def test_renegotiation_is_refused(self):
        # openssl s_client renegotiates on an "R" line (TLS 1.2 only); its
        # input stays open a moment so that it waits for the server's answer.
        cmd = (f"(echo R; sleep 2) | openssl s_client -connect 127.0.0.1:{self.e.port} "
               f"-tls1_2 -CAfile '{self.e.cert}'")
        p = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode(errors="replace")
        self.assertIn("RENEGOTIATING", out)
        self.assertIn("no renegotiation", out)
        self.assertEqual(self.e.request("GET", "/healthz")[0], 200)


class Rotation(unittest.TestCase):
    def test_sighup_serves_the_new_certificate_to_new_connections_only(self):
        e = TlsEnv().start()
        try:
            first = der(e.cert)
            old = e.conn()
            old.request("GET", "/healthz")
            r = old.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            e.rotate("second")
            second = der(e.cert)
            self.assertNotEqual(first, second)
            e.daemon.proc.send_signal(signal.SIGHUP)
            h.wait_until(lambda: "TLS certificate and key reloaded" in e.daemon.log(), 5,
                         what="reload log")
            with open(os.path.join(e.tmp.path, "first.crt"), "wb") as f:
                f.write(ssl.DER_cert_to_PEM_cert(first).encode())
            both = client_ctx(e.cert, os.path.join(e.tmp.path, "first.crt"))
            e.ctx = both
            st, _, peer = e.request("GET", "/healthz")
            self.assertEqual(st, 200)
            self.assertEqual(peer, second)
            st, body, peer = e.post_event("after-rotation")
            self.assertEqual((st, peer), (200, second), body)
            # The connection made before goes on with the first certificate.
            old.request("GET", "/healthz")
            r = old.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(old.sock.getpeercert(binary_form=True), first)
            old.close()
            self.assertNotIn("PRIVATE KEY", e.daemon.log())
        finally:
            e.close()

    def test_sighup_with_broken_files_keeps_the_old_certificate(self):
        e = TlsEnv().start()
        try:
            first = der(e.cert)
            with open(e.cert, "rb") as f:
                good_cert = f.read()
            with open(e.cert, "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
            e.daemon.proc.send_signal(signal.SIGHUP)
            h.wait_until(lambda: "TLS files not reloaded" in e.daemon.log(), 5,
                         what="refusal log")
            self.assertIn("PLCACHE_TLS_CERT", e.daemon.log())
            with open(e.cert, "wb") as f:
                f.write(good_cert)
            st, _, peer = e.request("GET", "/healthz")
            self.assertEqual((st, peer), (200, first))
            # A new certificate with the old key: refused as well.
            cert2, _ = make_cert(e.tmp.path, "other", "other")
            os.replace(cert2, e.cert)
            e.daemon.proc.send_signal(signal.SIGHUP)
            h.wait_until(lambda: e.daemon.log().count("TLS files not reloaded") == 2, 5,
                         what="second refusal log")
            self.assertIn("does not match", e.daemon.log())
            st, _, peer = e.request("GET", "/healthz")
            self.assertEqual((st, peer), (200, first))
            self.assertEqual(e.post_event("still-first")[0], 200)
        finally:
            e.close()


class Limits(unittest.TestCase):
    def test_slow_handshake_is_cut_off_at_the_request_timeout(self):
        e = TlsEnv(PLCACHE_REQUEST_TIMEOUT=2).start()
        try:
            s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            # A handshake record announcing 512 bytes, sent one byte at a time:
            # the idle timeout alone would never fire.
            hello = [b"\x16\x03\x01\x02\x00"] + [b"\x01"] * 200
            took = closes_within(s, hello, 8)
            s.close()
            self.assertIsNotNone(took, "server kept a trickling handshake")
            self.assertLess(took, 6)
            self.assertEqual(e.request("GET", "/healthz")[0], 200)
        finally:
            e.close()

    def test_slow_request_over_tls_is_cut_off_at_the_request_timeout(self):
        e = TlsEnv(PLCACHE_REQUEST_TIMEOUT=2).start()
        try:
            raw = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            s = e.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            # The deadline ends with the handshake: a connection may then wait
            # longer than the request timeout (only the idle timeout runs).
            time.sleep(2.5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
            line = b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
            took = closes_within(s, [bytes([c]) for c in line], 8)
            s.close()
            self.assertIsNotNone(took, "server kept a trickling client")
            self.assertLess(took, 6)
            self.assertEqual(e.request("GET", "/healthz")[0], 200)
        finally:
            e.close()

    def test_at_the_bound_silent_tls_connections_make_room(self):
        # Handshaken and silent: they hold no request, so the oldest gives its
        # slot to a new client (issue 14: silent sockets held every slot).
        e = TlsEnv(PLCACHE_MAX_CONNECTIONS=3).start()
        try:
            idle = [e.ctx.wrap_socket(socket.create_connection(("127.0.0.1", e.port), timeout=5),
                                      server_hostname="127.0.0.1") for _ in range(3)]
            time.sleep(0.3)
            t0 = time.monotonic()
            self.assertEqual(e.request("GET", "/healthz", timeout=5)[0], 200)
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertEqual(idle[0].recv(1), b"")  # the oldest was closed
            for s in idle[1:]:
                s.close()
        finally:
            e.close()

    def test_at_the_bound_busy_tls_connections_make_new_clients_wait(self):
        e = TlsEnv(PLCACHE_MAX_CONNECTIONS=3, PLCACHE_REQUEST_TIMEOUT=30).start()
        try:
            busy = [e.ctx.wrap_socket(socket.create_connection(("127.0.0.1", e.port), timeout=5),
                                      server_hostname="127.0.0.1") for _ in range(3)]
            for s in busy:  # a request begun and not finished
                s.sendall(b"POST /webhooks/promptlayer HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.3)
            extra = socket.create_connection(("127.0.0.1", e.port), timeout=1.0)
            with self.assertRaises((socket.timeout, ssl.SSLError)):
                e.ctx.wrap_socket(extra, server_hostname="127.0.0.1")
            extra.close()
            busy[0].close()
            h.wait_until(lambda: e.request("GET", "/healthz", timeout=2)[0] == 200, 5,
                         what="a slot")
            for s in busy[1:]:
                s.close()
        finally:
            e.close()

    def test_a_handshaken_silent_connection_is_closed_at_the_first_byte_deadline(self):
        e = TlsEnv(PLCACHE_FIRST_BYTE_TIMEOUT=1, PLCACHE_REQUEST_TIMEOUT=30,
                   PLCACHE_IDLE_TIMEOUT=60).start()
        try:
            s = e.ctx.wrap_socket(socket.create_connection(("127.0.0.1", e.port), timeout=10),
                                  server_hostname="127.0.0.1")
            t0 = time.monotonic()
            try:
                self.assertEqual(s.recv(1), b"")
            except ConnectionResetError:
                pass
            self.assertLess(time.monotonic() - t0, 4.0)
            s.close()
        finally:
            e.close()


class Lifecycle(unittest.TestCase):
    def test_sigterm_over_https_answers_a_delivery_held_by_redis(self):
        e = TlsEnv(PLCACHE_REDIS_TIMEOUT=60, PLCACHE_REQUEST_TIMEOUT=120).start()
        try:
            h.check_drain_waits_for_a_held_delivery(
                self, e, lambda: e.post_event("held", timeout=60)[0],
                lambda: e.request("GET", "/metrics")[1].decode())
        finally:
            e.close()

    def test_bad_tls_settings_stop_at_start_with_one_line_and_exit_2(self):
        tmp = h.TempDir()
        try:
            cert, key = make_cert(tmp.path, "a", "a")
            other_cert, _ = make_cert(tmp.path, "b", "b")
            garbage = os.path.join(tmp.path, "garbage.pem")
            with open(garbage, "w") as f:
                f.write("garbage\n")
            missing = os.path.join(tmp.path, "missing.pem")
            base = {"PLCACHE_WEBHOOK_SECRET": "s", "PROMPTLAYER_API_KEY": "k",
                    "PLCACHE_LISTEN": f"127.0.0.1:{h.free_port()}"}
            cases = [
                ({"PLCACHE_TLS_CERT": cert}, ["PLCACHE_TLS_KEY"]),
                ({"PLCACHE_TLS_KEY": key}, ["PLCACHE_TLS_CERT"]),
                ({"PLCACHE_TLS_CERT": missing, "PLCACHE_TLS_KEY": key}, ["PLCACHE_TLS_CERT"]),
                ({"PLCACHE_TLS_CERT": garbage, "PLCACHE_TLS_KEY": key}, ["PLCACHE_TLS_CERT"]),
                ({"PLCACHE_TLS_CERT": cert, "PLCACHE_TLS_KEY": missing}, ["PLCACHE_TLS_KEY"]),
                ({"PLCACHE_TLS_CERT": cert, "PLCACHE_TLS_KEY": cert}, ["PLCACHE_TLS_KEY"]),
                ({"PLCACHE_TLS_CERT": other_cert, "PLCACHE_TLS_KEY": key},
                 ["PLCACHE_TLS_CERT", "PLCACHE_TLS_KEY"]),
            ]
            for env, names in cases:
                d = h.Daemon(WEBHOOK, {**base, **env}, tmp.path, "bad").start()
                rc = d.proc.wait(10)
                h._started.remove(d.proc)
                d.logf.close()
                err = d.log().strip().splitlines()
                os.unlink(d.log_path)
                self.assertEqual(rc, 2, (env, err))
                self.assertEqual(len(err), 1, err)
                for name in names:
                    self.assertIn(name, err[0])
                self.assertNotIn("PRIVATE KEY", err[0])
            # The flags work as well.
            d = h.Daemon(WEBHOOK, base, tmp.path, "flags").start(
                ["--tls-cert", cert, "--tls-key", missing])
            self.assertEqual(d.proc.wait(10), 2)
            h._started.remove(d.proc)
            d.logf.close()
            self.assertIn("--tls-key", d.log())
        finally:
            tmp.cleanup()


if __name__ == "__main__":
    h.main()
