#!/usr/bin/env python3
"""tap_summary.py -- count test cases in meson's testlog.json files.

Every test program speaks TAP. A case is a TAP line: "ok" passes, "not ok"
fails, "# SKIP" is skipped. A program that failed (crash, timeout, non-zero
exit) without a "not ok" line counts as one failed case. Prints the failures,
then one last line "N passed, M failed[, K skipped]"; exits 1 on any failure.
"""
import json
import re
import sys

TAP = re.compile(r"^(not ok|ok)\b[^#]*(#\s*(\w+))?", re.I)

passed = failed = skipped = 0
failures = []
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        t = json.loads(line)
        name = t["name"]
        p = f = s = 0
        for out in (t.get("stdout") or "").splitlines():
            m = TAP.match(out.strip())
            if not m:
                continue
            directive = (m.group(3) or "").lower()
            if directive == "skip":
                s += 1
            elif m.group(1).lower() == "ok":
                p += 1
            else:
                f += 1
                failures.append(f"{path.split('/')[0]}: {name}: {out.strip()}")
        if t["result"] == "SKIP":
            s = max(s, 1)
        elif t["result"] not in ("OK", "EXPECTEDFAIL") and f == 0:
            f = 1
            failures.append(f"{path.split('/')[0]}: {name}: {t['result']}")
        elif t["result"] == "OK" and p + f + s == 0:
            # A program that said nothing proves nothing.
            f = 1
            failures.append(f"{path.split('/')[0]}: {name}: no TAP output")
        passed += p
        failed += f
        skipped += s

for line in failures:
    print("FAILED " + line)
summary = f"{passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} skipped"
print(summary)
sys.exit(1 if failed else 0)
