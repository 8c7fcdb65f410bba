#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Tests of the benchmark suite (run by meson, suite 'unit'). Tiny sizes and
# durations; nothing here asserts a speed.
#   conserve: every workload and variant returns every block it took
#             (magpool-bench exits non-zero when its own acquire/release
#             counts or magpool_get_stats disagree, or a run fails)
#   json:     the results file is valid JSON with one entry per cell/variant
#   plot:     scripts/bench_plot.py draws PNGs (skipped without gnuplot)
set -euo pipefail
mode=${1:?mode}
bench=${MAGPOOL_BENCH:?}
src=${MAGPOOL_SRCDIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

tiny=(--threads 1,2 --lat-threads 2 --config-threads 2 --sizes 64,1024
      --runs 1 --duration 0.005 --growth-blocks 2000
      --initial-sweep 10,5000 --magazine-sweep 16,512 --no-callgrind
      --json "$tmp/r.json")

case $mode in
conserve)
    # Every workload, every variant (peers are skipped by the bench itself
    # when their package is missing; that is reported, not a failure here).
    # 20 ms windows: a run that completes no operation is a failed run (no
    # rate can be derived from it), and 5 ms on a loaded machine can be that.
    "$bench" "${tiny[@]}" --duration 0.02 --threads 1,2,4 >"$tmp/out" 2>"$tmp/err" || {
        cat "$tmp/out" "$tmp/err"; exit 1; }
    grep -q "(0 failed runs" "$tmp/out"
    # The check must bite: one block kept back is reported for every variant.
    if MAGPOOL_BENCH_TEST_LEAK=1 "$bench" "${tiny[@]}" --workloads pair --threads 1 \
            --sizes 64 >"$tmp/out" 2>"$tmp/err"; then
        echo "a leaked block went unnoticed"; cat "$tmp/out"; exit 1
    fi
    for v in magpool magpool-handle mutex array glibc; do
        grep -q "^$v .*FAILED: lost blocks" "$tmp/out" || {
            echo "no lost-block report for $v"; cat "$tmp/out"; exit 1; }
    done
    # A run that completed no operation is a failed run, not a rate of 0.
    if MAGPOOL_BENCH_TEST_NO_OPS=1 "$bench" "${tiny[@]}" --workloads pair --threads 1 \
            --sizes 64 >"$tmp/out" 2>"$tmp/err"; then
        echo "a run with no operation was reported as a result"; cat "$tmp/out"; exit 1
    fi
    grep -q "^magpool .*FAILED: no operation completed" "$tmp/out" || {
        echo "no 'no operation' report"; cat "$tmp/out"; exit 1; }
    ;;
json)
    # 20 ms, not 5: at 5 ms a loaded 2-core machine can leave a prodcons
    # consumer without a time slice in the whole window (0 Mops, a flake).
    "$bench" "${tiny[@]}" --duration 0.02 --workloads pair,prodcons,lat-pair >"$tmp/out" 2>&1 || {
        cat "$tmp/out"; exit 1; }
    python3 -m json.tool "$tmp/r.json" >/dev/null
    python3 - "$tmp/r.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "magpool-bench/1"
for k in ("nproc", "cpu_model", "kernel"):
    assert k in d["machine"], k
assert "git_commit" in d["versions"] and "packages" in d["versions"]
res = d["results"]
assert res, "no results"
wl = {r["workload"] for r in res}
assert wl == {"pair", "prodcons", "lat-pair"}, wl
for r in res:
    assert r["runs_ok"] == r["runs"], r
    for k in ("median", "min", "max"):
        assert r["mops"][k] is not None and r["mops"][k] > 0, r
    if r["workload"] == "lat-pair":
        lat = r["latency_ns"]["acquire"]
        assert lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat
    assert not (r["workload"] == "prodcons" and r["variant"] == "array")
print("json ok:", len(res), "results")
PY
    ;;
plot)
    if ! command -v gnuplot >/dev/null; then
        echo "gnuplot not installed: plot step not tested"
        exit 77
    fi
    "$bench" "${tiny[@]}" --workloads pair,batch-lifo,lat-pair,config >"$tmp/out" 2>&1 || {
        cat "$tmp/out"; exit 1; }
    python3 "$src/scripts/bench_plot.py" --out "$tmp/img" --no-docs "$tmp/r.json"
    n=$(find "$tmp/img" -name '*.png' -size +1k | wc -l)
    echo "$n PNG files"
    [ "$n" -ge 3 ]
    for f in "$tmp"/img/*.png; do
        head -c 8 "$f" | od -An -c | grep -q 'P   N   G' || { echo "not a PNG: $f"; exit 1; }
    done
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
