#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Privilege. attach, detach and set need CAP_SYS_ADMIN: with it dropped
# (CAP_NET_ADMIN kept, which used to be enough) each is refused with EPERM
# and the kernel's reason, and changes nothing; list and features work
# without it, for an ordinary user too.
. "$(dirname "$0")/common.sh"

for c in qemu-img setpriv sha256sum; do
	command -v "$c" >/dev/null || t_skip "$c is not installed"
done

work=$QB_SCRATCH/ctl05
mkdir -p "$work"
img=$work/a.qcow2
qemu-img create -q -f qcow2 "$img" 16M
chmod 644 "$img"

# as_netadmin CMD...: CMD without CAP_SYS_ADMIN, with CAP_NET_ADMIN
as_netadmin() {
	setpriv --bounding-set -sys_admin --inh-caps -sys_admin -- "$@"
}

t_check "setpriv drops CAP_SYS_ADMIN and keeps CAP_NET_ADMIN" \
	as_netadmin bash -c '
		eff=$((16#$(awk "/^CapEff/ { print \$2 }" /proc/self/status)))
		[ $(((eff >> 21) & 1)) = 0 ] && [ $(((eff >> 12) & 1)) = 1 ]'

# eperm DESCRIPTION CMD...: CMD fails with the kernel's EPERM reason
eperm() {
	local what=$1 out

	shift
	if out=$("$@" 2>&1); then
		t_fail "$what: succeeded without CAP_SYS_ADMIN: $out"
	elif grep -q "needs CAP_SYS_ADMIN" <<<"$out"; then
		t_pass "$what: $out"
	else
		t_fail "$what: failed, but not for the capability: $out"
	fi
}

dev=$(attach_rw "$img") || { t_fail "attach as root"; t_done; }
qemu-img create -q -f qcow2 "$work/b.qcow2" 16M
chmod 644 "$work/b.qcow2"
s0=$(sha256sum "$img" "$work/b.qcow2")
eperm "attach without CAP_SYS_ADMIN" as_netadmin "$QB_QCOW2CTL" attach "$work/b.qcow2"
eperm "read-only attach without CAP_SYS_ADMIN" as_netadmin "$QB_QCOW2CTL" attach -r "$work/b.qcow2"
eperm "detach without CAP_SYS_ADMIN" as_netadmin "$QB_QCOW2CTL" detach "$dev"
eperm "set without CAP_SYS_ADMIN" as_netadmin "$QB_QCOW2CTL" set "$dev" --l2-cache 1M
t_check "the device is still attached" attached "$dev"
t_check "list works without CAP_SYS_ADMIN" \
	bash -c "setpriv --bounding-set -sys_admin -- \"$QB_QCOW2CTL\" list -n --raw -O NAME | grep -qx '$dev'"
t_check "features works without CAP_SYS_ADMIN" \
	as_netadmin "$QB_QCOW2CTL" features
t_check "list works for an ordinary user" \
	bash -c "setpriv --reuid 65534 --regid 65534 --clear-groups -- \"$QB_QCOW2CTL\" list -n --raw -O NAME | grep -qx '$dev'"
if out=$(setpriv --reuid 65534 --regid 65534 --clear-groups -- \
	"$QB_QCOW2CTL" detach "$dev" 2>&1); then
	t_fail "an ordinary user detached $dev"
else
	t_pass "an ordinary user cannot detach: $out"
fi
detach "$dev" || t_fail "detach as root"
t_check "the refused commands changed nothing" test "$s0" = "$(sha256sum "$img" "$work/b.qcow2")"
t_done
