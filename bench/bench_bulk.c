/* SPDX-License-Identifier: MIT */
/*
 * bench_bulk: are bulk calls at least as fast per block as single calls?
 *
 * One thread, one pool per cell. A round takes a batch of blocks and gives
 * them back: either `batch` magpool_acquire then `batch` magpool_release
 * (single), or one magpool_acquire_bulk and one magpool_release_bulk (bulk).
 * Each run times both in the same process, back to back, in alternating
 * order; the table and the JSON give the median of --runs runs of ns per
 * block (one acquire + one release) and the median of the per-run ratios
 * bulk / single (below 1: bulk is faster). Time is the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): on a shared, oversubscribed machine wall time
 * would charge whichever side ran longer with the time it spent preempted.
 *
 * --callgrind also counts instructions per block exactly for each lock-free
 * cell (valgrind --tool=callgrind, counting only inside the noinline
 * functions bench_bulk_region_single / _bulk, warm-up subtracted, as
 * scripts/instr.sh does for the fast path): a noise-free second opinion.
 *
 * Cells: 64 B and 1 KiB blocks with a batch of 256 (within the thread's two
 * magazines: the copy path alone), 64 B with 1024 (four magazines: every
 * round also refills from and drains to the depot), and the mutex backend
 * at 64 B / 256, where bulk calls are a loop of single calls.
 *
 *   bench_bulk [--runs N] [--ms M] [--callgrind] [--json FILE] [--quick]
 *
 * Writes a JSON object to --json FILE (default results/bulk-<time>.json).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <magpool.h>

#include "stats.h"

#define MAX_RUNS 99

struct cell {
    const char *backend_name;
    magpool_backend_t backend;
    size_t block_size;
    size_t batch;
    double single[MAX_RUNS], bulk[MAX_RUNS], ratio[MAX_RUNS];
    double instr_single, instr_bulk;   /* per block; < 0: not measured */
};

static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_bulk: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ns per block (acquire + release) over `rounds` rounds of `batch` blocks. */
static double time_single(magpool_t *p, void **v, size_t batch, long rounds)
{
    double t = cpu_now_s();
    for (long r = 0; r < rounds; r++) {
        for (size_t i = 0; i < batch; i++)
            if ((v[i] = magpool_acquire(p)) == NULL)
                die("magpool_acquire");
        __asm__ volatile("" : : "r"(v) : "memory");
        for (size_t i = 0; i < batch; i++)
            magpool_release(p, v[i]);
    }
    return (cpu_now_s() - t) * 1e9 / ((double)rounds * (double)batch);
}

static double time_bulk(magpool_t *p, void **v, size_t batch, long rounds)
{
    double t = cpu_now_s();
    for (long r = 0; r < rounds; r++) {
        if (magpool_acquire_bulk(p, v, batch) != 0)
            die("magpool_acquire_bulk");
        __asm__ volatile("" : : "r"(v) : "memory");
        magpool_release_bulk(p, v, batch);
    }
    return (cpu_now_s() - t) * 1e9 / ((double)rounds * (double)batch);
}

/* The regions callgrind counts (--toggle-collect): `rounds` rounds of one
 * cell, after a warm-up round outside them. */
__attribute__((noinline)) void bench_bulk_region_single(magpool_t *p, void **v, size_t batch,
                                                        long rounds);
__attribute__((noinline)) void bench_bulk_region_bulk(magpool_t *p, void **v, size_t batch,
                                                      long rounds);
__attribute__((noinline)) void bench_bulk_region_single(magpool_t *p, void **v, size_t batch,
                                                        long rounds)
{
    time_single(p, v, batch, rounds);
}
__attribute__((noinline)) void bench_bulk_region_bulk(magpool_t *p, void **v, size_t batch,
                                                      long rounds)
{
    time_bulk(p, v, batch, rounds);
}

/* Child side of --callgrind: one region of one cell. */
static int run_region(const char *which, size_t block_size, size_t batch, long rounds)
{
    magpool_config_t cfg = magpool_config_default(block_size);
    cfg.initial_blocks = 2 * batch;
    magpool_t *p = magpool_create(&cfg);
    void **v = calloc(batch, sizeof *v);
    if (!p || !v)
        return 2;
    time_single(p, v, batch, 1); /* warm-up: the cache and magazines exist */
    time_bulk(p, v, batch, 1);
    if (!strcmp(which, "bulk"))
        bench_bulk_region_bulk(p, v, batch, rounds);
    else
        bench_bulk_region_single(p, v, batch, rounds);
    magpool_destroy(p);
    free(v);
    return 0;
}

/* Instructions counted by callgrind inside region `which`; < 0 on error. */
static double callgrind_count(const char *self, const char *which, const struct cell *c,
                              long rounds)
{
    char out[64], cmd[1024];
    snprintf(out, sizeof out, "/tmp/bench_bulk-cg.%d.out", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "valgrind --tool=callgrind --callgrind-out-file=%s "
             "--toggle-collect=bench_bulk_region_%s '%s' --region %s %zu %zu %ld "
             ">/dev/null 2>&1", out, which, self, which, c->block_size, c->batch, rounds);
    double total = -1;
    if (system(cmd) == 0) {
        FILE *f = fopen(out, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "totals:", 7) || (total < 0 && !strncmp(line, "summary:", 8)))
                total = strtod(strchr(line, ':') + 1, NULL);
        if (f)
            fclose(f);
    }
    unlink(out);
    return total;
}

/* Instructions per block of region `which`: the count of `rounds` rounds
 * minus the count of none (loop set-up, the toggle itself). */
static double instr_per_block(const char *self, const char *which, const struct cell *c)
{
    const long rounds = 2000;
    double n = callgrind_count(self, which, c, rounds), z = callgrind_count(self, which, c, 0);
    if (n < 0 || z < 0)
        return -1;
    return (n - z) / ((double)rounds * (double)c->batch);
}

/* Rounds that take about `ms` milliseconds with single calls. */
static long calibrate(magpool_t *p, void **v, size_t batch, double ms)
{
    long rounds = 16;
    for (;;) {
        double ns = time_single(p, v, batch, rounds);
        double total_ms = ns * (double)batch * (double)rounds * 1e-6;
        if (total_ms >= ms / 8 || rounds > (1L << 30))
            return (long)((double)rounds * ms / (total_ms > 0 ? total_ms : 1e-3)) + 1;
        rounds *= 4;
    }
}

static void run_cell(struct cell *c, int runs, double ms)
{
    magpool_config_t cfg = magpool_config_default(c->block_size);
    cfg.backend = c->backend;
    cfg.initial_blocks = 2 * c->batch;
    magpool_t *p = magpool_create(&cfg);
    void **v = calloc(c->batch, sizeof *v);
    if (!p || !v)
        die("setup");
    long rounds = calibrate(p, v, c->batch, ms);
    time_bulk(p, v, c->batch, rounds / 8 + 1); /* warm-up of the bulk path */
    for (int r = 0; r < runs; r++) {
        if (r % 2 == 0) {
            c->single[r] = time_single(p, v, c->batch, rounds);
            c->bulk[r] = time_bulk(p, v, c->batch, rounds);
        } else {
            c->bulk[r] = time_bulk(p, v, c->batch, rounds);
            c->single[r] = time_single(p, v, c->batch, rounds);
        }
        c->ratio[r] = c->bulk[r] / c->single[r];
    }
    magpool_stats_t s;
    if (magpool_get_stats(p, &s) != 0 || s.blocks_outstanding != 0 || s.failed != 0) {
        fprintf(stderr, "bench_bulk: pool not quiescent after the runs\n");
        exit(1);
    }
    free(v);
    magpool_destroy(p);
}

static void json_runs(FILE *f, const char *key, const double *v, int n, const char *tail)
{
    fprintf(f, "      \"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.4f", i ? ", " : "", v[i]);
    fprintf(f, "]%s\n", tail);
}

int main(int argc, char **argv)
{
    int runs = 9, callgrind = 0;
    double ms = 40;
    const char *json = NULL;
    if (argc == 6 && !strcmp(argv[1], "--region"))
        return run_region(argv[2], (size_t)atol(argv[3]), (size_t)atol(argv[4]),
                          atol(argv[5]));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--callgrind")) callgrind = 1;
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--quick")) { runs = 3; ms = 5; }
        else {
            printf("usage: %s [--runs N] [--ms M] [--callgrind] [--json FILE] [--quick]\n",
                   argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || !(ms > 0))
        return 2;

    struct cell cells[] = {
        { "lockfree", MAGPOOL_LOCKFREE, 64, 256, {0}, {0}, {0}, -1, -1 },
        { "lockfree", MAGPOOL_LOCKFREE, 1024, 256, {0}, {0}, {0}, -1, -1 },
        { "lockfree", MAGPOOL_LOCKFREE, 64, 1024, {0}, {0}, {0}, -1, -1 },
        { "mutex", MAGPOOL_MUTEX, 64, 256, {0}, {0}, {0}, -1, -1 },
    };
    const int ncells = (int)(sizeof cells / sizeof cells[0]);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (callgrind && (sl <= 0 || system("valgrind --version >/dev/null 2>&1") != 0)) {
        fprintf(stderr, "bench_bulk: --callgrind needs valgrind and /proc/self/exe\n");
        callgrind = 0;
    }
    self[sl > 0 ? sl : 0] = '\0';
    printf("bench_bulk: median of %d runs, ns (thread CPU time) per block (acquire + "
           "release), 1 thread%s\n", runs, callgrind ? "; instructions per block (callgrind)"
                                                     : "");
    printf("  backend   block  batch   single ns   bulk ns   bulk/single%s\n",
           callgrind ? "   single instr   bulk instr   bulk/single" : "");
    for (int k = 0; k < ncells; k++) {
        struct cell *c = &cells[k];
        run_cell(c, runs, ms);
        printf("  %-8s %5zu B %6zu   %9.3f %9.3f   %9.3f", c->backend_name, c->block_size,
               c->batch, stats_median(c->single, (size_t)runs), stats_median(c->bulk, (size_t)runs),
               stats_median(c->ratio, (size_t)runs));
        if (callgrind && c->backend == MAGPOOL_LOCKFREE) {
            c->instr_single = instr_per_block(self, "single", c);
            c->instr_bulk = instr_per_block(self, "bulk", c);
            printf("   %12.2f %12.2f %12.3f", c->instr_single, c->instr_bulk,
                   c->instr_single > 0 ? c->instr_bulk / c->instr_single : -1);
        }
        printf("\n");
    }

    char path[256];
    if (!json) {
        mkdir("results", 0777);
        snprintf(path, sizeof path, "results/bulk-%ld.json", (long)time(NULL));
        json = path;
    }
    FILE *f = fopen(json, "w");
    if (!f)
        die(json);
    fprintf(f, "{\n  \"benchmark\": \"bulk\",\n  \"version\": \"%s\",\n", magpool_version());
    fprintf(f, "  \"runs\": %d, \"ms_per_measurement\": %g, \"threads\": 1,\n", runs, ms);
    fprintf(f, "  \"unit\": \"ns of thread CPU time per block (one acquire + one release); "
               "instr: instructions per block (callgrind)\",\n  \"cells\": [\n");
    for (int k = 0; k < ncells; k++) {
        const struct cell *c = &cells[k];
        fprintf(f, "    {\n      \"backend\": \"%s\", \"block_size\": %zu, \"batch\": %zu,\n",
                c->backend_name, c->block_size, c->batch);
        fprintf(f, "      \"single_ns\": %.4f, \"bulk_ns\": %.4f, \"bulk_over_single\": %.4f,\n",
                stats_median(c->single, (size_t)runs), stats_median(c->bulk, (size_t)runs),
                stats_median(c->ratio, (size_t)runs));
        if (c->instr_single >= 0 && c->instr_bulk >= 0)
            fprintf(f, "      \"instr_single\": %.2f, \"instr_bulk\": %.2f,\n",
                    c->instr_single, c->instr_bulk);
        json_runs(f, "single_runs", c->single, runs, ",");
        json_runs(f, "bulk_runs", c->bulk, runs, ",");
        json_runs(f, "ratio_runs", c->ratio, runs, "");
        fprintf(f, "    }%s\n", k + 1 < ncells ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    printf("wrote %s\n", json);
    return 0;
}
