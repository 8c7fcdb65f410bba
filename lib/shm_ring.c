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
 * The one unrecovered window: a consumer killed between its commit and its
 * adoption leaves the block stamped HELD by the producer; it is not lost
 * (the producer's stamp names it, and it becomes an orphan when the
 * producer goes), but the producer's live count includes it (docs/shm.md).
 */
#include <errno.h>

#include "shm_internal.h"

bool magpool_test_shm_ring_relaxed;

#define CELL_EMPTY UINT32_MAX
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

int magpool_shm_ring_enqueue(magpool_shm_t *p, unsigned r, void *block)
{
    struct shm_ring *ring = ring_checked(p, r);
    if (!ring)
        return -1;
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
        if (ahead == 0 && val == CELL_EMPTY) {
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

/* Adopt the block at idx whose stamp was s0 before we emptied its cell. */
static bool ring_adopt(magpool_shm_t *p, uint32_t idx, uint32_t s0)
{
    if (stamp_kind(s0) != STAMP_HELD)
        return false;
    /* acq_rel: one CAS decides between us and a concurrent orphan reclaim
     * (shm_procs.c) or a second consumer of a duplicated entry. */
    return atomic_compare_exchange_strong_explicit(&p->stamps[idx], &s0, p->stamp_held,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

void *magpool_shm_ring_dequeue(magpool_shm_t *p, unsigned r)
{
    struct shm_ring *ring = ring_checked(p, r);
    if (!ring)
        return NULL;
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
        if (ahead == 0 && val == CELL_EMPTY)
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
        /* acq_rel: acquire for the block's contents (with the load above),
         * release so that our earlier reads of the cell's previous block
         * precede the next enqueuer's reuse (its acquire load). */
        memory_order mo = unlikely(magpool_test_shm_ring_relaxed) ? memory_order_relaxed
                                                                   : memory_order_acq_rel;
        if (!atomic_compare_exchange_strong_explicit(cell, &c, cell_make((uint32_t)(h + size),
                                                                         CELL_EMPTY),
                                                     mo, memory_order_relaxed))
            continue;
        atomic_compare_exchange_strong_explicit(&ring->head, &h, h + 1, memory_order_relaxed,
                                                memory_order_relaxed);
        if (valid && ring_adopt(p, val, s0))
            return shm_block_at(p, val);
        atomic_fetch_add_relaxed(&p->hdr->ring_dropped, 1);
    }
    errno = EAGAIN;
    return NULL;
}

void shm_ring_mark_members(const struct magpool_shm *p, uint8_t *bitmap)
{
    for (unsigned r = 0; r < p->geo.rings; r++) {
        struct shm_ring *ring = shm_ring_at(p, r);
        for (uint32_t i = 0; i < p->geo.ring_size; i++) {
            uint32_t val = (uint32_t)atomic_load_relaxed(&ring->cells[i]);
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
            n += (uint32_t)atomic_load_relaxed(&ring->cells[i]) != CELL_EMPTY;
    }
    return n;
}
