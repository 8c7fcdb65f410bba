/* SPDX-License-Identifier: MIT */
/*
 * stress_cap — the max_blocks cap under concurrency.
 *
 * magpool.h: "at max_blocks it first takes back blocks parked in other
 * threads' caches, so it fails only when every block is really acquired."
 *
 * Phase 1 (never fail): cap C, T threads each holding at most h blocks with
 *   T*h <= C. Threads acquire and release at random; released blocks park in
 *   the releasing thread's magazines, so an acquire at the cap must steal them
 *   back. No acquire may fail. Run with the automatic magazine size, with
 *   magazines larger than a thread's share (so one thread can hoard), and
 *   with one-round magazines.
 * Phase 2 (over-acquire rounds): every thread grabs until it gets NULL (or a
 *   limit whose sum exceeds C). Between two barriers nobody releases, so the
 *   blocks held must add up to exactly C, every NULL must come with
 *   errno == ENOMEM, and stats.blocks_outstanding == C. Blocks are then
 *   released by a different thread than the one that acquired them (they
 *   park in that thread's cache for the next round to steal).
 * Phase 3 (mixed oversubscription): random acquire/release with per-thread
 *   limits summing to 2C; a global count of blocks held never exceeds C,
 *   while thread 0 clears (unmapping idle slabs, which lets the pool grow
 *   again up to the cap) and thread 1 flushes its own cache now and then.
 * End: every block released; the main thread acquires exactly C blocks, the
 *   next acquire fails with ENOMEM; stats.failed matches the NULLs counted.
 */
#include "harness.h"

static double opt_held = 16, opt_cap = 0, opt_rounds = 0, opt_clear_every = 4096,
              opt_flush_every = 1024;

typedef struct shared {
    magpool_t *pool;
    size_t cap;
    unsigned held_max;     /* per-thread limit for this phase */
    uint64_t ops;
    bool must_not_fail;
    atomic_size_t in_use;  /* blocks held by the test right now */
    atomic_size_t max_in_use; /* high-water mark (verbose output only) */
    h_barrier_t bar;
    unsigned rounds;
    void ***grab;          /* phase 2: grab[t] = blocks held by thread t */
    size_t *ngrab;
} shared_t;

typedef struct worker {
    shared_t *sh;
    unsigned id;
    uint64_t acquires, releases, nulls;
} worker_t;

typedef struct held {
    void *p;
    uint64_t seq;
} held_t;

/* Count a block as held, right after acquire returned it. The count is
 * relaxed: a block passes from a release to the next acquire through the
 * library's own release/acquire, which orders our decrement before the
 * acquirer's increment, so the count never over-states what is held. */
static void hold(shared_t *sh, void *p)
{
    size_t v = atomic_fetch_add_explicit(&sh->in_use, 1, memory_order_relaxed) + 1;
    size_t m = atomic_load_explicit(&sh->max_in_use, memory_order_relaxed);
    while (v > m && !atomic_compare_exchange_weak_explicit(&sh->max_in_use, &m, v,
                                                           memory_order_relaxed,
                                                           memory_order_relaxed))
        ;
    CHECK(v <= sh->cap, "blocks held by the test: %zu > max_blocks %zu (block %p)", v, sh->cap, p);
}

static void unhold(shared_t *sh)
{
    atomic_fetch_sub_explicit(&sh->in_use, 1, memory_order_relaxed);
}

static void *acquire_checked(worker_t *w, const char *phase)
{
    errno = 0;
    void *p = magpool_acquire(w->sh->pool);
    if (p) {
        w->acquires++;
        hold(w->sh, p);
    } else {
        int e = errno;
        w->nulls++;
        CHECK(e == ENOMEM, "%s: acquire returned NULL with errno %d (%s), expected ENOMEM", phase,
              e, strerror(e));
    }
    return p;
}

static void release_checked(worker_t *w, void *p)
{
    unhold(w->sh);
    magpool_release(w->sh->pool, p);
    w->releases++;
}

/* Phases 1 and 3: random acquire/release, at most sh->held_max held. */
static void *random_worker(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    const char *phase = sh->must_not_fail ? "phase 1 (T*h <= C)" : "phase 3 (oversubscribed)";
    held_t *held = calloc(sh->held_max, sizeof *held);
    if (!held)
        H_DIE("out of memory");
    h_rng_t rng = h_rng_seed(w->id, sh->must_not_fail ? 11 : 13);
    uint64_t tag = H_TAG(w->id, 0), seq = 0;
    unsigned n = 0, p_acquire = 50;
    h_barrier_wait(&sh->bar);
    for (uint64_t i = 0; i < sh->ops; i++) {
        if ((i & 255) == 0) {
            static const unsigned mix[] = { 5, 50, 95 }; /* drain / churn / fill */
            p_acquire = mix[h_below(&rng, 3)];
        }
        if (!sh->must_not_fail && w->id == 0 && opt_clear_every >= 1 &&
            i % (uint64_t)opt_clear_every == (uint64_t)opt_clear_every / 2)
            (void)magpool_clear(sh->pool); /* unmap idle slabs, regrow later */
        if (!sh->must_not_fail && w->id == 1 && opt_flush_every >= 1 &&
            i % (uint64_t)opt_flush_every == (uint64_t)opt_flush_every / 2)
            magpool_thread_flush(sh->pool);
        if (n == 0 || (n < sh->held_max && h_below(&rng, 100) < p_acquire)) {
            void *p = acquire_checked(w, phase);
            if (sh->must_not_fail)
                CHECK(p != NULL,
                      "%s: thread %u holding %u, acquire failed (errno %d) although T*h=%zu <= "
                      "max_blocks=%zu: parked blocks were not stolen back",
                      phase, w->id, n, errno, (size_t)H.threads * sh->held_max, sh->cap);
            if (!p) {
                h_pause();
                continue;
            }
            h_stamp_write(p, H.block_size, tag, ++seq);
            held[n++] = (held_t){ p, seq };
        } else {
            unsigned j = (unsigned)h_below(&rng, n);
            CHECK_STAMP(held[j].p, H.block_size, tag, held[j].seq);
            release_checked(w, held[j].p);
            held[j] = held[--n];
        }
    }
    while (n > 0) {
        n--;
        CHECK_STAMP(held[n].p, H.block_size, tag, held[n].seq);
        release_checked(w, held[n].p);
    }
    free(held);
    return NULL;
}

/* Phase 2: grab until NULL, count, release someone else's blocks. */
static void *grab_worker(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    h_rng_t rng = h_rng_seed(w->id, 17);
    unsigned t = H.threads;
    for (unsigned r = 0; r < sh->rounds; r++) {
        /* Park a few blocks in this thread's cache first. */
        void *tmp[8];
        unsigned k = (unsigned)h_below(&rng, 9), got = 0;
        for (unsigned i = 0; i < k; i++) {
            void *p = magpool_acquire(sh->pool);
            if (!p) {
                w->nulls++; /* counted by stats.failed too */
                break;
            }
            w->acquires++;
            tmp[got++] = p;
        }
        while (got > 0) {
            magpool_release(sh->pool, tmp[--got]);
            w->releases++;
        }
        h_barrier_wait(&sh->bar);

        size_t n = 0;
        void **mine = sh->grab[w->id];
        while (n < sh->held_max) {
            void *p = acquire_checked(w, "phase 2 (grab until NULL)");
            if (!p)
                break;
            h_stamp_write(p, H.block_size, H_TAG(w->id, 0), (uint64_t)r << 32 | n);
            mine[n++] = p;
        }
        sh->ngrab[w->id] = n;
        h_barrier_wait(&sh->bar); /* everyone has stopped acquiring */

        if (w->id == 0) {
            size_t total = 0;
            for (unsigned i = 0; i < t; i++)
                total += sh->ngrab[i];
            CHECK(total == sh->cap,
                  "round %u: threads grabbed %zu blocks in total until every one got NULL "
                  "(or its limit %u), expected exactly max_blocks=%zu",
                  r, total, sh->held_max, sh->cap);
            magpool_stats_t s = h_stats(sh->pool);
            CHECK(s.blocks_outstanding == total,
                  "round %u: stats.blocks_outstanding %zu while the threads hold %zu", r,
                  s.blocks_outstanding, total);
            CHECK(s.blocks_total <= sh->cap, "round %u: blocks_total %zu > max_blocks %zu", r,
                  s.blocks_total, sh->cap);
        }
        h_barrier_wait(&sh->bar);

        /* Release the blocks of the next thread (cross-thread release). */
        unsigned victim = (w->id + 1 + r) % t;
        void **theirs = sh->grab[victim];
        for (size_t i = 0; i < sh->ngrab[victim]; i++) {
            CHECK_STAMP(theirs[i], H.block_size, H_TAG(victim, 0), (uint64_t)r << 32 | i);
            release_checked(w, theirs[i]);
        }
        h_barrier_wait(&sh->bar); /* nobody reads ngrab/grab of this round any more */
    }
    return NULL;
}

static void run_threads(shared_t *sh, worker_t *w, void *(*fn)(void *))
{
    for (unsigned i = 0; i < H.threads; i++)
        w[i] = (worker_t){ .sh = sh, .id = i };
    h_run_threads(H.threads, fn, w, sizeof *w);
}

static void sum(const worker_t *w, uint64_t *acq, uint64_t *rel, uint64_t *nulls)
{
    for (unsigned i = 0; i < H.threads; i++) {
        *acq += w[i].acquires;
        *rel += w[i].releases;
        *nulls += w[i].nulls;
    }
}

/* At quiescence with nothing held: exactly C blocks can be acquired. */
static void drain_to_cap(magpool_t *pool, size_t cap, const char *ctx, uint64_t *acq,
                         uint64_t *rel, uint64_t *nulls)
{
    void **all = calloc(cap, sizeof *all);
    if (!all)
        H_DIE("out of memory");
    size_t n = 0;
    for (; n < cap; n++) {
        errno = 0;
        all[n] = magpool_acquire(pool);
        if (!all[n]) {
            ++*nulls;
            break;
        }
        ++*acq;
    }
    CHECK(n == cap, "%s: main thread could acquire only %zu of max_blocks=%zu (errno %d)", ctx, n,
          cap, errno);
    errno = 0;
    void *extra = magpool_acquire(pool);
    int e = errno;
    CHECK(extra == NULL, "%s: acquire #%zu succeeded beyond max_blocks=%zu", ctx, n + 1, cap);
    if (extra) {
        magpool_release(pool, extra);
        ++*acq;
        ++*rel;
    } else {
        ++*nulls;
        CHECK(e == ENOMEM, "%s: acquire at the cap: errno %d, expected ENOMEM", ctx, e);
    }
    magpool_stats_t s = h_check_quiescent(ctx, pool, n, *acq, *rel, *nulls);
    CHECK(s.blocks_total <= cap, "%s: blocks_total %zu > max_blocks %zu", ctx, s.blocks_total, cap);
    while (n > 0) {
        magpool_release(pool, all[--n]);
        ++*rel;
    }
    free(all);
}

static void run_once(void)
{
    const unsigned t = H.threads, h = (unsigned)opt_held;
    const size_t cap = opt_cap > 0 ? (size_t)opt_cap : (size_t)t * h;
    if ((size_t)t * h > cap)
        H_DIE("--held x --threads must be <= --cap");
    worker_t *w = calloc(t, sizeof *w);
    shared_t *sh = calloc(1, sizeof *sh);
    if (!w || !sh)
        H_DIE("out of memory");
    h_barrier_init(&sh->bar, t);
    sh->cap = cap;

    /* Phase 1: automatic magazines, magazines of twice a thread's share (one
     * thread can hoard), and one-round magazines (every op visits the depot). */
    const unsigned mags[3] = { 0, 2 * h, 1 };
    for (int m = 0; m < 3; m++) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "phase 1, magazine_size=%u", mags[m]);
        sh->pool = h_create(H.block_size, cap, mags[m]);
        sh->held_max = h;
        sh->ops = H.ops / 3;
        sh->must_not_fail = true;
        atomic_store(&sh->in_use, 0);
        run_threads(sh, w, random_worker);
        uint64_t acq = 0, rel = 0, nulls = 0;
        sum(w, &acq, &rel, &nulls);
        CHECK(nulls == 0, "%s: %" PRIu64 " acquires failed", ctx, nulls);
        magpool_stats_t s = h_check_quiescent(ctx, sh->pool, 0, acq, rel, nulls);
        CHECK(s.blocks_total <= cap, "%s: blocks_total %zu > max_blocks %zu", ctx, s.blocks_total,
              cap);
        if (H.verbose)
            printf("  %s: steals=%" PRIu64 "\n", ctx, s.steals);
        drain_to_cap(sh->pool, cap, ctx, &acq, &rel, &nulls);
        magpool_destroy(sh->pool);
    }

    /* Phases 2 and 3 share one pool; counters accumulate. */
    sh->pool = h_create(H.block_size, cap, 0);
    atomic_store(&sh->in_use, 0);
    uint64_t acq = 0, rel = 0, nulls = 0;

    sh->held_max = (unsigned)(2 * cap / t + 1); /* sum of limits > C */
    sh->rounds = opt_rounds > 0 ? (unsigned)opt_rounds
                                : (unsigned)(H.ops / 5000 < 10 ? 10 : H.ops / 5000 > 200 ? 200
                                                                                         : H.ops / 5000);
    sh->grab = calloc(t, sizeof *sh->grab);
    sh->ngrab = calloc(t, sizeof *sh->ngrab);
    if (!sh->grab || !sh->ngrab)
        H_DIE("out of memory");
    for (unsigned i = 0; i < t; i++)
        if (!(sh->grab[i] = calloc(sh->held_max, sizeof(void *))))
            H_DIE("out of memory");
    run_threads(sh, w, grab_worker);
    sum(w, &acq, &rel, &nulls);
    h_check_quiescent("after phase 2", sh->pool, 0, acq, rel, nulls);

    sh->ops = H.ops / 2;
    sh->must_not_fail = false;
    atomic_store(&sh->max_in_use, 0);
    uint64_t nulls2 = nulls;
    run_threads(sh, w, random_worker);
    sum(w, &acq, &rel, &nulls);
    if (H.verbose)
        printf("  phase 3: %" PRIu64 " NULLs, at most %zu of %zu blocks held at once\n",
               nulls - nulls2, atomic_load(&sh->max_in_use), cap);
    magpool_stats_t s = h_check_quiescent("after phase 3", sh->pool, 0, acq, rel, nulls);
    CHECK(s.blocks_total <= cap, "after phase 3: blocks_total %zu > max_blocks %zu",
          s.blocks_total, cap);
    CHECK(atomic_load(&sh->in_use) == 0, "test bookkeeping: %zu still counted as held",
          atomic_load(&sh->in_use));
    if (H.verbose)
        printf("  phases 2+3: %" PRIu64 " acquires, %" PRIu64 " NULLs, steals=%" PRIu64 "\n", acq,
               nulls, s.steals);
    drain_to_cap(sh->pool, cap, "end", &acq, &rel, &nulls);
    magpool_destroy(sh->pool);

    for (unsigned i = 0; i < t; i++)
        free(sh->grab[i]);
    free(sh->grab);
    free(sh->ngrab);
    h_barrier_destroy(&sh->bar);
    free(sh);
    free(w);
}

int main(int argc, char **argv)
{
    static const h_extra_opt_t extra[] = {
        { "held", "blocks held per thread in phase 1 (h)", &opt_held },
        { "cap", "max_blocks C (0: threads x held)", &opt_cap },
        { "rounds", "phase 2 rounds (0: ops / 5000, in [10, 200])", &opt_rounds },
        { "clear-every", "phase 3: thread 0 clears every N ops (0: never)", &opt_clear_every },
        { "flush-every", "phase 3: thread 1 flushes its cache every N ops (0: never)",
          &opt_flush_every },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "max_blocks honoured exactly; parked blocks are stolen back, never a "
                        "spurious ENOMEM.",
            extra);
    if (opt_held < 1)
        H_DIE("--held must be >= 1");
    unsigned it = 0;
    do
        run_once();
    while (h_more_rounds(&it));
    return h_finish(it);
}
