/* SPDX-License-Identifier: MIT */
/*
 * The cross-process shared pool (include/magpool_shm.h): create and attach,
 * bad parameters and their errno, permissions, bounds checks, ownership
 * across processes, recovery of a killed process and of a killed mutex
 * holder, and readers of a corrupted or fuzzed segment that must not crash.
 * White-box (static archive): the robust-mutex test holds the segment lock
 * directly, and the fuzz tests write into the segment's internals.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <magpool_shm.h>

#include "shm_internal.h"

static char name[64];

static void fresh_name(void)
{
    static int n;
    snprintf(name, sizeof name, "/magpool-test-%d-%d", (int)getpid(), n++);
    shm_unlink(name);
}

static magpool_shm_t *make(size_t bs, size_t max)
{
    fresh_name();
    magpool_shm_config_t c;
    cr_assert_eq(magpool_shm_config_init(&c, sizeof c, bs), 0);
    c.max_blocks = max;
    c.initial_blocks = max < 64 ? max : 64;
    c.grow_blocks = 64;
    c.cache_size = 8;
    c.rings = 2;
    c.ring_size = 16;
    magpool_shm_t *p = magpool_shm_create(name, &c, sizeof c);
    cr_assert_not_null(p, "create: %s", strerror(errno));
    return p;
}

static void done(magpool_shm_t *p)
{
    cr_assert_eq(magpool_shm_detach(p), 0);
    cr_assert_eq(magpool_shm_unlink(name), 0);
}

/* In a forked child: attach to the test's pool by name, or exit 2. */
static magpool_shm_t *attach_in_child(void)
{
    magpool_shm_t *c = magpool_shm_attach(name, 64);
    if (!c)
        _exit(2);
    return c;
}

static magpool_shm_stats_t stats(magpool_shm_t *p)
{
    magpool_shm_stats_t st;
    cr_assert_eq(magpool_shm_stats(p, &st, sizeof st), 0);
    return st;
}

Test(shm, create_acquire_release_and_attach_by_name)
{
    magpool_shm_t *p = make(100, 256);
    cr_assert_eq(magpool_shm_block_size(p), 100);
    void *b = magpool_shm_acquire(p);
    cr_assert_not_null(b);
    cr_assert_eq((uintptr_t)b % 64, 0, "blocks are 64-byte aligned");
    memset(b, 0xab, 100);
    magpool_shm_t *q = magpool_shm_attach(name, 100);
    cr_assert_not_null(q, "attach: %s", strerror(errno));
    /* The same block at another address, found by offset. */
    uint64_t off = magpool_shm_offset(p, b);
    unsigned char *bq = magpool_shm_block(q, off);
    cr_assert_not_null(bq);
    cr_assert_neq((void *)bq, b, "two mappings, two addresses");
    cr_assert_eq(bq[99], 0xab);
    cr_assert_eq(stats(q).procs, 2);
    /* Released through the other handle (another process slot). */
    cr_assert_eq(magpool_shm_release(q, bq), 0);
    cr_assert_eq(magpool_shm_release(p, b), -1, "already released");
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_detach(q), 0);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.free + st.cached, st.committed);
    cr_assert_eq(st.held + st.orphans, 0);
    done(p);
}

/* initial_blocks = 0 is a valid config: nothing committed at create, the
 * first acquire commits one growth step. */
Test(shm, a_pool_created_empty_grows_on_first_acquire)
{
    fresh_name();
    magpool_shm_config_t c;
    cr_assert_eq(magpool_shm_config_init(&c, sizeof c, 64), 0);
    c.max_blocks = 1024;
    c.initial_blocks = 0;
    c.grow_blocks = 64;
    c.cache_size = 8;
    magpool_shm_t *p = magpool_shm_create(name, &c, sizeof c);
    cr_assert_not_null(p, "create: %s", strerror(errno));
    cr_assert_eq(stats(p).committed, 0);
    void *b = magpool_shm_acquire(p);
    cr_assert_not_null(b, "acquire from an empty pool: %s", strerror(errno));
    cr_assert_eq(stats(p).committed, 64, "one growth step");
    cr_assert_eq(magpool_shm_release(p, b), 0);
    done(p);
}

Test(shm, bad_parameters_are_refused_with_einval)
{
    magpool_shm_config_t c;
    cr_assert_eq(magpool_shm_config_init(NULL, sizeof c, 64), -1);
    cr_assert_eq(magpool_shm_config_init(&c, 3, 64), -1);
    cr_assert_eq(errno, EINVAL);
    const char *bad_names[] = {NULL, "", "/", "noslash", "/a/b", "/magpool.123"};
    magpool_shm_config_init(&c, sizeof c, 64);
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        errno = 0;
        cr_assert_null(magpool_shm_create(bad_names[i], &c, sizeof c));
        cr_assert_eq(errno, EINVAL, "name %zu", i);
        cr_assert_null(magpool_shm_attach(bad_names[i], 64));
        cr_assert_eq(errno, EINVAL);
        cr_assert_eq(magpool_shm_unlink(bad_names[i]), -1);
    }
    fresh_name();
    cr_assert_null(magpool_shm_create(name, NULL, sizeof c));
    cr_assert_null(magpool_shm_create(name, &c, 4));
    struct { size_t off; size_t v; } bad[] = {
        {offsetof(magpool_shm_config_t, block_size), 0},
        {offsetof(magpool_shm_config_t, block_size), (1u << 20) + 1},
        {offsetof(magpool_shm_config_t, max_blocks), 0},
        {offsetof(magpool_shm_config_t, max_blocks), (size_t)MAGPOOL_SHM_MAX_BLOCKS + 1},
        {offsetof(magpool_shm_config_t, initial_blocks), 70000},
        {offsetof(magpool_shm_config_t, grow_blocks), 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        magpool_shm_config_t d = c;
        memcpy((char *)&d + bad[i].off, &bad[i].v, sizeof(size_t));
        errno = 0;
        cr_assert_null(magpool_shm_create(name, &d, sizeof d), "case %zu", i);
        cr_assert_eq(errno, EINVAL, "case %zu", i);
    }
    magpool_shm_config_t d = c;
    d.ring_size = 1000; /* not a power of two */
    cr_assert_null(magpool_shm_create(name, &d, sizeof d));
    d = c;
    d.cache_size = 1;
    cr_assert_null(magpool_shm_create(name, &d, sizeof d));
    d = c;
    d.mode = 01777;
    cr_assert_null(magpool_shm_create(name, &d, sizeof d));
    cr_assert_eq(errno, EINVAL);
    /* Nothing was left behind by the refusals. */
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, ENOENT);
    /* NULL handles. */
    cr_assert_null(magpool_shm_acquire(NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_release(NULL, &c), -1);
    cr_assert_eq(magpool_shm_release(NULL, NULL), 0, "NULL block is a no-op");
    cr_assert_eq(magpool_shm_offset(NULL, &c), MAGPOOL_SHM_BAD_OFFSET);
    cr_assert_null(magpool_shm_block(NULL, 0));
    cr_assert_eq(magpool_shm_recover(NULL), -1);
    cr_assert_eq(magpool_shm_reclaim_orphans(NULL), -1);
    cr_assert_eq(magpool_shm_stats(NULL, NULL, 0), -1);
    cr_assert_eq(magpool_shm_ring_enqueue(NULL, 0, &c), -1);
    cr_assert_null(magpool_shm_ring_dequeue(NULL, 0));
    cr_assert_eq(magpool_shm_block_size(NULL), 0);
    cr_assert_eq(magpool_shm_flush(NULL), -1);
    cr_assert_eq(magpool_shm_detach(NULL), 0);
}

Test(shm, existing_name_is_not_reused)
{
    magpool_shm_t *p = make(64, 64);
    magpool_shm_config_t c;
    magpool_shm_config_init(&c, sizeof c, 64);
    cr_assert_null(magpool_shm_create(name, &c, sizeof c));
    cr_assert_eq(errno, EEXIST);
    cr_assert_not_null(magpool_shm_acquire(p), "the first pool is untouched");
    done(p);
}

Test(shm, segment_is_owner_only_by_default_and_mode_is_settable)
{
    mode_t old = umask(0077); /* would strip 0640's group bit without fchmod */
    magpool_shm_t *p = make(64, 64);
    char path[96];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    done(p);
    fresh_name();
    magpool_shm_config_t c;
    magpool_shm_config_init(&c, sizeof c, 64);
    c.max_blocks = 64;
    c.initial_blocks = 64;
    c.mode = 0640;
    p = magpool_shm_create(name, &c, sizeof c);
    cr_assert_not_null(p);
    snprintf(path, sizeof path, "/dev/shm%s", name);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640);
    umask(old);
    done(p);
}

Test(shm, attach_refuses_wrong_block_size_version_and_foreign_segments)
{
    magpool_shm_t *p = make(64, 64);
    cr_assert_null(magpool_shm_attach(name, 128));
    cr_assert_eq(errno, ERANGE);
    cr_assert_null(magpool_shm_attach("/magpool-test-does-not-exist", 64));
    cr_assert_eq(errno, ENOENT);
    /* Another layout version. */
    struct shm_header *h = (struct shm_header *)p->base;
    h->geo.layout = MAGPOOL_SHM_LAYOUT + 1;
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, EPROTO);
    h->geo.layout = MAGPOOL_SHM_LAYOUT;
    /* A flipped geometry byte: the checksum catches it. */
    h->geo.max_blocks ^= 1 << 20;
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, EBADMSG);
    h->geo.max_blocks ^= 1 << 20;
    cr_assert_not_null(magpool_shm_acquire(p), "this process uses its private geometry");
    done(p);

    /* Not a magpool segment at all: random bytes, and an empty object. */
    fresh_name();
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, EBADMSG, "empty object");
    cr_assert_eq(ftruncate(fd, 65536), 0);
    unsigned char junk[4096];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand();
    cr_assert_eq(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, EBADMSG);
    close(fd);
    shm_unlink(name);
}

Test(shm, truncated_segment_is_refused)
{
    magpool_shm_t *p = make(64, 1024);
    int fd = shm_open(name, O_RDWR, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)p->geo.seg_size - 4096), 0);
    cr_assert_null(magpool_shm_attach(name, 64));
    cr_assert_eq(errno, EBADMSG);
    cr_assert_eq(ftruncate(fd, (off_t)p->geo.seg_size), 0);
    close(fd);
    done(p);
}

Test(shm, pointers_and_offsets_that_are_not_blocks_are_refused)
{
    magpool_shm_t *p = make(64, 64);
    void *b = magpool_shm_acquire(p);
    int local;
    void *bad[] = {&local, (char *)b + 1, (char *)b + 64 * 64 * 2, (void *)p->base, (char *)b - 64 * 1000};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        cr_assert_eq(magpool_shm_release(p, bad[i]), -1, "case %zu", i);
        cr_assert_eq(errno, EINVAL);
        cr_assert_eq(magpool_shm_offset(p, bad[i]), MAGPOOL_SHM_BAD_OFFSET, "case %zu", i);
        cr_assert_eq(magpool_shm_ring_enqueue(p, 0, bad[i]), -1);
    }
    uint64_t off = magpool_shm_offset(p, b);
    uint64_t bad_off[] = {0, off + 1, off - 64 * 1000, p->geo.seg_size, UINT64_MAX, off + 64 * 64};
    for (size_t i = 0; i < sizeof bad_off / sizeof *bad_off; i++) {
        cr_assert_null(magpool_shm_block(p, bad_off[i]), "offset case %zu", i);
        cr_assert_eq(errno, EINVAL);
    }
    cr_assert_eq(magpool_shm_ring_enqueue(p, 2, b), -1, "no ring 2");
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(magpool_shm_ring_dequeue(p, 99));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_release(p, b), 0);
    cr_assert_eq(magpool_shm_release(p, b), -1, "double release");
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_ring_enqueue(p, 0, b), -1, "a free block cannot be enqueued");
    magpool_shm_stats_t st;
    cr_assert_eq(magpool_shm_stats(p, &st, 8), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_stats(p, NULL, sizeof st), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_ring_enqueue(p, 0, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(magpool_shm_offset(p, NULL), MAGPOOL_SHM_BAD_OFFSET);
    done(p);
}

Test(shm, exhaustion_grows_to_max_then_enomem)
{
    magpool_shm_t *p = make(64, 200);
    void *b[200];
    for (int i = 0; i < 200; i++)
        cr_assert_not_null(b[i] = magpool_shm_acquire(p), "block %d: %s", i, strerror(errno));
    cr_assert_null(magpool_shm_acquire(p));
    cr_assert_eq(errno, ENOMEM);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.committed, 200);
    cr_assert_eq(st.held_here, 200);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(magpool_shm_release(p, b[i]), 0);
    cr_assert_not_null(magpool_shm_acquire(p));
    done(p);
}

Test(shm, flush_gives_a_threads_cache_to_other_processes)
{
    magpool_shm_t *p = make(64, 64);
    magpool_shm_t *q = magpool_shm_attach(name, 64);
    void *b[64];
    for (int i = 0; i < 64; i++)
        b[i] = magpool_shm_acquire(p);
    for (int i = 0; i < 64; i++)
        magpool_shm_release(p, b[i]);
    cr_assert_gt(stats(p).cached, 0);
    /* p's cache holds some of the 64: q cannot have them all yet. */
    int n = 0;
    while (n < 64 && (b[n] = magpool_shm_acquire(q)) != NULL)
        n++;
    cr_assert_lt(n, 64);
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(magpool_shm_flush(p), 0);
    cr_assert_eq(stats(p).cached, 0 + (uint64_t)0 + stats(q).cached);
    while (n < 64 && (b[n] = magpool_shm_acquire(q)) != NULL)
        n++;
    cr_assert_eq(n, 64);
    magpool_shm_detach(q);
    done(p);
}

Test(shm, ring_is_fifo_and_hands_ownership_over)
{
    magpool_shm_t *p = make(64, 64);
    magpool_shm_t *q = magpool_shm_attach(name, 64);
    cr_assert_not_null(q);
    void *b[20];
    for (int i = 0; i < 16; i++) {
        b[i] = magpool_shm_acquire(p);
        *(int *)b[i] = i;
        cr_assert_eq(magpool_shm_ring_enqueue(p, 1, b[i]), 0);
    }
    b[16] = magpool_shm_acquire(p);
    cr_assert_eq(magpool_shm_ring_enqueue(p, 1, b[16]), -1, "ring of 16 is full");
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(stats(p).in_rings, 16);
    for (int i = 0; i < 16; i++) {
        int *d = magpool_shm_ring_dequeue(q, 1);
        cr_assert_not_null(d);
        cr_assert_eq(*d, i, "FIFO");
    }
    cr_assert_null(magpool_shm_ring_dequeue(q, 1));
    cr_assert_eq(errno, EAGAIN);
    magpool_shm_stats_t st = stats(q);
    cr_assert_eq(st.held_here, 16, "the consumer owns them now");
    cr_assert_eq(st.held, 17);
    done(q == NULL ? p : (magpool_shm_detach(q), p));
}

/* A child that takes blocks (some held, some parked in its cache), puts
 * some in a ring, and is killed with SIGKILL. */
Test(shm, killed_process_is_recovered_and_its_orphans_returned)
{
    magpool_shm_t *p = make(64, 512);
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = attach_in_child();
        for (int i = 0; i < 10; i++) {
            void *held = magpool_shm_acquire(c); /* orphans-to-be */
            (void)held;
        }
        for (int i = 0; i < 3; i++)
            magpool_shm_ring_enqueue(c, 0, magpool_shm_acquire(c));
        void *r = magpool_shm_acquire(c);
        magpool_shm_release(c, r); /* the cache has blocks parked */
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char x;
    cr_assert_eq(read(ready[0], &x, 1), 1);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.procs, 2);
    cr_assert_eq(st.held, 13);
    cr_assert_gt(st.cached, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_eq(magpool_shm_recover(p), 1);
    cr_assert_eq(magpool_shm_recover(p), 0, "once");
    st = stats(p);
    cr_assert_eq(st.procs, 1);
    cr_assert_eq(st.procs_recovered, 1);
    cr_assert_eq(st.orphans, 13, "10 held + 3 in the ring");
    cr_assert_eq(st.free + st.cached + st.held + st.orphans, st.committed);
    /* The ones in the ring stay for a live consumer. */
    cr_assert_eq(magpool_shm_reclaim_orphans(p), 10);
    for (int i = 0; i < 3; i++) {
        void *d = magpool_shm_ring_dequeue(p, 0);
        cr_assert_not_null(d);
        cr_assert_eq(magpool_shm_release(p, d), 0);
    }
    st = stats(p);
    cr_assert_eq(st.orphans + st.held, 0);
    cr_assert_eq(st.free + st.cached, st.committed);
    done(p);
}

Test(shm, holder_of_the_robust_mutex_killed_leaves_the_pool_usable)
{
    magpool_shm_t *p = make(64, 256);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = attach_in_child();
        shm_lock(c);
        /* Half a critical section: the stack says one thing, stamps another. */
        atomic_store(&c->hdr->top, 3);
        _exit(0); /* dies holding the lock */
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    void *b[256];
    for (int i = 0; i < 256; i++)
        cr_assert_not_null(b[i] = magpool_shm_acquire(p), "block %d: %s", i, strerror(errno));
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.repairs, 1);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(magpool_shm_release(p, b[i]), 0);
    done(p);
}

Test(shm, handle_inherited_through_fork_answers_echild)
{
    magpool_shm_t *p = make(64, 64);
    void *b = magpool_shm_acquire(p);
    magpool_shm_release(p, b); /* the fast path is primed in this thread */
    pid_t pid = fork();
    if (pid == 0) {
        int ok = magpool_shm_acquire(p) == NULL && errno == ECHILD &&
                 magpool_shm_release(p, b) == -1 && errno == ECHILD &&
                 magpool_shm_flush(p) == -1 && errno == ECHILD &&
                 magpool_shm_recover(p) == -1 && errno == ECHILD &&
                 magpool_shm_reclaim_orphans(p) == -1 && errno == ECHILD &&
                 magpool_shm_ring_enqueue(p, 0, b) == -1 && errno == ECHILD &&
                 magpool_shm_ring_dequeue(p, 0) == NULL && errno == ECHILD &&
                 magpool_shm_ring_enqueue_burst(p, 0, &b, 1) == 0 && errno == ECHILD &&
                 magpool_shm_ring_dequeue_burst(p, 0, &b, 1) == 0 && errno == ECHILD &&
                 magpool_shm_detach(p) == -1 && errno == ECHILD;
        magpool_shm_t *c = magpool_shm_attach(name, 64);
        ok = ok && c && magpool_shm_acquire(c) != NULL && magpool_shm_detach(c) == 0;
        _exit(ok ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    done(p);
}

/* Random bytes over the free stack, its top, the rings, the process slots
 * and the committed count: readers must not crash (ASan watches every
 * access), and every block they return must be a block of the pool. */
Test(shm, fuzzed_depot_rings_and_slots_do_not_crash_readers)
{
    magpool_shm_t *p = make(64, 1024);
    magpool_shm_t *q = magpool_shm_attach(name, 64);
    cr_assert_not_null(q);
    srand(12345);
    unsigned char *areas[] = {(unsigned char *)p->store, p->base + p->geo.off_rings,
                              (unsigned char *)p->procs};
    size_t sizes[] = {p->geo.max_blocks * 4, p->geo.rings * p->geo.ring_bytes,
                      p->geo.max_procs * sizeof(struct shm_proc)};
    for (int round = 0; round < 200; round++) {
        int a = rand() % 3;
        for (int k = 0; k < 64; k++)
            areas[a][(size_t)rand() % sizes[a]] = (unsigned char)rand();
        if (round % 7 == 0)
            atomic_store(&p->hdr->top, (uint64_t)rand() << 20 | (uint64_t)rand());
        if (round % 11 == 0)
            atomic_store(&p->hdr->committed, (uint64_t)rand() * 1000);
        for (int k = 0; k < 20; k++) {
            magpool_shm_t *h = k & 1 ? p : q;
            void *b = magpool_shm_acquire(h);
            if (b)
                cr_assert_neq(magpool_shm_offset(h, b), MAGPOOL_SHM_BAD_OFFSET);
            void *d = magpool_shm_ring_dequeue(h, (unsigned)k % 2);
            if (d) {
                cr_assert_neq(magpool_shm_offset(h, d), MAGPOOL_SHM_BAD_OFFSET);
                magpool_shm_release(h, d);
            }
            if (b && magpool_shm_ring_enqueue(h, (unsigned)k % 2, b) != 0)
                magpool_shm_release(h, b);
        }
        magpool_shm_stats_t st;
        magpool_shm_stats(q, &st, sizeof st);
        magpool_shm_recover(q);
        magpool_shm_reclaim_orphans(p);
    }
    magpool_shm_detach(q);
    done(p);
}

/* 150-byte blocks: a stride of 192, not a power of two (the division path
 * of the pointer checks). */
Test(shm, blocks_of_a_stride_that_is_not_a_power_of_two)
{
    magpool_shm_t *p = make(150, 128);
    void *b[128];
    for (int i = 0; i < 128; i++) {
        b[i] = magpool_shm_acquire(p);
        cr_assert_not_null(b[i]);
        memset(b[i], i, 150);
        uint64_t off = magpool_shm_offset(p, b[i]);
        cr_assert_eq(magpool_shm_block(p, off), b[i]);
        cr_assert_null(magpool_shm_block(p, off + 64));
        cr_assert_eq(magpool_shm_release(p, (char *)b[i] + 64), -1);
    }
    for (int i = 0; i < 128; i++) {
        cr_assert_eq(((unsigned char *)b[i])[149], (unsigned char)i, "blocks do not overlap");
        cr_assert_eq(magpool_shm_release(p, b[i]), 0);
    }
    done(p);
}

/* A slot whose pid now belongs to another process (same pid, other start
 * time: the pid was reused) is dead; so is a zombie that nobody reaped. */
Test(shm, reused_pid_and_zombie_count_as_dead)
{
    magpool_shm_t *p = make(64, 256);
    magpool_shm_t *q = magpool_shm_attach(name, 64);
    cr_assert_not_null(q);
    void *b = magpool_shm_acquire(q);
    cr_assert_not_null(b);
    cr_assert_eq(magpool_shm_recover(p), 0, "q's process (this one) is alive");
    atomic_fetch_add(&p->procs[q->slot].start_time, 1); /* as if the pid were reused */
    cr_assert_eq(magpool_shm_recover(p), 1);
    cr_assert_eq(stats(p).orphans, 1, "q's held block");
    cr_assert_eq(magpool_shm_reclaim_orphans(p), 1);
    /* Its slot is free now (not reused before this): detach frees the rest. */
    cr_assert_eq(magpool_shm_detach(q), 0);

    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = magpool_shm_attach(name, 64);
        _exit(c && magpool_shm_acquire(c) ? 0 : 1); /* exits attached */
    }
    siginfo_t si;
    cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0); /* a zombie now */
    cr_assert_eq(si.si_status, 0);
    cr_assert_eq(magpool_shm_recover(p), 1, "a zombie is dead");
    waitpid(pid, NULL, 0);
    cr_assert_eq(magpool_shm_reclaim_orphans(p), 1);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.held + st.orphans, 0);
    done(p);
}

/* At max_blocks, an acquire recovers dead processes by itself before it
 * fails: the blocks a killed process had parked come back without a call. */
Test(shm, acquire_at_the_cap_recovers_a_dead_process_by_itself)
{
    magpool_shm_t *p = make(64, 64);
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = magpool_shm_attach(name, 64);
        void *b[64];
        int n = 0;
        while (c && n < 64 && (b[n] = magpool_shm_acquire(c)) != NULL)
            n++;
        for (int i = 0; i < 6 && n == 64; i++)
            magpool_shm_release(c, b[i]); /* parked in its cache (size 8) */
        (void)!write(ready[1], n == 64 ? "y" : "n", 1);
        pause();
        _exit(0);
    }
    char x;
    cr_assert_eq(read(ready[0], &x, 1), 1);
    cr_assert_eq(x, 'y');
    cr_assert_null(magpool_shm_acquire(p), "all held or parked by the child");
    cr_assert_eq(errno, ENOMEM);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    usleep(20000); /* past the 10 ms between automatic recoveries */
    for (int i = 0; i < 6; i++)
        cr_assert_not_null(magpool_shm_acquire(p), "block %d of the dead child's cache", i);
    cr_assert_null(magpool_shm_acquire(p));
    cr_assert_eq(stats(p).orphans, 58);
    cr_assert_eq(magpool_shm_reclaim_orphans(p), 58);
    done(p);
}

/* The consumer-kill window (shm_ring.c): a forked consumer dequeues from
 * ring 0 and _exits right after its commit CAS (test hook), before it
 * adopts the block. Returns the number of blocks the producer (this
 * process) still holds after recovery, which must be 0. With `wrap`, the
 * ring goes round a whole lap before recovery runs, so that the evidence of
 * the commit has moved from the cell into the dead consumer's intent. */
static uint64_t consumer_killed_in_the_window(magpool_shm_t *p, bool with_intent, bool wrap)
{
    void *b = magpool_shm_acquire(p);
    cr_assert_not_null(b);
    cr_assert_eq(magpool_shm_ring_enqueue(p, 0, b), 0);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = attach_in_child();
        magpool_test_shm_no_intent = !with_intent;
        atomic_store(&magpool_test_shm_exit_after_commits, 1);
        magpool_shm_ring_dequeue(c, 0);
        _exit(3); /* the hook did not fire */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == MAGPOOL_TEST_SHM_WINDOW_EXIT,
              "the consumer died in the window (status %#x)", status);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.held_here, 1, "stamped HELD by the producer, in no ring");
    cr_assert_eq(st.in_rings, 0);
    for (int i = 0; wrap && i < 17; i++) { /* ring_size 16: a whole lap and one */
        void *x = magpool_shm_acquire(p);
        cr_assert_eq(magpool_shm_ring_enqueue(p, 0, x), 0);
        cr_assert_eq(magpool_shm_ring_dequeue(p, 0), x);
        cr_assert_eq(magpool_shm_release(p, x), 0);
    }
    cr_assert_eq(magpool_shm_recover(p), 1);
    st = stats(p);
    cr_assert_eq(st.free + st.cached + st.held + st.orphans, st.committed);
    cr_assert_eq(st.orphans, 0);
    cr_assert_eq(st.ring_dropped, 0);
    return st.held_here;
}

/* Every block of the pool comes out exactly once. */
static void all_blocks_once(magpool_shm_t *p, size_t max)
{
    void **b = calloc(max + 1, sizeof *b);
    size_t n = 0;
    while (n <= max && (b[n] = magpool_shm_acquire(p)) != NULL)
        n++;
    cr_assert_eq(n, max, "%zu of %zu blocks", n, max);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < i; k++)
            cr_assert_neq(b[i], b[k], "block handed out twice");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(magpool_shm_release(p, b[i]), 0);
    free(b);
}

Test(shm, consumer_killed_between_commit_and_adoption_loses_nothing)
{
    magpool_shm_t *p = make(64, 64);
    cr_assert_eq(consumer_killed_in_the_window(p, true, false), 0,
                 "recovery gave the block back (evidence in the cell)");
    cr_assert_eq(consumer_killed_in_the_window(p, true, true), 0,
                 "recovery gave the block back (evidence moved into the intent)");
    all_blocks_once(p, 64);
    done(p);
}

/* The twin: the same kill with the intent switched off (test switch) must
 * leave the block stamped HELD by the live producer after recovery -- the
 * test above would fail without the mechanism. */
Test(shm, without_the_intent_the_window_keeps_the_block_held)
{
    magpool_shm_t *p = make(64, 64);
    cr_assert_eq(consumer_killed_in_the_window(p, false, false), 1);
    done(p);
}

/* fork() while another thread holds the handle's private tc_lock: the
 * child's forking thread has a thread cache, and when it exits its TSD
 * destructor takes tc_lock -- which, without the library's fork handlers,
 * the child inherited locked by a thread that does not exist there. The
 * child runs under alarm(3): a hang is a SIGALRM death, not a stuck test. */
static magpool_shm_t *fork_pool; /* static: reachable for LSan in the child */
static int fork_ready[2];

static void *hold_tc_lock(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fork_pool->tc_lock);
    (void)!write(fork_ready[1], "x", 1);
    usleep(300 * 1000); /* the fork happens now (or, with the handlers, waits) */
    pthread_mutex_unlock(&fork_pool->tc_lock);
    return NULL;
}

/* Reached only once the exiting thread's destructors have run; _exit skips
 * LeakSanitizer's exit check of a child that ends in pthread_exit with the
 * parent's memory (Criterion's included) still mapped. */
static void child_exit_now(void)
{
    _exit(0);
}

static void *fork_then_exit_in_child(void *arg)
{
    (void)arg;
    void *b = magpool_shm_acquire(fork_pool); /* this thread has a cache */
    magpool_shm_release(fork_pool, b);
    pthread_t holder; /* only now: creating the cache takes tc_lock too */
    pthread_create(&holder, NULL, hold_tc_lock, NULL);
    char c;
    (void)!read(fork_ready[0], &c, 1);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(3);
        atexit(child_exit_now);
        pthread_exit(NULL); /* the child's only thread: its destructors run */
    }
    int status = -1;
    waitpid(pid, &status, 0);
    pthread_join(holder, NULL);
    return (void *)(intptr_t)status;
}

Test(shm, fork_while_another_thread_holds_tc_lock_child_thread_exits)
{
    fork_pool = make(64, 64);
    cr_assert_eq(pipe(fork_ready), 0);
    pthread_t forker;
    pthread_create(&forker, NULL, fork_then_exit_in_child, NULL);
    void *ret;
    pthread_join(forker, &ret);
    int status = (int)(intptr_t)ret;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child's exiting thread did not exit cleanly (status %#x: %s; "
              "SIGALRM: it hung on tc_lock)", status,
              WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit");
    close(fork_ready[0]);
    close(fork_ready[1]);
    done(fork_pool);
}

Test(shm, burst_bad_input_is_refused_and_moves_nothing)
{
    magpool_shm_t *p = make(64, 64);
    void *b[20];
    for (int i = 0; i < 20; i++)
        cr_assert_not_null(b[i] = magpool_shm_acquire(p));
    struct { magpool_shm_t *pool; unsigned ring; void **blocks; unsigned n; } bad[] = {
        {NULL, 0, b, 1},                               /* no pool */
        {p, 2, b, 1},                                  /* ring out of range (2 rings) */
        {p, UINT32_MAX, b, 1},
        {p, 0, NULL, 1},                               /* no array */
        {p, 0, b, MAGPOOL_SHM_MAX_RING_SIZE + 1},      /* absurd n */
        {p, 0, b, UINT32_MAX},                         /* a negative length */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_eq(magpool_shm_ring_enqueue_burst(bad[i].pool, bad[i].ring, bad[i].blocks,
                                                    bad[i].n), 0, "enqueue case %zu", i);
        cr_assert_eq(errno, EINVAL, "enqueue case %zu", i);
        errno = 0;
        cr_assert_eq(magpool_shm_ring_dequeue_burst(bad[i].pool, bad[i].ring, bad[i].blocks,
                                                    bad[i].n), 0, "dequeue case %zu", i);
        cr_assert_eq(errno, EINVAL, "dequeue case %zu", i);
    }
    errno = 12345; /* n == 0: a no-op that leaves errno alone */
    cr_assert_eq(magpool_shm_ring_enqueue_burst(p, 0, b, 0), 0);
    cr_assert_eq(magpool_shm_ring_dequeue_burst(p, 0, b, 0), 0);
    cr_assert_eq(errno, 12345);
    cr_assert_eq(stats(p).in_rings, 0, "nothing moved");
    cr_assert_eq(stats(p).held_here, 20);
    /* A bad block in the middle: the ones before go, it and the rest stay. */
    void *mixed[3] = {b[0], (char *)b[1] + 8, b[2]};
    cr_assert_eq(magpool_shm_ring_enqueue_burst(p, 0, mixed, 3), 1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(stats(p).in_rings, 1);
    /* Full: 16 entries, 19 offered (b[1..19]). */
    cr_assert_eq(magpool_shm_ring_enqueue_burst(p, 0, b + 1, 19), 15);
    cr_assert_eq(errno, EAGAIN);
    void *out[20];
    cr_assert_eq(magpool_shm_ring_dequeue_burst(p, 0, out, 20), 16);
    cr_assert_eq(errno, EAGAIN, "ran empty");
    for (int i = 0; i < 16; i++)
        cr_assert_eq(out[i], b[i], "FIFO");
    cr_assert_eq(magpool_shm_ring_dequeue_burst(p, 0, out, 4), 0);
    cr_assert_eq(errno, EAGAIN);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(magpool_shm_release(p, b[i]), 0, "block %d still held by us", i);
    all_blocks_once(p, 64);
    done(p);
}

/* A producer (this process) bursts 7 at a time, a forked consumer takes 5
 * at a time: every block arrives once, in order, and is released there. */
Test(shm, burst_is_fifo_and_conserves_blocks_across_processes)
{
    enum { N = 200 };
    magpool_shm_t *p = make(64, 256);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = attach_in_child();
        alarm(20);
        int next = 0;
        while (next < N) {
            void *got[5];
            unsigned k = magpool_shm_ring_dequeue_burst(c, 1, got, 5);
            if (k == 0 && errno != EAGAIN)
                _exit(3);
            for (unsigned i = 0; i < k; i++) {
                if (*(int *)got[i] != next++)
                    _exit(4); /* out of order, lost or duplicated */
                if (magpool_shm_release(c, got[i]) != 0)
                    _exit(5);
            }
            if (k == 0)
                sched_yield();
        }
        _exit(magpool_shm_detach(c) == 0 ? 0 : 6);
    }
    void *b[N];
    for (int i = 0; i < N; i++) {
        cr_assert_not_null(b[i] = magpool_shm_acquire(p));
        *(int *)b[i] = i;
    }
    for (unsigned sent = 0; sent < N;) {
        unsigned want = N - sent < 7 ? N - sent : 7;
        unsigned k = magpool_shm_ring_enqueue_burst(p, 1, b + sent, want);
        if (k < want)
            cr_assert_eq(errno, EAGAIN);
        sent += k;
        if (k == 0)
            sched_yield();
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "consumer status %#x", status);
    magpool_shm_stats_t st = stats(p);
    cr_assert_eq(st.held + st.orphans + st.in_rings + st.ring_dropped, 0);
    cr_assert_eq(st.free + st.cached, st.committed);
    all_blocks_once(p, 256);
    done(p);
}

/* More dequeuing threads than a process has intents of their own (63): the
 * rest share the last one under the handle's intent_lock. 70 threads, all
 * alive at once, each hands a block to itself through ring 0. */
enum { MANY = 70 };
static magpool_shm_t *many_pool;
static pthread_barrier_t many_barrier;

static void *many_dequeuers(void *arg)
{
    (void)arg;
    void *b = magpool_shm_acquire(many_pool); /* creates this thread's cache and intent */
    pthread_barrier_wait(&many_barrier);      /* every thread holds its intent now */
    struct shm_tcache *tc = pthread_getspecific(many_pool->key);
    uintptr_t shared = tc && tc->intent == SHM_INTENTS - 1;
    int in = -1;
    while (b && (in = magpool_shm_ring_enqueue(many_pool, 0, b)) != 0 && errno == EAGAIN)
        sched_yield();
    bool ok = b && in == 0;
    void *d = NULL;
    while (ok && !(d = magpool_shm_ring_dequeue(many_pool, 0)) && errno == EAGAIN)
        sched_yield(); /* another thread may have taken ours: take anyone's */
    ok = ok && d && magpool_shm_release(many_pool, d) == 0;
    pthread_barrier_wait(&many_barrier); /* no thread exits (gives its intent back) early */
    return (void *)(ok ? 1 + shared : 0);
}

Test(shm, more_dequeuing_threads_than_intents_share_the_last_one)
{
    many_pool = make(64, 4096); /* rings of 16: some threads wait for room */
    pthread_barrier_init(&many_barrier, NULL, MANY);
    pthread_t th[MANY];
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, many_dequeuers, NULL), 0);
    int ok = 0, shared = 0;
    for (int i = 0; i < MANY; i++) {
        void *r;
        pthread_join(th[i], &r);
        ok += r != NULL;
        shared += (uintptr_t)r == 2;
    }
    pthread_barrier_destroy(&many_barrier);
    cr_assert_eq(ok, MANY, "every thread handed its block over and released one");
    cr_assert_eq(shared, MANY - (SHM_INTENTS - 1), "threads beyond 63 share the last intent");
    magpool_shm_stats_t st = stats(many_pool);
    cr_assert_eq(st.held + st.orphans + st.in_rings + st.ring_dropped, 0);
    done(many_pool);
}

/* A stale intent must not be taken. A consumer dies after writing its
 * intent {b, HELD(producer)} but before its commit (hook); the producer
 * (this process) then dequeues b itself and holds it, so b's stamp is
 * HELD(producer) again -- the value the dead intent recorded -- and b is in
 * no ring. Recovery must leave b alone: only evidence of the dead thread's
 * commit (docs/shm.md) lets it take a block, and here there is none. */
Test(shm, a_consumer_killed_before_its_commit_leaves_nothing_to_take)
{
    magpool_shm_t *p = make(64, 64);
    void *b = magpool_shm_acquire(p);
    cr_assert_eq(magpool_shm_ring_enqueue(p, 0, b), 0);
    pid_t pid = fork();
    if (pid == 0) {
        magpool_shm_t *c = attach_in_child();
        magpool_test_shm_exit_before_commit = true;
        magpool_shm_ring_dequeue(c, 0);
        _exit(3);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == MAGPOOL_TEST_SHM_WINDOW_EXIT);
    cr_assert_eq(magpool_shm_ring_dequeue(p, 0), b, "the entry was still in the ring");
    cr_assert_eq(magpool_shm_recover(p), 1);
    cr_assert_eq(stats(p).held_here, 1, "b is still ours");
    void *all[64];
    int n = 0;
    while (n < 64 && (all[n] = magpool_shm_acquire(p)) != NULL)
        cr_assert_neq(all[n++], b, "recovery freed a block we hold");
    cr_assert_eq(n, 63);
    for (int i = 0; i < n; i++)
        magpool_shm_release(p, all[i]);
    cr_assert_eq(magpool_shm_release(p, b), 0);
    done(p);
}
