#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# images-write.sh OUTDIR: the images the guest write tests write to, made
# on the host with qemu-img and qemu-io.
#
# For test_write_01 (the interop matrix), each case NAME gets two images
# built the same way from the same data: NAME.qcow2, which the guest writes
# through /dev/qcowN, and NAME.ref.qcow2, to which this script applies the
# same qemu-io write script (script.qio, or script-nodiscard.qio) here, so
# QEMU's result is the reference. OUTDIR/MANIFEST-write has one line per
# case:
#
#   name<TAB>image<TAB>reference<TAB>script<TAB>snapshot-check
#
# snapshot-check is "-" or SNAPNAME=FILE: after the guest's writes,
# `qemu-img convert -l snapshot.name=SNAPNAME` must still equal FILE.
#
# Also: base images with data for the other write tests (fio-base.qcow2,
# 64 MiB of random data, for test_write_02's overlay).
#
# Backing file names are relative to the image naming them; external data
# file names are relative to OUTDIR, as QEMU opens them from the current
# directory, so the guest runs qemu-io and qemu-img from OUTDIR. All data
# comes from fixed patterns and a seeded generator.
set -euo pipefail

out=${1:?usage: images-write.sh OUTDIR}
mkdir -p "$out"
cd "$out"
rm -f -- ./*.qcow2 ./*.raw ./*.img ./*.data ./*.bin ./*.qio MANIFEST-write

export LC_ALL=C
QIMG=${QEMU_IMG:-qemu-img}
QIO=${QEMU_IO:-qemu-io}
KiB=1024
MiB=$((1024 * 1024))
size=$((32 * MiB))

# seeded FILE BYTES SEED: reproducible pseudo-random bytes
seeded() {
	python3 -c '
import random, sys
sys.stdout.buffer.write(random.Random(int(sys.argv[2])).randbytes(int(sys.argv[1])))' \
		"$2" "$3" >"$1"
}

seeded rand.bin $MiB 7
seeded fio-base.raw $((64 * MiB)) 11

# ---- the write script ------------------------------------------------------

# One script for every case. Offsets assume a 32 MiB disk and are multiples
# of 512 (direct I/O on the device); 2 MiB-aligned ranges are whole clusters
# of every cluster size. Comments say what each line is for.
write_script() {
	cat <<EOF
write -P 0xa1 0 4k
write -P 0xa2 $((4 * MiB)) 2M
write -P 0xa3 1536 1k
write -s rand.bin $((7 * MiB + 512)) 300k
write -P 0xa4 $((4 * MiB + 64 * KiB)) 128k
write -P 0xa5 $((10 * MiB - 512)) 1k
write -z $((5 * MiB)) 256k
write -z -u $((12 * MiB)) 2M
write -z $((16 * MiB + 512)) 3k
write -z -u $((6 * MiB + 4 * KiB)) 8k
write -P 0xa6 $((8 * MiB + 4 * KiB)) 60k
write -z 0 512
discard $((14 * MiB)) 2M
discard $((18 * MiB + 512)) 100k
flush
write -P 0xa7 $((14 * MiB + 4 * KiB)) 4k
write -P 0xa8 $((size - 4 * KiB)) 4k
discard $((20 * MiB)) 4M
write -P 0xa9 $((20 * MiB + 64 * KiB)) 64k
write -z -u $((24 * MiB)) 8M
write -P 0xaa $((30 * MiB)) 1M
write -P 0xab $((256 * KiB)) 64k
write -P 0xac $((256 * KiB + 512)) 512
discard $((2 * MiB)) 2M
write -P 0xad $((2 * MiB + 1024)) 1k
flush
EOF
}
write_script >script.qio
# v2 images with a backing file: the driver does not discard there (QEMU
# would let the backing file show through), so no discards.
grep -v '^discard' script.qio >script-nodiscard.qio

# Data every case starts with, before the script: patterns, random data,
# a short unaligned run near the end.
init_cmds=(
	"write -P 0x11 0 1M"
	"write -s rand.bin $((8 * MiB)) 1M"
	"write -P 0x22 $((12 * MiB)) 4M"
	"write -P 0x33 $((18 * MiB)) 6M"
	"write -P 0x34 $((28 * MiB + 512)) 1k"
)
# What an overlay adds over its base.
overlay_cmds=(
	"write -P 0x44 $((2 * MiB + 4 * KiB)) 8k"
	"write -P 0x45 $((20 * MiB)) 64k"
	"write -z $((12 * MiB + 64 * KiB)) 64k"
)

# io IMAGE FORMAT CMD...: qemu-io commands on IMAGE
io() {
	local img=$1 fmt=$2 c args=()

	shift 2
	for c in "$@"; do
		args+=(-c "$c")
	done
	"$QIO" -f "$fmt" "${args[@]}" "$img" >/dev/null
}

# run_script IMAGE SCRIPT: the write script on IMAGE (qcow2); any failed
# command fails the build
run_script() {
	local c args=() log

	while IFS= read -r c; do
		args+=(-c "$c")
	done <"$2"
	log=$("$QIO" -f qcow2 "${args[@]}" "$1" 2>&1)
	if grep -qiE 'fail|error' <<<"$log"; then
		echo "$log" >&2
		return 1
	fi
}

# init.raw: the starting data as a raw file, for compressed images
truncate -s $size init.raw
io init.raw raw "${init_cmds[@]}"

# Bases for the backing-file cases, shared by image and reference (nothing
# writes them).
"$QIMG" create -q -f qcow2 -o compat=1.1 base.qcow2 $size
io base.qcow2 qcow2 "${init_cmds[@]}"
cp init.raw base.img

# ---- cases -----------------------------------------------------------------

# build KIND FILE: one image of case KIND as FILE (KIND's data file, if any,
# is FILE with .qcow2 replaced by .data)
build() {
	local kind=$1 f=$2 data=${2%.qcow2}.data

	case $kind in
	v2 | v3 | cluster-* | v2-cluster-* | refcount-*)
		local o=compat=1.1
		case $kind in
		v2) o=compat=0.10 ;;
		v2-cluster-*) o=compat=0.10,cluster_size=${kind#v2-cluster-} ;;
		cluster-*) o+=,cluster_size=${kind#cluster-} ;;
		refcount-*) o+=,refcount_bits=${kind#refcount-} ;;
		esac
		"$QIMG" create -q -f qcow2 -o "$o" "$f" $size
		io "$f" qcow2 "${init_cmds[@]}"
		;;
	compressed-*)
		# compressed-TYPE-CLUSTER
		local t=${kind#compressed-}
		"$QIMG" convert -q -c -f raw -O qcow2 \
			-o "compat=1.1,compression_type=${t%-*},cluster_size=${t#*-}" \
			init.raw "$f"
		;;
	extl2-*)
		"$QIMG" create -q -f qcow2 \
			-o "compat=1.1,extended_l2=on,cluster_size=${kind#extl2-}" \
			"$f" $size
		io "$f" qcow2 "${init_cmds[@]}"
		;;
	backing-*)
		# backing-BASEFORMAT-VERSION[-extl2|-4k]
		local spec=${kind#backing-} o=compat=1.1 b=base.qcow2 bf=qcow2
		case $spec in
		raw*) b=base.img bf=raw ;;
		esac
		case $spec in
		*-v2) o=compat=0.10 ;;
		*-extl2) o+=,extended_l2=on ;;
		*-4k) o+=,cluster_size=4k ;;
		esac
		"$QIMG" create -q -f qcow2 -o "$o" -b "$b" -F "$bf" "$f"
		io "$f" qcow2 "${overlay_cmds[@]}"
		;;
	snapshots)
		"$QIMG" create -q -f qcow2 -o compat=1.1 "$f" $size
		io "$f" qcow2 "${init_cmds[@]}"
		"$QIMG" snapshot -c before "$f"
		io "$f" qcow2 "${overlay_cmds[@]}"
		;;
	datafile)
		"$QIMG" create -q -f qcow2 -o "compat=1.1,data_file=$data" \
			"$f" $size
		io "$f" qcow2 "${init_cmds[@]}"
		;;
	datafile-raw)
		"$QIMG" create -q -f qcow2 \
			-o "compat=1.1,data_file=$data,data_file_raw=on" "$f" $size
		io "$f" qcow2 "${init_cmds[@]}"
		;;
	*)
		echo "images-write.sh: unknown kind $kind" >&2
		return 1
		;;
	esac
}

kinds=(v2 v3 cluster-512 cluster-4k cluster-64k cluster-2M
	v2-cluster-512 v2-cluster-2M
	refcount-1 refcount-2 refcount-4 refcount-8 refcount-16
	refcount-32 refcount-64
	compressed-zlib-64k compressed-zstd-64k compressed-zlib-4k
	compressed-zstd-2M
	extl2-16k extl2-64k extl2-2M
	backing-qcow2 backing-raw backing-qcow2-v2 backing-qcow2-extl2
	backing-raw-4k
	snapshots datafile datafile-raw)

for k in "${kinds[@]}"; do
	build "$k" "$k.qcow2"
	build "$k" "$k.ref.qcow2"
	script=script.qio
	[ "$k" = backing-qcow2-v2 ] && script="script-nodiscard.qio"
	snap=-
	if [ "$k" = snapshots ]; then
		"$QIMG" convert -f qcow2 -l snapshot.name=before -O raw \
			"$k.qcow2" "$k.before.raw"
		snap=before=$k.before.raw
	fi
	run_script "$k.ref.qcow2" "$script"
	"$QIMG" check -q "$k.ref.qcow2"
	printf '%s\t%s\t%s\t%s\t%s\n' "$k" "$k.qcow2" "$k.ref.qcow2" \
		"$script" "$snap" >>MANIFEST-write
done

# ---- bases for the other tests ------------------------------------------

"$QIMG" convert -q -f raw -O qcow2 -o compat=1.1 fio-base.raw fio-base.qcow2
rm -f fio-base.raw init.raw

echo "images-write.sh: $(wc -l <MANIFEST-write) cases in $out"
