#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Instructions per block of each cross-process hand-off variant of
# bench_shm, counted exactly by callgrind (bench_shm --instr): one process
# hands N blocks to itself inside bench_shm_region (acquire, fill, hand-off
# in, hand-off out, checksum, release), so the count is the uncontended
# instruction path, repeatable under any load. It does not see what
# contention costs across processes (cache-line transfers, futex sleeps):
# bench_shm's timed runs do.
#
# Usage: scripts/shm_instr.sh [BUILD_DIR] [BURST]   (default build/release, 32)
# Prints "<kind> <block size> <instr/block>" for work (fill + checksum
# alone), magpool, mutex, magpool-burst, mutex-burst at 64 B and 1 KiB.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/release}"
BURST="${2:-32}"
PROG="$BUILD/bench/bench_shm"
N=65536
[ -x "$PROG" ] || { echo "shm_instr.sh: $PROG not built (ninja -C $BUILD)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "shm_instr.sh: valgrind not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for size in 64 1024; do
  for kind in work magpool mutex magpool-burst mutex-burst; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" \
      --toggle-collect='bench_shm_region' "$PROG" --burst "$BURST" --instr "$kind" "$size" "$N" \
      >/dev/null 2>&1
    total=$(awk '/^summary:/ { print $2 }' "$tmp/cg")
    # the warm-up (64 bursts) ran inside the region too: measure it alone
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg0" \
      --toggle-collect='bench_shm_region' "$PROG" --burst "$BURST" --instr "$kind" "$size" 0 \
      >/dev/null 2>&1
    warm=$(awk '/^summary:/ { print $2 }' "$tmp/cg0")
    awk -v t="$total" -v w="$warm" -v n="$N" -v k="$kind" -v s="$size" \
      'BEGIN { printf "%s %s %.1f\n", k, s, (t - w) / n }'
  done
done
