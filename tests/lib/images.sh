#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# images.sh OUTDIR: build the qcow2 test image matrix with qemu-img/qemu-io,
# with raw references made by `qemu-img convert -O raw`, and write
# OUTDIR/MANIFEST, one line per case:
#
#   name<TAB>image<TAB>reference-or-dash<TAB>expect
#
# image and reference are file names relative to OUTDIR; expect is "ok" (the
# image must read exactly as the reference) or "refuse:<text>" (opening it
# must fail with a message containing <text>).
#
# Deterministic: all data comes from fixed patterns and a seeded generator.
# Runs in well under a minute and keeps real data below ~300 MB; virtual
# sizes are 16-32 MiB except one sparse 64 GiB image.
set -euo pipefail

out=${1:?usage: images.sh OUTDIR}
mkdir -p "$out"
cd "$out"
rm -f -- *.qcow2 *.raw *.data *.bin MANIFEST

export LC_ALL=C
QIMG=${QEMU_IMG:-qemu-img}
QIO=${QEMU_IO:-qemu-io}
KiB=1024
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

# ---- helpers -------------------------------------------------------------

manifest() {
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>MANIFEST
}

# create NAME SIZE OPTIONS: a fresh qcow2 image NAME.qcow2
create() {
	"$QIMG" create -q -f qcow2 -o "$3" "$1.qcow2" "$2"
}

# io NAME CMD...: run qemu-io commands on NAME.qcow2
io() {
	local img=$1 args=()

	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	"$QIO" -f qcow2 "${args[@]}" "$img.qcow2" >/dev/null
}

# ok NAME [SHARED]: reference from qemu-img, then a manifest line expecting
# success. With SHARED (an earlier reference), an identical reference is
# replaced by SHARED to save space; QEMU still made both.
ok() {
	local ref=$1.raw

	"$QIMG" convert -f qcow2 -O raw "$1.qcow2" "$ref"
	if [ $# -ge 2 ] && [ "$2" != "$ref" ] && cmp -s "$ref" "$2"; then
		rm -f "$ref"
		ref=$2
	fi
	manifest "$1" "$1.qcow2" "$ref" ok
}

refuse() {
	manifest "$1" "$1.qcow2" - "refuse:$2"
}

# patch FILE OFFSET BYTE...: overwrite bytes (hex) in place
patch() {
	local f=$1 off=$2 hex=""

	shift 2
	for b in "$@"; do
		hex+="\\x$b"
	done
	# shellcheck disable=SC2059
	printf "$hex" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

# scribble NAME SIZE: a fixed mix of writes: random and pattern data,
# unaligned ranges, in-place overwrites, host order unlike guest order,
# zeroes inside data, the last bytes of the disk.
scribble() {
	local n=$1 s=$2
	local half=$(((s / 2) & ~511)) third=$(((s / 3) & ~511))

	io "$n" \
		"write -s rand1.bin 0 192k" \
		"write -P 0x5a $((MiB + 512)) 3k" \
		"write -P 0xa5 $((half - 4 * KiB)) 12k" \
		"write -s rand2.bin $third 256k" \
		"write -P 0x3c $((s - 4608)) 4608" \
		"write -P 0x77 64k 8k" \
		"write -z 100k 32k" \
		"write -P 0x0f $((third - 1536)) 2k"
}

# ---- source data ------------------------------------------------------

python3 - <<'PY'
import os, random

def rand_file(name, seed, size):
    with open(name, "wb") as f:
        f.write(random.Random(seed).randbytes(size))

rand_file("rand1.bin", 1, 1 << 20)
rand_file("rand2.bin", 2, 1 << 20)

# Compressible but varied: numbered text lines (each cluster differs),
# random runs that do not compress, and holes.
MiB = 1 << 20
size = 16 * MiB
fd = os.open("text.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, size)

def text(off, length):
    lines = []
    n = 0
    while n < length:
        line = "%012x qcow2blk compressible test line %05d abcdefgh\n" % (off + n, (off + n) // 4096 % 100000)
        lines.append(line)
        n += len(line)
    os.pwrite(fd, "".join(lines).encode()[:length], off)

text(0, 5 * MiB)
os.pwrite(fd, random.Random(3).randbytes(MiB // 2), 5 * MiB + 4096)
text(7 * MiB + 512, 3 * MiB)
text(14 * MiB, 2 * MiB - 4096)
os.close(fd)
PY

# ---- version 2 and 3 ---------------------------------------------------

create v2 32M compat=0.10
scribble v2 $((32 * MiB))
ok v2

create v3 32M compat=1.1
scribble v3 $((32 * MiB))
ok v3

# ---- every cluster size ------------------------------------------------

for cb in 9 10 11 12 13 14 15 16 17 18 19 20 21; do
	n=cluster-$((1 << cb))
	create "$n" 16M "compat=1.1,cluster_size=$((1 << cb))"
	scribble "$n" $((16 * MiB))
	ok "$n"
done
for cs in 512 2M; do
	create "v2-cluster-$cs" 16M "compat=0.10,cluster_size=$cs"
	scribble "v2-cluster-$cs" $((16 * MiB))
	ok "v2-cluster-$cs"
done

# ---- refcount widths -------------------------------------------------

for rb in 1 2 4 8 16 32 64; do
	create "refcount-$rb" 16M "compat=1.1,refcount_bits=$rb"
	scribble "refcount-$rb" $((16 * MiB))
	ok "refcount-$rb"
done

# ---- zero clusters, both encodings ----------------------------------

# Version 3 has the zero flag (plain, and with a preallocated cluster
# when qemu-io zeroes allocated clusters without -u); version 2 does not,
# QEMU deallocates or writes zeroes there.
for v in 2 3; do
	for cs in 4k 64k; do
		n=zero-v$v-$cs
		compat=1.1
		[ $v = 2 ] && compat=0.10
		create "$n" 16M "compat=$compat,cluster_size=$cs"
		io "$n" \
			"write -s rand1.bin 0 1M" \
			"write -z 256k 128k" \
			"write -z -u 512k 128k" \
			"write -z 4M 1M" \
			"write -z $((8 * MiB + 512)) 1k" \
			"write -P 0x42 $((4 * MiB + 64 * KiB)) 64k" \
			"write -P 0x43 $((12 * MiB)) 256k" \
			"write -z -u $((12 * MiB + 64 * KiB)) 64k"
		ok "$n"
	done
done

create empty 16M compat=1.1
ok empty

# ---- preallocation -------------------------------------------------

for p in metadata falloc full; do
	create "prealloc-$p" 16M "compat=1.1,preallocation=$p"
	scribble "prealloc-$p" $((16 * MiB))
	io "prealloc-$p" "write -z $((2 * MiB)) 256k"
	ok "prealloc-$p"
done

# ---- virtual size not a multiple of the cluster size ----------------

s=$((16 * MiB + 3584))
create odd-size $s compat=1.1
scribble odd-size $s
ok odd-size

s=$((5 * MiB + 512))
create odd-size-2m $s compat=1.1,cluster_size=2M
scribble odd-size-2m $s
ok odd-size-2m

# ---- sparse 64 GiB, 512-byte clusters ------------------------------

create sparse-64g 64G compat=1.1,cluster_size=512
io sparse-64g \
	"write -P 0x61 0 4k" \
	"write -s rand1.bin $((GiB + 512)) 64k" \
	"write -P 0x62 $((17 * GiB)) 1k" \
	"write -P 0x63 $((40 * GiB - 512)) 1k" \
	"write -P 0x64 $((64 * GiB - 4 * KiB)) 4k"
ok sparse-64g

# ---- compressed -------------------------------------------------

for ct in zlib zstd; do
	for cs in 4k 64k 2M; do
		n=compressed-$ct-$cs
		"$QIMG" convert -q -c -f raw -O qcow2 \
			-o "compat=1.1,cluster_size=$cs,compression_type=$ct" \
			text.bin "$n.qcow2"
		ok "$n" compressed-zlib-4k.raw
	done
done

# Compressed clusters partly overwritten: compressed, data and zero mixed.
for ct in zlib zstd; do
	n=compressed-mixed-$ct
	"$QIMG" convert -q -c -f raw -O qcow2 \
		-o "compat=1.1,cluster_size=64k,compression_type=$ct" \
		text.bin "$n.qcow2"
	io "$n" \
		"write -P 0x21 $((64 * KiB + 512)) 1k" \
		"write -P 0x22 $((2 * MiB)) 128k" \
		"write -z $((3 * MiB + 64 * KiB)) 64k" \
		"write -c -s rand2.bin $((12 * MiB)) 64k"
	ok "$n"
done

# ---- extended L2 entries (subclusters) -----------------------------

for cs in 16384 65536 2097152; do
	sc=$((cs / 32))
	n=extl2-$((cs / KiB))k
	s=$((16 * MiB))
	create "$n" $s "compat=1.1,extended_l2=on,cluster_size=$cs"
	io "$n" \
		"write -P 0x11 0 $cs" \
		"write -P 0x22 $((cs + sc)) $sc" \
		"write -s rand1.bin $((cs + 4 * sc + 512)) $((sc > 1024 ? sc - 1024 : 512))" \
		"write -z $((cs + 8 * sc)) $((2 * sc))" \
		"write -z $((2 * sc)) $sc" \
		"write -z $((3 * cs)) $cs" \
		"write -P 0x33 $((3 * cs + 5 * sc)) $((3 * sc))" \
		"write -s rand2.bin $((5 * cs + 3 * sc)) $((7 * sc + 512))" \
		"write -P 0x44 $((s - sc)) $sc" \
		"write -z -u $((5 * cs + 4 * sc)) $sc"
	ok "$n"
done

n=extl2-compressed-64k
"$QIMG" convert -q -c -f raw -O qcow2 \
	-o compat=1.1,cluster_size=64k,extended_l2=on text.bin "$n.qcow2"
io "$n" "write -P 0x55 $((MiB + 2048)) 2k" "write -z $((3 * MiB)) 4k"
ok "$n"

# ---- internal snapshots --------------------------------------------

create snapshots 32M compat=1.1
scribble snapshots $((32 * MiB))
"$QIMG" snapshot -c snap1 snapshots.qcow2
io snapshots \
	"write -P 0x91 0 96k" \
	"write -P 0x92 $((MiB + 512)) 1k" \
	"write -s rand2.bin $((20 * MiB)) 512k"
"$QIMG" snapshot -c snap2 snapshots.qcow2
io snapshots \
	"write -z $((20 * MiB + 64 * KiB)) 128k" \
	"write -P 0x93 $((8 * MiB)) 64k"
ok snapshots

# ---- header bits a reader may ignore -------------------------------

# Dirty bit (incompatible bit 0): readable, only writers must repair.
create dirty 16M compat=1.1
scribble dirty $((16 * MiB))
ok dirty
patch dirty.qcow2 79 01

# ---- refusals -----------------------------------------------------

create backing-base 16M compat=1.1
"$QIMG" create -q -f qcow2 -b backing-base.qcow2 -F qcow2 backing.qcow2
refuse backing "backing file"
rm -f backing-base.qcow2

# Its data file is gone: the refusal must name it.
"$QIMG" create -q -f qcow2 -o compat=1.1,data_file=data-file.data \
	data-file.qcow2 16M
rm -f data-file.data
refuse data-file "data-file.data"

# QEMU times its PBKDF with the thread's CPU clock, which can step
# backwards on a busy virtual machine ("Unable to get accurate CPU usage"):
# try again a few times.
for try in 1 2 3 4 5; do
	"$QIMG" create -q -f qcow2 --object secret,id=sec0,data=qcow2blk \
		-o compat=1.1,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 \
		luks.qcow2 16M && break
	echo "images.sh: qemu-img could not make luks.qcow2 (try $try)" >&2
done
refuse luks "encrypted (LUKS)"

# Marked corrupt (incompatible bit 1): readable, as qemu-io -r reads it;
# never written (tests/guest/test_ctl_04.sh).
create corrupt 16M compat=1.1
scribble corrupt $((16 * MiB))
ok corrupt
patch corrupt.qcow2 79 02

create unknown-bit 16M compat=1.1
patch unknown-bit.qcow2 78 02
refuse unknown-bit "unsupported incompatible feature bits: 9"

create l1-beyond-eof 16M compat=1.1
patch l1-beyond-eof.qcow2 40 00 00 00 10 00 00 00 00
refuse l1-beyond-eof "L1 table at offset 0x1000000000 is outside"

# Compression type 2 with the compression type bit (3).
create bad-compression 16M compat=1.1
patch bad-compression.qcow2 79 08
patch bad-compression.qcow2 104 02
refuse bad-compression "unsupported compression type 2"

rm -f rand1.bin rand2.bin text.bin
echo "images.sh: $(wc -l <MANIFEST) cases in $out"
