/* SPDX-License-Identifier: MIT */
/*
 * harness.h — the stress programs' own tiny check harness.
 *
 * The stress programs are plain C executables (not Criterion: Criterion 2.4.1
 * cannot run under ThreadSanitizer, Criterion issue #274), in the spirit of
 * Concurrency Kit's regressions/x/validate programs. This header gives them:
 *
 *   CHECK(cond, fmt, ...)   count a failure and print file:line, the condition
 *                           and a message; never aborts (--fail-fast does).
 *   h_parse()               --threads N --ops N --backend lockfree|mutex
 *                           --seconds S --seed N --block-size N --verbose
 *                           plus per-program options.
 *   h_more_rounds()         --seconds S: repeat the whole test until S seconds
 *                           have passed (at least once).
 *   h_finish()              summary line and exit status (0 = all checks held).
 *   stamps                  write an ownership stamp (tag + sequence) over the
 *                           whole block and check it before release, so a block
 *                           handed out twice, or overlapping another, is caught.
 *   h_check_quiescent()     the stats conservation laws at quiescence.
 *
 * All state shared between the harness's threads is C11 atomics or is handed
 * over through pthread create/join/barriers, so ThreadSanitizer sees every
 * happens-before edge the tests rely on: a TSan report from a stress program
 * is about the library, never about the harness.
 *
 * Header-only: every stress program is a single translation unit.
 */
#ifndef MAGPOOL_STRESS_HARNESS_H
#define MAGPOOL_STRESS_HARNESS_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <magpool.h>

/* ------------------------------------------------------------------ checks */

#define H_MAX_PRINTED 40

/* Relaxed: pure counters, read by main only after every worker is joined
 * (pthread_join orders them). */
static atomic_ulong h_failures;
static atomic_ulong h_printed;
static bool h_fail_fast;
static const char *h_prog = "stress";

__attribute__((format(printf, 4, 5), noinline, cold, unused)) static void
h_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    atomic_fetch_add_explicit(&h_failures, 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&h_printed, 1, memory_order_relaxed) < H_MAX_PRINTED) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        /* One fprintf per report: stdio locks the stream, lines do not mix. */
        fprintf(stderr, "%s:%d: CHECK(%s) failed: %s\n", file, line, expr, msg);
    } else if (atomic_load_explicit(&h_printed, memory_order_relaxed) == H_MAX_PRINTED + 1) {
        fprintf(stderr, "%s: further failures are counted, not printed\n", h_prog);
    }
    if (h_fail_fast) {
        fprintf(stderr, "%s: --fail-fast: exiting on first failure\n", h_prog);
        fflush(stderr);
        _Exit(1);
    }
}

/* CHECK(cond, fmt, ...): fmt is a printf format describing the context. */
#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (__builtin_expect(!(cond), 0))                       \
            h_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);     \
    } while (0)

static inline unsigned long h_failure_count(void)
{
    return atomic_load_explicit(&h_failures, memory_order_relaxed);
}

/* Fatal setup errors (cannot create a pool or a thread): no point going on. */
#define H_DIE(...)                                                      \
    do {                                                                \
        fprintf(stderr, "%s:%d: fatal: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                                   \
        fprintf(stderr, "\n");                                          \
        exit(2);                                                        \
    } while (0)

/* ----------------------------------------------------------------- options */

typedef struct h_opts {
    unsigned threads;
    uint64_t ops;              /* per thread (per round where documented)      */
    magpool_backend_t backend;
    double seconds;            /* > 0: repeat the test until this much time    */
    uint64_t seed;
    size_t block_size;
    int verbose;
} h_opts_t;

static h_opts_t H = {
    .threads = 8, .ops = 1000000, .backend = MAGPOOL_LOCKFREE,
    .seconds = 0, .seed = 0x5eed5eedULL, .block_size = 64, .verbose = 0,
};

/* A program-specific numeric option: --name VALUE (accepts 1e6, 0x10 ...). */
typedef struct h_extra_opt {
    const char *name;   /* without the leading "--" */
    const char *help;
    double *value;
} h_extra_opt_t;

static struct timespec h_t0;

static inline double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double h_elapsed(void)
{
    return h_now() - ((double)h_t0.tv_sec + (double)h_t0.tv_nsec * 1e-9);
}

static inline const char *h_backend_name(magpool_backend_t b)
{
    return b == MAGPOOL_MUTEX ? "mutex" : "lockfree";
}

static inline double h_parse_num(const char *opt, const char *s)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || v != v)
        H_DIE("option --%s: not a number: '%s'", opt, s);
    return v;
}

static inline void h_usage(FILE *f, const char *desc, const h_extra_opt_t *extra)
{
    fprintf(f, "usage: %s [options]\n%s\n\n"
               "  --threads N        worker threads (default %u)\n"
               "  --ops N            operations per thread (default %" PRIu64 ")\n"
               "  --backend B        lockfree | mutex (default %s)\n"
               "  --seconds S        repeat the whole test until S seconds have passed\n"
               "  --seed N           random seed (default 0x%" PRIx64 ")\n"
               "  --block-size N     bytes per block, >= 16 (default %zu)\n"
               "  --fail-fast        exit at the first failed check\n"
               "  --verbose          print statistics\n",
            h_prog, desc, H.threads, H.ops, h_backend_name(H.backend), H.seed,
            H.block_size);
    for (const h_extra_opt_t *e = extra; e && e->name; e++)
        fprintf(f, "  --%-16s %s (default %g)\n", e->name, e->help, *e->value);
}

/* Call after setting program defaults in H and in the extra options. */
static inline void h_parse(int argc, char **argv, const char *desc, const h_extra_opt_t *extra)
{
    const char *slash = strrchr(argv[0], '/');
    h_prog = slash ? slash + 1 : argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            H_DIE("unexpected argument '%s' (try --help)", a);
        a += 2;
        if (!strcmp(a, "help")) {
            h_usage(stdout, desc, extra);
            exit(0);
        }
        if (!strcmp(a, "verbose")) { H.verbose = 1; continue; }
        if (!strcmp(a, "fail-fast")) { h_fail_fast = true; continue; }
        if (i + 1 >= argc)
            H_DIE("option --%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "backend")) {
            if (!strcmp(v, "lockfree")) H.backend = MAGPOOL_LOCKFREE;
            else if (!strcmp(v, "mutex")) H.backend = MAGPOOL_MUTEX;
            else H_DIE("--backend: expected lockfree or mutex, got '%s'", v);
            continue;
        }
        double x = h_parse_num(a, v);
        if (!strcmp(a, "threads")) {
            if (x < 1 || x > 4096) H_DIE("--threads out of range");
            H.threads = (unsigned)x;
        } else if (!strcmp(a, "ops")) {
            if (x < 1 || x > 1e15) H_DIE("--ops out of range");
            H.ops = (uint64_t)x;
        } else if (!strcmp(a, "seconds")) {
            H.seconds = x;
        } else if (!strcmp(a, "seed")) {
            H.seed = (uint64_t)x;
        } else if (!strcmp(a, "block-size")) {
            if (x < 16 || x > (1 << 24)) H_DIE("--block-size must be in [16, 16M]");
            H.block_size = (size_t)x;
        } else {
            const h_extra_opt_t *e = extra;
            for (; e && e->name; e++)
                if (!strcmp(a, e->name))
                    break;
            if (!e || !e->name)
                H_DIE("unknown option --%s (try --help)", a);
            *e->value = x;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &h_t0);
    printf("%s: backend=%s threads=%u ops=%" PRIu64 " seconds=%g seed=0x%" PRIx64
           " block_size=%zu",
           h_prog, h_backend_name(H.backend), H.threads, H.ops, H.seconds, H.seed,
           H.block_size);
    for (const h_extra_opt_t *e = extra; e && e->name; e++)
        printf(" %s=%g", e->name, *e->value);
    printf("\n");
    fflush(stdout);
}

/* --seconds: after each full iteration of the test, repeat while time is left.
 * Without --seconds the test runs exactly once. Stops early on failures. */
static inline bool h_more_rounds(unsigned *iteration)
{
    ++*iteration;
    if (h_failure_count() != 0 || H.seconds <= 0)
        return false;
    return h_elapsed() < H.seconds;
}

static inline int h_finish(unsigned iterations)
{
    unsigned long f = h_failure_count();
    if (f == 0)
        printf("%s: OK (%s, %u iteration%s, %.2f s)\n", h_prog, h_backend_name(H.backend),
               iterations, iterations == 1 ? "" : "s", h_elapsed());
    else
        printf("%s: FAILED: %lu failed check%s (%s, %.2f s)\n", h_prog, f, f == 1 ? "" : "s",
               h_backend_name(H.backend), h_elapsed());
    fflush(stdout);
    return f == 0 ? 0 : 1;
}

/* --------------------------------------------------------------------- rng */

typedef struct h_rng { uint64_t s; } h_rng_t;

static inline uint64_t h_splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline h_rng_t h_rng_seed(uint64_t a, uint64_t b)
{
    h_rng_t r = { h_splitmix(H.seed ^ h_splitmix(a * 0x100000001b3ULL + b)) | 1 };
    return r;
}

static inline uint64_t h_rand(h_rng_t *r)
{
    uint64_t x = r->s;  /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform-ish in [0, n). */
static inline uint64_t h_below(h_rng_t *r, uint64_t n)
{
    return n ? (h_rand(r) >> 11) % n : 0;
}

/* ------------------------------------------------------------------ stamps */

/* Tag layout: magic (16) | pool index (16) | thread id (32). */
#define H_TAG(thread, pool) \
    ((0xB10CULL << 48) | ((uint64_t)((pool) & 0xffff) << 32) | (uint64_t)(uint32_t)(thread))

typedef struct h_stamp {
    uint64_t tag;
    uint64_t seq;
} h_stamp_t;

static inline uint64_t h_fill_word(uint64_t tag, uint64_t seq)
{
    return h_splitmix(tag ^ (seq * 0x9e3779b97f4a7c15ULL));
}

/* Write the stamp and fill the rest of the block (all @size bytes). */
static inline void h_stamp_write(void *block, size_t size, uint64_t tag, uint64_t seq)
{
    unsigned char *b = block;
    h_stamp_t s = { tag, seq };
    memcpy(b, &s, sizeof s);
    uint64_t w = h_fill_word(tag, seq);
    size_t i = sizeof s;
    for (; i + 8 <= size; i += 8)
        memcpy(b + i, &w, 8);
    for (; i < size; i++)
        b[i] = (unsigned char)(w >> (8 * (i & 7)));
}

/* Verify the whole block still carries (tag, seq). Returns true when intact,
 * else describes the first difference in @why. */
static inline bool h_stamp_ok(const void *block, size_t size, uint64_t tag, uint64_t seq,
                              char *why, size_t whylen)
{
    const unsigned char *b = block;
    h_stamp_t s;
    memcpy(&s, b, sizeof s);
    if (s.tag != tag || s.seq != seq) {
        snprintf(why, whylen,
                 "block %p stamp is tag=0x%016" PRIx64 " seq=%" PRIu64
                 ", expected tag=0x%016" PRIx64 " seq=%" PRIu64
                 " (block handed out twice / overwritten while held)",
                 block, s.tag, s.seq, tag, seq);
        return false;
    }
    uint64_t w = h_fill_word(tag, seq);
    size_t i = sizeof s;
    for (; i + 8 <= size; i += 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        if (x != w) {
            snprintf(why, whylen,
                     "block %p byte offset %zu of %zu overwritten while held "
                     "(0x%016" PRIx64 " != 0x%016" PRIx64 "): overlapping blocks?",
                     block, i, size, x, w);
            return false;
        }
    }
    for (; i < size; i++)
        if (b[i] != (unsigned char)(w >> (8 * (i & 7)))) {
            snprintf(why, whylen, "block %p byte offset %zu of %zu overwritten while held",
                     block, i, size);
            return false;
        }
    return true;
}

#define CHECK_STAMP(block, size, tag, seq)                                      \
    do {                                                                        \
        char why_[256];                                                         \
        bool ok_ = h_stamp_ok((block), (size), (tag), (seq), why_, sizeof why_); \
        CHECK(ok_, "%s", why_);                                                 \
    } while (0)

/* --------------------------------------------------------- threads, barrier */

typedef struct h_barrier { pthread_barrier_t b; } h_barrier_t;

static inline void h_barrier_init(h_barrier_t *b, unsigned n)
{
    if (pthread_barrier_init(&b->b, NULL, n) != 0)
        H_DIE("pthread_barrier_init");
}

static inline void h_barrier_wait(h_barrier_t *b)
{
    int rc = pthread_barrier_wait(&b->b);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD)
        H_DIE("pthread_barrier_wait: %d", rc);
}

static inline void h_barrier_destroy(h_barrier_t *b)
{
    pthread_barrier_destroy(&b->b);
}

/* Start n threads running fn(args + i * argsize) and join them all. */
static inline void h_run_threads(unsigned n, void *(*fn)(void *), void *args, size_t argsize)
{
    pthread_t *t = calloc(n, sizeof *t);
    if (!t)
        H_DIE("out of memory");
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&t[i], NULL, fn, (char *)args + i * argsize);
        if (rc != 0)
            H_DIE("pthread_create: %s", strerror(rc));
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    free(t);
}

static inline void h_pause(void)
{
    sched_yield();
}

/* ------------------------------------------------------------------- pools */

static inline magpool_t *h_create(size_t block_size, size_t max_blocks, unsigned magazine_size)
{
    magpool_config_t cfg = magpool_config_default(block_size);
    cfg.max_blocks = max_blocks;
    cfg.magazine_size = magazine_size;
    cfg.backend = H.backend;
    magpool_t *p = magpool_create(&cfg);
    if (!p)
        H_DIE("magpool_create(block_size=%zu, max_blocks=%zu, magazine=%u, %s): %s",
              block_size, max_blocks, magazine_size, h_backend_name(H.backend),
              strerror(errno));
    return p;
}

static inline void h_print_stats(const char *what, const magpool_stats_t *s)
{
    printf("  %s: acquires=%" PRIu64 " releases=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64
           " grows=%" PRIu64 " trims=%" PRIu64 " failed=%" PRIu64 " total=%zu outstanding=%zu"
           " reserved=%zu depot_gets=%" PRIu64 " depot_puts=%" PRIu64 " steals=%" PRIu64
           " threads=%" PRIu64 "\n",
           what, s->acquires, s->releases, s->hits, s->misses, s->grows, s->trims, s->failed,
           s->blocks_total, s->blocks_outstanding, s->bytes_reserved, s->depot_gets,
           s->depot_puts, s->steals, s->threads);
}

static inline magpool_stats_t h_stats(magpool_t *pool)
{
    magpool_stats_t s;
    memset(&s, 0, sizeof s);
    int rc = magpool_get_stats(pool, &s);
    CHECK(rc == 0, "magpool_get_stats returned %d errno=%d", rc, errno);
    return s;
}

/* The laws that must hold at quiescence (no other thread using @pool):
 *   acquires - releases == blocks_outstanding == @outstanding
 *   misses <= grows (a miss is an acquire that had to grow the pool)
 *   acquires/releases/failed equal what the test counted (when given, i.e. != UINT64_MAX)
 *   blocks_outstanding <= blocks_total
 *   magpool_report_leaks() == blocks_outstanding
 */
#define H_ANY UINT64_MAX
static inline magpool_stats_t h_check_quiescent_at(const char *file, int line, const char *ctx,
                                                   magpool_t *pool, size_t outstanding,
                                                   uint64_t acquires, uint64_t releases,
                                                   uint64_t failed)
{
    magpool_stats_t s = h_stats(pool);
    char where[200];
    snprintf(where, sizeof where, "%s (%s:%d)", ctx, file, line);
    if (H.verbose)
        h_print_stats(where, &s);
#define QCHECK(cond, ...) \
    do { if (!(cond)) h_fail(file, line, #cond, __VA_ARGS__); } while (0)
    QCHECK(s.acquires - s.releases == s.blocks_outstanding,
           "%s: acquires %" PRIu64 " - releases %" PRIu64 " != blocks_outstanding %zu", where,
           s.acquires, s.releases, s.blocks_outstanding);
    QCHECK(s.blocks_outstanding == outstanding,
           "%s: blocks_outstanding %zu, the test holds %zu", where, s.blocks_outstanding,
           outstanding);
    QCHECK(s.misses <= s.grows,
           "%s: misses %" PRIu64 " > grows %" PRIu64, where, s.misses, s.grows);
    QCHECK(s.blocks_outstanding <= s.blocks_total,
           "%s: blocks_outstanding %zu > blocks_total %zu", where, s.blocks_outstanding,
           s.blocks_total);
    if (acquires != H_ANY)
        QCHECK(s.acquires == acquires, "%s: stats.acquires %" PRIu64 ", the test counted %" PRIu64,
               where, s.acquires, acquires);
    if (releases != H_ANY)
        QCHECK(s.releases == releases, "%s: stats.releases %" PRIu64 ", the test counted %" PRIu64,
               where, s.releases, releases);
    if (failed != H_ANY)
        QCHECK(s.failed == failed, "%s: stats.failed %" PRIu64 ", the test counted %" PRIu64,
               where, s.failed, failed);
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    size_t leaks = magpool_report_leaks(pool, devnull);
    QCHECK(leaks == s.blocks_outstanding, "%s: magpool_report_leaks %zu != blocks_outstanding %zu",
           where, leaks, s.blocks_outstanding);
#undef QCHECK
    return s;
}
#define h_check_quiescent(ctx, pool, outstanding, acq, rel, failed) \
    h_check_quiescent_at(__FILE__, __LINE__, (ctx), (pool), (outstanding), (acq), (rel), (failed))

#endif /* MAGPOOL_STRESS_HARNESS_H */
