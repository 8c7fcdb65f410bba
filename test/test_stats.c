/* SPDX-License-Identifier: MIT */
/* magpool_get_stats and magpool_report_leaks. */
#include "helpers.h"

BACKEND_TEST(stats, fresh_pool_counters_are_zero)
{
    magpool_config_t c = mp_cfg(backend, 100);
    c.initial_blocks = 20;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires, 0, "[%s]", BN);
    cr_assert_eq(s.releases, 0, "[%s]", BN);
    cr_assert_eq(s.hits, 0, "[%s]", BN);
    cr_assert_eq(s.misses, 0, "[%s]", BN);
    cr_assert_eq(s.failed, 0, "[%s]", BN);
    cr_assert_eq(s.trims, 0, "[%s]", BN);
    cr_assert_eq(s.steals, 0, "[%s]", BN);
    cr_assert_eq(s.threads, 0, "[%s] threads %llu before any use", BN,
                 (unsigned long long)s.threads);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    cr_assert(s.hit_rate == 0.0, "[%s] hit_rate %g with no acquires", BN, s.hit_rate);
    cr_assert_geq(s.blocks_total, 20, "[%s] blocks_total %zu", BN, s.blocks_total);
    mp_assert_quiescent_invariants(&s, 100, backend);
    magpool_destroy(p);
}

BACKEND_TEST(stats, counters_match_a_single_thread_workload_exactly)
{
    magpool_config_t c = mp_cfg(backend, 40);
    c.initial_blocks = 5;
    c.magazine_size = 4;
    magpool_t *p = mp_create_ok(&c);
    void *held[300] = {0};
    uint64_t acq = 0, rel = 0;
    uint32_t seed = 12345;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 300;
        if (held[k]) {
            magpool_release(p, held[k]);
            held[k] = NULL;
            rel++;
        } else {
            cr_assert_not_null(held[k] = magpool_acquire(p), "[%s]", BN);
            acq++;
        }
        if (i % 997 == 0) {
            magpool_stats_t s = mp_stats(p, backend);
            cr_assert_eq(s.acquires, acq, "[%s] step %d acquires %llu want %llu", BN, i,
                         (unsigned long long)s.acquires, (unsigned long long)acq);
            cr_assert_eq(s.releases, rel, "[%s] step %d", BN, i);
            cr_assert_eq(s.blocks_outstanding, acq - rel, "[%s] step %d", BN, i);
            mp_assert_quiescent_invariants(&s, 40, backend);
        }
    }
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.acquires, acq, "[%s]", BN);
    cr_assert_eq(s.releases, rel, "[%s]", BN);
    cr_assert_eq(s.failed, 0, "[%s]", BN);
    /* never more than 300 held: misses are bounded by the growth events */
    cr_assert_leq(s.misses, s.grows, "[%s] misses %llu > grows %llu", BN,
                  (unsigned long long)s.misses, (unsigned long long)s.grows);
    cr_assert_gt(s.hits, 0, "[%s]", BN);
    mp_assert_quiescent_invariants(&s, 40, backend);
    for (int k = 0; k < 300; k++)
        magpool_release(p, held[k]); /* NULL entries are no-ops */
    s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s.releases, s.acquires, "[%s]", BN);
    magpool_destroy(p);
}

BACKEND_TEST(stats, hit_rate_is_hits_over_acquires)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 4;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s0 = mp_stats(p, backend);
    /* more acquires than blocks carved at create (which may exceed 4) */
    size_t n = s0.blocks_total + 10;
    cr_assert_leq(n, 1000, "[%s] blocks_total %zu at create", BN, s0.blocks_total);
    void *b[1000];
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_gt(s.misses, 0, "[%s] %zu acquires from %zu carved blocks had no miss", BN, n,
                 s0.blocks_total);
    cr_assert_lt(s.hit_rate, 1.0, "[%s]", BN);
    mp_assert_quiescent_invariants(&s, 64, backend);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    for (int r = 0; r < 10; r++) {
        for (size_t i = 0; i < n; i++)
            cr_assert_not_null(b[i] = magpool_acquire(p));
        for (size_t i = 0; i < n; i++)
            magpool_release(p, b[i]);
    }
    magpool_stats_t s2 = mp_stats(p, backend);
    cr_assert_eq(s2.misses, s.misses, "[%s] reuse counted as miss", BN);
    cr_assert_gt(s2.hit_rate, s.hit_rate, "[%s] hit_rate %g -> %g", BN, s.hit_rate,
                 s2.hit_rate);
    mp_assert_quiescent_invariants(&s2, 64, backend);
    magpool_destroy(p);
}

struct worker {
    magpool_t *p;
    int keep;
    void *kept[16];
    mp_gate_t done, go_on;
    int ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    void *b[8];
    w->ok = 1;
    for (int i = 0; i < 5000; i++) {
        int n = 1 + i % 8;
        for (int k = 0; k < n; k++)
            if (!(b[k] = magpool_acquire(w->p)))
                w->ok = 0;
        for (int k = 0; k < n; k++)
            magpool_release(w->p, b[k]);
    }
    for (int k = 0; k < w->keep; k++)
        if (!(w->kept[k] = magpool_acquire(w->p)))
            w->ok = 0;
    mp_gate_open(&w->done);
    mp_gate_wait(&w->go_on);
    return NULL;
}

BACKEND_TEST(stats, stats_add_up_after_multithreaded_work)
{
    magpool_config_t c = mp_cfg(backend, 32);
    c.magazine_size = 8;
    magpool_t *p = mp_create_ok(&c);
    enum { T = 4 };
    struct worker w[T];
    pthread_t t[T];
    uint64_t pairs = 0;
    for (int i = 0; i < 5000; i++)
        pairs += 1 + i % 8;
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){.p = p, .keep = 3 * i + 1};
        mp_gate_init(&w[i].done);
        mp_gate_init(&w[i].go_on);
        cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    size_t kept = 0;
    for (int i = 0; i < T; i++) {
        mp_gate_wait(&w[i].done);
        cr_assert(w[i].ok, "[%s] worker %d acquire failed", BN, i);
        kept += (size_t)w[i].keep;
    }
    /* quiescent, workers alive and holding caches */
    magpool_stats_t s = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s, 32, backend);
    cr_assert_eq(s.acquires, T * pairs + kept, "[%s] acquires %llu want %llu", BN,
                 (unsigned long long)s.acquires, (unsigned long long)(T * pairs + kept));
    cr_assert_eq(s.releases, T * pairs, "[%s]", BN);
    cr_assert_eq(s.blocks_outstanding, kept, "[%s] outstanding %zu want %zu", BN,
                 s.blocks_outstanding, kept);
    if (backend == MAGPOOL_LOCKFREE)
        cr_assert_geq(s.threads, T, "[%s] threads %llu with %d live users", BN,
                      (unsigned long long)s.threads, T);
    for (int i = 0; i < T; i++) {
        mp_gate_open(&w[i].go_on);
        pthread_join(t[i], NULL);
    }
    magpool_stats_t sj = mp_stats(p, backend);
    cr_assert_eq(sj.threads, 0, "[%s] threads %llu after all users exited", BN,
                 (unsigned long long)sj.threads);
    /* workers are gone; main releases what they kept */
    for (int i = 0; i < T; i++)
        for (int k = 0; k < w[i].keep; k++)
            magpool_release(p, w[i].kept[k]);
    magpool_stats_t s2 = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s2, 32, backend);
    cr_assert_eq(s2.blocks_outstanding, 0, "[%s]", BN);
    cr_assert_eq(s2.releases, s2.acquires, "[%s]", BN);
    cr_assert_eq(s2.acquires, s.acquires, "[%s] counters of exited threads were lost", BN);
    cr_assert_eq(s2.hits, s.hits, "[%s] hits of exited threads were lost", BN);
    cr_assert_leq(s2.threads, 1, "[%s] threads %llu, only main is attached", BN,
                  (unsigned long long)s2.threads);
    for (int i = 0; i < T; i++) {
        mp_gate_destroy(&w[i].done);
        mp_gate_destroy(&w[i].go_on);
    }
    magpool_destroy(p);
}

/* ---- report_leaks ------------------------------------------------------- */

static char *slurp(FILE *f)
{
    static char buf[4096];
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

static int mentions_number(const char *text, size_t n)
{
    char num[32];
    snprintf(num, sizeof num, "%zu", n);
    size_t len = strlen(num);
    for (const char *q = strstr(text, num); q; q = strstr(q + 1, num)) {
        int before_ok = q == text || !(q[-1] >= '0' && q[-1] <= '9');
        int after_ok = !(q[len] >= '0' && q[len] <= '9');
        if (before_ok && after_ok)
            return 1;
    }
    return 0;
}

BACKEND_TEST(leaks, report_leaks_returns_and_prints_outstanding_count)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    void *b[37];
    for (int i = 0; i < 37; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    for (int i = 0; i < 14; i++)
        magpool_release(p, b[i]);
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    size_t n = magpool_report_leaks(p, f);
    cr_assert_eq(n, 23, "[%s] report_leaks returned %zu, 23 outstanding", BN, n);
    char *text = slurp(f);
    cr_assert_neq(text[0], '\0', "[%s] report_leaks wrote nothing", BN);
    cr_assert(mentions_number(text, 23), "[%s] report does not mention 23: \"%s\"", BN, text);
    fclose(f);
    for (int i = 14; i < 37; i++)
        magpool_release(p, b[i]);
    f = tmpfile();
    cr_assert_eq(magpool_report_leaks(p, f), 0, "[%s] after releasing everything", BN);
    fclose(f);
    magpool_destroy(p);
}

BACKEND_TEST(leaks, report_leaks_counts_blocks_held_by_other_threads)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    struct worker w = {.p = p, .keep = 9};
    mp_gate_init(&w.done);
    mp_gate_init(&w.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, worker_main, &w), 0);
    mp_gate_wait(&w.done);
    FILE *f = tmpfile();
    size_t n = magpool_report_leaks(p, f);
    cr_assert_eq(n, 9, "[%s] report_leaks %zu, another thread holds 9", BN, n);
    cr_assert(mentions_number(slurp(f), 9), "[%s] report does not mention 9", BN);
    fclose(f);
    mp_gate_open(&w.go_on);
    pthread_join(t, NULL);
    for (int k = 0; k < 9; k++)
        magpool_release(p, w.kept[k]);
    cr_assert_eq(magpool_report_leaks(p, (f = tmpfile())), 0, "[%s]", BN);
    fclose(f);
    magpool_destroy(p);
}

BACKEND_TEST(leaks, report_leaks_null_stream_writes_to_stderr)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    void *b[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    size_t n = magpool_report_leaks(p, NULL);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(n, 5, "[%s]", BN);
    cr_assert(mentions_number(out, 5), "[%s] stderr report does not mention 5: \"%s\"", BN,
              out);
    for (int i = 0; i < 5; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}
