#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build and test magpool in three configurations and summarise.
#
#   build/release  default options (buildtype=release)      all suites
#   build/asan     -Db_sanitize=address,undefined           all suites
#   build/tsan     -Db_sanitize=thread                      what is registered there:
#                  the stress programs only (Criterion cannot run under TSan,
#                  Criterion issue #274; see docs/tsan.md)
#
# Usage: scripts/test.sh            (from any directory)
# Environment:
#   MAGPOOL_BUILDS="release asan tsan"   subset / order of builds to run
#   MAGPOOL_SKIP_DEPS=1                  do not run scripts/deps.sh
#   MESON_TEST_EXTRA="--suite stress"    extra arguments for every `meson test`
#
# The last line of output is exactly "N passed, N failed" (sum over builds,
# from each build's meson-logs/testlog.json). Skipped and timed-out tests
# count as failed (a skipped test is a defect here), so do builds that fail
# to configure or compile and builds that register no test at all. The exit
# status is non-zero on any failure, and when no test ran at all.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILDS=(${MAGPOOL_BUILDS:-release asan tsan})
# shellcheck disable=SC2206
EXTRA=(${MESON_TEST_EXTRA:-})

# Sanitizer runtime options: any report fails the test.
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:exitcode=66}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

T_START=$(date +%s)
declare -A BUILD_STATUS BUILD_TIMES

phase() { printf '\n==== %s ====\n' "$*"; }

if [ "${MAGPOOL_SKIP_DEPS:-0}" != 1 ]; then
  phase "dependencies"
  t0=$(date +%s)
  if ! bash "$ROOT/scripts/deps.sh"; then
    echo "test.sh: scripts/deps.sh failed" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "deps: $(( $(date +%s) - t0 )) s"
fi

options_for() {
  case "$1" in
    release) echo "-Dbuildtype=release -Db_sanitize=none -Db_lundef=true" ;;
    asan)    echo "-Db_sanitize=address,undefined -Db_lundef=false" ;;
    tsan)    echo "-Db_sanitize=thread -Db_lundef=false" ;;
    *)       echo "test.sh: unknown build '$1'" >&2; return 1 ;;
  esac
}

# Configure: reuse an existing build dir (--reconfigure applies the options
# again), fall back to --wipe when that fails (e.g. another meson version).
configure() {
  local dir=$1; shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
  else
    rm -rf "$dir"
    meson setup "$dir" "$@"
  fi
}

for b in "${BUILDS[@]}"; do
  dir="build/$b"
  # shellcheck disable=SC2207
  opts=($(options_for "$b")) || { BUILD_STATUS[$b]="bad-build-name"; continue; }
  rm -f "$dir/meson-logs/testlog.json"   # never count a stale log

  phase "$b: configure (${opts[*]})"
  t0=$(date +%s)
  if ! configure "$dir" "${opts[@]}"; then
    BUILD_STATUS[$b]="configure-failed"; BUILD_TIMES[$b]="configure $(( $(date +%s) - t0 ))s"
    continue
  fi
  t1=$(date +%s)

  phase "$b: compile"
  if ! ninja -C "$dir"; then
    BUILD_STATUS[$b]="compile-failed"
    BUILD_TIMES[$b]="configure $((t1 - t0))s, compile $(( $(date +%s) - t1 ))s"
    continue
  fi
  t2=$(date +%s)

  phase "$b: test"
  meson test -C "$dir" --no-rebuild --print-errorlogs "${EXTRA[@]}"
  rc=$?
  t3=$(date +%s)
  BUILD_STATUS[$b]="tested(rc=$rc)"
  BUILD_TIMES[$b]="configure $((t1 - t0))s, compile $((t2 - t1))s, test $((t3 - t2))s"
done

phase "summary"
status_args=()
for b in "${BUILDS[@]}"; do
  status_args+=("$b|${BUILD_STATUS[$b]:-not-run}|${BUILD_TIMES[$b]:-}")
done

python3 - "$ROOT" "$(( $(date +%s) - T_START ))" "${status_args[@]}" <<'PY'
import json, os, sys

root, total_time, builds = sys.argv[1], sys.argv[2], sys.argv[3:]
PASS = {"OK", "EXPECTEDFAIL"}
grand_pass = grand_fail = 0
for arg in builds:
    name, status, times = arg.split("|", 2)
    log = os.path.join(root, "build", name, "meson-logs", "testlog.json")
    counts, failed_names, npass, nfail = {}, [], 0, 0
    if status.startswith("tested") and os.path.exists(log):
        with open(log) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    t = json.loads(line)
                except ValueError:
                    nfail += 1
                    failed_names.append("<unparsable testlog line>")
                    continue
                res = t.get("result", "?")
                counts[res] = counts.get(res, 0) + 1
                if res in PASS:
                    npass += 1
                else:
                    nfail += 1
                    failed_names.append("%s [%s, %.1fs]" % (t.get("name", "?"), res,
                                                            t.get("duration", 0.0)))
        note = ""
        if npass + nfail == 0:
            nfail, note = 1, "  <- no test registered/run: counted as 1 failure"
    else:
        nfail, note = 1, "  <- %s: counted as 1 failure" % (
            status if not status.startswith("tested") else "no testlog.json")
    detail = ", ".join("%s %d" % kv for kv in sorted(counts.items()))
    print("%-8s %4d passed, %4d failed  (%s)  [%s]%s" % (name, npass, nfail, detail or "-",
                                                        times or "-", note))
    for n in failed_names:
        print("           FAILED: " + n)
    grand_pass += npass
    grand_fail += nfail
print("total time: %s s" % total_time)
if grand_pass + grand_fail == 0:
    grand_fail = 1
print("%d passed, %d failed" % (grand_pass, grand_fail))
sys.exit(1 if grand_fail else 0)
PY
