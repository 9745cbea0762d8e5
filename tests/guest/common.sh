# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Helpers for the guest tests, sourced by every tests/guest/test_*.sh.
#
# A test is a bash script run by inside.sh, one process per test. It reports
# sub-checks with t_pass/t_fail, may give up early with t_skip, and ends with
# t_done, whose exit status inside.sh turns into one PASS, FAIL or SKIP line:
#
#   0   every sub-check passed
#   1   at least one sub-check failed (details are in the log above it)
#   77  skipped: something the test needs is missing; the reason is printed
#
# Environment set by inside.sh (all absolute paths):
#   QB_QCOW2CTL  qcow2ctl binary        QB_RAWCMP  rawcmp binary or empty
#   QB_IMAGES    image matrix with its MANIFEST (tests/lib/images.sh)
#   QB_DATA      files prepared on the host (ext4 image, checksums)
#   QB_SCRATCH   a guest-local tmpfs directory the test may use
#   QB_KO        the module's .ko file
#
# Devices and mounts made through these helpers are undone when the test
# exits, however it exits, so one broken test does not leave the module
# busy for the next one.

QB_SKIP=77
qb_failures=0
qb_checks=0
qb_mounts=()
qb_name=$(basename "$0" .sh)

# ---- reporting ---------------------------------------------------------

t_log() {
	printf '  %s\n' "$*"
}

t_pass() {
	qb_checks=$((qb_checks + 1))
	printf '  ok: %s\n' "$*"
}

t_fail() {
	qb_checks=$((qb_checks + 1))
	qb_failures=$((qb_failures + 1))
	printf '  FAIL: %s\n' "$*"
}

# t_check DESCRIPTION CMD...: run CMD, a sub-check passing on exit status 0
t_check() {
	local what=$1

	shift
	if "$@"; then
		t_pass "$what"
	else
		t_fail "$what (exit $?: $*)"
	fi
}

# t_check_fails DESCRIPTION CMD...: a sub-check passing when CMD fails
t_check_fails() {
	local what=$1

	shift
	if "$@"; then
		t_fail "$what (unexpectedly succeeded: $*)"
	else
		t_pass "$what"
	fi
}

t_skip() {
	printf '  skip: %s\n' "$*"
	exit "$QB_SKIP"
}

# t_done: the test's exit status; a test that checked nothing has failed.
t_done() {
	if [ "$qb_checks" -eq 0 ]; then
		printf '  FAIL: %s ran no checks\n' "$qb_name"
		exit 1
	fi
	if [ "$qb_failures" -ne 0 ]; then
		printf '  %d of %d checks failed\n' "$qb_failures" "$qb_checks"
		exit 1
	fi
	exit 0
}

# kmsg TEXT: a marker in the kernel log, to find a test's own messages.
kmsg() {
	echo "qcow2blk-test: $*" >/dev/kmsg 2>/dev/null || true
}

# dmesg_since MARKER: kernel log lines after the last line containing MARKER
dmesg_since() {
	dmesg | awk -v m="qcow2blk-test: $1" \
		'index($0, m) { buf = ""; next } { buf = buf $0 "\n" } END { printf "%s", buf }'
}

# ---- devices -------------------------------------------------------------

qcow2ctl() {
	"$QB_QCOW2CTL" "$@"
}

# attach_ro IMAGE [OPTION...]: attach read-only, print the device name.
# (Callers run it in $(...), a subshell, so it cannot record the device;
# qb_cleanup finds what the test attached by listing.)
attach_ro() {
	local img=$1 dev

	shift
	dev=$(qcow2ctl attach -r --show "$@" "$img") || return 1
	case $dev in
	/dev/qcow[0-9]*) ;;
	*)
		echo "attach printed '$dev', not a device name" >&2
		return 1
		;;
	esac
	# devtmpfs creates the node with the disk. udev then opens the new
	# disk to probe it (blkid); until it is done, a detach would find the
	# device open and be refused, so let it finish first.
	settle
	wait_for_dev "$dev" || return 1
	echo "$dev"
}

# attach_rw IMAGE [OPTION...]: attach read-write, print the device name
attach_rw() {
	local img=$1 dev

	shift
	dev=$(qcow2ctl attach --show "$@" "$img") || return 1
	case $dev in
	/dev/qcow[0-9]*) ;;
	*)
		echo "attach printed '$dev', not a device name" >&2
		return 1
		;;
	esac
	settle
	wait_for_dev "$dev" || return 1
	echo "$dev"
}

# need_write IMAGE: skip the test when the module refuses every read-write
# attach (a module without the write path); IMAGE is attached and detached
# again, so pass one the test may change.
need_write() {
	local out dev

	if out=$(qcow2ctl attach --show "$1" 2>&1); then
		dev=$(grep -o '/dev/qcow[0-9]*' <<<"$out" | head -1)
		settle
		[ -n "$dev" ] && qcow2ctl detach "$dev"
		return 0
	fi
	case $out in
	*"not supported"*)
		t_skip "the module cannot write: $out" ;;
	esac
	t_fail "read-write attach of $1: $out"
	t_done
}

# attach_refused DESCRIPTION PATTERN FILE... -- ATTACH-ARGS...: a sub-check
# passing when "qcow2ctl attach ATTACH-ARGS" fails with a message matching
# the extended regular expression PATTERN (any message when empty) and
# leaves every FILE byte-identical (sha256)
attach_refused() {
	local what=$1 re=$2 files=() out s0

	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		files+=("$1")
		shift
	done
	shift
	s0=$(sha256sum "${files[@]}" 2>&1)
	if out=$(qcow2ctl attach --show "$@" 2>&1); then
		t_fail "$what: attached ($out)"
		settle
		qcow2ctl detach "$out"
	elif [ "$s0" != "$(sha256sum "${files[@]}" 2>&1)" ]; then
		t_fail "$what: refused ($out), but a file changed"
	elif [ -n "$re" ] && ! grep -qE -- "$re" <<<"$out"; then
		t_fail "$what: refused, but not as expected: $out"
	else
		t_pass "$what: $(tail -1 <<<"$out")"
	fi
}

# qio_script DEV SCRIPT: run the qemu-io commands of SCRIPT (one a line) on
# block device DEV with direct I/O, so each command is one request as
# written; fails if any command failed, printing qemu-io's complaint.
qio_script() {
	local c args=() log

	while IFS= read -r c; do
		[ -n "$c" ] && args+=(-c "$c")
	done <"$2"
	if ! log=$(qemu-io -f raw -t none "${args[@]}" "$1" 2>&1) ||
	   grep -qiE 'fail|error' <<<"$log"; then
		grep -iE 'fail|error' <<<"$log" | head -5
		return 1
	fi
}

# ro_state DEV: 1 if the kernel has DEV read-only, else 0
ro_state() {
	blockdev --getro "$1"
}

settle() {
	command -v udevadm >/dev/null && udevadm settle --timeout=30
	return 0
}

# wait_for_dev DEV: DEV exists as a block device (up to 10 s)
wait_for_dev() {
	local i

	for i in $(seq 1 100); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	echo "$1 did not appear" >&2
	return 1
}

# detach DEV: after udev's probes of DEV (an open device is not detached)
detach() {
	settle
	qcow2ctl detach "$1"
}

# attached DEV: DEV is in qcow2ctl list
attached() {
	qcow2ctl list -n --raw -O name | grep -qx "$1"
}

# sysfs_attr DEV NAME: print /sys/block/qcowN/qcow2/NAME, fail if absent
sysfs_attr() {
	local f

	f=/sys/block/$(basename "$1")/qcow2/$2
	[ -r "$f" ] || return 1
	cat "$f"
}

# Above this virtual size the reference's holes are not read over 9p (which
# cannot skip them): run-guest.sh saves their map on the host, and rawcmp -m
# reads every byte of the device, checking holes as zeros. Without rawcmp,
# sparsecmp.py compares data in full and only probes holes.
QB_FULL_COMPARE_BYTES=${QB_FULL_COMPARE_BYTES:-$((1 << 30))}

# compare DEV REFERENCE: same size and bytes; prints one line saying so
compare() {
	local size

	size=$(stat -L -c %s "$2") || return 2
	if [ "$size" -gt "$QB_FULL_COMPARE_BYTES" ] && [ -n "$QB_RAWCMP" ] &&
	   [ -f "$2.map" ]; then
		"$QB_RAWCMP" -m "$2.map" "$1" "$2"
	elif [ "$size" -gt "$QB_FULL_COMPARE_BYTES" ]; then
		local map=()

		[ -f "$2.map" ] && map=(--map "$2.map")
		python3 "$(dirname "${BASH_SOURCE[0]}")/sparsecmp.py" \
			"${map[@]}" "$1" "$2"
	elif [ -n "$QB_RAWCMP" ]; then
		"$QB_RAWCMP" "$1" "$2"
	else
		cmp "$1" "$2" && echo "$1 $2 identical (cmp)"
	fi
}

# mount_track DEV DIR OPTIONS: mount, unmounted at exit
mount_track() {
	mkdir -p "$2"
	mount -o "$3" "$1" "$2" || return 1
	qb_mounts+=("$2")
}

# Undo what the test left behind, newest first.
qb_cleanup() {
	local i dev

	for ((i = ${#qb_mounts[@]} - 1; i >= 0; i--)); do
		mountpoint -q "${qb_mounts[i]}" && umount "${qb_mounts[i]}"
	done
	settle
	for dev in $(qcow2ctl list -n --raw -O name 2>/dev/null); do
		grep -qxF -- "$dev" <<<"$qb_devs_before" && continue
		echo "  cleanup: detaching $dev"
		qcow2ctl detach "$dev"
	done
	return 0
}
trap qb_cleanup EXIT
# Killed by inside.sh's timeout: still detach and unmount on the way out.
trap 'exit 143' TERM INT

# manifest_entries [FILTER]: MANIFEST lines, optionally only names matching
# the extended regular expression FILTER
manifest_entries() {
	if [ -n "${1:-}" ]; then
		awk -F '\t' -v re="$1" '$1 ~ re' "$QB_IMAGES/MANIFEST"
	else
		cat "$QB_IMAGES/MANIFEST"
	fi
}

# Every test needs the module's control tool.
[ -x "$QB_QCOW2CTL" ] || t_skip "qcow2ctl not found at '$QB_QCOW2CTL'"
# Devices attached before the test are not the test's to clean up.
qb_devs_before=$(qcow2ctl list -n --raw -O name 2>/dev/null)
