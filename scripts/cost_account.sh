#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The cost account of the fast path (issue 11, item 1; docs/benchmarks.md,
# "Cost account of the fast path"): what each ingredient of
# magpool_acquire / magpool_release costs, measured by removing it.
#
# Builds one tree per variant, build-cost-<name>/, from this checkout with
# the MEASUREMENT-ONLY switches of lib/cache_measure.h (-DMAGPOOL_MEASURE_*;
# such a library is incorrect by construction and is never installed or
# tested):
#
#   full          the product's fast path (no switch)
#   no-stats      no per-thread acquires/releases counter
#   no-handshake  no busy stores, no steal check
#   no-nullcheck  no NULL test of pool / handle / block
#   bare          all three removed
#
# and measures each build two ways: the plain calls (magpool_acquire /
# magpool_release: the thread-directory lookup included) and the per-thread
# handle (magpool_cache_acquire / _release: no lookup, the product's way to
# drop it). For each: exact instructions per pair from scripts/instr.sh
# (pair / hpair, batch512) and from magpool-bench --callgrind (the same loop
# for magpool, magpool-handle and the array floor), and the time of a
# 1-thread 64 B pair: magpool-bench --workloads pair --variants
# magpool,magpool-handle,array, ROUNDS rounds (the builds' invocations
# interleaved) of RUNS runs each. ns/pair is the median of all runs; the
# ratio to the array floor is taken run by run (run i of each variant is
# seconds apart in the same process tree) and its median reported, so
# machine drift between builds cancels.
#
# Usage: scripts/cost_account.sh [--rounds N] [--runs N] [--json FILE]
#        (defaults 3, 7, results/cost-account.json)
# Prints a markdown table on stdout; progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

rounds=3
runs=7
json=results/cost-account.json
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift ;;
    --runs) runs=$2; shift ;;
    --json) json=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "cost_account.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

names=(full no-stats no-handshake no-nullcheck bare)
declare -A flags=(
    [full]=""
    [no-stats]="-DMAGPOOL_MEASURE_NO_STATS"
    [no-handshake]="-DMAGPOOL_MEASURE_NO_HANDSHAKE"
    [no-nullcheck]="-DMAGPOOL_MEASURE_NO_NULLCHECK"
    [bare]="-DMAGPOOL_MEASURE_NO_STATS -DMAGPOOL_MEASURE_NO_HANDSHAKE -DMAGPOOL_MEASURE_NO_NULLCHECK"
)
variants=magpool,magpool-handle,array

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Build: only the two benchmark programs, nothing else configured.
for n in "${names[@]}"; do
    b=build-cost-$n
    # Trees configured with other flags (the first account's NO_LOOKUP) go.
    if [ -f "$b/build.ninja" ] &&
       [ "$(meson introspect --buildoptions "$b" | python3 -c 'import json,sys; print(" ".join(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "c_args")))')" != "${flags[$n]}" ]; then
        rm -rf "$b"
    fi
    if [ ! -f "$b/build.ninja" ]; then
        echo "cost_account.sh: configuring $b" >&2
        meson setup "$b" --buildtype=release -Dc_args="${flags[$n]}" \
            -Dtests=disabled -Dstress=disabled -Dfuzz=disabled \
            -Dverify=disabled -Dexamples=disabled >/dev/null
    fi
    ninja -C "$b" -j2 bench/bench_instr bench/magpool-bench >/dev/null 2>"$tmp/build-$n.log" ||
        { cat "$tmp/build-$n.log" >&2; exit 1; }
done

# The benchmark's check of magpool_get_stats against its own counts cannot
# hold without the counters; only those variants skip it.
nocheck() { case $1 in no-stats|bare) echo 1 ;; *) echo 0 ;; esac; }

# 2. Exact counts.
for n in "${names[@]}"; do
    echo "cost_account.sh: callgrind $n" >&2
    scripts/instr.sh "build-cost-$n" >"$tmp/instr-$n.txt"
    MAGPOOL_BENCH_NO_STATS_CHECK=$(nocheck "$n") \
    "build-cost-$n/bench/magpool-bench" --workloads pair --variants "$variants" \
        --threads 1 --sizes 64 --runs 1 --duration 0.02 --callgrind \
        --json "$tmp/cg-$n.json" >/dev/null 2>&1
done

# 3. Timing, variants interleaved round by round.
for r in $(seq 1 "$rounds"); do
    for n in "${names[@]}"; do
        echo "cost_account.sh: timing round $r/$rounds, $n" >&2
        MAGPOOL_BENCH_NO_STATS_CHECK=$(nocheck "$n") \
        "build-cost-$n/bench/magpool-bench" --workloads pair --variants "$variants" \
            --threads 1 --sizes 64 --runs "$runs" --no-callgrind \
            --json "$tmp/time-$n-$r.json" >/dev/null 2>&1
    done
done

# 4. Aggregate.
mkdir -p "$(dirname "$json")"
python3 - "$tmp" "$json" "$rounds" "${names[@]}" <<'EOF'
import json, statistics, subprocess, sys, time
tmp, out, rounds, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
what = {
    "full": "the product's fast path",
    "no-stats": "(a) no per-thread stats counter",
    "no-handshake": "(b) no busy/steal handshake",
    "no-nullcheck": "(d) no NULL check",
    "bare": "(a)+(b)+(d) all removed",
}
calls = [("magpool", "pair", "plain calls"), ("magpool-handle", "hpair", "handle")]
rows = []
for n in names:
    instr = dict(l.split() for l in open(f"{tmp}/instr-{n}.txt"))
    cg = {c["variant"]: c["per_pair"] for c in json.load(open(f"{tmp}/cg-{n}.json"))["instructions"]}
    for var, key, how in calls:
        v_ns, ar_ns, ratio = [], [], []
        for r in range(1, rounds + 1):
            d = json.load(open(f"{tmp}/time-{n}-{r}.json"))
            cell = {c["variant"]: c for c in d["results"] if c["workload"] == "pair"}
            m, a = cell[var]["mops_runs"], cell["array"]["mops_runs"]
            v_ns += [1e3 / x for x in m]
            ar_ns += [1e3 / x for x in a]
            ratio += [x / y for x, y in zip(a, m)]  # variant time / array time, run by run
        rows.append({
            "variant": n, "calls": var, "what": f"{what[n]}, {how}",
            "instr_pair": float(instr[key]), "instr_batch512": float(instr["batch512"]),
            "bench_instr": cg[var], "bench_instr_array": cg["array"],
            "ns_pair_median": statistics.median(v_ns), "ns_pair_min": min(v_ns),
            "ns_array_median": statistics.median(ar_ns),
            "time_over_array_median": statistics.median(ratio),
            "time_over_array_min": min(ratio), "time_over_array_max": max(ratio),
            "runs": len(ratio),
        })
commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                        capture_output=True, text=True).stdout.strip()
with open("/proc/loadavg") as f:
    load = f.read().split()[:3]
json.dump({"schema": "magpool-cost-account/2", "commit": commit,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "loadavg_at_end": load, "rows": rows}, open(out, "w"), indent=1)
full = {r["calls"]: r for r in rows if r["variant"] == "full"}
print(f"commit `{commit}`, {rows[0]['runs']} timed runs per row, load average at end {' '.join(load)}\n")
print("| fast path | instr/pair (instr.sh) | Δ vs full, same calls | instr/pair, bench loop (array: %d) | ns/pair (median) | ÷ array, same run (median [min..max]) |" % rows[0]["bench_instr_array"])
print("|---|---|---|---|---|---|")
for r in rows:
    f = full[r["calls"]]
    print(f"| {r['what']} | {r['instr_pair']:.2f} | {r['instr_pair'] - f['instr_pair']:+.2f} | "
          f"{r['bench_instr']:.1f} | {r['ns_pair_median']:.2f} | "
          f"{r['time_over_array_median']:.2f} [{r['time_over_array_min']:.2f}..{r['time_over_array_max']:.2f}] |")
print(f"| array floor (magpool-bench, out-of-line pop+push) | | | {rows[0]['bench_instr_array']:.1f} | "
      f"{statistics.median([r['ns_array_median'] for r in rows]):.2f} | 1.00 |")
b512 = ", ".join(f"{r['variant']} {r['instr_batch512']:.2f}" for r in rows if r["calls"] == "magpool")
print(f"\nbatch512 instr/pair (instr.sh, plain calls through the depot): {b512}")
print(f"\nresults: {out}", file=sys.stderr)
EOF
