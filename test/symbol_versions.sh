#!/bin/sh
# SPDX-License-Identifier: MIT
# symbol_versions.sh NM LIB SRCDIR
#
# The version node of each exported function is part of the ABI: a binary
# records name@VERSION at link time and the loader insists on that pair.
# So every function of the released 0.1 header (test/abi/magpool.h) must
# stay in MAGPOOL_0.1, and the 0.3 additions (handles, the publisher, the
# shared pool) must be in MAGPOOL_0.3 (lib/magpool.map). Prints offenders.
nm=$1 lib=$2 src=$3
syms=$("$nm" -D --defined-only "$lib") || exit 2
[ -n "$syms" ] || { echo "nm printed nothing for $lib"; exit 1; }
fail=0
check() { # NAME VERSION
  if ! printf '%s\n' "$syms" | grep -q " $1@@\?$2\$"; then
    echo "$1: not exported as $1@$2 ($(printf '%s\n' "$syms" | grep " $1@" || echo absent))"
    fail=1
  fi
}
n01=0
for f in $(grep -o 'magpool_[a-z0-9_]* *(' "$src/test/abi/magpool.h" | tr -d ' (' | sort -u); do
  printf '%s\n' "$syms" | grep -q " $f@" || continue   # a macro, not a function
  check "$f" MAGPOOL_0.1; n01=$((n01 + 1))
done
[ "$n01" -ge 20 ] || { echo "only $n01 functions of the 0.1 header found"; fail=1; }
n03=0
for f in magpool_cache_get magpool_cache_acquire magpool_cache_release \
         magpool_publish_start magpool_publish_stop magpool_publish_name \
         $(grep 'MAGPOOL_API' "$src/include/magpool_shm.h" | grep -o 'magpool_shm_[a-z0-9_]* *(' | tr -d ' ('); do
  check "$f" MAGPOOL_0.3; n03=$((n03 + 1))
done
[ "$n03" -ge 15 ] || { echo "only $n03 functions of 0.3 found"; fail=1; }
[ $fail = 0 ] && echo "$n01 functions in MAGPOOL_0.1, $n03 in MAGPOOL_0.3"
exit $fail
