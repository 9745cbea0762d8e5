# SPDX-License-Identifier: GPL-2.0
#
# Persistent dirty bitmaps as QEMU reports them; sourced by the host and
# guest bitmap tests. Needs qemu-img, qemu-io, qemu-nbd and python3.

# bm_dirty IMAGE BITMAP: the dirty extents of BITMAP, "START LENGTH" a
# line (bytes), as an NBD client of qemu-nbd --bitmap sees them through
# qemu:dirty-bitmap (qemu-img map reports dirty areas as "data": false).
bm_dirty() {
	local img=$1 bm=$2 d ret

	d=$(mktemp -d /tmp/bm_dirty.XXXXXX) || return 1
	if ! qemu-nbd -r -f qcow2 --fork --pid-file="$d/pid" -k "$d/s" \
		--bitmap="$bm" "$img" 2>"$d/err"; then
		sed 's/^/bm_dirty: /' "$d/err" >&2
		rm -rf "$d"
		return 1
	fi
	qemu-img map --output=json --image-opts \
		"driver=nbd,server.type=unix,server.path=$d/s,x-dirty-bitmap=qemu:dirty-bitmap:$bm" |
		python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if not e["data"]:
        print(e["start"], e["length"])'
	ret=$?
	# Without --persistent qemu-nbd ends with its one client; it holds
	# the image lock until it has gone.
	for _ in $(seq 100); do
		kill -0 "$(cat "$d/pid")" 2>/dev/null || break
		sleep 0.05
	done
	kill "$(cat "$d/pid")" 2>/dev/null
	rm -rf "$d"
	return $ret
}

# bm_flags IMAGE: "NAME GRANULARITY FLAG,FLAG" a line, from qemu-img info.
bm_flags() {
	qemu-img info -U --output=json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin).get("format-specific", {}).get("data", {})
for b in d.get("bitmaps", []):
    print(b["name"], b["granularity"], ",".join(b["flags"]) or "-")'
}

# bm_same A B BITMAP...: the named bitmaps of A and B mark the same
# extents; prints the first difference and fails otherwise.
bm_same() {
	local a=$1 b=$2 bm ea eb
	shift 2

	for bm in "$@"; do
		ea=$(bm_dirty "$a" "$bm") || return 1
		eb=$(bm_dirty "$b" "$bm") || return 1
		if [ "$ea" != "$eb" ]; then
			echo "bitmap $bm: ours [$(echo $ea)] qemu [$(echo $eb)]"
			return 1
		fi
	done
}

# bm_script CS: writes, write-zeroes and discards (qemu-io syntax) over a
# disk of at least 64 MiB with clusters of CS bytes: in place, allocating,
# across 4 MiB granules, at the disk's first and last bytes.
bm_script() {
	local c=$1

	cat <<SCRIPT
write -P 0x21 0 4k
write -P 0x22 $((1024 * 1024)) 64k
write -P 0x23 $((20 * 1024 * 1024 - 512)) 1k
write -z $((30 * 1024 * 1024)) 128k
write -z -u $((40 * 1024 * 1024)) $((2 * c))
discard $((4 * 1024 * 1024)) 1M
flush
write -P 0x24 $((4 * 1024 * 1024 + 4096)) 4k
write -P 0x25 $((64 * 1024 * 1024 - 512)) 512
SCRIPT
}

# bm_image IMAGE CLUSTER "CREATE-OPTS" BITMAP:GRAN[:off]...: a 64 MiB image
# with data and the named bitmaps (":off": disabled afterwards), with bits
# set before the test's own writes (which must survive them; a disabled
# bitmap keeps exactly these). Prints the bitmap names, one a line.
bm_image() {
	local img=$1 cs=$2 opts=$3 spec bm g off
	shift 3

	qemu-img create -q -f qcow2 -o "cluster_size=$cs$opts" "$img" 64M &&
	qemu-io -c 'write -P 0x11 0 8M' "$img" >/dev/null || return 1
	for spec in "$@"; do
		IFS=: read -r bm g off <<<"$spec"
		qemu-img bitmap --add -g "$g" "$img" "$bm" || return 1
		echo "$bm"
	done
	qemu-io -c 'write -P 0x12 48M 192k' -c 'write -P 0x13 8M 4k' \
		"$img" >/dev/null || return 1
	for spec in "$@"; do
		IFS=: read -r bm g off <<<"$spec"
		if [ "$off" = off ]; then
			qemu-img bitmap --disable "$img" "$bm" || return 1
		fi
	done
}

# bm_ioargs: the lines of stdin as "-c LINE" arguments, one per line of
# output (for mapfile).
bm_ioargs() {
	local l

	while IFS= read -r l; do
		printf '%s\n' -c "$l"
	done
}
