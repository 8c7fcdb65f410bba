/* SPDX-License-Identifier: MIT */
/* The variant table and the setup/teardown of each allocator; see
 * allocators.h for the hot path. */
#include "allocators.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Peer allocators come in through LD_PRELOAD, one child process each, rather
 * than through their prefixed APIs in one process: jemalloc in Debian is
 * built unprefixed and tcmalloc replaces malloc as soon as it is linked, so
 * only mimalloc could share a process. Preloading also measures what users
 * actually get (malloc/free through the PLT) with identical bench code.
 * tcmalloc is the "minimal" build (no heap profiler hooks), the one people
 * deploy for speed. The probe symbol proves the preload took effect.
 */
bench_variant_t bench_variants[] = {
    {"magpool", KIND_POOL, MAGPOOL_LOCKFREE, NULL, NULL, NULL},
    /* The same pool through per-thread handles (magpool_cache_get). */
    {"magpool-handle", KIND_HANDLE, MAGPOOL_LOCKFREE, NULL, NULL, NULL},
    {"mutex", KIND_POOL, MAGPOOL_MUTEX, NULL, NULL, NULL},
    {"array", KIND_ARRAY, 0, NULL, NULL, NULL},
    {"glibc", KIND_MALLOC, 0, NULL, "libc6", NULL},
    {"jemalloc", KIND_MALLOC, 0, "libjemalloc.so.2", "libjemalloc2", "mallctl"},
    {"mimalloc", KIND_MALLOC, 0, "libmimalloc.so.2", "libmimalloc2.0", "mi_version"},
    {"tcmalloc", KIND_MALLOC, 0, "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4",
     "tc_version"},
};
const int bench_nvariants = (int)(sizeof bench_variants / sizeof bench_variants[0]);

int bench_variant_find(const char *name)
{
    for (int i = 0; i < bench_nvariants; i++)
        if (strcmp(bench_variants[i].name, name) == 0)
            return i;
    return -1;
}

/* The malloc in this process must be the one the variant names: a silently
 * failed LD_PRELOAD would publish glibc numbers under a peer's name. */
static int check_malloc_identity(const bench_variant_t *v, char *err, size_t errlen)
{
    for (int i = 0; i < bench_nvariants; i++) {
        const bench_variant_t *o = &bench_variants[i];
        if (!o->probe)
            continue;
        int present = dlsym(RTLD_DEFAULT, o->probe) != NULL;
        int wanted = o == v;
        if (present != wanted) {
            snprintf(err, errlen, "%s: symbol %s %s (LD_PRELOAD=%s)", v->name, o->probe,
                     present ? "unexpectedly present" : "missing",
                     getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
            return -1;
        }
    }
    return 0;
}

int alloc_setup(alloc_ctx_t *c, const bench_params_t *p, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->v = &bench_variants[p->variant];
    c->size = p->block_size;
    if (c->v->kind == KIND_MALLOC)
        return check_malloc_identity(c->v, err, errlen);
    if (c->v->kind == KIND_ARRAY)
        return 0;
    magpool_config_t cfg = magpool_config_default(p->block_size);
    cfg.backend = (magpool_backend_t)c->v->backend;
    if (p->initial_blocks != SIZE_MAX)
        cfg.initial_blocks = p->initial_blocks;
    if (p->magazine_size)
        cfg.magazine_size = p->magazine_size;
    c->pool = magpool_create(&cfg);
    if (!c->pool && cfg.initial_blocks == 0) {
        /* "Empty" for the growth workload: smallest pool the library takes. */
        cfg.initial_blocks = 1;
        c->pool = magpool_create(&cfg);
    }
    if (!c->pool) {
        snprintf(err, errlen, "magpool_create(size %zu, initial %zu, magazine %u): %s",
                 cfg.block_size, cfg.initial_blocks, cfg.magazine_size, strerror(errno));
        return -1;
    }
    return 0;
}

int alloc_thread_init(const alloc_ctx_t *c, alloc_thread_t *t, size_t capacity)
{
    memset(t, 0, sizeof *t);
    t->pool = c->pool;
    t->size = c->size;
    if (c->v->kind == KIND_HANDLE) /* on the worker thread: its own handle */
        return (t->cache = magpool_cache_get(c->pool)) != NULL ? 0 : -1;
    if (c->v->kind != KIND_ARRAY)
        return 0;
    /* Reserve, do not touch: pages fault in on first use, as a pool's slabs
     * do without MAGPOOL_PREFAULT. Blocks are 16-byte aligned like magpool's
     * default. */
    size_t bsz = (c->size + 15) & ~(size_t)15;
    t->region_len = capacity * bsz;
    t->stack_len = capacity * sizeof(void *);
    t->region = mmap(NULL, t->region_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    t->stack = mmap(NULL, t->stack_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t->region == MAP_FAILED || t->stack == MAP_FAILED)
        return -1;
    t->bump = t->region;
    t->end = t->region + t->region_len;
    t->cap = capacity;
    t->size = bsz;
    return 0;
}

void alloc_thread_fini(alloc_thread_t *t)
{
    if (t->region && t->region != MAP_FAILED)
        munmap(t->region, t->region_len);
    if (t->stack && (void *)t->stack != MAP_FAILED)
        munmap(t->stack, t->stack_len);
    t->region = NULL;
    t->stack = NULL;
}

__attribute__((noinline)) void *array_acquire(alloc_thread_t *t)
{
    if (__builtin_expect(t->top != 0, 1))
        return t->stack[--t->top];
    if (t->bump == t->end)
        return NULL;
    void *p = t->bump;
    t->bump += t->size;
    return p;
}

__attribute__((noinline)) void array_release(alloc_thread_t *t, void *p)
{
    t->stack[t->top++] = p;
}

int alloc_check(const alloc_ctx_t *c, bench_result_t *r)
{
    if (r->acquires != r->releases) {
        snprintf(r->error, sizeof r->error, "lost blocks: %llu acquired, %llu released",
                 (unsigned long long)r->acquires, (unsigned long long)r->releases);
        return -1;
    }
    if (c->v->kind != KIND_POOL && c->v->kind != KIND_HANDLE)
        return 0;
    magpool_stats_t st;
    if (magpool_get_stats(c->pool, &st) != 0) {
        snprintf(r->error, sizeof r->error, "magpool_get_stats: %s", strerror(errno));
        return -1;
    }
    r->have_pool_stats = 1;
    r->pool_acquires = st.acquires;
    r->pool_releases = st.releases;
    r->pool_hits = st.hits;
    r->pool_misses = st.misses;
    r->pool_grows = st.grows;
    r->pool_depot_gets = st.depot_gets;
    r->pool_depot_puts = st.depot_puts;
    r->pool_steals = st.steals;
    r->pool_bytes_reserved = st.bytes_reserved;
    r->pool_blocks_total = st.blocks_total;
    /* scripts/cost_account.sh times libraries built without the per-thread
     * counters (MAGPOOL_MEASURE_NO_STATS): their statistics are wrong by
     * construction, so the comparison is switched off for them, and only
     * for them (the bench's own acquire/release count above still holds). */
    const char *nocheck = getenv("MAGPOOL_BENCH_NO_STATS_CHECK");
    if (nocheck && *nocheck && strcmp(nocheck, "0") != 0)
        return 0;
    if (st.acquires != r->acquires || st.releases != r->releases ||
        st.blocks_outstanding != 0 || st.hits + st.misses != st.acquires || st.failed != 0) {
        snprintf(r->error, sizeof r->error,
                 "magpool stats disagree: bench %llu/%llu acq/rel, pool %llu/%llu, "
                 "outstanding %zu, hits+misses %llu, failed %llu",
                 (unsigned long long)r->acquires, (unsigned long long)r->releases,
                 (unsigned long long)st.acquires, (unsigned long long)st.releases,
                 st.blocks_outstanding, (unsigned long long)(st.hits + st.misses),
                 (unsigned long long)st.failed);
        return -1;
    }
    return 0;
}

void alloc_teardown(alloc_ctx_t *c)
{
    magpool_destroy(c->pool);
    c->pool = NULL;
}
