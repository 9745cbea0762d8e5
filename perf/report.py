#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""report.py RESDIR: turn one perf/run.sh run into CSV files and a chart.

Reads RESDIR/jobs.tsv, RESDIR/fio/*.json (fio's JSON output, any number
of jobs per file) and RESDIR/cpu.log; writes
results.csv (one row per fio job), summary.csv (per device and workload:
medians, min/max, ratios) and relative.png, and prints the summary.

Ratios are taken per round (the devices of one round and workload run
back to back, so they saw about the same host load) and then summarized
by their median, min and max over the rounds.
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
WORKLOADS = ["randread-4k-qd1", "randread-4k-qd16", "seqread-1m-qd4",
             "comp-randread-4k-qd1", "chain-randread-4k-qd1"]
COLORS = {"loop-raw": "#8c8c8c", "qemu-nbd": "#4c72b0", "qcow2blk": "#dd8452"}


def read_cpu(path):
    tck, marks = 100, {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if p[:2] == ["#", "clk_tck"]:
                tck = int(p[2])
            elif p and p[0] != "#":
                marks[(p[1], p[2])] = int(p[3])
    return tck, marks


def med(v):
    return statistics.median(v) if v else None


def fmt(x, nd=2):
    return "" if x is None else ("%.*f" % (nd, x))


def main():
    res = sys.argv[1]
    tck, marks = read_cpu(os.path.join(res, "cpu.log"))
    fiojobs = {}
    fdir = os.path.join(res, "fio")
    for name in sorted(os.listdir(fdir)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(fdir, name)) as jf:
                    for j in json.load(jf)["jobs"]:
                        fiojobs[j["jobname"]] = j
            except (OSError, ValueError) as e:
                print("report: %s: %s" % (name, e))
    rows = []
    with open(os.path.join(res, "jobs.tsv")) as f:
        for line in f:
            job, dev, wl, rnd, _bdev = line.rstrip("\n").split("\t")
            if job not in fiojobs:
                print("report: no fio output for %s" % job)
                continue
            rd = fiojobs[job]["read"]
            if fiojobs[job].get("error"):
                print("report: fio error %s in %s" % (fiojobs[job]["error"], job))
            b, e = marks.get(("begin", job)), marks.get(("end", job))
            cpu = (e - b) / tck if b is not None and e is not None else None
            rows.append({
                "device": dev, "workload": wl, "round": int(rnd),
                "iops": rd["iops"], "bw_MiBps": rd["bw_bytes"] / 1048576,
                "lat_us_mean": rd["lat_ns"]["mean"] / 1000,
                "host_cpu_s": cpu,
                "iops_per_host_cpu_s":
                    rd["total_ios"] / cpu if cpu else None,
            })

    with open(os.path.join(res, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "workload", "round", "iops", "bw_MiBps",
                    "lat_us_mean", "host_cpu_s", "iops_per_host_cpu_s"])
        for r in rows:
            w.writerow([r["device"], r["workload"], r["round"],
                        fmt(r["iops"], 1), fmt(r["bw_MiBps"]),
                        fmt(r["lat_us_mean"], 1), fmt(r["host_cpu_s"]),
                        fmt(r["iops_per_host_cpu_s"], 1)])

    by = {}
    for r in rows:
        by.setdefault((r["workload"], r["device"]), {})[r["round"]] = r

    def ratios(wl, dev, ref, key):
        a, b = by.get((wl, dev), {}), by.get((wl, ref), {})
        return [a[k][key] / b[k][key] for k in sorted(a)
                if k in b and a[k][key] and b[k][key]]

    summary = []
    for wl in WORKLOADS:
        for dev in DEVICES:
            rr = by.get((wl, dev))
            if not rr:
                continue
            iops = [x["iops"] for x in rr.values()]
            eff = [x["iops_per_host_cpu_s"] for x in rr.values()
                   if x["iops_per_host_cpu_s"]]
            s = {"device": dev, "workload": wl, "rounds": len(rr),
                 "iops_median": med(iops), "iops_min": min(iops),
                 "iops_max": max(iops),
                 "iops_spread_pct": 100 * (max(iops) - min(iops)) / med(iops)
                 if med(iops) else None,
                 "bw_MiBps_median": med([x["bw_MiBps"] for x in rr.values()]),
                 "lat_us_median": med([x["lat_us_mean"] for x in rr.values()]),
                 "host_cpu_s_median": med([x["host_cpu_s"] for x in rr.values()
                                           if x["host_cpu_s"]]),
                 "iops_per_host_cpu_s_median": med(eff),
                 "iops_per_host_cpu_s_min": min(eff) if eff else None,
                 "iops_per_host_cpu_s_max": max(eff) if eff else None}
            for ref, tag in (("qemu-nbd", "nbd"), ("loop-raw", "loop")):
                for key, k2 in (("iops", "iops"), ("iops_per_host_cpu_s", "eff")):
                    v = ratios(wl, dev, ref, key)
                    s["%s_vs_%s_median" % (k2, tag)] = med(v)
                    s["%s_vs_%s_min" % (k2, tag)] = min(v) if v else None
                    s["%s_vs_%s_max" % (k2, tag)] = max(v) if v else None
            summary.append(s)

    cols = ["device", "workload", "rounds", "iops_median", "iops_min",
            "iops_max", "iops_spread_pct", "bw_MiBps_median", "lat_us_median",
            "host_cpu_s_median", "iops_per_host_cpu_s_median",
            "iops_per_host_cpu_s_min", "iops_per_host_cpu_s_max"]
    for k2 in ("iops", "eff"):
        for tag in ("nbd", "loop"):
            cols += ["%s_vs_%s_%s" % (k2, tag, m) for m in ("median", "min", "max")]
    with open(os.path.join(res, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for s in summary:
            w.writerow([s[c] if isinstance(s[c], (str, int)) else
                        fmt(s[c], 3 if "_vs_" in c else 1) for c in cols])
        done = {s["workload"] for s in summary}
        for wl in WORKLOADS:
            if wl not in done:
                w.writerow(["(none)", wl, 0] + [""] * (len(cols) - 3))

    # ---- text summary --------------------------------------------------
    print("%-22s %-9s %9s %15s %9s %9s %9s %9s" % (
        "workload", "device", "IOPS med", "(min-max)", "vs nbd", "vs loop",
        "IO/cpu-s", "eff/nbd"))
    for s in summary:
        print("%-22s %-9s %9.0f %15s %9s %9s %9s %9s" % (
            s["workload"], s["device"], s["iops_median"],
            "(%.0f-%.0f)" % (s["iops_min"], s["iops_max"]),
            fmt(s["iops_vs_nbd_median"]), fmt(s["iops_vs_loop_median"]),
            fmt(s["iops_per_host_cpu_s_median"], 0),
            fmt(s["eff_vs_nbd_median"])))

    plot(res, summary)


def plot(res, summary):
    wls = [wl for wl in WORKLOADS if any(s["workload"] == wl for s in summary)]
    panels = [("iops_vs_nbd", "IOPS relative to qemu-nbd"),
              ("iops_vs_loop", "IOPS relative to loop-raw"),
              ("eff_vs_nbd", "I/Os per host CPU second,\nrelative to qemu-nbd")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    width = 0.27
    for ax, (key, title) in zip(axes, panels):
        for i, dev in enumerate(DEVICES):
            xs, ys, lo, hi = [], [], [], []
            for x, wl in enumerate(wls):
                s = next((s for s in summary if s["workload"] == wl and
                          s["device"] == dev), None)
                if not s or s[key + "_median"] is None:
                    continue
                xs.append(x + (i - 1) * width)
                ys.append(s[key + "_median"])
                lo.append(s[key + "_median"] - s[key + "_min"])
                hi.append(s[key + "_max"] - s[key + "_median"])
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3,
                          color=COLORS[dev], label=dev)
            # value above the whisker, so the two never overlap
            for b, y, h in zip(bars, ys, hi):
                ax.annotate("%.2f" % y, (b.get_x() + b.get_width() / 2, y + h),
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
        ax.set_xticklabels([w.replace("read-", "read\n").replace("-r", "\nr")
                            for w in wls], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("ratio, log scale (median of per-round ratios;"
                      " whiskers: min-max)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    name = os.path.basename(os.path.normpath(res))
    title = ("qcow2blk vs qemu-nbd vs loop (raw twin), guest under TCG: %s"
             % name)
    if "chain-randread-4k-qd1" not in wls:
        why = "did not run"
        try:
            with open(os.path.join(res, "settings.txt")) as f:
                for line in f:
                    if line.startswith("chain_workload:"):
                        why = line.split(":", 1)[1].split("(")[0].strip()
        except OSError:
            pass
        title += "\nchain-randread-4k-qd1: " + why
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(res, "relative.png"), dpi=110)


if __name__ == "__main__":
    main()
