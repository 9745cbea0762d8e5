#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""verify.py LOG RAW: check a crashed image's contents (RAW, from
qemu-img convert -O raw) against writer.py's LOG.

Every 512-byte sector must hold what the last completed operation on it put
there (zeroes if none). A sector covered by an operation that began but
has no "D" line (the one in flight at the crash) may hold either that or
the older contents. Prints one summary line; exits 1 on any mismatch.
"""
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from writer import payload  # noqa: E402

SECTOR = 512


def parse(path):
    ops, done, size = {}, set(), None
    with open(path, "rb") as f:
        for raw in f:
            try:
                w = raw.decode().split()
                if w[0] == "S":
                    size = int(w[1])
                elif w[0] == "B":
                    ops[int(w[1])] = (w[2], int(w[3]), int(w[4]), int(w[5]))
                elif w[0] == "D":
                    done.add(int(w[1]))
                elif w[0] == "X":
                    del ops[int(w[1])]
            except (UnicodeDecodeError, IndexError, ValueError):
                continue        # a torn last line
    return size, ops, done


def main():
    size, ops, done = parse(sys.argv[1])
    if size is None:
        sys.exit("verify: no size line in the log")
    nsec = size // SECTOR
    last = [0] * nsec           # seq of the last completed op, 0 = none
    maybe = [0] * nsec          # seq of an incomplete op covering it
    for seq in sorted(ops):
        op, off, length, _ = ops[seq]
        target = last if seq in done else maybe
        for s in range(off // SECTOR, (off + length) // SECTOR):
            target[s] = seq
            if seq in done:
                maybe[s] = 0
    cache = {}

    def expect(seq, s):
        if seq == 0:
            return bytes(SECTOR)
        op, off, length, seed = ops[seq]
        if op != "w":
            return bytes(SECTOR)
        if seq not in cache:
            cache.clear()
            cache[seq] = payload(seed, length)
        pos = s * SECTOR - off
        return cache[seq][pos:pos + SECTOR]

    bad = 0
    torn = 0
    with open(sys.argv[2], "rb") as f:
        data = f.read()
    if len(data) < size:
        sys.exit("verify: image reads %d bytes, log says %d" % (len(data), size))
    # Group sectors by the op they expect, to generate each payload once.
    order = sorted(range(nsec), key=lambda s: (last[s], s))
    for s in order:
        got = data[s * SECTOR:(s + 1) * SECTOR]
        if got == expect(last[s], s):
            continue
        if maybe[s] and got == expect(maybe[s], s):
            torn += 1
            continue
        if bad < 10:
            print("verify: sector %d (offset %d): expected op %d%s" %
                  (s, s * SECTOR, last[s],
                   " or in-flight op %d" % maybe[s] if maybe[s] else ""))
        bad += 1
    ncomplete = len(done)
    inflight = [seq for seq in ops if seq not in done]
    print("verify: %d operations completed, %d in flight at the crash, "
          "%d sectors from the in-flight one, %d sectors wrong" %
          (ncomplete, len(inflight), torn, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
