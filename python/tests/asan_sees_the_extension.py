# SPDX-License-Identifier: MIT
"""ASan build only (registered there): the preloaded ASan runtime checks the
extension's memory. Writing into a released, idle pool block must be
reported; if this passes silently, the Python tests run unchecked."""
import subprocess
import sys

WRITE_AFTER_RELEASE = """
import ctypes, numpy as np, magpool
mp = magpool.MemoryPool(256)
m = mp.acquire()
p = np.frombuffer(m, np.uint8).ctypes.data
mp.release(m)
del m                      # the block is idle now, and poisoned by the library
ctypes.memset(p + 64, 1, 100)
print("not detected")
"""


def test_asan_reports_a_write_into_an_idle_block():
    r = subprocess.run([sys.executable, "-c", WRITE_AFTER_RELEASE], capture_output=True,
                       text=True, timeout=120)
    assert "not detected" not in r.stdout
    assert r.returncode != 0
    assert "AddressSanitizer: use-after-poison" in r.stderr, r.stderr
