/* SPDX-License-Identifier: MIT */
/*
 * stress_bufmgr_grow_fail — a class pool's growth that fails after its slab
 * was mapped, racing a stale release of an address in that slab.
 *
 * A BufferManager release trusts a page-map entry it sees inside a read
 * section of the class pool's epoch domain: trim unmaps a slab only a grace
 * period after clearing its entries (stress_bufmgr_race). A growth that
 * fails once the slab is mapped (here: its bookkeeping allocation, forced
 * by a white-box hook) unmaps it too, on the spot. If the slab's entries
 * had been published by then (carve hook before the allocation), a stale
 * release that found them — a double release of a buffer whose old slab
 * lay at that address — is stalled (header hook) inside its section while
 * the slab goes, and reads unmapped memory: SIGSEGV. With the bookkeeping
 * allocated before the carve, a failed growth never publishes the slab and
 * the stale release is an ordinary "not handed out" (EINVAL).
 *
 * Per round: thread G gets a 128 KiB buffer (a class of one block per
 * slab; the class is empty, so the get must grow) and its growth fails in
 * the hook, which hands the new slab's address to thread A and waits for A
 * to have tried its release (or to be stalled in it). A releases the
 * buffer that would start there (release_checked) and must get EINVAL.
 * The round fails if A's release did not happen while G was inside the
 * failing growth (window not exercised), if G's get did not fail with
 * ENOMEM, or if a get after the fault fails.
 */
#include <signal.h>

#include "harness.h"
#include "internal.h"

#define BUF_COUNT 16384 /* float64: 128 KiB */

static magpool_bufmgr_t *bm;
/* Relaxed on purpose (as in stress_bufmgr_race): no happens-before edge
 * that could hide a missing one in the library. */
static _Atomic int armed, tried, stalled, grown;
static _Atomic(char *) slab_first;

static double now_ms(void)
{
    return h_now() * 1e3;
}

/* G, inside slab_grow (growth lock held), where the slab's bookkeeping is
 * allocated: publish the slab, wait for A, then fail the allocation. */
static bool books_fail(char *first)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return false;
    /* Every growth attempt of the get fails (the pool retries smaller);
     * the first one publishes its slab and waits for A. */
    if (atomic_load_explicit(&slab_first, memory_order_relaxed) != NULL)
        return true;
    atomic_store_explicit(&slab_first, first, memory_order_relaxed);
    double t0 = now_ms();
    while (!atomic_load_explicit(&tried, memory_order_relaxed) &&
           !atomic_load_explicit(&stalled, memory_order_relaxed) && now_ms() - t0 < 2000)
        usleep(100);
    return true;
}

/* A, between the page-map lookup and the header read: stay until G's
 * failed growth is over (the slab is gone by then) or 20 ms. */
static void stall_in_window(void)
{
    atomic_store_explicit(&stalled, 1, memory_order_relaxed);
    double t0 = now_ms();
    while (!atomic_load_explicit(&grown, memory_order_relaxed) && now_ms() - t0 < 20)
        usleep(100);
}

static void on_segv(int sig)
{
    (void)sig;
    static const char msg[] = "stress_bufmgr_grow_fail: SEGV: a stale release read the "
                              "header of a slab its failed growth had unmapped\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void *grower(void *arg)
{
    unsigned long round = (unsigned long)(uintptr_t)arg;
    atomic_store_explicit(&armed, 1, memory_order_relaxed);
    errno = 0;
    void *b = magpool_bufmgr_get(bm, BUF_COUNT, MAGPOOL_F64);
    int e = errno;
    atomic_store_explicit(&armed, 0, memory_order_relaxed);
    atomic_store_explicit(&grown, 1, memory_order_relaxed);
    CHECK(b == NULL && e == ENOMEM, "round %lu: get with the growth failing: %p errno %d, "
          "expected NULL ENOMEM", round, b, e);
    if (b)
        magpool_bufmgr_release(bm, b);
    return NULL;
}

static void *stale_releaser(void *arg)
{
    unsigned long round = (unsigned long)(uintptr_t)arg;
    /* A thread cache of the class pool first, so that the release below
     * enters its read section without the growth lock G holds. */
    void *warm = magpool_bufmgr_get(bm, BUF_COUNT, MAGPOOL_F64);
    CHECK(warm != NULL, "round %lu: warm-up get failed: errno %d", round, errno);
    magpool_bufmgr_release(bm, warm);
    magpool_bufmgr_clear_unused(bm, 0); /* the class is empty: G must grow */
    pthread_t g;
    pthread_create(&g, NULL, grower, arg);
    char *first;
    while ((first = atomic_load_explicit(&slab_first, memory_order_relaxed)) == NULL)
        sched_yield();
    errno = 0;
    int rc = magpool_bufmgr_release_checked(bm, first + 64);
    int e = errno;
    atomic_store_explicit(&tried, 1, memory_order_relaxed);
    CHECK(rc == -1 && e == EINVAL, "round %lu: stale release: rc %d errno %d, expected "
          "-1 EINVAL", round, rc, e);
    CHECK(!atomic_load_explicit(&grown, memory_order_relaxed) ||
          atomic_load_explicit(&stalled, memory_order_relaxed),
          "round %lu: the release did not race the failing growth", round);
    pthread_join(g, NULL);
    void *after = magpool_bufmgr_get(bm, BUF_COUNT, MAGPOOL_F64);
    CHECK(after != NULL, "round %lu: get after the fault failed: errno %d", round, errno);
    magpool_bufmgr_release(bm, after);
    return NULL;
}

int main(int argc, char **argv)
{
    H.ops = 20;
    h_parse(argc, argv, "bufmgr: a stale release vs a class pool growth failing after "
            "its slab was mapped (--ops rounds)", NULL);
    signal(SIGSEGV, on_segv);
    magpool_test_slab_books_fail = books_fail;
    magpool_test_bufmgr_header_hook = stall_in_window;
    bm = magpool_bufmgr_create(0);
    if (bm == NULL)
        H_DIE("magpool_bufmgr_create");
    unsigned iterations = 0;
    do {
        for (unsigned long r = 0; r < H.ops && h_failure_count() == 0; r++) {
            atomic_store(&tried, 0);
            atomic_store(&stalled, 0);
            atomic_store(&grown, 0);
            atomic_store(&slab_first, NULL);
            pthread_t a;
            pthread_create(&a, NULL, stale_releaser, (void *)(uintptr_t)r);
            pthread_join(a, NULL);
        }
    } while (h_more_rounds(&iterations));
    magpool_bufmgr_stats_t st;
    magpool_bufmgr_get_stats(bm, &st);
    CHECK(st.outstanding == 0, "%zu buffers outstanding", st.outstanding);
    magpool_bufmgr_destroy(bm);
    return h_finish(iterations);
}
