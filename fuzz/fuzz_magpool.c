/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: random operation sequences over the public API.
 *
 * The input is a byte program. The first bytes choose up to three pools
 * (block size, alignment, cap, backend, CHECKED); the rest is a sequence of
 * opcodes: acquire, release, release of a bad pointer (double / foreign /
 * misaligned / other pool's, only on CHECKED pools, where it must be
 * reported, never crash and never change the stats), trim, clear, stats
 * (whose invariants are checked), leak report, thread flush, destroy and
 * re-create. Opcode bit 4 sends acquires, releases and double releases
 * through the thread's per-thread handle of the pool (magpool_cache_get), so
 * plain and handle calls interleave on the same caches; opcode 15 with it
 * checks that the handle stays the same. Every block handed out is filled
 * with a tag and checked before release, so a block handed out twice is
 * found. Everything is released and
 * destroyed at the end: the ASan leak checker sees no leak.
 *
 * Build and run: scripts/fuzz.sh (see docs/diagnostics.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

#define NPOOLS 3
#define NHELD 256

struct held {
    unsigned char *b;
    uint8_t tag;
};

struct fpool {
    magpool_t *p;
    magpool_cache_t *c;    /* this thread's handle of p */
    magpool_config_t cfg;
    struct held h[NHELD];
    size_t n;
    uint64_t bad;          /* misuse reports we provoked */
};

static uint64_t reports;

static void count_report(const magpool_error_t *e, void *ctx)
{
    (void)ctx;
    if (e->kind != MAGPOOL_ERR_LEAK && e->pool_name == NULL)
        abort();
    reports++;
}

struct in {
    const uint8_t *d;
    size_t n, i;
};

static unsigned get(struct in *in)
{
    return in->i < in->n ? in->d[in->i++] : 0;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_magpool: %s\n", what);
    abort();
}

static void check_stats(struct fpool *f)
{
    magpool_stats_t s;
    if (magpool_get_stats(f->p, &s) != 0)
        die("get_stats failed");
    if (s.acquires - s.releases != s.blocks_outstanding)
        die("acquires - releases != outstanding");
    if (s.blocks_outstanding != f->n)
        die("outstanding != blocks we hold");
    if (s.hits + s.misses != s.acquires)
        die("hits + misses != acquires");
    if (f->cfg.max_blocks && s.blocks_outstanding > f->cfg.max_blocks)
        die("cap exceeded");
}

static void make(struct fpool *f, struct in *in)
{
    static const size_t sizes[] = { 1, 8, 16, 24, 48, 64, 100, 256, 1000, 4096 };
    magpool_config_t c = magpool_config_default(sizes[get(in) % 10]);
    c.align = (size_t)1 << (get(in) % 8);       /* 1 .. 128 */
    c.initial_blocks = get(in) % 40;
    c.max_blocks = get(in) % 3 == 0 ? 0 : c.initial_blocks + get(in) % 100;
    c.grow_factor = 1.25 + (get(in) % 4) * 0.5;
    c.magazine_size = get(in) % 2 ? 0 : 1 + get(in) % 16;
    unsigned k = get(in);
    c.backend = (k & 1) ? MAGPOOL_MUTEX : MAGPOOL_LOCKFREE;
    c.flags = (k & 2) ? MAGPOOL_CHECKED : 0;
    f->cfg = c;
    f->n = 0;
    f->p = magpool_create(&c);
    if (f->p == NULL)
        die("create failed");
    char name[32];
    snprintf(name, sizeof name, "fuzz%u", k & 0xff);
    magpool_set_name(f->p, name);
    f->c = magpool_cache_get(f->p);
    if (f->c == NULL)
        die("cache_get failed");
}

static void release_one(struct fpool *f, size_t i, bool via_handle)
{
    struct held *h = &f->h[i];
    size_t bs = f->cfg.block_size;
    for (size_t j = 0; j < bs; j++)
        if (h->b[j] != (uint8_t)(h->tag + j))
            die("block content changed while held: handed out twice?");
    if (via_handle)
        magpool_cache_release(f->c, h->b);
    else
        magpool_release(f->p, h->b);
    f->h[i] = f->h[--f->n];
}

static void drop(struct fpool *f)
{
    while (f->n)
        release_one(f, f->n - 1, f->n % 2);
    magpool_destroy(f->p);
    f->p = NULL;
    f->c = NULL; /* invalid with its pool */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    magpool_set_error_handler(count_report, NULL);
    struct in in = { data, size, 0 };
    struct fpool pools[NPOOLS];
    memset(pools, 0, sizeof pools);
    for (int i = 0; i < NPOOLS; i++)
        make(&pools[i], &in);
    static char foreign[64];
    for (unsigned steps = 0; in.i < in.n && steps < 4096; steps++) {
        unsigned op = get(&in);
        struct fpool *f = &pools[(op >> 5) % NPOOLS];
        struct fpool *g = &pools[((op >> 5) + 1) % NPOOLS];
        bool checked = (f->cfg.flags & MAGPOOL_CHECKED) != 0;
        bool via_handle = (op & 16) != 0;
        uint64_t before = reports;
        switch (op & 15) {
        case 0: case 1: case 2: case 3: { /* acquire */
            if (f->n == NHELD)
                break;
            errno = 0;
            unsigned char *b = via_handle ? magpool_cache_acquire(f->c) : magpool_acquire(f->p);
            if (b == NULL) {
                if (errno != ENOMEM)
                    die("acquire failed without ENOMEM");
                if (!f->cfg.max_blocks || f->n < f->cfg.max_blocks)
                    die("acquire failed below the cap");
                break;
            }
            if (((uintptr_t)b & ((f->cfg.align ? f->cfg.align : 16) - 1)) != 0 &&
                f->cfg.align >= 8)
                die("misaligned block");
            uint8_t tag = (uint8_t)get(&in);
            for (size_t j = 0; j < f->cfg.block_size; j++)
                b[j] = (uint8_t)(tag + j);
            f->h[f->n++] = (struct held){ b, tag };
            break;
        }
        case 4: case 5: case 6: /* release */
            if (f->n)
                release_one(f, get(&in) % f->n, via_handle);
            break;
        case 7: /* misuse, CHECKED pools only (fast mode: undefined behaviour) */
            if (!checked)
                break;
            switch (get(&in) % 4) {
            case 0: { /* double release */
                if (f->n == 0)
                    break;
                void *b = f->h[f->n - 1].b;
                release_one(f, f->n - 1, via_handle);
                magpool_stats_t s0, s1;
                magpool_get_stats(f->p, &s0);
                if (via_handle)
                    magpool_cache_release(f->c, b);
                else
                    magpool_release(f->p, b);
                magpool_get_stats(f->p, &s1);
                if (reports == before || s1.releases != s0.releases)
                    die("double release not rejected");
                break;
            }
            case 1:
                magpool_release(f->p, foreign + (get(&in) % 8) * 8);
                if (reports == before)
                    die("foreign pointer not rejected");
                break;
            case 2:
                if (f->n && f->cfg.block_size > 1) {
                    magpool_release(f->p, f->h[0].b + 1 + get(&in) % (f->cfg.block_size - 1));
                    if (reports == before)
                        die("interior pointer not rejected");
                }
                break;
            case 3:
                if (g->n && g != f) {
                    magpool_release(f->p, g->h[0].b);
                    if (reports == before)
                        die("other pool's block not rejected");
                }
                break;
            }
            f->bad++;
            break;
        case 8:
            magpool_trim(f->p, (get(&in) % 3) * 0.001);
            break;
        case 9:
            magpool_clear(f->p);
            break;
        case 10: case 11:
            check_stats(f);
            break;
        case 12: {
            FILE *out = fopen("/dev/null", "w");
            if (out) {
                if (magpool_report_leaks(f->p, out) != f->n)
                    die("report_leaks count");
                fclose(out);
            }
            break;
        }
        case 13:
            magpool_thread_flush(f->p);
            break;
        case 14: /* destroy with everything released, re-create */
            drop(f);
            make(f, &in);
            break;
        case 15:
            if (magpool_block_size(f->p) != f->cfg.block_size)
                die("block_size");
            if (via_handle && magpool_cache_get(f->p) != f->c)
                die("cache_get gave another handle on the same thread");
            break;
        }
    }
    for (int i = 0; i < NPOOLS; i++) {
        check_stats(&pools[i]);
        drop(&pools[i]);
    }
    return 0;
}
