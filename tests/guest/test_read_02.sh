#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The smallest L2 cache: images attached with --l2-cache 0 (the module's
# minimum, two slices) must read exactly as with a full cache, while the
# cache really evicts; and an L2 cache shrunk with `qcow2ctl set` while the
# device is in use must keep serving the same bytes.
. "$(dirname "$0")/common.sh"

[ -s "$QB_IMAGES/MANIFEST" ] || t_skip "no image matrix (MANIFEST)"

# Images with 512-byte and 64 KiB clusters, v2, compressed, subclusters,
# snapshots, and the sparse 64 GiB one with its huge L1 table.
pick='^(cluster-512|v2-cluster-512|cluster-65536|v2|compressed-mixed-zstd|extl2-16k|snapshots|sparse-64g)$'

# Slice entries are 8 bytes, 16 with extended L2; a slice is at most 4 KiB.
slice_bytes() {
	[ "$1" -lt 4096 ] && echo "$1" || echo 4096
}

n=0
while IFS=$'\t' read -r -u 3 name img ref expect; do
	[ "$expect" = ok ] || continue
	n=$((n + 1))
	img=$QB_IMAGES/$img
	ref=$QB_IMAGES/$ref
	if ! dev=$(attach_ro "$img" --l2-cache 0); then
		t_fail "$name: attach --l2-cache 0 failed"
		continue
	fi
	cs=$(sysfs_attr "$dev" cluster_size_bytes)
	l2=$(sysfs_attr "$dev" l2_cache_bytes)
	min=$((2 * $(slice_bytes "${cs:-4096}")))
	if [ "$l2" = "$min" ]; then
		t_pass "$name: l2_cache_bytes is the minimum, $l2"
	else
		t_fail "$name: l2_cache_bytes '$l2', expected the minimum $min (cluster size '$cs')"
	fi
	if out=$(compare "$dev" "$ref" 2>&1); then
		t_pass "$name: ${out//$QB_IMAGES\//}"
	else
		t_fail "$name: ${out//$QB_IMAGES\//}"
	fi
	ev=$(sysfs_attr "$dev" l2_evictions)
	miss=$(sysfs_attr "$dev" l2_misses)
	t_log "$name: l2_misses $miss, l2_evictions $ev"
	# 512-byte clusters: a slice maps 32 KiB, and data is spread over MiBs.
	if [ "$cs" = 512 ]; then
		if [ "${ev:-0}" -gt 0 ]; then
			t_pass "$name: the minimum cache evicts ($ev evictions)"
		else
			t_fail "$name: no L2 evictions with a two-slice cache ('$ev')"
		fi
	fi
	detach "$dev" || t_fail "$name: detach $dev"
done 3< <(manifest_entries "$pick")
[ "$n" -gt 0 ] || t_skip "none of the images '$pick' in MANIFEST"

# Shrink the cache of a device that is being read.
line=$(manifest_entries '^cluster-512$')
if [ -n "$line" ]; then
	IFS=$'\t' read -r name img ref expect <<<"$line"
	if dev=$(attach_ro "$QB_IMAGES/$img"); then
		before=$(sysfs_attr "$dev" l2_cache_bytes)
		dd if="$dev" of=/dev/null bs=1M count=8 status=none
		t_check "$name: set --l2-cache 0 while attached" \
			qcow2ctl set "$dev" --l2-cache 0
		after=$(sysfs_attr "$dev" l2_cache_bytes)
		if [ -n "$after" ] && [ "$after" -lt "$before" ]; then
			t_pass "$name: l2_cache_bytes $before -> $after"
		else
			t_fail "$name: l2_cache_bytes '$before' -> '$after' after set --l2-cache 0"
		fi
		echo 3 >/proc/sys/vm/drop_caches
		if out=$(compare "$dev" "$QB_IMAGES/$ref" 2>&1); then
			t_pass "$name after set: ${out//$QB_IMAGES\//}"
		else
			t_fail "$name after set: ${out//$QB_IMAGES\//}"
		fi
		detach "$dev" || t_fail "$name: detach $dev"
	else
		t_fail "$name: attach failed"
	fi
fi

t_done
