/* SPDX-License-Identifier: MIT */
/*
 * The baseline: the design document's pool, done in C. One mutex guards one
 * intrusive free list (the link lives in the idle block itself), carving from
 * the newest slab when the list is empty, growing by grow_factor when the slab
 * is used up. Same API, same slabs, same statistics and checks as the
 * lock-free backend, so every test and benchmark can run on both.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static int mp_grow_locked(magpool_t *p)
{
    char *first;
    size_t n;
    if (pool_map_slab(p, &first, &n) != 0)
        return -1;
    p->mp.bump = first;
    p->mp.bump_end = first + n * p->slabs.stride;
    return 0;
}

int mutex_pool_init(magpool_t *p)
{
    struct mutex_pool *mp = &p->mp;
    if (pthread_mutex_init(&mp->lock, NULL) != 0)
        return -1;
    if (p->initial_blocks == 0)
        return 0;
    mutex_lock(&mp->lock);
    int rc = mp_grow_locked(p);
    pthread_mutex_unlock(&mp->lock);
    return rc;
}

void mutex_pool_destroy(magpool_t *p)
{
    pthread_mutex_destroy(&p->mp.lock);
}

static void *mp_take_locked(magpool_t *p, bool *grew, void **bad)
{
    struct mutex_pool *mp = &p->mp;
    for (;;) {
        if (mp->free) {
            void *b = mp->free;
            void *next = *(void **)b;
            if (unlikely(bad != NULL) && next && !diag_link_ok(p, next)) {
                /* written after release: cut the list, lose its tail
                 * rather than hand out whatever the link points at */
                *bad = b;
                next = NULL;
                mp->nfree = 1;
            }
            mp->free = next;
            mp->nfree--;
            return b;
        }
        if (mp->bump < mp->bump_end) {
            void *b = mp->bump;
            mp->bump += p->slabs.stride;
            return b;
        }
        if (mp_grow_locked(p) != 0)
            return NULL;
        *grew = true;
    }
}

void *mutex_pool_take(magpool_t *p, void **bad)
{
    struct mutex_pool *mp = &p->mp;
    bool grew = false;
    mutex_lock(&mp->lock);
    void *b = mp_take_locked(p, &grew, bad);
    if (b) {
        counter_inc(&mp->acquires);
        if (grew)
            counter_inc(&p->misses);
    } else {
        int e = errno; /* ENOMEM, or a carve hook's own error */
        counter_inc(&p->failed);
        errno = e;
    }
    pthread_mutex_unlock(&mp->lock);
    return b;
}

void *mutex_pool_acquire(magpool_t *p)
{
    return mutex_pool_take(p, NULL);
}

/* Checks (CHECKED) happen before, in diag_release. */
void mutex_pool_release(magpool_t *p, void *block)
{
    struct mutex_pool *mp = &p->mp;
    mutex_lock(&mp->lock);
    *(void **)block = mp->free;
    mp->free = block;
    mp->nfree++;
    counter_inc(&mp->releases);
    pthread_mutex_unlock(&mp->lock);
}

/* The baseline keeps no per-block ages (its free list links live in the
 * blocks, so idle pages cannot be madvised either): trim with an age
 * reclaims only when the whole pool has seen no operation for that long,
 * as observed by successive trims; then it unmaps every fully idle slab. */
size_t mutex_pool_trim(magpool_t *p, uint64_t max_idle_ns)
{
    struct mutex_pool *mp = &p->mp;
    size_t freed = 0;
    mutex_lock(&mp->lock);
    if (max_idle_ns) {
        uint64_t now = pool_clock_ns();
        uint64_t ops = atomic_load_relaxed(&mp->acquires) + atomic_load_relaxed(&mp->releases);
        if (ops != p->trim_ops || p->trim_seen == 0) {
            p->trim_ops = ops;
            p->trim_seen = now;
        }
        if (now - p->trim_seen < max_idle_ns) {
            pthread_mutex_unlock(&mp->lock);
            return 0;
        }
    }
    size_t stride = p->slabs.stride;
    size_t uncarved = (size_t)(mp->bump_end - mp->bump) / stride;
    size_t n = mp->nfree + uncarved;
    void **idle = malloc((n ? n : 1) * sizeof *idle);
    if (idle != NULL) {
        size_t i = 0;
        for (void *b = mp->free; b; b = *(void **)b)
            idle[i++] = b;
        for (char *c = mp->bump; c < mp->bump_end; c += stride)
            idle[i++] = c;
        size_t kept, resident;
        freed = slab_reclaim(&p->slabs, idle, n, &kept, &resident, NULL);
        counter_add(&p->bytes_returned, resident);
        mp->free = NULL;
        for (size_t k = kept; k-- > 0;) {
            *(void **)idle[k] = mp->free;
            mp->free = idle[k];
        }
        mp->nfree = kept;
        mp->bump = mp->bump_end = NULL;
        free(idle);
        if (freed)
            counter_inc(&p->trims);
    }
    pthread_mutex_unlock(&mp->lock);
    return freed;
}

void mutex_pool_stats(magpool_t *p, magpool_stats_t *out)
{
    mutex_lock(&p->mp.lock);
    out->acquires = atomic_load_relaxed(&p->mp.acquires);
    out->releases = atomic_load_relaxed(&p->mp.releases);
    pthread_mutex_unlock(&p->mp.lock);
}
