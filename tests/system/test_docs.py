#!/usr/bin/env python3
"""test_docs.py -- the reference lists of README.md and deploy/RUNBOOK.md
against what the built programs print and serve.

The documents keep three lists a program also owns; each is compared with the
program's actual output, and any drift fails, both ways:

- settings: every table whose header is `| setting | <program> ... |` (one
  column per program: its default, `required`, `none`, or `—` when that
  program does not read the setting) against `plcache-webhook --help`,
  `plcache-worker --help` and `plcache --help`. Every cell must agree, and
  between them the tables must name every setting of every program exactly
  once;
- metrics: the tables `| plcache-webhook metric | type | what |` and
  `| plcache-worker metric | ...` against the families (`# TYPE` lines) a
  freshly started daemon serves on /metrics: the same names, the same types,
  the same label names where samples show them;
- commands: the table `| command | what it does |` of the README against the
  command list of `plcache --help`.

Besides, every setting-like name (PLCACHE_*, PROMPTLAYER_*) and every
plcache_* name the two documents mention anywhere must exist: a setting (or
its _FILE), a metric family, or a name include/plcache.h declares; and
every link between them reaches an existing file and heading.
"""
import os
import re
import subprocess
import unittest

import harness as h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOCS = ["README.md", os.path.join("deploy", "RUNBOOK.md")]
BINS = {
    "plcache-webhook": os.environ.get("PLCACHE_WEBHOOK_BIN", ""),
    "plcache-worker": os.environ.get("PLCACHE_WORKER_BIN", ""),
    "plcache": os.environ.get("PLCACHE_CLI_BIN", ""),
}
SETTING_RE = re.compile(r"\b(?:PLCACHE|PROMPTLAYER)_[A-Z0-9_]*[A-Z0-9]\b")
METRIC_RE = re.compile(r"\bplcache_[a-z0-9_]*[a-z0-9]\b")
ABSENT = "—"

HELP = {}   # program -> {setting: "required" | "none" | default text}
TEXT = {}   # doc path -> its text


def help_text(prog, *args):
    path = BINS[prog]
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"{prog}: binary not given (run through meson test)")
    p = subprocess.run([path, *args], capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise RuntimeError(f"{prog} {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p.stdout


def parse_settings(text):
    """{setting: "required" | "none" | default} from a --help text."""
    out = {}
    for m in re.finditer(r"^ {2}--[a-z0-9-]+(?: \S+)?\n {6}((?:PLCACHE|PROMPTLAYER)_[A-Z0-9_]+)"
                         r"(?:(, required)|, default ([^\n]*))?$", text, re.M):
        out[m.group(1)] = ("required" if m.group(2) else
                           m.group(3).strip() if m.group(3) is not None else "none")
    return out


def cells(line):
    """The cells of a markdown table row; `\\|` stays inside a cell."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip().replace("\\|", "|") for c in parts[1:-1]]


def tables(text):
    """Every markdown table of a text: (header cells, [row cells], line number)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if (lines[i].startswith("|") and i + 1 < len(lines)
                and re.fullmatch(r"\|(\s*-+\s*\|)+", lines[i + 1].strip())):
            head, rows, start = cells(lines[i]), [], i + 1
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((head, rows, start))
        else:
            i += 1
    return out


def code(cell):
    """The text of a cell that is one code span, else None."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    return m.group(1) if m else None


def declared_in_header():
    with open(os.path.join(ROOT, "include", "plcache.h"), encoding="utf-8") as f:
        return set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", f.read()))


def setUpModule():
    for prog in BINS:
        HELP[prog] = parse_settings(help_text(prog, "--help"))
        if len(HELP[prog]) < 8:
            raise RuntimeError(f"{prog} --help: could not read its settings")
    for doc in DOCS:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            TEXT[doc] = f.read()


class SettingsCase(unittest.TestCase):
    def settings_rows(self):
        """(doc, line, setting, {program: cell}) of every settings table."""
        out = []
        for doc, text in TEXT.items():
            for head, rows, line in tables(text):
                if head[0] != "setting":
                    continue
                progs = [(i, c) for i, c in enumerate(head) if c in BINS]
                self.assertTrue(progs, f"{doc}:{line}: a settings table names no program")
                for n, row in enumerate(rows):
                    where = f"{doc}:{line + 1 + n}"
                    self.assertEqual(len(row), len(head), f"{where}: {len(row)} cells")
                    name = code(row[0])
                    self.assertIsNotNone(name, f"{where}: {row[0]!r} is not one `SETTING`")
                    out.append((where, name, {p: row[i] for i, p in progs}))
        return out

    def test_every_settings_cell_is_what_the_program_prints(self):
        rows = self.settings_rows()
        self.assertGreaterEqual(len(rows), 30, "the settings tables were not found")
        for where, name, by_prog in rows:
            for prog, cell in by_prog.items():
                with self.subTest(where=where, setting=name, program=prog):
                    has = HELP[prog].get(name)
                    if cell == ABSENT:
                        self.assertIsNone(has, f"{prog} --help lists {name} ({has})")
                        continue
                    self.assertIsNotNone(has, f"{prog} --help does not list {name}")
                    if cell in ("required", "none"):
                        self.assertEqual(cell, has)
                    else:
                        self.assertEqual(code(cell), has, f"cell {cell!r}")

    def test_every_setting_of_every_program_is_in_one_row(self):
        rows = self.settings_rows()
        seen = {}
        for where, name, _ in rows:
            if name in seen:
                self.fail(f"{name} has rows at {seen[name]} and {where}")
            seen[name] = where
        covered = {(p, name) for _, name, by_prog in rows
                   for p, cell in by_prog.items() if cell != ABSENT}
        missing = sorted(f"{p}: {s}" for p, settings in HELP.items() for s in settings
                         if (p, s) not in covered)
        self.assertEqual(missing, [], "settings no docs table gives with their default")

    def test_docs_name_no_setting_the_programs_lack(self):
        known = set().union(*HELP.values())
        known |= {s + "_FILE" for s in known}
        known |= declared_in_header()
        for doc, text in TEXT.items():
            with self.subTest(doc=doc):
                self.assertEqual(sorted(set(SETTING_RE.findall(text)) - known), [])


class MetricsCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.served = {}
        e = h.WebhookEnv(PLCACHE_METRICS_LISTEN=f"127.0.0.1:{h.free_port()}")
        try:
            e.start()
            port = int(e.env["PLCACHE_METRICS_LISTEN"].rsplit(":", 1)[1])
            st, _, body = e.get("/metrics", port)
            if st != 200:
                raise AssertionError(f"webhook /metrics answered {st}")
            cls.served["plcache-webhook"] = families(body.decode())
        finally:
            e.close()
        w = h.WorkerEnv()
        try:
            w.start()
            cls.served["plcache-worker"] = families(w.metrics())
        finally:
            w.close()

    def documented(self, prog):
        """{name: (type, label names or None)} of the docs' table for prog."""
        out = {}
        for doc, text in TEXT.items():
            for head, rows, line in tables(text):
                if head[0] != f"{prog} metric":
                    continue
                self.assertEqual(head[1], "type", f"{doc}:{line}")
                for n, row in enumerate(rows):
                    where = f"{doc}:{line + 1 + n}"
                    m = re.fullmatch(r"`(plcache_[a-z0-9_]+)(?:\{([a-z_,]+)\})?`", row[0])
                    self.assertIsNotNone(m, f"{where}: {row[0]!r}")
                    self.assertNotIn(m.group(1), out, f"{where}: listed twice")
                    labels = set(m.group(2).split(",")) if m.group(2) else set()
                    out[m.group(1)] = (row[1], labels)
        return out

    def test_each_daemon_serves_exactly_the_metrics_its_table_lists(self):
        for prog, served in self.served.items():
            with self.subTest(program=prog):
                doc = self.documented(prog)
                self.assertGreaterEqual(len(doc), 10, f"no metrics table for {prog}")
                self.assertEqual(sorted(set(served) - set(doc)), [],
                                 f"{prog} serves metrics the docs do not list")
                self.assertEqual(sorted(set(doc) - set(served)), [],
                                 f"the docs list metrics {prog} does not serve")
                for name, (typ, labels) in doc.items():
                    s_type, s_labels = served[name]
                    self.assertEqual(typ, s_type, name)
                    if s_labels is not None and typ != "histogram":
                        self.assertEqual(labels, s_labels, f"{name}: label names")

    def test_docs_name_no_metric_the_daemons_lack(self):
        known = set().union(*(set(s) for s in self.served.values())) | declared_in_header()
        for doc, text in TEXT.items():
            with self.subTest(doc=doc):
                self.assertEqual(sorted(set(METRIC_RE.findall(text)) - known), [])


def families(text):
    """{family: (type, label names seen in its samples, or None without samples)}."""
    out = {}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        out[m.group(1)] = (m.group(2), None)
    for m in re.finditer(r"^([a-z_:][a-z0-9_:]*)(?:\{([^}]*)\})? \S+$", text, re.M):
        name = m.group(1)
        if name not in out:
            continue  # a histogram's _bucket, _sum, _count
        keys = set(re.findall(r'([a-z_]+)="', m.group(2) or ""))
        typ, seen = out[name]
        out[name] = (typ, keys if seen is None else seen | keys)
    return out


class CommandsCase(unittest.TestCase):
    def test_the_command_table_is_the_command_list_of_plcache_help(self):
        text = help_text("plcache", "--help")
        m = re.search(r"^Commands:\n((?: {2}.*\n)+)", text, re.M)
        self.assertIsNotNone(m, "plcache --help has no Commands: list")
        helped = []
        for ln in m.group(1).splitlines():
            synopsis = re.split(r"\s{2,}", ln.strip())[0]
            if ln.startswith(" " * 6):
                helped[-1] += " " + synopsis
            else:
                helped.append(synopsis)
        documented = []
        for head, rows, _ in tables(TEXT["README.md"]):
            if head[:2] == ["command", "what it does"]:
                for row in rows:
                    cmd = code(row[0])
                    self.assertIsNotNone(cmd, row[0])
                    self.assertTrue(cmd.startswith("plcache "), cmd)
                    documented.append(cmd[len("plcache "):])
        self.assertGreaterEqual(len(helped), 5)
        self.assertEqual(sorted(set(helped) - set(documented)), [],
                         "commands plcache --help lists and the README does not")
        self.assertEqual(sorted(set(documented) - set(helped)), [],
                         "commands the README lists and plcache --help does not")
        self.assertEqual(len(documented), len(set(documented)), "a command listed twice")


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


class LinksCase(unittest.TestCase):
    def test_every_link_between_the_docs_reaches_a_file_and_a_heading(self):
        checked = 0
        for doc, text in TEXT.items():
            here = os.path.dirname(os.path.join(ROOT, doc))
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target):
                    continue  # a web address
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(here, path)) if path else \
                    os.path.join(ROOT, doc)
                with self.subTest(doc=doc, link=target):
                    self.assertTrue(os.path.exists(full), f"{target}: no such file")
                    if anchor:
                        with open(full, encoding="utf-8") as f:
                            heads = {slug(m) for m in re.findall(r"^#+ (.*)$", f.read(), re.M)}
                        self.assertIn(anchor, heads, f"{target}: no such heading")
                checked += 1
        self.assertGreaterEqual(checked, 10)


if __name__ == "__main__":
    h.main()
