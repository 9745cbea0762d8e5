#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh (make demo): qcow2blk end to end. Builds the module for the newest
# installed target kernel, makes an ext4 file system holding a file, turns
# it into a qcow2 image with qemu-img, then boots that kernel in a QEMU
# guest (virtme-ng, software emulation) where it loads the module, attaches
# the image with qcow2ctl, mounts it, prints the file and detaches it.
#
# Needs what scripts/setup.sh installs; runs as root. DEMO_KVER picks the
# kernel. Takes a minute or two, most of it booting the guest.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
say() {
	printf '\ndemo: %s\n' "$*"
}

# The newest kernel that has headers, a vmlinuz and is a 6.1 or 6.12 one.
pick_kernel() {
	local k

	for k in /lib/modules/6.1.[0-9]* /lib/modules/6.12.[0-9]*; do
		[ -d "$k/build" ] && [ -r "/boot/vmlinuz-${k##*/}" ] &&
			echo "${k##*/}"
	done | sort -V | tail -n 1
}

kver=${DEMO_KVER:-$(pick_kernel)}
[ -n "$kver" ] || {
	echo "demo: no 6.1 or 6.12 kernel with headers; run: bash scripts/setup.sh" >&2
	exit 1
}
command -v vng >/dev/null || {
	echo "demo: virtme-ng (vng) is missing; run: bash scripts/setup.sh" >&2
	exit 1
}

say "building qcow2blk.ko for $kver and qcow2ctl"
make -C "$top" --no-print-directory module KVER="$kver" >/dev/null
make -C "$top" --no-print-directory user >/dev/null
echo "built $top/build/$kver/qcow2blk.ko and $top/qcow2ctl/qcow2ctl"

work=$(mktemp -d /var/tmp/qcow2blk-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp "$top/build/$kver/qcow2blk.ko" "$top/qcow2ctl/qcow2ctl" "$work/"

say "making an ext4 file system with one file, then a qcow2 image of it"
cat >"$work/src/hello.txt" <<EOF
Hello from inside a qcow2 image.
This file was written by mkfs.ext4 -d on the host on $(date -u '+%F %T UTC'),
converted to qcow2 by qemu-img, and read back through /dev/qcow0.
EOF
truncate -s 32M "$work/disk.raw"
mkfs.ext4 -q -L demo -d "$work/src" "$work/disk.raw"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
rm -f "$work/disk.raw"
qemu-img info "$work/disk.qcow2" | sed 's/^/    /'

# What the guest runs: every command is echoed before it runs.
cat >"$work/inside.sh" <<'EOF'
set -e
cd "$(dirname "$0")"
run() {
	printf '\nguest# %s\n' "$*"
	"$@"
}
run insmod ./qcow2blk.ko
run ./qcow2ctl features
dev=$(./qcow2ctl attach --show "$PWD/disk.qcow2")
printf '\nguest# qcow2ctl attach --show disk.qcow2\n%s\n' "$dev"
run ./qcow2ctl list
run blkid "$dev"
mkdir -p /run/demo
run mount "$dev" /run/demo
run ls -l /run/demo
run cat /run/demo/hello.txt
printf '\nguest# echo ... >/run/demo/written-in-guest.txt\n'
echo "Written through $dev inside the guest on $(date -u '+%F %T UTC')." \
	>/run/demo/written-in-guest.txt
run sync
run cat "/sys/block/${dev#/dev/}/qcow2/data_reads"
run cat "/sys/block/${dev#/dev/}/qcow2/alloc_clusters"
run umount /run/demo
run ./qcow2ctl detach "$dev"
run rmmod qcow2blk
echo ok >demo-ok
EOF

say "booting $kver in a QEMU guest (TCG, no KVM: this takes a minute or two)"
# Through a pipe: QEMU reopens the guest's output as /proc/self/fd/1 and
# would truncate a file our output is redirected to.
(cd / && timeout -k 10 900 vng --run "/boot/vmlinuz-$kver" --disable-kvm \
	--cpus 2 --memory 2G --rwdir="$work=$work" \
	--append "modprobe.blacklist=ahci,sr_mod,iTCO_wdt,kvm_amd,kvm_intel,kvm" \
	--exec "bash $work/inside.sh" </dev/null) 2>&1 | cat || true

if [ ! -f "$work/demo-ok" ]; then
	say "FAILED: the guest did not finish the demo (output above)"
	exit 1
fi

say "back on the host: QEMU checks what the guest wrote and reads the new file"
qemu-img check "$work/disk.qcow2" | sed 's/^/    /'
qemu-img convert -O raw "$work/disk.qcow2" "$work/back.raw"
back=$(debugfs -R "cat /written-in-guest.txt" "$work/back.raw" 2>/dev/null)
printf '    %s\n' "$back"
grep -q '^Written through /dev/qcow' <<<"$back" || {
	say "FAILED: the file written in the guest is not in the image"
	exit 1
}
say "done: the image was attached read-write, mounted, read, written and detached"
