#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Layers: a three-image backing chain with relative names (the top larger
# than its backing files), a qcow2 overlay on a raw base, the current state
# and two internal snapshots of one image (attach --snapshot by name and by
# ID), and an image with an external data file. Every device must read as
# qemu-img convert -O raw of the same thing; list must report the layers.
# The images are made on the host by run-guest.sh (make_chain_images).
. "$(dirname "$0")/common.sh"

d=$QB_DATA/chain
[ -f "$d/top.qcow2" ] || t_skip "no chain images in $d"
if ! qcow2ctl --help 2>&1 | grep -q -- --snapshot; then
	t_skip "this qcow2ctl has no --snapshot: no layer support"
fi

# check NAME REFERENCE ATTACH-ARGS...: attach and compare; the device is
# left in $dev for the caller to inspect and detach (with done_with)
check() {
	local name=$1 ref=$2 out

	shift 2
	if ! dev=$(attach_ro "$@"); then
		t_fail "$name: attach $* failed"
		dev=
		return 1
	fi
	if out=$(compare "$dev" "$d/$ref" 2>&1); then
		t_pass "$name: ${out//$d\//}"
	else
		t_fail "$name: ${out//$d\//}"
	fi
}

done_with() {
	detach "$dev" || t_fail "$1: detach $dev"
}

# Relative backing names are relative to the naming image's directory, so
# the chain must resolve the same from anywhere.
cd /
if check chain top.raw "$d/top.qcow2"; then
	layers=$(qcow2ctl list -n --raw -O layers "$dev")
	t_check "chain: list says 3 layers ('$layers')" test "$layers" = 3
	backing=$(qcow2ctl list -n --raw -O backing "$dev")
	t_check "chain: list names the backing file ('$backing')" \
		grep -q 'mid.qcow2$' <<<"$backing"
	t_check "chain: list -J has a three-image chain" python3 -c '
import json, sys
d = json.load(sys.stdin)["qcowdevices"][0]
sys.exit(len(d["chain"]) != 3 or
         [c["format"] for c in d["chain"]] != ["qcow2"] * 3)' \
		<<<"$(qcow2ctl list -J "$dev")"
	done_with chain
fi

# The middle of the chain on its own: two layers.
check chain-mid mid.raw "$d/sub/mid.qcow2" && done_with chain-mid

check raw-base over-raw.raw "$d/over-raw.qcow2" && done_with raw-base

# Snapshots: current state, by name, by ID (the second snapshot has ID 2).
check snap-current snap-current.raw "$d/snap.qcow2" && done_with snap-current
if check snap-first snap-first.raw "$d/snap.qcow2" --snapshot first; then
	snap=$(qcow2ctl list -n --raw -O snapshot "$dev")
	t_check "snap-first: list shows the snapshot ('$snap')" \
		test "$snap" = first
	done_with snap-first
fi
id=$(qcow2ctl snapshots -n --raw -O id,name "$d/snap.qcow2" |
	awk '$2 == "second" { print $1 }')
if [ -n "$id" ]; then
	check "snap-id-$id" snap-second.raw "$d/snap.qcow2" --snapshot "$id" &&
		done_with "snap-id-$id"
else
	t_fail "snapshots does not list 'second'"
fi
out=$(qcow2ctl attach -r --show --snapshot no-such-snapshot "$d/snap.qcow2" 2>&1)
if [ $? -ne 0 ]; then
	t_pass "an unknown snapshot is refused: $out"
else
	t_fail "an unknown snapshot attached: $out"
	qcow2ctl detach "$out"
fi

# External data file: its recorded name is relative to the current
# directory, as in QEMU.
cd "$d" || t_fail "cd $d"
check data-file datafile.raw "$d/datafile.qcow2" && done_with data-file
cd /

t_done
