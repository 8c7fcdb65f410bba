# SPDX-License-Identifier: MIT
"""magpool for Python: the design document's pools on the magpool C library.

    BufferManager(max_buffers=100)   numpy arrays from magpool's C BufferManager
    ObjectPool(factory, reset_func)  reuse of Python objects (DataFrames ...)
    MemoryPool(block_size, ...)      fixed-size blocks as writable memoryviews
    numpy_allocator()                numpy's own array data on magpool (NEP 49)

Memory goes back to a pool only when no array or view refers to it any
more: release_buffer() / release() mark a buffer released, and its memory
is reused when the last view is gone. Misuse (a second release, releasing
something the pool did not hand out) raises PoolError.
"""
import contextlib as _contextlib
import threading as _threading

from ._core import (BufferManager, MemoryPool, NumpyAllocator, PoolError,  # noqa: F401
                    set_numpy_allocator, numpy_allocator_name, c_version,
                    BUFFER_ALIGN, BUFFER_MAX_CLASS)
from .objectpool import ObjectPool, LeakWarning, LeakRecord  # noqa: F401

__all__ = ["BufferManager", "ObjectPool", "MemoryPool", "NumpyAllocator", "PoolError",
           "LeakWarning", "LeakRecord", "numpy_allocator", "default_numpy_allocator",
           "set_numpy_allocator", "numpy_allocator_name"]
__version__ = c_version()

_default_lock = _threading.Lock()
_default = None


def default_numpy_allocator():
    """The process-wide NumpyAllocator numpy_allocator() installs by default
    (created on first use with NumpyAllocator's defaults)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = NumpyAllocator()
        return _default


@_contextlib.contextmanager
def numpy_allocator(allocator=None):
    """Serve numpy's array data from magpool inside the with block:

        with magpool.numpy_allocator():
            z = (x - x.mean()) / x.std()

    Arrays of min_size..max_size bytes (default 64 KiB..256 MiB) come from
    magpool size classes, others from numpy's default allocator. NEP 49
    handlers are per thread / per context (a contextvar): other threads keep
    their allocator. Arrays made inside may live on after the block; each is
    freed by the allocator that made it. Yields the NumpyAllocator.
    """
    alloc = allocator if allocator is not None else default_numpy_allocator()
    previous = set_numpy_allocator(alloc)
    try:
        yield alloc
    finally:
        set_numpy_allocator(previous)
