#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""sparsecmp.py [-n SAMPLES] [--map MAP] TARGET REFERENCE
sparsecmp.py --save-map REFERENCE

Compare a large block device with a sparse raw reference without reading
all of it: every data extent of the reference is compared in full; holes
are checked to read as zeros at both ends and at SAMPLES blocks spread over
them by a fixed-seed generator.

Under TCG a guest reads zeros at a few hundred MB/s, so checking every byte
of a 64 GiB sparse image would take longer than the whole suite may.

The extents come from SEEK_DATA/SEEK_HOLE on the reference, or from MAP.
9p, which shares the host's files with the guest, has no SEEK_DATA (a file
is all data to it), so the host saves the map next to the reference with
--save-map (REFERENCE.map: "size N", then "start end" per data extent) and
the guest reads that.

Exit status: 0 identical where checked, 1 different, 2 usage or I/O error.
"""
import argparse
import os
import random
import sys

BLOCK = 1 << 20		# data extents are compared in blocks of this size
PROBE = 64 << 10	# bytes read at each hole probe


def extents(fd, size):
    """Yield (start, end, is_data) covering [0, size)."""
    off = 0
    while off < size:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            data = size		# ENXIO: only a hole remains
        data = min(data, size)
        if data > off:
            yield off, data, False
            off = data
            continue
        hole = min(os.lseek(fd, off, os.SEEK_HOLE), size)
        yield off, hole, True
        off = hole


def save_map(ref):
    fd = os.open(ref, os.O_RDONLY)
    size = os.fstat(fd).st_size
    with open(ref + ".map", "w") as f:
        f.write("size %d\n" % size)
        for start, end, is_data in extents(fd, size):
            if is_data:
                f.write("%d %d\n" % (start, end))
    return 0


def load_map(path, size):
    """Extents as extents() yields them, from a --save-map file."""
    with open(path) as f:
        lines = f.read().split("\n")
    if lines[0] != "size %d" % size:
        sys.exit("sparsecmp: %s is for another file (%s)" % (path, lines[0]))
    off = 0
    for line in lines[1:]:
        if not line:
            continue
        start, end = map(int, line.split())
        if start < off or end <= start or end > size:
            sys.exit("sparsecmp: %s: bad extent %s" % (path, line))
        if start > off:
            yield off, start, False
        yield start, end, True
        off = end
    if off < size:
        yield off, size, False


def pread_full(fd, length, off, name):
    buf = os.pread(fd, length, off)
    if len(buf) != length:
        sys.exit("sparsecmp: %s: short read at %d" % (name, off))
    return buf


def differ(off, got, want, tname, rname):
    i = next(i for i in range(len(got)) if got[i] != want[i])
    print("%s %s differ: first difference at byte offset %d (%#x): "
          "%#04x != %#04x" % (tname, rname, off + i, off + i, got[i], want[i]))
    return 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--save-map":
        return save_map(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=256, dest="samples")
    ap.add_argument("--map")
    ap.add_argument("target")
    ap.add_argument("reference")
    a = ap.parse_args()

    tfd = os.open(a.target, os.O_RDONLY)
    rfd = os.open(a.reference, os.O_RDONLY)
    tsize = os.lseek(tfd, 0, os.SEEK_END)
    rsize = os.fstat(rfd).st_size
    if tsize != rsize:
        print("%s %s differ: size %d != %d" %
              (a.target, a.reference, tsize, rsize))
        return 1

    if a.map:
        ext = list(load_map(a.map, rsize))
    else:
        ext = list(extents(rfd, rsize))
    hole_bytes = sum(e - s for s, e, d in ext if not d)
    rng = random.Random(20261121)
    data_bytes = probed = 0

    for start, end, is_data in ext:
        if is_data:
            for off in range(start, end, BLOCK):
                n = min(BLOCK, end - off)
                got = pread_full(tfd, n, off, a.target)
                want = pread_full(rfd, n, off, a.reference)
                if got != want:
                    return differ(off, got, want, a.target, a.reference)
                data_bytes += n
            continue
        # Both ends of the hole, and a share of the samples by its size.
        probes = {start, max(start, end - PROBE)}
        share = a.samples * (end - start) // max(hole_bytes, 1)
        for _ in range(share):
            probes.add(start + rng.randrange(0, end - start) // 512 * 512)
        for off in sorted(probes):
            n = min(PROBE, end - off)
            got = pread_full(tfd, n, off, a.target)
            if got.count(0) != n:
                return differ(off, got, bytes(n), a.target, a.reference)
            probed += n

    print("%s %s identical where checked: %d data bytes in full, "
          "%d of %d hole bytes probed" %
          (a.target, a.reference, data_bytes, probed, hole_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
