# SPDX-License-Identifier: MIT
"""ObjectPool: reuse of Python objects, with the design document's leak tracking.

The pooled objects are Python objects (DataFrames, lists, ...) living in
CPython's heap, so this pool keeps references to idle objects rather than
memory blocks: acquire() hands out an idle object (a hit) or calls factory()
(a miss); release() runs reset_func and keeps the object for the next
acquire. Bookkeeping is under a short lock; factory and reset_func run
outside it, so they may take as long as they like (or use the pool).

Leak tracking (document §6.2): every acquired object is tracked by a weak
reference (a strong one for objects that cannot be weakly referenced), with
the stack of its acquire() when trace=True. leaks() / report_leaks() list the
objects acquired and not released, also those garbage-collected without a
release; close() (and a with block around the pool) reports them as a
LeakWarning.
"""
import collections
import threading
import time
import traceback
import warnings
import weakref

from ._core import PoolError


class LeakWarning(UserWarning):
    """Objects acquired from an ObjectPool were never released."""


class LeakRecord(collections.namedtuple("LeakRecord", "obj alive acquired_at age")):
    """One object acquired and not released.

    obj: the object (None once garbage-collected); alive: whether it still
    exists; acquired_at: the acquire() call's stack as text (None unless the
    pool was made with trace=True); age: seconds since the acquire."""


class _Lease:
    __slots__ = ("ref", "strong", "since", "stack")

    def get(self):
        return self.strong if self.ref is None else self.ref()


_LOST_KEPT = 100  # records of collected-without-release objects kept for reports


class ObjectPool:
    """ObjectPool(factory, reset_func=None, max_size=100, initial_size=0, *, trace=False)

    factory() makes a new object; reset_func(obj), when given, cleans an
    object on release (if it raises, the object is dropped and the error
    propagates). At most max_size idle objects are kept (None: no cap);
    initial_size objects are made at once. trace=True records where each
    object was acquired (costs a stack walk per acquire).
    """

    def __init__(self, factory, reset_func=None, max_size=100, initial_size=0, *, trace=False):
        if not callable(factory):
            raise TypeError("factory must be callable")
        if reset_func is not None and not callable(reset_func):
            raise TypeError("reset_func must be callable or None")
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must be >= 0 or None")
        if initial_size < 0 or (max_size is not None and initial_size > max_size):
            raise ValueError("initial_size must be in 0..max_size")
        self._factory = factory
        self._reset = reset_func
        self._max_size = max_size
        self._trace = trace
        self._lock = threading.Lock()
        self._idle = []           # (object, idle since), most recent last
        self._out = {}            # id(obj) -> _Lease
        self._lost = collections.deque(maxlen=_LOST_KEPT)
        self._closed = False
        self._selfref = weakref.ref(self)
        self._c = dict(acquires=0, releases=0, hits=0, misses=0, created=0, discarded=0,
                       cleared=0, reset_errors=0, collected_unreleased=0, bad_releases=0)
        for _ in range(initial_size):
            self._idle.append((self._make(), time.monotonic()))

    # -- acquire / release -------------------------------------------------
    def _make(self):
        obj = self._factory()
        with self._lock:
            self._c["created"] += 1
        return obj

    def acquire(self):
        """An idle object, or a new one from factory()."""
        obj = None
        with self._lock:
            if self._closed:
                raise PoolError("ObjectPool is closed")
            if self._idle:
                obj = self._idle.pop()[0]
                self._c["hits"] += 1
        if obj is None:
            obj = self._make()
            with self._lock:
                self._c["misses"] += 1
        self._track(obj)
        return obj

    def _track(self, obj):
        lease = _Lease()
        lease.since = time.monotonic()
        lease.stack = "".join(traceback.format_stack()[:-2]) if self._trace else None
        key = id(obj)
        pool = self._selfref  # a weak one: no cycle through the callback

        def collected(ref, key=key):
            p = pool()
            if p is not None:
                p._collected(key, ref)
        try:
            lease.ref = weakref.ref(obj, collected)
            lease.strong = None
        except TypeError:  # list, dict, ...: cannot be weakly referenced
            lease.ref, lease.strong = None, obj
        with self._lock:
            self._out[key] = lease
            self._c["acquires"] += 1

    def _collected(self, key, ref):
        # The weak reference's callback: an acquired object died unreleased.
        with self._lock:
            lease = self._out.get(key)
            if lease is not None and lease.ref is ref:
                del self._out[key]
                self._c["collected_unreleased"] += 1
                self._lost.append(lease)

    def release(self, obj):
        """Reset obj and keep it for reuse. PoolError when obj is not an
        object of this pool that is currently acquired (double release,
        foreign object)."""
        key = id(obj)
        with self._lock:
            lease = self._out.get(key)
            if lease is None or lease.get() is not obj:
                self._c["bad_releases"] += 1
                raise PoolError("object was not acquired from this pool, or was already "
                                "released (double release)")
            del self._out[key]
            self._c["releases"] += 1
        if self._reset is not None:
            try:
                self._reset(obj)
            except BaseException:
                with self._lock:
                    self._c["reset_errors"] += 1
                raise
        with self._lock:
            if self._closed or (self._max_size is not None and len(self._idle) >= self._max_size):
                self._c["discarded"] += 1
                return
            self._idle.append((obj, time.monotonic()))

    def take(self):
        """with pool.take() as obj: ... acquires, and releases at the end."""
        return _Taken(self)

    # -- sizes, stats, ageing ----------------------------------------------
    def get_pool_size(self):
        """Idle objects ready for acquire() (the document's name)."""
        with self._lock:
            return len(self._idle)

    __len__ = get_pool_size

    @property
    def hit_rate(self):
        with self._lock:
            a = self._c["hits"] + self._c["misses"]
            return self._c["hits"] / a if a else 0.0

    def get_stats(self):
        """Counters: acquires, releases, hits, misses, hit_rate, created,
        discarded (released past max_size), cleared (by clear_unused/clear),
        reset_errors, bad_releases, collected_unreleased, idle, outstanding."""
        with self._lock:
            s = dict(self._c)
            s["idle"] = len(self._idle)
            s["outstanding"] = len(self._out)
        a = s["hits"] + s["misses"]
        s["hit_rate"] = s["hits"] / a if a else 0.0
        return s

    def clear_unused(self, max_age=60.0):
        """Drop idle objects unused for more than max_age seconds (oldest
        first); returns how many."""
        cutoff = time.monotonic() - max_age
        with self._lock:
            # _idle is in release order, so oldest first
            n = 0
            while n < len(self._idle) and self._idle[n][1] < cutoff:
                n += 1
            dropped, self._idle = self._idle[:n], self._idle[n:]
            self._c["cleared"] += n
        del dropped  # objects die outside the lock (their __del__ may use the pool)
        return n

    def clear(self):
        """Drop every idle object; returns how many."""
        return self.clear_unused(max_age=float("-inf"))

    # -- leaks -------------------------------------------------------------
    def leaks(self):
        """LeakRecords of objects acquired and not released: the live ones,
        then (up to 100) collected without a release."""
        now = time.monotonic()
        with self._lock:
            out = list(self._out.values())
            lost = list(self._lost)
        recs = []
        for lease in out:
            obj = lease.get()
            recs.append(LeakRecord(obj, obj is not None, lease.stack, now - lease.since))
        for lease in lost:
            recs.append(LeakRecord(None, False, lease.stack, now - lease.since))
        return recs

    def report_leaks(self, file=None):
        """Write the leak report (to file, or warn with LeakWarning when file
        is None); return the number of objects acquired and not released."""
        recs = self.leaks()
        if not recs:
            return 0
        alive = sum(r.alive for r in recs)
        lines = ["ObjectPool: %d object(s) acquired and not released (%d still alive, "
                 "%d garbage-collected)" % (len(recs), alive, len(recs) - alive)]
        sites = collections.Counter(r.acquired_at for r in recs)
        for site, n in sites.most_common():
            if site is None:
                lines.append("  %d object(s); ObjectPool(..., trace=True) records where" % n)
            else:
                lines.append("  %d object(s) acquired at:\n%s" % (n, site.rstrip()))
        text = "\n".join(lines)
        if file is None:
            warnings.warn(text, LeakWarning, stacklevel=2)
        else:
            print(text, file=file)
        return len(recs)

    def close(self):
        """Report leaks (LeakWarning) and drop the idle objects. Further
        acquires raise PoolError; releases still work (objects are dropped)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.report_leaks()
        self.clear()

    def __del__(self):
        # A pool dropped without close() still reports its leaks.
        try:
            if not self._closed:
                self.close()
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        s = self.get_stats()
        return "<ObjectPool idle=%d outstanding=%d hit_rate=%.3f>" % (
            s["idle"], s["outstanding"], s["hit_rate"])


class _Taken:
    __slots__ = ("_pool", "_obj")

    def __init__(self, pool):
        self._pool = pool

    def __enter__(self):
        self._obj = self._pool.acquire()
        return self._obj

    def __exit__(self, *exc):
        self._pool.release(self._obj)
        return False
