/* SPDX-License-Identifier: MIT */
/*
 * Summaries: the human table on stdout and the JSON results file.
 *
 * Throughput is reported as the median over runs with min and max (the
 * machine is noisy; the median is what we compare, min..max shows how
 * much to trust it). Ratios against magpool are computed run by run: run i
 * of every variant in a cell was measured back to back, so magpool_i / x_i
 * cancels slow drifts of the machine; we report the median of those.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_version.h"
#include "json.h"
#include "magpool.h"
#include "stats.h"
#include "suite.h"
#include "sysinfo.h"
#include "timing.h"

double result_mops(const bench_result_t *r)
{
    return r->elapsed_ns > 0 ? (double)r->ops / r->elapsed_ns * 1e3 : NAN;
}
static double result_ns_per_op(const bench_result_t *r)
{
    return r->ops ? r->elapsed_ns / (double)r->ops : NAN;
}
static double result_minflt(const bench_result_t *r) { return (double)r->minflt; }
static double result_rss_mb(const bench_result_t *r) { return (double)r->rss_peak_kb / 1024.0; }
static double result_acq_ns(const bench_result_t *r)
{
    return r->ops ? r->acquire_phase_ns / (double)r->ops : NAN;
}

static const bench_result_t *res_at(const bench_suite_t *s, const bench_cell_t *c, int slot,
                                    int run)
{
    return &c->res[(size_t)slot * (size_t)s->o.runs + (size_t)run];
}

double cell_metric_median(const bench_suite_t *s, const bench_cell_t *c, int slot,
                          double (*f)(const bench_result_t *), double *mn, double *mx)
{
    double v[1024];
    int n = 0;
    for (int r = 0; r < s->o.runs && n < 1024; r++) {
        const bench_result_t *x = res_at(s, c, slot, r);
        if (x->ok)
            v[n++] = f(x);
    }
    if (mn)
        *mn = stats_min(v, (size_t)n);
    if (mx)
        *mx = stats_max(v, (size_t)n);
    return stats_median(v, (size_t)n);
}

static int slot_of(const bench_cell_t *c, const char *name)
{
    int k = bench_variant_find(name);
    for (int i = 0; i < c->nvariants; i++)
        if (c->variants[i] == k)
            return i;
    return -1;
}

/* Median over runs of magpool_i / variant_i (throughput ratio > 1: magpool
 * faster). NaN when either side has no good run. */
static double run_ratio(const bench_suite_t *s, const bench_cell_t *c, int slot)
{
    int m = slot_of(c, "magpool");
    if (m < 0)
        return NAN;
    double v[1024];
    int n = 0;
    for (int r = 0; r < s->o.runs && n < 1024; r++) {
        const bench_result_t *a = res_at(s, c, m, r), *b = res_at(s, c, slot, r);
        if (a->ok && b->ok && result_mops(b) > 0)
            v[n++] = result_mops(a) / result_mops(b);
    }
    return stats_median(v, (size_t)n);
}

/* Latency quantile q: median over runs, except the maximum, which is the
 * maximum over runs (a median of maxima would hide the worst case). */
static double lat_q(const bench_suite_t *s, const bench_cell_t *c, int slot, int q, int release)
{
    double v[1024];
    int n = 0;
    for (int r = 0; r < s->o.runs && n < 1024; r++) {
        const bench_result_t *x = res_at(s, c, slot, r);
        if (x->ok && x->have_latency)
            v[n++] = release ? x->lat_release_ns[q] : x->lat_acquire_ns[q];
    }
    return q == Q_MAX ? stats_max(v, (size_t)n) : stats_median(v, (size_t)n);
}

static void cell_title(const bench_cell_t *c, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s  %zu B  %d thread%s", bench_workload_name(c->workload),
                     c->size, c->threads, c->threads == 1 ? "" : "s");
    if (c->config) {
        if (c->initial_blocks != SIZE_MAX)
            snprintf(buf + n, len - (size_t)n, "  [config: initial_blocks %zu]",
                     c->initial_blocks);
        else
            snprintf(buf + n, len - (size_t)n, "  [config: magazine_size %u]", c->magazine_size);
    }
}

void report_cell_table(const bench_suite_t *s, const bench_cell_t *c)
{
    char title[160];
    cell_title(c, title, sizeof title);
    printf("\n== %s ==\n", title);
    int lat = c->workload == WL_LAT_PAIR || c->workload == WL_LAT_BATCH;
    if (lat)
        printf("%-14s %8s %8s %8s %9s | %8s %8s %8s %9s   (ns, acquire | release)\n", "variant",
               "p50", "p99", "p99.9", "max", "p50", "p99", "p99.9", "max");
    else
        printf("%-14s %9s %21s %8s %8s %8s %10s%s\n", "variant", "Mops/s", "[min .. max]",
               "ns/op", "minflt", "RSS MB", "magpool/x",
               c->workload == WL_GROWTH ? "  acq ns/blk" : "");
    for (int i = 0; i < c->nvariants; i++) {
        const char *name = bench_variants[c->variants[i]].name;
        int good = 0;
        const char *err = "";
        for (int r = 0; r < s->o.runs; r++) {
            good += res_at(s, c, i, r)->ok;
            if (!res_at(s, c, i, r)->ok)
                err = res_at(s, c, i, r)->error;
        }
        if (!good) {
            printf("%-14s FAILED: %s\n", name, err);
            continue;
        }
        if (lat) {
            printf("%-14s %8.1f %8.1f %8.1f %9.0f | %8.1f %8.1f %8.1f %9.0f\n", name,
                   lat_q(s, c, i, Q_P50, 0), lat_q(s, c, i, Q_P99, 0), lat_q(s, c, i, Q_P999, 0),
                   lat_q(s, c, i, Q_MAX, 0), lat_q(s, c, i, Q_P50, 1), lat_q(s, c, i, Q_P99, 1),
                   lat_q(s, c, i, Q_P999, 1), lat_q(s, c, i, Q_MAX, 1));
        } else {
            double mn, mx;
            double m = cell_metric_median(s, c, i, result_mops, &mn, &mx);
            printf("%-14s %9.2f   [%7.2f .. %7.2f] %8.2f %8.0f %8.1f %10.2f", name, m, mn, mx,
                   cell_metric_median(s, c, i, result_ns_per_op, NULL, NULL),
                   cell_metric_median(s, c, i, result_minflt, NULL, NULL),
                   cell_metric_median(s, c, i, result_rss_mb, NULL, NULL), run_ratio(s, c, i));
            if (c->workload == WL_GROWTH)
                printf("  %9.1f", cell_metric_median(s, c, i, result_acq_ns, NULL, NULL));
            printf("\n");
        }
        if (good < s->o.runs)
            printf("               (%d of %d runs failed: %s)\n", s->o.runs - good, s->o.runs, err);
    }
    fflush(stdout);
}

void report_instr_table(const bench_suite_t *s)
{
    if (!s->ninstr)
        return;
    printf("\n== instructions per acquire+release pair, 1 thread (callgrind) ==\n");
    for (int i = 0; i < s->ninstr; i++) {
        const bench_instr_t *x = &s->instr[i];
        if (x->per_pair >= 0)
            printf("%-14s %5zu B %8.1f\n", bench_variants[x->variant].name, x->size, x->per_pair);
        else
            printf("%-14s %5zu B   unavailable: %s\n", bench_variants[x->variant].name, x->size,
                   x->why);
    }
    fflush(stdout);
}

static void json_stat(json_t *j, const char *key, const bench_suite_t *s, const bench_cell_t *c,
                      int slot, double (*f)(const bench_result_t *))
{
    double mn, mx, m = cell_metric_median(s, c, slot, f, &mn, &mx);
    json_obj_begin(j, key);
    json_num(j, "median", m);
    json_num(j, "min", mn);
    json_num(j, "max", mx);
    json_obj_end(j);
}

static void json_latency(json_t *j, const char *key, const bench_suite_t *s,
                         const bench_cell_t *c, int slot, int release)
{
    json_obj_begin(j, key);
    json_num(j, "p50", lat_q(s, c, slot, Q_P50, release));
    json_num(j, "p99", lat_q(s, c, slot, Q_P99, release));
    json_num(j, "p99.9", lat_q(s, c, slot, Q_P999, release));
    json_num(j, "max", lat_q(s, c, slot, Q_MAX, release));
    json_arr_begin(j, "cdf"); /* [quantile, ns] */
    for (int q = 0; q < BENCH_NQ; q++) {
        json_arr_begin(j, NULL);
        json_num(j, NULL, bench_quantiles[q]);
        json_num(j, NULL, lat_q(s, c, slot, q, release));
        json_arr_end(j);
    }
    json_arr_end(j);
    json_obj_end(j);
}

static void json_result(json_t *j, const bench_suite_t *s, const bench_cell_t *c, int slot)
{
    const bench_variant_t *v = &bench_variants[c->variants[slot]];
    json_obj_begin(j, NULL);
    json_str(j, "workload", bench_workload_name(c->workload));
    json_str(j, "group", c->config ? "config" : "main");
    json_str(j, "variant", v->name);
    json_int(j, "size", (long long)c->size);
    json_int(j, "threads", c->threads);
    if (c->initial_blocks == SIZE_MAX)
        json_str(j, "initial_blocks", "default");
    else
        json_int(j, "initial_blocks", (long long)c->initial_blocks);
    json_int(j, "magazine_size", c->magazine_size);
    int good = 0;
    const char *err = NULL;
    for (int r = 0; r < s->o.runs; r++) {
        good += res_at(s, c, slot, r)->ok;
        if (!res_at(s, c, slot, r)->ok)
            err = res_at(s, c, slot, r)->error;
    }
    json_int(j, "runs_ok", good);
    json_int(j, "runs", s->o.runs);
    json_str(j, "error", err);
    json_stat(j, "mops", s, c, slot, result_mops);
    json_stat(j, "ns_per_op", s, c, slot, result_ns_per_op);
    json_stat(j, "minflt", s, c, slot, result_minflt);
    json_stat(j, "rss_peak_mb", s, c, slot, result_rss_mb);
    if (c->workload == WL_GROWTH)
        json_stat(j, "acquire_ns_per_block", s, c, slot, result_acq_ns);
    json_num(j, "magpool_over_this", run_ratio(s, c, slot));
    json_arr_begin(j, "mops_runs");
    for (int r = 0; r < s->o.runs; r++)
        json_num(j, NULL, res_at(s, c, slot, r)->ok ? result_mops(res_at(s, c, slot, r)) : NAN);
    json_arr_end(j);
    if (c->workload == WL_LAT_PAIR || c->workload == WL_LAT_BATCH) {
        json_obj_begin(j, "latency_ns");
        json_latency(j, "acquire", s, c, slot, 0);
        json_latency(j, "release", s, c, slot, 1);
        json_obj_end(j);
    }
    /* The last good run's pool counters: they explain the speed (depot
     * trips per block, growth events). */
    for (int r = s->o.runs - 1; r >= 0; r--) {
        const bench_result_t *x = res_at(s, c, slot, r);
        if (!x->ok || !x->have_pool_stats)
            continue;
        json_obj_begin(j, "pool_stats");
        json_int(j, "acquires", (long long)x->pool_acquires);
        json_int(j, "releases", (long long)x->pool_releases);
        json_int(j, "hits", (long long)x->pool_hits);
        json_int(j, "misses", (long long)x->pool_misses);
        json_int(j, "grows", (long long)x->pool_grows);
        json_int(j, "depot_gets", (long long)x->pool_depot_gets);
        json_int(j, "depot_puts", (long long)x->pool_depot_puts);
        json_int(j, "steals", (long long)x->pool_steals);
        json_int(j, "bytes_reserved", (long long)x->pool_bytes_reserved);
        json_int(j, "blocks_total", (long long)x->pool_blocks_total);
        json_obj_end(j);
        break;
    }
    json_obj_end(j);
}

static void json_machine(json_t *j, const bench_suite_t *s)
{
    char buf[256];
    json_obj_begin(j, "machine");
    json_int(j, "nproc", timing_ncpu());
    sysinfo_cpu_model(buf, sizeof buf);
    json_str(j, "cpu_model", buf);
    sysinfo_kernel(buf, sizeof buf);
    json_str(j, "kernel", buf);
    json_num(j, "tsc_ghz", s->tsc_per_ns);
    json_num(j, "timer_overhead_ns", s->timer_overhead_cyc / s->tsc_per_ns);
    json_obj_end(j);

    json_obj_begin(j, "versions");
    json_str(j, "compiler", "gcc " __VERSION__);
    sysinfo_pkg_version("gcc-12", buf, sizeof buf);
    json_str(j, "gcc_package", buf);
    json_str(j, "magpool", magpool_version());
    /* "<sha>" or "<sha>-dirty", or "unknown" outside a git checkout. */
    const char *desc = BENCH_GIT_DESCRIBE;
    size_t dl = strlen(desc);
    int dirty = dl > 6 && strcmp(desc + dl - 6, "-dirty") == 0;
    snprintf(buf, sizeof buf, "%.*s", (int)(dirty ? dl - 6 : dl), desc);
    json_str(j, "git_commit", buf);
    json_bool(j, "git_dirty", dirty);
    json_obj_begin(j, "packages");
    for (int k = 0; k < bench_nvariants; k++) {
        if (!bench_variants[k].package)
            continue;
        sysinfo_pkg_version(bench_variants[k].package, buf, sizeof buf);
        json_str(j, bench_variants[k].package, buf);
    }
    sysinfo_pkg_version("valgrind", buf, sizeof buf);
    json_str(j, "valgrind", buf);
    json_obj_end(j);
    json_obj_end(j);
}

int report_json(const bench_suite_t *s, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    json_t j;
    json_init(&j, f);
    json_obj_begin(&j, NULL);
    json_str(&j, "schema", "magpool-bench/1");
    char when[64];
    time_t t = (time_t)s->started_unix;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_str(&j, "started", when);
    json_num(&j, "wall_s", s->wall_s);
    json_machine(&j, s);

    json_obj_begin(&j, "options");
    json_bool(&j, "quick", s->o.quick);
    json_num(&j, "duration_s", s->o.duration_s);
    json_int(&j, "runs", s->o.runs);
    json_int(&j, "growth_blocks", (long long)s->o.growth_blocks);
    json_bool(&j, "pinned", s->o.pin);
    json_int(&j, "batch_n", BATCH_N);
    json_obj_end(&j);

    json_obj_begin(&j, "variants");
    for (int k = 0; k < bench_nvariants; k++) {
        if (!s->o.variant_on[k])
            continue;
        json_obj_begin(&j, bench_variants[k].name);
        json_str(&j, "preload", bench_variants[k].preload);
        json_str(&j, "skipped", s->skipped[k][0] ? s->skipped[k] : NULL);
        json_obj_end(&j);
    }
    json_obj_end(&j);

    json_arr_begin(&j, "results");
    for (int i = 0; i < s->ncells; i++)
        for (int k = 0; k < s->cells[i].nvariants; k++)
            json_result(&j, s, &s->cells[i], k);
    json_arr_end(&j);

    json_arr_begin(&j, "instructions");
    for (int i = 0; i < s->ninstr; i++) {
        json_obj_begin(&j, NULL);
        json_str(&j, "variant", bench_variants[s->instr[i].variant].name);
        json_int(&j, "size", (long long)s->instr[i].size);
        json_num(&j, "per_pair", s->instr[i].per_pair >= 0 ? s->instr[i].per_pair : NAN);
        json_str(&j, "unavailable", s->instr[i].per_pair >= 0 ? NULL : s->instr[i].why);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_int(&j, "failures", s->failures);
    json_obj_end(&j);
    return fclose(f);
}
