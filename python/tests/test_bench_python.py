# SPDX-License-Identifier: MIT
"""bench/python/bench_python.py measures equal work and runs end to end.

The benchmark's claims rest on two things checked here: every variant of a
factor scenario (the allocation-free floor and the one-sort ranks included)
computes the same result, and the driver refuses a run where one does not.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.environ["MAGPOOL_SOURCE_ROOT"]
sys.path.insert(0, os.path.join(ROOT, "bench", "python"))
import bench_python  # noqa: E402


@pytest.mark.parametrize("ranks", ["argsort2", "onesort"])
def test_the_floor_computes_what_the_loop_computes(ranks):
    loop = bench_python.factor_op("default", rows=60, cols=17, ranks=ranks)()
    floor = bench_python.factor_op("floor", rows=60, cols=17, ranks=ranks)()
    assert floor == pytest.approx(loop, rel=1e-12)


def test_one_sort_ranks_are_the_double_argsort_ranks():
    a = bench_python.factor_op("default", rows=80, cols=23, ranks="argsort2")()
    b = bench_python.factor_op("default", rows=80, cols=23, ranks="onesort")()
    assert a == b


def test_a_variant_computing_something_else_stops_the_run():
    same = {"default": [{"checksum": 1.5}], "magpool": [{"checksum": 1.5}]}
    bench_python.check_same_result("s", same)  # equal work: no complaint
    other = {"default": [{"checksum": 1.5}], "magpool": [{"checksum": 1.5000001}]}
    with pytest.raises(SystemExit, match="magpool computes"):
        bench_python.check_same_result("s", other)


def test_a_quick_run_writes_json_with_the_floor(tmp_path):
    build = os.path.dirname(os.environ["PYTHONPATH"])
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "python", "bench_python.py"),
                    "--build", build, "--quick", "--runs", "1", "--only", "factor-large",
                    "--out", str(out), "--plot", str(tmp_path / "r.png")],
                   check=True, capture_output=True, text=True)
    r = json.loads(out.read_text())
    cell = r["scenarios"]["factor-large"]
    assert set(cell["speedup"]) == {"magpool", "floor"}
    for v in ("magpool", "floor", "default"):
        assert cell["seconds_per_op"][v] > 0
    assert np.isfinite(cell["speedup"]["magpool"]["median"])
    assert (tmp_path / "r.png").stat().st_size > 0
