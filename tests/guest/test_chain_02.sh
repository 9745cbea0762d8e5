#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Layers, the rest of the list after test_chain_01: a raw/4 KiB/64 KiB chain
# with zero and discarded clusters over data, six layers of mixed cluster
# sizes and virtual sizes, a 300-layer chain (with 4 KiB random-read timings
# against the same disk in one image, printed, not judged), an extended-L2
# overlay, compressed overlays (zlib and zstd), snapshots across a resize,
# both external data file modes, and chains qcow2ctl must refuse, naming
# the file at fault: loops, a missing, a directory, a FIFO and an unreadable
# backing file. Every device must read as qemu-img convert -O raw of the
# same image. The images are made on the host by tests/lib/images-layers.sh.
. "$(dirname "$0")/common.sh"

d=$QB_DATA/layers
[ -f "$d/deep-299.raw" ] || t_skip "no layered images in $d"
if ! qcow2ctl --help 2>&1 | grep -q -- --snapshot; then
	t_skip "this qcow2ctl has no --snapshot: no layer support"
fi

# check NAME REFERENCE LAYERS ATTACH-ARGS...: attach, check the layer count
# and compare; the device is left in $dev for the caller (see done_with)
check() {
	local name=$1 ref=$2 nr=$3 out layers

	shift 3
	if ! dev=$(attach_ro "$@"); then
		t_fail "$name: attach $* failed"
		dev=
		return 1
	fi
	layers=$(qcow2ctl list -n --raw -O layers "$dev")
	t_check "$name: $nr layers (list says '$layers')" test "$layers" = "$nr"
	if out=$(compare "$dev" "$d/$ref" 2>&1); then
		t_pass "$name: ${out//$d\//}"
	else
		t_fail "$name: ${out//$d\//}"
		t_log "$name: kernel log: $(dmesg | tail -5)"
	fi
}

done_with() {
	detach "$dev" || t_fail "$1: detach $dev"
}

# cmp_one NAME REFERENCE LAYERS ATTACH-ARGS...: check, then detach
cmp_one() {
	local name=$1

	check "$@" && done_with "$name"
}

# refuse NAME IMAGE TEXT...: attaching IMAGE fails, and qcow2ctl's message
# contains every TEXT (the file at fault, the reason)
refuse() {
	local name=$1 img=$2 out text

	shift 2
	if out=$(qcow2ctl attach -r --show "$img" 2>&1); then
		t_fail "$name: $img attached as $out"
		case $out in /dev/qcow*) qcow2ctl detach "$out" ;; esac
		return
	fi
	for text in "$@"; do
		if [[ $out != *"$text"* ]]; then
			t_fail "$name: refused, but the message lacks '$text': $out"
			return
		fi
	done
	t_pass "$name: refused: $out"
}

# ---- random reads: the flat-cost claim, in numbers -------------------------

# rr_pass DEV LABEL: 300 random 4 KiB direct reads (fio's fixed seed, so
# a second pass reads the same blocks); prints fio's latency, the wall time
# (fio's start included) and what the caches counted (the l2 counters are
# the top layer's)
rr_pass() {
	local dev=$1 label=$2 mh mm lh lm t0 t1 res

	mh=$(sysfs_attr "$dev" map_cache_hits)
	mm=$(sysfs_attr "$dev" map_cache_misses)
	lh=$(sysfs_attr "$dev" l2_hits)
	lm=$(sysfs_attr "$dev" l2_misses)
	t0=$(date +%s%N)
	if command -v fio >/dev/null; then
		res=$(fio --name=rr --filename="$dev" --readonly --rw=randread \
			--bs=4k --direct=1 --ioengine=psync --io_size=1200k \
			--randrepeat=1 --output-format=json 2>/dev/null |
			python3 -c '
import json, sys
r = json.load(sys.stdin)["jobs"][0]["read"]
print("%d reads, %.0f IOPS, mean latency %.0f us" %
      (r["total_ios"], r["iops"], r["clat_ns"]["mean"] / 1000))') ||
			res="fio failed"
	else
		local i

		RANDOM=1234
		for i in $(seq 1 300); do
			dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct \
				skip=$((RANDOM % 16384)) status=none
		done
		res="300 reads with dd (no fio)"
	fi
	t1=$(date +%s%N)
	t_log "timing $label: $res, wall $(((t1 - t0) / 1000000)) ms;" \
		"map_cache hits +$(($(sysfs_attr "$dev" map_cache_hits) - mh))" \
		"misses +$(($(sysfs_attr "$dev" map_cache_misses) - mm));" \
		"l2 hits +$(($(sysfs_attr "$dev" l2_hits) - lh))" \
		"misses +$(($(sysfs_attr "$dev" l2_misses) - lm))"
}

# timing NAME IMAGE: attach, then a cold and a warm pass of random reads
# before anything else has touched the device
timing() {
	local name=$1 img=$2

	if ! dev=$(attach_ro "$img"); then
		t_fail "$name: attach $img failed"
		return
	fi
	t_log "timing $name: $(qcow2ctl list -n --raw -O layers,dio "$dev") (layers, dio)," \
		"map_cache_bytes $(sysfs_attr "$dev" map_cache_bytes)," \
		"l2_cache_bytes $(sysfs_attr "$dev" l2_cache_bytes)"
	rr_pass "$dev" "$name cold"
	rr_pass "$dev" "$name warm"
	detach "$dev" || t_fail "$name: detach $dev"
}

cd /

# ---- chains ------------------------------------------------------------------

cmp_one mix-top mix-top.raw 3 "$d/mix-top.qcow2"
cmp_one mix-mid mix-mid.raw 2 "$d/mix-mid.qcow2"
cmp_one mix-top-l2min mix-top.raw 3 "$d/mix-top.qcow2" --l2-cache 0
cmp_one six-6 six-6.raw 6 "$d/six-6.qcow2"
cmp_one six-3 six-3.raw 3 "$d/six-3.qcow2"

# deep-flat is qemu-img's conversion of the reference: a baseline only.
timing deep-flat "$d/deep-flat.qcow2"
timing deep-300 "$d/deep-299.qcow2"
cmp_one deep-300 deep-299.raw 300 "$d/deep-299.qcow2"

# 1000 layers, the most a device takes: the ATTACH reply names the device
# (attach_ro needs --show to print it), list -J names every layer, top
# first, and the reads are byte-exact.
if [ -f "$d/long-999.qcow2" ] && check long-1000 long-999.raw 1000 "$d/long-999.qcow2"; then
	t_check "long-1000: list -J names all 1000 layers, top first" \
		python3 -c '
import json, sys
devs = json.load(sys.stdin)["qcowdevices"]
chain = devs[0]["chain"]
names = [l["path"].rsplit("/", 1)[-1] for l in chain]
want = ["long-%03d.qcow2" % i for i in range(999, 299, -1)] + \
       ["deep-%03d.qcow2" % i for i in range(299, -1, -1)]
sys.exit(0 if names == want else "got %d layers: %s" % (len(names), names[:3]))
' < <(qcow2ctl list -J "$dev")
	done_with long-1000
else
	[ -f "$d/long-999.qcow2" ] || t_fail "no 1000-layer chain in $d"
fi

# ---- subclusters, compressed clusters ---------------------------------------

if check xl2-top xl2-top.raw 2 "$d/xl2-top.qcow2"; then
	xl2=$(sysfs_attr "$dev" extended_l2)
	t_check "xl2-top: qcow2/extended_l2 is 1 ('$xl2')" test "$xl2" = 1
	done_with xl2-top
fi
for ct in zlib zstd; do
	if check "comp-$ct" "comp-$ct.raw" 2 "$d/comp-$ct.qcow2"; then
		n=$(sysfs_attr "$dev" compressed_reads)
		t_check "comp-$ct: compressed clusters were read ($n)" \
			test "${n:-0}" -gt 0
		done_with "comp-$ct"
	fi
done

# ---- snapshots ---------------------------------------------------------------

cmp_one snap-current snap.raw 1 "$d/snap.qcow2"
for s in small grown zeroed; do
	cmp_one "snap-$s" "snap@$s.raw" 1 "$d/snap.qcow2" --snapshot "$s"
done
cmp_one snapov-current snapov.raw 3 "$d/snapov.qcow2"
cmp_one snapov-first snapov@first.raw 3 "$d/snapov.qcow2" --snapshot first

# ---- external data files (names relative to the current directory) ----------

cd "$d" || t_fail "cd $d"
cmp_one df-raw-on df-on.raw 1 "$d/df-on.qcow2"
cmp_one df-raw-off df-off.raw 1 "$d/df-off.qcow2"
cmp_one df-under-overlay df-over.raw 2 "$d/df-over.qcow2"
cd /

# ---- refusals ----------------------------------------------------------------

# loop-a -> loop-c -> loop-b -> loop-a: from either end, the file met twice
# is named; an image naming itself likewise.
refuse loop-from-c "$d/loop-c.qcow2" "backing chain loop" "$d/loop-c.qcow2"
refuse loop-from-a "$d/loop-a.qcow2" "backing chain loop" "$d/loop-a.qcow2"
refuse loop-self "$d/self.qcow2" "backing chain loop" "$d/self.qcow2"
refuse missing "$d/missing.qcow2" "$d/no-such-backing.qcow2" \
	"No such file"
refuse backing-is-dir "$d/isdir.qcow2" "$d/backing-dir.qcow2" \
	"Is a directory"

# A FIFO (made on the host; if 9p does not show it as one, made here).
fifo_dir=$d
if [ ! -p "$d/backing-fifo.img" ]; then
	t_log "backing-fifo.img is not a FIFO over 9p; making one in scratch"
	fifo_dir=$QB_SCRATCH/fifo
	mkdir -p "$fifo_dir"
	cp "$d/fifo.qcow2" "$fifo_dir/"
	mkfifo "$fifo_dir/backing-fifo.img"
fi
refuse backing-is-fifo "$fifo_dir/fifo.qcow2" "$fifo_dir/backing-fifo.img" \
	"not a regular file"

# Unreadable: root reads anything, so qcow2ctl runs as nobody on a copy in
# the scratch tmpfs (the 9p share is root's alone), first with the backing
# file readable (the chain opens: a dry run prints it), then mode 0600.
p=$QB_SCRATCH/perm
mkdir -p "$p"
cp "$QB_QCOW2CTL" "$d/perm.qcow2" "$d/perm-base.qcow2" "$p/"
chmod 0755 "$p" "$p/qcow2ctl"
chmod 0644 "$p/perm.qcow2" "$p/perm-base.qcow2"
as_nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$p/qcow2ctl" "$@"
}
if ! command -v setpriv >/dev/null; then
	t_log "no setpriv: the unreadable backing file is not tested"
elif ! out=$(as_nobody attach -r --dry-run "$p/perm.qcow2" 2>&1); then
	t_fail "perm: nobody cannot open a readable chain: $out"
else
	t_pass "perm: nobody opens the readable chain: ${out//$'\n'/; }"
	chmod 0600 "$p/perm-base.qcow2"
	if out=$(as_nobody attach -r --dry-run "$p/perm.qcow2" 2>&1); then
		t_fail "perm: nobody opened a 0600 backing file: $out"
	elif [[ $out == *"$p/perm-base.qcow2"* && $out == *"Permission denied"* ]]; then
		t_pass "perm: unreadable backing file refused: $out"
	else
		t_fail "perm: refused, but the message lacks the file or the reason: $out"
	fi
fi

t_done
