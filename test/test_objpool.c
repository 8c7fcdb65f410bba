/* SPDX-License-Identifier: MIT */
/*
 * ObjectPool (magpool_objpool_*): Bonwick object caching on a magpool.
 * Pins down: init once per object, reset before every reuse, fini before the
 * memory goes (clear, destroy), the init-failure path, the caps, bad input.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

#define LIVE_MAGIC 0x0b1ec7u

struct obj {
    uint32_t magic;      /* LIVE_MAGIC while constructed                   */
    uint32_t dirty;      /* set by the user, cleared by reset               */
    uint64_t resets;     /* how many times reset ran on this object         */
    char payload[240];
};

struct counts {
    atomic_long inits, resets, finis;
    long fail_at;        /* init number (1-based) that fails, 0 = never     */
    int fail_rc;         /* what the failing init returns                   */
    int fail_errno;      /* errno the failing init leaves (for rc < 0)      */
};

static int obj_init(void *p, void *ctx)
{
    struct counts *c = ctx;
    long n = atomic_fetch_add(&c->inits, 1) + 1;
    if (c->fail_at && n >= c->fail_at) {
        atomic_fetch_sub(&c->inits, 1);
        errno = c->fail_errno;
        return c->fail_rc;
    }
    struct obj *o = p;
    o->magic = LIVE_MAGIC;
    o->dirty = 0;
    o->resets = 0;
    memset(o->payload, 0xA5, sizeof o->payload);
    return 0;
}

static void obj_reset(void *p, void *ctx)
{
    struct counts *c = ctx;
    struct obj *o = p;
    atomic_fetch_add(&c->resets, 1);
    o->dirty = 0;
    o->resets++;
}

static void obj_fini(void *p, void *ctx)
{
    struct counts *c = ctx;
    struct obj *o = p;
    cr_expect_eq(o->magic, LIVE_MAGIC, "fini on an object that was not constructed");
    o->magic = 0xdead;
    atomic_fetch_add(&c->finis, 1);
}

static magpool_objpool_config_t cfg_for(struct counts *c, size_t initial, size_t max)
{
    magpool_objpool_config_t cfg = {
        .obj_size = sizeof(struct obj), .align = 0,
        .initial_objects = initial, .max_objects = max,
        .init = obj_init, .reset = obj_reset, .fini = obj_fini, .ctx = c,
    };
    return cfg;
}

static size_t constructed(magpool_objpool_t *op)
{
    magpool_objpool_stats_t s;
    cr_assert_eq(magpool_objpool_get_stats(op, &s), 0);
    return s.blocks_total;
}

Test(objpool, init_runs_once_per_object_not_per_acquire)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 10, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    long inits0 = atomic_load(&c.inits);
    cr_assert_geq(inits0, 10);
    cr_assert_eq((size_t)inits0, constructed(op), "init ran once per constructed object");
    for (int i = 0; i < 10000; i++) {
        struct obj *o = magpool_objpool_acquire(op);
        cr_assert_not_null(o);
        cr_assert_eq(o->magic, LIVE_MAGIC);
        magpool_objpool_release(op, o);
    }
    cr_assert_eq(atomic_load(&c.inits), inits0, "reuse must not call init again");
    cr_assert_eq(atomic_load(&c.resets), 10000);
    magpool_objpool_destroy(op);
}

Test(objpool, reset_really_runs_before_reuse)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 1, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    struct obj *o = magpool_objpool_acquire(op);
    cr_assert_not_null(o);
    cr_assert_eq(o->dirty, 0);
    o->dirty = 1;
    magpool_objpool_release(op, o);
    cr_assert_eq(atomic_load(&c.resets), 1, "reset runs inside release");
    cr_assert_eq(o->dirty, 0, "reset ran before the object became available");
    struct obj *again = magpool_objpool_acquire(op);
    cr_assert_eq(again, o, "the calling thread's cache hands the same object back");
    cr_assert_eq(again->dirty, 0, "a reused object is clean");
    cr_assert_eq(again->resets, 1);
    magpool_objpool_release(op, again);
    magpool_objpool_destroy(op);
}

struct xthread {
    magpool_objpool_t *op;
    struct obj *objs[64];
};

static void *acquire_many(void *arg)
{
    struct xthread *x = arg;
    for (int i = 0; i < 64; i++) {
        x->objs[i] = magpool_objpool_acquire(x->op);
        if (x->objs[i])
            x->objs[i]->dirty = 1;
    }
    return NULL;
}

Test(objpool, release_from_other_thread_resets_and_reuses)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 64, 64);
    struct xthread x = { .op = magpool_objpool_create(&cfg) };
    cr_assert_not_null(x.op);
    pthread_t t;
    pthread_create(&t, NULL, acquire_many, &x);
    pthread_join(t, NULL);
    for (int i = 0; i < 64; i++) {
        cr_assert_not_null(x.objs[i]);
        magpool_objpool_release(x.op, x.objs[i]);
        cr_assert_eq(x.objs[i]->dirty, 0);
    }
    cr_assert_eq(magpool_objpool_size(x.op), 64);
    for (int i = 0; i < 64; i++) {
        struct obj *o = magpool_objpool_acquire(x.op);
        cr_assert_not_null(o, "all 64 objects reusable after a cross-thread release");
        cr_assert_eq(o->dirty, 0);
    }
    cr_assert_eq(atomic_load(&c.inits), 64, "no object constructed twice");
    magpool_objpool_destroy(x.op);
    cr_assert_eq(atomic_load(&c.finis), 64);
}

Test(objpool, failing_init_fails_acquire_with_its_errno_and_loses_nothing)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 0, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    c.fail_at = 5; /* the 5th init of the first slab fails */
    c.fail_rc = ENOSPC;
    errno = 0;
    cr_assert_null(magpool_objpool_acquire(op));
    cr_assert_eq(errno, ENOSPC, "errno is init's positive return value");
    cr_assert_eq(atomic_load(&c.finis), 4, "the 4 objects constructed first are fini'd");
    cr_assert_eq(constructed(op), 0, "the refused slab is gone");
    cr_assert_eq(magpool_objpool_size(op), 0);
    magpool_objpool_stats_t s;
    magpool_objpool_get_stats(op, &s);
    cr_assert_eq(s.blocks_outstanding, 0);

    c.fail_at = 0; /* init works again: the pool is usable */
    struct obj *o = magpool_objpool_acquire(op);
    cr_assert_not_null(o);
    cr_assert_eq(o->magic, LIVE_MAGIC);
    magpool_objpool_release(op, o);
    long live = atomic_load(&c.inits) - atomic_load(&c.finis);
    magpool_objpool_destroy(op);
    cr_assert_eq(atomic_load(&c.inits) - atomic_load(&c.finis), 0, "destroy fini'd the %ld live", live);
}

Test(objpool, failing_init_negative_return_reports_its_errno_or_einval)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 0, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    c.fail_at = 1;
    c.fail_rc = -1;
    c.fail_errno = EMFILE;
    errno = 0;
    cr_assert_null(magpool_objpool_acquire(op));
    cr_assert_eq(errno, EMFILE, "-1 with errno set: that errno");
    c.fail_errno = 0;
    cr_assert_null(magpool_objpool_acquire(op));
    cr_assert_eq(errno, EINVAL, "-1 with errno 0: EINVAL");
    cr_assert_eq(atomic_load(&c.finis), 0);
    magpool_objpool_destroy(op);
}

Test(objpool, failing_init_at_create_fails_create)
{
    struct counts c = { .fail_at = 3, .fail_rc = ENOBUFS };
    magpool_objpool_config_t cfg = cfg_for(&c, 10, 0);
    errno = 0;
    cr_assert_null(magpool_objpool_create(&cfg));
    cr_assert_eq(errno, ENOBUFS);
    cr_assert_eq(atomic_load(&c.inits), 2);
    cr_assert_eq(atomic_load(&c.finis), 2, "partially constructed slab undone");
}

Test(objpool, fini_runs_on_destroy_for_every_constructed_object)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 100, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    void *held[30];
    for (int i = 0; i < 30; i++)
        held[i] = magpool_objpool_acquire(op);
    for (int i = 0; i < 10; i++)
        magpool_objpool_release(op, held[i]);
    long inits = atomic_load(&c.inits);
    cr_assert_eq(atomic_load(&c.finis), 0);
    magpool_objpool_destroy(op); /* 20 still outstanding: fini'd too */
    cr_assert_eq(atomic_load(&c.finis), inits);
}

Test(objpool, fini_runs_on_clear_before_memory_is_given_back)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 50, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    size_t n = magpool_objpool_size(op);
    size_t freed = magpool_objpool_clear(op);
    cr_assert_eq(freed, n, "every object was idle");
    cr_assert_eq((size_t)atomic_load(&c.finis), freed, "fini once per freed object");
    cr_assert_eq(magpool_objpool_size(op), 0);
    struct obj *o = magpool_objpool_acquire(op); /* constructs afresh */
    cr_assert_not_null(o);
    cr_assert_eq(o->magic, LIVE_MAGIC);
    magpool_objpool_release(op, o);
    magpool_objpool_destroy(op);
    cr_assert_eq(atomic_load(&c.finis), atomic_load(&c.inits));
}

/* Needs the core to leave the pages of idle blocks alone in pools with slab
 * hooks: idle objects are constructed state, not free memory. */
Test(objpool, clear_keeps_idle_objects_of_partly_used_slabs_constructed)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 256, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    size_t n = magpool_objpool_size(op);
    struct obj **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = magpool_objpool_acquire(op);
    for (size_t i = 1; i < n; i++) /* v[0] stays out: its slab stays mapped */
        magpool_objpool_release(op, v[i]);
    magpool_objpool_clear(op);
    long inits = atomic_load(&c.inits);
    size_t idle = magpool_objpool_size(op);
    for (size_t i = 1; i <= idle; i++) {
        v[i] = magpool_objpool_acquire(op);
        cr_assert_eq(v[i]->magic, LIVE_MAGIC, "idle object %zu lost its constructed state", i);
        cr_assert_eq((unsigned char)v[i]->payload[100], 0xA5);
    }
    cr_assert_eq(atomic_load(&c.inits), inits);
    for (size_t i = 0; i <= idle; i++)
        magpool_objpool_release(op, v[i]);
    free(v);
    magpool_objpool_destroy(op);
    cr_assert_eq(atomic_load(&c.finis), atomic_load(&c.inits));
}

Test(objpool, size_counts_idle_objects_ready)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 8, 8);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    cr_assert_eq(magpool_objpool_size(op), 8);
    void *a = magpool_objpool_acquire(op), *b = magpool_objpool_acquire(op);
    cr_assert_eq(magpool_objpool_size(op), 6);
    magpool_objpool_release(op, a);
    cr_assert_eq(magpool_objpool_size(op), 7);
    magpool_objpool_release(op, b);
    cr_assert_eq(magpool_objpool_size(op), 8);
    magpool_objpool_destroy(op);
}

Test(objpool, max_objects_is_a_hard_cap)
{
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 0, 5);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    void *v[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(v[i] = magpool_objpool_acquire(op));
    errno = 0;
    cr_assert_null(magpool_objpool_acquire(op));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_leq(atomic_load(&c.inits), 5, "never more objects constructed than the cap");
    for (int i = 0; i < 5; i++)
        magpool_objpool_release(op, v[i]);
    magpool_objpool_destroy(op);
}

Test(objpool, hooks_are_optional)
{
    magpool_objpool_config_t cfg = { .obj_size = 24, .initial_objects = 4 };
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    void *o = magpool_objpool_acquire(op);
    cr_assert_not_null(o);
    cr_assert_eq((uintptr_t)o % 16, 0, "default alignment 16");
    magpool_objpool_release(op, o);
    cr_assert_geq(magpool_objpool_clear(op), 4);
    magpool_objpool_destroy(op);
}

Test(objpool, alignment_is_honoured)
{
    magpool_objpool_config_t cfg = { .obj_size = 40, .align = 256, .initial_objects = 3 };
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    for (int i = 0; i < 20; i++) {
        void *o = magpool_objpool_acquire(op);
        cr_assert_eq((uintptr_t)o % 256, 0);
    }
    magpool_objpool_destroy(op);
}

Test(objpool, bad_input_on_every_entry_point)
{
    magpool_objpool_config_t cfg = { .obj_size = 0 };
    errno = 0;
    cr_assert_null(magpool_objpool_create(NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(magpool_objpool_create(&cfg));
    cr_assert_eq(errno, EINVAL);
    cfg.obj_size = 16;
    cfg.align = 24;
    errno = 0;
    cr_assert_null(magpool_objpool_create(&cfg));
    cr_assert_eq(errno, EINVAL, "align not a power of two");
    cfg.align = 0;
    cfg.obj_size = SIZE_MAX - 8;
    errno = 0;
    cr_assert_null(magpool_objpool_create(&cfg));
    cr_assert_eq(errno, EINVAL, "obj_size overflowing");

    errno = 0;
    cr_assert_null(magpool_objpool_acquire(NULL));
    cr_assert_eq(errno, EINVAL);
    int x;
    errno = 0;
    magpool_objpool_release(NULL, &x);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_objpool_size(NULL), 0);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_objpool_clear(NULL), 0);
    cr_assert_eq(magpool_objpool_trim(NULL, 1.0), 0);
    magpool_objpool_stats_t s;
    errno = 0;
    cr_assert_eq(magpool_objpool_get_stats(NULL, &s), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_objpool_destroy(NULL);

    cfg.obj_size = 16;
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    errno = 0;
    cr_assert_eq(magpool_objpool_get_stats(op, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_objpool_release(op, NULL); /* no-op */
    magpool_objpool_destroy(op);
}

Test(objpool, checked_mode_detects_double_release)
{
    setenv("MAGPOOL_CHECKED", "1", 1); /* Criterion: one process per test */
    struct counts c = {0};
    magpool_objpool_config_t cfg = cfg_for(&c, 4, 0);
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op);
    void *o = magpool_objpool_acquire(op);
    magpool_objpool_release(op, o);
    errno = 0;
    magpool_objpool_release(op, o);
    cr_assert_eq(errno, EINVAL, "double release reported");
    void *a = magpool_objpool_acquire(op), *b = magpool_objpool_acquire(op);
    cr_assert_neq(a, b, "the object was not cached twice");
    magpool_objpool_release(op, a);
    magpool_objpool_release(op, b);
    magpool_objpool_destroy(op);
    unsetenv("MAGPOOL_CHECKED");
}
