#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_engine.sh [IMAGEDIR]: read every image of the matrix (tests/lib/
# images.sh) through the engine with qcow2-cat and compare the bytes with
# QEMU's raw reference, or check the refusal message; compare the engine's
# extents with `qemu-img map` (case name-map: zero vs unallocated, host
# offsets); then repeat a few cases with the smallest L2 cache so eviction
# runs; read internal snapshots (qemu-img convert -l as referee) and
# backing chains; and check that corrupt tables fail reads with a report. One line per case, "PASS name" or "FAIL name: reason", then
# "N passed, N failed".
#
# IMAGEDIR: reuse an existing matrix instead of building one in a
# temporary directory.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cat_bin=$top/build/user/qcow2-cat
rawcmp_bin=$top/build/user/rawcmp

make -s -C "$top/tests/tools" >/dev/null || { echo "FAIL build: tests/tools"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ $# -ge 1 ]; then
	imgdir=$1
else
	imgdir=$tmp/images
	bash "$top/tests/lib/images.sh" "$imgdir" >/dev/null || {
		echo "FAIL images.sh"
		exit 1
	}
fi

pass=0
fail=0

result() {
	if [ "$1" = PASS ]; then
		echo "PASS $2"
		pass=$((pass + 1))
	else
		echo "FAIL $2: $3"
		fail=$((fail + 1))
	fi
}

# run_case NAME IMAGE REF EXPECT [qcow2-cat options...]
run_case() {
	local name=$1 img=$imgdir/$2 ref=$3 expect=$4 out=$tmp/out.raw
	local errf=$tmp/err rc msg

	shift 4
	rm -f "$out"
	"$cat_bin" "$@" "$img" "$out" 2>"$errf"
	rc=$?
	msg=$(head -c 400 "$errf" | tr '\n' ' ')
	case $expect in
	ok)
		if [ $rc -ne 0 ]; then
			result FAIL "$name" "qcow2-cat exit $rc: $msg"
		elif ! cmpout=$("$rawcmp_bin" "$out" "$imgdir/$ref" 2>&1); then
			result FAIL "$name" "$cmpout"
		else
			result PASS "$name"
		fi
		;;
	refuse:*)
		if [ $rc -ne 1 ]; then
			result FAIL "$name" "expected refusal, qcow2-cat exit $rc: $msg"
		elif [[ $msg != *"${expect#refuse:}"* ]]; then
			result FAIL "$name" "refusal message '$msg' lacks '${expect#refuse:}'"
		else
			result PASS "$name"
		fi
		;;
	*)
		result FAIL "$name" "bad MANIFEST expectation '$expect'"
		;;
	esac
	rm -f "$out"
}

# map_case NAME IMAGE: the engine's extents against qemu-img map's
map_case() {
	local name=$1-map img=$imgdir/$2 why

	if ! "$cat_bin" --map "$img" >"$tmp/ours.map" 2>"$tmp/err"; then
		result FAIL "$name" "qcow2-cat --map: $(head -c 400 "$tmp/err")"
	elif ! qemu-img map --output=json "$img" >"$tmp/qemu.json" 2>"$tmp/err"; then
		result FAIL "$name" "qemu-img map: $(head -c 400 "$tmp/err")"
	elif ! why=$(python3 "$here/mapcmp.py" "$tmp/ours.map" "$tmp/qemu.json"); then
		result FAIL "$name" "$why"
	else
		result PASS "$name"
	fi
}

while IFS=$'\t' read -r name img ref expect; do
	run_case "$name" "$img" "$ref" "$expect"
	[ "$expect" = ok ] && map_case "$name" "$img"
done <"$imgdir/MANIFEST"

# Smallest cache (QCOW2_L2C_MIN_SLICES): every few clusters evict.
for name in v2 cluster-512 cluster-2097152 extl2-64k compressed-zstd-4k \
	    snapshots sparse-64g; do
	line=$(awk -F'\t' -v n="$name" '$1 == n' "$imgdir/MANIFEST")
	[ -n "$line" ] || { result FAIL "$name-mincache" "not in MANIFEST"; continue; }
	IFS=$'\t' read -r _ img ref expect <<<"$line"
	run_case "$name-mincache" "$img" "$ref" "$expect" --l2-cache 0
done

# Internal snapshots read through the engine against qemu-img convert -l:
# by name and by ID, one taken before the disk grew (clusters past its L1
# table read as zero), and an unknown one refused.
# snap_case NAME IMAGE SNAPSHOT
snap_case() {
	local name=$1 img=$2 snap=$3 why

	if ! qemu-img convert -l "snapshot.name=$snap" -O raw "$img" \
	     "$tmp/snapref.raw" 2>"$tmp/err" &&
	   ! qemu-img convert -l "snapshot.id=$snap" -O raw "$img" \
	     "$tmp/snapref.raw" 2>"$tmp/err"; then
		result FAIL "$name" "qemu-img convert -l: $(head -c 300 "$tmp/err")"
	elif ! "$cat_bin" --snapshot "$snap" "$img" "$tmp/out.raw" 2>"$tmp/err"; then
		result FAIL "$name" "qcow2-cat: $(head -c 300 "$tmp/err")"
	elif ! why=$("$rawcmp_bin" "$tmp/out.raw" "$tmp/snapref.raw" 2>&1); then
		result FAIL "$name" "$why"
	else
		result PASS "$name"
	fi
	rm -f "$tmp/out.raw" "$tmp/snapref.raw"
}

if grep -q '^snapshots	' "$imgdir/MANIFEST"; then
	snap_case snapshot-name "$imgdir/snapshots.qcow2" snap1
	snap_case snapshot-id "$imgdir/snapshots.qcow2" 2
fi
grown=$tmp/grown.qcow2
if qemu-img create -q -f qcow2 "$grown" 16M &&
   qemu-io -c "write -P 0x31 0 1M" -c "write -P 0x32 15M 1M" "$grown" >/dev/null &&
   qemu-img snapshot -c small "$grown" &&
   qemu-img resize -q "$grown" 48M &&
   qemu-io -c "write -P 0x33 40M 1M" -c "write -P 0x34 0 64k" "$grown" >/dev/null; then
	snap_case snapshot-before-resize "$grown" small
	if "$cat_bin" --snapshot nope "$grown" /dev/null 2>"$tmp/err"; then
		result FAIL snapshot-unknown "an unknown snapshot was accepted"
	elif ! grep -q "snapshot" "$tmp/err"; then
		result FAIL snapshot-unknown "message '$(head -c 300 "$tmp/err")'"
	else
		result PASS snapshot-unknown
	fi
else
	result FAIL snapshot-before-resize "could not build the image"
fi
rm -f "$grown"

# Backing chains through the engine's chain code against qemu-img convert
# of the top image (which follows the chain): a raw base, a 4 KiB-cluster
# middle layer with zero clusters, a larger 64 KiB top with data, zeroes,
# a compressed cluster and bytes past the lower layers' end; a chain with
# a compressed zstd base; and a chain cut short, which must be refused.
chain_case() {
	local name=$1 top=$2 why

	shift 2
	if ! qemu-img convert -O raw "$top" "$tmp/chainref.raw" 2>"$tmp/err"; then
		result FAIL "$name" "qemu-img convert: $(head -c 300 "$tmp/err")"
	elif ! "$cat_bin" "$@" "$top" "$tmp/out.raw" 2>"$tmp/err"; then
		result FAIL "$name" "qcow2-cat: $(head -c 300 "$tmp/err")"
	elif ! why=$("$rawcmp_bin" "$tmp/out.raw" "$tmp/chainref.raw" 2>&1); then
		result FAIL "$name" "$why"
	else
		result PASS "$name"
	fi
	rm -f "$tmp/out.raw" "$tmp/chainref.raw"
}

M=$((1024 * 1024))
ch=$tmp/chain
mkdir -p "$ch"
if qemu-img create -q -f raw "$ch/base.raw" 16M &&
   qemu-io -f raw -c "write -P 0x11 0 8M" "$ch/base.raw" >/dev/null &&
   qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw \
	"$ch/mid.qcow2" &&
   qemu-io -c "write -P 0x22 1M 1M" -c "write -z 3M 64k" \
	-c "write -P 0x23 $((7 * M + 512)) 3k" "$ch/mid.qcow2" >/dev/null &&
   qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 "$ch/top.qcow2" 24M &&
   qemu-io -c "write -P 0x33 $((M + 4096)) 8k" -c "write -z -u 5M 128k" \
	-c "write -c -P 0x34 6M 64k" -c "write -P 0x35 20M 1M" \
	"$ch/top.qcow2" >/dev/null; then
	chain_case chain-3 "$ch/top.qcow2" --backing "$ch/mid.qcow2" \
		--backing "$ch/base.raw"
	chain_case chain-3-mincache "$ch/top.qcow2" --l2-cache 0 \
		--backing "$ch/mid.qcow2" --backing "$ch/base.raw"
	if "$cat_bin" --backing "$ch/mid.qcow2" "$ch/top.qcow2" /dev/null \
	   2>"$tmp/err"; then
		result FAIL chain-missing-layer "a chain cut short was accepted"
	elif ! grep -q "backing file" "$tmp/err"; then
		result FAIL chain-missing-layer "message '$(head -c 300 "$tmp/err")'"
	else
		result PASS chain-missing-layer
	fi
else
	result FAIL chain-3 "could not build the chain"
fi
if grep -q '^compressed-zstd-64k	' "$imgdir/MANIFEST" &&
   cp "$imgdir/compressed-zstd-64k.qcow2" "$ch/zbase.qcow2" &&
   qemu-img create -q -f qcow2 -o cluster_size=16k -b zbase.qcow2 \
	-F qcow2 "$ch/ztop.qcow2" &&
   qemu-io -c "write -P 0x44 $((2 * M + 512)) 2k" -c "write -z 9M 1M" \
	"$ch/ztop.qcow2" >/dev/null; then
	chain_case chain-compressed-base "$ch/ztop.qcow2" \
		--backing "$ch/zbase.qcow2"
fi
rm -rf "$ch"

# Corrupt tables in a copy of an image that opens: reads must fail with the
# engine's report naming the table, never crash or return wrong bytes.
# corrupt_case NAME SOURCE WHAT EXPECT: WHAT is l2-reserved (reserved bit in
# the first L2 entry), l2-eof (first data cluster moved past the end of
# file) or l1-eof (first L2 table moved past the end of file).
corrupt_case() {
	local name=$1 img=$tmp/corrupt.qcow2 rc msg

	cp "$imgdir/$2" "$img"
	python3 - "$img" "$3" <<'PY'
import struct, sys
path, what = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    h = f.read(104)
    cluster = 1 << struct.unpack(">I", h[20:24])[0]
    l1 = struct.unpack(">Q", h[40:48])[0]
    f.seek(0, 2)
    eof = f.tell()
    beyond = (eof + 16 * cluster) & ~(cluster - 1)
    f.seek(l1)
    l1e = struct.unpack(">Q", f.read(8))[0]
    l2 = l1e & 0x00fffffffffffe00
    if what == "l1-eof":
        f.seek(l1)
        f.write(struct.pack(">Q", (l1e & ~0x00fffffffffffe00) | beyond))
    else:
        f.seek(l2)
        l2e = struct.unpack(">Q", f.read(8))[0]
        if what == "l2-reserved":
            l2e |= 1 << 57
        else:
            l2e = (l2e & ~0x00fffffffffffe00) | beyond
        f.seek(l2)
        f.write(struct.pack(">Q", l2e))
PY
	"$cat_bin" "$img" "$tmp/out.raw" 2>"$tmp/err"
	rc=$?
	msg=$(head -c 600 "$tmp/err" | tr '\n' ' ')
	if [ $rc -ne 1 ]; then
		result FAIL "$name" "expected a read failure, qcow2-cat exit $rc: $msg"
	elif [[ $msg != *"$4"* || $msg != *"Structure needs cleaning"* ]]; then
		result FAIL "$name" "report '$msg' lacks '$4'"
	else
		result PASS "$name"
	fi
	rm -f "$img" "$tmp/out.raw"
}

corrupt_case corrupt-l2-reserved v3.qcow2 l2-reserved "L2 table at"
corrupt_case corrupt-l2-eof v3.qcow2 l2-eof "cluster beyond end of file"
corrupt_case corrupt-l1-eof v3.qcow2 l1-eof "L2 table beyond end of file"
corrupt_case corrupt-extl2-eof extl2-64k.qcow2 l2-eof "cluster beyond end of file"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
