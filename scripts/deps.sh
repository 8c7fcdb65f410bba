#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the build and test dependencies of magpool (Debian 12).
# Skips apt entirely when every package is already installed.
set -euo pipefail

# gcc, libc6-dev and git are absent from a minimal Debian 12 (git: the
# benchmark's version stamp, the consumer test's copy of the tracked files);
# cmake: the CMake consumer test.
PACKAGES=(
  gcc libc6-dev git meson ninja-build pkg-config cmake
  liburcu-dev libck-dev libcriterion-dev
  libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
  valgrind gnuplot-nox clang libclang-rt-14-dev python3
  tmux  # the live view's tests drive magpool-top in a tmux pane
  # python/: the Python package, its tests (pytest, pandas) and `pip install .`
  python3-dev python3-numpy python3-pandas python3-pytest python3-mesonpy
  python3-venv python3-pip
  rumur  # verify/: the model checks (a missing rumur fails the verify suite)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg -s succeeds for "deinstall" states too; require "install ok installed".
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "deps: not root and no sudo; cannot install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
