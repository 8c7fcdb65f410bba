/* SPDX-License-Identifier: MIT */
/*
 * The magpool CPython extension (magpool._core): shared declarations.
 *
 * One file per Python type: buffers.c (BufferManager, numpy arrays over
 * magpool_bufmgr buffers), blocks.c (MemoryPool, memoryviews over magpool
 * blocks), npalloc.c (a NEP 49 numpy allocator on magpool size classes);
 * module.c ties them into the module.
 *
 * The memory-safety rule of every type here: memory goes back to magpool
 * only when no Python object refers to it any more. An array or memoryview
 * keeps a small "owner" object alive (its base / exporter); the owner's
 * dealloc is the one place that gives the memory back. release_*() only
 * marks the owner released (so a double release is an error), it never
 * frees memory a view may still reach.
 *
 * The GIL: magpool calls that may block (growth maps memory, trims wait for
 * grace periods) run with the GIL released when they can be long (see each
 * file); no magpool lock is ever held while Python code runs, and no code
 * waits for the GIL inside a magpool call, so the two never wait for each
 * other.
 */
#ifndef MAGPOOL_PY_EXT_H
#define MAGPOOL_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL magpool_ARRAY_API
#ifndef MAGPOOL_PY_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <magpool.h>

/* Requests at or above this many bytes release the GIL around magpool:
 * from 64 KiB on, every BufferManager class maps one buffer per slab, so a
 * miss is an mmap and a release past the idle cap an munmap. */
#define MAGPOOL_PY_NOGIL_BYTES ((size_t)64 << 10)

extern PyTypeObject magpool_BufferManager_Type;
extern PyTypeObject magpool_BufferOwner_Type;
extern PyTypeObject magpool_MemoryPool_Type;
extern PyTypeObject magpool_Block_Type;
extern PyTypeObject magpool_NumpyAllocator_Type;

/* The error every misuse raises (magpool.PoolError, a ValueError). */
extern PyObject *magpool_PoolError;

/* Release bookkeeping shared by the owner types (BufferOwner, Block);
 * touched with the GIL held. */
typedef struct {
    unsigned long long collected_unreleased; /* owners that died unreleased  */
    unsigned long long released_pending;     /* released, a view still alive */
    unsigned long long bad_releases;         /* PoolError raised by a release */
} magpool_py_counts_t;

/* A release of the owner whose flag is *released (NULL: the lookup failed
 * and set PoolError): marks it, or raises PoolError for a double release
 * ("<what> already released"). 0, or -1 with the error set. */
int magpool_py_mark_released(int *released, magpool_py_counts_t *c, const char *what);

/* An owner's dealloc: it was released, or is collected unreleased. */
static inline void magpool_py_owner_gone(magpool_py_counts_t *c, int released)
{
    if (released)
        c->released_pending--;
    else
        c->collected_unreleased++;
}

/* Add released_pending, collected_unreleased, bad_releases to dict d. */
int magpool_py_put_counts(PyObject *d, const magpool_py_counts_t *c);

/* Add a stats field to dict d; -1 with an exception set on failure. */
int magpool_py_put_u64(PyObject *d, const char *key, unsigned long long v);
int magpool_py_put_double(PyObject *d, const char *key, double v);

/* The module function set_numpy_allocator(handler or None) (npalloc.c). */
PyObject *magpool_py_set_numpy_allocator(PyObject *self, PyObject *arg);
PyObject *magpool_py_get_numpy_allocator_name(PyObject *self, PyObject *unused);

#endif
