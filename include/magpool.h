/*
 * magpool — a concurrent fixed-block memory pool.
 *
 * A pool hands out blocks of one size. Each thread keeps a small cache of
 * blocks per pool (two "magazines", after Bonwick & Adams, USENIX 2001), so the
 * common acquire/release touches only memory private to the calling thread: no
 * lock, no atomic read-modify-write, no shared cache line. Full and empty
 * magazines are exchanged with a lock-free depot; the depot is refilled from
 * mmap'd slabs that grow by a configurable factor up to a hard cap.
 * A second backend, MAGPOOL_MUTEX, implements the same API the simple way (one
 * lock around one free list) and is the baseline every claim is measured
 * against.
 *
 * Synchronization table: which calls may run at the same time on ONE pool
 * (different pools are fully independent).
 *
 *                        acquire release clear trim get_stats report_leaks destroy
 *   magpool_acquire         X       X      X     X      X         X           -
 *   magpool_release         X       X      X     X      X         X           -
 *   magpool_clear/trim      X       X      X     X      X         X           -
 *   magpool_get_stats       X       X      X     X      X         X           -
 *   magpool_destroy         -       -      -     -      -         -           -
 *
 *   X: may run concurrently from different threads.
 *   -: must not overlap; magpool_destroy requires that no other thread uses the
 *      pool any more (threads that used it may still be alive: their caches of
 *      the pool are reclaimed by destroy and never touched again).
 *
 * Errors: functions that return a pointer return NULL and set errno; functions
 * that return int return 0 or -1 and set errno. Fast mode never prints and never
 * aborts. MAGPOOL_CHECKED mode reports misuse on stderr (one line) and sets
 * errno, and still never aborts or corrupts the pool.
 *
 * Link with `pkg-config --cflags --libs magpool`.
 */
#ifndef MAGPOOL_H
#define MAGPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MAGPOOL_BUILDING) && defined(__GNUC__)
#define MAGPOOL_API __attribute__((visibility("default")))
#else
#define MAGPOOL_API
#endif

#if defined(__GNUC__)
#define MAGPOOL_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define MAGPOOL_MALLOC_ATTR
#endif

#define MAGPOOL_VERSION_MAJOR 0
#define MAGPOOL_VERSION_MINOR 1
#define MAGPOOL_VERSION_PATCH 0

/** Opaque pool handle. */
typedef struct magpool magpool_t;

/** Which implementation serves a pool. */
typedef enum {
    MAGPOOL_LOCKFREE = 0, /**< per-thread magazines + lock-free depot (default) */
    MAGPOOL_MUTEX = 1     /**< one mutex around one free list: the baseline      */
} magpool_backend_t;

/** Pool flags (magpool_config_t.flags). */
enum {
    MAGPOOL_PREFAULT = 1u << 0, /**< touch pages at create/grow (no page fault later) */
    MAGPOOL_CHECKED = 1u << 1   /**< detect double/foreign release (slower)          */
};

/** Pool configuration. Start from magpool_config_default() and change fields. */
typedef struct magpool_config {
    size_t block_size;         /**< bytes per block, > 0                           */
    size_t align;              /**< power of two; 0 = default (16)                 */
    size_t initial_blocks;     /**< preallocated at create (default 10)            */
    size_t max_blocks;         /**< hard cap, 0 = unlimited                        */
    double grow_factor;        /**< > 1.0 (default 2.0)                            */
    unsigned magazine_size;    /**< blocks per magazine, 0 = automatic             */
    unsigned flags;            /**< MAGPOOL_PREFAULT | MAGPOOL_CHECKED ...         */
    magpool_backend_t backend; /**< lock-free (default) or the mutex baseline      */
} magpool_config_t;

/**
 * Pool statistics (magpool_get_stats).
 *
 * Counters are kept per thread by their only writer and summed on read, so a
 * snapshot taken while other threads work is not atomic as a whole; at
 * quiescence it is exact and acquires - releases == blocks_outstanding.
 */
typedef struct magpool_stats {
    uint64_t acquires, releases; /**< successful calls                              */
    uint64_t hits, misses;       /**< hit: served from idle pooled blocks; miss: the
                                      pool had none idle and had to grow (map a new
                                      slab) to serve the call. hits + misses ==
                                      acquires                                      */
    uint64_t grows, trims;       /**< slab growth events, trim events               */
    uint64_t failed;             /**< acquires that returned NULL                   */
    size_t blocks_total;         /**< blocks carved from slabs, now                 */
    size_t blocks_outstanding;   /**< acquired and not yet released                 */
    size_t bytes_reserved;       /**< mapped bytes (slabs)                          */
    double hit_rate;             /**< hits / acquires, 0 when none                  */
    /* Additions beyond the seed's counters (cache layer). */
    uint64_t depot_gets;         /**< full magazines taken from the depot           */
    uint64_t depot_puts;         /**< full magazines given to the depot             */
    uint64_t steals;             /**< times parked blocks were taken back from other
                                      threads' caches to honour max_blocks          */
    uint64_t threads;            /**< thread caches currently attached to the pool  */
} magpool_stats_t;

/**
 * A configuration with every default filled in for blocks of @p block_size
 * bytes: align 16, initial_blocks 10, max_blocks 0 (unlimited), grow_factor 2.0,
 * automatic magazine size, no flags, MAGPOOL_LOCKFREE.
 * Pure function; never fails (validation happens in magpool_create).
 */
MAGPOOL_API magpool_config_t magpool_config_default(size_t block_size);

/**
 * Create a pool and preallocate cfg->initial_blocks blocks (capped at
 * cfg->max_blocks when that is non-zero).
 *
 * The environment variable MAGPOOL_CHECKED=1 turns MAGPOOL_CHECKED on for every
 * pool created afterwards, without recompiling.
 *
 * @return the pool, or NULL with errno:
 *   - EINVAL: cfg NULL, block_size 0, align not a power of two (or > 1 MiB),
 *     grow_factor not > 1 (or NaN), max_blocks < initial_blocks is NOT an error
 *     (initial is capped), backend unknown, flags unknown, or block_size x
 *     blocks overflowing the address space;
 *   - ENOMEM: the preallocation could not be mapped.
 * Thread-safe.
 */
MAGPOOL_API magpool_t *magpool_create(const magpool_config_t *cfg);

/**
 * Take one block. The block is at least block_size bytes, aligned to the
 * configured alignment, and its contents are unspecified (not zeroed).
 *
 * Fast path: a pop from the calling thread's magazine. When the pool has no
 * idle block it grows by grow_factor; at max_blocks it first takes back blocks
 * parked in other threads' caches, so it fails only when every block is
 * really acquired.
 *
 * @return a block, or NULL with errno:
 *   - EINVAL: pool is NULL;
 *   - ENOMEM: max_blocks blocks are outstanding, or growing failed (mmap).
 * Thread-safe; lock-free except for growth and the at-cap steal.
 */
MAGPOOL_API void *magpool_acquire(magpool_t *pool) MAGPOOL_MALLOC_ATTR;

/**
 * Give back a block obtained from magpool_acquire() on the same pool. Any
 * thread may release any block (producer/consumer is fine and fast).
 * block == NULL is a no-op.
 *
 * Releasing a pointer that did not come from this pool, or releasing it twice,
 * is undefined behaviour in fast mode. With MAGPOOL_CHECKED it is detected:
 * a one-line report goes to stderr, errno is set to EINVAL, and the pool is
 * left unchanged.
 * Thread-safe; wait-free on the fast path.
 */
MAGPOOL_API void magpool_release(magpool_t *pool, void *block);

/**
 * Give idle memory back: every idle block, including blocks parked in other
 * threads' caches, is collected; slabs whose blocks are all idle are unmapped.
 * Same as magpool_trim(pool, 0).
 * @return number of blocks given back to the OS (0 also for pool == NULL).
 * Thread-safe, may run while other threads acquire and release; not for the
 * hot path (it takes the pool's growth lock and signals other threads).
 */
MAGPOOL_API size_t magpool_clear(magpool_t *pool);

/**
 * Give back memory that has been idle for longer than @p max_idle_s seconds,
 * least recently used first.
 * This release reclaims only at max_idle_s <= 0 (it behaves as magpool_clear);
 * with max_idle_s > 0 it flushes the caller's own cache and returns 0. Age
 * tracking arrives with epoch-based reclamation.
 * @return number of blocks given back to the OS.
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API size_t magpool_trim(magpool_t *pool, double max_idle_s);

/**
 * Fill @p out with a snapshot of the pool's counters.
 * @return 0, or -1 with errno EINVAL when pool or out is NULL.
 * Thread-safe; takes a lock that only the slow paths use, not for the hot path.
 */
MAGPOOL_API int magpool_get_stats(magpool_t *pool, magpool_stats_t *out);

/** Usable bytes per block (the configured block_size); 0 for NULL. */
MAGPOOL_API size_t magpool_block_size(const magpool_t *pool);

/**
 * Write a leak report for @p pool to @p out (stderr when NULL): the number of
 * blocks acquired and not released.
 * @return the number of outstanding blocks (0 for pool == NULL).
 * Thread-safe; meaningful at quiescence.
 */
MAGPOOL_API size_t magpool_report_leaks(magpool_t *pool, FILE *out);

/**
 * Return the calling thread's cached blocks of @p pool to the shared depot, so
 * other threads can get them without a steal. Threads do this automatically
 * when they exit. No-op for NULL or the mutex backend.
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API void magpool_thread_flush(magpool_t *pool);

/**
 * Destroy the pool and unmap all its memory, outstanding blocks included.
 * No other thread may use the pool during or after the call. Threads that used
 * the pool may still be alive; their caches of it are released here.
 * NULL is a no-op.
 */
MAGPOOL_API void magpool_destroy(magpool_t *pool);

/** "MAJOR.MINOR.PATCH" of the library actually loaded. */
MAGPOOL_API const char *magpool_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MAGPOOL_H */
