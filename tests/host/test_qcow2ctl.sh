#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_qcow2ctl.sh: what qcow2ctl does without the module: usage errors,
# size and device parsing, the engine precheck refusing images made with
# qemu-img, and the message when the module is not loaded. Runs the unit
# tests of its table and parsers first. One line per case, "PASS name" or
# "FAIL name: reason", then "N passed, N failed".
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
qemu-img create -q -f qcow2 --object secret,id=s0,data=pw \
	-o encrypt.format=luks,encrypt.key-secret=s0 luks.qcow2 64M
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
expect pre-corrupt 1 '^qcow2ctl: corrupt.qcow2: .*corrupt' \
	-- attach -r corrupt.qcow2
expect pre-unknown 1 '^qcow2ctl: unknown.qcow2: .*incompatible feature' \
	-- attach -r unknown.qcow2
expect pre-dirty-rw 1 '^qcow2ctl: dirty.qcow2: .*dirty' -- attach dirty.qcow2
expect pre-short 1 '^qcow2ctl: short.qcow2: file too small' \
	-- attach -r short.qcow2
expect pre-empty 1 '^qcow2ctl: empty.qcow2: file too small' \
	-- attach -r empty.qcow2

if $loaded; then
	echo "SKIP no-module: the qcow2blk module is loaded on this host"
else
	expect nomod-features 1 "$noload" -- features
	expect nomod-list 1 "$noload" -- list -J
	expect nomod-detach 1 "$noload" -- detach -a
	expect nomod-set 1 "$noload" -- set 0 --l2-cache 1M
	expect nomod-attach-v2 1 "$noload" -- attach -r --show v2.qcow2
	expect nomod-attach-dirty-ro 1 "$noload" -- attach -r dirty.qcow2
	QCOW2CTL_NO_PRECHECK=1 expect nomod-no-precheck 1 "$noload" \
		-- attach -r luks.qcow2
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
