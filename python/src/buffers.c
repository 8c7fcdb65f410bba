/* SPDX-License-Identifier: MIT */
/*
 * BufferManager: numpy arrays whose memory is a magpool_bufmgr buffer.
 *
 * get_buffer() returns a plain numpy.ndarray that does not own its data:
 * its base is a BufferOwner, a small object holding the buffer. numpy
 * keeps that base alive as long as the array or any view of it lives (a
 * view's base is the array itself, since the owner is not an ndarray), so
 * the owner's dealloc is the moment no Python object can reach the memory
 * any more, and the only place the buffer goes back to the manager.
 * release_buffer() marks the owner released: the array must be the one
 * get_buffer() returned (its base is the owner), a second release or any
 * other array raises PoolError, and reuse waits for the last view.
 *
 * Buffers above the C manager's largest class (MAGPOOL_BUFMGR_MAX_CLASS:
 * 256 MiB since 0.3, 1 MiB before) would be an mmap on every get and an
 * munmap on every release there (and a page fault per page written): up
 * to 1 GiB they come from size-class pools of the manager's own instead
 * (classpools.h; one block per growth, so idle blocks are exactly released
 * buffers), kept under the same max_buffers cap and given back by the same
 * clear_unused. Larger ones still go to the C manager.
 */
#include "ext.h"
#include "classpools.h"

#include <errno.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    magpool_bufmgr_t *bm;
    Py_ssize_t max_buffers;
    magpool_py_counts_t counts;
    classpools_t big;                        /* above MAGPOOL_BUFMGR_MAX_CLASS .. 1 GiB */
} BufferManager;

typedef struct {
    PyObject_HEAD
    BufferManager *mgr; /* strong: the manager outlives its buffers */
    void *data;
    size_t nbytes;
    int cls;      /* class of m->big, or -1: a buffer of the C manager */
    int released;
} BufferOwner;

/* Give a big buffer back; past the idle cap, every idle big buffer goes
 * back to the OS (a trim: the cap is rare and these are > MAGPOOL_BUFMGR_MAX_CLASS each).
 * Called without the GIL. */
static void big_release(BufferManager *m, unsigned cls, void *data)
{
    classpools_release(&m->big, cls, data);
    if (m->max_buffers) {
        classpools_stats_t cs;
        classpools_get_stats(&m->big, &cs);
        if (cs.blocks_total - cs.outstanding > (unsigned long long)m->max_buffers)
            classpools_trim(&m->big, 0.0);
    }
}

static void owner_dealloc(PyObject *self)
{
    BufferOwner *o = (BufferOwner *)self;
    BufferManager *m = o->mgr;
    magpool_py_owner_gone(&m->counts, o->released);
    if (o->cls >= 0) {
        Py_BEGIN_ALLOW_THREADS
        big_release(m, (unsigned)o->cls, o->data);
        Py_END_ALLOW_THREADS
    } else if (o->nbytes >= MAGPOOL_PY_NOGIL_BYTES) {
        /* May munmap (large buffer, or the idle cap clearing classes). */
        Py_BEGIN_ALLOW_THREADS
        magpool_bufmgr_release(m->bm, o->data);
        Py_END_ALLOW_THREADS
    } else {
        magpool_bufmgr_release(m->bm, o->data);
    }
    Py_TYPE(self)->tp_free(self);
    Py_DECREF(m);
}

PyTypeObject magpool_BufferOwner_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "magpool._core.BufferOwner",
    .tp_doc = "Holds one BufferManager buffer; the base of the array over it.",
    .tp_basicsize = sizeof(BufferOwner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = owner_dealloc,
};

static int bm_init(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_buffers", NULL};
    BufferManager *m = (BufferManager *)self;
    Py_ssize_t max_buffers = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|n:BufferManager", kwlist, &max_buffers))
        return -1;
    if (max_buffers < 0) {
        PyErr_SetString(PyExc_ValueError, "max_buffers must be >= 0 (0: no cap)");
        return -1;
    }
    if (m->bm) {
        PyErr_SetString(PyExc_RuntimeError, "BufferManager already initialised");
        return -1;
    }
    m->bm = magpool_bufmgr_create((size_t)max_buffers);
    if (!m->bm) {
        PyErr_SetFromErrno(PyExc_MemoryError);
        return -1;
    }
    m->max_buffers = max_buffers;
    m->big.head = 0;
    m->big.grow_factor = 1.0001; /* one block per growth */
    m->big.label = "bufmgr-big";
    return 0;
}

/* 1, or 0 with ValueError for a manager whose __init__ never ran. */
static int bm_ready(BufferManager *m)
{
    if (m->bm)
        return 1;
    PyErr_SetString(PyExc_ValueError, "BufferManager not initialised");
    return 0;
}

static void bm_dealloc(PyObject *self)
{
    BufferManager *m = (BufferManager *)self;
    /* Every buffer's owner holds a reference: none is outstanding now. */
    magpool_bufmgr_destroy(m->bm);
    classpools_destroy(&m->big);
    Py_TYPE(self)->tp_free(self);
}

/* The C element type for a numpy dtype, or -1 when the buffer is asked for
 * in bytes (MAGPOOL_U8 x itemsize): any plain dtype works, the C dtype only
 * fixes the element size. */
static int c_dtype_of(const PyArray_Descr *d)
{
    switch (d->kind) {
    case 'u': return d->elsize == 1 ? MAGPOOL_U8 : -1;
    case 'i':
        switch (d->elsize) {
        case 1: return MAGPOOL_I8;
        case 2: return MAGPOOL_I16;
        case 4: return MAGPOOL_I32;
        case 8: return MAGPOOL_I64;
        default: return -1;
        }
    case 'f':
        return d->elsize == 4 ? MAGPOOL_F32 : d->elsize == 8 ? MAGPOOL_F64 : -1;
    default: return -1;
    }
}

/* shape from an int or a tuple of ints; the element count into *count. */
static int parse_shape(PyObject *size, npy_intp *dims, int *nd, size_t *count)
{
    PyArray_Dims shape = {NULL, 0};
    if (!PyArray_IntpConverter(size, &shape))
        return -1;
    int rc = -1;
    size_t n = 1;
    if (shape.len > NPY_MAXDIMS) {
        PyErr_SetString(PyExc_ValueError, "too many dimensions");
        goto out;
    }
    for (int i = 0; i < shape.len; i++) {
        if (shape.ptr[i] <= 0) {
            PyErr_Format(PyExc_ValueError,
                         "size must be > 0 (got %zd): a BufferManager hands out "
                         "non-empty buffers", (Py_ssize_t)shape.ptr[i]);
            goto out;
        }
        if (__builtin_mul_overflow(n, (size_t)shape.ptr[i], &n)) {
            PyErr_SetString(PyExc_ValueError, "size too large");
            goto out;
        }
        dims[i] = shape.ptr[i];
    }
    *nd = shape.len;
    *count = n;
    rc = 0;
out:
    PyDimMem_FREE(shape.ptr);
    return rc;
}

static PyObject *bm_get_buffer(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", "dtype", "zero", NULL};
    BufferManager *m = (BufferManager *)self;
    PyObject *size;
    PyArray_Descr *descr = NULL;
    int zero = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O&$p:get_buffer", kwlist, &size,
                                     PyArray_DescrConverter2, &descr, &zero))
        return NULL;
    if (!bm_ready(m)) {
        Py_XDECREF(descr);
        return NULL;
    }
    if (!descr)
        descr = PyArray_DescrFromType(NPY_FLOAT64);
    if (PyDataType_REFCHK(descr) || descr->elsize <= 0 || PyDataType_HASSUBARRAY(descr)) {
        PyErr_Format(PyExc_TypeError,
                     "dtype %R cannot live in a pooled buffer (object references, "
                     "sub-arrays and unsized types are refused)", (PyObject *)descr);
        Py_DECREF(descr);
        return NULL;
    }
    npy_intp dims[NPY_MAXDIMS];
    int nd = 0;
    size_t count;
    if (parse_shape(size, dims, &nd, &count) < 0) {
        Py_DECREF(descr);
        return NULL;
    }
    int cdt = c_dtype_of(descr);
    size_t nbytes;
    if (__builtin_mul_overflow(count, (size_t)descr->elsize, &nbytes) || nbytes > PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "size too large");
        Py_DECREF(descr);
        return NULL;
    }
    size_t c_count = cdt < 0 ? nbytes : count;
    magpool_dtype_t c_type = cdt < 0 ? MAGPOOL_U8 : (magpool_dtype_t)cdt;

    BufferOwner *o = PyObject_New(BufferOwner, &magpool_BufferOwner_Type);
    if (!o) {
        Py_DECREF(descr);
        return NULL;
    }
    void *data;
    int err;
    int cls = nbytes > MAGPOOL_BUFMGR_MAX_CLASS && nbytes <= CP_MAX_BYTES
              ? (int)classpools_index(nbytes) : -1;
    if (cls >= 0) {
        Py_BEGIN_ALLOW_THREADS
        data = classpools_acquire(&m->big, (unsigned)cls);
        err = errno;
        if (data && zero)
            memset(data, 0, nbytes);
        Py_END_ALLOW_THREADS
    } else if (nbytes >= MAGPOOL_PY_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        data = magpool_bufmgr_get(m->bm, c_count, c_type);
        err = errno;
        if (data && zero)
            memset(data, 0, nbytes);
        Py_END_ALLOW_THREADS
    } else {
        data = magpool_bufmgr_get(m->bm, c_count, c_type);
        err = errno;
        if (data && zero)
            memset(data, 0, nbytes);
    }
    if (!data) {
        PyObject_Free(o); /* never initialised: no dealloc */
        Py_DECREF(descr);
        errno = err;
        if (err == ENOMEM)
            return PyErr_Format(PyExc_MemoryError, "BufferManager: no memory for %zu bytes",
                                nbytes);
        return PyErr_Format(PyExc_ValueError, "BufferManager: cannot get %zu bytes (%s)",
                            nbytes, strerror(err));
    }
    Py_INCREF(m);
    o->mgr = m;
    o->data = data;
    o->nbytes = nbytes;
    o->cls = cls;
    o->released = 0;

    PyObject *arr = PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, data,
                                         NPY_ARRAY_CARRAY, NULL); /* steals descr */
    if (!arr) {
        Py_DECREF(o);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)o) < 0) { /* steals o */
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* The owner of arr when arr is one of m's arrays, else NULL + PoolError. */
static BufferOwner *owner_of(BufferManager *m, PyObject *arr)
{
    if (!PyArray_Check(arr)) {
        PyErr_Format(magpool_PoolError,
                     "release_buffer expects the numpy array get_buffer returned, got %.100s",
                     Py_TYPE(arr)->tp_name);
        return NULL;
    }
    PyObject *base = PyArray_BASE((PyArrayObject *)arr);
    if (!base || Py_TYPE(base) != &magpool_BufferOwner_Type ||
        ((BufferOwner *)base)->mgr != m) {
        PyErr_SetString(magpool_PoolError,
                        "not a buffer of this BufferManager (an array from elsewhere, "
                        "another manager, or a view/copy of a buffer: release the array "
                        "get_buffer returned)");
        return NULL;
    }
    return (BufferOwner *)base;
}

static PyObject *bm_release_buffer(PyObject *self, PyObject *arr)
{
    BufferManager *m = (BufferManager *)self;
    BufferOwner *o = owner_of(m, arr);
    if (magpool_py_mark_released(o ? &o->released : NULL, &m->counts, "buffer") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *bm_is_released(PyObject *self, PyObject *arr)
{
    BufferOwner *o = owner_of((BufferManager *)self, arr);
    return o ? PyBool_FromLong(o->released) : NULL;
}

static PyObject *bm_clear_unused(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_age", NULL};
    BufferManager *m = (BufferManager *)self;
    double max_age = 60.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|d:clear_unused", kwlist, &max_age) ||
        !bm_ready(m))
        return NULL;
    size_t n;
    Py_BEGIN_ALLOW_THREADS
    n = magpool_bufmgr_clear_unused(m->bm, max_age) + classpools_trim(&m->big, max_age);
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyObject *bm_get_stats(PyObject *self, PyObject *unused)
{
    (void)unused;
    BufferManager *m = (BufferManager *)self;
    if (!bm_ready(m))
        return NULL;
    magpool_bufmgr_stats_t s;
    classpools_stats_t b;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = magpool_bufmgr_get_stats(m->bm, &s);
    classpools_get_stats(&m->big, &b);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    if (magpool_py_put_u64(d, "gets", s.gets) || magpool_py_put_u64(d, "releases", s.releases) ||
        magpool_py_put_u64(d, "hits", s.hits) || magpool_py_put_u64(d, "misses", s.misses) ||
        magpool_py_put_u64(d, "large_gets", s.large_gets) ||
        magpool_py_put_u64(d, "large_releases", s.large_releases) ||
        magpool_py_put_u64(d, "failed", s.failed) ||
        magpool_py_put_u64(d, "outstanding", s.outstanding) ||
        magpool_py_put_u64(d, "idle_buffers", s.idle_buffers) ||
        magpool_py_put_u64(d, "idle_blocks", s.idle_blocks) ||
        magpool_py_put_u64(d, "bytes_reserved", s.bytes_reserved) ||
        magpool_py_put_u64(d, "classes_in_use", s.classes_in_use) ||
        magpool_py_put_double(d, "hit_rate",
                              s.gets ? (double)s.hits / (double)s.gets : 0.0) ||
        magpool_py_put_u64(d, "big_gets", b.acquires) ||
        magpool_py_put_u64(d, "big_hits", b.hits) ||
        magpool_py_put_u64(d, "big_outstanding", b.outstanding) ||
        magpool_py_put_u64(d, "big_idle", b.blocks_total - b.outstanding) ||
        magpool_py_put_u64(d, "big_bytes_reserved", b.bytes_reserved) ||
        magpool_py_put_counts(d, &m->counts) ||
        magpool_py_put_u64(d, "max_buffers", (unsigned long long)m->max_buffers)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyMethodDef bm_methods[] = {
    {"get_buffer", (PyCFunction)(void (*)(void))bm_get_buffer, METH_VARARGS | METH_KEYWORDS,
     "get_buffer(size, dtype='float64', *, zero=False) -> numpy.ndarray\n\n"
     "A C-contiguous array of `size` elements (an int, or a shape tuple) over\n"
     "a pooled buffer, 64-byte aligned. Contents are unspecified (a reused\n"
     "buffer holds what its last user wrote) unless zero=True.\n"
     "Raises ValueError for size <= 0 or too large, TypeError for a dtype\n"
     "holding object references, MemoryError when memory runs out."},
    {"release_buffer", bm_release_buffer, METH_O,
     "release_buffer(array) -> None\n\n"
     "Give back an array get_buffer returned. Its memory is reused once no\n"
     "array or view refers to it (at once if this was the last reference).\n"
     "Raises PoolError for a second release, a view or copy, or an array\n"
     "this manager did not hand out."},
    {"is_released", bm_is_released, METH_O,
     "is_released(array) -> bool: whether release_buffer was called on it."},
    {"clear_unused", (PyCFunction)(void (*)(void))bm_clear_unused,
     METH_VARARGS | METH_KEYWORDS,
     "clear_unused(max_age=60.0) -> int\n\n"
     "Give back to the OS released buffers idle for more than max_age seconds;\n"
     "returns how many."},
    {"get_stats", bm_get_stats, METH_NOARGS,
     "get_stats() -> dict: the C manager's counters (magpool_bufmgr_stats_t;\n"
     "bad_releases: the PoolErrors of release_buffer, which never passes a bad\n"
     "pointer to C), hit_rate, big_* (buffers of 256 MiB..1 GiB, pooled by this\n"
     "type: gets, hits, outstanding, idle, bytes_reserved), released_pending\n"
     "(released, a view still alive), collected_unreleased (arrays garbage-\n"
     "collected without release_buffer: their memory was reused anyway)."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject magpool_BufferManager_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "magpool.BufferManager",
    .tp_doc = "BufferManager(max_buffers=100)\n\n"
              "numpy arrays from magpool's C BufferManager (above 256 MiB: size-class\n"
              "pools of its own): 64-byte aligned, reused by size class, at most\n"
              "max_buffers released buffers kept (0: no cap on the count; idle ones\n"
              "above 1 MiB still bounded to 64 MiB resident).",
    .tp_basicsize = sizeof(BufferManager),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = bm_init,
    .tp_dealloc = bm_dealloc,
    .tp_methods = bm_methods,
};
