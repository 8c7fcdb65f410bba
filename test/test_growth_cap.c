/* SPDX-License-Identifier: MIT */
/* Preallocation, growth by grow_factor, the max_blocks cap (incl. the steal
 * path), magpool_clear / magpool_trim and magpool_thread_flush. */
#include "helpers.h"

/* ---- preallocation ------------------------------------------------------ */

BACKEND_TEST(growth, initial_blocks_are_preallocated_and_served_as_hits)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 100;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s0 = mp_stats(p, backend);
    cr_assert_geq(s0.blocks_total, 100, "[%s] blocks_total %zu after create, want >= 100", BN,
                  s0.blocks_total);
    cr_assert_geq(s0.bytes_reserved, 100 * 64, "[%s] bytes_reserved %zu", BN,
                  s0.bytes_reserved);
    cr_assert_eq(s0.acquires, 0, "[%s]", BN);
    cr_assert_eq(s0.blocks_outstanding, 0, "[%s]", BN);
    void *b[100];
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] acquire %d", BN, i);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.grows, s0.grows, "[%s] the first 100 acquires grew the pool (%llu -> %llu)",
                 BN, (unsigned long long)s0.grows, (unsigned long long)s1.grows);
    cr_assert_eq(s1.blocks_total, s0.blocks_total, "[%s]", BN);
    cr_assert_eq(s1.hits, 100, "[%s] hits %llu, want 100 (preallocated blocks are idle)", BN,
                 (unsigned long long)s1.hits);
    cr_assert_eq(s1.misses, 0, "[%s] misses %llu", BN, (unsigned long long)s1.misses);
    cr_assert(s1.hit_rate == 1.0, "[%s] hit_rate %g", BN, s1.hit_rate);
    for (int i = 0; i < 100; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}

/* ---- growth -------------------------------------------------------------- */

/*
 * Acquire until the pool has grown `ngrows` times, recording blocks_total
 * before and after every growth event. Checks that each growth multiplies the
 * capacity by roughly grow_factor (the last growths must be within 25 % plus
 * one page of blocks; the first may be at most factor+1 because "grow by
 * factor" can be read as "new slab = previous slab x factor").
 */
static void growth_follows_factor(magpool_backend_t backend, double factor)
{
    const size_t bs = 64;
    magpool_config_t c = mp_cfg(backend, bs);
    c.initial_blocks = 64;
    c.grow_factor = factor;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s = mp_stats(p, backend);
    size_t cap = 1 << 16;
    void **b = malloc(cap * sizeof *b);
    cr_assert_not_null(b);
    size_t n = 0, prev_total = s.blocks_total;
    uint64_t prev_grows = s.grows, prev_misses = s.misses;
    int seen = 0;
    const int ngrows = 5;
    double ratios[8];
    while (seen < ngrows && n < cap) {
        b[n] = magpool_acquire(p);
        cr_assert_not_null(b[n], "[%s] acquire %zu failed, errno %d", BN, n, errno);
        n++;
        magpool_stats_t t = mp_stats(p, backend);
        if (t.grows != prev_grows) {
            cr_assert_eq(t.grows, prev_grows + 1, "[%s] one acquire grew %llu times", BN,
                         (unsigned long long)(t.grows - prev_grows));
            cr_assert_eq(t.misses, prev_misses + 1,
                         "[%s] the acquire that grew the pool was not counted as a miss", BN);
            cr_assert_gt(t.blocks_total, prev_total, "[%s] grows++ but blocks_total %zu -> %zu",
                         BN, prev_total, t.blocks_total);
            cr_assert_eq(n - 1, prev_total,
                         "[%s] grew while idle blocks were left (%zu acquired of %zu)", BN,
                         n - 1, prev_total);
            ratios[seen] = (double)t.blocks_total / (double)prev_total;
            size_t per_page = 4096 / bs;
            double slack = (double)per_page / (double)prev_total;
            cr_assert_geq(ratios[seen], factor * 0.9 - 1e-9,
                          "[%s] growth %d: blocks_total %zu -> %zu (x%.3f), grow_factor %g", BN,
                          seen, prev_total, t.blocks_total, ratios[seen], factor);
            cr_assert_leq(ratios[seen], factor + 1.0 + slack,
                          "[%s] growth %d: blocks_total %zu -> %zu (x%.3f), grow_factor %g", BN,
                          seen, prev_total, t.blocks_total, ratios[seen], factor);
            if (seen >= ngrows - 2)
                cr_assert_leq(ratios[seen], factor * 1.25 + slack,
                              "[%s] growth %d: blocks_total %zu -> %zu (x%.3f), grow_factor %g",
                              BN, seen, prev_total, t.blocks_total, ratios[seen], factor);
            prev_total = t.blocks_total;
            prev_grows = t.grows;
            seen++;
        } else {
            cr_assert_eq(t.misses, prev_misses, "[%s] miss counted without growth", BN);
            cr_assert_eq(t.blocks_total, prev_total, "[%s] blocks_total changed without grow",
                         BN);
        }
        prev_misses = t.misses;
        cr_assert_geq(t.bytes_reserved, t.blocks_total * bs, "[%s]", BN);
    }
    cr_assert_eq(seen, ngrows, "[%s] only %d growths in %zu acquires", BN, seen, n);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(growth, pool_grows_by_grow_factor_2)
{
    growth_follows_factor(backend, 2.0);
}

BACKEND_TEST(growth, pool_grows_by_grow_factor_1_5)
{
    growth_follows_factor(backend, 1.5);
}

BACKEND_TEST(growth, pool_grows_by_grow_factor_3)
{
    growth_follows_factor(backend, 3.0);
}

BACKEND_TEST(growth, tiny_grow_factor_still_grows_by_at_least_one_block)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 1;
    c.grow_factor = 1.0001;
    magpool_t *p = mp_create_ok(&c);
    void *b[100];
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] acquire %d errno %d", BN, i, errno);
    mp_assert_disjoint(b, 100, 64, backend);
    for (int i = 0; i < 100; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}

/* ---- max_blocks ---------------------------------------------------------- */

static void cap_is_exact(magpool_backend_t backend, size_t max, unsigned mag, size_t initial)
{
    magpool_config_t c = mp_cfg(backend, 48);
    c.max_blocks = max;
    c.magazine_size = mag;
    c.initial_blocks = initial;
    magpool_t *p = mp_create_ok(&c);
    void **b = calloc(max, sizeof *b);
    cr_assert_not_null(b);
    for (size_t i = 0; i < max; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i], "[%s] acquire %zu of max_blocks %zu (mag %u) failed, errno %d",
                           BN, i, max, mag, errno);
    }
    mp_assert_disjoint(b, max, 48, backend);
    magpool_stats_t s0 = mp_stats(p, backend);
    cr_assert_leq(s0.blocks_total, max, "[%s] blocks_total %zu > max_blocks %zu", BN,
                  s0.blocks_total, max);
    cr_assert_eq(s0.failed, 0, "[%s]", BN);
    for (int k = 1; k <= 3; k++) {
        errno = 0;
        void *x = magpool_acquire(p);
        cr_assert_null(x, "[%s] acquire beyond max_blocks %zu succeeded", BN, max);
        cr_assert_eq(errno, ENOMEM, "[%s] errno %d, want ENOMEM", BN, errno);
        magpool_stats_t s = mp_stats(p, backend);
        cr_assert_eq(s.failed, (uint64_t)k, "[%s] failed %llu, want %d", BN,
                     (unsigned long long)s.failed, k);
        cr_assert_eq(s.acquires, max, "[%s] failed acquire counted as success", BN);
    }
    /* one release makes room for exactly one acquire */
    void *freed = b[max / 2];
    magpool_release(p, freed);
    b[max / 2] = magpool_acquire(p);
    cr_assert_not_null(b[max / 2], "[%s] acquire after a release at the cap failed", BN);
    cr_assert_eq(b[max / 2], freed, "[%s] the only free block is %p, got %p", BN, freed,
                 b[max / 2]);
    cr_assert_null(magpool_acquire(p), "[%s] cap exceeded after release+acquire", BN);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_leq(s1.blocks_total, max, "[%s]", BN);
    cr_assert_eq(s1.blocks_outstanding, max, "[%s]", BN);
    mp_assert_quiescent_invariants(&s1, 48, backend);
    for (size_t i = 0; i < max; i++)
        magpool_release(p, b[i]);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(cap, max_blocks_is_honoured_exactly)
{
    cap_is_exact(backend, 100, 0, 10);
}

BACKEND_TEST(cap, max_blocks_is_honoured_exactly_with_small_magazines)
{
    cap_is_exact(backend, 1000, 8, 10);
}

BACKEND_TEST(cap, max_blocks_not_multiple_of_growth_is_honoured)
{
    cap_is_exact(backend, 37, 0, 3);
    cap_is_exact(backend, 1, 0, 0);
    cap_is_exact(backend, 1, 0, 1);
}

/*
 * A helper thread acquires and releases all max_blocks blocks, so they sit in
 * its thread cache / the depot, then stays alive. The main thread must still
 * get every block (the steal path).
 */
struct hoarder {
    magpool_t *pool;
    size_t n;
    int flush;
    mp_gate_t parked, go_on;
    int ok;
};

static void *hoarder_main(void *arg)
{
    struct hoarder *h = arg;
    void **b = calloc(h->n, sizeof *b);
    h->ok = b != NULL;
    for (size_t i = 0; h->ok && i < h->n; i++)
        if (!(b[i] = magpool_acquire(h->pool)))
            h->ok = 0;
    for (size_t i = 0; b && i < h->n; i++)
        magpool_release(h->pool, b[i]);
    if (h->flush)
        magpool_thread_flush(h->pool);
    free(b);
    mp_gate_open(&h->parked);
    mp_gate_wait(&h->go_on);
    return NULL;
}

static void cap_with_parked_blocks(magpool_backend_t backend, size_t max, unsigned mag,
                                   int flush)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.max_blocks = max;
    c.magazine_size = mag;
    magpool_t *p = mp_create_ok(&c);
    struct hoarder h = {.pool = p, .n = max, .flush = flush};
    mp_gate_init(&h.parked);
    mp_gate_init(&h.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hoarder_main, &h), 0);
    mp_gate_wait(&h.parked);
    cr_assert(h.ok, "[%s] helper thread could not acquire max_blocks %zu", BN, max);

    magpool_stats_t s0 = mp_stats(p, backend);
    cr_assert_eq(s0.blocks_outstanding, 0, "[%s]", BN);
    void **b = calloc(max, sizeof *b);
    cr_assert_not_null(b);
    for (size_t i = 0; i < max; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i],
                           "[%s] main acquire %zu of max_blocks %zu failed (errno %d, mag %u, "
                           "flush %d) while a live thread hoards idle blocks",
                           BN, i, max, errno, mag, flush);
    }
    mp_assert_disjoint(b, max, 64, backend);
    errno = 0;
    cr_assert_null(magpool_acquire(p), "[%s] cap exceeded", BN);
    cr_assert_eq(errno, ENOMEM, "[%s] errno %d", BN, errno);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_leq(s1.blocks_total, max, "[%s] blocks_total %zu > max %zu", BN, s1.blocks_total,
                  max);
    cr_assert_eq(s1.blocks_outstanding, max, "[%s]", BN);
    if (backend == MAGPOOL_LOCKFREE && flush)
        cr_assert_eq(s1.steals, s0.steals,
                     "[%s] steals %llu -> %llu although the helper flushed its cache", BN,
                     (unsigned long long)s0.steals, (unsigned long long)s1.steals);
    for (size_t i = 0; i < max; i++)
        magpool_release(p, b[i]);
    mp_gate_open(&h.go_on);
    pthread_join(t, NULL);
    magpool_stats_t s2 = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s2, 64, backend);
    cr_assert_eq(s2.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s2.acquires, 2 * max, "[%s]", BN);
    free(b);
    magpool_destroy(p);
    mp_gate_destroy(&h.parked);
    mp_gate_destroy(&h.go_on);
}

BACKEND_TEST(cap, cap_reachable_when_live_thread_caches_all_blocks)
{
    cap_with_parked_blocks(backend, 1000, 0, 0);
}

BACKEND_TEST(cap, cap_reachable_when_live_thread_caches_all_blocks_mag8)
{
    cap_with_parked_blocks(backend, 1000, 8, 0);
}

BACKEND_TEST(cap, cap_reachable_when_live_thread_caches_all_blocks_mag1)
{
    cap_with_parked_blocks(backend, 50, 1, 0);
}

BACKEND_TEST(cap, cap_reachable_with_small_cap_and_big_magazine)
{
    cap_with_parked_blocks(backend, 3, 0, 0);
    cap_with_parked_blocks(backend, 7, 64, 0);
}

BACKEND_TEST(cap, steal_is_counted_when_taking_parked_blocks)
{
    if (backend != MAGPOOL_LOCKFREE) {
        /* no per-thread caches in the mutex backend: nothing to steal */
        cap_with_parked_blocks(backend, 100, 8, 0);
        return;
    }
    magpool_config_t c = mp_cfg(backend, 64);
    c.max_blocks = 100;
    c.magazine_size = 8;
    magpool_t *p = mp_create_ok(&c);
    struct hoarder h = {.pool = p, .n = 100};
    mp_gate_init(&h.parked);
    mp_gate_init(&h.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hoarder_main, &h), 0);
    mp_gate_wait(&h.parked);
    magpool_stats_t s0 = mp_stats(p, backend);
    void *b[100];
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] %d", BN, i);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_gt(s1.steals, s0.steals,
                 "[%s] all 100 blocks acquired while a live thread held cached ones, but "
                 "steals stayed %llu",
                 BN, (unsigned long long)s1.steals);
    for (int i = 0; i < 100; i++)
        magpool_release(p, b[i]);
    mp_gate_open(&h.go_on);
    pthread_join(t, NULL);
    magpool_destroy(p);
}

BACKEND_TEST(cap, thread_flush_makes_blocks_available_without_steal)
{
    cap_with_parked_blocks(backend, 1000, 8, 1);
}

/* ---- clear / trim -------------------------------------------------------- */

/*
 * clear/trim return "blocks given back to the OS": at least the blocks of the
 * slabs unmapped (blocks_total drop), at most the blocks that were idle (the
 * library may also count idle blocks whose pages it madvise()d away while
 * their slab stays mapped).
 */
static void assert_clear_count(size_t freed, const magpool_stats_t *before,
                               const magpool_stats_t *after, magpool_backend_t backend)
{
    size_t unmapped = before->blocks_total - after->blocks_total;
    size_t idle = before->blocks_total - before->blocks_outstanding;
    cr_assert_leq(after->blocks_total, before->blocks_total, "[%s] clear grew the pool", BN);
    cr_assert_geq(freed, unmapped, "[%s] returned %zu but blocks_total dropped by %zu", BN,
                  freed, unmapped);
    cr_assert_leq(freed, idle, "[%s] returned %zu but only %zu blocks were idle", BN, freed,
                  idle);
    cr_assert_leq(after->bytes_reserved, before->bytes_reserved, "[%s]", BN);
}

static magpool_t *grown_pool(magpool_backend_t backend, size_t n, void ***out)
{
    magpool_config_t c = mp_cfg(backend, 256);
    c.initial_blocks = 16;
    magpool_t *p = mp_create_ok(&c);
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s]", BN);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_geq(s.grows, 3, "[%s] %zu acquires from 16 initial blocks grew only %llu times",
                  BN, n, (unsigned long long)s.grows);
    *out = b;
    return p;
}

static void clear_returns_idle_memory(magpool_backend_t backend, int use_trim, double age)
{
    void **b;
    magpool_t *p = grown_pool(backend, 2000, &b);
    for (size_t i = 0; i < 2000; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s0 = mp_stats(p, backend);
    size_t freed = use_trim ? magpool_trim(p, age) : magpool_clear(p);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_gt(freed, 0, "[%s] %s returned 0 with %zu idle blocks in %llu slabs", BN,
                 use_trim ? "trim(0)" : "clear", s0.blocks_total,
                 (unsigned long long)s0.grows + 1);
    assert_clear_count(freed, &s0, &s1, backend);
    cr_assert_lt(s1.bytes_reserved, s0.bytes_reserved, "[%s] bytes_reserved %zu -> %zu", BN,
                 s0.bytes_reserved, s1.bytes_reserved);
    cr_assert_gt(s1.trims, s0.trims, "[%s] trims counter did not move", BN);
    cr_assert_eq(s1.acquires, s0.acquires, "[%s]", BN);
    cr_assert_eq(s1.releases, s0.releases, "[%s]", BN);
    mp_assert_quiescent_invariants(&s1, 256, backend);
    /* still usable, blocks fully writable (ASan/SEGV if they point into unmapped slabs) */
    for (size_t i = 0; i < 2000; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i], "[%s] acquire %zu after clear", BN, i);
        mp_fill(b[i], 256, (uint32_t)i);
    }
    for (size_t i = 0; i < 2000; i++)
        cr_assert(mp_check(b[i], 256, (uint32_t)i), "[%s] overlap after clear", BN);
    mp_assert_disjoint(b, 2000, 256, backend);
    for (size_t i = 0; i < 2000; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s2 = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s2, 256, backend);
    cr_assert_eq(s2.blocks_outstanding, 0, "[%s]", BN);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(trim, clear_returns_idle_slabs_and_pool_stays_usable)
{
    clear_returns_idle_memory(backend, 0, 0);
}

BACKEND_TEST(trim, trim_zero_behaves_like_clear)
{
    clear_returns_idle_memory(backend, 1, 0.0);
}

BACKEND_TEST(trim, trim_negative_behaves_like_clear)
{
    clear_returns_idle_memory(backend, 1, -1.0);
}

BACKEND_TEST(trim, trim_positive_age_returns_zero_and_keeps_memory)
{
    void **b;
    magpool_t *p = grown_pool(backend, 1000, &b);
    for (size_t i = 0; i < 1000; i++)
        magpool_release(p, b[i]);
    magpool_stats_t s0 = mp_stats(p, backend);
    cr_assert_eq(magpool_trim(p, 3600.0), 0, "[%s]", BN);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.blocks_total, s0.blocks_total, "[%s]", BN);
    cr_assert_eq(s1.bytes_reserved, s0.bytes_reserved, "[%s]", BN);
    for (size_t i = 0; i < 1000; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s]", BN);
    for (size_t i = 0; i < 1000; i++)
        magpool_release(p, b[i]);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(trim, clear_keeps_outstanding_blocks_intact)
{
    void **b;
    magpool_t *p = grown_pool(backend, 2000, &b);
    /* keep every 97th block, release the rest */
    for (size_t i = 0; i < 2000; i++) {
        if (i % 97 == 0)
            mp_fill(b[i], 256, (uint32_t)i);
        else
            magpool_release(p, b[i]);
    }
    magpool_stats_t s0 = mp_stats(p, backend);
    size_t freed = magpool_clear(p);
    magpool_stats_t s1 = mp_stats(p, backend);
    assert_clear_count(freed, &s0, &s1, backend);
    cr_assert_eq(s1.blocks_outstanding, s0.blocks_outstanding, "[%s]", BN);
    for (size_t i = 0; i < 2000; i += 97) {
        cr_assert(mp_check(b[i], 256, (uint32_t)i), "[%s] held block %zu damaged by clear", BN,
                  i);
        magpool_release(p, b[i]);
    }
    magpool_stats_t s2 = mp_stats(p, backend);
    cr_assert_eq(s2.blocks_outstanding, 0, "[%s]", BN);
    mp_assert_quiescent_invariants(&s2, 256, backend);
    /* a second clear can now return the rest */
    size_t freed2 = magpool_clear(p);
    magpool_stats_t s3 = mp_stats(p, backend);
    assert_clear_count(freed2, &s2, &s3, backend);
    cr_assert_eq(s3.blocks_total, 0, "[%s] all idle, yet %zu blocks stay mapped", BN,
                 s3.blocks_total);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(trim, clear_with_everything_outstanding_returns_zero)
{
    void **b;
    magpool_t *p = grown_pool(backend, 500, &b);
    magpool_stats_t s0 = mp_stats(p, backend);
    /* every carved block is outstanding only if blocks_total == 500; release none */
    size_t idle = s0.blocks_total - s0.blocks_outstanding;
    size_t freed = magpool_clear(p);
    cr_assert_leq(freed, idle, "[%s] clear returned %zu blocks but only %zu were idle", BN,
                  freed, idle);
    for (size_t i = 0; i < 500; i++)
        memset(b[i], 0x11, 256); /* still mapped */
    for (size_t i = 0; i < 500; i++)
        magpool_release(p, b[i]);
    free(b);
    magpool_destroy(p);
}

struct cached_user {
    magpool_t *pool;
    size_t n;
    mp_gate_t parked, go_on;
    int ok_after;
};

static void *cached_user_main(void *arg)
{
    struct cached_user *u = arg;
    void **b = calloc(u->n, sizeof *b);
    for (size_t i = 0; i < u->n; i++)
        b[i] = magpool_acquire(u->pool);
    for (size_t i = 0; i < u->n; i++)
        magpool_release(u->pool, b[i]);
    mp_gate_open(&u->parked);
    mp_gate_wait(&u->go_on);
    /* my cache was collected by clear: using it must not touch unmapped memory */
    u->ok_after = 1;
    for (size_t i = 0; i < u->n; i++) {
        b[i] = magpool_acquire(u->pool);
        if (!b[i]) {
            u->ok_after = 0;
            break;
        }
        memset(b[i], 0x77, 128);
    }
    for (size_t i = 0; i < u->n; i++)
        if (b[i])
            magpool_release(u->pool, b[i]);
    free(b);
    return NULL;
}

BACKEND_TEST(trim, clear_collects_blocks_cached_by_other_live_threads)
{
    magpool_config_t c = mp_cfg(backend, 128);
    c.initial_blocks = 8;
    c.magazine_size = 16;
    magpool_t *p = mp_create_ok(&c);
    struct cached_user u = {.pool = p, .n = 3000};
    mp_gate_init(&u.parked);
    mp_gate_init(&u.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, cached_user_main, &u), 0);
    mp_gate_wait(&u.parked);
    magpool_stats_t s0 = mp_stats(p, backend);
    cr_assert_eq(s0.blocks_outstanding, 0, "[%s]", BN);
    size_t freed = magpool_clear(p);
    magpool_stats_t s1 = mp_stats(p, backend);
    assert_clear_count(freed, &s0, &s1, backend);
    /* every block was idle, so every slab is all idle and must go */
    cr_assert_eq(s1.blocks_total, 0,
                 "[%s] clear left %zu of %zu blocks although all were idle (some parked in a "
                 "live thread's cache)",
                 BN, s1.blocks_total, s0.blocks_total);
    mp_gate_open(&u.go_on);
    pthread_join(t, NULL);
    cr_assert(u.ok_after, "[%s] helper could not acquire after clear", BN);
    magpool_stats_t s2 = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s2, 128, backend);
    magpool_destroy(p);
    mp_gate_destroy(&u.parked);
    mp_gate_destroy(&u.go_on);
}
