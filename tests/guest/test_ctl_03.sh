#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Image locks beside QEMU's own tools, both directions. While qcow2blk
# writes an image, qemu-io and qemu-img writes fail with QEMU's lock error,
# qemu-img info fails without -U and works with it, a read-only qemu-io of
# the backing file works and qemu-img commit into that backing file (from
# another overlay) fails; after detach every tool opens the image again.
# While qemu-storage-daemon or qemu-io holds an image for writing, every
# attach of it (read-write, read-only, as a backing file, through its data
# file) is refused with the lock message, and -r --force-share attaches it.
# No refused attach changes a byte of any file.
. "$(dirname "$0")/common.sh"

for c in qemu-img qemu-io qemu-storage-daemon sha256sum; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done

work=$QB_SCRATCH/ctl03
mkdir -p "$work"
cd "$work" || t_done

qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 other.qcow2
qemu-img create -q -f qcow2 -b top.qcow2 -F qcow2 o2.qcow2
qemu-img create -q -f qcow2 -o data_file="$work/ext.raw" ext.qcow2 16M
need_write top.qcow2

files=(base.qcow2 top.qcow2 other.qcow2 o2.qcow2 ext.qcow2 ext.raw)

# wait_lock INODE WHO: wait (10 s at most) for a lock on byte 100 of INODE
wait_lock() {
	local i

	for i in $(seq 1 100); do
		grep -q ":$1 100 " /proc/locks && return 0
		sleep 0.1
	done
	echo "$2 took no lock on inode $1" >&2
	return 1
}

# qsd_hold FILE OPTS: qemu-storage-daemon holding FILE (a qcow2 node over a
# file node with OPTS, e.g. read-only=on), once its locks are in place;
# the pid is in $qsd_pid.
qsd_pid=
qsd_hold() {
	local ino

	ino=$(stat -c %i "$1")
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=f,filename=$1${2:+,$2}" \
		--blockdev "driver=qcow2,node-name=q,file=f${2:+,$2}" \
		>"$work/qsd.log" 2>&1 &
	qsd_pid=$!
	wait_lock "$ino" qemu-storage-daemon
}

qsd_stop() {
	[ -n "$qsd_pid" ] || return 0
	kill "$qsd_pid" 2>/dev/null
	wait "$qsd_pid" 2>/dev/null
	qsd_pid=
}
trap 'qio_stop; qsd_stop; qb_cleanup' EXIT

# qio_hold FORMAT FILE: an interactive qemu-io with FILE open read-write,
# reading its commands from a fifo, once its locks are in place.
qio_pid=
qio_hold() {
	local ino

	ino=$(stat -c %i "$2")
	rm -f "$work/qio.in"
	mkfifo "$work/qio.in"
	qemu-io -f "$1" "$2" <"$work/qio.in" >"$work/qio.log" 2>&1 &
	qio_pid=$!
	exec 7>"$work/qio.in"
	wait_lock "$ino" qemu-io
}

qio_stop() {
	[ -n "$qio_pid" ] || return 0
	echo quit >&7
	exec 7>&-
	wait "$qio_pid" 2>/dev/null
	qio_pid=
}

# refused_locked DESCRIPTION ATTACH-ARGS...: the attach fails naming a lock
# and leaves every file byte-identical
refused_locked() {
	local what=$1

	shift
	attach_refused "$what" "image is locked by another process" \
		"${files[@]}" -- "$@"
}

# qemu_refused DESCRIPTION CMD...: CMD fails with QEMU's lock error
qemu_refused() {
	local what=$1 out

	shift
	if out=$("$@" 2>&1) && ! grep -q 'Failed to get' <<<"$out"; then
		t_fail "$what: QEMU went ahead: $out"
	elif grep -q 'Failed to get .*lock' <<<"$out"; then
		t_pass "$what: $(head -1 <<<"$out")"
	else
		t_fail "$what: failed, but not for the lock: $out"
	fi
}

# ---- qcow2blk writes: QEMU's tools are refused ---------------------------

dev=$(attach_rw top.qcow2) || { t_fail "attach top.qcow2 read-write"; t_done; }
qemu_refused "qemu-io write while attached read-write" \
	qemu-io -f qcow2 -c 'write 0 4k' top.qcow2
qemu_refused "qemu-io -r while attached read-write (it refuses our writer)" \
	qemu-io -r -f qcow2 -c 'read 0 4k' top.qcow2
qemu_refused "qemu-img info without -U" qemu-img info top.qcow2
t_check "qemu-img info -U works" qemu-img info -U top.qcow2 >/dev/null
qemu_refused "qemu-img resize" qemu-img resize top.qcow2 32M
qemu_refused "qemu-img snapshot -c" qemu-img snapshot -c s1 top.qcow2
qemu_refused "qemu-img commit of another overlay into our backing file" \
	qemu-img commit other.qcow2
t_check "qemu-io -r of the backing file works (readers share)" \
	qemu-io -r -f qcow2 -c 'read -P 0x5a 0 64k' base.qcow2 >/dev/null
refused_locked "a second read-write attach of the same image" top.qcow2
refused_locked "a read-only attach of the image attached read-write" -r top.qcow2
refused_locked "an overlay whose backing file is attached read-write" o2.qcow2
t_check "a second overlay on the same backing file attaches (readers share)" \
	bash -c "dev=\$(\"$QB_QCOW2CTL\" attach --show other.qcow2) && udevadm settle && \"$QB_QCOW2CTL\" detach \"\$dev\""
t_check "writes through the device" \
	dd if=/dev/urandom of="$dev" bs=64k count=16 oflag=direct conv=fsync status=none
detach "$dev" || t_fail "detach"
t_check "after detach qemu-io writes the image" \
	qemu-io -f qcow2 -c 'write -P 0x11 1M 4k' top.qcow2
t_check "after detach qemu-img info opens it" qemu-img info top.qcow2
t_check "after detach qemu-img commit into the backing file works" \
	qemu-img commit -q other.qcow2
t_check "qemu-img check is clean" qemu-img check -q top.qcow2

# read-only attach: readers share with readers, writers are refused
dev=$(attach_ro top.qcow2) || t_fail "attach -r"
if [ -n "$dev" ]; then
	t_check "qemu-io -r beside a read-only attach" \
		qemu-io -r -f qcow2 -c 'read 0 4k' top.qcow2 >/dev/null
	qemu_refused "qemu-io write beside a read-only attach" \
		qemu-io -f qcow2 -c 'write 0 4k' top.qcow2
	detach "$dev" || t_fail "detach the read-only device"
fi

# ---- QEMU writes: qcow2blk is refused ------------------------------------

if qsd_hold top.qcow2; then
	refused_locked "attach while qemu-storage-daemon writes it" top.qcow2
	refused_locked "attach -r while qemu-storage-daemon writes it" -r top.qcow2
		dev=$(attach_ro top.qcow2 --force-share) ||
		t_fail "attach -r --force-share beside the writer"
	if [ -n "$dev" ]; then
		t_check "--force-share: the device reads" \
			dd if="$dev" of=/dev/null bs=64k count=4 iflag=direct status=none
		detach "$dev"
	fi
	t_check_fails "--force-share without -r is refused" \
		qcow2ctl attach --force-share top.qcow2
	qsd_stop
else
	t_fail "qemu-storage-daemon on top.qcow2"
	qsd_stop
fi

# A writer of the backing file refuses every chain above it.
if qsd_hold base.qcow2; then
	refused_locked "an overlay while its backing file is written by QEMU" \
		top.qcow2
	qsd_stop
else
	t_fail "qemu-storage-daemon on base.qcow2"
	qsd_stop
fi

# A reader of the image (read-only qemu-storage-daemon) lets us read only.
if qsd_hold top.qcow2 read-only=on; then
	refused_locked "read-write attach beside a QEMU reader" top.qcow2
	dev=$(attach_ro top.qcow2) || t_fail "attach -r beside a QEMU reader"
	[ -n "$dev" ] && detach "$dev"
	qsd_stop
else
	t_fail "qemu-storage-daemon read-only on top.qcow2"
	qsd_stop
fi

# An interactive qemu-io holds the image as long as it runs.
if qio_hold qcow2 top.qcow2; then
	refused_locked "attach while an interactive qemu-io has it open" top.qcow2
else
	t_fail "interactive qemu-io on top.qcow2"
fi
qio_stop

# The external data file written by QEMU as a raw image.
if qio_hold raw ext.raw; then
	refused_locked "an image whose data file qemu-io holds for writing" \
		ext.qcow2
else
	t_fail "interactive qemu-io on ext.raw"
fi
qio_stop
dev=$(attach_rw ext.qcow2) || t_fail "attach the image with a data file"
if [ -n "$dev" ]; then
	qemu_refused "qemu-io write of the data file while attached" \
		qemu-io -f raw -c 'write 0 4k' ext.raw
	detach "$dev"
fi
dev=$(attach_rw top.qcow2) || t_fail "attach once qemu-io has quit"
[ -n "$dev" ] && detach "$dev"
t_check "no lock is left once every device is detached" \
	bash -c "! grep -qE ':($(stat -c %i top.qcow2)|$(stat -c %i base.qcow2)) ' /proc/locks"

t_done
