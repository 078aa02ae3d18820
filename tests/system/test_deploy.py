"""test_deploy.py -- deploy/ checked against the real programs, systemd and redis-server.

No Docker engine or Kubernetes cluster runs here, so the Dockerfile, the
compose file and the manifests are checked statically: every file they name
exists in the repository, every PLCACHE_*/PROMPTLAYER_* setting they give a
program is one that program lists in its `--help`, ports and probe paths agree
from the listener setting to the probe and the Service, stop grace periods
outlast PLCACHE_SHUTDOWN_TIMEOUT, the images carry the Debian package of
every library the built programs load, and the sandboxing and security
settings are there. The systemd units go through `systemd-analyze verify`;
deploy/redis/redis.conf is started by the real redis-server and judged by the
real plcache-worker; each deployment's environment starts the real program
until /readyz answers 200, then SIGTERM ends it with status 0. The TLS
tunnel to a managed Redis (deploy/stunnel, its unit, compose.tls.yaml and
the kustomize component k8s/redis-tls) is checked the same way here; that it
works is tests/system/test_redis_tls.py's part.

YAML is read by Debian's python3-yaml in /usr/bin/python3 (the python3 that
runs this file may be another one); scripts/bootstrap installs it.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import unittest

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-yaml
BINS = {
    "plcache-webhook": os.environ.get("PLCACHE_WEBHOOK_BIN", ""),
    "plcache-worker": os.environ.get("PLCACHE_WORKER_BIN", ""),
    "plcache": os.environ.get("PLCACHE_CLI_BIN", ""),
}
# The listener of each daemon: the setting, and what it serves.
LISTEN = {"plcache-webhook": "PLCACHE_LISTEN", "plcache-worker": "PLCACHE_METRICS_LISTEN"}
# Settings other work in progress adds (TLS, Sentinel): allowed in comments
# only, never given to a program until its --help lists them.
NOT_YET = {"PLCACHE_TLS_CERT", "PLCACHE_TLS_KEY", "PLCACHE_MIN_REPLICAS"}
SETTING_RE = re.compile(r"\b(?:PLCACHE|PROMPTLAYER)_[A-Z0-9_]*[A-Z0-9]\b")
# Measured peak RSS (see the comments in deploy/k8s): limits must allow it.
MEASURED_MIB = {"plcache-webhook": 20, "plcache-worker": 30}

HELP = {}      # program -> {"settings": set, "flags": set, "defaults": {}, "endpoints": set}
YAML = {}      # path relative to deploy/ -> list of documents


def rel(path):
    return os.path.relpath(path, DEPLOY)


def deploy_files():
    out = []
    for d, _, names in os.walk(DEPLOY):
        out += [os.path.join(d, n) for n in names]
    return sorted(out)


def parse_help(program, text):
    settings, flags, defaults = set(), set(), {}
    for m in re.finditer(r"^ {2}(--[a-z0-9-]+)[^\n]*\n {6}((?:PLCACHE|PROMPTLAYER)_[A-Z0-9_]+)"
                         r"(?:, default ([^\n]*))?", text, re.M):
        flags.add(m.group(1))
        settings.add(m.group(2))
        if m.group(3) is not None:
            defaults[m.group(2)] = m.group(3).strip()
    for m in re.finditer(r"Also (--[a-z0-9-]+-file) PATH or ((?:PLCACHE|PROMPTLAYER)_[A-Z0-9_]+_FILE)=PATH",
                         text):
        flags.add(m.group(1))
        settings.add(m.group(2))
    endpoints = set(re.findall(r"(/(?:healthz|readyz|metrics))\b", text))
    return {"settings": settings, "flags": flags, "defaults": defaults, "endpoints": endpoints}


def setUpModule():
    for prog, path in BINS.items():
        if not path or not os.access(path, os.X_OK):
            raise RuntimeError(f"{prog}: binary not given (run through meson test)")
        p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
        if p.returncode != 0:
            raise RuntimeError(f"{prog} --help exited {p.returncode}: {p.stderr}")
        HELP[prog] = parse_help(prog, p.stdout)
        if len(HELP[prog]["settings"]) < 5:
            raise RuntimeError(f"{prog} --help: could not read its settings")
    yamls = [f for f in deploy_files() if f.endswith((".yaml", ".yml"))]
    if not os.path.exists(SYSTEM_PYTHON):
        raise RuntimeError(f"{SYSTEM_PYTHON} missing (scripts/bootstrap installs python3-yaml)")
    script = ("import json, sys, yaml\n"
              "out = {}\n"
              "for p in sys.argv[1:]:\n"
              "    with open(p) as f:\n"
              "        out[p] = list(yaml.safe_load_all(f))\n"
              "json.dump(out, sys.stdout)\n")
    p = subprocess.run([SYSTEM_PYTHON, "-c", script] + yamls, capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"YAML did not parse (python3-yaml: scripts/bootstrap): {p.stderr}")
    for path, docs in json.loads(p.stdout).items():
        YAML[rel(path)] = docs


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def listen_port(prog, env):
    """The port a daemon listens on given `env`: its value or --help's default."""
    name = LISTEN[prog]
    return port_of(env.get(name, HELP[prog]["defaults"][name]))


def shutdown_timeout(prog, env):
    return int(env.get("PLCACHE_SHUTDOWN_TIMEOUT", HELP[prog]["defaults"]["PLCACHE_SHUTDOWN_TIMEOUT"]))


def seconds(text):
    m = re.fullmatch(r"(\d+)(s|min|m)?", str(text).strip())
    if not m:
        raise AssertionError(f"not a duration: {text!r}")
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


def url_port_path(url):
    m = re.match(r"https?://[^/:]+:(\d+)(/\S*)", url)
    if not m:
        raise AssertionError(f"not a URL with a port: {url!r}")
    return int(m.group(1)), m.group(2)


# ---------------------------------------------------------------- Dockerfile

def dockerfile(path=os.path.join(DEPLOY, "docker", "Dockerfile")):
    """Stages of deploy/docker/Dockerfile (or `path`): name -> {from, instr: [(INSTR, args)], env, program}."""
    with open(path) as f:
        text = f.read()
    lines, cur = [], ""
    for ln in text.splitlines():
        if not cur and (ln.strip().startswith("#") or not ln.strip()):
            continue
        if ln.strip().startswith("#"):
            continue
        cur += ln.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        lines.append(cur.strip())
        cur = ""
    stages, order, st = {}, [], None
    for ln in lines:
        instr, _, args = ln.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            name = m.group(2) or f"stage{len(order)}"
            base = m.group(1)
            st = {"name": name, "from": base, "instr": [], "env": {}, "program": None, "user": None,
                  "expose": [], "healthcheck": None}
            if base in stages:  # inherits its parent's settings
                parent = stages[base]
                for k in ("env", "user", "program", "healthcheck"):
                    st[k] = dict(parent[k]) if k == "env" else parent[k]
                st["expose"] = list(parent["expose"])
            stages[name] = st
            order.append(name)
            continue
        st["instr"].append((instr, args))
        if instr == "ENV":
            for m in re.finditer(r"(\w+)=(\S+)", args):
                st["env"][m.group(1)] = m.group(2)
        elif instr == "ENTRYPOINT":
            st["program"] = json.loads(args)
        elif instr == "USER":
            st["user"] = args.strip()
        elif instr == "EXPOSE":
            st["expose"] += [int(p.split("/")[0]) for p in args.split()]
        elif instr == "HEALTHCHECK":
            m = re.search(r"CMD\s+(\[.*\])", args)
            st["healthcheck"] = json.loads(m.group(1))
    return stages, order


# compose.yaml (a local Redis) and compose.tls.yaml (a managed Redis through
# the TLS tunnel): each is used on its own, and both are checked alike.
COMPOSE_FILES = ("compose.yaml", "compose.tls.yaml")


def tunnel_dockerfile():
    """The one stage of deploy/stunnel/Dockerfile (the TLS tunnel's image)."""
    stages, order = dockerfile(os.path.join(DEPLOY, "stunnel", "Dockerfile"))
    if len(order) != 1:
        raise AssertionError(f"deploy/stunnel/Dockerfile: one stage expected, found {order}")
    return stages[order[0]]


def compose(name="compose.yaml"):
    return YAML[name][0]


def compose_services():
    """(file, service name, service) of every service of every compose file."""
    return [(f, n, svc) for f in COMPOSE_FILES for n, svc in compose(f)["services"].items()]


def compose_program(svc, stages):
    """The program a compose service runs: its entrypoint, else its image target's."""
    ep = svc.get("entrypoint")
    if ep:
        return os.path.basename(ep[0] if isinstance(ep, list) else shlex.split(ep)[0])
    target = svc.get("build", {}).get("target")
    if target and stages.get(target, {}).get("program"):
        return os.path.basename(stages[target]["program"][0])
    return None


# ---------------------------------------------------------------- Kubernetes

def k8s_docs():
    """The documents of the base (deploy/k8s/*.yaml); components in its
    subfolders (redis-tls) are checked by test_k8s_redis_tls_component."""
    out = []
    for path, docs in YAML.items():
        if os.path.dirname(path) == "k8s":
            out += [(path, d) for d in docs if d]
    return out


def k8s_kind(kind):
    return [d for _, d in k8s_docs() if d.get("kind") == kind]


def configmap_data(name):
    for d in k8s_kind("ConfigMap"):
        if d["metadata"]["name"] == name:
            return d.get("data", {})
    raise AssertionError(f"ConfigMap {name} is referenced but not in deploy/k8s")


def container_env(c):
    env = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(configmap_data(src["configMapRef"]["name"]))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "<from " + ",".join(e.get("valueFrom", {})) + ">")
    return env


def deployments():
    """(deployment, container, program) for every container of every Deployment."""
    out = []
    for d in k8s_kind("Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            out.append((d, c, os.path.basename(c["command"][0])))
    return out


def container_port(c, port):
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"container {c['name']}: no port named {port!r}")


def mebibytes(q):
    m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", str(q))
    if not m:
        raise AssertionError(f"memory quantity not understood: {q!r}")
    n = int(m.group(1))
    return {"Mi": n, "Gi": n * 1024, "M": n * 1e6 / 2**20, "G": n * 1e9 / 2**20}[m.group(2)]


# ---------------------------------------------------------------- systemd

def unit(name):
    """A unit file as [(section, key, value)], continuation lines joined."""
    out, section = [], None
    with open(os.path.join(DEPLOY, "systemd", name)) as f:
        for ln in f:
            ln = ln.strip()
            if not ln or ln.startswith(("#", ";")):
                continue
            if ln.startswith("["):
                section = ln.strip("[]")
                continue
            k, _, v = ln.partition("=")
            out.append((section, k.strip(), v.strip()))
    return out


def unit_env(entries):
    env = {}
    for _, k, v in entries:
        if k == "Environment":
            for word in shlex.split(v):
                name, _, value = word.partition("=")
                env[name] = value
    return env


UNITS = {"plcache-webhook.service": "plcache-webhook", "plcache-worker@.service": "plcache-worker"}
# The TLS tunnel to a managed Redis: its unit, and what that unit runs.
TUNNEL_UNIT = "plcache-redis-tunnel.service"
TUNNEL_SCRIPT = os.path.join(DEPLOY, "stunnel", "plcache-redis-tunnel")
TUNNEL_TEMPLATE = os.path.join(DEPLOY, "stunnel", "redis-tunnel.conf")


def daemon_envs():
    """Every place deploy/ starts a daemon: (where, program, environment)."""
    stages, _ = dockerfile()
    out = []
    for name, st in stages.items():
        if st["program"]:
            out.append((f"Dockerfile stage {name}", os.path.basename(st["program"][0]), dict(st["env"])))
    for file, name, svc in compose_services():
        prog = compose_program(svc, stages)
        if prog in BINS:
            env = {}
            target = svc.get("build", {}).get("target")
            if target:
                env.update(stages[target]["env"])
            env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
            out.append((f"{file} service {name}", prog, env))
    for d, c, prog in deployments():
        out.append((f"k8s Deployment {d['metadata']['name']}", prog, container_env(c)))
    for u, prog in UNITS.items():
        out.append((f"systemd {u}", prog, unit_env(unit(u))))
    return out


class DeployTest(unittest.TestCase):
    def test_every_file_deploy_refers_to_exists(self):
        stages, order = dockerfile()
        c = compose()
        checked = 0
        # Dockerfile: the context is the repository (compose's build.context).
        for st in stages.values():
            for instr, args in st["instr"]:
                if instr in ("COPY", "ADD") and "--from" not in args:
                    srcs = shlex.split(args)[:-1]
                    for s in srcs:
                        self.assertTrue(os.path.exists(os.path.join(ROOT, s)), f"Dockerfile {instr} {s}")
                        checked += 1
        for file, name, svc in compose_services():
            b = svc.get("build")
            if b:
                ctx = os.path.normpath(os.path.join(DEPLOY, b["context"]))
                self.assertEqual(ctx, ROOT, f"{file} {name}: the build context is the repository")
                self.assertTrue(os.path.isfile(os.path.join(ctx, b["dockerfile"])), b["dockerfile"])
                if "target" in b:
                    self.assertIn(b["target"], order, f"{file} {name}: target {b['target']} is a stage")
                checked += 2
            for v in svc.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith((".", "/")):
                    self.assertTrue(os.path.exists(os.path.join(DEPLOY, src)), f"{file} {name} mounts {src}")
                    checked += 1
        # Secret files are the operator's: they live in deploy/secrets, which
        # keeps them out of git.
        for file in COMPOSE_FILES:
            for name, s in compose(file)["secrets"].items():
                path = os.path.normpath(os.path.join(DEPLOY, s["file"]))
                self.assertEqual(os.path.dirname(path), os.path.join(DEPLOY, "secrets"), name)
                checked += 1
        # The tunnel's image copies files of the repository.
        for instr, args in tunnel_dockerfile()["instr"]:
            if instr in ("COPY", "ADD"):
                for src in shlex.split(args)[:-1]:
                    self.assertTrue(os.path.exists(os.path.join(ROOT, src)), f"stunnel Dockerfile {instr} {src}")
                    checked += 1
        with open(os.path.join(DEPLOY, "secrets", ".gitignore")) as f:
            ignore = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        self.assertEqual(ignore[0], "*", "deploy/secrets/.gitignore ignores everything")
        self.assertEqual(set(ignore[1:]), {"!.gitignore"}, "and keeps only itself")
        # Kubernetes: the kustomization's resources, and never the example Secret.
        kust = YAML[os.path.join("k8s", "kustomization.yaml")][0]
        for r in kust["resources"]:
            self.assertTrue(os.path.isfile(os.path.join(DEPLOY, "k8s", r)), f"kustomization: {r}")
            checked += 1
        self.assertNotIn("secret.example.yaml", kust["resources"])
        listed = {os.path.join("k8s", r) for r in kust["resources"]}
        for path, d in k8s_docs():
            if d.get("kind") in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap"):
                self.assertIn(path, listed, f"{path} ({d['kind']}) is applied by the kustomization")
        # Programs: what ExecStart/ENTRYPOINT/command start is a program meson installs.
        installed = {}
        for prog in ("webhook", "worker", "cli"):
            with open(os.path.join(ROOT, "src", prog, "meson.build")) as f:
                mb = f.read()
            self.assertIn("install : true", mb)
            installed[re.search(r"executable\('([^']+)'", mb).group(1)] = prog
        self.assertEqual(set(installed), set(BINS))
        started = [st["program"][0] for st in stages.values() if st["program"]]
        started += [c["command"][0] for _, c, _ in deployments()]
        for u in UNITS:
            started += [shlex.split(v)[0] for _, k, v in unit(u) if k == "ExecStart"]
        self.assertGreaterEqual(len(started), 6)
        for path in started:
            self.assertEqual(os.path.dirname(path), "/usr/local/bin", path)
            self.assertIn(os.path.basename(path), installed, path)
        copies = [a for st in stages.values() for i, a in st["instr"] if i == "COPY" and "--from=build" in a]
        self.assertEqual(copies, ["--from=build /out/usr/local/bin/ /usr/local/bin/"])
        self.assertGreater(checked, 8)

    def test_every_setting_named_in_deploy_is_real(self):
        known = set().union(*(hp["settings"] for hp in HELP.values()))
        seen = 0
        for path in deploy_files():
            with open(path, errors="replace") as f:
                for n, ln in enumerate(f, 1):
                    comment = ln.lstrip().startswith("#") or " # " in ln
                    for name in SETTING_RE.findall(ln):
                        seen += 1
                        if name in NOT_YET and name not in known:
                            self.assertTrue(comment, f"{rel(path)}:{n}: {name} is not a setting yet")
                            continue
                        self.assertIn(name, known, f"{rel(path)}:{n}: {name} is no program's setting")
        self.assertGreater(seen, 20)
        # And each is given only to a program that has it.
        places = daemon_envs()
        self.assertGreaterEqual(len(places), 8)
        for where, prog, env in places:
            for name in env:
                if SETTING_RE.fullmatch(name):
                    self.assertIn(name, HELP[prog]["settings"], f"{where}: {prog} has no {name}")

    def test_each_deployment_environment_starts_the_real_program(self):
        tmp = h.TempDir("plcache-deploy-test-")
        try:
            redis = h.RedisServer(tmp.path).start()
            started = 0
            for where, prog, env in daemon_envs():
                if where.startswith("Dockerfile"):
                    continue  # an image's settings: compose and k8s complete them
                self._start_with(where, prog, env, redis, tmp.path)
                started += 1
            self.assertEqual(started, 8)
            redis.stop()
        finally:
            tmp.cleanup()

    def _start_with(self, where, prog, env, redis, tmp):
        """Runs `prog` with the deployment's settings, only addresses and secret
        paths changed to this machine's: it must become ready and drain on SIGTERM."""
        run = {k: v for k, v in os.environ.items() if not SETTING_RE.fullmatch(k)}
        port = h.free_port()
        for k, v in env.items():
            if k.endswith("_FILE"):
                path = os.path.join(tmp, k.lower())
                with open(path, "w") as f:
                    f.write("secret-a,secret-b\n" if "WEBHOOK" in k else "api-key\n")
                v = path
            elif k == "PLCACHE_REDIS_URL":
                self.assertRegex(v, r"^redis://[^/]+:\d+/\d+$", where)
                v = f"redis://127.0.0.1:{redis.port}/0"
            elif k == LISTEN[prog]:
                v = f"127.0.0.1:{port}"
            elif k == "PROMPTLAYER_BASE_URL":
                self.assertTrue(v.startswith("https://"), where)
                v = f"http://127.0.0.1:{h.free_port()}"
            elif v.startswith("<from"):
                v = "deploy-test-" + prog
            else:  # systemd's specifiers: host name and instance
                v = v.replace("%H", "deploytest").replace("%i", "1")
            run[k] = v
        # Where a deployment keeps a default (systemd: local Redis, the real
        # API), this machine's stand-ins replace it too.
        run[LISTEN[prog]] = f"127.0.0.1:{port}"
        run["PLCACHE_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
        run["PROMPTLAYER_BASE_URL"] = f"http://127.0.0.1:{h.free_port()}"
        # What systemd and compose pass besides the environment is the secret
        # files; a program without any would stop at once (exit 2).
        for need in ("PROMPTLAYER_API_KEY", "PLCACHE_WEBHOOK_SECRET"):
            if need in HELP[prog]["settings"] and need + "_FILE" not in run and need not in run:
                self.fail(f"{where}: {need} (or {need}_FILE) is not given")
        log = open(os.path.join(tmp, prog + ".log"), "w+b")
        p = subprocess.Popen([BINS[prog]], env=run, stdout=log, stderr=log)
        h._started.append(p)
        ready = False
        try:
            try:
                h.wait_until(lambda: p.poll() is None and h.request(port, "GET", "/readyz")[0] == 200,
                             15, what=f"{where}: {prog} /readyz 200")
                ready = h.request(port, "GET", "/healthz")[0] == 200
            except AssertionError:
                pass  # reported below, with the program's log
        finally:
            code = h.stop_process(p, signal.SIGTERM, timeout=40)
            log.seek(0)
            out = log.read().decode(errors="replace")
            log.close()
        self.assertTrue(ready, f"{where}: {prog} did not become ready:\n{out[-2000:]}")
        self.assertEqual(code, 0, f"{where}: {prog} exited {code} on SIGTERM:\n{out[-2000:]}")

    def test_ports_and_probe_paths_agree(self):
        stages, _ = dockerfile()
        # Dockerfile: ENV listener = EXPOSE = HEALTHCHECK.
        for name, st in stages.items():
            if not st["program"]:
                continue
            prog = os.path.basename(st["program"][0])
            if prog not in LISTEN:
                continue
            port = listen_port(prog, st["env"])
            self.assertTrue(st["env"].get(LISTEN[prog], "").startswith("0.0.0.0:"),
                            f"stage {name}: {LISTEN[prog]} reachable from outside the container")
            self.assertEqual(st["expose"], [port], f"stage {name}: EXPOSE")
            hp, path = url_port_path(st["healthcheck"][-1])
            self.assertEqual(hp, port, f"stage {name}: HEALTHCHECK port")
            self.assertIn(path, HELP[prog]["endpoints"], f"stage {name}: HEALTHCHECK path")
        # compose: environment listener = container port = healthcheck.
        for file, name, svc in compose_services():
            prog = compose_program(svc, stages)
            if prog not in LISTEN:
                continue
            env = dict(stages[svc["build"]["target"]]["env"])
            env.update({k: str(v) for k, v in svc["environment"].items()})
            port = listen_port(prog, env)
            hp, path = url_port_path(svc["healthcheck"]["test"][-1])
            self.assertEqual(hp, port, f"{file} {name}: healthcheck port")
            self.assertIn(path, HELP[prog]["endpoints"], f"{file} {name}: healthcheck path")
            published = [int(str(p).split(":")[-1]) for p in svc.get("ports", []) + svc.get("expose", [])]
            self.assertEqual(published, [port], f"{file} {name}: ports")
        # Kubernetes: listener = containerPort = probes = Service targetPort.
        pods = {}
        for d, c, prog in deployments():
            env = container_env(c)
            port = listen_port(prog, env)
            self.assertEqual([p["containerPort"] for p in c["ports"]], [port], d["metadata"]["name"])
            self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
            self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
            for probe in ("readinessProbe", "livenessProbe"):
                self.assertIn(c[probe]["httpGet"]["path"], HELP[prog]["endpoints"])
                self.assertEqual(container_port(c, c[probe]["httpGet"]["port"]), port, probe)
            ann = d["spec"]["template"]["metadata"].get("annotations", {})
            if "prometheus.io/port" in ann:
                self.assertEqual(int(ann["prometheus.io/port"]), port)
                self.assertIn(ann["prometheus.io/path"], HELP[prog]["endpoints"])
            pods[d["metadata"]["name"]] = (d, c)
        services = k8s_kind("Service")
        self.assertEqual(len(services), 1)
        svc = services[0]
        d, c = pods["plcache-webhook"]
        self.assertEqual(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        for p in svc["spec"]["ports"]:
            self.assertEqual(container_port(c, p["targetPort"]),
                             listen_port("plcache-webhook", container_env(c)))
        # systemd: the worker's metrics port is the default unless set per instance.
        self.assertNotIn("PLCACHE_METRICS_LISTEN", unit_env(unit("plcache-worker@.service")))

    def test_stop_grace_outlasts_the_shutdown_timeout(self):
        stages, _ = dockerfile()
        self.assertIn(("STOPSIGNAL", "SIGTERM"), stages["runtime"]["instr"])
        n = 0
        for file, name, svc in compose_services():
            prog = compose_program(svc, stages)
            if prog in LISTEN:
                env = {k: str(v) for k, v in svc["environment"].items()}
                self.assertGreater(seconds(svc["stop_grace_period"]), shutdown_timeout(prog, env) + 5,
                                   f"{file} {name}")
                n += 1
        for d, c, prog in deployments():
            spec = d["spec"]["template"]["spec"]
            pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            pause = int(pre[1]) if pre[:1] == ["sleep"] else 0
            self.assertGreater(spec["terminationGracePeriodSeconds"],
                               shutdown_timeout(prog, container_env(c)) + pause + 5, d["metadata"]["name"])
            n += 1
        for u, prog in UNITS.items():
            e = unit(u)
            stop = [v for _, k, v in e if k == "TimeoutStopSec"]
            self.assertEqual(len(stop), 1, u)
            self.assertGreater(seconds(stop[0]), shutdown_timeout(prog, unit_env(e)) + 5, u)
            self.assertIn(("Service", "KillSignal", "SIGTERM"), e)
            n += 1
        self.assertEqual(n, 8)

    def test_dockerfile_builds_on_bookworm_and_runs_unprivileged(self):
        stages, order = dockerfile()
        build = stages[order[0]]
        self.assertEqual(build["from"], "debian:bookworm")
        run_lines = " ".join(a for i, a in build["instr"] if i == "RUN")
        for needed in ("meson setup", "--buildtype=release", "-Dtests=false", "ninja -C",
                       "meson install", "--destdir /out"):
            self.assertIn(needed, run_lines)
        for pkg in ("libhiredis-dev", "libevent-dev", "libssl-dev", "libjansson-dev", "libcurl4-openssl-dev"):
            self.assertIn(pkg, run_lines)
        finals = [st for st in stages.values() if st["program"]]
        self.assertEqual({os.path.basename(st["program"][0]) for st in finals}, set(LISTEN))
        self.assertEqual(order[-1], "webhook", "the default target is the receiver")
        for st in finals:
            base = st
            while base["from"] in stages:
                base = stages[base["from"]]
            self.assertEqual(base["from"], "debian:bookworm-slim", st["name"])
            self.assertRegex(st["user"] or "", r"^[1-9]\d*:[1-9]\d*$", f"{st['name']}: numeric non-root USER")
        # Every library the built programs load comes from a package the
        # runtime stage installs (or from libc6, always there).
        runtime = stages["runtime"]
        pkgs = set()
        for i, a in runtime["instr"]:
            if i == "RUN" and "apt-get install" in a:
                seg = a.split("apt-get install", 1)[1].split("&&")[0]
                pkgs |= {w for w in seg.split() if not w.startswith("-")}
        self.assertIn("curl", pkgs, "HEALTHCHECK uses curl")
        self.assertIn("ca-certificates", pkgs)
        needed = set()
        for prog, path in BINS.items():
            p = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True)
            needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout))
        self.assertIn("libhiredis.so.0.14", needed)
        cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
        for soname in sorted(needed):
            if soname.startswith(("libasan", "libubsan")):
                continue  # a sanitizer build's, not the release image's
            m = re.search(r"^\s+" + re.escape(soname) + r" \(libc6,x86-64\) => (\S+)", cache, re.M)
            self.assertIsNotNone(m, f"{soname} not in ldconfig's cache")
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(m.group(1))], capture_output=True,
                                   text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", m.group(1)], capture_output=True, text=True)
            pkg = owner.stdout.split(":")[0]
            self.assertTrue(pkg == "libc6" or pkg in pkgs,
                            f"{soname} comes from {pkg}, which the runtime stage does not install")

    def test_compose_wires_redis_config_and_secrets(self):
        c = compose()
        self.assertEqual(set(c["services"]), {"redis", "webhook", "worker"})
        r = c["services"]["redis"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in r["volumes"]}
        conf = r["command"][1]
        self.assertEqual(mounts.get(conf), "./redis/redis.conf", "redis runs with deploy/redis/redis.conf")
        self.assertIn("redis-cli", r["healthcheck"]["test"])
        for name in ("webhook", "worker"):
            svc = c["services"][name]
            self.assertEqual(svc["depends_on"]["redis"]["condition"], "service_healthy")
            self.assertTrue(svc["read_only"])
            self.assertEqual(svc["cap_drop"], ["ALL"])
            self.assertIn(urlhost(svc["environment"]["PLCACHE_REDIS_URL"]), c["services"])
            used = set()
            for k, v in svc["environment"].items():
                if k.endswith("_FILE"):
                    self.assertTrue(v.startswith("/run/secrets/"), f"{name}: {k}")
                    used.add(v[len("/run/secrets/"):])
            self.assertEqual(used, set(svc["secrets"]),
                             f"{name}: every secret mounted is read, and only those")
            self.assertTrue(used <= set(c["secrets"]))
            for k in svc["environment"]:
                self.assertNotIn(k, ("PLCACHE_WEBHOOK_SECRET", "PROMPTLAYER_API_KEY"),
                                 f"{name}: secrets go through files, never the environment")
        self.assertIn("PLCACHE_WEBHOOK_SECRET_FILE", c["services"]["webhook"]["environment"])

    def test_k8s_manifests_are_safe_and_sized(self):
        deps = {d["metadata"]["name"]: (d, c, prog) for d, c, prog in deployments()}
        self.assertEqual(set(deps), {"plcache-webhook", "plcache-worker"})
        self.assertEqual(deps["plcache-webhook"][0]["spec"]["replicas"], 2)
        stages, _ = dockerfile()
        uid = int(stages["webhook"]["user"].split(":")[0])
        secret = [d for d in k8s_kind("Secret")]
        self.assertEqual(len(secret), 1)
        secret = secret[0]
        self.assertTrue(all("REPLACE" in v for v in secret["stringData"].values()),
                        "the example Secret holds placeholders only")
        for name, (d, c, prog) in deps.items():
            spec = d["spec"]["template"]["spec"]
            labels = d["spec"]["template"]["metadata"]["labels"]
            self.assertEqual(d["spec"]["selector"]["matchLabels"], labels)
            psc, csc = spec["securityContext"], c["securityContext"]
            self.assertTrue(psc["runAsNonRoot"])
            self.assertEqual(psc["runAsUser"], uid, f"{name}: the image's user")
            self.assertTrue(csc["readOnlyRootFilesystem"])
            self.assertFalse(csc["allowPrivilegeEscalation"])
            self.assertEqual(csc["capabilities"]["drop"], ["ALL"])
            self.assertNotIn("add", csc["capabilities"])
            res = c["resources"]
            for kind in ("requests", "limits"):
                self.assertIn("cpu", res[kind])
                self.assertGreaterEqual(mebibytes(res[kind]["memory"]), MEASURED_MIB[prog],
                                        f"{name}: {kind}.memory below the measured RSS")
            self.assertLessEqual(mebibytes(res["requests"]["memory"]), mebibytes(res["limits"]["memory"]))
            # Secrets by name: the volume's Secret and keys are the example's,
            # each *_FILE names a mounted key, and no secret is a plain value.
            vols = {v["name"]: v for v in spec["volumes"]}
            files = {}
            for m in c["volumeMounts"]:
                s = vols[m["name"]].get("secret")
                if s:
                    self.assertEqual(s["secretName"], secret["metadata"]["name"])
                    self.assertTrue(m.get("readOnly"))
                    for it in s["items"]:
                        self.assertIn(it["key"], secret["stringData"])
                        files[m["mountPath"] + "/" + it["path"]] = it["key"]
            env = container_env(c)
            file_vars = {k: v for k, v in env.items() if k.endswith("_FILE")}
            self.assertTrue(file_vars, name)
            for k, v in file_vars.items():
                self.assertIn(v, files, f"{name}: {k}={v} is a mounted Secret key")
            self.assertEqual(set(files), set(file_vars.values()), f"{name}: every mounted key is read")
            self.assertNotIn("PROMPTLAYER_API_KEY", env)
            self.assertNotIn("PLCACHE_WEBHOOK_SECRET", env)
            # A PodDisruptionBudget selects these pods.
            pdbs = [p for p in k8s_kind("PodDisruptionBudget")
                    if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
            self.assertEqual(len(pdbs), 1, f"{name}: one PodDisruptionBudget")
            if name == "plcache-webhook":
                self.assertEqual(pdbs[0]["spec"].get("minAvailable"), 1)
        wid = [e for e in deps["plcache-worker"][1]["env"] if e["name"] == "PLCACHE_WORKER_ID"]
        self.assertEqual(wid[0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
                         "each worker pod is a distinct PLCACHE_WORKER_ID")

    def test_systemd_units_are_sandboxed(self):
        required = {
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallArchitectures": "native",
            "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "CapabilityBoundingSet": "",
            "Restart": "on-failure", "DynamicUser": "yes", "RestrictSUIDSGID": "yes",
        }
        for u, prog in UNITS.items():
            e = unit(u)
            svc = {}
            for s, k, v in e:
                if s == "Service":
                    svc.setdefault(k, []).append(v)
            for k, v in required.items():
                self.assertIn(v, svc.get(k, []), f"{u}: {k}={v}")
            self.assertIn("@system-service", svc["SystemCallFilter"])
            self.assertTrue(all(f.startswith("-/etc/plcache/") for f in svc["EnvironmentFile"]), u)
            creds = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in svc["LoadCredential"]}
            env = unit_env(e)
            file_vars = {k: v for k, v in env.items() if k.endswith("_FILE")}
            self.assertEqual({v for v in file_vars.values()}, {"%d/" + c for c in creds},
                             f"{u}: each credential is read through a *_FILE=%d/<name>")
            self.assertTrue(all(p.startswith("/etc/plcache/") for p in creds.values()))
            self.assertNotIn("PROMPTLAYER_API_KEY", env)
        wh = unit("plcache-webhook.service")
        self.assertIn(("Service", "ExecReload", "/bin/kill -HUP $MAINPID"), wh)
        self.assertIn("%i", unit_env(unit("plcache-worker@.service"))["PLCACHE_WORKER_ID"])

    def test_systemd_analyze_verify_passes(self):
        sa = shutil.which("systemd-analyze")
        self.assertIsNotNone(sa, "systemd-analyze missing (scripts/bootstrap installs systemd)")
        tmp = h.TempDir("plcache-units-")
        try:
            names = []
            for u, prog in UNITS.items():
                with open(os.path.join(DEPLOY, "systemd", u)) as f:
                    text = f.read()
                # verify needs ExecStart's binary to exist: the build's stands in
                # for /usr/local/bin's.
                text2 = text.replace("ExecStart=/usr/local/bin/" + prog, "ExecStart=" + BINS[prog])
                self.assertNotEqual(text, text2, u)
                with open(os.path.join(tmp.path, u), "w") as f:
                    f.write(text2)
                names.append(os.path.join(tmp.path, u))
            # A template is verified as itself and as an instance.
            names.append(os.path.join(tmp.path, "plcache-worker@2.service"))
            for n in names:
                p = subprocess.run([sa, "verify", "--man=no", n], capture_output=True, text=True,
                                   timeout=60)
                out = (p.stdout + p.stderr).strip()
                self.assertEqual(p.returncode, 0, f"systemd-analyze verify {os.path.basename(n)}:\n{out}")
                self.assertEqual(out, "", f"systemd-analyze verify {os.path.basename(n)} warns:\n{out}")
            # Above, as on a host without TLS, the daemons' Wants= of the
            # tunnel named a unit that is not installed; now with it beside
            # them (its ExecStart the script in deploy/stunnel).
            with open(os.path.join(DEPLOY, "systemd", TUNNEL_UNIT)) as f:
                text = f.read()
            tunnel = text.replace("ExecStart=/usr/local/bin/plcache-redis-tunnel", "ExecStart=" + TUNNEL_SCRIPT)
            self.assertNotEqual(text, tunnel, TUNNEL_UNIT)
            with open(os.path.join(tmp.path, TUNNEL_UNIT), "w") as f:
                f.write(tunnel)
            for n in [os.path.join(tmp.path, TUNNEL_UNIT)] + names:
                p = subprocess.run([sa, "verify", "--man=no", n], capture_output=True, text=True,
                                   timeout=60)
                out = (p.stdout + p.stderr).strip()
                self.assertEqual(p.returncode, 0, f"systemd-analyze verify {os.path.basename(n)}:\n{out}")
                self.assertEqual(out, "", f"systemd-analyze verify {os.path.basename(n)} warns:\n{out}")
            # And it does find a mistake: the check is not vacuous.
            bad = os.path.join(tmp.path, "plcache-bad.service")
            with open(bad, "w") as f:
                f.write(text2.replace("ProtectSystem=strict", "ProtectSystem=very"))
            p = subprocess.run([sa, "verify", "--man=no", bad], capture_output=True, text=True, timeout=60)
            self.assertIn("plcache-bad.service", p.stdout + p.stderr)
            self.assertIn("very", p.stdout + p.stderr)
        finally:
            tmp.cleanup()

    def test_redis_server_accepts_the_config_and_the_worker_approves(self):
        tmp = h.TempDir("plcache-redisconf-")
        conf = os.path.join(DEPLOY, "redis", "redis.conf")
        port = h.free_port()
        p = subprocess.Popen(["redis-server", conf, "--port", str(port), "--dir", tmp.path,
                              "--daemonize", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        h._started.append(p)
        try:
            def ping():
                if p.poll() is not None:
                    raise AssertionError(f"redis-server exited {p.returncode}: "
                                         f"{p.stdout.read().decode(errors='replace')[-2000:]}")
                cl = h.RedisClient(port)
                try:
                    return cl("PING") == "PONG"
                finally:
                    cl.close()
            h.wait_until(ping, 10, what="redis-server with deploy/redis/redis.conf")
            cl = h.RedisClient(port)
            try:
                def cfg(name):
                    return cl("CONFIG", "GET", name)[1].decode()
                self.assertEqual(cfg("appendonly"), "yes")
                self.assertEqual(cfg("appendfsync"), "everysec")
                self.assertEqual(cfg("maxmemory-policy"), "noeviction")
                self.assertEqual(cfg("timeout"), "0")
                self.assertEqual(cfg("tcp-keepalive"), "60")
                self.assertEqual(cfg("protected-mode"), "yes")
                self.assertGreater(int(cfg("maxmemory")), 0)
                self.assertTrue(os.path.isdir(os.path.join(tmp.path, cfg("appenddirname"))), "AOF written")
            finally:
                cl.close()
            # plcache-worker checks the Redis it is given at start: it must
            # find nothing to warn about.
            mport = h.free_port()
            env = {k: v for k, v in os.environ.items() if not SETTING_RE.fullmatch(k)}
            env.update({"PLCACHE_REDIS_URL": f"redis://127.0.0.1:{port}/0", "PROMPTLAYER_API_KEY": "k",
                        "PROMPTLAYER_BASE_URL": f"http://127.0.0.1:{h.free_port()}",
                        "PLCACHE_METRICS_LISTEN": f"127.0.0.1:{mport}", "PLCACHE_LOG_LEVEL": "info"})
            w = subprocess.Popen([BINS["plcache-worker"]], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
            h._started.append(w)
            h.wait_until(lambda: h.request(mport, "GET", "/readyz")[0] == 200, 10, what="worker ready")
            # The configuration check answers right after the first contact.
            h.wait_until(lambda: cl2_has(port, "pl:track:workers"), 10, what="worker heartbeat")
            self.assertEqual(h.stop_process(w), 0)
            out = w.stdout.read().decode(errors="replace")
            self.assertNotIn("EVICT", out)
            self.assertNotIn("NOTHING ON DISK", out)
            self.assertNotIn("snapshots only", out)
            self.assertNotIn("cannot read Redis's configuration", out)
            self.assertEqual(h.stop_process(p), 0, "redis-server stops cleanly on SIGTERM")
        finally:
            h.stop_process(p)
            tmp.cleanup()

    # ------------------------------------------------------------ TLS tunnel

    def test_tunnel_unit_is_sandboxed_like_plcache_and_the_daemons_follow_it(self):
        e = unit(TUNNEL_UNIT)
        svc, unit_sec = {}, {}
        for sec, k, v in e:
            (svc if sec == "Service" else unit_sec).setdefault(k, []).append(v)
        # Every sandbox setting of plcache's own unit, the same.
        own = ("Type", "ExecStart", "ExecReload", "EnvironmentFile", "Environment", "LoadCredential",
               "KillSignal", "KillMode", "TimeoutStopSec", "Restart", "RestartSec",
               "RestartPreventExitStatus", "LimitNOFILE")
        sandbox = [(k, v) for sec, k, v in unit("plcache-webhook.service") if sec == "Service" and k not in own]
        self.assertGreater(len(sandbox), 20)
        for k, v in sandbox:
            self.assertIn(v, svc.get(k, []), f"{TUNNEL_UNIT}: {k}={v}")
        self.assertEqual(svc["ExecStart"], ["/usr/local/bin/plcache-redis-tunnel"])
        self.assertEqual(svc["Restart"], ["always"])
        self.assertEqual(svc["RestartPreventExitStatus"], ["2"], "a bad setting is not retried in a loop")
        # Idle without its settings file, so installing it changes nothing for a plain Redis.
        self.assertEqual(unit_sec["ConditionPathExists"], svc["EnvironmentFile"])
        self.assertTrue(svc["EnvironmentFile"][0].startswith("/etc/plcache/"))
        creds = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in svc["LoadCredential"]}
        env = unit_env(e)
        self.assertEqual(env["REDIS_TLS_CA"], "%d/" + next(iter(creds)), "the CA comes as a credential")
        self.assertTrue(all(p.startswith("/etc/plcache/") for p in creds.values()))
        self.assertLessEqual(set(env), tunnel_script_settings(), "settings the script reads")
        # The template where the unit's comment installs it, which is the script's default.
        with open(os.path.join(DEPLOY, "systemd", TUNNEL_UNIT)) as f:
            header = f.read()
        self.assertIn("install -D -m 0644 deploy/stunnel/redis-tunnel.conf " + env["REDIS_TLS_TEMPLATE"], header)
        self.assertIn("install -m 0755 deploy/stunnel/plcache-redis-tunnel /usr/local/bin/", header)
        with open(TUNNEL_SCRIPT) as f:
            self.assertIn("template=" + env["REDIS_TLS_TEMPLATE"], f.read())
        # The daemons want it and start after it (so they stop before it).
        for u in UNITS:
            after = " ".join(v for sec, k, v in unit(u) if sec == "Unit" and k == "After").split()
            wants = " ".join(v for sec, k, v in unit(u) if sec == "Unit" and k == "Wants").split()
            self.assertIn(TUNNEL_UNIT, after, u)
            self.assertIn(TUNNEL_UNIT, wants, u)

    def test_tunnel_image_runs_the_script_unprivileged(self):
        st = tunnel_dockerfile()
        self.assertEqual(st["from"], "debian:bookworm-slim")
        self.assertEqual(st["program"], ["/usr/local/bin/plcache-redis-tunnel"])
        stages, _ = dockerfile()
        self.assertEqual(st["user"], stages["webhook"]["user"], "plcache's pods run as this user too")
        run = " ".join(a for i, a in st["instr"] if i == "RUN")
        self.assertIn("stunnel4", run)
        copies = {shlex.split(a)[0]: shlex.split(a)[1] for i, a in st["instr"] if i == "COPY"}
        self.assertEqual(copies, {"deploy/stunnel/plcache-redis-tunnel": "/usr/local/bin/plcache-redis-tunnel",
                                  "deploy/stunnel/redis-tunnel.conf": "/usr/local/share/plcache/redis-tunnel.conf"})
        with open(TUNNEL_SCRIPT) as f:
            self.assertIn("template=/usr/local/share/plcache/redis-tunnel.conf", f.read())

    def test_compose_tls_reaches_redis_through_the_tunnel(self):
        plain, tls = compose("compose.yaml"), compose("compose.tls.yaml")
        self.assertEqual(set(tls["services"]), {"redis-tunnel", "webhook", "worker"})
        self.assertEqual(tls["name"], plain["name"])
        t = tls["services"]["redis-tunnel"]
        self.assertEqual(t["build"]["dockerfile"], "deploy/stunnel/Dockerfile")
        self.assertTrue(t["read_only"])
        self.assertEqual(t["cap_drop"], ["ALL"])
        self.assertIn("no-new-privileges:true", t["security_opt"])
        self.assertNotIn("ports", t, "plain RESP stays on the compose network")
        tenv = {k: str(v) for k, v in t["environment"].items()}
        self.assertLessEqual(set(tenv), tunnel_script_settings())
        accept = port_of(tenv["TUNNEL_ACCEPT"])
        self.assertEqual([int(p) for p in t["expose"]], [accept])
        for need in ("REDIS_TLS_HOST", "REDIS_TLS_PORT"):
            self.assertRegex(tenv[need], r"^\$\{" + need + r":\?.+\}$", f"{need}: required from the shell")
        ca = tenv["REDIS_TLS_CA"]
        self.assertTrue(ca.startswith("/run/secrets/"), ca)
        self.assertEqual(t["secrets"], [ca[len("/run/secrets/"):]])
        self.assertIn(t["secrets"][0], tls["secrets"])
        for name in ("webhook", "worker"):
            svc = tls["services"][name]
            m = re.fullmatch(r"redis://(?:[^@/]*@)?([^:/]+):(\d+)/\d+", svc["environment"]["PLCACHE_REDIS_URL"])
            self.assertIsNotNone(m, name)
            self.assertEqual((m.group(1), int(m.group(2))), ("redis-tunnel", accept), name)
            self.assertEqual(svc["depends_on"], {"redis-tunnel": {"condition": "service_started"}}, name)
            # Otherwise compose.yaml's service, so the two files cannot drift apart.
            a, b = json.loads(json.dumps(plain["services"][name])), json.loads(json.dumps(svc))
            for d in (a, b):
                del d["environment"]["PLCACHE_REDIS_URL"]
                del d["depends_on"]
            self.assertEqual(a, b, f"compose.tls.yaml {name} differs from compose.yaml's")

    def test_k8s_redis_tls_component(self):
        comp = YAML[os.path.join("k8s", "redis-tls", "kustomization.yaml")][0]
        self.assertEqual(comp["kind"], "Component")
        base = YAML[os.path.join("k8s", "kustomization.yaml")][0]
        self.assertNotIn("components", base, "the default kustomization stays without the tunnel")
        self.assertNotIn("redis-tls", base["resources"])
        added = []
        for r in comp["resources"]:
            path = os.path.join("k8s", "redis-tls", r)
            self.assertTrue(os.path.isfile(os.path.join(DEPLOY, path)), path)
            added += [d for d in YAML[path] if d]
        patch_files = {p["path"] for p in comp["patches"]}
        for path in YAML:
            if os.path.dirname(path) == os.path.join("k8s", "redis-tls"):
                self.assertIn(os.path.basename(path), set(comp["resources"]) | patch_files | {"kustomization.yaml"},
                              f"{path} is used by the component")
        # Render base + component (JSON patches) as kustomize would.
        docs = [json.loads(json.dumps(d)) for _, d in k8s_docs()]
        patched = set()
        for p in comp["patches"]:
            tgt = p["target"]
            hits = [d for d in docs if d.get("kind") == tgt["kind"] and d["metadata"]["name"] == tgt["name"]]
            self.assertEqual(len(hits), 1, f"patch target {tgt}")
            for op in YAML[os.path.join("k8s", "redis-tls", p["path"])][0]:
                json_patch(hits[0], op)
            patched.add((tgt["kind"], tgt["name"]))
        deps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
        self.assertEqual({n for k, n in patched if k == "Deployment"}, set(deps), "every Deployment gets the tunnel")
        tunnel_cm = {d["metadata"]["name"]: d["data"] for d in added if d.get("kind") == "ConfigMap"}
        images = {i["name"] for i in comp.get("images", [])}
        cfg = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "plcache-config"][0]
        m = re.fullmatch(r"redis://(?:[^@/]*@)?([^:/]+):(\d+)/\d+", cfg["data"]["PLCACHE_REDIS_URL"])
        self.assertIsNotNone(m, cfg["data"]["PLCACHE_REDIS_URL"])
        base_deps = {d["metadata"]["name"]: d for d in k8s_kind("Deployment")}
        for name, d in deps.items():
            spec = d["spec"]["template"]["spec"]
            self.assertEqual(spec["containers"], base_deps[name]["spec"]["template"]["spec"]["containers"],
                             f"{name}: plcache's container is unchanged")
            sidecars = spec["initContainers"]
            self.assertEqual(len(sidecars), 1, name)
            sc = sidecars[0]
            self.assertEqual(sc["restartPolicy"], "Always", f"{name}: a native sidecar, stopped after plcache")
            self.assertIn(sc["image"], images)
            self.assertEqual(sc["securityContext"], spec["containers"][0]["securityContext"], name)
            for kind in ("requests", "limits"):
                self.assertIn("cpu", sc["resources"][kind])
                self.assertIn("memory", sc["resources"][kind])
            env = {}
            for src in sc.get("envFrom", []):
                env.update(tunnel_cm[src["configMapRef"]["name"]])
            env.update({e["name"]: e["value"] for e in sc.get("env", [])})
            self.assertLessEqual(set(env), tunnel_script_settings(), name)
            self.assertIn("REDIS_TLS_HOST", env)
            self.assertIn("REDIS_TLS_PORT", env)
            self.assertEqual(env["TUNNEL_ACCEPT"].rsplit(":", 1)[0], "127.0.0.1", "the pod's loopback only")
            self.assertEqual((m.group(1), int(m.group(2))), ("127.0.0.1", port_of(env["TUNNEL_ACCEPT"])),
                             "plcache-config points at the sidecar")
            # The CA file is a key of a mounted ConfigMap.
            vols = {v["name"]: v for v in spec["volumes"]}
            ca = env["REDIS_TLS_CA"]
            found = False
            for vm in sc["volumeMounts"]:
                v = vols[vm["name"]]
                self.assertTrue(vm.get("readOnly"))
                for it in v.get("configMap", {}).get("items", []):
                    found |= vm["mountPath"] + "/" + it["path"] == ca
            self.assertTrue(found, f"{name}: REDIS_TLS_CA={ca} is a mounted ConfigMap key")


def tunnel_script_settings():
    """The environment deploy/stunnel/plcache-redis-tunnel reads."""
    with open(TUNNEL_SCRIPT) as f:
        names = set(re.findall(r"\$\{((?:REDIS_TLS|TUNNEL)_[A-Z_]+|STUNNEL)\b", f.read()))
    if len(names) < 5:
        raise AssertionError(f"{TUNNEL_SCRIPT}: settings not found ({names})")
    return names


def json_patch(doc, op):
    """Applies one RFC 6902 add/replace operation to doc, in place."""
    keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].split("/")[1:]]
    parent = doc
    for k in keys[:-1]:
        parent = parent[int(k)] if isinstance(parent, list) else parent[k]
    last = keys[-1]
    if op["op"] == "add" and isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), op["value"])
    elif op["op"] in ("add", "replace"):
        if op["op"] == "replace" and last not in parent:
            raise AssertionError(f"replace {op['path']}: nothing there")
        parent[last] = op["value"]
    else:
        raise AssertionError(f"patch op {op['op']} not understood")


def cl2_has(port, key):
    c = h.RedisClient(port)
    try:
        return c("EXISTS", key) == 1
    finally:
        c.close()


def urlhost(url):
    return re.match(r"redis://(?:[^@/]*@)?([^:/]+)", url).group(1)


if __name__ == "__main__":
    h.main()
