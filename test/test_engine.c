/* SPDX-License-Identifier: MIT */
/*
 * Engine safety: what an engine that links magpool runs into, one test per
 * defect found by the review of 03e07b2 (issue "Safe inside a real engine").
 * White-box: the test hooks are hidden symbols, reached through the static
 * archive. The fork storm and the host-uses-liburcu test are stress programs
 * (stress/), since they must also run under TSan.
 */
#include <linux/membarrier.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* --------------------------------------------------- signal re-entry (6) */

static magpool_t *sig_pool;
static void *sig_block;           /* released by the handler when set */
static void *sig_got;             /* what the handler's acquire returned */
static int sig_errno;
static volatile sig_atomic_t sig_armed;
static atomic_int reports[MAGPOOL_ERR_REENTRY + 1];

static void count_reports(const magpool_error_t *e, void *ctx)
{
    (void)ctx;
    if (e->kind >= 0 && e->kind <= MAGPOOL_ERR_REENTRY)
        atomic_fetch_add(&reports[e->kind], 1);
}

static void on_signal(int sig)
{
    (void)sig;
    errno = 0;
    if (sig_block) {
        magpool_release(sig_pool, sig_block);
    } else {
        sig_got = magpool_acquire(sig_pool);
        sig_errno = errno;
    }
}

/* Runs inside every diagnostic call: the signal arrives exactly there. */
static void raise_inside(void)
{
    if (sig_armed) {
        sig_armed = 0;
        raise(SIGUSR1);
    }
}

BACKEND_TEST(engine, signal_handler_reentering_the_pool_is_refused_and_reported)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    sig_pool = mp_create_ok(&c);
    magpool_set_error_handler(count_reports, NULL);
    signal(SIGUSR1, on_signal);
    magpool_test_diag_inside_hook = raise_inside;

    /* The handler's acquire interrupts the thread's own acquire. */
    sig_block = NULL;
    sig_got = (void *)1;
    sig_armed = 1;
    void *a = magpool_acquire(sig_pool);
    cr_assert_not_null(a, "[%s] the interrupted acquire itself must succeed", BN);
    cr_assert_null(sig_got, "[%s] the nested acquire was served", BN);
    cr_assert_eq(sig_errno, EDEADLK, "[%s] errno %d", BN, sig_errno);
    cr_assert_eq(atomic_load(&reports[MAGPOOL_ERR_REENTRY]), 1, "[%s]", BN);

    /* The handler's release interrupts the thread's own release: refused,
     * the block stays outstanding (not lost, not handed out twice). */
    void *b = magpool_acquire(sig_pool);
    cr_assert_not_null(b);
    sig_block = b;
    sig_armed = 1;
    magpool_release(sig_pool, a);
    cr_assert_eq(atomic_load(&reports[MAGPOOL_ERR_REENTRY]), 2, "[%s]", BN);
    magpool_test_diag_inside_hook = NULL;
    magpool_stats_t s = mp_stats(sig_pool, backend);
    cr_assert_eq(s.blocks_outstanding, 1, "[%s] b must still be outstanding", BN);
    void *again = magpool_acquire(sig_pool);
    cr_assert_neq(again, b, "[%s] a refused release must not make the block idle", BN);
    magpool_release(sig_pool, again);
    magpool_release(sig_pool, b);
    s = mp_stats(sig_pool, backend);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(atomic_load(&reports[MAGPOOL_ERR_DOUBLE_RELEASE]), 0, "[%s]", BN);
    magpool_set_error_handler(NULL, NULL);
    magpool_destroy(sig_pool);
}

/* ------------------------------------------- the spill set touches nothing (4) */

#define OBJ_MAGIC 0x0b1ec7c0ffee1234ull

struct obj {
    uint64_t magic[8]; /* written once by init, never by the pool */
};

static int obj_init(void *o, void *ctx)
{
    (void)ctx;
    struct obj *x = o;
    for (int i = 0; i < 8; i++)
        x->magic[i] = OBJ_MAGIC ^ (uint64_t)i;
    return 0;
}

Test(engine, idle_constructed_objects_are_not_written_when_magazines_run_out)
{
    enum { N = 4096 };
    magpool_objpool_config_t c = { .obj_size = sizeof(struct obj), .init = obj_init };
    magpool_objpool_t *op = magpool_objpool_create(&c);
    cr_assert_not_null(op);
    struct obj **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        cr_assert_not_null(v[i] = magpool_objpool_acquire(op));
    magpool_test_mag_alloc_fails = true; /* every release past the cache spills */
    for (int i = 0; i < N; i++)
        magpool_objpool_release(op, v[i]);
    int damaged = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_not_null(v[i] = magpool_objpool_acquire(op), "acquire %d", i);
        for (int k = 0; k < 8; k++)
            damaged += v[i]->magic[k] != (OBJ_MAGIC ^ (uint64_t)k);
    }
    magpool_test_mag_alloc_fails = false;
    cr_assert_eq(damaged, 0, "%d constructed words damaged by the pool", damaged);
    mp_assert_disjoint((void **)v, N, sizeof(struct obj), MAGPOOL_LOCKFREE);
    for (int i = 0; i < N; i++)
        magpool_objpool_release(op, v[i]);
    free(v);
    magpool_objpool_destroy(op);
}

static char last_bad[128];

static void note_bad(void *ctx, const char *what, void *buf)
{
    (void)ctx, (void)buf;
    snprintf(last_bad, sizeof last_bad, "%s", what);
}

Test(engine, buffer_headers_survive_magazines_running_out)
{
    enum { N = 2000 };
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    void **v = malloc(N * sizeof *v);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++)
            cr_assert_not_null(v[i] = magpool_bufmgr_get(bm, 8, MAGPOOL_F64));
        magpool_test_mag_alloc_fails = true;
        for (int i = 0; i < N; i++)
            cr_assert_eq(magpool_bufmgr_release_checked(bm, v[i]), 0,
                         "round %d: buffer %d refused (header damaged?)", round, i);
    }
    /* The idle (spilled) buffers' headers are intact: a second release is
     * recognised as what it is, a double release of one of ours. */
    magpool_bufmgr_set_error_handler(bm, note_bad, NULL);
    for (int i = 0; i < N; i += 97) {
        last_bad[0] = '\0';
        magpool_bufmgr_release(bm, v[i]);
        cr_assert_str_eq(last_bad, "double release", "buffer %d: %s", i, last_bad);
    }
    magpool_test_mag_alloc_fails = false;
    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    cr_assert_eq(s.bad_releases, (N + 96) / 97);
    cr_assert_eq(s.outstanding, 0);
    free(v);
    magpool_bufmgr_destroy(bm);
}

/* ------------------------------------------------ membarrier failure (7) */

static atomic_int fence_calls;

/* Registration works, the fence itself is refused (what a seccomp sandbox
 * that allows the query but not the call looks like). */
static long refuse_fence(int cmd)
{
    if (cmd == MEMBARRIER_CMD_QUERY || cmd == MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
        return syscall(__NR_membarrier, cmd, 0, 0);
    atomic_fetch_add(&fence_calls, 1);
    errno = EPERM;
    return -1;
}

struct parker {
    magpool_t *p;
    size_t n;
    void **got;
    mp_gate_t parked, go;
};

static void *park_then_reacquire(void *arg)
{
    struct parker *k = arg;
    for (size_t i = 0; i < k->n; i++)
        k->got[i] = magpool_acquire(k->p);
    for (size_t i = 0; i < k->n; i++)
        magpool_release(k->p, k->got[i]);
    mp_gate_open(&k->parked);
    mp_gate_wait(&k->go);
    /* Our parked blocks must still be ours: none was stolen unsafely. */
    for (size_t i = 0; i < k->n; i++)
        k->got[i] = magpool_acquire(k->p);
    return NULL;
}

Test(engine, a_failing_membarrier_disables_stealing_instead_of_stealing_unsafely)
{
    magpool_test_membarrier = refuse_fence;
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, 64);
    c.initial_blocks = 256;
    c.max_blocks = 256;
    c.magazine_size = 32;
    struct parker k = { .p = mp_create_ok(&c), .n = 40 };
    k.got = calloc(k.n, sizeof *k.got);
    mp_gate_init(&k.parked);
    mp_gate_init(&k.go);
    pthread_t t;
    pthread_create(&t, NULL, park_then_reacquire, &k);
    mp_gate_wait(&k.parked); /* 40 blocks parked in the other thread's cache */
    void *mine[256];
    size_t n = 0;
    while (n < 256 && (mine[n] = magpool_acquire(k.p)) != NULL)
        n++;
    int e = errno;
    /* The other thread took two magazines of 32 from the depot for its 40
     * acquires: 64 blocks sit in its cache, which only a steal could reach. */
    cr_assert_eq(n, 256 - 64, "got %zu blocks: parked ones were stolen without a fence", n);
    cr_assert_eq(e, ENOMEM);
    cr_assert_geq(atomic_load(&fence_calls), 1, "the steal did try the fence");
    magpool_stats_t s = mp_stats(k.p, MAGPOOL_LOCKFREE);
    cr_assert_eq(s.steals, 0);
    cr_assert_eq(s.failed, 1);
    mp_gate_open(&k.go);
    pthread_join(t, NULL);
    for (size_t i = 0; i < k.n; i++)
        cr_assert_not_null(k.got[i], "the owner lost its parked block %zu", i);
    void *all[256];
    memcpy(all, mine, n * sizeof *all);
    memcpy(all + n, k.got, k.n * sizeof *all);
    mp_assert_disjoint(all, n + k.n, 64, MAGPOOL_LOCKFREE);
    magpool_test_membarrier = NULL;
    for (size_t i = 0; i < n + k.n; i++)
        magpool_release(k.p, all[i]);
    free(k.got);
    magpool_destroy(k.p);
}

/* ------------------------------- a thread that exits unregistered (9) */

static void *use_and_exit(void *arg)
{
#if defined(__SANITIZE_ADDRESS__)
    /* Without its destructor the thread's directory is leaked by design:
     * that is the failure mode under test, not a finding. */
    __lsan_disable();
#endif
    magpool_t *p = arg;
    void *b[100];
    for (int i = 0; i < 100; i++)
        b[i] = magpool_acquire(p);
    for (int i = 0; i < 100; i++)
        magpool_release(p, b[i]);
    return NULL;
}

Test(engine, threads_that_exit_without_the_destructor_hold_up_nothing, .timeout = 60)
{
    magpool_test_skip_exit_flush = true; /* as if the key or its rounds had failed */
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, 64);
    c.magazine_size = 16;
    magpool_t *p = mp_create_ok(&c);
    for (int r = 0; r < 4; r++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
            pthread_create(&t[i], NULL, use_and_exit, p);
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        /* Their caches stay attached, their readers stay registered but
         * inactive: clear takes the blocks back and its grace period ends. */
        magpool_clear(p);
        magpool_stats_t s = mp_stats(p, MAGPOOL_LOCKFREE);
        cr_assert_eq(s.threads, 8u * (r + 1), "threads %llu", (unsigned long long)s.threads);
        cr_assert_eq(s.blocks_total, 0, "round %d: %zu blocks not reclaimed", r, s.blocks_total);
        cr_assert_eq(s.magazines, 2u * 8 * (r + 1), "round %d: %zu magazines", r, s.magazines);
    }
    magpool_test_skip_exit_flush = false;
    magpool_destroy(p);
}

/* ------------------------------------------- statistics that mean it (8) */

Test(engine, steals_count_at_cap_steals_only)
{
    for (int capped = 0; capped < 2; capped++) {
        magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, 64);
        c.initial_blocks = 64;
        c.max_blocks = capped ? 64 : 0;
        c.magazine_size = 8;
        struct parker k = { .p = mp_create_ok(&c), .n = 10 };
        k.got = calloc(k.n, sizeof *k.got);
        mp_gate_init(&k.parked);
        mp_gate_init(&k.go);
        pthread_t t;
        pthread_create(&t, NULL, park_then_reacquire, &k);
        mp_gate_wait(&k.parked);
        if (capped) { /* take every block: the parked ones by one steal */
            void *v[64];
            for (int i = 0; i < 64; i++)
                cr_assert_not_null(v[i] = magpool_acquire(k.p), "block %d", i);
            cr_assert_eq(mp_stats(k.p, MAGPOOL_LOCKFREE).steals, 1);
            for (int i = 0; i < 64; i++)
                magpool_release(k.p, v[i]);
        } else { /* clear takes the parked blocks back too: not a steal */
            magpool_clear(k.p);
            magpool_stats_t s = mp_stats(k.p, MAGPOOL_LOCKFREE);
            cr_assert_eq(s.blocks_total, 0, "clear left %zu blocks", s.blocks_total);
            cr_assert_eq(s.steals, 0, "clear counted as a steal");
        }
        mp_gate_open(&k.go);
        pthread_join(t, NULL);
        for (size_t i = 0; i < k.n; i++)
            magpool_release(k.p, k.got[i]);
        free(k.got);
        magpool_destroy(k.p);
    }
}

Test(engine, depot_gets_and_puts_count_magazines_exactly)
{
    magpool_config_t c = mp_cfg(MAGPOOL_LOCKFREE, 64);
    c.initial_blocks = 64; /* one page: exactly 64 blocks of 64 B */
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    cr_assert_eq(mp_stats(p, MAGPOOL_LOCKFREE).blocks_total, 64);
    void *v[64];
    for (int i = 0; i < 64; i++)
        v[i] = magpool_acquire(p);
    magpool_stats_t s = mp_stats(p, MAGPOOL_LOCKFREE);
    cr_assert_eq(s.depot_gets, 16, "64 blocks in magazines of 4: %llu gets",
                 (unsigned long long)s.depot_gets);
    cr_assert_eq(s.depot_puts, 0);
    for (int i = 0; i < 64; i++)
        magpool_release(p, v[i]);
    /* Both magazines fill (8 blocks), then each 4 releases push one. */
    cr_assert_eq(mp_stats(p, MAGPOOL_LOCKFREE).depot_puts, 14);
    magpool_thread_flush(p); /* the two full ones in the cache */
    cr_assert_eq(mp_stats(p, MAGPOOL_LOCKFREE).depot_puts, 16);
    for (int i = 0; i < 64; i++)
        v[i] = magpool_acquire(p);
    s = mp_stats(p, MAGPOOL_LOCKFREE);
    cr_assert_eq(s.depot_gets, 32);
    cr_assert_eq(s.misses, 0);
    cr_assert_eq(s.hits, 128);
    for (int i = 0; i < 64; i++)
        magpool_release(p, v[i]);
    magpool_destroy(p);
}

BACKEND_TEST(engine, misses_are_the_acquires_that_grew_the_pool)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 64;  /* one page */
    c.grow_factor = 2.0;    /* then 64 more, then 128 */
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    void *v[256];
    uint64_t expect_miss[] = { 0, 1, 2 };
    size_t upto[] = { 64, 128, 256 };
    size_t n = 0;
    for (int step = 0; step < 3; step++) {
        while (n < upto[step])
            v[n++] = magpool_acquire(p);
        magpool_stats_t s = mp_stats(p, backend);
        cr_assert_eq(s.misses, expect_miss[step], "[%s] after %zu acquires: %llu misses", BN,
                     n, (unsigned long long)s.misses);
        cr_assert_eq(s.grows, expect_miss[step] + 1, "[%s]", BN);
        cr_assert(s.hit_rate == (double)(n - expect_miss[step]) / (double)n,
                  "[%s] hit rate %g", BN, s.hit_rate);
    }
    for (size_t i = 0; i < n; i++)
        magpool_release(p, v[i]);
    magpool_destroy(p);
}

BACKEND_TEST(engine, bytes_returned_counts_each_resident_page_once)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    magpool_config_t c = mp_cfg(backend, ps); /* one block per page */
    c.align = ps;
    c.initial_blocks = 16;
    magpool_t *p = mp_create_ok(&c);
    void *v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = magpool_acquire(p);
        memset(v[i], 1, ps); /* resident */
    }
    for (int i = 1; i < 16; i++)
        magpool_release(p, v[i]);
    magpool_clear(p); /* lock-free: madvises the 15 idle pages; mutex: nothing */
    magpool_release(p, v[0]);
    magpool_clear(p); /* unmaps the slab: only v[0]'s page is still resident */
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.bytes_reserved, 0, "[%s]", BN);
    cr_assert_eq(s.bytes_returned, 16 * ps, "[%s] %llu bytes returned for 16 resident pages",
                 BN, (unsigned long long)s.bytes_returned);
    magpool_destroy(p);
}

/* ------------------------- CHECKED: hooks may use other pools (review) */

static magpool_t *other;

static int init_takes_from_other(void *obj, void *ctx)
{
    (void)ctx;
    void *b = magpool_acquire(other);
    if (b == NULL)
        return -1;
    *(void **)obj = b;
    return 0;
}

static void fini_gives_back(void *obj, void *ctx)
{
    (void)ctx;
    magpool_release(other, *(void **)obj);
}

Test(engine, checked_mode_lets_objpool_hooks_use_other_pools)
{
    setenv("MAGPOOL_CHECKED", "1", 1);
    magpool_set_error_handler(count_reports, NULL);
    other = magpool_create(&(magpool_config_t){ .block_size = 64, .initial_blocks = 0 });
    cr_assert_not_null(other);
    cr_assert(magpool_diagnostics(other) & MAGPOOL_DIAG_CHECKED, "CHECKED from the environment");
    magpool_objpool_config_t oc = { .obj_size = 64, .init = init_takes_from_other,
                                    .fini = fini_gives_back };
    magpool_objpool_t *op = magpool_objpool_create(&oc);
    cr_assert_not_null(op);
    void *o = magpool_objpool_acquire(op);
    cr_assert_not_null(o, "acquire refused: errno %d", errno);
    magpool_objpool_release(op, o);
    magpool_objpool_destroy(op); /* fini releases into `other` */
    cr_assert_eq(atomic_load(&reports[MAGPOOL_ERR_REENTRY]), 0, "hooks taken for re-entry");
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(other, &s), 0);
    cr_assert_eq(s.blocks_outstanding, 0);
    magpool_destroy(other);
    magpool_set_error_handler(NULL, NULL);
    unsetenv("MAGPOOL_CHECKED");
}
