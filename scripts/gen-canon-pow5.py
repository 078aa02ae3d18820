#!/usr/bin/env python3
"""gen-canon-pow5.py -- writes src/core/canon_pow5.h, the powers of five that
src/core/canon.c converts floats with, and proves 128 bits of them enough.

canon.c finds the shortest decimal of a double v = c * 2^e by computing, for
X in {4c - 2 (or 4c - 1), 4c + 2, 8c} (all below 2^56), the integers

    floor(X * 2^(e-2) / 10^k)

where k is the decimal exponent picked for e. The factor 2^(e-2) / 10^k is
5^(-k) * 2^(e-2-k), so one table of 5^j, j = -k, serves every exponent: entry
j holds M_j, the 128-bit mantissa of 5^j rounded UP (ceil), and its binary
exponent b_j, so that 5^j <= M_j * 2^b_j < 5^j * (1 + 2^-127). canon.c then
computes floor(X * M_j / 2^s) with s = k - (e - 2) - b_j from a 64x128-bit
product.

That floor equals the exact one unless X * 2^(e-2) / 10^k lies within the
error X * (M_j * 2^b_j - 5^j) * 2^(e-2-k) below the next integer. For every
exponent this script finds the smallest distance, over every X in
[1, 2^56), between X * 2^(e-2) / 10^k and the integer above it, with a
Euclid-like walk over the residues of X * num mod den (the ratio's numerator
and denominator), and checks it exceeds the largest error. It also checks the
integer formulas canon.c uses for k (floor(log10 2^e), and floor(log10(3 *
2^(e-2))) at the bottom of a binade) against exact integer comparisons, and
that every shift s is in the range canon.c's 192-bit arithmetic handles.
Any failed check stops the script (exit 1) before anything is written.

The reader (decimal text to double) uses the same entries for j from -342
to 308; it needs no proof from here, as it detects the inputs its 128 bits
cannot decide and hands them to strtod (see canon.c).

    python3 scripts/gen-canon-pow5.py > src/core/canon_pow5.h
    python3 scripts/gen-canon-pow5.py --selftest   # the walk against brute force

The output is a header of static tables that only canon.c includes (so that
every program and library that compiles canon.c gets them without another
source file to list).

Standard library only; the output is deterministic.
"""

import math
import os
import random
import re
import sys
from fractions import Fraction

# The constants of canon.c's k formulas (they must match CANON_LOG10_2_* in
# src/core/canon.c): k = floor((e * MUL - (irregular ? IRR : 0)) / 2^SHIFT).
LOG10_2_MUL = 315653
LOG10_2_SHIFT = 20
LOG10_IRR = 131008

E_MIN = -1074  # exponent of the subnormals and of the smallest normals
E_MAX = 971   # exponent of the largest binade: 2^1023 = 2^52 * 2^971
X_LIMIT = 1 << 56  # every X canon.c scales is below this
# The reader scales up to 19 decimal digits by 10^j for these j: below, any
# such decimal rounds to 0; above, to infinity.
PARSE_MIN = -342
PARSE_MAX = 308


def check_canon_constants():
    """The k formula's constants must be the ones canon.c uses."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "core", "canon.c")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return  # run outside the tree: nothing to compare with
    for name, value in (("CANON_LOG10_2_MUL", LOG10_2_MUL), ("CANON_LOG10_2_SHIFT", LOG10_2_SHIFT),
                        ("CANON_LOG10_IRR", LOG10_IRR)):
        m = re.search(r"#define %s (\d+)" % name, text)
        if m is None or int(m.group(1)) != value:
            fail("%s in src/core/canon.c is not %d" % (name, value))


def fail(msg):
    sys.stderr.write("gen-canon-pow5.py: " + msg + "\n")
    sys.exit(1)


def floor_div(a, b):
    return a // b  # Python floors toward minus infinity, as canon.c's helper does


def k_formula(e, irregular):
    return floor_div(e * LOG10_2_MUL - (LOG10_IRR if irregular else 0), 1 << LOG10_2_SHIFT)


def k_exact(e, irregular):
    """The largest k with 10^k <= width, width = 2^e (or 3 * 2^(e-2))."""
    width = Fraction(3, 4) * Fraction(2) ** e if irregular else Fraction(2) ** e
    k = math.floor(e * 0.30103) - 2
    while Fraction(10) ** (k + 1) <= width:
        k += 1
    while Fraction(10) ** k > width:
        k -= 1
    return k


def min_nonzero_residue(a, m, n):
    """min of (a * x) mod m over 1 <= x <= n, skipping the x where it is 0;
    None when every such x gives 0.

    The walk keeps two multipliers: p with a*p = rp (mod m), the smallest
    residue found so far, and q with a*q = -rq (mod m), the one nearest below
    m. Adding q to p lowers rp by rq (when rq < rp), adding p to q lowers rq
    by rp (when rp < rq); these are the only moves that give new extremes
    (the intermediate fractions of a/m), and they are taken in as large
    batches as the residues and the bound n allow."""
    a %= m
    if a == 0:
        return None
    g = math.gcd(a, m)
    n = min(n, m // g - 1)  # x = m/g gives 0; the residues repeat after it
    if n < 1:
        return None
    p, rp = 1, a
    q, rq = 1, m - a
    while True:
        if rq < rp:
            t = min((rp - 1) // rq, (n - p) // q)
            if t == 0:
                break
            p += t * q
            rp -= t * rq
        elif rp < rq:
            t = min((rq - 1) // rp, (n - q) // p)
            if t == 0:
                break
            q += t * p
            rq -= t * rp
        else:
            break
    return rp


def selftest():
    rng = random.Random(14)
    for i in range(20000):
        m = rng.randint(1, 3000) if i % 2 else rng.choice([5 ** rng.randint(1, 5), 2 ** rng.randint(1, 11)])
        a = rng.randint(0, 3 * m)
        n = rng.randint(1, 2 * m)
        vals = [(a * x) % m for x in range(1, n + 1)]
        nz = [v for v in vals if v]
        want = min(nz) if nz else None
        got = min_nonzero_residue(a, m, n)
        if got != want:
            fail("selftest: a=%d m=%d n=%d: walk %r, brute force %r" % (a, m, n, got, want))
    print("selftest: 20000 cases agree with brute force")


def table_entry(j):
    """(M, b): M the 128-bit ceiling mantissa of 5^j, 5^j <= M * 2^b."""
    if j >= 0:
        p = 5 ** j
        b = p.bit_length() - 128
        m = p >> b if b > 0 else p << -b
        if b > 0 and p & ((1 << b) - 1):
            m += 1
    else:
        d = 5 ** -j
        b = -(127 + d.bit_length())
        m = -((-(1 << -b)) // d)  # ceil(2^-b / 5^-j)
    if not (1 << 127) <= m < (1 << 128):
        fail("entry %d out of range" % j)
    return m, b


def check_exponent(e, irregular, entries):
    """Checks one binade; returns the table index used and the worst margin."""
    e2 = e - 2
    k = k_formula(e, irregular)
    if k != k_exact(e, irregular):
        fail("k formula wrong at e=%d irregular=%d" % (e, irregular))
    j = -k
    if j not in entries:
        fail("no entry for 5^%d" % j)
    m, b = entries[j]
    s = k - e2 - b
    if not 64 <= s <= 191:
        fail("shift %d out of range at e=%d" % (s, e))
    if ((X_LIMIT - 1) * m) >> s >= 1 << 64:
        fail("result overflows 64 bits at e=%d" % e)
    # the exact ratio 2^e2 / 10^k = num / den in lowest terms
    ratio = Fraction(2) ** e2 / Fraction(10) ** k
    num, den = ratio.numerator, ratio.denominator
    # canon.c tells whether X times the ratio is an integer by divisibility
    # of X by den: 5^k when e2 >= 0, 2^(k - e2) otherwise
    if den != (5 ** k if e2 >= 0 else 2 ** (k - e2)):
        fail("unexpected denominator at e=%d" % e)
    approx = Fraction(m) * Fraction(2) ** (-s)
    excess = approx - ratio
    if excess < 0:
        fail("table entry %d rounds down" % j)
    worst_err = excess * (X_LIMIT - 1)
    if worst_err >= 1:
        fail("error reaches 1 at e=%d" % e)
    # distance from X*num/den up to the next integer: ((-X*num) mod den) / den
    r = min_nonzero_residue(-num, den, X_LIMIT - 1)
    dist = Fraction(r, den) if r is not None else Fraction(1)
    if dist <= worst_err:
        fail("128 bits are not enough at e=%d irregular=%d" % (e, irregular))
    return j, dist / worst_err if worst_err else None


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--selftest":
        selftest()
        return
    check_canon_constants()
    entries = {}
    for j in range(PARSE_MIN - 10, 340):
        entries[j] = table_entry(j)
    used = set()
    worst = None
    for e in range(E_MIN, E_MAX + 1):
        for irregular in (False, True):
            if irregular and e == E_MIN:
                continue  # 2^-1022's lower neighbour is as far as its upper one
            j, margin = check_exponent(e, irregular, entries)
            used.add(j)
            if margin is not None and (worst is None or margin < worst):
                worst = margin
    if set(range(min(used), max(used) + 1)) != used:
        fail("the exponents used are not contiguous")
    lo, hi = min(min(used), PARSE_MIN), max(max(used), PARSE_MAX)
    out = sys.stdout
    n = hi - lo + 1
    out.write("/* canon_pow5.h -- the powers of five canon.c scales floats by, generated by\n")
    out.write(" * scripts/gen-canon-pow5.py. Do not edit: rerun the script. Included by\n")
    out.write(" * canon.c only.\n")
    out.write(" *\n")
    out.write(" * pow5_mant[j - POW5_MIN] is the 128-bit mantissa of 5^j, for j in\n")
    out.write(" * [%d, %d], rounded up, and pow5_exp2[] its binary exponent:\n" % (lo, hi))
    out.write(" * 5^j <= (hi * 2^64 + lo) * 2^exp2 < 5^j * (1 + 2^-127). The script proved\n")
    out.write(" * that, at every double exponent, the floors canon.c computes with them are\n")
    out.write(" * exact for every multiplier below 2^56 (smallest ratio of the distance to\n")
    out.write(" * the next integer over the largest error: %.3g). The reader uses entries\n" % float(worst))
    out.write(" * %d to %d.\n" % (PARSE_MIN, PARSE_MAX))
    out.write(" */\n")
    out.write("#ifndef PLCACHE_CANON_POW5_H\n#define PLCACHE_CANON_POW5_H\n\n")
    out.write("#include <stdint.h>\n\n")
    exact_max = max(j for j in range(0, hi + 1) if 5 ** j < 1 << 128)
    out.write("#define POW5_MIN (%d)\n#define POW5_MAX %d\n" % (lo, hi))
    out.write("/* 5^0 .. 5^POW5_EXACT_MAX fit in 128 bits: those entries are exact. */\n")
    out.write("#define POW5_EXACT_MAX %d\n\n" % exact_max)
    out.write("typedef struct pow5_u128 {\n    uint64_t hi;\n    uint64_t lo;\n} pow5_u128;\n\n")
    out.write("static const pow5_u128 pow5_mant[%d] = {\n" % n)
    for j in range(lo, hi + 1):
        m, _ = entries[j]
        out.write("    {0x%016xu, 0x%016xu}, /* 5^%d */\n" % (m >> 64, m & ((1 << 64) - 1), j))
    out.write("};\n\n")
    out.write("/* clang-format off */\n")
    out.write("static const int16_t pow5_exp2[%d] = {\n" % n)
    vals = [str(entries[j][1]) for j in range(lo, hi + 1)]
    line = "   "
    for v in vals:
        if len(line) + len(v) + 2 > 100:
            out.write(line.rstrip() + "\n")
            line = "   "
        line += " " + v + ","
    out.write(line + "\n};\n/* clang-format on */\n\n#endif\n")

if __name__ == "__main__":
    main()
