/* SPDX-License-Identifier: MIT */
/*
 * magpool-bench: the driver. Parses options, checks which allocators are
 * usable, then measures every cell run by run: for run i, every variant of
 * the cell runs once, back to back, each in a fresh child process (see
 * bench.h). Prints a table per cell on stdout, a progress line on stderr,
 * and writes one JSON file for the whole run.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"
#include "timing.h"

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_dur(double s, char *buf, size_t len)
{
    if (s < 0 || s != s)
        snprintf(buf, len, "?");
    else if (s < 60)
        snprintf(buf, len, "%.0fs", s);
    else
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
}

/* A progress line on stderr: rewritten in place on a terminal; in a log
 * file, one line every few seconds instead of thousands. */
static void progress(const bench_suite_t *s, const bench_cell_t *c, int variant, int run,
                     long done, long total, double t0)
{
    static double last;
    static int tty = -1;
    if (tty < 0)
        tty = isatty(2);
    double now = wall_now();
    if (!tty && now - last < 5 && done < total)
        return;
    last = now;
    double el = now - t0;
    char e[16], eta[16];
    fmt_dur(el, e, sizeof e);
    fmt_dur(done ? el / (double)done * (double)(total - done) : -1, eta, sizeof eta);
    fprintf(stderr, "%s[%3.0f%%] %ld/%ld  %-10s %5zu B  t=%-2d %-9s run %d/%d  elapsed %s  eta %s%s",
            tty ? "\r\033[K" : "", 100.0 * (double)done / (double)total, done, total,
            bench_workload_name(c->workload), c->size, c->threads,
            bench_variants[variant].name, run + 1, s->o.runs, e, eta, tty ? "" : "\n");
}

static void params_for(const bench_suite_t *s, const bench_cell_t *c, int variant,
                       bench_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->workload = c->workload;
    p->variant = variant;
    p->block_size = c->size;
    p->threads = c->threads;
    p->duration_s = s->o.duration_s;
    p->growth_blocks = s->o.growth_blocks;
    p->initial_blocks = c->initial_blocks;
    p->magazine_size = c->magazine_size;
    p->pin = s->o.pin;
    p->tsc_per_ns = s->tsc_per_ns;
    p->timer_overhead_cyc = s->timer_overhead_cyc;
}

/* A tiny run per variant before the suite: a peer allocator whose preload
 * fails (package missing) is dropped with the reason, instead of failing
 * every one of its cells. */
static void preflight(bench_suite_t *s, const char *self)
{
    for (int k = 0; k < bench_nvariants; k++) {
        if (!s->o.variant_on[k])
            continue;
        bench_cell_t c = {.workload = WL_PAIR, .size = 64, .threads = 1,
                          .initial_blocks = SIZE_MAX};
        bench_params_t p;
        params_for(s, &c, k, &p);
        p.duration_s = 0.001;
        bench_result_t r;
        /* Only a variant that cannot start is dropped; one that starts and
         * then fails a check stays in, so the failure shows in its cells. */
        if (bench_spawn(self, &p, &r) != 0 && !r.ran) {
            snprintf(s->skipped[k], sizeof s->skipped[k], "%s", r.error);
            fprintf(stderr, "magpool-bench: variant %s skipped: %s\n", bench_variants[k].name,
                    r.error);
        }
    }
}

static void measure_instructions(bench_suite_t *s, const char *self)
{
    int want = s->o.callgrind;
    if (want == 0)
        return;
    if (!bench_have_valgrind()) {
        fprintf(stderr, "magpool-bench: valgrind not found: no instruction counts\n");
        return;
    }
    s->instr = calloc((size_t)(bench_nvariants * s->o.nsizes), sizeof *s->instr);
    if (!s->instr)
        return;
    for (int si = 0; si < s->o.nsizes; si++)
        for (int k = 0; k < bench_nvariants; k++) {
            if (!s->o.variant_on[k] || s->skipped[k][0])
                continue;
            bench_cell_t c = {.workload = WL_PAIR, .size = s->o.sizes[si], .threads = 1,
                              .initial_blocks = SIZE_MAX};
            bench_params_t p;
            params_for(s, &c, k, &p);
            p.instr_pairs = s->o.instr_pairs;
            bench_instr_t *x = &s->instr[s->ninstr++];
            x->variant = k;
            x->size = c.size;
            fprintf(stderr, "%scallgrind: %s %zu B%s", isatty(2) ? "\r\033[K" : "",
                    bench_variants[k].name, c.size, isatty(2) ? "" : "\n");
            x->per_pair = bench_instructions(self, &p, x->why, sizeof x->why);
        }
    if (isatty(2))
        fprintf(stderr, "\n");
}

static int mkdir_p_parent(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *q = buf + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *q = '/';
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return bench_child_main(argc - 2, argv + 2);

    static bench_suite_t s;
    if (bench_parse_options(argc, argv, &s.o) != 0)
        return 2;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("magpool-bench: /proc/self/exe");
        return 2;
    }
    self[n] = '\0';

    char defpath[128];
    if (!s.o.json_path) {
        time_t t = time(NULL);
        strftime(defpath, sizeof defpath, "results/bench-%Y%m%d-%H%M%S.json", localtime(&t));
        s.o.json_path = defpath;
    }

    s.started_unix = wall_now();
    s.tsc_per_ns = timing_tsc_per_ns();
    s.timer_overhead_cyc = timing_overhead_ticks();
    printf("magpool-bench: %d CPUs, TSC %.3f GHz, timer overhead %.1f ns (subtracted from "
           "latencies), %d runs x %.3f s, threads %s\n",
           timing_ncpu(), s.tsc_per_ns, s.timer_overhead_cyc / s.tsc_per_ns, s.o.runs,
           s.o.duration_s, s.o.pin ? "pinned to CPU i % ncpu" : "not pinned");

    preflight(&s, self);
    if (bench_build_cells(&s) != 0) {
        fprintf(stderr, "magpool-bench: out of memory\n");
        return 2;
    }
    long total = 0, done = 0;
    for (int i = 0; i < s.ncells; i++)
        total += (long)s.cells[i].nvariants * s.o.runs;

    double t0 = wall_now();
    for (int i = 0; i < s.ncells; i++) {
        bench_cell_t *c = &s.cells[i];
        for (int r = 0; r < s.o.runs; r++)
            for (int k = 0; k < c->nvariants; k++) {
                progress(&s, c, c->variants[k], r, done, total, t0);
                bench_params_t p;
                params_for(&s, c, c->variants[k], &p);
                bench_result_t *res = &c->res[(size_t)k * (size_t)s.o.runs + (size_t)r];
                if (bench_spawn(self, &p, res) != 0) {
                    s.failures++;
                    if (isatty(2))
                        fprintf(stderr, "\n");
                    fprintf(stderr, "magpool-bench: %s %zu B t=%d %s run %d: %s\n",
                            bench_workload_name(c->workload), c->size, c->threads,
                            bench_variants[c->variants[k]].name, r + 1, res->error);
                }
                done++;
            }
        if (isatty(2))
            fprintf(stderr, "\r\033[K");
        report_cell_table(&s, c);
    }
    measure_instructions(&s, self);
    report_instr_table(&s);
    s.wall_s = wall_now() - s.started_unix;

    if (mkdir_p_parent(s.o.json_path) != 0 || report_json(&s, s.o.json_path) != 0) {
        fprintf(stderr, "magpool-bench: cannot write %s: %s\n", s.o.json_path, strerror(errno));
        return 2;
    }
    char w[16];
    fmt_dur(s.wall_s, w, sizeof w);
    printf("\nresults: %s (%d failed runs, %s)\n", s.o.json_path, s.failures, w);
    fprintf(stderr, "magpool-bench: done in %s, %d failed runs, results in %s\n", w,
            s.failures, s.o.json_path);
    return s.failures ? 1 : 0;
}
