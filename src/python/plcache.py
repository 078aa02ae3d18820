"""plcache.py -- plcache for Python app servers: read prompts, log requests.

One file; copy it next to your app, or put src/python on PYTHONPATH. It
needs the standard library, redis-py for everything that talks to Redis
(Debian's python3-redis, or `pip install redis`), and jinja2 only to render
jinja2 templates (python3-jinja2, or `pip install jinja2`); it imports
neither itself: you hand it your redis client.

Reading prompts
---------------
plcache-webhook keeps PromptLayer's prompt templates in Redis (one hash per
template, `<prefix>prompt:<name>`, a field per release label, per version and
`latest`, each the JSON PromptLayer's "Get Prompt Template Raw Data" answers
with its unrendered llm_kwargs). A Client reads them and renders their input
variables exactly as PromptLayer's own Python SDK renders its cached copies:

    import plcache, redis
    pl = plcache.Client(redis.Redis(), api_key=os.environ.get("PROMPTLAYER_API_KEY"))
    prompt = pl.get_rendered("Hello", {"name": "Ada"}, label="prod")   # one HGET
    resp = openai_client.chat.completions.create(**prompt["llm_kwargs"])

or in two steps: `entry = pl.get("Hello", label="prod")` (one HGET: the
cached JSON as a dict, unrendered) and `plcache.render(entry, variables)`
(no I/O). `plcache.Client.from_env()` reads PLCACHE_REDIS_URL,
PLCACHE_PREFIX, PROMPTLAYER_API_KEY and PROMPTLAYER_BASE_URL as the daemons do.

- A hit costs one Redis round trip and never waits on PromptLayer.
- A miss (the template, label or version is not cached) is None without an
  api_key; with one, the Client reads through to PromptLayer's API (one or
  two HTTPS requests) and returns its answer. This module never writes the
  cache: only plcache-webhook, `plcache sync` and libplcache do, so a miss
  costs each process the API request until the cache fills (`plcache get
  NAME --label L` reads through and fills it for everyone).
- An edit in PromptLayer (a new version, a label moved, a snippet changed)
  reaches Redis through plcache-webhook's webhook, and the next get returns
  it: there is no TTL and no copy in this process to go stale.
- While PromptLayer is down, every cached entry is still served and
  rendered; only misses and templates that must be rendered by PromptLayer
  (placeholder messages, "variable" tools) fail, with ApiUnavailable.

Logging requests
----------------
An app logs an LLM request by pushing one job onto plcache's Redis list;
plcache-worker forwards it to PromptLayer's POST /log-request. PromptLayer
refuses (422) a body that is not a Log Request as it documents it
(https://docs.promptlayer.com/reference/log-request): `input` and `output`
are Prompt Blueprints whose chat content is a list of blocks, and the two
request times are required. These helpers build that body from what your
LLM client already has in hand:

    import plcache, redis, time
    r = redis.Redis()
    t0 = time.time()
    resp = client.chat.completions.create(**kwargs)          # OpenAI
    job = plcache.log_request_from_openai(kwargs, resp, t0, time.time(),
                                          prompt_name="Hello", prompt_version_number=3,
                                          tags=["prod"], metadata={"user": "42"})
    plcache.push(r, job)                                       # one LPUSH

    msg = anthropic_client.messages.create(**kwargs)          # Anthropic
    plcache.push(r, plcache.log_request_from_anthropic(kwargs, msg, t0, time.time()))

The request is the keyword arguments you gave the client; the response may be
the SDK's object (anything with model_dump()) or a plain dict. Times are
epoch seconds (time.time()) or datetime objects; they are sent as ISO 8601
UTC. Metadata values must be strings (PromptLayer's rule): anything else is a
TypeError here rather than a dead letter later.
"""

import copy as _copy
import datetime as _dt
import functools as _functools
import http.client as _http_client
import json as _json
import os as _os
import string as _string
import urllib.error as _urlerror
import urllib.parse as _urlparse
import urllib.request as _urlrequest
from collections.abc import Mapping as _Mapping

__all__ = ["log_request_from_openai", "log_request_from_anthropic", "push",
           "Client", "render", "is_locally_renderable", "field",
           "PlcacheError", "ApiError", "AuthError", "ApiUnavailable", "RenderError",
           "NotRenderable"]

# Keys of the client's kwargs that the Log Request carries elsewhere than in
# `parameters` (or not at all).
_OPENAI_NOT_PARAMETERS = {"model", "messages", "tools", "tool_choice", "functions",
                          "function_call", "stream", "stream_options", "extra_headers",
                          "extra_query", "extra_body", "timeout"}
_ANTHROPIC_NOT_PARAMETERS = {"model", "messages", "system", "tools", "tool_choice", "stream",
                             "extra_headers", "extra_query", "extra_body", "timeout"}


def _plain(obj):
    """A response as plain dicts and lists (SDK objects have model_dump())."""
    if obj is None:
        return None
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


def _time(t):
    """Epoch seconds or a datetime -> ISO 8601 UTC text PromptLayer reads."""
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError("request times are epoch seconds (time.time()) or datetime objects")


def _text(s):
    return {"type": "text", "text": s}


def _openai_content(content):
    """OpenAI message content (a string, a list of parts, or None) -> blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    blocks = []
    for part in content:
        part = _plain(part)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            blocks.append(_text(part.get("text", "")))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url if isinstance(url, dict) else {"url": url}
            blocks.append({"type": "image_url", "image_url": url})
        elif kind == "refusal":
            blocks.append(_text(part.get("refusal", "")))
        else:  # input_audio, file, ...: no Prompt Blueprint block holds them
            blocks.append(_text(f"[{kind} part not logged]"))
    return blocks


def _openai_tool_calls(calls):
    out = []
    for c in calls or []:
        c = _plain(c)
        fn = c.get("function") or {}
        out.append({"id": c.get("id", ""), "type": "function",
                    "function": {"name": fn.get("name", ""),
                                 "arguments": fn.get("arguments") or ""}})
    return out


def _openai_message(m):
    m = _plain(m)
    role = m.get("role", "user")
    msg = {"role": role, "content": _openai_content(m.get("content"))}
    if m.get("name") and role != "function":
        msg["name"] = m["name"]
    if role == "assistant":
        if m.get("tool_calls"):
            msg["tool_calls"] = _openai_tool_calls(m["tool_calls"])
        if m.get("function_call"):
            fc = _plain(m["function_call"])
            msg["function_call"] = {"name": fc.get("name", ""),
                                    "arguments": fc.get("arguments") or ""}
        if m.get("refusal") and not msg["content"]:
            msg["content"] = [_text(m["refusal"])]
    elif role == "tool":
        msg["tool_call_id"] = m.get("tool_call_id", "")
    elif role == "function":
        msg["name"] = m.get("name", "")
    return msg


def _common(job, tags, metadata, prompt_name, prompt_version_number, prompt_input_variables,
            extra):
    if tags:
        job["tags"] = [str(t) for t in tags]
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError(f"metadata[{k!r}]: PromptLayer takes string values only")
        job["metadata"] = dict(metadata)
    if prompt_name is not None:
        job["prompt_name"] = prompt_name
    if prompt_version_number is not None:
        job["prompt_version_number"] = prompt_version_number
    if prompt_input_variables is not None:
        job["prompt_input_variables"] = dict(prompt_input_variables)
    job.update(extra)
    return job


def log_request_from_openai(request, response, start, end, *, tags=None, metadata=None,
                            prompt_name=None, prompt_version_number=None,
                            prompt_input_variables=None, **extra):
    """A Log Request for one OpenAI chat completion.

    request: the kwargs of client.chat.completions.create (model, messages,
    tools, temperature, ...); response: its ChatCompletion (or dict); start,
    end: when the call began and ended. Extra keyword arguments (score,
    status, error_type, error_message, price, prompt_id, ...) are copied into
    the job as given."""
    request = dict(request)
    response = _plain(response) or {}
    inp = {"type": "chat", "messages": [_openai_message(m) for m in request.get("messages", [])]}
    for key in ("tools", "functions"):
        if request.get(key):
            inp[key] = [_plain(t) for t in request[key]]
    for key in ("tool_choice", "function_call"):
        if request.get(key) is not None:
            inp[key] = _plain(request[key])
    choices = response.get("choices") or []
    out_msgs = [_openai_message(choices[0].get("message") or {"role": "assistant"})] if choices else []
    usage = response.get("usage") or {}
    job = {
        "provider": "openai",
        "model": response.get("model") or request.get("model", ""),
        "input": inp,
        "output": {"type": "chat", "messages": out_msgs},
        "request_start_time": _time(start),
        "request_end_time": _time(end),
        "parameters": {k: v for k, v in request.items() if k not in _OPENAI_NOT_PARAMETERS},
        "function_name": "openai.chat.completions.create",
        "api_type": "chat-completions",
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    return _common(job, tags, metadata, prompt_name, prompt_version_number,
                   prompt_input_variables, extra)


def _anthropic_blocks(content):
    """Anthropic content (a string or blocks) -> (blocks, tool_calls, tool_results)."""
    if isinstance(content, str):
        return [_text(content)], [], []
    blocks, calls, results = [], [], []
    for b in content or []:
        b = _plain(b)
        kind = b.get("type")
        if kind == "text":
            blocks.append(_text(b.get("text", "")))
        elif kind == "thinking":
            blk = {"type": "thinking", "thinking": b.get("thinking", "")}
            if b.get("signature"):
                blk["signature"] = b["signature"]
            blocks.append(blk)
        elif kind == "image":
            src = b.get("source") or {}
            url = src.get("url") if src.get("type") == "url" else \
                f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
            blocks.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "tool_use":
            calls.append({"id": b.get("id", ""), "type": "function",
                          "function": {"name": b.get("name", ""),
                                       "arguments": _json.dumps(b.get("input", {}),
                                                               separators=(",", ":"), ensure_ascii=False)}})
        elif kind == "tool_result":
            inner = b.get("content")
            inner_blocks, _, _ = _anthropic_blocks(inner if inner is not None else [])
            results.append({"role": "tool", "tool_call_id": b.get("tool_use_id", ""),
                            "content": inner_blocks})
        else:  # redacted_thinking, document, server tools, ...
            blocks.append(_text(f"[{kind} block not logged]"))
    return blocks, calls, results


def _anthropic_message(m):
    """One Anthropic message -> Prompt Blueprint messages (tool results become
    their own tool messages, as in OpenAI's shape)."""
    m = _plain(m)
    blocks, calls, results = _anthropic_blocks(m.get("content"))
    msgs = list(results)
    if blocks or calls or not results:
        msg = {"role": m.get("role", "user"), "content": blocks}
        if calls:
            msg["tool_calls"] = calls
        msgs.append(msg)
    return msgs


def log_request_from_anthropic(request, response, start, end, *, tags=None, metadata=None,
                               prompt_name=None, prompt_version_number=None,
                               prompt_input_variables=None, **extra):
    """A Log Request for one Anthropic message (client.messages.create).

    request: its kwargs (model, system, messages, max_tokens, tools, ...);
    response: the Message (or dict); start, end as for OpenAI."""
    request = dict(request)
    response = _plain(response) or {}
    messages = []
    system = request.get("system")
    if system:
        sblocks, _, _ = _anthropic_blocks(system)
        messages.append({"role": "system", "content": sblocks})
    for m in request.get("messages", []):
        messages.extend(_anthropic_message(m))
    inp = {"type": "chat", "messages": messages}
    if request.get("tools"):
        inp["tools"] = [{"type": "function",
                         "function": {"name": t.get("name", ""),
                                      "description": t.get("description", ""),
                                      "parameters": t.get("input_schema", {})}}
                        for t in (_plain(t) for t in request["tools"])]
    if request.get("tool_choice") is not None:
        inp["tool_choice"] = _plain(request["tool_choice"])
    out_blocks, out_calls, _ = _anthropic_blocks(response.get("content"))
    out = {"role": "assistant", "content": out_blocks}
    if out_calls:
        out["tool_calls"] = out_calls
    usage = response.get("usage") or {}
    job = {
        "provider": "anthropic",
        "model": response.get("model") or request.get("model", ""),
        "input": inp,
        "output": {"type": "chat", "messages": [out] if response else []},
        "request_start_time": _time(start),
        "request_end_time": _time(end),
        "parameters": {k: v for k, v in request.items() if k not in _ANTHROPIC_NOT_PARAMETERS},
        "function_name": "anthropic.messages.create",
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
    }
    return _common(job, tags, metadata, prompt_name, prompt_version_number,
                   prompt_input_variables, extra)


def push(redis_client, job, prefix="pl:"):
    """Queues one log job (a dict) for plcache-worker with one LPUSH; returns
    the queue's length."""
    return redis_client.lpush(prefix + "track", _json.dumps(job))


# -- reading prompts ------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.promptlayer.com"


class PlcacheError(Exception):
    """Base of every error this module raises (besides TypeError/ValueError
    for bad arguments, and redis-py's own errors, which pass through)."""


class ApiError(PlcacheError):
    """PromptLayer's API answered something other than the template: `status`
    is the HTTP status (None when no answer came), the message never holds
    the API key."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    """401 or 403: the API key is wrong, revoked, or may not read this."""


class ApiUnavailable(ApiError):
    """PromptLayer could not answer now: a timeout, a connection that failed
    or broke, 408, 429 or a 5xx. Worth retrying later; cached entries are
    still served meanwhile."""


class RenderError(PlcacheError, ValueError):
    """render() cannot give the SDK's local rendering of this entry: its
    shape is one on which the SDK's renderer raises (e.g. a message that is
    not an object, content null), or a jinja2 text needs the jinja2 package,
    which is not installed. Client.get_rendered asks PromptLayer instead."""


class NotRenderable(RenderError):
    """The SDK never renders this entry locally (is_locally_renderable is
    false: no prompt_template, a placeholder message, a tool of type
    "variable"); PromptLayer must render it (Client.get_rendered does)."""


def field(label=None, version=None):
    """The cache field of a selection: `label:<label>`, `version:<n>` or
    `latest` (neither given). Both given is a ValueError."""
    if label is not None and version is not None:
        raise ValueError("give a label or a version, not both")
    if label is not None:
        if not isinstance(label, str) or not label:
            raise ValueError("label must be a non-empty string")
        return "label:" + label
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version must be an integer >= 1")
        return "version:%d" % version
    return "latest"


# --- local rendering: the semantics of the SDK's template cache ----------------
#
# promptlayer/template_cache.py (render_response, is_locally_renderable) of
# PromptLayer's Python SDK, unchanged from 1.3.0 to 1.5.14, written again here:
#
# - Which texts: a chat prompt_template's messages' content blocks
#   {"type": "text", "text": <str>}, each in its message's template_format;
#   a completion's content blocks in the template's template_format; in
#   llm_kwargs (when it is non-empty), all in the first message's (or the
#   completion's) format: messages[].content and input[].content (a str, or
#   the text of blocks typed "text"/"input_text" or untyped), system (the
#   same), contents[].parts[].text, history[].parts[].text,
#   system_instruction's parts (top level, else in generation_config), and
#   prompt when it is a str. Nothing else (tools, response_format, names,
#   tool calls, metadata) is touched.
# - When: llm_kwargs not null: always, with {} when no variables are given
#   (every f-string field becomes "", every jinja2 undefined ""); llm_kwargs
#   null or absent: only with non-empty variables, else the entry is
#   returned as it is.
# - How: only the format "jinja2" is jinja2, anything else f-string. f-string
#   is Python's str.format with every field string.Formatter parses given a
#   value (the variable, "" when missing or None); jinja2 is
#   jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)
#   with every other setting at jinja2's defaults. A text whose rendering
#   raises is left as it was; the others are still rendered.
# - Where the SDK's walk itself raises (a message that is not an object,
#   content null, ...), render raises RenderError.

_TEXT_TYPES = frozenset(("text", "input_text"))


class _Raises(Exception):
    """The SDK's walk would raise here."""


def _each(value, what):
    """What Python's `for x in value` visits for a JSON value: a list's
    items, an object's keys, a string's characters; anything else raises."""
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, (dict, str)):
        return list(value)
    raise _Raises(f"{what} is {type(value).__name__}, not a list")


def _refusal(entry):
    """Why the SDK would not render entry locally (a str), or None when it
    would; _Raises where its is_locally_renderable raises."""
    pt = entry.get("prompt_template")
    if not pt:
        return "it has no prompt_template"
    if not isinstance(pt, dict):
        raise _Raises("prompt_template is not an object")
    if pt.get("type") == "chat":
        for msg in _each(pt.get("messages", []), "prompt_template.messages"):
            if not isinstance(msg, dict):
                raise _Raises("a message of prompt_template is not an object")
            if msg.get("role") == "placeholder":
                return "it has a placeholder message"
    tools = pt.get("tools")
    if tools:
        for tool in _each(tools, "prompt_template.tools"):
            if not isinstance(tool, dict):
                raise _Raises("a tool of prompt_template is not an object")
            if tool.get("type") == "variable":
                return 'it has a tool of type "variable"'
    return None


def is_locally_renderable(entry):
    """Whether PromptLayer's SDK renders this entry itself (its
    is_locally_renderable): False when it has no prompt_template, when a chat
    template has a message with role "placeholder", or when
    prompt_template.tools holds a tool of type "variable"; also False for
    shapes on which the SDK's check raises. No I/O."""
    if not isinstance(entry, dict):
        return False
    try:
        return _refusal(entry) is None
    except _Raises:
        return False


def _fstring(text, variables):
    # Every field the parser finds gets a value, so str.format raises only
    # for what Python itself refuses (a bad spec, {0}, {a.b}, a lone brace).
    names = {name for _, name, _, _ in _string.Formatter().parse(text) if name}
    values = {}
    for name in names:
        value = variables[name] if name in variables else None
        values[name] = "" if value is None else value
    return text.format(**values)


@_functools.lru_cache(maxsize=1)
def _jinja2_env():
    try:
        import jinja2
        import jinja2.sandbox
    except ImportError:
        return None
    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)


@_functools.lru_cache(maxsize=512)
def _jinja2_template(text):
    return _jinja2_env().from_string(text)


def _render_text(text, fmt, variables):
    if fmt == "jinja2":
        if _jinja2_env() is None:
            raise RenderError("a jinja2 text needs the jinja2 package "
                              "(apt-get install python3-jinja2, or pip install jinja2)")
        try:
            return _jinja2_template(text).render(**variables)
        except Exception:  # noqa: BLE001 - the SDK keeps the text on any error
            return text
    try:
        return _fstring(text, variables)
    except Exception:  # noqa: BLE001 - the SDK keeps the text on any error
        return text


def _blocks(blocks, fmt, variables, what):
    for block in _each(blocks, what):
        if isinstance(block, dict) and block.get("type") == "text" \
                and isinstance(block.get("text"), str):
            block["text"] = _render_text(block["text"], fmt, variables)


def _content(value, fmt, variables):
    """A content value in llm_kwargs: a str, or text parts in a list."""
    if isinstance(value, str):
        return _render_text(value, fmt, variables)
    if isinstance(value, list):
        for part in value:
            if not (isinstance(part, dict) and isinstance(part.get("text"), str)):
                continue
            kind = part.get("type", "text")
            if isinstance(kind, (list, dict)):
                raise _Raises("a content part's type is not a string")
            if kind in _TEXT_TYPES:
                part["text"] = _render_text(part["text"], fmt, variables)
    return value


def _parts(parts, fmt, variables, what):
    """Google's parts: every part's str text, whatever its type."""
    for part in _each(parts, what):
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            part["text"] = _render_text(part["text"], fmt, variables)


def _llm_kwargs(kw, fmt, variables):
    if not isinstance(kw, dict):
        raise _Raises("llm_kwargs is not an object")
    for msg in _each(kw.get("messages", []), "llm_kwargs.messages"):
        if isinstance(msg, dict):
            if "content" in msg:
                msg["content"] = _content(msg["content"], fmt, variables)
        elif not isinstance(msg, (str, list, tuple)) or "content" in msg:
            raise _Raises("a message of llm_kwargs is not an object")
    for msg in _each(kw.get("input", []), "llm_kwargs.input"):
        if isinstance(msg, dict) and "content" in msg:
            msg["content"] = _content(msg["content"], fmt, variables)
    if "system" in kw:
        kw["system"] = _content(kw["system"], fmt, variables)
    for key in ("contents", "history"):
        for item in _each(kw.get(key, []), "llm_kwargs." + key):
            if isinstance(item, dict):
                _parts(item.get("parts", []), fmt, variables, f"llm_kwargs.{key}[].parts")
    si = kw.get("system_instruction")
    if si is None and isinstance(kw.get("generation_config"), dict):
        si = kw["generation_config"].get("system_instruction")
    if isinstance(si, dict):
        _parts(si.get("parts", []), fmt, variables, "system_instruction.parts")
    elif isinstance(si, list):
        _parts(si, fmt, variables, "system_instruction")
    if isinstance(kw.get("prompt"), str):
        kw["prompt"] = _render_text(kw["prompt"], fmt, variables)


def render(entry, variables=None):
    """A new dict: the cached entry with its input variables rendered exactly
    as PromptLayer's Python SDK renders its own cached copy (its
    template_cache.render_response), so a team gets from Redis what it got
    from the SDK. No I/O; entry itself is not changed.

    entry: what Client.get returns (or any answer of PromptLayer's template
    endpoints). variables: a dict (or None).

    Rendered: prompt_template's texts (chat messages' text blocks, each in its
    message's template_format; a completion's) and llm_kwargs' texts (OpenAI's
    and Anthropic's messages, system, Responses input, Google parts, prompt;
    all in the first message's format). With llm_kwargs present, rendering
    always happens (a missing variable becomes ""); without llm_kwargs and
    without variables, the entry comes back unrendered. f-string is Python's
    str.format over every field (missing or None -> ""), jinja2 runs in
    jinja2's sandbox with ChainableUndefined; a text that fails to render is
    left as it was, as the SDK leaves it.

    Raises NotRenderable when the SDK would not render the entry locally
    (see is_locally_renderable: PromptLayer must render it, as
    Client.get_rendered does), RenderError for shapes on which the SDK's own
    renderer raises, or when a jinja2 text is to be rendered and jinja2 is
    not installed."""
    if not isinstance(entry, dict):
        raise TypeError("entry must be a dict (what Client.get returns)")
    if variables is not None and not isinstance(variables, _Mapping):
        raise TypeError("variables must be a dict or None")
    out = _copy.deepcopy(entry)
    try:
        why = _refusal(out)
        if why is not None:
            raise NotRenderable("PromptLayer's SDK does not render this template locally: " + why)
        if out.get("llm_kwargs") is not None:
            variables = variables or {}
        elif not variables:
            return out
        pt = out["prompt_template"]
        kind = pt.get("type")
        if kind == "chat":
            msgs = _each(pt.get("messages", []), "prompt_template.messages")
            for msg in msgs:
                _blocks(msg.get("content", []), msg.get("template_format", "f-string"),
                        variables, "a message's content")
            fmt = msgs[0].get("template_format", "f-string") if msgs else "f-string"
        elif kind == "completion":
            fmt = pt.get("template_format", "f-string")
            _blocks(pt.get("content", []), fmt, variables, "prompt_template.content")
        else:
            fmt = "f-string"
        if out.get("llm_kwargs"):
            _llm_kwargs(out["llm_kwargs"], fmt, variables)
    except _Raises as e:
        raise RenderError(f"PromptLayer's SDK cannot render this entry: {e}") from None
    return out


# --- the client ------------------------------------------------------------------

def _flag_refused(status):
    """plcache's rule (src/model/pturl.c pturl_flag_refused): a 4xx that is not
    about the key, the template, time or rate means the API refused
    include_llm_kwargs; the same request without it is answered instead."""
    return 400 <= status < 500 and status not in (401, 403, 404, 408, 429)


class _NoRedirect(_urlrequest.HTTPRedirectHandler):
    """Redirects are answers, not followed: X-API-KEY goes to base_url only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _api_message(body):
    try:
        doc = _json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(doc, dict):
        for key in ("message", "error", "detail"):
            if doc.get(key):
                return str(doc[key])[:200]
    return ""


def _env_bool(value, name):
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{name}: expected true or false")


class Client:
    """Reads prompt templates from plcache's Redis; renders them as
    PromptLayer's SDK does.

    redis_client: a redis-py client (redis.Redis, decode_responses either
    way) on the Redis plcache-webhook writes. prefix: PLCACHE_PREFIX.
    api_key: PromptLayer's API key, to read through on a miss (None: a miss
    is None). base_url: PromptLayer's API. timeout: seconds for each connect
    and each read of an API request. llm_kwargs: ask the API for llm_kwargs
    on a read-through (include_llm_kwargs=true, what plcache caches; False
    is PLCACHE_LLM_KWARGS=false).

    The Client keeps no state but its settings (no copy of any template),
    so one can serve every thread of a process. It never writes the cache:
    only plcache-webhook, `plcache sync` and libplcache write it."""

    def __init__(self, redis_client, prefix="pl:", api_key=None, base_url=DEFAULT_BASE_URL,
                 timeout=5.0, llm_kwargs=True):
        self.redis = redis_client
        self.prefix = prefix
        self.api_key = api_key or None
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.llm_kwargs = bool(llm_kwargs)
        self._opener = _urlrequest.build_opener(_NoRedirect)

    @classmethod
    def from_env(cls, redis_client=None, environ=None, **settings):
        """A Client configured as plcache's programs are: PLCACHE_REDIS_URL
        (used when no redis_client is given; needs redis-py), PLCACHE_PREFIX,
        PROMPTLAYER_API_KEY (or PROMPTLAYER_API_KEY_FILE), PROMPTLAYER_BASE_URL,
        PLCACHE_LLM_KWARGS. Keyword settings win over the environment."""
        env = _os.environ if environ is None else environ
        if redis_client is None:
            import redis  # redis-py
            redis_client = redis.Redis.from_url(
                env.get("PLCACHE_REDIS_URL") or "redis://127.0.0.1:6379/0")
        key = env.get("PROMPTLAYER_API_KEY")
        if not key and env.get("PROMPTLAYER_API_KEY_FILE"):
            with open(env["PROMPTLAYER_API_KEY_FILE"]) as f:
                key = f.read().rstrip("\r\n")
        conf = {"prefix": env.get("PLCACHE_PREFIX") or "pl:", "api_key": key or None,
                "base_url": env.get("PROMPTLAYER_BASE_URL") or DEFAULT_BASE_URL}
        if env.get("PLCACHE_LLM_KWARGS"):
            conf["llm_kwargs"] = _env_bool(env["PLCACHE_LLM_KWARGS"], "PLCACHE_LLM_KWARGS")
        conf.update(settings)
        return cls(redis_client, **conf)

    # -- Redis -----------------------------------------------------------------

    def _cached(self, name, fld):
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        raw = self.redis.hget(self.prefix + "prompt:" + name, fld)  # the one round trip
        if raw is None:
            return None
        try:
            entry = _json.loads(raw)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise PlcacheError(f"{self.prefix}prompt:{name} {fld} is not a JSON object")
        return entry

    # -- the API ----------------------------------------------------------------

    def _request(self, method, name, query=None, body=None):
        """(status, body bytes) of one API request; ApiUnavailable when no
        answer comes."""
        url = self.base_url + "/prompt-templates/" + _urlparse.quote(name, safe="")
        if query:
            url += "?" + "&".join(f"{k}={_urlparse.quote(str(v), safe='')}" for k, v in query)
        headers = {"X-API-KEY": self.api_key, "Accept": "application/json",
                   "User-Agent": "plcache-python"}
        data = None
        if method == "GET":
            headers["Cache-Control"] = "no-cache"
        if body is not None:
            data = _json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = _urlrequest.Request(url, data=data, headers=headers, method=method)
        what = f"PromptLayer {method} /prompt-templates/{name}"
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except _urlerror.HTTPError as e:
            try:
                return e.code, e.read()
            except (OSError, _http_client.HTTPException):
                return e.code, b""
            finally:
                e.close()
        except (OSError, _http_client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise ApiUnavailable(f"{what}: no answer: {reason}") from None

    def _answer(self, status, body, method, name):
        """The API's answer as a dict; None for 404; else the error."""
        what = f"PromptLayer {method} /prompt-templates/{name}"
        if status == 200:
            try:
                doc = _json.loads(body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise ApiError(f"{what}: 200 without a JSON object", status)
            return doc
        if status == 404:
            return None
        msg = f"{what}: {status}"
        detail = _api_message(body)
        if detail:
            msg += f": {detail}"
        if status in (401, 403):
            raise AuthError(msg, status)
        if status in (408, 429) or status >= 500:
            raise ApiUnavailable(msg, status)
        raise ApiError(msg, status)

    def _fetch(self, name, label, version):
        """GET the raw template as plcache's writers do."""
        query = [("label", label)] if label is not None else \
            [("version", version)] if version is not None else []
        if self.llm_kwargs:
            status, body = self._request("GET", name, query + [("include_llm_kwargs", "true")])
            if not _flag_refused(status):
                return self._answer(status, body, "GET", name)
        status, body = self._request("GET", name, query)
        return self._answer(status, body, "GET", name)

    # -- the calls ----------------------------------------------------------------

    def get(self, name, label=None, version=None):
        """The cached template: a dict, the JSON PromptLayer's
        `GET /prompt-templates/<name>?label=..|version=..&include_llm_kwargs=true`
        answers (unrendered prompt_template, llm_kwargs, metadata, version, ...),
        for a release label, a version, or the latest (neither; both is a
        ValueError). Render it with render().

        Cost: one Redis round trip (HGET <prefix>prompt:<name> label:<l> |
        version:<n> | latest); no API request when it is cached.

        On a miss: None without an api_key. With one, one API request
        (GET {base_url}/prompt-templates/<name>?...&include_llm_kwargs=true,
        X-API-KEY, Cache-Control: no-cache), or two when the API refuses the
        flag (a 4xx other than 401/403/404/408/429: asked again without it,
        as plcache does); its answer is returned and NOT written to Redis, so
        every miss asks again until a webhook or `plcache sync` fills the
        cache. None when the API answers 404 (no such template, version or
        label). AuthError for 401/403; ApiUnavailable for 5xx, 408, 429, a
        timeout or a failed connection; ApiError for any other answer.

        On an edit in PromptLayer, plcache-webhook rewrites the field from the
        webhook, and the next get returns the new content: there is no TTL.
        While PromptLayer is down, cached entries are still returned (only a
        miss needs the API). redis-py's errors (Redis down) pass through."""
        fld = field(label, version)
        entry = self._cached(name, fld)
        if entry is not None or self.api_key is None:
            return entry
        return self._fetch(name, label, version)

    def get_rendered(self, name, variables=None, label=None, version=None):
        """The template rendered with `variables` (a dict), as the SDK's
        cached path answers: prompt_template and llm_kwargs (ready for your
        provider client: `create(**prompt["llm_kwargs"])`) rendered.

        Cost: one Redis round trip when the entry is cached and PromptLayer's
        SDK would render it locally (render(); no API request). Otherwise,
        with an api_key, one more, to the API, which renders on PromptLayer's
        side: POST {base_url}/prompt-templates/<name> with
        {"label": ..|"version": .., "input_variables": variables} -- for a
        miss, and for templates the SDK never renders itself (placeholder
        messages, tools of type "variable": NotRenderable) or cannot (a
        RenderError); that answer (the shape of PromptLayer's "Get Prompt
        Template", with provider_base_url and warning) is returned as it
        comes, and nothing is written to Redis. Without an api_key a miss is
        None and such templates raise their NotRenderable/RenderError.

        None when not cached and the API answers 404. Errors as for get().
        Edits: the next call renders the content the webhook wrote. While
        PromptLayer is down, cached, locally renderable templates are still
        rendered; the rest raise ApiUnavailable."""
        if variables is not None and not isinstance(variables, _Mapping):
            raise TypeError("variables must be a dict or None")
        fld = field(label, version)
        entry = self._cached(name, fld)
        if entry is not None:
            try:
                return render(entry, variables)
            except RenderError:
                if self.api_key is None:
                    raise
        elif self.api_key is None:
            return None
        body = {"label": label} if label is not None else \
            {"version": version} if version is not None else {}
        body["input_variables"] = dict(variables) if variables else {}
        status, answer = self._request("POST", name, body=body)
        return self._answer(status, answer, "POST", name)
