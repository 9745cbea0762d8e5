#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest.sh WORK: the guest half of perf/run.sh, run as root in the
# virtme-ng guest. WORK is shared with the host (--rwdir) and holds:
#
#   stage/     qcow2blk.ko, qcow2ctl, mark.sh, config (sourced)
#   ev/        handshake with the host's CPU sampler (see mark.sh)
#   out/       what this script writes: one fio JSON per job, jobs.tsv
#              (job, device, workload, round, block device), guest.txt
#              (settings seen in the guest), log, dmesg, and done
#
# The images (a tar file on a virtio disk) are copied to a tmpfs, so
# every device reads from memory and the comparison is of the block-device
# stacks, not of the way the images reached the guest.
set -u

work=${1:?usage: guest.sh WORK}
stage=$work/stage
out=$work/out
ev=$work/ev
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
mkdir -p "$out" "$ev"
exec > >(tee -a "$out/log") 2>&1

# shellcheck source=/dev/null
. "$stage/config"	# QP_RUNTIME QP_ROUNDS QP_TMPFS_MIB

gs=$out/guest.txt
: >"$gs"
: >"$out/jobs.tsv"
setting() {
	echo "$1: $2" >>"$gs"
	echo "setting $1: $2"
}

# mark.sh sleeps by reading this FIFO with a timeout (no fork per sleep).
export QP_FIFO=/var/tmp/qcow2blk-perf.fifo
mkfifo "$QP_FIFO" || exit 1

mark() {
	bash "$stage/mark.sh" "$ev" "$@"
}

setting guest_kernel "$(uname -r)"
setting guest_cpus "$(nproc)"
setting guest_mem_mib "$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
setting fio_version "$(fio --version)"
setting qemu_nbd_version "$(qemu-nbd --version | head -1)"
mark boot guest

# ---- images on a tmpfs ---------------------------------------------------

img=/var/tmp/qcow2blk-perf
mkdir -p "$img"
mount -t tmpfs -o "size=${QP_TMPFS_MIB}m" qcow2blk-perf "$img" || exit 1
# The host attached the images as a tar file on a virtio disk (vng --disk
# makes it virtio-blk); it is the disk of that size.
bundle=
for _ in $(seq 30); do
	for b in /sys/block/vd* /sys/block/sd*; do
		[ -e "$b/size" ] || continue
		sz=$(($(cat "$b/size") * 512))
		[ "$sz" -ge "$QP_BUNDLE_BYTES" ] &&
			[ "$sz" -lt $((QP_BUNDLE_BYTES + 1048576)) ] &&
			bundle=/dev/${b##*/}
	done
	[ -n "$bundle" ] && break
	sleep 1
done
[ -n "$bundle" ] || { echo "no disk with the images"; exit 1; }
t0=$(date +%s)
tar -xf "$bundle" -C "$img" || exit 1
setting image_copy_s "$(($(date +%s) - t0))"
setting tmpfs_used "$(df -h --output=used "$img" | tail -1 | tr -d ' ')"
setting guest_mem_available_mib_after_copy \
	"$(awk '/MemAvailable/ {printf "%d", $2 / 1024}' /proc/meminfo)"

# ---- devices ---------------------------------------------------------------

declare -A dev	# "device|image kind" -> /dev/...

insmod "$stage/qcow2blk.ko" || exit 1
modprobe nbd nbds_max=4 || exit 1
modprobe loop || exit 1

# loop-raw: the raw twin, read-only, direct I/O asked for. On tmpfs before
# 6.6 (no O_DIRECT) losetup --direct-io=on fails with EINVAL on 6.1, so
# we then set the device up without it; both outcomes are recorded.
d=$(losetup -r --direct-io=on -f --show "$img/data.raw" 2>"$out/losetup.err") ||
	d=$(losetup -r -f --show "$img/data.raw" 2>>"$out/losetup.err") || exit 1
dev[loop-raw|data]=$d
setting loop_raw_dev "$d"
setting loop_raw_losetup_stderr "$(tr '\n' ' ' <"$out/losetup.err")"
setting loop_raw_direct_io "$(cat "/sys/block/${d#/dev/}/loop/dio")"

# qemu-nbd: the first flag set the image's file system accepts.
nbd_flags=
nbd_connect() {	# nbd_connect DEV IMAGE
	local f

	for f in "--cache=none --aio=native" "--cache=none --aio=threads" \
		"--cache=writeback --aio=threads"; do
		# shellcheck disable=SC2086
		if qemu-nbd -c "$1" -r -f qcow2 $f "$2" \
			2>>"$out/qemu-nbd.err"; then
			nbd_flags="-r -f qcow2 $f"
			for _ in $(seq 50); do
				[ "$(cat "/sys/block/${1#/dev/}/size")" != 0 ] && return 0
				sleep 0.1
			done
			echo "qemu-nbd: $1 has no size"
			return 1
		fi
		echo "qemu-nbd: '$f' refused, trying the next"
	done
	return 1
}
nbd_connect /dev/nbd0 "$img/data.qcow2" || exit 1
dev[qemu-nbd|data]=/dev/nbd0
setting qemu_nbd_flags_data "$nbd_flags"
nbd_connect /dev/nbd1 "$img/comp.qcow2" || exit 1
dev[qemu-nbd|comp]=/dev/nbd1
setting qemu_nbd_flags_comp "$nbd_flags"
setting qemu_nbd_refusals "$(tr '\n' ' ' <"$out/qemu-nbd.err")"

# Driver bug seen with the 300-layer chain: the kernel creates the device
# but its ATTACH reply (which lists every layer) does not fit the reply
# buffer, so qcow2ctl says "attached, but the kernel did not report the
# device". Find the device by its image path, record the bug, go on.
qcow_unreported() {	# qcow_unreported KIND IMAGE
	local f

	grep -q "did not report the device" "$out/qcow2ctl-$1.err" || return 1
	for f in /sys/block/qcow*/qcow2/image_path; do
		[ "$(cat "$f" 2>/dev/null)" = "$2" ] || continue
		f=${f#/sys/block/}
		setting "qcow2blk_attach_bug_$1" \
			"attach reported no device; found /dev/${f%%/*} by image_path: $(tr '\n' ' ' <"$out/qcow2ctl-$1.err")" >&2
		# does listing show it?
		"$stage/qcow2ctl" list >"$out/qcow2ctl-list-$1.txt" 2>&1
		echo "qcow2ctl list exit $?" >>"$out/qcow2ctl-list-$1.txt"
		echo "/dev/${f%%/*}"
		return 0
	done
	return 1
}

qcow_attach() {	# qcow_attach KIND IMAGE
	local d

	d=$("$stage/qcow2ctl" attach -r --show "$2" 2>"$out/qcow2ctl-$1.err") ||
		d=$(qcow_unreported "$1" "$2") || return 1
	dev[qcow2blk|$1]=$d
	setting "qcow2blk_dev_$1" "$d"
	setting "qcow2blk_direct_io_$1" \
		"$(cat "/sys/block/${d#/dev/}/qcow2/direct_io")"
	setting "qcow2blk_l2_cache_bytes_$1" \
		"$(cat "/sys/block/${d#/dev/}/qcow2/l2_cache_bytes")"
}
qcow_attach data "$img/data.qcow2" || { cat "$out/qcow2ctl-data.err"; exit 1; }
qcow_attach comp "$img/comp.qcow2" || { cat "$out/qcow2ctl-comp.err"; exit 1; }

chain_top=$img/chain/$(cat "$img/chain/TOP")
chain=skip
if qcow_attach chain "$chain_top"; then
	chain=run
	setting chain_workload "runs: qcow2ctl attached the chain"
	if nbd_connect /dev/nbd2 "$chain_top"; then
		dev[qemu-nbd|chain]=/dev/nbd2
		setting qemu_nbd_flags_chain "$nbd_flags"
	fi
elif grep -qi backing "$out/qcow2ctl-chain.err"; then
	echo "chain-randread-4k-qd1: skipped: backing chains not supported yet"
	setting chain_workload "skipped: backing chains not supported yet ($(cat "$out/qcow2ctl-chain.err"))"
else
	echo "chain-randread-4k-qd1: attach failed: $(cat "$out/qcow2ctl-chain.err")"
	setting chain_workload "failed: $(cat "$out/qcow2ctl-chain.err")"
	# what the kernel says, and whether a device was left behind
	dmesg | tail -20 | sed 's/^/  dmesg: /'
	"$stage/qcow2ctl" list 2>&1 | sed 's/^/  qcow2ctl list: /'
	ls /sys/block | tr '\n' ' ' | sed 's/^/  block devices: /'
	echo
fi

# The same I/O scheduler for all: nbd defaults to mq-deadline, loop and
# qcow2blk to none.
for k in "${!dev[@]}"; do
	echo none >"/sys/block/${dev[$k]#/dev/}/queue/scheduler"
done
for k in "${!dev[@]}"; do
	b=${dev[$k]#/dev/}
	setting "scheduler_${k%%|*}_${k##*|}" "$(cat "/sys/block/$b/queue/scheduler")"
	setting "max_sectors_kb_${k%%|*}_${k##*|}" "$(cat "/sys/block/$b/queue/max_sectors_kb")"
done

# A benchmark of wrong data is worthless: the start of each qcow2blk device
# must match loop on the raw twin (data) and qemu-nbd (comp, chain). Only
# 8 MiB of the chain: qemu-nbd reads it slowly through 300 layers.
sanity() {	# sanity KIND REFERENCE_DEVICE MIB
	local q=${dev[qcow2blk|$1]:-} r=${dev[$2|$1]:-}

	[ -n "$q" ] && [ -n "$r" ] || return 0
	if cmp -n $(($3 << 20)) "$q" "$r" >/dev/null; then
		setting "data_check_$1" "first $3 MiB of $q equal to $2 $r"
	else
		setting "data_check_$1" "MISMATCH: $q differs from $2 $r"
	fi
}
sanity data loop-raw 64
sanity comp qemu-nbd 64
sanity chain qemu-nbd 8

# ---- jobs --------------------------------------------------------------

# workload -> "image kind|fio job options"
declare -A wl=(
	[randread-4k-qd1]="data|rw=randread bs=4k iodepth=1"
	[randread-4k-qd16]="data|rw=randread bs=4k iodepth=16"
	[seqread-1m-qd4]="data|rw=read bs=1M iodepth=4"
	[comp-randread-4k-qd1]="comp|rw=randread bs=4k iodepth=1"
	[chain-randread-4k-qd1]="chain|rw=randread bs=4k iodepth=1"
)
wl_order="randread-4k-qd1 randread-4k-qd16 seqread-1m-qd4 comp-randread-4k-qd1"
[ "$chain" = run ] && wl_order+=" chain-randread-4k-qd1"

# Device orders, one per round, so no device always runs first or last
# (A B C, C B A, B C A, A C B, C A B, B A C; A B, B A for two devices).
orders3=("0 1 2" "2 1 0" "1 2 0" "0 2 1" "2 0 1" "1 0 2")
orders2=("0 1" "1 0")

# One fio run per round, one stonewalled job per device and workload:
# starting fio costs seconds under TCG. mark.sh runs right before and
# after each job's I/O; fio writes the output of those commands into its
# working directory.
mkdir -p /var/tmp/fio-cwd
cd /var/tmp/fio-cwd || exit 1

add_job() {	# add_job DEVICE WORKLOAD ROUND JOBFILE
	local kind=${wl[$2]%%|*} opts=${wl[$2]#*|} bdev job o

	bdev=${dev[$1|$kind]:-}
	[ -n "$bdev" ] || return 0
	job=$1__$2__r$3
	printf '%s\t%s\t%s\t%s\t%s\n' "$job" "$1" "$2" "$3" "$bdev" >>"$out/jobs.tsv"
	{
		echo "[$job]"
		echo "filename=$bdev"
		for o in $opts; do
			echo "$o"
		done
		echo "stonewall"
		echo "exec_prerun=bash $stage/mark.sh $ev begin $job"
		echo "exec_postrun=bash $stage/mark.sh $ev end $job"
	} >>"$4"
}

for r in $(seq 1 "$QP_ROUNDS"); do
	jf=$out/round$r.fio
	cat >"$jf" <<EOF
[global]
ioengine=libaio
direct=1
time_based
runtime=$QP_RUNTIME
EOF
	for w in $wl_order; do
		kind=${wl[$w]%%|*}
		devs=()
		for d in loop-raw qemu-nbd qcow2blk; do
			[ -n "${dev[$d|$kind]:-}" ] && devs+=("$d")
		done
		if [ "${#devs[@]}" -eq 3 ]; then
			order=${orders3[$(((r - 1) % 6))]}
		else
			order=${orders2[$(((r - 1) % 2))]}
		fi
		for i in $order; do
			[ "$i" -lt "${#devs[@]}" ] && add_job "${devs[$i]}" "$w" "$r" "$jf"
		done
	done
	echo "== $(date +%T) round $r: $(grep -c '^\[.*__' "$jf") jobs"
	fio --output-format=json --output="$out/round$r.json" "$jf" ||
		echo "fio failed in round $r"
done
echo "== $(date +%T) done"


# ---- teardown ----------------------------------------------------------

cd / || true
for k in "${!dev[@]}"; do
	case $k in
	qemu-nbd*) qemu-nbd -d "${dev[$k]}" >/dev/null ;;
	loop-raw*) losetup -d "${dev[$k]}" ;;
	esac
done
for k in "${!dev[@]}"; do
	case $k in
	qcow2blk*)
		b=${dev[$k]#/dev/}
		for f in /sys/block/"$b"/qcow2/*; do
			[ -f "$f" ] && echo "$b ${f##*/} $(cat "$f")"
		done >>"$out/qcow2blk-sysfs.txt"
		;;
	esac
done
"$stage/qcow2ctl" detach -a || echo "qcow2ctl detach -a failed"
rmmod qcow2blk || echo "rmmod qcow2blk failed"
dmesg >"$out/dmesg"
if grep -Eq 'BUG|Oops|WARNING|KASAN|UBSAN|Call Trace|hung task' "$out/dmesg"; then
	echo "kernel log has errors: see dmesg"
	setting kernel_log "has BUG/Oops/WARNING lines"
else
	setting kernel_log clean
fi
mark shutdown guest
echo ok >"$out/done"
