/* SPDX-License-Identifier: MIT */
/*
 * stress_tsan_edges — the reclamation annotations order only what the grace
 * period really orders.
 *
 * lib/epoch.c tells TSan about ck_epoch's (inline-asm, invisible) ordering
 * per magazine: a reader releases each magazine it read in its section, the
 * reclaimer acquires each magazine it frees. A single global sync object
 * released at every read-unlock and acquired after every grace period (the
 * design before 0.2) would also order everything any thread did before any
 * read section before the reclaimer's next steps, and hide real races.
 *
 * Thread A writes `data` (plain), passes a read section of the pool's epoch
 * domain, and signals B; B waits for a grace period and reads `data`.
 *   default            the signal is release/acquire: no race, must pass.
 *   --unrelated-race 1 the signal is relaxed: the read races with the write,
 *                      and TSan MUST report it although A passed a read
 *                      section and B waited for a grace period (must-fail).
 *   --global-sync 1    with --unrelated-race 1: the test adds the old global
 *                      annotation itself, and the race goes unreported —
 *                      the proof that this twin can tell the two apart.
 */
#include "harness.h"
#include "internal.h"
#include "sanitize.h"

static struct epoch_domain dom;
static int data;               /* plain on purpose: the race under test */
static _Atomic int signalled;
static bool racy, global_sync;
static char global_obj;        /* the old, global sync object */

static void *writer(void *arg)
{
    ck_epoch_record_t *r = arg;
    data = 42;
    epoch_read_lock(&dom, r);
    epoch_read_unlock(&dom, r);
    if (global_sync)
        tsan_release(&global_obj);
    if (racy)
        atomic_store_explicit(&signalled, 1, memory_order_relaxed);
    else
        atomic_store_explicit(&signalled, 1, memory_order_release);
    return NULL;
}

static void *reclaimer(void *arg)
{
    (void)arg;
    memory_order mo = racy ? memory_order_relaxed : memory_order_acquire;
    while (!atomic_load_explicit(&signalled, mo))
        sched_yield();
    epoch_synchronize(&dom);
    if (global_sync)
        tsan_acquire(&global_obj);
    CHECK(data == 42, "data %d", data);
    return NULL;
}

int main(int argc, char **argv)
{
    double race = 0, global = 0;
    h_extra_opt_t extra[] = {
        { "unrelated-race", "1 = the hand-over is relaxed: TSan must report the race", &race },
        { "global-sync", "1 = emulate the old global annotation (hides the race)", &global },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "TSan annotations of the grace period are per object", extra);
    racy = race != 0;
    global_sync = global != 0;
    epoch_domain_init(&dom);
    ck_epoch_record_t *r = epoch_reader_get(&dom);
    if (r == NULL)
        H_DIE("epoch_reader_get");
    pthread_t a, b;
    pthread_create(&b, NULL, reclaimer, NULL);
    pthread_create(&a, NULL, writer, r);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    epoch_reader_put(r);
    epoch_domain_destroy(&dom);
    return h_finish(1);
}
