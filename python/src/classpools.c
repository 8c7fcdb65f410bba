/* SPDX-License-Identifier: MIT */
/* Size-class pools for the Python types (see classpools.h). */
#include "classpools.h"

#include <errno.h>
#include <stdio.h>

static magpool_t *class_pool(classpools_t *cp, unsigned idx)
{
    /* acquire: pairs with the release CAS below, so the pool is seen whole */
    magpool_t *p = atomic_load_explicit(&cp->pools[idx], memory_order_acquire);
    if (p)
        return p;
    magpool_config_t cfg = magpool_config_default(classpools_bytes(idx) + cp->head);
    cfg.align = 64;
    cfg.initial_blocks = 0;
    cfg.grow_factor = cp->grow_factor;
    magpool_t *fresh = magpool_create(&cfg);
    if (!fresh)
        return NULL;
    char name[MAGPOOL_NAME_MAX];
    snprintf(name, sizeof name, "%s %zu", cp->label, classpools_bytes(idx));
    magpool_set_name(fresh, name);
    if (cp->trim_interval > 0)
        magpool_set_trim_interval(fresh, cp->trim_interval, cp->max_idle);
    magpool_t *expected = NULL;
    /* release: publishes the new pool (pairs with the acquire load above);
     * acquire on failure: the winner's pool is then used, seen whole. */
    if (atomic_compare_exchange_strong_explicit(&cp->pools[idx], &expected, fresh,
                                                memory_order_acq_rel, memory_order_acquire))
        return fresh;
    magpool_destroy(fresh);
    return expected;
}

void *classpools_acquire(classpools_t *cp, unsigned idx)
{
    magpool_t *p = class_pool(cp, idx);
    return p ? magpool_acquire(p) : NULL;
}

void classpools_release(classpools_t *cp, unsigned idx, void *block)
{
    /* relaxed: the pool was published before this block was acquired from
     * it, and the block reached the releasing thread through a
     * synchronisation of its own (the GIL, numpy's, a queue's). */
    magpool_release(atomic_load_explicit(&cp->pools[idx], memory_order_relaxed), block);
}

size_t classpools_trim(classpools_t *cp, double max_age)
{
    size_t n = 0;
    for (unsigned i = 0; i < CP_NCLASSES; i++) {
        /* acquire: pairs with class_pool's release CAS */
        magpool_t *p = atomic_load_explicit(&cp->pools[i], memory_order_acquire);
        if (p)
            n += magpool_trim(p, max_age);
    }
    return n;
}

void classpools_get_stats(classpools_t *cp, classpools_stats_t *out)
{
    *out = (classpools_stats_t){0};
    for (unsigned i = 0; i < CP_NCLASSES; i++) {
        /* acquire: pairs with class_pool's release CAS */
        magpool_t *p = atomic_load_explicit(&cp->pools[i], memory_order_acquire);
        magpool_stats_t s;
        if (!p || magpool_get_stats(p, &s) < 0)
            continue;
        out->classes++;
        out->acquires += s.acquires, out->releases += s.releases;
        out->hits += s.hits, out->misses += s.misses;
        out->outstanding += s.blocks_outstanding, out->blocks_total += s.blocks_total;
        out->bytes_reserved += s.bytes_reserved, out->bytes_returned += s.bytes_returned;
    }
}

void classpools_destroy(classpools_t *cp)
{
    for (unsigned i = 0; i < CP_NCLASSES; i++) {
        /* relaxed: destroy runs when no other thread uses the pools */
        magpool_destroy(atomic_load_explicit(&cp->pools[i], memory_order_relaxed));
        atomic_store_explicit(&cp->pools[i], NULL, memory_order_relaxed);
    }
}
