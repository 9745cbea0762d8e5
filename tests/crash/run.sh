#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/crash/run.sh [-n COUNT] [-k KVER] [-m kill|sysrq|mix] [-s SEED] [-L]:
# crash consistency of the write path. Each crash is one guest boot: a
# fresh image (64 MiB; clusters of 64 KiB, 4 KiB and 512 B in turn) is
# attached read-write and tests/crash/writer.py runs synchronous random
# writes, write-zeroes and discards on it, logging each operation before
# and after it to a file on the shared directory. A random 3-25 s after the
# first completed write, QEMU is killed with SIGKILL from the host (kill) or
# the guest reboots itself with sysrq b (sysrq); mix alternates, starting
# with kill. Then, on the host: qemu-img check must exit 0 or 3 (leaked
# clusters are allowed after a crash and counted; 2, corruption, fails),
# and every completed operation must read back (tests/crash/verify.py on
# qemu-img convert -O raw).
#
# -L checks the runner itself: a raw image on loop instead of qcow2blk
# (no qemu-img check), the same writer, crash and verification.
#
# Prints "PASS|FAIL|SKIP crash-N (...)" per crash, then
# "N passed, N failed[, N skipped]"; exits 1 if anything failed.
#
# The image lives on the host and reaches the guest over 9p, so a crash
# loses what the guest had not yet handed to QEMU, never the host's page
# cache: this tests the driver's write ordering and flushes, not the
# host's.
#
# Environment:
#   QB_GUEST_LOCK  lock file held around each boot (flock), default
#                  /tmp/qcow2blk-guest.lock; empty: take no lock (the caller
#                  holds it)
#   QB_NO_BUILD=1  use build/KVER/qcow2blk.ko and qcow2ctl as they are
#   QB_WORKDIR     where the scratch directory goes, default /var/tmp
#   QB_KEEP=1      keep it even when everything passed
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
count=1
kver=
mode=mix
seed=$((RANDOM * 32768 + RANDOM))
loop=0
while getopts n:k:m:s:L opt; do
	case $opt in
	n) count=$OPTARG ;;
	k) kver=$OPTARG ;;
	m) mode=$OPTARG ;;
	s) seed=$OPTARG ;;
	L) loop=1 ;;
	*) exit 2 ;;
	esac
done
case $mode in
kill | sysrq | mix) ;;
*) echo "run.sh: -m kill, sysrq or mix" >&2; exit 2 ;;
esac
if [ -z "$kver" ]; then
	kver=$(for k in /lib/modules/6.12.*; do
		[ -d "$k/build" ] && [ -r "/boot/vmlinuz-${k##*/}" ] &&
			echo "${k##*/}"
	done | sort -V | tail -n 1)
fi
lock=${QB_GUEST_LOCK-/tmp/qcow2blk-guest.lock}
blacklist=ahci,libahci,sr_mod,cdrom,sg,iTCO_wdt,iTCO_vendor_support,i6300esb
blacklist+=,kvm,kvm_amd,kvm_intel,ccp,intel_pmc_bxt,powernow_k8,lpc_ich
blacklist+=,i2c_i801,pcspkr,joydev,serio_raw

npass=0
nfail=0
nskip=0

result() {
	echo "$1 $2${3:+ ($3)}"
	case $1 in
	PASS) npass=$((npass + 1)) ;;
	FAIL) nfail=$((nfail + 1)) ;;
	SKIP) nskip=$((nskip + 1)) ;;
	esac
}

finish() {
	local line="$npass passed, $nfail failed"

	[ "$nskip" -ne 0 ] && line+=", $nskip skipped"
	if [ "$nfail" -eq 0 ] && [ "${QB_KEEP:-0}" != 1 ]; then
		rm -rf "$work"
	else
		echo "crash: logs kept in $work"
	fi
	echo "$line"
	[ "$nfail" -eq 0 ]
	exit
}

mkdir -p "${QB_WORKDIR:-/var/tmp}"
work=$(mktemp -d "${QB_WORKDIR:-/var/tmp}/qcow2blk-crash.XXXXXX")
stage=$work/stage
mkdir -p "$stage"
echo "crash: kernel $kver, $count crashes, mode $mode, seed $seed"

if [ ! -r "/boot/vmlinuz-$kver" ]; then
	result FAIL crash "no kernel /boot/vmlinuz-$kver"
	finish
fi
if [ "${QB_NO_BUILD:-0}" != 1 ]; then
	if ! make -C "$top" --no-print-directory module KVER="$kver" \
		>"$work/build.log" 2>&1 ||
	   ! make -C "$top" --no-print-directory user >>"$work/build.log" 2>&1; then
		tail -20 "$work/build.log"
		result FAIL crash-build "see $work/build.log"
		finish
	fi
fi
cp "$top/build/$kver/qcow2blk.ko" "$top/qcow2ctl/qcow2ctl" \
	"$top/tests/crash/writer.py" "$top/tests/crash/guest.sh" "$stage/" ||
	{ result FAIL crash-stage "missing module or qcow2ctl"; finish; }

# descendants PID: PID's descendant processes, one a line
descendants() {
	local p

	for p in $(ps -o pid= --ppid "$1"); do
		echo "$p"
		descendants "$p"
	done
}

# qemu_of PID: the QEMU process under PID
qemu_of() {
	local p

	for p in $(descendants "$1"); do
		case $(cat "/proc/$p/comm" 2>/dev/null) in
		qemu-system*) echo "$p"; return 0 ;;
		esac
	done
	return 1
}

RANDOM=$seed
clusters=(65536 4096 512)
for i in $(seq 1 "$count"); do
	dir=$work/crash-$i
	mkdir -p "$dir"
	cluster=${clusters[$(((i - 1) % ${#clusters[@]}))]}
	m=$mode
	if [ "$mode" = mix ]; then
		m=sysrq
		[ $((i % 2)) -eq 1 ] && m="kill"
	fi
	delay=$((3 + RANDOM % 23))
	wseed=$RANDOM
	img=$dir/crash.qcow2
	if [ "$loop" = 1 ]; then
		img=$dir/crash.img
		truncate -s 64M "$img"
	else
		qemu-img create -q -f qcow2 \
			-o "compat=1.1,cluster_size=$cluster" "$img" 64M
	fi

	boot=(vng --run "/boot/vmlinuz-$kver" --disable-kvm --cpus 2
		--memory 2G --rwdir="$work=$work"
		--append "modprobe.blacklist=$blacklist"
		--exec "bash $stage/guest.sh $stage $dir $wseed $cluster $m $delay")
	# The clock starts when the lock is ours: the time other guests held
	# it is not this boot's.
	# shellcheck disable=SC2016 # expanded by that bash
	boot=(bash -c 'date +%s >"$0" && exec "$@"' "$dir/t0"
		timeout -k 10 900 "${boot[@]}")
	[ -n "$lock" ] && boot=(flock -w 3600 "$lock" "${boot[@]}")
	# From /, output through a pipe (see tests/guest/run-guest.sh).
	(cd / && exec "${boot[@]}" </dev/null) 2>&1 |
		cat >"$dir/console.log" &
	job=$!

	# Wait for the first completed write (or for the guest to give up).
	t1=
	while kill -0 "$job" 2>/dev/null; do
		if grep -q '^D ' "$dir/log" 2>/dev/null; then
			t1=$(date +%s)
			break
		fi
		sleep 1
	done
	if [ -z "$t1" ]; then
		wait "$job"
		st=$(cat "$dir/status" 2>/dev/null)
		case $st in
		*"not supported"*)
			result SKIP "crash-$i" "the module cannot write: $st" ;;
		*)
			tail -20 "$dir/console.log"
			result FAIL "crash-$i" "no write completed: ${st:-no status}" ;;
		esac
		continue
	fi
	if [ "$m" = kill ]; then
		sleep "$delay"
		# The only QEMU among this script's descendants is this boot's.
		if q=$(qemu_of $$); then
			kill -9 "$q"
		else
			echo "crash-$i: no QEMU process found"
		fi
	fi
	wait "$job"
	t2=$(date +%s)
	t0=$(cat "$dir/t0")
	ops=$(grep -c '^D ' "$dir/log")
	grep -q '^X ' "$dir/log" && ops+=" (discard unsupported)"
	st=$(tr '\n' ';' <"$dir/status" 2>/dev/null)
	what="$m, ${cluster} B clusters, crash ${delay}s after the first write, $ops ops done, boot $((t1 - t0))s, total $((t2 - t0))s"
	if grep -q '^writer-exited' "$dir/status"; then
		result FAIL "crash-$i" "$what: the writer ended before the crash: $st"
		continue
	fi
	if [ "$loop" = 1 ]; then
		out="raw image, not checked"
		rc=0
	else
		out=$(qemu-img check "$img" 2>&1)
		rc=$?
	fi
	leaks=$(sed -n 's/^\([0-9]*\) leaked clusters.*/\1/p' <<<"$out")
	echo "$out" >"$dir/check.log"
	what+=", check exit $rc, ${leaks:-0} leaked"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
		echo "$out" | head -20
		result FAIL "crash-$i" "$what"
		continue
	fi
	if [ "$loop" = 1 ]; then
		cp "$img" "$dir/crash.raw"
	else
		qemu-img convert -f qcow2 -O raw "$img" "$dir/crash.raw"
	fi
	if v=$(python3 "$top/tests/crash/verify.py" "$dir/log" "$dir/crash.raw"); then
		result PASS "crash-$i" "$what; $(tail -1 <<<"$v")"
		rm -f "$dir/crash.raw"
	else
		echo "$v"
		result FAIL "crash-$i" "$what; data lost"
	fi
done
finish
