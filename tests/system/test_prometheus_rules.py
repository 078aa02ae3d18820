"""test_prometheus_rules.py -- deploy/prometheus, deploy/grafana and the k8s monitors,
checked with Debian's promtool and against the metrics the real daemons serve.

- promtool check config / check rules accept the scrape example and the rules;
- promtool test rules runs deploy/prometheus/tests/*.yml, and every alert of
  the rules has at least one case expecting it firing and one expecting it
  quiet there;
- deploy/k8s/prometheusrule.yaml is exactly what scripts/gen-prometheusrule.py
  makes of the rules; the ServiceMonitor and PodMonitor select the pods and
  ports deploy/k8s runs;
- every metric name the rules' expressions and the dashboard's queries use is
  a family plcache-webhook or plcache-worker serves on /metrics (a histogram's
  _bucket, _sum and _count included), a recording rule of the rules, or one of
  Prometheus' own series (up, ALERTS): renaming a metric breaks this test, not
  a dashboard in production.

promtool comes from Debian's prometheus package (scripts/bootstrap installs
it): without it the test fails, it does not skip. YAML is read by Debian's
python3-yaml in /usr/bin/python3, as test_deploy.py does.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PROM = os.path.join(ROOT, "deploy", "prometheus")
RULES = os.path.join(PROM, "rules.yml")
UNIT_TESTS = sorted(glob.glob(os.path.join(PROM, "tests", "*.yml")))
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "*.json")))
K8S = os.path.join(ROOT, "deploy", "k8s")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-yaml
# Series Prometheus makes itself, not a daemon.
PROMETHEUS_OWN = {"up", "ALERTS"}
# PromQL words that look like names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool", "inf", "nan"}


def promtool():
    p = shutil.which("promtool")
    if not p:
        raise AssertionError("promtool not found: scripts/bootstrap installs Debian's prometheus package")
    return p


def load_yaml(*paths):
    """{path: [documents]} read by /usr/bin/python3's yaml."""
    script = ("import json, sys, yaml\n"
              "json.dump({p: list(yaml.safe_load_all(open(p))) for p in sys.argv[1:]}, sys.stdout)\n")
    if not os.path.exists(SYSTEM_PYTHON):
        raise AssertionError(f"{SYSTEM_PYTHON} missing (scripts/bootstrap installs python3-yaml)")
    p = subprocess.run([SYSTEM_PYTHON, "-c", script, *paths], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"YAML did not parse: {p.stderr}")
    return json.loads(p.stdout)


def rule_groups():
    return load_yaml(RULES)[RULES][0]["groups"]


def metric_names(expr):
    """The metric (and recording rule) names a PromQL expression reads: label
    matchers, ranges, strings, grouping clauses, functions, keywords and
    Grafana's $variables are no names."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    out = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        out.add(word)
    return out


def dashboard_exprs(node):
    """Every `expr` (panel targets, annotations) of a Grafana dashboard."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def served_families():
    """{family: type} of what both daemons serve on /metrics."""
    texts = []
    e = h.WebhookEnv(PLCACHE_METRICS_LISTEN=f"127.0.0.1:{h.free_port()}")
    try:
        e.start()
        st, _, body = e.get("/metrics", int(e.env["PLCACHE_METRICS_LISTEN"].rsplit(":", 1)[1]))
        if st != 200:
            raise AssertionError(f"webhook /metrics answered {st}")
        texts.append(body.decode())
    finally:
        e.close()
    w = h.WorkerEnv()
    try:
        w.start()
        texts.append(w.metrics())
    finally:
        w.close()
    out = {}
    for t in texts:
        for m in re.finditer(r"^# TYPE (\S+) (\S+)$", t, re.M):
            out[m.group(1)] = m.group(2)
    return out


def is_served(name, families):
    if name in families:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and families.get(name[:-len(suffix)]) == "histogram":
            return True
    return False


class PromtoolCase(unittest.TestCase):
    def test_promtool_accepts_the_scrape_example_and_the_rules(self):
        for args in (["check", "config", os.path.join(PROM, "prometheus.yml")], ["check", "rules", RULES]):
            p = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, f"promtool {' '.join(args)}:\n{p.stdout}{p.stderr}")

    def test_promtool_unit_tests_of_the_rules_pass(self):
        self.assertTrue(UNIT_TESTS, "no deploy/prometheus/tests/*.yml")
        p = subprocess.run([promtool(), "test", "rules", *UNIT_TESTS], capture_output=True, text=True,
                           timeout=120, cwd=os.path.join(PROM, "tests"))
        self.assertEqual(p.returncode, 0, f"promtool test rules:\n{p.stdout}{p.stderr}")
        self.assertIn("SUCCESS", p.stdout + p.stderr)

    def test_every_alert_is_tested_firing_and_quiet(self):
        alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
        self.assertGreaterEqual(len(alerts), 10)
        firing, quiet = set(), set()
        for path, docs in load_yaml(*UNIT_TESTS).items():
            for t in docs[0]["tests"]:
                for a in t.get("alert_rule_test", []):
                    (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
        self.assertEqual(sorted(alerts - firing), [], "alerts no unit test expects firing")
        self.assertEqual(sorted(alerts - quiet), [], "alerts no unit test expects quiet")
        self.assertEqual(sorted((firing | quiet) - alerts), [], "unit tests of alerts that do not exist")

    def test_every_alert_has_a_severity_summary_and_a_runbook_heading(self):
        with open(os.path.join(ROOT, "deploy", "RUNBOOK.md"), encoding="utf-8") as f:
            heads = {re.sub(r"[^\w\- ]", "", m.strip().lower()).replace(" ", "-")
                     for m in re.findall(r"^#+ (.*)$", f.read(), re.M)}
        for g in rule_groups():
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                with self.subTest(alert=r["alert"]):
                    self.assertIn(r["labels"].get("severity"), ("warning", "critical"))
                    self.assertTrue(r["annotations"].get("summary"))
                    path, _, anchor = r["annotations"]["runbook"].partition("#")
                    self.assertEqual(path, "deploy/RUNBOOK.md")
                    self.assertIn(anchor, heads)


class K8sCase(unittest.TestCase):
    def test_the_prometheusrule_is_generated_from_the_rules(self):
        gen = os.path.join(ROOT, "scripts", "gen-prometheusrule.py")
        p = subprocess.run([sys.executable, gen], capture_output=True, text=True, timeout=30, check=True)
        path = os.path.join(K8S, "prometheusrule.yaml")
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), p.stdout,
                             "deploy/k8s/prometheusrule.yaml differs from its source: run "
                             "scripts/gen-prometheusrule.py > deploy/k8s/prometheusrule.yaml")
        doc = load_yaml(path)[path][0]
        self.assertEqual(doc["kind"], "PrometheusRule")
        self.assertEqual(doc["spec"]["groups"], rule_groups())

    def test_the_monitors_select_the_pods_and_ports_deploy_k8s_runs(self):
        paths = [os.path.join(K8S, n) for n in ("servicemonitor.yaml", "webhook.yaml", "worker.yaml")]
        docs = [d for ds in load_yaml(*paths).values() for d in ds if d]
        kind = {}
        for d in docs:
            kind.setdefault(d["kind"], []).append(d)
        (sm,), (pm,), (svc,) = kind["ServiceMonitor"], kind["PodMonitor"], kind["Service"]
        pods = {d["metadata"]["name"]: d["spec"]["template"] for d in kind["Deployment"]}
        # The receiver, through its Service.
        self.assertTrue(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items())
        self.assertEqual([e["port"] for e in sm["spec"]["endpoints"]], [p["name"] for p in svc["spec"]["ports"]])
        # The worker, through its pods.
        worker = pods["plcache-worker"]
        self.assertTrue(pm["spec"]["selector"]["matchLabels"].items() <= worker["metadata"]["labels"].items())
        ports = [p["name"] for c in worker["spec"]["containers"] for p in c["ports"]]
        self.assertEqual([e["port"] for e in pm["spec"]["podMetricsEndpoints"]], ports)
        # The job label is what the rules expect, the path the pods announce.
        for mon, src, eps, name in ((sm, svc["metadata"]["labels"], sm["spec"]["endpoints"], "plcache-webhook"),
                                    (pm, worker["metadata"]["labels"], pm["spec"]["podMetricsEndpoints"],
                                     "plcache-worker")):
            self.assertEqual(src[mon["spec"]["jobLabel"]], name)
            ann = pods[name]["metadata"]["annotations"]
            self.assertEqual({e["path"] for e in eps}, {ann["prometheus.io/path"]})


class MetricNamesCase(unittest.TestCase):
    def test_the_name_parser_finds_metrics_not_labels_or_functions(self):
        self.assertEqual(metric_names(
            'sum by (job, le) (rate(a_bucket{le=~"10|x_y"}[5m] offset 1m)) / on (job) group_left(c) '
            'max_over_time(b:rec:p99[2m:1m]) > 1e3 and up{job="j"} == bool 0 unless '
            'rate(d_total[$__rate_interval]) * Inf'),
            {"a_bucket", "b:rec:p99", "up", "d_total"})

    def test_every_metric_the_rules_and_dashboards_use_is_served(self):
        used = {}  # name -> where
        records = set()
        for g in rule_groups():
            for r in g["rules"]:
                if "record" in r:
                    records.add(r["record"])
                where = f"rules.yml {r.get('alert') or r.get('record')}"
                for n in metric_names(r["expr"]):
                    used.setdefault(n, where)
        self.assertTrue(DASHBOARDS, "no deploy/grafana/*.json")
        for path in DASHBOARDS:
            with open(path, encoding="utf-8") as f:
                dash = json.load(f)  # valid JSON, or the test fails here
            exprs = list(dashboard_exprs(dash))
            self.assertGreaterEqual(len(exprs), 10, path)
            for ex in exprs:
                for n in metric_names(ex):
                    used.setdefault(n, os.path.basename(path) + ": " + ex)
        self.assertGreaterEqual(len(used), 25, "the parser found too few names")
        families = served_families()
        self.assertGreaterEqual(len(families), 40, "too few families served")
        missing = sorted(f"{n} (used by {w})" for n, w in used.items()
                         if not (is_served(n, families) or n in records or n in PROMETHEUS_OWN))
        self.assertEqual(missing, [], "metric names neither daemon serves:\n  " + "\n  ".join(missing))
        # A name with a colon is a recording rule's, never a daemon's.
        self.assertEqual(sorted(n for n in used if ":" in n and n not in records), [])

    def test_the_dashboard_takes_its_datasource_from_a_variable(self):
        for path in DASHBOARDS:
            with open(path, encoding="utf-8") as f:
                dash = json.load(f)
            variables = {v["name"]: v for v in dash["templating"]["list"]}
            self.assertEqual(variables["DS_PROMETHEUS"]["type"], "datasource")
            self.assertEqual(variables["DS_PROMETHEUS"]["query"], "prometheus")
            for p in dash["panels"]:
                if p["type"] == "row":
                    continue
                with self.subTest(panel=p["title"]):
                    self.assertEqual(p["datasource"]["uid"], "${DS_PROMETHEUS}")
                    for t in p["targets"]:
                        self.assertEqual(t["datasource"]["uid"], "${DS_PROMETHEUS}")
                        self.assertTrue(t["expr"].strip())


if __name__ == "__main__":
    h.main()
