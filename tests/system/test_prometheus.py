"""test_prometheus.py -- deploy/prometheus/rules.yml in a real Prometheus, its alerts
made to fire by real faults.

One redis-server, the fake API, plcache-webhook and plcache-worker on
127.0.0.1, and Debian's prometheus (scripts/bootstrap installs it; without it
the test fails, it does not skip) scraping both daemons every second and
evaluating the real rule file every second, with one change: every `for:` is
shortened (the copy says so in its first line), so an alert fires in seconds.
Each test causes a fault and reads the alert it should raise back from
Prometheus' /api/v1/alerts:

- a job the API refuses with a 4xx goes to pl:track:dead: PlcacheDeadLettersGrowing;
- the API stops accepting the worker's key (401): PlcacheWorkerAuthPaused;
- unsigned deliveries to the receiver: PlcacheWebhookSignatureFailures;
- Redis stops: PlcacheRedisDown for both daemons, and a delivery answered 503,
  PlcacheWebhookRefusingDeliveries; Redis back, PlcacheRedisDown clears.

Every process is stopped by PID (harness.py); every wait is bounded.
"""
import json
import os
import re
import shutil
import subprocess
import time
import unittest
import urllib.parse

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules.yml")
SECRET = "whsec_prometheus_test"
SHORT_FOR = "1s"
ALERT_WAIT = 60.0  # seconds an alert may take to fire (or clear)


def shortened_rules(text):
    """rules.yml with every `for:` set to SHORT_FOR, saying so."""
    out, n = re.subn(r"^(\s+)for: \S+$", r"\g<1>for: " + SHORT_FOR, text, flags=re.M)
    if n < 10:
        raise AssertionError(f"only {n} `for:` found in rules.yml")
    return (f"# A copy of deploy/prometheus/rules.yml made by tests/system/test_prometheus.py:\n"
            f"# every alert's `for:` is shortened to {SHORT_FOR} so that it fires within seconds.\n" + out)


class PrometheusCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        prom = shutil.which("prometheus")
        if not prom:
            raise AssertionError("prometheus not found: scripts/bootstrap installs Debian's prometheus package")
        cls.prom_proc = None
        cls.webhook = None
        cls.w = h.WorkerEnv()
        try:
            cls._start(prom)
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def _start(cls, prom):
        w = cls.w
        tmp = w.tmp.path
        w.start()
        cls.webhook_port = h.free_port()
        cls.webhook_metrics = h.free_port()
        env = {
            "PLCACHE_REDIS_URL": w.env["PLCACHE_REDIS_URL"],
            "PLCACHE_LISTEN": f"127.0.0.1:{cls.webhook_port}",
            "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{cls.webhook_metrics}",
            "PLCACHE_WEBHOOK_SECRET": SECRET,
            "PROMPTLAYER_API_KEY": w.api.api_key,
            "PROMPTLAYER_BASE_URL": w.api.url,
            "PLCACHE_LOG_LEVEL": "debug",
            "PLCACHE_SHUTDOWN_TIMEOUT": 5,
        }
        cls.webhook = h.Daemon(os.environ.get("PLCACHE_WEBHOOK_BIN", ""), env, tmp, "webhook").start()
        # Ready when Redis is: read from /metrics, not /readyz, whose 503s
        # before Redis connects count in plcache_http_requests_total and would
        # raise PlcacheWebhookRefusingDeliveries before its fault.
        h.wait_until(lambda: "\nplcache_redis_up 1\n" in
                     h.request(cls.webhook_metrics, "GET", "/metrics", timeout=2)[2].decode(), 15,
                     what="webhook connected to Redis")
        cls.targets = {"plcache-webhook": f"127.0.0.1:{cls.webhook_metrics}",
                       "plcache-worker": f"127.0.0.1:{w.worker.port}"}
        with open(RULES, encoding="utf-8") as f:
            rules = shortened_rules(f.read())
        with open(os.path.join(tmp, "rules.yml"), "w", encoding="utf-8") as f:
            f.write(rules)
        # JSON is YAML: the configuration is written with json, no YAML library needed.
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [os.path.join(tmp, "rules.yml")],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [t]}]}
                               for job, t in cls.targets.items()],
        }
        with open(os.path.join(tmp, "prometheus.yml"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        cls.prom_port = h.free_port()
        cls.prom_log = open(os.path.join(tmp, "prometheus.log"), "ab")
        cls.prom_proc = subprocess.Popen(
            [prom, "--config.file=" + os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(tmp, "prometheus-data"),
             f"--web.listen-address=127.0.0.1:{cls.prom_port}", "--log.level=warn"],
            stdout=cls.prom_log, stderr=cls.prom_log, cwd=tmp)
        h._started.append(cls.prom_proc)
        h.wait_until(cls._ready, 60, interval=0.2, what="prometheus /-/ready")
        # Both targets scraped, and a few samples of each counter taken
        # before any fault, so that increase() sees every step.
        h.wait_until(lambda: cls._targets_up() == set(cls.targets), 30, interval=0.5,
                     what="both targets up in prometheus")
        h.wait_until(lambda: cls._samples("plcache_redis_up") >= 6, 30, interval=0.5,
                     what="three scrapes of each daemon")

    @classmethod
    def _stop(cls):
        failures = []
        if cls.prom_proc:
            rc = h.stop_process(cls.prom_proc)
            cls.prom_log.close()
            if rc != 0:
                failures.append(f"prometheus exited {rc}:\n{cls.prom_log_text()[-3000:]}")
            cls.prom_proc = None
        if cls.webhook:
            failures += h.stop_daemons([cls.webhook])
            cls.webhook = None
        try:
            cls.w.close()
        except AssertionError as e:
            failures.append(str(e))
        if failures:
            raise AssertionError("\n".join(failures))

    @classmethod
    def tearDownClass(cls):
        cls._stop()

    # -- Prometheus' HTTP API -------------------------------------------------

    @classmethod
    def prom_log_text(cls):
        with open(os.path.join(cls.w.tmp.path, "prometheus.log"), "rb") as f:
            return f.read().decode(errors="replace")

    @classmethod
    def _api(cls, path):
        st, _, body = h.request(cls.prom_port, "GET", path, timeout=5)
        if st != 200:
            raise AssertionError(f"prometheus {path}: {st} {body[:300]!r}")
        out = json.loads(body)
        if out.get("status") != "success":
            raise AssertionError(f"prometheus {path}: {out}")
        return out["data"]

    @classmethod
    def _ready(cls):
        if cls.prom_proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {cls.prom_proc.returncode}:\n{cls.prom_log_text()[-3000:]}")
        try:
            return h.request(cls.prom_port, "GET", "/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    @classmethod
    def _targets_up(cls):
        return {t["labels"]["job"] for t in cls._api("/api/v1/targets")["activeTargets"]
                if t["health"] == "up"}

    @classmethod
    def _samples(cls, metric):
        q = urllib.parse.quote(f"sum(count_over_time({metric}[1m]))")
        res = cls._api("/api/v1/query?query=" + q)["result"]
        return int(float(res[0]["value"][1])) if res else 0

    def alerts(self, name, state="firing"):
        """The labels of alert `name` in `state` now, from /api/v1/alerts."""
        return [a["labels"] for a in self._api("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == name and a["state"] == state]

    def wait_firing(self, name, **labels):
        """Waits until `name` fires with (at least) `labels`; returns its labels."""
        def match():
            for a in self.alerts(name):
                if all(a.get(k) == v for k, v in labels.items()):
                    return a
            return None
        try:
            return h.wait_until(match, ALERT_WAIT, interval=0.5, what=f"{name} {labels} firing")
        except AssertionError as e:
            active = [(a["labels"], a["state"]) for a in self._api("/api/v1/alerts")["alerts"]]
            raise AssertionError(f"{e}\nactive alerts: {active}") from None

    def assert_quiet(self, name, **labels):
        firing = [a for a in self.alerts(name) if all(a.get(k) == v for k, v in labels.items())]
        self.assertEqual(firing, [], f"{name} fires before its fault")

    def post(self, body, sig=True):
        data = json.dumps(body).encode()
        hd = {"Content-Type": "application/json"}
        if sig:
            hd["X-PromptLayer-Signature"] = h.sign(data, SECRET)
        return h.request(self.webhook_port, "POST", "/webhooks/promptlayer", data, hd, timeout=10)[0]

    # -- the faults -----------------------------------------------------------

    def test_a_job_the_api_refuses_raises_dead_letters_growing(self):
        self.assert_quiet("PlcacheDeadLettersGrowing")
        self.w.fault({"method": "POST", "path_prefix": "/log-request", "status": 422, "count": 1})
        self.w.push(h.log_request(uid="refused"))
        h.wait_until(lambda: self.w.r("LLEN", self.w.key("track:dead")) == 1, 15, what="the job dead")
        a = self.wait_firing("PlcacheDeadLettersGrowing", job="plcache-worker", reason="rejected")
        self.assertEqual(a["severity"], "warning")

    def test_a_refused_api_key_raises_worker_auth_paused(self):
        self.assert_quiet("PlcacheWorkerAuthPaused")
        self.w.api.control("PUT", "/_fake/config", {"api_key": "other"})
        try:
            self.w.push(h.log_request(uid="while-refused"))
            a = self.wait_firing("PlcacheWorkerAuthPaused", job="plcache-worker",
                                 instance=self.targets["plcache-worker"], reason="auth")
            self.assertEqual(a["severity"], "critical")
        finally:
            self.w.api.control("PUT", "/_fake/config", {"api_key": self.w.api.api_key})
        # The key accepted again, the job kept queued through the pause is delivered.
        self.w.wait_delivered(["while-refused"])

    def test_unsigned_deliveries_raise_signature_failures(self):
        self.assert_quiet("PlcacheWebhookSignatureFailures")
        for _ in range(4):
            self.assertEqual(self.post(h.event(), sig=False), 401)
        self.wait_firing("PlcacheWebhookSignatureFailures", job="plcache-webhook")

    def test_z_redis_stopped_raises_redis_down_on_both_and_503s_then_clears(self):
        # Named to run last: the others need Redis.
        self.assert_quiet("PlcacheRedisDown")
        self.assert_quiet("PlcacheWebhookRefusingDeliveries")
        port = self.w.redis.port
        self.w.redis.stop()
        for job, target in self.targets.items():
            a = self.wait_firing("PlcacheRedisDown", job=job, instance=target)
            self.assertEqual(a["severity"], "critical")
        self.assertEqual(self.post(h.event()), 503)
        self.wait_firing("PlcacheWebhookRefusingDeliveries", job="plcache-webhook",
                         instance=self.targets["plcache-webhook"])
        # Redis back where the daemons expect it: they reconnect, the alert clears.
        self.w.redis = h.RedisServer(self.w.tmp.path, port=port).start()
        h.wait_until(lambda: self.alerts("PlcacheRedisDown") == [] and
                     self.alerts("PlcacheRedisDown", "pending") == [], ALERT_WAIT, interval=0.5,
                     what="PlcacheRedisDown cleared")


if __name__ == "__main__":
    h.main()
