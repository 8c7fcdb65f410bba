/* SPDX-License-Identifier: MIT */
/*
 * Example: order objects handed from a feed handler to a strategy thread.
 *
 * The trading system of the seed design keeps an object pool so that hot
 * code does not construct and destroy an object per message. Here:
 *
 *   feed handler thread                         strategy thread
 *   ───────────────────                         ───────────────
 *   o = magpool_objpool_acquire(orders)
 *   fill o from the (simulated) market feed
 *   push o ──────────── SPSC queue ───────────▶ pop o
 *                                               act on o (sum the notional)
 *                                               magpool_objpool_release(orders, o)
 *                                                 └ reset(o) runs here
 *
 * The ObjectPool keeps objects constructed: init() runs once per object
 * (when the pool maps memory for it), reset() on every release, so an
 * acquired order is always clean and never needs a constructor call; fini()
 * runs when the memory goes back (here at destroy). max_objects bounds the
 * memory: when every order is in flight, acquire returns NULL with ENOMEM
 * and the feed handler waits for the strategy (back-pressure) instead of
 * growing without limit.
 *
 * Self-checking: exit status 0 when every order arrived intact and clean,
 * the totals agree, and the pool's counters add up.
 */
#define _POSIX_C_SOURCE 200809L /* sched_yield */

#include <magpool.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

enum { N_ORDERS = 200000, MAX_ORDERS = 256, QUEUE_CAP = 1024 };

#define ORDER_MAGIC 0x4f524445u /* "ORDE": set by init, kept by reset */

typedef struct order {
    uint32_t magic;    /* constructed-object marker                        */
    uint32_t side;     /* 0 buy, 1 sell                                    */
    uint64_t id;       /* 0 in a clean order                               */
    int64_t price;     /* in ticks                                         */
    int64_t qty;
    char symbol[16];
} order_t;

/* ---- the object pool's hooks ------------------------------------------ */

/* Counted so main() can check how often each hook ran. Relaxed: the counts
 * are read only after the threads are joined (pthread_join orders them). */
static atomic_ulong n_init, n_reset, n_fini;

static int order_init(void *obj, void *ctx)
{
    (void)ctx;
    order_t *o = obj;
    memset(o, 0, sizeof *o);
    o->magic = ORDER_MAGIC;
    atomic_fetch_add_explicit(&n_init, 1, memory_order_relaxed);
    return 0;
}

/* Runs in the releasing (strategy) thread, before the order can be handed
 * out again: no stale field can leak into the next message. */
static void order_reset(void *obj, void *ctx)
{
    (void)ctx;
    order_t *o = obj;
    uint32_t magic = o->magic;
    memset(o, 0, sizeof *o);
    o->magic = magic;
    atomic_fetch_add_explicit(&n_reset, 1, memory_order_relaxed);
}

static void order_fini(void *obj, void *ctx)
{
    (void)obj;
    (void)ctx;
    atomic_fetch_add_explicit(&n_fini, 1, memory_order_relaxed);
}

/* ---- a bounded single-producer single-consumer queue ------------------- */

typedef struct queue {
    _Alignas(64) atomic_size_t head; /* next slot to pop; written by the consumer */
    _Alignas(64) atomic_size_t tail; /* next slot to push; written by the producer */
    _Alignas(64) order_t *slot[QUEUE_CAP];
} queue_t;

static int queue_push(queue_t *q, order_t *o)
{
    size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed); /* own */
    /* acquire: pairs with the release store in queue_pop, so the consumer
     * is done with the slot before it is overwritten. */
    size_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    if (t - h == QUEUE_CAP)
        return 0;
    q->slot[t % QUEUE_CAP] = o;
    /* release: publishes the slot and the order's fields to queue_pop. */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return 1;
}

static order_t *queue_pop(queue_t *q)
{
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* own */
    /* acquire: pairs with the release store in queue_push. */
    size_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (h == t)
        return NULL;
    order_t *o = q->slot[h % QUEUE_CAP];
    /* release: pairs with the acquire load of head in queue_push. */
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return o;
}

/* ---- the two threads --------------------------------------------------- */

typedef struct shared {
    magpool_objpool_t *orders;
    queue_t queue;
    /* results, each written by one thread and read after the join */
    unsigned long dirty;     /* feed: acquired orders that were not clean   */
    unsigned long waits;     /* feed: acquires refused at max_objects       */
    unsigned long received;  /* strategy: orders popped                     */
    unsigned long corrupt;   /* strategy: orders whose fields disagree      */
    int64_t notional;        /* strategy: sum of price x qty, signed by side */
    int failed;              /* feed: an unexpected error                   */
    atomic_bool feed_done;   /* feed: no more orders will be pushed         */
} shared_t;

/* The simulated market: order i's fields are a function of i. */
static int64_t price_of(uint64_t id) { return 10000 + (int64_t)(id * 7919 % 500); }
static int64_t qty_of(uint64_t id) { return 1 + (int64_t)(id % 100); }

static void *feed_handler(void *arg)
{
    shared_t *s = arg;
    for (uint64_t id = 1; id <= N_ORDERS; id++) {
        order_t *o;
        while ((o = magpool_objpool_acquire(s->orders)) == NULL) {
            if (errno != ENOMEM) {
                perror("magpool_objpool_acquire");
                s->failed = 1;
                atomic_store_explicit(&s->feed_done, true, memory_order_release);
                return NULL;
            }
            s->waits++; /* every order is in flight: let the strategy catch up */
            sched_yield();
        }
        if (o->magic != ORDER_MAGIC || o->id != 0 || o->qty != 0 || o->symbol[0] != '\0')
            s->dirty++;
        o->id = id;
        o->side = (uint32_t)(id & 1);
        o->price = price_of(id);
        o->qty = qty_of(id);
        snprintf(o->symbol, sizeof o->symbol, "IF%04u", (unsigned)(id % 7 + 2401));
        while (!queue_push(&s->queue, o))
            sched_yield();
    }
    /* release: every push above happens before the strategy sees the flag. */
    atomic_store_explicit(&s->feed_done, true, memory_order_release);
    return NULL;
}

static void *strategy(void *arg)
{
    shared_t *s = arg;
    uint64_t expect = 1;
    for (;;) {
        order_t *o = queue_pop(&s->queue);
        if (o == NULL) {
            /* acquire: pairs with the release store in feed_handler, so a
             * last look at the queue sees every order pushed before it. */
            if (atomic_load_explicit(&s->feed_done, memory_order_acquire) &&
                (o = queue_pop(&s->queue)) == NULL)
                break;
            if (o == NULL) {
                sched_yield();
                continue;
            }
        }
        if (o->id != expect++ || o->price != price_of(o->id) || o->qty != qty_of(o->id) ||
            o->side != (o->id & 1) || strncmp(o->symbol, "IF24", 4) != 0)
            s->corrupt++;
        s->notional += (o->side ? -1 : 1) * o->price * o->qty;
        s->received++;
        magpool_objpool_release(s->orders, o); /* reset() runs now, here */
    }
    return NULL;
}

int main(void)
{
    static shared_t s; /* static: the queue is 24 KiB */
    magpool_objpool_config_t cfg = {
        .obj_size = sizeof(order_t),
        .initial_objects = 64,     /* constructed up front           */
        .max_objects = MAX_ORDERS, /* never more orders than this     */
        .init = order_init,
        .reset = order_reset,
        .fini = order_fini,
    };
    s.orders = magpool_objpool_create(&cfg);
    if (s.orders == NULL) {
        perror("magpool_objpool_create");
        return 1;
    }

    pthread_t feed, strat;
    if (pthread_create(&strat, NULL, strategy, &s) != 0 ||
        pthread_create(&feed, NULL, feed_handler, &s) != 0) {
        fprintf(stderr, "order_handoff: pthread_create failed\n");
        return 1;
    }
    pthread_join(feed, NULL);
    pthread_join(strat, NULL);

    /* What the strategy must have seen, computed without the pool. */
    int64_t want_notional = 0;
    for (uint64_t id = 1; id <= N_ORDERS; id++)
        want_notional += (id & 1 ? -1 : 1) * price_of(id) * qty_of(id);

    magpool_objpool_stats_t st;
    magpool_objpool_get_stats(s.orders, &st);
    size_t idle = magpool_objpool_size(s.orders);
    unsigned long inits = atomic_load_explicit(&n_init, memory_order_relaxed);
    printf("orders: %lu received, notional %lld, %lu objects constructed for %d orders, "
           "%lu resets, %lu waits at max_objects, hit rate %.4f, %zu idle\n",
           s.received, (long long)s.notional, inits, N_ORDERS,
           atomic_load_explicit(&n_reset, memory_order_relaxed), s.waits, st.hit_rate, idle);

    CHECK(!s.failed);
    CHECK(s.received == N_ORDERS);
    CHECK(s.corrupt == 0);
    CHECK(s.dirty == 0);                        /* reset() cleaned every order */
    CHECK(s.notional == want_notional);
    CHECK(st.acquires == N_ORDERS && st.releases == N_ORDERS);
    CHECK(st.blocks_outstanding == 0);
    CHECK(inits <= MAX_ORDERS);                 /* constructed once, reused    */
    CHECK(atomic_load_explicit(&n_reset, memory_order_relaxed) == N_ORDERS);
    CHECK(idle == st.blocks_total);             /* all back, still constructed */

    magpool_objpool_destroy(s.orders);
    CHECK(atomic_load_explicit(&n_fini, memory_order_relaxed) == inits);
    return check_exit_status();
}
