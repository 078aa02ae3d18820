#!/usr/bin/env python3
"""render_oracle.py -- checks pyfmt.c, fstr.c and render.c against Python itself.

Generates, from a fixed seed, many thousands of cases and sends each through
render_filter (argv[1]):

  - JSON values (strings with quotes, controls, non-printables, astral
    characters; ints to 64 bits; floats across the whole double range; bools,
    null, nested lists and dicts): str(), repr(), ascii() must equal Python's;
  - doubles, inf, nan and -0.0 included: repr() and format(d, spec);
  - values with format specs of every shape (fill, align, sign, z, #, 0,
    width, grouping, precision, type; valid and not): format(v, spec);
  - f-string templates (literals, {{ }}, lone braces, conversions, nested
    spec fields, attribute and index fields, positional and spaced names,
    plus small-alphabet noise) with variable sets, against the SDK's rule:
    string.Formatter().parse, then str.format(**resolved);
  - whole entries (chat and completion templates; llm_kwargs for OpenAI
    messages, Responses input, Anthropic system, Google contents, history and
    system_instruction, prompt; odd shapes), against render_response as the
    SDK's template_cache.py defines it, written out below.

Results must match byte for byte: the text when Python succeeds, "raises"
when it raises. C may answer "unsupported" only where this script can show
the case uses what the C side declares it does not reproduce ('n' format
type, 'c' giving a surrogate, attributes other than real/imag/numerator/
denominator, lists nested past 200, any jinja2 text, shapes on which the SDK
raises, object keys holding NUL, which jansson cannot load); those answers
are counted and reported. jinja2 texts are rendered by jinja2 itself, the
SDK's SandboxedEnvironment(undefined=ChainableUndefined), when this Python
has it (jinja_oracle.py checks jinja.c in depth); without it, entries with a
jinja2 text to render are left out, and counted. "No room" is accepted where Python raises
MemoryError (a width of 2**40; the address space is capped while
expectations are computed, so that Python fails fast there) and required
where Python's text would pass the filter's bound (64 MiB, 16 MiB per text
of an entry).

Entries are compared as json.dumps(ensure_ascii=True) of both sides, the C
side read back with json.loads: jansson writes reals with 17 significant
digits, which read back to the same double.

Output is TAP, one line per category with its case count; exits 1 on any
mismatch. Standard library only, and jinja2 when it is there.
"""

import _string
import argparse
import json
import math
import random
import resource
import string
import struct
import subprocess
import sys

OK, RAISES, UNSUPPORTED, NOROOM = 0, 1, 2, -1
MEMERR = -2  # Python raised MemoryError: C may say "raises" or "no room"
MAX_DEPTH = 200
OUT_MAX = 64 << 20  # render_filter's bound on one answer
TEXT_MAX = 16 << 20  # render.h's RENDER_TEXT_MAX, the bound on one rendered text
AS_LIMIT = 3 << 30  # address space for Python while it computes expectations

# ---- running the C side ---------------------------------------------------


def frame(op, *fields):
    body = op.encode() + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return struct.pack(">I", len(body)) + body


def run_filter(path, records):
    """Sends the framed records; returns [(code, bytes)] in order."""
    proc = subprocess.run([path], input=b"".join(records), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    out = proc.stdout
    res = []
    i = 0
    while i + 5 <= len(out):
        code = out[i] - ord("0")
        (n,) = struct.unpack(">I", out[i + 1:i + 5])
        res.append((code, out[i + 5:i + 5 + n]))
        i += 5 + n
    return proc.returncode, proc.stderr, res


def enc(s):
    return s.encode("utf-8", "surrogatepass")


def jtext(v):
    """JSON text jansson reads back as the same value (ints, finite floats)."""
    return json.dumps(v, ensure_ascii=False, allow_nan=False).encode("utf-8")


def dbits(d):
    return struct.pack(">d", d)


# ---- the Python references ------------------------------------------------


def py_call(fn, *args, limit=OUT_MAX):
    """(OK, text), (RAISES, None), (MEMERR, None) where Python runs out of
    memory (a width of 2**40: MemoryError here, as AS_LIMIT bounds it), or
    (NOROOM, None) where the text would pass OUT_MAX."""
    try:
        out = fn(*args)
    except MemoryError:
        return MEMERR, None
    except Exception:  # the SDK catches every exception
        return RAISES, None
    if len(out.encode("utf-8", "surrogatepass")) > limit:
        return NOROOM, None
    return OK, out


class Stop(Exception):
    pass


def attr_supported(obj, name):
    if type(obj) in (int, bool):
        return name in ("real", "imag", "numerator", "denominator")
    if type(obj) is float:
        return name in ("real", "imag")
    return False


def depth_of(v):
    if isinstance(v, list):
        return 1 + max((depth_of(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth_of(x) for x in v.values()), default=0)
    return 0


def format_unsupported(value, spec, result):
    """Whether format(value, spec) == result is an answer C declares it does not give."""
    if result is None:
        return False
    if isinstance(value, (int, float)) and spec.endswith("n"):
        return True  # the 'n' type: locale-dependent
    if any(0xD800 <= ord(c) < 0xE000 for c in result):
        return True  # 'c' gave a lone surrogate
    return depth_of(value) > MAX_DEPTH


class Probe(string.Formatter):
    """str.format again, in Python, noting where C says "unsupported"."""

    def __init__(self):
        self.flag = False

    def get_field(self, field_name, args, kwargs):
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, i in rest:
            if is_attr:
                if not attr_supported(obj, i):
                    self.flag = True
                    raise Stop()
                obj = getattr(obj, i)
            else:
                obj = obj[i]
        return obj, first

    def format_field(self, value, format_spec):
        r = format(value, format_spec)
        if format_unsupported(value, format_spec, r):
            self.flag = True
        return r


def resolve(t, variables):
    """The SDK's resolved dict; raises as Formatter().parse does."""
    resolved = {}
    for _lit, name, _spec, _conv in string.Formatter().parse(t):
        if name:
            v = variables.get(name)
            resolved[name] = v if v is not None else ""
    return resolved


def fstr_ref(t, variables, limit=OUT_MAX):
    """(code, text, may_be_unsupported) for the SDK's f-string rule."""
    try:
        resolved = resolve(t, variables)
    except Exception:
        return RAISES, None, False
    code, out = py_call(lambda: t.format(**resolved), limit=limit)
    probe = Probe()
    try:
        probe.vformat(t, (), resolved)
    except Exception:
        pass
    return code, out, probe.flag


# The SDK's render_response and is_locally_renderable, as template_cache.py
# defines them, written out here; Python's own exceptions on odd shapes are
# the SDK's.


class Jinja(Exception):
    pass


try:
    import jinja2
    import jinja2.sandbox
    JINJA_ENV = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)
except ImportError:
    JINJA_ENV = None


def jinja_text(t, variables):
    """The SDK's jinja2 rendering of one text: (OK, text), (RAISES, None),
    (MEMERR, None) or (NOROOM, None) past TEXT_MAX."""
    try:
        out = JINJA_ENV.from_string(t).render(**variables)
    except MemoryError:
        return MEMERR, None
    except Exception:  # the SDK catches every exception
        return RAISES, None
    if len(out.encode("utf-8", "surrogatepass")) > TEXT_MAX:
        return NOROOM, None
    return OK, out


class NoRoom(Exception):
    pass


class EntryRef:
    def __init__(self, variables):
        self.variables = variables
        self.unsupported = False  # an f-string text C may refuse
        self.may_error = False  # a MemoryError C may answer with "no room"

    def text(self, t, fmt):
        if fmt == "jinja2":
            if JINJA_ENV is None:
                raise Jinja()  # no reference: the entry is left out
            self.unsupported = True  # jinja.c may refuse any jinja2 text
            code, out = jinja_text(t, self.variables)
            if code == NOROOM:
                raise NoRoom()
            self.may_error |= code == MEMERR
            return out if code == OK else t
        code, out, flag = fstr_ref(t, self.variables, TEXT_MAX)
        self.unsupported |= flag
        if code == NOROOM:
            raise NoRoom()  # C stops the entry there
        self.may_error |= code == MEMERR  # C may stop there too
        return out if code == OK else t

    def blocks(self, blocks, fmt):
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "text" \
                    and isinstance(block.get("text"), str):
                block["text"] = self.text(block["text"], fmt)

    def prompt_template(self, pt):
        kind = pt.get("type")
        if kind == "chat":
            for m in pt.get("messages", []):
                self.blocks(m.get("content", []), m.get("template_format", "f-string"))
            formats = [m.get("template_format", "f-string") for m in pt.get("messages", [])]
        elif kind == "completion":
            formats = [pt.get("template_format", "f-string")]
            self.blocks(pt.get("content", []), formats[0])
        else:
            formats = ["f-string"]
        return formats[0] if formats else "f-string"

    def content(self, value, fmt):
        if isinstance(value, str):
            return self.text(value, fmt)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("text", 0), str) \
                        and item.get("type", "text") in {"text", "input_text"}:
                    item["text"] = self.text(item["text"], fmt)
        return value

    def parts(self, parts, fmt):
        for part in parts:
            if isinstance(part, dict) and isinstance(part.get("text", 0), str):
                part["text"] = self.text(part["text"], fmt)

    def llm_kwargs(self, kw, fmt):
        for m in kw.get("messages", []):
            if "content" in m:
                m["content"] = self.content(m["content"], fmt)
        for m in kw.get("input", []):
            if isinstance(m, dict) and "content" in m:
                m["content"] = self.content(m["content"], fmt)
        if "system" in kw:
            kw["system"] = self.content(kw["system"], fmt)
        for key in ("contents", "history"):
            for item in kw.get(key, []):
                if isinstance(item, dict):
                    self.parts(item.get("parts", []), fmt)
        si = kw.get("system_instruction")
        if si is None:
            gc = kw.get("generation_config")
            si = gc.get("system_instruction") if isinstance(gc, dict) else None
        if isinstance(si, dict):
            self.parts(si.get("parts", []), fmt)
        elif isinstance(si, list):
            self.parts(si, fmt)
        if isinstance(kw.get("prompt"), str):
            kw["prompt"] = self.text(kw["prompt"], fmt)

    def render(self, response):
        llm = response.get("llm_kwargs")
        if llm is None and not self.variables:
            return response
        pt = response.get("prompt_template")
        if pt:
            fmt = self.prompt_template(pt)
            if response.get("llm_kwargs"):
                self.llm_kwargs(response["llm_kwargs"], fmt)
        return response


def locally_renderable(response):
    pt = response.get("prompt_template")
    if not pt:
        return False
    if pt.get("type") == "chat":
        for m in pt.get("messages", []):
            if m.get("role") == "placeholder":
                return False
    for tool in pt.get("tools") or []:
        if tool.get("type") == "variable":
            return False
    return True


def entry_ref(entry, variables):
    """(status, object, may_be_unsupported) for one entry."""
    try:
        if not locally_renderable(entry):
            return "not_local", None, False
    except Exception:
        return "not_local", None, False
    ref = EntryRef(variables or {})
    try:
        out = ref.render(json.loads(json.dumps(entry)))
    except NoRoom:
        return "noroom", None, ref.unsupported
    except Jinja:
        return "skip", None, True
    except Exception:
        return "unsupported", None, True
    return ("ok_or_error" if ref.may_error else "ok"), out, ref.unsupported


# ---- generating values ----------------------------------------------------

NON_PRINTABLE = ["\x00", "\x07", "\x1b", "\x7f", "\x80", "\x9f", "\xa0", "\xad", "\u034f",
                 "\u061c", "\u1680", "\u180e", "\u2000", "\u200b", "\u200e", "\u2028",
                 "\u2029", "\u202f", "\u2060", "\u3000", "\ufeff", "\ue000", "\uf8ff",
                 "\ufff9", "\ufffe", "\uffff", "\U000e0001", "\U000f0000", "\U0010ffff",
                 "\U0001d173", "\u0378", "\U0003134b"]
PRINTABLE = ["é", "ß", "ÿ", "Ā", "ω", "ж", "א", "ع", "ह", "中", "한", "ｱ", "€", "™", "\u0301",
             "\U0001f600", "\U0001f9d1", "\U00020000", "\U0001d11e", "\u00b5", "\u2126",
             "٣", "߀", "०", "１", "\U0001d7ce"]
DIGITS = "0123456789"
UNI_DIGITS = ["٠", "١", "٣", "۹", "०", "৫", "０", "９", "\U0001d7ce", "\U0001d7d9", "\U000104a1"]


class Gen:
    def __init__(self, rng):
        self.r = rng

    def char(self, braces=False):
        r = self.r
        k = r.randrange(14)
        if k < 5:
            return chr(r.randint(0x20, 0x7E))
        if k == 5:
            return r.choice(["'", '"', "\\", "'", '"'])
        if k == 6:
            return r.choice(["\n", "\t", "\r", "\x00", "\x01", "\x1f"])
        if k == 7:
            return r.choice(NON_PRINTABLE)
        if k == 8:
            return r.choice(PRINTABLE)
        if k == 9:
            return chr(r.randint(0x80, 0x2FF))
        if k == 10:
            cp = r.randint(0x300, 0xFFFF)
            return chr(cp) if not 0xD800 <= cp < 0xE000 else "x"
        if k == 11:
            return chr(r.randint(0x10000, 0x10FFFF))
        if k == 12 and braces:
            return r.choice("{}{}[]!:.")
        return r.choice("abcxyz ")

    def text(self, maxlen=8):
        return "".join(self.char() for _ in range(self.r.randint(0, maxlen)))

    def integer(self):
        r = self.r
        k = r.randrange(7)
        if k == 0:
            return r.choice([0, 1, -1, 2, 10, 65, 255, 0x10FFFF, 0x110000, 0xD800, 0xDFFF, 0xE000])
        if k == 1:
            return r.choice([2 ** 63 - 1, -2 ** 63, 2 ** 53, 2 ** 53 + 1, -2 ** 53 - 1,
                             10 ** 18, -10 ** 18, 2 ** 63 - 1025, 12345678901234567])
        if k == 2:
            return r.randint(-2 ** 63, 2 ** 63 - 1)
        if k == 3:
            return r.randint(-10 ** 6, 10 ** 6)
        if k == 4:
            return r.randint(0, 0x10FFFF)
        return r.randint(-1000, 1000)

    def double(self, special=True):
        r = self.r
        k = r.randrange(10)
        if k == 0:
            v = r.choice([0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1.5, 2.5, 0.125, 1234.5, 1e16, 1e-5,
                          9.995, 0.0001, 1e22, 1e23, 123456789.0, 5e-324, 2.2250738585072014e-308,
                          1.7976931348623157e308, 2 ** 53 + 0.0, 1e15, 9.999999999999999e15,
                          0.30000000000000004, 100.0, 1e100, 1e-100, 99.5, 0.05, 0.005])
        elif k == 1:
            v = struct.unpack(">d", struct.pack(">Q", r.getrandbits(64)))[0]
        elif k == 2:
            v = r.uniform(-1000, 1000)
        elif k == 3:
            v = round(r.uniform(-100, 100), r.randint(0, 4))
        elif k == 4:
            v = r.randint(-10 ** 6, 10 ** 6) / r.choice([1, 2, 4, 8, 10, 100, 1000, 3])
        elif k == 5:
            v = float(r.randint(-2 ** 60, 2 ** 60))
        elif k == 6:
            v = r.choice([1, -1]) * 10.0 ** r.randint(-20, 25) * r.choice([1, 1.5, 9.99, 1.25])
        elif k == 7 and special:
            v = r.choice([math.inf, -math.inf, math.nan, -math.nan])
        else:
            v = r.random() * 10 ** r.randint(-8, 8)
        if not special and not math.isfinite(v):
            v = 1.5
        return -v if r.random() < 0.2 and math.isfinite(v) else v

    def value(self, depth=0):
        r = self.r
        k = r.randrange(10 if depth < 3 else 7)
        if k <= 1:
            return self.text()
        if k == 2:
            return self.integer()
        if k == 3:
            return self.double(special=False)
        if k == 4:
            return r.choice([True, False])
        if k == 5:
            return None
        if k == 6:
            return r.choice(["", "x", "it's", 'say "hi"', "both ' and \"", "\\", "é\n"])
        if k in (7, 8):
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        # jansson cannot hold a NUL in an object key (render_json then says
        # "unsupported"): keys here have none; entries test that apart
        return {self.text(4).replace("\x00", "0"): self.value(depth + 1)
                for _ in range(r.randint(0, 4))}

    # format specs

    def digits(self, lo, hi):
        n = str(self.r.randint(lo, hi))
        if self.r.random() < 0.08:
            n = "".join(self.r.choice(UNI_DIGITS) if c == "1" else c for c in n)
            n = "".join(chr(0x660 + int(c)) if self.r.random() < 0.3 and c.isdigit()
                        and c < "9" else c for c in n)
        if self.r.random() < 0.05:
            n = "0" + n
        return n

    def spec(self, kind=None, nested=False):
        r = self.r
        if r.random() < 0.05:
            return ""
        if r.random() < 0.04:
            return "".join(r.choice("<>=^+- z#0123456789,_.bcdeEfFgGnosxX%{}") for _ in
                           range(r.randint(1, 6)))
        parts = []
        if r.random() < 0.35:
            if r.random() < 0.5:
                parts.append(r.choice(["*", "0", " ", "x", "é", "\U0001f600", "<", "=", ",",
                                       "_", ".", "#", "z", "1", "\x00", "\t", "n", "%"]))
            parts.append(r.choice("<>=^"))
        if r.random() < 0.25:
            parts.append(r.choice("+- "))
        if r.random() < 0.08:
            parts.append("z")
        if r.random() < 0.2:
            parts.append("#")
        if r.random() < 0.2:
            parts.append("0")
        if r.random() < 0.5:
            parts.append(self.digits(0, 25) if r.random() < 0.95 else self.digits(100, 400))
        if r.random() < 0.2:
            parts.append(r.choice([",", "_", ",", "_", ",_", "_,", ",,", "__"]))
        if r.random() < 0.4:
            p = r.random()
            if p < 0.05:
                parts.append(".")
            elif p < 0.1:
                parts.append("." + r.choice(["800", "1100", "1200", "768", "17", "767"]))
            else:
                parts.append("." + self.digits(0, 20))
        if r.random() < 0.75:
            if kind == "str":
                pool = "ssssdcx"
            elif kind == "int":
                pool = "bcdoxXneEfFgG%dddsn"
            elif kind == "float":
                pool = "eEfFgGn%eefgg%dcs"
            else:
                pool = "bcdoxXneEfFgG%s"
            parts.append(r.choice(pool) if r.random() < 0.95 else r.choice(["é", "q", "+", "z"]))
        s = "".join(parts)
        if r.random() < 0.05 and s:
            i = r.randrange(len(s))
            s = s[:i] + r.choice("<+z#0,._s") + s[i:]
        return s


def clip(b, n=160):
    s = repr(b)
    return s if len(s) <= n else s[:n] + "..."


# ---- categories -----------------------------------------------------------


class Category:
    def __init__(self, name, post=None, code1="raise in both"):
        self.name = name
        self.code1 = code1  # what answer 1 means here
        self.post = post  # turns C's text into the form the expectations use
        self.records = []
        self.checks = []  # (input description, expected code, expected bytes, may_unsupported)

    def add(self, record, desc, code, text, may_unsup=False, may_noroom=False):
        """Expects code and text; MEMERR accepts "raises" and "no room"."""
        if code == MEMERR:
            code, may_noroom = RAISES, True
        self.records.append(record)
        self.checks.append((desc, code, text, may_unsup, may_noroom))


def check(path, cat, tapno):
    rc, err, got = run_filter(path, cat.records)
    problems = []
    if rc != 0:
        problems.append("render_filter exited %d: %s" % (rc, err.decode(errors="replace")[:200]))
    bad = []
    unsup = raised = noroom = 0
    for i, (desc, code, text, may_unsup, may_noroom) in enumerate(cat.checks):
        if i >= len(got):
            bad.append((desc, "no answer (crash?)"))
            continue
        gcode, gtext = got[i]
        if gcode == OK and cat.post is not None:
            try:
                gtext = cat.post(gtext)
            except ValueError as e:
                gtext = b"(unreadable: %s) " % str(e).encode() + gtext
        if gcode == UNSUPPORTED and may_unsup:
            unsup += 1
            continue
        if gcode == NOROOM and may_noroom:
            noroom += 1
            continue
        if gcode != code:
            bad.append((desc, "python %s %s, C code %d %s" % (
                {OK: "gives", RAISES: "raises"}.get(code, str(code)), clip(text), gcode,
                clip(gtext))))
            continue
        if code == OK and gtext != text:
            at = next((k for k in range(min(len(text), len(gtext))) if text[k] != gtext[k]),
                      min(len(text), len(gtext)))
            bad.append((desc, "outputs differ at byte %d:\n#   python: %s\n#   C:      %s" % (
                at, clip(text[max(0, at - 30):at + 60]), clip(gtext[max(0, at - 30):at + 60]))))
            continue
        raised += code == RAISES
    passed = not problems and not bad
    cat.unsupported = unsup
    print("%s %d - %s: %d cases (%d %s, %d unsupported by C%s)" % (
        "ok" if passed else "not ok", tapno, cat.name, len(cat.checks), raised, cat.code1, unsup,
        ", %d MemoryError in Python, no room in C" % noroom if noroom else ""))
    for p in problems:
        print("# " + p)
    if bad:
        print("# %d mismatches" % len(bad))
        shortest = min(bad, key=lambda b: len(b[0]))
        for label, (desc, msg) in [("first", bad[0]), ("shortest", shortest)][:1 + (shortest is not bad[0])]:
            print("# %s mismatching input: %s" % (label, desc))
            print("#   " + msg)
    sys.stdout.flush()
    return passed, len(cat.checks)


def cat_text_forms(gen, count):
    cat = Category("str/repr/ascii of JSON values match Python's")
    for _ in range(count):
        v = gen.value()
        for op, fn in (("r", repr), ("s", str), ("a", ascii)):
            cat.add(frame(op, jtext(v)), "%s(%s)" % (fn.__name__, clip(v)), OK, enc(fn(v)))
    deep = []
    for d in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 50):
        v = 1
        for _ in range(d):
            v = [v] if len(deep) % 2 == 0 else {"k": v}
        deep.append(v)
    for v in deep:
        cat.add(frame("r", jtext(v)), "repr(depth %d)" % depth_of(v), OK, enc(repr(v)),
                depth_of(v) > MAX_DEPTH)
    return cat


def cat_float_repr(gen, count):
    cat = Category("repr() of doubles (inf, nan, -0.0, random bit patterns)")
    for _ in range(count):
        d = gen.double()
        cat.add(frame("p", dbits(d)), "repr(%r)" % d, OK, enc(repr(d)))
    return cat


def add_format(cat, record, v, spec):
    code, out = py_call(format, v, spec)
    cat.add(record, "format(%s, %r)" % (clip(v, 80), spec), code,
            enc(out) if code == OK else None,
            code == OK and format_unsupported(v, spec, out))


def cat_format_values(gen, count):
    cat = Category("format(value, spec) for str, int, bool, float, None, list, dict")
    for _ in range(count):
        r = gen.r
        k = r.randrange(10)
        if k < 3:
            v, kind = gen.text(), "str"
        elif k < 6:
            v, kind = gen.integer(), "int"
        elif k < 8:
            v, kind = gen.double(special=False), "float"
        elif k == 8:
            v, kind = r.choice([True, False]), "int"
        else:
            v, kind = r.choice([None, [], [1, "a"], {}, {"k": None}]), None
        spec = gen.spec(kind)
        add_format(cat, frame("f", jtext(v), enc(spec)), v, spec)
    return cat


def cat_format_doubles(gen, count):
    cat = Category("format(double, spec) with inf, nan, -0.0 and rounding edges")
    for _ in range(count):
        d = gen.double()
        spec = gen.spec("float")
        add_format(cat, frame("d", dbits(d), enc(spec)), d, spec)
    return cat


# templates

NAMES = ["a", "b", "name", "x_1", "é", "a b", " a ", "a ", "\U0001f600", "0a", "_", "A"]


class TemplateGen:
    def __init__(self, gen):
        self.g = gen
        self.r = gen.r

    def field_name(self, names):
        r = self.r
        k = r.randrange(20)
        base = r.choice(names)
        if k < 9:
            return base
        if k == 9:
            return r.choice(["", "0", "1", "١", "00", "99999999999999999999999"])
        if k == 10:
            return base + r.choice([".real", ".imag", ".numerator", ".denominator", ".upper",
                                    ".x", ".", ".__class__", ".real.imag", ".imag.real"])
        if k == 11:
            return base + "[" + r.choice(["0", "1", "2", "-1", "k", "a", "", " 0", "١",
                                          "0x", "b", "99999999999999999999999"]) + "]"
        if k == 12:
            return base + r.choice(["[0][0]", "[0].real", "[k][0]", "[0]x", "[0", "[a]b",
                                    "[:]", "[!]", "[}]", "[{]", "[0]]", "[0].", "[0][k]"])
        if k == 13:
            return r.choice(["{", "a{b", "a}b"]) if r.random() < 0.3 else base + "]"
        if k == 14:
            return " " + base + " "
        if k == 15:
            return r.choice(["z\x00", "\x00", "a\x00[0]"])  # never a variable: jansson
        return base

    def field(self, names, depth=0):
        r = self.r
        s = "{" + self.field_name(names)
        if r.random() < 0.2:
            s += "!" + r.choice(["r", "s", "a", "r", "s", "a", "z", "", "rr", "é", "}"])
        if r.random() < 0.45:
            spec = self.g.spec()
            if depth == 0 and r.random() < 0.3:
                i = r.randint(0, len(spec))
                inner = self.field(names, depth + 1) if r.random() < 0.8 else "{{"
                spec = spec[:i] + inner + spec[i:]
            elif depth > 0 and r.random() < 0.1:
                spec += "{" + r.choice(names) + "}"
            s += ":" + spec
        if r.random() > 0.02:
            s += "}"
        return s

    def template(self, names):
        r = self.r
        out = []
        for _ in range(r.randint(0, 5)):
            k = r.randrange(10)
            if k < 4:
                out.append(self.g.text(6).replace("{", "{{").replace("}", "}}"))
            elif k < 8:
                out.append(self.field(names))
            elif k == 8:
                out.append(r.choice(["{{", "}}", "{{}}", "{{a}}", "{", "}", "}}}"]))
            else:
                out.append(r.choice(["Hello {name}!", "{a}{a.real}", "{a}{a[0]}", "{b}{b[k]}",
                                     "{a}{a.numerator}{a.denominator:x}{a.imag!r}",
                                     "{b}{b.real:e}{b.imag}", "{a}{a[0].numerator}",
                                     "{a!r:>{b}}", "{b}{a:{b}}", "{a:{b}{b}}", "{a:{{}}}",
                                     "{\"key\": \"value\"}", "{ name }", "{}", "{0}"]))
        return "".join(out)

    def noise(self):
        return "".join(self.r.choice("{}!:[].ars0 xb") for _ in range(self.r.randint(0, 12)))

    def variables(self, names):
        r = self.r
        v = {}
        for n in names:
            k = r.random()
            if k < 0.2:
                continue
            if k < 0.3:
                v[n] = None
            elif k < 0.5:
                v[n] = self.g.text()
            elif k < 0.6:
                v[n] = r.randint(0, 30)  # usable as a width in nested specs
            else:
                v[n] = self.g.value()
        if r.random() < 0.3:
            v["b"] = r.choice([5, 0, "", ">8", "x^9", ".3", "0", None, "k", "*<12", "+", "e",
                               "{<9", "}^7", "{}", "0=+12,.3f", "#_x", "\U0001f600>5", "z"])
        if r.random() < 0.2:
            v["a"] = r.choice([[1, "two", None], {"k": "v", "0": 1}, "xyz", 7, 2.5, True, ""])
        return v


def cat_templates(gen, count):
    cat = Category("f-string templates against Formatter().parse + str.format")
    tg = TemplateGen(gen)
    for _ in range(count):
        names = gen.r.sample(NAMES, gen.r.randint(1, 4)) + ["a", "b"]
        t = tg.template(names)
        variables = tg.variables(names)
        code, out, flag = fstr_ref(t, variables)
        cat.add(frame("t", enc(t), jtext(variables)), "%s with %s" % (clip(t), clip(variables, 120)),
                code, enc(out) if code == OK else None, flag)
    return cat


def cat_noise(gen, count):
    cat = Category("small-alphabet brace noise against str.format")
    tg = TemplateGen(gen)
    for _ in range(count):
        t = tg.noise()
        variables = gen.r.choice([{}, {"a": "xyz", "x": 5}, {"a": [1, 2], "b": None},
                                  {"a": {"r": "v", "s": 1}, " a": 2, "x": 1.5}])
        code, out, flag = fstr_ref(t, variables)
        cat.add(frame("t", enc(t), jtext(variables)), "%r with %r" % (t, variables), code,
                enc(out) if code == OK else None, flag)
    return cat


# entries


class EntryGen:
    def __init__(self, gen):
        self.g = gen
        self.r = gen.r
        self.tg = TemplateGen(gen)
        self.names = ["name", "topic", "a", "b", "n"]

    def text(self):
        r = self.r
        if r.random() < 0.6:
            return r.choice(["Hello {name}", "About {topic}: {a!r}", "{n:>5}|{n:.2f}",
                             "no fields", "{{literal}}", "{name} {missing}", "{a}{a[0]}",
                             "{bad", "{n:d}", "{}", "{topic!s:^20}", "{a.real}"])
        return self.tg.template(self.names)

    def fmt(self):
        r = self.r
        k = r.random()
        if k < 0.75:
            return None  # key left out
        return r.choice(["f-string", "jinja2", None, "F-STRING", "jinja", 3, ""])

    def block(self):
        r = self.r
        k = r.randrange(10)
        if k < 6:
            return {"type": "text", "text": self.text()}
        if k == 6:
            return {"type": "image_url", "image_url": {"url": "http://x/{name}.png"}}
        if k == 7:
            return {"type": "text", "text": r.choice([None, 5, ["{name}"]])}
        if k == 8:
            return r.choice(["{name}", 5, None, ["{name}"]])
        return {"text": self.text()}

    def blocks(self):
        r = self.r
        if r.random() < 0.04:
            return r.choice([None, "{name}", {"type": "text", "text": "{name}"}, 5, ""])
        return [self.block() for _ in range(r.randint(0, 3))]

    def message(self):
        r = self.r
        m = {"role": r.choice(["system", "user", "assistant", "user", "user"])}
        if r.random() < 0.03:
            m["role"] = "placeholder"
        fmt = self.fmt()
        if fmt is not None or r.random() < 0.1:
            m["template_format"] = fmt
        if r.random() < 0.95:
            m["content"] = self.blocks()
        if r.random() < 0.1:
            m["name"] = "{name}"
        return m

    def prompt_template(self):
        r = self.r
        k = r.randrange(12)
        if k < 7:
            pt = {"type": "chat", "messages": [self.message() for _ in range(r.randint(0, 4))]}
            if r.random() < 0.02:
                pt["messages"] = r.choice([None, "x", {"k": 1}, [5], "", {}])
        elif k < 10:
            pt = {"type": "completion", "content": self.blocks()}
            fmt = self.fmt()
            if fmt is not None:
                pt["template_format"] = fmt
        elif k == 10:
            pt = {"type": r.choice(["other", None, 5]), "content": self.blocks()}
        else:
            pt = r.choice([None, {}, [], "x", {"type": "chat"}])
        if isinstance(pt, dict) and r.random() < 0.15:
            pt["tools"] = r.choice([[], None, [{"type": "function", "function": {"name": "{x}"}}],
                                    [{"type": "variable", "name": "t"}], [5], "x", True])
        if isinstance(pt, dict) and r.random() < 0.1:
            pt["input_variables"] = ["name"]
        return pt

    def content_value(self):
        r = self.r
        k = r.randrange(8)
        if k < 3:
            return self.text()
        if k < 6:
            items = []
            for _ in range(r.randint(0, 3)):
                item = {"text": self.text()}
                t = r.random()
                if t < 0.7:
                    item["type"] = r.choice(["text", "input_text", "output_text", "image"])
                elif t < 0.75:
                    item["type"] = r.choice([None, ["text"], {"t": 1}])
                items.append(item if r.random() < 0.9 else r.choice(["{name}", 5, {"text": 5}]))
            return items
        return r.choice([None, 5, {"text": "{name}"}, True])

    def parts(self):
        r = self.r
        if r.random() < 0.05:
            return r.choice([None, "x", 3, {}])
        return [r.choice([{"text": self.text()}, {"text": self.text()}, {"inline_data": {}},
                          "{name}", {"text": 3}]) for _ in range(r.randint(0, 3))]

    def llm_kwargs(self):
        r = self.r
        k = r.randrange(16)
        if k == 0:
            return r.choice([None, {}, [], "x", 0, [1], False])
        kw = {"model": "m", "temperature": r.choice([0.7, 1, 0.1, 1e-7])}
        if r.random() < 0.5:
            kw["messages"] = [
                {"role": "user", "content": self.content_value()} if r.random() < 0.9
                else r.choice([{"role": "x"}, "content", "text", ["content"], [1], 5, None])
                for _ in range(r.randint(0, 3))]
            if r.random() < 0.03:
                kw["messages"] = r.choice([None, "abc", {"content": 1}, {"x": 1}, 5])
        if r.random() < 0.25:
            kw["input"] = [{"role": "user", "content": self.content_value()} if r.random() < 0.9
                           else r.choice(["{name}", 5, None, ["content"]])
                           for _ in range(r.randint(0, 3))]
            if r.random() < 0.05:
                kw["input"] = r.choice(["{name}", None, 4, {"k": 1}])
        if r.random() < 0.3:
            kw["system"] = self.content_value()
        if r.random() < 0.25:
            kw["contents"] = [{"role": "user", "parts": self.parts()} if r.random() < 0.9
                              else r.choice(["x", 5, None]) for _ in range(r.randint(0, 3))]
            if r.random() < 0.05:
                kw["contents"] = r.choice([None, "x", 5])
        if r.random() < 0.2:
            kw["history"] = [{"role": "model", "parts": self.parts()}
                             for _ in range(r.randint(0, 2))]
        if r.random() < 0.25:
            si = r.choice([{"parts": self.parts()}, self.parts(), None, "{name}", {"x": 1}])
            if r.random() < 0.5:
                kw["system_instruction"] = si
            else:
                kw["generation_config"] = r.choice([{"system_instruction": si}, None, "x"])
                if r.random() < 0.3:
                    kw["system_instruction"] = None
        if r.random() < 0.2:
            kw["prompt"] = r.choice([self.text(), 5, None, ["{name}"]])
        return kw

    def entry(self):
        r = self.r
        e = {"id": r.randint(1, 1000), "prompt_template": self.prompt_template()}
        if r.random() < 0.75:
            e["llm_kwargs"] = self.llm_kwargs()
        if r.random() < 0.3:
            e["metadata"] = {"model": {"provider": "openai", "name": "{name}"}}
        e["prompt_name"] = "p{name}"
        return e

    def variables(self):
        r = self.r
        k = r.random()
        if k < 0.15:
            return None
        if k < 0.25:
            return {}
        v = self.tg.variables(self.names)
        if r.random() < 0.3:
            v["n"] = r.choice([3, 2.5, -1, "x", True, None])
        return v


def canonical(obj):
    return json.dumps(obj, ensure_ascii=True, allow_nan=False)


def nul_in_keys(v):
    if isinstance(v, list):
        return any(nul_in_keys(x) for x in v)
    if isinstance(v, dict):
        return any("\x00" in k or nul_in_keys(x) for k, x in v.items())
    return False


def cat_entries(gen, count):
    cat = Category("entries against render_response and is_locally_renderable",
                   lambda b: enc(canonical(json.loads(b))), "not locally renderable in both")
    eg = EntryGen(gen)
    cat.skipped = 0
    for _ in range(count):
        e = eg.entry()
        variables = eg.variables()
        if gen.r.random() < 0.01:
            (variables if variables else e)["nul\x00key"] = 1
        vtext = jtext(variables) if variables is not None else b""  # before jinja2 may change them
        desc = "%s with %s" % (clip(e, 300), clip(variables, 120))
        status, out, flag = entry_ref(e, variables)
        if status == "skip":
            cat.skipped += 1
            continue
        flag = flag or nul_in_keys(e) or nul_in_keys(variables)
        code = {"ok": OK, "ok_or_error": OK, "not_local": 1, "unsupported": UNSUPPORTED,
                "noroom": NOROOM}[status]
        cat.add(frame("e", jtext(e), vtext), desc, code,
                enc(canonical(out)) if code == OK else None, flag or status == "unsupported",
                status == "ok_or_error")
    return cat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", help="path to render_filter")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every case count")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > AS_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, hard))
    rng = random.Random(args.seed)
    gen = Gen(rng)
    n = lambda k: max(1, int(k * args.scale))
    categories = [
        cat_text_forms(gen, n(3000)),
        cat_float_repr(gen, n(5000)),
        cat_format_values(gen, n(20000)),
        cat_format_doubles(gen, n(10000)),
        cat_templates(gen, n(15000)),
        cat_noise(gen, n(10000)),
        cat_entries(gen, n(5000)),
    ]
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))  # the filter may be built with ASan
    print("1..%d" % len(categories))
    sys.stdout.flush()
    failed = 0
    total = 0
    for i, cat in enumerate(categories, 1):
        ok, k = check(args.filter, cat, i)
        total += k
        failed += not ok
        if getattr(cat, "skipped", 0):
            print("# %d entries with a jinja2 text left out: no jinja2 in %s (jinja_oracle "
                  "checks them)" % (cat.skipped, sys.executable))
    print("# seed %d: %d cases in all" % (args.seed, total))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
