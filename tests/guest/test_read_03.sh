#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Buffered and direct image I/O: the same images attached with --buffered
# and without, from the shared 9p directory, from a guest tmpfs, and from
# ext4 on a loop device, must read the same bytes; sysfs direct_io must say
# 0 with --buffered, and 1 without it wherever the file system takes
# 512-byte O_DIRECT reads (probed with dd, so tmpfs counts as direct on
# kernels that support it there, 6.6 and later, and buffered before).
. "$(dirname "$0")/common.sh"

[ -s "$QB_IMAGES/MANIFEST" ] || t_skip "no image matrix (MANIFEST)"

pick='^(v3|cluster-512|compressed-zstd-64k)$'

# direct_capable FILE: can FILE be read with 512-byte O_DIRECT requests?
direct_capable() {
	dd if="$1" of=/dev/null bs=512 count=1 iflag=direct status=none \
		2>/dev/null
}

# check_dir WHERE DIR: attach every picked image under DIR both ways
check_dir() {
	local where=$1 dir=$2 name img ref expect dev mode dio want out

	while IFS=$'\t' read -r -u 3 name img ref expect; do
		[ "$expect" = ok ] || continue
		for mode in buffered direct; do
			if [ "$mode" = buffered ]; then
				dev=$(attach_ro "$dir/$img" --buffered)
			else
				dev=$(attach_ro "$dir/$img")
			fi
			if [ -z "$dev" ]; then
				t_fail "$where/$name ($mode): attach failed"
				continue
			fi
			want=0
			[ "$mode" = direct ] && direct_capable "$dir/$img" &&
				want=1
			if ! dio=$(sysfs_attr "$dev" direct_io); then
				t_log "$where/$name ($mode): no sysfs direct_io"
			elif [ "$dio" = "$want" ]; then
				t_pass "$where/$name ($mode): direct_io $dio"
			else
				t_fail "$where/$name ($mode): direct_io '$dio', expected $want"
			fi
			if out=$(compare "$dev" "$QB_IMAGES/$ref" 2>&1); then
				t_pass "$where/$name ($mode): identical"
			else
				t_fail "$where/$name ($mode): ${out//$QB_IMAGES\//}"
			fi
			detach "$dev" || t_fail "$where/$name: detach $dev"
		done
	done 3< <(manifest_entries "$pick")
}

# copy_images DIR: the picked images into DIR
copy_images() {
	manifest_entries "$pick" | cut -f2 |
		while read -r img; do
			cp --sparse=always "$QB_IMAGES/$img" "$1/" || exit 1
		done
}

[ -n "$(manifest_entries "$pick")" ] || t_skip "none of '$pick' in MANIFEST"

# 1. The shared directory (9p) as run-guest.sh gave it.
check_dir 9p "$QB_IMAGES"

# 2. A guest tmpfs.
tdir=$QB_SCRATCH/read03-tmpfs
mkdir -p "$tdir"
if mount -t tmpfs -o size=512m qb-read03 "$tdir"; then
	qb_mounts+=("$tdir")
	if copy_images "$tdir"; then
		check_dir tmpfs "$tdir"
	else
		t_fail "tmpfs: copying images failed"
	fi
else
	t_fail "tmpfs: mount failed"
fi

# 3. ext4 on a loop device, its backing file in tmpfs.
edir=$QB_SCRATCH/read03-ext4
mkdir -p "$edir"
truncate -s 384M "$tdir/ext4.img"
# Debian builds loop as a module, and no /dev/loop-control node exists to
# load it on demand: virtme-init does not create static device nodes.
modprobe loop 2>/dev/null
if loop=$(losetup -f --show "$tdir/ext4.img"); then
	if mkfs.ext4 -q -F "$loop" && mount_track "$loop" "$edir" rw; then
		if copy_images "$edir"; then
			sync
			check_dir ext4 "$edir"
		else
			t_fail "ext4: copying images failed"
		fi
		umount "$edir"
	else
		t_fail "ext4: mkfs or mount on $loop failed"
	fi
	losetup -d "$loop"
else
	t_fail "ext4: losetup failed"
fi

t_done
