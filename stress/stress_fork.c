/* SPDX-License-Identifier: MIT */
/*
 * stress_fork — fork() storms while the pools are cleared, destroyed,
 * re-created, first used by fresh threads, and while threads come and go.
 *
 * An engine forks (to snapshot, to spawn helpers) while its threads keep
 * using their pools. Three things must hold, and this program checks them:
 *
 *  (a) fork() never deadlocks the PARENT. The library's atfork prepare
 *      handler takes every pool's locks while the other threads are
 *      anywhere in the library: clearing a pool (growth lock held, waiting
 *      for a reclamation grace period), attaching to a pool for the first
 *      time (inside a read section, allocating a magazine), exiting. The
 *      known cycle (03e07b2): prepare holds pool A's magazine-allocation
 *      lock and waits for pool B's growth lock; a clear of B holds that lock
 *      while it waits for a grace period; a thread attaching to A sits
 *      inside a read section, blocked on A's allocation lock, so the grace
 *      period never ends. Pool A is therefore created before pool B (the
 *      prepare handler walks the pools in registry order and must reach A
 *      first), and no other pool is created in the parent while the program
 *      runs, so the slot A frees is the lowest free one when A is re-created
 *      and A keeps the lower position.
 *  (b) the CHILD never hangs: a thread registering with or leaving the
 *      reclamation runtime at the moment of the fork must not leave the
 *      child a lock held by a thread that does not exist there.
 *  (c) the child can use every pool: acquire/release, magpool_trim(p, 0),
 *      magpool_clear, consistent statistics, create, use and destroy a new
 *      pool, and it is never handed a block a parent thread held at the fork.
 *
 * Threads in the parent. The main thread forks for --seconds S and never
 * touches a pool itself, so in the child its first acquire is also its
 * first attach (registration included).
 *   clearer     acquires and releases a batch of B, then magpool_clear(B): a
 *               clear that frees magazines and waits for a grace period;
 *   recreator   (--recreator 1) starts a fresh thread whose first acquire on
 *               A attaches to it (registration, magazine allocation), joins
 *               it, destroys A and creates it again;
 *   churnerN    (--churners N) start short-lived threads that use A and B and
 *               exit: registration and exit flush, over and over;
 *   gatekeeper  (--gate K) keeps K fresh threads parked at a gate that the
 *               fork opens (below);
 *   trimmer     (--trimmer 1) magpool_trim(B, 1 ms) in a loop.
 *
 * The gate. A registration racing with fork() strands its lock in the child
 * only if it is in flight at the instant the address space is copied: some
 * 100 ns per thread lifetime, about one fork in 30000 with the churners
 * alone. The program's last prepare handler (registered before the
 * library's, so it runs after it, just before the fork proper) opens the
 * gate: the parked threads make their first library call while the fork
 * copies the address space. About one fork in 4500 then leaves the child
 * hung at 03e07b2 (~1 every 11 s at ~400 forks/s).
 *
 * The child checks (c) and _exits; it creates no thread (under TSan the
 * child of a multi-threaded fork may not). The parent waits for each child
 * at most --child-timeout seconds: a child still running then is a hung
 * child (reported, SIGKILLed, counted; --gdb 1 prints its stacks first). A
 * watchdog thread fails the program when a fork() has not returned for
 * --stall-timeout seconds ("parent stalled in fork"), when a worker makes no
 * progress for 3x that, or when shutdown stalls: a deadlock is a failed
 * test, not a silent timeout.
 *
 * Every block any thread holds carries an ownership stamp whose tag has the
 * harness magic; holders wipe the stamp before they release. A block the
 * child acquires that still carries a live stamp was held by a parent thread
 * at the fork: the fork handling gave a held block out again.
 *
 * The program's own atfork handler keeps fork() out of the short window in
 * which the recreator has destroyed A and not yet published the new A (the
 * child must know which pools are alive), as a real program does for its own
 * state. It takes one lock the library never waits for, before the library's
 * handlers run (prepare handlers run in reverse order of registration, and
 * the library registers at its first magpool_create), so it cannot take part
 * in a library deadlock.
 *
 * Sanitizer builds. The sanitizer runtimes of this toolchain (gcc 12's
 * libsanitizer) do not lock their own allocators around fork(): in the
 * child of a multi-threaded fork, malloc can hang inside ASan's or TSan's
 * allocator on a lock another thread held at the fork, whatever the library
 * does (seen here with a library free of (a) and (b): ASan's
 * SizeClassAllocator64::GetFromAllocator within ~12 forks, TSan's
 * DenseSlabAlloc::Refill within ~150), and TSan checks nothing in such a
 * child anyway. So there the child exits at once (--child-checks 1 forces
 * the checks): those builds test (a) and let TSan watch the parent's
 * threads; (b) and (c) are tested by the plain build.
 *
 * Output: forks, forks/s, hung and failed children. Exit status 0 when every
 * check held. --keep-going 1 goes on forking after a hung or failed child
 * (to measure how often that happens); by default the first failure ends the
 * run. --recreator 0 leaves (a) to the churners' first attaches only, which
 * hit it rarely once A has spare magazines: that isolates (b) on 03e07b2.
 */
#include "harness.h"

#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;

/* See "Sanitizer builds" above. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifndef SANITIZER_BUILD
#define SANITIZER_BUILD 0
#endif

static double opt_churners = 2, opt_trimmer = 1, opt_recreator = 1, opt_gate = 3,
              opt_batch = 200, opt_child_timeout = 10, opt_stall = 20, opt_keep_going = 0,
              opt_gdb = 0, opt_child_checks = -1;

#define MAG 16            /* small magazines: clear has many to free        */
#define CHILD_BLOCKS 100  /* blocks the child takes from each pool          */
#define U_BLOCKS 24       /* blocks a short-lived thread takes per pool     */
#define POOL_A 0
#define POOL_B 1
#define POOL_NEW 2

/* ------------------------------------------------------------ shared state */

/* Pool A is replaced by the recreator under a_life (and a_rw for the
 * threads that use it); the pointer is an atomic so the child, the
 * watchdog and the users may read it without the lock. */
static _Atomic(magpool_t *) pool_a;
static magpool_t *pool_b; /* set before any thread starts, never changes */
static pthread_mutex_t a_life = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t a_rw;

static atomic_bool stop;
static pid_t parent_pid;

/* Acquire/release counts on B by everyone (the parent's end-of-run check). */
static atomic_ulong b_acquires, b_releases;

/* Watchdog bookkeeping: a worker's progress counter and what it is doing. */
typedef struct worker {
    const char *name;
    atomic_ulong iters;
    _Atomic(const char *) phase;
    pthread_t tid;
    unsigned id;
} worker_t;

#define MAX_WORKERS 16
static worker_t workers[MAX_WORKERS];
static unsigned nworkers;

static _Atomic uint64_t fork_started_ns; /* 0: main is not inside fork() */
static atomic_ulong forks_done;
static _Atomic pid_t live_child;          /* the child being waited for, or 0 */
static _Atomic uint64_t shutdown_deadline_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_phase(worker_t *w, const char *phase)
{
    atomic_store_explicit(&w->phase, phase, memory_order_relaxed);
}

static void progress(worker_t *w)
{
    atomic_fetch_add_explicit(&w->iters, 1, memory_order_relaxed);
}

/* --------------------------------------------------------- block stamping */

/* A held block carries an ownership stamp (harness magic in the tag); the
 * holder wipes it before release. So an idle block never carries a live
 * stamp, and the child can recognise a block some parent thread held. */
static void hold(void *b, uint64_t tag, uint64_t seq)
{
    h_stamp_write(b, H.block_size, tag, seq);
}

static void unhold(void *b)
{
    memset(b, 0, sizeof(h_stamp_t));
}

static bool held_by_someone(const void *b, h_stamp_t *s)
{
    memcpy(s, b, sizeof *s);
    return (s->tag >> 48) == 0xB10CULL;
}

/* --------------------------------------------------------------- watchdog */

/* Runs gdb on @pid and prints every thread's stack (--gdb 1). posix_spawn:
 * no fork, so no atfork handler runs (the parent's may be the ones stuck). */
static void dump_stacks(pid_t pid)
{
    if (!opt_gdb)
        return;
    char spid[32];
    snprintf(spid, sizeof spid, "%d", (int)pid);
    char *argv[] = { "gdb", "-p", spid, "-batch", "-nx", "-ex", "set pagination off",
                     "-ex", "thread apply all bt", NULL };
    pid_t g;
    if (posix_spawnp(&g, "gdb", NULL, NULL, argv, environ) == 0) {
        int st;
        while (waitpid(g, &st, 0) < 0 && errno == EINTR)
            ;
    }
}

/* async-signal-safe-ish reporting: snprintf + write(2), no stdio lock (the
 * thread stuck in fork() may hold locks that stdio would need). */
__attribute__((format(printf, 1, 2))) static void wd_say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        return;
}

static _Noreturn void wd_fail(const char *what)
{
    wd_say("%s: FAILED: %s (after %.1f s, %lu forks)\n", h_prog, what, h_elapsed(),
           atomic_load(&forks_done));
    for (unsigned i = 0; i < nworkers; i++)
        wd_say("%s:   %-10s %8lu iterations, now: %s\n", h_prog, workers[i].name,
               atomic_load(&workers[i].iters), atomic_load(&workers[i].phase));
    dump_stacks(getpid());
    pid_t c = atomic_load(&live_child);
    if (c > 0)
        kill(c, SIGKILL);
    /* exit_group directly: the sanitizers' _exit interceptors would run
     * their end-of-process reports (TSan: "thread leak" for the stuck
     * threads) and replace the exit status; the failure is reported. */
    syscall(SYS_exit_group, 1);
    _exit(1);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    const uint64_t stall_ns = (uint64_t)(opt_stall * 1e9);
    uint64_t seen[MAX_WORKERS], seen_at[MAX_WORKERS];
    uint64_t t = now_ns();
    for (unsigned i = 0; i < nworkers; i++) {
        seen[i] = atomic_load(&workers[i].iters);
        seen_at[i] = t;
    }
    for (;;) {
        usleep(100 * 1000);
        uint64_t fs = atomic_load(&fork_started_ns);
        t = now_ns(); /* after the load: a fork started since is not older than t */
        if (fs && t > fs && t - fs > stall_ns) {
            char what[160];
            snprintf(what, sizeof what,
                     "parent stalled in fork: fork #%lu has not returned for %.0f s "
                     "(deadlock in an atfork handler?)",
                     atomic_load(&forks_done) + 1, (double)(t - fs) / 1e9);
            wd_fail(what);
        }
        uint64_t sd = atomic_load(&shutdown_deadline_ns);
        if (sd && t > sd)
            wd_fail("stalled at shutdown (a worker does not finish)");
        for (unsigned i = 0; i < nworkers; i++) {
            uint64_t it = atomic_load(&workers[i].iters);
            if (it != seen[i]) {
                seen[i] = it;
                seen_at[i] = t;
            } else if (!atomic_load(&stop) && t - seen_at[i] > 3 * stall_ns) {
                char what[160];
                snprintf(what, sizeof what, "worker %s made no progress for %.0f s (in: %s)",
                         workers[i].name, (double)(t - seen_at[i]) / 1e9,
                         atomic_load(&workers[i].phase));
                wd_fail(what);
            }
        }
    }
    return NULL;
}

/* -------------------------------------------------------------- the child */

/* The conservation laws, in the child (single-threaded, so quiescent). */
static void child_laws(unsigned long forkno, const char *pool, const char *when,
                       const magpool_stats_t *s, magpool_t *p)
{
    CHECK(s->acquires >= s->releases,
          "child of fork #%lu, pool %s, %s: releases %" PRIu64 " > acquires %" PRIu64, forkno,
          pool, when, s->releases, s->acquires);
    CHECK(s->acquires - s->releases == s->blocks_outstanding,
          "child of fork #%lu, pool %s, %s: acquires %" PRIu64 " - releases %" PRIu64
          " != blocks_outstanding %zu",
          forkno, pool, when, s->acquires, s->releases, s->blocks_outstanding);
    CHECK(s->hits + s->misses == s->acquires,
          "child of fork #%lu, pool %s, %s: hits %" PRIu64 " + misses %" PRIu64
          " != acquires %" PRIu64,
          forkno, pool, when, s->hits, s->misses, s->acquires);
    CHECK(s->blocks_outstanding <= s->blocks_total,
          "child of fork #%lu, pool %s, %s: blocks_outstanding %zu > blocks_total %zu", forkno,
          pool, when, s->blocks_outstanding, s->blocks_total);
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    size_t leaks = magpool_report_leaks(p, devnull);
    CHECK(leaks == s->blocks_outstanding,
          "child of fork #%lu, pool %s, %s: magpool_report_leaks %zu != blocks_outstanding %zu",
          forkno, pool, when, leaks, s->blocks_outstanding);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Take n blocks, check them (non-NULL, no live stamp, pairwise distinct,
 * stamps intact), give them back. Returns how many were taken. */
static unsigned child_cycle(magpool_t *p, const char *name, unsigned pidx,
                            unsigned long forkno, unsigned n)
{
    void *blk[CHILD_BLOCKS], *sorted[CHILD_BLOCKS];
    unsigned got = 0;
    const uint64_t tag = H_TAG(0x80000000u | (uint32_t)forkno, pidx);
    for (unsigned i = 0; i < n; i++) {
        errno = 0;
        void *b = magpool_acquire(p);
        CHECK(b != NULL, "child of fork #%lu, pool %s: acquire %u returned NULL (errno %d)",
              forkno, name, i, errno);
        if (!b)
            break;
        h_stamp_t s;
        CHECK(!held_by_someone(b, &s),
              "child of fork #%lu, pool %s: block %p carries the live stamp tag=0x%016" PRIx64
              " seq=%" PRIu64 ": a parent thread held it at the fork, yet the child got it",
              forkno, name, b, s.tag, s.seq);
        hold(b, tag, i);
        blk[got++] = b;
    }
    memcpy(sorted, blk, got * sizeof *blk);
    qsort(sorted, got, sizeof *sorted, cmp_ptr);
    for (unsigned i = 1; i < got; i++)
        CHECK(sorted[i] != sorted[i - 1],
              "child of fork #%lu, pool %s: block %p handed out twice", forkno, name, sorted[i]);
    for (unsigned i = 0; i < got; i++) {
        CHECK_STAMP(blk[i], H.block_size, tag, i);
        unhold(blk[i]);
        magpool_release(p, blk[i]);
    }
    return got;
}

static void child_use_pool(magpool_t *p, const char *name, unsigned pidx, unsigned long forkno)
{
    magpool_stats_t s0 = h_stats(p);
    child_laws(forkno, name, "on entry", &s0, p);
    unsigned n = child_cycle(p, name, pidx, forkno, CHILD_BLOCKS);
    magpool_trim(p, 0.0);
    magpool_clear(p);
    magpool_stats_t s1 = h_stats(p);
    child_laws(forkno, name, "after use, trim and clear", &s1, p);
    CHECK(s1.acquires - s0.acquires == n && s1.releases - s0.releases == n,
          "child of fork #%lu, pool %s: the child made %u acquires and releases, the stats "
          "counted %" PRIu64 " and %" PRIu64,
          forkno, name, n, s1.acquires - s0.acquires, s1.releases - s0.releases);
    CHECK(s1.blocks_outstanding == s0.blocks_outstanding,
          "child of fork #%lu, pool %s: blocks_outstanding %zu after the child's balanced work, "
          "%zu before",
          forkno, name, s1.blocks_outstanding, s0.blocks_outstanding);
    /* After the clear the pool must serve again (it grows back). */
    n = child_cycle(p, name, pidx, forkno, CHILD_BLOCKS / 2);
    magpool_stats_t s2 = h_stats(p);
    child_laws(forkno, name, "after use after clear", &s2, p);
    CHECK(s2.blocks_outstanding == s0.blocks_outstanding,
          "child of fork #%lu, pool %s: blocks_outstanding %zu, %zu on entry", forkno, name,
          s2.blocks_outstanding, s0.blocks_outstanding);
}

static _Noreturn void child_main(unsigned long forkno)
{
    /* Die with the parent (its watchdog may _exit while we hang). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid)
        _exit(3);
    if (!opt_child_checks)
        _exit(0);
    unsigned long base = h_failure_count();
    /* The program's prepare handler held a_life across the fork: pool_a is
     * a live pool here, and no other thread exists to change it. */
    magpool_t *a = atomic_load_explicit(&pool_a, memory_order_relaxed);
    child_use_pool(a, "A", POOL_A, forkno);
    child_use_pool(pool_b, "B", POOL_B, forkno);

    magpool_config_t cfg = magpool_config_default(H.block_size);
    cfg.magazine_size = MAG;
    cfg.backend = H.backend;
    magpool_t *p = magpool_create(&cfg);
    CHECK(p != NULL, "child of fork #%lu: magpool_create failed (errno %d)", forkno, errno);
    if (p) {
        unsigned n = child_cycle(p, "new", POOL_NEW, forkno, CHILD_BLOCKS);
        magpool_clear(p);
        magpool_stats_t s = h_stats(p);
        child_laws(forkno, "new", "after use", &s, p);
        CHECK(s.acquires == n && s.releases == n && s.blocks_outstanding == 0,
              "child of fork #%lu, new pool: acquires %" PRIu64 " releases %" PRIu64
              " outstanding %zu, the child made %u of each",
              forkno, s.acquires, s.releases, s.blocks_outstanding, n);
        magpool_destroy(p);
    }
    _exit(h_failure_count() > base ? 1 : 0);
}

/* ----------------------------------------------------- the parent's threads */

static void *first_use_main(void *arg)
{
    magpool_t *a = arg;
    /* This thread's first library call at all: registration with the
     * reclamation runtime, a thread directory, and a cache of A whose
     * magazines come from A's allocation path. */
    void *b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = magpool_acquire(a);
        CHECK(b[i] != NULL, "first use of A: acquire returned NULL (errno %d)", errno);
        if (b[i])
            hold(b[i], H_TAG(0x7fffffffu, POOL_A), (uint64_t)i);
    }
    for (int i = 0; i < 4; i++)
        if (b[i]) {
            CHECK_STAMP(b[i], H.block_size, H_TAG(0x7fffffffu, POOL_A), (uint64_t)i);
            unhold(b[i]);
            magpool_release(a, b[i]);
        }
    return NULL;
}

static magpool_t *create_pool(void)
{
    magpool_config_t cfg = magpool_config_default(H.block_size);
    cfg.magazine_size = MAG;
    cfg.initial_blocks = 64;
    cfg.backend = H.backend;
    magpool_t *p = magpool_create(&cfg);
    if (!p)
        H_DIE("magpool_create: %s", strerror(errno));
    return p;
}

static void *recreator_main(void *arg)
{
    worker_t *w = arg;
    while (!atomic_load(&stop)) {
        magpool_t *a = atomic_load(&pool_a);
        set_phase(w, "first use of A from a fresh thread");
        pthread_t t;
        int rc = pthread_create(&t, NULL, first_use_main, a);
        if (rc != 0)
            H_DIE("pthread_create: %s", strerror(rc));
        pthread_join(t, NULL);

        set_phase(w, "waiting for A's users (a_rw)");
        pthread_rwlock_wrlock(&a_rw);
        set_phase(w, "waiting for a_life (a fork in progress)");
        pthread_mutex_lock(&a_life);
        set_phase(w, "destroying A");
        magpool_stats_t s = h_stats(a);
        CHECK(s.blocks_outstanding == 0 && s.acquires == s.releases,
              "pool A before destroy: outstanding %zu, acquires %" PRIu64 " releases %" PRIu64
              " (every user has released everything)",
              s.blocks_outstanding, s.acquires, s.releases);
        magpool_destroy(a);
        set_phase(w, "creating A");
        atomic_store(&pool_a, create_pool());
        pthread_mutex_unlock(&a_life);
        pthread_rwlock_unlock(&a_rw);
        progress(w);
    }
    set_phase(w, "done");
    return NULL;
}

static void *clearer_main(void *arg)
{
    worker_t *w = arg;
    const unsigned k = (unsigned)opt_batch;
    void **held = calloc(k, sizeof *held);
    if (!held)
        H_DIE("out of memory");
    uint64_t seq = 0;
    while (!atomic_load(&stop)) {
        set_phase(w, "acquiring a batch of B");
        unsigned n = 0;
        for (; n < k; n++) {
            held[n] = magpool_acquire(pool_b);
            CHECK(held[n] != NULL, "clearer: acquire on B returned NULL (errno %d)", errno);
            if (!held[n])
                break;
            hold(held[n], H_TAG(0x7ffffffeu, POOL_B), seq + n);
        }
        atomic_fetch_add(&b_acquires, n);
        set_phase(w, "releasing the batch of B");
        for (unsigned i = 0; i < n; i++) {
            CHECK_STAMP(held[i], H.block_size, H_TAG(0x7ffffffeu, POOL_B), seq + i);
            unhold(held[i]);
            magpool_release(pool_b, held[i]);
        }
        atomic_fetch_add(&b_releases, n);
        seq += n;
        /* Every block idle: the clear unmaps the slabs and frees the
         * emptied magazines after a grace period, growth lock held. */
        set_phase(w, "magpool_clear(B)");
        magpool_clear(pool_b);
        progress(w);
    }
    free(held);
    set_phase(w, "done");
    return NULL;
}

static void *trimmer_main(void *arg)
{
    worker_t *w = arg;
    while (!atomic_load(&stop)) {
        set_phase(w, "magpool_trim(B, 1 ms)");
        magpool_trim(pool_b, 0.001);
        set_phase(w, "sleeping");
        usleep(500);
        progress(w);
    }
    set_phase(w, "done");
    return NULL;
}

typedef struct uarg {
    uint32_t id;
} uarg_t;

/* A short-lived thread: uses A and B once, exits (registration, attach,
 * exit flush and unregistration, each time). */
static void *user_main(void *arg)
{
    uint32_t id = ((uarg_t *)arg)->id;
    void *a_blk[U_BLOCKS], *b_blk[U_BLOCKS];
    unsigned na = 0, nb = 0;
    bool use_a = id % 4 != 3, use_b = id % 4 != 2;
    if (use_b) /* before A on every other thread: attach order varies */
        for (; nb < U_BLOCKS / 2; nb++) {
            if (!(b_blk[nb] = magpool_acquire(pool_b)))
                break;
            hold(b_blk[nb], H_TAG(id, POOL_B), nb);
        }
    if (use_a) {
        pthread_rwlock_rdlock(&a_rw);
        magpool_t *a = atomic_load(&pool_a);
        for (; na < U_BLOCKS; na++) {
            if (!(a_blk[na] = magpool_acquire(a)))
                break;
            hold(a_blk[na], H_TAG(id, POOL_A), na);
        }
        CHECK(na == U_BLOCKS, "user thread %u: acquire on A returned NULL (errno %d)", id,
              errno);
        for (unsigned i = 0; i < na; i++) {
            CHECK_STAMP(a_blk[i], H.block_size, H_TAG(id, POOL_A), i);
            unhold(a_blk[i]);
            magpool_release(a, a_blk[i]);
        }
        pthread_rwlock_unlock(&a_rw);
    }
    if (use_b) {
        for (; nb < U_BLOCKS; nb++) {
            if (!(b_blk[nb] = magpool_acquire(pool_b)))
                break;
            hold(b_blk[nb], H_TAG(id, POOL_B), nb);
        }
        CHECK(nb == U_BLOCKS, "user thread %u: acquire on B returned NULL (errno %d)", id,
              errno);
        atomic_fetch_add(&b_acquires, nb);
        for (unsigned i = 0; i < nb; i++) {
            CHECK_STAMP(b_blk[i], H.block_size, H_TAG(id, POOL_B), i);
            unhold(b_blk[i]);
            magpool_release(pool_b, b_blk[i]);
        }
        atomic_fetch_add(&b_releases, nb);
    }
    /* Exits with blocks in its magazines: the exit flush returns them. */
    return NULL;
}

static void *churner_main(void *arg)
{
    worker_t *w = arg;
    uarg_t ua;
    uint32_t n = 0;
    while (!atomic_load(&stop)) {
        set_phase(w, "short-lived thread using A and B");
        ua.id = (w->id << 24) | (n++ & 0xffffff);
        pthread_t t;
        int rc = pthread_create(&t, NULL, user_main, &ua);
        if (rc != 0)
            H_DIE("pthread_create: %s", strerror(rc));
        pthread_join(t, NULL);
        progress(w);
    }
    set_phase(w, "done");
    return NULL;
}

/* ------------------------------------------------------------ fork gate */

/* See "The gate" above. gate_prepare() is the program's last prepare
 * handler: it opens the gate for the threads parked at it. */
static sem_t gate;
static atomic_uint gate_parked;

static void *gated_main(void *arg)
{
    (void)arg;
    /* The first library call allocates (the thread directory) before it
     * registers. fork() holds every malloc arena lock from just after the
     * prepare handlers until the address space is copied, so a thread that
     * had to go to an arena would block there, before registering. Fill the
     * thread's malloc cache (one chunk per small size, served without the
     * arena lock) so the allocation does not block. */
    void *warm[128];
    for (unsigned i = 0; i < 128; i++)
        warm[i] = malloc(8 * (i + 1));
    for (unsigned i = 0; i < 128; i++)
        free(warm[i]);
    atomic_fetch_add(&gate_parked, 1);
    /* Timed, so that no thread stays parked once the forks have stopped. */
    while (!atomic_load(&stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (sem_clockwait(&gate, CLOCK_MONOTONIC, &ts) == 0)
            break;
    }
    /* First library call of this thread: registration, then attach. */
    void *b = magpool_acquire(pool_b);
    CHECK(b != NULL, "gated thread: acquire on B returned NULL (errno %d)", errno);
    if (b) {
        atomic_fetch_add(&b_acquires, 1);
        magpool_release(pool_b, b);
        atomic_fetch_add(&b_releases, 1);
    }
    return NULL;
}

static void *gatekeeper_main(void *arg)
{
    worker_t *w = arg;
    const unsigned k = (unsigned)opt_gate;
    pthread_t t[MAX_WORKERS];
    while (!atomic_load(&stop)) {
        set_phase(w, "starting gated threads");
        for (unsigned i = 0; i < k; i++) {
            int rc = pthread_create(&t[i], NULL, gated_main, NULL);
            if (rc != 0)
                H_DIE("pthread_create: %s", strerror(rc));
        }
        set_phase(w, "waiting for a fork to open the gate");
        for (unsigned i = 0; i < k; i++)
            pthread_join(t[i], NULL);
        progress(w);
    }
    set_phase(w, "done");
    return NULL;
}

/* Runs after the library's prepare handler (see gate). */
static void gate_prepare(void)
{
    unsigned n = atomic_exchange(&gate_parked, 0);
    while (n--)
        sem_post(&gate);
}

/* -------------------------------------------------------- atfork (program) */

static void prog_prepare(void)
{
    pthread_mutex_lock(&a_life);
}

static void prog_parent(void)
{
    pthread_mutex_unlock(&a_life);
}

/* ------------------------------------------------------------------- main */

static worker_t *add_worker(const char *name)
{
    if (nworkers == MAX_WORKERS)
        H_DIE("too many workers");
    worker_t *w = &workers[nworkers];
    w->name = name;
    w->id = nworkers;
    atomic_init(&w->phase, "starting");
    nworkers++;
    return w;
}

/* Wait for the child: 0 ok, 1 failed, 2 hung. */
static int wait_child(pid_t pid, unsigned long forkno)
{
    const uint64_t deadline = now_ns() + (uint64_t)(opt_child_timeout * 1e9);
    useconds_t nap = 20;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            H_DIE("waitpid: %s", strerror(errno));
        if (now_ns() > deadline) {
            CHECK(false,
                  "child of fork #%lu (pid %d) has not exited after %.0f s: hung (in the "
                  "child a lock is held by a thread that did not survive the fork?)",
                  forkno, (int)pid, opt_child_timeout);
            dump_stacks(pid);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return 2;
        }
        usleep(nap);
        if (nap < 2000)
            nap *= 2;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFEXITED(st))
        CHECK(false, "child of fork #%lu (pid %d) exited with status %d (failed checks above)",
              forkno, (int)pid, WEXITSTATUS(st));
    else
        CHECK(false, "child of fork #%lu (pid %d) killed by signal %d (%s)", forkno, (int)pid,
              WTERMSIG(st), strsignal(WTERMSIG(st)));
    return 1;
}

int main(int argc, char **argv)
{
    h_extra_opt_t extra[] = {
        { "churners", "threads starting short-lived pool users", &opt_churners },
        { "trimmer", "1: a thread trims B (max_idle 1 ms) in a loop", &opt_trimmer },
        { "gate", "threads parked until a fork's last prepare handler, then attaching "
                  "(registering) while the fork proceeds", &opt_gate },
        { "recreator", "1: a thread destroys, re-creates and first-uses A (0: to study "
                       "the other defects alone)", &opt_recreator },
        { "batch", "blocks the clearer acquires and releases before each clear", &opt_batch },
        { "child-timeout", "seconds a child may take before it counts as hung",
          &opt_child_timeout },
        { "stall-timeout", "seconds fork() may take before the parent counts as stalled",
          &opt_stall },
        { "keep-going", "1: keep forking after a hung or failed child", &opt_keep_going },
        { "gdb", "1: print the stacks (gdb) of a hung child or a stalled parent", &opt_gdb },
        { "child-checks", "1: the child uses and checks every pool, 0: it exits at once "
                          "(-1: 0 in sanitizer builds, else 1)", &opt_child_checks },
        { NULL, NULL, NULL },
    };
    H.seconds = 10;
    h_parse(argc, argv,
            "fork() storm against clear, destroy/re-create, first use and thread churn:\n"
            "neither the parent nor the child may hang, the child can use every pool.",
            extra);
    if (H.seconds <= 0)
        H.seconds = 10;
    if (opt_churners < 0 || opt_churners > MAX_WORKERS - 4)
        H_DIE("--churners must be in [0, %d]", MAX_WORKERS - 4);
    if (opt_child_checks < 0)
        opt_child_checks = SANITIZER_BUILD ? 0 : 1;
    if (opt_gate < 0 || opt_gate > MAX_WORKERS)
        H_DIE("--gate must be in [0, %d]", MAX_WORKERS);
    if (opt_batch < 1 || opt_batch > 1e6)
        H_DIE("--batch must be in [1, 1e6]");
    if (opt_gdb)
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY); /* let gdb attach to us */
    parent_pid = getpid();

    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* The recreator must not starve behind a stream of users. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&a_rw, &ra);
    pthread_rwlockattr_destroy(&ra);

    if (sem_init(&gate, 0, 0) != 0)
        H_DIE("sem_init: %s", strerror(errno));
    /* Before the library registers its handlers (at its first
     * magpool_create), so this prepare handler runs after the library's. */
    if (pthread_atfork(gate_prepare, NULL, NULL) != 0)
        H_DIE("pthread_atfork failed");

    /* A first: the lower registry position (see the header comment). */
    atomic_store(&pool_a, create_pool());
    pool_b = create_pool();
    /* After the library's first magpool_create, so it runs before the
     * library's prepare handler and after its parent handler. */
    if (pthread_atfork(prog_prepare, prog_parent, NULL) != 0)
        H_DIE("pthread_atfork failed");

    struct { worker_t *w; void *(*fn)(void *); } start[MAX_WORKERS];
    unsigned nstart = 0;
    start[nstart].fn = clearer_main;
    start[nstart++].w = add_worker("clearer");
    if (opt_recreator) {
        start[nstart].fn = recreator_main;
        start[nstart++].w = add_worker("recreator");
    }
    static char names[MAX_WORKERS][24];
    for (unsigned i = 0; i < (unsigned)opt_churners; i++) {
        snprintf(names[i], sizeof names[i], "churner%u", i);
        start[nstart].fn = churner_main;
        start[nstart++].w = add_worker(names[i]);
    }
    if (opt_gate > 0) {
        start[nstart].fn = gatekeeper_main;
        start[nstart++].w = add_worker("gatekeeper");
    }
    if (opt_trimmer) {
        start[nstart].fn = trimmer_main;
        start[nstart++].w = add_worker("trimmer");
    }
    for (unsigned i = 0; i < nstart; i++) {
        int rc = pthread_create(&start[i].w->tid, NULL, start[i].fn, start[i].w);
        if (rc != 0)
            H_DIE("pthread_create: %s", strerror(rc));
    }
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0)
        H_DIE("pthread_create (watchdog) failed");
    pthread_detach(wd);

    unsigned long forks = 0, hung = 0, failed = 0;
    const double t0 = h_elapsed();
    while (h_elapsed() < H.seconds) {
        fflush(stdout); /* the child must not inherit unwritten output */
        atomic_store(&fork_started_ns, now_ns());
        pid_t pid = fork();
        if (pid == 0)
            child_main(forks + 1);
        atomic_store(&fork_started_ns, 0);
        if (pid < 0) {
            if (errno == EAGAIN || errno == ENOMEM) {
                usleep(1000);
                continue;
            }
            H_DIE("fork: %s", strerror(errno));
        }
        forks++;
        atomic_store(&forks_done, forks);
        atomic_store(&live_child, pid);
        int r = wait_child(pid, forks);
        atomic_store(&live_child, 0);
        if (r == 2) {
            hung++;
            printf("%s: hung child at fork #%lu, %.1f s into the run\n", h_prog, forks,
                   h_elapsed());
        } else if (r == 1) {
            failed++;
        }
        if (r != 0 && !opt_keep_going)
            break;
    }
    const double dt = h_elapsed() - t0;

    atomic_store(&shutdown_deadline_ns, now_ns() + (uint64_t)(3 * opt_stall * 1e9));
    atomic_store(&stop, true);
    for (unsigned i = 0; i < nstart; i++)
        pthread_join(start[i].w->tid, NULL);

    printf("%s: %lu forks in %.1f s (%.0f forks/s), %lu hung children, %lu failed children\n",
           h_prog, forks, dt, dt > 0 ? (double)forks / dt : 0.0, hung, failed);
    for (unsigned i = 0; i < nworkers; i++)
        printf("  %-10s %lu iterations\n", workers[i].name, atomic_load(&workers[i].iters));

    /* Everyone is gone and released everything. */
    magpool_t *a = atomic_load(&pool_a);
    h_check_quiescent("end, pool A", a, 0, H_ANY, H_ANY, 0);
    h_check_quiescent("end, pool B", pool_b, 0, atomic_load(&b_acquires),
                      atomic_load(&b_releases), 0);
    magpool_destroy(a);
    magpool_destroy(pool_b);
    atomic_store(&shutdown_deadline_ns, 0);
    return h_finish(1);
}
