/* SPDX-License-Identifier: MIT */
/*
 * Statistics of the lock-free backend: per-thread single-writer counters,
 * summed on read under reg_lock (which also guards the list of caches and the
 * totals folded in from caches of exited threads). Nothing here runs on the
 * fast path; the fast path only bumps its own thread's counters.
 */
#include "internal.h"

void cache_stats(magpool_t *p, magpool_stats_t *out)
{
    mutex_lock(&p->reg_lock);
    uint64_t acq = p->retired_acquires, rel = p->retired_releases;
    uint64_t gets = p->retired_depot_gets, puts = p->retired_depot_puts;
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next) {
        /* relaxed: each counter has one writer; we need untorn values only. */
        acq += atomic_load_relaxed(&tc->acquires);
        rel += atomic_load_relaxed(&tc->releases);
        gets += atomic_load_relaxed(&tc->depot_gets);
        puts += atomic_load_relaxed(&tc->depot_puts);
    }
    out->threads = p->nthreads;
    pthread_mutex_unlock(&p->reg_lock);
    out->acquires = acq + atomic_load_relaxed(&p->uncached_acquires);
    out->releases = rel + atomic_load_relaxed(&p->uncached_releases);
    out->depot_gets = gets;
    out->depot_puts = puts;
    out->magazines = atomic_load_relaxed(&p->depot.live);
}
