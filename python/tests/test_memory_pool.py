# SPDX-License-Identifier: MIT
"""MemoryPool: magpool blocks as writable memoryviews, and misuse."""
import numpy as np
import pytest

import magpool
from conftest import addr

C_FIELDS = ["acquires", "releases", "hits", "misses", "grows", "trims", "failed",
            "blocks_total", "blocks_outstanding", "bytes_reserved", "hit_rate", "depot_gets",
            "depot_puts", "steals", "threads", "bytes_returned", "magazines", "errors",
            "reclaims", "spilled"]


def test_blocks_are_writable_aligned_views():
    mp = magpool.MemoryPool(200, initial_blocks=4)
    m = mp.acquire()
    assert isinstance(m, memoryview) and len(m) == 200 and not m.readonly
    assert addr(m) % 64 == 0
    m[:5] = b"hello"
    assert bytes(m[:5]) == b"hello"
    np.frombuffer(m, dtype=np.uint8)[:] = 9
    assert m[199] == 9
    mp.release(m)
    assert mp.block_size == 200


def test_stats_have_every_c_field():
    mp = magpool.MemoryPool(64, initial_blocks=2)
    m = mp.acquire()
    s = mp.get_stats()
    for k in C_FIELDS:
        assert k in s, k
    assert s["acquires"] == 1 and s["blocks_outstanding"] == 1
    mp.release(m)
    del m
    s = mp.get_stats()
    assert s["releases"] == 1 and s["blocks_outstanding"] == 0


def test_exhaustion_is_memoryerror_and_release_while_viewed_defers_reuse():
    mp = magpool.MemoryPool(64, initial_blocks=2, max_blocks=2)
    a, b = mp.acquire(), mp.acquire()
    with pytest.raises(MemoryError):
        mp.acquire()
    keep = a[8:16]         # a slice keeps the block alive
    mp.release(a)
    del a
    with pytest.raises(MemoryError):   # still referenced: not reused
        mp.acquire()
    del keep
    c = mp.acquire()                   # now it is
    mp.release(b)
    mp.release(c)


def test_double_and_foreign_release_raise():
    mp, other = magpool.MemoryPool(64), magpool.MemoryPool(64)
    m = mp.acquire()
    mp.release(m)
    with pytest.raises(magpool.PoolError, match="double"):
        mp.release(m)
    with pytest.raises(magpool.PoolError):
        mp.release(m[1:])  # a view of the same block: already released too
    for bad in (memoryview(b"abc"), bytearray(64), other.acquire(), 5, None):
        with pytest.raises(magpool.PoolError):
            mp.release(bad)
    assert mp.get_stats()["bad_releases"] == 7


def test_a_slice_releases_its_block():
    mp = magpool.MemoryPool(64)
    m = mp.acquire()
    mp.release(m[4:8])
    with pytest.raises(magpool.PoolError):
        mp.release(m)


def test_dropped_block_goes_back():
    mp = magpool.MemoryPool(64)
    m = mp.acquire()
    del m
    s = mp.get_stats()
    assert s["blocks_outstanding"] == 0 and s["collected_unreleased"] == 1


@pytest.mark.parametrize("kw", [dict(block_size=0), dict(block_size=-5),
                                dict(block_size=64, initial_blocks=-1),
                                dict(block_size=64, max_blocks=-1),
                                dict(block_size=64, grow_factor=1.0),
                                dict(block_size=64, grow_factor=float("nan")),
                                dict(block_size=64, grow_factor=float("inf")),
                                dict(block_size=2**62, initial_blocks=10)])
def test_bad_configs_raise(kw):
    with pytest.raises((ValueError, MemoryError)):
        magpool.MemoryPool(**kw)


def test_clear_gives_idle_blocks_back():
    mp = magpool.MemoryPool(4096, initial_blocks=64)
    assert mp.clear() >= 1
    assert mp.get_stats()["trims"] >= 1


def test_a_pool_whose_init_never_ran_raises():
    mp = magpool.MemoryPool.__new__(magpool.MemoryPool)
    for call in (mp.acquire, mp.get_stats, mp.clear):
        with pytest.raises(ValueError, match="not initialised"):
            call()
