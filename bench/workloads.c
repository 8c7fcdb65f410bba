/* SPDX-License-Identifier: MIT */
/*
 * The workloads: what each benchmark thread does, and the thread runner that
 * times them. Runs inside a child process (see bench.h); one call of
 * bench_run() is one measurement.
 *
 * Every loop is written once as an always_inline function of the allocator
 * kind and instantiated per kind (worker_body_pool/array/malloc below), so the
 * variant choice costs nothing inside the measured loops.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "allocators.h"
#include "bench.h"
#include "ring.h"
#include "stats.h"
#include "timing.h"

#define INLINE static inline __attribute__((always_inline))

/* Operations between two looks at the stop flag: long enough that the
 * relaxed load is free, short enough (microseconds) to stop promptly. */
#define PAIR_CHUNK 1024
#define BATCH_CHUNK 8
#define MIX_CHUNK 64
#define PC_CHUNK 256

/* Warm-up before the clock starts: fills thread caches and magazines and
 * maps the first slabs, so the runs measure the steady state (the growth
 * workload measures the cold start on purpose). */
#define PAIR_WARMUP 20000
#define BATCH_WARMUP 64
#define MIX_WARMUP 4096

/* Latency samples kept per thread and operation kind; older ones are
 * overwritten so every thread keeps loading the allocator until stop. */
#define LAT_CAP (1u << 17)

/* Trading-engine mix: a timing wheel of live orders, linked through the
 * blocks themselves. */
#define MIX_WHEEL 4096u  /* > longest lifetime, in ticks          */
#define MIX_MAX_LIVE 32768u

const double bench_quantiles[BENCH_NQ] = {
    0.0,  0.01, 0.05, 0.10, 0.20,  0.30,   0.40,  0.45,   0.475, 0.49, 0.495, 0.50,
    0.60, 0.70, 0.80, 0.90, 0.95, 0.975,   0.99,  0.995,  0.999, 0.9995, 0.9999, 1.0};

static const char *const workload_names[WL_COUNT] = {
    "pair", "batch-lifo", "batch-fifo", "prodcons", "mix", "growth", "lat-pair", "lat-batch"};

const char *bench_workload_name(bench_workload_t w)
{
    return w < WL_COUNT ? workload_names[w] : "?";
}

int bench_workload_parse(const char *s)
{
    for (int i = 0; i < WL_COUNT; i++)
        if (strcmp(s, workload_names[i]) == 0)
            return i;
    return -1;
}

typedef struct shared {
    pthread_barrier_t ready; /* workers + the timing thread        */
    pthread_barrier_t filled;/* growth: every worker holds its share */
    atomic_int stop;
    ring_t *rings;           /* prodcons: one per producer/consumer */
} shared_t;

/* Aligned to a cache line: the counters below are written in the hot loop,
 * and neighbouring workers must not share a line (false sharing would tax
 * every variant with a cost none of them has). */
typedef struct worker {
    _Alignas(64) pthread_t tid;
    int idx;
    const bench_params_t *p;
    const alloc_ctx_t *ctx;
    shared_t *sh;
    alloc_thread_t at;
    uint64_t ops, acquires, releases;
    uint64_t rng;
    double t_start;            /* left the start barrier              */
    double t_end, t_acq_end;   /* when this worker finished (phases)  */
    int failed;                /* an acquire returned NULL            */
    uint32_t *lat_acq, *lat_rel;
    uint64_t nlat;
    void **ptrs;               /* batch / growth holding area         */
    size_t nptrs;
} worker_t;

static uint64_t xorshift(uint64_t *s)
{
    /* xorshift64*: a few cycles, good enough to shape bursts/lifetimes. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int stopped(const worker_t *w)
{
    return atomic_load_explicit(&w->sh->stop, memory_order_relaxed);
}

/* Spin politely: on 2 CPUs with up to 16 threads, the partner we wait for is
 * often not running, so yield the CPU instead of burning the time slice. */
static void backoff(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

INLINE void *acq(bench_kind_t k, worker_t *w)
{
    void *p = alloc_acquire(k, &w->at);
    if (__builtin_expect(p == NULL, 0)) {
        w->failed = 1;
        return NULL;
    }
    w->acquires++;
    return p;
}

INLINE void rel(bench_kind_t k, worker_t *w, void *p)
{
    alloc_release(k, &w->at, p);
    w->releases++;
}

/* ---- (a) pair ---------------------------------------------------------- */

INLINE int pair_n(bench_kind_t k, worker_t *w, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        void *p = acq(k, w);
        if (!p)
            return -1;
        bench_touch(p, i);
        rel(k, w, p);
    }
    return 0;
}

INLINE void wl_pair(bench_kind_t k, worker_t *w)
{
    while (!stopped(w)) {
        if (pair_n(k, w, PAIR_CHUNK))
            return;
        w->ops += PAIR_CHUNK;
    }
}

/* ---- (b) batch --------------------------------------------------------- */

INLINE int batch_once(bench_kind_t k, worker_t *w, int fifo)
{
    void **v = w->ptrs;
    for (int i = 0; i < BATCH_N; i++) {
        void *p = acq(k, w);
        if (!p) {
            for (int j = 0; j < i; j++)
                rel(k, w, v[j]);
            return -1;
        }
        bench_touch(p, (uint64_t)i);
        v[i] = p;
    }
    if (fifo)
        for (int i = 0; i < BATCH_N; i++)
            rel(k, w, v[i]);
    else
        for (int i = BATCH_N - 1; i >= 0; i--)
            rel(k, w, v[i]);
    return 0;
}

INLINE void wl_batch(bench_kind_t k, worker_t *w, int fifo)
{
    while (!stopped(w)) {
        for (int c = 0; c < BATCH_CHUNK; c++)
            if (batch_once(k, w, fifo))
                return;
        w->ops += (uint64_t)BATCH_CHUNK * BATCH_N;
    }
}

/* ---- (c) producer/consumer --------------------------------------------- */

INLINE void wl_producer(bench_kind_t k, worker_t *w, ring_t *r)
{
    unsigned spins = 0;
    uint64_t seq = 0;
    while (!stopped(w)) {
        for (int c = 0; c < PC_CHUNK; c++) {
            void *p = acq(k, w);
            if (!p)
                goto out;
            bench_touch(p, seq++);
            while (!ring_push(r, p))
                backoff(&spins);
        }
    }
out:
    ring_close(r);
}

INLINE void wl_consumer(bench_kind_t k, worker_t *w, ring_t *r)
{
    unsigned spins = 0;
    for (;;) {
        void *p = ring_pop(r);
        if (p) {
            /* Read what the producer wrote: the line moves between CPUs, as
             * a real message would. */
            (void)*(volatile uint64_t *)p;
            rel(k, w, p);
            w->ops++;
            continue;
        }
        /* Closed is read before the final emptiness check, so nothing
         * pushed before the close can be missed. */
        if (ring_closed(r)) {
            while ((p = ring_pop(r)) != NULL) {
                rel(k, w, p);
                w->ops++;
            }
            return;
        }
        backoff(&spins);
    }
}

/* ---- (d) trading-engine mix -------------------------------------------- */

typedef struct order {
    struct order *next; /* wheel bucket link                  */
    uint64_t id;
    int64_t price;
    int32_t qty, side;
} order_t;

typedef struct mix_state {
    order_t *wheel[MIX_WHEEL];
    uint64_t tick, next_id;
    uint32_t live;
} mix_state_t;

/* Lifetimes in ticks: most orders are cancelled or filled almost at once,
 * some rest on the book for a while, a few for very long. */
static uint32_t mix_lifetime(uint64_t *rng)
{
    uint64_t u = xorshift(rng) % 100;
    uint64_t r = xorshift(rng);
    if (u < 70)
        return 1 + (uint32_t)(r % 8);
    if (u < 95)
        return 8 + (uint32_t)(r % 248);
    return 256 + (uint32_t)(r % (MIX_WHEEL - 257));
}

/* Orders per tick: quiet most of the time, bursts of 16..128 one tick in
 * ten (market data spikes). */
static uint32_t mix_burst(uint64_t *rng)
{
    uint64_t u = xorshift(rng) % 10;
    uint64_t r = xorshift(rng);
    return u == 0 ? 16 + (uint32_t)(r % 113) : 1 + (uint32_t)(r % 4);
}

INLINE int mix_tick(bench_kind_t k, worker_t *w, mix_state_t *m)
{
    order_t **b = &m->wheel[m->tick & (MIX_WHEEL - 1)];
    for (order_t *o = *b, *n; o; o = n) {
        n = o->next;
        rel(k, w, o);
        m->live--;
    }
    *b = NULL;
    uint32_t burst = mix_burst(&w->rng);
    uint64_t made = 0;
    for (uint32_t i = 0; i < burst && m->live < MIX_MAX_LIVE; i++) {
        order_t *o = acq(k, w);
        if (!o)
            return -1;
        o->id = m->next_id++;
        o->price = (int64_t)(xorshift(&w->rng) % 10000);
        o->qty = 1 + (int32_t)(o->id % 100);
        o->side = (int32_t)(o->id & 1);
        order_t **d = &m->wheel[(m->tick + mix_lifetime(&w->rng)) & (MIX_WHEEL - 1)];
        o->next = *d;
        *d = o;
        m->live++;
        made++;
    }
    m->tick++;
    return (int)made;
}

INLINE void mix_drain(bench_kind_t k, worker_t *w, mix_state_t *m)
{
    for (uint32_t i = 0; i < MIX_WHEEL; i++) {
        for (order_t *o = m->wheel[i], *n; o; o = n) {
            n = o->next;
            rel(k, w, o);
        }
        m->wheel[i] = NULL;
    }
    m->live = 0;
}

/* ---- (e) growth -------------------------------------------------------- */

INLINE void wl_growth(bench_kind_t k, worker_t *w)
{
    size_t n = 0;
    for (; n < w->nptrs; n++) {
        void *p = acq(k, w);
        if (!p)
            break;
        bench_touch(p, n);
        w->ptrs[n] = p;
    }
    w->t_acq_end = now_ns();
    /* Release only when every thread holds its share: the pool really
     * reaches the target size (without this, a fast thread's releases would
     * feed a slow thread's acquires). */
    pthread_barrier_wait(&w->sh->filled);
    for (size_t i = 0; i < n; i++)
        rel(k, w, w->ptrs[i]);
    w->ops = n;
}

/* ---- latency: every operation timed ------------------------------------ */

INLINE void lat_record(worker_t *w, uint64_t a, uint64_t r)
{
    uint64_t i = w->nlat++ & (LAT_CAP - 1);
    w->lat_acq[i] = a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
    w->lat_rel[i] = r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

INLINE void wl_lat_pair(bench_kind_t k, worker_t *w)
{
    while (!stopped(w)) {
        for (int c = 0; c < PAIR_CHUNK; c++) {
            uint64_t t0 = tsc_begin();
            void *p = acq(k, w);
            uint64_t t1 = tsc_end();
            if (!p)
                return;
            bench_touch(p, (uint64_t)c);
            uint64_t t2 = tsc_begin();
            rel(k, w, p);
            uint64_t t3 = tsc_end();
            lat_record(w, t1 - t0, t3 - t2);
        }
        w->ops += PAIR_CHUNK;
    }
}

INLINE void wl_lat_batch(bench_kind_t k, worker_t *w)
{
    uint64_t ta[BATCH_N];
    void **v = w->ptrs;
    while (!stopped(w)) {
        for (int i = 0; i < BATCH_N; i++) {
            uint64_t t0 = tsc_begin();
            void *p = acq(k, w);
            uint64_t t1 = tsc_end();
            if (!p) {
                for (int j = 0; j < i; j++)
                    rel(k, w, v[j]);
                return;
            }
            bench_touch(p, (uint64_t)i);
            v[i] = p;
            ta[i] = t1 - t0;
        }
        for (int i = BATCH_N - 1; i >= 0; i--) {
            uint64_t t0 = tsc_begin();
            rel(k, w, v[i]);
            uint64_t t1 = tsc_end();
            lat_record(w, ta[i], t1 - t0);
        }
        w->ops += BATCH_N;
    }
}

/* ---- instruction counting (callgrind --toggle-collect) ----------------- */

/* Callgrind counts only inside functions named bench_instr_region*, so the
 * count is exactly n pairs plus loop overhead, no setup, no warm-up. */
#define INSTR_REGION(suffix, K)                                                   \
    __attribute__((noinline)) void bench_instr_region_##suffix(worker_t *w,       \
                                                              uint64_t n)         \
    {                                                                             \
        pair_n(K, w, n);                                                          \
    }
void bench_instr_region_pool(worker_t *w, uint64_t n);
void bench_instr_region_handle(worker_t *w, uint64_t n);
void bench_instr_region_array(worker_t *w, uint64_t n);
void bench_instr_region_malloc(worker_t *w, uint64_t n);
INSTR_REGION(pool, KIND_POOL)
INSTR_REGION(handle, KIND_HANDLE)
INSTR_REGION(array, KIND_ARRAY)
INSTR_REGION(malloc, KIND_MALLOC)

/* ---- per-kind instantiation -------------------------------------------- */

INLINE void warm_up(bench_kind_t k, worker_t *w, mix_state_t *m)
{
    switch (w->p->workload) {
    case WL_PAIR:
    case WL_LAT_PAIR:
        pair_n(k, w, PAIR_WARMUP);
        break;
    case WL_BATCH_LIFO:
    case WL_BATCH_FIFO:
    case WL_LAT_BATCH:
        for (int i = 0; i < BATCH_WARMUP; i++)
            if (batch_once(k, w, w->p->workload == WL_BATCH_FIFO))
                break;
        break;
    case WL_MIX:
        for (int i = 0; i < MIX_WARMUP; i++)
            if (mix_tick(k, w, m) < 0)
                break;
        break;
    default:
        break; /* growth starts cold on purpose; prodcons starts together */
    }
}

INLINE void measure(bench_kind_t k, worker_t *w, mix_state_t *m)
{
    switch (w->p->workload) {
    case WL_PAIR:
        wl_pair(k, w);
        break;
    case WL_BATCH_LIFO:
    case WL_BATCH_FIFO:
        wl_batch(k, w, w->p->workload == WL_BATCH_FIFO);
        break;
    case WL_PRODCONS:
        if (w->idx % 2 == 0)
            wl_producer(k, w, &w->sh->rings[w->idx / 2]);
        else
            wl_consumer(k, w, &w->sh->rings[w->idx / 2]);
        break;
    case WL_MIX:
        while (!stopped(w)) {
            for (int c = 0; c < MIX_CHUNK; c++) {
                int made = mix_tick(k, w, m);
                if (made < 0)
                    goto drain;
                w->ops += (uint64_t)made;
            }
        }
    drain:
        mix_drain(k, w, m);
        break;
    case WL_GROWTH:
        wl_growth(k, w);
        break;
    case WL_LAT_PAIR:
        wl_lat_pair(k, w);
        break;
    case WL_LAT_BATCH:
        wl_lat_batch(k, w);
        break;
    default:
        break;
    }
}

INLINE void worker_body(bench_kind_t k, worker_t *w)
{
    mix_state_t *m = NULL;
    if (w->p->workload == WL_MIX) {
        m = calloc(1, sizeof *m);
        if (!m) {
            w->failed = 1;
        }
    }
    if (m || w->p->workload != WL_MIX)
        warm_up(k, w, m);
    if (w->p->instr_pairs) {
        if (k == KIND_POOL)
            bench_instr_region_pool(w, w->p->instr_pairs);
        else if (k == KIND_HANDLE)
            bench_instr_region_handle(w, w->p->instr_pairs);
        else if (k == KIND_ARRAY)
            bench_instr_region_array(w, w->p->instr_pairs);
        else
            bench_instr_region_malloc(w, w->p->instr_pairs);
        pthread_barrier_wait(&w->sh->ready);
        w->t_start = w->t_end = now_ns();
        return;
    }
    pthread_barrier_wait(&w->sh->ready);
    w->t_start = now_ns();
    if (!w->failed)
        measure(k, w, m);
    else if (w->p->workload == WL_GROWTH)
        pthread_barrier_wait(&w->sh->filled); /* the others wait for us */
    w->t_end = now_ns();
    free(m);
}

static __attribute__((noinline)) void worker_body_pool(worker_t *w)
{
    worker_body(KIND_POOL, w);
}
static __attribute__((noinline)) void worker_body_handle(worker_t *w)
{
    worker_body(KIND_HANDLE, w);
}
static __attribute__((noinline)) void worker_body_array(worker_t *w)
{
    worker_body(KIND_ARRAY, w);
}
static __attribute__((noinline)) void worker_body_malloc(worker_t *w)
{
    worker_body(KIND_MALLOC, w);
}

/* ---- thread runner ----------------------------------------------------- */

/* Most blocks one thread may hold at once, for the array variant's region. */
static size_t worker_capacity(const bench_params_t *p, int idx)
{
    switch (p->workload) {
    case WL_GROWTH:
        return p->growth_blocks / (size_t)p->threads + (idx == 0 ? p->growth_blocks % (size_t)p->threads : 0);
    case WL_MIX:
        return MIX_MAX_LIVE + 256;
    default:
        return 4 * BATCH_N;
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const bench_params_t *p = w->p;
    if (p->pin)
        timing_pin_to_cpu(w->idx % timing_ncpu());
    if (alloc_thread_init(w->ctx, &w->at, worker_capacity(p, w->idx)) != 0)
        w->failed = 1;
    w->nptrs = p->workload == WL_GROWTH ? worker_capacity(p, w->idx) : BATCH_N;
    w->ptrs = calloc(w->nptrs, sizeof *w->ptrs); /* calloc'd and touched now:
                                                   no faults in the timed phase */
    if (!w->ptrs)
        w->failed = 1;
    else
        memset(w->ptrs, 0, w->nptrs * sizeof *w->ptrs);
    if (p->workload == WL_LAT_PAIR || p->workload == WL_LAT_BATCH) {
        w->lat_acq = calloc(LAT_CAP, sizeof(uint32_t));
        w->lat_rel = calloc(LAT_CAP, sizeof(uint32_t));
        if (!w->lat_acq || !w->lat_rel)
            w->failed = 1;
        else {
            memset(w->lat_acq, 0, LAT_CAP * sizeof(uint32_t));
            memset(w->lat_rel, 0, LAT_CAP * sizeof(uint32_t));
        }
    }
    if (w->failed) {
        /* Still meet the barrier, or everyone else waits forever. */
        pthread_barrier_wait(&w->sh->ready);
        if (p->workload == WL_GROWTH)
            pthread_barrier_wait(&w->sh->filled);
        w->t_start = w->t_end = now_ns();
    } else {
        switch (w->ctx->v->kind) {
        case KIND_POOL:
            worker_body_pool(w);
            break;
        case KIND_HANDLE:
            worker_body_handle(w);
            break;
        case KIND_ARRAY:
            worker_body_array(w);
            break;
        default:
            worker_body_malloc(w);
            break;
        }
    }
    free(w->ptrs);
    alloc_thread_fini(&w->at);
    return NULL;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void latency_quantiles(const bench_params_t *p, worker_t *ws, int n, bench_result_t *r)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += ws[i].nlat < LAT_CAP ? ws[i].nlat : LAT_CAP;
    uint32_t *a = malloc((total ? total : 1) * sizeof *a);
    uint32_t *b = malloc((total ? total : 1) * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    uint64_t k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t m = ws[i].nlat < LAT_CAP ? ws[i].nlat : LAT_CAP;
        memcpy(a + k, ws[i].lat_acq, m * sizeof *a);
        memcpy(b + k, ws[i].lat_rel, m * sizeof *b);
        k += m;
    }
    stats_quantiles_u32(a, total, bench_quantiles, BENCH_NQ, r->lat_acquire_ns);
    stats_quantiles_u32(b, total, bench_quantiles, BENCH_NQ, r->lat_release_ns);
    /* Subtracting a constant and clamping at 0 preserve order, so doing it on
     * the quantiles equals doing it on every sample. */
    for (int q = 0; q < BENCH_NQ; q++) {
        double x = r->lat_acquire_ns[q] - p->timer_overhead_cyc;
        double y = r->lat_release_ns[q] - p->timer_overhead_cyc;
        r->lat_acquire_ns[q] = (x > 0 ? x : 0) / p->tsc_per_ns;
        r->lat_release_ns[q] = (y > 0 ? y : 0) / p->tsc_per_ns;
    }
    r->have_latency = 1;
    r->lat_samples = total;
    free(a);
    free(b);
}

int bench_run(const bench_params_t *p, bench_result_t *r)
{
    memset(r, 0, sizeof *r);
    alloc_ctx_t ctx;
    if (alloc_setup(&ctx, p, r->error, sizeof r->error) != 0)
        return -1;
    r->ran = 1;
    int n = p->threads;
    shared_t sh;
    memset(&sh, 0, sizeof sh);
    atomic_init(&sh.stop, 0);
    if (p->workload == WL_PRODCONS) {
        if (n < 2 || n % 2) {
            snprintf(r->error, sizeof r->error, "prodcons needs an even thread count >= 2");
            alloc_teardown(&ctx);
            return -1;
        }
        sh.rings = aligned_alloc(64, (size_t)(n / 2) * sizeof(ring_t));
        if (!sh.rings) {
            snprintf(r->error, sizeof r->error, "out of memory");
            alloc_teardown(&ctx);
            return -1;
        }
        memset(sh.rings, 0, (size_t)(n / 2) * sizeof(ring_t));
    }
    worker_t *ws = aligned_alloc(64, (size_t)n * sizeof *ws);
    if (!ws) {
        snprintf(r->error, sizeof r->error, "out of memory");
        free(sh.rings);
        alloc_teardown(&ctx);
        return -1;
    }
    memset(ws, 0, (size_t)n * sizeof *ws);
    pthread_barrier_init(&sh.ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&sh.filled, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        ws[i].idx = i;
        ws[i].p = p;
        ws[i].ctx = &ctx;
        ws[i].sh = &sh;
        ws[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            /* Cannot recover a barrier sized for n: report and bail out. */
            fprintf(stderr, "magpool-bench: pthread_create: %s\n", strerror(errno));
            _exit(3);
        }
    }
    /* Faults and RSS are read before the barrier opens (the workers are
     * blocked in it); the start time is each worker's own, taken as it
     * leaves the barrier: a short run can finish before this thread is even
     * scheduled again. */
    struct rusage ru0, ru1;
    r->rss_before_kb = rss_kb();
    getrusage(RUSAGE_SELF, &ru0);
    pthread_barrier_wait(&sh.ready);
    int timed = p->workload != WL_GROWTH && !p->instr_pairs;
    if (timed) {
        struct timespec d;
        d.tv_sec = (time_t)p->duration_s;
        d.tv_nsec = (long)((p->duration_s - (double)d.tv_sec) * 1e9);
        while (nanosleep(&d, &d) != 0 && errno == EINTR)
            ;
        atomic_store_explicit(&sh.stop, 1, memory_order_relaxed);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].tid, NULL);
    getrusage(RUSAGE_SELF, &ru1);
    double t0 = ws[0].t_start, t_end = 0, t_acq = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i].t_start < t0)
            t0 = ws[i].t_start;
        if (ws[i].t_end > t_end)
            t_end = ws[i].t_end;
        if (ws[i].t_acq_end > t_acq)
            t_acq = ws[i].t_acq_end;
        r->ops += ws[i].ops;
        r->acquires += ws[i].acquires;
        r->releases += ws[i].releases;
        failed |= ws[i].failed;
    }
    r->elapsed_ns = t_end - t0;
    r->acquire_phase_ns = t_acq > 0 ? t_acq - t0 : 0;
    r->minflt = ru1.ru_minflt - ru0.ru_minflt;
    r->rss_peak_kb = ru1.ru_maxrss;
    if (p->workload == WL_LAT_PAIR || p->workload == WL_LAT_BATCH)
        latency_quantiles(p, ws, n, r);
    for (int i = 0; i < n; i++) {
        free(ws[i].lat_acq);
        free(ws[i].lat_rel);
    }
    if (getenv("MAGPOOL_BENCH_TEST_LEAK")) {
        /* Test hook (bench/test_bench.sh): keep one block, to prove that the
         * conservation check below catches a lost block. */
        alloc_thread_t t;
        if (alloc_thread_init(&ctx, &t, 4) == 0 && alloc_acquire(ctx.v->kind, &t))
            r->acquires++;
    }
    if (getenv("MAGPOOL_BENCH_TEST_NO_OPS"))
        r->ops = 0; /* test hook: a window in which nothing completed */
    int rc = 0;
    if (failed) {
        snprintf(r->error, sizeof r->error, "an acquire failed (%s) or setup ran out of memory",
                 strerror(ENOMEM));
        rc = -1;
    } else if (alloc_check(&ctx, r) != 0) {
        rc = -1;
    } else if (r->ops == 0) {
        /* A window too short (or a machine too loaded) for one operation:
         * no rate can be derived, so the run failed rather than measured 0. */
        snprintf(r->error, sizeof r->error, "no operation completed in %.3g s", p->duration_s);
        rc = -1;
    }
    r->ok = rc == 0;
    pthread_barrier_destroy(&sh.ready);
    pthread_barrier_destroy(&sh.filled);
    free(ws);
    free(sh.rings);
    alloc_teardown(&ctx);
    return rc;
}
