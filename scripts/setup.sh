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

# Unstable and experimental for the newest kernel headers only: pinned so
# that nothing comes from them unless named with its suite.
newest_list=/etc/apt/sources.list.d/qcow2blk-newest.sources
if [ ! -f "$newest_list" ]; then
	cat >"$newest_list" <<SRC
Types: deb
URIs: $uri
Suites: unstable experimental
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	cat >/etc/apt/preferences.d/qcow2blk-newest <<PIN
Package: *
Pin: release a=unstable
Pin-Priority: 1

Package: *
Pin: release a=experimental
Pin-Priority: 1
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

# The newest kernel headers Debian ships (unstable or experimental, whichever
# is newer), for a W=1 build that keeps the compat layer honest. They are
# unpacked under $newest_root, not installed: their kbuild tools need
# libraries (libelf1t64) whose installation would remove bookworm's QEMU.
# Installed: the compiler they name (unstable's gcc-N-for-host, beside
# gcc-12) and trixie's binutils (an assembler that knows what gcc-N
# emits). $newest_root/env tells tests/run where they are. Failing here is
# not fatal: the build step then has only the two targets.
newest_root=/opt/qcow2blk-newest
newest_headers() {
	local line ver suite pkg gcc kver dir deb n

	line=$(apt-cache madison linux-headers-amd64 |
		awk -F'|' '{gsub(/ /, "", $2); split($3, u, " ");
			    print $2, u[2]}' | sort -V -k1,1 | tail -n 1)
	ver=${line%% *}
	suite=${line#* }
	suite=${suite%%/*}
	pkg=$(apt-cache show "linux-headers-amd64=$ver" |
		sed -n 's/^Depends: .*\(linux-headers-[0-9][^ ,]*\).*/\1/p' | head -n 1)
	gcc=$(apt-cache show "$pkg=$ver" | sed -n 's/^Depends: //p' |
		tr ',' '\n' | grep -o 'gcc-[0-9]*-for-host' | head -n 1)
	[ -n "$pkg" ] && [ -n "$suite" ] || return 1
	kver=${pkg#linux-headers-}
	echo "setup.sh: newest headers: $pkg $ver ($suite), ${gcc:-no compiler named}"
	apt-get install -y -q --no-install-recommends -t trixie binutils ||
		return 1
	# clang links with the newest GCC's libstdc++: it must be complete.
	if [ -n "$gcc" ]; then
		n=${gcc#gcc-}
		n=${n%%-*}
		apt-get install -y -q --no-install-recommends "$gcc/unstable" \
			"libstdc++-$n-dev/unstable" || return 1
	fi
	dir=$(mktemp -d)
	(cd "$dir" && apt-get download "$pkg/$suite" \
		"linux-headers-${kver%-*}-common/$suite" \
		"linux-kbuild-${kver%-*}/$suite" libelf1t64/trixie) || return 1
	rm -rf "$newest_root"
	mkdir -p "$newest_root"
	for deb in "$dir"/*.deb; do
		dpkg -x "$deb" "$newest_root" || return 1
	done
	rm -rf "$dir"
	# The headers name their common half by its installed path.
	sed -i "s|/usr/src/|$newest_root/usr/src/|g" \
		"$newest_root/usr/src/linux-headers-$kver/Makefile"
	cat >"$newest_root/env" <<ENV
QB_NEWEST_KVER=$kver
QB_NEWEST_KDIR=$newest_root/usr/src/linux-headers-$kver
QB_NEWEST_LIBS=$newest_root/usr/lib/x86_64-linux-gnu
ENV
}
newest_headers || echo "setup.sh: the newest kernel headers could not be set up" >&2

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
