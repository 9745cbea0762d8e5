#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Discard gives space back: a 256 MiB image on guest tmpfs is filled
# through /dev/qcowN, then the first half is discarded (blkdiscard) and the
# device detached. The image file's allocated size (stat %b) must drop by at
# least 100 MiB, qemu-img check must be clean, the discarded half must read
# as zeroes and the rest as written. The sizes also go to
# RESULTS/write04-sizes.
#
# Not on the shared directory: 9p here has no fallocate (punching a hole in
# a file there fails with "keep size mode is unsupported"), so no driver
# could give space back in an image on it.
. "$(dirname "$0")/common.sh"

command -v blkdiscard >/dev/null || t_skip "blkdiscard not installed"

MiB=$((1024 * 1024))
img=$QB_SCRATCH/write04.qcow2
qemu-img create -q -f qcow2 -o compat=1.1 "$img" 256M
need_write "$img"

# allocated_kib FILE: allocated size in KiB
allocated_kib() {
	echo $(($(stat -c '%b * %B' "$1") / 1024))
}

kmsg "write04"
dev=$(attach_rw "$img") || { t_fail "attach $img"; t_done; }
# 0xff everywhere: nothing a driver could take for zeroes.
t_check "fill 256 MiB" sh -c "tr '\\0' '\\377' </dev/zero |
	dd of='$dev' bs=1M count=256 iflag=fullblock oflag=direct status=none"
t_check "flush" blockdev --flushbufs "$dev"
full=$(allocated_kib "$img")
t_log "allocated after the fill: $full KiB ($(du -k "$img" | cut -f1) KiB by du)"
t_check "the fill is allocated (>= 256 MiB: $full KiB)" \
	test "$full" -ge $((256 * 1024))
t_check "blkdiscard the first 128 MiB" \
	blkdiscard -o 0 -l $((128 * MiB)) "$dev"
sync
detach "$dev" || t_fail "detach $dev"
after=$(allocated_kib "$img")
t_log "allocated after discard and detach: $after KiB ($(du -k "$img" | cut -f1) KiB by du)"
echo "$img $full $after" >>"${QB_RESULTS:-$QB_SCRATCH}/write04-sizes"
t_check "allocation dropped by >= 100 MiB ($full -> $after KiB)" \
	test $((full - after)) -ge $((100 * 1024))

out=$(qemu-img check "$img" 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && ! grep -q leaked <<<"$out"; then
	t_pass "qemu-img check clean"
else
	t_fail "qemu-img check exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
fi
out=$(qemu-io -f qcow2 -r -c 'read -P 0 0 128M' -c 'read -P 0xff 128M 128M' \
	"$img" 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && ! grep -qi fail <<<"$out" &&
   [ "$(grep -c '^read ' <<<"$out")" -eq 2 ]; then
	t_pass "the discarded half reads as zeroes, the rest as written"
else
	t_fail "read back: exit $rc: $(grep -i fail <<<"$out" | head -3)"
fi
rm -f "$img"

t_done
