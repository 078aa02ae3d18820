"""test_replicas.py -- PLCACHE_MIN_REPLICAS against a real primary and replica.

DESIGN.md section 2: with PLCACHE_MIN_REPLICAS=N the receiver answers 200 and
the worker counts a job done only once N replicas hold the write (Redis
WAIT). A replica stopped with SIGSTOP keeps its link open but acknowledges
nothing, which is what a lagging or partitioned replica looks like to WAIT.
Every wait is bounded; the stopped replica is always continued and stopped
by PID.
"""
import os
import signal
import time
import unittest

import harness as h

SECRET = "whsec_test_secret"
DONE = 'plcache_worker_jobs_total{result="done"}'
EVENTS_KEY = "pl:events"


def start_replica(tmp, primary):
    """A redis-server replicating `primary`, in its own folder; waits until
    the primary counts it as an online replica."""
    d = os.path.join(tmp, f"replica-{primary.port}")
    os.makedirs(d, exist_ok=True)
    rep = h.RedisServer(d, ["--replicaof", "127.0.0.1", str(primary.port)]).start()

    def online():
        c = primary.client()
        try:
            info = c("INFO", "replication").decode()
        finally:
            c.close()
        return "connected_slaves:1" in info and "state=online" in info
    h.wait_until(online, 15, what="the replica online")
    return rep


def rcmd(server, *args):
    c = server.client()
    try:
        return c(*args)
    finally:
        c.close()


class Paused:
    """SIGSTOPs a process for the duration of a block; always continues it."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.proc.pid, signal.SIGCONT)
        return False


class ReceiverWaitsForReplicas(unittest.TestCase):
    def setUp(self):
        self.e = h.WebhookEnv(secret=SECRET, PLCACHE_MIN_REPLICAS=1, PLCACHE_REDIS_TIMEOUT=2)
        self.addCleanup(self.e.close)
        self.rep = start_replica(self.e.tmp.path, self.e.redis)
        self.addCleanup(self.rep.stop)
        self.e.start()

    def test_event_answered_200_is_already_on_the_replica(self):
        st, _, body = self.e.post(h.event(prompt_template_name="R1"))
        self.assertEqual(st, 200, body)
        self.assertEqual(rcmd(self.rep, "XLEN", EVENTS_KEY), 1)

    def test_stopped_replica_gets_503_with_retry_after_and_the_event_stays_recorded(self):
        ev = h.event(prompt_template_name="R2")
        with Paused(self.rep.proc):
            t0 = time.monotonic()
            st, hdrs, body = self.e.post(ev, timeout=15)
            took = time.monotonic() - t0
            self.assertEqual(st, 503, body)
            self.assertIn("retry-after", {k.lower() for k in hdrs}, hdrs)
            # WAIT lasts half of PLCACHE_REDIS_TIMEOUT (1 s) per try.
            self.assertLess(took, 4.0)
            self.assertEqual(rcmd(self.e.redis, "XLEN", EVENTS_KEY), 1)
            self.assertGreaterEqual(
                h.metric_sum(self.e.get("/metrics")[2].decode(),
                             "plcache_redis_wait_failures_total"), 1)
            self.assertEqual(self.e.get("/readyz")[0], 200)
        # The sender's retry is a duplicate, answered 200 once replicated.
        def retried():
            st, _, body = self.e.post(ev, timeout=15)
            return st == 200 and body
        body = h.wait_until(retried, 20, interval=0.2, what="the retry answered 200")
        self.assertTrue(body.get("duplicate"), body)
        h.wait_until(lambda: rcmd(self.rep, "XLEN", EVENTS_KEY) == 1, 10,
                     what="the event on the replica")
        self.assertEqual(rcmd(self.e.redis, "XLEN", EVENTS_KEY), 1)


class WorkerWaitsForReplicas(unittest.TestCase):
    def setUp(self):
        self.e = h.WorkerEnv(PLCACHE_MIN_REPLICAS=1, PLCACHE_REDIS_TIMEOUT=2)
        self.addCleanup(self.e.close)
        self.rep = start_replica(self.e.tmp.path, self.e.redis)
        self.addCleanup(self.rep.stop)
        self.e.start()

    def test_jobs_done_only_once_the_replica_holds_the_update(self):
        ids = [f"j{i}" for i in range(20)]
        with Paused(self.rep.proc):
            self.e.push(*[h.log_request(u) for u in ids])
            # Forwarded, but the finishing writes are not replicated: nothing
            # counts as done, the updates are kept to be written again, and
            # no more than 1.25 x the concurrency (8) is left unconfirmed:
            # the other jobs wait, taken or queued, instead of piling up.
            h.wait_until(lambda: len(self.e.delivered()) >= 10, 30, what="10 jobs forwarded")
            time.sleep(2.5)
            self.assertEqual(len(self.e.delivered()), 10)
            self.assertEqual(self.e.metric(DONE), 0)
            self.assertEqual(self.e.metric("plcache_worker_unconfirmed"), 10)
            self.assertGreaterEqual(self.e.metric("plcache_redis_wait_failures_total"), 1)
        h.wait_until(lambda: self.e.metric(DONE) == len(ids), 20, interval=0.1,
                     what="every job done once the replica is back")
        self.assertEqual(self.e.metric("plcache_worker_unconfirmed"), 0)
        self.e.wait_settled(10)
        self.assertEqual(rcmd(self.rep, "LLEN", "pl:track:processing:w1"), 0)
        # Each job forwarded once: the finishing writes were replayed, not the jobs.
        self.assertEqual(set(self.e.delivered().values()), {1})

    def test_without_a_replica_problem_jobs_finish_as_usual(self):
        ids = [f"k{i}" for i in range(50)]
        self.e.push(*[h.log_request(u) for u in ids])
        self.e.wait_delivered(ids, timeout=30)
        h.wait_until(lambda: self.e.metric(DONE) == len(ids), 15, what="all done")
        self.e.wait_settled(10)
        self.assertEqual(self.e.metric("plcache_redis_wait_failures_total"), 0)


if __name__ == "__main__":
    h.main()
