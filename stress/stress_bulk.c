/* SPDX-License-Identifier: MIT */
/*
 * stress_bulk — bulk and single calls mixed, across threads, on one pool.
 *
 * Every thread draws its next step at random: a bulk acquire of 1..--max-bulk
 * blocks, a single or zeroing acquire, a bulk release of a random subset of
 * what it holds (with NULL entries mixed in), a single release, or a hand-off
 * of up to 64 held blocks to the next thread's mailbox (which that thread
 * releases, in bulk or one by one). Every block carries an ownership stamp
 * over its whole size from the moment it is acquired until it is released,
 * so a block handed out twice — by a bulk copy, by a steal racing one, or by
 * a failed bulk call that kept a block — breaks a stamp. Thread 0 also clears
 * the pool now and then, so stealers and trim race the bulk copies.
 *
 * Phases:
 *   open     no cap: no call may fail;
 *   capped   max_blocks = 200 x threads and small magazines: bulk calls fail
 *            at the cap (ENOMEM, all or nothing) while others park blocks in
 *            their caches, and steals take them back.
 * After each phase every block is released and the conservation laws are
 * checked (outstanding 0, acquires - releases == 0, failed == the failures
 * the threads saw: one per failed call); in the capped phase one bulk call
 * must then get the whole cap — parked blocks included.
 *
 * --handles 1: the single acquires and releases go through per-thread
 * handles (magpool_cache_get), mixed with the plain bulk calls, and each
 * worker's steps run in --generations successive threads: every generation
 * binds its own handle, and exits with blocks parked in its cache while the
 * other workers acquire at the cap, steal and clear — thread exit racing
 * steals and trims. A generation's blocks (held, stamped) pass to the next.
 *
 * --borrow 1 (must fail): workers 0 and 1 use the main thread's handle
 * instead of their own — the misuse magpool.h forbids. TSan must report the
 * data race on that cache; MAGPOOL_CHECKED must refuse and report every
 * call (MAGPOOL_ERR_WRONG_THREAD). Proof that both can see it.
 */
#include "harness.h"

#define MAXH 2048   /* blocks one thread may hold */
#define HAND 64     /* blocks per hand-off        */

typedef struct held {
    void *p;
    uint64_t tag, seq;
} held_t;

typedef struct batch {
    unsigned n;
    held_t h[HAND];
} batch_t;

typedef struct phase {
    const char *name;
    size_t cap;          /* max_blocks, 0 = none */
    unsigned magazine;   /* 0 = automatic        */
} phase_t;

typedef struct worker {
    magpool_t *pool;
    magpool_cache_t *cache;    /* --handles: the running generation's */
    magpool_cache_t *borrowed; /* --borrow: the main thread's, misused */
    const phase_t *ph;
    h_barrier_t *start, *stop;
    _Atomic(batch_t *) *inbox; /* [threads]: inbox[i] belongs to thread i */
    unsigned id;
    uint64_t failed;           /* calls that returned NULL / -1 */
} worker_t;

static double opt_max_bulk = 600, opt_clear_every = 4096;
static double opt_handles = 0, opt_generations = 4, opt_borrow = 0;

/* The single calls: through the thread's handle in --handles mode. */
static void *acquire_one(worker_t *w)
{
    return w->cache ? magpool_cache_acquire(w->cache) : magpool_acquire(w->pool);
}

static void release_one(worker_t *w, void *p)
{
    if (w->cache)
        magpool_cache_release(w->cache, p);
    else
        magpool_release(w->pool, p);
}

static held_t held_of(void *p, uint64_t tag, uint64_t seq)
{
    held_t h = { p, tag, seq };
    return h;
}

/* Check each stamp, then release v[0..n) with one bulk call or n single ones. */
static void release_checked(worker_t *w, held_t *v, unsigned n, bool bulk, h_rng_t *rng)
{
    void *ptrs[2 * MAXH]; /* room for a NULL before every entry */
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        CHECK_STAMP(v[i].p, H.block_size, v[i].tag, v[i].seq);
        if (bulk && h_below(rng, 8) == 0)
            ptrs[k++] = NULL; /* must be skipped */
        ptrs[k++] = v[i].p;
    }
    if (bulk) {
        magpool_release_bulk(w->pool, ptrs, k);
    } else {
        for (unsigned i = 0; i < k; i++)
            release_one(w, ptrs[i]);
    }
}

/* Take what another thread handed to us, if anything, and release it. */
static void drain_inbox(worker_t *w, h_rng_t *rng)
{
    /* acquire: pairs with the release CAS of the hand-off, so the stamps
     * the sender wrote are visible. */
    batch_t *b = atomic_exchange_explicit(&w->inbox[w->id], NULL, memory_order_acquire);
    if (b == NULL)
        return;
    release_checked(w, b->h, b->n, h_below(rng, 2) == 0, rng);
    free(b);
}

/* What a worker holds, carried from one generation (thread) to the next. */
typedef struct wstate {
    held_t *held;
    void **tmp;
    unsigned n;
    uint64_t seq;
    h_rng_t rng;
} wstate_t;

/* Steps [from, to) of worker w. */
static void run_steps(worker_t *w, wstate_t *st, uint64_t from, uint64_t to)
{
    const uint64_t tag = H_TAG(w->id, 0);
    held_t *held = st->held;
    void **tmp = st->tmp;
    h_rng_t rng = st->rng;
    unsigned n = st->n;
    uint64_t seq = st->seq;
    const unsigned max_bulk = (unsigned)opt_max_bulk;
    const uint64_t clear_every = (uint64_t)opt_clear_every;
    const bool capped = w->ph->cap != 0;

    for (uint64_t step = from; step < to; step++) {
        drain_inbox(w, &rng);
        if (w->id == 0 && clear_every && step % clear_every == clear_every - 1)
            magpool_clear(w->pool);
        unsigned r = (unsigned)h_below(&rng, 100);
        if (r < 30 && n < MAXH) {
            unsigned k = 1 + (unsigned)h_below(&rng, max_bulk);
            if (k > MAXH - n)
                k = MAXH - n;
            errno = 0;
            if (magpool_acquire_bulk(w->pool, tmp, k) != 0) {
                CHECK(capped && errno == ENOMEM, "%s: bulk acquire of %u failed, errno %d",
                      w->ph->name, k, errno);
                w->failed++;
                continue;
            }
            for (unsigned i = 0; i < k; i++) {
                CHECK(((uintptr_t)tmp[i] & 15) == 0, "block %p misaligned", tmp[i]);
                h_stamp_write(tmp[i], H.block_size, tag, ++seq);
                held[n++] = held_of(tmp[i], tag, seq);
            }
        } else if (r < 40 && n < MAXH) {
            bool zeroed = r & 1;
            errno = 0;
            unsigned char *p = zeroed ? magpool_acquire_zeroed(w->pool) : acquire_one(w);
            if (p == NULL) {
                CHECK(capped && errno == ENOMEM, "%s: acquire failed, errno %d", w->ph->name,
                      errno);
                w->failed++;
                continue;
            }
            for (size_t i = 0; zeroed && i < H.block_size; i++)
                if (p[i] != 0) {
                    CHECK(p[i] == 0, "zeroed block %p byte %zu is %#x", (void *)p, i, p[i]);
                    break;
                }
            h_stamp_write(p, H.block_size, tag, ++seq);
            held[n++] = held_of(p, tag, seq);
        } else if (r < 70 && n > 0) {
            /* a random subset: the last m after a few random swaps */
            unsigned m = 1 + (unsigned)h_below(&rng, n);
            for (unsigned s = 0; s < 8; s++) {
                unsigned a = (unsigned)h_below(&rng, n), b = (unsigned)h_below(&rng, n);
                held_t t = held[a];
                held[a] = held[b];
                held[b] = t;
            }
            n -= m;
            release_checked(w, held + n, m, true, &rng);
        } else if (r < 85 && n > 0) {
            unsigned j = (unsigned)h_below(&rng, n);
            release_checked(w, &held[j], 1, false, &rng);
            held[j] = held[--n];
        } else if (n > 0 && H.threads > 1) {
            unsigned to = (w->id + 1) % H.threads;
            if (atomic_load_explicit(&w->inbox[to], memory_order_relaxed) != NULL)
                continue; /* the receiver has not drained the last one yet */
            batch_t *b = malloc(sizeof *b);
            if (!b)
                H_DIE("out of memory");
            b->n = n < HAND ? n : HAND;
            n -= b->n;
            memcpy(b->h, held + n, b->n * sizeof *held);
            batch_t *expect = NULL;
            /* release: publishes the batch and the stamps in its blocks. */
            if (!atomic_compare_exchange_strong_explicit(&w->inbox[to], &expect, b,
                                                         memory_order_release,
                                                         memory_order_relaxed)) {
                memcpy(held + n, b->h, b->n * sizeof *held); /* keep them */
                n += b->n;
                free(b);
            }
        }
    }
    st->rng = rng;
    st->n = n;
    st->seq = seq;
}

struct generation {
    worker_t *w;
    wstate_t *st;
    uint64_t from, to;
};

/* One generation of a --handles worker: its own thread and handle. It
 * exits with whatever its cache holds (the exit flush gives it back). */
static void *generation_main(void *arg)
{
    struct generation *g = arg;
    g->w->cache = g->w->borrowed ? g->w->borrowed : magpool_cache_get(g->w->pool);
    CHECK(g->w->cache != NULL, "magpool_cache_get: errno %d", errno);
    if (g->w->cache != NULL)
        run_steps(g->w, g->st, g->from, g->to);
    g->w->cache = NULL;
    return NULL;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    wstate_t st = { .held = calloc(MAXH, sizeof(held_t)), .tmp = calloc(MAXH, sizeof(void *)),
                    .rng = h_rng_seed(w->id, 7) };
    if (!st.held || !st.tmp)
        H_DIE("out of memory");

    h_barrier_wait(w->start);
    if (opt_handles == 0) {
        run_steps(w, &st, 0, H.ops);
    } else {
        uint64_t gens = (uint64_t)opt_generations;
        for (uint64_t k = 0; k < gens; k++) {
            struct generation g = { w, &st, H.ops * k / gens, H.ops * (k + 1) / gens };
            pthread_t t;
            int rc = pthread_create(&t, NULL, generation_main, &g);
            if (rc != 0)
                H_DIE("pthread_create: %s", strerror(rc));
            pthread_join(t, NULL);
        }
    }
    /* Nobody hands off after this barrier: one last drain empties the inbox. */
    h_barrier_wait(w->stop);
    drain_inbox(w, &st.rng);
    release_checked(w, st.held, st.n, true, &st.rng);
    free(st.held);
    free(st.tmp);
    return NULL;
}

static void run_phase(const phase_t *ph)
{
    magpool_t *pool = h_create(H.block_size, ph->cap, ph->magazine);
    h_barrier_t start, stop;
    h_barrier_init(&start, H.threads);
    h_barrier_init(&stop, H.threads);
    _Atomic(batch_t *) *inbox = calloc(H.threads, sizeof *inbox);
    worker_t *w = calloc(H.threads, sizeof *w);
    if (!w || !inbox)
        H_DIE("out of memory");
    magpool_cache_t *mine = opt_borrow ? magpool_cache_get(pool) : NULL;
    for (unsigned i = 0; i < H.threads; i++) {
        atomic_init(&inbox[i], NULL);
        w[i] = (worker_t){ .pool = pool, .ph = ph, .start = &start, .stop = &stop,
                           .inbox = inbox, .id = i, .borrowed = i < 2 ? mine : NULL };
    }
    h_run_threads(H.threads, worker_main, w, sizeof *w);
    uint64_t failed = 0;
    for (unsigned i = 0; i < H.threads; i++)
        failed += w[i].failed;
    char ctx[64];
    snprintf(ctx, sizeof ctx, "phase %s", ph->name);
    magpool_stats_t s = h_check_quiescent(ctx, pool, 0, H_ANY, H_ANY, failed);
    if (ph->cap) {
        CHECK(s.blocks_total <= ph->cap, "%s: blocks_total %zu > cap %zu", ctx, s.blocks_total,
              ph->cap);
        /* Still fully usable: the whole cap in one call, parked blocks of
         * the exited threads' caches and the depot included. */
        void **all = calloc(ph->cap, sizeof *all);
        if (!all)
            H_DIE("out of memory");
        errno = 0;
        int rc = magpool_acquire_bulk(pool, all, ph->cap);
        CHECK(rc == 0, "%s: bulk acquire of the whole cap %zu after the run: errno %d", ctx,
              ph->cap, errno);
        if (rc == 0)
            magpool_release_bulk(pool, all, ph->cap);
        free(all);
    }
    if (H.verbose)
        printf("  %s: %" PRIu64 " failed calls\n", ph->name, failed);
    magpool_destroy(pool);
    h_barrier_destroy(&start);
    h_barrier_destroy(&stop);
    free(inbox);
    free(w);
}

int main(int argc, char **argv)
{
    H.ops = 20000;
    h_extra_opt_t extra[] = {
        { "max-bulk", "largest bulk acquire (blocks)", &opt_max_bulk },
        { "clear-every", "thread 0 clears the pool every N steps (0: never)",
          &opt_clear_every },
        { "handles", "1: single calls through per-thread handles, workers in generations",
          &opt_handles },
        { "generations", "--handles: threads per worker, one after the other", &opt_generations },
        { "borrow", "1: workers 0 and 1 misuse the main thread's handle (must fail)",
          &opt_borrow },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv,
            "Bulk and single acquire/release mixed across threads, with hand-offs,\n"
            "a concurrent clear, and a capped phase where bulk calls fail all or nothing.\n"
            "--ops counts steps per thread (a step may move up to --max-bulk blocks).",
            extra);
    if (opt_max_bulk < 1 || opt_max_bulk > MAXH)
        H_DIE("--max-bulk must be in [1, %d]", MAXH);
    if (opt_generations < 1 || opt_generations > 1000)
        H_DIE("--generations must be in [1, 1000]");
    if (opt_borrow && !opt_handles)
        H_DIE("--borrow needs --handles 1");
    const phase_t phases[] = {
        { "open", 0, 0 },
        { "capped", (size_t)200 * H.threads, 16 },
    };
    unsigned it = 0;
    do {
        for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
            run_phase(&phases[i]);
    } while (h_more_rounds(&it));
    return h_finish(it);
}
