#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_engine.sh [IMAGEDIR]: read every image of the matrix (tests/lib/
# images.sh) through the engine with qcow2-cat and compare the bytes with
# QEMU's raw reference, or check the refusal message; compare the engine's
# extents with `qemu-img map` (case name-map: zero vs unallocated, host
# offsets); then repeat a few cases with the smallest L2 cache so eviction
# runs. One line per case, "PASS name" or "FAIL name: reason", then
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

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
