/* SPDX-License-Identifier: MIT */
/*
 * bench_trim: does memory come back, and does reclamation cost the fast path?
 *
 *  1. Burst: a worker thread acquires --burst-mib of 1 KiB blocks, writes
 *     every block, releases them all, then stays alive and idle (its cache
 *     still loaded). The main thread trims — first with an age (as a
 *     background trimmer would: two looks --age apart), then clear — and
 *     RSS (/proc/self/statm) is recorded at each step.
 *  2. Fast path with reclamation on vs off, in the same run: the median of
 *     --runs runs of a single-thread acquire+release pair and of a 256-block
 *     batch, with the background trimmer off, then on (every 10 ms, age 0.5 s).
 *
 * Writes a JSON object to --json FILE (default results/trim-<time>.json) and
 * a table to stdout. Claims about speed come from here, not from tests.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <magpool.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    if (f)
        fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct burst {
    magpool_t *pool;
    size_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage; /* 1 = released, 2 = may exit */
};

static void *burst_main(void *arg)
{
    struct burst *b = arg;
    void **h = malloc(b->n * sizeof *h);
    if (!h)
        exit(2);
    for (size_t i = 0; i < b->n; i++) {
        h[i] = magpool_acquire(b->pool);
        if (!h[i]) {
            fprintf(stderr, "bench_trim: acquire failed: %s\n", strerror(errno));
            exit(2);
        }
        memset(h[i], 0xab, 1024);
    }
    for (size_t i = 0; i < b->n; i++)
        magpool_release(b->pool, h[i]);
    free(h);
    pthread_mutex_lock(&b->mu);
    b->stage = 1;
    pthread_cond_broadcast(&b->cv);
    while (b->stage < 2)
        pthread_cond_wait(&b->cv, &b->mu); /* alive, idle, cache loaded */
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static double pair_ns(magpool_t *p, long n)
{
    double t = now_s();
    for (long i = 0; i < n; i++) {
        void *x = magpool_acquire(p);
        __asm__ volatile("" : : "r"(x) : "memory");
        magpool_release(p, x);
    }
    return (now_s() - t) * 1e9 / (double)n;
}

static double batch_ns(magpool_t *p, long rounds)
{
    void *h[256];
    double t = now_s();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 256; i++)
            h[i] = magpool_acquire(p);
        __asm__ volatile("" : : "r"(h) : "memory");
        for (int i = 0; i < 256; i++)
            magpool_release(p, h[i]);
    }
    return (now_s() - t) * 1e9 / ((double)rounds * 256);
}

int main(int argc, char **argv)
{
    double burst_mib = 1024, age = 1.0;
    int runs = 5;
    long pairs = 20000000;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--burst-mib") && i + 1 < argc) burst_mib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--age") && i + 1 < argc) age = atof(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = atol(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--quick")) { burst_mib = 64; runs = 3; pairs = 2000000; age = 0.2; }
        else {
            printf("usage: %s [--burst-mib M] [--age S] [--runs N] [--pairs N] [--json FILE] [--quick]\n",
                   argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (runs < 1 || runs > 99 || burst_mib <= 0 || pairs < 1000)
        return 2;

    /* 1. burst and trim */
    long r_start = rss_kib();
    magpool_config_t c = magpool_config_default(1024);
    magpool_t *pool = magpool_create(&c);
    if (!pool)
        return 2;
    struct burst b = { .pool = pool, .n = (size_t)(burst_mib * 1024) };
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t t;
    pthread_create(&t, NULL, burst_main, &b);
    pthread_mutex_lock(&b.mu);
    while (b.stage < 1)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    long r_peak = rss_kib();
    double t0 = now_s();
    size_t first = magpool_trim(pool, age); /* looks at the idle thread */
    double t_first = now_s() - t0;
    long r_first = rss_kib();
    usleep((useconds_t)(age * 1.1e6));
    t0 = now_s();
    size_t second = magpool_trim(pool, age); /* it has been idle for `age` */
    double t_second = now_s() - t0;
    long r_aged = rss_kib();
    magpool_stats_t s;
    magpool_get_stats(pool, &s);
    size_t reserved_after = s.bytes_reserved;
    t0 = now_s();
    size_t cleared = magpool_clear(pool);
    double t_clear = now_s() - t0;
    long r_clear = rss_kib();
    pthread_mutex_lock(&b.mu);
    b.stage = 2;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    pthread_join(t, NULL);
    magpool_destroy(pool);
    double burst_kib = burst_mib * 1024;
    double back_pct = 100.0 * (double)(r_aged - r_start) / burst_kib;

    /* 2. fast path with and without reclamation running */
    double pr[2][99], bt[2][99];
    for (int mode = 0; mode < 2; mode++) {
        magpool_config_t pc = magpool_config_default(64);
        magpool_t *p = magpool_create(&pc);
        if (mode == 1 && magpool_set_trim_interval(p, 0.01, 0.5) != 0)
            return 2;
        for (int r = 0; r < runs; r++) {
            pr[mode][r] = pair_ns(p, pairs);
            bt[mode][r] = batch_ns(p, pairs / 512);
        }
        magpool_set_trim_interval(p, 0, 0);
        magpool_destroy(p);
        qsort(pr[mode], (size_t)runs, sizeof(double), cmp_d);
        qsort(bt[mode], (size_t)runs, sizeof(double), cmp_d);
    }
    double pair_off = pr[0][runs / 2], pair_on = pr[1][runs / 2];
    double batch_off = bt[0][runs / 2], batch_on = bt[1][runs / 2];

    printf("burst %.0f MiB of 1 KiB blocks, released by a thread that stays alive and idle\n",
           burst_mib);
    printf("  RSS start %ld KiB, after burst %ld KiB\n", r_start, r_peak);
    printf("  trim(%.2g s) first look:  %zu blocks, %.1f ms, RSS %ld KiB\n", age, first,
           t_first * 1e3, r_first);
    printf("  trim(%.2g s) %.2g s later: %zu blocks, %.1f ms, RSS %ld KiB (%.1f%% of the burst "
           "still resident), %zu bytes mapped\n", age, age * 1.1, second, t_second * 1e3, r_aged,
           back_pct, reserved_after);
    printf("  clear:                 %zu blocks, %.1f ms, RSS %ld KiB\n", cleared, t_clear * 1e3,
           r_clear);
    printf("fast path, median of %d runs   trimmer off   trimmer on (10 ms, age 0.5 s)   on/off\n",
           runs);
    printf("  64 B pair (ns/pair)          %8.2f      %8.2f                       %.3f\n",
           pair_off, pair_on, pair_on / pair_off);
    printf("  64 B batch 256 (ns/pair)     %8.2f      %8.2f                       %.3f\n",
           batch_off, batch_on, batch_on / batch_off);

    char path[256];
    if (!json) {
        mkdir("results", 0777);
        snprintf(path, sizeof path, "results/trim-%ld.json", (long)time(NULL));
        json = path;
    }
    FILE *f = fopen(json, "w");
    if (!f) {
        fprintf(stderr, "bench_trim: %s: %s\n", json, strerror(errno));
        return 1;
    }
    fprintf(f, "{\n  \"benchmark\": \"trim\",\n  \"version\": \"%s\",\n", magpool_version());
    fprintf(f, "  \"burst_mib\": %.0f, \"age_s\": %g, \"runs\": %d,\n", burst_mib, age, runs);
    fprintf(f, "  \"rss_kib\": {\"start\": %ld, \"burst\": %ld, \"first_trim\": %ld, "
               "\"aged_trim\": %ld, \"clear\": %ld},\n", r_start, r_peak, r_first, r_aged, r_clear);
    fprintf(f, "  \"blocks_returned\": {\"first_trim\": %zu, \"aged_trim\": %zu, \"clear\": %zu},\n",
            first, second, cleared);
    fprintf(f, "  \"trim_ms\": {\"first_trim\": %.3f, \"aged_trim\": %.3f, \"clear\": %.3f},\n",
            t_first * 1e3, t_second * 1e3, t_clear * 1e3);
    fprintf(f, "  \"burst_still_resident_pct\": %.2f, \"bytes_mapped_after_aged_trim\": %zu,\n",
            back_pct, reserved_after);
    fprintf(f, "  \"fast_path_ns\": {\"pair_trimmer_off\": %.4f, \"pair_trimmer_on\": %.4f, "
               "\"batch256_trimmer_off\": %.4f, \"batch256_trimmer_on\": %.4f}\n}\n",
            pair_off, pair_on, batch_off, batch_on);
    fclose(f);
    printf("wrote %s\n", json);
    return 0;
}
