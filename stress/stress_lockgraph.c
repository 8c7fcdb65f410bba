/* SPDX-License-Identifier: MIT */
/*
 * stress_lockgraph — every lock path of the library, and the grace-period
 * wait, exercised at least once, so that ThreadSanitizer's deadlock detector
 * sees the whole graph of docs/design.md ("Locks and grace periods"): a
 * thread attaching and moving magazines through the depot (read sections),
 * thread exit (registry -> growth -> registration lock), clear with a grace
 * period (growth lock -> grace period), an at-cap steal, fork (the prepare
 * handler takes everything), the background trimmer, and a CHECKED report.
 * lib/epoch.c models each read section as a shared hold and each grace-period
 * wait as an exclusive hold of a virtual lock, so an inversion against it is
 * reported even when the two sides never overlap in time.
 *
 * Must-fail twins (stress/meson.build, through expect_report.sh):
 *   --inversion 1  a read section takes the growth lock (test switch), whose
 *                  holder waits for the grace period in clear: TSan must
 *                  report a lock-order inversion, deterministically.
 *   --assert 1     the same broken rule with the library's own assertion on
 *                  (sanitizer builds): it must abort naming the rule.
 */
#include <sys/wait.h>

#include "harness.h"
#include "internal.h"

struct parker {
    magpool_t *p;
    void *got[40];
    _Atomic int parked, go; /* seq_cst flags: plain hand-over, TSan sees it */
};

static void *use_then_exit(void *arg)
{
    magpool_t *p = arg;
    void *v[600];
    for (int i = 0; i < 600; i++)
        CHECK((v[i] = magpool_acquire(p)) != NULL, "acquire %d", i);
    for (int i = 0; i < 600; i++)
        magpool_release(p, v[i]);
    return NULL; /* thread exit: the cache goes back under the registry lock */
}

static void *park(void *arg)
{
    struct parker *k = arg;
    for (int i = 0; i < 40; i++)
        k->got[i] = magpool_acquire(k->p);
    for (int i = 0; i < 40; i++)
        magpool_release(k->p, k->got[i]);
    atomic_store(&k->parked, 1);
    while (!atomic_load(&k->go))
        usleep(1000);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0)
        H_DIE("pthread_create");
    pthread_join(t, NULL);
}

static void quiet(const magpool_error_t *e, void *ctx)
{
    (void)e;
    atomic_fetch_add((_Atomic int *)ctx, 1);
}

int main(int argc, char **argv)
{
    double inversion = 0, assert_on = 0;
    h_extra_opt_t extra[] = {
        { "inversion", "1 = a read section takes the growth lock (TSan must report it)",
          &inversion },
        { "assert", "1 = the same with the library's assertion on (must abort)", &assert_on },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "every lock path once, for TSan's deadlock detector", extra);
    magpool_test_lock_in_read_section = inversion != 0 || assert_on != 0;
    magpool_test_lock_asserts_off = inversion != 0;

    magpool_config_t ca = magpool_config_default(64);
    ca.magazine_size = 8;
    magpool_t *a = magpool_create(&ca);
    magpool_config_t cb = ca;
    cb.initial_blocks = 256;
    cb.max_blocks = 256;
    magpool_t *b = magpool_create(&cb);
    magpool_config_t cc = ca;
    cc.flags = MAGPOOL_CHECKED;
    magpool_t *c = magpool_create(&cc);
    if (!a || !b || !c)
        H_DIE("magpool_create");

    /* Read sections (attach, depot trips), thread exit. */
    run_thread(use_then_exit, a);
    /* A grace period under the growth lock: the exit left magazines. */
    magpool_clear(a);
    magpool_stats_t s = h_stats(a);
    CHECK(s.blocks_total == 0 && s.blocks_outstanding == 0, "clear left %zu blocks",
          s.blocks_total);

    /* An at-cap steal: growth -> registration lock -> another cache. */
    struct parker k = { .p = b };
    pthread_t t;
    if (pthread_create(&t, NULL, park, &k) != 0)
        H_DIE("pthread_create");
    while (!atomic_load(&k.parked))
        usleep(1000);
    void *all[256];
    for (int i = 0; i < 256; i++)
        CHECK((all[i] = magpool_acquire(b)) != NULL, "at-cap acquire %d", i);
    CHECK(h_stats(b).steals == 1, "expected one at-cap steal");
    for (int i = 0; i < 256; i++)
        magpool_release(b, all[i]);

    /* fork while the parker is alive and parked: every lock at once. */
    run_thread(use_then_exit, a);
    pid_t pid = fork();
    if (pid == 0) {
        void *x = magpool_acquire(a), *y = magpool_acquire(b);
        magpool_release(a, x);
        magpool_release(b, y);
        magpool_clear(a);
        magpool_clear(b);
        _exit(x && y ? 0 : 1);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "fork child failed (status %#x)", st);
    atomic_store(&k.go, 1);
    pthread_join(t, NULL);

    /* The background trimmer: trimmer lock -> growth lock -> grace period. */
    run_thread(use_then_exit, a);
    CHECK(magpool_set_trim_interval(a, 0.005, 0) == 0, "set_trim_interval");
    for (int i = 0; i < 200 && h_stats(a).blocks_total != 0; i++)
        usleep(5000);
    CHECK(h_stats(a).blocks_total == 0, "the background trimmer did not clear the pool");
    magpool_set_trim_interval(a, 0, 0);

    /* A CHECKED report: the error handler's lock. */
    _Atomic int reports = 0;
    magpool_set_error_handler(quiet, &reports);
    void *z = magpool_acquire(c);
    magpool_release(c, z);
    magpool_release(c, z);
    CHECK(atomic_load(&reports) == 1, "double release reported %d times",
          atomic_load(&reports));
    magpool_set_error_handler(NULL, NULL);

    magpool_destroy(c);
    magpool_destroy(b);
    magpool_destroy(a);
    return h_finish(1);
}
