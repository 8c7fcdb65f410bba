#!/bin/sh
# expect-violation.sh CHECKER PATTERN
#
# Runs a generated Rumur checker for a must-fail variant and exits non-zero
# (so that meson's should_fail counts it as EXPECTEDFAIL) only if the checker
# failed BECAUSE of the expected violation: its exit status is non-zero and
# its report names an error matching the extended regular expression PATTERN.
# Any other outcome -- the checker passed, or failed for another reason (a
# different property, a deadlock, a model-bound assertion, a crash) -- exits
# 0, which meson reports as UNEXPECTEDPASS, failing the suite.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 CHECKER PATTERN" >&2
    exit 0
fi
out=$("$1" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 0 ]; then
    echo "expect-violation: the checker found no error; expected: $2"
    exit 0
fi
# The error line(s) rumur prints right after "the error trace for the error:".
err=$(printf '%s\n' "$out" | sed -n '/error trace for the error:/,/^Startstate/p')
if printf '%s\n' "$err" | grep -Eq -- "$2"; then
    echo "expect-violation: found the expected violation ($2)"
    exit 1
fi
echo "expect-violation: the checker failed (status $rc) for another reason; expected: $2"
exit 0
