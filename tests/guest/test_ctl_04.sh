#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A refused attach changes nothing. Every refusal a test can reach, through
# qcow2ctl's checks and (QCOW2CTL_NO_PRECHECK=1) through the kernel's, on
# images whose autoclear bits are set (a persistent bitmap), so that a
# header update made too early would show: each attach must fail and leave
# the sha256 of every file as it was. A read-write attach that writes
# nothing leaves the image byte-identical too; the first write keeps the
# bitmap valid.
. "$(dirname "$0")/common.sh"

for c in qemu-img qemu-io sha256sum; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done

work=$QB_SCRATCH/ctl04
mkdir -p "$work"
cd "$work" || t_done

# patch FILE OFFSET HEXBYTE...: overwrite bytes of FILE in place
patch() {
	local f=$1 off=$2 b

	shift 2
	for b in "$@"; do
		printf "\\x$b" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
		off=$((off + 1))
	done
}

# mk NAME [qemu-img create options...]: a 16 MiB v3 image with data and a
# persistent bitmap (autoclear bit 0 set)
mk() {
	local n=$1

	shift
	qemu-img create -q -f qcow2 "$@" "$n.qcow2" 16M || return 1
	qemu-io -f qcow2 -c 'write -P 0x3c 0 256k' "$n.qcow2" >/dev/null &&
		qemu-img bitmap --add "$n.qcow2" b0
}

mk plain
mk dirty && patch dirty.qcow2 79 01
mk corrupt && patch corrupt.qcow2 79 02
mk unknown && patch unknown.qcow2 78 02
mk oddsize && patch oddsize.qcow2 31 01	# virtual size 16 MiB + 1 byte
mk withdata -o data_file="$work/withdata.raw"
rm -f nodata.raw
mk nodata -o data_file="$work/nodata.raw" && rm nodata.raw
mk nobacking -b "$work/plain.qcow2" -F qcow2
qemu-img rebase -q -u -b "$work/missing.qcow2" -F qcow2 nobacking.qcow2
qemu-img create -q -f vmdk base.vmdk 16M
mk vmdkbase -b "$work/base.vmdk" -F vmdk
mk loop1
mk loop2 -b "$work/loop1.qcow2" -F qcow2
qemu-img rebase -q -u -b "$work/loop2.qcow2" -F qcow2 loop1.qcow2
qemu-img create -q -f qcow2 held.qcow2 16M

t_check "the images have their autoclear bit set" \
	test "$(od -An -tx1 -j95 -N1 plain.qcow2 | tr -d ' ')" = 01
need_write held.qcow2

sums() {
	sha256sum ./*.qcow2 ./*.raw ./*.vmdk 2>/dev/null
}

# refused DESCRIPTION ARGS...: "qcow2ctl attach ARGS" fails, no file changes
refused() {
	local what=$1

	shift
	attach_refused "$what" "" ./*.qcow2 ./*.raw ./*.vmdk -- "$@"
}

# both DESCRIPTION ARGS...: refused by qcow2ctl's checks and by the kernel's
both() {
	refused "$@"
	QCOW2CTL_NO_PRECHECK=1 refused "$1 (no precheck)" "${@:2}"
}

# Arguments: nothing is opened.
refused "--snapshot without -r" --snapshot x plain.qcow2
refused "--refcount-cache with -r" -r --refcount-cache 1M plain.qcow2
refused "--force-share without -r" --force-share plain.qcow2
refused "--sector-size 3000" --sector-size 3000 plain.qcow2
refused "no such image" missing.qcow2

# The image and its chain.
both "dirty image read-write" dirty.qcow2
both "image marked corrupt" corrupt.qcow2
both "unknown incompatible feature" unknown.qcow2
both "virtual size not a multiple of 512 read-write" oddsize.qcow2
both "sector size the virtual size is not a multiple of" \
	--sector-size 4096 oddsize.qcow2
both "backing file missing" nobacking.qcow2
both "backing format not supported" vmdkbase.qcow2
both "backing chain loop" loop1.qcow2
both "external data file missing" nodata.qcow2
both "--data-file on an image without one" --data-file withdata.raw plain.qcow2
both "snapshot that does not exist" -r --snapshot nosuch plain.qcow2

# Refused by the kernel after the chain is open: the device index in use.
dev=$(attach_ro held.qcow2 --index 7) || t_fail "attach held.qcow2 as qcow7"
if [ -n "$dev" ]; then
	both "device index in use" --index 7 plain.qcow2
	both "device index in use, with a data file" --index 7 withdata.qcow2
	detach "$dev"
fi

# In use by another device, read-write: the image lock refuses it.
dev=$(attach_rw held.qcow2) || t_fail "attach held.qcow2 read-write"
if [ -n "$dev" ]; then
	both "image attached read-write by another device" held.qcow2
	both "read-only attach of it" -r held.qcow2
	detach "$dev"
fi

# Accepted, but never written: the image stays byte-identical.
s0=$(sums)
dev=$(attach_rw plain.qcow2) || t_fail "attach plain.qcow2 read-write"
if [ -n "$dev" ]; then
	dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct status=none
	detach "$dev" || t_fail "detach"
	t_check "a read-write attach that wrote nothing changed no file" \
		test "$s0" = "$(sums)"
fi

# The first write keeps the bitmap (autoclear bit 0 stays, the bitmap is
# consistent again after the detach), and QEMU finds the image clean.
dev=$(attach_rw plain.qcow2) || t_fail "attach plain.qcow2 read-write again"
if [ -n "$dev" ]; then
	t_check "a write" dd if=/dev/urandom of="$dev" bs=4k count=1 \
		oflag=direct conv=fsync status=none
	detach "$dev" || t_fail "detach after the write"
	t_check "the bitmap is kept: autoclear bit 0 only" \
		test "$(od -An -tx1 -j88 -N8 plain.qcow2 | tr -d ' ')" = 0000000000000001
	t_check "qemu-img check: no errors, no leaks" qemu-img check -q plain.qcow2
	t_check "the bitmap is consistent (not in use)" \
		test -z "$(qemu-img info -U plain.qcow2 | grep in-use)"
fi

t_check "nothing stays attached" test -z "$(qcow2ctl list -n --raw -O NAME)"
t_done
