#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The write interop matrix: every case of tests/lib/images-write.sh
# (versions, cluster sizes, refcount widths, compressed, extended L2,
# backing files, snapshots, external data files) is attached read-write and
# gets the same qemu-io write script through /dev/qcowN (partial and whole
# cluster writes, overwrites, write-zeroes with and without unmap, aligned
# and unaligned discards, flushes) that QEMU applied to a twin image on the
# host. While attached the device must read as QEMU's result; after detach
# the image must equal it (qemu-img compare), pass qemu-img check with no
# errors and no leaks, carry neither the dirty nor the corrupt bit, and any
# internal snapshot must read as before.
. "$(dirname "$0")/common.sh"

d=$QB_DATA/write
[ -s "$d/MANIFEST-write" ] || t_skip "no write images in $d"
# qemu-io and qemu-img open external data files from the current directory.
cd "$d" || t_fail "cd $d"

probe=$QB_SCRATCH/write01-probe.qcow2
qemu-img create -q -f qcow2 "$probe" 1M
need_write "$probe"
rm -f "$probe"

# The cases run QB_WRITE_JOBS (default 2) at a time: each is a few
# processes that mostly wait on 9p, and a guest under TCG starts processes
# slowly. A case writes its findings to a file, one "ok|FAIL|log TEXT"
# line each; they are replayed in MANIFEST order at the end.
njobs=${QB_WRITE_JOBS:-2}
out_dir=$QB_SCRATCH/write01
rm -rf "$out_dir"
mkdir -p "$out_dir"

# run_case NAME IMAGE REFERENCE SCRIPT SNAPSHOT-CHECK
run_case() {
	local name=$1 img=$2 ref=$3 script=$4 snap=$5 dev out rc bits t0
	local sname sref raw

	ok() { echo "ok $name: $*"; }
	bad() { echo "FAIL $name: $*"; }
	# verdict DESCRIPTION CMD...: ok if CMD succeeds
	verdict() {
		local what=$1

		shift
		if "$@"; then ok "$what"; else bad "$what"; fi
	}
	t0=$(date +%s)
	kmsg "write01 $name"
	if ! dev=$(attach_rw "$img" 2>&1); then
		bad "attach read-write: $dev"
		return
	fi
	if out=$(qio_script "$dev" "$script"); then
		ok "write script on $dev"
	else
		bad "write script on $dev: $out"
		dmesg_since "write01 $name" | tail -5 | sed 's/^/log     kernel: /'
	fi
	out=$(qemu-img compare -f raw -F qcow2 "$dev" "$ref" 2>&1)
	verdict "device reads as QEMU's result ($out)" \
		test "$out" = "Images are identical."
	out=$(detach "$dev" 2>&1) || bad "detach $dev: $out"

	out=$(qemu-img compare -f qcow2 -F qcow2 "$img" "$ref" 2>&1)
	verdict "image equals QEMU's result ($out)" \
		test "$out" = "Images are identical."
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q leaked <<<"$out"; then
		ok "qemu-img check clean"
	else
		bad "qemu-img check exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
	fi
	# Version 3 only: a version 2 header ends at byte 72, and has no
	# feature bits.
	if [ "$(od -An -tu1 -j7 -N1 "$img" | tr -d ' ')" -ge 3 ]; then
		bits=$(od -An -tu1 -j79 -N1 "$img" | tr -d ' ')
		verdict "no dirty or corrupt bit (byte 79 = $bits)" \
			test $((bits & 3)) -eq 0
	fi
	if [ "$snap" != - ]; then
		sname=${snap%%=*}
		sref=${snap#*=}
		raw=$out_dir/$name.snap.raw
		qemu-img convert -f qcow2 -l "snapshot.name=$sname" -O raw \
			"$img" "$raw"
		verdict "snapshot '$sname' unchanged" cmp -s "$raw" "$sref"
		rm -f "$raw"
	fi
	echo "log $name: $(($(date +%s) - t0))s"
}

names=()
while IFS=$'\t' read -r -u 3 name img ref script snap; do
	[ -n "$name" ] || continue
	while [ "$(jobs -pr | wc -l)" -ge "$njobs" ]; do
		wait -n
	done
	run_case "$name" "$img" "$ref" "$script" "$snap" \
		>"$out_dir/$name.out" 2>&1 &
	names+=("$name")
done 3< <(if [ -n "${QB_WRITE_FILTER:-}" ]; then
	awk -F '\t' -v re="$QB_WRITE_FILTER" '$1 ~ re' "$d/MANIFEST-write"
else
	cat "$d/MANIFEST-write"
fi)
wait

for name in "${names[@]}"; do
	while read -r kind text; do
		case $kind in
		ok) t_pass "$text" ;;
		FAIL) t_fail "$text" ;;
		log) t_log "$text" ;;
		*) t_log "$name: $kind $text" ;;
		esac
	done <"$out_dir/$name.out"
	grep -q "^ok $name: qemu-img check clean" "$out_dir/$name.out" ||
		grep -q "^FAIL $name" "$out_dir/$name.out" ||
		t_fail "$name: did not finish"
done
rm -rf "$out_dir"

t_done
