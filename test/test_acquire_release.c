/* SPDX-License-Identifier: MIT */
/* magpool_acquire / magpool_release: NULL handling, distinctness, alignment. */
#include "helpers.h"

/* ---- NULL pool: documented answers ------------------------------------- */

Test(null_pool, acquire_null_pool_is_einval)
{
    errno = 0;
    void *b = magpool_acquire(NULL);
    cr_assert_null(b);
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
}

Test(null_pool, get_stats_null_pool_or_null_out_is_einval)
{
    magpool_stats_t s;
    errno = 0;
    cr_assert_eq(magpool_get_stats(NULL, &s), -1);
    cr_assert_eq(errno, EINVAL, "errno %d", errno);

    magpool_config_t c = magpool_config_default(32);
    magpool_t *p = mp_create_ok(&c);
    errno = 0;
    cr_assert_eq(magpool_get_stats(p, NULL), -1);
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
    magpool_destroy(p);
}

Test(null_pool, clear_and_trim_null_pool_return_zero)
{
    cr_assert_eq(magpool_clear(NULL), 0);
    cr_assert_eq(magpool_trim(NULL, 0.0), 0);
    cr_assert_eq(magpool_trim(NULL, 10.0), 0);
    cr_assert_eq(magpool_trim(NULL, -1.0), 0);
}

Test(null_pool, block_size_null_pool_is_zero)
{
    cr_assert_eq(magpool_block_size(NULL), 0);
}

Test(null_pool, report_leaks_null_pool_is_zero)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(magpool_report_leaks(NULL, f), 0);
    fclose(f);
    cr_assert_eq(magpool_report_leaks(NULL, NULL), 0);
}

Test(null_pool, release_flush_destroy_null_pool_are_noops)
{
    int x;
    magpool_release(NULL, NULL);
    magpool_release(NULL, &x); /* must not touch &x nor crash */
    magpool_thread_flush(NULL);
    magpool_destroy(NULL);
    cr_assert_eq(magpool_acquire(NULL), NULL); /* still alive and answering */
}

/* ---- release(pool, NULL) ------------------------------------------------- */

BACKEND_TEST(release, release_null_block_leaves_stats_unchanged)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    void *b = magpool_acquire(p);
    cr_assert_not_null(b);
    magpool_stats_t before = mp_stats(p, backend);
    magpool_release(p, NULL);
    magpool_release(p, NULL);
    magpool_stats_t after = mp_stats(p, backend);
    cr_assert_eq(after.releases, before.releases, "[%s] releases %llu -> %llu", BN,
                 (unsigned long long)before.releases, (unsigned long long)after.releases);
    cr_assert_eq(after.blocks_outstanding, 1, "[%s] outstanding %zu", BN,
                 after.blocks_outstanding);
    /* NULL did not enter the free list: the next acquires never return NULL */
    void *more[64];
    for (int i = 0; i < 64; i++) {
        more[i] = magpool_acquire(p);
        cr_assert_not_null(more[i], "[%s] acquire %d returned NULL after release(NULL)", BN, i);
    }
    for (int i = 0; i < 64; i++)
        magpool_release(p, more[i]);
    magpool_release(p, b);
    magpool_destroy(p);
}

/* ---- distinct, writable, aligned ---------------------------------------- */

static void distinct_writable(magpool_backend_t backend, size_t bs, size_t align, size_t n)
{
    magpool_config_t c = mp_cfg(backend, bs);
    c.align = align;
    c.initial_blocks = 4;
    magpool_t *p = mp_create_ok(&c);
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    size_t want_align = align ? align : 16;
    for (size_t i = 0; i < n; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i], "[%s] acquire %zu of %zu (bs %zu) failed, errno %d", BN, i, n,
                           bs, errno);
        cr_assert_eq((uintptr_t)b[i] % want_align, 0, "[%s] block %p not aligned to %zu", BN,
                     b[i], want_align);
        mp_fill(b[i], bs, (uint32_t)i);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(mp_check(b[i], bs, (uint32_t)i),
                  "[%s] block %zu (%p) was overwritten: blocks overlap (bs %zu)", BN, i, b[i],
                  bs);
    mp_assert_disjoint(b, n, bs, backend);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(blocks, blocks_are_distinct_and_writable_over_block_size)
{
    distinct_writable(backend, 64, 0, 2000);
}

BACKEND_TEST(blocks, odd_block_sizes_are_distinct_and_writable)
{
    size_t sizes[] = {1, 3, 17, 33, 100, 1000, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        distinct_writable(backend, sizes[i], 0, 300);
}

BACKEND_TEST(blocks, default_alignment_is_16)
{
    distinct_writable(backend, 24, 0, 500);
    distinct_writable(backend, 1, 0, 500);
}

BACKEND_TEST(blocks, blocks_are_aligned_to_16)
{
    distinct_writable(backend, 24, 16, 500);
}

BACKEND_TEST(blocks, blocks_are_aligned_to_64)
{
    distinct_writable(backend, 24, 64, 500);
    distinct_writable(backend, 100, 64, 500);
}

BACKEND_TEST(blocks, blocks_are_aligned_to_4096)
{
    distinct_writable(backend, 24, 4096, 100);
    distinct_writable(backend, 5000, 4096, 50);
}

BACKEND_TEST(blocks, released_blocks_are_reused_without_growth)
{
    magpool_config_t c = mp_cfg(backend, 128);
    c.initial_blocks = 64;
    magpool_t *p = mp_create_ok(&c);
    void *b[200];
    for (int i = 0; i < 200; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    for (int i = 0; i < 200; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s0 = mp_stats(p, backend);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 200; i++)
            cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] round %d", BN, round);
        mp_assert_disjoint(b, 200, 128, backend);
        for (int i = 0; i < 200; i++)
            magpool_release(p, b[i]);
    }
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.grows, s0.grows, "[%s] pool grew (%llu -> %llu) although 200 blocks were idle",
                 BN, (unsigned long long)s0.grows, (unsigned long long)s1.grows);
    cr_assert_eq(s1.blocks_total, s0.blocks_total, "[%s] blocks_total %zu -> %zu", BN,
                 s0.blocks_total, s1.blocks_total);
    cr_assert_eq(s1.misses, s0.misses, "[%s] misses while idle blocks existed", BN);
    cr_assert_eq(s1.hits - s0.hits, 20 * 200, "[%s] hits grew by %llu, want 4000", BN,
                 (unsigned long long)(s1.hits - s0.hits));
    magpool_destroy(p);
}

BACKEND_TEST(blocks, held_block_contents_survive_other_traffic)
{
    magpool_config_t c = mp_cfg(backend, 96);
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    void *keep[50];
    for (int i = 0; i < 50; i++) {
        keep[i] = magpool_acquire(p);
        cr_assert_not_null(keep[i]);
        mp_fill(keep[i], 96, 1000u + (uint32_t)i);
    }
    void *tmp[300];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 300; i++) {
            tmp[i] = magpool_acquire(p);
            cr_assert_not_null(tmp[i]);
            memset(tmp[i], 0xee, 96);
        }
        for (int i = 0; i < 300; i++)
            magpool_release(p, tmp[i]);
    }
    for (int i = 0; i < 50; i++)
        cr_assert(mp_check(keep[i], 96, 1000u + (uint32_t)i),
                  "[%s] held block %d was handed out again and overwritten", BN, i);
    for (int i = 0; i < 50; i++)
        magpool_release(p, keep[i]);
    magpool_destroy(p);
}

BACKEND_TEST(blocks, destroy_with_outstanding_blocks_frees_everything)
{
    /* ASan's leak checker fails this test if destroy leaks the slabs. */
    magpool_config_t c = mp_cfg(backend, 256);
    magpool_t *p = mp_create_ok(&c);
    for (int i = 0; i < 500; i++)
        cr_assert_not_null(magpool_acquire(p), "[%s]", BN);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 500, "[%s] outstanding %zu", BN, s.blocks_outstanding);
    magpool_destroy(p);
}

BACKEND_TEST(blocks, many_pools_are_independent)
{
    magpool_config_t c1 = mp_cfg(backend, 32), c2 = mp_cfg(backend, 64);
    c1.max_blocks = 10;
    magpool_t *p1 = mp_create_ok(&c1), *p2 = mp_create_ok(&c2);
    void *a[10], *b[100];
    for (int i = 0; i < 10; i++)
        cr_assert_not_null(a[i] = magpool_acquire(p1));
    cr_assert_null(magpool_acquire(p1), "[%s] p1 cap", BN);
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p2), "[%s] p2 limited by p1's cap", BN);
    magpool_stats_t s1 = mp_stats(p1, backend), s2 = mp_stats(p2, backend);
    cr_assert_eq(s1.acquires, 10, "[%s]", BN);
    cr_assert_eq(s1.failed, 1, "[%s]", BN);
    cr_assert_eq(s2.acquires, 100, "[%s]", BN);
    cr_assert_eq(s2.failed, 0, "[%s]", BN);
    for (int i = 0; i < 10; i++)
        magpool_release(p1, a[i]);
    for (int i = 0; i < 100; i++)
        magpool_release(p2, b[i]);
    magpool_destroy(p1);
    magpool_destroy(p2);
}
