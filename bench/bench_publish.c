/* SPDX-License-Identifier: MIT */
/*
 * What publishing (magpool_publish_start, lib/publish.c) costs a running
 * program: the trading-engine mix (tools/mixload.h) on --threads threads
 * with --idle-pools more pools for the publisher to walk, publishing off,
 * every 1000 ms (the default) and every 10 ms (the fastest), in the same
 * run: the modes take turns, run after run, so the machine's drift is
 * shared; medians of --runs runs. Also the publisher thread's own CPU time
 * per snapshot (process CPU minus the workers' thread clocks).
 *
 *   bench_publish [--threads N] [--idle-pools N] [--seconds S] [--runs N]
 *                 [--json FILE]
 *
 * The claim it backs (docs/live-view.md): publishing costs the fast path
 * nothing; what it costs is the publisher's CPU time per snapshot.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "magpool.h"
#include "../tools/mixload.h"
#include "stats.h"

#define MAXT 64
#define NMODES 3
static const unsigned mode_ms[NMODES] = { 0, 1000, 10 };
static const char *const mode_name[NMODES] = { "off", "on-1000ms", "on-10ms" };

static magpool_t *orders, *fills;
static _Atomic int go, stop;

struct worker {
    pthread_t t;
    uint64_t ops;
    double cpu_s;
    unsigned seed;
};

static double clock_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct mixload *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->orders = orders;
    m->fills = fills;
    m->rng = 0x9E3779B97F4A7C15ull * (w->seed + 1);
    m->max_live = 4000;
    for (int i = 0; i < 4096; i++) /* warm up: the wheel fills */
        mixload_tick(m);
    m->ops = 0;
    while (!atomic_load_explicit(&go, memory_order_acquire))
        ;
    double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
        for (int i = 0; i < 64; i++)
            if (mixload_tick(m) != 0) {
                perror("bench_publish: acquire");
                exit(1);
            }
    w->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    w->ops = m->ops;
    mixload_drain(m);
    free(m);
    return NULL;
}

static double process_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

struct result {
    double mops;           /* pool operations (acquire or release) per second, all threads */
    double pub_cpu_ms;     /* CPU time outside the workers during the run */
};

static struct result run_once(unsigned nthreads, double seconds, unsigned ms)
{
    struct worker w[MAXT];
    atomic_store(&go, 0);
    atomic_store(&stop, 0);
    if (ms && magpool_publish_start(ms) != 0) {
        perror("bench_publish: magpool_publish_start");
        exit(1);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        w[i].seed = i;
        pthread_create(&w[i].t, NULL, worker_main, &w[i]);
    }
    nanosleep(&(struct timespec){ 0, 50000000 }, NULL); /* warm-ups done */
    double cpu0 = process_cpu_s(), t0 = clock_s(CLOCK_MONOTONIC);
    atomic_store_explicit(&go, 1, memory_order_release);
    nanosleep(&(struct timespec){ (time_t)seconds,
                                  (long)((seconds - (time_t)seconds) * 1e9) }, NULL);
    atomic_store_explicit(&stop, 1, memory_order_relaxed);
    double t1 = clock_s(CLOCK_MONOTONIC);
    uint64_t ops = 0;
    double workers_cpu = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        ops += w[i].ops;
        workers_cpu += w[i].cpu_s;
    }
    double cpu1 = process_cpu_s();
    magpool_publish_stop();
    /* The main thread sleeps and the workers' drains are not in their
     * clocks' window but are in the process's: a small constant that the
     * "off" mode measures too. */
    return (struct result){ ops / (t1 - t0) / 1e6, (cpu1 - cpu0 - workers_cpu) * 1e3 };
}

int main(int argc, char **argv)
{
    unsigned nthreads = 2, nidle = 100;
    int runs = 7;
    double seconds = 1.0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "--threads"))
            nthreads = (unsigned)atoi(v);
        else if (v && !strcmp(a, "--idle-pools"))
            nidle = (unsigned)atoi(v);
        else if (v && !strcmp(a, "--runs"))
            runs = atoi(v);
        else if (v && !strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (v && !strcmp(a, "--json"))
            json = v;
        else {
            fprintf(stderr, "usage: bench_publish [--threads N] [--idle-pools N] [--seconds S] "
                            "[--runs N] [--json FILE]\n");
            return 2;
        }
        i++;
    }
    if (nthreads < 1 || nthreads > MAXT || runs < 1 || runs > 99 || !(seconds > 0) ||
        nidle > 100000) {
        fprintf(stderr, "bench_publish: threads 1..%d, runs 1..99, seconds > 0\n", MAXT);
        return 2;
    }
    magpool_config_t c = magpool_config_default(256);
    c.initial_blocks = 16384;
    orders = magpool_create(&c);
    fills = magpool_create(&c);
    magpool_t **idle = calloc(nidle + 1, sizeof *idle);
    for (unsigned i = 0; i < nidle; i++)
        idle[i] = magpool_create(&(magpool_config_t){ .block_size = 64 });
    if (!orders || !fills || !idle) {
        perror("bench_publish: magpool_create");
        return 1;
    }
    double mops[NMODES][99], cpu[NMODES][99], load0[3], load1[3];
    getloadavg(load0, 3);
    for (int r = 0; r < runs; r++)
        for (int k = 0; k < NMODES; k++) {
            int m = (k + r) % NMODES; /* each mode goes first in turn */
            struct result res = run_once(nthreads, seconds, mode_ms[m]);
            mops[m][r] = res.mops;
            cpu[m][r] = res.pub_cpu_ms;
        }
    getloadavg(load1, 3);
    double med[NMODES], medcpu[NMODES];
    for (int m = 0; m < NMODES; m++) {
        double tmp[99];
        memcpy(tmp, mops[m], sizeof(double) * (size_t)runs);
        med[m] = stats_median(tmp, (size_t)runs);
        memcpy(tmp, cpu[m], sizeof(double) * (size_t)runs);
        medcpu[m] = stats_median(tmp, (size_t)runs);
    }
    printf("bench_publish: mix, %u threads, %u pools, %d runs of %.2f s, load %.2f -> %.2f, "
           "%ld cpus\n", nthreads, nidle + 2, runs, seconds, load0[0], load1[0],
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-10s %12s %10s %16s\n", "mode", "Mops/s", "vs off", "other CPU ms/s");
    for (int m = 0; m < NMODES; m++)
        printf("%-10s %12.2f %9.3fx %16.2f\n", mode_name[m], med[m], med[m] / med[0],
               medcpu[m] / seconds);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "bench_publish: %s: %s\n", json, strerror(errno));
            return 1;
        }
        fprintf(f, "{\"bench\": \"publish\", \"workload\": \"mix\", \"threads\": %u, "
                   "\"pools\": %u, \"runs\": %d, \"seconds\": %.3f, \"cpus\": %ld, "
                   "\"load_before\": %.2f, \"load_after\": %.2f, \"version\": \"%s\",\n"
                   " \"modes\": [", nthreads, nidle + 2, runs, seconds,
                sysconf(_SC_NPROCESSORS_ONLN), load0[0], load1[0], magpool_version());
        for (int m = 0; m < NMODES; m++) {
            fprintf(f, "%s\n  {\"mode\": \"%s\", \"interval_ms\": %u, \"median_mops\": %.4f, "
                       "\"ratio_vs_off\": %.4f, \"median_other_cpu_ms_per_s\": %.3f, "
                       "\"mops\": [", m ? "," : "", mode_name[m], mode_ms[m], med[m],
                    med[m] / med[0], medcpu[m] / seconds);
            for (int r = 0; r < runs; r++)
                fprintf(f, "%s%.4f", r ? ", " : "", mops[m][r]);
            fprintf(f, "], \"other_cpu_ms\": [");
            for (int r = 0; r < runs; r++)
                fprintf(f, "%s%.3f", r ? ", " : "", cpu[m][r]);
            fprintf(f, "]}");
        }
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    for (unsigned i = 0; i < nidle; i++)
        magpool_destroy(idle[i]);
    free(idle);
    magpool_destroy(orders);
    magpool_destroy(fills);
    return 0;
}
