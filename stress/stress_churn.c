/* SPDX-License-Identifier: MIT */
/*
 * stress_churn — threads come and go; their caches must not lose blocks.
 *
 * --rounds R rounds (default 200) of --threads T fresh threads each. Every
 * thread works on two pools (one capped, one unlimited), then exits with
 * blocks still in its magazines (the thread-exit flush must hand them back),
 * and leaves a few blocks it still holds to the thread of the next round,
 * which releases them (release of a block whose acquirer has exited). Some
 * threads call magpool_thread_flush() before exiting, some never touch one of
 * the pools, some exit without any pool operation.
 *
 * After every round (all threads joined): blocks_outstanding equals the
 * blocks left for the next round, and stats.threads does not grow with the
 * number of dead threads. At the end: blocks_outstanding == 0, and the main
 * thread can acquire blocks_total blocks without the pool growing (all of
 * them idle, none lost in a dead thread's cache); on the capped pool, exactly
 * max_blocks blocks, then ENOMEM.
 *
 * --ops N: operations per thread over the whole run (per round: N / R).
 */
#include "harness.h"

#define NPOOLS 2
#define HANDOFF_MAX 4

static double opt_rounds = 200, opt_held = 32;

typedef struct handoff {
    void *p[NPOOLS][HANDOFF_MAX];
    uint64_t seq[NPOOLS][HANDOFF_MAX];
    unsigned n[NPOOLS];
    unsigned owner; /* tag thread id of the stamps */
} handoff_t;

typedef struct shared {
    magpool_t *pool[NPOOLS]; /* [0] capped, [1] unlimited */
    size_t cap;
    unsigned round;
    uint64_t ops_per_round;
    handoff_t *handoff; /* one slot per thread index, passed round to round */
} shared_t;

typedef struct worker {
    shared_t *sh;
    unsigned id;
    uint64_t acquires[NPOOLS], releases[NPOOLS], nulls[NPOOLS];
} worker_t;

typedef struct held {
    void *p;
    uint64_t seq;
} held_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    const unsigned k = (unsigned)opt_held;
    const unsigned me = sh->round * H.threads + w->id; /* unique over the run */
    h_rng_t rng = h_rng_seed(me, 23);
    handoff_t *ho = &sh->handoff[w->id];

    /* Blocks acquired by a thread that has exited since: release them.
     * pthread_join + pthread_create order the previous owner's writes. */
    for (int p = 0; p < NPOOLS; p++) {
        for (unsigned i = 0; i < ho->n[p]; i++) {
            CHECK_STAMP(ho->p[p][i], H.block_size, H_TAG(ho->owner, p), ho->seq[p][i]);
            magpool_release(sh->pool[p], ho->p[p][i]);
            w->releases[p]++;
        }
        ho->n[p] = 0;
    }

    unsigned kind = (unsigned)h_below(&rng, 8);
    if (kind == 0)
        return NULL; /* exits without any pool operation */
    bool use[NPOOLS] = { true, kind != 1 };

    held_t *held[NPOOLS];
    unsigned n[NPOOLS] = { 0, 0 };
    uint64_t seq = 0;
    for (int p = 0; p < NPOOLS; p++)
        if (!(held[p] = calloc(k, sizeof(held_t))))
            H_DIE("out of memory");

    unsigned p_acquire = 60;
    for (uint64_t i = 0; i < sh->ops_per_round; i++) {
        if ((i & 127) == 0)
            p_acquire = (unsigned)(20 + h_below(&rng, 61));
        int p = use[1] ? (int)(h_rand(&rng) & 1) : 0;
        if (n[p] == 0 || (n[p] < k && h_below(&rng, 100) < p_acquire)) {
            errno = 0;
            void *b = magpool_acquire(sh->pool[p]);
            CHECK(b != NULL,
                  "round %u thread %u pool %d: acquire failed (errno %d); T x held + handoff "
                  "<= max_blocks, so this must not fail",
                  sh->round, w->id, p, errno);
            if (!b) {
                w->nulls[p]++;
                continue;
            }
            w->acquires[p]++;
            h_stamp_write(b, H.block_size, H_TAG(me, p), ++seq);
            held[p][n[p]++] = (held_t){ b, seq };
        } else {
            unsigned j = (unsigned)h_below(&rng, n[p]);
            CHECK_STAMP(held[p][j].p, H.block_size, H_TAG(me, p), held[p][j].seq);
            magpool_release(sh->pool[p], held[p][j].p);
            w->releases[p]++;
            held[p][j] = held[p][--n[p]];
        }
    }

    /* Leave up to HANDOFF_MAX held blocks per pool for the next round. */
    ho->owner = me;
    for (int p = 0; p < NPOOLS; p++) {
        unsigned keep = (unsigned)h_below(&rng, HANDOFF_MAX + 1);
        while (n[p] > 0 && ho->n[p] < keep) {
            n[p]--;
            ho->p[p][ho->n[p]] = held[p][n[p]].p;
            ho->seq[p][ho->n[p]] = held[p][n[p]].seq;
            ho->n[p]++;
        }
        while (n[p] > 0) {
            n[p]--;
            CHECK_STAMP(held[p][n[p]].p, H.block_size, H_TAG(me, p), held[p][n[p]].seq);
            magpool_release(sh->pool[p], held[p][n[p]].p);
            w->releases[p]++;
        }
        free(held[p]);
    }
    /* Half of the threads flush explicitly; the others rely on the
     * thread-exit flush. Either way the cache is left non-empty before. */
    if (kind & 2)
        for (int p = 0; p < NPOOLS; p++)
            magpool_thread_flush(sh->pool[p]);
    return NULL;
}

static void run_once(void)
{
    const unsigned t = H.threads, rounds = (unsigned)opt_rounds;
    shared_t sh = { .cap = (size_t)t * ((size_t)opt_held + HANDOFF_MAX) * 2 };
    sh.pool[0] = h_create(H.block_size, sh.cap, 0);
    sh.pool[1] = h_create(H.block_size, 0, 0);
    sh.ops_per_round = H.ops / rounds ? H.ops / rounds : 1;
    sh.handoff = calloc(t, sizeof *sh.handoff);
    worker_t *w = calloc(t, sizeof *w);
    if (!sh.handoff || !w)
        H_DIE("out of memory");
    uint64_t acq[NPOOLS] = { 0 }, rel[NPOOLS] = { 0 }, nulls[NPOOLS] = { 0 };
    uint64_t max_threads_seen = 0;

    for (unsigned r = 0; r < rounds && h_failure_count() == 0; r++) {
        sh.round = r;
        for (unsigned i = 0; i < t; i++)
            w[i] = (worker_t){ .sh = &sh, .id = i };
        h_run_threads(t, worker_main, w, sizeof *w);
        for (int p = 0; p < NPOOLS; p++) {
            size_t left = 0;
            for (unsigned i = 0; i < t; i++) {
                acq[p] += w[i].acquires[p];
                rel[p] += w[i].releases[p];
                nulls[p] += w[i].nulls[p];
                left += sh.handoff[i].n[p];
            }
            char ctx[64];
            snprintf(ctx, sizeof ctx, "round %u, %s pool", r, p == 0 ? "capped" : "unlimited");
            magpool_stats_t s = h_check_quiescent(ctx, sh.pool[p], left, acq[p], rel[p], nulls[p]);
            if (s.threads > max_threads_seen)
                max_threads_seen = s.threads;
            CHECK(s.threads <= 1,
                  "%s: stats.threads = %" PRIu64 " with no thread alive but main (dead threads' "
                  "caches still attached?)",
                  ctx, s.threads);
            if (p == 0)
                CHECK(s.blocks_total <= sh.cap, "%s: blocks_total %zu > max_blocks %zu", ctx,
                      s.blocks_total, sh.cap);
        }
    }

    /* Release what the last round left behind, from the main thread. */
    for (unsigned i = 0; i < t; i++)
        for (int p = 0; p < NPOOLS; p++) {
            handoff_t *ho = &sh.handoff[i];
            for (unsigned j = 0; j < ho->n[p]; j++) {
                CHECK_STAMP(ho->p[p][j], H.block_size, H_TAG(ho->owner, p), ho->seq[p][j]);
                magpool_release(sh.pool[p], ho->p[p][j]);
                rel[p]++;
            }
            ho->n[p] = 0;
        }

    for (int p = 0; p < NPOOLS; p++) {
        const char *name = p == 0 ? "end, capped pool" : "end, unlimited pool";
        magpool_stats_t s = h_check_quiescent(name, sh.pool[p], 0, acq[p], rel[p], nulls[p]);
        /* Every block is idle: acquiring blocks_total of them must neither
         * grow the pool nor miss. */
        size_t total = s.blocks_total, want = p == 0 ? sh.cap : total;
        void **all = calloc(want + 1, sizeof *all);
        if (!all)
            H_DIE("out of memory");
        size_t n = 0;
        for (; n < total; n++) {
            errno = 0;
            if (!(all[n] = magpool_acquire(sh.pool[p]))) {
                CHECK(0, "%s: acquire %zu of blocks_total=%zu failed, errno %d", name, n + 1,
                      total, errno);
                nulls[p]++;
                break;
            }
            acq[p]++;
        }
        magpool_stats_t a = h_check_quiescent(name, sh.pool[p], n, acq[p], rel[p], nulls[p]);
        CHECK(a.grows == s.grows && a.misses == s.misses && a.blocks_total == s.blocks_total,
              "%s: acquiring the %zu idle blocks grew the pool: grows %" PRIu64 " -> %" PRIu64
              ", misses %" PRIu64 " -> %" PRIu64 ", blocks_total %zu -> %zu (blocks lost in "
              "dead threads' caches?)",
              name, total, s.grows, a.grows, s.misses, a.misses, s.blocks_total, a.blocks_total);
        if (p == 0 && n == total) {
            /* Up to the cap (may grow), then ENOMEM. */
            for (; n < want; n++) {
                errno = 0;
                if (!(all[n] = magpool_acquire(sh.pool[p]))) {
                    CHECK(0, "%s: acquire %zu of max_blocks=%zu failed, errno %d", name, n + 1,
                          want, errno);
                    nulls[p]++;
                    break;
                }
                acq[p]++;
            }
            if (n == want) {
                errno = 0;
                void *x = magpool_acquire(sh.pool[p]);
                int e = errno;
                CHECK(x == NULL, "%s: acquire beyond max_blocks=%zu succeeded", name, want);
                if (x) {
                    all[n++] = x;
                    acq[p]++;
                } else {
                    nulls[p]++;
                    CHECK(e == ENOMEM, "%s: errno %d at the cap, expected ENOMEM", name, e);
                }
            }
        }
        while (n > 0) {
            magpool_release(sh.pool[p], all[--n]);
            rel[p]++;
        }
        free(all);
        h_check_quiescent(name, sh.pool[p], 0, acq[p], rel[p], nulls[p]);
    }
    if (H.verbose)
        printf("  max stats.threads seen after a round: %" PRIu64 "\n", max_threads_seen);

    magpool_destroy(sh.pool[0]);
    magpool_destroy(sh.pool[1]);
    free(sh.handoff);
    free(w);
}

int main(int argc, char **argv)
{
    static const h_extra_opt_t extra[] = {
        { "rounds", "rounds of fresh threads", &opt_rounds },
        { "held", "max blocks held per thread and pool", &opt_held },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "Threads created and joined repeatedly, exiting with cached blocks.",
            extra);
    if (opt_rounds < 1 || opt_held < 1)
        H_DIE("--rounds and --held must be >= 1");
    unsigned it = 0;
    do
        run_once();
    while (h_more_rounds(&it));
    return h_finish(it);
}
