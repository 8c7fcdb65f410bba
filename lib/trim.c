/* SPDX-License-Identifier: MIT */
/*
 * Trimming: give idle memory back to the OS while other threads keep
 * acquiring and releasing.
 *
 * Policy (after libumem's working-set reaping, simplified): memory that has
 * not been used for max_idle seconds is reclaimed, least recently used first.
 * "Used" is tracked where it costs the fast path nothing:
 *   - a magazine on the depot carries the time it was pushed there (its
 *     rounds have been idle at least since then);
 *   - a thread cache's idleness is observed by trim itself: each trim notes
 *     the cache's operation count, and when it last saw that count change.
 *     A thread whose count has not moved for max_idle has its rounds stolen
 *     back (cache.c, asymmetric fence) even if the thread itself is alive
 *     and sleeping — the complaint against allocators that purge only when
 *     the owning thread next calls them.
 * Ages are therefore as fine as the trim interval: a background trimmer
 * (trimmer.c) that runs every T seconds reclaims memory idle for max_idle
 * within max_idle + T. jemalloc's decay curve (dirty_decay_ms) smooths the
 * purge rate instead; for a pool whose blocks are all alike, a hard age cut
 * is simpler to reason about and to test, and bursty engines want the burst
 * back promptly.
 *
 * Mechanism, all under the growth lock:
 *   1. steal the rounds of idle caches (age 0: of all caches, and flush ours);
 *   2. drain the full-magazine stack; magazines older than the cut give up
 *      their rounds, younger ones go back in their original order;
 *   3. slabs whose every block is now in hand are unmapped (for a pool
 *      whose layer reads headers lock-free, bufmgr.c, after a grace period:
 *      hooks unmap_after_grace); of the rest,
 *      every page wholly covered by idle blocks is madvise(MADV_DONTNEED)d —
 *      the blocks stay in the pool and fault in as zero pages when reused;
 *   4. emptied and long-empty magazines are retired from the depot's index
 *      table, and freed after an epoch grace period (depot.c, epoch.c).
 * Both grace periods are waited for with the growth lock held, outside any
 * read section (docs/design.md, "Locks and grace periods").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct idle_cut {
    uint64_t now, cutoff;
};

/* Growth lock held (trim's view of tc is guarded by it): note activity,
 * pick the idle. */
static bool cache_is_idle(struct tcache *tc, void *arg)
{
    const struct idle_cut *c = arg;
    /* relaxed: single-writer counters; any recent value will do. */
    uint64_t ops = atomic_load_relaxed(&tc->acquires) + atomic_load_relaxed(&tc->releases);
    if (ops != tc->trim_ops) {
        tc->trim_ops = ops;
        tc->trim_seen = c->now;
    }
    return tc->trim_seen <= c->cutoff;
}

/* A growable array of magazines in hand. */
struct mag_list {
    struct mag **v;
    size_t n, cap;
};

static bool mag_list_add(struct mag_list *l, struct mag *m)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? 2 * l->cap : 64;
        struct mag **nv = realloc(l->v, ncap * sizeof *nv);
        if (nv == NULL)
            return false;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = m;
    return true;
}

/* Pop everything from stack s: magazines stamped <= cutoff go to `old`, the
 * rest to `young` (in pop order, newest first). */
static void drain_stack(struct depot *d, struct mag_stack *s, uint64_t cutoff,
                        struct mag_list *old, struct mag_list *young)
{
    struct mag *m;
    while ((m = depot_pop(d, s)) != NULL) {
        bool ok = m->stamp <= cutoff ? mag_list_add(old, m) : mag_list_add(young, m);
        if (!ok) { /* no memory for bookkeeping: leave the rest alone */
            depot_push_stamped(d, s, m, m->stamp);
            break;
        }
    }
}

/* Push back what drain_stack() took as young, restoring the original order. */
static void restore_young(struct depot *d, struct mag_stack *s, struct mag_list *young)
{
    while (young->n > 0) {
        struct mag *m = young->v[--young->n];
        depot_push_stamped(d, s, m, m->stamp);
    }
    free(young->v);
    young->v = NULL;
    young->cap = 0;
}

/* Retire the magazines in `spare` (owned, empty), wait for a grace period,
 * free them. Returns how many were freed. */
static size_t free_magazines(magpool_t *p, struct mag_list *spare, size_t from)
{
    if (spare->n <= from)
        return 0;
    for (size_t i = from; i < spare->n; i++)
        depot_retire(&p->depot, spare->v[i]);
    epoch_synchronize(&p->epoch);
    for (size_t i = from; i < spare->n; i++) {
        epoch_before_free(spare->v[i]);
        depot_mag_free(&p->depot, spare->v[i]);
    }
    return spare->n - from;
}

size_t cache_trim(magpool_t *p, uint64_t max_idle_ns)
{
    struct idle_cut cut = { .now = pool_clock_ns() };
    cut.cutoff = max_idle_ns >= cut.now ? 0 : cut.now - max_idle_ns;
    if (max_idle_ns == 0)
        cut.cutoff = UINT64_MAX; /* clear: everything idle, whatever its stamp */
    struct tcache *self = tcache_lookup(p);

    mutex_lock(&p->grow_lock);
    /* The caller's own cache ages like any other: idle since max_idle (as
     * seen by successive trims), its rounds go back, stamped with its last
     * activity; clear (age 0) takes them whatever their age. */
    if (self && max_idle_ns == 0)
        cache_flush_locked(p, self, cut.now, NULL);
    else if (self && cache_is_idle(self, &cut))
        cache_flush_locked(p, self, self->trim_seen, NULL);
    uint64_t caches = 0;
    cache_steal_locked(p, self, max_idle_ns ? cache_is_idle : NULL, &cut, NULL, &caches);
    counter_add(&p->reclaims, caches); /* growth lock held: one writer */

    struct mag_list old = { 0 }, young = { 0 };
    drain_stack(&p->depot, &p->depot.full, cut.cutoff, &old, &young);
    size_t n = 0, cap = 0, returned = 0, bytes = 0;
    for (size_t i = 0; i < old.n; i++)
        cap += old.v[i]->count;
    cap += atomic_load_relaxed(&p->nspill);
    void **idle = malloc((cap ? cap : 1) * sizeof *idle);
    if (idle == NULL) { /* put everything back untouched */
        for (size_t i = old.n; i-- > 0;)
            depot_push_stamped(&p->depot, &p->depot.full, old.v[i], old.v[i]->stamp);
        free(old.v);
        restore_young(&p->depot, &p->depot.full, &young);
        pthread_mutex_unlock(&p->grow_lock);
        return 0;
    }
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < old.n; i++) {
        struct mag *m = old.v[i];
        memcpy(&idle[n], m->rounds, m->count * sizeof *idle);
        n += m->count;
        m->count = 0;
        if (m->stamp < oldest)
            oldest = m->stamp;
    }
    void *sb; /* blocks kept without a magazine: age unknown, take them */
    while ((sb = spill_pop_locked(p)) != NULL)
        idle[n++] = sb;

    size_t kept, unmapped_bytes;
    returned += slab_reclaim(&p->slabs, idle, n, &kept, &unmapped_bytes,
                             p->slabs.hooks.unmap_after_grace ? &p->epoch : NULL);
    if (!p->slabs.hooks.idle_blocks_hold_state)
        returned += slab_release_pages(&p->slabs, idle, kept, &bytes);
    bytes += unmapped_bytes;

    /* Survivors back on the depot, still old, so beneath the young
     * magazines: resident blocks are handed out before returned pages. */
    size_t M = p->depot.rounds, done = 0, used = 0;
    uint64_t stamp = oldest == UINT64_MAX ? cut.now : oldest;
    while (done < kept) {
        size_t k = kept - done < M ? kept - done : M;
        struct mag *e = used < old.n ? old.v[used++] : depot_get_empty(&p->depot);
        if (e == NULL)
            break;
        for (size_t i = 0; i < k; i++)
            e->rounds[i] = idle[kept - 1 - done - i];
        e->count = (uint32_t)k;
        depot_push_stamped(&p->depot, &p->depot.full, e, stamp);
        done += k;
    }
    for (; done < kept; done++)
        spill_push_locked(p, idle[kept - 1 - done]);
    free(idle);
    restore_young(&p->depot, &p->depot.full, &young);

    /* Magazine memory: the ones emptied above that were not refilled, and
     * those idle on the empty stack since before the cut. */
    drain_stack(&p->depot, &p->depot.empty, cut.cutoff, &old, &young);
    restore_young(&p->depot, &p->depot.empty, &young);
    free_magazines(p, &old, used);
    free(old.v);

    if (returned || bytes) {
        counter_inc(&p->trims);
        counter_add(&p->bytes_returned, bytes);
    }
    pthread_mutex_unlock(&p->grow_lock);
    return returned;
}
