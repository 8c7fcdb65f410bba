/* SPDX-License-Identifier: MIT */
/* Bulk acquire/release (all or nothing, counted as single calls), zeroing
 * acquire and the typed helpers magpool_new / magpool_new0 / magpool_delete,
 * on both backends and in CHECKED mode. */
#include "helpers.h"

static magpool_t *pool_of(magpool_backend_t backend, size_t bs, size_t initial, size_t max,
                          unsigned flags)
{
    magpool_config_t c = mp_cfg(backend, bs);
    c.initial_blocks = initial;
    c.max_blocks = max;
    c.flags = flags;
    return mp_create_ok(&c);
}

/* Every block of v[0..n) is ours alone: fill all, then check all. */
static void assert_owned(void **v, size_t n, size_t bs, magpool_backend_t backend)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(v[i], "[%s] block %zu is NULL", BN, i);
        cr_assert_eq((uintptr_t)v[i] % 16, 0, "[%s] block %p not 16-byte aligned", BN, v[i]);
        mp_fill(v[i], bs, (uint32_t)i);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(mp_check(v[i], bs, (uint32_t)i), "[%s] block %zu (%p) handed out twice", BN,
                  i, v[i]);
    mp_assert_disjoint(v, n, bs, backend);
}

/* ----------------------------------------------------------------- bulk */

/* Sizes below, at and well beyond what the two magazines of a thread hold
 * (2 x 256 for 64-byte blocks), so the copy, the slow-path refill and the
 * drain to the depot all run. */
BACKEND_TEST(bulk, acquire_bulk_gives_n_distinct_blocks)
{
    static const size_t ns[] = { 1, 7, 255, 256, 257, 512, 513, 3000 };
    magpool_t *p = pool_of(backend, 64, 10, 0, 0);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        void **v = calloc(n, sizeof *v);
        cr_assert_not_null(v);
        errno = 0;
        cr_assert_eq(magpool_acquire_bulk(p, v, n), 0, "[%s] acquire_bulk(%zu): errno %d", BN,
                     n, errno);
        assert_owned(v, n, 64, backend);
        magpool_stats_t s = mp_stats(p, backend);
        cr_assert_eq(s.blocks_outstanding, n, "[%s] n=%zu: outstanding %zu", BN, n,
                     s.blocks_outstanding);
        magpool_release_bulk(p, v, n);
        s = mp_stats(p, backend);
        cr_assert_eq(s.blocks_outstanding, 0, "[%s] n=%zu: outstanding %zu after release_bulk",
                     BN, n, s.blocks_outstanding);
        mp_assert_quiescent_invariants(&s, 64, backend);
        free(v);
    }
    magpool_destroy(p);
}

/* The same sequence of operations, once as single calls on one pool and once
 * as bulk calls on an identical pool: every counter that describes the calls
 * (not the cache's internal traffic) must agree. */
static void run_sequence(magpool_t *p, int bulk, void **v)
{
    static const size_t steps[] = { 1000, 300, 5, 700, 2000 };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        size_t n = steps[k];
        if (bulk) {
            cr_assert_eq(magpool_acquire_bulk(p, v, n), 0);
            magpool_release_bulk(p, v, n);
        } else {
            for (size_t i = 0; i < n; i++)
                cr_assert_not_null(v[i] = magpool_acquire(p));
            for (size_t i = 0; i < n; i++)
                magpool_release(p, v[i]);
        }
    }
}

BACKEND_TEST(bulk, stats_count_bulk_calls_as_single_calls)
{
    void **v = calloc(2000, sizeof *v);
    cr_assert_not_null(v);
    magpool_t *single = pool_of(backend, 64, 10, 0, 0);
    magpool_t *bulk = pool_of(backend, 64, 10, 0, 0);
    run_sequence(single, 0, v);
    run_sequence(bulk, 1, v);
    magpool_stats_t a = mp_stats(single, backend), b = mp_stats(bulk, backend);
    mp_assert_quiescent_invariants(&b, 64, backend);
    cr_assert_eq(b.acquires, 4005, "[%s] bulk acquires %llu, want 4005", BN,
                 (unsigned long long)b.acquires);
#define SAME(f)                                                                        \
    cr_assert_eq(b.f, a.f, "[%s] " #f ": bulk %llu, single %llu", BN,                  \
                 (unsigned long long)b.f, (unsigned long long)a.f)
    SAME(acquires);
    SAME(releases);
    SAME(hits);
    SAME(misses);
    SAME(grows);
    SAME(failed);
    SAME(blocks_total);
    SAME(blocks_outstanding);
#undef SAME
    magpool_destroy(single);
    magpool_destroy(bulk);
    free(v);
}

/* Fill the pool to `held` of `cap` blocks with single calls, then ask for
 * more than remains in one bulk call. */
static void all_or_nothing_at_cap(magpool_backend_t backend, size_t initial, size_t cap,
                                  size_t held, unsigned flags)
{
    magpool_t *p = pool_of(backend, 64, initial, cap, flags);
    void **h = calloc(cap + 1, sizeof *h), **v = calloc(cap + 1, sizeof *v);
    cr_assert(h && v);
    for (size_t i = 0; i < held; i++)
        cr_assert_not_null(h[i] = magpool_acquire(p), "[%s] single acquire %zu", BN, i);
    magpool_stats_t s0 = mp_stats(p, backend);
    size_t want = cap - held + 1;
    for (size_t i = 0; i < want; i++)
        v[i] = (void *)(uintptr_t)0x5a5a; /* garbage the call may overwrite */

    errno = 0;
    int rc = magpool_acquire_bulk(p, v, want);
    int e = errno;
    cr_assert_eq(rc, -1, "[%s] acquire_bulk of %zu with %zu left succeeded", BN, want,
                 cap - held);
    cr_assert_eq(e, ENOMEM, "[%s] errno %d, want ENOMEM", BN, e);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.blocks_outstanding, held, "[%s] failed bulk kept blocks: %zu outstanding, "
                 "want %zu", BN, s1.blocks_outstanding, held);
    cr_assert_eq(s1.failed, s0.failed + 1, "[%s] failed %llu -> %llu, want +1", BN,
                 (unsigned long long)s0.failed, (unsigned long long)s1.failed);
    /* What the call did: took every remaining block, failed once, gave them back. */
    cr_assert_eq(s1.acquires - s0.acquires, (uint64_t)(cap - held),
                 "[%s] acquires +%llu, want +%zu", BN,
                 (unsigned long long)(s1.acquires - s0.acquires), cap - held);
    cr_assert_eq(s1.releases - s0.releases, s1.acquires - s0.acquires, "[%s]", BN);
    cr_assert_eq(s1.blocks_total, cap, "[%s] blocks_total %zu, want the cap %zu", BN,
                 s1.blocks_total, cap);
    mp_assert_quiescent_invariants(&s1, 64, backend);

    /* Still fully usable: exactly what remains can be had, in bulk ... */
    cr_assert_eq(magpool_acquire_bulk(p, v, cap - held), 0, "[%s] the %zu remaining blocks "
                 "are out of reach after a failed bulk (errno %d)", BN, cap - held, errno);
    memcpy(h + held, v, (cap - held) * sizeof *v);
    assert_owned(h, cap, 64, backend);
    errno = 0;
    cr_assert_null(magpool_acquire(p), "[%s] cap %zu exceeded", BN, cap);
    cr_assert_eq(errno, ENOMEM, "[%s]", BN);
    errno = 0;
    cr_assert_eq(magpool_acquire_bulk(p, v, 1), -1, "[%s] bulk of 1 beyond the cap", BN);
    cr_assert_eq(errno, ENOMEM, "[%s]", BN);
    /* ... and everything comes back. */
    magpool_release_bulk(p, h, cap);
    magpool_stats_t s2 = mp_stats(p, backend);
    cr_assert_eq(s2.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s2.failed, s0.failed + 3, "[%s]", BN);
    mp_assert_quiescent_invariants(&s2, 64, backend);
    free(h);
    free(v);
    magpool_destroy(p);
}

BACKEND_TEST(bulk, acquire_bulk_beyond_cap_takes_nothing)
{
    all_or_nothing_at_cap(backend, 100, 100, 60, 0);   /* preallocated to the cap */
    all_or_nothing_at_cap(backend, 100, 100, 0, 0);    /* nothing held, n = cap + 1 */
    all_or_nothing_at_cap(backend, 10, 1000, 5, 0);    /* grows to the cap in the call */
    all_or_nothing_at_cap(backend, 10, 1000, 700, 0);  /* more than two magazines held */
}

BACKEND_TEST(bulk, acquire_bulk_beyond_cap_takes_nothing_checked)
{
    all_or_nothing_at_cap(backend, 100, 100, 60, MAGPOOL_CHECKED);
    all_or_nothing_at_cap(backend, 10, 1000, 5, MAGPOOL_CHECKED);
}

/* A live thread parks every block in its cache; a bulk call at the cap
 * must take them back (steal), as single calls do. */
struct parker {
    magpool_t *pool;
    size_t n;
    mp_gate_t parked, go_on;
    int ok;
};

static void *parker_main(void *arg)
{
    struct parker *k = arg;
    void **b = calloc(k->n, sizeof *b);
    k->ok = b != NULL && magpool_acquire_bulk(k->pool, b, k->n) == 0;
    if (k->ok)
        magpool_release_bulk(k->pool, b, k->n);
    free(b);
    mp_gate_open(&k->parked);
    mp_gate_wait(&k->go_on);
    return NULL;
}

BACKEND_TEST(bulk, acquire_bulk_at_cap_takes_back_parked_blocks)
{
    magpool_t *p = pool_of(backend, 64, 10, 300, 0);
    struct parker k = { .pool = p, .n = 300 };
    mp_gate_init(&k.parked);
    mp_gate_init(&k.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, parker_main, &k), 0);
    mp_gate_wait(&k.parked);
    cr_assert(k.ok, "[%s] helper's bulk acquire failed", BN);
    void *v[300];
    errno = 0;
    cr_assert_eq(magpool_acquire_bulk(p, v, 300), 0, "[%s] bulk of the whole cap failed "
                 "while a live thread parks idle blocks (errno %d)", BN, errno);
    assert_owned(v, 300, 64, backend);
    magpool_release_bulk(p, v, 300);
    mp_gate_open(&k.go_on);
    pthread_join(t, NULL);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s.failed, 0, "[%s]", BN);
    mp_assert_quiescent_invariants(&s, 64, backend);
    magpool_destroy(p);
    mp_gate_destroy(&k.parked);
    mp_gate_destroy(&k.go_on);
}

BACKEND_TEST(bulk, zero_count_and_bad_arguments)
{
    magpool_t *p = pool_of(backend, 64, 10, 0, 0);
    void *v[4] = { 0 };
    errno = 0;
    cr_assert_eq(magpool_acquire_bulk(p, NULL, 0), 0, "[%s] n = 0, NULL array", BN);
    cr_assert_eq(magpool_acquire_bulk(p, v, 0), 0, "[%s] n = 0", BN);
    cr_assert_eq(errno, 0, "[%s] n = 0 set errno %d", BN, errno);
    cr_assert_eq(magpool_acquire_bulk(NULL, v, 4), -1, "[%s]", BN);
    cr_assert_eq(errno, EINVAL, "[%s] NULL pool: errno %d", BN, errno);
    errno = 0;
    cr_assert_eq(magpool_acquire_bulk(NULL, v, 0), -1, "[%s] NULL pool, n = 0", BN);
    cr_assert_eq(errno, EINVAL, "[%s]", BN);
    errno = 0;
    cr_assert_eq(magpool_acquire_bulk(p, NULL, 4), -1, "[%s] NULL array", BN);
    cr_assert_eq(errno, EINVAL, "[%s] NULL array: errno %d", BN, errno);

    errno = 0;
    magpool_release_bulk(p, NULL, 0);
    magpool_release_bulk(NULL, NULL, 0);
    cr_assert_eq(errno, 0, "[%s] release_bulk with n = 0 set errno %d", BN, errno);
    magpool_release_bulk(p, NULL, 3);
    cr_assert_eq(errno, EINVAL, "[%s] release_bulk(NULL array): errno %d", BN, errno);
    errno = 0;
    magpool_release_bulk(NULL, v, 4);
    cr_assert_eq(errno, EINVAL, "[%s] release_bulk(NULL pool): errno %d", BN, errno);

    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires + s.releases + s.failed, 0, "[%s] bad calls were counted", BN);

    /* NULL entries are skipped and not counted. */
    cr_assert_eq(magpool_acquire_bulk(p, v, 2), 0);
    void *mixed[] = { NULL, v[0], NULL, NULL, v[1], NULL };
    magpool_release_bulk(p, mixed, 6);
    void *nulls[300] = { 0 }; /* more NULLs than a magazine holds */
    magpool_release_bulk(p, nulls, 300);
    s = mp_stats(p, backend);
    cr_assert_eq(s.releases, 2, "[%s] releases %llu, want 2 (NULL entries counted?)", BN,
                 (unsigned long long)s.releases);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    magpool_destroy(p);
}

/* Blocks acquired in bulk by one thread, released singly by another, and
 * the other way round (producer/consumer). */
struct hand {
    magpool_t *pool;
    void **v;
    size_t n;
    int bulk;
};

static void *release_side(void *arg)
{
    struct hand *h = arg;
    if (h->bulk)
        magpool_release_bulk(h->pool, h->v, h->n);
    else
        for (size_t i = 0; i < h->n; i++)
            magpool_release(h->pool, h->v[i]);
    return NULL;
}

BACKEND_TEST(bulk, blocks_cross_threads_between_bulk_and_single_calls)
{
    magpool_t *p = pool_of(backend, 128, 10, 0, 0);
    void **v = calloc(1500, sizeof *v);
    cr_assert_not_null(v);
    for (int round = 0; round < 4; round++) {
        int bulk_acquire = round & 1;
        if (bulk_acquire)
            cr_assert_eq(magpool_acquire_bulk(p, v, 1500), 0, "[%s]", BN);
        else
            for (size_t i = 0; i < 1500; i++)
                cr_assert_not_null(v[i] = magpool_acquire(p), "[%s]", BN);
        assert_owned(v, 1500, 128, backend);
        struct hand h = { .pool = p, .v = v, .n = 1500, .bulk = !bulk_acquire };
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, release_side, &h), 0);
        pthread_join(t, NULL);
    }
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires, 6000, "[%s]", BN);
    cr_assert_eq(s.releases, 6000, "[%s]", BN);
    mp_assert_quiescent_invariants(&s, 128, backend);
    free(v);
    magpool_destroy(p);
}

/* ----------------------------------------------------- CHECKED and bulk */

static int seen_kind[16];
static void count_reports(const magpool_error_t *err, void *ctx)
{
    (void)ctx;
    if ((unsigned)err->kind < 16)
        seen_kind[err->kind]++;
}

BACKEND_TEST(bulk, checked_catches_double_release_inside_release_bulk)
{
    magpool_set_error_handler(count_reports, NULL);
    magpool_t *p = pool_of(backend, 64, 16, 0, MAGPOOL_CHECKED);
    void *v[4];
    cr_assert_eq(magpool_acquire_bulk(p, v, 4), 0);
    int foreign = 0;
    /* v[1] twice in one call, a foreign pointer in the middle. */
    void *rel[] = { v[0], v[1], &foreign, v[2], v[1], v[3] };
    errno = 0;
    magpool_release_bulk(p, rel, 6);
    cr_assert_eq(errno, EINVAL, "[%s] errno %d after a bad entry", BN, errno);
    cr_assert_eq(seen_kind[MAGPOOL_ERR_DOUBLE_RELEASE], 1, "[%s] double releases reported: %d",
                 BN, seen_kind[MAGPOOL_ERR_DOUBLE_RELEASE]);
    cr_assert_eq(seen_kind[MAGPOOL_ERR_FOREIGN_POINTER], 1, "[%s] foreign reported: %d", BN,
                 seen_kind[MAGPOOL_ERR_FOREIGN_POINTER]);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.releases, 4, "[%s] releases %llu, want the 4 good entries", BN,
                 (unsigned long long)s.releases);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s.errors, 2, "[%s] errors %llu", BN, (unsigned long long)s.errors);
    /* The pool was not damaged: 16 distinct blocks, in bulk. */
    void *w[16];
    cr_assert_eq(magpool_acquire_bulk(p, w, 16), 0, "[%s]", BN);
    assert_owned(w, 16, 64, backend);
    magpool_release_bulk(p, w, 16);
    cr_assert_eq(seen_kind[MAGPOOL_ERR_DOUBLE_RELEASE] + seen_kind[MAGPOOL_ERR_STATE] +
                 seen_kind[MAGPOOL_ERR_USE_AFTER_RELEASE], 1, "[%s] later reports", BN);
    magpool_destroy(p);
    magpool_set_error_handler(NULL, NULL);
}

/* The leak report of p names one site for all its n outstanding blocks,
 * and that site's innermost frame is the application's call, not a frame
 * inside the library. */
static void assert_one_site_outside_library(magpool_t *p, size_t n, magpool_backend_t backend)
{
    char buf[4096], want[64];
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(magpool_report_leaks(p, f), n, "[%s]", BN);
    rewind(f);
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = '\0';
    fclose(f);
    snprintf(want, sizeof want, "%zu block(s) acquired at ", n);
    const char *at = strstr(buf, want);
    cr_assert_not_null(at, "[%s] no single site for the %zu blocks: %s", BN, n, buf);
    at += strlen(want);
    const char *end = strstr(at, " <- ");
    len = end ? (size_t)(end - at) : strcspn(at, "\n");
    cr_assert(memmem(at, len, "libmagpool", 10) == NULL,
              "[%s] acquire site is inside the library: %.*s", BN, (int)len, at);
}

/* CHECKED records the bulk call's caller as the acquire site. */
BACKEND_TEST(bulk, checked_records_the_bulk_callers_site)
{
    magpool_t *p = pool_of(backend, 64, 16, 0, MAGPOOL_CHECKED);
    void *v[5];
    cr_assert_eq(magpool_acquire_bulk(p, v, 5), 0);
    assert_one_site_outside_library(p, 5, backend);
    magpool_release_bulk(p, v, 5);
    magpool_destroy(p);
}

/* --------------------------------------------------------------- zeroed */

static void zeroed_after_dirty_release(magpool_backend_t backend, size_t bs, unsigned flags)
{
    magpool_t *p = pool_of(backend, bs, 64, 0, flags);
    enum { N = 40 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        cr_assert_not_null(v[i] = magpool_acquire(p));
        memset(v[i], 0xab, bs);
    }
    for (int i = 0; i < N; i++)
        magpool_release(p, v[i]);
    /* LIFO caches hand the same dirty blocks out again. */
    for (int i = 0; i < N; i++) {
        unsigned char *b = magpool_acquire_zeroed(p);
        cr_assert_not_null(b, "[%s] acquire_zeroed (bs %zu)", BN, bs);
        for (size_t j = 0; j < bs; j++)
            cr_assert_eq(b[j], 0, "[%s] bs %zu flags %#x: byte %zu of a zeroed block is %#x",
                         BN, bs, flags, j, b[j]);
        v[i] = b;
    }
    magpool_release_bulk(p, v, N);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires, 2 * N, "[%s] zeroed acquires counted %llu", BN,
                 (unsigned long long)s.acquires);
    mp_assert_quiescent_invariants(&s, bs, backend);
    magpool_destroy(p);
}

BACKEND_TEST(zeroed, block_is_zero_after_dirty_release)
{
    static const size_t sizes[] = { 1, 8, 24, 64, 1000, 4096, 10000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        zeroed_after_dirty_release(backend, sizes[k], 0);
        zeroed_after_dirty_release(backend, sizes[k], MAGPOOL_CHECKED);
    }
}

BACKEND_TEST(zeroed, checked_records_the_callers_site)
{
    magpool_t *p = pool_of(backend, 64, 16, 0, MAGPOOL_CHECKED);
    void *v[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(v[i] = magpool_acquire_zeroed(p));
    assert_one_site_outside_library(p, 3, backend);
    magpool_release_bulk(p, v, 3);
    magpool_destroy(p);
}

BACKEND_TEST(zeroed, errors_are_those_of_acquire)
{
    errno = 0;
    cr_assert_null(magpool_acquire_zeroed(NULL));
    cr_assert_eq(errno, EINVAL, "[%s]", BN);
    magpool_t *p = pool_of(backend, 64, 2, 2, 0);
    void *a = magpool_acquire_zeroed(p), *b = magpool_acquire_zeroed(p);
    cr_assert(a && b, "[%s]", BN);
    errno = 0;
    cr_assert_null(magpool_acquire_zeroed(p), "[%s] cap exceeded", BN);
    cr_assert_eq(errno, ENOMEM, "[%s] errno %d", BN, errno);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.failed, 1, "[%s]", BN);
    magpool_release(p, a);
    magpool_release(p, b);
    magpool_destroy(p);
}

struct order {
    uint64_t id;
    int64_t price;
    int32_t qty, side;
    char venue[40];
};

BACKEND_TEST(zeroed, typed_helpers)
{
    magpool_config_t c = mp_cfg(backend, sizeof(struct order));
    magpool_t *p = mp_create_ok(&c);
    struct order *o = magpool_new(p, struct order);
    cr_assert_not_null(o, "[%s]", BN);
    memset(o, 0x77, sizeof *o);
    o->id = 42;
    magpool_delete(p, o);
    struct order *z = magpool_new0(p, struct order);
    cr_assert_not_null(z, "[%s]", BN);
    cr_assert(z->id == 0 && z->price == 0 && z->qty == 0 && z->side == 0 && z->venue[39] == 0,
              "[%s] magpool_new0 gave a dirty object", BN);
    /* Each argument is evaluated once. */
    int evals = 0;
    magpool_delete((evals++, p), z);
    cr_assert_eq(evals, 1, "[%s] magpool_delete evaluated pool %d times", BN, evals);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires, 2, "[%s]", BN);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    magpool_destroy(p);
}
