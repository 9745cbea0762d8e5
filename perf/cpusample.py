#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""cpusample.py ROOTPID EVDIR LOG: host side of the CPU-time handshake.

Finds the qemu-system-* process below ROOTPID (the vng that perf/run.sh
started, so other people's guests are never sampled), then every 20 ms
looks for EVDIR/*.req files written by the guest's mark.sh. For each one
it reads QEMU's utime + stime (all threads) from /proc/PID/stat, appends
"NAME KIND JOB CPU_TICKS HOST_MONOTONIC_S" to LOG, and writes NAME.ack so
the guest may go on. Exits when ROOTPID is gone.
"""
import os
import sys
import time


def children_map():
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(p))
    return kids


def find_qemu(root):
    kids = children_map()
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            comm = ""
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            args = []
        # vng also runs short-lived qemu-system probes (--version etc.)
        if comm.startswith("qemu-system") and b"-kernel" in args:
            return pid
        todo.extend(kids.get(pid, []))
    return None


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    rest = st[st.rindex(")") + 2:].split()
    # fields 14 and 15 of stat(5); rest[0] is field 3
    return int(rest[11]) + int(rest[12])


def main():
    root, evdir, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    qemu = None
    seen = set()
    with open(log, "a", buffering=1) as out:
        out.write("# clk_tck %d\n" % os.sysconf("SC_CLK_TCK"))
        while os.path.exists("/proc/%d" % root):
            if qemu is not None and not os.path.exists("/proc/%d" % qemu):
                out.write("# qemu_pid %d gone\n" % qemu)
                qemu = None
            if qemu is None:
                qemu = find_qemu(root)
                if qemu is not None:
                    out.write("# qemu_pid %d\n" % qemu)
            if qemu is not None:
                try:
                    names = sorted(n for n in os.listdir(evdir)
                                   if n.endswith(".req") and n not in seen)
                except OSError:
                    names = []
                for n in names:
                    try:
                        with open(os.path.join(evdir, n)) as f:
                            kind, job = f.read().split()
                        ticks = cpu_ticks(qemu)
                    except (OSError, ValueError):
                        continue
                    seen.add(n)
                    out.write("%s %s %s %d %.3f\n" % (n[:-4], kind, job, ticks,
                                                     time.monotonic()))
                    with open(os.path.join(evdir, n[:-4] + ".ack"), "w"):
                        pass
            time.sleep(0.02)


if __name__ == "__main__":
    main()
