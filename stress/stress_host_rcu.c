/* SPDX-License-Identifier: MIT */
/*
 * stress_host_rcu — a host program that runs its own RCU (liburcu's memb
 * and bp flavours) and its own Concurrency Kit epoch domain, and uses
 * magpool from the same threads.
 *
 * Engines protect their own structures with RCU or epochs. The pool's
 * reclamation is its private business: whatever it uses must neither collide
 * with the host's registration in the same runtime (liburcu asserts when a
 * thread registers twice: "!URCU_TLS(rcu_reader).registered"), nor tie the
 * host's grace periods to the pool's (a pool grace period waiting for a host
 * reader, a host reader waiting for a pool lock held across that grace
 * period: a deadlock).
 *
 * --rounds R rounds of --threads T fresh threads. Thread i:
 *   - uses the pools first and then registers with the host's runtimes
 *     (i even), or registers first and then uses the pools (i odd): both
 *     orders of "the library registers the thread" vs "the host does";
 *   - registers with urcu-memb (urcu_memb_register_thread), with the host's
 *     ck_epoch domain (a record recycled or registered), and with urcu-bp
 *     implicitly (its first read lock);
 *   - in a loop: read sections of each of the three (reading the host's
 *     RCU-protected object and checking it), with pool acquires and
 *     releases inside some of them (some lingering, so other threads' pool
 *     grace periods and host grace periods overlap them); updates of the
 *     host's objects (swap, synchronize, poison, free); magpool_trim and
 *     magpool_clear (which wait for the pool's own grace period) while
 *     other threads sit in the host's read sections; pool operations
 *     outside any section;
 *   - unregisters from the host's runtimes, uses the pools once more, exits.
 * Roles bias the mix: writers update the host's objects more often (their
 * synchronize runs while others are inside magpool), trimmers trim and
 * clear more often.
 *
 * Checks: no abort; every block held carries an ownership stamp checked
 * before release (a block handed out twice or overlapping is caught); at
 * the end of each round the pools' statistics equal the operations counted
 * (h_check_quiescent); every host object read is live (magic), consistent
 * (checksum of its version) and not older than one the thread saw before;
 * at the end each host object's version equals the number of updates made;
 * a watchdog fails the run if no thread makes progress for --stall-timeout
 * seconds (a deadlock is a failure, not a timeout).
 *
 * ThreadSanitizer: liburcu 0.13 and Concurrency Kit 0.7.1 are
 * uninstrumented and their atomics are inline asm, so TSan sees neither the
 * publication of the host's object (rcu_xchg_pointer / rcu_dereference,
 * ck_pr_fas_ptr / ck_pr_load_ptr) nor the grace period (a reader's section
 * ends before synchronize returns). Without help it would report the host's
 * own correct RCU use as races. The host tells it, exactly as lib/epoch.c
 * does for the library: a release on the domain's pointer just before the
 * pointer is published and an acquire just after it is read; a release on
 * the domain's grace object just before each read_unlock / ck_epoch_end and
 * an acquire just after each synchronize (and a release / acquire on a
 * ck_epoch record when one thread unregisters it and another recycles it).
 * Those are the host's edges, not the library's: the pool's own
 * synchronisation must stand on its own (the annotations name only host
 * addresses). Without them TSan reports the host's free of a replaced
 * object against a reader's earlier read (checked).
 */
#include "harness.h"

#include <ck_epoch.h>
#include <ck_pr.h>
#include <sys/syscall.h>
#include <urcu/urcu-bp.h>
#include <urcu/urcu-memb.h>

#if defined(__SANITIZE_THREAD__)
#define HOST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HOST_TSAN 1
#endif
#endif

#ifdef HOST_TSAN
#include <sanitizer/tsan_interface.h>
#define host_tsan_release(a) __tsan_release(a)
#define host_tsan_acquire(a) __tsan_acquire(a)
#else
#define host_tsan_release(a) ((void)(a))
#define host_tsan_acquire(a) ((void)(a))
#endif

static double opt_rounds = 10, opt_stall = 60, opt_linger = 4, opt_order = 0,
              opt_skip_host_grace = 0;

/* -------------------------------------------------------- host structures */

#define OBJ_LIVE 0x4c495645484f5354ULL /* "LIVEHOST" */
#define OBJ_DEAD 0xdeaddeaddeaddeadULL

/* The host's RCU-protected object: replaced whole on update. */
typedef struct hobj {
    uint64_t magic;
    uint64_t version;
    uint64_t check;
    uint64_t payload[5];
} hobj_t;

static uint64_t obj_check(uint64_t version)
{
    return h_splitmix(version ^ 0x0b1ec7ULL);
}

enum { DOM_MEMB, DOM_BP, DOM_CK, NDOM };
static const char *const dom_name[NDOM] = { "urcu-memb", "urcu-bp", "ck_epoch" };

typedef struct domain {
    hobj_t *ptr;              /* RCU-protected; access only through the flavour */
    pthread_mutex_t writer;   /* updaters of ptr serialise (the usual RCU update side) */
    uint64_t updates;         /* under writer */
    char grace;               /* TSan sync object: "a read section ended" */
} domain_t;

static domain_t dom[NDOM];
static ck_epoch_t host_epoch;

/* Every ck_epoch record ever registered (records cannot be freed while the
 * domain lives; unregistered ones are recycled). */
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static ck_epoch_record_t *recs[4096];
static unsigned nrecs;

static hobj_t *obj_new(uint64_t version)
{
    hobj_t *o = malloc(sizeof *o);
    if (!o)
        H_DIE("out of memory");
    o->magic = OBJ_LIVE;
    o->version = version;
    o->check = obj_check(version);
    for (int i = 0; i < 5; i++)
        o->payload[i] = version * 31 + (uint64_t)i;
    return o;
}

/* Checks an object read inside a read section of domain d. */
static void obj_verify(int d, const hobj_t *o, uint64_t *last_seen, unsigned tid)
{
    CHECK(o != NULL, "thread %u, %s: the host's pointer is NULL", tid, dom_name[d]);
    if (!o)
        return;
    uint64_t magic = o->magic, version = o->version, check = o->check;
    CHECK(magic == OBJ_LIVE,
          "thread %u, %s: host object %p has magic 0x%016" PRIx64 " inside a read section "
          "(freed before the grace period ended)",
          tid, dom_name[d], (const void *)o, magic);
    CHECK(check == obj_check(version),
          "thread %u, %s: host object %p version %" PRIu64 " has a bad checksum", tid,
          dom_name[d], (const void *)o, version);
    for (int i = 0; i < 5; i++)
        CHECK(o->payload[i] == version * 31 + (uint64_t)i,
              "thread %u, %s: host object %p payload[%d] corrupt", tid, dom_name[d],
              (const void *)o, i);
    CHECK(version >= *last_seen,
          "thread %u, %s: read version %" PRIu64 " after version %" PRIu64, tid, dom_name[d],
          version, *last_seen);
    *last_seen = version;
}

/* Read the host pointer of domain d, inside its read section. */
static hobj_t *host_deref(int d, ck_epoch_record_t *rec)
{
    (void)rec;
    hobj_t *o;
    if (d == DOM_CK)
        o = ck_pr_load_ptr(&dom[d].ptr);
    else
        o = rcu_dereference(dom[d].ptr);
    host_tsan_acquire(&dom[d].ptr); /* pairs with the release in host_update() */
    return o;
}

static void host_read_lock(int d, ck_epoch_record_t *rec)
{
    if (d == DOM_MEMB)
        urcu_memb_read_lock();
    else if (d == DOM_BP)
        urcu_bp_read_lock();
    else
        ck_epoch_begin(rec, NULL);
}

static void host_read_unlock(int d, ck_epoch_record_t *rec)
{
    /* The reader's accesses happen before the updater's free. */
    host_tsan_release(&dom[d].grace);
    if (d == DOM_MEMB)
        urcu_memb_read_unlock();
    else if (d == DOM_BP)
        urcu_bp_read_unlock();
    else
        ck_epoch_end(rec, NULL);
}

static void host_synchronize(int d, ck_epoch_record_t *rec)
{
    if (d == DOM_MEMB)
        urcu_memb_synchronize_rcu();
    else if (d == DOM_BP)
        urcu_bp_synchronize_rcu();
    else
        ck_epoch_synchronize(rec);
    host_tsan_acquire(&dom[d].grace); /* pairs with host_read_unlock() */
}

/* Replace domain d's object, wait for its readers, free the old one. */
static void host_update(int d, ck_epoch_record_t *rec)
{
    pthread_mutex_lock(&dom[d].writer);
    uint64_t v = ++dom[d].updates;
    hobj_t *n = obj_new(v);
    host_tsan_release(&dom[d].ptr); /* pairs with host_deref() */
    hobj_t *old;
    if (d == DOM_CK)
        old = ck_pr_fas_ptr(&dom[d].ptr, n);
    else
        old = rcu_xchg_pointer(&dom[d].ptr, n);
    pthread_mutex_unlock(&dom[d].writer);
    if (!opt_skip_host_grace)
        host_synchronize(d, rec);
    CHECK(old->magic == OBJ_LIVE && old->version == v - 1,
          "%s: the object replaced by update %" PRIu64 " is version %" PRIu64
          " magic 0x%016" PRIx64,
          dom_name[d], v, old->version, old->magic);
    old->magic = OBJ_DEAD; /* a reader still holding it would see this */
    free(old);
}

/* ------------------------------------------------------------------ pools */

#define NPOOLS 2
static magpool_t *pools[NPOOLS];
#define HELD_MAX 32

typedef struct held {
    void *p;
    uint64_t seq;
} held_t;

typedef struct worker {
    unsigned id;       /* unique over the run */
    unsigned idx;      /* index in the round */
    uint64_t ops;
    uint64_t acquires[NPOOLS], releases[NPOOLS];
    held_t held[NPOOLS][HELD_MAX];
    unsigned nheld[NPOOLS];
    uint64_t seq;
    h_rng_t rng;
} worker_t;

static atomic_ulong progress_ticks;

static void pool_acquire(worker_t *w, int p)
{
    if (w->nheld[p] == HELD_MAX)
        return;
    errno = 0;
    void *b = magpool_acquire(pools[p]);
    CHECK(b != NULL, "thread %u pool %d: acquire returned NULL (errno %d), pools are unlimited",
          w->id, p, errno);
    if (!b)
        return;
    w->acquires[p]++;
    h_stamp_write(b, magpool_block_size(pools[p]), H_TAG(w->id, p), ++w->seq);
    w->held[p][w->nheld[p]++] = (held_t){ b, w->seq };
}

static void pool_release_one(worker_t *w, int p, unsigned j)
{
    held_t h = w->held[p][j];
    CHECK_STAMP(h.p, magpool_block_size(pools[p]), H_TAG(w->id, p), h.seq);
    magpool_release(pools[p], h.p);
    w->releases[p]++;
    w->held[p][j] = w->held[p][--w->nheld[p]];
}

/* A few pool operations: acquire or release at random, either pool. */
static void pool_ops(worker_t *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int p = (int)(h_rand(&w->rng) & 1);
        if (w->nheld[p] == 0 || (w->nheld[p] < HELD_MAX && (h_rand(&w->rng) & 1)))
            pool_acquire(w, p);
        else
            pool_release_one(w, p, (unsigned)h_below(&w->rng, w->nheld[p]));
    }
}

static void pool_release_all(worker_t *w)
{
    for (int p = 0; p < NPOOLS; p++)
        while (w->nheld[p])
            pool_release_one(w, p, w->nheld[p] - 1);
}

/* ----------------------------------------------------------------- threads */

static ck_epoch_record_t *ck_record(void)
{
    ck_epoch_record_t *r = ck_epoch_recycle(&host_epoch, NULL);
    if (r) {
        /* ck hands the record over with its own (invisible) atomics. */
        host_tsan_acquire(r); /* pairs with the release in worker_main() */
        return r;
    }
    /* The record type is cache-line aligned (CK_CC_CACHELINE). */
    r = aligned_alloc(_Alignof(ck_epoch_record_t),
                      (sizeof *r + _Alignof(ck_epoch_record_t) - 1) &
                          ~(_Alignof(ck_epoch_record_t) - 1));
    if (!r)
        H_DIE("out of memory");
    ck_epoch_register(&host_epoch, r, NULL);
    pthread_mutex_lock(&rec_lock);
    if (nrecs == sizeof recs / sizeof recs[0])
        H_DIE("too many ck_epoch records");
    recs[nrecs++] = r;
    pthread_mutex_unlock(&rec_lock);
    return r;
}

enum { ROLE_READER, ROLE_WRITER, ROLE_TRIMMER, ROLE_MIXED };

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const bool pool_first = opt_order == 1 || (opt_order == 0 && (w->idx & 1) == 0);
    const int role = (int)((w->idx >> 1) & 3);
    uint64_t last_seen[NDOM] = { 0, 0, 0 };

    /* Order 1: the pools first (the library meets this thread first). */
    if (pool_first)
        pool_ops(w, 4);

    urcu_memb_register_thread();
    ck_epoch_record_t *rec = ck_record();
    /* urcu-bp registers the thread on its first read lock. */

    /* Order 2: the host registered the thread first. */
    if (!pool_first)
        pool_ops(w, 4);

    for (uint64_t i = 0; i < w->ops; i++) {
        unsigned r = (unsigned)h_below(&w->rng, 100);
        unsigned p_update = role == ROLE_WRITER ? 12 : 1;
        unsigned p_trim = role == ROLE_TRIMMER ? 8 : 1;
        if (r < p_update) {
            host_update((int)h_below(&w->rng, NDOM), rec);
        } else if (r < p_update + p_trim) {
            int p = (int)(h_rand(&w->rng) & 1);
            if (h_rand(&w->rng) & 1)
                magpool_clear(pools[p]);
            else
                magpool_trim(pools[p], 0.0005);
        } else if (r < 60) {
            /* A read section of the host, with pool operations inside (a
             * pool grace period may be waiting meanwhile; the pool may
             * grow under its growth lock while we hold the section). */
            int d = (int)h_below(&w->rng, NDOM);
            host_read_lock(d, rec);
            hobj_t *o = host_deref(d, rec);
            obj_verify(d, o, &last_seen[d], w->id);
            if (role != ROLE_WRITER || (r & 1))
                pool_ops(w, 1 + (unsigned)h_below(&w->rng, 8));
            if (h_below(&w->rng, 16) == 0) /* linger */
                for (unsigned k = 0; k < (unsigned)opt_linger; k++) {
                    sched_yield();
                    pool_ops(w, 2);
                }
            /* What the section saw is still there until it ends, however
             * many updates (and pool grace periods) went by meanwhile. */
            uint64_t again = o ? o->version : 0;
            obj_verify(d, o, &again, w->id);
            obj_verify(d, host_deref(d, rec), &last_seen[d], w->id);
            host_read_unlock(d, rec);
        } else {
            pool_ops(w, 1 + (unsigned)h_below(&w->rng, 4));
        }
        if ((i & 15) == 0)
            atomic_fetch_add_explicit(&progress_ticks, 1, memory_order_relaxed);
    }
    pool_release_all(w);

    urcu_memb_unregister_thread();
    host_tsan_release(rec); /* to the thread that recycles it: ck_record() */
    ck_epoch_unregister(rec);
    urcu_bp_unregister_thread(); /* a no-op in 0.13: bp unregisters at exit */

    /* The library must still serve a thread the host has let go. */
    pool_ops(w, 4);
    pool_release_all(w);
    return NULL;
}

/* ---------------------------------------------------------------- watchdog */

static void *watchdog_main(void *arg)
{
    (void)arg;
    unsigned long seen = atomic_load(&progress_ticks);
    double since = h_elapsed();
    for (;;) {
        usleep(200 * 1000);
        unsigned long now = atomic_load(&progress_ticks);
        if (now != seen) {
            seen = now;
            since = h_elapsed();
        } else if (h_elapsed() - since > opt_stall) {
            char buf[256];
            int n = snprintf(buf, sizeof buf,
                             "%s: FAILED: no thread made progress for %.0f s: deadlock "
                             "(between the host's grace periods and the pool's?)\n",
                             h_prog, opt_stall);
            if (write(2, buf, (size_t)n) < 0)
                n = 0;
            /* Not _exit: the sanitizers' interceptor would add its own
             * end-of-process reports about the stuck threads. */
            syscall(SYS_exit_group, 1);
            _exit(1);
        }
    }
    return NULL;
}

/* -------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    h_extra_opt_t extra[] = {
        { "rounds", "rounds of fresh threads (--ops is per thread over all rounds)",
          &opt_rounds },
        { "linger", "yields (with pool operations) inside a lingering read section",
          &opt_linger },
        { "stall-timeout", "seconds without progress that count as a deadlock", &opt_stall },
        { "skip-host-grace", "1: the host frees without waiting for its grace period "
                             "(proof that the host checks see a broken grace period)",
          &opt_skip_host_grace },
        { "order", "0: half the threads use a pool before registering with the host's "
                   "runtimes, half after; 1: all before; 2: all after", &opt_order },
        { NULL, NULL, NULL },
    };
    H.ops = 20000;
    h_parse(argc, argv,
            "a host using urcu-memb, urcu-bp and ck_epoch itself, and magpool from the same\n"
            "threads, in both registration orders",
            extra);
    if (opt_rounds < 1 || opt_rounds > 1e6)
        H_DIE("--rounds must be in [1, 1e6]");

    for (int d = 0; d < NDOM; d++) {
        pthread_mutex_init(&dom[d].writer, NULL);
        dom[d].ptr = obj_new(0);
    }
    ck_epoch_init(&host_epoch);
    pools[0] = h_create(H.block_size, 0, 16);
    pools[1] = h_create(H.block_size * 4, 0, 0);

    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0)
        H_DIE("pthread_create (watchdog) failed");
    pthread_detach(wd);

    const unsigned t = H.threads, rounds = (unsigned)opt_rounds;
    worker_t *w = calloc(t, sizeof *w);
    if (!w)
        H_DIE("out of memory");
    uint64_t acq[NPOOLS] = { 0 }, rel[NPOOLS] = { 0 };
    unsigned iterations = 0;
    do {
        for (unsigned r = 0; r < rounds && h_failure_count() == 0; r++) {
            for (unsigned i = 0; i < t; i++) {
                unsigned id = (iterations * rounds + r) * t + i;
                w[i] = (worker_t){ .id = id, .idx = i, .ops = H.ops / rounds ? H.ops / rounds : 1,
                                   .rng = h_rng_seed(id, 41) };
            }
            h_run_threads(t, worker_main, w, sizeof *w);
            for (int p = 0; p < NPOOLS; p++) {
                for (unsigned i = 0; i < t; i++) {
                    acq[p] += w[i].acquires[p];
                    rel[p] += w[i].releases[p];
                }
                char ctx[64];
                snprintf(ctx, sizeof ctx, "round %u, pool %d", r, p);
                h_check_quiescent(ctx, pools[p], 0, acq[p], rel[p], 0);
            }
        }
    } while (h_more_rounds(&iterations));

    /* The host's structures: intact, and at the version the updates made. */
    for (int d = 0; d < NDOM; d++) {
        hobj_t *o = dom[d].ptr; /* every thread joined */
        CHECK(o->magic == OBJ_LIVE && o->check == obj_check(o->version),
              "%s: final host object corrupt (magic 0x%016" PRIx64 ")", dom_name[d], o->magic);
        CHECK(o->version == dom[d].updates,
              "%s: final host object is version %" PRIu64 ", %" PRIu64 " updates were made",
              dom_name[d], o->version, dom[d].updates);
        if (H.verbose)
            printf("  %s: %" PRIu64 " updates\n", dom_name[d], dom[d].updates);
        free(o);
    }
    for (int p = 0; p < NPOOLS; p++)
        magpool_destroy(pools[p]);
    for (unsigned i = 0; i < nrecs; i++)
        free(recs[i]);
    free(w);
    return h_finish(iterations);
}
