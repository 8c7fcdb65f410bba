# SPDX-License-Identifier: MIT
"""ObjectPool: reuse, counters, ageing and weak-reference leak tracking."""
import gc
import io
import time

import pandas as pd
import pytest

import magpool


class Thing:
    def __init__(self):
        self.items = []


def test_acquire_release_reuses_and_resets():
    resets = []
    pool = magpool.ObjectPool(Thing, reset_func=lambda t: (t.items.clear(), resets.append(t)))
    a = pool.acquire()
    a.items.append(1)
    pool.release(a)
    b = pool.acquire()
    assert b is a and b.items == [] and resets == [a]
    s = pool.get_stats()
    assert (s["acquires"], s["releases"], s["hits"], s["misses"]) == (2, 1, 1, 1)
    assert pool.hit_rate == 0.5 and s["outstanding"] == 1 and s["idle"] == 0
    pool.release(b)
    assert pool.get_pool_size() == 1 == len(pool)


def test_take_releases_also_on_error():
    pool = magpool.ObjectPool(Thing)
    with pool.take() as t:
        t.items.append(1)
    with pytest.raises(KeyError):
        with pool.take() as u:
            raise KeyError("boom")
    assert u is t and pool.get_stats()["outstanding"] == 0 and len(pool) == 1


def test_double_and_foreign_release_raise():
    pool = magpool.ObjectPool(Thing)
    a = pool.acquire()
    pool.release(a)
    with pytest.raises(magpool.PoolError):
        pool.release(a)
    with pytest.raises(magpool.PoolError):
        pool.release(Thing())
    assert pool.get_stats()["bad_releases"] == 2 and len(pool) == 1


def test_initial_size_and_max_size():
    made = []
    pool = magpool.ObjectPool(lambda: made.append(1) or Thing(), max_size=2, initial_size=2)
    assert len(made) == 2 and len(pool) == 2
    objs = [pool.acquire() for _ in range(4)]
    for o in objs:
        pool.release(o)
    s = pool.get_stats()
    assert len(pool) == 2 and s["discarded"] == 2 and s["created"] == 4


def test_reset_error_drops_the_object_and_propagates():
    def bad_reset(t):
        raise RuntimeError("cannot reset")
    pool = magpool.ObjectPool(Thing, reset_func=bad_reset)
    a = pool.acquire()
    with pytest.raises(RuntimeError):
        pool.release(a)
    assert len(pool) == 0 and pool.get_stats()["reset_errors"] == 1


def test_clear_unused_by_age():
    pool = magpool.ObjectPool(Thing)
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    time.sleep(0.05)
    pool.release(b)
    assert pool.clear_unused(max_age=0.03) == 1  # only a is that old
    assert pool.acquire() is b
    assert pool.clear_unused(max_age=60.0) == 0
    pool.release(b)
    assert pool.get_stats()["cleared"] == 1


def test_bad_arguments():
    with pytest.raises(TypeError):
        magpool.ObjectPool(42)
    with pytest.raises(TypeError):
        magpool.ObjectPool(Thing, reset_func=3)
    with pytest.raises(ValueError):
        magpool.ObjectPool(Thing, max_size=-1)
    with pytest.raises(ValueError):
        magpool.ObjectPool(Thing, max_size=1, initial_size=2)


def acquire_and_forget(pool):
    return pool.acquire()


def test_leaks_are_reported_with_the_acquire_site():
    pool = magpool.ObjectPool(Thing, trace=True)
    kept = acquire_and_forget(pool)
    acquire_and_forget(pool)          # dropped without release
    gc.collect()
    recs = pool.leaks()
    assert len(recs) == 2
    assert sorted(r.alive for r in recs) == [False, True]
    assert all("acquire_and_forget" in r.acquired_at for r in recs)
    assert [r.obj for r in recs if r.alive] == [kept]
    out = io.StringIO()
    assert pool.report_leaks(out) == 2
    assert "2 object(s) acquired and not released" in out.getvalue()
    assert "acquire_and_forget" in out.getvalue()
    assert pool.get_stats()["collected_unreleased"] == 1
    pool.release(kept)
    assert len(pool.leaks()) == 1     # the collected one stays reported
    with pytest.warns(magpool.LeakWarning, match="1 garbage-collected"):
        del pool                      # a pool dropped unclosed reports too
        gc.collect()


def test_close_warns_about_leaks_and_refuses_acquire():
    pool = magpool.ObjectPool(list)   # lists cannot be weakly referenced
    kept = pool.acquire()
    with pytest.warns(magpool.LeakWarning, match="1 object"):
        pool.close()
    with pytest.raises(magpool.PoolError):
        pool.acquire()
    pool.release(kept)                # still accepted, then dropped
    assert len(pool) == 0


def test_no_leak_no_warning(recwarn):
    with magpool.ObjectPool(Thing) as pool:
        with pool.take():
            pass
    assert not [w for w in recwarn if issubclass(w.category, magpool.LeakWarning)]


def test_dataframes_pool():
    pool = magpool.ObjectPool(pd.DataFrame, reset_func=lambda df: df.drop(df.index, inplace=True))
    df = pool.acquire()
    df["price"] = [100, 101, 102]
    pool.release(df)
    again = pool.acquire()
    assert again is df and len(again) == 0
    pool.release(again)
