#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Python package's benchmark (bench/python/bench_python.py, docs/python.md):
# builds the package in the release tree build/bench (as scripts/bench.sh
# does), then runs every scenario; JSON in results/python-<time>.json, the
# plot in docs/img/python-speedup.png. About 5 minutes on 2 CPUs.
#
#   scripts/bench_python.sh              full run (7 runs per cell)
#   scripts/bench_python.sh --quick      smoke run (under a minute; JSON and
#                                        plot under build/bench, docs untouched)
#   scripts/bench_python.sh -- ARGS...   bench_python.py options
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=0
extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench_python.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

[ "${MAGPOOL_SKIP_DEPS:-0}" = 1 ] || scripts/deps.sh

build=build/bench
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release
fi
meson configure "$build" -Dpython=enabled >/dev/null
# The extension's target is named after its file: _core.<EXT_SUFFIX>.
ext=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
meson compile -C "$build" "_core${ext%.so}"

args=(--build "$build")
if [ "$quick" = 1 ]; then
    args+=(--quick --out "$build/python-quick.json" --plot "$build/python-quick.png")
else
    args+=(--runs 7)
fi
# /usr/bin/python3: Debian's interpreter, the one with numpy and pandas.
nice /usr/bin/python3 bench/python/bench_python.py "${args[@]}" "${extra[@]}"
