/* SPDX-License-Identifier: MIT */
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
 * Another thread may take the rounds out of this cache (a steal at the cap,
 * trim, fork): the owner brackets every cache operation with cache_enter /
 * cache_leave and backs off when a steal is pending. The protocol, its
 * fence and its rules are in steal.c; the lock order in docs/design.md.
 *
 * Rules for this file: a thread never blocks on a lock with busy = 1 except
 * the magazine-allocation lock (no stealer holds it while it waits), and
 * never takes any lock inside an epoch read section.
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

#include "cache_measure.h" /* the fast path's ingredients, by name */

/* A stealer is at work on this cache: step aside until it is done. */
static noinline void wait_out_steal(magpool_t *p, struct tcache *tc)
{
    cache_leave(tc);
    mutex_lock(&p->grow_lock); /* held by the stealer until done */
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

/* loaded and previous are both empty: trade one for a full one (from the
 * depot, or one the caller stole). */
static void install_full(magpool_t *p, struct tcache *tc, struct mag *full)
{
    depot_push(&p->depot, &p->depot.empty, tc->previous);
    tc->previous = tc->loaded;
    tc->prounds = 0;
    tc->loaded = full;
    tc->lrounds = full->count;
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
        bool from_depot = stolen == NULL;
        struct mag *full = stolen ? stolen : depot_pop(&p->depot, &p->depot.full);
        stolen = NULL;
        void *b = NULL;
        if (full && tc) {
            install_full(p, tc, full);
            if (from_depot)
                counter_inc(&tc->depot_gets);
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
            if (cache_steal_locked(p, tc, NULL, NULL, &stolen, NULL))
                counter_inc(&p->steals); /* growth lock held: one writer */
            continue;
        }
        counter_inc(&p->failed);
        errno = grow_err;
        return NULL;
    }
}

static noinline void *acquire_uncached(magpool_t *p)
{
    mutex_lock(&p->grow_lock);
    void *b = take_block_locked(p, NULL);
    pthread_mutex_unlock(&p->grow_lock);
    return b;
}

static void release_spill(magpool_t *p, void *block)
{
    mutex_lock(&p->grow_lock);
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
        epoch_read_lock(&p->epoch, tc->reader); /* trim may free magazines */
        struct mag *full = depot_pop(&p->depot, &p->depot.full);
        epoch_read_unlock(&p->epoch, tc->reader);
        if (full) {
            install_full(p, tc, full);
            counter_inc(&tc->depot_gets);
            continue;
        }
        /* The depot is dry: grow or steal under the growth lock. Never block
         * with busy set (a stealer holding the lock would wait for us). */
        cache_leave(tc);
        mutex_lock(&p->grow_lock);
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
        /* Both full: previous goes to the depot, an empty one comes back. */
        struct mag *e = cache_get_empty(p, tc->reader);
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

/* The fast path proper, once the thread's cache (or a handle's route
 * object, which has no rounds and no room) is known. cache_pop: a block,
 * busy == 0; or NULL (never a block): the slow path's turn, busy == 1.
 * cache_push: true, done; false, the slow path's turn. (No out-parameter:
 * an address-taken local gives the caller a stack frame under ASan, which
 * ends the tail calls CHECKED's acquire sites rely on.) */
static inline void *cache_pop(struct tcache *tc)
{
    fast_enter(tc);
    if (likely(!fast_stopped(tc)) && likely(tc->lrounds > 0)) {
        void *b = tc->loaded->rounds[--tc->lrounds];
        fast_count(&tc->acquires);
        fast_leave(tc);
        if (b == NULL) /* never: no path stores NULL into a magazine */
            __builtin_unreachable(); /* lets the caller's NULL test fold */
        return b;
    }
    fast_to_slow(tc);
    return NULL;
}

static inline bool cache_push(struct tcache *tc, void *block)
{
    fast_enter(tc);
    if (likely(!fast_stopped(tc)) && likely(tc->lrounds < tc->mrounds)) {
        tc->loaded->rounds[tc->lrounds++] = block;
        fast_count(&tc->releases);
        fast_leave(tc);
        return true;
    }
    fast_to_slow(tc);
    return false;
}

static inline void *cache_acquire_tc(magpool_t *p, struct tcache *tc)
{
    void *b = cache_pop(tc);
    if (likely(b != NULL))
        return b;
    return cache_acquire_slow(p, tc);
}

static inline void cache_release_tc(magpool_t *p, struct tcache *tc, void *block)
{
    if (likely(cache_push(tc, block)))
        return;
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
    if (fast_null(p)) {
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
    if (fast_null(block))
        return;
    if (fast_null(p)) {
        errno = EINVAL;
        return;
    }
    struct tdir *d = magpool_tls_dir;
    uint32_t s = p->fast_slot;
    if (likely(s < d->cap && d->e[s].uid == p->uid)) {
        cache_release_tc(p, d->e[s].tc, block);
        return;
    }
    release_miss(p, block);
}

/* ------------------------------------------------------ per-thread handles */

/*
 * magpool_cache_acquire / magpool_cache_release: the fast path above
 * without the NULL test of the pool and the directory lookup. A handle of a
 * plain lock-free pool is the thread's struct tcache itself
 * (magpool_cache_get, handle.c), so the call goes straight to its line. In
 * every other mode it is a route object (internal.h): no rounds, no room,
 * steal word STEAL_ROUTE, so the same fast path always falls through to
 * the slow path, which sends it to the pool's normal path (handle.c). The
 * route test costs nothing until then.
 */
/* Reached by a tail call (as acquire_other above): the return address is
 * the application's call site, which CHECKED records; computing it in the
 * public function would cost that function a stack frame. */
static noinline void *handle_acquire_slow(struct tcache *tc)
{
    /* relaxed: a route object's steal word never changes; a real cache's
     * is read again (acquire) by the slow path. */
    if (likely(atomic_load_relaxed(&tc->steal) != STEAL_ROUTE))
        return cache_acquire_slow(tc->pool, tc); /* busy == 1 */
    cache_leave(tc);
    return handle_route_acquire(tc, __builtin_return_address(0));
}

static noinline void handle_release_slow(struct tcache *tc, void *block)
{
    if (likely(atomic_load_relaxed(&tc->steal) != STEAL_ROUTE)) {
        cache_release_slow(tc->pool, tc, block);
        return;
    }
    cache_leave(tc);
    handle_route_release(tc, block, __builtin_return_address(0));
}

MAGPOOL_API void *magpool_cache_acquire(magpool_cache_t *c)
{
    struct tcache *tc = (struct tcache *)c;
    if (fast_null(tc)) {
        errno = EINVAL;
        return NULL;
    }
    void *b = cache_pop(tc);
    if (likely(b != NULL))
        return b;
    return handle_acquire_slow(tc);
}

MAGPOOL_API void magpool_cache_release(magpool_cache_t *c, void *block)
{
    struct tcache *tc = (struct tcache *)c;
    if (fast_null(block))
        return;
    if (fast_null(tc)) {
        errno = EINVAL;
        return;
    }
    if (likely(cache_push(tc, block)))
        return;
    handle_release_slow(tc, block);
}

/* ------------------------------------------------------------ bulk calls */

/*
 * magpool_acquire_bulk / magpool_release_bulk. On the fast path (a plain
 * lock-free pool the thread has a cache of), runs of rounds are copied
 * between the caller's array and the loaded and previous magazines, under
 * one cache_enter / cache_leave for as many blocks as the two magazines
 * hold. When both are empty (acquire) or full (release), or a stealer is at
 * work, one block goes through the single-block slow path, which refills
 * (or drains) the magazines from the depot, grows or steals, and leaves the
 * cache; then copying resumes. So a bulk call obeys the rules at the top of
 * this file by construction: it blocks only inside the slow paths.
 *
 * Every other mode (mutex backend, diagnostics, and a thread with no memory
 * for a cache) loops over its single-block path, so CHECKED checks every
 * block and records the caller of the bulk call as the acquire site.
 *
 * All or nothing: an acquire that cannot get all n blocks gives back the
 * ones it took, through the bulk release. Statistics count what happened,
 * as the single calls would: acquires and releases per block, and the
 * failed acquire once.
 */

/* Take up to n rounds from tc's magazines (busy == 1, no steal pending):
 * the loaded magazine's top rounds, then the previous magazine's. The
 * rounds land in blocks[] in the reverse of the order single acquires would
 * return them; the set is the same. Returns how many. */
static size_t pop_rounds(struct tcache *tc, void **blocks, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 2 && got < n; i++) {
        if (tc->lrounds == 0)
            swap_magazines(tc);
        size_t k = n - got < tc->lrounds ? n - got : tc->lrounds;
        tc->lrounds -= (uint32_t)k;
        memcpy(blocks + got, &tc->loaded->rounds[tc->lrounds], k * sizeof *blocks);
        got += k;
    }
    counter_add(&tc->acquires, got);
    return got;
}

/* Put blocks[*i..n) into tc's magazines (busy == 1, no steal pending),
 * loaded first, then previous, skipping NULL entries, until both are full.
 * Advances *i past what it consumed. */
static void push_rounds(struct tcache *tc, void *const *blocks, size_t n, size_t *i)
{
    size_t j = *i;
    uint64_t pushed = 0;
    for (int m = 0; m < 2 && j < n; m++) {
        if (tc->lrounds == tc->mrounds)
            swap_magazines(tc);
        void **r = tc->loaded->rounds;
        uint32_t l = tc->lrounds, cap = tc->mrounds;
        for (; j < n && l < cap; j++) {
            void *b = blocks[j];
            r[l] = b;
            l += b != NULL;
        }
        pushed += l - tc->lrounds;
        tc->lrounds = l;
    }
    counter_add(&tc->releases, pushed);
    *i = j;
}

static void release_bulk_tc(magpool_t *p, struct tcache *tc, void *const *blocks, size_t n)
{
    size_t i = 0;
    for (;;) {
        cache_enter(tc);
        if (likely(!steal_pending(tc)))
            push_rounds(tc, blocks, n, &i);
        while (i < n && blocks[i] == NULL)
            i++;
        if (i == n) {
            cache_leave(tc);
            return;
        }
        /* Both magazines full, or a stealer at work: the single-block slow
         * path trades a full magazine for an empty one and leaves. */
        cache_release_slow(p, tc, blocks[i++]);
    }
}

static int acquire_bulk_tc(magpool_t *p, struct tcache *tc, void **blocks, size_t n)
{
    size_t got = 0;
    for (;;) {
        cache_enter(tc);
        if (likely(!steal_pending(tc)))
            got += pop_rounds(tc, blocks + got, n - got);
        if (got == n) {
            cache_leave(tc);
            return 0;
        }
        /* Both magazines empty, or a stealer at work: one block through the
         * single-block slow path (depot, growth, steal), which leaves. */
        void *b = cache_acquire_slow(p, tc);
        if (unlikely(b == NULL)) {
            int e = errno;
            release_bulk_tc(p, tc, blocks, got);
            errno = e;
            return -1;
        }
        blocks[got++] = b;
    }
}

/* One block through the single-block path of p's mode; `caller` is the
 * application's call site (CHECKED records it). */
static void *acquire_one(magpool_t *p, void *caller)
{
    if (p->mode == MODE_LOCKFREE)
        return cache_acquire_lockfree(p);
    if (p->diag_flags)
        return diag_acquire(p, caller);
    return mutex_pool_acquire(p);
}

static void release_one(magpool_t *p, void *block, void *caller)
{
    if (p->mode == MODE_LOCKFREE)
        cache_release_lockfree(p, block);
    else if (p->diag_flags)
        diag_release(p, block, caller);
    else
        mutex_pool_release(p, block);
}

static void release_bulk_loop(magpool_t *p, void *const *blocks, size_t n, void *caller)
{
    for (size_t i = 0; i < n; i++)
        if (blocks[i] != NULL)
            release_one(p, blocks[i], caller);
}

static int acquire_bulk_loop(magpool_t *p, void **blocks, size_t n, void *caller)
{
    for (size_t i = 0; i < n; i++) {
        blocks[i] = acquire_one(p, caller);
        if (unlikely(blocks[i] == NULL)) {
            int e = errno;
            release_bulk_loop(p, blocks, i, caller);
            errno = e;
            return -1;
        }
    }
    return 0;
}

/* The calling thread's cache of p when p is a plain lock-free pool, else
 * NULL: the public fast path's test (fast_slot rules out every other mode). */
static inline struct tcache *fast_tcache(const magpool_t *p)
{
    struct tdir *d = magpool_tls_dir;
    uint32_t s = p->fast_slot;
    return s < d->cap && d->e[s].uid == p->uid ? d->e[s].tc : NULL;
}

/* Not served by the fast path: first use of a lock-free pool by this
 * thread (attach, then the fast path), or any other mode. */
static noinline int acquire_bulk_miss(magpool_t *p, void **blocks, size_t n, void *caller)
{
    if (p->mode == MODE_LOCKFREE) {
        struct tcache *tc = registry_tcache_slow(p);
        if (tc != NULL)
            return acquire_bulk_tc(p, tc, blocks, n);
    }
    return acquire_bulk_loop(p, blocks, n, caller);
}

static noinline void release_bulk_miss(magpool_t *p, void *const *blocks, size_t n,
                                       void *caller)
{
    if (p->mode == MODE_LOCKFREE) {
        struct tcache *tc = registry_tcache_slow(p);
        if (tc != NULL) {
            release_bulk_tc(p, tc, blocks, n);
            return;
        }
    }
    release_bulk_loop(p, blocks, n, caller);
}

MAGPOOL_API int magpool_acquire_bulk(magpool_t *p, void **blocks, size_t n)
{
    if (unlikely(p == NULL || (blocks == NULL && n > 0))) {
        errno = EINVAL;
        return -1;
    }
    if (n == 0)
        return 0;
    struct tcache *tc = fast_tcache(p);
    if (likely(tc != NULL))
        return acquire_bulk_tc(p, tc, blocks, n);
    return acquire_bulk_miss(p, blocks, n, __builtin_return_address(0));
}

MAGPOOL_API void magpool_release_bulk(magpool_t *p, void *const *blocks, size_t n)
{
    if (n == 0)
        return;
    if (unlikely(p == NULL || blocks == NULL)) {
        errno = EINVAL;
        return;
    }
    struct tcache *tc = fast_tcache(p);
    if (likely(tc != NULL)) {
        release_bulk_tc(p, tc, blocks, n);
        return;
    }
    release_bulk_miss(p, blocks, n, __builtin_return_address(0));
}

/* --------------------------------------------------------- zeroed blocks */

MAGPOOL_API void *magpool_acquire_zeroed(magpool_t *p)
{
    if (unlikely(p == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    void *b = acquire_one(p, __builtin_return_address(0));
    if (likely(b != NULL))
        memset(b, 0, p->block_size);
    return b;
}
