#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything qcow2blk needs on a fresh Debian 12 machine: both target
# kernels with headers, QEMU, virtme-ng (from trixie), fio, libnl-3, Check.
#
# Extra suites reuse the mirror URI already configured in this machine's apt
# sources, so no registry host name is written anywhere.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup.sh: must run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# First "URIs:" (deb822) or "deb URI" (one-line) entry naming bookworm.
mirror_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk '$1 == "deb" && $0 ~ / bookworm / {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
}

uri=$(mirror_uri)
[ -n "$uri" ] || { echo "setup.sh: no bookworm entry in apt sources" >&2; exit 1; }

list=/etc/apt/sources.list.d/qcow2blk-extra.sources
if [ ! -f "$list" ]; then
	cat >"$list" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	# Trixie only when asked for by name (virtme-ng and what it needs).
	cat >/etc/apt/preferences.d/qcow2blk-trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 50
PIN
fi

apt-get update -q

# Kernel ABI names of the two targets, read from the archive, not hard-coded.
k61=$(apt-cache depends -t bookworm linux-image-amd64 | awk '/Depends: linux-image-6/ {print $2; exit}')
k612=$(apt-cache depends -t bookworm-backports linux-image-amd64 | awk '/Depends: linux-image-6/ {print $2; exit}')
[ -n "$k61" ] && [ -n "$k612" ] || { echo "setup.sh: cannot find kernel packages" >&2; exit 1; }

apt-get install -y -q --no-install-recommends \
	build-essential pkg-config git kmod cpio sparse \
	"$k61" "${k61/image/headers}" \
	qemu-system-x86 qemu-utils fio \
	libnl-3-dev libnl-genl-3-dev check \
	e2fsprogs xfsprogs util-linux procps busybox-static dmsetup \
	python3 python3-matplotlib zstd zlib1g-dev \
	rsync udev mount

apt-get install -y -q --no-install-recommends -t bookworm-backports \
	"$k612" "${k612/image/headers}"

# libzstd-dev with virtme-ng: that pulls trixie's libzstd1, and the -dev
# package must match it (qcow2-cat decompresses zstd clusters).
apt-get install -y -q --no-install-recommends -t trixie virtme-ng libzstd-dev

# checkpatch.pl is not in Debian's headers packages: take it (and the data
# files it reads) from the matching kernel source package, into the headers'
# scripts/ folder where kernel developers expect it.
hdr_common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | head -n 1)
if [ -n "$hdr_common" ] && [ ! -f "$hdr_common/scripts/checkpatch.pl" ]; then
	src_pkg=$(apt-cache depends -t bookworm linux-source | awk '/Depends: linux-source-6/ {print $2; exit}')
	apt-get install -y -q --no-install-recommends "$src_pkg" xz-utils
	tarball=$(ls /usr/src/linux-source-*.tar.xz | head -n 1)
	tmp=$(mktemp -d)
	tar -C "$tmp" -xJf "$tarball" --wildcards --no-anchored \
		'scripts/checkpatch.pl' 'scripts/spelling.txt' \
		'scripts/const_structs.checkpatch'
	cp "$tmp"/*/scripts/checkpatch.pl "$tmp"/*/scripts/spelling.txt \
		"$tmp"/*/scripts/const_structs.checkpatch "$hdr_common/scripts/"
	rm -rf "$tmp"
fi

echo "setup.sh: kernels: $(ls /lib/modules | tr '\n' ' ')"
