/* SPDX-License-Identifier: MIT */
/* Thread caches: cross-thread release, thread exit, many pools per thread,
 * pool destroyed while a user thread lives, concurrent traffic. */
#include "helpers.h"

/* ---- release from another thread ---------------------------------------- */

struct releaser {
    magpool_t *pool;
    void **blocks;
    size_t n;
    mp_gate_t done, go_on;
    int stay_alive;
};

static void *releaser_main(void *arg)
{
    struct releaser *r = arg;
    for (size_t i = 0; i < r->n; i++)
        magpool_release(r->pool, r->blocks[i]);
    if (r->stay_alive) {
        mp_gate_open(&r->done);
        mp_gate_wait(&r->go_on);
    }
    return NULL;
}

static void release_from_other_thread(magpool_backend_t backend, int stay_alive)
{
    const size_t n = 2000;
    magpool_config_t c = mp_cfg(backend, 64);
    c.magazine_size = 16;
    magpool_t *p = mp_create_ok(&c);
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s]", BN);
        mp_fill(b[i], 64, (uint32_t)i);
    }
    magpool_stats_t s0 = mp_stats(p, backend);
    struct releaser r = {.pool = p, .blocks = b, .n = n, .stay_alive = stay_alive};
    mp_gate_init(&r.done);
    mp_gate_init(&r.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, releaser_main, &r), 0);
    if (stay_alive)
        mp_gate_wait(&r.done);
    else
        pthread_join(t, NULL);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.releases, n, "[%s] releases %llu, want %zu", BN,
                 (unsigned long long)s1.releases, n);
    cr_assert_eq(s1.blocks_outstanding, 0, "[%s] outstanding %zu", BN, s1.blocks_outstanding);
    mp_assert_quiescent_invariants(&s1, 64, backend);
    /* main acquires n again: all reused, no growth */
    for (size_t i = 0; i < n; i++) {
        b[i] = magpool_acquire(p);
        cr_assert_not_null(b[i], "[%s] re-acquire %zu", BN, i);
        mp_fill(b[i], 64, (uint32_t)(i + n));
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(mp_check(b[i], 64, (uint32_t)(i + n)), "[%s] block handed out twice", BN);
    mp_assert_disjoint(b, n, 64, backend);
    magpool_stats_t s2 = mp_stats(p, backend);
    cr_assert_eq(s2.grows, s0.grows,
                 "[%s] pool grew (%llu -> %llu) although %zu blocks released by another thread "
                 "were idle (stay_alive %d)",
                 BN, (unsigned long long)s0.grows, (unsigned long long)s2.grows, n, stay_alive);
    cr_assert_eq(s2.blocks_total, s0.blocks_total, "[%s]", BN);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    if (stay_alive) {
        mp_gate_open(&r.go_on);
        pthread_join(t, NULL);
    }
    magpool_stats_t s3 = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s3, 64, backend);
    cr_assert_eq(s3.acquires, 2 * n, "[%s]", BN);
    cr_assert_eq(s3.releases, 2 * n, "[%s]", BN);
    free(b);
    magpool_destroy(p);
    mp_gate_destroy(&r.done);
    mp_gate_destroy(&r.go_on);
}

BACKEND_TEST(threads, release_from_other_thread_is_reused)
{
    release_from_other_thread(backend, 0);
}

BACKEND_TEST(threads, release_from_other_live_thread_is_reused)
{
    release_from_other_thread(backend, 1);
}

/* ---- producer / consumer -------------------------------------------------- */

#define RING 256
struct ring {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *slot[RING];
    size_t head, tail;
    int producers_left;
};

struct pc_arg {
    magpool_t *pool;
    struct ring *ring;
    uint32_t id;
    size_t n;
    size_t bad;
};

static void *producer_main(void *arg)
{
    struct pc_arg *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        uint32_t *blk = magpool_acquire(a->pool);
        if (!blk) {
            a->bad++;
            continue;
        }
        blk[0] = a->id;
        blk[1] = (uint32_t)i;
        blk[2] = a->id ^ (uint32_t)i ^ 0xdeadbeefu;
        pthread_mutex_lock(&a->ring->mu);
        while (a->ring->head - a->ring->tail == RING)
            pthread_cond_wait(&a->ring->cv, &a->ring->mu);
        a->ring->slot[a->ring->head++ % RING] = blk;
        pthread_cond_broadcast(&a->ring->cv);
        pthread_mutex_unlock(&a->ring->mu);
    }
    pthread_mutex_lock(&a->ring->mu);
    a->ring->producers_left--;
    pthread_cond_broadcast(&a->ring->cv);
    pthread_mutex_unlock(&a->ring->mu);
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct pc_arg *a = arg;
    for (;;) {
        pthread_mutex_lock(&a->ring->mu);
        while (a->ring->head == a->ring->tail && a->ring->producers_left > 0)
            pthread_cond_wait(&a->ring->cv, &a->ring->mu);
        if (a->ring->head == a->ring->tail) {
            pthread_mutex_unlock(&a->ring->mu);
            break;
        }
        uint32_t *blk = a->ring->slot[a->ring->tail++ % RING];
        pthread_cond_broadcast(&a->ring->cv);
        pthread_mutex_unlock(&a->ring->mu);
        if (blk[2] != (blk[0] ^ blk[1] ^ 0xdeadbeefu))
            a->bad++;
        blk[2] = 0;
        magpool_release(a->pool, blk);
        a->n++;
    }
    return NULL;
}

BACKEND_TEST(threads, producer_consumer_blocks_are_intact_and_accounted)
{
    magpool_config_t c = mp_cfg(backend, 32);
    c.magazine_size = 8;
    magpool_t *p = mp_create_ok(&c);
    struct ring ring = {.producers_left = 2};
    pthread_mutex_init(&ring.mu, NULL);
    pthread_cond_init(&ring.cv, NULL);
    const size_t per = 20000;
    struct pc_arg prod[2], cons[2];
    pthread_t tp[2], tc[2];
    for (int i = 0; i < 2; i++) {
        prod[i] = (struct pc_arg){.pool = p, .ring = &ring, .id = (uint32_t)i + 1, .n = per};
        cons[i] = (struct pc_arg){.pool = p, .ring = &ring};
        cr_assert_eq(pthread_create(&tc[i], NULL, consumer_main, &cons[i]), 0);
        cr_assert_eq(pthread_create(&tp[i], NULL, producer_main, &prod[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(tp[i], NULL);
        pthread_join(tc[i], NULL);
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(prod[i].bad, 0, "[%s] producer %d: %zu acquires failed", BN, i,
                     prod[i].bad);
        cr_assert_eq(cons[i].bad, 0, "[%s] consumer %d: %zu blocks corrupted in flight", BN, i,
                     cons[i].bad);
    }
    cr_assert_eq(cons[0].n + cons[1].n, 2 * per, "[%s]", BN);
    magpool_stats_t s = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s, 32, backend);
    cr_assert_eq(s.acquires, 2 * per, "[%s] acquires %llu", BN, (unsigned long long)s.acquires);
    cr_assert_eq(s.releases, 2 * per, "[%s] releases %llu", BN, (unsigned long long)s.releases);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    /* at most RING + a few in flight at any time: the pool must not grow without bound */
    cr_assert_leq(s.blocks_total, 16 * RING, "[%s] blocks_total %zu for <= %d in flight", BN,
                  s.blocks_total, RING + 2);
    magpool_destroy(p);
    pthread_mutex_destroy(&ring.mu);
    pthread_cond_destroy(&ring.cv);
}

/* ---- thread exit -------------------------------------------------------- */

struct user {
    magpool_t *pool;
    size_t n;
    int ok;
};

static void *acquire_release_n(void *arg)
{
    struct user *u = arg;
    void **b = calloc(u->n, sizeof *b);
    u->ok = b != NULL;
    for (size_t i = 0; u->ok && i < u->n; i++)
        if (!(b[i] = magpool_acquire(u->pool)))
            u->ok = 0;
    for (size_t i = 0; b && i < u->n; i++)
        if (b[i])
            magpool_release(u->pool, b[i]);
    free(b);
    return NULL;
}

static void thread_exit_flushes(magpool_backend_t backend, unsigned mag, size_t max)
{
    const size_t n = 1000;
    magpool_config_t c = mp_cfg(backend, 64);
    c.magazine_size = mag;
    c.max_blocks = max;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s0 = mp_stats(p, backend);
    struct user u = {.pool = p, .n = n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, acquire_release_n, &u), 0);
    pthread_join(t, NULL);
    cr_assert(u.ok, "[%s] helper thread acquire failed", BN);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.threads, s0.threads, "[%s] threads %llu after the only other user exited, "
                 "was %llu before", BN, (unsigned long long)s1.threads,
                 (unsigned long long)s0.threads);
    void **b = calloc(n, sizeof *b);
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] main acquire %zu", BN, i);
    magpool_stats_t s2 = mp_stats(p, backend);
    cr_assert_eq(s2.grows, s1.grows,
                 "[%s] main grew the pool (%llu -> %llu): the exited thread's cache was not "
                 "flushed (mag %u)",
                 BN, (unsigned long long)s1.grows, (unsigned long long)s2.grows, mag);
    cr_assert_eq(s2.steals, s1.steals,
                 "[%s] main had to steal (%llu -> %llu) from a thread that has exited", BN,
                 (unsigned long long)s1.steals, (unsigned long long)s2.steals);
    cr_assert_eq(s2.blocks_total, s1.blocks_total, "[%s]", BN);
    cr_assert_eq(s2.hits - s1.hits, n, "[%s] only %llu of %zu re-acquires were hits", BN,
                 (unsigned long long)(s2.hits - s1.hits), n);
    for (size_t i = 0; i < n; i++)
        magpool_release(p, b[i]);
    free(b);
    magpool_destroy(p);
}

BACKEND_TEST(threads, thread_exit_flushes_its_cache)
{
    thread_exit_flushes(backend, 0, 0);
}

BACKEND_TEST(threads, thread_exit_flushes_its_cache_mag8)
{
    thread_exit_flushes(backend, 8, 0);
}

BACKEND_TEST(threads, thread_exit_flushes_its_cache_at_cap)
{
    thread_exit_flushes(backend, 8, 1000);
}

BACKEND_TEST(threads, threads_counter_tracks_attached_caches)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s0 = mp_stats(p, backend);
    struct user u[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        u[i] = (struct user){.pool = p, .n = 100};
        cr_assert_eq(pthread_create(&t[i], NULL, acquire_release_n, &u[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.threads, s0.threads, "[%s] threads %llu after 4 users exited, was %llu", BN,
                 (unsigned long long)s1.threads, (unsigned long long)s0.threads);
    if (backend == MAGPOOL_LOCKFREE) {
        void *b = magpool_acquire(p); /* main attaches a cache */
        cr_assert_not_null(b);
        magpool_stats_t s2 = mp_stats(p, backend);
        cr_assert_geq(s2.threads, 1, "[%s] threads 0 while main holds a cache", BN);
        magpool_release(p, b);
    }
    magpool_destroy(p);
}

/* ---- one thread, 1000 pools ------------------------------------------- */

struct many {
    magpool_backend_t backend;
    size_t npools;
    magpool_t **pools;
    int destroy_in_thread;
    char err[256];
};

static void *many_pools_main(void *arg)
{
    struct many *m = arg;
    magpool_backend_t backend = m->backend;
    for (size_t i = 0; i < m->npools; i++) {
        magpool_config_t c = mp_cfg(backend, 16 + (i % 8) * 8);
        c.initial_blocks = 2;
        m->pools[i] = magpool_create(&c);
        if (!m->pools[i]) {
            snprintf(m->err, sizeof m->err, "create %zu failed errno %d", i, errno);
            return NULL;
        }
    }
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < m->npools; i++) {
            void *b[5];
            for (int k = 0; k < 5; k++) {
                b[k] = magpool_acquire(m->pools[i]);
                if (!b[k]) {
                    snprintf(m->err, sizeof m->err, "acquire pool %zu failed", i);
                    return NULL;
                }
                memset(b[k], (int)i, magpool_block_size(m->pools[i]));
            }
            for (int k = 0; k < 5; k++)
                magpool_release(m->pools[i], b[k]);
        }
    for (size_t i = 0; i < m->npools; i++) {
        magpool_stats_t s;
        if (magpool_get_stats(m->pools[i], &s) != 0 || s.acquires != 10 || s.releases != 10 ||
            s.blocks_outstanding != 0 || s.hits + s.misses != 10) {
            snprintf(m->err, sizeof m->err,
                     "pool %zu stats: acquires %llu releases %llu outstanding %zu", i,
                     (unsigned long long)s.acquires, (unsigned long long)s.releases,
                     s.blocks_outstanding);
            return NULL;
        }
    }
    if (m->destroy_in_thread)
        for (size_t i = 0; i < m->npools; i++) {
            magpool_destroy(m->pools[i]);
            m->pools[i] = NULL;
        }
    return NULL;
}

static void many_pools(magpool_backend_t backend, int destroy_in_thread)
{
    struct many m = {.backend = backend, .npools = 1000, .destroy_in_thread = destroy_in_thread};
    m.pools = calloc(m.npools, sizeof *m.pools);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, many_pools_main, &m), 0);
    pthread_join(t, NULL);
    cr_assert_str_empty(m.err, "[%s] %s", BN, m.err);
    if (!destroy_in_thread) {
        /* the thread exited holding caches of 1000 live pools: all flushed */
        for (size_t i = 0; i < m.npools; i++) {
            magpool_stats_t s = mp_stats(m.pools[i], backend);
            cr_assert_eq(s.blocks_outstanding, 0, "[%s] pool %zu", BN, i);
            cr_assert_eq(s.threads, 0, "[%s] pool %zu still has %llu caches after the thread "
                         "exited", BN, i, (unsigned long long)s.threads);
            void *b = magpool_acquire(m.pools[i]);
            cr_assert_not_null(b, "[%s] pool %zu", BN, i);
            magpool_release(m.pools[i], b);
            magpool_destroy(m.pools[i]);
        }
    }
    free(m.pools);
}

BACKEND_TEST(threads, thread_using_1000_pools_destroys_them)
{
    many_pools(backend, 1);
}

BACKEND_TEST(threads, thread_exits_with_caches_of_1000_live_pools)
{
    many_pools(backend, 0);
}

BACKEND_TEST(threads, main_thread_using_1000_pools_in_a_loop)
{
    for (int round = 0; round < 3; round++) {
        magpool_t *pools[1000];
        for (int i = 0; i < 1000; i++) {
            magpool_config_t c = mp_cfg(backend, 24);
            c.initial_blocks = 1;
            pools[i] = mp_create_ok(&c);
            void *b = magpool_acquire(pools[i]);
            cr_assert_not_null(b, "[%s] round %d pool %d", BN, round, i);
            magpool_release(pools[i], b);
        }
        for (int i = 0; i < 1000; i++) {
            magpool_stats_t s = mp_stats(pools[i], backend);
            cr_assert_eq(s.acquires, 1, "[%s] round %d pool %d acquires %llu", BN, round, i,
                         (unsigned long long)s.acquires);
            cr_assert_eq(s.releases, 1, "[%s] round %d pool %d", BN, round, i);
            magpool_destroy(pools[i]);
        }
    }
}

/* ---- pool destroyed while a user thread lives ------------------------- */

struct survivor {
    magpool_t *pool;
    mp_gate_t used, next_pool, done;
    int ok;
};

static void *survivor_main(void *arg)
{
    struct survivor *s = arg;
    void *b[100];
    /* fill my cache of pool A */
    for (int i = 0; i < 100; i++)
        b[i] = magpool_acquire(s->pool);
    for (int i = 0; i < 100; i++)
        if (b[i])
            magpool_release(s->pool, b[i]);
    mp_gate_open(&s->used);
    mp_gate_wait(&s->next_pool); /* main destroyed A and created B meanwhile */
    s->ok = 1;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 100; i++) {
            b[i] = magpool_acquire(s->pool);
            if (!b[i]) {
                s->ok = 0;
                return NULL;
            }
            memset(b[i], 0x3c, 64);
        }
        for (int i = 0; i < 100; i++)
            magpool_release(s->pool, b[i]);
    }
    mp_gate_open(&s->done);
    return NULL; /* thread exit flushes its cache of B (and must ignore A) */
}

BACKEND_TEST(threads, pool_destroyed_while_user_thread_alive_then_slot_reused)
{
    for (int iter = 0; iter < 5; iter++) {
        magpool_config_t c = mp_cfg(backend, 64);
        c.magazine_size = 8;
        struct survivor s = {.pool = mp_create_ok(&c)};
        mp_gate_init(&s.used);
        mp_gate_init(&s.next_pool);
        mp_gate_init(&s.done);
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, survivor_main, &s), 0);
        mp_gate_wait(&s.used);
        magpool_stats_t sa = mp_stats(s.pool, backend);
        if (backend == MAGPOOL_LOCKFREE)
            cr_assert_geq(sa.threads, 1, "[%s] live user thread not counted", BN);
        magpool_destroy(s.pool);
        /* new pools likely reuse the destroyed pool's memory and cache slot */
        magpool_t *spare[4];
        for (int i = 0; i < 4; i++) {
            magpool_config_t c2 = mp_cfg(backend, 64);
            spare[i] = mp_create_ok(&c2);
        }
        magpool_config_t cb = mp_cfg(backend, 64);
        cb.magazine_size = 8;
        s.pool = mp_create_ok(&cb);
        for (int i = 0; i < 4; i++)
            magpool_destroy(spare[i]);
        magpool_stats_t sb0 = mp_stats(s.pool, backend);
        cr_assert_eq(sb0.acquires, 0, "[%s] new pool inherited counters", BN);
        cr_assert_eq(sb0.threads, 0, "[%s] new pool inherited a cache of the destroyed one", BN);
        mp_gate_open(&s.next_pool);
        pthread_join(t, NULL);
        cr_assert(s.ok, "[%s] iter %d: the surviving thread could not use the new pool", BN,
                  iter);
        magpool_stats_t sb = mp_stats(s.pool, backend);
        mp_assert_quiescent_invariants(&sb, 64, backend);
        cr_assert_eq(sb.acquires, 2000, "[%s] acquires %llu on new pool, want 2000", BN,
                     (unsigned long long)sb.acquires);
        cr_assert_eq(sb.blocks_outstanding, 0, "[%s]", BN);
        cr_assert_eq(sb.threads, 0, "[%s] threads %llu after user exit", BN,
                     (unsigned long long)sb.threads);
        /* no block of A leaked into B: B's blocks are fully usable and distinct */
        void *b[300];
        for (int i = 0; i < 300; i++) {
            cr_assert_not_null(b[i] = magpool_acquire(s.pool));
            mp_fill(b[i], 64, (uint32_t)i);
        }
        for (int i = 0; i < 300; i++)
            cr_assert(mp_check(b[i], 64, (uint32_t)i), "[%s] overlap", BN);
        mp_assert_disjoint(b, 300, 64, backend);
        for (int i = 0; i < 300; i++)
            magpool_release(s.pool, b[i]);
        magpool_destroy(s.pool);
        mp_gate_destroy(&s.used);
        mp_gate_destroy(&s.next_pool);
        mp_gate_destroy(&s.done);
    }
}

struct idle_user {
    magpool_t *pool;
    mp_gate_t used, go_on;
};

static void *idle_user_main(void *arg)
{
    struct idle_user *u = arg;
    void *b[50];
    for (int i = 0; i < 50; i++)
        b[i] = magpool_acquire(u->pool);
    for (int i = 0; i < 50; i++)
        if (b[i])
            magpool_release(u->pool, b[i]);
    mp_gate_open(&u->used);
    mp_gate_wait(&u->go_on);
    return NULL; /* exits after its pool is gone */
}

BACKEND_TEST(threads, thread_exits_after_its_pool_was_destroyed)
{
    magpool_config_t c = mp_cfg(backend, 64);
    struct idle_user u = {.pool = mp_create_ok(&c)};
    mp_gate_init(&u.used);
    mp_gate_init(&u.go_on);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, idle_user_main, &u), 0);
    mp_gate_wait(&u.used);
    magpool_destroy(u.pool);
    /* churn the allocator so the old pool memory is reused */
    for (int i = 0; i < 50; i++) {
        magpool_config_t c2 = mp_cfg(backend, 64);
        magpool_t *q = mp_create_ok(&c2);
        magpool_destroy(q);
    }
    mp_gate_open(&u.go_on);
    cr_assert_eq(pthread_join(t, NULL), 0, "[%s]", BN);
    /* the process is still sane */
    magpool_t *q = mp_create_ok(&c);
    void *b = magpool_acquire(q);
    cr_assert_not_null(b, "[%s]", BN);
    magpool_release(q, b);
    magpool_destroy(q);
}

/* ---- concurrent hammer --------------------------------------------------- */

struct hammer {
    magpool_t *pool;
    uint32_t id;
    size_t iters;
    size_t bad, failed;
    uint64_t acq, rel;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    void *held[64] = {0};
    uint32_t seed = h->id * 2654435761u + 1;
    for (size_t i = 0; i < h->iters; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 64;
        if (held[k]) {
            uint32_t *w = held[k];
            if (w[0] != h->id || w[1] != k)
                h->bad++;
            magpool_release(h->pool, held[k]);
            h->rel++;
            held[k] = NULL;
        } else {
            uint32_t *w = magpool_acquire(h->pool);
            if (!w) {
                h->failed++;
                continue;
            }
            h->acq++;
            w[0] = h->id;
            w[1] = k;
            held[k] = w;
        }
    }
    for (unsigned k = 0; k < 64; k++)
        if (held[k]) {
            magpool_release(h->pool, held[k]);
            h->rel++;
        }
    return NULL;
}

static void hammer(magpool_backend_t backend, size_t max, unsigned mag)
{
    magpool_config_t c = mp_cfg(backend, 16);
    c.max_blocks = max;
    c.magazine_size = mag;
    magpool_t *p = mp_create_ok(&c);
    enum { T = 4 };
    struct hammer h[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        h[i] = (struct hammer){.pool = p, .id = (uint32_t)i + 1, .iters = 200000};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    uint64_t acq = 0, rel = 0, failed = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(h[i].bad, 0, "[%s] thread %d saw %zu blocks overwritten by another", BN, i,
                     h[i].bad);
        acq += h[i].acq;
        rel += h[i].rel;
        failed += h[i].failed;
    }
    if (max == 0 || max >= T * 64)
        cr_assert_eq(failed, 0, "[%s] %llu acquires failed with cap %zu >= %d in use", BN,
                     (unsigned long long)failed, max, T * 64);
    magpool_stats_t s = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s, 16, backend);
    cr_assert_eq(s.acquires, acq, "[%s] acquires %llu, threads counted %llu", BN,
                 (unsigned long long)s.acquires, (unsigned long long)acq);
    cr_assert_eq(s.releases, rel, "[%s]", BN);
    cr_assert_eq(s.failed, failed, "[%s] failed %llu, threads counted %llu", BN,
                 (unsigned long long)s.failed, (unsigned long long)failed);
    cr_assert_eq(s.blocks_outstanding, 0, "[%s]", BN);
    if (max)
        cr_assert_leq(s.blocks_total, max, "[%s]", BN);
    magpool_destroy(p);
}

BACKEND_TEST(threads, concurrent_acquire_release_keeps_blocks_private)
{
    hammer(backend, 0, 0);
}

BACKEND_TEST(threads, concurrent_acquire_release_at_tight_cap)
{
    hammer(backend, 4 * 64, 4); /* exactly enough: no acquire may fail */
}

BACKEND_TEST(threads, concurrent_acquire_release_below_cap_fails_cleanly)
{
    hammer(backend, 100, 8); /* too few: failures allowed, accounting must hold */
}
