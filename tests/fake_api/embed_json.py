#!/usr/bin/env python3
"""embed_json.py -- turns a JSON file into a C byte array, at build time.

Usage: embed_json.py IN.json OUT.c NAME. Refuses a file that is not JSON or
repeats a key, so a broken schema file fails the build, not a test. Writes
`const unsigned char NAME[]` (the bytes, NUL-terminated) and
`const size_t NAME_len` (without the NUL), declared in api_schemas.h.
"""
import json
import sys


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f"repeated keys: {sorted(dup)}")
    return dict(pairs)


def main():
    src, out, name = sys.argv[1:4]
    with open(src, "rb") as f:
        data = f.read()
    json.loads(data, object_pairs_hook=no_duplicates)
    lines = []
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    with open(out, "w", encoding="ascii") as f:
        f.write(f"/* {out.rsplit('/', 1)[-1]} -- generated from {src.rsplit('/', 1)[-1]} by "
                "embed_json.py; do not edit. */\n")
        f.write('#include "api_schemas.h"\n\n')
        f.write(f"const unsigned char {name}[] = {{\n")
        f.write("\n".join(lines) + "\n    0x00,\n};\n")
        f.write(f"const size_t {name}_len = {len(data)};\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
