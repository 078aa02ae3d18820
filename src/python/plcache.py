"""plcache.py -- plcache for Python app servers: log jobs PromptLayer accepts.

One file, standard library only (plus redis-py for `push`: Debian's
python3-redis, or `pip install redis`). Copy it next to your app, or put
src/python on PYTHONPATH.

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

import datetime as _dt
import json as _json

__all__ = ["log_request_from_openai", "log_request_from_anthropic", "push"]

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
