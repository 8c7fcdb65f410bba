/* SPDX-License-Identifier: MIT */
/*
 * Size-class pools: one lock-free magpool per size class, four classes per
 * power of two (<= 25 % slack) from 1 KiB to 1 GiB, each created on first
 * use. Used by the numpy allocator (npalloc.c) and by BufferManager for
 * buffers above the C BufferManager's largest class (buffers.c; 256 MiB
 * since 0.3), which the C manager would mmap and munmap on every get and
 * release.
 *
 * Blocks are `head` bytes plus the class size, 64-byte aligned; idle
 * memory goes back to the OS when a trim finds it idle for max_idle
 * seconds (a library thread trims every trim_interval seconds when that is
 * > 0). Thread-safe, never touches Python.
 */
#ifndef MAGPOOL_PY_CLASSPOOLS_H
#define MAGPOOL_PY_CLASSPOOLS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <magpool.h>

#define CP_BASE_LOG2 10 /* smallest class request: 1 KiB + 1 byte */
#define CP_TOP_LOG2 30  /* largest: 1 GiB                          */
#define CP_MIN_BYTES (((size_t)1 << CP_BASE_LOG2) + 1)
#define CP_MAX_BYTES ((size_t)1 << CP_TOP_LOG2)
#define CP_NCLASSES ((CP_TOP_LOG2 - CP_BASE_LOG2) * 4)

typedef struct classpools {
    _Atomic(magpool_t *) pools[CP_NCLASSES];
    size_t head;                 /* bytes before the data in each block */
    double grow_factor;          /* of each class pool; 0: magpool's default */
    double trim_interval, max_idle;
    const char *label;           /* pool names: "<label> <class bytes>" */
} classpools_t;

/* The summed counters of the class pools. */
typedef struct classpools_stats {
    unsigned long long acquires, releases, hits, misses, outstanding, blocks_total;
    unsigned long long bytes_reserved, bytes_returned;
    unsigned classes;
} classpools_stats_t;

/* Class of a size in [CP_MIN_BYTES, CP_MAX_BYTES], and its byte size. */
static inline unsigned classpools_index(size_t s)
{
    size_t q = s - 1;
    unsigned p = 63u - (unsigned)__builtin_clzll(q); /* 2^p <= q < 2^(p+1) */
    unsigned k = (unsigned)(q >> (p - 2));           /* 4..7 */
    return (p - CP_BASE_LOG2) * 4 + (k - 4);
}

static inline size_t classpools_bytes(unsigned idx)
{
    unsigned p = idx / 4 + CP_BASE_LOG2, k = idx % 4 + 4;
    return (size_t)(k + 1) << (p - 2);
}

/* A block of class idx (head + class bytes), or NULL + errno (ENOMEM). */
void *classpools_acquire(classpools_t *cp, unsigned idx);
/* Give back a block of class idx. */
void classpools_release(classpools_t *cp, unsigned idx, void *block);
/* magpool_trim(max_age) on every class pool; blocks given back. */
size_t classpools_trim(classpools_t *cp, double max_age);
void classpools_get_stats(classpools_t *cp, classpools_stats_t *out);
/* Destroy every class pool; no block may be out any more. */
void classpools_destroy(classpools_t *cp);

#endif
