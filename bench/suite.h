/* SPDX-License-Identifier: MIT */
/*
 * The suite: which cells to measure (options.c), how the driver runs them
 * (main.c), and how results are summarised (report.c).
 */
#ifndef MAGPOOL_BENCH_SUITE_H
#define MAGPOOL_BENCH_SUITE_H

#include <stdint.h>

#include "bench.h"

#define MAX_LIST 16
#define MAX_VARIANTS 16

typedef struct bench_opts {
    int workload_on[WL_COUNT];
    int config_on;              /* the pool-configuration sweep            */
    int config_mix;             /* ... over the mix workload too           */
    int variant_on[MAX_VARIANTS];
    int threads[MAX_LIST], nthreads;
    int lat_threads[MAX_LIST], nlat_threads;
    int cfg_threads[MAX_LIST], ncfg_threads;
    size_t sizes[MAX_LIST];
    int nsizes;
    size_t init_sweep[MAX_LIST];
    int ninit;
    size_t mag_sweep[MAX_LIST];
    int nmag;
    double duration_s;
    int runs;
    size_t growth_blocks;
    int pin;
    int quick;
    int callgrind;              /* 1 on, 0 off, -1 when valgrind exists    */
    uint64_t instr_pairs;
    const char *json_path;
} bench_opts_t;

/* One cell: a workload at one size, thread count and pool configuration,
 * measured for several variants and runs. */
typedef struct bench_cell {
    bench_workload_t workload;
    int config;                 /* part of the configuration sweep         */
    size_t size;
    int threads;
    size_t initial_blocks;      /* SIZE_MAX: library default               */
    unsigned magazine_size;     /* 0: automatic                            */
    int variants[MAX_VARIANTS];
    int nvariants;
    bench_result_t *res;        /* [variant slot][run]                     */
} bench_cell_t;

typedef struct bench_instr {
    int variant;
    size_t size;
    double per_pair;            /* < 0: unavailable, see why               */
    char why[96];
} bench_instr_t;

typedef struct bench_suite {
    bench_opts_t o;
    bench_cell_t *cells;
    int ncells;
    bench_instr_t *instr;
    int ninstr;
    char skipped[MAX_VARIANTS][200]; /* why a variant could not run       */
    double tsc_per_ns, timer_overhead_cyc;
    double started_unix, wall_s;
    int failures;
} bench_suite_t;

/* options.c */
int bench_parse_options(int argc, char **argv, bench_opts_t *o);
int bench_build_cells(bench_suite_t *s);

/* report.c */
void report_cell_table(const bench_suite_t *s, const bench_cell_t *c);
void report_instr_table(const bench_suite_t *s);
int report_json(const bench_suite_t *s, const char *path);
/* Median over runs of a run-level metric; helpers shared with the table. */
double cell_metric_median(const bench_suite_t *s, const bench_cell_t *c, int slot,
                          double (*f)(const bench_result_t *), double *mn, double *mx);
double result_mops(const bench_result_t *r);

#endif
