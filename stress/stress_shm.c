/* SPDX-License-Identifier: MIT */
/*
 * stress_shm: the cross-process shared pool under load, and under kill -9.
 *
 *   stress_shm [--procs P] [--threads T] [--seconds S] [--kill-ms K]
 *              [--max-blocks N] [--block-size B] [--seed X] [--churn 0|1]
 *              [--cache N]
 *
 * P worker processes (0: the threads run in this process, beside a thread
 * that attaches a second handle, leaves orphans and reclaims them unless
 * --churn 0; that is what the TSan build runs, since TSan cannot see across
 * processes) of T threads
 * each, attached by name, for S seconds. Each thread repeatedly: acquires a
 * block, stamps it (the whole block: a token derived from its worker,
 * thread and sequence) and enqueues it into a ring; dequeues a block that
 * some thread of some process produced, checks the stamp is intact (a block
 * handed out twice, or written by two owners, tears it), poisons it and
 * releases it; sometimes keeps a few blocks for a while or releases directly.
 *
 * --cache N: thread cache size (default 32); a small one sends most
 * operations through the segment mutex.
 *
 * --hold-lock-us U: every refill sleeps U us inside the segment mutex, in
 * the middle of its update (a white-box switch), so that the kills land
 * there and the survivors must repair the free stack (EOWNERDEAD); the run
 * then also checks that repairs happened.
 *
 * --kill-ms K: every K ms (+-50%) a random worker process is killed with
 * SIGKILL and a new one started; the parent also runs recovery and returns
 * orphans while the others keep running.
 *
 * --window-kills N: the worker processes in odd places (1, 3, ...) only
 * consume from the rings (those in even places only produce), and die inside the consumer-kill window: a
 * white-box countdown makes the
 * dequeue that ends it _exit() right after its commit CAS, before the
 * block is adopted (after 1..N commits of that process). The parent reaps
 * and replaces them like the SIGKILLed ones. At the end, with every worker
 * still attached but quiet (each has given back what it kept and says so
 * through a pipe), the parent recovers, drains the rings and returns the
 * orphans; then no block may still be held: a block a killed consumer had
 * emptied from a ring but not adopted would still be stamped HELD by its
 * live producer.
 *
 * At the end the workers stop (SIGTERM: finish the step, give everything
 * back, detach), the parent recovers, drains the rings and returns orphans,
 * and then the accounting must be exact: every one of the max_blocks blocks
 * acquirable exactly once by the parent (distinct addresses), stats showing
 * free + cached + held + orphans == committed with no orphans and no held
 * blocks left. A watchdog (SIGALRM) turns a hang into a failure.
 *
 * --break ring-relaxed | no-reclaim | no-intent: switch off one mechanism in
 * the library (white-box test switches) for the must-fail twins: without
 * release/acquire on the ring TSan must report the race on the blocks'
 * contents; without recovery's reclaim of a dead process's cached blocks
 * the soak's final accounting must fail; without the dequeue intent, the
 * window kills must leave blocks held by live producers.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <magpool_shm.h>

extern bool magpool_test_shm_ring_relaxed, magpool_test_shm_no_reclaim;
extern bool magpool_test_shm_no_intent;
extern unsigned magpool_test_shm_hold_lock_us;
extern _Atomic unsigned magpool_test_shm_exit_after_commits;
#define WINDOW_EXIT 86 /* MAGPOOL_TEST_SHM_WINDOW_EXIT (lib/shm_internal.h) */

static struct {
    int procs, threads, kill_ms, churn, cache, window_kills;
    double seconds;
    size_t max_blocks, block_size;
    unsigned seed;
    char name[64];
} opt = {4, 2, 0, 1, 32, 0, 2.0, 8192, 64, 1, ""};

static atomic_ulong failures;
/* With --window-kills, workers have roles: those that die in the window
 * only consume (every block they take from a ring is another process's; one
 * of their own would be an orphan anyway), the others only produce. */
static bool consumer_only, producer_only;
static atomic_int stop;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            if (atomic_fetch_add(&failures, 1) < 20) {                                        \
                fprintf(stderr, "stress_shm[%d] %s:%d: CHECK(%s) failed: ", (int)getpid(),    \
                        __FILE__, __LINE__, #cond);                                           \
                fprintf(stderr, __VA_ARGS__);                                                 \
                fputc('\n', stderr);                                                          \
            }                                                                                 \
        }                                                                                     \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The ownership stamp over the whole block: word 0 the token, every other
 * word token ^ its index. */
static void stamp_block(void *b, uint64_t token)
{
    uint64_t *w = b;
    size_t n = opt.block_size / 8;
    w[0] = token;
    for (size_t i = 1; i < n; i++)
        w[i] = token ^ i;
}

static bool stamp_intact(const void *b)
{
    const uint64_t *w = b;
    size_t n = opt.block_size / 8;
    for (size_t i = 1; i < n; i++)
        if (w[i] != (w[0] ^ i))
            return false;
    return w[0] != 0;
}

struct worker {
    magpool_shm_t *pool;
    unsigned id;
};

#define KEEP 8

static void *worker_thread(void *arg)
{
    struct worker *w = arg;
    magpool_shm_t *pool = w->pool;
    unsigned rings = 2;
    uint64_t rng = (uint64_t)w->id * 0x9e3779b97f4a7c15u + opt.seed + 1, seq = 0;
    void *kept[KEEP];
    int nkept = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = xorshift(&rng);
        void *b = magpool_shm_acquire(pool);
        if (b) {
            stamp_block(b, ((uint64_t)w->id << 40) | ++seq);
            if (r & 1 && !consumer_only) {
                if (magpool_shm_ring_enqueue(pool, (unsigned)(r >> 8) % rings, b) != 0) {
                    CHECK(errno == EAGAIN, "enqueue: %s", strerror(errno));
                    CHECK(magpool_shm_release(pool, b) == 0, "release after full ring: %s",
                          strerror(errno));
                }
            } else if (nkept < KEEP) {
                kept[nkept++] = b;
            } else {
                CHECK(magpool_shm_release(pool, b) == 0, "release: %s", strerror(errno));
            }
        } else {
            CHECK(errno == ENOMEM, "acquire: %s", strerror(errno));
        }
        for (int k = 0; k < 2 && !producer_only; k++) {
            void *d = magpool_shm_ring_dequeue(pool, (unsigned)(r >> (16 + k)) % rings);
            if (!d) {
                CHECK(errno == EAGAIN, "dequeue: %s", strerror(errno));
                continue;
            }
            CHECK(stamp_intact(d), "torn stamp in dequeued block %p: %016" PRIx64, d,
                  *(uint64_t *)d);
            memset(d, 0, 8);
            CHECK(magpool_shm_release(pool, d) == 0, "release dequeued: %s", strerror(errno));
        }
        if (nkept && (r >> 40) % 4 == 0) {
            void *k = kept[--nkept];
            CHECK(stamp_intact(k), "torn stamp in kept block");
            CHECK(magpool_shm_release(pool, k) == 0, "release kept: %s", strerror(errno));
        }
    }
    while (nkept)
        CHECK(magpool_shm_release(pool, kept[--nkept]) == 0, "final release: %s",
              strerror(errno));
    return NULL;
}

static void run_threads(magpool_shm_t *pool, unsigned base_id)
{
    pthread_t th[64];
    struct worker w[64];
    int n = opt.threads > 64 ? 64 : opt.threads;
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){pool, base_id + (unsigned)i};
        pthread_create(&th[i], NULL, worker_thread, &w[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static void *run_threads_main(void *pool)
{
    run_threads(pool, 0);
    return NULL;
}

/* In the single-process run: a second handle that comes and goes (a process
 * that attaches, hands some blocks to the rings and leaves holding others),
 * with orphan reclaim racing the consumers' adoption of its ring entries.
 * Not under TSan (--churn 0): the second handle maps the segment at another
 * address, and TSan keys atomics and mutexes by address, so it cannot see
 * that the two mappings' ring cells and mutex are one object and reports
 * the hand-offs through them as races (docs/shm.md, "Tests"). */
static void *orphan_churn(void *arg)
{
    uint64_t rng = 99;
    unsigned long rounds = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        magpool_shm_t *h = magpool_shm_attach(opt.name, opt.block_size);
        CHECK(h != NULL, "churn attach: %s", strerror(errno));
        if (!h)
            break;
        for (int i = 0; i < 16; i++) {
            void *b = magpool_shm_acquire(h);
            if (!b)
                break;
            stamp_block(b, (UINT64_C(0xfff) << 40) | ++rounds);
            if (xorshift(&rng) & 1 && magpool_shm_ring_enqueue(h, (unsigned)i % 2, b) != 0)
                CHECK(magpool_shm_release(h, b) == 0, "churn release: %s", strerror(errno));
            /* else: left held, an orphan once h detaches */
        }
        CHECK(magpool_shm_detach(h) == 0, "churn detach");
        CHECK(magpool_shm_reclaim_orphans(arg) >= 0, "reclaim: %s", strerror(errno));
    }
    return NULL;
}

static void on_term(int sig)
{
    (void)sig;
    atomic_store(&stop, 1);
}

/* The end-of-run handshake: each worker says "quiet" on its own pipe and
 * waits for the parent to close `go` before it detaches. */
static int go_pipe[2];

/* A worker process: attach by name, run, give back, say so, wait, detach. */
static int worker_process(unsigned id, bool window, int quiet_fd)
{
    close(go_pipe[1]);
    magpool_shm_t *pool = magpool_shm_attach(opt.name, opt.block_size);
    if (!pool) {
        fprintf(stderr, "stress_shm: worker attach: %s\n", strerror(errno));
        return 2;
    }
    uint64_t rng = (uint64_t)id * 0x2545f4914f6cdd1du + opt.seed + 3;
    consumer_only = window;
    producer_only = opt.window_kills > 0 && !window;
    if (window)
        atomic_store(&magpool_test_shm_exit_after_commits,
                     1 + (unsigned)(xorshift(&rng) % (unsigned)opt.window_kills));
    run_threads(pool, id * 64);
    (void)!write(quiet_fd, "q", 1);
    char c;
    while (read(go_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    CHECK(magpool_shm_detach(pool) == 0, "detach: %s", strerror(errno));
    return atomic_load(&failures) ? 1 : 0;
}

/* Starts worker `id` in place `slot`; *quiet gets the read end of its
 * pipe. Only workers in odd places die in the window: those in even places
 * live on (unless --kill-ms), so that blocks they produced and a killed
 * consumer left unadopted are still stamped with a live producer at the
 * end if recovery did not finish the hand-off. */
static pid_t spawn(unsigned id, int slot, int *quiet)
{
    int q[2];
    if (pipe(q) != 0) {
        perror("stress_shm: pipe");
        exit(2);
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(q[0]);
        _exit(worker_process(id, opt.window_kills > 0 && slot % 2, q[1]));
    }
    close(q[1]);
    *quiet = q[0];
    return pid;
}

/* A worker ended without being killed: only a window kill may do that. */
static bool died_in_window(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == WINDOW_EXIT;
}

/* With every worker quiet but still attached: after recovery, draining the
 * rings and returning orphans, nobody may hold a block (the workers gave
 * back what they kept). Blocks left HELD by a live producer here are the
 * hand-offs of consumers killed in the window that recovery did not finish. */
static void check_quiet(magpool_shm_t *pool)
{
    magpool_shm_recover(pool);
    for (unsigned r = 0; r < 2; r++) {
        void *d;
        while ((d = magpool_shm_ring_dequeue(pool, r)) != NULL)
            CHECK(magpool_shm_release(pool, d) == 0, "quiet drain release: %s", strerror(errno));
    }
    CHECK(magpool_shm_reclaim_orphans(pool) >= 0, "reclaim: %s", strerror(errno));
    magpool_shm_stats_t st;
    CHECK(magpool_shm_stats(pool, &st, sizeof st) == 0, "stats");
    CHECK(st.held == 0 && st.orphans == 0,
          "%" PRIu64 " blocks held by live producers, %" PRIu64 " orphans, after recovery "
          "with every worker quiet", st.held, st.orphans);
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "stress_shm: WATCHDOG: no progress, hang\n";
    (void)!write(2, msg, sizeof msg - 1);
    shm_unlink(opt.name); /* no litter in /dev/shm (an unlink(2) underneath) */
    _exit(3);
}

/* The final accounting, in the parent, with every worker gone. */
static void check_accounting(magpool_shm_t *pool)
{
    magpool_shm_recover(pool);
    for (unsigned r = 0; r < 2; r++) {
        void *d;
        while ((d = magpool_shm_ring_dequeue(pool, r)) != NULL) {
            CHECK(stamp_intact(d), "torn stamp in a block left in ring %u", r);
            CHECK(magpool_shm_release(pool, d) == 0, "drain release: %s", strerror(errno));
        }
    }
    /* Every ring still moves: a whole lap and one through each (a cell left
     * with a wrong lap would stop a ring for good, as full and empty). */
    for (unsigned r = 0; r < 2; r++)
        for (int i = 0; i < 257; i++) {
            void *b = magpool_shm_acquire(pool);
            CHECK(b != NULL, "acquire for the lap: %s", strerror(errno));
            if (!b)
                break;
            bool in = magpool_shm_ring_enqueue(pool, r, b) == 0;
            void *d = in ? magpool_shm_ring_dequeue(pool, r) : NULL;
            CHECK(in && d == b, "ring %u stuck at step %d of a lap (%s)", r, i, strerror(errno));
            magpool_shm_release(pool, b);
            if (d != b)
                break;
        }
    long orphans = magpool_shm_reclaim_orphans(pool);
    CHECK(orphans >= 0, "reclaim: %s", strerror(errno));
    magpool_shm_stats_t st;
    CHECK(magpool_shm_stats(pool, &st, sizeof st) == 0, "stats");
    printf("stress_shm: end: committed %" PRIu64 " free %" PRIu64 " cached %" PRIu64
           " held %" PRIu64 " orphans %" PRIu64 " in_rings %" PRIu64
           " | recovered procs %" PRIu64 " mutex repairs %" PRIu64 " ring drops %" PRIu64
           " orphans returned at end %ld\n",
           st.committed, st.free, st.cached, st.held, st.orphans, st.in_rings,
           st.procs_recovered, st.repairs, st.ring_dropped, orphans);
    CHECK(st.free + st.cached + st.held + st.orphans == st.committed, "stats do not add up");
    CHECK(st.held == 0 && st.orphans == 0 && st.in_rings == 0, "blocks unaccounted for");
    CHECK(st.procs == 1, "%" PRIu64 " processes still registered", st.procs);
    /* Exactness: every block comes out exactly once. */
    void **all = calloc(opt.max_blocks + 1, sizeof *all);
    size_t n = 0;
    while (n <= opt.max_blocks && (all[n] = magpool_shm_acquire(pool)) != NULL)
        n++;
    CHECK(n == opt.max_blocks, "acquired %zu of %zu blocks at the end", n, opt.max_blocks);
    uint8_t *seen = calloc(opt.max_blocks, 1);
    /* Distinct: sort-free check through the offsets' block numbers. */
    uint64_t off0 = UINT64_MAX, stride = (opt.block_size + 63) / 64 * 64;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = magpool_shm_offset(pool, all[i]);
        CHECK(magpool_shm_block(pool, off) == all[i], "offset round trip");
        if (off < off0)
            off0 = off;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t b = (magpool_shm_offset(pool, all[i]) - off0) / stride;
        CHECK(b < opt.max_blocks && !seen[b], "block %" PRIu64 " handed out twice", b);
        if (b < opt.max_blocks)
            seen[b] = 1;
    }
    for (size_t i = 0; i < n; i++)
        magpool_shm_release(pool, all[i]);
    free(seen);
    free(all);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--procs"))
            opt.procs = atoi(v);
        else if (!strcmp(k, "--threads"))
            opt.threads = atoi(v);
        else if (!strcmp(k, "--seconds"))
            opt.seconds = atof(v);
        else if (!strcmp(k, "--hold-lock-us"))
            magpool_test_shm_hold_lock_us = (unsigned)atoi(v);
        else if (!strcmp(k, "--cache"))
            opt.cache = atoi(v);
        else if (!strcmp(k, "--churn"))
            opt.churn = atoi(v);
        else if (!strcmp(k, "--kill-ms"))
            opt.kill_ms = atoi(v);
        else if (!strcmp(k, "--window-kills"))
            opt.window_kills = atoi(v);
        else if (!strcmp(k, "--max-blocks"))
            opt.max_blocks = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--block-size"))
            opt.block_size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--break") && !strcmp(v, "ring-relaxed"))
            magpool_test_shm_ring_relaxed = true;
        else if (!strcmp(k, "--break") && !strcmp(v, "no-reclaim"))
            magpool_test_shm_no_reclaim = true;
        else if (!strcmp(k, "--break") && !strcmp(v, "no-intent"))
            magpool_test_shm_no_intent = true;
        else if (!strcmp(k, "--seed"))
            opt.seed = (unsigned)strtoul(v, NULL, 10);
        else {
            fprintf(stderr, "usage: stress_shm [--procs P] [--threads T] [--seconds S] "
                            "[--kill-ms K] [--max-blocks N] [--block-size B] [--seed X]\n"
                            "                  [--churn 0|1] [--cache N] [--hold-lock-us U]\n"
                            "                  [--window-kills N]\n"
                            "                  [--break ring-relaxed|no-reclaim|no-intent]\n");
            exit(2);
        }
    }
    if (opt.block_size < 16 || opt.procs < 0 || opt.procs > 32 || opt.threads < 1) {
        fprintf(stderr, "stress_shm: bad options\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    snprintf(opt.name, sizeof opt.name, "/magpool-stress-%d", (int)getpid());
    signal(SIGALRM, watchdog);
    alarm((unsigned)opt.seconds + 60);
    magpool_shm_config_t cfg;
    magpool_shm_config_init(&cfg, sizeof cfg, opt.block_size);
    cfg.max_blocks = opt.max_blocks;
    cfg.initial_blocks = 64;
    cfg.grow_blocks = 128;
    cfg.cache_size = (unsigned)opt.cache;
    cfg.rings = 2;
    cfg.ring_size = 256;
    magpool_shm_t *pool = magpool_shm_create(opt.name, &cfg, sizeof cfg);
    if (!pool) {
        fprintf(stderr, "stress_shm: create: %s\n", strerror(errno));
        return 2;
    }
    /* Inherited by every worker before it can receive the final SIGTERM. */
    signal(SIGTERM, on_term);
    /* Only worker processes and the churn thread attach by name: without
     * them the name goes now, so that a run a sanitizer stops (the must-fail
     * twins) leaves nothing in /dev/shm. */
    if (opt.procs == 0 && !opt.churn)
        magpool_shm_unlink(opt.name);
    uint64_t rng = opt.seed * 2654435761u + 7;
    unsigned kills = 0, spawned = 0, window_deaths = 0;
    if (opt.procs == 0) {
        /* The threads run in this process; this thread stops them. */
        struct timespec ts = {(time_t)opt.seconds,
                              (long)((opt.seconds - (double)(time_t)opt.seconds) * 1e9)};
        pthread_t th, churn;
        pthread_create(&th, NULL, run_threads_main, pool);
        if (opt.churn)
            pthread_create(&churn, NULL, orphan_churn, pool);
        nanosleep(&ts, NULL);
        atomic_store(&stop, 1);
        pthread_join(th, NULL);
        if (opt.churn)
            pthread_join(churn, NULL);
    } else {
        pid_t pids[32];
        int quiet[32];
        if (pipe(go_pipe) != 0) {
            perror("stress_shm: pipe");
            return 2;
        }
        for (int i = 0; i < opt.procs; i++)
            pids[i] = spawn(spawned++, i, &quiet[i]);
        double end = now_s() + opt.seconds;
        double next_kill = opt.kill_ms > 0 ? now_s() : end;
        while (now_s() < end) {
            usleep(5000);
            /* Workers that died in the window by themselves. */
            for (int i = 0; i < opt.procs; i++) {
                int status;
                if (waitpid(pids[i], &status, WNOHANG) != pids[i])
                    continue;
                CHECK(died_in_window(status), "worker died on its own (status %#x)", status);
                window_deaths++;
                close(quiet[i]);
                pids[i] = spawn(spawned++, i, &quiet[i]);
                CHECK(magpool_shm_recover(pool) >= 0, "recover: %s", strerror(errno));
            }
            if (opt.kill_ms <= 0 || now_s() < next_kill)
                continue;
            unsigned ms = (unsigned)opt.kill_ms / 2 + (unsigned)(xorshift(&rng) % (unsigned)opt.kill_ms);
            next_kill = now_s() + ms / 1000.0;
            int victim = (int)(xorshift(&rng) % (unsigned)opt.procs);
            kill(pids[victim], SIGKILL);
            int status;
            waitpid(pids[victim], &status, 0);
            CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) || died_in_window(status),
                  "worker died on its own before the kill (status %#x)", status);
            if (died_in_window(status))
                window_deaths++;
            else
                kills++;
            close(quiet[victim]);
            pids[victim] = spawn(spawned++, victim, &quiet[victim]);
            /* The survivors' view: recover the dead, return orphans. */
            CHECK(magpool_shm_recover(pool) >= 0, "recover: %s", strerror(errno));
            if (kills % 4 == 0)
                CHECK(magpool_shm_reclaim_orphans(pool) >= 0, "reclaim: %s", strerror(errno));
        }
        for (int i = 0; i < opt.procs; i++)
            kill(pids[i], SIGTERM);
        /* Every worker quiet (or dead in the window on its way there). */
        bool alive[32];
        for (int i = 0; i < opt.procs; i++) {
            char c;
            ssize_t n;
            while ((n = read(quiet[i], &c, 1)) < 0 && errno == EINTR)
                ;
            alive[i] = n == 1;
            close(quiet[i]);
            if (!alive[i]) {
                int status;
                waitpid(pids[i], &status, 0);
                CHECK(died_in_window(status), "worker %d ended with status %#x", i, status);
                window_deaths++;
            }
        }
        check_quiet(pool);
        close(go_pipe[1]);
        for (int i = 0; i < opt.procs; i++) {
            int status;
            if (!alive[i])
                continue;
            waitpid(pids[i], &status, 0);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "worker %d ended with status %#x", i, status);
        }
        close(go_pipe[0]);
    }
    check_accounting(pool);
    if (magpool_test_shm_hold_lock_us && kills >= 10) {
        magpool_shm_stats_t st;
        magpool_shm_stats(pool, &st, sizeof st);
        CHECK(st.repairs > 0, "%u kills with the lock held most of the time, but no repair", kills);
    }
    printf("stress_shm: %d procs x %d threads, %.1f s, %u kills, %u deaths in the "
           "consumer-kill window, %u workers started: %lu failures\n",
           opt.procs, opt.threads, opt.seconds, kills, window_deaths, spawned,
           atomic_load(&failures));
    if (opt.window_kills > 0 && opt.procs > 0 && opt.seconds >= 2)
        CHECK(window_deaths > 0, "--window-kills, but no worker died in the window");
    magpool_shm_detach(pool);
    if (opt.procs > 0 || opt.churn)
        magpool_shm_unlink(opt.name);
    return atomic_load(&failures) ? 1 : 0;
}
