/*
 * Thread caches: the fast path.
 *
 * Each thread has, per pool it uses, a `struct tcache` holding two magazines
 * (Bonwick & Adams, "Magazines and Vmem", USENIX 2001): `loaded`, which
 * acquire pops from and release pushes to, and `previous`. When loaded is
 * empty (acquire) or full (release), the two are swapped if that helps;
 * otherwise one magazine is exchanged with the depot. So a thread visits the
 * shared depot at most once per M operations, and the common acquire/release
 * is a handful of loads and stores to one cache line the thread owns: no lock,
 * no atomic read-modify-write.
 *
 * Stealing parked blocks (the asymmetric-fence protocol)
 * -------------------------------------------------------
 * With a hard cap, blocks parked in other threads' magazines must not make an
 * acquire fail, and trim/clear must reach the caches of idle threads. Another
 * thread must therefore be able to take blocks out of a cache whose owner
 * uses it without atomics. The owner brackets every cache operation with
 *
 *     busy = 1 (relaxed); compiler barrier; if (steal) -> slow path
 *     ... magazine work ...
 *     busy = 0 (release)
 *
 * and a stealer, holding the pool's growth lock, does
 *
 *     steal = 1; membarrier(PRIVATE_EXPEDITED); wait until busy == 0 (acquire)
 *     ... move the owner's rounds to the depot ...; steal = 0 (release)
 *
 * membarrier(2) makes every running thread of the process execute a full
 * memory barrier, so (Dekker) either the stealer sees the owner's busy = 1 and
 * waits, or the owner's next load of `steal` sees 1 and it backs off: it sets
 * busy = 0, takes and drops the growth lock (which the stealer holds until it
 * is done) and starts over. The owner's fast path pays two plain stores and
 * one plain load on its own line; the stealer pays a system call, only at the
 * cap or in trim/clear. The same technique underlies liburcu's membarrier
 * flavour and the JVM's biased locking. Every hand-off of magazine contents is
 * also a C11 release/acquire pair (busy, steal, the growth lock), so TSan sees
 * the happens-before edges and would report a broken protocol as a race.
 *
 * Rule that keeps it deadlock-free: a thread never blocks on a lock while its
 * busy flag is 1, except the magazine-allocation lock, which a stealer never
 * holds while it waits.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static inline void cache_enter(struct tcache *tc)
{
    /* relaxed + compiler barrier: the hardware StoreLoad ordering against the
     * load of `steal` below is supplied by the stealer's membarrier(2). */
    atomic_store_relaxed(&tc->busy, 1);
    compiler_barrier();
}

static inline void cache_leave(struct tcache *tc)
{
    /* release: pairs with the acquire spin in cache_steal_locked(); everything this
     * operation did to the magazines is visible to a stealer that sees 0. */
    atomic_store_release(&tc->busy, 0);
}

static inline bool steal_pending(struct tcache *tc)
{
    /* acquire: pairs with the release store of steal = 0 at the end of a
     * steal, so a cache the stealer touched is seen as it left it. */
    return atomic_load_acquire(&tc->steal) != 0;
}

/* A stealer is at work on this cache: step aside until it is done. */
static noinline void wait_out_steal(magpool_t *p, struct tcache *tc)
{
    cache_leave(tc);
    pthread_mutex_lock(&p->grow_lock); /* held by the stealer until done */
    pthread_mutex_unlock(&p->grow_lock);
    cache_enter(tc);
}

static inline void swap_magazines(struct tcache *tc)
{
    struct mag *m = tc->loaded;
    uint32_t r = tc->lrounds;
    tc->loaded = tc->previous;
    tc->lrounds = tc->prounds;
    tc->previous = m;
    tc->prounds = r;
}

/* loaded and previous are both empty: trade one for a full one. */
static void install_full(magpool_t *p, struct tcache *tc, struct mag *full)
{
    depot_push(&p->depot, &p->depot.empty, tc->previous);
    tc->previous = tc->loaded;
    tc->prounds = 0;
    tc->loaded = full;
    tc->lrounds = full->count;
    counter_inc(&tc->depot_gets);
}

/* Give each non-empty magazine of tc to the depot in exchange for an empty
 * one. Caller holds the growth lock and either owns tc or has stopped its
 * owner (steal protocol). The magazines are stamped with `stamp`: trim
 * passes the thread's last observed activity, so they age from when the
 * thread last used them. If keep != NULL and *keep is NULL, the first
 * non-empty magazine goes to *keep instead of the depot (an at-cap stealer
 * keeps one, so that threads popping the depot without the growth lock
 * cannot take every stolen block before it does). Returns blocks moved. */
size_t cache_flush_locked(magpool_t *p, struct tcache *tc, uint64_t stamp, struct mag **keep)
{
    size_t moved = 0;
    struct mag **slot[2] = { &tc->loaded, &tc->previous };
    uint32_t *rounds[2] = { &tc->lrounds, &tc->prounds };
    for (int i = 0; i < 2; i++) {
        if (*rounds[i] == 0)
            continue;
        struct mag *e = depot_get_empty(&p->depot);
        if (e == NULL)
            continue; /* out of memory: the rounds stay where they are */
        (*slot[i])->count = *rounds[i];
        if (keep && *keep == NULL)
            *keep = *slot[i];
        else
            depot_push_stamped(&p->depot, &p->depot.full, *slot[i], stamp);
        moved += *rounds[i];
        *slot[i] = e;
        *rounds[i] = 0;
    }
    return moved;
}

/*
 * The steal protocol in two halves (caller holds the growth and
 * registration locks). stop_owners_locked() flags every cache but `self`
 * for which want(tc, arg) is true (all when want is NULL), issues one
 * membarrier, and waits until none of their owners is inside a cache
 * operation: they now wait on the growth lock. release_owners_locked() lets
 * them go. Returns whether any cache was stopped.
 */
static bool stop_owners_locked(magpool_t *p, struct tcache *self,
                               bool (*want)(struct tcache *, void *), void *arg)
{
    bool any = false;
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next) {
        tc->victim = tc != self && (want == NULL || want(tc, arg));
        if (!tc->victim)
            continue;
        /* relaxed: ordered before the owners' next check by heavy_fence(). */
        atomic_store_relaxed(&tc->steal, 1);
        any = true;
    }
    if (!any)
        return false;
    if (heavy_fence_available())
        heavy_fence();
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next)
        if (tc->victim)
            /* acquire: pairs with cache_leave(); the owner's magazine writes
             * happen-before ours. */
            while (atomic_load_acquire(&tc->busy))
                sched_yield();
    return true;
}

static void release_owners_locked(magpool_t *p)
{
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next)
        if (tc->victim)
            atomic_store_release(&tc->steal, 0); /* pairs with steal_pending() */
}

/* Take back the rounds parked in other threads' caches of p: every cache
 * but `self` for which want(tc, arg) is true (all of them when want is NULL).
 * Caller holds the growth lock (so at most one stealer runs, and the owner of
 * `self` is the caller). `keep`: see cache_flush_locked(). Returns the number
 * of blocks moved. */
size_t cache_steal_locked(magpool_t *p, struct tcache *self,
                          bool (*want)(struct tcache *, void *), void *arg,
                          struct mag **keep)
{
    if (!heavy_fence_available())
        return 0; /* without the fence an owner could be inside its cache */
    size_t moved = 0;
    uint64_t now = pool_clock_ns();
    pthread_mutex_lock(&p->reg_lock);
    if (stop_owners_locked(p, self, want, arg)) {
        for (struct tcache *tc = p->tcaches; tc; tc = tc->next)
            if (tc->victim)
                moved += cache_flush_locked(p, tc, want ? tc->trim_seen : now, keep);
        release_owners_locked(p);
    }
    pthread_mutex_unlock(&p->reg_lock);
    if (moved)
        counter_inc(&p->steals); /* growth lock held: one writer */
    return moved;
}

/* Map a new slab and carve it into full magazines on the depot. Caller holds
 * the growth lock. 0, or -1 with errno ENOMEM (at the cap or mmap failed). */
int cache_grow_locked(magpool_t *p)
{
    char *first;
    size_t n;
    if (pool_map_slab(p, &first, &n) != 0)
        return -1;
    /* Push the highest addresses first: the stack then hands out the lowest
     * first, and each magazine pops its lowest block first. */
    size_t stride = p->slabs.stride, M = p->depot.rounds;
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < M ? n - done : M;
        char *lo = first + (n - done - k) * stride;
        struct mag *m = depot_get_empty(&p->depot);
        if (m == NULL)
            break;
        for (size_t i = 0; i < k; i++)
            m->rounds[i] = lo + (k - 1 - i) * stride;
        m->count = (uint32_t)k;
        depot_push(&p->depot, &p->depot.full, m);
        done += k;
    }
    for (; done < n; done++) /* no magazine memory: spill the rest */
        spill_push_locked(p, first + (n - 1 - done) * stride);
    return 0;
}

/* Get one block with the growth lock held, for a thread whose cache (if any)
 * is empty: depot, spill list, growth, then stealing. tc may be NULL. */
static void *take_block_locked(magpool_t *p, struct tcache *tc)
{
    bool grew = false, stole = false;
    struct mag *stolen = NULL;
    for (;;) {
        struct mag *full = stolen ? stolen : depot_pop(&p->depot, &p->depot.full);
        stolen = NULL;
        void *b = NULL;
        if (full && tc) {
            install_full(p, tc, full);
            b = tc->loaded->rounds[--tc->lrounds];
            counter_inc(&tc->acquires);
        } else if (full) {
            b = full->rounds[--full->count];
            depot_push(&p->depot, full->count ? &p->depot.full : &p->depot.empty, full);
            counter_inc(&p->uncached_acquires);
        } else if ((b = spill_pop_locked(p)) != NULL) {
            if (tc)
                counter_inc(&tc->acquires);
            else
                counter_inc(&p->uncached_acquires);
        }
        if (b) {
            if (grew)
                counter_inc(&p->misses);
            return b;
        }
        if (cache_grow_locked(p) == 0) {
            grew = true;
            continue;
        }
        int grow_err = errno; /* ENOMEM, or a carve hook's own error */
        if (!stole) {
            /* Every idle block is now in the depot or in `stolen`: owners
             * caught inside an operation (a popped magazine in hand) were
             * waited for. One more pass, then fail for real. */
            stole = true;
            cache_steal_locked(p, tc, NULL, NULL, &stolen);
            continue;
        }
        counter_inc(&p->failed);
        errno = grow_err;
        return NULL;
    }
}

static noinline void *acquire_uncached(magpool_t *p)
{
    pthread_mutex_lock(&p->grow_lock);
    void *b = take_block_locked(p, NULL);
    pthread_mutex_unlock(&p->grow_lock);
    return b;
}

static void release_spill(magpool_t *p, void *block)
{
    pthread_mutex_lock(&p->grow_lock);
    spill_push_locked(p, block);
    counter_inc(&p->uncached_releases);
    pthread_mutex_unlock(&p->grow_lock);
}

/* busy == 1 on entry. */
static noinline void *cache_acquire_slow(magpool_t *p, struct tcache *tc)
{
    for (;;) {
        if (steal_pending(tc)) {
            wait_out_steal(p, tc);
            continue;
        }
        if (tc->lrounds > 0) {
            void *b = tc->loaded->rounds[--tc->lrounds];
            counter_inc(&tc->acquires);
            cache_leave(tc);
            return b;
        }
        if (tc->prounds > 0) {
            swap_magazines(tc);
            continue;
        }
        epoch_read_lock(); /* trim may free magazines (depot.c) */
        struct mag *full = depot_pop(&p->depot, &p->depot.full);
        epoch_read_unlock();
        if (full) {
            install_full(p, tc, full);
            continue;
        }
        /* The depot is dry: grow or steal under the growth lock. Never block
         * with busy set (a stealer holding the lock would wait for us). */
        cache_leave(tc);
        pthread_mutex_lock(&p->grow_lock);
        void *b = take_block_locked(p, tc);
        pthread_mutex_unlock(&p->grow_lock);
        return b;
    }
}

/* busy == 1 on entry. */
static noinline void cache_release_slow(magpool_t *p, struct tcache *tc, void *block)
{
    for (;;) {
        if (steal_pending(tc)) {
            wait_out_steal(p, tc);
            continue;
        }
        if (tc->lrounds < tc->mrounds) {
            tc->loaded->rounds[tc->lrounds++] = block;
            counter_inc(&tc->releases);
            cache_leave(tc);
            return;
        }
        if (tc->prounds < tc->mrounds) {
            swap_magazines(tc);
            continue;
        }
        /* Both full: previous goes to the depot, an empty one comes back.
         * depot_get_empty may take the allocation lock, which no stealer
         * holds while it waits for busy == 0. */
        epoch_read_lock(); /* trim may free magazines (depot.c) */
        struct mag *e = depot_get_empty(&p->depot);
        epoch_read_unlock();
        if (e == NULL)
            break;
        tc->previous->count = tc->prounds;
        depot_push(&p->depot, &p->depot.full, tc->previous);
        counter_inc(&tc->depot_puts);
        tc->previous = tc->loaded;
        tc->prounds = tc->lrounds;
        tc->loaded = e;
        tc->lrounds = 0;
    }
    cache_leave(tc);
    release_spill(p, block); /* no memory for a magazine: keep the block */
}

/* First use of p by this thread (or no memory for a cache). */
static noinline void *acquire_attach(magpool_t *p)
{
    struct tcache *tc = registry_tcache_slow(p);
    if (tc == NULL)
        return acquire_uncached(p);
    cache_enter(tc);
    return cache_acquire_slow(p, tc);
}

static noinline void release_attach(magpool_t *p, void *block)
{
    struct tcache *tc = registry_tcache_slow(p);
    if (tc == NULL) {
        release_spill(p, block);
        return;
    }
    cache_enter(tc);
    cache_release_slow(p, tc, block);
}

/* The fast path proper, once the thread's cache of p is known. */
static inline void *cache_acquire_tc(magpool_t *p, struct tcache *tc)
{
    cache_enter(tc);
    if (likely(!steal_pending(tc)) && likely(tc->lrounds > 0)) {
        void *b = tc->loaded->rounds[--tc->lrounds];
        counter_inc(&tc->acquires);
        cache_leave(tc);
        return b;
    }
    return cache_acquire_slow(p, tc);
}

static inline void cache_release_tc(magpool_t *p, struct tcache *tc, void *block)
{
    cache_enter(tc);
    if (likely(!steal_pending(tc)) && likely(tc->lrounds < tc->mrounds)) {
        tc->loaded->rounds[tc->lrounds++] = block;
        counter_inc(&tc->releases);
        cache_leave(tc);
        return;
    }
    cache_release_slow(p, tc, block);
}

static inline void *cache_acquire_fast(magpool_t *p)
{
    struct tdir *d = magpool_tls_dir;
    if (unlikely(!tdir_has(d, p)))
        return acquire_attach(p);
    return cache_acquire_tc(p, d->e[p->slot].tc);
}

static inline void cache_release_fast(magpool_t *p, void *block)
{
    struct tdir *d = magpool_tls_dir;
    if (unlikely(!tdir_has(d, p))) {
        release_attach(p, block);
        return;
    }
    cache_release_tc(p, d->e[p->slot].tc, block);
}

struct tcache *cache_attach(magpool_t *p)
{
    struct tcache *tc = aligned_alloc(MAGPOOL_DESTRUCTIVE,
        (sizeof *tc + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1));
    if (tc == NULL)
        return NULL;
    memset(tc, 0, sizeof *tc);
    tc->mrounds = p->depot.rounds;
    tc->pool = p;
    tc->trim_seen = pool_clock_ns();
    epoch_read_lock(); /* trim may free magazines (depot.c) */
    tc->loaded = depot_get_empty(&p->depot);
    tc->previous = tc->loaded ? depot_get_empty(&p->depot) : NULL;
    epoch_read_unlock();
    if (tc->previous == NULL) {
        if (tc->loaded)
            depot_push(&p->depot, &p->depot.empty, tc->loaded);
        free(tc);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&p->reg_lock);
    tc->next = p->tcaches;
    if (p->tcaches)
        p->tcaches->prev = tc;
    p->tcaches = tc;
    p->nthreads++;
    pthread_mutex_unlock(&p->reg_lock);
    return tc;
}

/* Return both magazines (whatever they hold) to the depot and forget tc.
 * Called by tc's owner at thread exit, or for an orphan after fork(). */
static void detach_locked(magpool_t *p, struct tcache *tc, bool give_back)
{
    if (give_back) {
        struct mag *m[2] = { tc->loaded, tc->previous };
        uint32_t r[2] = { tc->lrounds, tc->prounds };
        for (int i = 0; i < 2; i++) {
            m[i]->count = r[i];
            depot_push(&p->depot, r[i] ? &p->depot.full : &p->depot.empty, m[i]);
        }
    }
    pthread_mutex_lock(&p->reg_lock);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        p->tcaches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    p->nthreads--;
    /* relaxed loads: tc's owner is the caller (or gone); the counters only
     * need their final values. */
    p->retired_acquires += atomic_load_relaxed(&tc->acquires);
    p->retired_releases += atomic_load_relaxed(&tc->releases);
    p->retired_depot_gets += atomic_load_relaxed(&tc->depot_gets);
    p->retired_depot_puts += atomic_load_relaxed(&tc->depot_puts);
    pthread_mutex_unlock(&p->reg_lock);
    free(tc);
}

void cache_detach(magpool_t *p, struct tcache *tc)
{
    pthread_mutex_lock(&p->grow_lock); /* no stealer may be inside tc */
    detach_locked(p, tc, true);
    pthread_mutex_unlock(&p->grow_lock);
}

void cache_free_all(magpool_t *p)
{
    struct tcache *tc = p->tcaches;
    while (tc) {
        struct tcache *next = tc->next;
        free(tc);
        tc = next;
    }
    p->tcaches = NULL;
}

void cache_flush_self(magpool_t *p)
{
    struct tcache *tc = tcache_lookup(p);
    if (tc == NULL)
        return;
    pthread_mutex_lock(&p->grow_lock);
    tc->trim_seen = pool_clock_ns(); /* flushed by an active thread: fresh */
    cache_flush_locked(p, tc, tc->trim_seen, NULL);
    pthread_mutex_unlock(&p->grow_lock);
}

/* fork() prepare (growth and registration locks held): stop every other
 * thread's cache of p, so the child inherits them consistent. The parent
 * handler lets them go again. */
void cache_quiesce_locked(magpool_t *p, struct tcache *self)
{
    stop_owners_locked(p, self, NULL, NULL);
}

void cache_unquiesce_locked(magpool_t *p)
{
    release_owners_locked(p);
}

/* In the child after fork(): every thread but the caller is gone; give their
 * caches' blocks back. The prepare handler quiesced them, so none should be
 * busy; should one be (no membarrier on this kernel), forget it, losing its
 * rounds rather than risking a block handed out twice. Locks are free again
 * at this point. */
void cache_fork_child(magpool_t *p, struct tcache *mine)
{
    pthread_mutex_lock(&p->grow_lock);
    struct tcache *tc = p->tcaches;
    while (tc) {
        struct tcache *next = tc->next;
        if (tc != mine)
            detach_locked(p, tc, atomic_load_relaxed(&tc->busy) == 0);
        tc = next;
    }
    pthread_mutex_unlock(&p->grow_lock);
}

/* ------------------------------------------------------- public fast path */

/* The magazine layer for diagnostic pools (diag.c wraps its checks around
 * these). Out of line, so the fast path below is compiled exactly as before. */
noinline void *cache_acquire_lockfree(magpool_t *p)
{
    return cache_acquire_fast(p);
}

noinline void cache_release_lockfree(magpool_t *p, void *block)
{
    cache_release_fast(p, block);
}

/* Every mode but MODE_LOCKFREE (with nothing switched on): diagnostics
 * (diag_flags != 0, diag.c) or the mutex baseline. Reached by a tail call
 * from the public functions, so __builtin_return_address(0) here is the
 * caller's acquire site (CHECKED records it), and the fast path needs no
 * stack frame. */
static noinline void *acquire_other(magpool_t *p)
{
    if (p->diag_flags)
        return diag_acquire(p, __builtin_return_address(0));
    return mutex_pool_acquire(p);
}

static noinline void release_other(magpool_t *p, void *block)
{
    if (p->diag_flags)
        diag_release(p, block, __builtin_return_address(0));
    else
        mutex_pool_release(p, block);
}

/* Not served by the fast path: a plain lock-free pool this thread has not
 * used yet, or any other mode. Tail calls all the way, so the diagnostic
 * code still sees the application's call site as its return address. */
static noinline void *acquire_miss(magpool_t *p)
{
    if (p->mode == MODE_LOCKFREE)
        return acquire_attach(p);
    return acquire_other(p);
}

static noinline void release_miss(magpool_t *p, void *block)
{
    if (p->mode == MODE_LOCKFREE)
        release_attach(p, block);
    else
        release_other(p, block);
}

/*
 * The public fast path. p->fast_slot is the pool's slot for a plain
 * lock-free pool and UINT32_MAX for every other mode, so one bounds check
 * against the thread's directory both finds the cache and rules out the
 * mutex and diagnostic modes: no separate mode test.
 */
MAGPOOL_API void *magpool_acquire(magpool_t *p)
{
    if (unlikely(p == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    struct tdir *d = magpool_tls_dir;
    uint32_t s = p->fast_slot;
    if (likely(s < d->cap && d->e[s].uid == p->uid))
        return cache_acquire_tc(p, d->e[s].tc);
    return acquire_miss(p);
}

MAGPOOL_API void magpool_release(magpool_t *p, void *block)
{
    if (unlikely(p == NULL || block == NULL))
        return;
    struct tdir *d = magpool_tls_dir;
    uint32_t s = p->fast_slot;
    if (likely(s < d->cap && d->e[s].uid == p->uid)) {
        cache_release_tc(p, d->e[s].tc, block);
        return;
    }
    release_miss(p, block);
}
