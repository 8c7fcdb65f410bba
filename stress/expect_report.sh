#!/bin/sh
# SPDX-License-Identifier: MIT
# expect_report.sh PATTERN PROGRAM [ARGS...]
#
# A must-fail test that fails for the right reason: passes only if PROGRAM
# exits non-zero AND its output (stdout + stderr) contains PATTERN (a grep
# -E expression). A must-fail registered with meson's should_fail alone would
# also "pass" on a crash, a missing file or a typo in the arguments.
pattern=$1
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out" | tail -n 60
if [ "$rc" -eq 0 ]; then
  echo "expect_report: '$*' exited 0; expected a failure reporting /$pattern/"
  exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
  echo "expect_report: '$*' failed (exit $rc) but did not report /$pattern/"
  exit 1
fi
echo "expect_report: failed as expected (exit $rc), reporting /$pattern/"
