/* SPDX-License-Identifier: MIT */
/*
 * The shared pool's segment layout and private handle (docs/shm.md).
 *
 * Segment (one POSIX shm object, every part at an offset fixed at create):
 *
 *   [header | proc slots | stamps u32[max] | free stack u32[max] | rings | blocks]
 *
 * Nothing in the segment is trusted after attach: the geometry (offsets,
 * sizes, capacity) is validated once and copied into the private handle, and
 * every index read from shared memory afterwards is checked against that
 * private copy before it is used.
 */
#ifndef MAGPOOL_SHM_INTERNAL_H
#define MAGPOOL_SHM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdint.h>

#include "atomic.h"
#include "magpool_shm.h"

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#define SHM_MAGIC UINT64_C(0x6d6167706f6f6c53) /* "magpoolS" */
#define SHM_LINE 64

/*
 * Ownership stamp of a block: kind (2 bits) | process slot (6) | slot
 * generation (24). The generation changes at every registration of a slot,
 * so a stamp of a process that died or left never matches the slot's next
 * occupant.
 */
enum shm_kind { STAMP_UNCOMMITTED = 0, STAMP_FREE = 1, STAMP_CACHED = 2, STAMP_HELD = 3 };
#define STAMP_SLOT_BITS 6
#define STAMP_GEN_BITS 24
#define STAMP_GEN_MASK ((UINT32_C(1) << STAMP_GEN_BITS) - 1)

_Static_assert(MAGPOOL_SHM_MAX_PROCS <= (1 << STAMP_SLOT_BITS),
               "a stamp's slot field must index every process slot");

static inline uint32_t stamp_make(enum shm_kind k, uint32_t slot, uint32_t gen)
{
    return (uint32_t)k | slot << 2 | (gen & STAMP_GEN_MASK) << (2 + STAMP_SLOT_BITS);
}
static inline enum shm_kind stamp_kind(uint32_t s) { return (enum shm_kind)(s & 3); }
static inline uint32_t stamp_slot(uint32_t s) { return (s >> 2) & ((1u << STAMP_SLOT_BITS) - 1); }
static inline uint32_t stamp_gen(uint32_t s) { return s >> (2 + STAMP_SLOT_BITS); }

/*
 * Dequeue intent (shm_ring.c, "The consumer-kill window"): one per thread of
 * a process that dequeues, written before the thread's commit CAS on a ring
 * cell and cleared after it adopted the block, so that recovery can finish
 * the hand-off of a consumer killed in between.
 *
 *   what  = block index (32) | the stamp read before the commit (32)
 *   where = INTENT_PENDING or INTENT_COMMITTED | ring (6) << 32 | position (32)
 *           0: no intent (then `what` means nothing)
 *
 * INTENT_COMMITTED is set only by an enqueuer about to refill the cell that
 * the intent's owner emptied and never cleaned (a consumer killed in the
 * window): the evidence of the commit moves from the cell to the intent
 * before the cell is reused.
 */
#define SHM_INTENTS 64 /* per process: threads 0..62 own one, the rest share the last */
#define INTENT_PENDING (UINT64_C(1) << 62)
#define INTENT_COMMITTED (UINT64_C(1) << 63)
struct shm_intent {
    _Atomic uint64_t what;
    _Atomic uint64_t where;
};

static inline uint64_t intent_where(uint64_t flag, unsigned ring, uint64_t pos)
{
    return flag | (uint64_t)ring << 32 | (uint32_t)pos;
}

/* Process slot. `live` is written last at registration and first at
 * release, under the segment mutex; readers outside it only use it as a hint. */
struct shm_proc {
    _Atomic uint32_t live; /* 0 free, 1 registered */
    _Atomic uint32_t gen;  /* bumped at every registration */
    _Atomic int32_t pid;
    _Atomic uint64_t start_time; /* /proc/<pid>/stat field 22, 0 if unknown */
    struct shm_intent intents[SHM_INTENTS];
};

/* A ring cell's value half: a block index (< 2^26), or, with the top bit
 * set, empty. An empty cell says who emptied it until that consumer has
 * adopted the block: CELL_EMPTIED_BY(slot, intent) after the commit,
 * CELL_EMPTY once the consumer cleaned it (and in a fresh ring). */
#define CELL_EMPTY UINT32_MAX
#define CELL_EMPTY_BIT (UINT32_C(1) << 31)
#define CELL_EMPTIED_BY(slot, j) (CELL_EMPTY_BIT | (uint32_t)(slot) << 6 | (uint32_t)(j))
static inline bool cell_val_empty(uint32_t v) { return v & CELL_EMPTY_BIT; }
_Static_assert(SHM_INTENTS <= 64 && MAGPOOL_SHM_MAX_PROCS <= 64,
               "CELL_EMPTIED_BY has 6 bits for each");

/* Ring: Vyukov-style cells, but a cell is one 64-bit word (lap | value) so
 * that filling or emptying it is a single CAS (shm_ring.c). */
struct shm_ring {
    _Alignas(SHM_LINE) _Atomic uint64_t head;
    _Alignas(SHM_LINE) _Atomic uint64_t tail;
    _Alignas(SHM_LINE) _Atomic uint64_t cells[];
};

/* Immutable after create: the geometry, validated at attach (checksum +
 * recomputation) and then read from the private copy only. */
struct shm_geometry {
    uint64_t magic;
    uint32_t layout, header_size;
    uint64_t block_size, stride, max_blocks, initial_blocks, grow_blocks;
    uint32_t cache_size, rings, ring_size, max_procs;
    uint64_t off_procs, off_stamps, off_store, off_rings, ring_bytes, off_blocks, seg_size;
    uint64_t checksum; /* FNV-1a of everything above */
};

struct shm_header {
    struct shm_geometry geo;
    /* Written last by the creator (release), checked first by attach. */
    _Alignas(SHM_LINE) _Atomic uint32_t ready;
    /* Robust, process-shared: growth, free-stack batches, registration,
     * recovery. The only lock of this layer (docs/design.md lock table). */
    _Alignas(SHM_LINE) pthread_mutex_t lock;
    /* Under `lock`. */
    _Atomic uint64_t committed;  /* blocks [0, committed) have been committed */
    _Atomic uint64_t top;        /* entries on the free stack */
    /* Statistics since create (relaxed: counters). */
    _Atomic uint64_t procs_recovered, repairs, ring_dropped;
    /* Under `lock`: CLOCK_MONOTONIC (system-wide) of the last automatic
     * recovery, so that acquirers spinning at max_blocks do not each hold
     * the lock for 64 liveness checks. */
    _Atomic uint64_t last_auto_recover_ns;
};

/* Per-thread cache of block indices: private memory, one per (thread,
 * handle). Its contents are a hint only: recovery never reads it (the
 * stamps say which blocks a dead process had parked). */
struct shm_tcache {
    struct magpool_shm *pool;
    struct shm_tcache *next; /* the handle's list, under pool->tc_lock */
    uint32_t intent;         /* this thread's dequeue intent; SHM_INTENTS - 1: shared */
    uint32_t count, cap;
    uint32_t idx[];
};

struct magpool_shm {
    struct shm_geometry geo; /* the private, validated copy */
    unsigned char *base;
    struct shm_header *hdr;
    struct shm_proc *procs;
    _Atomic uint32_t *stamps;
    uint32_t *store;
    unsigned char *blocks;
    uint64_t blocks_bytes;   /* max_blocks * stride */
    unsigned stride_shift;   /* log2(stride) if a power of two, else 0 */
    int fd;
    pid_t pid;               /* the process that opened the handle */
    uint32_t slot, gen;
    uint32_t stamp_cached, stamp_held; /* this process's stamps */
    uint64_t id;             /* unique per handle in this process (TLS lookup) */
    pthread_key_t key;
    pthread_mutex_t tc_lock; /* private: the tcache list */
    struct shm_tcache *tcaches;
    uint64_t intents_used;   /* under tc_lock: this process's intents owned by a thread */
    pthread_mutex_t intent_lock; /* private: the shared last intent (threads beyond 63) */
    struct magpool_shm *next_open; /* this process's open handles (shm_segment.c, fork) */
};

/* Test switches (hidden; white-box stress only). Each removes one mechanism
 * so that a must-fail twin can show the test sees what it prevents:
 * ring_relaxed publishes ring entries without release order (TSan must
 * report the race on the block), no_reclaim makes recovery forget a dead
 * process's cached blocks (the kill -9 soak's accounting must fail). */
extern bool magpool_test_shm_ring_relaxed;
extern bool magpool_test_shm_no_reclaim;
/* Not a removed mechanism but a widened window: a refill sleeps this long
 * with the stamps already CACHED and the stack top not yet moved, so that
 * the kill -9 soak kills holders inside the critical section and the next
 * locker must repair (EOWNERDEAD). */
extern unsigned magpool_test_shm_hold_lock_us;
/* no_intent: dequeue writes no intent, so recovery cannot finish the
 * hand-off of a consumer killed after its commit (the window test and the
 * soak must then fail). exit_after_commits: a countdown; the dequeue that
 * takes it from 1 to 0 calls _exit(MAGPOOL_TEST_SHM_WINDOW_EXIT) right after
 * its commit CAS, i.e. a consumer killed inside the window. */
extern bool magpool_test_shm_no_intent;
extern _Atomic unsigned magpool_test_shm_exit_after_commits;
/* exit_before_commit: the dequeue _exits after writing its intent, before
 * its commit CAS (a stale intent: recovery must take nothing on it). */
extern bool magpool_test_shm_exit_before_commit;
#define MAGPOOL_TEST_SHM_WINDOW_EXIT 86

/* shm_segment.c */
int shm_lock(struct magpool_shm *p);
void shm_unlock(struct magpool_shm *p);
bool shm_handle_ok(const struct magpool_shm *p);
uint64_t shm_committed(const struct magpool_shm *p);

/* shm_store.c (all under shm_lock) */
void shm_store_rebuild(struct magpool_shm *p);
uint32_t shm_store_take(struct magpool_shm *p, uint32_t *out, uint32_t n);
void shm_store_put(struct magpool_shm *p, const uint32_t *idx, uint32_t n);
void shm_store_push_free(struct magpool_shm *p, uint32_t idx);
int shm_store_grow(struct magpool_shm *p);

/* shm_procs.c */
int shm_proc_register(struct magpool_shm *p);
void shm_proc_unregister(struct magpool_shm *p);
int shm_recover_locked(struct magpool_shm *p);
int shm_recover_auto_locked(struct magpool_shm *p);
bool shm_stamp_owner_live(const struct magpool_shm *p, uint32_t stamp);
uint64_t shm_proc_start_time(pid_t pid);

/* shm_cache.c */
struct shm_tcache *shm_tcache_get(struct magpool_shm *p);
void shm_tcache_forget_tls(void);
void shm_tcache_flush_all(struct magpool_shm *p);
void shm_tcache_destroy_key(struct magpool_shm *p);
int shm_tcache_key_init(struct magpool_shm *p);

/* shm_ring.c */
struct shm_ring *shm_ring_at(const struct magpool_shm *p, unsigned r);
void shm_ring_init(struct shm_ring *r, uint32_t size);
void shm_ring_mark_members(const struct magpool_shm *p, uint8_t *bitmap);
uint64_t shm_ring_count(const struct magpool_shm *p);
bool shm_ring_emptied_by(const struct magpool_shm *p, uint64_t where, uint32_t slot, uint32_t j);

/* shm_procs.c: the intents of live slots (reclaim must not take a block a
 * live consumer is adopting). */
void shm_intents_mark_live(const struct magpool_shm *p, uint8_t *bitmap);

/* Block index of a pointer, or UINT32_MAX if it is not a block start. The
 * release fast path runs this: a shift when the stride is a power of two
 * (64 B, 1 KiB, ...), a division only for other sizes. */
static inline uint32_t shm_index_of(const struct magpool_shm *p, const void *block)
{
    uintptr_t off = (uintptr_t)block - (uintptr_t)p->blocks; /* wraps below: caught next */
    if (unlikely(off >= p->blocks_bytes))
        return UINT32_MAX;
    if (likely(p->stride_shift)) {
        if (unlikely(off & (p->geo.stride - 1)))
            return UINT32_MAX;
        return (uint32_t)(off >> p->stride_shift);
    }
    if (off % p->geo.stride)
        return UINT32_MAX;
    return (uint32_t)(off / p->geo.stride);
}

static inline void *shm_block_at(const struct magpool_shm *p, uint32_t idx)
{
    if (likely(p->stride_shift))
        return p->blocks + ((uint64_t)idx << p->stride_shift);
    return p->blocks + (uint64_t)idx * p->geo.stride;
}

#endif
