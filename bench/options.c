/* SPDX-License-Identifier: MIT */
/* Command line and the list of cells it selects; see suite.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suite.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: magpool-bench [options]\n"
"  --workloads LIST   pair,batch-lifo,batch-fifo (batch = both),prodcons,mix,\n"
"                     growth,lat-pair,lat-batch,config  (default: all)\n"
"  --variants LIST    magpool,magpool-handle,mutex,array,glibc,jemalloc,mimalloc,tcmalloc\n"
"  --threads LIST     thread counts (default 1,2,4,8,16)\n"
"  --lat-threads LIST thread counts of the latency workloads (default 1,2,8)\n"
"  --config-threads LIST thread counts of the config sweep (default 1,2,8)\n"
"  --config-mix       the config sweep also runs the mix workload\n"
"  --sizes LIST       block sizes in bytes (default 64,1024)\n"
"  --initial-sweep LIST  initial_blocks values (default 10,1000,10000,100000,1000000)\n"
"  --magazine-sweep LIST magazine_size values (default 16,32,64,128,256,512)\n"
"  --duration S       seconds per time-bound run (default 0.15)\n"
"  --runs N           runs per cell and variant, median reported (default 5)\n"
"  --growth-blocks N  target of the growth workload (default 1000000)\n"
"  --quick            smoke run, < 60 s: 3 runs of 20 ms, threads 1,2,8,\n"
"                     smaller sweeps, growth to 1e5, no callgrind\n"
"  --callgrind / --no-callgrind  instructions per pair (default: when valgrind\n"
"                     exists and not --quick)\n"
"  --instr-pairs N    pairs counted under callgrind (default 1000000)\n"
"  --preload NAME=SO  shared object preloaded for a malloc variant\n"
"  --no-pin           do not pin thread i to CPU i %% ncpu\n"
"  --json FILE        results file (default results/bench-<time>.json)\n");
}

/* Comma-separated unsigned list; returns count or -1. */
static int parse_list(const char *s, size_t *out, int max)
{
    int n = 0;
    char *dup = strdup(s), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        double v = strtod(t, &end); /* accepts 1e6 */
        if (end == t || *end || v < 0 || n == max) {
            free(dup);
            return -1;
        }
        out[n++] = (size_t)v;
    }
    free(dup);
    return n;
}

static int parse_int_list(const char *s, int *out, int max)
{
    size_t tmp[MAX_LIST];
    int n = parse_list(s, tmp, max < MAX_LIST ? max : MAX_LIST);
    for (int i = 0; i < n; i++) {
        if (tmp[i] < 1 || tmp[i] > 1024)
            return -1;
        out[i] = (int)tmp[i];
    }
    return n;
}

static int parse_names(const char *s, bench_opts_t *o, int workloads)
{
    char *dup = strdup(s), *save = NULL;
    int ok = 1;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (workloads && strcmp(t, "config") == 0) {
            o->config_on = 1;
        } else if (workloads && strcmp(t, "batch") == 0) {
            o->workload_on[WL_BATCH_LIFO] = o->workload_on[WL_BATCH_FIFO] = 1;
        } else if (workloads && bench_workload_parse(t) >= 0) {
            o->workload_on[bench_workload_parse(t)] = 1;
        } else if (!workloads && bench_variant_find(t) >= 0) {
            o->variant_on[bench_variant_find(t)] = 1;
        } else {
            fprintf(stderr, "magpool-bench: unknown %s '%s'\n",
                    workloads ? "workload" : "variant", t);
            ok = 0;
        }
    }
    free(dup);
    return ok ? 0 : -1;
}

int bench_parse_options(int argc, char **argv, bench_opts_t *o)
{
    memset(o, 0, sizeof *o);
    int have_w = 0, have_v = 0, have_t = 0, have_s = 0, have_d = 0, have_r = 0, have_g = 0;
    int have_lt = 0, have_ct = 0, have_is = 0, have_ms = 0;
    o->pin = 1;
    o->callgrind = -1;
    o->instr_pairs = 1000000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG                                                               \
    do {                                                                       \
        if (!v) {                                                              \
            fprintf(stderr, "magpool-bench: %s needs a value\n", a);           \
            return -1;                                                         \
        }                                                                      \
        i++;                                                                   \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--no-pin") == 0) {
            o->pin = 0;
        } else if (strcmp(a, "--callgrind") == 0) {
            o->callgrind = 1;
        } else if (strcmp(a, "--no-callgrind") == 0) {
            o->callgrind = 0;
        } else if (strcmp(a, "--workloads") == 0) {
            NEED_ARG;
            have_w = 1;
            if (parse_names(v, o, 1))
                return -1;
        } else if (strcmp(a, "--variants") == 0) {
            NEED_ARG;
            have_v = 1;
            if (parse_names(v, o, 0))
                return -1;
        } else if (strcmp(a, "--threads") == 0) {
            NEED_ARG;
            have_t = 1;
            if ((o->nthreads = parse_int_list(v, o->threads, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--lat-threads") == 0) {
            NEED_ARG;
            have_lt = 1;
            if ((o->nlat_threads = parse_int_list(v, o->lat_threads, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--config-mix") == 0) {
            o->config_mix = 1;
        } else if (strcmp(a, "--config-threads") == 0) {
            NEED_ARG;
            have_ct = 1;
            if ((o->ncfg_threads = parse_int_list(v, o->cfg_threads, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--sizes") == 0) {
            NEED_ARG;
            have_s = 1;
            if ((o->nsizes = parse_list(v, o->sizes, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--initial-sweep") == 0) {
            NEED_ARG;
            have_is = 1;
            if ((o->ninit = parse_list(v, o->init_sweep, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--magazine-sweep") == 0) {
            NEED_ARG;
            have_ms = 1;
            if ((o->nmag = parse_list(v, o->mag_sweep, MAX_LIST)) <= 0)
                goto bad;
        } else if (strcmp(a, "--duration") == 0) {
            NEED_ARG;
            have_d = 1;
            o->duration_s = strtod(v, NULL);
            if (!(o->duration_s > 0 && o->duration_s < 3600))
                goto bad;
        } else if (strcmp(a, "--runs") == 0) {
            NEED_ARG;
            have_r = 1;
            o->runs = atoi(v);
            if (o->runs < 1 || o->runs > 1000)
                goto bad;
        } else if (strcmp(a, "--growth-blocks") == 0) {
            NEED_ARG;
            have_g = 1;
            o->growth_blocks = (size_t)strtod(v, NULL);
            if (o->growth_blocks < 1)
                goto bad;
        } else if (strcmp(a, "--instr-pairs") == 0) {
            NEED_ARG;
            o->instr_pairs = (uint64_t)strtod(v, NULL);
            if (o->instr_pairs < 1)
                goto bad;
        } else if (strcmp(a, "--preload") == 0) {
            NEED_ARG;
            const char *eq = strchr(v, '=');
            char name[64];
            if (!eq || (size_t)(eq - v) >= sizeof name)
                goto bad;
            memcpy(name, v, (size_t)(eq - v));
            name[eq - v] = '\0';
            int k = bench_variant_find(name);
            if (k < 0 || !bench_variants[k].probe)
                goto bad;
            bench_variants[k].preload = eq + 1;
        } else if (strcmp(a, "--json") == 0) {
            NEED_ARG;
            o->json_path = v;
        } else {
            fprintf(stderr, "magpool-bench: unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "magpool-bench: bad value for %s: '%s'\n", a, v);
        return -1;
#undef NEED_ARG
    }
    /* Defaults; --quick only changes what was not given explicitly. */
    if (!have_w) {
        for (int w = 0; w < WL_COUNT; w++)
            o->workload_on[w] = 1;
        o->config_on = 1;
    }
    if (!have_v)
        for (int k = 0; k < bench_nvariants; k++)
            o->variant_on[k] = 1;
    static const int t_full[] = {1, 2, 4, 8, 16}, t_quick[] = {1, 2, 8};
    static const int lt_full[] = {1, 2, 8}, lt_quick[] = {1};
    if (!have_t) {
        o->nthreads = o->quick ? 3 : 5;
        memcpy(o->threads, o->quick ? t_quick : t_full, (size_t)o->nthreads * sizeof(int));
    }
    if (!have_lt) {
        o->nlat_threads = o->quick ? 1 : 3;
        memcpy(o->lat_threads, o->quick ? lt_quick : lt_full, (size_t)o->nlat_threads * sizeof(int));
    }
    if (!have_ct) {
        o->ncfg_threads = o->quick ? 1 : 3;
        memcpy(o->cfg_threads, o->quick ? lt_quick : lt_full, (size_t)o->ncfg_threads * sizeof(int));
    }
    if (!have_s) {
        o->nsizes = 2;
        o->sizes[0] = 64;
        o->sizes[1] = 1024;
    }
    static const size_t is_full[] = {10, 1000, 10000, 100000, 1000000}, is_quick[] = {10, 100000};
    static const size_t ms_full[] = {16, 32, 64, 128, 256, 512}, ms_quick[] = {16, 512};
    if (!have_is) {
        o->ninit = o->quick ? 2 : 5;
        memcpy(o->init_sweep, o->quick ? is_quick : is_full, (size_t)o->ninit * sizeof(size_t));
    }
    if (!have_ms) {
        o->nmag = o->quick ? 2 : 6;
        memcpy(o->mag_sweep, o->quick ? ms_quick : ms_full, (size_t)o->nmag * sizeof(size_t));
    }
    if (!have_d)
        o->duration_s = o->quick ? 0.02 : 0.15;
    if (!have_r)
        o->runs = o->quick ? 3 : 5;
    if (!have_g)
        o->growth_blocks = o->quick ? 100000 : 1000000;
    if (o->callgrind < 0 && o->quick)
        o->callgrind = 0;
    return 0;
}

static bench_cell_t *add_cell(bench_suite_t *s, bench_workload_t w, size_t size, int threads)
{
    bench_cell_t *c = realloc(s->cells, (size_t)(s->ncells + 1) * sizeof *c);
    if (!c)
        return NULL;
    s->cells = c;
    c = &s->cells[s->ncells++];
    memset(c, 0, sizeof *c);
    c->workload = w;
    c->size = size;
    c->threads = threads;
    c->initial_blocks = w == WL_GROWTH ? 0 : SIZE_MAX;
    for (int k = 0; k < bench_nvariants; k++) {
        if (!s->o.variant_on[k] || s->skipped[k][0])
            continue;
        /* The array free list is private to a thread: a block released on
         * another thread is exactly what it cannot do. */
        if (w == WL_PRODCONS && bench_variants[k].kind == KIND_ARRAY)
            continue;
        c->variants[c->nvariants++] = k;
    }
    return c;
}

int bench_build_cells(bench_suite_t *s)
{
    const bench_opts_t *o = &s->o;
    static const bench_workload_t order[] = {WL_PAIR, WL_BATCH_LIFO, WL_BATCH_FIFO, WL_PRODCONS,
                                             WL_MIX, WL_GROWTH, WL_LAT_PAIR, WL_LAT_BATCH};
    for (size_t wi = 0; wi < sizeof order / sizeof order[0]; wi++) {
        bench_workload_t w = order[wi];
        if (!o->workload_on[w])
            continue;
        int lat = w == WL_LAT_PAIR || w == WL_LAT_BATCH;
        const int *ts = lat ? o->lat_threads : o->threads;
        int nt = lat ? o->nlat_threads : o->nthreads;
        for (int si = 0; si < o->nsizes; si++)
            for (int ti = 0; ti < nt; ti++) {
                /* One producer and one consumer per ring: odd counts (1)
                 * have no producer/consumer split. */
                if (w == WL_PRODCONS && (ts[ti] < 2 || ts[ti] % 2))
                    continue;
                if (!add_cell(s, w, o->sizes[si], ts[ti]))
                    return -1;
            }
    }
    int mp = bench_variant_find("magpool");
    if (o->config_on && o->variant_on[mp] && !s->skipped[mp][0]) {
        static const bench_workload_t cw[] = {WL_PAIR, WL_BATCH_LIFO, WL_MIX};
        for (int wi = 0; wi < (o->config_mix ? 3 : 2); wi++)
            for (int si = 0; si < o->nsizes; si++)
                for (int ti = 0; ti < o->ncfg_threads; ti++) {
                    int n = o->ninit + o->nmag;
                    for (int k = 0; k < n; k++) {
                        bench_cell_t *c = add_cell(s, cw[wi], o->sizes[si], o->cfg_threads[ti]);
                        if (!c)
                            return -1;
                        c->config = 1;
                        c->variants[0] = mp;
                        c->nvariants = 1;
                        if (k < o->ninit)
                            c->initial_blocks = o->init_sweep[k];
                        else
                            c->magazine_size = (unsigned)o->mag_sweep[k - o->ninit];
                    }
                }
    }
    for (int i = 0; i < s->ncells; i++) {
        bench_cell_t *c = &s->cells[i];
        c->res = calloc((size_t)c->nvariants * (size_t)o->runs, sizeof *c->res);
        if (!c->res)
            return -1;
    }
    return 0;
}
