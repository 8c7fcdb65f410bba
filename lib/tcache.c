/* SPDX-License-Identifier: MIT */
/*
 * Thread caches: their life cycle (the operations on them are in cache.c).
 *
 * A thread's cache of a pool is made on its first acquire or release of the
 * pool (cache_attach), with two empty magazines and a reader record in the
 * pool's epoch domain; it is given back to the pool at thread exit
 * (cache_detach, from registry.c's key destructor), at destroy
 * (cache_free_all), or by the child of a fork for every thread that did not
 * survive it (cache_fork_child).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool magpool_test_lock_in_read_section;

/* An empty magazine for a thread cache: from the depot's empty stack, read
 * inside a section of `reader` (trim may free magazines), else freshly
 * allocated — outside the section, since allocation takes the depot's
 * allocation lock and no lock may be taken inside a read section (fork's
 * prepare handler holds that lock while it waits for other pools' growth
 * locks, whose holders may be waiting for a grace period). NULL + ENOMEM. */
struct mag *cache_get_empty(magpool_t *p, ck_epoch_record_t *reader)
{
    epoch_read_lock(&p->epoch, reader);
    struct mag *m = depot_pop(&p->depot, &p->depot.empty);
    if (unlikely(magpool_test_lock_in_read_section)) {
        /* The broken rule, for the must-fail tests (stress_lockgraph): the
         * growth lock's holder may be waiting for this grace period. */
        mutex_lock(&p->grow_lock);
        pthread_mutex_unlock(&p->grow_lock);
    }
    epoch_read_unlock(&p->epoch, reader);
    return m ? m : depot_mag_alloc(&p->depot);
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
    /* Registered under reg_lock, which fork's prepare handler holds: a child
     * never inherits a half-registered reader. */
    mutex_lock(&p->reg_lock);
    tc->reader = epoch_reader_get(&p->epoch);
    pthread_mutex_unlock(&p->reg_lock);
    if (tc->reader == NULL)
        goto fail;
    tc->loaded = cache_get_empty(p, tc->reader);
    tc->previous = tc->loaded ? cache_get_empty(p, tc->reader) : NULL;
    if (tc->previous == NULL) {
        if (tc->loaded)
            depot_push(&p->depot, &p->depot.empty, tc->loaded);
        mutex_lock(&p->reg_lock);
        epoch_reader_put(tc->reader);
        pthread_mutex_unlock(&p->reg_lock);
        goto fail;
    }
    mutex_lock(&p->reg_lock);
    tc->next = p->tcaches;
    if (p->tcaches)
        p->tcaches->prev = tc;
    p->tcaches = tc;
    p->nthreads++;
    pthread_mutex_unlock(&p->reg_lock);
    return tc;
fail:
    free(tc);
    errno = ENOMEM;
    return NULL;
}

/* Forget tc (growth lock held). give_back: return both magazines, whatever
 * they hold, to the depot; else (a fork child that could not stop tc's
 * owner) its rounds are lost rather than risk handing a block out twice. */
static void detach_locked(magpool_t *p, struct tcache *tc, bool give_back)
{
    if (give_back) {
        struct mag *m[2] = { tc->loaded, tc->previous };
        uint32_t r[2] = { tc->lrounds, tc->prounds };
        for (int i = 0; i < 2; i++) {
            m[i]->count = r[i];
            depot_push(&p->depot, r[i] ? &p->depot.full : &p->depot.empty, m[i]);
            if (r[i])
                counter_inc(&tc->depot_puts); /* the owner is gone or is us */
        }
    }
    mutex_lock(&p->reg_lock);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        p->tcaches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    p->nthreads--;
    epoch_reader_put(tc->reader);
    free(tc->handle_route); /* handle.c; NULL for most */
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
    mutex_lock(&p->grow_lock); /* no stealer may be inside tc */
    detach_locked(p, tc, true);
    pthread_mutex_unlock(&p->grow_lock);
}

void cache_free_all(magpool_t *p)
{
    struct tcache *tc = p->tcaches;
    while (tc) {
        struct tcache *next = tc->next;
        free(tc->handle_route);
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
    mutex_lock(&p->grow_lock);
    tc->trim_seen = pool_clock_ns(); /* flushed by an active thread: fresh */
    cache_flush_locked(p, tc, tc->trim_seen, NULL);
    pthread_mutex_unlock(&p->grow_lock);
}

/* In the child after fork(): every thread but the caller is gone. Give their
 * caches' blocks back if the prepare handler stopped their owners
 * (quiesced), else forget them; then make sure no reader of the dead threads
 * can hold up a grace period. Locks are free again at this point. */
void cache_fork_child(magpool_t *p, struct tcache *mine, bool quiesced)
{
    mutex_lock(&p->grow_lock);
    struct tcache *tc = p->tcaches;
    while (tc) {
        struct tcache *next = tc->next;
        if (tc != mine)
            detach_locked(p, tc, quiesced);
        tc = next;
    }
    epoch_fork_child(&p->epoch, mine ? mine->reader : NULL);
    pthread_mutex_unlock(&p->grow_lock);
}
