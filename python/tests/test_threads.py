# SPDX-License-Identifier: MIT
"""8 Python threads acquiring and releasing buffers, blocks, objects and
numpy temporaries at once: nobody sees another thread's data."""
import threading

import numpy as np

import magpool

THREADS = 8
ROUNDS = 300


def run_threads(body):
    errors = []
    barrier = threading.Barrier(THREADS)

    def wrapped(i):
        try:
            barrier.wait()
            body(i)
        except BaseException as e:  # reported below, in the main thread
            errors.append(e)
    ts = [threading.Thread(target=wrapped, args=(i,)) for i in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_buffers_blocks_and_objects_from_8_threads():
    bm = magpool.BufferManager(max_buffers=20)
    mp = magpool.MemoryPool(512, initial_blocks=8, max_blocks=THREADS * 4)
    op = magpool.ObjectPool(list, reset_func=list.clear, max_size=THREADS * 2)
    sizes = (10, 1000, 20_000, 200_000)

    def body(i):
        for r in range(ROUNDS):
            bufs = [bm.get_buffer(sizes[(r + k) % 4], dtype="int64") for k in range(3)]
            for b in bufs:
                b[:] = i
            blocks = [mp.acquire() for _ in range(3)]
            for m in blocks:
                m[:] = bytes([i]) * 512
            obj = op.acquire()
            assert obj == []
            obj.extend([i] * 5)
            for b in bufs:
                assert (b == i).all(), "a buffer held another thread's data"
                bm.release_buffer(b)
            for m in blocks:
                assert m.tobytes() == bytes([i]) * 512
                mp.release(m)
            assert obj == [i] * 5
            op.release(obj)
            del bufs, blocks, b, m, obj
    run_threads(body)
    s = bm.get_stats()
    assert s["gets"] + s["big_gets"] == THREADS * ROUNDS * 3
    assert s["outstanding"] == s["big_outstanding"] == s["bad_releases"] == 0
    ms = mp.get_stats()
    assert ms["acquires"] == ms["releases"] == THREADS * ROUNDS * 3
    assert ms["blocks_outstanding"] == 0
    os_ = op.get_stats()
    assert os_["acquires"] == os_["releases"] == THREADS * ROUNDS and os_["outstanding"] == 0


def test_numpy_allocator_from_8_threads():
    alloc = magpool.NumpyAllocator()
    expected = {}
    for i in range(THREADS):
        x = np.random.default_rng(i).standard_normal(50_000)
        expected[i] = ((x - x.mean()) / x.std()).cumsum()

    def body(i):
        with magpool.numpy_allocator(alloc):
            x = np.random.default_rng(i).standard_normal(50_000)
            for _ in range(50):
                got = ((x - x.mean()) / x.std()).cumsum()
                assert np.array_equal(got, expected[i])
    run_threads(body)
    s = alloc.get_stats()
    assert s["pooled_allocs"] >= THREADS * 50 * 3 and s["outstanding"] == 0
