/* SPDX-License-Identifier: MIT */
/*
 * Clocks for the benchmark: clock_gettime for throughput (runs last 10+ ms,
 * so its ~20 ns cost is noise), the TSC for single-operation latency (an
 * operation takes a few ns, far below clock_gettime's resolution and cost).
 */
#ifndef MAGPOOL_BENCH_TIMING_H
#define MAGPOOL_BENCH_TIMING_H

#include <stdint.h>
#include <time.h>

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
/* LFENCE before RDTSC: the read cannot start before earlier instructions
 * finish; LFENCE after: later instructions (the measured operation) cannot
 * start before the read. */
static inline uint64_t tsc_begin(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}
/* RDTSCP waits for the measured operation's instructions to retire; the
 * trailing LFENCE keeps the next sample's work from sliding in. */
static inline uint64_t tsc_end(void)
{
    unsigned aux;
    uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
}
#else
static inline uint64_t tsc_begin(void) { return (uint64_t)now_ns(); }
static inline uint64_t tsc_end(void) { return (uint64_t)now_ns(); }
#endif

/* TSC ticks per nanosecond, measured against CLOCK_MONOTONIC. */
double timing_tsc_per_ns(void);
/* Median cost, in ticks, of an empty tsc_begin/tsc_end pair: subtracted
 * from every latency sample. */
double timing_overhead_ticks(void);
/* Pin the calling thread to one CPU; returns 0 or -1. */
int timing_pin_to_cpu(int cpu);
int timing_ncpu(void);

#endif
