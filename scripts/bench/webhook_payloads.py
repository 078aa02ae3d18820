#!/usr/bin/env python3
"""webhook_payloads.py -- unique, signed PromptLayer webhook payloads for
scripts/bench/webhook, written before the load starts.

Writes THREADS files DIR/NAME.1 .. DIR/NAME.THREADS, one per wrk thread so
threads never send each other's payloads. Each line is

    <64 hex digits: HMAC-SHA256 of the body under SECRET> <space> <body>

and bodies are unique over the whole set: payload number k (counted from
--first) carries prompt_template_id k and a name made of the set's nonce and k,
so its canonical text, and so its duplicate-guard key, is its own. The body is
signed as sent (plcache accepts the signature of the raw body as well as that
of the canonical text). Bodies hold no newline, so wrk's Lua script reads one
request per line.

Standard library only; a million payloads take a few seconds.
"""
import argparse
import datetime
import hashlib
import hmac
import os
import sys

# The delivery PromptLayer sends when a prompt template gets a new version
# (another --event-type keeps the same details);
# keys in PromptLayer's order, not sorted, so the receiver's canonical text
# differs from the body as it does in production.
BODY = ('{{"event_type": "{type}", "details": '
        '{{"prompt_template_name": "bench-{nonce}-{k}", "prompt_template_id": {k}, '
        '"prompt_template_version_number": {v}}}, "user_id": 1, "user_name": "x", '
        '"user_email": "x@example.com", "workspace_id": 1, "timestamp": "{ts}"}}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="folder to write into")
    ap.add_argument("--name", required=True, help="file name stem (NAME.1, NAME.2, ...)")
    ap.add_argument("--threads", type=int, required=True, help="files to write, one per wrk thread")
    ap.add_argument("--per-thread", type=int, required=True, help="payloads in each file")
    ap.add_argument("--first", type=int, default=1, help="number of the first payload")
    ap.add_argument("--secret-file", required=True, help="file holding the signing secret")
    ap.add_argument("--event-type", default="prompt_template_version_created",
                    help="event_type of every payload (default prompt_template_version_created)")
    args = ap.parse_args()
    if args.threads < 1 or args.per_thread < 1 or args.first < 0:
        ap.error("--threads and --per-thread must be >= 1, --first >= 0")

    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\n")
    if not secret:
        sys.exit("webhook_payloads.py: the secret file is empty")
    # Stamped now, naive UTC as PromptLayer sends it; the bench gives the
    # receiver a tolerance of a day, so a long soak is never stale.
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    nonce = os.urandom(4).hex()
    mac = hmac.new(secret, digestmod=hashlib.sha256)

    k = args.first
    for t in range(1, args.threads + 1):
        path = os.path.join(args.dir, "%s.%d" % (args.name, t))
        with open(path, "w", encoding="ascii", newline="\n") as out:
            lines = []
            for _ in range(args.per_thread):
                body = BODY.format(type=args.event_type, nonce=nonce, k=k, v=k % 97 + 1, ts=ts)
                h = mac.copy()
                h.update(body.encode("ascii"))
                lines.append(h.hexdigest() + " " + body + "\n")
                k += 1
                if len(lines) == 65536:
                    out.writelines(lines)
                    lines.clear()
            out.writelines(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
