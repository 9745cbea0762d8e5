#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_qcow2ctl.sh: what qcow2ctl does without the module: usage errors,
# size and device parsing, the engine precheck refusing images made with
# qemu-img, backing chain and data file resolution (attach --dry-run),
# snapshot listing against qemu-img, and the message when the module is not
# loaded. Runs the unit tests of its table, parsers and path rules first.
# One line per case, "PASS name" or "FAIL name: reason", then
# "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
q=$top/qcow2ctl/qcow2ctl

make -s -C "$top" qcow2ctl-bin >/dev/null || { echo "FAIL build: qcow2ctl"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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

# expect NAME RC STDERR-REGEX -- ARGS...: exit code and the first stderr line
expect() {
	local name=$1 rc=$2 re=$3 got err
	shift 4
	"$q" "$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	err=$(head -n 1 "$tmp/err")
	if [ "$got" != "$rc" ]; then
		result FAIL "$name" "exit $got, want $rc ($err)"
	elif [ -n "$re" ] && ! [[ $err =~ $re ]]; then
		result FAIL "$name" "stderr '$err' does not match '$re'"
	else
		result PASS "$name"
	fi
}

if make -s -C "$top/qcow2ctl" check >"$tmp/unit" 2>&1; then
	result PASS unit
else
	result FAIL unit "$(tail -n 3 "$tmp/unit" | tr '\n' ' ')"
fi

# Patch bytes at OFFSET of a copy of IMG: patch IMG OUT OFFSET PRINTF-BYTES
patch() {
	cp "$1" "$2"
	printf "$4" | dd of="$2" bs=1 seek="$3" conv=notrunc status=none
}

cd "$tmp" || exit 1
qemu-img create -q -f qcow2 good.qcow2 64M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
qemu-img create -q -f qcow2 -b good.qcow2 -F qcow2 child.qcow2
# A short PBKDF time: the default (2 s) overflows the iteration count on
# fast CPUs and qemu-img then refuses to create the image.
# Its CPU clock can also step backwards on a busy virtual machine ("Unable
# to get accurate CPU usage"): a few tries.
for try in 1 2 3 4 5; do
	qemu-img create -q -f qcow2 --object secret,id=s0,data=pw \
		-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
		luks.qcow2 64M && break
done
[ -f luks.qcow2 ] ||
	echo "FAIL host/test_qcow2ctl: setup: qemu-img could not make luks.qcow2"
patch good.qcow2 magic.qcow2 0 'XXXX'
patch good.qcow2 cbits.qcow2 20 '\x00\x00\x00\x1f'
patch good.qcow2 dirty.qcow2 79 '\x01'
patch good.qcow2 corrupt.qcow2 79 '\x02'
patch good.qcow2 unknown.qcow2 79 '\x80'
head -c 100 good.qcow2 >short.qcow2
: >empty.qcow2

# Without the module every request that passes the precheck ends here.
noload='^qcow2ctl: kernel module qcow2blk is not loaded$'
loaded=false
[ -d /sys/module/qcow2blk ] && loaded=true

expect help 0 '' -- --help
expect version 0 '' -- --version
expect no-command 1 '^qcow2ctl: no command specified$' --
expect bad-command 1 "^qcow2ctl: unknown command 'frob'$" -- frob
expect bad-option 1 "^qcow2ctl: unrecognized option '--frob'$" -- list --frob
expect missing-arg 1 "^qcow2ctl: option '--l2-cache' requires an argument$" \
	-- attach good.qcow2 --l2-cache
expect size-suffix 1 "invalid size: '1KB'" -- attach --l2-cache 1KB good.qcow2
expect size-negative 1 "invalid size: '-1'" -- attach --l2-cache -1 good.qcow2
expect size-huge 1 "size too large" -- set 0 --l2-cache 99999999999T
expect index-bad 1 "invalid index: 'x'" -- attach --index x good.qcow2
expect no-image 1 'no image specified' -- attach
expect two-images 1 'only one image' -- attach good.qcow2 v2.qcow2
expect open-missing 1 '^qcow2ctl: nope.qcow2: open failed: No such file' \
	-- attach -r nope.qcow2
expect detach-none 1 'no device specified' -- detach
expect detach-all-dev 1 'takes no device' -- detach -a 0
expect detach-bad-dev 1 '^qcow2ctl: loop0: not a qcow2blk device$' \
	-- detach 0 loop0
expect detach-part 1 'qcow0p1: not a qcow2blk device' -- detach qcow0p1
expect list-file 1 'good.qcow2: not a qcow2blk device' -- list "$tmp/good.qcow2"
expect list-column 1 '^qcow2ctl: unknown column: foo$' -- list -O name,foo
expect list-json-raw 1 'mutually exclusive' -- list -J --raw
expect set-nothing 1 'nothing to set' -- set qcow0

expect pre-backing-ok 0 '' -- attach -r --dry-run child.qcow2
expect pre-luks 1 '^qcow2ctl: luks.qcow2: .*encrypted' -- attach -r luks.qcow2
expect pre-magic 1 '^qcow2ctl: magic.qcow2: not a qcow2 image' \
	-- attach -r magic.qcow2
expect pre-cluster-bits 1 '^qcow2ctl: cbits.qcow2: cluster_bits' \
	-- attach -r cbits.qcow2
expect pre-corrupt-rw 1 '^qcow2ctl: corrupt.qcow2: .*corrupt and cannot be written' \
	-- attach corrupt.qcow2
expect pre-corrupt-ro 0 '' -- attach -r --dry-run corrupt.qcow2
expect pre-unknown 1 '^qcow2ctl: unknown.qcow2: .*incompatible feature' \
	-- attach -r unknown.qcow2
expect pre-dirty-rw 1 '^qcow2ctl: dirty.qcow2: .*dirty' -- attach dirty.qcow2
expect pre-short 1 '^qcow2ctl: short.qcow2: file too small' \
	-- attach -r short.qcow2
expect pre-empty 1 '^qcow2ctl: empty.qcow2: file too small' \
	-- attach -r empty.qcow2

# ---- backing chains and data files (attach --dry-run) ----------------------

# expect_out NAME WANT-STDOUT -- ARGS...: exit 0 and exactly this output
expect_out() {
	local name=$1 want=$2 got
	shift 3
	if ! "$q" "$@" >"$tmp/out" 2>"$tmp/err"; then
		result FAIL "$name" "exit $?: $(head -n 1 "$tmp/err")"
		return
	fi
	got=$(cat "$tmp/out")
	if [ "$got" != "$want" ]; then
		result FAIL "$name" "got '$got', want '$want'"
	else
		result PASS "$name"
	fi
}

# Relative names compound down the chain: top in c/, the rest in c/sub/.
mkdir -p c/sub
qemu-img create -q -f raw c/sub/base.raw 16M
qemu-img create -q -f qcow2 -b base.raw -F raw c/sub/mid.qcow2
qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 c/top.qcow2
want="0 qcow2 $tmp/c/top.qcow2
1 qcow2 $tmp/c/sub/mid.qcow2
2 raw $tmp/c/sub/base.raw"
expect_out chain-relative "$want" -- attach -r --dry-run c/top.qcow2
(cd c/sub && "$q" attach -r --dry-run ../top.qcow2 >"$tmp/out2" 2>&1)
if [ "$(cat "$tmp/out2")" = "0 qcow2 $tmp/c/sub/../top.qcow2
1 qcow2 $tmp/c/sub/../sub/mid.qcow2
2 raw $tmp/c/sub/../sub/base.raw" ]; then
	result PASS chain-relative-cwd
else
	result FAIL chain-relative-cwd "$(head -n 1 "$tmp/out2")"
fi
expect_out chain-rw "$want" -- attach --dry-run c/top.qcow2
expect chain-agrees-qemu 0 '' -- attach -r --dry-run c/top.qcow2
qemu-img info --backing-chain c/top.qcow2 | sed -n 's/^image: //p' >"$tmp/qchain"
if [ "$(wc -l <"$tmp/qchain")" = 3 ] && [ -f "$(sed -n 3p "$tmp/qchain")" ]; then
	result PASS chain-qemu-sees-3
else
	result FAIL chain-qemu-sees-3 "$(tr '\n' ' ' <"$tmp/qchain")"
fi

# Backing format extension removed (type overwritten with an unknown one,
# which readers skip): the format is probed, with a warning.
noformat() {
	python3 - "$1" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    d = bytearray(f.read(65536))
    i = d.find(bytes.fromhex("e2792aca"))
    assert i > 0
    d[i:i + 4] = bytes.fromhex("0000aaaa")
    f.seek(0)
    f.write(d)
PY
}
cp c/sub/mid.qcow2 c/sub/mid-raw-probed.qcow2
noformat c/sub/mid-raw-probed.qcow2
qemu-img create -q -f qcow2 -b mid-raw-probed.qcow2 -F qcow2 \
	c/sub/top-probed.qcow2
expect_out chain-probed-raw "0 qcow2 $tmp/c/sub/top-probed.qcow2
1 qcow2 $tmp/c/sub/mid-raw-probed.qcow2
2 raw $tmp/c/sub/base.raw" -- attach -r --dry-run c/sub/top-probed.qcow2
expect chain-probed-warns 0 \
	"^qcow2ctl: warning: $tmp/c/sub/mid-raw-probed.qcow2: backing file $tmp/c/sub/base.raw: no format named, probed raw$" \
	-- attach -r --dry-run c/sub/top-probed.qcow2
cp c/top.qcow2 c/top-probed.qcow2
noformat c/top-probed.qcow2
expect_out chain-probed-qcow2 "0 qcow2 $tmp/c/top-probed.qcow2
1 qcow2 $tmp/c/sub/mid.qcow2
2 raw $tmp/c/sub/base.raw" -- attach -r --dry-run c/top-probed.qcow2
printf 'KDMV' | dd of=c/sub/base.vmdk bs=1 conv=notrunc status=none
truncate -s 1M c/sub/base.vmdk
qemu-img create -q -f qcow2 -b base.raw -F raw c/sub/on-vmdk.qcow2 16M
qemu-img rebase -u -b base.vmdk -F raw c/sub/on-vmdk.qcow2
noformat c/sub/on-vmdk.qcow2
expect chain-probed-vmdk 1 \
	"^qcow2ctl: c/sub/on-vmdk.qcow2: backing file $tmp/c/sub/base.vmdk: no format named, and it looks like vmdk" \
	-- attach -r --dry-run c/sub/on-vmdk.qcow2

# Refusals name the file as resolved and the image that names it.
qemu-img create -q -f qcow2 -b base.raw -F raw c/sub/fmt.qcow2 16M
qemu-img rebase -u -b base.raw -F vmdk c/sub/fmt.qcow2
expect chain-format-vmdk 1 \
	"^qcow2ctl: c/sub/fmt.qcow2: backing file $tmp/c/sub/base.raw: format 'vmdk' not supported" \
	-- attach -r --dry-run c/sub/fmt.qcow2
qemu-img create -q -f qcow2 -b base.raw -F raw c/sub/nbd.qcow2 16M
qemu-img rebase -u -b nbd:localhost:10809 -F raw c/sub/nbd.qcow2
expect chain-protocol 1 \
	"^qcow2ctl: c/sub/nbd.qcow2: backing file 'nbd:localhost:10809': protocol prefixes are not supported" \
	-- attach -r --dry-run c/sub/nbd.qcow2
qemu-img create -q -f qcow2 -b base.raw -F raw c/sub/gone.qcow2 16M
qemu-img rebase -u -b nothere.qcow2 -F qcow2 c/sub/gone.qcow2
qemu-img create -q -f qcow2 -b sub/gone.qcow2 -F qcow2 -u c/top-gone.qcow2 16M
expect chain-missing 1 \
	"^qcow2ctl: $tmp/c/sub/gone.qcow2: backing file $tmp/c/sub/nothere.qcow2: No such file or directory$" \
	-- attach -r --dry-run c/top-gone.qcow2
mkdir c/sub/nothere.qcow2
expect chain-directory 1 \
	"^qcow2ctl: $tmp/c/sub/gone.qcow2: backing file $tmp/c/sub/nothere.qcow2: Is a directory$" \
	-- attach -r --dry-run c/top-gone.qcow2
rmdir c/sub/nothere.qcow2
mkfifo c/sub/nothere.qcow2
expect chain-fifo 1 'backing file .*/nothere.qcow2: not a regular file' \
	-- attach -r --dry-run c/top-gone.qcow2
rm c/sub/nothere.qcow2

# Unreadable: root reads anything, so drop to nobody for this one.
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
	cp c/sub/base.raw c/sub/secret.raw
	qemu-img create -q -f qcow2 -b secret.raw -F raw c/sub/on-secret.qcow2
	chmod 000 c/sub/secret.raw
	chmod 755 "$tmp"
	setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$q" attach -r --dry-run "$tmp/c/sub/on-secret.qcow2" \
		>"$tmp/out" 2>"$tmp/err"
	rc=$?
	chmod 700 "$tmp"
	if [ $rc = 1 ] && grep -q "^qcow2ctl: $tmp/c/sub/on-secret.qcow2: backing file $tmp/c/sub/secret.raw: Permission denied$" "$tmp/err"; then
		result PASS chain-unreadable
	else
		result FAIL chain-unreadable "exit $rc: $(head -n 1 "$tmp/err")"
	fi
else
	echo "SKIP chain-unreadable: needs root and setpriv"
fi

# Loops, made with rebase -u: a layer naming an earlier one, or itself.
qemu-img create -q -f qcow2 loop-a.qcow2 16M
qemu-img create -q -f qcow2 -b loop-a.qcow2 -F qcow2 loop-b.qcow2
qemu-img rebase -u -b loop-b.qcow2 -F qcow2 loop-a.qcow2
expect chain-loop 1 \
	"^qcow2ctl: $tmp/loop-b.qcow2: backing chain loop: $tmp/loop-a.qcow2 is also layer 0$" \
	-- attach -r --dry-run loop-a.qcow2
qemu-img create -q -f qcow2 loop-self.qcow2 16M
qemu-img rebase -u -b loop-self.qcow2 -F qcow2 loop-self.qcow2
expect chain-loop-self 1 'backing chain loop: .*/loop-self.qcow2 is also layer 0$' \
	-- attach -r --dry-run loop-self.qcow2
# The same file under another name is still the same layer.
qemu-img create -q -f qcow2 loop-s1.qcow2 16M
qemu-img create -q -f qcow2 -b loop-s1.qcow2 -F qcow2 loop-s2.qcow2
ln -s loop-s1.qcow2 loop-link.qcow2
qemu-img rebase -u -b loop-s2.qcow2 -F qcow2 loop-s1.qcow2
qemu-img rebase -u -b loop-link.qcow2 -F qcow2 loop-s2.qcow2
expect chain-loop-symlink 1 \
	"^qcow2ctl: $tmp/loop-s2.qcow2: backing chain loop: $tmp/loop-link.qcow2 is also layer 0$" \
	-- attach -r --dry-run loop-s1.qcow2

# Six layers, the base raw.
qemu-img create -q -f raw six0.raw 16M
want="5 raw $tmp/six0.raw"
prev=six0.raw
pfmt=raw
for i in 1 2 3 4 5; do
	qemu-img create -q -f qcow2 -b "$prev" -F $pfmt "six$i.qcow2"
	want="$((5 - i)) qcow2 $tmp/six$i.qcow2
$want"
	prev=six$i.qcow2
	pfmt=qcow2
done
expect_out chain-6-layers "$want" -- attach -r --dry-run six5.qcow2

# QCOW2BLK_MAX_LAYERS (1000) layers are fine, one more is refused. Copies
# of one image with the backing name patched: qemu-img would take a minute.
qemu-img create -q -f qcow2 deep/l0000.qcow2 1M 2>/dev/null ||
	{ mkdir deep && qemu-img create -q -f qcow2 deep/l0000.qcow2 1M; }
qemu-img create -q -f qcow2 -b l0000.qcow2 -F qcow2 deep/tmpl.qcow2
python3 - deep <<'PY'
import sys
d = sys.argv[1]
t = open(d + "/tmpl.qcow2", "rb").read()
i = t.index(b"l0000.qcow2")
for n in range(1, 1001):
    b = bytearray(t)
    b[i:i + 11] = b"l%04d.qcow2" % (n - 1)
    open(d + "/l%04d.qcow2" % n, "wb").write(b)
PY
"$q" attach -r --dry-run deep/l0999.qcow2 >"$tmp/out" 2>"$tmp/err"
if [ $? = 0 ] && [ "$(wc -l <"$tmp/out")" = 1000 ] &&
   [ "$(tail -n 1 "$tmp/out")" = "999 qcow2 $tmp/deep/l0000.qcow2" ]; then
	result PASS chain-1000-layers
else
	result FAIL chain-1000-layers "$(head -n 1 "$tmp/err")"
fi
expect chain-1001-layers 1 \
	'^qcow2ctl: deep/l1000.qcow2: backing chain longer than 1000 layers$' \
	-- attach -r --dry-run deep/l1000.qcow2

# External data files, raw and not: named relative to the current
# directory, as QEMU opens them.
mkdir dd
(cd dd && qemu-img create -q -f qcow2 \
	-o data_file="$tmp/dd/base.data",data_file_raw=on base.qcow2 16M &&
	qemu-img create -q -f qcow2 -o data_file=top.data,data_file_raw=off \
	-b base.qcow2 -F qcow2 top.qcow2 16M &&
	cp top.qcow2 unnamed.qcow2 && qemu-img amend -o data_file= unnamed.qcow2)
(cd dd && "$q" attach -r --dry-run top.qcow2 >"$tmp/out" 2>"$tmp/err")
if [ "$(cat "$tmp/out")" = "0 qcow2 $tmp/dd/top.qcow2 $tmp/dd/top.data
1 qcow2 $tmp/dd/base.qcow2 $tmp/dd/base.data" ]; then
	result PASS data-file-chain
else
	result FAIL data-file-chain "$(head -n 1 "$tmp/out") $(head -n 1 "$tmp/err")"
fi
expect data-file-cwd 1 \
	"^qcow2ctl: dd/top.qcow2: data file $tmp/top.data: No such file or directory$" \
	-- attach -r --dry-run dd/top.qcow2
expect_out data-file-option "0 qcow2 $tmp/dd/top.qcow2 $tmp/dd/top.data
1 qcow2 $tmp/dd/base.qcow2 $tmp/dd/base.data" \
	-- attach -r --dry-run --data-file dd/top.data dd/top.qcow2
expect data-file-unnamed 1 \
	'^qcow2ctl: dd/unnamed.qcow2: image has an external data file but does not name it; name it with --data-file$' \
	-- attach -r --dry-run dd/unnamed.qcow2
expect data-file-not-wanted 1 \
	'^qcow2ctl: good.qcow2: --data-file given, but the image has no external data file$' \
	-- attach -r --dry-run --data-file dd/top.data good.qcow2

# ---- snapshots ---------------------------------------------------------------

qemu-img create -q -f qcow2 snap.qcow2 16M
qemu-img snapshot -c first snap.qcow2
qemu-io -c 'write -P 1 0 64k' snap.qcow2 >/dev/null
qemu-img snapshot -c 'two words' snap.qcow2
qemu-img snapshot -c 1 snap.qcow2
# Same snapshots, fields and dates as qemu-img (dates in UTC here).
TZ=UTC "$q" snapshots -J snap.qcow2 >"$tmp/ours" 2>"$tmp/err"
qemu-img info --output=json snap.qcow2 >"$tmp/theirs"
if python3 - "$tmp/ours" "$tmp/theirs" <<'PY'
import json, sys, time
ours = json.load(open(sys.argv[1]))["snapshots"]
theirs = json.load(open(sys.argv[2]))["snapshots"]
assert len(ours) == len(theirs) == 3, (ours, theirs)
for o, t in zip(ours, theirs):
    clock = t["vm-clock-sec"]
    assert o["id"] == t["id"] and o["name"] == t["name"], (o, t)
    assert o["vm-size"] == t["vm-state-size"], (o, t)
    assert o["date"] == time.strftime("%Y-%m-%d %H:%M:%S",
                                      time.gmtime(t["date-sec"])), (o, t)
    assert o["vm-clock"] == "%02d:%02d:%02d.%03d" % (
        clock // 3600, clock // 60 % 60, clock % 60,
        t["vm-clock-nsec"] // 1000000), (o, t)
    assert o["disk-size"] == 16 << 20, o
PY
then
	result PASS snapshots-vs-qemu-img
else
	result FAIL snapshots-vs-qemu-img "$(head -n 1 "$tmp/err")"
fi
qemu-img snapshot -l snap.qcow2 | awk 'NR > 2 { print $1 }' >"$tmp/theirs"
"$q" snapshots -n --raw -O id snap.qcow2 >"$tmp/ours"
if cmp -s "$tmp/ours" "$tmp/theirs"; then
	result PASS snapshots-ids-vs-l
else
	result FAIL snapshots-ids-vs-l "$(tr '\n' ' ' <"$tmp/ours")"
fi
expect_out snapshots-raw 'first
two\x20words
1' -- snapshots -n --raw -O name snap.qcow2
expect_out snapshots-none '' -- snapshots good.qcow2
expect_out snapshots-none-json '{
   "snapshots": []
}' -- snapshots -J good.qcow2
expect snapshots-column 1 '^qcow2ctl: unknown column: size$' \
	-- snapshots -O id,size snap.qcow2
expect snapshots-not-qcow2 1 '^qcow2ctl: magic.qcow2: not a qcow2 image' \
	-- snapshots magic.qcow2
expect snapshot-missing 1 "^qcow2ctl: snap.qcow2: no snapshot with ID or name 'nope'$" \
	-- attach -r --snapshot nope snap.qcow2
expect snapshot-by-name 0 '' -- attach -r --dry-run --snapshot 'two words' snap.qcow2
expect snapshot-by-id 0 '' -- attach -r --dry-run --snapshot 3 snap.qcow2
expect snapshot-rw 1 '^qcow2ctl: attach: --snapshot needs --read-only$' \
	-- attach --snapshot 1 snap.qcow2
expect map-cache-bad 1 "invalid size: 'x'" -- attach --map-cache x good.qcow2

if $loaded; then
	echo "SKIP no-module: the qcow2blk module is loaded on this host"
else
	expect nomod-features 1 "$noload" -- features
	expect nomod-list 1 "$noload" -- list -J
	expect nomod-detach 1 "$noload" -- detach -a
	expect nomod-set 1 "$noload" -- set 0 --l2-cache 1M
	expect nomod-attach-v2 1 "$noload" -- attach -r --show v2.qcow2
	expect nomod-attach-dirty-ro 1 "$noload" -- attach -r dirty.qcow2
	expect nomod-attach-chain 1 "$noload" -- attach -r c/top.qcow2
	expect nomod-attach-snapshot 1 "$noload" \
		-- attach -r --snapshot first --map-cache 1M snap.qcow2
	QCOW2CTL_NO_PRECHECK=1 expect nomod-no-precheck 1 "$noload" \
		-- attach -r luks.qcow2
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
