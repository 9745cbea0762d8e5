#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The module-wide cache memory budget and the shrinker. With the budget set
# to 4 MiB (module parameter cache_budget_mb), 16 attaches that each ask for
# 64 MiB of L2 cache either attach with their caches made smaller (sysfs
# cache_shrunk 1, all charges within the budget, cache_used_kb their sum)
# or are refused naming the budget; every attached device reads right.
# Then memory pressure: drop_caches (which runs every shrinker) and a
# process allocating most of the guest's memory; the devices report slices
# given back (cache_released), reads and writes stay byte-exact and the
# kernel logs no I/O error.
. "$(dirname "$0")/common.sh"

command -v qemu-img >/dev/null || t_skip "qemu-img is not installed"
param=/sys/module/qcow2blk/parameters
[ -w "$param/cache_budget_mb" ] || t_skip "no cache_budget_mb parameter"

work=$QB_SCRATCH/ctl06
mkdir -p "$work"
cd "$work" || t_done
old_budget=$(cat "$param/cache_budget_mb")
trap 'qb_cleanup; echo "$old_budget" >"$param/cache_budget_mb"' EXIT

# 64 GiB on 4 KiB clusters: covering it takes 128 MiB of L2 cache, so a
# request for 64 MiB is taken as asked when the budget allows.
qemu-img create -q -f qcow2 -o cluster_size=4096 big.qcow2 64G
qemu-io -c 'write -P 0x5a 0 8M' -c 'write -P 0x5b 32G 8M' \
	-c 'write -P 0x5c 63G 8M' big.qcow2 >/dev/null
# dev_ok DEV: the three patterns and a hole read back through DEV
dev_ok() {
	local out

	out=$(qemu-io -r -f raw -t none -c 'read -P 0x5a 0 8M' \
		-c 'read -P 0x5b 32G 8M' -c 'read -P 0x5c 63G 8M' \
		-c 'read -P 0 16G 1M' "$1" 2>&1)
	[ "$(grep -c '^read ' <<<"$out")" = 4 ] && ! grep -qi fail <<<"$out"
}

echo 4 >"$param/cache_budget_mb"
kmsg "ctl06 budget"
devs=()
refused=0
for i in $(seq 1 16); do
	if dev=$(attach_ro big.qcow2 --l2-cache 64M 2>"$work/err"); then
		devs+=("$dev")
	else
		refused=$((refused + 1))
	fi
done
t_log "budget 4 MiB: ${#devs[@]} attached, $refused refused"
t_check "some devices attached within the budget" test "${#devs[@]}" -ge 1
if [ "$refused" -gt 0 ]; then
	if dmesg_since "ctl06 budget" | grep -q "cache memory budget exhausted" ||
	   grep -q "cache memory budget exhausted" "$work/err"; then
		t_pass "refusals name the budget"
	else
		t_fail "refused without naming the budget: $(cat "$work/err")"
	fi
fi
total=0
shrunk=0
for dev in "${devs[@]}"; do
	total=$((total + $(sysfs_attr "$dev" cache_charged_bytes)))
	[ "$(sysfs_attr "$dev" cache_shrunk)" = 1 ] && shrunk=$((shrunk + 1))
done
t_log "charged $total bytes; $shrunk of ${#devs[@]} shrunk; cache_used_kb $(cat "$param/cache_used_kb")"
t_check "the charges fit the budget" test "$total" -le $((4 << 20))
t_check "cache_used_kb is their sum" \
	test "$(cat "$param/cache_used_kb")" = $((total >> 10))
t_check "caches asking for 64 MiB were made smaller" \
	test "$shrunk" = "${#devs[@]}"
t_check "L2 caches within the budget" \
	test "$(sysfs_attr "${devs[0]}" l2_cache_bytes)" -lt $((4 << 20))
bad=0
for dev in "${devs[@]}"; do
	dev_ok "$dev" || bad=$((bad + 1))
done
t_check "every device reads right with shrunk caches ($bad bad)" test "$bad" = 0
if out=$(qcow2ctl set "${devs[0]}" --l2-cache 64M 2>&1); then
	t_fail "growing a cache past the budget was allowed"
elif grep -q "budget" <<<"$out" ||
     dmesg_since "ctl06 budget" | grep -q "budget"; then
	t_pass "growing a cache past the budget is refused: $out"
else
	t_fail "growing a cache past the budget: $out"
fi
t_check "a refused resize leaves the charges as they were" \
	test "$(cat "$param/cache_used_kb")" = $((total >> 10))
for dev in "${devs[@]}"; do
	detach "$dev"
done
t_check "detach gives the budget back" test "$(cat "$param/cache_used_kb")" = 0

# ---- memory pressure ------------------------------------------------------
echo 1024 >"$param/cache_budget_mb"
# 4 GiB on 4 KiB clusters with every L2 table there: reading one 4 KiB
# block every 2 MiB loads a new L2 slice each time.
qemu-img create -q -f qcow2 -o cluster_size=4096,preallocation=metadata \
	pre.qcow2 4G
qemu-io -c 'write -P 0x5a 0 8M' -c 'write -P 0x5b 3G 8M' pre.qcow2 >/dev/null
cp pre.qcow2 rw.qcow2
# pre_ok DEV: the patterns read back through DEV
pre_ok() {
	local out

	out=$(qemu-io -r -f raw -t none -c 'read -P 0x5a 0 8M' \
		-c 'read -P 0x5b 3G 8M' -c 'read -P 0 1G 1M' "$1" 2>&1)
	[ "$(grep -c '^read ' <<<"$out")" = 3 ] && ! grep -qi fail <<<"$out"
}
ro=$(attach_ro pre.qcow2 --l2-cache 16M) || { t_fail "attach ro"; t_done; }
rw=$(attach_rw rw.qcow2 --l2-cache 16M) || { t_fail "attach rw"; t_done; }
# Fill the caches: one 4 KiB read every 2 MiB maps a new L2 slice each.
fill() {
	local o args=()

	for o in $(seq 0 2 4000); do
		args+=(-c "read $((o << 20)) 4k")
	done
	qemu-io -r -f raw -t none "${args[@]}" "$1" >/dev/null
}
released() {
	echo $(($(sysfs_attr "$ro" cache_released) +
		$(sysfs_attr "$rw" cache_released)))
}
fill "$ro"
fill "$rw"
kmsg "ctl06 pressure"
r0=$(released)
echo 2 >/proc/sys/vm/drop_caches
r1=$(released)
t_log "drop_caches: slices released $r0 -> $r1"
t_check "drop_caches takes most cached slices back" test "$r1" -gt $((r0 + 1000))
fill "$ro"
fill "$rw"
# A process allocating (and touching) memory until the shrinker has taken
# slices back: until free memory is below the zones' low watermarks (where
# kswapd reclaims, and with nothing but anonymous and tmpfs memory about,
# goes deep enough to ask the shrinkers), never below 1.5 times their min
# watermarks (where the OOM killer could run); it holds what it got while
# the devices are written and read, until told to go.
python3 - "$work/hog" /sys/block/"${ro#/dev/}"/qcow2/cache_released \
	/sys/block/"${rw#/dev/}"/qcow2/cache_released <<'PY' &
import os, sys, time
mark, files = sys.argv[1], sys.argv[2:]
def released():
    return sum(int(open(f).read()) for f in files)
def free_kb():
    for l in open("/proc/meminfo"):
        if l.startswith("MemFree:"):
            return int(l.split()[1])
def watermark_kb(name):
    n = 0
    for l in open("/proc/zoneinfo"):
        w = l.split()
        if len(w) == 2 and w[0] == name:
            n += int(w[1])
    return 4 * n
start, chunks = released(), []
floor, low = watermark_kb("min") * 3 // 2, watermark_kb("low")
while released() == start and free_kb() > floor:
    mib = 16 if free_kb() > low + 256 * 1024 else 1
    b = bytearray(mib << 20)
    b[::4096] = b"\1" * len(b[::4096])
    chunks.append(b)
open(mark, "w").write("%d MiB (free %d MiB, low %d, floor %d), released %d -> %d\n" %
                      (sum(len(c) for c in chunks) >> 20, free_kb() >> 10,
                       low >> 10, floor >> 10, start, released()))
while os.path.exists(mark):
    time.sleep(0.2)
PY
hog=$!
for _ in $(seq 600); do
	[ -s "$work/hog" ] && break
	kill -0 "$hog" 2>/dev/null || break
	sleep 0.5
done
t_log "allocating: $(cat "$work/hog" 2>/dev/null)"
r2=$(released)
qemu-io -f raw -t none -c 'write -P 0x77 1G 4M' "$rw" >/dev/null
wrote=$(qemu-io -r -f raw -t none -c 'read -P 0x77 1G 4M' "$rw" 2>&1)
fill "$ro"
pre_ok "$ro"
ro_ok=$?
rm -f "$work/hog"
wait "$hog"
t_log "allocation pressure: slices released $r1 -> $r2"
t_check "memory pressure takes cached slices back" test "$r2" -gt "$r1"
t_check "reads under pressure are right" test "$ro_ok" = 0
t_check "writes under pressure read back" \
	test "$(grep -c '^read ' <<<"$wrote")" = 1
detach "$ro"
detach "$rw"
t_check "the written image is clean" qemu-img check -q rw.qcow2
if dmesg_since "ctl06 pressure" | grep -E "I/O error|error -?[0-9]+ while"; then
	t_fail "I/O errors in the kernel log under pressure"
else
	t_pass "no I/O error under pressure"
fi

t_done
