#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Persistent dirty bitmaps through /dev/qcowN. Images get bitmaps from
# qemu-img bitmap (64 KiB and 4 MiB granularity, one disabled, bits set
# already); one copy is attached read-write and written through the device
# with a script, another gets the same script from qemu-io. After detach:
# qemu-img check is clean, the copies compare equal, QEMU reports the same
# bitmap flags (none in use) and qemu-nbd --bitmap serves the same dirty
# extents for every bitmap, so an incremental backup taken from them is
# right. A read-only attach and a read-write attach that writes nothing
# leave the file byte-identical; an image whose bitmap was left in use
# (QEMU killed) is refused for writing with QEMU's advice, changing
# nothing, and still attaches read-only.
. "$(dirname "$0")/common.sh"
# shellcheck source=../lib/bitmaps.sh
. "$(dirname "$0")/../lib/bitmaps.sh"

for c in qemu-img qemu-io qemu-nbd; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done

work=$QB_SCRATCH/write10
mkdir -p "$work"
cd "$work" || t_done
trap qb_cleanup EXIT

# roundtrip NAME CLUSTER BITMAP:GRAN[:off]...
roundtrip() {
	local name=$1 cs=$2 names=() args=() dev out
	shift 2

	mapfile -t names < <(bm_image "$name.base" "$cs" "" "$@")
	[ ${#names[@]} -eq $# ] || { t_fail "$name: making the image"; return; }
	cp "$name.base" "$name.ours"
	cp "$name.base" "$name.qemu"
	bm_script "$cs" >"$name.script"
	mapfile -t args < <(bm_ioargs <"$name.script")
	qemu-io "${args[@]}" "$name.qemu" >/dev/null

	dev=$(attach_rw "$name.ours") || { t_fail "$name: attach"; return; }
	t_check "$name: the script through $dev" qio_script "$dev" "$name.script"
	t_check "$name: detach" detach "$dev"
	t_check "$name: qemu-img check" qemu-img check -q "$name.ours"
	t_check "$name: same data as qemu-io's" \
		qemu-img compare -q "$name.ours" "$name.qemu"
	out=$(bm_flags "$name.ours")
	if [ "$out" = "$(bm_flags "$name.qemu")" ]; then
		t_pass "$name: bitmap flags as QEMU's: $(echo $out)"
	else
		t_fail "$name: bitmap flags [$(echo $out)], QEMU's [$(bm_flags "$name.qemu" | tr '\n' ' ')]"
	fi
	if out=$(bm_same "$name.ours" "$name.qemu" "${names[@]}"); then
		t_pass "$name: dirty extents as QEMU's for ${names[*]}"
	else
		t_fail "$name: $out"
	fi
}

roundtrip disabled 65536 b64k:64k bdis:64k:off
roundtrip gran 65536 b64k:64k b4m:4M
roundtrip small 4096 b512:512 b1m:1M

# Read-only, and read-write without a write: nothing changes.
qemu-img create -q -f qcow2 quiet.qcow2 64M
qemu-img bitmap --add quiet.qcow2 b0
qemu-io -c 'write 0 1M' quiet.qcow2 >/dev/null
s0=$(sha256sum <quiet.qcow2)
if dev=$(attach_ro quiet.qcow2); then
	dd if="$dev" of=/dev/null bs=1M count=4 status=none
	detach "$dev"
	t_check "read-only attach leaves the bitmaps' image unchanged" \
		test "$s0" = "$(sha256sum <quiet.qcow2)"
else
	t_fail "read-only attach of quiet.qcow2"
fi
if dev=$(attach_rw quiet.qcow2); then
	dd if="$dev" of=/dev/null bs=1M count=4 status=none
	detach "$dev"
	t_check "read-write attach without a write leaves it unchanged" \
		test "$s0" = "$(sha256sum <quiet.qcow2)"
else
	t_fail "read-write attach of quiet.qcow2"
fi

# A bitmap left in use by a killed QEMU.
qemu-img create -q -f qcow2 inuse.qcow2 64M
qemu-img bitmap --add inuse.qcow2 b0
qemu-io -c 'write 0 64k' -c 'sigraise 9' inuse.qcow2 >/dev/null 2>&1
if bm_flags inuse.qcow2 | grep -q in-use; then
	# On 6.1 the reply carries a fixed summary; the reason is logged.
	kmsg "write10 inuse"
	s0=$(sha256sum <inuse.qcow2)
	if out=$(qcow2ctl attach --show inuse.qcow2 2>&1); then
		t_fail "in-use bitmap: attached read-write ($out)"
		settle
		qcow2ctl detach "$out"
	elif [ "$s0" != "$(sha256sum <inuse.qcow2)" ]; then
		t_fail "in-use bitmap: refused ($out), but the image changed"
	elif grep -q "inconsistent: qemu-img bitmap --remove" <<<"$out" ||
	     dmesg_since "write10 inuse" |
		grep -q "inconsistent: qemu-img bitmap --remove"; then
		t_pass "in-use bitmap refused for writing, image unchanged: $out"
	else
		t_fail "in-use bitmap refused, but not as expected: $out"
	fi
	if dev=$(attach_ro inuse.qcow2); then
		t_pass "in-use bitmap: read-only attach works"
		detach "$dev"
	else
		t_fail "in-use bitmap: read-only attach refused"
	fi
else
	t_fail "qemu-io left no bitmap in use: $(bm_flags inuse.qcow2)"
fi

t_done
