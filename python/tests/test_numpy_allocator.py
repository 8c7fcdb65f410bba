# SPDX-License-Identifier: MIT
"""numpy's allocator on magpool (NEP 49): identical results, sizes, lifetime."""
import gc
import threading

import numpy as np
import pandas as pd
import pytest

import magpool


def numpy_workload(seed):
    """A mix of numpy operations with small and large (pooled) temporaries,
    realloc (fromiter, resize) and calloc (zeros) among them."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in (10, 1000, 20_000, 300_000):
        x = rng.standard_normal(n)
        y = rng.standard_normal(n)
        out[f"arith{n}"] = (x * 2.5 + y) / (np.abs(y) + 1.0) - x ** 2
        out[f"cumsum{n}"] = np.cumsum(x)
        out[f"sort{n}"] = np.sort(x)
        out[f"argsort{n}"] = np.argsort(x, kind="stable")
        out[f"where{n}"] = np.where(x > 0, x, y)
        out[f"concat{n}"] = np.concatenate([x, y, x])
        out[f"zeros{n}"] = np.zeros(n)
        out[f"bool{n}"] = x[x > y]
        out[f"cast{n}"] = (x * 1000).astype(np.int32)
        out[f"fromiter{n}"] = np.fromiter((v for v in range(min(n, 50_000))), dtype=np.float64)
        r = x.copy()
        r.resize(2 * n, refcheck=False)
        out[f"resize{n}"] = r
        out[f"unique{n}"] = np.unique(np.round(x, 1))
    m = rng.standard_normal((300, 300))
    out["matmul"] = m @ m.T
    out["solve"] = np.linalg.solve(m + 300 * np.eye(300), np.ones(300))
    out["fft"] = np.fft.fft(rng.standard_normal(4096))
    out["stack"] = np.stack([m, m]).sum(axis=0)
    out["strings"] = np.char.add(np.array(["a", "bb"] * 5000), "x")
    return out


def dataframe_workload(seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((5000, 40)), columns=[f"c{i}" for i in range(40)])
    df["key"] = rng.integers(0, 10, len(df))
    out = {
        "arith": (df.iloc[:, :40] * 2 - df.iloc[:, :40].mean()) / df.iloc[:, :40].std(),
        "rolling": df.iloc[:, :40].rolling(20).mean(),
        "rank": df.iloc[:, :40].rank(axis=1),
        "groupby": df.groupby("key").sum(),
        "concat": pd.concat([df, df]).reset_index(drop=True),
        "merge": df[["key", "c0"]].merge(df[["key", "c1"]].head(100), on="key"),
    }
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k], check_exact=True)
        else:
            assert a[k].dtype == b[k].dtype, k
            assert np.array_equal(a[k], b[k]), k


def test_numpy_results_are_identical_and_sizes_are_pooled():
    expected = numpy_workload(1)
    alloc = magpool.NumpyAllocator()
    with magpool.numpy_allocator(alloc) as active:
        assert active is alloc and magpool.numpy_allocator_name() == "magpool"
        got = numpy_workload(1)
        big = np.empty(1_000_000)
        small = np.empty(100)
    assert magpool.numpy_allocator_name() == "default_allocator"
    assert_same(expected, got)
    s = alloc.get_stats()
    assert s["pooled_allocs"] > 50 and s["bad_frees"] == 0
    assert big.ctypes.data % 64 == 0
    before = alloc.get_stats()["pooled_allocs"]
    with magpool.numpy_allocator(alloc):
        np.empty(100)                      # below min_size: numpy's default
        np.ones(8192)                      # exactly min_size: pooled
    assert alloc.get_stats()["pooled_allocs"] == before + 1
    del got, big, small
    gc.collect()
    assert alloc.get_stats()["outstanding"] == 0


def test_pandas_results_are_identical():
    expected = dataframe_workload(2)
    with magpool.numpy_allocator() as alloc:
        got = dataframe_workload(2)
    assert_same(expected, got)
    assert alloc.get_stats()["pooled_allocs"] > 0


def test_zeros_are_zero_in_reused_memory():
    alloc = magpool.NumpyAllocator()
    with magpool.numpy_allocator(alloc):
        for _ in range(20):
            dirty = np.full(100_000, 7.0)
            del dirty
            z = np.zeros(100_000)
            assert not z.any()
            del z
    assert alloc.get_stats()["hits"] > 0


def test_realloc_moves_data_between_classes_and_allocators():
    with magpool.numpy_allocator(magpool.NumpyAllocator(min_size=4096, max_size=1 << 20)):
        a = np.arange(100, dtype=np.float64)          # default (800 B)
        for n in (1000, 1500, 100_000, 300_000, 50):  # pooled, bigger class, too big, back
            prev = a.copy()
            a.resize(n, refcheck=False)
            k = min(len(prev), n)
            assert np.array_equal(a[:k], prev[:k])
            if n > len(prev):
                assert not a[len(prev):].any()        # numpy zero-fills growth
            a[:] = np.arange(n)


def test_arrays_outlive_the_with_block_and_the_allocator_object():
    alloc = magpool.NumpyAllocator()
    with magpool.numpy_allocator(alloc):
        keep = np.arange(200_000, dtype=np.float64)
    del alloc
    gc.collect()
    assert keep.sum() == 199_999 * 200_000 / 2    # the handler capsule lives on
    del keep


def test_handler_is_per_thread():
    seen = {}

    def other():
        seen["name"] = magpool.numpy_allocator_name()
    with magpool.numpy_allocator():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert magpool.numpy_allocator_name() == "magpool"
    assert seen["name"] == "default_allocator"


def test_trim_gives_memory_back():
    alloc = magpool.NumpyAllocator(trim_interval=0)
    with magpool.numpy_allocator(alloc):
        a = [np.ones(100_000) for _ in range(8)]
    del a
    assert alloc.trim(0.0) >= 1
    assert alloc.get_stats()["bytes_returned"] > 0


@pytest.mark.parametrize("kw", [dict(min_size=100), dict(min_size=1 << 20, max_size=1 << 16),
                                dict(max_size=1 << 31), dict(max_idle=float("nan")),
                                dict(trim_interval=1e10)])
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        magpool.NumpyAllocator(**kw)


def test_set_numpy_allocator_input():
    with pytest.raises(TypeError):
        magpool.set_numpy_allocator(42)
    prev = magpool.set_numpy_allocator(magpool.default_numpy_allocator())
    try:
        assert magpool.numpy_allocator_name() == "magpool"
    finally:
        magpool.set_numpy_allocator(prev)
    assert magpool.numpy_allocator_name() == "default_allocator"


def test_an_allocator_whose_init_never_ran_raises():
    na = magpool.NumpyAllocator.__new__(magpool.NumpyAllocator)
    for call in (na.get_stats, na.trim, lambda: na.handler,
                 lambda: magpool.set_numpy_allocator(na)):
        with pytest.raises(ValueError, match="not initialised"):
            call()
    assert magpool.numpy_allocator_name() == "default_allocator"
