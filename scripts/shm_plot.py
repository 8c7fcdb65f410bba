#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plot bench_shm's JSON (docs/shm.md, "Benchmark") with gnuplot.

    scripts/shm_plot.py results/shm-YYYYMMDD.json docs/img/shm-prodcons.png

One bar group per (block size, processes): blocks per second through the
shared pool, the robust-mutex shared free list and the pipe, then the two
burst variants (medians, log scale), labelled with the shared pool's
same-run ratios: one block per call to the mutex and the pipe, and burst to
mutex burst.
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: shm_plot.py RESULTS.json OUT.png")
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        r = json.load(f)
    rows = r["prodcons"]
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
        for row in rows:
            d.write('"%d B, %d procs" %.0f %.0f %.0f %.2f %.2f %.0f %.0f %.2f\n' % (
                row["block_size"], row["procs"], row["magpool_median"], row["mutex_median"],
                row["pipe_median"], row["ratio_vs_mutex"], row["ratio_vs_pipe"],
                row["magpool-burst_median"], row["mutex-burst_median"],
                row["burst_ratio_vs_mutex_burst"]))
        dat = d.name
    title = ("cross-process producer/consumer, median of %d runs, burst %d "
             "(load %.1f -> %.1f on %d CPUs)" % (r["runs"], r.get("burst", 0),
                                                 r["loadavg_before"], r["loadavg_after"],
                                                 r["nproc"]))
    script = f"""
set terminal pngcairo size 1200,560 noenhanced
set output '{out}'
set title '{title}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1e5:*]
set ylabel 'blocks per second'
set key top right
set grid ytics
plot '{dat}' using 2:xtic(1) title 'magpool shared pool', \\
     '' using 3 title 'robust-mutex free list', \\
     '' using 4 title 'pipe copy', \\
     '' using 7 title 'magpool, burst', \\
     '' using 8 title 'robust-mutex, burst', \\
     '' using ($0-0.33):($2*1.25):(sprintf('x%.1f mutex', $5)) with labels notitle font ',9', \\
     '' using ($0-0.33):($2*1.65):(sprintf('x%.1f pipe', $6)) with labels notitle font ',9', \\
     '' using ($0+0.1):($7*1.25):(sprintf('x%.1f', $9)) with labels notitle font ',9'
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    finally:
        os.unlink(dat)
    print(out)


if __name__ == "__main__":
    main()
