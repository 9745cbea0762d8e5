#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""writer.py DEV LOG SEED CLUSTER_BYTES [SECONDS]: synchronous random writes
to block device DEV until killed (or SECONDS pass), for the crash tests.

DEV is opened with O_DIRECT | O_DSYNC, so a write returns only once the
device has made it durable. Before each operation a line
"B seq op offset length seed" is appended to LOG and fsync'd; after the
operation returns, "D seq"; "X seq" if the device refused it as
unsupported (a discard where the device has none: the writer then stops
discarding). op is w (data from random.Random(seed), see
payload()), z (BLKZEROOUT) or d (BLKDISCARD of whole clusters, so it must
read as zeroes afterwards). verify.py replays the log against the image.
"""
import errno
import fcntl
import mmap
import os
import random
import struct
import sys
import time

BLKDISCARD = 0x1277
BLKZEROOUT = 0x127F
BLKGETSIZE64 = 0x80081272


def payload(seed, length):
    """The bytes a write with this seed and length puts on the disk."""
    return random.Random(seed).randbytes(length)


def main():
    dev, log, seed, cluster = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limit = float(sys.argv[5]) if len(sys.argv) > 5 else 900.0
    r = random.Random(seed)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
    lfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    buf = mmap.mmap(-1, 1 << 20)
    end = time.monotonic() + limit
    seq = 0
    can_discard = True

    def note(line):
        os.write(lfd, (line + "\n").encode())
        os.fsync(lfd)

    note("S %d %d" % (size, cluster))
    while time.monotonic() < end:
        seq += 1
        pick = r.random()
        if pick < 0.08:
            op = "z"
            length = r.choice([512, 4096, cluster, 2 * cluster])
        elif pick < 0.13 and can_discard:
            op = "d"
            length = cluster * r.choice([1, 2, 4])
        else:
            op = "w"
            length = r.choice([512, 1024, 4096, 8192, 65536, 262144, 1 << 20])
        length = min(length, size)
        if op == "d":
            off = r.randrange(0, size - length + 1, cluster)
        else:
            off = r.randrange(0, (size - length) // 512 + 1) * 512
        wseed = r.getrandbits(32)
        note("B %d %s %d %d %d" % (seq, op, off, length, wseed))
        if op == "w":
            buf[:length] = payload(wseed, length)
            done = os.pwritev(fd, [memoryview(buf)[:length]], off)
            if done != length:
                sys.exit("short write at %d: %d of %d" % (off, done, length))
        else:
            req = BLKZEROOUT if op == "z" else BLKDISCARD
            try:
                fcntl.ioctl(fd, req, struct.pack("QQ", off, length))
            except OSError as e:
                if op != "d" or e.errno != errno.EOPNOTSUPP:
                    raise
                note("X %d" % seq)
                can_discard = False
                continue
            # The ioctls are not covered by O_DSYNC.
            os.fsync(fd)
        note("D %d" % seq)
    note("E %d" % seq)


if __name__ == "__main__":
    main()
