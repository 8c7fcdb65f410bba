/* SPDX-License-Identifier: MIT */
/*
 * Walks, printers and leak reports racing pool life cycles: plain C (no
 * Criterion), so it runs under ThreadSanitizer (suite 'stress').
 *
 *   churners  create a pool (either backend, some CHECKED), name it, use it,
 *             print it, destroy it, over and over;
 *   users     acquire / release on a shared CHECKED object pool and buffer
 *             manager (their acquire sites are kept beside the blocks);
 *   walkers   magpool_stats_print_all (text and JSON), magpool_walk with a
 *             callback that reads stats, and the layers' leak reports.
 *
 * Checks: nothing crashes or races (TSan), every walk's pools are live when
 * visited (the callback reads their stats), and at the end the shared
 * layers report exactly what the users kept, and no churner pool is left.
 *
 * usage: stress_walk [--rounds N]   (pool life cycles per churner)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

#define CHURNERS 3
#define USERS    2
#define WALKERS  2
#define KEEP     8      /* objects and buffers each user keeps at the end */

static int rounds = 300;
static atomic_int churning;
static atomic_int failures;
static magpool_objpool_t *shared_op;
static magpool_bufmgr_t *shared_bm;
static FILE *devnull;

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "stress_walk: %s:%d: check failed: %s\n", __FILE__,    \
                    __LINE__, #c);                                                 \
            atomic_fetch_add(&failures, 1);                                        \
        }                                                                          \
    } while (0)

static void *churner(void *arg)
{
    long id = (long)arg;
    for (int r = 0; r < rounds; r++) {
        magpool_config_t c = magpool_config_default((size_t)(16 + r % 200));
        c.backend = (r + id) % 3 == 0 ? MAGPOOL_MUTEX : MAGPOOL_LOCKFREE;
        c.flags = r % 4 == 0 ? MAGPOOL_CHECKED : 0;
        magpool_t *p = magpool_create(&c);
        CHECK(p != NULL);
        if (p == NULL)
            continue;
        char name[32];
        snprintf(name, sizeof name, "churn-%ld-%d", id, r);
        magpool_set_name(p, name);
        void *b[8];
        for (int i = 0; i < 8; i++)
            b[i] = magpool_acquire(p);
        for (int i = 0; i < 8; i++)
            magpool_release(p, b[i]);
        CHECK(magpool_stats_print(p, devnull, (unsigned)r & MAGPOOL_PRINT_JSON) == 0);
        magpool_destroy(p);
    }
    atomic_fetch_sub(&churning, 1);
    return NULL;
}

static void *user(void *arg)
{
    void **keep = arg;
    int n = 0;
    while (atomic_load(&churning) > 0 || n < 1) {
        void *o[4], *b[4];
        for (int i = 0; i < 4; i++) {
            o[i] = magpool_objpool_acquire(shared_op);
            b[i] = magpool_bufmgr_get(shared_bm, (size_t)(1 + (n * 7 + i) % 3000), MAGPOOL_U8);
            CHECK(o[i] != NULL && b[i] != NULL);
        }
        for (int i = 0; i < 4; i++) {
            magpool_objpool_release(shared_op, o[i]);
            magpool_bufmgr_release(shared_bm, b[i]);
        }
        n++;
    }
    for (int i = 0; i < KEEP; i++) {
        keep[i] = magpool_objpool_acquire(shared_op);
        keep[KEEP + i] = magpool_bufmgr_get(shared_bm, (size_t)(100 + i * 500), MAGPOOL_F32);
    }
    return NULL;
}

static void visit(magpool_t *p, void *ctx)
{
    magpool_stats_t s;
    CHECK(magpool_get_stats(p, &s) == 0);
    CHECK(s.acquires >= s.releases || s.blocks_outstanding == 0);
    (*(long *)ctx)++;
}

static void *walker(void *arg)
{
    (void)arg;
    for (int k = 0; atomic_load(&churning) > 0; k++) {
        long seen = 0;
        CHECK(magpool_walk(visit, &seen) == 0);
        CHECK(magpool_stats_print_all(devnull, (unsigned)k & MAGPOOL_PRINT_JSON) == 0);
        magpool_objpool_report_leaks(shared_op, devnull);
        magpool_bufmgr_report_leaks(shared_bm, devnull);
    }
    return NULL;
}

static void count(magpool_t *p, void *ctx)
{
    (void)p;
    (*(long *)ctx)++;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL)
        return 2;
    setenv("MAGPOOL_CHECKED", "1", 1); /* the shared layers keep sites */
    magpool_objpool_config_t oc = { .obj_size = 40, .initial_objects = 16 };
    shared_op = magpool_objpool_create(&oc);
    shared_bm = magpool_bufmgr_create(0);
    unsetenv("MAGPOOL_CHECKED");
    if (shared_op == NULL || shared_bm == NULL)
        return 2;
    atomic_store(&churning, CHURNERS);
    pthread_t t[CHURNERS + USERS + WALKERS];
    void *keep[USERS][2 * KEEP];
    int n = 0;
    for (long i = 0; i < CHURNERS; i++)
        pthread_create(&t[n++], NULL, churner, (void *)i);
    for (int i = 0; i < USERS; i++)
        pthread_create(&t[n++], NULL, user, keep[i]);
    for (int i = 0; i < WALKERS; i++)
        pthread_create(&t[n++], NULL, walker, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);

    CHECK(magpool_objpool_report_leaks(shared_op, devnull) == USERS * KEEP);
    CHECK(magpool_bufmgr_report_leaks(shared_bm, devnull) == USERS * KEEP);
    for (int u = 0; u < USERS; u++)
        for (int i = 0; i < KEEP; i++) {
            magpool_objpool_release(shared_op, keep[u][i]);
            magpool_bufmgr_release(shared_bm, keep[u][KEEP + i]);
        }
    CHECK(magpool_objpool_report_leaks(shared_op, devnull) == 0);
    CHECK(magpool_bufmgr_report_leaks(shared_bm, devnull) == 0);
    magpool_objpool_destroy(shared_op);
    magpool_bufmgr_destroy(shared_bm);
    long left = 0;
    CHECK(magpool_walk(count, &left) == 0);
    CHECK(left == 0);
    fclose(devnull);
    int f = atomic_load(&failures);
    printf("stress_walk: %d round(s) x %d churners: %s\n", rounds, CHURNERS,
           f ? "FAILED" : "ok");
    return f ? 1 : 0;
}
