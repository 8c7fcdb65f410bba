/* SPDX-License-Identifier: MIT */
/*
 * Publishing: every live pool's statistics, at an interval, in the POSIX
 * shared-memory segment /magpool.<pid> (/dev/shm/magpool.<pid>, mode 0600),
 * for outside readers (magpool-top, magpool-record) that need nothing from
 * the process at read time. Layout and seqlock: pubseg.h / pubseg.c; why a
 * segment and not a socket: docs/live-view.md.
 *
 * One background thread per process (a sibling of the trimmer, made the
 * same way: detached, every signal blocked) walks the pools
 * (magpool_walk, no lock of ours held), fills one snapshot and writes it
 * under the seqlock. The fast path is not involved: the walk reads the
 * same counters magpool_get_stats does.
 *
 * Life cycle, under pub_lock (a leaf: nothing else is taken while it is
 * held, so registry.c's fork handlers may take it first):
 *   start   creates the segment (O_EXCL; a stale one of a dead process that
 *           had our pid is removed first) and the thread that owns it;
 *   stop    unlinks the name and tells the thread to go; it does not wait
 *           (safe from anywhere but a signal handler); the thread unmaps
 *           and frees its segment when it notices;
 *   exit    an atexit handler unlinks the name, as stop;
 *   fork    the child does not own the parent's segment or thread: it drops
 *           its copies of the mappings (never the name). If publishing was
 *           on, the child publishes under its own pid once it creates a pool
 *           or calls start (MAGPOOL_SHOW_STATS's rule, print.c): a fork +
 *           exec child, whose exec would skip atexit, leaves no segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "procstat.h"
#include "pubseg.h"

#define PUB_MIN_MS      10u
#define PUB_MAX_MS      3600000u
#define PUB_DEFAULT_MS  1000u
#define PUB_FIRST_CAP   64u

struct publisher {
    struct publisher *next;     /* every publisher whose thread may run    */
    pid_t pid;                  /* the process that made it                */
    int fd;
    void *seg;                  /* the mapping, owned by the thread        */
    size_t capacity;            /* records the segment holds (the thread's) */
    uint64_t start_time;
    char name[32];              /* "/magpool.<pid>"                        */
    /* under pub_lock: */
    unsigned interval_ms;
    bool stopped, kick;
    /* the thread's own: */
    uint64_t *recs;             /* the snapshot being filled               */
    size_t nrecs, recs_cap, left_out;
    uint64_t snapshots;
};

static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pub_cond;
static bool cond_ready;
static struct publisher *current;  /* under pub_lock: the active one, or NULL */
static struct publisher *all;      /* under pub_lock: current + stopping ones */
static bool atexit_done;
/* A fork child's interval to publish at once it creates a pool (0: none).
 * Written under pub_lock; read first without it by pool creation. */
static _Atomic unsigned child_pending_ms;

/* ---------------------------------------------------------------- helpers */

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Words of one pool's record. */
static void record_fill(uint64_t *r, const struct pool_view *v)
{
    memset(r, 0, PUB_REC_BYTES);
    r[R_UID] = ((const magpool_t *)v->pool)->uid;
    r[R_BLOCK_SIZE] = v->block_size;
    r[R_MAX_BLOCKS] = v->max_blocks;
    r[R_MAGAZINE_SIZE] = v->magazine_size;
    r[R_BACKEND] = strcmp(v->backend, "mutex") == 0;
    r[R_LAYER] = v->layer == NULL ? 0 : strcmp(v->layer, "objpool") == 0 ? 1
               : strcmp(v->layer, "bufmgr") == 0 ? 2 : 3;
    r[R_DIAG] = v->diag;
    uint64_t *s = r + R_STATS;
#define PUB_STORE(f) *s++ = (uint64_t)v->st.f;
    PUB_STAT_FIELDS(PUB_STORE)
#undef PUB_STORE
    memcpy(r + R_NAME, v->name, R_NAME_WORDS * 8 - 1); /* MAGPOOL_NAME_MAX */
}

_Static_assert(MAGPOOL_NAME_MAX <= R_NAME_WORDS * 8, "a name does not fit its words");

/* ------------------------------------------------------------ the thread */

static void collect_one(magpool_t *p, void *arg)
{
    struct publisher *pb = arg;
    struct pool_view v;
    if (view_take(p, &v) != 0)
        return; /* being created or destroyed: next time */
    if (pb->nrecs == pb->recs_cap) {
        size_t cap = pb->recs_cap ? pb->recs_cap * 2 : PUB_FIRST_CAP;
        uint64_t *nr = realloc(pb->recs, cap * PUB_REC_BYTES);
        if (nr == NULL) {
            pb->left_out++;
            return;
        }
        pb->recs = nr;
        pb->recs_cap = cap;
    }
    record_fill(pb->recs + pb->nrecs * PUB_REC_WORDS, &v);
    pb->nrecs++;
}

/* Room for n records: the segment only grows (a reader's older, smaller
 * mapping then stays valid; it remaps when npools says so). Under pub_lock
 * so that a fork child's copy of seg and capacity agree (it unmaps them). */
static bool segment_fit(struct publisher *pb, size_t n)
{
    if (n <= pb->capacity)
        return true;
    size_t cap = pb->capacity;
    while (cap < n)
        cap *= 2;
    mutex_lock(&pub_lock);
    void *seg = MAP_FAILED;
    if (ftruncate(pb->fd, (off_t)pub_segment_bytes(cap)) == 0)
        seg = mremap(pb->seg, pub_segment_bytes(pb->capacity), pub_segment_bytes(cap),
                     MREMAP_MAYMOVE);
    if (seg != MAP_FAILED) {
        pb->seg = seg;
        pb->capacity = cap;
    }
    pthread_mutex_unlock(&pub_lock);
    return seg != MAP_FAILED;
}

static void publish_once(struct publisher *pb, unsigned interval_ms)
{
    pb->nrecs = 0;
    pb->left_out = 0;
    if (magpool_walk(collect_one, pb) != 0)
        return; /* ENOMEM: the last snapshot stays */
    if (!segment_fit(pb, pb->nrecs)) {
        pb->left_out += pb->nrecs - pb->capacity;
        pb->nrecs = pb->capacity;
    }
    uint64_t hdr[PUB_HDR_WORDS] = { 0 };
    hdr[H_CAPACITY] = pb->capacity;
    hdr[H_NPOOLS] = pb->nrecs;
    hdr[H_SNAPSHOTS] = ++pb->snapshots;
    hdr[H_MONO_NS] = clock_ns(CLOCK_MONOTONIC);
    hdr[H_REAL_NS] = clock_ns(CLOCK_REALTIME);
    hdr[H_INTERVAL_MS] = interval_ms;
    hdr[H_UNPUBLISHED] = pb->left_out;
    pub_write(pb->seg, hdr, pb->recs, pb->nrecs);
}

static void publisher_free(struct publisher *pb)
{
    munmap(pb->seg, pub_segment_bytes(pb->capacity));
    close(pb->fd);
    free(pb->recs);
    free(pb);
}

static void unlist_locked(struct publisher *pb)
{
    for (struct publisher **pp = &all; *pp; pp = &(*pp)->next)
        if (*pp == pb) {
            *pp = pb->next;
            return;
        }
}

static void *publisher_main(void *arg)
{
    struct publisher *pb = arg;
    mutex_lock(&pub_lock);
    while (!pb->stopped) {
        unsigned interval = pb->interval_ms;
        pthread_mutex_unlock(&pub_lock);
        publish_once(pb, interval); /* no lock of ours held: see the top */
        mutex_lock(&pub_lock);
        uint64_t due = clock_ns(CLOCK_MONOTONIC) + (uint64_t)pb->interval_ms * 1000000u;
        struct timespec ts = { .tv_sec = (time_t)(due / 1000000000u),
                               .tv_nsec = (long)(due % 1000000000u) };
        while (!pb->stopped && !pb->kick &&
               pthread_cond_timedwait(&pub_cond, &pub_lock, &ts) != ETIMEDOUT)
            ;
        pb->kick = false;
    }
    unlist_locked(pb);
    pthread_mutex_unlock(&pub_lock);
    publisher_free(pb);
    return NULL;
}

/* ----------------------------------------------------------- life cycle */

static void cond_make(void)
{
    bg_cond_init(&pub_cond);
    cond_ready = true;
}

/* An existing /magpool.<pid>: stale (a dead process that had our pid: its
 * start time differs, or it is not a magpool segment of a known layout) or
 * live (another copy of the library in this very process publishes). */
static bool segment_is_ours_live(const char *name, uint64_t my_start)
{
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct stat st;
    uint64_t hdr[PUB_HDR_WORDS] = { 0 };
    bool live = false;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= PUB_HDR_BYTES) {
        void *m = mmap(NULL, PUB_HDR_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            uint64_t none[1];
            if (pub_read(m, PUB_HDR_BYTES, hdr, none, 0, 1) >= 0 || errno != EPROTO)
                live = hdr[H_PID] == (uint64_t)getpid() && hdr[H_START_TIME] == my_start;
            munmap(m, PUB_HDR_BYTES);
        }
    }
    close(fd);
    return live;
}

static int segment_create(struct publisher *pb)
{
    for (int attempt = 0;; attempt++) {
        pb->fd = shm_open(pb->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (pb->fd >= 0)
            break;
        if (errno != EEXIST || attempt > 0)
            return -1;
        if (segment_is_ours_live(pb->name, pb->start_time)) {
            errno = EBUSY;
            return -1;
        }
        shm_unlink(pb->name); /* stale: its process is gone */
    }
    pb->capacity = PUB_FIRST_CAP;
    size_t bytes = pub_segment_bytes(pb->capacity);
    if (ftruncate(pb->fd, (off_t)bytes) == 0) {
        pb->seg = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, pb->fd, 0);
        if (pb->seg != MAP_FAILED) {
            pub_init(pb->seg, (uint64_t)pb->pid, pb->start_time, pb->capacity);
            return 0;
        }
    }
    int e = errno;
    close(pb->fd);
    shm_unlink(pb->name);
    errno = e;
    return -1;
}

static void at_exit(void)
{
    magpool_publish_stop();
}

static int start_locked(unsigned interval_ms)
{
    struct publisher *pb = calloc(1, sizeof *pb);
    if (pb == NULL)
        return -1;
    pb->pid = getpid();
    pb->start_time = proc_start_time(pb->pid, NULL);
    pb->interval_ms = interval_ms;
    snprintf(pb->name, sizeof pb->name, "/magpool.%d", (int)pb->pid);
    if (segment_create(pb) != 0) {
        int e = errno;
        free(pb);
        errno = e;
        return -1;
    }
    if (!cond_ready)
        cond_make();
    if (!atexit_done)
        atexit_done = atexit(at_exit) == 0;
    if (bg_thread_start(publisher_main, pb) != 0) {
        int e = errno;
        shm_unlink(pb->name);
        publisher_free(pb);
        errno = e;
        return -1;
    }
    pb->next = all;
    all = pb;
    current = pb;
    return 0;
}

MAGPOOL_API int magpool_publish_start(unsigned interval_ms)
{
    if (interval_ms < PUB_MIN_MS || interval_ms > PUB_MAX_MS) {
        errno = EINVAL;
        return -1;
    }
    registry_init_once(); /* the fork handlers, before any thread of ours */
    mutex_lock(&pub_lock);
    atomic_store_relaxed(&child_pending_ms, 0); /* under pub_lock */
    int rc = 0;
    if (current != NULL) {
        current->interval_ms = interval_ms; /* publish now, then at the new pace */
        current->kick = true;
        pthread_cond_broadcast(&pub_cond);
    } else {
        rc = start_locked(interval_ms);
    }
    pthread_mutex_unlock(&pub_lock);
    return rc;
}

MAGPOOL_API void magpool_publish_stop(void)
{
    mutex_lock(&pub_lock);
    atomic_store_relaxed(&child_pending_ms, 0); /* under pub_lock */
    struct publisher *pb = current;
    /* An inherited one (a fork child before its handler ran cannot be
     * here; the pid test is for atexit in a child whose restart failed). */
    if (pb != NULL && pb->pid == getpid()) {
        shm_unlink(pb->name);
        pb->stopped = true;
        pthread_cond_broadcast(&pub_cond);
    }
    current = NULL;
    pthread_mutex_unlock(&pub_lock);
}

MAGPOOL_API int magpool_publish_name(char *buf, size_t cap)
{
    if (buf == NULL || cap == 0) {
        errno = EINVAL;
        return -1;
    }
    mutex_lock(&pub_lock);
    int rc = -1;
    if (current == NULL) {
        buf[0] = '\0';
        errno = ENOENT;
    } else if ((size_t)snprintf(buf, cap, "/dev/shm%s", current->name) >= cap) {
        buf[0] = '\0';
        errno = ERANGE;
    } else {
        rc = 0;
    }
    pthread_mutex_unlock(&pub_lock);
    return rc;
}

/* ------------------------------------------------------ MAGPOOL_PUBLISH */

/* MAGPOOL_PUBLISH=<ms> (10 .. 3600000) publishes at that interval; any
 * other value that is on (diag_env_on: "1", "yes") at PUB_DEFAULT_MS. Read
 * when the process creates its first pool. */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void publish_env_init(void)
{
    if (!diag_env_on("MAGPOOL_PUBLISH"))
        return;
    const char *v = getenv("MAGPOOL_PUBLISH");
    char *end;
    errno = 0;
    unsigned long ms = strtoul(v, &end, 10);
    bool number = errno == 0 && end != v && *end == '\0' && v[0] != '-';
    if (!number || ms < PUB_MIN_MS)
        ms = PUB_DEFAULT_MS;
    else if (ms > PUB_MAX_MS)
        ms = PUB_MAX_MS;
    /* The user asked for it: a failure is said once, on stderr (the
     * program runs on, unpublished). */
    if (magpool_publish_start((unsigned)ms) != 0)
        fprintf(stderr, "magpool: MAGPOOL_PUBLISH=%s: cannot publish to /dev/shm/magpool.%d: %s\n",
                v, (int)getpid(), strerror(errno));
}

void publish_pool_created(void)
{
    pthread_once(&env_once, publish_env_init);
    /* relaxed: a hint; the decision is retaken under pub_lock */
    if (atomic_load_relaxed(&child_pending_ms) == 0)
        return;
    mutex_lock(&pub_lock);
    unsigned ms = atomic_load_relaxed(&child_pending_ms);
    atomic_store_relaxed(&child_pending_ms, 0);
    if (ms != 0 && current == NULL)
        start_locked(ms); /* failing, the child runs unpublished */
    pthread_mutex_unlock(&pub_lock);
}

/* ------------------------------------------------------------------ fork */

void publish_fork_prepare(void) { mutex_lock(&pub_lock); }
void publish_fork_parent(void) { pthread_mutex_unlock(&pub_lock); }

void publish_fork_child(void)
{
    /* No publisher thread survived the fork, and the segments are the
     * parent's: drop this process's copies of their mappings (the names
     * stay, they are the parent's). If one was on, the child publishes
     * once it creates a pool of its own (publish_pool_created) or calls
     * magpool_publish_start; not here, because a child that only execs
     * would leave its segment behind (exec runs no atexit handler). The
     * condition variable may have been waited on by a vanished thread:
     * make it anew. */
    unsigned interval = current ? current->interval_ms : atomic_load_relaxed(&child_pending_ms);
    while (all != NULL) {
        struct publisher *pb = all;
        all = pb->next;
        publisher_free(pb);
    }
    current = NULL;
    if (cond_ready)
        cond_make();
    atomic_store_relaxed(&child_pending_ms, interval); /* under pub_lock */
    pthread_mutex_unlock(&pub_lock);
}
