/* SPDX-License-Identifier: MIT */
/*
 * Taking rounds out of other threads' caches: the asymmetric-fence protocol.
 *
 * With a hard cap, blocks parked in other threads' magazines must not make an
 * acquire fail; trim/clear must reach the caches of idle threads; fork() must
 * hand the child consistent caches. Another thread must therefore be able to
 * take blocks out of a cache whose owner uses it without atomics. The owner
 * (cache.c) brackets every cache operation with
 *
 *     busy = 1 (relaxed); compiler barrier; if (steal) -> back off
 *     ... magazine work ...
 *     busy = 0 (release)
 *
 * and a stealer, holding the pool's growth and registration locks, does
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
 * cap, in trim/clear and at fork. The same technique underlies liburcu's
 * membarrier flavour. Every hand-off of magazine contents is also a C11
 * release/acquire pair (busy, steal, the growth lock), so TSan sees the
 * happens-before edges and would report a broken protocol as a race. The
 * protocol is model-checked under x86-TSO in verify/ (with and without the
 * fence).
 *
 * Without the fence there is no safe steal: if membarrier is missing, or
 * fails (a seccomp sandbox may allow the registration and refuse the call),
 * stealing is switched off for good — stop_owners_locked() lets the owners go
 * and reports failure, an at-cap acquire can then fail while blocks are
 * parked, trim reaches only the depot and the caller's own cache, and a fork
 * child forgets the other threads' caches rather than trust them.
 *
 * Rule that keeps it deadlock-free: an owner never blocks on a lock while its
 * busy flag is 1, except the magazine-allocation lock, which a stealer never
 * holds while it waits (docs/design.md, "Locks and grace periods").
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------ the fence */

enum fence_kind { FENCE_NONE, FENCE_PRIVATE_EXPEDITED, FENCE_GLOBAL };
/* Written by fence_setup (registry init, fork child: single-threaded) and by
 * stealers of any pool when a fence fails. Relaxed: it guards no other data;
 * after setup the value only moves towards FENCE_NONE, and a stale read
 * costs one more failed fence, never a steal without one. */
static _Atomic int fence_kind;
static bool fence_global_ok; /* MEMBARRIER_CMD_GLOBAL is supported */

long (*magpool_test_membarrier)(int cmd); /* test hook: replaces the syscall */

static long sys_membarrier(int cmd)
{
    if (unlikely(magpool_test_membarrier != NULL))
        return magpool_test_membarrier(cmd);
    return syscall(__NR_membarrier, cmd, 0, 0);
}

void fence_setup(void)
{
    long q = sys_membarrier(MEMBARRIER_CMD_QUERY);
    int kind = FENCE_NONE;
    fence_global_ok = q >= 0 && (q & MEMBARRIER_CMD_GLOBAL);
    if (q >= 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
        kind = FENCE_PRIVATE_EXPEDITED;
    else if (fence_global_ok)
        kind = FENCE_GLOBAL;
    atomic_store_relaxed(&fence_kind, kind);
}

bool heavy_fence_available(void)
{
    return atomic_load_relaxed(&fence_kind) != FENCE_NONE;
}

/* A full barrier on every running thread of the process. False if none
 * could be issued: the private command failed (it can fail after a
 * successful registration) and the global one is missing or failed too;
 * stealing is then off for good. */
bool heavy_fence(void)
{
    int kind = atomic_load_relaxed(&fence_kind);
    if (kind == FENCE_PRIVATE_EXPEDITED) {
        if (sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return true;
        kind = fence_global_ok ? FENCE_GLOBAL : FENCE_NONE;
    }
    if (kind == FENCE_GLOBAL && sys_membarrier(MEMBARRIER_CMD_GLOBAL) == 0) {
        atomic_store_relaxed(&fence_kind, kind);
        return true;
    }
    atomic_store_relaxed(&fence_kind, FENCE_NONE);
    return false;
}

/* ------------------------------------------------------- the protocol */

/*
 * The two halves (caller holds the growth and registration locks).
 * stop_owners_locked() flags every cache but `self` for which want(tc, arg)
 * is true (all when want is NULL), issues the fence, and waits until none of
 * their owners is inside a cache operation: they now wait on the growth
 * lock. It returns false, with every flag cleared again, if no cache was
 * wanted or the fence failed. release_owners_locked() lets them go.
 */
bool stop_owners_locked(magpool_t *p, struct tcache *self,
                        bool (*want)(struct tcache *, void *), void *arg)
{
    if (!heavy_fence_available())
        return false;
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
    if (!heavy_fence()) {
        release_owners_locked(p);
        return false;
    }
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next)
        if (tc->victim)
            /* acquire: pairs with cache_leave(); the owner's magazine writes
             * happen-before ours. */
            while (atomic_load_acquire(&tc->busy))
                sched_yield();
    return true;
}

void release_owners_locked(magpool_t *p)
{
    for (struct tcache *tc = p->tcaches; tc; tc = tc->next) {
        if (tc->victim)
            atomic_store_release(&tc->steal, 0); /* pairs with steal_pending() */
        tc->victim = false;
    }
}

/* Give each non-empty magazine of tc to the depot in exchange for an empty
 * one. Caller holds the growth lock and either owns tc or has stopped its
 * owner (above). The magazines are stamped with `stamp`: trim passes the
 * thread's last observed activity, so they age from when the thread last
 * used them. If keep != NULL and *keep is NULL, the first non-empty magazine
 * goes to *keep instead of the depot (an at-cap stealer keeps one, so that
 * threads popping the depot without the growth lock cannot take every stolen
 * block before it does). Returns blocks moved. */
size_t cache_flush_locked(magpool_t *p, struct tcache *tc, uint64_t stamp, struct mag **keep)
{
    size_t moved = 0;
    struct mag **slot[2] = { &tc->loaded, &tc->previous };
    uint32_t *rounds[2] = { &tc->lrounds, &tc->prounds };
    for (int i = 0; i < 2; i++) {
        if (*rounds[i] == 0)
            continue;
        struct mag *e = depot_get_empty(&p->depot); /* growth lock: no section */
        if (e == NULL)
            continue; /* out of memory: the rounds stay where they are */
        (*slot[i])->count = *rounds[i];
        if (keep && *keep == NULL) {
            *keep = *slot[i]; /* not a depot put: the stealer installs it */
        } else {
            depot_push_stamped(&p->depot, &p->depot.full, *slot[i], stamp);
            /* The owner is stopped or is the caller: the single-writer
             * counter is ours for the moment (ordered by busy / steal / the
             * growth lock). */
            counter_inc(&tc->depot_puts);
        }
        moved += *rounds[i];
        *slot[i] = e;
        *rounds[i] = 0;
    }
    return moved;
}

/* Take back the rounds parked in other threads' caches of p: every cache
 * but `self` for which want(tc, arg) is true (all of them when want is NULL).
 * Caller holds the growth lock (so at most one stealer runs, and the owner of
 * `self` is the caller). `keep`: see cache_flush_locked(). Returns the number
 * of blocks moved; *caches (if not NULL) += the caches they came from. */
size_t cache_steal_locked(magpool_t *p, struct tcache *self,
                          bool (*want)(struct tcache *, void *), void *arg,
                          struct mag **keep, uint64_t *caches)
{
    size_t moved = 0;
    uint64_t now = pool_clock_ns();
    mutex_lock(&p->reg_lock);
    if (stop_owners_locked(p, self, want, arg)) {
        for (struct tcache *tc = p->tcaches; tc; tc = tc->next) {
            if (!tc->victim)
                continue;
            size_t m = cache_flush_locked(p, tc, want ? tc->trim_seen : now, keep);
            moved += m;
            if (m && caches)
                (*caches)++;
        }
        /* Nothing to keep from the caches: keep a magazine of the depot
         * instead, while the owners are still stopped. Otherwise an owner
         * that had just pushed its rounds to the depot (and so had nothing
         * left to steal) could pop them back before the stealer's last pass,
         * and the at-cap acquire would fail although a block was idle at
         * every instant of it (found by verify/cap.m). */
        if (keep && *keep == NULL)
            *keep = depot_pop(&p->depot, &p->depot.full); /* growth lock held */
        release_owners_locked(p);
    }
    pthread_mutex_unlock(&p->reg_lock);
    return moved;
}
