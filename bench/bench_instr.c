/* SPDX-License-Identifier: MIT */
/*
 * bench_instr — the fast path's price in instructions, exactly.
 *
 * Two regions, each a noinline function that callgrind counts alone
 * (--toggle-collect), after a warm-up outside them:
 *   pair      N acquire+release pairs of one block (the magazine fast path)
 *   batch512  N/512 rounds of 512 acquires then 512 releases: every round
 *             visits the depot (M = 256 for 64-byte blocks), so the depot
 *             path and its epoch read sections are in the count
 *   hpair     as pair, through the thread's handle (magpool_cache_get once)
 * Printed as instructions per pair by scripts/instr.sh, which runs this
 * program under callgrind. Public API only, so the same file measures any
 * earlier commit (docs/benchmarks.md, "Instructions per pair").
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

#define BATCH 512

static void *sink[BATCH];

__attribute__((noinline)) void bench_instr_region_pair(magpool_t *p, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *b = magpool_acquire(p);
        __asm__ volatile("" : : "r"(b) : "memory");
        magpool_release(p, b);
    }
}

__attribute__((noinline)) void bench_instr_region_hpair(magpool_cache_t *c, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *b = magpool_cache_acquire(c);
        __asm__ volatile("" : : "r"(b) : "memory");
        magpool_cache_release(c, b);
    }
}

/* BufferManager: get + release of 100 float64 (the 896-byte class), the
 * layer's fast path on top of the pool's (page map, header, epoch section). */
__attribute__((noinline)) void bench_instr_region_bmpair(magpool_bufmgr_t *bm, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *b = magpool_bufmgr_get(bm, 100, MAGPOOL_F64);
        __asm__ volatile("" : : "r"(b) : "memory");
        magpool_bufmgr_release(bm, b);
    }
}

__attribute__((noinline)) void bench_instr_region_batch512(magpool_t *p, unsigned long n)
{
    for (unsigned long r = 0; r < n / BATCH; r++) {
        for (int i = 0; i < BATCH; i++)
            sink[i] = magpool_acquire(p);
        __asm__ volatile("" : : : "memory");
        for (int i = 0; i < BATCH; i++)
            magpool_release(p, sink[i]);
    }
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "pair";
    unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
    if (strcmp(which, "bmpair") == 0) {
        magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
        if (bm == NULL)
            return 2;
        bench_instr_region_bmpair(bm, 10000); /* warm-up: class pool, cache, page map */
        bench_instr_region_bmpair(bm, n);
        magpool_bufmgr_destroy(bm);
        return 0;
    }
    magpool_config_t c = magpool_config_default(64);
    c.initial_blocks = 4096;
    magpool_t *p = magpool_create(&c);
    if (p == NULL)
        return 2;
    bool batch = strcmp(which, "batch512") == 0;
    /* warm-up: the cache, the depot's magazines and the pages exist */
    if (batch)
        bench_instr_region_batch512(p, 16 * BATCH);
    else
        bench_instr_region_pair(p, 10000);
    if (strcmp(which, "hpair") == 0) {
        magpool_cache_t *c = magpool_cache_get(p);
        if (c == NULL)
            return 2;
        bench_instr_region_hpair(c, n);
    } else if (batch) {
        bench_instr_region_batch512(p, n);
    } else {
        bench_instr_region_pair(p, n);
    }
    magpool_destroy(p);
    return 0;
}
