#!/usr/bin/env python3
"""selftest.py -- checks fake-promptlayer itself, so the system tests can trust it.

Usage: selftest.py PATH/TO/fake-promptlayer. Starts the fake on a free port
(--port-file) with a fixture and an API key, drives every endpoint and fault
kind over HTTP, stops it with SIGTERM and checks it exits 0. Prints TAP.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

FIXTURE = {
    "templates": [
        {"id": 12, "prompt_name": "Hello",
         "versions": {"1": {"prompt_template": {"type": "chat", "messages": []},
                            "commit_message": "first"},
                      "2": {"prompt_template": {"type": "completion"},
                            "tags": ["t"], "id": 999}},
         "labels": {"prod": 1}},
        {"id": 3, "prompt_name": "with space/slash", "versions": {"1": {}}},
        {"id": 7, "prompt_name": "NoVersions"},
    ]
}
KEY = "test-key"

results = []


def check(name, cond, detail=""):
    results.append((bool(cond), name, detail))


class Fake:
    def __init__(self, binary, tmp):
        self.port_file = os.path.join(tmp, "port")
        fixture = os.path.join(tmp, "fixture.json")
        with open(fixture, "w", encoding="utf-8") as f:
            json.dump(FIXTURE, f)
        self.stderr = open(os.path.join(tmp, "stderr.log"), "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
             "--fixture", fixture, "--api-key", KEY],
            stderr=self.stderr)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(self.port_file):
                with open(self.port_file, encoding="utf-8") as f:
                    self.port = int(f.read())
            else:
                time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("fake-promptlayer did not write its port file")

    def req(self, method, path, body=None, headers=None, key=KEY, timeout=10):
        """Returns (status, headers, parsed JSON or raw text); raises on a drop."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if key is not None:
            h["X-API-KEY"] = key
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            raw = r.read()
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")
            return r.status, dict(r.getheaders()), data
        finally:
            conn.close()


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        fake = Fake(binary, tmp)
        try:
            run_checks(fake)
        finally:
            t0 = time.monotonic()
            fake.proc.send_signal(signal.SIGTERM)
            try:
                rc = fake.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                fake.proc.kill()
                rc = None
            check("SIGTERM with a delayed answer pending exits 0 promptly",
                  rc == 0 and time.monotonic() - t0 < 5, f"rc={rc}")
            check("the port file is removed at exit", not os.path.exists(fake.port_file))
            fake.stderr.seek(0)
            log = fake.stderr.read()
            check("one log line per request, no bodies",
                  "msg=request method=POST path=/log-request status=200" in log
                  and "secret-body-text" not in log, log[-500:])
    print(f"1..{len(results)}")
    for i, (ok, name, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        if not ok and detail:
            for line in str(detail).splitlines()[:20]:
                print(f"# {line}")
    return 0 if all(ok for ok, _, _ in results) else 1


def run_checks(f):
    # -- reads
    s, _, d = f.req("GET", "/prompt-templates/Hello", key=None)
    check("a request without the API key gets 401", s == 401 and d == {"message": "Invalid API key"}, d)
    s, _, d = f.req("GET", "/prompt-templates/Hello")
    check("latest version by name", s == 200 and d["version"] == 2 and d["id"] == 12
          and d["prompt_name"] == "Hello" and d["tags"] == ["t"] and d["snippets"] == []
          and d["metadata"] is None and d["prompt_template"] == {"type": "completion"}, d)
    s, _, d = f.req("GET", "/prompt-templates/12?label=prod")
    check("by id and label", s == 200 and d["version"] == 1 and d["commit_message"] == "first", d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=1")
    check("by version", s == 200 and d["version"] == 1, d)
    s, _, d = f.req("GET", "/prompt-templates/with%20space%2Fslash")
    check("names are URL-decoded", s == 200 and d["id"] == 3, d)
    missing = [f.req("GET", p)[0] for p in ("/prompt-templates/Nope", "/prompt-templates/Hello?version=9",
                                             "/prompt-templates/Hello?label=nope",
                                             "/prompt-templates/NoVersions")]
    check("missing template, version, label answer 404", missing == [404] * 4, missing)
    s, _, d = f.req("GET", "/prompt-templates?page=1&per_page=1")
    check("listing page 1", s == 200 and [i["id"] for i in d["items"]] == [3] and d["pages"] == 2
          and d["total"] == 2 and d["has_next"] and not d["has_prev"] and d["next_num"] == 2
          and d["prev_num"] is None, d)
    s, _, d = f.req("GET", "/prompt-templates?page=2&per_page=1")
    check("listing page 2", s == 200 and [i["version"] for i in d["items"]] == [2]
          and not d["has_next"] and d["prev_num"] == 1, d)

    # -- tracking
    ids = []
    for p in ("/log-request", "/rest/track-request", "/rest/track-score", "/rest/track-metadata",
              "/rest/track-group", "/spans-bulk"):
        s, _, d = f.req("POST", p, {"secret-body-text": 1}, {"Content-Type": "application/json"})
        ids.append(d.get("id") if s == 200 and d.get("success") is True and d.get("id") == d.get("request_id") else None)
    check("tracking endpoints answer increasing ids", ids == sorted(ids) and None not in ids
          and len(set(ids)) == 6, ids)
    codes = [f.req("POST", "/log-request", b)[0] for b in ("[1]", "nope", "")]
    check("a tracking body that is not an object gets 400", codes == [400] * 3, codes)

    # -- records
    f.req("GET", "/prompt-templates/Hello?label=prod", headers={"Cache-Control": "no-cache"})
    s, _, recs = f.req("GET", "/_fake/requests?path_prefix=/prompt-templates/Hello", key=None)
    last = recs[-1] if recs else {}
    check("requests are recorded with query, key and Cache-Control",
          s == 200 and last.get("query") == "label=prod" and last.get("api_key") == KEY
          and last.get("cache_control") == "no-cache" and last.get("status") == 200
          and last.get("method") == "GET" and isinstance(last.get("at_ms"), int), last)
    s, _, recs = f.req("GET", "/_fake/requests?path_prefix=/rest/track-score", key=None)
    check("tracking bodies are recorded as text with their answer id",
          len(recs) == 1 and json.loads(recs[0]["body"]) == {"secret-body-text": 1}
          and recs[0]["answer_id"] == ids[2], recs)
    s, _, st = f.req("GET", "/_fake/stats", key=None)
    check("stats count by path and status", s == 200 and st["by_path"]["/log-request"] == {"200": 1, "400": 3}, st)
    f.req("DELETE", "/_fake/requests", key=None)
    s, _, recs = f.req("GET", "/_fake/requests", key=None)
    check("DELETE /_fake/requests clears", recs == [], recs)

    # -- control: state and templates
    s, _, d = f.req("PUT", "/_fake/templates/New%20One", {"id": 20, "versions": {"1": {"x": 1}}}, key=None)
    s2, _, d2 = f.req("POST", "/_fake/templates/New%20One/versions", {"content": {"x": 2}}, key=None)
    s3, _, _ = f.req("PUT", "/_fake/templates/New%20One/labels/prod", {"version": 2}, key=None)
    s4, _, d4 = f.req("GET", "/prompt-templates/New%20One?label=prod")
    check("put template, add version, set label", (s, s2, s3, s4) == (200, 200, 200, 200)
          and d2["version"] == 2 and d4["x"] == 2 and d4["version"] == 2, (d, d2, d4))
    s, _, _ = f.req("POST", "/_fake/templates/New%20One/rename", {"new_name": "Renamed"}, key=None)
    s2, _, _ = f.req("GET", "/prompt-templates/New%20One")
    s3, _, d3 = f.req("GET", "/prompt-templates/20")
    check("rename", (s, s2, s3) == (200, 404, 200) and d3["prompt_name"] == "Renamed", d3)
    s, _, _ = f.req("DELETE", "/_fake/templates/Renamed/labels/prod", key=None)
    s2, _, _ = f.req("GET", "/prompt-templates/Renamed?label=prod")
    s3, _, _ = f.req("DELETE", "/_fake/templates/Renamed", key=None)
    s4, _, _ = f.req("GET", "/prompt-templates/20")
    check("delete label, delete template", (s, s2, s3, s4) == (200, 404, 200, 404), (s, s2, s3, s4))
    bad = [f.req("PUT", "/_fake/templates/X", b, key=None)[0]
           for b in ({"id": 12}, {"versions": {"1": {}}, "labels": {"p": 2}}, {"idd": 1}, "junk")]
    check("bad template edits are refused (409, 400...)", bad == [409, 400, 400, 400], bad)
    state = {"templates": [{"id": 1, "prompt_name": "A", "versions": {"1": {"a": 1}}, "labels": {"prod": 1}}]}
    s, _, _ = f.req("PUT", "/_fake/state", state, key=None)
    s2, _, d2 = f.req("GET", "/_fake/state", key=None)
    check("PUT then GET /_fake/state round-trips", s == 200 and d2 == state, d2)

    # -- faults
    faults = [{"method": "GET", "path_prefix": "/prompt-templates", "count": 2, "status": 500},
              {"path_prefix": "/prompt-templates", "status": 503, "retry_after": "1", "body": {"message": "busy"}}]
    s, _, d = f.req("POST", "/_fake/faults", faults, key=None)
    got = [f.req("GET", "/prompt-templates/A") for _ in range(4)]
    check("faults are consumed in order, then normal answers",
          s == 200 and [g[0] for g in got] == [500, 500, 503, 200]
          and got[2][1].get("Retry-After") == "1" and got[2][2] == {"message": "busy"}, got)
    f.req("POST", "/_fake/faults", {"method": "POST", "status": 429}, key=None)
    s1 = f.req("GET", "/prompt-templates/A")[0]
    s2 = f.req("POST", "/log-request", {})[0]
    check("a fault only matches its method", (s1, s2) == (200, 429), (s1, s2))
    f.req("POST", "/_fake/faults", {"path_prefix": "/log-request", "drop": True}, key=None)
    try:
        f.req("POST", "/log-request", {})
        dropped = False
    except (http.client.HTTPException, ConnectionError):
        dropped = True
    check("drop closes the connection without an answer", dropped)
    f.req("POST", "/_fake/faults", {"drop": True, "count": 5}, key=None)
    f.req("DELETE", "/_fake/faults", key=None)
    s, _, d = f.req("GET", "/_fake/faults", key=None)
    check("DELETE /_fake/faults clears", d == [], d)
    refused = [f.req("POST", "/_fake/faults", b, key=None)[0]
               for b in ({"status": 500, "drop": True}, {"path_prefix": "/x"}, {"stat": 1}, [{"status": 500}, {"status": 7}])]
    s, _, d = f.req("GET", "/_fake/faults", key=None)
    check("malformed faults are refused, all or nothing", refused == [400] * 4 and d == [], (refused, d))

    # -- delays never block other requests
    f.req("POST", "/_fake/faults", [{"path_prefix": "/prompt-templates/A", "delay_ms": 1500, "status": 504},
                                    {"path_prefix": "/prompt-templates/A", "delay_ms": 1000}], key=None)
    out = {}

    def slow(name):
        t0 = time.monotonic()
        s, _, _ = f.req("GET", "/prompt-templates/A")
        out[name] = (s, time.monotonic() - t0)

    threads = [threading.Thread(target=slow, args=("a",))]
    threads[0].start()
    time.sleep(0.1)
    threads.append(threading.Thread(target=slow, args=("b",)))
    threads[1].start()
    time.sleep(0.1)
    t0 = time.monotonic()
    fast = f.req("GET", "/prompt-templates/A?version=1")[0]
    fast_t = time.monotonic() - t0
    for t in threads:
        t.join()
    check("delayed answers wait, others do not",
          fast == 200 and fast_t < 0.5 and out["a"][0] == 504 and out["a"][1] >= 1.45
          and out["b"][0] == 200 and 0.95 <= out["b"][1] < 1.45, (fast, fast_t, out))
    f.req("PUT", "/_fake/config", {"delay_ms": 300}, key=None)
    t0 = time.monotonic()
    s = f.req("GET", "/prompt-templates/A")[0]
    t_api = time.monotonic() - t0
    t0 = time.monotonic()
    f.req("GET", "/_fake/state", key=None)
    t_ctl = time.monotonic() - t0
    f.req("PUT", "/_fake/config", {"delay_ms": 0}, key=None)
    check("the global delay applies to the API, not the control API",
          s == 200 and t_api >= 0.29 and t_ctl < 0.25, (t_api, t_ctl))
    f.req("PUT", "/_fake/config", {"api_key": "other"}, key=None)
    s1 = f.req("GET", "/prompt-templates/A")[0]
    s2 = f.req("GET", "/prompt-templates/A", key="other")[0]
    f.req("PUT", "/_fake/config", {"api_key": KEY}, key=None)
    check("the API key can be changed at run time", (s1, s2) == (401, 200), (s1, s2))

    # Leave an answer pending so the SIGTERM check covers it.
    f.req("POST", "/_fake/faults", {"delay_ms": 60000, "status": 500}, key=None)
    threading.Thread(target=lambda: _swallow(f), daemon=True).start()
    time.sleep(0.2)


def _swallow(f):
    try:
        f.req("GET", "/prompt-templates/A", timeout=30)
    except Exception:  # the fake is being stopped: any error is expected
        pass


if __name__ == "__main__":
    sys.exit(main())
