# SPDX-License-Identifier: MIT
"""The design document's §8 example runs with only its import line changed."""
import os
import pathlib
import re
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "seed_example.py"


def test_seed_example_runs_unchanged():
    code = EXAMPLE.read_text(encoding="utf-8")
    assert code.splitlines()[0] == "from magpool import ObjectPool, BufferManager"
    r = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                       env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"清理了 \d+ 个缓冲区\n", r.stdout), r.stdout
