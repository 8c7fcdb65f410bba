/* SPDX-License-Identifier: MIT */
/* MAGPOOL_CHECKED: double and foreign release are detected, reported on
 * stderr (one line), errno EINVAL, pool unchanged. */
#include "helpers.h"

static magpool_t *checked_pool(magpool_backend_t backend, size_t bs)
{
    magpool_config_t c = mp_cfg(backend, bs);
    c.flags = MAGPOOL_CHECKED;
    c.initial_blocks = 16;
    return mp_create_ok(&c);
}

/* All counters that a rejected release must leave alone. */
static void assert_same_stats(const magpool_stats_t *a, const magpool_stats_t *b,
                              magpool_backend_t backend, const char *what)
{
    cr_assert_eq(b->acquires, a->acquires, "[%s] %s changed acquires", BN, what);
    cr_assert_eq(b->releases, a->releases, "[%s] %s changed releases %llu -> %llu", BN, what,
                 (unsigned long long)a->releases, (unsigned long long)b->releases);
    cr_assert_eq(b->blocks_outstanding, a->blocks_outstanding,
                 "[%s] %s changed blocks_outstanding %zu -> %zu", BN, what,
                 a->blocks_outstanding, b->blocks_outstanding);
    cr_assert_eq(b->blocks_total, a->blocks_total, "[%s] %s changed blocks_total", BN, what);
    cr_assert_eq(b->failed, a->failed, "[%s] %s changed failed", BN, what);
}

/*
 * Release `bad` and expect a rejection: errno EINVAL, exactly one line on
 * stderr, stats unchanged.
 */
static void expect_rejected(magpool_t *p, void *bad, magpool_backend_t backend,
                            const char *what)
{
    magpool_stats_t before = mp_stats(p, backend);
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    errno = 0;
    magpool_release(p, bad);
    int e = errno;
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(e, EINVAL, "[%s] %s: errno %d, want EINVAL", BN, what, e);
    cr_assert_neq(out[0], '\0', "[%s] %s: nothing reported on stderr", BN, what);
    cr_assert_eq(mp_count_lines(out), 1, "[%s] %s: report is not one line: \"%s\"", BN, what,
                 out);
    magpool_stats_t after = mp_stats(p, backend);
    assert_same_stats(&before, &after, backend, what);
}

/* After a rejection, the pool must still hand out distinct blocks only. */
static void assert_pool_sane(magpool_t *p, size_t bs, magpool_backend_t backend, size_t n)
{
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i], "[%s] acquire %zu after rejected release", BN, i);
        mp_fill(b[i], bs, (uint32_t)i);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(mp_check(b[i], bs, (uint32_t)i), "[%s] block %zu handed out twice", BN, i);
    mp_assert_disjoint(b, n, bs, backend);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s, bs, backend);
    free(b);
}

BACKEND_TEST(checked, valid_release_reports_nothing)
{
    magpool_t *p = checked_pool(backend, 64);
    void *b[100];
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    for (int i = 0; i < 100; i++)
        magpool_release(p, b[i]);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_str_empty(out, "[%s] valid releases reported: \"%s\"", BN, out);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.releases, 100, "[%s]", BN);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    magpool_destroy(p);
}

BACKEND_TEST(checked, double_release_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    void *a = magpool_acquire(p), *keep = magpool_acquire(p);
    cr_assert_not_null(a);
    cr_assert_not_null(keep);
    magpool_release(p, a);
    expect_rejected(p, a, backend, "double release");
    expect_rejected(p, a, backend, "triple release");
    assert_pool_sane(p, 64, backend, 200);
    magpool_release(p, keep);
    magpool_destroy(p);
}

BACKEND_TEST(checked, double_release_after_magazine_traffic_is_detected)
{
    /* the first release went far away (depot / other magazines) */
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    void *b[64];
    for (int i = 0; i < 64; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    for (int i = 0; i < 64; i++)
        magpool_release(p, b[i]);
    expect_rejected(p, b[0], backend, "double release of a block now in the depot");
    expect_rejected(p, b[63], backend, "double release of a block in the thread cache");
    assert_pool_sane(p, 64, backend, 200);
    magpool_destroy(p);
}

struct rel_arg {
    magpool_t *p;
    void *blk;
    int err;
    char out[1024];
};

static void *release_twice_main(void *arg)
{
    struct rel_arg *r = arg;
    magpool_release(r->p, r->blk); /* valid, from another thread */
    return NULL;
}

BACKEND_TEST(checked, double_release_across_threads_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    void *a = magpool_acquire(p);
    cr_assert_not_null(a);
    struct rel_arg r = {.p = p, .blk = a};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, release_twice_main, &r), 0);
    pthread_join(t, NULL);
    expect_rejected(p, a, backend, "second release from another thread");
    assert_pool_sane(p, 64, backend, 100);
    magpool_destroy(p);
}

BACKEND_TEST(checked, malloc_pointer_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    void *m = malloc(64);
    cr_assert_not_null(m);
    expect_rejected(p, m, backend, "release of a malloc'd pointer");
    free(m); /* still ours: the pool did not keep it */
    int on_stack[16];
    expect_rejected(p, on_stack, backend, "release of a stack pointer");
    assert_pool_sane(p, 64, backend, 100);
    magpool_destroy(p);
}

BACKEND_TEST(checked, pointer_from_other_pool_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    magpool_t *q = checked_pool(backend, 64);
    void *x = magpool_acquire(q);
    cr_assert_not_null(x);
    expect_rejected(p, x, backend, "release of another pool's block");
    /* it is still q's block and q still takes it */
    magpool_stats_t sq = mp_stats(q, backend);
    cr_assert_eq(sq.blocks_outstanding, 1, "[%s]", BN);
    magpool_release(q, x);
    sq = mp_stats(q, backend);
    cr_assert_eq(sq.blocks_outstanding, 0, "[%s]", BN);
    assert_pool_sane(p, 64, backend, 100);
    magpool_destroy(p);
    magpool_destroy(q);
}

BACKEND_TEST(checked, pointer_into_the_middle_of_a_block_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    char *a = magpool_acquire(p);
    cr_assert_not_null(a);
    expect_rejected(p, a + 1, backend, "release of block+1 (misaligned)");
    expect_rejected(p, a + 16, backend, "release of block+16 (aligned, inside the block)");
    expect_rejected(p, a + 63, backend, "release of block+63");
    /* the real block is still outstanding and releases fine */
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 1, "[%s]", BN);
    errno = 0;
    magpool_release(p, a);
    s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s] real release after rejected ones", BN);
    assert_pool_sane(p, 64, backend, 100);
    magpool_destroy(p);
}

BACKEND_TEST(checked, pointer_just_past_the_slab_is_detected)
{
    magpool_t *p = checked_pool(backend, 64);
    void *b[16];
    uintptr_t hi = 0;
    for (int i = 0; i < 16; i++) {
        cr_assert_not_null(b[i] = magpool_acquire(p));
        if ((uintptr_t)b[i] > hi)
            hi = (uintptr_t)b[i];
    }
    /* 64 bytes after the highest block: block-aligned, maybe outside the slab */
    void *past = (void *)(hi + 64 * 1024 * 1024);
    expect_rejected(p, past, backend, "release of an address 64 MiB past the last block");
    for (int i = 0; i < 16; i++)
        magpool_release(p, b[i]);
    assert_pool_sane(p, 64, backend, 50);
    magpool_destroy(p);
}

BACKEND_TEST(checked, checked_mode_keeps_cap_exact)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    c.max_blocks = 20;
    magpool_t *p = mp_create_ok(&c);
    void *b[20];
    for (int i = 0; i < 20; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    magpool_release(p, b[0]);
    expect_rejected(p, b[0], backend, "double release at the cap");
    /* one free block, not two */
    void *x = magpool_acquire(p);
    cr_assert_not_null(x, "[%s]", BN);
    errno = 0;
    cr_assert_null(magpool_acquire(p), "[%s] double release created a phantom block", BN);
    cr_assert_eq(errno, ENOMEM, "[%s]", BN);
    b[0] = x;
    for (int i = 0; i < 20; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}

BACKEND_TEST(checked, env_magpool_checked_1_enables_checks)
{
    cr_assert_eq(setenv("MAGPOOL_CHECKED", "1", 1), 0);
    magpool_config_t c = mp_cfg(backend, 64); /* no MAGPOOL_CHECKED flag */
    magpool_t *p = mp_create_ok(&c);
    void *a = magpool_acquire(p);
    cr_assert_not_null(a);
    magpool_release(p, a);
    expect_rejected(p, a, backend, "double release with MAGPOOL_CHECKED=1 in the environment");
    void *m = malloc(32);
    expect_rejected(p, m, backend, "malloc'd pointer with MAGPOOL_CHECKED=1 in the environment");
    free(m);
    assert_pool_sane(p, 64, backend, 100);
    magpool_destroy(p);
    unsetenv("MAGPOOL_CHECKED");
}
