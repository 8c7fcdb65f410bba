/* SPDX-License-Identifier: MIT */
/*
 * BufferManager clear_unused(max_age_s) with an injected clock (no sleeping).
 *
 * Links the static library to reach the hidden test clock,
 * magpool_test_clock_ns (pool.c). Depends on age-based magpool_trim (issue
 * "Epoch-based reclamation and LRU trimming"): with a core whose trim
 * reclaims only at max_idle_s <= 0, the age tests fail.
 *
 * Buffers are released by worker threads that then exit: thread exit moves
 * their magazines to the depot, stamped with the (fake) time of the exit,
 * which is the age trim judges. Classes of 512 KiB and 768 KiB hold one buffer
 * per slab, so each idle buffer's memory can go back on its own.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <magpool.h>

extern uint64_t (*magpool_test_clock_ns)(void);

static _Atomic uint64_t fake_now;
static uint64_t fake_clock(void) { return atomic_load(&fake_now); }
static void set_time(double s) { atomic_store(&fake_now, (uint64_t)(s * 1e9) + 1000000000u); }

struct job {
    magpool_bufmgr_t *bm;
    size_t bytes;
    int n;
};

/* Get and release n buffers of `bytes`, then exit (flushing to the depot). */
static void *churn(void *arg)
{
    struct job *j = arg;
    void *v[16];
    for (int i = 0; i < j->n; i++)
        v[i] = magpool_bufmgr_get(j->bm, j->bytes, MAGPOOL_U8);
    for (int i = 0; i < j->n; i++)
        magpool_bufmgr_release(j->bm, v[i]);
    return NULL;
}

static void run(struct job *j)
{
    pthread_t t;
    pthread_create(&t, NULL, churn, j);
    pthread_join(t, NULL);
}

Test(bufmgr_age, clear_unused_frees_only_buffers_older_than_max_age)
{
    magpool_test_clock_ns = fake_clock;
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    struct job old = { bm, (size_t)512 << 10, 2 };
    struct job young = { bm, (size_t)768 << 10, 3 };
    set_time(0);
    run(&old);
    set_time(10);
    run(&young);
    set_time(12);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 5.0), 2, "only the 12 s old buffers");
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 5.0), 0, "the 2 s old ones stay");
    set_time(20);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 5.0), 3, "now 10 s old");
    magpool_bufmgr_stats_t s;
    magpool_bufmgr_get_stats(bm, &s);
    cr_assert_eq(s.idle_blocks, 0);
    magpool_bufmgr_destroy(bm);
    magpool_test_clock_ns = NULL;
}

Test(bufmgr_age, buffers_reused_recently_are_not_old)
{
    magpool_test_clock_ns = fake_clock;
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    struct job j = { bm, (size_t)512 << 10, 2 };
    set_time(0);
    run(&j);
    set_time(100);
    run(&j); /* the same two buffers, reused and released again at t = 100 */
    set_time(103);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 5.0), 0);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 2.0), 2);
    magpool_bufmgr_destroy(bm);
    magpool_test_clock_ns = NULL;
}

Test(bufmgr_age, clear_unused_zero_needs_no_clock)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    struct job j = { bm, (size_t)512 << 10, 4 };
    run(&j);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.0), 4);
    magpool_bufmgr_destroy(bm);
}

/* The caller's own cache ages too: a thread that released buffers and then
 * calls clear_unused(age) twice, age apart, gets them back (issue: only
 * clear_unused(0) used to reach the caller's own cache). */
Test(bufmgr_age, own_idle_cache_is_reclaimed_by_age)
{
    magpool_test_clock_ns = fake_clock;
    set_time(0);
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    void *v[256];
    for (int i = 0; i < 256; i++)
        cr_assert_not_null(v[i] = magpool_bufmgr_get(bm, 1000, MAGPOOL_F64));
    for (int i = 0; i < 256; i++)
        magpool_bufmgr_release(bm, v[i]);
    set_time(1);
    size_t first = magpool_bufmgr_clear_unused(bm, 0.01); /* notes our cache */
    set_time(1.03);
    size_t second = magpool_bufmgr_clear_unused(bm, 0.01);
    cr_assert_gt(first + second, 0, "nothing freed from the caller's own idle cache");
    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    cr_assert_eq(s.idle_blocks, 0, "%zu idle blocks left in the caller's cache", s.idle_blocks);
    /* A cache in use is not taken: use it, trim at once, nothing goes. */
    void *b = magpool_bufmgr_get(bm, 1000, MAGPOOL_F64);
    magpool_bufmgr_release(bm, b);
    set_time(1.031);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.01), 0);
    magpool_bufmgr_destroy(bm);
    magpool_test_clock_ns = NULL;
}
