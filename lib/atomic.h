/* SPDX-License-Identifier: MIT */
/*
 * Named-order atomics over <stdatomic.h> (after mimalloc's atomic.h): the
 * memory order is part of the name, so every call site states it and the
 * comment beside it names the operation it pairs with. No implicit seq_cst.
 */
#ifndef MAGPOOL_ATOMIC_H
#define MAGPOOL_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

#include "sanitize.h"

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

/*
 * The fast path's counters (cache.c): the same single-writer counter in one
 * instruction. GCC compiles the relaxed load + store above to three (load,
 * add, store: it never folds atomics into a memory operand); on x86-64 an
 * `addq $1, mem` without lock prefix is the same thing (one aligned 8-byte
 * store other threads see whole, the old value read by its only writer) in
 * one. TSan cannot see inline asm: its builds, and other architectures, keep
 * the C11 form, so the stress suite checks the counters' accesses as C11.
 */
#if defined(__x86_64__) && !defined(MAGPOOL_TSAN)
#define counter_inc_fast(p)                                                 \
    do {                                                                    \
        _Static_assert(sizeof *(p) == 8, "counter_inc_fast: 64-bit counter"); \
        __asm__("addq $1, %0" : "+m"(*(uint64_t *)(p)));                    \
    } while (0)
#else
#define counter_inc_fast(p) counter_inc(p)
#endif

#endif
