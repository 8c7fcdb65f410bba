/* SPDX-License-Identifier: MIT */
/*
 * Per-thread handles (magpool_cache_t, after DPDK's rte_mempool_cache): a
 * hot loop binds once to the calling thread's cache of a pool and then
 * acquires and releases without the thread-directory lookup and the NULL
 * test of the pool (the calls are in cache.c, beside the plain fast path).
 *
 * What a handle is, per mode:
 *   plain lock-free pool   the thread's struct tcache itself
 *   diagnostic modes       a route object of the thread (made here, freed
 *     (lock-free backend)  with the thread's cache: thread exit, destroy,
 *                          a fork child's reclaim), standing for its cache
 *   mutex backend          the pool's one route object (p->route): the
 *                          backend keeps no per-thread state
 * A route object has no rounds and no room, so the handle's fast path always
 * falls through to handle_route_*, which call what magpool_acquire /
 * magpool_release would: diag_acquire / diag_release (every check, the
 * application's call site recorded) or the mutex backend. Statistics,
 * the cap, steals, trim, fork and thread exit are therefore exactly the
 * normal path's.
 *
 * CHECKED mode detects a handle used on a thread that did not get it (a
 * route object whose cache is not the calling thread's): the call is
 * refused and reported (MAGPOOL_ERR_WRONG_THREAD). In the fast mode a handle
 * carries no owner check (that is the lookup it saves); the misuse is
 * undefined, as documented in magpool.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A route object for p (no magazines: lrounds = mrounds = 0). */
static void route_init(struct tcache *r, magpool_t *p, struct tcache *of)
{
    memset(r, 0, sizeof *r);
    atomic_store_relaxed(&r->steal, STEAL_ROUTE);
    r->pool = p;
    r->route_of = of;
}

void handle_route_init(magpool_t *p)
{
    route_init(&p->route, p, NULL);
}

static noinline magpool_cache_t *cache_get_slow(magpool_t *p)
{
    if (p->mode == MODE_MUTEX)
        return (magpool_cache_t *)&p->route;
    struct tcache *tc = tcache_lookup(p);
    if (tc == NULL && (tc = registry_tcache_slow(p)) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (p->mode == MODE_LOCKFREE)
        return (magpool_cache_t *)tc;
    if (tc->handle_route == NULL) {
        struct tcache *r = aligned_alloc(MAGPOOL_DESTRUCTIVE,
            (sizeof *r + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1));
        if (r == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        route_init(r, p, tc);
        /* Only the owner reads handle_route, and frees it with tc under
         * reg_lock after the owner is gone (or is the caller): no race. */
        tc->handle_route = r;
    }
    return (magpool_cache_t *)tc->handle_route;
}

MAGPOOL_API magpool_cache_t *magpool_cache_get(magpool_t *p)
{
    RETURN_IF_NULL(p, NULL);
    struct tcache *tc = p->mode == MODE_LOCKFREE ? tcache_lookup(p) : NULL;
    if (likely(tc != NULL))
        return (magpool_cache_t *)tc;
    return cache_get_slow(p);
}

/* CHECKED: is r used by the thread it was made for? (The mutex backend's
 * one object is every thread's.) Otherwise reported; false = refuse. */
static bool route_owner_ok(struct tcache *r, const void *block)
{
    magpool_t *p = r->pool;
    if (r->route_of == NULL || !(p->diag_flags & DIAG_CHECKED) ||
        r->route_of == tcache_lookup(p))
        return true;
    diag_report_wrong_thread(p, block);
    return false;
}

void *handle_route_acquire(struct tcache *r, void *caller)
{
    magpool_t *p = r->pool;
    if (!route_owner_ok(r, NULL)) {
        errno = EINVAL;
        return NULL;
    }
    if (p->diag_flags)
        return diag_acquire(p, caller);
    return mutex_pool_acquire(p);
}

void handle_route_release(struct tcache *r, void *block, void *caller)
{
    magpool_t *p = r->pool;
    if (!route_owner_ok(r, block))
        return; /* errno EINVAL; the block stays outstanding */
    if (p->diag_flags)
        diag_release(p, block, caller);
    else
        mutex_pool_release(p, block);
}
