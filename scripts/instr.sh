#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Instructions per acquire+release pair on the fast path (pair) and on a
# 512-block batch that visits the depot (batch512), counted exactly by
# callgrind (bench/bench_instr.c). The warm-up is excluded: callgrind counts
# only inside the measured region (--toggle-collect), whose count includes
# the few instructions of the benchmark loop itself.
#
# Usage: scripts/instr.sh [BUILD_DIR]   (default build/release)
# Prints four lines: "pair <instr/pair>", "batch512 <instr/pair>",
# "hpair <instr/pair>" (pair through a per-thread handle, magpool_cache_get)
# and "bmpair <instr/pair>" (BufferManager get + release of 100 float64).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/release}"
PROG="$BUILD/bench/bench_instr"
N=1048576
[ -x "$PROG" ] || { echo "instr.sh: $PROG not built (ninja -C $BUILD)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "instr.sh: valgrind not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for which in pair batch512 hpair bmpair; do
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$which" \
    --toggle-collect="bench_instr_region_$which" "$PROG" "$which" "$N" >/dev/null 2>&1
  total=$(awk '/^summary:/ { print $2 }' "$tmp/cg.$which")
  # the warm-up ran inside the region too: measure it alone and subtract
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg0.$which" \
    --toggle-collect="bench_instr_region_$which" "$PROG" "$which" 0 >/dev/null 2>&1
  warm=$(awk '/^summary:/ { print $2 }' "$tmp/cg0.$which")
  awk -v t="$total" -v w="$warm" -v n="$N" -v k="$which" 'BEGIN { printf "%s %.2f\n", k, (t - w) / n }'
done
