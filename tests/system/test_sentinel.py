"""test_sentinel.py -- failover through Redis Sentinel, for real.

A primary, two replicas and three redis-sentinel processes on free loopback
ports; plcache-webhook and plcache-worker reach Redis through
PLCACHE_REDIS_URL=redis-sentinel://... with PLCACHE_MIN_REPLICAS=1. Under a
steady load of deliveries and jobs the primary is killed with SIGKILL. Both
daemons must carry on against the promoted replica within the failover time,
no delivery answered 200 may be missing from the new primary, and every job
pushed must be delivered to the fake API. (Two replicas: after the failover
one is left, so WAIT 1 can still be satisfied.) Every process is stopped by
PID; every wait is bounded.
"""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

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


def replicas_online(server, n):
    c = server.client()
    try:
        info = c("INFO", "replication").decode()
    finally:
        c.close()
    return info.count("state=online") >= n


class Failover(unittest.TestCase):
    def setUp(self):
        self.tmp = h.TempDir("plcache-sentinel-test-")
        self.addCleanup(self.tmp.cleanup)
        self.servers = []
        self.sentinels = []
        self.daemons = []
        self.addCleanup(self.stop_everything)
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
        self.api = h.FakeApi(self.tmp.path).start()
        url = "redis-sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        url += f"/{MASTER}?db=0"
        self.url = url
        common = {
            "PLCACHE_REDIS_URL": url,
            "PLCACHE_MIN_REPLICAS": "1",
            "PLCACHE_REDIS_TIMEOUT": "2",
            "PLCACHE_LOG_LEVEL": "debug",
            "PROMPTLAYER_API_KEY": self.api.api_key,
            "PROMPTLAYER_BASE_URL": self.api.url,
            "PLCACHE_SHUTDOWN_TIMEOUT": "5",
        }
        self.wport = h.free_port()
        self.webhook = h.Daemon(os.environ.get("PLCACHE_WEBHOOK_BIN", ""), {
            **common, "PLCACHE_LISTEN": f"127.0.0.1:{self.wport}",
            "PLCACHE_WEBHOOK_SECRET": SECRET}, self.tmp.path, "webhook")
        self.mport = h.free_port()
        self.worker = h.Daemon(os.environ.get("PLCACHE_WORKER_BIN", ""), {
            **common, "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{self.mport}",
            "PLCACHE_WORKER_ID": "w1", "PLCACHE_CONCURRENCY": "8",
            "PLCACHE_RETRY_BASE_MS": "50", "PLCACHE_RETRY_MAX_MS": "500",
            "PLCACHE_FORWARD_TIMEOUT": "2"}, self.tmp.path, "worker")
        for d, port in ((self.webhook, self.wport), (self.worker, self.mport)):
            d.start()
            self.daemons.append(d)
            h.wait_until(lambda port=port: h.request(port, "GET", "/readyz", timeout=2)[0] == 200,
                         15, what=f"{d.name} ready through the sentinels")

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
                        c("LPUSH", "pl:track", json.dumps({"uid": uid}))
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
        rc, _, err = self.cli("track", "-", input=b'{"uid": "CLI1"}')
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
            c("LPUSH", "pl:track", json.dumps({"uid": "after-switch"}))
        finally:
            c.close()
        names = {json.loads(dict(zip(f[::2], f[1::2]))[b"payload"])["details"]["prompt_template_name"]
                 for _id, f in entries}
        acked = {"B0", "B1", "B2", "B3", "B4"} | {n for n, st in answers.items() if st == 200}
        self.assertEqual(sorted(acked - names), [], "deliveries answered 200 but not on the new master")
        h.wait_until(lambda: any(r["status"] == 200 and b"after-switch" in r["body"].encode()
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
        rc, _, err = self.cli("track", "-", input=b'{"uid": "x"}', PLCACHE_REDIS_URL=url)
        self.assertNotEqual(rc, 0)
        self.assertIn("sentinel", err)
        # A master name the sentinels do not monitor.
        rc, _, err = self.cli("stats", PLCACHE_REDIS_URL=self.url.replace(f"/{MASTER}?", "/nope?"))
        self.assertNotEqual(rc, 0)
        self.assertIn("does not know the master", err)

    # -- helpers ------------------------------------------------------------

    def signed(self, ev):
        body = json.dumps(ev).encode()
        return body, {"Content-Type": "application/json",
                      "X-PromptLayer-Signature": h.sign(body, SECRET)}

    @staticmethod
    def count_200(answers):
        return sum(1 for sts in list(answers.values()) if 200 in sts)

    def get_json(self, port, path):
        st, _, body = h.request(port, "GET", path, timeout=5)
        return st, body

    def worker_metric(self, name):
        st, _, body = h.request(self.mport, "GET", "/metrics", timeout=5)
        return h.metric_sum(body.decode(), name) if st == 200 else -1


if __name__ == "__main__":
    h.main()
