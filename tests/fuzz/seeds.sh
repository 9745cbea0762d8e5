#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# seeds.sh DIR: seed corpora: DIR/fuzz_header holds small valid images
# (512-byte and 4 KiB clusters, v2 and v3, extended L2, compressed, zero
# clusters, snapshots), DIR/fuzz_chain two-layer chains in fuzz_chain's
# input format. Without qemu-img they stay empty and the fuzzers start
# blind.
set -eu

dir=${1:?usage: seeds.sh DIR}
mkdir -p "$dir"
command -v qemu-img >/dev/null || exit 0
[ -e "$dir/fuzz_chain/qcow2-qcow2" ] && exit 0
mkdir -p "$dir/fuzz_header" "$dir/fuzz_chain"
dir=$(cd "$dir" && pwd)

cd "$dir/fuzz_header"
mk() {
	local name=$1 opts=$2 size=$3

	shift 3
	qemu-img create -q -f qcow2 -o "$opts" "$name.qcow2" "$size"
	for c in "$@"; do
		qemu-io -f qcow2 -c "$c" "$name.qcow2" >/dev/null
	done
}
mk v3-512 compat=1.1,cluster_size=512 64k "write -P 1 0 1k" \
	"write -z 4k 1k" "write -z -u 8k 512" "write -P 2 20k 3k"
mk v2-512 compat=0.10,cluster_size=512 64k "write -P 3 1k 2k"
mk v3-4k compat=1.1,cluster_size=4k 1M "write -P 4 0 8k" "write -c 64k 4k"
mk extl2 compat=1.1,cluster_size=16k,extended_l2=on 256k \
	"write -P 5 512 1k" "write -z 16k 2k" "write -c 32k 16k"
mk zstd compat=1.1,cluster_size=4k,compression_type=zstd 256k \
	"write -c -P 6 0 4k" "write -c -P 7 4k 4k"
mk snap compat=1.1,cluster_size=512 64k "write -P 8 0 2k"
qemu-img snapshot -c first snap.qcow2
qemu-io -f qcow2 -c "write -P 9 1k 2k" snap.qcow2 >/dev/null
qemu-img snapshot -c second snap.qcow2

# fuzz_chain input: 4-byte big-endian top length, top image, lower layer.
pack() {
	local out=$1 top=$2 base=$3 n

	n=$(stat -c %s "$top")
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' \
		$((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) \
		$((n & 255)))" >"$out"
	cat "$top" "$base" >>"$out"
}
tmp=$(mktemp -d)
qemu-img create -q -f qcow2 -o cluster_size=512 "$tmp/base.qcow2" 32k
qemu-io -f qcow2 -c "write -P 1 0 8k" -c "write -z 8k 2k" "$tmp/base.qcow2" \
	>/dev/null
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.qcow2 -F qcow2 \
	"$tmp/top.qcow2" 48k
qemu-io -f qcow2 -c "write -P 2 1k 1k" -c "write -z 4k 1k" \
	-c "write -P 3 40k 1k" "$tmp/top.qcow2" >/dev/null
pack "$dir/fuzz_chain/qcow2-qcow2" "$tmp/top.qcow2" "$tmp/base.qcow2"
head -c 20000 /dev/zero | tr '\0' 'r' >"$tmp/base.raw"
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw \
	"$tmp/rtop.qcow2" 24k
qemu-io -f qcow2 -c "write -P 4 2k 1k" "$tmp/rtop.qcow2" >/dev/null
pack "$dir/fuzz_chain/qcow2-raw" "$tmp/rtop.qcow2" "$tmp/base.raw"
rm -rf "$tmp"
