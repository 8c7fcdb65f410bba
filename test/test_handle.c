/* SPDX-License-Identifier: MIT */
/*
 * Per-thread handles (magpool_cache_get / _acquire / _release) in every
 * mode: plain lock-free, mutex backend, CHECKED on both backends and
 * passthrough. A handle must behave exactly as the plain calls: distinct
 * blocks, exact statistics, the cap with steal of blocks parked in another
 * thread's cache, thread exit, fork; CHECKED still detects misuse through
 * it, including a handle used on a thread that did not get it.
 */
#include <sys/wait.h>

#include "helpers.h"

enum mode { M_PLAIN, M_CHECKED, M_PASSTHROUGH };

struct hcase {
    magpool_backend_t backend;
    enum mode mode;
};

static struct hcase cases_[] = {
    { MAGPOOL_LOCKFREE, M_PLAIN },   { MAGPOOL_MUTEX, M_PLAIN },
    { MAGPOOL_LOCKFREE, M_CHECKED }, { MAGPOOL_MUTEX, M_CHECKED },
    { MAGPOOL_LOCKFREE, M_PASSTHROUGH },
};

static const char *case_name(const struct hcase *c)
{
    static const char *mode[] = { "plain", "CHECKED", "passthrough" };
    static char buf[4][32];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 32, "%s/%s", mp_backend_name(c->backend), mode[c->mode]);
    return b;
}
#define CN case_name(hc)

#define HANDLE_TEST(Suite, Name, ...)                                          \
    static void Suite##_##Name##_body(const struct hcase *hc,                  \
                                      magpool_backend_t backend);              \
    ParameterizedTestParameters(Suite, Name)                                   \
    {                                                                          \
        return cr_make_param_array(struct hcase, cases_,                       \
                                   sizeof cases_ / sizeof cases_[0]);          \
    }                                                                          \
    ParameterizedTest(struct hcase *mp_param_, Suite, Name, ##__VA_ARGS__)     \
    {                                                                          \
        Suite##_##Name##_body(mp_param_, mp_param_->backend);                  \
    }                                                                          \
    static void Suite##_##Name##_body(const struct hcase *hc,                  \
                                      __attribute__((unused)) magpool_backend_t backend)

static magpool_t *pool_for(const struct hcase *hc, size_t bs, size_t initial, size_t max)
{
    if (hc->mode == M_PASSTHROUGH)
        setenv("MAGPOOL_PASSTHROUGH", "1", 1);
    magpool_config_t c = mp_cfg(hc->backend, bs);
    c.initial_blocks = initial;
    c.max_blocks = max;
    c.magazine_size = 16;
    c.flags = hc->mode == M_CHECKED ? MAGPOOL_CHECKED : 0;
    magpool_t *p = mp_create_ok(&c);
    unsetenv("MAGPOOL_PASSTHROUGH");
    return p;
}

static magpool_stats_t stats_of(magpool_t *p)
{
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    return s;
}

/* ------------------------------------------------------------ basics */

HANDLE_TEST(handle, same_thread_gets_the_same_handle_and_distinct_blocks)
{
    magpool_t *p = pool_for(hc, 64, 8, 0);
    magpool_cache_t *c = magpool_cache_get(p);
    cr_assert_not_null(c, "[%s] cache_get: errno %d", CN, errno);
    cr_assert_eq(magpool_cache_get(p), c, "[%s] a second cache_get gave another handle", CN);
    enum { N = 300 }; /* well past two magazines of 16 and the initial 8 */
    void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = magpool_cache_acquire(c);
        cr_assert_not_null(v[i], "[%s] acquire %d: errno %d", CN, i, errno);
        mp_fill(v[i], 64, (uint32_t)i);
    }
    for (int i = 0; i < N; i++)
        cr_assert(mp_check(v[i], 64, (uint32_t)i), "[%s] block %d handed out twice", CN, i);
    mp_assert_disjoint(v, N, 64, backend);
    magpool_stats_t s = stats_of(p);
    cr_assert_eq(s.acquires, N, "[%s] acquires %llu, want %d", CN,
                 (unsigned long long)s.acquires, N);
    cr_assert_eq(s.blocks_outstanding, N, "[%s] outstanding %zu", CN, s.blocks_outstanding);
    /* Mixed with the plain calls: half back through each. */
    for (int i = 0; i < N; i++) {
        if (i % 2)
            magpool_cache_release(c, v[i]);
        else
            magpool_release(p, v[i]);
    }
    s = stats_of(p);
    cr_assert_eq(s.releases, N, "[%s] releases %llu, want %d", CN,
                 (unsigned long long)s.releases, N);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s] outstanding %zu", CN, s.blocks_outstanding);
    magpool_destroy(p);
}

HANDLE_TEST(handle, bad_input_gets_the_contracts_answer)
{
    magpool_t *p = pool_for(hc, 64, 8, 0);
    errno = 0;
    cr_assert_null(magpool_cache_get(NULL));
    cr_assert_eq(errno, EINVAL, "[%s] cache_get(NULL): errno %d", CN, errno);
    errno = 0;
    cr_assert_null(magpool_cache_acquire(NULL));
    cr_assert_eq(errno, EINVAL, "[%s] cache_acquire(NULL): errno %d", CN, errno);
    void *b = magpool_acquire(p);
    cr_assert_not_null(b);
    errno = 0;
    magpool_cache_release(NULL, b); /* nothing released */
    cr_assert_eq(errno, EINVAL, "[%s] cache_release(NULL, b): errno %d", CN, errno);
    cr_assert_eq(stats_of(p).blocks_outstanding, 1, "[%s] release(NULL handle) released", CN);
    errno = 4242;
    magpool_cache_release(magpool_cache_get(p), NULL);
    cr_assert_eq(errno, 4242, "[%s] cache_release(c, NULL) touched errno", CN);
    magpool_cache_release(magpool_cache_get(p), b);
    cr_assert_eq(stats_of(p).blocks_outstanding, 0, "[%s]", CN);
    magpool_destroy(p);
}

/* Exhaustion through a handle: NULL + ENOMEM, counted once, pool usable. */
HANDLE_TEST(handle, at_max_blocks_acquire_fails_with_enomem_and_nothing_is_lost)
{
    enum { MAX = 64 };
    magpool_t *p = pool_for(hc, 64, 16, MAX);
    magpool_cache_t *c = magpool_cache_get(p);
    cr_assert_not_null(c);
    void *v[MAX];
    for (int i = 0; i < MAX; i++)
        cr_assert_not_null(v[i] = magpool_cache_acquire(c), "[%s] acquire %d", CN, i);
    errno = 0;
    cr_assert_null(magpool_cache_acquire(c), "[%s] acquire past max_blocks succeeded", CN);
    cr_assert_eq(errno, ENOMEM, "[%s] errno %d, want ENOMEM", CN, errno);
    cr_assert_eq(stats_of(p).failed, 1, "[%s] failed count", CN);
    for (int i = 0; i < MAX; i++)
        magpool_cache_release(c, v[i]);
    cr_assert_not_null(v[0] = magpool_cache_acquire(c), "[%s] pool unusable after ENOMEM", CN);
    magpool_cache_release(c, v[0]);
    magpool_destroy(p);
}

/* ------------------------------------------------- threads: cap, exit */

struct parker {
    magpool_t *p;
    int n;
    pthread_barrier_t *parked, *done;
    bool ok;
};

/* Acquire n blocks through this thread's handle and release them through
 * it: they stay parked in this thread's cache while it waits. */
static void *park_blocks(void *arg)
{
    struct parker *a = arg;
    magpool_cache_t *c = magpool_cache_get(a->p);
    void **v = calloc((size_t)a->n, sizeof *v);
    a->ok = c != NULL && v != NULL;
    for (int i = 0; a->ok && i < a->n; i++)
        a->ok = (v[i] = magpool_cache_acquire(c)) != NULL;
    for (int i = 0; a->ok && i < a->n; i++)
        magpool_cache_release(c, v[i]);
    free(v);
    pthread_barrier_wait(a->parked);
    if (a->done)
        pthread_barrier_wait(a->done); /* keep the cache alive until told */
    return NULL;
}

/* The exact cap: every block idle in another (live) thread's cache can
 * still be had through a handle. */
HANDLE_TEST(handle_threads, at_the_cap_blocks_parked_in_another_threads_cache_are_taken)
{
    enum { MAX = 64 };
    magpool_t *p = pool_for(hc, 64, 16, MAX);
    pthread_barrier_t parked, done;
    pthread_barrier_init(&parked, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    struct parker a = { .p = p, .n = 24, .parked = &parked, .done = &done };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, park_blocks, &a), 0);
    pthread_barrier_wait(&parked);
    cr_assert(a.ok, "[%s] parker failed", CN);
    magpool_cache_t *c = magpool_cache_get(p);
    void *v[MAX];
    for (int i = 0; i < MAX; i++)
        cr_assert_not_null(v[i] = magpool_cache_acquire(c), "[%s] acquire %d of %d at the cap: "
                           "errno %d", CN, i, MAX, errno);
    mp_assert_disjoint(v, MAX, 64, backend);
    magpool_stats_t s = stats_of(p);
    cr_assert_eq(s.blocks_outstanding, MAX, "[%s] outstanding %zu", CN, s.blocks_outstanding);
    if (hc->backend == MAGPOOL_LOCKFREE && hc->mode != M_PASSTHROUGH)
        cr_assert_geq(s.steals, 1, "[%s] no steal counted", CN);
    for (int i = 0; i < MAX; i++)
        magpool_cache_release(c, v[i]);
    pthread_barrier_wait(&done);
    pthread_join(t, NULL);
    s = stats_of(p);
    cr_assert_eq(s.acquires, 24 + MAX, "[%s] acquires %llu", CN, (unsigned long long)s.acquires);
    cr_assert_eq(s.releases, 24 + MAX, "[%s] releases %llu", CN, (unsigned long long)s.releases);
    pthread_barrier_destroy(&parked);
    pthread_barrier_destroy(&done);
    magpool_destroy(p);
}

/* A thread that used a handle and exits gives its blocks and its counts
 * back: nothing lost, statistics exact, its cache detached. */
HANDLE_TEST(handle_threads, thread_exit_returns_the_handles_blocks_and_counts)
{
    magpool_t *p = pool_for(hc, 64, 16, 0);
    pthread_barrier_t parked;
    pthread_barrier_init(&parked, NULL, 2);
    struct parker a = { .p = p, .n = 40, .parked = &parked };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, park_blocks, &a), 0);
    pthread_barrier_wait(&parked);
    pthread_join(t, NULL);
    cr_assert(a.ok, "[%s] thread failed", CN);
    magpool_stats_t s = stats_of(p);
    cr_assert_eq(s.acquires, 40, "[%s] acquires %llu", CN, (unsigned long long)s.acquires);
    cr_assert_eq(s.releases, 40, "[%s] releases %llu", CN, (unsigned long long)s.releases);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", CN);
    if (hc->backend == MAGPOOL_LOCKFREE && hc->mode != M_PASSTHROUGH) {
        cr_assert_eq(s.threads, 0, "[%s] exited thread's cache still attached", CN);
        cr_assert_geq(s.depot_puts, 1, "[%s] exited thread's rounds not in the depot", CN);
    }
    pthread_barrier_destroy(&parked);
    magpool_destroy(p);
}

/* One block through this thread's handle of p, written over its size. */
static void one_block_through_handle(const struct hcase *hc, magpool_t *p)
{
    magpool_cache_t *c = magpool_cache_get(p);
    cr_assert_not_null(c, "[%s] cache_get: errno %d", CN, errno);
    void *x = magpool_cache_acquire(c);
    cr_assert_not_null(x, "[%s] acquire: errno %d", CN, errno);
    memset(x, 0xab, magpool_block_size(p));
    magpool_cache_release(c, x);
}

/* A handle outlives a destroyed pool's slot: the next pool in that slot
 * gives this thread a new, working handle (uids are never reused). Using
 * the old handle after destroy is undefined (magpool.h) and not tried. */
HANDLE_TEST(handle, a_pool_in_a_reused_slot_gets_a_working_handle)
{
    magpool_t *p = pool_for(hc, 64, 8, 0);
    one_block_through_handle(hc, p);
    magpool_destroy(p);
    magpool_t *q = pool_for(hc, 128, 8, 0);
    one_block_through_handle(hc, q);
    magpool_stats_t s = stats_of(q);
    cr_assert_eq(s.acquires, 1, "[%s] new pool counts the old one's calls", CN);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", CN);
    magpool_destroy(q);
}

/* ----------------------------------------------------------------- fork */

HANDLE_TEST(handle_fork, the_forking_thread_keeps_using_its_handle_in_the_child)
{
    magpool_t *p = pool_for(hc, 64, 16, 64);
    magpool_cache_t *c = magpool_cache_get(p);
    void *held = magpool_cache_acquire(c);
    cr_assert_not_null(held);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Every block but the held one can be had through the handle. */
        void *v[63];
        int code = 0;
        for (int i = 0; i < 63 && !code; i++)
            if ((v[i] = magpool_cache_acquire(c)) == NULL)
                code = 10;
        if (!code && magpool_cache_acquire(c) != NULL)
            code = 11; /* past the cap */
        for (int i = 0; i < 63 && !code; i++)
            magpool_cache_release(c, v[i]);
        magpool_cache_release(c, held);
        magpool_stats_t s;
        if (!code && (magpool_get_stats(p, &s) != 0 || s.blocks_outstanding != 0))
            code = 12;
        _exit(code);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "[%s] child failed: status %d", CN, st);
    magpool_cache_release(c, held);
    cr_assert_eq(stats_of(p).blocks_outstanding, 0, "[%s]", CN);
    magpool_destroy(p);
}

/* ------------------------------------------------------------- CHECKED */

static magpool_error_kind_t last_kind;
static const void *last_site; /* innermost frame of the report's site */
static int reports;
static void on_error(const magpool_error_t *e, void *ctx)
{
    (void)ctx;
    last_kind = e->kind;
    last_site = e->site && e->site_depth ? e->site[0] : NULL;
    reports++;
}

static magpool_t *checked(magpool_backend_t backend)
{
    magpool_set_error_handler(on_error, NULL);
    reports = 0;
    last_kind = 0;
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    c.initial_blocks = 16;
    return mp_create_ok(&c);
}

BACKEND_TEST(handle_checked, double_and_wrong_pool_releases_are_detected_through_a_handle)
{
    magpool_t *p = checked(backend), *q = checked(backend);
    magpool_cache_t *c = magpool_cache_get(p);
    void *b = magpool_cache_acquire(c), *other = magpool_acquire(q);
    cr_assert(b && other);
    magpool_cache_release(c, b);
    errno = 0;
    magpool_cache_release(c, b);
    cr_assert_eq(reports, 1, "[%s] double release not reported", BN);
    cr_assert_eq(last_kind, MAGPOOL_ERR_DOUBLE_RELEASE, "[%s] kind %d", BN, last_kind);
    cr_assert_eq(errno, EINVAL, "[%s] errno %d", BN, errno);
    magpool_cache_release(c, other);
    cr_assert_eq(reports, 2, "[%s] block of another pool not reported", BN);
    cr_assert_eq(last_kind, MAGPOOL_ERR_WRONG_POOL, "[%s] kind %d", BN, last_kind);
    magpool_stats_t s = stats_of(p);
    cr_assert_eq(s.releases, 1, "[%s] a rejected release was counted", BN);
    magpool_release(q, other);
    magpool_destroy(q);
    magpool_destroy(p);
    magpool_set_error_handler(NULL, NULL);
}

/* A distinct, non-inlined acquiring site (as in test_diag). */
static __attribute__((noinline)) void *acquire_here(magpool_cache_t *c)
{
    void *b = magpool_cache_acquire(c);
    __asm__ volatile("" ::: "memory");
    return b;
}

/* CHECKED records the application's call of magpool_cache_acquire as the
 * acquire site (the route's slow path is reached by tail calls), not a
 * frame inside the library. */
BACKEND_TEST(handle_checked, the_acquire_site_is_the_callers)
{
    magpool_t *p = checked(backend);
    magpool_cache_t *c = magpool_cache_get(p);
    void *b = acquire_here(c);
    cr_assert_not_null(b);
    magpool_cache_release(c, b);
    magpool_cache_release(c, b); /* double: reported with the acquire site */
    cr_assert_eq(reports, 1, "[%s] %d reports", BN, reports);
    uintptr_t lo = (uintptr_t)&acquire_here, pc = (uintptr_t)last_site;
    cr_assert(pc > lo && pc < lo + 256, "[%s] site %p not in acquire_here (%p)", BN,
              last_site, (void *)lo);
    magpool_destroy(p);
    magpool_set_error_handler(NULL, NULL);
}

struct borrow {
    magpool_cache_t *c;
    void *block;     /* released through the borrowed handle */
    void *got;
    int acq_errno, rel_errno;
};

static void *use_borrowed_handle(void *arg)
{
    struct borrow *b = arg;
    errno = 0;
    b->got = magpool_cache_acquire(b->c);
    b->acq_errno = errno;
    errno = 0;
    magpool_cache_release(b->c, b->block);
    b->rel_errno = errno;
    return NULL;
}

/* The lock-free backend's CHECKED mode refuses a handle on a thread that
 * did not get it; the mutex backend's one handle is every thread's. */
BACKEND_TEST(handle_checked, a_handle_used_on_another_thread_is_refused_and_reported)
{
    magpool_t *p = checked(backend);
    magpool_cache_t *c = magpool_cache_get(p);
    struct borrow b = { .c = c, .block = magpool_cache_acquire(c) };
    cr_assert_not_null(b.block);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, use_borrowed_handle, &b), 0);
    pthread_join(t, NULL);
    magpool_stats_t s = stats_of(p);
    if (backend == MAGPOOL_LOCKFREE) {
        cr_assert_null(b.got, "[%s] acquire on a borrowed handle succeeded", BN);
        cr_assert_eq(b.acq_errno, EINVAL, "[%s] acquire errno %d", BN, b.acq_errno);
        cr_assert_eq(b.rel_errno, EINVAL, "[%s] release errno %d", BN, b.rel_errno);
        cr_assert_eq(reports, 2, "[%s] %d reports, want 2", BN, reports);
        cr_assert_eq(last_kind, MAGPOOL_ERR_WRONG_THREAD, "[%s] kind %d", BN, last_kind);
        cr_assert_eq(s.blocks_outstanding, 1, "[%s] refused release released", BN);
        magpool_cache_release(c, b.block); /* the owner still can */
    } else {
        cr_assert_not_null(b.got, "[%s] mutex handle refused on another thread", BN);
        cr_assert_eq(reports, 0, "[%s] %d reports", BN, reports);
        cr_assert_eq(s.blocks_outstanding, 1, "[%s] outstanding %zu", BN, s.blocks_outstanding);
        magpool_cache_release(c, b.got);
    }
    cr_assert_eq(stats_of(p).blocks_outstanding, 0, "[%s]", BN);
    magpool_destroy(p);
    magpool_set_error_handler(NULL, NULL);
}
