/* SPDX-License-Identifier: MIT */
/*
 * The central free stack of the shared pool, and growth. Everything here
 * runs under the segment's robust mutex (shm_lock), once per batch of
 * cache_size/2 blocks, not per block.
 *
 * Invariant (the one recovery rests on): a block's stamp is FREE exactly
 * when the block is on this stack, at every point where the mutex is free.
 * Inside a critical section the stack and the stamps may disagree; a holder
 * killed there leaves that to the next locker, which gets EOWNERDEAD and
 * calls shm_store_rebuild: the stack is recomputed from the stamps. This
 * works because stamps change to or from FREE only under the mutex (the
 * lock-free paths move blocks between CACHED and HELD only), so under the
 * mutex the set of FREE stamps is stable.
 *
 * Every index popped from the stack is checked (in range, stamp FREE)
 * before use: a corrupted stack costs a rebuild, never a stray access.
 */
#include <errno.h>
#include <fcntl.h>

#include "shm_internal.h"

unsigned magpool_test_shm_hold_lock_us;

void shm_store_rebuild(struct magpool_shm *p)
{
    uint64_t top = 0, hi = 0;
    /* Highest index first, so that the lowest indices pop first. */
    for (uint64_t i = p->geo.max_blocks; i-- > 0;) {
        uint32_t s = atomic_load_relaxed(&p->stamps[i]); /* under the lock: FREE is stable */
        if (stamp_kind(s) == STAMP_UNCOMMITTED)
            continue;
        if (!hi)
            hi = i + 1;
        if (stamp_kind(s) == STAMP_FREE)
            p->store[top++] = (uint32_t)i;
    }
    atomic_store_relaxed(&p->hdr->top, top);
    atomic_store_relaxed(&p->hdr->committed, hi);
}

void shm_store_push_free(struct magpool_shm *p, uint32_t idx)
{
    uint64_t top = atomic_load_relaxed(&p->hdr->top);
    if (top >= p->geo.max_blocks) { /* only a corrupted stack gets here */
        atomic_store_relaxed(&p->stamps[idx], stamp_make(STAMP_FREE, 0, 0));
        shm_store_rebuild(p);
        return;
    }
    /* Stamp first, then the slot, then top: killed in between, the rebuild
     * finds the block by its FREE stamp. */
    atomic_store_relaxed(&p->stamps[idx], stamp_make(STAMP_FREE, 0, 0));
    p->store[top] = idx;
    atomic_store_relaxed(&p->hdr->top, top + 1);
}

uint32_t shm_store_take(struct magpool_shm *p, uint32_t *out, uint32_t n)
{
    uint64_t top = atomic_load_relaxed(&p->hdr->top);
    if (top > p->geo.max_blocks) {
        shm_store_rebuild(p);
        top = atomic_load_relaxed(&p->hdr->top);
    }
    uint64_t committed = shm_committed(p);
    uint32_t got = 0;
    bool rebuilt = false;
    while (got < n && top > 0) {
        uint32_t idx = p->store[top - 1];
        if (idx >= committed ||
            stamp_kind(atomic_load_relaxed(&p->stamps[idx])) != STAMP_FREE) {
            if (rebuilt) /* a peer keeps corrupting it under our lock: stop */
                break;
            atomic_store_relaxed(&p->hdr->top, top);
            shm_store_rebuild(p);
            rebuilt = true;
            top = atomic_load_relaxed(&p->hdr->top);
            committed = shm_committed(p);
            continue;
        }
        /* CACHED before top moves: a holder killed here leaves a block
         * that is off the stack by its stamp, recovered with its process. */
        atomic_store_relaxed(&p->stamps[idx], p->stamp_cached);
        out[got++] = idx;
        top--;
    }
    if (unlikely(magpool_test_shm_hold_lock_us) && got)
        usleep(magpool_test_shm_hold_lock_us);
    atomic_store_relaxed(&p->hdr->top, top);
    return got;
}

void shm_store_put(struct magpool_shm *p, const uint32_t *idx, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        if (idx[k] >= p->geo.max_blocks ||
            atomic_load_relaxed(&p->stamps[idx[k]]) != p->stamp_cached)
            continue; /* not ours any more (cannot happen unless corrupted) */
        shm_store_push_free(p, idx[k]);
    }
}

int shm_store_grow(struct magpool_shm *p)
{
    uint64_t c = shm_committed(p);
    /* The first commit is initial_blocks (create), or a growth step when
     * the pool was created with none. */
    uint64_t n = c == 0 && p->geo.initial_blocks ? p->geo.initial_blocks : p->geo.grow_blocks;
    if (n > p->geo.max_blocks - c)
        n = p->geo.max_blocks - c;
    if (n == 0) {
        errno = ENOMEM;
        return -1;
    }
    int err = posix_fallocate(p->fd, (off_t)(p->geo.off_blocks + c * p->geo.stride),
                              (off_t)(n * p->geo.stride));
    if (err) {
        errno = err == ENOSPC ? ENOMEM : err;
        return -1;
    }
    /* Stamps in increasing order, then the pushes, then committed: killed
     * anywhere, the rebuild sees a FREE prefix of the new range and sets
     * committed past it. */
    for (uint64_t i = c; i < c + n; i++)
        atomic_store_relaxed(&p->stamps[i], stamp_make(STAMP_FREE, 0, 0));
    uint64_t top = atomic_load_relaxed(&p->hdr->top);
    if (top + n > p->geo.max_blocks) {
        shm_store_rebuild(p);
        return 0;
    }
    for (uint64_t i = c + n; i-- > c;)
        p->store[top++] = (uint32_t)i;
    atomic_store_relaxed(&p->hdr->top, top);
    atomic_store_relaxed(&p->hdr->committed, c + n);
    return 0;
}
