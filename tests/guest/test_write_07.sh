#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Reads and in-place writes do not wait for a flush. The image lives on
# ext4 over a dm-delay device whose writes (and so flushes) take 1.5 s
# each; an ordered metadata write-back then takes several seconds. While
# one runs, a read of an allocated cluster and an overwrite of an owned
# cluster are issued: both must complete before the flush does. Then the
# image is checked by qemu-img and read back as written.
. "$(dirname "$0")/common.sh"

for c in qemu-img qemu-io dmsetup losetup mkfs.ext4; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done
modprobe dm_delay 2>/dev/null
modprobe loop 2>/dev/null
dmsetup targets 2>/dev/null | grep -q '^delay' || t_skip "no dm-delay target"

work=$QB_SCRATCH/write07
mkdir -p "$work/fs"
truncate -s 128M "$work/backing.raw"
loop=$(losetup --show -f "$work/backing.raw") || { t_fail "losetup"; t_done; }
sectors=$(blockdev --getsz "$loop")
table() {
	echo "0 $sectors delay $loop 0 0 $loop 0 $1"
}
dmsetup create qb-w07 --table "$(table 0)" ||
	{ losetup -d "$loop"; t_fail "dmsetup create"; t_done; }
cleanup_dm() {
	umount "$work/fs" 2>/dev/null
	dmsetup remove qb-w07 2>/dev/null
	losetup -d "$loop" 2>/dev/null
}
set_delay() {
	dmsetup suspend qb-w07 && dmsetup load qb-w07 --table "$(table "$1")" &&
		dmsetup resume qb-w07
}
if ! mkfs.ext4 -q /dev/mapper/qb-w07 || ! mount /dev/mapper/qb-w07 "$work/fs"; then
	cleanup_dm
	t_fail "ext4 on dm-delay"
	t_done
fi

img=$work/fs/img.qcow2
qemu-img create -q -f qcow2 "$img" 64M
# Clusters 0-15 allocated with a pattern: the read and the overwrite.
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' "$img" >/dev/null ||
	t_fail "qemu-io could not write the pattern"
need_write "$img"
dev=$(attach_rw "$img") || { cleanup_dm; t_fail "attach"; t_done; }
# The slices the read and the overwrite need are cached now.
dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct status=none
head -c 65536 /dev/urandom >"$work/new.bin"

set_delay 1500 || t_fail "switch to a 1.5 s write delay"
# An allocating write leaves dirty metadata for the flush to write back.
dd if=/dev/urandom of="$dev" bs=64k count=4 seek=512 oflag=direct \
	status=none || t_fail "allocating write"

now() {
	date +%s.%N
}
t0=$(now)
( sync "$dev"; now >"$work/flush.end" ) &
flusher=$!
sleep 0.5
dd if="$dev" of=/dev/null bs=4k count=1 skip=20 iflag=direct status=none
rc_read=$?
t_read=$(now)
dd if="$work/new.bin" of="$dev" bs=64k count=1 seek=4 oflag=direct \
	status=none
rc_write=$?
t_write=$(now)
wait "$flusher"
t_flush=$(cat "$work/flush.end")
set_delay 0 || t_fail "switch back to no delay"

t_log "flush $(echo "$t_flush - $t0" | bc) s, read done after $(echo "$t_read - $t0" | bc) s, in-place write after $(echo "$t_write - $t0" | bc) s"
t_check "the flush took longer than 3 s (else the test shows nothing)" \
	test "$(echo "$t_flush - $t0 > 3" | bc)" = 1
t_check "the read succeeded" test "$rc_read" = 0
t_check "the read completed before the flush" \
	test "$(echo "$t_read < $t_flush" | bc)" = 1
t_check "the in-place write succeeded" test "$rc_write" = 0
t_check "the in-place write completed before the flush" \
	test "$(echo "$t_write < $t_flush" | bc)" = 1

detach "$dev" || t_fail "detach"
out=$(qemu-img check "$img" 2>&1)
t_check "qemu-img check: $(tail -1 <<<"$out")" test $? = 0
qemu-img convert -O raw "$img" "$work/out.raw"
t_check "overwritten cluster as written" \
	cmp -n 65536 "$work/new.bin" <(dd if="$work/out.raw" bs=64k skip=4 count=1 status=none)
t_check "the cluster before it keeps its pattern" \
	cmp -n 65536 <(dd if="$work/out.raw" bs=64k skip=3 count=1 status=none) \
	<(head -c 65536 /dev/zero | tr '\0' 'Z')
cleanup_dm
t_done
