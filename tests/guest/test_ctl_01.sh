#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2ctl against the module: features, attach --index, list in table, raw
# and JSON form, the GET_INFO ioctl, sysfs, a read-only device refusing
# writes, detach refused while the device is open, rmmod refused while a
# device is attached, detach of a missing device, detach -a.
. "$(dirname "$0")/common.sh"

[ -s "$QB_IMAGES/MANIFEST" ] || t_skip "no image matrix (MANIFEST)"

img_a=$QB_IMAGES/v3.qcow2
ref_a=$QB_IMAGES/v3.raw
img_b=$QB_IMAGES/cluster-65536.qcow2
ref_b=$QB_IMAGES/cluster-65536.raw
for f in "$img_a" "$ref_a" "$img_b" "$ref_b"; do
	[ -f "$f" ] || t_skip "image $f not in the matrix"
done

# ---- features -----------------------------------------------------------

out=$(qcow2ctl features 2>&1)
t_log "features: $(echo "$out" | tr '\n' ' ')"
if grep -q '^version: [0-9]' <<<"$out" &&
   grep -q '^flags: 0x[0-9a-f]*.*read-only' <<<"$out" &&
   grep -q '^flags: .*buffered' <<<"$out"; then
	t_pass "features names version and the read-only and buffered flags"
else
	t_fail "features output: $out"
fi

# ---- attach, list -----------------------------------------------------

t_check "nothing attached at start" test -z "$(qcow2ctl list -n --raw -O name)"

dev_a=$(attach_ro "$img_a") || t_fail "attach $img_a"
dev_b=$(attach_ro "$img_b" --index 5) || t_fail "attach --index 5 $img_b"
t_check "attach --index 5 gives /dev/qcow5" test "$dev_b" = /dev/qcow5
[ -b "$dev_a" ] && [ -b "$dev_b" ] || { t_fail "no devices to go on with"; t_done; }

table=$(qcow2ctl list)
t_log "list:"
echo "$table" | sed 's/^/    /'
t_check "list has a heading and two devices" \
	test "$(echo "$table" | wc -l)" = 3
# heading_has WORD...: the heading line has these column names
heading_has() {
	local w

	for w in "$@"; do
		head -n 1 <<<"$table" | grep -qw -- "$w" || return 1
	done
}
t_check "list heading names the columns" \
	heading_has NAME IMAGE SIZE CLUSTER VERSION RO DIO L2CACHE

raw=$(qcow2ctl list -n --raw -O name,image,size,ro "$dev_a")
t_check "list --raw -O name,image,size,ro $dev_a" \
	test "$raw" = "$dev_a $img_a $(stat -c %s "$ref_a") 1"

json=$(qcow2ctl list -J)
t_log "list -J: $json"
valid_json() {
	python3 -m json.tool >/dev/null <<<"$1"
}
t_check "list -J is valid JSON" valid_json "$json"
# The JSON must agree with the images: names, paths, sizes, read-only.
check_json() {
	python3 - "$1" "$dev_a" "$img_a" "$(stat -c %s "$ref_a")" \
		"$dev_b" "$img_b" "$(stat -c %s "$ref_b")" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
devs = {d["name"]: d for d in doc["qcowdevices"]}
ok = len(devs) == 2
for name, image, size in (sys.argv[2:5], sys.argv[5:8]):
    d = devs.get(name)
    ok = ok and d is not None and d["image"] == image and \
        d["size"] == int(size) and d["ro"] is True and \
        isinstance(d["cluster"], int) and d["version"] in (2, 3)
sys.exit(0 if ok else 1)
PY
}
t_check "list -J names both devices with image, size, ro" check_json "$json"
t_check "list -J DEV shows one device" python3 -c '
import json, sys
sys.exit(len(json.load(sys.stdin)["qcowdevices"]) != 1)' \
	<<<"$(qcow2ctl list -J "$dev_b")"

# ---- ioctl and sysfs ------------------------------------------------------

# struct qcow2blk_info is 80 bytes; QCOW2BLK_IOC_GET_INFO = _IOWR(0xc2, 1, it)
get_info() {
	python3 - "$1" <<'PY'
import fcntl, os, struct, sys
fmt = "=IIQQQQII4Q"
req = (3 << 30) | (struct.calcsize(fmt) << 16) | (0xc2 << 8) | 1
fd = os.open(sys.argv[1], os.O_RDONLY)
buf = bytearray(struct.pack(fmt, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
fcntl.ioctl(fd, req, buf)
v = struct.unpack(fmt, buf)
print("version=%d index=%d flags=%d state=%d size=%d l2=%d cluster=%d fmt=%d"
      % v[:8])
PY
}
info=$(get_info "$dev_b" 2>&1)
t_log "GET_INFO $dev_b: $info"
t_check "GET_INFO: index 5, read-only flag, size, cluster" grep -q \
	"^version=1 index=5 flags=[13] state=[0-9]* size=$(stat -c %s "$ref_b") l2=[0-9]* cluster=65536 fmt=3$" \
	<<<"$info"

sz=$(sysfs_attr "$dev_a" virtual_size_bytes)
t_check "sysfs virtual_size_bytes matches the image" \
	test "$sz" = "$(stat -c %s "$ref_a")"
t_check "sysfs image_path is the image" \
	test "$(sysfs_attr "$dev_a" image_path)" = "$img_a"
t_check "sysfs format_version 3" test "$(sysfs_attr "$dev_a" format_version)" = 3
t_check "blockdev --getsize64 matches" \
	test "$(blockdev --getsize64 "$dev_a")" = "$(stat -c %s "$ref_a")"
t_check "blockdev --getro is 1" test "$(blockdev --getro "$dev_a")" = 1

# ---- read-only --------------------------------------------------------

t_check_fails "direct write to the read-only device fails" \
	dd if=/dev/zero of="$dev_a" bs=4096 count=1 oflag=direct \
	conv=notrunc status=none
t_check_fails "buffered write + fsync to the read-only device fails" \
	dd if=/dev/zero of="$dev_a" bs=4096 count=1 conv=notrunc,fsync \
	status=none
t_check_fails "blkdiscard on the read-only device fails" blkdiscard "$dev_a"
echo 3 >/proc/sys/vm/drop_caches
if out=$(compare "$dev_a" "$ref_a" 2>&1); then
	t_pass "device unchanged after the write attempts"
else
	t_fail "device changed after the write attempts: $out"
fi

# ---- busy -------------------------------------------------------------

exec 3<"$dev_a"
out=$(qcow2ctl detach "$dev_a" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -qiE 'busy|open' <<<"$out"; then
	t_pass "detach of an open device refused: $out"
else
	t_fail "detach of an open device: exit $rc: $out"
fi
t_check "still attached while open" attached "$dev_a"
exec 3<&-

out=$(rmmod qcow2blk 2>&1)
if [ $? -eq 0 ]; then
	t_fail "rmmod succeeded with devices attached"
	insmod "$QB_KO" || t_fail "reloading the module failed"
else
	t_pass "rmmod refused while devices are attached: $out"
fi

out=$(qcow2ctl detach qcow9 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -qiE 'no such device|not attached' <<<"$out"; then
	t_pass "detach of a missing device refused: $out"
else
	t_fail "detach qcow9: exit $rc: $out"
fi

# ---- detach -a ----------------------------------------------------------

settle
t_check "detach -a" qcow2ctl detach -a
t_check "list empty after detach -a" test -z "$(qcow2ctl list)"
t_check "list -J after detach -a is an empty array" python3 -c '
import json, sys
sys.exit(json.load(sys.stdin)["qcowdevices"] != [])' <<<"$(qcow2ctl list -J)"
# gone DEV...: the nodes disappear (devtmpfs; give udev a moment)
gone() {
	local _

	for _ in $(seq 1 50); do
		[ ! -e "$1" ] && [ ! -e "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
t_check "device nodes gone" gone "$dev_a" "$dev_b"
t_check "detach -a with nothing attached succeeds" qcow2ctl detach -a

t_done
