/* SPDX-License-Identifier: MIT */
/*
 * The live view's publisher (lib/publish.c) and its segment (lib/pubseg.c):
 * what a reader of /dev/shm/magpool.<pid> finds, the API's answers to bad
 * input, stop / exit / fork, stale and foreign segments, MAGPOOL_PUBLISH,
 * and the seqlock under concurrent writes (stress/seqlock_check.h; the
 * TSan build runs the same check in stress_publish).
 *
 * White-box (static archive, lib/ includes): the reader here is pub_read,
 * the one the tools' Python reader mirrors. Criterion runs each test in a
 * process of its own, so every test has its own pid and segment name.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "pubseg.h"
#include "../stress/seqlock_check.h"

static void seg_path(pid_t pid, char *buf, size_t cap)
{
    snprintf(buf, cap, "/dev/shm/magpool.%d", (int)pid);
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL);
}

/* One read of pid's segment: the number of records (-1: none readable). */
static long read_segment(pid_t pid, uint64_t *hdr, uint64_t *recs, size_t cap)
{
    char path[64];
    seg_path(pid, path, sizeof path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    struct stat st;
    long n = -1;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            n = pub_read(m, (size_t)st.st_size, hdr, recs, cap, 1000);
            munmap(m, (size_t)st.st_size);
        }
    }
    close(fd);
    return n;
}

/* Wait (up to 5 s) for a snapshot of pid taken after `after` snapshots. */
static long wait_snapshot(pid_t pid, uint64_t after, uint64_t *hdr, uint64_t *recs, size_t cap)
{
    for (int i = 0; i < 500; i++) {
        long n = read_segment(pid, hdr, recs, cap);
        if (n >= 0 && hdr[H_SNAPSHOTS] > after)
            return n;
        sleep_ms(10);
    }
    return -1;
}

static const uint64_t *find_pool(const uint64_t *recs, long n, const char *name)
{
    for (long i = 0; i < n; i++)
        if (strcmp((const char *)(recs + i * PUB_REC_WORDS + R_NAME), name) == 0)
            return recs + i * PUB_REC_WORDS;
    return NULL;
}

static uint64_t recs[256 * PUB_REC_WORDS];

Test(publish, a_reader_finds_every_pool_and_its_counters)
{
    magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 96 });
    magpool_t *q = magpool_create(&(magpool_config_t){ .block_size = 64,
                                                       .backend = MAGPOOL_MUTEX });
    cr_assert(p && q);
    magpool_set_name(p, "orders");
    magpool_set_name(q, "fills");
    void *b[10];
    for (int i = 0; i < 10; i++)
        b[i] = magpool_acquire(p);
    magpool_release(p, b[9]);
    cr_assert_eq(magpool_publish_start(10), 0, "start: %s", strerror(errno));

    uint64_t hdr[PUB_HDR_WORDS];
    long n = wait_snapshot(getpid(), 0, hdr, recs, 256);
    cr_assert_eq(n, 2, "records: %ld", n);
    cr_expect_eq(hdr[H_PID], (uint64_t)getpid());
    cr_expect_neq(hdr[H_START_TIME], 0, "start time read from /proc/self/stat");
    cr_expect_eq(hdr[H_INTERVAL_MS], 10);
    const uint64_t *r = find_pool(recs, n, "orders");
    cr_assert(r != NULL, "pool \"orders\" not published");
    magpool_stats_t st;
    magpool_get_stats(p, &st);
    cr_expect_eq(r[R_BLOCK_SIZE], 96);
    cr_expect_eq(r[R_BACKEND], 0);
    cr_expect_eq(r[R_STATS + 0], st.acquires, "acquires %llu", (unsigned long long)r[R_STATS]);
    cr_expect_eq(r[R_STATS + 1], 1, "releases");
    cr_expect_eq(r[R_STATS + 8], 9, "blocks_outstanding");
    cr_expect_eq(r[R_STATS + 9], st.bytes_reserved, "bytes_reserved");
    const uint64_t *f = find_pool(recs, n, "fills");
    cr_assert(f != NULL, "pool \"fills\" not published");
    cr_expect_eq(f[R_BACKEND], 1, "the mutex backend");

    /* Later changes show up in a later snapshot; a destroyed pool goes. */
    magpool_release(p, b[8]);
    magpool_destroy(q);
    uint64_t seen = hdr[H_SNAPSHOTS];
    n = wait_snapshot(getpid(), seen + 1, hdr, recs, 256);
    cr_assert_eq(n, 1, "records after destroy: %ld", n);
    cr_expect_eq(find_pool(recs, n, "orders")[R_STATS + 8], 8);
    for (int i = 0; i < 8; i++)
        magpool_release(p, b[i]);
    magpool_publish_stop();
    magpool_destroy(p);
}

Test(publish, the_segment_is_private_and_gone_after_stop)
{
    char path[64], name[64];
    seg_path(getpid(), path, sizeof path);
    cr_assert_eq(magpool_publish_start(50), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(magpool_publish_name(name, sizeof name), 0);
    cr_expect_str_eq(name, path);
    /* again while running: a new interval, the same segment */
    cr_assert_eq(magpool_publish_start(20), 0);
    uint64_t hdr[PUB_HDR_WORDS];
    for (int i = 0; i < 300 && (read_segment(getpid(), hdr, recs, 256) < 0 ||
                                hdr[H_INTERVAL_MS] != 20); i++)
        sleep_ms(10);
    cr_expect_eq(hdr[H_INTERVAL_MS], 20);
    magpool_publish_stop();
    cr_expect_neq(stat(path, &st), 0, "%s still exists after stop", path);
    cr_expect_eq(magpool_publish_name(name, sizeof name), -1);
    cr_expect_eq(errno, ENOENT);
    magpool_publish_stop(); /* twice: a no-op */
    /* and again */
    cr_assert_eq(magpool_publish_start(10), 0);
    cr_expect_eq(stat(path, &st), 0);
    magpool_publish_stop();
}

Test(publish, bad_input_is_refused)
{
    char buf[64];
    unsigned bad[] = { 0, 1, 9, 3600001, UINT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_expect_eq(magpool_publish_start(bad[i]), -1, "interval %u", bad[i]);
        cr_expect_eq(errno, EINVAL, "interval %u: errno %d", bad[i], errno);
    }
    cr_expect_eq(magpool_publish_name(NULL, 10), -1);
    cr_expect_eq(errno, EINVAL);
    cr_expect_eq(magpool_publish_name(buf, 0), -1);
    cr_expect_eq(errno, EINVAL);
    cr_assert_eq(magpool_publish_start(3600000), 0);
    strcpy(buf, "xx");
    cr_expect_eq(magpool_publish_name(buf, 5), -1);
    cr_expect_eq(errno, ERANGE);
    cr_expect_str_eq(buf, "");
    magpool_publish_stop();
}

/* A segment with our name that a dead process left (its pid was ours). */
static void plant_segment(uint64_t pid, uint64_t start_time, uint64_t version)
{
    char path[64];
    seg_path(getpid(), path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)pub_segment_bytes(1)), 0);
    void *m = mmap(NULL, pub_segment_bytes(1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert(m != MAP_FAILED);
    pub_init(m, pid, start_time, 1);
    ((uint64_t *)m)[H_VERSION] = version;
    munmap(m, pub_segment_bytes(1));
    close(fd);
}

Test(publish, a_stale_segment_of_our_pid_is_replaced)
{
    plant_segment((uint64_t)getpid(), 12345, PUB_VERSION); /* another start time */
    cr_assert_eq(magpool_publish_start(10), 0, "start: %s", strerror(errno));
    uint64_t hdr[PUB_HDR_WORDS];
    cr_assert(wait_snapshot(getpid(), 0, hdr, recs, 256) >= 0);
    cr_expect_neq(hdr[H_START_TIME], 12345);
    magpool_publish_stop();
    plant_segment(77, 1, 99); /* another layout version: stale as well */
    cr_assert_eq(magpool_publish_start(10), 0, "start: %s", strerror(errno));
    cr_assert(wait_snapshot(getpid(), 0, hdr, recs, 256) >= 0);
    cr_expect_eq(hdr[H_VERSION], PUB_VERSION);
    magpool_publish_stop();
}

/* Leave a live segment under our own name, as another copy of the library
 * in this process (static + shared) would: our pid, our start time (read
 * off a segment of our own), the current layout. */
static void plant_live_segment_of_ours(void)
{
    cr_assert_eq(magpool_publish_start(10), 0);
    uint64_t hdr[PUB_HDR_WORDS];
    cr_assert(wait_snapshot(getpid(), 0, hdr, recs, 256) >= 0);
    uint64_t mine = hdr[H_START_TIME];
    magpool_publish_stop();
    plant_segment((uint64_t)getpid(), mine, PUB_VERSION);
}

Test(publish, a_live_segment_of_this_process_is_not_taken_over)
{
    plant_live_segment_of_ours();
    errno = 0;
    cr_expect_eq(magpool_publish_start(10), -1);
    cr_expect_eq(errno, EBUSY, "errno %d", errno);
    char path[64];
    seg_path(getpid(), path, sizeof path);
    cr_expect_eq(access(path, F_OK), 0, "the other copy's segment was removed");
    unlink(path);
}

Test(publish, reader_of_another_layout_version_is_told)
{
    plant_segment((uint64_t)getpid(), 1, 2);
    uint64_t hdr[PUB_HDR_WORDS];
    errno = 0;
    cr_expect_eq(read_segment(getpid(), hdr, recs, 256), -1);
    cr_expect_eq(errno, EPROTO);
    cr_expect_eq(hdr[H_VERSION], 2);
    char path[64];
    seg_path(getpid(), path, sizeof path);
    unlink(path);
}

Test(publish, a_fork_child_publishes_under_its_own_pid)
{
    magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64 });
    magpool_set_name(p, "inherited");
    cr_assert_eq(magpool_publish_start(10), 0);
    uint64_t hdr[PUB_HDR_WORDS];
    cr_assert(wait_snapshot(getpid(), 0, hdr, recs, 256) >= 0);
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        /* Nothing until the child makes a pool of its own; then its own
         * segment and thread, inherited pools in it; exit() removes it. */
        char name[64], want[64];
        seg_path(getpid(), want, sizeof want);
        sleep_ms(30);
        int bad = access(want, F_OK) == 0 ? 1 : 0;
        bad |= magpool_publish_name(name, sizeof name) == 0 ? 2 : 0;
        magpool_t *own = magpool_create(&(magpool_config_t){ .block_size = 32 });
        magpool_set_name(own, "own");
        bad |= magpool_publish_name(name, sizeof name) != 0 || strcmp(name, want) != 0 ? 4 : 0;
        long n = wait_snapshot(getpid(), 0, hdr, recs, 256);
        bad |= n != 2 || hdr[H_PID] != (uint64_t)getpid() ||
               find_pool(recs, n, "inherited") == NULL ? 8 : 0;
        magpool_destroy(own);
        exit(bad ? 100 + bad : 0);
    }
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    char path[64];
    seg_path(child, path, sizeof path);
    cr_expect_neq(access(path, F_OK), 0, "the child's segment outlived its exit()");
    /* Ours is untouched and still being written. */
    uint64_t seen = hdr[H_SNAPSHOTS];
    cr_expect(wait_snapshot(getpid(), seen, hdr, recs, 256) >= 0);
    cr_expect_eq(hdr[H_PID], (uint64_t)getpid());
    magpool_publish_stop();
    magpool_destroy(p);
}

Test(publish, a_fork_and_exec_child_leaves_no_segment)
{
    cr_assert_eq(magpool_publish_start(10), 0);
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char path[64];
    seg_path(child, path, sizeof path);
    cr_expect_neq(access(path, F_OK), 0, "%s left behind by a fork + exec", path);
    magpool_publish_stop();
}

Test(publish, exit_removes_the_segment)
{
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        magpool_publish_start(10);
        sleep_ms(30);
        exit(0); /* atexit */
    }
    int status;
    waitpid(child, &status, 0);
    char path[64];
    seg_path(child, path, sizeof path);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_expect_neq(access(path, F_OK), 0, "%s left behind by exit()", path);
}

/* MAGPOOL_PUBLISH is read at the first pool creation. */
static void env_case(const char *value, long want_ms)
{
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        setenv("MAGPOOL_PUBLISH", value, 1);
        magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64 });
        uint64_t hdr[PUB_HDR_WORDS];
        if (want_ms == 0) { /* off: nothing to wait for; a publisher would
                               have made its segment before create returned */
            sleep_ms(50);
            exit(read_segment(getpid(), hdr, recs, 256) < 0 ? 0 : 4);
        }
        long n = wait_snapshot(getpid(), 0, hdr, recs, 256);
        int ok = n == 1 && (long)hdr[H_INTERVAL_MS] == want_ms;
        magpool_destroy(p);
        exit(ok ? 0 : 5);
    }
    int status;
    waitpid(child, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "MAGPOOL_PUBLISH=%s: child status %#x", value, status);
}

Test(publish, a_publishing_failure_from_the_environment_is_said_on_stderr)
{
    /* Our name taken by a live segment (as another copy of the library in
     * this process would hold it): EBUSY, said once. */
    plant_live_segment_of_ours();
    setenv("MAGPOOL_PUBLISH", "50", 1);
    mp_capture_t cap = mp_stderr_begin();
    magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64 });
    char got[256], want[160];
    mp_stderr_end(cap, got, sizeof got);
    cr_assert(p != NULL, "the pool is made all the same");
    snprintf(want, sizeof want,
             "magpool: MAGPOOL_PUBLISH=50: cannot publish to /dev/shm/magpool.%d: %s\n",
             (int)getpid(), strerror(EBUSY));
    cr_expect_str_eq(got, want);
    magpool_destroy(p);
    char path[64];
    seg_path(getpid(), path, sizeof path);
    unlink(path);
}

Test(publish, the_environment_switches_it_on, .timeout = 60)
{
    env_case("25", 25);
    env_case("1", 1000);
    env_case("yes", 1000);
    env_case("99999999", 3600000);
    env_case("0", 0);
    env_case("", 0);
}

Test(publish, the_seqlock_gives_whole_snapshots_under_concurrent_writes)
{
    struct seqcheck c;
    cr_assert_eq(seqcheck_init(&c, false), 0);
    pthread_t w, r[2];
    pthread_create(&w, NULL, seqcheck_writer, &c);
    for (int i = 0; i < 2; i++)
        pthread_create(&r[i], NULL, seqcheck_reader, &c);
    sleep_ms(500);
    atomic_store(&c.stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    cr_expect_gt(c.reads, 100, "snapshots read: %llu", (unsigned long long)c.reads);
    cr_expect_eq(c.torn, 0, "torn snapshots: %llu of %llu", (unsigned long long)c.torn,
                 (unsigned long long)c.reads);
    munmap(c.seg, c.bytes);
}

Test(publish, a_reader_without_the_seqlock_would_see_tearing)
{
    /* The checker can fail: the same readers against a writer that skips
     * the seqlock see torn snapshots. */
    struct seqcheck c;
    cr_assert_eq(seqcheck_init(&c, true), 0);
    pthread_t w, r;
    pthread_create(&w, NULL, seqcheck_writer, &c);
    pthread_create(&r, NULL, seqcheck_reader, &c);
    for (int i = 0; i < 200 && atomic_load(&c.torn) == 0; i++)
        sleep_ms(10);
    atomic_store(&c.stop, 1);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    cr_expect_gt(c.torn, 0, "no torn snapshot seen in %llu reads", (unsigned long long)c.reads);
    munmap(c.seg, c.bytes);
}

Test(publish, the_segment_grows_past_its_first_capacity)
{
    enum { N = 150 }; /* the first capacity is 64 records */
    magpool_t *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = magpool_create(&(magpool_config_t){ .block_size = 16 + (size_t)i });
        cr_assert(p[i] != NULL);
    }
    cr_assert_eq(magpool_publish_start(10), 0);
    uint64_t hdr[PUB_HDR_WORDS];
    long n = wait_snapshot(getpid(), 0, hdr, recs, 256);
    cr_expect_eq(n, N, "records: %ld", n);
    cr_expect_geq(hdr[H_CAPACITY], N, "capacity %llu", (unsigned long long)hdr[H_CAPACITY]);
    cr_expect_eq(hdr[H_UNPUBLISHED], 0);
    for (int i = 0; i < N; i++) /* every pool once: block sizes 16 .. 165 */
        cr_expect_eq(recs[i * PUB_REC_WORDS + R_BLOCK_SIZE] - 16 < N, true);
    magpool_publish_stop();
    for (int i = 0; i < N; i++)
        magpool_destroy(p[i]);
}
