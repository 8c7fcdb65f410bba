/* SPDX-License-Identifier: MIT */
/*
 * The allocators under test, behind one inlined switch.
 *
 * The hot loops in workloads.c are instantiated once per bench_kind_t with
 * the kind as a compile-time constant, so the switch below folds away and
 * each variant runs exactly: a direct call to magpool_acquire or
 * magpool_cache_acquire (static library, no PLT), a call to the array free list, or a call to malloc (PLT,
 * as every program calling malloc pays it, whichever allocator LD_PRELOAD
 * put behind it).
 */
#ifndef MAGPOOL_BENCH_ALLOCATORS_H
#define MAGPOOL_BENCH_ALLOCATORS_H

#include <stdint.h>
#include <stdlib.h>

#include "bench.h"
#include "magpool.h"

/* Per-thread state of one variant. */
typedef struct alloc_thread {
    magpool_t *pool;       /* KIND_POOL: shared by all threads           */
    magpool_cache_t *cache; /* KIND_HANDLE: this thread's handle of pool */
    size_t size;
    /* KIND_ARRAY: a stack of free blocks, refilled from a private region by
     * bumping a pointer. No sharing, no atomics: the floor. */
    void **stack;
    size_t top, cap;
    char *bump, *end;
    char *region;
    size_t region_len, stack_len;
} alloc_thread_t;

/* Process-wide state of one variant (the pool, when there is one). */
typedef struct alloc_ctx {
    const bench_variant_t *v;
    magpool_t *pool;
    size_t size;
} alloc_ctx_t;

int alloc_setup(alloc_ctx_t *c, const bench_params_t *p, char *err, size_t errlen);
/* @p capacity: most blocks this thread may hold at once (array variant). */
int alloc_thread_init(const alloc_ctx_t *c, alloc_thread_t *t, size_t capacity);
void alloc_thread_fini(alloc_thread_t *t);
/* Conservation: the bench's own counts, and the library's counters for the
 * pool variants, must agree and show every block returned. */
int alloc_check(const alloc_ctx_t *c, bench_result_t *r);
void alloc_teardown(alloc_ctx_t *c);

/* Out of line on purpose: a library call cannot be inlined into its caller,
 * and an inlined pop+push of the same slot folds to nothing. The floor is the
 * cheapest thing a library could do, call included. */
void *array_acquire(alloc_thread_t *t);
void array_release(alloc_thread_t *t, void *p);

static inline __attribute__((always_inline)) void *
alloc_acquire(bench_kind_t k, alloc_thread_t *t)
{
    switch (k) {
    case KIND_POOL:
        return magpool_acquire(t->pool);
    case KIND_HANDLE:
        return magpool_cache_acquire(t->cache);
    case KIND_ARRAY:
        return array_acquire(t);
    default:
        return malloc(t->size);
    }
}

static inline __attribute__((always_inline)) void
alloc_release(bench_kind_t k, alloc_thread_t *t, void *p)
{
    switch (k) {
    case KIND_POOL:
        magpool_release(t->pool, p);
        break;
    case KIND_HANDLE:
        magpool_cache_release(t->cache, p);
        break;
    case KIND_ARRAY:
        array_release(t, p);
        break;
    default:
        free(p);
    }
}

/* Write one word into the block, as a real user would, and make the pointer
 * escape: otherwise gcc may delete a malloc/free pair whose memory is never
 * read. */
static inline __attribute__((always_inline)) void bench_touch(void *p, uint64_t v)
{
    *(volatile uint64_t *)p = v;
    __asm__ volatile("" : : "r"(p) : "memory");
}

#endif
