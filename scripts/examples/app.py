#!/usr/bin/python3
"""app.py -- an app server's two calls to plcache, in Python with redis-py.

    /usr/bin/python3 scripts/examples/app.py [NAME [LABEL]]

Reads prompt template NAME (default Hello) at release label LABEL (default
prod) from plcache's Redis cache with one HGET, pretends to call the LLM with
it, and logs the request for PromptLayer with one LPUSH; plcache-worker
forwards it. Nothing here waits on PromptLayer. Prints what it did as JSON.

Only the Redis contract is used (DESIGN.md sections 4 and 6):
    HGET  <prefix>prompt:<name>  label:<label> | version:<n> | latest
    LPUSH <prefix>track          <job: the JSON body of POST /log-request>

Settings: PLCACHE_REDIS_URL (redis://127.0.0.1:6379/0) and PLCACHE_PREFIX
(pl:), as for the daemons. Needs Debian's python3-redis (apt-get install
python3-redis) or `pip install redis`. The test suite runs it against the
real daemons (tests/system/test_cli.py).
"""
import json
import os
import sys
import time

import redis

REDIS = redis.Redis.from_url(os.environ.get("PLCACHE_REDIS_URL", "redis://127.0.0.1:6379/0"),
                             socket_timeout=1.0, socket_connect_timeout=1.0)
PREFIX = os.environ.get("PLCACHE_PREFIX", "pl:")


def get_prompt(name, label=None, version=None):
    """The template's JSON (a dict) at a label, a version or latest; None on a miss."""
    field = f"label:{label}" if label else f"version:{version}" if version else "latest"
    raw = REDIS.hget(f"{PREFIX}prompt:{name}", field)  # one round trip
    return json.loads(raw) if raw is not None else None


def track(job):
    """Queues one log job (a dict) for plcache-worker; returns the queue's length."""
    return REDIS.lpush(f"{PREFIX}track", json.dumps(job))  # one round trip


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "Hello"
    label = sys.argv[2] if len(sys.argv) > 2 else "prod"
    prompt = get_prompt(name, label=label)
    if prompt is None:
        # A miss: the cache fills from webhooks; `plcache get NAME --label L`
        # reads through to the API, `plcache sync` warms everything.
        print(f"app.py: {name} label {label} is not cached", file=sys.stderr)
        return 1
    start = time.time()
    output = {"role": "assistant", "content": "(the model's answer)"}  # your LLM call here
    end = time.time()
    queued = track({
        "provider": "openai",
        "model": "gpt-4o",
        "input": prompt.get("prompt_template"),
        "output": output,
        "request_start_time": start,
        "request_end_time": end,
        "prompt_name": name,
        "prompt_version_number": prompt.get("version"),
        "tags": ["plcache-example"],
    })
    print(json.dumps({"prompt": name, "label": label, "version": prompt.get("version"),
                      "queued": queued}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
