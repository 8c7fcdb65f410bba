#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the libFuzzer harness (fuzz/fuzz_magpool.c) with clang
# -fsanitize=fuzzer,address,undefined straight from the library sources, and
# run it. Default 60 s; longer: scripts/fuzz.sh 3600, or pass any libFuzzer
# flags after the seconds: scripts/fuzz.sh 600 -jobs=2 -workers=2
# The corpus lives in build/fuzz/corpus (kept between runs; crashes and
# leaks are written to build/fuzz/ as crash-* / leak-* files). Exit status is
# libFuzzer's: 0 = no crash, no leak, no sanitizer report.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-60}"
[ $# -gt 0 ] && shift
OUT="$ROOT/build/fuzz"
mkdir -p "$OUT/corpus"
CC="${CC_FUZZ:-clang}"
# Concurrency Kit for lib/epoch.c; everything else is in the sources.
CK_LIBS="$(pkg-config --libs ck 2>/dev/null || echo -lck)"
SRCS=()
for f in "$ROOT"/lib/*.c; do SRCS+=("$f"); done
"$CC" -std=gnu11 -g -O1 -D_GNU_SOURCE -DMAGPOOL_BUILDING \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$ROOT/include" -I"$ROOT/lib" \
  "$ROOT/fuzz/fuzz_magpool.c" "${SRCS[@]}" \
  $CK_LIBS -lpthread -lm -o "$OUT/fuzz_magpool"
cd "$OUT"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
echo "fuzz.sh: running fuzz_magpool for ${SECS} s (corpus $OUT/corpus)"
exec ./fuzz_magpool -max_total_time="$SECS" -max_len=4096 -timeout=20 \
  -rss_limit_mb=4096 -print_final_stats=1 "$@" "$OUT/corpus"
