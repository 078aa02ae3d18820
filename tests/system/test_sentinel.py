"""test_sentinel.py -- failover through Redis Sentinel, for real.

A primary, two replicas and three redis-sentinel processes on free loopback
ports; plcache-webhook and plcache-worker reach Redis through
PLCACHE_REDIS_URL=redis-sentinel://... with PLCACHE_MIN_REPLICAS=1. Under a
steady load of deliveries and jobs the primary is killed with SIGKILL. Both
daemons must carry on against the promoted replica within the failover time,
no delivery answered 200 may be missing from the new primary, and every job
pushed must be delivered to the fake API. (Two replicas: after the failover
one is left, so WAIT 1 can still be satisfied.)

ReadonlyRediscovery isolates the one trigger a real sentinel cannot leave
out: the daemons talk to a fake sentinel that answers
get-master-addr-by-name but never publishes, the primary is demoted by hand
(no process dies, the command links stay up), and only the -READONLY answer
to a write can tell those links to ask again.

Every process is stopped by PID; every wait is bounded.
"""
import json
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
import unittest
import urllib.parse

import harness as h

SECRET = "whsec_test_secret"
MASTER = "m"
DONE = 'plcache_worker_jobs_total{result="done"}'


class Sentinel:
    """One redis-sentinel with its own config file (sentinel rewrites it)."""

    def __init__(self, tmp, primary_port):
        self.port = h.free_port()
        self.dir = os.path.join(tmp, f"sentinel-{self.port}")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\n"
                    "bind 127.0.0.1\n"
                    "daemonize no\n"
                    f"dir {self.dir}\n"
                    f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                    "sentinel resolve-hostnames no\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                    f"sentinel down-after-milliseconds {MASTER} 1000\n"
                    f"sentinel failover-timeout {MASTER} 5000\n"
                    f"sentinel parallel-syncs {MASTER} 2\n")
        self.proc = subprocess.Popen(["redis-sentinel", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        h._started.append(self.proc)
        h.wait_until(lambda: self.cmd("PING") == "PONG", 10, what="redis-sentinel PING")

    def cmd(self, *args):
        c = h.RedisClient(self.port, timeout=2)
        try:
            return c(*args)
        finally:
            c.close()

    def master(self):
        r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER)
        return (r[0].decode(), int(r[1])) if r else None

    def stop(self):
        if self.proc:
            h.stop_process(self.proc)
            self.proc = None


class FakeSentinel:
    """A sentinel that knows one master and never publishes.

    Speaks RESP on a free loopback port: PING, SENTINEL
    get-master-addr-by-name (the master set with set_master(), a null array
    for another name), SUBSCRIBE (confirmed, then silence for good: no
    +switch-master ever), and -ERR for anything else. Commands come as RESP
    arrays of bulk strings (hiredis) or inline. Every command received is
    logged, with the address given back, for the test to look at.
    """

    def __init__(self, name, master):
        self.name = name
        self.lock = threading.Lock()
        self.master = master  # (host, port) or None
        self.log = []  # (argv, answered address or None), in arrival order
        self.conns = set()  # open client sockets, closed by stop()
        self.subscribed = set()  # those that sent SUBSCRIBE
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer.serve(self.connection, self.rfile, self.wfile)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        # Port 0: the kernel picks a free loopback port, with no race.
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name=f"fake-sentinel-{self.port}", daemon=True)
        self.thread.start()

    def set_master(self, master):
        with self.lock:
            self.master = master

    def mark(self):
        """A position in the log, for since= below."""
        with self.lock:
            return len(self.log)

    def asked(self, since=0):
        """The addresses get-master-addr-by-name answered since a mark."""
        with self.lock:
            return [ans for argv, ans in self.log[since:]
                    if [a.lower() for a in argv[:2]] == ["sentinel", "get-master-addr-by-name"]]

    def subscribers(self):
        """The connections that subscribed and are still open."""
        with self.lock:
            return frozenset(self.subscribed)

    @staticmethod
    def read_command(rfile):
        """One command as a list of str, [] for a blank inline line, None at EOF."""
        line = rfile.readline(65536)
        if not line.endswith(b"\n"):
            return None
        if not line.startswith(b"*"):
            return line.decode(errors="replace").split()
        argv = []
        for _ in range(int(line[1:])):
            head = rfile.readline(65536)
            if not head.startswith(b"$"):
                return None
            n = int(head[1:])
            data = rfile.read(n + 2)
            if len(data) != n + 2:
                return None
            argv.append(data[:-2].decode(errors="replace"))
        return argv

    @staticmethod
    def bulk(s):
        b = str(s).encode()
        return b"$%d\r\n%s\r\n" % (len(b), b)

    def serve(self, conn, rfile, wfile):
        with self.lock:
            self.conns.add(conn)
        try:
            while True:
                try:
                    argv = self.read_command(rfile)
                except (OSError, ValueError):
                    return
                if argv is None:
                    return
                if not argv:
                    continue
                cmd = [a.lower() for a in argv]
                answered = None
                if cmd[0] == "ping":
                    out = b"+PONG\r\n"
                elif cmd[:2] == ["sentinel", "get-master-addr-by-name"] and len(argv) == 3:
                    with self.lock:
                        answered = self.master if argv[2] == self.name else None
                    out = (b"*2\r\n" + self.bulk(answered[0]) + self.bulk(answered[1])
                           if answered else b"*-1\r\n")
                elif cmd[0] == "subscribe" and len(argv) > 1:
                    out = b"".join(b"*3\r\n" + self.bulk("subscribe") + self.bulk(ch)
                                   + b":%d\r\n" % (i + 1) for i, ch in enumerate(argv[1:]))
                    with self.lock:
                        self.subscribed.add(conn)
                else:
                    out = b"-ERR unknown command\r\n"
                with self.lock:
                    self.log.append((argv, answered))
                try:
                    wfile.write(out)
                    wfile.flush()
                except OSError:
                    return
        finally:
            with self.lock:
                self.conns.discard(conn)
                self.subscribed.discard(conn)

    def stop(self):
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=10)
        self.server = None


def signed(ev):
    """A delivery's body and headers, signed with SECRET."""
    body = json.dumps(ev).encode()
    return body, {"Content-Type": "application/json", "X-PromptLayer-Signature": h.sign(body, SECRET)}


def replication(server):
    """INFO replication of a RedisServer, as a dict."""
    c = server.client()
    try:
        info = c("INFO", "replication").decode()
    finally:
        c.close()
    return dict(ln.split(":", 1) for ln in info.splitlines() if ":" in ln)


def replicas_online(server, n):
    c = server.client()
    try:
        info = c("INFO", "replication").decode()
    finally:
        c.close()
    return info.count("state=online") >= n


def start_daemons(t, url, settings, what):
    """Starts a receiver and a worker for test t (with t.tmp and t.daemons)
    on url, and the fake API they use; waits until both are ready through
    `what`. Sets t.api, t.wport, t.webhook, t.mport and t.worker."""
    t.api = h.FakeApi(t.tmp.path).start()
    common = {
        "PLCACHE_REDIS_URL": url,
        "PLCACHE_REDIS_TIMEOUT": "2",
        "PLCACHE_LOG_LEVEL": "debug",
        "PROMPTLAYER_API_KEY": t.api.api_key,
        "PROMPTLAYER_BASE_URL": t.api.url,
        "PLCACHE_SHUTDOWN_TIMEOUT": "5",
        **settings,
    }
    t.wport = h.free_port()
    t.webhook = h.Daemon(os.environ.get("PLCACHE_WEBHOOK_BIN", ""), {
        **common, "PLCACHE_LISTEN": f"127.0.0.1:{t.wport}",
        "PLCACHE_WEBHOOK_SECRET": SECRET}, t.tmp.path, "webhook")
    t.mport = h.free_port()
    t.worker = h.Daemon(os.environ.get("PLCACHE_WORKER_BIN", ""), {
        **common, "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{t.mport}",
        "PLCACHE_WORKER_ID": "w1", "PLCACHE_CONCURRENCY": "8",
        "PLCACHE_RETRY_BASE_MS": "50", "PLCACHE_RETRY_MAX_MS": "500",
        "PLCACHE_FORWARD_TIMEOUT": "2"}, t.tmp.path, "worker")
    for d, port in ((t.webhook, t.wport), (t.worker, t.mport)):
        d.start()
        t.daemons.append(d)
        h.wait_until(lambda port=port: h.request(port, "GET", "/readyz", timeout=2)[0] == 200,
                     15, what=f"{d.name} ready through {what}")


class Topology(unittest.TestCase):
    """Redis servers, sentinels (real or fake) and the two daemons of a test,
    all stopped by PID in cleanup."""

    def begin(self, prefix):
        """A temp folder and empty lists of what the test starts, all stopped
        and removed in cleanup."""
        self.tmp = h.TempDir(prefix)
        self.addCleanup(self.tmp.cleanup)
        self.servers = []
        self.daemons = []
        self.sentinels = []
        self.api = None
        self.addCleanup(self.stop_everything)

    def server(self, name, extra=()):
        d = os.path.join(self.tmp.path, name)
        os.makedirs(d)
        s = h.RedisServer(d, list(extra)).start()
        self.servers.append(s)
        return s

    def stop_everything(self):
        failures = h.stop_daemons(self.daemons)
        if getattr(self, "api", None):
            self.api.stop()
        for s in self.sentinels:
            s.stop()
        for s in self.servers:
            s.stop()
        if failures:
            raise AssertionError("\n".join(failures))

    def cli(self, *args, input=b"", **settings):
        cli = os.environ.get("PLCACHE_CLI_BIN", "")
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update({"PLCACHE_REDIS_URL": self.url, "PLCACHE_REDIS_TIMEOUT": "2",
                    "PROMPTLAYER_API_KEY": self.api.api_key,
                    "PROMPTLAYER_BASE_URL": self.api.url})
        env.update(settings)
        p = subprocess.run([cli, *args], input=input, env=env, capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        self.assertNotIn("Sanitizer", err)
        self.assertNotIn("runtime error:", err)
        return p.returncode, p.stdout.decode(errors="replace"), err


class Failover(Topology):
    def setUp(self):
        self.begin("plcache-sentinel-test-")
        p = self.server("primary")
        self.primary = p
        for name in ("replica1", "replica2"):
            self.server(name, ["--replicaof", "127.0.0.1", str(p.port)])
        h.wait_until(lambda: replicas_online(p, 2), 20, what="two replicas online")
        self.sentinels = [Sentinel(self.tmp.path, p.port) for _ in range(3)]

        def known():
            for s in self.sentinels:
                if len(s.cmd("SENTINEL", "replicas", MASTER)) < 2:
                    return False
                if len(s.cmd("SENTINEL", "sentinels", MASTER)) < 2:
                    return False
            return True
        h.wait_until(known, 30, interval=0.2, what="sentinels know both replicas and each other")
        url = "redis-sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        url += f"/{MASTER}?db=0"
        self.url = url
        start_daemons(self, url, {"PLCACHE_MIN_REPLICAS": "1"}, "the sentinels")

    def current_master(self):
        """The master the sentinels agree on, as a RedisServer of ours."""
        for s in self.sentinels:
            try:
                m = s.master()
            except (OSError, RuntimeError, ConnectionError):
                continue
            for srv in self.servers:
                if m and srv.proc and srv.port == m[1]:
                    return srv
        return None

    def test_receiver_and_worker_survive_a_primary_killed_and_lose_nothing(self):
        stop = threading.Event()
        answers = {}  # event name -> list of statuses
        pushed = set()  # job uids a master confirmed with WAIT 1
        errors = []

        def deliveries():
            i = 0
            while not stop.is_set():
                name = f"L{i}"
                try:
                    st, _, _ = h.request(self.wport, "POST", "/webhooks/promptlayer",
                                         *self.signed(h.event(prompt_template_name=name)),
                                         timeout=10)
                except OSError as e:
                    st = f"error {e}"
                answers.setdefault(name, []).append(st)
                i += 1
                time.sleep(0.02)

        def jobs():
            i = 0
            while not stop.is_set():
                uid = f"J{i}"
                try:
                    m = self.current_master()
                    if m is None:
                        raise ConnectionError("no master")
                    c = h.RedisClient(m.port, timeout=3)
                    try:
                        c("LPUSH", "pl:track", json.dumps(h.log_request(uid)))
                        if c("WAIT", 1, 1000) >= 1:
                            pushed.add(uid)
                            i += 1
                    finally:
                        c.close()
                except (OSError, RuntimeError, ConnectionError):
                    time.sleep(0.1)  # the same uid again: a duplicate at worst
                time.sleep(0.02)

        threads = [threading.Thread(target=deliveries), threading.Thread(target=jobs)]
        for t in threads:
            t.start()
        try:
            h.wait_until(lambda: len(pushed) >= 30 and self.count_200(answers) >= 30, 20,
                         interval=0.1, what="load flowing before the failover")
            old = self.primary
            os.kill(old.proc.pid, signal.SIGKILL)
            old.proc.wait(timeout=10)
            killed_at = time.monotonic()
            before = self.count_200(answers)
            pushed_before = len(pushed)
            new = h.wait_until(lambda: (lambda m: m if m is not None and m is not old else None)(
                self.current_master()), 30, interval=0.1, what="the sentinels promote a replica")
            # Both daemons carry on against the promoted replica.
            h.wait_until(lambda: self.count_200(answers) >= before + 20, 30, interval=0.1,
                         what="the receiver answering 200 again after the failover")
            h.wait_until(lambda: len(pushed) >= pushed_before + 20, 30, interval=0.1,
                         what="jobs pushed to the new master")
            recovered_in = time.monotonic() - killed_at
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        self.assertFalse(errors, errors)
        self.assertLess(recovered_in, 30)
        # Ready (a +switch-master arriving after the rediscovery may still
        # cost the link a reconnect: bounded wait, not a single look).
        h.wait_until(lambda: self.get_json(self.wport, "/readyz")[0] == 200, 10,
                     what="the receiver ready after the failover")
        # No delivery answered 200 is missing from the new primary.
        c = new.client()
        try:
            entries = c("XRANGE", "pl:events", "-", "+")
        finally:
            c.close()
        stored = set()
        for _id, fields in entries:
            kv = dict(zip(fields[::2], fields[1::2]))
            stored.add(json.loads(kv[b"payload"])["details"]["prompt_template_name"])
        acked = {n for n, sts in answers.items() if 200 in sts}
        self.assertTrue(acked, "no delivery answered 200")
        missing = sorted(acked - stored)
        self.assertEqual(missing, [], f"{len(missing)} deliveries answered 200 but lost")
        # Every job pushed (and replicated) is delivered, and counted done.
        want = set(pushed)

        def delivered():
            got = set()
            for r in self.api.requests("/log-request"):
                if r["status"] and 200 <= r["status"] < 300:
                    try:
                        got.add(json.loads(r["body"]).get("uid"))
                    except ValueError:
                        pass
            return want <= got
        h.wait_until(delivered, 60, interval=0.5, what=f"{len(want)} jobs delivered")
        h.wait_until(lambda: self.worker_metric(DONE) >= len(want), 30, interval=0.2,
                     what="every job counted done")
        h.wait_until(lambda: new.client()("LLEN", "pl:track") == 0, 30, what="pl:track empty")
        # The command and the library find the new master too.
        rc, out, err = self.cli("stats")
        self.assertEqual(rc, 0, err)
        self.assertIsInstance(json.loads(out), dict)
        rc, _, err = self.cli("track", "-", input=json.dumps(h.log_request("CLI1")).encode())
        self.assertEqual(rc, 0, err)
        want.add("CLI1")
        h.wait_until(delivered, 30, interval=0.5, what="the job pushed by plcache track")
        switched = sum(d.log().count("sentinel: master switched") for d in self.daemons)
        print(f"# failover: back in {recovered_in:.1f}s; {len(acked)} deliveries answered 200, "
              f"{sum(1 for s in answers.values() if 200 not in s)} not; {len(want)} jobs; "
              f"+switch-master seen {switched} times", flush=True)

    def test_a_graceful_failover_is_followed_without_a_lost_link(self):
        # SENTINEL FAILOVER demotes the primary without killing it: the
        # daemons' links stay up, so only +switch-master (or a -READONLY
        # answer to a write) can tell them to move.
        old = self.primary
        for i in range(5):
            st, _, _ = h.request(self.wport, "POST", "/webhooks/promptlayer",
                                 *self.signed(h.event(prompt_template_name=f"B{i}")), timeout=10)
            self.assertEqual(st, 200)
        self.assertEqual(self.sentinels[0].cmd("SENTINEL", "FAILOVER", MASTER), "OK")
        new = h.wait_until(lambda: (lambda m: m if m is not None and m is not old else None)(
            self.current_master()), 30, interval=0.1, what="the sentinels promote a replica")
        h.wait_until(lambda: replicas_online(new, 1), 30, what="a replica of the new master")
        answers = {}

        def moved():
            name = f"A{len(answers)}"
            st, _, _ = h.request(self.wport, "POST", "/webhooks/promptlayer",
                                 *self.signed(h.event(prompt_template_name=name)), timeout=10)
            answers[name] = st
            return st == 200
        h.wait_until(moved, 30, interval=0.1, what="the receiver answering 200 after the switch")
        c = new.client()
        try:
            entries = c("XRANGE", "pl:events", "-", "+")
            c("LPUSH", "pl:track", json.dumps(h.log_request("after-switch")))
        finally:
            c.close()
        names = {json.loads(dict(zip(f[::2], f[1::2]))[b"payload"])["details"]["prompt_template_name"]
                 for _id, f in entries}
        acked = {"B0", "B1", "B2", "B3", "B4"} | {n for n, st in answers.items() if st == 200}
        self.assertEqual(sorted(acked - names), [], "deliveries answered 200 but not on the new master")
        h.wait_until(lambda: any(r["status"] == 201 and b"after-switch" in r["body"].encode()
                                 for r in self.api.requests("/log-request")), 30,
                     what="the worker taking from the new master")
        # The sentinels' +switch-master moved both daemons (4 links: each has
        # a command and a blocking connection), not a -READONLY answer.
        logs = self.webhook.log() + self.worker.log()
        self.assertGreaterEqual(logs.count("sentinel: master switched"), 2, logs[-2000:])
        # The old primary, now a replica, still runs: nobody lost a link to it.
        self.assertIsNone(old.proc.poll())

    def test_command_names_the_sentinels_when_none_answers(self):
        dead = ",".join(f"127.0.0.1:{h.free_port()}" for _ in range(2))
        url = f"redis-sentinel://{dead}/{MASTER}"
        rc, _, err = self.cli("stats", PLCACHE_REDIS_URL=url)
        self.assertNotEqual(rc, 0)
        self.assertIn("sentinel", err)
        rc, _, err = self.cli("track", "-", input=json.dumps(h.log_request("x")).encode(),
                              PLCACHE_REDIS_URL=url)
        self.assertNotEqual(rc, 0)
        self.assertIn("sentinel", err)
        # A master name the sentinels do not monitor.
        rc, _, err = self.cli("stats", PLCACHE_REDIS_URL=self.url.replace(f"/{MASTER}?", "/nope?"))
        self.assertNotEqual(rc, 0)
        self.assertIn("does not know the master", err)

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def signed(ev):
        return signed(ev)

    @staticmethod
    def count_200(answers):
        return sum(1 for sts in list(answers.values()) if 200 in sts)

    def get_json(self, port, path):
        st, _, body = h.request(port, "GET", path, timeout=5)
        return st, body

    def worker_metric(self, name):
        st, _, body = h.request(self.mport, "GET", "/metrics", timeout=5)
        return h.metric_sum(body.decode(), name) if st == 200 else -1


class ReadonlyRediscovery(Topology):
    """A -READONLY answer alone moves the daemons to the new primary.

    Two redis-servers, A primary and B its replica, and a FakeSentinel naming
    A. The roles are swapped by hand (REPLICAOF NO ONE on B, REPLICAOF B on
    A): A keeps running and the sentinel never publishes +switch-master. The
    command links (the receiver's, the worker's) stay up and can learn of the
    switch only from the -READONLY answer to their next write on A. (The
    blocking links may move another way: Redis 7 closes the clients blocked
    in BLMOVE or XREADGROUP when it becomes a replica.)
    """

    def setUp(self):
        self.begin("plcache-readonly-test-")
        self.a = self.server("a")
        self.b = self.server("b", ["--replicaof", "127.0.0.1", str(self.a.port)])
        h.wait_until(lambda: replication(self.b).get("master_link_status") == "up", 20,
                     what="B replicating A")
        self.sentinel = FakeSentinel(MASTER, ("127.0.0.1", self.a.port))
        self.sentinels.append(self.sentinel)
        start_daemons(self, f"redis-sentinel://127.0.0.1:{self.sentinel.port}/{MASTER}?db=0", {},
                      "the fake sentinel")
        # Two links per daemon (commands, blocking reads), each subscribed to
        # +switch-master on the sentinel: the channel is there, and silent.
        h.wait_until(lambda: len(self.sentinel.subscribers()) >= 4, 15,
                     what="the daemons' four +switch-master subscriptions")
        self.subscribed = self.sentinel.subscribers()

    def test_a_readonly_answer_alone_moves_receiver_and_worker_to_the_new_primary(self):
        a, b = self.a, self.b
        answers = {}  # delivery name -> status
        for i in range(5):
            self.assertEqual(self.post(f"R{i}", answers), 200)
        self.push(a, "before")
        self.wait_delivered("before")
        # Nothing of the worker's in flight, and B holds all that A holds.
        h.wait_until(lambda: self.r(a, "LLEN", "pl:track") == 0
                     and self.r(a, "LLEN", "pl:track:processing:w1") == 0, 15,
                     what="the first job finished on A")
        h.wait_until(lambda: self.r(a, "WAIT", 1, 1000) >= 1
                     and self.r(b, "XLEN", "pl:events") == self.r(a, "XLEN", "pl:events"), 15,
                     what="B caught up with A")

        # The switch, told to nobody: B promoted, A demoted in place.
        logs_at = {d.name: len(d.log()) for d in self.daemons}
        mark = self.sentinel.mark()
        self.assertEqual(self.r(b, "REPLICAOF", "NO", "ONE"), "OK")
        self.sentinel.set_master(("127.0.0.1", str(b.port)))
        self.assertEqual(self.r(a, "REPLICAOF", "127.0.0.1", b.port), "OK")

        def a_replicating():
            info = replication(a)
            return info.get("role") == "slave" and info.get("master_link_status") == "up"
        h.wait_until(a_replicating, 20, what="A replicating B")

        after = {}

        def moved():
            return self.post(f"S{len(after)}", after) == 200
        h.wait_until(moved, 30, interval=0.1, what="the receiver answering 200 after the switch")
        for _ in range(3):
            self.assertEqual(self.post(f"S{len(after)}", after), 200)
        refused = {n: st for n, st in after.items() if st != 200}
        # The write that met -READONLY, and any made while the link was being
        # made again, are refused as "try later", never lost silently.
        self.assertTrue(all(st == 503 for st in refused.values()), refused)

        # Every delivery answered 200, before and after, is on B.
        acked = {n for n, st in {**answers, **after}.items() if st == 200}
        self.assertEqual(sorted(acked - self.event_names(b)), [],
                         "deliveries answered 200 but not on the new primary")

        # The worker moves on its own: a job pushed to B is delivered.
        self.push(b, "after")
        self.wait_delivered("after")
        h.wait_until(lambda: self.r(b, "LLEN", "pl:track") == 0, 15, what="pl:track on B empty")

        # What moved them: -READONLY, a new question to the sentinel, B.

        def since(d):
            return d.log()[logs_at[d.name]:]
        self.assertIn("READONLY You can't write", since(self.webhook), since(self.webhook)[-3000:])
        for d in self.daemons:
            try:
                h.wait_until(lambda d=d: 'why="READONLY: the node is a replica now"' in since(d), 10,
                             what=f"{d.name} dropping A on -READONLY")
            except AssertionError as e:
                raise AssertionError(f"{e}:\n{since(d)[-3000:]}") from None
        logs = {d.name: since(d) for d in self.daemons}
        asked = self.sentinel.asked(mark)
        self.assertIn(("127.0.0.1", str(b.port)), asked, asked)
        for name, log in logs.items():
            self.assertNotIn("the sentinels switched the master", log, name)
            # Both links (commands, blocking reads) now go to B, never to A.
            connected = [ln for ln in log.splitlines() if "redis connected" in ln]
            self.assertGreaterEqual(sum(f"127.0.0.1:{b.port}/" in ln for ln in connected), 2,
                                    f"{name} did not move both links to B:\n{log[-3000:]}")
            self.assertFalse(any(f"127.0.0.1:{a.port}/" in ln for ln in connected),
                             f"{name} connected to A after its demotion:\n{log[-3000:]}")
        # Nobody was told: no +switch-master, A still runs, and the
        # subscriptions to the silent sentinel are the same connections.
        for d in self.daemons:
            self.assertNotIn("master switched", d.log(), d.name)
        self.assertIsNone(a.proc.poll(), "A stopped")
        self.assertLessEqual(self.subscribed, self.sentinel.subscribers(),
                             "a +switch-master subscription was lost")
        for d, port in ((self.webhook, self.wport), (self.worker, self.mport)):
            h.wait_until(lambda port=port: h.request(port, "GET", "/readyz", timeout=2)[0] == 200,
                         15, what=f"{d.name} ready after the switch")
        print(f"# readonly: {len(acked)} deliveries answered 200, {len(refused)} refused with 503; "
              f"the sentinel asked {len(asked)} times after the switch", flush=True)
        for name, log in logs.items():
            for ln in log.splitlines():
                if "redis unavailable" in ln or "READONLY" in ln or "redis connected" in ln:
                    print(f"# {name}: {ln}", flush=True)

    # -- helpers ------------------------------------------------------------

    def post(self, name, answers):
        try:
            st, _, _ = h.request(self.wport, "POST", "/webhooks/promptlayer",
                                 *signed(h.event(prompt_template_name=name)), timeout=10)
        except OSError as e:
            st = f"error {e}"
        answers[name] = st
        return st

    @staticmethod
    def r(server, *args):
        c = server.client()
        try:
            return c(*args)
        finally:
            c.close()

    def push(self, server, uid):
        self.r(server, "LPUSH", "pl:track", json.dumps(h.log_request(uid)))

    def wait_delivered(self, uid):
        def done():
            for rec in self.api.requests("/log-request"):
                if rec["status"] and 200 <= rec["status"] < 300:
                    try:
                        if json.loads(rec["body"]).get("uid") == uid:
                            return True
                    except (ValueError, AttributeError):
                        pass
            return False
        h.wait_until(done, 30, interval=0.2, what=f"job {uid} delivered to the fake API")

    def event_names(self, server):
        names = set()
        for _id, fields in self.r(server, "XRANGE", "pl:events", "-", "+"):
            kv = dict(zip(fields[::2], fields[1::2]))
            names.add(json.loads(kv[b"payload"])["details"]["prompt_template_name"])
        return names



class PasswordThroughSentinel(Topology):
    """redis-sentinel://:password@host/master: the password is the data
    node's, used on the node the sentinel names (a sentinel gets no AUTH),
    by the receiver, the worker and the command alike; a wrong one keeps the
    daemons unready and is written to no log."""

    PASSWORD = "s3cr:et@pw"

    def setUp(self):
        self.begin("plcache-sentinel-auth-test-")
        self.a = self.server("a", ["--requirepass", self.PASSWORD])
        self.sentinel = FakeSentinel(MASTER, ("127.0.0.1", self.a.port))
        self.sentinels.append(self.sentinel)
        self.url = self.url_with(urllib.parse.quote(self.PASSWORD, safe=""))

    def url_with(self, password):
        return f"redis-sentinel://:{password}@127.0.0.1:{self.sentinel.port}/{MASTER}?db=0"

    def a_cmd(self, *args):
        c = self.a.client()
        try:
            c("AUTH", self.PASSWORD)
            return c(*args)
        finally:
            c.close()

    def test_every_program_authenticates_to_the_node_the_sentinel_names(self):
        start_daemons(self, self.url, {}, "the fake sentinel, with the password")
        st, _, _ = h.request(self.wport, "POST", "/webhooks/promptlayer",
                             *signed(h.event(prompt_template_name="auth")), timeout=10)
        self.assertEqual(st, 200)
        self.assertEqual(self.a_cmd("XLEN", "pl:events"), 1)
        self.a_cmd("LPUSH", "pl:track", json.dumps(h.log_request("auth-job")))
        h.wait_until(lambda: any(r["status"] == 201 and b"auth-job" in r["body"].encode()
                                 for r in self.api.requests("/log-request")), 15,
                     what="the worker delivering a job from the password-protected node")
        rc, out, err = self.cli("stats")
        self.assertEqual(rc, 0, err)
        self.assertIsInstance(json.loads(out), dict)
        # The sentinel was asked, and never sent the password.
        sent = [argv for argv, _ in list(self.sentinel.log)]
        self.assertTrue(any(a[:1] == ["SENTINEL"] or a[:1] == ["sentinel"] for a in sent), sent)
        self.assertFalse(any(a and a[0].lower() == "auth" for a in sent), sent)
        for d in self.daemons:
            self.assertNotIn(self.PASSWORD, d.log())
            self.assertNotIn(urllib.parse.quote(self.PASSWORD, safe=""), d.log())

    def test_a_wrong_password_is_never_ready_and_never_logged(self):
        self.api = h.FakeApi(self.tmp.path).start()
        port = h.free_port()
        d = h.Daemon(os.environ.get("PLCACHE_WEBHOOK_BIN", ""), {
            "PLCACHE_REDIS_URL": self.url_with("wrong-pw"), "PLCACHE_REDIS_TIMEOUT": "2",
            "PLCACHE_LISTEN": f"127.0.0.1:{port}", "PLCACHE_WEBHOOK_SECRET": SECRET,
            "PROMPTLAYER_API_KEY": self.api.api_key, "PROMPTLAYER_BASE_URL": self.api.url},
            self.tmp.path, "webhook")
        d.start()
        self.daemons.append(d)
        h.wait_until(lambda: "handshake refused" in d.log(), 10, what="the refusal logged")
        self.assertEqual(h.request(port, "GET", "/readyz", timeout=5)[0], 503)
        st, _, _ = h.request(port, "POST", "/webhooks/promptlayer",
                             *signed(h.event(prompt_template_name="no")), timeout=10)
        self.assertEqual(st, 503)
        self.assertNotIn("wrong-pw", d.log())
        rc, _, err = self.cli("stats", PLCACHE_REDIS_URL=self.url_with("wrong-pw"))
        self.assertNotEqual(rc, 0)
        self.assertNotIn("wrong-pw", err)
        self.assertEqual(self.a_cmd("XLEN", "pl:events"), 0)


if __name__ == "__main__":
    h.main()
