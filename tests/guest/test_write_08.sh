#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Concurrent writes: four fio jobs at queue depth 32, each verifying what it
# writes (verify_backlog), random sizes from 4 KiB to 256 KiB, on ranges
# that share a cluster at every boundary (each job's range is 8 MiB + 4 KiB
# long), so allocations, copy-on-write and in-place writes of one cluster
# race between jobs. Passes: a fresh image (allocation), the same image
# again (overwrites in place), 4 KiB clusters with the smallest L2 cache,
# a fresh image with subclusters, and an overlay over a base with random
# data (copy-on-write). After each detach qemu-img check must be clean, and
# the overlay's bytes past the jobs' ranges must still be the base's.
. "$(dirname "$0")/common.sh"

command -v fio >/dev/null || t_skip "fio not installed"

work=$QB_SCRATCH/write08
mkdir -p "$work"
span=$((8 * 1024 * 1024 + 4096))

jobs() {
	cat <<JOBS
[global]
filename=$1
direct=1
ioengine=libaio
iodepth=32
rw=randwrite
bsrange=4k-256k
blockalign=4k
verify=crc32c
verify_backlog=64
verify_fatal=1
randrepeat=0
numjobs=4
size=$span
offset_increment=$span
group_reporting=1

[overlapping-clusters]
JOBS
}

# run_pass IMAGE NAME [ATTACH-OPTION...]: attach, run the jobs, detach,
# qemu-img check
run_pass() {
	local img=$1 name=$2 dev out

	shift 2
	dev=$(attach_rw "$img" "$@") || { t_fail "$name: attach"; return 1; }
	jobs "$dev" >"$work/$name.fio"
	if out=$(fio --output-format=terse --terse-version=3 "$work/$name.fio" 2>&1); then
		t_pass "$name: 4 jobs, QD32, verified"
	else
		t_fail "$name: fio: $(tail -5 <<<"$out")"
	fi
	detach "$dev" || t_fail "$name: detach"
	out=$(qemu-img check "$img" 2>&1)
	t_check "$name: qemu-img check: $(tail -1 <<<"$out")" test $? = 0
}

fresh=$work/fresh.qcow2
qemu-img create -q -f qcow2 "$fresh" 64M
need_write "$fresh"
run_pass "$fresh" allocating
run_pass "$fresh" in-place
# The smallest L2 cache (two slices): readers racing with writers must
# always find a slice to read into.
mincache=$work/mincache.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k "$mincache" 64M
run_pass "$mincache" min-l2-cache-4k --l2-cache 0

# Subclusters: jobs' 4 KiB-aligned pieces allocate single subclusters.
extl2=$work/extl2.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k "$extl2" 64M
run_pass "$extl2" subclusters

base=$work/base.qcow2
head -c 48M /dev/urandom >"$work/base.raw"
qemu-img convert -q -f raw -O qcow2 "$work/base.raw" "$base"
overlay=$work/overlay.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$overlay"
run_pass "$overlay" copy-on-write
qemu-img convert -O raw "$overlay" "$work/out.raw"
t_check "copy-on-write: bytes past the jobs' ranges are the base's" \
	cmp -i $((4 * span)) "$work/out.raw" "$work/base.raw"
t_done
