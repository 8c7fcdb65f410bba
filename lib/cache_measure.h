/* SPDX-License-Identifier: MIT */
/*
 * The fast path's ingredients, named once so that a measurement build can
 * take each one out (scripts/cost_account.sh; docs/benchmarks.md, "Cost
 * account of the fast path"). cache.c writes its fast paths with these
 * macros only; in the product they are exactly the code they name.
 *
 * Measurement-only switches (-D on the compiler command line):
 *
 *   MAGPOOL_MEASURE_NO_STATS      no per-thread acquires/releases counter
 *   MAGPOOL_MEASURE_NO_HANDSHAKE  no busy store before and after, no steal
 *                                 check (the slow paths still enter/leave)
 *   MAGPOOL_MEASURE_NO_NULLCHECK  no NULL test of pool, handle or block
 *
 * (The fourth ingredient of the first account, the thread-directory lookup,
 * is no switch any more: the per-thread handle, magpool_cache_get(), is the
 * product's way to go without it.)
 *
 * A library built with any of them is INCORRECT BY CONSTRUCTION and must
 * never be the default or be installed: without the handshake a steal (at
 * the cap, trim, fork) races the owner and hands blocks out twice, and a
 * diagnostic pool's handle skips its checks; without the counters the
 * statistics are wrong; without the NULL test magpool_release(p, NULL)
 * stores NULL into a magazine.
 *
 * Used by cache.c only, after cache_enter / cache_leave / steal_pending.
 */
#ifndef MAGPOOL_CACHE_MEASURE_H
#define MAGPOOL_CACHE_MEASURE_H

#if defined(MAGPOOL_MEASURE_NO_STATS) || defined(MAGPOOL_MEASURE_NO_HANDSHAKE) || \
    defined(MAGPOOL_MEASURE_NO_NULLCHECK)
#warning "magpool: MAGPOOL_MEASURE_* build: incorrect by construction, for scripts/cost_account.sh only"
#endif
#ifdef MAGPOOL_MEASURE_NO_LOOKUP
#error "MAGPOOL_MEASURE_NO_LOOKUP is gone: measure the per-thread handle (magpool_cache_get)"
#endif

/* fast_count(counter): one acquire or release of the owner. */
#ifdef MAGPOOL_MEASURE_NO_STATS
#define fast_count(c) ((void)0)
#else
#define fast_count(c) counter_inc_fast(c)
#endif

/* fast_enter(tc); if (!fast_stopped(tc)) { ...; fast_leave(tc); }
 * else { fast_to_slow(tc); slow path, entered with busy == 1 }.
 * fast_stopped: a steal is pending (or tc is a handle's route object). */
#ifdef MAGPOOL_MEASURE_NO_HANDSHAKE
#define fast_enter(tc)          ((void)0)
#define fast_stopped(tc)        false
#define fast_leave(tc)          ((void)0)
#define fast_to_slow(tc)        cache_enter(tc)
#else
#define fast_enter(tc)          cache_enter(tc)
#define fast_stopped(tc)        steal_pending(tc)
#define fast_leave(tc)          cache_leave(tc)
#define fast_to_slow(tc)        ((void)0)
#endif

/* fast_null(x): x is NULL (the contract's answer follows). */
#ifdef MAGPOOL_MEASURE_NO_NULLCHECK
#define fast_null(x) ((void)(x), false)
#else
#define fast_null(x) unlikely((x) == NULL)
#endif

#endif
