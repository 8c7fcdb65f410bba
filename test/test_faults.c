/* SPDX-License-Identifier: MIT */
/* mmap fault injection: every path that maps memory returns NULL + ENOMEM
 * while mmap fails, and the pool works again once the fault clears. */
#include "helpers.h"
#include "internal.h" /* magpool_test_fail_mmap (hidden, static library) */

static void clear_fault(void)
{
    magpool_test_fail_mmap(0, 0);
}

BACKEND_TEST(faults, create_fails_with_enomem_when_first_mmap_fails, .fini = clear_fault)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_test_fail_mmap(1, 1);
    errno = 0;
    cr_assert_null(magpool_create(&c), "[%s]", BN);
    cr_assert_eq(errno, ENOMEM, "[%s] errno %d", BN, errno);
    magpool_t *p = mp_create_ok(&c); /* the fault has cleared */
    void *b = magpool_acquire(p);
    cr_assert_not_null(b);
    magpool_release(p, b);
    magpool_destroy(p);
}

static void fault_during_growth(magpool_backend_t backend, unsigned flags)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 8;
    c.flags = flags;
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    void *b[4096];
    size_t n = 0;
    while (n < 8)
        cr_assert_not_null(b[n++] = magpool_acquire(p), "[%s]", BN);
    for (unsigned long nth = 1; nth <= 3; nth++) {
        magpool_test_fail_mmap(nth, 1000);
        errno = 0;
        void *x;
        while ((x = magpool_acquire(p)) != NULL) {
            cr_assert_lt(n, 4096, "[%s] mmap never failed", BN);
            b[n++] = x;
        }
        cr_assert_eq(errno, ENOMEM, "[%s] errno %d (nth %lu)", BN, errno, nth);
        errno = 0;
        cr_assert_null(magpool_acquire(p), "[%s] still failing", BN);
        cr_assert_eq(errno, ENOMEM);
        magpool_stats_t s = mp_stats(p, backend);
        cr_assert_geq(s.failed, 2, "[%s]", BN);
        mp_assert_quiescent_invariants(&s, 64, backend);
        magpool_test_fail_mmap(0, 0);
        /* usable again: grows, hands out distinct blocks */
        for (int k = 0; k < 20; k++)
            cr_assert_not_null(b[n++] = magpool_acquire(p), "[%s] after the fault", BN);
    }
    mp_assert_disjoint(b, n, 64, backend);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 0);
    cr_assert_eq(s.errors, 0);
    mp_assert_quiescent_invariants(&s, 64, backend);
    magpool_destroy(p);
}

BACKEND_TEST(faults, growth_failure_returns_enomem_and_recovers, .fini = clear_fault)
{
    fault_during_growth(backend, 0);
}

BACKEND_TEST(faults, growth_failure_in_checked_mode_recovers, .fini = clear_fault)
{
    fault_during_growth(backend, MAGPOOL_CHECKED);
}

BACKEND_TEST(faults, failure_after_clear_recovers, .fini = clear_fault)
{
    magpool_config_t c = mp_cfg(backend, 128);
    magpool_t *p = mp_create_ok(&c);
    void *a = magpool_acquire(p);
    magpool_release(p, a);
    magpool_clear(p); /* everything unmapped: the next acquire must map */
    magpool_test_fail_mmap(1, 1);
    errno = 0;
    void *x = magpool_acquire(p);
    if (x == NULL) {
        cr_assert_eq(errno, ENOMEM, "[%s]", BN);
        x = magpool_acquire(p);
    }
    cr_assert_not_null(x, "[%s] pool unusable after the fault", BN);
    magpool_release(p, x);
    magpool_destroy(p);
}

Test(faults, objpool_and_bufmgr_fail_cleanly, .fini = clear_fault)
{
    magpool_objpool_config_t oc = { .obj_size = 48, .initial_objects = 2 };
    magpool_test_fail_mmap(1, 1);
    errno = 0;
    cr_assert_null(magpool_objpool_create(&oc));
    cr_assert_eq(errno, ENOMEM);
    magpool_objpool_t *op = magpool_objpool_create(&oc);
    cr_assert_not_null(op);
    magpool_objpool_destroy(op);

    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    magpool_test_fail_mmap(1, 1);
    errno = 0;
    /* first use of a class maps a slab, unless the manager already has
     * one: either way, NULL only with ENOMEM, and fine after the fault */
    void *buf = magpool_bufmgr_get(bm, 100, MAGPOOL_U8);
    if (buf == NULL)
        cr_assert_eq(errno, ENOMEM);
    else
        magpool_bufmgr_release(bm, buf);
    magpool_test_fail_mmap(0, 0);
    buf = magpool_bufmgr_get(bm, 100, MAGPOOL_U8);
    cr_assert_not_null(buf);
    magpool_bufmgr_release(bm, buf);
    magpool_bufmgr_destroy(bm);
}

/* 1e6 float64 (8 MB) comes from a size class since 0.2: its slab's mmap
 * failing is ENOMEM too, and the class works once memory is back. */
Test(faults, bufmgr_big_class_slab_mmap_failure_is_enomem_and_recovers, .fini = clear_fault)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(4);
    cr_assert_not_null(bm);
    magpool_test_fail_mmap(1, 100); /* every mapping: growth retries */
    errno = 0;
    cr_assert_null(magpool_bufmgr_get(bm, 1000000, MAGPOOL_F64), "get with mmap failing");
    cr_assert_eq(errno, ENOMEM);
    magpool_test_fail_mmap(0, 0);
    double *buf = magpool_bufmgr_get(bm, 1000000, MAGPOOL_F64);
    cr_assert_not_null(buf, "get after the fault cleared");
    buf[999999] = 1.0;
    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    cr_assert_eq(s.large_gets, 0, "served by a size class");
    cr_assert_eq(s.failed, 1);
    magpool_bufmgr_release(bm, buf);
    magpool_bufmgr_destroy(bm);
}

Test(faults, bufmgr_large_buffer_mmap_failure_is_enomem_and_recovers, .fini = clear_fault)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(4);
    cr_assert_not_null(bm);
    size_t count = 2 * MAGPOOL_BUFMGR_MAX_CLASS; /* above the largest class: mmap'd */
    magpool_test_fail_mmap(1, 1);
    errno = 0;
    cr_assert_null(magpool_bufmgr_get(bm, count, MAGPOOL_U8), "large get with mmap failing");
    cr_assert_eq(errno, ENOMEM);
    magpool_test_fail_mmap(0, 0);
    double *buf = magpool_bufmgr_get(bm, count / 8, MAGPOOL_F64);
    cr_assert_not_null(buf, "large get after the fault cleared");
    buf[count / 8 - 1] = 1.0;
    magpool_bufmgr_release(bm, buf);
    magpool_bufmgr_destroy(bm);
}
