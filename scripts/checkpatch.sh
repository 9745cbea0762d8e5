#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# checkpatch --strict on the kernel-side sources (module, engine, uapi), run
# as it runs inside a kernel tree: identifiers the kernel's own headers
# declare (zlib_inflateInit2, ...) are learnt from include/ rather than
# reported as CamelCase. Prints findings; exits 1 if there are any.
set -u
cd "$(dirname "$0")/.." || exit 2
hdr=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | head -n 1)
cp="$hdr/scripts/checkpatch.pl"
[ -f "$cp" ] || { echo "checkpatch.sh: $cp missing (run scripts/setup.sh)" >&2; exit 2; }
files=${*:-$(ls kernel/*.c kernel/*.h lib/*.c lib/*.h uapi/*.h)}
# Without a git dir checkpatch seeds CamelCase names from $root/include.
out=$(GIT_DIR=/nonexistent perl "$cp" --root="$hdr" --no-tree --strict \
	--terse --show-types -f $files 2>&1 | grep -E 'ERROR|WARNING|CHECK')
if [ -n "$out" ]; then
	printf '%s\n' "$out"
	exit 1
fi
echo "checkpatch: clean ($(echo $files | wc -w) files)"
