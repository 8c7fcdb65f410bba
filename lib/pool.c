/* SPDX-License-Identifier: MIT */
/*
 * Pool life cycle and the public entry points that are not on the fast path
 * (the fast path, magpool_acquire / magpool_release, lives in cache.c so the
 * compiler can inline the magazine operations into it).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

MAGPOOL_API int magpool_config_init(magpool_config_t *cfg, size_t cfg_size, size_t block_size)
{
    magpool_config_t c = {
        .block_size = block_size,
        .align = MAGPOOL_DEFAULT_ALIGN,
        .initial_blocks = 10,
        .max_blocks = 0,
        .grow_factor = 2.0,
        .magazine_size = 0,
        .flags = 0,
        .backend = MAGPOOL_LOCKFREE,
    };
    return abi_copy_out(cfg, cfg_size, &c, sizeof c, CONFIG_SIZE_0_1);
}

/* The 0.1 symbol (0.1 binaries; the header's macro uses an inline copy). */
MAGPOOL_API magpool_config_t(magpool_config_default)(size_t block_size)
{
    magpool_config_t c;
    magpool_config_init(&c, sizeof c, block_size);
    return c;
}

/* Blocks to add when the pool holds `total`: the preallocation first, then
 * total x (grow_factor - 1), at least one, never past max_blocks. */
size_t pool_grow_request(const magpool_t *p, size_t total)
{
    size_t n;
    if (total == 0) {
        n = p->initial_blocks ? p->initial_blocks : 1;
    } else {
        double x = ceil((double)total * (p->grow_factor - 1.0));
        double lim = (double)(PTRDIFF_MAX / p->slabs.stride);
        n = x >= lim ? (size_t)lim : (size_t)x;
        if (n == 0)
            n = 1;
    }
    if (p->max_blocks && n > p->max_blocks - total)
        n = p->max_blocks - total;
    return n;
}

/* Growth, shared by both backends (caller holds the pool's growth lock or
 * the mutex backend's lock): map the next slab — the preallocation first,
 * then total x (grow_factor - 1) blocks — never past max_blocks.
 * 0, or -1 with errno (ENOMEM at the cap or when mmap fails; a carve hook's
 * own error). */
int pool_map_slab(magpool_t *p, char **first, size_t *n)
{
    size_t total = atomic_load_relaxed(&p->slabs.blocks_total);
    if (p->max_blocks && total >= p->max_blocks) {
        errno = ENOMEM;
        return -1;
    }
    size_t want = pool_grow_request(p, total);
    size_t limit = p->max_blocks ? p->max_blocks - total : SIZE_MAX;
    if (slab_grow(&p->slabs, want, limit, first, n) != 0)
        return -1;
    counter_inc(&p->grows); /* under the growth lock: one writer at a time */
    return 0;
}

/* Blocks per magazine when the caller leaves it to us. A thread parks at
 * most 2M blocks per pool; a burst of up to 2M acquires (or releases) then
 * never visits the depot. The benchmark (docs/benchmarks.md) showed 64 per
 * magazine for 1 KiB blocks sending 256-block bursts to the depot every 64
 * blocks and not scaling past one thread; 128 cut depot trips 10-40x.
 * Parked memory stays bounded: 2M x stride is 32 KiB at 64 B, 256 KiB at
 * 1 KiB, 512 KiB at 4 KiB per thread and pool — and trim takes it back from
 * idle threads. */
static unsigned auto_magazine_size(size_t stride)
{
    if (stride <= 256)
        return 256;
    if (stride <= 1024)
        return 128;
    if (stride <= 4096)
        return 64;
    return 16;
}

static int validate(const magpool_config_t *cfg, size_t *align_out)
{
    if (cfg == NULL || cfg->block_size == 0)
        return -1;
    size_t align = cfg->align ? cfg->align : MAGPOOL_DEFAULT_ALIGN;
    if ((align & (align - 1)) != 0 || align > MAGPOOL_MAX_ALIGN)
        return -1;
    if (align < MAGPOOL_MIN_ALIGN)
        align = MAGPOOL_MIN_ALIGN;
    if (!(cfg->grow_factor > 1.0) || !isfinite(cfg->grow_factor))
        return -1; /* NaN and infinity fail here too; 0 became 2.0 */
    if (cfg->backend != MAGPOOL_LOCKFREE && cfg->backend != MAGPOOL_MUTEX)
        return -1;
    if (cfg->flags & ~(unsigned)(MAGPOOL_PREFAULT | MAGPOOL_CHECKED))
        return -1;
    if (cfg->magazine_size > MAGPOOL_MAX_MAGAZINE)
        return -1;
    if (cfg->block_size > PTRDIFF_MAX - align)
        return -1;
    size_t stride = (cfg->block_size + align - 1) & ~(align - 1);
    size_t initial = cfg->initial_blocks;
    if (cfg->max_blocks && initial > cfg->max_blocks)
        initial = cfg->max_blocks;
    if (initial > PTRDIFF_MAX / stride)
        return -1;
    if (cfg->max_blocks > PTRDIFF_MAX / stride)
        return -1;
    *align_out = align;
    return 0;
}

static void pool_free(magpool_t *p)
{
    diag_pool_free(p);
    if (p->mode == MODE_MUTEX) {
        mutex_pool_destroy(p);
    } else {
        cache_free_all(p);
        depot_destroy(&p->depot);
        epoch_domain_destroy(&p->epoch);
        pthread_mutex_destroy(&p->reg_lock);
    }
    pthread_mutex_destroy(&p->grow_lock);
    slab_set_destroy(&p->slabs);
    free(p);
}

uint64_t (*magpool_test_clock_ns)(void);

uint64_t pool_clock_ns(void)
{
    if (unlikely(magpool_test_clock_ns != NULL))
        return magpool_test_clock_ns();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* ~ms resolution, vDSO, no syscall */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The 0.1 symbol: a 0.1 program's config. */
MAGPOOL_API magpool_t *(magpool_create)(const magpool_config_t *cfg)
{
    return magpool_create_sized(cfg, CONFIG_SIZE_0_1);
}

MAGPOOL_API magpool_t *magpool_create_sized(const magpool_config_t *cfg, size_t cfg_size)
{
    magpool_config_t c;
    if (abi_copy_in(&c, sizeof c, cfg, cfg_size, CONFIG_SIZE_0_1) != 0)
        return NULL; /* errno EINVAL */
    return pool_create_hooked(&c, NULL);
}

magpool_t *pool_create_hooked(const magpool_config_t *cfg, const struct pool_hooks *hooks)
{
    size_t align;
    magpool_config_t defaulted;
    if (cfg != NULL && cfg->grow_factor == 0.0) { /* zero means the default */
        defaulted = *cfg;
        defaulted.grow_factor = 2.0;
        cfg = &defaulted;
    }
    if (validate(cfg, &align) != 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t sz = (sizeof(magpool_t) + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1);
    magpool_t *p = aligned_alloc(MAGPOOL_DESTRUCTIVE, sz);
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->diag_flags = diag_select(cfg, hooks);
    unsigned flags = cfg->flags | ((p->diag_flags & DIAG_CHECKED) ? MAGPOOL_CHECKED : 0);
    p->block_size = cfg->block_size;
    p->max_blocks = cfg->max_blocks;
    p->initial_blocks = cfg->max_blocks && cfg->initial_blocks > cfg->max_blocks
                        ? cfg->max_blocks : cfg->initial_blocks;
    /* Above 64 one growth step already maps everything a cap allows; 0.1
     * accepted any finite factor and then could not grow (issue: 1e12), so
     * large factors are clamped, not refused (the ABI promise). */
    p->grow_factor = cfg->grow_factor > MAGPOOL_MAX_GROW_FACTOR ? MAGPOOL_MAX_GROW_FACTOR
                                                                 : cfg->grow_factor;
    p->flags = flags;
    if (cfg->backend == MAGPOOL_MUTEX)
        p->mode = MODE_MUTEX;
    else
        p->mode = p->diag_flags ? MODE_LOCKFREE_DIAG : MODE_LOCKFREE;

    unsigned sflags = flags | ((p->diag_flags & DIAG_REDZONE) ? SLAB_REDZONE : 0);
    if (slab_set_init(&p->slabs, cfg->block_size, align, sflags) != 0) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    if (diag_pool_init(p, hooks) != 0) {
        slab_set_destroy(&p->slabs);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&p->grow_lock, NULL);
    int rc;
    if (p->mode == MODE_MUTEX) {
        rc = mutex_pool_init(p);
    } else {
        unsigned M = cfg->magazine_size ? cfg->magazine_size
                                        : auto_magazine_size(p->slabs.stride);
        pthread_mutex_init(&p->reg_lock, NULL);
        rc = epoch_domain_init(&p->epoch);
        if (rc == 0)
            rc = depot_init(&p->depot, M);
        if (rc == 0 && p->initial_blocks) {
            mutex_lock(&p->grow_lock);
            rc = cache_grow_locked(p);
            pthread_mutex_unlock(&p->grow_lock);
        }
    }
    if (rc != 0 || registry_add(p) != 0) {
        int e = errno ? errno : ENOMEM;
        pool_free(p);
        errno = e;
        return NULL;
    }
    diag_pool_register(p);
    /* Only plain lock-free pools may match a thread-directory entry on the
     * public fast path (cache.c); every other mode takes the miss path. */
    p->fast_slot = p->mode == MODE_LOCKFREE ? p->slot : UINT32_MAX;
    handle_route_init(p);
    return p;
}

MAGPOOL_API void magpool_destroy(magpool_t *p)
{
    if (p == NULL)
        return;
    diag_destroy_report(p); /* outstanding blocks are reported, not lost */
    trimmer_forget(p);
    /* After this no exiting thread will flush into p, and no thread's
     * directory entry for p will be accepted again (uids are never reused). */
    registry_remove(p);
    pool_free(p);
}

MAGPOOL_API size_t magpool_clear(magpool_t *p)
{
    return magpool_trim(p, 0.0);
}

MAGPOOL_API size_t magpool_trim(magpool_t *p, double max_idle_s)
{
    RETURN_IF_NULL(p, 0);
    return pool_trim_ns(p, pool_age_ns(max_idle_s));
}

size_t pool_trim_ns(magpool_t *p, uint64_t max_idle_ns)
{
    return p->mode == MODE_MUTEX ? mutex_pool_trim(p, max_idle_ns)
                                 : cache_trim(p, max_idle_ns);
}

/* An age in seconds as the contract reads it (magpool.h, "One set of
 * rules"): <= 0 or NaN is "everything idle now" (0), >= 1e9 s (~31 years,
 * infinity included) is "nothing is that old", anything else at least 1 ns. */
uint64_t pool_age_ns(double age_s)
{
    if (!(age_s > 0.0))
        return 0;
    if (age_s >= 1e9)
        return UINT64_MAX / 2;
    uint64_t ns = (uint64_t)(age_s * 1e9);
    return ns ? ns : 1;
}

MAGPOOL_API void magpool_thread_flush(magpool_t *p)
{
    RETURN_IF_NULL(p, );
    if (p->mode == MODE_MUTEX)
        return;
    cache_flush_self(p);
}

/* The 0.1 symbol: writes the 0.1 struct only. */
MAGPOOL_API int(magpool_get_stats)(magpool_t *p, magpool_stats_t *out)
{
    return magpool_get_stats_sized(p, out, STATS_SIZE_0_1);
}

static void pool_stats(magpool_t *p, magpool_stats_t *out);

MAGPOOL_API int magpool_get_stats_sized(magpool_t *p, magpool_stats_t *out, size_t out_size)
{
    if (p == NULL || out == NULL || out_size < STATS_SIZE_0_1) {
        errno = EINVAL;
        return -1;
    }
    magpool_stats_t s;
    pool_stats(p, &s);
    return abi_copy_out(out, out_size, &s, sizeof s, STATS_SIZE_0_1);
}

static void pool_stats(magpool_t *p, magpool_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (p->mode == MODE_MUTEX)
        mutex_pool_stats(p, out);
    else
        cache_stats(p, out);
    out->blocks_total = atomic_load_relaxed(&p->slabs.blocks_total);
    out->bytes_reserved = atomic_load_relaxed(&p->slabs.bytes_reserved);
    out->misses = atomic_load_relaxed(&p->misses);
    out->grows = atomic_load_relaxed(&p->grows);
    out->trims = atomic_load_relaxed(&p->trims);
    out->failed = atomic_load_relaxed(&p->failed);
    out->steals = atomic_load_relaxed(&p->steals);
    out->bytes_returned = atomic_load_relaxed(&p->bytes_returned);
    out->reclaims = atomic_load_relaxed(&p->reclaims);
    out->spilled = atomic_load_relaxed(&p->nspill);
    diag_stats(p, out); /* passthrough counts first: the fields below derive */
    out->blocks_outstanding = out->acquires >= out->releases
                              ? (size_t)(out->acquires - out->releases) : 0;
    out->hits = out->acquires >= out->misses ? out->acquires - out->misses : 0;
    out->hit_rate = out->acquires ? (double)out->hits / (double)out->acquires : 0.0;
}

MAGPOOL_API size_t magpool_block_size(const magpool_t *p)
{
    RETURN_IF_NULL(p, 0);
    return p->block_size;
}

MAGPOOL_API size_t magpool_report_leaks(magpool_t *p, FILE *out)
{
    RETURN_IF_NULL(p, 0);
    return diag_report_leaks(p, out);
}
