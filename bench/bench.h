/* SPDX-License-Identifier: MIT */
/*
 * magpool-bench — shared types of the benchmark suite.
 *
 * Process model (see docs/benchmarks.md, "How it works"): the driver process
 * never measures anything itself. Every single run of every (workload,
 * variant, block size, threads, pool config) cell is a fresh child process,
 * exec'd from the same binary, with LD_PRELOAD set to the peer allocator for
 * the malloc-based variants. The child writes one bench_result_t back through
 * a pipe. This gives (1) every allocator the same call sites, compiler and
 * flags, (2) per-run page-fault and peak-RSS numbers from getrusage that do
 * not leak between runs, and (3) run-by-run interleaving of all variants, so
 * the ratios we publish compare measurements taken seconds apart.
 */
#ifndef MAGPOOL_BENCH_H
#define MAGPOOL_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Which code path serves acquire/release in the hot loop. */
typedef enum {
    KIND_POOL,   /* magpool_acquire/magpool_release (either backend)      */
    KIND_HANDLE, /* magpool_cache_acquire/_release on each thread's handle */
    KIND_ARRAY,  /* per-thread array free list compiled into the bench    */
    KIND_MALLOC  /* malloc/free; the allocator is chosen by LD_PRELOAD    */
} bench_kind_t;

/* One variant = one line in every table and plot. */
typedef struct bench_variant {
    const char *name;      /* "magpool", "mutex", "array", "glibc", ...    */
    bench_kind_t kind;
    int backend;           /* magpool_backend_t for KIND_POOL              */
    const char *preload;   /* shared object for LD_PRELOAD, NULL = none    */
    const char *package;   /* Debian package that ships it (for versions)  */
    const char *probe;     /* symbol that proves the preload took effect   */
} bench_variant_t;

typedef enum {
    WL_PAIR,        /* acquire, touch, release                              */
    WL_BATCH_LIFO,  /* 256 acquires, then 256 releases newest first         */
    WL_BATCH_FIFO,  /* 256 acquires, then 256 releases oldest first         */
    WL_PRODCONS,    /* acquire on producer, release on consumer (SPSC ring) */
    WL_MIX,         /* trading-engine-like bursts with random lifetimes     */
    WL_GROWTH,      /* empty pool to N blocks, then release all             */
    WL_LAT_PAIR,    /* pair, every operation timed individually             */
    WL_LAT_BATCH,   /* batch LIFO, every operation timed individually       */
    WL_COUNT
} bench_workload_t;

#define BATCH_N 256

/* Everything a child needs to run one measurement (passed on its argv). */
typedef struct bench_params {
    bench_workload_t workload;
    int variant;              /* index into bench_variants[]              */
    size_t block_size;
    int threads;
    double duration_s;        /* time-bound workloads                     */
    size_t growth_blocks;     /* WL_GROWTH target, all threads together   */
    size_t initial_blocks;    /* pool config; SIZE_MAX = library default  */
    unsigned magazine_size;   /* pool config; 0 = automatic               */
    int pin;                  /* pin thread i to CPU i % ncpu             */
    double tsc_per_ns;        /* calibrated once by the driver            */
    double timer_overhead_cyc;/* idem                                     */
    uint64_t instr_pairs;     /* > 0: callgrind mode, exactly this many   */
} bench_params_t;

/* Quantiles kept for latency CDFs (p50/p99/p99.9/max are among them). */
#define BENCH_NQ 24
extern const double bench_quantiles[BENCH_NQ];
enum { Q_P50 = 11, Q_P99 = 18, Q_P999 = 20, Q_MAX = BENCH_NQ - 1 };

/* What one child run reports. Plain data: written raw through a pipe. */
typedef struct bench_result {
    int ok;                   /* ran, and every block came back            */
    int ran;                  /* the allocator could be set up and used   */
    char error[200];          /* why not, when !ok                        */
    uint64_t ops;             /* measured acquire+release pairs           */
    uint64_t acquires;        /* all, warm-up included (for conservation) */
    uint64_t releases;
    double elapsed_ns;        /* wall time of the measured phase          */
    double acquire_phase_ns;  /* WL_GROWTH: the filling half alone        */
    long minflt;              /* minor faults of the measured phase       */
    long rss_before_kb;       /* RSS when the threads are ready           */
    long rss_peak_kb;         /* peak RSS of the child (getrusage)        */
    int have_pool_stats;      /* KIND_POOL: the library's own counters    */
    uint64_t pool_acquires, pool_releases, pool_hits, pool_misses;
    uint64_t pool_grows, pool_depot_gets, pool_depot_puts, pool_steals;
    uint64_t pool_bytes_reserved, pool_blocks_total;
    int have_latency;
    uint64_t lat_samples;
    double lat_acquire_ns[BENCH_NQ];
    double lat_release_ns[BENCH_NQ];
} bench_result_t;

extern bench_variant_t bench_variants[]; /* preload paths settable */
extern const int bench_nvariants;

const char *bench_workload_name(bench_workload_t w);
int bench_workload_parse(const char *s);  /* -1 when unknown */
int bench_variant_find(const char *name); /* -1 when unknown */

/* workloads.c: run one measurement in this process (the child). */
int bench_run(const bench_params_t *p, bench_result_t *r);

/* child.c: run one measurement in a fresh child process. */
int bench_spawn(const char *self, const bench_params_t *p, bench_result_t *r);
/* child.c: the child side: parse argv, run, write the result. */
int bench_child_main(int argc, char **argv);
/* child.c: argv of a child run ("-" as fdarg: report on stderr only) and its
 * environment (LD_PRELOAD of the variant). Returns the argv length. */
int bench_child_argv(const char *self, const bench_params_t *p, const char *fdarg,
                     char buf[][48], char **argv);
void bench_child_env(const bench_params_t *p);

/* instr.c: instructions per pair under callgrind; < 0 when unavailable. */
double bench_instructions(const char *self, const bench_params_t *p, char *why,
                          size_t whylen);
int bench_have_valgrind(void);

#endif
