#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_fuzz.sh: a short bounded run of each libFuzzer target (tests/fuzz:
# fuzz_header, fuzz_chain; FUZZ_RUNS inputs each, 20000 by default) from
# their seed corpora. One line per target, "PASS name", "FAIL name: reason"
# or "SKIP name: reason" (no clang), then "N passed, N failed".
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
pass=0
fail=0

if ! command -v clang >/dev/null; then
	echo "SKIP fuzz: clang not found"
	echo "0 passed, 0 failed"
	exit 0
fi
if ! make -s -C "$top/tests/fuzz" all >/dev/null 2>&1; then
	echo "FAIL fuzz: building the fuzz targets failed"
	echo "0 passed, 1 failed"
	exit 1
fi

out=$(make -s -C "$top/tests/fuzz" run 2>&1)
rc=$?
for t in fuzz_header fuzz_chain; do
	if grep -q "^== $t" <<<"$out" &&
	   ! sed -n "/^== $t/,/^== /p" <<<"$out" | grep -qE "ERROR|crash-|leak"; then
		if sed -n "/^== $t/,/^== /p" <<<"$out" | grep -q "^Done"; then
			echo "PASS $t"
			pass=$((pass + 1))
			continue
		fi
	fi
	echo "FAIL $t: $(sed -n "/^== $t/,\$p" <<<"$out" | grep -m1 -E "ERROR|SUMMARY|crash-|Done" || echo "did not run")"
	fail=$((fail + 1))
done
[ $rc -ne 0 ] && [ $fail -eq 0 ] && { echo "FAIL fuzz: make run exit $rc"; fail=1; }
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
