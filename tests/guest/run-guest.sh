#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run-guest.sh KVER [TEST...]: build qcow2blk for KVER, prepare its inputs on
# the host, boot KVER in a virtme-ng guest under TCG and run
# tests/guest/inside.sh there (all tests/guest/test_*.sh, or the named ones).
#
# Prints one "PASS|FAIL|SKIP KVER/name" line per item, then
# "N passed, N failed[, N skipped]"; exits 1 if anything failed.
#
# Environment:
#   QB_GUEST_TIMEOUT  seconds for the whole guest (boot + tests), default 3600
#                     (the write tests add about 11 minutes to a full run)
#   QB_IMAGES         an existing image matrix (a directory with MANIFEST from
#                     tests/lib/images.sh) to use instead of building one
#   QB_WORKDIR        where the scratch directory goes, default /var/tmp
#   QB_KEEP=1         keep the scratch directory even when everything passed
#   QB_NO_BUILD=1     use build/KVER/qcow2blk.ko and userspace as they are
#   QB_CRASH_COUNT    crash tests (tests/crash/run.sh, one boot each) after a
#                     run of all tests, default 2; 0 for none
#
# What we found running virtme-ng 1.35 (Debian trixie) with TCG here:
#  - KVM must stay off: --disable-kvm. vng then picks "-machine q35" (not
#    microvm), and the guest boots the distribution kernel with a small
#    initramfs virtme builds from its modules (virtio, 9p, overlay).
#  - virtiofsd is not installed, so the root file system is the host's /
#    over 9p, read-only, with overlays from virtme-init on /etc, /lib, /home,
#    /opt, /srv, /usr, /var and /tmp. /tmp in the guest is therefore an
#    overlay on the host's /tmp, not a tmpfs; /var/tmp, /var/log, /var/cache
#    are fresh tmpfs mounts that hide the host's directories, so a host
#    directory under /var/tmp is only visible through --rwdir/--rodir.
#  - --rwdir=PATH with a host path under /var/tmp fails ("path must be
#    defined inside a valid overlay") unless vng runs from /: virtme resolves
#    the guest path relative to the working directory. The explicit form
#    --rwdir=GUESTPATH=HOSTPATH works from anywhere; we use it. Shared
#    directories are 9p too (trans=virtio, cache=none).
#  - /dev is devtmpfs: /dev/qcowN and /dev/loopN appear with the disk. udev
#    runs too (virtme-init starts systemd-udevd, triggers coldplug and waits
#    for it to settle: it needs udev for /dev/virtio-ports/*).
#  - Boot to the first command takes 55-90 s (kernel ~7 s; virtme-init's
#    overlays and systemd-tmpfiles ~20 s; udev coldplug 20-30 s, mostly
#    loading modules for q35's AHCI, CD-ROM, watchdog and KVM, which
#    modprobe.blacklist below avoids), slower when the host is busy. Both
#    kernels behave the same; 6.12 is a few seconds slower. So all tests of
#    one kernel share one boot.
#  - 9p has no SEEK_DATA/SEEK_HOLE: a sparse file on the host reads as all
#    data in the guest, so a 64 GiB reference would be read whole (over an
#    hour under TCG). The host saves the data extents of large references
#    (sparsecmp.py --save-map) and the guest compares with those.
#  - vng's guest output goes through QEMU chardevs opened on
#    /proc/self/fd/1 and 2: if those are regular files they are reopened
#    and truncated, so vng's output must go to a pipe (tee here).
#  - The guest runs with virtme-init's PATH; /usr/bin/python3 is the host's.
set -u

kver=${1:?usage: run-guest.sh KVER [TEST...]}
shift
top=$(cd "$(dirname "$0")/../.." && pwd)
kernel=/boot/vmlinuz-$kver
guest_timeout=${QB_GUEST_TIMEOUT:-3600}

# q35 devices the tests never use; loading their drivers costs boot time.
blacklist=ahci,libahci,sr_mod,cdrom,sg,iTCO_wdt,iTCO_vendor_support,i6300esb
blacklist+=,kvm,kvm_amd,kvm_intel,ccp,intel_pmc_bxt,powernow_k8,lpc_ich
blacklist+=,i2c_i801,pcspkr,joydev,serio_raw

npass=0
nfail=0
nskip=0

result() {
	echo "$1 $kver/$2${3:+ ($3)}"
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
		echo "run-guest: logs kept in $work"
	fi
	echo "$line"
	[ "$nfail" -eq 0 ]
	exit
}

# step NAME LOG CMD...: run a host-side preparation step quietly; show the
# end of its log if it fails.
step() {
	local name=$1 log=$2

	shift 2
	echo "run-guest: $name"
	if ! "$@" >"$log" 2>&1; then
		tail -40 "$log"
		result FAIL "$name" "see $log"
		return 1
	fi
}

mkdir -p "${QB_WORKDIR:-/var/tmp}"
work=$(mktemp -d "${QB_WORKDIR:-/var/tmp}/qcow2blk-guest.XXXXXX")
stage=$work/stage
results=$work/results
mkdir -p "$stage/data" "$results"

if [ ! -r "$kernel" ] || [ ! -d "/lib/modules/$kver" ]; then
	result FAIL boot "no kernel $kernel or /lib/modules/$kver"
	finish
fi
command -v vng >/dev/null || { result FAIL boot "vng not installed"; finish; }

# ---- build ------------------------------------------------------------

if [ "${QB_NO_BUILD:-0}" != 1 ]; then
	step build-module "$work/build-module.log" \
		make -C "$top" --no-print-directory module KVER="$kver" || finish
	step build-user "$work/build-user.log" \
		make -C "$top" --no-print-directory user || finish
fi

# ---- inputs, made on the host at native speed ----------------------------

cp "$top/build/$kver/qcow2blk.ko" "$stage/" 2>/dev/null
cp "$top/qcow2ctl/qcow2ctl" "$stage/" 2>/dev/null
cp "$top/build/user/rawcmp" "$stage/" 2>/dev/null
cp -r "$top/tests/guest" "$stage/guest"
# Shell helpers shared with the host tests (tests/lib/bitmaps.sh).
cp -r "$top/tests/lib" "$stage/lib"

if [ -n "${QB_IMAGES:-}" ] && [ -f "$QB_IMAGES/MANIFEST" ]; then
	ln -s "$(cd "$QB_IMAGES" && pwd)" "$stage/images"
elif [ -f "$top/tests/lib/images.sh" ]; then
	step images "$work/images.log" \
		bash "$top/tests/lib/images.sh" "$stage/images" || finish
else
	mkdir -p "$stage/images"
	: >"$stage/images/MANIFEST"
fi
images=$(cd "$stage/images" && pwd -P)

# Data extents of large references, for sparsecmp.py in the guest: the
# guest sees them over 9p, which cannot tell holes from data.
for ref in "$images"/*.raw; do
	[ -f "$ref" ] || continue
	[ "$(stat -c %s "$ref")" -gt "${QB_FULL_COMPARE_BYTES:-$((1 << 30))}" ] ||
		continue
	[ "$ref.map" -nt "$ref" ] ||
		python3 "$top/tests/guest/sparsecmp.py" --save-map "$ref" ||
		result FAIL images "cannot map $ref"
done

# An ext4 file system with known files, made by mkfs.ext4 -d and converted
# by qemu-img: what a user's disk image looks like.
make_fs_image() {
	local d=$stage/data src=$stage/data/src

	mkdir -p "$src/dir/sub"
	echo "hello from a qcow2 image, read by qcow2blk" >"$src/hello.txt"
	head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$src/dir/random.bin"
	seq 1 200000 >"$src/dir/sub/numbers.txt"
	(cd "$src" && find . -type f -print0 | sort -z |
		xargs -0 sha256sum) >"$d/SHA256SUMS"
	truncate -s 64M "$d/fs.raw"
	mkfs.ext4 -q -F -L qb-test -d "$src" "$d/fs.raw"
	qemu-img convert -f raw -O qcow2 -o compat=1.1 "$d/fs.raw" \
		"$d/fs.qcow2"
	rm -rf "$d/fs.raw" "$src"
}
step fs-image "$work/fs-image.log" make_fs_image || finish

# Backing chains, internal snapshots and external data files for
# test_chain_01, each with qemu-img's raw conversion as the reference.
make_chain_images() (
	d=$stage/data/chain
	set -e
	mkdir -p "$d/sub"
	cd "$d"
	qemu-img create -q -f qcow2 -o compat=1.1 base.qcow2 16M
	qemu-io -f qcow2 -c "write -P 0x11 0 16M" base.qcow2 >/dev/null
	# mid names base relative to its own directory, top names mid likewise.
	qemu-img create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/mid.qcow2
	qemu-io -f qcow2 -c "write -P 0x22 1M 2M" \
		-c "write -z 4M 1M" -c "write -P 0x23 15M 4k" \
		sub/mid.qcow2 >/dev/null
	qemu-img create -q -f qcow2 -o cluster_size=4096 -b sub/mid.qcow2 \
		-F qcow2 top.qcow2 24M
	qemu-io -f qcow2 -c "write -P 0x33 2M 64k" -c "write -z 1536k 4k" \
		-c "write -P 0x34 20M 1M" top.qcow2 >/dev/null
	qemu-img convert -O raw top.qcow2 top.raw
	qemu-img convert -O raw sub/mid.qcow2 mid.raw

	# A raw base under a qcow2 overlay.
	head -c $((8 * 1024 * 1024)) /dev/urandom >rawbase.img
	qemu-img create -q -f qcow2 -b rawbase.img -F raw over-raw.qcow2
	qemu-io -f qcow2 -c "write -P 0x44 3M 100k" over-raw.qcow2 >/dev/null
	qemu-img convert -O raw over-raw.qcow2 over-raw.raw

	# Internal snapshots: the current state and two snapshots.
	qemu-img create -q -f qcow2 -o compat=1.1 snap.qcow2 16M
	qemu-io -f qcow2 -c "write -P 0x51 0 4M" snap.qcow2 >/dev/null
	qemu-img snapshot -c first snap.qcow2
	qemu-io -f qcow2 -c "write -P 0x52 1M 1M" -c "write -z 3M 512k" \
		snap.qcow2 >/dev/null
	qemu-img snapshot -c second snap.qcow2
	qemu-io -f qcow2 -c "write -P 0x53 8M 2M" snap.qcow2 >/dev/null
	qemu-img convert -O raw snap.qcow2 snap-current.raw
	qemu-img convert -l snapshot.name=first -O raw snap.qcow2 snap-first.raw
	qemu-img convert -l snapshot.name=second -O raw snap.qcow2 \
		snap-second.raw

	# An external data file.
	qemu-img create -q -f qcow2 -o compat=1.1,data_file=datafile.data \
		datafile.qcow2 16M
	qemu-io -f qcow2 -c "write -P 0x61 0 1M" -c "write -P 0x62 9M 3M" \
		-c "write -z 512k 64k" datafile.qcow2 >/dev/null
	qemu-img convert -O raw datafile.qcow2 datafile.raw
)
step chain-images "$work/chain-images.log" make_chain_images || finish
step layer-images "$work/layer-images.log" bash "$top/tests/lib/images-layers.sh" "$stage/data/layers" || finish

# Images and QEMU references for the write tests (test_write_*), made only
# when one of them is to run.
want_write=0
[ $# -eq 0 ] && want_write=1
for t in "$@"; do
	case $t in test_write_*) want_write=1 ;; esac
done
if [ "$want_write" = 1 ] && [ -f "$top/tests/lib/images-write.sh" ]; then
	step write-images "$work/write-images.log" \
		bash "$top/tests/lib/images-write.sh" "$stage/data/write" || finish
fi

# ---- boot -------------------------------------------------------------

vng_args=(--run "$kernel" --disable-kvm --cpus 2 --memory 4G
	--rwdir="$work=$work" --append "modprobe.blacklist=$blacklist")
[ "$images" != "$stage/images" ] && vng_args+=(--rodir="$images=$images")

echo "run-guest: booting $kver under TCG (timeout ${guest_timeout}s)"
start=$(date +%s)
# From /: the guest's working directory is the host's, and / always exists.
# One TCG guest at a time on this machine: perf/ and crash runs take the
# same lock.
(cd / && flock /tmp/qcow2blk-guest.lock \
	timeout -k 30 "$guest_timeout" vng "${vng_args[@]}" \
	--exec "bash $stage/guest/inside.sh $stage $results $*" </dev/null) \
	2>&1 | tee "$work/console.log"
rc=${PIPESTATUS[0]}
echo "run-guest: guest of $kver ran $(($(date +%s) - start))s, exit $rc"

# ---- results ----------------------------------------------------------

while read -r status name; do
	case $status in
	PASS | FAIL | SKIP) result "$status" "$name" ;;
	esac
done <"$results/results" 2>/dev/null

# A few crash tests (tests/crash/run.sh, one boot each) after a full run:
# QB_CRASH_COUNT of them, default 2; 0 for none. Each boot takes the guest
# lock again (the main guest's was released), so no other guest (a perf run)
# shares the host with them.
ncrash=${QB_CRASH_COUNT:-2}
if [ $# -eq 0 ] && [ "$ncrash" -gt 0 ] && [ -f "$top/tests/crash/run.sh" ]; then
	echo "run-guest: $ncrash crash tests"
	QB_NO_BUILD=1 QB_WORKDIR=$work \
		bash "$top/tests/crash/run.sh" -n "$ncrash" -k "$kver" \
		>"$work/crash.log" 2>&1
	while read -r status name rest; do
		rest=${rest#(}
		case $status in
		PASS | FAIL | SKIP) result "$status" "$name" "${rest%)}" ;;
		esac
	done <"$work/crash.log"
fi

if [ ! -f "$results/done" ]; then
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		result FAIL guest "timed out after ${guest_timeout}s"
	else
		result FAIL guest "ended before inside.sh finished (exit $rc)"
	fi
elif [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then
	result FAIL guest "exit $rc with no failing test"
fi
finish
