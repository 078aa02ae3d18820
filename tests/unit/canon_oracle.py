#!/usr/bin/env python3
"""canon_oracle.py -- checks canon.c against Python's own json module.

Generates, from a fixed seed, thousands of JSON texts written in varied ways
(random whitespace, escaped and raw non-ASCII, astral characters, lone
surrogates, control characters, floats across the whole double range in many
textual forms, big integers, NaN/Infinity, repeated keys, UTF-16/UTF-32 and
BOM encodings) plus mutated and handwritten invalid texts. Each text goes
through canon_filter (argv[1]); for every one the C result must equal
json.dumps(json.loads(text), sort_keys=True).encode() byte for byte, and C
must reject exactly the texts Python rejects.

Output is TAP: one line per category with the number of texts checked, and on
failure a diagnostic with the first mismatching input in repr form. Exits 1 on
any failure. Standard library only.
"""

import argparse
import decimal
import json
import math
import random
import struct
import subprocess
import sys

# ---- running the C side ---------------------------------------------------


def run_filter(path, inputs):
    """Sends every input through canon_filter; returns [(ok, bytes)]."""
    data = b"".join(struct.pack(">I", len(x)) + x for x in inputs)
    proc = subprocess.run([path], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    out = proc.stdout
    res = []
    i = 0
    while i + 5 <= len(out):
        tag = out[i:i + 1]
        (n,) = struct.unpack(">I", out[i + 1:i + 5])
        res.append((tag == b"1", out[i + 5:i + 5 + n]))
        i += 5 + n
    return proc.returncode, proc.stderr, res


def python_canon(text):
    """The reference: canonical bytes, or None when Python rejects the text."""
    try:
        return json.dumps(json.loads(text), sort_keys=True).encode()
    except (ValueError, RecursionError):
        return None


# ---- generating texts -----------------------------------------------------

SHORT_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f",
             "\n": "\\n", "\r": "\\r", "\t": "\\t", "/": "\\/"}


class Gen:
    def __init__(self, rng):
        self.rng = rng

    def ws(self):
        r = self.rng
        if r.random() < 0.7:
            return b""
        return "".join(r.choice(" \t\n\r") for _ in range(r.randint(1, 3))).encode()

    def uhex(self, cp):
        s = "%04x" % cp
        if self.rng.random() < 0.5:
            s = s.upper()
        elif self.rng.random() < 0.3:
            s = "".join(c.upper() if self.rng.random() < 0.5 else c for c in s)
        return ("\\u" + s).encode()

    # strings

    def enc_char(self, ch):
        """One character written in one of the ways Python reads back as it."""
        r = self.rng
        cp = ord(ch)
        if 0xD800 <= cp < 0xE000:  # a lone surrogate: escaped, or raw 3-byte
            if r.random() < 0.6:
                return self.uhex(cp)
            return ch.encode("utf-8", "surrogatepass")
        if ch in SHORT_ESC and (ch in '"\\' or cp < 0x20 or r.random() < 0.5):
            if r.random() < 0.75:
                return SHORT_ESC[ch].encode()
            return self.uhex(cp)
        if cp < 0x20:
            return self.uhex(cp)
        if cp >= 0x10000:
            if r.random() < 0.5:
                return ch.encode()
            v = cp - 0x10000
            return self.uhex(0xD800 | (v >> 10)) + self.uhex(0xDC00 | (v & 0x3FF))
        if cp >= 0x7F and r.random() < 0.5:
            return self.uhex(cp)
        if cp < 0x7F and r.random() < 0.05:
            return self.uhex(cp)
        return ch.encode()

    def rand_char(self):
        r = self.rng
        k = r.randrange(12)
        if k < 4:
            return chr(r.randint(0x20, 0x7E))
        if k == 4:
            return chr(r.randint(0, 0x1F))
        if k == 5:
            return r.choice(['"', "\\", "/", "\x7f", "\x00"])
        if k == 6:
            return chr(r.randint(0x80, 0x7FF))
        if k == 7:
            cp = r.randint(0x800, 0xFFFF)
            return chr(cp if not 0xD800 <= cp < 0xE000 else cp + 0x800)
        if k == 8:
            return chr(r.randint(0x10000, 0x10FFFF))
        if k == 9:
            return chr(r.randint(0xD800, 0xDFFF))
        if k == 10:
            return r.choice(["\ufeff", "\uffff", "\ue000", "\ud7ff", "\U0001f600", "\u2028"])
        return r.choice("aeiouxyz")

    def rand_str(self, maxlen=10):
        return "".join(self.rand_char() for _ in range(self.rng.randint(0, maxlen)))

    def string(self, s=None):
        r = self.rng
        if s is None:
            s = self.rand_str()
        out = [b'"']
        for ch in s:
            out.append(self.enc_char(ch))
            # a high surrogate escape followed by something that does not pair
            if r.random() < 0.02:
                out.append(r.choice([self.uhex(0xD834), self.uhex(0xDD1E), b"\\u0041",
                                     "\udd1e".encode("utf-8", "surrogatepass")]))
        out.append(b'"')
        return b"".join(out)

    # numbers

    def integer(self):
        r = self.rng
        k = r.randrange(6)
        if k == 0:
            return r.choice([b"0", b"-0", b"1", b"-1"])
        if k == 1:
            n = r.randint(1, 400)
        elif k == 2:
            n = r.randint(15, 25)  # around 2**64
        else:
            n = r.randint(1, 12)
        digits = str(r.randint(1, 9)) + "".join(str(r.randint(0, 9)) for _ in range(n - 1))
        return (("-" if r.random() < 0.3 else "") + digits).encode()

    def double(self):
        """A double from all over the range, with the awkward places."""
        r = self.rng
        k = r.randrange(12)
        if k == 0:
            return struct.unpack("<d", struct.pack("<Q", r.getrandbits(64)))[0]
        if k == 1:  # subnormals
            d = struct.unpack("<d", struct.pack("<Q", r.randint(1, (1 << 52) - 1)))[0]
            return -d if r.random() < 0.3 else d
        if k == 2:  # powers of two and their neighbours
            d = math.ldexp(1.0, r.randint(-1074, 1023))
            return r.choice([d, math.nextafter(d, 0), math.nextafter(d, math.inf)])
        if k == 3:  # around 1e16 and 1e-5 / 1e-4 (repr's switch points)
            d = r.choice([1e16, 1e15, 1e17, 9999999999999998.0, 1e-5, 1e-4, 1e-3, 0.0001, 1e22, 1e23])
            for _ in range(r.randint(0, 3)):
                d = math.nextafter(d, r.choice([0, math.inf]))
            return d
        if k == 4:
            return r.choice([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                             2.225073858507201e-308, 1.7976931348623157e308, 0.1, 0.5,
                             1.0, 100.0, 123456789.0, 0.3, 2.0 ** 53, 2.0 ** 53 + 2])
        if k == 5:
            return round(r.uniform(-1000, 1000), r.randint(0, 10))
        if k == 6:
            return float(r.randint(-(2 ** 62), 2 ** 62))
        if k == 7:
            return 10.0 ** r.uniform(-323, 308) * r.choice([1, -1])
        if k == 8:
            return float("%de%d" % (r.randint(1, 99999), r.randint(-330, 310)))
        return r.uniform(-1e6, 1e6) * 10.0 ** r.randint(-30, 30)

    def ensure_float(self, s):
        if not any(c in s for c in ".eE") and s not in ("NaN", "Infinity", "-Infinity"):
            s += self.rng.choice([".0", "e0", "E+00", ".000"])
        return s

    def float_text(self, d=None):
        """A double written in one of many textual forms Python accepts."""
        r = self.rng
        if d is None:
            d = self.double()
        if math.isnan(d):
            return b"NaN"
        if math.isinf(d):
            return b"Infinity" if d > 0 else b"-Infinity"
        k = r.randrange(10)
        if k == 0:
            s = repr(d)
        elif k == 1:
            s = "%.17g" % d
        elif k == 2:
            s = "%.*e" % (r.randint(0, 25), d)
        elif k == 3:  # the exact decimal expansion (up to ~1100 characters)
            s = format(decimal.Decimal(d), "f")
        elif k == 4:  # repr's digits with the point moved and the exponent compensating
            m, e = ("%.16e" % abs(d)).split("e")
            digits = m.replace(".", "").rstrip("0") or "0"
            shift = r.randint(0, 30)
            s = ("-" if d < 0 or (d == 0 and math.copysign(1, d) < 0) else "")
            s += "0." + "0" * shift + digits + "e" + str(int(e) + shift + 1)
        elif k == 5:  # exponent with sign and leading zeros
            m, e = ("%.*e" % (r.randint(0, 17), d)).split("e")
            s = m + r.choice("eE") + ("+" if int(e) >= 0 else "-") + "0" * r.randint(0, 20) + str(abs(int(e)))
        elif k == 6:
            s = "%.*f" % (r.randint(0, 30), d) if abs(d) < 1e30 else repr(d)
        elif k == 7:  # the exact midpoint to the next double: ties go to even
            up = math.nextafter(d, math.inf)
            if math.isinf(up):
                s = repr(d)
            else:
                with decimal.localcontext() as ctx:
                    ctx.prec = 2000
                    mid = (decimal.Decimal(d) + decimal.Decimal(up)) / 2
                    nudge = r.choice([0, 0, 1, -1])
                    if nudge:
                        mid += decimal.Decimal(nudge) * decimal.Decimal(10) ** (mid.adjusted() - 1500)
                s = format(mid, "e")
        elif k == 8:  # arbitrary decimals, past both ends of the range
            n = r.randint(1, 40)
            digits = str(r.randint(1, 9)) + "".join(str(r.randint(0, 9)) for _ in range(n - 1))
            cut = r.randint(1, n)
            s = digits[:cut] + ("." + digits[cut:] if cut < n else "")
            s += "e" + str(r.choice([r.randint(-400, 400), r.randint(-340, -300),
                                     r.randint(290, 320), r.randint(-10 ** 6, 10 ** 6),
                                     10 ** 25 * r.choice([1, -1])]))
            if r.random() < 0.3:
                s = "-" + s
        else:
            s = repr(d)
            if "e" in s and r.random() < 0.5:
                s = s.replace("e", "E")
        return self.ensure_float(s).encode()

    # composite

    KEY_POOL = ["a", "b", "A", "", "event_type", "\u00e9", "\ud800", "\U00010000",
                "\uffff", "\ue000", "\x00", "a\x00b", "a\x00", "key", "\U0001f600", "zz"]

    def key(self):
        r = self.rng
        if r.random() < 0.5:
            return self.string(r.choice(self.KEY_POOL))
        return self.string()

    def scalar(self):
        r = self.rng
        k = r.randrange(10)
        if k < 3:
            return self.string()
        if k < 5:
            return self.integer()
        if k < 8:
            return self.float_text()
        return r.choice([b"true", b"false", b"null", b"NaN", b"Infinity", b"-Infinity"])

    def value(self, depth, maxdepth):
        r = self.rng
        if depth >= maxdepth or r.random() < 0.45:
            return self.scalar()
        if r.random() < 0.5:
            return self.array(depth, maxdepth)
        return self.obj(depth, maxdepth)

    def array(self, depth, maxdepth):
        items = [self.ws() + self.value(depth + 1, maxdepth) + self.ws()
                 for _ in range(self.rng.randint(0, 6))]
        if not items:
            return b"[" + self.ws() + b"]"
        return b"[" + b",".join(items) + b"]"

    def obj(self, depth, maxdepth):
        members = []
        for _ in range(self.rng.randint(0, 7)):
            members.append(self.ws() + self.key() + self.ws() + b":" + self.ws()
                           + self.value(depth + 1, maxdepth) + self.ws())
        if not members:
            return b"{" + self.ws() + b"}"
        return b"{" + b",".join(members) + b"}"

    def payload(self):
        r = self.rng
        maxdepth = r.randint(1, 8)
        k = r.random()
        if k < 0.7:
            body = self.obj(0, maxdepth)
        elif k < 0.85:
            body = self.array(0, maxdepth)
        else:
            body = self.scalar()
        return self.ws() + body + self.ws()

    # invalid texts

    BREAKERS = [b",", b"]", b"}", b"[", b"{", b":", b'"', b"\\", b"\x00", b"\x1f", b"\x7f",
                b"\x80", b"\xff", b"\xc0\x80", b"\xed\xa0", b"\xf4\x90\x80\x80", b"\xe0\x9f\xbf",
                b"e", b"E", b".", b"0", b"-", b"+", b"x", b" ", b"\\u12", b"\\x", b"\xef\xbb\xbf",
                b"\\ud800", b"NaN", b"nul", b"tru", b"\x0b", b"\x0c", b"\xa0"]

    def mutate(self, b):
        r = self.rng
        if not b:
            return r.choice(self.BREAKERS)
        k = r.randrange(8)
        pos = r.randrange(len(b) + 1)
        if k == 0 and len(b) > 1:
            p = r.randrange(len(b))
            return b[:p] + b[p + 1:]
        if k == 1:
            return b[:pos] + r.choice(self.BREAKERS) + b[pos:]
        if k == 2 and len(b) > 1:
            p = r.randrange(len(b))
            return b[:p] + r.choice(self.BREAKERS) + b[p + 1:]
        if k == 3:
            return b[:r.randrange(len(b))]
        if k == 4:
            return b + r.choice([b"x", b",", b"}", b" 1", b"\x00", b"\xff", b"[]", b" \x0c"])
        if k == 5:  # inside a string, after a quote
            quotes = [i for i, c in enumerate(b) if c == 0x22]
            if quotes:
                p = r.choice(quotes) + 1
                return b[:p] + r.choice([b"\x01", b"\x1f", b"\n", b"\xc0\x80", b"\xed\xa0\x80\xed",
                                         b"\xf8\x88\x80\x80\x80", b"\\q", b"\\u00g0", b"\\U0041",
                                         b"\x80", b"\xe2\x82"]) + b[p:]
        if k == 6:  # break a number
            digits = [i for i, c in enumerate(b) if 0x30 <= c <= 0x39]
            if digits:
                p = r.choice(digits)
                return b[:p] + r.choice([b"0", b".", b"e", b"E+", b"-", b".e1", b"00"]) + b[p:]
        return b[:pos] + b[pos:pos + r.randint(1, 8)] + b[pos:]


HANDWRITTEN = [
    b"", b" ", b"{}", b"[]", b'""', b"0", b"-0", b"-0.0", b"1.5", b"01", b"-01", b"00", b"1.",
    b".5", b"1e", b"1e+", b"-", b"+1", b"--1", b"0x10", b"1_000", b"Infinity", b"-Infinity",
    b"+Infinity", b"infinity", b"nan", b"NaN", b"-NaN", b"true", b"True", b"nul", b"null ",
    b" \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n", b"[1,]", b"[,1]", b"{,}", b'{"a"}',
    b'{"a":}', b'{"a" 1}', b'{a:1}', b"{'a':1}", b'{"a":1,}', b'{"a":1 "b":2}', b"[1 2]",
    b'"\\u0000"', b'"\x00"', b'"\x1f"', b'"\x7f"', b'"\\/"', b'"\\a"', b'"\\u12"', b'"\\u123g"',
    b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\udc00"', b'"\\udc00\\ud800"', b'"\\ud800\\ud800\\udc00"',
    b'"\\ud800\\u0041"', b'"\\ud800x"', b'"\\ud800\\n"', b'"\xed\xa0\x80\xed\xb0\x80"',
    b'"\xed\x9f\xbf"', b'"\xee\x80\x80"', b'"\xf0\x90\x80\x80"', b'"\xf4\x8f\xbf\xbf"',
    b'"\xf4\x90\x80\x80"', b'"\xc0\xaf"', b'"\xc1\xbf"', b'"\xe0\x80\xaf"', b'"\xf0\x80\x80\xaf"',
    b'"\xf5\x80\x80\x80"', b'"\xc3"', b'"\xe2\x82"', b'"\x80"', b'"\xbf"', b'"abc', b'"\\"',
    b"\xef\xbb\xbf{}", b"\xef\xbb\xbf\xef\xbb\xbf{}", b"\xef\xbb\xbf", b"\xef\xbb", b" \xef\xbb\xbf1",
    b"\xff\xfe{\x00}\x00", b"\xfe\xff\x00[\x00]", b"{\x00}\x00", b"\x00[\x00]", b"1\x00",
    b"\x001", b"1\x00\x00\x00", b"\x00\x00\x001", b"\xff\xfe\x00\x001\x00\x00\x00",
    b"\x00\x00\xfe\xff\x00\x00\x001", b"\xff\xfe", b"\xff\xfe1", b"\xff\xfe1\x00\x00\xd8",
    b'\xff\xfe"\x00\x00\xd8"\x00', b'\xff\xfe"\x00\x00\xdc\x00\xd8"\x00',
    b'"\x00\x00\x00\x00\xd8\x00\x00\x00\xdc\x00\x00"\x00\x00\x00',
    b'"\x00\x00\x00\x00\x00\x11\x00"\x00\x00\x00', b"1\x00\x00\x00\x00",
    b"1e400", b"-1e400", b"1e-400", b"-1e-400", b"1e99999999999999999999999", b"1e-99999999999999999999",
    b"0e99999999999999999999999", b"2.4703282292062327e-324", b"2.4703282292062328e-324",
    b"1.7976931348623157e308", b"1.7976931348623158e308", b"1.7976931348623159e308",
    b"9007199254740993", b"9007199254740993.0", b"0.1e1", b"1E5", b"1e+5", b"1E-5", b"100e-2",
    b"1" * 4300, b"-" + b"1" * 4300, b"1" * 4301, b"-" + b"1" * 4301, b"1" * 5000 + b".0",
    b"0." + b"0" * 5000 + b"1e5000", b"1" + b"0" * 400 + b"e-400",
    b'{"a":1,"a":2}', b'{"b":1,"a":2,"b":3,"a":4}', b'{"a":{"x":1},"a":[]}',
    b'{"\\u00e9":1,"e":2,"\\ud800":3,"\\ud800\\udc00":4,"\\uffff":5,"\\ue000":6,"\\ud7ff":7}',
    b'{"a\\u0000b":1,"a":2,"a\\u0000":3}', b'[' * 100 + b']' * 100, b'{"a":' * 100 + b"1" + b"}" * 100,
    b'{"event_type":"prompt_template_label_moved","details":{"prompt_template_id":12,'
    b'"prompt_template_name":"Hello","prompt_template_version_number":9,'
    b'"old_prompt_template_version_number":8,"prompt_template_label":"prod"},"user_id":1,'
    b'"user_name":"John Doe","user_email":"john.doe@example.com","workspace_id":1,'
    b'"timestamp":"2023-12-01T22:05:57.924833"}',
]


# ---- the checks -----------------------------------------------------------


def clip(b, limit=1500):
    r = repr(b)
    return r if len(r) <= limit else r[:limit] + "... (%d bytes in all)" % len(b)


def first_difference(a, b):
    """The two texts around the first byte where they differ."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    lo = max(0, i - 60)
    return i, a[lo:i + 60], b[lo:i + 60]


def check(filt, name, inputs, tapno):
    """Runs one category; prints its TAP line; returns True when it passed."""
    expected = [python_canon(x) for x in inputs]
    rc, err, got = run_filter(filt, inputs)
    problems = []
    if rc != 0:
        problems.append("canon_filter exited with %d: %r" % (rc, err[-500:]))
    if len(got) != len(inputs):
        problems.append("canon_filter answered %d of %d records" % (len(got), len(inputs)))
    bad = []
    rejected = 0
    for i, (text, exp) in enumerate(zip(inputs, expected)):
        if i >= len(got):
            bad.append((text, exp, None, "no answer (crash?)"))
            continue
        ok, out = got[i]
        rejected += exp is None and not ok
        if (exp is None and not ok) or (exp is not None and ok and out == exp):
            continue
        bad.append((text, exp, out if ok else None, out.decode(errors="replace")))
    passed = not problems and not bad
    print("%s %d - %s: %d texts, %d rejected by both" % (
        "ok" if passed else "not ok", tapno, name, len(inputs), rejected))
    for p in problems:
        print("# " + p)
    shown = bad[:1] + sorted(bad, key=lambda b: len(b[0]))[:1] if bad else []
    if len(shown) == 2 and shown[0] is shown[1]:
        shown = shown[:1]
    if bad:
        print("# %d mismatches" % len(bad))
    for label, (text, exp, out, msg) in zip(["first", "shortest"], shown):
        print("# %s mismatching input: %s" % (label, clip(text)))
        if exp is None:
            print("#   python rejects it; canon accepted it: %s" % clip(out, 300))
        elif out is None:
            print("#   python accepts it; canon says: %s" % msg)
            print("#   python: %s" % clip(exp, 300))
        else:
            at, a, b = first_difference(exp, out)
            print("#   outputs differ at byte %d:" % at)
            print("#   python: ...%r..." % a)
            print("#   canon:  ...%r..." % b)
    sys.stdout.flush()
    return passed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", help="path to canon_filter")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=3000, help="valid payloads")
    ap.add_argument("--invalid", type=int, default=600, help="mutated texts")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    gen = Gen(rng)
    payloads = [gen.payload() for _ in range(args.count)]
    floats = [gen.ws() + gen.float_text() + gen.ws() for _ in range(max(args.count // 3, 1))]
    floats += [b"[" + b", ".join(gen.float_text() for _ in range(20)) + b"]"
               for _ in range(max(args.count // 30, 1))]
    encoded = []
    for p in payloads[:max(args.count // 10, 1)]:
        s = p.decode("utf-8", "surrogatepass")
        codec = rng.choice(["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16",
                            "utf-32", "utf-8-sig"])
        encoded.append(s.encode(codec, "surrogatepass"))
    mutated = [gen.mutate(rng.choice(payloads + HANDWRITTEN)) for _ in range(args.invalid)]
    mutated += [gen.mutate(gen.mutate(rng.choice(payloads))) for _ in range(args.invalid // 3)]

    categories = [
        ("seed %d: valid payloads match json.dumps(sort_keys=True)" % args.seed, payloads),
        ("floats in many textual forms", floats),
        ("payloads re-encoded as UTF-16/UTF-32/UTF-8 with BOM", encoded),
        ("handwritten edge cases and rejections", HANDWRITTEN),
        ("mutated texts: C rejects exactly when Python raises", mutated),
    ]
    print("1..%d" % len(categories))
    sys.stdout.flush()
    failed = 0
    for n, (name, inputs) in enumerate(categories, 1):
        if not check(args.filter, name, inputs, n):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
