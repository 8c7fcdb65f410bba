/* SPDX-License-Identifier: MIT */
/*
 * The live view's publisher under load (lib/publish.c, lib/pubseg.c), for
 * every build, TSan's included (Criterion cannot run there):
 *
 *   1. the seqlock: one writer, --readers readers, --seconds; every
 *      snapshot a reader gets must be whole (stress/seqlock_check.h).
 *      --broken 1 drops the seqlock from the writer: the run must then
 *      FAIL (registered should_fail), proof that the readers see tearing;
 *   2. the real publisher at its fastest interval (10 ms) while threads
 *      create, use, name and destroy pools and a reader maps the segment
 *      and checks every snapshot's shape (count within capacity, names
 *      terminated, uids set), with stop / start and interval changes in
 *      between, then the segment must be gone after the last stop.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "seqlock_check.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL);
}

static void phase_seqlock(int readers, double seconds, bool broken)
{
    struct seqcheck c;
    CHECK(seqcheck_init(&c, broken) == 0, "mmap: %s", strerror(errno));
    pthread_t w, r[64];
    pthread_create(&w, NULL, seqcheck_writer, &c);
    for (int i = 0; i < readers; i++)
        pthread_create(&r[i], NULL, seqcheck_reader, &c);
    sleep_ms((long)(seconds * 1000));
    atomic_store(&c.stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < readers; i++)
        pthread_join(r[i], NULL);
    printf("seqlock%s: %llu snapshots written, %llu read, %llu torn, %llu busy retries\n",
           broken ? " (broken writer)" : "", (unsigned long long)c.writes,
           (unsigned long long)c.reads, (unsigned long long)c.torn,
           (unsigned long long)c.busy);
    CHECK(c.reads > 0, "no snapshot read");
    CHECK(c.torn == 0, "%llu torn snapshots read", (unsigned long long)c.torn);
    munmap(c.seg, c.bytes);
}

/* ---- phase 2: the real publisher */

static _Atomic int churn_stop;

static void *churn(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    for (unsigned round = 0; !atomic_load(&churn_stop); round++) {
        magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64 + 64 * (id % 4) });
        CHECK(p != NULL, "create: %s", strerror(errno));
        if (p == NULL)
            return NULL;
        char name[40];
        snprintf(name, sizeof name, "churn-%u-%u", id, round);
        magpool_set_name(p, name);
        void *b[64];
        for (int i = 0; i < 64; i++)
            b[i] = magpool_acquire(p);
        for (int i = 0; i < 64; i++)
            magpool_release(p, b[i]);
        magpool_destroy(p);
    }
    return NULL;
}

static _Atomic int reader_stop;
static _Atomic uint64_t reader_snaps;

static void *segment_reader(void *arg)
{
    (void)arg;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/magpool.%d", (int)getpid());
    uint64_t hdr[PUB_HDR_WORDS];
    static uint64_t recs[256 * PUB_REC_WORDS];
    while (!atomic_load(&reader_stop)) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            sleep_ms(1); /* between a stop and a start */
            continue;
        }
        struct stat st;
        fstat(fd, &st);
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED)
            continue;
        for (int k = 0; k < 50; k++) {
            long n = pub_read(m, (size_t)st.st_size, hdr, recs, 256, 1000);
            if (n < 0) {
                /* magic 0: caught between a start's shm_open and its header */
                CHECK(errno == EAGAIN || errno == ENOBUFS || (errno == EPROTO && hdr[H_MAGIC] == 0),
                      "pub_read: %s", strerror(errno));
                continue;
            }
            CHECK(hdr[H_PID] == (uint64_t)getpid(), "pid %llu", (unsigned long long)hdr[H_PID]);
            CHECK((uint64_t)n <= hdr[H_CAPACITY], "%ld records, capacity %llu", n,
                  (unsigned long long)hdr[H_CAPACITY]);
            for (long i = 0; i < n; i++) {
                const uint64_t *r = recs + i * PUB_REC_WORDS;
                CHECK(r[R_UID] != 0, "record %ld has uid 0", i);
                CHECK(memchr(r + R_NAME, 0, R_NAME_WORDS * 8) != NULL, "name not terminated");
                CHECK(r[R_BLOCK_SIZE] >= 64, "block size %llu", (unsigned long long)r[R_BLOCK_SIZE]);
            }
            atomic_fetch_add(&reader_snaps, 1);
            sleep_ms(1);
        }
        munmap(m, (size_t)st.st_size);
    }
    return NULL;
}

static void phase_publisher(int threads, double seconds)
{
    CHECK(magpool_publish_start(10) == 0, "publish_start: %s", strerror(errno));
    pthread_t t[64], r;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i);
    pthread_create(&r, NULL, segment_reader, NULL);
    double end = now_s() + seconds;
    for (unsigned k = 0; now_s() < end; k++) {
        sleep_ms(50);
        if (k % 4 == 3) {
            magpool_publish_stop();
            CHECK(magpool_publish_start(10 + k % 3) == 0, "restart: %s", strerror(errno));
        } else {
            CHECK(magpool_publish_start(10 + k % 7) == 0, "interval: %s", strerror(errno));
        }
    }
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    sleep_ms(50);
    atomic_store(&reader_stop, 1);
    pthread_join(r, NULL);
    magpool_publish_stop();
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/magpool.%d", (int)getpid());
    CHECK(access(path, F_OK) != 0, "%s still exists after stop", path);
    printf("publisher: %llu snapshots checked by the reader\n",
           (unsigned long long)reader_snaps);
    CHECK(reader_snaps > 0, "the reader never read a snapshot");
}

int main(int argc, char **argv)
{
    double readers = 2, broken = 0;
    h_extra_opt_t extra[] = {
        { "readers", "reader threads of the seqlock phase", &readers },
        { "broken", "1: the writer skips the seqlock (the run must fail)", &broken },
        { NULL, NULL, NULL },
    };
    H.threads = 4;
    h_parse(argc, argv, "The live view's seqlock and publisher under load.", extra);
    double seconds = H.seconds > 0 ? H.seconds : 2.0;
    if (readers < 1 || readers > 64)
        H_DIE("--readers must be in [1, 64]");
    phase_seqlock((int)readers, seconds, broken != 0);
    if (broken == 0)
        phase_publisher(H.threads > 64 ? 64 : (int)H.threads, seconds);
    return h_finish(1);
}
