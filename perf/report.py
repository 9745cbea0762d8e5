#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""report.py RESDIR: turn one perf/run.sh run into CSV files and charts.

Reads RESDIR/jobs.tsv, RESDIR/fio/*.json (fio's JSON output, any number
of jobs per file) and RESDIR/cpu.log; writes
results.csv (one row per fio job), summary.csv (per device, workload and
store: medians, min/max, ratios), relative.png (the read workloads) and
write.png (the write workloads, one row per store), and prints the
summary.

Ratios are taken per round (the devices of one round and workload run
back to back, so they saw about the same host load) and then summarized
by their median, min and max over the rounds. Round 0 of the write
workloads is the warm-up: in results.csv, never in the summary.
"""
import csv
import json
import os
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

DEVICES = ["loop-raw", "qemu-nbd", "qcow2blk"]
READ_WORKLOADS = ["randread-4k-qd1", "randread-4k-qd16", "seqread-1m-qd4",
                  "comp-randread-4k-qd1", "chain-randread-4k-qd1"]
WRITE_WORKLOADS = ["randwrite-4k-qd16", "randwrite-4k-qd16-nj2",
                   "randread-4k-qd16-alone", "randread-4k-qd16-fsyncw",
                   "randrw-4k-qd16", "seqwrite-1m-qd4",
                   "randwrite-4k-qd1-fsync", "alloc-seqwrite-4k-qd16",
                   "cow-randwrite-64k-qd16"]
STORES = ["tmpfs", "nullb512", "nullb4k"]
COLORS = {"loop-raw": "#8c8c8c", "qemu-nbd": "#4c72b0", "qcow2blk": "#dd8452"}


def read_cpu(path):
    tck, marks = 100, {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if p[:2] == ["#", "clk_tck"]:
                    tck = int(p[2])
                elif len(p) >= 4 and p[0] != "#":
                    marks[(p[1], p[2])] = int(p[3])
    except OSError as e:
        print("report: %s" % e)
    return tck, marks


def read_settings(res):
    s = {}
    try:
        with open(os.path.join(res, "settings.txt")) as f:
            for line in f:
                k, sep, v = line.partition(":")
                if sep:
                    s.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return s


def med(v):
    return statistics.median(v) if v else None


def fmt(x, nd=2):
    return "" if x is None else ("%.*f" % (nd, x))


def seconds(v):
    """fio's time option as given in the job file (plain seconds here)."""
    try:
        return float(str(v).rstrip("s"))
    except ValueError:
        return 0.0


def read_fio(fdir):
    """jobname -> the job's totals. A job with numjobs=N appears N times
    under one name: its clones are summed."""
    jobs = {}
    try:
        names = sorted(os.listdir(fdir))
    except OSError:
        names = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(fdir, name)) as jf:
                doc = json.load(jf)
        except (OSError, ValueError) as e:
            print("report: %s: %s" % (name, e))
            continue
        g = doc.get("global options", {})
        ramp, runtime = seconds(g.get("ramp_time", 0)), seconds(g.get("runtime", 0))
        for j in doc["jobs"]:
            t = jobs.setdefault(j["jobname"], {
                "clones": 0, "error": 0, "ramp": ramp, "runtime": runtime,
                "read": {"iops": 0.0, "bw": 0.0, "ios": 0, "lat_sum": 0.0},
                "write": {"iops": 0.0, "bw": 0.0, "ios": 0, "lat_sum": 0.0}})
            t["clones"] += 1
            t["error"] = t["error"] or j.get("error", 0)
            for side in ("read", "write"):
                d, s = j[side], t[side]
                s["iops"] += d["iops"]
                s["bw"] += d["bw_bytes"]
                s["ios"] += d["total_ios"]
                s["lat_sum"] += d["lat_ns"]["mean"] * d["total_ios"]
    return jobs


def job_row(t, side):
    """IOPS, bandwidth, mean latency and I/O count of the reported side."""
    sides = ("read", "write") if side == "rw" else (side,)
    iops = sum(t[s]["iops"] for s in sides)
    bw = sum(t[s]["bw"] for s in sides)
    ios = sum(t[s]["ios"] for s in sides)
    lat = (sum(t[s]["lat_sum"] for s in sides) / ios / 1000) if ios else None
    return iops, bw, ios, lat


def main():
    res = sys.argv[1]
    settings = read_settings(res)
    tck, marks = read_cpu(os.path.join(res, "cpu.log"))
    fiojobs = read_fio(os.path.join(res, "fio"))
    rows = []
    try:
        with open(os.path.join(res, "jobs.tsv")) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        p = line.split("\t")
        if len(p) == 5:		# before the write workloads
            p += ["tmpfs", "read"]
        job, dev, wl, rnd, _bdev, store, side = p
        t = fiojobs.get(job)
        if t is None:
            print("report: no fio output for %s" % job)
            continue
        if t["error"]:
            print("report: fio error %s in %s" % (t["error"], job))
        iops, bw, ios, lat = job_row(t, side)
        b, e = marks.get(("begin", job)), marks.get(("end", job))
        cpu = (e - b) / tck if b is not None and e is not None else None
        # The CPU marks enclose the ramp too, fio's counts do not: scale
        # the count to the whole time, at the measured rate.
        if t["ramp"] and t["runtime"]:
            ios *= (t["ramp"] + t["runtime"]) / t["runtime"]
        peer = fiojobs.get(job + "__writer")
        rows.append({
            "device": dev, "workload": wl, "store": store, "side": side,
            "round": int(rnd), "iops": iops, "bw_MiBps": bw / 1048576,
            "lat_us_mean": lat, "host_cpu_s": cpu,
            "iops_per_host_cpu_s": ios / cpu if cpu else None,
            "read_iops": t["read"]["iops"], "write_iops": t["write"]["iops"],
            "peer_write_iops": peer["write"]["iops"] if peer else None,
        })

    with open(os.path.join(res, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "workload", "round", "iops", "bw_MiBps",
                    "lat_us_mean", "host_cpu_s", "iops_per_host_cpu_s",
                    "store", "side", "read_iops", "write_iops",
                    "peer_write_iops"])
        for r in rows:
            w.writerow([r["device"], r["workload"], r["round"],
                        fmt(r["iops"], 1), fmt(r["bw_MiBps"]),
                        fmt(r["lat_us_mean"], 1), fmt(r["host_cpu_s"]),
                        fmt(r["iops_per_host_cpu_s"], 1), r["store"],
                        r["side"], fmt(r["read_iops"], 1),
                        fmt(r["write_iops"], 1), fmt(r["peer_write_iops"], 1)])

    by = {}
    for r in rows:
        if r["round"] == 0:	# the write phase's warm-up
            continue
        by.setdefault((r["store"], r["workload"], r["device"]), {})[r["round"]] = r

    def ratios(key3, ref, key):
        st, wl, dev = key3
        a, b = by.get(key3, {}), by.get((st, wl, ref), {})
        return [a[k][key] / b[k][key] for k in sorted(a)
                if k in b and a[k][key] and b[k][key]]

    # what was asked for, in order: (store, workload)
    phases = settings.get("phases", "read").split()
    wstores = [s for s in STORES
               if s in settings.get("write_stores", "").split()]
    wstores += [s for s in sorted({r["store"] for r in rows
                                   if r["workload"] in WRITE_WORKLOADS})
                if s not in wstores]
    expected = []
    if "read" in phases or any(r["workload"] in READ_WORKLOADS for r in rows):
        expected += [("tmpfs", wl) for wl in READ_WORKLOADS]
    if "write" in phases or wstores:
        expected += [(st, wl) for st in wstores for wl in WRITE_WORKLOADS]

    summary = []
    for st, wl in expected:
        for dev in DEVICES:
            rr = by.get((st, wl, dev))
            if not rr:
                continue
            iops = [x["iops"] for x in rr.values()]
            eff = [x["iops_per_host_cpu_s"] for x in rr.values()
                   if x["iops_per_host_cpu_s"]]
            peer = [x["peer_write_iops"] for x in rr.values()
                    if x["peer_write_iops"] is not None]
            lat = [x["lat_us_mean"] for x in rr.values()
                   if x["lat_us_mean"] is not None]
            s = {"device": dev, "workload": wl, "store": st,
                 "rounds": len(rr),
                 "iops_median": med(iops), "iops_min": min(iops),
                 "iops_max": max(iops),
                 "iops_spread_pct": 100 * (max(iops) - min(iops)) / med(iops)
                 if med(iops) else None,
                 "bw_MiBps_median": med([x["bw_MiBps"] for x in rr.values()]),
                 "lat_us_median": med(lat),
                 "host_cpu_s_median": med([x["host_cpu_s"] for x in rr.values()
                                           if x["host_cpu_s"]]),
                 "iops_per_host_cpu_s_median": med(eff),
                 "iops_per_host_cpu_s_min": min(eff) if eff else None,
                 "iops_per_host_cpu_s_max": max(eff) if eff else None,
                 "peer_write_iops_median": med(peer)}
            for ref, tag in (("qemu-nbd", "nbd"), ("loop-raw", "loop")):
                for key, k2 in (("iops", "iops"), ("iops_per_host_cpu_s", "eff")):
                    v = ratios((st, wl, dev), ref, key)
                    s["%s_vs_%s_median" % (k2, tag)] = med(v)
                    s["%s_vs_%s_min" % (k2, tag)] = min(v) if v else None
                    s["%s_vs_%s_max" % (k2, tag)] = max(v) if v else None
            summary.append(s)

    cols = ["device", "workload", "store", "rounds", "iops_median",
            "iops_min", "iops_max", "iops_spread_pct", "bw_MiBps_median",
            "lat_us_median", "host_cpu_s_median",
            "iops_per_host_cpu_s_median", "iops_per_host_cpu_s_min",
            "iops_per_host_cpu_s_max"]
    for k2 in ("iops", "eff"):
        for tag in ("nbd", "loop"):
            cols += ["%s_vs_%s_%s" % (k2, tag, m) for m in ("median", "min", "max")]
    cols += ["peer_write_iops_median"]
    with open(os.path.join(res, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for s in summary:
            w.writerow([s[c] if isinstance(s[c], (str, int)) else
                        fmt(s[c], 3 if "_vs_" in c else 1) for c in cols])
        done = {(s["store"], s["workload"]) for s in summary}
        for st, wl in expected:
            if (st, wl) not in done:
                w.writerow(["(none)", wl, st, 0] + [""] * (len(cols) - 4))

    # ---- text summary --------------------------------------------------
    def table(title, ss):
        print(title)
        print("%-24s %-9s %9s %15s %9s %9s %9s %9s %9s" % (
            "workload", "device", "IOPS med", "(min-max)", "vs nbd",
            "vs loop", "IO/cpu-s", "eff/nbd", "eff/loop"))
        for s in ss:
            print("%-24s %-9s %9.0f %15s %9s %9s %9s %9s %9s" % (
                s["workload"], s["device"], s["iops_median"],
                "(%.0f-%.0f)" % (s["iops_min"], s["iops_max"]),
                fmt(s["iops_vs_nbd_median"]), fmt(s["iops_vs_loop_median"]),
                fmt(s["iops_per_host_cpu_s_median"], 0),
                fmt(s["eff_vs_nbd_median"]), fmt(s["eff_vs_loop_median"])))

    rsum = [s for s in summary if s["workload"] in READ_WORKLOADS]
    if rsum:
        table("read workloads (tmpfs, read-only devices)", rsum)
    for st in wstores:
        ws = [s for s in summary if s["store"] == st and
              s["workload"] in WRITE_WORKLOADS]
        if ws:
            print()
            table("write workloads, store %s" % st, ws)
    if any(s["workload"] in WRITE_WORKLOADS for s in summary):
        print()
        print("qcow2blk, median of per-round ratios (min-max):")
        print("| store | workload | qcow2blk IOPS | vs loop-raw | vs qemu-nbd"
              " | IO/cpu-s vs loop-raw | IO/cpu-s vs qemu-nbd |")
        print("|---|---|---|---|---|---|---|")

        def rng(s, k):
            if s[k + "_median"] is None:
                return "-"
            return "%.2f (%.2f-%.2f)" % (s[k + "_median"], s[k + "_min"],
                                         s[k + "_max"])
        for s in summary:
            if s["device"] != "qcow2blk" or s["workload"] not in WRITE_WORKLOADS:
                continue
            print("| %s | %s | %.0f | %s | %s | %s | %s |" % (
                s["store"], s["workload"], s["iops_median"],
                rng(s, "iops_vs_loop"), rng(s, "iops_vs_nbd"),
                rng(s, "eff_vs_loop"), rng(s, "eff_vs_nbd")))

    if rsum:
        plot_read(res, rsum)
    if any(s["workload"] in WRITE_WORKLOADS for s in summary):
        plot_write(res, summary, wstores)


def bars(ax, ss, wls, key, title, labeler):
    width = 0.27
    for i, dev in enumerate(DEVICES):
        xs, ys, lo, hi = [], [], [], []
        for x, wl in enumerate(wls):
            s = next((s for s in ss if s["workload"] == wl and
                      s["device"] == dev), None)
            if not s or s[key + "_median"] is None:
                continue
            xs.append(x + (i - 1) * width)
            ys.append(s[key + "_median"])
            lo.append(s[key + "_median"] - s[key + "_min"])
            hi.append(s[key + "_max"] - s[key + "_median"])
        b = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3,
                   color=COLORS[dev], label=dev)
        # value above the whisker, so the two never overlap
        for r, y, h in zip(b, ys, hi):
            ax.annotate("%.2f" % y, (r.get_x() + r.get_width() / 2, y + h),
                        xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(
        subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: "%g" % v))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(len(wls)))
    ax.set_xticklabels([labeler(w) for w in wls], fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("ratio, log scale (median of per-round ratios;"
                  " whiskers: min-max)", fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def plot_read(res, summary):
    wls = [wl for wl in READ_WORKLOADS
           if any(s["workload"] == wl for s in summary)]
    panels = [("iops_vs_nbd", "IOPS relative to qemu-nbd"),
              ("iops_vs_loop", "IOPS relative to loop-raw"),
              ("eff_vs_nbd", "I/Os per host CPU second,\nrelative to qemu-nbd")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for ax, (key, title) in zip(axes, panels):
        bars(ax, summary, wls, key, title,
             lambda w: w.replace("read-", "read\n").replace("-r", "\nr"))
    axes[0].legend(fontsize=8)
    name = os.path.basename(os.path.normpath(res))
    title = ("qcow2blk vs qemu-nbd vs loop (raw twin), guest under TCG: %s"
             % name)
    if "chain-randread-4k-qd1" not in wls:
        why = read_settings(res).get("chain_workload", "did not run")
        title += "\nchain-randread-4k-qd1: " + why.split("(")[0].strip()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(res, "relative.png"), dpi=110)
    plt.close(fig)


def plot_write(res, summary, stores):
    stores = [st for st in stores if any(
        s["store"] == st and s["workload"] in WRITE_WORKLOADS for s in summary)]
    panels = [("iops_vs_nbd", "IOPS relative to qemu-nbd"),
              ("iops_vs_loop", "IOPS relative to loop-raw"),
              ("eff_vs_nbd", "I/Os per host CPU second, rel. to qemu-nbd"),
              ("eff_vs_loop", "I/Os per host CPU second, rel. to loop-raw")]
    fig, axes = plt.subplots(len(stores), 4, figsize=(26, 6 * len(stores)),
                             squeeze=False)
    for row, st in zip(axes, stores):
        ss = [s for s in summary if s["store"] == st]
        wls = [wl for wl in WRITE_WORKLOADS
               if any(s["workload"] == wl for s in ss)]
        for ax, (key, title) in zip(row, panels):
            bars(ax, ss, wls, key, "%s: %s" % (st, title),
                 lambda w: w.replace("-", "\n"))
        row[0].legend(fontsize=8)
    name = os.path.basename(os.path.normpath(res))
    fig.suptitle("write workloads: qcow2blk vs qemu-nbd vs loop (raw), "
                 "read-write, guest under TCG: %s\n(tmpfs: guest memory; "
                 "nullb512/nullb4k: xfs on memory-backed null_blk, 50 us "
                 "completions, 512 B / 4 KiB sectors)" % name, fontsize=11)
    # room for the two lines of the title
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / fig.get_figheight()))
    fig.savefig(os.path.join(res, "write.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
