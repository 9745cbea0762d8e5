#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Sector sizes and direct I/O alignment. An image on ext4 over a loop
# device with 4 KiB logical sectors (a 4Kn disk) gets direct I/O at 4096
# bytes: sysfs direct_io 1, dio_align_bytes 4096, and a /dev/qcowN with
# 4096-byte logical blocks; data written through it reads back through
# QEMU and qemu-img check is clean. --sector-size sets the logical block
# size explicitly (and is listed), and is refused for sizes the virtual
# size is not a multiple of, or that are not 512-4096.
. "$(dirname "$0")/common.sh"

for c in qemu-img losetup mkfs.ext4; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done
modprobe loop 2>/dev/null

work=$QB_SCRATCH/ctl02
mkdir -p "$work/fs"

# ---- --sector-size on an ordinary store ----------------------------------

img=$work/plain.qcow2
qemu-img create -q -f qcow2 "$img" 16M
need_write "$img"
dev=$(attach_rw "$img" --sector-size 4096) || { t_fail "attach --sector-size 4096"; t_done; }
q=/sys/block/$(basename "$dev")/queue
t_check "--sector-size 4096: logical_block_size 4096" \
	test "$(cat "$q/logical_block_size")" = 4096
t_check "--sector-size 4096: listed as SECTOR 4096" \
	test "$(qcow2ctl list -n --raw -O SECTOR "$dev")" = 4096
head -c 1M /dev/urandom >"$work/a.bin"
t_check "a 1 MiB write with 4 KiB sectors" \
	dd if="$work/a.bin" of="$dev" bs=64k oflag=direct conv=fsync status=none
detach "$dev" || t_fail "detach"
qemu-img convert -O raw "$img" "$work/out.raw"
t_check "it reads back through QEMU" cmp -n 1048576 "$work/a.bin" "$work/out.raw"

dev=$(attach_rw "$img") || t_fail "attach without --sector-size"
[ -n "$dev" ] && t_check "default on this store: 512-byte sectors" \
	test "$(cat "/sys/block/$(basename "$dev")/queue/logical_block_size")" = 512
[ -n "$dev" ] && detach "$dev"

odd=$work/odd.qcow2
qemu-img create -q -f qcow2 "$odd" $((16 * 1048576 + 512))
t_check_fails "--sector-size 4096 refused on a size not a multiple of it" \
	qcow2ctl attach -r "$odd" --sector-size 4096
t_check_fails "--sector-size 3000 refused" qcow2ctl attach -r "$img" --sector-size 3000
t_check_fails "--sector-size 8192 refused" qcow2ctl attach -r "$img" --sector-size 8192
t_check "nothing stays attached after the refusals" \
	test -z "$(qcow2ctl list -n --raw -O NAME)"

# ---- a 4 KiB-sector store ------------------------------------------------

truncate -s 96M "$work/4kn.raw"
loop=$(losetup --show -f -b 4096 "$work/4kn.raw") || { t_fail "losetup -b 4096"; t_done; }
cleanup_loop() {
	umount "$work/fs" 2>/dev/null
	losetup -d "$loop" 2>/dev/null
}
if ! mkfs.ext4 -q "$loop" || ! mount "$loop" "$work/fs"; then
	cleanup_loop
	t_fail "ext4 on a 4 KiB-sector loop device"
	t_done
fi
img=$work/fs/4kn.qcow2
qemu-img create -q -f qcow2 "$img" 32M
dev=$(attach_rw "$img") || { cleanup_loop; t_fail "attach on the 4Kn store"; t_done; }
t_check "4Kn store: direct_io 1" test "$(sysfs_attr "$dev" direct_io)" = 1
t_check "4Kn store: dio_align_bytes 4096" \
	test "$(sysfs_attr "$dev" dio_align_bytes)" = 4096
t_check "4Kn store: logical_block_size 4096" \
	test "$(cat "/sys/block/$(basename "$dev")/queue/logical_block_size")" = 4096
t_check "4Kn store: allocating and in-place writes" \
	dd if="$work/a.bin" of="$dev" bs=4k oflag=direct status=none
t_check "4Kn store: overwrite" \
	dd if="$work/a.bin" of="$dev" bs=64k seek=16 oflag=direct conv=fsync status=none
t_check "4Kn store: reads back" \
	cmp -n 1048576 "$work/a.bin" <(dd if="$dev" bs=64k skip=16 count=16 iflag=direct status=none)
detach "$dev" || t_fail "detach on the 4Kn store"
out=$(qemu-img check "$img" 2>&1)
t_check "4Kn store: qemu-img check: $(tail -1 <<<"$out")" test $? = 0
qemu-img convert -O raw "$img" "$work/out4k.raw"
t_check "4Kn store: both writes read back through QEMU" \
	cmp -n 1048576 "$work/a.bin" "$work/out4k.raw"
t_check "4Kn store: second copy at 1 MiB" \
	cmp -n 1048576 "$work/a.bin" <(dd if="$work/out4k.raw" bs=1M skip=1 count=1 status=none)
cleanup_loop
t_done
