#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A disk as users have them: an ext4 file system made on the host
# (mkfs.ext4 -d, then qemu-img convert -O qcow2 by run-guest.sh) is
# attached read-only, checked by e2fsck -n, mounted read-only, and every
# file must match the checksums taken on the host. While it is mounted the
# device must refuse to detach.
. "$(dirname "$0")/common.sh"

img=$QB_DATA/fs.qcow2
sums=$QB_DATA/SHA256SUMS
[ -f "$img" ] && [ -f "$sums" ] || t_skip "no ext4 image in $QB_DATA"

dev=$(attach_ro "$img") || { t_fail "attach $img"; t_done; }
t_pass "attached $img as $dev"

t_check "blkid sees ext4 labelled qb-test" \
	test "$(blkid -o value -s TYPE "$dev")/$(blkid -o value -s LABEL "$dev")" = ext4/qb-test
t_check "e2fsck -n finds the file system clean" e2fsck -f -n "$dev"

mnt=$QB_SCRATCH/fs01
if mount_track "$dev" "$mnt" ro; then
	t_pass "mounted $dev read-only on $mnt"
	t_log "hello.txt: $(cat "$mnt/hello.txt")"
	t_check "every file matches its host checksum" \
		sh -c "cd '$mnt' && sha256sum --quiet -c '$sums'"
	out=$(qcow2ctl detach "$dev" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then
		t_pass "detach refused while mounted: $out"
	else
		t_fail "detach succeeded while mounted"
	fi
	t_check "umount" umount "$mnt"
else
	t_fail "mount -o ro $dev"
fi
t_check "detach after umount" detach "$dev"

t_done
