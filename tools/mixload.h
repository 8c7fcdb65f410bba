/* SPDX-License-Identifier: MIT */
/*
 * A trading-engine mix over several pools, for the live view's demo
 * (tools/magpool-demo.c) and its cost benchmark (bench/bench_publish.c):
 * bench/workloads.c's "mix" (a timing wheel of live orders with mostly short
 * and a few long lifetimes, bursts one tick in ten) spread over an order
 * pool and a fill pool, with a load factor that a caller changes over time
 * so that pools grow and, when the load falls, trims give memory back.
 * One struct mix per thread; the pools are shared.
 */
#ifndef MAGPOOL_MIXLOAD_H
#define MAGPOOL_MIXLOAD_H

#include <stdint.h>

#include "magpool.h"

#define MIXLOAD_WHEEL 4096u

struct mix_order {
    struct mix_order *next;
    uint64_t id;
    int64_t price;
    int32_t qty, side;
};

struct mixload {
    magpool_t *orders, *fills;
    struct mix_order *wheel[MIXLOAD_WHEEL];
    struct mix_order *fills_due;  /* fills live one tick */
    uint64_t tick, next_id, rng, ops;
    uint32_t live, max_live;      /* the caller's load: a cap on live orders */
    uint32_t burst_mul;           /* and orders per tick x this (0: x1)     */
};

static inline uint64_t mixload_rand(struct mixload *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

/* Mostly cancelled or filled at once, some rest a while, a few long. */
static inline uint32_t mixload_lifetime(struct mixload *m)
{
    uint64_t u = mixload_rand(m) % 100, r = mixload_rand(m);
    return u < 70 ? 1 + (uint32_t)(r % 8)
         : u < 95 ? 8 + (uint32_t)(r % 248) : 256 + (uint32_t)(r % (MIXLOAD_WHEEL - 257));
}

/* One tick: retire the due orders and last tick's fills, then a burst of
 * new orders, a third of which fill. -1 when a pool is exhausted. */
static inline int mixload_tick(struct mixload *m)
{
    struct mix_order **b = &m->wheel[m->tick % MIXLOAD_WHEEL];
    for (struct mix_order *o = *b, *n; o; o = n) {
        n = o->next;
        magpool_release(m->orders, o);
        m->live--;
        m->ops++;
    }
    *b = NULL;
    for (struct mix_order *f = m->fills_due, *n; f; f = n) {
        n = f->next;
        magpool_release(m->fills, f);
        m->ops++;
    }
    m->fills_due = NULL;
    uint32_t burst = mixload_rand(m) % 10 == 0 ? 16 + (uint32_t)(mixload_rand(m) % 113)
                                               : 1 + (uint32_t)(mixload_rand(m) % 4);
    burst *= m->burst_mul ? m->burst_mul : 1;
    for (uint32_t i = 0; i < burst && m->live < m->max_live; i++) {
        struct mix_order *o = magpool_acquire(m->orders);
        if (o == NULL)
            return -1;
        o->id = m->next_id++;
        o->price = (int64_t)(mixload_rand(m) % 10000);
        o->qty = 1 + (int32_t)(o->id % 100);
        o->side = (int32_t)(o->id & 1);
        struct mix_order **d = &m->wheel[(m->tick + mixload_lifetime(m)) % MIXLOAD_WHEEL];
        o->next = *d;
        *d = o;
        m->live++;
        m->ops++;
        if (o->id % 3 == 0) {
            struct mix_order *f = magpool_acquire(m->fills);
            if (f == NULL)
                return -1;
            f->id = o->id;
            f->next = m->fills_due;
            m->fills_due = f;
            m->ops++;
        }
    }
    m->tick++;
    return 0;
}

/* Release everything still live. */
static inline void mixload_drain(struct mixload *m)
{
    m->max_live = 0;
    for (uint32_t i = 0; i < MIXLOAD_WHEEL + 1; i++)
        mixload_tick(m);
}

#endif
