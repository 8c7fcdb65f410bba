#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the magpool benchmark suite: install what is missing, build a release
# tree in build/bench, run every workload for every variant, write one JSON
# file under results/, draw the plots into docs/img/ and refresh the results
# section of docs/benchmarks.md.
#
#   scripts/bench.sh            full suite (about 10 minutes on 2 CPUs), then
#                               bench_trim (reclamation: RSS and fast-path cost)
#   scripts/bench.sh --quick    smoke run (under a minute once built);
#                               plots go to build/bench/img, docs untouched
#   scripts/bench.sh [--quick] -- ARGS...   extra magpool-bench options,
#                               e.g. -- --workloads pair,prodcons --runs 9
#   scripts/bench.sh --merge results/OLD.json -- --workloads growth
#                               re-run one part; plots and docs show OLD's
#                               cells with this run's cells replacing them
#
# Peer allocators are preloaded (LD_PRELOAD) into their own child processes
# by magpool-bench itself; their paths come from dpkg here so a Debian with a
# different multiarch layout still finds them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=0
extra=()
merge=()
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --merge) merge+=("${2:?--merge needs a file}"); shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (magpool-bench options go after --)" >&2; exit 2 ;;
    esac
    shift
done

# 1. Dependencies.
if [ -x scripts/deps.sh ]; then
    scripts/deps.sh
else
    need=()
    for p in meson ninja-build pkg-config libjemalloc-dev libmimalloc-dev \
             libgoogle-perftools-dev valgrind gnuplot python3; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
fi

# 2. Release build (benchmarks are not built in sanitizer trees).
build=build/bench
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release
fi
ninja -C "$build" bench/magpool-bench bench/bench_trim

# 3. Where each peer allocator lives, from its package.
preload=()
find_so() { # package, file name pattern
    dpkg -L "$1" 2>/dev/null | grep -E "/$2\$" | head -n1
}
add_preload() { # variant, package, pattern
    local so
    so=$(find_so "$2" "$3")
    if [ -n "$so" ]; then
        preload+=(--preload "$1=$so")
    else
        echo "bench.sh: $2 not installed; $1 will be reported as skipped" >&2
    fi
}
add_preload jemalloc libjemalloc2 'libjemalloc\.so\.2'
add_preload mimalloc libmimalloc2.0 'libmimalloc\.so\.2'
add_preload tcmalloc libtcmalloc-minimal4 'libtcmalloc_minimal\.so\.4'

# 4. Run.
mkdir -p results
stamp=$(date -u +%Y%m%d-%H%M%S)
if [ $quick -eq 1 ]; then
    json=$build/results/bench-quick-$stamp.json
    mode=(--quick)
else
    json=results/bench-$stamp.json
    mode=()
fi
status=0
"$build/bench/magpool-bench" "${mode[@]}" "${preload[@]}" \
    --json "$json" "${extra[@]}" || status=$?
if [ ! -f "$json" ]; then
    echo "bench.sh: no results written (exit $status)" >&2
    exit 1
fi

# 5. Merge (this run alone, or on top of --merge files) and plot. A quick
# run does not overwrite the committed plots and docs.
if [ $quick -eq 1 ]; then
    python3 scripts/bench_plot.py --out "$build/img" --no-docs "${merge[@]}" "$json"
else
    python3 scripts/bench_plot.py "${merge[@]}" "$json"
fi
echo "bench.sh: results in $json"

# 6. Reclamation: a 1 GiB burst released by an idle thread, trimmed; the
# fast path with the background trimmer off and on (docs/benchmarks.md,
# "Reclamation").
trim_json=${json%.json}-trim.json
"$build/bench/bench_trim" "${mode[@]}" --json "$trim_json" || status=$?
[ $status -eq 0 ] || echo "bench.sh: some runs failed (exit $status); see the tables above" >&2
exit $status
