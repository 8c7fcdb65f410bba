/* SPDX-License-Identifier: MIT */
/**
 * @file magpool_shm.h
 * Cross-process shared pool: fixed-size blocks in a named POSIX shared
 * memory segment, acquired and released by several processes, handed from
 * one process to another as offsets, and safe when a process dies (kill -9
 * included). A separate layer beside magpool.h: its own handle type and its
 * own magpool_shm_* functions; the local pool's API is unchanged.
 *
 * Model (docs/shm.md has the design, the invariants and the recovery proof):
 *   - One process creates the segment by name (magpool_shm_create), others
 *     attach by name (magpool_shm_attach). Each maps it at its own address;
 *     everything inside the segment is addressed by index/offset.
 *   - Each block has an ownership stamp in the segment: free, parked in the
 *     cache of process slot P, or held by the user of process slot P. The
 *     stamps are the ground truth that recovery works from.
 *   - Each thread keeps a private cache of block indices (fast path: no lock,
 *     no atomic read-modify-write for blocks of its own process); batches
 *     move between caches and a central free stack under a robust
 *     process-shared mutex.
 *   - A process found dead (its pid gone, or reused: /proc start time) loses
 *     nothing: the blocks stamped as parked in its caches go back to the free
 *     stack (magpool_shm_recover, also run automatically, at most every
 *     10 ms, before an acquire fails for exhaustion); the blocks its user
 *     held are "orphans", counted
 *     by magpool_shm_stats and returned by magpool_shm_reclaim_orphans.
 *   - Rings: lock-free MPMC queues of blocks inside the segment (DPDK
 *     rte_ring-like, but every step is one CAS that others can complete, so a
 *     process killed mid-operation never blocks the ring).
 *
 * Security model: the segment is created 0600 by default. Every index and
 * offset read from shared memory is bounds-checked against the geometry this
 * process validated at attach (and keeps in private memory), so a corrupted
 * or malicious peer cannot make this process read or write outside the
 * segment. It can still corrupt the pool's contents (hand a block out twice,
 * stall the robust mutex, truncate the file and cause SIGBUS): peers are
 * processes of users trusted with the data (docs/shm.md, "Security model").
 *
 * Errors: functions return NULL or -1 and set errno. Codes specific to this
 * layer:
 *   - EBADMSG: the segment is not a magpool shared pool, or its header is
 *     corrupted (bad magic, checksum, inconsistent geometry, file too small);
 *   - EPROTO: the segment has another layout version (MAGPOOL_SHM_LAYOUT);
 *   - ERANGE: the segment's block size is not the one the caller expects;
 *   - EAGAIN: the segment is still being initialised by its creator
 *     (attach), or a ring is empty/full;
 *   - EUSERS: all MAGPOOL_SHM_MAX_PROCS process slots are in use;
 *   - ENOMEM: no free block (all max_blocks are held), or growth failed;
 *   - EINVAL: bad argument, including a pointer or offset that is not a block
 *     of this pool, or a block that is not held (double release);
 *   - ECHILD: the handle was inherited through fork(); attach anew.
 * Plus the errno of shm_open/ftruncate/mmap (ENOENT, EEXIST, EACCES, ...).
 *
 * Thread-safety: every function is thread-safe except magpool_shm_detach,
 * which must not race other calls on the same handle. A handle is valid only
 * in the process that opened it (not across fork()).
 */
#ifndef MAGPOOL_SHM_H
#define MAGPOOL_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "magpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Layout version of the segment; attach refuses any other (EPROTO).
 *  2: process slots carry dequeue intents (the consumer-kill window). */
#define MAGPOOL_SHM_LAYOUT 2
/** Processes that can be attached to one segment at a time. */
#define MAGPOOL_SHM_MAX_PROCS 64
/** Most blocks a segment can hold (indices are 32-bit; 2^26 keeps the stamp
 *  and free-stack arrays at 256 MiB each at most). */
#define MAGPOOL_SHM_MAX_BLOCKS (UINT64_C(1) << 26)
/** Most rings per segment, and most entries per ring. */
#define MAGPOOL_SHM_MAX_RINGS 64
#define MAGPOOL_SHM_MAX_RING_SIZE (UINT32_C(1) << 24)
/** magpool_shm_offset's answer for a pointer that is not a block. */
#define MAGPOOL_SHM_BAD_OFFSET UINT64_MAX

typedef struct magpool_shm magpool_shm_t;

/**
 * Creation parameters. Initialise with magpool_shm_config_init() and change
 * what you need; fields may be added at the end in later versions (the
 * functions take the struct's size, so older programs keep working).
 */
typedef struct magpool_shm_config {
    size_t block_size;     /**< bytes per block, 1 .. 1 MiB (required) */
    size_t max_blocks;     /**< capacity, fixed at create (default 65536) */
    size_t initial_blocks; /**< blocks committed at create (default 1024, <= max) */
    size_t grow_blocks;    /**< blocks committed per growth step (default 1024) */
    unsigned cache_size;   /**< per-thread cache, 2 .. 4096 blocks (default 64) */
    unsigned rings;        /**< rings in the segment, 0 .. 64 (default 1) */
    unsigned ring_size;    /**< entries per ring, power of two (default 1024) */
    mode_t mode;           /**< permissions of the segment (default 0600) */
} magpool_shm_config_t;

/**
 * Fill @p cfg (of @p cfg_size bytes, normally sizeof *cfg) with the
 * defaults for blocks of @p block_size bytes.
 * @return 0, or -1 with EINVAL (cfg NULL or cfg_size too small).
 */
MAGPOOL_API int magpool_shm_config_init(magpool_shm_config_t *cfg, size_t cfg_size,
                                        size_t block_size);

/**
 * Create a new shared pool named @p name ("/something", as shm_open(3):
 * one leading slash, no other, at most 250 bytes, not starting with
 * "/magpool." -- the live view's segments, see magpool_publish_start) and
 * attach the calling
 * process to it. The segment's full size (max_blocks) is reserved with
 * ftruncate; only initial_blocks are committed (fallocate), the rest on
 * growth. Fails with EEXIST if the name exists (unlink it first: a
 * segment left by a crashed run is not reused silently).
 * @return the handle, or NULL with errno: EINVAL (bad name or config:
 *   block_size 0 or > 1 MiB, max_blocks 0 or > MAGPOOL_SHM_MAX_BLOCKS,
 *   initial_blocks > max_blocks, ring_size not a power of two, ...),
 *   EEXIST, EACCES, ENOSPC/ENOMEM (no room in /dev/shm or the address space).
 */
MAGPOOL_API magpool_shm_t *magpool_shm_create(const char *name, const magpool_shm_config_t *cfg,
                                              size_t cfg_size);

/**
 * Attach the calling process to the existing pool @p name. @p block_size is
 * the block size the caller expects (0: accept the segment's).
 * @return the handle, or NULL with errno: ENOENT, EACCES, EBADMSG (not a
 *   magpool segment, corrupted header), EPROTO (other layout version),
 *   ERANGE (other block size), EAGAIN (creator has not finished), EUSERS.
 */
MAGPOOL_API magpool_shm_t *magpool_shm_attach(const char *name, size_t block_size);

/**
 * Detach: this process's thread caches go back to the free stack, its
 * process slot is freed, the mapping is removed and the handle freed.
 * Blocks its user still holds become orphans (counted; see
 * magpool_shm_reclaim_orphans). The segment itself stays (see
 * magpool_shm_unlink). No other thread may use the handle during or after
 * the call. NULL is a no-op.
 * @return 0, or -1 with ECHILD (handle inherited through fork: only the
 *   private memory is freed).
 */
MAGPOOL_API int magpool_shm_detach(magpool_shm_t *pool);

/**
 * Remove the name @p name (shm_unlink). Attached processes keep their
 * mapping; the memory goes when the last one detaches.
 * @return 0, or -1 with errno (EINVAL bad name, ENOENT, EACCES).
 */
MAGPOOL_API int magpool_shm_unlink(const char *name);

/**
 * Take one block (contents unspecified), aligned to 64 bytes. Fast path: a
 * pop from the calling thread's private cache and one relaxed store of the
 * block's stamp. When the cache is empty a batch comes from the free stack
 * (robust mutex), growing the pool when needed; at max_blocks, dead
 * processes are recovered (at most every 10 ms across the segment) before
 * the call gives up.
 * @return a block, or NULL with EINVAL (pool NULL), ENOMEM, ECHILD.
 */
MAGPOOL_API void *magpool_shm_acquire(magpool_shm_t *pool) MAGPOOL_MALLOC_ATTR;

/**
 * Give back a block held by any process attached to this pool (a block
 * acquired in process A may be released in process B). NULL is a no-op.
 * @return 0, or -1 with EINVAL (not a block of this pool, or not held:
 *   a double release), ECHILD. The pool is unchanged on error.
 * A block given to a ring (or to another process) is no longer the
 * caller's: releasing it as well is a bug the pool cannot always detect
 * (the ring entry keeps the holder's stamp until a consumer adopts it).
 */
MAGPOOL_API int magpool_shm_release(magpool_shm_t *pool, void *block);

/**
 * Give the calling thread's cached blocks back to the free stack, so that
 * other processes can have them (a thread that goes idle while holding a
 * full cache keeps up to cache_size blocks out of everyone else's reach;
 * there is no cross-process steal). Thread exit and detach do this too.
 * @return 0, or -1 with EINVAL or ECHILD.
 */
MAGPOOL_API int magpool_shm_flush(magpool_shm_t *pool);

/**
 * The offset of @p block from the start of the segment: the same in every
 * process, so it can be passed to another process (in a message, a file,
 * a ring of your own).
 * @return the offset, or MAGPOOL_SHM_BAD_OFFSET with EINVAL if @p block is
 *   not the start of a block of this pool.
 */
MAGPOOL_API uint64_t magpool_shm_offset(const magpool_shm_t *pool, const void *block);

/**
 * The block at offset @p offset in this process's mapping: the inverse of
 * magpool_shm_offset. Bounds- and alignment-checked.
 * @return the block, or NULL with EINVAL.
 */
MAGPOOL_API void *magpool_shm_block(const magpool_shm_t *pool, uint64_t offset);

/**
 * Put a block the caller holds into ring @p ring (0 .. rings-1). The block
 * stays stamped as held by the caller's process until a consumer dequeues
 * it. Lock-free. Hand a block on once: enqueueing it twice, or releasing it
 * while it is in a ring, is not detected and gives it two owners.
 * @return 0, or -1 with EAGAIN (ring full), EINVAL (bad ring, not a block
 *   of this pool, block not held), ECHILD.
 */
MAGPOOL_API int magpool_shm_ring_enqueue(magpool_shm_t *pool, unsigned ring, void *block);

/**
 * Take the oldest block from ring @p ring; ownership moves to the calling
 * process (its stamp says so). Entries that are not held blocks (a
 * corrupted ring, or a block of a dead process reclaimed meanwhile) are
 * dropped and counted in magpool_shm_stats().ring_dropped. Lock-free (a
 * process's 64th and later concurrently dequeuing threads share one intent
 * record under a private mutex). A process killed at any instruction of a
 * dequeue loses nothing: recovery returns a block it had emptied from the
 * ring but not yet adopted to the free stack (docs/shm.md, "The
 * consumer-kill window").
 * @return the block, or NULL with EAGAIN (empty), EINVAL (bad ring), ECHILD,
 *   ENOMEM (the thread's first call could not allocate its cache).
 */
MAGPOOL_API void *magpool_shm_ring_dequeue(magpool_shm_t *pool, unsigned ring);

/**
 * Put up to @p n blocks the caller holds, blocks[0], blocks[1], ..., into
 * ring @p ring, in that order (DPDK's rte_ring_enqueue_burst): each block
 * exactly as magpool_shm_ring_enqueue would, stopping at the first one that
 * cannot go in. Those from there on stay the caller's.
 * @return how many went in (the first ones). When fewer than @p n, errno
 *   says why: EAGAIN (the ring filled up), EINVAL (blocks[k], the first not
 *   moved, is not a block of this pool or not held). 0 with errno for bad
 *   input, nothing moved: EINVAL (pool NULL, ring out of range, blocks NULL,
 *   n > MAGPOOL_SHM_MAX_RING_SIZE -- no ring holds that many, so such an n
 *   is a caller's bug such as a negative length), ECHILD. n == 0 is a no-op:
 *   0, errno unchanged.
 */
MAGPOOL_API unsigned magpool_shm_ring_enqueue_burst(magpool_shm_t *pool, unsigned ring,
                                                    void *const *blocks, unsigned n);

/**
 * Take up to @p n blocks from ring @p ring, oldest first, into blocks[0],
 * blocks[1], ... (DPDK's rte_ring_dequeue_burst); each is adopted exactly
 * as magpool_shm_ring_dequeue does (same dropping of entries that are not
 * held blocks, same recovery if the process is killed meanwhile).
 * @return how many were taken; fewer than @p n with EAGAIN when the ring
 *   ran empty (or ENOMEM: the thread's first call could not allocate its
 *   cache). Bad input as magpool_shm_ring_enqueue_burst: 0 with EINVAL or
 *   ECHILD; n == 0: 0, errno unchanged.
 */
MAGPOOL_API unsigned magpool_shm_ring_dequeue_burst(magpool_shm_t *pool, unsigned ring,
                                                    void **blocks, unsigned n);

/**
 * Find attached processes that died (their pid no longer exists, or it was
 * reused: the start time in /proc/<pid>/stat differs) and recover them: the
 * blocks parked in their caches go back to the free stack, their slots are
 * freed, the blocks their users held become orphans.
 * @return the number of processes recovered (0 if none), or -1 with EINVAL
 *   or ECHILD.
 */
MAGPOOL_API int magpool_shm_recover(magpool_shm_t *pool);

/**
 * Return the orphans (blocks held by processes that died or detached) to the
 * free stack, except those still in a ring (a live consumer will take them).
 * Call it when no live process can still hold such a block through a channel
 * the pool does not know (your own queue): a block it returns may be handed
 * out again at once.
 * @return the number of blocks returned, or -1 with EINVAL or ECHILD.
 */
MAGPOOL_API long magpool_shm_reclaim_orphans(magpool_shm_t *pool);

/** A snapshot of the pool, from one pass over the stamps (O(max_blocks)). */
typedef struct magpool_shm_stats {
    uint64_t block_size, max_blocks;
    uint64_t committed;      /**< blocks in use by the pool (<= max_blocks) */
    uint64_t free;           /**< on the free stack */
    uint64_t cached;         /**< parked in live processes' thread caches */
    uint64_t held;           /**< held by users of live processes (rings included) */
    uint64_t held_here;      /**< ... of which by this process */
    uint64_t orphans;        /**< held by processes that died or detached (and, until
                                  magpool_shm_recover runs, parked in a dead
                                  process's caches) */
    uint64_t in_rings;       /**< entries in the rings */
    uint64_t procs;          /**< attached processes (live slots) */
    uint64_t procs_recovered;/**< dead processes recovered, since create */
    uint64_t repairs;        /**< robust-mutex repairs (a holder died), since create */
    uint64_t ring_dropped;   /**< ring entries dropped by dequeue, since create */
} magpool_shm_stats_t;

/**
 * Fill @p st (of @p st_size bytes, normally sizeof *st). Concurrent
 * operations make the snapshot approximate; when the pool is quiet,
 * free + cached + held + orphans == committed exactly.
 * @return 0, or -1 with EINVAL or ECHILD.
 */
MAGPOOL_API int magpool_shm_stats(magpool_shm_t *pool, magpool_shm_stats_t *st, size_t st_size);

/** The pool's block size, or 0 with EINVAL for NULL. */
MAGPOOL_API size_t magpool_shm_block_size(const magpool_shm_t *pool);

#ifdef __cplusplus
}
#endif

#endif
