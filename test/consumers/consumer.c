/* SPDX-License-Identifier: MIT */
/*
 * The program every consumer build in run.sh compiles, links and runs: the
 * smallest real use of the installed (or subproject) magpool. Strict C11
 * plus POSIX threads, built with -Wall -Wextra -Werror (-Wpedantic too), so
 * the public header must be clean in a consumer's flags, not only in ours.
 *
 * Two threads acquire, write and release blocks of one pool; the pool's
 * counters must add up at the end. Exit status 0 on success.
 */
#define _POSIX_C_SOURCE 200809L

#include <magpool.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum { ROUNDS = 20000, BATCH = 16, BLOCK = 64 };

static void *worker(void *arg)
{
    magpool_t *pool = arg;
    void *held[BATCH];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++) {
            held[i] = magpool_acquire(pool);
            if (held[i] == NULL) {
                perror("magpool_acquire");
                return (void *)1;
            }
            memset(held[i], r & 0xff, BLOCK);
        }
        for (int i = 0; i < BATCH; i++)
            magpool_release(pool, held[i]);
    }
    return NULL;
}

int main(void)
{
    magpool_config_t cfg = magpool_config_default(BLOCK);
    cfg.initial_blocks = 64;
    magpool_t *pool = magpool_create(&cfg);
    if (pool == NULL) {
        perror("magpool_create");
        return 1;
    }

    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&t[i], NULL, worker, pool) != 0) {
            fprintf(stderr, "consumer: pthread_create failed\n");
            return 1;
        }
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        failed |= rc != NULL;
    }

    magpool_stats_t st;
    if (magpool_get_stats(pool, &st) != 0) {
        perror("magpool_get_stats");
        return 1;
    }
    printf("magpool %s (header %d.%d.%d): acquires %llu releases %llu "
           "outstanding %zu hit rate %.3f\n",
           magpool_version(), MAGPOOL_VERSION_MAJOR, MAGPOOL_VERSION_MINOR,
           MAGPOOL_VERSION_PATCH, (unsigned long long)st.acquires,
           (unsigned long long)st.releases, st.blocks_outstanding, st.hit_rate);
    magpool_destroy(pool);

    const unsigned long long want = 2ull * ROUNDS * BATCH;
    if (failed || st.acquires != want || st.releases != st.acquires ||
        st.blocks_outstanding != 0) {
        fprintf(stderr, "consumer: FAILED (expected %llu acquires and as many releases)\n",
                want);
        return 1;
    }
    return 0;
}
