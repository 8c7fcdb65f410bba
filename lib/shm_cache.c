/* SPDX-License-Identifier: MIT */
/*
 * The shared pool's fast path: per-thread caches of block indices.
 *
 * A thread's cache is private memory (not in the segment): recovery never
 * needs it, because every block move writes the block's stamp at the point
 * where a kill would otherwise lose track of it:
 *
 *   acquire   pop idx from the cache, then stamp HELD(me)
 *             killed between: stamp CACHED(me) -> recovered to the free stack
 *             killed after:   stamp HELD(me)   -> an orphan of the dead process
 *   release   stamp CACHED(me), then push idx onto the cache
 *             killed between or after: CACHED(me) -> recovered
 *
 * No atomic read-modify-write on the fast path: a block's stamp changes
 * lock-free only by its owner process (HELD(me) <-> CACHED(me)); a block
 * held by another process is taken over with a CAS (release_foreign), the
 * same CAS that orphan reclaim and ring adoption use, so exactly one of
 * them wins. The relaxed stamp stores order nothing: the block's contents
 * travel with the application's own hand-off (a ring's release/acquire) or
 * with the segment mutex (batches via the free stack).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm_internal.h"

/* The last (handle, cache) this thread used: a handle id, never a pointer,
 * so a detached handle can never be matched again. */
static __thread struct {
    uint64_t id;
    struct shm_tcache *tc;
} shm_tls;

void shm_tcache_forget_tls(void)
{
    shm_tls.id = 0;
    shm_tls.tc = NULL;
}

static inline struct shm_tcache *tcache_fast(const struct magpool_shm *p)
{
    return likely(p && shm_tls.id == p->id) ? shm_tls.tc : NULL;
}

static void tcache_give_back(struct shm_tcache *tc, uint32_t from, uint32_t n)
{
    struct magpool_shm *p = tc->pool;
    if (shm_lock(p) != 0)
        return; /* ENOTRECOVERABLE: the blocks stay CACHED, recovered with us */
    shm_store_put(p, tc->idx + from, n);
    shm_unlock(p);
    memmove(tc->idx + from, tc->idx + from + n, (tc->count - from - n) * sizeof tc->idx[0]);
    tc->count -= n;
}

static void tcache_unlink(struct shm_tcache *tc)
{
    struct magpool_shm *p = tc->pool;
    pthread_mutex_lock(&p->tc_lock);
    if (tc->intent < SHM_INTENTS - 1)
        p->intents_used &= ~(UINT64_C(1) << tc->intent);
    for (struct shm_tcache **pp = &p->tcaches; *pp; pp = &(*pp)->next)
        if (*pp == tc) {
            *pp = tc->next;
            break;
        }
    pthread_mutex_unlock(&p->tc_lock);
}

/* Thread exit: the cache goes back to the free stack. */
static void tcache_exit(void *arg)
{
    struct shm_tcache *tc = arg;
    if (tc->pool->pid == getpid())
        tcache_give_back(tc, 0, tc->count);
    tcache_unlink(tc);
    if (shm_tls.tc == tc)
        shm_tcache_forget_tls();
    free(tc);
}

int shm_tcache_key_init(struct magpool_shm *p)
{
    return pthread_key_create(&p->key, tcache_exit);
}

void shm_tcache_destroy_key(struct magpool_shm *p)
{
    pthread_key_delete(p->key); /* runs no destructor */
    if (shm_tls.id == p->id)
        shm_tcache_forget_tls();
    struct shm_tcache *tc = p->tcaches;
    while (tc) {
        struct shm_tcache *next = tc->next;
        free(tc);
        tc = next;
    }
    p->tcaches = NULL;
}

void shm_tcache_flush_all(struct magpool_shm *p)
{
    pthread_mutex_lock(&p->tc_lock);
    for (struct shm_tcache *tc = p->tcaches; tc; tc = tc->next)
        tcache_give_back(tc, 0, tc->count);
    pthread_mutex_unlock(&p->tc_lock);
}

/* The thread's cache, created at its first call; it also names the
 * thread's dequeue intent (shm_ring.c): one of its own while fewer than 63
 * threads of this process have one, else the shared last one. */
struct shm_tcache *shm_tcache_get(struct magpool_shm *p)
{
    struct shm_tcache *fast = tcache_fast(p);
    if (likely(fast))
        return fast;
    struct shm_tcache *tc = pthread_getspecific(p->key);
    if (!tc) {
        tc = calloc(1, sizeof *tc + p->geo.cache_size * sizeof tc->idx[0]);
        if (!tc) {
            errno = ENOMEM;
            return NULL;
        }
        tc->pool = p;
        tc->cap = p->geo.cache_size;
        if (pthread_setspecific(p->key, tc) != 0) {
            free(tc);
            errno = ENOMEM;
            return NULL;
        }
        pthread_mutex_lock(&p->tc_lock);
        uint64_t own = ~p->intents_used & ((UINT64_C(1) << (SHM_INTENTS - 1)) - 1);
        tc->intent = own ? (uint32_t)__builtin_ctzll(own) : SHM_INTENTS - 1;
        if (own)
            p->intents_used |= UINT64_C(1) << tc->intent;
        tc->next = p->tcaches;
        p->tcaches = tc;
        pthread_mutex_unlock(&p->tc_lock);
    }
    shm_tls.id = p->id;
    shm_tls.tc = tc;
    return tc;
}

/* Half a cache from the free stack: growing, then recovering dead
 * processes, before giving up. */
static uint32_t tcache_refill(struct shm_tcache *tc)
{
    struct magpool_shm *p = tc->pool;
    uint32_t want = tc->cap / 2, got;
    if (shm_lock(p) != 0)
        return 0;
    got = shm_store_take(p, tc->idx + tc->count, want);
    if (got == 0 && shm_store_grow(p) == 0)
        got = shm_store_take(p, tc->idx + tc->count, want);
    if (got == 0 && shm_recover_auto_locked(p) > 0)
        got = shm_store_take(p, tc->idx + tc->count, want);
    shm_unlock(p);
    tc->count += got;
    return got;
}

static __attribute__((noinline)) void *acquire_slow(struct magpool_shm *p)
{
    if (!shm_handle_ok(p))
        return NULL;
    struct shm_tcache *tc = shm_tcache_get(p);
    if (!tc)
        return NULL;
    if (tc->count == 0 && tcache_refill(tc) == 0) {
        errno = ENOMEM;
        return NULL;
    }
    uint32_t idx = tc->idx[--tc->count];
    atomic_store_relaxed(&p->stamps[idx], p->stamp_held); /* see the file comment */
    return shm_block_at(p, idx);
}

void *magpool_shm_acquire(magpool_shm_t *p)
{
    struct shm_tcache *tc = tcache_fast(p);
    if (likely(tc && tc->count)) {
        uint32_t idx = tc->idx[--tc->count];
        /* relaxed: only this process moves its own HELD/CACHED stamps; see
         * the file comment for what orders the block's contents. */
        atomic_store_relaxed(&p->stamps[idx], p->stamp_held);
        return shm_block_at(p, idx);
    }
    return acquire_slow(p);
}

/* Take over a block held by another process: CAS, so that a concurrent
 * orphan reclaim or a double release elsewhere cannot also have it. */
static int release_foreign(struct magpool_shm *p, uint32_t idx)
{
    uint32_t s = atomic_load_relaxed(&p->stamps[idx]);
    if (stamp_kind(s) != STAMP_HELD)
        return -1;
    if (s == p->stamp_held) {
        atomic_store_relaxed(&p->stamps[idx], p->stamp_cached);
        return 0;
    }
    /* acq_rel: acquire pairs with the holder's writes published through
     * whatever channel brought the block here; release orders our reads of
     * the block before a later owner's writes. */
    return atomic_compare_exchange_strong_explicit(&p->stamps[idx], &s, p->stamp_cached,
                                                   memory_order_acq_rel, memory_order_relaxed)
               ? 0 : -1;
}

static __attribute__((noinline)) int release_slow(struct magpool_shm *p, void *block)
{
    if (!shm_handle_ok(p))
        return -1;
    uint32_t idx = shm_index_of(p, block);
    if (idx == UINT32_MAX || idx >= shm_committed(p)) {
        errno = EINVAL;
        return -1;
    }
    struct shm_tcache *tc = shm_tcache_get(p);
    if (!tc)
        return -1;
    if (tc->count == tc->cap)
        tcache_give_back(tc, 0, tc->cap / 2); /* the coldest half */
    if (tc->count == tc->cap) { /* the mutex is unrecoverable */
        errno = ENOMEM;
        return -1;
    }
    if (release_foreign(p, idx) != 0) {
        errno = EINVAL; /* not held: double release, or reclaimed meanwhile */
        return -1;
    }
    tc->idx[tc->count++] = idx;
    return 0;
}

int magpool_shm_release(magpool_shm_t *p, void *block)
{
    if (!block)
        return 0;
    struct shm_tcache *tc = tcache_fast(p);
    if (likely(tc && tc->count < tc->cap)) {
        uint32_t idx = shm_index_of(p, block);
        if (likely(idx != UINT32_MAX)) {
            _Atomic uint32_t *st = &p->stamps[idx];
            /* relaxed: a HELD(me) stamp changes only in this process. */
            if (likely(atomic_load_relaxed(st) == p->stamp_held)) {
                atomic_store_relaxed(st, p->stamp_cached);
                tc->idx[tc->count++] = idx;
                return 0;
            }
        }
    }
    return release_slow(p, block);
}

uint64_t magpool_shm_offset(const magpool_shm_t *p, const void *block)
{
    uint32_t idx = p && block ? shm_index_of(p, block) : UINT32_MAX;
    if (idx == UINT32_MAX) {
        errno = EINVAL;
        return MAGPOOL_SHM_BAD_OFFSET;
    }
    return p->geo.off_blocks + (uint64_t)idx * p->geo.stride;
}

void *magpool_shm_block(const magpool_shm_t *p, uint64_t offset)
{
    if (!p || offset < p->geo.off_blocks || (offset - p->geo.off_blocks) % p->geo.stride ||
        (offset - p->geo.off_blocks) / p->geo.stride >= p->geo.max_blocks) {
        errno = EINVAL;
        return NULL;
    }
    return shm_block_at(p, (uint32_t)((offset - p->geo.off_blocks) / p->geo.stride));
}

int magpool_shm_flush(magpool_shm_t *p)
{
    if (!shm_handle_ok(p))
        return -1;
    struct shm_tcache *tc = pthread_getspecific(p->key);
    if (tc && tc->count)
        tcache_give_back(tc, 0, tc->count);
    return 0;
}
