#!/usr/bin/python3
"""app.py -- an app server's two calls to plcache, in Python with redis-py.

    /usr/bin/python3 scripts/examples/app.py [NAME [LABEL [VARIABLES_JSON]]]

Reads prompt template NAME (default Hello) at release label LABEL (default
prod) from plcache's Redis cache with one HGET, renders its input variables
(VARIABLES_JSON, default {}) as PromptLayer's SDK renders them, pretends to
call the LLM with it, and logs the request for PromptLayer with one LPUSH;
plcache-worker forwards it. Nothing here waits on PromptLayer. Prints what
it did as JSON.

Only the Redis contract is used (DESIGN.md sections 4 and 6):
    HGET  <prefix>prompt:<name>  label:<label> | version:<n> | latest
    LPUSH <prefix>track          <job: the JSON body of POST /log-request>
through src/python/plcache.py (plcache.Client.get_rendered, plcache.push).

Settings: PLCACHE_REDIS_URL (redis://127.0.0.1:6379/0) and PLCACHE_PREFIX
(pl:), as for the daemons; with PROMPTLAYER_API_KEY set (and
PROMPTLAYER_BASE_URL), a miss, or a template only PromptLayer renders
(placeholder messages), is asked of PromptLayer's API instead. Needs
Debian's python3-redis (apt-get install python3-redis) or `pip install
redis`, and python3-jinja2 for jinja2 templates. The test suite runs it
against the real daemons (tests/system/test_cli.py).
"""
import json
import os
import sys
import time

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                                "python"))
import plcache  # noqa: E402  (src/python/plcache.py)

REDIS = redis.Redis.from_url(os.environ.get("PLCACHE_REDIS_URL", "redis://127.0.0.1:6379/0"),
                             socket_timeout=1.0, socket_connect_timeout=1.0)
PROMPTS = plcache.Client.from_env(REDIS, timeout=2.0)  # PLCACHE_PREFIX, PROMPTLAYER_API_KEY, ...


def fake_llm_call(provider, kwargs):
    """Stands in for openai_client.chat.completions.create(**kwargs) or
    anthropic_client.messages.create(**kwargs): their answers' shapes."""
    if provider == "anthropic":
        return {"id": "msg_example", "type": "message", "role": "assistant", "model": kwargs["model"],
                "content": [{"type": "text", "text": "(the model's answer)"}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 5}}
    return {"id": "chatcmpl-example", "object": "chat.completion", "model": kwargs["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "(the model's answer)"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "Hello"
    label = sys.argv[2] if len(sys.argv) > 2 else "prod"
    variables = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    try:
        # One HGET; rendered here as PromptLayer's SDK renders (f-string, jinja2).
        prompt = PROMPTS.get_rendered(name, variables, label=label)
    except plcache.PlcacheError as e:
        # PromptLayer down or refusing, for a miss or a template only it renders.
        print(f"app.py: {name} label {label}: {e}", file=sys.stderr)
        return 1
    if prompt is None:
        # A miss without an API key: the cache fills from webhooks;
        # `plcache get NAME --label L` reads through, `plcache sync` warms it.
        print(f"app.py: {name} label {label} is not cached", file=sys.stderr)
        return 1
    # The provider-ready arguments PromptLayer built for this version when the
    # template names a model (llm_kwargs); else a plain chat for the example.
    model = ((prompt.get("metadata") or {}).get("model") or {})
    provider = model.get("provider", "openai")
    kwargs = prompt.get("llm_kwargs") or {
        "model": model.get("name", "gpt-4o"),
        "messages": [{"role": "user", "content": "(the prompt's text)"}],
    }
    start = time.time()
    response = fake_llm_call(provider, kwargs)  # your LLM call here
    end = time.time()
    build = (plcache.log_request_from_anthropic if provider == "anthropic"
             else plcache.log_request_from_openai)
    job = build(kwargs, response, start, end, prompt_name=name,
                prompt_version_number=prompt.get("version"), prompt_input_variables=variables,
                tags=["plcache-example"])
    queued = plcache.push(REDIS, job, PROMPTS.prefix)  # one round trip
    print(json.dumps({"prompt": name, "label": label, "version": prompt.get("version"),
                      "queued": queued}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
