/* SPDX-License-Identifier: MIT */
/*
 * stress_manypools — many pools per thread, pools destroyed under live threads.
 *
 * Phase 1: --pools P pools (default 200, block sizes 16..1024) shared by all
 *   threads; every operation picks a random pool. Each thread therefore has
 *   a cache in every pool. The run is cut into --rounds R rounds; between two
 *   barriers (no thread uses any pool) the main thread checks, for every
 *   pool, blocks_outstanding == the blocks the threads hold from it, then
 *   destroys about a quarter of the pools -- while the threads that used them
 *   are alive, with their caches full and some of the pool's blocks still
 *   "held" -- and creates new ones in their place (often at the same address,
 *   with another block size, cap and magazine size). A thread cache that
 *   dangles, or is found again by the new pool, corrupts stamps, trips ASan,
 *   or shows in the accounting. At the end the pools are destroyed before the
 *   threads exit, so the thread-exit flush must not touch them either.
 * Phase 2: one thread touches --big-pools pools (default 1000) one block
 *   each, half of them are destroyed while it lives, it touches the rest
 *   again, exits; the survivors must account for every block.
 *
 * --ops N: operations per thread over phase 1.
 */
#include "harness.h"

static double opt_pools = 200, opt_rounds = 10, opt_held = 64, opt_big = 1000;

typedef struct pool_slot {
    magpool_t *pool;
    size_t bs;
    unsigned gen;
} pool_slot_t;

typedef struct shared {
    pool_slot_t *slot;
    unsigned npools;
    unsigned rounds;
    uint64_t ops_per_round;
    h_barrier_t bar;     /* T workers + main */
    uint32_t *count;     /* count[t * npools + pool]: blocks thread t holds */
} shared_t;

typedef struct held {
    void *p;
    uint64_t seq;
    unsigned pool, gen;
} held_t;

typedef struct worker {
    shared_t *sh;
    unsigned id;
} worker_t;

static size_t pick_block_size(h_rng_t *r)
{
    static const size_t sizes[] = { 16, 24, 32, 48, 64, 100, 128, 200, 256, 512, 1000, 1024 };
    return sizes[h_below(r, sizeof sizes / sizeof sizes[0])];
}

static magpool_t *create_varied(h_rng_t *r, size_t bs, size_t min_cap)
{
    magpool_config_t cfg = magpool_config_default(bs);
    cfg.backend = H.backend;
    unsigned v = (unsigned)h_below(r, 4);
    if (v == 1)
        cfg.max_blocks = min_cap; /* capped, but never below what can be held */
    if (v == 2)
        cfg.magazine_size = 4;
    if (v == 3)
        cfg.initial_blocks = 0;
    magpool_t *p = magpool_create(&cfg);
    if (!p)
        H_DIE("magpool_create(%zu): %s", bs, strerror(errno));
    return p;
}

static void release_held(shared_t *sh, unsigned id, held_t *h)
{
    CHECK_STAMP(h->p, sh->slot[h->pool].bs, H_TAG(id, h->pool), h->seq);
    magpool_release(sh->slot[h->pool].pool, h->p);
    sh->count[(size_t)id * sh->npools + h->pool]--;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    const unsigned k = (unsigned)opt_held;
    held_t *held = calloc(k, sizeof *held);
    uint32_t *mycount = &sh->count[(size_t)w->id * sh->npools];
    if (!held)
        H_DIE("out of memory");
    h_rng_t rng = h_rng_seed(w->id, 31);
    unsigned n = 0;
    uint64_t seq = 0;

    for (unsigned r = 0; r < sh->rounds; r++) {
        h_barrier_wait(&sh->bar); /* B1: pools are stable from here */
        for (uint64_t i = 0; i < sh->ops_per_round; i++) {
            if (n == 0 || (n < k && (h_rand(&rng) & 1))) {
                unsigned pi = (unsigned)h_below(&rng, sh->npools);
                pool_slot_t *s = &sh->slot[pi];
                errno = 0;
                void *p = magpool_acquire(s->pool);
                CHECK(p != NULL, "round %u thread %u pool %u: acquire failed, errno %d", r, w->id,
                      pi, errno);
                if (!p)
                    continue;
                h_stamp_write(p, s->bs, H_TAG(w->id, pi), ++seq);
                held[n++] = (held_t){ p, seq, pi, s->gen };
                mycount[pi]++;
            } else {
                unsigned j = (unsigned)h_below(&rng, n);
                release_held(sh, w->id, &held[j]);
                held[j] = held[--n];
            }
        }
        if (r + 1 == sh->rounds) {
            while (n > 0)
                release_held(sh, w->id, &held[--n]);
        }
        h_barrier_wait(&sh->bar); /* B2: main checks, destroys, recreates */
        h_barrier_wait(&sh->bar); /* B3: forget blocks of destroyed pools */
        for (unsigned j = 0; j < n;) {
            if (sh->slot[held[j].pool].gen != held[j].gen) {
                held[j] = held[--n]; /* its memory went with the pool */
            } else {
                j++;
            }
        }
    }
    /* Pools destroyed by main before this point (B_end below); the exit
     * flush must not touch them. */
    h_barrier_wait(&sh->bar); /* B_end */
    free(held);
    return NULL;
}

static void phase_shared_pools(void)
{
    const unsigned t = H.threads;
    shared_t sh = { .npools = (unsigned)opt_pools, .rounds = (unsigned)opt_rounds };
    sh.ops_per_round = H.ops / sh.rounds ? H.ops / sh.rounds : 1;
    sh.slot = calloc(sh.npools, sizeof *sh.slot);
    sh.count = calloc((size_t)t * sh.npools, sizeof *sh.count);
    worker_t *w = calloc(t, sizeof *w);
    pthread_t *tid = calloc(t, sizeof *tid);
    if (!sh.slot || !sh.count || !w || !tid)
        H_DIE("out of memory");
    h_rng_t rng = h_rng_seed(0xfeed, 37);
    const size_t min_cap = (size_t)t * (size_t)opt_held;
    for (unsigned i = 0; i < sh.npools; i++) {
        sh.slot[i].bs = pick_block_size(&rng);
        sh.slot[i].pool = create_varied(&rng, sh.slot[i].bs, min_cap);
    }
    h_barrier_init(&sh.bar, t + 1);
    for (unsigned i = 0; i < t; i++) {
        w[i] = (worker_t){ .sh = &sh, .id = i };
        int rc = pthread_create(&tid[i], NULL, worker_main, &w[i]);
        if (rc)
            H_DIE("pthread_create: %s", strerror(rc));
    }
    unsigned destroyed = 0, reused_address = 0;
    for (unsigned r = 0; r < sh.rounds; r++) {
        h_barrier_wait(&sh.bar); /* B1 */
        h_barrier_wait(&sh.bar); /* B2: workers are parked */
        for (unsigned pi = 0; pi < sh.npools; pi++) {
            size_t held = 0;
            for (unsigned i = 0; i < t; i++)
                held += sh.count[(size_t)i * sh.npools + pi];
            magpool_stats_t s = h_stats(sh.slot[pi].pool);
            CHECK(s.blocks_outstanding == held && s.acquires - s.releases == held &&
                      s.misses <= s.grows && s.failed == 0,
                  "round %u pool %u (gen %u, bs %zu): outstanding %zu, acquires-releases %" PRIu64
                  ", misses %" PRIu64 " vs grows %" PRIu64 ", failed %" PRIu64
                  "; the threads hold %zu",
                  r, pi, sh.slot[pi].gen, sh.slot[pi].bs, s.blocks_outstanding,
                  s.acquires - s.releases, s.misses, s.grows, s.failed, held);
        }
        if (r + 1 < sh.rounds) {
            /* Destroy about a quarter of the pools under the live threads. */
            for (unsigned pi = 0; pi < sh.npools; pi++) {
                if (h_below(&rng, 4) != 0)
                    continue;
                magpool_t *old = sh.slot[pi].pool;
                magpool_destroy(old);
                for (unsigned i = 0; i < t; i++)
                    sh.count[(size_t)i * sh.npools + pi] = 0;
                sh.slot[pi].bs = pick_block_size(&rng);
                sh.slot[pi].pool = create_varied(&rng, sh.slot[pi].bs, min_cap);
                sh.slot[pi].gen++;
                destroyed++;
                reused_address += sh.slot[pi].pool == old;
            }
        }
        h_barrier_wait(&sh.bar); /* B3 */
    }
    /* Everything released (last round); destroy all pools while the
     * threads that used them are still alive, then let them exit. */
    for (unsigned pi = 0; pi < sh.npools; pi++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "end, pool %u", pi);
        h_check_quiescent(ctx, sh.slot[pi].pool, 0, H_ANY, H_ANY, 0);
        magpool_destroy(sh.slot[pi].pool);
        sh.slot[pi].pool = NULL;
    }
    h_barrier_wait(&sh.bar); /* B_end */
    for (unsigned i = 0; i < t; i++)
        pthread_join(tid[i], NULL);
    if (H.verbose)
        printf("  phase 1: %u pools destroyed under live threads, %u recreated at the same "
               "address\n",
               destroyed, reused_address);
    h_barrier_destroy(&sh.bar);
    free(sh.slot);
    free(sh.count);
    free(w);
    free(tid);
}

/* ---------------------------------------------------------- phase 2 */

typedef struct big {
    magpool_t **pool;
    unsigned n;
    h_barrier_t bar; /* 2 threads: the toucher and main */
    unsigned id;
} big_t;

static void touch_all(big_t *b, unsigned from, unsigned step, unsigned id)
{
    for (unsigned i = from; i < b->n; i += step) {
        void *p[3];
        for (int j = 0; j < 3; j++) {
            errno = 0;
            p[j] = magpool_acquire(b->pool[i]);
            CHECK(p[j] != NULL, "pool %u of %u: acquire failed, errno %d", i, b->n, errno);
            if (p[j])
                h_stamp_write(p[j], 16, H_TAG(id, i), (uint64_t)j);
        }
        for (int j = 0; j < 3; j++)
            if (p[j]) {
                CHECK_STAMP(p[j], 16, H_TAG(id, i), (uint64_t)j);
                magpool_release(b->pool[i], p[j]);
            }
    }
}

static void *big_worker(void *arg)
{
    big_t *b = arg;
    touch_all(b, 0, 1, b->id);   /* a cache in every pool */
    h_barrier_wait(&b->bar);     /* main destroys the odd pools */
    h_barrier_wait(&b->bar);
    touch_all(b, 0, 2, b->id);   /* the even ones again */
    return NULL;                 /* exit flush: only live pools */
}

static void phase_big(void)
{
    big_t b = { .n = (unsigned)opt_big };
    b.pool = calloc(b.n, sizeof *b.pool);
    if (!b.pool)
        H_DIE("out of memory");
    h_rng_t rng = h_rng_seed(0xb16, 41);
    for (unsigned i = 0; i < b.n; i++)
        b.pool[i] = create_varied(&rng, 16, 64);
    h_barrier_init(&b.bar, 2);
    for (unsigned rep = 0; rep < 2; rep++) {
        b.id = rep;
        pthread_t t;
        if (pthread_create(&t, NULL, big_worker, &b))
            H_DIE("pthread_create");
        h_barrier_wait(&b.bar);
        if (rep == 0)
            for (unsigned i = 1; i < b.n; i += 2) {
                magpool_destroy(b.pool[i]);
                b.pool[i] = NULL;
            }
        h_barrier_wait(&b.bar);
        pthread_join(t, NULL);
        if (rep == 0)
            for (unsigned i = 1; i < b.n; i += 2) /* fresh ones for rep 1 */
                b.pool[i] = create_varied(&rng, 16, 64);
    }
    for (unsigned i = 0; i < b.n; i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "phase 2, pool %u of %u", i, b.n);
        magpool_stats_t s = h_check_quiescent(ctx, b.pool[i], 0, H_ANY, H_ANY, 0);
        CHECK(s.threads <= 1, "%s: stats.threads %" PRIu64 " after the user thread exited", ctx,
              s.threads);
        magpool_destroy(b.pool[i]);
    }
    h_barrier_destroy(&b.bar);
    free(b.pool);
}

int main(int argc, char **argv)
{
    static const h_extra_opt_t extra[] = {
        { "pools", "pools shared by all threads (phase 1)", &opt_pools },
        { "rounds", "phase 1 rounds (pools recreated between rounds)", &opt_rounds },
        { "held", "max blocks held per thread (phase 1)", &opt_held },
        { "big-pools", "pools touched by one thread (phase 2)", &opt_big },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "Many pools per thread; pools destroyed while their users live.", extra);
    if (opt_pools < 1 || opt_rounds < 1 || opt_held < 1 || opt_big < 2)
        H_DIE("--pools, --rounds, --held >= 1, --big-pools >= 2");
    unsigned it = 0;
    do {
        phase_shared_pools();
        phase_big();
    } while (h_more_rounds(&it));
    return h_finish(it);
}
