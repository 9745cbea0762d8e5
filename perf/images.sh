#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# images.sh DIR: make the benchmark images on the host, at native speed.
#
#   data.qcow2    qcow2 v3, 64 KiB clusters, every cluster written with
#                 incompressible (random) data, QP_SIZE_MIB virtual
#   data.raw      its raw twin (qemu-img convert of data.qcow2)
#   comp.qcow2    qcow2 v3, 64 KiB clusters, every cluster compressed
#                 (deflate); the data is hex text of random bytes, which
#                 deflate shrinks to a little over half: QP_COMP_MIB virtual
#   chain/        a chain of QP_CHAIN_DEPTH qcow2 layers (64 KiB clusters,
#                 QP_CHAIN_MIB virtual) over a fully written base; layer i
#                 owns every QP_CHAIN_DEPTH-th cluster, starting at i, so a
#                 random read resolves at every depth. chain/TOP names the head.
#   wdata.qcow2   the master of the write workloads: qcow2 v3, 64 KiB
#                 clusters, every cluster written with random data,
#                 QP_WSIZE_MIB virtual; also the backing file of the
#                 copy-on-write workload
#   wdata.raw     its raw twin
#
# The images depend only on the sizes, so DIR is reused when its STAMP
# matches (make it again with QP_REBUILD_IMAGES=1).
set -eu

dir=${1:?usage: images.sh DIR}
size_mib=${QP_SIZE_MIB:-512}
comp_mib=${QP_COMP_MIB:-256}
chain_mib=${QP_CHAIN_MIB:-64}
depth=${QP_CHAIN_DEPTH:-300}
wsize_mib=${QP_WSIZE_MIB:-256}
stamp="v2 size=$size_mib comp=$comp_mib chain=$chain_mib depth=$depth"
stamp+=" wsize=$wsize_mib"
py=/usr/bin/python3

if [ "${QP_REBUILD_IMAGES:-0}" != 1 ] && [ -f "$dir/STAMP" ] &&
	[ "$(cat "$dir/STAMP")" = "$stamp" ]; then
	echo "images: reusing $dir ($stamp)"
	exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/chain"
cd "$dir"

# Incompressible data: qemu-img convert allocates every non-zero cluster,
# contiguously and in order, as a freshly written image would be.
head -c $((size_mib << 20)) /dev/urandom >src.raw
qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=65536 \
	src.raw data.qcow2
rm -f src.raw
qemu-img convert -f qcow2 -O raw data.qcow2 data.raw

# The write master, made the same way: every cluster allocated.
head -c $((wsize_mib << 20)) /dev/urandom >wsrc.raw
qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=65536 \
	wsrc.raw wdata.qcow2
rm -f wsrc.raw
qemu-img convert -f qcow2 -O raw wdata.qcow2 wdata.raw

# Compressible data: lowercase hex of random bytes, one line per 64 bytes.
$py - "$comp_mib" <<'EOF'
import os, sys
left = int(sys.argv[1]) << 20
with open("comp.src", "wb") as f:
    while left:
        n = min(left, 1 << 20)
        raw = os.urandom(n // 2).hex().encode()
        # a newline every 128 characters, same length
        raw = b"".join(raw[i:i + 127] + b"\n" for i in range(0, n, 128))
        f.write(raw[:n])
        left -= n
EOF
qemu-img convert -c -f raw -O qcow2 -o compat=1.1,cluster_size=65536 \
	comp.src comp.qcow2
rm -f comp.src

# The chain: each layer is made alone (convert of a sparse raw file with
# its own clusters, so only those are allocated) and then pointed at the
# layer below with an unsafe rebase, so no step opens the whole chain.
cs=65536
nclu=$((chain_mib * 1024 * 1024 / cs))
head -c $((chain_mib << 20)) /dev/urandom >chain/src.raw
qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=$cs \
	chain/src.raw chain/layer000.qcow2
$py - "$chain_mib" "$depth" "$cs" <<'EOF'
import os, sys
mib, depth, cs = (int(a) for a in sys.argv[1:])
nclu = (mib << 20) // cs
for i in range(1, depth + 1):
    with open("chain/layer%03d.raw" % i, "wb") as f:
        f.truncate(mib << 20)
        for c in range(i - 1, nclu, depth):
            f.seek(c * cs)
            f.write(os.urandom(cs))
EOF
rm -f chain/src.raw
prev=layer000.qcow2
for i in $(seq 1 "$depth"); do
	n=$(printf 'layer%03d' "$i")
	qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=$cs \
		"chain/$n.raw" "chain/$n.qcow2"
	rm -f "chain/$n.raw"
	qemu-img rebase -u -f qcow2 -b "$prev" -F qcow2 "chain/$n.qcow2"
	prev=$n.qcow2
done
echo "$prev" >chain/TOP
[ "$nclu" -ge "$depth" ] || echo "images: warning: fewer clusters than layers"

echo "$stamp" >STAMP
echo "images: made in $dir ($stamp)"
