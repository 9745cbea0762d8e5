#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# mark.sh EVDIR KIND JOB: guest side of the CPU-time handshake. Publishes
# EVDIR/JOB.KIND.req and waits up to 5 s for the host sampler's
# EVDIR/JOB.KIND.ack, written after it has read QEMU's CPU time. fio runs this just before a
# job's I/O starts (exec_prerun) and just after it ends (exec_postrun).
#
# Under TCG every fork costs a good fraction of a second, so the wait loop
# uses only builtins: read -t on a FIFO nobody writes (QP_FIFO, made by
# guest.sh) is a 20 ms sleep.
ev=$1
name=$3.$2

# One write(2) of a few bytes: the host retries if it reads it empty.
echo "$2 $3" >"$ev/$name.req"
exec 3<>"${QP_FIFO:?}"
start=${EPOCHREALTIME/./}
while [ $((${EPOCHREALTIME/./} - start)) -lt 5000000 ]; do
	[ -e "$ev/$name.ack" ] && exit 0
	read -r -t 0.02 -u 3 _
done
echo "mark.sh: no ack for $name" >&2
exit 1
