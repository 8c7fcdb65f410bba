/* SPDX-License-Identifier: MIT */
/*
 * The published segment's seqlock (layout: pubseg.h). One writer (the
 * publisher thread, or a test's), any number of readers in any process;
 * readers never write, so a segment mapped read-only serves them all and
 * two readers at once cannot disturb each other or the writer.
 *
 * Orders (after Boehm, "Can seqlocks get along with programming language
 * memory models?", and the Linux kernel's write_seqcount_begin/end):
 *
 *   writer                           reader
 *   seq = s + 1        (relaxed)     s1 = seq          (acquire)  [A]
 *   fence(release)               [F] data = ...        (relaxed)
 *   data = ...         (relaxed)     fence(acquire)              [G]
 *   seq = s + 2        (release) [R] s2 = seq          (relaxed)
 *                                    whole iff s1 == s2 and s1 even
 *
 * [R] pairs with [A]: a reader that sees s + 2 sees every data word of
 * that snapshot. [F] pairs with [G]: a reader that read any data word of
 * a later snapshot (written after F) sees seq >= s + 1 at s2, so it
 * retries rather than keep a mix. Data words are relaxed atomics: no C11
 * data race, and on x86-64 plain moves.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "atomic.h"
#include "pubseg.h"

typedef _Atomic uint64_t word_t;

void pub_init(void *seg, uint64_t pid, uint64_t start_time, uint64_t capacity)
{
    word_t *w = seg;
    atomic_store_relaxed(&w[H_VERSION], PUB_VERSION); /* published by the magic */
    atomic_store_relaxed(&w[H_HEADER_SIZE], PUB_HDR_BYTES);
    atomic_store_relaxed(&w[H_RECORD_SIZE], PUB_REC_BYTES);
    atomic_store_relaxed(&w[H_PID], pid);
    atomic_store_relaxed(&w[H_START_TIME], start_time);
    atomic_store_relaxed(&w[H_CAPACITY], capacity); /* seq 0: no snapshot yet */
    /* release: pairs with pub_read's acquire load of the magic */
    atomic_store_release(&w[H_MAGIC], PUB_MAGIC);
}

void pub_write(void *seg, const uint64_t *hdr, const uint64_t *recs, size_t n)
{
    word_t *w = seg;
    /* relaxed: this thread is the only writer of seq */
    uint64_t s = atomic_load_relaxed(&w[H_SEQ]);
    atomic_store_relaxed(&w[H_SEQ], s + 1);
    atomic_thread_fence(memory_order_release); /* [F], pairs with the reader's [G] */
    for (unsigned i = H_CAPACITY; i < PUB_HDR_WORDS; i++)
        atomic_store_relaxed(&w[i], hdr[i]); /* under the seqlock */
    word_t *r = w + PUB_HDR_WORDS;
    for (size_t i = 0; i < n * PUB_REC_WORDS; i++)
        atomic_store_relaxed(&r[i], recs[i]); /* under the seqlock */
    atomic_store_release(&w[H_SEQ], s + 2); /* [R], pairs with the reader's [A] */
}

long pub_read(const void *seg, size_t seg_bytes, uint64_t *hdr, uint64_t *recs, size_t cap,
              unsigned tries)
{
    /* Readers only load; the cast drops const for atomic_load's sake
     * (C11's atomic_load takes a non-const pointer in older compilers). */
    word_t *w = (word_t *)(uintptr_t)seg;
    if (seg_bytes < PUB_HDR_BYTES) {
        hdr[H_MAGIC] = 0;
        errno = EPROTO;
        return -1;
    }
    /* acquire: pairs with the writer's release store of the magic, after
     * which the constant words are complete */
    hdr[H_MAGIC] = atomic_load_acquire(&w[H_MAGIC]);
    for (unsigned i = H_VERSION; i < H_SEQ; i++)
        hdr[i] = atomic_load_relaxed(&w[i]); /* constant once the magic is set */
    if (hdr[H_MAGIC] != PUB_MAGIC || hdr[H_VERSION] != PUB_VERSION ||
        hdr[H_HEADER_SIZE] != PUB_HDR_BYTES || hdr[H_RECORD_SIZE] < PUB_REC_BYTES) {
        errno = EPROTO;
        return -1;
    }
    size_t stride = hdr[H_RECORD_SIZE] / 8;
    while (tries-- > 0) {
        uint64_t s1 = atomic_load_acquire(&w[H_SEQ]); /* [A] */
        if (s1 & 1)
            continue; /* a snapshot is being written */
        for (unsigned i = H_CAPACITY; i < PUB_HDR_WORDS; i++)
            hdr[i] = atomic_load_relaxed(&w[i]); /* checked by s2 below */
        uint64_t n = hdr[H_NPOOLS];
        bool fits = n <= cap && n <= (seg_bytes - PUB_HDR_BYTES) / hdr[H_RECORD_SIZE];
        if (fits) {
            const word_t *r = w + PUB_HDR_WORDS;
            for (size_t k = 0; k < n; k++)
                for (size_t i = 0; i < PUB_REC_WORDS; i++)
                    recs[k * PUB_REC_WORDS + i] = atomic_load_relaxed(&r[k * stride + i]);
        }
        atomic_thread_fence(memory_order_acquire); /* [G] */
        uint64_t s2 = atomic_load_relaxed(&w[H_SEQ]); /* ordered by [G] */
        if (s1 != s2)
            continue;
        if (!fits) {
            errno = ENOBUFS;
            return -1;
        }
        hdr[H_SEQ] = s1;
        return (long)n;
    }
    errno = EAGAIN;
    return -1;
}
