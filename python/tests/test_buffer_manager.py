# SPDX-License-Identifier: MIT
"""BufferManager: numpy arrays over C BufferManager buffers, and misuse."""
import numpy as np
import pytest

import magpool
from conftest import addr

C_DTYPES = ["uint8", "int8", "int16", "int32", "int64", "float32", "float64"]
OTHER_DTYPES = ["bool", "uint16", "uint32", "uint64", "complex64", "complex128", "M8[ns]"]


@pytest.mark.parametrize("dtype", C_DTYPES + OTHER_DTYPES)
def test_every_dtype_is_an_aligned_writable_c_array(dtype):
    bm = magpool.BufferManager(max_buffers=10)
    for size in (1, 7, 1000, 300_000):
        a = bm.get_buffer(size, dtype=dtype)
        assert type(a) is np.ndarray
        assert a.dtype == np.dtype(dtype) and a.shape == (size,)
        assert a.flags.c_contiguous and a.flags.writeable and not a.flags.owndata
        assert addr(a) % magpool.BUFFER_ALIGN == 0
        one = np.array(1).astype(dtype)
        a[...] = one
        assert (a == one).all()
        bm.release_buffer(a)


def test_default_dtype_shape_tuple_and_zero():
    bm = magpool.BufferManager()
    a = bm.get_buffer(100)
    assert a.dtype == np.float64
    a[:] = 7.0
    bm.release_buffer(a)
    del a
    b = bm.get_buffer((10, 10), zero=True)
    assert b.shape == (10, 10) and not b.any()
    bm.release_buffer(b)


def test_released_buffer_is_reused_when_no_view_is_left():
    bm = magpool.BufferManager()
    a = bm.get_buffer(1000)
    first = addr(a)
    bm.release_buffer(a)
    del a
    b = bm.get_buffer(1000)
    assert addr(b) == first  # the thread cache hands back the last release
    assert bm.get_stats()["hits"] >= 1


def test_release_while_a_view_is_alive_defers_reuse():
    bm = magpool.BufferManager()
    a = bm.get_buffer(1000)
    a[:] = 42.0
    view = a[100:200]
    lo = addr(a)
    bm.release_buffer(a)
    assert bm.is_released(a)
    del a
    assert bm.get_stats()["released_pending"] == 1
    others = [bm.get_buffer(1000) for _ in range(64)]
    for o in others:
        assert not lo <= addr(o) < lo + 8000, "a buffer still viewed was handed out again"
        o[:] = -1.0
    assert (view == 42.0).all()
    for o in others:
        bm.release_buffer(o)
    del view
    s = bm.get_stats()
    # the viewed buffer is back; `others` are released but still referenced
    assert s["released_pending"] == 64 and s["outstanding"] == 64
    del others, o
    s = bm.get_stats()
    assert s["released_pending"] == 0 and s["outstanding"] == 0


def test_double_release_raises_and_changes_nothing():
    bm = magpool.BufferManager()
    a = bm.get_buffer(10)
    bm.release_buffer(a)
    with pytest.raises(magpool.PoolError, match="double release"):
        bm.release_buffer(a)
    s = bm.get_stats()
    assert s["bad_releases"] == 1 and s["outstanding"] == 1


@pytest.mark.parametrize("foreign", [
    lambda bm, other: np.zeros(10),
    lambda bm, other: other.get_buffer(10),
    lambda bm, other: bm.get_buffer(10)[2:],
    lambda bm, other: bm.get_buffer(10).copy(),
    lambda bm, other: [1.0, 2.0],
    lambda bm, other: None,
])
def test_foreign_views_copies_and_non_arrays_raise(foreign):
    bm, other = magpool.BufferManager(), magpool.BufferManager()
    with pytest.raises(magpool.PoolError):
        bm.release_buffer(foreign(bm, other))
    assert bm.get_stats()["bad_releases"] == 1


def test_array_dropped_without_release_returns_its_memory():
    bm = magpool.BufferManager()
    a = bm.get_buffer(1000)
    del a
    s = bm.get_stats()
    assert s["outstanding"] == 0 and s["collected_unreleased"] == 1


@pytest.mark.parametrize("size,exc", [(0, ValueError), (-1, ValueError), (2**62, ValueError),
                                      ((3, 0), ValueError), ("x", TypeError),
                                      (1.5, TypeError)])
def test_bad_sizes_raise(size, exc):
    bm = magpool.BufferManager()
    with pytest.raises(exc):
        bm.get_buffer(size)
    assert bm.get_stats()["outstanding"] == 0


@pytest.mark.parametrize("dtype", [object, "O", [("a", "O")], "U0", "no-such-dtype"])
def test_dtypes_that_cannot_live_in_a_pool_raise(dtype):
    bm = magpool.BufferManager()
    with pytest.raises(TypeError):
        bm.get_buffer(10, dtype=dtype)


def test_bad_constructor_argument():
    with pytest.raises(ValueError):
        magpool.BufferManager(max_buffers=-1)
    with pytest.raises(TypeError):
        magpool.BufferManager(max_buffers="many")


def test_clear_unused_gives_idle_buffers_back():
    bm = magpool.BufferManager(max_buffers=0)
    bufs = [bm.get_buffer(100_000) for _ in range(4)]
    for b in bufs:
        bm.release_buffer(b)
    del bufs, b
    assert bm.clear_unused(max_age=3600.0) == 0  # nothing that old
    assert bm.clear_unused(max_age=0) >= 1
    assert isinstance(bm.clear_unused(), int)


def test_buffers_above_the_largest_class_are_pooled_too():
    bm = magpool.BufferManager()
    n = 2 * magpool.BUFFER_MAX_CLASS // 8
    a = bm.get_buffer(n)
    first = addr(a)
    assert first % magpool.BUFFER_ALIGN == 0
    a[-1] = 1.0
    bm.release_buffer(a)
    del a
    b = bm.get_buffer(n)
    assert addr(b) == first          # reused, not unmapped and mapped again
    s = bm.get_stats()
    assert (s["big_gets"], s["big_hits"], s["big_outstanding"]) == (2, 1, 1)
    bm.release_buffer(b)


def test_buffers_of_1e6_float64_come_from_the_c_size_classes():
    bm = magpool.BufferManager()
    a = bm.get_buffer(1_000_000)     # 8 MB: a C class since 0.2 (was mmap'd)
    first = addr(a)
    a[:] = 1.0
    bm.release_buffer(a)
    del a
    b = bm.get_buffer(1_000_000)
    assert addr(b) == first          # reused, not unmapped and mapped again
    s = bm.get_stats()
    assert (s["large_gets"], s["big_gets"], s["hits"]) == (0, 0, 1)
    bm.release_buffer(b)


def test_big_buffers_respect_the_idle_cap():
    # above the C manager's largest class: the Python manager's own pools
    # (virtual memory only: never written)
    bm = magpool.BufferManager(max_buffers=1)
    bufs = [bm.get_buffer(magpool.BUFFER_MAX_CLASS + 1, dtype="uint8") for _ in range(3)]
    for b in bufs:
        bm.release_buffer(b)
    del bufs, b
    s = bm.get_stats()
    assert s["big_outstanding"] == 0 and s["big_idle"] <= 1
    assert bm.clear_unused(0) == s["big_idle"]
    assert bm.get_stats()["big_idle"] == 0


def test_buffers_above_1_gib_are_mapped_directly():
    bm = magpool.BufferManager()
    a = bm.get_buffer((1 << 30) + 64, dtype="uint8")   # mapped, never touched
    a[-1] = 1
    bm.release_buffer(a)
    del a
    s = bm.get_stats()
    assert s["large_gets"] == 1 and s["large_releases"] == 1 and s["big_gets"] == 0


def test_manager_outlives_its_arrays():
    bm = magpool.BufferManager()
    a = bm.get_buffer(1000)
    a[:] = 3.0
    del bm
    assert a.sum() == 3000.0  # the array keeps its manager alive


def test_stats_have_the_c_fields():
    s = magpool.BufferManager().get_stats()
    for k in ("gets", "releases", "hits", "misses", "large_gets", "large_releases",
              "bad_releases", "failed", "outstanding", "idle_buffers", "idle_blocks",
              "bytes_reserved", "classes_in_use", "hit_rate"):
        assert k in s


def test_a_manager_whose_init_never_ran_raises():
    bm = magpool.BufferManager.__new__(magpool.BufferManager)
    for call in (lambda: bm.get_buffer(10), lambda: bm.get_buffer(300_000),
                 bm.get_stats, bm.clear_unused):
        with pytest.raises(ValueError, match="not initialised"):
            call()
    with pytest.raises(magpool.PoolError):
        bm.release_buffer(np.zeros(3))
