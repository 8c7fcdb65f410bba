/* SPDX-License-Identifier: MIT */
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
 *                     acquire release clear/trim set_trim get_stats report destroy
 *   magpool_acquire      X       X        X         X        X        X       -
 *   magpool_release      X       X        X         X        X        X       -
 *   (the _bulk and _zeroed variants are like the call they batch / wrap;
 *   magpool_cache_acquire / _release like acquire / release, each handle
 *   used by the thread that got it)
 *   clear/trim           X       X        X         X        X        X       -
 *   set_trim_interval    X       X        X         X        X        X       -
 *   get_stats            X       X        X         X        X        X       -
 *   destroy              -       -        -         -        -        -       -
 *
 *   X: may run concurrently from different threads.
 *   -: must not overlap; magpool_destroy requires that no other thread uses the
 *      pool any more (threads that used it may still be alive: their caches of
 *      the pool are reclaimed by destroy and never touched again).
 *
 * One set of rules, for the pool, ObjectPool and BufferManager alike
 * (test/test_contract.c walks every public function through this table):
 *
 *   input                        answer
 *   ---------------------------  ------------------------------------------
 *   NULL handle (pool, op, bm,   errno EINVAL and the neutral result: NULL,
 *     cache)                     -1, 0, "" or nothing; *_destroy(NULL) is a
 *                                no-op, like free(NULL), errno untouched
 *   NULL block / buffer /        release: a no-op, errno untouched
 *     object on release
 *   NULL out / config pointer    EINVAL (-1 / NULL)
 *   foreign, interior, double    undefined in fast mode; detected and
 *     release                    reported in MAGPOOL_CHECKED mode (EINVAL)
 *                                and always by the BufferManager
 *   size 0 (block_size,          EINVAL
 *     obj_size, count)
 *   sizes whose bytes overflow   EINVAL
 *   no memory / at max_blocks    NULL + ENOMEM (an ObjectPool init error:
 *                                its errno); nothing is lost, the pool stays
 *                                usable
 *   an age (trim, clear_unused,  <= 0 or NaN: everything idle now; >= 1e9 s
 *     max_idle_s)                (or infinity): nothing is that old; never
 *                                an error
 *   an interval                  <= 0 stops; NaN or > 1e9 s: EINVAL
 *   grow_factor                  0 = default 2.0; > 64 taken as 64; <= 1,
 *                                NaN or infinity: EINVAL
 *   a zero config field          its default (block_size has none)
 *   unknown enum / flag bits     EINVAL (an unknown dtype: magpool_dtype_size
 *                                0 + EINVAL)
 *
 * Functions that do the same thing have the same name in every API:
 * *_create, *_destroy, *_acquire / *_release (BufferManager: _get /
 * _release), *_get_stats, *_trim / *_clear (BufferManager: clear_unused(age),
 * the seed's name), *_report_leaks. Two names predate these rules and stay
 * for compatibility: magpool_objpool_size() counts *idle* objects (the
 * design contract's meaning), and a BufferManager's error handler takes
 * (ctx, what, buf) where the pool's takes (err, ctx).
 *
 * Errors: functions that return a pointer return NULL and set errno; functions
 * that return int return 0 or -1 and set errno. Fast mode never aborts and
 * prints nothing on any operation; the one report it makes is at
 * magpool_destroy (and at the ObjectPool's and BufferManager's destroy),
 * when blocks are still outstanding (through the error handler, so it can be
 * silenced). MAGPOOL_CHECKED mode reports misuse through the error handler
 * (magpool_set_error_handler; default: one line on stderr) and sets errno,
 * and still never aborts or corrupts the pool (unless MAGPOOL_ABORT_ON_ERROR
 * asks for an abort after the report). See "Diagnostics" below and
 * docs/diagnostics.md.
 *
 * fork(): a process may fork at any time, also while other threads use
 * pools. The child may use every pool and buffer manager it inherited
 * (acquire, release, trim, clear, stats, destroy) and create new ones; blocks
 * idle in the parent's other threads' caches are idle in the child, blocks
 * acquired by the parent's threads stay outstanding there. A background
 * trimmer (magpool_set_trim_interval) is restarted in the child.
 *
 * Signals: the functions are NOT async-signal-safe (like malloc): a signal
 * handler must not call them when it may interrupt its own thread inside
 * magpool. In MAGPOOL_CHECKED mode such a nested call is refused and
 * reported (MAGPOOL_ERR_REENTRY): acquire returns NULL with errno EDEADLK,
 * release leaves the block outstanding.
 *
 * Other libraries: magpool's reclamation uses private Concurrency Kit
 * ck_epoch domains, so a program may use liburcu or ck_epoch itself, from the
 * same threads, in any order, and call magpool inside its own read sections.
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

/*
 * Versions and the ABI promise.
 *
 * From 0.1 on, a program compiled against any released magpool.h keeps
 * working, unrebuilt, with every later 0.x / 1.x library (and keeps
 * compiling against every later header): functions are only added, struct
 * fields are only appended, and the functions that exchange structs pass
 * the size the program was compiled with (magpool_create,
 * magpool_config_default and magpool_get_stats are macros over the *_sized
 * entry points below; the 0.1 symbols remain for 0.1 binaries). A new
 * config field's zero value always means "as before".
 */
#define MAGPOOL_VERSION_MAJOR 0
#define MAGPOOL_VERSION_MINOR 3
#define MAGPOOL_VERSION_PATCH 0
#define MAGPOOL_VERSION_STRING "0.3.0"
/** MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */
#define MAGPOOL_VERSION_NUMBER                                              \
    (MAGPOOL_VERSION_MAJOR * 10000 + MAGPOOL_VERSION_MINOR * 100 + MAGPOOL_VERSION_PATCH)

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
    MAGPOOL_CHECKED = 1u << 1   /**< detect misuse, record acquire sites (slower;
                                     see "Diagnostics")                             */
};

/** Pool configuration. Start from magpool_config_default() and change fields,
 *  or zero-initialise it and set block_size: every other field's zero value
 *  means its default (initial_blocks 0: no preallocation). */
typedef struct magpool_config {
    size_t block_size;         /**< bytes per block, > 0                           */
    size_t align;              /**< power of two; 0 = default (16)                 */
    size_t initial_blocks;     /**< preallocated at create (default 10)            */
    size_t max_blocks;         /**< hard cap, 0 = unlimited                        */
    double grow_factor;        /**< > 1.0, above 64 taken as 64; 0 = default (2.0) */
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
    uint64_t depot_gets;         /**< full magazines a thread cache took from the
                                      depot                                         */
    uint64_t depot_puts;         /**< non-empty magazines thread caches gave to the
                                      depot: when full, and when flushed (thread
                                      exit, magpool_thread_flush, trim, steals)     */
    uint64_t steals;             /**< acquires at max_blocks that took parked blocks
                                      back from other threads' caches (trim taking
                                      idle caches back is not counted here)         */
    uint64_t threads;            /**< thread caches currently attached to the pool  */
    uint64_t bytes_returned;     /**< resident memory given back to the OS by
                                      trim/clear so far: pages resident when they
                                      were munmap'd or madvise(MADV_DONTNEED)'d (a
                                      page counts again only if it was touched
                                      again in between)                             */
    size_t magazines;            /**< magazines allocated now (cache metadata)      */
    uint64_t errors;             /**< misuse reports made for this pool (CHECKED)   */
    /* Since 0.2 (a 0.1 program's magpool_get_stats never writes these). */
    uint64_t reclaims;           /**< idle thread caches whose blocks trim or clear
                                      took back (the steal protocol, not at the cap) */
    size_t spilled;              /**< idle blocks parked without a magazine because
                                      magazine memory ran out                       */
} magpool_stats_t;

/**
 * Fill the first @p cfg_size bytes of @p cfg with every default for blocks of
 * @p block_size bytes: align 16, initial_blocks 10, max_blocks 0
 * (unlimited), grow_factor 2.0, automatic magazine size, no flags,
 * MAGPOOL_LOCKFREE; fields this library does not know are zeroed.
 * @return 0, or -1 with errno EINVAL (cfg NULL, or cfg_size smaller than the
 *         0.1 struct). Never fails otherwise (validation is in magpool_create).
 */
MAGPOOL_API int magpool_config_init(magpool_config_t *cfg, size_t cfg_size, size_t block_size);

/** The configuration magpool_config_init() gives, by value. (A macro over an
 *  inline function of this header, so the struct returned has the size the
 *  program was compiled with; the 0.1 symbol remains for 0.1 binaries.) */
MAGPOOL_API magpool_config_t(magpool_config_default)(size_t block_size);
static inline magpool_config_t magpool_config_default_inline_(size_t block_size)
{
    magpool_config_t c;
    magpool_config_init(&c, sizeof c, block_size);
    return c;
}
/* Variadic, so an argument with a comma in it (a compound literal) passes
 * through the preprocessor whole, as it did when these were functions. */
#define magpool_config_default(...) magpool_config_default_inline_(__VA_ARGS__)

/**
 * Create a pool and preallocate cfg->initial_blocks blocks (capped at
 * cfg->max_blocks when that is non-zero). A macro over magpool_create_sized,
 * passing the config's size as the program knows it.
 *
 * The environment variable MAGPOOL_CHECKED=1 turns MAGPOOL_CHECKED on for every
 * pool created afterwards, without recompiling; MAGPOOL_PASSTHROUGH=1 sends
 * every acquire of such pools to the system allocator (see "Diagnostics").
 *
 * @return the pool, or NULL with errno:
 *   - EINVAL: cfg NULL, block_size 0, align not a power of two (or > 1 MiB),
 *     grow_factor neither 0 nor a finite number > 1 (NaN and infinity
 *     fail; above 64 it is taken as 64),
 *     backend unknown, flags
 *     unknown, magazine_size > 4096, or block_size x initial_blocks (or x
 *     max_blocks) overflowing the address space. max_blocks < initial_blocks
 *     is not an error: the preallocation is capped.
 *   - ENOMEM: the preallocation could not be mapped.
 * Slabs are whole pages and every block of a slab is carved, so blocks_total
 * may exceed the requested count by less than a page's worth of blocks
 * (never max_blocks).
 * Thread-safe.
 */
MAGPOOL_API magpool_t *(magpool_create)(const magpool_config_t *cfg);
/** magpool_create for a config of @p cfg_size bytes: smaller (an older
 *  program) gets defaults for the fields it does not have; larger (a newer
 *  header) is EINVAL unless the bytes this library does not know are zero. */
MAGPOOL_API magpool_t *magpool_create_sized(const magpool_config_t *cfg, size_t cfg_size);
#define magpool_create(...) magpool_create_sized((__VA_ARGS__), sizeof(magpool_config_t))

/**
 * Take one block. The block is at least block_size bytes, aligned to the
 * configured alignment, and its contents are unspecified (not zeroed).
 *
 * Fast path: a pop from the calling thread's magazine. When the pool has no
 * idle block it grows by grow_factor; at max_blocks it first takes back blocks
 * parked in other threads' caches, so it fails only when every block is
 * really acquired. (Taking them back needs membarrier(2); where the kernel
 * or a seccomp policy refuses it, blocks parked in other threads' caches are
 * out of reach and an acquire at max_blocks can fail while some are idle.)
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
 * is undefined behaviour in fast mode. With MAGPOOL_CHECKED it is detected
 * (double release, foreign or misaligned pointer, block of another pool,
 * write past the block's end): the error handler is called (default: one
 * line on stderr), errno is set to EINVAL, and the pool is left unchanged.
 * Thread-safe; wait-free on the fast path.
 */
MAGPOOL_API void magpool_release(magpool_t *pool, void *block);

#if defined(__GNUC__)
#define MAGPOOL_NODISCARD __attribute__((warn_unused_result))
#else
#define MAGPOOL_NODISCARD
#endif

/**
 * Take @p n blocks at once, all or nothing (as DPDK's rte_mempool_get_bulk):
 * on success blocks[0..n) hold n distinct blocks, each as from
 * magpool_acquire(); on failure no block is taken (those already taken are
 * given back before the call returns) and the contents of blocks[] are
 * unspecified.
 *
 * Fast path: runs of blocks are copied out of the calling thread's two
 * magazines (up to 2 x magazine_size blocks) in one cache operation; beyond
 * that the single-block slow path refills them (depot, growth, steal at the
 * cap) and copying goes on. So a call visits the shared depot no more
 * often than the single calls would, and costs less per block. In the mutex
 * backend and in the diagnostic modes it is a loop of single acquires
 * (CHECKED checks and records every block, with the caller of this function
 * as the acquire site).
 *
 * Statistics count what the single calls would: n acquires. A failed call
 * counts one failed acquire, and the blocks it took and gave back count as
 * acquired and released (blocks_outstanding is unchanged).
 *
 * @return 0 (also for n == 0), or -1 with errno:
 *   - EINVAL: pool is NULL, or blocks is NULL with n > 0;
 *   - ENOMEM: fewer than n blocks can be had: max_blocks would be exceeded,
 *     or growing failed (mmap).
 * Thread-safe, as magpool_acquire (since 0.2).
 */
MAGPOOL_API int magpool_acquire_bulk(magpool_t *pool, void **blocks, size_t n)
    MAGPOOL_NODISCARD;

/**
 * Give back @p n blocks at once: the same as magpool_release() on each of
 * blocks[0..n) in turn (NULL entries are skipped), copied into the calling
 * thread's magazines in one cache operation on the fast path. Statistics
 * count one release per non-NULL entry. In CHECKED mode every entry is
 * checked and a bad one (double release, foreign pointer, ...) is reported
 * and skipped; the others are released.
 * n == 0 is a no-op; pool NULL or blocks NULL with n > 0 sets errno EINVAL
 * and releases nothing.
 * Thread-safe, as magpool_release; wait-free on the fast path (since 0.2).
 */
MAGPOOL_API void magpool_release_bulk(magpool_t *pool, void *const *blocks, size_t n);

/**
 * As magpool_acquire(), with the block's block_size bytes set to zero
 * (memset after the acquire: costs what memset costs).
 * @return a zeroed block, or NULL with the errors of magpool_acquire.
 * Thread-safe (since 0.2).
 */
MAGPOOL_API void *magpool_acquire_zeroed(magpool_t *pool) MAGPOOL_MALLOC_ATTR;

/*
 * Typed helpers, after GLib's g_slice_new / g_slice_new0 / g_slice_free:
 *
 *   struct order *o = magpool_new(pool, struct order);    contents unspecified
 *   struct order *z = magpool_new0(pool, struct order);   zeroed
 *   magpool_delete(pool, o);
 *
 * They only cast: the pool's block size is a run-time value, so no compile-
 * or run-time check is made that sizeof(type) <= magpool_block_size(pool)
 * and that type's alignment is at most the pool's; both are the caller's
 * responsibility (create the pool with magpool_config_default(sizeof(type))
 * and .align = _Alignof(type) when it exceeds 16). NULL + errno as
 * magpool_acquire. Each argument is evaluated once.
 */
#define magpool_new(pool, type)    ((type *)magpool_acquire(pool))
#define magpool_new0(pool, type)   ((type *)magpool_acquire_zeroed(pool))
#define magpool_delete(pool, ptr)  magpool_release((pool), (ptr))

/*
 * Per-thread handles (after DPDK's rte_mempool_cache; since 0.3).
 *
 *   magpool_cache_t *c = magpool_cache_get(pool);   once per thread
 *   if (c == NULL) ...                               errno: EINVAL / ENOMEM
 *   for (;;) {
 *       struct order *o = magpool_cache_acquire(c);
 *       ...
 *       magpool_cache_release(c, o);
 *   }
 *
 * A handle is the calling thread's cache of the pool, bound once: its
 * acquire and release are magpool_acquire / magpool_release without finding
 * that cache (a thread-local directory lookup) on every call, about a third
 * of the plain calls' instructions (docs/benchmarks.md, "Cost account of the
 * fast path"). They behave exactly as the plain calls on the same pool from
 * the same thread — same blocks, statistics, cap and steal of parked blocks,
 * trim, fork and thread-exit behaviour, the same CHECKED checks with the
 * caller recorded as the acquire site — and may be mixed freely with them
 * and with the bulk calls. A block acquired through a handle may be
 * released by any thread (with magpool_release, or that thread's handle).
 *
 * Every mode has handles: in the mutex backend and the diagnostic modes
 * (MAGPOOL_CHECKED, ASan / valgrind, passthrough) a handle simply routes
 * each call to the normal path, at the normal path's price.
 *
 * Validity: a handle belongs to the thread that got it and the pool it came
 * from. It stays valid until that thread exits or the pool is destroyed,
 * whichever comes first; after that, using it is undefined (like a pointer
 * into freed memory), as is using it from another thread — except that
 * MAGPOOL_CHECKED mode detects the latter: the call is refused and reported
 * (MAGPOOL_ERR_WRONG_THREAD; acquire returns NULL, release leaves the block
 * outstanding, errno EINVAL). In the mutex backend a pool has one handle,
 * which any thread may use. After fork() the thread that forked keeps using
 * its handles in the child. Calling magpool_cache_get again on the same
 * thread returns the same handle (cheaply: it is one lookup).
 *
 * The handle is opaque: its layout is no part of the ABI promise, and a
 * program compiled against this header works with every later library.
 */
/** A thread's handle of one pool (opaque). */
typedef struct magpool_cache magpool_cache_t;

/**
 * The calling thread's handle of @p pool, made on first use.
 * @return the handle, or NULL with errno:
 *   - EINVAL: pool is NULL;
 *   - ENOMEM: no memory for the thread's cache.
 * Thread-safe.
 */
MAGPOOL_API magpool_cache_t *magpool_cache_get(magpool_t *pool) MAGPOOL_NODISCARD;

/**
 * magpool_acquire() on the handle's pool, from its thread.
 * @return a block, or NULL with errno: EINVAL (cache is NULL; CHECKED: the
 *         handle of another thread), ENOMEM (as magpool_acquire).
 * Only on the thread that got @p cache; lock-free as magpool_acquire.
 */
MAGPOOL_API void *magpool_cache_acquire(magpool_cache_t *cache) MAGPOOL_MALLOC_ATTR;

/**
 * magpool_release() to the handle's pool, from its thread: @p block may
 * come from any thread's acquire on the same pool. block == NULL is a no-op;
 * cache == NULL: errno EINVAL, nothing released. Foreign and double
 * releases: as magpool_release (undefined in fast mode, detected and
 * reported in CHECKED mode).
 * Only on the thread that got @p cache; wait-free on the fast path.
 */
MAGPOOL_API void magpool_cache_release(magpool_cache_t *cache, void *block);

/**
 * Give all idle memory back: same as magpool_trim(pool, 0).
 * @return number of blocks whose memory went back to the OS (0 also for
 *         pool == NULL).
 * Thread-safe, may run while other threads acquire and release; not for the
 * hot path.
 */
MAGPOOL_API size_t magpool_clear(magpool_t *pool);

/**
 * Give back memory that has been idle for longer than @p max_idle_s seconds,
 * least recently used first, while other threads keep working.
 *
 * Idle blocks of the pool — in the shared depot, and in the caches of threads
 * that have not used the pool for max_idle_s (alive or not) — are collected;
 * slabs whose blocks are all idle are unmapped, and in the others every page
 * wholly covered by idle blocks is returned with madvise(MADV_DONTNEED) (the
 * blocks stay in the pool and fault back in, zeroed, when reused). Magazines
 * (cache metadata) idle as long are freed after an epoch grace period.
 * A thread's idleness is observed by successive trims (it costs the fast path
 * nothing), so a thread's cache is reclaimed by the first trim that runs at
 * least max_idle_s after an earlier trim saw the thread's last operation;
 * magpool_set_trim_interval() runs trims periodically.
 * max_idle_s <= 0 (or NaN) means "everything idle now", including the caller's
 * own cache and every other thread's.
 *
 * MAGPOOL_MUTEX keeps no per-block ages and its free list lives inside the
 * idle blocks: there, trim reclaims only when the whole pool has been idle for
 * max_idle_s (as seen by successive trims), and only whole slabs.
 *
 * @return number of blocks whose memory went back to the OS (unmapped, or
 *         lying wholly inside returned pages); 0 with errno EINVAL for
 *         pool == NULL.
 * Thread-safe; not for the hot path (takes the growth lock, signals threads
 * with membarrier(2), may wait for an epoch grace period; where membarrier is
 * refused, other live threads' caches are left alone).
 */
MAGPOOL_API size_t magpool_trim(magpool_t *pool, double max_idle_s);

/**
 * Trim @p pool in the background: every @p interval_s seconds a library
 * thread (one for all pools, started on first use) calls
 * magpool_trim(pool, max_idle_s). interval_s <= 0 stops it for this pool.
 * The thread never runs on the fast path. After fork() the child starts
 * a trimmer of its own for the same pools and settings (should that thread
 * not start, the next call of this function in the child starts it).
 * max_idle_s is an age as for magpool_trim (<= 0 or NaN: everything idle).
 * @return 0, or -1 with errno: EINVAL (pool NULL, interval_s NaN or > 1e9 s),
 *         EAGAIN/ENOMEM (the thread could not be started).
 * Thread-safe.
 */
MAGPOOL_API int magpool_set_trim_interval(magpool_t *pool, double interval_s,
                                          double max_idle_s);

/**
 * Fill @p out with a snapshot of the pool's counters. A macro over
 * magpool_get_stats_sized, passing the struct's size as the program knows it:
 * only that many bytes are written.
 * @return 0, or -1 with errno EINVAL when pool or out is NULL (or out_size is
 *         smaller than the 0.1 struct).
 * Thread-safe; takes a lock that only the slow paths use, not for the hot path.
 */
MAGPOOL_API int(magpool_get_stats)(magpool_t *pool, magpool_stats_t *out);
MAGPOOL_API int magpool_get_stats_sized(magpool_t *pool, magpool_stats_t *out, size_t out_size);
#define magpool_get_stats(...) magpool_get_stats_sized(__VA_ARGS__, sizeof(magpool_stats_t))

/** Usable bytes per block (the configured block_size); 0 for NULL. */
MAGPOOL_API size_t magpool_block_size(const magpool_t *pool);

/**
 * Write a leak report for @p pool to @p out (stderr when NULL): the number of
 * blocks acquired and not released, and with MAGPOOL_CHECKED (or
 * MAGPOOL_PASSTHROUGH) one more line per acquiring call site, most blocks
 * first:
 *
 *   magpool: pool "conn" (0x5581...): 3 block(s) of 64 bytes outstanding (5 acquired, 2 released)
 *   magpool:   2 block(s) acquired at ./server(conn_open+0x2e) <- ./server(main+0x51)
 *
 * @return the number of outstanding blocks (0 for pool == NULL).
 * Thread-safe; meaningful at quiescence.
 */
MAGPOOL_API size_t magpool_report_leaks(magpool_t *pool, FILE *out);

/** Output formats of magpool_stats_print / magpool_stats_print_all. */
enum {
    MAGPOOL_PRINT_TEXT = 0,      /**< lines "magpool:   key value" (default)     */
    MAGPOOL_PRINT_JSON = 1u << 0 /**< one JSON object per pool (an array for all) */
};

/**
 * Write @p pool's statistics to @p out (stderr when NULL): its name,
 * address, block_size, backend ("lockfree" / "mutex"), max_blocks,
 * magazine_size, the layer that built it ("objpool", "bufmgr", or none),
 * the diagnostics in force, and every field of magpool_stats_t, hit_rate
 * included. MAGPOOL_PRINT_TEXT:
 *
 *   magpool: pool "conn" (0x5581...)
 *   magpool:   block_size           64
 *   magpool:   backend              lockfree
 *   ...
 *   magpool:   hit_rate             0.998000
 *
 * MAGPOOL_PRINT_JSON: one object on one line, then a newline:
 *   {"name": "conn", "address": "0x5581...", "block_size": 64, "backend":
 *    "lockfree", "max_blocks": 0, "magazine_size": 256, "layer": null,
 *    "diagnostics": ["checked"], "stats": {"acquires": 5000, ...}}
 * Names are escaped (and bytes that are not UTF-8 replaced by U+FFFD), so
 * the output is valid JSON; numbers ignore the locale (LC_NUMERIC).
 *
 * @return 0, or -1 with errno:
 *   - EINVAL: pool is NULL, or flags has a bit other than MAGPOOL_PRINT_JSON;
 *   - EIO: writing to out failed.
 * Thread-safe: the statistics are one magpool_get_stats snapshot; no lock
 * of the library is held while writing (the FILE's own lock is, so lines
 * of concurrent printers do not mix within a pool). Not for the hot path.
 */
MAGPOOL_API int magpool_stats_print(magpool_t *pool, FILE *out, unsigned flags);

/**
 * magpool_stats_print for every live pool, oldest first (magpool_walk):
 * pools built by object pools and buffer managers included (their layer
 * says so; a buffer manager's class pools are named "bufmgr <manager>/<class
 * bytes>"). JSON: an array of the objects ("[]" when there is no pool);
 * text: the pools one after another ("magpool: no live pools" when none).
 *
 * The environment variable MAGPOOL_SHOW_STATS=1 (or "text") / "json" calls
 * this on stderr at exit (atexit; the variable is read when the process
 * creates its first pool). Only the process that read it prints, and a
 * fork() child only if it creates a pool of its own, so a child does not
 * repeat its parent's pools; pools destroyed before exit are not listed.
 *
 * @return 0, or -1 with errno:
 *   - EINVAL: flags has a bit other than MAGPOOL_PRINT_JSON;
 *   - ENOMEM: the walk's snapshot could not be allocated (nothing printed
 *     but a JSON "[");
 *   - EIO: writing to out failed.
 * Thread-safe, as magpool_walk; not for the hot path.
 */
MAGPOOL_API int magpool_stats_print_all(FILE *out, unsigned flags);

/**
 * Call @p fn(pool, @p ctx) for every pool that is live when the walk
 * starts, oldest first (after DPDK's rte_mempool_walk). Pools created during
 * the walk are not visited; a pool destroyed during it is visited unless
 * its destroy got to free it first.
 *
 * No lock is held while fn runs: it may call magpool_get_stats,
 * magpool_stats_print, magpool_report_leaks, magpool_get_name, trim and
 * the like on the pool it is given, walk again, or fork. Each visited pool
 * is pinned until fn returns: a magpool_destroy of it in another thread
 * waits (in its first step, before anything is freed) until then. A pool
 * is visible to the walk from inside its magpool_create, so fn may meet a
 * pool that another thread is still creating, or waiting to destroy: on
 * pools it does not own, fn should only read (the calls above). fn may
 * destroy pools it owns, the one it is given included; it must not destroy
 * a pool that belongs to an object pool or buffer manager (its layer,
 * reported by magpool_stats_print, says so), nor wait for another thread
 * that is destroying a pool the walk has yet to visit (that thread waits
 * for the walk).
 *
 * @return 0, or -1 with errno EINVAL (fn NULL) or ENOMEM (no pool visited).
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API int magpool_walk(void (*fn)(magpool_t *pool, void *ctx), void *ctx);

/**
 * Return the calling thread's cached blocks of @p pool to the shared depot, so
 * other threads can get them without a steal. Threads do this automatically
 * when they exit. No-op for NULL or the mutex backend.
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API void magpool_thread_flush(magpool_t *pool);

/**
 * Destroy the pool and unmap all its memory, outstanding blocks included.
 * Outstanding blocks are not lost silently: if any remain, the error handler
 * gets one MAGPOOL_ERR_LEAK report (count, and with MAGPOOL_CHECKED the call
 * site of the biggest group) before the memory goes.
 * No other thread may use the pool during or after the call. Threads that used
 * the pool may still be alive; their caches of it are released here.
 * NULL is a no-op.
 */
MAGPOOL_API void magpool_destroy(magpool_t *pool);

/** "MAJOR.MINOR.PATCH" of the library actually loaded (compare with
 *  MAGPOOL_VERSION_STRING, the header the program was compiled with). */
MAGPOOL_API const char *magpool_version(void);
/** MAGPOOL_VERSION_NUMBER of the library actually loaded. */
MAGPOOL_API unsigned magpool_version_number(void);

/* ======================================================================
 * Diagnostics: checked mode, sanitizer and valgrind awareness, passthrough
 * ======================================================================
 *
 * Everything here is off the fast path: a pool in fast mode (lock-free,
 * nothing below switched on) runs exactly the code it runs without it.
 * docs/diagnostics.md shows every message.
 *
 * MAGPOOL_CHECKED (flag, or MAGPOOL_CHECKED=1 in the environment at create):
 *   - release of a pointer that is no block of the pool (foreign), that points
 *     inside a block (misaligned), that is a block of another live pool
 *     (wrong pool), or of an idle block (double release) is rejected;
 *   - every block gets a redzone of canary bytes after block_size: a write
 *     past the end is reported when the block is released;
 *   - a released block is filled with a poison pattern, checked when the
 *     block is handed out again: a write after release is reported then;
 *   - the call site (a short backtrace) of every acquire is kept, so reports
 *     and magpool_report_leaks name where the block was acquired.
 *   The first 8 bytes of an idle block may hold the pool's free-list link;
 *   CHECKED verifies them too, as a link or as poison. Pools built by the
 *   object pool and the buffer manager keep their blocks' contents, so for
 *   them CHECKED means the release checks only (no redzone, no poison).
 * AddressSanitizer (compiled in when the library is built with ASan): idle
 *   blocks are poisoned (all but their first 8 bytes), so touching a block
 *   after releasing it is an ASan report even though it stays in the pool.
 * Valgrind memcheck (detected at create): the pool describes itself with the
 *   mempool client requests, so memcheck reports use after release, leaked
 *   blocks and double release. MAGPOOL_VALGRIND=0 turns this off,
 *   MAGPOOL_VALGRIND=1 forces it under every valgrind tool.
 * MAGPOOL_PASSTHROUGH=1 (environment, at create): every acquire is a
 *   posix_memalign and every release a free (as GLib's G_SLICE=always-malloc),
 *   for tools that only understand the system allocator; the pool still
 *   tracks its blocks (stats, leak report, release checks, max_blocks).
 * MAGPOOL_ABORT_ON_ERROR=1 (environment): abort() after reporting an error
 *   (a debugging aid: stop in the debugger at the first misuse).
 */

/** What went wrong (magpool_error_t.kind). */
typedef enum {
    MAGPOOL_ERR_DOUBLE_RELEASE = 1,  /**< block released while idle             */
    MAGPOOL_ERR_FOREIGN_POINTER,     /**< pointer is no block of the pool       */
    MAGPOOL_ERR_MISALIGNED_POINTER,  /**< pointer inside a block, not its start */
    MAGPOOL_ERR_WRONG_POOL,          /**< a block of another pool (err->owner)  */
    MAGPOOL_ERR_OVERFLOW,            /**< redzone canary damaged: write past the
                                          end (seen at release)                 */
    MAGPOOL_ERR_USE_AFTER_RELEASE,   /**< poison damaged: write after release
                                          (seen at the next acquire)            */
    MAGPOOL_ERR_LEAK,                /**< blocks still outstanding at destroy   */
    MAGPOOL_ERR_STATE,               /**< a block handed out while marked
                                          acquired: pool state damaged (by a
                                          wild write), never by misuse alone    */
    MAGPOOL_ERR_REENTRY,             /**< a call made while the same thread was
                                          inside magpool (a signal handler):
                                          refused (since 0.2)                   */
    MAGPOOL_ERR_WRONG_THREAD         /**< a magpool_cache_t used on a thread
                                          that did not get it: refused (since
                                          0.3)                                  */
} magpool_error_kind_t;

/** One report, passed to the error handler; valid during the call only. */
typedef struct magpool_error {
    magpool_error_kind_t kind;
    const magpool_t *pool;       /**< the pool the call was made on           */
    const char *pool_name;       /**< its name ("" when unnamed)              */
    const void *block;           /**< the pointer concerned (LEAK: one leaked
                                      block when known, else NULL)            */
    size_t offset;               /**< MISALIGNED: offset into the block;
                                      OVERFLOW / USE_AFTER_RELEASE: offset of
                                      the first damaged byte from block start */
    const magpool_t *owner;      /**< WRONG_POOL: the pool the block belongs to */
    const char *owner_name;      /**< its name, or NULL                       */
    size_t count;                /**< LEAK: blocks outstanding                */
    void *const *site;           /**< where the block was last acquired:
                                      return addresses, innermost (the
                                      acquiring call) first; NULL if unknown  */
    unsigned site_depth;         /**< entries in site                         */
    const char *message;         /**< the line the default handler prints
                                      (no newline)                            */
} magpool_error_t;

/** Error handler: called in the thread that made the faulty call. */
typedef void (*magpool_error_fn)(const magpool_error_t *err, void *ctx);

/**
 * Route every diagnostic report (all pools) to @p fn; NULL restores the
 * default, which writes err->message and a newline to stderr. The handler
 * must not call back into the pool that reports. After it returns, the
 * faulty call sets errno to EINVAL (releases) and returns normally.
 * Thread-safe, but meant to be called once, before pools are shared.
 */
MAGPOOL_API void magpool_set_error_handler(magpool_error_fn fn, void *ctx);

/**
 * Name @p pool in reports and leak listings (copied, at most
 * MAGPOOL_NAME_MAX - 1 bytes kept; NULL clears it).
 * @return 0, or -1 with errno EINVAL when pool is NULL.
 * Thread-safe.
 */
#define MAGPOOL_NAME_MAX 64
MAGPOOL_API int magpool_set_name(magpool_t *pool, const char *name);

/** The pool's name ("" when unnamed or pool is NULL). The pointer stays valid
 *  until the next magpool_set_name on the pool or its destroy. */
MAGPOOL_API const char *magpool_get_name(const magpool_t *pool);

/** Diagnostics in force on a pool (magpool_diagnostics). */
enum {
    MAGPOOL_DIAG_CHECKED = 1u << 0,     /**< release checks                  */
    MAGPOOL_DIAG_REDZONE = 1u << 1,     /**< canary, poison, acquire sites   */
    MAGPOOL_DIAG_ASAN = 1u << 2,        /**< ASan poisons idle blocks        */
    MAGPOOL_DIAG_VALGRIND = 1u << 3,    /**< memcheck mempool requests       */
    MAGPOOL_DIAG_PASSTHROUGH = 1u << 4  /**< system allocator per acquire    */
};

/** Bitmask of MAGPOOL_DIAG_* for @p pool (0: fast mode, or pool NULL). */
MAGPOOL_API unsigned magpool_diagnostics(const magpool_t *pool);

/* ======================================================================
 * ObjectPool: constructed objects, reused (Bonwick object caching)
 * ======================================================================
 *
 * An object pool is a magpool whose blocks are kept in their *constructed*
 * state. init() runs once per object, when the slab that holds it is mapped
 * (not on every acquire); reset() runs on every release, so a reused object
 * is always clean; fini() runs once per object just before its memory goes
 * back to the OS (magpool_objpool_clear / _trim / _destroy). acquire and
 * release are the pool's lock-free magazine fast path plus one indirect call
 * to reset(); init() and fini() run on the slow path, under the pool's growth
 * lock, in whichever thread grows or trims the pool.
 *
 * The hooks must not call back into the same object pool (init/fini hold its
 * growth lock: that would deadlock). They may acquire and release blocks or
 * objects of OTHER pools (fork() stays safe, and CHECKED mode does not take
 * that for re-entry), as long as no two pools' hooks use each other (a
 * cycle), and must not create or destroy pools or use a BufferManager.
 * reset() may run in any thread and concurrently with other resets of other
 * objects.
 *
 * Double or foreign release is undefined in the default mode; with the
 * environment variable MAGPOOL_CHECKED=1 the underlying pool detects it
 * (stderr line, errno EINVAL, pool unchanged), exactly as for magpool_release.
 */

/** Opaque object pool handle. */
typedef struct magpool_objpool magpool_objpool_t;

/** Object pool configuration. Zero-initialise, then set what you need. */
typedef struct magpool_objpool_config {
    size_t obj_size;        /**< bytes per object, > 0                          */
    size_t align;           /**< power of two; 0 = default (16)                 */
    size_t initial_objects; /**< constructed at create (0 = none)               */
    size_t max_objects;     /**< hard cap on objects in existence, 0 = no cap   */
    /** Once per fresh object, before it is ever handed out. Return 0 on
     *  success. A non-zero return fails the acquire (or the create) that
     *  needed the object: a positive value is taken as the errno to report;
     *  a negative value reports the errno init() left set, or EINVAL if it
     *  left errno 0. Objects of the same slab that were already constructed
     *  are fini()'d again, and nothing is lost. NULL = no constructor.      */
    int (*init)(void *obj, void *ctx);
    /** On every release, in the releasing thread, before the object can be
     *  handed out again. NULL = none.                                        */
    void (*reset)(void *obj, void *ctx);
    /** Once per constructed object, before its memory is unmapped (clear,
     *  trim, destroy). NULL = none.                                          */
    void (*fini)(void *obj, void *ctx);
    void *ctx;              /**< passed to the three hooks                      */
} magpool_objpool_config_t;

/** Object pool statistics: the underlying pool's counters (magpool_stats_t),
 *  where blocks are objects; blocks_total is the number of constructed
 *  objects and blocks_total - blocks_outstanding the idle ones. */
typedef magpool_stats_t magpool_objpool_stats_t;

/**
 * Create an object pool and construct cfg->initial_objects objects (capped at
 * max_objects when that is non-zero; whole pages are mapped, so init() may run
 * on a few more objects than asked, never more than max_objects).
 * Growth factor 2.0, automatic magazine size, lock-free backend.
 *
 * @return the pool, or NULL with errno:
 *   - EINVAL: cfg NULL, obj_size 0, align not a power of two (or > 1 MiB),
 *     obj_size x objects overflowing the address space;
 *   - ENOMEM: memory for the preallocation could not be mapped;
 *   - the error of a failing init() (see magpool_objpool_config_t.init).
 * Thread-safe.
 */
MAGPOOL_API magpool_objpool_t *magpool_objpool_create(const magpool_objpool_config_t *cfg);

/**
 * Take one constructed object: either a fresh one (init() ran once) or a
 * reused one (reset() ran when it was released).
 *
 * @return an object, or NULL with errno:
 *   - EINVAL: op is NULL;
 *   - ENOMEM: max_objects objects are outstanding, or mapping a slab failed;
 *   - the error of a failing init(); the pool is unchanged.
 * Thread-safe; lock-free unless the pool must grow.
 */
MAGPOOL_API void *magpool_objpool_acquire(magpool_objpool_t *op) MAGPOOL_MALLOC_ATTR;

/**
 * Run reset() on @p obj, then give it back to the pool for reuse. Any thread
 * may release any object. obj == NULL is a no-op; op == NULL with a non-NULL
 * obj sets errno EINVAL and does nothing.
 * Thread-safe; lock-free on the fast path (plus the cost of reset()).
 */
MAGPOOL_API void magpool_objpool_release(magpool_objpool_t *op, void *obj);

/**
 * Idle constructed objects ready to be handed out without calling init():
 * blocks_total - blocks_outstanding of the underlying pool.
 * @return the count (0 for op == NULL, errno EINVAL).
 * Thread-safe; a snapshot (takes a slow-path lock), not for the hot path.
 */
MAGPOOL_API size_t magpool_objpool_size(magpool_objpool_t *op);

/**
 * Give idle objects' memory back to the OS: fini() runs on every object of
 * each slab that is entirely idle, then the slab is unmapped (magpool_clear).
 * @return the number of objects finalised and freed (0 for NULL).
 * Thread-safe, may run while other threads acquire and release.
 */
MAGPOOL_API size_t magpool_objpool_clear(magpool_objpool_t *op);

/**
 * As magpool_objpool_clear, for memory idle longer than @p max_idle_s seconds
 * (magpool_trim; max_idle_s <= 0 is clear).
 * @return the number of objects finalised and freed (0 for NULL).
 * Thread-safe.
 */
MAGPOOL_API size_t magpool_objpool_trim(magpool_objpool_t *op, double max_idle_s);

/**
 * Snapshot of the underlying pool's counters (see magpool_get_stats).
 * @return 0, or -1 with errno EINVAL when op or out is NULL.
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API int(magpool_objpool_get_stats)(magpool_objpool_t *op, magpool_objpool_stats_t *out);
/** As magpool_get_stats_sized, for an object pool. */
MAGPOOL_API int magpool_objpool_get_stats_sized(magpool_objpool_t *op,
                                                magpool_objpool_stats_t *out, size_t out_size);
#define magpool_objpool_get_stats(...) \
    magpool_objpool_get_stats_sized(__VA_ARGS__, sizeof(magpool_objpool_stats_t))

/**
 * fini() every constructed object (outstanding ones included, since their
 * memory goes away too), unmap everything and free the pool. Objects still
 * acquired are reported first (one MAGPOOL_ERR_LEAK through the error
 * handler; see magpool_objpool_report_leaks).
 * No other thread may use the pool during or after the call. NULL is a no-op.
 */
MAGPOOL_API void magpool_objpool_destroy(magpool_objpool_t *op);

/**
 * Write a leak report for @p op to @p out (stderr when NULL): the number of
 * objects acquired and not released and, when MAGPOOL_CHECKED=1 was in the
 * environment at create, one more line per acquiring call site, most
 * objects first:
 *
 *   magpool: object pool 0x5581...: 3 object(s) of 48 bytes outstanding (5 acquired, 2 released)
 *   magpool:   2 object(s) acquired at ./server(conn_open+0x2e) <- ./server(main+0x51)
 *
 * magpool_objpool_destroy makes the same count known, without being asked:
 * when objects are still out it reports one MAGPOOL_ERR_LEAK through the
 * error handler (magpool_set_error_handler; e->pool is the object pool's
 * underlying pool, e->block one leaked object with CHECKED) before it
 * fini()s and frees them.
 *
 * @return the number of outstanding objects; 0 with errno EINVAL when op
 * is NULL.
 * Thread-safe; meaningful at quiescence. Not for the hot path.
 */
MAGPOOL_API size_t magpool_objpool_report_leaks(magpool_objpool_t *op, FILE *out);

/* ======================================================================
 * BufferManager: typed numeric buffers, 64-byte aligned, reused by size class
 * ======================================================================
 *
 * magpool_bufmgr_get(bm, count, dtype) returns room for `count` elements of
 * `dtype`, 64-byte aligned. Requests up to MAGPOOL_BUFMGR_MAX_CLASS bytes are
 * rounded up to one of 84 size classes (64, 128, 192, 256 bytes, then four
 * classes per power of two up to 256 MiB: at most 25% slack) and served from
 * one lock-free magpool per class, created on first use; a released buffer is
 * reused by the next request of the same class, never by a larger one. From
 * 64 KiB up each buffer has its own mapping inside its class pool, so an idle
 * one can go back to the OS on its own: clear_unused, the max_buffers cap,
 * and in a manager without a cap a bound of MAGPOOL_BUFMGR_IDLE_LARGE bytes
 * (64 MiB) on the idle buffers above 1 MiB it keeps resident (a release
 * beyond it gives the buffer's pages back; the buffer stays pooled).
 * Larger requests are mmap'ed directly and unmapped on release. (In 0.1 and 0.2
 * the limit was 1 MiB: a buffer above it was mapped and faulted in afresh on
 * every get.)
 *
 * Every buffer carries a 64-byte header just before it. magpool_bufmgr_release
 * first checks that the address lies in memory the manager owns (a lock-free
 * page map for pooled buffers, a small locked table for large ones) and only
 * then reads the header, so releasing a foreign pointer, an interior pointer,
 * or a buffer twice is detected and reported without corrupting the manager
 * (see magpool_bufmgr_release for the one case it cannot see).
 *
 * Synchronization: get, release, release_checked, clear_unused, get_stats
 * may all run concurrently from any threads; destroy must not overlap
 * anything; set_error_handler should be called before the manager is shared.
 */

/** Opaque buffer manager handle. */
typedef struct magpool_bufmgr magpool_bufmgr_t;

/** Element types. */
typedef enum {
    MAGPOOL_U8, MAGPOOL_I8, MAGPOOL_I16, MAGPOOL_I32, MAGPOOL_I64,
    MAGPOOL_F32, MAGPOOL_F64
} magpool_dtype_t;

/** Alignment of every buffer's data, in bytes. */
#define MAGPOOL_BUFMGR_ALIGN     64u
/** Largest pooled buffer, in bytes; larger ones are mmap'ed directly
 *  (256 MiB since 0.3; 1 MiB in 0.1 and 0.2). */
#define MAGPOOL_BUFMGR_MAX_CLASS ((size_t)1 << 28)
/** A manager created without a cap (max_buffers 0) keeps at most this many
 *  bytes of idle buffers above 1 MiB resident; released beyond it, a
 *  buffer's pages go back to the OS (since 0.3). */
#define MAGPOOL_BUFMGR_IDLE_LARGE ((size_t)64 << 20)

/** Bytes per element of @p dtype; 0 for an unknown dtype. Pure. */
MAGPOOL_API size_t magpool_dtype_size(magpool_dtype_t dtype);

/** Called for every bad release (see magpool_bufmgr_set_error_handler). */
typedef void (*magpool_bufmgr_error_fn)(void *ctx, const char *what, void *buf);

/** Buffer manager statistics (magpool_bufmgr_get_stats). */
typedef struct magpool_bufmgr_stats {
    uint64_t gets, releases;     /**< successful calls, pooled + large           */
    uint64_t hits;               /**< pooled gets served without mapping memory  */
    uint64_t misses;             /**< pooled gets that mapped a new slab         */
    uint64_t large_gets, large_releases; /**< buffers above MAX_CLASS (mmap)     */
    uint64_t bad_releases;       /**< foreign / interior / double releases caught */
    uint64_t failed;             /**< gets that returned NULL (bad input excluded) */
    size_t outstanding;          /**< buffers handed out, not released           */
    size_t idle_buffers;         /**< released buffers kept for reuse; tracked only
                                      when max_buffers != 0, else 0              */
    size_t idle_blocks;          /**< pooled blocks not handed out (released or
                                      never used yet)                            */
    size_t bytes_reserved;       /**< mapped bytes, pooled slabs + large buffers */
    unsigned classes_in_use;     /**< size classes whose pool exists             */
} magpool_bufmgr_stats_t;

/**
 * Create a buffer manager that keeps at most @p max_buffers released buffers
 * for reuse (0 = no cap on the count: idle buffers of 1 MiB and less are not
 * counted, those above are bounded in bytes by MAGPOOL_BUFMGR_IDLE_LARGE).
 *
 * The cap is enforced by giving memory back: a release that would take the
 * idle count above max_buffers returns the buffer's whole pages to the OS
 * (madvise MADV_DONTNEED; one system call, no other buffer touched) and keeps
 * the block as a fresh, uncounted one, which faults in as zero pages when it
 * is reused. For buffers of a page or more the cap on resident idle memory is
 * therefore exact; smaller buffers share pages, and their memory goes back
 * with magpool_bufmgr_clear_unused.
 *
 * @return the manager, or NULL with errno ENOMEM.
 * Thread-safe.
 */
MAGPOOL_API magpool_bufmgr_t *magpool_bufmgr_create(size_t max_buffers);

/**
 * A buffer for @p count elements of @p dtype: at least count x
 * magpool_dtype_size(dtype) bytes, data aligned to 64 bytes, contents
 * unspecified (a reused buffer holds its previous contents).
 *
 * @return the buffer, or NULL with errno:
 *   - EINVAL: bm NULL, count 0, dtype unknown, or count x element size
 *     overflowing (or beyond PTRDIFF_MAX);
 *   - ENOMEM: memory could not be mapped.
 * Thread-safe; lock-free for pooled sizes except on the first use of a class
 * and when a class pool grows; buffers above MAGPOOL_BUFMGR_MAX_CLASS cost an
 * mmap.
 */
MAGPOOL_API void *magpool_bufmgr_get(magpool_bufmgr_t *bm, size_t count,
                                     magpool_dtype_t dtype) MAGPOOL_MALLOC_ATTR;

/**
 * Give back a buffer obtained from magpool_bufmgr_get() on the same manager;
 * any thread may release any buffer. buf == NULL is a no-op.
 *
 * A pointer the manager did not hand out (foreign, interior, misaligned, or
 * from another manager) or a buffer released twice is detected: the manager
 * is left unchanged, errno is set to EINVAL, bad_releases counts it, and the
 * error handler is called (default: one line on stderr).
 * Not detectable: a double release racing with the buffer's reuse by another
 * get (the address is legitimately live again, as in every allocator). A
 * double release racing with magpool_bufmgr_clear_unused is detected like
 * any other (since 0.3; before, it could read the header of a slab being
 * unmapped).
 * Thread-safe; lock-free on the pooled fast path (one atomic RMW on the
 * buffer's own header and an epoch read section on the thread's own record,
 * plus one RMW on the manager when max_buffers != 0 or, without a cap,
 * for a buffer above 1 MiB).
 */
MAGPOOL_API void magpool_bufmgr_release(magpool_bufmgr_t *bm, void *buf);

/**
 * How many elements of its dtype the live buffer @p buf can hold: its size
 * class (or, above MAGPOOL_BUFMGR_MAX_CLASS, its whole page-rounded
 * mapping), which is at least the count it was got with. The caller may use
 * all of it. Its size in bytes is the result x magpool_dtype_size(dtype).
 * Example: 100 F64 (800 bytes) come from the 896-byte class: capacity 112.
 *
 * The same ownership checks as magpool_bufmgr_release decide whether buf is
 * a live buffer of bm, without touching memory bm does not own.
 * @return the capacity, or 0 with errno EINVAL: bm or buf NULL, buf not a
 * buffer bm handed out (foreign, interior, misaligned, another manager's),
 * or already released.
 * Thread-safe; lock-free for pooled sizes (a large buffer takes the lock of
 * the large-buffer table). buf must be owned by the caller: asking about a
 * buffer another thread may release at the same moment is a race, as any
 * use of it would be (since 0.2).
 */
MAGPOOL_API size_t magpool_bufmgr_capacity(magpool_bufmgr_t *bm, const void *buf);

/**
 * As magpool_bufmgr_release, but a bad release is reported only through the
 * return value and errno (no handler call, no stderr line).
 * @return 0 (also for buf == NULL), or -1 with errno EINVAL (bm NULL, or buf
 * not a live buffer of bm; bad_releases counts it).
 * Thread-safe.
 */
MAGPOOL_API int magpool_bufmgr_release_checked(magpool_bufmgr_t *bm, void *buf);

/**
 * Replace the handler called on a bad magpool_bufmgr_release (NULL restores
 * the default, a line on stderr). The handler runs in the releasing thread
 * and must not call into bm. Call before sharing the manager between threads.
 * No-op for bm == NULL.
 */
MAGPOOL_API void magpool_bufmgr_set_error_handler(magpool_bufmgr_t *bm,
                                                  magpool_bufmgr_error_fn fn, void *ctx);

/**
 * Free released buffers that have been idle longer than @p max_age_s seconds,
 * oldest first within each size class (magpool_trim on every class pool;
 * 0 frees every idle buffer whose slab is entirely idle).
 * @return the number of released buffers whose memory went back to the OS
 * (blocks that were never handed out are freed too but not counted);
 * 0 with errno EINVAL when bm is NULL. max_age_s is an age as for
 * magpool_trim: <= 0 or NaN frees every idle buffer (0.1 refused negative
 * and NaN ages with EINVAL; see the rules at the top of this header).
 * Thread-safe, may run while other threads get and release; not for the hot
 * path.
 */
MAGPOOL_API size_t magpool_bufmgr_clear_unused(magpool_bufmgr_t *bm, double max_age_s);

/**
 * Snapshot of the manager's counters (summed over the class pools).
 * @return 0, or -1 with errno EINVAL when bm or out is NULL.
 * Thread-safe; not for the hot path.
 */
MAGPOOL_API int(magpool_bufmgr_get_stats)(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out);
/** As magpool_get_stats_sized, for a buffer manager. */
MAGPOOL_API int magpool_bufmgr_get_stats_sized(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out,
                                               size_t out_size);
#define magpool_bufmgr_get_stats(...) \
    magpool_bufmgr_get_stats_sized(__VA_ARGS__, sizeof(magpool_bufmgr_stats_t))

/**
 * Free everything: every class pool and every large buffer, including
 * buffers still handed out, which are reported first (one MAGPOOL_ERR_LEAK
 * through the error handler; see magpool_bufmgr_report_leaks). No other
 * thread may use the manager during or after the call. NULL is a no-op.
 */
MAGPOOL_API void magpool_bufmgr_destroy(magpool_bufmgr_t *bm);

/**
 * Write a leak report for @p bm to @p out (stderr when NULL): the buffers
 * handed out and not released, per size class and for large buffers, and,
 * when MAGPOOL_CHECKED=1 was in the environment at magpool_bufmgr_create,
 * the acquiring call sites of each, most buffers first:
 *
 *   magpool: buffer manager 0x5581...: 3 buffer(s) outstanding (9 got, 6 released)
 *   magpool:   class 256 B: 2 buffer(s)
 *   magpool:     2 buffer(s) acquired at ./app(load_frame+0x31) <- ./app(main+0x8c)
 *   magpool:   large: 1 buffer(s), 4198400 bytes mapped
 *   magpool:     1 buffer(s) acquired at ./app(load_video+0x44) <- ./app(main+0x9d)
 *
 * magpool_bufmgr_destroy reports buffers still out without being asked:
 * one MAGPOOL_ERR_LEAK through the error handler (magpool_set_error_handler,
 * not the manager's own handler, which is for bad releases), with the total
 * count, e->block one leaked buffer (with CHECKED, or a large one) and
 * e->pool the size class pool of that buffer (NULL when it is a large
 * one; without CHECKED, the class pool with the most), before it frees
 * them.
 *
 * @return the number of outstanding buffers, large ones included; 0 with
 * errno EINVAL when bm is NULL.
 * Thread-safe; meaningful at quiescence. Not for the hot path.
 */
MAGPOOL_API size_t magpool_bufmgr_report_leaks(magpool_bufmgr_t *bm, FILE *out);

/* ==========================================================================
 * Live view: publishing every pool's statistics (since 0.3; lib/publish.c)
 * ========================================================================== */

/**
 * Publish the statistics of every live pool every @p interval_ms
 * milliseconds into the POSIX shared-memory segment /dev/shm/magpool.<pid>
 * (mode 0600: the same user, or root, may read it), for tools outside the
 * process: magpool-top PID (a live terminal view), magpool-record PID (JSON
 * lines) and magpool-plot. The environment variable MAGPOOL_PUBLISH=<ms>
 * does the same when the process creates its first pool (<ms> from 10 on,
 * larger than 3600000 taken as 3600000; any other value that is on, e.g. 1
 * or yes, publishes every 1000 ms; unset, empty or 0: off; if publishing
 * cannot start, one line on stderr says why and the program runs on).
 *
 * A background thread (one per process, like the trimmer's; it takes no
 * signal) takes one snapshot per interval with magpool_walk and
 * magpool_get_stats and writes it under a seqlock; acquire and release do
 * nothing for it. The segment's layout is versioned (docs/live-view.md).
 * Calling it again while publishing changes the interval and publishes at
 * once. The segment is removed by magpool_publish_stop and at exit
 * (atexit); a process killed before that leaves a stale segment, which the
 * tools recognise (its pid is gone or has another start time) and
 * `magpool-top --clean` removes; a new publisher with the same pid replaces
 * it. A fork() child does not write its parent's segment: if publishing was
 * on, the child publishes its own, /dev/shm/magpool.<child pid>, once it
 * creates a pool or calls this function (as MAGPOOL_SHOW_STATS: a child
 * that only uses inherited pools, or execs, publishes nothing and leaves
 * nothing behind; a child that publishes and ends with _exit leaves a
 * stale segment).
 *
 * @return 0, or -1 with errno:
 *   - EINVAL: interval_ms outside 10 .. 3600000;
 *   - EBUSY: another copy of the library in this process already publishes
 *     under this pid;
 *   - what shm_open, ftruncate, mmap or pthread_create set (EACCES, ENOSPC,
 *     EMFILE, EAGAIN, ...): nothing is published, nothing is left behind.
 * Thread-safe; not async-signal-safe; not for the hot path.
 */
MAGPOOL_API int magpool_publish_start(unsigned interval_ms);

/**
 * Stop publishing and remove the segment now (readers that have it open
 * see the name gone and say so). Does not wait for the publisher thread,
 * which finishes a snapshot in progress into the unlinked segment and
 * exits. A no-op when not publishing. Thread-safe; not async-signal-safe.
 */
MAGPOOL_API void magpool_publish_stop(void);

/**
 * Write the path of this process's segment ("/dev/shm/magpool.<pid>") to
 * @p buf (@p cap bytes, NUL included).
 * @return 0, or -1 with errno EINVAL (buf NULL or cap 0), ENOENT (not
 * publishing; buf becomes "") or ERANGE (cap too small; buf becomes "").
 * Thread-safe.
 */
MAGPOOL_API int magpool_publish_name(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* MAGPOOL_H */
