/* SPDX-License-Identifier: MIT */
/*
 * The published segment's seqlock under concurrent writes (lib/pubseg.c),
 * shared by test/test_publish.c (Criterion) and stress/stress_publish.c
 * (the TSan build). A writer publishes snapshots in which every word is the
 * snapshot's generation g (and 1 + g % 8 records); readers check that each
 * snapshot they get is whole: all words one g. `broken` makes the writer
 * skip the seqlock (plain stores, seq untouched): the readers must then see
 * torn snapshots, which proves they can.
 */
#ifndef MAGPOOL_SEQLOCK_CHECK_H
#define MAGPOOL_SEQLOCK_CHECK_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "pubseg.h"

#define SEQCHECK_RECS 8

struct seqcheck {
    void *seg;
    size_t bytes;
    bool broken;
    _Atomic int stop;
    _Atomic uint64_t writes, reads, torn, busy;
};

static inline int seqcheck_init(struct seqcheck *c, bool broken)
{
    memset(c, 0, sizeof *c);
    c->bytes = pub_segment_bytes(SEQCHECK_RECS);
    c->seg = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c->seg == MAP_FAILED)
        return -1;
    pub_init(c->seg, 1, 1, SEQCHECK_RECS);
    c->broken = broken;
    return 0;
}

static inline void *seqcheck_writer(void *arg)
{
    struct seqcheck *c = arg;
    uint64_t hdr[PUB_HDR_WORDS], recs[SEQCHECK_RECS * PUB_REC_WORDS];
    for (uint64_t g = 1; !atomic_load_explicit(&c->stop, memory_order_relaxed); g++) {
        size_t n = 1 + g % SEQCHECK_RECS;
        for (unsigned i = 0; i < PUB_HDR_WORDS; i++)
            hdr[i] = g;
        hdr[H_CAPACITY] = SEQCHECK_RECS;
        hdr[H_NPOOLS] = n;
        for (size_t i = 0; i < n * PUB_REC_WORDS; i++)
            recs[i] = g;
        if (c->broken) { /* no seqlock: what the readers must catch */
            _Atomic uint64_t *w = c->seg;
            for (unsigned i = H_CAPACITY; i < PUB_HDR_WORDS; i++)
                atomic_store_explicit(&w[i], hdr[i], memory_order_relaxed);
            for (size_t i = 0; i < n * PUB_REC_WORDS; i++)
                atomic_store_explicit(&w[PUB_HDR_WORDS + i], recs[i], memory_order_relaxed);
        } else {
            pub_write(c->seg, hdr, recs, n);
        }
        atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
    }
    return NULL;
}

/* A snapshot is whole when every word the writer wrote is one g. */
static inline bool seqcheck_whole(const uint64_t *hdr, const uint64_t *recs, long n)
{
    uint64_t g = hdr[H_SNAPSHOTS];
    if (hdr[H_CAPACITY] != SEQCHECK_RECS || (uint64_t)n != 1 + g % SEQCHECK_RECS)
        return false;
    for (unsigned i = H_SNAPSHOTS; i < PUB_HDR_WORDS; i++)
        if (hdr[i] != g)
            return false;
    for (long i = 0; i < n * PUB_REC_WORDS; i++)
        if (recs[i] != g)
            return false;
    return true;
}

static inline void *seqcheck_reader(void *arg)
{
    struct seqcheck *c = arg;
    uint64_t hdr[PUB_HDR_WORDS], recs[SEQCHECK_RECS * PUB_REC_WORDS];
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        long n = pub_read(c->seg, c->bytes, hdr, recs, SEQCHECK_RECS, 64);
        if (n < 0) {
            atomic_fetch_add_explicit(&c->busy, 1, memory_order_relaxed);
            continue; /* EAGAIN: the writer kept it busy; try again */
        }
        if (hdr[H_SNAPSHOTS] == 0 && n == 0)
            continue; /* before the first snapshot */
        atomic_fetch_add_explicit(&c->reads, 1, memory_order_relaxed);
        if (!seqcheck_whole(hdr, recs, n))
            atomic_fetch_add_explicit(&c->torn, 1, memory_order_relaxed);
    }
    return NULL;
}

#endif
