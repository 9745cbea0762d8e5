# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Reporting for the host tests that take case names on their command line
# (tests/host/test_write.sh, test_bitmap.sh). The test sets QB_SUITE (its
# name in result lines, e.g. host/test_write), sources this file and calls
# qb_cases "$@"; then:
#   result PASS NAME | result FAIL NAME REASON   one line per case
#   wanted NAME        is NAME to run (all, when no case was named)?
#   qb_summary         "N passed, N failed", exit status 1 on a failure

qb_pass=0
qb_fail=0
qb_only=()

qb_cases() {
	qb_only=("$@")
}

result() {
	if [ "$1" = PASS ]; then
		echo "PASS $QB_SUITE: $2"
		qb_pass=$((qb_pass + 1))
	else
		echo "FAIL $QB_SUITE: $2: $3"
		qb_fail=$((qb_fail + 1))
	fi
}

wanted() {
	local c

	[ ${#qb_only[@]} -eq 0 ] && return 0
	for c in "${qb_only[@]}"; do
		[ "$c" = "$1" ] && return 0
	done
	return 1
}

qb_summary() {
	echo "$qb_pass passed, $qb_fail failed"
	[ "$qb_fail" -eq 0 ]
}
