#!/usr/bin/env python3
"""fuzz_check.py -- run one libFuzzer target and compare its coverage to a floor.

    fuzz_check.py [--seconds S --corpus DIR] TARGET FLOORS SEEDS

Without --seconds (the test in suite "fuzz"): TARGET runs a fixed number of
inputs with a fixed seed, from SEEDS (and its subfolders), into a
throw-away corpus, so that two runs of the same code reach about the same
coverage. With --seconds (scripts/fuzz): it runs that long, growing DIR.

FLOORS holds one line per target: "name runs floor". The coverage is
libFuzzer's "cov:" (edges of instrumented code reached); a floor is set well
under what the runs reach, so that it only fails when the code under test is
no longer instrumented or no longer reached. Prints TAP.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=int)
ap.add_argument("--corpus")
ap.add_argument("target")
ap.add_argument("floors")
ap.add_argument("seeds")
a = ap.parse_args()

name = os.path.basename(a.target)
floors = {}
with open(a.floors) as f:
    for line in f:
        words = line.split("#", 1)[0].split()
        if words:
            floors[words[0]] = (int(words[1]), int(words[2]))
if name not in floors:
    print(f"1..1\nnot ok 1 - {name} has no line in {a.floors}")
    sys.exit(1)
runs, floor = floors[name]

tmp = tempfile.mkdtemp(prefix=f"{name}.")
try:
    corpus = a.corpus or os.path.join(tmp, "corpus")
    os.makedirs(corpus, exist_ok=True)
    dirs = [corpus, a.seeds]  # libFuzzer reads SEEDS and its subfolders
    if a.seconds:
        bound = [f"-max_total_time={a.seconds}"]
        artifacts = corpus
    else:
        # A fixed number of inputs; the time bound is only a guard.
        bound = [f"-runs={runs}", "-seed=1", "-max_total_time=240"]
        artifacts = tmp
    cmd = [a.target, *bound, "-timeout=10", "-rss_limit_mb=4096", "-print_final_stats=1",
           f"-artifact_prefix={artifacts}/", *dirs]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace")
    out = p.stdout
    covs = re.findall(r"\bcov: (\d+)", out)
    execs = re.search(r"stat::number_of_executed_units: (\d+)", out)
    cov = int(covs[-1]) if covs else 0
    n = int(execs.group(1)) if execs else 0
    crashes = [f for f in os.listdir(artifacts) if re.match(r"(crash|leak|timeout|oom)-", f)]

    print("1..2")
    if p.returncode == 0 and not crashes:
        print(f"ok 1 - {name}: {n} inputs, no crash, leak, timeout or abort")
    else:
        print(f"not ok 1 - {name}: exit {p.returncode} after {n} inputs")
        for line in out.splitlines()[-60:]:
            print(f"# {line}")
        for c in crashes:
            print(f"# artifact: {c} (kept in {artifacts})")
    if cov >= floor:
        print(f"ok 2 - {name}: coverage {cov} >= floor {floor}")
    else:
        print(f"not ok 2 - {name}: coverage {cov} < floor {floor}")
    # Reported for scripts/fuzz and for the log.
    print(f"# {name}: cov {cov}, floor {floor}, inputs {n}", file=sys.stderr)
    sys.exit(0 if p.returncode == 0 and not crashes and cov >= floor else 1)
finally:
    # The throw-away corpus goes; a crash found in a test run stays, named above.
    if not any(re.match(r"(crash|leak|timeout|oom)-", f) for f in os.listdir(tmp)):
        shutil.rmtree(tmp, ignore_errors=True)
