/* SPDX-License-Identifier: MIT */
/*
 * The slab layer: memory comes from mmap in slabs of whole pages, carved into
 * blocks of `stride` bytes. Slabs are kept sorted by address so a block can be
 * mapped back to its slab with a binary search (CHECKED lookups, reclaim).
 * Every function that modifies the set runs under the owning pool's growth
 * lock and also takes the write side of `rw`, which CHECKED lookups read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static size_t page_size(void)
{
    /* relaxed: every thread computes the same value; the atomic only keeps
     * the lazy first store from being a data race. */
    static _Atomic size_t ps;
    size_t v = atomic_load_relaxed(&ps);
    if (v == 0) {
        long r = sysconf(_SC_PAGESIZE);
        v = r > 0 ? (size_t)r : 4096;
        atomic_store_relaxed(&ps, v);
    }
    return v;
}

int slab_set_init(struct slab_set *s, size_t block_size, size_t align, unsigned flags)
{
    memset(s, 0, sizeof *s);
    s->block_size = block_size;
    s->align = align;
    s->redzone = (flags & SLAB_REDZONE) ? MAGPOOL_REDZONE : 0;
    s->keep_pages = s->redzone != 0;
    s->stride = (block_size + s->redzone + align - 1) & ~(align - 1);
    s->checked = (flags & MAGPOOL_CHECKED) != 0;
    s->prefault = (flags & MAGPOOL_PREFAULT) != 0;
    atomic_init(&s->blocks_total, 0);
    atomic_init(&s->bytes_reserved, 0);
    return pthread_rwlock_init(&s->rw, NULL) == 0 ? 0 : -1;
}

/* Bytes of [addr, addr + len) (page-aligned) resident now: what unmapping
 * or madvising the range gives back to the OS. A page madvised by one trim
 * and unmapped with its slab by a later one is counted once, unless it was
 * touched in between. If mincore cannot say, the whole range counts. */
static size_t resident_bytes(void *addr, size_t len)
{
    size_t ps = page_size(), pages = len / ps, n = 0;
    unsigned char small[256];
    unsigned char *vec = pages <= sizeof small ? small : malloc(pages);
    if (vec == NULL || mincore(addr, len, vec) != 0) {
        if (vec != small)
            free(vec);
        return len;
    }
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    if (vec != small)
        free(vec);
    return n * ps;
}

/* A layered pool's hooks (an ObjectPool's init / fini) may use other pools:
 * CHECKED mode must not take that for re-entry from a signal handler. */
static int hook_carve(struct slab_set *s, char *first, size_t n)
{
    if (s->hooks.carve == NULL)
        return 0;
    unsigned depth = diag_hooks_enter();
    int rc = s->hooks.carve(s->hooks.ctx, first, n, s->stride);
    int e = errno;
    diag_hooks_leave(depth);
    errno = e;
    return rc;
}

static void hook_unmap(struct slab_set *s, char *first, size_t n)
{
    if (s->hooks.unmap == NULL)
        return;
    unsigned depth = diag_hooks_enter();
    s->hooks.unmap(s->hooks.ctx, first, n, s->stride);
    diag_hooks_leave(depth);
}

/* The second half of unmapping a slab, after its unmap hook. */
static void slab_free(struct slab *sl)
{
    munmap(sl->map, sl->map_len);
    free(sl->live);
    free(sl->spilled);
}

static void slab_unmap(struct slab_set *s, struct slab *sl)
{
    hook_unmap(s, sl->first, sl->nblocks);
    slab_free(sl);
}

void slab_set_destroy(struct slab_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        slab_unmap(s, &s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
    pthread_rwlock_destroy(&s->rw);
}

/* Index of the slab containing p, or -1. Caller holds rw (either side). */
static ptrdiff_t slab_find(const struct slab_set *s, const void *p)
{
    const char *c = p;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct slab *sl = &s->v[mid];
        if (c < sl->first)
            hi = mid;
        else if (c >= sl->first + sl->nblocks * s->stride)
            lo = mid + 1;
        else
            return (ptrdiff_t)mid;
    }
    return -1;
}

bool (*magpool_test_slab_books_fail)(char *first);

int slab_grow(struct slab_set *s, size_t min_blocks, size_t max_blocks,
              char **first, size_t *nblocks)
{
    size_t ps = page_size();
    size_t extra = s->align > ps ? s->align - ps : 0; /* to align the start */
    if (min_blocks == 0 || min_blocks > max_blocks ||
        min_blocks > (SIZE_MAX - extra - ps) / s->stride) {
        errno = ENOMEM;
        return -1;
    }
    size_t len = (min_blocks * s->stride + extra + ps - 1) & ~(ps - 1);
    if (s->n == s->cap) {
        size_t ncap = s->cap ? 2 * s->cap : 8;
        /* Not realloc: CHECKED lookups may be reading the old array under
         * the read lock; swap under the write lock, free after. */
        struct slab *nv = malloc(ncap * sizeof *nv);
        if (nv == NULL) {
            errno = ENOMEM;
            return -1;
        }
        pthread_rwlock_wrlock(&s->rw);
        struct slab *ov = s->v;
        if (s->n)
            memcpy(nv, ov, s->n * sizeof *nv);
        s->v = nv;
        s->cap = ncap;
        pthread_rwlock_unlock(&s->rw);
        free(ov);
    }
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS | (s->prefault ? MAP_POPULATE : 0);
    char *map = slab_mmap(len, mflags);
    if (map == MAP_FAILED) {
        errno = ENOMEM;
        return -1;
    }
    struct slab sl = { .map = map, .map_len = len };
    sl.first = (char *)(((uintptr_t)map + s->align - 1) & ~(uintptr_t)(s->align - 1));
    sl.nblocks = (size_t)(map + len - sl.first) / s->stride;
    if (sl.nblocks > max_blocks)
        sl.nblocks = max_blocks; /* the cap is exact; the tail stays unused */
    /* The bookkeeping before the carve hook: once the hook has published
     * the slab (bufmgr.c's page map, read lock-free), unmapping it would
     * need a grace period (hooks.unmap_after_grace), so nothing may fail
     * after it. */
    bool books_fail = unlikely(magpool_test_slab_books_fail != NULL) &&
                      magpool_test_slab_books_fail(sl.first);
    sl.spilled = books_fail ? NULL : calloc((sl.nblocks + 63) / 64, sizeof *sl.spilled);
    if (s->checked)
        sl.live = calloc((sl.nblocks + 63) / 64, sizeof *sl.live);
    if (sl.spilled == NULL || (s->checked && sl.live == NULL) ||
        hook_carve(s, sl.first, sl.nblocks) != 0) {
        int e = sl.spilled == NULL || (s->checked && sl.live == NULL) ? ENOMEM : errno;
        munmap(map, len);
        free(sl.spilled);
        free(sl.live);
        errno = e;
        return -1;
    }
    pthread_rwlock_wrlock(&s->rw);
    size_t pos = s->n;
    while (pos > 0 && s->v[pos - 1].first > sl.first)
        pos--;
    memmove(&s->v[pos + 1], &s->v[pos], (s->n - pos) * sizeof *s->v);
    s->v[pos] = sl;
    s->n++;
    pthread_rwlock_unlock(&s->rw);
    /* relaxed: single writer (growth lock); readers only report the value. */
    atomic_store_relaxed(&s->blocks_total, atomic_load_relaxed(&s->blocks_total) + sl.nblocks);
    atomic_store_relaxed(&s->bytes_reserved, atomic_load_relaxed(&s->bytes_reserved) + len);
    *first = sl.first;
    *nblocks = sl.nblocks;
    return 0;
}

size_t slab_reclaim(struct slab_set *s, void **idle, size_t n, size_t *kept,
                    size_t *resident, struct epoch_domain *grace)
{
    *resident = 0;
    size_t *count = calloc(s->n ? s->n : 1, sizeof *count);
    struct slab *dying = malloc((s->n ? s->n : 1) * sizeof *dying);
    if (count == NULL || dying == NULL) {
        free(count);
        free(dying);
        *kept = n; /* nothing reclaimed, nothing lost */
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        ptrdiff_t k = slab_find(s, idle[i]);
        if (k >= 0)
            count[k]++;
    }
    size_t freed_blocks = 0, freed_bytes = 0, ndying = 0;
    bool any = false;
    for (size_t k = 0; k < s->n; k++)
        if (count[k] == s->v[k].nblocks)
            any = true;
    if (any) {
        /* Drop the blocks of fully idle slabs from idle[], then unmap them.
         * Nothing else references those blocks: every one is in idle[]. */
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            ptrdiff_t k = slab_find(s, idle[i]);
            if (k < 0 || count[k] != s->v[k].nblocks)
                idle[w++] = idle[i];
        }
        n = w;
        pthread_rwlock_wrlock(&s->rw);
        size_t keep = 0;
        for (size_t k = 0; k < s->n; k++) {
            if (count[k] == s->v[k].nblocks) {
                freed_blocks += s->v[k].nblocks;
                freed_bytes += s->v[k].map_len;
                *resident += resident_bytes(s->v[k].map, s->v[k].map_len);
                hook_unmap(s, s->v[k].first, s->v[k].nblocks);
                dying[ndying++] = s->v[k];
            } else {
                s->v[keep++] = s->v[k];
            }
        }
        s->n = keep;
        pthread_rwlock_unlock(&s->rw);
        /* The hooks have unpublished the slabs (bufmgr's page map); a layer
         * that reads block memory found that way inside a read section of
         * the pool's domain is done with it after a grace period. */
        if (grace)
            epoch_synchronize(grace);
        for (size_t k = 0; k < ndying; k++)
            slab_free(&dying[k]);
        atomic_store_relaxed(&s->blocks_total, atomic_load_relaxed(&s->blocks_total) - freed_blocks);
        atomic_store_relaxed(&s->bytes_reserved, atomic_load_relaxed(&s->bytes_reserved) - freed_bytes);
    }
    free(count);
    free(dying);
    *kept = n;
    return freed_blocks;
}

bool slab_spill_add(struct slab_set *s, void *block)
{
    ptrdiff_t k = slab_find(s, block); /* growth lock: the set is stable */
    if (k < 0)
        return false;
    struct slab *sl = &s->v[k];
    size_t i = (size_t)((char *)block - sl->first) / s->stride;
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (sl->spilled[i / 64] & bit)
        return false; /* already parked: a double release, not counted twice */
    sl->spilled[i / 64] |= bit;
    sl->nspilled++;
    return true;
}

void *slab_spill_take(struct slab_set *s)
{
    for (size_t k = 0; k < s->n; k++) {
        struct slab *sl = &s->v[k];
        if (sl->nspilled == 0)
            continue;
        for (size_t w = 0;; w++) {
            if (sl->spilled[w] == 0)
                continue;
            unsigned b = (unsigned)__builtin_ctzll(sl->spilled[w]);
            sl->spilled[w] &= sl->spilled[w] - 1;
            sl->nspilled--;
            return sl->first + (w * 64 + b) * s->stride;
        }
    }
    return NULL;
}

/* CHECKED: find the block's bit. Caller holds rw for reading. */
static int slab_bit(struct slab_set *s, void *block, _Atomic uint64_t **word, uint64_t *bit)
{
    ptrdiff_t k = slab_find(s, block);
    if (k < 0)
        return -1;
    struct slab *sl = &s->v[k];
    size_t off = (size_t)((char *)block - sl->first);
    if (off % s->stride != 0)
        return -1; /* inside a block, not at its start */
    size_t i = off / s->stride;
    *word = &sl->live[i / 64];
    *bit = (uint64_t)1 << (i % 64);
    return 0;
}

static int slab_mark(struct slab_set *s, void *block, bool acquired)
{
    _Atomic uint64_t *word;
    uint64_t bit;
    int rc;
    pthread_rwlock_rdlock(&s->rw);
    rc = slab_bit(s, block, &word, &bit);
    if (rc == 0) {
        /* acq_rel: the bit hands block ownership from releaser to acquirer,
         * pairing the release side of one with the acquire side of the next. */
        uint64_t old = acquired ? atomic_fetch_or_acq_rel(word, bit)
                                : atomic_fetch_and_acq_rel(word, ~bit);
        if (((old & bit) != 0) == acquired)
            rc = -2;
    }
    pthread_rwlock_unlock(&s->rw);
    return rc;
}

int slab_mark_acquired(struct slab_set *s, void *block) { return slab_mark(s, block, true); }

int slab_lookup(struct slab_set *s, const void *ptr, void **block, size_t *off, int *live)
{
    int rc = -1;
    *live = -1;
    pthread_rwlock_rdlock(&s->rw);
    ptrdiff_t k = slab_find(s, ptr);
    if (k >= 0) {
        struct slab *sl = &s->v[k];
        size_t o = (size_t)((const char *)ptr - sl->first);
        size_t i = o / s->stride;
        *block = sl->first + i * s->stride;
        *off = o % s->stride;
        rc = *off == 0;
        if (sl->live) /* acquire: pairs with slab_mark()'s acq_rel RMW */
            *live = (atomic_load_acquire(&sl->live[i / 64]) >> (i % 64)) & 1;
    }
    pthread_rwlock_unlock(&s->rw);
    return rc;
}
int slab_mark_released(struct slab_set *s, void *block) { return slab_mark(s, block, false); }

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return (x > y) - (x < y);
}

size_t slab_release_pages(struct slab_set *s, void **idle, size_t n, size_t *bytes)
{
    size_t ps = page_size(), stride = s->stride, blocks = 0;
    *bytes = 0;
    if (n == 0 || s->keep_pages)
        return 0;
    qsort(idle, n, sizeof *idle, cmp_ptr);
    /* Walk runs of adjacent idle blocks; give back the whole pages inside
     * each run. Blocks stay in the pool: the next touch faults in a zero
     * page. */
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && (char *)idle[j] == (char *)idle[j - 1] + stride)
            j++;
        uintptr_t a = (uintptr_t)idle[i], b = (uintptr_t)idle[j - 1] + stride;
        uintptr_t pa = (a + ps - 1) & ~(uintptr_t)(ps - 1), pb = b & ~(uintptr_t)(ps - 1);
        size_t res = pb > pa ? resident_bytes((void *)pa, pb - pa) : 0;
        if (pb > pa && madvise((void *)pa, pb - pa, MADV_DONTNEED) == 0) {
            *bytes += res;
            /* blocks lying wholly inside [pa, pb) */
            size_t first = (size_t)((pa - a + stride - 1) / stride);
            size_t last = (size_t)((pb - a) / stride); /* exclusive */
            if (last > first)
                blocks += last - first;
        }
        i = j;
    }
    return blocks;
}
