#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_write.sh [CASE...]: the engine's write path against QEMU's. For each
# image of a matrix made by qemu-img (v2 and v3; clusters of 512 bytes to
# 2 MiB; refcount widths 1 to 64 bits; deflate and zstd compressed images;
# extended L2; backing chains over a qcow2 and a raw base; internal
# snapshots; an external data file; 512-byte clusters whose refcount table
# must grow), two copies get the same deterministic script of writes,
# zero writes, discards and flushes: one through qemu-io, one through the
# engine (qcow2-io, also with its smallest caches: case suffix -mincache).
# Then:
#   - qemu-img compare of the two copies must find them identical;
#   - qemu-img check of ours must exit 0 and report no errors, no leaks;
#   - snapshots: qemu-img convert -l of our copy must equal the original's.
#
# Discard semantics (the engine follows QEMU): discards of partial clusters
# change nothing; on a v2 image WITH a backing file the engine keeps the
# clusters (dropping them would expose the backing data, and v2 has no zero
# flag), where QEMU drops them. Scripts for v2 images with a backing file
# therefore leave out discards, or the compare would differ by design.
#
# One line per case, "PASS host/test_write: NAME" or "FAIL host/test_write:
# NAME: reason", then "N passed, N failed". CASE...: run only those cases.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# QCOW2_IO: another tool with qcow2-io's command line (a check of this
# script itself: a qemu-io wrapper must pass every case).
io_bin=${QCOW2_IO:-$top/build/user/qcow2-io}

[ -n "${QCOW2_IO:-}" ] ||
make -s -C "$top/tests/tools" write-tools >/dev/null 2>&1 || {
	echo "FAIL host/test_write: build: make -C tests/tools write-tools"
	echo "0 passed, 1 failed"
	exit 1
}

tmp=$(mktemp -d "${QB_WORKDIR:-/var/tmp}/test_write.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

QB_SUITE=host/test_write
# shellcheck source=../lib/host-harness.sh
. "$top/tests/lib/host-harness.sh"
qb_cases "$@"

K=1024
M=$((1024 * K))

# script CS DISCARDS: the commands, one per line. Offsets are in clusters
# of CS bytes, so every cluster size sees partial writes (copy-on-write of
# head and tail), whole clusters, runs across clusters and L2 slices,
# overwrites in place, zero writes with and without unmap, aligned and
# unaligned discards, writes into discarded and zeroed clusters (reuse of
# freed clusters), and flushes in between.
script() {
	local c=$1 discards=$2 h

	h=$((c / 2 < 512 ? 512 : c / 2))
	cat <<EOF
write -P 0x11 0 $c
write -P 0x12 $((c + 512)) $((c >= 2048 ? 1024 : 512))
write -P 0x13 $((3 * c - 512)) $((c + 1024))
write -P 0x14 $((8 * c)) $((4 * c))
write -P 0x15 $((c + 1024)) 512
write -P 0x16 0 $((2 * c))
write -P 0x17 $((17 * c + 512)) $((3 * c))
flush
write -z $((8 * c)) $c
write -z -u $((9 * c)) $c
write -z $((10 * c + 512)) $((c >= 2048 ? 1024 : 512))
write -z -u $((12 * c)) $((2 * c + 512))
write -z -u $((24 * c)) $((2 * c))
write -z $((26 * c)) $((c + 512))
EOF
	if [ "$discards" = yes ]; then
		cat <<EOF
discard $((3 * c)) $c
discard $((c + 512)) $c
discard $((17 * c)) $((2 * c + 1024))
discard $((28 * c)) $((2 * c))
EOF
	fi
	cat <<EOF
write -P 0x18 $((9 * c)) $h
write -P 0x19 $((3 * c)) 512
write -P 0x1a $((12 * c)) $((2 * c))
flush
EOF
	if [ "$discards" = yes ]; then
		echo "discard 0 $((16 * c))"
	fi
	cat <<EOF
write -P 0x1b $((20 * c)) $((3 * c))
write -z 0 $((c + 512))
write -P 0x1c $((5 * c + 512)) $((c * 2))
write -z -u $((20 * c)) $c
flush
write -P 0x1d $((30 * c)) $c
EOF
}

# growth: scattered small writes (an L2 table each) and one long write,
# enough to outgrow a one-cluster refcount table on 512-byte clusters.
growth() {
	local i base=$1 long=$2

	for i in $(seq 0 63); do
		echo "write -P $((0x40 + i % 32)) $((base + i * 64 * K)) 1024"
	done
	echo "flush"
	echo "write -P 0x61 $((base + 4 * M)) $long"
	echo "discard $((base + 4 * M)) $((long / 2))"
	echo "write -P 0x62 $((base + 4 * M + 512)) $((long / 4))"
}

# prefill IMAGE FMT CS: data where the script will overwrite, COW from, or
# discard, so in-place writes and shared clusters are exercised.
prefill() {
	local c=$3

	qemu-io -f "$2" -c "write -P 0x5a 0 $((4 * c))" \
		-c "write -P 0x5b $((8 * c)) $((6 * c))" \
		-c "write -P 0x5c $((16 * c)) $((8 * c))" \
		-c "write -P 0x5d $((28 * c)) $((2 * c))" "$1" >/dev/null
}

# make_case NAME DIR: build the image DIR/img.qcow2 (and what it needs);
# prints "CS DISCARDS EXTRA" (EXTRA: growth base and length, or -)
make_case() {
	local name=$1 d=$2 c=65536 disc=yes extra=- size ctype opts=()

	mkdir -p "$d"
	case $name in
	v2-64k)
		opts=(-o compat=0.10) ;;
	v3-64k)
		opts=() ;;
	cluster-512 | cluster-4k | cluster-2M)
		c=${name#cluster-}
		c=${c/k/*1024}
		c=$((${c/M/*1048576}))
		opts=(-o cluster_size=$c) ;;
	refcount-*)
		c=4096
		opts=(-o cluster_size=4096,refcount_bits=${name#refcount-}) ;;
	extl2-16k | extl2-64k | extl2-2M)
		c=${name#extl2-}
		c=${c/k/*1024}
		c=$((${c/M/*1048576}))
		opts=(-o cluster_size=$c,extended_l2=on) ;;
	refgrow-512-rb16 | refgrow-512-rb64)
		c=512
		opts=(-o cluster_size=512,refcount_bits=${name#refgrow-512-rb})
		if [ "$name" = refgrow-512-rb16 ]; then
			extra="$((8 * M)) $((10 * M))"
		else
			extra="$((8 * M)) $((4 * M))"
		fi ;;
	esac
	size=$((64 * c > 32 * M ? 64 * c : 32 * M))
	case $name in
	compressed-deflate | compressed-zstd)
		c=4096
		size=$((32 * M))
		qemu-img create -q -f raw "$d/src.raw" $size || return 1
		prefill "$d/src.raw" raw $c || return 1
		ctype=${name#compressed-}
		[ "$ctype" = deflate ] && ctype=zlib
		qemu-img convert -c -O qcow2 \
			-o cluster_size=$c,compression_type=$ctype \
			"$d/src.raw" "$d/img.qcow2" || return 1
		rm -f "$d/src.raw" ;;
	backing-qcow2 | backing-qcow2-v2 | backing-raw)
		local bfmt=qcow2 bopt=()

		[ "$name" = backing-raw ] && bfmt=raw
		[ "$name" = backing-qcow2 ] && bopt=(-o cluster_size=4096)
		qemu-img create -q -f $bfmt "${bopt[@]}" "$d/base.$bfmt" \
			$((24 * M)) || return 1
		qemu-io -f $bfmt -c "write -P 0x42 0 $((20 * M))" \
			-c "write -z $((M)) $((64 * K))" "$d/base.$bfmt" \
			>/dev/null || return 1
		opts=(-b base.$bfmt -F $bfmt)
		if [ "$name" = backing-qcow2-v2 ]; then
			opts+=(-o compat=0.10)
			disc=no
		fi
		qemu-img create -q -f qcow2 "${opts[@]}" "$d/img.qcow2" \
			$size || return 1
		prefill "$d/img.qcow2" qcow2 $c || return 1 ;;
	snapshots)
		qemu-img create -q -f qcow2 "$d/img.qcow2" $size || return 1
		prefill "$d/img.qcow2" qcow2 $c || return 1
		qemu-img snapshot -c snap "$d/img.qcow2" || return 1
		qemu-io -c "write -P 0x71 $((2 * c)) $c" "$d/img.qcow2" \
			>/dev/null || return 1
		qemu-img snapshot -c snap2 "$d/img.qcow2" || return 1 ;;
	data-file)
		# QEMU 7.2 opens a relative data file name relative to its
		# working directory, not to the image: absolute names, and
		# each copy is pointed at its own data file (run_case).
		qemu-img create -q -f qcow2 -o data_file="$d/img.data" \
			"$d/img.qcow2" $size || return 1
		prefill "$d/img.qcow2" qcow2 $c || return 1 ;;
	*)
		qemu-img create -q -f qcow2 "${opts[@]}" "$d/img.qcow2" \
			$size || return 1
		prefill "$d/img.qcow2" qcow2 $c || return 1 ;;
	esac
	echo "$c $disc $extra"
}

# run_case NAME [qcow2-io options]
run_case() {
	local name=$1 d=$tmp/$1 label=$1 c disc gbase glen out why
	local -a cmds qargs

	shift
	[ $# -gt 0 ] && label=$name-mincache
	wanted "$label" || return 0
	rm -rf "$d" "$d.q" "$d.e"
	if ! out=$(make_case "$name" "$d" 2>&1); then
		result FAIL "$label" "building the image: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
		return
	fi
	read -r c disc gbase glen <<<"$(echo "$out" | tail -n 1)"
	mapfile -t cmds < <(script "$c" "$disc"
			    [ "$gbase" != - ] && growth "$gbase" "$glen")
	cp -a "$d" "$d.q" && cp -a "$d" "$d.e" || {
		result FAIL "$label" "copying the image"
		return
	}
	if [ "$name" = data-file ] &&
	   ! { qemu-img amend -f qcow2 -o data_file="$d.q/img.data" \
		"$d.q/img.qcow2" &&
	       qemu-img amend -f qcow2 -o data_file="$d.e/img.data" \
		"$d.e/img.qcow2"; }; then
		result FAIL "$label" "pointing the copies at their data files"
		return
	fi
	qargs=()
	for out in "${cmds[@]}"; do
		qargs+=(-c "$out")
	done
	if ! out=$(qemu-io -f qcow2 "${qargs[@]}" "$d.q/img.qcow2" 2>&1) ||
	   grep -qiE 'error|fail' <<<"$out"; then
		result FAIL "$label" "qemu-io: $(grep -iE 'error|fail' <<<"$out" | head -n 2 | tr '\n' ' ')"
	elif ! out=$("$io_bin" "$@" "$d.e/img.qcow2" "${qargs[@]}" 2>&1 \
		     >/dev/null); then
		result FAIL "$label" "qcow2-io: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
	elif ! out=$(qemu-img compare -f qcow2 -F qcow2 "$d.q/img.qcow2" \
		     "$d.e/img.qcow2" 2>&1); then
		result FAIL "$label" "qemu-img compare: $(head -n 2 <<<"$out" | tr '\n' ' ')"
	elif ! why=$(check_image "$d.e/img.qcow2"); then
		result FAIL "$label" "$why"
	elif [ "$name" = snapshots ] && ! why=$(check_snapshots "$d" "$d.e"); then
		result FAIL "$label" "$why"
	else
		result PASS "$label"
	fi
	rm -rf "$d" "$d.q" "$d.e"
}

# check_image IMAGE: qemu-img check must exit 0 with no errors or leaks.
check_image() {
	local out rc

	out=$(qemu-img check "$1" 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "qemu-img check exit $rc: $(grep -iE 'error|leak|corrupt' <<<"$out" | head -n 3 | tr '\n' ' ')"
		return 1
	fi
	if grep -qE 'leaked|ERROR|corruptions|[1-9][0-9]* errors' <<<"$out" ||
	   ! grep -q 'No errors were found' <<<"$out"; then
		echo "qemu-img check: $(head -n 3 <<<"$out" | tr '\n' ' ')"
		return 1
	fi
}

# check_snapshots ORIG OURS: every snapshot reads as it did before.
check_snapshots() {
	local s out

	for s in snap snap2; do
		if ! qemu-img convert -l "snapshot.name=$s" -O raw \
		     "$1/img.qcow2" "$tmp/snap-orig.raw" 2>/dev/null ||
		   ! qemu-img convert -l "snapshot.name=$s" -O raw \
		     "$2/img.qcow2" "$tmp/snap-ours.raw" 2>/dev/null; then
			echo "qemu-img convert -l snapshot.name=$s failed"
			return 1
		fi
		if ! out=$(cmp "$tmp/snap-orig.raw" "$tmp/snap-ours.raw" 2>&1); then
			echo "snapshot $s changed: $out"
			return 1
		fi
	done
	rm -f "$tmp/snap-orig.raw" "$tmp/snap-ours.raw"
}

cases=(v2-64k v3-64k cluster-512 cluster-4k cluster-2M
       refcount-1 refcount-2 refcount-4 refcount-8 refcount-16 refcount-32
       refcount-64 compressed-deflate compressed-zstd
       extl2-16k extl2-64k extl2-2M
       backing-qcow2 backing-qcow2-v2 backing-raw snapshots data-file
       refgrow-512-rb16 refgrow-512-rb64)
for n in "${cases[@]}"; do
	run_case "$n"
done
# The smallest L2 and refcount caches: write-back under pressure.
for n in v2-64k cluster-512 refcount-1 compressed-zstd extl2-16k \
	 backing-qcow2 snapshots refgrow-512-rb64; do
	run_case "$n" -b
done

# reftable_case NAME ENTRY CORRUPT: refcount-table entry 0 set to ENTRY.
# A write fails and the image is marked corrupt when CORRUPT is yes (QEMU
# does the same: unaligned, past the end of the file, overlapping the
# refcount table); reserved bits 0-8 are ignored, as QEMU ignores them.
# The image stays readable (qemu-io -r).
reftable_case() {
	local name=reftable-$1 img=$tmp/reftable.qcow2 out rc

	wanted "$name" || return 0
	qemu-img create -q -f qcow2 "$img" 64M
	python3 - "$img" "$2" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    rt = struct.unpack(">Q", f.read(56)[48:56])[0]
    f.seek(rt)
    f.write(struct.pack(">Q", int(sys.argv[2], 16)))
PY
	out=$("$io_bin" "$img" -c 'write -P 0x5a 0 64k' 2>&1)
	rc=$?
	if [ "$3" = yes ]; then
		if [ $rc -eq 0 ]; then
			result FAIL "$name" "the write succeeded"
		elif ! qemu-img info "$img" | grep -q 'corrupt: true'; then
			result FAIL "$name" "not marked corrupt: $out"
		elif ! grep -q 'image corrupt' <<<"$out"; then
			result FAIL "$name" "no report: $out"
		elif ! qemu-io -r -c 'read 0 64k' "$img" >/dev/null 2>&1; then
			result FAIL "$name" "not readable afterwards"
		else
			result PASS "$name"
		fi
	elif [ $rc -ne 0 ]; then
		result FAIL "$name" "$out"
	elif ! qemu-io -r -c 'read -P 0x5a 0 64k' "$img" >/dev/null 2>&1; then
		result FAIL "$name" "data not written"
	else
		result PASS "$name"
	fi
}

reftable_case unaligned 0x20200 yes
reftable_case past-eof 0x7fff0000 yes
reftable_case high-bits 0x8000000000020000 yes
reftable_case on-reftable 0x10000 yes
reftable_case low-bits 0x20001 no

qb_summary
