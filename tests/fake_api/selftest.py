#!/usr/bin/env python3
"""selftest.py -- checks fake-promptlayer itself, so the system tests can trust it.

Usage: selftest.py PATH/TO/fake-promptlayer. Starts the fake on a free port
(--port-file) with a fixture and an API key, drives every endpoint, every
validation rule (README.md, "The API side") and every fault kind over HTTP,
stops it with SIGTERM and checks it exits 0. A few more fakes are started
briefly for the command-line flags. Prints TAP.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

CHAT_V1 = {"type": "chat", "messages": [
    {"role": "system", "content": [{"type": "text", "text": "You are {role}."}]},
    {"role": "user", "content": [{"type": "text", "text": "Hi {name}"}]}]}
FIXTURE = {
    "templates": [
        {"id": 12, "prompt_name": "Hello",
         "versions": {"1": {"prompt_template": CHAT_V1, "commit_message": "first"},
                      "2": {"prompt_template": {"type": "completion",
                                                "content": [{"type": "text", "text": "hi"}]},
                            "tags": ["t"], "id": 999, "extra": {"k": 1}}},
         "labels": {"prod": 1}},
        {"id": 3, "prompt_name": "with space/slash", "versions": {"1": {}}},
        {"id": 7, "prompt_name": "NoVersions"},
    ]
}
KEY = "test-key"
DEFAULT_TEMPLATE = {"type": "completion", "content": [], "input_variables": [],
                    "template_format": "f-string"}
BLOCK_TAGS = ("'text', 'thinking', 'code', 'image_url', 'media', 'media_variable', "
              "'output_media', 'server_tool_use', 'web_search_tool_result', "
              "'code_execution_result', 'mcp_list_tools', 'mcp_call', 'mcp_approval_request', "
              "'mcp_approval_response', 'bash_code_execution_tool_result', "
              "'text_editor_code_execution_tool_result', 'shell_call', 'shell_call_output', "
              "'apply_patch_call', 'apply_patch_call_output'")
ROLE_TAGS = "'system', 'user', 'developer', 'assistant', 'function', 'tool', 'placeholder'"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

results = []


def check(name, cond, detail=""):
    results.append((bool(cond), name, detail))


def errs(d):
    """A 422 body's detail as (type, loc, msg) tuples."""
    try:
        return [(e["type"], e["loc"], e["msg"]) for e in d["detail"]]
    except (TypeError, KeyError):
        return d


def text(t):
    return {"type": "text", "text": t}


def msg(role, *texts, **extra):
    return {"role": role, "content": [text(t) for t in texts], **extra}


def log_request(**over):
    """A valid Log Request (https://docs.promptlayer.com/reference/log-request)."""
    body = {"provider": "openai", "model": "gpt-4o",
            "input": {"type": "chat", "messages": [msg("user", "Hello!")]},
            "output": {"type": "chat", "messages": [msg("assistant", "Hi there!")]},
            "request_start_time": "2024-01-15T10:30:00Z",
            "request_end_time": "2024-01-15T10:30:05Z"}
    body.update(over)
    return body


def without(d, key):
    return {k: v for k, v in d.items() if k != key}


def span(name="llm_call", span_id="a1b2", **over):
    s = {"name": name, "context": {"trace_id": "t1", "span_id": span_id, "trace_state": ""},
         "kind": "SpanKind.CLIENT", "start_time": 1700000000000000000,
         "end_time": 1700000001000000000, "status": {"status_code": "StatusCode.OK"},
         "attributes": {}, "resource": {"attributes": {}, "schema_url": ""}}
    s.update(over)
    return s


class Fake:
    def __init__(self, binary, tmp, args=(), fixture=FIXTURE, name="main"):
        self.port_file = os.path.join(tmp, f"port-{name}")
        path = os.path.join(tmp, f"fixture-{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fixture, f)
        self.stderr = open(os.path.join(tmp, f"stderr-{name}.log"), "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
             "--fixture", path, "--api-key", KEY, *args],
            stderr=self.stderr)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(self.port_file):
                with open(self.port_file, encoding="utf-8") as f:
                    self.port = int(f.read())
            elif self.proc.poll() is not None:
                break
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

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body, {"Content-Type": "application/json"}, **kw)

    def ctl(self, method, path, body=None):
        return self.req(method, "/_fake" + path, body, key=None)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        fake = Fake(binary, tmp)
        try:
            run_checks(fake)
            flag_checks(binary, tmp)
        finally:
            t0 = time.monotonic()
            rc = fake.stop()
            check("SIGTERM with a delayed answer pending exits 0 promptly",
                  rc == 0 and time.monotonic() - t0 < 5, f"rc={rc}")
            check("the port file is removed at exit", not os.path.exists(fake.port_file))
            fake.stderr.seek(0)
            log = fake.stderr.read()
            check("one log line per request, no bodies",
                  "msg=request method=POST path=/log-request status=201" in log
                  and "secret-body-text" not in log, log[-500:])
            reports = [n for n in os.listdir(tmp) if n.startswith("stderr-")
                       and any(w in open(os.path.join(tmp, n), encoding="utf-8", errors="replace").read()
                               for w in ("Sanitizer", "runtime error:"))]
            check("no sanitizer report from any fake started", reports == [], reports)
    print(f"1..{len(results)}")
    for i, (ok, name, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        if not ok and detail:
            for line in str(detail).splitlines()[:20]:
                print(f"# {line}")
    return 0 if all(ok for ok, _, _ in results) else 1


def run_checks(f):
    reads(f)
    query_parameters(f)
    listing(f)
    template_validation(f)
    snippets(f)
    llm_kwargs(f)
    post_template(f)
    tracking(f)
    log_request_refusals(f)
    log_request_acceptance(f)
    other_tracking_endpoints(f)
    records_and_control(f)
    faults_and_delays(f)


# -- GET /prompt-templates/<identifier> ------------------------------------------

def labels(f):
    s, _, d = f.req("GET", "/prompt-templates/Hello/labels")
    items = d.get("release_labels") if isinstance(d, dict) else None
    check("GET .../labels lists every release label with the version it points at",
          s == 200 and isinstance(items, list)
          and {i["release_label"]: i["prompt_version_number"] for i in items} == {"prod": 1}
          and all(set(i) == {"prompt_version_id", "prompt_version_number", "release_label",
                             "release_label_id"} for i in items), d)
    s2, _, d2 = f.req("GET", "/prompt-templates/12/labels")
    check("... by id too", s2 == 200 and d2 == d, d2)
    s, _, d = f.req("GET", "/prompt-templates/Nope/labels")
    check("... 404 for an unknown template", s == 404 and "message" in d, d)
    s, _, d = f.req("GET", "/prompt-templates/Hello/labels", key=None)
    check("... 401 without the key", s == 401, d)


def reads(f):
    labels(f)
    s, _, d = f.req("GET", "/prompt-templates/Hello", key=None)
    check("a request without the API key gets 401", s == 401 and d == {"message": "Invalid API key"}, d)
    s, _, d = f.req("GET", "/prompt-templates/Hello")
    want_keys = ["success", "id", "prompt_name", "version", "workspace_id", "prompt_template",
                 "metadata", "commit_message", "tags", "created_at", "snippets", "llm_kwargs"]
    check("latest version by name, with the raw endpoint's fields",
          s == 200 and list(d)[:len(want_keys)] == want_keys and d["success"] is True
          and d["version"] == 2 and d["id"] == 12 and d["prompt_name"] == "Hello"
          and d["workspace_id"] == 1 and d["tags"] == ["t"] and d["snippets"] == []
          and d["metadata"] is None and d["llm_kwargs"] is None and d["extra"] == {"k": 1}
          and d["prompt_template"] == {"type": "completion", "content": [text("hi")]}, d)
    check("created_at is the ISO 8601 UTC time the version was written",
          ISO_UTC.match(d.get("created_at") or "") is not None, d.get("created_at"))
    s, _, d = f.req("GET", "/prompt-templates/12?label=prod")
    check("by id and label", s == 200 and d["version"] == 1 and d["commit_message"] == "first"
          and d["prompt_template"] == CHAT_V1, d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=1")
    check("by version", s == 200 and d["version"] == 1, d)
    s, _, d = f.req("GET", "/prompt-templates/with%20space%2Fslash")
    check("names are URL-decoded; a version without prompt_template gets the default",
          s == 200 and d["id"] == 3 and d["prompt_template"] == DEFAULT_TEMPLATE, d)
    missing = [f.req("GET", p)[0] for p in ("/prompt-templates/Nope", "/prompt-templates/Hello?version=9",
                                             "/prompt-templates/Hello?label=nope",
                                             "/prompt-templates/NoVersions")]
    check("missing template, version, label answer 404", missing == [404] * 4, missing)
    s, _, d = f.req("GET", "/nothing/here")
    check("another GET path answers 404", s == 404, d)


def query_parameters(f):
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=0")
    check("version=0 is 422 greater_than at query.version",
          s == 422 and errs(d) == [("greater_than", ["query", "version"], "Input should be greater than 0")], d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=abc")
    check("version=abc is 422 int_parsing",
          s == 422 and errs(d) == [("int_parsing", ["query", "version"],
                                    "Input should be a valid integer, unable to parse string as an integer")], d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=-3&include_llm_kwargs=maybe&resolve_snippets=2")
    check("every query error is reported, in parameter order",
          s == 422 and [(t, l) for t, l, _ in errs(d)] == [
              ("greater_than", ["query", "version"]), ("bool_parsing", ["query", "resolve_snippets"]),
              ("bool_parsing", ["query", "include_llm_kwargs"])]
          and errs(d)[1][2] == "Input should be a valid boolean, unable to interpret input", d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?version=1&label=prod")
    check("version and label together answer 400", s == 400, d)
    words = ["true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n",
             "TRUE", "False", "YES", "Off", "T", "N"]
    got = [f.req("GET", f"/prompt-templates/Hello?resolve_snippets={w}&include_llm_kwargs={w}")[0]
           for w in words]
    check("booleans are read as FastAPI does (true/false, 1/0, yes/no, on/off, t/f, y/n, any case)",
          got == [200] * len(words), list(zip(words, got)))
    bad = [f.req("GET", f"/prompt-templates/Hello?include_llm_kwargs={w}")[0]
           for w in ("", "2", "truth", "nope", "tru")]
    check("anything else is 422 bool_parsing", bad == [422] * 5, bad)
    s, _, d = f.req("GET", "/prompt-templates/Hello?whatever=1&page=x&label=prod")
    check("unknown query parameters are ignored", s == 200 and d["version"] == 1, d)
    s, _, d = f.req("GET", "/prompt-templates/Hello?include_llm_kwargs=false")
    check("llm_kwargs is null unless include_llm_kwargs=true", s == 200 and d["llm_kwargs"] is None, d)


def listing(f):
    s, _, d = f.req("GET", "/prompt-templates?page=1&per_page=1")
    check("listing page 1: newest (highest id) first, with per_page",
          s == 200 and [i["id"] for i in d["items"]] == [12] and d["pages"] == 2
          and d["per_page"] == 1 and d["total"] == 2 and d["has_next"] and not d["has_prev"]
          and d["next_num"] == 2 and d["prev_num"] is None, d)
    s, _, d = f.req("GET", "/prompt-templates?page=2&per_page=1")
    check("listing page 2", s == 200 and [i["id"] for i in d["items"]] == [3]
          and not d["has_next"] and d["prev_num"] == 1, d)
    s, _, d = f.req("GET", "/prompt-templates")
    check("listing items are the latest versions, llm_kwargs null, shaped as the raw GET",
          s == 200 and d["per_page"] == 30 and [(i["id"], i["version"]) for i in d["items"]] == [(12, 2), (3, 1)]
          and all(i["llm_kwargs"] is None and "snippets" in i and "created_at" in i for i in d["items"]), d)
    s, _, d = f.req("GET", "/prompt-templates?label=prod")
    check("the label filter keeps templates with that label, at its version",
          s == 200 and [(i["id"], i["version"]) for i in d["items"]] == [(12, 1)] and d["total"] == 1, d)
    s, _, d = f.req("GET", "/prompt-templates?name=SPACE")
    s2, _, d2 = f.req("GET", "/prompt-templates?name=l")
    check("the name filter is a case-insensitive substring",
          s == 200 and [i["id"] for i in d["items"]] == [3]
          and [i["id"] for i in d2["items"]] == [12, 3], (d, d2))
    s, _, d = f.req("GET", "/prompt-templates?label=nope&name=hello")
    check("filters combine; no match is an empty page", s == 200 and d["items"] == [] and d["total"] == 0, d)
    bad = [f.req("GET", f"/prompt-templates?{q}")[0] for q in ("page=0", "per_page=x")]
    check("a bad page or per_page answers 400", bad == [400, 400], bad)


# -- templates written through the control API --------------------------------------

def template_validation(f):
    bad_contents = [
        {"prompt_template": {"x": 1}},
        {"prompt_template": {"type": "chat", "messages": [{"role": "user", "content": "plain"}]}},
        {"prompt_template": {"type": "completion"}},
        {"prompt_template": None},
        {"metadata": {"model": {"name": "gpt-4o"}}},
        {"metadata": {"model": {"provider": "openai", "name": "gpt-4o", "parameters": []}}},
    ]
    before = f.ctl("GET", "/state")[2]
    got = [f.ctl("PUT", "/templates/Hello", {"versions": {"1": c}})[0] for c in bad_contents]
    got += [f.ctl("POST", "/templates/Hello/versions", {"content": c})[0] for c in bad_contents]
    s, _, d = f.ctl("POST", "/templates/Hello/versions", {"content": bad_contents[1]})
    after = f.ctl("GET", "/state")[2]
    check("invalid version content is refused with 400 and changes nothing",
          got == [400] * 12 and after == before, got)
    check("the refusal says what is wrong",
          s == 400 and "messages.0.content" in d["message"] and "valid list" in d["message"], d)
    s, _, d = f.ctl("PUT", "/state", {"templates": [{"id": 1, "prompt_name": "A",
                                                    "versions": {"1": {"prompt_template": {"x": 1}}}}]})
    check("PUT /_fake/state with an invalid version is refused", s == 400 and f.ctl("GET", "/state")[2] == before, d)
    ok = {"prompt_template": {"type": "chat", "messages": []},
          "metadata": {"model": {"provider": "x", "name": "y"}, "other": 1}}
    s, _, _ = f.ctl("PUT", "/templates/Valid", {"versions": {"1": ok, "2": {"created_at": "2020-01-01T00:00:00Z"}}})
    s2, _, d2 = f.req("GET", "/prompt-templates/Valid?version=1")
    s3, _, d3 = f.req("GET", "/prompt-templates/Valid?version=2")
    check("a valid version is taken; created_at comes from the content when it gives one",
          (s, s2, s3) == (200, 200, 200) and d2["metadata"] == ok["metadata"]
          and ISO_UTC.match(d2["created_at"]) and d3["created_at"] == "2020-01-01T00:00:00Z"
          and d3["prompt_template"] == DEFAULT_TEMPLATE, (d2, d3))
    f.ctl("DELETE", "/templates/Valid")


def snippets(f):
    def comp(t):
        return {"prompt_template": {"type": "completion", "content": [text(t)]}}
    f.ctl("PUT", "/templates/tone", {"versions": {"1": comp("calm"), "2": comp("brisk @@@sig@@@")},
                                     "labels": {"prod": 1}})
    f.ctl("PUT", "/templates/sig", {"versions": {"1": comp("-- the team")}})
    f.ctl("PUT", "/templates/loop", {"versions": {"1": comp("again @@@loop@@@")}})
    f.ctl("PUT", "/templates/chatty", {"versions": {"1": {"prompt_template": {"type": "chat", "messages": []}}}})
    parent = {"type": "chat", "messages": [
        msg("system", "Be @@@tone@@@. Or @@@tone@label:prod@@@, or @@@tone@version_number:1@@@."),
        msg("user", "@@@missing@@@ @@@chatty@@@ @@@loop@@@ @@@tone@@@")]}
    f.ctl("PUT", "/templates/parent", {"versions": {"1": {"prompt_template": parent}}})
    s, _, d = f.req("GET", "/prompt-templates/parent")
    texts = [m["content"][0]["text"] for m in d["prompt_template"]["messages"]] if s == 200 else d
    check("snippets are expanded by default, recursively (latest, label, version_number)",
          s == 200 and texts[0] == "Be brisk -- the team. Or calm, or calm.", texts)
    check("a missing snippet, a chat template and a cycle are left as written",
          s == 200 and texts[1] == "@@@missing@@@ @@@chatty@@@ again @@@loop@@@ brisk -- the team", texts)
    want = [{"prompt_name": "tone", "version": 2, "label": None},
            {"prompt_name": "tone", "version": 1, "label": "prod"},
            {"prompt_name": "tone", "version": 1, "label": None},
            {"prompt_name": "chatty", "version": 1, "label": None},
            {"prompt_name": "loop", "version": 1, "label": None}]
    check("snippets lists the direct references that exist, once each", s == 200 and d["snippets"] == want, d.get("snippets"))
    s, _, d = f.req("GET", "/prompt-templates/parent?resolve_snippets=false")
    check("resolve_snippets=false keeps the references, and still lists them",
          s == 200 and d["prompt_template"] == parent and d["snippets"] == want, d)
    s, _, d = f.req("GET", "/prompt-templates/tone")
    check("a snippet's own references expand too", s == 200 and d["prompt_template"]["content"][0]["text"]
          == "brisk -- the team" and d["snippets"] == [{"prompt_name": "sig", "version": 1, "label": None}], d)
    for n in ("tone", "sig", "loop", "chatty", "parent"):
        f.ctl("DELETE", f"/templates/{n}")


# -- include_llm_kwargs -----------------------------------------------------------

KW_TEMPLATES = {
    "oa-chat": {"prompt_template": {
        "type": "chat",
        "messages": [msg("system", "You are ", "{role}."), msg("developer", "Be brief."),
                     {"role": "user", "content": [text("Hi {name}"),
                                                  {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
                     {"role": "assistant", "content": [], "tool_calls": [
                         {"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\": \"NYC\"}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": [text("sunny")]},
                     {"role": "placeholder", "name": "history"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "auto"},
        "metadata": {"model": {"provider": "openai", "name": "gpt-4o",
                               "parameters": {"temperature": 0.2, "max_tokens": 256}}}},
    "oa-completion": {"prompt_template": {"type": "completion", "content": [text("Say "), text("{x}")]},
                      "metadata": {"model": {"provider": "openai.azure", "name": "gpt-35", "parameters": {"top_p": 1}}}},
    "an-chat": {"prompt_template": {
        "type": "chat", "messages": [msg("system", "Rule one."), msg("system", "Rule two."),
                                     msg("user", "Hi {name}"), msg("assistant", "Hello")]},
        "metadata": {"model": {"provider": "anthropic", "name": "claude-3-7-sonnet",
                               "parameters": {"temperature": 1}}}},
    "an-completion": {"prompt_template": {"type": "completion", "content": [text("Tell {x}")]},
                      "metadata": {"model": {"provider": "anthropic", "name": "claude-2",
                                             "parameters": {"max_tokens": 50}}}},
    "no-model": {"prompt_template": {"type": "completion", "content": [text("x")]}},
    "other-provider": {"prompt_template": {"type": "completion", "content": [text("x")]},
                       "metadata": {"model": {"provider": "google", "name": "gemini"}}},
}


def llm_kwargs(f):
    for name, content in KW_TEMPLATES.items():
        f.ctl("PUT", f"/templates/{name}", {"versions": {"1": content}})

    def kw(name, q="include_llm_kwargs=true"):
        s, _, d = f.req("GET", f"/prompt-templates/{name}?{q}")
        return d.get("llm_kwargs", d) if s == 200 else (s, d)

    got = kw("oa-chat")
    check("openai chat llm_kwargs: model, messages, parameters at the top, tools",
          got == {"model": "gpt-4o",
                  "messages": [{"role": "system", "content": "You are {role}."},
                               {"role": "developer", "content": "Be brief."},
                               {"role": "user", "content": [{"type": "text", "text": "Hi {name}"},
                                                            {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
                               {"role": "assistant", "content": None, "tool_calls": [
                                   {"id": "call_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": "{\"city\": \"NYC\"}"}}]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
                  "temperature": 0.2, "max_tokens": 256,
                  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                              "parameters": {"type": "object"}}}],
                  "tool_choice": "auto"}, got)
    got = kw("oa-completion")
    check("openai(.azure) completion llm_kwargs: model, prompt, parameters",
          got == {"model": "gpt-35", "prompt": "Say {x}", "top_p": 1}, got)
    got = kw("an-chat")
    check("anthropic chat llm_kwargs: max_tokens default 1024, system, user/assistant blocks",
          got == {"model": "claude-3-7-sonnet", "max_tokens": 1024, "temperature": 1,
                  "system": "Rule one.\n\nRule two.",
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi {name}"}]},
                               {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}]}, got)
    got = kw("an-completion")
    check("anthropic completion llm_kwargs: Human/Assistant prompt",
          got == {"model": "claude-2", "max_tokens_to_sample": 50,
                  "prompt": "\n\nHuman: Tell {x}\n\nAssistant:"}, got)
    check("llm_kwargs use the snippet-resolved template, unrendered",
          kw("oa-chat", "include_llm_kwargs=true&resolve_snippets=false")["messages"][0]["content"]
          == "You are {role}.")
    check("no metadata.model, or another provider: llm_kwargs null by default",
          kw("no-model") is None and kw("other-provider") is None)

    s, _, d = f.ctl("PUT", "/config", {"llm_kwargs_without_model": "refuse"})
    s2, _, d2 = f.req("GET", "/prompt-templates/no-model?include_llm_kwargs=true")
    s3, _, d3 = f.req("GET", "/prompt-templates/other-provider?include_llm_kwargs=1")
    s4, _, d4 = f.req("GET", "/prompt-templates/no-model")
    s5, _, d5 = f.req("GET", "/prompt-templates/oa-completion?include_llm_kwargs=true")
    f.ctl("PUT", "/config", {"llm_kwargs_without_model": "null"})
    check("llm_kwargs_without_model=refuse: 400 {success: false, message}, only when asked",
          s == 200 and d["llm_kwargs_without_model"] == "refuse" and s2 == 400 and s3 == 400
          and d2["success"] is False and isinstance(d2["message"], str) and s4 == 200 and s5 == 200,
          (d, d2, d3, d4))

    s, _, d = f.ctl("PUT", "/config", {"include_llm_kwargs": "refuse"})
    s2, _, d2 = f.req("GET", "/prompt-templates/oa-chat?include_llm_kwargs=true")
    s3, _, d3 = f.req("GET", "/prompt-templates/oa-chat?include_llm_kwargs=false")
    s4, _, d4 = f.req("GET", "/prompt-templates/oa-chat")
    f.ctl("PUT", "/config", {"include_llm_kwargs": "accept"})
    check("include_llm_kwargs=refuse: 422 naming query.include_llm_kwargs, only when the flag is true",
          s == 200 and d["include_llm_kwargs"] == "refuse" and s2 == 422
          and [e["loc"] for e in d2["detail"]] == [["query", "include_llm_kwargs"]]
          and s3 == 200 and s4 == 200, (d, d2))
    s, _, d = f.ctl("GET", "/config")
    check("GET /_fake/config reports every setting",
          d == {"api_key": KEY, "delay_ms": 0, "workspace_id": 1, "llm_kwargs_without_model": "null",
                "include_llm_kwargs": "accept"}, d)
    bad = [f.ctl("PUT", "/config", b)[0] for b in ({"include_llm_kwargs": "maybe"},
                                                   {"llm_kwargs_without_model": None},
                                                   {"workspace_id": "1"}, {"nope": 1}, [1])]
    check("bad config values are refused with 400", bad == [400] * 5, bad)
    f.ctl("PUT", "/config", {"workspace_id": 42})
    s, _, d = f.req("GET", "/prompt-templates/no-model")
    f.ctl("PUT", "/config", {"workspace_id": 1})
    check("workspace_id comes from the config", s == 200 and d["workspace_id"] == 42, d)


def post_template(f):
    want_keys = {"id", "prompt_name", "version", "workspace_id", "prompt_template", "metadata",
                 "commit_message", "tags", "snippets", "llm_kwargs", "provider_base_url", "warning"}
    s, _, d = f.post("/prompt-templates/oa-chat")
    s2, _, d2 = f.post("/prompt-templates/oa-chat", "null")
    s3, _, d3 = f.post("/prompt-templates/oa-chat", {})
    check("POST /prompt-templates/<name>: the body is optional (empty, null, {})",
          (s, s2, s3) == (200, 200, 200) and set(d) == want_keys and d == d2 == d3
          and d["provider_base_url"] is None and d["warning"] is None and "success" not in d, d)
    check("POST builds llm_kwargs from metadata.model without being asked",
          s == 200 and d["llm_kwargs"]["model"] == "gpt-4o" and len(d["llm_kwargs"]["messages"]) == 5, d)
    s, _, d = f.post("/prompt-templates/oa-chat", {"provider": "anthropic", "model": "claude-x",
                                                    "api_key": "ignored", "skip_input_variable_rendering": True})
    check("POST provider and model override metadata.model",
          s == 200 and d["llm_kwargs"]["model"] == "claude-x" and d["llm_kwargs"]["max_tokens"] == 256
          and d["llm_kwargs"]["system"] == "You are {role}.\n\nBe brief.", d)
    s, _, d = f.post("/prompt-templates/no-model", {"provider": "openai"})
    s2, _, d2 = f.post("/prompt-templates/no-model")
    s3, _, d3 = f.post("/prompt-templates/other-provider")
    check("POST: llm_kwargs for the body's provider, null when no supported provider is given",
          s == 200 and d["llm_kwargs"] == {"prompt": "x"} and d2["llm_kwargs"] is None
          and d3["llm_kwargs"] is None, (d, d2, d3))
    s, _, d = f.post("/prompt-templates/oa-completion",
                     {"model_parameter_overrides": {"top_p": 0.5, "seed": 1}})
    check("POST: model_parameter_overrides update the parameters",
          s == 200 and d["llm_kwargs"] == {"model": "gpt-35", "prompt": "Say ", "top_p": 0.5, "seed": 1}, d)
    s, _, d = f.post("/prompt-templates/Hello", {"label": "prod"})
    s2, _, d2 = f.post("/prompt-templates/12", {"version": 2, "label": None})
    check("POST picks the version or label, by name or id",
          s == 200 and d["version"] == 1 and s2 == 200 and d2["version"] == 2, (d, d2))
    s, _, d = f.post("/prompt-templates/Hello", {"provider": "google"})
    check("POST provider other than openai/anthropic is 422 enum",
          s == 422 and errs(d) == [("enum", ["body", "provider"], "Input should be 'openai' or 'anthropic'")], d)
    s, _, d = f.post("/prompt-templates/Hello", {"version": 0, "input_variables": [], "workspace_id": "1",
                                                  "skip_input_variable_rendering": "yes"})
    check("POST body fields are checked, every error reported",
          s == 422 and errs(d) == [("greater_than", ["body", "version"], "Input should be greater than 0"),
                                   ("dict_type", ["body", "input_variables"], "Input should be a valid dictionary"),
                                   ("int_type", ["body", "workspace_id"], "Input should be a valid integer"),
                                   ("bool_type", ["body", "skip_input_variable_rendering"],
                                    "Input should be a valid boolean")], d)
    s, _, d = f.post("/prompt-templates/Hello", {"version": 1, "label": "prod"})
    check("POST version and label together answer 400", s == 400, d)
    s, _, d = f.post("/prompt-templates/Hello", "{nope")
    s2, _, d2 = f.post("/prompt-templates/Hello", [1])
    check("POST: not JSON is 422 json_invalid, not an object 422 model_attributes_type",
          s == 422 and d["detail"][0]["type"] == "json_invalid" and d["detail"][0]["loc"][0] == "body"
          and s2 == 422 and errs(d2) == [("model_attributes_type", ["body"],
                                          "Input should be a valid dictionary or object to extract fields from")], (d, d2))
    missing = [f.post(p, b)[0] for p, b in (("/prompt-templates/Nope", None),
                                           ("/prompt-templates/Hello", {"version": 9}),
                                           ("/prompt-templates/Hello", {"label": "nope"}))]
    check("POST: a missing template, version or label answers 404", missing == [404] * 3, missing)
    post_rendering(f)
    for name in KW_TEMPLATES:
        f.ctl("DELETE", f"/templates/{name}")


def post_rendering(f):
    chat = {"type": "chat", "messages": [
        msg("system", "You are {role}."), {"role": "placeholder", "name": "history"},
        msg("user", "Hi {name}, n={n:03d} {{literal}}")]}
    f.ctl("PUT", "/templates/rn-chat", {"versions": {"1": {
        "prompt_template": chat, "metadata": {"model": {"provider": "openai", "name": "gpt-4o"}}}}})
    f.ctl("PUT", "/templates/rn-jinja", {"versions": {"1": {
        "prompt_template": {"type": "completion", "template_format": "jinja2",
                            "content": [text("Hello {{ name|title }}{% for i in range(n) %}!{% endfor %}"),
                                        text("{{ missing.x }}[{{ n / 0 }}]")]},
        "metadata": {"model": {"provider": "openai", "name": "gpt-4o"}}}}})
    f.ctl("PUT", "/templates/rn-macro", {"versions": {"1": {
        "prompt_template": {"type": "completion", "template_format": "jinja2",
                            "content": [text("{% macro m() %}x{% endmacro %}Hello {{ name }}")]},
        "metadata": {"model": {"provider": "openai", "name": "gpt-4o"}}}}})
    history = [msg("user", "earlier {q}"), msg("assistant", "noted")]
    s, _, d = f.post("/prompt-templates/rn-chat", {"input_variables": {
        "role": "a pirate", "name": "Ada", "n": 7, "history": history}})
    texts = [m["content"][0]["text"] for m in d["prompt_template"]["messages"]] if s == 200 else d
    check("POST renders input variables into prompt_template (f-string, Python's format)",
          s == 200 and texts == ["You are a pirate.", "earlier {q}", "noted", "Hi Ada, n=007 {literal}"]
          and d["warning"] is None, texts)
    check("POST: a placeholder message becomes its variable's messages, unrendered",
          s == 200 and [m["role"] for m in d["prompt_template"]["messages"]]
          == ["system", "user", "assistant", "user"], d)
    check("POST: llm_kwargs are built from the rendered template",
          s == 200 and d["llm_kwargs"]["messages"] == [
              {"role": "system", "content": "You are a pirate."},
              {"role": "user", "content": [{"type": "text", "text": "earlier {q}"}]},
              {"role": "assistant", "content": "noted"},
              {"role": "user", "content": [{"type": "text", "text": "Hi Ada, n=007 {literal}"}]}], d)
    s, _, d = f.post("/prompt-templates/rn-chat")
    texts = [m["content"][0]["text"] for m in d["prompt_template"]["messages"]] if s == 200 else d
    check("POST without input_variables renders missing variables as empty, drops placeholders, "
          "and leaves a text whose format raises in Python ({n:03d} of \"\") as it was",
          s == 200 and texts == ["You are .", "Hi {name}, n={n:03d} {{literal}}"], texts)
    s, _, d = f.post("/prompt-templates/rn-chat", {"input_variables": {"role": "x"},
                                                    "skip_input_variable_rendering": True})
    check("POST skip_input_variable_rendering=true answers the template unrendered",
          s == 200 and d["prompt_template"] == chat
          and d["llm_kwargs"]["messages"][0]["content"] == "You are {role}.", d)
    s, _, d = f.post("/prompt-templates/rn-chat", {"input_variables": {
        "history": [{"role": "user", "content": "plain"}, {"role": "robot"}]}})
    check("POST: a placeholder's messages must be Prompt Blueprint messages (422)",
          s == 422 and errs(d) == [
              ("list_type", ["body", "input_variables", "history", 0, "content"], "Input should be a valid list"),
              ("union_tag_invalid", ["body", "input_variables", "history", 1],
               f"Input tag 'robot' found using 'role' does not match any of the expected tags: {ROLE_TAGS}")], d)
    s, _, d = f.post("/prompt-templates/rn-jinja", {"input_variables": {"name": "ada", "n": 2}})
    texts = [b["text"] for b in d["prompt_template"]["content"]] if s == 200 else d
    check("POST renders jinja2 as the SDK does (undefined is empty; a text that raises stays)",
          s == 200 and texts == ["Hello Ada!!", "{{ missing.x }}[{{ n / 0 }}]"]
          and d["warning"] is None, texts)
    s, _, d = f.post("/prompt-templates/rn-macro", {"input_variables": {"name": "Ada"}})
    check("POST: a jinja2 text the renderer does not reproduce (a macro) is answered unrendered, "
          "with a warning saying so",
          s == 200 and d["prompt_template"]["content"][0]["text"]
          == "{% macro m() %}x{% endmacro %}Hello {{ name }}"
          and isinstance(d["warning"], str) and "jinja2" in d["warning"], d)
    f.ctl("DELETE", "/templates/rn-chat")
    f.ctl("DELETE", "/templates/rn-jinja")
    f.ctl("DELETE", "/templates/rn-macro")


# -- tracking ---------------------------------------------------------------------

def tracking(f):
    s, _, d = f.post("/log-request", log_request(tags=["a"], metadata={"k": "v"}, parameters={"t": 1},
                                                 status="ERROR", error_type="PROVIDER_TIMEOUT",
                                                 error_message="timed out", api_key="in-body"))
    first = d.get("id") if isinstance(d, dict) else None
    check("a valid Log Request is 201 with id and prompt_version",
          s == 201 and isinstance(first, int)
          and d == {"id": first, "prompt_version": {
              "prompt_template": log_request()["input"], "commit_message": None,
              "metadata": {"model": {"provider": "openai", "name": "gpt-4o", "parameters": {"t": 1}}}},
              "status": "ERROR", "error_type": "PROVIDER_TIMEOUT", "error_message": "timed out"}, d)
    s, _, d = f.post("/log-request", log_request())
    check("status defaults to SUCCESS, parameters to {}",
          s == 201 and d["id"] == first + 1 and d["status"] == "SUCCESS" and d["error_type"] is None
          and d["prompt_version"]["metadata"]["model"]["parameters"] == {}, d)
    bodies = [("/rest/track-score", {"request_id": 1, "score": 90, "secret-body-text": 1}),
              ("/rest/track-metadata", {"request_id": 1, "metadata": {"a": "b"}}),
              ("/rest/track-prompt", {"prompt_name": "Hello", "request_id": 1}),
              ("/rest/track-group", {"request_id": 1, "group_id": 2}),
              ("/rest/track-request", {"function_name": "openai.chat.completions.create", "kwargs": {},
                                       "request_response": {}, "request_start_time": 1.5,
                                       "request_end_time": 2}),
              ("/spans-bulk", {"spans": [span()]})]
    got = [f.post(p, b) for p, b in bodies]
    s, _, recs = f.ctl("GET", "/requests?method=POST")
    ids = [r["answer_id"] for r in recs[-6:]]
    check("every accepted tracking request takes the next id, recorded as answer_id",
          [g[0] for g in got] == [200, 200, 200, 200, 200, 201]
          and ids == list(range(first + 2, first + 8)), (got, ids))
    s, _, d = f.post("/log-request", {"provider": "p"})
    s2, _, recs = f.ctl("GET", "/requests?path_prefix=/log-request")
    check("a refused tracking request takes no id", s == 422 and recs[-1]["answer_id"] is None
          and recs[-1]["status"] == 422, recs[-1:])
    s, _, d = f.post("/log-request", "{bad json")
    e = d["detail"][0] if s == 422 else {}
    check("a body that is not JSON is 422 json_invalid at [body, position] (jansson's position)",
          s == 422 and len(d["detail"]) == 1 and e["type"] == "json_invalid"
          and e["loc"][0] == "body" and isinstance(e["loc"][1], int) and 0 <= e["loc"][1] <= 9
          and e["msg"] == "JSON decode error" and isinstance(e["ctx"]["error"], str), d)
    codes = [f.post("/log-request", b) for b in ("", "null")]
    check("an empty or null body is 422 missing at [body]",
          all(c[0] == 422 and errs(c[2]) == [("missing", ["body"], "Field required")] for c in codes), codes)
    codes = [f.post(p, b) for p in ("/log-request", "/rest/track-score") for b in ("[1]", "5", '"x"')]
    check("a body that is not an object is 422 model_attributes_type at [body]",
          all(c[0] == 422 and errs(c[2]) == [("model_attributes_type", ["body"],
                                               "Input should be a valid dictionary or object to extract fields from")]
              for c in codes), codes)
    s, _, d = f.post("/rest/track-nothing", {})
    s2, _, d2 = f.post("/track-request", {})
    check("any other POST path is 404 {detail: Not Found}",
          (s, s2) == (404, 404) and d == d2 == {"detail": "Not Found"}, (d, d2))
    s, _, d = f.post("/log-request", {"provider": "p"}, key="wrong")
    check("the API key is checked before the body", s == 401, d)


def log_request_refusals(f):
    def one(body):
        s, _, d = f.post("/log-request", body)
        return errs(d) if s == 422 else (s, d)

    required = ["provider", "model", "input", "output", "request_start_time", "request_end_time"]
    got = {k: one(without(log_request(), k)) for k in required}
    check("each missing required field is reported as missing at [body, field]",
          got == {k: [("missing", ["body", k], "Field required")] for k in required}, got)
    check("a body missing all of them gets all six, in order",
          one({}) == [("missing", ["body", k], "Field required") for k in required], one({}))

    def chat(*messages):
        return {"type": "chat", "messages": list(messages)}

    cases = [
        ("plain-string content", log_request(input=chat({"role": "user", "content": "Hello!"})),
         [("list_type", ["body", "input", "messages", 0, "content"], "Input should be a valid list")]),
        ("unknown block type", log_request(output=chat({"role": "assistant", "content": [{"type": "foo"}]})),
         [("union_tag_invalid", ["body", "output", "messages", 0, "content", 0],
           f"Input tag 'foo' found using 'type' does not match any of the expected tags: {BLOCK_TAGS}")]),
        ("block without type", log_request(input=chat({"role": "user", "content": [{"text": "x"}]})),
         [("union_tag_not_found", ["body", "input", "messages", 0, "content", 0],
           "Unable to extract tag using discriminator 'type'")]),
        ("unknown role", log_request(input=chat({"role": "bot", "content": []})),
         [("union_tag_invalid", ["body", "input", "messages", 0],
           f"Input tag 'bot' found using 'role' does not match any of the expected tags: {ROLE_TAGS}")]),
        ("message without role", log_request(input=chat({"content": []})),
         [("union_tag_not_found", ["body", "input", "messages", 0],
           "Unable to extract tag using discriminator 'role'")]),
        ("unknown template type", log_request(input={"type": "image", "content": []}),
         [("union_tag_invalid", ["body", "input"],
           "Input tag 'image' found using 'type' does not match any of the expected tags: 'chat', 'completion'")]),
        ("template not an object", log_request(output="Hi"),
         [("model_attributes_type", ["body", "output"],
           "Input should be a valid dictionary or object to extract fields from")]),
        ("score 101", log_request(score=101),
         [("less_than_equal", ["body", "score"], "Input should be less than or equal to 100")]),
        ("score -1", log_request(score=-1),
         [("greater_than_equal", ["body", "score"], "Input should be greater than or equal to 0")]),
        ("status OK", log_request(status="OK"),
         [("enum", ["body", "status"], "Input should be 'SUCCESS', 'WARNING' or 'ERROR'")]),
        ("error_type unknown", log_request(error_type="OOPS"),
         [("enum", ["body", "error_type"],
           "Input should be 'PROVIDER_TIMEOUT', 'PROVIDER_QUOTA_LIMIT', 'PROVIDER_RATE_LIMIT', "
           "'PROVIDER_PARTIAL_RESPONSE', 'PROVIDER_AUTH_ERROR', 'PROVIDER_ERROR', "
           "'TEMPLATE_RENDER_ERROR', 'VARIABLE_MISSING_OR_EMPTY' or 'UNKNOWN_ERROR'")]),
        ("metadata with a non-string value", log_request(metadata={"user": "u1", "n": 1}),
         [("string_type", ["body", "metadata", "n"], "Input should be a valid string")]),
        ("metadata key too long", log_request(metadata={"k" * 1025: "v"}),
         [("string_too_long", ["body", "metadata", "k" * 1025, "[key]"],
           "String should have at most 1024 characters")]),
        ("tag too long", log_request(tags=["ok", "é" * 513]),
         [("string_too_long", ["body", "tags", 1], "String should have at most 512 characters")]),
        ("tags not a list", log_request(tags="a,b"),
         [("list_type", ["body", "tags"], "Input should be a valid list")]),
        ("bad datetime", log_request(request_start_time="2024-01-15 25:00"),
         [("datetime_parsing", ["body", "request_start_time"],
           "Input should be a valid datetime, hour value is outside expected range of 0-23")]),
        ("not a datetime at all", log_request(request_end_time="yesterday!"),
         [("datetime_parsing", ["body", "request_end_time"],
           "Input should be a valid datetime, invalid character in year")]),
        ("datetime of the wrong type", log_request(request_end_time=True),
         [("datetime_type", ["body", "request_end_time"], "Input should be a valid datetime")]),
        ("prompt_version_number 0", log_request(prompt_version_number=0),
         [("greater_than", ["body", "prompt_version_number"], "Input should be greater than 0")]),
        ("integer fields refuse strings and fractions",
         log_request(prompt_id="5", input_tokens=5.5, output_tokens=-1),
         [("int_type", ["body", "prompt_id"], "Input should be a valid integer"),
          ("int_type", ["body", "input_tokens"], "Input should be a valid integer"),
          ("greater_than_equal", ["body", "output_tokens"], "Input should be greater than or equal to 0")]),
        ("price and strings", log_request(price="1", provider=5, function_name=None, error_message="x" * 1025),
         [("string_type", ["body", "provider"], "Input should be a valid string"),
          ("float_type", ["body", "price"], "Input should be a valid number"),
          ("string_type", ["body", "function_name"], "Input should be a valid string"),
          ("string_too_long", ["body", "error_message"], "String should have at most 1024 characters")]),
        ("template_format and tool messages",
         log_request(input=chat({"role": "user", "content": [], "template_format": "mustache"},
                                {"role": "tool", "content": []}, {"role": "function"},
                                {"role": "placeholder"},
                                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]})),
         [("literal_error", ["body", "input", "messages", 0, "template_format"],
           "Input should be 'f-string' or 'jinja2'"),
          ("missing", ["body", "input", "messages", 1, "tool_call_id"], "Field required"),
          ("missing", ["body", "input", "messages", 2, "name"], "Field required"),
          ("missing", ["body", "input", "messages", 3, "name"], "Field required"),
          ("missing", ["body", "input", "messages", 4, "tool_calls", 0, "function", "arguments"],
           "Field required")]),
        ("completion without content", log_request(output={"type": "completion"}),
         [("missing", ["body", "output", "content"], "Field required")]),
        ("blocks missing their fields",
         log_request(input={"type": "completion", "content": [
             {"type": "text"}, {"type": "image_url", "image_url": {}}, {"type": "media_variable"},
             {"type": "mcp_approval_response"}]}),
         [("missing", ["body", "input", "content", 0, "text"], "Field required"),
          ("missing", ["body", "input", "content", 1, "image_url", "url"], "Field required"),
          ("missing", ["body", "input", "content", 2, "name"], "Field required"),
          ("missing", ["body", "input", "content", 3, "approval_request_id"], "Field required"),
          ("missing", ["body", "input", "content", 3, "approve"], "Field required")]),
        ("template-level functions and tools",
         log_request(input={"type": "chat", "messages": [], "functions": [{}], "tools": [{"type": "function"}, {}],
                            "tool_choice": 1}),
         [("missing", ["body", "input", "functions", 0, "name"], "Field required"),
          ("missing", ["body", "input", "tools", 0, "function"], "Field required"),
          ("union_tag_not_found", ["body", "input", "tools", 1], "Unable to extract tag using discriminator 'type'"),
          ("string_type", ["body", "input", "tool_choice", "str"], "Input should be a valid string"),
          ("dict_type", ["body", "input", "tool_choice", "dict[str,any]"], "Input should be a valid dictionary")]),
    ]
    for name, body, want in cases:
        got = one(body)
        check(f"log-request refuses: {name}", got == want, got)
    got = one(log_request(tags=list(range(80))))
    check("at most 50 errors are reported", isinstance(got, list) and len(got) == 50
          and got[0] == ("string_type", ["body", "tags", 0], "Input should be a valid string"), len(got))
    s, _, d = f.post("/log-request", log_request(score=101))
    e = d["detail"][0]
    check("errors carry input and ctx as pydantic does", e.get("input") == 101 and e.get("ctx") == {"le": 100}, e)


def log_request_acceptance(f):
    every_block = [
        text("t"), {"type": "text", "text": "t", "id": None, "annotations": [], "thought_signature": "s"},
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "code", "code": "x=1"},
        {"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}},
        {"type": "media", "media": {"title": "m", "type": "image/png", "url": None, "format": "url"}},
        {"type": "media_variable", "name": "pics"}, {"type": "output_media", "url": "https://x"},
        {"type": "server_tool_use", "id": "1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "1", "content": []},
        {"type": "code_execution_result", "output": "2"}, {"type": "mcp_list_tools"},
        {"type": "mcp_call"}, {"type": "mcp_approval_request"},
        {"type": "mcp_approval_response", "approval_request_id": "a", "approve": True},
        {"type": "bash_code_execution_tool_result", "tool_use_id": "1"},
        {"type": "text_editor_code_execution_tool_result", "tool_use_id": "1"},
        {"type": "shell_call"}, {"type": "shell_call_output"}, {"type": "apply_patch_call"},
        {"type": "apply_patch_call_output"}]
    rich = {"type": "chat", "input_variables": ["name"], "function_call": {"name": "f"},
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "functions": [{"name": "f", "description": "d", "parameters": {}, "strict": True}],
            "tools": [{"type": "function", "function": {"name": "f"}},
                      {"type": "image_generation", "id": "builtin_image_gen", "name": "Image Generation",
                       "description": "Generate images", "provider": "openai",
                       "config": {"type": "image_generation"}}],
            "raw_request_display_role": "x", "dataset_examples": [],
            "messages": [
                {"role": "system", "content": [text("s")], "name": None, "template_format": "jinja2"},
                {"role": "developer", "content": [text("d")], "input_variables": []},
                {"role": "user", "content": every_block, "name": "ada"},
                {"role": "assistant"}, {"role": "assistant", "content": None, "tool_calls": None,
                                        "function_call": None},
                {"role": "assistant", "content": [], "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": [text("r")], "tool_call_id": "c1"},
                {"role": "function", "name": "f", "content": None},
                {"role": "placeholder", "name": "history"}]}
    s, _, d = f.post("/log-request", log_request(input=rich))
    check("every role, block type and template field is accepted", s == 201, d)
    sdk = log_request(parameters={}, tags=[], metadata={}, prompt_name=None, prompt_version_number=None,
                      prompt_input_variables={}, input_tokens=0, output_tokens=0, price=0.0,
                      function_name="", score=0, prompt_id=None, score_name=None, api_type=None,
                      status="SUCCESS", error_type=None, error_message=None,
                      request_start_time=1744626112.7601638, request_end_time=1744626113)
    s, _, d = f.post("/log-request", sdk)
    check("what the Python SDK sends (nulls, epoch floats, score_name) is accepted", s == 201, d)
    times = ["2024-01-15T10:30:00Z", "2024-01-15 10:30", "2024-01-15t10:30:00.123456+02:00",
             "2024-01-15T10:30:00-0530", "2024-02-29T23:59:59.5z", 0, 1700000000, 1.7e12, -5.5]
    got = [f.post("/log-request", log_request(request_start_time=t))[0] for t in times]
    check("ISO 8601 date-times and epoch numbers (seconds or ms) are accepted", got == [201] * len(times),
          list(zip(times, got)))
    bad = ["2023-02-29T00:00", "2024-01-15", "2024-01-15T10:30:00.1234567", "2024-01-15T10:30+24:00",
           "2024-01-15T10:60", "2024-01-15T10:30:00 Z", "1700000000"]
    got = [f.post("/log-request", log_request(request_start_time=t))[0] for t in bad]
    check("malformed date-times are refused", got == [422] * len(bad), list(zip(bad, got)))
    s, _, d = f.post("/log-request", json.dumps(log_request(uid="x"))[:-1]
                     + ', "big": 123456789012345678901234567890, "nul": "a\\u0000b", "score": 7}')
    check("a body with NUL characters and integers beyond 64 bits is accepted", s == 201, d)
    s, _, d = f.post("/log-request", json.dumps(log_request())[:-1]
                     + ', "score": 7.5, "big": 123456789012345678901234567890}')
    check("... and fractions are still refused as integers there",
          s == 422 and errs(d) == [("int_type", ["body", "score"], "Input should be a valid integer")], d)
    s, _, d = f.post("/log-request", log_request(output={"type": "chat", "messages": []}, extra={"a": 1}))
    check("unknown keys and an empty output chat are accepted", s == 201, d)


def other_tracking_endpoints(f):
    def one(path, body):
        s, _, d = f.post(path, body)
        return errs(d) if s == 422 else (s, d)

    s, _, d = f.post("/rest/track-score", {"request_id": 5, "score": 100, "name": "quality"})
    check("track-score: 200 {success, message}",
          s == 200 and d == {"success": True, "message": "Score tracked successfully"}, d)
    check("track-score requires request_id and score",
          one("/rest/track-score", {}) == [("missing", ["body", "request_id"], "Field required"),
                                             ("missing", ["body", "score"], "Field required")])
    got = one("/rest/track-score", {"request_id": "5", "score": 101, "name": 1})
    check("track-score: request_id int, score 0..100, name str",
          got == [("int_type", ["body", "request_id"], "Input should be a valid integer"),
                  ("less_than_equal", ["body", "score"], "Input should be less than or equal to 100"),
                  ("string_type", ["body", "name"], "Input should be a valid string")], got)

    oks = [f.post("/rest/track-metadata", {"request_id": r, "metadata": {"a": 1}}) for r in (5, "5")]
    check("track-metadata: request_id int or str, metadata any object",
          [o[0] for o in oks] == [200, 200]
          and oks[0][2] == {"success": True, "message": "Metadata tracked successfully"}, oks)
    got = one("/rest/track-metadata", {"request_id": [5], "metadata": "x"})
    check("track-metadata refuses other types, naming each alternative",
          got == [("int_type", ["body", "request_id", "int"], "Input should be a valid integer"),
                  ("string_type", ["body", "request_id", "str"], "Input should be a valid string"),
                  ("dict_type", ["body", "metadata"], "Input should be a valid dictionary")], got)
    check("track-metadata requires request_id and metadata",
          one("/rest/track-metadata", {}) == [("missing", ["body", "request_id"], "Field required"),
                                               ("missing", ["body", "metadata"], "Field required")])

    s, _, d = f.post("/rest/track-prompt", {"prompt_name": "Hello", "request_id": "5",
                                             "prompt_input_variables": {"x": 1}, "version": "2", "label": None})
    check("track-prompt: 200 {success, message}",
          s == 200 and d == {"success": True, "message": "Prompt tracked successfully"}, d)
    got = one("/rest/track-prompt", {"prompt_name": "", "request_id": 5, "version": 1.5})
    check("track-prompt: prompt_name at least 1 character, version int|str|null",
          got == [("string_too_short", ["body", "prompt_name"], "String should have at least 1 character"),
                  ("int_type", ["body", "version", "int"], "Input should be a valid integer"),
                  ("string_type", ["body", "version", "str"], "Input should be a valid string")], got)
    check("track-prompt requires prompt_name and request_id",
          one("/rest/track-prompt", {}) == [("missing", ["body", "prompt_name"], "Field required"),
                                             ("missing", ["body", "request_id"], "Field required")])

    s, _, d = f.post("/rest/track-group", {"request_id": 5, "group_id": 6})
    check("track-group: 200 {success, message}",
          s == 200 and d == {"success": True, "message": "Group tracked successfully"}, d)
    check("track-group requires request_id and group_id as integers",
          one("/rest/track-group", {"group_id": "6"}) == [
              ("missing", ["body", "request_id"], "Field required"),
              ("int_type", ["body", "group_id"], "Input should be a valid integer")])

    s, _, d = f.post("/rest/track-request", {
        "function_name": "openai.chat.completions.create", "provider_type": "openai", "args": [],
        "kwargs": {"model": "gpt-4o", "messages": [{"role": "user", "content": "plain is fine here"}]},
        "request_response": {"choices": []}, "request_start_time": "2024-01-15T10:30:00.123Z",
        "request_end_time": 1744624827.799539, "tags": None, "metadata": None, "group_id": None,
        "prompt_id": 3, "prompt_version": 1, "prompt_input_variables": {}, "return_prompt_blueprint": True,
        "api_key": "k", "span_id": None})
    check("track-request: 200 {success, request_id, prompt_blueprint, message}",
          s == 200 and set(d) == {"success", "request_id", "prompt_blueprint", "message"}
          and isinstance(d["request_id"], int) and d["prompt_blueprint"] is None
          and d["message"] == "Request tracked successfully", d)
    check("track-request requires function_name, kwargs, request_response and the times",
          one("/rest/track-request", {}) == [
              ("missing", ["body", k], "Field required") for k in
              ("function_name", "kwargs", "request_response", "request_start_time", "request_end_time")])

    s, _, d = f.post("/spans-bulk", {"spans": [span("a", "s1"), span("b", "s2", log_request=without(without(
        log_request(), "request_start_time"), "request_end_time"), parent_id="s1")], "close_after": True})
    check("spans-bulk: 201 with one id per span; a span's log_request may leave out its times",
          s == 201 and d["success"] is True and [(x["name"], x["span_id"]) for x in d["spans"]]
          == [("a", "s1"), ("b", "s2")] and d["spans"][1]["id"] == d["spans"][0]["id"] + 1, d)
    got = one("/spans-bulk", {"spans": [span(kind="CLIENT", status={}, log_request={"provider": "p"})]})
    check("spans-bulk checks each span and its log_request",
          got == [("enum", ["body", "spans", 0, "kind"],
                   "Input should be 'SpanKind.CLIENT', 'SpanKind.CONSUMER', 'SpanKind.INTERNAL', "
                   "'SpanKind.PRODUCER' or 'SpanKind.SERVER'"),
                  ("missing", ["body", "spans", 0, "status", "status_code"], "Field required"),
                  ("missing", ["body", "spans", 0, "log_request", "model"], "Field required"),
                  ("missing", ["body", "spans", 0, "log_request", "input"], "Field required"),
                  ("missing", ["body", "spans", 0, "log_request", "output"], "Field required")], got)
    check("spans-bulk requires spans", one("/spans-bulk", {"close_after": False})
          == [("missing", ["body", "spans"], "Field required")])


# -- records, control, faults -------------------------------------------------------

def records_and_control(f):
    f.req("GET", "/prompt-templates/Hello?label=prod", headers={"Cache-Control": "no-cache"})
    s, _, recs = f.ctl("GET", "/requests?path_prefix=/prompt-templates/Hello")
    last = recs[-1] if recs else {}
    check("requests are recorded with query, key and Cache-Control",
          s == 200 and last.get("query") == "label=prod" and last.get("api_key") == KEY
          and last.get("cache_control") == "no-cache" and last.get("status") == 200
          and last.get("method") == "GET" and isinstance(last.get("at_ms"), int), last)
    s, _, recs = f.ctl("GET", "/requests?path_prefix=/rest/track-score")
    check("tracking bodies are recorded as text with their answer id",
          len(recs) >= 1 and json.loads(recs[0]["body"]) == {"request_id": 1, "score": 90, "secret-body-text": 1}
          and isinstance(recs[0]["answer_id"], int), recs[:1])
    s, _, st = f.ctl("GET", "/stats")
    check("stats count by path and status",
          s == 200 and st["by_path"]["/log-request"].get("201", 0) >= 2
          and st["by_path"]["/log-request"].get("422", 0) >= 20, st["by_path"].get("/log-request"))
    f.ctl("DELETE", "/requests")
    s, _, recs = f.ctl("GET", "/requests")
    check("DELETE /_fake/requests clears", recs == [], recs)

    comp = {"prompt_template": {"type": "completion", "content": [text("x")]}}
    s, _, d = f.ctl("PUT", "/templates/New%20One", {"id": 20, "versions": {"1": comp}})
    s2, _, d2 = f.ctl("POST", "/templates/New%20One/versions", {"content": {**comp, "x": 2}})
    s3, _, _ = f.ctl("PUT", "/templates/New%20One/labels/prod", {"version": 2})
    s4, _, d4 = f.req("GET", "/prompt-templates/New%20One?label=prod")
    check("put template, add version, set label", (s, s2, s3, s4) == (200, 200, 200, 200)
          and d2["version"] == 2 and d4["x"] == 2 and d4["version"] == 2, (d, d2, d4))
    s, _, _ = f.ctl("POST", "/templates/New%20One/rename", {"new_name": "Renamed"})
    s2, _, _ = f.req("GET", "/prompt-templates/New%20One")
    s3, _, d3 = f.req("GET", "/prompt-templates/20")
    check("rename", (s, s2, s3) == (200, 404, 200) and d3["prompt_name"] == "Renamed", d3)
    s, _, _ = f.ctl("DELETE", "/templates/Renamed/labels/prod")
    s2, _, _ = f.req("GET", "/prompt-templates/Renamed?label=prod")
    s3, _, _ = f.ctl("DELETE", "/templates/Renamed")
    s4, _, _ = f.req("GET", "/prompt-templates/20")
    check("delete label, delete template", (s, s2, s3, s4) == (200, 404, 200, 404), (s, s2, s3, s4))
    bad = [f.ctl("PUT", "/templates/X", b)[0]
           for b in ({"id": 12}, {"versions": {"1": {}}, "labels": {"p": 2}}, {"idd": 1}, "junk")]
    check("bad template edits are refused (409, 400...)", bad == [409, 400, 400, 400], bad)
    state = {"templates": [{"id": 1, "prompt_name": "A", "versions": {"1": {"a": 1}}, "labels": {"prod": 1}}]}
    s, _, _ = f.ctl("PUT", "/state", state)
    s2, _, d2 = f.ctl("GET", "/state")
    check("PUT then GET /_fake/state round-trips", s == 200 and d2 == state, d2)


def faults_and_delays(f):
    faults = [{"method": "GET", "path_prefix": "/prompt-templates", "count": 2, "status": 500},
              {"path_prefix": "/prompt-templates", "status": 503, "retry_after": "1", "body": {"message": "busy"}}]
    s, _, d = f.ctl("POST", "/faults", faults)
    got = [f.req("GET", "/prompt-templates/A") for _ in range(4)]
    check("faults are consumed in order, then normal answers",
          s == 200 and [g[0] for g in got] == [500, 500, 503, 200]
          and got[2][1].get("Retry-After") == "1" and got[2][2] == {"message": "busy"}, got)
    f.ctl("POST", "/faults", {"method": "POST", "status": 429})
    s1 = f.req("GET", "/prompt-templates/A")[0]
    s2 = f.post("/log-request", {})[0]
    check("a fault only matches its method, and takes precedence over validation", (s1, s2) == (200, 429), (s1, s2))
    f.ctl("POST", "/faults", {"path_prefix": "/log-request", "status": 200, "body": {"id": 5}})
    s, _, d = f.post("/log-request", "not json", key="wrong")
    check("a status fault is answered whatever the body and the key", s == 200 and d == {"id": 5}, d)
    f.ctl("POST", "/faults", {"path_prefix": "/log-request", "delay_ms": 100})
    s, _, d = f.post("/log-request", {})
    check("a delay-only fault delays the normal (validated) answer", s == 422, d)
    f.ctl("POST", "/faults", {"path_prefix": "/log-request", "drop": True})
    try:
        f.post("/log-request", {})
        dropped = False
    except (http.client.HTTPException, ConnectionError):
        dropped = True
    check("drop closes the connection without an answer", dropped)
    f.ctl("POST", "/faults", {"drop": True, "count": 5})
    f.ctl("DELETE", "/faults")
    s, _, d = f.ctl("GET", "/faults")
    check("DELETE /_fake/faults clears", d == [], d)
    refused = [f.ctl("POST", "/faults", b)[0]
               for b in ({"status": 500, "drop": True}, {"path_prefix": "/x"}, {"stat": 1}, [{"status": 500}, {"status": 7}])]
    s, _, d = f.ctl("GET", "/faults")
    check("malformed faults are refused, all or nothing", refused == [400] * 4 and d == [], (refused, d))

    # -- delays never block other requests
    f.ctl("POST", "/faults", [{"path_prefix": "/prompt-templates/A", "delay_ms": 1500, "status": 504},
                              {"path_prefix": "/prompt-templates/A", "delay_ms": 1000}])
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
    f.ctl("PUT", "/config", {"delay_ms": 300})
    t0 = time.monotonic()
    s = f.req("GET", "/prompt-templates/A")[0]
    t_api = time.monotonic() - t0
    t0 = time.monotonic()
    f.ctl("GET", "/state")
    t_ctl = time.monotonic() - t0
    f.ctl("PUT", "/config", {"delay_ms": 0})
    check("the global delay applies to the API, not the control API",
          s == 200 and t_api >= 0.29 and t_ctl < 0.25, (t_api, t_ctl))
    f.ctl("PUT", "/config", {"api_key": "other"})
    s1 = f.req("GET", "/prompt-templates/A")[0]
    s2 = f.req("GET", "/prompt-templates/A", key="other")[0]
    f.ctl("PUT", "/config", {"api_key": KEY})
    check("the API key can be changed at run time", (s1, s2) == (401, 200), (s1, s2))

    # Leave an answer pending so the SIGTERM check covers it.
    f.ctl("POST", "/faults", {"delay_ms": 60000, "status": 500})
    threading.Thread(target=lambda: _swallow(f), daemon=True).start()
    time.sleep(0.2)


def _swallow(f):
    try:
        f.req("GET", "/prompt-templates/A", timeout=30)
    except Exception:  # the fake is being stopped: any error is expected
        pass


# -- command-line flags ---------------------------------------------------------

def flag_checks(binary, tmp):
    g = Fake(binary, tmp, ["--workspace-id", "9", "--llm-kwargs-without-model", "refuse",
                           "--include-llm-kwargs", "refuse"], name="flags")
    try:
        s, _, d = g.ctl("GET", "/config")
        s2, _, d2 = g.req("GET", "/prompt-templates/Hello")
        s3, _, _ = g.req("GET", "/prompt-templates/Hello?include_llm_kwargs=true")
        check("--workspace-id, --llm-kwargs-without-model, --include-llm-kwargs set the config",
              d == {"api_key": KEY, "delay_ms": 0, "workspace_id": 9, "llm_kwargs_without_model": "refuse",
                    "include_llm_kwargs": "refuse"} and d2["workspace_id"] == 9 and s3 == 422, (d, d2, s3))
    finally:
        g.stop()
    codes = []
    for args in (["--include-llm-kwargs", "maybe"], ["--llm-kwargs-without-model", "x"],
                 ["--workspace-id", "-1"]):
        p = subprocess.run([binary, *args], capture_output=True, timeout=10)
        codes.append(p.returncode)
    bad = os.path.join(tmp, "bad-fixture.json")
    with open(bad, "w", encoding="utf-8") as fh:
        json.dump({"templates": [{"id": 1, "prompt_name": "A",
                                  "versions": {"1": {"prompt_template": {"type": "chat", "messages": [
                                      {"role": "user", "content": "plain"}]}}}}]}, fh)
    p = subprocess.run([binary, "--fixture", bad], capture_output=True, timeout=10)
    codes.append(p.returncode)
    check("bad flag values and a fixture with an invalid version exit 2", codes == [2] * 4
          and b"messages.0.content" in p.stderr, (codes, p.stderr[-300:]))


if __name__ == "__main__":
    sys.exit(main())
