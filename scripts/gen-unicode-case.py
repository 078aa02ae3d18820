#!/usr/bin/env python3
"""gen-unicode-case.py -- writes src/core/unicase.c from python3's own str methods.

The Unicode properties the jinja2 engine (src/core/jinja.c) needs to give
Python's answers for str.upper(), str.lower(), str.title(), str.capitalize(),
str.islower(), str.isupper(), str.strip()/split() and the regex classes \\s
and \\w:

  upper, lower, title  the full case mappings of each code point, as
             chr(cp).upper() / .lower() / .title() give them (one to three
             code points; lower() of U+03A3 alone, since Python decides the
             final sigma from the context, see unicase.h)
  cased      Python's _PyUnicode_IsCased (Lowercase, Uppercase or Lt)
  ignorable  Python's _PyUnicode_IsCaseIgnorable, found by asking lower()
             where a capital sigma is final
  lowerf, upperf, titlef  the flags behind str.islower() / str.isupper():
             chr(cp).islower(), chr(cp).isupper(), category Lt
  space      str.isspace(), which is also what re's \\s matches
  word       re's \\w on str: str.isalnum() or '_'
  ident      what may go on a name: \\w, or what ("a" + c).isidentifier()
             accepts (the character class of jinja2's name rule is built so)

Mappings of one code point are stored as runs (first, last, stride 1 or 2,
delta); longer ones in a small table. Properties are inclusive ranges.
Everything is checked against Python before it is written. Run (clang-format
lays the tables out as scripts/format wants them):

    python3 scripts/gen-unicode-case.py |
        clang-format --style=file --assume-filename=src/core/unicase.c > src/core/unicase.c

Standard library only. The output is deterministic for a given Unicode version.
"""

import re
import sys
import unicodedata

MAX_CP = 0x110000
SIGMA = 0x3A3


def chars():
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        yield cp, chr(cp)


def mapping(fn):
    """(single runs, multi entries) of a full case mapping."""
    singles = []
    multi = []
    for cp, c in chars():
        m = fn(c)
        if m == c:
            continue
        if len(m) == 1:
            singles.append((cp, ord(m) - cp))
        else:
            multi.append((cp, [ord(x) for x in m]))
    runs = []
    for cp, delta in singles:
        if runs:
            first, last, stride, d = runs[-1]
            if d == delta and (
                    (stride == 0 and cp - last in (1, 2)) or (stride and cp - last == stride)):
                runs[-1] = [first, cp, cp - last, d]
                continue
        runs.append([cp, cp, 0, delta])
    for r in runs:
        if r[2] == 0:
            r[2] = 1
    return runs, multi


def ranges(pred):
    out = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            ok = False
        else:
            ok = pred(cp, chr(cp))
        if ok and out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        elif ok:
            out.append([cp, cp])
    return out


def is_cased(c):
    return c.islower() or c.isupper() or unicodedata.category(c) == "Lt"


def is_ignorable(cp, c):
    """Case_Ignorable, read back from where lower() makes a sigma final."""
    if cp == SIGMA:
        return False
    if is_cased(c):
        # skipped looking back: the sigma then has no cased letter before it
        return (c + "\u03a3").lower()[-1] == "\u03c3"
    # not cased: skipped, the A before it makes the sigma final
    return ("A" + c + "\u03a3").lower()[-1] == "\u03c2"


def in_ranges(rs, cp):
    return any(a <= cp <= b for a, b in rs)


def check_sigma(cased, ignorable):
    """Python's final-sigma rule rebuilt from the tables, against str.lower()."""
    def final(s, i):
        j = i - 1
        while j >= 0 and in_ranges(ignorable, ord(s[j])):
            j -= 1
        if j < 0 or not in_ranges(cased, ord(s[j])):
            return False
        j = i + 1
        while j < len(s) and in_ranges(ignorable, ord(s[j])):
            j += 1
        return j == len(s) or not in_ranges(cased, ord(s[j]))
    samples = ["A\u03a3", "\u03a3", "A\u03a3B", "A'\u03a3", "A\u03a3'", "A\u03a3'B", "A.\u03a3",
               "\u02b0\u03a3", "A\u0301\u03a3\u0301", "1\u03a3", "A \u03a3"]
    for s in samples:
        want = s.lower()
        got = "".join(("\u03c2" if final(s, i) else "\u03c3") if ch == "\u03a3" else ch.lower()
                      for i, ch in enumerate(s))
        if got != want:
            sys.exit("gen-unicode-case: final sigma differs on %r" % s)


def check_runs(runs, multi, fn):
    table = {}
    for first, last, stride, delta in runs:
        for cp in range(first, last + 1, stride):
            table[cp] = chr(cp + delta)
    for cp, m in multi:
        table[cp] = "".join(chr(x) for x in m)
    for cp, c in chars():
        if table.get(cp, c) != fn(c):
            sys.exit("gen-unicode-case: mapping of U+%04X does not round-trip" % cp)


def emit_runs(w, name, runs):
    w("static const struct case_run %s[] = {\n" % name)
    for first, last, stride, delta in runs:
        w("    {0x%05X, 0x%05X, %d, %d},\n" % (first, last, stride, delta))
    w("};\n\n")


def emit_multi(w, name, multi):
    w("static const struct case_multi %s[] = {\n" % name)
    for cp, m in multi:
        m = m + [0] * (3 - len(m))
        w("    {0x%05X, %d, {0x%05X, 0x%05X, 0x%05X}},\n" % (cp, len([x for x in m if x]),
                                                         m[0], m[1], m[2]))
    w("};\n\n")


def emit_ranges(w, name, rs):
    w("static const uint32_t %s[][2] = {\n" % name)
    for i in range(0, len(rs), 4):
        w("    " + " ".join("{0x%05X, 0x%05X}," % (a, b) for a, b in rs[i:i + 4]) + "\n")
    w("};\n\n")


def main():
    lower_fn = lambda c: c.lower()
    maps = {
        "upper": mapping(lambda c: c.upper()),
        "lower": mapping(lower_fn),
        "title": mapping(lambda c: c.title()),
    }
    check_runs(*maps["upper"], lambda c: c.upper())
    check_runs(*maps["lower"], lower_fn)
    check_runs(*maps["title"], lambda c: c.title())
    for _, (_, multi) in maps.items():
        if any(len(m) > 3 for _, m in multi):
            sys.exit("gen-unicode-case: a mapping longer than 3")
    props = {
        "cased": ranges(lambda cp, c: is_cased(c)),
        "ignorable": ranges(is_ignorable),
        "lowerf": ranges(lambda cp, c: c.islower()),
        "upperf": ranges(lambda cp, c: c.isupper()),
        "titlef": ranges(lambda cp, c: unicodedata.category(c) == "Lt"),
        "space": ranges(lambda cp, c: c.isspace()),
        "word": ranges(lambda cp, c: c.isalnum() or c == "_"),
        "ident": ranges(lambda cp, c: c.isalnum() or c == "_" or ("a" + c).isidentifier()),
    }
    for cp, c in chars():
        if (re.match(r"\s", c) is not None) != c.isspace():
            sys.exit("gen-unicode-case: \\s and isspace() differ at U+%04X" % cp)
        if (re.match(r"\w", c) is not None) != (c.isalnum() or c == "_"):
            sys.exit("gen-unicode-case: \\w and isalnum() differ at U+%04X" % cp)
    check_sigma(props["cased"], props["ignorable"])

    w = sys.stdout.write
    w("/* unicase.c -- Unicode %s case tables for Python's str methods, generated\n"
      % unicodedata.unidata_version)
    w(" * by scripts/gen-unicode-case.py from python3 %d.%d.%d (Unicode %s).\n"
      % (sys.version_info[0], sys.version_info[1], sys.version_info[2],
         unicodedata.unidata_version))
    w(" * Do not edit: rerun the script.\n")
    w(" *\n")
    w(" * Mappings of one code point are runs {first, last, stride, delta}: every\n")
    w(" * stride-th code point from first to last maps to itself plus delta. Longer\n")
    w(" * mappings are listed one by one. Properties are inclusive ranges. All\n")
    w(" * sorted, searched by bisection.\n")
    w(" */\n")
    w('#include "core/unicase.h"\n\n')
    w("#include <stddef.h>\n\n")
    w("struct case_run {\n    uint32_t first, last;\n    int stride;\n    int32_t delta;\n};\n\n")
    w("struct case_multi {\n    uint32_t cp;\n    int n;\n    uint32_t m[3];\n};\n\n")
    for name, (runs, multi) in maps.items():
        emit_runs(w, name + "_runs", runs)
        emit_multi(w, name + "_multi", multi)
    for name, rs in props.items():
        emit_ranges(w, name + "_ranges", rs)
    w("""#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int map_cp(const struct case_run *runs, size_t nruns, const struct case_multi *multi,
                  size_t nmulti, uint32_t cp, uint32_t out[3])
{
    size_t lo = 0, hi = nmulti;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < multi[mid].cp) {
            hi = mid;
        } else if (cp > multi[mid].cp) {
            lo = mid + 1;
        } else {
            for (int k = 0; k < multi[mid].n; k++)
                out[k] = multi[mid].m[k];
            return multi[mid].n;
        }
    }
    lo = 0;
    hi = nruns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < runs[mid].first) {
            hi = mid;
        } else if (cp > runs[mid].last) {
            lo = mid + 1;
        } else {
            if ((cp - runs[mid].first) % (uint32_t)runs[mid].stride == 0)
                cp = (uint32_t)((int32_t)cp + runs[mid].delta);
            break;
        }
    }
    out[0] = cp;
    return 1;
}

int unicase_upper(uint32_t cp, uint32_t out[3])
{
    return map_cp(upper_runs, COUNT(upper_runs), upper_multi, COUNT(upper_multi), cp, out);
}

int unicase_lower(uint32_t cp, uint32_t out[3])
{
    return map_cp(lower_runs, COUNT(lower_runs), lower_multi, COUNT(lower_multi), cp, out);
}

int unicase_title(uint32_t cp, uint32_t out[3])
{
    return map_cp(title_runs, COUNT(title_runs), title_multi, COUNT(title_multi), cp, out);
}

int unicase_cased(uint32_t cp)
{
    return in_ranges(cased_ranges, COUNT(cased_ranges), cp);
}

int unicase_ignorable(uint32_t cp)
{
    return in_ranges(ignorable_ranges, COUNT(ignorable_ranges), cp);
}

int unicase_islower(uint32_t cp)
{
    return in_ranges(lowerf_ranges, COUNT(lowerf_ranges), cp);
}

int unicase_isupper(uint32_t cp)
{
    return in_ranges(upperf_ranges, COUNT(upperf_ranges), cp);
}

int unicase_istitle(uint32_t cp)
{
    return in_ranges(titlef_ranges, COUNT(titlef_ranges), cp);
}

int unicase_space(uint32_t cp)
{
    return in_ranges(space_ranges, COUNT(space_ranges), cp);
}

int unicase_word(uint32_t cp)
{
    return in_ranges(word_ranges, COUNT(word_ranges), cp);
}

int unicase_ident(uint32_t cp)
{
    return in_ranges(ident_ranges, COUNT(ident_ranges), cp);
}
""")


if __name__ == "__main__":
    main()
