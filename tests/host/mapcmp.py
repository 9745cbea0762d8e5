#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""mapcmp.py OURS QEMU: compare the engine's extents with QEMU's.

OURS is `qcow2-cat --map IMAGE` output (guest offset, length, type, host
offset, compressed offset, compressed bytes, offset in cluster), QEMU is
`qemu-img map --output=json IMAGE`. Byte comparison cannot tell a zero
cluster from an unallocated one, or notice a wrong host offset whose bytes
happen to match; this can. Classification, as QEMU reports it:

  data, with offset      -> data at that host offset
  data, without offset   -> compressed
  present, not data      -> zero
  not present            -> unallocated

Prints the first mismatch and exits 1, or exits 0.
"""
import json
import sys


def ours(path):
    out = []
    with open(path) as f:
        for line in f:
            pos, length, kind, host = line.split()[:4]
            out.append((int(pos), int(length), kind, int(host)))
    return out


def qemu(path):
    out = []
    with open(path) as f:
        for e in json.load(f):
            if e.get("data"):
                kind = "data" if "offset" in e else "compressed"
            elif e.get("present"):
                kind = "zero"
            else:
                kind = "unalloc"
            out.append((e["start"], e["length"], kind, e.get("offset", 0)))
    return out


def main():
    a, b = ours(sys.argv[1]), qemu(sys.argv[2])
    i = j = 0
    while i < len(a) and j < len(b):
        ap, al, ak, ah = a[i]
        bp, bl, bk, bh = b[j]
        lo, hi = max(ap, bp), min(ap + al, bp + bl)
        if lo < hi:
            same = ak == bk
            if same and ak == "data":
                same = ah + (lo - ap) == bh + (lo - bp)
            if not same:
                print("offset %d: engine says %s%s, qemu says %s%s" % (
                    lo, ak, " at %d" % (ah + lo - ap) if ak == "data" else "",
                    bk, " at %d" % (bh + lo - bp) if bk == "data" else ""))
                return 1
        if ap + al <= bp + bl:
            i += 1
        else:
            j += 1
    end_a = a[-1][0] + a[-1][1] if a else 0
    end_b = b[-1][0] + b[-1][1] if b else 0
    if end_a != end_b:
        print("extents end at %d (engine) and %d (qemu)" % (end_a, end_b))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
