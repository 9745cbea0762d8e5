#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_bitmap.sh [CASE...]: persistent dirty bitmaps kept valid by the
# engine's write path, against QEMU's. Each case makes an image with
# bitmaps (qemu-img bitmap), some bits already set, and gives two copies
# the same script: one through qemu-io, one through the engine (qcow2-io).
# Then, for ours: qemu-img check exits 0 with no leaks, qemu-img compare
# finds both copies identical, the flags QEMU reports are the same (no
# in-use left, enabled and disabled as they were), and the dirty extents
# QEMU serves for every bitmap (qemu-nbd --bitmap) are the same.
#
# Also: an image with an inconsistent (in-use) bitmap is refused for
# writing, with QEMU's advice, and left byte-identical; an image opened for
# writing that is never written is left byte-identical.
#
# One line per case, "PASS host/test_bitmap: NAME" or "FAIL ...: reason",
# then "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
io_bin=$top/build/user/qcow2-io
# shellcheck source=../lib/bitmaps.sh
. "$top/tests/lib/bitmaps.sh"

make -s -C "$top/tests/tools" write-tools >/dev/null 2>&1 || {
	echo "FAIL host/test_bitmap: build: make -C tests/tools write-tools"
	echo "0 passed, 1 failed"
	exit 1
}

tmp=$(mktemp -d "${QB_WORKDIR:-/var/tmp}/test_bitmap.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
QB_SUITE=host/test_bitmap
# shellcheck source=../lib/host-harness.sh
. "$top/tests/lib/host-harness.sh"
qb_cases "$@"

# roundtrip NAME CS "CREATE-OPTS" BITMAP:GRAN[:off]...
roundtrip() {
	local name=$1 cs=$2 opts=$3 d=$tmp/$1 names=() args=()
	local out
	shift 3

	wanted "$name" || return 0
	mkdir -p "$d"
	mapfile -t names < <(bm_image "$d/base.qcow2" "$cs" "$opts" "$@")
	[ ${#names[@]} -eq $# ] ||
		{ result FAIL "$name" "making the image with qemu-img"; return; }
	cp "$d/base.qcow2" "$d/ours.qcow2"
	cp "$d/base.qcow2" "$d/qemu.qcow2"
	mapfile -t args < <(bm_script "$cs" | bm_ioargs)
	qemu-io "${args[@]}" "$d/qemu.qcow2" >/dev/null ||
		{ result FAIL "$name" "qemu-io"; return; }
	out=$("$io_bin" "$d/ours.qcow2" "${args[@]}" 2>&1 >/dev/null) ||
		{ result FAIL "$name" "qcow2-io: $out"; return; }
	out=$(qemu-img check "$d/ours.qcow2" 2>&1) ||
		{ result FAIL "$name" "qemu-img check: $(echo $out)"; return; }
	out=$(qemu-img compare "$d/ours.qcow2" "$d/qemu.qcow2" 2>&1) ||
		{ result FAIL "$name" "qemu-img compare: $out"; return; }
	if [ "$(bm_flags "$d/ours.qcow2")" != "$(bm_flags "$d/qemu.qcow2")" ]; then
		result FAIL "$name" "flags: ours [$(bm_flags "$d/ours.qcow2" | tr '\n' ' ')] qemu [$(bm_flags "$d/qemu.qcow2" | tr '\n' ' ')]"
		return
	fi
	out=$(bm_same "$d/ours.qcow2" "$d/qemu.qcow2" "${names[@]}") ||
		{ result FAIL "$name" "$out"; return; }
	# A second session over our own result: bits load back and grow.
	"$io_bin" "$d/ours.qcow2" -c 'write -P 0x31 60M 64k' >/dev/null 2>&1 &&
	qemu-io -c 'write -P 0x31 60M 64k' "$d/qemu.qcow2" >/dev/null &&
	out=$(bm_same "$d/ours.qcow2" "$d/qemu.qcow2" "${names[@]}") &&
	qemu-img check -q "$d/ours.qcow2" ||
		{ result FAIL "$name" "second session: $out"; return; }
	result PASS "$name"
}

roundtrip two-one-disabled 65536 "" b64k:64k bdis:64k:off
roundtrip gran-64k-4m 65536 "" b64k:64k b4m:4M
roundtrip gran-512-clusters-4k 4096 "" b512:512 b1m:1M
roundtrip extl2 131072 ",extended_l2=on" bsub:64k b2m:2M
roundtrip data-file 65536 ",data_file=$tmp/data-file/data.raw" bd:64k

# A bitmap left in use (QEMU killed while writing) cannot be kept: writing
# is refused with QEMU's advice and nothing changes.
case_inuse() {
	local d=$tmp/inuse out sum

	wanted in-use-refused || return 0
	mkdir -p "$d"
	qemu-img create -q -f qcow2 "$d/a.qcow2" 64M
	qemu-img bitmap --add "$d/a.qcow2" b0
	qemu-io -c 'write 0 64k' -c 'sigraise 9' "$d/a.qcow2" >/dev/null 2>&1
	if ! bm_flags "$d/a.qcow2" | grep -q in-use; then
		result FAIL in-use-refused "qemu-io left no bitmap in use: $(bm_flags "$d/a.qcow2")"
		return
	fi
	sum=$(sha256sum <"$d/a.qcow2")
	if out=$("$io_bin" "$d/a.qcow2" -c 'write 64k 64k' 2>&1); then
		result FAIL in-use-refused "the write was accepted"
	elif ! grep -q "inconsistent: qemu-img bitmap --remove" <<<"$out"; then
		result FAIL in-use-refused "message: $out"
	elif [ "$sum" != "$(sha256sum <"$d/a.qcow2")" ]; then
		result FAIL in-use-refused "the image changed"
	else
		result PASS in-use-refused
	fi
}

case_nowrite() {
	local d=$tmp/nowrite sum

	wanted no-write-unchanged || return 0
	mkdir -p "$d"
	qemu-img create -q -f qcow2 "$d/a.qcow2" 64M
	qemu-img bitmap --add "$d/a.qcow2" b0
	qemu-io -c 'write 0 64k' "$d/a.qcow2" >/dev/null
	sum=$(sha256sum <"$d/a.qcow2")
	if ! "$io_bin" "$d/a.qcow2" -c flush >/dev/null 2>&1; then
		result FAIL no-write-unchanged "qcow2-io failed"
	elif [ "$sum" != "$(sha256sum <"$d/a.qcow2")" ]; then
		result FAIL no-write-unchanged "the image changed"
	else
		result PASS no-write-unchanged
	fi
}

case_inuse
case_nowrite

qb_summary
