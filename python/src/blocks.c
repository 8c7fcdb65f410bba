/* SPDX-License-Identifier: MIT */
/*
 * MemoryPool: a magpool_t whose blocks Python sees as writable memoryviews.
 *
 * acquire() wraps the block in a Block object that exports it through the
 * buffer protocol and returns memoryview(block). Every memoryview made from
 * it (slices, casts, numpy.frombuffer) keeps the Block alive, so the
 * Block's dealloc is where the block goes back to the pool; release()
 * marks the Block released (PoolError on a second release or a foreign
 * object).
 */
#include "ext.h"

#include <errno.h>
#include <math.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    magpool_t *pool;
    size_t block_size;
    magpool_py_counts_t counts;
} MemoryPool;

typedef struct {
    PyObject_HEAD
    MemoryPool *mp; /* strong: the pool outlives its blocks */
    void *data;
    int released;
} Block;

static void block_dealloc(PyObject *self)
{
    Block *b = (Block *)self;
    MemoryPool *mp = b->mp;
    magpool_py_owner_gone(&mp->counts, b->released);
    magpool_release(mp->pool, b->data); /* wait-free */
    Py_TYPE(self)->tp_free(self);
    Py_DECREF(mp);
}

static int block_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    Block *b = (Block *)self;
    return PyBuffer_FillInfo(view, self, b->data, (Py_ssize_t)b->mp->block_size, 0, flags);
}

static PyBufferProcs block_as_buffer = {.bf_getbuffer = block_getbuffer};

PyTypeObject magpool_Block_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "magpool._core.Block",
    .tp_doc = "One MemoryPool block; exported as a writable buffer.",
    .tp_basicsize = sizeof(Block),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = block_dealloc,
    .tp_as_buffer = &block_as_buffer,
};

static int mp_init(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"block_size", "initial_blocks", "max_blocks", "grow_factor",
                             "prefault", NULL};
    MemoryPool *mp = (MemoryPool *)self;
    Py_ssize_t block_size, initial = 10, max_blocks = 0;
    double grow = 2.0;
    int prefault = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|nnd$p:MemoryPool", kwlist, &block_size,
                                     &initial, &max_blocks, &grow, &prefault))
        return -1;
    if (mp->pool) {
        PyErr_SetString(PyExc_RuntimeError, "MemoryPool already initialised");
        return -1;
    }
    if (block_size <= 0 || initial < 0 || max_blocks < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "block_size must be > 0, initial_blocks and max_blocks >= 0 "
                        "(max_blocks 0: no cap)");
        return -1;
    }
    if (!(grow > 1.0) || !isfinite(grow)) {
        PyErr_SetString(PyExc_ValueError, "grow_factor must be a finite number > 1");
        return -1;
    }
    magpool_config_t cfg = magpool_config_default((size_t)block_size);
    cfg.align = 64;
    cfg.initial_blocks = (size_t)initial;
    cfg.max_blocks = (size_t)max_blocks;
    cfg.grow_factor = grow;
    cfg.flags = prefault ? MAGPOOL_PREFAULT : 0;
    magpool_t *p;
    int err;
    Py_BEGIN_ALLOW_THREADS
    p = magpool_create(&cfg);
    err = errno;
    Py_END_ALLOW_THREADS
    if (!p) {
        errno = err;
        PyErr_SetFromErrno(err == ENOMEM ? PyExc_MemoryError : PyExc_ValueError);
        return -1;
    }
    mp->pool = p;
    mp->block_size = (size_t)block_size;
    return 0;
}

/* 1, or 0 with ValueError for a pool whose __init__ never ran. */
static int mp_ready(MemoryPool *mp)
{
    if (mp->pool)
        return 1;
    PyErr_SetString(PyExc_ValueError, "MemoryPool not initialised");
    return 0;
}

static void mp_dealloc(PyObject *self)
{
    MemoryPool *mp = (MemoryPool *)self;
    magpool_destroy(mp->pool); /* Blocks hold references: none is out */
    Py_TYPE(self)->tp_free(self);
}

static PyObject *mp_acquire(PyObject *self, PyObject *unused)
{
    (void)unused;
    MemoryPool *mp = (MemoryPool *)self;
    if (!mp_ready(mp))
        return NULL;
    Block *b = PyObject_New(Block, &magpool_Block_Type);
    if (!b)
        return NULL;
    void *data;
    int err;
    /* The fast path is a magazine pop, but a miss grows the pool (mmap,
     * growth lock) and at max_blocks steals from other threads' caches. */
    Py_BEGIN_ALLOW_THREADS
    data = magpool_acquire(mp->pool);
    err = errno;
    Py_END_ALLOW_THREADS
    if (!data) {
        PyObject_Free(b);
        if (err == ENOMEM)
            return PyErr_Format(PyExc_MemoryError,
                                "MemoryPool exhausted: max_blocks blocks in use, or no memory");
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_INCREF(mp);
    b->mp = mp;
    b->data = data;
    b->released = 0;
    PyObject *view = PyMemoryView_FromObject((PyObject *)b);
    Py_DECREF(b);
    return view;
}

static Block *block_of(MemoryPool *mp, PyObject *obj)
{
    PyObject *exporter = obj;
    if (PyMemoryView_Check(obj)) {
        exporter = PyMemoryView_GET_BUFFER(obj)->obj;
        if (!exporter) {
            PyErr_SetString(magpool_PoolError,
                            "a released memoryview: release the pool block before "
                            "memoryview.release(), or pass a live view of it");
            return NULL;
        }
    }
    if (Py_TYPE(exporter) != &magpool_Block_Type || ((Block *)exporter)->mp != mp) {
        PyErr_SetString(magpool_PoolError, "not a block of this MemoryPool");
        return NULL;
    }
    return (Block *)exporter;
}

static PyObject *mp_release(PyObject *self, PyObject *obj)
{
    MemoryPool *mp = (MemoryPool *)self;
    Block *b = block_of(mp, obj);
    if (magpool_py_mark_released(b ? &b->released : NULL, &mp->counts, "block") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mp_clear(PyObject *self, PyObject *args)
{
    MemoryPool *mp = (MemoryPool *)self;
    double max_age = 0.0;
    if (!PyArg_ParseTuple(args, "|d:clear", &max_age) || !mp_ready(mp))
        return NULL;
    size_t n;
    Py_BEGIN_ALLOW_THREADS
    n = magpool_trim(mp->pool, max_age);
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyObject *mp_get_stats(PyObject *self, PyObject *unused)
{
    (void)unused;
    MemoryPool *mp = (MemoryPool *)self;
    if (!mp_ready(mp))
        return NULL;
    magpool_stats_t s;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = magpool_get_stats(mp->pool, &s);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    if (magpool_py_put_u64(d, "acquires", s.acquires) ||
        magpool_py_put_u64(d, "releases", s.releases) || magpool_py_put_u64(d, "hits", s.hits) ||
        magpool_py_put_u64(d, "misses", s.misses) || magpool_py_put_u64(d, "grows", s.grows) ||
        magpool_py_put_u64(d, "trims", s.trims) || magpool_py_put_u64(d, "failed", s.failed) ||
        magpool_py_put_u64(d, "blocks_total", s.blocks_total) ||
        magpool_py_put_u64(d, "blocks_outstanding", s.blocks_outstanding) ||
        magpool_py_put_u64(d, "bytes_reserved", s.bytes_reserved) ||
        magpool_py_put_double(d, "hit_rate", s.hit_rate) ||
        magpool_py_put_u64(d, "depot_gets", s.depot_gets) ||
        magpool_py_put_u64(d, "depot_puts", s.depot_puts) ||
        magpool_py_put_u64(d, "steals", s.steals) || magpool_py_put_u64(d, "threads", s.threads) ||
        magpool_py_put_u64(d, "bytes_returned", s.bytes_returned) ||
        magpool_py_put_u64(d, "magazines", s.magazines) ||
        magpool_py_put_u64(d, "errors", s.errors) ||
        magpool_py_put_u64(d, "reclaims", s.reclaims) ||
        magpool_py_put_u64(d, "spilled", s.spilled) ||
        magpool_py_put_u64(d, "block_size", mp->block_size) ||
        magpool_py_put_counts(d, &mp->counts)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *mp_block_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(((MemoryPool *)self)->block_size);
}

static PyGetSetDef mp_getset[] = {
    {"block_size", mp_block_size, NULL, "bytes per block", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef mp_methods[] = {
    {"acquire", mp_acquire, METH_NOARGS,
     "acquire() -> memoryview\n\n"
     "A writable memoryview (format 'B') of one block_size-byte block, 64-byte\n"
     "aligned, contents unspecified. MemoryError at max_blocks."},
    {"release", mp_release, METH_O,
     "release(view) -> None\n\n"
     "Give back a block acquire returned (the memoryview, or any view made\n"
     "from it). The block is reused once no view refers to it. PoolError for a\n"
     "second release or a foreign object."},
    {"clear", mp_clear, METH_VARARGS,
     "clear(max_age=0.0) -> int\n\n"
     "Give idle memory (idle longer than max_age seconds) back to the OS;\n"
     "returns the number of blocks (magpool_trim)."},
    {"get_stats", mp_get_stats, METH_NOARGS,
     "get_stats() -> dict: every field of the C magpool_stats_t, plus\n"
     "block_size, released_pending, collected_unreleased, bad_releases."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject magpool_MemoryPool_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "magpool.MemoryPool",
    .tp_doc = "MemoryPool(block_size, initial_blocks=10, max_blocks=0, grow_factor=2.0, *,\n"
              "           prefault=False)\n\n"
              "A lock-free magpool of fixed-size blocks, seen as writable memoryviews.",
    .tp_basicsize = sizeof(MemoryPool),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = mp_init,
    .tp_dealloc = mp_dealloc,
    .tp_methods = mp_methods,
    .tp_getset = mp_getset,
};
