# SPDX-License-Identifier: MIT
"""Shared helpers for the magpool Python tests."""
import gc

import numpy as np
import pytest


def addr(a):
    """Address of an array's or buffer's first byte."""
    return np.frombuffer(a, dtype=np.uint8).ctypes.data if isinstance(a, memoryview) \
        else a.ctypes.data


@pytest.fixture
def collect():
    """gc.collect, for objects a test drops on purpose."""
    return gc.collect
