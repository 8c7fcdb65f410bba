/* SPDX-License-Identifier: MIT */
/*
 * Example: scratch buffers for factor computations, given back when idle.
 *
 * The seed design's BufferManager hands out temporary numeric arrays for
 * factor calculations and frees those nobody used for a while
 * (clear_unused(max_age)). Here two worker threads compute a momentum factor
 * for a universe of instruments, bar after bar:
 *
 *   for each instrument:
 *     prices  = magpool_bufmgr_get(bm, n, MAGPOOL_F64)   simulated closes
 *     returns = magpool_bufmgr_get(bm, n - 1, MAGPOOL_F64)
 *     factor  = mean(last W returns) / stddev(last W returns)
 *     magpool_bufmgr_release(bm, returns), (bm, prices)
 *
 * Series lengths differ per instrument, so the buffers come from several
 * size classes; each release makes the buffer available to the next request
 * of its class, in any thread, and no computation after the first few calls
 * the system allocator. After the burst the program goes quiet, then a
 * housekeeping call gives back what has been idle longer than max_age:
 *
 *   magpool_bufmgr_clear_unused(bm, max_age)
 *
 * A trading system would run it every few seconds with max_age 30-60 s:
 * right after the burst that frees nothing. To finish quickly the example
 * then waits a fraction of a second and clears with max_age = MAX_AGE_S.
 *
 * Self-checking: exit status 0 when every factor equals the same formula
 * computed on plain malloc'd arrays, buffers were reused, nothing is
 * outstanding, and clear_unused freed the idle buffers only once they were
 * old enough.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <magpool.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

enum {
    N_INSTRUMENTS = 40, /* universe                                        */
    N_BARS = 25,        /* recomputations of every factor                  */
    N_THREADS = 2,
    WINDOW = 20,        /* returns in the factor's window                  */
    MAX_BUFFERS = 50,   /* idle buffers kept, as in the seed's example     */
};
#define MAX_AGE_S 0.2

/* Instrument k's series: 1000 + 97k closes (about 8 KiB to 38 KiB). */
static size_t series_len(int k) { return 1000 + 97 * (size_t)k; }

/* A deterministic random walk, so every run and every thread agree. */
static void simulate_closes(double *px, size_t n, int k, int bar)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1) + (uint64_t)bar;
    double p = 100.0 + k;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        p *= 1.0 + ((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.02;
        px[i] = p;
    }
}

/* mean / stddev of the last WINDOW simple returns: a momentum factor. */
static double momentum(const double *px, double *ret, size_t n)
{
    for (size_t i = 1; i < n; i++)
        ret[i - 1] = px[i] / px[i - 1] - 1.0;
    const double *w = ret + (n - 1 - WINDOW);
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < WINDOW; i++)
        mean += w[i];
    mean /= WINDOW;
    for (int i = 0; i < WINDOW; i++)
        var += (w[i] - mean) * (w[i] - mean);
    return mean / sqrt(var / (WINDOW - 1));
}

static magpool_bufmgr_t *bm;
/* Results: each worker writes its own instruments' cells; main reads them
 * after the join. */
static double factor[N_BARS][N_INSTRUMENTS];

/* Worker `first` computes instruments first, first + N_THREADS, ...
 * Returns NULL, or non-NULL on a failed get or a misaligned buffer. */
static void *worker(void *arg)
{
    int first = (int)(intptr_t)arg;
    for (int bar = 0; bar < N_BARS; bar++) {
        for (int k = first; k < N_INSTRUMENTS; k += N_THREADS) {
            size_t n = series_len(k);
            double *px = magpool_bufmgr_get(bm, n, MAGPOOL_F64);
            double *ret = magpool_bufmgr_get(bm, n - 1, MAGPOOL_F64);
            if (px == NULL || ret == NULL) {
                perror("magpool_bufmgr_get");
                magpool_bufmgr_release(bm, px); /* NULL is a no-op */
                magpool_bufmgr_release(bm, ret);
                return (void *)1;
            }
            if ((uintptr_t)px % MAGPOOL_BUFMGR_ALIGN || (uintptr_t)ret % MAGPOOL_BUFMGR_ALIGN) {
                fprintf(stderr, "factor_buffers: buffer not 64-byte aligned\n");
                return (void *)1;
            }
            simulate_closes(px, n, k, bar);
            factor[bar][k] = momentum(px, ret, n);
            magpool_bufmgr_release(bm, ret);
            magpool_bufmgr_release(bm, px);
        }
    }
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int main(void)
{
    bm = magpool_bufmgr_create(MAX_BUFFERS);
    if (bm == NULL) {
        perror("magpool_bufmgr_create");
        return 1;
    }

    /* The burst: N_THREADS workers, every factor recomputed N_BARS times. */
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "factor_buffers: pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < N_THREADS; i++) {
        void *failed;
        pthread_join(t[i], &failed); /* exiting threads hand their caches back */
        CHECK(failed == NULL);
    }

    /* The same numbers from plain arrays. */
    size_t nmax = series_len(N_INSTRUMENTS - 1);
    double *px = malloc(nmax * sizeof *px), *ret = malloc(nmax * sizeof *ret);
    if (px == NULL || ret == NULL)
        return 1;
    for (int bar = 0; bar < N_BARS; bar++) {
        for (int k = 0; k < N_INSTRUMENTS; k++) {
            simulate_closes(px, series_len(k), k, bar);
            CHECK(factor[bar][k] == momentum(px, ret, series_len(k)));
        }
    }
    free(px);
    free(ret);

    magpool_bufmgr_stats_t st;
    magpool_bufmgr_get_stats(bm, &st);
    printf("buffers: %llu gets, %llu reused (%.1f%%), %u size classes, %zu outstanding, "
           "%zu idle, %zu KiB mapped\n",
           (unsigned long long)st.gets, (unsigned long long)st.hits,
           100.0 * (double)st.hits / (double)st.gets, st.classes_in_use, st.outstanding,
           st.idle_buffers, st.bytes_reserved / 1024);
    CHECK(st.gets == 2ull * N_BARS * N_INSTRUMENTS && st.releases == st.gets);
    CHECK(st.outstanding == 0);
    CHECK(st.hits > st.gets / 2); /* most computations reused a buffer */
    CHECK(st.classes_in_use > 1);

    /* Housekeeping as a trading system would run it, max_age 30 s: every
     * buffer was used within the burst, so none goes. */
    size_t young = magpool_bufmgr_clear_unused(bm, 30.0);
    CHECK(young == 0);

    /* Quiet for longer than max_age: now the idle buffers go back. */
    sleep_s(MAX_AGE_S * 1.5);
    size_t cleared = magpool_bufmgr_clear_unused(bm, MAX_AGE_S);
    magpool_bufmgr_stats_t after;
    magpool_bufmgr_get_stats(bm, &after);
    printf("clear_unused: %zu buffers older than 30 s after the burst; %zu older than "
           "%.1f s after %.1f s quiet; %zu KiB mapped now\n",
           young, cleared, MAX_AGE_S, MAX_AGE_S * 1.5, after.bytes_reserved / 1024);
    CHECK(cleared > 0);
    CHECK(after.bytes_reserved < st.bytes_reserved);

    /* The manager is still fully usable: a new request maps memory again. */
    double *again = magpool_bufmgr_get(bm, 1000, MAGPOOL_F64);
    CHECK(again != NULL);
    magpool_bufmgr_release(bm, again);

    magpool_bufmgr_destroy(bm);
    return check_exit_status();
}
