#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Consumer tests (meson suite 'consumers', registered in the plain release
# build): magpool used the three ways README.md documents, each from scratch
# in a temporary directory, each building consumer.c with -Wall -Wextra
# -Wpedantic -Werror, linking it and running it.
#
#   a  a meson project with magpool as a subproject (a copy of the tracked
#      files in subprojects/magpool), --buildtype=debug, magpool's options at
#      their defaults: tests/stress/bench/fuzz/verify/examples must be off,
#      so pkg-config may see only ck.pc and nothing else is looked up;
#      then the same project through the wrap file's [provide] (configure only)
#   b  magpool built from that copy and installed into a prefix; consumers
#      built with `pkg-config --cflags --libs magpool` (shared) and with
#      `pkg-config --static` (the archive: no libmagpool.so in ldd)
#   c  a CMake project, find_package(magpool CONFIG) on the same prefix:
#      magpool::magpool and magpool::magpool_static
#
# Usage: run.sh SOURCE_ROOT      (CC, MESON, CMAKE: the tools to use)
# MAGPOOL_KEEP_TMP=1 keeps the temporary directory. Any failed step fails
# the test and says which.
set -euo pipefail

SRC=$(cd "${1:?usage: run.sh SOURCE_ROOT}" && pwd -P)
HERE=$SRC/test/consumers
CC=${CC:-cc}
MESON=${MESON:-meson}
CMAKE=${CMAKE:-cmake}
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -pthread)

T=$(mktemp -d "${TMPDIR:-/tmp}/magpool-consumers.XXXXXX")
if [ "${MAGPOOL_KEEP_TMP:-0}" = 1 ]; then
  echo "run.sh: keeping $T"
else
  trap 'rm -rf "$T"' EXIT
fi
trap 'echo "run.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

step() { printf '\n==== [%3d s] %s\n' "$SECONDS" "$*"; }
fail() { echo "run.sh: FAILED: $*" >&2; exit 1; }

# The magpool tree as a fresh clone has it: the files git tracks (with
# their working-tree contents), or, outside a git checkout, everything but
# .git and build directories.
copy_tree() {
  local dst=$1
  mkdir -p "$dst"
  if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$SRC" ]; then
    git -C "$SRC" ls-files -z | while IFS= read -r -d '' f; do
      if [ -e "$SRC/$f" ]; then printf '%s\0' "$f"; fi
    done | tar -C "$SRC" --null -T - -cf - | tar -C "$dst" -xf -
  else
    tar -C "$SRC" --exclude=.git --exclude-tag-all=build.ninja \
        --exclude-tag-all=CMakeCache.txt -cf - . | tar -C "$dst" -xf -
  fi
  [ -f "$dst/meson.build" ] || fail "copy of $SRC in $dst has no meson.build"
}

# What ldd says about BINARY: libmagpool.so.0 comes from $libdir (shared),
# or no libmagpool.so at all (static). ldd's output is captured first: a
# `ldd | grep -q` pipeline can fail on SIGPIPE under pipefail.
expect_shared() {
  local out
  out=$(ldd "$1")
  case $out in
    *"libmagpool.so.0 => $libdir/"*) ;;
    *) echo "$out"; fail "$1 does not load libmagpool.so.0 from $libdir" ;;
  esac
}
expect_static() {
  local out
  out=$(ldd "$1")
  case $out in
    *libmagpool*) echo "$out"; fail "$1 loads libmagpool.so, not the archive" ;;
  esac
}

# --------------------------------------------------------------------------
step "a: magpool as a meson subproject, --buildtype=debug"
A=$T/a
mkdir -p "$A/subprojects"
cp "$HERE/subproject/meson.build" "$HERE/subproject/meson_options.txt" \
   "$HERE/consumer.c" "$A/"
cp "$HERE/magpool.wrap" "$A/subprojects/"
copy_tree "$A/subprojects/magpool"

# pkg-config sees ck.pc and nothing else: a test dependency looked up by
# the subproject (Criterion, liburcu) would fail the configure.
mkdir "$T/pc-ck-only"
cp "$(pkg-config --variable=pcfiledir ck)/ck.pc" "$T/pc-ck-only/"
sub_env=(env PKG_CONFIG_LIBDIR="$T/pc-ck-only" PKG_CONFIG_PATH=)

"${sub_env[@]}" "$MESON" setup "$A/build" "$A" --buildtype=debug \
  --force-fallback-for=magpool >"$T/a-setup.log" 2>&1 \
  || { cat "$T/a-setup.log"; fail "a: meson setup"; }
if grep -E -i 'criterion|valgrind|urcu|rumur|Program (clang|cmake)' "$T/a-setup.log"; then
  fail "a: the subproject looked up a test tool (above); its parts must be off"
fi
grep -q "magpool *: *YES" "$T/a-setup.log" \
  || { cat "$T/a-setup.log"; fail "a: magpool was not configured as a subproject"; }
for part in tests stress bench fuzz verify examples python; do
  grep -q "^ *$part *: *NO" "$T/a-setup.log" \
    || { cat "$T/a-setup.log"; fail "a: magpool's '$part' is not off in a subproject"; }
done
ninja -C "$A/build" -j2 >"$T/a-build.log" 2>&1 \
  || { cat "$T/a-build.log"; fail "a: build"; }
tests=$("$MESON" test -C "$A/build" --no-rebuild --list 2>/dev/null)
[ "$tests" = consumer ] || fail "a: expected only the consumer's test, got: $tests"
"$A/build/consumer"

step "a: the same project through the wrap file's [provide] (configure only)"
"${sub_env[@]}" "$MESON" setup "$A/build-wrap" "$A" -Dplain=true \
  --force-fallback-for=magpool >"$T/a-wrap.log" 2>&1 \
  || { cat "$T/a-wrap.log"; fail "a: dependency('magpool') through the wrap file"; }

# --------------------------------------------------------------------------
step "b: build and install magpool into a prefix"
P=$T/prefix
off=()
for part in tests stress bench fuzz verify examples python; do off+=("-D$part=disabled"); done
"$MESON" setup "$T/b-build" "$A/subprojects/magpool" --prefix="$P" "${off[@]}" \
  >"$T/b-setup.log" 2>&1 || { cat "$T/b-setup.log"; fail "b: meson setup"; }
ninja -C "$T/b-build" -j2 >"$T/b-build.log" 2>&1 \
  || { cat "$T/b-build.log"; fail "b: build"; }
"$MESON" install -C "$T/b-build" --no-rebuild --quiet >"$T/b-install.log" 2>&1 \
  || { cat "$T/b-install.log"; fail "b: install"; }

pc=$(find "$P" -name magpool.pc)
[ -n "$pc" ] || fail "b: no magpool.pc installed"
export PKG_CONFIG_PATH=${pc%/magpool.pc}
libdir=$(pkg-config --variable=libdir magpool)
for f in "$libdir/libmagpool.so" "$libdir/libmagpool.a" "$P/include/magpool.h" \
         "$libdir/cmake/magpool/magpoolConfig.cmake" \
         "$libdir/cmake/magpool/magpoolConfigVersion.cmake"; do
  [ -e "$f" ] || fail "b: $f not installed"
done

step "b: pkg-config consumer, shared library"
# shellcheck disable=SC2046  # pkg-config prints several words
"$CC" "${CFLAGS[@]}" "$HERE/consumer.c" $(pkg-config --cflags --libs magpool) \
  -o "$T/pc-shared"
LD_LIBRARY_PATH=$libdir expect_shared "$T/pc-shared"
LD_LIBRARY_PATH=$libdir "$T/pc-shared"

step "b: pkg-config consumer, static archive (pkg-config --static)"
# The archive by name (-l:libmagpool.a): beside libmagpool.so the linker
# would otherwise take the shared library.
# shellcheck disable=SC2046
"$CC" "${CFLAGS[@]}" "$HERE/consumer.c" $(pkg-config --cflags magpool) \
  $(pkg-config --static --libs magpool | sed 's/-lmagpool\b/-l:libmagpool.a/') \
  -o "$T/pc-static"
expect_static "$T/pc-static"
env -u LD_LIBRARY_PATH "$T/pc-static"

# --------------------------------------------------------------------------
step "c: CMake consumer, find_package(magpool CONFIG)"
mkdir -p "$T/c"
cp "$HERE/cmake/CMakeLists.txt" "$HERE/consumer.c" "$T/c/"
"$CMAKE" -S "$T/c" -B "$T/c-build" -G Ninja -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_C_COMPILER="$CC" >"$T/c-setup.log" 2>&1 \
  || { cat "$T/c-setup.log"; fail "c: cmake configure"; }
grep "magpool 0" "$T/c-setup.log"
"$CMAKE" --build "$T/c-build" -j 2 >"$T/c-build.log" 2>&1 \
  || { cat "$T/c-build.log"; fail "c: cmake build"; }
expect_shared "$T/c-build/consumer_shared"
expect_static "$T/c-build/consumer_static"
# No LD_LIBRARY_PATH: CMake gives the build tree an rpath to the prefix.
env -u LD_LIBRARY_PATH "$T/c-build/consumer_shared"
env -u LD_LIBRARY_PATH "$T/c-build/consumer_static"

step "all consumers built, linked and ran"
