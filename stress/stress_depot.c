/* SPDX-License-Identifier: MIT */
/*
 * stress_depot: the depot's lock-free magazine stacks on their own, white-box.
 *
 * Threads pop magazines from one stack and push them onto it or onto a second
 * stack, at random. Each magazine carries an owner word (rounds[0]) that the
 * popper sets and checks, and a per-magazine pop counter checked at the end:
 * a magazine handed to two poppers at once (ABA, a lost CAS ordering) fails a
 * check, and under TSan a missing happens-before edge is a report. Few
 * magazines and many threads make head collisions, and so tag changes, common.
 */
#include "harness.h"
#include "internal.h"

#define NMAGS 16

static struct depot d;
static struct mag *mags[NMAGS];
static _Atomic uint64_t total_pops;

struct worker { unsigned id; uint64_t pops; };

static void *work(void *arg)
{
    struct worker *w = arg;
    h_rng_t rng = h_rng_seed(H.seed, w->id);
    uintptr_t me = (uintptr_t)w->id + 1;
    for (uint64_t i = 0; i < H.ops; i++) {
        struct mag_stack *from = h_below(&rng, 2) ? &d.full : &d.empty;
        struct mag *m = depot_pop(&d, from);
        if (m == NULL)
            continue;
        /* We own m now: nobody else may see or write its rounds. */
        CHECK(m->rounds[0] == NULL, "magazine %u popped while owned by %zu",
              m->self, (size_t)(uintptr_t)m->rounds[0]);
        m->rounds[0] = (void *)me;
        m->count++;
        w->pops++;
        CHECK(m->rounds[0] == (void *)me, "magazine %u written by another owner", m->self);
        m->rounds[0] = NULL;
        depot_push(&d, h_below(&rng, 2) ? &d.full : &d.empty, m);
    }
    atomic_fetch_add_explicit(&total_pops, w->pops, memory_order_relaxed);
    return NULL;
}

int main(int argc, char **argv)
{
    /* --no-tags 1 switches the ABA tags off: the program must then FAIL,
     * which meson checks (should_fail), so this test is known to be able to. */
    double no_tags = 0;
    h_extra_opt_t extra[] = {
        { "no-tags", "1 = disable the ABA tags (self-test: must fail)", &no_tags },
        { NULL, NULL, NULL },
    };
    h_parse(argc, argv, "lock-free depot stacks: pops/pushes with ownership checks", extra);
    magpool_test_depot_no_tags = no_tags != 0;
    unsigned iterations = 0;
    do {
        if (depot_init(&d, 2) != 0)
            H_DIE("depot_init");
        for (int i = 0; i < NMAGS; i++) {
            mags[i] = depot_mag_alloc(&d);
            if (!mags[i])
                H_DIE("depot_mag_alloc");
            mags[i]->rounds[0] = NULL;
            mags[i]->count = 0;
            depot_push(&d, i % 2 ? &d.full : &d.empty, mags[i]);
        }
        atomic_store(&total_pops, 0);
        struct worker *w = calloc(H.threads, sizeof *w);
        for (unsigned i = 0; i < H.threads; i++)
            w[i].id = i;
        h_run_threads(H.threads, work, w, sizeof *w);
        /* Every magazine is back on exactly one stack, once. */
        int seen[NMAGS] = { 0 };
        uint64_t counted = 0;
        struct mag *m;
        unsigned found = 0;
        while ((m = depot_pop(&d, &d.full)) || (m = depot_pop(&d, &d.empty))) {
            CHECK(m->self >= 1 && m->self <= NMAGS, "bad index %u", m->self);
            if (m->self >= 1 && m->self <= NMAGS && found <= NMAGS) {
                seen[m->self - 1]++;
                counted += m->count;
            }
            found++;
            if (found > NMAGS)
                break; /* a cycle: report below instead of looping forever */
        }
        CHECK(found == NMAGS, "%u magazines on the stacks, expected %d", found, NMAGS);
        for (int i = 0; i < NMAGS; i++)
            CHECK(seen[i] == 1, "magazine %d seen %d times", i + 1, seen[i]);
        CHECK(counted == atomic_load(&total_pops), "pops recorded in magazines %" PRIu64
              " != pops done %" PRIu64, counted, (uint64_t)atomic_load(&total_pops));
        free(w);
        depot_destroy(&d);
    } while (h_more_rounds(&iterations));
    return h_finish(iterations);
}
