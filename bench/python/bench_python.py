#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Python package in the design document's scenarios (docs/python.md).

  buffers  get/release of float64 buffers of 1e3, 1e5, 1e6 elements:
           BufferManager.get_buffer vs np.empty, get_buffer(zero=True) vs
           np.zeros (every page of the buffer is written once, as a
           computation would)
  factor   a factor loop (returns, rolling means, z-scores, cross-sectional
           ranks over a few hundred price columns) with numpy's default
           allocator vs the magpool numpy allocator; "large" temporaries
           are >= 1e5 float64, "small" ones stay below the allocator's
           min_size (left to numpy's default); factor-pandas: the same
           with pandas (pct_change, rolling, rank)
  frames   ObjectPool of DataFrames (the document's §8 reset) vs a new
           DataFrame each time

Every cell (scenario x variant) runs in a fresh child process, so page
faults (ru_minflt) and peak RSS (ru_maxrss; and its growth over the RSS
after imports and inputs) are the variant's own. A run
measures all variants of a scenario back to back (order alternating
between runs); the reported ratio is the median over runs of the per-run
ratio baseline_time / magpool_time (> 1: magpool faster), each magpool
variant against its own baseline.

usage: bench_python.py [--build DIR] [--runs N] [--quick] [--out FILE] [--plot PNG]
       bench_python.py --statements [--runs N]   (factor-large, time per statement)
       bench_python.py --table RESULT.json     (the markdown table of a result)
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# get_buffer vs np.empty, and get_buffer(zero=True) vs np.zeros
BUFFER_VARIANTS = {"bufmgr": "np.empty", "bufmgr-zero": "np.zeros"}
FACTOR = {"magpool": "default"}
# "floor": the same loop with every temporary preallocated and written with
# out= (only argsort's outputs, which numpy cannot write into a given array,
# are allocated, by magpool, fault-free). No allocator can make the loop
# faster than that, so default/floor is the attainable speed-up and
# magpool's ratio is judged against it.
FACTOR_FLOOR = {"magpool": "default", "floor": "default"}
# scenario -> ({magpool variant: its baseline}, params)
SCENARIOS = {
    "buffers-1e3": (BUFFER_VARIANTS, dict(n=1000, iters=20000)),
    "buffers-1e5": (BUFFER_VARIANTS, dict(n=100_000, iters=3000)),
    "buffers-1e6": (BUFFER_VARIANTS, dict(n=1_000_000, iters=300)),
    "factor-large": (FACTOR_FLOOR, dict(rows=500, cols=300, iters=20)),
    "factor-large-onesort": (FACTOR_FLOOR, dict(rows=500, cols=300, iters=20, ranks="onesort")),
    "factor-xl": (FACTOR_FLOOR, dict(rows=2000, cols=300, iters=5)),
    "factor-small": (FACTOR, dict(rows=20, cols=50, iters=2000)),
    "factor-pandas": (FACTOR, dict(rows=500, cols=300, iters=10)),
    "frames": ({"pool": "new"}, dict(rows=1000, iters=300)),
}
REPS = 5  # timed repetitions inside a child; the child reports their median


# ---- the workloads (child side) ---------------------------------------------
def buffers_op(variant, n):
    import numpy as np
    import magpool
    if variant == "bufmgr":
        bm = magpool.BufferManager(max_buffers=100)

        def op():
            b = bm.get_buffer(n)
            b[::512] = 1.0
            bm.release_buffer(b)
    elif variant == "bufmgr-zero":
        bm = magpool.BufferManager(max_buffers=100)

        def op():
            b = bm.get_buffer(n, zero=True)
            b[::512] = 1.0
            bm.release_buffer(b)
    elif variant == "np.empty":
        def op():
            b = np.empty(n)
            b[::512] = 1.0
    else:
        def op():
            b = np.zeros(n)
            b[::512] = 1.0
    return op


def factor_op(variant, rows, cols, ranks="argsort2"):
    """Returns, rolling means, z-scores and cross-sectional ranks.

    ranks="argsort2": the rank of each element as the argsort of the argsort
    (the common idiom); "onesort": one argsort and the inverse permutation
    by a scatter, as scipy.stats.rankdata computes it (half the sorting).
    Every variant returns the same checksum (the driver compares them).
    """
    import numpy as np
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.standard_normal((rows, cols)) * 0.01, axis=0))
    w = min(20, rows // 2)
    n = rows - 1 - w
    rowidx = np.arange(n)[:, None]
    colidx = np.arange(cols)

    def rank(z):
        order = np.argsort(z, axis=1)
        if ranks == "argsort2":
            return np.argsort(order, axis=1)
        r = np.empty_like(order)
        r[rowidx, order] = colidx
        return r

    if variant == "floor":
        return factor_floor_op(np, prices, w, cols, rank)

    def op(step=run_step):
        ret = step("returns", lambda: np.diff(prices, axis=0) / prices[:-1])
        cs = step("cumsum", lambda: np.cumsum(ret, axis=0))
        roll = step("rolling mean", lambda: (cs[w:] - cs[:-w]) / w)
        dev = step("deviation", lambda: ret[w:] - roll)
        z = step("z-score", lambda: (dev - dev.mean(axis=0)) / (dev.std(axis=0) + 1e-12))
        rk = step("ranks", lambda: rank(z))                 # cross-sectional
        return step("score", lambda: float(((rk / cols - 0.5) * np.sign(roll)
                                            + np.tanh(z) * 0.1).sum()))
    return op


def run_step(name, f):
    """factor_op's statements run through a step function, so that
    --statements times the very loop the benchmark runs (this one just runs
    them: a call per statement, microseconds against milliseconds)."""
    return f()


def factor_floor_op(np, prices, w, cols, rank):
    """factor_op's arithmetic, step for step, into arrays allocated once."""
    rows = prices.shape[0]
    ret = np.empty((rows - 1, cols))
    cs = np.empty_like(ret)
    roll, dev, z, sq, t, score = (np.empty((rows - 1 - w, cols)) for _ in range(6))
    mean, var = np.empty(cols), np.empty(cols)

    def op():
        np.subtract(prices[1:], prices[:-1], out=ret)       # np.diff
        np.divide(ret, prices[:-1], out=ret)
        np.cumsum(ret, axis=0, out=cs)
        np.subtract(cs[w:], cs[:-w], out=roll)
        np.divide(roll, w, out=roll)
        np.subtract(ret[w:], roll, out=dev)
        np.mean(dev, axis=0, out=mean)                      # dev.std, as numpy computes it
        np.subtract(dev, mean, out=sq)
        np.multiply(sq, sq, out=sq)
        np.mean(sq, axis=0, out=var)
        np.sqrt(var, out=var)
        np.add(var, 1e-12, out=var)
        np.subtract(dev, mean, out=z)
        np.divide(z, var, out=z)
        rk = rank(z)
        np.divide(rk, cols, out=score)
        np.subtract(score, 0.5, out=score)
        np.sign(roll, out=t)
        np.multiply(score, t, out=score)
        np.tanh(z, out=t)
        np.multiply(t, 0.1, out=t)
        np.add(score, t, out=score)
        return float(score.sum())
    return op


def factor_statements(variant, rows=500, cols=300, iters=60):
    """Where factor-large's time goes, statement by statement, under one
    allocator (--statements): which part an allocator can speed up."""
    if variant == "magpool":
        import magpool
        ctx = magpool.numpy_allocator()   # kept: the handler is set while it lives
        ctx.__enter__()
    op = factor_op(variant, rows, cols)
    acc = {}

    def timed(name, f):
        t0 = time.perf_counter()
        r = f()
        acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
        return r
    for _ in range(5):
        op(timed)
    acc.clear()
    for _ in range(iters):
        op(timed)
    return {k: v / iters for k, v in acc.items()}


def factor_pandas_op(variant, rows, cols):
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(7)
    prices = pd.DataFrame(100.0 * np.exp(np.cumsum(rng.standard_normal((rows, cols)) * 0.01,
                                                   axis=0)))

    def op():
        ret = prices.pct_change()
        roll = ret.rolling(20).mean()
        z = (ret - roll) / ret.rolling(20).std()
        ranks = z.rank(axis=1, pct=True)
        return float((ranks * np.sign(roll)).sum().sum())
    return op


def frames_op(variant, rows):
    import numpy as np
    import pandas as pd
    import magpool
    values = np.random.default_rng(3).standard_normal(rows).cumsum() + 100.0
    if variant == "pool":
        pool = magpool.ObjectPool(factory=lambda: pd.DataFrame(),
                                  reset_func=lambda df: df.drop(df.index, inplace=True))

        def op():
            df = pool.acquire()
            df["price"] = values
            df["ret"] = df["price"].pct_change()
            s = df["ret"].sum()
            pool.release(df)
            return s
    else:
        def op():
            df = pd.DataFrame()
            df["price"] = values
            df["ret"] = df["price"].pct_change()
            return df["ret"].sum()
    return op


def child(spec):
    import resource
    scenario, variant = spec["scenario"], spec["variant"]
    if scenario == "statements":
        return json.dump(factor_statements(variant), sys.stdout)
    params = dict(SCENARIOS[scenario][1])
    iters = max(1, int(params.pop("iters") * spec["scale"]))
    if scenario.startswith("buffers"):
        op = buffers_op(variant, **params)
    elif scenario == "factor-pandas":
        op = factor_pandas_op(variant, **params)
    elif scenario.startswith("factor"):
        op = factor_op(variant, **params)
    else:
        op = frames_op(variant, **params)
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # interpreter + inputs
    ctx = None
    if scenario.startswith("factor") and variant in ("magpool", "floor"):
        import magpool
        ctx = magpool.numpy_allocator()
        ctx.__enter__()
    checksum = op()
    for _ in range(max(1, iters // 10)):  # warm-up
        op()
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        for _ in range(iters):
            op()
        times.append((time.perf_counter() - t0) / iters)
    flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
    out = dict(seconds_per_op=statistics.median(times), reps=times,
               minflt_per_op=flt / (iters * REPS),
               maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               rss_growth_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_setup,
               iters=iters, checksum=checksum)
    if ctx is not None:
        import magpool
        out["allocator"] = magpool.default_numpy_allocator().get_stats()
        ctx.__exit__(None, None, None)
    json.dump(out, sys.stdout)


# ---- the driver ---------------------------------------------------------------
def check_same_result(scenario, cells):
    """Every variant of a scenario computes the same thing (the floor's
    rewrite with out= included), or the comparison means nothing."""
    sums = {v: c[0]["checksum"] for v, c in cells.items() if c and c[0].get("checksum") is not None}
    if not sums:
        return
    ref = next(iter(sums.values()))
    for v, x in sums.items():
        if abs(x - ref) > 1e-9 * max(1.0, abs(ref)):
            raise SystemExit(f"bench_python: {scenario}: {v} computes {x!r}, not {ref!r}")


def run_cell(pythonpath, scenario, variant, scale):
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    spec = json.dumps(dict(scenario=scenario, variant=variant, scale=scale))
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec],
                       env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def print_statements(pythonpath, runs):
    per = {"default": [], "magpool": []}
    for r in range(runs):
        for v in (("default", "magpool") if r % 2 == 0 else ("magpool", "default")):
            per[v].append(run_cell(pythonpath, "statements", v, 1.0))
    print("factor-large, ms per iteration (median of %d runs, load %s):" % (
        runs, " ".join("%.1f" % x for x in os.getloadavg())))
    print("%-14s %9s %9s %7s" % ("statement", "default", "magpool", "ratio"))
    for k in per["default"][0]:
        d = statistics.median(c[k] for c in per["default"]) * 1e3
        m = statistics.median(c[k] for c in per["magpool"]) * 1e3
        print("%-14s %9.2f %9.2f %7.2f" % (k, d, m, d / m))


def git_describe():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty",
                               "--abbrev=40"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def plot(result, png):
    gp = shutil.which("gnuplot")
    if not gp:
        raise SystemExit("bench_python: gnuplot not found (scripts/deps.sh installs gnuplot-nox)")
    rows = []
    for sc, cell in result["scenarios"].items():
        for v, ratio in cell["speedup"].items():
            colour = 0x999999 if v == "floor" else 0xd62728  # floor: a bound, not magpool
            rows.append(("%s\\n%s vs %s" % (sc, v, cell["pairs"][v]), ratio["median"],
                         ratio["min"], ratio["max"], colour))
    data = "\n".join('"%s" %.4f %.4f %.4f %d' % r for r in rows)
    script = f"""
set terminal pngcairo size 1100,520 noenhanced font ",10"
set output "{png}"
set title "magpool for Python: speed-up over the baseline, same run (median of {result['runs']} runs; > 1: faster; grey: the floor, the most any allocator can give)"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set grid ytics
set xtics rotate by -30
set ylabel "baseline time / variant time"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2
plot "-" using 0:2:5:xtic(1) with boxes lc rgb variable notitle, \\
     "-" using 0:2:3:4 with yerrorbars lc rgb "#000000" pt 0 notitle
{data}
e
{data}
e
"""
    subprocess.run([gp], input=script, text=True, check=True)


def table(result):
    """The markdown table docs/python.md and the README show."""
    out = ["| scenario | magpool vs baseline | time per op | speed-up: median (min..max) "
           "of %d runs | page faults per op | RSS growth MiB |" % result["runs"],
           "|---|---|---|---|---|---|"]

    def us(x):
        return "%.0f µs" % (x * 1e6) if x >= 1e-4 else "%.3g µs" % (x * 1e6)
    for sc, c in result["scenarios"].items():
        for v, base in c["pairs"].items():
            r, t, f = c["speedup"][v], c["seconds_per_op"], c["minflt_per_op"]
            g = c.get("rss_growth_kib", {})
            share = (", %.0f %% of the attainable" % (100 * r["share_of_attainable"])
                     if "share_of_attainable" in r else "")
            out.append("| %s | %s vs %s | %s / %s | **%.2f** (%.2f..%.2f)%s | %.1f / %.1f | %s |" % (
                sc, v, base, us(t[v]), us(t[base]), r["median"], r["min"], r["max"], share,
                f[v], f[base],
                "%.0f / %.0f" % (g[v] / 1024, g[base] / 1024) if g else "-"))
    out.append("")
    out.append("load average before / after: %s / %s (2 CPUs); git %s" % (
        " ".join("%.1f" % x for x in result["load_before"]),
        " ".join("%.1f" % x for x in result["load_after"]), result["git"][:12]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"),
                    help="meson build dir with the extension (default build/bench)")
    ap.add_argument("--runs", type=int, help="runs per cell (default 5; 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="1/10 of the iterations")
    ap.add_argument("--only", help="comma-separated scenarios")
    ap.add_argument("--out", help="JSON file (default results/python-<time>.json)")
    ap.add_argument("--plot", help="PNG (default docs/img/python-speedup.png)")
    ap.add_argument("--table", metavar="RESULT.json", help="print a result's markdown table")
    ap.add_argument("--statements", action="store_true",
                    help="factor-large's time per statement, default vs magpool allocator")
    a = ap.parse_args()
    if a.child:
        return child(json.loads(a.child))
    if a.table:
        with open(a.table) as f:
            print(table(json.load(f)))
        return None
    pythonpath = os.path.join(os.path.abspath(a.build), "python")
    if not os.path.isdir(os.path.join(pythonpath, "magpool")):
        raise SystemExit(f"bench_python: no built package in {pythonpath} "
                         "(scripts/bench_python.sh builds it)")
    if a.statements:
        return print_statements(pythonpath, a.runs or 5)
    runs = a.runs or (3 if a.quick else 5)
    scale = 0.1 if a.quick else 1.0
    chosen = a.only.split(",") if a.only else list(SCENARIOS)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    import numpy
    import pandas
    result = dict(kind="magpool-python-bench", git=git_describe(), time=stamp, runs=runs,
                  quick=a.quick, python=platform.python_version(), numpy=numpy.__version__,
                  pandas=pandas.__version__, cpus=os.cpu_count(),
                  load_before=os.getloadavg(), scenarios={})
    for sc in chosen:
        pairs, params = SCENARIOS[sc]
        variants = [x for p in pairs.items() for x in p]
        per_run = {v: [] for v in variants}
        cells = {v: [] for v in variants}
        for r in range(runs):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                cell = run_cell(pythonpath, sc, v, scale)
                cells[v].append(cell)
                per_run[v].append(cell["seconds_per_op"])
        check_same_result(sc, cells)
        speed = {}
        for v, base in pairs.items():
            ratios = [b / t for b, t in zip(per_run[base], per_run[v])]
            speed[v] = dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios),
                            per_run=ratios)
        if "floor" in speed:
            # how much of what any allocator could gain magpool gains:
            # (default - magpool) / (default - floor), per run
            share = [(b - m) / (b - f) if b > f else float("nan") for b, m, f in
                     zip(per_run["default"], per_run["magpool"], per_run["floor"])]
            speed["magpool"]["share_of_attainable"] = statistics.median(share)
        result["scenarios"][sc] = dict(
            pairs=pairs, params=params, speedup=speed,
            seconds_per_op={v: statistics.median(per_run[v]) for v in variants},
            minflt_per_op={v: statistics.median(c["minflt_per_op"] for c in cells[v])
                           for v in variants},
            maxrss_kib={v: max(c["maxrss_kib"] for c in cells[v]) for v in variants},
            rss_growth_kib={v: max(c["rss_growth_kib"] for c in cells[v]) for v in variants},
            cells=cells)
        r = result["scenarios"][sc]
        line = "  ".join("%s %.3g us (%.1f flt/op, peak RSS %d MiB, +%d MiB)%s" % (
            v, r["seconds_per_op"][v] * 1e6, r["minflt_per_op"][v], r["maxrss_kib"][v] // 1024,
            r["rss_growth_kib"][v] // 1024,
            " x%.2f" % speed[v]["median"] if v in speed else "") for v in variants)
        print(f"{sc:13s} {line}", flush=True)
    result["load_after"] = os.getloadavg()
    out = a.out or os.path.join(ROOT, "results", f"python-{stamp}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", out)
    print(table(result))
    png = a.plot or os.path.join(ROOT, "docs", "img", "python-speedup.png")
    plot(result, png)
    print("wrote", png)


if __name__ == "__main__":
    main()
