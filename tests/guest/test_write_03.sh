#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# File systems made on /dev/qcowN: mkfs.ext4 (image on the shared 9p
# directory) and mkfs.xfs (image on guest tmpfs), mounted, filled with
# generated files of known checksums, unmounted; the device's bytes must
# equal qemu-img convert -O raw of the image after detach; attached again,
# e2fsck -fn / xfs_repair -n must find the file system clean and every file
# must match; after the last detach qemu-img check must be clean.
. "$(dirname "$0")/common.sh"

d=$QB_DATA/write
[ -d "$d" ] || t_skip "no write directory $d"
command -v mkfs.xfs >/dev/null || t_skip "mkfs.xfs not installed"

ext4img=$d/write03-ext4.qcow2
xfsimg=$QB_SCRATCH/write03-xfs.qcow2
qemu-img create -q -f qcow2 -o compat=1.1 "$ext4img" 256M
qemu-img create -q -f qcow2 -o compat=1.1 "$xfsimg" 512M
need_write "$ext4img"

src=$QB_SCRATCH/write03-src
sums=$QB_SCRATCH/write03.sums
rm -rf "$src"
mkdir -p "$src"
# About 25 MB: sizes from empty to 1 MiB, odd lengths, nested directories,
# a hard link and a symbolic link.
python3 - "$src" <<'PY'
import os, random, sys

top = sys.argv[1]
r = random.Random(1234)
for i in range(160):
    d = os.path.join(top, "d%02d" % (i % 12), "s%d" % (i % 3))
    os.makedirs(d, exist_ok=True)
    n = r.choice([0, 1, 511, 4096, 5000, 65536, 100003, 300000])
    if i % 10 == 9:
        n = (1 << 20) - 512 * (i % 7)
    with open(os.path.join(d, "f%03d.bin" % i), "wb") as f:
        f.write(r.randbytes(n))
os.link(os.path.join(top, "d00/s0/f000.bin"), os.path.join(top, "hardlink"))
os.symlink("d01/s1/f001.bin", os.path.join(top, "symlink"))
PY
(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$sums"
t_log "source: $(wc -l <"$sums") files, $(du -sk "$src" | cut -f1) KiB"

# quiet DESCRIPTION CMD...: t_check, showing CMD's output only if it fails
quiet() {
	local what=$1 out rc

	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		t_pass "$what"
	else
		t_fail "$what (exit $rc: $*)"
		tail -20 <<<"$out" | sed 's/^/    /'
	fi
}

# fs TYPE IMAGE: the whole cycle for one file system type
fs() {
	local type=$1 img=$2 dev mnt=$QB_SCRATCH/write03-mnt out rc
	local devraw=$QB_SCRATCH/write03-dev.raw
	local imgraw=$QB_SCRATCH/write03-img.raw

	kmsg "write03 $type"
	if ! dev=$(attach_rw "$img"); then
		t_fail "$type: attach $img"
		return 1
	fi
	case $type in
	ext4) t_check "$type: mkfs" mkfs.ext4 -q -F -L qb-write "$dev" ;;
	xfs) t_check "$type: mkfs" mkfs.xfs -q -f -L qb-write "$dev" ;;
	esac
	if mount_track "$dev" "$mnt" rw; then
		t_check "$type: copy the files in" cp -a "$src/." "$mnt/"
		t_check "$type: files match while mounted" \
			sh -c "cd '$mnt' && sha256sum --quiet -c '$sums'"
		t_check "$type: umount" umount "$mnt"
	else
		t_fail "$type: mount $dev"
	fi
	# What the device reads, to compare with QEMU's reading of the image.
	t_check "$type: read the device" \
		dd if="$dev" of="$devraw" bs=1M conv=sparse status=none
	detach "$dev" || t_fail "$type: detach $dev"
	qemu-img convert -f qcow2 -O raw "$img" "$imgraw"
	t_check "$type: qemu-img convert -O raw equals the device" \
		cmp "$devraw" "$imgraw"
	rm -f "$devraw" "$imgraw"

	if ! dev=$(attach_rw "$img"); then
		t_fail "$type: attach $img again"
		return 1
	fi
	case $type in
	ext4) quiet "$type: e2fsck -fn clean" e2fsck -f -n "$dev" ;;
	xfs) quiet "$type: xfs_repair -n clean" xfs_repair -n "$dev" ;;
	esac
	if mount_track "$dev" "$mnt" rw; then
		t_check "$type: files match after re-attach" \
			sh -c "cd '$mnt' && sha256sum --quiet -c '$sums'"
		t_check "$type: hard link kept" \
			test "$(stat -c %h "$mnt/hardlink")" = 2
		t_check "$type: umount" umount "$mnt"
	else
		t_fail "$type: mount $dev again"
	fi
	detach "$dev" || t_fail "$type: detach $dev"
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q leaked <<<"$out"; then
		t_pass "$type: qemu-img check clean"
	else
		t_fail "$type: qemu-img check exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
	fi
	rm -f "$img"
}

fs ext4 "$ext4img"
fs xfs "$xfsimg"
rm -rf "$src" "$sums"

t_done
