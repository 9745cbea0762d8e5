#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# inside.sh STAGE RESULTS [TEST...]: the guest half of the guest suite, run
# by run-guest.sh inside a virtme-ng guest as root.
#
# STAGE holds what run-guest.sh prepared on the host: qcow2blk.ko, qcow2ctl,
# rawcmp, a copy of tests/guest, the image matrix (images/, with MANIFEST)
# and data/ (the ext4 image). RESULTS is a directory shared with the host.
#
# Loads the module, runs each tests/guest/test_*.sh (or the named ones),
# checks the kernel log for oopses and warnings, unloads the module, and
# writes RESULTS/results (one "PASS|FAIL|SKIP name" line per item),
# RESULTS/log (everything printed), RESULTS/dmesg and RESULTS/done.
set -u

stage=${1:?usage: inside.sh STAGE RESULTS [TEST...]}
results=${2:?usage: inside.sh STAGE RESULTS [TEST...]}
shift 2

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
guestdir=$stage/guest
: >"$results/results"
: >"$results/log"
exec > >(tee -a "$results/log") 2>&1

# Per-test limit inside the guest; run-guest.sh has its own for the boot.
test_timeout=${QB_TEST_TIMEOUT:-900}
# What a clean kernel log must not contain once the module is loaded.
bad_kmsg='(^|[^A-Za-z_])BUG|Oops|WARNING|hung task|hung_task|blocked for more than|lockdep|KASAN|UBSAN|general protection|Call Trace'

npass=0
nfail=0
nskip=0

result() {
	echo "$1 $2" >>"$results/results"
	echo "$1 $2${3:+ ($3)}"
	case $1 in
	PASS) npass=$((npass + 1)) ;;
	FAIL) nfail=$((nfail + 1)) ;;
	SKIP) nskip=$((nskip + 1)) ;;
	esac
}

kmsg() {
	echo "qcow2blk-test: $*" >/dev/kmsg 2>/dev/null || true
}

# Kernel log after the last marker line "qcow2blk-test: $1"
dmesg_since() {
	dmesg | awk -v m="qcow2blk-test: $1" \
		'index($0, m) { buf = ""; next } { buf = buf $0 "\n" } END { printf "%s", buf }'
}

echo "== guest $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 / 1024 " MiB"}' /proc/meminfo)"

export QB_QCOW2CTL=$stage/qcow2ctl
export QB_RAWCMP=
[ -x "$stage/rawcmp" ] && QB_RAWCMP=$stage/rawcmp
# Resolved: run-guest.sh may link it to a shared matrix, and the kernel
# reports image paths with links resolved.
QB_IMAGES=$(cd "$stage/images" && pwd -P)
export QB_IMAGES
export QB_DATA=$stage/data
export QB_KO=$stage/qcow2blk.ko
export QB_SCRATCH=/run/qcow2blk-scratch
# Shared with the host: tests may leave files there for a look afterwards.
export QB_RESULTS=$results

# A guest-local tmpfs: the shared directories are 9p, whose O_DIRECT
# semantics are not a local file system's.
mkdir -p "$QB_SCRATCH"
mount -t tmpfs -o size=1536m qb-scratch "$QB_SCRATCH"

if [ $# -eq 0 ]; then
	tests=()
	for t in "$guestdir"/test_*.sh; do
		[ -e "$t" ] && tests+=("$(basename "$t" .sh)")
	done
else
	tests=("$@")
fi

# ---- load -------------------------------------------------------------

kmsg "insmod"
loaded=0
if [ ! -f "$QB_KO" ]; then
	result FAIL insmod "no module at $QB_KO: was 'make module KVER=$(uname -r)' run?"
elif ! out=$(insmod "$QB_KO" 2>&1); then
	echo "$out"
	dmesg | tail -20
	result FAIL insmod "$out"
else
	loaded=1
	result PASS insmod
fi

# ---- tests ------------------------------------------------------------

for name in "${tests[@]}"; do
	name=${name%.sh}
	file=$guestdir/$name.sh
	if [ "$loaded" = 0 ]; then
		result SKIP "$name" "module not loaded"
		continue
	fi
	if [ ! -f "$file" ]; then
		result FAIL "$name" "no such test $file"
		continue
	fi
	echo "== $name"
	kmsg "begin $name"
	start=$(date +%s)
	(cd "$guestdir" && timeout -k 10 "$test_timeout" bash "$file")
	rc=$?
	secs=$(($(date +%s) - start))
	kmsg "end $name"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "  $name: timed out after ${test_timeout}s"
	fi
	left=$("$QB_QCOW2CTL" list -n --raw -O name 2>&1)
	if [ -n "$left" ]; then
		echo "  $name left devices attached: $left"
		"$QB_QCOW2CTL" detach -a
		[ "$rc" -eq 0 ] && rc=1
	fi
	bad=$(dmesg_since "begin $name" | grep -E "$bad_kmsg")
	if [ -n "$bad" ]; then
		echo "  kernel log during $name:"
		echo "$bad" | head -40 | sed 's/^/    /'
		[ "$rc" -eq 0 ] && rc=1
	fi
	case $rc in
	0) result PASS "$name" "${secs}s" ;;
	77) result SKIP "$name" "${secs}s" ;;
	*) result FAIL "$name" "exit $rc, ${secs}s" ;;
	esac
done

# ---- unload and final checks --------------------------------------------

if [ "$loaded" = 1 ]; then
	left=$("$QB_QCOW2CTL" list -n --raw -O name 2>&1)
	if [ -n "$left" ]; then
		echo "devices left attached after the tests:"
		echo "$left"
		result FAIL leftover-devices
		"$QB_QCOW2CTL" detach -a
	fi
	kmsg "rmmod"
	if out=$(rmmod qcow2blk 2>&1); then
		result PASS rmmod
	else
		echo "$out"
		result FAIL rmmod "$out"
	fi
	bad=$(dmesg_since insmod | grep -E "$bad_kmsg")
	if [ -n "$bad" ]; then
		echo "kernel log since insmod has oopses or warnings:"
		echo "$bad" | head -60 | sed 's/^/    /'
		result FAIL dmesg-clean
	else
		result PASS dmesg-clean
	fi
fi

dmesg >"$results/dmesg"
umount "$QB_SCRATCH" 2>/dev/null
echo "== guest: $npass passed, $nfail failed, $nskip skipped"
echo "done" >"$results/done"
sync
[ "$nfail" -eq 0 ]
