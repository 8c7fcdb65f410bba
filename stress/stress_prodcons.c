/* SPDX-License-Identifier: MIT */
/*
 * stress_prodcons — blocks acquired by producers, released by consumers.
 *
 * Cross-thread release is the pattern that breaks naive per-thread caches:
 * producers' caches only ever drain, consumers' only ever fill, so every
 * block travels producer -> queue -> consumer -> depot -> producer.
 *
 * Phase 1: a P x C matrix of bounded SPSC rings (each producer round-robins
 *          over the consumers); per-ring FIFO order is checked too.
 * Phase 2: one bounded MPMC queue (Vyukov's array queue) shared by all.
 *
 * Producers write an ownership stamp over the whole block and send
 * (block, stamp) through the queue; the consumer checks the block still
 * carries that stamp, overwrites it with its own stamp, checks again, and
 * releases it. Every queue hand-off is a C11 release store paired with an
 * acquire load, so ThreadSanitizer sees the block change hands: a report
 * means the pool handed a block to two owners, or reused it too early.
 * Conservation is checked at the end of each phase (a fresh pool per phase).
 *
 * --threads N: N/2 producers and N - N/2 consumers; --ops: blocks per producer.
 */
#include "harness.h"

typedef struct msg {
    void *p;
    uint64_t tag, seq;
} msg_t;

/* ------------------------------------------------ SPSC ring (Lamport, C11) */

#define SPSC_CAP 256u

typedef struct spsc {
    _Alignas(64) atomic_size_t head; /* written by the consumer only */
    _Alignas(64) atomic_size_t tail; /* written by the producer only */
    _Alignas(64) msg_t buf[SPSC_CAP];
} spsc_t;

static bool spsc_push(spsc_t *q, msg_t m)
{
    size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed); /* own variable */
    /* acquire: pairs with the release store of head in spsc_pop, so the
     * consumer's read of the slot happens before we overwrite it. */
    size_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    if (t - h == SPSC_CAP)
        return false;
    q->buf[t % SPSC_CAP] = m;
    /* release: publishes the slot; pairs with the acquire load in spsc_pop. */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return true;
}

static bool spsc_pop(spsc_t *q, msg_t *m)
{
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* own variable */
    /* acquire: pairs with the release store of tail in spsc_push. */
    size_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (h == t)
        return false;
    *m = q->buf[h % SPSC_CAP];
    /* release: the slot may be reused; pairs with the acquire in spsc_push. */
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return true;
}

/* ------------------------------------- bounded MPMC queue (Vyukov), C11 */

#define MPMC_CAP 1024u /* power of two */

typedef struct mpmc_cell {
    atomic_size_t seq;
    msg_t m;
} mpmc_cell_t;

typedef struct mpmc {
    _Alignas(64) atomic_size_t enq;
    _Alignas(64) atomic_size_t deq;
    _Alignas(64) mpmc_cell_t cell[MPMC_CAP];
} mpmc_t;

static void mpmc_init(mpmc_t *q)
{
    for (size_t i = 0; i < MPMC_CAP; i++)
        atomic_init(&q->cell[i].seq, i);
    atomic_init(&q->enq, 0);
    atomic_init(&q->deq, 0);
}

static bool mpmc_push(mpmc_t *q, msg_t m)
{
    /* relaxed: enq only allocates positions; the cell's seq carries the data. */
    size_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
    mpmc_cell_t *c;
    for (;;) {
        c = &q->cell[pos & (MPMC_CAP - 1)];
        /* acquire: pairs with the release store in mpmc_pop that freed the cell. */
        size_t s = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)s - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->enq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* full */
        } else {
            pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
        }
    }
    c->m = m;
    /* release: publishes c->m; pairs with the acquire load in mpmc_pop. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return true;
}

static bool mpmc_pop(mpmc_t *q, msg_t *m)
{
    size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    mpmc_cell_t *c;
    for (;;) {
        c = &q->cell[pos & (MPMC_CAP - 1)];
        /* acquire: pairs with the release store in mpmc_push. */
        size_t s = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)s - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->deq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* empty */
        } else {
            pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
        }
    }
    *m = c->m;
    /* release: our read of c->m happens before the next producer's write. */
    atomic_store_explicit(&c->seq, pos + MPMC_CAP, memory_order_release);
    return true;
}

/* ------------------------------------------------------------------- test */

typedef struct shared {
    magpool_t *pool;
    unsigned producers, consumers;
    spsc_t *rings;            /* producers x consumers, ring(p, c) = rings[p*C + c] */
    mpmc_t *mpmc;             /* phase 2 */
    atomic_uint producers_done;
    atomic_uint_fast64_t consumed; /* phase 2 termination */
    uint64_t total;
    h_barrier_t start;
} shared_t;

typedef struct worker {
    shared_t *sh;
    unsigned id; /* producers 0..P-1, consumers 0..C-1 */
    bool producer;
    uint64_t acquires, releases, fifo_errors;
} worker_t;

static void consume(worker_t *w, msg_t m)
{
    CHECK_STAMP(m.p, H.block_size, m.tag, m.seq);
    /* The consumer owns the block now: overwrite it entirely, check again. */
    uint64_t mytag = H_TAG(1000 + w->id, 1);
    h_stamp_write(m.p, H.block_size, mytag, m.seq);
    CHECK_STAMP(m.p, H.block_size, mytag, m.seq);
    magpool_release(w->sh->pool, m.p);
    w->releases++;
}

static msg_t produce(worker_t *w, uint64_t seq)
{
    msg_t m = { NULL, H_TAG(w->id, 0), seq };
    for (;;) {
        errno = 0;
        m.p = magpool_acquire(w->sh->pool);
        CHECK(m.p != NULL, "producer %u: acquire failed on an unlimited pool, errno=%d", w->id,
              errno);
        if (m.p)
            break;
        h_pause();
    }
    w->acquires++;
    h_stamp_write(m.p, H.block_size, m.tag, m.seq);
    return m;
}

static void *spsc_worker(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    h_barrier_wait(&sh->start);
    if (w->producer) {
        unsigned c = w->id % sh->consumers;
        for (uint64_t i = 1; i <= H.ops; i++) {
            msg_t m = produce(w, i);
            /* Round-robin over consumers; if a ring is full try the next. */
            for (unsigned tries = 0;; tries++) {
                if (spsc_push(&sh->rings[(size_t)w->id * sh->consumers + c], m))
                    break;
                c = (c + 1) % sh->consumers;
                if (tries % sh->consumers == sh->consumers - 1)
                    h_pause();
            }
            c = (c + 1) % sh->consumers;
        }
        /* release: everything pushed above is visible to a consumer that
         * reads producers_done == P with acquire. */
        atomic_fetch_add_explicit(&sh->producers_done, 1, memory_order_release);
    } else {
        uint64_t *last = calloc(sh->producers, sizeof *last);
        if (!last)
            H_DIE("out of memory");
        for (;;) {
            /* acquire: pairs with the producers' release increment; read
             * BEFORE polling so that a final empty pass proves the end. */
            bool all_done = atomic_load_explicit(&sh->producers_done, memory_order_acquire) ==
                            sh->producers;
            bool got = false;
            for (unsigned p = 0; p < sh->producers; p++) {
                msg_t m;
                spsc_t *q = &sh->rings[(size_t)p * sh->consumers + w->id];
                for (int burst = 0; burst < 64 && spsc_pop(q, &m); burst++) {
                    got = true;
                    CHECK(m.seq > last[p],
                          "ring %u->%u not FIFO: seq %" PRIu64 " after %" PRIu64, p, w->id,
                          m.seq, last[p]);
                    last[p] = m.seq;
                    consume(w, m);
                }
            }
            if (!got) {
                if (all_done)
                    break;
                h_pause();
            }
        }
        free(last);
    }
    return NULL;
}

static void *mpmc_worker(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    h_barrier_wait(&sh->start);
    if (w->producer) {
        for (uint64_t i = 1; i <= H.ops; i++) {
            msg_t m = produce(w, i);
            while (!mpmc_push(sh->mpmc, m))
                h_pause();
        }
    } else {
        /* relaxed: a termination count only; the data travels through the
         * queue's own acquire/release. */
        while (atomic_load_explicit(&sh->consumed, memory_order_relaxed) < sh->total) {
            msg_t m;
            if (mpmc_pop(sh->mpmc, &m)) {
                consume(w, m);
                atomic_fetch_add_explicit(&sh->consumed, 1, memory_order_relaxed);
            } else {
                h_pause();
            }
        }
    }
    return NULL;
}

static void run_phase(const char *name, void *(*fn)(void *))
{
    shared_t *sh = aligned_alloc(64, (sizeof(shared_t) + 63) & ~(size_t)63);
    if (!sh)
        H_DIE("out of memory");
    memset(sh, 0, sizeof *sh);
    sh->producers = H.threads / 2;
    sh->consumers = H.threads - sh->producers;
    sh->total = (uint64_t)sh->producers * H.ops;
    sh->pool = h_create(H.block_size, 0, 0);
    atomic_init(&sh->producers_done, 0);
    atomic_init(&sh->consumed, 0);
    size_t nrings = (size_t)sh->producers * sh->consumers;
    sh->rings = aligned_alloc(64, nrings * sizeof(spsc_t));
    sh->mpmc = aligned_alloc(64, sizeof(mpmc_t));
    if (!sh->rings || !sh->mpmc)
        H_DIE("out of memory");
    for (size_t i = 0; i < nrings; i++) {
        atomic_init(&sh->rings[i].head, 0);
        atomic_init(&sh->rings[i].tail, 0);
    }
    mpmc_init(sh->mpmc);
    h_barrier_init(&sh->start, H.threads);

    worker_t *w = calloc(H.threads, sizeof *w);
    if (!w)
        H_DIE("out of memory");
    for (unsigned i = 0; i < H.threads; i++) {
        bool prod = i < sh->producers;
        w[i] = (worker_t){ .sh = sh, .producer = prod, .id = prod ? i : i - sh->producers };
    }
    double t0 = h_now();
    h_run_threads(H.threads, fn, w, sizeof *w);

    uint64_t acq = 0, rel = 0;
    for (unsigned i = 0; i < H.threads; i++) {
        acq += w[i].acquires;
        rel += w[i].releases;
    }
    CHECK(acq == sh->total && rel == sh->total,
          "%s: produced %" PRIu64 ", consumed %" PRIu64 ", expected %" PRIu64, name, acq, rel,
          sh->total);
    magpool_stats_t s = h_check_quiescent(name, sh->pool, 0, acq, rel, 0);
    CHECK(s.threads <= 1, "%s: stats.threads %" PRIu64 " after every worker exited", name,
          s.threads);
    if (H.verbose)
        printf("  %s: %" PRIu64 " blocks through %u producers -> %u consumers in %.2f s\n", name,
               sh->total, sh->producers, sh->consumers, h_now() - t0);

    magpool_destroy(sh->pool);
    h_barrier_destroy(&sh->start);
    free(w);
    free(sh->rings);
    free(sh->mpmc);
    free(sh);
}

int main(int argc, char **argv)
{
    h_parse(argc, argv,
            "Producers acquire, consumers release (SPSC ring matrix, then an MPMC queue).",
            NULL);
    if (H.threads < 2)
        H_DIE("--threads must be >= 2 (producers and consumers)");
    unsigned it = 0;
    do {
        run_phase("spsc matrix", spsc_worker);
        run_phase("mpmc queue", mpmc_worker);
    } while (h_more_rounds(&it));
    return h_finish(it);
}
