/* SPDX-License-Identifier: MIT */
/*
 * ABA on the depot stacks, forced deterministically.
 *
 * A popper reads head = A and A->next = B, then (via the test hook, at exactly
 * that point) someone else pops A, pops B and pushes A back. A plain CAS would
 * now install B, which the interferer owns, as the new head. The tagged head
 * must make the popper's CAS fail and retry. The same interleaving with tags
 * switched off must corrupt the stack, which shows the test can fail.
 */
#include <criterion/criterion.h>

#include "internal.h"

static struct depot d;
static struct mag *A, *B, *C;
static struct mag *stolen_a, *stolen_b;
static int hook_calls;

static void interfere(void)
{
    if (hook_calls++ != 0)
        return; /* only the outer pop is interrupted */
    stolen_a = depot_pop(&d, &d.full);
    stolen_b = depot_pop(&d, &d.full);
    depot_push(&d, &d.full, stolen_a); /* A is back on top: A -> C */
}

static void setup(void)
{
    cr_assert_eq(depot_init(&d, 4), 0);
    A = depot_mag_alloc(&d);
    B = depot_mag_alloc(&d);
    C = depot_mag_alloc(&d);
    cr_assert(A && B && C);
    depot_push(&d, &d.full, C);
    depot_push(&d, &d.full, B);
    depot_push(&d, &d.full, A); /* A -> B -> C */
    hook_calls = 0;
    magpool_test_depot_pop_hook = interfere;
}

static void teardown(void)
{
    magpool_test_depot_pop_hook = NULL;
    magpool_test_depot_no_tags = false;
    depot_destroy(&d);
}

TestSuite(depot_aba, .init = setup, .fini = teardown);

Test(depot_aba, tagged_head_survives_pop_pop_push_interleaving)
{
    struct mag *got = depot_pop(&d, &d.full);
    cr_assert_eq(stolen_a, A, "interferer popped A first");
    cr_assert_eq(stolen_b, B, "interferer holds B");
    cr_assert_eq(got, A, "the stalled pop retried and took the new top, A");
    cr_assert_eq(depot_pop(&d, &d.full), C, "B, owned by the interferer, must not be on the stack");
    cr_assert_null(depot_pop(&d, &d.full), "stack is empty: nothing lost, nothing duplicated");
}

Test(depot_aba, untagged_head_is_corrupted_by_the_same_interleaving)
{
    /* Rebuild A -> B -> C with tags off from the start (the heads pushed in
     * setup carry tags, which would still fail the stale CAS). */
    magpool_test_depot_pop_hook = NULL;
    magpool_test_depot_no_tags = true;
    while (depot_pop(&d, &d.full))
        ;
    depot_push(&d, &d.full, C);
    depot_push(&d, &d.full, B);
    depot_push(&d, &d.full, A);
    magpool_test_depot_pop_hook = interfere;
    struct mag *got = depot_pop(&d, &d.full);
    cr_assert_eq(got, A);
    /* Without tags the stale CAS installed A's old next, B: a magazine the
     * interferer owns is on the stack again, and C is reachable only via B. */
    cr_assert_eq(depot_pop(&d, &d.full), B, "ABA reproduced without tags");
}

Test(depot_aba, tag_changes_on_every_successful_operation)
{
    magpool_test_depot_pop_hook = NULL;
    uint64_t h0 = atomic_load(&d.full.head);
    struct mag *m = depot_pop(&d, &d.full);
    depot_push(&d, &d.full, m);
    uint64_t h1 = atomic_load(&d.full.head);
    uint64_t idx_mask = (UINT64_C(1) << MAG_INDEX_BITS) - 1;
    cr_assert_eq(h0 & idx_mask, h1 & idx_mask, "same magazine on top");
    cr_assert_neq(h0, h1, "but the head word differs by its tag");
    cr_assert_eq(h1 >> MAG_INDEX_BITS, (h0 >> MAG_INDEX_BITS) + 2);
}

Test(depot_aba, tag_uses_the_forty_spare_bits_and_wraps_cleanly)
{
    /* A head whose tag is all ones: the next operation wraps the 40-bit tag
     * to 0 and leaves the index intact (the carry falls off the top). */
    magpool_test_depot_pop_hook = NULL;
    uint64_t h0 = atomic_load(&d.full.head);
    uint64_t idx_mask = (UINT64_C(1) << MAG_INDEX_BITS) - 1;
    atomic_store(&d.full.head, (~UINT64_C(0) << MAG_INDEX_BITS) | (h0 & idx_mask));
    struct mag *m = depot_pop(&d, &d.full);
    cr_assert_not_null(m);
    uint64_t h1 = atomic_load(&d.full.head);
    cr_assert_eq(h1 >> MAG_INDEX_BITS, 0, "tag wrapped to 0, got %#llx",
                 (unsigned long long)(h1 >> MAG_INDEX_BITS));
    depot_push(&d, &d.full, m);
    uint64_t h2 = atomic_load(&d.full.head);
    cr_assert_eq(h2 & idx_mask, h0 & idx_mask, "same magazine back on top");
    cr_assert_eq(h2 >> MAG_INDEX_BITS, 1);
    cr_assert_eq(64 - MAG_INDEX_BITS, 40, "tag width");
}
