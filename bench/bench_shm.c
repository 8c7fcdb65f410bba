/* SPDX-License-Identifier: MIT */
/*
 * bench_shm: the cross-process shared pool against the alternatives a
 * trading system would otherwise use (docs/shm.md, "Benchmark").
 *
 *   bench_shm [--runs R] [--blocks N] [--pairs N] [--json FILE] [--only PART]
 *
 * Cross-process producer/consumer, for 64 B and 1 KiB blocks, at 2
 * processes (1 producer, 1 consumer) and 4 (2 + 2): each producer acquires
 * a block, fills it (block_size bytes), hands it over; each consumer takes
 * it, reads it all (a checksum) and releases it. Three ways:
 *
 *   magpool   magpool_shm pool + its lock-free ring (the hand-off is an
 *             index, the consumer releases into its own cache)
 *   mutex     the same in shared memory with robust process-shared mutexes:
 *             a free list under one mutex, the hand-off queue under another
 *             (what the mutex backend would be across processes)
 *   pipe      no shared pool: the producer fills a private buffer and
 *             write()s it into a pipe, the consumer read()s it into its own
 *             (one pipe per producer/consumer pair)
 *   magpool-burst  as magpool, but the hand-off moves B blocks per call
 *             (--burst B, default 32): the producer acquires and fills B
 *             blocks one by one, then magpool_shm_ring_enqueue_burst; the
 *             consumer magpool_shm_ring_dequeue_burst(B), then checks and
 *             releases each one by one
 *   mutex-burst    as mutex, with the same batching of its queue: up to B
 *             indices in or out per hold of the queue mutex; the free list
 *             is still taken per block, as magpool-burst still acquires and
 *             releases per block (through its thread cache)
 *
 * Single-process pair: acquire + release of one block in a loop, the shared
 * pool against a local magpool pool (lock-free backend), same block size.
 *
 * Every configuration runs R times, interleaved round by round, so ratios
 * compare runs made under the same machine load; the report gives medians
 * and the ratios of medians, and the load average before and after.
 *
 *   bench_shm --instr KIND SIZE N     (scripts/shm_instr.sh runs it under callgrind)
 *
 * The instruction path of one variant without contention: one process
 * hands N blocks to itself (producer step, then consumer step, per block or
 * per burst) inside bench_shm_region, which callgrind counts alone. KIND
 * "work" is the fill + checksum alone, the part every variant shares.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
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

#include <magpool.h>
#include <magpool_shm.h>

#include "stats.h"

static long n_blocks = 200000; /* per producer */
static long n_pairs = 20000000;
static unsigned ring_size = 256; /* hand-off queue entries (both shared variants): 256 x 1 KiB
                                  * in flight, near a pipe's 64 KiB buffer */
static int runs = 5;
static unsigned burst = 32; /* blocks per hand-off call in the burst variants */
static const char *only; /* --only magpool|mutex|pipe|pair: profile one part */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill(void *b, size_t n, uint64_t v)
{
    uint64_t *w = b;
    for (size_t i = 0; i < n / 8; i++)
        w[i] = v + i;
}

static uint64_t checksum(const void *b, size_t n)
{
    const uint64_t *w = b;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++)
        s += w[i];
    return s;
}

/* Shared between the bench's processes (anonymous shared mapping). */
struct ctl {
    _Atomic int go;
    _Atomic long consumed;
    _Atomic uint64_t sink;
};

static void wait_go(struct ctl *c)
{
    while (!atomic_load(&c->go))
        sched_yield();
}

/* ---------------------------------------------------------------- magpool */

static char shm_name[64];

static void mp_producer(struct ctl *c, size_t bs)
{
    magpool_shm_t *p = magpool_shm_attach(shm_name, bs);
    if (!p)
        _exit(2);
    wait_go(c);
    for (long i = 0; i < n_blocks; i++) {
        void *b;
        while (!(b = magpool_shm_acquire(p)))
            sched_yield();
        fill(b, bs, (uint64_t)i);
        while (magpool_shm_ring_enqueue(p, 0, b) != 0)
            sched_yield();
    }
    magpool_shm_detach(p);
    _exit(0);
}

static void mp_consumer(struct ctl *c, size_t bs, long total)
{
    magpool_shm_t *p = magpool_shm_attach(shm_name, bs);
    if (!p)
        _exit(2);
    wait_go(c);
    uint64_t s = 0;
    while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < total) {
        void *b = magpool_shm_ring_dequeue(p, 0);
        if (!b) {
            sched_yield();
            continue;
        }
        s += checksum(b, bs);
        magpool_shm_release(p, b);
        atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
    }
    atomic_fetch_add(&c->sink, s);
    magpool_shm_detach(p);
    _exit(0);
}

static void mp_burst_producer(struct ctl *c, size_t bs)
{
    magpool_shm_t *p = magpool_shm_attach(shm_name, bs);
    if (!p)
        _exit(2);
    wait_go(c);
    void *b[256];
    for (long i = 0; i < n_blocks;) {
        unsigned n = n_blocks - i < (long)burst ? (unsigned)(n_blocks - i) : burst;
        for (unsigned k = 0; k < n; k++) {
            while (!(b[k] = magpool_shm_acquire(p)))
                sched_yield();
            fill(b[k], bs, (uint64_t)(i + k));
        }
        for (unsigned sent = 0; sent < n;) {
            unsigned m = magpool_shm_ring_enqueue_burst(p, 0, b + sent, n - sent);
            sent += m;
            if (m == 0)
                sched_yield();
        }
        i += n;
    }
    magpool_shm_detach(p);
    _exit(0);
}

static void mp_burst_consumer(struct ctl *c, size_t bs, long total)
{
    magpool_shm_t *p = magpool_shm_attach(shm_name, bs);
    if (!p)
        _exit(2);
    wait_go(c);
    uint64_t s = 0;
    void *b[256];
    while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < total) {
        unsigned n = magpool_shm_ring_dequeue_burst(p, 0, b, burst);
        if (!n) {
            sched_yield();
            continue;
        }
        for (unsigned k = 0; k < n; k++) {
            s += checksum(b[k], bs);
            magpool_shm_release(p, b[k]);
        }
        atomic_fetch_add_explicit(&c->consumed, n, memory_order_relaxed);
    }
    atomic_fetch_add(&c->sink, s);
    magpool_shm_detach(p);
    _exit(0);
}

/* ------------------------------------------------------- robust mutexes */

struct mx {
    pthread_mutex_t fl_lock, q_lock;
    uint32_t fl_top, q_head, q_tail, q_size;
    uint32_t cap;
    size_t bs;
    /* then: free list u32[cap], queue u32[q_size], blocks */
};

static uint32_t *mx_fl(struct mx *m) { return (uint32_t *)(m + 1); }
static uint32_t *mx_q(struct mx *m) { return mx_fl(m) + m->cap; }
static unsigned char *mx_blocks(struct mx *m)
{
    return (unsigned char *)((uintptr_t)(mx_q(m) + m->q_size + 16) & ~(uintptr_t)63);
}

static void robust_lock(pthread_mutex_t *l)
{
    if (pthread_mutex_lock(l) == EOWNERDEAD)
        pthread_mutex_consistent(l);
}

static struct mx *mx_create(size_t bs, uint32_t cap, uint32_t q_size, size_t *len)
{
    *len = sizeof(struct mx) + (size_t)(cap + q_size) * 4 + 128 + (size_t)cap * ((bs + 63) & ~(size_t)63);
    struct mx *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m->fl_lock, &a);
    pthread_mutex_init(&m->q_lock, &a);
    m->cap = cap;
    m->q_size = q_size;
    m->bs = bs;
    for (uint32_t i = 0; i < cap; i++)
        mx_fl(m)[i] = i;
    m->fl_top = cap;
    return m;
}

static void *mx_acquire(struct mx *m)
{
    robust_lock(&m->fl_lock);
    void *b = m->fl_top ? mx_blocks(m) + (size_t)mx_fl(m)[--m->fl_top] * ((m->bs + 63) & ~(size_t)63)
                        : NULL;
    pthread_mutex_unlock(&m->fl_lock);
    return b;
}

static uint32_t mx_index(struct mx *m, void *b)
{
    return (uint32_t)(((unsigned char *)b - mx_blocks(m)) / ((m->bs + 63) & ~(size_t)63));
}

static void mx_release(struct mx *m, void *b)
{
    robust_lock(&m->fl_lock);
    mx_fl(m)[m->fl_top++] = mx_index(m, b);
    pthread_mutex_unlock(&m->fl_lock);
}

static int mx_enqueue(struct mx *m, void *b)
{
    robust_lock(&m->q_lock);
    int ok = m->q_tail - m->q_head < m->q_size;
    if (ok)
        mx_q(m)[m->q_tail++ % m->q_size] = mx_index(m, b);
    pthread_mutex_unlock(&m->q_lock);
    return ok;
}

static void *mx_dequeue(struct mx *m)
{
    robust_lock(&m->q_lock);
    void *b = NULL;
    if (m->q_head != m->q_tail)
        b = mx_blocks(m) + (size_t)mx_q(m)[m->q_head++ % m->q_size] * ((m->bs + 63) & ~(size_t)63);
    pthread_mutex_unlock(&m->q_lock);
    return b;
}

/* Up to n blocks in / out of the queue under one hold of its mutex. */
static unsigned mx_enqueue_n(struct mx *m, void *const *b, unsigned n)
{
    robust_lock(&m->q_lock);
    unsigned k = 0;
    for (; k < n && m->q_tail - m->q_head < m->q_size; k++)
        mx_q(m)[m->q_tail++ % m->q_size] = mx_index(m, b[k]);
    pthread_mutex_unlock(&m->q_lock);
    return k;
}

static unsigned mx_dequeue_n(struct mx *m, void **b, unsigned n)
{
    size_t stride = (m->bs + 63) & ~(size_t)63;
    robust_lock(&m->q_lock);
    unsigned k = 0;
    for (; k < n && m->q_head != m->q_tail; k++)
        b[k] = mx_blocks(m) + (size_t)mx_q(m)[m->q_head++ % m->q_size] * stride;
    pthread_mutex_unlock(&m->q_lock);
    return k;
}

static struct mx *mx_pool;

static void mx_producer(struct ctl *c, size_t bs)
{
    wait_go(c);
    for (long i = 0; i < n_blocks; i++) {
        void *b;
        while (!(b = mx_acquire(mx_pool)))
            sched_yield();
        fill(b, bs, (uint64_t)i);
        while (!mx_enqueue(mx_pool, b))
            sched_yield();
    }
    _exit(0);
}

static void mx_consumer(struct ctl *c, size_t bs, long total)
{
    wait_go(c);
    uint64_t s = 0;
    while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < total) {
        void *b = mx_dequeue(mx_pool);
        if (!b) {
            sched_yield();
            continue;
        }
        s += checksum(b, bs);
        mx_release(mx_pool, b);
        atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
    }
    atomic_fetch_add(&c->sink, s);
    _exit(0);
}

static void mx_burst_producer(struct ctl *c, size_t bs)
{
    wait_go(c);
    void *b[256];
    for (long i = 0; i < n_blocks;) {
        unsigned n = n_blocks - i < (long)burst ? (unsigned)(n_blocks - i) : burst;
        for (unsigned k = 0; k < n; k++) {
            while (!(b[k] = mx_acquire(mx_pool)))
                sched_yield();
            fill(b[k], bs, (uint64_t)(i + k));
        }
        for (unsigned sent = 0; sent < n;) {
            unsigned m = mx_enqueue_n(mx_pool, b + sent, n - sent);
            sent += m;
            if (m == 0)
                sched_yield();
        }
        i += n;
    }
    _exit(0);
}

static void mx_burst_consumer(struct ctl *c, size_t bs, long total)
{
    wait_go(c);
    uint64_t s = 0;
    void *b[256];
    while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < total) {
        unsigned n = mx_dequeue_n(mx_pool, b, burst);
        if (!n) {
            sched_yield();
            continue;
        }
        for (unsigned k = 0; k < n; k++) {
            s += checksum(b[k], bs);
            mx_release(mx_pool, b[k]);
        }
        atomic_fetch_add_explicit(&c->consumed, n, memory_order_relaxed);
    }
    atomic_fetch_add(&c->sink, s);
    _exit(0);
}

/* ------------------------------------------------------------------ pipe */

static int pipes[8][2];

static void pipe_producer(struct ctl *c, size_t bs, int k)
{
    wait_go(c);
    unsigned char buf[4096];
    for (long i = 0; i < n_blocks; i++) {
        fill(buf, bs, (uint64_t)i);
        size_t done = 0;
        while (done < bs) {
            ssize_t w = write(pipes[k][1], buf + done, bs - done);
            if (w < 0)
                _exit(3);
            done += (size_t)w;
        }
    }
    _exit(0);
}

static void pipe_consumer(struct ctl *c, size_t bs, int k)
{
    wait_go(c);
    unsigned char buf[4096];
    uint64_t s = 0;
    for (long i = 0; i < n_blocks; i++) {
        size_t done = 0;
        while (done < bs) {
            ssize_t r = read(pipes[k][0], buf + done, bs - done);
            if (r <= 0)
                _exit(3);
            done += (size_t)r;
        }
        s += checksum(buf, bs);
    }
    atomic_fetch_add(&c->sink, s);
    _exit(0);
}

/* --------------------------------------------------------------- driver */

enum kind { K_MAGPOOL, K_MUTEX, K_PIPE, K_MAGPOOL_BURST, K_MUTEX_BURST, K_N };
static const char *kind_name[] = {"magpool", "mutex", "pipe", "magpool-burst", "mutex-burst"};

/* Blocks per second through `procs` processes (half producers). */
static double run_prodcons(enum kind k, size_t bs, int procs)
{
    int pairs = procs / 2;
    long total = n_blocks * pairs;
    struct ctl *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(c, 0, sizeof *c);
    magpool_shm_t *owner = NULL;
    size_t mx_len = 0;
    if (k == K_MAGPOOL || k == K_MAGPOOL_BURST) {
        snprintf(shm_name, sizeof shm_name, "/magpool-bench-%d", (int)getpid());
        magpool_shm_unlink(shm_name);
        magpool_shm_config_t cfg;
        magpool_shm_config_init(&cfg, sizeof cfg, bs);
        cfg.max_blocks = 16384;
        cfg.initial_blocks = 16384;
        cfg.ring_size = ring_size;
        owner = magpool_shm_create(shm_name, &cfg, sizeof cfg);
        if (!owner) {
            perror("magpool_shm_create");
            exit(1);
        }
    } else if (k == K_MUTEX || k == K_MUTEX_BURST) {
        mx_pool = mx_create(bs, 16384, ring_size, &mx_len);
    } else {
        for (int i = 0; i < pairs; i++)
            if (pipe(pipes[i]) != 0)
                exit(1);
    }
    pid_t pids[16];
    for (int i = 0; i < procs; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            bool prod = i < pairs;
            if (k == K_MAGPOOL)
                prod ? mp_producer(c, bs) : mp_consumer(c, bs, total);
            else if (k == K_MUTEX)
                prod ? mx_producer(c, bs) : mx_consumer(c, bs, total);
            else if (k == K_MAGPOOL_BURST)
                prod ? mp_burst_producer(c, bs) : mp_burst_consumer(c, bs, total);
            else if (k == K_MUTEX_BURST)
                prod ? mx_burst_producer(c, bs) : mx_burst_consumer(c, bs, total);
            else
                prod ? pipe_producer(c, bs, i) : pipe_consumer(c, bs, i - pairs);
            _exit(0);
        }
    }
    if (k == K_PIPE)
        for (int i = 0; i < pairs; i++) {
            close(pipes[i][0]);
            close(pipes[i][1]);
        }
    usleep(50000); /* every child attached and waiting */
    double t0 = now_s();
    atomic_store(&c->go, 1);
    int bad = 0;
    for (int i = 0; i < procs; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    double dt = now_s() - t0;
    if (bad) {
        fprintf(stderr, "bench_shm: a %s worker failed\n", kind_name[k]);
        exit(1);
    }
    if (owner) {
        magpool_shm_detach(owner);
        magpool_shm_unlink(shm_name);
    }
    if (mx_pool) {
        munmap(mx_pool, mx_len);
        mx_pool = NULL;
    }
    munmap(c, sizeof *c);
    return (double)total / dt;
}

/* ns per acquire+release pair in one thread. */
static double run_pair(bool shared, size_t bs)
{
    volatile uintptr_t sink = 0;
    double t0, dt;
    if (shared) {
        snprintf(shm_name, sizeof shm_name, "/magpool-bench-pair-%d", (int)getpid());
        magpool_shm_unlink(shm_name);
        magpool_shm_config_t cfg;
        magpool_shm_config_init(&cfg, sizeof cfg, bs);
        magpool_shm_t *p = magpool_shm_create(shm_name, &cfg, sizeof cfg);
        if (!p)
            exit(1);
        magpool_shm_release(p, magpool_shm_acquire(p));
        t0 = now_s();
        for (long i = 0; i < n_pairs; i++) {
            void *b = magpool_shm_acquire(p);
            sink += (uintptr_t)b;
            magpool_shm_release(p, b);
        }
        dt = now_s() - t0;
        magpool_shm_detach(p);
        magpool_shm_unlink(shm_name);
    } else {
        magpool_config_t cfg;
        magpool_config_init(&cfg, sizeof cfg, bs);
        magpool_t *p = magpool_create(&cfg);
        magpool_release(p, magpool_acquire(p));
        t0 = now_s();
        for (long i = 0; i < n_pairs; i++) {
            void *b = magpool_acquire(p);
            sink += (uintptr_t)b;
            magpool_release(p, b);
        }
        dt = now_s() - t0;
        magpool_destroy(p);
    }
    (void)sink;
    return dt * 1e9 / (double)n_pairs;
}

/* ------------------------------------------------- instructions per block */

__attribute__((noinline)) uint64_t bench_shm_region(enum kind k, size_t bs, long n,
                                                    magpool_shm_t *p, void *work)
{
    uint64_t s = 0;
    void *b[256];
    unsigned bb = k == K_MAGPOOL_BURST || k == K_MUTEX_BURST ? burst : 1;
    for (long i = 0; i < n; i += bb) {
        if (k == K_PIPE) { /* "work": what every variant does to a block */
            fill(work, bs, (uint64_t)i);
            s += checksum(work, bs);
            continue;
        }
        for (unsigned j = 0; j < bb; j++) {
            b[j] = p ? magpool_shm_acquire(p) : mx_acquire(mx_pool);
            fill(b[j], bs, (uint64_t)i);
        }
        unsigned m;
        if (k == K_MAGPOOL) {
            magpool_shm_ring_enqueue(p, 0, b[0]);
            m = (b[0] = magpool_shm_ring_dequeue(p, 0)) != NULL;
        } else if (k == K_MAGPOOL_BURST) {
            magpool_shm_ring_enqueue_burst(p, 0, b, bb);
            m = magpool_shm_ring_dequeue_burst(p, 0, b, bb);
        } else if (k == K_MUTEX) {
            mx_enqueue(mx_pool, b[0]);
            m = (b[0] = mx_dequeue(mx_pool)) != NULL;
        } else {
            mx_enqueue_n(mx_pool, b, bb);
            m = mx_dequeue_n(mx_pool, b, bb);
        }
        for (unsigned j = 0; j < m; j++) {
            s += checksum(b[j], bs);
            p ? (void)magpool_shm_release(p, b[j]) : mx_release(mx_pool, b[j]);
        }
    }
    return s;
}

static int run_instr(const char *kind, size_t bs, long n)
{
    enum kind k = K_N;
    for (int i = 0; i < K_N; i++)
        if (!strcmp(kind, kind_name[i]))
            k = (enum kind)i;
    if (!strcmp(kind, "work"))
        k = K_PIPE;
    if (k == K_N || bs < 8 || bs > 4096 || n < 0 || n % burst) {
        fprintf(stderr, "bench_shm: --instr magpool|mutex|magpool-burst|mutex-burst|work SIZE N"
                        " (N a multiple of --burst)\n");
        return 2;
    }
    magpool_shm_t *p = NULL;
    size_t len = 0;
    static uint64_t work[512];
    if (k == K_MAGPOOL || k == K_MAGPOOL_BURST) {
        snprintf(shm_name, sizeof shm_name, "/magpool-bench-instr-%d", (int)getpid());
        magpool_shm_unlink(shm_name);
        magpool_shm_config_t cfg;
        magpool_shm_config_init(&cfg, sizeof cfg, bs);
        cfg.ring_size = ring_size;
        p = magpool_shm_create(shm_name, &cfg, sizeof cfg);
        if (!p)
            return 1;
        magpool_shm_unlink(shm_name);
    } else if (k != K_PIPE) {
        mx_pool = mx_create(bs, 16384, ring_size, &len);
    }
    uint64_t s = bench_shm_region(k, bs, burst * 64, p, work) * 0; /* warm-up: caches, TLS */
    s += bench_shm_region(k, bs, n, p, work);
    printf("%s %zu %ld %llu\n", kind, bs, n, (unsigned long long)s);
    if (p)
        magpool_shm_detach(p);
    if (mx_pool)
        munmap(mx_pool, len);
    return 0;
}

/* The median of the per-round ratios a[r] / b[r]: a round runs both back
 * to back, so this is the least load-sensitive figure on a shared machine. */
static double round_ratio(const double *a, const double *b)
{
    double r[64];
    for (int i = 0; i < runs; i++)
        r[i] = a[i] / b[i];
    return stats_median(r, (size_t)runs);
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* A ratio as a JSON member; null when a part was not run (--only): JSON
 * has no inf or nan. */
static void json_ratio(FILE *j, const char *key, double a, double b)
{
    double r = a / b;
    if (a > 0 && b > 0 && isfinite(r))
        fprintf(j, ", \"%s\": %.3f", key, r);
    else
        fprintf(j, ", \"%s\": null", key);
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    const char *instr = NULL;
    size_t instr_size = 0;
    long instr_n = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--instr") && i + 3 < argc) {
            instr = argv[i + 1];
            instr_size = strtoul(argv[i + 2], NULL, 10);
            instr_n = atol(argv[i + 3]);
            i += 2;
            continue;
        }
        if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--blocks"))
            n_blocks = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--pairs"))
            n_pairs = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--burst"))
            burst = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ring"))
            ring_size = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "--json"))
            json_path = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_shm [--runs R] [--blocks N] [--pairs N] [--json FILE]\n"
                            "                 [--ring N] [--burst B]\n"
                            "                 [--only magpool|mutex|pipe|magpool-burst|"
                            "mutex-burst|pair]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 64 || n_blocks < 1 || n_pairs < 1 || ring_size < 2 || ring_size > 65536 ||
        burst < 1 || burst > 256 || burst > ring_size ||
        (ring_size & (ring_size - 1))) {
        fprintf(stderr, "bench_shm: bad options\n");
        return 2;
    }
    if (instr)
        return run_instr(instr, instr_size, instr_n);
    static const size_t sizes[] = {64, 1024};
    static const int procs[] = {2, 4};
    double pc[2][2][K_N][64], pair[2][2][64];
    double load0 = loadavg();
    for (int r = 0; r < runs; r++)
        for (int s = 0; s < 2; s++) {
            for (int n = 0; n < 2; n++)
                for (int k = 0; k < K_N; k++)
                    pc[s][n][k][r] = !only || !strcmp(only, kind_name[k])
                                         ? run_prodcons((enum kind)k, sizes[s], procs[n]) : 0;
            bool pairs = !only || !strcmp(only, "pair");
            pair[s][0][r] = pairs ? run_pair(true, sizes[s]) : 0;
            pair[s][1][r] = pairs ? run_pair(false, sizes[s]) : 0;
        }
    double load1 = loadavg();
    FILE *j = json_path ? fopen(json_path, "w") : NULL;
    if (json_path && !j) {
        perror(json_path);
        return 1;
    }
    if (j)
        fprintf(j, "{\n  \"bench\": \"bench_shm\", \"runs\": %d, \"blocks_per_producer\": %ld,\n"
                   "  \"pairs\": %ld, \"loadavg_before\": %.2f, \"loadavg_after\": %.2f,\n"
                   "  \"nproc\": %ld, \"ring_size\": %u, \"burst\": %u,\n  \"prodcons\": [\n",
                runs, n_blocks, n_pairs, load0, load1, sysconf(_SC_NPROCESSORS_ONLN), ring_size,
                burst);
    printf("cross-process producer/consumer, blocks/s (median of %d), load %.2f -> %.2f\n", runs,
           load0, load1);
    printf("%6s %5s %12s %12s %12s %12s %12s %8s %8s %8s\n", "size", "procs", "magpool", "mutex",
           "pipe", "mp-burst", "mx-burst", "x mutex", "x pipe", "burst x");
    for (int s = 0; s < 2; s++)
        for (int n = 0; n < 2; n++) {
            double m[K_N];
            for (int k = 0; k < K_N; k++)
                m[k] = stats_median(pc[s][n][k], (size_t)runs);
            printf("%6zu %5d %12.0f %12.0f %12.0f %12.0f %12.0f %8.2f %8.2f %8.2f"
                   "  (per-round medians: x mutex %.2f, burst x %.2f)\n", sizes[s],
                   procs[n], m[0], m[1], m[2], m[3], m[4], m[0] / m[1], m[0] / m[2], m[3] / m[4],
                   round_ratio(pc[s][n][0], pc[s][n][1]), round_ratio(pc[s][n][3], pc[s][n][4]));
            if (j) {
                fprintf(j, "    {\"block_size\": %zu, \"procs\": %d", sizes[s], procs[n]);
                for (int k = 0; k < K_N; k++) {
                    fprintf(j, ", \"%s_median\": %.0f, \"%s_runs\": [", kind_name[k], m[k],
                            kind_name[k]);
                    for (int r = 0; r < runs; r++)
                        fprintf(j, "%s%.0f", r ? ", " : "", pc[s][n][k][r]);
                    fprintf(j, "]");
                }
                json_ratio(j, "ratio_vs_mutex", m[0], m[1]);
                json_ratio(j, "ratio_vs_pipe", m[0], m[2]);
                json_ratio(j, "burst_ratio_vs_mutex_burst", m[3], m[4]);
                json_ratio(j, "burst_ratio_vs_pipe", m[3], m[2]);
                json_ratio(j, "round_ratio_vs_mutex", round_ratio(pc[s][n][0], pc[s][n][1]), 1);
                json_ratio(j, "round_burst_ratio_vs_mutex_burst",
                           round_ratio(pc[s][n][3], pc[s][n][4]), 1);
                fprintf(j, "}%s\n", s == 1 && n == 1 ? "" : ",");
            }
        }
    printf("single-process acquire+release pair, ns (median of %d)\n", runs);
    if (j)
        fprintf(j, "  ],\n  \"pair\": [\n");
    for (int s = 0; s < 2; s++) {
        double sh = stats_median(pair[s][0], (size_t)runs);
        double lo = stats_median(pair[s][1], (size_t)runs), per_run[64];
        /* Each round measures shared and local back to back: the median of
         * the per-round ratios is the least load-sensitive figure. */
        for (int r = 0; r < runs; r++)
            per_run[r] = pair[s][0][r] / pair[s][1][r];
        double rr = stats_median(per_run, (size_t)runs);
        printf("%6zu shared %.2f local %.2f ratio of medians %.3f, median of per-run ratios %.3f\n",
               sizes[s], sh, lo, sh / lo, rr);
        if (j) {
            fprintf(j, "    {\"block_size\": %zu, \"shared_ns\": %.3f, \"local_ns\": %.3f",
                    sizes[s], sh, lo);
            json_ratio(j, "ratio", sh, lo);
            json_ratio(j, "median_run_ratio", rr, 1);
            fprintf(j, "}%s\n", s ? "" : ",");
        }
    }
    if (j) {
        fprintf(j, "  ]\n}\n");
        fclose(j);
    }
    return 0;
}
