/* SPDX-License-Identifier: MIT */
/*
 * Single-producer single-consumer ring of block pointers, for the
 * producer/consumer workload. Each side caches the other side's index and
 * rereads it only when the ring looks full (producer) or empty (consumer), so
 * in steady state a transfer costs one release store and no shared-line
 * reads: the ring itself stays cheap next to the allocator under test.
 */
#ifndef MAGPOOL_BENCH_RING_H
#define MAGPOOL_BENCH_RING_H

#include <stdatomic.h>
#include <stddef.h>

#define RING_CAP 1024u /* power of two */

typedef struct ring {
    _Alignas(64) atomic_size_t head; /* next slot to read; consumer writes */
    size_t tail_cache;               /* consumer's copy of tail            */
    _Alignas(64) atomic_size_t tail; /* next slot to write; producer writes */
    size_t head_cache;               /* producer's copy of head            */
    _Alignas(64) atomic_int closed;  /* producer finished                  */
    _Alignas(64) void *slot[RING_CAP];
} ring_t;

static inline int ring_push(ring_t *r, void *p)
{
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - r->head_cache == RING_CAP) {
        /* Acquire pairs with the consumer's release store of head: the slot
         * we are about to overwrite has been read. */
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->head_cache == RING_CAP)
            return 0;
    }
    r->slot[t & (RING_CAP - 1)] = p;
    /* Release pairs with ring_pop's acquire load of tail: publishes the slot
     * (and the block contents written before the push). */
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static inline void *ring_pop(ring_t *r)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == r->tail_cache) {
        /* Acquire pairs with ring_push's release store of tail. */
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->tail_cache)
            return NULL;
    }
    void *p = r->slot[h & (RING_CAP - 1)];
    /* Release pairs with ring_push's acquire load of head. */
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return p;
}

static inline void ring_close(ring_t *r)
{
    /* Release pairs with ring_closed's acquire: every push happens before. */
    atomic_store_explicit(&r->closed, 1, memory_order_release);
}

static inline int ring_closed(ring_t *r)
{
    return atomic_load_explicit(&r->closed, memory_order_acquire);
}

#endif
