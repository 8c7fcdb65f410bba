/* SPDX-License-Identifier: MIT */
/*
 * The published segment's layout (version 1) and its seqlock: what
 * lib/publish.c writes into /dev/shm/magpool.<pid> and what the tools
 * (tools/liveview.py) and tests read. docs/live-view.md describes it
 * for readers in other languages; a change of meaning or position of any
 * word below is a new PUB_VERSION.
 *
 * Every word is a little-endian (host order) 64-bit unsigned integer,
 * accessed as a C11 atomic, so a writer and a reader never race in the
 * C11 sense (a seqlock over plain memcpy would: Boehm, "Can seqlocks get
 * along with programming language memory models?", MSPC 2012).
 *
 *   header: PUB_HDR_WORDS words
 *   records: capacity records of record_size bytes, the first npools used
 *
 * Words H_MAGIC .. H_START_TIME are written once, before the magic is
 * (release), and never change. Everything from H_CAPACITY on, and every
 * record, is written under the seqlock H_SEQ: odd while a snapshot is
 * being written, even when it is whole. A reader copies, then checks that
 * H_SEQ was even and unchanged across the copy, else retries.
 */
#ifndef MAGPOOL_PUBSEG_H
#define MAGPOOL_PUBSEG_H

#include <stddef.h>
#include <stdint.h>

#define PUB_MAGIC   0x004c4f4f5047414dull /* "MAGPOOL\0" in little-endian bytes */
#define PUB_VERSION 1u

enum pub_header_word {
    H_MAGIC,        /* PUB_MAGIC once the header is complete (0 before)     */
    H_VERSION,      /* PUB_VERSION                                          */
    H_HEADER_SIZE,  /* bytes before the first record                        */
    H_RECORD_SIZE,  /* bytes per record (a reader uses the words it knows)  */
    H_PID,          /* the publishing process                               */
    H_START_TIME,   /* its start time, field 22 of /proc/<pid>/stat (clock
                       ticks after boot; 0 if /proc was not readable): a
                       reused pid has another                               */
    H_SEQ,          /* seqlock: odd while a snapshot is written             */
    H_CAPACITY,     /* records the segment has room for                     */
    H_NPOOLS,       /* records in this snapshot                             */
    H_SNAPSHOTS,    /* snapshots published so far (this one included)       */
    H_MONO_NS,      /* CLOCK_MONOTONIC when taken                           */
    H_REAL_NS,      /* CLOCK_REALTIME when taken                            */
    H_INTERVAL_MS,  /* the publishing interval                              */
    H_UNPUBLISHED,  /* live pools left out of this snapshot (no memory)     */
    PUB_HDR_WORDS = 16
};

enum pub_record_word {
    R_UID,          /* never reused in the process: tells pools apart       */
    R_BLOCK_SIZE,
    R_MAX_BLOCKS,   /* 0 = unlimited                                        */
    R_MAGAZINE_SIZE,/* 0 for the mutex backend                              */
    R_BACKEND,      /* 0 lock-free, 1 mutex                                 */
    R_LAYER,        /* 0 none, 1 objpool, 2 bufmgr, 3 another layer         */
    R_DIAG,         /* MAGPOOL_DIAG_* bits                                  */
    R_STATS,        /* magpool_stats_t's integer fields from here, in the
                       order of pub_stat_fields (lib/publish.c)             */
    R_NAME = 32,    /* the name, NUL-terminated, R_NAME_WORDS words         */
    R_NAME_WORDS = 8,
    PUB_REC_WORDS = 40
};

/* The stats words, in order (R_STATS + index). */
#define PUB_STAT_FIELDS(X)                                                     \
    X(acquires) X(releases) X(hits) X(misses) X(grows) X(trims) X(failed)      \
    X(blocks_total) X(blocks_outstanding) X(bytes_reserved) X(depot_gets)      \
    X(depot_puts) X(steals) X(threads) X(bytes_returned) X(magazines)          \
    X(errors) X(reclaims) X(spilled)
#define PUB_COUNT_ONE(f) +1
enum { PUB_NSTATS = 0 PUB_STAT_FIELDS(PUB_COUNT_ONE) };
_Static_assert(R_STATS + PUB_NSTATS <= R_NAME, "stats overlap the name");

#define PUB_HDR_BYTES (PUB_HDR_WORDS * 8u)
#define PUB_REC_BYTES (PUB_REC_WORDS * 8u)

static inline size_t pub_segment_bytes(size_t capacity)
{
    return PUB_HDR_BYTES + capacity * PUB_REC_BYTES;
}

/*
 * The seqlock (the writer is one thread; readers anywhere). seg: the
 * mapping, seen as words. pub_write copies hdr[H_CAPACITY ..] and n records
 * in one snapshot; pub_read copies the last whole snapshot out. pub_init
 * writes the constant header words of a zeroed segment, the magic last.
 */
void pub_init(void *seg, uint64_t pid, uint64_t start_time, uint64_t capacity);
void pub_write(void *seg, const uint64_t *hdr, const uint64_t *recs, size_t n);
/* Copy the header and up to cap records of one whole snapshot into hdr /
 * recs (cap * PUB_REC_WORDS words), looking at no more than seg_bytes.
 * @return the number of records copied; -1 with errno EPROTO (no magpool
 * segment, or another layout version: hdr[H_MAGIC] / hdr[H_VERSION] say
 * which), EAGAIN (no stable snapshot within tries attempts), ENOBUFS (more
 * records than cap; hdr[H_NPOOLS] says how many). */
long pub_read(const void *seg, size_t seg_bytes, uint64_t *hdr, uint64_t *recs, size_t cap,
              unsigned tries);

#endif
