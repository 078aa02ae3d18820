"""test_converge.py -- a seeded, model-based convergence test of the applier.

The fake PromptLayer API is the truth. A seeded random history of edits is
made in it (versions added, snippet updates, labels created, moved, deleted,
approved label changes, renames, deletes, templates re-created under a
deleted name), each followed by the webhook PromptLayer would send, stamped
at the moment of the edit. Each webhook is delivered to three receivers side
by side (plcache-webhook, one consumer group) behind a load balancer of this
test: once, twice or three times, at once or delayed (so reordered), or lost.
Faults run all along: API 5xx, 429 with Retry-After, timeouts, dropped
connections, slow answers that let a newer write overtake an older fetch,
outages of one template's answers (longer than the fetch retries),
kill -9 and restart of receivers, a Redis restart (append-only, fsync
always; SIGTERM or SIGKILL).

At quiescence (PLCACHE_RESYNC_INTERVAL=0: the reconciliation runs at the end
only, as `plcache sync`):
  - nothing pending or unread in the group (pl:events:dead is allowed), no
    consumer of a receiver that is not running;
  - every cached id, latest, label:* and version:* equals what the API answers
    for that selector, every label and version the API has is cached, nothing
    is cached that the API no longer has, pl:prompt-ids maps live ids to their
    names only. Templates touched by a lost webhook are left out of this
    first check (only the reconciliation can repair them);
  - `plcache sync` then repairs what lost webhooks left (when none was lost
    it must change nothing), everything is checked again (all templates), and
    a second `plcache sync` must change nothing.
During the run a reader polls every label (and latest) of every name every
few ms: it must never see one go back to a version older than one it saw,
unless the API itself moved it back (its observations must map to a
non-decreasing position in that field's history).

The checks, as failures name them:
  pending, stale-consumer, quiescence   the group at the end
  content        a cached field differs from the API's answer for it
  stale-field, stale-template   cached, but the API has no such field/template
  ids, missing-id       pl:prompt-ids maps an id to a wrong or dead name / lacks one
  missing-field, missing-template   the API has it (latest, a label, the
                 template), every webhook about it was delivered, and it is not
                 cached (checked before sync, and again after it)
  (version misses)  a delivered version that is not cached is counted and
                 printed, not a failure: the contract is that what is cached
                 is right and that sync changes nothing; a version a rename
                 could not carry over (another template took the old name
                 first, and its write replaced the old hash) is a read-through
                 miss for its readers, never a wrong answer
  sync-changed   no webhook was lost, yet the reconciliation changed something
  resync-changed a second reconciliation changed something
  reader-backwards   a label or latest went back without the API moving it back
  receiver-exit, delivery, sync-failed, run-error, test-model   the processes
                 or the test itself

One random.Random(seed) makes the history, the delivery schedule and the
faults; the real processes add timing jitter, so a seed reproduces the same
history and schedule, not the same interleaving. A failure prints its seed,
the failing checks, and the shortest history found (prefix, then ddmin,
bounded by a time budget) that still fails.

Short mode (default, meson test): a few fixed seeds, ~45 edits each.
Long mode: CONVERGE_LONG=1, or --seeds N --edits M (scripts/bench/converge).
CONVERGE_SEED=S (or --seed S) runs one seed; CONVERGE_OPS=i,j,k (or --ops)
replays only those ops of its history; --shrink-budget SECONDS.
"""
import argparse
import heapq
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import harness as h

LABELS = ("prod", "staging", "dev", "beta")
NAMES = ("Hello", "Other thing/ü", "summarize", "greet", "triage", "Hola")
SECRET = "whsec_converge_secret"
GROUP = "plcache-applier"
RECEIVERS = 3
SHORT_SEEDS = (1, 2, 3)

TOTALS = {"histories": 0, "runs": 0, "edits": 0, "events": 0, "deliveries": 0, "duplicates": 0,
          "delayed": 0, "lost": 0, "dead_letters": 0, "faults": 0, "kills": 0,
          "redis_restarts": 0, "observations": 0, "divergences": 0, "failing_seeds": 0,
          "version_misses": 0}
FAULT_KINDS = {}
CHECK_COUNTS = {}  # check -> [divergences, histories]
SHRUNK = set()  # checks a shortest history was already looked for
FAILURES = []  # (seed, checks, repro line)


def stamp():
    """PromptLayer's timestamp: naive UTC with microseconds, taken now."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def q(name):
    return urllib.parse.quote(name, safe="")


# -- the history ----------------------------------------------------------------

def gen_history(seed, n_edits, kills=2, redis_restarts=1):
    """The ops of a seed: edits (each with its delivery plan), faults, kills
    and Redis restarts, with the pause after each. Every parameter is
    concrete or a fraction resolved against the state at replay, so any
    subset of the list replays (an op invalid in that state is skipped)."""
    rng = random.Random(seed)
    live = {}  # name -> {"versions": n, "labels": set()}
    ops = []
    # A third of the histories lose no webhook: there the reconciliation at
    # the end must change nothing at all.
    loss = 0.0 if rng.random() < 0.34 else 0.07

    def plan():
        r = rng.random()
        k = 0 if r < loss else 1 if r < 0.70 else 2 if r < 0.90 else 3
        out = []
        for _ in range(k):
            delay = 0.0 if rng.random() < 0.7 else round(rng.uniform(0.05, 2.5), 3)
            out.append((delay, rng.randrange(RECEIVERS)))
        return out

    def content(i, name):
        c = {"prompt_template": {"type": "completion",
                                 "content": [{"type": "text", "text": f"{name} op{i} {{x}}"}]},
             "commit_message": f"op {i}"}
        if rng.random() < 0.3:
            c["metadata"] = {"model": {"provider": "openai", "name": "gpt-4o", "parameters": {}}}
        return c

    edits = 0
    while edits < n_edits:
        i = len(ops)
        names = sorted(live)
        free = [n for n in NAMES if n not in live]
        w = {"create": 12 if len(live) < 3 else 3 if free else 0,
             "add_version": 25, "update_version": 6, "label_set": 30, "label_delete": 7,
             "approve_move": 5, "approve_delete": 3, "rename": 4 if free else 0, "delete": 4,
             "other": 2}
        if not live:
            w = {"create": 1}
        kind = rng.choices(list(w), weights=list(w.values()))[0]
        op = {"i": i, "kind": kind, "gap": round(rng.uniform(0.0, 0.1), 3)}
        name = rng.choice(names) if names else None
        if kind == "create":
            name = rng.choice(free)
            op.update(name=name, content=content(i, name))
            live[name] = {"versions": 1, "labels": set()}
        elif kind == "add_version":
            op.update(name=name, content=content(i, name))
            live[name]["versions"] += 1
        elif kind == "update_version":
            op.update(name=name, vsel=rng.random(), content=content(i, name))
        elif kind in ("label_set", "approve_move"):
            have = sorted(live[name]["labels"])
            label = rng.choice(have) if kind == "approve_move" and have else rng.choice(LABELS)
            op.update(name=name, label=label, vsel=rng.random())
            live[name]["labels"].add(label)
        elif kind in ("label_delete", "approve_delete"):
            have = sorted(live[name]["labels"])
            label = rng.choice(have) if have else rng.choice(LABELS)
            op.update(name=name, label=label)
            live[name]["labels"].discard(label)
        elif kind == "rename":
            new = rng.choice(free)
            op.update(name=name, new_name=new)
            live[new] = live.pop(name)
        elif kind == "delete":
            op.update(name=name)
            del live[name]
        op["deliver"] = plan()
        ops.append(op)
        edits += 1
        # Faults all along.
        if rng.random() < 0.22:
            ops.append({"i": len(ops), "kind": "fault", "gap": 0.0, "spec": gen_fault(rng, sorted(live))})
    # Kills and Redis restarts at random places (not in the first few ops).
    for _ in range(kills):
        pos = rng.randrange(min(3, len(ops)), len(ops) + 1)
        ops.insert(pos, {"kind": "kill", "gap": 0.0, "receiver": rng.randrange(RECEIVERS),
                         "down": round(rng.uniform(0.2, 1.5), 3)})
    for _ in range(redis_restarts):
        pos = rng.randrange(min(3, len(ops)), len(ops) + 1)
        ops.insert(pos, {"kind": "redis_restart", "gap": 0.0, "hard": rng.random() < 0.5})
    for i, op in enumerate(ops):
        op["i"] = i
        if "content" in op:  # its text names the op that wrote it
            op["content"]["prompt_template"]["content"][0]["text"] = f"{op['name']} op{i} {{x}}"
    return ops


def gen_fault(rng, names):
    r = rng.random()
    if r < 0.25:
        f = {"status": rng.choice([500, 502, 503]), "count": rng.randint(1, 3)}
        kind = "5xx"
    elif r < 0.40:
        f = {"status": 429, "retry_after": "1", "count": 1}
        kind = "429"
    elif r < 0.55:
        f = {"delay_ms": 1600, "count": 1}  # past PLCACHE_FETCH_TIMEOUT (1 s)
        kind = "timeout"
    elif r < 0.70:
        f = {"drop": True, "count": rng.randint(1, 2)}
        kind = "drop"
    elif r < 0.75 and names:
        # An outage of one template's answers, long enough to outlast the
        # fetch retries of several deliveries (claims, maybe pl:events:dead).
        f = {"status": 503, "delay_ms": 250, "count": rng.randint(40, 80)}
        kind = "outage"
    else:
        f = {"delay_ms": rng.randint(150, 800), "count": rng.randint(1, 4)}
        kind = "slow"
    f["method"] = "GET"
    if names and (kind == "outage" or rng.random() < 0.5):
        f["path_prefix"] = "/prompt-templates/" + q(rng.choice(names))
    else:
        f["path_prefix"] = "/prompt-templates/"
    return {"kind": kind, "fault": f}


# -- the model of the API, as the run makes it --------------------------------

class Model:
    def __init__(self):
        self.t = {}  # name -> {"id", "versions": {n: content}, "labels": {label: n}}
        self.next_id = 1
        self.hist = {}  # (name, field) -> [(value, op index)]
        self.id_names = {}  # id -> names it had
        for n in NAMES:
            for f in [f"label:{lb}" for lb in LABELS] + ["latest"]:
                self.hist[(n, f)] = [(None, -1)]

    def record(self, i, names):
        """Appends the current value of every watched field of `names`."""
        for n in names:
            t = self.t.get(n)
            for lb in LABELS:
                v = t["labels"].get(lb) if t else None
                self._push(n, f"label:{lb}", v, i)
            self._push(n, "latest", max(t["versions"]) if t else None, i)

    def _push(self, n, f, v, i):
        hs = self.hist[(n, f)]
        if hs[-1][0] != v:
            hs.append((v, i))

    @staticmethod
    def pick(vsel, versions):
        vs = sorted(versions)
        return vs[min(int(vsel * len(vs)), len(vs) - 1)]


def details(tid, name, **kw):
    d = {"prompt_template_id": tid, "prompt_template_name": name}
    d.update(kw)
    return d


def body(event_type, d):
    return {"event_type": event_type, "details": d, "user_id": 1, "user_name": "John Doe",
            "user_email": "john.doe@example.com", "workspace_id": 1, "timestamp": stamp()}


# -- one run --------------------------------------------------------------------

class Scheduler:
    """Runs functions at due times on a small pool (deliveries, restarts)."""

    def __init__(self):
        self.heap = []
        self.seq = 0
        self.cv = threading.Condition()
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.futures = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def at(self, due, fn):
        with self.cv:
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, fn))
            self.cv.notify()

    def _loop(self):
        with self.cv:
            while not self.stopping:
                now = time.monotonic()
                while self.heap and self.heap[0][0] <= now:
                    _, _, fn = heapq.heappop(self.heap)
                    self.futures.append(self.pool.submit(fn))
                wait = (self.heap[0][0] - now) if self.heap else 0.5
                self.cv.wait(max(0.001, min(wait, 0.5)))

    def drain(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cv:
                empty = not self.heap
                futs = list(self.futures)
            if empty and all(f.done() for f in futs):
                for f in futs:
                    f.result()  # a bug of the test itself surfaces here
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        with self.cv:
            self.stopping = True
            self.heap.clear()
            self.cv.notify()
        self.thread.join(5)
        self.pool.shutdown(wait=True, cancel_futures=True)


def uts_works():
    try:
        return subprocess.run(["unshare", "--uts", "true"], timeout=5,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


UTS = None


class Run:
    """One history replayed against redis-server, the fake API and three
    receivers; .divergences lists (check, message)."""

    def __init__(self, seed, ops, long_mode=False, log=None):
        global UTS
        if UTS is None:
            UTS = uts_works()
        self.seed = seed
        self.ops = ops
        self.long = long_mode
        self.log = log or (lambda s: None)
        self.divergences = []
        self.stats = {k: 0 for k in ("edits", "events", "deliveries", "duplicates", "delayed", "lost",
                                     "faults", "kills", "redis_restarts", "observations",
                                     "dead_letters", "skipped", "version_misses")}
        self.fault_kinds = {}
        self.replay = []  # readable lines of what was done
        self.model = Model()
        self.lock = threading.Lock()
        self.delivered = {}  # event number -> 200 answers
        self.event_info = {}  # event number -> (tid, names)
        self.raw = {}  # event number -> body as sent
        self.sync_out = []
        self.consumers = []
        self.obs = {}  # (name, field) -> [(version, t)]
        self.reader_errors = []
        self.stop_reader = threading.Event()

    # -- processes --------------------------------------------------------------

    def start(self):
        self.e = h.WebhookEnv(redis_extra=("--appendonly", "yes", "--appendfsync", "always"),
                              secret=SECRET, PLCACHE_RESYNC_INTERVAL=0, PLCACHE_CLAIM_IDLE=1,
                              PLCACHE_FETCH_TIMEOUT=1, PLCACHE_LOG_LEVEL="info",
                              PLCACHE_SHUTDOWN_TIMEOUT=3)
        self.receivers = [self.e.daemon] + [self.e.another() for _ in range(RECEIVERS - 1)]
        self.webhook_bin = self.e.daemon.binary
        for k, d in enumerate(self.receivers):
            d.host = f"recv-{k}" if UTS else socket.gethostname()
            d.port = int(d.env["PLCACHE_LISTEN"].rsplit(":", 1)[1])
            d.up = False
            self.start_receiver(d)
        self.sched = Scheduler()
        self.reader = threading.Thread(target=self.read_loop, daemon=True)
        self.reader.start()

    def start_receiver(self, d):
        real = self.webhook_bin
        if UTS:
            # Its own host name, as on its own machine: the consumer is named
            # after the host, so a restart reuses it.
            d.binary = "unshare"
            d.start(["--uts", "sh", "-c", 'hostname "$0" && exec "$1"', d.host, real])
        else:
            d.start()
        h.wait_until(lambda: h.request(d.port, "GET", "/healthz", timeout=2)[0] == 200, 15,
                     what=f"receiver {d.host} /healthz")
        d.up = True

    def close(self):
        self.stop_reader.set()
        if getattr(self, "sched", None):
            self.sched.stop()
        if getattr(self, "reader", None):
            self.reader.join(5)
        if getattr(self, "e", None):
            if os.environ.get("CONVERGE_KEEP") == "1":
                self.e.tmp.cleanup = lambda: None
                self.log(f"# seed {self.seed}: logs kept in {self.e.tmp.path}")
            try:
                self.e.close()
            except AssertionError as ex:
                self.diverge("receiver-exit", str(ex)[:2000])

    def send_change(self, stage, change, t, name, lb, op, what):
        """The webhook of an approval step (requested, approved) of a label's
        move or deletion."""
        self.send(f"prompt_template_label_change_{stage}",
                  details(t["id"], name, prompt_template_label=lb, change_type=change),
                  op["deliver"], what)

    def diverge(self, check, msg):
        self.divergences.append((check, msg))

    def redis(self, *args):
        return self.e.redis_cmd(*args)

    # -- the reader --------------------------------------------------------------

    def read_loop(self):
        fields = [f"label:{lb}" for lb in LABELS] + ["latest"]
        c = None
        while not self.stop_reader.is_set():
            try:
                if c is None:
                    c = h.RedisClient(self.e.redis.port, timeout=2)
                for n in NAMES:
                    vals = c("HMGET", "pl:prompt:" + n, *fields)
                    t = time.monotonic()
                    for f, v in zip(fields, vals):
                        if v is None:
                            continue
                        try:
                            ver = json.loads(v)["version"]
                        except (ValueError, KeyError, TypeError) as ex:
                            self.reader_errors.append(f"{n} {f}: not a template's JSON ({ex!r})")
                            continue
                        seen = self.obs.setdefault((n, f), [])
                        if not seen or seen[-1][0] != ver:
                            seen.append((ver, t))
                        self.stats["observations"] += 1
            except (OSError, ConnectionError, RuntimeError):
                if c is not None:
                    try:
                        c.close()
                    except OSError:
                        pass
                c = None
                time.sleep(0.01)
            time.sleep(0.003)
        if c is not None:
            c.close()

    def check_reader(self):
        for err in self.reader_errors[:5]:
            self.diverge("reader-json", err)
        for key, seen in sorted(self.obs.items()):
            hist = self.model.hist[key]
            p = 0
            for ver, t in seen:
                qpos = next((k for k in range(p, len(hist)) if hist[k][0] == ver), None)
                if qpos is None:
                    before = [v for v, _ in seen[:seen.index((ver, t))]][-6:]
                    self.diverge("reader-backwards",
                                 f"{key[0]!r} {key[1]}: read version {ver} after {before}, but the "
                                 f"API's history of that field from there is "
                                 f"{[f'{v}@op{i}' for v, i in hist[p:]]} (whole: "
                                 f"{[f'{v}@op{i}' for v, i in hist]})")
                    break
                p = qpos

    # -- deliveries --------------------------------------------------------------

    def deliver(self, ev, raw, receiver):
        """A load balancer: the chosen receiver, or the next one up when it is
        down or does not answer; retried (bounded) while Redis restarts."""
        deadline = time.monotonic() + 20
        k = 0
        while time.monotonic() < deadline:
            d = self.receivers[(receiver + k) % RECEIVERS]
            k += 1
            if not d.up:
                time.sleep(0.02)
                continue
            try:
                st, _, _ = h.request(d.port, "POST", "/webhooks/promptlayer", raw,
                                     {"Content-Type": "application/json",
                                      "X-PromptLayer-Signature": h.sign(raw, SECRET)}, timeout=5)
            except OSError:
                time.sleep(0.02)
                continue
            if st == 200:
                with self.lock:
                    self.delivered[ev] = self.delivered.get(ev, 0) + 1
                return
            if st != 503:
                with self.lock:
                    self.diverge("delivery", f"event {ev}: receiver {d.host} answered {st}")
                return
            time.sleep(0.05)

    def send(self, event_type, d, plan, what):
        """Records an event and schedules its deliveries."""
        ev = self.stats["events"]
        self.stats["events"] += 1
        raw = json.dumps(body(event_type, d)).encode()
        names = {d.get("prompt_template_name"), d.get("old_prompt_template_name")} - {None}
        # Only events the applier acts on count when lost.
        acts = event_type.startswith("prompt_template_") and not event_type.endswith("_requested")
        self.event_info[ev] = (d.get("prompt_template_id") if acts else None, names if acts else set())
        self.raw[ev] = raw
        now = time.monotonic()
        for delay, r in plan:
            self.stats["deliveries"] += 1
            if delay:
                self.stats["delayed"] += 1
            self.sched.at(now + delay, lambda ev=ev, raw=raw, r=r: self.deliver(ev, raw, r))
        self.stats["duplicates"] += max(0, len(plan) - 1)
        sched = ", ".join(f"r{r}" + (f"+{dl}s" if dl else "") for dl, r in plan) or "LOST"
        what.append(f"{event_type} -> {sched}")

    # -- ops ---------------------------------------------------------------------

    def api_ctl(self, method, path, b=None):
        return self.e.api.control(method, path, b)

    def do(self, op):
        """Replays one op; returns a readable line, or None when it is not
        valid in this state (skipped)."""
        m = self.model
        k = op["kind"]
        i = op["i"]
        what = []
        if k == "fault":
            self.api_ctl("POST", "/_fake/faults", op["spec"]["fault"])
            self.stats["faults"] += 1
            self.fault_kinds[op["spec"]["kind"]] = self.fault_kinds.get(op["spec"]["kind"], 0) + 1
            return f"#{i} fault {op['spec']['kind']} {json.dumps(op['spec']['fault'])}"
        if k == "kill":
            d = self.receivers[op["receiver"]]
            if not d.up or sum(x.up for x in self.receivers) < 2:
                return None
            d.up = False
            d.stop(signal.SIGKILL)
            self.stats["kills"] += 1
            self.sched.at(time.monotonic() + op["down"], lambda d=d: self.start_receiver(d))
            return f"#{i} kill -9 receiver r{op['receiver']}, restarted after {op['down']}s"
        if k == "redis_restart":
            r = self.e.redis
            if op["hard"]:
                r.proc.kill()
                r.proc.wait(10)
                h.stop_process(r.proc)
                r.proc = None
            else:
                r.stop()
            r.start()
            self.stats["redis_restarts"] += 1
            return f"#{i} redis restart ({'SIGKILL' if op['hard'] else 'SIGTERM'}, appendfsync always)"
        if k == "other":
            self.send("agent_run_finished", {"agent_name": "a", "agent_id": 1,
                                             "agent_execution_id": i}, op["deliver"], what)
            return f"#{i} agent run finished: " + "; ".join(what)
        name = op.get("name")
        t = m.t.get(name)
        if k == "create":
            if t is not None:
                return None
            tid = m.next_id
            m.next_id += 1
            self.api_ctl("PUT", f"/_fake/templates/{q(name)}",
                         {"id": tid, "versions": {"1": op["content"]}, "labels": {}})
            m.t[name] = t = {"id": tid, "versions": {1: op["content"]}, "labels": {}}
            m.id_names.setdefault(tid, set()).add(name)
            m.record(i, [name])
            self.send("prompt_template_created",
                      details(tid, name, prompt_template_version_number=1), op["deliver"], what)
            line = f"#{i} create {name!r} (id {tid}) with version 1"
        elif t is None:
            return None
        elif k == "add_version":
            n = max(t["versions"]) + 1
            self.api_ctl("POST", f"/_fake/templates/{q(name)}/versions",
                         {"version": n, "content": op["content"]})
            t["versions"][n] = op["content"]
            m.record(i, [name])
            self.send("prompt_template_version_created",
                      details(t["id"], name, prompt_template_version_number=n), op["deliver"], what)
            line = f"#{i} {name!r}: add version {n}"
        elif k == "update_version":
            n = Model.pick(op["vsel"], t["versions"])
            self.api_ctl("POST", f"/_fake/templates/{q(name)}/versions",
                         {"version": n, "content": op["content"]})
            t["versions"][n] = op["content"]
            self.send("prompt_template_updated",
                      details(t["id"], name, prompt_template_version_number=n), op["deliver"], what)
            line = f"#{i} {name!r}: snippet of version {n} changed"
        elif k in ("label_set", "approve_move"):
            lb = op["label"]
            n = Model.pick(op["vsel"], t["versions"])
            old = t["labels"].get(lb)
            if old == n or (k == "approve_move" and old is None):
                return None
            if k == "approve_move":
                self.send_change("requested", "move", t, name, lb, op, what)
            self.api_ctl("PUT", f"/_fake/templates/{q(name)}/labels/{q(lb)}", {"version": n})
            t["labels"][lb] = n
            m.record(i, [name])
            if k == "approve_move":
                self.send_change("approved", "move", t, name, lb, op, what)
                line = f"#{i} {name!r}: approved move of {lb} {old} -> {n}"
            elif old is None:
                self.send("prompt_template_label_created",
                          details(t["id"], name, prompt_template_version_number=n,
                                  prompt_template_label=lb), op["deliver"], what)
                line = f"#{i} {name!r}: create label {lb} -> {n}"
            else:
                self.send("prompt_template_label_moved",
                          details(t["id"], name, prompt_template_version_number=n,
                                  old_prompt_template_version_number=old, prompt_template_label=lb),
                          op["deliver"], what)
                line = f"#{i} {name!r}: move label {lb} {old} -> {n}"
        elif k in ("label_delete", "approve_delete"):
            lb = op["label"]
            old = t["labels"].get(lb)
            if old is None:
                return None
            if k == "approve_delete":
                self.send_change("requested", "deletion", t, name, lb, op, what)
            self.api_ctl("DELETE", f"/_fake/templates/{q(name)}/labels/{q(lb)}")
            del t["labels"][lb]
            m.record(i, [name])
            if k == "approve_delete":
                self.send_change("approved", "deletion", t, name, lb, op, what)
                line = f"#{i} {name!r}: approved deletion of label {lb} (was {old})"
            else:
                self.send("prompt_template_label_deleted",
                          details(t["id"], name, prompt_template_version_number=old,
                                  prompt_template_label=lb), op["deliver"], what)
                line = f"#{i} {name!r}: delete label {lb} (was {old})"
        elif k == "rename":
            new = op["new_name"]
            if new in m.t:
                return None
            self.api_ctl("POST", f"/_fake/templates/{q(name)}/rename", {"new_name": new})
            m.t[new] = m.t.pop(name)
            m.id_names[t["id"]].add(new)
            m.record(i, [name, new])
            self.send("prompt_template_name_changed",
                      {"prompt_template_id": t["id"], "prompt_template_name": new,
                       "old_prompt_template_name": name}, op["deliver"], what)
            line = f"#{i} rename {name!r} -> {new!r} (id {t['id']})"
        elif k == "delete":
            self.api_ctl("DELETE", f"/_fake/templates/{q(name)}")
            del m.t[name]
            m.record(i, [name])
            self.send("prompt_template_deleted", details(t["id"], name), op["deliver"], what)
            line = f"#{i} delete {name!r} (id {t['id']})"
        else:
            raise AssertionError(f"unknown op {k}")
        self.stats["edits"] += 1
        return line + ": " + "; ".join(what)

    # -- the run -------------------------------------------------------------------

    def run(self):
        try:
            self.start()
            for op in self.ops:
                line = self.do(op)
                if line is None:
                    self.stats["skipped"] += 1
                else:
                    self.replay.append(line)
                time.sleep(op["gap"])
            if not self.sched.drain(60):
                self.diverge("test", "deliveries and restarts not done within 60 s")
                return
            self.check_model()
            for d in self.receivers:
                if d.proc is not None and d.proc.poll() is not None:
                    self.diverge("receiver-exit", f"receiver {d.host} died (exit {d.proc.returncode}) "
                                                  f"without being killed:\n{d.log()[-2000:]}")
                    return
            self.api_ctl("DELETE", "/_fake/faults")
            if not self.quiesce(90 if self.long else 60):
                return
            self.check_group()
            lost = {ev for ev, (tid, _) in self.event_info.items()
                    if tid is not None and not self.delivered.get(ev)}
            self.stats["lost"] = len(lost)
            # Dead letters were "reconciled", which restores no uncached
            # version: their templates are left out like those of lost ones.
            self.check_cache("before sync", self.tainted(lost | self.dead_events()))
            before = self.dump()
            out1 = self.sync()
            after = self.dump()
            changes = diff(before, after)
            if not lost and changes:
                self.diverge("sync-changed",
                             f"no webhook was lost, yet the reconciliation changed {summary(changes)}; "
                             f"plcache sync said {out1}")
            self.check_cache("after sync", (set(), set()))
            out2 = self.sync()
            self.sync_out = [out1, out2]
            changes2 = diff(after, self.dump())
            if changes2 or (out2 and (out2.get("changed") or out2.get("removed"))):
                self.diverge("resync-changed",
                             f"a second reconciliation changed {summary(changes2)}; plcache sync said {out2}")
        except Exception as ex:  # noqa: BLE001 - a broken run is reported, with its seed
            import traceback
            self.diverge("run-error", "".join(traceback.format_exception(ex))[-3000:])
        finally:
            # What the reader saw is judged however far the run got.
            self.stop_reader.set()
            if getattr(self, "reader", None):
                self.reader.join(5)
                self.check_reader()
            self.close()

    def check_model(self):
        """The test's own model against the fake's state (a bug of the test)."""
        st = self.api_ctl("GET", "/_fake/state")
        got = {t["prompt_name"]: (t["id"], sorted(int(v) for v in t["versions"]), t["labels"])
               for t in st["templates"]}
        want = {n: (t["id"], sorted(t["versions"]), t["labels"]) for n, t in self.model.t.items()}
        if got != want:
            self.diverge("test-model", f"the test's model {want} != the fake's state {got}")

    def metrics_idle(self):
        for d in self.receivers:
            if not d.up:
                return False
            text = h.request(d.port, "GET", "/metrics", timeout=5)[2].decode()
            if h.metric_sum(text, "plcache_apply_jobs") != 0:
                return False
        return True

    def group_state(self):
        """(entries pending, entries never delivered to the group). The
        second is counted from the group's last-delivered-id, not its `lag`
        (a counter the appliers repair after trims, which can be off while
        every entry was read)."""
        pending = self.redis("XPENDING", "pl:events", GROUP)[0]
        groups = self.redis("XINFO", "GROUPS", "pl:events")
        g = [dict(zip([x.decode() if isinstance(x, bytes) else x for x in r[0::2]], r[1::2]))
             for r in groups]
        g = [x for x in g if x.get("name") == GROUP.encode()]
        if not g:
            return pending, None
        last = g[0]["last-delivered-id"].decode()
        ms, seq = last.split("-")
        after = f"{ms}-{int(seq) + 1}"
        unread = len(self.redis("XRANGE", "pl:events", after, "+", "COUNT", 100))
        return pending, unread

    def quiesce(self, timeout):
        last = [None]

        def quiet():
            pending, unread = self.group_state()
            if pending or unread:
                last[0] = None
                return False
            if self.e.api.control("GET", "/_fake/stats")["pending"]:
                return False
            if not self.metrics_idle():
                return False
            d = self.dump()
            ok = last[0] == d
            last[0] = d
            return ok
        try:
            h.wait_until(quiet, timeout, interval=0.5, what="quiescence")
            return True
        except AssertionError as ex:
            pending, unread = self.group_state()
            jobs = {}
            for d in self.receivers:
                try:
                    text = h.request(d.port, "GET", "/metrics", timeout=5)[2].decode()
                    jobs[d.host] = h.metric_sum(text, "plcache_apply_jobs")
                except OSError as err:
                    jobs[d.host] = f"up={d.up} {err!r}"
            self.diverge("quiescence",
                         f"not quiet after {timeout}s ({ex}): XPENDING {pending}, unread {unread}, "
                         f"pending entries {self.redis('XPENDING', 'pl:events', GROUP, '-', '+', 10)}, "
                         f"jobs by receiver {jobs}, API answers held "
                         f"{self.e.api.control('GET', '/_fake/stats')['pending']}")
            return False

    def check_group(self):
        pending, unread = self.group_state()
        if pending or unread:
            self.diverge("pending", f"XPENDING {pending}, {unread} entries never delivered to the "
                                    f"group, at quiescence")
        self.stats["dead_letters"] = self.redis("XLEN", "pl:events:dead")
        live = {d.host for d in self.receivers if d.up}
        cons = self.redis("XINFO", "CONSUMERS", "pl:events", GROUP)
        names = set()
        for r in cons:
            c = dict(zip([x.decode() for x in r[0::2]], r[1::2]))
            names.add(c["name"].decode())
        self.consumers = sorted(names)
        if names - live:
            self.diverge("stale-consumer", f"consumers {sorted(names)} but receivers {sorted(live)}")

    def dead_events(self):
        """Numbers of the events in pl:events:dead (by their timestamp and type)."""
        out = set()
        by_body = {}
        for ev, raw in self.raw.items():
            by_body[raw] = ev
        for _, fields in self.redis("XRANGE", "pl:events:dead", "-", "+"):
            d = {fields[j].decode(): fields[j + 1] for j in range(0, len(fields), 2)}
            ev = by_body.get(d.get("payload"))
            if ev is not None:
                out.add(ev)
        return out

    def tainted(self, lost):
        """(names, ids) a lost webhook may have left stale: closed over the
        names an id had and the ids a name had."""
        names, ids = set(), set()
        for ev in lost:
            tid, ns = self.event_info[ev]
            if tid is None:
                continue
            ids.add(tid)
            names |= ns
        changed = True
        while changed:
            changed = False
            for tid, ns in self.model.id_names.items():
                if tid in ids and not ns <= names:
                    names |= ns
                    changed = True
                if ns & names and tid not in ids:
                    ids.add(tid)
                    changed = True
        return names, ids

    # -- the cache against the API ----------------------------------------------------

    def api_get(self, name, **sel):
        sel["include_llm_kwargs"] = "true"
        st, _, b = h.request(self.e.api.port, "GET",
                             f"/prompt-templates/{q(name)}?" + urllib.parse.urlencode(sel),
                             headers={"X-API-KEY": self.e.api.api_key}, timeout=10)
        if st == 404:
            return None
        if st != 200:
            raise AssertionError(f"the fake answered {st} for {name} {sel}: {b[:200]!r}")
        return json.loads(b)

    def dump(self):
        out = {}
        for k in self.redis("KEYS", "pl:prompt:*"):
            name = k.decode()[len("pl:prompt:"):]
            r = self.redis("HGETALL", k)
            out[name] = {r[j].decode(): r[j + 1].decode() for j in range(0, len(r), 2)
                         if r[j] != b"gen"}
        r = self.redis("HGETALL", "pl:prompt-ids")
        out[" ids"] = {r[j].decode(): r[j + 1].decode() for j in range(0, len(r), 2)}
        return out

    def check_cache(self, when, taint):
        tnames, tids = taint
        cache = self.dump()
        ids = cache.pop(" ids")
        api = self.api_ctl("GET", "/_fake/state")["templates"]
        live = {t["prompt_name"]: t for t in api}
        live_ids = {str(t["id"]): t["prompt_name"] for t in api}
        full = when == "after sync"

        def fail(check, msg):
            self.diverge(check, f"{when}: {msg}")
        for name in sorted(set(cache) - set(live)):
            if name not in tnames:
                fail("stale-template", f"pl:prompt:{name} is cached, the API has no such template "
                                       f"(fields {sorted(cache[name])})")
        for name, t in sorted(live.items()):
            if name in tnames:
                continue
            c = cache.get(name)
            if c is None:
                fail("missing-template", f"{name!r} (id {t['id']}) is not cached")
                continue
            if c.get("id") != str(t["id"]):
                fail("id", f"{name!r}: cached id {c.get('id')}, the API's {t['id']}")
            want = {"latest": self.api_get(name)}
            for lb in t["labels"]:
                want[f"label:{lb}"] = self.api_get(name, label=lb)
            for v in t["versions"]:
                want[f"version:{int(v)}"] = self.api_get(name, version=int(v))
            for f in sorted(set(c) - {"id"}):
                if f.startswith("at:label:"):
                    continue  # the label's last applied event (README: the Redis contract)
                if not (f == "latest" or f.startswith("label:") or f.startswith("version:")):
                    fail("unknown-field", f"{name!r}: field {f}")
                elif f not in want:
                    fail("stale-field", f"{name!r}: {f} is cached (version "
                                        f"{vof(c[f])}), the API has none")
                elif json.loads(c[f]) != want[f]:
                    fail("content", f"{name!r} {f}: cached version {vof(c[f])} "
                                    f"({brief(json.loads(c[f]))}), the API answers version "
                                    f"{want[f].get('version')} ({brief(want[f])})")
            for f in sorted(set(want) - set(c)):
                if f.startswith("version:") and full:
                    continue  # sync refreshes cached versions only, by design
                msg = f"{name!r}: {f} is not cached (the API has version {want[f].get('version')})"
                if not full:
                    msg += "; every webhook about it was delivered"
                if f.startswith("version:"):
                    self.stats["version_misses"] += 1
                    self.log(f"# version miss (counted, not a failure): {msg}")
                    continue
                fail("missing-field", msg)
        for tid, name in sorted(ids.items()):
            if tid in live_ids:
                if live_ids[tid] != name:
                    fail("ids", f"pl:prompt-ids {tid} -> {name!r}, the API's name is {live_ids[tid]!r}")
            elif int(tid) not in tids:
                fail("ids", f"pl:prompt-ids {tid} -> {name!r}, the API has no template {tid}")
        for tid, name in sorted(live_ids.items()):
            if tid not in ids and int(tid) not in tids and name not in tnames:
                fail("missing-id", f"pl:prompt-ids has no {tid} (-> {name!r})")

    def sync(self):
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
        env.update({"PLCACHE_REDIS_URL": f"redis://127.0.0.1:{self.e.redis.port}/0",
                    "PROMPTLAYER_API_KEY": self.e.api.api_key,
                    "PROMPTLAYER_BASE_URL": self.e.api.url})
        p = subprocess.run([os.environ["PLCACHE_CLI_BIN"], "sync"], env=env, capture_output=True,
                           timeout=120)
        if p.returncode != 0:
            self.diverge("sync-failed", f"plcache sync exited {p.returncode}: {p.stderr[-500:]!r}")
        try:
            return json.loads(p.stdout)
        except ValueError:
            return None


def vof(text):
    """The version of a cached template's JSON (or the text itself, e.g. an id)."""
    try:
        return json.loads(text).get("version")
    except (ValueError, AttributeError):
        return text


def brief(obj):
    try:
        return repr(obj["prompt_template"]["content"][0]["text"])
    except (KeyError, IndexError, TypeError):
        return "?"


def diff(a, b):
    out = []
    for name in sorted(set(a) | set(b)):
        fa, fb = a.get(name, {}), b.get(name, {})
        for f in sorted(set(fa) | set(fb)):
            if fa.get(f) != fb.get(f):
                out.append((name, f, vof(fa[f]) if f in fa else None, vof(fb[f]) if f in fb else None))
    return out


def summary(changes):
    if not changes:
        return "nothing"
    return ", ".join(f"{n!r} {f}: {a} -> {b}" for n, f, a, b in changes[:12]) + \
        (f" (+{len(changes) - 12} more)" if len(changes) > 12 else "")


# -- shrinking ---------------------------------------------------------------------

def run_ops(seed, ops, long_mode, log):
    r = Run(seed, ops, long_mode, log)
    r.run()
    TOTALS["runs"] += 1
    return r


# Checks a shrinking run may meet by the way: their messages are shown.
RARE = {"quiescence", "pending", "stale-consumer", "receiver-exit", "run-error", "delivery",
        "test-model", "test", "sync-failed", "reader-json"}


def shrink(seed, ops, checks, budget, long_mode, log):
    """The shortest sub-history (prefix first, then ddmin) that still fails
    one of `checks`, within `budget` seconds; returns (ops, run)."""
    deadline = time.monotonic() + budget
    best, best_run = ops, None
    tried = 0

    def fails(cand):
        nonlocal tried
        tried += 1
        r = run_ops(seed, cand, long_mode, log)
        got = {c for c, _ in r.divergences}
        log(f"# shrink seed {seed}: {len(cand)} ops -> {sorted(got) or 'pass'}")
        for c, m in r.divergences:
            if c not in checks and c in RARE:
                log(f"#   [{c}] {m[:1500]}")
        return (got & checks) and r

    # Shortest failing prefix (binary search, failures taken as monotonic).
    lo, hi = 1, len(ops)
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi) // 2
        r = fails(ops[:mid])
        if r:
            hi, best, best_run = mid, ops[:mid], r
        else:
            lo = mid + 1
    # ddmin on what is left.
    n = 2
    while len(best) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(best) // n)
        reduced = False
        for start in range(0, len(best), chunk):
            if time.monotonic() >= deadline:
                break
            cand = best[:start] + best[start + chunk:]
            if not cand:
                continue
            r = fails(cand)
            if r:
                best, best_run, n, reduced = cand, r, max(n - 1, 2), True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(best), n * 2)
    return best, best_run, tried


# -- the tests ---------------------------------------------------------------------------

def settings():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seeds", type=int)
    p.add_argument("--edits", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--ops")
    p.add_argument("--shrink-budget", type=float)
    a, rest = p.parse_known_args()
    sys.argv = sys.argv[:1] + rest
    long_mode = os.environ.get("CONVERGE_LONG") == "1" or a.seeds is not None or a.edits is not None
    n_seeds = a.seeds or int(os.environ.get("CONVERGE_SEEDS", 0)) or (20 if long_mode else len(SHORT_SEEDS))
    edits = a.edits or int(os.environ.get("CONVERGE_EDITS", 0)) or (150 if long_mode else 45)
    seed = a.seed if a.seed is not None else os.environ.get("CONVERGE_SEED")
    if seed is not None:
        seeds = [int(seed)]
    elif long_mode:
        base = int(time.time()) % 100000 * 1000
        seeds = [base + k for k in range(n_seeds)]
    else:
        seeds = list(SHORT_SEEDS[:n_seeds])
    ops = a.ops or os.environ.get("CONVERGE_OPS")
    budget = a.shrink_budget if a.shrink_budget is not None else \
        float(os.environ.get("CONVERGE_SHRINK_BUDGET", 240 if long_mode else 90))
    return {"long": long_mode, "seeds": seeds, "edits": edits,
            "ops": [int(x) for x in ops.split(",")] if ops else None, "budget": budget}


CFG = None


def log(line):
    print(line, flush=True)


class Converge(unittest.TestCase):
    shrink_tried = False

    def run_seed(self, seed):
        cfg = CFG
        ops = gen_history(seed, cfg["edits"], kills=2 if not cfg["long"] else 4,
                          redis_restarts=1 if not cfg["long"] else 2)
        if cfg["ops"] is not None:
            ops = [op for op in ops if op["i"] in set(cfg["ops"])]
        r = run_ops(seed, ops, cfg["long"], log)
        TOTALS["histories"] += 1
        for k in r.stats:
            if k in TOTALS:
                TOTALS[k] += r.stats[k]
        for k, v in r.fault_kinds.items():
            FAULT_KINDS[k] = FAULT_KINDS.get(k, 0) + v
        TOTALS["divergences"] += len(r.divergences)
        for c in {c for c, _ in r.divergences}:
            CHECK_COUNTS.setdefault(c, [0, 0])[1] += 1
        for c, _ in r.divergences:
            CHECK_COUNTS[c][0] += 1
        log(f"# seed {seed}: {r.stats['edits']} edits, {r.stats['events']} events, "
            f"{r.stats['deliveries']} deliveries ({r.stats['duplicates']} extra, "
            f"{r.stats['delayed']} delayed, {r.stats['lost']} events lost), "
            f"{r.stats['faults']} faults {r.fault_kinds}, {r.stats['kills']} kills, "
            f"{r.stats['redis_restarts']} redis restarts, {r.stats['dead_letters']} dead letters, "
            f"{r.stats['version_misses']} version misses, {r.stats['observations']} reads, consumers {r.consumers}; plcache sync said {r.sync_out}; "
            f"{len(r.divergences)} divergences"
            f"{' (receivers share one host name: unshare --uts failed)' if not UTS else ''}")
        if not r.divergences:
            return
        TOTALS["failing_seeds"] += 1
        checks = {c for c, _ in r.divergences}
        lines = [f"seed {seed}: {len(r.divergences)} divergences, checks failed: {sorted(checks)}"]
        for c, m in r.divergences[:15]:
            lines.append(f"  [{c}] {m}")
        shown_ops, shown_run, note = ops, r, "the whole history (not shrunk)"
        budget = cfg["budget"]
        # Shrunk: in short mode the first failing history only; in long mode
        # each history that fails a check no earlier one was shrunk for.
        keep = checks - {"run-error", "test-model", "test", "receiver-exit"} - SHRUNK
        if budget > 0 and len(ops) > 1 and keep and (cfg["long"] or not Converge.shrink_tried):
            Converge.shrink_tried = True
            small, small_run, tried = shrink(seed, ops, keep, budget, cfg["long"], log)
            # A check is shrunk once: when reproduced, or when no shorter
            # history failed it within the budget.
            SHRUNK.update(keep & {c for c, _ in small_run.divergences} if small_run else keep)
            if small_run is not None:
                shown_ops, shown_run = small, small_run
                note = (f"shrunk from {len(ops)} to {len(small)} ops in {tried} runs "
                        f"(within {budget:.0f}s); it failed {sorted({c for c, _ in small_run.divergences})}")
                for c, m in small_run.divergences[:8]:
                    note += f"\n  [{c}] {m}"
            else:
                note += f"; no shorter failing history found in {tried} runs"
        lines.append(f"shortest failing history: {note}")
        lines += ["  " + ln for ln in shown_run.replay]
        idx = ",".join(str(op["i"]) for op in shown_ops)
        repro = (f"CONVERGE_SEED={seed} CONVERGE_EDITS={cfg['edits']}"
                 + (" CONVERGE_LONG=1" if cfg["long"] else "")
                 + (f" CONVERGE_OPS={idx}" if len(shown_ops) != len(ops) or cfg["ops"] else "")
                 + " CONVERGE_SHRINK_BUDGET=0 python3 tests/system/test_converge.py"
                 + "  (real processes: timing varies, a run may need repeating)")
        lines.append("reproduce: " + repro)
        FAILURES.append((seed, sorted(checks), repro))
        self.fail("\n".join(lines))


def _add_tests():
    for s in CFG["seeds"]:
        setattr(Converge, f"test_seed_{s}", lambda self, s=s: self.run_seed(s))


def _totals():
    fk = ", ".join(f"{k} {v}" for k, v in sorted(FAULT_KINDS.items()))
    print(f"# converge totals: histories {TOTALS['histories']}, runs {TOTALS['runs']} "
          f"(with shrinking), edits {TOTALS['edits']}, events {TOTALS['events']}, deliveries "
          f"{TOTALS['deliveries']} ({TOTALS['duplicates']} duplicates, {TOTALS['delayed']} delayed, "
          f"{TOTALS['lost']} events lost), faults {TOTALS['faults']} ({fk}), kills {TOTALS['kills']}, "
          f"redis restarts {TOTALS['redis_restarts']}, dead letters {TOTALS['dead_letters']}, "
          f"version misses {TOTALS['version_misses']}, reads {TOTALS['observations']}, divergences {TOTALS['divergences']} in "
          f"{TOTALS['failing_seeds']} of {TOTALS['histories']} histories", flush=True)
    if CHECK_COUNTS:
        print("# divergences by check: " + ", ".join(
            f"{c} {n} in {k} histories" for c, (n, k) in sorted(CHECK_COUNTS.items())), flush=True)
    for seed, checks, repro in FAILURES:
        print(f"# failing seed {seed}: {checks}", flush=True)


if __name__ == "__main__":
    CFG = settings()
    _add_tests()
    import atexit
    atexit.register(_totals)
    h.main()
