/* SPDX-License-Identifier: MIT */
/*
 * BufferManager: typed numeric buffers served from size-class magpools.
 *
 *   get(count, dtype) ── bytes ≤ 256 MiB ─▶ class c (84 classes: 64..256 B by
 *        │                                 64, then 4 per power of two)
 *        │                                 magpool of blocks [64 B header |
 *        │                                 class_size(c) data], align 64
 *        └──── bytes > 256 MiB ───────────▶ mmap [header | data], recorded in a
 *                                          small locked table, munmap on release
 *
 * Why classes up to 256 MiB (MAGPOOL_BUFMGR_MAX_CLASS): until 0.1 every
 * buffer above 1 MiB was a fresh mmap, faulted in page by page on first use
 * and unmapped on release — for a 1e6-element float64 array (8 MB) that is
 * ~2000 page faults and two system calls per get/release pair, the cost the
 * manager exists to remove (bench_objects, "large" rows). From 64 KiB up a
 * class pool maps one buffer per slab, so an idle large buffer still goes
 * back to the OS on its own (clear_unused, the max_buffers purge, the
 * idle-bytes bound of an uncapped manager: see max_buffers below), and a
 * thread parks at most 2 buffers of a class above 1 MiB (magazines of 1).
 * The class slack stays <= 25 %, which costs address space only: pages of
 * a class buffer beyond the requested size are never touched unless the
 * caller writes there. Above 256 MiB a buffer is rare enough, and its page
 * faults dominate the mmap call by so much, that mapping it directly costs
 * nothing relative to its use — and keeps memory from being held idle.
 *
 * Header (the block's first 64 bytes; the data after it is 64-byte aligned):
 * magic (MAGIC ^ header address, so a copied header does not validate), a
 * state word FRESH(0) / LIVE / IDLE, count and dtype. Fresh mmap memory is
 * zero, so a never-used block is FRESH without being written at carve time.
 *
 * Release must not read memory at an arbitrary address. Ownership is decided
 * first, without a lock, by a page map: a three-level radix tree over 4 KiB
 * pages (as tcmalloc's pagemap) whose leaf entry says "page k of a slab of
 * class c". The carve hook of each class pool fills the entries of a new slab
 * before any of its blocks is visible; the unmap hook clears them. Nodes are
 * never freed before the manager is destroyed, so a lookup never touches freed
 * memory. Only when the page map claims the address (and the offset is a
 * block start of that slab) is the header read; then a CAS LIVE -> IDLE on
 * the state word makes exactly one of two racing releases win.
 *
 * The slab may be unmapped by a clear_unused between the lookup and the
 * read (a double release: the first one made the block idle). So lookup
 * and read happen inside a read section of the class pool's epoch domain,
 * and the pool unmaps a slab only a grace period after the unmap hook
 * cleared its entries (see buf_enter below for why this and not the thread
 * cache's busy flag).
 *
 * max_buffers: an idle counter (relaxed RMW, only when a cap is set) counts
 * released buffers kept in the pools. A release that would exceed the cap
 * returns the buffer's whole pages to the OS (madvise MADV_DONTNEED) and
 * leaves the block in its pool as a FRESH, uncounted block. Why not give the
 * block itself back? The core frees memory a slab at a time (magpool_clear
 * would also drop every other cached buffer of the class and signal every
 * thread); purging pages costs one syscall, keeps the fast path local, and
 * makes the cap exact for every class of a page or more. Sub-page buffers
 * share pages: beyond the cap they are kept as fresh blocks, and their
 * memory (bounded by the class pool's high-water mark) goes back with
 * clear_unused.
 *
 * An uncapped manager (max_buffers 0) bounds what it keeps in bytes instead,
 * for the classes above 1 MiB only: at most MAGPOOL_BUFMGR_IDLE_LARGE bytes
 * (64 MiB) of idle buffers of those classes stay resident (idle_large_bytes,
 * relaxed RMW on releases and reuses of those classes only); a release
 * beyond it purges the buffer's pages as the cap does. Up to 0.2 such
 * buffers were unmapped on release, so a program that never calls
 * clear_unused did not keep them; without this bound, buffers released
 * once of many large classes would stay resident for good.
 *
 * Leaks: each class pool counts its outstanding buffers; large ones are the
 * table's entries. In CHECKED mode (MAGPOOL_CHECKED=1 when the manager is
 * created) the class pools keep each outstanding buffer's acquire site
 * (diag.c), which get passes down as its own caller's; a large buffer keeps
 * its site in its header. Destroy reports what is still out (one
 * MAGPOOL_ERR_LEAK through the error handler) before freeing it.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define BM_HDR      64u
/* An uncapped manager keeps at most BM_IDLE_LARGE bytes of idle buffers of
 * the classes above BM_BUDGET_FROM resident (header comment, "max_buffers"). */
#define BM_BUDGET_FROM ((size_t)1 << 20)
#define BM_IDLE_LARGE  MAGPOOL_BUFMGR_IDLE_LARGE
#define BM_TOP_LOG2 28u                 /* largest class: 256 MiB            */
#define BM_NCLASS   (4u + 4u * (BM_TOP_LOG2 - 8u)) /* 84                    */
_Static_assert(MAGPOOL_BUFMGR_MAX_CLASS == (size_t)1 << BM_TOP_LOG2,
               "the header's limit is the largest class");
#define BM_MAGIC    UINT64_C(0x6d61676275666d72) /* "magbufmr" */

enum { ST_FRESH = 0, ST_LIVE = 1, ST_IDLE = 2 };

struct bhdr {
    _Atomic uint64_t magic;   /* BM_MAGIC ^ (uintptr_t)hdr once handed out  */
    _Atomic uint32_t state;   /* ST_*                                         */
    uint32_t dtype;
    size_t count;
    size_t map_len;           /* large buffers: the mapping's length          */
    uint32_t site;            /* large buffers, CHECKED: acquire site id      */
};
_Static_assert(sizeof(struct bhdr) <= BM_HDR, "header fits in 64 bytes");

/* ---------------------------------------------------------------- page map */

#define PM_SHIFT   12u                 /* 4 KiB granules, whatever the page size */
#define PM_BITS    12u
#define PM_FAN     (1u << PM_BITS)
#define PM_VA_BITS 48u                 /* PM_SHIFT + 3 x PM_BITS                 */
#define PM_MAX_IDX ((1u << 24) - 1)    /* granules per slab (entry's high bits)  */

struct pm_leaf { _Atomic uint32_t e[PM_FAN]; };   /* (idx << 8) | (class + 1) */
struct pm_mid  { _Atomic(struct pm_leaf *) l[PM_FAN]; };

/* ------------------------------------------------------------------ manager */

struct bm_class {
    _Atomic(magpool_t *) pool;          /* created on first use             */
    struct magpool_bufmgr *bm;          /* hook context                      */
    unsigned idx;
    bool checked;                       /* the pool is CHECKED: get passes its
                                           caller down (written before `pool`
                                           is published)                     */
    size_t stride;                      /* BM_HDR + class size               */
    bool budgeted;                      /* class above 1 MiB: its idle bytes
                                           count against BM_IDLE_LARGE when
                                           the manager is uncapped           */
};

struct magpool_bufmgr {
    /* read-mostly */
    _Alignas(MAGPOOL_DESTRUCTIVE)
    size_t max_buffers;
    size_t page;
    bool checked;                       /* MAGPOOL_CHECKED=1 at create       */
    magpool_bufmgr_error_fn err_fn;
    void *err_ctx;
    _Atomic bool destroying;
    struct bm_class cls[BM_NCLASS];

    /* written by every pooled release/reuse when max_buffers != 0 */
    _Alignas(MAGPOOL_DESTRUCTIVE)
    _Atomic size_t idle;
    /* uncapped manager: bytes of idle buffers above 1 MiB kept resident */
    _Atomic size_t idle_large_bytes;

    /* slow paths */
    _Alignas(MAGPOOL_DESTRUCTIVE)
    pthread_mutex_t create_lock;        /* class pool creation               */
    pthread_mutex_t trim_lock;          /* serialises clear_unused            */
    pthread_mutex_t large_lock;         /* the large table                    */
    uintptr_t *large;                   /* sorted header addresses            */
    size_t nlarge, large_cap;
    _Atomic uint64_t large_gets, large_releases, large_failed, bad_releases;
    _Atomic size_t large_bytes;
    _Atomic size_t freed;               /* IDLE buffers unmapped (unmap hook) */

    _Atomic(struct pm_mid *) pm[PM_FAN];
    struct magpool_bufmgr *next_live, *prev_live; /* managers_lock */
};

/* A released buffer joins the kept idle ones if that keeps *kept (a count,
 * or bytes) within limit; false: it is not counted, and its pages are to be
 * purged. Relaxed: the counter only bounds memory, it orders nothing. */
static inline bool idle_kept(_Atomic size_t *kept, size_t add, size_t limit)
{
    if (likely(atomic_fetch_add_relaxed(kept, add) + add <= limit))
        return true;
    atomic_fetch_sub_relaxed(kept, add);
    return false;
}

/* Idle buffers leaving the manager's keeping (reused by a get, or unmapped
 * by a trim): the idle count of a capped manager, the idle bytes above
 * 1 MiB of an uncapped one. */
static void idle_taken(struct magpool_bufmgr *bm, const struct bm_class *k, size_t n)
{
    if (bm->max_buffers)
        atomic_fetch_sub_relaxed(&bm->idle, n);
    else if (k->budgeted)
        atomic_fetch_sub_relaxed(&bm->idle_large_bytes, n * k->stride);
}

/* Every live manager, so that fork()'s prepare handler (registry.c) can take
 * their locks first (docs/design.md, "Locks and grace periods"): a child must
 * not inherit a manager's lock held by a thread that does not exist there. */
static pthread_mutex_t managers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct magpool_bufmgr *managers;

void bufmgr_fork_prepare(void)
{
    mutex_lock(&managers_lock);
    for (struct magpool_bufmgr *bm = managers; bm; bm = bm->next_live) {
        mutex_lock(&bm->trim_lock);
        mutex_lock(&bm->create_lock);
        mutex_lock(&bm->large_lock);
    }
}

void bufmgr_fork_release(void)
{
    for (struct magpool_bufmgr *bm = managers; bm; bm = bm->next_live) {
        pthread_mutex_unlock(&bm->large_lock);
        pthread_mutex_unlock(&bm->create_lock);
        pthread_mutex_unlock(&bm->trim_lock);
    }
    pthread_mutex_unlock(&managers_lock);
}

/* ------------------------------------------------------------- size classes */

static const uint8_t dtype_sizes[] = {
    [MAGPOOL_U8] = 1, [MAGPOOL_I8] = 1, [MAGPOOL_I16] = 2, [MAGPOOL_I32] = 4,
    [MAGPOOL_I64] = 8, [MAGPOOL_F32] = 4, [MAGPOOL_F64] = 8,
};

MAGPOOL_API size_t magpool_dtype_size(magpool_dtype_t dtype)
{
    unsigned d = (unsigned)dtype;
    if (d >= sizeof dtype_sizes) {
        errno = EINVAL;
        return 0;
    }
    return dtype_sizes[d];
}

/* 64, 128, 192, 256, then 4 classes per doubling: 320 384 448 512 640 ... */
static size_t class_size(unsigned c)
{
    if (c < 4)
        return 64u * (c + 1);
    size_t base = (size_t)256 << ((c - 4) / 4);
    return base + (base / 4) * ((c - 4) % 4 + 1);
}

/* Smallest class holding `bytes` (1 <= bytes <= MAGPOOL_BUFMGR_MAX_CLASS). */
static inline unsigned class_of(size_t bytes)
{
    if (bytes <= 256)
        return (unsigned)((bytes + 63) / 64) - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)(bytes - 1));
    size_t step = (size_t)1 << (k - 2);
    unsigned i = (unsigned)((bytes - ((size_t)1 << k) + step - 1) / step); /* 1..4 */
    return 4 + (k - 8) * 4 + i - 1;
}

/* ----------------------------------------------------------------- page map */

/* The page-map entry of addr's granule, or NULL where no leaf exists (the
 * entry would be 0). Leaves live until the manager is destroyed. */
static inline _Atomic uint32_t *pm_slot(struct magpool_bufmgr *bm, const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (unlikely(a >> PM_VA_BITS))
        return NULL;
    uintptr_t g = a >> PM_SHIFT;
    /* acquire: pairs with the release CAS that published the node in
     * pm_leaf_for, so the node's zeroed contents are visible. */
    struct pm_mid *mid = atomic_load_acquire(&bm->pm[g >> (2 * PM_BITS)]);
    if (mid == NULL)
        return NULL;
    struct pm_leaf *leaf = atomic_load_acquire(&mid->l[(g >> PM_BITS) & (PM_FAN - 1)]);
    if (leaf == NULL)
        return NULL;
    return &leaf->e[g & (PM_FAN - 1)];
}

/* Entry e of slot s, or 0 for no slot. relaxed: a legitimate releaser
 * already sees the entry through the chain carve -> depot push (release) ->
 * acquire -> hand-over to it; for anyone else either value is a valid
 * answer (buf_enter reads it again inside its read section). */
static inline uint32_t pm_entry(_Atomic uint32_t *s)
{
    return s ? atomic_load_relaxed(s) : 0;
}

/* The leaf for granule g, created if needed. NULL + ENOMEM. */
static struct pm_leaf *pm_leaf_for(struct magpool_bufmgr *bm, uintptr_t g)
{
    _Atomic(struct pm_mid *) *ms = &bm->pm[g >> (2 * PM_BITS)];
    struct pm_mid *mid = atomic_load_acquire(ms);
    if (mid == NULL) {
        struct pm_mid *n = calloc(1, sizeof *n);
        if (n == NULL)
            return NULL;
        /* release: publishes the zeroed node; pairs with the acquire loads
         * in pm_slot and here. Two class pools may race to create it. */
        if (atomic_compare_exchange_strong_explicit(ms, &mid, n, memory_order_acq_rel,
                                                    memory_order_acquire))
            mid = n;
        else
            free(n);
    }
    _Atomic(struct pm_leaf *) *ls = &mid->l[(g >> PM_BITS) & (PM_FAN - 1)];
    struct pm_leaf *leaf = atomic_load_acquire(ls);
    if (leaf == NULL) {
        struct pm_leaf *n = calloc(1, sizeof *n);
        if (n == NULL)
            return NULL;
        /* release: as above. */
        if (atomic_compare_exchange_strong_explicit(ls, &leaf, n, memory_order_acq_rel,
                                                    memory_order_acquire))
            leaf = n;
        else
            free(n);
    }
    return leaf;
}

/* Mark granules [lo, hi), a slab starting at granule lo, as class c.
 * 0, or -1 with errno ENOMEM (a node could not be allocated), then with no
 * entry set: every node is made before the first entry is stored, because
 * a stored entry publishes the slab to lock-free lookups (buf_enter), and
 * a slab a reader may have found is unmapped only after a grace period,
 * which a failing carve does not wait for. */
static int pm_set(struct magpool_bufmgr *bm, uintptr_t lo, uintptr_t hi, unsigned c)
{
    for (uintptr_t g = lo; g < hi; g = (g | (PM_FAN - 1)) + 1) /* one per leaf */
        if (pm_leaf_for(bm, g) == NULL) {
            errno = ENOMEM;
            return -1;
        }
    for (uintptr_t g = lo; g < hi; g++) {
        struct pm_leaf *leaf = pm_leaf_for(bm, g); /* exists: allocates nothing */
        /* relaxed: see pm_entry. */
        atomic_store_relaxed(&leaf->e[g & (PM_FAN - 1)], ((uint32_t)(g - lo) << 8) | (c + 1));
    }
    return 0;
}

/* Unmark granules [lo, hi). Allocates nothing. */
static void pm_clear(struct magpool_bufmgr *bm, uintptr_t lo, uintptr_t hi)
{
    for (uintptr_t g = lo; g < hi; g++) {
        struct pm_mid *mid = atomic_load_acquire(&bm->pm[g >> (2 * PM_BITS)]); /* as pm_slot */
        if (mid == NULL)
            continue;
        struct pm_leaf *leaf = atomic_load_acquire(&mid->l[(g >> PM_BITS) & (PM_FAN - 1)]);
        if (leaf == NULL)
            continue;
        /* relaxed: see pm_entry. */
        atomic_store_relaxed(&leaf->e[g & (PM_FAN - 1)], 0);
    }
}

/* --------------------------------------------------------------- slab hooks */

static int bm_carve(void *ctx, char *first, size_t n, size_t stride)
{
    struct bm_class *k = ctx;
    uintptr_t lo = (uintptr_t)first >> PM_SHIFT;
    uintptr_t hi = ((uintptr_t)first + n * stride + (1u << PM_SHIFT) - 1) >> PM_SHIFT;
    if ((uintptr_t)first & ((1u << PM_SHIFT) - 1) || hi - lo > PM_MAX_IDX ||
        (((uintptr_t)first + n * stride) >> PM_VA_BITS)) {
        errno = ENOMEM; /* not representable in the page map */
        return -1;
    }
    return pm_set(k->bm, lo, hi, k->idx); /* on failure nothing was published */
}

static void bm_unmap(void *ctx, char *first, size_t n, size_t stride)
{
    struct bm_class *k = ctx;
    struct magpool_bufmgr *bm = k->bm;
    if (atomic_load_relaxed(&bm->destroying))
        return; /* everything goes; nobody looks any more */
    /* Every block is idle and in the trimmer's hands (the core guarantees it),
     * so these reads race with nothing. */
    size_t idle = 0;
    for (size_t i = 0; i < n; i++) {
        struct bhdr *h = (struct bhdr *)(first + i * stride);
        if (atomic_load_relaxed(&h->state) == ST_IDLE)
            idle++;
    }
    if (idle) {
        idle_taken(bm, k, idle);
        atomic_fetch_add_relaxed(&bm->freed, idle);
    }
    uintptr_t lo = (uintptr_t)first >> PM_SHIFT;
    uintptr_t hi = ((uintptr_t)first + n * stride + (1u << PM_SHIFT) - 1) >> PM_SHIFT;
    pm_clear(bm, lo, hi);
}

/* ---------------------------------------------------------------- creation */

MAGPOOL_API magpool_bufmgr_t *magpool_bufmgr_create(size_t max_buffers)
{
    size_t sz = (sizeof(struct magpool_bufmgr) + MAGPOOL_DESTRUCTIVE - 1) &
                ~(size_t)(MAGPOOL_DESTRUCTIVE - 1);
    struct magpool_bufmgr *bm = aligned_alloc(MAGPOOL_DESTRUCTIVE, sz);
    if (bm == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(bm, 0, sizeof *bm);
    bm->max_buffers = max_buffers;
    bm->checked = diag_env_on("MAGPOOL_CHECKED");
    long ps = sysconf(_SC_PAGESIZE);
    bm->page = ps > 0 ? (size_t)ps : 4096;
    for (unsigned c = 0; c < BM_NCLASS; c++) {
        bm->cls[c].bm = bm;
        bm->cls[c].idx = c;
        bm->cls[c].stride = BM_HDR + class_size(c);
        bm->cls[c].budgeted = class_size(c) > BM_BUDGET_FROM;
    }
    pthread_mutex_init(&bm->create_lock, NULL);
    pthread_mutex_init(&bm->trim_lock, NULL);
    pthread_mutex_init(&bm->large_lock, NULL);
    registry_init_once(); /* the fork handlers, even before any pool exists */
    mutex_lock(&managers_lock);
    bm->next_live = managers;
    if (managers)
        managers->prev_live = bm;
    managers = bm;
    pthread_mutex_unlock(&managers_lock);
    return bm;
}

/* The pool of class c, created on first use. NULL + errno. */
static noinline magpool_t *class_pool_slow(struct magpool_bufmgr *bm, unsigned c)
{
    struct bm_class *k = &bm->cls[c];
    mutex_lock(&bm->create_lock);
    magpool_t *p = atomic_load_relaxed(&k->pool); /* create_lock orders it */
    if (p == NULL) {
        magpool_config_t cfg = magpool_config_default(k->stride);
        cfg.align = MAGPOOL_BUFMGR_ALIGN;
        cfg.initial_blocks = 0;
        /* Blocks of 64 KiB and more: one block per slab, so every idle
         * buffer can go back to the OS on its own (clear_unused). */
        cfg.grow_factor = k->stride >= ((size_t)64 << 10) ? 1.0001 : 2.0;
        /* Bound what a thread parks per class (2 magazines): ~512 KiB, and
         * 2 buffers of a class above 1 MiB. */
        size_t m = ((size_t)256 << 10) / k->stride;
        size_t mmin = k->stride > ((size_t)1 << 20) + BM_HDR ? 1 : 2;
        cfg.magazine_size = (unsigned)(m < mmin ? mmin : m > 128 ? 128 : m);
        cfg.flags = bm->checked ? MAGPOOL_CHECKED : 0;
        struct pool_hooks hooks = { .carve = bm_carve, .unmap = bm_unmap, .ctx = k,
                                      .idle_blocks_hold_state = true,
                                      .unmap_after_grace = true };
        p = pool_create_hooked(&cfg, &hooks);
        if (p != NULL) {
            char name[MAGPOOL_NAME_MAX];
            snprintf(name, sizeof name, "bufmgr %p/%zu", (void *)bm, class_size(c));
            magpool_set_name(p, name);
            diag_set_layer(p, "bufmgr");
            k->checked = magpool_diagnostics(p) != 0;
            /* release: pairs with the acquire load in magpool_bufmgr_get and
             * class_pool, so the pool's initialisation is visible. */
            atomic_store_release(&k->pool, p);
        }
    }
    int e = errno;
    pthread_mutex_unlock(&bm->create_lock);
    errno = e;
    return p;
}

/* -------------------------------------------------------------- large path */

/* Index of the first entry >= h. Caller holds large_lock. */
static size_t large_pos(const struct magpool_bufmgr *bm, uintptr_t h)
{
    size_t lo = 0, hi = bm->nlarge;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bm->large[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static noinline void *large_get(struct magpool_bufmgr *bm, size_t bytes, size_t count,
                                magpool_dtype_t dtype, void *caller)
{
    size_t len = (BM_HDR + bytes + bm->page - 1) & ~(bm->page - 1);
    char *map = slab_mmap(len, MAP_PRIVATE | MAP_ANONYMOUS); /* fault-injectable */
    if (map == MAP_FAILED) {
        atomic_fetch_add_relaxed(&bm->large_failed, 1);
        errno = ENOMEM;
        return NULL;
    }
    struct bhdr *h = (struct bhdr *)map;
    atomic_store_relaxed(&h->magic, BM_MAGIC ^ (uintptr_t)h);
    atomic_store_relaxed(&h->state, ST_LIVE);
    h->dtype = (uint32_t)dtype;
    h->count = count;
    h->map_len = len;
    h->site = bm->checked ? diag_site_capture(caller) : 0;
    mutex_lock(&bm->large_lock);
    if (bm->nlarge == bm->large_cap) {
        size_t ncap = bm->large_cap ? 2 * bm->large_cap : 16;
        uintptr_t *nv = realloc(bm->large, ncap * sizeof *nv);
        if (nv == NULL) {
            pthread_mutex_unlock(&bm->large_lock);
            munmap(map, len);
            atomic_fetch_add_relaxed(&bm->large_failed, 1);
            errno = ENOMEM;
            return NULL;
        }
        bm->large = nv;
        bm->large_cap = ncap;
    }
    size_t pos = large_pos(bm, (uintptr_t)h);
    memmove(&bm->large[pos + 1], &bm->large[pos], (bm->nlarge - pos) * sizeof *bm->large);
    bm->large[pos] = (uintptr_t)h;
    bm->nlarge++;
    pthread_mutex_unlock(&bm->large_lock);
    atomic_fetch_add_relaxed(&bm->large_gets, 1);
    atomic_fetch_add_relaxed(&bm->large_bytes, len);
    return map + BM_HDR;
}

/* Whether h is a live large buffer's header, at *pos in the table. Caller
 * holds large_lock. */
static bool large_listed(const struct magpool_bufmgr *bm, const struct bhdr *h, size_t *pos)
{
    *pos = large_pos(bm, (uintptr_t)h);
    return *pos < bm->nlarge && bm->large[*pos] == (uintptr_t)h;
}

/* 0: was a live large buffer, now unmapped; -1: not one of ours. */
static int large_release(struct magpool_bufmgr *bm, struct bhdr *h)
{
    mutex_lock(&bm->large_lock);
    size_t pos;
    if (!large_listed(bm, h, &pos)) {
        pthread_mutex_unlock(&bm->large_lock);
        return -1;
    }
    memmove(&bm->large[pos], &bm->large[pos + 1], (bm->nlarge - pos - 1) * sizeof *bm->large);
    bm->nlarge--;
    pthread_mutex_unlock(&bm->large_lock);
    /* Removed under the lock: this thread alone owns the mapping now. */
    size_t len = h->map_len;
    munmap(h, len);
    atomic_fetch_add_relaxed(&bm->large_releases, 1);
    atomic_fetch_sub_relaxed(&bm->large_bytes, len);
    return 0;
}

/* ------------------------------------------------------------ get / release */

MAGPOOL_API void *magpool_bufmgr_get(magpool_bufmgr_t *bm, size_t count, magpool_dtype_t dtype)
{
    size_t esz = magpool_dtype_size(dtype);
    if (unlikely(bm == NULL || count == 0 || esz == 0 ||
                 count > (PTRDIFF_MAX - BM_HDR - (1u << 20)) / esz)) {
        errno = EINVAL;
        return NULL;
    }
    size_t bytes = count * esz;
    if (unlikely(bytes > MAGPOOL_BUFMGR_MAX_CLASS))
        return large_get(bm, bytes, count, dtype, __builtin_return_address(0));
    unsigned c = class_of(bytes);
    /* acquire: pairs with the release store in class_pool_slow. */
    magpool_t *p = atomic_load_acquire(&bm->cls[c].pool);
    if (unlikely(p == NULL) && (p = class_pool_slow(bm, c)) == NULL)
        return NULL;
    /* CHECKED: the class pool records our caller as the acquire site. */
    struct bhdr *h = likely(!bm->cls[c].checked) ? magpool_acquire(p)
                     : diag_acquire(p, __builtin_return_address(0));
    if (unlikely(h == NULL))
        return NULL; /* ENOMEM */
    /* relaxed: the block's ownership came with magpool_acquire; the RMW only
     * has to be atomic against a stale double release CASing the same word. */
    uint32_t old = atomic_exchange_explicit(&h->state, ST_LIVE, memory_order_relaxed);
    if (old == ST_IDLE)
        idle_taken(bm, &bm->cls[c], 1);
    atomic_store_relaxed(&h->magic, BM_MAGIC ^ (uintptr_t)h);
    h->dtype = (uint32_t)dtype;
    h->count = count;
    return (char *)h + BM_HDR;
}

/* Over the cap: give the buffer's whole data pages back to the OS and keep
 * the block as a fresh one. The header's page is kept (it holds the state). */
static noinline void purge_block(struct magpool_bufmgr *bm, struct bhdr *h, size_t stride)
{
    uintptr_t lo = ((uintptr_t)h + BM_HDR + bm->page - 1) & ~(uintptr_t)(bm->page - 1);
    uintptr_t hi = ((uintptr_t)h + stride) & ~(uintptr_t)(bm->page - 1);
    if (lo < hi)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
    /* relaxed: we own the block (our CAS made it IDLE) until magpool_release. */
    atomic_store_relaxed(&h->state, ST_FRESH);
}

/*
 * Reading a header found through the page map. A block's slab can be
 * unmapped by clear_unused / trim once every block of it is idle — in
 * particular after the first of two releases of the same buffer, while the
 * second is between its page-map lookup and its header read. So the header
 * is read inside a read section of the class pool's epoch domain, and the
 * pool unmaps our slabs only a grace period after the unmap hook cleared
 * their page-map entries (hooks.unmap_after_grace, slab.c): an entry seen
 * inside a section stays mapped until the section ends.
 *
 * Why an epoch section and not the thread cache's busy flag: the trimmer's
 * stop-the-caches handshake (steal.c) runs once, at the start of a trim,
 * and lets the owners go before slabs are unmapped, so it would need a
 * second handshake (a membarrier) per trim between the page-map clear and
 * the munmap; it exists only where membarrier works (without it trim
 * would have to stop unmapping our slabs); and an owner that finds a steal
 * pending must back off through the growth lock. Waiting for readers
 * before freeing what they may still read is what the pool's domain is
 * for (docs/design.md, "Locks and grace periods": trim already waits for
 * one, growth lock held, never inside a section), and the section takes no
 * lock. Its price on every pooled release and capacity query is
 * ck_epoch_begin's atomic exchange and a store (bench_objects'
 * bufmgr rows). If the thread has no cache of the pool and none can be
 * made (no memory), the growth lock, under which trim unmaps, guards the
 * read instead.
 */
struct hdr_guard {
    magpool_t *pool;
    ck_epoch_record_t *reader;          /* NULL: pool's growth lock held     */
};

/* Test hook (stress_bufmgr_race): runs after the page map claimed a block,
 * before its header is read — where a racing clear_unused would unmap it. */
void (*magpool_test_bufmgr_header_hook)(void);

static inline void hdr_enter(struct hdr_guard *g, magpool_t *p)
{
    struct tcache *tc = tcache_lookup(p);
    if (unlikely(tc == NULL))
        tc = registry_tcache_slow(p); /* as magpool_release would: no section yet */
    g->pool = p;
    g->reader = tc ? tc->reader : NULL;
    if (likely(g->reader != NULL))
        epoch_read_lock(&p->epoch, g->reader);
    else
        mutex_lock(&p->grow_lock);
}

static inline void hdr_leave(struct hdr_guard *g)
{
    if (likely(g->reader != NULL))
        epoch_read_unlock(&g->pool->epoch, g->reader);
    else
        pthread_mutex_unlock(&g->pool->grow_lock);
}

/*
 * Where buf lives, decided without reading memory the manager does not own
 * (see the top of this file). 1: the start of a block of class *kp, whose
 * header *hp carries our magic (its state is not looked at); the caller is
 * inside *g (hdr_leave when done with the header). 0: in no class pool's
 * slab, *hp is where a large buffer's header would be (look it up in the
 * large table before reading it). -1: not a buffer start of ours, *what
 * says why (as a release would report it).
 */
static inline __attribute__((always_inline)) int
buf_enter(struct magpool_bufmgr *bm, const void *buf, struct bhdr **hp, struct bm_class **kp,
          struct hdr_guard *g, const char **what)
{
    uintptr_t a = (uintptr_t)buf;
    if (unlikely(a & (MAGPOOL_BUFMGR_ALIGN - 1))) {
        *what = "release of a pointer that is not a buffer start (misaligned)";
        return -1;
    }
    struct bhdr *h = (struct bhdr *)(a - BM_HDR);
    *hp = h;
    struct bm_class *k;
    _Atomic uint32_t *slot = pm_slot(bm, h);
    for (;;) {
        uint32_t e = pm_entry(slot);
        if (e == 0)
            return 0;
        k = &bm->cls[(e & 0xffu) - 1];
        uintptr_t first = ((uintptr_t)h & ~(uintptr_t)((1u << PM_SHIFT) - 1)) -
                          ((uintptr_t)(e >> 8) << PM_SHIFT);
        /* acquire: pairs with the release store in class_pool_slow. */
        magpool_t *p = atomic_load_acquire(&k->pool);
        if (unlikely(p == NULL || ((uintptr_t)h - first) % k->stride != 0)) {
            *what = "release of a pointer inside a buffer";
            return -1;
        }
        hdr_enter(g, p);
        /* Looked up again inside the section: ck_epoch_begin's full fence
         * pairs with the one that starts the trimmer's grace period, which
         * comes after bm_unmap cleared the entry — either the trimmer waits
         * for this section or we see the cleared entry. An entry that
         * changed meanwhile (slab gone, or another slab there now): again. */
        if (likely(atomic_load_relaxed(slot) == e))
            break;
        hdr_leave(g);
    }
    if (unlikely(magpool_test_bufmgr_header_hook != NULL))
        magpool_test_bufmgr_header_hook();
    /* The address is a block start of one of our slabs, mapped until we
     * leave the section: the header is safe to read. */
    if (unlikely(atomic_load_relaxed(&h->magic) != (BM_MAGIC ^ (uintptr_t)h))) {
        hdr_leave(g);
        *what = "release of a pointer this manager did not hand out";
        return -1;
    }
    *kp = k;
    return 1;
}

/* 0 or -1 with *what describing the misuse. */
static int bufmgr_release(struct magpool_bufmgr *bm, void *buf, const char **what)
{
    struct bhdr *h;
    struct bm_class *k;
    struct hdr_guard g;
    int found = buf_enter(bm, buf, &h, &k, &g, what);
    if (found < 0)
        return -1;
    if (found == 0) {
        if (large_release(bm, h) == 0)
            return 0;
        *what = "release of a pointer this manager did not hand out (or released twice)";
        return -1;
    }
    uint32_t exp = ST_LIVE;
    /* relaxed: exactly one of racing releases wins; the block itself is
     * handed over by magpool_release's own release ordering. */
    bool won = atomic_compare_exchange_strong_explicit(&h->state, &exp, ST_IDLE,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed);
    hdr_leave(&g); /* a block we won is ours: its slab cannot go */
    if (unlikely(!won)) {
        *what = exp == ST_IDLE ? "double release" : "release of a buffer that is not live";
        return -1;
    }
    if (bm->max_buffers ? !idle_kept(&bm->idle, 1, bm->max_buffers)
        : k->budgeted && !idle_kept(&bm->idle_large_bytes, k->stride, BM_IDLE_LARGE))
        purge_block(bm, h, k->stride);
    magpool_release(g.pool, h);
    return 0;
}

static noinline int bad_release(struct magpool_bufmgr *bm)
{
    atomic_fetch_add_relaxed(&bm->bad_releases, 1);
    errno = EINVAL;
    return -1;
}

MAGPOOL_API int magpool_bufmgr_release_checked(magpool_bufmgr_t *bm, void *buf)
{
    const char *what;
    if (buf == NULL)
        return 0;
    if (unlikely(bm == NULL)) {
        errno = EINVAL;
        return -1;
    }
    if (unlikely(bufmgr_release(bm, buf, &what) != 0))
        return bad_release(bm);
    return 0;
}

MAGPOOL_API void magpool_bufmgr_release(magpool_bufmgr_t *bm, void *buf)
{
    const char *what;
    if (buf == NULL)
        return;
    if (unlikely(bm == NULL)) {
        errno = EINVAL;
        return;
    }
    if (likely(bufmgr_release(bm, buf, &what) == 0))
        return;
    if (bm->err_fn)
        bm->err_fn(bm->err_ctx, what, buf);
    else
        fprintf(stderr, "magpool: bufmgr %p: %s: %p\n", (void *)bm, what, buf);
    bad_release(bm); /* last: the handler may have clobbered errno */
}

/* ---------------------------------------------------------------- capacity */

MAGPOOL_API size_t magpool_bufmgr_capacity(magpool_bufmgr_t *bm, const void *buf)
{
    const char *what;
    struct bhdr *h;
    struct bm_class *k;
    struct hdr_guard g;
    size_t bytes = 0;
    uint32_t dtype = 0;
    int found = bm && buf ? buf_enter(bm, buf, &h, &k, &g, &what) : -1;
    if (found > 0) {
        /* relaxed: the caller owns buf, and magpool_bufmgr_get wrote state
         * and dtype before handing it over; a released buffer reads IDLE or
         * FRESH (its slab stays mapped while we are inside g). */
        if (atomic_load_relaxed(&h->state) == ST_LIVE) {
            bytes = class_size(k->idx);
            dtype = h->dtype;
        }
        hdr_leave(&g);
    } else if (found == 0) {
        /* Listed under large_lock: mapped, and its header written before it
         * was listed (by large_get, under the same lock). */
        mutex_lock(&bm->large_lock);
        size_t pos;
        if (large_listed(bm, h, &pos)) {
            bytes = h->map_len - BM_HDR;
            dtype = h->dtype;
        }
        pthread_mutex_unlock(&bm->large_lock);
    }
    size_t esz = magpool_dtype_size((magpool_dtype_t)dtype);
    if (bytes == 0 || esz == 0) {
        errno = EINVAL;
        return 0;
    }
    return bytes / esz;
}

MAGPOOL_API void magpool_bufmgr_set_error_handler(magpool_bufmgr_t *bm,
                                                  magpool_bufmgr_error_fn fn, void *ctx)
{
    RETURN_IF_NULL(bm, );
    bm->err_fn = fn;
    bm->err_ctx = ctx;
}

/* ------------------------------------------------------------- maintenance */

MAGPOOL_API size_t magpool_bufmgr_clear_unused(magpool_bufmgr_t *bm, double max_age_s)
{
    RETURN_IF_NULL(bm, 0); /* an age: <= 0 or NaN is everything (magpool_trim) */
    /* trim_lock: the freed counter's difference is ours alone. */
    mutex_lock(&bm->trim_lock);
    size_t before = atomic_load_relaxed(&bm->freed);
    for (unsigned c = BM_NCLASS; c-- > 0;) {
        /* acquire: pairs with the release store in class_pool_slow. */
        magpool_t *p = atomic_load_acquire(&bm->cls[c].pool);
        if (p)
            magpool_trim(p, max_age_s); /* unmap hook counts into freed */
    }
    size_t n = atomic_load_relaxed(&bm->freed) - before;
    pthread_mutex_unlock(&bm->trim_lock);
    return n;
}

/* The 0.1 symbol: writes the 0.1 struct only. */
MAGPOOL_API int(magpool_bufmgr_get_stats)(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out)
{
    return magpool_bufmgr_get_stats_sized(bm, out, BUFMGR_STATS_SIZE_0_1);
}

static void bufmgr_stats(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out);

MAGPOOL_API int magpool_bufmgr_get_stats_sized(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out,
                                               size_t out_size)
{
    if (bm == NULL || out == NULL || out_size < BUFMGR_STATS_SIZE_0_1) {
        errno = EINVAL;
        return -1;
    }
    magpool_bufmgr_stats_t s;
    bufmgr_stats(bm, &s);
    return abi_copy_out(out, out_size, &s, sizeof s, BUFMGR_STATS_SIZE_0_1);
}

static void bufmgr_stats(magpool_bufmgr_t *bm, magpool_bufmgr_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned c = 0; c < BM_NCLASS; c++) {
        magpool_t *p = atomic_load_acquire(&bm->cls[c].pool); /* as in get */
        magpool_stats_t s;
        if (p == NULL || magpool_get_stats(p, &s) != 0)
            continue;
        out->classes_in_use++;
        out->gets += s.acquires;
        out->releases += s.releases;
        out->hits += s.hits;
        out->misses += s.misses;
        out->failed += s.failed;
        out->outstanding += s.blocks_outstanding;
        if (s.blocks_total > s.blocks_outstanding)
            out->idle_blocks += s.blocks_total - s.blocks_outstanding;
        out->bytes_reserved += s.bytes_reserved;
    }
    uint64_t lg = atomic_load_relaxed(&bm->large_gets);
    uint64_t lr = atomic_load_relaxed(&bm->large_releases);
    out->large_gets = lg;
    out->large_releases = lr;
    out->gets += lg;
    out->releases += lr;
    out->outstanding += lg >= lr ? (size_t)(lg - lr) : 0;
    out->failed += atomic_load_relaxed(&bm->large_failed);
    out->bad_releases = atomic_load_relaxed(&bm->bad_releases);
    out->bytes_reserved += atomic_load_relaxed(&bm->large_bytes);
    out->idle_buffers = bm->max_buffers ? atomic_load_relaxed(&bm->idle) : 0;
}

/* ------------------------------------------------------------------- leaks */

/* Large buffers still out: "magpool:   large: ..." and their sites. */
static size_t large_report(struct magpool_bufmgr *bm, FILE *out)
{
    mutex_lock(&bm->large_lock);
    size_t n = bm->nlarge, bytes = 0;
    uint32_t *ids = bm->checked && n ? malloc(n * sizeof *ids) : NULL;
    for (size_t i = 0; i < n; i++) {
        /* In the table: live, and its header written before it was added. */
        const struct bhdr *h = (const struct bhdr *)bm->large[i];
        bytes += h->map_len;
        if (ids)
            ids[i] = h->site;
    }
    pthread_mutex_unlock(&bm->large_lock);
    if (n) {
        fprintf(out, "magpool:   large: %zu buffer(s), %zu bytes mapped\n", n, bytes);
        if (ids)
            diag_print_site_ids(ids, n, out, "    ", "buffer");
    }
    free(ids);
    return n;
}

MAGPOOL_API size_t magpool_bufmgr_report_leaks(magpool_bufmgr_t *bm, FILE *out)
{
    if (bm == NULL) {
        errno = EINVAL;
        return 0;
    }
    if (out == NULL)
        out = stderr;
    magpool_bufmgr_stats_t st;
    magpool_bufmgr_get_stats(bm, &st);
    fprintf(out, "magpool: buffer manager %p: %zu buffer(s) outstanding "
            "(%llu got, %llu released)\n", (void *)bm, st.outstanding,
            (unsigned long long)st.gets, (unsigned long long)st.releases);
    size_t total = 0;
    for (unsigned c = 0; c < BM_NCLASS; c++) {
        magpool_t *p = atomic_load_acquire(&bm->cls[c].pool); /* as in get */
        magpool_stats_t s;
        if (p == NULL || magpool_get_stats(p, &s) != 0 || s.blocks_outstanding == 0)
            continue;
        fprintf(out, "magpool:   class %zu B: %zu buffer(s)\n", class_size(c),
                s.blocks_outstanding);
        diag_print_sites(p, s.blocks_outstanding, out, "    ", "buffer");
        total += s.blocks_outstanding;
    }
    return total + large_report(bm, out);
}

/* Buffers still out at destroy are freed with the rest, but not silently:
 * one MAGPOOL_ERR_LEAK (the core's path), naming one buffer of the class
 * with the most, or a large one. No other thread uses bm any more. */
static void bufmgr_destroy_report(struct magpool_bufmgr *bm)
{
    size_t pooled = 0, classes = 0, most = 0;
    magpool_t *top = NULL;
    for (unsigned c = 0; c < BM_NCLASS; c++) {
        magpool_t *p = atomic_load_relaxed(&bm->cls[c].pool); /* quiescent */
        magpool_stats_t s;
        if (p == NULL || magpool_get_stats(p, &s) != 0 || s.blocks_outstanding == 0)
            continue;
        pooled += s.blocks_outstanding;
        classes++;
        if (s.blocks_outstanding > most) {
            most = s.blocks_outstanding;
            top = p;
        }
    }
    if (pooled + bm->nlarge == 0)
        return;
    const void *buf = NULL;
    uint32_t site = 0;
    if (top) {
        site = diag_top_site(top, &buf); /* a block: the buffer's header */
        if (buf)
            buf = (const char *)buf + BM_HDR;
    }
    if (buf == NULL && bm->nlarge) { /* no pooled one known: a large one */
        const struct bhdr *h = (const struct bhdr *)bm->large[0];
        buf = (const char *)h + BM_HDR;
        site = h->site;
        top = NULL;
    }
    char head[320], one[64] = "";
    if (buf)
        snprintf(one, sizeof one, ", buffer %p", buf);
    snprintf(head, sizeof head, "magpool: buffers still outstanding at destroy: "
             "buffer manager %p (%zu buffer(s): %zu in %zu size class(es), %zu large)%s",
             (void *)bm, pooled + bm->nlarge, pooled, classes, bm->nlarge, one);
    diag_leak_report(top, pooled + bm->nlarge, buf, site, head);
}

MAGPOOL_API void magpool_bufmgr_destroy(magpool_bufmgr_t *bm)
{
    if (bm == NULL)
        return;
    bufmgr_destroy_report(bm);
    mutex_lock(&managers_lock);
    if (bm->prev_live)
        bm->prev_live->next_live = bm->next_live;
    else
        managers = bm->next_live;
    if (bm->next_live)
        bm->next_live->prev_live = bm->prev_live;
    pthread_mutex_unlock(&managers_lock);
    atomic_store_relaxed(&bm->destroying, true);
    for (unsigned c = 0; c < BM_NCLASS; c++)
        magpool_destroy(atomic_load_relaxed(&bm->cls[c].pool));
    for (size_t i = 0; i < bm->nlarge; i++) {
        struct bhdr *h = (struct bhdr *)bm->large[i];
        munmap(h, h->map_len);
    }
    free(bm->large);
    for (unsigned i = 0; i < PM_FAN; i++) {
        struct pm_mid *mid = atomic_load_relaxed(&bm->pm[i]);
        if (mid == NULL)
            continue;
        for (unsigned j = 0; j < PM_FAN; j++)
            free(atomic_load_relaxed(&mid->l[j]));
        free(mid);
    }
    pthread_mutex_destroy(&bm->create_lock);
    pthread_mutex_destroy(&bm->trim_lock);
    pthread_mutex_destroy(&bm->large_lock);
    free(bm);
}
