#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# fio with verification through /dev/qcowN, on a fresh image (guest tmpfs)
# and on an overlay (on the shared 9p directory) over a base with random
# data: sequential writes, random writes of mixed sizes from 512 B to 1 MiB,
# verification while writing (verify_backlog), repeated overwrites (loops),
# and four parallel jobs on disjoint ranges. Every job verifies what it
# wrote; the overlay's last 8 MiB, which no job touches, must still read as
# the base. After detach qemu-img check must be clean. Sizes are small:
# TCG is slow.
. "$(dirname "$0")/common.sh"

command -v fio >/dev/null || t_skip "fio not installed"
d=$QB_DATA/write
[ -f "$d/fio-base.qcow2" ] || t_skip "no fio base image in $d"

MiB=$((1024 * 1024))
fresh=$QB_SCRATCH/write02-fresh.qcow2
overlay=$d/write02-overlay.qcow2
qemu-img create -q -f qcow2 -o compat=1.1 "$fresh" 64M
need_write "$fresh"
qemu-img create -q -f qcow2 -o compat=1.1 -b fio-base.qcow2 -F qcow2 \
	"$overlay"

# jobs DEV: the fio job file for DEV; all jobs stay below 56 MiB
jobs() {
	cat <<JOBS
[global]
filename=$1
direct=1
ioengine=libaio
iodepth=8
verify=crc32c
verify_fatal=1
randrepeat=1
group_reporting=0

[seq]
rw=write
bs=64k
offset=0
size=16M

[rand-mixed]
stonewall
rw=randwrite
bssplit=512/20:4k/30:16k/20:64k/20:1m/10
offset=16M
size=16M

[backlog]
stonewall
rw=randwrite
bs=4k
offset=32M
size=4M
verify=md5
verify_backlog=32

[loops]
stonewall
rw=write
bs=16k
offset=36M
size=4M
loops=4

[parallel]
stonewall
rw=randwrite
bs=8k
numjobs=4
offset=40M
size=4M
offset_increment=4M
JOBS
}

# run NAME IMAGE: the fio jobs on IMAGE attached read-write
run() {
	local name=$1 img=$2 dev out rc start

	kmsg "write02 $name"
	if ! dev=$(attach_rw "$img"); then
		t_fail "$name: attach $img"
		return 1
	fi
	jobs "$dev" >"$QB_SCRATCH/write02.fio"
	start=$(date +%s)
	out=$(fio --output-format=terse --terse-version=3 \
		"$QB_SCRATCH/write02.fio" 2>&1)
	rc=$?
	# terse v3: field 3 is the job name, field 5 its error code
	t_log "$name: fio took $(($(date +%s) - start))s"
	if [ "$rc" -eq 0 ] &&
	   awk -F';' 'NF > 5 && $5 != 0 { bad = 1 } END { exit bad }' <<<"$out"; then
		t_pass "$name: fio wrote and verified every job ($(grep -c ';' <<<"$out") job reports)"
	else
		t_fail "$name: fio exit $rc"
		grep -v '^3;' <<<"$out" | head -20 | sed 's/^/    /'
		dmesg_since "write02 $name" | tail -5 | sed 's/^/    kernel: /'
	fi
	if [ "$name" = overlay ]; then
		qemu-img convert -f qcow2 -O raw "$d/fio-base.qcow2" \
			"$QB_SCRATCH/write02-base.raw"
		t_check "$name: the untouched last 8 MiB read as the base" \
			cmp -n $((8 * MiB)) -i $((56 * MiB)):$((56 * MiB)) \
			"$dev" "$QB_SCRATCH/write02-base.raw"
		rm -f "$QB_SCRATCH/write02-base.raw"
	fi
	detach "$dev" || t_fail "$name: detach $dev"
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q leaked <<<"$out"; then
		t_pass "$name: qemu-img check clean"
	else
		t_fail "$name: qemu-img check exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
	fi
}

run fresh "$fresh"
cd "$d" && run overlay "$overlay"
rm -f "$fresh" "$overlay"

t_done
