/* SPDX-License-Identifier: MIT */
/*
 * stress_grace — the epoch grace period, forced deterministically.
 *
 * Thread A pops from a depot stack inside an epoch read section, as
 * cache.c does, and stalls (test hook) after finding the top magazine and
 * before reading its `next`. Thread B then pops that magazine, retires it,
 * waits for a grace period and frees it — exactly what trim does. With the
 * grace period, B's free waits until A leaves its read section: A's read is
 * of live memory, and TSan sees the edge through lib/epoch.c's annotations.
 * With --skip-grace-period 1 the magazine is freed under A, A's read is a
 * use after free, and TSan and ASan MUST report it (registered as
 * must-fail in those builds). This is the proof that the annotations model
 * the grace period instead of silencing TSan; unlike a full trim storm it
 * does not depend on the scheduler to produce the interleaving.
 */
#include "harness.h"
#include "internal.h"

static struct depot d;
static struct epoch_domain ed;
/* Signals between A and B are relaxed atomics on purpose: they must not give
 * TSan a happens-before edge of their own (a semaphore would, and would
 * hide the very race the must-fail run has to show). */
static _Atomic int a_read_next, b_done;
static _Atomic int hook_armed;

/* Runs in A's depot_pop, between finding m and reading m->next. */
static void stall_reader(void)
{
    if (!atomic_exchange(&hook_armed, 0))
        return; /* only A's first pop stalls; B's pops pass */
    atomic_store_explicit(&a_read_next, 1, memory_order_relaxed);
    /* Give B ample time to free m if nothing makes it wait. With a grace
     * period B is blocked in epoch_synchronize() until we unlock. */
    for (int i = 0; i < 200 && !atomic_load_explicit(&b_done, memory_order_relaxed); i++)
        usleep(1000);
}

static void *reader(void *arg)
{
    (void)arg;
    ck_epoch_record_t *r = epoch_reader_get(&ed);
    if (r == NULL)
        H_DIE("epoch_reader_get");
    epoch_read_lock(&ed, r);
    struct mag *m = depot_pop(&d, &d.full);
    epoch_read_unlock(&ed, r);
    CHECK(m != NULL, "reader found the stack empty");
    epoch_reader_put(r);
    return m;
}

static void *reclaimer(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&a_read_next, memory_order_relaxed))
        sched_yield();
    struct mag *m = depot_pop(&d, &d.full); /* the magazine A is reading */
    CHECK(m != NULL, "reclaimer found the stack empty");
    if (m) {
        depot_retire(&d, m);
        epoch_synchronize(&ed);
        epoch_before_free(m);
        depot_mag_free(&d, m);
    }
    atomic_store_explicit(&b_done, 1, memory_order_relaxed);
    return NULL;
}

int main(int argc, char **argv)
{
    double skip = 0;
    h_extra_opt_t extra[] = {
        { "skip-grace-period", "1 = free without waiting for readers (must fail under TSan)", &skip },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "epoch grace period: a stalled depot reader vs a reclaimer", extra);
    magpool_test_skip_grace_period = skip != 0;
    magpool_test_depot_read_hook = stall_reader;
    unsigned iterations = 0;
    do {
        if (depot_init(&d, 4) != 0 || epoch_domain_init(&ed) != 0)
            H_DIE("depot_init");
        for (int i = 0; i < 3; i++) {
            struct mag *m = depot_mag_alloc(&d);
            if (!m)
                H_DIE("depot_mag_alloc");
            depot_push(&d, &d.full, m);
        }
        atomic_store(&a_read_next, 0);
        atomic_store(&b_done, 0);
        atomic_store(&hook_armed, 1);
        pthread_t a, b;
        void *got;
        pthread_create(&b, NULL, reclaimer, NULL);
        pthread_create(&a, NULL, reader, NULL);
        pthread_join(a, &got);
        pthread_join(b, NULL);
        /* A retried after B took its first choice: it holds another one. */
        if (got)
            depot_push(&d, &d.full, got);
        depot_destroy(&d);
        epoch_domain_destroy(&ed);
    } while (h_more_rounds(&iterations));
    return h_finish(iterations);
}
