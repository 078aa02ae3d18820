#!/usr/bin/env python3
"""test_run.py -- scripts/run as a newcomer uses it, and plcache beside it.

- plcache run in another shell with no setting at all finds the run's
  private Redis (and its fake API) through the pointer file scripts/run
  writes, says so on stderr, and stops finding it once the run is gone;
- the line scripts/run prints (`set -a; . <state>/plcache.env; set +a`) sets
  the same settings in a shell;
- plcache trusts a pointer file only when it is this user's alone and its run
  is alive (the same pid with the same start time);
- Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the
  daemons first and waits for their drain: the worker returns the jobs it
  holds to pl:track (they are in Redis's append-only file once Redis stopped),
  never "could not return"; then redis-server and the fake API stop too.

scripts/run uses the build under test (PLCACHE_BUILD_DIR, from meson), its
state in a temp folder (PLCACHE_STATE_DIR), its pointer in a temp
XDG_RUNTIME_DIR, and loopback ports that were free.
"""
import json
import os
import re
import signal
import subprocess
import time
import unittest

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RUN = os.path.join(ROOT, "scripts", "run")
CLI = os.environ.get("PLCACHE_CLI_BIN", "")
BUILD = os.environ.get("PLCACHE_BUILD_ROOT", "")


def clean_env(**extra):
    """The environment of a fresh shell: no plcache or PromptLayer setting."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PLCACHE_") or k.startswith("PROMPTLAYER_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli(env, *args, timeout=60):
    p = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def proc_start(pid):
    """Field 22 of /proc/<pid>/stat: the process's start time."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def pids_mentioning(text):
    """Processes whose command line holds text (this test's state folder)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


class Run:
    """scripts/run in its own process group, as a terminal's foreground job."""

    def __init__(self, **settings):
        self.tmp = h.TempDir("plcache-run-test-")
        self.state = os.path.join(self.tmp.path, "state")
        self.xdg = os.path.join(self.tmp.path, "xdg")
        os.mkdir(self.xdg, 0o700)
        self.listen = f"127.0.0.1:{h.free_port()}"
        self.env = clean_env(PLCACHE_STATE_DIR=self.state, PLCACHE_BUILD_DIR=BUILD,
                             XDG_RUNTIME_DIR=self.xdg, PLCACHE_LISTEN=self.listen,
                             PLCACHE_METRICS_LISTEN=f"127.0.0.1:{h.free_port()}", **settings)
        self.out_path = os.path.join(self.tmp.path, "run.out")
        self.proc = None

    def start(self):
        if not BUILD or not os.path.isdir(BUILD):
            raise RuntimeError(f"PLCACHE_BUILD_ROOT={BUILD!r}: run through meson test")
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(["bash", RUN], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.tmp.path)
        h.wait_until(lambda: self.proc.poll() is not None or (
            "plcache-worker started" in self.out() and "plcache-webhook listening" in self.out()
            and os.path.exists(self.pointer)), 60, interval=0.1, what="scripts/run to start")
        if self.proc.poll() is not None:
            raise AssertionError(f"scripts/run exited {self.proc.returncode}:\n{self.out()}")
        port = int(re.search(r":(\d+)/", self.settings()["PLCACHE_REDIS_URL"]).group(1))

        def heartbeat():
            c = h.RedisClient(port)
            try:
                return c("ZCARD", "pl:track:workers") == 1
            finally:
                c.close()
        h.wait_until(heartbeat, 20, interval=0.1, what="the run's worker's first heartbeat")
        return self

    @property
    def pointer(self):
        return os.path.join(self.xdg, "plcache-run.env")

    def out(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def settings(self):
        """The run's settings file, as {name: value} (values unquoted)."""
        out = {}
        with open(os.path.join(self.state, "plcache.env")) as f:
            for line in f:
                m = re.fullmatch(r"([A-Z_]+)='?([^']*)'?\n", line)
                if m:
                    out[m.group(1)] = m.group(2)
        return out

    def ctrl_c(self, timeout=90):
        """SIGINT to the whole process group, as a terminal's Ctrl-C; waits for the run to end."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            ps = subprocess.run(["ps", "-o", "pid,ppid,pgid,stat,wchan:24,args",
                                 "--ppid", str(self.proc.pid), "-g", str(self.proc.pid)],
                                capture_output=True, text=True).stdout
            raise AssertionError(f"scripts/run still running {timeout}s after Ctrl-C:\n{ps}\n"
                                 f"{self.out()}") from None

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # redis-server and the fake API run in sessions of their own: whatever
        # of this run is left is found by its state folder, and stopped by pid.
        for pid in pids_mentioning(self.state):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.tmp.cleanup()


class Discovery(unittest.TestCase):
    def setUp(self):
        self.run_ = Run().start()

    def tearDown(self):
        self.run_.close()

    def test_plcache_without_settings_uses_the_redis_of_the_run_and_says_so(self):
        r = self.run_
        env = clean_env(XDG_RUNTIME_DIR=r.xdg)
        rc, out, err = cli(env, "stats")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)["workers"]), 1, out)
        self.assertRegex(err, rf"^plcache: using the Redis of scripts/run \(pid {r.proc.pid}\): "
                              rf"127\.0\.0\.1:\d+/0 \(from {re.escape(r.pointer)};")
        self.assertEqual(len(err.splitlines()), 1, err)
        # Its fake API too: sync needs a key and finds the fake's.
        rc, out, err = cli(env, "sync")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["templates"], 1)
        rc, out, _ = cli(env, "ls", "--json")
        self.assertEqual(rc, 0)
        self.assertEqual([t["name"] for t in json.loads(out)], ["Hello"])
        # A setting given wins, and then nothing is said.
        rc, _, err = cli(clean_env(XDG_RUNTIME_DIR=r.xdg, PLCACHE_REDIS_URL="redis://127.0.0.1:1/0",
                                   PLCACHE_REDIS_TIMEOUT=1), "stats")
        self.assertEqual(rc, 1)
        self.assertNotIn("scripts/run (pid", err)
        self.assertIn("127.0.0.1:1", err)
        self.assertIn("PLCACHE_REDIS_URL", err)  # what to do next
        rc, _, err = cli(env, "--redis-url", "redis://127.0.0.1:1/0", "--redis-timeout", "1",
                         "stats")
        self.assertEqual(rc, 1)
        self.assertNotIn("scripts/run (pid", err)

    def test_the_printed_line_sets_the_settings_in_a_shell(self):
        r = self.run_
        envfile = os.path.join(r.state, "plcache.env")
        self.assertIn(f"set -a; . {envfile}; set +a", r.out())
        self.assertEqual(os.stat(envfile).st_mode & 0o077, 0)
        # With the pointer out of sight: the shell's settings alone.
        empty = os.path.join(r.tmp.path, "empty")
        os.mkdir(empty, 0o700)
        p = subprocess.run(["bash", "-c", f'set -a; . "{envfile}"; set +a; exec "{CLI}" stats'],
                           env=clean_env(XDG_RUNTIME_DIR=empty), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.assertEqual(len(json.loads(p.stdout)["workers"]), 1)
        s = r.settings()
        self.assertEqual(s["PLCACHE_RUN_PID"], str(r.proc.pid))
        self.assertEqual(s["PROMPTLAYER_API_KEY"], "fake-key")

    def test_once_the_run_stopped_plcache_no_longer_finds_it(self):
        r = self.run_
        self.assertEqual(r.ctrl_c(), 130, r.out())
        self.assertFalse(os.path.exists(r.pointer))
        self.assertFalse(os.path.exists(os.path.join(r.state, "plcache.env")))
        # Without a setting, the default again (whatever answers there, if anything).
        rc, _, err = cli(clean_env(XDG_RUNTIME_DIR=r.xdg, PLCACHE_REDIS_TIMEOUT=1), "stats")
        self.assertNotIn("scripts/run (pid", err)
        if rc != 0:
            self.assertIn("127.0.0.1:6379", err)


    def test_sigterm_to_the_script_alone_stops_everything_in_order(self):
        r = self.run_
        os.kill(r.proc.pid, signal.SIGTERM)  # as a service manager would, not the terminal
        self.assertEqual(r.proc.wait(timeout=90), 143, r.out())
        out = r.out()
        self.assertLess(out.index("stopping the daemons"), out.index('"plcache-worker stopped"'))
        self.assertFalse(os.path.exists(r.pointer))
        h.wait_until(lambda: pids_mentioning(r.state) == [], 10, what="the run's processes to end")


class PointerTrust(unittest.TestCase):
    """plcache's reading of the pointer file, without a run: the test's own
    process plays the live run."""

    def setUp(self):
        self.tmp = h.TempDir("plcache-pointer-test-")
        self.redis = h.RedisServer(self.tmp.path).start()
        self.xdg = os.path.join(self.tmp.path, "xdg")
        os.mkdir(self.xdg, 0o700)
        self.pointer = os.path.join(self.xdg, "plcache-run.env")

    def tearDown(self):
        self.redis.stop()
        self.tmp.cleanup()

    def write(self, pid=None, start=None, mode=0o600, prefix="run:"):
        pid = pid or os.getpid()
        start = proc_start(os.getpid()) if start is None else start
        with open(self.pointer, "w") as f:
            f.write(f"# test\nPLCACHE_REDIS_URL='redis://127.0.0.1:{self.redis.port}/0'\n"
                    f"PLCACHE_PREFIX='{prefix}'\nPLCACHE_RUN_PID={pid}\nPLCACHE_RUN_START={start}\n")
        os.chmod(self.pointer, mode)

    def stats(self, **extra):
        return cli(clean_env(XDG_RUNTIME_DIR=self.xdg, PLCACHE_REDIS_TIMEOUT=1,
                             **extra), "stats", "--json")

    def test_a_live_run_of_this_user_is_used_with_its_prefix(self):
        c = self.redis.client()
        c("LPUSH", "run:track", "{}", "{}")
        c.close()
        self.write()
        rc, out, err = self.stats()
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["track"]["queued"], 2)
        self.assertIn(f"(pid {os.getpid()})", err)
        # A prefix given wins over the run's.
        rc, out, err = self.stats(PLCACHE_PREFIX="pl:")
        self.assertEqual((rc, json.loads(out)["track"]["queued"]), (0, 0), err)

    def test_a_file_others_may_write_is_not_used(self):
        self.write(mode=0o620)
        rc, _, err = self.stats()
        self.assertIn("not yours alone", err)
        self.assertNotIn("using the Redis of scripts/run", err)

    def test_a_dead_or_reused_pid_is_not_used(self):
        p = subprocess.Popen(["true"])
        p.wait()
        for pid, start in ((p.pid, 0), (os.getpid(), proc_start(os.getpid()) + 1)):
            with self.subTest(pid=pid):
                self.write(pid=pid, start=start)
                rc, _, err = self.stats()
                self.assertNotIn("scripts/run (pid", err)
                if rc != 0:  # the default, as without a file (unless a Redis answers there)
                    self.assertIn("127.0.0.1:6379", err)

    def test_a_symbolic_link_is_not_followed(self):
        self.write()
        os.rename(self.pointer, self.pointer + ".real")
        os.symlink(self.pointer + ".real", self.pointer)
        rc, _, err = self.stats()
        self.assertNotIn("using the Redis of scripts/run", err)


class CtrlC(unittest.TestCase):
    def setUp(self):
        self.run_ = Run(PLCACHE_SHUTDOWN_TIMEOUT=2).start()

    def tearDown(self):
        self.run_.close()

    def test_ctrl_c_drains_the_worker_before_redis_stops(self):
        r = self.run_
        env = clean_env(XDG_RUNTIME_DIR=r.xdg, PLCACHE_LOG_LEVEL="error")
        with open(os.path.join(r.state, "fake-api.port")) as f:
            api_port = int(f.read())
        # The fake API answers only after 60 s: the worker holds every job.
        st, _, body = h.request(api_port, "PUT", "/_fake/config", json.dumps({"delay_ms": 60000}),
                                headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200, body)
        for i in range(3):
            p = subprocess.run([CLI, "track", "-"], input=json.dumps(h.log_request(uid=f"job{i}")),
                               env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)

        def held():
            rc, out, _ = cli(env, "stats", "--json")
            return rc == 0 and sum(json.loads(out)["track"]["processing"].values()) == 3
        h.wait_until(held, 20, interval=0.2, what="the worker to hold the 3 jobs")
        redis_url = r.settings()["PLCACHE_REDIS_URL"]
        t0 = time.monotonic()
        self.assertEqual(r.ctrl_c(), 130, r.out())
        self.assertLess(time.monotonic() - t0, 60)
        out = r.out()
        self.assertNotIn("could not return", out)
        self.assertRegex(out, r'msg="returned unfinished jobs to pl:track" count=3')
        self.assertIn('msg="plcache-worker stopped"', out)
        self.assertIn('msg="plcache-webhook stopped"', out)
        # Nothing of the run is left: not the daemons, not Redis, not the fake API.
        h.wait_until(lambda: pids_mentioning(r.state) == [], 10, what="the run's processes to end")
        # The jobs are back in pl:track, in what Redis wrote before it stopped.
        port = int(re.search(r":(\d+)/", redis_url).group(1))
        with self.assertRaises(OSError):
            h.RedisClient(port)("PING")
        redis = h.RedisServer(os.path.join(r.state, "redis"), extra=["--appendonly", "yes"]).start()
        try:
            c = redis.client()
            jobs = [json.loads(j) for j in c("LRANGE", "pl:track", "0", "-1")]
            self.assertEqual(sorted(j["uid"] for j in jobs), ["job0", "job1", "job2"])
            self.assertEqual(c("KEYS", "pl:track:processing:*"), [])
            c.close()
        finally:
            redis.stop()


if __name__ == "__main__":
    h.main()
