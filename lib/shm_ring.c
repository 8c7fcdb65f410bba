/* SPDX-License-Identifier: MIT */
/*
 * Rings of blocks in the segment: bounded lock-free MPMC FIFOs for handing
 * blocks from one process to another (DPDK's rte_ring plays this part in
 * rte_mempool's multi-process model).
 *
 * Why not rte_ring's or ck_ring's algorithm: both let a producer reserve a
 * range (CAS on the producer head), write it, and then wait until earlier
 * producers have published before moving the tail. A producer killed
 * between the reservation and the publication stops every later producer
 * forever. Here each cell is one 64-bit word, lap (32 bits) | value (32),
 * and every step is a single CAS that any other process can complete:
 *
 *   enqueue at t:  cell {t, EMPTY} -> {t, block}   (the commit), then tail t -> t+1
 *   dequeue at h:  cell {h, block} -> {h+size, EMPTY} (the commit), then head h -> h+1
 *
 * A process killed after a commit leaves the index behind; the next
 * operation sees the cell already filled (or emptied) and moves the index
 * itself. Nothing waits for anyone: lock-free, and no state a death can
 * freeze. The lap is the 32-bit truncation of the position, so a stalled
 * thread is fooled only if exactly 2^32 operations passed on one ring while
 * it slept between its load and its CAS (the same argument as depot.c's tag).
 *
 * Ownership: a block in a ring keeps its producer's HELD stamp. A dequeuer
 * reads the stamp before its commit and adopts the block afterwards with a
 * CAS from exactly that value to HELD(itself); if the stamp changed (the
 * producer died and its orphans were reclaimed, possibly handed out again)
 * the CAS fails and the entry is dropped, not handed out twice. Indices read
 * from cells are bounds-checked before any use; a corrupted cell is dropped.
 *
 * The consumer-kill window. A consumer killed between its commit and its
 * adoption would leave the block stamped HELD by a producer that gave it
 * away. So each dequeuing thread has an intent record in its process slot
 * (struct shm_intent): before the commit it writes {block, s0} and
 * {PENDING, ring, position}; its commit writes not a plain EMPTY but
 * EMPTIED_BY(slot, intent) into the cell; after adopting it cleans the cell
 * (CAS back to EMPTY, which fails harmlessly if the cell was refilled) and
 * clears the intent. Recovery of a dead process (shm_procs.c) takes the
 * block of an intent -- CAS(stamp, s0 -> FREE) -- only on evidence that
 * this very thread committed:
 *
 *   - the cell at the intent's position still reads {position + size,
 *     EMPTIED_BY(slot, intent)}: only that thread's commit writes this, and
 *     only at that position; or
 *   - the intent reads COMMITTED: an enqueuer about to refill a cell that
 *     still shows EMPTIED_BY(slot, intent) (never cleaned: the consumer is
 *     slow or dead) first flips that intent from PENDING to COMMITTED if it
 *     names this position, so the evidence is never lost with the cell.
 *
 * Why evidence and not "the block is in no ring cell and its stamp is still
 * s0" (the first design considered): an intent whose commit failed or never
 * happened names a block that another consumer may have taken, adopted and
 * passed back to the producer, whose stamp is then s0 again (a producer's
 * HELD stamp recurs every time it holds a block) -- recovery would free a
 * block the producer holds. With evidence, after the commit only the dead
 * thread could have adopted the block, so the stamp cannot have left s0 and
 * come back. (A block enqueued twice, or released while in a ring, is
 * misuse this layer does not detect: enqueueing leaves the stamp as it is,
 * so two entries of one block can both be adopted, one by a consumer that
 * read the stamp after the other adopted, and then the block has two
 * owners (docs/shm.md, "Limits").)
 *
 * Ordering (why recovery sees the evidence). The intent is written with
 * relaxed stores before the commit CAS (acq_rel); every later write of a
 * cell is an RMW, so all of them are in the commit's release sequence and
 * an acquire load of the cell by an enqueuer or by recovery sees the intent.
 * Recovery reads the intent, then the cell (acquire), then the intent again:
 * if the cell was refilled meanwhile, the refiller's flip precedes its fill
 * (release), so the second read sees COMMITTED. The consumer's clear is a
 * release store: recovery that reads it cleared also sees the adoption.
 *
 * Killed at each point: before the commit, the block is still in the cell
 * (or a live consumer took it: no evidence names the dead one); after the
 * commit and before adoption, evidence + stamp s0: the block goes back to
 * the free stack; after the adoption, HELD(dead consumer): an orphan, as
 * any block a dead process held. The test switch no_intent skips the
 * intent; test_shm and stress_shm show the window is lost without it.
 */
#include <errno.h>

#include "shm_internal.h"

bool magpool_test_shm_ring_relaxed;
bool magpool_test_shm_no_intent;
_Atomic unsigned magpool_test_shm_exit_after_commits;
bool magpool_test_shm_exit_before_commit;

#define RING_SPIN_LIMIT (1u << 20) /* only a peer corrupting the ring gets here */

static inline uint64_t cell_make(uint32_t lap, uint32_t value)
{
    return (uint64_t)lap << 32 | value;
}

struct shm_ring *shm_ring_at(const struct magpool_shm *p, unsigned r)
{
    return (struct shm_ring *)(p->base + p->geo.off_rings + r * p->geo.ring_bytes);
}

void shm_ring_init(struct shm_ring *r, uint32_t size)
{
    atomic_store_relaxed(&r->head, 0);
    atomic_store_relaxed(&r->tail, 0);
    for (uint32_t i = 0; i < size; i++)
        atomic_store_relaxed(&r->cells[i], cell_make(i, CELL_EMPTY));
}

static struct shm_ring *ring_checked(magpool_shm_t *p, unsigned r)
{
    if (!shm_handle_ok(p))
        return NULL;
    if (r >= p->geo.rings) {
        errno = EINVAL;
        return NULL;
    }
    return shm_ring_at(p, r);
}

/* Before refilling a cell that still says EMPTIED_BY(slot, j): if that
 * consumer's intent names this position and is PENDING, mark it COMMITTED
 * (see the file comment). relaxed: the fill CAS that follows is a release,
 * and recovery reads the cell with acquire before it reads the intent. */
static void intent_flip(magpool_shm_t *p, unsigned r, uint32_t pos, uint32_t val)
{
    uint32_t slot = (val >> 6) & 63, j = val & 63;
    if (slot >= p->geo.max_procs) /* a corrupted cell: nothing to preserve */
        return;
    _Atomic uint64_t *where = &p->procs[slot].intents[j].where;
    uint64_t want = intent_where(INTENT_PENDING, r, pos);
    atomic_compare_exchange_strong_explicit(where, &want, intent_where(INTENT_COMMITTED, r, pos),
                                            memory_order_relaxed, memory_order_relaxed);
}

/* Put one block the caller holds into ring r (checked by the caller). */
static int ring_enqueue_one(magpool_shm_t *p, struct shm_ring *ring, unsigned r, void *block)
{
    uint32_t idx = shm_index_of(p, block);
    if (idx == UINT32_MAX || idx >= shm_committed(p) ||
        stamp_kind(atomic_load_relaxed(&p->stamps[idx])) != STAMP_HELD) {
        errno = EINVAL;
        return -1;
    }
    uint64_t mask = p->geo.ring_size - 1; /* private geometry: always in bounds */
    for (unsigned spin = 0; spin < RING_SPIN_LIMIT; spin++) {
        uint64_t t = atomic_load_relaxed(&ring->tail);
        _Atomic uint64_t *cell = &ring->cells[t & mask];
        /* acquire: pairs with the dequeuer's acq_rel CAS that emptied the
         * cell, so its reads of the previous block precede our reuse. */
        uint64_t c = atomic_load_acquire(cell);
        uint32_t lap = (uint32_t)(c >> 32), val = (uint32_t)c;
        int32_t ahead = (int32_t)(lap - (uint32_t)t);
        if (ahead == 0 && cell_val_empty(val)) {
            if (unlikely(val != CELL_EMPTY)) /* its consumer has not cleaned it */
                intent_flip(p, r, (uint32_t)(t - p->geo.ring_size), val);
            /* release: publishes the block's contents to the dequeuer's
             * acquire load of this cell. */
            memory_order mo = unlikely(magpool_test_shm_ring_relaxed) ? memory_order_relaxed
                                                                       : memory_order_release;
            if (atomic_compare_exchange_strong_explicit(cell, &c, cell_make(lap, idx), mo,
                                                        memory_order_relaxed)) {
                /* relaxed: the tail is a hint; the cells carry the data. */
                atomic_compare_exchange_strong_explicit(&ring->tail, &t, t + 1,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed);
                return 0;
            }
        } else if (ahead < 0) {
            errno = EAGAIN; /* the cell still holds the previous lap: full */
            return -1;
        } else {
            /* Filled (or filled and emptied) by someone who has not moved
             * the tail yet, or died before: move it for them. */
            atomic_compare_exchange_strong_explicit(&ring->tail, &t, t + 1, memory_order_relaxed,
                                                    memory_order_relaxed);
        }
    }
    errno = EAGAIN;
    return -1;
}

int magpool_shm_ring_enqueue(magpool_shm_t *p, unsigned r, void *block)
{
    struct shm_ring *ring = ring_checked(p, r);
    return ring ? ring_enqueue_one(p, ring, r, block) : -1;
}

/* The bursts' shared checks: 0 with errno for bad input (docs in
 * magpool_shm.h), else the ring. */
static struct shm_ring *burst_checked(magpool_shm_t *p, unsigned r, const void *blocks,
                                      unsigned n)
{
    struct shm_ring *ring = ring_checked(p, r);
    if (ring && (!blocks || n > MAGPOOL_SHM_MAX_RING_SIZE)) {
        errno = EINVAL;
        return NULL;
    }
    return ring;
}

unsigned magpool_shm_ring_enqueue_burst(magpool_shm_t *p, unsigned r, void *const *blocks,
                                        unsigned n)
{
    if (n == 0)
        return 0;
    struct shm_ring *ring = burst_checked(p, r, blocks, n);
    if (!ring)
        return 0;
    unsigned k = 0;
    while (k < n && ring_enqueue_one(p, ring, r, blocks[k]) == 0)
        k++;
    return k;
}

/* Adopt the block at idx whose stamp was s0 before we emptied its cell. */
static bool ring_adopt(magpool_shm_t *p, uint32_t idx, uint32_t s0)
{
    if (stamp_kind(s0) != STAMP_HELD)
        return false;
    /* acq_rel: one CAS decides between us and a concurrent orphan reclaim
     * (shm_procs.c). It does not make a duplicated entry safe: a second
     * consumer that read the stamp after the first adopted sees its own
     * expected value and wins too (a block enqueued twice is misuse). */
    return atomic_compare_exchange_strong_explicit(&p->stamps[idx], &s0, p->stamp_held,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

/* Test hook: a consumer killed inside the window, right after its commit. */
static void window_hook(void)
{
    unsigned n = atomic_load_relaxed(&magpool_test_shm_exit_after_commits);
    while (n && !atomic_compare_exchange_weak_explicit(&magpool_test_shm_exit_after_commits, &n,
                                                       n - 1, memory_order_relaxed,
                                                       memory_order_relaxed))
        ;
    if (n == 1)
        _exit(MAGPOOL_TEST_SHM_WINDOW_EXIT);
}

/* One dequeue from ring r with this thread's intent j (file comment). */
static void *ring_dequeue_one(magpool_shm_t *p, struct shm_ring *ring, unsigned r, uint32_t j)
{
    struct shm_intent *in = &p->procs[p->slot].intents[j];
    uint64_t mask = p->geo.ring_size - 1;
    uint32_t size = p->geo.ring_size;
    for (unsigned spin = 0; spin < RING_SPIN_LIMIT; spin++) {
        uint64_t h = atomic_load_relaxed(&ring->head);
        _Atomic uint64_t *cell = &ring->cells[h & mask];
        /* acquire: pairs with the enqueuer's release CAS (block contents). */
        uint64_t c = unlikely(magpool_test_shm_ring_relaxed) ? atomic_load_relaxed(cell)
                                                             : atomic_load_acquire(cell);
        uint32_t lap = (uint32_t)(c >> 32), val = (uint32_t)c;
        int32_t ahead = (int32_t)(lap - (uint32_t)h);
        if (ahead == 0 && cell_val_empty(val))
            break; /* empty */
        if (ahead > 0) { /* emptied by someone who has not moved the head */
            atomic_compare_exchange_strong_explicit(&ring->head, &h, h + 1, memory_order_relaxed,
                                                    memory_order_relaxed);
            continue;
        }
        if (ahead < 0)
            break; /* an older lap at the head: only a corrupted ring */
        bool valid = val < shm_committed(p);
        uint32_t s0 = valid ? atomic_load_acquire(&p->stamps[val]) : 0;
        valid = valid && stamp_kind(s0) == STAMP_HELD;
        uint32_t emptied = valid ? CELL_EMPTIED_BY(p->slot, j) : CELL_EMPTY;
        if (valid && likely(!magpool_test_shm_no_intent)) {
            /* relaxed: published by the commit CAS below (file comment). */
            atomic_store_relaxed(&in->what, (uint64_t)val << 32 | s0);
            atomic_store_relaxed(&in->where, intent_where(INTENT_PENDING, r, h));
            if (unlikely(magpool_test_shm_exit_before_commit))
                _exit(MAGPOOL_TEST_SHM_WINDOW_EXIT);
        }
        /* acq_rel: acquire for the block's contents (with the load above),
         * release so that our earlier reads of the cell's previous block
         * precede the next enqueuer's reuse (its acquire load), and so that
         * the intent is visible to whoever reads this cell later. */
        memory_order mo = unlikely(magpool_test_shm_ring_relaxed) ? memory_order_relaxed
                                                                   : memory_order_acq_rel;
        uint64_t done = cell_make((uint32_t)(h + size), emptied);
        uint64_t cleaned = cell_make((uint32_t)(h + size), CELL_EMPTY);
        if (!atomic_compare_exchange_strong_explicit(cell, &c, done, mo, memory_order_relaxed))
            continue; /* the intent is stale: no evidence will ever name it */
        window_hook();
        /* (a failed CAS overwrites h: nothing below may use it) */
        atomic_compare_exchange_strong_explicit(&ring->head, &h, h + 1, memory_order_relaxed,
                                                memory_order_relaxed);
        if (!valid) {
            atomic_fetch_add_relaxed(&p->hdr->ring_dropped, 1);
            continue;
        }
        bool mine = ring_adopt(p, val, s0);
        /* relaxed: an RMW, so it stays in the commit's release sequence;
         * fails harmlessly when an enqueuer has refilled the cell. */
        atomic_compare_exchange_strong_explicit(cell, &done, cleaned, memory_order_relaxed,
                                                memory_order_relaxed);
        /* release: recovery that reads the intent cleared also sees our
         * adoption (its stamp CAS then fails). */
        atomic_store_release(&in->where, 0);
        if (mine)
            return shm_block_at(p, val);
        atomic_fetch_add_relaxed(&p->hdr->ring_dropped, 1);
    }
    atomic_store_release(&in->where, 0); /* a stale intent from a lost commit race */
    errno = EAGAIN;
    return NULL;
}

/* Up to n blocks from ring r into out[], with this thread's intent. */
static unsigned ring_dequeue_n(magpool_shm_t *p, struct shm_ring *ring, unsigned r, void **out,
                               unsigned n)
{
    struct shm_tcache *tc = shm_tcache_get(p);
    if (!tc)
        return 0;
    bool shared = unlikely(tc->intent == SHM_INTENTS - 1);
    if (shared)
        pthread_mutex_lock(&p->intent_lock); /* beyond 63 threads: the shared intent */
    unsigned k = 0;
    while (k < n && (out[k] = ring_dequeue_one(p, ring, r, tc->intent)) != NULL)
        k++;
    if (shared)
        pthread_mutex_unlock(&p->intent_lock);
    return k;
}

void *magpool_shm_ring_dequeue(magpool_shm_t *p, unsigned r)
{
    struct shm_ring *ring = ring_checked(p, r);
    void *b = NULL;
    if (ring)
        ring_dequeue_n(p, ring, r, &b, 1);
    return b;
}

unsigned magpool_shm_ring_dequeue_burst(magpool_shm_t *p, unsigned r, void **blocks, unsigned n)
{
    if (n == 0)
        return 0;
    struct shm_ring *ring = burst_checked(p, r, blocks, n);
    return ring ? ring_dequeue_n(p, ring, r, blocks, n) : 0;
}

/* Does the cell at the intent's position still show that (slot, j)
 * emptied it there? (shm_procs.c, recovery) acquire: see the file comment. */
bool shm_ring_emptied_by(const struct magpool_shm *p, uint64_t where, uint32_t slot, uint32_t j)
{
    unsigned r = (unsigned)(where >> 32) & 63;
    uint32_t pos = (uint32_t)where;
    if (r >= p->geo.rings)
        return false;
    const struct shm_ring *ring = shm_ring_at(p, r);
    uint64_t c = atomic_load_acquire(&ring->cells[pos & (p->geo.ring_size - 1)]);
    return c == cell_make(pos + p->geo.ring_size, CELL_EMPTIED_BY(slot, j));
}

void shm_ring_mark_members(const struct magpool_shm *p, uint8_t *bitmap)
{
    for (unsigned r = 0; r < p->geo.rings; r++) {
        struct shm_ring *ring = shm_ring_at(p, r);
        for (uint32_t i = 0; i < p->geo.ring_size; i++) {
            /* acquire: a consumer that emptied a cell before this load has
             * its intent seen by shm_intents_mark_live, which runs after. */
            uint32_t val = (uint32_t)atomic_load_acquire(&ring->cells[i]);
            if (val < p->geo.max_blocks)
                bitmap[val / 8] |= (uint8_t)(1u << (val % 8));
        }
    }
}

uint64_t shm_ring_count(const struct magpool_shm *p)
{
    uint64_t n = 0;
    for (unsigned r = 0; r < p->geo.rings; r++) {
        struct shm_ring *ring = shm_ring_at(p, r);
        for (uint32_t i = 0; i < p->geo.ring_size; i++)
            n += !cell_val_empty((uint32_t)atomic_load_relaxed(&ring->cells[i]));
    }
    return n;
}
