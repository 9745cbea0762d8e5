#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test_crash.sh: power cuts while the engine writes (tests/tools/
# qcow2-crashsim.c has the model and the checks). Runs QB_CRASH_ITERATIONS
# cuts (default 10000) with seed QB_CRASH_SEED (default 1), with in-place
# writes in flight completing in any order, then a self-test: with flushes
# turned into no-ops the same checks must fail. Then the scripted race of
# an in-place write in flight with a discard that frees its cluster: clean
# with the drain callback, caught without it.
#
# One line per case, "PASS host/test_crash: NAME" or "FAIL host/test_crash:
# NAME: reason", then "N passed, N failed". A failure prints the seed and
# the replay command in the log.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
sim=$top/build/user/qcow2-crashsim
iters=${QB_CRASH_ITERATIONS:-10000}
seed=${QB_CRASH_SEED:-1}
pass=0
fail=0

result() {
	if [ "$1" = PASS ]; then
		echo "PASS host/test_crash: $2"
		pass=$((pass + 1))
	else
		echo "FAIL host/test_crash: $2: $3"
		fail=$((fail + 1))
	fi
}

if ! make -s -C "$top/tests/tools" write-tools >/dev/null 2>&1; then
	result FAIL build "make -C tests/tools write-tools"
	echo "$pass passed, $fail failed"
	exit 1
fi

out=$("$sim" --iterations "$iters" --seed "$seed" 2>&1)
rc=$?
echo "$out" | head -n 60
summary=$(tail -n 1 <<<"$out")
if [ $rc -eq 0 ]; then
	result PASS "cuts-$iters ($summary)"
else
	result FAIL "cuts-$iters" "exit $rc: $summary"
fi

# The checks must catch a disk that ignores flushes.
out=$("$sim" --iterations 300 --seed "$seed" --lying-disk 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -q '^FAIL ' <<<"$out"; then
	result PASS lying-disk-detected
else
	result FAIL lying-disk-detected "exit $rc: $(tail -n 1 <<<"$out")"
fi

# An in-place write in flight must not land on a freed, reused cluster.
out=$("$sim" --race --seed "$seed" 2>&1)
rc=$?
line=$(grep '^race:' <<<"$out")
if [ $rc -eq 0 ] && [[ $line == *" 0 failures" ]] &&
   ! [[ $line == "race: 0 kinds"* ]]; then
	result PASS "race-drain ($line)"
else
	echo "$out" | head -n 20
	result FAIL race-drain "exit $rc: $line"
fi
out=$("$sim" --race --no-drain --seed "$seed" 2>&1)
rc=$?
line=$(grep '^race:' <<<"$out")
if [ $rc -eq 1 ] && grep -q '^FAIL ' <<<"$out"; then
	result PASS "race-no-drain-detected ($line)"
else
	result FAIL race-no-drain-detected "exit $rc: $line"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
