#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest.sh STAGE DIR SEED CLUSTER MODE DELAY: the guest half of one crash
# test (tests/crash/run.sh). Loads the module, attaches DIR/crash.qcow2
# read-write (or DIR/crash.img with loop, for run.sh -L) and runs
# writer.py on it, logging to DIR/log. MODE "kill": the
# host kills QEMU; MODE "sysrq": DELAY seconds after the first completed
# write the guest reboots itself at once (sysrq b, no sync). DIR/status
# says how far it got.
set -u

stage=$1 dir=$2 seed=$3 cluster=$4 mode=$5 delay=$6
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

status() {
	echo "$*" >>"$dir/status"
}

if [ -f "$dir/crash.img" ]; then
	# The runner's self-check (run.sh -L): a raw image on loop.
	modprobe loop 2>/dev/null
	if ! dev=$(losetup -f --show --direct-io=on "$dir/crash.img" 2>&1); then
		status "losetup-failed $dev"
		exit 1
	fi
else
	if ! out=$(insmod "$stage/qcow2blk.ko" 2>&1); then
		status "insmod-failed $out"
		exit 1
	fi
	if ! dev=$("$stage/qcow2ctl" attach --show "$dir/crash.qcow2" 2>&1); then
		status "attach-failed $dev"
		exit 1
	fi
fi
udevadm settle --timeout=30 2>/dev/null
status "attached $dev"

if [ "$mode" = sysrq ]; then
	echo 1 >/proc/sys/kernel/sysrq
	(
		until grep -q '^D ' "$dir/log" 2>/dev/null; do
			sleep 0.2
		done
		sleep "$delay"
		echo "sysrq-b" >>"$dir/status"
		echo b >/proc/sysrq-trigger
	) &
fi
python3 "$stage/writer.py" "$dev" "$dir/log" "$seed" "$cluster" 900
status "writer-exited $?"
