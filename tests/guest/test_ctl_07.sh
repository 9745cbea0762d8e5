#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# One slow image file does not stall the control of other devices: with an
# image on a device-mapper delay target (every I/O waits 800 ms), a
# read-only attach of it, and then the detach of a read-write device on it
# (its final flush), run in the background while qcow2ctl list, and an
# attach and detach of a fast image, are timed. No control call may take
# longer than 3 s meanwhile (the slow operation takes several times that);
# the slow attach and detach succeed and the image is clean.
. "$(dirname "$0")/common.sh"

for c in qemu-img qemu-io losetup dmsetup blockdev; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done
modprobe loop 2>/dev/null
modprobe dm-delay 2>/dev/null
grep -qw delay <(dmsetup targets 2>/dev/null) || t_skip "no dm-delay target"

work=$QB_SCRATCH/ctl07
mkdir -p "$work"
cd "$work" || t_done
loop=
cleanup07() {
	qb_cleanup
	dmsetup remove qb-slow 2>/dev/null
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
}
trap cleanup07 EXIT

truncate -s 256M slow.raw
loop=$(losetup --show -f slow.raw) || { t_fail "losetup"; t_done; }
qemu-img create -q -f qcow2 "$loop" 128M
qemu-io -f qcow2 -c 'write -P 0x42 0 1M' "$loop" >/dev/null
echo "0 $(blockdev --getsz "$loop") delay $loop 0 800" |
	dmsetup create --noudevsync qb-slow || { t_fail "dmsetup create"; t_done; }
slow=/dev/mapper/qb-slow
[ -b "$slow" ] || { settle; [ -b "$slow" ] || { t_fail "no $slow"; t_done; }; }
qemu-img create -q -f qcow2 fast.qcow2 64M

now() { date +%s%N; }

# timed CMD...: run CMD, print its milliseconds on fd 3
timed() {
	local t0 ret

	t0=$(now)
	"$@"
	ret=$?
	echo $((($(now) - t0) / 1000000)) >&3
	return $ret
}

# probe_while PID: while PID runs, time qcow2ctl list, an attach and a
# detach of a fast image (each call on its own); print the slowest call in
# ms and how many rounds ran
probe_while() {
	local pid=$1 worst=0 rounds=0 dev ms

	while kill -0 "$pid" 2>/dev/null; do
		{
			timed qcow2ctl list >/dev/null
			if dev=$(timed qcow2ctl attach --show -r fast.qcow2); then
				settle
				timed qcow2ctl detach "$dev"
			fi
		} 3>"$work/times"
		while read -r ms; do
			[ "$ms" -gt "$worst" ] && worst=$ms
		done <"$work/times"
		rounds=$((rounds + 1))
		sleep 0.2
	done
	echo "$worst $rounds"
}

# slow WHAT CMD...: run CMD in the background while probe_while times
# control calls; CMD must succeed, and control must have gone on
slow() {
	local what=$1 t0 pid rc worst rounds took
	shift

	t0=$(now)
	"$@" >"$work/slow.out" 2>"$work/slow.err" &
	pid=$!
	read -r worst rounds < <(probe_while "$pid")
	wait "$pid"
	rc=$?
	took=$((($(now) - t0) / 1000000))
	t_log "slow $what: $took ms; meanwhile $rounds control rounds, slowest $worst ms"
	t_check "the slow $what succeeded ($(cat "$work/slow.err"))" test "$rc" = 0
	t_check "control went on during the slow $what" \
		test "$rounds" -ge 2 -a "$worst" -lt 3000
}

slow attach qcow2ctl attach --show -r "$slow"
dev=$(cat "$work/slow.out")
[ -n "$dev" ] && detach "$dev"

dev=$(attach_rw "$slow") || { t_fail "read-write attach of $slow"; t_done; }
# Scattered writes: the final flush has L2 tables and refcounts to write.
qemu-io -f raw -t none -c 'write -P 0x43 8M 4k' -c 'write -P 0x44 40M 4k' \
	-c 'write -P 0x45 100M 4k' "$dev" >/dev/null
settle
slow detach qcow2ctl detach "$dev"
dmsetup remove qb-slow
t_check "the image on the slow device is clean" qemu-img check -q "$loop"
t_check "the writes are there" qemu-io -r -f qcow2 -c 'read -P 0x44 40M 4k' \
	-c 'read -P 0x42 0 1M' "$loop"

t_done
