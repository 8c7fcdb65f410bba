/* SPDX-License-Identifier: MIT */
/* magpool._core: the C types of the magpool Python package (see ext.h). */
#define MAGPOOL_PY_IMPORT_ARRAY
#include "ext.h"

PyObject *magpool_PoolError;

int magpool_py_put_u64(PyObject *d, const char *key, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    int rc = o ? PyDict_SetItemString(d, key, o) : -1;
    Py_XDECREF(o);
    return rc;
}

int magpool_py_put_double(PyObject *d, const char *key, double v)
{
    PyObject *o = PyFloat_FromDouble(v);
    int rc = o ? PyDict_SetItemString(d, key, o) : -1;
    Py_XDECREF(o);
    return rc;
}

int magpool_py_mark_released(int *released, magpool_py_counts_t *c, const char *what)
{
    if (released && *released) {
        PyErr_Format(magpool_PoolError, "%s already released (double release)", what);
        released = NULL;
    }
    if (!released) {
        c->bad_releases++;
        return -1;
    }
    /* The memory is reused once the owner dies: at once when the caller
     * held the last reference, later when views remain. */
    *released = 1;
    c->released_pending++;
    return 0;
}

int magpool_py_put_counts(PyObject *d, const magpool_py_counts_t *c)
{
    return magpool_py_put_u64(d, "released_pending", c->released_pending) ||
                   magpool_py_put_u64(d, "collected_unreleased", c->collected_unreleased) ||
                   magpool_py_put_u64(d, "bad_releases", c->bad_releases)
               ? -1 : 0;
}

static PyObject *version(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyUnicode_FromString(magpool_version());
}

static PyMethodDef module_methods[] = {
    {"set_numpy_allocator", magpool_py_set_numpy_allocator, METH_O,
     "set_numpy_allocator(allocator) -> previous\n\n"
     "Install a NumpyAllocator (or a value this function returned before, or\n"
     "None for numpy's default) as numpy's data allocator in the current\n"
     "thread / context (NEP 49: PyDataMem_SetHandler). Returns the previous\n"
     "handler, to be passed back later."},
    {"numpy_allocator_name", magpool_py_get_numpy_allocator_name, METH_NOARGS,
     "numpy_allocator_name() -> str: the name of numpy's current data allocator\n"
     "('magpool' or numpy's 'default_allocator')."},
    {"c_version", version, METH_NOARGS, "The version of the C library (magpool_version())."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "magpool._core",
    .m_doc = "C types of the magpool package; import them from magpool.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t) < 0)
        return -1;
    if (!name)
        return 0;
    Py_INCREF(t);
    if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    magpool_PoolError = PyErr_NewExceptionWithDoc(
        "magpool.PoolError",
        "Misuse of a pool: double release, or releasing something the pool did\n"
        "not hand out. The pool is unchanged.",
        PyExc_ValueError, NULL);
    if (!magpool_PoolError || PyModule_AddObject(m, "PoolError", magpool_PoolError) < 0)
        goto fail;
    Py_INCREF(magpool_PoolError); /* the module's reference was stolen */
    if (add_type(m, &magpool_BufferOwner_Type, NULL) < 0 ||
        add_type(m, &magpool_Block_Type, NULL) < 0 ||
        add_type(m, &magpool_BufferManager_Type, "BufferManager") < 0 ||
        add_type(m, &magpool_MemoryPool_Type, "MemoryPool") < 0 ||
        add_type(m, &magpool_NumpyAllocator_Type, "NumpyAllocator") < 0)
        goto fail;
    if (PyModule_AddIntConstant(m, "BUFFER_ALIGN", MAGPOOL_BUFMGR_ALIGN) < 0 ||
        PyModule_AddIntConstant(m, "BUFFER_MAX_CLASS", (long)MAGPOOL_BUFMGR_MAX_CLASS) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
