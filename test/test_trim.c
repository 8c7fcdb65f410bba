/* SPDX-License-Identifier: MIT */
/*
 * Trimming: idle memory goes back to the OS, by age, while the pool stays
 * usable. Ages use an injected clock (magpool_test_clock_ns) instead of
 * sleeping; RSS is read from /proc/self/statm.
 */
#include <math.h>
#include <sys/mman.h>

#include "helpers.h"
#include "internal.h"

static _Atomic uint64_t fake_ns = 1000000000000ull; /* t = 1000 s */

static uint64_t fake_clock(void)
{
    return atomic_load(&fake_ns);
}

static void advance(double s)
{
    atomic_fetch_add(&fake_ns, (uint64_t)(s * 1e9));
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    long size = 0, res = 0;
    cr_assert_eq(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

enum { BURST = 16384, BSZ = 1024 }; /* 16 MiB */

static void **burst_acquire(magpool_t *p, size_t n)
{
    void **h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < n; i++) {
        h[i] = magpool_acquire(p);
        cr_assert_not_null(h[i], "acquire %zu", i);
        memset(h[i], 0x5a, BSZ);
    }
    return h;
}

static void burst_release(magpool_t *p, void **h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        magpool_release(p, h[i]);
    free(h);
}

static void install_clock(void)
{
    magpool_test_clock_ns = fake_clock;
}

TestSuite(trim, .init = install_clock);

BACKEND_TEST(trim, trim_with_nothing_idle_does_nothing)
{
    magpool_config_t c = mp_cfg(backend, BSZ);
    c.initial_blocks = 0;
    magpool_t *p = mp_create_ok(&c);
    void **h = burst_acquire(p, 1000);
    magpool_stats_t s0 = mp_stats(p, backend);
    /* Every carved block is outstanding: nothing is idle. Blocks carved but
     * never handed out would be idle, so hand out all of them first. */
    size_t extra = s0.blocks_total - s0.blocks_outstanding;
    void **more = burst_acquire(p, extra);
    s0 = mp_stats(p, backend);
    cr_assert_eq(s0.blocks_total, s0.blocks_outstanding, "[%s]", BN);
    cr_assert_eq(magpool_trim(p, 0), 0, "[%s] trim with nothing idle returned > 0", BN);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.bytes_reserved, s0.bytes_reserved, "[%s] reserved changed", BN);
    cr_assert_eq(s1.blocks_total, s0.blocks_total, "[%s]", BN);
    cr_assert_eq(s1.trims, s0.trims, "[%s] a trim that returned nothing was counted", BN);
    burst_release(p, more, extra);
    burst_release(p, h, 1000);
    magpool_destroy(p);
}

BACKEND_TEST(trim, clear_after_release_returns_memory_and_rss)
{
    magpool_config_t c = mp_cfg(backend, BSZ);
    magpool_t *p = mp_create_ok(&c);
    long r0 = rss_kib();
    void **h = burst_acquire(p, BURST);
    long r1 = rss_kib();
    cr_assert_gt(r1 - r0, BURST / 2, "[%s] burst did not raise RSS (%ld -> %ld KiB)", BN, r0, r1);
    burst_release(p, h, BURST);
    size_t got = magpool_clear(p);
    magpool_stats_t s = mp_stats(p, backend);
    long r2 = rss_kib();
    cr_assert_geq(got, BURST, "[%s] clear returned %zu blocks", BN, got);
    cr_assert_eq(s.bytes_reserved, 0, "[%s] bytes_reserved %zu after clear", BN, s.bytes_reserved);
    cr_assert_eq(s.blocks_total, 0, "[%s]", BN);
    cr_assert_geq(s.bytes_returned, (uint64_t)BURST * BSZ, "[%s] bytes_returned %llu", BN,
                  (unsigned long long)s.bytes_returned);
    cr_assert_geq(s.trims, 1, "[%s]", BN);
    cr_assert_lt(r2 - r0, (r1 - r0) / 10, "[%s] RSS %ld -> %ld -> %ld KiB: burst not returned",
                 BN, r0, r1, r2);
    mp_assert_quiescent_invariants(&s, BSZ, backend);
    /* Still a working pool. */
    void *b = magpool_acquire(p);
    cr_assert_not_null(b, "[%s] acquire after clear", BN);
    memset(b, 1, BSZ);
    magpool_release(p, b);
    magpool_destroy(p);
}

BACKEND_TEST(trim, ages_are_respected)
{
    magpool_config_t c = mp_cfg(backend, BSZ);
    magpool_t *p = mp_create_ok(&c);
    burst_release(p, burst_acquire(p, BURST), BURST);
    magpool_thread_flush(p);
    advance(5);
    cr_assert_eq(magpool_trim(p, 10), 0, "[%s] 5 s old memory trimmed at age 10", BN);
    advance(6);
    size_t got = magpool_trim(p, 10);
    if (backend == MAGPOOL_MUTEX) {
        /* No per-block ages: idle means "no operation since a trim that ran
         * at least max_idle ago". The first look was only 6 s ago. */
        cr_assert_eq(got, 0, "[%s] trimmed 6 s after the first look at age 10", BN);
        advance(5);
        got = magpool_trim(p, 10);
    }
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_gt(got, BURST / 2, "[%s] memory idle 11 s not trimmed at age 10 (%zu)", BN, got);
    cr_assert_gt(s.bytes_returned, (uint64_t)BURST * BSZ / 2, "[%s]", BN);
    magpool_destroy(p);
}

Test(trim, newer_magazines_survive_an_age_cut)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    c.magazine_size = 16;
    magpool_t *p = mp_create_ok(&c);
    void **old = burst_acquire(p, 4096);
    void **young = burst_acquire(p, 4096);
    burst_release(p, old, 4096);
    advance(20);
    burst_release(p, young, 4096);
    magpool_thread_flush(p); /* our own cache goes to the depot, stamped now */
    advance(5);
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    size_t got = magpool_trim(p, 10);
    /* Old blocks (idle 25 s, and those carved 25 s ago and never used) go;
     * young ones (idle 5 s) stay resident. */
    cr_assert_geq(got, 2048, "only %zu blocks trimmed", got);
    cr_assert_leq(got, s.blocks_total - 4096 + 16, "%zu of %zu blocks trimmed: young ones too",
                  got, s.blocks_total);
    size_t resident = 0;
    for (size_t i = 0; i < 4096; i++) {
        void *b = magpool_acquire(p);
        cr_assert_not_null(b);
        unsigned char v;
        uintptr_t pg = (uintptr_t)b & ~(uintptr_t)4095;
        cr_assert_eq(mincore((void *)pg, 1, &v), 0);
        resident += v & 1;
    }
    cr_assert_geq(resident, 2048, "young blocks lost residency (%zu resident)", resident);
    magpool_destroy(p);
}

struct sleeper {
    magpool_t *p;
    mp_gate_t released, done;
};

static void *burst_then_sleep(void *arg)
{
    struct sleeper *s = arg;
    void **h = malloc(BURST * sizeof *h);
    for (size_t i = 0; i < BURST; i++) {
        h[i] = magpool_acquire(s->p);
        memset(h[i], 0x33, BSZ);
    }
    for (size_t i = 0; i < BURST; i++)
        magpool_release(s->p, h[i]);
    free(h);
    mp_gate_open(&s->released);
    mp_gate_wait(&s->done); /* alive and idle, cache still loaded */
    return NULL;
}

Test(trim, idle_live_thread_cache_is_reclaimed_by_another_thread)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    c.magazine_size = 256; /* the sleeper parks up to 512 blocks */
    struct sleeper s = { .p = mp_create_ok(&c) };
    mp_gate_init(&s.released);
    mp_gate_init(&s.done);
    long r0 = rss_kib();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, burst_then_sleep, &s), 0);
    mp_gate_wait(&s.released);
    long r1 = rss_kib();
    magpool_trim(s.p, 10); /* first look at the sleeper's cache */
    advance(11);
    magpool_trim(s.p, 10); /* depot and the idle cache */
    magpool_stats_t st;
    cr_assert_eq(magpool_get_stats(s.p, &st), 0);
    long r2 = rss_kib();
    /* Taken back (bytes_reserved below), but not a steal: `steals` counts
     * only at-cap steals, and this pool has no cap. */
    cr_assert_eq(st.steals, 0, "steals counted a trim: %llu", (unsigned long long)st.steals);
    cr_assert_eq(st.bytes_reserved, 0, "slabs still mapped (%zu bytes): parked blocks kept them",
                 st.bytes_reserved);
    cr_assert_lt(r2 - r0, (r1 - r0) / 10, "RSS %ld -> %ld -> %ld KiB", r0, r1, r2);
    mp_gate_open(&s.done);
    pthread_join(t, NULL);
    magpool_destroy(s.p);
}

Test(trim, active_thread_cache_is_left_alone)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    magpool_t *p = mp_create_ok(&c);
    void *b = magpool_acquire(p);
    magpool_release(p, b); /* b sits in our loaded magazine */
    magpool_trim(p, 10);
    advance(11);
    magpool_trim(p, 10); /* we are the caller: our own cache is never stolen */
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    cr_assert_eq(s.steals, 0);
    cr_assert_eq(magpool_acquire(p), b, "our cached block should come straight back");
    magpool_release(p, b);
    magpool_destroy(p);
}

Test(trim, magazines_are_freed)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    c.magazine_size = 16;
    magpool_t *p = mp_create_ok(&c);
    burst_release(p, burst_acquire(p, 20000), 20000);
    magpool_stats_t s0, s1;
    cr_assert_eq(magpool_get_stats(p, &s0), 0);
    cr_assert_gt(s0.magazines, 1000, "%zu magazines", s0.magazines);
    magpool_clear(p);
    cr_assert_eq(magpool_get_stats(p, &s1), 0);
    cr_assert_leq(s1.magazines, 2, "%zu magazines left after clear", s1.magazines);
    burst_release(p, burst_acquire(p, 20000), 20000); /* and they come back */
    magpool_destroy(p);
}

Test(trim, partially_used_slab_returns_idle_pages_and_blocks_still_work)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    c.initial_blocks = BURST;
    magpool_t *p = mp_create_ok(&c);
    void **h = burst_acquire(p, BURST);
    void *keep = h[BURST / 2]; /* pins the one slab */
    h[BURST / 2] = h[BURST - 1];
    burst_release(p, h, BURST - 1);
    size_t got = magpool_clear(p);
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    cr_assert_gt(s.bytes_reserved, 0, "the pinned slab must stay mapped");
    cr_assert_geq(got, BURST - 8, "idle pages of a pinned slab not returned (%zu)", got);
    cr_assert_eq(*(unsigned char *)keep, 0x5a, "the outstanding block was touched");
    void **again = burst_acquire(p, BURST - 1); /* faults back in, writable */
    burst_release(p, again, BURST - 1);
    magpool_release(p, keep);
    magpool_destroy(p);
}

Test(trim, background_trimmer_returns_memory)
{
    magpool_test_clock_ns = NULL; /* real time here */
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    magpool_t *p = mp_create_ok(&c);
    burst_release(p, burst_acquire(p, BURST), BURST);
    magpool_thread_flush(p);
    cr_assert_eq(magpool_set_trim_interval(p, 0.02, 0), 0);
    magpool_stats_t s = { 0 };
    for (int i = 0; i < 500; i++) { /* up to 10 s on a loaded machine */
        cr_assert_eq(magpool_get_stats(p, &s), 0);
        if (s.bytes_reserved == 0)
            break;
        usleep(20000);
    }
    cr_assert_eq(s.bytes_reserved, 0, "background trimmer did not run");
    cr_assert_eq(magpool_set_trim_interval(p, 0, 0), 0, "stop");
    magpool_destroy(p); /* destroy while listed must also be safe: */
    magpool_t *q = mp_create_ok(&c);
    cr_assert_eq(magpool_set_trim_interval(q, 0.001, 0), 0);
    usleep(5000);
    magpool_destroy(q);
}

Test(trim, set_trim_interval_rejects_bad_input)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, BSZ);
    magpool_t *p = mp_create_ok(&c);
    errno = 0;
    cr_assert_eq(magpool_set_trim_interval(NULL, 1, 1), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_set_trim_interval(p, NAN, 1), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_trim(NULL, 1), 0);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_set_trim_interval(p, 1, NAN), 0, "an age: NaN is 'everything'");
    cr_assert_eq(magpool_set_trim_interval(p, 0, 0), 0);
    burst_release(p, burst_acquire(p, 64), 64);
    cr_assert_gt(magpool_trim(p, NAN), 0, "NaN age behaves as 0 (everything idle)");
    magpool_destroy(p);
}
