/* SPDX-License-Identifier: MIT */
/*
 * bench_objects: ObjectPool and BufferManager workloads against the malloc
 * way of doing the same thing. One process per allocator: run it plainly
 * (glibc), or with LD_PRELOAD=libjemalloc.so.2 / libmimalloc.so.2 to put a
 * peer malloc under the malloc variants (docs/objpool.md, "Benchmarks").
 *
 *   bench_objects [--threads N] [--ops N] [--large-ops N] [--reps N]
 *
 * objects: a 256-byte object whose constructor fills it (memset + fields)
 *          and whose reset clears 2 fields; W = 16 live per thread.
 *   objpool      magpool_objpool_acquire / _release (init once, reset)
 *   malloc+init  malloc, construct, ... , free
 * buffers: F32 buffers, log-uniform 64 B .. 256 KiB, a window of 16 live per
 *          thread replaced at random; the first and last cache line touched.
 *   bufmgr       magpool_bufmgr_get / _release
 *   memalign     posix_memalign(64) / free
 * large:   one 1e6-element float64 buffer (8 MB) got, written once per
 *          4 KiB page (as filling it would fault it in) and released,
 *          --large-ops times per thread (a numpy-style temporary).
 *   bufmgr       magpool_bufmgr_get / _release (size classes up to 256 MiB
 *                since 0.2; before, an mmap + munmap per pair)
 *   memalign     posix_memalign(64) / free (glibc: mmap above its threshold)
 * Prints median Mops/s (one op = one acquire+release pair) over --reps runs;
 * the large rows in Kops/s.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <magpool.h>

#define WIN 16
struct obj { uint64_t id, state; char body[240]; };

static int threads = 1;
static long ops = 2000000;
static long large_ops = 2000;
static int reps = 5;
static magpool_objpool_t *op;
static magpool_bufmgr_t *bm;
static pthread_barrier_t bar;

static int o_init(void *p, void *ctx) { (void)ctx; memset(p, 0, sizeof(struct obj)); ((struct obj *)p)->id = 1; return 0; }
static void o_reset(void *p, void *ctx) { (void)ctx; struct obj *o = p; o->state = 0; o->body[0] = 0; }

static inline uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

enum wl { W_OBJPOOL, W_MALLOC_INIT, W_BUFMGR, W_MEMALIGN, W_LARGE_BUFMGR, W_LARGE_MEMALIGN,
          W_COUNT };
static const char *wl_name[] = {"objects/objpool", "objects/malloc+init", "buffers/bufmgr",
                                "buffers/memalign", "large/bufmgr", "large/memalign"};

#define LARGE_COUNT 1000000 /* float64 elements: 8 MB */

/* One 8 MB temporary: got, one store per page, released. */
static void large_pairs(enum wl w)
{
    for (long i = 0; i < large_ops; i++) {
        double *a;
        if (w == W_LARGE_BUFMGR) {
            a = magpool_bufmgr_get(bm, LARGE_COUNT, MAGPOOL_F64);
        } else {
            void *v;
            a = posix_memalign(&v, 64, LARGE_COUNT * sizeof *a) == 0 ? v : NULL;
        }
        if (a == NULL) {
            fprintf(stderr, "bench_objects: %s: out of memory\n", wl_name[w]);
            exit(1);
        }
        for (size_t k = 0; k < LARGE_COUNT; k += 4096 / sizeof *a)
            a[k] = (double)i;
        a[LARGE_COUNT - 1] = (double)i;
        if (w == W_LARGE_BUFMGR)
            magpool_bufmgr_release(bm, a);
        else
            free(a);
    }
}

static void *run(void *arg)
{
    enum wl w = (enum wl)(intptr_t)arg;
    void *live[WIN] = {0};
    size_t sz[WIN] = {0};
    uint64_t seed = (uint64_t)(uintptr_t)&live | 1;
    pthread_barrier_wait(&bar);
    if (w == W_LARGE_BUFMGR || w == W_LARGE_MEMALIGN) {
        large_pairs(w);
        return NULL;
    }
    for (long i = 0; i < ops; i++) {
        unsigned k = (unsigned)(rnd(&seed) % WIN);
        switch (w) {
        case W_OBJPOOL:
            if (live[k]) magpool_objpool_release(op, live[k]);
            live[k] = magpool_objpool_acquire(op);
            ((struct obj *)live[k])->state = (uint64_t)i;
            break;
        case W_MALLOC_INIT:
            free(live[k]);
            live[k] = malloc(sizeof(struct obj));
            o_init(live[k], NULL);
            ((struct obj *)live[k])->state = (uint64_t)i;
            break;
        case W_LARGE_BUFMGR:
        case W_LARGE_MEMALIGN:
        case W_COUNT:
            break;
        case W_BUFMGR:
        case W_MEMALIGN: {
            uint64_t r = rnd(&seed);
            size_t bytes = (size_t)64 << (r % 13); /* 64 B .. 256 KiB */
            bytes += (r >> 8) % bytes;
            size_t count = bytes / 4;
            if (w == W_BUFMGR) {
                if (live[k]) magpool_bufmgr_release(bm, live[k]);
                live[k] = magpool_bufmgr_get(bm, count, MAGPOOL_F32);
            } else {
                free(live[k]);
                if (posix_memalign(&live[k], 64, count * 4) != 0) live[k] = NULL;
            }
            float *f = live[k];
            f[0] = 1.0f;
            f[count - 1] = 2.0f;
            sz[k] = count;
            break;
        }
        }
    }
    for (int k = 0; k < WIN; k++) {
        if (!live[k]) continue;
        if (w == W_OBJPOOL) magpool_objpool_release(op, live[k]);
        else if (w == W_BUFMGR) magpool_bufmgr_release(bm, live[k]);
        else free(live[k]);
    }
    (void)sz;
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ops")) ops = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--large-ops")) large_ops = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--ops N] [--large-ops N] [--reps N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    const char *malloc_name = dlsym(RTLD_DEFAULT, "mallctl") ? "jemalloc"
                            : dlsym(RTLD_DEFAULT, "mi_version") ? "mimalloc"
                            : dlsym(RTLD_DEFAULT, "tc_version") ? "tcmalloc" : "glibc";
    magpool_objpool_config_t cfg = { .obj_size = sizeof(struct obj), .initial_objects = 64,
                                     .init = o_init, .reset = o_reset };
    printf("# bench_objects: malloc=%s threads=%d ops/thread=%ld large-ops/thread=%ld reps=%d "
           "(median Mops/s; large/*: Kops/s)\n", malloc_name, threads, ops, large_ops, reps);
    for (int w = 0; w < W_COUNT; w++) {
        bool large = w == W_LARGE_BUFMGR || w == W_LARGE_MEMALIGN;
        double *r = calloc((size_t)reps, sizeof *r);
        for (int rep = 0; rep < reps; rep++) {
            op = magpool_objpool_create(&cfg);
            bm = magpool_bufmgr_create(0);
            pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
            pthread_t *t = calloc((size_t)threads, sizeof *t);
            for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, run, (void *)(intptr_t)w);
            double t0 = now();
            pthread_barrier_wait(&bar);
            for (int i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
            r[rep] = (double)(large ? large_ops : ops) * threads / (now() - t0) /
                     (large ? 1e3 : 1e6);
            pthread_barrier_destroy(&bar);
            free(t);
            magpool_objpool_destroy(op);
            magpool_bufmgr_destroy(bm);
        }
        qsort(r, (size_t)reps, sizeof *r, cmpd);
        const char *who = (w == W_MALLOC_INIT || w == W_MEMALIGN || w == W_LARGE_MEMALIGN)
                          ? malloc_name : "magpool";
        printf("%-22s %-9s %8.2f\n", wl_name[w], who, r[reps / 2]);
        free(r);
    }
    return 0;
}
