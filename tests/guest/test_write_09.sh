#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2 on block devices, as oVirt keeps images on LVM volumes: an image
# made with qemu-img on a loop device, attached read-write, gets the same
# writes through /dev/qcowN as a file image gets from qemu-io, and
# qemu-img compare finds them equal and qemu-img check clean; a backing
# file and an external data file on block devices serve too. An image
# cannot grow past its device: writes that would need more clusters fail
# with ENOSPC, the device stays writable and the image stays clean.
. "$(dirname "$0")/common.sh"

for c in qemu-img qemu-io losetup; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done
modprobe loop 2>/dev/null

work=$QB_SCRATCH/write09
mkdir -p "$work"
cd "$work" || t_done
loops=()
cleanup_loops() {
	local l

	for l in "${loops[@]}"; do
		losetup -d "$l" 2>/dev/null
	done
}
trap 'qb_cleanup; cleanup_loops' EXIT

# new_loop MIB: a loop device over a fresh file of MIB MiB, in $loop
new_loop() {
	truncate -s "${1}M" "$work/loop${#loops[@]}.raw"
	loop=$(losetup --show -f "$work/loop${#loops[@]}.raw") || return 1
	loops+=("$loop")
}

cat >"$work/writes" <<'EOF'
write -P 0x11 0 64k
write -P 0x22 100k 12k
write -P 0x33 1m 1m
write -z 1088k 64k
write -P 0x44 5000k 4k
discard 1m 128k
write -P 0x55 12m 300k
EOF

# ---- an image on a block device --------------------------------------------

new_loop 64 || { t_fail "losetup"; t_done; }
img=$loop
t_check "qemu-img create on $img" qemu-img create -q -f qcow2 "$img" 32M
qemu-img create -q -f qcow2 ref.qcow2 32M
qio_args=()
while IFS= read -r c; do qio_args+=(-c "$c"); done <"$work/writes"
qemu-io -f qcow2 "${qio_args[@]}" ref.qcow2 >/dev/null

dev=$(attach_rw "$img") || { t_fail "attach $img read-write"; t_done; }
t_check "direct I/O on the block device" test "$(sysfs_attr "$dev" direct_io)" = 1
t_check "the writes through $dev" qio_script "$dev" "$work/writes"
detach "$dev" || t_fail "detach"
t_check "qemu-img check of the image on $img" qemu-img check -q -f qcow2 "$img"
t_check "qemu-img compare with qemu-io's writes" \
	qemu-img compare -q -f qcow2 -F qcow2 "$img" ref.qcow2

# ---- a backing file on a block device ---------------------------------------

qemu-img create -q -f qcow2 -b "$img" -F qcow2 top.qcow2
qemu-img create -q -f qcow2 -b ref.qcow2 -F qcow2 reftop.qcow2
qemu-io -f qcow2 -c 'write -P 0x66 64k 64k' reftop.qcow2 >/dev/null
dev=$(attach_rw top.qcow2) || t_fail "attach an overlay over $img"
if [ -n "$dev" ]; then
	t_check "a write into the overlay" \
		qemu-io -f raw -t none -c 'write -P 0x66 64k 64k' "$dev"
	detach "$dev" || t_fail "detach the overlay"
	t_check "overlay over a block device equals qemu-io's" \
		qemu-img compare -q top.qcow2 reftop.qcow2
fi

# ---- an external data file on a block device --------------------------------

new_loop 32 || t_fail "losetup for the data file"
if qemu-img create -q -f qcow2 -o "data_file=$loop,data_file_raw=on" \
	data.qcow2 32M 2>"$work/create.err"; then
	qemu-img create -q -f qcow2 refdata.qcow2 32M
	qemu-io -f qcow2 "${qio_args[@]}" refdata.qcow2 >/dev/null
	dev=$(attach_rw data.qcow2) || t_fail "attach an image whose data file is $loop"
	if [ -n "$dev" ]; then
		t_check "the writes through $dev" qio_script "$dev" "$work/writes"
		detach "$dev" || t_fail "detach"
		t_check "qemu-img check, data file on a block device" \
			qemu-img check -q data.qcow2
		t_check "data file on a block device equals qemu-io's writes" \
			qemu-img compare -q data.qcow2 refdata.qcow2
	fi
else
	t_fail "qemu-img create with a data file on $loop: $(cat "$work/create.err")"
fi

# ---- an image larger than its device ----------------------------------------

new_loop 4 || t_fail "losetup for the small device"
small=$loop
qemu-img create -q -f qcow2 "$small" 64M
dev=$(attach_rw "$small") || t_fail "attach a 64 MiB image on a 4 MiB device"
if [ -n "$dev" ]; then
	out=$(dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct 2>&1)
	if grep -q "No space left on device" <<<"$out"; then
		t_pass "writing past the device's end: ENOSPC"
	else
		t_fail "writing past the device's end: $out"
	fi
	t_check "the device is still writable" \
		test "$(sysfs_attr "$dev" write_error)" = 0
	t_check "a write within what was allocated still works" \
		dd if=/dev/zero of="$dev" bs=64k count=1 oflag=direct conv=fsync status=none
	detach "$dev" || t_fail "detach the small device"
	t_check "qemu-img check of the full image" qemu-img check -q -f qcow2 "$small"
fi
t_done
