/* SPDX-License-Identifier: MIT */
/*
 * Process slots, death detection and recovery, orphans, statistics.
 *
 * A process registers in a slot (pid, start time, a fresh generation) under
 * the segment mutex; its blocks are stamped with (slot, generation). A slot
 * whose pid no longer exists, is a zombie, or now belongs to another process
 * (the start time, field 22 of /proc/<pid>/stat, differs) is dead. Recovery
 * walks the stamps, not the dead process's caches: every block stamped
 * CACHED by the dead (slot, generation) goes back to the free stack, and
 * the slot is freed. Blocks stamped HELD by it are orphans: its user had
 * them, and only the application knows whether another process still uses
 * them (magpool_shm_reclaim_orphans returns them on request). A block one
 * of its consumers had emptied from a ring but not yet adopted goes back to
 * the free stack, on evidence of that commit (finish_dead_intents;
 * shm_ring.c, "The consumer-kill window").
 *
 * Why the stamps and not the caches: a process can be killed at any
 * instruction, and a per-thread cache mid-push or mid-pop is not a reliable
 * record. The stamp is written once per block move, before the block leaves
 * or after it enters the place the stamp names, so "where a dead process's
 * blocks are" is always answerable from the stamps alone (docs/shm.md,
 * "Crash recovery"). It also means recovery trusts no array a peer wrote
 * except the stamps, whose every value is in bounds by construction.
 *
 * All processes must share a pid namespace (kill(pid, 0) and /proc).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"
#include "shm_internal.h"

bool magpool_test_shm_no_reclaim;

uint64_t shm_proc_start_time(pid_t pid)
{
    return proc_start_time(pid, NULL);
}

static bool slot_dead(const struct magpool_shm *p, uint32_t i)
{
    pid_t pid = atomic_load_relaxed(&p->procs[i].pid);
    uint64_t start = atomic_load_relaxed(&p->procs[i].start_time);
    if (pid <= 0)
        return true;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char state = '?';
    uint64_t now = proc_start_time(pid, &state);
    if (now == 0) /* /proc unreadable: cannot tell, assume alive */
        return false;
    return state == 'Z' || state == 'X' || (start && now != start);
}

int shm_proc_register(struct magpool_shm *p)
{
    if (shm_lock(p) != 0)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        for (uint32_t i = 0; i < p->geo.max_procs; i++) {
            struct shm_proc *s = &p->procs[i];
            if (atomic_load_relaxed(&s->live))
                continue;
            uint32_t gen = (atomic_load_relaxed(&s->gen) + 1) & STAMP_GEN_MASK;
            atomic_store_relaxed(&s->gen, gen);
            atomic_store_relaxed(&s->pid, (int32_t)p->pid);
            atomic_store_relaxed(&s->start_time, shm_proc_start_time(p->pid));
            for (unsigned j = 0; j < SHM_INTENTS; j++) /* a recovered occupant's, resolved */
                atomic_store_relaxed(&s->intents[j].where, 0);
            /* relaxed: `live` is read under the same mutex; readers outside
             * it (stats, orphan hints) only count. Written last, so a holder
             * killed before it leaves the slot free. */
            atomic_store_relaxed(&s->live, 1);
            p->slot = i;
            p->gen = gen;
            p->stamp_cached = stamp_make(STAMP_CACHED, i, gen);
            p->stamp_held = stamp_make(STAMP_HELD, i, gen);
            shm_unlock(p);
            return 0;
        }
        if (shm_recover_locked(p) == 0)
            break;
    }
    shm_unlock(p);
    errno = EUSERS;
    return -1;
}

/* Every block stamped CACHED by (slot, gen) back to the free stack. */
static void reclaim_cached(struct magpool_shm *p, uint32_t stamp_cached)
{
    uint64_t committed = shm_committed(p);
    for (uint64_t i = 0; i < committed; i++)
        if (atomic_load_relaxed(&p->stamps[i]) == stamp_cached)
            shm_store_push_free(p, (uint32_t)i);
}

/*
 * The hand-offs a dead process's consumers committed but did not adopt
 * (shm_ring.c, "The consumer-kill window"): each such block goes back to
 * the free stack. Taken only on evidence that this slot's thread committed
 * -- the intent flipped to COMMITTED by an enqueuer, or the cell still
 * showing EMPTIED_BY(slot, j) -- and only if the stamp is still the s0 the
 * consumer read (CAS). Read order: intent, cell, intent again (acquire
 * each; shm_ring.c explains why a refill between them is seen).
 */
static void finish_dead_intents(struct magpool_shm *p, uint32_t slot)
{
    struct shm_proc *s = &p->procs[slot];
    uint64_t committed = shm_committed(p);
    for (uint32_t j = 0; j < SHM_INTENTS; j++) {
        uint64_t where = atomic_load_acquire(&s->intents[j].where);
        if (!where)
            continue;
        bool evidence = where & INTENT_COMMITTED;
        if (!evidence && (where & INTENT_PENDING)) {
            evidence = shm_ring_emptied_by(p, where, slot, j);
            if (!evidence)
                evidence = atomic_load_acquire(&s->intents[j].where) ==
                           (where ^ INTENT_PENDING ^ INTENT_COMMITTED);
        }
        uint64_t what = atomic_load_relaxed(&s->intents[j].what);
        uint32_t idx = (uint32_t)(what >> 32), s0 = (uint32_t)what;
        /* Bounds and kind checked: the record was written by a peer. CAS
         * relaxed: the block's contents are not read, and the free stack is
         * published by the mutex. */
        if (evidence && idx < committed && stamp_kind(s0) == STAMP_HELD &&
            atomic_compare_exchange_strong_explicit(&p->stamps[idx], &s0,
                                                    stamp_make(STAMP_FREE, 0, 0),
                                                    memory_order_relaxed, memory_order_relaxed))
            shm_store_push_free(p, idx);
        atomic_store_relaxed(&s->intents[j].where, 0);
    }
}

void shm_intents_mark_live(const struct magpool_shm *p, uint8_t *bitmap)
{
    for (uint32_t i = 0; i < p->geo.max_procs; i++) {
        const struct shm_proc *s = &p->procs[i];
        if (!atomic_load_relaxed(&s->live))
            continue;
        for (uint32_t j = 0; j < SHM_INTENTS; j++) {
            /* acquire: pairs with the consumer's clear (release) */
            if (!atomic_load_acquire(&s->intents[j].where))
                continue;
            uint32_t idx = (uint32_t)(atomic_load_relaxed(&s->intents[j].what) >> 32);
            if (idx < p->geo.max_blocks)
                bitmap[idx / 8] |= (uint8_t)(1u << (idx % 8));
        }
    }
}

void shm_proc_unregister(struct magpool_shm *p)
{
    if (shm_lock(p) != 0)
        return;
    reclaim_cached(p, p->stamp_cached); /* caches of threads that never flushed */
    atomic_store_relaxed(&p->procs[p->slot].live, 0);
    shm_unlock(p);
}

int shm_recover_locked(struct magpool_shm *p)
{
    int n = 0;
    for (uint32_t i = 0; i < p->geo.max_procs; i++) {
        struct shm_proc *s = &p->procs[i];
        if (i == p->slot || !atomic_load_relaxed(&s->live) || !slot_dead(p, i))
            continue;
        if (likely(!magpool_test_shm_no_reclaim))
            reclaim_cached(p, stamp_make(STAMP_CACHED, i, atomic_load_relaxed(&s->gen)));
        finish_dead_intents(p, i);
        atomic_store_relaxed(&s->live, 0);
        atomic_fetch_add_relaxed(&p->hdr->procs_recovered, 1);
        n++;
    }
    return n;
}

/* The automatic recovery of an acquire that found no block: at most once
 * per 10 ms for the whole segment (an explicit magpool_shm_recover always
 * runs). */
int shm_recover_auto_locked(struct magpool_shm *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t last = atomic_load_relaxed(&p->hdr->last_auto_recover_ns);
    if (now - last < 10000000u && now >= last)
        return 0;
    atomic_store_relaxed(&p->hdr->last_auto_recover_ns, now);
    return shm_recover_locked(p);
}

bool shm_stamp_owner_live(const struct magpool_shm *p, uint32_t stamp)
{
    const struct shm_proc *s = &p->procs[stamp_slot(stamp)]; /* 6 bits: < max_procs */
    return atomic_load_relaxed(&s->live) && atomic_load_relaxed(&s->gen) == stamp_gen(stamp);
}

int magpool_shm_recover(magpool_shm_t *p)
{
    if (!shm_handle_ok(p) || shm_lock(p) != 0)
        return -1;
    int n = shm_recover_locked(p);
    shm_unlock(p);
    return n;
}

long magpool_shm_reclaim_orphans(magpool_shm_t *p)
{
    if (!shm_handle_ok(p))
        return -1;
    uint8_t *in_ring = calloc((p->geo.max_blocks + 7) / 8, 1);
    if (!in_ring) {
        errno = ENOMEM;
        return -1;
    }
    if (shm_lock(p) != 0) {
        free(in_ring);
        return -1;
    }
    shm_recover_locked(p);
    /* Blocks of a dead producer still in a ring stay: a live consumer will
     * take them. A dead process cannot enqueue, so none appears later.
     * Then those a live consumer has emptied from a cell but not adopted
     * yet (its intent names them): rings first, intents second, so that a
     * commit the ring scan missed has its intent seen (shm_ring.c). */
    shm_ring_mark_members(p, in_ring);
    shm_intents_mark_live(p, in_ring);
    long n = 0;
    uint64_t committed = shm_committed(p);
    for (uint64_t i = 0; i < committed; i++) {
        uint32_t s = atomic_load_relaxed(&p->stamps[i]);
        if (stamp_kind(s) != STAMP_HELD || shm_stamp_owner_live(p, s) ||
            (in_ring[i / 8] & (1u << (i % 8))))
            continue;
        /* CAS, not a store: a live consumer that dequeued the block just
         * before the ring scan adopts it with a CAS on the same stamp
         * (shm_ring.c); exactly one of the two wins. relaxed: the block's
         * contents are not read here, and the free stack is published by
         * the mutex. */
        if (atomic_compare_exchange_strong_explicit(&p->stamps[i], &s,
                                                    stamp_make(STAMP_FREE, 0, 0),
                                                    memory_order_relaxed, memory_order_relaxed)) {
            shm_store_push_free(p, (uint32_t)i);
            n++;
        }
    }
    shm_unlock(p);
    free(in_ring);
    return n;
}

int magpool_shm_stats(magpool_shm_t *p, magpool_shm_stats_t *st, size_t st_size)
{
    if (!shm_handle_ok(p))
        return -1;
    if (!st || st_size < sizeof(magpool_shm_stats_t)) {
        errno = EINVAL;
        return -1;
    }
    magpool_shm_stats_t r = {.block_size = p->geo.block_size, .max_blocks = p->geo.max_blocks};
    r.committed = shm_committed(p);
    for (uint64_t i = 0; i < r.committed; i++) {
        uint32_t s = atomic_load_relaxed(&p->stamps[i]);
        switch (stamp_kind(s)) {
        case STAMP_FREE:
            r.free++;
            break;
        case STAMP_CACHED:
            if (shm_stamp_owner_live(p, s))
                r.cached++;
            else
                r.orphans++; /* a dead process's cache, not recovered yet */
            break;
        case STAMP_HELD:
            if (shm_stamp_owner_live(p, s)) {
                r.held++;
                r.held_here += s == p->stamp_held;
            } else {
                r.orphans++;
            }
            break;
        default:
            break;
        }
    }
    r.in_rings = shm_ring_count(p);
    for (uint32_t i = 0; i < p->geo.max_procs; i++)
        r.procs += atomic_load_relaxed(&p->procs[i].live) != 0;
    r.procs_recovered = atomic_load_relaxed(&p->hdr->procs_recovered);
    r.repairs = atomic_load_relaxed(&p->hdr->repairs);
    r.ring_dropped = atomic_load_relaxed(&p->hdr->ring_dropped);
    memcpy(st, &r, sizeof r);
    return 0;
}
