/* SPDX-License-Identifier: MIT */
/*
 * ObjectPool: Bonwick's object caching (USENIX 1994) on top of a magpool.
 *
 * The pool's blocks are objects kept in their constructed state. The slab
 * hooks of the core (struct pool_hooks) give the two slow-path moments:
 *
 *   carve: a slab was just mapped, none of its blocks is visible yet ->
 *          init() every block; on failure undo (fini) and refuse the slab,
 *          so the acquire that needed it fails with init's errno and the
 *          pool is exactly as before.
 *   unmap: every block of a slab is idle (or the pool is being destroyed)
 *          and the slab is about to be unmapped -> fini() every block.
 *
 * The fast path is the core's magazine fast path, unchanged: acquire is
 * magpool_acquire; release is reset() then magpool_release. Nothing here is
 * shared between threads beyond what the core already synchronises: an
 * object's reset() happens before its magpool_release, whose release store
 * into the magazine/depot pairs with the next acquirer's load.
 *
 * Leaks: the pool's own counters say how many objects are out; in CHECKED
 * mode the core keeps each outstanding object's acquire site beside it
 * (diag.c: a layered pool has no redzone). magpool_objpool_acquire reaches
 * magpool_acquire by a tail call, so the site recorded is the application's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct magpool_objpool {
    magpool_t *pool;
    int  (*init)(void *obj, void *ctx);
    void (*reset)(void *obj, void *ctx);
    void (*fini)(void *obj, void *ctx);
    void *ctx;
};

/* Map an init() failure to the errno the acquire reports (header contract):
 * positive = an errno value; negative = "see errno", EINVAL if it is 0. */
static int init_errno(int rc, int err_after)
{
    if (rc > 0)
        return rc;
    return err_after != 0 ? err_after : EINVAL;
}

/* Growth lock held; blocks [first, first + n*stride) are not yet visible. */
static int objpool_carve(void *ctx, char *first, size_t n, size_t stride)
{
    struct magpool_objpool *op = ctx;
    if (op->init == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        errno = 0;
        int rc = op->init(first + i * stride, op->ctx);
        if (unlikely(rc != 0)) {
            int e = init_errno(rc, errno);
            if (op->fini)
                for (size_t j = 0; j < i; j++)
                    op->fini(first + j * stride, op->ctx);
            errno = e;
            return -1;
        }
    }
    return 0;
}

/* Growth lock held (or destroy): the slab's blocks are about to be unmapped. */
static void objpool_unmap(void *ctx, char *first, size_t n, size_t stride)
{
    struct magpool_objpool *op = ctx;
    if (op->fini == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        op->fini(first + i * stride, op->ctx);
}

MAGPOOL_API magpool_objpool_t *magpool_objpool_create(const magpool_objpool_config_t *cfg)
{
    if (cfg == NULL || cfg->obj_size == 0) {
        errno = EINVAL;
        return NULL;
    }
    struct magpool_objpool *op = calloc(1, sizeof *op);
    if (op == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    op->init = cfg->init;
    op->reset = cfg->reset;
    op->fini = cfg->fini;
    op->ctx = cfg->ctx;

    magpool_config_t pc = magpool_config_default(cfg->obj_size);
    pc.align = cfg->align;
    pc.initial_blocks = cfg->initial_objects;
    pc.max_blocks = cfg->max_objects;
    struct pool_hooks hooks = {
        .carve = objpool_carve,
        .unmap = objpool_unmap,
        .ctx = op,
        .idle_blocks_hold_state = true, /* idle objects are constructed */
    };
    op->pool = pool_create_hooked(&pc, &hooks); /* EINVAL / ENOMEM / init's */
    if (op->pool == NULL) {
        int e = errno;
        free(op);
        errno = e;
        return NULL;
    }
    diag_set_layer(op->pool, "objpool");
    return op;
}

MAGPOOL_API void *magpool_objpool_acquire(magpool_objpool_t *op)
{
    if (unlikely(op == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    return magpool_acquire(op->pool);
}

MAGPOOL_API void magpool_objpool_release(magpool_objpool_t *op, void *obj)
{
    if (obj == NULL)
        return;
    if (unlikely(op == NULL)) {
        errno = EINVAL;
        return;
    }
    if (op->reset)
        op->reset(obj, op->ctx);
    magpool_release(op->pool, obj);
}

/* The underlying pool's counters; -1 with errno EINVAL when op is NULL. */
static int op_stats(struct magpool_objpool *op, magpool_stats_t *s)
{
    if (op == NULL) {
        errno = EINVAL;
        return -1;
    }
    return magpool_get_stats(op->pool, s);
}

MAGPOOL_API size_t magpool_objpool_size(magpool_objpool_t *op)
{
    magpool_stats_t s;
    if (op_stats(op, &s) != 0)
        return 0;
    return s.blocks_total >= s.blocks_outstanding ? s.blocks_total - s.blocks_outstanding : 0;
}

MAGPOOL_API size_t magpool_objpool_clear(magpool_objpool_t *op)
{
    RETURN_IF_NULL(op, 0);
    return magpool_clear(op->pool);
}

MAGPOOL_API size_t magpool_objpool_trim(magpool_objpool_t *op, double max_idle_s)
{
    RETURN_IF_NULL(op, 0);
    return magpool_trim(op->pool, max_idle_s);
}

/* The 0.1 symbol: writes the 0.1 struct only. */
MAGPOOL_API int(magpool_objpool_get_stats)(magpool_objpool_t *op, magpool_objpool_stats_t *out)
{
    return magpool_objpool_get_stats_sized(op, out, STATS_SIZE_0_1);
}

MAGPOOL_API int magpool_objpool_get_stats_sized(magpool_objpool_t *op,
                                                magpool_objpool_stats_t *out, size_t out_size)
{
    if (op == NULL) {
        errno = EINVAL;
        return -1;
    }
    return magpool_get_stats_sized(op->pool, out, out_size);
}

MAGPOOL_API size_t magpool_objpool_report_leaks(magpool_objpool_t *op, FILE *out)
{
    magpool_stats_t s;
    if (op_stats(op, &s) != 0)
        return 0;
    if (out == NULL)
        out = stderr;
    fprintf(out, "magpool: object pool %p: %zu object(s) of %zu bytes outstanding "
            "(%llu acquired, %llu released)\n",
            (void *)op, s.blocks_outstanding, op->pool->block_size,
            (unsigned long long)s.acquires, (unsigned long long)s.releases);
    diag_print_sites(op->pool, s.blocks_outstanding, out, "  ", "object");
    return s.blocks_outstanding;
}

/* Objects still out at destroy are fini'd and freed with the rest, but not
 * silently: one MAGPOOL_ERR_LEAK, as the core's magpool_destroy makes. */
static void objpool_destroy_report(struct magpool_objpool *op)
{
    magpool_stats_t s;
    if (magpool_get_stats(op->pool, &s) != 0 || s.blocks_outstanding == 0)
        return;
    const void *obj;
    uint32_t site = diag_top_site(op->pool, &obj);
    char head[256], one[64] = "";
    if (obj)
        snprintf(one, sizeof one, ", object %p", obj);
    snprintf(head, sizeof head, "magpool: objects still outstanding at destroy: "
             "object pool %p%s (object size %zu) (%zu object(s))",
             (void *)op, one, op->pool->block_size, s.blocks_outstanding);
    diag_leak_report(op->pool, s.blocks_outstanding, obj, site, head);
}

MAGPOOL_API void magpool_objpool_destroy(magpool_objpool_t *op)
{
    if (op == NULL)
        return;
    objpool_destroy_report(op);
    magpool_destroy(op->pool); /* unmap hook: fini on every object */
    free(op);
}
