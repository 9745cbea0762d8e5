#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Overlap protection: an image whose L2 table maps guest cluster 1, with
# the COPIED flag (so a writer may write in place), onto the cluster that
# holds the L1 table, and one mapping it onto the refcount table. A write to
# that guest cluster must fail, the device must turn read-only, the kernel
# log must name the overlap, and after detach the image must carry the
# corrupt bit (incompatible feature bit 1) with the metadata cluster
# unchanged.
. "$(dirname "$0")/common.sh"

probe=$QB_SCRATCH/write05-probe.qcow2
qemu-img create -q -f qcow2 "$probe" 1M
need_write "$probe"
rm -f "$probe"

# plant IMAGE TARGET: point guest cluster 1 at the L1 table ("l1") or the
# refcount table ("reftable"); print that host offset
plant() {
	python3 - "$1" "$2" <<'PY'
import struct, sys

path, target = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    hdr = f.read(104)
    l1_off = struct.unpack(">Q", hdr[40:48])[0]
    rt_off = struct.unpack(">Q", hdr[48:56])[0]
    f.seek(l1_off)
    l2_off = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    if not l2_off:
        sys.exit("guest cluster 0 has no L2 table")
    host = l1_off if target == "l1" else rt_off
    f.seek(l2_off + 8)
    f.write(struct.pack(">Q", (1 << 63) | host))
print(host)
PY
}

# cluster_sum IMAGE OFFSET: checksum of the 64 KiB cluster at OFFSET
cluster_sum() {
	dd if="$1" bs=64k skip=$(($2 / 65536)) count=1 status=none |
		sha256sum | cut -d' ' -f1
}

for target in l1 reftable; do
	img=$QB_SCRATCH/write05-$target.qcow2
	qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=64k "$img" 16M
	qemu-io -f qcow2 -c "write -P 0x5a 0 64k" "$img" >/dev/null
	if ! host=$(plant "$img" "$target"); then
		t_fail "$target: could not plant the entry"
		continue
	fi
	before=$(cluster_sum "$img" "$host")
	t_log "$target: guest cluster 1 -> host 0x$(printf %x "$host")"

	kmsg "write05 $target"
	if ! dev=$(attach_rw "$img"); then
		t_fail "$target: attach $img"
		continue
	fi
	t_check "$target: device starts read-write" test "$(ro_state "$dev")" = 0
	out=$(qemu-io -f raw -t none -c "write -P 0xee 64k 4k" "$dev" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] || grep -qiE 'fail|error' <<<"$out"; then
		t_pass "$target: the write failed: $(grep -iE 'fail|error' <<<"$out" | head -1)"
	else
		t_fail "$target: the write succeeded: $out"
	fi
	t_check "$target: device is read-only now" test "$(ro_state "$dev")" = 1
	t_log "$target: qcow2ctl list RO $(qcow2ctl list -n --raw -O ro "$dev"), write_error $(sysfs_attr "$dev" write_error), overlaps $(sysfs_attr "$dev" overlaps)"
	if n=$(sysfs_attr "$dev" overlaps); then
		t_check "$target: sysfs overlaps counts it ($n)" test "$n" -ge 1
	fi
	log=$(dmesg_since "write05 $target")
	if grep -qi overlap <<<"$log"; then
		t_pass "$target: kernel log: $(grep -i overlap <<<"$log" | head -1)"
	else
		t_fail "$target: no overlap message in the kernel log"
		tail -5 <<<"$log" | sed 's/^/    kernel: /'
	fi
	t_check_fails "$target: a second write fails too" \
		sh -c "qemu-io -f raw -t none -c 'write -P 0xef 8M 4k' '$dev' 2>&1 |
			grep -qx 'wrote 4096/4096 bytes at offset 8388608'"
	detach "$dev" || t_fail "$target: detach $dev"
	bits=$(od -An -tu1 -j79 -N1 "$img" | tr -d ' ')
	t_check "$target: corrupt bit set (byte 79 = $bits)" \
		test $((bits & 2)) -eq 2
	t_check "$target: the metadata cluster is unchanged" \
		test "$(cluster_sum "$img" "$host")" = "$before"
	if ! out=$(qcow2ctl attach --show "$img" 2>&1); then
		t_pass "$target: read-write attach refused now: $out"
	else
		t_fail "$target: read-write attach of a corrupt image succeeded"
		detach "$(grep -o '/dev/qcow[0-9]*' <<<"$out" | head -1)"
	fi
	rm -f "$img"
done

t_done
