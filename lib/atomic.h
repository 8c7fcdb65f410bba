/* SPDX-License-Identifier: MIT */
/*
 * Named-order atomics over <stdatomic.h> (after mimalloc's atomic.h): the
 * memory order is part of the name, so every call site states it and the
 * comment beside it names the operation it pairs with. No implicit seq_cst.
 */
#ifndef MAGPOOL_ATOMIC_H
#define MAGPOOL_ATOMIC_H

#include <stdatomic.h>

#define atomic_load_relaxed(p)      atomic_load_explicit((p), memory_order_relaxed)
#define atomic_load_acquire(p)      atomic_load_explicit((p), memory_order_acquire)
#define atomic_store_relaxed(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define atomic_store_release(p, v)  atomic_store_explicit((p), (v), memory_order_release)
#define atomic_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define atomic_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define atomic_fetch_or_acq_rel(p, v)  atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)
#define atomic_fetch_and_acq_rel(p, v) atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)

/* Weak CAS for retry loops: success order given, failure always the load order. */
#define atomic_cas_weak_release(p, exp, des) \
    atomic_compare_exchange_weak_explicit((p), (exp), (des), \
                                          memory_order_release, memory_order_relaxed)
#define atomic_cas_weak_acquire(p, exp, des) \
    atomic_compare_exchange_weak_explicit((p), (exp), (des), \
                                          memory_order_acquire, memory_order_acquire)

/* Compiler-only barrier: orders this thread's accesses against code motion,
 * emits no instruction. Used where a membarrier(2) on the other side supplies
 * the hardware fence (see cache.c, "asymmetric fence"). */
#define compiler_barrier() atomic_signal_fence(memory_order_seq_cst)

/*
 * Single-writer counter: only the owning thread writes it, any thread may read
 * it. A relaxed load + store (not an RMW) is enough and compiles to a plain
 * increment of a line the owner already holds; readers only need an untorn
 * value, which relaxed atomics give them without a data race.
 */
#define counter_inc(p)     atomic_store_relaxed((p), atomic_load_relaxed(p) + 1)
#define counter_add(p, n)  atomic_store_relaxed((p), atomic_load_relaxed(p) + (n))

#endif
