/* SPDX-License-Identifier: MIT */
/*
 * magpool internals: every type shared between lib/ files, in one place
 * (after mimalloc's types.h). Layers, top to bottom (docs/design.md):
 *
 *   cache.c       per-thread cache of two magazines per pool (fast path,
 *                 plain calls and per-thread handles)
 *   handle.c      per-thread handles: binding, and the route of the modes
 *                 the handle's fast path does not serve
 *   tcache.c      thread caches' life cycle: attach, detach, fork child
 *   steal.c       taking rounds out of other threads' caches (asymmetric
 *                 fence: membarrier)
 *   registry.c    which pools exist; each thread's directory of its caches;
 *                 thread-exit flush; fork handlers (the lock order)
 *   depot.c       lock-free stacks of full / empty magazines (tagged index)
 *   epoch.c       epoch-based reclamation of magazines (ck_epoch)
 *   trim.c        giving idle memory back; trimmer.c its background thread
 *   abi.c         structs of the size the program knows (the growable ABI)
 *   slab.c        mmap'd slabs carved into blocks; growth; unmapping
 *   diag.c        diagnostics: CHECKED (double / foreign / wrong-pool release,
 *                 redzones, poison, acquire sites), ASan / valgrind, passthrough,
 *                 leak reports; the list of live pools and its walk
 *   print.c       statistics printers (text, JSON), MAGPOOL_SHOW_STATS
 *   publish.c     the live view: every pool's stats in /dev/shm/magpool.<pid>
 *                 from a background thread; pubseg.c its layout and seqlock
 *   procstat.c    /proc/<pid>/stat: a process's start time (publish.c, shm_procs.c)
 *   faults.c      mmap fault injection (test hook)
 *   pool.c        create / destroy / public entry points, dispatch
 *   mutex_pool.c  the baseline: one lock around one free list
 *   stats.c       summing the per-thread counters
 *
 * Beside these, not on top of them: shm_*.c, the cross-process shared pool
 * (include/magpool_shm.h), with its own types in shm_internal.h; it calls
 * nothing above and nothing above calls it (docs/shm.md).
 */
#ifndef MAGPOOL_INTERNAL_H
#define MAGPOOL_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_epoch.h>

#include "atomic.h"
#include "magpool.h"

/* The contract's first rule (magpool.h, "One set of rules"): a NULL handle
 * is EINVAL and the neutral result, whatever the function. */
#define RETURN_IF_NULL(handle, result)                                      \
    do {                                                                    \
        if (__builtin_expect((handle) == NULL, 0)) {                        \
            errno = EINVAL;                                                 \
            return result;                                                  \
        }                                                                   \
    } while (0)

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define noinline    __attribute__((noinline))
#define hidden      __attribute__((visibility("hidden")))

/* Two lines: Intel's adjacent-line prefetcher pulls cache lines in pairs, so
 * fields written by different threads stay 128 bytes apart. */
#define MAGPOOL_DESTRUCTIVE 128

#define MAGPOOL_DEFAULT_ALIGN   16u
#define MAGPOOL_MIN_ALIGN       8u           /* a block can hold a link     */
#define MAGPOOL_MAX_ALIGN       (1u << 20)
#define MAGPOOL_MAX_MAGAZINE    4096u
#define MAGPOOL_MAX_GROW_FACTOR 64.0         /* larger factors are clamped  */

/* ------------------------------------------------------------------ slabs */

struct slab {
    char *map;          /* what mmap returned                                */
    size_t map_len;
    char *first;        /* first block (aligned)                             */
    size_t nblocks;
    _Atomic uint64_t *live; /* CHECKED: one bit per block, 1 = acquired     */
    uint64_t *spilled;  /* one bit per block, 1 = idle in the spill set      */
    size_t nspilled;    /* (both under the owning pool's growth lock)        */
};

/*
 * Hooks for layers built on a pool (ObjectPool constructs and destroys
 * objects with them). Called under the pool's growth lock.
 *  carve:   a new slab's blocks [first, first + n*stride) exist and are not yet
 *           visible to any thread; return 0, or -1 with errno set to refuse
 *           the slab (it is unmapped again and the acquire fails with errno).
 *  unmap:   the slab's blocks are about to be unmapped (clear, trim, destroy).
 *  idle_blocks_hold_state: idle blocks carry state the layer needs (a
 *           constructed object, a header), so trim must not give their pages
 *           back with madvise; only whole slabs are unmapped (with `unmap`).
 *  unmap_after_grace: the layer reads block memory of slabs it finds on its
 *           own (bufmgr.c: a header found through its page map), inside a
 *           read section of the pool's epoch domain; trim runs `unmap` (which
 *           unpublishes the slab), waits for a grace period, then unmaps.
 *           Lock-free backend only (the mutex backend has no domain).
 */
struct pool_hooks {
    int  (*carve)(void *ctx, char *first, size_t n, size_t stride);
    void (*unmap)(void *ctx, char *first, size_t n, size_t stride);
    void *ctx;
    bool idle_blocks_hold_state;
    bool unmap_after_grace;
};

/* All slabs of a pool, sorted by address. Modified only under the owner's
 * growth lock; the rwlock lets CHECKED-mode lookups run beside modification. */
struct slab_set {
    pthread_rwlock_t rw;
    struct slab *v;
    size_t n, cap;
    size_t block_size, stride, align;
    bool checked, prefault;
    bool keep_pages;    /* diag.c poison patterns live in idle blocks: trim
                           must not madvise them away                     */
    size_t redzone;     /* CHECKED: bytes after block_size (canary + site) */
    struct pool_hooks hooks;
    _Atomic size_t blocks_total;   /* written under the growth lock; read   */
    _Atomic size_t bytes_reserved; /* relaxed by stats (single writer)       */
};

/* Internal slab flag beside the public ones: blocks get a redzone (diag.c). */
#define SLAB_REDZONE   (1u << 31)
#define MAGPOOL_REDZONE 24u   /* >= 16 canary bytes + one site word        */

int    slab_set_init(struct slab_set *s, size_t block_size, size_t align,
                     unsigned flags);
void   slab_set_destroy(struct slab_set *s);
/* Map a slab of at least min_blocks and at most max_blocks blocks (whole
 * pages). Returns 0 and the carved range, or -1 with errno ENOMEM. */
int    slab_grow(struct slab_set *s, size_t min_blocks, size_t max_blocks,
                 char **first, size_t *nblocks);
/* idle[0..n) are idle blocks owned by the caller. Slabs whose every block is
 * in idle[] are unmapped; the survivors are compacted to the front of idle[].
 * Returns the number of blocks unmapped; *kept = survivors; *resident = the
 * bytes of the unmapped slabs that were resident (given back to the OS).
 * grace: NULL, or the pool's epoch domain when the hooks ask for
 * unmap_after_grace: the unmap hooks run first, then a grace period of
 * `grace` (growth lock held, no read section), then the munmaps. */
struct epoch_domain;
size_t slab_reclaim(struct slab_set *s, void **idle, size_t n, size_t *kept,
                    size_t *resident, struct epoch_domain *grace);

/* The spill set (lock-free backend, growth lock held): idle blocks parked
 * without a magazine because magazine memory ran out. One bit per block,
 * allocated with the slab, so parking a block neither writes into it (an
 * ObjectPool's idle objects are constructed, a BufferManager block starts
 * with an atomic header) nor needs memory. add: false if block lies in no
 * slab (not ours: dropped). take: a parked block, or NULL. */
bool   slab_spill_add(struct slab_set *s, void *block);
void  *slab_spill_take(struct slab_set *s);

/* idle[0..n) are idle blocks owned by the caller that hold no pool data
 * (lock-free backend). Sorts idle[] and madvise(MADV_DONTNEED)s every page
 * lying wholly inside a run of idle blocks. Returns the number of blocks
 * whose memory went back to the OS; *bytes = the bytes of those pages that
 * were resident (given back to the OS). */
size_t slab_release_pages(struct slab_set *s, void **idle, size_t n, size_t *bytes);

/* CHECKED mode: 0 ok; -1 not a block of this pool (foreign or misaligned);
 * -2 wrong state (double release / block handed out twice). */
int    slab_mark_acquired(struct slab_set *s, void *block);
int    slab_mark_released(struct slab_set *s, void *block);
/* Where ptr lies: 1 at the start of a block, 0 inside one (*off = offset
 * from the block start, *block = that block), -1 not in this set. *live
 * (CHECKED only, else -1): the block's acquired bit. Takes rw for reading. */
int    slab_lookup(struct slab_set *s, const void *ptr, void **block, size_t *off,
                   int *live);
/* faults.c: every slab mmap goes through here (a test hook can fail it). */
void  *slab_mmap(size_t len, int flags);
extern void magpool_test_fail_mmap(unsigned long nth, unsigned long count) hidden;
extern unsigned long magpool_test_mmap_calls(void) hidden;

/* --------------------------------------------------------------- magazines */

/* A magazine: an array of up to M block pointers. `next` links it on a depot
 * stack; it is atomic because a popper may read it while the magazine, popped
 * and re-pushed by others meanwhile, gets a new link (the tag then fails the
 * popper's CAS, but the read itself must not be a data race). */
struct mag {
    _Atomic uint32_t next;  /* index+1 of the next magazine on a stack, 0=end */
    uint32_t self;          /* own index+1                                   */
    uint32_t count;         /* rounds held while on a depot stack            */
    uint32_t pad_;
    uint64_t stamp;         /* pool_clock_ns() when last pushed (LRU age)    */
    void *rounds[];
};

/* A Treiber stack head: (tag << MAG_INDEX_BITS) | (index+1). Every
 * successful CAS bumps the 40-bit tag, so a head that went A -> B -> A
 * between a popper's load and its CAS no longer compares equal (ABA). Tags
 * wrap after 2^40 operations on one stack; a popper would have to stall
 * across exactly a multiple of that (Folly's IndexedMemPool makes the same
 * trade with 32 bits). */
#define MAG_INDEX_BITS 24u
struct mag_stack {
    _Alignas(MAGPOOL_DESTRUCTIVE) _Atomic uint64_t head;
};

/* Magazine index -> address: a two-level table (leaf pointers are published
 * once and live as long as the pool; magazine slots are cleared when trim
 * frees a magazine, and reused by later allocations). */
#define MAG_LEAF_BITS 12u
#define MAG_LEAF_SIZE (1u << MAG_LEAF_BITS)
#define MAG_LEAVES    4096u                        /* 2^24 index slots        */
#define MAG_INDEX_MAX ((1u << MAG_INDEX_BITS) - 1) /* index+1 fits the head   */

typedef _Atomic(struct mag *) mag_slot_t;

struct depot {
    struct mag_stack full;   /* magazines with >= 1 round                  */
    struct mag_stack empty;  /* magazines with no round                    */
    _Alignas(MAGPOOL_DESTRUCTIVE)
    _Atomic(mag_slot_t *) *leaves; /* MAG_LEAVES entries, read-mostly       */
    size_t mag_stride;       /* bytes per magazine (128-byte multiple)     */
    unsigned rounds;         /* M                                          */
    pthread_mutex_t alloc_lock; /* allocation / retirement of magazines    */
    uint32_t nidx;           /* indices ever handed out (under alloc_lock) */
    uint32_t *free_idx;      /* retired indices for reuse (under alloc_lock) */
    uint32_t nfree_idx, cap_free_idx;
    _Atomic size_t live;     /* magazines allocated and not freed           */
};

int         depot_init(struct depot *d, unsigned rounds);
void        depot_destroy(struct depot *d);
struct mag *depot_mag_alloc(struct depot *d);          /* NULL + ENOMEM  */
/* Push stamps the magazine with the current time (its LRU age). */
void        depot_push(struct depot *d, struct mag_stack *s, struct mag *m);
void        depot_push_stamped(struct depot *d, struct mag_stack *s, struct mag *m,
                               uint64_t stamp);
/* Pop. Callers not holding the pool's growth lock must be inside an epoch
 * read section (trim frees magazines under that lock, after a grace period). */
struct mag *depot_pop(struct depot *d, struct mag_stack *s);
/* An empty magazine: from the empty stack, else freshly allocated. */
struct mag *depot_get_empty(struct depot *d);
/* Take m (owned by the caller, on no stack) out of the index table. Its
 * memory may be freed only after epoch_synchronize(). */
void        depot_retire(struct depot *d, struct mag *m);
void        depot_mag_free(struct depot *d, struct mag *m);
/* Test hooks (hidden; reached by white-box tests through the static lib). */
extern void (*magpool_test_depot_pop_hook)(void) hidden;  /* after reading next */
extern void (*magpool_test_depot_read_hook)(void) hidden; /* before reading next */
extern bool magpool_test_depot_no_tags hidden;
extern bool magpool_test_mag_alloc_fails hidden; /* magazine memory runs out */

/* ------------------------------------------------------------ epochs */

/* Epoch-based reclamation (lib/epoch.c): one private ck_epoch domain per
 * pool. Threads that pop from the depot without the growth lock do so inside
 * a read section of their reader record (one per thread cache); trim retires
 * magazines, waits for a grace period, then frees them. A read section takes
 * no lock and waits for nothing (docs/design.md, "Locks and grace periods"). */
struct epoch_domain {
    ck_epoch_t ck;
    char gp_model;          /* TSan: the grace period as a virtual rwlock  */
    char overflow_sync;     /* TSan: sections that read too many magazines */
};

int  epoch_domain_init(struct epoch_domain *d);
void epoch_domain_destroy(struct epoch_domain *d);  /* frees every record */
ck_epoch_record_t *epoch_reader_get(struct epoch_domain *d); /* reg_lock; NULL+ENOMEM */
void epoch_reader_put(ck_epoch_record_t *r);                 /* reg_lock  */
void epoch_read_lock(struct epoch_domain *d, ck_epoch_record_t *r);
void epoch_read_unlock(struct epoch_domain *d, ck_epoch_record_t *r);
void epoch_synchronize(struct epoch_domain *d);     /* growth lock held     */
void epoch_fork_child(struct epoch_domain *d, ck_epoch_record_t *keep);
/* TSan: obj was read inside the current read section / is about to be freed
 * after a grace period (the per-object reclamation edge). */
void epoch_note_read(const void *obj);
void epoch_before_free(const void *obj);
extern bool magpool_test_skip_grace_period hidden;
/* slab.c: asked where a new slab's bookkeeping (its spill and live bitmaps)
 * is allocated, with the slab's first block; true = that allocation fails
 * (ENOMEM) — stress_bufmgr_grow_fail's fault injection. */
extern bool (*magpool_test_slab_books_fail)(char *first) hidden;

/* Every lock the library takes goes through mutex_lock(), which in
 * sanitizer builds (MAGPOOL_LOCK_ASSERTS) checks that the caller is not
 * inside an epoch read section. */
void epoch_check_no_read_section(const char *lock);
extern bool magpool_test_lock_asserts_off hidden;
#ifdef MAGPOOL_LOCK_ASSERTS
#define mutex_lock(m) (epoch_check_no_read_section(#m), pthread_mutex_lock(m))
#else
#define mutex_lock(m) pthread_mutex_lock(m)
#endif

/* ------------------------------------------------------------ thread cache */

/*
 * One thread's cache of one pool. The first line is written only by the
 * owning thread, except `steal`, which a stealer sets under the pool's growth
 * lock (see cache.c for the protocol).
 *
 * A struct tcache is also what magpool_cache_get() hands out as the
 * program's magpool_cache_t (cache.c, "Per-thread handles"): the thread's own
 * cache of a plain lock-free pool, or a route object: a struct tcache with
 * no magazines (lrounds = mrounds = 0), on no list, whose steal word is
 * STEAL_ROUTE for good, so the handle's fast path (which goes to its slow
 * path on any nonzero steal word) always sends its calls to the normal path
 * of the pool's mode (handle.c). A real cache's steal word is 0 or 1 (a
 * steal pending): its owner's busy flag is written by its owner only.
 */
struct tcache {
    _Alignas(MAGPOOL_DESTRUCTIVE)
    _Atomic uint32_t busy;      /* owner is inside a cache operation        */
    _Atomic uint32_t steal;     /* a stealer wants this cache's rounds      */
    uint32_t lrounds, prounds;  /* rounds in loaded / previous              */
    uint32_t mrounds;           /* M, copied here to keep the fast path on one line */
    uint32_t pad_;
    struct mag *loaded, *previous;
    _Atomic uint64_t acquires, releases;        /* single-writer counters  */
    _Atomic uint64_t depot_gets, depot_puts;
    /* cold: owned by the pool's reg_lock */
    struct tcache *next, *prev;
    magpool_t *pool;
    /* trim's view of this cache (growth lock): the op count it last saw and
     * when it last saw it change, i.e. a lower bound of the thread's last
     * activity. Costs the fast path nothing. */
    uint64_t trim_ops;
    uint64_t trim_seen;
    ck_epoch_record_t *reader;  /* this thread's reader in p's epoch domain */
    uint32_t diag_depth;        /* CHECKED: calls of the owner in progress   */
    bool victim;                /* steal in progress (reg_lock)             */
    /* handle.c: a real cache of a diagnostic pool: its owner's route object
     * (made by magpool_cache_get, freed with the cache), else NULL; a route
     * object: the real cache it stands for (NULL: the mutex backend's). */
    struct tcache *handle_route;
    struct tcache *route_of;
};
#define STEAL_ROUTE 2u  /* a route object's steal word (never a real cache's) */

/* ------------------------------------------------------------------ pool */

/* MODE_LOCKFREE_DIAG: the lock-free backend with any diagnostic on (diag.c:
 * CHECKED, ASan poisoning, valgrind mempool requests, passthrough). The fast
 * path tests only mode == MODE_LOCKFREE; everything else is off it. */
enum pool_mode { MODE_LOCKFREE = 0, MODE_LOCKFREE_DIAG = 1, MODE_MUTEX = 2 };

struct mutex_pool {
    pthread_mutex_t lock;
    void *free;                 /* intrusive free list                     */
    size_t nfree;
    char *bump, *bump_end;      /* carving cursor in the newest slab       */
    size_t carved;              /* blocks handed to the free list or out   */
    _Atomic uint64_t acquires, releases; /* written under lock, read relaxed */
};

struct magpool {
    /* read-only after create: shared by every thread without contention */
    _Alignas(MAGPOOL_DESTRUCTIVE)
    enum pool_mode mode;
    uint32_t slot;              /* index in the registry / thread directories */
    uint32_t fast_slot;         /* slot if mode == MODE_LOCKFREE, else UINT32_MAX */
    uint64_t uid;               /* never reused, tells pool incarnations apart */
    size_t block_size;
    size_t max_blocks;          /* 0 = unlimited                            */
    size_t initial_blocks;
    double grow_factor;
    unsigned flags;

    struct depot depot;         /* lock-free backend                        */
    struct epoch_domain epoch;  /* reclamation of the depot's magazines     */
    struct mutex_pool mp;       /* mutex backend                            */
    struct tcache route;        /* mutex backend: the one magpool_cache_t of
                                   every thread (STEAL_ROUTE, no magazines) */
    struct slab_set slabs;

    /* Growth lock: growth, steals, clear, the spill set. Lock order: the
     * table in docs/design.md, "Locks and grace periods". */
    pthread_mutex_t grow_lock;
    _Atomic size_t nspill;      /* blocks in the spill set (slab.c): written
                                   under the growth lock, read by stats     */

    /* Thread caches of this pool, and the counters of detached ones. */
    pthread_mutex_t reg_lock;
    bool fork_quiesced;         /* fork prepare stopped every other owner   */
    struct tcache *tcaches;
    uint64_t nthreads;
    uint64_t retired_acquires, retired_releases;
    uint64_t retired_depot_gets, retired_depot_puts;

    /* Slow-path counters, written under grow_lock, read relaxed by stats. */
    _Atomic uint64_t misses, grows, trims, failed, steals, reclaims;
    _Atomic uint64_t bytes_returned;
    uint64_t trim_ops, trim_seen; /* mutex backend: trim's idle detection */

    /* Background trimming (trimmer.c, under its trimmer_lock). */
    struct magpool *trim_next;
    uint64_t trim_interval_ns, trim_age_ns, trim_due;
    bool trim_listed;
    _Atomic uint64_t uncached_acquires, uncached_releases;

    /* Diagnostics (diag.c), read-only after create. diag_flags != 0 routes
     * every acquire/release through diag_acquire/diag_release. */
    unsigned diag_flags;        /* DIAG_* below                             */
    struct pool_diag *diag;     /* name, leak sites, passthrough set; never NULL */
};

/* The spill set (growth lock held): see slab_spill_add(). */
static inline void spill_push_locked(magpool_t *p, void *b)
{
    if (slab_spill_add(&p->slabs, b))
        counter_inc(&p->nspill); /* growth lock: one writer */
}

static inline void *spill_pop_locked(magpool_t *p)
{
    if (atomic_load_relaxed(&p->nspill) == 0)
        return NULL;
    void *b = slab_spill_take(&p->slabs);
    if (b)
        atomic_store_relaxed(&p->nspill, atomic_load_relaxed(&p->nspill) - 1);
    return b;
}

/* abi.c: structs of the size the program knows (see abi.c). The sizes of
 * the 0.1 structs, the smallest a program may pass: */
#define CONFIG_SIZE_0_1       sizeof(magpool_config_t) /* not grown yet: when a
                                  field is appended, offsetof(that field) */
#define STATS_SIZE_0_1        offsetof(magpool_stats_t, reclaims)
#define BUFMGR_STATS_SIZE_0_1 sizeof(magpool_bufmgr_stats_t) /* not grown yet */
int abi_copy_out(void *dst, size_t dst_size, const void *src, size_t src_size, size_t min_size);
int abi_copy_in(void *dst, size_t dst_size, const void *src, size_t src_size, size_t min_size);

/* pool.c */
magpool_t *pool_create_hooked(const magpool_config_t *cfg, const struct pool_hooks *hooks);
/* Monotonic clock for ages (trim), in ns; tests inject their own. */
extern uint64_t (*magpool_test_clock_ns)(void) hidden;
uint64_t pool_clock_ns(void);
uint64_t pool_age_ns(double age_s);   /* an age parameter, per the contract */
size_t   pool_trim_ns(magpool_t *p, uint64_t max_idle_ns); /* magpool_trim */
size_t pool_grow_request(const magpool_t *p, size_t total);
int    pool_map_slab(magpool_t *p, char **first, size_t *n);

/* diag.c */
enum {
    DIAG_CHECKED = MAGPOOL_DIAG_CHECKED,         /* live bitmap              */
    DIAG_REDZONE = MAGPOOL_DIAG_REDZONE,         /* canary, poison, sites    */
    DIAG_ASAN = MAGPOOL_DIAG_ASAN,               /* ASan shadow poisoning    */
    DIAG_VALGRIND = MAGPOOL_DIAG_VALGRIND,       /* memcheck mempool requests */
    DIAG_PASSTHROUGH = MAGPOOL_DIAG_PASSTHROUGH, /* malloc per acquire       */
};
/* Which diagnostics a new pool gets (config, environment, tools present). */
unsigned diag_select(const magpool_config_t *cfg, const struct pool_hooks *hooks);
/* Allocate p->diag and set p->slabs.hooks: the layered pool's own (given),
 * or diag.c's carve / unmap hooks when blocks are poisoned. -1: no memory. */
int    diag_pool_init(magpool_t *p, const struct pool_hooks *given);
void   diag_pool_register(magpool_t *p);      /* after registry_add          */
void   diag_fork_prepare(void);               /* registry.c's fork handlers  */
unsigned diag_hooks_enter(void);              /* slab.c, around pool hooks   */
void   diag_hooks_leave(unsigned depth);
void   diag_fork_release(void);
void   diag_pool_free(magpool_t *p);          /* first step of pool_free     */
void   diag_destroy_report(magpool_t *p);     /* start of magpool_destroy    */
void   diag_stats(magpool_t *p, magpool_stats_t *out);
size_t diag_report_leaks(magpool_t *p, FILE *out);
void  *diag_acquire(magpool_t *p, void *caller);
extern void (*magpool_test_diag_inside_hook)(void) hidden;
void   diag_release(magpool_t *p, void *block, void *caller);
/* handle.c: report a handle used on another thread (errno EINVAL). */
void   diag_report_wrong_thread(magpool_t *p, const void *block);
/* Mutex backend, CHECKED: may the free list's next link be followed? */
bool   diag_link_ok(magpool_t *p, void *next);
bool   diag_env_on(const char *name);         /* set, non-empty and not "0" */
void   diag_pool_name(const magpool_t *p, char *buf, size_t cap); /* a copy */
/* Which layer built p ("objpool", "bufmgr"; NULL: none). */
void   diag_set_layer(magpool_t *p, const char *layer);
const char *diag_layer(const magpool_t *p);
/* Leak reports of the layers (objpool.c, bufmgr.c). A site id for the
 * call whose return address is caller (0: unknown). */
uint32_t diag_site_capture(void *caller);
/* Lines "magpool: <indent>N <unit>(s) acquired at <stack>", most first,
 * for p's outstanding blocks (nothing when p keeps no sites), or for the
 * given site ids. */
void   diag_print_sites(magpool_t *p, size_t outstanding, FILE *out, const char *indent,
                        const char *unit);
void   diag_print_site_ids(const uint32_t *ids, size_t n, FILE *out, const char *indent,
                           const char *unit);
/* The biggest group of p's outstanding blocks: its site and one block
 * (0 / NULL when p keeps no sites). */
uint32_t diag_top_site(magpool_t *p, const void **block);
/* One MAGPOOL_ERR_LEAK through the error handler: message = head + the
 * site; p may be NULL (no pool holds the example block). errno kept. */
void   diag_leak_report(magpool_t *p, size_t count, const void *block, uint32_t site,
                        const char *head);

/* cache.c: the fast path and its slow paths */
void  *cache_acquire_lockfree(magpool_t *p);          /* diag.c's way in     */
void   cache_release_lockfree(magpool_t *p, void *block);
int    cache_grow_locked(magpool_t *p);                 /* pool.c create      */
/* handle.c: what handle calls on a STEAL_ROUTE cache do (the pool's normal
 * path, after CHECKED's same-thread check); caller = the application's
 * call site. */
void  *handle_route_acquire(struct tcache *tc, void *caller);
void   handle_route_release(struct tcache *tc, void *block, void *caller);
void   handle_route_init(magpool_t *p);                 /* pool.c create      */

/* tcache.c: thread caches' life cycle */
struct tcache *cache_attach(magpool_t *p);              /* registry.c         */
void   cache_detach(magpool_t *p, struct tcache *tc);   /* registry lock held */
void   cache_free_all(magpool_t *p);                    /* destroy            */
void   cache_flush_self(magpool_t *p);
void   cache_fork_child(magpool_t *p, struct tcache *mine, bool quiesced);
struct mag *cache_get_empty(magpool_t *p, ck_epoch_record_t *reader);
extern bool magpool_test_lock_in_read_section hidden;

/* steal.c: taking rounds out of other threads' caches (growth lock held) */
void   fence_setup(void);
bool   heavy_fence_available(void);
bool   heavy_fence(void);
extern long (*magpool_test_membarrier)(int cmd) hidden;
bool   stop_owners_locked(magpool_t *p, struct tcache *self,
                          bool (*want)(struct tcache *, void *), void *arg);
void   release_owners_locked(magpool_t *p);
size_t cache_flush_locked(magpool_t *p, struct tcache *tc, uint64_t stamp,
                          struct mag **keep);
size_t cache_steal_locked(magpool_t *p, struct tcache *self,
                          bool (*want)(struct tcache *, void *), void *arg,
                          struct mag **keep, uint64_t *caches);

/* trim.c */
size_t cache_trim(magpool_t *p, uint64_t max_idle_ns);

/* registry.c */
void   registry_init_once(void);                /* fork handlers installed  */
int    registry_add(magpool_t *p);
void   registry_remove(magpool_t *p);
struct tcache *registry_tcache_slow(magpool_t *p);
extern bool magpool_test_skip_exit_flush hidden;

struct tdir_entry {
    uint64_t uid;
    struct tcache *tc;
};
struct tdir {
    uint32_t cap;
    struct tdir_entry e[];
};
/* The fast path's only thread-local variable (diag.c keeps one more word, on
 * diagnostic paths only): one pointer, initial-exec so the fast path
 * reads it with one %fs-relative load even from a shared library. glibc's
 * static TLS surplus (used when the library is dlopen'ed) easily holds it.
 * It starts out pointing at an empty directory (cap 0), never NULL, so the
 * fast path needs no NULL test. */
extern __thread struct tdir *magpool_tls_dir
    __attribute__((tls_model("initial-exec"))) hidden;
extern struct tdir magpool_no_tdir hidden;

/* Whether directory d has a live entry for p: slot in range and made for this
 * incarnation of the pool (uids are never reused). */
static inline bool tdir_has(const struct tdir *d, const magpool_t *p)
{
    return p->slot < d->cap && d->e[p->slot].uid == p->uid;
}

/* The calling thread's cache of p if it has one, else NULL (no allocation). */
static inline struct tcache *tcache_lookup(const magpool_t *p)
{
    struct tdir *d = magpool_tls_dir;
    return tdir_has(d, p) ? d->e[p->slot].tc : NULL;
}

/* mutex_pool.c */
int    mutex_pool_init(magpool_t *p);
void  *mutex_pool_acquire(magpool_t *p);
void   mutex_pool_release(magpool_t *p, void *block);
/* diag.c: as acquire; with CHECKED (bad != NULL) a free-list link that is
 * not an idle block of the pool is not followed: the list is cut there and
 * *bad is the block whose link was damaged (written after release). */
void  *mutex_pool_take(magpool_t *p, void **bad);
size_t mutex_pool_trim(magpool_t *p, uint64_t max_idle_ns);
void   mutex_pool_stats(magpool_t *p, magpool_stats_t *out);
void   mutex_pool_destroy(magpool_t *p);

/* bufmgr.c: runs between the page-map lookup and the header read of a
 * release or capacity query (stress_bufmgr_race widens that window) */
extern void (*magpool_test_bufmgr_header_hook)(void) hidden;
/* bufmgr.c: its managers' locks, for registry.c's fork handlers */
void   bufmgr_fork_prepare(void);
void   bufmgr_fork_release(void);

/* trimmer.c */
void   bg_cond_init(pthread_cond_t *c);     /* waits on CLOCK_MONOTONIC    */
int    bg_thread_start(void *(*fn)(void *), void *arg); /* detached, no
                                               signals; -1 + errno      */
void   trimmer_forget(magpool_t *p);
void   trimmer_fork_prepare(void);
void   trimmer_fork_parent(void);
void   trimmer_fork_child(void);

/* stats.c */
void   cache_stats(magpool_t *p, magpool_stats_t *out);

/* print.c: MAGPOOL_SHOW_STATS; called by every pool creation */
void   print_pool_created(void);
/* print.c: one pool's description and statistics, taken at once (no lock
 * held after); -1 when magpool_get_stats fails. */
struct pool_view {
    const magpool_t *pool;
    char name[MAGPOOL_NAME_MAX];
    const char *backend, *layer;
    size_t block_size, max_blocks;
    unsigned magazine_size, diag;
    magpool_stats_t st;
};
int    view_take(magpool_t *p, struct pool_view *v);

/* publish.c: MAGPOOL_PUBLISH (called by every pool creation) and the
 * publisher's part of registry.c's fork handlers (its lock is a leaf) */
void   publish_pool_created(void);
void   publish_fork_prepare(void);
void   publish_fork_parent(void);
void   publish_fork_child(void);

#endif
