#!/usr/bin/env python3
"""test_jobs.py -- log jobs PromptLayer accepts, end to end.

Every log job the README, `plcache help track`, scripts/run's example file and
the C example show is checked by `plcache track`, pushed, and delivered by the
real plcache-worker to the fake PromptLayer API, which refuses (422) what
PromptLayer's Log Request schema refuses. `plcache track` refuses each kind of
invalid job and pushes nothing; a job pushed without the check that the API
refuses is dead-lettered with the API's reason. The Python and Node helpers
(src/python/plcache.py, src/node) build jobs the fake accepts. Finally, a
seeded corpus of valid and mutated jobs goes through core/logreq (the check
producers run) and through the fake's POST /log-request: the producers' check
must never accept what the API refuses.
"""
import json
import os
import random
import re
import subprocess
import sys
import unittest

import harness as h

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("PLCACHE_CLI_BIN", "")
FILTER = os.environ.get("LOGREQ_FILTER_BIN", "")
EXAMPLE = os.environ.get("EXAMPLE_LOG_JOB_BIN", "")

sys.path.insert(0, os.path.join(ROOT, "src", "python"))
import plcache  # noqa: E402  (src/python/plcache.py, the helper under test)


def readme_jobs():
    """The JSON blocks the README marks as log jobs (<!-- job --> before a
    ```json fence), parsed, in order."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"<!-- job -->\s*```json\n(.*?)\n```", text, re.S)
    return [json.loads(b) for b in blocks]


def help_job():
    """The example job of `plcache help track` (between the heredoc lines)."""
    out = subprocess.run([CLI, "help", "track"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"plcache track - <<'EOF'\n(.*?)\n\s*EOF", out, re.S)
    if m is None:
        raise AssertionError("plcache help track shows no example job")
    return json.loads(m.group(1))


def calls_of(job):
    """API calls a job makes when all goes well."""
    return 1 + len(job.get("then", [])) if "endpoint" in job else 1


# -- the LLM exchanges the helpers are fed: shaped as the providers' SDKs
# return them (their model_dump()) ---------------------------------------------

OPENAI_CASES = [
    ({"model": "gpt-4o", "temperature": 0.2, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"}]},
     {"id": "c1", "model": "gpt-4o-2024-08-06", "choices": [
         {"index": 0, "message": {"role": "assistant", "content": "Hello."}}],
      "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
    ({"model": "gpt-4o", "tool_choice": "auto",
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
                                                  "parameters": {"type": "object"}}}],
      "messages": [
          {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
          {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                       {"type": "image_url",
                                        "image_url": {"url": "https://x/p.png", "detail": "low"}},
                                       {"type": "input_audio", "input_audio": {"data": "AA=="}}]},
          {"role": "assistant", "content": None, "tool_calls": [
              {"id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
          {"role": "tool", "tool_call_id": "call_1", "content": "{\"t\": 21}"}]},
     {"model": "gpt-4o", "choices": [{"message": {
         "role": "assistant", "content": None, "refusal": None, "tool_calls": [
             {"id": "call_2", "type": "function",
              "function": {"name": "get_weather", "arguments": "{}"}}]}}]}),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x", "name": "ada"}]},
     {"model": "gpt-4o-mini", "choices": [{"message": {"role": "assistant", "content": None,
                                                      "refusal": "I can't."}}]}),
    ({"model": "gpt-4o", "messages": []}, {"choices": []}),
]

ANTHROPIC_CASES = [
    ({"model": "claude-sonnet-4-20250514", "max_tokens": 512, "system": "Be brief.",
      "messages": [{"role": "user", "content": "Hi"}]},
     {"id": "m1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
      "content": [{"type": "text", "text": "Hello."}],
      "usage": {"input_tokens": 8, "output_tokens": 2}}),
    ({"model": "claude-sonnet-4-20250514", "max_tokens": 1024,
      "system": [{"type": "text", "text": "You use tools."}],
      "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
      "messages": [
          {"role": "user", "content": [
              {"type": "text", "text": "Find it"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}}]},
          {"role": "assistant", "content": [
              {"type": "thinking", "thinking": "need lookup", "signature": "sig"},
              {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"q": "it"}}]},
          {"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "tu_1",
               "content": [{"type": "text", "text": "found"}]}]}]},
     {"model": "claude-sonnet-4-20250514", "content": [
         {"type": "text", "text": "Here."},
         {"type": "tool_use", "id": "tu_2", "name": "lookup", "input": {}}],
      "usage": {"input_tokens": 50, "output_tokens": 9}}),
]


class JobsCase(unittest.TestCase):
    """redis-server + the fake API + plcache-worker."""

    def setUp(self):
        for name, path in (("PLCACHE_CLI_BIN", CLI), ("LOGREQ_FILTER_BIN", FILTER),
                           ("EXAMPLE_LOG_JOB_BIN", EXAMPLE)):
            if not path or not os.path.exists(path):
                raise RuntimeError(f"{name}={path!r}: no such program (run through meson test)")
        self.e = h.WorkerEnv()
        self.addCleanup(self.e.close)
        self.e.start()

    # -- helpers --------------------------------------------------------------

    def settings(self):
        return dict(os.environ, PLCACHE_REDIS_URL=self.e.env["PLCACHE_REDIS_URL"])

    def track(self, job_text):
        """Runs `plcache track -` with job_text on stdin; (status, stdout, stderr)."""
        p = subprocess.run([CLI, "track", "-"], input=job_text, capture_output=True, text=True,
                           env=self.settings(), timeout=30)
        return p.returncode, p.stdout, p.stderr

    def api_post(self, path, body):
        """POSTs a body to the fake API as the worker would; (status, answer)."""
        text = body if isinstance(body, str) else json.dumps(body)
        st, _, ans = h.request(self.e.api.port, "POST", path, text.encode(),
                               headers={"X-API-KEY": self.e.api.api_key,
                                        "Content-Type": "application/json"})
        return st, ans

    def assertDelivered(self, jobs):
        """Every job was answered 2xx, none died."""
        want = sum(calls_of(j) for j in jobs)
        h.wait_until(lambda: len(self.e.ok_records()) >= want and self.e.settled(), 30,
                     what=f"{want} calls answered 2xx")
        self.assertEqual(self.e.dead(), [])
        self.assertEqual(len(self.e.ok_records()), want)

    # -- the examples ---------------------------------------------------------

    def test_every_example_job_is_checked_pushed_and_delivered(self):
        jobs = readme_jobs()
        self.assertGreaterEqual(len(jobs), 2, "the README's job examples lost their markers")
        jobs.append(help_job())
        with open(os.path.join(ROOT, "scripts", "examples", "job.json"), encoding="utf-8") as f:
            jobs.append(json.load(f))
        example = subprocess.run([EXAMPLE, "--print"], capture_output=True, text=True, check=True)
        jobs.append(json.loads(example.stdout))
        for i, job in enumerate(jobs):
            rc, out, err = self.track(json.dumps(job))
            self.assertEqual(rc, 0, f"example {i} refused: {err}")
            self.assertTrue(out.strip().isdigit(), out)  # the queue's length
        self.assertDelivered(jobs)
        # scripts/run points at the example file this test delivered.
        with open(os.path.join(ROOT, "scripts", "run"), encoding="utf-8") as f:
            self.assertIn("track scripts/examples/job.json", f.read())
        # No unmarked job example is left in the README (old raw LPUSH lines).
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertNotIn("LPUSH pl:track '{", readme)
        self.assertNotIn('"kwargs": {...}', readme)

    def test_the_c_example_pushes_a_job_that_is_delivered(self):
        p = subprocess.run([EXAMPLE], capture_output=True, text=True, env=self.settings(),
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "1")
        self.assertDelivered([{}])
        body = json.loads(self.e.ok_records("/log-request")[0]["body"])
        self.assertEqual(body["input"]["messages"][1]["content"],
                         [{"type": "text", "text": "Tell me about plcache."}])

    # -- refusals -------------------------------------------------------------

    def test_track_refuses_each_kind_of_invalid_job_and_pushes_nothing(self):
        good = readme_jobs()[0]

        def without(key):
            return {k: v for k, v in good.items() if k != key}

        def with_(**kv):
            return dict(good, **kv)
        chat = {"type": "chat", "messages": [{"role": "user", "content": "Hi"}]}
        cases = [
            ("not json", "not a JSON object"),
            ("[1, 2]", "is not a JSON object"),
            (json.dumps({"function_name": "openai.chat.completions.create", "kwargs": {}}),
             "provider: is required"),
            (json.dumps(without("model")), "model: is required"),
            (json.dumps(without("output")), "output: is required"),
            (json.dumps(without("request_end_time")), "request_end_time: is required"),
            (json.dumps(with_(output={"role": "assistant", "content": "text"})),
             "output.type: is required"),
            (json.dumps(with_(input=chat)),
             "input.messages[0].content: must be a list of content blocks, not a string"),
            (json.dumps(with_(score=101)), "score: must be from 0 to 100"),
            (json.dumps(with_(status="OK")), "status: must be one of"),
            (json.dumps(with_(metadata={"n": 1})), "metadata.<key>: values must be strings"),
            (json.dumps(with_(tags=["x" * 513])), "tags[0]: must be at most 512 characters"),
            (json.dumps(with_(request_start_time="yesterday")), "request_start_time: must be"),
            (json.dumps({"endpoint": "/rest/track-score", "body": {"score": 90}}),
             "body.request_id: is required"),
            (json.dumps({"endpoint": "/%2e%2e/%2e%2e/admin", "body": {}}),
             "endpoint: is not an API path"),
            (json.dumps({"endpoint": "/log-request", "body": good,
                         "then": [{"endpoint": "/rest/track-score", "body": {"score": "A"}}]}),
             "then[0].body.score: must be an integer"),
        ]
        for text, says in cases:
            with self.subTest(says=says):
                rc, out, err = self.track(text)
                self.assertEqual(rc, 2, err)
                self.assertEqual(out, "")
                self.assertIn(says, err)
                self.assertEqual(err.count("\n"), 1, err)  # one line
        self.assertEqual(self.e.r("LLEN", self.e.key("track")), 0)
        self.assertEqual(self.e.records("/log-request"), [])

    def test_a_refused_job_is_dead_lettered_with_the_api_reason(self):
        # An app that LPUSHes by hand skips the producers' check.
        job = dict(readme_jobs()[0], uid="by-hand")
        job["input"] = {"type": "chat", "messages": [{"role": "user", "content": "plain"}]}
        self.e.push(job)
        h.wait_until(lambda: self.e.dead(), 15, what="the job dead-lettered")
        dead = self.e.dead()
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["status"], 422)
        self.assertEqual(dead[0]["job"], job)
        self.assertTrue(dead[0]["error"].startswith("HTTP 422: "), dead[0])
        self.assertIn("input.messages.0.content", dead[0]["error"])
        # ... and `plcache dlq list` tells what to fix.
        p = subprocess.run([CLI, "dlq", "list"], capture_output=True, text=True,
                           env=self.settings(), timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("input.messages.0.content", json.loads(p.stdout.splitlines()[0])["error"])

    # -- the helpers ----------------------------------------------------------

    def helper_jobs(self):
        jobs = [plcache.log_request_from_openai(req, resp, 1764669600.25, 1764669601.5,
                                                prompt_name="Hello", prompt_version_number=2,
                                                tags=["t"], metadata={"user": "u1"},
                                                prompt_input_variables={"q": 1}, score=80)
                for req, resp in OPENAI_CASES]
        jobs += [plcache.log_request_from_anthropic(req, resp, 1764669600, 1764669602,
                                                    status="WARNING",
                                                    error_type="PROVIDER_RATE_LIMIT")
                 for req, resp in ANTHROPIC_CASES]
        return jobs

    def test_python_helper_builds_jobs_promptlayer_accepts(self):
        jobs = self.helper_jobs()
        for i, job in enumerate(jobs):
            st, ans = self.api_post("/log-request", job)
            self.assertEqual(st, 201, f"job {i}: {ans!r}\n{json.dumps(job)}")
        self.e.api.control("DELETE", "/_fake/requests")  # count the worker's calls only
        for i, job in enumerate(jobs):
            rc, _, err = self.track(json.dumps(job))
            self.assertEqual(rc, 0, f"job {i}: {err}")
        self.assertDelivered(jobs)
        first = jobs[1]
        self.assertEqual(first["input"]["messages"][2]["tool_calls"][0]["function"]["name"],
                         "get_weather")
        self.assertEqual(first["input"]["messages"][3],
                         {"role": "tool", "tool_call_id": "call_1",
                          "content": [{"type": "text", "text": "{\"t\": 21}"}]})
        self.assertEqual(jobs[0]["parameters"], {"temperature": 0.2})
        self.assertEqual((jobs[0]["input_tokens"], jobs[0]["output_tokens"]), (9, 2))
        self.assertEqual(jobs[0]["request_start_time"], "2025-12-02T10:00:00.250000Z")
        self.assertEqual(jobs[4]["input"]["messages"][0]["role"], "system")
        self.assertEqual(jobs[5]["input"]["messages"][3]["role"], "tool")
        with self.assertRaises(TypeError):
            plcache.log_request_from_openai(*OPENAI_CASES[0], 0, 1, metadata={"n": 1})

    def test_node_helper_builds_jobs_promptlayer_accepts(self):
        script = (
            "const p = require(process.argv[1]);"
            "const cases = JSON.parse(process.argv[2]);"
            "for (const [req, resp] of cases.openai)"
            "  console.log(JSON.stringify(p.logRequestFromOpenAI(req, resp, 1764669600250,"
            "    new Date(1764669601500), {promptName: 'Hello', tags: ['t'],"
            "    metadata: {user: 'u1'}, score: 80})));"
            "for (const [req, resp] of cases.anthropic)"
            "  console.log(JSON.stringify(p.logRequestFromAnthropic(req, resp,"
            "    '2026-12-02T10:00:00Z', 1764669601500, {status: 'ERROR',"
            "    error_type: 'PROVIDER_ERROR', error_message: 'boom'})));"
            "try { p.logRequestFromOpenAI(cases.openai[0][0], cases.openai[0][1], 0, 1,"
            "  {metadata: {n: 1}}); console.log('no error'); }"
            "catch (e) { console.log(e instanceof TypeError ? 'TypeError' : 'other'); }")
        cases = json.dumps({"openai": OPENAI_CASES, "anthropic": ANTHROPIC_CASES})
        p = subprocess.run(["node", "-e", script, os.path.join(ROOT, "src", "node"), cases],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[-1], "TypeError")
        jobs = [json.loads(x) for x in lines[:-1]]
        self.assertEqual(len(jobs), len(OPENAI_CASES) + len(ANTHROPIC_CASES))
        for i, job in enumerate(jobs):
            st, ans = self.api_post("/log-request", job)
            self.assertEqual(st, 201, f"job {i}: {ans!r}\n{json.dumps(job)}")
        # The two helpers agree on the same exchange (times aside).
        py = self.helper_jobs()
        for a, b in zip(jobs, py):
            for k in ("input", "output", "model", "provider", "parameters"):
                self.assertEqual(a[k], b[k], k)

    # -- the producers' check against the API ----------------------------------

    def test_producers_never_accept_what_the_api_refuses(self):
        rng = random.Random(12)
        bases = self.helper_jobs() + [j for j in readme_jobs() if "endpoint" not in j]
        corpus = [json.dumps(b) for b in bases]
        for _ in range(1500):
            corpus.append(json.dumps(mutate(rng, json.loads(rng.choice(corpus[:len(bases)])))))
        p = subprocess.run([FILTER], input="\n".join(corpus) + "\n", capture_output=True,
                           text=True, timeout=60, check=True)
        verdicts = p.stdout.splitlines()
        self.assertEqual(len(verdicts), len(corpus))
        accepted_refused, refused_accepted, agree = [], [], 0
        for text, v in zip(corpus, verdicts):
            st, ans = self.api_post("/log-request", text)
            self.assertIn(st, (201, 422), ans)
            ours = v == "1"
            if ours and st != 201:
                accepted_refused.append((text, ans))
            elif not ours and st == 201:
                refused_accepted.append((text, v))
            else:
                agree += 1
        print(f"# {len(corpus)} jobs: {agree} same verdict, {len(accepted_refused)} accepted here "
              f"but refused by the API, {len(refused_accepted)} refused here but accepted")
        self.assertEqual(accepted_refused[:3], [])
        self.assertEqual(refused_accepted[:3], [])


# -- mutations of a valid job, each a way apps get jobs wrong ------------------

WRONG_VALUES = [None, "", "x", 0, -1, 1.5, True, [], {}, ["a"], {"k": "v"}]
TIMES = ["2026-12-02T10:00:00Z", "2026-12-02T10:00:00.123456+02:00", "2026-12-02 10:00:00",
         "2026-12-02T10:00", "2026-13-02T10:00:00", "2026-02-30T10:00:00", "yesterday", "",
         1764669600, 1764669600123, -5, 0.5]
BLOCK_TYPES = ["text", "thinking", "image_url", "media", "media_variable", "output_media",
               "input_text", "tool_use", "", None, "code", "server_tool_use"]
ROLES = ["system", "user", "assistant", "tool", "function", "placeholder", "developer",
         "model", "", None]


def paths(o, prefix=()):
    """Every (path, value) in a JSON value."""
    yield prefix, o
    if isinstance(o, dict):
        for k, v in o.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from paths(v, prefix + (i,))


def set_at(o, path, value):
    for p in path[:-1]:
        o = o[p]
    o[path[-1]] = value


def mutate(rng, job):
    all_paths = [p for p, _ in paths(job) if p]
    kind = rng.randrange(9)
    path = rng.choice(all_paths)
    parent = job
    for p in path[:-1]:
        parent = parent[p]
    if kind == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif kind == 1:
        set_at(job, path, rng.choice(WRONG_VALUES))
    elif kind == 2:
        job[rng.choice(["score", "input_tokens", "output_tokens", "prompt_version_number",
                        "price", "prompt_id"])] = rng.choice([-1, 0, 1, 100, 101, 2.5, "7", None])
    elif kind == 3:
        job[rng.choice(["request_start_time", "request_end_time"])] = rng.choice(TIMES)
    elif kind == 4:
        blocks = [p for p, v in paths(job) if p and p[-1] == "type" and len(p) > 3]
        if blocks:
            set_at(job, rng.choice(blocks), rng.choice(BLOCK_TYPES))
    elif kind == 5:
        roles = [p for p, v in paths(job) if p and p[-1] == "role"]
        if roles:
            set_at(job, rng.choice(roles), rng.choice(ROLES))
    elif kind == 6:
        job[rng.choice(["status", "error_type"])] = rng.choice(
            ["SUCCESS", "WARNING", "ERROR", "OK", "error", None, "PROVIDER_TIMEOUT",
             "UNKNOWN_ERROR", "TIMEOUT"])
    elif kind == 7:
        job[rng.choice(["metadata", "tags", "parameters", "prompt_input_variables"])] = rng.choice(
            [{"a": "b"}, {"a": 1}, {"k" * 1025: "v"}, ["t"], ["t" * 513], [1], "x", None, {}])
    else:
        contents = [p for p, v in paths(job) if p and p[-1] == "content"]
        if contents:
            set_at(job, rng.choice(contents), rng.choice(["plain", None, [], [{}], [{"text": "t"}],
                                                          [{"type": "text", "text": 5}]]))
    return job


if __name__ == "__main__":
    h.main()
