#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest.sh WORK: the guest half of perf/run.sh, run as root in the
# virtme-ng guest. WORK is shared with the host (--rwdir) and holds:
#
#   stage/     qcow2blk.ko, qcow2ctl, mark.sh, config (sourced)
#   ev/        handshake with the host's CPU sampler (see mark.sh)
#   out/       what this script writes: a fio job file and its JSON per
#              fio run, jobs.tsv (job, device, workload, round, block
#              device, store, reported side), guest.txt (settings seen in
#              the guest), log, dmesg, dmesg-live, and done
#
# The images (tar files on virtio disks) are copied to a tmpfs, so every
# device reads from memory and the comparison is of the block-device
# stacks, not of the way the images reached the guest.
#
# Two phases, each optional (QP_PHASES):
#   read    read-only devices on the read images in the tmpfs
#   write   read-write devices on copies of the write master, on each
#           store of QP_STORES in turn: "tmpfs" (the same tmpfs), and
#           "nullb512", "nullb4k": xfs on a memory-backed null_blk that
#           completes every request after QP_NULLB_NSEC (50 us), with
#           512-byte or 4 KiB logical sectors
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
. "$stage/config"	# QP_* from run.sh

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

has_phase() {
	case " $QP_PHASES " in *" $1 "*) return 0 ;; esac
	return 1
}

setting guest_kernel "$(uname -r)"
setting guest_cpus "$(nproc)"
setting guest_mem_mib "$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
setting fio_version "$(fio --version)"
setting qemu_nbd_version "$(qemu-nbd --version | head -1)"
setting phases "$QP_PHASES"
mark boot guest

# The kernel log as it happens, on the shared directory: if a driver bug
# hangs the guest, the host still has it.
dmesg -w >"$out/dmesg-live" 2>&1 </dev/null &
dmesg_pid=$!
wd_pid=
# Nothing started here may outlive the script: vng waits for its output.
trap 'kill $dmesg_pid $wd_pid 2>/dev/null' EXIT

mem_available() {
	awk '/MemAvailable/ {printf "%d", $2 / 1024}' /proc/meminfo
}

# fio_run NAME NJOBS SECONDS: run $out/NAME.fio, JSON to $out/NAME.json.
# A watchdog has the kernel list its blocked tasks (into dmesg-live) when
# the run takes far longer than NJOBS jobs of SECONDS should, and then
# powers the guest off: a hung device never lets fio return, and the
# lock would be held until the host's timeout.
fio_run() {
	(
		# not holding the log's pipe once its shell is gone
		sleep $(($2 * ($3 + 20) + 180)) >/dev/null 2>&1
		echo "== $(date +%T) watchdog: $1 overdue, blocked tasks in dmesg-live"
		echo w >/proc/sysrq-trigger
		sleep 15 >/dev/null 2>&1
		echo "== $(date +%T) watchdog: powering off"
		echo o >/proc/sysrq-trigger
	) &
	wd_pid=$!
	fio --output-format=json --output="$out/$1.json" "$out/$1.fio" ||
		echo "fio failed in $1"
	kill "$wd_pid" 2>/dev/null
	wait "$wd_pid" 2>/dev/null
	wd_pid=
}

# Device orders, one per round, so no device always runs first or last
# (A B C, C B A, B C A, A C B, C A B, B A C; A B, B A for two devices).
orders3=("0 1 2" "2 1 0" "1 2 0" "0 2 1" "2 0 1" "1 0 2")
orders2=("0 1" "1 0")

# order N ROUND: the device order of ROUND for N devices; round 0 (the
# write phase's warm-up) takes the last of the orders.
order() {
	local i=$(($2 - 1))

	[ "$2" -eq 0 ] && i=5
	case $1 in
	3) echo "${orders3[$((i % 6))]}" ;;
	2) echo "${orders2[$((i % 2))]}" ;;
	1) echo 0 ;;
	esac
}

# ---- images on a tmpfs ---------------------------------------------------

img=/var/tmp/qcow2blk-perf
mkdir -p "$img"
mount -t tmpfs -o "size=${QP_TMPFS_MIB}m" qcow2blk-perf "$img" || exit 1

# The host attached the images as tar files on disks (vng --disk makes
# them virtio-scsi); each is the disk of its tar file's size.
find_disk() {	# find_disk BYTES
	local b sz

	for _ in $(seq 30); do
		for b in /sys/block/vd* /sys/block/sd*; do
			[ -e "$b/size" ] || continue
			sz=$(($(cat "$b/size") * 512))
			if [ "$sz" -ge "$1" ] && [ "$sz" -lt $(($1 + 1048576)) ]; then
				echo "/dev/${b##*/}"
				return 0
			fi
		done
		sleep 1
	done
	return 1
}
t0=$(date +%s)
for b in ${QP_BUNDLE_READ_BYTES:-} ${QP_BUNDLE_WRITE_BYTES:-}; do
	bundle=$(find_disk "$b") ||
		{ echo "no disk with the images ($b bytes)"; exit 1; }
	tar -xf "$bundle" -C "$img" || exit 1
done
setting image_copy_s "$(($(date +%s) - t0))"
setting tmpfs_used "$(df -h --output=used "$img" | tail -1 | tr -d ' ')"
setting guest_mem_available_mib_after_copy "$(mem_available)"

# ---- modules and helpers -------------------------------------------------

insmod "$stage/qcow2blk.ko" || exit 1
# A fresh nbd device per connection (one that a server just left may still
# be busy): 3 for the read phase; per store 3 plus 2 per write round.
nstores=$(echo "$QP_STORES" | wc -w)
modprobe nbd nbds_max=$((4 + nstores * (3 + 2 * (QP_WROUNDS + 1)))) || exit 1
modprobe loop || exit 1
nbd_next=0
nbd_d=

# qemu-nbd: the first flag set the image's file system accepts.
nbd_flags=
nbd_connect() {	# nbd_connect DEV IMAGE [-r]
	local f

	for f in "--cache=none --aio=native" "--cache=none --aio=threads" \
		"--cache=writeback --aio=threads"; do
		# shellcheck disable=SC2086
		if qemu-nbd -c "$1" ${3:-} -f qcow2 $f "$2" \
			2>>"$out/qemu-nbd.err"; then
			nbd_flags="${3:+$3 }-f qcow2 $f"
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

nbd_take() {	# nbd_take: the next unused /dev/nbdN, in nbd_d
	nbd_d=/dev/nbd$nbd_next
	nbd_next=$((nbd_next + 1))
}

# devinfo DEV: what a block device does, for settings.txt. direct_io is
# loop's dio or qcow2blk's direct_io; nbd has none (qemu-nbd's flags say).
devinfo() {
	local q=/sys/block/${1#/dev/} dio=-

	if [ -e "$q/loop/dio" ]; then
		dio=$(cat "$q/loop/dio")
	elif [ -e "$q/qcow2/direct_io" ]; then
		dio=$(cat "$q/qcow2/direct_io")
	fi
	echo "direct_io=$dio" \
		"logical_block_size=$(cat "$q/queue/logical_block_size")" \
		"write_cache=$(tr ' ' _ <"$q/queue/write_cache")" \
		"scheduler=$(sed 's/.*\[\(.*\)\].*/\1/' "$q/queue/scheduler")"
}

# qcow2blk_sysfs TAG DEV: its qcow2/ attributes into qcow2blk-sysfs.txt
qcow2blk_sysfs() {
	local b=${2#/dev/} f

	for f in /sys/block/"$b"/qcow2/*; do
		[ -f "$f" ] && echo "$1 $b ${f##*/} $(cat "$f")"
	done >>"$out/qcow2blk-sysfs.txt"
}

# fio writes the output of exec_prerun/exec_postrun into its working
# directory.
mkdir -p /var/tmp/fio-cwd
cd /var/tmp/fio-cwd || exit 1

# ---- read phase ------------------------------------------------------------

declare -A dev	# "device|image kind" -> /dev/...

# workload -> "image kind|fio job options"
declare -A wl=(
	[randread-4k-qd1]="data|rw=randread bs=4k iodepth=1"
	[randread-4k-qd16]="data|rw=randread bs=4k iodepth=16"
	[seqread-1m-qd4]="data|rw=read bs=1M iodepth=4"
	[comp-randread-4k-qd1]="comp|rw=randread bs=4k iodepth=1"
	[chain-randread-4k-qd1]="chain|rw=randread bs=4k iodepth=1"
)

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

add_job() {	# add_job DEVICE WORKLOAD ROUND JOBFILE
	local kind=${wl[$2]%%|*} opts=${wl[$2]#*|} bdev job o

	bdev=${dev[$1|$kind]:-}
	[ -n "$bdev" ] || return 0
	job=$1__$2__r$3
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$1" "$2" "$3" "$bdev" \
		tmpfs read >>"$out/jobs.tsv"
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

read_phase() {
	local d k b r w kind devs i jf chain_top chain=skip wl_order

	# loop-raw: the raw twin, read-only, direct I/O asked for. On tmpfs
	# before 6.6 (no O_DIRECT) losetup --direct-io=on fails with EINVAL
	# on 6.1, so we then set the device up without it; both outcomes are
	# recorded.
	d=$(losetup -r --direct-io=on -f --show "$img/data.raw" 2>"$out/losetup.err") ||
		d=$(losetup -r -f --show "$img/data.raw" 2>>"$out/losetup.err") || exit 1
	dev[loop-raw|data]=$d
	setting loop_raw_dev "$d"
	setting loop_raw_losetup_stderr "$(tr '\n' ' ' <"$out/losetup.err")"
	setting loop_raw_direct_io "$(cat "/sys/block/${d#/dev/}/loop/dio")"

	nbd_take
	nbd_connect "$nbd_d" "$img/data.qcow2" -r || exit 1
	dev[qemu-nbd|data]=$nbd_d
	setting qemu_nbd_flags_data "$nbd_flags"
	nbd_take
	nbd_connect "$nbd_d" "$img/comp.qcow2" -r || exit 1
	dev[qemu-nbd|comp]=$nbd_d
	setting qemu_nbd_flags_comp "$nbd_flags"
	setting qemu_nbd_refusals "$(tr '\n' ' ' <"$out/qemu-nbd.err")"

	qcow_attach data "$img/data.qcow2" ||
		{ cat "$out/qcow2ctl-data.err"; exit 1; }
	qcow_attach comp "$img/comp.qcow2" ||
		{ cat "$out/qcow2ctl-comp.err"; exit 1; }

	chain_top=$img/chain/$(cat "$img/chain/TOP")
	if qcow_attach chain "$chain_top"; then
		chain=run
		setting chain_workload "runs: qcow2ctl attached the chain"
		nbd_take
		if nbd_connect "$nbd_d" "$chain_top" -r; then
			dev[qemu-nbd|chain]=$nbd_d
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
		(cd /sys/block && echo "  block devices:" *)
		echo
	fi

	# The same I/O scheduler for all: nbd defaults to mq-deadline, loop
	# and qcow2blk to none.
	for k in "${!dev[@]}"; do
		echo none >"/sys/block/${dev[$k]#/dev/}/queue/scheduler"
	done
	for k in "${!dev[@]}"; do
		b=${dev[$k]#/dev/}
		setting "scheduler_${k%%|*}_${k##*|}" "$(cat "/sys/block/$b/queue/scheduler")"
		setting "max_sectors_kb_${k%%|*}_${k##*|}" "$(cat "/sys/block/$b/queue/max_sectors_kb")"
		setting "dev_read_${k%%|*}_${k##*|}" "${dev[$k]} $(devinfo "${dev[$k]}")"
	done

	sanity data loop-raw 64
	sanity comp qemu-nbd 64
	sanity chain qemu-nbd 8

	wl_order="randread-4k-qd1 randread-4k-qd16 seqread-1m-qd4 comp-randread-4k-qd1"
	[ "$chain" = run ] && wl_order+=" chain-randread-4k-qd1"

	# One fio run per round, one stonewalled job per device and
	# workload: starting fio costs seconds under TCG. mark.sh runs right
	# before and after each job's I/O.
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
			for i in $(order "${#devs[@]}" "$r"); do
				add_job "${devs[$i]}" "$w" "$r" "$jf"
			done
		done
		echo "== $(date +%T) round $r: $(grep -c '^\[.*__' "$jf") jobs"
		fio_run "round$r" "$(grep -c '^\[.*__' "$jf")" "$QP_RUNTIME"
	done
	echo "== $(date +%T) read phase done"

	# Free the devices and the memory of the read images for the writes.
	for k in "${!dev[@]}"; do
		case $k in
		qemu-nbd*) qemu-nbd -d "${dev[$k]}" >/dev/null ;;
		loop-raw*) losetup -d "${dev[$k]}" ;;
		qcow2blk*) qcow2blk_sysfs "read-${k##*|}" "${dev[$k]}" ;;
		esac
	done
	"$stage/qcow2ctl" detach -a || echo "qcow2ctl detach -a failed"
	rm -rf "$img/data.raw" "$img/data.qcow2" "$img/comp.qcow2" "$img/chain"
}

# ---- write phase -----------------------------------------------------------

# Every store holds the write master (wdata.qcow2 and its raw twin
# wdata.raw), never attached: the source of the copies and the backing
# file of the copy-on-write overlays. Image kinds:
#   alloc   a copy of the master, every cluster allocated: the overwrite
#           workloads, one copy per device for the whole store
#   empty   made fresh before each round: qemu-img create, or for loop a
#           sparse raw file
#   cow     made fresh before each round: an overlay on the master, or
#           for loop a raw copy of the master
declare -A wdev		# "device|kind" -> /dev/...
declare -A wnoted	# "store|device|kind" whose settings are recorded
store=
sdir=
slbs=512

# write workload -> "image kind|reported side|fio job options"
declare -A wwl=(
	[randwrite-4k-qd16]="alloc|write|rw=randwrite bs=4k iodepth=16"
	[randwrite-4k-qd16-nj2]="alloc|write|rw=randwrite bs=4k iodepth=16 numjobs=2"
	[randread-4k-qd16-alone]="alloc|read|rw=randread bs=4k iodepth=16"
	[randread-4k-qd16-fsyncw]="alloc|read|rw=randread bs=4k iodepth=16"
	[randrw-4k-qd16]="alloc|rw|rw=randrw rwmixread=50 bs=4k iodepth=16"
	[seqwrite-1m-qd4]="alloc|write|rw=write bs=1M iodepth=4"
	[randwrite-4k-qd1-fsync]="alloc|write|rw=randwrite bs=4k iodepth=1 fsync=1"
	[alloc-seqwrite-4k-qd16]="empty|write|rw=write bs=4k iodepth=16"
	[cow-randwrite-64k-qd16]="cow|write|rw=randwrite bs=64k iodepth=16"
)
wwl_order="randwrite-4k-qd16 randwrite-4k-qd16-nj2 randread-4k-qd16-alone"
wwl_order+=" randread-4k-qd16-fsyncw randrw-4k-qd16 seqwrite-1m-qd4"
wwl_order+=" randwrite-4k-qd1-fsync alloc-seqwrite-4k-qd16 cow-randwrite-64k-qd16"
if [ -n "${QP_WORKLOADS:-}" ]; then
	for w in $QP_WORKLOADS; do
		[ -n "${wwl[$w]:-}" ] || {
			echo "QP_WORKLOADS: unknown workload '$w'"
			exit 1
		}
	done
	wwl_order=$QP_WORKLOADS
fi
# The second job of randread-4k-qd16-fsyncw, in the same fio group (no
# stonewall), so it runs beside the reader: a writer that fsyncs every
# write. The reader's numbers are the ones reported.
fsync_writer="rw=randwrite bs=4k iodepth=1 fsync=1"

# wattach DEVICE KIND FILE: FILE read-write as DEVICE, in wdev[DEVICE|KIND]
wattach() {
	local d

	case $1 in
	loop-raw)
		# The store's sector size, so that loop can go direct on a
		# 4 KiB-sector disk; without direct I/O where it is refused.
		d=$(losetup --direct-io=on -b "$slbs" -f --show "$3" \
			2>>"$out/losetup-w.err") ||
			d=$(losetup -b "$slbs" -f --show "$3" \
				2>>"$out/losetup-w.err") || return 1
		;;
	qemu-nbd)
		nbd_take
		d=$nbd_d
		nbd_connect "$d" "$3" || return 1
		;;
	qcow2blk)
		d=$("$stage/qcow2ctl" attach --show "$3" \
			2>>"$out/qcow2ctl-w.err") || return 1
		;;
	esac
	echo none >"/sys/block/${d#/dev/}/queue/scheduler"
	wdev[$1|$2]=$d
	[ -n "${wnoted[$store|$1|$2]:-}" ] && return 0
	wnoted[$store|$1|$2]=1
	if [ "$1" = qemu-nbd ]; then
		setting "wdev_${store}_$1_$2" "$d $(devinfo "$d") qemu-nbd $nbd_flags"
	else
		setting "wdev_${store}_$1_$2" "$d $(devinfo "$d")"
	fi
}

wattach_or_note() {	# wattach_or_note DEVICE KIND FILE
	wattach "$@" && return 0
	echo "store $store: attaching $3 as $1 failed"
	setting "wdev_${store}_$1_$2" "attach failed: $(tail -2 \
		"$out/qcow2ctl-w.err" "$out/losetup-w.err" "$out/qemu-nbd.err" \
		2>/dev/null | tr '\n' ' ')"
	return 1
}

wdetach() {	# wdetach DEVICE KIND
	local d=${wdev[$1|$2]:-}

	[ -n "$d" ] || return 0
	case $1 in
	loop-raw) losetup -d "$d" ;;
	qemu-nbd) qemu-nbd -d "$d" >/dev/null ;;
	qcow2blk) "$stage/qcow2ctl" detach "$d" || echo "detach $d failed" ;;
	esac
	unset "wdev[$1|$2]"
}

# qcow2blk's images must stay images QEMU accepts: recorded, not judged.
wcheck() {	# wcheck NAME IMAGE
	local f=$out/qemu-img-check-$store-$1.txt rc

	qemu-img check "$2" >"$f" 2>&1
	rc=$?
	setting "qcow2blk_image_check_${store}_$1" \
		"exit $rc: $(tail -4 "$f" | tr '\n' ' ')"
}

# The page cache of files just copied would make each device's first
# direct write to a range invalidate it; start every round without.
settle() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

cpi() {	# cpi SRC DST: a real copy, never a reflink
	cp --reflink=never "$1" "$2"
}

store_up() {	# store_up STORE
	local bs=512 args t0=$SECONDS

	store=$1
	case $1 in
	tmpfs)
		sdir=$img/w-tmpfs
		mkdir -p "$sdir"
		ln -f "$img/wdata.qcow2" "$img/wdata.raw" "$sdir/" || return 1
		slbs=512
		;;
	nullb512 | nullb4k)
		[ "$1" = nullb4k ] && bs=4096
		args="nr_devices=1 memory_backed=1 discard=1 gb=$QP_NULLB_GB"
		args+=" bs=$bs irqmode=2 completion_nsec=$QP_NULLB_NSEC queue_mode=2"
		# shellcheck disable=SC2086
		modprobe null_blk $args || return 1
		setting "store_${1}_null_blk" "$args"
		for _ in $(seq 50); do
			[ -b /dev/nullb0 ] && break
			sleep 0.1
		done
		echo none >/sys/block/nullb0/queue/scheduler
		slbs=$(cat /sys/block/nullb0/queue/logical_block_size)
		setting "store_${1}_nullb0" "$(devinfo /dev/nullb0)"
		mkfs.xfs -f -q -m reflink=0 /dev/nullb0 || return 1
		sdir=/var/tmp/qcow2blk-perf-$1
		mkdir -p "$sdir"
		mount -t xfs /dev/nullb0 "$sdir" || return 1
		setting "store_${1}_xfs" "$(xfs_info "$sdir" | tr -s ' \n' ' ')"
		cpi "$img/wdata.qcow2" "$sdir/wdata.qcow2" || return 1
		cpi "$img/wdata.raw" "$sdir/wdata.raw" || return 1
		;;
	*)
		echo "unknown store $1"
		return 1
		;;
	esac
	cpi "$sdir/wdata.raw" "$sdir/loop-alloc.raw" || return 1
	cpi "$sdir/wdata.qcow2" "$sdir/nbd-alloc.qcow2" || return 1
	cpi "$sdir/wdata.qcow2" "$sdir/qcow-alloc.qcow2" || return 1
	wattach_or_note loop-raw alloc "$sdir/loop-alloc.raw"
	wattach_or_note qemu-nbd alloc "$sdir/nbd-alloc.qcow2"
	wattach_or_note qcow2blk alloc "$sdir/qcow-alloc.qcow2"
	setting "store_${1}_setup_s" "$((SECONDS - t0))"
	return 0
}

store_down() {
	local d

	[ -n "${wdev[qcow2blk|alloc]:-}" ] &&
		qcow2blk_sysfs "$store-alloc" "${wdev[qcow2blk|alloc]}"
	for d in loop-raw qemu-nbd qcow2blk; do
		wdetach "$d" alloc
	done
	wcheck alloc "$sdir/qcow-alloc.qcow2"
	setting "store_${store}_mem_available_mib_at_end" "$(mem_available)"
	rm -f "$sdir"/*
	if [ "$store" != tmpfs ]; then
		# qemu-nbd servers exit a moment after their disconnect
		for _ in $(seq 40); do
			umount "$sdir" 2>/dev/null && break
			sleep 0.5
		done
		modprobe -r null_blk || echo "store $store: rmmod null_blk failed"
	fi
}

fresh_up() {	# fresh_up ROUND
	local p=$sdir/r$1 d o="compat=1.1,cluster_size=65536"

	truncate -s "${QP_WSIZE_MIB}M" "$p-loop-empty.raw"
	cpi "$sdir/wdata.raw" "$p-loop-cow.raw"
	for d in nbd qcow; do
		qemu-img create -q -f qcow2 -o "$o" "$p-$d-empty.qcow2" \
			"${QP_WSIZE_MIB}M"
		qemu-img create -q -f qcow2 -o "$o" -b "$sdir/wdata.qcow2" \
			-F qcow2 "$p-$d-cow.qcow2"
	done
	settle
	wattach_or_note loop-raw empty "$p-loop-empty.raw"
	wattach_or_note loop-raw cow "$p-loop-cow.raw"
	wattach_or_note qemu-nbd empty "$p-nbd-empty.qcow2"
	wattach_or_note qemu-nbd cow "$p-nbd-cow.qcow2"
	wattach_or_note qcow2blk empty "$p-qcow-empty.qcow2"
	wattach_or_note qcow2blk cow "$p-qcow-cow.qcow2"
}

fresh_down() {	# fresh_down ROUND
	local d k

	for d in loop-raw qemu-nbd qcow2blk; do
		for k in empty cow; do
			wdetach "$d" "$k"
		done
	done
	if [ "$1" -eq "$QP_WROUNDS" ]; then
		wcheck empty "$sdir/r$1-qcow-empty.qcow2"
		wcheck cow "$sdir/r$1-qcow-cow.qcow2"
	fi
	rm -f "$sdir/r$1-"*
	[ "$store" = tmpfs ] || fstrim "$sdir" || echo "store $store: fstrim failed"
}

wadd_job() {	# wadd_job DEVICE WORKLOAD ROUND JOBFILE
	local kind=${wwl[$2]%%|*} rest=${wwl[$2]#*|} side opts bdev job o

	side=${rest%%|*}
	opts=${rest#*|}
	bdev=${wdev[$1|$kind]:-}
	[ -n "$bdev" ] || return 0
	job=$1__$2__${store}__r$3
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$1" "$2" "$3" "$bdev" \
		"$store" "$side" >>"$out/jobs.tsv"
	{
		echo "[$job]"
		echo "filename=$bdev"
		for o in $opts; do
			echo "$o"
		done
		echo "stonewall"
		echo "exec_prerun=bash $stage/mark.sh $ev begin $job"
		echo "exec_postrun=bash $stage/mark.sh $ev end $job"
		if [ "$2" = randread-4k-qd16-fsyncw ]; then
			echo
			echo "[${job}__writer]"
			echo "filename=$bdev"
			for o in $fsync_writer; do
				echo "$o"
			done
		fi
	} >>"$4"
}

wround() {	# wround ROUND (0: the warm-up, reported apart)
	local r=$1 name=w-$store-r$1 jf rt=$QP_WRUNTIME ramp=$QP_WRAMP
	local w kind devs d i n

	jf=$out/$name.fio
	[ "$r" -eq 0 ] && rt=$QP_WWARMUP ramp=0
	fresh_up "$r"
	{
		echo "[global]"
		echo "ioengine=libaio"
		echo "direct=1"
		echo "time_based"
		echo "runtime=$rt"
		[ "$ramp" -gt 0 ] && echo "ramp_time=$ramp"
	} >"$jf"
	for w in $wwl_order; do
		kind=${wwl[$w]%%|*}
		devs=()
		for d in loop-raw qemu-nbd qcow2blk; do
			[ -n "${wdev[$d|$kind]:-}" ] && devs+=("$d")
		done
		for i in $(order "${#devs[@]}" "$r"); do
			echo >>"$jf"
			wadd_job "${devs[$i]}" "$w" "$r" "$jf"
		done
	done
	n=$(grep -c '^\[.*__r[0-9]*\]$' "$jf")
	echo "== $(date +%T) store $store round $r$([ "$r" -eq 0 ] && echo " (warm-up)"): $n jobs"
	fio_run "$name" "$n" $((rt + ramp))
	fresh_down "$r"
}

write_phase() {
	local s r

	setting write_stores "$QP_STORES"
	setting write_workloads "${QP_WORKLOADS:-all}"
	for s in $QP_STORES; do
		echo "== $(date +%T) store $s: setting up"
		if ! store_up "$s"; then
			echo "store $s: set-up failed, skipped"
			setting "store_${s}" "set-up failed, skipped"
			if [ "$s" != tmpfs ]; then
				umount "/var/tmp/qcow2blk-perf-$s" 2>/dev/null
				modprobe -r null_blk 2>/dev/null
			fi
			continue
		fi
		setting "store_${s}_mem_available_mib" "$(mem_available)"
		settle
		for r in $(seq 0 "$QP_WROUNDS"); do
			wround "$r"
		done
		store_down
		echo "== $(date +%T) store $s done"
	done
}

has_phase read && read_phase
has_phase write && write_phase
echo "== $(date +%T) done"

# ---- teardown ----------------------------------------------------------

cd / || true
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
