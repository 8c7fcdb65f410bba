/* SPDX-License-Identifier: MIT */
/*
 * stress_bufmgr_race — a double release of a BufferManager buffer racing
 * clear_unused, forced deterministically.
 *
 * Thread A gets a 128 KiB buffer (a class whose slabs hold one block),
 * releases it, and releases it again. The second release finds the block
 * through the manager's page map and then stalls (test hook) before reading
 * the block's header. Thread B, seeing A stalled, calls clear_unused(0): the
 * block is idle (the first release gave it back), so its slab is unmapped.
 * With the fix (lib/bufmgr.c, buf_enter) A's lookup and read are inside a
 * read section of the class pool's epoch domain and the unmap waits for a
 * grace period: B waits until A has read the header, A's release reports
 * "double release" (EINVAL), and B then frees the slab. With
 * --skip-grace-period 1 the unmap does not wait, A reads unmapped memory and
 * dies of SIGSEGV (ASan and TSan report it as such; the plain build prints
 * the line below from its own handler) — the must-fail twin.
 *
 * Each round checks that B really did unmap the slab (clear_unused counts
 * it), so a run in which the window was never exercised fails instead of
 * passing for nothing. Odd rounds use magpool_bufmgr_release (the error
 * handler must name a double release), even ones release_checked.
 */
#include <signal.h>

#include "harness.h"
#include "internal.h"

static magpool_bufmgr_t *bm;
/* Signals between A and B are relaxed atomics on purpose, as in
 * stress_grace: they must not give TSan a happens-before edge that would
 * hide a missing one in the library. */
static _Atomic int armed, stalled, clearing, cleared;
static _Atomic unsigned long reported;

static double now_ms(void)
{
    return h_now() * 1e3;
}

/* Runs in A's second release, between the page-map lookup and the header
 * read. Waits until B has cleared, or 20 ms after B started to clear: with
 * the grace period B cannot finish before we leave, so we time out. */
static void stall_in_window(void)
{
    if (!atomic_exchange_explicit(&armed, 0, memory_order_relaxed))
        return;
    atomic_store_explicit(&stalled, 1, memory_order_relaxed);
    double t_clear = 0;
    for (;;) {
        if (atomic_load_explicit(&cleared, memory_order_relaxed))
            return;
        if (t_clear == 0 && atomic_load_explicit(&clearing, memory_order_relaxed))
            t_clear = now_ms();
        if (t_clear != 0 && now_ms() - t_clear > 20)
            return;
        usleep(100);
    }
}

static void on_error(void *ctx, const char *what, void *buf)
{
    (void)ctx, (void)buf;
    if (strstr(what, "double release"))
        atomic_fetch_add_explicit(&reported, 1, memory_order_relaxed);
}

static void on_segv(int sig)
{
    (void)sig;
    static const char msg[] = "stress_bufmgr_race: SEGV: the double release read a "
                              "header that clear_unused had unmapped\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void *releaser(void *arg)
{
    unsigned long round = (unsigned long)(uintptr_t)arg;
    double *buf = magpool_bufmgr_get(bm, 16384, MAGPOOL_F64); /* 128 KiB */
    CHECK(buf != NULL, "get failed: errno %d", errno);
    if (buf == NULL)
        return NULL;
    buf[0] = 1.0;
    magpool_bufmgr_release(bm, buf);
    atomic_store_explicit(&armed, 1, memory_order_relaxed);
    if (round % 2) {
        unsigned long before = atomic_load_explicit(&reported, memory_order_relaxed);
        magpool_bufmgr_release(bm, buf);
        CHECK(atomic_load_explicit(&reported, memory_order_relaxed) == before + 1,
              "round %lu: the double release was not reported as one", round);
    } else {
        errno = 0;
        int rc = magpool_bufmgr_release_checked(bm, buf);
        CHECK(rc == -1 && errno == EINVAL, "round %lu: release_checked of a released "
              "buffer: rc %d errno %d, expected -1 EINVAL", round, rc, errno);
    }
    CHECK(!atomic_load_explicit(&armed, memory_order_relaxed),
          "round %lu: the second release never reached the header read", round);
    return NULL;
}

static void *clearer(void *arg)
{
    unsigned long round = (unsigned long)(uintptr_t)arg;
    while (!atomic_load_explicit(&stalled, memory_order_relaxed))
        sched_yield();
    atomic_store_explicit(&clearing, 1, memory_order_relaxed);
    size_t n = magpool_bufmgr_clear_unused(bm, 0);
    atomic_store_explicit(&cleared, 1, memory_order_relaxed);
    CHECK(n >= 1, "round %lu: clear_unused freed %zu buffers: the window was not "
          "exercised", round, n);
    return NULL;
}

int main(int argc, char **argv)
{
    double skip = 0;
    h_extra_opt_t extra[] = {
        { "skip-grace-period", "1 = unmap without waiting for readers (must fail)", &skip },
        { NULL, NULL, NULL },
    };
    H.ops = 40;
    h_parse(argc, argv, "bufmgr: a double release stalled in its header read vs "
            "clear_unused (--ops rounds)", extra);
    magpool_test_skip_grace_period = skip != 0;
    if (skip != 0)
        signal(SIGSEGV, on_segv);
    magpool_test_bufmgr_header_hook = stall_in_window;
    bm = magpool_bufmgr_create(0);
    if (bm == NULL)
        H_DIE("magpool_bufmgr_create");
    magpool_bufmgr_set_error_handler(bm, on_error, NULL);
    unsigned iterations = 0;
    do {
        for (unsigned long r = 0; r < H.ops && h_failure_count() == 0; r++) {
            atomic_store(&stalled, 0);
            atomic_store(&clearing, 0);
            atomic_store(&cleared, 0);
            pthread_t a, b;
            pthread_create(&b, NULL, clearer, (void *)(uintptr_t)r);
            pthread_create(&a, NULL, releaser, (void *)(uintptr_t)r);
            pthread_join(a, NULL);
            pthread_join(b, NULL);
        }
    } while (h_more_rounds(&iterations));
    magpool_bufmgr_stats_t st;
    magpool_bufmgr_get_stats(bm, &st);
    CHECK(st.bad_releases == H.ops * iterations,
          "bad_releases %" PRIu64 ", expected %" PRIu64, (uint64_t)st.bad_releases,
          (uint64_t)(H.ops * iterations));
    CHECK(st.outstanding == 0, "%zu buffers outstanding", st.outstanding);
    magpool_bufmgr_destroy(bm);
    return h_finish(iterations);
}
