/* SPDX-License-Identifier: MIT */
/*
 * stress_trim — trimming while other threads work (issue: epoch-based
 * reclamation). Workers acquire and release with ownership stamps, and every
 * so often go idle for a while with their caches loaded, so the trimmer
 * steals from live-but-idle threads; a trimmer thread loops over
 * magpool_trim(0) and magpool_trim(small age), unmapping slabs, returning
 * pages and freeing magazines under the workers' depot operations.
 * At the end: conservation, and no block lost or duplicated.
 *
 * White-box: --widen-window 1 stalls every depot popper for 50 us between
 * reading a magazine's `next` and its CAS — inside the window in which a
 * trimmer could free that magazine. With grace periods that run is clean
 * under ThreadSanitizer. --skip-grace-period 1 frees without waiting; the
 * deterministic proof that this is caught is stress_grace, not this storm
 * (whether the storm produces the interleaving depends on the scheduler).
 */
#include <sched.h>

#include "harness.h"
#include "internal.h"

typedef struct worker {
    magpool_t *pool;
    unsigned id;
    uint64_t acquires, releases;
} worker_t;

static _Atomic int workers_left;
static double opt_held = 48, opt_skip_grace = 0, opt_widen = 0;

static void depot_yield(void)
{
    usleep(50); /* a popper stalled between reading `next` and its CAS */
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    h_rng_t rng = h_rng_seed(H.seed, w->id);
    const uint64_t tag = H_TAG(w->id, 0);
    unsigned k = (unsigned)opt_held, n = 0;
    struct { void *p; uint64_t seq; } *held = calloc(k, sizeof *held);
    uint64_t seq = 0;
    for (uint64_t i = 0; i < H.ops; i++) {
        bool acquire = n == 0 || (n < k && h_below(&rng, 2));
        if (acquire) {
            void *b = magpool_acquire(w->pool);
            CHECK(b != NULL, "acquire failed (errno %d) on an unlimited pool", errno);
            if (!b)
                continue;
            held[n].p = b;
            held[n].seq = ++seq;
            h_stamp_write(b, H.block_size, tag, seq);
            n++;
            w->acquires++;
        } else {
            unsigned j = (unsigned)h_below(&rng, n);
            CHECK_STAMP(held[j].p, H.block_size, tag, held[j].seq);
            magpool_release(w->pool, held[j].p);
            held[j] = held[--n];
            w->releases++;
        }
        if ((i & 0x3fff) == 0x3fff && h_below(&rng, 4) == 0)
            usleep(2000); /* idle with a loaded cache: a steal target */
    }
    while (n > 0) {
        CHECK_STAMP(held[n - 1].p, H.block_size, tag, held[n - 1].seq);
        magpool_release(w->pool, held[--n].p);
        w->releases++;
    }
    free(held);
    atomic_fetch_sub_explicit(&workers_left, 1, memory_order_release);
    return NULL;
}

typedef struct trimmer {
    magpool_t *pool;
    uint64_t trims, returned;
} trimmer_t;

static void *trimmer_main(void *arg)
{
    trimmer_t *t = arg;
    /* acquire: pairs with the workers' release decrement (loop exit only). */
    while (atomic_load_explicit(&workers_left, memory_order_acquire) > 0) {
        t->returned += magpool_trim(t->pool, (t->trims & 1) ? 0.0 : 0.001);
        t->trims++;
        if (!opt_skip_grace)
            usleep(200);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    h_extra_opt_t extra[] = {
        { "held", "max blocks held per worker (default 48)", &opt_held },
        { "skip-grace-period", "1 = free magazines without a grace period (must fail under TSan)",
          &opt_skip_grace },
        { "widen-window", "1 = stall poppers between reading `next` and their CAS", &opt_widen },
        { NULL, NULL, NULL },
    };
    H.block_size = 256;
    h_parse(argc, argv, "trim (age 0 and tiny ages) in a loop while workers run", extra);
    magpool_test_skip_grace_period = opt_skip_grace != 0;
    if (opt_widen || opt_skip_grace)
        magpool_test_depot_pop_hook = depot_yield;
    unsigned iterations = 0;
    do {
        magpool_config_t c = magpool_config_default(H.block_size);
        c.backend = H.backend;
        c.magazine_size = 8; /* many depot trips: many magazines to free */
        c.initial_blocks = 0;
        magpool_t *pool = magpool_create(&c);
        if (!pool)
            H_DIE("magpool_create: %s", strerror(errno));
        unsigned nw = H.threads > 1 ? H.threads - 1 : 1;
        atomic_store(&workers_left, (int)nw);
        worker_t *w = calloc(nw, sizeof *w);
        pthread_t *tid = calloc(nw, sizeof *tid);
        for (unsigned i = 0; i < nw; i++) {
            w[i].pool = pool;
            w[i].id = i;
            if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0)
                H_DIE("pthread_create");
        }
        trimmer_t tr = { .pool = pool };
        pthread_t tt;
        if (pthread_create(&tt, NULL, trimmer_main, &tr) != 0)
            H_DIE("pthread_create");
        uint64_t acq = 0, rel = 0;
        for (unsigned i = 0; i < nw; i++) {
            pthread_join(tid[i], NULL);
            acq += w[i].acquires;
            rel += w[i].releases;
        }
        pthread_join(tt, NULL);
        magpool_stats_t s = h_check_quiescent("after trim storm", pool, 0, acq, rel, 0);
        if (H.verbose)
            printf("  %llu trims returned %llu blocks; %llu bytes returned, %zu magazines left\n",
                   (unsigned long long)tr.trims, (unsigned long long)tr.returned,
                   (unsigned long long)s.bytes_returned, s.magazines);
        /* Everything idle now: a clear must empty the pool entirely. */
        magpool_clear(pool);
        s = h_stats(pool);
        CHECK(s.bytes_reserved == 0, "%zu bytes still mapped after the final clear",
              s.bytes_reserved);
        CHECK(tr.trims > 0, "the trimmer never ran");
        magpool_destroy(pool);
        free(w);
        free(tid);
    } while (h_more_rounds(&iterations));
    return h_finish(iterations);
}
