#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Errors on the image file: a host file system that fills up (ENOSPC) fails
# the request and leaves the image consistent and writable; an I/O error on
# the image file during metadata write-back turns the device read-only and
# keeps the image as the last good flush left it.
. "$(dirname "$0")/common.sh"

# qb_cmp_head IMAGE FILE: the image starts with FILE's bytes, as QEMU reads it
qb_cmp_head() {
	rm -f "$work/out.raw"
	qemu-img convert -O raw "$1" "$work/out.raw" &&
		cmp -n "$(stat -c %s "$2")" "$2" "$work/out.raw"
}

need_cmd() {
	command -v "$1" >/dev/null || t_skip "$1 is not installed"
}
need_cmd qemu-img
need_cmd dd

work=$QB_SCRATCH/write06
mkdir -p "$work/small" "$work/dm"

# ---- ENOSPC --------------------------------------------------------------

mount -t tmpfs -o size=24m tmpfs "$work/small" || t_skip "cannot mount a tmpfs"
qb_mounts+=("$work/small")
img=$work/small/full.qcow2
qemu-img create -q -f qcow2 "$img" 256M
need_write "$img"
dev=$(attach_rw "$img") || { t_fail "attach $img"; t_done; }

head -c 4M /dev/urandom >"$work/a.bin"
t_check "a first 4 MiB write fits" \
	dd if="$work/a.bin" of="$dev" bs=1M oflag=direct conv=fsync status=none
out=$(dd if=/dev/zero of="$dev" bs=1M seek=8 count=64 oflag=direct \
	conv=fsync 2>&1)
rc=$?
if [ $rc -ne 0 ] && grep -qi 'space' <<<"$out"; then
	t_pass "64 MiB more fail with ENOSPC: $(tail -1 <<<"$out")"
else
	t_fail "64 MiB more on a 24 MiB file system: exit $rc: $out"
fi
t_check "the device stays writable after ENOSPC" \
	test "$(blockdev --getro "$dev")" = 0
t_check "flush still works" sync "$dev"
t_check "the first write reads back" \
	cmp -n 4194304 "$work/a.bin" "$dev"
qcow2ctl detach "$dev" || t_fail "detach after ENOSPC"
settle
out=$(qemu-img check "$img" 2>&1)
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then
	t_pass "qemu-img check after ENOSPC: exit $rc ($(grep -o '[0-9]* leaked' <<<"$out" || echo 0 leaked))"
else
	t_fail "qemu-img check after ENOSPC: exit $rc: $out"
fi
t_check "qemu-img reads the first write back" \
	qb_cmp_head "$img" "$work/a.bin"

# ---- I/O error -------------------------------------------------------------

if ! command -v dmsetup >/dev/null || ! modprobe dm_mod 2>/dev/null; then
	t_log "no device mapper: I/O error part skipped"
	t_done
fi
modprobe loop 2>/dev/null
truncate -s 96M "$work/backing.raw"
loop=$(losetup --show -f "$work/backing.raw") || { t_fail "losetup"; t_done; }
sectors=$(blockdev --getsz "$loop")
dmsetup create qb-w06 --table "0 $sectors linear $loop 0" ||
	{ losetup -d "$loop"; t_fail "dmsetup create"; t_done; }
cleanup_dm() {
	umount "$work/dm" 2>/dev/null
	dmsetup remove qb-w06 2>/dev/null
	losetup -d "$loop" 2>/dev/null
}
mkfs.ext4 -q /dev/mapper/qb-w06 && mount /dev/mapper/qb-w06 "$work/dm" ||
	{ cleanup_dm; t_fail "ext4 on the dm device"; t_done; }
img=$work/dm/eio.qcow2
qemu-img create -q -f qcow2 "$img" 64M
dev=$(attach_rw "$img") || { cleanup_dm; t_fail "attach $img"; t_done; }
t_check "a first write and flush" \
	dd if="$work/a.bin" of="$dev" bs=1M oflag=direct conv=fsync status=none
sync
# New clusters whose metadata stays in the driver's caches (no flush yet),
# then the file starts failing, then a flush: the metadata write-back hits
# the error.
t_check "a write of new clusters, not flushed" \
	dd if=/dev/zero of="$dev" bs=64k seek=512 count=16 oflag=direct \
	status=none
dmsetup suspend --noflush qb-w06 &&
	dmsetup load qb-w06 --table "0 $sectors error" &&
	dmsetup resume qb-w06 || t_fail "switching to the error target"
t_check_fails "the flush fails" sync "$dev"
t_check "the device turned read-only" test "$(blockdev --getro "$dev")" = 1
werr=$(cat "/sys/block/${dev#/dev/}/qcow2/write_error" 2>/dev/null)
t_check "sysfs write_error names the error ($werr)" \
	test -n "$werr" -a "$werr" != 0
t_check_fails "later writes are refused" \
	dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none
qcow2ctl detach "$dev" || t_fail "detach after the I/O error"
settle
# --noflush: the error table cannot flush what it holds.
dmsetup suspend --noflush qb-w06 &&
	dmsetup load qb-w06 --table "0 $sectors linear $loop 0" &&
	dmsetup resume qb-w06 || t_fail "switching back to the linear target"
# What reached the disk before the error is what a crash would leave.
umount "$work/dm" 2>/dev/null
e2fsck -fy /dev/mapper/qb-w06 >/dev/null 2>&1
if mount /dev/mapper/qb-w06 "$work/dm"; then
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then
		t_pass "the image checks without corruption after the error (exit $rc)"
	else
		t_fail "qemu-img check after the I/O error: exit $rc: $out"
	fi
	t_check "the first write reads back" \
		qb_cmp_head "$img" "$work/a.bin"
else
	t_fail "the ext4 file system does not mount again"
fi
cleanup_dm
t_done
