#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh [KVER]: the side-by-side benchmark of qcow2blk, qemu-nbd and loop.
#
# Builds qcow2blk for KVER (default: the newest installed kernel) and
# qcow2ctl from the committed HEAD, makes the images on the host
# (perf/images.sh), boots one virtme-ng guest under TCG, runs
# perf/guest.sh there, samples the guest's
# QEMU CPU time around every fio job (perf/cpusample.py), and writes
# perf/results/<UTC date and time>-<KVER>/ with results.csv, summary.csv,
# relative.png and settings.txt (perf/report.py). See perf/README.md.
#
# Environment:
#   QP_ROUNDS=3        rounds per device and workload
#   QP_RUNTIME=10      seconds of I/O per fio job
#   QP_SIZE_MIB=512    virtual size of the data image (and the raw twin)
#   QP_COMP_MIB=256    virtual size of the compressed image
#   QP_CHAIN_DEPTH=300 layers of the backing chain
#   QP_CPUS=2 QP_MEM=3G   guest CPUs and memory
#   QP_IMAGES=DIR      image directory, reused across runs
#                      (default /var/tmp/qcow2blk-perf-images)
#   QP_TREE=1          build the working tree, not the committed HEAD
#   QP_NO_BUILD=1      use build/KVER/qcow2blk.ko and qcow2ctl as they are
#   QP_KEEP=1          keep the scratch directory
#   QP_OUT=DIR         where the results go (default perf/results/...)
set -u

# The whole script is one block, read before it runs, so editing this file
# during a run does not change the run.
{
top=$(cd "$(dirname "$0")/.." && pwd)
perf=$top/perf
kver=${1:-$(ls /lib/modules | sort -V | tail -1)}
kernel=/boot/vmlinuz-$kver
rounds=${QP_ROUNDS:-3}
runtime=${QP_RUNTIME:-10}
cpus=${QP_CPUS:-2}
mem=${QP_MEM:-3G}
images=${QP_IMAGES:-/var/tmp/qcow2blk-perf-images}
export QP_SIZE_MIB=${QP_SIZE_MIB:-512}
export QP_COMP_MIB=${QP_COMP_MIB:-256}
export QP_CHAIN_DEPTH=${QP_CHAIN_DEPTH:-300}
stamp=$(date -u +%Y%m%d-%H%M)
resdir=${QP_OUT:-$perf/results/$stamp-$kver}
py=/usr/bin/python3

die() {
	echo "run.sh: $*" >&2
	exit 1
}

[ -r "$kernel" ] || die "no kernel $kernel"
command -v vng >/dev/null || die "vng (virtme-ng) not installed"
for t in fio qemu-img qemu-nbd; do
	command -v $t >/dev/null || die "$t not installed"
done

t_start=$(date +%s)
work=$(mktemp -d /var/tmp/qcow2blk-perf.XXXXXX)
stage=$work/stage
mkdir -p "$stage" "$work/ev" "$work/out"
echo "run.sh: scratch $work"

# ---- build -------------------------------------------------------------

# By default the committed HEAD is built in the scratch directory, so
# work in progress in the tree (others edit it concurrently) is not what
# gets measured; QP_TREE=1 builds the working tree in place instead, and
# QP_NO_BUILD=1 takes build/KVER/qcow2blk.ko and qcow2ctl as they are.
src=$top
if [ "${QP_NO_BUILD:-0}" = 1 ]; then
	desc="$(git -C "$top" rev-parse --short HEAD 2>/dev/null) tree as built"
elif [ "${QP_TREE:-0}" = 1 ]; then
	desc="$(git -C "$top" rev-parse --short HEAD 2>/dev/null) working tree"
	git -C "$top" status --porcelain -- kernel lib uapi qcow2ctl |
		grep -q . && desc+=" (with uncommitted changes)"
else
	src=$work/src
	mkdir -p "$src"
	git -C "$top" archive HEAD | tar -x -C "$src" ||
		die "git archive HEAD failed"
	desc="$(git -C "$top" rev-parse --short HEAD) (committed HEAD)"
fi
if [ "${QP_NO_BUILD:-0}" != 1 ]; then
	echo "run.sh: building qcow2blk for $kver and qcow2ctl: $desc"
	make -C "$src" --no-print-directory module KVER="$kver" \
		>"$work/build.log" 2>&1 &&
		make -C "$src" --no-print-directory qcow2ctl-bin \
			>>"$work/build.log" 2>&1 ||
		{ tail -30 "$work/build.log"; die "build failed"; }
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

# The images reach the guest as one tar file on a virtio disk: copying a
# gigabyte from 9p under TCG took minutes.
bundle=$images/bundle.tar
if [ ! -f "$bundle" ] || [ "$images/STAMP" -nt "$bundle" ]; then
	tar -cf "$bundle.tmp" -C "$images" data.raw data.qcow2 comp.qcow2 \
		chain && mv "$bundle.tmp" "$bundle" || die "tar failed"
fi
# tmpfs for the copies: the images' sizes plus a margin
need=$(du -smL "$images/data.raw" "$images/data.qcow2" "$images/comp.qcow2" \
	"$images/chain" | awk '{ s += $1 } END { print s + 64 }')
cat >"$stage/config" <<EOF
QP_RUNTIME=$runtime
QP_ROUNDS=$rounds
QP_TMPFS_MIB=$need
QP_BUNDLE_BYTES=$(stat -c %s "$bundle")
EOF

# ---- guest -------------------------------------------------------------

# q35 devices the benchmark never uses; their drivers only slow the boot.
blacklist=ahci,libahci,sr_mod,cdrom,sg,iTCO_wdt,iTCO_vendor_support,i6300esb
blacklist+=,kvm,kvm_amd,kvm_intel,ccp,intel_pmc_bxt,powernow_k8,lpc_ich
blacklist+=,i2c_i801,pcspkr,joydev,serio_raw

# Guest time: boot (up to 4 min under load), copy, checks, and per job the
# runtime plus fio's start-up and the handshakes, which are slow under TCG;
# generous, since the host is shared.
njobs=$((rounds * 13))
guest_timeout=$((480 + njobs * (runtime + 15)))
echo "run.sh: booting $kver under TCG ($cpus CPUs, $mem), $rounds rounds of" \
	"${runtime}s jobs, timeout ${guest_timeout}s"
uptime >"$work/load-before"
: >"$work/vng.log"	# before tail -f below looks for it
(cd / && exec timeout -k 30 "$guest_timeout" vng --run "$kernel" \
	--disable-kvm --cpus "$cpus" --memory "$mem" \
	--rwdir="$work=$work" --disk "$bundle" \
	--append "modprobe.blacklist=$blacklist" \
	--exec "bash $stage/guest.sh $work") >"$work/vng.log" 2>&1 &
vng_pid=$!
$py "$perf/cpusample.py" "$vng_pid" "$work/ev" "$work/cpu.log" &
sampler_pid=$!
tail -n +1 -f "$work/vng.log" --pid="$vng_pid" | grep --line-buffered -E \
	'^(== |setting |qemu-nbd|chain-|fio failed|kernel log|run.sh)' &
wait "$vng_pid"
vng_rc=$?
wait "$sampler_pid"
uptime >"$work/load-after"
echo "run.sh: guest exited ($vng_rc) after $(($(date +%s) - t_start)) s"

if [ ! -f "$work/out/done" ]; then
	tail -40 "$work/vng.log"
	echo "run.sh: the guest did not finish; scratch kept in $work"
	exit 1
fi

# ---- report ------------------------------------------------------------

mkdir -p "$resdir"
{
	echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "qcow2blk_commit: $(cat "$stage/commit" 2>/dev/null)"
	echo "host_kernel: $(uname -r)"
	echo "host_cpus: $(nproc)"
	echo "host_load_before: $(cat "$work/load-before")"
	echo "host_load_after: $(cat "$work/load-after")"
	echo "vng: $(vng --version 2>&1 | head -1) --disable-kvm (TCG)" \
		"--cpus $cpus --memory $mem"
	echo "qemu_system: $(qemu-system-x86_64 --version | head -1)"
	echo "fio_runtime_s: $runtime"
	echo "rounds: $rounds"
	echo "fio_common: --ioengine=libaio --direct=1 --time_based" \
		"--runtime=$runtime (no ramp; randrepeat default)"
	for f in data.qcow2 data.raw comp.qcow2; do
		echo "image_$f: $(qemu-img info --output=json "$images/$f" |
			$py -c 'import json,sys; i=json.load(sys.stdin); print("virtual %d MiB, file %.1f MiB, cluster %s, %s" % (i["virtual-size"] >> 20, i["actual-size"] / 1048576, i.get("cluster-size", "-"), i["format"]))')"
	done
	echo "image_comp.qcow2_data: hex text of random bytes, deflate"
	echo "image_chain: $QP_CHAIN_DEPTH layers over a base, 64 KiB" \
		"clusters, $(du -smL "$images/chain" | cut -f1) MiB in all"
	cat "$work/out/guest.txt"
	echo "run_wall_s: $(($(date +%s) - t_start))"
} >"$resdir/settings.txt"
cp "$work/out/log" "$resdir/guest.log"
cp "$work/out/dmesg" "$resdir/dmesg.txt" 2>/dev/null
cp "$work/cpu.log" "$resdir/cpu.log"
cp "$work/out/jobs.tsv" "$resdir/jobs.tsv"
cp "$work/out/"qcow2ctl-* "$work/out/"qcow2blk-sysfs.txt "$resdir/" 2>/dev/null
mkdir -p "$resdir/fio"
cp "$work/out/"*.json "$work/out/"*.fio "$resdir/fio/" 2>/dev/null
$py "$perf/report.py" "$resdir" || die "report failed; scratch in $work"
if [ "${QP_KEEP:-0}" != 1 ]; then
	rm -rf "$work"
else
	echo "run.sh: scratch kept in $work"
fi
echo "run.sh: results in $resdir ($(($(date +%s) - t_start)) s in all)"
exit 0
}
