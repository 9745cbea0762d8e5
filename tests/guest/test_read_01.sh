#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Every image of the matrix (tests/lib/images.sh): images expected to work
# are attached read-only and must read exactly as qemu-img's raw conversion;
# images expected to be refused must fail to attach with the expected reason,
# once through qcow2ctl's own header check and once with
# QCOW2CTL_NO_PRECHECK=1, so that the module's refusal is what is shown.
#
# Kernels before 6.2 have no formatted extack, so the module can only send a
# fixed summary there and logs the detailed reason; on those kernels a reason
# found in the kernel log instead of qcow2ctl's message is accepted. From 6.2
# on it must be in qcow2ctl's message.
. "$(dirname "$0")/common.sh"

[ -s "$QB_IMAGES/MANIFEST" ] || t_skip "no image matrix (MANIFEST)"
# Relative external data file names are relative to the current directory
# (as in QEMU); images.sh makes them in its output directory.
cd "$QB_IMAGES" || t_fail "cd $QB_IMAGES"

# Does this kernel have formatted extack messages (6.2 and later)?
kv=$(uname -r)
kmaj=${kv%%.*}
kmin=${kv#*.}
kmin=${kmin%%[!0-9]*}
fmt_extack=1
if [ "$kmaj" -lt 6 ] || { [ "$kmaj" -eq 6 ] && [ "$kmin" -lt 2 ]; }; then
	fmt_extack=0
fi

# refused NAME IMAGE TEXT MODE: the attach must fail and say TEXT
refused() {
	local name=$1 img=$2 text=$3 mode=$4 out rc dev

	kmsg "refuse $name $mode"
	if [ "$mode" = kernel ]; then
		out=$(QCOW2CTL_NO_PRECHECK=1 qcow2ctl attach -r --show "$img" 2>&1)
	else
		out=$(qcow2ctl attach -r --show "$img" 2>&1)
	fi
	rc=$?
	if [ "$rc" -eq 0 ]; then
		t_fail "$name ($mode): attach succeeded: $out"
		dev=$(echo "$out" | grep -o '/dev/qcow[0-9]*' | head -1)
		[ -n "$dev" ] && qcow2ctl detach "$dev"
		return
	fi
	if grep -qF -- "$text" <<<"$out"; then
		t_pass "$name ($mode): refused: $out"
	elif [ "$mode" = kernel ] && [ "$fmt_extack" = 0 ] &&
	     dmesg_since "refuse $name $mode" | grep -qF -- "$text"; then
		t_pass "$name ($mode): refused: $out; reason in the kernel log: $(dmesg_since "refuse $name $mode" | grep -F -- "$text" | tail -1)"
	else
		t_fail "$name ($mode): message does not contain '$text': $out"
		dmesg_since "refuse $name $mode" | tail -5 | sed 's/^/    kernel: /'
	fi
}

while IFS=$'\t' read -r -u 3 name img ref expect; do
	[ -n "$name" ] || continue
	img=$QB_IMAGES/$img
	case $expect in
	ok)
		if ! dev=$(attach_ro "$img"); then
			t_fail "$name: attach failed"
			continue
		fi
		if out=$(compare "$dev" "$QB_IMAGES/$ref" 2>&1); then
			t_pass "$name: ${out//$QB_IMAGES\//}"
		else
			t_fail "$name: ${out//$QB_IMAGES\//}"
		fi
		detach "$dev" || t_fail "$name: detach $dev"
		;;
	refuse:*)
		refused "$name" "$img" "${expect#refuse:}" precheck
		refused "$name" "$img" "${expect#refuse:}" kernel
		;;
	*)
		t_fail "$name: unknown expectation '$expect' in MANIFEST"
		;;
	esac
done 3< <(manifest_entries "${QB_READ_FILTER:-}")

t_done
