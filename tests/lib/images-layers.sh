#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# images-layers.sh OUTDIR: the layered images of test_chain_02 (deep and
# mixed backing chains, subclusters and compressed clusters in overlays,
# snapshots across a resize, both external data file modes, and chains that
# must be refused), made with qemu-img and qemu-io. Every image meant to be
# served gets NAME.raw beside it, `qemu-img convert -O raw` of the same
# thing, as the reference; snapshot references are SNAPIMG@NAME.raw.
#
# Backing names are relative to the image naming them, so OUTDIR can be
# read from anywhere; external data file names are relative to OUTDIR, as
# QEMU opens them from the current directory. Data comes from fixed
# patterns and a seeded generator. Takes 40-80 s, most of it the 300- and
# 1000-layer chains (deep-299.qcow2 and long-999.qcow2 are their tops), on a
# busy two-core machine.
set -euo pipefail

out=${1:?usage: images-layers.sh OUTDIR}
mkdir -p "$out"
cd "$out"
rm -rf -- ./*.qcow2 ./*.raw ./*.img ./*.data

export LC_ALL=C
QIMG=${QEMU_IMG:-qemu-img}
QIO=${QEMU_IO:-qemu-io}
KiB=1024
MiB=$((1024 * 1024))

# rand FILE BYTES SEED: BYTES of seeded pseudo-random data (AES-CTR of
# zeroes), the same on every run
rand() {
	openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$3" \
		-in <(head -c "$2" /dev/zero) -out "$1"
}

# create NAME SIZE OPTIONS [BACKING [BACKING-FORMAT]]: a fresh NAME.qcow2
create() {
	local b=()

	[ $# -ge 4 ] && b=(-b "$4" -F "${5:-qcow2}")
	"$QIMG" create -q -f qcow2 -o "compat=1.1,$3" "${b[@]}" "$1.qcow2" "$2"
}

# io IMAGE CMD...: qemu-io commands on IMAGE (qcow2), its chain open
io() {
	local img=$1 c args=()

	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	"$QIO" -f qcow2 "${args[@]}" "$img" >/dev/null
}

# ref NAME: NAME.raw, QEMU's reading of NAME.qcow2 with its whole chain
ref() {
	"$QIMG" convert -f qcow2 -O raw "$1.qcow2" "$1.raw"
}

# ---- a raw base, a 4 KiB-cluster middle, a 64 KiB-cluster top -------------
#
# The upper layers hide data below them with zero clusters (write -z) and
# discarded clusters (which a version 3 image with a backing file marks
# zero), aligned and not, and write partial clusters over the layers'
# data, zeroes and ends (the top is larger than the middle).
rand mix-base.img $((16 * MiB)) mix-base
create mix-mid 16M cluster_size=4096 mix-base.img raw
io mix-mid.qcow2 \
	"write -P 0x21 1M 256k" \
	"write -z 2M 64k" \
	"write -z $((3 * MiB + 1000)) 5000" \
	"discard 4M 128k" \
	"write -P 0x22 5M 64k" \
	"discard $((5 * MiB + 16 * KiB)) 16k" \
	"write -P 0x23 8M $((12 * KiB + 512))" \
	"write -P 0x24 $((16 * MiB - 4 * KiB)) 4k"
create mix-top 20M cluster_size=65536 mix-mid.qcow2
io mix-top.qcow2 \
	"write -z $((MiB + 64 * KiB)) 64k" \
	"discard 8M 64k" \
	"write -P 0x31 2M 32k" \
	"write -P 0x32 $((6 * MiB + 4 * KiB)) 8k" \
	"discard 4M 64k" \
	"write -z 10M 1M" \
	"discard 12M 192k" \
	"write -P 0x33 $((16 * MiB - 8 * KiB)) 16k" \
	"write -P 0x34 17M 1M" \
	"write -z $((5 * MiB + 32 * KiB)) 64k"
ref mix-top
ref mix-mid

# ---- six layers ------------------------------------------------------------
#
# Cluster sizes from 512 B to 2 MiB, a version 2 layer (whose discard
# leaves a cluster unallocated, so the layers below show again), sizes that
# are not cluster multiples, and layers smaller than the top: six-3 is 6 MiB
# over 14 MiB, so above 6 MiB whatever six-1 and six-2 hold is hidden and
# reads as zero wherever six-4..six-6 wrote nothing.
rand six-src.img $((10 * MiB + 1536)) six-1
"$QIMG" convert -q -f raw -O qcow2 -o compat=1.1,cluster_size=2M \
	six-src.img six-1.qcow2
rm -f six-src.img
io six-1.qcow2 "write -P 0x11 $((9 * MiB)) 4k" "write -z 2M 2M"
create six-2 14M cluster_size=512 six-1.qcow2
io six-2.qcow2 \
	"write -P 0x21 512k 100k" \
	"write -P 0x22 11M 1M" \
	"write -z 3M 4k" \
	"write -P 0x23 $((10 * MiB + 1000)) 3000" \
	"discard $((6 * MiB)) 64k"
create six-3 6M cluster_size=65536 six-2.qcow2
io six-3.qcow2 \
	"write -P 0x31 5M 512k" \
	"write -P 0x32 0 8k" \
	"discard 1M 64k" \
	"write -z $((3 * MiB + 64 * KiB)) 128k"
"$QIMG" create -q -f qcow2 -o compat=0.10,cluster_size=16384 \
	-b six-3.qcow2 -F qcow2 six-4.qcow2 20M
io six-4.qcow2 \
	"write -P 0x41 7M 256k" \
	"write -P 0x42 $((5 * MiB + 8 * KiB)) 4k" \
	"discard 5M 16k" \
	"write -P 0x43 $((MiB + 16 * KiB)) 48k"
create six-5 $((20 * MiB + 512)) cluster_size=4096 six-4.qcow2
io six-5.qcow2 \
	"write -P 0x51 $((7 * MiB + 128 * KiB)) 256k" \
	"write -z 7M 64k" \
	"write -P 0x52 $((20 * MiB - 512)) 1k" \
	"write -P 0x53 4M 4k"
create six-6 24M cluster_size=131072 six-5.qcow2
io six-6.qcow2 \
	"write -P 0x61 0 4k" \
	"write -P 0x62 22M 1M" \
	"discard $((7 * MiB + 128 * KiB)) 128k" \
	"write -P 0x63 $((5 * MiB + 100 * KiB)) 20k"
ref six-6
ref six-3

# ---- 300 layers ------------------------------------------------------------
#
# Each layer is 64 MiB with one cluster size of 4, 16 and 64 KiB in turn,
# writes its own pattern at its own offset (layer i at about i * 218 KiB,
# 4-16 KiB long) and a second 4 KiB somewhere else, so most layers show
# through at the top. Layers are independent to make (created with -u, and
# written with no backing open, so a partial cluster is zero-filled rather
# than copied from below), hence made in parallel. deep-flat.qcow2 is the
# same disk in one image, the baseline for timing.
deep_layer() {
	local i=$1 n b=() cs off1 off2 js

	n=$(printf 'deep-%03d.qcow2' "$i")
	cs=$((4096 << (2 * (i % 3))))
	[ "$i" -gt 0 ] && b=(-u -b "$(printf 'deep-%03d.qcow2' $((i - 1)))" -F qcow2)
	"$QIMG" create -q -f qcow2 -o "compat=1.1,cluster_size=$cs" "${b[@]}" \
		"$n" 64M
	off1=$(((i * 218 * KiB) & ~4095))
	off2=$((((i * 7919) % 16384) * 4096))
	js='{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"'$n'"}}'
	"$QIO" -c "write -P $((i % 254 + 1)) $off1 $((4096 * (1 + i % 4)))" \
		-c "write -P $(((i * 3) % 254 + 1)) $off2 4k" "json:$js" >/dev/null
}
export -f deep_layer
export QIMG QIO KiB
seq 0 299 | xargs -P 8 -I{} bash -ec 'deep_layer {}'
ref deep-299
"$QIMG" convert -q -f raw -O qcow2 -o compat=1.1 deep-299.raw deep-flat.qcow2

# ---- 1000 layers -------------------------------------------------------------
#
# 700 more layers over deep-299, 64 KiB clusters, each writing 4 KiB of its
# own at its own place: a chain of QCOW2BLK_MAX_LAYERS (long-999.qcow2 is
# its top), whose ATTACH reply and list -J must name every layer.
long_layer() {
	local i=$1 n b off js

	n=$(printf 'long-%03d.qcow2' "$i")
	b=$(printf 'long-%03d.qcow2' $((i - 1)))
	[ "$i" -eq 300 ] && b=deep-299.qcow2
	"$QIMG" create -q -f qcow2 -o compat=1.1 -u -b "$b" -F qcow2 "$n" 64M
	off=$((((i * 4111) % 16384) * 4096))
	js='{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"'$n'"}}'
	"$QIO" -c "write -P $(((i * 5) % 254 + 1)) $off 4k" "json:$js" >/dev/null
}
export -f long_layer
seq 300 999 | xargs -P 8 -I{} bash -ec 'long_layer {}'
ref long-999

# ---- extended L2 entries over a normal base ---------------------------------
#
# 64 KiB clusters, 2 KiB subclusters: writes of one subcluster, half of one
# (QEMU copies the other half from below), across a cluster boundary, zero
# subclusters, a discarded cluster; every subcluster not written reads the
# base.
rand xl2-src.img $((16 * MiB)) xl2-base
"$QIMG" convert -q -f raw -O qcow2 -o compat=1.1 xl2-src.img xl2-base.qcow2
rm -f xl2-src.img
create xl2-top 16M extended_l2=on,cluster_size=65536 xl2-base.qcow2
io xl2-top.qcow2 \
	"write -P 0x72 4k 2k" \
	"write -P 0x73 $((MiB + KiB)) 1k" \
	"write -z $((2 * MiB + 6 * KiB)) 4k" \
	"write -P 0x74 $((2 * MiB + 20 * KiB)) 2k" \
	"discard 3M 64k" \
	"write -P 0x75 $((5 * MiB + 62 * KiB)) 4k" \
	"write -P 0x76 6M 64k" \
	"write -P 0x77 $((7 * MiB + 62 * KiB)) 2k" \
	"write -z $((8 * MiB)) 32k" \
	"write -P 0x78 $((9 * MiB + 512)) 512"
ref xl2-top

# ---- compressed overlays ---------------------------------------------------
#
# A disk converted with -c (zlib, then zstd) and rebased onto a base, so
# its unallocated clusters read the base; then qemu-io writes into it:
# compressed clusters (write -c), partial overwrites of compressed ones,
# zeroes.
rand comp-base.img $((16 * MiB)) comp-base
"$QIMG" convert -q -f raw -O qcow2 -o compat=1.1 comp-base.img comp-base.qcow2
rm -f comp-base.img
"$QIMG" create -q -f raw comp-src.img 16M
rand comp-rnd.img $((MiB)) comp-rnd
"$QIO" -f raw -c "write -P 0x81 0 2M" -c "write -P 0x82 5M 1M" \
	-c "write -P 0x83 $((9 * MiB + 4 * KiB)) 12k" comp-src.img >/dev/null
dd if=comp-rnd.img of=comp-src.img bs=64k seek=$((12 * 16)) conv=notrunc \
	status=none
for ct in zlib zstd; do
	"$QIMG" convert -q -c -f raw -O qcow2 \
		-o "compat=1.1,compression_type=$ct" comp-src.img "comp-$ct.qcow2"
	"$QIMG" rebase -u -b comp-base.qcow2 -F qcow2 "comp-$ct.qcow2"
	io "comp-$ct.qcow2" \
		"write -c -P 0x84 3M 64k" \
		"write -c -P 0x85 $((10 * MiB)) 128k" \
		"write -P 0x86 $((MiB + 8 * KiB)) 4k" \
		"write -z $((5 * MiB + 64 * KiB)) 64k" \
		"write -P 0x87 $((12 * MiB + 100 * KiB)) 1k"
	ref "comp-$ct"
done
rm -f comp-src.img comp-rnd.img

# ---- snapshots across a resize -----------------------------------------------
#
# "small" is taken at 8 MiB, then the image grows to 24 MiB and gets
# "grown", a third snapshot "zeroed" after zero writes, then more writes for
# the current state. A second image with a backing file has a snapshot too.
create snap 8M cluster_size=65536
io snap.qcow2 "write -P 0x91 0 8M"
"$QIMG" snapshot -c small snap.qcow2
"$QIMG" resize -q snap.qcow2 24M
io snap.qcow2 "write -P 0x92 12M 2M" "write -P 0x93 1M 64k"
"$QIMG" snapshot -c grown snap.qcow2
io snap.qcow2 "write -z 0 512k" "discard 2M 1M" "write -P 0x94 20M 4k"
"$QIMG" snapshot -c zeroed snap.qcow2
io snap.qcow2 "write -P 0x95 3M 1M" "write -P 0x96 23M 1M"
ref snap
for s in small grown zeroed; do
	"$QIMG" convert -f qcow2 -O raw -l "snapshot.name=$s" snap.qcow2 \
		"snap@$s.raw"
done
create snapov 16M cluster_size=65536 mix-mid.qcow2
io snapov.qcow2 "write -P 0x97 1M 64k" "write -z 5M 64k"
"$QIMG" snapshot -c first snapov.qcow2
io snapov.qcow2 "write -P 0x98 1M 2M" "discard 8M 64k"
ref snapov
"$QIMG" convert -f qcow2 -O raw -l snapshot.name=first snapov.qcow2 \
	"snapov@first.raw"

# ---- external data files ---------------------------------------------------
#
# data_file_raw=on (the data file is the disk, readable as raw) and off
# (qcow2 L2 entries decide; the data file alone means nothing); then an
# overlay over the "off" image, so a lower layer's data file is read too.
for mode in on off; do
	create "df-$mode" 16M "data_file=df-$mode.data,data_file_raw=$mode"
	io "df-$mode.qcow2" \
		"write -P 0xa1 0 1M" \
		"write -z 512k 64k" \
		"write -P 0xa2 5M 3M" \
		"discard 6M 64k" \
		"write -P 0xa3 $((11 * MiB + 4 * KiB)) 8k" \
		"write -z $((14 * MiB)) 1M"
	ref "df-$mode"
done
create df-over 16M cluster_size=4096 df-off.qcow2
io df-over.qcow2 "write -P 0xa4 $((5 * MiB + 4 * KiB)) 4k" "discard 0 64k"
ref df-over

# ---- chains that must be refused --------------------------------------------
#
# loop-a <- loop-b <- loop-c, then loop-a rebased onto loop-c; self names
# itself; missing names a file that does not exist; isdir and fifo name a
# directory and a FIFO; perm's backing file is for the test to make
# unreadable (mode 0600, read as nobody).
create loop-a 4M cluster_size=65536
create loop-b 4M cluster_size=65536 loop-a.qcow2
create loop-c 4M cluster_size=65536 loop-b.qcow2
"$QIMG" rebase -u -b loop-c.qcow2 -F qcow2 loop-a.qcow2
create self 4M cluster_size=65536
"$QIMG" rebase -u -b self.qcow2 -F qcow2 self.qcow2
"$QIMG" create -q -f qcow2 -u -b no-such-backing.qcow2 -F qcow2 missing.qcow2 4M
mkdir backing-dir.qcow2
"$QIMG" create -q -f qcow2 -u -b backing-dir.qcow2 -F qcow2 isdir.qcow2 4M
mkfifo backing-fifo.img
"$QIMG" create -q -f qcow2 -u -b backing-fifo.img -F raw fifo.qcow2 4M
create perm-base 4M cluster_size=65536
create perm 4M cluster_size=65536 perm-base.qcow2

ls -l
