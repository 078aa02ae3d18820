#!/usr/bin/env python3
"""float_oracle.py -- checks canon_float_repr against Python's repr(float).

Feeds doubles to float_filter (argv[1]) as raw bit patterns and compares
every text it writes with what json.dumps writes for that float: repr(x) for
finite x, NaN / Infinity / -Infinity otherwise. The doubles, from a fixed
seed, come in categories:

  random bit patterns over the whole range (NaNs and infinities included)
  random decimals of 1 to 17 digits at every decimal exponent, read as
    Python reads them (short reprs, trailing zeros)
  subnormals: the smallest, the largest, small mantissas, random ones
  every power of two from 2^-1074 to 2^1023 and its neighbours (the
    bottoms of binades, where the gap below is half the one above)
  every power of ten from 1e-323 to 1e308 and its neighbours
  exact ties: doubles exactly halfway between the two nearest candidates
    of the shortest length, where repr() takes the even last digit
  the doubles nearest to the midpoints of 15, 16 and 17-digit decimals
  integers: near 2^53, 2^54, 2^63, 2^64, 10^15 to 10^17, random ones
  doubles whose shortest repr has 17 digits
  the edges of the exponent form: 1e-05, 0.0001, 1e16, 9999999999999998.0
    and the doubles next to them, random ones in [1e-5, 1e-4] and
    [1e15, 1e17]
  negative values and signed zeros (the others negated)

and one more check that the comparison can fail: float_filter --break spoils
one text in 256 and every spoiled one must be caught.

The reading side (canon's text-to-double) is checked the same way, with
number texts through canon_json (float_filter --parse) against
json.dumps(json.loads(text)); once repr() is right, equal texts mean equal
doubles. Texts: reprs and longer printouts of random doubles, random
decimals of 1 to 19 digits, the exact midpoints between neighbouring doubles
(up to 767 digits, ties to even) and texts just above and below them, cut
to 17 to 40 digits, short exact ties ("2251799813685248.25"), the edges of
underflow and overflow, and long mantissas, leading zeros and exponents.

Output is TAP, one line per category with the number of doubles compared; a
mismatch prints the double's bits, Python's text and C's. --long multiplies
the random categories (millions of doubles, for a run by hand). Exits 1 on
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
import time
from fractions import Fraction

BATCH = 1 << 20


def bits_of(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def float_of(b):
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def json_text(x):
    return repr(x) if math.isfinite(x) else json.dumps(x)


def run_filter(path, bits, spoil=False):
    """canon_float_repr's texts for a list of bit patterns."""
    data = struct.pack("<%dQ" % len(bits), *bits)
    cmd = [path, "--break"] if spoil else [path]
    proc = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError("float_filter exited %d: %s" % (proc.returncode,
                                                           proc.stderr.decode(errors="replace")))
    out = proc.stdout.decode("ascii").split("\n")
    if len(out) != len(bits) + 1 or out[-1] != "":
        raise RuntimeError("float_filter wrote %d texts for %d doubles" % (len(out) - 1, len(bits)))
    return out[:-1]


def mismatches(path, bits, spoil=False):
    """[(bits, python text, C text)] of every double where they differ."""
    bad = []
    for i in range(0, len(bits), BATCH):
        chunk = bits[i:i + BATCH]
        got = run_filter(path, chunk, spoil)
        want = [json_text(x) for x in struct.unpack("<%dd" % len(chunk),
                                                    struct.pack("<%dQ" % len(chunk), *chunk))]
        if got != want:
            bad += [(b, w, g) for b, w, g in zip(chunk, want, got) if w != g]
    return bad


# ---- generating doubles -------------------------------------------------

def neighbours(x, n=2):
    """x and the n doubles on each side of it (positive finite x)."""
    out = [x]
    up = down = x
    for _ in range(n):
        up = math.nextafter(up, math.inf)
        down = math.nextafter(down, 0.0)
        out += [up, down]
    return [v for v in out if math.isfinite(v) and v > 0]


def random_bits(rng, n):
    return [rng.getrandbits(64) for _ in range(n)]


def random_decimals(rng, n):
    out = []
    for _ in range(n):
        d = rng.randint(1, 17)
        m = rng.randrange(10 ** (d - 1), 10 ** d)
        x = float("%de%d" % (m, rng.randint(-340, 310)))
        out.append(x)
    return [bits_of(x) for x in out]


def subnormals(rng, n):
    out = [1, (1 << 52) - 1, (1 << 52) - 2, 2, 3, 1 << 51, (1 << 51) + 1, (1 << 51) - 1]
    out += list(range(1, 2049))
    out += [(1 << j) + d for j in range(1, 52) for d in (-1, 0, 1)]
    out += [rng.getrandbits(52) or 1 for _ in range(max(n - len(out), 0))]
    return out


def powers_of_two():
    out = []
    for e in range(-1074, 1024):
        out += neighbours(math.ldexp(1.0, e))
    return [bits_of(x) for x in out]


def powers_of_ten():
    out = []
    for p in range(-323, 309):
        out += neighbours(float("1e%d" % p))
    return [bits_of(x) for x in out]


def k_of(e):
    """The largest k with 10^k <= 2^e."""
    w = Fraction(2) ** e
    k = math.floor(e * 0.30103) - 2
    while Fraction(10) ** (k + 1) <= w:
        k += 1
    return k


def exact_ties(rng, n):
    """Doubles c * 2^e with c * 2^e / 10^k exactly an integer plus one half,
    where 10^k is the largest power of ten within the spacing 2^e: the two
    integers next to it at that scale are equally near. Such c exist for
    e in [-76, -1]: c = odd * 2^(-e-q-1), q = -k."""
    out = []
    plan = []
    for e in range(-80, 0):
        s = -e + k_of(e) - 1
        if 0 <= s <= 52:
            plan.append((e, s))
    for i in range(n):
        e, s = plan[i % len(plan)]
        lo, hi = 1 << max(52 - s, 0), 1 << (53 - s)
        odd = rng.randrange(lo, hi) | 1
        if odd >= hi:
            odd -= 2
        c = odd << s
        x = math.ldexp(c, e)
        # check the construction exactly: 2 * c * 2^e / 10^k is an odd integer
        v2 = Fraction(2 * c) * Fraction(2) ** e / Fraction(10) ** k_of(e)
        if v2.denominator != 1 or v2.numerator % 2 != 1:
            raise RuntimeError("exact_ties: construction failed at e=%d" % e)
        out.append(bits_of(x))
    return out


def near_midpoints(rng, n):
    out = []
    for _ in range(n):
        d = rng.choice((15, 16, 17))
        m = rng.randrange(10 ** (d - 1), 10 ** d)
        x = float("%d5e%d" % (m, rng.randint(-330, 300)))
        if math.isfinite(x) and x > 0:
            out.append(bits_of(x))
    return out


def integers(rng, n):
    out = []
    for base in (2 ** 53, 2 ** 54, 2 ** 63, 2 ** 64, 10 ** 15, 10 ** 16, 10 ** 17, 10 ** 22,
                 10 ** 23):
        for d in range(-1100, 1100):
            out.append(float(base + d))
    out += [float(i) for i in range(1, 3000)]
    while len(out) < n:
        out.append(float(rng.getrandbits(rng.randint(1, 53))))
        out.append(float(rng.getrandbits(rng.randint(54, 80))))
    return [bits_of(x) for x in out if x > 0]


def seventeen_digits(rng, n):
    out = []
    while len(out) < n:
        b = rng.getrandbits(63)
        x = float_of(b)
        if not math.isfinite(x) or x == 0:
            continue
        digits = repr(x).split("e")[0].replace(".", "").strip("0")
        if len(digits) == 17:
            out.append(b)
    return out


def exponent_edges(rng, n):
    fixed = [1e-05, 0.0001, 1e16, 1e15, 9999999999999998.0, 1e17, 0.001, 1e-06,
             9.999999999999999e-05, 9.999999999999999e-06, 1.0000000000000001e-05,
             1.2345678901234568e+17, 123456789012345680.0, 1e+16 + 2, 2 ** 53 + 0.0]
    out = []
    for x in fixed:
        out += neighbours(x, 4)
    while len(out) < n:
        lo, hi = rng.choice(((-5, -4), (15, 17), (-4.5, -3.5), (15.5, 16.5)))
        out.append(10 ** rng.uniform(lo, hi))
    return [bits_of(x) for x in out]


def negatives(groups, rng, n):
    pool = [b for g in groups for b in g]
    out = [0, 1 << 63]
    out += [rng.choice(pool) | (1 << 63) for _ in range(n)]
    return out


def non_finite():
    return [0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0xFFF8000000000000,
            0x7FF0000000000001, 0x7FFFFFFFFFFFFFFF, 0xFFF0000000000001]


# ---- reading texts ------------------------------------------------------

def parse_mismatches(path, texts):
    """[(text, python, C)] for every number text where they differ."""
    bad = []
    for i in range(0, len(texts), 1 << 16):
        chunk = texts[i:i + (1 << 16)]
        proc = subprocess.run([path, "--parse"], input="".join(t + "\n" for t in chunk).encode(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise RuntimeError("float_filter --parse exited %d" % proc.returncode)
        got = proc.stdout.decode("ascii").split("\n")[:-1]
        if len(got) != len(chunk):
            raise RuntimeError("float_filter --parse wrote %d lines for %d" % (len(got), len(chunk)))
        for t, g in zip(chunk, got):
            try:
                w = json.dumps(json.loads(t))
            except ValueError:
                w = "!"  # rejected: C must reject it too
            if w != g and not (w == "!" and g.startswith("!")):
                bad.append((t, w, g))
    return bad


def exact_decimal(num, den):
    """The exact decimal text of num / den (den a power of two)."""
    k = 0
    while den % 10 != 0 and den != 1:
        num *= 5
        den *= 5
        k += 1
    # now den = 10^j
    j = len(str(den)) - 1
    digits = str(num)
    if j == 0:
        return digits
    if len(digits) <= j:
        digits = "0" * (j - len(digits) + 1) + digits
    return digits[:-j] + "." + digits[-j:]


def midpoint_text(x):
    """The exact decimal of the point halfway from x (finite, > 0) up to the
    next double."""
    y = math.nextafter(x, math.inf)
    f = (Fraction(x) + Fraction(y)) / 2
    return exact_decimal(f.numerator, f.denominator)


def nudge(text, up):
    """The decimal text a hair (10^-7 of its last place) above or below text."""
    frac = len(text) - text.index(".") - 1 if "." in text else 0
    with decimal.localcontext() as ctx:
        ctx.prec = len(text) + 30
        delta = decimal.Decimal(1).scaleb(-(frac + 7))
        d = decimal.Decimal(text)
        return format(d + delta if up else d - delta, "f")


def to_json_number(text):
    """A decimal text ("123.45", "0.001") in the form JSON allows."""
    if text.startswith("."):
        text = "0" + text
    return text


def parse_texts_random(rng, n):
    out = []
    forms = ("%r", "%.17e", "%.20e", "%.25g", "%.16e", "%.3e", "%.40e")
    while len(out) < n:
        x = float_of(rng.getrandbits(63))
        if not math.isfinite(x):
            continue
        f = rng.choice(forms)
        t = repr(x) if f == "%r" else f % x
        if rng.random() < 0.2:
            t = t.upper()
        out.append(t)
        d = rng.randint(1, 19)
        m = rng.randrange(10 ** (d - 1), 10 ** d)
        out.append("%de%d" % (m, rng.randint(-350, 320)))
        out.append("%d.%de%d" % (m // 10, m % 10, rng.randint(-20, 20)))
    return out


def parse_texts_midpoints(rng, n):
    out = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.1:
            x = float_of(rng.getrandbits(52) or 1)  # subnormal
        elif kind < 0.2:
            x = math.ldexp(1.0, rng.randint(-1074, 1023))
        else:
            x = float_of(rng.getrandbits(63))
        if not math.isfinite(x) or x == 0 or not math.isfinite(math.nextafter(x, math.inf)):
            continue
        t = midpoint_text(x)
        out.append(t)
        out.append(nudge(t, True))
        out.append(nudge(t, False))
        cut = rng.randint(17, 40)
        sig = len(t.replace(".", "").lstrip("0"))
        if sig > cut:
            # the same digits cut short, written as an integer times 10^x
            digits = t.replace(".", "")
            point = t.index(".") if "." in t else len(t)
            lead = len(digits) - len(digits.lstrip("0"))
            kept = digits[lead:lead + cut]
            exp = point - lead - cut
            out.append("%se%d" % (kept, exp))
    return out


def parse_texts_short_ties(rng, n):
    """Midpoints with few enough digits for the fast path: doubles in
    [2^49, 2^53) have a spacing of 1/8 to 1, so the midpoints end in .5,
    .25, .75, .0625 and the like."""
    out = []
    while len(out) < n:
        e = rng.randint(-4, -1)
        c = rng.randrange(1 << 52, 1 << 53)
        x = math.ldexp(c, e)
        out.append(midpoint_text(x))
        out.append(repr(x))
        c = rng.randrange(1 << 52, 1 << 53)
        # integers halfway between doubles above 2^53 (written as floats)
        out.append(str(c * 2 + 1) + ".0")
        out.append(str((c * 2 + 1) << rng.randint(1, 10)) + "e0")
    return out


def parse_texts_edges():
    out = []
    tiny = Fraction(1, 2 ** 1075)  # half the smallest subnormal
    for f in (tiny, tiny * 3, Fraction(2 ** 1024 - 2 ** 970), Fraction(2 ** 1023)):
        t = exact_decimal(f.numerator, f.denominator)
        out += [t, nudge(t, True), nudge(t, False)]
    out += ["1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
            "2.2250738585072011e-308", "2.2250738585072012e-308", "2.225073858507201e-308",
            "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
            "2.4703282292062327208828439643411068618252990130716238221279284125e-324",
            "1e-324", "3e-324", "1e-400", "1e400", "1e308", "1e309", "9e-343", "1e-342",
            "0.000000000000000000000000000000000000000000001e-280", "123456789012345678901e-400",
            "1e+00000000000000000000000000000000308", "1E-0000000000000000000000000000000325",
            "0.0e99999999999999999999", "1e99999999999999999999", "1e-99999999999999999999",
            "9007199254740993", "9007199254740993.0", "9007199254740992.9999999999999999999",
            "9007199254740993.0000000000000000001", "4503599627370496.5", "4503599627370497.5",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
            "1.00000000000000011102230246251565404236316680908203126",
            "0.1", "0.2", "0.3", "1.1", "2.5", "0.125", "-0.0", "-0.0e10", "0e0", "0.0000e-7"]
    for k in (20, 100, 1000, 5000):
        out += ["1." + "0" * k + "1", "0." + "0" * k + "1", "9" * k + ".5", "9" * k + "e-%d" % k,
                "1" + "0" * k + "e-%d" % k, "0.5" + "0" * k + "1", "0." + "9" * k]
    return out


def parse_texts_long(rng, n):
    out = []
    while len(out) < n:
        k = rng.randint(20, 900)
        digits = str(rng.randrange(1, 10)) + "".join(rng.choice("0123456789") for _ in range(k))
        p = rng.randint(1, len(digits) - 1)
        out.append(digits[:p] + "." + digits[p:] + "e%d" % rng.randint(-330, 300))
    return out


# ---- running ------------------------------------------------------------

def report(n, name, count, bad, secs):
    if not bad:
        print("ok %d - %s: %d doubles match repr() (%.1fs)" % (n, name, count, secs))
        return True
    print("not ok %d - %s: %d of %d doubles differ" % (n, name, len(bad), count))
    for b, want, got in bad[:5]:
        print("#   bits 0x%016x: python %s, canon %s" % (b, want, got))
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", help="path to float_filter")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--long", action="store_true",
                    help="millions of doubles in the random categories")
    ap.add_argument("--scale", type=float, default=None,
                    help="multiply the random categories by this (default 1, 40 with --long)")
    args = ap.parse_args()
    scale = args.scale if args.scale is not None else (40.0 if args.long else 1.0)

    def sz(n):
        return max(int(n * scale), 1)

    rng = random.Random(args.seed)
    # (name, maker, how many): a maker takes a count (None for the fixed sets)
    cats = [
        ("random bit patterns over the whole range", lambda k: random_bits(rng, k), sz(300000)),
        ("random decimals of 1 to 17 digits", lambda k: random_decimals(rng, k), sz(100000)),
        ("subnormals", lambda k: subnormals(rng, k), sz(40000)),
        ("powers of two 2^-1074..2^1023 and neighbours", lambda k: powers_of_two(), None),
        ("powers of ten 1e-323..1e308 and neighbours", lambda k: powers_of_ten(), None),
        ("exact ties between two shortest candidates", lambda k: exact_ties(rng, k), sz(40000)),
        ("nearest doubles to midpoints of 15-17 digit decimals",
         lambda k: near_midpoints(rng, k), sz(60000)),
        ("integers near 2^53, 2^63, 10^16 and random", lambda k: integers(rng, k), sz(60000)),
        ("shortest repr of 17 digits", lambda k: seventeen_digits(rng, k), sz(50000)),
        ("exponent-form edges 1e-05, 0.0001, 1e16, 9999999999999998.0",
         lambda k: exponent_edges(rng, k), sz(20000)),
    ]
    print("1..%d" % (len(cats) + 8))
    sys.stdout.flush()
    failed = 0
    total = 0
    total_texts = 0
    groups = []
    n = 0
    for name, make, count in cats:
        n += 1
        t0 = time.monotonic()
        left = count if count is not None else 1
        done = 0
        bad = []
        while left > 0:
            chunk = min(left, BATCH)
            left -= chunk
            bits = list(dict.fromkeys(make(chunk)))  # distinct doubles, in order
            if len(groups) < n:
                groups.append(bits[:5000])
            bad += mismatches(args.filter, bits)
            done += len(bits)
        total += done
        if not report(n, name, done, bad, time.monotonic() - t0):
            failed += 1
        sys.stdout.flush()

    n += 1
    t0 = time.monotonic()
    bits = list(dict.fromkeys(negatives(groups, rng, sz(50000)) + non_finite()))
    bad = mismatches(args.filter, bits)
    total += len(bits)
    if not report(n, "negative values, signed zeros, NaN and infinities", len(bits), bad,
                  time.monotonic() - t0):
        failed += 1

    # the reading side, in the same way
    pcats = [
        ("read: printouts of random doubles, random decimals of 1 to 19 digits",
         lambda k: parse_texts_random(rng, k), sz(60000)),
        ("read: midpoints between doubles, a hair above and below, cut short",
         lambda k: parse_texts_midpoints(rng, k), sz(8000)),
        ("read: short exact ties and halfway integers",
         lambda k: parse_texts_short_ties(rng, k), sz(20000)),
        ("read: underflow and overflow edges, long and odd forms",
         lambda k: parse_texts_edges(), None),
        ("read: mantissas of 20 to 900 digits", lambda k: parse_texts_long(rng, k), sz(3000)),
    ]
    for name, make, count in pcats:
        n += 1
        t0 = time.monotonic()
        left = count if count is not None else 1
        done = 0
        bad = []
        while left > 0:
            chunk = min(left, 1 << 18)
            left -= chunk
            texts = [to_json_number(t) for t in make(chunk)]
            texts += ["-" + t for t in texts[:len(texts) // 8]]
            bad += parse_mismatches(args.filter, texts)
            done += len(texts)
        total_texts += done
        if bad:
            print("not ok %d - %s: %d of %d texts differ" % (n, name, len(bad), done))
            for t, want, got in bad[:5]:
                print("#   %s: python %s, canon %s" % (t[:120], want, got))
            failed += 1
        else:
            print("ok %d - %s: %d texts read as Python reads them (%.1fs)"
                  % (n, name, done, time.monotonic() - t0))
        sys.stdout.flush()

    # the comparison itself can fail: spoiled texts are all caught
    n += 1
    bits = random_decimals(rng, 20000)
    spoiled = [b for b in bits if (b & 0xFF) == 0x5A]
    bad = mismatches(args.filter, bits, spoil=True)
    caught = {b for b, _, _ in bad}
    if spoiled and caught == set(spoiled):
        print("ok %d - float_filter --break spoils %d texts of %d and all are caught"
              % (n, len(spoiled), len(bits)))
    else:
        print("not ok %d - spoiled texts: %d, caught: %d" % (n, len(spoiled), len(caught)))
        failed += 1

    n += 1
    print("%s %d - %d doubles and %d texts compared in all"
          % ("not ok" if failed else "ok", n, total, total_texts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
