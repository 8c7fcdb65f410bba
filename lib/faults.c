/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for the slab layer's mmap (test hook).
 *
 * Every slab is mapped through slab_mmap(). A test calls
 * magpool_test_fail_mmap(nth, count): the nth call from now (1 = the next
 * one) and the count - 1 calls after it fail as mmap would under memory
 * pressure (MAP_FAILED, errno ENOMEM). Every path that maps memory must then
 * return NULL + ENOMEM and leave its pool usable once the fault clears
 * (test/test_faults.c). The symbols are hidden: white-box tests reach them
 * through the static library. Off, the hook costs one relaxed load per slab
 * mapping, never anything on the acquire/release fast path.
 */
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

/* Counters are relaxed: a test arms the hook from one thread before the
 * calls it wants to fail; concurrent callers only need each call to get a
 * distinct ticket, which the RMW gives them. */
static _Atomic unsigned long mmap_calls;  /* slab_mmap calls so far        */
static _Atomic unsigned long fail_first;  /* ticket of the first failure, 0 = off */
static _Atomic unsigned long fail_last;   /* ticket of the last failure     */

void magpool_test_fail_mmap(unsigned long nth, unsigned long count)
{
    unsigned long now = atomic_load_relaxed(&mmap_calls);
    if (nth == 0 || count == 0) {
        atomic_store_relaxed(&fail_first, 0);
        return;
    }
    atomic_store_relaxed(&fail_last, now + nth + count - 1);
    atomic_store_relaxed(&fail_first, now + nth);
}

unsigned long magpool_test_mmap_calls(void)
{
    return atomic_load_relaxed(&mmap_calls);
}

void *slab_mmap(size_t len, int flags)
{
    unsigned long ticket = atomic_fetch_add_relaxed(&mmap_calls, 1) + 1;
    unsigned long first = atomic_load_relaxed(&fail_first);
    if (unlikely(first != 0) && ticket >= first && ticket <= atomic_load_relaxed(&fail_last)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
}
