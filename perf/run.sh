#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh [KVER]: the side-by-side benchmark of qcow2blk, qemu-nbd and loop.
#
# Builds qcow2blk for KVER (default: the newest installed kernel) and
# qcow2ctl from the committed HEAD, makes the images on the host
# (perf/images.sh), boots one virtme-ng guest under TCG (holding the guest
# lock: one guest at a time on this host), runs perf/guest.sh there,
# samples the guest's QEMU CPU time around every fio job
# (perf/cpusample.py), and writes perf/results/<UTC date and
# time>-<KVER>/ with results.csv, summary.csv, relative.png, write.png
# and settings.txt (perf/report.py). See perf/README.md.
#
# Environment:
#   QP_PHASES="read write"  the phases to run: the read workloads
#                      (read-only devices on the tmpfs), the write
#                      workloads, or both
#   QP_STORES="tmpfs nullb512 nullb4k"  where the write workloads' images
#                      live: the tmpfs, or xfs on a memory-backed null_blk
#                      with 50 us completions and 512 B or 4 KiB sectors
#   QP_ROUNDS=3        read phase: rounds per device and workload
#   QP_RUNTIME=10      read phase: seconds of I/O per fio job
#   QP_WROUNDS=2       write phase: measured rounds per store, after one
#                      warm-up round (round 0, not in the summary)
#   QP_WRUNTIME=4      write phase: seconds of I/O per job...
#   QP_WRAMP=1         ...after this many seconds of ramp (not counted)
#   QP_WWARMUP=1       write phase: seconds of I/O per warm-up job
#   QP_WORKLOADS="..." write phase: only these workloads (default all;
#                      the names as in summary.csv)
#   QP_WSIZE_MIB=256   virtual size of the write images
#   QP_NULLB_GB=4      null_blk size (it takes memory only as written)
#   QP_NULLB_NSEC=50000  null_blk completion time
#   QP_SIZE_MIB=512    virtual size of the data image (and the raw twin)
#   QP_COMP_MIB=256    virtual size of the compressed image
#   QP_CHAIN_DEPTH=300 layers of the backing chain
#   QP_CPUS=2 QP_MEM=6G   guest CPUs and memory
#   QP_IMAGES=DIR      image directory, reused across runs
#                      (default /var/tmp/qcow2blk-perf-images)
#   QP_LOCK=FILE       the guest lock (default /tmp/qcow2blk-guest.lock)
#   QP_TREE=1          build (a copy of) the working tree, not the HEAD
#   QP_NO_BUILD=1      use build/KVER/qcow2blk.ko and qcow2ctl as they are
#   QP_KEEP=1          keep the scratch directory
#   QP_OUT=DIR         where the results go (default perf/results/...)
set -u

# The whole script is one block, read before it runs, so editing this file
# during a run does not change the run.
{
top=$(cd "$(dirname "$0")/.." && pwd)
perf=$top/perf
kver=${1:-$(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' |
	sort -V | tail -1)}
kernel=/boot/vmlinuz-$kver
rounds=${QP_ROUNDS:-3}
runtime=${QP_RUNTIME:-10}
cpus=${QP_CPUS:-2}
mem=${QP_MEM:-6G}
images=${QP_IMAGES:-/var/tmp/qcow2blk-perf-images}
lock=${QP_LOCK:-/tmp/qcow2blk-guest.lock}
phases=${QP_PHASES:-read write}
stores=${QP_STORES:-tmpfs nullb512 nullb4k}
wrounds=${QP_WROUNDS:-2}
wruntime=${QP_WRUNTIME:-4}
wramp=${QP_WRAMP:-1}
wwarmup=${QP_WWARMUP:-1}
workloads=${QP_WORKLOADS:-}
nullb_gb=${QP_NULLB_GB:-4}
nullb_nsec=${QP_NULLB_NSEC:-50000}
export QP_SIZE_MIB=${QP_SIZE_MIB:-512}
export QP_COMP_MIB=${QP_COMP_MIB:-256}
export QP_CHAIN_DEPTH=${QP_CHAIN_DEPTH:-300}
export QP_WSIZE_MIB=${QP_WSIZE_MIB:-256}
stamp=$(date -u +%Y%m%d-%H%M)
resdir=${QP_OUT:-$perf/results/$stamp-$kver}
py=/usr/bin/python3

die() {
	echo "run.sh: $*" >&2
	exit 1
}

[ -r "$kernel" ] || die "no kernel $kernel"
command -v vng >/dev/null || die "vng (virtme-ng) not installed"
for t in fio qemu-img qemu-nbd flock timeout; do
	command -v $t >/dev/null || die "$t not installed"
done
want_read=0
want_write=0
for p in $phases; do
	case $p in
	read) want_read=1 ;;
	write) want_write=1 ;;
	*) die "QP_PHASES: unknown phase '$p' (read, write)" ;;
	esac
done
[ "$want_read$want_write" != 00 ] || die "QP_PHASES is empty"
nstores=0
for s in $stores; do
	case $s in
	tmpfs | nullb512 | nullb4k) nstores=$((nstores + 1)) ;;
	*) die "QP_STORES: unknown store '$s' (tmpfs, nullb512, nullb4k)" ;;
	esac
done
if [ "$want_write" = 1 ]; then
	[ "$nstores" -gt 0 ] || die "QP_STORES is empty"
	command -v mkfs.xfs >/dev/null || die "mkfs.xfs not installed"
else
	stores=
	nstores=0
fi
for v in rounds runtime wrounds wruntime wramp wwarmup nullb_gb nullb_nsec \
	QP_WSIZE_MIB; do
	case ${!v} in
	'' | *[!0-9]*) die "$v must be a number, not '${!v}'" ;;
	esac
done
if [ "$wruntime" -eq 0 ] || [ "$wwarmup" -eq 0 ]; then
	die "QP_WRUNTIME and QP_WWARMUP must be at least 1"
fi

t_start=$(date +%s)
work=$(mktemp -d /var/tmp/qcow2blk-perf.XXXXXX)
stage=$work/stage
mkdir -p "$stage" "$work/ev" "$work/out"
echo "run.sh: scratch $work"

# ---- build -------------------------------------------------------------

# By default the committed HEAD is built in the scratch directory, so
# work in progress in the tree (others edit it concurrently) is not what
# gets measured; QP_TREE=1 builds a copy of the working tree as it is now
# (tracked and untracked files, not the ignored ones), in the scratch
# directory too, so that nobody's build in the tree meets ours; and
# QP_NO_BUILD=1 takes build/KVER/qcow2blk.ko and qcow2ctl as they are.
src=$top
if [ "${QP_NO_BUILD:-0}" = 1 ]; then
	desc="$(git -C "$top" rev-parse --short HEAD 2>/dev/null) tree as built"
elif [ "${QP_TREE:-0}" = 1 ]; then
	src=$work/src
	mkdir -p "$src"
	# --ignore-failed-read: files deleted but not yet committed
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		tar -C "$top" --null -T - --ignore-failed-read -cf - 2>/dev/null |
		tar -x -C "$src" || die "copying the working tree failed"
	desc="$(git -C "$top" rev-parse --short HEAD 2>/dev/null) working tree"
	git -C "$top" status --porcelain -- kernel lib uapi qcow2ctl |
		grep -q . && desc+=" (with uncommitted changes)"
	git -C "$top" diff HEAD -- kernel lib uapi qcow2ctl >"$work/tree.diff"
else
	src=$work/src
	mkdir -p "$src"
	git -C "$top" archive HEAD | tar -x -C "$src" ||
		die "git archive HEAD failed"
	desc="$(git -C "$top" rev-parse --short HEAD) (committed HEAD)"
fi
if [ "${QP_NO_BUILD:-0}" != 1 ]; then
	echo "run.sh: building qcow2blk for $kver and qcow2ctl: $desc"
	if ! make -C "$src" --no-print-directory module KVER="$kver" \
		>"$work/build.log" 2>&1 ||
		! make -C "$src" --no-print-directory qcow2ctl-bin \
			>>"$work/build.log" 2>&1; then
		tail -30 "$work/build.log"
		die "build failed"
	fi
fi
echo "$desc" >"$stage/commit"
# Private copies: others may rebuild the tree while the guest runs.
cp "$src/build/$kver/qcow2blk.ko" "$src/qcow2ctl/qcow2ctl" "$stage/" ||
	die "no module or qcow2ctl (build first, or drop QP_NO_BUILD)"
cp "$perf/guest.sh" "$perf/mark.sh" "$stage/"

# ---- images ------------------------------------------------------------

echo "run.sh: images in $images"
t0=$(date +%s)
bash "$perf/images.sh" "$images" >"$work/images.log" 2>&1 ||
	{ tail -30 "$work/images.log"; die "making images failed"; }
cat "$work/images.log"
echo "run.sh: images ready in $(($(date +%s) - t0)) s"

# The images reach the guest as tar files on disks, one per phase:
# copying a gigabyte from 9p under TCG took minutes.
bundle() {	# bundle NAME FILE...: $images/bundle-NAME.tar, made when stale
	local b=$images/bundle-$1.tar

	shift
	if [ ! -f "$b" ] || [ "$images/STAMP" -nt "$b" ]; then
		tar -cf "$b.tmp" -C "$images" "$@" || die "tar failed"
		mv "$b.tmp" "$b" || die "mv failed"
	fi
	echo "$b"
}
disks=()
rbytes=
wbytes=
w=$QP_WSIZE_MIB
need=64	# tmpfs for the copies: the images' sizes plus a margin
if [ "$want_read" = 1 ]; then
	b=$(bundle read data.raw data.qcow2 comp.qcow2 chain) || exit 1
	disks+=(--disk "$b")
	rbytes=$(stat -c %s "$b")
	need=$((need + $(du -smL "$images/data.raw" "$images/data.qcow2" \
		"$images/comp.qcow2" "$images/chain" |
		awk '{ s += $1 } END { print s }')))
fi
if [ "$want_write" = 1 ]; then
	b=$(bundle write wdata.qcow2 wdata.raw) || exit 1
	disks+=(--disk "$b")
	wbytes=$(stat -c %s "$b")
	# the masters; for the tmpfs store 3 copies and 6 fresh images at most
	need=$((need + 2 * w + w / 8))
	case " $stores " in *" tmpfs "*) need=$((need + 9 * w + w / 4)) ;; esac
fi
cat >"$stage/config" <<EOF
QP_PHASES="$phases"
QP_STORES="$stores"
QP_RUNTIME=$runtime
QP_ROUNDS=$rounds
QP_WROUNDS=$wrounds
QP_WRUNTIME=$wruntime
QP_WRAMP=$wramp
QP_WWARMUP=$wwarmup
QP_WORKLOADS="$workloads"
QP_WSIZE_MIB=$w
QP_NULLB_GB=$nullb_gb
QP_NULLB_NSEC=$nullb_nsec
QP_TMPFS_MIB=$need
QP_BUNDLE_READ_BYTES=$rbytes
QP_BUNDLE_WRITE_BYTES=$wbytes
EOF

# ---- guest -------------------------------------------------------------

# q35 devices the benchmark never uses; their drivers only slow the boot.
blacklist=ahci,libahci,sr_mod,cdrom,sg,iTCO_wdt,iTCO_vendor_support,i6300esb
blacklist+=,kvm,kvm_amd,kvm_intel,ccp,intel_pmc_bxt,powernow_k8,lpc_ich
blacklist+=,i2c_i801,pcspkr,joydev,serio_raw

# Guest time: boot (up to 4 min under load), copy, checks, and per job the
# runtime plus fio's start-up and the handshakes, which are slow under
# TCG; per store its set-up and per round the fresh images. Generous,
# since the host is shared; guest.sh itself powers the guest off when a
# fio run hangs.
wjobs=27	# per store and round: 9 workloads on 3 devices
guest_timeout=$((600 + want_read * rounds * 13 * (runtime + 12) +
	nstores * (300 + wjobs * (wwarmup + 12) +
	wrounds * (60 + wjobs * (wruntime + wramp + 12)))))
echo "run.sh: booting $kver under TCG ($cpus CPUs, $mem): phases '$phases';" \
	"read: $rounds rounds of ${runtime} s; write: stores '$stores'," \
	"1 + $wrounds rounds of ${wramp} + ${wruntime} s; timeout ${guest_timeout} s"
flock -n "$lock" true || echo "run.sh: waiting for the guest lock $lock"
t_launch=$(date +%s)
uptime >"$work/load-before"
: >"$work/vng.log"	# before tail -f below looks for it
# One TCG guest at a time on this host; the tests take the same lock. The
# timeout runs from when the lock is held.
# shellcheck disable=SC2016 # the inner shell expands $0 and $@
(cd / && exec flock "$lock" \
	sh -c 'date +%s >"$0"; uptime >"$0.load"; exec "$@"' "$work/lock-taken" \
	timeout -k 30 "$guest_timeout" vng --run "$kernel" \
	--disable-kvm --cpus "$cpus" --memory "$mem" \
	--rwdir="$work=$work" "${disks[@]}" \
	--append "modprobe.blacklist=$blacklist" \
	--exec "bash $stage/guest.sh $work") >"$work/vng.log" 2>&1 &
vng_pid=$!
$py "$perf/cpusample.py" "$vng_pid" "$work/ev" "$work/cpu.log" &
sampler_pid=$!
tail -n +1 -f "$work/vng.log" --pid="$vng_pid" | grep --line-buffered -E \
	'^(== |setting |qemu-nbd|chain-|fio failed|kernel log|run.sh|store |no disk)' &
wait "$vng_pid"
vng_rc=$?
wait "$sampler_pid"
uptime >"$work/load-after"
t_exit=$(date +%s)
t_lock=$(cat "$work/lock-taken" 2>/dev/null || echo "$t_launch")
lock_wait=$((t_lock - t_launch))
echo "run.sh: guest exited ($vng_rc) after $(($(date +%s) - t_start)) s," \
	"$lock_wait s of them waiting for the lock"

complete=yes
if [ ! -f "$work/out/done" ]; then
	tail -40 "$work/vng.log"
	echo "run.sh: the guest did not finish; reporting what it left," \
		"scratch kept in $work"
	complete="no: the guest did not finish (exit $vng_rc); see console.log and dmesg-live.txt"
	QP_KEEP=1
fi

# ---- report ------------------------------------------------------------

mkdir -p "$resdir"
{
	echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "run_complete: $complete"
	echo "qcow2blk_commit: $(cat "$stage/commit" 2>/dev/null)"
	echo "host_kernel: $(uname -r)"
	echo "host_cpus: $(nproc)"
	echo "host_load_before: $(cat "$work/load-before")"
	echo "host_load_at_lock: $(cat "$work/lock-taken.load" 2>/dev/null)"
	echo "host_load_after: $(cat "$work/load-after")"
	echo "guest_lock: $lock, waited $lock_wait s"
	echo "vng: $(vng --version 2>&1 | head -1) --disable-kvm (TCG)" \
		"--cpus $cpus --memory $mem"
	echo "qemu_system: $(qemu-system-x86_64 --version | head -1)"
	echo "fio_runtime_s: $runtime"
	echo "rounds: $rounds"
	echo "fio_common: --ioengine=libaio --direct=1 --time_based" \
		"--runtime=$runtime (no ramp; randrepeat default)"
	echo "phases: $phases"
	echo "write_stores: $stores"
	echo "write_rounds: $wrounds, after one warm-up round (round 0)"
	echo "write_fio_common: --ioengine=libaio --direct=1 --time_based" \
		"--runtime=$wruntime --ramp_time=$wramp; warm-up round" \
		"--runtime=$wwarmup without ramp"
	for f in data.qcow2 data.raw comp.qcow2 wdata.qcow2 wdata.raw; do
		echo "image_$f: $(qemu-img info --output=json "$images/$f" |
			$py -c 'import json,sys; i=json.load(sys.stdin); print("virtual %d MiB, file %.1f MiB, cluster %s, %s" % (i["virtual-size"] >> 20, i["actual-size"] / 1048576, i.get("cluster-size", "-"), i["format"]))')"
	done
	echo "image_comp.qcow2_data: hex text of random bytes, deflate"
	echo "image_chain: $QP_CHAIN_DEPTH layers over a base, 64 KiB" \
		"clusters, $(du -smL "$images/chain" | cut -f1) MiB in all"
	cat "$work/out/guest.txt" 2>/dev/null
	echo "guest_wall_s: $((t_exit - t_lock))"
	echo "run_wall_s: $(($(date +%s) - t_start))"
} >"$resdir/settings.txt"
cp "$work/out/log" "$resdir/guest.log" 2>/dev/null
cp "$work/out/dmesg" "$resdir/dmesg.txt" 2>/dev/null
if [ "$complete" != yes ]; then
	cp "$work/vng.log" "$resdir/console.log"
	cp "$work/out/dmesg-live" "$resdir/dmesg-live.txt" 2>/dev/null
fi
cp "$work/cpu.log" "$resdir/cpu.log"
cp "$work/out/jobs.tsv" "$resdir/jobs.tsv" 2>/dev/null
cp "$work/out/"qcow2ctl-* "$work/out/"qcow2blk-sysfs.txt "$resdir/" 2>/dev/null
cp "$work/out/"qemu-img-check-* "$resdir/" 2>/dev/null
# what the working tree differed by, when that was built
[ -s "$work/tree.diff" ] && cp "$work/tree.diff" "$resdir/tree.diff"
mkdir -p "$resdir/fio"
cp "$work/out/"*.json "$work/out/"*.fio "$resdir/fio/" 2>/dev/null
$py "$perf/report.py" "$resdir" || die "report failed; scratch in $work"
if [ "${QP_KEEP:-0}" != 1 ]; then
	rm -rf "$work"
else
	echo "run.sh: scratch kept in $work"
fi
echo "run.sh: results in $resdir ($(($(date +%s) - t_start)) s in all)"
[ "$complete" = yes ]
exit
}
