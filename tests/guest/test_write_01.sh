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

# header_bits IMAGE: incompatible feature bits 0-7 (byte 79), decimal
header_bits() {
	od -An -tu1 -j79 -N1 "$1" | tr -d ' '
}

while IFS=$'\t' read -r -u 3 name img ref script snap; do
	[ -n "$name" ] || continue
	kmsg "write01 $name"
	if ! dev=$(attach_rw "$img"); then
		t_fail "$name: attach read-write"
		continue
	fi
	if out=$(qio_script "$dev" "$script"); then
		t_pass "$name: write script on $dev"
	else
		t_fail "$name: write script on $dev: $out"
		dmesg_since "write01 $name" | tail -5 | sed 's/^/    kernel: /'
	fi
	out=$(qemu-img compare -f raw -F qcow2 "$dev" "$ref" 2>&1)
	t_check "$name: device reads as QEMU's result ($out)" \
		test "$out" = "Images are identical."
	detach "$dev" || t_fail "$name: detach $dev"

	out=$(qemu-img compare -f qcow2 -F qcow2 "$img" "$ref" 2>&1)
	t_check "$name: image equals QEMU's result ($out)" \
		test "$out" = "Images are identical."
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q leaked <<<"$out"; then
		t_pass "$name: qemu-img check clean"
	else
		t_fail "$name: qemu-img check exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
	fi
	bits=$(header_bits "$img")
	t_check "$name: no dirty or corrupt bit (byte 79 = $bits)" \
		test $((bits & 3)) -eq 0
	if [ "$snap" != - ]; then
		sname=${snap%%=*}
		sref=${snap#*=}
		out=$QB_SCRATCH/write01-snap.raw
		qemu-img convert -f qcow2 -l "snapshot.name=$sname" -O raw \
			"$img" "$out"
		t_check "$name: snapshot '$sname' unchanged" cmp -s "$out" "$sref"
		rm -f "$out"
	fi
done 3< <(if [ -n "${QB_WRITE_FILTER:-}" ]; then
	awk -F '\t' -v re="$QB_WRITE_FILTER" '$1 ~ re' "$d/MANIFEST-write"
else
	cat "$d/MANIFEST-write"
fi)

t_done
