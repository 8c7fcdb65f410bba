/* SPDX-License-Identifier: MIT */
/*
 * stress_random — random acquire/release from many threads on one pool.
 *
 * Every thread keeps a private set of up to --held K blocks. On acquire it
 * writes an ownership stamp (thread id + sequence number) over the whole
 * block; before release it checks the whole block still carries its stamp.
 * A block handed out twice, two blocks that overlap, or a block the pool
 * scribbles on while it is held all break a stamp. The acquire/release mix
 * drifts between phases (mostly-acquire, balanced, mostly-release) so the
 * thread caches keep crossing the magazine-full / magazine-empty boundaries
 * and trade magazines with the depot. Thread 0 also calls magpool_get_stats()
 * and magpool_clear()/magpool_trim() while the others work (allowed by the
 * synchronisation table), which races the trimmer against the fast paths.
 *
 * A second phase ("clear storm") holds only a few blocks per thread, so
 * whole slabs go idle, while two threads call magpool_clear()/trim() every
 * 256 operations: slabs are unmapped under the other threads' fast paths.
 *
 * At the end of each phase every block is released and the conservation laws are checked:
 * acquires - releases == blocks_outstanding == 0, hits + misses == acquires,
 * failed == 0 (the pool is unlimited), and the counters equal the test's own.
 */
#include "harness.h"

typedef struct held {
    void *p;
    uint64_t seq;
} held_t;

typedef struct phase {
    const char *name;
    unsigned held;          /* max blocks held per thread */
    uint64_t ops;           /* per thread */
    uint64_t clear_every;   /* 0: never */
    unsigned clearers;      /* threads 0..clearers-1 clear/trim */
} phase_t;

typedef struct worker {
    magpool_t *pool;
    const phase_t *ph;
    h_barrier_t *start;
    unsigned id;
    uint64_t acquires, releases, clears, cleared;
} worker_t;

static double opt_held = 64, opt_clear_every = 65536, opt_stats_every = 4096;

static void release_one(worker_t *w, held_t *held, unsigned *n, unsigned j, uint64_t tag)
{
    CHECK_STAMP(held[j].p, H.block_size, tag, held[j].seq);
    magpool_release(w->pool, held[j].p);
    w->releases++;
    held[j] = held[--*n];
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const unsigned k = w->ph->held;
    const uint64_t tag = H_TAG(w->id, 0);
    const uint64_t clear_every = w->id < w->ph->clearers ? w->ph->clear_every : 0;
    const uint64_t stats_every = (uint64_t)opt_stats_every;
    held_t *held = calloc(k, sizeof *held);
    if (!held)
        H_DIE("out of memory");
    h_rng_t rng = h_rng_seed(w->id, 1);
    unsigned n = 0;
    uint64_t seq = 0;
    unsigned p_acquire = 50; /* percent, re-drawn every 1024 ops */

    h_barrier_wait(w->start);
    for (uint64_t i = 0; i < w->ph->ops; i++) {
        if ((i & 1023) == 0) {
            static const unsigned mix[] = { 10, 30, 50, 50, 70, 90 };
            p_acquire = mix[h_below(&rng, sizeof mix / sizeof mix[0])];
        }
        if (w->id == 0 && stats_every && i % stats_every == stats_every - 1) {
            magpool_stats_t s;
            CHECK(magpool_get_stats(w->pool, &s) == 0, "get_stats while others work");
        }
        if (clear_every && i % clear_every == clear_every / 2 + w->id) {
            /* Races the trimmer (collect idle blocks, unmap idle slabs)
             * against everybody's fast paths. */
            if (w->clears++ & 1)
                w->cleared += magpool_trim(w->pool, 0);
            else
                w->cleared += magpool_clear(w->pool);
        }
        bool acquire = n == 0 || (n < k && h_below(&rng, 100) < p_acquire);
        if (acquire) {
            errno = 0;
            void *p = magpool_acquire(w->pool);
            CHECK(p != NULL, "thread %u op %" PRIu64 ": acquire failed on an unlimited pool, errno=%d",
                  w->id, i, errno);
            if (!p)
                continue;
            CHECK(((uintptr_t)p & 15) == 0, "block %p not 16-byte aligned", p);
            w->acquires++;
            h_stamp_write(p, H.block_size, tag, ++seq);
            held[n].p = p;
            held[n].seq = seq;
            n++;
        } else {
            release_one(w, held, &n, (unsigned)h_below(&rng, n), tag);
        }
    }
    while (n > 0)
        release_one(w, held, &n, n - 1, tag);
    free(held);
    return NULL;
}

static void run_phase(const phase_t *ph)
{
    magpool_t *pool = h_create(H.block_size, 0, 0);
    h_barrier_t start;
    h_barrier_init(&start, H.threads);
    worker_t *w = calloc(H.threads, sizeof *w);
    if (!w)
        H_DIE("out of memory");
    for (unsigned i = 0; i < H.threads; i++)
        w[i] = (worker_t){ .pool = pool, .ph = ph, .start = &start, .id = i };

    h_run_threads(H.threads, worker_main, w, sizeof *w);

    uint64_t acq = 0, rel = 0, cleared = 0;
    for (unsigned i = 0; i < H.threads; i++) {
        acq += w[i].acquires;
        rel += w[i].releases;
        cleared += w[i].cleared;
    }
    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s, after all threads joined", ph->name);
    if (H.verbose)
        printf("  %s: %" PRIu64 " blocks unmapped by concurrent clear/trim\n", ph->name, cleared);
    CHECK(acq == rel, "test bookkeeping: %" PRIu64 " acquired, %" PRIu64 " released", acq, rel);
    magpool_stats_t s = h_check_quiescent(ctx, pool, 0, acq, rel, 0);
    CHECK(s.threads <= 1,
          "stats.threads %" PRIu64 " after every worker exited (their caches should be detached)",
          s.threads);
    CHECK(s.bytes_reserved >= s.blocks_total * H.block_size,
          "bytes_reserved %zu < blocks_total %zu x block_size %zu", s.bytes_reserved,
          s.blocks_total, H.block_size);

    /* At quiescence with nothing outstanding every slab is idle: clear must
     * give every block back (magpool.h: "slabs whose blocks are all idle are
     * unmapped"). */
    size_t final_clear = magpool_clear(pool);
    magpool_stats_t c = h_stats(pool);
    if (H.verbose)
        h_print_stats("after clear", &c);
    CHECK(c.blocks_total == s.blocks_total - final_clear,
          "%s: clear returned %zu, but blocks_total went %zu -> %zu", ph->name, final_clear,
          s.blocks_total, c.blocks_total);
    CHECK(c.blocks_total == 0,
          "%s: after clear at quiescence with 0 outstanding, blocks_total is %zu (cleared %zu "
          "of %zu)",
          ph->name, c.blocks_total, final_clear, s.blocks_total);

    /* And the pool still works after a full clear. */
    void *p = magpool_acquire(pool);
    CHECK(p != NULL, "acquire after clear failed, errno=%d", errno);
    if (p) {
        h_stamp_write(p, H.block_size, H_TAG(999, 0), 1);
        magpool_release(pool, p);
    }
    h_check_quiescent(ph->name, pool, 0, acq + (p != NULL),
                      rel + (p != NULL), 0);

    magpool_destroy(pool);
    h_barrier_destroy(&start);
    free(w);
}

int main(int argc, char **argv)
{
    static const h_extra_opt_t extra[] = {
        { "held", "max blocks held per thread", &opt_held },
        { "clear-every", "thread 0 clears/trims every N ops (0: never)", &opt_clear_every },
        { "stats-every", "thread 0 reads stats every N ops (0: never)", &opt_stats_every },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "Random acquire/release with ownership stamps; conservation at the end.",
            extra);
    if (opt_held < 1)
        H_DIE("--held must be >= 1");
    /* Phase 1: the random walk, occasional clear/trim by thread 0.
     * Phase 2, "clear storm": few blocks held, so whole slabs go idle and
     * two threads unmap them (clear/trim every 256 ops) while the others
     * pop and push magazines: use-after-unmap of a block or magazine being
     * trimmed shows as a crash (SEGV on the unmapped page), a broken stamp
     * or a TSan report. */
    const phase_t phases[2] = {
        { "random", (unsigned)opt_held, H.ops, (uint64_t)opt_clear_every, 1 },
        { "clear storm", 2, H.ops / 4 ? H.ops / 4 : 1, 256, 2 },
    };
    unsigned it = 0;
    do {
        run_phase(&phases[0]);
        run_phase(&phases[1]);
    } while (h_more_rounds(&it));
    return h_finish(it);
}
